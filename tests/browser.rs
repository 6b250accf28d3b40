//! The approval page in a real browser: headless Chromium opens an
//! approver's link on a 375-pixel-wide phone with JavaScript off, reads the
//! whole story of the run (image and version, the push with its message and
//! pusher, the files changed since the previous release, the smoke test,
//! the approvers so far and the time left, a link to the run), fits the
//! screen without sideways scrolling, and its Approve button moves the run on.

mod common;

use std::path::Path;

use common::browser::{Browser, BrowserOptions};
use common::{Factory, GITHUB_SECRET, Options, copy_example, github_push, sign};
use image_factory::domain::run::RunStatus;

/// A phone's viewport: 375 CSS pixels wide.
const PHONE: (u32, u32) = (375, 812);

/// Pushes `commit` of the example image to `main` with `message`, as GitHub
/// sends it.
async fn push_with_message(factory: &Factory, commit: &str, message: &str) {
    let mut body: serde_json::Value =
        serde_json::from_str(&github_push(commit, &["images/example/scripts"], "main")).unwrap();
    body["head_commit"]["message"] = message.into();
    body["commits"][0]["message"] = message.into();
    let body = body.to_string();
    let pushed = factory
        .http
        .post(format!("{}/api/hooks/github", factory.url))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(GITHUB_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
}

/// The example image with a 24-hour approval and no reminder set: the
/// reminder comes from the expiry.
fn images(dir: &Path) {
    let folder = copy_example(dir, "example");
    let toml = folder.join("image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("expires_hours = 72", "expires_hours = 24"),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_reads_the_whole_story_on_a_375_pixel_phone_without_javascript_and_approves() {
    let dir = tempfile::TempDir::new().unwrap();
    images(dir.path());
    let factory = Factory::start_with(Options::with_images(dir.path())).await;

    // The image's first release.
    let first = "aa0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    push_with_message(&factory, first, "First image").await;
    let first_id = format!("push-example-{first}");
    let waiting = factory
        .wait_status(&first_id, RunStatus::WaitingForApproval)
        .await;
    let request = waiting.approval.as_ref().expect("an approval request");
    assert_eq!(
        request.remind_before_hours, 8,
        "a 24-hour approval reminds a third of it before its deadline"
    );
    factory
        .decide(
            &factory.approval_link(&first_id, "platform-lead"),
            "approve",
        )
        .await;
    let released = factory.wait_status(&first_id, RunStatus::Released).await;

    // A push that changes one script and adds another.
    let scripts = dir.path().join("example/scripts");
    let provision = scripts.join("provision.sh");
    let mut text = std::fs::read_to_string(&provision).unwrap();
    text.push_str("\n# hardened\n");
    std::fs::write(&provision, text).unwrap();
    std::fs::write(scripts.join("harden.sh"), "#!/bin/sh\necho hardened\n").unwrap();
    let commit = "ee0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    push_with_message(
        &factory,
        commit,
        "Harden `sshd_config` for CIS_1.2 <b>now</b>\n\nThe long story.",
    )
    .await;
    let id = format!("push-example-{commit}");
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&id, "platform-lead");

    let browser = Browser::start(BrowserOptions {
        window: PHONE,
        javascript: false,
    })
    .await;
    browser.open(&link).await;
    let text = browser.text().await;
    let version = run.version.to_string();
    let smoke = run.checks.first().expect("the smoke test's checks");
    for fact in [
        // The image and version.
        "Approve example",
        version.as_str(),
        // The trigger: the commit, its message (code span and markup as
        // text) and who pushed it.
        commit,
        "Harden sshd_config for CIS_1.2 <b>now</b>",
        "Pushed by",
        "Codertocat",
        // What changed since the previous release.
        &format!("Since {}", released.version),
        "Added files",
        "scripts/harden.sh",
        "Changed files",
        "scripts/provision.sh",
        // The tests, the approvers so far and the time left.
        smoke.as_str(),
        "platform-lead: not decided yet",
        "1 of 1 approvals needed; 23 h",
        "Nothing is decided until you press a button",
    ] {
        assert!(
            text.contains(fact),
            "the page does not show {fact:?}:\n{text}"
        );
    }
    assert!(
        !text.contains("The long story"),
        "only the message's first line"
    );
    let code = browser
        .script("return document.querySelector('.commit-message code').textContent;")
        .await;
    assert_eq!(code, "sshd_config", "the message's code span is code");
    let href = browser
        .script("return document.querySelector('a.run-link').getAttribute('href');")
        .await;
    assert_eq!(
        href,
        format!("/api/dashboard/runs/{id}"),
        "a link to the run"
    );

    let (scroll, viewport) = browser.widths().await;
    assert_eq!(viewport, u64::from(PHONE.0), "the viewport is a phone's");
    assert!(
        scroll <= viewport,
        "the page scrolls sideways: {scroll} px wide in a {viewport} px viewport"
    );
    // The whole page, as tall as it is, for the docs.
    let height = browser
        .script("return document.documentElement.scrollHeight;")
        .await
        .as_u64()
        .unwrap();
    browser
        .resize(PHONE.0, u32::try_from(height).unwrap_or(PHONE.1))
        .await;
    assert!(!browser.overflows_horizontally().await);
    browser.screenshot("approval-page-phone").await;
    browser.resize(PHONE.0, PHONE.1).await;
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
    assert!(!browser.overflows_horizontally().await);
    browser.screenshot("approval-recorded-phone").await;

    let released = factory.wait_status(&id, RunStatus::Released).await;
    assert_eq!(
        released.decisions[0].comment.as_deref(),
        Some("Checked the smoke test on my phone")
    );
    factory.stop().await;
}
