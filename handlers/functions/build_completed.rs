//! `build-completed`: a build worker's report (see [`crate::worker`]). The
//! report names its run and its worker; the state machine finds the build
//! attempt that started that worker and records the result there, then the
//! next stage is dispatched. A report delivered twice, a report from a worker
//! whose attempt was superseded, and a report for a run that ended change
//! nothing; a body that is not a report is refused (the message is retried,
//! then dead-lettered) and changes nothing either.

use super::invocation::{InvocationError, MESSAGE_BINDING, retry};
use crate::app::{App, dispatch};
use crate::domain::machine::{Event, TransitionError, decide};
use crate::domain::run::{RunId, Stage, StageStatus};
use crate::ports::store::{StoreError, UpdateError, update_run};
use crate::ports::workers::BuildReport;
use crate::protocol::{InvocationRequest, InvocationResponse};

/// A decoded worker report.
#[derive(Debug)]
pub struct BuildCompleted {
    report: BuildReport,
}

impl BuildCompleted {
    /// Decodes the report.
    pub fn parse(request: &InvocationRequest) -> Result<BuildCompleted, InvocationError> {
        Ok(BuildCompleted {
            report: request.data_as(MESSAGE_BINDING)?,
        })
    }

    /// Records the report on its run.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let BuildReport {
            run_id,
            worker_id,
            outcome,
        } = self.report;
        let mut response = InvocationResponse::default();
        let event = Event::WorkerReported {
            worker: worker_id.clone(),
            at: app.now(),
            outcome,
        };
        let mut recorded = update_run(app.store.as_ref(), &run_id, |run| decide(run, &event)).await;
        // A worker can end before the build stage has recorded that it
        // started it (the start's answer and the stage's write are in flight):
        // wait for that write rather than drop the report.
        for _ in 0..DISPATCH_WAITS {
            let Err(UpdateError::Refused(TransitionError::UnknownWorker { .. })) = &recorded else {
                break;
            };
            if !dispatch_in_flight(app, &run_id).await {
                break;
            }
            tokio::time::sleep(DISPATCH_PAUSE).await;
            recorded = update_run(app.store.as_ref(), &run_id, |run| decide(run, &event)).await;
        }
        match recorded {
            Ok(t) => {
                tracing::info!(%run_id, worker = %worker_id, status = ?t.run.stage(crate::domain::run::Stage::Build).status, "build worker reported");
                response.log(format!(
                    "report of worker {worker_id} recorded on run {run_id}"
                ));
                dispatch(&mut response, &run_id, &t.commands);
            }
            Err(UpdateError::Refused(e)) => {
                tracing::warn!(%run_id, worker = %worker_id, reason = %e, "build report not recorded");
                response.log(format!(
                    "report of worker {worker_id} for run {run_id} not recorded: {e}"
                ));
            }
            Err(UpdateError::Store(StoreError::NotFound { .. })) => {
                tracing::warn!(%run_id, worker = %worker_id, "build report for an unknown run");
                response.log(format!(
                    "report of worker {worker_id} for unknown run {run_id}"
                ));
            }
            Err(e) => {
                return Err(retry(
                    &format!("cannot record the build of run {run_id}"),
                    e,
                ));
            }
        }
        Ok(response)
    }
}

/// How often, and how long apart, a report from a worker the run does not
/// name yet waits for the build stage to record that it started it.
const DISPATCH_WAITS: u32 = 20;
const DISPATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether the run's build is running on an attempt that has not recorded
/// its worker yet (the build stage is between starting it and saying so).
async fn dispatch_in_flight(app: &App, run_id: &RunId) -> bool {
    let Ok(stored) = app.store.get(run_id).await else {
        return false;
    };
    let build = stored.value.stage(Stage::Build);
    build.status == StageStatus::Running
        && build
            .current_attempt()
            .is_some_and(|attempt| attempt.worker.is_none() && attempt.finished_at.is_none())
}
