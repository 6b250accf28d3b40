//! Build logs to Azure Blob Storage, from the build worker: the log file is
//! sent in 4 MiB blocks (Put Block) and committed with Put Block List, so a
//! log of any size is uploaded with constant memory, and a retried upload
//! writes the same block ids again instead of a second blob. Tokens come from
//! the worker's managed identity (scope `https://storage.azure.com/.default`);
//! no account keys. Shapes: the Blob service REST reference, "Put Block" and
//! "Put Block List" (x-ms-version 2024-11-04).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use base64::Engine;
use tokio::io::AsyncReadExt;

use crate::worker::LogUploader;

/// The Blob service version the factory speaks.
pub const BLOB_API: &str = "2024-11-04";

/// The token scope of Blob Storage.
pub const SCOPE: &str = "https://storage.azure.com/.default";

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// Checks a container URL setting: https (http only to this machine, for
/// tests and the storage emulator), with a container and no query (a SAS in
/// the URL would be a key in configuration).
pub fn check_container_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err("must be an https URL".into());
    }
    if parsed.query().is_some() {
        return Err("must not carry a query (no SAS: the identity signs in)".into());
    }
    if parsed.path().trim_matches('/').is_empty() {
        return Err(
            "must name a container (https://<account>.blob.core.windows.net/<container>)".into(),
        );
    }
    Ok(())
}

/// Uploads logs with the worker's Entra ID identity.
#[derive(Clone, Debug)]
pub struct BlobLogs {
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
}

impl BlobLogs {
    /// An uploader signing in with `credential`.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Result<BlobLogs, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(BlobLogs { http, credential })
    }

    async fn put(
        &self,
        url: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(), String> {
        let token = self
            .credential
            .get_token(&[SCOPE], None)
            .await
            .map_err(|e| format!("no Blob Storage token: {e}"))?;
        let mut request = self
            .http
            .put(url)
            .query(query)
            .bearer_auth(token.token.secret())
            .header("x-ms-version", BLOB_API)
            .header("x-ms-date", httpdate(chrono::Utc::now()))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("Blob Storage did not answer: {}", e.without_url()))?;
        let status = response.status();
        if status.as_u16() == 201 {
            return Ok(());
        }
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no error code")
            .to_string();
        Err(format!("Blob Storage answered {status} ({code})"))
    }
}

/// The id of block `index`: the same for every upload of the same log, all
/// of one length as the service requires.
pub fn block_id(index: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("block-{index:08}"))
}

fn httpdate(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[async_trait]
impl LogUploader for BlobLogs {
    async fn upload(&self, path: &Path, url: &str) -> Result<(), String> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut ids = Vec::new();
        loop {
            let mut block = Vec::with_capacity(BLOCK_SIZE);
            (&mut file)
                .take(BLOCK_SIZE as u64)
                .read_to_end(&mut block)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if block.is_empty() {
                break;
            }
            let id = block_id(ids.len());
            self.put(url, &[("comp", "block"), ("blockid", &id)], &[], block)
                .await?;
            ids.push(id);
        }
        let mut list = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in &ids {
            list.push_str("<Latest>");
            list.push_str(id);
            list.push_str("</Latest>");
        }
        list.push_str("</BlockList>");
        self.put(
            url,
            &[("comp", "blocklist")],
            &[
                ("x-ms-blob-content-type", "text/plain; charset=utf-8"),
                ("Content-Type", "application/xml"),
            ],
            list.into_bytes(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_stable_and_of_one_length() {
        assert_eq!(block_id(3), block_id(3));
        assert_ne!(block_id(3), block_id(4));
        assert_eq!(block_id(0).len(), block_id(49_999).len());
    }

    #[test]
    fn a_container_url_is_https_with_a_container_and_no_key() {
        assert!(check_container_url("https://acct.blob.core.windows.net/build-logs").is_ok());
        assert!(check_container_url("http://127.0.0.1:10000/devstoreaccount1/logs").is_ok());
        for bad in [
            "http://acct.blob.core.windows.net/build-logs",
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/logs?sv=2024&sig=abc",
            "not a url",
        ] {
            assert!(check_container_url(bad).is_err(), "{bad}");
        }
    }
}
