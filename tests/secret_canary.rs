//! Secret canary: the factory is configured with recognisable secrets (the
//! GitHub webhook secret, the Azure DevOps service-hook secret, the operator
//! token, the approval signing key, a Teams webhook URL whose path is its
//! secret, and with its runs in Cosmos DB an account key) and driven through a
//! released run, a failed run, badly signed webhooks, wrong tokens and forged
//! approval links. None of the secrets may appear in any log line (everything
//! the process traces, at debug level), in any stored run (the raw SQLite
//! files; every document of the Cosmos DB container, read back through the
//! server's API), in any page or in any answer, including the errors of a
//! throttled or unreachable Cosmos DB account.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use common::cosmos_server::CosmosServer;
use common::{Factory, Options, sign};
use image_factory::azure::cosmos::CosmosStore;
use image_factory::azure::cosmos::{CosmosAuth, CosmosSettings};
use image_factory::domain::run::RunStatus;
use image_factory::startup::StoreBackend;

const GITHUB: &str = "CANARY-github-7f3a9c1e5b";
const OPERATOR: &str = "CANARY-operator-4d2b8e6f0a";
const DEVOPS: &str = "CANARY-devops-9c1d3e5f7b";
const TEAMS_PATH: &str = "CANARY-teams-sig-2e4f6a8c0d";
/// A token in a release-event webhook's query string, and its password.
const EVENT_URL_TOKEN: &str = "CANARY-event-url-token-5a7c9e";
const EVENT_URL_PASSWORD: &str = "CANARY-event-url-pw-3b5d7f";
/// The release-event webhooks' signing key (configured as `whsec_<base64>`).
const EVENT_KEY: &[u8; 32] = b"CANARY-event-signing-key-0123456";
/// The approval signing key's bytes (32), recognisable in base64 and in hex.
const KEY: &[u8; 32] = b"CANARY-approval-key-0123456789ab";
/// The Cosmos DB account key's bytes (64, as an account's keys are); the
/// factory is given their base64 form, which the SDK signs requests with.
const COSMOS_KEY: &[u8; 64] = b"CANARY-cosmos-account-key-0123456789abcdefghijklmnopqrstuvwxyzAB";

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
    let cosmos_hex: String = COSMOS_KEY.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("GitHub webhook secret", GITHUB.into()),
        ("operator token", OPERATOR.into()),
        ("Azure DevOps secret", DEVOPS.into()),
        ("Teams webhook path", TEAMS_PATH.into()),
        ("event webhook URL token", EVENT_URL_TOKEN.into()),
        ("event webhook URL password", EVENT_URL_PASSWORD.into()),
        (
            "event signing key (raw)",
            String::from_utf8_lossy(EVENT_KEY).into_owned(),
        ),
        (
            "event signing key (base64)",
            base64::engine::general_purpose::STANDARD.encode(EVENT_KEY),
        ),
        (
            "approval key (raw)",
            String::from_utf8_lossy(KEY).into_owned(),
        ),
        ("approval key (base64)", b64),
        ("approval key (hex)", hex),
        (
            "Cosmos DB account key (raw)",
            String::from_utf8_lossy(COSMOS_KEY).into_owned(),
        ),
        ("Cosmos DB account key (base64)", cosmos_key()),
        ("Cosmos DB account key (hex)", cosmos_hex),
    ]
}

/// The account key as it is configured (`COSMOS_KEY`).
fn cosmos_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(COSMOS_KEY)
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

/// Starts a factory with every secret and the run store `store`, and drives it
/// through a released run, a failed run and every kind of bad request. Returns
/// the running factory, every answer it gave (by place), and the run ids.
async fn drive(
    store: StoreBackend,
    images_dir: &tempfile::TempDir,
) -> (Factory, Vec<(String, String)>, [String; 2]) {
    // Nothing listens there: every Teams post fails, and its error is recorded.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let teams = format!(
        "http://{}/workflows/{TEAMS_PATH}/triggers/manual/paths/invoke",
        closed.local_addr().unwrap()
    );
    // Release events go to a webhook that is down too, with credentials in
    // its URL: each failed delivery is recorded on the run and logged.
    let events_url = format!(
        "http://hook:{EVENT_URL_PASSWORD}@{}/events?token={EVENT_URL_TOKEN}",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let event_secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(EVENT_KEY)
    );
    let webhooks = image_factory::web::webhooks::WebhookSettings::from_vars(|name| match name {
        "IMAGE_FACTORY_EVENT_WEBHOOKS" => Some(events_url.clone()),
        "IMAGE_FACTORY_EVENT_WEBHOOK_SECRET" => Some(event_secret.clone()),
        _ => None,
    })
    .unwrap()
    .unwrap();
    assert_clean("the webhook settings' Debug", &format!("{webhooks:?}"));
    let factory = Factory::start_with(Options {
        tweak: Box::new(move |app| {
            let publishers = webhooks
                .publishers()
                .unwrap()
                .into_iter()
                .map(|p| {
                    std::sync::Arc::new(p)
                        as std::sync::Arc<dyn image_factory::ports::events::Publisher>
                })
                .collect();
            app.follow_ups =
                image_factory::followups::FollowUps::new(publishers, &app.settings.public_url);
        }),
        images_dir: broken_images(images_dir.path()),
        approval_keys: format!(
            "canary:{}",
            base64::engine::general_purpose::STANDARD.encode(KEY)
        ),
        teams_webhook: Some(teams),
        github_secret: GITHUB.into(),
        operator_token: OPERATOR.into(),
        azure_devops_secret: DEVOPS.into(),
        store,
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
    let released = format!("push-example-{commit}");
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
    // Its release event's delivery failed, and the failure is on record.
    factory
        .wait_for(&released, Duration::from_secs(30), |r| {
            r.follow_ups
                .first()
                .and_then(|f| f.deliveries.first())
                .is_some_and(|d| d.last_error.is_some())
        })
        .await;

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
    (factory, answers, [released, failed])
}

/// Checks every answer, and the log of the whole test binary so far.
fn assert_answers_and_log_clean(answers: &[(String, String)]) {
    for (place, text) in answers {
        assert_clean(place, text);
    }
    let logs = String::from_utf8_lossy(&capture().0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("run created") && logs.lines().count() > 20,
        "the log capture saw too little to prove anything"
    );
    assert_clean("the log", &logs);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_records_pages_or_errors() {
    capture();
    let images_dir = tempfile::TempDir::new().unwrap();
    let (factory, answers, _) = drive(StoreBackend::Sqlite, &images_dir).await;
    let data = factory.stop().await;
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
    assert_answers_and_log_clean(&answers);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cosmos_db_account_key_appears_in_logs_documents_pages_or_errors() {
    capture();
    // A server of its own: the test makes it throttle.
    let server = CosmosServer::start();
    let settings = CosmosSettings {
        auth: CosmosAuth::EmulatorKey(cosmos_key()),
        ..server.fresh_settings()
    };
    let images_dir = tempfile::TempDir::new().unwrap();
    let (factory, mut answers, [released, failed]) =
        drive(StoreBackend::Cosmos(settings.clone()), &images_dir).await;

    // The errors of an account that answers 503 to every request: the runs
    // API, the dashboard and a trigger fail, and say why.
    server.inject(503, 1000, 1).await;
    for path in ["/api/runs", "/api/dashboard"] {
        let response = factory
            .http
            .get(format!("{}{path}", factory.url))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_server_error(), "{path}");
        answers.push((
            format!("{path} while unavailable"),
            response.text().await.unwrap(),
        ));
    }
    let response = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({ "image": "example", "reason": "canary" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_server_error());
    answers.push((
        "operator trigger while unavailable".into(),
        response.text().await.unwrap(),
    ));
    server.inject(503, 0, 0).await;

    // An account that cannot be reached, with the same key.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = CosmosSettings {
        endpoint: format!("http://{}/", closed.local_addr().unwrap()),
        ..settings.clone()
    };
    drop(closed);
    match CosmosStore::connect(&unreachable).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => answers.push(("connect error".into(), format!("{e} {e:?}"))),
    }
    answers.push(("settings".into(), format!("{settings:?}")));
    let data = factory.stop().await;

    // Every document of the container, read back through the server's API
    // (the test server does not check the signature).
    let docs: serde_json::Value = reqwest::get(format!(
        "{}dbs/{}/colls/{}/docs",
        server.endpoint, settings.database, settings.container
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let documents = docs["Documents"].as_array().cloned().unwrap_or_default();
    let text = docs.to_string();
    assert!(
        documents.len() >= 3 && text.contains(&released) && text.contains(&failed),
        "the container holds too little to prove anything: {text}"
    );
    assert_clean("the Cosmos DB container", &text);
    // Every file the factory wrote beside the store.
    let mut stack = vec![data.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert_clean(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                );
            }
        }
    }
    assert_answers_and_log_clean(&answers);
}
