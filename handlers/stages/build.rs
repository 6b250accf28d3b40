//! The build stage: `packer build -machine-readable` through the executor,
//! with the run's version and commit as variables. The log is kept in the
//! run's folder, one per attempt ([`crate::build_log`]); artifacts come from the machine-readable lines as they are
//! printed, and from the manifest post-processor's file when there is one.
//!
//! A template that declares `evidence_path` is asked for its patch evidence
//! there, in the run's folder: an earlier attempt's file is removed before
//! packer starts, and after the build the file's SHA-256 and what it says
//! are recorded on the build's result, or that there is none
//! ([`EvidenceRecord`]); the test stage's patch gate judges it.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::context::Ports;
use super::result::StageResult;
use crate::build_log;
use crate::domain::evidence::{EVIDENCE_FILE, EVIDENCE_MAX_BYTES, EvidenceRecord};
use crate::domain::image::{ImageConfig, build_timeout};
use crate::domain::run::{ArtifactRecord, BuildResult, BuildSpec, Run, Stage, StageOutput};
use crate::packer::{ArtifactCollector, AzureIds, azure_ids, parse_manifest};
use crate::ports::clock::Ids;
use crate::ports::executor::{Executor, Job, JobEnd};
use crate::ports::logs::LogStore;
use crate::ports::workers::{BuildOrder, Workers};
use crate::private;
use crate::template::check_folder;

pub(super) async fn run(ports: &Ports<'_>, run: &Run, image: &ImageConfig) -> StageResult {
    // The gallery image definition the build publishes to exists, as
    // image.toml says, before packer starts.
    if let Some(definition) = image.settings.gallery_definition(&run.image) {
        match ports.gallery.define(&run.image, &definition).await {
            Ok(done) => {
                tracing::info!(run_id = %run.id, definition = %definition.name, ?done, "gallery image definition")
            }
            Err(e) if e.is_transient() => {
                return StageResult::Retry(format!(
                    "cannot make the gallery image definition {} now: {e}",
                    definition.name
                ));
            }
            Err(e) => {
                return StageResult::Failed(format!(
                    "the gallery image definition {} cannot be made as image.toml says: {e}",
                    definition.name
                ));
            }
        }
    }
    if let Some(workers) = ports.workers {
        return dispatch(workers, ports.logs, ports.ids, run).await;
    }
    let Some(packer) = ports.packer.clone() else {
        return StageResult::Failed(
            "no packer binary is configured: install packer or set IMAGE_FACTORY_PACKER".into(),
        );
    };
    build_here(
        ports.executor,
        Packer {
            binary: packer,
            sign_in: Vec::new(),
        },
        &ports.run_dir,
        run.stage(Stage::Build).attempts.len().max(1),
        &BuildSpec::of(run),
        image,
        ports.cancel.clone(),
    )
    .await
}

/// Starts the run's build on a worker off the host (or finds the one this
/// stage message already started) and returns without waiting for it.
async fn dispatch(workers: &dyn Workers, logs: &dyn LogStore, ids: &Ids, run: &Run) -> StageResult {
    let Some(attempt) = run.stage(Stage::Build).current_attempt() else {
        return StageResult::Retry("the build stage has no attempt recorded".into());
    };
    let worker_id = ids.next();
    let order = BuildOrder {
        run_id: run.id.clone(),
        image: run.image.clone(),
        snapshot: run.source.as_ref().map(|s| s.snapshot.clone()),
        version: run.version.to_string(),
        commit: run.trigger.commit.clone(),
        base_image_version: run.trigger.base_image_version.clone(),
        message_id: attempt.execution.message_id.clone(),
        log_url: logs.url_for(&run.id, &worker_id),
        worker_id,
        lost_workers: run.stage(Stage::Build).lost_worker_ids(),
        delivery: attempt.execution.delivery,
    };
    match workers.start(&order).await {
        Ok(worker) => StageResult::Dispatched(worker),
        Err(e) if e.is_transient() => {
            StageResult::Retry(format!("cannot start the build worker now: {e}"))
        }
        Err(e) => StageResult::Failed(format!("the build worker could not be started: {e}")),
    }
}

/// The packer a build runs: its binary, and what is added to its environment
/// to sign in to Azure (the worker's sign-in; it may hold a secret, so it
/// never goes to the arguments or the log).
pub struct Packer {
    /// The packer executable.
    pub binary: PathBuf,
    /// Environment variables added for packer's Azure sign-in.
    pub sign_in: Vec<(String, String)>,
}

impl std::fmt::Debug for Packer {
    /// Names the sign-in variables, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sign_in.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Packer")
            .field("binary", &self.binary)
            .field("sign_in", &names)
            .finish()
    }
}

/// Runs `packer build` for `spec` through `executor`, here: the local
/// factory's build stage and the off-host worker both build through this.
/// `attempt` (from 1) is the build stage's attempt: its log is kept apart
/// from earlier attempts' (see [`crate::build_log`]).
pub async fn build_here(
    executor: &dyn Executor,
    packer: Packer,
    run_dir: &Path,
    attempt: usize,
    spec: &BuildSpec,
    image: &ImageConfig,
    cancel: CancellationToken,
) -> StageResult {
    let Packer { binary, sign_in } = packer;
    let dir = image.dir.clone();
    let declared = match tokio::task::spawn_blocking(move || check_folder(&dir)).await {
        Ok(Ok(report)) => report.variables,
        Ok(Err(e)) => return StageResult::Failed(format!("cannot read the template: {e}")),
        Err(e) => return StageResult::Retry(format!("template check task failed: {e}")),
    };
    let evidence_file = declared
        .iter()
        .any(|d| d == "evidence_path")
        .then(|| run_dir.join(EVIDENCE_FILE));
    if let Some(file) = &evidence_file {
        match tokio::fs::remove_file(file).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return StageResult::Retry(format!(
                    "cannot remove an earlier attempt's {}: {e}",
                    file.display()
                ));
            }
        }
    }
    let folder = run_dir.to_path_buf();
    let log = match private::blocking(move || build_log::start_attempt(&folder, attempt)).await {
        Ok(log) => log,
        Err(e) => {
            return StageResult::Retry(format!(
                "cannot create the run's folder {} and its build log: {e}",
                run_dir.display()
            ));
        }
    };
    let template = match std::path::absolute(&image.dir) {
        Ok(path) => path,
        Err(e) => {
            return StageResult::Failed(format!("cannot resolve {}: {e}", image.dir.display()));
        }
    };
    // On error packer leaves what it made as it is (`abort`): a failed Azure
    // build keeps its VM for the boot diagnostics the reaper collects before
    // it deletes what the run left (docs/reaper.md).
    let mut args: Vec<String> = vec![
        "build".into(),
        "-machine-readable".into(),
        "-color=false".into(),
        "-on-error=abort".into(),
    ];
    args.extend(super::vars::packer_vars(
        spec,
        image,
        &declared,
        Some(run_dir),
    ));
    args.push(template.display().to_string());
    let mut env = vec![("CHECKPOINT_DISABLE".to_string(), "1".to_string())];
    env.extend(sign_in);
    let job = Job {
        program: binary,
        args,
        dir: run_dir.to_path_buf(),
        env,
        log: log.clone(),
        timeout: build_timeout(image),
    };
    let mut collector = ArtifactCollector::new();
    let outcome = executor
        .run(
            job,
            &mut |line| {
                collector.feed(line);
            },
            cancel,
        )
        .await;
    let log_ref = log.display().to_string();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return StageResult::Failed(e.to_string()),
    };
    match outcome.end {
        JobEnd::Exited(0) => {}
        JobEnd::Exited(code) => {
            let mut reasons: Vec<String> = collector.errors().to_vec();
            reasons.extend(
                collector
                    .build_errors()
                    .iter()
                    .map(|e| format!("{}: {}", e.build, e.message)),
            );
            let tail: Vec<&str> = reasons.iter().rev().take(3).map(String::as_str).collect();
            return StageResult::Failed(format!(
                "packer build exited with code {code}: {}{}; full log: {log_ref}",
                if tail.is_empty() {
                    "no error message".into()
                } else {
                    tail.join(" | ")
                },
                log_evidence(&log).await
            ));
        }
        JobEnd::TimedOut => {
            return StageResult::Failed(format!(
                "packer build ran past its timeout of {} minutes and was stopped{}; full log: {log_ref}",
                image.settings.packer.timeout_minutes,
                log_evidence(&log).await
            ));
        }
        JobEnd::Signalled => {
            return StageResult::Failed(format!(
                "packer build was killed by a signal; full log: {log_ref}"
            ));
        }
        JobEnd::Cancelled => {
            return StageResult::Retry(
                "the handler is shutting down; the build will run again".into(),
            );
        }
    }
    let artifacts: Vec<ArtifactRecord> = collector
        .artifacts()
        .iter()
        .map(|a| ArtifactRecord {
            builder: a.builder.clone(),
            id: a.id.clone(),
            description: a.string.clone(),
            files: a.files.clone(),
        })
        .collect();
    let mut ids = AzureIds::default();
    for artifact in collector.artifacts() {
        ids.merge(azure_ids(artifact));
    }
    if let Ok(text) = tokio::fs::read_to_string(run_dir.join("manifest.json")).await
        && let Ok(manifest) = parse_manifest(&text)
    {
        for build in manifest.last_run() {
            ids.merge(build.azure_ids());
        }
    }
    StageResult::Succeeded(StageOutput::Built(BuildResult {
        artifacts,
        managed_image_id: ids.managed_image_id,
        gallery_version_id: ids.gallery_version_id,
        log: log_ref,
        duration_seconds: outcome.elapsed.as_secs(),
        evidence: match &evidence_file {
            Some(file) => Some(Box::new(collect_evidence(file).await)),
            None => None,
        },
    }))
}

/// What the build left at `file`: its record, read no further than the
/// largest evidence the factory reads (one byte more tells it is larger).
async fn collect_evidence(file: &Path) -> EvidenceRecord {
    use tokio::io::AsyncReadExt;
    let location = file.display().to_string();
    let opened = match tokio::fs::File::open(file).await {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return EvidenceRecord::read(None, &location);
        }
        Err(e) => {
            return EvidenceRecord::Missing {
                reason: format!("cannot read {location}: {e}"),
            };
        }
    };
    let mut bytes = Vec::new();
    match opened
        .take(EVIDENCE_MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
    {
        Ok(_) => EvidenceRecord::read(Some(&bytes), &location),
        Err(e) => EvidenceRecord::Missing {
            reason: format!("cannot read {location}: {e}"),
        },
    }
}

/// How much of the end of a build log is searched for evidence of a known failure.
const EVIDENCE_BYTES: u64 = 256 * 1024;

/// "; log: <line>" quoting the log line that shows the failure's likely cause
/// (see [`crate::domain::diagnosis`]), or nothing. Reads at most the log's
/// last [`EVIDENCE_BYTES`].
async fn log_evidence(log: &std::path::Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Ok(mut file) = tokio::fs::File::open(log).await else {
        return String::new();
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(EVIDENCE_BYTES);
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file
        .take(EVIDENCE_BYTES)
        .read_to_end(&mut bytes)
        .await
        .is_err()
    {
        return String::new();
    }
    crate::domain::diagnosis::evidence(&String::from_utf8_lossy(&bytes))
        .map(|line| format!("; log: {line}"))
        .unwrap_or_default()
}
