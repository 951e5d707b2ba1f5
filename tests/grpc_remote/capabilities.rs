//! Capabilities: the cache's settings always, execution only when the daemon runs actions.

use reapi::capabilities_client::CapabilitiesClient;
use rebox::grpc::capabilities::MAX_BATCH_TOTAL_SIZE;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;

use crate::server::{Options, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn cache_capabilities_describe_the_store() {
    let server = TestServer::start().await;
    let mut client = CapabilitiesClient::new(server.channel.clone());
    let capabilities =
        client.get_capabilities(reapi::GetCapabilitiesRequest::default()).await.unwrap().into_inner();
    let cache = capabilities.cache_capabilities.expect("cache capabilities");
    assert_eq!(cache.digest_functions, [reapi::digest_function::Value::Sha256 as i32]);
    assert!(cache.action_cache_update_capabilities.unwrap().update_enabled);
    assert_eq!(cache.max_batch_total_size_bytes, MAX_BATCH_TOTAL_SIZE as i64);
    assert_eq!(
        cache.symlink_absolute_path_strategy,
        reapi::symlink_absolute_path_strategy::Value::Allowed as i32
    );
    assert!(cache.supported_compressors.is_empty());
    assert!(capabilities.execution_capabilities.is_none(), "no runner, no execution");
    let (low, high) = (capabilities.low_api_version.unwrap(), capabilities.high_api_version.unwrap());
    assert!((low.major, low.minor) <= (high.major, high.minor));

    let request = reapi::GetCapabilitiesRequest { instance_name: "x".into() };
    assert_eq!(client.get_capabilities(request).await.unwrap_err().code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn execution_is_advertised_when_the_daemon_runs_actions() {
    let server = TestServer::start_with(Options { execution_enabled: true, ..Default::default() }).await;
    let mut client = CapabilitiesClient::new(server.channel.clone());
    let capabilities =
        client.get_capabilities(reapi::GetCapabilitiesRequest::default()).await.unwrap().into_inner();
    let execution = capabilities.execution_capabilities.expect("execution capabilities");
    assert!(execution.exec_enabled);
    assert_eq!(execution.digest_function, reapi::digest_function::Value::Sha256 as i32);
    assert_eq!(execution.digest_functions, [reapi::digest_function::Value::Sha256 as i32]);
}
