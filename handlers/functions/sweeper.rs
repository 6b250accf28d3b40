//! `sweeper` (timer, every five minutes): finds runs that stopped moving and
//! moves them. A run waiting past its approval deadline ends
//! `approval-expired`; a run whose next stage was never started (its message
//! was lost between the store write and the send) gets the message again.
//! Stages that are running are left to Service Bus: lock expiry redelivers
//! them and the dead-letter queue ends them.

use chrono::Duration;

use super::InvocationError;
use crate::app::{App, dispatch};
use crate::domain::machine::{Event, decide, follow_up};
use crate::domain::run::RunStatus;
use crate::protocol::{InvocationRequest, InvocationResponse};
use crate::store::{RunQuery, UpdateError, update_run};

/// How long a stage may sit undispatched before the sweeper sends it again.
const STALL: Duration = Duration::minutes(10);

/// A sweeper firing.
#[derive(Debug)]
pub struct Sweeper;

impl Sweeper {
    /// Decodes the timer invocation (its payload carries nothing needed).
    pub fn parse(_request: &InvocationRequest) -> Result<Sweeper, InvocationError> {
        Ok(Sweeper)
    }

    /// Sweeps every active run.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let mut query = RunQuery::active();
        loop {
            let page = app
                .store
                .list(&query)
                .await
                .map_err(|e| super::retry("cannot list active runs", e))?;
            for run in &page.runs {
                let now = app.now();
                let expired = run.status == RunStatus::WaitingForApproval
                    && run.approval.as_ref().is_some_and(|r| now >= r.expires_at);
                if expired {
                    let event = Event::ApprovalExpired { at: now };
                    match update_run(app.store.as_ref(), &run.id, |r| decide(r, &event)).await {
                        Ok(_) | Err(UpdateError::Refused(_)) => {
                            response.log(format!("run {}: approval expired", run.id));
                        }
                        Err(e) => return Err(super::retry("cannot expire an approval", e)),
                    }
                } else if now - run.updated_at >= STALL {
                    let commands = follow_up(run);
                    if !commands.is_empty() {
                        response.log(format!(
                            "run {}: dispatching its stalled stage again",
                            run.id
                        ));
                        dispatch(&mut response, &run.id, &commands);
                    }
                }
            }
            match page.continuation {
                Some(c) => query.continuation = Some(c),
                None => break,
            }
        }
        Ok(response)
    }
}
