//! The ports: one trait per outside system the stages and functions touch.
//!
//! Each port imports only `domain`; its adapters live by system in `azure/`
//! (production), `local/` (one machine) and `web/` (plain HTTPS peers), and
//! only the composition root (`startup`) picks an adapter. A port's error
//! says what happened and whether trying again may help ([`PortError`]),
//! never which adapter failed how.

pub mod clock;
pub mod events;
pub mod executor;
pub mod gallery;
pub mod git;
pub mod leftovers;
pub mod logs;
pub mod marketplace;
pub mod notifier;
pub mod security_updates;
pub mod sources;
pub mod store;
pub mod test_env;
pub mod workers;

/// Why an outside system did not do what was asked: what happened, and
/// whether the same call may succeed later (throttling, a server error, a
/// broken connection) or not (refused, missing, misconfigured).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    /// What happened, and what to do about it.
    pub message: String,
    /// True when trying again later may succeed.
    pub transient: bool,
}

impl PortError {
    /// A failure that trying again later may cure.
    pub fn transient(message: impl Into<String>) -> PortError {
        PortError {
            message: message.into(),
            transient: true,
        }
    }

    /// A failure that trying again will not cure.
    pub fn permanent(message: impl Into<String>) -> PortError {
        PortError {
            message: message.into(),
            transient: false,
        }
    }

    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The same failure, its message prefixed with what was being done.
    pub fn context(self, doing: &str) -> PortError {
        PortError {
            message: format!("{doing}: {}", self.message),
            ..self
        }
    }
}
