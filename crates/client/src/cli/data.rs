//! `dugong client apps|flows|settings|contexts get|list|put|delete` and `events post|list`:
//! one API call each through the HA client (lists: one per page), with the idempotency
//! `crate::api` explains, the token as metadata, and the result as JSON.

use std::future::Future;

use crate::ServerChannel;
use anyhow::Context;
use clap::Subcommand;
use dugong_proto::v1 as pb;
use pb::apps_client::AppsClient;
use pb::contexts_client::ContextsClient;
use pb::events_client::EventsClient;
use pb::flows_client::FlowsClient;
use pb::settings_client::SettingsClient;
use serde_json::{json, Value};
use tonic::{Code, Request, Response, Status};

use super::{json, BadInput};
use crate::api::put_idempotency;
use crate::{CallError, Client, Idempotency};

/// The records `dugong client` reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Apps,
    Flows,
    Settings,
    Contexts,
}

/// What to do with records of one resource.
#[derive(Subcommand, Clone, Debug)]
pub enum Op {
    /// Print one record as JSON.
    Get {
        /// The id (apps, flows: a UUID), the key (settings) or the user (contexts).
        key: String,
    },
    /// Print the records as a JSON array (every page, up to --limit).
    List {
        /// Flows only: just the flows of this app.
        #[arg(long, value_name = "APP_ID")]
        app: Option<String>,
        /// At most this many records.
        #[arg(long)]
        limit: Option<usize>,
        /// Records per call.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
    },
    /// Write a record from JSON: apps {"name", "description"}; flows {"app_id", "name",
    /// "script"}; settings any JSON value; contexts {"name": "string value", …}.
    ///
    /// Without --expected-version a put whose server failed before answering is not sent again
    /// (it could overwrite a write made in between); with it, a put is retried on another server
    /// and a retry that finds the version moved reports the conflict.
    Put {
        /// The id (apps, flows: a UUID you make, e.g. with uuidgen), key (settings) or user
        /// (contexts).
        key: String,
        /// The value as JSON, e.g. '{"a": 1}'.
        value: String,
        /// Write only if the record has this version now; 0: only if it does not exist.
        #[arg(long, value_name = "VERSION")]
        expected_version: Option<i64>,
    },
    /// Delete a record (retried on another server when its server fails: deleting twice is
    /// harmless).
    Delete {
        /// The id, key or user.
        key: String,
        /// Delete only if the record has this version now.
        #[arg(long, value_name = "VERSION")]
        expected_version: Option<i64>,
    },
}

/// What to do with events.
#[derive(Subcommand, Clone, Debug)]
pub enum EventOp {
    /// Post events given as JSON — one object or an array: {"kind", "user", "app_id",
    /// "occurred_at" (UTC RFC 3339, default now), "payload" (any JSON), "id" (default: a new
    /// UUID)}. Retried on another server when its server fails: the ids make a repeat harmless.
    Post {
        /// The events, e.g. '[{"kind": "flow.started", "user": "alice"}]'.
        events: String,
    },
    /// Print events as a JSON array (every page, up to --limit).
    List {
        /// At most this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// Events per call.
        #[arg(long, default_value_t = 100)]
        page_size: u32,
    },
}

/// One unary call through the HA client; also says how many attempts it took.
async fn unary<Req, Resp, F, Fut>(
    client: &Client,
    idempotency: Idempotency,
    message: Req,
    mut f: F,
) -> (Result<Resp, CallError>, u32)
where
    Req: Clone,
    F: FnMut(ServerChannel, Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let mut attempts = 0;
    let result = client
        .call(idempotency, |channel| {
            attempts += 1;
            f(channel, Request::new(message.clone()))
        })
        .await
        .map(Response::into_inner);
    (result, attempts)
}

/// A read: idempotent, and the attempts do not matter.
async fn read<Req, Resp, F, Fut>(client: &Client, message: Req, f: F) -> anyhow::Result<Resp>
where
    Req: Clone,
    F: FnMut(ServerChannel, Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    Ok(unary(client, Idempotency::Idempotent, message, f).await.0?)
}

/// A put's answer; a conflict found by a retry may be this very put's own write.
fn put_result<T>(result: (Result<T, CallError>, u32), key: &str) -> anyhow::Result<T> {
    match result {
        (Err(e), attempts) if attempts > 1 && e.status().map(Status::code) == Some(Code::Aborted) => {
            Err(anyhow::Error::new(e).context(format!(
                "put {key}: conflict after a retry on another server — the version may have moved by this very \
                 put's first attempt: check with get"
            )))
        }
        (result, _) => Ok(result.with_context(|| format!("put {key}"))?),
    }
}

/// A delete's answer; `NOT_FOUND` after a retry means the first attempt deleted it.
fn delete_result(result: (Result<pb::DeleteResponse, CallError>, u32), key: &str) -> anyhow::Result<Value> {
    match result {
        (Ok(r), _) => Ok(json!({ "deleted": key, "version": r.version })),
        (Err(e), attempts) if attempts > 1 && e.status().map(Status::code) == Some(Code::NotFound) => {
            Ok(json!({ "deleted": key, "version": null, "note": "gone after a retry: the first attempt deleted it" }))
        }
        (Err(e), _) => Err(anyhow::Error::new(e).context(format!("delete {key}"))),
    }
}

/// Pages through a list until it ends or `limit` records were read.
async fn pages<T, F, Fut>(limit: Option<usize>, mut page: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<(Vec<T>, String)>>,
{
    let limit = limit.unwrap_or(usize::MAX);
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        if next.is_empty() || all.len() >= limit {
            all.truncate(limit);
            return Ok(all);
        }
        token = next;
    }
}

/// Runs `op` on `resource` and returns what to print.
pub async fn run(client: &Client, resource: Resource, op: Op) -> anyhow::Result<Value> {
    match (resource, op) {
        (Resource::Apps, Op::Get { key }) => {
            let r =
                read(client, pb::GetAppRequest { id: key }, |c, r| async move { AppsClient::new(c).get_app(r).await });
            Ok(json::app(&r.await?))
        }
        (Resource::Flows, Op::Get { key }) => {
            let r =
                read(
                    client,
                    pb::GetFlowRequest { id: key },
                    |c, r| async move { FlowsClient::new(c).get_flow(r).await },
                );
            Ok(json::flow(&r.await?))
        }
        (Resource::Settings, Op::Get { key }) => {
            let r = read(client, pb::GetSettingRequest { key }, |c, r| async move {
                SettingsClient::new(c).get_setting(r).await
            });
            Ok(json::setting(&r.await?))
        }
        (Resource::Contexts, Op::Get { key }) => {
            let r = read(client, pb::GetContextRequest { user: key }, |c, r| async move {
                ContextsClient::new(c).get_context(r).await
            });
            Ok(json::context(&r.await?))
        }

        (resource, Op::List { app, limit, page_size }) => {
            if app.is_some() && resource != Resource::Flows {
                return Err(BadInput("--app lists only flows".into()).into());
            }
            let page_size = page_size.clamp(1, 1000);
            let items = match resource {
                Resource::Apps => {
                    pages(limit, |page_token| async move {
                        let r = read(client, pb::ListAppsRequest { page_size, page_token }, |c, r| async move {
                            AppsClient::new(c).list_apps(r).await
                        });
                        let r = r.await?;
                        Ok((r.apps.iter().map(json::app).collect(), r.next_page_token))
                    })
                    .await?
                }
                Resource::Flows => {
                    let app_id = app.unwrap_or_default();
                    pages(limit, |page_token| {
                        let message = pb::ListFlowsRequest { app_id: app_id.clone(), page_size, page_token };
                        async move {
                            let r =
                                read(client, message, |c, r| async move { FlowsClient::new(c).list_flows(r).await });
                            let r = r.await?;
                            Ok((r.flows.iter().map(json::flow).collect(), r.next_page_token))
                        }
                    })
                    .await?
                }
                Resource::Settings => {
                    pages(limit, |page_token| async move {
                        let message = pb::ListSettingsRequest { page_size, page_token };
                        let r =
                            read(client, message, |c, r| async move { SettingsClient::new(c).list_settings(r).await });
                        let r = r.await?;
                        Ok((r.settings.iter().map(json::setting).collect(), r.next_page_token))
                    })
                    .await?
                }
                Resource::Contexts => {
                    pages(limit, |page_token| async move {
                        let message = pb::ListContextsRequest { page_size, page_token };
                        let r =
                            read(client, message, |c, r| async move { ContextsClient::new(c).list_contexts(r).await });
                        let r = r.await?;
                        Ok((r.contexts.iter().map(json::context).collect(), r.next_page_token))
                    })
                    .await?
                }
            };
            Ok(Value::Array(items))
        }

        (resource, Op::Put { key, value, expected_version }) => {
            let idempotency = put_idempotency(expected_version);
            match resource {
                Resource::Apps => {
                    let v = json::app_value(&value)?;
                    let message = pb::PutAppRequest {
                        id: key.clone(),
                        name: v.name,
                        description: v.description,
                        expected_version,
                    };
                    let r =
                        unary(client, idempotency, message, |c, r| async move { AppsClient::new(c).put_app(r).await });
                    Ok(json::app(&put_result(r.await, &key)?))
                }
                Resource::Flows => {
                    let v = json::flow_value(&value)?;
                    let message = pb::PutFlowRequest {
                        id: key.clone(),
                        app_id: v.app_id,
                        name: v.name,
                        script: v.script,
                        expected_version,
                    };
                    let r = unary(
                        client,
                        idempotency,
                        message,
                        |c, r| async move { FlowsClient::new(c).put_flow(r).await },
                    );
                    Ok(json::flow(&put_result(r.await, &key)?))
                }
                Resource::Settings => {
                    let message = pb::PutSettingRequest {
                        key: key.clone(),
                        value_json: json::setting_value(&value)?,
                        expected_version,
                    };
                    let r = unary(client, idempotency, message, |c, r| async move {
                        SettingsClient::new(c).put_setting(r).await
                    });
                    Ok(json::setting(&put_result(r.await, &key)?))
                }
                Resource::Contexts => {
                    let values = json::context_values(&value)?;
                    let message = pb::PutContextRequest { user: key.clone(), values, expected_version };
                    let r = unary(client, idempotency, message, |c, r| async move {
                        ContextsClient::new(c).put_context(r).await
                    });
                    Ok(json::context(&put_result(r.await, &key)?))
                }
            }
        }

        (resource, Op::Delete { key, expected_version }) => {
            let i = Idempotency::Idempotent;
            let result = match resource {
                Resource::Apps => {
                    let message = pb::DeleteAppRequest { id: key.clone(), expected_version };
                    unary(client, i, message, |c, r| async move { AppsClient::new(c).delete_app(r).await }).await
                }
                Resource::Flows => {
                    let message = pb::DeleteFlowRequest { id: key.clone(), expected_version };
                    unary(client, i, message, |c, r| async move { FlowsClient::new(c).delete_flow(r).await }).await
                }
                Resource::Settings => {
                    let message = pb::DeleteSettingRequest { key: key.clone(), expected_version };
                    unary(client, i, message, |c, r| async move { SettingsClient::new(c).delete_setting(r).await })
                        .await
                }
                Resource::Contexts => {
                    let message = pb::DeleteContextRequest { user: key.clone(), expected_version };
                    unary(client, i, message, |c, r| async move { ContextsClient::new(c).delete_context(r).await })
                        .await
                }
            };
            delete_result(result, &key)
        }
    }
}

/// Runs an `events` command and returns what to print.
pub async fn events(client: &Client, op: EventOp) -> anyhow::Result<Value> {
    match op {
        EventOp::Post { events } => {
            let events = json::events(&events)?;
            let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
            let message = pb::PostEventsRequest { events };
            // Idempotent: the server stores each client-made id once.
            let r = unary(client, Idempotency::Idempotent, message, |c, r| async move {
                EventsClient::new(c).post_events(r).await
            });
            let r = r.await.0.context("post events")?;
            Ok(json!({ "accepted": r.accepted, "duplicates": r.duplicates, "ids": ids }))
        }
        EventOp::List { limit, page_size } => {
            let page_size = page_size.clamp(1, 1000);
            let items = pages(limit, |page_token| async move {
                let r = read(client, pb::ListEventsRequest { page_size, page_token }, |c, r| async move {
                    EventsClient::new(c).list_events(r).await
                });
                let r = r.await?;
                Ok((r.events.iter().map(json::event).collect(), r.next_page_token))
            })
            .await?;
            Ok(Value::Array(items))
        }
    }
}
