//! The build stage: `packer build -machine-readable` through the executor,
//! with the run's version and commit as variables. The log is kept in the
//! run's folder; artifacts come from the machine-readable lines as they are
//! printed, and from the manifest post-processor's file when there is one.

use super::StageResult;
use crate::app::App;
use crate::config::{ImageConfig, build_timeout};
use crate::domain::run::{ArtifactRecord, BuildResult, Run, StageOutput};
use crate::executor::{Job, JobEnd};
use crate::packer::{ArtifactCollector, AzureIds, azure_ids, parse_manifest};
use crate::template::check_folder;

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    let Some(packer) = app.settings.packer.clone() else {
        return StageResult::Failed(
            "no packer binary is configured: install packer or set IMAGE_FACTORY_PACKER".into(),
        );
    };
    let dir = image.dir.clone();
    let declared = match tokio::task::spawn_blocking(move || check_folder(&dir)).await {
        Ok(Ok(report)) => report.variables,
        Ok(Err(e)) => return StageResult::Failed(format!("cannot read the template: {e}")),
        Err(e) => return StageResult::Retry(format!("template check task failed: {e}")),
    };
    let run_dir = app.settings.run_dir(&run.id);
    if let Err(e) = tokio::fs::create_dir_all(&run_dir).await {
        return StageResult::Retry(format!("cannot create {}: {e}", run_dir.display()));
    }
    let template = match std::path::absolute(&image.dir) {
        Ok(path) => path,
        Err(e) => {
            return StageResult::Failed(format!("cannot resolve {}: {e}", image.dir.display()));
        }
    };
    let mut args: Vec<String> = vec![
        "build".into(),
        "-machine-readable".into(),
        "-color=false".into(),
    ];
    args.extend(super::packer_vars(run, image, &declared));
    args.push(template.display().to_string());
    let log = run_dir.join("build.log");
    let job = Job {
        program: packer,
        args,
        dir: run_dir.clone(),
        env: vec![("CHECKPOINT_DISABLE".into(), "1".into())],
        log: log.clone(),
        timeout: build_timeout(image),
    };
    let mut collector = ArtifactCollector::new();
    let outcome = app
        .executor
        .run(
            job,
            &mut |line| {
                collector.feed(line);
            },
            app.shutdown.child_token(),
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
    }))
}

/// How much of the end of a build log is searched for evidence of a known failure.
const EVIDENCE_BYTES: u64 = 256 * 1024;

/// "; log: <line>" quoting the log line that shows the failure's likely cause
/// (see [`crate::domain::diagnosis`]), or nothing. Reads at most the log's
/// last [`EVIDENCE_BYTES`].
pub(crate) async fn log_evidence(log: &std::path::Path) -> String {
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
