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

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What the endpoint received.
#[derive(Clone)]
pub struct Ingestion {
    token: String,
    /// The bodies of accepted requests, unzipped.
    pub accepted: Arc<Mutex<Vec<String>>>,
    /// "<path> <status>" of every refused request.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl Ingestion {
    /// An endpoint accepting only `Bearer <token>`.
    pub fn accepting(token: &str) -> Ingestion {
        Ingestion {
            token: token.to_string(),
            accepted: Arc::default(),
            refused: Arc::default(),
        }
    }

    /// Every telemetry item accepted so far.
    pub async fn items(&self) -> Vec<serde_json::Value> {
        self.accepted
            .lock()
            .await
            .iter()
            .flat_map(|body| body.lines().map(str::to_string).collect::<Vec<_>>())
            .flat_map(
                |line| match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(serde_json::Value::Array(items)) => items,
                    Ok(item) => vec![item],
                    Err(_) => vec![],
                },
            )
            .collect()
    }
}

async fn track(
    State(ingestion): State<Ingestion>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let refuse = |status: StatusCode, message: &'static str| {
        let ingestion = ingestion.clone();
        let path = uri.path().to_string();
        async move {
            ingestion
                .refused
                .lock()
                .await
                .push(format!("{path} {}", status.as_u16()));
            (status, message)
        }
    };
    if uri.path() == "/v2/track" {
        return refuse(StatusCode::BAD_REQUEST, "Authentication not supported").await;
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", ingestion.token));
    if !authorized {
        return refuse(StatusCode::UNAUTHORIZED, "Authorization required").await;
    }
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzip {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("gzip body");
        text
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    ingestion.accepted.lock().await.push(text);
    (StatusCode::OK, "")
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
    /// The connection string naming it.
    pub connection_string: String,
    /// A client trusting its certificate.
    pub client: reqwest::Client,
    /// Its certificate, PEM (for a child process: `SSL_CERT_FILE`).
    pub certificate_pem: String,
}

/// Starts `ingestion` on loopback.
pub async fn start(ingestion: Ingestion) -> Started {
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
    Started {
        connection_string: format!(
            "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://127.0.0.1:{}/",
            addr.port()
        ),
        client,
        certificate_pem: cert.pem(),
    }
}
