//! The Cosmos DB API server the tests run against: `@vercel/cosmosdb-server`
//! (pinned in `tests/cosmos-server/package-lock.json`), started through our
//! launcher (`tests/cosmos-server/launch.js`, which works around the server's
//! bugs) on a free loopback port. The node process is started directly (no npx
//! wrapper) and stopped by its own id; a server shared by a whole test binary
//! stops when the binary exits, because the launcher exits when its stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use image_factory::azure::cosmos::{CosmosAuth, CosmosSettings};
use image_factory::azure::cosmos::{CosmosStore, EMULATOR_KEY};

/// A running test server.
pub struct CosmosServer {
    /// `http://127.0.0.1:PORT/`.
    pub endpoint: String,
    child: Child,
    _stdin: ChildStdin,
}

impl CosmosServer {
    /// Starts a server of one's own (for tests that inject faults or count requests).
    pub fn start() -> CosmosServer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("cosmos-server");
        assert!(
            dir.join("node_modules")
                .join("@vercel")
                .join("cosmosdb-server")
                .is_dir(),
            "the Cosmos DB test server is not installed: run scripts/setup.sh (npm ci in tests/cosmos-server)"
        );
        let mut child = Command::new("node")
            .arg("launch.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node is needed for the Cosmos DB test server");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("launcher output");
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the launcher did not start ({e}): {line:?}"));
        let port = ready["port"].as_u64().expect("port");
        CosmosServer {
            endpoint: format!("http://127.0.0.1:{port}/"),
            child,
            _stdin: stdin,
        }
    }

    /// The server shared by every test of this binary.
    pub fn shared() -> &'static CosmosServer {
        static SERVER: OnceLock<CosmosServer> = OnceLock::new();
        SERVER.get_or_init(CosmosServer::start)
    }

    /// Settings for a fresh container of its own in this server.
    pub fn fresh_settings(&self) -> CosmosSettings {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        CosmosSettings {
            endpoint: self.endpoint.clone(),
            database: "image-factory".into(),
            container: format!("runs-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
            auth: CosmosAuth::EmulatorKey(EMULATOR_KEY.into()),
        }
    }

    /// A store on a fresh, empty container.
    pub async fn fresh_store(&self) -> CosmosStore {
        CosmosStore::connect(&self.fresh_settings())
            .await
            .expect("connect to the test server")
    }

    /// Requests the server has answered so far (launcher hooks excluded).
    pub async fn requests(&self) -> u64 {
        let counts: serde_json::Value =
            reqwest::get(format!("{}_launcher/requests", self.endpoint))
                .await
                .expect("launcher")
                .json()
                .await
                .expect("counts");
        counts["total"].as_u64().expect("total")
    }

    /// The next `times` document requests answer `status` with `x-ms-retry-after-ms`.
    pub async fn inject(&self, status: u16, times: u32, retry_after_ms: u64) {
        let response = reqwest::Client::new()
            .post(format!("{}_launcher/faults", self.endpoint))
            .json(&serde_json::json!({"status": status, "times": times, "retryAfterMs": retry_after_ms}))
            .send()
            .await
            .expect("launcher");
        assert!(response.status().is_success());
    }
}

impl Drop for CosmosServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
