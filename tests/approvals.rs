//! Approvals people can trust: messages on every channel whose links work end
//! to end, k-of-n, reminders and retries, key rotation, signed-in users, and
//! approvers clicking at the same second.

mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Factory, OPERATOR_TOKEN, Options, copy_example};
use image_factory::domain::approval::NoticeKind;
use image_factory::domain::run::{Run, RunStatus, Stage, StageStatus, Trigger, TriggerKind};
use image_factory::domain::version::ImageVersion;
use image_factory::notifier::teams_card;
use image_factory::ports::notifier::Notice;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const APPROVERS: [&str; 3] = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"];

/// An images folder whose example image needs 2 of the 3 approvers.
fn two_of_three() -> tempfile::TempDir {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).unwrap();
    let toml = toml.replace(
        "approvers = [\"platform-lead\"]\nrequired = 1",
        "approvers = [\"alice@contoso.com\", \"bob@contoso.com\", \"carol@contoso.com\"]\nrequired = 2",
    );
    assert!(toml.contains("required = 2"));
    std::fs::write(dir.join("image.toml"), toml).unwrap();
    images
}

/// A Teams webhook stand-in on loopback: records every card, fails the first `fail` posts.
#[derive(Clone, Default)]
struct Teams {
    cards: Arc<Mutex<Vec<serde_json::Value>>>,
    fail: Arc<AtomicUsize>,
}

async fn teams_webhook(
    State(teams): State<Teams>,
    axum::Json(card): axum::Json<serde_json::Value>,
) -> StatusCode {
    if teams.fail.load(Ordering::SeqCst) > 0 {
        teams.fail.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    teams.cards.lock().await.push(card);
    StatusCode::ACCEPTED
}

async fn start_teams(fail: usize) -> (Teams, String) {
    let teams = Teams::default();
    teams.fail.store(fail, Ordering::SeqCst);
    let router = Router::new()
        .route("/workflows/hook", post(teams_webhook))
        .with_state(teams.clone());
    let url = format!("{}/workflows/hook", common::serve_loopback(router).await);
    (teams, url)
}

/// The official Adaptive Card 1.5 schema (pinned with its source and SHA-256
/// in `tests/third-party.toml`), unchanged, compiled once.
fn adaptive_card_schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = common::third_party("project-fixtures-adaptive-card/adaptive-card.json");
        let text = std::fs::read_to_string(path).expect("the Adaptive Card schema");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the Adaptive Card schema compiles")
    })
}

/// What the Adaptive Card schema finds wrong in `card` (an attachment's
/// `content`), each with the JSON path of the offending value. The schema
/// matches the card, its elements and its actions through `anyOf`, so each
/// failed `anyOf` is replaced by what failed in its branches.
fn card_errors(card: &Value) -> Vec<String> {
    fn leaves(error: &jsonschema::ValidationError<'_>, out: &mut Vec<String>) {
        match error.kind() {
            jsonschema::error::ValidationErrorKind::AnyOf { context } if !context.is_empty() => {
                for error in context.iter().flatten() {
                    leaves(error, out);
                }
            }
            _ => out.push(format!("{}: {error}", error.instance_path())),
        }
    }
    let mut out = Vec::new();
    for error in adaptive_card_schema().iter_errors(card) {
        leaves(&error, &mut out);
    }
    out
}

/// A card built by the notifier for a run of the example image.
fn example_card() -> Value {
    card_of(&example_run())
}

/// The Teams card the notifier builds for `run`.
fn card_of(run: &Run) -> Value {
    let notice = Notice {
        kind: NoticeKind::Request,
        run,
        approver: "alice@contoso.com",
        url: "https://f.example/api/approvals/t0k3n".into(),
        expires_at: chrono::Utc::now(),
    };
    teams_card(&notice)["attachments"][0]["content"].clone()
}

/// A run of the example image at the approve stage.
fn example_run() -> Run {
    Run::new(
        "push-example-abc".parse().expect("run id"),
        "example".into(),
        ImageVersion::new(2026, 1130, 0).expect("version"),
        Trigger {
            commit: Some("abc".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        Default::default(),
        chrono::Utc::now(),
    )
}

#[test]
fn a_card_with_the_patch_level_and_its_alert_follows_the_adaptive_card_schema() {
    use image_factory::domain::evidence::EvidenceRecord;
    use image_factory::domain::patch_gate::PatchSettings;
    use image_factory::domain::patch_gate::unreachable;
    use image_factory::domain::run::BuildResult;
    let mut run = example_run();
    let evidence = json!({
        "schema": "image-factory.evidence/1", "collectedAt": "2026-01-14T03:00:00Z",
        "os": { "productName": "Windows Server 2022 Datacenter", "installationType": "Server", "build": "10.0.20348.4648" },
        "rebootPending": false, "hotfixes": ["KB5073457"], "updates": []
    })
    .to_string();
    run.build = Some(BuildResult {
        artifacts: Vec::new(),
        managed_image_id: None,
        gallery_version_id: None,
        log: "build.log".into(),
        duration_seconds: 60,
        evidence: Some(Box::new(EvidenceRecord::read(
            Some(evidence.as_bytes()),
            "runs/r/image-evidence.json",
        ))),
    });
    let settings = PatchSettings {
        product: "Windows Server 2022".into(),
        grace_days: 0,
        unverified_after_hours: 1,
    };
    let since = chrono::Utc::now() - chrono::Duration::hours(2);
    let waiting = unreachable(&settings, None, "connection refused", since);
    run.patch = Some(Box::new(unreachable(
        &settings,
        Some(&waiting),
        "connection refused",
        chrono::Utc::now(),
    )));
    let card = card_of(&run);
    assert_eq!(card_errors(&card), Vec::<String>::new());
    let alert = &card["body"][1];
    assert_eq!(alert["color"], "Attention");
    assert!(
        alert["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Patch level not verified")),
        "{alert}"
    );
    let facts = card["body"][3]["facts"].as_array().expect("the facts");
    let fact = |title: &str| {
        facts
            .iter()
            .find(|f| f["title"] == title)
            .and_then(|f| f["value"].as_str())
            .unwrap_or_else(|| panic!("no {title} in {facts:?}"))
    };
    assert!(fact("OS build").starts_with("10.0.20348.4648"));
    assert!(fact("Patch evidence").starts_with("sha256:"));
    assert!(fact("Patch gate").contains("not verified"));
}

#[test]
fn the_adaptive_card_schema_refuses_a_card_that_drifts() {
    let card = example_card();
    assert_eq!(card_errors(&card), Vec::<String>::new());
    let drifted = |change: &dyn Fn(&mut Value)| {
        let mut card = card.clone();
        change(&mut card);
        card_errors(&card)
    };
    // A misspelled element type.
    let errors = drifted(&|c| c["body"][0]["type"] = json!("TextBlok"));
    assert!(
        errors.iter().any(|e| e.starts_with("/body/0")),
        "{errors:?}"
    );
    // Action.OpenUrl without its required url.
    let errors = drifted(&|c| {
        c["actions"][0]
            .as_object_mut()
            .expect("an action")
            .remove("url");
    });
    assert!(
        errors.iter().any(|e| e.starts_with("/actions/0")),
        "{errors:?}"
    );
    // A property the schema does not define, on the card and on an element.
    let errors = drifted(&|c| c["msteams"] = json!({ "width": "Full" }));
    assert!(errors.iter().any(|e| e.contains("msteams")), "{errors:?}");
    let errors = drifted(&|c| c["body"][2]["facts"][0]["titel"] = json!("x"));
    assert!(
        errors.iter().any(|e| e.starts_with("/body/2")),
        "{errors:?}"
    );
    // A value outside an enumeration.
    let errors = drifted(&|c| c["actions"][1]["style"] = json!("danger"));
    assert!(
        errors.iter().any(|e| e.starts_with("/actions/1")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_teams_card_follows_the_adaptive_card_schema_and_its_buttons_decide_through_the_page() {
    let (teams, url) = start_teams(0).await;
    let images = two_of_three();
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        teams_webhook: Some(url),
        ..Options::default()
    })
    .await;
    let run = factory
        .push_and_wait(
            "7a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let cards = teams.cards.lock().await.clone();
    assert_eq!(cards.len(), 3, "one card per approver");

    let mut approve_links = Vec::new();
    for message in &cards {
        assert_eq!(message["type"], "message");
        let attachment = &message["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        let card = &attachment["content"];
        let errors = card_errors(card);
        assert!(errors.is_empty(), "not an Adaptive Card 1.5: {errors:#?}");
        assert_eq!(
            (&card["type"], &card["version"]),
            (&json!("AdaptiveCard"), &json!("1.5"))
        );
        let facts: Vec<(&str, &str)> = card["body"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "FactSet")
            .flat_map(|e| e["facts"].as_array().into_iter().flatten())
            .map(|f| {
                (
                    f["title"].as_str().unwrap_or(""),
                    f["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert!(facts.contains(&("Version", run.version.to_string().as_str())));
        assert!(facts.iter().any(|(k, _)| *k == "Tests"));
        let headline = &card["body"][0];
        assert_eq!(
            headline["type"], "TextBlock",
            "the card opens with a headline"
        );
        assert!(
            headline["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("Approve example")
        );
        assert_eq!(
            (&headline["weight"], &headline["size"], &headline["wrap"]),
            (&json!("Bolder"), &json!("Medium"), &json!(true))
        );
        let (approve, reject) = (&card["actions"][0], &card["actions"][1]);
        assert_eq!(
            (&approve["type"], &approve["title"], &approve["style"]),
            (
                &json!("Action.OpenUrl"),
                &json!("Approve"),
                &json!("positive")
            )
        );
        assert_eq!(
            (&reject["title"], &reject["style"]),
            (&json!("Reject"), &json!("destructive"))
        );
        approve_links.push(approve["url"].as_str().unwrap_or("").to_string());
    }
    // The record keeps what was sent, without the links.
    let recorded = factory.run(&run.id).await.unwrap();
    let request = recorded.approval.unwrap();
    let teams_records: Vec<_> = request
        .notifications
        .iter()
        .filter(|n| n.channel == "teams")
        .collect();
    assert_eq!(teams_records.len(), 3);
    assert!(
        teams_records
            .iter()
            .all(|n| n.delivered && n.kind == NoticeKind::Request)
    );
    let record_text = serde_json::to_string(&request.notifications).unwrap();
    assert!(record_text.contains("<link>") && !record_text.contains("/api/approvals/ey"));

    // Two approvals release the run (k of n).
    for link in &approve_links[..2] {
        let page = factory.http.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let form_url = link.split('?').next().unwrap();
        let decided = factory
            .http
            .post(form_url)
            .form(&[("decision", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(decided.status(), 200);
    }
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    assert_eq!(released.decisions.len(), 2);
    assert!(
        released
            .decisions
            .iter()
            .all(|d| d.via == "link" && d.token_id.is_some())
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_teams_webhook_is_recorded_retried_by_the_sweeper_and_loses_nothing() {
    let (teams, url) = start_teams(3).await;
    let factory = Factory::start_with(Options {
        teams_webhook: Some(url),
        ..Options::default()
    })
    .await;
    let run = factory
        .push_and_wait(
            "8a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let request = run.approval.clone().unwrap();
    let failed: Vec<_> = request
        .notifications
        .iter()
        .filter(|n| n.channel == "teams")
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].delivered);
    assert!(failed[0].error.as_deref().unwrap().contains("503"));
    assert!(
        !failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("/workflows/hook"),
        "the webhook URL is a secret"
    );

    factory.sweep().await; // fails again (2nd)
    factory.sweep().await; // fails again (3rd)
    factory.sweep().await; // delivered
    factory.sweep().await; // nothing left to send
    let after = factory.run(&run.id).await.unwrap();
    let attempts: Vec<bool> = after
        .approval
        .unwrap()
        .notifications
        .iter()
        .filter(|n| n.channel == "teams")
        .map(|n| n.delivered)
        .collect();
    assert_eq!(attempts, [false, false, false, true]);
    assert_eq!(teams.cards.lock().await.len(), 1);
    assert_eq!(after.status, RunStatus::WaitingForApproval);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approvers_who_have_not_decided_are_reminded_once_before_the_deadline() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock = Arc::clone(&offset);
    let images = two_of_three();
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| {
            app.clock = Arc::new(move || {
                chrono::Utc::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))
            });
        }),
        ..Options::default()
    })
    .await;
    let run = factory
        .push_and_wait(
            "9b0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let link = factory.approval_link(&run.id, APPROVERS[0]);
    factory.decide(&link, "approve").await;

    factory.sweep().await; // 72 hours left: no reminder yet
    let reminders = |run: &Run| {
        run.approval
            .as_ref()
            .unwrap()
            .notifications
            .iter()
            .filter(|n| n.kind == NoticeKind::Reminder)
            .map(|n| n.approver.clone())
            .collect::<Vec<_>>()
    };
    assert!(reminders(&factory.run(&run.id).await.unwrap()).is_empty());

    offset.store(49 * 3600, Ordering::SeqCst); // 23 hours before the 72-hour deadline
    factory.sweep().await;
    factory.sweep().await;
    let mut reminded = reminders(&factory.run(&run.id).await.unwrap());
    reminded.sort();
    assert_eq!(
        reminded,
        [APPROVERS[1], APPROVERS[2]],
        "once each, and not the approver who decided"
    );
    let note: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            factory
                .data
                .path()
                .join("outbox")
                .join(&run.id)
                .join(format!("{}.json", APPROVERS[1])),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(note["kind"], "reminder");
    assert!(
        note["email"]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Reminder:")
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_keeps_open_links_working_until_it_is_removed() {
    let data = tempfile::TempDir::new().unwrap();
    let old = common::approval_keys("k1", 1);
    let new = common::approval_keys("k2", 2);
    let factory = Factory::start_in(
        data,
        Options {
            approval_keys: old.clone(),
            ..Options::default()
        },
    )
    .await;
    let run = factory
        .push_and_wait(
            "aa0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let link = factory.approval_link(&run.id, "platform-lead");
    let data = factory.stop().await;

    // New key first (it signs), old key still verifying.
    let factory = Factory::start_in(
        data,
        Options {
            approval_keys: format!("{new},{old}"),
            ..Options::default()
        },
    )
    .await;
    let path = link.split_once("/api/").unwrap().1;
    let link = format!("{}/api/{path}", factory.url);
    assert_eq!(factory.http.get(&link).send().await.unwrap().status(), 200);
    let data = factory.stop().await;

    // The old key removed: the link is refused and says why.
    let factory = Factory::start_in(
        data,
        Options {
            approval_keys: new,
            ..Options::default()
        },
    )
    .await;
    let link = format!("{}/api/{path}", factory.url);
    let response = factory.decide(&link, "approve").await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("no longer active"));
    assert!(factory.run(&run.id).await.unwrap().decisions.is_empty());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_in_user_other_than_the_approver_cannot_use_the_link_and_pages_leak_no_one_elses_link()
 {
    let images = two_of_three();
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let run = factory
        .push_and_wait(
            "bb0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let alice = factory.approval_link(&run.id, APPROVERS[0]);
    let bob = factory.approval_link(&run.id, APPROVERS[1]);
    let bob_token = bob.rsplit_once('/').unwrap().1;
    let response = factory
        .http
        .post(&alice)
        .header("X-MS-CLIENT-PRINCIPAL-NAME", APPROVERS[1])
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let page = factory
        .http
        .get(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(APPROVERS[0]));
    // The page names the other approvers and where their decisions stand,
    // never their links.
    for other in &APPROVERS[1..] {
        let token = factory.approval_link(&run.id, other);
        let token = token.rsplit_once('/').unwrap().1;
        assert!(!page.contains(token), "alice's page holds {other}'s link");
    }
    assert!(!page.contains(bob_token));
    let signed_in = factory
        .http
        .post(&alice)
        .header("X-MS-CLIENT-PRINCIPAL-NAME", APPROVERS[0])
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_clicks_record_exactly_one_decision_per_approver() {
    let images = two_of_three();
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let run = factory
        .push_and_wait(
            "cc0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let links: Vec<String> = APPROVERS
        .iter()
        .map(|a| factory.approval_link(&run.id, a))
        .collect();
    let mut clicks = Vec::new();
    for i in 0..50 {
        let (link, decision) = match i % 5 {
            0 | 1 => (links[0].clone(), "approve"),
            2 | 3 => (links[1].clone(), "approve"),
            _ => (
                links[2].clone(),
                if i % 2 == 0 { "reject" } else { "approve" },
            ),
        };
        let http = factory.http.clone();
        clicks.push(tokio::spawn(async move {
            let response = http
                .post(&link)
                .form(&[("decision", decision)])
                .send()
                .await
                .unwrap();
            (link, response.status().as_u16())
        }));
    }
    let mut accepted = std::collections::BTreeMap::<String, usize>::new();
    for click in clicks {
        let (link, status) = click.await.unwrap();
        assert!(matches!(status, 200 | 409), "a click answered {status}");
        if status == 200 {
            *accepted.entry(link).or_default() += 1;
        }
    }
    assert!(
        accepted.values().all(|n| *n == 1),
        "one accepted click per approver: {accepted:?}"
    );
    let after = factory
        .wait_for(&run.id, Duration::from_secs(30), |r| {
            r.status != RunStatus::WaitingForApproval || r.decisions.len() == 3
        })
        .await;
    let mut deciders: Vec<&str> = after
        .decisions
        .iter()
        .map(|d| d.approver.as_str())
        .collect();
    deciders.sort();
    deciders.dedup();
    assert_eq!(
        deciders.len(),
        after.decisions.len(),
        "an approver decided twice"
    );
    assert_eq!(after.decisions.len(), accepted.len());
    // Whatever the order, the outcome follows the recorded decisions.
    let approvals = after
        .decisions
        .iter()
        .filter(|d| d.verdict.name() == "approve")
        .count();
    let rejected = after.decisions.iter().any(|d| d.verdict.name() == "reject");
    if rejected {
        assert_eq!(after.status, RunStatus::Rejected);
    } else {
        assert!(approvals >= 2);
        let done = factory.wait_status(&run.id, RunStatus::Released).await;
        assert_eq!(done.stage(Stage::Release).status, StageStatus::Succeeded);
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_decide_from_the_command_line_with_the_same_checks_and_audit() {
    let factory = Factory::start().await;
    let run = factory
        .push_and_wait(
            "dd0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let decide = |who: &str, decision: &str, token: &str| {
        factory
            .http
            .post(format!("{}/api/runs/{}", factory.url, run.id))
            .bearer_auth(token)
            .json(
                &serde_json::json!({ "decision": decision, "as": who, "comment": "from the CLI" }),
            )
            .send()
    };
    assert_eq!(
        decide("platform-lead", "approve", "guess")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        decide("mallory", "approve", OPERATOR_TOKEN)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        decide("platform-lead", "maybe", OPERATOR_TOKEN)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        decide("platform-lead", "approve", OPERATOR_TOKEN)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        decide("platform-lead", "approve", OPERATOR_TOKEN)
            .await
            .unwrap()
            .status(),
        409
    );
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    let decision = &released.decisions[0];
    assert_eq!(
        (decision.via.as_str(), decision.comment.as_deref()),
        ("cli", Some("from the CLI"))
    );
    let missing = factory
        .http
        .post(format!("{}/api/runs/no-such-run", factory.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({ "decision": "approve", "as": "platform-lead" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    factory.stop().await;
}

/// A credential that hands out one fixed token (the Entra ID exchange itself
/// cannot run here).
#[derive(Debug)]
struct FixedToken;

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for FixedToken {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        assert_eq!(scopes, ["https://communication.azure.com/.default"]);
        Ok(azure_core::credentials::AccessToken::new(
            "entra-token-for-tests",
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// The Email API's own example of a send (Communication Services Email
/// data plane 2023-03-31), whose 202 answer the stand-in gives.
const SEND_EMAIL_EXAMPLE: &str =
    "specification/communication/data-plane/Email/stable/2023-03-31/examples/SendEmail.json";

/// A Communication Services Email stand-in on loopback, answering with the
/// SendEmail example's 202 (Operation-Location, retry-after, `{"id","status"}`);
/// every request and answer is checked against the Email_Send operation of
/// the vendored specification.
#[derive(Clone, Default)]
struct Mailbox {
    sent: Arc<Mutex<Vec<(String, String, serde_json::Value)>>>,
    violations: common::spec_validator::Violations,
}

async fn send_email(
    State(mailbox): State<Mailbox>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: axum::http::HeaderMap,
    axum::Json(message): axum::Json<serde_json::Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let example = common::spec_validator::example(SEND_EMAIL_EXAMPLE);
    let answer = &example["responses"]["202"];
    let answer_headers: Vec<(String, String)> = answer["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let exchange = common::spec_validator::Exchange {
        method: "POST".into(),
        url: format!(
            "https://contoso.westus.communications.azure.com/emails:send?{}",
            query.clone().unwrap_or_default()
        ),
        request_headers: Vec::new(),
        request_body: message.clone(),
        status: 202,
        response_headers: answer_headers.clone(),
        response_body: answer["body"].clone(),
    };
    let checked = tokio::task::spawn_blocking(move || common::spec_validator::check(&exchange))
        .await
        .expect("check the exchange");
    if let Err(violation) = checked {
        let (status, body) = violation.arm_answer();
        mailbox.violations.push(violation);
        return (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(body),
        )
            .into_response();
    }
    mailbox
        .sent
        .lock()
        .await
        .push((query.unwrap_or_default(), auth, message));
    let mut response = (StatusCode::ACCEPTED, axum::Json(answer["body"].clone())).into_response();
    for (name, value) in answer_headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn approvers_get_an_email_through_communication_services_with_an_entra_token() {
    let mailbox = Mailbox::default();
    common::spec_validator::ready().await;
    let router = Router::new()
        .route("/emails:send", post(send_email))
        .with_state(mailbox.clone());
    let endpoint = common::serve_loopback(router).await;

    let images = two_of_three();
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| {
            let email = image_factory::azure::email::EmailChannel::new(
                &endpoint,
                "DoNotReply@images.contoso.com",
                Arc::new(FixedToken),
            )
            .unwrap();
            app.notifier = image_factory::ports::notifier::Notifier::new(vec![Arc::new(email)]);
        }),
        ..Options::default()
    })
    .await;
    let run = factory
        .push_and_wait(
            "ee1b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let sent = mailbox.sent.lock().await.clone();
    assert_eq!(sent.len(), 3, "one email per approver");
    for (query, auth, message) in &sent {
        assert_eq!(query, "api-version=2023-03-31");
        assert_eq!(auth, "Bearer entra-token-for-tests");
        assert_eq!(message["senderAddress"], "DoNotReply@images.contoso.com");
        let to = message["recipients"]["to"][0]["address"].as_str().unwrap();
        assert!(APPROVERS.contains(&to));
        assert!(
            message["content"]["subject"]
                .as_str()
                .unwrap()
                .starts_with("Approve example")
        );
        let text = message["content"]["plainText"].as_str().unwrap();
        let link = text
            .lines()
            .find(|l| l.contains("/api/approvals/"))
            .unwrap()
            .trim()
            .to_string();
        // Each email's link is its recipient's link, and it works.
        let page = factory
            .http
            .get(&link)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains(to),
            "the link in {to}'s email opens someone else's page"
        );
    }
    let recorded = factory.run(&run.id).await.unwrap().approval.unwrap();
    assert!(
        recorded
            .notifications
            .iter()
            .all(|n| n.channel == "email" && n.delivered)
    );
    assert!(
        !serde_json::to_string(&recorded)
            .unwrap()
            .contains("entra-token-for-tests")
    );
    factory.stop().await;
    mailbox.violations.assert_none();
}
