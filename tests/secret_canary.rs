//! Secret canary: the factory is configured with recognisable secrets (the
//! GitHub webhook secret, the Azure DevOps service-hook secret, the operator
//! token, the approval signing key, a Teams webhook URL whose path is its
//! secret) and driven through a released run, a failed run, badly signed
//! webhooks, wrong tokens and forged approval links. None of the secrets may
//! appear in any log line (everything the process traces, at debug level),
//! in any stored run (the raw SQLite files), in any page or in any answer.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use common::{Factory, Options, sign};
use image_factory::domain::run::RunStatus;

const GITHUB: &str = "CANARY-github-7f3a9c1e5b";
const OPERATOR: &str = "CANARY-operator-4d2b8e6f0a";
const DEVOPS: &str = "CANARY-devops-9c1d3e5f7b";
const TEAMS_PATH: &str = "CANARY-teams-sig-2e4f6a8c0d";
/// The approval signing key's bytes (32), recognisable in base64 and in hex.
const KEY: &[u8; 32] = b"CANARY-approval-key-0123456789ab";

/// Everything the test binary traces.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

/// Every form a secret could leak in.
fn canaries() -> Vec<(&'static str, String)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
    let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("GitHub webhook secret", GITHUB.into()),
        ("operator token", OPERATOR.into()),
        ("Azure DevOps secret", DEVOPS.into()),
        ("Teams webhook path", TEAMS_PATH.into()),
        (
            "approval key (raw)",
            String::from_utf8_lossy(KEY).into_owned(),
        ),
        ("approval key (base64)", b64),
        ("approval key (hex)", hex),
    ]
}

fn assert_clean(place: &str, text: &str) {
    for (name, secret) in canaries() {
        assert!(
            !text.contains(&secret),
            "the {name} appears in {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(&secret))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A failing image: its smoke test exits 1.
fn broken_images(dir: &std::path::Path) -> std::path::PathBuf {
    let images = dir.join("images");
    common::copy_example(&images, "example");
    let broken = common::copy_example(&images, "broken");
    let toml = std::fs::read_to_string(broken.join("image.toml")).unwrap();
    let toml = toml.replace(
        r#"argv = ["sh", "scripts/smoke-test.sh"]"#,
        r#"argv = ["sh", "-c", "echo smoke failed; exit 1"]"#,
    );
    std::fs::write(broken.join("image.toml"), toml).unwrap();
    images
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_records_pages_or_errors() {
    let captured = capture();
    let images_dir = tempfile::TempDir::new().unwrap();
    // Nothing listens there: every Teams post fails, and its error is recorded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let teams = format!(
        "http://{}/workflows/{TEAMS_PATH}/triggers/manual/paths/invoke",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let factory = Factory::start_with(Options {
        images_dir: broken_images(images_dir.path()),
        approval_keys: format!(
            "canary:{}",
            base64::engine::general_purpose::STANDARD.encode(KEY)
        ),
        teams_webhook: Some(teams),
        github_secret: GITHUB.into(),
        operator_token: OPERATOR.into(),
        azure_devops_secret: DEVOPS.into(),
        ..Options::default()
    })
    .await;
    let http = &factory.http;
    let mut answers: Vec<(String, String)> = Vec::new();

    // A released run, from a signed push to an approval through its link.
    let commit = "c0ffee0000000000000000000000000000000001";
    let response = factory
        .push_signed_with(GITHUB, commit, &["images/example/build.pkr.hcl"], "main")
        .await;
    answers.push(("push".into(), response.text().await.unwrap()));
    let released = format!("push-example-{}", &commit[..12]);
    factory
        .wait_for(&released, Duration::from_secs(120), |r| {
            r.status == RunStatus::WaitingForApproval
        })
        .await;
    let link = factory.approval_link(&released, "platform-lead");
    let page = http.get(&link).send().await.unwrap().text().await.unwrap();
    answers.push(("approval page".into(), page));
    let decided = http
        .post(&link)
        .form(&[("decision", "approve"), ("comment", "ok")])
        .send()
        .await
        .unwrap();
    answers.push(("approval decision".into(), decided.text().await.unwrap()));
    factory.wait_status(&released, RunStatus::Released).await;

    // A failed run, started by an operator.
    let response = http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({ "image": "broken", "reason": "canary" }))
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = response.json().await.unwrap();
    answers.push(("operator trigger".into(), answer.to_string()));
    let failed = answer["runId"].as_str().unwrap().to_string();
    factory.wait_status(&failed, RunStatus::Failed).await;

    // What an attacker or a misconfigured sender sends.
    let body = common::github_push("c0ffee0000000000000000000000000000000002", &[], "main");
    let bad_hooks = [
        ("a wrong signature", sign("not-the-secret", body.as_bytes())),
        ("the secret as the signature", format!("sha256={GITHUB}")),
        ("no sha256 prefix", GITHUB.to_string()),
    ];
    for (name, signature) in bad_hooks {
        let response = http
            .post(format!("{}/api/hooks/github", factory.url))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{name}");
        answers.push((
            format!("github hook with {name}"),
            response.text().await.unwrap(),
        ));
    }
    for (name, header, value) in [
        ("a wrong secret", "Authorization", "Basic d3Jvbmc6c2VjcmV0"),
        ("a bare secret", "X-Secret", DEVOPS),
    ] {
        let response = http
            .post(format!("{}/api/hooks/azure-devops", factory.url))
            .header(header, value)
            .body("{}")
            .send()
            .await
            .unwrap();
        answers.push((
            format!("devops hook with {name}"),
            response.text().await.unwrap(),
        ));
    }
    for token in ["guess", &OPERATOR[..OPERATOR.len() - 1]] {
        let response = http
            .post(format!("{}/api/runs", factory.url))
            .bearer_auth(token)
            .json(&serde_json::json!({ "image": "example", "reason": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        answers.push((
            "operator trigger with a wrong token".into(),
            response.text().await.unwrap(),
        ));
    }
    let forged = link.replace("/approvals/", "/approvals/x");
    for bad in [
        forged,
        format!("{}/api/approvals/not-a-token", factory.url),
        format!("{}/api/approvals/{}", factory.url, "A".repeat(300)),
    ] {
        for method in ["GET", "POST"] {
            let response = http
                .request(method.parse().unwrap(), &bad)
                .form(&[("decision", "approve")])
                .send()
                .await
                .unwrap();
            answers.push((
                format!("{method} of a bad link"),
                response.text().await.unwrap(),
            ));
        }
    }

    // Every page an operator sees.
    for path in [
        "/api/dashboard".to_string(),
        format!("/api/dashboard/runs/{released}"),
        format!("/api/dashboard/runs/{failed}"),
        "/api/dashboard/images/example".to_string(),
        "/api/runs".to_string(),
        format!("/api/runs/{released}"),
        format!("/api/runs/{failed}"),
    ] {
        let response = http
            .get(format!("{}{path}", factory.url))
            .send()
            .await
            .unwrap();
        answers.push((path, response.text().await.unwrap()));
    }

    let data = factory.stop().await;
    for (place, text) in &answers {
        assert_clean(place, text);
    }
    // Every stored byte: the run store and the queue, with their write-ahead logs,
    // and every file the factory wrote (outbox, run folders, releases).
    let mut files = 0;
    let mut stack = vec![data.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "local-secrets.json") {
                let bytes = std::fs::read(&path).unwrap();
                assert_clean(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                );
                files += 1;
            }
        }
    }
    assert!(
        files >= 4,
        "the factory stored too little to prove anything ({files} files)"
    );
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("run created") && logs.lines().count() > 20,
        "the log capture saw too little to prove anything"
    );
    assert_clean("the log", &logs);
}
