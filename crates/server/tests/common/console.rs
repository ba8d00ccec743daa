//! Driving the console over plain HTTP: users made in the store, logins from a
//! chosen loopback address, and the session cookie and CSRF token of a login.

use std::net::IpAddr;

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;

use super::TestServer;

/// A password long enough for the console.
pub const PASSWORD: &str = "a long enough password";

/// A client that follows no redirects, sending from `from` (a loopback address).
pub fn client_from(from: Option<IpAddr>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ip) = from {
        builder = builder.local_address(ip);
    }
    builder.build().unwrap()
}

/// Creates (or resets) console user `name` with [`PASSWORD`] in the server's database.
pub async fn add_user(s: &TestServer, name: &str) {
    let store = dugong_store::Store::open(&s.db, dugong_store::StoreOptions::default()).await.unwrap();
    let hash = dugong_server::console::password::hash(PASSWORD).unwrap();
    store.put_console_user(name, &hash).await.unwrap();
}

/// Posts the login form.
pub async fn login(s: &TestServer, user: &str, password: &str, from: Option<IpAddr>) -> reqwest::Response {
    client_from(from)
        .post(s.url("/login"))
        .form(&[("name", user), ("password", password), ("next", "/apps")])
        .send()
        .await
        .unwrap()
}

/// A logged-in session: the `Cookie` header value and its CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub async fn open(s: &TestServer, user: &str, password: &str) -> Session {
        let r = login(s, user, password, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {user}");
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
        let page = client_from(None).get(s.url("/account")).header("cookie", &cookie).send().await.unwrap();
        let page = page.text().await.unwrap();
        let csrf =
            page.split("name=\"csrf\" value=\"").nth(1).expect("a CSRF field").split('"').next().unwrap().to_string();
        Session { cookie, csrf }
    }

    /// Posts `form` (with the CSRF token) to `path`; the status and `Location`.
    pub async fn post(&self, s: &TestServer, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &self.csrf));
        let r = client_from(None).post(s.url(path)).header("cookie", &self.cookie).form(&fields).send().await.unwrap();
        let location = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        (r.status(), location)
    }

    /// Gets `path`; the status and the page.
    pub async fn get(&self, s: &TestServer, path: &str) -> (StatusCode, String) {
        let r = client_from(None).get(s.url(path)).header("cookie", &self.cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// Whether the session still lets its user in.
    pub async fn alive(&self, s: &TestServer) -> bool {
        self.get(s, "/apps").await.0 == StatusCode::OK
    }
}
