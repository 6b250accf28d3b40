//! The worker mode: one build off the Functions host (a Container Apps job
//! execution running this binary's `worker` mode). It reads its
//! [`BuildOrder`] from `IMAGE_FACTORY_BUILD_ORDER`, runs packer as the local
//! build stage does ([`crate::stages::build_here`]), uploads the log and the
//! patch evidence the build collected (beside the log,
//! [`LogStore::evidence_url_for`]; the report carries its hash and what it
//! says) and sends its [`crate::ports::workers::BuildReport`] on the
//! `build-completed` queue. The contract between the two sides is
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
use std::time::Duration;

use azure_core::credentials::TokenCredential;

use crate::config::load_images;
use crate::domain::evidence::EvidenceRecord;
use crate::domain::run::BuildOutcome;
use crate::ports::executor::Executor;
use crate::ports::logs::LogStore;
use crate::ports::workers::{BuildOrder, BuildReport, Reporter};
use crate::stages::{Packer, StageResult, build_here};

pub use crate::ports::workers::ORDER_VAR;

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
    /// The folder of image folders baked into the worker's container (`IMAGE_FACTORY_IMAGES`).
    pub images_dir: PathBuf,
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
            images_dir: var("IMAGE_FACTORY_IMAGES").map_or_else(|| "images".into(), PathBuf::from),
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

/// The worker mode: builds the order (packer signed in through `identity`
/// as [`WorkerSettings::packer_sign_in`] says), uploads the log, reports.
/// Answers `Err` only when the report could not be sent (the process then
/// exits with an error so its execution shows as failed and the watchdog
/// acts).
pub async fn run(
    settings: &WorkerSettings,
    identity: &dyn TokenCredential,
    executor: &dyn Executor,
    uploader: &dyn LogStore,
    reporter: &dyn Reporter,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<BuildReport, String> {
    let order = &settings.order;
    let outcome = build(settings, identity, executor, cancel.clone()).await;
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
    cancel: tokio_util::sync::CancellationToken,
) -> Option<(BuildOutcome, Option<PathBuf>)> {
    let order = &settings.order;
    let failed = |reason: String| Some((BuildOutcome::Failed { reason }, None));
    let images = match load_images(&settings.images_dir) {
        Ok(images) => images,
        Err(e) => return failed(format!("the worker cannot read its images: {e}")),
    };
    let Some(image) = images.get(&order.image) else {
        return failed(format!(
            "image {} is not in the worker's container: rebuild the worker image from the same commit as the function app",
            order.image
        ));
    };
    let Some(packer) = settings.packer.clone() else {
        return failed("the worker's container has no packer binary".into());
    };
    let sign_in = match settings.packer_sign_in.packer_env(identity).await {
        Ok(env) => env,
        Err(reason) => return failed(reason),
    };
    let run_dir = settings.data_dir.join("runs").join(&order.run_id);
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
        image,
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
