//! What every function shares about its invocation: the names of the
//! trigger bindings it decodes, and how an invocation fails
//! ([`InvocationError`]).

use crate::protocol::{InvocationResponse, ProtocolError};

/// The name of the Service Bus trigger binding in every stage function.
pub const MESSAGE_BINDING: &str = "message";
/// The name of the timer trigger binding in every timer function.
pub const TIMER_BINDING: &str = "timer";

/// Why an invocation failed. Every variant makes the handler answer non-2xx,
/// so the host fails the invocation (and Service Bus redelivers the message).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// No function of that name.
    #[error("there is no function named `{0}`")]
    UnknownFunction(String),
    /// The invocation's payload is not what the function expects.
    #[error(transparent)]
    Malformed(#[from] ProtocolError),
    /// The function could not do its work now; retrying may help.
    #[error("{0}")]
    Failed(String),
}

impl InvocationError {
    /// The status the handler answers the host with.
    pub fn status(&self) -> u16 {
        match self {
            InvocationError::UnknownFunction(_) => 404,
            InvocationError::Malformed(_) => 400,
            InvocationError::Failed(_) => 500,
        }
    }
}

/// Turns a store failure into a retryable invocation failure.
pub(super) fn retry(context: &str, e: impl std::fmt::Display) -> InvocationError {
    InvocationError::Failed(format!("{context}: {e}"))
}

/// The answer of a timer that works image by image, given what failed
/// (one line per image). The messages of the runs it created go out with a
/// successful answer whatever failed for other images (a failed invocation
/// would send none); a firing that failed and has nothing to send fails, so
/// the failure shows as a failed execution. Either way the next firing tries
/// again.
pub(super) fn per_image(
    mut response: InvocationResponse,
    failures: Vec<String>,
) -> Result<InvocationResponse, InvocationError> {
    if !failures.is_empty() && response.outputs.is_empty() {
        return Err(InvocationError::Failed(failures.join("; ")));
    }
    for failure in failures {
        tracing::warn!(%failure, "an image was passed over; the next firing tries again");
        response.log(format!("{failure}; the next firing tries again"));
    }
    Ok(response)
}
