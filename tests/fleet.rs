//! The fleet view as operators use it: `image-factory fleet` (text and
//! `--json`) against a local factory with four images in four situations —
//! released since this month's Patch Tuesday build, never released, waiting
//! for an approver, failed — the runs API's pages of it, and the page in a
//! real browser, reached from the dashboard's navigation.

mod common;

use std::sync::Arc;

use common::browser::{Browser, BrowserOptions};
use common::{Factory, OPERATOR_TOKEN, Options, copy_example};
use image_factory::config::Settings;
use image_factory::domain::fleet::{Compliance, FleetPage, Grace, PatchedBy};
use image_factory::domain::run::{RunStatus, Stage};

async fn cli(factory: &Factory, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(args)
        .args(["--url", &factory.url])
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .await
        .expect("run image-factory")
}

fn run_id(image: &str, commit: &str) -> String {
    format!("push-{image}-{commit}")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_lists_every_image_with_its_patch_state_its_waits_and_its_last_failure() {
    let images = tempfile::TempDir::new().unwrap();
    for name in ["alpha", "bravo", "charlie", "delta"] {
        copy_example(images.path(), name);
    }
    std::fs::write(
        images.path().join("delta/scripts/provision.sh"),
        "#!/bin/sh\necho 'Timeout waiting for WinRM.' >&2\nexit 1\n",
    )
    .unwrap();
    // No grace: whatever is not patched is overdue, whatever the day the test runs.
    let factory = Factory::start_with(Options {
        tweak: Box::new(|app| {
            app.settings = Arc::new(Settings {
                patch_grace: Grace::new(0).unwrap(),
                ..(*app.settings).clone()
            });
        }),
        ..Options::with_images(images.path())
    })
    .await;

    let commit = "f1ee70000000000000000000000000000000000a";
    factory
        .push(
            commit,
            &[
                "images/alpha/build.pkr.hcl",
                "images/charlie/build.pkr.hcl",
                "images/delta/build.pkr.hcl",
            ],
        )
        .await;
    let alpha = run_id("alpha", commit);
    factory
        .wait_status(&alpha, RunStatus::WaitingForApproval)
        .await;
    factory
        .decide(&factory.approval_link(&alpha, "platform-lead"), "approve")
        .await;
    factory.wait_status(&alpha, RunStatus::Released).await;
    let charlie = factory
        .wait_status(&run_id("charlie", commit), RunStatus::WaitingForApproval)
        .await;
    factory
        .wait_status(&run_id("delta", commit), RunStatus::Failed)
        .await;

    let out = cli(&factory, &["fleet", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let fleet: FleetPage = serde_json::from_slice(&out.stdout).expect("fleet JSON");
    let names: Vec<&str> = fleet.images.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"]);
    let h = &fleet.headline;
    assert_eq!(
        (h.patched, h.total, h.due, h.overdue),
        (1, 4, 0, 3),
        "{h:?}"
    );

    let [a, b, c, d] = &fleet.images[..] else {
        unreachable!()
    };
    assert!(
        matches!(&a.compliance, Compliance::Patched { run_id, how: PatchedBy::Released, .. } if *run_id == alpha),
        "{a:?}"
    );
    let release = a.current_release.as_ref().expect("alpha's release");
    assert_eq!(release.run_id, alpha);
    assert!(a.in_flight.is_empty() && a.last_failure.is_none());

    assert!(matches!(b.compliance, Compliance::Overdue { .. }), "{b:?}");
    assert!(b.current_release.is_none() && b.in_flight.is_empty() && b.last_failure.is_none());

    assert_eq!(c.compliance.name(), "overdue", "waiting is not released");
    let waiting = &c.in_flight[0];
    assert_eq!(waiting.run_id, charlie.id.as_str());
    assert_eq!(waiting.stage, Some(Stage::Approve));
    assert_eq!(
        Some(waiting.since),
        charlie.stage(Stage::Approve).started_at
    );
    let approval = waiting.approval.as_ref().expect("what it waits for");
    assert_eq!(approval.waiting_on, ["platform-lead"]);

    assert_eq!(d.compliance.name(), "overdue");
    let failure = d.last_failure.as_ref().expect("delta's failure");
    assert_eq!(failure.stage, Some(Stage::Build));
    assert_eq!(
        failure.diagnosis.as_ref().map(|d| d.kind.as_str()),
        Some("winrm-unreachable")
    );
    assert!(d.outdated_children.is_empty());

    let text = String::from_utf8_lossy(&cli(&factory, &["fleet"]).await.stdout).into_owned();
    assert!(text.starts_with("1 of 4 images patched"), "{text}");
    assert!(text.contains("bravo") && text.contains("never"), "{text}");

    // The runs API pages the view over the sorted image names.
    let get = |query: String| {
        let http = factory.http.clone();
        let url = format!("{}/api/runs?{query}", factory.url);
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, body) = get("view=fleet&limit=3".into()).await;
    assert_eq!(status, 200, "{body}");
    let first: FleetPage = serde_json::from_str(&body).unwrap();
    assert_eq!(first.images.len(), 3);
    assert_eq!(first.headline, fleet.headline);
    let next = first.continuation.expect("a second page");
    let (_, body) = get(format!("view=fleet&limit=3&continuation={next}")).await;
    let second: FleetPage = serde_json::from_str(&body).unwrap();
    assert_eq!(second.images[0].image, "delta");
    assert!(second.continuation.is_none());
    for bad in [
        "view=fleet&continuation=%21%21",
        "view=fleet&limit=0",
        "view=fleet&image=alpha",
        "view=map",
    ] {
        assert_eq!(get(bad.into()).await.0, 400, "{bad}");
    }

    // The page, reached from the dashboard's navigation.
    let browser = Browser::start(BrowserOptions {
        window: (1280, 900),
        javascript: false,
    })
    .await;
    browser
        .open(&format!("{}/api/dashboard", factory.url))
        .await;
    browser
        .click("nav.site a[href='/api/dashboard/fleet']")
        .await;
    let page = browser.wait_for_text("images patched since").await;
    assert!(page.contains("1 of 4"), "{page}");
    for fact in [
        "alpha",
        "bravo",
        "never released",
        "waits for approval",
        "platform-lead",
        "failed at build",
        "WinRM never connects",
        "Likely:",
    ] {
        assert!(page.contains(fact), "the page does not show {fact}: {page}");
    }
    browser.find("tr#image-delta span.compliance.failed").await;
    browser
        .find("tr#image-alpha span.compliance.released")
        .await;
    browser.screenshot("fleet").await;
    browser
        .click(&format!(
            "tr#image-alpha a[href='/api/dashboard/runs/{alpha}']"
        ))
        .await;
    browser.wait_for_text("Timeline").await;
    browser
        .find("nav.site a[href='/api/dashboard/fleet']")
        .await;
    factory.stop().await;
}
