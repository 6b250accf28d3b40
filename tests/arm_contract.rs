//! Contract tests of the Resource Manager calls: the unchanged client code
//! over real HTTP on loopback, against a server answering with bodies and
//! headers shaped exactly like the examples of the Azure REST API
//! specifications (each fixture names the example it follows). Verified
//! against the official contract, not against a live subscription.

mod common;

use axum::http::Method;
use common::arm_server::{ArmServer, Reply, TOKEN};
use image_factory::azure::arm::ArmError;
use image_factory::azure::compute;
use image_factory::config::BaseImage;
use serde_json::{Value, json};
use std::time::Duration;

use common::arm_server::{VERSIONS, gallery_image};

/// One item shaped as in GalleryRP 2024-03-03
/// `galleryExamples/GalleryImageVersion_ListByGalleryImage.json` (and
/// `GalleryImageVersion_Get.json`, which has the same schema).
fn version(name: &str, state: &str, excluded: bool, published: &str) -> Value {
    common::arm_server::gallery_version(
        &format!("{VERSIONS}/{name}"),
        name,
        state,
        excluded,
        published,
        &[("West Europe", 1), ("North Europe", 2)],
    )
}

#[tokio::test]
async fn a_paged_listing_is_read_to_its_end_with_the_token_on_every_page() {
    // GalleryImageVersion_ListByGalleryImage.json: `value` plus `nextLink`.
    let server = ArmServer::start(vec![
        Reply::new(
            Method::GET,
            VERSIONS,
            200,
            json!({
                "value": [version("2026.1001.0", "Succeeded", false, "2026-10-01T08:00:00Z")],
                "nextLink": format!("{{base}}{VERSIONS}?api-version=2024-03-03&$skiptoken=page2")
            }),
        ),
        Reply::new(
            Method::GET,
            VERSIONS,
            200,
            json!({ "value": [version("2026.1125.0", "Succeeded", true, "2026-11-25T08:00:00Z")] }),
        ),
    ])
    .await;
    let (arm, _) = server.client();
    let versions = compute::list_versions(&arm, &gallery_image())
        .await
        .expect("listed");
    let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["2026.1001.0", "2026.1125.0"]);
    assert!(versions[1].exclude_from_latest);
    assert_eq!(versions[0].target_regions, ["West Europe", "North Europe"]);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].uri.contains("api-version=2024-03-03"));
    assert!(seen[1].uri.contains("skiptoken=page2"));
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[tokio::test]
async fn a_link_to_another_host_is_never_followed_with_the_token() {
    let server = ArmServer::start(vec![Reply::new(
        Method::GET,
        VERSIONS,
        200,
        json!({
            "value": [],
            "nextLink": "http://svchost:99/subscriptions/sub-1/versions?$skiptoken=x"
        }),
    )])
    .await;
    let (arm, _) = server.client();
    let listed = compute::list_versions(&arm, &gallery_image()).await;
    assert!(
        matches!(listed, Err(ArmError::UntrustedUrl(_))),
        "{listed:?}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn an_update_is_polled_through_azure_async_operation_until_it_succeeds() {
    let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/capsOperations/0012b61c";
    let server = ArmServer::start(vec![
        // GalleryImageVersion_Update.json: 200 with provisioningState Updating.
        Reply::new(
            Method::PATCH,
            &format!("{VERSIONS}/2026.1125.0"),
            200,
            version("2026.1125.0", "Updating", false, "2026-11-25T08:00:00Z"),
        )
        .header(
            "Azure-AsyncOperation",
            &format!("{{base}}{operation}?api-version=2024-03-03"),
        )
        .header("Retry-After", "7"),
        // The operation status resource, as ARM's async pattern documents it.
        Reply::new(
            Method::GET,
            operation,
            200,
            json!({ "startTime": "2026-11-25T09:00:00Z", "status": "InProgress", "name": "0012b61c" }),
        )
        .header("Retry-After", "3"),
        Reply::new(
            Method::GET,
            operation,
            200,
            json!({ "startTime": "2026-11-25T09:00:00Z", "endTime": "2026-11-25T09:01:00Z", "status": "Succeeded", "name": "0012b61c" }),
        ),
        // GalleryImageVersion_Get.json: the version as it now is.
        Reply::new(
            Method::GET,
            &format!("{VERSIONS}/2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", false, "2026-11-25T08:00:00Z"),
        ),
    ])
    .await;
    let (arm, waits) = server.client();
    let regions = vec!["westeurope".to_string(), "northeurope".to_string()];
    let updated =
        compute::update_version(&arm, &gallery_image(), "2026.1125.0", false, Some(&regions))
            .await
            .expect("updated");
    assert_eq!(updated.provisioning_state.as_deref(), Some("Succeeded"));
    assert!(!updated.exclude_from_latest);
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    let body = seen[0].body.clone().expect("a body");
    assert_eq!(
        body["properties"]["publishingProfile"]["excludeFromLatest"],
        false
    );
    assert_eq!(
        body["properties"]["publishingProfile"]["targetRegions"][1]["name"],
        "northeurope"
    );
    assert_eq!(
        *waits.lock().unwrap(),
        [Duration::from_secs(7), Duration::from_secs(3)],
        "each poll waits as long as the previous answer's Retry-After"
    );
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_failed_operation_is_a_typed_error_with_its_code() {
    let operation =
        "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/capsOperations/op-2";
    let server = ArmServer::start(vec![
        Reply::new(
            Method::PATCH,
            &format!("{VERSIONS}/2026.1125.0"),
            200,
            version("2026.1125.0", "Updating", false, "2026-11-25T08:00:00Z"),
        )
        .header(
            "Azure-AsyncOperation",
            &format!("{{base}}{operation}?api-version=2024-03-03"),
        ),
        Reply::new(
            Method::GET,
            operation,
            200,
            json!({
                "status": "Failed",
                "error": { "code": "ReplicationJobsNotCompleted", "message": "Replication to region northeurope did not complete." }
            }),
        ),
    ])
    .await;
    let (arm, _) = server.client();
    let error = compute::update_version(&arm, &gallery_image(), "2026.1125.0", false, None)
        .await
        .expect_err("the operation failed");
    assert!(
        matches!(&error, ArmError::OperationFailed { status, code, .. } if status == "Failed" && code == "ReplicationJobsNotCompleted"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_version_stuck_creating_ends_in_a_timeout_naming_its_state() {
    // No operation header: the body's provisioningState is polled on the resource.
    let mut replies = vec![Reply::new(
        Method::PATCH,
        &format!("{VERSIONS}/2026.1125.0"),
        200,
        version("2026.1125.0", "Creating", false, "2026-11-25T08:00:00Z"),
    )];
    for _ in 0..5 {
        replies.push(Reply::new(
            Method::GET,
            &format!("{VERSIONS}/2026.1125.0"),
            200,
            version("2026.1125.0", "Creating", false, "2026-11-25T08:00:00Z"),
        ));
    }
    let server = ArmServer::start(replies).await;
    let (arm, waits) = server.client();
    let error = compute::update_version(&arm, &gallery_image(), "2026.1125.0", false, None)
        .await
        .expect_err("stuck");
    assert!(
        matches!(&error, ArmError::OperationTimeout { polls: 5, last_state } if last_state == "Creating"),
        "{error:?}"
    );
    assert_eq!(waits.lock().unwrap().len(), 5);
    let diagnosis = image_factory::domain::diagnosis::diagnose(&format!(
        "gallery image version 2026.1125.0: {error}; provisioningState Creating"
    ));
    assert_eq!(
        diagnosis.map(|d| d.kind).as_deref(),
        Some("gallery-version-stuck")
    );
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_then_given_up_with_nothing_changed() {
    let throttled = |method: Method| {
        Reply::new(
            method,
            &format!("{VERSIONS}/2026.1125.0"),
            429,
            json!({ "error": { "code": "TooManyRequests", "message": "The request is being throttled." } }),
        )
        .header("Retry-After", "4")
    };
    let server = ArmServer::start(vec![
        throttled(Method::GET),
        Reply::new(
            Method::GET,
            &format!("{VERSIONS}/2026.1125.0"),
            200,
            version("2026.1125.0", "Succeeded", true, "2026-11-25T08:00:00Z"),
        ),
    ])
    .await;
    let (arm, waits) = server.client();
    let got = compute::get_version(&arm, &gallery_image(), "2026.1125.0")
        .await
        .expect("read after one throttled answer")
        .expect("exists");
    assert_eq!(got.name, "2026.1125.0");
    assert_eq!(*waits.lock().unwrap(), [Duration::from_secs(4)]);

    let server = ArmServer::start((0..4).map(|_| throttled(Method::PATCH)).collect()).await;
    let (arm, waits) = server.client();
    let error = compute::update_version(&arm, &gallery_image(), "2026.1125.0", false, None)
        .await
        .expect_err("throttled throughout");
    assert!(
        matches!(error, ArmError::Throttled { attempts: 4 }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(waits.lock().unwrap().len(), 3);
    assert!(
        server.seen().iter().all(|s| s.method == Method::PATCH),
        "only the refused request was sent"
    );
}

#[tokio::test]
async fn errors_are_typed_from_arm_error_bodies() {
    let cases: Vec<(u16, &str, &str)> = vec![
        (404, "ResourceGroupNotFound", "not-found"),
        (409, "Conflict", "conflict"),
        (403, "AuthorizationFailed", "unauthorized"),
        (400, "InvalidParameter", "bad-request"),
        (500, "InternalServerError", "server"),
    ];
    for (status, code, expected) in cases {
        let server = ArmServer::start(vec![Reply::new(
            Method::PATCH,
            &format!("{VERSIONS}/1.0.0"),
            status,
            json!({ "error": { "code": code, "message": "as the ARM error contract shapes it" } }),
        )])
        .await;
        let (arm, _) = server.client();
        let error = compute::update_version(&arm, &gallery_image(), "1.0.0", false, None)
            .await
            .expect_err("an error answer");
        let kind = match &error {
            ArmError::NotFound { .. } => "not-found",
            ArmError::Conflict { .. } => "conflict",
            ArmError::Unauthorized { .. } => "unauthorized",
            ArmError::BadRequest { .. } => "bad-request",
            ArmError::Server { .. } => "server",
            _ => "other",
        };
        assert_eq!(kind, expected, "HTTP {status} {code}: {error:?}");
        assert!(error.to_string().contains(code), "{error}");
        assert!(!error.to_string().contains(TOKEN));
    }
}

#[tokio::test]
async fn deleting_follows_the_operation_and_a_missing_version_is_not_an_error() {
    let operation = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/capsOperations/del-1";
    let server = ArmServer::start(vec![
        // GalleryImageVersion_Delete.json: 202 with Azure-AsyncOperation and Location.
        Reply::new(
            Method::DELETE,
            &format!("{VERSIONS}/2026.701.0"),
            202,
            Value::Null,
        )
        .header(
            "Azure-AsyncOperation",
            &format!("{{base}}{operation}?api-version=2022-01-03"),
        )
        .header(
            "Location",
            &format!("{{base}}{operation}?monitor=true&api-version=2022-01-03"),
        ),
        Reply::new(
            Method::GET,
            operation,
            200,
            json!({ "status": "Succeeded" }),
        ),
        Reply::new(
            Method::DELETE,
            &format!("{VERSIONS}/2026.601.0"),
            404,
            json!({ "error": { "code": "ResourceNotFound", "message": "gone" } }),
        ),
    ])
    .await;
    let (arm, _) = server.client();
    assert!(
        compute::delete_version(&arm, &gallery_image(), "2026.701.0")
            .await
            .expect("deleted")
    );
    assert!(
        !compute::delete_version(&arm, &gallery_image(), "2026.601.0")
            .await
            .expect("already gone")
    );
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_resource_group_delete_is_polled_through_location() {
    // Microsoft.Resources 2021-04-01 `ForceDeleteVMsInResourceGroup.json`:
    // 202 with a `location` header, then 200 when done.
    let rg = "/subscriptions/sub-1/resourcegroups/rg-test-run-1";
    let result = "/subscriptions/sub-1/operationresults/c9bbccf4";
    let server = ArmServer::start(vec![
        Reply::new(Method::DELETE, rg, 202, Value::Null).header(
            "location",
            &format!("{{base}}{result}?api-version=2018-08-01"),
        ),
        Reply::new(Method::GET, result, 202, Value::Null).header("Retry-After", "15"),
        Reply::new(Method::GET, result, 200, Value::Null),
    ])
    .await;
    let (arm, waits) = server.client();
    assert!(
        arm.delete(&format!("{rg}?api-version=2021-04-01"))
            .await
            .expect("deleted")
    );
    assert_eq!(
        *waits.lock().unwrap(),
        [Duration::from_secs(10), Duration::from_secs(15)],
        "the first poll waits the default interval, the next the server's Retry-After"
    );
}

#[tokio::test]
async fn marketplace_versions_are_listed_and_the_newest_taken() {
    // ComputeRP 2024-07-01 `VirtualMachineImage_List_MaximumSet_Gen.json`:
    // a plain JSON array of {name, location, id, ...}.
    let path = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/publishers/MicrosoftWindowsServer/artifacttypes/vmimage/offers/WindowsServer/skus/2022-datacenter-azure-edition/versions";
    let item = |name: &str| {
        json!({
            "name": name,
            "location": "westeurope",
            "tags": { "key7868": "aaaaa" },
            "id": format!("{path}/{name}")
        })
    };
    let server = ArmServer::start(vec![Reply::new(
        Method::GET,
        path,
        200,
        json!([
            item("20348.2762.241009"),
            item("20348.2849.241106"),
            item("20348.999.240101")
        ]),
    )])
    .await;
    let (arm, _) = server.client();
    let base = BaseImage {
        publisher: "MicrosoftWindowsServer".into(),
        offer: "WindowsServer".into(),
        sku: "2022-datacenter-azure-edition".into(),
        location: "westeurope".into(),
    };
    let names = compute::marketplace_versions(&arm, "sub-1", &base)
        .await
        .expect("listed");
    assert_eq!(
        image_factory::domain::image::newest_marketplace_version(&names),
        Some("20348.2849.241106")
    );
    assert!(server.seen()[0].uri.ends_with("?api-version=2024-07-01"));
}

/// The gallery image definition `windows-web-base` of [`gallery_image`]'s
/// gallery, shaped as GalleryRP 2024-03-03 describes a `GalleryImage`
/// (`properties` as `GalleryImageProperties`), with `properties` merged in.
fn definition(properties: Value) -> Value {
    let id = VERSIONS.trim_end_matches("/versions");
    let mut body = json!({
        "id": id,
        "name": "windows-web-base",
        "type": "Microsoft.Compute/galleries/images",
        "location": "westeurope",
        "properties": {
            "osType": "Windows",
            "osState": "Generalized",
            "hyperVGeneration": "V2",
            "identifier": { "publisher": "ImageFactory", "offer": "WindowsServer", "sku": "2022-datacenter-base" },
            "provisioningState": "Succeeded"
        }
    });
    for (key, value) in properties.as_object().into_iter().flatten() {
        body["properties"][key] = value.clone();
    }
    body
}

/// What the seed image's image.toml says of its definition.
fn seed_definition() -> image_factory::domain::image::GalleryDefinition {
    let text = std::fs::read_to_string(
        common::repo_root().join("images/base-w2022-datacenter/image.toml"),
    )
    .expect("the seed image.toml");
    image_factory::config::parse_image_settings(&text)
        .expect("valid")
        .gallery_definition("base-w2022-datacenter")
        .expect("the seed publishes to the gallery")
}

#[tokio::test]
async fn a_gallery_image_definition_is_created_from_image_toml_in_the_gallerys_region_then_left_alone()
 {
    use image_factory::azure::definition::{Defined, define};
    let id = VERSIONS.trim_end_matches("/versions");
    let gallery = id
        .split("/images/")
        .next()
        .expect("the gallery")
        .to_string();
    let wanted = seed_definition();
    let created = definition(json!({
        "description": wanted.settings.description,
        "features": [{ "name": "SecurityType", "value": "TrustedLaunchSupported" }],
        "recommended": { "vCPUs": { "min": 2, "max": 16 }, "memory": { "min": 4, "max": 64 } }
    }));
    let server = ArmServer::start(vec![
        Reply::new(
            Method::GET,
            id,
            404,
            json!({ "error": { "code": "ResourceNotFound", "message": "The Resource 'Microsoft.Compute/galleries/acg_shared/images/windows-web-base' under resource group 'rg-img-gallery' was not found." } }),
        ),
        Reply::new(
            Method::GET,
            &gallery,
            200,
            json!({
                "id": gallery,
                "name": "acg_shared",
                "type": "Microsoft.Compute/galleries",
                "location": "westeurope",
                "properties": { "identifier": { "uniqueName": "sub-1-ACG_SHARED" }, "provisioningState": "Succeeded" }
            }),
        ),
        Reply::new(Method::PUT, id, 201, created.clone()),
        Reply::new(Method::GET, id, 200, created.clone()),
    ])
    .await;
    let (arm, _) = server.client();
    assert_eq!(
        define(&arm, &gallery_image(), &wanted)
            .await
            .expect("created"),
        Defined::Created
    );
    // Asked again (the next build): read, found as image.toml says, nothing sent.
    assert_eq!(
        define(&arm, &gallery_image(), &wanted).await.expect("read"),
        Defined::Unchanged
    );
    let seen = server.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "GET", "PUT", "GET"]);
    let put = seen[2].body.clone().expect("a body");
    assert_eq!(put["location"], "westeurope");
    assert_eq!(put["properties"]["osType"], "Windows");
    assert_eq!(put["properties"]["osState"], "Generalized");
    assert_eq!(put["properties"]["hyperVGeneration"], "V2");
    assert_eq!(
        put["properties"]["identifier"],
        json!({ "publisher": "ImageFactory", "offer": "WindowsServer", "sku": "2022-datacenter-base" })
    );
    assert_eq!(
        put["properties"]["features"],
        json!([{ "name": "SecurityType", "value": "TrustedLaunchSupported" }])
    );
    assert!(
        seen[2].uri.ends_with("?api-version=2024-03-03"),
        "{}",
        seen[2].uri
    );
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_definition_without_security_type_is_refused_with_what_to_do_and_a_new_description_is_put()
 {
    use image_factory::azure::definition::{Defined, DefinitionError, define};
    let id = VERSIONS.trim_end_matches("/versions");
    let wanted = seed_definition();
    // What infra/modules/gallery.bicep made: no SecurityType.
    let bicep = definition(json!({ "description": "old words" }));
    let trusted = definition(json!({
        "description": "old words",
        "features": [{ "name": "SecurityType", "value": "TrustedLaunchSupported" }]
    }));
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, id, 200, bicep),
        Reply::new(Method::GET, id, 200, trusted.clone()),
        Reply::new(Method::PUT, id, 200, trusted),
    ])
    .await;
    let (arm, _) = server.client();
    let error = define(&arm, &gallery_image(), &wanted)
        .await
        .expect_err("a fixed difference");
    assert!(
        matches!(error, DefinitionError::Fixed { .. }) && !error.is_transient(),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("SecurityType unset (image.toml says TrustedLaunchSupported)")
            && message.contains("delete the definition"),
        "{message}"
    );
    assert_eq!(server.seen().len(), 1, "nothing sent after the read");
    // Only the description differs: it is updated in place.
    assert_eq!(
        define(&arm, &gallery_image(), &wanted)
            .await
            .expect("updated"),
        Defined::Updated
    );
    let put = server.seen()[2].body.clone().expect("a body");
    assert_eq!(
        put["properties"]["description"],
        json!(wanted.settings.description)
    );
    assert_eq!(put["location"], "westeurope");
}
