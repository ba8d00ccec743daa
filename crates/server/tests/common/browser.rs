//! A headless Chromium driven over WebDriver: Debian's `chromedriver` started
//! on a free port as a child process (killed by its PID when dropped), and the
//! few W3C WebDriver calls the console tests need, over HTTP with reqwest.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};

use super::DEADLINE;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver returns element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A found element.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: apt-get install -y chromium chromium-driver (scripts/test.sh does it)"
            );
        }
        let port = dugong_testkit::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let status = format!("{}/status", browser.base);
        let http = browser.http.clone();
        dugong_testkit::wait_for("chromedriver to answer", DEADLINE, || async {
            let v: Value = http.get(&status).send().await.ok()?.json().await.ok()?;
            v["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = browser.call("POST", "/session", caps).await;
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One WebDriver command; panics on a WebDriver error.
    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body),
        };
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v: Value = response.json().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("{method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", json!({"width": width, "height": height})).await;
    }

    /// Renders pages as a browser set to dark mode (`prefers-color-scheme:
    /// dark`) would, or light; through Chromium's DevTools protocol.
    pub async fn prefer_dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        let params = json!({"features": [{"name": "prefers-color-scheme", "value": value}]});
        self.call("POST", "/goog/cdp/execute", json!({"cmd": "Emulation.setEmulatedMedia", "params": params})).await;
    }

    /// Runs a script in the page; returns what it returns.
    pub async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.call("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// The first element matching `css`, if any (no waiting).
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let url = format!("{}/element", self.base);
        let v: Value = self
            .http
            .post(&url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["value"][ELEMENT].as_str().map(|id| Element(id.to_string()))
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        dugong_testkit::wait_for(&format!("an element {css}"), DEADLINE, || self.try_find(css)).await
    }

    pub async fn click(&self, e: &Element) {
        self.call("POST", &format!("/element/{}/click", e.0), json!({})).await;
    }

    /// Replaces the text of an input or text area by typing `text`.
    pub async fn fill(&self, e: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/clear", e.0), json!({})).await;
        self.call("POST", &format!("/element/{}/value", e.0), json!({ "text": text })).await;
    }

    /// Types `text` where the element's caret is.
    pub async fn type_into(&self, e: &Element, text: &str) {
        self.call("POST", &format!("/element/{}/value", e.0), json!({ "text": text })).await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), Value::Null).await.as_str().unwrap_or_default().to_string()
    }

    /// An input's or text area's current value.
    pub async fn value(&self, e: &Element) -> String {
        let v = self.call("GET", &format!("/element/{}/property/value", e.0), Value::Null).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page's visible text.
    pub async fn page_text(&self) -> String {
        self.script("return document.body.innerText;", vec![]).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the page's text contains `needle`, reloading the page
    /// between looks when `reload` (for changes that arrive by replication).
    pub async fn wait_for_text(&self, needle: &str, reload: bool) {
        dugong_testkit::wait_for(&format!("the page to show {needle:?}"), DEADLINE, || async {
            if self.page_text().await.contains(needle) {
                return Some(());
            }
            if reload {
                self.call("POST", "/refresh", json!({})).await;
            }
            None
        })
        .await;
    }

    /// Saves a PNG of the viewport to `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let v = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("PNG base64");
        std::fs::create_dir_all(dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// The value of cookie `name` as the browser holds it for this page.
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        let url = format!("{}/cookie/{name}", self.base);
        let v: Value = self.http.get(&url).send().await.ok()?.json().await.ok()?;
        v["value"]["name"].is_string().then(|| v["value"].clone())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's Chromium goes with its driver's process group only
        // if asked: end the session first (best effort), then the driver.
        let base = self.base.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async { reqwest::Client::new().delete(&base).send().await.ok() })
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `target/console-screenshots` (the test artifact).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("console-screenshots")
}
