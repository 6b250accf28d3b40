//! What a stage body did: [`StageResult`].

use crate::domain::approval::ApprovalRequest;
use crate::domain::declaration::DeclarationRecord;
use crate::domain::patch_gate::PatchRecord;
use crate::domain::run::{StageOutput, WorkerRef};

/// What a stage body did.
#[derive(Debug)]
pub enum StageResult {
    /// It finished well.
    Succeeded(StageOutput),
    /// It failed; the run stops with this reason.
    Failed(String),
    /// The approve stage sent its requests.
    AwaitApproval(ApprovalRequest),
    /// The build stage started a worker off the host; its report finishes the stage.
    Dispatched(WorkerRef),
    /// It could not run now; the message should be delivered again.
    Retry(String),
    /// The test stage's patch gate stopped the run before the smoke test:
    /// it failed, or waits for Microsoft's data (the sweeper dispatches the
    /// stage again).
    PatchGate(Box<PatchRecord>),
    /// The test stage's declaration checks failed after a passed smoke
    /// test: the run fails, with what was checked recorded.
    DeclarationFailed {
        /// The smoke test's checks.
        checks: Vec<String>,
        /// The patch gate's record, for an image with `[patch]`.
        patch: Option<Box<PatchRecord>>,
        /// The declaration checks.
        record: Box<DeclarationRecord>,
    },
}
