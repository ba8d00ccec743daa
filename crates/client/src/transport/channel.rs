//! [`ServerChannel`]: a tonic channel to one server that adds the client's API token to every
//! request, so the token goes only where the client allowed it (see `Transport::guard`).

use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::HeaderValue;
use tonic::body::Body;
use tonic::transport::channel::ResponseFuture;
use tonic::transport::Channel;
use tower_service::Service;

/// A channel to one server, as [`Client::call`](crate::Client::call) hands it to the caller: use
/// it like a tonic `Channel` (`AppsClient::new(channel)`). It carries the client's token, if it has
/// one, as `authorization` on every request that has none of its own.
#[derive(Clone, Debug)]
pub struct ServerChannel {
    inner: Channel,
    token: Option<HeaderValue>,
}

impl ServerChannel {
    pub(crate) fn new(inner: Channel, token: Option<HeaderValue>) -> ServerChannel {
        ServerChannel { inner, token }
    }
}

impl Service<http::Request<Body>> for ServerChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(token) = &self.token {
            request.headers_mut().entry(AUTHORIZATION).or_insert_with(|| token.clone());
        }
        Service::call(&mut self.inner, request)
    }
}
