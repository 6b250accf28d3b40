//! `image-factory dead-letters` on the local bus: a stage message the
//! dead-letter function itself gave up on is listed with its run, stage and
//! reason; replaying it while the factory runs sends it back to
//! `dead-letters`, whose real function then fails the run with the reason;
//! an ID that is not a dead letter, and a folder without a bus, are refused
//! and change nothing.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::Utc;
use common::{Factory, Options};
use image_factory::domain::run::{Run, RunStatus, Stage, Trigger, TriggerKind};
use image_factory::domain::version::ImageVersion;
use image_factory::host::bus::{Bus, Outgoing};
use image_factory::host::{BusSettings, DEAD_LETTER_QUEUE};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

const RUN: &str = "push-example-0123456789abcdef0123456789abcdef01234567";

/// Runs the command line with the data folder `data`.
fn image_factory(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(args)
        .env("IMAGE_FACTORY_DATA", data)
        .output()
        .expect("run image-factory")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The local bus of `data`, with the factory's queue settings.
fn bus(data: &Path) -> Bus {
    let settings = BusSettings::default();
    Bus::open(&data.join("bus.db"), move |q| settings.queue_options(q)).expect("bus")
}

/// Puts a stage message of `RUN` into the dead-letter sub-queue of
/// `dead-letters` the way the host does: forwarded there from
/// `stage-validate` with its reason, then delivered to the dead-letter
/// function and abandoned on every delivery until the bus dead-letters it.
async fn dead_letter_the_dead_letter(bus: &Bus) {
    let mut properties = Map::new();
    properties.insert("DeadLetterReason".into(), json!("MaxDeliveryCountExceeded"));
    properties.insert(
        "DeadLetterErrorDescription".into(),
        json!("delivered 5 times; last error: packer validate timed out"),
    );
    bus.send(vec![Outgoing {
        queue: DEAD_LETTER_QUEUE.into(),
        body: json!({ "runId": RUN, "stage": "validate" }).to_string(),
        properties,
        scheduled_at: None,
    }])
    .await
    .expect("send");
    let max = BusSettings::default().max_delivery_count;
    for _ in 0..max {
        let message = bus
            .receive(DEAD_LETTER_QUEUE)
            .await
            .expect("receive")
            .expect("the message");
        bus.abandon(&message, "the run store is unavailable")
            .await
            .expect("abandon");
    }
    assert_eq!(bus.depth(DEAD_LETTER_QUEUE).await.expect("depth"), 0);
}

fn listed(data: &Path) -> Vec<Value> {
    let out = image_factory(data, &["dead-letters", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("a JSON list")
}

/// A queued run of the example image: its validate stage has not started.
fn queued_run() -> Run {
    Run::new(
        RUN.parse().expect("run id"),
        "example".into(),
        ImageVersion::new(2026, 1125, 0).expect("version"),
        Trigger {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        Default::default(),
        Utc::now(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_the_function_gave_up_on_is_listed_and_its_replay_fails_the_run_with_the_reason()
 {
    let data = TempDir::new().expect("temp dir");
    dead_letter_the_dead_letter(&bus(data.path())).await;

    // Listed with what an operator needs to act.
    let letters = listed(data.path());
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter["queue"], json!(DEAD_LETTER_QUEUE));
    assert_eq!(letter["runId"], json!(RUN));
    assert_eq!(letter["stage"], json!("validate"));
    assert_eq!(letter["deliveryCount"], json!(5));
    assert_eq!(letter["reason"], json!("MaxDeliveryCountExceeded"));
    assert!(
        letter["description"]
            .as_str()
            .is_some_and(|d| d.contains("the run store is unavailable")),
        "{letter:#}"
    );
    let id = letter["id"].as_i64().expect("an id").to_string();
    let out = image_factory(data.path(), &["dead-letters", "list"]);
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("{id}  dead-letters  "))
            && line.contains(&format!("run {RUN} stage validate"))
            && line.contains("after 5 deliveries: MaxDeliveryCountExceeded: "),
        "{line}"
    );

    // The factory runs, with the run the message is about still queued.
    let factory = Factory::start_in(data, Options::default()).await;
    factory
        .app
        .store
        .create(&queued_run())
        .await
        .expect("the run is stored");
    let out = image_factory(factory.data.path(), &["dead-letters", "replay", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!(
            "replayed message {id} to dead-letters: the dead-letter function fails run {RUN} at its validate stage"
        )),
        "{}",
        text(&out.stdout)
    );

    // The real dead-letter function fails the run with the reason.
    let failed = factory.wait_status(RUN, RunStatus::Failed).await;
    let failure = failed.failure.as_ref().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Validate));
    assert!(
        failure.reason.contains("dead-lettered")
            && failure.reason.contains("MaxDeliveryCountExceeded"),
        "{}",
        failure.reason
    );
    assert!(listed(factory.data.path()).is_empty());
    assert_eq!(
        factory.bus().depth(DEAD_LETTER_QUEUE).await.expect("depth"),
        0,
        "the replayed message was completed"
    );
    let out = image_factory(factory.data.path(), &["dead-letters", "list"]);
    assert_eq!(text(&out.stdout), "no dead-lettered message\n");
    factory.stop().await;
}

#[tokio::test]
async fn replaying_an_id_that_is_no_dead_letter_is_refused_and_changes_nothing() {
    let data = TempDir::new().expect("temp dir");
    let bus = bus(data.path());
    dead_letter_the_dead_letter(&bus).await;
    // A live message is not a dead letter either.
    bus.send(vec![Outgoing {
        queue: "stage-build".into(),
        body: json!({ "runId": RUN, "stage": "build" }).to_string(),
        properties: Map::new(),
        scheduled_at: None,
    }])
    .await
    .expect("send");
    let before = listed(data.path());
    let dead = before[0]["id"].as_i64().expect("an id");
    for id in [dead + 1, dead + 1000] {
        let out = image_factory(data.path(), &["dead-letters", "replay", &id.to_string()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains(&format!(
                "no dead-lettered message has sequence number {id}"
            )),
            "{}",
            text(&out.stderr)
        );
    }
    let out = image_factory(data.path(), &["dead-letters", "replay", "not-a-number"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(listed(data.path()), before);
    assert_eq!(bus.depth("stage-build").await.expect("depth"), 1);
    assert_eq!(bus.depth(DEAD_LETTER_QUEUE).await.expect("depth"), 0);
}

#[test]
fn a_folder_without_a_local_bus_is_refused_and_gets_none() {
    let data = TempDir::new().expect("temp dir");
    for args in [
        &["dead-letters", "list"][..],
        &["dead-letters", "replay", "1"],
    ] {
        let out = image_factory(data.path(), args);
        assert_eq!(out.status.code(), Some(1));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("there is no local bus at")
                && stderr.contains("IMAGE_FACTORY_DATA")
                && stderr.contains("Service Bus"),
            "{stderr}"
        );
    }
    assert!(!data.path().join("bus.db").exists());
}
