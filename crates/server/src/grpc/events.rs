//! Events over gRPC: a post is checked event by event (naming the first bad
//! one) before anything is written.

use dugong_proto::v1 as pb;
use dugong_store::EventInput;
use tonic::{Request, Response, Status};

use super::{convert, Api};
use crate::auth::Access;
use crate::error::ApiError;
use crate::ops;

#[tonic::async_trait]
impl pb::events_server::Events for Api {
    async fn post_events(
        &self,
        request: Request<pb::PostEventsRequest>,
    ) -> Result<Response<pb::PostEventsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Events/PostEvents", Access::Write, &meta, &ext, |_| async move {
            dugong_store::validate::event_count(req.events.len())?;
            let events = req.events.iter().enumerate().map(|(i, e)| input(i, e)).collect::<Result<Vec<_>, _>>()?;
            let posted = ops::post_events(&self.state, events).await?;
            Ok(pb::PostEventsResponse { accepted: posted.accepted, duplicates: posted.duplicates })
        })
        .await
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Events/ListEvents", Access::Read, &meta, &ext, |_| async move {
            let page = ops::list_events(&self.state, req.page_size, &req.page_token).await?;
            Ok(pb::ListEventsResponse {
                events: page.items.into_iter().map(convert::event).collect(),
                next_page_token: page.next.unwrap_or_default(),
            })
        })
        .await
    }
}

/// Event `i` of a post, checked.
fn input(i: usize, e: &pb::Event) -> Result<EventInput, ApiError> {
    let payload = convert::json(&format!("events[{i}].payload_json"), &e.payload_json)?;
    let occurred =
        e.occurred_at.as_ref().map(|t| convert::micros(&format!("events[{i}].occurred_at"), t)).transpose()?;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(EventInput::new(i, &e.id, &e.kind, opt(&e.user).as_deref(), opt(&e.app_id).as_deref(), occurred, &payload)?)
}
