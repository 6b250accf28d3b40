//! What every function shares about its invocation: the names of the
//! trigger bindings it decodes, and how an invocation fails
//! ([`InvocationError`]).

use crate::protocol::ProtocolError;

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
