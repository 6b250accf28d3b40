//! `dead-letter-<queue>`: a message that Service Bus gave up on. Each queue's
//! dead-letter sub-queue (`<queue>/$DeadLetterQueue`) triggers a function of
//! its own ([`super::DEAD_LETTER_FUNCTIONS`]), all of them this one: it marks
//! the message's run failed with the dead-letter reason, so a run is never
//! left "running" after its message is gone. Nothing is forwarded between
//! queues, so the Basic tier of Service Bus serves (docs/costs.md).

use super::invocation::{InvocationError, MESSAGE_BINDING, retry};
use crate::app::{App, StageMessage};
use crate::domain::machine::{Event, TransitionError, decide};
use crate::ports::store::{StoreError, UpdateError, update_run};
use crate::protocol::{InvocationRequest, InvocationResponse};

/// A dead-lettered stage message.
#[derive(Debug)]
pub struct DeadLetter {
    message: Option<StageMessage>,
    body: String,
    reason: String,
}

impl DeadLetter {
    /// Decodes the message; a body that is not a stage message is kept for the log.
    pub fn parse(request: &InvocationRequest) -> Result<DeadLetter, InvocationError> {
        let body = request.data_value(MESSAGE_BINDING)?;
        let properties = request
            .metadata_object("ApplicationProperties")
            .unwrap_or_default();
        let text = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (reason, description) = (text("DeadLetterReason"), text("DeadLetterErrorDescription"));
        let delivery = request
            .metadata_u32("DeliveryCount")
            .map(|n| format!(" after {n} deliveries"))
            .unwrap_or_default();
        let reason = match (reason.is_empty(), description.is_empty()) {
            (true, _) => format!("the stage message was dead-lettered{delivery}"),
            (false, true) => format!("the stage message was dead-lettered{delivery}: {reason}"),
            (false, false) => {
                format!("the stage message was dead-lettered{delivery}: {reason}: {description}")
            }
        };
        Ok(DeadLetter {
            message: serde_json::from_value(body.clone()).ok(),
            body: body.to_string(),
            reason,
        })
    }

    /// Fails the message's run.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let mut response = InvocationResponse::default();
        let Some(message) = self.message else {
            tracing::error!(body = %self.body, reason = %self.reason, "dead-lettered message is not a stage message");
            response.log(format!("not a stage message, dropped: {}", self.body));
            return Ok(response);
        };
        let event = Event::DeadLettered {
            stage: message.stage,
            at: app.now(),
            reason: self.reason.clone(),
        };
        match update_run(app.store.as_ref(), &message.run_id, |run| {
            decide(run, &event)
        })
        .await
        {
            Ok(t) if t.changed => {
                tracing::warn!(run_id = %message.run_id, stage = %message.stage, reason = %self.reason, "run failed: message dead-lettered");
                response.log(format!("run {} failed: {}", message.run_id, self.reason));
            }
            Ok(_) | Err(UpdateError::Refused(TransitionError::RunFinished { .. })) => {
                response.log(format!("run {} was not affected", message.run_id));
            }
            Err(UpdateError::Store(StoreError::NotFound { .. })) => {
                response.log(format!("dead letter for unknown run {}", message.run_id));
            }
            Err(e) => return Err(retry("cannot record the dead letter", e)),
        }
        Ok(response)
    }
}
