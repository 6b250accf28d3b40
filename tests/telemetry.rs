//! Traces in Application Insights: with the connection string set, the
//! stages of a run are exported as one trace (its id derived from the run id)
//! to the ingestion endpoint the string names — here an HTTPS endpoint on
//! loopback, with a certificate made for the test, that records what it
//! receives — and no secret is in what is sent.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{Factory, GITHUB_SECRET, OPERATOR_TOKEN};
use image_factory::domain::run::RunStatus;
use image_factory::telemetry::{Telemetry, run_trace_id};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Clone, Default)]
struct Ingestion {
    bodies: Arc<Mutex<Vec<String>>>,
}

async fn track(State(ingestion): State<Ingestion>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzip {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    ingestion.bodies.lock().await.push(text);
    StatusCode::OK
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

/// Starts the ingestion endpoint; returns its address and a client trusting its certificate.
async fn https_ingestion(ingestion: Ingestion) -> (SocketAddr, reqwest::Client) {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = Tls {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let router = Router::new()
        .route("/v2/track", post(track))
        .with_state(ingestion);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    (addr, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_connection_string_a_runs_stages_are_exported_as_one_trace_without_secrets() {
    let ingestion = Ingestion::default();
    let (addr, client) = https_ingestion(ingestion.clone()).await;
    let connection_string = format!(
        "InstrumentationKey=11111111-2222-3333-4444-555555555555;IngestionEndpoint=https://127.0.0.1:{}/",
        addr.port()
    );
    let telemetry = Arc::new(Telemetry::install(true, Some(&connection_string), client).unwrap());

    let factory = Factory::start().await;
    let run = factory
        .push_and_wait(
            "ab0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    let flushing = Arc::clone(&telemetry);
    tokio::task::spawn_blocking(move || flushing.flush())
        .await
        .unwrap();

    let sent = ingestion.bodies.lock().await.join("\n");
    assert!(!sent.is_empty(), "nothing reached the ingestion endpoint");
    let trace = run_trace_id(&run.id).to_string();
    let items: Vec<serde_json::Value> = sent
        .lines()
        .flat_map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Array(items)) => items,
                Ok(item) => vec![item],
                Err(_) => vec![],
            },
        )
        .collect();
    let stages: Vec<String> = items
        .iter()
        .filter(|i| i["tags"]["ai.operation.id"] == trace.as_str())
        .filter_map(|i| {
            i["data"]["baseData"]["properties"]["stage"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    for stage in ["validate", "build", "test", "approve"] {
        assert!(
            stages.iter().any(|s| s == stage),
            "stage {stage} is not in the run's trace: {stages:?}"
        );
    }
    for secret in [GITHUB_SECRET, OPERATOR_TOKEN] {
        assert!(!sent.contains(secret), "a secret was exported");
    }
    factory.stop().await;
}
