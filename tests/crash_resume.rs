//! Kill the factory in the middle of a build and start it again: the build's
//! message comes back when its lock runs out, the new delivery supersedes the
//! dead attempt (stopping the packer process it left behind), and the run
//! goes on. The dead attempt's log is on disk up to its last second and stays
//! readable beside the new attempt's. This drives the real binary as a child
//! process.

mod common;

use std::time::Duration;

use common::child::{UpOptions, push, up, wait};
use common::{copy_example, repo_root};
use image_factory::domain::run::{RunStatus, Stage, StageStatus};

/// The last line the first attempt prints before it pauses.
const LAST_LINE: &str = "provisioning: the last line before the pause";

/// `image-factory runs logs ...` against the factory at `url`.
/// `image-factory runs logs --raw`: packer's machine-readable lines as the
/// attempt wrote them (the readable form is tested in tests/cli_runs.rs).
fn runs_logs(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["runs", "logs", "--raw"])
        .args(args)
        .args(["--url", url])
        .current_dir(repo_root())
        .output()
        .expect("run image-factory runs logs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_interrupted_by_a_crash_is_run_again_and_the_run_goes_on() {
    let images = tempfile::TempDir::new().unwrap();
    let data = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    // The first attempt prints two lines and pauses long; later ones do not pause.
    let paused = images.path().join("first-attempt-paused");
    let provision = std::fs::read_to_string(dir.join("scripts/provision.sh")).unwrap();
    std::fs::write(
        dir.join("scripts/provision.sh"),
        provision.replacen(
            "set -eu\n",
            &format!(
                "set -eu\necho 'provisioning: starts'\necho '{LAST_LINE}'\nif mkdir '{}' 2>/dev/null; then sleep 60; fi\n",
                paused.display()
            ),
            1,
        ),
    )
    .unwrap();
    let options = || UpOptions {
        images: images.path(),
        data: data.path(),
        port: common::child::free_port(),
        umask: None,
    };
    let first = up(options()).await;

    let commit = "9a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    let id = push(&first.url, commit, &["images/example/scripts/provision.sh"]).await;
    wait(&first.url, &id, "build started", |r| {
        r.stage(Stage::Build).status == StageStatus::Running
    })
    .await;
    // While the first attempt pauses, what it printed reaches the disk.
    let log = data.path().join("runs").join(&id).join("build.log");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(LAST_LINE) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the line printed before the pause is not on disk while the build pauses: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(paused.exists(), "the first attempt pauses");
    drop(first); // SIGKILL: no shutdown, no settle, packer left running

    let second = up(options()).await;
    let run = wait(&second.url, &id, "approval reached", |r| {
        r.status == RunStatus::WaitingForApproval
    })
    .await;
    let build = run.stage(Stage::Build);
    assert_eq!(build.status, StageStatus::Succeeded);
    assert_eq!(build.attempts.len(), 2, "{build:#?}");
    assert!(
        build.attempts[0]
            .outcome
            .as_deref()
            .unwrap_or_default()
            .contains("abandoned")
    );
    assert_eq!(
        build.attempts[1].execution.delivery, 2,
        "the same message, delivered again"
    );
    assert_eq!(
        build.attempts[0].execution.message_id,
        build.attempts[1].execution.message_id
    );

    // The dead attempt's log is kept and readable; the current one is the second's.
    let dead = runs_logs(&second.url, &[&id, "--attempt", "1"]);
    let dead_log = String::from_utf8_lossy(&dead.stdout);
    assert!(
        dead.status.success(),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
    assert!(
        dead_log.contains(LAST_LINE) && !dead_log.contains(",artifact,"),
        "the dead attempt's log: {dead_log}"
    );
    let current = runs_logs(&second.url, &[&id]);
    let current_log = String::from_utf8_lossy(&current.stdout);
    assert!(
        current_log.contains(LAST_LINE) && current_log.contains(",artifact,"),
        "the second attempt's log: {current_log}"
    );
    assert_eq!(
        runs_logs(&second.url, &[&id, "--attempt", "2"]).stdout,
        current.stdout,
        "attempt 2 is the current one"
    );
    let beyond = runs_logs(&second.url, &[&id, "--attempt", "3"]);
    assert_eq!(beyond.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&beyond.stderr).contains("from 1 to 2"),
        "{}",
        String::from_utf8_lossy(&beyond.stderr)
    );
    for bad in ["0", "+1", "1.0", "x", "-1", "99999999999999999999"] {
        let answer = reqwest::get(format!("{}/api/runs/{id}?log=0&attempt={bad}", second.url))
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "attempt={bad}");
    }

    // The run's page shows what the dead attempt printed, with a link to all of it.
    let page = reqwest::get(format!("{}/api/dashboard/runs/{id}", second.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let earlier = page
        .split_once("Earlier build attempts")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no earlier attempts on the run's page: {page}"));
    assert!(earlier.contains("Attempt 1: abandoned"), "{earlier}");
    assert!(earlier.contains(LAST_LINE), "{earlier}");
    assert!(earlier.contains("log=0&amp;attempt=1"), "{earlier}");
    drop(second);
}
