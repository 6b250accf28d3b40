//! The Application Insights ingestion endpoint of a component with local
//! authentication disabled (`DisableLocalAuth: true`, as
//! infra/modules/monitoring.bicep deploys it), on loopback over HTTPS with a
//! certificate made for the test. It records what it accepts and what it
//! refuses, and answers as the service documents (Azure Monitor, "Microsoft
//! Entra authentication for Application Insights", Troubleshooting,
//! "Ingestion HTTP errors", MicrosoftDocs/azure-docs
//! articles/azure-monitor/app/azure-ad-authentication.md at
//! 6d39934808ae801885459702c3fe54492a8518d9):
//!
//! - `/v2/track` "doesn't support Azure AD": 400 "Authentication not
//!   supported" for a resource configured for Entra ID only;
//! - `/v2.1/track` without a valid token: 401 "Authorization required";
//! - `/v2.1/track` with the token of the identity: accepted. Here that is
//!   only the token the managed identity stand-in issued for
//!   `https://monitor.azure.com` ([`super::identity::token_for`]).
//!
//! Every request (the body unzipped: a JSON array of envelopes) and every
//! answer is checked against the `track` operation of the published
//! ingestion specification (`Monitor.Exporters/preview/v2.1/swagger.json`,
//! pinned in `tests/third-party.toml`) by [`super::spec_validator`]. A
//! request the specification refuses is answered 400 with a `TrackResponse`
//! naming each refused item (as the spec's `track.json` example answers), and
//! recorded: [`Ingestion::assert_valid`] then fails the test naming the
//! operation, the side, the JSON path and the rule. Answers are the
//! `TrackResponse` of the spec (`itemsReceived`, `itemsAccepted`, `errors`).
//! One deliberate exception: the 401 the service documents for Entra ID
//! ingestion is not among the responses the v2.1 `track` operation declares
//! (200, 206, 400, 402, 429, 500, 503), so that answer's status alone is not
//! held against the spec; its request is checked like any other.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::spec_validator::{self, Exchange, Violation, Violations};

/// The example of the ingestion specification whose `TrackResponse`
/// answers the endpoint's are shaped as.
pub const TRACK_EXAMPLE: &str = "specification/applicationinsights/data-plane/Monitor.Exporters/preview/v2.1/examples/track.json";

/// What the endpoint received.
#[derive(Clone)]
pub struct Ingestion {
    token: String,
    /// The bodies of accepted requests, unzipped.
    pub accepted: Arc<Mutex<Vec<String>>>,
    /// "<path> <status>" of every refused request.
    pub refused: Arc<Mutex<Vec<String>>>,
    violations: Violations,
}

impl Ingestion {
    /// An endpoint accepting only `Bearer <token>`.
    pub fn accepting(token: &str) -> Ingestion {
        Ingestion {
            token: token.to_string(),
            accepted: Arc::default(),
            refused: Arc::default(),
            violations: Violations::default(),
        }
    }

    /// Every telemetry item accepted so far.
    pub async fn items(&self) -> Vec<Value> {
        self.accepted
            .lock()
            .await
            .iter()
            .flat_map(|body| body.lines().map(str::to_string).collect::<Vec<_>>())
            .flat_map(|line| match serde_json::from_str::<Value>(&line) {
                Ok(Value::Array(items)) => items,
                Ok(item) => vec![item],
                Err(_) => vec![],
            })
            .collect()
    }

    /// The exchanges the ingestion specification refused so far (taken:
    /// they then no longer fail the test).
    pub fn take_violations(&self) -> Vec<Violation> {
        self.violations.take()
    }

    /// Fails the test with every exchange the ingestion specification
    /// refused, naming the operation, the side, the JSON path and the rule.
    pub fn assert_valid(&self) {
        self.violations.assert_none();
    }
}

/// The URL of a request received on `path` as the specification describes
/// it: its `x-ms-parameterized-host` is `{Host}/v2.1` with `Host` defaulting
/// to `https://dc.services.visualstudio.com`. The ingestion API is versioned
/// in its path, not by an `api-version` query; the validator looks
/// operations up by that query, so the path's version (`v2.1`, the spec's
/// `info.version`) is passed as it.
pub fn spec_url(path: &str) -> String {
    let version = path.trim_start_matches('/').split('/').next().unwrap_or("");
    format!("https://dc.services.visualstudio.com{path}?api-version={version}")
}

/// One `POST path` of `envelopes` answered `status` with `answer`, as the
/// validator reads it.
pub fn exchange(path: &str, envelopes: Value, status: u16, answer: Value) -> Exchange {
    Exchange {
        method: "POST".into(),
        url: spec_url(path),
        request_headers: Vec::new(),
        request_body: envelopes,
        status,
        response_headers: Vec::new(),
        response_body: answer,
    }
}

/// The specification's `TrackResponse` for `received` items of which
/// `accepted` were, with an error for each item at `refused` (index, status,
/// message): the `track.json` example's 200 answer with these counts and
/// errors.
pub fn track_response(received: usize, accepted: usize, refused: &[(usize, u16, String)]) -> Value {
    let example = spec_validator::example(TRACK_EXAMPLE);
    let mut answer = example["responses"]["200"]["body"].clone();
    answer["itemsReceived"] = json!(received);
    answer["itemsAccepted"] = json!(accepted);
    answer["errors"] = refused
        .iter()
        .map(|(index, status, message)| {
            json!({ "index": index, "statusCode": status, "message": message })
        })
        .collect();
    answer
}

/// The one answer the specification does not declare although the service
/// documents it: 401 to an Entra ID request without a valid token.
fn is_documented_undeclared_refusal(status: u16, issue: &spec_validator::Issue) -> bool {
    status == 401 && issue.side == "response" && issue.code == "INVALID_RESPONSE_CODE"
}

/// The exchange checked against the `track` operation, less the documented
/// exception.
async fn check(exchange: Exchange) -> Result<String, Violation> {
    let status = exchange.status;
    let checked = tokio::task::spawn_blocking(move || spec_validator::check(&exchange))
        .await
        .unwrap_or_else(|e| panic!("check the ingestion exchange: {e}"));
    match checked {
        Err(mut violation) => {
            violation
                .issues
                .retain(|i| !is_documented_undeclared_refusal(status, i));
            if violation.issues.is_empty() {
                Ok(violation.operation)
            } else {
                Err(violation)
            }
        }
        ok => ok,
    }
}

/// The request body as sent: unzipped when the exporter compressed it, JSON
/// when it is JSON; otherwise the text (or why it could not be read), which
/// the specification then refuses as not an array of envelopes.
fn envelopes(headers: &HeaderMap, body: &Bytes) -> (String, Value) {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzip {
        let mut text = String::new();
        match flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text) {
            Ok(_) => text,
            Err(e) => format!("a body marked gzip that is not: {e}"),
        }
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let value = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    (text, value)
}

/// The items a refused request's issues name (`/1/time` is item 1); item 0
/// when they name none.
fn refused_items(violation: &Violation) -> Vec<usize> {
    let mut items: Vec<usize> = violation
        .issues
        .iter()
        .filter(|i| i.side == "request")
        .filter_map(|i| {
            i.path
                .trim_start_matches('/')
                .split('/')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    items.sort_unstable();
    items.dedup();
    if items.is_empty() {
        items.push(0);
    }
    items
}

async fn track(
    State(ingestion): State<Ingestion>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let (text, envelopes) = envelopes(&headers, &body);
    let received = envelopes.as_array().map_or(0, Vec::len);
    let refusal = |status: u16, message: &str| {
        let all: Vec<(usize, u16, String)> = (0..received.max(1))
            .map(|index| (index, status, message.to_string()))
            .collect();
        (status, track_response(received, 0, &all))
    };
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", ingestion.token));
    let (mut status, mut answer) = if path == "/v2/track" {
        refusal(400, "Authentication not supported")
    } else if !authorized {
        refusal(401, "Authorization required")
    } else {
        (200, track_response(received, received, &[]))
    };
    let checked = check(exchange(&path, envelopes, status, answer.clone())).await;
    if let Err(violation) = checked {
        if status == 200 && violation.in_request() {
            // Refused as the service refuses a request it cannot take: 400,
            // naming the items the specification refuses.
            let refused: Vec<(usize, u16, String)> = refused_items(&violation)
                .into_iter()
                .map(|index| (index, 400, violation.to_string()))
                .collect();
            status = 400;
            answer = track_response(received, 0, &refused);
        }
        ingestion.violations.push(violation);
    }
    if status == 200 {
        ingestion.accepted.lock().await.push(text);
    } else {
        ingestion
            .refused
            .lock()
            .await
            .push(format!("{path} {status}"));
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(answer)).into_response()
}

/// A TLS listener for `axum::serve`.
struct Tls {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for Tls {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A started endpoint.
pub struct Started {
    /// Its base URL (`https://127.0.0.1:PORT/`), the connection string's `IngestionEndpoint`.
    pub endpoint: String,
    /// The connection string naming it.
    pub connection_string: String,
    /// A client trusting its certificate.
    pub client: reqwest::Client,
    /// Its certificate, PEM (for a child process: `SSL_CERT_FILE`).
    pub certificate_pem: String,
}

/// Starts `ingestion` on loopback.
pub async fn start(ingestion: Ingestion) -> Started {
    // The validator loads the specifications once per test process: before
    // the first export, so that no request waits for it.
    spec_validator::ready().await;
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("TLS config");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = Tls {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let router = Router::new()
        .route("/v2/track", post(track))
        .route("/v2.1/track", post(track))
        .with_state(ingestion);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("certificate"),
        )
        .build()
        .expect("client");
    let endpoint = format!("https://127.0.0.1:{}/", addr.port());
    Started {
        connection_string: format!(
            "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint={endpoint}"
        ),
        endpoint,
        client,
        certificate_pem: cert.pem(),
    }
}
