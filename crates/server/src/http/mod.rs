//! The HTTP front end (axum, port 8000): the REST mirror of the gRPC API under
//! `/api/v1`, its OpenAPI document, `/healthz`, `/readyz`; the console's pages
//! (`crate::console`) are merged in at `/`.
//!
//! - `extract` — JSON bodies, query strings and paths that fail with a 4xx
//!   naming the problem; errors as JSON.
//! - `records` — apps, flows, settings, contexts; `events`; `watch` (server-sent
//!   events); `system` — info, health, OpenAPI, console; `audit` — the audit
//!   log, for admin tokens.
//!
//! Routes are registered through [`Routes`], which also lists them, so a test
//! can hold the OpenAPI document against exactly what is served.

mod audit;
mod events;
mod extract;
mod records;
mod system;
mod watch;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::Router;

use crate::auth::Access;
use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

pub use system::OPENAPI_JSON;

/// The router being built, and the `(method, path)` of every route in it.
struct Routes {
    router: Router<AppState>,
    table: Vec<(&'static str, &'static str)>,
}

impl Routes {
    fn add(mut self, method: &'static str, path: &'static str, route: MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, route);
        self.table.push((method, path));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("GET", path, routing::get(handler))
    }

    fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("PUT", path, routing::put(handler))
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("POST", path, routing::post(handler))
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H) -> Routes {
        self.add("DELETE", path, routing::delete(handler))
    }
}

/// Every route. The one place they are declared.
fn routes() -> Routes {
    use records::{get_one, list, put, remove, Apps, Contexts, Flows, Settings};
    Routes { router: Router::new(), table: Vec::new() }
        .get("/", crate::console::root)
        .get("/healthz", system::healthz)
        .get("/readyz", system::readyz)
        .get("/api/v1/openapi.json", system::openapi)
        .get("/api/v1/info", system::info)
        .get("/api/v1/apps", list::<Apps>)
        .get("/api/v1/apps/{id}", get_one::<Apps>)
        .put("/api/v1/apps/{id}", put::<Apps>)
        .delete("/api/v1/apps/{id}", remove::<Apps>)
        .get("/api/v1/flows", list::<Flows>)
        .get("/api/v1/flows/{id}", get_one::<Flows>)
        .put("/api/v1/flows/{id}", put::<Flows>)
        .delete("/api/v1/flows/{id}", remove::<Flows>)
        .get("/api/v1/settings", list::<Settings>)
        .get("/api/v1/settings/{key}", get_one::<Settings>)
        .put("/api/v1/settings/{key}", put::<Settings>)
        .delete("/api/v1/settings/{key}", remove::<Settings>)
        .get("/api/v1/contexts", list::<Contexts>)
        .get("/api/v1/contexts/{user}", get_one::<Contexts>)
        .put("/api/v1/contexts/{user}", put::<Contexts>)
        .delete("/api/v1/contexts/{user}", remove::<Contexts>)
        .get("/api/v1/events", events::list)
        .post("/api/v1/events", events::post)
        .get("/api/v1/watch", watch::watch)
        .get("/api/v1/audit", audit::list)
}

/// `(method, path)` of every route served, paths in axum's (and OpenAPI's)
/// `{param}` syntax.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    routes().table
}

/// The HTTP application with its layers: timeouts, body limit, auth, metrics.
pub fn router(state: AppState) -> Router {
    let limit = state.config.body_limit;
    let timeout = state.config.request_timeout;
    routes()
        .router
        .merge(crate::console::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route_layer(middleware::from_fn(track))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// Writes need a token; reads too unless they are open; admin routes an
/// admin token. The OpenAPI document, health and the console are open. The
/// caller goes into the request's extensions for the audit log.
async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
        return next.run(request).await;
    }
    let access = match *request.method() {
        _ if ADMIN_PATHS.contains(&path) => Access::Admin,
        Method::GET | Method::HEAD | Method::OPTIONS => Access::Read,
        _ => Access::Write,
    };
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match state.authorize(access, header) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Routes for admin tokens only.
const ADMIN_PATHS: &[&str] = &["/api/v1/audit"];

/// Counts and times every request to a route, labelled by its template.
async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let response = next.run(request).await;
    metrics::record_http_call(method.as_str(), &route, response.status().as_str(), started.elapsed());
    response
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NoRoute { method: method.to_string(), path: uri.path().to_string() }
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    let body = serde_json::json!({
        "error": format!("{method} is not allowed on {} (see /api/v1/openapi.json)", uri.path()),
        "code": "method_not_allowed",
    });
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
