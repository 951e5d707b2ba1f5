//! ActionCache: results stored on disk in buildbox-casd's layout, and a result whose outputs
//! left the CAS is a miss.

use prost::Message;
use reapi::action_cache_client::ActionCacheClient;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use tonic::Code;

use crate::server::{TestServer, files_under};
use crate::{digest, proto};

fn get(action: &rebox::digest::Digest) -> reapi::GetActionResultRequest {
    reapi::GetActionResultRequest { action_digest: Some(proto(action)), ..Default::default() }
}

fn update(action: &rebox::digest::Digest, result: reapi::ActionResult) -> reapi::UpdateActionResultRequest {
    reapi::UpdateActionResultRequest {
        action_digest: Some(proto(action)),
        action_result: Some(result),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_result_is_returned_and_kept_as_buildbox_casd_keeps_it() {
    let server = TestServer::start().await;
    let mut cache = ActionCacheClient::new(server.channel.clone());
    let action = digest(b"action");
    let error = cache.get_action_result(get(&action)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().contains(&action.to_string()), "{}", error.message());

    let out = server.store().put_bytes(b"output").unwrap();
    let result = reapi::ActionResult {
        exit_code: 3,
        stdout_raw: b"inline".to_vec(),
        output_files: vec![reapi::OutputFile {
            path: "out".into(),
            digest: Some(proto(&out)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let stored = cache.update_action_result(update(&action, result.clone())).await.unwrap().into_inner();
    assert_eq!(stored, result);
    let inline = reapi::GetActionResultRequest { inline_stdout: true, inline_stderr: true, ..get(&action) };
    assert_eq!(cache.get_action_result(inline).await.unwrap().into_inner(), result, "returned as stored");

    let hex = action.hash_hex();
    let entry = server.root().join("actioncache/objects").join(&hex[..2]).join(&hex[2..]);
    assert_eq!(files_under(&server.root().join("actioncache")), vec![entry.clone()]);
    assert_eq!(reapi::ActionResult::decode(std::fs::read(entry).unwrap().as_slice()).unwrap(), result);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_whose_outputs_are_gone_is_a_miss_until_they_return() {
    let server = TestServer::start().await;
    let mut cache = ActionCacheClient::new(server.channel.clone());
    let action = digest(b"action");
    let stderr = digest(b"stderr text");
    let result = reapi::ActionResult { stderr_digest: Some(proto(&stderr)), ..Default::default() };
    cache.update_action_result(update(&action, result.clone())).await.unwrap();
    let error = cache.get_action_result(get(&action)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(
        error.message().contains("stderr") && error.message().contains(&stderr.to_string()),
        "{}",
        error.message()
    );

    server.store().put_bytes(b"stderr text").unwrap();
    assert_eq!(cache.get_action_result(get(&action)).await.unwrap().into_inner(), result);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_updates_are_refused_and_write_nothing() {
    let server = TestServer::start().await;
    let mut cache = ActionCacheClient::new(server.channel.clone());
    let bad = reapi::Digest { hash: "zz".into(), size_bytes: 1 };
    let bad_action = reapi::UpdateActionResultRequest {
        action_digest: Some(bad.clone()),
        ..update(&digest(b"a"), Default::default())
    };
    let bad_output = update(
        &digest(b"a"),
        reapi::ActionResult {
            output_files: vec![reapi::OutputFile {
                path: "f".into(),
                digest: Some(bad),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let no_result =
        reapi::UpdateActionResultRequest { action_result: None, ..update(&digest(b"a"), Default::default()) };
    for (request, words) in [
        (bad_action, "action_digest"),
        (bad_output, "output file \"f\""),
        (no_result, "action_result is missing"),
    ] {
        let error = cache.update_action_result(request).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(error.message().contains(words), "{}", error.message());
    }
    assert!(files_under(&server.root().join("actioncache")).is_empty());
    let wrong_instance = reapi::GetActionResultRequest { instance_name: "x".into(), ..get(&digest(b"a")) };
    assert_eq!(cache.get_action_result(wrong_instance).await.unwrap_err().code(), Code::InvalidArgument);
}
