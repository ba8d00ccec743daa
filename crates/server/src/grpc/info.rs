//! ServerInfo over gRPC.

use dugong_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Api;
use crate::auth::Access;
use crate::ops;

#[tonic::async_trait]
impl pb::info_server::Info for Api {
    async fn server_info(
        &self,
        request: Request<pb::ServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfoResponse>, Status> {
        let (meta, ext, _) = request.into_parts();
        self.call("Info/ServerInfo", Access::Read, &meta, &ext, |_| async move {
            let info = ops::info(&self.state).await;
            Ok(pb::ServerInfoResponse {
                site: info.site,
                version: info.version.to_string(),
                engine: info.engine.to_string(),
                database_reachable: info.database_reachable,
                schema_version: info.schema_version as u32,
                replication: info
                    .replication
                    .into_iter()
                    .map(|s| pb::SyncHealth {
                        sync: s.sync,
                        state: s.state,
                        lag_seconds: s.lag.map(ops::secs),
                        last_good_age_seconds: s.last_good_age.map(ops::secs),
                    })
                    .collect(),
            })
        })
        .await
    }
}
