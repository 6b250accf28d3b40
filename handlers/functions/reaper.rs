//! `reaper` (timer, every ten minutes): deletes what the factory's runs left
//! behind in the cloud (docs/reaper.md). It lists every resource and
//! resource group carrying the factory's run tag (`ports::leftovers`), reads
//! the run each names from the store, and applies the rules of
//! [`crate::domain::reaper`]: a resource of a run that ended is deleted, one
//! of a run the store does not know once older than
//! `IMAGE_FACTORY_REAPER_MAX_AGE_HOURS`; never one of a run still going, one
//! without the factory's tags, or a gallery image version.
//!
//! Before it deletes a VM of a failed run (a build VM packer kept with
//! `-on-error=abort`, a test VM that failed its check, alone or in its test
//! group), it saves the VM's boot diagnostics, serial log and screenshot,
//! with the run (the log store) and records where; a VM whose diagnostics
//! are not there yet is left for the next firing (at most three tries).
//!
//! What it deleted, or in dry-run mode (`IMAGE_FACTORY_REAPER_DRY_RUN`)
//! would delete, is recorded on each run and shown on the dashboard. At most
//! [`MAX_DELETIONS`] resources go per firing; the next takes the rest. With
//! no cloud resources (the local factory) it does nothing.

use std::collections::BTreeMap;
use std::path::Path;

use super::invocation::{InvocationError, retry};
use crate::app::{App, ReaperPorts};
use crate::domain::reaper::{
    RunState, Tagged, diagnostics_due, plan, record_diagnostics, record_reaped,
};
use crate::domain::run::{BootDiagnosticsRecord, ReapOutcome, ReapRecord, Run, RunId};
use crate::ports::leftovers::Capture;
use crate::ports::store::{StoreError, update_run};
use crate::protocol::{InvocationRequest, InvocationResponse};

/// Resources deleted per firing at most (the next firing takes the rest).
pub const MAX_DELETIONS: usize = 20;

/// A reaper firing.
#[derive(Debug)]
pub struct Reaper;

impl Reaper {
    /// Decodes the timer invocation (its payload carries nothing needed).
    pub fn parse(_request: &InvocationRequest) -> Result<Reaper, InvocationError> {
        Ok(Reaper)
    }

    /// Reaps what runs left behind.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let Some(reaper) = &app.reaper else {
            response.log("nothing to reap: this factory creates no cloud resources");
            return Ok(response);
        };
        let listed = reaper
            .leftovers
            .list()
            .await
            .map_err(|e| retry("cannot list what runs left behind", e))?;
        let mut runs: BTreeMap<RunId, (RunState, Option<Run>)> = BTreeMap::new();
        for id in listed.iter().filter_map(Tagged::run) {
            if runs.contains_key(&id) {
                continue;
            }
            let known = match app.store.get(&id).await {
                Ok(stored) => (RunState::of(&stored.value), Some(stored.value)),
                Err(StoreError::NotFound { .. }) => (RunState::Unknown, None),
                // A run that cannot be read is treated as going: never touched.
                Err(e) => {
                    response.log(format!("run {id} not read ({e}): its resources are left"));
                    (RunState::Going, None)
                }
            };
            runs.insert(id, known);
        }
        let states: BTreeMap<RunId, RunState> = runs
            .iter()
            .map(|(id, (state, _))| (id.clone(), state.clone()))
            .collect();
        let now = app.now();
        let plan = plan(&listed, &states, now, reaper.max_age);
        for (resource, why) in &plan.keep {
            tracing::debug!(resource = %resource.id, %why, "left by the reaper");
        }
        let mut records: BTreeMap<RunId, Vec<ReapRecord>> = BTreeMap::new();
        let mut doomed: Vec<(&Tagged, &String)> = Vec::new();
        // Runs one of whose VMs waits for its boot diagnostics: the rest of
        // what they left waits too (a NIC cannot go before its VM).
        let mut waiting: Vec<RunId> = Vec::new();
        for (resource, why) in plan.reap.iter().take(MAX_DELETIONS) {
            if !diagnostics_saved(app, reaper, &listed, resource, &mut runs, &mut response).await {
                response.log(format!(
                    "{} left for the next firing: its VM's boot diagnostics are not saved yet",
                    resource.id
                ));
                waiting.extend(resource.run());
                continue;
            }
            if !resource.is_group() && resource.run().is_some_and(|run| waiting.contains(&run)) {
                response.log(format!(
                    "{} left for the next firing with its run's VM",
                    resource.id
                ));
                continue;
            }
            if reaper.dry_run {
                response.log(format!("would delete {} ({why}; dry run)", resource.id));
                push_record(&mut records, resource, ReapOutcome::WouldDelete, why, now);
            } else {
                doomed.push((resource, why));
            }
        }
        // In the plan's order, one kind at a time (VMs, then NICs, disks,
        // ...; groups last), the resources of one kind at once.
        let mut rest = doomed.as_slice();
        while let Some((first, _)) = rest.first() {
            let same = rest
                .iter()
                .take_while(|(r, _)| r.resource_type.eq_ignore_ascii_case(&first.resource_type))
                .count();
            let (batch, tail) = rest.split_at(same);
            rest = tail;
            let outcomes = futures::future::join_all(
                batch
                    .iter()
                    .map(|(resource, _)| reaper.leftovers.delete(resource)),
            )
            .await;
            for ((resource, why), outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Ok(_) => {
                        tracing::info!(resource = %resource.id, %why, "reaped");
                        response.log(format!("deleted {} ({why})", resource.id));
                        push_record(&mut records, resource, ReapOutcome::Deleted, why, now);
                    }
                    Err(e) => {
                        tracing::warn!(resource = %resource.id, error = %e, "not reaped");
                        response.log(format!("{} not deleted: {e}", resource.id));
                        push_record(
                            &mut records,
                            resource,
                            ReapOutcome::Failed,
                            &e.to_string(),
                            now,
                        );
                    }
                }
            }
        }
        if plan.reap.len() > MAX_DELETIONS {
            response.log(format!(
                "{} more to reap at the next firing",
                plan.reap.len() - MAX_DELETIONS
            ));
        }
        for (run, entries) in records {
            if runs.get(&run).is_none_or(|(_, stored)| stored.is_none()) {
                // A run the store does not know: the log is the only record.
                continue;
            }
            if let Err(e) =
                update_run(app.store.as_ref(), &run, |r| record_reaped(r, &entries)).await
            {
                response.log(format!("what was reaped is not recorded on run {run}: {e}"));
            }
        }
        Ok(response)
    }
}

fn push_record(
    records: &mut BTreeMap<RunId, Vec<ReapRecord>>,
    resource: &Tagged,
    outcome: ReapOutcome,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    let Some(run) = resource.run() else { return };
    records.entry(run).or_default().push(ReapRecord {
        resource: resource.id.clone(),
        resource_type: resource.resource_type.clone(),
        outcome,
        reason: reason.to_string(),
        at,
    });
}

/// Whether `resource` may be deleted as far as boot diagnostics go: every
/// VM it is or holds (a group's listed VMs) whose run failed has its
/// diagnostics saved, or tried [`crate::domain::reaper::MAX_DIAGNOSTICS_ATTEMPTS`]
/// times. Tries the due ones now and records each try on its run.
async fn diagnostics_saved(
    app: &App,
    reaper: &ReaperPorts,
    listed: &[Tagged],
    resource: &Tagged,
    runs: &mut BTreeMap<RunId, (RunState, Option<Run>)>,
    response: &mut InvocationResponse,
) -> bool {
    let vms: Vec<&Tagged> = if resource.is_vm() {
        vec![resource]
    } else if resource.is_group() {
        listed
            .iter()
            .filter(|r| r.is_vm() && r.group.eq_ignore_ascii_case(&resource.group))
            .collect()
    } else {
        return true;
    };
    let mut ready = true;
    for vm in vms {
        let Some(run_id) = vm.run() else { continue };
        let Some((state, Some(run))) = runs.get(&run_id) else {
            continue;
        };
        if !diagnostics_due(run, state, &vm.id) {
            continue;
        }
        let record = collect(app, reaper, &run_id, vm).await;
        response.log(match (&record.serial_log, &record.screenshot) {
            (None, None) => format!(
                "boot diagnostics of {}: {}",
                vm.id,
                record.note.as_deref().unwrap_or("not saved")
            ),
            _ => format!("boot diagnostics of {} saved with run {run_id}", vm.id),
        });
        match update_run(app.store.as_ref(), &run_id, |r| {
            record_diagnostics(r, &record)
        })
        .await
        {
            Ok(transition) => {
                let state = state.clone();
                let still_due = diagnostics_due(&transition.run, &state, &vm.id);
                runs.insert(run_id.clone(), (state, Some(transition.run)));
                if still_due {
                    ready = false;
                }
            }
            Err(e) => {
                response.log(format!(
                    "the boot diagnostics of {} are not recorded on run {run_id}: {e}",
                    vm.id
                ));
                ready = false;
            }
        }
    }
    ready
}

/// One try at `vm`'s boot diagnostics: read into the data folder, kept in
/// the log store beside the run's logs, the local copies removed.
async fn collect(
    app: &App,
    reaper: &ReaperPorts,
    run: &RunId,
    vm: &Tagged,
) -> BootDiagnosticsRecord {
    let name = vm.id.rsplit('/').next().unwrap_or("vm").to_string();
    let dir = app
        .settings
        .data_dir
        .join("boot-diagnostics")
        .join(run.as_str());
    let mut record = BootDiagnosticsRecord {
        vm: vm.id.clone(),
        role: vm.role().unwrap_or_default().to_string(),
        serial_log: None,
        screenshot: None,
        attempts: 1,
        note: None,
        at: app.now(),
    };
    match reaper.leftovers.boot_diagnostics(vm, &dir).await {
        Ok(Capture::Pending(note)) => record.note = Some(note),
        Ok(Capture::Saved {
            serial_log,
            screenshot,
        }) => {
            let mut problems = Vec::new();
            for (path, slot, file) in [
                (serial_log, &mut record.serial_log, "serial.log"),
                (screenshot, &mut record.screenshot, "screenshot.bmp"),
            ] {
                let Some(path) = path else { continue };
                let url = app
                    .logs
                    .url_for_file(run, &format!("boot-diagnostics-{name}-{file}"));
                match app.logs.upload(&path, &url).await {
                    Ok(()) => *slot = Some(url),
                    Err(e) => problems.push(format!("{file} not kept: {e}")),
                }
                remove(&path).await;
            }
            if !problems.is_empty() {
                record.note = Some(problems.join("; "));
            }
        }
        Err(e) => record.note = Some(e.to_string()),
    }
    record
}

async fn remove(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        tracing::debug!(path = %path.display(), error = %e, "a local copy of boot diagnostics was not removed");
    }
}
