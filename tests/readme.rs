//! The README's commands, run for real so the README cannot drift from what
//! the factory does: every ```sh block under a heading runs with bash against
//! a local factory that the test starts as a user would (`image-factory up`, a
//! child process in a fresh folder, its state in `.image-factory/` there).
//!
//! The blocks are run as written, with two substitutions and one variable:
//! `cargo run --` becomes the built binary, `http://localhost:7071` the test
//! factory's address, and `IMAGE_FACTORY_URL` points the CLI's `--url` at it.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use image_factory::domain::run::{Run, RunStatus};

/// The section of the README whose commands take a push to a release.
const TRY_IT: &str = "Try it: from push to release on one machine";

/// The text of every ```sh block in the section under the heading `heading`
/// (up to the next heading of the same or a higher level), in order.
fn sh_blocks(markdown: &str, heading: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut level = None;
    let mut block: Option<String> = None;
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            if let Some(text) = block.take() {
                blocks.push(text);
            } else if level.is_some() && line.trim() == "```sh" {
                block = Some(String::new());
            }
            fenced = !fenced;
            continue;
        }
        if let Some(text) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.bytes().take_while(|b| *b == b'#').count();
        if hashes == 0 || line.as_bytes().get(hashes) != Some(&b' ') {
            continue;
        }
        match level {
            Some(open) if hashes <= open => break,
            Some(_) => {}
            None if line[hashes..].trim() == heading => level = Some(hashes),
            None => {}
        }
    }
    assert!(level.is_some(), "the README has no heading `{heading}`");
    blocks
}

/// A block with `cargo run --` replaced by `binary` and the default local
/// address by `url`.
fn rewrite(block: &str, binary: &str, url: &str) -> String {
    block
        .replace("cargo run --", binary)
        .replace("http://localhost:7071", url)
}

/// `image-factory up`, stopped when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// What the factory printed, to explain a failure.
fn factory_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
}

/// Starts `image-factory up` in `dir` on `port` (its output in `up.log`
/// beside it) and waits until it answers.
async fn start_factory(dir: &Path, port: u16) -> Up {
    let log = std::fs::File::create(dir.join("up.log")).expect("up.log");
    let up = Up(Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["up", "--port", &port.to_string(), "--root"])
        .arg(common::app_root())
        .current_dir(dir)
        .env("IMAGE_FACTORY_IMAGES", common::example_images())
        .stdout(log.try_clone().expect("up.log"))
        .stderr(log)
        .spawn()
        .expect("start image-factory up"));
    let url = format!("http://127.0.0.1:{port}/api/runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = reqwest::get(&url).await
            && answer.status() == 200
        {
            return up;
        }
        assert!(
            Instant::now() < deadline,
            "the factory did not start:\n{}",
            factory_log(dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_readme_finds_every_sh_block_of_a_section_and_only_those() {
    let markdown = "# T\n## A\n```sh\none\n# not a heading\n```\ntext\n```json\n{}\n```\n### A.1\n```sh\ntwo\n```\n## B\n```sh\nthree\n```\n";
    assert_eq!(
        sh_blocks(markdown, "A"),
        ["one\n# not a heading\n", "two\n"]
    );
    assert_eq!(sh_blocks(markdown, "B"), ["three\n"]);
    assert_eq!(
        rewrite(
            "cargo run -- runs --url http://localhost:7071",
            "/bin/f",
            "http://127.0.0.1:9"
        ),
        "/bin/f runs --url http://127.0.0.1:9"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_try_it_commands_take_a_push_to_a_release() {
    for tool in ["bash", "curl", "openssl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh");
        assert!(
            found.status.success(),
            "{tool} is missing: scripts/setup.sh installs it"
        );
    }
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).expect("README");
    let blocks = sh_blocks(&readme, TRY_IT);
    assert!(blocks.len() >= 3, "the Try it section lost its commands");

    let dir = tempfile::TempDir::new().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _up = start_factory(&work, port).await;
    for block in &blocks {
        let script = rewrite(block, env!("CARGO_BIN_EXE_image-factory"), &url);
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&work)
            .env("IMAGE_FACTORY_URL", &url)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "a README block failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}\nthe factory:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            factory_log(&work)
        );
    }

    let page: serde_json::Value = reqwest::get(format!("{url}/api/runs"))
        .await
        .expect("runs")
        .json()
        .await
        .expect("runs json");
    let runs: Vec<Run> = serde_json::from_value(page["runs"].clone()).expect("runs");
    let pushed: Vec<&Run> = runs.iter().filter(|r| r.id.starts_with("push-")).collect();
    assert_eq!(
        pushed.len(),
        1,
        "one commit pushed twice is one run: {runs:#?}"
    );
    assert_eq!(pushed[0].status, RunStatus::Released, "{:#?}", pushed[0]);
    let released = work
        .join(".image-factory/releases/example")
        .join(pushed[0].version.to_string())
        .join("image-version.json");
    assert!(released.exists(), "{} is missing", released.display());
}
