//! Apps, Flows, Settings and Contexts over gRPC: thin adapters from messages
//! to the shared operations (`crate::ops`).

use std::collections::BTreeMap;

use dugong_proto::v1 as pb;
use dugong_store::{Input, Kind, Record};
use tonic::{Request, Response, Status};

use super::convert;
use super::Api;
use crate::auth::Access;
use crate::ops;

/// The `next_page_token` of a page.
fn next(token: Option<String>) -> String {
    token.unwrap_or_default()
}

#[tonic::async_trait]
impl pb::apps_server::Apps for Api {
    async fn get_app(&self, request: Request<pb::GetAppRequest>) -> Result<Response<pb::App>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Apps/GetApp", Access::Read, &meta, &ext, |_| async move {
            let record = ops::get(&self.state, Kind::App, &req.id).await?;
            convert::expect_kind(record, |r| match r {
                Record::App(a) => Some(convert::app(a)),
                _ => None,
            })
        })
        .await
    }

    async fn list_apps(&self, request: Request<pb::ListAppsRequest>) -> Result<Response<pb::ListAppsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Apps/ListApps", Access::Read, &meta, &ext, |_| async move {
            let page = ops::list(&self.state, Kind::App, req.page_size, &req.page_token, None).await?;
            let apps = page
                .items
                .into_iter()
                .filter_map(|r| match r {
                    Record::App(a) => Some(convert::app(a)),
                    _ => None,
                })
                .collect();
            Ok(pb::ListAppsResponse { apps, next_page_token: next(page.next) })
        })
        .await
    }

    async fn put_app(&self, request: Request<pb::PutAppRequest>) -> Result<Response<pb::App>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Apps/PutApp", Access::Write, &meta, &ext, |who| async move {
            let input = Input::app(&req.id, &req.name, &req.description);
            let record = ops::put(&self.state, &who, input, req.expected_version).await?;
            convert::expect_kind(record, |r| match r {
                Record::App(a) => Some(convert::app(a)),
                _ => None,
            })
        })
        .await
    }

    async fn delete_app(&self, request: Request<pb::DeleteAppRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Apps/DeleteApp", Access::Write, &meta, &ext, |who| async move {
            let version = ops::delete(&self.state, &who, Kind::App, &req.id, req.expected_version).await?;
            Ok(pb::DeleteResponse { version })
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::flows_server::Flows for Api {
    async fn get_flow(&self, request: Request<pb::GetFlowRequest>) -> Result<Response<pb::Flow>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Flows/GetFlow", Access::Read, &meta, &ext, |_| async move {
            let record = ops::get(&self.state, Kind::Flow, &req.id).await?;
            convert::expect_kind(record, |r| match r {
                Record::Flow(f) => Some(convert::flow(f)),
                _ => None,
            })
        })
        .await
    }

    async fn list_flows(
        &self,
        request: Request<pb::ListFlowsRequest>,
    ) -> Result<Response<pb::ListFlowsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Flows/ListFlows", Access::Read, &meta, &ext, |_| async move {
            let page = ops::list(&self.state, Kind::Flow, req.page_size, &req.page_token, Some(&req.app_id)).await?;
            let flows = page
                .items
                .into_iter()
                .filter_map(|r| match r {
                    Record::Flow(f) => Some(convert::flow(f)),
                    _ => None,
                })
                .collect();
            Ok(pb::ListFlowsResponse { flows, next_page_token: next(page.next) })
        })
        .await
    }

    async fn put_flow(&self, request: Request<pb::PutFlowRequest>) -> Result<Response<pb::Flow>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Flows/PutFlow", Access::Write, &meta, &ext, |who| async move {
            let input = Input::flow(&req.id, &req.app_id, &req.name, &req.script);
            let record = ops::put(&self.state, &who, input, req.expected_version).await?;
            convert::expect_kind(record, |r| match r {
                Record::Flow(f) => Some(convert::flow(f)),
                _ => None,
            })
        })
        .await
    }

    async fn delete_flow(
        &self,
        request: Request<pb::DeleteFlowRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Flows/DeleteFlow", Access::Write, &meta, &ext, |who| async move {
            let version = ops::delete(&self.state, &who, Kind::Flow, &req.id, req.expected_version).await?;
            Ok(pb::DeleteResponse { version })
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::settings_server::Settings for Api {
    async fn get_setting(&self, request: Request<pb::GetSettingRequest>) -> Result<Response<pb::Setting>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Settings/GetSetting", Access::Read, &meta, &ext, |_| async move {
            let record = ops::get(&self.state, Kind::Setting, &req.key).await?;
            convert::expect_kind(record, |r| match r {
                Record::Setting(s) => Some(convert::setting(s)),
                _ => None,
            })
        })
        .await
    }

    async fn list_settings(
        &self,
        request: Request<pb::ListSettingsRequest>,
    ) -> Result<Response<pb::ListSettingsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Settings/ListSettings", Access::Read, &meta, &ext, |_| async move {
            let page = ops::list(&self.state, Kind::Setting, req.page_size, &req.page_token, None).await?;
            let settings = page
                .items
                .into_iter()
                .filter_map(|r| match r {
                    Record::Setting(s) => Some(convert::setting(s)),
                    _ => None,
                })
                .collect();
            Ok(pb::ListSettingsResponse { settings, next_page_token: next(page.next) })
        })
        .await
    }

    async fn put_setting(&self, request: Request<pb::PutSettingRequest>) -> Result<Response<pb::Setting>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Settings/PutSetting", Access::Write, &meta, &ext, |who| async move {
            if req.value_json.is_empty() {
                return Err(dugong_store::StoreError::invalid("value_json", "missing: JSON text is required").into());
            }
            let value = convert::json("value_json", &req.value_json)?;
            let record = ops::put(&self.state, &who, Input::setting(&req.key, &value), req.expected_version).await?;
            convert::expect_kind(record, |r| match r {
                Record::Setting(s) => Some(convert::setting(s)),
                _ => None,
            })
        })
        .await
    }

    async fn delete_setting(
        &self,
        request: Request<pb::DeleteSettingRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Settings/DeleteSetting", Access::Write, &meta, &ext, |who| async move {
            let version = ops::delete(&self.state, &who, Kind::Setting, &req.key, req.expected_version).await?;
            Ok(pb::DeleteResponse { version })
        })
        .await
    }
}

#[tonic::async_trait]
impl pb::contexts_server::Contexts for Api {
    async fn get_context(&self, request: Request<pb::GetContextRequest>) -> Result<Response<pb::Context>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Contexts/GetContext", Access::Read, &meta, &ext, |_| async move {
            let record = ops::get(&self.state, Kind::Context, &req.user).await?;
            convert::expect_kind(record, |r| match r {
                Record::Context(c) => Some(convert::context(c)),
                _ => None,
            })
        })
        .await
    }

    async fn list_contexts(
        &self,
        request: Request<pb::ListContextsRequest>,
    ) -> Result<Response<pb::ListContextsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Contexts/ListContexts", Access::Read, &meta, &ext, |_| async move {
            let page = ops::list(&self.state, Kind::Context, req.page_size, &req.page_token, None).await?;
            let contexts = page
                .items
                .into_iter()
                .filter_map(|r| match r {
                    Record::Context(c) => Some(convert::context(c)),
                    _ => None,
                })
                .collect();
            Ok(pb::ListContextsResponse { contexts, next_page_token: next(page.next) })
        })
        .await
    }

    async fn put_context(&self, request: Request<pb::PutContextRequest>) -> Result<Response<pb::Context>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Contexts/PutContext", Access::Write, &meta, &ext, |who| async move {
            let values: BTreeMap<String, String> = req.values.into_iter().collect();
            let record = ops::put(&self.state, &who, Input::context(&req.user, &values), req.expected_version).await?;
            convert::expect_kind(record, |r| match r {
                Record::Context(c) => Some(convert::context(c)),
                _ => None,
            })
        })
        .await
    }

    async fn delete_context(
        &self,
        request: Request<pb::DeleteContextRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Contexts/DeleteContext", Access::Write, &meta, &ext, |who| async move {
            let version = ops::delete(&self.state, &who, Kind::Context, &req.user, req.expected_version).await?;
            Ok(pb::DeleteResponse { version })
        })
        .await
    }
}
