//! Azurite, Microsoft's Storage emulator (npm `azurite` 3.37.0, pinned in
//! `tests/azurite/package-lock.json`), for the build logs and the source
//! snapshots: its Blob
//! service over HTTPS with a certificate made for the test and `--oauth basic`
//! (bearer tokens are checked for issuer, audience and lifetime, not for their
//! signature), in memory, on a free loopback port. The node process is started
//! directly (no npx wrapper) through `tests/azurite/launch.js`, which runs
//! Azurite's own command line and exits when its stdin closes, so a server
//! shared by a whole test binary goes when the test process goes; a server of
//! one's own is stopped by its process id when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use base64::Engine;

/// Azurite's built-in account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// The tenant the test tokens name as their issuer.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The audience of Blob Storage tokens (the resource the SDK asks for).
pub const STORAGE_AUDIENCE: &str = "https://storage.azure.com";
/// The Blob service version the tests' own requests use.
const VERSION: &str = "2026-04-06";

/// An access token shaped as Entra ID issues them (a JWT with `iss`
/// `https://sts.windows.net/<tenant>/`, `aud`, `iat`, `nbf`, `exp`), valid
/// from ten minutes ago until `expires_in_secs` from now (negative: expired).
/// Its signature is random bytes: Azurite does not check it.
pub fn storage_token(audience: &str, expires_in_secs: i64) -> String {
    let encode = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let now = chrono::Utc::now().timestamp();
    let header = encode(serde_json::json!({ "alg": "RS256", "typ": "JWT" }));
    let claims = encode(serde_json::json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now - 600,
        "nbf": now - 600,
        "exp": now + expires_in_secs,
        "oid": "11111111-2222-3333-4444-555555555555",
        "tid": TENANT,
        "ver": "1.0",
    }));
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    format!("{header}.{claims}.{signature}")
}

/// A credential that hands out current Blob Storage tokens.
#[derive(Debug)]
pub struct StorageCredential;

#[async_trait::async_trait]
impl TokenCredential for StorageCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            storage_token(STORAGE_AUDIENCE, 3600),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// A running Azurite Blob service.
pub struct Azurite {
    /// The account's endpoint, `https://127.0.0.1:PORT/devstoreaccount1`.
    pub endpoint: String,
    /// A PEM file holding the server's certificate (the root to trust).
    pub ca_file: PathBuf,
    http: reqwest::Client,
    child: Child,
    _stdin: ChildStdin,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts a server of one's own.
    pub fn start() -> Azurite {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("azurite");
        assert!(
            dir.join("node_modules").join("azurite").is_dir(),
            "Azurite is not installed: run scripts/setup.sh (npm ci in tests/azurite)"
        );
        let files = tempfile::TempDir::new().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate parameters")
                .self_signed(&key)
                .expect("certificate");
        let ca_file = files.path().join("cert.pem");
        let key_file = files.path().join("key.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        let mut child = Command::new("node")
            .arg("launch.js")
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--oauth",
                "basic",
            ])
            .arg("--cert")
            .arg(&ca_file)
            .arg("--key")
            .arg(&key_file)
            .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for Azurite");
        let stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let marker = "successfully listens on ";
        let mut seen = Vec::new();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => match line.split_once(marker) {
                    Some((_, address)) => break address.trim().to_string(),
                    None => seen.push(line),
                },
                _ => panic!("Azurite did not start: {seen:#?}"),
            }
        };
        // Whatever Azurite prints later is read and dropped, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let http = reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("pem")])
            .build()
            .expect("client");
        Azurite {
            endpoint: format!("{address}/{ACCOUNT}"),
            ca_file,
            http,
            child,
            _stdin: stdin,
            _dir: files,
        }
    }

    /// The server shared by every test of this binary.
    pub fn shared() -> &'static Azurite {
        static SERVER: OnceLock<Azurite> = OnceLock::new();
        SERVER.get_or_init(Azurite::start)
    }

    /// Creates a fresh, private container; answers its URL.
    pub async fn fresh_container(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = format!(
            "{}/build-logs-{}",
            self.endpoint,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let response = self
            .http
            .put(format!("{url}?restype=container"))
            .bearer_auth(storage_token(STORAGE_AUDIENCE, 3600))
            .header("x-ms-version", VERSION)
            .header("content-length", "0")
            .send()
            .await
            .expect("Azurite answers");
        assert_eq!(response.status(), 201, "create container {url}");
        url
    }

    /// The content of the blob at `url` (an authenticated Get Blob), or
    /// `None` when there is none.
    pub async fn read_blob(&self, url: &str) -> Option<Vec<u8>> {
        let response = self.get(url, "").await;
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200, "get blob {url}");
        Some(response.bytes().await.expect("blob").to_vec())
    }

    /// Writes `bytes` as the block blob at `url` (an authenticated Put
    /// Blob, replacing what was there): a change behind the factory's back.
    pub async fn put_blob(&self, url: &str, bytes: Vec<u8>) {
        let response = self
            .http
            .put(url)
            .bearer_auth(storage_token(STORAGE_AUDIENCE, 3600))
            .header("x-ms-version", VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .body(bytes)
            .send()
            .await
            .expect("Azurite answers");
        assert_eq!(response.status(), 201, "put blob {url}");
    }

    /// The committed block ids of the blob at `url`, base64 as on the wire
    /// (an authenticated Get Block List).
    pub async fn committed_blocks(&self, url: &str) -> Vec<String> {
        let response = self
            .get(url, "?comp=blocklist&blocklisttype=committed")
            .await;
        assert_eq!(response.status(), 200, "get block list {url}");
        let xml = response.text().await.expect("block list");
        xml.split("<Name>")
            .skip(1)
            .filter_map(|s| s.split("</Name>").next())
            .map(str::to_string)
            .collect()
    }

    async fn get(&self, url: &str, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{url}{query}"))
            .bearer_auth(storage_token(STORAGE_AUDIENCE, 3600))
            .header("x-ms-version", VERSION)
            .send()
            .await
            .expect("Azurite answers")
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
