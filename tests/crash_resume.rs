//! Kill the factory in the middle of a build and start it again: the build's
//! message comes back when its lock runs out, the new delivery supersedes the
//! dead attempt (stopping the packer process it left behind), and the run
//! goes on. This drives the real binary as a child process.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{GITHUB_SECRET, copy_example, github_push, repo_root, sign};
use image_factory::domain::run::{Run, RunStatus, Stage, StageStatus};

struct Up {
    child: Child,
    url: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn up(images: &std::path::Path, data: &std::path::Path, port: u16) -> Up {
    let child = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args([
            "up",
            "--port",
            &port.to_string(),
            "--lock-seconds",
            "2",
            "--root",
        ])
        .arg(repo_root())
        .env("IMAGE_FACTORY_IMAGES", images)
        .env("IMAGE_FACTORY_DATA", data)
        .env("IMAGE_FACTORY_GITHUB_SECRET", GITHUB_SECRET)
        .env(
            "IMAGE_FACTORY_APPROVAL_KEYS",
            common::approval_keys("k1", 3),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start image-factory up");
    let up = Up {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{}/api/runs", up.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return up;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("image-factory up did not answer on {}", up.url);
}

async fn get_run(url: &str, id: &str) -> Option<Run> {
    let response = reqwest::get(format!("{url}/api/runs/{id}")).await.ok()?;
    response.json().await.ok()
}

async fn wait(url: &str, id: &str, what: &str, done: impl Fn(&Run) -> bool) -> Run {
    for _ in 0..600 {
        if let Some(run) = get_run(url, id).await.filter(|r| done(r)) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "run {id}: {what} did not happen within 60 s: {:#?}",
        get_run(url, id).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_interrupted_by_a_crash_is_run_again_and_the_run_goes_on() {
    let images = tempfile::TempDir::new().unwrap();
    let data = tempfile::TempDir::new().unwrap();
    let dir = copy_example(images.path(), "example");
    let provision = std::fs::read_to_string(dir.join("scripts/provision.sh")).unwrap();
    std::fs::write(
        dir.join("scripts/provision.sh"),
        provision.replacen("set -eu\n", "set -eu\nsleep 3\n", 1),
    )
    .unwrap();
    let port = free_port();
    let first = up(images.path(), data.path(), port).await;

    let commit = "9a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
    let body = github_push(commit, &["images/example/scripts/provision.sh"], "main");
    let pushed = reqwest::Client::new()
        .post(format!("{}/api/hooks/github", first.url))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(GITHUB_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 202);
    let id = format!("push-example-{commit}");
    wait(&first.url, &id, "build started", |r| {
        r.stage(Stage::Build).status == StageStatus::Running
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(first); // SIGKILL: no shutdown, no settle, packer left running

    let second = up(images.path(), data.path(), port).await;
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
    drop(second);
}
