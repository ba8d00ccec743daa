//! The console's HTML: escaping, links and list tables, and the page around
//! every view — the banner that names the site, the server and its version and
//! shows replication health, the navigation, and a message line.
//!
//! Every value that did not come from this file goes through [`esc`] (text and
//! attribute values alike); pages carry no inline script or style, so the
//! Content-Security-Policy can forbid both.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use dugong_store::StoreError;

use crate::error::ApiError;

/// `text` safe in HTML text and in double- or single-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a query value or path segment.
pub fn url_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The hue (0–359) of a site's color: the same for a site id everywhere, and
/// site ids that differ in one character look different.
pub fn site_hue(site: &str) -> u32 {
    // FNV-1a, then spread over the wheel.
    let mut h: u32 = 0x811c_9dc5;
    for b in site.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // Sites "0" and "1" (the usual pair) get blue and orange.
    match site {
        "0" | "site0" | "site-0" | "s0" => 215,
        "1" | "site1" | "site-1" | "s1" => 25,
        _ => h % 360,
    }
}

/// The site's color sheet, served at `/console/site.css` (a file, not an inline
/// style, to keep the Content-Security-Policy strict).
pub fn site_css(site: &str) -> String {
    let hue = site_hue(site);
    format!(
        ":root {{ --site: hsl({hue} 70% 30%); --site-light: hsl({hue} 80% 95%); --site-mid: hsl({hue} 60% 45%); }}\n"
    )
}

/// What the banner shows about replication.
pub struct Health {
    /// `good`, `bad` or `unknown`: the banner's color class.
    pub class: &'static str,
    pub text: String,
}

/// Who and where: shown on every page.
pub struct Frame {
    pub site: String,
    /// The address the browser used (the request's `Host`).
    pub host: String,
    pub version: &'static str,
    pub health: Health,
    /// The signed-in user and the session's CSRF token (for the logout form).
    pub user: Option<(String, String)>,
}

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Apps,
    Settings,
    Contexts,
    Status,
    Users,
    Audit,
    None,
}

/// A message above the page's content.
pub enum Notice {
    None,
    Ok(String),
    Error(String),
}

/// A whole page.
pub fn page(frame: &Frame, section: Section, title: &str, notice: &Notice, body: &str) -> Html<String> {
    let mut out = String::with_capacity(body.len() + 2048);
    head(&mut out, &format!("{title} · site {} · Dugong", frame.site));
    out.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a>\n");
    let _ = write!(
        out,
        "<header class=\"banner\" id=\"banner\">\
         <div class=\"who\"><span class=\"site-label\">Site</span> <strong class=\"site-id\" id=\"site-id\">{site}</strong>\
         <span class=\"addr\" title=\"Server address\">{host}</span>\
         <span class=\"ver\">dugong {version}</span></div>\
         <a class=\"health health-{class}\" id=\"replication\" href=\"/status\">{health}</a>",
        site = esc(&frame.site),
        host = esc(&frame.host),
        version = esc(frame.version),
        class = frame.health.class,
        health = esc(&frame.health.text),
    );
    if let Some((user, csrf)) = &frame.user {
        let _ = write!(
            out,
            "<form class=\"logout\" method=\"post\" action=\"/logout\"><a class=\"user\" href=\"/account\">{}</a>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            esc(user),
            esc(csrf)
        );
    }
    out.push_str("</header>\n");
    if frame.user.is_some() {
        out.push_str("<nav class=\"sections\" aria-label=\"Sections\">");
        for (s, href, label) in [
            (Section::Apps, "/apps", "Apps"),
            (Section::Settings, "/settings", "Settings"),
            (Section::Contexts, "/contexts", "Contexts"),
            (Section::Status, "/status", "Status"),
            (Section::Users, "/users", "Users"),
            (Section::Audit, "/audit", "Audit log"),
        ] {
            let current = if s == section { " aria-current=\"page\"" } else { "" };
            let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
        }
        out.push_str("</nav>\n");
    }
    let _ = writeln!(out, "<main id=\"main\" tabindex=\"-1\"><h1>{}</h1>", esc(title));
    match notice {
        Notice::None => {}
        Notice::Ok(m) => {
            let _ = writeln!(out, "<p class=\"notice ok\" role=\"status\" id=\"notice\">{}</p>", esc(m));
        }
        Notice::Error(m) => {
            let _ = writeln!(out, "<p class=\"notice error\" role=\"alert\" id=\"notice\">{}</p>", esc(m));
        }
    }
    out.push_str(body);
    out.push_str("\n</main>\n</body>\n</html>\n");
    Html(out)
}

/// A page without the banner (refusals before a session is known).
pub fn bare_page(title: &str, body: &str) -> Html<String> {
    let mut out = String::new();
    head(&mut out, &format!("{title} · Dugong"));
    let _ = write!(
        out,
        "<main id=\"main\"><h1>{}</h1>{body}<p><a href=\"/apps\">Back to the console</a></p></main></body></html>",
        esc(title)
    );
    Html(out)
}

/// A store failure before a page could be framed.
pub fn store_failure(e: &StoreError) -> Response {
    let api = ApiError::Store(StoreError::Unavailable(String::new()));
    let status = if e.is_unavailable() { api.http_status() } else { StatusCode::INTERNAL_SERVER_ERROR };
    let message = if e.is_unavailable() {
        "The site's database does not answer. Try again, or use another site's console.".to_string()
    } else {
        tracing::error!(error = %e, "console request failed");
        "Internal error (logged on the server).".to_string()
    };
    (status, bare_page("Unavailable", &format!("<p role=\"alert\">{}</p>", esc(&message)))).into_response()
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\n\
         <link rel=\"stylesheet\" href=\"/console/site.css\">\n\
         <script src=\"/console/assets/console.js\" defer></script>\n</head>\n<body>\n",
        esc(title)
    );
}

/// A microsecond time as `2024-05-01 12:00:00 UTC`.
pub fn time(at: dugong_store::Micros) -> String {
    let text = humantime::format_rfc3339_seconds(at.to_system_time()).to_string();
    text.replace('T', " ").replace('Z', " UTC")
}

/// One cell of a [`table`]: its HTML (text in it already went through
/// [`esc`]) and the class of its `<td>`, when it has one.
pub struct Cell {
    html: String,
    class: Option<&'static str>,
}

impl Cell {
    /// A cell with a class (`good`, `bad`: the state colors).
    pub fn classed(class: &'static str, html: String) -> Cell {
        Cell { html, class: Some(class) }
    }
}

impl From<String> for Cell {
    fn from(html: String) -> Cell {
        Cell { html, class: None }
    }
}

/// A link to `href` (a path made here) showing `text`.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// A list as a table: `id` names it (for scripts and tests), `columns` are
/// the header cells as plain text, and each row has one cell per column.
pub fn table(id: &str, columns: &[&str], rows: impl IntoIterator<Item = Vec<Cell>>) -> String {
    let mut out = format!("<table id=\"{}\"><thead><tr>", esc(id));
    for c in columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(c));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            match cell.class {
                Some(class) => {
                    let _ = write!(out, "<td class=\"{}\">{}</td>", esc(class), cell.html);
                }
                None => {
                    let _ = write!(out, "<td>{}</td>", cell.html);
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            esc(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(url_component("/apps?x=1 2"), "%2Fapps%3Fx%3D1%202");
    }

    #[test]
    fn sites_get_stable_distinct_colors() {
        assert_eq!(site_hue("0"), 215);
        assert_eq!(site_hue("1"), 25);
        assert_eq!(site_hue("paris"), site_hue("paris"));
        assert!(site_css("x").contains("--site:"));
    }

    #[test]
    fn tables_have_a_header_row_and_a_row_per_item() {
        let rows = vec![vec![Cell::from(esc("<a>")), Cell::classed("good", "Good".into())]];
        assert_eq!(
            table("t", &["Name", "State"], rows),
            "<table id=\"t\"><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">State</th></tr></thead>\
             <tbody><tr><td>&lt;a&gt;</td><td class=\"good\">Good</td></tr></tbody></table>"
        );
    }

    #[test]
    fn pages_escape_what_they_show() {
        let frame = Frame {
            site: "0".into(),
            host: "<h>".into(),
            version: "1",
            health: Health { class: "good", text: "<ok>".into() },
            user: Some(("<u>".into(), "\"<c>".into())),
        };
        let html = page(&frame, Section::Apps, "<t>", &Notice::Ok("<n>".into()), "").0;
        for raw in ["<h>", "<ok>", "<u>", "\"<c>", "<t>", "<n>"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
    }
}
