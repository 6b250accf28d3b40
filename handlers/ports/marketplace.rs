//! The Marketplace port: which versions of a base image exist, so the
//! `base-image` timer can start a run when a new one appears. Resource
//! Manager on Azure (`azure::compute`), a file locally (`local::marketplace`).

use async_trait::async_trait;

use super::PortError;
use crate::domain::image::BaseImage;

/// Lists base image versions.
#[async_trait]
pub trait MarketplaceImages: Send + Sync + 'static {
    /// Every published version of `base`, in any order.
    async fn versions(&self, base: &BaseImage) -> Result<Vec<String>, PortError>;
}
