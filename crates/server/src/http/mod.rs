//! The HTTP front end (axum, port 8000): the REST mirror of the gRPC API under
//! `/api/v1`, its OpenAPI document, `/healthz`, `/readyz`; the console's pages
//! (`crate::console`) are merged in at `/`.
//!
//! - `extract` — JSON bodies, query strings and paths that fail with a 4xx
//!   naming the problem; errors as JSON.
//! - `schema` — the JSON read and written, as types; `openapi` — the OpenAPI
//!   document generated from them and the routes.
//! - `records` — apps, flows, settings, contexts; `events`; `watch` (server-sent
//!   events); `system` — info, health, OpenAPI, console; `audit` — the audit
//!   log, for admin tokens.
//!
//! Routes are registered through [`Routes`] with their OpenAPI operation, so
//! the served document and the router cannot disagree.

mod audit;
mod events;
mod extract;
mod openapi;
mod records;
mod schema;
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

use openapi::{Caller, Spec};
use schema::{AuditPage, EventPage, Healthz, InfoJson, PostEvents, Posted, Readyz};

pub use openapi::document_json as openapi_json;

/// The router being built, and every route in it with its OpenAPI operation.
struct Routes {
    router: Router<AppState>,
    specs: Vec<(&'static str, &'static str, Spec)>,
}

impl Routes {
    fn add(mut self, method: &'static str, path: &'static str, route: MethodRouter<AppState>, spec: Spec) -> Routes {
        self.router = self.router.route(path, route);
        self.specs.push((method, path, spec));
        self
    }

    fn get<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, spec: Spec) -> Routes {
        self.add("GET", path, routing::get(handler), spec)
    }

    fn put<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, spec: Spec) -> Routes {
        self.add("PUT", path, routing::put(handler), spec)
    }

    fn post<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, spec: Spec) -> Routes {
        self.add("POST", path, routing::post(handler), spec)
    }

    fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &'static str, handler: H, spec: Spec) -> Routes {
        self.add("DELETE", path, routing::delete(handler), spec)
    }

    /// The four operations of a kind of record at `/api/v1/<kind>`.
    fn resource<R: records::Resource>(self, list: &'static str, one: &'static str) -> Routes {
        use records::{get_one, list as list_all, put, remove};
        self.get(list, list_all::<R>, records::list_spec::<R>())
            .get(one, get_one::<R>, records::get_spec::<R>())
            .put(one, put::<R>, records::put_spec::<R>())
            .delete(one, remove::<R>, records::delete_spec::<R>())
    }
}

/// Every route. The one place they are declared.
fn routes() -> Routes {
    use records::{Apps, Contexts, Flows, Settings};
    Routes { router: Router::new(), specs: Vec::new() }
        .get(
            "/",
            crate::console::root,
            Spec::new("console", "console", "The admin console (HTML)", Caller::Anyone)
                .redirect("To the console's apps page"),
        )
        .get(
            "/healthz",
            system::healthz,
            Spec::new("healthz", "health", "The process answers", Caller::Anyone).answer::<Healthz>(200, "Alive"),
        )
        .get(
            "/readyz",
            system::readyz,
            Spec::new("readyz", "health", "The database answers and no shutdown has begun", Caller::Anyone)
                .answer::<Readyz>(200, "Ready")
                .answer::<Readyz>(503, "Not ready, and why"),
        )
        .get(
            "/api/v1/openapi.json",
            system::openapi,
            Spec::new("openapi", "system", "This document", Caller::Anyone).answer_as(
                200,
                "application/json",
                "OpenAPI 3.1",
            ),
        )
        .get(
            "/api/v1/info",
            system::info,
            Spec::new("info", "system", "Who the server is; its database and replication", Caller::Reader)
                .answer::<InfoJson>(200, "Server info"),
        )
        .resource::<Apps>("/api/v1/apps", "/api/v1/apps/{id}")
        .resource::<Flows>("/api/v1/flows", "/api/v1/flows/{id}")
        .resource::<Settings>("/api/v1/settings", "/api/v1/settings/{key}")
        .resource::<Contexts>("/api/v1/contexts", "/api/v1/contexts/{user}")
        .get(
            "/api/v1/events",
            events::list,
            Spec::new("list_events", "events", "Events in id order, a page at a time", Caller::Reader)
                .query::<events::ListParams>()
                .answer::<EventPage>(200, "A page")
                .database(),
        )
        .post(
            "/api/v1/events",
            events::post,
            Spec::new("post_events", "events", "Stores events; ids seen before count as duplicates", Caller::Writer)
                .body::<PostEvents>()
                .answer::<Posted>(200, "How many were new")
                .database(),
        )
        .get(
            "/api/v1/watch",
            watch::watch,
            Spec::new(
                "watch",
                "watch",
                "Changes as server-sent events (started, change, reset, going_away, failed)",
                Caller::Reader,
            )
            .query::<watch::WatchParams>()
            .answer_as(200, "text/event-stream", "An endless stream of events")
            .database(),
        )
        .get(
            "/api/v1/audit",
            audit::list,
            Spec::new("audit", "audit", "The audit log, newest first", Caller::Admin)
                .query::<audit::AuditParams>()
                .answer::<AuditPage>(200, "A page")
                .database(),
        )
}

/// `(method, path)` of every route served, paths in axum's (and OpenAPI's)
/// `{param}` syntax.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    routes().specs.into_iter().map(|(method, path, _)| (method, path)).collect()
}

/// The OpenAPI document of every route.
fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::document(routes().specs)
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
