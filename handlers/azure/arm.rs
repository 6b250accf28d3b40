//! The Azure Resource Manager client: bearer tokens from an Entra ID
//! credential, long-running operations polled through `Azure-AsyncOperation`
//! or `Location`, throttling (429) retried after the server's `Retry-After`,
//! paged listings followed through `nextLink`, and every error answer mapped
//! to a typed [`ArmError`].
//!
//! The base URL is configurable (`IMAGE_FACTORY_ARM_ENDPOINT`, default
//! `https://management.azure.com`) so that the same code runs against a
//! server replaying the REST specifications' examples. Tokens are only ever
//! sent to that origin: a poll or next-page URL on another host is refused.
//! Waiting goes through a [`Sleeper`], so tests observe the delays asked for
//! instead of waiting them out.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use futures::future::BoxFuture;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Resource Manager in the public cloud.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The token scope of Resource Manager.
pub const SCOPE: &str = "https://management.azure.com/.default";

/// Waits for a duration (tokio's sleep in production; a recorder in tests).
pub type Sleeper = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// The real sleeper.
pub fn tokio_sleeper() -> Sleeper {
    Arc::new(|d| Box::pin(tokio::time::sleep(d)))
}

/// How patient the client is.
#[derive(Clone, Debug)]
pub struct Patience {
    /// Throttled answers retried at most this many times per request.
    pub throttle_retries: u32,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
    /// Pause between polls when the server names none.
    pub poll_interval: Duration,
    /// A long-running operation polled this many times without ending fails.
    pub max_polls: u32,
}

impl Default for Patience {
    fn default() -> Patience {
        Patience {
            throttle_retries: 5,
            max_retry_after: Duration::from_secs(120),
            poll_interval: Duration::from_secs(10),
            max_polls: 360,
        }
    }
}

/// A Resource Manager failure, typed by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// 404: the resource (or its parent) does not exist.
    #[error("not found ({code}): {message}")]
    NotFound {
        /// ARM's error code (`ResourceNotFound`, `ResourceGroupNotFound`, ...).
        code: String,
        /// ARM's message.
        message: String,
    },
    /// 409: the resource exists or is busy.
    #[error("conflict ({code}): {message}")]
    Conflict {
        /// ARM's error code.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// 401/403: the identity is not signed in or not allowed.
    #[error("not authorized (HTTP {status}, {code}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// ARM's error code (`AuthorizationFailed`, ...).
        code: String,
        /// ARM's message.
        message: String,
    },
    /// A quota or capacity limit (`QuotaExceeded`, `OperationNotAllowed` on cores, `SkuNotAvailable`).
    #[error("quota exceeded ({code}): {message}")]
    Quota {
        /// ARM's error code.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// 429 after every retry.
    #[error("throttled by Resource Manager {attempts} times in a row; try again later")]
    Throttled {
        /// Requests sent.
        attempts: u32,
    },
    /// Any other 4xx: the request itself is wrong.
    #[error("request refused (HTTP {status}, {code}): {message}")]
    BadRequest {
        /// The status.
        status: u16,
        /// ARM's error code.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// 5xx: Resource Manager or the provider failed; retrying may help.
    #[error("Resource Manager failed (HTTP {status}, {code}): {message}")]
    Server {
        /// The status.
        status: u16,
        /// ARM's error code.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("the operation ended {status} ({code}): {message}")]
    OperationFailed {
        /// `Failed` or `Canceled`.
        status: String,
        /// The operation's error code.
        code: String,
        /// The operation's message.
        message: String,
    },
    /// A long-running operation did not end within the patience allowed.
    #[error("the operation did not finish after {polls} polls; last state {last_state}")]
    OperationTimeout {
        /// Polls made.
        polls: u32,
        /// The last status or provisioning state seen.
        last_state: String,
    },
    /// No token could be had.
    #[error("no Resource Manager token: {0}")]
    Token(String),
    /// The connection failed.
    #[error("cannot reach Resource Manager: {0}")]
    Transport(String),
    /// The answer is not what the API documents.
    #[error("unexpected answer from Resource Manager: {0}")]
    Decode(String),
    /// A URL in an answer points away from the configured endpoint.
    #[error("refusing to send a token to {0}: it is not the configured Resource Manager endpoint")]
    UntrustedUrl(String),
}

impl From<ArmError> for crate::ports::PortError {
    fn from(e: ArmError) -> crate::ports::PortError {
        crate::ports::PortError {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl ArmError {
    /// True when the same request may succeed later (throttling, server errors, transport).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ArmError::Throttled { .. }
                | ArmError::Server { .. }
                | ArmError::Transport(_)
                | ArmError::Token(_)
        )
    }
}

/// A Resource Manager client for one endpoint and one identity.
#[derive(Clone)]
pub struct ArmClient {
    endpoint: Url,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
    sleeper: Sleeper,
    patience: Patience,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("patience", &self.patience)
            .finish()
    }
}

impl ArmClient {
    /// A client for `endpoint` (e.g. [`DEFAULT_ENDPOINT`]) taking tokens from `credential`.
    pub fn new(
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
        sleeper: Sleeper,
        patience: Patience,
    ) -> Result<ArmClient, ArmError> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| ArmError::Decode(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "https" | "http") || endpoint.host_str().is_none() {
            return Err(ArmError::Decode(
                "the Resource Manager endpoint must be an http(s) URL with a host".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ArmError::Transport(e.to_string()))?;
        Ok(ArmClient {
            endpoint,
            credential,
            http,
            sleeper,
            patience,
        })
    }

    /// The URL of `path_and_query` (`/subscriptions/...?api-version=...`) on the endpoint.
    pub fn url(&self, path_and_query: &str) -> Result<Url, ArmError> {
        self.endpoint
            .join(path_and_query)
            .map_err(|e| ArmError::Decode(format!("bad resource path {path_and_query:?}: {e}")))
    }

    fn trusted(&self, url: &str) -> Result<Url, ArmError> {
        let parsed = Url::parse(url).map_err(|_| ArmError::UntrustedUrl(redact(url)))?;
        if parsed.origin() == self.endpoint.origin() {
            Ok(parsed)
        } else {
            Err(ArmError::UntrustedUrl(redact(url)))
        }
    }

    /// Waits `duration` through the client's sleeper, so that callers pacing
    /// their own retries (the test stage's smoke checks) are observed by tests
    /// instead of waited out.
    pub async fn wait(&self, duration: Duration) {
        (self.sleeper)(duration).await;
    }

    /// GET a resource.
    pub async fn get(&self, path: &str) -> Result<Value, ArmError> {
        Ok(self.send(Method::GET, self.url(path)?, None).await?.body)
    }

    /// GET a resource, `None` when it does not exist.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, ArmError> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(ArmError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a listing: a `{"value": [...], "nextLink"}` page chain,
    /// or a plain JSON array (the Marketplace image listings answer so).
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ArmError> {
        let mut url = self.url(path)?;
        let mut items = Vec::new();
        for _ in 0..1000 {
            let body = self.send(Method::GET, url, None).await?.body;
            let next = match body {
                Value::Array(page) => {
                    items.extend(page);
                    None
                }
                Value::Object(mut page) => {
                    match page.remove("value") {
                        Some(Value::Array(values)) => items.extend(values),
                        Some(_) => return Err(ArmError::Decode("`value` is not an array".into())),
                        None => {}
                    }
                    page.get("nextLink")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                }
                _ => {
                    return Err(ArmError::Decode(
                        "a listing is neither an array nor a page".into(),
                    ));
                }
            };
            match next {
                Some(next) => url = self.trusted(&next)?,
                None => return Ok(items),
            }
        }
        Err(ArmError::Decode("more than 1000 pages in a listing".into()))
    }

    /// PUT a resource and wait for its provisioning to end; answers the resource.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ArmError> {
        self.write(Method::PUT, path, body).await
    }

    /// PATCH a resource and wait for its provisioning to end; answers the resource.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ArmError> {
        self.write(Method::PATCH, path, body).await
    }

    /// POST an action (`.../start`) and wait for it; answers the final body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ArmError> {
        let answer = self.send(Method::POST, self.url(path)?, Some(body)).await?;
        match self.follow(&answer).await? {
            Some(polled) if !polled.is_null() => Ok(polled),
            _ => Ok(answer.body),
        }
    }

    /// DELETE a resource and wait until it is gone. A resource that is
    /// already gone is not an error: answers false then, true when this call
    /// deleted it.
    pub async fn delete(&self, path: &str) -> Result<bool, ArmError> {
        let answer = match self.send(Method::DELETE, self.url(path)?, None).await {
            Ok(answer) => answer,
            Err(ArmError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if answer.status == 204 {
            return Ok(false);
        }
        self.follow(&answer).await?;
        Ok(true)
    }

    async fn write(&self, method: Method, path: &str, body: &Value) -> Result<Value, ArmError> {
        let url = self.url(path)?;
        let answer = self.send(method, url.clone(), Some(body)).await?;
        if self.follow(&answer).await?.is_some() {
            // The operation ended well: the resource as it now is.
            return Ok(self.send(Method::GET, url, None).await?.body);
        }
        // No operation to follow: the body's provisioning state tells.
        let mut resource = answer.body;
        let mut polls = 0;
        loop {
            let state = provisioning_state(&resource);
            match state.as_deref() {
                None | Some("Succeeded") => return Ok(resource),
                Some("Failed") | Some("Canceled") => {
                    let (code, message) = error_parts(&resource);
                    return Err(ArmError::OperationFailed {
                        status: state.unwrap_or_default(),
                        code,
                        message,
                    });
                }
                Some(other) => {
                    if polls >= self.patience.max_polls {
                        return Err(ArmError::OperationTimeout {
                            polls,
                            last_state: other.to_string(),
                        });
                    }
                    polls += 1;
                    (self.sleeper)(self.patience.poll_interval).await;
                    resource = self.send(Method::GET, url.clone(), None).await?.body;
                }
            }
        }
    }

    /// Follows the long-running operation an answer announces, if any:
    /// `Azure-AsyncOperation` (a status resource) first, else `Location`
    /// (202 until done). `Some(final body)` when there was one to follow.
    async fn follow(&self, answer: &AnswerWithHeaders) -> Result<Option<Value>, ArmError> {
        if let Some(url) = &answer.async_operation {
            let url = self.trusted(url)?;
            let mut wait = answer.retry_after;
            for polls in 0..=self.patience.max_polls {
                (self.sleeper)(self.pause(wait)).await;
                let polled = self.send(Method::GET, url.clone(), None).await?;
                let status = polled
                    .body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("InProgress")
                    .to_string();
                match status.as_str() {
                    "Succeeded" => return Ok(Some(polled.body.clone())),
                    "Failed" | "Canceled" => {
                        let (code, message) = error_parts(&polled.body);
                        return Err(ArmError::OperationFailed {
                            status,
                            code,
                            message,
                        });
                    }
                    _ if polls == self.patience.max_polls => {
                        return Err(ArmError::OperationTimeout {
                            polls,
                            last_state: status,
                        });
                    }
                    _ => wait = polled.retry_after,
                }
            }
        }
        if answer.status == 202
            && let Some(url) = &answer.location
        {
            let url = self.trusted(url)?;
            let mut wait = answer.retry_after;
            for polls in 0..=self.patience.max_polls {
                (self.sleeper)(self.pause(wait)).await;
                let polled = self.send(Method::GET, url.clone(), None).await?;
                if polled.status != 202 {
                    return Ok(Some(polled.body.clone()));
                }
                if polls == self.patience.max_polls {
                    return Err(ArmError::OperationTimeout {
                        polls,
                        last_state: "Accepted".into(),
                    });
                }
                wait = polled.retry_after;
            }
        }
        Ok(None)
    }

    fn pause(&self, asked: Option<Duration>) -> Duration {
        asked
            .unwrap_or(self.patience.poll_interval)
            .min(self.patience.max_retry_after)
    }

    /// Sends one request with a fresh token, retrying throttled answers after
    /// their `Retry-After`; maps error answers to [`ArmError`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<AnswerWithHeaders, ArmError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let token = self
                .credential
                .get_token(&[SCOPE], None)
                .await
                .map_err(|e| ArmError::Token(e.to_string()))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ArmError::Transport(without_url(&e)))?;
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
            let async_operation = header("azure-asyncoperation");
            let location = header("location");
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ArmError::Transport(without_url(&e)))?;
            let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(_) if !status.is_success() => Value::Null,
                    Err(e) => return Err(ArmError::Decode(format!("the body is not JSON: {e}"))),
                }
            };
            if status == StatusCode::TOO_MANY_REQUESTS {
                if attempts > self.patience.throttle_retries {
                    return Err(ArmError::Throttled { attempts });
                }
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1 << attempts.min(6)))
                    .min(self.patience.max_retry_after);
                tracing::warn!(
                    attempt = attempts,
                    wait_ms = wait.as_millis() as u64,
                    "Resource Manager throttled the request"
                );
                (self.sleeper)(wait).await;
                continue;
            }
            if status.is_success() {
                return Ok(AnswerWithHeaders {
                    status: status.as_u16(),
                    body,
                    retry_after,
                    async_operation,
                    location,
                });
            }
            return Err(map_error(status.as_u16(), &body));
        }
    }
}

/// An answer with the headers that drive long-running operations.
#[derive(Debug)]
struct AnswerWithHeaders {
    status: u16,
    body: Value,
    retry_after: Option<Duration>,
    async_operation: Option<String>,
    location: Option<String>,
}

/// `Retry-After` as seconds (ARM sends seconds; an HTTP date is read too).
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The `provisioningState` of a resource body, if it has one.
pub fn provisioning_state(resource: &Value) -> Option<String> {
    resource
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// ARM's `{"error": {"code", "message"}}` (also read at the top level).
fn error_parts(body: &Value) -> (String, String) {
    let error = body.get("error").unwrap_or(body);
    let text = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let code = text("code");
    (
        if code.is_empty() {
            "Unknown".into()
        } else {
            code
        },
        text("message"),
    )
}

/// The typed error of an error answer.
fn map_error(status: u16, body: &Value) -> ArmError {
    let (code, message) = error_parts(body);
    let lower = format!("{code} {message}").to_lowercase();
    let quota = lower.contains("quotaexceeded")
        || lower.contains("skunotavailable")
        || (code == "OperationNotAllowed" && lower.contains("quota"));
    match status {
        404 => ArmError::NotFound { code, message },
        409 if !quota => ArmError::Conflict { code, message },
        401 | 403 => ArmError::Unauthorized {
            status,
            code,
            message,
        },
        _ if quota => ArmError::Quota { code, message },
        500..=599 => ArmError::Server {
            status,
            code,
            message,
        },
        _ => ArmError::BadRequest {
            status,
            code,
            message,
        },
    }
}

/// A transport error's text without its URL's query (which could carry a signature).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(url) => text.replace(url.as_str(), &redact(url.as_str())),
        None => text,
    }
}

/// A URL without its query string, for error messages.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(parse_retry_after("17"), Some(Duration::from_secs(17)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_answers_map_to_what_the_caller_can_do() {
        let body = |code: &str, message: &str| json!({"error": {"code": code, "message": message}});
        assert!(matches!(
            map_error(404, &body("ResourceGroupNotFound", "Resource group 'x' could not be found.")),
            ArmError::NotFound { code, .. } if code == "ResourceGroupNotFound"
        ));
        assert!(matches!(
            map_error(409, &body("Conflict", "exists")),
            ArmError::Conflict { .. }
        ));
        assert!(matches!(
            map_error(403, &body("AuthorizationFailed", "no")),
            ArmError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            map_error(
                409,
                &body(
                    "OperationNotAllowed",
                    "Operation could not be completed as it results in exceeding approved Total Regional Cores quota."
                )
            ),
            ArmError::Quota { .. }
        ));
        assert!(matches!(
            map_error(400, &body("InvalidParameter", "bad")),
            ArmError::BadRequest { status: 400, .. }
        ));
        assert!(matches!(
            map_error(503, &Value::Null),
            ArmError::Server { status: 503, code, .. } if code == "Unknown"
        ));
        assert!(map_error(503, &Value::Null).is_transient());
        assert!(!map_error(404, &Value::Null).is_transient());
    }
}
