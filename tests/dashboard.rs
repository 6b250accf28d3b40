//! What operators see: the runs dashboard in a real browser while a run
//! moves, a run's page with its timeline and approval trail, an image's
//! page, and pages that refuse bad input without echoing markup.

mod common;

use common::browser::{Browser, BrowserOptions};
use common::{Factory, OPERATOR_TOKEN};
use image_factory::domain::run::RunStatus;

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
    assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
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
    assert!(body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    factory.wait_status(id, RunStatus::WaitingForApproval).await;
    factory.stop().await;
}
