//! The factory as a child process: the real binary's `up` on a loopback
//! port, killed with SIGKILL when dropped (no shutdown, no settling), so a
//! test can crash it and start it again on the same data folder.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use image_factory::domain::run::Run;

use super::{GITHUB_SECRET, approval_keys, github_push, repo_root, sign};

/// A running `image-factory up`.
pub struct Up {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// How a child factory is started.
pub struct UpOptions<'a> {
    /// Folder of image folders.
    pub images: &'a Path,
    /// The data folder.
    pub data: &'a Path,
    /// The HTTP port.
    pub port: u16,
    /// The process umask to start it with (the test's own when `None`).
    pub umask: Option<u32>,
}

/// Starts `image-factory up` (queue locks of 2 s) and waits until it answers.
pub async fn up(options: UpOptions<'_>) -> Up {
    let binary = env!("CARGO_BIN_EXE_image-factory");
    let mut command = match options.umask {
        Some(umask) => {
            let mut sh = Command::new("sh");
            sh.args([
                "-c",
                &format!("umask {umask:03o} && exec \"$0\" \"$@\""),
                binary,
            ]);
            sh
        }
        None => Command::new(binary),
    };
    let child = command
        .args([
            "up",
            "--port",
            &options.port.to_string(),
            "--lock-seconds",
            "2",
        ])
        // No --root: `up` stages the repository's functions into the data folder.
        .current_dir(repo_root())
        .env("IMAGE_FACTORY_IMAGES", options.images)
        .env("IMAGE_FACTORY_DATA", options.data)
        .env("IMAGE_FACTORY_GITHUB_SECRET", GITHUB_SECRET)
        .env("IMAGE_FACTORY_APPROVAL_KEYS", approval_keys("k1", 3))
        .env_remove("IMAGE_FACTORY_OPERATOR_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start image-factory up");
    let up = Up {
        child,
        url: format!("http://127.0.0.1:{}", options.port),
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

/// Pushes `commit` changing `paths` on `main`; the id of the run it started.
pub async fn push(url: &str, commit: &str, paths: &[&str]) -> String {
    let body = github_push(commit, paths, "main");
    let pushed = reqwest::Client::new()
        .post(format!("{url}/api/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(GITHUB_SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 202);
    let answer: serde_json::Value = pushed.json().await.expect("push answer");
    answer["runs"][0]["runId"]
        .as_str()
        .unwrap_or_else(|| panic!("no run started: {answer}"))
        .to_string()
}

/// Run `id` through the runs API, if it answers.
pub async fn get_run(url: &str, id: &str) -> Option<Run> {
    let response = reqwest::get(format!("{url}/api/runs/{id}")).await.ok()?;
    response.json().await.ok()
}

/// Waits (60 s at most) until run `id` satisfies `done`.
pub async fn wait(url: &str, id: &str, what: &str, done: impl Fn(&Run) -> bool) -> Run {
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
