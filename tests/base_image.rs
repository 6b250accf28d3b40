//! The `base-image` timer against a Resource Manager stand-in answering the
//! Marketplace listing as `VirtualMachineImage_List_MaximumSet_Gen.json`
//! (ComputeRP 2024-07-01) shapes it: the newest version becomes the run
//! `base-<image>-<version>`, a second firing finds it and creates nothing,
//! throttling is retried and an unreachable listing fails the invocation
//! (the timer tries again) with no run created; an image whose base cannot
//! be listed keeps no other image from starting. Contract-tested, not live.

mod common;

use axum::http::Method;
use common::arm_server::{ArmServer, Reply};
use common::{Factory, Options, copy_example};
use image_factory::domain::run::TriggerKind;
use serde_json::json;

const VERSIONS: &str = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/publishers/MicrosoftWindowsServer/artifacttypes/vmimage/offers/WindowsServer/skus/2022-datacenter-azure-edition/versions";

fn listing() -> serde_json::Value {
    let item = |name: &str| json!({ "name": name, "location": "westeurope", "tags": {}, "id": format!("{VERSIONS}/{name}") });
    json!([item("20348.2762.241009"), item("20348.2849.241106")])
}

async fn factory(server: &ArmServer) -> (Factory, tempfile::TempDir) {
    factory_of(server, &["example"]).await
}

/// A factory whose `names` images are each built on the Marketplace image
/// the stand-in lists.
async fn factory_of(server: &ArmServer, names: &[&str]) -> (Factory, tempfile::TempDir) {
    let images = tempfile::TempDir::new().unwrap();
    for name in names {
        let dir = copy_example(images.path(), name);
        let toml = std::fs::read_to_string(dir.join("image.toml")).unwrap();
        std::fs::write(
            dir.join("image.toml"),
            format!(
                "{toml}\n[base_image]\npublisher = \"MicrosoftWindowsServer\"\noffer = \"WindowsServer\"\nsku = \"2022-datacenter-azure-edition\"\nlocation = \"westeurope\"\n"
            ),
        )
        .unwrap();
    }
    let (azure, _) = server.azure(Default::default());
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| image_factory::startup::use_azure(app, azure, None)),
        ..Options::default()
    })
    .await;
    (factory, images)
}

async fn fire(factory: &Factory) -> (u16, serde_json::Value) {
    let response = factory
        .http
        .post(format!("{}/base-image", factory.handler_url))
        .json(&json!({ "Data": { "timer": { "IsPastDue": false } }, "Metadata": {} }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_marketplace_version_starts_one_run_and_a_second_firing_none() {
    let server = ArmServer::start(vec![
        Reply::new(
            Method::GET,
            VERSIONS,
            429,
            json!({"error": {"code": "TooManyRequests", "message": "throttled"}}),
        )
        .header("Retry-After", "1"),
        Reply::new(Method::GET, VERSIONS, 200, listing()),
        Reply::new(Method::GET, VERSIONS, 200, listing()),
    ])
    .await;
    let (factory, _images) = factory(&server).await;
    let (status, answer) = fire(&factory).await;
    assert_eq!(status, 200, "{answer}");
    let id = "base-example-20348.2849.241106";
    let run = factory
        .app
        .store
        .get(&id.parse().unwrap())
        .await
        .expect("the run exists")
        .value;
    assert_eq!(run.trigger.kind, TriggerKind::BaseImageUpdate);
    assert_eq!(
        run.trigger.base_image_version.as_deref(),
        Some("20348.2849.241106")
    );
    assert_eq!(answer["Outputs"]["validate"][0]["runId"], id);

    let (status, answer) = fire(&factory).await;
    assert_eq!(status, 200, "{answer}");
    let all = factory.app.store.list(&Default::default()).await.unwrap();
    assert_eq!(all.runs.len(), 1, "the second firing found the run");
    assert!(server.unserved().is_empty());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_that_fails_creates_nothing_and_fails_the_invocation() {
    let server = ArmServer::start(vec![Reply::new(
        Method::GET,
        VERSIONS,
        403,
        json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}}),
    )])
    .await;
    let (factory, _images) = factory(&server).await;
    let (status, answer) = fire(&factory).await;
    assert_eq!(status, 500, "{answer}");
    assert!(
        answer.to_string().contains("AuthorizationFailed"),
        "{answer}"
    );
    let all = factory.app.store.list(&Default::default()).await.unwrap();
    assert!(all.runs.is_empty());
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_whose_base_cannot_be_listed_keeps_no_other_image_from_starting() {
    // beta is built on another Marketplace image, whose listing is refused.
    let other = VERSIONS.replace(
        "2022-datacenter-azure-edition",
        "2025-datacenter-azure-edition",
    );
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, listing()),
        Reply::new(
            Method::GET,
            &other,
            403,
            json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}}),
        ),
    ])
    .await;
    let (factory, images) = factory_of(&server, &["alpha", "beta"]).await;
    let beta = images.path().join("beta").join("image.toml");
    let toml = std::fs::read_to_string(&beta).unwrap();
    std::fs::write(
        &beta,
        toml.replace(
            "2022-datacenter-azure-edition",
            "2025-datacenter-azure-edition",
        ),
    )
    .unwrap();
    let (status, answer) = fire(&factory).await;
    assert_eq!(status, 200, "{answer}");
    // alpha's run is created and its first message goes out with the answer.
    let id = "base-alpha-20348.2849.241106";
    assert_eq!(answer["Outputs"]["validate"][0]["runId"], id, "{answer}");
    assert!(
        answer["Logs"].to_string().contains("beta")
            && answer["Logs"].to_string().contains("AuthorizationFailed"),
        "the answer says beta was passed over, and why: {answer}"
    );
    let all = factory.app.store.list(&Default::default()).await.unwrap();
    let ids: Vec<&str> = all.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [id]);
    factory.stop().await;
}
