//! The Cosmos DB adapter beyond the shared contract: how it behaves when the
//! account throttles, is unavailable or unreachable, is set up wrongly, or
//! holds a document that no longer parses. Each test runs its own test server,
//! so injected faults touch no other test.

mod common;

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use common::cosmos_server::CosmosServer;
use image_factory::azure::cosmos::{ConnectError, CosmosStore, EMULATOR_KEY, THROTTLE_RETRIES};
use image_factory::azure::cosmos::{CosmosAuth, CosmosSettings};
use image_factory::domain::run::{Run, RunId, RunStatus, Trigger, TriggerKind};
use image_factory::domain::version::ImageVersion;
use image_factory::ports::store::{RunQuery, RunStore, StoreError};

/// A run id from a literal.
fn rid(id: &str) -> RunId {
    id.parse().unwrap()
}

fn run(id: &str, minute: u32) -> Run {
    Run::new(
        id.parse().unwrap(),
        "web".into(),
        ImageVersion::new(2026, 1110, 0).unwrap(),
        Trigger {
            commit: Some("0123abc".into()),
            branch: Some("main".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        BTreeMap::new(),
        Utc.with_ymd_and_hms(2026, 11, 10, 9, minute, 0).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_request_is_retried_after_the_servers_delay_and_then_succeeds() {
    let server = CosmosServer::start();
    let store = server.fresh_store().await;
    store.create(&run("run-1", 0)).await.unwrap();

    server.inject(429, 2, 20).await;
    let before = server.requests().await;
    let started = std::time::Instant::now();
    let stored = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(stored.value.id, "run-1");
    assert!(started.elapsed() >= std::time::Duration::from_millis(40));
    assert_eq!(
        server.requests().await - before,
        3,
        "two throttled, one served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_that_keeps_throttling_is_unavailable_after_bounded_retries_and_nothing_is_written()
 {
    let server = CosmosServer::start();
    let store = server.fresh_store().await;
    let created = store.create(&run("run-1", 0)).await.unwrap();

    server.inject(429, 1000, 1).await;
    let before = server.requests().await;
    let mut changed = run("run-1", 0);
    changed.status = RunStatus::Running;
    match store.replace(&changed, &created).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("429"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let tries = server.requests().await - before;
    assert_eq!(tries, u64::from(THROTTLE_RETRIES) + 1);

    server.inject(429, 0, 0).await;
    let stored = store.get(&rid("run-1")).await.unwrap();
    assert_eq!(stored.value.status, RunStatus::Queued);
    assert_eq!(stored.etag, created);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unavailable_account_fails_the_operation_as_unavailable() {
    let server = CosmosServer::start();
    let store = server.fresh_store().await;

    server.inject(503, 1000, 1).await;
    match store.create(&run("run-1", 0)).await {
        Err(StoreError::Unavailable(message)) => assert!(message.contains("503"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    server.inject(503, 0, 0).await;
    assert!(matches!(
        store.get(&rid("run-1")).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_run_is_left_out_of_listings_without_hiding_the_others() {
    let server = CosmosServer::start();
    let store = server.fresh_store().await;
    for (minute, id) in [(0, "run-1"), (1, "run-2"), (2, "run-3")] {
        store.create(&run(id, minute)).await.unwrap();
    }
    let container = store.container();
    let mut doc: serde_json::Value = container
        .read_item("run-2".to_string(), "run-2", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    doc["run"]["stages"] = serde_json::json!("not a list of stages");
    container
        .upsert_item("run-2".to_string(), "run-2", &doc, None)
        .await
        .unwrap();

    let page = store
        .list(&RunQuery {
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["run-3", "run-1"]);
    match store.get(&rid("run-2")).await {
        Err(StoreError::Corrupt { id, .. }) => assert_eq!(id, "run-2"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_that_cannot_be_reached_is_a_start_up_error_naming_the_endpoint() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let settings = CosmosSettings {
        endpoint: format!("http://127.0.0.1:{port}/"),
        database: "image-factory".into(),
        container: "runs".into(),
        auth: CosmosAuth::EmulatorKey(EMULATOR_KEY.into()),
    };
    let started = std::time::Instant::now();
    let err = CosmosStore::connect(&settings).await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("COSMOS_ENDPOINT"), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains(EMULATOR_KEY), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_partitioned_by_another_key_is_refused_naming_the_setting() {
    let server = CosmosServer::start();
    let mut settings = server.fresh_settings();
    // Made by someone else, partitioned by image.
    let store = CosmosStore::connect(&server.fresh_settings())
        .await
        .unwrap();
    drop(store);
    settings.container = "by-image".into();
    let client = image_factory::azure::cosmos::build_client(&settings)
        .await
        .unwrap();
    client
        .database_client(settings.database.as_str())
        .create_container(
            azure_data_cosmos::models::ContainerProperties::new("by-image", "/image".into()),
            None,
        )
        .await
        .unwrap();

    let err = CosmosStore::connect(&settings).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("COSMOS_CONTAINER"), "{message}");
    assert!(message.contains("/image"), "{message}");
}
