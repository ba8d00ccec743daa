//! The page around every view, in maud templates (checked when the server
//! is compiled; every value spliced in is escaped unless marked otherwise,
//! and nothing here is): the banner that names the site, the server and its
//! version and shows replication health, the navigation, and a message line.
//! Also the small pieces every page uses: times, links with query strings.
//!
//! Pages carry no inline script or style, so the Content-Security-Policy
//! forbids both; inline SVG (the status chart) is styled from the sheet.

use std::fmt::Write;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dugong_store::{Micros, StoreError};
use maud::{html, Markup, DOCTYPE};

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

/// `path?k=v&…` with each value encoded; empty values are left out.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url_component(k), url_component(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
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
/// style, to keep the Content-Security-Policy strict), for light and dark.
pub fn site_css(site: &str) -> String {
    let hue = site_hue(site);
    format!(
        ":root {{ --site: hsl({hue} 70% 30%); --site-light: hsl({hue} 80% 95%); --site-mid: hsl({hue} 60% 45%); }}\n\
         @media (prefers-color-scheme: dark) {{\n  \
         :root {{ --site: hsl({hue} 55% 32%); --site-light: hsl({hue} 30% 17%); --site-mid: hsl({hue} 75% 70%); }}\n}}\n"
    )
}

/// How the banner rates the site and its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The database answers, every sync is Good and its replicator runs.
    Good,
    /// Replication is not running against this database at all.
    Unknown,
    /// A replicator stopped or its heartbeat is stale: changes wait.
    Warning,
    /// The site's database, or a database of a sync, is unreachable (or a
    /// sync is Bad).
    Degraded,
}

impl Level {
    /// The banner's color class.
    pub fn class(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Unknown => "unknown",
            Level::Warning => "warn",
            Level::Degraded => "bad",
        }
    }
}

/// What the banner shows about the site's health.
pub struct Health {
    pub level: Level,
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
    Flows,
    Settings,
    Contexts,
    Conflicts,
    Status,
    Users,
    Audit,
    None,
}

const NAVIGATION: [(Section, &str, &str); 8] = [
    (Section::Apps, "/apps", "Apps"),
    (Section::Flows, "/flows", "Flows"),
    (Section::Settings, "/settings", "Settings"),
    (Section::Contexts, "/contexts", "Contexts"),
    (Section::Conflicts, "/conflicts", "Conflicts"),
    (Section::Status, "/status", "Status"),
    (Section::Users, "/users", "Users"),
    (Section::Audit, "/audit", "Audit log"),
];

/// A message above the page's content.
pub enum Notice {
    None,
    Ok(String),
    Error(String),
}

fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        title { (title) }
        link rel="stylesheet" href="/console/assets/console.css";
        link rel="stylesheet" href="/console/site.css";
        script src="/console/assets/console.js" defer {}
    }
}

/// A whole page.
pub fn page(frame: &Frame, section: Section, title: &str, notice: &Notice, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(&format!("{title} · site {} · Dugong", frame.site))) }
            body {
                a.skip href="#main" { "Skip to content" }
                header.banner #banner {
                    div.who {
                        span.site-label { "Site" } " "
                        strong.site-id #site-id { (frame.site) }
                        span.addr title="Server address" { (frame.host) }
                        span.ver { "dugong " (frame.version) }
                    }
                    a #replication href="/status" class={ "health health-" (frame.health.level.class()) } {
                        (frame.health.text)
                    }
                    @if let Some((user, csrf)) = &frame.user {
                        form.logout method="post" action="/logout" {
                            a.user href="/account" { (user) }
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                @if frame.user.is_some() {
                    nav.sections aria-label="Sections" {
                        @for (s, href, label) in NAVIGATION {
                            a href=(href) aria-current=[(s == section).then_some("page")] { (label) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    @match notice {
                        Notice::None => {}
                        Notice::Ok(m) => p.notice.ok role="status" #notice { (m) },
                        Notice::Error(m) => p.notice.error role="alert" #notice { (m) },
                    }
                    (body)
                }
            }
        }
    }
}

/// A page without the banner (refusals before a session is known).
pub fn bare_page(title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(&format!("{title} · Dugong"))) }
            body {
                main #main {
                    h1 { (title) }
                    p role="alert" { (message) }
                    p { a href="/apps" { "Back to the console" } }
                }
            }
        }
    }
}

/// A store failure where no page could be framed. An unreachable database
/// gets a page that says so and leads to the status page, which still works.
pub fn store_failure(e: &StoreError) -> Response {
    if e.is_unavailable() {
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head { (head("Site database down · Dugong")) }
                body {
                    main #main {
                        h1 { "The site's database is down" }
                        p.notice.error role="alert" #notice {
                            "This site's database does not answer, so nothing can be read or changed here "
                            "and nobody can log in until it is back. "
                            "The other site's console still works: changes made there reach this site when its database returns."
                        }
                        p { "Error: " code #db-error { (e.to_string()) } }
                        p { a href="/status" { "Status page" } " (works without the database: the replication state last seen)" }
                    }
                }
            }
        };
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    tracing::error!(error = %e, "console request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, bare_page("Error", "Internal error (logged on the server).")).into_response()
}

/// A time as UTC text in a `<time>` element, which the console's script
/// shows in the reader's own time zone with its age ("3 s ago").
pub fn when(at: Micros) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (utc(at)) } }
}

/// A microsecond time as `2024-05-01 12:00:00 UTC`.
pub fn utc(at: Micros) -> String {
    let text = humantime::format_rfc3339_seconds(at.to_system_time()).to_string();
    text.replace('T', " ").replace('Z', " UTC")
}

/// A duration for people: `0.4 s`, `12 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{} h {} min", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_encoded_and_empty_values_left_out() {
        assert_eq!(url_component("/apps?x=1 2"), "%2Fapps%3Fx%3D1%202");
        assert_eq!(with_query("/apps", &[("q", "a&b"), ("sort", ""), ("after", "n\nk")]), "/apps?q=a%26b&after=n%0Ak");
        assert_eq!(with_query("/apps", &[("q", "")]), "/apps");
    }

    #[test]
    fn sites_get_stable_distinct_colors() {
        assert_eq!(site_hue("0"), 215);
        assert_eq!(site_hue("1"), 25);
        assert_eq!(site_hue("paris"), site_hue("paris"));
        assert!(site_css("x").contains("prefers-color-scheme: dark"));
    }

    #[test]
    fn pages_escape_what_they_show() {
        let frame = Frame {
            site: "0".into(),
            host: "<h>".into(),
            version: "1",
            health: Health { level: Level::Good, text: "<ok>".into() },
            user: Some(("<u>".into(), "\"<c>".into())),
        };
        let html = page(&frame, Section::Apps, "<t>", &Notice::Ok("<n>".into()), html! { p { ("<b>") } }).0;
        for raw in ["<h>", "<ok>", "<u>", "\"<c>", "<t>", "<n>", "<b>"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("aria-current=\"page\">Apps</a>"), "{html}");
    }

    #[test]
    fn durations_read_well() {
        let s = std::time::Duration::from_secs_f64;
        assert_eq!(duration(s(0.42)), "0.4 s");
        assert_eq!(duration(s(45.0)), "45 s");
        assert_eq!(duration(s(185.0)), "3 min 5 s");
        assert_eq!(duration(s(7800.0)), "2 h 10 min");
    }
}
