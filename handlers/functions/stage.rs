//! `stage-validate`, `stage-build`, `stage-test`, `stage-approve`,
//! `stage-release`: one Service Bus message runs one stage of one run.
//!
//! The order is what makes at-least-once delivery safe: record that the stage
//! started (with this delivery's identity) before any side effect, run the
//! stage's body, record its result with If-Match, then emit the next message.
//! The run is read once: the result is written against the ETag the start's
//! write returned (three store requests a stage), and read again only if
//! someone else wrote the run in between.
//! A redelivery of a finished stage re-emits the next message and does nothing
//! else; a redelivery after a crash supersedes the dead attempt.
//!
//! A message for a run that was cancelled does nothing, with one duty: a
//! build whose worker was started by a delivery the cancel overtook is
//! stopped here, by the delivery that started it (its result is refused)
//! or by a later delivery of the same message (that one crashed first), so
//! no worker of a cancelled run builds on (see [`crate::cancel`]).

use crate::app::{App, StageMessage, dispatch, dispatch_follow_up};
use crate::domain::machine::{Event, TransitionError, decide};
use crate::domain::run::{Execution, Run, RunId, RunStatus, Stage, StageStatus};
use crate::ports::store::{UpdateError, update_run_from};
use crate::protocol::{InvocationRequest, InvocationResponse, ProtocolError};
use crate::stages::StageResult;

use tracing::Instrument;

use super::invocation::{InvocationError, MESSAGE_BINDING, retry};

/// A decoded stage message with its delivery.
#[derive(Debug)]
pub struct StageInvocation {
    message: StageMessage,
    execution: Execution,
}

impl StageInvocation {
    /// Decodes the message for the `stage` function.
    pub fn parse(
        stage: Stage,
        request: &InvocationRequest,
    ) -> Result<StageInvocation, InvocationError> {
        let message: StageMessage = request.data_as(MESSAGE_BINDING)?;
        if message.stage != stage {
            return Err(ProtocolError::Invalid {
                name: MESSAGE_BINDING.into(),
                message: format!(
                    "a message for stage {} reached the {} function",
                    message.stage,
                    stage.function_name()
                ),
            }
            .into());
        }
        let message_id = request
            .metadata_text("MessageId")
            .ok_or_else(|| ProtocolError::MissingMetadata("MessageId".into()))?;
        let delivery = request
            .metadata_u32("DeliveryCount")
            .ok_or_else(|| ProtocolError::MissingMetadata("DeliveryCount".into()))?;
        Ok(StageInvocation {
            message,
            execution: Execution {
                message_id,
                delivery,
            },
        })
    }

    /// Runs the stage.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let span = tracing::info_span!(
            "stage",
            run_id = %self.message.run_id,
            stage = %self.message.stage,
            attempt = %self.execution
        );
        crate::trace::join_run_trace(&span, &self.message.run_id);
        self.run(app).instrument(span).await
    }

    async fn run(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let StageInvocation { message, execution } = self;
        let (run_id, stage) = (&message.run_id, message.stage);
        let mut response = InvocationResponse::default();

        let started = update_run_from(app.store.as_ref(), run_id, None, |run| {
            decide(
                run,
                &Event::StageStarted {
                    stage,
                    execution: execution.clone(),
                    at: app.now(),
                },
            )
        })
        .await;
        // The start's write returned the run's new ETag: the result is
        // written against it, without reading the run again.
        let (run, held) = match started {
            Ok(u) => (u.transition.run, u.stored),
            Err(UpdateError::Refused(TransitionError::RunFinished { status, .. })) => {
                response.log(format!("run {run_id} is already {status}; message ignored"));
                if cancelled(status) && stage == Stage::Build && execution.delivery > 1 {
                    // An earlier delivery may have started a worker and died
                    // before recording it: it builds for a cancelled run.
                    stop_workers_of_message(app, run_id, &execution, &mut response).await?;
                }
                return Ok(response);
            }
            Err(UpdateError::Refused(e)) => {
                // Out of order: an earlier stage has not finished. Retrying
                // lets it finish; after the last delivery the message is
                // dead-lettered and the run is failed with this reason.
                return Err(InvocationError::Failed(e.to_string()));
            }
            Err(e) => return Err(retry(&format!("cannot start {stage} of run {run_id}"), e)),
        };
        let record = run.stage(stage);
        let mine = record.status == StageStatus::Running
            && record.current_attempt().map(|a| &a.execution) == Some(&execution);
        if !mine {
            response.log(format!(
                "{stage} of run {run_id} is {:?} under another delivery; nothing to do",
                record.status
            ));
            dispatch_follow_up(&mut response, &run);
            return Ok(response);
        }

        tracing::info!("stage started");
        let event = match app.execute_stage(&run, stage).await {
            StageResult::Succeeded(output) => Event::StageSucceeded {
                stage,
                execution: execution.clone(),
                at: app.now(),
                output,
            },
            StageResult::Failed(reason) => {
                tracing::warn!(%reason, "stage failed");
                Event::StageFailed {
                    stage,
                    execution: execution.clone(),
                    at: app.now(),
                    reason,
                }
            }
            StageResult::AwaitApproval(request) => Event::ApprovalRequested {
                execution: execution.clone(),
                at: app.now(),
                request,
            },
            StageResult::Dispatched(worker) => {
                tracing::info!(execution = %worker.execution, "build worker started");
                Event::BuildDispatched {
                    execution: execution.clone(),
                    at: app.now(),
                    worker,
                }
            }
            StageResult::PatchGate(record) => {
                tracing::warn!(summary = %record.summary(), "patch gate");
                Event::PatchChecked {
                    execution: execution.clone(),
                    at: app.now(),
                    record,
                }
            }
            StageResult::DeclarationFailed {
                checks,
                patch,
                record,
            } => {
                tracing::warn!(summary = %record.summary(), "declaration checks failed");
                Event::DeclarationFailed {
                    execution: execution.clone(),
                    at: app.now(),
                    checks,
                    patch,
                    record,
                }
            }
            StageResult::Retry(reason) => {
                return Err(InvocationError::Failed(format!(
                    "{stage} of run {run_id} will be retried: {reason}"
                )));
            }
        };
        match update_run_from(app.store.as_ref(), run_id, Some(held), |run| {
            decide(run, &event)
        })
        .await
        .map(|u| u.transition)
        {
            Ok(t) => {
                response.log(format!(
                    "{stage} of run {run_id}: {:?}",
                    t.run.stage(stage).status
                ));
                dispatch(&mut response, run_id, &t.commands);
                if t.run.status == RunStatus::Failed
                    && crate::domain::pause::is_scheduled(t.run.trigger.kind)
                {
                    // Whether this failure paused the image's scheduled
                    // runs, beside the outcome (the sweeper checks what a
                    // crash missed).
                    let (checker, failed) = (app.clone(), t.run.clone());
                    tokio::spawn(async move { checker.check_schedule(&failed).await });
                }
                if t.run.status == RunStatus::Released {
                    start_children(app, &t.run, &mut response).await;
                    // The tag never holds up the outcome: it runs beside it.
                    let (tagger, released, now) = (app.clone(), t.run.clone(), app.now());
                    tokio::spawn(async move { tagger.tag_release(&released, now).await });
                }
                // The run ended: deliver what it owes (release events), after
                // the write that ended it, never holding up this outcome.
                if t.run.follow_ups_due.is_some() {
                    crate::followups::spawn_delivery(
                        app.follow_ups.clone(),
                        app.store.clone(),
                        run_id.clone(),
                        app.now(),
                    );
                }
                Ok(response)
            }
            Err(UpdateError::Refused(e)) => {
                // Superseded by a newer delivery, or the run ended meanwhile.
                response.log(format!(
                    "result of {stage} for run {run_id} not recorded: {e}"
                ));
                if let (
                    TransitionError::RunFinished { status, .. },
                    Event::BuildDispatched { worker, .. },
                    Some(workers),
                ) = (&e, &event, app.workers.as_deref())
                    && cancelled(*status)
                {
                    // The run was cancelled while this delivery started its
                    // worker: it is this delivery's to stop.
                    match crate::cancel::stop_worker(workers, worker).await {
                        Ok(done) => response.log(done.unwrap_or_else(|| {
                            format!("build worker {} had ended", worker.execution)
                        })),
                        Err(e) => {
                            return Err(retry(
                                &format!(
                                    "cannot stop build worker {} of cancelled run {run_id}",
                                    worker.execution
                                ),
                                e,
                            ));
                        }
                    }
                }
                Ok(response)
            }
            Err(e) => Err(retry(&format!("cannot record {stage} of run {run_id}"), e)),
        }
    }
}

/// Whether a run in `status` was cancelled (or is being cancelled).
fn cancelled(status: RunStatus) -> bool {
    matches!(status, RunStatus::Cancelling | RunStatus::Cancelled)
}

/// Stops the build workers the stage message of `execution` started for
/// run `run_id`, cancelled; a failure leaves the message to be delivered
/// again.
async fn stop_workers_of_message(
    app: &App,
    run_id: &RunId,
    execution: &Execution,
    response: &mut InvocationResponse,
) -> Result<(), InvocationError> {
    let Some(workers) = app.workers.as_deref() else {
        return Ok(());
    };
    match crate::cancel::stop_workers_of_message(workers, run_id, &execution.message_id).await {
        Ok(stopped) => {
            for line in stopped {
                tracing::info!(run_id = %run_id, "{line}");
                response.log(line);
            }
            Ok(())
        }
        Err(e) => Err(retry(
            &format!("cannot stop the build workers of cancelled run {run_id}"),
            e,
        )),
    }
}

/// Starts the runs of the images built on `parent`, just released, and
/// dispatches their first stage. A failure is logged: the sweeper starts
/// what is missing from each image's latest release (the ids are the same).
pub(super) async fn start_children(app: &App, parent: &Run, response: &mut InvocationResponse) {
    for started in app.start_children(parent).await {
        match started {
            Ok(created) => {
                response.log(format!(
                    "{} {} released: run {} of {}",
                    parent.image,
                    parent.version,
                    created.run().id,
                    created.run().image
                ));
                dispatch_follow_up(response, created.run());
            }
            Err(e) => {
                tracing::warn!(run_id = %parent.id, error = %e, "cannot start a child image's run; the sweeper will");
                response.log(format!("a child image's run was not started: {e}"));
            }
        }
    }
}
