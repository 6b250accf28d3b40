//! What a stage body did: [`StageResult`].

use crate::domain::approval::ApprovalRequest;
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
}
