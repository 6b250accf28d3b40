//! The local factory with its runs in Cosmos DB (the test server): a push goes
//! through every stage to release through the real HTTP front, and the run's
//! document in the container records every stage, the version counter and the
//! decision. The SQLite file is never created.

mod common;

use common::Factory;
use common::cosmos_server::CosmosServer;
use image_factory::domain::run::{RunStatus, Stage, StageStatus};
use image_factory::domain::version::VersionStrategy;
use image_factory::startup::StoreBackend;
use serde_json::Value;

const COMMIT: &str = "c05e05c05e05c05e05c05e05c05e05c05e05c05e";

#[tokio::test(flavor = "multi_thread")]
async fn a_push_is_released_with_every_stage_recorded_in_the_cosmos_document() {
    let server = CosmosServer::shared();
    let settings = server.fresh_settings();
    let factory = Factory::start_with(common::Options {
        store: StoreBackend::Cosmos(settings.clone()),
        ..common::Options::default()
    })
    .await;

    let response = factory
        .push(COMMIT, &["images/example/build.pkr.hcl"])
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let id = body["runs"][0]["runId"].as_str().unwrap().to_string();
    assert_eq!(id, format!("push-example-{COMMIT}"));

    let waiting = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let link = factory.approval_link(&id, "platform-lead");
    let decided = factory
        .http
        .post(&link)
        .form(&[("decision", "approve"), ("comment", "from cosmos")])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200);
    let released = factory.wait_status(&id, RunStatus::Released).await;
    assert_eq!(released.version, waiting.version);
    assert!(
        !factory.data.path().join("runs.db").exists(),
        "the embedded store was not used"
    );

    // The document itself, read beside the factory through the SDK.
    let store = image_factory::azure::cosmos::CosmosStore::connect(&settings)
        .await
        .unwrap();
    let doc: Value = store
        .container()
        .read_item(id.clone(), &id, None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(doc["kind"], "run");
    assert_eq!(doc["image"], "example");
    assert_eq!(doc["status"], "released");
    let stages = doc["run"]["stages"].as_array().unwrap();
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        Stage::ALL.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    for (stage, recorded) in Stage::ALL.iter().zip(stages) {
        assert_eq!(
            released.stage(*stage).status,
            StageStatus::Succeeded,
            "{stage}"
        );
        assert_eq!(recorded["status"], "succeeded", "{stage}: {recorded}");
        assert!(recorded["startedAt"].is_string(), "{stage}: {recorded}");
        assert!(recorded["finishedAt"].is_string(), "{stage}: {recorded}");
    }
    assert_eq!(doc["run"]["decisions"][0]["approver"], "platform-lead");
    assert_eq!(doc["run"]["decisions"][0]["comment"], "from cosmos");

    // The version came from the counter document in the same container.
    let scope = VersionStrategy::Date.scope(released.created_at.date_naive());
    let counter_id = format!("seq:example:{scope}");
    let counter: Value = store
        .container()
        .read_item(counter_id.clone(), &counter_id, None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(counter["kind"], "sequence");
    assert_eq!(counter["next"], released.version.patch + 1);

    factory.stop().await;
}
