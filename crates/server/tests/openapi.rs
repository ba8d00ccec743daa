//! The generated OpenAPI document against the live server: a valid OpenAPI
//! 3.1 document whose schemas are valid JSON Schema 2020-12, naming exactly
//! the routes served, with the server's own limits; the answers to chosen
//! requests match their documented schemas; and, schemathesis-style, a
//! bounded number of requests generated from the document itself (mostly
//! valid, some hostile) to every operation get a documented status and an
//! answer that matches the schema documented for it.
//!
//! CI runs `DUGONG_OPENAPI_CASES` generated requests (300 by default).

mod common;

use common::{http, send, urlencode, uuid, TestServer, TOKEN};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Checks `doc` against the rules of OpenAPI 3.1 that a generator can
/// break: the fixed fields, unique operation ids, path parameters declared
/// for every `{name}` of a path (and only those), answers keyed by status
/// code, and every schema (components and inline) a valid JSON Schema
/// 2020-12 (OpenAPI 3.1's dialect), by the draft's own meta-schema.
fn openapi_3_1(doc: &Value) {
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "openapi: {}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "info: {}", doc["info"]);
    let schemes = doc["components"]["securitySchemes"].as_object().cloned().unwrap_or_default();
    let mut ids = std::collections::HashSet::new();
    let mut schemas: Vec<(String, Value)> = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().expect("components.schemas") {
        schemas.push((format!("components.schemas.{name}"), schema.clone()));
    }
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        let in_path: std::collections::BTreeSet<String> =
            path.split('{').skip(1).filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string())).collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            assert!(["get", "put", "post", "delete"].contains(&method.as_str()), "{at}: not a method");
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{at}: no operationId"));
            assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared: std::collections::BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: path parameters are required");
                    p["name"].as_str().unwrap().to_string()
                })
                .collect();
            assert_eq!(declared, in_path, "{at}: path parameters");
            for p in &params {
                assert!(p["name"].is_string(), "{at}: {p}");
                assert!(["query", "path", "header", "cookie"].contains(&p["in"].as_str().unwrap_or("")), "{at}: {p}");
                schemas.push((format!("{at} parameter {}", p["name"]), p["schema"].clone()));
            }
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{at}: no responses"));
            assert!(!responses.is_empty(), "{at}: no responses");
            for (status, response) in responses {
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                    "{at}: {status}"
                );
                assert!(response["description"].is_string(), "{at} {status}: a response needs a description");
                for (media, content) in response["content"].as_object().cloned().unwrap_or_default() {
                    schemas.push((format!("{at} {status} {media}"), content["schema"].clone()));
                }
            }
            if let Some(body) = op.get("requestBody") {
                for (media, content) in body["content"].as_object().expect("requestBody.content") {
                    schemas.push((format!("{at} body {media}"), content["schema"].clone()));
                }
            }
            for requirement in op["security"].as_array().cloned().unwrap_or_default() {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{at}: security scheme {name} is not defined");
                }
            }
        }
    }
    for (at, schema) in &schemas {
        assert!(schema.is_object() || schema.is_boolean(), "{at}: no schema");
        if let Err(e) = jsonschema::draft202012::meta::validate(schema) {
            panic!("{at} is not a valid JSON Schema 2020-12: {e}: {schema}");
        }
    }
}

/// The schema the document gives `method path` answering `status`, with the
/// document's components beside it so its references resolve.
fn documented_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let op = &doc["paths"][path][method.to_lowercase()];
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} documents no JSON answer for {status}");
    json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [schema], "components": doc["components"]})
}

/// Sends a request and checks the answer against the schema the document
/// gives for its route and status.
async fn conforms(
    s: &TestServer,
    doc: &Value,
    method: &str,
    path: &str,
    concrete: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method_r = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, answer) = send(s, method_r, concrete, body).await;
    let schema = documented_schema(doc, method, path, status.as_u16());
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let problems: Vec<String> =
        validator.iter_errors(&answer).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        problems.is_empty(),
        "{method} {concrete} answered {status} {answer} against its documented schema: {problems:?}"
    );
    (status.as_u16(), answer)
}

#[tokio::test]
async fn the_openapi_document_is_valid_covers_every_route_and_matches_the_answers() {
    let s = TestServer::sqlite().await;
    let doc: Value = http().get(s.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    // A well-formed OpenAPI 3.1 document.
    openapi_3_1(&doc);
    // Every reference resolves.
    let mut refs = Vec::new();
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
    // The limits it states are the server's own.
    let schemas = &doc["components"]["schemas"];
    use dugong_store::validate as v;
    assert_eq!(schemas["PutApp"]["properties"]["name"]["maxLength"], v::MAX_NAME_CHARS);
    assert_eq!(schemas["PutApp"]["properties"]["description"]["maxLength"], v::MAX_DESCRIPTION_CHARS);
    assert_eq!(schemas["PutFlow"]["properties"]["name"]["maxLength"], v::MAX_NAME_CHARS);
    assert_eq!(schemas["PutContext"]["properties"]["values"]["maxProperties"], v::MAX_CONTEXT_ENTRIES);
    assert_eq!(schemas["PostEvents"]["properties"]["events"]["maxItems"], v::MAX_EVENTS_PER_POST);
    assert_eq!(schemas["NewEvent"]["properties"]["kind"]["maxLength"], v::MAX_EVENT_KIND_CHARS);
    assert_eq!(schemas["PutApp"]["additionalProperties"], false, "unknown fields are refused, and documented so");

    // It documents exactly the routes served.
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> =
        dugong_server::http::route_table().into_iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    served.sort();
    assert_eq!(documented, served, "the OpenAPI document and the router disagree");
    // And every documented operation really answers, at its route.
    for (method, path) in &documented {
        let concrete = path.replace("{id}", &uuid()).replace("{key}", "k").replace("{user}", "u");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = http().request(method.clone(), s.url(&concrete)).bearer_auth(TOKEN);
        if path.ends_with("/watch") {
            request = request.timeout(std::time::Duration::from_secs(2));
        }
        let response = request.send().await.unwrap();
        assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if response.status() == StatusCode::NOT_FOUND {
            let body = response.text().await.unwrap();
            assert!(!body.contains("no_route"), "{method} {path} is documented but not served");
        }
    }

    // The answers are what the document says they are: records, pages,
    // errors, on each resource.
    let app = uuid();
    let app_path = format!("/api/v1/apps/{app}");
    assert_eq!(
        conforms(&s, &doc, "PUT", "/api/v1/apps/{id}", &app_path, Some(json!({"name": "Journal"}))).await.0,
        201
    );
    conforms(&s, &doc, "PUT", "/api/v1/apps/{id}", &app_path, Some(json!({"name": "Journal", "expected_version": 1})))
        .await;
    let (status, _) = conforms(
        &s,
        &doc,
        "PUT",
        "/api/v1/apps/{id}",
        &format!("/api/v1/apps/{}", uuid()),
        Some(json!({"name": "journal"})),
    )
    .await;
    assert_eq!(status, 409, "a taken name");
    conforms(&s, &doc, "PUT", "/api/v1/apps/{id}", &app_path, Some(json!({"name": "x", "expected_version": 1}))).await;
    conforms(&s, &doc, "PUT", "/api/v1/apps/{id}", &app_path, Some(json!({"nom": "x"}))).await;
    conforms(&s, &doc, "GET", "/api/v1/apps", "/api/v1/apps?page_size=1", None).await;
    conforms(&s, &doc, "GET", "/api/v1/apps/{id}", &app_path, None).await;
    conforms(&s, &doc, "GET", "/api/v1/apps/{id}", &format!("/api/v1/apps/{}", uuid()), None).await;
    let flow = format!("/api/v1/flows/{}", uuid());
    conforms(&s, &doc, "PUT", "/api/v1/flows/{id}", &flow, Some(json!({"app_id": app, "name": "f", "script": "x"})))
        .await;
    conforms(&s, &doc, "GET", "/api/v1/flows", &format!("/api/v1/flows?app_id={app}"), None).await;
    conforms(
        &s,
        &doc,
        "PUT",
        "/api/v1/settings/{key}",
        "/api/v1/settings/ui",
        Some(json!({"value": {"a": [1, null]}})),
    )
    .await;
    conforms(&s, &doc, "GET", "/api/v1/settings", "/api/v1/settings", None).await;
    conforms(&s, &doc, "PUT", "/api/v1/contexts/{user}", "/api/v1/contexts/alice", Some(json!({"values": {"p": "1"}})))
        .await;
    conforms(&s, &doc, "GET", "/api/v1/contexts/{user}", "/api/v1/contexts/alice", None).await;
    conforms(&s, &doc, "DELETE", "/api/v1/contexts/{user}", "/api/v1/contexts/alice", None).await;
    conforms(&s, &doc, "DELETE", "/api/v1/flows/{id}", &format!("{flow}?expected_version=9"), None).await;
    let events =
        json!({"events": [{"id": uuid(), "kind": "k", "payload": {"x": 1}, "occurred_at": "2024-05-01T12:00:00Z"}]});
    conforms(&s, &doc, "POST", "/api/v1/events", "/api/v1/events", Some(events)).await;
    conforms(&s, &doc, "GET", "/api/v1/events", "/api/v1/events", None).await;
    conforms(&s, &doc, "GET", "/api/v1/events", "/api/v1/events?page_size=9999", None).await;
    conforms(&s, &doc, "GET", "/api/v1/audit", "/api/v1/audit?resource=apps", None).await;
    conforms(&s, &doc, "GET", "/api/v1/info", "/api/v1/info", None).await;
    conforms(&s, &doc, "GET", "/healthz", "/healthz", None).await;
    conforms(&s, &doc, "GET", "/readyz", "/readyz", None).await;
    s.stop().await.unwrap();
}

/// splitmix64, seeded by proptest: the request of a case follows from its
/// seed, so a failing case is replayed (and shrunk) by proptest.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Keys the server holds (made before the cases run), so generated requests
/// also reach records that exist.
struct Known {
    app: String,
    flow: String,
}

/// Text of the kinds that break parsers, and ordinary values.
fn text(g: &mut Gen, known: &Known) -> String {
    let long = "x".repeat(260);
    let pool = [
        "",
        "ui.theme",
        "alice",
        "Journal",
        "a\u{0}b",
        "é 漢字 🚀",
        "\"'<>&{}[]\\",
        "18446744073709551616",
        "-1",
        "2024-05-01T12:00:00Z",
        " spaced ",
        "line\nbreak",
        &long,
        &known.app,
        &known.flow,
    ];
    g.pick(&pool).to_string()
}

/// Any JSON, of any shape.
fn any_json(g: &mut Gen, known: &Known, depth: u32) -> Value {
    match g.below(if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => Value::Bool(g.chance(50)),
        2 => json!(*g.pick(&[0i64, 1, -1, i64::MAX, i64::MIN])),
        3 => Value::String(text(g, known)),
        4 => Value::Array((0..g.below(3)).map(|_| any_json(g, known, depth - 1)).collect()),
        _ => Value::Object(
            (0..g.below(3))
                .map(|_| (g.pick(&["value", "name", "x", "app_id"]).to_string(), any_json(g, known, depth - 1)))
                .collect(),
        ),
    }
}

/// A value for `schema` (references resolved in `doc`): most often one it
/// allows, sometimes any JSON at all.
fn value_of(doc: &Value, schema: &Value, g: &mut Gen, known: &Known, depth: u32) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let target = doc.pointer(r.trim_start_matches('#')).cloned().unwrap_or(Value::Bool(true));
        return value_of(doc, &target, g, known, depth);
    }
    if depth == 0 || g.chance(8) {
        return any_json(g, known, 2);
    }
    if let Some(choices) = schema["enum"].as_array() {
        return g.pick(choices).clone();
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let Some(ty) = (!types.is_empty()).then(|| *g.pick(&types)) else {
        return any_json(g, known, 2);
    };
    match ty {
        "string" => match schema["format"].as_str() {
            Some("uuid") => Value::String(if g.chance(50) { known.app.clone() } else { uuid() }),
            Some("date-time") => Value::String("2024-05-01T12:00:00Z".into()),
            _ => Value::String(text(g, known)),
        },
        "integer" => {
            let low = schema["minimum"].as_i64().unwrap_or(-1);
            json!(*g.pick(&[low, low + 1, 1, 3, 500, 501, 9_999_999]))
        }
        "number" => json!(1.5),
        "boolean" => Value::Bool(g.chance(50)),
        "null" => Value::Null,
        "array" => {
            let n = g.below(schema["maxItems"].as_u64().unwrap_or(3).min(3) as usize + 1);
            Value::Array((0..n).map(|_| value_of(doc, &schema["items"], g, known, depth - 1)).collect())
        }
        "object" => {
            let required: Vec<&str> =
                schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let mut object = serde_json::Map::new();
            for (name, property) in schema["properties"].as_object().cloned().unwrap_or_default() {
                if required.contains(&name.as_str()) || g.chance(50) {
                    object.insert(name, value_of(doc, &property, g, known, depth - 1));
                }
            }
            if g.chance(5) {
                object.insert("unknown_field".into(), Value::Bool(true));
            }
            Value::Object(object)
        }
        _ => any_json(g, known, 2),
    }
}

/// A value as it goes into a URL.
fn url_text(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    urlencode(&text)
}

/// The request a case makes to `method path`: the URL (path parameters and
/// some query parameters filled in) and the body.
fn request_for(doc: &Value, method: &str, path: &str, g: &mut Gen, known: &Known) -> (String, Option<Value>) {
    let op = &doc["paths"][path][method];
    let mut url = path.to_string();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().cloned().unwrap_or_default() {
        let name = p["name"].as_str().unwrap_or_default();
        let value = match name {
            "id" if g.chance(40) => Value::String(if g.chance(50) { known.app.clone() } else { known.flow.clone() }),
            _ => value_of(doc, &p["schema"], g, known, 3),
        };
        if p["in"] == "path" {
            url = url.replace(&format!("{{{name}}}"), &url_text(&value));
        } else if g.chance(35) {
            query.push(format!("{name}={}", url_text(&value)));
        }
    }
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let body = op["requestBody"]["content"]["application/json"]["schema"].as_object().map(|schema| {
        let schema = Value::Object(schema.clone());
        value_of(doc, &schema, g, known, 4)
    });
    (url, body)
}

#[test]
fn requests_generated_from_the_document_get_documented_answers() {
    let cases = std::env::var("DUGONG_OPENAPI_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(TestServer::sqlite());
    // No redirects followed: `/` answers 303, as documented.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (doc, known) = rt.block_on(async {
        let doc: Value = client.get(s.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
        let known = Known { app: uuid(), flow: uuid() };
        let put = reqwest::Method::PUT;
        let app = send(&s, put.clone(), &format!("/api/v1/apps/{}", known.app), Some(json!({"name": "Known"}))).await;
        assert_eq!(app.0, StatusCode::CREATED);
        let flow = json!({"app_id": known.app, "name": "known", "script": "x"});
        let flow = send(&s, put, &format!("/api/v1/flows/{}", known.flow), Some(flow)).await;
        assert_eq!(flow.0, StatusCode::CREATED);
        (doc, known)
    });
    let mut operations: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push((method.clone(), path.clone()));
        }
    }
    let tally = std::sync::Mutex::new(std::collections::BTreeMap::<String, u32>::new());
    let mut runner = TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() });
    runner
        .run(&(0..operations.len(), any::<u64>()), |(index, seed)| {
            let (method, path) = &operations[index];
            let (url, body) = request_for(&doc, method, path, &mut Gen(seed), &known);
            rt.block_on(async {
                let verb = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut request = client.request(verb, s.url(&url)).bearer_auth(TOKEN);
                if let Some(body) = &body {
                    request = request.json(body);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                tally.lock().unwrap().entry(format!("{method} {path} {status}")).and_modify(|n| *n += 1).or_insert(1);
                let at = format!("{} {url} {body:?} answered {status}", method.to_uppercase());
                let documented = &doc["paths"][path.as_str()][method.as_str()]["responses"][status.to_string()];
                prop_assert!(documented.is_object(), "{at}: a status the document does not list");
                prop_assert!(status < 500, "{at}");
                let Some(schema) = documented["content"]["application/json"]["schema"].as_object() else {
                    return Ok(()); // HTML, a redirect or an event stream: nothing to read
                };
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let schema = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "allOf": [schema],
                    "components": doc["components"],
                });
                let validator = jsonschema::validator_for(&schema).unwrap();
                let problems: Vec<String> =
                    validator.iter_errors(&answer).map(|e| format!("{e} at {}", e.instance_path())).collect();
                let shown: String = answer.to_string().chars().take(600).collect();
                prop_assert!(problems.is_empty(), "{at}: {shown} against its documented schema: {problems:?}");
                Ok(())
            })
        })
        .unwrap();
    // What the cases reached, for whoever reads the log.
    eprintln!("{:#?}", tally.lock().unwrap());
    rt.block_on(s.stop()).unwrap();
}
