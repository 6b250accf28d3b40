//! The production run store: Azure Cosmos DB for NoSQL, through `azure_data_cosmos`.
//!
//! One container holds two kinds of document, told apart by `kind`:
//!
//! - a run: `{"id", "kind": "run", "image", "status", "sortKey", "run": {...}}`,
//!   where `run` is the whole run record (every stage, decision and output) and
//!   `image`, `status` and `sortKey` (`<created, UTC, fixed width>|<id>`) are
//!   copies the queries filter and order on;
//! - a version counter: `{"id": "seq:<image>:<scope>", "kind": "sequence", "next",
//!   "holders"}`, where `holders` maps the runs most recently given a number
//!   to their number, so a run that asks again gets the same one.
//!
//! Single use of approval tokens is enforced on the run document itself (a
//! decision carries its token id and the state machine refuses a second
//! decision per approver), so there are no token records yet.
//!
//! **Partition key `/id`.** `RunStore::get` has only the id, and every stage
//! transition is a point read plus a conditional replace of one run: with `/id`
//! both are single-partition point operations (1 RU reads) whatever the id
//! looks like, with no id→image lookup and no assumption about how triggers
//! spell ids. Runs never share a logical partition, so none grows without
//! bound and writes spread evenly. The price is that listings (the runs API,
//! the sweeper's active runs every five minutes, runs waiting for approval)
//! are cross-partition queries; they are rare, small and, at this factory's
//! size (thousands of runs, one physical partition), cost the same as a
//! partition-scoped query. `/image` would make listings by image
//! single-partition but every `get(id)` a query or a second read.
//!
//! Every write is conditional: creates fail on an existing id (409 →
//! [`StoreError::Conflict`]), replaces carry `If-Match` (412 →
//! [`StoreError::PreconditionFailed`], which `update_run` reloads on; 404 →
//! [`StoreError::NotFound`]). Counters are read and replaced under `If-Match`
//! too, retried on 412 (the SDK's PATCH increment is behind an unstable feature).
//! Throttling (429) is retried by the SDK honouring `x-ms-retry-after-ms`,
//! bounded by [`THROTTLE_RETRIES`] and [`THROTTLE_WAIT`]; whatever still
//! fails (429, 503, a connection refused) is [`StoreError::Unavailable`], so the
//! invocation fails and Service Bus redelivers its message. Nothing is
//! half-written: each operation writes one document.
//!
//! Pagination is keyset pagination on `sortKey` (the continuation token is the
//! last key handed out, base64url), like the SQLite adapter's, so a token stays
//! valid across processes and runs created at the same instant are neither lost
//! nor repeated.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::Secret;
use azure_core::http::Etag;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::models::{ContainerProperties, ItemResponse};
use azure_data_cosmos::options::{
    BinaryEncodingOptions, ConnectionPoolOptions, ItemWriteOptions, OperationOptions, Precondition,
    ServerCertificateValidation, ThrottlingRetryOptionsBuilder,
};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosError, CosmosRuntime, FeedScope, Query,
    RoutingStrategy,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use crate::azure::identity::Identity;
use crate::domain::fleet::{ImageRuns, MAX_IN_FLIGHT};
use crate::domain::run::{Run, RunId, RunStatus};
use crate::ports::store::{
    ETag, FLEET_STATUSES, RunPage, RunQuery, RunStore, StoreError, Stored, parse_run,
};

/// Where the Cosmos DB run store is and how the factory signs in to it.
#[derive(Clone, Debug)]
pub struct CosmosSettings {
    /// The account endpoint (`COSMOS_ENDPOINT`), e.g. `https://myaccount.documents.azure.com:443/`.
    pub endpoint: String,
    /// The database (`COSMOS_DATABASE`, default `image-factory`).
    pub database: String,
    /// The container (`COSMOS_CONTAINER`, default `runs`), partitioned by `/id`.
    pub container: String,
    /// How the factory authenticates.
    pub auth: CosmosAuth,
}

/// How the factory authenticates to Cosmos DB.
#[derive(Clone)]
pub enum CosmosAuth {
    /// An account key (`COSMOS_KEY`): emulators and test servers only. Implies
    /// emulator mode: HTTP/1.1, text JSON, the emulator's certificate accepted on
    /// loopback hosts, and the database and container created when missing.
    EmulatorKey(String),
    /// Entra ID: the managed identity in Azure, developer credentials elsewhere.
    Entra(Identity),
}

impl std::fmt::Debug for CosmosAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CosmosAuth::EmulatorKey(_) => f.write_str("EmulatorKey(<redacted>)"),
            CosmosAuth::Entra(identity) => write!(f, "Entra({identity:?})"),
        }
    }
}

/// Largest page a query returns.
const MAX_PAGE: usize = 100;
/// Fleet view queries in flight at once.
const FLEET_CONCURRENCY: usize = 8;
/// Retries of a throttled (429) request before the store reports it unavailable.
pub const THROTTLE_RETRIES: u32 = 5;
/// Longest total wait across those retries.
pub const THROTTLE_WAIT: Duration = Duration::from_secs(10);
/// Attempts of a counter increment under contention.
const SEQUENCE_ATTEMPTS: u32 = 400;
/// How many of a counter's latest holders it remembers. A run asks again
/// within seconds (a concurrent duplicate, a redelivered trigger), so the
/// latest few hundred are plenty, and the document stays small.
const SEQUENCE_HOLDERS: usize = 256;
/// The public key every Cosmos DB emulator accepts (documented by Microsoft).
pub const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// Characters a Cosmos DB id may not contain.
const FORBIDDEN_IN_IDS: [char; 4] = ['/', '\\', '?', '#'];

/// A run store in one Cosmos DB container partitioned by `/id`.
#[derive(Clone)]
pub struct CosmosStore {
    container: ContainerClient,
}

impl std::fmt::Debug for CosmosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosmosStore").finish_non_exhaustive()
    }
}

/// Why the store could not be opened, naming the setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting is wrong.
    #[error("setting {name} is not valid: {message}")]
    Setting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong (never a secret).
        message: String,
    },
    /// The account, database or container could not be reached or read.
    #[error("the Cosmos DB run store at {endpoint} is not reachable: {message}")]
    Unreachable {
        /// The endpoint (no secret in it).
        endpoint: String,
        /// What failed, naming the setting to check.
        message: String,
    },
}

impl CosmosStore {
    /// Connects to the account, checks that the database and container exist
    /// and are partitioned by `/id`, and creates them when missing only with an
    /// emulator key (in Azure they come from the infrastructure).
    pub async fn connect(settings: &CosmosSettings) -> Result<CosmosStore, ConnectError> {
        let unreachable = |message: String| ConnectError::Unreachable {
            endpoint: settings.endpoint.clone(),
            message,
        };
        let emulator = matches!(settings.auth, CosmosAuth::EmulatorKey(_));
        let client = build_client(settings).await?;

        if emulator {
            create_if_missing(&client, settings)
                .await
                .map_err(unreachable)?;
        }
        let container = client
            .database_client(settings.database.as_str())
            .container_client(settings.container.as_str(), None)
            .await
            .map_err(|e| {
                unreachable(format!(
                    "cannot open container {:?} (COSMOS_CONTAINER) in database {:?} (COSMOS_DATABASE): {e}",
                    settings.container, settings.database
                ))
            })?;
        let properties: ContainerProperties = container
            .read(None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| {
                unreachable(format!(
                    "cannot read container {:?} (COSMOS_CONTAINER): {e}",
                    settings.container
                ))
            })?;
        let paths: Vec<String> = properties
            .partition_key
            .paths()
            .iter()
            .map(|p| p.to_string())
            .collect();
        if paths != ["/id"] {
            return Err(ConnectError::Setting {
                name: "COSMOS_CONTAINER",
                message: format!(
                    "container {:?} is partitioned by {paths:?}; the run store needs /id",
                    settings.container
                ),
            });
        }
        Ok(CosmosStore { container })
    }

    /// The container client, for tools and tests that look beside the port.
    pub fn container(&self) -> &ContainerClient {
        &self.container
    }
}

/// Builds the SDK client the store uses: Entra ID or an emulator key, bounded
/// throttling retries, and, with an emulator key, HTTP/1.1, text JSON and the
/// emulator's certificate accepted on loopback hosts.
pub async fn build_client(settings: &CosmosSettings) -> Result<CosmosClient, ConnectError> {
    let unreachable = |message: String| ConnectError::Unreachable {
        endpoint: settings.endpoint.clone(),
        message,
    };
    let endpoint: AccountEndpoint =
        settings
            .endpoint
            .parse()
            .map_err(|e: CosmosError| ConnectError::Setting {
                name: "COSMOS_ENDPOINT",
                message: format!("is not an account endpoint: {e}"),
            })?;
    let emulator = matches!(settings.auth, CosmosAuth::EmulatorKey(_));
    let account = match &settings.auth {
        CosmosAuth::EmulatorKey(key) => {
            AccountReference::with_authentication_key(endpoint, Secret::new(key.clone()))
        }
        CosmosAuth::Entra(identity) => {
            let credential = identity.credential().map_err(unreachable)?;
            AccountReference::with_credential(endpoint, credential)
        }
    };

    let mut pool = ConnectionPoolOptions::builder();
    if emulator {
        // Emulators and the test server speak HTTP/1.1 with a self-signed
        // certificate (or none) and text JSON.
        pool = pool
            .with_is_http2_allowed(false)
            .with_server_certificate_validation(
                ServerCertificateValidation::RequiredUnlessEmulator,
            );
    }
    let pool = pool
        .build()
        .map_err(|e| unreachable(format!("connection options: {e}")))?;
    let runtime = CosmosRuntime::builder()
        .with_connection_pool(pool)
        .build()
        .await
        .map_err(|e| unreachable(format!("cannot start the client: {e}")))?;
    let mut operation = OperationOptions::default();
    operation.throttling_retry_options = Some(
        ThrottlingRetryOptionsBuilder::new()
            .with_max_retry_count(THROTTLE_RETRIES)
            .with_max_retry_wait_time(THROTTLE_WAIT)
            .build(),
    );
    let mut builder = CosmosClient::builder()
        .with_runtime(runtime)
        .with_default_operation_options(operation);
    if emulator {
        builder =
            builder.with_binary_encoding_options(BinaryEncodingOptions::new().with_enabled(false));
    }
    builder
        .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
        .await
        .map_err(|e| unreachable(format!("check COSMOS_ENDPOINT and the credential: {e}")))
}

async fn create_if_missing(client: &CosmosClient, settings: &CosmosSettings) -> Result<(), String> {
    match client.create_database(&settings.database, None).await {
        Ok(_) => tracing::info!(database = %settings.database, "created the Cosmos DB database"),
        Err(e) if e.status().is_conflict() => {}
        Err(e) => {
            return Err(format!(
                "cannot create database {:?} (COSMOS_DATABASE): {e}",
                settings.database
            ));
        }
    }
    let properties = ContainerProperties::new(settings.container.clone(), "/id".into());
    match client
        .database_client(settings.database.as_str())
        .create_container(properties, None)
        .await
    {
        Ok(_) => {
            tracing::info!(container = %settings.container, "created the Cosmos DB container")
        }
        Err(e) if e.status().is_conflict() => {}
        Err(e) => {
            return Err(format!(
                "cannot create container {:?} (COSMOS_CONTAINER): {e}",
                settings.container
            ));
        }
    }
    Ok(())
}

/// Maps an SDK error on document `id` to the port's error.
fn store_error(id: &str, e: &CosmosError) -> StoreError {
    let status = e.status();
    if status.is_not_found() {
        StoreError::NotFound { id: id.to_string() }
    } else if status.is_conflict() {
        StoreError::Conflict { id: id.to_string() }
    } else if status.is_precondition_failed() {
        StoreError::PreconditionFailed { id: id.to_string() }
    } else {
        // The header line only: status, sub-status and message, no diagnostics.
        StoreError::Unavailable(format!("Cosmos DB failed on {id}: {e}"))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 255 && !id.contains(FORBIDDEN_IN_IDS)
}

fn sort_key(run: &Run) -> String {
    format!("{}|{}", instant_key(run.created_at), run.id)
}

/// How an instant starts a `sortKey`: fixed width, so text order is time order.
fn instant_key(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn envelope(run: &Run) -> Result<Value, StoreError> {
    let record = serde_json::to_value(run)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode run {}: {e}", run.id)))?;
    Ok(json!({
        "id": run.id,
        "kind": "run",
        "image": run.image,
        "status": run.status.name(),
        "sortKey": sort_key(run),
        "run": record,
    }))
}

/// Reads the run out of a stored document, refusing anything that is not one.
fn run_from_document(id: &str, doc: &Value) -> Result<Run, StoreError> {
    if doc.get("kind").and_then(Value::as_str) != Some("run") {
        return Err(StoreError::Corrupt {
            id: id.to_string(),
            reason: "the document is not marked as a run".into(),
        });
    }
    let record = doc.get("run").ok_or_else(|| StoreError::Corrupt {
        id: id.to_string(),
        reason: "the document holds no run".into(),
    })?;
    parse_run(id, &record.to_string())
}

fn etag_of(id: &str, response: &ItemResponse, body: Option<&Value>) -> Result<ETag, StoreError> {
    response
        .headers()
        .etag()
        .map(|e| e.to_string())
        .or_else(|| {
            body.and_then(|b| b.get("_etag"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .map(ETag)
        .ok_or_else(|| StoreError::Unavailable(format!("Cosmos DB returned no ETag for {id}")))
}

fn if_match(etag: &ETag) -> ItemWriteOptions {
    ItemWriteOptions::default()
        .with_precondition(Precondition::if_match(Etag::from(etag.0.clone())))
}

/// A counter's `holders` with `holder` given `number`, keeping the
/// [`SEQUENCE_HOLDERS`] highest numbers.
fn remember(holders: Option<&Value>, holder: &RunId, number: u32) -> Value {
    let mut kept: Vec<(String, u64)> = holders
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    kept.push((holder.to_string(), u64::from(number)));
    kept.sort_by_key(|k| std::cmp::Reverse(k.1));
    kept.truncate(SEQUENCE_HOLDERS);
    Value::Object(kept.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

/// The id of the counter of `image` and `scope`.
fn sequence_id(image: &str, scope: &str) -> String {
    let escape = |s: &str| {
        s.chars()
            .map(|c| {
                if FORBIDDEN_IN_IDS.contains(&c) || c == '%' {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    format!("seq:{}:{}", escape(image), escape(scope))
}

fn decode_continuation(token: &str) -> Result<String, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::BadContinuation)?;
    let key = String::from_utf8(bytes).map_err(|_| StoreError::BadContinuation)?;
    let (created, id) = key.split_once('|').ok_or(StoreError::BadContinuation)?;
    chrono::NaiveDateTime::parse_from_str(created, "%Y-%m-%dT%H:%M:%S%.6fZ")
        .map_err(|_| StoreError::BadContinuation)?;
    if id.is_empty() {
        return Err(StoreError::BadContinuation);
    }
    Ok(key)
}

#[async_trait]
impl RunStore for CosmosStore {
    async fn create(&self, run: &Run) -> Result<ETag, StoreError> {
        if !valid_id(&run.id) {
            return Err(StoreError::Unavailable(format!(
                "run id {:?} cannot be a Cosmos DB id (1-255 characters without / \\ ? #)",
                run.id
            )));
        }
        let doc = envelope(run)?;
        let response = self
            .container
            .create_item(run.id.to_string(), run.id.as_str(), &doc, None)
            .await
            .map_err(|e| store_error(&run.id, &e))?;
        etag_of(&run.id, &response, None)
    }

    async fn get(&self, id: &RunId) -> Result<Stored<Run>, StoreError> {
        let id = id.as_str();
        if !valid_id(id) {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        let response = self
            .container
            .read_item(id.to_string(), id, None)
            .await
            .map_err(|e| store_error(id, &e))?;
        let etag = response.headers().etag().map(|e| e.to_string());
        let doc: Value = response.into_model().map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            reason: format!("the document is not JSON: {e}"),
        })?;
        if doc.get("kind").and_then(Value::as_str) == Some("sequence") {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        let etag = etag
            .or_else(|| doc.get("_etag").and_then(Value::as_str).map(str::to_string))
            .map(ETag)
            .ok_or_else(|| {
                StoreError::Unavailable(format!("Cosmos DB returned no ETag for {id}"))
            })?;
        Ok(Stored {
            value: run_from_document(id, &doc)?,
            etag,
        })
    }

    async fn replace(&self, run: &Run, if_match_etag: &ETag) -> Result<ETag, StoreError> {
        if !valid_id(&run.id) {
            return Err(StoreError::NotFound {
                id: run.id.to_string(),
            });
        }
        let doc = envelope(run)?;
        let response = self
            .container
            .replace_item(
                run.id.to_string(),
                run.id.as_str(),
                &doc,
                Some(if_match(if_match_etag)),
            )
            .await
            .map_err(|e| store_error(&run.id, &e))?;
        etag_of(&run.id, &response, None)
    }

    async fn list(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let after = match &query.continuation {
            Some(token) => Some(decode_continuation(token)?),
            None => None,
        };
        // Fixed fragments only; every value is a parameter.
        let mut sql = String::from("SELECT c.id, c.sortKey, c.run FROM c WHERE c.kind = 'run'");
        if query.image.is_some() {
            sql.push_str(" AND c.image = @image");
        }
        if !query.statuses.is_empty() {
            sql.push_str(" AND ARRAY_CONTAINS(@statuses, c.status)");
        }
        if query.without_withdrawn {
            sql.push_str(" AND NOT IS_DEFINED(c.run.release.withdrawn)");
        }
        if after.is_some() {
            sql.push_str(" AND c.sortKey < @after");
        }
        sql.push_str(" ORDER BY c.sortKey DESC OFFSET 0 LIMIT @limit");
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.name()).collect();
        let bad = |e: CosmosError| StoreError::Unavailable(format!("cannot build the query: {e}"));
        let mut q = Query::from(sql)
            .with_parameter("@limit", limit + 1)
            .map_err(bad)?;
        if let Some(image) = &query.image {
            q = q.with_parameter("@image", image).map_err(bad)?;
        }
        if !statuses.is_empty() {
            q = q.with_parameter("@statuses", &statuses).map_err(bad)?;
        }
        if let Some(after) = &after {
            q = q.with_parameter("@after", after).map_err(bad)?;
        }
        let unavailable = |e: CosmosError| StoreError::Unavailable(format!("listing runs: {e}"));
        let rows: Vec<Value> = self
            .container
            .query_items::<Value>(q, FeedScope::full_container(), None)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let more = rows.len() > limit;
        let mut runs = Vec::with_capacity(limit);
        let mut last = None;
        for row in rows.into_iter().take(limit) {
            let id = row.get("id").and_then(Value::as_str).unwrap_or_default();
            // One unreadable run must not hide the others (the sweeper lists
            // active runs); it is reported and left untouched.
            let mut doc = row.clone();
            doc["kind"] = json!("run");
            match run_from_document(id, &doc) {
                Ok(run) => runs.push(run),
                Err(e) => tracing::error!(run_id = %id, "skipping an unreadable run: {e}"),
            }
            last = row
                .get("sortKey")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        let continuation = last.filter(|_| more).map(|key| URL_SAFE_NO_PAD.encode(key));
        Ok(RunPage { runs, continuation })
    }

    async fn follow_ups_due(
        &self,
        by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        // The container's default (consistent, all paths) range index serves
        // this filter; runs that owe nothing have no `followUpsDue`.
        let sql = "SELECT c.id, c.run FROM c WHERE c.kind = 'run' AND IS_NUMBER(c.run.followUpsDue) \
                   AND c.run.followUpsDue <= @by ORDER BY c.run.followUpsDue OFFSET 0 LIMIT @limit";
        let bad = |e: CosmosError| StoreError::Unavailable(format!("cannot build the query: {e}"));
        let q = Query::from(sql)
            .with_parameter("@by", by.timestamp())
            .map_err(bad)?
            .with_parameter("@limit", limit.clamp(1, MAX_PAGE))
            .map_err(bad)?;
        let unavailable = |e: CosmosError| {
            StoreError::Unavailable(format!("listing runs with follow-ups due: {e}"))
        };
        let rows: Vec<Value> = self
            .container
            .query_items::<Value>(q, FeedScope::full_container(), None)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let id = row
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let mut doc = row;
                doc["kind"] = json!("run");
                run_from_document(&id, &doc)
                    .map_err(|e| tracing::error!(run_id = %id, "skipping an unreadable run: {e}"))
                    .ok()
            })
            .collect())
    }

    async fn next_sequence(
        &self,
        image: &str,
        scope: &str,
        holder: &RunId,
    ) -> Result<u32, StoreError> {
        let id = sequence_id(image, scope);
        for attempt in 0..SEQUENCE_ATTEMPTS {
            if attempt > 0 {
                // Spread contending writers out a little.
                let ms = rand::random_range(0..=attempt.min(20)) as u64;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let read = match self.container.read_item(id.clone(), &id, None).await {
                Ok(response) => Some(response),
                Err(e) if e.status().is_not_found() => None,
                Err(e) => return Err(store_error(&id, &e)),
            };
            let Some(response) = read else {
                let doc = json!({"id": id, "kind": "sequence", "image": image, "scope": scope, "next": 1, "holders": {holder.as_str(): 0}});
                match self
                    .container
                    .create_item(id.clone(), &id, &doc, None)
                    .await
                {
                    Ok(_) => return Ok(0),
                    Err(e) if e.status().is_conflict() => continue,
                    Err(e) => return Err(store_error(&id, &e)),
                }
            };
            let etag = response.headers().etag().map(|e| ETag(e.to_string()));
            let mut doc: Value = response.into_model().map_err(|e| StoreError::Corrupt {
                id: id.clone(),
                reason: format!("the counter is not JSON: {e}"),
            })?;
            let etag = etag
                .or_else(|| {
                    doc.get("_etag")
                        .and_then(Value::as_str)
                        .map(|s| ETag(s.to_string()))
                })
                .ok_or_else(|| {
                    StoreError::Unavailable(format!("Cosmos DB returned no ETag for {id}"))
                })?;
            if let Some(earlier) = doc
                .pointer(&format!("/holders/{holder}"))
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
            {
                return Ok(earlier);
            }
            let next = doc
                .get("next")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    reason: "the counter holds no valid next number".into(),
                })?;
            let following = next
                .checked_add(1)
                .ok_or_else(|| StoreError::Unavailable(format!("counter {id} overflowed")))?;
            doc["next"] = json!(following);
            doc["holders"] = remember(doc.get("holders"), holder, next);
            match self
                .container
                .replace_item(id.clone(), &id, &doc, Some(if_match(&etag)))
                .await
            {
                Ok(_) => return Ok(next),
                Err(e) if e.status().is_precondition_failed() => continue,
                Err(e) => return Err(store_error(&id, &e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "counter {id} kept changing under {SEQUENCE_ATTEMPTS} attempts"
        )))
    }

    async fn image_runs(&self, images: &[String]) -> Result<Vec<ImageRuns>, StoreError> {
        // Per image, the newest run of each status (`ORDER BY c.sortKey DESC`
        // with the first row only) and its runs in flight: four small
        // queries an image, a few images at a time.
        let active = RunQuery::active().statuses;
        let queries: Vec<(usize, RunQuery)> = images
            .iter()
            .enumerate()
            .flat_map(|(n, image)| {
                let query = |statuses: Vec<RunStatus>, limit: usize| RunQuery {
                    image: Some(image.clone()),
                    statuses,
                    limit,
                    continuation: None,
                    without_withdrawn: true,
                };
                FLEET_STATUSES
                    .iter()
                    .map(move |s| (n, query(vec![*s], 1)))
                    .chain(std::iter::once((n, query(active.clone(), MAX_IN_FLIGHT))))
                    .collect::<Vec<_>>()
            })
            .collect();
        let pages: Vec<(usize, RunPage)> = futures::stream::iter(queries)
            .map(|(n, query)| async move { self.list(&query).await.map(|page| (n, page)) })
            .buffered(FLEET_CONCURRENCY)
            .try_collect()
            .await?;
        let mut found: Vec<ImageRuns> = images
            .iter()
            .map(|image| ImageRuns {
                image: image.clone(),
                ..ImageRuns::default()
            })
            .collect();
        for (n, page) in pages {
            for run in page.runs {
                found[n].file(run);
            }
        }
        Ok(found)
    }

    async fn images_patched_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeSet<String>, StoreError> {
        // The images of the released runs no rollback withdrew and the
        // skipped runs created since then: this month's runs only, whatever
        // the history holds.
        let bad = |e: CosmosError| StoreError::Unavailable(format!("cannot build the query: {e}"));
        let statuses = [RunStatus::Released.name(), RunStatus::Skipped.name()];
        let q = Query::from(
            "SELECT VALUE c.image FROM c WHERE c.kind = 'run' \
             AND ARRAY_CONTAINS(@statuses, c.status) AND c.sortKey >= @since \
             AND NOT IS_DEFINED(c.run.release.withdrawn)",
        )
        .with_parameter("@statuses", statuses)
        .map_err(bad)?
        .with_parameter("@since", instant_key(since))
        .map_err(bad)?;
        let unavailable =
            |e: CosmosError| StoreError::Unavailable(format!("listing patched images: {e}"));
        let images: Vec<String> = self
            .container
            .query_items::<String>(q, FeedScope::full_container(), None)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(images.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_ids_escape_what_cosmos_ids_cannot_hold() {
        assert_eq!(sequence_id("web", "2026.1110"), "seq:web:2026.1110");
        assert_eq!(sequence_id("web", "a/b#c%"), "seq:web:a%2Fb%23c%25");
        assert!(valid_id(&sequence_id("w", "/\\?#")));
    }

    #[test]
    fn only_tokens_shaped_like_a_sort_key_are_continuations() {
        let good = URL_SAFE_NO_PAD.encode("2026-11-10T09:00:00.000000Z|run-1");
        assert_eq!(
            decode_continuation(&good).unwrap(),
            "2026-11-10T09:00:00.000000Z|run-1"
        );
        for bad in [
            "",
            "!!",
            "bm8tc2VwYXJhdG9y",
            &URL_SAFE_NO_PAD.encode("yesterday|run-1"),
        ] {
            assert!(
                matches!(decode_continuation(bad), Err(StoreError::BadContinuation)),
                "{bad}"
            );
        }
    }
}
