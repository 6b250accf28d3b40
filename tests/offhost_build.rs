//! Builds off the host, end to end: the factory's build stage starts a
//! Container Apps job execution through Resource Manager and returns; the
//! execution is the real `image-factory worker` binary run as a child
//! process, which runs real packer, uploads its log to Blob Storage with a
//! managed-identity token and reports through the Service Bus crate; the
//! report reaches the factory's `build-completed` function and the run goes
//! on to its release. Blob Storage is Azurite (Microsoft's emulator, over
//! HTTPS with a test certificate and `--oauth basic`, `common::azurite`); the
//! rest of the Azure side is one loopback server answering in the documented
//! shapes: Microsoft.App 2025-01-01 (azure-rest-api-specs,
//! specification/app/resource-manager/Microsoft.App/stable/2025-01-01/
//! examples/Job_Get.json, Job_Start.json, Job_Executions_Get.json,
//! Job_Execution_Get.json, Job_Stop_Execution.json), Service Bus's Send
//! Message, and the App Service / Container Apps managed identity endpoint
//! (tests/common/identity.rs), which issues Blob Storage tokens shaped as
//! Entra ID's that Azurite checks. The worker's scratch folder is the
//! factory's data folder, so the local smoke test sees what it built. The
//! job's environment is the one infra/modules/containerapps.bicep gives it,
//! so the worker signs packer in as the app registration with its identity's
//! assertion; the worker's traces go to the loopback ingestion endpoint
//! (tests/common/ingestion.rs), which checks them against the published
//! ingestion (`track`) specification.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use base64::Engine;
use common::azurite::{Azurite, StorageCredential};
use common::identity::{self, IdentityEndpoint, StorageToken, token_for};
use common::ingestion::{self, Ingestion};
use common::spec_validator::{self, Exchange, Violations};
use common::{Factory, Options, example_images};
use image_factory::azure::BuildJob;
use image_factory::azure::arm::{ArmClient, Patience, tokio_sleeper};
use image_factory::azure::blob::{BLOCK_SIZE, BlobLogs, block_id};
use image_factory::azure::jobs::ContainerAppsWorkers;
use image_factory::azure::snapshots::BlobSnapshots;
use image_factory::domain::run::{RepositoryRef, RunStatus, Stage, StageStatus};
use image_factory::host::bus::Outgoing;
use image_factory::local::sources::LocalGit;
use image_factory::ports::sources::{SnapshotStore, SourceHost};
use image_factory::ports::workers::{BuildOrder, Workers};
use image_factory::sources::{Limits, Sources};

const SUBSCRIPTION: &str = "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345";
const JOB_PATH: &str = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/rg-factory/providers/Microsoft.App/jobs/caj-factory-build";
/// The send-only key of the workers' authorization rule (recognisable: it must never leak).
const SAS_KEY: &str = "U0FTLWNhbmFyeS1rZXktZm9yLXdvcmtlcnMtc2VuZA==";
/// The app registration packer signs in as (`IMAGE_FACTORY_PACKER_CLIENT_ID` on the job).
const PACKER_APP: &str = "22222222-3333-4444-5555-666666666666";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// The worker's client assertion for packer, from the identity stand-in.
fn assertion() -> String {
    token_for("api://AzureADTokenExchange")
}
/// The Service Bus namespace of the workers' connection string.
const SB_NAMESPACE: &str = "sb-factory";
/// The workers' send-only authorization rule.
const SAS_RULE: &str = "workers-send";

/// One job execution of the fake Container Apps job.
struct Execution {
    name: String,
    env: Vec<Value>,
    started: DateTime<Utc>,
    status: &'static str,
    ended: Option<DateTime<Utc>>,
    child: Option<tokio::process::Child>,
}

/// What the next started executions do instead of running the worker.
#[derive(Clone, Copy)]
enum Fate {
    /// The container dies at once (exit 1, no report).
    Crash,
    /// The container hangs (never reports).
    Hang,
}

#[derive(Default)]
struct Azure {
    base: String,
    data_dir: PathBuf,
    executions: Vec<Execution>,
    starts: Vec<Value>,
    /// How many times the executions were listed.
    lists: usize,
    stops: Vec<String>,
    /// The build logs' container in Azurite.
    logs_url: String,
    /// The source snapshots' container in Azurite.
    sources_url: String,
    /// The root certificate the worker trusts for Azurite.
    logs_ca: PathBuf,
    reports: Vec<(HeaderMap, String)>,
    fates: Vec<Fate>,
    unauthorized: Vec<String>,
    bus: Option<image_factory::host::bus::Bus>,
    identity: IdentityEndpoint,
    /// More environment for the next workers' containers.
    worker_env: Vec<(String, String)>,
    violations: Violations,
}

type Shared = Arc<Mutex<Azure>>;

struct FakeAzure {
    state: Shared,
    addr: SocketAddr,
}

impl Drop for FakeAzure {
    /// Fails the test when any Resource Manager exchange broke the specification.
    fn drop(&mut self) {
        if let Ok(azure) = self.state.lock() {
            let violations = azure.violations.clone();
            drop(azure);
            violations.assert_none();
        }
    }
}

impl FakeAzure {
    /// The fake, its workers building with `data_dir` as scratch.
    async fn start(data_dir: PathBuf) -> FakeAzure {
        spec_validator::ready().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let azurite = Azurite::shared();
        let state = Arc::new(Mutex::new(Azure {
            base: format!("http://{addr}"),
            data_dir,
            logs_url: azurite.fresh_container().await,
            sources_url: azurite.fresh_container().await,
            logs_ca: azurite.ca_file.clone(),
            ..Azure::default()
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        FakeAzure { state, addr }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Azure> {
        self.state.lock().expect("lock")
    }

    /// Updates every execution's status from its process.
    fn refresh(&self) {
        let mut azure = self.lock();
        for execution in &mut azure.executions {
            if let Some(child) = execution.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                execution.status = if status.success() {
                    "Succeeded"
                } else {
                    "Failed"
                };
                execution.ended = Some(Utc::now());
                execution.child = None;
            }
        }
    }

    fn job_workers(&self) -> ContainerAppsWorkers {
        ContainerAppsWorkers::new(self.arm(), SUBSCRIPTION, &self.build_job())
    }

    fn arm(&self) -> ArmClient {
        let patience = Patience {
            poll_interval: Duration::from_millis(10),
            ..Patience::default()
        };
        ArmClient::new(
            &self.base(),
            Arc::new(common::arm_server::FixedCredential),
            tokio_sleeper(),
            patience,
        )
        .expect("arm client")
    }

    fn build_job(&self) -> BuildJob {
        BuildJob {
            resource_group: "rg-factory".into(),
            name: "caj-factory-build".into(),
            log_container_url: self.lock().logs_url.clone(),
        }
    }
}

/// An execution as Job_Execution_Get's example shows it (`endTime` only once it ended).
fn execution_json(e: &Execution) -> Value {
    let mut execution = json!({
        "name": e.name,
        "id": format!("{JOB_PATH}/executions/{}", e.name),
        "type": "Microsoft.App/jobs/executions",
        "properties": {
            "status": e.status,
            "startTime": e.started.to_rfc3339(),
            "template": { "containers": [{
                "image": "registry.example/image-factory-worker:1",
                "name": "worker",
                "env": e.env,
                "resources": { "cpu": 1.0, "memory": "2Gi" }
            }] }
        }
    });
    if let Some(ended) = e.ended {
        execution["properties"]["endTime"] = json!(ended.to_rfc3339());
    }
    execution
}

async fn answer(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // The managed identity endpoint of the worker's container.
    if path == identity::PATH {
        let identity = state.lock().expect("lock").identity.clone();
        return identity.answer(&query, &headers);
    }
    // Service Bus: Send Message to the completion queue.
    if path == "/build-completed/messages" && method == Method::POST {
        let bus = {
            let mut azure = state.lock().expect("lock");
            let resource = format!("https://{SB_NAMESPACE}.servicebus.windows.net{path}");
            if let Err(detail) = check_sas(&auth, &resource, SAS_RULE, SAS_KEY, Utc::now()) {
                azure
                    .unauthorized
                    .push(format!("{method} {path}: {detail}"));
                return service_bus_error(StatusCode::UNAUTHORIZED, &detail);
            }
            if let Err(detail) = check_broker_properties(&headers) {
                azure
                    .unauthorized
                    .push(format!("{method} {path}: {detail}"));
                return service_bus_error(StatusCode::BAD_REQUEST, &detail);
            }
            azure
                .reports
                .push((headers.clone(), String::from_utf8_lossy(&body).to_string()));
            azure.bus.clone()
        };
        if let Some(bus) = bus {
            bus.send(vec![Outgoing {
                queue: "build-completed".into(),
                body: String::from_utf8_lossy(&body).to_string(),
                properties: serde_json::Map::new(),
                scheduled_at: None,
            }])
            .await
            .expect("forward the report");
        }
        return StatusCode::CREATED.into_response();
    }
    // Resource Manager: the Container Apps job, every exchange checked
    // against Microsoft.App 2025-01-01 (Jobs.json).
    let request_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, reply) = {
        let mut azure = state.lock().expect("lock");
        if auth.is_empty() {
            azure.unauthorized.push(format!("{method} {path}"));
            return StatusCode::UNAUTHORIZED.into_response();
        }
        match path.strip_prefix(JOB_PATH) {
            Some(tail) => job_answer(&mut azure, &method, tail, &request_body),
            None => (StatusCode::NOT_FOUND, Value::Null),
        }
    };
    let violations = state.lock().expect("lock").violations.clone();
    let exchange = Exchange {
        method: method.to_string(),
        url: format!("https://management.azure.com{uri}"),
        request_headers: Vec::new(),
        request_body,
        status: status.as_u16(),
        response_headers: Vec::new(),
        response_body: reply.clone(),
    };
    let checked = tokio::task::spawn_blocking(move || spec_validator::check(&exchange))
        .await
        .expect("check the exchange");
    if let Err(violation) = checked {
        let refused = violation.is_routing() || violation.in_request();
        let (arm_status, arm_body) = violation.arm_answer();
        violations.push(violation);
        if refused {
            return (
                StatusCode::from_u16(arm_status).expect("status"),
                axum::Json(arm_body),
            )
                .into_response();
        }
    }
    if reply.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(reply)).into_response()
    }
}

/// The Container Apps job's answer to `method` on `tail` (the path after
/// the job's id), with its state changes: the job (Job_Get's shape), a start
/// (Job_Start), the executions (Job_Executions_Get, Job_Execution_Get) and a
/// stop (Job_Stop_Execution).
fn job_answer(azure: &mut Azure, method: &Method, tail: &str, body: &Value) -> (StatusCode, Value) {
    match (method.clone(), tail) {
        (Method::GET, "") => (
            StatusCode::OK,
            json!({
                "id": JOB_PATH,
                "name": "caj-factory-build",
                "type": "Microsoft.App/jobs",
                "location": "France Central",
                "properties": {
                    "provisioningState": "Succeeded",
                    "configuration": { "replicaTimeout": 14400, "replicaRetryLimit": 0, "triggerType": "Manual",
                        "manualTriggerConfig": { "replicaCompletionCount": 1, "parallelism": 1 } },
                    "template": { "containers": [{
                        "image": "registry.example/image-factory-worker:1",
                        "name": "worker",
                        "env": [
                            { "name": "AZURE_CLIENT_ID", "value": identity::CLIENT_ID },
                            { "name": "IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION", "secretRef": "servicebus-send" },
                            { "name": "IMAGE_FACTORY_SOURCES_URL", "value": azure.sources_url },
                            { "name": "IMAGE_FACTORY_PACKER_CLIENT_ID", "value": PACKER_APP },
                            { "name": "ARM_SUBSCRIPTION_ID", "value": SUBSCRIPTION },
                            { "name": "ARM_TENANT_ID", "value": TENANT }
                        ],
                        "resources": { "cpu": 1.0, "memory": "2Gi" }
                    }] }
                }
            }),
        ),
        (Method::POST, "/start") => {
            let template = body.clone();
            azure.starts.push(template.clone());
            let name = format!("caj-factory-build-{:07}", azure.starts.len());
            let env = template["containers"][0]["env"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let fate = if azure.fates.is_empty() {
                None
            } else {
                Some(azure.fates.remove(0))
            };
            let child = spawn_worker(azure, &env, fate);
            azure.executions.push(Execution {
                name: name.clone(),
                env,
                started: Utc::now(),
                status: "Running",
                ended: None,
                child: Some(child),
            });
            (
                StatusCode::OK,
                json!({ "name": name, "id": format!("{JOB_PATH}/executions/{name}") }),
            )
        }
        (Method::GET, "/executions") => {
            azure.lists += 1;
            let value: Vec<Value> = azure.executions.iter().map(execution_json).collect();
            (StatusCode::OK, json!({ "value": value }))
        }
        (method, tail) if tail.starts_with("/executions/") => {
            let rest = &tail["/executions/".len()..];
            let (name, stop) = match rest.strip_suffix("/stop") {
                Some(name) => (name, true),
                None => (rest, false),
            };
            let Some(index) = azure.executions.iter().position(|e| e.name == name) else {
                return (
                    StatusCode::NOT_FOUND,
                    json!({ "error": { "code": "ResourceNotFound", "message": "no such execution" } }),
                );
            };
            if stop && method == Method::POST {
                azure.stops.push(name.to_string());
                let execution = &mut azure.executions[index];
                if let Some(mut child) = execution.child.take() {
                    let _ = child.start_kill();
                }
                execution.status = "Stopped";
                execution.ended = Some(Utc::now());
                return (StatusCode::OK, Value::Null);
            }
            (StatusCode::OK, execution_json(&azure.executions[index]))
        }
        _ => (StatusCode::NOT_FOUND, Value::Null),
    }
}

/// Checks a Service Bus `SharedAccessSignature` header as Service Bus does:
/// the rule is `rule`, `sr` (URL-encoded) names `resource` or a prefix of it
/// at a path boundary, `se` is in the future, and `sig` is the base64
/// HMAC-SHA256 of `<sr as sent>\n<se>` keyed with the rule's key (its
/// characters, not its base64 decoding). The error is Service Bus's detail.
fn check_sas(
    header: &str,
    resource: &str,
    rule: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<(), String> {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let token = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or("MissingToken: the authorization header is not a SharedAccessSignature")?;
    let raw = |name: &str| {
        token
            .split('&')
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    let decoded = |name: &str| -> Option<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(token).ok()?;
        pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    };
    let (Some(sr), Some(sig), Some(se), Some(skn)) =
        (raw("sr"), decoded("sig"), decoded("se"), decoded("skn"))
    else {
        return Err("InvalidToken: the token lacks sr, sig, se or skn".into());
    };
    if skn != rule {
        return Err(format!(
            "InvalidSignature: no authorization rule {skn} on this entity"
        ));
    }
    let audience = decoded("sr").unwrap_or_default().to_ascii_lowercase();
    let target = resource.to_ascii_lowercase();
    let audience = audience.trim_end_matches('/');
    let covers = target == audience || target.starts_with(&format!("{audience}/"));
    if audience.is_empty() || !covers {
        return Err(format!(
            "InvalidAudience: the token is for {audience}, not {resource}"
        ));
    }
    let expiry: i64 = se
        .parse()
        .map_err(|_| "InvalidToken: se is not a number of seconds".to_string())?;
    if expiry <= now.timestamp() {
        return Err(format!("ExpiredToken: the token expired at {expiry}"));
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .map_err(|e| format!("the test key is unusable: {e}"))?;
    mac.update(format!("{sr}\n{se}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if sig != expected {
        return Err("InvalidSignature: the token has an invalid signature".into());
    }
    Ok(())
}

/// The broker properties Service Bus reads from `BrokerProperties` on a send.
const BROKER_PROPERTIES: &[&str] = &[
    "ContentType",
    "CorrelationId",
    "ForcePersistence",
    "Label",
    "MessageId",
    "PartitionKey",
    "ReplyTo",
    "ReplyToSessionId",
    "ScheduledEnqueueTimeUtc",
    "SessionId",
    "TimeToLive",
    "To",
    "ViaPartitionKey",
];

/// Checks the `BrokerProperties` header of a send: a JSON object of known
/// broker properties whose `MessageId` (the report's deduplication key) is
/// a non-empty string of at most 128 characters.
fn check_broker_properties(headers: &HeaderMap) -> Result<(), String> {
    let text = headers
        .get("brokerproperties")
        .and_then(|v| v.to_str().ok())
        .ok_or("BrokerProperties is missing")?;
    let properties: serde_json::Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| format!("BrokerProperties is not a JSON object: {e}"))?;
    if let Some(unknown) = properties
        .keys()
        .find(|k| !BROKER_PROPERTIES.contains(&k.as_str()))
    {
        return Err(format!(
            "BrokerProperties has an unknown property {unknown}"
        ));
    }
    match properties.get("MessageId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= 128 => Ok(()),
        _ => Err("BrokerProperties.MessageId must be a string of 1 to 128 characters".into()),
    }
}

/// Service Bus's error answer: `<Error><Code>…</Code><Detail>…</Detail></Error>`.
fn service_bus_error(status: StatusCode, detail: &str) -> Response {
    let detail = detail.replace('&', "&amp;").replace('<', "&lt;");
    (
        status,
        [("content-type", "application/xml; charset=utf-8")],
        format!(
            "<Error><Code>{}</Code><Detail>{detail}. TrackingId:00000000-0000-0000-0000-000000000000_G0, SystemTracker:{SB_NAMESPACE}.servicebus.windows.net:build-completed/messages</Detail></Error>",
            status.as_u16()
        ),
    )
        .into_response()
}

/// Runs the execution's container: the real worker, or a stand-in that crashes or hangs.
fn spawn_worker(azure: &Azure, env: &[Value], fate: Option<Fate>) -> tokio::process::Child {
    let connection = format!(
        "Endpoint=sb://{SB_NAMESPACE}.servicebus.windows.net/;SharedAccessKeyName={SAS_RULE};SharedAccessKey={SAS_KEY};EntityPath=build-completed"
    );
    let mut command = match fate {
        None => {
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"));
            c.arg("worker");
            c
        }
        Some(Fate::Crash) => {
            let mut c = tokio::process::Command::new("sh");
            c.args(["-c", "exit 1"]);
            c
        }
        Some(Fate::Hang) => {
            let mut c = tokio::process::Command::new("sleep");
            c.arg("600");
            c
        }
    };
    command.env_clear();
    command.env("PATH", std::env::var("PATH").unwrap_or_default());
    for var in env {
        let name = var["name"].as_str().unwrap_or_default();
        let value = match (var["value"].as_str(), var["secretRef"].as_str()) {
            (Some(v), _) => v.to_string(),
            (None, Some("servicebus-send")) => connection.clone(),
            _ => continue,
        };
        command.env(name, value);
    }
    // What the platform and the container image provide.
    command.envs(
        azure
            .worker_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    command
        .env(
            "IDENTITY_ENDPOINT",
            format!("{}{}", azure.base, identity::PATH),
        )
        .env("IDENTITY_HEADER", identity::HEADER_SECRET)
        .env("IMAGE_FACTORY_DATA", &azure.data_dir)
        .env("IMAGE_FACTORY_SERVICEBUS_ENDPOINT", &azure.base)
        .env("IMAGE_FACTORY_BUILD_LOGS_CA", &azure.logs_ca)
        .env("RUST_LOG", "debug")
        .kill_on_drop(true);
    // The container's output, kept for the secret checks.
    let log = std::fs::File::create(
        azure
            .data_dir
            .join(format!("worker-{}.log", azure.starts.len())),
    )
    .expect("worker log");
    command
        .stdout(log.try_clone().expect("worker log"))
        .stderr(log);
    command.spawn().expect("spawn the worker")
}

/// A factory whose builds of the example image run on the fake job, with a
/// clock the test can move.
async fn factory(offset_minutes: Arc<AtomicI64>) -> (Factory, FakeAzure) {
    factory_of(offset_minutes, example_images()).await
}

/// A factory of the images in `images_dir` whose builds run on the fake job.
async fn factory_of(offset_minutes: Arc<AtomicI64>, images_dir: PathBuf) -> (Factory, FakeAzure) {
    factory_with(offset_minutes, images_dir, |images| {
        Arc::new(LocalGit::new(images)) as Arc<dyn SourceHost>
    })
    .await
}

/// The snapshot store of the fake's sources container, as the function
/// app signs in to it.
fn snapshot_store(azure: &FakeAzure) -> Arc<dyn SnapshotStore> {
    let azurite = Azurite::shared();
    Arc::new(
        BlobSnapshots::new(
            &azure.lock().sources_url,
            Arc::new(StorageCredential),
            Some(&azurite.ca_file),
            Limits::default().max_archive(),
        )
        .expect("the snapshot store"),
    )
}

/// A factory of the images in `images_dir` whose runs' sources come from
/// the host `host` makes of it, their snapshots kept in the fake's Blob
/// Storage container, and whose builds run on the fake job.
async fn factory_with(
    offset_minutes: Arc<AtomicI64>,
    images_dir: PathBuf,
    host: impl FnOnce(&std::path::Path) -> Arc<dyn SourceHost>,
) -> (Factory, FakeAzure) {
    let data = tempfile::TempDir::new().expect("temp dir");
    let azure = FakeAzure::start(data.path().to_path_buf()).await;
    let workers = Arc::new(azure.job_workers());
    let job = azure.build_job();
    let sources = Arc::new(Sources::new(
        host(&images_dir),
        snapshot_store(&azure),
        Limits::default(),
    ));
    let options = Options {
        tweak: Box::new(move |app| {
            app.sources = sources;
            app.logs = Arc::new(
                BlobLogs::new(&job.log_container_url, Arc::new(StorageCredential), None)
                    .expect("the log store"),
            );
            app.workers = Some(workers);
            app.clock = Arc::new(move || {
                Utc::now() + chrono::Duration::minutes(offset_minutes.load(Ordering::SeqCst))
            });
        }),
        ..Options::with_images(&images_dir)
    };
    let factory = Factory::start_in(data, options).await;
    azure.lock().bus = Some(factory.bus().clone());
    (factory, azure)
}

/// Waits until the fake job has `count` executions and the last one ended.
async fn last_execution_ends(azure: &FakeAzure, count: usize) {
    for _ in 0..600 {
        azure.refresh();
        {
            let state = azure.lock();
            if state.executions.len() >= count
                && state
                    .executions
                    .last()
                    .is_some_and(|e| e.status != "Running")
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {count} did not end");
}

/// Pushes `commit` and waits until its build has started a worker that is
/// still running; answers the run.
async fn build_started(factory: &Factory, commit: &str) -> image_factory::domain::run::Run {
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let id = format!("push-example-{commit}");
    factory
        .wait_for(&id, Duration::from_secs(30), |r| {
            r.stage(Stage::Build)
                .current_attempt()
                .is_some_and(|a| a.worker.is_some() && a.finished_at.is_none())
        })
        .await
}

/// Fails if `text` holds any part of a token the identity endpoint issued
/// (the claims or the signature of the JWT), or if none was issued.
fn assert_no_token(azure: &Azure, text: &str) {
    let issued = azure.identity.issued();
    assert!(!issued.is_empty(), "the worker asked for no token");
    for token in &issued {
        // A storage token is a JWT whose header is the same for every token:
        // its claims and signature are what identify it.
        let parts: Vec<&str> = match token.split('.').collect::<Vec<_>>() {
            jwt if jwt.len() == 3 => jwt[1..].to_vec(),
            _ => vec![token.as_str()],
        };
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            assert!(!text.contains(part), "a token in:\n{text}");
        }
    }
}

/// Builds with the identity endpoint handing out `token`: Azurite refuses
/// the worker's download of the run's snapshot, and the run fails at its
/// build naming the refusal and Azurite's reason (`reason`), with no token
/// in the run or the worker's output.
async fn a_refused_storage_token_is_reported(token: StorageToken, commit: &str, reason: &str) {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    azure.lock().identity.set_storage_token(token);
    factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    let run = factory
        .wait_status(&format!("push-example-{commit}"), RunStatus::Failed)
        .await;
    let worker = run.stage(Stage::Build).attempts[0]
        .worker
        .clone()
        .expect("built by a worker");
    let failure = run.failure.clone().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Build));
    assert!(
        failure
            .reason
            .starts_with("cannot download the run's snapshot: cannot read the snapshot")
            && failure
                .reason
                .contains("Blob Storage refused the worker's token (403: AuthenticationFailed")
            && failure.reason.contains(reason),
        "{}",
        failure.reason
    );
    // Nothing was built, so there is no log to upload.
    assert_eq!(Azurite::shared().read_blob(&worker.log_url).await, None);
    let stored = serde_json::to_string(&run).expect("json");
    let output = std::fs::read_to_string(factory.data.path().join("worker-1.log"))
        .expect("the worker's output");
    {
        let state = azure.lock();
        assert_no_token(&state, &stored);
        assert_no_token(&state, &output);
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_storage_token_is_refused_by_blob_storage_and_the_run_says_so() {
    a_refused_storage_token_is_reported(
        StorageToken::Expired,
        "0ff0057b011c000000000000000000000000c0de",
        "Lifetime validation failed. The token is expired.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_token_for_another_audience_is_refused_and_the_run_says_so() {
    a_refused_storage_token_is_reported(
        StorageToken::WrongAudience,
        "0ff0057b011d000000000000000000000000c0de",
        "Invalid token audience.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_storage_token_is_refused_and_the_run_says_so() {
    a_refused_storage_token_is_reported(
        StorageToken::Missing,
        "0ff0057b011e000000000000000000000000c0de",
        "Authentication scheme Bearer is not supported.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_several_blocks_is_uploaded_whole_and_a_retry_rewrites_the_same_blob() {
    let azurite = Azurite::shared();
    let url = format!(
        "{}/push-example-abc/w1.log",
        azurite.fresh_container().await
    );
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("build.log");
    // Two full blocks and a short one.
    let mut content: Vec<u8> = (0..2 * BLOCK_SIZE + 1234)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&path, &content).expect("write the log");
    let logs =
        BlobLogs::new(&url, Arc::new(StorageCredential), Some(&azurite.ca_file)).expect("uploader");
    logs.upload_file(&path, &url).await.expect("upload");
    assert!(
        azurite.read_blob(&url).await == Some(content.clone()),
        "the blob is the log"
    );
    let ids = |count: usize| -> Vec<String> {
        (0..count)
            .map(|i| base64::engine::general_purpose::STANDARD.encode(block_id(i)))
            .collect()
    };
    assert_eq!(azurite.committed_blocks(&url).await, ids(3));
    // Uploaded again (a retried worker, a longer log): the same blob, the same block ids.
    content.extend_from_slice(&[b'x'; BLOCK_SIZE]);
    std::fs::write(&path, &content).expect("write the log");
    logs.upload_file(&path, &url).await.expect("upload again");
    assert!(
        azurite.read_blob(&url).await == Some(content),
        "the blob is the new log"
    );
    assert_eq!(azurite.committed_blocks(&url).await, ids(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_on_a_job_execution_and_its_report_moves_the_run_to_release() {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    let commit = "0ff0057b0117000000000000000000000000beef";
    let run = factory
        .push_and_wait(commit, RunStatus::WaitingForApproval)
        .await;

    let order = {
        let state = azure.lock();
        assert_eq!(state.starts.len(), 1, "one build, one job execution");
        assert!(state.unauthorized.is_empty(), "{:?}", state.unauthorized);
        // The order went in the worker container's environment, next to the job's own settings.
        let env = state.starts[0]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            env.iter().any(|e| e["secretRef"] == "servicebus-send"),
            "{env:?}"
        );
        let order: BuildOrder = env
            .iter()
            .find(|e| e["name"] == "IMAGE_FACTORY_BUILD_ORDER")
            .and_then(|e| e["value"].as_str())
            .and_then(|v| serde_json::from_str(v).ok())
            .expect("the order is in the environment");
        assert_eq!(order.run_id, run.id);
        assert_eq!(order.version, run.version.to_string());
        // The order names the run's snapshot, which the worker downloaded,
        // checked and built: its container holds no images.
        let source = run.source.clone().expect("the run's source");
        assert_eq!(order.snapshot, Some(source.snapshot.clone()));
        assert!(
            !env.iter().any(|e| e["name"] == "IMAGE_FACTORY_IMAGES"),
            "{env:?}"
        );

        // The run records the worker, and the log where the worker uploaded it.
        let attempt = &run.stage(Stage::Build).attempts[0];
        let worker = attempt
            .worker
            .clone()
            .expect("the attempt records its worker");
        assert_eq!(worker.execution, state.executions[0].name);
        assert_eq!(worker.id, order.worker_id);
        let build = run.build.clone().expect("build result");
        assert_eq!(build.log, order.log_url);
        assert!(
            build
                .artifacts
                .iter()
                .any(|a| a.files.iter().any(|f| f.ends_with("index.html"))),
            "{build:?}"
        );
        assert_eq!(
            order.log_url,
            format!("{}/{}/{}.log", state.logs_url, run.id, order.worker_id)
        );

        // The report went through Service Bus with its message id and a SAS, not the key.
        assert_eq!(state.reports.len(), 1);
        let (headers, body) = &state.reports[0];
        let broker: Value = serde_json::from_str(
            headers
                .get("brokerproperties")
                .and_then(|v| v.to_str().ok())
                .expect("BrokerProperties"),
        )
        .expect("broker properties json");
        assert_eq!(
            broker["MessageId"],
            format!("{}-{}", run.id, order.worker_id)
        );
        assert!(body.contains(&order.worker_id));
        let stored = serde_json::to_string(&run).expect("json");
        assert!(!stored.contains(SAS_KEY));
        assert_no_token(&state, &stored);
        order
    };
    // Blob Storage (Azurite) holds packer's log, byte for byte, where the run says.
    let uploaded = Azurite::shared()
        .read_blob(&order.log_url)
        .await
        .expect("the log was uploaded");
    let packer_log = std::fs::read(
        factory
            .data
            .path()
            .join("runs")
            .join(&run.id)
            .join("build.log"),
    )
    .expect("packer's log on the worker");
    assert_eq!(
        String::from_utf8_lossy(&uploaded),
        String::from_utf8_lossy(&packer_log)
    );
    let log = String::from_utf8_lossy(&uploaded);
    assert!(
        log.contains("Build 'golden.null.golden' finished") || log.contains("ui,say"),
        "{log}"
    );
    // Nor does the worker's own output, at debug level, carry either secret.
    let output = std::fs::read_to_string(factory.data.path().join("worker-1.log"))
        .expect("the worker's output");
    assert!(output.contains("build reported"), "{output}");
    assert!(
        output.contains("snapshot downloaded and checked"),
        "{output}"
    );
    assert!(
        !output.contains(SAS_KEY),
        "a secret in the worker's output:\n{output}"
    );
    assert_no_token(&azure.lock(), &output);

    // The operators' page of the run names the worker and links its log.
    let page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{}", factory.url, run.id))
        .send()
        .await
        .expect("run page")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains("Build worker") && page.contains(&format!("href=\"{}\"", order.log_url)),
        "{page}"
    );

    let link = factory.approval_link(&run.id, "platform-lead");
    assert_eq!(factory.decide(&link, "approve").await.status(), 200);
    let released = factory.wait_status(&run.id, RunStatus::Released).await;
    assert_eq!(
        released.release.map(|r| r.build_log),
        Some(order.log_url.clone())
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_packer_build_on_the_worker_fails_the_run_with_the_uploaded_log() {
    let images = tempfile::TempDir::new().expect("images");
    let folder = common::copy_example(images.path(), "example");
    std::fs::write(
        folder.join("scripts/provision.sh"),
        "#!/bin/sh\necho 'Timeout waiting for WinRM.' >&2\nexit 1\n",
    )
    .expect("break the template");
    let (factory, azure) =
        factory_of(Arc::new(AtomicI64::new(0)), images.path().to_path_buf()).await;
    let failed = factory
        .push_and_wait(
            "0ff0057b011b000000000000000000000000c0de",
            RunStatus::Failed,
        )
        .await;
    let failure = failed.failure.clone().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Build));
    let worker = failed.stage(Stage::Build).attempts[0]
        .worker
        .clone()
        .expect("built by a worker");
    // The reason names the uploaded log, not the worker's scratch file, and
    // quotes the line that shows the cause; the diagnosis says what to do.
    assert!(
        failure.reason.contains("packer build exited with code 1")
            && failure
                .reason
                .contains(&format!("full log: {}", worker.log_url))
            && !failure.reason.contains("build.log"),
        "{}",
        failure.reason
    );
    assert_eq!(
        failure.diagnosis.map(|d| d.kind),
        Some("winrm-unreachable".to_string())
    );
    let log = Azurite::shared()
        .read_blob(&worker.log_url)
        .await
        .expect("uploaded");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("Timeout waiting for WinRM."), "{log}");
    // The worker reported the failure and ended well: nothing for the watchdog.
    azure.refresh();
    assert_eq!(azure.lock().executions[0].status, "Succeeded");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_patch_evidence_is_uploaded_beside_the_log_and_reported_with_its_hash() {
    use image_factory::domain::evidence::{Evidence, EvidenceRecord};
    let images = tempfile::TempDir::new().expect("images");
    let folder = common::copy_example(images.path(), "example");
    let toml = folder.join("image.toml");
    let text = std::fs::read_to_string(&toml).expect("image.toml");
    std::fs::write(
        &toml,
        text.replace(
            "image_name = \"example\"",
            "image_name = \"example\"\nevidence_os_build = \"10.0.20348.4648\"\nevidence_hotfixes = \"KB5073457\"",
        ),
    )
    .expect("ask for stand-in evidence");
    let (factory, _azure) =
        factory_of(Arc::new(AtomicI64::new(0)), images.path().to_path_buf()).await;
    let run = factory
        .push_and_wait(
            "0ff0057b0e1d000000000000000000000000e1de",
            RunStatus::WaitingForApproval,
        )
        .await;
    let worker = run.stage(Stage::Build).attempts[0]
        .worker
        .clone()
        .expect("built by a worker");
    let record = run
        .build
        .as_ref()
        .and_then(|b| b.evidence.as_deref())
        .expect("the report carries the evidence record");
    let EvidenceRecord::Collected {
        sha256,
        location,
        evidence,
        ..
    } = record
    else {
        panic!("{record:?}")
    };
    // Beside the log, in the same container, under the run and the worker.
    let stem = worker.log_url.strip_suffix(".log").expect("a log");
    assert_eq!(*location, format!("{stem}.image-evidence.json"));
    let uploaded = Azurite::shared()
        .read_blob(location)
        .await
        .expect("the evidence was uploaded");
    assert_eq!(image_factory::domain::sha256_hex(&uploaded), *sha256);
    let read = Evidence::parse(&String::from_utf8_lossy(&uploaded)).expect("the file");
    assert_eq!(read, **evidence);
    assert!(evidence.stand_in && evidence.os.build.to_string() == "10.0.20348.4648");
    assert_eq!(
        evidence.image.as_ref().and_then(|i| i.run_id.as_deref()),
        Some(run.id.as_str())
    );
    // The runs API serves the record (`patch status --image` reads it there).
    let served: EvidenceRecord = factory
        .http
        .get(format!("{}/api/runs/{}?evidence", factory.url, run.id))
        .send()
        .await
        .expect("evidence")
        .json()
        .await
        .expect("an evidence record");
    assert_eq!(served, *record);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_worker_is_replaced_once_and_a_second_loss_fails_the_run() {
    let offset = Arc::new(AtomicI64::new(0));
    let (factory, azure) = factory(offset.clone()).await;
    azure.lock().fates = vec![Fate::Crash];
    let run = build_started(&factory, "0ff0057b0117000000000000000000000000c0de").await;
    let id = run.id.as_str();
    last_execution_ends(&azure, 1).await;
    // The container died without a report: the run still shows the build running.
    let run = factory.run(id).await.expect("run");
    assert_eq!(run.stage(Stage::Build).status, StageStatus::Running);
    // Within the grace after its end, the watchdog waits for a late report.
    factory.sweep().await;
    assert_eq!(azure.lock().starts.len(), 1);
    // Past it, the worker is lost and the build starts again on a new worker.
    offset.store(5, Ordering::SeqCst);
    factory.sweep().await;
    let run = factory.wait_status(id, RunStatus::WaitingForApproval).await;
    assert_eq!(azure.lock().starts.len(), 2, "one new worker");
    let attempts = &run.stage(Stage::Build).attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let first = attempts[0].outcome.clone().unwrap_or_default();
    assert!(
        first.contains("worker lost") && first.contains("ended Failed"),
        "{first}"
    );

    // A second image whose workers always die: the run fails after two losses.
    azure.lock().fates = vec![Fate::Crash, Fate::Crash];
    offset.store(0, Ordering::SeqCst);
    let id = "push-example-0ff0057b0118000000000000000000000000c0de";
    for (count, minutes) in [(3, 10), (4, 20)] {
        if count == 3 {
            build_started(&factory, "0ff0057b0118000000000000000000000000c0de").await;
        } else {
            factory
                .wait_for(id, Duration::from_secs(30), |r| {
                    r.stage(Stage::Build)
                        .current_attempt()
                        .is_some_and(|a| a.worker.is_some() && a.finished_at.is_none())
                })
                .await;
        }
        last_execution_ends(&azure, count).await;
        offset.store(minutes, Ordering::SeqCst);
        factory.sweep().await;
    }
    let failed = factory.wait_status(id, RunStatus::Failed).await;
    let reason = failed.failure.map(|f| f.reason).unwrap_or_default();
    assert!(reason.contains("lost 2 times"), "{reason}");
    assert_eq!(azure.lock().starts.len(), 4, "no third worker");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_past_the_build_timeout_is_stopped_and_the_run_fails() {
    let offset = Arc::new(AtomicI64::new(0));
    let (factory, azure) = factory(offset.clone()).await;
    azure.lock().fates = vec![Fate::Hang];
    let run = build_started(&factory, "0ff0057b0119000000000000000000000000c0de").await;
    let id = run.id.as_str();
    // Before the timeout (10 minutes for the example, plus the grace) nothing happens.
    offset.store(20, Ordering::SeqCst);
    factory.sweep().await;
    assert!(azure.lock().stops.is_empty());
    offset.store(30, Ordering::SeqCst);
    factory.sweep().await;
    let failed = factory.wait_status(id, RunStatus::Failed).await;
    let reason = failed.failure.map(|f| f.reason).unwrap_or_default();
    assert!(
        reason.contains("ran past the build timeout of 10 minutes"),
        "{reason}"
    );
    {
        let state = azure.lock();
        assert_eq!(state.stops, vec![state.executions[0].name.clone()]);
        assert_eq!(state.executions[0].status, "Stopped");
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_order_adopts_its_worker_and_a_dead_one_is_replaced() {
    let data = tempfile::TempDir::new().expect("temp dir");
    let azure = FakeAzure::start(data.path().to_path_buf()).await;
    azure.lock().fates = vec![Fate::Hang, Fate::Crash, Fate::Hang, Fate::Hang];
    let workers = azure.job_workers();
    let logs = azure.lock().logs_url.clone();
    let order = |message: &str, worker: &str| BuildOrder {
        run_id: "push-example-abc".parse().unwrap(),
        image: "example".into(),
        snapshot: None,
        version: "2026.1125.0".into(),
        commit: Some("abc".into()),
        base_image_version: None,
        message_id: message.into(),
        worker_id: worker.into(),
        log_url: format!("{logs}/push-example-abc/{worker}.log"),
        lost_workers: Vec::new(),
        // A later delivery: an earlier one may have started a worker.
        delivery: 2,
    };
    let first = workers.start(&order("m1", "w1")).await.expect("start");
    // The same stage message again (a delivery after a crash): the running worker is adopted.
    let again = workers.start(&order("m1", "w2")).await.expect("adopt");
    assert_eq!(
        (&again.id, &again.execution, &again.log_url),
        (&first.id, &first.execution, &first.log_url)
    );
    assert_eq!(azure.lock().starts.len(), 1, "no second build");
    // Another message of the same run is another build.
    let other = workers.start(&order("m2", "w3")).await.expect("start");
    assert_ne!(other.execution, first.execution);
    last_execution_ends(&azure, 2).await;
    // Its worker died: a redelivery starts a new one rather than adopting a corpse.
    let replaced = workers.start(&order("m2", "w4")).await.expect("start");
    assert_eq!(replaced.id, "w4");
    assert_eq!(azure.lock().starts.len(), 3);
    assert_eq!(
        workers.state(&replaced).await.expect("state"),
        image_factory::ports::workers::WorkerState::Running
    );
    workers.stop(&replaced).await.expect("stop");
    workers
        .stop(&replaced)
        .await
        .expect("stopping twice is fine");
    assert!(matches!(
        workers.state(&replaced).await.expect("state"),
        image_factory::ports::workers::WorkerState::Ended { ref status, .. } if status == "Stopped"
    ));
    let mut gone = replaced.clone();
    gone.execution = "caj-factory-build-9999999".into();
    assert_eq!(
        workers.state(&gone).await.expect("state"),
        image_factory::ports::workers::WorkerState::Missing
    );
    // A worker the watchdog already counted lost is never adopted again,
    // although it still runs: the redelivery starts a new one.
    let after_watchdog = BuildOrder {
        lost_workers: vec![first.id.clone()],
        ..order("m1", "w5")
    };
    let fresh = workers.start(&after_watchdog).await.expect("start");
    assert_eq!(fresh.id, "w5");
    assert_ne!(fresh.execution, first.execution);
    assert_eq!(azure.lock().starts.len(), 4);
    workers.stop(&fresh).await.expect("stop");
    workers.stop(&first).await.expect("stop");
    // A first delivery cannot have started a worker: it starts one without
    // listing the executions.
    azure.lock().fates = vec![Fate::Hang];
    let lists = azure.lock().lists;
    let first_delivery = BuildOrder {
        delivery: 1,
        ..order("m3", "w6")
    };
    let started = workers.start(&first_delivery).await.expect("start");
    assert_eq!(started.id, "w6");
    {
        let state = azure.lock();
        assert_eq!(
            (state.starts.len(), state.lists),
            (5, lists),
            "started once, nothing listed"
        );
    }
    workers.stop(&started).await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_reports_change_nothing() {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    azure.lock().fates = vec![Fate::Hang];
    let before = build_started(&factory, "0ff0057b011a000000000000000000000000c0de").await;
    let id = before.id.as_str();
    let invoke = |body: Value| {
        let invocation = json!({
            "Data": { "message": body.to_string() },
            "Metadata": { "MessageId": "forged-1", "DeliveryCount": 1 }
        });
        factory
            .http
            .post(format!("{}/build-completed", factory.handler_url))
            .json(&invocation)
            .send()
    };
    // A report from a worker this run never started.
    let forged = json!({ "runId": id, "workerId": "not-ours", "outcome": { "failed": { "reason": "forged" } } });
    assert_eq!(invoke(forged).await.expect("invoke").status(), 200);
    // A report for a run that does not exist.
    let unknown = json!({ "runId": "push-example-nope", "workerId": "w", "outcome": { "failed": { "reason": "x" } } });
    assert_eq!(invoke(unknown).await.expect("invoke").status(), 200);
    // Not a report at all: refused, so Service Bus retries then dead-letters it.
    let answer = invoke(json!({ "runId": id, "surprise": true }))
        .await
        .expect("invoke");
    assert_eq!(answer.status(), 400);
    let after = factory.run(id).await.expect("run");
    assert_eq!(after.stage(Stage::Build), before.stage(Stage::Build));
    assert_eq!(after.status, RunStatus::Running);
    let workers = azure.job_workers();
    if let Some(worker) = after
        .stage(Stage::Build)
        .current_attempt()
        .and_then(|a| a.worker.clone())
    {
        workers.stop(&worker).await.expect("stop");
    }
    factory.stop().await;
}

/// A `packer` for the worker that records its environment and arguments in
/// `record` (one pair of files per call), then runs the real packer.
fn recording_packer(dir: &std::path::Path, record: &std::path::Path) -> PathBuf {
    let real = image_factory::config::find_on_path("packer").expect("packer on the PATH");
    let script = dir.join("packer");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv > '{record}/packer-'$$.env\nprintf '%s\\n' \"$@\" > '{record}/packer-'$$.args\nexec '{real}' \"$@\"\n",
            record = record.display(),
            real = real.display()
        ),
    )
    .expect("write the recording packer");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// The recorded calls of the recording packer: (environment, arguments).
fn recorded_calls(record: &std::path::Path) -> Vec<(BTreeMap<String, String>, Vec<String>)> {
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(record).expect("record dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "env") {
            let env = std::fs::read_to_string(&path)
                .expect("env")
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let args = std::fs::read_to_string(path.with_extension("args"))
                .expect("args")
                .lines()
                .map(str::to_string)
                .collect();
            calls.push((env, args));
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_packer_signs_in_as_the_app_registration_with_the_identitys_assertion_and_no_secret_leaks()
 {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    let tools = tempfile::TempDir::new().expect("tools");
    let record = tools.path().join("record");
    std::fs::create_dir(&record).expect("record dir");
    let packer = recording_packer(tools.path(), &record);
    azure.lock().worker_env = vec![("IMAGE_FACTORY_PACKER".into(), packer.display().to_string())];
    let run = factory
        .push_and_wait(
            "0ff0057b011c000000000000000000000000beef",
            RunStatus::WaitingForApproval,
        )
        .await;
    last_execution_ends(&azure, 1).await;

    // The token request named the token exchange audience, as the job's
    // user-assigned identity.
    let asked = azure.lock().identity.requests();
    assert!(
        asked
            .iter()
            .any(|r| r.resource == "api://AzureADTokenExchange"
                && r.client_id.as_deref() == Some(identity::CLIENT_ID)),
        "{asked:?}"
    );

    // packer got exactly the settings the plugin documents for a service
    // principal with a client assertion (subscription_id, client_id,
    // client_jwt, tenant_id; the template reads them from these variables),
    // and nothing that would pick another sign-in.
    let calls = recorded_calls(&record);
    assert_eq!(calls.len(), 1, "one packer build on the worker");
    let (env, args) = &calls[0];
    let arm: BTreeMap<&str, &str> = env
        .iter()
        .filter(|(k, _)| k.starts_with("ARM_"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let assertion = assertion();
    assert_eq!(
        arm,
        BTreeMap::from([
            ("ARM_CLIENT_ID", PACKER_APP),
            ("ARM_OIDC_TOKEN", assertion.as_str()),
            ("ARM_SUBSCRIPTION_ID", SUBSCRIPTION),
            ("ARM_TENANT_ID", TENANT),
        ])
    );
    assert!(!env.keys().any(|k| k.starts_with("PKR_VAR_client")));
    assert_eq!(args.first().map(String::as_str), Some("build"));
    assert!(!args.iter().any(|a| a.contains(&assertion)), "{args:?}");

    // The assertion is in no record, report, log or output.
    let stored = serde_json::to_string(&factory.run(&run.id).await.expect("run")).expect("json");
    let reports: Vec<String> = {
        let state = azure.lock();
        state.reports.iter().map(|(_, body)| body.clone()).collect()
    };
    let worker = run.stage(Stage::Build).attempts[0]
        .worker
        .clone()
        .expect("built by a worker");
    let uploaded = Azurite::shared()
        .read_blob(&worker.log_url)
        .await
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .into_iter()
        .collect::<Vec<_>>();
    assert!(!uploaded.is_empty() && !reports.is_empty());
    let output = std::fs::read_to_string(factory.data.path().join("worker-1.log"))
        .expect("the worker's output");
    assert!(output.contains("build reported"), "{output}");
    for (what, text) in [
        ("run record", stored),
        ("report", reports.join("\n")),
        ("uploaded log", uploaded.join("\n")),
        ("worker output", output),
    ] {
        assert!(!text.contains(&assertion), "the assertion is in the {what}");
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_exports_its_build_span_in_the_runs_trace_and_without_a_token_still_builds() {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    let ingestion = Ingestion::accepting(&token_for("https://monitor.azure.com"));
    let started = ingestion::start(ingestion.clone()).await;
    let tools = tempfile::TempDir::new().expect("tools");
    let certificate = tools.path().join("ingestion.pem");
    std::fs::write(&certificate, &started.certificate_pem).expect("certificate");
    azure.lock().worker_env = vec![
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING".into(),
            started.connection_string.clone(),
        ),
        // The container trusts the endpoint's certificate.
        ("SSL_CERT_FILE".into(), certificate.display().to_string()),
    ];
    let run = factory
        .push_and_wait(
            "0ff0057b011d000000000000000000000000beef",
            RunStatus::WaitingForApproval,
        )
        .await;
    // The worker exports when it exits.
    last_execution_ends(&azure, 1).await;
    let refused = ingestion.refused.lock().await.clone();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let trace = image_factory::trace::run_trace_id(&run.id).to_string();
    let worker = run.stage(Stage::Build).attempts[0]
        .worker
        .clone()
        .expect("built by a worker");
    let items = ingestion.items().await;
    let spans: Vec<&Value> = items
        .iter()
        .filter(|i| i["tags"]["ai.operation.id"] == trace.as_str())
        .filter(|i| i["data"]["baseData"]["properties"]["worker"] == worker.id.as_str())
        .collect();
    assert!(
        spans
            .iter()
            .any(|i| i["data"]["baseData"]["properties"]["stage"] == "build"),
        "the worker's build span is not in the run's trace: {items:?}"
    );
    assert!(
        azure
            .lock()
            .identity
            .requests()
            .iter()
            .any(|r| r.resource == "https://monitor.azure.com")
    );

    // Without a token, the worker builds and reports; the export stops with one warning.
    azure.lock().identity.refuse("https://monitor.azure.com");
    let second = factory
        .push_and_wait(
            "0ff0057b011e000000000000000000000000beef",
            RunStatus::WaitingForApproval,
        )
        .await;
    last_execution_ends(&azure, 2).await;
    assert!(second.stage(Stage::Build).attempts[0].worker.is_some());
    let output = std::fs::read_to_string(factory.data.path().join("worker-2.log"))
        .expect("the worker's output");
    assert!(output.contains("build reported"), "{output}");
    let warnings = output
        .lines()
        .filter(|l| l.contains("traces are not exported"))
        .count();
    assert_eq!(warnings, 1, "{output}");
    // Every export and every answer is what the ingestion spec defines.
    ingestion.assert_valid();
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_changed_in_blob_storage_fails_the_run_as_tampered_with_and_builds_nothing() {
    let (factory, azure) = factory(Arc::new(AtomicI64::new(0))).await;
    let commit = "0ff0057b0120000000000000000000000000c0de";
    // The run is created with its snapshot stored; its build has not started.
    let answer = factory
        .push(commit, &["images/example/build.pkr.hcl"])
        .await;
    assert_eq!(answer.status(), 202);
    let id = format!("push-example-{commit}");
    let run = factory.run(&id).await.expect("the run");
    let snapshot = run.source.clone().expect("a source").snapshot;
    let blob = format!("{}/{snapshot}.tar", azure.lock().sources_url);
    // One byte changed in the stored snapshot, behind the factory's back.
    let mut bytes = Azurite::shared().read_blob(&blob).await.expect("stored");
    let last = bytes.len() - 1100;
    bytes[last] ^= 0x20;
    Azurite::shared().put_blob(&blob, bytes).await;

    let failed = factory.wait_status(&id, RunStatus::Failed).await;
    let failure = failed.failure.clone().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Build));
    assert!(
        failure
            .reason
            .contains(&format!("snapshot {snapshot} is tampered with or corrupt")),
        "{}",
        failure.reason
    );
    // The worker built nothing: packer never ran.
    let run_dir = factory.data.path().join("runs").join(&id);
    assert!(!run_dir.join("build.log").exists());
    let output = std::fs::read_to_string(factory.data.path().join("worker-1.log"))
        .expect("the worker's output");
    assert!(output.contains("build reported"), "{output}");
    assert!(
        !output.contains("snapshot downloaded and checked"),
        "{output}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_fetched_from_github_snapshotted_in_blob_storage_and_built_by_the_worker_from_its_hash()
 {
    use common::github::{GitHub, PAT};
    use image_factory::web::HostedSources;
    use image_factory::web::azure_devops::AzureDevOpsApi;
    use image_factory::web::azure_devops_source::AzureDevOpsSource;
    use image_factory::web::github::{GitHubApi, GitHubAuth, GitHubSettings};
    use image_factory::web::github_source::GitHubSource;

    // A real repository: the commit says one thing, the working tree another.
    let repo = tempfile::TempDir::new().expect("repo");
    let root = repo.path();
    common::git(root, &["init", "-q", "-b", "main"]);
    let example = common::copy_example(&root.join("images"), "example");
    let script = example.join("scripts/provision.sh");
    let text = std::fs::read_to_string(&script).expect("script");
    std::fs::write(
        &script,
        format!("{text}echo 'built from the pushed commit'\n"),
    )
    .expect("script");
    common::git(root, &["add", "."]);
    common::git(root, &["commit", "-q", "-m", "the example image"]);
    let commit = common::git(root, &["rev-parse", "HEAD"]);
    std::fs::write(&script, format!("{text}echo 'an edit nobody pushed'\n")).expect("script");

    // The push's repository, on a GitHub that serves the real repository.
    let github = GitHub::new("unused");
    github.attach("Codertocat/Hello-World", root, false);
    let github_url = github.serve().await;
    let repository = RepositoryRef::GitHub {
        owner: "Codertocat".into(),
        repo: "Hello-World".into(),
    };
    let api = Arc::new(
        GitHubApi::new(&GitHubSettings {
            api_url: github_url,
            auth: GitHubAuth::Token(PAT.into()),
        })
        .expect("api"),
    );
    let (factory, azure) = factory_with(
        Arc::new(AtomicI64::new(0)),
        root.join("images"),
        move |_| {
            let devops = AzureDevOpsApi::new(Arc::new(common::arm_server::FixedCredential), None)
                .expect("devops");
            Arc::new(HostedSources {
                github: GitHubSource::new(api, "images", 64 * 1024 * 1024),
                azure_devops: AzureDevOpsSource::new(devops, "images", 64 * 1024 * 1024),
                configured: repository,
            })
        },
    )
    .await;

    let run = factory
        .push_and_wait(&commit, RunStatus::WaitingForApproval)
        .await;
    // The snapshot is GitHub's tarball of the commit, made canonical: the
    // images folder `git archive` gives for it.
    let source = run.source.clone().expect("a source");
    assert_eq!(source.commit.as_deref(), Some(commit.as_str()));
    assert!(!source.uncommitted);
    let archive = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", &commit, "--", "images"])
        .output()
        .expect("git archive");
    let layout = image_factory::archive::Layout {
        folder: "images".into(),
        ..Default::default()
    };
    let expected = image_factory::archive::read(
        &archive.stdout,
        image_factory::archive::Format::Tar,
        &layout,
        &Limits::default(),
    )
    .expect("git's archive")
    .tree
    .canonical_with_hash()
    .1;
    assert_eq!(source.snapshot.as_str(), expected);
    // Stored once in Blob Storage, under its hash.
    let blob = format!("{}/{expected}.tar", azure.lock().sources_url);
    let stored = Azurite::shared().read_blob(&blob).await.expect("the blob");
    assert_eq!(image_factory::archive::sha256_hex(&stored), expected);
    // The order named that hash; the worker downloaded, checked and built it.
    let order: BuildOrder = {
        let state = azure.lock();
        let env = state.starts[0]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        env.iter()
            .find(|e| e["name"] == "IMAGE_FACTORY_BUILD_ORDER")
            .and_then(|e| e["value"].as_str())
            .and_then(|v| serde_json::from_str(v).ok())
            .expect("the order")
    };
    assert_eq!(order.snapshot, Some(source.snapshot.clone()));
    let log = Azurite::shared()
        .read_blob(&order.log_url)
        .await
        .expect("the build log");
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("built from the pushed commit"), "{log}");
    assert!(!log.contains("an edit nobody pushed"), "{log}");
    let output = std::fs::read_to_string(factory.data.path().join("worker-1.log"))
        .expect("the worker's output");
    assert!(
        output.contains("snapshot downloaded and checked"),
        "{output}"
    );
    // Every GitHub exchange was one its description allows, and the
    // download host never saw the token.
    {
        let state = github.state();
        assert!(
            state
                .exchanges
                .iter()
                .any(|(op, _)| op == "repos/download-tarball-archive")
        );
        assert!(state.violations.is_empty(), "{:#?}", state.violations);
        assert!(
            state
                .downloads
                .iter()
                .all(|h| h.get("authorization").is_none())
        );
    }
    factory.stop().await;
}

/// A header signed as Service Bus documents it (the test's own signer; the
/// end-to-end tests prove the crate's signatures pass the same check).
fn sign(resource: &str, rule: &str, key: &str, expiry: i64) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let sr: String = serde_urlencoded::to_string([("", resource)])
        .expect("encode")
        .trim_start_matches('=')
        .to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(format!("{sr}\n{expiry}").as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let sig = serde_urlencoded::to_string([("sig", sig)]).expect("encode");
    format!("SharedAccessSignature sr={sr}&{sig}&se={expiry}&skn={rule}")
}

#[test]
fn the_sas_check_refuses_a_wrong_key_resource_expiry_or_rule() {
    let resource = "https://sb-factory.servicebus.windows.net/build-completed/messages";
    let now = Utc::now();
    let later = now.timestamp() + 3600;
    let good = sign(resource, SAS_RULE, SAS_KEY, later);
    assert_eq!(check_sas(&good, resource, SAS_RULE, SAS_KEY, now), Ok(()));
    let namespace = sign(
        "https://sb-factory.servicebus.windows.net/",
        SAS_RULE,
        SAS_KEY,
        later,
    );
    assert_eq!(
        check_sas(&namespace, resource, SAS_RULE, SAS_KEY, now),
        Ok(()),
        "a namespace-wide token covers the queue"
    );
    let cases = [
        (
            sign(resource, SAS_RULE, "another-key", later),
            "InvalidSignature",
        ),
        (
            sign(
                "https://sb-factory.servicebus.windows.net/other-queue",
                SAS_RULE,
                SAS_KEY,
                later,
            ),
            "InvalidAudience",
        ),
        (
            sign(resource, SAS_RULE, SAS_KEY, now.timestamp() - 1),
            "ExpiredToken",
        ),
        (
            sign(resource, "RootManageSharedAccessKey", SAS_KEY, later),
            "InvalidSignature",
        ),
        (
            good.replace(&format!("se={later}"), &format!("se={}", later + 60)),
            "InvalidSignature",
        ),
        (
            good.replace("SharedAccessSignature ", "Bearer "),
            "MissingToken",
        ),
    ];
    for (header, code) in cases {
        let refused = check_sas(&header, resource, SAS_RULE, SAS_KEY, now).expect_err(&header);
        assert!(refused.starts_with(code), "{header}: {refused}");
        assert!(!refused.contains(SAS_KEY), "{refused}");
    }
}

#[test]
fn broker_properties_must_carry_a_message_id_and_known_properties_only() {
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert("brokerproperties", value.parse().expect("header"));
        headers
    };
    assert_eq!(
        check_broker_properties(&with(r#"{"MessageId":"run-1:build"}"#)),
        Ok(())
    );
    for bad in [
        r#"{}"#,
        r#"{"MessageId":""}"#,
        r#"{"MessageId":"x","Bogus":1}"#,
        "not json",
    ] {
        assert!(check_broker_properties(&with(bad)).is_err(), "{bad}");
    }
    assert!(check_broker_properties(&HeaderMap::new()).is_err());
}
