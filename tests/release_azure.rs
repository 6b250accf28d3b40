//! The release and rollback of gallery versions, as specifications: the
//! unchanged client over real HTTP on loopback, against a Resource Manager
//! stand-in answering with bodies shaped as the GalleryRP 2024-03-03 examples
//! of the Azure REST API specifications (each fixture names its example).
//! Each test checks the exact requests sent: what is promoted, excluded and
//! deleted, that nothing is changed twice, and that a release below the
//! latest leaves the latest alone. Verified against the official
//! contract, not against a live subscription.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use chrono::{DateTime, Duration, TimeZone, Utc};
use common::arm_server::{ArmServer, Reply};
use common::{Factory, Options, copy_example};
use image_factory::azure::gallery::{self as release, ReleaseError};
use image_factory::config::ReleaseSettings;
use image_factory::domain::run::{
    BuildResult, ReleaseRecord, Run, Stage, StageOutput, Trigger, TriggerKind,
};
use image_factory::stages::StageResult;
use serde_json::{Value, json};

use common::arm_server::{VERSIONS, gallery_image};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn path(version: &str) -> String {
    format!("{VERSIONS}/{version}")
}

/// One gallery image version shaped as in GalleryRP 2024-03-03
/// `galleryExamples/GalleryImageVersion_ListByGalleryImage.json` (the same
/// schema as `GalleryImageVersion_Get.json` and the 200 answer of
/// `GalleryImageVersion_Update.json`).
fn version(name: &str, state: &str, excluded: bool, days_old: i64, regions: &[&str]) -> Value {
    let published = (now() - Duration::days(days_old)).to_rfc3339();
    let regions: Vec<(&str, u32)> = regions.iter().map(|r| (*r, 1)).collect();
    common::arm_server::gallery_version(&path(name), name, state, excluded, &published, &regions)
}

const BUILT_IN: &[&str] = &["West Europe"];
const CONFIGURED: &[&str] = &["westeurope", "northeurope"];
const REPLICATED: &[&str] = &["West Europe", "North Europe"];

/// The recorded gallery before a release: four monthly versions, the newest
/// of them latest, and the version the build just made (excluded from latest
/// by the template until it is released).
fn recorded_listing() -> Value {
    json!({ "value": [
        version("2026.701.0", "Succeeded", false, 140, REPLICATED),
        version("2026.801.0", "Succeeded", false, 110, REPLICATED),
        version("2026.901.0", "Succeeded", false, 80, REPLICATED),
        version("2026.1001.0", "Succeeded", false, 50, REPLICATED),
        version("2026.1125.0", "Succeeded", true, 0, BUILT_IN),
    ]})
}

fn settings(keep_last: Option<u32>, keep_days: Option<u32>, pinned: &[&str]) -> ReleaseSettings {
    ReleaseSettings {
        replication_regions: CONFIGURED.iter().map(|r| r.to_string()).collect(),
        keep_last,
        keep_days,
        pinned: pinned
            .iter()
            .map(|p| p.parse().expect("a version"))
            .collect(),
    }
}

/// The requests the server received, as `METHOD path` without the query.
fn requests(server: &ArmServer) -> Vec<String> {
    server
        .seen()
        .iter()
        .map(|s| {
            let path = s.uri.split('?').next().unwrap_or_default();
            format!("{} {path}", s.method)
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_release_promotes_the_new_version_replicates_it_and_prunes_what_the_policy_removes() {
    let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/capsOperations/del-801";
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, recorded_listing()),
        // GalleryImageVersion_Update.json: 200 with the updated version.
        Reply::new(
            Method::PATCH,
            &path("2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
        ),
        // GalleryImageVersion_Delete.json: 202 with Azure-AsyncOperation, then 200.
        Reply::new(Method::DELETE, &path("2026.801.0"), 202, Value::Null).header(
            "Azure-AsyncOperation",
            &format!("{{base}}{operation}?api-version=2024-03-03"),
        ),
        Reply::new(
            Method::GET,
            operation,
            200,
            json!({ "status": "Succeeded" }),
        ),
        Reply::new(Method::DELETE, &path("2026.901.0"), 200, Value::Null),
    ])
    .await;
    let (arm, _) = server.client();
    // Keep the two highest; 2026.701.0 is pinned by a consumer.
    let policy = settings(Some(2), None, &["2026.701.0"]);
    let outcome = release::release(&arm, &gallery_image(), "2026.1125.0", &policy, now())
        .await
        .expect("released");

    assert_eq!(
        requests(&server),
        [
            format!("GET {VERSIONS}"),
            format!("PATCH {}", path("2026.1125.0")),
            format!("DELETE {}", path("2026.801.0")),
            format!("GET {operation}"),
            format!("DELETE {}", path("2026.901.0")),
        ]
    );
    let patch = server.seen()[1].body.clone().expect("a body");
    let profile = &patch["properties"]["publishingProfile"];
    assert_eq!(profile["excludeFromLatest"], false);
    assert_eq!(profile["targetRegions"][0]["name"], "westeurope");
    assert_eq!(profile["targetRegions"][1]["name"], "northeurope");
    assert_eq!(outcome.promoted.as_deref(), Some("2026.1125.0"));
    assert!(outcome.excluded.is_empty(), "no higher version to exclude");
    assert_eq!(outcome.pruned, strings(&["2026.801.0", "2026.901.0"]));
    assert_eq!(outcome.regions, strings(CONFIGURED));
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_retried_release_changes_and_deletes_nothing_twice() {
    // The gallery after the first attempt: the new version is latest and
    // replicated, 2026.801.0 is gone and 2026.901.0 is still being deleted.
    let after_first = json!({ "value": [
        version("2026.701.0", "Succeeded", false, 140, REPLICATED),
        version("2026.901.0", "Deleting", false, 80, REPLICATED),
        version("2026.1001.0", "Succeeded", false, 50, REPLICATED),
        version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
    ]});
    let server = ArmServer::start(vec![Reply::new(Method::GET, VERSIONS, 200, after_first)]).await;
    let (arm, _) = server.client();
    let policy = settings(Some(2), None, &["2026.701.0"]);
    let outcome = release::release(&arm, &gallery_image(), "2026.1125.0", &policy, now())
        .await
        .expect("released again");
    assert_eq!(requests(&server), [format!("GET {VERSIONS}")]);
    assert_eq!(outcome.promoted.as_deref(), Some("2026.1125.0"));
    assert!(outcome.pruned.is_empty());
    assert_eq!(outcome.regions, strings(CONFIGURED));
}

#[tokio::test]
async fn a_conflict_on_a_change_another_attempt_already_made_ends_the_release_the_same_way() {
    let conflict = json!({ "error": { "code": "Conflict", "message": "Another operation is in progress on the resource." } });
    let server = ArmServer::start(vec![
        // A listing read before the other attempt's changes landed.
        Reply::new(Method::GET, VERSIONS, 200, recorded_listing()),
        Reply::new(Method::PATCH, &path("2026.1125.0"), 409, conflict.clone()),
        // GalleryImageVersion_Get.json: the other attempt's update is there.
        Reply::new(
            Method::GET,
            &path("2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
        ),
        Reply::new(Method::DELETE, &path("2026.801.0"), 409, conflict),
        Reply::new(
            Method::GET,
            &path("2026.801.0"),
            200,
            version("2026.801.0", "Deleting", false, 110, REPLICATED),
        ),
        // GalleryImageVersion_Delete.json's 204: nothing to delete.
        Reply::new(Method::DELETE, &path("2026.901.0"), 204, Value::Null),
    ])
    .await;
    let (arm, _) = server.client();
    let policy = settings(Some(2), None, &["2026.701.0"]);
    let outcome = release::release(&arm, &gallery_image(), "2026.1125.0", &policy, now())
        .await
        .expect("released");
    assert_eq!(outcome.pruned, strings(&["2026.801.0", "2026.901.0"]));
    let sent_changes = requests(&server)
        .into_iter()
        .filter(|r| !r.starts_with("GET"))
        .count();
    assert_eq!(sent_changes, 3, "{:?}", requests(&server));
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn the_latest_and_pinned_versions_are_never_deleted() {
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, recorded_listing()),
        Reply::new(
            Method::PATCH,
            &path("2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
        ),
        Reply::new(Method::DELETE, &path("2026.701.0"), 200, Value::Null),
        Reply::new(Method::DELETE, &path("2026.901.0"), 200, Value::Null),
        Reply::new(Method::DELETE, &path("2026.1001.0"), 200, Value::Null),
    ])
    .await;
    let (arm, _) = server.client();
    // The strictest policy: keep one version, none old enough to stay; 2026.801.0 is pinned.
    let policy = settings(Some(1), Some(1), &["2026.801.0"]);
    let outcome = release::release(&arm, &gallery_image(), "2026.1125.0", &policy, now())
        .await
        .expect("released");
    assert_eq!(
        outcome.pruned,
        strings(&["2026.701.0", "2026.901.0", "2026.1001.0"])
    );
    let deleted: Vec<String> = requests(&server)
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect();
    assert!(
        !deleted.contains(&format!("DELETE {}", path("2026.801.0"))),
        "pinned"
    );
    assert!(
        !deleted.contains(&format!("DELETE {}", path("2026.1125.0"))),
        "latest"
    );
    assert_eq!(deleted.len(), 3);
}

/// The gallery after 2026.1125.0 was released: it and 2026.1001.0 are above
/// 2026.901.0, all included.
fn released_listing() -> Value {
    json!({ "value": [
        version("2026.801.0", "Succeeded", false, 110, REPLICATED),
        version("2026.901.0", "Succeeded", false, 80, REPLICATED),
        version("2026.1001.0", "Succeeded", false, 50, REPLICATED),
        version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
        version("2026.1126.0", "Deleting", true, 0, REPLICATED),
    ]})
}

#[tokio::test]
async fn a_release_below_the_latest_is_replicated_and_kept_excluded_and_latest_stays() {
    // 2026.1001.0 is latest; 2026.950.0 was built before it and approved
    // after it was released (excluded from latest by the template).
    let listing = json!({ "value": [
        version("2026.901.0", "Succeeded", false, 80, REPLICATED),
        version("2026.950.0", "Succeeded", true, 2, BUILT_IN),
        version("2026.1001.0", "Succeeded", false, 1, REPLICATED),
    ]});
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, listing),
        Reply::new(
            Method::PATCH,
            &path("2026.950.0"),
            200,
            version("2026.950.0", "Succeeded", true, 2, REPLICATED),
        ),
        Reply::new(Method::DELETE, &path("2026.901.0"), 200, Value::Null),
    ])
    .await;
    let (arm, _) = server.client();
    // Keep one: the latest. The version released now is never pruned by it.
    let policy = settings(Some(1), None, &[]);
    let outcome = release::release(&arm, &gallery_image(), "2026.950.0", &policy, now())
        .await
        .expect("released");
    assert_eq!(
        requests(&server),
        [
            format!("GET {VERSIONS}"),
            format!("PATCH {}", path("2026.950.0")),
            format!("DELETE {}", path("2026.901.0")),
        ],
        "the latest is not touched"
    );
    let patch = server.seen()[1].body.clone().expect("a body");
    let profile = &patch["properties"]["publishingProfile"];
    assert_eq!(profile["excludeFromLatest"], true, "{patch}");
    assert_eq!(profile["targetRegions"][1]["name"], "northeurope");
    assert_eq!(outcome.promoted, None);
    assert_eq!(outcome.below_latest.as_deref(), Some("2026.1001.0"));
    assert!(outcome.excluded.is_empty());
    assert_eq!(outcome.pruned, strings(&["2026.901.0"]));
    assert_eq!(outcome.regions, strings(CONFIGURED));
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_rollback_makes_an_older_version_latest_and_keeps_the_newer_ones() {
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, released_listing()),
        Reply::new(
            Method::PATCH,
            &path("2026.1001.0"),
            200,
            version("2026.1001.0", "Succeeded", true, 50, REPLICATED),
        ),
        Reply::new(
            Method::PATCH,
            &path("2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", true, 0, REPLICATED),
        ),
    ])
    .await;
    let (arm, _) = server.client();
    let outcome = release::rollback(
        &arm,
        &gallery_image(),
        "2026.901.0".parse().expect("a version"),
    )
    .await
    .expect("rolled back");
    assert_eq!(
        requests(&server),
        [
            format!("GET {VERSIONS}"),
            format!("PATCH {}", path("2026.1001.0")),
            format!("PATCH {}", path("2026.1125.0")),
        ],
        "higher versions are excluded, nothing is deleted, the target already counts"
    );
    for seen in &server.seen()[1..] {
        let body = seen.body.clone().expect("a body");
        assert_eq!(
            body["properties"]["publishingProfile"]["excludeFromLatest"],
            true
        );
        assert!(
            body["properties"]["publishingProfile"]
                .get("targetRegions")
                .is_none()
        );
    }
    assert_eq!(outcome.promoted.as_deref(), Some("2026.901.0"));
    assert_eq!(outcome.excluded, strings(&["2026.1001.0", "2026.1125.0"]));
    assert!(outcome.pruned.is_empty());
}

#[tokio::test]
async fn a_rollback_to_a_missing_or_deleting_version_is_refused_with_nothing_changed() {
    for (to, expected) in [
        ("2026.601.0", "not in the gallery"),
        ("2026.1126.0", "being deleted"),
    ] {
        let server = ArmServer::start(vec![Reply::new(
            Method::GET,
            VERSIONS,
            200,
            released_listing(),
        )])
        .await;
        let (arm, _) = server.client();
        let error = release::rollback(&arm, &gallery_image(), to.parse().expect("a version"))
            .await
            .expect_err("refused");
        assert!(
            matches!(error, ReleaseError::Unknown(_) | ReleaseError::Deleting(_)),
            "{error:?}"
        );
        assert!(error.to_string().contains(expected), "{to}: {error}");
        assert!(!error.is_transient());
        assert_eq!(requests(&server), [format!("GET {VERSIONS}")]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_release_stage_publishes_the_built_version_and_records_every_change() {
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VERSIONS, 200, recorded_listing()),
        Reply::new(
            Method::PATCH,
            &path("2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", false, 0, REPLICATED),
        ),
        Reply::new(Method::DELETE, &path("2026.801.0"), 200, Value::Null),
        Reply::new(Method::DELETE, &path("2026.901.0"), 200, Value::Null),
    ])
    .await;
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    std::fs::write(
        dir.join("image.toml"),
        format!(
            "{toml}\n[release]\nreplication_regions = [\"westeurope\", \"northeurope\"]\nkeep_last = 2\npinned = [\"2026.701.0\"]\n"
        ),
    )
    .expect("written");
    let (azure, _) = server.azure(Default::default());
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| {
            image_factory::startup::use_azure(app, azure, None);
            app.clock = Arc::new(now);
        }),
        ..Options::default()
    })
    .await;
    let trigger = Trigger {
        commit: Some("c0ffee".into()),
        branch: Some("main".into()),
        ..Trigger::new(TriggerKind::Push, "github")
    };
    let mut run = Run::new(
        "push-example-c0ffee".parse().unwrap(),
        "example".into(),
        "2026.1125.0".parse().expect("a version"),
        trigger,
        BTreeMap::new(),
        now(),
    );
    let sig_version_id = gallery_image().version_id("2026.1125.0");
    run.build = Some(BuildResult {
        artifacts: vec![],
        managed_image_id: None,
        gallery_version_id: Some(sig_version_id.clone()),
        log: "build.log".into(),
        duration_seconds: 1,
    });

    let result = factory.app.execute_stage(&run, Stage::Release).await;
    let StageResult::Succeeded(StageOutput::Released(record)) = result else {
        panic!("the release stage did not succeed: {result:?}");
    };
    assert_eq!(
        record.sig_version_id.as_deref(),
        Some(sig_version_id.as_str())
    );
    assert_eq!(record.promoted.as_deref(), Some("2026.1125.0"));
    assert_eq!(record.pruned, strings(&["2026.801.0", "2026.901.0"]));
    assert_eq!(record.regions, strings(CONFIGURED));
    assert_eq!(record.location, sig_version_id, "kept in the gallery");
    let written = std::fs::read_to_string(
        factory
            .app
            .settings
            .run_dir(&run.id)
            .join("image-version.json"),
    )
    .expect("image-version.json");
    let document: Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(document["sigVersionId"], sig_version_id.as_str());
    assert_eq!(document["imageVersion"], "2026.1125.0");
    assert_eq!(
        serde_json::from_value::<ReleaseRecord>(document).expect("a release record"),
        *record
    );
    assert!(server.unserved().is_empty());
}
