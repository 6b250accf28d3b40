//! The approval page in a real browser: headless Chromium opens an
//! approver's link on a phone-sized window with JavaScript off, shows the
//! run's facts, and its Approve button moves the run on.

mod common;

use common::Factory;
use common::browser::{Browser, BrowserOptions};
use image_factory::domain::run::RunStatus;

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_opens_the_link_on_a_phone_without_javascript_and_approves() {
    let factory = Factory::start().await;
    let commit = "ee0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&id, "platform-lead");

    let browser = Browser::start(BrowserOptions {
        window: (390, 844),
        javascript: false,
    })
    .await;
    browser.open(&link).await;
    let text = browser.text().await;
    for fact in [
        run.image.as_str(),
        &run.version.to_string(),
        commit,
        "platform-lead",
    ] {
        assert!(text.contains(fact), "the page does not show {fact}: {text}");
    }
    assert!(text.contains("Nothing is decided until you press a button"));
    assert!(
        !browser.overflows_horizontally().await,
        "the page does not fit a phone"
    );
    browser.screenshot("approval-page-phone").await;
    assert_eq!(
        factory.run(&id).await.unwrap().status,
        RunStatus::WaitingForApproval,
        "opening the page decided"
    );

    browser
        .type_into("#comment", "Checked the smoke test on my phone")
        .await;
    browser.click("button.approve").await;
    let text = browser.wait_for_text("Decision recorded").await;
    assert!(text.contains("Approved"), "{text}");
    browser.screenshot("approval-recorded-phone").await;

    let released = factory.wait_status(&id, RunStatus::Released).await;
    assert_eq!(
        released.decisions[0].comment.as_deref(),
        Some("Checked the smoke test on my phone")
    );
    factory.stop().await;
}
