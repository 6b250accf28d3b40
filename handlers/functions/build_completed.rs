//! `build-completed`: a build worker's report (see [`crate::worker`]). The
//! report names its run and its worker; the state machine finds the build
//! attempt that started that worker and records the result there, then the
//! next stage is dispatched. A report delivered twice, a report from a worker
//! whose attempt was superseded, and a report for a run that ended change
//! nothing; a body that is not a report is refused (the message is retried,
//! then dead-lettered) and changes nothing either.

use super::{InvocationError, MESSAGE_BINDING, retry};
use crate::app::{App, dispatch};
use crate::domain::machine::{Event, decide};
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
        match update_run(app.store.as_ref(), &run_id, |run| decide(run, &event)).await {
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
