//! The local Marketplace: the Marketplace port on one machine, a file the
//! operator edits (`<data>/marketplace.toml`). Each table names a base
//! image as `image.toml`'s `[base_image]` does and lists its versions:
//!
//! ```toml
//! [[image]]
//! publisher = "MicrosoftWindowsServer"
//! offer = "WindowsServer"
//! sku = "2022-datacenter-azure-edition"
//! versions = ["20348.2849.241106", "20348.2966.241205"]
//! ```
//!
//! Adding a version and letting the `base-image` timer fire (or
//! `image-factory trigger base-image`) starts the run of every image built
//! on that base, as a new Marketplace version does on Azure. The location is
//! not compared: one machine has one catalogue. A missing file lists nothing.

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;

use crate::domain::image::BaseImage;
use crate::ports::PortError;
use crate::ports::marketplace::MarketplaceImages;

/// The file name in the data folder.
pub const MARKETPLACE_FILE: &str = "marketplace.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    #[serde(default)]
    image: Vec<Listed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listed {
    publisher: String,
    offer: String,
    sku: String,
    #[serde(default)]
    versions: Vec<String>,
}

/// Base image versions listed in a file.
#[derive(Clone, Debug)]
pub struct LocalMarketplace {
    file: PathBuf,
}

impl LocalMarketplace {
    /// The catalogue in `file`.
    pub fn new(file: PathBuf) -> LocalMarketplace {
        LocalMarketplace { file }
    }
}

#[async_trait]
impl MarketplaceImages for LocalMarketplace {
    async fn versions(&self, base: &BaseImage) -> Result<Vec<String>, PortError> {
        let text = match tokio::fs::read_to_string(&self.file).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(PortError::transient(format!(
                    "cannot read {}: {e}",
                    self.file.display()
                )));
            }
        };
        let catalogue: Catalogue = toml::from_str(&text).map_err(|e| {
            PortError::permanent(format!(
                "{} is not a Marketplace file: {e}",
                self.file.display()
            ))
        })?;
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        Ok(catalogue
            .image
            .into_iter()
            .filter(|l| {
                same(&l.publisher, &base.publisher)
                    && same(&l.offer, &base.offer)
                    && same(&l.sku, &base.sku)
            })
            .flat_map(|l| l.versions)
            .collect())
    }
}
