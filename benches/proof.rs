//! The factory's figures, each next to its floor from the same run:
//! - one stage transition through the handler (the `stage-approve` function
//!   called in-process as the host calls it: decode, load, decide,
//!   conditional write, sign the links, record, emit) next to the same number
//!   of bare store requests (a point read and two conditional replaces of the
//!   same documents, the second against the first's ETag), with the ratio,
//!   for the embedded store and for the
//!   Cosmos DB store against the Cosmos DB API test server on loopback (skipped,
//!   with the reason printed, when node or the server is not installed);
//! - store requests per transition, and transitions per second;
//! - the local queue's delivery rate (send, receive, complete) next to a bare
//!   SQLite insert + delete in the same kind of file;
//! - peak RSS while a child process prints 1 MiB and then 1 GiB of log
//!   lines through the real `LocalExecutor` (the log is streamed to disk);
//! - cold start: spawning `image-factory serve` to its first answered
//!   invocation, next to a minimal axum server built in this same bench binary
//!   (same profile and dependencies), spawned and asked the same way.
//!
//! `cargo bench --bench proof` (a plain main that prints a table).

#[allow(dead_code)] // the bench uses part of the test harness
#[path = "../tests/common/cosmos_server.rs"]
mod cosmos_server;

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use base64::Engine;
use chrono::Utc;
use image_factory::app::App;
use image_factory::config::Settings;
use image_factory::domain::machine::{Event, decide};
use image_factory::domain::run::{Execution, RunId, Stage, StageOutput, Trigger, TriggerKind};
use image_factory::host::bus::{Bus, Outgoing};
use image_factory::host::{BusSettings, queue_invocation};
use image_factory::local::executor::LocalExecutor;
use image_factory::local::sqlite::SqliteStore;
use image_factory::ports::executor::{Executor, Job};
use image_factory::ports::notifier::Notifier;
use image_factory::ports::store::{RunStore, update_run};
use image_factory::startup::{Adapters, Secrets, build_app};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use common::{Counting, machine, peak_rss_kib};

const RUNS: usize = 300;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn app(data: &std::path::Path, store: Arc<dyn RunStore>) -> App {
    let settings = Settings {
        packer: None,
        ..Settings::local(
            root().join("images"),
            data.to_path_buf(),
            "http://factory.bench".into(),
        )
    };
    let secrets = Secrets {
        approval_keys: format!(
            "bench:{}",
            base64::engine::general_purpose::STANDARD.encode([5u8; 32])
        ),
        github: None,
        operator: None,
        azure_devops: None,
        teams_webhook: None,
    };
    let mut app = build_app(
        settings,
        Adapters::default(),
        secrets,
        CancellationToken::new(),
    )
    .await
    .expect("app");
    app.store = store;
    app.notifier = Notifier::new(Vec::new());
    app
}

/// A run of the example image whose validate, build and test succeeded.
async fn run_at_approve(app: &App, id: &str) {
    let trigger = Trigger {
        commit: Some("0123456789abcdef".into()),
        branch: Some("main".into()),
        ..Trigger::new(TriggerKind::Push, "github")
    };
    let source = app.head_snapshot(None).await.expect("the images' source");
    app.create_run(id.into(), "example", trigger, &source)
        .await
        .expect("run");
    let id: RunId = id.parse().expect("a run id");
    for stage in [Stage::Validate, Stage::Build, Stage::Test] {
        let execution = Execution {
            message_id: format!("{stage}-m"),
            delivery: 1,
        };
        let output = match stage {
            Stage::Validate => StageOutput::Validated {
                findings: vec![],
                packer_version: None,
            },
            Stage::Build => StageOutput::Built(image_factory::domain::run::BuildResult {
                artifacts: vec![],
                managed_image_id: None,
                gallery_version_id: None,
                log: "build.log".into(),
                duration_seconds: 1,
                evidence: None,
            }),
            _ => StageOutput::Tested {
                checks: vec!["ok".into()],
                patch: None,
                declaration: None,
            },
        };
        for event in [
            Event::StageStarted {
                stage,
                execution: execution.clone(),
                at: Utc::now(),
            },
            Event::StageSucceeded {
                stage,
                execution: execution.clone(),
                at: Utc::now(),
                output,
            },
        ] {
            update_run(app.store.as_ref(), &id, |r| decide(r, &event))
                .await
                .expect("transition");
        }
    }
}

/// Set in the environment of the copy of this binary that plays the minimal server.
const MINIMAL_SERVER: &str = "PROOF_MINIMAL_SERVER_PORT";

/// The floor of the cold start: an axum server that answers every POST with
/// an empty invocation response, and nothing else.
async fn minimal_server(port: u16) {
    let router = axum::Router::new().route(
        "/{function}",
        axum::routing::post(|| async {
            axum::Json(serde_json::json!({ "Outputs": {}, "Logs": [] }))
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

/// Spawns `command` and measures until its first answered invocation on `port`.
async fn cold_start(mut command: std::process::Command, port: u16) -> Duration {
    let client = reqwest::Client::new();
    let invocation = serde_json::json!({
        "Data": { "req": { "Url": "http://localhost/api/runs", "Method": "GET", "Query": {}, "Headers": {} } },
        "Metadata": {}
    });
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn");
    let elapsed = loop {
        let answer = client
            .post(format!("http://127.0.0.1:{port}/runs"))
            .json(&invocation)
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer on port {port}"
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One stage transition through the handler, measured on `RUNS` runs, next
/// to the same number of bare store requests on the same documents.
struct Transitions {
    handler: Vec<Duration>,
    total: Duration,
    requests: f64,
    /// Requests the Cosmos DB API server answered per transition.
    http_requests: Option<f64>,
    floor: Vec<Duration>,
}

/// Measures [`Transitions`] with the runs in `store`; the app's files and the
/// queue live in `data`.
async fn transitions(
    data: &Path,
    store: Arc<dyn RunStore>,
    server: Option<&cosmos_server::CosmosServer>,
) -> Transitions {
    let counting = Arc::new(Counting::new(Arc::clone(&store)));
    let app = app(data, counting.clone()).await;
    let ids: Vec<String> = (0..RUNS).map(|i| format!("bench-{i}")).collect();
    for id in &ids {
        run_at_approve(&app, id).await;
    }
    let bus = Bus::open(&data.join("transitions-bus.db"), |q| {
        BusSettings::default().queue_options(q)
    })
    .expect("bus");
    let router = image_factory::server::router(app.clone());

    // One transition through the handler.
    counting.reset();
    let served_before = match server {
        Some(server) => Some(server.requests().await),
        None => None,
    };
    let mut handler = Vec::new();
    let started = Instant::now();
    for id in &ids {
        bus.send(vec![Outgoing {
            queue: "stage-approve".into(),
            body: serde_json::json!({ "runId": id, "stage": "approve" }).to_string(),
            properties: Default::default(),
            scheduled_at: None,
        }])
        .await
        .expect("send");
        let message = bus
            .receive("stage-approve")
            .await
            .expect("receive")
            .expect("a message");
        let t = Instant::now();
        let request = queue_invocation("message", &message);
        let http = axum::http::Request::post("/stage-approve")
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&request).expect("json")))
            .expect("request");
        let response = router.clone().oneshot(http).await.expect("answer");
        assert!(response.status().is_success());
        let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        handler.push(t.elapsed());
        bus.complete(&message, Vec::new()).await.expect("complete");
    }
    let total = started.elapsed();
    let requests = counting.requests().total() as f64 / RUNS as f64;
    let http_requests = match (server, served_before) {
        (Some(server), Some(before)) => {
            Some((server.requests().await - before) as f64 / RUNS as f64)
        }
        _ => None,
    };

    // The floor: the handler's store requests, bare: one point read and two
    // conditional replaces of the same documents, the second against the
    // ETag the first returned.
    let mut floor = Vec::new();
    for id in &ids {
        let t = Instant::now();
        let stored = store
            .get(&id.parse().expect("a run id"))
            .await
            .expect("get");
        let mut run = stored.value;
        run.updated_at = Utc::now();
        let etag = store.replace(&run, &stored.etag).await.expect("replace");
        run.updated_at = Utc::now();
        store.replace(&run, &etag).await.expect("replace");
        floor.push(t.elapsed());
    }
    Transitions {
        handler,
        total,
        requests,
        http_requests,
        floor,
    }
}

/// Why the Cosmos DB rows cannot be measured here, if they cannot.
fn cosmos_server_missing() -> Option<String> {
    let package = root()
        .join("tests")
        .join("cosmos-server")
        .join("node_modules")
        .join("@vercel")
        .join("cosmosdb-server");
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        Some("node is not installed".into())
    } else if !package.is_dir() {
        Some("the Cosmos DB API test server is not installed (scripts/setup.sh runs npm ci in tests/cosmos-server)".into())
    } else {
        None
    }
}

/// Prints the rows of one store's [`Transitions`].
fn print_transitions(store: &str, mut t: Transitions) {
    let (p50, p95) = (
        percentile(&mut t.handler, 0.5),
        percentile(&mut t.handler, 0.95),
    );
    let (f50, f95) = (
        percentile(&mut t.floor, 0.5),
        percentile(&mut t.floor, 0.95),
    );
    println!(
        "| stage transition through the handler (stage-approve, {store}), p50 / p95 | {} / {} ({:.2}× / {:.2}× the floor) | 1 store read + 2 conditional replaces: {} / {} |",
        ms(p50),
        ms(p95),
        p50.as_secs_f64() / f50.as_secs_f64(),
        p95.as_secs_f64() / f95.as_secs_f64(),
        ms(f50),
        ms(f95)
    );
    println!(
        "| store requests per transition ({store}) | {:.1} | 1 read + 2 conditional writes = 3 |",
        t.requests
    );
    if let Some(http) = t.http_requests {
        println!(
            "| HTTP requests the server answered per transition ({store}) | {http:.1} | one per store request: {:.1} |",
            t.requests
        );
    }
    println!(
        "| transitions per second ({store}; one at a time, with queue send/receive/complete) | {:.0} | {:.0} bare read + 2 replaces per second |",
        RUNS as f64 / t.total.as_secs_f64(),
        1.0 / f50.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(port) = std::env::var(MINIMAL_SERVER) {
        minimal_server(port.parse().expect("port")).await;
        return;
    }
    let dir = tempfile::TempDir::new().expect("temp dir");
    let embedded: Arc<dyn RunStore> =
        Arc::new(SqliteStore::open(&dir.path().join("bench-runs.db")).expect("store"));
    let embedded = transitions(dir.path(), embedded, None).await;
    let bus = Bus::open(&dir.path().join("bench-bus.db"), |q| {
        BusSettings::default().queue_options(q)
    })
    .expect("bus");

    // The local queue's delivery rate.
    const MESSAGES: usize = 2000;
    let t = Instant::now();
    for i in 0..MESSAGES {
        bus.send(vec![Outgoing {
            queue: "bench".into(),
            body: format!("{{\"n\":{i}}}"),
            properties: Default::default(),
            scheduled_at: None,
        }])
        .await
        .expect("send");
        let m = bus
            .receive("bench")
            .await
            .expect("receive")
            .expect("message");
        bus.complete(&m, Vec::new()).await.expect("complete");
    }
    let queue_rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    let raw = rusqlite::Connection::open(dir.path().join("bench-raw.db")).expect("sqlite");
    raw.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE m (seq INTEGER PRIMARY KEY, body TEXT)",
    )
    .expect("schema");
    let t = Instant::now();
    for i in 0..MESSAGES {
        raw.execute(
            "INSERT INTO m (body) VALUES (?1)",
            [format!("{{\"n\":{i}}}")],
        )
        .expect("insert");
        raw.execute("DELETE FROM m WHERE seq = last_insert_rowid()", [])
            .expect("delete");
    }
    let raw_rate = MESSAGES as f64 / t.elapsed().as_secs_f64();
    let rss_after_transitions = peak_rss_kib();

    // A packer log of 1 MiB, then 1 GiB, streamed through the local executor.
    let mut logs = Vec::new();
    for (label, bytes) in [("1 MiB", 1u64 << 20), ("1 GiB", 1u64 << 30)] {
        let log = dir.path().join(format!("log-{bytes}.log"));
        let job = Job {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "yes '1700000000,,ui,say,==> null.example: streaming a long packer log line' | head -c {bytes}"
                ),
            ],
            dir: dir.path().to_path_buf(),
            env: vec![],
            log: log.clone(),
            timeout: Duration::from_secs(600),
        };
        let mut lines = 0u64;
        let t = Instant::now();
        LocalExecutor
            .run(job, &mut |_| lines += 1, CancellationToken::new())
            .await
            .expect("job");
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        logs.push((label, lines, size, t.elapsed(), peak_rss_kib()));
        let _ = std::fs::remove_file(&log);
    }

    // The same transition with the runs in Cosmos DB (the test server on
    // loopback), after the memory figures: the SDK's own memory is not theirs.
    let cosmos = match cosmos_server_missing() {
        Some(reason) => Err(reason),
        None => {
            let server = cosmos_server::CosmosServer::start();
            let store: Arc<dyn RunStore> = Arc::new(server.fresh_store().await);
            let data = tempfile::TempDir::new().expect("temp dir");
            Ok(transitions(data.path(), store, Some(&server)).await)
        }
    };

    println!("machine: {}", machine());
    println!("| figure | value | floor (same run) |");
    println!("| --- | --- | --- |");
    print_transitions("embedded store", embedded);
    match cosmos {
        Ok(t) => print_transitions("Cosmos DB API test server on loopback", t),
        Err(reason) => {
            eprintln!("the Cosmos DB rows are skipped: {reason}");
            println!("| stage transition through the handler (Cosmos DB) | skipped: {reason} | |");
        }
    }
    println!(
        "| local queue deliveries per second (send, receive, complete) | {queue_rate:.0} | bare SQLite insert+delete: {raw_rate:.0} |"
    );
    println!(
        "| peak RSS after {RUNS} transitions | {} MiB | |",
        rss_after_transitions / 1024
    );
    for (label, lines, size, elapsed, rss) in logs {
        println!(
            "| packer log of {label} streamed ({lines} lines, {} MiB on disk, {:.1} s) | peak RSS {} MiB | |",
            size >> 20,
            elapsed.as_secs_f64(),
            rss / 1024
        );
    }

    // Cold start, median of 10 spawns each.
    let mut handler = Vec::new();
    let mut minimal = Vec::new();
    for _ in 0..10 {
        let data = tempfile::TempDir::new().expect("temp dir");
        let port = free_port();
        let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_image-factory"));
        serve
            .arg("serve")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env(
                "IMAGE_FACTORY_APPROVAL_KEYS",
                format!(
                    "k1:{}",
                    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
                ),
            )
            .env("IMAGE_FACTORY_DATA", data.path())
            .env("IMAGE_FACTORY_IMAGES", root().join("images"))
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        handler.push(cold_start(serve, port).await);
        let port = free_port();
        let mut floor = std::process::Command::new(std::env::current_exe().expect("this binary"));
        floor.env(MINIMAL_SERVER, port.to_string());
        minimal.push(cold_start(floor, port).await);
    }
    println!(
        "| cold start: spawn `image-factory serve` to first answered invocation, p50 | {} | minimal axum server, same build: {} |",
        ms(percentile(&mut handler, 0.5)),
        ms(percentile(&mut minimal, 0.5))
    );
}
