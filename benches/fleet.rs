//! Fleet-scale Patch Tuesday: N copies of the example image (`fleet-000`,
//! `fleet-001`, ...) on the local factory, started as the tests start it
//! (the real handler and embedded host on loopback, real packer), and the
//! `patch-tuesday` timer fired as the host fires it. Each figure is printed
//! next to its floor from the same run:
//!
//! - on the host: the time from the firing until every run awaits approval,
//!   next to the same packer commands (version, fmt -check, validate, build)
//!   and smoke tests run for the same images by a plain pool of threads at
//!   the factory's parallelism (`IMAGE_FACTORY_PARALLELISM`, default the
//!   cores), once before the factory and once after it (the mean of both is
//!   the floor: the load of a shared machine moves), and a run's stages as
//!   recorded next to a run's commands in the pool;
//! - off the host: the time until every run's build is dispatched
//!   (BuildDispatched recorded) to a Container Apps job stand-in on loopback
//!   that answers the job, its start and its executions as the off-host
//!   build test's does (there checked against Microsoft.App's specification),
//!   without starting workers;
//! - store requests per run (reads, writes, queries; a wrapper around the
//!   store), queue messages sent per run by queue and function invocations
//!   per run by function (triggers on the local queue's own table), the size
//!   of a run document at approval and of a build log, and peak RSS (VmHWM)
//!   of the process before the firing and at the end.
//!
//! Each (place, N) runs in a child process of this bench, so that its peak
//! RSS is its own. `cargo bench --bench fleet`; `FLEET_N=20` (or `100,500`,
//! the default) sets the sizes, `FLEET_PLACES=off-host` (or `on-host`) one place.

#[path = "../tests/common/mod.rs"]
mod harness;

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use chrono::Utc;
use image_factory::azure::BuildJob;
use image_factory::azure::arm::{ArmClient, Patience, tokio_sleeper};
use image_factory::azure::jobs::ContainerAppsWorkers;
use image_factory::domain::run::{Run, RunStatus, Stage};
use image_factory::host::function_app::{FunctionApp, TriggerBinding};
use image_factory::ports::store::{RunQuery, RunStore};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use common::{Counting, Requests, machine, peak_rss_kib};
use harness::{Factory, Options};

/// Set in a child's environment: `<place>:<runs>`.
const CHILD: &str = "FLEET_CHILD";
/// The line of a child's output that holds its figures.
const RESULT: &str = "FLEET_RESULT ";
/// The build job of the stand-in.
const JOB: &str =
    "/subscriptions/sub-1/resourceGroups/rg-factory/providers/Microsoft.App/jobs/caj-factory-build";

/// Where the builds run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
enum Place {
    /// Packer on this machine; measured until every run awaits approval.
    OnHost,
    /// The build job; measured until every build is dispatched.
    OffHost,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::OnHost => "on-host",
            Place::OffHost => "off-host",
        }
    }

    fn parse(text: &str) -> Place {
        match text {
            "on-host" => Place::OnHost,
            "off-host" => Place::OffHost,
            other => panic!("{other}: a place is on-host or off-host"),
        }
    }

    /// The state a run has to reach.
    fn reached(self) -> fn(&Run) -> bool {
        match self {
            Place::OnHost => |run| matches!(run.status, RunStatus::WaitingForApproval),
            Place::OffHost => |run| {
                run.stage(Stage::Build)
                    .current_attempt()
                    .is_some_and(|a| a.worker.is_some())
            },
        }
    }

    /// The state whose first write ends the measurement of a run: the one
    /// it has to reach, or a failure (which the bench then reports).
    fn done(self) -> fn(&Run) -> bool {
        match self {
            Place::OnHost => {
                |run| Place::OnHost.reached()(run) || matches!(run.status, RunStatus::Failed)
            }
            Place::OffHost => {
                |run| Place::OffHost.reached()(run) || matches!(run.status, RunStatus::Failed)
            }
        }
    }
}

/// What one child measured.
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    place: Place,
    runs: usize,
    parallelism: usize,
    seconds: f64,
    /// The floor run before the factory and after it (the machine's load
    /// moves): its time, and the mean time of a run's commands.
    floors: Vec<(f64, f64)>,
    /// Mean time of a run's validate, build and test stages, as recorded.
    stage_seconds: f64,
    requests: Requests,
    /// Messages sent, by queue.
    sent: BTreeMap<String, u64>,
    /// Invocations, by function.
    invocations: BTreeMap<String, u64>,
    /// Mean size of a run document (JSON) at the end.
    document_bytes: u64,
    /// Mean size of a build log.
    log_bytes: u64,
    rss_started_kib: u64,
    rss_peak_kib: u64,
}

fn main() {
    if let Ok(child) = std::env::var(CHILD) {
        let (place, runs) = child.split_once(':').expect("place:runs");
        let figures = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(measure(Place::parse(place), runs.parse().expect("runs")));
        println!("{RESULT}{}", serde_json::to_string(&figures).expect("json"));
        return;
    }
    let sizes: Vec<usize> = std::env::var("FLEET_N")
        .unwrap_or_else(|_| "100,500".into())
        .split(',')
        .map(|n| n.trim().parse().expect("FLEET_N: runs, comma-separated"))
        .collect();
    let places: Vec<Place> = std::env::var("FLEET_PLACES")
        .unwrap_or_else(|_| "on-host,off-host".into())
        .split(',')
        .map(|p| Place::parse(p.trim()))
        .collect();
    println!("machine: {}", machine());
    println!("| figure | value | floor (same run) |");
    println!("| --- | --- | --- |");
    let mut all = Vec::new();
    for place in &places {
        for runs in &sizes {
            let figures = child(*place, *runs);
            print_figures(&figures);
            all.push(figures);
        }
    }
    for figures in all.iter().filter(|f| f.place == Place::OnHost).take(1) {
        print_counts(figures);
    }
}

/// Runs one measurement in a child process of this bench.
fn child(place: Place, runs: usize) -> Figures {
    let out = Command::new(std::env::current_exe().expect("this bench"))
        .env(CHILD, format!("{}:{runs}", place.name()))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    assert!(out.status.success(), "the {} child failed", place.name());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .expect("the child's figures");
    serde_json::from_str(line).expect("figures")
}

fn print_figures(f: &Figures) {
    let n = f.runs as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let floor = |pick: fn(&(f64, f64)) -> f64| {
        let values: Vec<f64> = f.floors.iter().map(pick).collect();
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let each: Vec<String> = values.iter().map(|v| format!("{v:.2} s")).collect();
        (mean, each.join(" before, ") + " after")
    };
    match f.place {
        Place::OnHost => {
            let (total, each) = floor(|(total, _)| *total);
            println!(
                "| {} runs on the host, parallelism {}: firing to every run awaiting approval | {:.1} s ({:.2}× the floor) | the same packer commands and smoke tests in a pool of {} threads: {total:.1} s (mean of {each}) |",
                f.runs,
                f.parallelism,
                f.seconds,
                f.seconds / total,
                f.parallelism
            );
            let (run, each) = floor(|(_, run)| *run);
            println!(
                "| {} runs on the host: a run's validate, build and test stages, mean | {:.2} s ({:.2}× the floor) | the run's commands in the pool: {run:.2} s (mean of {each}) |",
                f.runs,
                f.stage_seconds,
                f.stage_seconds / run
            );
        }
        Place::OffHost => println!(
            "| {} runs off the host: firing to every build dispatched | {:.2} s ({:.1} ms a run) | goal: under 10 s for 500 |",
            f.runs,
            f.seconds,
            f.seconds * 1000.0 / n
        ),
    }
    println!(
        "| store requests per run ({}, {} runs): reads / writes / queries | {:.1} / {:.1} / {:.1} = {:.1} | |",
        f.place.name(),
        f.runs,
        f.requests.reads as f64 / n,
        f.requests.writes as f64 / n,
        f.requests.queries as f64 / n,
        f.requests.total() as f64 / n
    );
    println!(
        "| peak RSS ({}, {} runs) | {:.1} MiB | {:.1} MiB when the factory had started, before the firing |",
        f.place.name(),
        f.runs,
        mib(f.rss_peak_kib),
        mib(f.rss_started_kib)
    );
}

/// The per-run counts of one place.
fn print_counts(f: &Figures) {
    let n = f.runs as f64;
    println!();
    println!("per-run counts ({}, {} runs):", f.place.name(), f.runs);
    println!("| count | per run |");
    println!("| --- | --- |");
    println!(
        "| store requests: reads / writes / queries | {:.2} / {:.2} / {:.2} |",
        f.requests.reads as f64 / n,
        f.requests.writes as f64 / n,
        f.requests.queries as f64 / n
    );
    let sent: u64 = f.sent.values().sum();
    let by_queue: Vec<String> = f
        .sent
        .iter()
        .map(|(q, c)| format!("{q} {:.2}", *c as f64 / n))
        .collect();
    println!(
        "| queue messages sent | {:.2} ({}) |",
        sent as f64 / n,
        by_queue.join(", ")
    );
    let invoked: u64 = f.invocations.values().sum();
    let by_function: Vec<String> = f
        .invocations
        .iter()
        .map(|(name, c)| format!("{name} {:.2}", *c as f64 / n))
        .collect();
    println!(
        "| function invocations | {:.2} ({}) |",
        invoked as f64 / n,
        by_function.join(", ")
    );
    println!(
        "| run document at approval (JSON) | {} bytes |",
        f.document_bytes
    );
    println!("| build log | {} bytes |", f.log_bytes);
}

/// One measurement: N images, the factory, the firing, the floor.
async fn measure(place: Place, runs: usize) -> Figures {
    let images = tempfile::TempDir::new().expect("temp dir");
    let names: Vec<String> = (0..runs).map(|i| format!("fleet-{i:03}")).collect();
    for name in &names {
        harness::copy_example(images.path(), name);
    }
    let parallelism = image_factory::config::default_parallelism().get();
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let mut floors = Vec::new();
    if place == Place::OnHost {
        let jobs: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), format!("2026.1.{i}")))
            .collect();
        floors.push(floor(images.path(), scratch.path(), &jobs, parallelism));
    }
    let counting: Arc<OnceLock<Arc<Counting>>> = Arc::default();
    let job = match place {
        Place::OnHost => None,
        Place::OffHost => Some(job_stand_in().await),
    };
    let handle = Arc::clone(&counting);
    let factory = Factory::start_with(Options {
        tweak: Box::new(move |app| {
            let store = Arc::new(Counting::watching(app.store.clone(), place.done()));
            app.store = store.clone();
            let _ = handle.set(store);
            if let Some(base) = job {
                let arm = ArmClient::new(
                    &base,
                    Arc::new(harness::arm_server::FixedCredential),
                    tokio_sleeper(),
                    Patience::default(),
                )
                .expect("arm client");
                let job = BuildJob {
                    resource_group: "rg-factory".into(),
                    name: "caj-factory-build".into(),
                    log_container_url: "http://127.0.0.1:1/logs".into(),
                };
                app.workers = Some(Arc::new(ContainerAppsWorkers::new(arm, "sub-1", &job)));
                // As on Azure: the host has no packer; validate runs the
                // factory's own checks.
                app.settings = Arc::new(image_factory::config::Settings {
                    packer: None,
                    ..(*app.settings).clone()
                });
            }
        }),
        ..Options::with_images(images.path())
    })
    .await;
    let store = counting.get().expect("the counting store").clone();
    let queue = QueueCounts::install(&factory.data.path().join("bus.db"));
    assert_eq!(factory.app.settings.parallelism.get(), parallelism);
    let rss_started_kib = peak_rss_kib();

    store.reset();
    let fired = Instant::now();
    factory.fire_timer("patch-tuesday").await;
    let last = store.all_reached(runs).await;
    let seconds = last.duration_since(fired).as_secs_f64();
    let requests = store.requests();
    let (sent, delivered) = queue.counts();
    // Before this bench reads every run back.
    let rss_peak_kib = peak_rss_kib();

    let all = every_run(store.as_ref()).await;
    assert_eq!(all.len(), runs, "one run per image");
    for run in &all {
        assert!(
            place.reached()(run),
            "run {} did not get there: {:?} {:?}",
            run.id,
            run.status,
            run.failure
        );
    }
    let stage_seconds = all
        .iter()
        .flat_map(|r| [Stage::Validate, Stage::Build, Stage::Test].map(|s| r.stage(s)))
        .filter_map(|s| Some((s.finished_at? - s.started_at?).as_seconds_f64()))
        .sum::<f64>()
        / runs as f64;
    let document_bytes = mean(
        all.iter()
            .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len())),
    );
    let log_bytes = mean(all.iter().map(|r| {
        r.build
            .as_ref()
            .and_then(|b| std::fs::metadata(&b.log).ok())
            .map_or(0, |m| m.len() as usize)
    }));
    let mut invocations: BTreeMap<String, u64> = BTreeMap::new();
    invocations.insert("patch-tuesday".into(), 1);
    for function in FunctionApp::load(&harness::app_root())
        .expect("functions")
        .functions
    {
        if let TriggerBinding::Queue { queue, .. } = function.trigger
            && let Some(count) = delivered.get(&queue)
        {
            invocations.insert(function.name, *count);
        }
    }
    let data = factory.stop().await;

    if place == Place::OnHost {
        let jobs: Vec<(String, String)> = all
            .iter()
            .map(|r| (r.image.clone(), r.version.to_string()))
            .collect();
        floors.push(floor(images.path(), data.path(), &jobs, parallelism));
    }
    Figures {
        place,
        runs,
        parallelism,
        seconds,
        floors,
        stage_seconds,
        requests,
        sent,
        invocations,
        document_bytes: document_bytes as u64,
        log_bytes: log_bytes as u64,
        rss_started_kib,
        rss_peak_kib,
    }
}

fn mean(values: impl Iterator<Item = usize>) -> usize {
    let (sum, count) = values.fold((0, 0), |(s, c), v| (s + v, c + 1));
    sum / count.max(1)
}

/// Every run in the store.
async fn every_run(store: &dyn RunStore) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut query = RunQuery {
        limit: 100,
        ..RunQuery::default()
    };
    loop {
        let page = store.list(&query).await.expect("list runs");
        runs.extend(page.runs);
        match page.continuation {
            Some(next) => query.continuation = Some(next),
            None => return runs,
        }
    }
}

/// Counts the local queue's sends and deliveries by queue, with triggers on
/// its own table (so every send and receive of the host is counted).
struct QueueCounts {
    db: rusqlite::Connection,
}

impl QueueCounts {
    fn install(path: &Path) -> QueueCounts {
        let db = rusqlite::Connection::open(path).expect("the queue's database");
        db.busy_timeout(Duration::from_secs(10)).expect("timeout");
        db.execute_batch(
            "CREATE TABLE bench_sent (queue TEXT NOT NULL);
             CREATE TABLE bench_delivered (queue TEXT NOT NULL);
             CREATE TRIGGER bench_send AFTER INSERT ON messages
               BEGIN INSERT INTO bench_sent VALUES (NEW.queue); END;
             CREATE TRIGGER bench_deliver AFTER UPDATE OF delivery_count ON messages
               WHEN NEW.delivery_count > OLD.delivery_count
               BEGIN INSERT INTO bench_delivered VALUES (NEW.queue); END;",
        )
        .expect("the counting triggers");
        QueueCounts { db }
    }

    /// Messages sent and delivered, by queue.
    fn counts(&self) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
        let by_queue = |table: &str| {
            let mut statement = self
                .db
                .prepare(&format!(
                    "SELECT queue, COUNT(*) FROM {table} GROUP BY queue"
                ))
                .expect("query");
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("counts")
                .collect::<Result<BTreeMap<String, u64>, _>>()
                .expect("counts")
        };
        (by_queue("bench_sent"), by_queue("bench_delivered"))
    }
}

/// The floor: for every run, the packer commands the factory runs (version,
/// fmt -check, validate, build with its variables, the build's output to a
/// log file) and the smoke test, for every (image, version), in a pool of
/// `parallelism` threads: the time it took, and the mean time of a run.
fn floor(images: &Path, data: &Path, runs: &[(String, String)], parallelism: usize) -> (f64, f64) {
    let packer = image_factory::config::find_on_path("packer").expect("packer");
    let next = AtomicUsize::new(0);
    let busy = Mutex::new(Duration::ZERO);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..parallelism {
            scope.spawn(|| {
                while let Some((image, version)) = runs.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let t = Instant::now();
                    floor_run(
                        &packer,
                        &images.join(image),
                        &data.join("floor"),
                        image,
                        version,
                    );
                    *busy.lock().expect("lock") += t.elapsed();
                }
            });
        }
    });
    (
        started.elapsed().as_secs_f64(),
        busy.into_inner().expect("lock").as_secs_f64() / runs.len().max(1) as f64,
    )
}

fn floor_run(packer: &Path, dir: &Path, floor: &Path, image: &str, version: &str) {
    let vars = [
        format!("gallery_image_version={version}"),
        "run_id=".into(),
        "baseline_version=2024.1".into(),
        format!("image_name={image}"),
    ]
    .into_iter()
    .flat_map(|v| ["-var".to_string(), v]);
    let out = floor.join(format!("{image}-{version}"));
    std::fs::create_dir_all(&out).expect("floor folder");
    let log = std::fs::File::create(out.join("build.log")).expect("log");
    let ok = |command: &mut Command| {
        let status = command
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success(), "{command:?}");
    };
    let quiet = |program: &Path, dir: &Path| {
        let mut command = Command::new(program);
        command
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    ok(quiet(packer, dir).arg("version"));
    ok(quiet(packer, dir).args(["fmt", "-check", "."]));
    ok(quiet(packer, dir)
        .arg("validate")
        .args(vars.clone())
        .arg("."));
    ok(Command::new(packer)
        .args(["build", "-machine-readable", "-color=false"])
        .args(vars)
        .arg(dir)
        .current_dir(&out)
        .stdout(log.try_clone().expect("log"))
        .stderr(log));
    ok(quiet(Path::new("sh"), dir)
        .args(["scripts/smoke-test.sh"])
        .env("RUN_DIR", &out)
        .env("IMAGE_NAME", image)
        .env("IMAGE_VERSION", version));
}

/// The build job as the off-host build test's stand-in answers it (the
/// job, a start, the executions), without starting workers: an execution
/// stays Running. It runs in the bench's process, so it keeps each start's
/// body as a copy of its bytes: a parsed JSON value weighs several times its
/// text, and keeping the request's own buffer would keep the connection's
/// read buffer; either would count against the factory's peak RSS. Answers
/// its base URL.
async fn job_stand_in() -> String {
    let executions: Arc<Mutex<Vec<Started>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .fallback(job_answer)
        .with_state(executions);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// An execution the stand-in started: the start's body, and when.
struct Started {
    body: Box<[u8]>,
    at: String,
}

/// The name and id of the job's `n`-th execution (from 1).
fn execution_name(n: usize) -> (String, String) {
    let name = format!("caj-factory-build-{n:07}");
    let id = format!("{JOB}/executions/{name}");
    (name, id)
}

async fn job_answer(
    State(executions): State<Arc<Mutex<Vec<Started>>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(tail) = uri.path().strip_prefix(JOB) else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let answer = match (method, tail) {
        (Method::GET, "") => json!({
            "id": JOB,
            "name": "caj-factory-build",
            "type": "Microsoft.App/jobs",
            "location": "France Central",
            "properties": {
                "provisioningState": "Succeeded",
                "configuration": { "replicaTimeout": 14400, "replicaRetryLimit": 0, "triggerType": "Manual",
                    "manualTriggerConfig": { "replicaCompletionCount": 1, "parallelism": 1 } },
                "template": { "containers": [{
                    "image": "registry.example/image-factory-worker:1",
                    "name": "worker",
                    "env": [{ "name": "IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION", "secretRef": "servicebus-send" }],
                    "resources": { "cpu": 1.0, "memory": "2Gi" }
                }] }
            }
        }),
        (Method::POST, "/start") => {
            let mut executions = executions.lock().expect("lock");
            executions.push(Started {
                body: body.to_vec().into_boxed_slice(),
                at: Utc::now().to_rfc3339(),
            });
            let (name, id) = execution_name(executions.len());
            json!({ "name": name, "id": id })
        }
        (Method::GET, "/executions") => {
            let started = executions.lock().expect("lock");
            let value: Vec<Value> = started
                .iter()
                .enumerate()
                .map(|(i, started)| {
                    let (name, id) = execution_name(i + 1);
                    let template: Value =
                        serde_json::from_slice(&started.body).unwrap_or(Value::Null);
                    json!({
                        "name": name,
                        "id": id,
                        "type": "Microsoft.App/jobs/executions",
                        "properties": { "status": "Running", "startTime": started.at, "template": template }
                    })
                })
                .collect();
            json!({ "value": value })
        }
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    axum::Json(answer).into_response()
}
