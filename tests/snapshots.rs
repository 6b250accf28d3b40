//! Every run builds exactly what was pushed: the images folder at the
//! pushed commit, snapshotted once, by the real `git` of a real repository,
//! and the real packer. An edit left in the working tree is not built, a
//! commit that adds an image builds it with no restart, and a broken
//! `image.toml` fails only its own image's run, naming the file and line.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Factory, Options, copy_example};
use image_factory::archive::{Format, Layout, Limits};
use image_factory::domain::run::{RunStatus, Stage};
use sha2::{Digest, Sha256};

/// Runs `git` in `dir` with a fixed identity; answers its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Factory Test",
            "-c",
            "user.email=test@example.com",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository holding `images/example`, committed; answers the commit.
fn repository(root: &Path) -> String {
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("README.md"), "images\n").unwrap();
    copy_example(&root.join("images"), "example");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the example image"]);
    git(root, &["rev-parse", "HEAD"])
}

/// The example's provisioning script, saying `marker` in the build log.
fn provision(root: &Path, marker: &str) {
    let script = root.join("images/example/scripts/provision.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let text = match text.find("\necho \"provisioned by") {
        Some(at) => text[..at + 1].to_string(),
        None => text,
    };
    std::fs::write(&script, format!("{text}echo \"provisioned by {marker}\"\n")).unwrap();
}

/// The SHA-256 of the canonical snapshot of the images folder at `commit`,
/// from `git archive` run here.
fn snapshot_of(root: &Path, commit: &str) -> String {
    let out = std::process::Command::new("git")
        .args(["archive", "--format=tar", commit, "--", "images"])
        .current_dir(root)
        .output()
        .expect("git archive");
    assert!(out.status.success());
    let layout = Layout {
        folder: "images".into(),
        ..Layout::default()
    };
    let read = image_factory::archive::read(&out.stdout, Format::Tar, &layout, &Limits::default())
        .expect("git's own archive reads");
    read.tree.canonical_with_hash().1
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_builds_its_commits_content_not_the_working_tree_and_its_tag_names_that_commit() {
    let repo = tempfile::TempDir::new().unwrap();
    let root = repo.path();
    repository(root);
    provision(root, "commit A");
    git(root, &["commit", "-q", "-am", "A: provision differently"]);
    let a = git(root, &["rev-parse", "HEAD"]);
    // Edited again, never committed: a push of A must not build this.
    provision(root, "the uncommitted edit");

    let factory = Factory::start_with(Options::with_images(&root.join("images"))).await;
    let run = factory
        .push_and_wait(&a, RunStatus::WaitingForApproval)
        .await;

    let log = std::fs::read_to_string(&run.build.as_ref().expect("built").log).unwrap();
    assert!(log.contains("provisioned by commit A"), "{log}");
    assert!(!log.contains("the uncommitted edit"), "{log}");

    let source = run.source.clone().expect("the run records its source");
    assert_eq!(source.commit.as_deref(), Some(a.as_str()));
    assert!(!source.uncommitted);
    assert_eq!(source.snapshot.as_str(), snapshot_of(root, &a));
    // Stored once, under its own SHA-256.
    let stored = factory
        .data
        .path()
        .join("sources")
        .join(format!("{}.tar", source.snapshot));
    let bytes = std::fs::read(&stored).expect("the snapshot is stored");
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        source.snapshot.as_str()
    );
    assert_eq!(source.size, {
        let layout = Layout::default();
        image_factory::archive::read(&bytes, Format::Tar, &layout, &Limits::default())
            .unwrap()
            .tree
            .size()
    });

    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let released = factory
        .wait_for(&run.id, Duration::from_secs(120), |r| r.git_tag.is_some())
        .await;
    let tag = format!("example/{}", run.version);
    assert_eq!(
        git(root, &["rev-parse", &format!("refs/tags/{tag}^{{commit}}")]),
        a
    );
    let version = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(
            factory
                .data
                .path()
                .join("releases/example")
                .join(run.version.to_string())
                .join("image-version.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(version["source"]["snapshot"], source.snapshot.as_str());
    assert_eq!(version["source"]["commit"], a.as_str());
    assert_eq!(version["gitCommit"], a.as_str());
    // The notes, the run's page and `runs show` name the commit and the snapshot.
    let notes = std::fs::read_to_string(
        factory
            .data
            .path()
            .join("releases/example")
            .join(run.version.to_string())
            .join("release-notes.md"),
    )
    .unwrap();
    assert!(
        notes.contains(&format!("- Source: commit {a} of "))
            && notes.contains(&format!("snapshot sha256:{}", source.snapshot)),
        "{notes}"
    );
    let page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{}", factory.url, run.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("sha256:{}", source.snapshot)),
        "{page}"
    );
    assert!(!page.contains("uncommitted working tree"));
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["runs", "show", run.id.as_str(), "--url", &factory.url])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("source: commit {a} of "))
            && shown.contains(source.snapshot.as_str()),
        "{shown}"
    );
    assert_eq!(released.status, RunStatus::Released);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_that_adds_an_image_builds_it_and_a_broken_image_toml_fails_only_its_own_run() {
    let repo = tempfile::TempDir::new().unwrap();
    let root = repo.path();
    repository(root);
    let factory = Factory::start_with(Options::with_images(&root.join("images"))).await;

    // Added after the factory started: built with no restart.
    copy_example(&root.join("images"), "web");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "a web image"]);
    let added = git(root, &["rev-parse", "HEAD"]);
    let answer = factory.push(&added, &["images/web/build.pkr.hcl"]).await;
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    let web = factory
        .wait_status(&format!("push-web-{added}"), RunStatus::WaitingForApproval)
        .await;
    assert_eq!(
        web.source.as_ref().unwrap().commit.as_deref(),
        Some(added.as_str())
    );

    // One broken image.toml and one good change in the same commit.
    let toml = root.join("images/web/image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("timeout_minutes = 10", "timeout_minutes = 0"),
    )
    .unwrap();
    let line = std::fs::read_to_string(&toml)
        .unwrap()
        .lines()
        .position(|l| l.contains("timeout_minutes = 0"))
        .unwrap()
        + 1;
    provision(root, "the broken commit");
    git(root, &["commit", "-q", "-am", "break web, change example"]);
    let broken = git(root, &["rev-parse", "HEAD"]);
    let answer = factory
        .push(
            &broken,
            &[
                "images/web/image.toml",
                "images/example/scripts/provision.sh",
            ],
        )
        .await;
    assert_eq!(answer.status(), 202);
    let failed = factory
        .wait_status(&format!("push-web-{broken}"), RunStatus::Failed)
        .await;
    let failure = failed.failure.expect("why");
    assert_eq!(failure.stage, Some(Stage::Validate));
    assert!(
        failure
            .reason
            .contains(&format!("images/web/image.toml is not valid (line {line})"))
            && failure.reason.contains("timeout_minutes"),
        "{}",
        failure.reason
    );
    let example = factory
        .wait_status(
            &format!("push-example-{broken}"),
            RunStatus::WaitingForApproval,
        )
        .await;
    let log = std::fs::read_to_string(&example.build.expect("built").log).unwrap();
    assert!(log.contains("provisioned by the broken commit"), "{log}");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_images_folder_in_no_repository_is_built_as_an_uncommitted_working_tree_and_not_tagged()
{
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "example");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let run = factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await;
    let source = run.source.clone().expect("a source");
    assert!(source.uncommitted);
    let shown: serde_json::Value = factory
        .http
        .get(format!("{}/api/runs/{}", factory.url, run.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["source"]["uncommitted"], true);
    let page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{}", factory.url, run.id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("uncommitted working tree"), "{page}");
    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let tagged = factory
        .wait_for(&run.id, Duration::from_secs(120), |r| r.git_tag.is_some())
        .await;
    let record = tagged.git_tag.expect("a record");
    assert!(
        format!("{:?}", record.state).contains("uncommitted working tree"),
        "{record:?}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_prunes_snapshots_no_run_or_release_needs_and_keeps_the_rest() {
    let images = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    // A rejected run: its snapshot is needed by nothing once it is old.
    let rejected = factory
        .push_and_wait(&"1".repeat(40), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&rejected.id, "platform-lead");
    assert_eq!(factory.decide(&link, "reject").await.status(), 200);
    factory.wait_status(&rejected.id, RunStatus::Rejected).await;
    // A released run of other content: its version is in the gallery.
    std::fs::write(dir.join("scripts/marker.txt"), "released").unwrap();
    let released = factory
        .push_and_wait(&"2".repeat(40), RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&released.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    factory.wait_status(&released.id, RunStatus::Released).await;
    // A run still waiting, of a third content.
    std::fs::write(dir.join("scripts/marker.txt"), "waiting").unwrap();
    let waiting = factory
        .push_and_wait(&"3".repeat(40), RunStatus::WaitingForApproval)
        .await;

    let store = factory.data.path().join("sources");
    let file = |run: &image_factory::domain::run::Run| {
        store.join(format!("{}.tar", run.source.as_ref().unwrap().snapshot))
    };
    let snapshots = [&rejected, &released, &waiting].map(file);
    for snapshot in &snapshots {
        assert!(snapshot.exists(), "{}", snapshot.display());
        // Stored three days ago: past the grace of a run being created.
        let aged = std::process::Command::new("touch")
            .args(["-d", "3 days ago"])
            .arg(snapshot)
            .status()
            .unwrap();
        assert!(aged.success());
    }
    factory.sweep().await;
    assert!(
        !snapshots[0].exists(),
        "the rejected run's snapshot is pruned"
    );
    assert!(snapshots[1].exists(), "the release's snapshot is kept");
    assert!(snapshots[2].exists(), "the waiting run's snapshot is kept");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_and_the_dashboard_list_the_images_of_the_branch_head_not_those_read_at_start() {
    let repo = tempfile::TempDir::new().unwrap();
    let root = repo.path();
    repository(root);
    let factory = Factory::start_with(Options::with_images(&root.join("images"))).await;
    assert!(!factory.app.images.contains_key("web"));

    // Committed after start, never pushed: the head of the built branch holds it.
    copy_example(&root.join("images"), "web");
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "a web image"]);
    // A folder in the working tree only is not at the head.
    copy_example(&root.join("images"), "draft");

    let fleet: serde_json::Value = factory.get_json("/api/runs?view=fleet").await;
    let names: Vec<&str> = fleet["images"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["image"].as_str())
        .collect();
    assert_eq!(names, ["example", "web"], "{fleet:#}");
    // The image page of an image with no run yet exists; the draft's does not.
    let status = |path: String| {
        let http = factory.http.clone();
        async move { http.get(path).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        status(format!("{}/api/dashboard/images/web", factory.url)).await,
        200
    );
    assert_eq!(
        status(format!("{}/api/dashboard/images/draft", factory.url)).await,
        404
    );
    factory.stop().await;
}
