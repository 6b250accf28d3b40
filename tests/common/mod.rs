//! A factory for tests: the real handler and the real embedded host on
//! loopback ports, a temporary data directory, real packer, and a client
//! that talks to it as users do (signed webhooks, approval links, the runs API).

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod arm_server;
pub mod azurite;
pub mod bicep;
pub mod browser;
pub mod child;
pub mod cosmos_server;
pub mod devops;
pub mod event_receiver;
pub mod eventgrid;
pub mod github;
pub mod identity;
pub mod ingestion;
pub mod msrc;
pub mod openapi;
pub mod spec_validator;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use image_factory::app::App;
use image_factory::config::Settings;
use image_factory::domain::run::{Run, RunStatus};
use image_factory::host::BusSettings;
use image_factory::startup::{Adapters, Local, Secrets, StoreBackend, build_app, start_local};
use image_factory::web::msrc::MsrcSource;
use sha2::Sha256;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on a free loopback port for as long as the test's runtime
/// runs; answers its base URL, `http://127.0.0.1:<port>`.
pub async fn serve_loopback(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The webhook secret every test factory uses.
pub const GITHUB_SECRET: &str = "test-webhook-secret-0123456789";
/// The Azure DevOps service-hook secret every test factory uses.
pub const AZURE_DEVOPS_SECRET: &str = "test-devops-secret-555";
/// The operator token every test factory uses.
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdef";

/// The repository root (holds host.json, functions/, images/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A third-party file the tests check against (a specification, a schema, a
/// capture, Microsoft's data), by its path in the third-party folder that
/// `tests/third-party.toml` pins: `IMAGE_FACTORY_THIRD_PARTY` when set, else
/// the shared folder beside the project (`../shared/third-party`), else the
/// `.third-party/` folder that `scripts/setup.sh` downloads into.
pub fn third_party(path: &str) -> PathBuf {
    third_party_root().join(path)
}

/// The third-party folder itself (see [`third_party`]).
pub fn third_party_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMAGE_FACTORY_THIRD_PARTY") {
        return PathBuf::from(dir);
    }
    let shared = repo_root().join("../shared/third-party");
    if shared.is_dir() {
        return shared;
    }
    let downloaded = repo_root().join(".third-party");
    assert!(
        downloaded.is_dir(),
        "no third-party folder: run scripts/setup.sh (it downloads the files tests/third-party.toml pins)"
    );
    downloaded
}

/// The repository's function app staged in the Functions host's layout, as
/// `image-factory up` stages it (once per test process): the folder the
/// embedded host loads.
pub fn app_root() -> PathBuf {
    static APP: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    APP.get_or_init(|| {
        let dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("app-{}", std::process::id()));
        image_factory::package::package_dir(&repo_root(), None, &dir).expect("stage the app");
        dir
    })
    .clone()
}

/// A test approval key ring (`id:base64`).
pub fn approval_keys(id: &str, byte: u8) -> String {
    format!(
        "{id}:{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// How a test factory is set up.
pub struct Options {
    /// Folder of image folders.
    pub images_dir: PathBuf,
    /// Queue behaviour.
    pub bus: BusSettings,
    /// Approval keys.
    pub approval_keys: String,
    /// Branches whose pushes build.
    pub branches: Vec<String>,
    /// A Teams webhook URL to post approval cards to.
    pub teams_webhook: Option<String>,
    /// Which run store the factory uses (the embedded one unless a test picks another).
    pub store: StoreBackend,
    /// The GitHub webhook secret.
    pub github_secret: String,
    /// The operator token.
    pub operator_token: String,
    /// The Azure DevOps service-hook secret.
    pub azure_devops_secret: String,
    /// Where Microsoft's security data comes from (the public API unless a
    /// test names a loopback server or a folder of CVRF documents).
    pub msrc: MsrcSource,
    /// Changes to the app before it starts (clock, ...).
    pub tweak: Box<dyn FnOnce(&mut App) + Send>,
}

impl Options {
    /// The default options with another folder of images.
    pub fn with_images(images_dir: &Path) -> Options {
        Options {
            images_dir: images_dir.to_path_buf(),
            ..Options::default()
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            images_dir: example_images(),
            bus: BusSettings {
                lock_duration: Duration::from_secs(30),
                max_delivery_count: 5,
            },
            approval_keys: approval_keys("k1", 7),
            branches: vec!["main".into()],
            teams_webhook: None,
            store: StoreBackend::Sqlite,
            github_secret: GITHUB_SECRET.into(),
            operator_token: OPERATOR_TOKEN.into(),
            azure_devops_secret: AZURE_DEVOPS_SECRET.into(),
            msrc: MsrcSource::default(),
            tweak: Box::new(|_| {}),
        }
    }
}

/// A running test factory.
pub struct Factory {
    /// `http://127.0.0.1:PORT` of the HTTP triggers.
    pub url: String,
    /// The handler's own address (for raw invocations).
    pub handler_url: String,
    /// The data directory.
    pub data: TempDir,
    /// The app the handler runs.
    pub app: App,
    /// Client for requests.
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    local: Option<Local>,
}

impl Factory {
    /// Starts a factory with the repository's images.
    pub async fn start() -> Factory {
        Factory::start_with(Options::default()).await
    }

    /// Starts a factory with `options`.
    pub async fn start_with(options: Options) -> Factory {
        let data = TempDir::new().expect("temp dir");
        Factory::start_in(data, options).await
    }

    /// Starts a factory on an existing data directory.
    pub async fn start_in(data: TempDir, options: Options) -> Factory {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let settings = Settings {
            branches: options.branches,
            ..Settings::local(
                options.images_dir,
                data.path().to_path_buf(),
                format!("http://{addr}"),
            )
        };
        assert!(
            settings.packer.is_some(),
            "these tests run real packer: install it (apt-get install packer)"
        );
        let secrets = Secrets {
            approval_keys: options.approval_keys,
            github: Some(options.github_secret),
            operator: Some(options.operator_token),
            azure_devops: Some(options.azure_devops_secret),
            teams_webhook: options.teams_webhook,
        };
        let shutdown = CancellationToken::new();
        let adapters = Adapters {
            store: options.store,
            msrc: options.msrc,
            ..Adapters::default()
        };
        let mut app = build_app(settings, adapters, secrets, shutdown.clone())
            .await
            .expect("app");
        (options.tweak)(&mut app);
        let local = start_local(app.clone(), &app_root(), listener, options.bus)
            .await
            .expect("local host");
        Factory {
            url: format!("http://{addr}"),
            handler_url: format!("http://{}", local.handler_addr),
            data,
            app,
            http: reqwest::Client::new(),
            shutdown,
            local: Some(local),
        }
    }

    /// Stops the factory and hands back its data directory.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.cancel();
        if let Some(local) = self.local.take() {
            local.stopped().await;
        }
        self.data
    }

    /// The local host's bus.
    pub fn bus(&self) -> &image_factory::host::bus::Bus {
        &self.local.as_ref().expect("running").bus
    }

    /// Posts a GitHub push of `commit` changing `paths`, signed with `secret`.
    pub async fn push_signed_with(
        &self,
        secret: &str,
        commit: &str,
        paths: &[&str],
        branch: &str,
    ) -> reqwest::Response {
        let body = github_push(commit, paths, branch);
        self.http
            .post(format!("{}/api/hooks/github", self.url))
            .header("Content-Type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", sign(secret, body.as_bytes()))
            .body(body)
            .send()
            .await
            .expect("push")
    }

    /// Posts a correctly signed GitHub push to `main`.
    pub async fn push(&self, commit: &str, paths: &[&str]) -> reqwest::Response {
        self.push_signed_with(GITHUB_SECRET, commit, paths, "main")
            .await
    }

    /// Pushes `commit` touching the example image and waits until its run has `status`.
    pub async fn push_and_wait(&self, commit: &str, status: RunStatus) -> Run {
        self.push(commit, &["images/example/build.pkr.hcl"]).await;
        self.wait_status(&format!("push-example-{commit}"), status)
            .await
    }

    /// POSTs a decision through an approval link, as the page's form does.
    pub async fn decide(&self, link: &str, decision: &str) -> reqwest::Response {
        self.http
            .post(link)
            .form(&[("decision", decision)])
            .send()
            .await
            .expect("decision")
    }

    /// Every run, through the runs API (newest first).
    pub async fn runs(&self) -> Vec<Run> {
        let page: serde_json::Value = self
            .http
            .get(format!("{}/api/runs", self.url))
            .send()
            .await
            .expect("runs api")
            .json()
            .await
            .expect("runs json");
        serde_json::from_value(page["runs"].clone()).expect("runs")
    }

    /// Fires the sweeper timer as the host does (see [`Factory::fire_timer`]).
    pub async fn sweep(&self) {
        self.fire_timer("sweeper").await;
    }

    /// Fires the reaper timer as the host does; answers its log lines.
    pub async fn reap(&self) -> Vec<String> {
        self.fire_timer("reaper").await.logs
    }

    /// Fires the timer function `name` as the host does: invokes the
    /// handler, then sends the messages of its Service Bus outputs. Answers
    /// the handler's response (its log lines).
    pub async fn fire_timer(&self, name: &str) -> image_factory::protocol::InvocationResponse {
        let invocation = serde_json::json!({
            "Data": { "timer": { "Schedule": { "AdjustForDST": true }, "ScheduleStatus": null, "IsPastDue": false } },
            "Metadata": {}
        });
        let answer = self
            .http
            .post(format!("{}/{name}", self.handler_url))
            .json(&invocation)
            .send()
            .await
            .expect("timer invocation");
        assert_eq!(answer.status(), 200, "the {name} timer failed");
        let response: image_factory::protocol::InvocationResponse =
            answer.json().await.expect("timer response");
        let functions =
            image_factory::host::function_app::FunctionApp::load(&app_root()).expect("functions");
        let timer = functions
            .functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name}"));
        let messages = image_factory::host::queue_messages(timer, &response);
        self.bus()
            .send(messages)
            .await
            .unwrap_or_else(|e| panic!("send the {name} timer's messages: {e}"));
        response
    }

    /// GETs `path` (`/api/...`) of the factory and reads its JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: the answer is not the JSON expected: {e}"))
    }

    /// Reads a run through the runs API.
    pub async fn run(&self, id: &str) -> Option<Run> {
        let response = self
            .http
            .get(format!("{}/api/runs/{id}", self.url))
            .send()
            .await
            .expect("runs api");
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "GET /api/runs/{id}");
        Some(response.json().await.expect("run json"))
    }

    /// Waits until run `id` satisfies `done`, failing after `timeout`.
    pub async fn wait_for(&self, id: &str, timeout: Duration, done: impl Fn(&Run) -> bool) -> Run {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(run) = self.run(id).await {
                if done(&run) {
                    return run;
                }
                if tokio::time::Instant::now() > deadline {
                    panic!(
                        "run {id} did not get there in {timeout:?}: {run:#?}{}",
                        self.worker_output()
                    );
                }
            } else if tokio::time::Instant::now() > deadline {
                panic!("run {id} does not exist after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the build workers of this factory printed (`worker-N.log` in the
    /// data folder, written by the off-host build tests), to explain a run
    /// that did not get where a test waited for it.
    fn worker_output(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.data.path()) else {
            return out;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("worker-") && n.ends_with(".log"))
            })
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("\n--- {} (last lines)\n", log.display()));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until run `id` has status `status`.
    pub async fn wait_status(&self, id: &str, status: RunStatus) -> Run {
        self.wait_for(id, Duration::from_secs(240), |r| r.status == status)
            .await
    }

    /// The approval link the local outbox holds for `approver` on run `id`.
    pub fn approval_link(&self, id: &str, approver: &str) -> String {
        outbox_link(self.data.path(), id, approver)
    }
}

/// Runs `git` in `dir` with a fixed identity and no signing; answers its
/// trimmed output, failing the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Factory Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The notice a data directory's outbox holds for `approver` on run `id`
/// (its link, the Teams card and the email).
pub fn outbox_notice(data: &Path, id: &str, approver: &str) -> serde_json::Value {
    let path = data
        .join("outbox")
        .join(id)
        .join(format!("{approver}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("outbox json")
}

/// Reads an approval link from a data directory's outbox.
pub fn outbox_link(data: &Path, id: &str, approver: &str) -> String {
    outbox_notice(data, id, approver)["url"]
        .as_str()
        .expect("url")
        .to_string()
}

/// A GitHub push payload, shaped as GitHub sends it (the fields the factory reads
/// plus the usual neighbours).
pub fn github_push(commit: &str, paths: &[&str], branch: &str) -> String {
    serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": commit,
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...000000000000",
        "commits": [{
            "id": commit,
            "message": "Update the image",
            "added": [],
            "removed": [],
            "modified": paths,
        }],
        "head_commit": {
            "id": commit,
            "message": "Update the image",
            "added": [],
            "removed": [],
            "modified": paths,
        },
        "repository": { "full_name": "Codertocat/Hello-World" },
        "pusher": { "name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com" },
        "sender": { "login": "Codertocat" },
    })
    .to_string()
}

/// GitHub's `X-Hub-Signature-256` header for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A folder holding only the repository's `example` image (copied once per
/// test process): the local factory builds it with real packer, while the
/// repository's Azure images need Azure credentials and packer 1.7+.
pub fn example_images() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("example-images-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_example(&dir, "example");
        dir
    })
    .clone()
}

/// Copies the example image into a fresh images folder as image `name`
/// (its `image_name` variable renamed, so its build writes where its smoke
/// test looks), so a test can break it.
pub fn copy_example(into: &Path, name: &str) -> PathBuf {
    let target = into.join(name);
    copy_dir(&repo_root().join("images").join("example"), &target);
    let toml = target.join("image.toml");
    let text = std::fs::read_to_string(&toml).expect("image.toml");
    std::fs::write(
        &toml,
        text.replace(
            "image_name = \"example\"",
            &format!("image_name = \"{name}\""),
        ),
    )
    .expect("image.toml written");
    target
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}
