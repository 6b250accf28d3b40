//! Release events on the local factory, delivered to a real receiver on
//! loopback that verifies every delivery with the Standard Webhooks
//! reference library (npm `standardwebhooks` 1.1.1): a released run, a
//! rollback asked of the factory (`image-factory rollback --url`) and a
//! failed run each deliver one signed CloudEvent; the rollback makes the
//! earlier version current on the image page, the fleet, the changelog and
//! in `image-version.json`, with who and why, and what cannot be rolled
//! back is refused with nothing changed; forged and replayed deliveries are
//! refused by the receiver; a receiver that is down or never answers costs
//! the release nothing, and the sweeper delivers the event later, once,
//! with the same id. A rollback made with `--direct` from a shell without
//! the factory's event settings stays owed, and the factory's sweeper
//! delivers it. A sweep against a receiver that never answers ends within
//! its budget and carries the rest over.

mod common;

use std::time::Duration;

use cloudevents::AttributesReader;
use common::event_receiver::{self, Receiver, with_webhook};
use common::{Factory, Options, copy_example};
use image_factory::domain::run::{
    Delivery, EventType, FollowUpKind, Run, RunStatus, Stage, StageStatus, Trigger, TriggerKind,
};
use image_factory::followups::SweepLimits;
use serde_json::Value;

const COMMIT: &str = "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3";

/// Approves the run and waits until it is released.
async fn release(factory: &Factory, commit: &str) -> Run {
    let run = factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    factory.wait_status(&run.id, RunStatus::Released).await
}

/// The run once its only delivery has had an attempt recorded.
async fn attempted(factory: &Factory, id: &str) -> (Run, Delivery) {
    let run = factory
        .wait_for(id, Duration::from_secs(30), |r| {
            r.follow_ups.first().is_some_and(|f| {
                f.deliveries
                    .first()
                    .is_some_and(|d| d.delivered_at.is_some() || d.last_error.is_some())
            })
        })
        .await;
    let delivery = run.follow_ups[0].deliveries[0].clone();
    (run, delivery)
}

/// Parses a delivered body with the CloudEvents SDK (which refuses an
/// event the specification does not allow) and answers it as JSON.
fn cloud_event(body: &str) -> Value {
    let event: cloudevents::Event =
        serde_json::from_str(body).expect("the body is a CloudEvents 1.0 event");
    assert_eq!(event.specversion(), cloudevents::event::SpecVersion::V10);
    serde_json::from_str(body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_delivers_one_verified_cloud_event_and_forgeries_and_replays_are_refused() {
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let factory =
        Factory::start_with(with_webhook(Options::default(), &receiver.url, &secret)).await;
    let released = release(&factory, COMMIT).await;
    let (run, delivery) = attempted(&factory, &released.id).await;
    assert!(delivery.delivered_at.is_some(), "{delivery:?}");
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.target, format!("webhook {}", receiver.url));

    let verified = receiver.wait_verified(1).await;
    assert_eq!(verified.len(), 1, "one event per release");
    let delivered = &verified[0];
    let event = cloud_event(delivered["body"].as_str().unwrap());
    assert_eq!(event["type"], "image-factory.image.released");
    assert_eq!(event["subject"], format!("example/{}", run.version));
    assert_eq!(event["source"], factory.url);
    assert_eq!(event["id"], run.follow_ups[0].id);
    assert_eq!(delivered["id"], event["id"], "webhook-id is the event's id");
    assert_eq!(
        delivered["contentType"],
        "application/cloudevents+json; charset=utf-8"
    );
    let data = &event["data"];
    assert_eq!(data["runId"], run.id.as_str());
    assert_eq!(data["gitCommit"], COMMIT);
    assert_eq!(
        data["imageVersion"]["imageVersion"],
        run.version.to_string()
    );
    assert_eq!(data["imageVersion"]["gitCommit"], COMMIT);
    assert_eq!(
        data["links"]["run"],
        format!("{}/api/runs/{}", factory.url, run.id)
    );

    // What an attacker can do with a captured delivery is refused.
    let body = delivered["body"].as_str().unwrap();
    let id = delivered["id"].as_str().unwrap();
    let signature = delivered["signature"].as_str().unwrap();
    let now = chrono::Utc::now().timestamp();
    let http = reqwest::Client::new();
    let send = |id: String, timestamp: i64, signature: String, body: String| {
        http.post(&receiver.url)
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
    };
    let sign = |key: &str, id: &str, timestamp: i64, body: &str| {
        standardwebhooks::Webhook::new(key)
            .unwrap()
            .sign(id, timestamp, body.as_bytes())
            .unwrap()
    };
    let tampered = body.replace(
        "image-factory.image.released",
        "image-factory.image.rolled-back",
    );
    let other_key = event_receiver::secret();
    for (what, answer) in [
        (
            "the captured signature with a fresh timestamp",
            send(
                id.into(),
                delivered["timestamp"].as_i64().unwrap() + 60,
                signature.into(),
                body.into(),
            )
            .await,
        ),
        (
            "a changed body under the captured signature",
            send(
                id.into(),
                delivered["timestamp"].as_i64().unwrap(),
                signature.into(),
                tampered.clone(),
            )
            .await,
        ),
        (
            "a body signed with another secret",
            send(
                "forged-1".into(),
                now,
                sign(&other_key, "forged-1", now, &tampered),
                tampered.clone(),
            )
            .await,
        ),
        (
            "a correctly signed delivery ten minutes old",
            send(
                id.into(),
                now - 600,
                sign(&secret, id, now - 600, body),
                body.into(),
            )
            .await,
        ),
    ] {
        assert_eq!(answer.unwrap().status(), 401, "{what} must be refused");
    }
    let all = receiver.deliveries().await;
    assert_eq!(all["refused"].as_array().unwrap().len(), 4, "{all}");
    assert_eq!(all["verified"].as_array().unwrap().len(), 1);
    assert!(all["duplicates"].as_array().unwrap().is_empty(), "{all}");

    // Nothing is sent twice: a sweep finds nothing due.
    factory.sweep().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = receiver.deliveries().await;
    assert_eq!(all["verified"].as_array().unwrap().len(), 1);
    assert!(all["duplicates"].as_array().unwrap().is_empty(), "{all}");
    factory.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_delivers_a_verified_failed_event_with_the_reason() {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let build = std::fs::read_to_string(dir.join("build.pkr.hcl")).unwrap();
    std::fs::write(
        dir.join("build.pkr.hcl"),
        build.replace(
            "IMAGE_NAME=${var.image_name}",
            "IMAGE_NAME=${var.image_nmae}",
        ),
    )
    .unwrap();
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let factory = Factory::start_with(with_webhook(
        Options::with_images(images.path()),
        &receiver.url,
        &secret,
    ))
    .await;
    let failed = factory.push_and_wait(COMMIT, RunStatus::Failed).await;
    let verified = receiver.wait_verified(1).await;
    let event = cloud_event(verified[0]["body"].as_str().unwrap());
    assert_eq!(event["type"], "image-factory.run.failed");
    assert_eq!(event["subject"], format!("example/{}", failed.version));
    assert_eq!(event["data"]["status"], "failed");
    assert_eq!(event["data"]["failure"]["stage"], "validate");
    assert!(
        event["data"]["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("image_nmae"),
        "{event}"
    );
    assert!(event["data"]["imageVersion"].is_null());
    factory.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_is_down_costs_the_release_nothing_and_the_sweeper_delivers_later_once() {
    let secret = event_receiver::secret();
    let port = common::child::free_port();
    let url = format!("http://127.0.0.1:{port}/events");
    let factory = Factory::start_with(with_webhook(Options::default(), &url, &secret)).await;
    let released = release(&factory, COMMIT).await;
    assert_eq!(released.status, RunStatus::Released);
    let (run, delivery) = attempted(&factory, &released.id).await;
    assert_eq!(run.status, RunStatus::Released);
    assert_eq!(delivery.attempts, 1);
    assert!(delivery.delivered_at.is_none());
    let error = delivery.last_error.clone().unwrap();
    assert!(error.contains("did not answer"), "{error}");
    let next = delivery.next_attempt_at.expect("a next attempt");
    assert_eq!(
        run.follow_ups_due.map(|t| t.timestamp()),
        Some(next.timestamp())
    );

    // The run page says so.
    let page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{}", factory.url, run.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Every delivery: its event, target, attempts, status and last error.
    assert!(page.contains("<h2>Event deliveries</h2>"), "{page}");
    let row = page
        .split("<tr>")
        .find(|row| row.contains("image-factory.image.released"))
        .unwrap_or_else(|| panic!("no delivery row: {page}"));
    assert!(
        row.contains("<td>1</td>")
            && row.contains("failed; next attempt")
            && row.contains("did not answer"),
        "{row}"
    );

    // The receiver comes back; the next sweep after the backoff delivers.
    let receiver = Receiver::start(&secret, port).await;
    let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    factory.sweep().await;
    let verified = receiver.wait_verified(1).await;
    assert_eq!(
        verified[0]["id"], run.follow_ups[0].id,
        "the same webhook-id"
    );
    let run = factory.run(&run.id).await.unwrap();
    let delivery = &run.follow_ups[0].deliveries[0];
    assert_eq!(delivery.attempts, 2);
    assert!(delivery.delivered_at.is_some() && delivery.next_attempt_at.is_none());
    assert_eq!(run.follow_ups_due, None);

    factory.sweep().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = receiver.deliveries().await;
    assert_eq!(all["verified"].as_array().unwrap().len(), 1, "{all}");
    assert!(all["duplicates"].as_array().unwrap().is_empty(), "{all}");
    factory.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_never_answers_does_not_delay_the_release() {
    // Accepts connections (the kernel's backlog) and never answers.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", hanging.local_addr().unwrap());
    let factory = Factory::start_with(with_webhook(
        Options::default(),
        &url,
        &event_receiver::secret(),
    ))
    .await;
    let run = factory
        .push_and_wait(COMMIT, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    let release = released.stage(image_factory::domain::run::Stage::Release);
    let took = release.finished_at.unwrap() - release.started_at.unwrap();
    assert!(
        took < chrono::Duration::from_std(image_factory::ports::events::DELIVERY_TIMEOUT).unwrap(),
        "the release stage took {took}: it waited for the receiver"
    );
    // The run was released while its delivery was still waiting.
    let waiting = released.follow_ups[0].deliveries.first();
    assert!(
        waiting.is_none_or(|d| d.delivered_at.is_none() && d.last_error.is_none()),
        "{waiting:?}"
    );
    // The delivery times out on its own, and is recorded for a retry.
    let (_, delivery) = attempted(&factory, &run.id).await;
    assert!(delivery.delivered_at.is_none() && delivery.next_attempt_at.is_some());
    assert!(
        delivery
            .last_error
            .as_deref()
            .unwrap()
            .contains("did not answer"),
        "{delivery:?}"
    );
    factory.stop().await;
    drop(hanging);
}

/// A factory with its own copy of the example image, delivering events to
/// `receiver`, and two releases of it: the first and the second.
async fn two_releases(receiver: &Receiver, secret: &str) -> (Factory, tempfile::TempDir, Run, Run) {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let factory = Factory::start_with(with_webhook(
        Options::with_images(images.path()),
        &receiver.url,
        secret,
    ))
    .await;
    let first = release(&factory, COMMIT).await;
    std::fs::write(dir.join("scripts").join("marker.txt"), "second\n").unwrap();
    let second = release(&factory, "e1e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3").await;
    receiver.wait_verified(2).await;
    (factory, images, first, second)
}

/// `image-factory rollback` from a shell with none of the factory's
/// settings but `env`, in a data folder of its own.
async fn rollback_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let shell = tempfile::TempDir::new().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"));
    command
        .arg("rollback")
        .args(args)
        .env("IMAGE_FACTORY_DATA", shell.path())
        .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
        .env_remove("IMAGE_FACTORY_OPERATOR_TOKEN")
        .env_remove("IMAGE_FACTORY_FUNCTION_KEY")
        .env_remove("IMAGE_FACTORY_API_SCOPE")
        .env_remove("IMAGE_FACTORY_EVENT_WEBHOOKS")
        .env_remove("IMAGE_FACTORY_EVENT_WEBHOOK_SECRET")
        .env_remove("IMAGE_FACTORY_EVENT_GRID_ENDPOINT");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().await.expect("the CLI runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A dashboard page of the factory.
async fn page(factory: &Factory, path: &str) -> String {
    factory
        .http
        .get(format!("{}/api/dashboard/{path}", factory.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_asked_of_the_factory_makes_the_earlier_version_current_everywhere_with_who_and_why_and_sends_one_verified_event()
 {
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let (factory, _images, first, second) = two_releases(&receiver, &secret).await;
    let (v1, v2) = (first.version.to_string(), second.version.to_string());
    let operator = [("IMAGE_FACTORY_OPERATOR_TOKEN", common::OPERATOR_TOKEN)];
    let ask = |to: &str| {
        let to = to.to_string();
        let url = factory.url.clone();
        async move {
            rollback_cli(
                &[
                    "--url",
                    &url,
                    "--image",
                    "example",
                    "--to",
                    &to,
                    "--reason",
                    "IIS does not start on 2nd",
                    "--as",
                    "alice",
                ],
                &operator,
            )
            .await
        }
    };

    // Refused with nothing changed: a version never released, the current
    // one, and anything while a release of the image is under way.
    let before = factory.runs().await;
    let (ok, _, said) = ask("2001.101.0").await;
    assert!(
        !ok && said.contains("example 2001.101.0 is not a version this factory released"),
        "{said}"
    );
    let (ok, _, said) = ask(&v2).await;
    assert!(
        !ok && said.contains(&format!("example {v2} is already the current version")),
        "{said}"
    );
    let mut releasing = second.clone();
    releasing.id = "oob-example-releasing".parse().unwrap();
    releasing.status = RunStatus::Running;
    releasing.release = None;
    releasing.follow_ups.clear();
    releasing.follow_ups_due = None;
    let record = releasing
        .stages
        .iter_mut()
        .find(|s| s.stage == Stage::Release)
        .unwrap();
    record.status = StageStatus::Running;
    record.finished_at = None;
    factory.app.store.create(&releasing).await.unwrap();
    let (ok, _, said) = ask(&v1).await;
    assert!(
        !ok && said.contains("run oob-example-releasing is releasing example"),
        "{said}"
    );
    let mut runs = factory.runs().await;
    runs.retain(|r| r.id != releasing.id);
    assert_eq!(runs, before, "a refused rollback changes no run");
    // That release ends (as failed: it was made up for this test).
    let stored = factory.app.store.get(&releasing.id).await.unwrap();
    let mut ended = stored.value;
    ended.status = RunStatus::Failed;
    ended
        .stages
        .iter_mut()
        .find(|s| s.stage == Stage::Release)
        .unwrap()
        .status = StageStatus::Failed;
    factory
        .app
        .store
        .replace(&ended, &stored.etag)
        .await
        .unwrap();

    // The rollback, as an operator asks for it.
    let (ok, out, said) = ask(&v1).await;
    assert!(ok, "{out}{said}");
    assert!(
        out.contains(&format!(
            "example: {v1} is current (rolled back from {v2}; excluded from latest: {v2})"
        )) && out.contains("recorded for alice (operator-token)")
            && out.contains("IIS does not start on 2nd"),
        "{out}"
    );

    // One signed event, verified by the receiver, saying who and why.
    let verified = receiver.wait_verified(3).await;
    let rolled: Vec<Value> = verified
        .iter()
        .map(|d| cloud_event(d["body"].as_str().unwrap()))
        .filter(|e| e["type"] == "image-factory.image.rolled-back")
        .collect();
    assert_eq!(rolled.len(), 1, "{verified:?}");
    let event = &rolled[0];
    assert_eq!(event["subject"], format!("example/{v1}"));
    assert_eq!(event["data"]["runId"], first.id.as_str());
    let rollback = &event["data"]["rollback"];
    assert_eq!(rollback["from"], v2.as_str());
    assert_eq!(rollback["to"], v1.as_str());
    assert_eq!(rollback["actor"], "alice");
    assert_eq!(rollback["via"], "operator-token");
    assert_eq!(rollback["reason"], "IIS does not start on 2nd");
    assert_eq!(rollback["withdrawn"], serde_json::json!([v2]));
    assert_eq!(event["id"], rollback["id"]);

    // image-version.json of both versions tells it.
    let current = factory.run(&first.id).await.unwrap();
    let record = current.release.as_ref().unwrap();
    assert_eq!(record.rollbacks.len(), 1);
    assert_eq!(record.rollbacks[0].actor, "alice");
    assert!(record.withdrawn.is_none());
    let withdrawn = factory.run(&second.id).await.unwrap();
    let by = withdrawn
        .release
        .as_ref()
        .unwrap()
        .withdrawn
        .as_ref()
        .expect("withdrawn");
    assert_eq!(
        (by.to.as_str(), by.reason.as_str()),
        (v1.as_str(), "IIS does not start on 2nd")
    );

    // The image page calls v1 current and v2 withdrawn, never v2 current.
    let image = page(&factory, "images/example").await;
    assert!(
        image.contains(&format!("Current version: <strong>{v1}</strong>")),
        "{image}"
    );
    assert!(
        image.contains("alice (operator-token), rolled back from"),
        "{image}"
    );
    assert!(
        !image.contains(&format!("{v2} <strong>current</strong>")),
        "{image}"
    );
    assert!(
        image.contains(&format!("{v1} <strong>current</strong>")),
        "{image}"
    );
    assert!(
        image.contains(&format!("rolled back to {v1}: IIS does not start on 2nd")),
        "{image}"
    );
    // The changelog too.
    let changelog = page(&factory, "changelog/example").await;
    assert!(
        changelog.contains(&format!("Current version: <strong>{v1}</strong>")),
        "{changelog}"
    );
    assert!(
        changelog.contains(&format!("{v2} was withdrawn")),
        "{changelog}"
    );
    // And the fleet, as the page and as JSON.
    let fleet: Value = factory.get_json("/api/runs?view=fleet").await;
    let row = &fleet["images"][0];
    assert_eq!(row["currentRelease"]["version"], v1.as_str());
    assert_eq!(row["currentRelease"]["rolledBack"]["actor"], "alice");
    assert_eq!(row["currentRelease"]["currentSince"], rollback["at"]);
    let fleet_page = page(&factory, "fleet").await;
    assert!(
        fleet_page.contains(&format!(
            "rolled back from {v2} by alice: IIS does not start on 2nd"
        )),
        "{fleet_page}"
    );

    // Asking again is refused; the sweeper sends nothing twice.
    let (ok, _, said) = ask(&v1).await;
    assert!(
        !ok && said.contains("already the current version"),
        "{said}"
    );
    factory.sweep().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = receiver.deliveries().await;
    assert_eq!(all["verified"].as_array().unwrap().len(), 3, "{all}");
    assert!(all["duplicates"].as_array().unwrap().is_empty(), "{all}");
    factory.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_rollback_where_no_event_target_is_configured_stays_owed_and_the_factory_delivers_it()
 {
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let (factory, images, first, _) = two_releases(&receiver, &secret).await;

    // The factory is treated as down: --direct, from a shell that has the
    // factory's images and data but none of its event settings.
    let (ok, out, said) = rollback_cli(
        &[
            "--direct",
            "--image",
            "example",
            "--to",
            &first.version.to_string(),
            "--reason",
            "factory unreachable",
            "--as",
            "bob",
        ],
        &[
            ("IMAGE_FACTORY_IMAGES", images.path().to_str().unwrap()),
            ("IMAGE_FACTORY_DATA", factory.data.path().to_str().unwrap()),
        ],
    )
    .await;
    assert!(ok, "{out}{said}");
    assert!(said.contains("warning: --direct"), "{said}");
    assert!(
        said.contains(&format!("stays owed on run {}", first.id))
            && said.contains("the factory's sweeper delivers it"),
        "{said}"
    );
    assert!(out.contains("recorded for bob (direct)"), "{out}");
    let run = factory.run(&first.id).await.expect("the run");
    let owed = run.follow_ups.last().expect("the rollback's event");
    assert_eq!(owed.resolved_at, None, "no target resolved it: {owed:?}");
    assert!(owed.deliveries.is_empty());
    assert!(run.follow_ups_due.is_some(), "it is still owed");
    let run_page = page(&factory, &format!("runs/{}", run.id)).await;
    assert!(
        run_page.contains("owed: no event target resolved it yet"),
        "{run_page}"
    );

    // The factory's own sweeper delivers it, with the factory's targets.
    factory.sweep().await;
    let verified = receiver.wait_verified(3).await;
    let event = cloud_event(verified[2]["body"].as_str().unwrap());
    assert_eq!(event["type"], "image-factory.image.rolled-back");
    assert_eq!(event["id"], owed.id);
    assert_eq!(event["data"]["rollback"]["via"], "direct");
    let run = factory.run(&first.id).await.expect("the run");
    assert!(
        run.follow_ups.last().unwrap().deliveries[0]
            .delivered_at
            .is_some()
    );
    assert_eq!(run.follow_ups_due, None);
    factory.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_against_a_receiver_that_never_answers_ends_within_its_budget_and_the_rest_are_delivered_later()
 {
    let secret = event_receiver::secret();
    let port = common::child::free_port();
    // Accepts connections (the kernel's backlog) and never answers.
    let hanging = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let url = format!("http://127.0.0.1:{port}/events");
    // Two runs at a time, and a budget that fits two rounds of attempts
    // that each time out (5 s): far fewer than the runs that owe events.
    let limits = SweepLimits {
        concurrency: 2,
        budget: Duration::from_secs(12),
    };
    let mut options = with_webhook(Options::default(), &url, &secret);
    let webhook = std::mem::replace(&mut options.tweak, Box::new(|_| {}));
    options.tweak = Box::new(move |app| {
        webhook(app);
        app.follow_ups = app.follow_ups.clone().with_sweep_limits(limits);
    });
    let factory = Factory::start_with(options).await;

    // Twenty runs that ended and owe their event.
    let now = chrono::Utc::now();
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut run = Run::new(
            format!("push-example-owed-{i:02}").parse().unwrap(),
            "example".into(),
            format!("2026.1101.{i}").parse().unwrap(),
            Trigger::new(TriggerKind::Push, "github"),
            Default::default(),
            now,
        );
        run.status = RunStatus::Released;
        run.owe(
            FollowUpKind::Event {
                event: EventType::Released,
            },
            now,
        );
        factory.app.store.create(&run).await.unwrap();
        ids.push(run.id.to_string());
    }

    // One sweep ends within its budget, however many runs owe events.
    let started = std::time::Instant::now();
    factory.sweep().await;
    let took = started.elapsed();
    assert!(
        took < limits.budget,
        "the sweep took {took:?}, beyond its budget of {:?}",
        limits.budget
    );
    // Some were tried (and timed out), the rest carried over untouched.
    let mut tried = 0;
    for id in &ids {
        let run = factory.run(id).await.unwrap();
        let follow_up = &run.follow_ups[0];
        match follow_up.deliveries.first() {
            Some(d) => {
                assert_eq!(d.attempts, 1, "{d:?}");
                assert!(d.last_error.as_deref().unwrap().contains("did not answer"));
                tried += 1;
            }
            None => assert_eq!(follow_up.resolved_at, None, "carried over untouched"),
        }
        assert!(run.follow_ups_due.is_some(), "{id} still owes its event");
    }
    assert!(
        tried > 0 && tried < ids.len(),
        "{tried} of {} tried",
        ids.len()
    );

    // The receiver answers again: later sweeps deliver every event, once.
    drop(hanging);
    let receiver = Receiver::start(&secret, port).await;
    tokio::time::sleep(
        image_factory::domain::followup::retry_delay(1)
            .to_std()
            .unwrap()
            + Duration::from_secs(1),
    )
    .await;
    for _ in 0..3 {
        factory.sweep().await;
    }
    let verified = receiver.wait_verified(ids.len()).await;
    assert_eq!(verified.len(), ids.len());
    for id in &ids {
        let run = factory.run(id).await.unwrap();
        assert_eq!(run.follow_ups_due, None, "{id}: {:?}", run.follow_ups);
    }
    let all = receiver.deliveries().await;
    assert!(all["duplicates"].as_array().unwrap().is_empty(), "{all}");
    factory.stop().await;
    receiver.stop().await;
}
