//! Cancelling a run and pausing a failing schedule, on the local factory as
//! an operator drives them: a push whose packer build is still running is
//! cancelled through the runs API, packer's process is stopped and the run
//! ends `cancelled` once, owing its event; an image whose base image updates
//! keep failing has its scheduled runs paused (its approvers told), a new
//! base image version starts nothing, and an operator's resume lets the next
//! one through (docs/cancel-and-pause.md).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Factory, OPERATOR_TOKEN, Options, copy_example};
use image_factory::domain::run::{EventType, FollowUpKind, RunStatus, Stage, StageStatus};
use serde_json::{Value, json};

const COMMIT: &str = "c4c4c4c4e5f60718293a4b5c6d7e8f9012345678";

/// POSTs `body` to `path` with the operator token; the status and answer.
async fn operator_post(factory: &Factory, path: &str, body: Value) -> (u16, Value) {
    let response = factory
        .http
        .post(format!("{}{path}", factory.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Whether the process `pid` is still alive (and not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_build_has_its_packer_stopped_and_the_run_ends_cancelled_once() {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let pid_file = images.path().join("provision.pid");
    std::fs::write(
        dir.join("scripts/provision.sh"),
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 300\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    factory
        .push(COMMIT, &["images/example/scripts/provision.sh"])
        .await;
    let id = format!("push-example-{COMMIT}");
    factory
        .wait_for(&id, Duration::from_secs(60), |run| {
            run.stage(Stage::Build).status == StageStatus::Running && pid_file.exists()
        })
        .await;
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(alive(&pid), "the build's provisioner runs");

    // Without the token nothing is cancelled.
    let refused = factory
        .http
        .post(format!("{}/api/runs/{id}", factory.url))
        .json(&json!({ "action": "cancel" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert_eq!(
        factory.run(&id).await.unwrap().status,
        RunStatus::Running,
        "a refused cancel changes nothing"
    );

    let (status, answer) = operator_post(
        &factory,
        &format!("/api/runs/{id}"),
        json!({ "action": "cancel", "reason": "wrong commit" }),
    )
    .await;
    assert!(matches!(status, 200 | 202), "{status}: {answer}");
    let run = factory.wait_status(&id, RunStatus::Cancelled).await;
    let cancellation = run.cancellation.clone().expect("the cancel is recorded");
    assert_eq!(cancellation.by, "operator");
    assert_eq!(cancellation.reason.as_deref(), Some("wrong commit"));
    assert!(
        cancellation.freeing.finished_at.is_some(),
        "{cancellation:?}"
    );
    assert!(
        !cancellation.freeing.freed.is_empty(),
        "what was freed is said: {cancellation:?}"
    );
    for _ in 0..50 {
        if !alive(&pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!alive(&pid), "packer's provisioner was stopped");
    let owed: Vec<EventType> = run
        .follow_ups
        .iter()
        .map(|f| match f.kind {
            FollowUpKind::Event { event } => event,
        })
        .collect();
    assert_eq!(
        owed,
        [EventType::Cancelled],
        "it owes its ending's event once"
    );
    assert_ne!(run.stage(Stage::Test).status, StageStatus::Running);

    // Again: nothing changes; its answer is the run's state.
    let (status, again) = operator_post(
        &factory,
        &format!("/api/runs/{id}"),
        json!({ "action": "cancel", "reason": "twice" }),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let after = factory.run(&id).await.unwrap();
    assert_eq!(
        after.cancellation, run.cancellation,
        "the first cancel stands"
    );
    assert_eq!(after.follow_ups.len(), 1);

    // An unknown run, and a malformed body, are refused.
    let (status, _) = operator_post(
        &factory,
        "/api/runs/push-example-0000000000000000000000000000000000000000",
        json!({ "action": "cancel" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = operator_post(
        &factory,
        &format!("/api/runs/{id}"),
        json!({ "action": "cancel", "reason": "x".repeat(501) }),
    )
    .await;
    assert_eq!(status, 400, "a reason over 500 characters is refused");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_run_cannot_be_cancelled() {
    let factory = Factory::start().await;
    let run = factory
        .push_and_wait(COMMIT, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(run.id.as_str(), "platform-lead");
    factory.decide(&link, "approve").await;
    let released = factory
        .wait_status(run.id.as_str(), RunStatus::Released)
        .await;
    let (status, answer) = operator_post(
        &factory,
        &format!("/api/runs/{}", run.id),
        json!({ "action": "cancel", "reason": "too late" }),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let after = factory.run(run.id.as_str()).await.unwrap();
    assert_eq!(after.status, RunStatus::Released);
    assert_eq!(after.cancellation, None);
    assert_eq!(after.follow_ups, released.follow_ups);
    factory.stop().await;
}

/// Writes the local Marketplace with `versions` of the example's base.
fn marketplace(data: &Path, versions: &[&str]) {
    let list = versions
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        data.join("marketplace.toml"),
        format!(
            "[[image]]\npublisher = \"MicrosoftWindowsServer\"\noffer = \"WindowsServer\"\nsku = \"2022-datacenter-azure-edition\"\nversions = [{list}]\n"
        ),
    )
    .unwrap();
}

/// The fleet row of `image` through the runs API.
async fn fleet_row(factory: &Factory, image: &str) -> Value {
    let fleet: Value = factory.get_json("/api/runs?view=fleet").await;
    fleet["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["image"] == image)
        .cloned()
        .unwrap_or_else(|| panic!("{image} is in the fleet: {fleet}"))
}

/// Fires the base-image timer and waits for the run of `version` to fail.
async fn failing_base_run(factory: &Factory, version: &str) {
    factory.fire_timer("base-image").await;
    let id = format!("base-example-{version}");
    let run = factory
        .wait_for(&id, Duration::from_secs(60), |r| r.status.is_terminal())
        .await;
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.failure);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_scheduled_runs_pause_the_image_until_an_operator_resumes_it() {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).unwrap();
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "{toml}\n[base_image]\npublisher = \"MicrosoftWindowsServer\"\noffer = \"WindowsServer\"\nsku = \"2022-datacenter-azure-edition\"\nlocation = \"westeurope\"\n\n[schedule]\npause_after_failures = 2\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("scripts/provision.sh"),
        "#!/bin/sh\necho 'the base image lost its feed' >&2\nexit 3\n",
    )
    .unwrap();
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let data = factory.data.path().to_path_buf();

    marketplace(&data, &["20348.1.1"]);
    failing_base_run(&factory, "20348.1.1").await;
    assert!(
        fleet_row(&factory, "example").await.get("paused").is_none(),
        "one failure of two pauses nothing"
    );
    marketplace(&data, &["20348.1.1", "20348.2.1"]);
    failing_base_run(&factory, "20348.2.1").await;

    let row = fleet_row(&factory, "example").await;
    let paused = &row["paused"];
    assert_eq!(paused["pauseAfter"], 2, "{row}");
    assert_eq!(paused["pausedBy"], "base-example-20348.2.1", "{row}");
    assert_eq!(paused["failures"].as_array().map(Vec::len), Some(2));
    // The approver was told, on the local channel.
    let notice = data.join("outbox/base-example-20348.2.1/schedule-paused.platform-lead.json");
    let told =
        std::fs::read_to_string(&notice).unwrap_or_else(|e| panic!("{}: {e}", notice.display()));
    assert!(told.contains("paused"), "{told}");

    // A newer base image starts nothing while paused; a push still builds.
    marketplace(&data, &["20348.1.1", "20348.2.1", "20348.3.1"]);
    factory.fire_timer("base-image").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        factory.run("base-example-20348.3.1").await.is_none(),
        "a paused schedule starts no run"
    );
    let pushed = factory
        .push(COMMIT, &["images/example/scripts/provision.sh"])
        .await;
    assert!(pushed.status().is_success());
    factory
        .wait_for(
            &format!("push-example-{COMMIT}"),
            Duration::from_secs(60),
            |r| r.status.is_terminal(),
        )
        .await;

    // The operator resumes it, once.
    let (status, answer) = operator_post(
        &factory,
        "/api/images/example/resume",
        json!({ "reason": "feed restored" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["resumed"]["by"], "operator");
    assert_eq!(answer["recordedOn"], "base-example-20348.2.1");
    let (status, again) = operator_post(&factory, "/api/images/example/resume", json!({})).await;
    assert_eq!(status, 409, "not paused any more: {again}");
    assert!(fleet_row(&factory, "example").await.get("paused").is_none());

    factory.fire_timer("base-image").await;
    factory
        .wait_for("base-example-20348.3.1", Duration::from_secs(60), |r| {
            r.status.is_terminal()
        })
        .await;
    factory.stop().await;
}
