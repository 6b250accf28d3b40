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
    let step = page
        .lines()
        .find(|l| l.contains("Running local shell script"))
        .unwrap_or_else(|| panic!("no step in the log tail: {page}"));
    let (time, rest) = step.split_once("  ").unwrap();
    assert!(
        chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").is_ok()
            && rest.trim_start().starts_with("golden.null.golden ")
            && !page.contains(",ui,say,"),
        "the log tail reads as time, step and message: {step}"
    );
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
    assert!(
        page.contains("Release notes") && page.contains("The image's first release."),
        "{page}"
    );
    browser.screenshot("run-released").await;

    browser
        .click("nav a[href='/api/dashboard/images/example']")
        .await;
    let image = browser.text().await;
    assert!(image.contains("Current version"), "{image}");
    assert!(image.contains("Notes of the latest release"), "{image}");
    browser.screenshot("image").await;

    browser
        .click("a.changelog[href='/api/dashboard/changelog/example']")
        .await;
    let changelog = browser.text().await;
    assert!(changelog.contains("Changelog of example"), "{changelog}");
    assert!(
        changelog.contains("Released") && changelog.contains(&id),
        "{changelog}"
    );
    assert!(changelog.contains("platform-lead approved"), "{changelog}");
    browser.screenshot("changelog").await;
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
        recorded_by: None,
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

    // Release notes quote what people wrote (a commit message, a comment,
    // file names): as text on the run page, the image page and the changelog.
    let released = hostile_release(&image);
    factory.app.store.create(&released).await.unwrap();
    for path in [
        format!("/api/dashboard/runs/{}", released.id),
        format!("/api/dashboard/images/{encoded_image}"),
        format!("/api/dashboard/changelog/{encoded_image}"),
    ] {
        let (status, page) = get(format!("{}{path}", factory.url)).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_inert(&page);
        for shown in [
            "&#60;script&#62;alert(1)&#60;/script&#62;",
            "&#34;&#62;&#60;img src=x onerror=alert(1)&#62;",
        ] {
            assert!(page.contains(shown), "{path}: {shown} missing: {page}");
        }
    }
    factory.stop().await;
}

/// A released run of `image` whose notes carry hostile text everywhere
/// people write: the commit message, a file name, a variable, a comment.
fn hostile_release(image: &str) -> Run {
    use image_factory::domain::run::{InputManifest, ReleaseNotes, ReleaseRecord};
    let now = Utc::now();
    let manifest = |file: &str, value: &str| InputManifest {
        files: [(file.to_string(), "00".to_string())].into(),
        variables: [(SCRIPT.to_string(), value.to_string())].into(),
        ..InputManifest::default()
    };
    let mut previous = Run::new(
        "push-hostile-previous".parse().unwrap(),
        image.into(),
        ImageVersion::new(2026, 1129, 0).unwrap(),
        Trigger::new(TriggerKind::Push, "github"),
        Default::default(),
        now,
    );
    previous.inputs = Some(manifest("build.pkr.hcl", "a"));
    let mut run = Run::new(
        "push-hostile-released".parse().unwrap(),
        image.into(),
        ImageVersion::new(2026, 1130, 1).unwrap(),
        Trigger {
            commit: Some(BREAKOUT.into()),
            message: Some(format!("{SCRIPT}\nmore")),
            actor: Some(BREAKOUT.into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        Default::default(),
        now,
    );
    run.inputs = Some(manifest(&format!("scripts/{BREAKOUT}"), BREAKOUT));
    run.checks = vec![SCRIPT.into()];
    run.decisions.push(Decision {
        approver: "lead".into(),
        verdict: Verdict::Approve,
        at: now,
        comment: Some(BREAKOUT.into()),
        via: "link".into(),
        recorded_by: None,
        token_id: None,
    });
    run.status = RunStatus::Released;
    run.release = Some(ReleaseRecord {
        image_version: run.version.to_string(),
        run_id: run.id.to_string(),
        notes: Some(Box::new(ReleaseNotes::compose(&run, Some(&previous), now))),
        ..ReleaseRecord::default()
    });
    run
}

/// A released run of `image` at `version`, built on `base` of its parent.
fn released_run(image: &str, version: ImageVersion, base: Option<&str>) -> Run {
    let mut run = Run::new(
        format!("push-{image}-0123456789ab").parse().unwrap(),
        image.into(),
        version,
        Trigger {
            base_image_version: base.map(String::from),
            ..Trigger::new(TriggerKind::Push, "test")
        },
        Default::default(),
        Utc::now(),
    );
    run.status = RunStatus::Released;
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_page_shows_the_gallery_s_latest_and_the_image_tree_with_outdated_children() {
    // `base`, and two images built on it: `child` on an older release of
    // it, `fresh` on its latest.
    let images = tempfile::TempDir::new().unwrap();
    common::copy_example(images.path(), "base");
    for child in ["child", "fresh"] {
        let dir = common::copy_example(images.path(), child);
        let toml = std::fs::read_to_string(dir.join("image.toml")).unwrap();
        std::fs::write(
            dir.join("image.toml"),
            format!("{toml}\n[base_image]\nfactory = \"base\"\n"),
        )
        .unwrap();
    }
    let factory = Factory::start_with(common::Options::with_images(images.path())).await;
    let store = &factory.app.store;
    let latest = ImageVersion::new(2026, 1130, 0).unwrap();
    store
        .create(&released_run("base", latest, None))
        .await
        .unwrap();
    store
        .create(&released_run(
            "child",
            ImageVersion::new(2026, 1102, 0).unwrap(),
            Some("2026.1101.0"),
        ))
        .await
        .unwrap();
    store
        .create(&released_run(
            "fresh",
            ImageVersion::new(2026, 1130, 1).unwrap(),
            Some("2026.1130.0"),
        ))
        .await
        .unwrap();
    // The gallery holds three versions of `base`; the highest is excluded
    // from latest (rolled back).
    let releases = factory.data.path().join("releases");
    std::fs::create_dir_all(releases.join("base")).unwrap();
    std::fs::write(
        releases.join("base").join("gallery.json"),
        r#"{"versions":[
            {"version":"2026.1101.0","published":"2026-11-01T06:00:00Z","excludeFromLatest":false},
            {"version":"2026.1130.0","published":"2026-11-30T06:00:00Z","excludeFromLatest":false},
            {"version":"2026.1130.1","published":"2026-11-30T09:00:00Z","excludeFromLatest":true}
        ]}"#,
    )
    .unwrap();
    // The child's gallery file is unreadable.
    std::fs::create_dir_all(releases.join("child")).unwrap();
    std::fs::write(releases.join("child").join("gallery.json"), "not json").unwrap();
    let get = |path: &str| {
        let (http, url) = (factory.http.clone(), format!("{}{path}", factory.url));
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };

    let (status, page) = get("/api/dashboard/images/base").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Latest in the gallery: <strong>2026.1130.0</strong>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><td>2026.1130.1</td><td>2026-11-30 09:00 UTC</td><td>excluded from latest</td></tr>"),
        "{page}"
    );
    assert!(page.contains(
        "<tr><td>2026.1130.0</td><td>2026-11-30 06:00 UTC</td><td><strong>latest</strong></td></tr>"
    ));
    assert!(
        page.contains(r#"<tr id="child-child"><td><a href="/api/dashboard/images/child">child</a></td><td>2026.1101.0</td><td><span class="status failed outdated">outdated</span> <small class="outdated-reason">built on base 2026.1101.0; base is at 2026.1130.0 now</small></td></tr>"#),
        "a child built on an older release is outdated: {page}"
    );
    assert!(
        page.contains(r#"<tr id="child-fresh"><td><a href="/api/dashboard/images/fresh">fresh</a></td><td>2026.1130.0</td><td>—</td></tr>"#),
        "a child built on the latest release is not: {page}"
    );
    assert!(
        !page.contains(r#"class="parent""#),
        "base has no parent: {page}"
    );

    // The child's page names its parent and the version it was built on; its
    // gallery could not be read, which the page says instead of failing.
    let (status, page) = get("/api/dashboard/images/child").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"Built on <a href="/api/dashboard/images/base">base</a>: the current release was built on its version <strong>2026.1101.0</strong>; its current version is 2026.1130.0."#),
        "{page}"
    );
    assert!(page.contains("outdated"), "{page}");
    assert!(
        page.contains(r#"<p class="notice error gallery-error">The gallery could not be read"#),
        "{page}"
    );
    assert!(!page.contains("Latest in the gallery"), "{page}");

    // The fleet names the outdated child in its parent's row.
    let (status, fleet) = get("/api/dashboard/fleet").await;
    assert_eq!(status, 200, "{fleet}");
    assert!(fleet.contains("<th>Outdated children</th>"), "{fleet}");
    let base_row = fleet
        .split(r#"<tr id="image-base">"#)
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("a row for base");
    assert!(
        base_row.ends_with(r#"<td><ul><li class="outdated"><a href="/api/dashboard/images/child">child</a>: built on base 2026.1101.0; base is at 2026.1130.0 now</li></ul></td>"#),
        "{base_row}"
    );
    factory.stop().await;
}
