//! The worker mode: one build off the Functions host (a Container Apps job
//! execution running this binary's `worker` mode). It reads its
//! [`BuildOrder`] from `IMAGE_FACTORY_BUILD_ORDER`, downloads the run's
//! source snapshot the order names from the snapshot store
//! (`IMAGE_FACTORY_SOURCES_URL`) with its own identity, checks its SHA-256
//! ([`crate::sources::verify`]: a snapshot whose bytes do not hash to its
//! name fails the run, tampered with or corrupt), unpacks it into its run
//! folder, runs packer on the image's folder there as the local build stage
//! does ([`crate::stages::build_here`]), uploads the log and the patch
//! evidence the build collected (beside the log,
//! [`LogStore::evidence_url_for`]; the report carries its hash and what it
//! says) and sends its [`crate::ports::workers::BuildReport`] on the
//! `build-completed` queue.
//! The worker's container holds no images: what it builds is the run's
//! snapshot, and nothing else. The contract between the two sides is
//! [`crate::ports::workers`].
//!
//! Packer's sign-in ([`PackerSignIn`]): packer's Azure plugin finds a managed
//! identity only through the VM metadata endpoint, which Container Apps does
//! not serve (hashicorp/packer-plugin-azure#411). With
//! `IMAGE_FACTORY_PACKER_CLIENT_ID` set, the worker asks its own identity
//! endpoint for a token for `api://AzureADTokenExchange` and hands it to
//! packer as the client assertion (`client_jwt`) of that app registration,
//! which trusts the job's managed identity as a federated credential
//! (docs/packer-sign-in.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;

use crate::domain::evidence::EvidenceRecord;
use crate::domain::image::ImageConfig;
use crate::domain::run::BuildOutcome;
use crate::ports::executor::Executor;
use crate::ports::logs::LogStore;
use crate::ports::sources::SnapshotStore;
use crate::ports::workers::{BuildOrder, BuildReport, Reporter};
use crate::sources::{Limits, image_config, unpack, verify};
use crate::stages::{Packer, StageResult, build_here};

pub use crate::ports::workers::ORDER_VAR;

/// The setting naming the snapshot store's container.
pub const SOURCES_URL_VAR: &str = "IMAGE_FACTORY_SOURCES_URL";

/// The setting naming the app registration packer signs in as.
pub const PACKER_CLIENT_ID_VAR: &str = "IMAGE_FACTORY_PACKER_CLIENT_ID";

/// The scope of a managed identity token that Entra ID accepts as a
/// federated client assertion (its resource is `api://AzureADTokenExchange`).
pub const TOKEN_EXCHANGE_SCOPE: &str = "api://AzureADTokenExchange/.default";

/// How packer's Azure plugin signs in on the worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackerSignIn {
    /// With what the worker's environment already gives packer (templates
    /// that need no Azure sign-in, or other `ARM_*` settings).
    Environment,
    /// As the app registration `client_id`, with the worker's managed
    /// identity token for `api://AzureADTokenExchange` as its client
    /// assertion: packer gets `ARM_CLIENT_ID` and `ARM_OIDC_TOKEN`, which
    /// the Windows template passes to the plugin's `client_id` and
    /// `client_jwt` (with `subscription_id` and `tenant_id` from the job's
    /// `ARM_SUBSCRIPTION_ID` and `ARM_TENANT_ID`).
    Federated {
        /// The app registration's client id.
        client_id: String,
    },
}

impl PackerSignIn {
    /// The variables packer's environment gets for this sign-in, the
    /// assertion taken from `identity` now. The assertion is a secret: it
    /// goes to packer's environment only, never to its arguments, a log or
    /// a record.
    pub async fn packer_env(
        &self,
        identity: &dyn TokenCredential,
    ) -> Result<Vec<(String, String)>, String> {
        match self {
            PackerSignIn::Environment => Ok(Vec::new()),
            PackerSignIn::Federated { client_id } => {
                let assertion = identity
                    .get_token(&[TOKEN_EXCHANGE_SCOPE], None)
                    .await
                    .map_err(|e| {
                        format!(
                            "packer cannot sign in: the worker's managed identity gave no token for api://AzureADTokenExchange ({e}); check the job's identity and AZURE_CLIENT_ID"
                        )
                    })?;
                Ok(vec![
                    ("ARM_CLIENT_ID".to_string(), client_id.clone()),
                    (
                        "ARM_OIDC_TOKEN".to_string(),
                        assertion.token.secret().to_string(),
                    ),
                ])
            }
        }
    }
}

/// Where a worker finds what it needs, from its environment.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The order.
    pub order: BuildOrder,
    /// The snapshot store's container (`IMAGE_FACTORY_SOURCES_URL`, the
    /// function app's own setting, which the build job sets too).
    pub sources_url: Option<String>,
    /// How much a snapshot may hold (`IMAGE_FACTORY_SNAPSHOT_MAX_*`; the
    /// command line reads them as the function app does).
    pub limits: Limits,
    /// Scratch space for the run folder (`IMAGE_FACTORY_DATA`).
    pub data_dir: PathBuf,
    /// The packer binary (`IMAGE_FACTORY_PACKER`, default `packer` on the PATH).
    pub packer: Option<PathBuf>,
    /// How packer signs in to Azure (`IMAGE_FACTORY_PACKER_CLIENT_ID`).
    pub packer_sign_in: PackerSignIn,
}

impl WorkerSettings {
    /// Reads the settings from `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<WorkerSettings, String> {
        let order = var(ORDER_VAR)
            .ok_or_else(|| format!("{ORDER_VAR} is not set: a worker runs only as a build job"))?;
        let order: BuildOrder = serde_json::from_str(&order)
            .map_err(|e| format!("{ORDER_VAR} is not an order: {e}"))?;
        let packer = match var("IMAGE_FACTORY_PACKER") {
            Some(p) => Some(PathBuf::from(p)),
            None => crate::config::find_on_path("packer"),
        };
        Ok(WorkerSettings {
            order,
            sources_url: var(SOURCES_URL_VAR),
            limits: Limits::default(),
            data_dir: var("IMAGE_FACTORY_DATA")
                .map_or_else(|| std::env::temp_dir().join("image-factory"), PathBuf::from),
            packer,
            packer_sign_in: match var(PACKER_CLIENT_ID_VAR) {
                Some(client_id) => PackerSignIn::Federated { client_id },
                None => PackerSignIn::Environment,
            },
        })
    }
}

/// Pauses between report attempts; the last failure ends the worker with an
/// error, and the watchdog takes it from there.
const REPORT_BACKOFF: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// The worker mode: builds the order on the run's snapshot, downloaded from
/// `snapshots` (`None`: the job names no snapshot store, which fails the
/// build; packer signed in through `identity` as
/// [`WorkerSettings::packer_sign_in`] says), uploads the log, reports.
/// Answers `Err` only when the report could not be sent (the process then
/// exits with an error so its execution shows as failed and the watchdog
/// acts).
pub async fn run(
    settings: &WorkerSettings,
    identity: &dyn TokenCredential,
    executor: &dyn Executor,
    snapshots: Option<&dyn SnapshotStore>,
    uploader: &dyn LogStore,
    reporter: &dyn Reporter,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<BuildReport, String> {
    let order = &settings.order;
    let outcome = build(settings, identity, executor, snapshots, cancel.clone()).await;
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => return Err("the worker was stopped before the build ended".into()),
    };
    let outcome = match outcome {
        (BuildOutcome::Succeeded(mut result), Some(log)) => {
            match uploader.upload(&log, &order.log_url).await {
                Ok(()) => result.log = order.log_url.clone(),
                Err(e) => {
                    tracing::warn!(error = %e, "the build log could not be uploaded");
                    result.log = format!("not uploaded ({e}); it was {}", log.display());
                }
            }
            if let Some(record) = result.evidence.take() {
                result.evidence = Some(Box::new(upload_evidence(uploader, order, *record).await));
            }
            BuildOutcome::Succeeded(result)
        }
        (BuildOutcome::Failed { reason }, Some(log)) => {
            let reason = match uploader.upload(&log, &order.log_url).await {
                Ok(()) => reason.replace(&log.display().to_string(), &order.log_url),
                Err(e) => format!("{reason} (the log could not be uploaded: {e})"),
            };
            BuildOutcome::Failed { reason }
        }
        (outcome, None) => outcome,
    };
    let report = BuildReport {
        run_id: order.run_id.clone(),
        worker_id: order.worker_id.clone(),
        outcome,
    };
    let message_id = format!("{}-{}", order.run_id, order.worker_id);
    let mut last = String::new();
    for pause in REPORT_BACKOFF {
        match reporter.send(&report, &message_id).await {
            Ok(()) => return Ok(report),
            Err(e) => {
                tracing::warn!(error = %e, "the build report could not be sent; trying again");
                last = e;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = cancel.cancelled() => break,
        }
    }
    Err(format!("the build report could not be sent: {last}"))
}

/// Pauses between downloads of the snapshot when the store fails for a
/// while (a throttled or restarting storage account); the last failure
/// fails the build with its reason.
const DOWNLOAD_BACKOFF: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];

/// Downloads the order's snapshot, checks its SHA-256 and unpacks it into
/// `<run folder>/source`; answers the image to build there, or why not.
async fn source(
    settings: &WorkerSettings,
    snapshots: Option<&dyn SnapshotStore>,
    run_dir: &std::path::Path,
) -> Result<ImageConfig, String> {
    let order = &settings.order;
    let Some(id) = &order.snapshot else {
        return Err(format!(
            "run {} has no source snapshot (it was made before snapshots, and the worker builds nothing else); start a new run",
            order.run_id
        ));
    };
    let Some(store) = snapshots else {
        return Err(format!(
            "the build job does not set {SOURCES_URL_VAR}: the worker cannot download the run's snapshot {id}; set it to the sources container (infra/modules/containerapps.bicep does)"
        ));
    };
    let mut attempt = 0;
    let bytes = loop {
        match store.get(id).await {
            Ok(bytes) => break bytes,
            Err(e) if e.is_transient() && attempt < DOWNLOAD_BACKOFF.len() => {
                tracing::warn!(snapshot = %id, error = %e, "the snapshot could not be downloaded; trying again");
                tokio::time::sleep(DOWNLOAD_BACKOFF[attempt]).await;
                attempt += 1;
            }
            Err(e) => return Err(format!("cannot download the run's snapshot: {e}")),
        }
    };
    let (owned, limits) = (id.clone(), settings.limits);
    let tree = tokio::task::spawn_blocking(move || verify(&owned, &bytes, &limits))
        .await
        .map_err(|e| format!("the snapshot check stopped: {e}"))?
        .map_err(|e| format!("run {}: {e}", order.run_id))?;
    tracing::info!(snapshot = %id, bytes = tree.size(), "snapshot downloaded and checked");
    let dir = run_dir.join("source");
    let image = image_config(&tree, &order.image, "images", &dir)?;
    unpack(Arc::new(tree), &dir)
        .await
        .map_err(|e| format!("run {}: {e}", order.run_id))?;
    Ok(image)
}

/// Uploads the evidence file the build left (when it left one) beside the
/// log: the record then names where it is kept; a failed upload is named
/// there instead (the hash and what the file says stay on the record).
async fn upload_evidence(
    uploader: &dyn LogStore,
    order: &BuildOrder,
    record: EvidenceRecord,
) -> EvidenceRecord {
    let Some(local) = record.location().map(PathBuf::from) else {
        return record;
    };
    let url = uploader.evidence_url_for(&order.run_id, &order.worker_id);
    match uploader.upload(&local, &url).await {
        Ok(()) => record.moved_to(&url),
        Err(e) => {
            tracing::warn!(error = %e, "the patch evidence could not be uploaded");
            record.moved_to(&format!("not uploaded ({e}); it was {}", local.display()))
        }
    }
}

/// Runs the build; answers the outcome and the local log, or `None` when cancelled.
async fn build(
    settings: &WorkerSettings,
    identity: &dyn TokenCredential,
    executor: &dyn Executor,
    snapshots: Option<&dyn SnapshotStore>,
    cancel: tokio_util::sync::CancellationToken,
) -> Option<(BuildOutcome, Option<PathBuf>)> {
    let order = &settings.order;
    let failed = |reason: String| Some((BuildOutcome::Failed { reason }, None));
    let run_dir = settings.data_dir.join("runs").join(&order.run_id);
    let image = match source(settings, snapshots, &run_dir).await {
        Ok(image) => image,
        Err(reason) => return failed(reason),
    };
    let Some(packer) = settings.packer.clone() else {
        return failed("the worker's container has no packer binary".into());
    };
    let sign_in = match settings.packer_sign_in.packer_env(identity).await {
        Ok(env) => env,
        Err(reason) => return failed(reason),
    };
    let log = run_dir.join(crate::build_log::CURRENT);
    // A worker's container makes one build: its log is its only attempt's.
    match build_here(
        executor,
        Packer {
            binary: packer,
            sign_in,
        },
        &run_dir,
        1,
        &order.spec(),
        &image,
        cancel,
    )
    .await
    {
        StageResult::Succeeded(crate::domain::run::StageOutput::Built(result)) => {
            Some((BuildOutcome::Succeeded(result), Some(log)))
        }
        StageResult::Failed(reason) => Some((BuildOutcome::Failed { reason }, Some(log))),
        StageResult::Retry(_) => None,
        other => Some((
            BuildOutcome::Failed {
                reason: format!("unexpected build result {other:?}"),
            },
            Some(log),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_read_from_the_environment_and_a_broken_one_is_named() {
        let order = BuildOrder {
            run_id: "push-web-abc".parse().unwrap(),
            image: "web".into(),
            snapshot: Some(
                "0f343b0931126a20f133d67c2b018a3b1bcb4ec7e2b1c1ea0a4b58c1f2b4d07e"
                    .parse()
                    .unwrap(),
            ),
            version: "2026.1125.0".into(),
            commit: Some("abc".into()),
            base_image_version: None,
            message_id: "m1".into(),
            worker_id: "w1".into(),
            log_url: "https://logs.example/build-logs/push-web-abc/w1.log".into(),
            lost_workers: vec!["w0".into()],
            delivery: 2,
        };
        let json = serde_json::to_string(&order).expect("json");
        assert!(
            !json.contains("w0"),
            "the factory's own knowledge stays home: {json}"
        );
        let settings = WorkerSettings::from_vars(|name| (name == ORDER_VAR).then(|| json.clone()))
            .expect("settings");
        let sent = BuildOrder {
            lost_workers: Vec::new(),
            delivery: 0,
            ..order.clone()
        };
        assert_eq!(settings.order, sent);
        let missing = WorkerSettings::from_vars(|_| None).expect_err("no order");
        assert!(missing.contains(ORDER_VAR), "{missing}");
        let broken = WorkerSettings::from_vars(|name| (name == ORDER_VAR).then(|| "{}".into()))
            .expect_err("broken order");
        assert!(broken.contains("not an order"), "{broken}");
        assert_eq!(settings.packer_sign_in, PackerSignIn::Environment);
        let federated = WorkerSettings::from_vars(|name| match name {
            ORDER_VAR => Some(json.clone()),
            PACKER_CLIENT_ID_VAR => Some("22222222-3333-4444-5555-666666666666".into()),
            _ => None,
        })
        .expect("settings");
        assert_eq!(
            federated.packer_sign_in,
            PackerSignIn::Federated {
                client_id: "22222222-3333-4444-5555-666666666666".into()
            }
        );
    }
}
