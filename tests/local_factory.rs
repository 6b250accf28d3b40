//! The factory on one machine, driven as its users drive it: a signed push
//! webhook starts a run, real packer validates and builds the example image,
//! the smoke test runs, an approver opens the link and decides, and the run is
//! released with its `image-version.json`.

mod common;

use std::time::Duration;

use common::{Factory, Options, copy_example};
use image_factory::domain::run::{RunStatus, Stage, StageStatus};

const COMMIT: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

fn run_id(commit: &str) -> String {
    format!("push-example-{commit}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_goes_through_every_stage_and_is_released_after_approval() {
    let factory = Factory::start().await;
    let response = factory
        .push(COMMIT, &["images/example/build.pkr.hcl"])
        .await;
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["runs"][0]["runId"], run_id(COMMIT));
    assert_eq!(body["runs"][0]["new"], true);

    let run = factory
        .wait_status(&run_id(COMMIT), RunStatus::WaitingForApproval)
        .await;
    for stage in [Stage::Validate, Stage::Build, Stage::Test] {
        assert_eq!(run.stage(stage).status, StageStatus::Succeeded, "{stage}");
    }
    assert!(
        run.stage(Stage::Validate)
            .summary
            .as_deref()
            .unwrap()
            .contains("packer 1.6.6")
    );
    let build = run.build.clone().expect("build output");
    assert!(!build.artifacts.is_empty(), "packer reported no artifacts");
    let log = std::fs::read_to_string(&build.log).unwrap();
    assert!(
        log.contains(",ui,say,"),
        "the build log holds packer's machine-readable output"
    );
    assert!(run.checks[0].contains("smoke test passed"));
    assert_eq!(run.tags["gitRef"], COMMIT);
    assert_eq!(run.tags["imageVersion"], run.version.to_string());

    // Mail scanners follow GETs: the page shows the run and decides nothing.
    let link = factory.approval_link(&run.id, "platform-lead");
    for _ in 0..3 {
        let page = factory.http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains(&run.version.to_string()) && html.contains(COMMIT));
        assert!(html.contains(r#"value="approve""#) && html.contains(r#"value="reject""#));
    }
    let still = factory.run(&run.id).await.unwrap();
    assert_eq!(still.status, RunStatus::WaitingForApproval);
    assert!(still.decisions.is_empty());

    let decided = factory
        .http
        .post(&link)
        .form(&[("decision", "approve"), ("comment", "LGTM <b>ship it</b>")])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200);
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    let decision = &released.decisions[0];
    assert_eq!(decision.approver, "platform-lead");
    assert_eq!(decision.comment.as_deref(), Some("LGTM <b>ship it</b>"));
    assert!(
        released
            .stages
            .iter()
            .all(|s| s.status == StageStatus::Succeeded
                && s.started_at.is_some()
                && s.finished_at >= s.started_at)
    );

    let release = released.release.expect("release record");
    let metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&release.location).unwrap()).unwrap();
    assert_eq!(metadata["imageVersion"], released.version.to_string());
    assert_eq!(metadata["gitCommit"], COMMIT);
    assert_eq!(metadata["runId"], released.id.as_str());
    assert_eq!(metadata["buildLog"], build.log);

    // The link decided once; it cannot decide again.
    let replay = factory.decide(&link, "approve").await;
    assert_eq!(replay.status(), 409);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_webhook_finds_its_run_and_starts_nothing_new() {
    let factory = Factory::start().await;
    let commit = "b1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    let first: serde_json::Value = factory
        .push(commit, &["images/example/variables.pkr.hcl"])
        .await
        .json()
        .await
        .unwrap();
    let again: serde_json::Value = factory
        .push(commit, &["images/example/variables.pkr.hcl"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["runs"][0]["new"], true);
    assert_eq!(again["runs"][0]["new"], false);
    assert_eq!(first["runs"][0]["version"], again["runs"][0]["version"]);
    factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let list: serde_json::Value = factory.get_json("/api/runs?image=example").await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_or_irrelevant_webhooks_are_refused_and_change_nothing() {
    let factory = Factory::start().await;
    let body = common::github_push(COMMIT, &["images/example/build.pkr.hcl"], "main");
    let post = |signature: Option<String>, event: &'static str, body: String| {
        let mut request = factory
            .http
            .post(format!("{}/api/hooks/github", factory.url))
            .header("X-GitHub-Event", event)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        request.send()
    };
    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        (
            "no signature",
            post(None, "push", body.clone()).await.unwrap(),
            401,
        ),
        (
            "wrong secret",
            post(
                Some(common::sign("guess", body.as_bytes())),
                "push",
                body.clone(),
            )
            .await
            .unwrap(),
            401,
        ),
        (
            "tampered body",
            post(
                Some(common::sign(common::GITHUB_SECRET, body.as_bytes())),
                "push",
                body.replace("main", "mainx"),
            )
            .await
            .unwrap(),
            401,
        ),
        (
            "sha1 signature",
            post(Some("sha1=0000".into()), "push", body.clone())
                .await
                .unwrap(),
            401,
        ),
        (
            "signed garbage",
            post(
                Some(common::sign(common::GITHUB_SECRET, b"{not json")),
                "push",
                "{not json".into(),
            )
            .await
            .unwrap(),
            400,
        ),
        (
            "not a push",
            post(
                Some(common::sign(common::GITHUB_SECRET, body.as_bytes())),
                "issues",
                body.clone(),
            )
            .await
            .unwrap(),
            202,
        ),
        (
            "unknown provider",
            factory
                .http
                .post(format!("{}/api/hooks/gitlab", factory.url))
                .body("{}")
                .send()
                .await
                .unwrap(),
            404,
        ),
        (
            "wrong method",
            factory
                .http
                .get(format!("{}/api/hooks/github", factory.url))
                .send()
                .await
                .unwrap(),
            405,
        ),
        (
            "other branch",
            factory
                .push_signed_with(
                    common::GITHUB_SECRET,
                    COMMIT,
                    &["images/example/build.pkr.hcl"],
                    "feature",
                )
                .await,
            202,
        ),
        (
            "no image touched",
            factory.push(COMMIT, &["README.md", "docs/x.md"]).await,
            202,
        ),
    ];
    for (name, response, status) in cases {
        let got = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(got, status, "{name}: {text}");
        assert!(
            !text.contains(common::GITHUB_SECRET),
            "{name} echoed the secret"
        );
    }
    assert!(
        factory.runs().await.is_empty(),
        "a refused webhook stored a run"
    );
    assert_eq!(
        factory.bus().depth("stage-validate").await.unwrap(),
        0,
        "a refused webhook sent a message"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_stops_the_run_before_release() {
    let factory = Factory::start().await;
    let commit = "c1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    let response = factory
        .http
        .post(&link)
        .form(&[("decision", "reject"), ("comment", "not this month")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let rejected = factory.wait_status(&run.id, RunStatus::Rejected).await;
    assert_eq!(rejected.stage(Stage::Release).status, StageStatus::Pending);
    assert_eq!(
        rejected.failure.unwrap().reason,
        "rejected by platform-lead"
    );
    assert!(!factory.data.path().join("releases").exists());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_and_malformed_approval_links_are_refused() {
    let factory = Factory::start().await;
    let commit = "d1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    let (base, token) = link.rsplit_once('/').unwrap();
    let (payload, signature) = token.split_once('.').unwrap();

    // A link signed by another factory's key.
    let other = Factory::start_with(Options {
        approval_keys: common::approval_keys("k1", 9),
        ..Options::default()
    })
    .await;
    other.push(commit, &["images/example/build.pkr.hcl"]).await;
    other
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let foreign = other.approval_link(&run.id, "platform-lead");
    let foreign_token = foreign.rsplit_once('/').unwrap().1;

    let flipped = format!("{payload}.{}", signature.chars().rev().collect::<String>());
    let cases = [
        ("tampered signature", format!("{base}/{flipped}"), 400),
        ("foreign key", format!("{base}/{foreign_token}"), 400),
        ("no dot", format!("{base}/garbage"), 400),
        ("empty claims", format!("{base}/e30.e30"), 400),
    ];
    for (name, url, status) in cases {
        for method in ["GET", "POST"] {
            let request = factory
                .http
                .request(method.parse().unwrap(), &url)
                .form(&[("decision", "approve")]);
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{name} {method}");
            let page = response.text().await.unwrap();
            assert!(
                !page.contains(token),
                "{name}: the page shows the real token"
            );
        }
    }
    let missing = factory
        .http
        .post(&link)
        .form(&[("decision", "maybe")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let still = factory.run(&run.id).await.unwrap();
    assert_eq!(still.status, RunStatus::WaitingForApproval);
    assert!(still.decisions.is_empty());
    other.stop().await;
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_link_shows_why_and_the_sweeper_ends_the_run_approval_expired() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};
    let offset = Arc::new(AtomicI64::new(0));
    let clock_offset = Arc::clone(&offset);
    let factory = Factory::start_with(Options {
        tweak: Box::new(move |app| {
            app.clock = Arc::new(move || {
                chrono::Utc::now() + chrono::Duration::seconds(clock_offset.load(Ordering::SeqCst))
            });
        }),
        ..Options::default()
    })
    .await;
    let commit = "e1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    offset.store(73 * 3600, Ordering::SeqCst); // past the example image's 72 hours
    let response = factory.http.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 410);
    assert!(response.text().await.unwrap().contains("expired"));

    // The sweeper is a timer; fire it as the host does.
    factory.sweep().await;
    let expired = factory.run(&run.id).await.unwrap();
    assert_eq!(expired.status, RunStatus::ApprovalExpired);
    assert!(
        expired
            .failure
            .unwrap()
            .reason
            .contains("no decision before the approval deadline")
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_template_fails_validation_with_file_and_line_and_never_builds() {
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
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    factory
        .push(COMMIT, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_status(&run_id(COMMIT), RunStatus::Failed)
        .await;
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.stage, Some(Stage::Validate));
    assert!(
        failure.reason.contains("build.pkr.hcl:9"),
        "{}",
        failure.reason
    );
    assert!(failure.reason.contains("image_nmae"), "{}", failure.reason);
    assert_eq!(run.stage(Stage::Build).status, StageStatus::Pending);
    assert!(run.build.is_none());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_packer_build_fails_the_run_with_packers_error_and_keeps_the_log() {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    std::fs::write(
        dir.join("scripts/provision.sh"),
        "#!/bin/sh\necho 'installing IIS'\necho 'the language pack is missing' >&2\nexit 3\n",
    )
    .unwrap();
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    factory
        .push(COMMIT, &["images/example/scripts/provision.sh"])
        .await;
    let run = factory
        .wait_status(&run_id(COMMIT), RunStatus::Failed)
        .await;
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.stage, Some(Stage::Build));
    assert!(
        failure.reason.contains("packer build exited with code 1"),
        "{}",
        failure.reason
    );
    let log_path = failure.reason.rsplit("full log: ").next().unwrap();
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("the language pack is missing"),
        "the log keeps stderr"
    );
    assert_eq!(run.stage(Stage::Test).status, StageStatus::Pending);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stage_that_fails_on_every_delivery_is_dead_lettered_and_its_run_failed_with_the_reason()
{
    let factory = Factory::start_with(Options {
        bus: image_factory::host::BusSettings {
            lock_duration: Duration::from_secs(5),
            max_delivery_count: 3,
        },
        ..Options::default()
    })
    .await;
    let commit = "f1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    // The validate stage, the first to unpack the run's snapshot into the
    // run's folder, cannot create it: a file stands in the way.
    let runs = factory.data.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::write(runs.join(run_id(commit)), "in the way").unwrap();
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_for(&run_id(commit), Duration::from_secs(60), |r| {
            r.status.is_terminal()
        })
        .await;
    assert_eq!(run.status, RunStatus::Failed);
    let failure = run.failure.clone().unwrap();
    assert_eq!(failure.stage, Some(Stage::Validate));
    assert!(
        failure.reason.contains("delivered 3 times"),
        "{}",
        failure.reason
    );
    assert!(
        failure.reason.contains("MaxDeliveryCountExceeded"),
        "{}",
        failure.reason
    );
    assert!(
        failure.reason.contains("cannot unpack the snapshot"),
        "{}",
        failure.reason
    );
    assert_eq!(run.stage(Stage::Validate).status, StageStatus::Failed);
    assert_eq!(
        run.stage(Stage::Validate).attempts.len(),
        3,
        "one attempt per delivery"
    );
    assert_eq!(factory.bus().depth("stage-validate").await.unwrap(), 0);
    assert_eq!(
        factory
            .bus()
            .depth("stage-validate/$DeadLetterQueue")
            .await
            .unwrap(),
        0,
        "the dead letter was handled"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_tuesday_missed_while_the_factory_was_down_fires_once_at_start_up() {
    let data = tempfile::TempDir::new().unwrap();
    {
        let bus = image_factory::host::bus::Bus::open(&data.path().join("bus.db"), |q| {
            image_factory::host::BusSettings::default().queue_options(q)
        })
        .unwrap();
        let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
        bus.timer_record("patch-tuesday", None, yesterday)
            .await
            .unwrap();
    }
    let factory = Factory::start_in(data, Options::default()).await;
    let due = factory.app.settings.calendar.due_month(chrono::Utc::now());
    let id = format!("pt-example-{due}");
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    assert_eq!(
        run.trigger.kind,
        image_factory::domain::run::TriggerKind::PatchTuesday
    );
    assert_eq!(run.tags["gitRef"], "manual");
    assert_eq!(factory.runs().await.len(), 1, "one run per image and month");
    factory.stop().await;
}

async fn trigger(
    factory: &Factory,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut request = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_band_triggers_need_the_operator_token_and_a_reason() {
    let factory = Factory::start().await;
    let ok_body = serde_json::json!({ "image": "example", "reason": "CVE-2026-0001 hotfix" });
    let cases = [
        ("no token", None, ok_body.clone(), 401),
        ("wrong token", Some("guess"), ok_body.clone(), 401),
        (
            "no reason",
            Some(common::OPERATOR_TOKEN),
            serde_json::json!({ "image": "example", "reason": " " }),
            400,
        ),
        (
            "unknown image",
            Some(common::OPERATOR_TOKEN),
            serde_json::json!({ "image": "nope", "reason": "x" }),
            422,
        ),
        (
            "unknown field",
            Some(common::OPERATOR_TOKEN),
            serde_json::json!({ "image": "example", "reason": "x", "prio": 1 }),
            400,
        ),
    ];
    for (name, token, body, status) in cases {
        let (got, answer) = trigger(&factory, token, body).await;
        assert_eq!(got, status, "{name}: {answer}");
        assert!(!answer.to_string().contains(common::OPERATOR_TOKEN));
    }
    assert!(factory.runs().await.is_empty());

    let (status, answer) = trigger(&factory, Some(common::OPERATOR_TOKEN), ok_body).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["runId"].as_str().unwrap();
    let run = factory.wait_status(id, RunStatus::WaitingForApproval).await;
    assert_eq!(
        run.trigger.kind,
        image_factory::domain::run::TriggerKind::OutOfBand
    );
    assert_eq!(run.trigger.reason.as_deref(), Some("CVE-2026-0001 hotfix"));
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn re_triggering_an_unchanged_image_is_skipped_without_packer_unless_forced() {
    let factory = Factory::start().await;
    let commit = "5a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let first = factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&first.id, "platform-lead");
    factory.decide(&link, "approve").await;
    let released = factory.wait_status(&first.id, RunStatus::Released).await;

    let body = serde_json::json!({ "image": "example", "reason": "rebuild please" });
    let (_, answer) = trigger(&factory, Some(common::OPERATOR_TOKEN), body).await;
    let id = answer["runId"].as_str().unwrap().to_string();
    let skipped = factory.wait_status(&id, RunStatus::Skipped).await;
    let reason = skipped.skipped.clone().unwrap();
    assert!(
        reason.contains(&format!("identical to version {}", released.version)),
        "{reason}"
    );
    assert_eq!(skipped.inputs_hash, released.inputs_hash);
    assert_eq!(skipped.stage(Stage::Build).status, StageStatus::Pending);
    assert!(
        !factory.data.path().join("runs").join(&id).exists(),
        "packer ran for a skipped run"
    );

    let forced =
        serde_json::json!({ "image": "example", "reason": "rebuild anyway", "force": true });
    let (_, answer) = trigger(&factory, Some(common::OPERATOR_TOKEN), forced).await;
    let id = answer["runId"].as_str().unwrap().to_string();
    let built = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    assert!(built.build.is_some());
    factory.stop().await;
}

/// `GET /api/runs/{id}?log=0` with `id` sent as written (already percent-encoded).
async fn log_of(factory: &Factory, encoded_id: &str) -> (u16, String) {
    let response = factory
        .http
        .get(format!("{}/api/runs/{encoded_id}?log=0", factory.url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_is_served_only_for_a_run_the_store_holds_and_never_from_outside_the_runs() {
    let factory = Factory::start().await;
    // A build.log beside the data folder (reachable with ../..) and one
    // planted in the runs folder under a name no run has.
    let parent = factory.data.path().parent().unwrap();
    let outside = tempfile::TempDir::new_in(parent).unwrap();
    std::fs::write(outside.path().join("build.log"), "OUTSIDE-THE-RUNS\n").unwrap();
    let planted = factory.data.path().join("runs").join("push-example-0000");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("build.log"), "NO-SUCH-RUN\n").unwrap();

    let name = outside.path().file_name().unwrap().to_str().unwrap();
    let absolute = outside.path().to_str().unwrap().replace('/', "%2F");
    for id in [
        format!("..%2F..%2F{name}"),
        format!("..%2F..%2F..%2F{}", &absolute[3..]),
        absolute.clone(),
        "push-example-0000".to_string(),
    ] {
        let (status, body) = log_of(&factory, &id).await;
        assert!(matches!(status, 400 | 404), "{id}: {status} {body}");
        assert!(
            !body.contains("OUTSIDE-THE-RUNS") && !body.contains("NO-SUCH-RUN"),
            "{id}: {body}"
        );
    }
    let (status, _) = log_of(&factory, &absolute).await;
    assert_eq!(status, 400, "an absolute path is not a run id");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_log_is_plain_text_browsers_never_sniff_and_an_offset_past_its_end_is_refused() {
    let factory = Factory::start().await;
    let commit = "10910910910910910910910910910910910910f1";
    let run = factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await;
    let get = |offset: String| {
        let url = format!("{}/api/runs/{}?log={offset}", factory.url, run.id);
        let http = factory.http.clone();
        async move { http.get(url).send().await.expect("the runs API answers") }
    };

    let whole = get("0".into()).await;
    assert_eq!(whole.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        header(&whole, "Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        header(&whole, "X-Content-Type-Options").as_deref(),
        Some("nosniff"),
        "a log is never read as HTML, whatever a build printed"
    );
    let end: u64 = header(&whole, "X-Log-Offset")
        .expect("the next offset")
        .parse()
        .expect("a number");
    assert!(end > 0 && whole.text().await.expect("text").len() as u64 == end);

    // At the end: nothing more yet, which a follower waits on.
    let at_end = get(end.to_string()).await;
    assert_eq!(at_end.status(), 200);
    assert_eq!(header(&at_end, "X-Log-Offset"), Some(end.to_string()));
    assert!(at_end.text().await.expect("text").is_empty());

    // Past it, however far: a range that cannot be satisfied, said as such.
    for offset in [end + 1, i64::MAX as u64, u64::MAX] {
        let past = get(offset.to_string()).await;
        assert_eq!(past.status(), 416, "offset {offset}");
        assert_eq!(
            header(&past, "Content-Range"),
            Some(format!("bytes */{end}")),
            "offset {offset}"
        );
        let body: serde_json::Value = past.json().await.expect("a JSON error");
        let message = body["error"].as_str().expect("an error message");
        assert!(
            message.contains(&format!("offset {offset} is past the end"))
                && message.contains(&format!("{end} bytes")),
            "{message}"
        );
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_commits_that_share_their_first_12_characters_make_two_runs_each_building_its_own() {
    let factory = Factory::start().await;
    let first = "c011151090aa00000000000000000000000000a1";
    let second = "c011151090aa00000000000000000000000000b2";
    for commit in [first, second] {
        let response = factory
            .push(commit, &["images/example/build.pkr.hcl"])
            .await;
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["runs"][0]["runId"], run_id(commit), "{body}");
        assert_eq!(body["runs"][0]["new"], true, "{body}");
    }
    for commit in [first, second] {
        let run = factory
            .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
            .await;
        assert_eq!(run.trigger.commit.as_deref(), Some(commit));
        assert_eq!(run.tags.get("gitRef").map(String::as_str), Some(commit));
        assert!(run.build.is_some(), "{commit} was not built");
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_named_after_a_12_character_commit_prefix_keeps_working() {
    use image_factory::domain::run::{Run, Trigger, TriggerKind};
    let factory = Factory::start().await;
    let commit = "1e9ac7000000000000000000000000000000abcd";
    let legacy = format!("push-example-{}", &commit[..12]);
    let trigger = Trigger {
        commit: Some(commit.into()),
        branch: Some("main".into()),
        ..Trigger::new(TriggerKind::Push, "github")
    };
    let run = Run::new(
        legacy.parse().unwrap(),
        "example".into(),
        "2026.1101.0".parse().unwrap(),
        trigger,
        Default::default(),
        factory.app.now(),
    );
    factory.app.store.create(&run).await.unwrap();

    assert!(factory.run(&legacy).await.is_some());
    let page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{legacy}", factory.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // A redelivery of that push finds the run it made.
    let body: serde_json::Value = factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["runs"][0]["runId"], legacy.as_str(), "{body}");
    assert_eq!(body["runs"][0]["new"], false, "{body}");
    assert_eq!(factory.runs().await.len(), 1);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_run_that_builds_takes_a_version_and_it_takes_one_however_often_it_is_triggered() {
    let factory = Factory::start().await;
    let commit = "2000c0ffee000000000000000000000000000020";
    let pushes = (0..20).map(|_| factory.push(commit, &["images/example/build.pkr.hcl"]));
    let mut answers = Vec::new();
    for response in futures::future::join_all(pushes).await {
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        answers.push((
            body["runs"][0]["runId"].clone(),
            body["runs"][0]["version"].clone(),
        ));
    }
    answers.dedup();
    assert_eq!(answers.len(), 1, "20 identical pushes: {answers:?}");
    assert_eq!(factory.runs().await.len(), 1);

    let first = factory
        .wait_status(&run_id(commit), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&first.id, "platform-lead");
    factory.decide(&link, "approve").await;
    factory.wait_status(&first.id, RunStatus::Released).await;

    // Identical inputs: skipped, with the version it is identical to.
    let body = serde_json::json!({ "image": "example", "reason": "unchanged" });
    let (status, answer) = trigger(&factory, Some(common::OPERATOR_TOKEN), body).await;
    assert_eq!(status, 202, "{answer}");
    let skipped = factory
        .wait_status(answer["runId"].as_str().unwrap(), RunStatus::Skipped)
        .await;
    assert_eq!(skipped.version, first.version);

    // The next run that builds takes the very next number.
    let body = serde_json::json!({ "image": "example", "reason": "anyway", "force": true });
    let (status, answer) = trigger(&factory, Some(common::OPERATOR_TOKEN), body).await;
    assert_eq!(status, 202, "{answer}");
    let next = factory
        .wait_for(
            answer["runId"].as_str().unwrap(),
            Duration::from_secs(60),
            |r| r.status != RunStatus::Queued,
        )
        .await;
    if (next.version.major, next.version.minor) == (first.version.major, first.version.minor) {
        assert_eq!(next.version.patch, first.version.patch + 1, "{next:#?}");
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_scheme_is_matched_without_regard_to_case() {
    let factory = Factory::start().await;
    for scheme in ["bearer", "BEARER"] {
        let response = factory
            .http
            .post(format!("{}/api/runs", factory.url))
            .header(
                "Authorization",
                format!("{scheme} {}", common::OPERATOR_TOKEN),
            )
            .json(&serde_json::json!({ "image": "example", "reason": "case", "force": true }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{scheme}");
    }
    factory.stop().await;
}

/// A script that runs the command after its first argument (a log file) and
/// appends `start <pid> <ns>` and `end <pid> <ns>` around it (nanoseconds
/// since the epoch, from `date`), so the log shows when each job ran.
fn timing_wrapper(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("timed.sh");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nlog=$1; shift\necho \"start $$ $(date +%s%N)\" >> \"$log\"\n\"$@\"; rc=$?\necho \"end $$ $(date +%s%N)\" >> \"$log\"\nexit $rc\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The `(start, end)` of every job the wrapper's log holds, by start.
fn job_intervals(log: &std::path::Path) -> Vec<(u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut started = std::collections::BTreeMap::new();
    let mut intervals = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [kind, pid, at] = parts.as_slice() else {
            panic!("a line the wrapper does not write: {line}");
        };
        let at: u128 = at.parse().unwrap();
        match *kind {
            "start" => {
                started.insert(pid.to_string(), at);
            }
            _ => intervals.push((started.remove(*pid).expect("started"), at)),
        }
    }
    assert!(started.is_empty(), "jobs that never ended: {started:?}");
    intervals.sort();
    intervals
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_parallelism_of_one_no_two_local_jobs_overlap_and_waiting_runs_keep_their_first_delivery()
 {
    let scratch = tempfile::TempDir::new().unwrap();
    let log = scratch.path().join("jobs.log");
    let wrapper = timing_wrapper(scratch.path());
    let packer = scratch.path().join("packer");
    std::fs::write(
        &packer,
        format!(
            "#!/bin/sh\nexec {} {} {} \"$@\"\n",
            wrapper.display(),
            log.display(),
            image_factory::config::find_on_path("packer")
                .expect("packer")
                .display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&packer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let images = scratch.path().join("images");
    let names = ["one", "two", "three"];
    for name in names {
        let dir = copy_example(&images, name);
        let toml = std::fs::read_to_string(dir.join("image.toml")).unwrap();
        std::fs::write(
            dir.join("image.toml"),
            toml.replace(
                r#"argv = ["sh", "scripts/smoke-test.sh"]"#,
                &format!(
                    r#"argv = ["{}", "{}", "sh", "scripts/smoke-test.sh"]"#,
                    wrapper.display(),
                    log.display()
                ),
            ),
        )
        .unwrap();
    }
    let factory = Factory::start_with(Options {
        // Shorter than the wait of the last run for its turn: a message
        // locked while it waited would be delivered again.
        bus: image_factory::host::BusSettings {
            lock_duration: Duration::from_secs(2),
            max_delivery_count: 5,
        },
        tweak: Box::new(move |app| {
            app.settings = std::sync::Arc::new(image_factory::config::Settings {
                parallelism: std::num::NonZeroUsize::MIN,
                packer: Some(packer),
                ..(*app.settings).clone()
            });
        }),
        ..Options::with_images(&images)
    })
    .await;
    factory.fire_timer("patch-tuesday").await;
    let runs = factory.runs().await;
    assert_eq!(runs.len(), names.len(), "one Patch Tuesday run per image");
    for run in runs {
        let run = factory
            .wait_status(&run.id, RunStatus::WaitingForApproval)
            .await;
        for stage in [Stage::Validate, Stage::Build, Stage::Test] {
            let attempts = &run.stage(stage).attempts;
            assert!(
                attempts.len() == 1 && attempts[0].execution.delivery == 1,
                "{} {stage}: {attempts:?}",
                run.id
            );
        }
    }
    // packer version, fmt -check, validate and build, and the smoke test of
    // every run (packer 1.6 has no init), one after the other.
    let jobs = job_intervals(&log);
    assert_eq!(jobs.len(), 5 * names.len(), "{jobs:?}");
    for pair in jobs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two jobs ran at once with a parallelism of 1: {pair:?}"
        );
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_tuesday_image_that_cannot_start_keeps_no_other_image_from_starting() {
    let images = tempfile::TempDir::new().unwrap();
    for name in ["alpha", "beta", "gamma"] {
        copy_example(images.path(), name);
    }
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    // The store refuses beta's runs: its run cannot be created.
    refuse_runs_of(&factory, "beta");
    // The firing answers, and the runs it created have their first message
    // sent with its answer: alpha (before beta) and gamma (after it) start.
    factory.fire_timer("patch-tuesday").await;
    let runs = factory.runs().await;
    let mut started: Vec<&str> = runs.iter().map(|r| r.image.as_str()).collect();
    started.sort();
    assert_eq!(started, ["alpha", "gamma"]);
    for run in &runs {
        factory
            .wait_status(&run.id, RunStatus::WaitingForApproval)
            .await;
    }
    factory.stop().await;
}

/// Makes the factory's real SQLite store refuse to record any run of
/// `image`, as a failing disk would (a trigger that aborts the insert).
fn refuse_runs_of(factory: &Factory, image: &str) {
    let db = rusqlite::Connection::open(factory.app.settings.store_path()).expect("the store");
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse_{image} BEFORE INSERT ON runs WHEN NEW.image = '{image}' \
         BEGIN SELECT RAISE(ABORT, 'injected store failure'); END;"
    ))
    .expect("the trigger");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_image_whose_run_cannot_be_made_is_listed_and_the_others_start() {
    let images = tempfile::TempDir::new().unwrap();
    for name in ["alpha", "beta", "gamma"] {
        copy_example(images.path(), name);
    }
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    refuse_runs_of(&factory, "beta");
    let response = factory
        .push(
            COMMIT,
            &[
                "images/alpha/build.pkr.hcl",
                "images/beta/build.pkr.hcl",
                "images/gamma/build.pkr.hcl",
            ],
        )
        .await;
    // The answer asks for a redelivery (beta's run could not be made) and
    // says which image failed; alpha and gamma start all the same.
    assert_eq!(response.status(), 503);
    let answer: serde_json::Value = response.json().await.unwrap();
    let started: Vec<&str> = answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["image"].as_str().unwrap())
        .collect();
    assert_eq!(started, ["alpha", "gamma"], "{answer}");
    assert_eq!(answer["failed"][0]["image"], "beta", "{answer}");
    assert!(
        answer["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("injected store failure"),
        "{answer}"
    );
    for image in ["alpha", "gamma"] {
        factory
            .wait_status(
                &format!("push-{image}-{COMMIT}"),
                RunStatus::WaitingForApproval,
            )
            .await;
    }
    factory.stop().await;
}
