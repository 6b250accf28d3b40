//! The security data port: Microsoft's monthly security updates, one CVRF
//! document per month, read into [`CvrfDocument`] for the patch rules
//! (`domain::patch`). Adapter: `web::msrc`, the Security Update Guide API
//! (CVRF v3.0) with a cache of the documents, or a folder of documents for
//! machines without internet.
//!
//! A transient error (the API unreachable, a 5xx, a timeout) may pass by
//! itself: the caller waits and asks again. A permanent one will not: a
//! month Microsoft has not published, a document that is not CVRF, a
//! missing file in the folder.

use async_trait::async_trait;

use super::PortError;
use crate::domain::cvrf::{CvrfDocument, MonthId};

/// Reads Microsoft's monthly security data.
#[async_trait]
pub trait SecurityUpdates: Send + Sync + 'static {
    /// The newest month published (the one released last), as last revised.
    async fn newest(&self) -> Result<CvrfDocument, PortError>;

    /// The month `id`, as last revised; a month not published is a
    /// permanent error.
    async fn month(&self, id: MonthId) -> Result<CvrfDocument, PortError>;
}
