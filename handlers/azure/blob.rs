//! Build logs (and the patch evidence beside them) to Azure Blob Storage, from the build worker, through the Azure
//! SDK's blob client (`azure_storage_blob`): the log file is staged in 4 MiB
//! blocks (`stage_block`, read one block at a time) and committed with
//! `commit_block_list`, so a log of any size is uploaded with constant memory,
//! and a retried upload stages the same block ids again instead of a second
//! blob. Tokens come from the worker's managed identity (the SDK asks for the
//! scope `https://storage.azure.com/.default`); no account keys. The SDK sends
//! through this crate's reqwest client, which may trust one more root
//! certificate (a storage emulator's or a proxy's) on top of the usual ones.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, StatusCode, Transport, Url};
use azure_storage_blob::StorageError;
use azure_storage_blob::clients::{BlockBlobClient, BlockBlobClientOptions};
use azure_storage_blob::models::{BlockBlobClientCommitBlockListOptions, BlockLookupList};
use tokio::io::AsyncReadExt;

use crate::domain::run::RunId;
use crate::ports::PortError;
use crate::ports::logs::LogStore;

/// Bytes per block.
pub const BLOCK_SIZE: usize = 4 * 1024 * 1024;

/// Why a log could not be uploaded. No variant carries a token.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The extra root certificate could not be used.
    #[error(
        "the extra root certificate {path} cannot be used ({message}): give a PEM file of CA certificates"
    )]
    Certificate {
        /// The file.
        path: String,
        /// What was wrong with it.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client for Blob Storage: {0}")]
    Client(String),
    /// The log's URL is not a blob URL.
    #[error("the log's URL is not a blob URL ({0})")]
    Url(String),
    /// The local log could not be read.
    #[error("cannot read the build log {path}: {message}")]
    Read {
        /// The local file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The worker's identity gave no token.
    #[error(
        "no Blob Storage token from the worker's identity ({0}): check the job's managed identity"
    )]
    Credential(String),
    /// Blob Storage did not accept the token (401, or its error code says
    /// authentication failed): expired, for another audience, unsigned, or
    /// empty.
    #[error(
        "Blob Storage refused the worker's token ({status}{code}{detail}): the identity endpoint must issue a current token for https://storage.azure.com"
    )]
    Refused {
        /// The HTTP status.
        status: u16,
        /// `: <x-ms-error-code>`, if any.
        code: String,
        /// `; <the service's message and authentication detail>`, if any.
        detail: String,
    },
    /// The token was accepted but the identity may not write there (403
    /// without an authentication failure: no role on the container).
    #[error(
        "Blob Storage denied the worker's identity ({status}{code}{detail}): grant it Storage Blob Data Contributor on the logs' container"
    )]
    Denied {
        /// The HTTP status.
        status: u16,
        /// `: <x-ms-error-code>`, if any.
        code: String,
        /// `; <the service's message>`, if any.
        detail: String,
    },
    /// Any other answer.
    #[error("Blob Storage answered {status}{code}{detail}")]
    Failed {
        /// The HTTP status.
        status: u16,
        /// `: <x-ms-error-code>`, if any.
        code: String,
        /// `; <the service's message>`, if any.
        detail: String,
    },
    /// No answer.
    #[error("Blob Storage did not answer: {0}")]
    Transport(String),
}

impl BlobError {
    /// Reads an SDK error: the service's status, code and message, or the
    /// credential's or the connection's failure. A refused bearer token is
    /// answered 401 `InvalidAuthenticationInfo` (with a `WWW-Authenticate`
    /// challenge) by current service versions and 403 `AuthenticationFailed`
    /// by older ones and by Azurite, both with an `AuthenticationErrorDetail`
    /// such as "Lifetime validation failed. The token is expired.".
    pub(super) fn from_sdk(error: azure_core::Error) -> BlobError {
        match error.kind() {
            ErrorKind::HttpResponse { .. } => {}
            ErrorKind::Credential => return BlobError::Credential(causes(&error)),
            _ => return BlobError::Transport(causes(&error)),
        }
        let storage = match StorageError::try_from(error) {
            Ok(storage) => storage,
            Err(other) => return BlobError::Transport(causes(&other)),
        };
        let status = u16::from(storage.status_code);
        let code_name = storage.error_code.map(|c| c.to_string());
        let code = code_name
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default();
        // The message's first line (the service adds its request id and time
        // on the next ones), then the authentication detail, if any.
        let message = storage
            .message
            .and_then(|m| m.lines().next().map(str::to_string));
        let said: Vec<String> = [message, storage.authentication_error_detail]
            .into_iter()
            .flatten()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let detail = if said.is_empty() {
            String::new()
        } else {
            format!("; {}", said.join(" "))
        };
        let refused = storage.status_code == StatusCode::Unauthorized
            || matches!(
                code_name.as_deref(),
                Some(
                    "AuthenticationFailed"
                        | "InvalidAuthenticationInfo"
                        | "NoAuthenticationInformation"
                )
            );
        match storage.status_code {
            _ if refused => BlobError::Refused {
                status,
                code,
                detail,
            },
            StatusCode::Forbidden => BlobError::Denied {
                status,
                code,
                detail,
            },
            _ => BlobError::Failed {
                status,
                code,
                detail,
            },
        }
    }
}

/// An error and its causes, outermost first (the SDK's "retry policy
/// expired" wraps the connection's own failure).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Checks a container URL setting: https (the SDK sends tokens over https
/// only), with a container and no query (a SAS in the URL would be a key in
/// configuration).
pub fn check_container_url(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    if parsed.scheme() != "https" {
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

/// The SDK's client options of every Blob Storage client of the factory:
/// its requests go through this crate's reqwest client (120 s per request),
/// which trusts `extra_root` (a PEM file of CA certificates: a storage
/// emulator's own certificate) besides the usual roots, if given.
pub(super) fn client_options(extra_root: Option<&Path>) -> Result<ClientOptions, BlobError> {
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120));
    if let Some(path) = extra_root {
        let certificate = |message: String| BlobError::Certificate {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| certificate(e.to_string()))?;
        let roots =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| certificate(e.to_string()))?;
        if roots.is_empty() {
            return Err(certificate("no certificate in it".into()));
        }
        http = http.tls_certs_merge(roots);
    }
    let http = http.build().map_err(|e| BlobError::Client(e.to_string()))?;
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        ..ClientOptions::default()
    })
}

/// Keeps build logs in a Blob Storage container, signed in with the
/// factory's (or the worker's) Entra ID identity.
#[derive(Clone, Debug)]
pub struct BlobLogs {
    options: BlockBlobClientOptions,
    credential: Arc<dyn TokenCredential>,
    container_url: String,
}

impl BlobLogs {
    /// Logs in the container at `container_url`, signing in with
    /// `credential`; `extra_root` is a PEM file of CA certificates to trust
    /// besides the usual roots (a storage emulator's own certificate), if any.
    pub fn new(
        container_url: &str,
        credential: Arc<dyn TokenCredential>,
        extra_root: Option<&Path>,
    ) -> Result<BlobLogs, BlobError> {
        let options = BlockBlobClientOptions {
            client_options: client_options(extra_root)?,
            ..BlockBlobClientOptions::default()
        };
        Ok(BlobLogs {
            options,
            credential,
            container_url: container_url.trim_end_matches('/').to_string(),
        })
    }

    /// Uploads the file at `path` to the block blob at `url`.
    pub async fn upload_file(&self, path: &Path, url: &str) -> Result<(), BlobError> {
        let url = Url::parse(url).map_err(|e| BlobError::Url(e.to_string()))?;
        // Logs are text; the patch evidence beside one is JSON; a boot
        // diagnostics screenshot is a bitmap.
        let content_type = if url.path().ends_with(".json") {
            "application/json"
        } else if url.path().ends_with(".bmp") {
            "image/bmp"
        } else {
            "text/plain; charset=utf-8"
        };
        let client = BlockBlobClient::new(
            url,
            Some(self.credential.clone()),
            Some(self.options.clone()),
        )
        .map_err(|e| BlobError::Url(e.to_string()))?;
        let read = |e: std::io::Error| BlobError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read)?;
        let mut ids = Vec::new();
        loop {
            let mut block = Vec::with_capacity(BLOCK_SIZE);
            (&mut file)
                .take(BLOCK_SIZE as u64)
                .read_to_end(&mut block)
                .await
                .map_err(read)?;
            if block.is_empty() {
                break;
            }
            let id = block_id(ids.len());
            let length = block.len() as u64;
            client
                .stage_block(&id, length, azure_core::Bytes::from(block).into(), None)
                .await
                .map_err(BlobError::from_sdk)?;
            ids.push(id);
        }
        let list = BlockLookupList {
            latest: Some(ids),
            ..BlockLookupList::default()
        };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.into()),
            ..BlockBlobClientCommitBlockListOptions::default()
        };
        client
            .commit_block_list(list.try_into().map_err(BlobError::from_sdk)?, Some(options))
            .await
            .map_err(BlobError::from_sdk)?;
        Ok(())
    }
}

/// The id of block `index`: the same for every upload of the same log, all
/// of one length as the service requires (the SDK base64-encodes it).
pub fn block_id(index: usize) -> Vec<u8> {
    format!("block-{index:08}").into_bytes()
}

#[async_trait]
impl LogStore for BlobLogs {
    fn url_for(&self, run: &RunId, worker: &str) -> String {
        format!("{}/{run}/{worker}.log", self.container_url)
    }

    fn url_for_file(&self, run: &RunId, file: &str) -> String {
        format!("{}/{run}/{file}", self.container_url)
    }

    async fn upload(&self, path: &Path, url: &str) -> Result<(), PortError> {
        self.upload_file(path, url)
            .await
            .map_err(|e| PortError::transient(e.to_string()))
    }
}

/// The container of a log's URL (`<container>/<run>/<worker>.log`).
pub fn container_of(log_url: &str) -> &str {
    let mut rest = log_url;
    for _ in 0..2 {
        rest = rest.rsplit_once('/').map_or(rest, |(head, _)| head);
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NoCredential;

    #[async_trait]
    impl TokenCredential for NoCredential {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                "none here",
            ))
        }
    }

    #[test]
    fn an_unusable_extra_root_certificate_is_refused_with_its_file_named() {
        let dir = std::env::temp_dir().join(format!("blob-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        for path in [&missing, &empty] {
            let error = BlobLogs::new(
                "https://acct.blob.core.windows.net/logs",
                Arc::new(NoCredential),
                Some(path),
            )
            .expect_err("refused");
            assert!(
                matches!(error, BlobError::Certificate { .. })
                    && error.to_string().contains(&path.display().to_string()),
                "{error}"
            );
        }
        assert!(
            BlobLogs::new(
                "https://acct.blob.core.windows.net/logs",
                Arc::new(NoCredential),
                None
            )
            .is_ok()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The SDK's error for an answer of `status` with `code` and an XML body saying `message`.
    fn answer(status: u16, code: &str, message: &str, detail: &str) -> azure_core::Error {
        let mut headers = azure_core::http::headers::Headers::new();
        headers.insert("x-ms-error-code", code.to_string());
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:0b1c\nTime:2026-11-30T10:00:00Z</Message><AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail></Error>"
        );
        let status = StatusCode::from(status);
        let raw = azure_core::http::RawResponse::from_bytes(status, headers, body.into_bytes());
        azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status,
                error_code: Some(code.to_string()),
                raw_response: Some(Box::new(raw)),
            },
            "refused",
        )
    }

    #[test]
    fn refused_tokens_are_told_from_missing_roles_and_other_failures() {
        // Azure's current answer to an expired token.
        let error = BlobError::from_sdk(answer(
            401,
            "InvalidAuthenticationInfo",
            "Server failed to authenticate the request.",
            "Lifetime validation failed. The token is expired.",
        ));
        assert!(
            matches!(error, BlobError::Refused { status: 401, .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "Blob Storage refused the worker's token (401: InvalidAuthenticationInfo; Server failed to authenticate the request. Lifetime validation failed. The token is expired.): the identity endpoint must issue a current token for https://storage.azure.com"
        );
        // A current token of an identity without a role on the container.
        let error = BlobError::from_sdk(answer(
            403,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
            "",
        ));
        assert!(
            matches!(error, BlobError::Denied { status: 403, .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("Storage Blob Data Contributor"),
            "{error}"
        );
        let error = BlobError::from_sdk(answer(500, "InternalError", "Try again.", ""));
        assert!(
            matches!(error, BlobError::Failed { status: 500, .. }),
            "{error}"
        );
        let error = BlobError::from_sdk(azure_core::Error::with_message(
            ErrorKind::Credential,
            "the identity endpoint did not answer",
        ));
        assert!(
            matches!(error, BlobError::Credential(ref m) if m.contains("did not answer")),
            "{error}"
        );
    }

    #[test]
    fn block_ids_are_stable_and_of_one_length() {
        assert_eq!(block_id(3), block_id(3));
        assert_ne!(block_id(3), block_id(4));
        assert_eq!(block_id(0).len(), block_id(49_999).len());
    }

    #[test]
    fn a_container_url_is_https_with_a_container_and_no_key() {
        assert!(check_container_url("https://acct.blob.core.windows.net/build-logs").is_ok());
        assert!(check_container_url("https://127.0.0.1:10000/devstoreaccount1/logs").is_ok());
        for bad in [
            "http://acct.blob.core.windows.net/build-logs",
            "http://127.0.0.1:10000/devstoreaccount1/logs",
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/logs?sv=2024&sig=abc",
            "not a url",
        ] {
            assert!(check_container_url(bad).is_err(), "{bad}");
        }
    }
}
