// Dugong console: small enhancements over plain HTML forms (every page works
// without this file). No inline script anywhere: the Content-Security-Policy
// allows only this file.
"use strict";

(function () {
  // The script editor: line numbers, Tab indents (Shift+Tab outdents), Esc
  // then Tab leaves the editor, Ctrl/Cmd+S saves.
  const INDENT = "    ";
  document.querySelectorAll(".editor").forEach(function (editor) {
    const area = editor.querySelector("textarea");
    const gutter = editor.querySelector(".gutter");
    if (!area || !gutter) return;
    let lines = 0;
    let leaving = false;
    function number() {
      const n = area.value.split("\n").length;
      if (n !== lines) {
        lines = n;
        let text = "";
        for (let i = 1; i <= n; i++) text += i + "\n";
        gutter.textContent = text;
      }
      gutter.scrollTop = area.scrollTop;
    }
    area.addEventListener("input", number);
    area.addEventListener("scroll", function () { gutter.scrollTop = area.scrollTop; });
    area.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { leaving = true; return; }
      if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault();
        if (area.form) area.form.requestSubmit();
        return;
      }
      if (e.key !== "Tab" || leaving || e.altKey || e.ctrlKey || e.metaKey) { leaving = false; return; }
      e.preventDefault();
      const start = area.selectionStart, end = area.selectionEnd, value = area.value;
      const lineStart = value.lastIndexOf("\n", start - 1) + 1;
      if (start === end && !e.shiftKey) {
        area.setRangeText(INDENT, start, end, "end");
      } else {
        const block = value.slice(lineStart, end);
        const changed = e.shiftKey
          ? block.replace(/^( {1,4}|\t)/gm, "")
          : block.replace(/^/gm, INDENT);
        area.setRangeText(changed, lineStart, end, "select");
      }
      area.dispatchEvent(new Event("input"));
    });
    area.addEventListener("blur", function () { leaving = false; });
    number();
  });

  // JSON values: checked while typed, and not sent while invalid (the server
  // checks again).
  document.querySelectorAll("textarea.json").forEach(function (area) {
    const out = document.getElementById(area.id + "-check");
    function check() {
      const text = area.value.trim();
      if (text === "") { area.removeAttribute("aria-invalid"); if (out) { out.textContent = ""; out.className = "json-check"; } return true; }
      try {
        JSON.parse(text);
        area.removeAttribute("aria-invalid");
        if (out) { out.textContent = "Valid JSON."; out.className = "json-check good"; }
        return true;
      } catch (err) {
        area.setAttribute("aria-invalid", "true");
        if (out) { out.textContent = "Not valid JSON: " + err.message; out.className = "json-check bad"; }
        return false;
      }
    }
    area.addEventListener("input", check);
    if (area.form) {
      area.form.addEventListener("submit", function (e) {
        if (!check()) { e.preventDefault(); area.focus(); }
      });
    }
  });

  // Times: the server writes UTC; show them in the reader's own time zone,
  // with how long ago (or how far ahead) they are, kept up to date.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function age(ms) {
    const future = ms < 0;
    const s = Math.round(Math.abs(ms) / 1000);
    let text;
    if (s < 60) text = s + " s";
    else if (s < 3600) text = Math.round(s / 60) + " min";
    else if (s < 48 * 3600) text = Math.round(s / 3600) + " h";
    else text = Math.round(s / 86400) + " days";
    return future ? "in " + text : text + " ago";
  }
  function showTimes() {
    const now = Date.now();
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      if (!t.title) t.title = t.textContent;
      const local = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
      t.textContent = local + " (" + age(now - d.getTime()) + ")";
    });
  }
  showTimes();
  window.setInterval(showTimes, 5000);

  // Deleting asks first.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      if (!window.confirm(form.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
