//! The ContentAddressableStorage server as served: the generated server, decorated. It takes
//! FindMissingBlobs itself, decoded by rebox's own wire code ([`super::find_missing_wire`]), and
//! answers the RPCs rebox does not implement with a message that says so.
//!
//! SplitBlob and SpliceBlob (REAPI 2.4 blob chunking) are not in the protos BuildStream 2.8.1
//! ships, so the generated server would answer them with a bare `UNIMPLEMENTED` and no message.
//! Clients only call them when a server advertises chunking, which rebox does not; a client that
//! tries anyway learns why it failed.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService};

use super::Cas;
use super::find_missing::FindMissingMethod;
use super::find_missing_wire::FindMissingCodec;
use crate::grpc::{MAX_MESSAGE_SIZE, Shared};
use crate::proto::build::bazel::remote::execution::v2::content_addressable_storage_server::{
    ContentAddressableStorageServer, SERVICE_NAME,
};

/// RPCs of the service that rebox answers with `UNIMPLEMENTED` and an explanation.
const UNSUPPORTED: [(&str, &str); 2] = [
    ("SplitBlob", "SplitBlob is not supported: rebox does not split blobs into chunks; read the whole blob"),
    ("SpliceBlob", "SpliceBlob is not supported: rebox does not splice chunks; upload the whole blob"),
];

/// The ContentAddressableStorage server: FindMissingBlobs on the wire types, clear answers for
/// unsupported RPCs, and the generated server for the rest.
#[derive(Debug, Clone)]
pub struct CasServer {
    inner: ContentAddressableStorageServer<Cas>,
    find_missing: FindMissingMethod,
}

impl CasServer {
    /// The server over `shared`, with [`MAX_MESSAGE_SIZE`] as its message size limit.
    pub fn new(shared: Arc<Shared>) -> Self {
        let inner = ContentAddressableStorageServer::new(Cas::new(Arc::clone(&shared)))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self { inner, find_missing: FindMissingMethod::new(shared) }
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
        let method = method_of(request.uri().path());
        if method == Some("FindMissingBlobs") {
            let find_missing = self.find_missing.clone();
            return Box::pin(async move {
                let mut grpc = Grpc::new(FindMissingCodec)
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE);
                Ok(grpc.unary(find_missing, request).await)
            });
        }
        if let Some(message) = method.and_then(unsupported_message) {
            let response = tonic::Status::unimplemented(message).into_http();
            return Box::pin(std::future::ready(Ok(response)));
        }
        self.inner.call(request)
    }
}

/// The method `path` (`/SERVICE/METHOD`) names, if it is one of this service's.
fn method_of(path: &str) -> Option<&str> {
    path.strip_prefix('/')?.strip_prefix(SERVICE_NAME)?.strip_prefix('/')
}

/// The explanation for `method` if rebox does not support it.
fn unsupported_message(method: &str) -> Option<&'static str> {
    UNSUPPORTED.iter().find(|(name, _)| *name == method).map(|(_, message)| *message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_unsupported_methods_of_this_service_are_intercepted() {
        let unsupported = |path: &str| method_of(path).and_then(unsupported_message);
        let split = format!("/{SERVICE_NAME}/SplitBlob");
        assert!(unsupported(&split).unwrap().starts_with("SplitBlob is not supported"));
        assert!(unsupported(&format!("/{SERVICE_NAME}/SpliceBlob")).is_some());
        assert!(unsupported(&format!("/{SERVICE_NAME}/FindMissingBlobs")).is_none());
        assert!(unsupported("/other.Service/SplitBlob").is_none());
        assert_eq!(method_of(&format!("/{SERVICE_NAME}/FindMissingBlobs")), Some("FindMissingBlobs"));
        assert_eq!(method_of("/other.Service/FindMissingBlobs"), None);
    }
}
