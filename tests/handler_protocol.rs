//! The handler as the Azure Functions host meets it: invocations POSTed to
//! `/{function}` in the host's encoding. Malformed or unknown invocations are
//! refused with a clear status and change nothing; stage messages delivered
//! twice or out of order do no work twice.

mod common;

use common::Factory;
use image_factory::domain::run::{RunStatus, Stage, StageStatus};
use image_factory::protocol::InvocationRequest;
use serde_json::json;

/// A payload the Functions host's documentation or a capture of a real host
/// shows, verbatim (the third-party folder's `project-fixtures-protocol`).
fn published_payload(name: &str) -> InvocationRequest {
    let path = common::third_party("project-fixtures-protocol").join(name);
    let text = std::fs::read_to_string(&path).expect("read the published payload");
    serde_json::from_str(&text).expect("the published payload is an invocation")
}

#[test]
fn the_documented_and_the_captured_queue_invocations_decode() {
    // The documentation shows typed metadata; a captured host stringifies it.
    let documented = published_payload("queue-request.docs-verbatim.json");
    assert!(documented.metadata_u32("DequeueCount").is_some());
    let captured = published_payload("queue-request.ballerina-verbatim.json");
    assert_eq!(captured.metadata_u32("DequeueCount"), Some(1));
}

#[test]
fn the_documented_http_invocation_decodes() {
    let documented = published_payload("http-request.docs-order-verbatim.json")
        .http_request()
        .expect("the documented HTTP invocation decodes");
    assert_eq!(documented.method, "POST");
}

async fn invoke(
    factory: &Factory,
    function: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = factory
        .http
        .post(format!("{}/{function}", factory.handler_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

/// A stage message as the host delivers it: body JSON-encoded twice, metadata stringified.
fn stage_message(run_id: &str, stage: &str, message_id: &str, delivery: u32) -> serde_json::Value {
    let body = json!({ "runId": run_id, "stage": stage }).to_string();
    json!({
        "Data": { "message": serde_json::to_string(&body).unwrap() },
        "Metadata": {
            "DeliveryCount": delivery.to_string(),
            "MessageId": serde_json::to_string(message_id).unwrap(),
            "sys": { "MethodName": format!("stage-{stage}"), "UtcNow": "2026-11-25T09:00:00Z", "RandGuid": "x" }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readiness_probe_answers() {
    let factory = Factory::start().await;
    let probe = factory
        .http
        .get(format!("{}/", factory.handler_url))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_unknown_invocations_are_refused_and_store_nothing() {
    let factory = Factory::start().await;
    let cases = [
        (
            "no-such-function",
            json!({ "Data": {}, "Metadata": {} }),
            404,
        ),
        ("stage-build", json!({ "Data": {}, "Metadata": {} }), 400),
        (
            "stage-build",
            json!({ "Data": { "message": "\"not json\"" }, "Metadata": {} }),
            400,
        ),
        (
            "stage-build",
            json!({ "Data": { "message": "{\"runId\":\"r\",\"stage\":\"build\"}" }, "Metadata": {} }),
            400,
        ),
        ("stage-build", stage_message("r", "validate", "m1", 1), 400),
        ("stage-build", stage_message("r", "deploy", "m1", 1), 400),
        ("git-push", json!({ "Data": {}, "Metadata": {} }), 400),
        (
            "approval",
            json!({ "Data": { "req": 42 }, "Metadata": {} }),
            400,
        ),
        ("patch-tuesday", json!({ "Data": {}, "Metadata": {} }), 400),
    ];
    for (function, body, status) in cases {
        let (got, answer) = invoke(&factory, function, body.clone()).await;
        assert_eq!(got, status, "{function} {body}: {answer}");
        assert!(
            answer["Logs"][0].as_str().is_some_and(|l| !l.is_empty()),
            "{function}: the error says why"
        );
    }
    let raw = factory
        .http
        .post(format!("{}/runs", factory.handler_url))
        .body("{ this is not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert!(factory.runs().await.is_empty());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_stage_message_does_no_work_twice() {
    let factory = Factory::start().await;
    let commit = "0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let build = run.stage(Stage::Build).clone();

    // The build message again, as a later delivery of the original and as a copy.
    let original = &build.attempts[0].execution;
    for (message_id, delivery) in [
        (original.message_id.as_str(), original.delivery + 1),
        ("a-copy", 1),
    ] {
        let (status, answer) = invoke(
            &factory,
            "stage-build",
            stage_message(&id, "build", message_id, delivery),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        // The next stage already ran, so nothing is dispatched again either.
        assert_eq!(answer["Outputs"], json!({}), "{answer}");
        assert!(
            answer["Logs"][0]
                .as_str()
                .unwrap()
                .contains("nothing to do"),
            "{answer}"
        );
    }
    let after = factory.run(&id).await.unwrap();
    assert_eq!(
        after.stage(Stage::Build),
        &build,
        "the build was not run again"
    );
    assert_eq!(after.status, RunStatus::WaitingForApproval);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_for_a_stage_whose_predecessor_has_not_finished_fails_and_records_nothing() {
    let factory = Factory::start().await;
    let commit = "1a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let (status, answer) = invoke(
        &factory,
        "stage-release",
        stage_message(&id, "release", "early", 1),
    )
    .await;
    assert_eq!(status, 500, "{answer}");
    assert!(
        answer["Logs"][0]
            .as_str()
            .unwrap()
            .contains("approve has not succeeded"),
        "{answer}"
    );
    let run = factory.run(&id).await.unwrap();
    assert_eq!(run.stage(Stage::Release).status, StageStatus::Pending);
    assert!(run.release.is_none());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_message_for_a_finished_run_is_completed_without_work() {
    let factory = Factory::start().await;
    let (status, answer) = invoke(
        &factory,
        "stage-validate",
        stage_message("no-such-run", "validate", "m", 1),
    )
    .await;
    assert_eq!(
        status, 500,
        "an unknown run is retried, then dead-lettered: {answer}"
    );
    let commit = "2a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&id, "platform-lead");
    factory.decide(&link, "reject").await;
    factory.wait_status(&id, RunStatus::Rejected).await;
    let (status, answer) = invoke(
        &factory,
        "stage-validate",
        stage_message(&id, "validate", "late", 1),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["Logs"][0]
            .as_str()
            .unwrap()
            .contains("already rejected")
    );
    assert_eq!(
        factory.run(&id).await.unwrap().stage(Stage::Validate),
        run.stage(Stage::Validate)
    );
    factory.stop().await;
}
