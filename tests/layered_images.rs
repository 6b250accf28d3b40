//! Layered images on one machine, driven as their users drive them: `child`
//! is built on `base` (`[base_image] factory = "base"`). The child cannot
//! build before its parent has a release; a release of the parent starts
//! the child's run on that version (`-var base_image_version=…` reaches
//! packer), once; Patch Tuesday starts only the parent, the child follows.
//! End to end: one push of a parent releases it and both its children, each
//! announced by a verified release event, the children's release notes name
//! the base version they moved from, and a rollback of the parent is an
//! event, not a rebuild: the children built on the withdrawn version are
//! shown outdated with the rollback's reason, and build on the parent's
//! current version when they next build.

mod common;

use std::path::Path;

use common::event_receiver::{self, Receiver, with_webhook};
use common::{Factory, Options, copy_example};
use image_factory::domain::run::{RunStatus, TriggerKind};
use serde_json::json;

/// The example image as `name`, built on `parent` when given; its build
/// prints the base version it was given.
fn image(images: &Path, name: &str, parent: Option<&str>) {
    let dir = copy_example(images, name);
    let build = std::fs::read_to_string(dir.join("build.pkr.hcl")).expect("template");
    std::fs::write(
        dir.join("build.pkr.hcl"),
        build.replace(
            "\"IMAGE_NAME=${var.image_name}\",",
            "\"IMAGE_NAME=${var.image_name}\",\n      \"BASE_VERSION=${var.base_image_version}\",",
        ),
    )
    .expect("written");
    std::fs::write(
        dir.join("base.pkr.hcl"),
        "variable \"base_image_version\" {\n  type    = string\n  default = \"\"\n}\n",
    )
    .expect("written");
    let script = dir.join("scripts").join("provision.sh");
    let provision = std::fs::read_to_string(&script).expect("script");
    std::fs::write(
        &script,
        format!("{provision}echo \"built on base ${{BASE_VERSION:-none}}\"\n"),
    )
    .expect("written");
    let mut toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    if let Some(parent) = parent {
        toml.push_str(&format!("\n[base_image]\nfactory = \"{parent}\"\n"));
    }
    std::fs::write(dir.join("image.toml"), toml).expect("written");
}

/// Approves run `id` and waits until it is released.
async fn approve(factory: &Factory, id: &str) -> image_factory::domain::run::Run {
    factory.wait_status(id, RunStatus::WaitingForApproval).await;
    let link = factory.approval_link(id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    factory.wait_status(id, RunStatus::Released).await
}

fn build_log(run: &image_factory::domain::run::Run) -> String {
    std::fs::read_to_string(&run.build.as_ref().expect("built").log).expect("the build log")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parents_release_starts_its_child_on_that_version_once() {
    let images = tempfile::TempDir::new().expect("a folder");
    image(images.path(), "base", None);
    image(images.path(), "child", Some("base"));
    let factory = Factory::start_with(Options::with_images(images.path())).await;

    // Before the parent has a release the child cannot build: the push is
    // accepted, the child listed as waiting for its parent, and no run made.
    let commit = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
    let answer = factory.push(commit, &["images/child/build.pkr.hcl"]).await;
    let status = answer.status().as_u16();
    let answer: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["runs"], json!([]), "{answer}");
    assert_eq!(waiting_for_parent(&answer), [("child", "base")], "{answer}");
    assert!(factory.runs().await.is_empty());

    // The parent's release starts the child on that version.
    let first = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1";
    factory.push(first, &["images/base/build.pkr.hcl"]).await;
    let base = approve(&factory, &format!("push-base-{first}")).await;
    let child_id = format!("base-child-{}", base.version);
    let child = approve(&factory, &child_id).await;
    assert_eq!(child.trigger.kind, TriggerKind::BaseImageUpdate);
    let base_version = base.version.to_string();
    assert_eq!(
        child.trigger.base_image_version.as_deref(),
        Some(base_version.as_str())
    );
    assert!(
        build_log(&child).contains(&format!("built on base {base_version}")),
        "the template received the parent's version"
    );
    assert!(build_log(&base).contains("built on base none"));

    // Started once: the sweeper finds the run and starts nothing more.
    factory.sweep().await;
    let children: Vec<String> = factory
        .runs()
        .await
        .into_iter()
        .filter(|r| r.image == "child")
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(children, [child_id]);

    // A push to the child now builds on the parent's latest release.
    let own = "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2";
    std::fs::write(
        images.path().join("child/scripts/marker.txt"),
        "a change of the child's own\n",
    )
    .expect("written");
    factory
        .push(own, &["images/child/scripts/marker.txt"])
        .await;
    let pushed = approve(&factory, &format!("push-child-{own}")).await;
    assert_eq!(
        pushed.trigger.base_image_version.as_deref(),
        Some(base_version.as_str())
    );

    // A new release of the parent starts the child's next run on it.
    let second = "e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3";
    std::fs::write(images.path().join("base/scripts/marker.txt"), "patched\n").expect("written");
    factory
        .push(second, &["images/base/scripts/marker.txt"])
        .await;
    let base2 = approve(&factory, &format!("push-base-{second}")).await;
    let next = approve(&factory, &format!("base-child-{}", base2.version)).await;
    assert!(build_log(&next).contains(&format!("built on base {}", base2.version)));
    factory.stop().await;
}

/// The images a push's answer lists as waiting for their parent's first
/// release, with that parent (read from the reason).
fn waiting_for_parent(answer: &serde_json::Value) -> Vec<(&str, &str)> {
    answer["ignored"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let image = entry["image"].as_str()?;
            let reason = entry["reason"].as_str()?;
            let parent = reason
                .strip_prefix("follows ")?
                .split_once("'s first release")?
                .0;
            Some((image, parent))
        })
        .collect()
}

/// The images of the runs a push's answer lists.
fn started(answer: &serde_json::Value) -> Vec<&str> {
    answer["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|run| run["image"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_starts_every_image_that_can_start_and_lists_a_child_waiting_for_its_parent() {
    let images = tempfile::TempDir::new().expect("a folder");
    image(images.path(), "base", None);
    image(images.path(), "child", Some("base"));
    image(images.path(), "web", None);
    let factory = Factory::start_with(Options {
        // The Azure DevOps sample pushes to master.
        branches: vec!["main".into(), "master".into()],
        ..Options::with_images(images.path())
    })
    .await;

    // A GitHub push touching all three: the parent and the image after the
    // child start (their first stage's message sent with the answer), the
    // child waits for its parent's first release.
    let commit = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";
    let answer = factory
        .push(
            commit,
            &[
                "images/base/build.pkr.hcl",
                "images/child/build.pkr.hcl",
                "images/web/build.pkr.hcl",
            ],
        )
        .await;
    let status = answer.status().as_u16();
    let answer: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(started(&answer), ["base", "web"], "{answer}");
    assert_eq!(waiting_for_parent(&answer), [("child", "base")], "{answer}");
    for image in ["base", "web"] {
        factory
            .wait_status(
                &format!("push-{image}-{commit}"),
                RunStatus::WaitingForApproval,
            )
            .await;
    }

    // An Azure DevOps push lists no files, so it covers every image: the
    // same answer, not a refusal while a parent is unreleased.
    let sample = std::fs::read_to_string(
        common::repo_root().join("tests/fixtures/webhooks/azure-devops-git-push.json"),
    )
    .expect("the Azure DevOps sample");
    let response = factory
        .http
        .post(format!("{}/api/hooks/azure-devops", factory.url))
        .header("X-Hook-Secret", common::AZURE_DEVOPS_SECRET)
        .body(sample)
        .send()
        .await
        .expect("the push is delivered");
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(status, 202, "{answer}");
    assert_eq!(started(&answer), ["base", "web"], "{answer}");
    assert_eq!(waiting_for_parent(&answer), [("child", "base")], "{answer}");
    let devops = "33b55f7cb7e7e245323987634f960cf4a6e6bc74";
    for image in ["base", "web"] {
        factory
            .wait_status(
                &format!("push-{image}-{devops}"),
                RunStatus::WaitingForApproval,
            )
            .await;
    }
    assert!(
        factory.runs().await.iter().all(|r| r.image != "child"),
        "no run of the child before its parent's release"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_tuesday_starts_only_images_without_a_factory_parent() {
    let images = tempfile::TempDir::new().expect("a folder");
    image(images.path(), "base", None);
    image(images.path(), "child", Some("base"));
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let response = factory
        .http
        .post(format!("{}/patch-tuesday", factory.handler_url))
        .json(&json!({ "Data": { "timer": { "IsPastDue": false } }, "Metadata": {} }))
        .send()
        .await
        .expect("the timer fires");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        answer.to_string().contains("child follows base"),
        "{answer}"
    );
    let runs = factory.runs().await;
    let images_started: Vec<&str> = runs.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(images_started, ["base"]);
    assert_eq!(runs[0].trigger.kind, TriggerKind::PatchTuesday);
    factory.stop().await;
}

/// The subjects of the events the receiver verified, in order.
async fn subjects(receiver: &Receiver, count: usize) -> Vec<(String, String)> {
    receiver
        .wait_verified(count)
        .await
        .iter()
        .map(|d| {
            let event: serde_json::Value =
                serde_json::from_str(d["body"].as_str().expect("a body")).expect("JSON");
            (
                event["type"].as_str().unwrap_or_default().to_string(),
                event["subject"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_push_of_a_parent_releases_it_and_both_children_and_its_rollback_is_an_event_not_a_rebuild()
 {
    let images = tempfile::TempDir::new().expect("a folder");
    image(images.path(), "base", None);
    image(images.path(), "web", Some("base"));
    image(images.path(), "sql", Some("base"));
    let secret = event_receiver::secret();
    let receiver = Receiver::start(&secret, 0).await;
    let factory = Factory::start_with(with_webhook(
        Options::with_images(images.path()),
        &receiver.url,
        &secret,
    ))
    .await;

    // One push, three releases, each approved and announced.
    let first = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
    factory.push(first, &["images/base/build.pkr.hcl"]).await;
    let base = approve(&factory, &format!("push-base-{first}")).await;
    let web = approve(&factory, &format!("base-web-{}", base.version)).await;
    let sql = approve(&factory, &format!("base-sql-{}", base.version)).await;
    let mut announced = subjects(&receiver, 3).await;
    announced.sort();
    let released = |image: &str, run: &image_factory::domain::run::Run| {
        (
            "image-factory.image.released".to_string(),
            format!("{image}/{}", run.version),
        )
    };
    let mut expected = vec![
        released("base", &base),
        released("web", &web),
        released("sql", &sql),
    ];
    expected.sort();
    assert_eq!(announced, expected);

    // The parent's next release moves both children; their notes say from what.
    let second = "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2";
    std::fs::write(images.path().join("base/scripts/marker.txt"), "patched\n").expect("written");
    factory
        .push(second, &["images/base/scripts/marker.txt"])
        .await;
    let base2 = approve(&factory, &format!("push-base-{second}")).await;
    for child in ["web", "sql"] {
        let next = approve(&factory, &format!("base-{child}-{}", base2.version)).await;
        let notes = next
            .release
            .as_ref()
            .and_then(|r| r.notes.as_ref())
            .expect("release notes");
        let moved = notes
            .changes
            .as_ref()
            .and_then(|c| c.base_image.as_ref())
            .expect("the base image version changed");
        assert_eq!(
            (moved.before.clone(), moved.after.clone()),
            (
                Some(base.version.to_string()),
                Some(base2.version.to_string())
            ),
            "{child}"
        );
        let markdown = std::fs::read_to_string(
            factory
                .data
                .path()
                .join("releases")
                .join(child)
                .join(next.version.to_string())
                .join("release-notes.md"),
        )
        .expect("the notes in the gallery");
        assert!(
            markdown.contains(&format!(
                "| base image | {} | {} |",
                base.version, base2.version
            )),
            "{markdown}"
        );
    }
    subjects(&receiver, 6).await;
    let runs_before = factory.runs().await.len();

    // Rolling the parent back is announced and rebuilds nothing by itself.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["rollback", "--url", &factory.url, "--image", "base"])
        .args([
            "--to",
            &base.version.to_string(),
            "--reason",
            "base 2 breaks IIS",
        ])
        .args(["--as", "platform-lead"])
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", common::OPERATOR_TOKEN)
        .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
        .env_remove("IMAGE_FACTORY_API_SCOPE")
        .env_remove("IMAGE_FACTORY_FUNCTION_KEY")
        .output()
        .await
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = subjects(&receiver, 7).await.pop().expect("an event");
    assert_eq!(
        last,
        (
            "image-factory.image.rolled-back".to_string(),
            format!("base/{}", base.version)
        )
    );
    factory.sweep().await;
    assert_eq!(factory.runs().await.len(), runs_before, "nothing rebuilt");

    // The children built on the withdrawn version are outdated, and say why:
    // on the parent's page and in the fleet.
    let page = factory
        .http
        .get(format!("{}/api/dashboard/images/base", factory.url))
        .send()
        .await
        .expect("the page")
        .text()
        .await
        .expect("text");
    for child in ["web", "sql"] {
        let row = page
            .split(&format!("<tr id=\"child-{child}\">"))
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or_else(|| panic!("{child}'s row: {page}"));
        assert!(
            row.contains("outdated")
                && row.contains(&format!(
                    "built on base {}, which a rollback to {} withdrew",
                    base2.version, base.version
                ))
                && row.contains("platform-lead: base 2 breaks IIS"),
            "{row}"
        );
    }
    let fleet: serde_json::Value = factory
        .http
        .get(format!("{}/api/runs?view=fleet", factory.url))
        .send()
        .await
        .expect("the fleet")
        .json()
        .await
        .expect("JSON");
    let base_row = fleet["images"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["image"] == "base"))
        .expect("base's row");
    assert_eq!(
        base_row["currentRelease"]["version"],
        base.version.to_string()
    );
    let outdated: Vec<&str> = base_row["outdatedChildren"]
        .as_array()
        .expect("outdated children")
        .iter()
        .map(|c| c["image"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outdated, ["sql", "web"]);

    // A child built now builds on the parent's current version.
    let answer = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(common::OPERATOR_TOKEN)
        .json(&json!({"image": "web", "reason": "rebuild on the current base"}))
        .send()
        .await
        .expect("the trigger");
    let answer: serde_json::Value = answer.json().await.expect("JSON");
    let id = answer["runId"].as_str().expect("a run id").to_string();
    let rebuilt = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    assert_eq!(
        rebuilt.trigger.base_image_version,
        Some(base.version.to_string())
    );
    assert!(
        build_log(&rebuilt).contains(&format!("built on base {}", base.version)),
        "{}",
        build_log(&rebuilt)
    );
    factory.stop().await;
    receiver.stop().await;
}
