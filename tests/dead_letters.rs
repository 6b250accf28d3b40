//! `image-factory dead-letters` against the real local bus and a local
//! factory: a stage message dead-lettered after its five deliveries waits in
//! its queue's dead-letter sub-queue and is listed, with its run, stage and
//! reason, while the factory is stopped; started, the factory's dead-letter
//! function fails the run with that reason and the list is empty; `replay`
//! of that run starts its image again as a forced out-of-band run naming it,
//! and is refused, starting nothing, for a run that is still going, one
//! that failed otherwise, and one the factory does not know; a data folder
//! without a bus is refused and gets none.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use chrono::Utc;
use common::{Factory, OPERATOR_TOKEN, Options};
use image_factory::domain::run::{Failure, Run, RunStatus, Stage, Trigger, TriggerKind};
use image_factory::domain::version::ImageVersion;
use image_factory::host::bus::{Bus, Outgoing};
use image_factory::host::{BusSettings, DEAD_LETTER_SUFFIX};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

const RUN: &str = "push-example-0123456789abcdef0123456789abcdef01234567";
const QUEUE: &str = "stage-validate";

/// Runs the command line with the data folder `data`, against `url`.
fn image_factory(data: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(args)
        .env("IMAGE_FACTORY_DATA", data)
        .env("IMAGE_FACTORY_URL", url)
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN)
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

/// Sends `RUN`'s validate message and has every delivery of it fail, as the
/// host does when the stage function fails: after the last one, the bus
/// moves it to the queue's dead-letter sub-queue.
async fn dead_letter_the_stage_message(bus: &Bus) {
    bus.send(vec![Outgoing {
        queue: QUEUE.into(),
        body: json!({ "runId": RUN, "stage": "validate" }).to_string(),
        properties: Map::new(),
        scheduled_at: None,
    }])
    .await
    .expect("send");
    for _ in 0..BusSettings::default().max_delivery_count {
        let message = bus
            .receive(QUEUE)
            .await
            .expect("receive")
            .expect("the message");
        bus.abandon(&message, "packer validate timed out")
            .await
            .expect("abandon");
    }
    assert_eq!(bus.depth(QUEUE).await.expect("depth"), 0);
}

fn listed(data: &Path) -> Vec<Value> {
    let out = image_factory(
        data,
        "http://127.0.0.1:9",
        &["dead-letters", "list", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("a JSON list")
}

/// A queued run of the example image: its validate stage has not started.
fn queued_run(id: &str) -> Run {
    Run::new(
        id.parse().expect("run id"),
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
async fn a_dead_letter_is_listed_until_its_function_fails_the_run_and_replay_starts_the_image_again()
 {
    // The run exists; the factory stops before its message is sent.
    let factory = Factory::start_with(Options::default()).await;
    factory
        .app
        .store
        .create(&queued_run(RUN))
        .await
        .expect("the run is stored");
    let data = factory.stop().await;
    dead_letter_the_stage_message(&bus(data.path())).await;

    // Listed, while nothing handles it, with what an operator needs.
    let letters = listed(data.path());
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(
        letter["queue"],
        json!(format!("{QUEUE}{DEAD_LETTER_SUFFIX}"))
    );
    assert_eq!(letter["runId"], json!(RUN));
    assert_eq!(letter["stage"], json!("validate"));
    assert_eq!(letter["deliveryCount"], json!(0));
    assert_eq!(letter["reason"], json!("MaxDeliveryCountExceeded"));
    assert!(
        letter["description"].as_str().is_some_and(
            |d| d.contains("delivered 5 times") && d.contains("packer validate timed out")
        ),
        "{letter:#}"
    );
    let out = image_factory(data.path(), "http://127.0.0.1:9", &["dead-letters", "list"]);
    let line = text(&out.stdout);
    assert!(
        line.starts_with(&format!("{QUEUE}{DEAD_LETTER_SUFFIX}  "))
            && line.contains(&format!("run {RUN} stage validate"))
            && line.contains("tried 0 time(s) by its function: MaxDeliveryCountExceeded: "),
        "{line}"
    );

    // Started again, the factory's dead-letter function fails the run.
    let factory = Factory::start_in(data, Options::default()).await;
    let failed = factory.wait_status(RUN, RunStatus::Failed).await;
    let failure = failed.failure.as_ref().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Validate));
    assert!(
        failure.reason.contains("dead-lettered")
            && failure.reason.contains("packer validate timed out"),
        "{}",
        failure.reason
    );
    assert!(listed(factory.data.path()).is_empty());
    let out = image_factory(factory.data.path(), &factory.url, &["dead-letters", "list"]);
    assert_eq!(text(&out.stdout), "no dead letter waiting\n");

    // Replay: the image again, forced, naming the run.
    let out = image_factory(
        factory.data.path(),
        &factory.url,
        &["dead-letters", "replay", RUN],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the factory's answer");
    let again = answer["runId"].as_str().expect("a new run").to_string();
    assert!(again.starts_with("oob-example-"), "{answer}");
    let run = factory.run(&again).await.expect("the new run is stored");
    assert_eq!(run.trigger.kind, TriggerKind::OutOfBand);
    assert!(run.trigger.force);
    assert_eq!(
        run.trigger.reason.as_deref(),
        Some(
            format!("replay of run {RUN}, failed at its validate stage by a dead-lettered message")
                .as_str()
        )
    );

    // Refused, starting nothing: a run still going, one failed otherwise,
    // and one the factory does not know.
    let mut otherwise = queued_run("push-example-1111111111111111111111111111111111111111");
    otherwise.status = RunStatus::Failed;
    otherwise.failure = Some(Failure {
        stage: Some(Stage::Build),
        reason: "packer build failed: exit status 1".into(),
        at: Utc::now(),
        diagnosis: None,
    });
    factory.app.store.create(&otherwise).await.expect("stored");
    let pending = queued_run("push-example-2222222222222222222222222222222222222222");
    factory.app.store.create(&pending).await.expect("stored");
    let before = factory.runs().await.len();
    for (id, says) in [
        (pending.id.to_string(), "is queued: no dead letter has failed it".to_string()),
        (
            otherwise.id.to_string(),
            "failed at build stage for another reason than a dead letter (packer build failed: exit status 1); to build example again: `image-factory trigger --image example --force".to_string(),
        ),
        (
            "push-example-3333333333333333333333333333333333333333".to_string(),
            "404".to_string(),
        ),
    ] {
        let out = image_factory(factory.data.path(), &factory.url, &["dead-letters", "replay", &id]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        assert!(text(&out.stderr).contains(&says), "{id}: {}", text(&out.stderr));
    }
    assert_eq!(
        factory.runs().await.len(),
        before,
        "a refused replay started a run"
    );
    let out = image_factory(
        factory.data.path(),
        &factory.url,
        &["dead-letters", "replay", "not/a run"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    factory.stop().await;
}

#[test]
fn a_folder_without_a_local_bus_is_refused_and_gets_none() {
    let data = TempDir::new().expect("temp dir");
    let out = image_factory(data.path(), "http://127.0.0.1:9", &["dead-letters", "list"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("there is no local bus at")
            && stderr.contains("IMAGE_FACTORY_DATA")
            && stderr.contains("Service Bus"),
        "{stderr}"
    );
    assert!(!data.path().join("bus.db").exists());
}
