//! Watch over gRPC: the crate's watch messages as `WatchEvent`s. A goodbye or
//! a database failure ends the stream with UNAVAILABLE, so clients reconnect.

use std::pin::Pin;

use dugong_proto::v1 as pb;
use futures_util::{stream, Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, Api};
use crate::auth::Access;
use crate::watch::{self, WatchMessage};

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::watch_server::Watch for Api {
    type WatchStream = Events;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        let (meta, ext, req) = request.into_parts();
        self.call("Watch/Watch", Access::Read, &meta, &ext, |_| async move {
            let kinds = req.resources.iter().map(|r| convert::kind(*r)).collect::<Result<Vec<_>, _>>()?;
            let rx = watch::open(&self.state, &req.position, kinds).await?;
            let events: Events = Box::pin(ReceiverStream::new(rx).flat_map(|m| stream::iter(to_events(m))));
            Ok(events)
        })
        .await
    }
}

fn event(e: pb::watch_event::Event) -> Result<pb::WatchEvent, Status> {
    Ok(pb::WatchEvent { event: Some(e) })
}

/// One message as the stream items it becomes.
fn to_events(message: WatchMessage) -> Vec<Result<pb::WatchEvent, Status>> {
    use pb::watch_event::Event;
    match message {
        WatchMessage::Started { position } => vec![event(Event::Started(pb::Started { position }))],
        WatchMessage::Change { position, kind, key, record } => vec![event(Event::Change(pb::Change {
            position,
            resource: convert::resource(kind) as i32,
            key,
            deleted: record.is_none(),
            record: record.map(convert::change_record),
        }))],
        WatchMessage::Reset { reason, position } => vec![event(Event::Reset(pb::Reset { reason, position }))],
        WatchMessage::GoingAway { reason } => {
            vec![event(Event::GoingAway(pb::GoingAway { reason: reason.clone() })), Err(Status::unavailable(reason))]
        }
        WatchMessage::Failed { reason } => vec![Err(Status::unavailable(reason))],
    }
}
