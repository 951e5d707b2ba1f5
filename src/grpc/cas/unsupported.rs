//! The ContentAddressableStorage server as served, answering the RPCs rebox does not implement
//! with a message that says so.
//!
//! SplitBlob and SpliceBlob (REAPI 2.4 blob chunking) are not in the protos BuildStream 2.8.1
//! ships, so the generated server would answer them with a bare `UNIMPLEMENTED` and no message.
//! Clients only call them when a server advertises chunking, which rebox does not; a client that
//! tries anyway learns why it failed.

use std::convert::Infallible;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use super::Cas;
use crate::proto::build::bazel::remote::execution::v2::content_addressable_storage_server::{
    ContentAddressableStorageServer, SERVICE_NAME,
};

/// RPCs of the service that rebox answers with `UNIMPLEMENTED` and an explanation.
const UNSUPPORTED: [(&str, &str); 2] = [
    ("SplitBlob", "SplitBlob is not supported: rebox does not split blobs into chunks; read the whole blob"),
    ("SpliceBlob", "SpliceBlob is not supported: rebox does not splice chunks; upload the whole blob"),
];

/// The ContentAddressableStorage server, plus clear answers for unsupported RPCs.
#[derive(Debug, Clone)]
pub struct CasServer {
    inner: ContentAddressableStorageServer<Cas>,
}

impl CasServer {
    /// Wraps the generated server (configured with its message size limits).
    pub fn new(inner: ContentAddressableStorageServer<Cas>) -> Self {
        Self { inner }
    }
}

impl NamedService for CasServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for CasServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.inner, context)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(message) = unsupported_message(request.uri().path()) {
            let response = tonic::Status::unimplemented(message).into_http();
            return Box::pin(std::future::ready(Ok(response)));
        }
        self.inner.call(request)
    }
}

/// The explanation for `path` (`/SERVICE/METHOD`) if it names an unsupported RPC.
fn unsupported_message(path: &str) -> Option<&'static str> {
    let method = path.strip_prefix('/')?.strip_prefix(SERVICE_NAME)?.strip_prefix('/')?;
    UNSUPPORTED.iter().find(|(name, _)| *name == method).map(|(_, message)| *message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unsupported_methods_of_this_service_are_intercepted() {
        let split = format!("/{SERVICE_NAME}/SplitBlob");
        assert!(unsupported_message(&split).unwrap().starts_with("SplitBlob is not supported"));
        assert!(unsupported_message(&format!("/{SERVICE_NAME}/SpliceBlob")).is_some());
        assert!(unsupported_message(&format!("/{SERVICE_NAME}/FindMissingBlobs")).is_none());
        assert!(unsupported_message("/other.Service/SplitBlob").is_none());
    }
}
