//! The OpenAPI 3.1 document of the HTTP API, generated: every route is
//! declared once (`super::routes`) with its operation, built here from the
//! types its handler reads and writes (`ToSchema`, `IntoParams` on the
//! request and response types of `super::schema` and the handlers), so the
//! served document names exactly the routes served and the shapes they use.

use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathsBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder,
    Schema,
};
use utoipa::{IntoParams, ToSchema};

use super::schema::ErrorJson;

const DESCRIPTION: &str = "The REST mirror of the gRPC API (crates/proto/proto/dugong/v1/dugong.proto) of one \
site's application server. Writes need `Authorization: Bearer <token>`; reads do too unless the server listens on \
loopback only or was started with --open-reads; the audit log needs an admin token. Errors are JSON `{error, code}` \
naming the problem; nothing is written when a request is refused. A write answered 500 with code `outcome_unknown` \
may or may not have been committed: read the record before repeating it. App names, and the names of one app's \
flows, are unique ignoring case: a taken one is refused with 409 `already_exists`.";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anyone,
    /// A token, unless reads are open.
    Reader,
    Writer,
    Admin,
}

/// One route's operation and the schemas it refers to.
pub struct Spec {
    builder: OperationBuilder,
    schemas: Vec<(String, RefOr<Schema>)>,
}

/// The schema of `T` by reference, remembering `T` (and what it refers to)
/// for the components.
fn reference<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) -> Ref {
    schemas.push((T::name().to_string(), T::schema()));
    T::schemas(schemas);
    Ref::from_schema_name(T::name())
}

impl Spec {
    /// An operation `id` in group `tag`.
    pub fn new(id: &str, tag: &str, summary: &str, caller: Caller) -> Spec {
        let mut builder = OperationBuilder::new().operation_id(Some(id)).tag(tag).summary(Some(summary));
        builder = match caller {
            Caller::Anyone => builder,
            // An empty requirement: a reader may go without a token where reads are open.
            Caller::Reader => builder.securities(Some([
                SecurityRequirement::new::<&str, [&str; 0], &str>("bearer", []),
                SecurityRequirement::default(),
            ])),
            Caller::Writer | Caller::Admin => {
                builder.securities(Some([SecurityRequirement::new::<&str, [&str; 0], &str>("bearer", [])]))
            }
        };
        let spec = Spec { builder, schemas: Vec::new() };
        match caller {
            Caller::Anyone => spec,
            Caller::Reader | Caller::Writer => spec.error(401, "No valid token"),
            Caller::Admin => spec.error(401, "No valid token").error(403, "Not an admin token"),
        }
    }

    /// The query parameters of `P`.
    pub fn query<P: IntoParams>(mut self) -> Spec {
        self.builder = self.builder.parameters(Some(P::into_params(|| Some(ParameterIn::Query))));
        self.error(400, "A parameter is not understood")
    }

    /// The path parameter `{name}`, a UUID when `uuid`.
    pub fn path(mut self, name: &str, description: &str, uuid: bool) -> Spec {
        let mut schema = ObjectBuilder::new().schema_type(Type::String);
        if uuid {
            schema = schema.format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
        } else {
            schema = schema.min_length(Some(1)).max_length(Some(dugong_store::validate::MAX_KEY_CHARS));
        }
        let parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(schema))
            .build();
        self.builder = self.builder.parameter(parameter);
        // Every key is checked before anything is read: a bad one is refused
        // (a body or query, declared later, words the 400 more broadly).
        self.error(400, &format!("The {name} is not valid"))
    }

    /// A JSON body of `T`.
    pub fn body<T: ToSchema>(mut self) -> Spec {
        let schema = reference::<T>(&mut self.schemas);
        let body = RequestBodyBuilder::new()
            .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
            .required(Some(Required::True))
            .build();
        self.builder = self.builder.request_body(Some(body));
        self.error(400, "The body is not understood or breaks a rule")
            .error(413, "The body is too large")
            .error(415, "The body is not JSON")
    }

    /// A JSON answer of `T` with `status`.
    pub fn answer<T: ToSchema>(mut self, status: u16, description: &str) -> Spec {
        let schema = reference::<T>(&mut self.schemas);
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(schema)).build())
            .build();
        self.builder = self.builder.response(status.to_string(), response);
        self
    }

    /// An answer without a Rust type of its own: a JSON object (this
    /// document) for a JSON media type, text for any other.
    pub fn answer_as(mut self, status: u16, media_type: &str, description: &str) -> Spec {
        let ty = if media_type.ends_with("json") { Type::Object } else { Type::String };
        let content = ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(ty))).build();
        let response = ResponseBuilder::new().description(description).content(media_type, content).build();
        self.builder = self.builder.response(status.to_string(), response);
        self
    }

    /// A redirect.
    pub fn redirect(mut self, description: &str) -> Spec {
        self.builder = self.builder.response("303", ResponseBuilder::new().description(description).build());
        self
    }

    /// An error answer (`{error, code}`).
    pub fn error(self, status: u16, description: &str) -> Spec {
        self.answer::<ErrorJson>(status, description)
    }

    /// The errors every call to the database may meet.
    pub fn database(self) -> Spec {
        self.error(503, "The site's database is unavailable")
            .error(500, "An internal error, or a write whose outcome is unknown")
    }

    pub(super) fn into_parts(self) -> (Operation, Vec<(String, RefOr<Schema>)>) {
        (self.builder.build(), self.schemas)
    }
}

/// The document of `routes`: `(method, path, operation, schemas)`.
pub(super) fn document(routes: Vec<(&'static str, &'static str, Spec)>) -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new()
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    for (method, path, spec) in routes {
        let (operation, schemas) = spec.into_parts();
        let method = match method {
            "GET" => utoipa::openapi::HttpMethod::Get,
            "PUT" => utoipa::openapi::HttpMethod::Put,
            "POST" => utoipa::openapi::HttpMethod::Post,
            "DELETE" => utoipa::openapi::HttpMethod::Delete,
            other => unreachable!("no route uses {other}"),
        };
        paths = paths.path(path, utoipa::openapi::PathItem::new(method, operation));
        for (name, schema) in schemas {
            components = components.schema(name, schema);
        }
    }
    let info = InfoBuilder::new()
        .title("Dugong application server")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .build();
    OpenApiBuilder::new().info(info).paths(paths.build()).components(Some(components.build())).build()
}

/// The served document, as JSON text, made once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let doc = super::openapi_document();
        // The document is built from our own types: it always serializes.
        doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}
