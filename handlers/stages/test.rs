//! The test stage: the image's smoke test, in the first test environment
//! that accepts it — on Azure a temporary VM made from the built image
//! (`azure::testvm`, for an `[smoke.http]` check of a build that produced a
//! gallery version or managed image), else this machine (`local::test_env`:
//! the command in the template folder, or the HTTP check).
//!
//! A transient failure of the environment itself (throttling after the
//! client's own retries, 5xx, transport) leaves the message to be delivered
//! again on the first two deliveries (the environment names what it creates
//! deterministically: nothing is created twice); from the third it is
//! recorded as the stage's failure.
//!
//! After a passed smoke test, an image with `[declare]` is checked against
//! its declaration in the same environment (the environment runs the
//! image's checker and returns one result per declared check): any failed
//! check fails the run, with the record kept on it
//! ([`crate::domain::declaration`]); an environment that returns no record
//! for such an image fails it too, since nothing was checked.
//!
//! Before the smoke test, an image with `[patch]` goes through the patch
//! gate ([`crate::domain::patch_gate`], where every decision is): the
//! build's evidence against Microsoft's data for the newest month (or the
//! one its grace rule picks), and the CVEs fixed since the image's previous
//! release. A failed gate ends the run before any test machine is made;
//! when the data cannot be read, the stage answers that it waits (the
//! sweeper dispatches it again) until `[patch] unverified_after_hours`,
//! then lets the run through marked "patch level not verified".

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::result::StageResult;
use crate::domain::cvrf::CvrfDocument;
use crate::domain::evidence::Evidence;
use crate::domain::image::ImageConfig;
use crate::domain::patch::Target;
use crate::domain::patch_gate::{
    NewlyFixed, PatchRecord, PatchSettings, counted_from, grace_month, grace_note, judge,
    judgeable, months_between, refused, unreachable,
};
use crate::domain::run::{Run, Stage, StageOutput};
use crate::ports::PortError;
use crate::ports::security_updates::SecurityUpdates;
use crate::ports::store::RunStore;
use crate::ports::test_env::{SmokeOrder, SmokeReport, TestEnvironment};

/// Deliveries of the test stage that retry a transient failure; from
/// this one on it is recorded as the stage's failure.
const LAST_RETRIED_DELIVERY: u32 = 2;

/// What the test stage reads besides the test environments.
pub(super) struct Inputs<'a> {
    /// Microsoft's security data, for the patch gate.
    pub security_updates: &'a dyn SecurityUpdates,
    /// The run store: the image's previous release, for what is newly fixed.
    pub store: &'a dyn RunStore,
}

pub(super) async fn run(
    environments: &[Arc<dyn TestEnvironment>],
    inputs: Inputs<'_>,
    run_dir: &Path,
    now: DateTime<Utc>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let patch = match &image.settings.patch {
        None => None,
        Some(settings) => {
            let record = match gate(&inputs, settings, run, now).await {
                Ok(record) => record,
                Err(GateStop::Unreachable(error)) => {
                    unreachable(settings, run.patch.as_deref(), &error, now)
                }
                Err(GateStop::Retry(reason)) => return StageResult::Retry(reason),
            };
            if !record.lets_through() {
                return StageResult::PatchGate(Box::new(record));
            }
            Some(Box::new(record))
        }
    };
    let attempt = run.stage(Stage::Test).current_attempt();
    let order = SmokeOrder {
        run,
        image,
        run_dir: run_dir.to_path_buf(),
        built_image: built_image(run).map(str::to_string),
        started_at: attempt.map_or(now, |a| a.started_at),
    };
    let Some(environment) = environments.iter().find(|e| e.accepts(&order)) else {
        return StageResult::Failed(format!(
            "no test environment can run the smoke test of {}",
            image.name
        ));
    };
    match environment.smoke(&order).await {
        Ok(SmokeReport {
            checks,
            failure: None,
            declaration,
        }) => match (&image.settings.declare, declaration) {
            (Some(_), None) => StageResult::Failed(format!(
                "the test environment did not check what {} declares ([declare]); nothing was checked",
                image.name
            )),
            (_, Some(record)) if !record.passed() => StageResult::DeclarationFailed {
                checks,
                patch,
                record: Box::new(record),
            },
            (_, declaration) => StageResult::Succeeded(StageOutput::Tested {
                checks,
                patch,
                declaration: declaration.map(Box::new),
            }),
        },
        Ok(SmokeReport {
            failure: Some(reason),
            ..
        }) => StageResult::Failed(reason),
        Err(e) if e.is_transient() => {
            let delivery = attempt.map_or(1, |a| a.execution.delivery);
            if delivery < LAST_RETRIED_DELIVERY + 1 {
                StageResult::Retry(e.message)
            } else {
                StageResult::Failed(format!(
                    "{e} (still failing on delivery {delivery} of the test stage; start the run again later)"
                ))
            }
        }
        Err(e) => StageResult::Failed(e.message),
    }
}

/// Why the gate could not decide now.
enum GateStop {
    /// Microsoft's data could not be read (a transient error): the gate waits.
    Unreachable(String),
    /// The run store could not be read: the message is delivered again.
    Retry(String),
}

/// A failure to read Microsoft's data: the gate waits on a transient one,
/// and fails the run on a permanent one (the data will not come).
fn data_error(
    settings: &PatchSettings,
    e: PortError,
    now: DateTime<Utc>,
) -> Result<PatchRecord, GateStop> {
    if e.is_transient() {
        Err(GateStop::Unreachable(e.to_string()))
    } else {
        Ok(refused(
            settings,
            format!("cannot read Microsoft's security data: {e}"),
            now,
        ))
    }
}

/// The patch gate of `run`: its evidence, then the month, then what is
/// newly fixed, then the verdict.
async fn gate(
    inputs: &Inputs<'_>,
    settings: &PatchSettings,
    run: &Run,
    now: DateTime<Utc>,
) -> Result<PatchRecord, GateStop> {
    let record = run.build.as_ref().and_then(|b| b.evidence.as_deref());
    let evidence = match judgeable(settings, record) {
        Ok(evidence) => evidence,
        Err(reason) => return Ok(refused(settings, reason, now)),
    };
    let data = inputs.security_updates;
    let newest = match data.newest().await {
        Ok(newest) => newest,
        Err(e) => return data_error(settings, e, now),
    };
    let (month, grace) =
        match grace_month(newest.id, newest.initial_release, settings.grace_days, now) {
            None => (newest, None),
            Some(id) => match data.month(id).await {
                Ok(month) => {
                    let note =
                        grace_note(id, newest.id, newest.initial_release, settings.grace_days);
                    (month, Some(note))
                }
                Err(e) => return data_error(settings, e, now),
            },
        };
    let newly = match newly_fixed(inputs, settings, run, evidence, &month).await {
        Ok(newly) => newly,
        Err(NewlyStop::Data(e)) => return data_error(settings, e, now),
        Err(NewlyStop::Store(reason)) => return Err(GateStop::Retry(reason)),
    };
    Ok(judge(settings, evidence, &month, grace, newly, now))
}

/// Why what is newly fixed could not be worked out now.
enum NewlyStop {
    /// Microsoft's data.
    Data(PortError),
    /// The run store.
    Store(String),
}

/// The CVEs fixed since the image's previous release: from its evidence's
/// build to this one's, over the months from the one it was judged against
/// to `month`. `None` for a first release, or a previous release with no
/// evidence of the same product. A month that cannot be read for good is
/// listed as unread.
async fn newly_fixed(
    inputs: &Inputs<'_>,
    settings: &PatchSettings,
    run: &Run,
    evidence: &Evidence,
    month: &CvrfDocument,
) -> Result<Option<NewlyFixed>, NewlyStop> {
    let previous = super::release::previous_release(inputs.store, run)
        .await
        .map_err(|e| NewlyStop::Store(format!("cannot read the previous release: {e}")))?;
    let Some(previous) = previous else {
        return Ok(None);
    };
    let Some(before) = previous
        .build
        .as_ref()
        .and_then(|b| b.evidence.as_ref())
        .and_then(|r| r.evidence())
        .filter(|e| Target::of(e).is_ok_and(|t| t.product == settings.product))
    else {
        return Ok(None);
    };
    let mut months = Vec::new();
    let mut unread = Vec::new();
    for id in months_between(counted_from(previous.patch.as_deref(), before), month.id) {
        if id == month.id {
            months.push(month.clone());
            continue;
        }
        match inputs.security_updates.month(id).await {
            Ok(document) => months.push(document),
            Err(e) if e.is_transient() => return Err(NewlyStop::Data(e)),
            Err(e) => unread.push(format!("{id}: {e}")),
        }
    }
    Ok(NewlyFixed::of(
        &months,
        unread,
        &settings.product,
        &previous.version.to_string(),
        before.os.build,
        evidence.os.build,
    ))
}

/// The image the build produced on Azure: its gallery version, else its managed image.
fn built_image(run: &Run) -> Option<&str> {
    let build = run.build.as_ref()?;
    build
        .gallery_version_id
        .as_deref()
        .or(build.managed_image_id.as_deref())
}
