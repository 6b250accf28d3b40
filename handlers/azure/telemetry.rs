//! Logs and traces. Every process logs to stderr (JSON under the Functions
//! host, which collects it; compact text locally, coloured only on a
//! terminal and not with `NO_COLOR` set). With the standard
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` set, spans are also exported to
//! Application Insights; without it nothing is sent.
//!
//! The export signs in with Entra ID: the Application Insights component has
//! local (instrumentation key) authentication disabled, so every request to
//! the ingestion endpoint carries `Authorization: Bearer <token>` for the
//! factory's identity (scope [`INGESTION_SCOPE`]); the token is cached until
//! shortly before it expires. A token that cannot be had stops the export
//! with one warning (it is tried again every few minutes), never the work.
//!
//! A run is one end-to-end trace (`crate::trace`). Spans carry ids (run,
//! stage, attempt, function) and never secrets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The setting that turns the Application Insights export on.
pub const CONNECTION_STRING: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";

/// The scope of the Entra ID tokens Azure Monitor ingestion accepts.
pub const INGESTION_SCOPE: &str = "https://monitor.azure.com/.default";

/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// After a token could not be had, the export is off this long before the
/// next try.
const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// Where spans are exported, and as whom.
pub struct Export {
    /// The Application Insights connection string (it names the ingestion
    /// endpoint; the instrumentation key in it authorizes nothing).
    pub connection_string: String,
    /// The identity whose bearer token every ingestion request carries.
    pub credential: Arc<dyn TokenCredential>,
    /// The HTTP client the requests go through.
    pub http: reqwest::Client,
}

/// The installed telemetry; flushes and stops the export when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: JSON or compact logs on stderr, and the
    /// Application Insights export when `export` is given (the ingestion
    /// endpoint is always HTTPS). Must be called inside the tokio runtime (the
    /// export uses it).
    pub fn install(json: bool, export: Option<Export>) -> anyhow::Result<Telemetry> {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let provider = match export {
            Some(export) => {
                let client = RuntimeClient {
                    http: export.http,
                    tokens: Arc::new(IngestionTokens::new(export.credential)),
                    runtime: tokio::runtime::Handle::try_current()?,
                };
                let exporter =
                    opentelemetry_application_insights::Exporter::new_from_connection_string(
                        &export.connection_string,
                        client,
                    )
                    .map_err(|e| {
                        anyhow::anyhow!("{CONNECTION_STRING} is not a valid connection string: {e}")
                    })?;
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name("image-factory")
                    .build();
                Some(
                    SdkTracerProvider::builder()
                        .with_resource(resource)
                        .with_batch_exporter(exporter)
                        .build(),
                )
            }
            None => None,
        };
        let otel = provider
            .as_ref()
            .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("image-factory")));
        let registry = tracing_subscriber::registry().with(filter).with(otel);
        if json {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_ansi(false)
                        .with_writer(std::io::stderr),
                )
                .try_init()?;
        } else {
            // Colour codes only on a terminal, and not with NO_COLOR set:
            // a redirected log is plain text.
            let colour = crate::domain::controls::colour(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR").as_deref(),
            );
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_ansi(colour)
                        .with_writer(std::io::stderr),
                )
                .try_init()?;
        }
        Ok(Telemetry { provider })
    }

    /// Installs telemetry from the environment: the export when the
    /// connection string is set, signed in as the factory's identity
    /// ([`crate::azure::identity::Identity::from_vars`]).
    pub fn from_env(json: bool) -> anyhow::Result<Telemetry> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(connection_string) = var(CONNECTION_STRING) else {
            return Telemetry::install(json, None);
        };
        match crate::azure::identity::Identity::from_vars(var).credential() {
            Ok(credential) => Telemetry::install(
                json,
                Some(Export {
                    connection_string,
                    credential,
                    http: reqwest::Client::new(),
                }),
            ),
            Err(e) => {
                let telemetry = Telemetry::install(json, None)?;
                tracing::warn!(
                    "traces are not exported: {CONNECTION_STRING} is set but the factory has no identity to sign in to Application Insights with ({e})"
                );
                Ok(telemetry)
            }
        }
    }

    /// Sends what is buffered now.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!("cannot flush traces: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The URL a request of the exporter goes to with a bearer token: the
/// exporter posts to `/v2/track`, which takes no Entra ID token; ingestion
/// with Entra ID is `/v2.1/track` ("v2/track doesn't support Azure AD. When
/// the SDK is correctly configured, telemetry will be sent to v2.1/track",
/// Azure Monitor's "Microsoft Entra authentication for Application Insights",
/// MicrosoftDocs/azure-docs articles/azure-monitor/app/azure-ad-authentication.md
/// at 6d39934808ae801885459702c3fe54492a8518d9, Troubleshooting).
fn entra_track_url(uri: &http::Uri) -> String {
    let url = uri.to_string();
    match url.strip_suffix("/v2/track") {
        Some(base) => format!("{base}/v2.1/track"),
        None => url,
    }
}

/// Bearer tokens for the ingestion endpoint, cached until [`RENEW_BEFORE`]
/// their expiry.
struct IngestionTokens {
    credential: Arc<dyn TokenCredential>,
    state: tokio::sync::Mutex<TokenState>,
}

enum TokenState {
    /// No token yet, or the last one was refused.
    Empty,
    /// The `Authorization` header to send until `renew_at`.
    Cached {
        header: http::HeaderValue,
        renew_at: azure_core::time::OffsetDateTime,
    },
    /// The last try failed (and was reported); the next one is not before `retry_at`.
    Unavailable { retry_at: Instant },
}

impl IngestionTokens {
    fn new(credential: Arc<dyn TokenCredential>) -> IngestionTokens {
        IngestionTokens {
            credential,
            state: tokio::sync::Mutex::new(TokenState::Empty),
        }
    }

    /// The `Authorization` header for the next request, or `None` while no
    /// token can be had. The first failure of a streak is logged, once.
    async fn header(&self) -> Option<http::HeaderValue> {
        let mut state = self.state.lock().await;
        let now = azure_core::time::OffsetDateTime::now_utc();
        match &*state {
            TokenState::Cached { header, renew_at } if now < *renew_at => {
                return Some(header.clone());
            }
            TokenState::Unavailable { retry_at } if Instant::now() < *retry_at => return None,
            _ => {}
        }
        let failing = matches!(*state, TokenState::Unavailable { .. });
        let token = self.credential.get_token(&[INGESTION_SCOPE], None).await;
        let header = token.as_ref().ok().and_then(|token| {
            let mut header =
                http::HeaderValue::from_str(&format!("Bearer {}", token.token.secret())).ok()?;
            header.set_sensitive(true);
            Some(header)
        });
        match (token, header) {
            (Ok(token), Some(header)) => {
                if failing {
                    tracing::info!("trace export resumed: the identity has a token again");
                }
                *state = TokenState::Cached {
                    header: header.clone(),
                    renew_at: token.expires_on - RENEW_BEFORE,
                };
                Some(header)
            }
            (outcome, _) => {
                if !failing {
                    let reason = match outcome {
                        Err(e) => e.to_string(),
                        Ok(_) => "the token is not a valid header value".to_string(),
                    };
                    tracing::warn!(
                        "traces are not exported: no token for Application Insights ({INGESTION_SCOPE}) from the factory's identity: {reason}; the export tries again every {} minutes (give the identity Monitoring Metrics Publisher on the component)",
                        RETRY_AFTER.as_secs() / 60
                    );
                }
                *state = TokenState::Unavailable {
                    retry_at: Instant::now() + RETRY_AFTER,
                };
                None
            }
        }
    }

    /// Forgets a token the endpoint refused, so the next request gets a new one.
    async fn refused(&self) {
        let mut state = self.state.lock().await;
        if matches!(*state, TokenState::Cached { .. }) {
            *state = TokenState::Empty;
        }
    }
}

impl std::fmt::Debug for IngestionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IngestionTokens")
    }
}

/// Sends the exporter's requests on the tokio runtime, whatever thread the
/// batch processor calls from, each with the identity's bearer token.
#[derive(Debug, Clone)]
struct RuntimeClient {
    http: reqwest::Client,
    tokens: Arc<IngestionTokens>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let tokens = Arc::clone(&self.tokens);
        let task = self.runtime.spawn(async move {
            let Some(authorization) = tokens.header().await else {
                // Answered as the service answers a request without a token
                // (401): the exporter drops the batch at once instead of
                // retrying it for half a minute.
                return Ok(http::Response::builder()
                    .status(http::StatusCode::UNAUTHORIZED)
                    .body(Bytes::new())?);
            };
            let (parts, body) = request.into_parts();
            let response = http
                .request(parts.method, entra_track_url(&parts.uri))
                .headers(parts.headers)
                .header(http::header::AUTHORIZATION, authorization)
                .body(body)
                .send()
                .await?;
            if response.status() == http::StatusCode::UNAUTHORIZED {
                tokens.refused().await;
            }
            let mut out = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let bytes = response.bytes().await?;
            Ok::<_, HttpError>(out.body(bytes)?)
        });
        task.await.map_err(|e| Box::new(e) as HttpError)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use azure_core::credentials::{AccessToken, TokenRequestOptions};

    /// A credential that counts its calls and answers `token` (valid for
    /// `lifetime`), or fails when `token` is `None`.
    #[derive(Debug)]
    struct Counting {
        token: Option<&'static str>,
        lifetime: azure_core::time::Duration,
        calls: AtomicUsize,
        scopes: Mutex<Vec<String>>,
    }

    impl Counting {
        fn new(token: Option<&'static str>, minutes: i64) -> Arc<Counting> {
            Arc::new(Counting {
                token,
                lifetime: azure_core::time::Duration::minutes(minutes),
                calls: AtomicUsize::new(0),
                scopes: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            scopes: &[&str],
            _options: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut seen) = self.scopes.lock() {
                seen.extend(scopes.iter().map(|s| s.to_string()));
            }
            match self.token {
                Some(token) => Ok(AccessToken::new(
                    token,
                    azure_core::time::OffsetDateTime::now_utc() + self.lifetime,
                )),
                None => Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "the identity endpoint answered 500",
                )),
            }
        }
    }

    /// Log lines written while the returned guard lives.
    fn captured_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
        #[derive(Clone)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut out) = self.0.lock() {
                    out.extend_from_slice(buf);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&out));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        (out, tracing::subscriber::set_default(subscriber))
    }

    #[test]
    fn requests_with_a_token_go_to_the_entra_id_track_endpoint() {
        let uri = http::Uri::from_static(
            "https://westeurope-5.in.applicationinsights.azure.com/v2/track",
        );
        assert_eq!(
            entra_track_url(&uri),
            "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track"
        );
        let other = http::Uri::from_static("https://live.example/QuickPulseService.svc/ping");
        assert_eq!(entra_track_url(&other), other.to_string());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_ingestion_token_is_asked_for_the_monitor_scope_and_kept_until_near_its_expiry() {
        let credential = Counting::new(Some("monitor-token"), 60);
        let tokens = IngestionTokens::new(credential.clone());
        for _ in 0..3 {
            let header = tokens.header().await.expect("a header");
            assert_eq!(header.to_str().ok(), Some("Bearer monitor-token"));
            assert!(header.is_sensitive());
        }
        assert_eq!(credential.calls.load(Ordering::SeqCst), 1, "cached");
        assert_eq!(
            credential
                .scopes
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            vec![INGESTION_SCOPE.to_string()]
        );
        // A token within RENEW_BEFORE of its expiry is renewed at once.
        let short = Counting::new(Some("short-lived"), 2);
        let tokens = IngestionTokens::new(short.clone());
        tokens.header().await.expect("a header");
        tokens.header().await.expect("a header");
        assert_eq!(short.calls.load(Ordering::SeqCst), 2);
        // A token the endpoint refused is not sent again.
        let tokens = IngestionTokens::new(credential.clone());
        tokens.header().await.expect("a header");
        tokens.refused().await;
        tokens.header().await.expect("a header");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_token_that_cannot_be_had_stops_the_export_with_one_warning_not_one_per_batch() {
        let (logs, _guard) = captured_logs();
        let credential = Counting::new(None, 60);
        let tokens = IngestionTokens::new(credential.clone());
        for _ in 0..5 {
            assert!(tokens.header().await.is_none());
        }
        let text = String::from_utf8_lossy(&logs.lock().map(|l| l.clone()).unwrap_or_default())
            .to_string();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(
            warnings[0].contains("traces are not exported")
                && warnings[0].contains("identity endpoint answered 500"),
            "{text}"
        );
        // The identity is not asked again before the retry delay.
        assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    }
}
