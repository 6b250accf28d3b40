//! Proof under faults: seeded, reproducible random schedules of deliveries,
//! duplicates, reordering, lock expiry, crashes between every pair of steps,
//! store conflicts (412) and throttling (429/503), driven through the real
//! handler router, the real SQLite run store and the real embedded bus.
//!
//! What is not real, and why: packer (a script that answers `version`, `fmt`
//! and `validate` at once; the packer path is covered by `local_factory`),
//! the executor (records each job start and finishes at once), the
//! notification channel (records each send) and, in one schedule of three,
//! the build workers off the host (record each start; each worker then either
//! reports on the `build-completed` queue some minutes later or dies without
//! a report, for the watchdog to find; the real job adapter and worker are
//! covered by `offhost_build`). Those record every side effect with the
//! delivery that caused it, so the invariants can tie each side effect to an
//! attempt the run records.
//!
//! After every schedule:
//! - every run ended as its plan says (a good image whose approvers approve
//!   is released, or skipped when an identical run was released first; one
//!   whose approvers reject is rejected, one whose deadline passes expires,
//!   one whose approvers wait still waits; the bad image fails its smoke
//!   test), unless a fault that can legitimately fail a run struck it: a
//!   message of the stage it was at was dead-lettered, or its build worker
//!   was lost twice. The endings each run may have are computed from the
//!   schedule, and a failure must name the fault that excuses it;
//! - each packer start, worker start, smoke test, approval request and
//!   release file belongs to an attempt the run records, and no attempt did
//!   one twice; a build that succeeded off the host names a worker that was
//!   started;
//! - the sweeper re-sent exactly the notifications it owed (a request that
//!   was never delivered, a reminder inside the reminder window), each with
//!   the approver's current link; each release file says what its run built
//!   (version, run id, commit, build log, where it was written);
//! - a release never moves latest back: a release is promoted unless a
//!   higher version was latest, and then it is published below it, excluded
//!   from latest; with no rollback, each image's latest is its highest
//!   version; the previous release its notes name is below it;
//! - no message is lost: every queue is empty, and a run whose message was
//!   dead-lettered is failed.
//!
//! Everything random comes from the schedule's seed, ids included: message
//! ids, lock tokens, worker ids and approval token ids are drawn from a
//! seeded [`Ids`] given to the bus and the app, so a seed replays its
//! schedule exactly. A schedule that panics or outlives its time limit is
//! reported with its seed, and the others go on.
//!
//! `cargo test --test faults` runs 1,000 schedules (seeds 1..=1000);
//! `FAULT_SCHEDULES=10000 cargo test --release --test faults` runs more;
//! `FAULT_SEED=<n> cargo test --test faults -- --nocapture` replays one and
//! prints its trace. A failing schedule prints that replay command.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use chrono::{DateTime, TimeZone, Utc};
use image_factory::app::{App, StageMessage};
use image_factory::config::Settings;
use image_factory::domain::approval::{NoticeKind, Verdict};
use image_factory::domain::gallery::{GalleryVersion, latest};
use image_factory::domain::git_tag::{TagName, TagOutcome};
use image_factory::domain::machine::MAX_LOST_WORKERS;
use image_factory::domain::run::{
    BuildOutcome, BuildResult, Execution, FollowUpKind, ReleaseRecord, RepositoryRef, Run, RunId,
    RunStatus, Stage, StageStatus, Trigger, TriggerKind, WORKER_LOST, WorkerRef,
};
use image_factory::domain::version::ImageVersion;
use image_factory::host::bus::{Bus, Outgoing, Received};
use image_factory::host::function_app::{FunctionApp, FunctionDef, TriggerBinding};
use image_factory::host::{BusSettings, queue_invocation, queue_messages};
use image_factory::local::executor::LocalExecutor;
use image_factory::local::sqlite::SqliteStore;
use image_factory::ports::PortError as WorkerError;
use image_factory::ports::clock::Ids;
use image_factory::ports::executor::{
    Check, CheckOutput, Executor, ExecutorError, Job, JobEnd, JobOutcome,
};
use image_factory::ports::git::{GitTags, TagError};
use image_factory::ports::logs::LogStore;
use image_factory::ports::notifier::{Channel, Notice, Notifier};
use image_factory::ports::store::{ETag, RunPage, RunQuery, RunStore, StoreError, Stored};
use image_factory::ports::workers::{BuildOrder, BuildReport, WorkerState, Workers};
use image_factory::protocol::{InvocationRequest, InvocationResponse, encode_value};
use image_factory::startup::{Adapters, Secrets, build_app};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Lock duration of every queue.
const LOCK: chrono::Duration = chrono::Duration::seconds(60);
/// Deliveries before a message is dead-lettered.
const MAX_DELIVERIES: u32 = 5;
/// Driver steps with faults on; then the weather clears and the schedule drains.
const STORM_STEPS: usize = 100;
/// Drain rounds before a schedule counts as stuck.
const DRAIN_ROUNDS: usize = 400;
/// Attempts per approver, channel and kind after which the sweeper stops
/// sending a notification again (the sweeper's documented limit).
const NOTIFY_ATTEMPTS: usize = 5;
/// How long one schedule may run before it counts as hung (one takes well
/// under a second; a schedule that never ends would hide every later one).
const SCHEDULE_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- the invocation in flight

tokio::task_local! {
    /// The invocation the current task runs: who it is, and how the driver
    /// hears that a fault point crashed or paused it.
    static CTL: Arc<Ctl>;
}

/// Who caused a side effect.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Who {
    /// A stage message delivery.
    Stage(Execution),
    /// The n-th sweeper firing.
    Sweeper(u32),
    /// An operator's cancel.
    Operator,
    /// Anything else (an approval link, setup).
    Other,
}

/// One invocation's line to the driver.
struct Ctl {
    who: Who,
    /// The run a stage or report message is for.
    run: Option<String>,
    /// A fault point stopped the invocation here for good (the process died).
    crashed: Notify,
    /// A fault point parked the invocation; it goes on after `resume`.
    paused: Notify,
    resume: Notify,
    /// Whether this invocation may be parked (one at a time).
    may_pause: bool,
}

impl Ctl {
    fn new(who: Who, may_pause: bool) -> Arc<Ctl> {
        Ctl::for_run(who, None, may_pause)
    }

    fn for_run(who: Who, run: Option<String>, may_pause: bool) -> Arc<Ctl> {
        Arc::new(Ctl {
            who,
            run,
            crashed: Notify::new(),
            paused: Notify::new(),
            resume: Notify::new(),
            may_pause,
        })
    }
}

fn current() -> Option<Arc<Ctl>> {
    CTL.try_with(Arc::clone).ok()
}

/// The process dies here: nothing after this point runs.
async fn crash<T>() -> T {
    if let Some(ctl) = current() {
        ctl.crashed.notify_one();
    }
    std::future::pending().await
}

/// The invocation stalls here (its lock runs out meanwhile) until the driver resumes it.
async fn pause() {
    if let Some(ctl) = current() {
        ctl.paused.notify_one();
        ctl.resume.notified().await;
    }
}

// ---------------------------------------------------------------- faults

/// Where a fault can strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    StoreRead,
    StoreWrite,
    ExecutorStart,
    ExecutorEnd,
    Notify,
    /// A build worker is stopped (a cancelled run's freeing).
    WorkerStop,
}

/// What strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    None,
    /// 412: someone else wrote first (the write is not done).
    Conflict,
    /// 429 or 503 from the store, or a channel that fails.
    Throttle(u16),
    /// The process dies before the step.
    CrashBefore,
    /// The process dies right after the step.
    CrashAfter,
    /// The invocation stalls right after the step until its lock has run out
    /// and another delivery ran.
    Pause,
}

/// The schedule's faults: drawn from its seed, counted for the summary.
struct Faults {
    rng: Mutex<StdRng>,
    on: AtomicBool,
    pause_taken: AtomicBool,
    seen: Mutex<BTreeMap<(Point, Fault), u64>>,
}

impl Faults {
    fn new(seed: u64) -> Faults {
        Faults {
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed_fa17)),
            on: AtomicBool::new(true),
            pause_taken: AtomicBool::new(false),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    fn draw(&self, point: Point) -> Fault {
        let Some(ctl) = current() else {
            return Fault::None;
        };
        if !self.on.load(Ordering::SeqCst) {
            return Fault::None;
        }
        let roll: f64 = self.rng.lock().unwrap().random();
        let fault = match point {
            Point::StoreRead if roll < 0.03 => Fault::Throttle(429),
            Point::StoreRead if roll < 0.045 => Fault::Throttle(503),
            Point::StoreRead if roll < 0.06 => Fault::CrashBefore,
            Point::StoreWrite if roll < 0.05 => Fault::Conflict,
            Point::StoreWrite if roll < 0.08 => Fault::Throttle(429),
            Point::StoreWrite if roll < 0.095 => Fault::Throttle(503),
            Point::StoreWrite if roll < 0.12 => Fault::CrashBefore,
            Point::StoreWrite if roll < 0.15 => Fault::CrashAfter,
            Point::StoreWrite if roll < 0.17 && ctl.may_pause => Fault::Pause,
            Point::ExecutorStart | Point::Notify if roll < 0.05 => Fault::CrashBefore,
            Point::ExecutorStart | Point::Notify if roll < 0.10 => Fault::CrashAfter,
            Point::Notify if roll < 0.14 => Fault::Throttle(503),
            Point::ExecutorEnd if roll < 0.05 => Fault::CrashAfter,
            Point::WorkerStop if roll < 0.05 => Fault::CrashBefore,
            Point::WorkerStop if roll < 0.10 => Fault::CrashAfter,
            _ => Fault::None,
        };
        let fault = match fault {
            Fault::Pause if self.pause_taken.swap(true, Ordering::SeqCst) => Fault::None,
            f => f,
        };
        if fault != Fault::None {
            *self.seen.lock().unwrap().entry((point, fault)).or_default() += 1;
        }
        fault
    }
}

// ---------------------------------------------------------------- git tags

/// The images folder is in no repository, and this says so at once: the try
/// beside a release runs in a task of its own, and a `git` process there
/// would let the schedule's next steps overtake it differently each replay.
struct NoRepository;

#[async_trait]
impl GitTags for NoRepository {
    async fn tag(
        &self,
        _repository: Option<&RepositoryRef>,
        _name: &TagName,
        _commit: &str,
    ) -> Result<TagOutcome, TagError> {
        Ok(TagOutcome::NothingToTag {
            reason: "the images folder is not in a git repository".into(),
        })
    }
}

// ---------------------------------------------------------------- the store, with faults

/// The real SQLite run store behind a fault injector.
struct FaultStore {
    inner: Arc<SqliteStore>,
    faults: Arc<Faults>,
}

fn throttled(status: u16) -> StoreError {
    StoreError::Unavailable(format!(
        "{status} {}; retry later",
        if status == 429 {
            "Too Many Requests"
        } else {
            "Service Unavailable"
        }
    ))
}

impl FaultStore {
    async fn before_read(&self) -> Result<(), StoreError> {
        match self.faults.draw(Point::StoreRead) {
            Fault::Throttle(s) => Err(throttled(s)),
            Fault::CrashBefore => crash().await,
            _ => Ok(()),
        }
    }

    async fn write<T>(
        &self,
        id: &str,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match self.faults.draw(Point::StoreWrite) {
            Fault::Conflict => Err(StoreError::PreconditionFailed { id: id.into() }),
            Fault::Throttle(s) => Err(throttled(s)),
            Fault::CrashBefore => crash().await,
            Fault::CrashAfter => {
                let _ = write.await;
                crash().await
            }
            Fault::Pause => {
                let result = write.await;
                pause().await;
                result
            }
            Fault::None => write.await,
        }
    }
}

#[async_trait]
impl RunStore for FaultStore {
    async fn create(&self, run: &Run) -> Result<ETag, StoreError> {
        self.write(&run.id, self.inner.create(run)).await
    }
    async fn get(&self, id: &RunId) -> Result<Stored<Run>, StoreError> {
        self.before_read().await?;
        self.inner.get(id).await
    }
    async fn replace(&self, run: &Run, if_match: &ETag) -> Result<ETag, StoreError> {
        self.write(&run.id, self.inner.replace(run, if_match)).await
    }
    async fn list(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        self.before_read().await?;
        self.inner.list(query).await
    }
    async fn next_sequence(
        &self,
        image: &str,
        scope: &str,
        holder: &RunId,
    ) -> Result<u32, StoreError> {
        self.before_read().await?;
        self.inner.next_sequence(image, scope, holder).await
    }
    async fn image_runs(
        &self,
        images: &[String],
    ) -> Result<Vec<image_factory::domain::fleet::ImageRuns>, StoreError> {
        self.before_read().await?;
        self.inner.image_runs(images).await
    }
    async fn images_patched_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.before_read().await?;
        self.inner.images_patched_since(since).await
    }

    async fn follow_ups_due(
        &self,
        by: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.before_read().await?;
        self.inner.follow_ups_due(by, limit).await
    }
}

// ---------------------------------------------------------------- side effects

/// A side effect, with the invocation that caused it.
#[derive(Clone, Debug)]
enum Effect {
    PackerStart {
        run: String,
        who: Who,
    },
    WorkerStart {
        run: String,
        who: Who,
        worker: String,
        /// When it started.
        started_at: DateTime<Utc>,
        /// When it ends on its own (with its report or dead).
        ends_at: DateTime<Utc>,
    },
    /// A stop of the workers of a stage message found this one ended.
    WorkerFoundEnded {
        run: String,
        worker: String,
    },
    /// A running build worker was stopped (the stop of one already
    /// stopped or ended does nothing, and is not recorded).
    WorkerStopped {
        run: String,
        who: Who,
        worker: String,
    },
    Notified {
        run: String,
        who: Who,
        approver: String,
        kind: NoticeKind,
        url: String,
    },
}

#[derive(Default)]
struct Ledger {
    effects: Mutex<Vec<Effect>>,
}

impl Ledger {
    fn push(&self, effect: Effect) {
        self.effects.lock().unwrap().push(effect);
    }
    fn all(&self) -> Vec<Effect> {
        self.effects.lock().unwrap().clone()
    }
}

fn who() -> Who {
    current().map_or(Who::Other, |c| c.who.clone())
}

/// Records each job start and finishes at once, as packer would with nothing to do.
struct LedgerExecutor {
    ledger: Arc<Ledger>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Executor for LedgerExecutor {
    /// Short checks (packer validate, the smoke command) run for real.
    async fn check(&self, check: Check) -> Result<CheckOutput, ExecutorError> {
        LocalExecutor.check(check).await
    }

    async fn run(
        &self,
        job: Job,
        _on_line: &mut (dyn for<'l> FnMut(&'l str) + Send),
        _cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        let run = run_of(&job.log);
        match self.faults.draw(Point::ExecutorStart) {
            Fault::CrashBefore => crash().await,
            Fault::CrashAfter => {
                self.ledger.push(Effect::PackerStart { run, who: who() });
                crash().await
            }
            _ => self.ledger.push(Effect::PackerStart { run, who: who() }),
        }
        if self.faults.draw(Point::ExecutorEnd) == Fault::CrashAfter {
            crash::<()>().await;
        }
        Ok(JobOutcome {
            end: JobEnd::Exited(0),
            elapsed: Duration::ZERO,
        })
    }

    /// Its jobs end within `run`: none is ever left to stop.
    async fn stop(&self, _log: &Path, _program: &Path) -> Result<Option<u32>, ExecutorError> {
        Ok(None)
    }
}

/// `<data>/runs/<run>/build.log` → `<run>`.
fn run_of(log: &Path) -> String {
    log.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where the stand-in workers' logs would be: one fixed place, so that a
/// replayed schedule (in another temporary folder) names the same URLs.
struct FixedLogs;

#[async_trait]
impl LogStore for FixedLogs {
    fn url_for(&self, run: &RunId, worker: &str) -> String {
        format!("https://logs.invalid/build-logs/{run}/{worker}.log")
    }

    fn url_for_file(&self, run: &RunId, file: &str) -> String {
        format!("https://logs.invalid/build-logs/{run}/{file}")
    }

    async fn upload(&self, _path: &Path, _url: &str) -> Result<(), WorkerError> {
        // The stand-in workers upload nothing.
        Ok(())
    }
}

/// One worker of [`LedgerWorkers`]: it runs until `ends_at`, then has either
/// sent its report (scheduled on the bus for that time) or died without one.
struct LedgerWorker {
    worker: WorkerRef,
    order: BuildOrder,
    ends_at: DateTime<Utc>,
    reports: bool,
    stopped: bool,
}

/// Build workers off the host: records each start, adopts the running worker
/// of the same stage message as the job adapter does, and plays each worker's
/// end: a report on `build-completed` when it ends, or a silent death.
struct LedgerWorkers {
    ledger: Arc<Ledger>,
    faults: Arc<Faults>,
    bus: Bus,
    clock: image_factory::ports::clock::Clock,
    rng: Mutex<StdRng>,
    workers: Mutex<Vec<LedgerWorker>>,
}

impl LedgerWorkers {
    fn state_of(&self, w: &LedgerWorker) -> WorkerState {
        let now = (self.clock)();
        if w.stopped {
            WorkerState::Ended {
                status: "Stopped".into(),
                ended_at: Some(w.ends_at.min(now)),
            }
        } else if now < w.ends_at {
            WorkerState::Running
        } else if w.reports {
            WorkerState::Succeeded {
                ended_at: Some(w.ends_at),
            }
        } else {
            WorkerState::Ended {
                status: "Failed".into(),
                ended_at: Some(w.ends_at),
            }
        }
    }
}

#[async_trait]
impl Workers for LedgerWorkers {
    async fn start(&self, order: &BuildOrder) -> Result<WorkerRef, WorkerError> {
        {
            let workers = self.workers.lock().unwrap();
            let adopted = workers.iter().rev().find(|w| {
                w.order.run_id == order.run_id
                    && w.order.message_id == order.message_id
                    && !order.lost_workers.contains(&w.worker.id)
                    && matches!(
                        self.state_of(w),
                        WorkerState::Running | WorkerState::Succeeded { .. }
                    )
            });
            if let Some(w) = adopted {
                return Ok(w.worker.clone());
            }
        }
        let fault = self.faults.draw(Point::ExecutorStart);
        if fault == Fault::CrashBefore {
            return crash().await;
        }
        let now = (self.clock)();
        let (minutes, reports) = {
            let mut rng = self.rng.lock().unwrap();
            (rng.random_range(1u32..=8), rng.random_bool(0.8))
        };
        let ends_at = now + chrono::Duration::minutes(i64::from(minutes));
        let worker = WorkerRef {
            id: order.worker_id.clone(),
            execution: format!("job-{}", order.worker_id),
            started_at: now,
            log_url: order.log_url.clone(),
        };
        self.ledger.push(Effect::WorkerStart {
            run: order.run_id.to_string(),
            who: who(),
            worker: order.worker_id.clone(),
            started_at: now,
            ends_at,
        });
        if reports {
            let report = BuildReport {
                run_id: order.run_id.clone(),
                worker_id: order.worker_id.clone(),
                outcome: BuildOutcome::Succeeded(BuildResult {
                    artifacts: vec![],
                    managed_image_id: None,
                    gallery_version_id: None,
                    log: order.log_url.clone(),
                    duration_seconds: 60 * u64::from(minutes),
                    evidence: None,
                }),
            };
            self.bus
                .send(vec![Outgoing {
                    queue: "build-completed".into(),
                    body: serde_json::to_string(&report).unwrap(),
                    properties: Map::new(),
                    scheduled_at: Some(ends_at),
                }])
                .await
                .unwrap();
        }
        self.workers.lock().unwrap().push(LedgerWorker {
            worker: worker.clone(),
            order: order.clone(),
            ends_at,
            reports,
            stopped: false,
        });
        if fault == Fault::CrashAfter {
            return crash().await;
        }
        Ok(worker)
    }

    async fn state(&self, worker: &WorkerRef) -> Result<WorkerState, WorkerError> {
        let workers = self.workers.lock().unwrap();
        Ok(workers
            .iter()
            .find(|w| w.worker.execution == worker.execution)
            .map_or(WorkerState::Missing, |w| self.state_of(w)))
    }

    async fn stop(&self, worker: &WorkerRef) -> Result<(), WorkerError> {
        let fault = self.faults.draw(Point::WorkerStop);
        if fault == Fault::CrashBefore {
            return crash().await;
        }
        {
            let mut workers = self.workers.lock().unwrap();
            let running = workers
                .iter()
                .position(|w| w.worker.execution == worker.execution)
                .filter(|i| self.state_of(&workers[*i]) == WorkerState::Running);
            if let Some(i) = running {
                workers[i].stopped = true;
                self.ledger.push(Effect::WorkerStopped {
                    run: workers[i].order.run_id.to_string(),
                    who: who(),
                    worker: workers[i].worker.id.clone(),
                });
            }
        }
        if fault == Fault::CrashAfter {
            return crash().await;
        }
        Ok(())
    }

    async fn stop_started_for(
        &self,
        run: &RunId,
        message_id: &str,
    ) -> Result<Vec<WorkerRef>, WorkerError> {
        let running: Vec<WorkerRef> = {
            let workers = self.workers.lock().unwrap();
            let mine: Vec<&LedgerWorker> = workers
                .iter()
                .filter(|w| w.order.run_id == *run && w.order.message_id == message_id)
                .collect();
            for w in mine
                .iter()
                .filter(|w| self.state_of(w) != WorkerState::Running)
            {
                self.ledger.push(Effect::WorkerFoundEnded {
                    run: run.to_string(),
                    worker: w.worker.id.clone(),
                });
            }
            mine.iter()
                .filter(|w| self.state_of(w) == WorkerState::Running)
                .map(|w| w.worker.clone())
                .collect()
        };
        for worker in &running {
            self.stop(worker).await?;
        }
        Ok(running)
    }
}

/// A notification channel that records each send.
struct LedgerChannel {
    ledger: Arc<Ledger>,
    faults: Arc<Faults>,
}

#[async_trait]
impl Channel for LedgerChannel {
    fn name(&self) -> &'static str {
        "ledger"
    }
    async fn send(&self, notice: &Notice<'_>) -> Result<Value, String> {
        let effect = Effect::Notified {
            run: notice.run.id.to_string(),
            who: who(),
            approver: notice.approver.to_string(),
            kind: notice.kind,
            url: notice.url.clone(),
        };
        match self.faults.draw(Point::Notify) {
            Fault::CrashBefore => crash().await,
            Fault::CrashAfter => {
                self.ledger.push(effect);
                crash().await
            }
            Fault::Throttle(s) => Err(format!("the channel answered {s}")),
            _ => {
                self.ledger.push(effect);
                Ok(json!({ "sent": true }))
            }
        }
    }
}

// ---------------------------------------------------------------- the shared fixture

/// Two images (one whose smoke test passes, one whose smoke test fails) and a
/// packer that answers at once. Made once per test binary.
struct Fixture {
    _dir: TempDir,
    images: PathBuf,
    packer: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let images = dir.path().join("images");
        for (name, exit) in [("good", 0), ("bad", 3)] {
            let folder = common::copy_example(&images, name);
            std::fs::write(
                folder.join("image.toml"),
                format!(
                    r#"baseline_version = "2024.1"

[version]
strategy = "date"

[packer]
timeout_minutes = 10

[packer.variables]
image_name = "{name}"

[smoke.command]
argv = ["sh", "-c", "echo tested >> \"$RUN_DIR/smoke.count\"; exit {exit}"]
timeout_seconds = 30

[approval]
approvers = ["platform-lead", "security"]
required = 1
expires_hours = 72
remind_before_hours = 24
"#
                ),
            )
            .unwrap();
        }
        let packer = dir.path().join("packer");
        std::fs::write(
            &packer,
            "#!/bin/sh\n[ \"$1\" = version ] && echo 'Packer v1.6.6'\nexit 0\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&packer, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fixture {
            _dir: dir,
            images,
            packer,
        }
    })
}

// ---------------------------------------------------------------- the world of one schedule

/// What the approvers of a run will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Approve,
    Reject,
    Expire,
    Wait,
}

/// Why a run may end `failed` although its approvers act as planned: the
/// faults that can legitimately fail a run, and the bad image's smoke test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Excuse {
    /// A message of the stage the run was at was dead-lettered after
    /// [`MAX_DELIVERIES`] deliveries: the dead-letter function fails the run.
    DeadLettered(Stage),
    /// The watchdog closed [`MAX_LOST_WORKERS`] build attempts whose worker
    /// was started and ended without its report being taken: it fails the run.
    WorkersLost,
    /// Its image's smoke test fails (the bad image).
    SmokeFails,
}

/// How a run ended, in the terms of its plan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    Released,
    Skipped,
    Rejected,
    ApprovalExpired,
    Waiting,
    /// An operator's cancel ended it.
    Cancelled,
    Failed(Excuse),
    /// A failure no fault explains, or a state no run may end in.
    Unexplained(String),
}

impl Ending {
    fn of(run: &Run) -> Ending {
        match run.status {
            RunStatus::Released => Ending::Released,
            RunStatus::Skipped => Ending::Skipped,
            RunStatus::Rejected => Ending::Rejected,
            RunStatus::ApprovalExpired => Ending::ApprovalExpired,
            RunStatus::WaitingForApproval => Ending::Waiting,
            RunStatus::Cancelled => Ending::Cancelled,
            RunStatus::Failed => {
                let Some(failure) = &run.failure else {
                    return Ending::Unexplained("failed without a failure record".into());
                };
                let reason = failure.reason.as_str();
                match failure.stage {
                    Some(stage) if reason.starts_with("the stage message was dead-lettered") => {
                        Ending::Failed(Excuse::DeadLettered(stage))
                    }
                    Some(Stage::Build) if reason.starts_with("the build worker was lost") => {
                        Ending::Failed(Excuse::WorkersLost)
                    }
                    Some(Stage::Test)
                        if reason.starts_with("smoke test") && reason.contains("(exit 3)") =>
                    {
                        Ending::Failed(Excuse::SmokeFails)
                    }
                    stage => Ending::Unexplained(format!("failed at {stage:?}: {reason}")),
                }
            }
            status => Ending::Unexplained(status.to_string()),
        }
    }
}

/// Where a run was when an operator's cancel reached it: every step the
/// suite models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Landing {
    /// Created, its first stage not started.
    Queued,
    /// Validating.
    Validate,
    /// Building, no worker recorded (here, or off the host before its start
    /// was recorded).
    Build,
    /// Building off the host, its worker recorded.
    BuildWorker,
    /// Its build worker lost, waiting to build again.
    BuildAgain,
    /// Smoke-testing.
    Test,
    /// Sending its approval requests, or waiting for approvers.
    Approval,
    /// Approved, its release message on its way.
    ReleasePending,
    /// Releasing: the cancel is refused.
    Releasing,
    /// Already cancelling or cancelled: a duplicate cancel.
    Again,
    /// Ended otherwise: the cancel is refused.
    Ended,
}

impl Landing {
    fn of(run: &Run) -> Landing {
        match run.status {
            RunStatus::Cancelling | RunStatus::Cancelled => return Landing::Again,
            s if s.is_terminal() => return Landing::Ended,
            RunStatus::Queued => return Landing::Queued,
            RunStatus::WaitingForApproval => return Landing::Approval,
            _ => {}
        }
        match run.current_stage() {
            Some(Stage::Validate) | None => Landing::Validate,
            Some(Stage::Build) => {
                let record = run.stage(Stage::Build);
                match record.current_attempt() {
                    _ if record.status == StageStatus::Pending && !record.attempts.is_empty() => {
                        Landing::BuildAgain
                    }
                    Some(a) if a.worker.is_some() => Landing::BuildWorker,
                    _ => Landing::Build,
                }
            }
            Some(Stage::Test) => Landing::Test,
            Some(Stage::Approve) => Landing::Approval,
            Some(Stage::Release) if run.stage(Stage::Release).status == StageStatus::Pending => {
                Landing::ReleasePending
            }
            Some(Stage::Release) => Landing::Releasing,
        }
    }
}

/// How an operator's cancel was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelAnswer {
    /// Recorded: the run is cancelling or cancelled (200, 202).
    Accepted,
    /// Refused: the run ended, or its release started (409).
    Refused,
    /// No answer (the process died) or a failure (the store): recorded or not.
    Unknown,
}

/// One cancel an operator sent.
#[derive(Clone, Debug)]
struct CancelTry {
    landing: Landing,
    /// Sent while a stage invocation of the run stalled between two steps.
    in_stall: bool,
    answer: CancelAnswer,
}

/// A sweeper firing: when, what it found, and whether it answered.
struct Sweep {
    at: DateTime<Utc>,
    /// The runs as the sweeper found them.
    before: BTreeMap<String, Run>,
    answered: bool,
}

/// The notifications the sweeper owes `run` at `now`, as (approver,
/// reminder?): a request to each undecided approver with no delivered one
/// (up to [`NOTIFY_ATTEMPTS`]), else a reminder inside the reminder window.
fn owed(run: &Run, now: DateTime<Utc>) -> BTreeSet<(String, bool)> {
    let mut owed = BTreeSet::new();
    let Some(request) = run.approval.as_ref() else {
        return owed;
    };
    if run.status != RunStatus::WaitingForApproval || now >= request.expires_at {
        return owed;
    }
    let remind_from =
        request.expires_at - chrono::Duration::hours(i64::from(request.remind_before_hours));
    let remind = request.remind_before_hours > 0 && now >= remind_from;
    for link in &request.links {
        if run.decisions.iter().any(|d| d.approver == link.approver) {
            continue;
        }
        let tries = |kind: NoticeKind| {
            let tries: Vec<_> = request
                .notifications
                .iter()
                .filter(|n| n.approver == link.approver && n.channel == "ledger" && n.kind == kind)
                .collect();
            let delivered = tries.iter().any(|n| n.delivered);
            !delivered && tries.len() < NOTIFY_ATTEMPTS
        };
        if tries(NoticeKind::Request) {
            owed.insert((link.approver.clone(), false));
        } else if remind && tries(NoticeKind::Reminder) {
            owed.insert((link.approver.clone(), true));
        }
    }
    owed
}

/// How an invocation ended, as the host sees it.
enum Outcome {
    Answered(InvocationResponse),
    Failed(String),
    Crashed,
}

struct World {
    seed: u64,
    _data: TempDir,
    data: PathBuf,
    app: App,
    router: Router,
    bus: Bus,
    functions: BTreeMap<String, FunctionDef>,
    /// (queue, function, binding) of every queue-triggered function.
    queues: Vec<(String, String, String)>,
    now: Arc<AtomicI64>,
    faults: Arc<Faults>,
    ledger: Arc<Ledger>,
    inner: Arc<SqliteStore>,
    rng: StdRng,
    plans: BTreeMap<String, Plan>,
    /// Every sweeper firing so far; the n-th is `sweeps[n - 1]`.
    sweeps: Vec<Sweep>,
    trace: Vec<String>,
    /// Runs whose stage message reached the dead-letter function.
    dead_lettered: BTreeSet<String>,
    /// Stages of each run whose message was dead-lettered while the run was at them.
    excuses: BTreeMap<String, BTreeSet<Excuse>>,
    /// Runs with the same inputs (the first push and the late one), both ways:
    /// whichever validates after the other was released is skipped.
    same_inputs: BTreeMap<String, String>,
    /// Whether an operator cancels runs in this schedule (two in five).
    cancelling: bool,
    /// The cancels an operator sent, by run.
    cancels: BTreeMap<String, Vec<CancelTry>>,
}

fn function_app() -> &'static FunctionApp {
    static APP: OnceLock<FunctionApp> = OnceLock::new();
    APP.get_or_init(|| FunctionApp::load(&common::app_root()).unwrap())
}

impl World {
    async fn new(seed: u64) -> World {
        let fixture = fixture();
        let dir = TempDir::new().unwrap();
        let data = dir.path().to_path_buf();
        let start = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let now = Arc::new(AtomicI64::new(start.timestamp_millis()));
        let clock: image_factory::ports::clock::Clock = {
            let now = Arc::clone(&now);
            Arc::new(move || {
                Utc.timestamp_millis_opt(now.load(Ordering::SeqCst))
                    .single()
                    .unwrap_or_default()
            })
        };
        // One schedule of three builds off the host.
        let off_host = seed.is_multiple_of(3);
        let settings = Settings {
            packer: Some(fixture.packer.clone()),
            ..Settings::local(
                fixture.images.clone(),
                data.clone(),
                "http://factory.test".into(),
            )
        };
        let secrets = Secrets {
            approval_keys: common::approval_keys("k1", 9),
            github: Some(common::GITHUB_SECRET.into()),
            operator: Some(common::OPERATOR_TOKEN.into()),
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
        .unwrap();
        let ids = Ids::seeded(seed ^ 0x1d5_5eed);
        app.ids = ids.clone();
        let faults = Arc::new(Faults::new(seed));
        let ledger = Arc::new(Ledger::default());
        let inner = Arc::new(SqliteStore::open(&data.join("fault-runs.db")).unwrap());
        app.store = Arc::new(FaultStore {
            inner: Arc::clone(&inner),
            faults: Arc::clone(&faults),
        });
        app.executor = Arc::new(LedgerExecutor {
            ledger: Arc::clone(&ledger),
            faults: Arc::clone(&faults),
        });
        app.notifier = Notifier::new(vec![Arc::new(LedgerChannel {
            ledger: Arc::clone(&ledger),
            faults: Arc::clone(&faults),
        })]);
        app.git_tags = Arc::new(NoRepository);
        app.clock = Arc::clone(&clock);
        let settings = BusSettings {
            lock_duration: LOCK.to_std().unwrap(),
            max_delivery_count: MAX_DELIVERIES,
        };
        let bus = Bus::open_with(
            &data.join("bus.db"),
            move |q| settings.queue_options(q),
            Arc::clone(&clock),
            ids,
        )
        .unwrap();
        if off_host {
            // Builds off the host; the test and release stages stay local.
            app.logs = Arc::new(FixedLogs);
            app.workers = Some(Arc::new(LedgerWorkers {
                ledger: Arc::clone(&ledger),
                faults: Arc::clone(&faults),
                bus: bus.clone(),
                clock,
                rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x0ff_4057)),
                workers: Mutex::new(Vec::new()),
            }));
        }
        let mut functions = BTreeMap::new();
        let mut queues = Vec::new();
        for f in &function_app().functions {
            if let TriggerBinding::Queue { queue, name } = &f.trigger {
                queues.push((queue.clone(), f.name.clone(), name.clone()));
            }
            functions.insert(f.name.clone(), f.clone());
        }
        World {
            seed,
            _data: dir,
            data,
            router: image_factory::server::router(app.clone()),
            app,
            bus,
            functions,
            queues,
            now,
            faults,
            ledger,
            inner,
            rng: StdRng::seed_from_u64(seed),
            plans: BTreeMap::new(),
            sweeps: Vec::new(),
            trace: Vec::new(),
            dead_lettered: BTreeSet::new(),
            excuses: BTreeMap::new(),
            same_inputs: BTreeMap::new(),
            cancelling: seed % 5 < 2,
            cancels: BTreeMap::new(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.app.clock)()
    }

    fn advance(&mut self, by: chrono::Duration) {
        self.now.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
        self.trace.push(format!("clock +{}s", by.num_seconds()));
    }

    /// Creates a run as a trigger does and sends its validate message.
    async fn create_run(&mut self, id: &str, image: &str, plan: Plan) {
        let trigger = Trigger {
            kind: TriggerKind::Push,
            source: "github".into(),
            commit: Some(format!("{:040x}", self.seed)),
            branch: Some("main".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        };
        let source = self
            .app
            .sources
            .take(None, trigger.commit.as_deref())
            .await
            .unwrap();
        self.app
            .create_run(id.into(), image, trigger, &source)
            .await
            .unwrap();
        let body = serde_json::to_string(&StageMessage {
            run_id: id.parse().unwrap(),
            stage: Stage::Validate,
        })
        .unwrap();
        self.send("stage-validate", body, None).await;
        self.plans.insert(id.into(), plan);
        self.trace.push(format!("created {id} ({image}, {plan:?})"));
    }

    async fn send(&self, queue: &str, body: String, at: Option<DateTime<Utc>>) {
        self.bus
            .send(vec![Outgoing {
                queue: queue.into(),
                body,
                properties: Map::new(),
                scheduled_at: at,
            }])
            .await
            .unwrap();
    }

    /// Calls the handler in-process, as the host calls it, under `ctl`.
    async fn invoke(
        &mut self,
        function: &str,
        request: InvocationRequest,
        ctl: Arc<Ctl>,
    ) -> Outcome {
        let http = axum::http::Request::post(format!("/{function}"))
            .header("content-type", "application/json")
            .header("X-Azure-Functions-InvocationId", "fault-suite")
            .body(Body::from(serde_json::to_vec(&request).unwrap()))
            .unwrap();
        let router = self.router.clone();
        let task = tokio::spawn(CTL.scope(Arc::clone(&ctl), async move {
            let response = router.oneshot(http).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, bytes)
        }));
        tokio::pin!(task);
        loop {
            tokio::select! {
                biased;
                done = &mut task => {
                    let (status, bytes) = done.unwrap();
                    let response: InvocationResponse = serde_json::from_slice(&bytes).unwrap_or_default();
                    return if status.is_success() {
                        Outcome::Answered(response)
                    } else {
                        Outcome::Failed(format!("{status}: {}", response.logs.join("; ")))
                    };
                }
                () = ctl.crashed.notified() => {
                    task.abort();
                    return Outcome::Crashed;
                }
                () = ctl.paused.notified() => {
                    // The invocation stalls past its lock: another delivery
                    // runs meanwhile, or an operator cancels its run.
                    self.trace.push(format!("{function} stalls; its lock runs out"));
                    self.advance(LOCK + chrono::Duration::seconds(1));
                    match ctl.run.clone() {
                        Some(run) if self.cancelling && self.rng.random_bool(0.7) => {
                            Box::pin(self.cancel(&run, true)).await;
                        }
                        _ => {
                            Box::pin(self.deliver_any(false)).await;
                        }
                    }
                    self.trace.push(format!("{function} resumes"));
                    ctl.resume.notify_one();
                }
            }
        }
    }

    /// Receives one message from some queue (in random order) and handles it.
    /// Returns false when every queue was empty.
    async fn deliver_any(&mut self, storm: bool) -> bool {
        let mut order: Vec<usize> = (0..self.queues.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        for i in order {
            let (queue, function, binding) = self.queues[i].clone();
            let Some(message) = self.bus.receive(&queue).await.unwrap() else {
                continue;
            };
            self.handle(&function, &binding, message, storm).await;
            return true;
        }
        false
    }

    async fn handle(&mut self, function: &str, binding: &str, message: Received, storm: bool) {
        self.trace.push(format!(
            "deliver {} #{} (lock {}) of {} to {function}",
            &message.message_id, message.delivery_count, message.lock_token, message.body
        ));
        if storm && self.rng.random_bool(0.08) {
            let copies = self.rng.random_range(1..=3);
            for _ in 0..copies {
                let later = self.now() + chrono::Duration::seconds(self.rng.random_range(0..90));
                self.send(&message.queue, message.body.clone(), Some(later))
                    .await;
            }
            self.trace
                .push(format!("  {copies} duplicate(s) sent, delayed"));
        }
        let dead_letter = function.starts_with("dead-letter-");
        if dead_letter && let Ok(m) = serde_json::from_str::<StageMessage>(&message.body) {
            // The dead letter excuses a failure if the run is at its stage
            // (not waiting there for approvers).
            let run = self.inner.get(&m.run_id).await.unwrap().value;
            if !run.status.is_terminal()
                && run.current_stage() == Some(m.stage)
                && run.stage(m.stage).status != StageStatus::Waiting
            {
                self.excuses
                    .entry(m.run_id.to_string())
                    .or_default()
                    .insert(Excuse::DeadLettered(m.stage));
            }
            self.dead_lettered.insert(m.run_id.to_string());
        }
        let who = if dead_letter {
            Who::Other
        } else {
            Who::Stage(Execution {
                message_id: message.message_id.clone(),
                delivery: message.delivery_count,
            })
        };
        let request = queue_invocation(binding, &message);
        let run = serde_json::from_str::<Value>(&message.body)
            .ok()
            .and_then(|body| body["runId"].as_str().map(str::to_string));
        let ctl = Ctl::for_run(who, run, storm);
        let outcome = self.invoke(function, request, ctl).await;
        let def = self.functions[function].clone();
        match outcome {
            Outcome::Answered(response) => {
                let outputs = queue_messages(&def, &response);
                let roll: f64 = if storm { self.rng.random() } else { 1.0 };
                if roll < 0.05 {
                    self.trace
                        .push("  answered; the host dies before sending".into());
                } else if roll < 0.10 {
                    self.bus.send(outputs).await.unwrap();
                    self.trace
                        .push("  answered; sent; the host dies before completing".into());
                } else if roll < 0.14 {
                    self.advance(LOCK + chrono::Duration::seconds(1));
                    let settled = self.bus.complete(&message, outputs).await;
                    self.trace
                        .push(format!("  answered after its lock ran out: {settled:?}"));
                } else {
                    let n = outputs.len();
                    match self.bus.complete(&message, outputs).await {
                        Ok(()) => self.trace.push(format!("  completed, {n} sent")),
                        Err(e) => self.trace.push(format!("  not completed: {e}")),
                    }
                }
            }
            Outcome::Failed(reason) => {
                let settled = self.bus.abandon(&message, &reason).await;
                self.trace
                    .push(format!("  failed ({reason}); abandoned: {settled:?}"));
            }
            Outcome::Crashed => self.trace.push("  crashed".into()),
        }
    }

    /// The sweeper timer fires.
    async fn sweep(&mut self) {
        let mut before = BTreeMap::new();
        for id in self.plans.keys() {
            before.insert(id.clone(), self.inner.get(&rid(id)).await.unwrap().value);
        }
        self.sweeps.push(Sweep {
            at: self.now(),
            before,
            answered: false,
        });
        let n = u32::try_from(self.sweeps.len()).unwrap();
        let mut data = Map::new();
        data.insert(
            "timer".into(),
            json!({ "Schedule": { "AdjustForDST": true }, "IsPastDue": false }),
        );
        let request = InvocationRequest {
            data,
            metadata: Map::new(),
        };
        let ctl = Ctl::new(Who::Sweeper(n), false);
        let outcome = self.invoke("sweeper", request, ctl).await;
        let def = self.functions["sweeper"].clone();
        match outcome {
            Outcome::Answered(response) => {
                if let Some(sweep) = self.sweeps.last_mut() {
                    sweep.answered = true;
                }
                let outputs = queue_messages(&def, &response);
                self.trace.push(format!("sweeper: {} sent", outputs.len()));
                if !outputs.is_empty() {
                    self.bus.send(outputs).await.unwrap();
                }
            }
            Outcome::Failed(reason) => self.trace.push(format!("sweeper failed: {reason}")),
            Outcome::Crashed => self.trace.push("sweeper crashed".into()),
        }
    }

    /// An operator cancels `run_id` through the runs API, as
    /// `image-factory runs cancel` does; the answer and where the run was
    /// are kept for the checks.
    async fn cancel(&mut self, run_id: &str, in_stall: bool) {
        let Ok(stored) = self.inner.get(&rid(run_id)).await else {
            return;
        };
        let landing = Landing::of(&stored.value);
        let request = cancel_post(run_id);
        let outcome = self
            .invoke("runs", request, Ctl::new(Who::Operator, false))
            .await;
        let answer = match &outcome {
            Outcome::Answered(response) => {
                let status = response
                    .outputs
                    .get("res")
                    .and_then(|r| r.get("statusCode"))
                    .and_then(Value::as_u64);
                match status {
                    Some(200 | 202) => CancelAnswer::Accepted,
                    Some(409) => CancelAnswer::Refused,
                    _ => CancelAnswer::Unknown,
                }
            }
            Outcome::Failed(_) | Outcome::Crashed => CancelAnswer::Unknown,
        };
        self.trace.push(format!(
            "operator cancels {run_id} at {landing:?}{}: {answer:?}",
            if in_stall { " (in a stall)" } else { "" }
        ));
        self.cancels
            .entry(run_id.to_string())
            .or_default()
            .push(CancelTry {
                landing,
                in_stall,
                answer,
            });
    }

    /// Approvers act on the newest link they were sent, as their plan says.
    /// Returns whether anyone acted.
    async fn decide(&mut self, storm: bool) -> bool {
        let mut acted = false;
        for (run_id, plan) in self.plans.clone() {
            let decision = match plan {
                Plan::Approve => "approve",
                Plan::Reject => "reject",
                Plan::Expire | Plan::Wait => continue,
            };
            let Ok(stored) = self.inner.get(&run_id.parse().unwrap()).await else {
                continue;
            };
            if stored.value.status != RunStatus::WaitingForApproval {
                continue;
            }
            let issued: BTreeSet<String> = stored
                .value
                .approval
                .iter()
                .flat_map(|r| r.links.iter().map(|l| l.token_id.clone()))
                .collect();
            // The newest link of the current request: links sent by an attempt
            // that a later delivery superseded are refused (409), by design.
            let now = self.now();
            let token = self.ledger.all().into_iter().rev().find_map(|e| match e {
                Effect::Notified { run, url, .. } if run == run_id => {
                    let token = url.rsplit('/').next().unwrap_or_default().to_string();
                    let claims = self.app.keys.verify(&token, now).ok()?;
                    issued.contains(&claims.jti).then_some(token)
                }
                _ => None,
            });
            let Some(token) = token else { continue };
            let request = approval_post(&token, decision);
            let outcome = self
                .invoke("approval", request, Ctl::new(Who::Other, false))
                .await;
            acted = true;
            let def = self.functions["approval"].clone();
            match outcome {
                Outcome::Answered(response) => {
                    let status = response
                        .outputs
                        .get("res")
                        .and_then(|r| r.get("statusCode"))
                        .cloned();
                    let outputs = queue_messages(&def, &response);
                    if storm && self.rng.random_bool(0.1) {
                        self.trace.push(format!(
                            "{decision} {run_id}: {status:?}; the host dies before sending"
                        ));
                    } else {
                        self.trace.push(format!("{decision} {run_id}: {status:?}"));
                        self.bus.send(outputs).await.unwrap();
                    }
                }
                Outcome::Failed(r) => self.trace.push(format!("{decision} {run_id} failed: {r}")),
                Outcome::Crashed => self.trace.push(format!("{decision} {run_id}: crashed")),
            }
        }
        acted
    }

    async fn depth(&self) -> u64 {
        let mut total = 0;
        for (queue, _, _) in &self.queues {
            total += self.bus.depth(queue).await.unwrap();
        }
        total
    }

    /// Runs the schedule: a storm of faults, then calm until nothing moves.
    async fn run(&mut self) -> Result<(), String> {
        let a = format!("push-good-{}-a", self.seed);
        let plan = match self.rng.random_range(0..10) {
            0..=4 => Plan::Approve,
            5 | 6 => Plan::Reject,
            7 | 8 => Plan::Expire,
            _ => Plan::Wait,
        };
        self.create_run(&a, "good", plan).await;
        if self.rng.random_bool(0.25) {
            self.create_run(&format!("push-bad-{}-b", self.seed), "bad", Plan::Approve)
                .await;
        }
        let late_run = self.rng.random_range(0..STORM_STEPS);
        for step in 0..STORM_STEPS {
            if step == late_run && self.seed.is_multiple_of(2) {
                // The same inputs again: skipped when the first is released by now.
                let c = format!("push-good-{}-c", self.seed);
                self.create_run(&c, "good", Plan::Approve).await;
                self.same_inputs.insert(c.clone(), a.clone());
                self.same_inputs.insert(a.clone(), c);
            }
            match self.rng.random_range(0..100) {
                0..=69 => {
                    if !self.deliver_any(true).await {
                        let secs = self.rng.random_range(5..=90);
                        self.advance(chrono::Duration::seconds(secs));
                    }
                }
                70..=79 => {
                    let secs = self.rng.random_range(1..=120);
                    self.advance(chrono::Duration::seconds(secs));
                }
                80..=84 => {
                    self.advance(chrono::Duration::minutes(11));
                    self.sweep().await;
                }
                85..=89 => self.sweep().await,
                90..=92 if self.cancelling => {
                    let ids: Vec<String> = self.plans.keys().cloned().collect();
                    let run = ids[self.rng.random_range(0..ids.len())].clone();
                    self.cancel(&run, false).await;
                }
                _ => {
                    self.decide(true).await;
                }
            }
        }
        self.faults.on.store(false, Ordering::SeqCst);
        self.trace.push("---- calm".into());
        // Runs whose approvers let the deadline pass: first into the reminder
        // window (reminders go out), then past the deadline.
        let mut deadline_steps =
            [chrono::Duration::hours(50), chrono::Duration::hours(23)].into_iter();
        for _ in 0..DRAIN_ROUNDS {
            if self.deliver_any(false).await {
                continue;
            }
            if self.decide(false).await {
                continue;
            }
            if self.depth().await > 0 {
                self.advance(LOCK + chrono::Duration::seconds(1));
                continue;
            }
            // Nothing in flight: let the sweeper find what stalled.
            self.advance(chrono::Duration::minutes(11));
            self.sweep().await;
            // The sweep may have sent messages or re-sent approval requests.
            if self.depth().await > 0 || self.decide(false).await {
                continue;
            }
            if self.waiting_to_expire().await
                && let Some(step) = deadline_steps.next()
            {
                self.advance(step);
                self.sweep().await;
                continue;
            }
            return self.check().await;
        }
        Err(format!(
            "the schedule did not settle in {DRAIN_ROUNDS} calm rounds"
        ))
    }

    async fn waiting_to_expire(&self) -> bool {
        for (id, plan) in &self.plans {
            let run = self.inner.get(&id.parse().unwrap()).await.unwrap().value;
            if *plan == Plan::Expire && run.status == RunStatus::WaitingForApproval {
                return true;
            }
        }
        false
    }

    /// The invariants.
    async fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let effects = self.ledger.all();
        for (id, plan) in &self.plans {
            let run = self.inner.get(&id.parse().unwrap()).await.unwrap().value;
            let how = format!("run {id} ({plan:?}) ended {}", run.status);
            // The ending its plan and the schedule's faults allow.
            let ending = Ending::of(&run);
            let allowed = self.allowed_endings(id, *plan, &effects).await;
            if !allowed.contains(&ending) {
                problems.push(format!(
                    "{how} ({ending:?}); the schedule allows only {allowed:?}"
                ));
            }
            if run.status == RunStatus::Released
                && run
                    .stages
                    .iter()
                    .any(|s| s.status != StageStatus::Succeeded)
            {
                problems.push(format!("{how} with a stage that did not succeed"));
            }
            if run.status == RunStatus::Skipped && run.skipped.is_none() {
                problems.push(format!("{how} without saying why"));
            }
            if matches!(run.status, RunStatus::Released | RunStatus::Skipped)
                && run.failure.is_some()
            {
                problems.push(format!("{how} but records a failure"));
            }
            let attempts = |stage: Stage| -> Vec<Execution> {
                run.stage(stage)
                    .attempts
                    .iter()
                    .map(|a| a.execution.clone())
                    .collect()
            };
            // Packer starts: at most one per recorded build attempt.
            let builds = attempts(Stage::Build);
            let mut seen = BTreeSet::new();
            for e in &effects {
                if let Effect::PackerStart { run: r, who } = e
                    && r == id
                {
                    match who {
                        Who::Stage(x) if builds.contains(x) => {
                            if !seen.insert(x.to_string()) {
                                problems.push(format!("{how}: packer started twice by {x}"));
                            }
                        }
                        other => problems.push(format!(
                            "{how}: packer started by {other:?}, which the run does not record as a build attempt (it records {})",
                            listed(&builds)
                        )),
                    }
                }
            }
            // Worker starts: at most one per recorded build attempt; a build
            // that succeeded off the host names a worker that was started.
            let mut started = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for e in &effects {
                if let Effect::WorkerStart {
                    run: r,
                    who,
                    worker,
                    ..
                } = e
                    && r == id
                {
                    started.insert(worker.clone());
                    match who {
                        Who::Stage(x) if builds.contains(x) => {
                            if !seen.insert(x.to_string()) {
                                problems.push(format!("{how}: two workers started by {x}"));
                            }
                        }
                        other => problems.push(format!(
                            "{how}: worker {worker} started by {other:?}, which the run does not record as a build attempt (it records {})",
                            listed(&builds)
                        )),
                    }
                }
            }
            let build = run.stage(Stage::Build);
            if build.status == StageStatus::Succeeded
                && let Some(w) = build.current_attempt().and_then(|a| a.worker.as_ref())
                && !started.contains(&w.id)
            {
                problems.push(format!(
                    "{how}: built by worker {} that nobody started",
                    w.id
                ));
            }
            // Approval requests: at most one per approver and recorded approve attempt;
            // the sweeper's only what it owed, each once, with the current link.
            let approves = attempts(Stage::Approve);
            let mut seen = BTreeSet::new();
            let mut resent = BTreeSet::new();
            for e in &effects {
                if let Effect::Notified {
                    run: r,
                    who,
                    approver,
                    kind,
                    url,
                } = e
                    && r == id
                {
                    match who {
                        Who::Stage(x) if approves.contains(x) && *kind == NoticeKind::Request => {
                            if !seen.insert((x.to_string(), approver.clone())) {
                                problems.push(format!("{how}: {approver} asked twice by {x}"));
                            }
                        }
                        Who::Sweeper(n) => {
                            let notice = (approver.clone(), *kind == NoticeKind::Reminder);
                            if let Err(p) = self.check_resent(id, *n, &notice, url) {
                                problems.push(format!("{how}: sweeper {n}: {p}"));
                            }
                            if !resent.insert((*n, notice)) {
                                problems.push(format!(
                                    "{how}: sweeper {n} sent {approver} the same {kind:?} twice"
                                ));
                            }
                        }
                        other => problems.push(format!(
                            "{how}: {approver} notified by {other:?}, not a recorded approve attempt (it records {})",
                            listed(&approves)
                        )),
                    }
                }
            }
            // Every sweeper firing that answered sent all it owed (or
            // recorded that the channel failed).
            for (i, sweep) in self.sweeps.iter().enumerate() {
                let n = u32::try_from(i + 1).unwrap();
                let Some(before) = sweep.before.get(id).filter(|_| sweep.answered) else {
                    continue;
                };
                for (approver, reminder) in owed(before, sweep.at) {
                    let sent = resent.contains(&(n, (approver.clone(), reminder)));
                    let kind = if reminder {
                        NoticeKind::Reminder
                    } else {
                        NoticeKind::Request
                    };
                    let failed = run.approval.as_ref().is_some_and(|r| {
                        r.notifications.iter().any(|x| {
                            x.approver == approver
                                && x.kind == kind
                                && x.at == sweep.at
                                && !x.delivered
                        })
                    });
                    if !sent && !failed {
                        problems.push(format!(
                            "{how}: sweeper {n} owed {approver} a {kind:?} and neither sent it nor recorded a failure"
                        ));
                    }
                }
            }
            // Smoke tests: no more than the recorded test attempts.
            let smoke =
                std::fs::read_to_string(self.data.join("runs").join(id).join("smoke.count"))
                    .map(|t| t.lines().count())
                    .unwrap_or(0);
            if smoke > attempts(Stage::Test).len() {
                problems.push(format!(
                    "{how}: {smoke} smoke tests for {} recorded test attempts",
                    attempts(Stage::Test).len()
                ));
            }
            // Release file: only after a recorded release attempt; a released
            // run has it, and it says what the run built.
            let released = self.data.join("runs").join(id).join("image-version.json");
            if released.exists() && attempts(Stage::Release).is_empty() {
                problems.push(format!(
                    "{how}: image-version.json without a release attempt"
                ));
            }
            if run.status == RunStatus::Released && !released.exists() {
                problems.push(format!("{how}: released without image-version.json"));
            }
            if released.exists()
                && let Err(p) = self.check_release_file(&run, &released)
            {
                problems.push(format!("{how}: {p}"));
            }
            // No lost message: a dead-lettered run is not left running.
            if self.dead_lettered.contains(id) && !run.status.is_terminal() && *plan != Plan::Wait {
                problems.push(format!("{how} after its message was dead-lettered"));
            }
            // A cancel is recorded wherever the run is, unless it ended or
            // its release started.
            for t in self.cancels.get(id).into_iter().flatten() {
                let refusable = matches!(t.landing, Landing::Releasing | Landing::Ended);
                let fits = match t.answer {
                    CancelAnswer::Accepted => !refusable,
                    CancelAnswer::Refused => refusable,
                    CancelAnswer::Unknown => true,
                };
                if !fits {
                    problems.push(format!(
                        "{how}: a cancel at {:?} was answered {:?}",
                        t.landing, t.answer
                    ));
                }
            }
            // Each run ends once: it owes the event of its ending, once.
            let endings: Vec<&str> = run
                .follow_ups
                .iter()
                .map(|f| match f.kind {
                    FollowUpKind::Event { event } => event.name(),
                })
                .collect();
            let owed = match run.status {
                RunStatus::Released
                    if run
                        .release
                        .as_ref()
                        .is_some_and(|r| r.below_latest.is_some()) =>
                {
                    vec!["image-factory.image.published"]
                }
                RunStatus::Released => vec!["image-factory.image.released"],
                RunStatus::Failed => vec!["image-factory.run.failed"],
                RunStatus::Cancelled => vec!["image-factory.run.cancelled"],
                _ => vec![],
            };
            if endings != owed {
                problems.push(format!("{how} owing {endings:?}; its ending owes {owed:?}"));
            }
            // A cancelled run's freeing: every build worker started for it
            // that was still running when it was cancelled (or started
            // after) was stopped, once; no other run's worker was.
            let stopped: Vec<&str> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::WorkerStopped { run: r, worker, .. } if r == id => {
                        Some(worker.as_str())
                    }
                    _ => None,
                })
                .collect();
            let found_ended: Vec<&str> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::WorkerFoundEnded { run: r, worker } if r == id => Some(worker.as_str()),
                    _ => None,
                })
                .collect();
            match run
                .cancellation
                .as_ref()
                .and_then(|c| c.freeing.finished_at)
            {
                Some(ended) if run.status == RunStatus::Cancelled => {
                    for e in &effects {
                        let Effect::WorkerStart {
                            run: r,
                            worker,
                            started_at,
                            ends_at,
                            ..
                        } = e
                        else {
                            continue;
                        };
                        if r != id {
                            continue;
                        }
                        let times = stopped.iter().filter(|w| **w == worker).count();
                        // Running when the run ended cancelled: the freeing's.
                        if *started_at <= ended && *ends_at > ended && times != 1 {
                            problems.push(format!(
                                "{how}: worker {worker} still ran when the run ended cancelled ({ended}; it ends {ends_at}) and was stopped {times} times"
                            ));
                        }
                        // Started after, by a delivery the cancel overtook:
                        // that delivery's, or a later one of its message's.
                        if *started_at > ended
                            && times != 1
                            && !found_ended.contains(&worker.as_str())
                        {
                            problems.push(format!(
                                "{how}: worker {worker}, started after the run ended cancelled ({ended}), was stopped {times} times and no delivery of its message looked for it"
                            ));
                        }
                    }
                }
                _ if !stopped.is_empty() => problems.push(format!(
                    "{how}: worker(s) {stopped:?} stopped, yet the run was not cancelled"
                )),
                _ => {}
            }
        }
        // Every file in the releases folder is a release of a run, at its image and version.
        for file in release_files(&self.data.join("releases")) {
            let record: Option<ReleaseRecord> = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let owner = match &record {
                Some(r) => self.inner.get(&rid(&r.run_id)).await.ok().map(|s| s.value),
                None => None,
            };
            let expected = owner.as_ref().map(|run| self.release_path(run));
            if expected.as_ref() != Some(&file) {
                problems.push(format!(
                    "{} is not the release of the run it names ({:?})",
                    file.display(),
                    record.map(|r| r.run_id)
                ));
            }
        }
        // A release never moves latest back: with no rollback, each
        // image's latest is its highest version, and every version released
        // below the latest is excluded from latest.
        for (image, versions) in galleries(&self.data.join("releases")) {
            let highest = versions.iter().map(|v| v.version).max();
            if latest(&versions) != highest {
                problems.push(format!(
                    "the gallery of {image} has {:?} as latest, not its highest version {highest:?}: {versions:?}",
                    latest(&versions)
                ));
            }
        }
        for file in release_files(&self.data.join("releases")) {
            let record: Option<ReleaseRecord> = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let Some(record) = record.filter(|r| r.below_latest.is_some()) else {
                continue;
            };
            let image = file
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let held = galleries(&self.data.join("releases"))
                .remove(&image)
                .unwrap_or_default();
            let excluded = held
                .iter()
                .any(|v| v.version.to_string() == record.image_version && v.exclude_from_latest);
            if !excluded {
                problems.push(format!(
                    "{image} {} was released below {:?} but is not excluded from latest: {held:?}",
                    record.image_version, record.below_latest
                ));
            }
        }
        // Every queue is read by a function, the dead-letter sub-queues
        // included: a dead letter left there was never handled.
        for (queue, _, _) in &self.queues {
            let depth = self.bus.depth(queue).await.unwrap();
            if depth > 0 {
                problems.push(format!("{depth} message(s) left in {queue}"));
            }
            for dl in self.bus.dead_letters(queue).await.unwrap() {
                problems.push(format!(
                    "a message was dead-lettered out of {queue}'s reach ({}): {}",
                    dl.reason, dl.body
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    /// The endings `id` may have: what its plan leads to, and `failed` for
    /// each fault of the schedule that can legitimately fail it.
    async fn allowed_endings(&self, id: &str, plan: Plan, effects: &[Effect]) -> BTreeSet<Ending> {
        let run = self.inner.get(&rid(id)).await.unwrap().value;
        let mut allowed = BTreeSet::new();
        if run.image == "bad" {
            allowed.insert(Ending::Failed(Excuse::SmokeFails));
        } else {
            allowed.insert(match plan {
                Plan::Approve => Ending::Released,
                Plan::Reject => Ending::Rejected,
                Plan::Expire => Ending::ApprovalExpired,
                Plan::Wait => Ending::Waiting,
            });
        }
        if let Some(twin) = self.same_inputs.get(id)
            && self.inner.get(&rid(twin)).await.unwrap().value.status == RunStatus::Released
        {
            allowed.insert(Ending::Skipped);
        }
        for excuse in self.excuses.get(id).into_iter().flatten() {
            allowed.insert(Ending::Failed(*excuse));
        }
        // Lost attempts count only for workers that were started, each worker
        // once: a worker the watchdog gave up on is never adopted again.
        let started: BTreeSet<&str> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::WorkerStart { run, worker, .. } if run == id => Some(worker.as_str()),
                _ => None,
            })
            .collect();
        let lost: Vec<_> = run
            .stage(Stage::Build)
            .attempts
            .iter()
            .filter(|a| {
                a.outcome
                    .as_deref()
                    .is_some_and(|o| o.starts_with(WORKER_LOST))
            })
            .collect();
        let lost_workers: BTreeSet<&str> = lost
            .iter()
            .filter_map(|a| a.worker.as_ref().map(|w| w.id.as_str()))
            .collect();
        if lost.len() >= MAX_LOST_WORKERS
            && lost_workers.len() == lost.len()
            && lost_workers.iter().all(|w| started.contains(w))
        {
            allowed.insert(Ending::Failed(Excuse::WorkersLost));
        }
        // An operator's cancel: once recorded, the run ends cancelled and
        // nothing else; one whose answer was lost may or may not have been.
        let tries = self.cancels.get(id).map(Vec::as_slice).unwrap_or_default();
        if tries.iter().any(|t| t.answer == CancelAnswer::Accepted) {
            return BTreeSet::from([Ending::Cancelled]);
        }
        if tries.iter().any(|t| t.answer == CancelAnswer::Unknown) {
            allowed.insert(Ending::Cancelled);
        }
        allowed
    }

    /// Whether sweeper `n` owed `run` the notice (approver, reminder?) it
    /// sent, and sent it with the approver's current link.
    fn check_resent(
        &self,
        id: &str,
        n: u32,
        notice: &(String, bool),
        url: &str,
    ) -> Result<(), String> {
        let sweep = &self.sweeps[usize::try_from(n).unwrap() - 1];
        let run = sweep
            .before
            .get(id)
            .ok_or("sent a notice for a run that did not exist yet")?;
        let owed = owed(run, sweep.at);
        if !owed.contains(notice) {
            return Err(format!(
                "sent {notice:?} (approver, reminder?) although it owed only {owed:?}"
            ));
        }
        let request = run.approval.as_ref().ok_or("no approval request")?;
        let link = request
            .links
            .iter()
            .find(|l| l.approver == notice.0)
            .ok_or("no link for that approver")?;
        if url != self.app.approval_url(id, link, request.expires_at) {
            return Err(format!(
                "sent {} a link that is not theirs: {url}",
                notice.0
            ));
        }
        Ok(())
    }

    /// Where the release of `run` is written in the releases folder.
    fn release_path(&self, run: &Run) -> PathBuf {
        self.data
            .join("releases")
            .join(&run.image)
            .join(run.version.to_string())
            .join("image-version.json")
    }

    /// Whether the run's `image-version.json` says what the run built, and
    /// the releases folder holds the same file.
    fn check_release_file(&self, run: &Run, file: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let record: ReleaseRecord = serde_json::from_str(&text)
            .map_err(|e| format!("image-version.json is not a release record: {e}"))?;
        let location = self.release_path(run);
        let expected = ReleaseRecord {
            image_version: run.version.to_string(),
            sig_version_id: None,
            git_commit: run.trigger.commit.clone(),
            source: run.source.clone().map(Box::new),
            run_id: run.id.to_string(),
            build_log: run
                .build
                .as_ref()
                .map(|b| b.log.clone())
                .unwrap_or_default(),
            location: location.display().to_string(),
            // A release is promoted unless a higher version was latest
            // then: that one stays latest, and this one is published below
            // it, not promoted (a release never moves latest back).
            promoted: record
                .below_latest
                .is_none()
                .then(|| run.version.to_string()),
            below_latest: record.below_latest.clone(),
            excluded: record.excluded.clone(),
            pruned: record.pruned.clone(),
            // The notes are checked on their own: their durations depend
            // on when the stage ran.
            notes: record.notes.clone(),
            ..ReleaseRecord::default()
        };
        check_notes(run, &record)?;
        if let Some(latest) = &record.below_latest
            && latest.parse::<ImageVersion>().ok() <= Some(run.version)
        {
            return Err(format!(
                "{} was released below {latest}, which is not a higher version",
                run.id
            ));
        }
        if record != expected {
            return Err(format!(
                "image-version.json says {record:?}; the run built {expected:?}"
            ));
        }
        if run.status == RunStatus::Released && run.release.as_ref() != Some(&record) {
            return Err(format!(
                "the run records the release {:?}, its image-version.json {record:?}",
                run.release
            ));
        }
        match std::fs::read_to_string(&location) {
            Ok(copy) if copy == text => Ok(()),
            Ok(copy) => Err(format!("{} differs: {copy}", location.display())),
            Err(e) => Err(format!("{}: {e}", location.display())),
        }
    }

    async fn off_host(&self) -> (u64, u64) {
        let (mut built, mut lost) = (0, 0);
        for id in self.plans.keys() {
            let run = self.inner.get(&id.parse().unwrap()).await.unwrap().value;
            let build = run.stage(Stage::Build);
            if build.status == StageStatus::Succeeded
                && build.current_attempt().is_some_and(|a| a.worker.is_some())
            {
                built += 1;
            }
            lost += build.lost_workers() as u64;
        }
        (built, lost)
    }
}

/// `<releases>/<image>/<version>/image-version.json`, every one there is.
/// Every image's `gallery.json` in the releases folder: its versions.
fn galleries(releases: &Path) -> BTreeMap<String, Vec<GalleryVersion>> {
    #[derive(serde::Deserialize)]
    struct File {
        versions: Vec<GalleryVersion>,
    }
    std::fs::read_dir(releases)
        .map(|entries| entries.filter_map(|e| e.ok()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|image| {
            let text = std::fs::read_to_string(image.path().join("gallery.json")).ok()?;
            let file: File = serde_json::from_str(&text).ok()?;
            Some((
                image.file_name().to_string_lossy().to_string(),
                file.versions,
            ))
        })
        .collect()
}

fn release_files(releases: &Path) -> Vec<PathBuf> {
    let children = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    children(releases)
        .iter()
        .flat_map(|image| children(image))
        .filter(|version| version.is_dir())
        .map(|version| version.join("image-version.json"))
        .collect()
}

/// Recorded attempts as `message#delivery`, for a failure message.
fn listed(attempts: &[Execution]) -> String {
    if attempts.is_empty() {
        return "no attempt".into();
    }
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A POST of the approval form to `/api/approvals/{token}`, encoded as the host encodes it.
fn approval_post(token: &str, decision: &str) -> InvocationRequest {
    let headers = json!({ "Content-Type": ["application/x-www-form-urlencoded"] });
    let req = json!({
        "Url": format!("http://factory.test/api/approvals/{token}"),
        "Method": "POST",
        "Query": {},
        "Headers": headers,
        "Params": { "token": token },
        "Identities": [],
        "Body": format!("decision={decision}&comment=fault+suite"),
    });
    let mut data = Map::new();
    data.insert("req".into(), req);
    let mut metadata = Map::new();
    metadata.insert("Query".into(), json!({}));
    metadata.insert(
        "Headers".into(),
        json!({ "Content-Type": "application/x-www-form-urlencoded" }),
    );
    metadata.insert("token".into(), encode_value(&Value::String(token.into())));
    InvocationRequest { data, metadata }
}

/// An operator's `POST /api/runs/{id}` cancel, encoded as the host encodes it.
fn cancel_post(run: &str) -> InvocationRequest {
    let headers = json!({
        "Content-Type": ["application/json"],
        "Authorization": [format!("Bearer {}", common::OPERATOR_TOKEN)],
    });
    let req = json!({
        "Url": format!("http://factory.test/api/runs/{run}"),
        "Method": "POST",
        "Query": {},
        "Headers": headers,
        "Params": { "id": run },
        "Identities": [],
        "Body": json!({ "action": "cancel", "reason": "fault suite" }).to_string(),
    });
    let mut data = Map::new();
    data.insert("req".into(), req);
    let mut metadata = Map::new();
    metadata.insert("Query".into(), json!({}));
    metadata.insert("id".into(), encode_value(&Value::String(run.into())));
    InvocationRequest { data, metadata }
}

// ---------------------------------------------------------------- the suite

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// What one schedule did, for the summary.
struct Report {
    endings: Vec<Ending>,
    /// Builds that succeeded off the host, and workers the watchdog found lost.
    off_host: (u64, u64),
    faults: BTreeMap<(Point, Fault), u64>,
    /// Requests the sweeper sent again, and reminders it sent.
    resent: (u64, u64),
    /// Runs released below the latest (published, not promoted).
    below_latest: u64,
    /// The operator's cancels.
    cancels: Vec<CancelTry>,
    /// Build workers stopped, by who stopped them.
    stops: BTreeMap<&'static str, u64>,
    trace: Vec<String>,
}

impl World {
    async fn endings(&self) -> Vec<Ending> {
        let mut out = Vec::new();
        for id in self.plans.keys() {
            out.push(Ending::of(&self.inner.get(&rid(id)).await.unwrap().value));
        }
        out
    }

    async fn below_latest(&self) -> u64 {
        let mut n = 0;
        for id in self.plans.keys() {
            let run = self.inner.get(&rid(id)).await.unwrap().value;
            if run.status == RunStatus::Released
                && run.release.is_some_and(|r| r.below_latest.is_some())
            {
                n += 1;
            }
        }
        n
    }

    fn stops(&self) -> BTreeMap<&'static str, u64> {
        let mut by = BTreeMap::new();
        for e in self.ledger.all() {
            if let Effect::WorkerStopped { who, .. } = e {
                let who = match who {
                    Who::Stage(_) => "a stage delivery",
                    Who::Sweeper(_) => "the sweeper",
                    Who::Operator => "the operator's cancel",
                    Who::Other => "something else",
                };
                *by.entry(who).or_default() += 1;
            }
        }
        by
    }

    fn resent(&self) -> (u64, u64) {
        let (mut requests, mut reminders) = (0, 0);
        for e in self.ledger.all() {
            if let Effect::Notified {
                who: Who::Sweeper(_),
                kind,
                ..
            } = e
            {
                match kind {
                    NoticeKind::Reminder => reminders += 1,
                    _ => requests += 1,
                }
            }
        }
        (requests, reminders)
    }
}

async fn schedule(seed: u64) -> Result<Report, String> {
    let mut world = World::new(seed).await;
    let result = world.run().await;
    let trace = std::mem::take(&mut world.trace);
    match result {
        Ok(()) => Ok(Report {
            below_latest: world.below_latest().await,
            endings: world.endings().await,
            off_host: world.off_host().await,
            faults: world.faults.seen.lock().unwrap().clone(),
            resent: world.resent(),
            cancels: world.cancels.values().flatten().cloned().collect(),
            stops: world.stops(),
            trace,
        }),
        Err(problems) => {
            let tail: Vec<&String> = trace.iter().rev().take(80).collect::<Vec<_>>();
            let tail: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
            Err(format!(
                "schedule {seed} broke an invariant:\n{problems}\n\nlast steps:\n{}",
                tail.join("\n")
            ))
        }
    }
}

/// Runs `schedule` for every seed, four at a time, each within `limit`, and
/// hands each report to `done`. Returns the failures, each naming its seed
/// and how to replay it: a broken invariant, a panic, or a schedule that did
/// not end within `limit`. One failure does not stop the others.
async fn run_schedules<T, F, Fut>(
    seeds: Vec<u64>,
    limit: Duration,
    schedule: F,
    mut done: impl FnMut(u64, T),
) -> Vec<String>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let mut pending = tokio::task::JoinSet::new();
    let mut seed_of = HashMap::new();
    let mut next = seeds.into_iter();
    let mut failures = Vec::new();
    loop {
        while pending.len() < 4 {
            let Some(seed) = next.next() else { break };
            let task = pending.spawn(tokio::time::timeout(limit, schedule(seed)));
            seed_of.insert(task.id(), seed);
        }
        let Some(joined) = pending.join_next_with_id().await else {
            break;
        };
        let (seed, outcome) = match joined {
            Ok((id, outcome)) => (seed_of.remove(&id).unwrap(), Ok(outcome)),
            Err(e) => (seed_of.remove(&e.id()).unwrap(), Err(e)),
        };
        let failure = match outcome {
            Ok(Ok(Ok(report))) => {
                done(seed, report);
                continue;
            }
            Ok(Ok(Err(problems))) => problems,
            Ok(Err(_)) => format!("schedule {seed} did not end within {limit:?}: it hangs"),
            Err(e) => format!("schedule {seed} panicked: {}", panic_message(e)),
        };
        let failure = format!(
            "{failure}\n\nreplay: FAULT_SEED={seed} cargo test --test faults -- --nocapture"
        );
        eprintln!("{failure}");
        failures.push(failure);
    }
    failures
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_schedule_ends_each_run_once_with_each_side_effect_once_per_recorded_attempt() {
    let seeds: Vec<u64> = match env_u64("FAULT_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("FAULT_SCHEDULES").unwrap_or(1000)).collect(),
    };
    let replay = seeds.len() == 1;
    let mut endings: BTreeMap<Ending, u64> = BTreeMap::new();
    let mut faults: BTreeMap<(Point, Fault), u64> = BTreeMap::new();
    let (mut built_off_host, mut workers_lost) = (0, 0);
    let (mut resent, mut reminders) = (0, 0);
    let mut below_latest = 0;
    let mut landings: BTreeMap<(Landing, bool), BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut stops: BTreeMap<&'static str, u64> = BTreeMap::new();
    let failures = run_schedules(seeds, SCHEDULE_LIMIT, schedule, |_, report| {
        if replay {
            println!("{}", report.trace.join("\n"));
        }
        for e in report.endings {
            *endings.entry(e).or_default() += 1;
        }
        built_off_host += report.off_host.0;
        workers_lost += report.off_host.1;
        resent += report.resent.0;
        reminders += report.resent.1;
        below_latest += report.below_latest;
        for t in report.cancels {
            let answer = match t.answer {
                CancelAnswer::Accepted => "accepted",
                CancelAnswer::Refused => "refused",
                CancelAnswer::Unknown => "unknown",
            };
            *landings
                .entry((t.landing, t.in_stall))
                .or_default()
                .entry(answer)
                .or_default() += 1;
        }
        for (who, n) in report.stops {
            *stops.entry(who).or_default() += n;
        }
        for (k, n) in report.faults {
            *faults.entry(k).or_default() += n;
        }
    })
    .await;
    println!("run endings: {endings:?}");
    println!("faults injected: {faults:?}");
    println!("built off the host: {built_off_host}; workers lost: {workers_lost}");
    println!("sweeper: {resent} request(s) sent again, {reminders} reminder(s)");
    println!("released below the latest (published, not promoted): {below_latest}");
    println!("cancels (where, in a stall?) and their answers: {landings:?}");
    println!("build workers stopped by: {stops:?}");
    assert!(
        failures.is_empty(),
        "{} schedule(s) failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
    if !replay {
        // The suite proves something only if the storm reached every kind of
        // fault and the schedules reached every ending.
        for ending in [
            Ending::Released,
            Ending::Rejected,
            Ending::Skipped,
            Ending::ApprovalExpired,
            Ending::Waiting,
            Ending::Failed(Excuse::SmokeFails),
            Ending::Failed(Excuse::WorkersLost),
            Ending::Cancelled,
        ] {
            assert!(
                endings.contains_key(&ending),
                "no run ended {ending:?}: {endings:?}"
            );
        }
        assert!(
            endings
                .keys()
                .any(|e| matches!(e, Ending::Failed(Excuse::DeadLettered(_)))),
            "no run failed after a dead letter: {endings:?}"
        );
        assert!(
            built_off_host > 0 && workers_lost > 0,
            "the off-host schedules built {built_off_host} run(s) and lost {workers_lost} worker(s)"
        );
        assert!(
            resent > 0 && reminders > 0,
            "the sweeper sent {resent} request(s) again and {reminders} reminder(s)"
        );
        assert!(
            below_latest > 0,
            "no run was released below the latest: the rule that a release never moves latest back was never exercised"
        );
        // An operator cancelled at every step the suite models, and was
        // refused once the release started or the run ended; the freeing
        // stopped workers from each place it is done.
        let accepted_at = |landing: Landing| {
            landings
                .iter()
                .any(|((l, _), answers)| *l == landing && answers.contains_key("accepted"))
        };
        for landing in [
            Landing::Queued,
            Landing::Validate,
            Landing::Build,
            Landing::BuildWorker,
            Landing::Test,
            Landing::Approval,
            Landing::ReleasePending,
            Landing::Again,
        ] {
            assert!(
                accepted_at(landing),
                "no cancel was recorded at {landing:?}: {landings:?}"
            );
        }
        for landing in [Landing::Releasing, Landing::Ended] {
            assert!(
                landings
                    .iter()
                    .any(|((l, _), answers)| *l == landing && answers.contains_key("refused")),
                "no cancel was refused at {landing:?}: {landings:?}"
            );
        }
        assert!(
            landings.keys().any(|(_, in_stall)| *in_stall),
            "no cancel reached a run while one of its stage invocations stalled: {landings:?}"
        );
        // The sweeper finishes a freeing that a crash cut short, but in these
        // schedules the worker has always ended by then: a stop by the
        // sweeper is not required (docs/fault-suite.md).
        for who in ["the operator's cancel", "a stage delivery"] {
            assert!(
                stops.contains_key(who),
                "no build worker was stopped by {who}: {stops:?}"
            );
        }
        for fault in [
            Fault::Conflict,
            Fault::Throttle(429),
            Fault::Throttle(503),
            Fault::CrashBefore,
            Fault::CrashAfter,
            Fault::Pause,
        ] {
            assert!(
                faults.keys().any(|(_, f)| *f == fault),
                "no {fault:?} was injected: {faults:?}"
            );
        }
    }
}

/// What a schedule recorded: its trace (with every message id and lock
/// token), its runs as stored (with attempts' message ids, worker ids and
/// approval token ids; the data folder's path left out) and its side effects.
async fn recording(seed: u64) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut world = World::new(seed).await;
    if let Err(problems) = world.run().await {
        panic!("schedule {seed} broke an invariant:\n{problems}");
    }
    let data = world.data.display().to_string();
    let mut runs = Vec::new();
    for id in world.plans.keys() {
        let run = world.inner.get(&rid(id)).await.unwrap().value;
        runs.push(
            serde_json::to_string(&run)
                .unwrap()
                .replace(&data, "<data>"),
        );
    }
    let effects = world
        .ledger
        .all()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    (std::mem::take(&mut world.trace), runs, effects)
}

/// The first place two recordings differ, if they do.
fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    let at = a.iter().zip(b).position(|(x, y)| x != y);
    match at {
        Some(i) => {
            // Around the first differing byte: records are long.
            let at = a[i].bytes().zip(b[i].bytes()).position(|(x, y)| x != y);
            let around = |s: &str| {
                let from = at.unwrap_or(0).saturating_sub(300);
                let to = (at.unwrap_or(0) + 200).min(s.len());
                s.get(from..to).unwrap_or(s).to_string()
            };
            Some(format!(
                "at {i}, byte {at:?}:\n  …{}…\n  …{}…",
                around(&a[i]),
                around(&b[i])
            ))
        }
        None if a.len() != b.len() => Some(format!("lengths {} and {}", a.len(), b.len())),
        None => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_replays_its_schedule_exactly_ids_included() {
    // Seed 6 builds off the host (worker ids) and pushes the same inputs
    // twice; seed 4 builds here. Both reach the approve stage (token ids).
    for seed in [4, 6] {
        let (trace, runs, effects) = recording(seed).await;
        assert!(
            runs.iter().any(|r| r.contains("tokenId")),
            "schedule {seed} issued no approval link: pick another seed"
        );
        let again = recording(seed).await;
        for (what, first, second) in [
            ("trace", &trace, &again.0),
            ("runs", &runs, &again.1),
            ("side effects", &effects, &again.2),
        ] {
            if let Some(d) = first_difference(first, second) {
                panic!("schedule {seed} replayed with other {what}, {d}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_panics_or_hangs_is_reported_with_its_seed_and_the_others_go_on() {
    let mut finished = Vec::new();
    let failures = run_schedules(
        (1..=6).collect(),
        Duration::from_millis(500),
        |seed| async move {
            match seed {
                2 => panic!("schedule two breaks"),
                3 => std::future::pending::<Result<u64, String>>().await,
                _ => Ok(seed),
            }
        },
        |seed, report| finished.push((seed, report)),
    )
    .await;
    finished.sort_unstable();
    assert_eq!(finished, [(1, 1), (4, 4), (5, 5), (6, 6)]);
    assert_eq!(failures.len(), 2, "{failures:?}");
    let of = |seed: u64| {
        failures
            .iter()
            .find(|f| f.contains(&format!("FAULT_SEED={seed} ")))
            .unwrap_or_else(|| panic!("no failure names seed {seed}: {failures:?}"))
    };
    assert!(of(2).contains("schedule 2 panicked: schedule two breaks"));
    assert!(of(3).contains("schedule 3 did not end within 500ms"));
}

/// A run id the suite made (always valid).
fn rid(id: &str) -> RunId {
    id.parse().expect("a run id the suite made")
}

/// Whether the release notes of `record` tell `run`: its commit, its
/// decisions, and a previous release that is another version of the image.
fn check_notes(run: &Run, record: &ReleaseRecord) -> Result<(), String> {
    let Some(notes) = &record.notes else {
        return Err(format!("image-version.json of {} has no notes", run.id));
    };
    let decisions: Vec<(&str, Verdict, Option<&str>)> = run
        .decisions
        .iter()
        .map(|d| (d.approver.as_str(), d.verdict, d.comment.as_deref()))
        .collect();
    let approvals: Vec<(&str, Verdict, Option<&str>)> = notes
        .approvals
        .iter()
        .map(|a| (a.approver.as_str(), a.verdict, a.comment.as_deref()))
        .collect();
    if notes.trigger.commit != run.trigger.commit || approvals != decisions {
        return Err(format!(
            "the notes of {} do not tell its run: {notes:?}",
            run.id
        ));
    }
    match &notes.previous {
        Some(p) if p.run_id == run.id.as_str() || p.version == run.version.to_string() => Err(
            format!("{} names itself as its previous release: {p:?}", run.id),
        ),
        // The previous release is the release below it, never a newer one.
        Some(p) if p.version.parse::<ImageVersion>().ok() >= Some(run.version) => Err(format!(
            "{} ({}) names a release that is not below it as its previous: {p:?}",
            run.id, run.version
        )),
        _ => Ok(()),
    }
}

/// A settled schedule of `seed` whose checks pass, with a released run.
async fn settled_with_a_release() -> (World, String) {
    for seed in 1..200 {
        let mut world = World::new(seed).await;
        if world.run().await.is_err() {
            continue;
        }
        for id in world.plans.keys() {
            let run = world.inner.get(&rid(id)).await.unwrap().value;
            if run.status == RunStatus::Released {
                let id = id.clone();
                return (world, id);
            }
        }
    }
    panic!("no schedule of seeds 1-199 released a run");
}

/// Changes the stored run `id` behind the factory's back.
async fn plant(world: &World, id: &str, change: impl FnOnce(&mut Run)) {
    let stored = world.inner.get(&rid(id)).await.unwrap();
    let mut run = stored.value;
    change(&mut run);
    world.inner.replace(&run, &stored.etag).await.unwrap();
}

/// The checker is what proves the suite: each wrong ending planted into a
/// settled schedule whose checks passed must be caught, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_rejects_every_planted_wrong_ending() {
    // A released run that ends failed instead.
    let (world, id) = settled_with_a_release().await;
    world
        .check()
        .await
        .expect("the schedule as it settled passes");
    plant(&world, &id, |run| run.status = RunStatus::Failed).await;
    let caught = world.check().await.expect_err("a wrong ending is caught");
    assert!(
        caught.contains(&format!("run {id}")) && caught.contains("allows only"),
        "{caught}"
    );

    // A released run that owes its event twice.
    let (world, id) = settled_with_a_release().await;
    plant(&world, &id, |run| {
        let twice = run.follow_ups[0].clone();
        run.follow_ups.push(twice);
    })
    .await;
    let caught = world
        .check()
        .await
        .expect_err("an event owed twice is caught");
    assert!(caught.contains("owing"), "{caught}");

    // A released run whose release record names another version.
    let (world, id) = settled_with_a_release().await;
    plant(&world, &id, |run| {
        if let Some(release) = run.release.as_mut() {
            release.image_version = "1999.0101.0".into();
        }
    })
    .await;
    let caught = world
        .check()
        .await
        .expect_err("a release record that is not its run's is caught");
    assert!(
        caught.contains("the run records the release") && caught.contains("1999.0101.0"),
        "{caught}"
    );

    // A message nobody will take.
    let (world, _) = settled_with_a_release().await;
    world
        .bus
        .send(vec![Outgoing {
            queue: "stage-validate".into(),
            body: "{}".into(),
            properties: serde_json::Map::new(),
            scheduled_at: None,
        }])
        .await
        .unwrap();
    let caught = world.check().await.expect_err("a message left is caught");
    assert!(caught.contains("left in stage-validate"), "{caught}");
}
