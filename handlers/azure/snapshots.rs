//! Source snapshots in a Blob Storage container (`sources`), the snapshot
//! store of the Azure path: each snapshot is the block blob `<sha256>.tar`,
//! written by the function app when a run is created and read by the build
//! worker, both with their Entra ID identity (no keys, no SAS), through the
//! same SDK client options and transport as the build logs
//! ([`super::blob::client_options`]).
//!
//! A put always writes the whole blob (an upload replaces what was there in
//! one step): storing an id again changes nothing a reader can see when the
//! stored bytes were right, and repairs them when they were not (a blob
//! changed behind the factory's back fails its run as tampered with; the
//! next run's snapshot writes it afresh). A get reads at most one byte more
//! than the largest snapshot the limits allow, and refuses a larger blob,
//! so a planted blob cannot fill the reader's memory; its hash is checked
//! by the caller (`crate::sources::verify`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{RequestContent, StatusCode, Url};
use azure_storage_blob::clients::{BlobContainerClient, BlobContainerClientOptions};
use azure_storage_blob::models::{BlobClientDownloadOptions, BlockBlobClientUploadOptions};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::blob::{BlobError, check_container_url, client_options};
use crate::domain::source::SnapshotId;
use crate::ports::PortError;
use crate::ports::sources::{SnapshotStore, StoredSnapshot};

/// The container's name the infrastructure creates (`infra/modules/logs.bicep`).
pub const CONTAINER: &str = "sources";

/// Snapshots kept as blobs of one container.
pub struct BlobSnapshots {
    container: BlobContainerClient,
    url: String,
    max_bytes: u64,
}

impl std::fmt::Debug for BlobSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSnapshots")
            .field("url", &self.url)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl BlobSnapshots {
    /// Snapshots in the container at `container_url` (https, no query),
    /// signed in with `credential`; `extra_root` is a PEM file of CA
    /// certificates to trust besides the usual ones (a storage emulator's),
    /// if any. A blob larger than `max_bytes` is refused when read.
    pub fn new(
        container_url: &str,
        credential: Arc<dyn TokenCredential>,
        extra_root: Option<&Path>,
        max_bytes: u64,
    ) -> Result<BlobSnapshots, BlobError> {
        check_container_url(container_url)
            .map_err(|why| BlobError::Url(format!("{container_url} {why}")))?;
        let url = container_url.trim_end_matches('/').to_string();
        let parsed = Url::parse(&url).map_err(|e| BlobError::Url(e.to_string()))?;
        let options = BlobContainerClientOptions {
            client_options: client_options(extra_root)?,
            ..BlobContainerClientOptions::default()
        };
        let container = BlobContainerClient::new(parsed, Some(credential), Some(options))
            .map_err(|e| BlobError::Url(e.to_string()))?;
        Ok(BlobSnapshots {
            container,
            url,
            max_bytes,
        })
    }

    /// The blob's name of snapshot `id`.
    pub fn blob_name(id: &SnapshotId) -> String {
        format!("{id}.tar")
    }

    /// The URL of snapshot `id`'s blob.
    pub fn url_of(&self, id: &SnapshotId) -> String {
        format!("{}/{}", self.url, Self::blob_name(id))
    }

    /// A failure of `doing` as the port's error: refused or denied
    /// identities and other 4xx answers are permanent, with the role to
    /// grant; the rest (5xx, throttling, no answer, no token) transient.
    fn failed(&self, doing: &str, error: azure_core::Error) -> PortError {
        let error = BlobError::from_sdk(error);
        let message = match &error {
            BlobError::Denied { .. } => format!(
                "{doing}: {error}; the sources container ({}) needs Storage Blob Data Contributor for the function app's identity and Storage Blob Data Reader for the build worker's",
                self.url
            ),
            _ => format!("{doing} in {}: {error}", self.url),
        };
        let transient = match &error {
            BlobError::Refused { .. } | BlobError::Denied { .. } => false,
            BlobError::Failed { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => true,
        };
        PortError { message, transient }
    }
}

#[async_trait]
impl SnapshotStore for BlobSnapshots {
    async fn put(&self, id: &SnapshotId, bytes: Vec<u8>) -> Result<(), PortError> {
        let options = BlockBlobClientUploadOptions {
            blob_content_type: Some("application/x-tar".into()),
            ..BlockBlobClientUploadOptions::default()
        };
        self.container
            .blob_client(&Self::blob_name(id))
            .block_blob_client()
            .upload(RequestContent::from(bytes), Some(options))
            .await
            .map(|_| ())
            .map_err(|e| self.failed(&format!("cannot store the snapshot {id}"), e))
    }

    async fn get(&self, id: &SnapshotId) -> Result<Vec<u8>, PortError> {
        let blob = self.container.blob_client(&Self::blob_name(id));
        let doing = format!("cannot read the snapshot {id}");
        // At most one byte more than the largest snapshot: a larger blob
        // is refused without being read whole.
        let options = BlobClientDownloadOptions {
            range: Some((0..self.max_bytes.saturating_add(1)).into()),
            ..BlobClientDownloadOptions::default()
        };
        let body = match blob.download(Some(options)).await {
            Ok(download) => download
                .body
                .collect()
                .await
                .map_err(|e| self.failed(&doing, e))?,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => {
                return Err(PortError::permanent(format!(
                    "the snapshot {id} is not stored in {}: it was pruned or never stored; start a new run",
                    self.url
                )));
            }
            Err(e) => return Err(self.failed(&doing, e)),
        };
        if body.len() as u64 > self.max_bytes {
            return Err(PortError::permanent(format!(
                "the stored snapshot {id} is larger than any snapshot within the limits ({} bytes): it is tampered with or corrupt; start a new run",
                self.max_bytes
            )));
        }
        Ok(body.to_vec())
    }

    async fn list(&self) -> Result<Vec<StoredSnapshot>, PortError> {
        let doing = "cannot list the snapshots";
        let mut pages = self
            .container
            .list_blobs(None)
            .map_err(|e| self.failed(doing, e))?
            .into_pages();
        let mut found = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(|e| self.failed(doing, e))? {
            let page = page.into_model().map_err(|e| self.failed(doing, e))?;
            for blob in page.blob_items {
                let Some(id) = blob
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_suffix(".tar"))
                    .and_then(|h| h.parse::<SnapshotId>().ok())
                else {
                    continue;
                };
                let stored_at = blob
                    .properties
                    .and_then(|p| p.last_modified)
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.unix_timestamp(), 0))
                    .unwrap_or_else(Utc::now);
                found.push(StoredSnapshot { id, stored_at });
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    async fn delete(&self, id: &SnapshotId) -> Result<(), PortError> {
        match self
            .container
            .blob_client(&Self::blob_name(id))
            .delete(None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(self.failed(&format!("cannot remove the snapshot {id}"), e)),
        }
    }
}
