//! What operators see: the runs dashboard in a real browser while a run
//! moves, a run's page with its timeline and approval trail, an image's
//! page, pages that refuse bad input without echoing markup, and hostile
//! text in a stored run shown as text, with the links it is part of
//! percent-encoded.

mod common;

use chrono::Utc;
use common::browser::{Browser, BrowserOptions};
use common::{Factory, OPERATOR_TOKEN};
use image_factory::domain::approval::{ApprovalRequest, Decision, Verdict};
use image_factory::domain::run::{
    Attempt, Execution, Failure, Run, RunStatus, Stage, StageStatus, Trigger, TriggerKind,
    WorkerRef,
};
use image_factory::domain::version::ImageVersion;

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_follows_a_run_from_the_dashboard_to_its_release() {
    let factory = Factory::start().await;
    let commit = "f00b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;

    let browser = Browser::start(BrowserOptions {
        window: (1280, 900),
        javascript: false,
    })
    .await;
    browser
        .open(&format!("{}/api/dashboard", factory.url))
        .await;
    let list = browser.text().await;
    assert!(
        list.contains(&id) && list.contains("waiting-for-approval"),
        "{list}"
    );
    assert!(list.contains("push") && list.contains(&commit[..12]));
    browser.screenshot("dashboard").await;

    browser
        .click(&format!("a[href='/api/dashboard/runs/{id}']"))
        .await;
    let page = browser.text().await;
    assert!(
        page.contains("Timeline") && page.contains("Approval"),
        "{page}"
    );
    assert!(page.contains("1 of 1 approvals needed"));
    browser.find("svg.timeline rect").await;
    assert!(page.contains("Build log"), "the log tail is shown");
    browser.screenshot("run-waiting").await;

    let link = factory.approval_link(&id, "platform-lead");
    factory
        .http
        .post(&link)
        .form(&[("decision", "approve"), ("comment", "ship")])
        .send()
        .await
        .unwrap();
    factory.wait_status(&id, RunStatus::Released).await;
    browser
        .open(&format!("{}/api/dashboard/runs/{id}", factory.url))
        .await;
    let page = browser.text().await;
    assert!(page.contains("released"), "{page}");
    assert!(
        page.contains("platform-lead") && page.contains("ship"),
        "the approval trail"
    );
    assert!(page.contains("image-version.json") && page.contains("\"imageVersion\""));
    browser.screenshot("run-released").await;

    browser
        .click("nav a[href='/api/dashboard/images/example']")
        .await;
    let image = browser.text().await;
    assert!(image.contains("Latest released version"), "{image}");
    browser.screenshot("image").await;
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_and_bad_filters_get_a_page_with_a_way_back_and_markup_stays_text() {
    let factory = Factory::start().await;
    let get = |path: String| {
        let http = factory.http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = get(format!("{}/api/dashboard/runs/nope", factory.url)).await;
    assert_eq!(status, 404);
    assert!(body.contains("href=\"/api/dashboard\""));
    let (status, _) = get(format!("{}/api/dashboard/images/nope", factory.url)).await;
    assert_eq!(status, 404);
    let (status, body) = get(format!(
        "{}/api/dashboard?status=%3Cscript%3Ealert(1)%3C/script%3E",
        factory.url
    ))
    .await;
    assert_eq!(status, 400);
    assert!(!body.contains("<script>") && body.contains("&#60;script&#62;"));
    let (status, _) = get(format!(
        "{}/api/dashboard?continuation=garbage",
        factory.url
    ))
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(format!("{}/api/dashboard/elsewhere/x", factory.url)).await;
    assert_eq!(status, 404);

    // A reason carrying markup is shown as text.
    let answer: serde_json::Value = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({ "image": "example", "reason": "<script>alert('x')</script>", "force": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["runId"].as_str().unwrap();
    let (status, body) = get(format!("{}/api/dashboard/runs/{id}", factory.url)).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("<script>alert"),
        "markup from a reason reached the page"
    );
    assert!(body.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;"));
    factory.wait_status(id, RunStatus::WaitingForApproval).await;

    // The approver's page and email show it as text too.
    let link = factory.approval_link(id, "platform-lead");
    let (status, body) = get(link).await;
    assert_eq!(status, 200);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;"));
    let outbox = factory
        .data
        .path()
        .join("outbox")
        .join(id)
        .join("platform-lead.json");
    let note: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outbox).unwrap()).unwrap();
    let html = note["email"]["html"].as_str().unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;"));
    factory.stop().await;
}

/// Markup that ends an attribute and opens an element (a stored record is
/// data: a shared store can hold anything).
const BREAKOUT: &str = r#""><img src=x onerror=alert(1)>"#;
const SCRIPT: &str = "<script>alert(1)</script>";

/// A finished run whose every free-text field is hostile, with an image
/// name that needs encoding in a link.
fn hostile_run(image: &str) -> Run {
    let now = Utc::now();
    let mut run = Run::new(
        "push-hostile-0123456789ab".parse().unwrap(),
        image.into(),
        ImageVersion::new(2026, 1130, 0).unwrap(),
        Trigger {
            commit: Some(BREAKOUT.into()),
            reason: Some(SCRIPT.into()),
            ..Trigger::new(TriggerKind::OutOfBand, &format!("cli {BREAKOUT}"))
        },
        Default::default(),
        now,
    );
    run.status = RunStatus::Failed;
    run.failure = Some(Failure {
        stage: Some(Stage::Build),
        reason: format!("{SCRIPT} {BREAKOUT}"),
        at: now,
        diagnosis: None,
    });
    let build = &mut run.stages[Stage::Build.index()];
    build.status = StageStatus::Failed;
    build.started_at = Some(now);
    build.finished_at = Some(now);
    build.summary = Some(SCRIPT.into());
    build.attempts.push(Attempt {
        execution: Execution {
            message_id: BREAKOUT.into(),
            delivery: 1,
        },
        started_at: now,
        finished_at: Some(now),
        outcome: Some(SCRIPT.into()),
        worker: Some(WorkerRef {
            id: "w1".into(),
            execution: BREAKOUT.into(),
            started_at: now,
            log_url: "javascript:alert(1)".into(),
        }),
    });
    run.approval = Some(ApprovalRequest {
        approvers: vec![format!("eve{SCRIPT}")],
        required: 1,
        expires_at: now,
        links: Vec::new(),
        remind_before_hours: 0,
        notifications: Vec::new(),
    });
    run.decisions.push(Decision {
        approver: format!("eve{SCRIPT}"),
        verdict: Verdict::Reject,
        at: now,
        comment: Some(BREAKOUT.into()),
        via: format!("cli{SCRIPT}"),
        token_id: None,
    });
    run
}

/// No element or attribute from the record made it into the page.
fn assert_inert(body: &str) {
    for raw in [
        "<script>alert",
        "<img",
        "onerror=alert(1)>",
        "href=\"javascript",
    ] {
        assert!(
            !body.contains(raw),
            "{raw:?} from a stored record reached the page: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_text_in_a_stored_run_is_shown_as_text_and_links_to_it_are_percent_encoded() {
    let factory = Factory::start().await;
    let image = format!("we b/..?#{BREAKOUT}");
    let run = hostile_run(&image);
    factory.app.store.create(&run).await.unwrap();
    let get = |path: String| {
        let http = factory.http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let encoded_image = "we%20b%2F..%3F%23%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E";
    let image_href = format!("href=\"/api/dashboard/images/{encoded_image}\"");
    let shown_image = "we b/..?#&#34;&#62;&#60;img src=x onerror=alert(1)&#62;";

    let (status, list) = get(format!("{}/api/dashboard", factory.url)).await;
    assert_eq!(status, 200);
    assert_inert(&list);
    assert!(list.contains(&image_href), "{list}");
    assert!(list.contains(shown_image), "{list}");
    assert!(list.contains("href=\"/api/dashboard/runs/push-hostile-0123456789ab\""));

    let (status, page) = get(format!(
        "{}/api/dashboard/runs/push-hostile-0123456789ab",
        factory.url
    ))
    .await;
    assert_eq!(status, 200);
    assert_inert(&page);
    assert!(page.contains(&image_href), "{page}");
    for shown in [
        // The trigger's reason, the build's outcome and summary, the approver.
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        // The commit, the approver's comment, the worker's execution.
        "&#34;&#62;&#60;img src=x onerror=alert(1)&#62;",
    ] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }
    assert!(
        page.contains("log: javascript:alert(1)</dd>"),
        "a log address that is not a web address is shown, not linked: {page}"
    );

    // Following the encoded link reaches the image's page.
    let (status, image_page) = get(format!(
        "{}/api/dashboard/images/{encoded_image}",
        factory.url
    ))
    .await;
    assert_eq!(status, 200, "{image_page}");
    assert_inert(&image_page);
    assert!(
        image_page.contains(&format!("<h1>Image {shown_image}</h1>")),
        "{image_page}"
    );
    assert!(image_page.contains("href=\"/api/dashboard/runs/push-hostile-0123456789ab\""));
    factory.stop().await;
}
