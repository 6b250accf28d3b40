//! The validator behind every loopback Azure fake, proven strict: a
//! misspelled property, a read-only property in a request and a wrong
//! api-version are refused with the operation, the JSON path and the rule
//! named, and the Resource Manager fake answers them as Resource Manager does;
//! an Application Insights envelope with a misspelled or missing field is
//! refused by the `track` operation, and the ingestion endpoint answers it 400.

mod common;

use axum::http::Method;
use common::arm_server::{ArmServer, Reply, VERSIONS};
use common::spec_validator::{Exchange, check};
use serde_json::{Value, json};

const VERSION: &str = "/subscriptions/sub-1/resourceGroups/rg-img-gallery/providers/Microsoft.Compute/galleries/acg_shared/images/windows-web-base/versions/2026.1125.0";
const VM: &str = "/subscriptions/sub-1/resourceGroups/imgf-test-run-1/providers/Microsoft.Compute/virtualMachines/vm-smoke";

fn exchange(
    method: &str,
    path_and_query: &str,
    request: Value,
    status: u16,
    response: Value,
) -> Exchange {
    Exchange {
        method: method.into(),
        url: format!("https://management.azure.com{path_and_query}"),
        request_headers: Vec::new(),
        request_body: request,
        status,
        response_headers: Vec::new(),
        response_body: response,
    }
}

fn version_reply(excluded: bool) -> Value {
    common::arm_server::gallery_version(
        VERSION,
        "2026.1125.0",
        "Succeeded",
        excluded,
        "2026-11-25T10:00:00Z",
        &[("westeurope", 1)],
    )
}

fn vm_body(extra: Option<(&str, Value)>) -> Value {
    let mut body = json!({
        "location": "westeurope",
        "properties": {
            "hardwareProfile": { "vmSize": "Standard_D2s_v5" },
            "storageProfile": { "imageReference": { "id": VERSION },
                "osDisk": { "name": "osdisk-smoke", "caching": "ReadWrite", "createOption": "FromImage",
                    "deleteOption": "Delete", "managedDisk": { "storageAccountType": "StandardSSD_LRS" } } },
            "osProfile": { "computerName": "imgf-smoke", "adminUsername": "imgfadmin", "adminPassword": "x-Qz7-Password-1" },
            "networkProfile": { "networkInterfaces": [{ "id": "/subscriptions/sub-1/resourceGroups/imgf-test-run-1/providers/Microsoft.Network/networkInterfaces/nic-smoke", "properties": { "primary": true } }] }
        }
    });
    if let Some((name, value)) = extra {
        body["properties"][name] = value;
    }
    body
}

#[test]
fn a_gallery_version_patch_as_the_factory_sends_it_is_valid() {
    let body = json!({ "properties": { "publishingProfile": { "excludeFromLatest": true }, "storageProfile": {} } });
    let operation = check(&exchange(
        "PATCH",
        &format!("{VERSION}?api-version=2024-03-03"),
        body,
        200,
        version_reply(true),
    ))
    .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(operation, "GalleryImageVersions_Update");
}

#[test]
fn a_misspelled_exclude_from_latest_is_refused_with_operation_and_path() {
    let body = json!({ "properties": { "publishingProfile": { "excludefromLatest": true }, "storageProfile": {} } });
    let violation = check(&exchange(
        "PATCH",
        &format!("{VERSION}?api-version=2024-03-03"),
        body,
        200,
        version_reply(true),
    ))
    .expect_err("a misspelled property");
    assert_eq!(violation.operation, "GalleryImageVersions_Update");
    let text = violation.to_string();
    assert!(
        text.contains("/properties/publishingProfile/excludefromLatest"),
        "{text}"
    );
    assert!(text.contains("OBJECT_ADDITIONAL_PROPERTIES"), "{text}");
    assert!(violation.in_request() && !violation.is_routing(), "{text}");
}

#[test]
fn provisioning_state_in_a_vm_put_is_refused_as_read_only() {
    let path = format!("{VM}?api-version=2024-07-01");
    let mut reply = vm_body(None);
    reply["properties"]["provisioningState"] = json!("Creating");
    reply["properties"]["osProfile"]
        .as_object_mut()
        .map(|o| o.remove("adminPassword"));
    check(&exchange("PUT", &path, vm_body(None), 201, reply.clone()))
        .unwrap_or_else(|v| panic!("{v}"));
    let violation = check(&exchange(
        "PUT",
        &path,
        vm_body(Some(("provisioningState", json!("Succeeded")))),
        201,
        reply,
    ))
    .expect_err("a read-only property in a request");
    assert_eq!(violation.operation, "VirtualMachines_CreateOrUpdate");
    let text = violation.to_string();
    assert!(text.contains("/properties/provisioningState"), "{text}");
    assert!(
        text.contains("READONLY_PROPERTY_NOT_ALLOWED_IN_REQUEST"),
        "{text}"
    );
}

#[test]
fn a_wrong_api_version_is_refused_and_named() {
    let violation = check(&exchange(
        "GET",
        &format!("{VERSION}?api-version=2022-03-03"),
        Value::Null,
        200,
        version_reply(false),
    ))
    .expect_err("an api-version the specs do not define");
    assert!(violation.is_api_version(), "{violation}");
    let text = violation.to_string();
    assert!(
        text.contains("2022-03-03") && text.contains("OPERATION_NOT_FOUND_IN_CACHE_WITH_API"),
        "{text}"
    );
    assert_eq!(violation.arm_answer().0, 400);
}

#[test]
fn a_fake_reply_missing_what_the_spec_requires_is_refused() {
    // GalleryImageVersions_Get answers a tracked resource: `location` is required.
    let mut reply = version_reply(false);
    reply.as_object_mut().map(|o| o.remove("location"));
    let violation = check(&exchange(
        "GET",
        &format!("{VERSION}?api-version=2024-03-03"),
        Value::Null,
        200,
        reply,
    ))
    .expect_err("a reply without location");
    assert_eq!(violation.operation, "GalleryImageVersions_Get");
    let text = violation.to_string();
    assert!(
        text.contains("response") && text.contains("OBJECT_MISSING_REQUIRED_PROPERTY"),
        "{text}"
    );
}

#[tokio::test]
async fn the_fake_answers_a_misspelled_patch_as_resource_manager_does_and_names_it() {
    let server = ArmServer::start(vec![Reply::new(
        Method::PATCH,
        VERSION,
        200,
        version_reply(true),
    )])
    .await;
    let (arm, _) = server.client();
    let wrong = json!({ "properties": { "publishingProfile": { "excludefromLatest": true }, "storageProfile": {} } });
    let error = arm
        .patch(&format!("{VERSION}?api-version=2024-03-03"), &wrong)
        .await
        .expect_err("Resource Manager refuses the body");
    assert!(
        error.to_string().contains("InvalidRequestContent"),
        "{error}"
    );
    let violations = server.take_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0]
            .to_string()
            .contains("GalleryImageVersions_Update")
    );
    assert_eq!(
        server.unserved().len(),
        1,
        "the scripted reply is not served to a refused request"
    );
}

#[tokio::test]
async fn the_fake_answers_an_unknown_path_with_404_and_not_by_prefix() {
    let server = ArmServer::start(vec![Reply::new(
        Method::GET,
        VERSIONS,
        200,
        json!({ "value": [] }),
    )])
    .await;
    let (arm, _) = server.client();
    let error = arm
        .get(&format!(
            "{VERSIONS}/2026.1125.0/nonsense?api-version=2024-03-03"
        ))
        .await
        .expect_err("no such operation");
    assert!(error.to_string().contains("not found"), "{error}");
    let violations = server.take_violations();
    assert!(
        violations.len() == 1 && violations[0].is_routing(),
        "{violations:?}"
    );
    assert_eq!(
        server.unserved().len(),
        1,
        "the listing's reply is not served to a longer path"
    );
}

#[tokio::test]
#[should_panic(expected = "GalleryImageVersions_Update")]
async fn a_refused_exchange_fails_the_test_when_the_fake_is_dropped() {
    let server = ArmServer::start(vec![Reply::new(
        Method::PATCH,
        VERSION,
        200,
        version_reply(true),
    )])
    .await;
    let (arm, _) = server.client();
    let wrong = json!({ "properties": { "publishingProfile": { "excludefromLatest": true }, "storageProfile": {} } });
    let _ = arm
        .patch(&format!("{VERSION}?api-version=2024-03-03"), &wrong)
        .await;
    drop(server);
}

#[test]
fn a_job_start_is_checked_against_microsoft_app_2025_01_01() {
    let path = "/subscriptions/sub-1/resourceGroups/rg-factory/providers/Microsoft.App/jobs/caj-factory-build/start?api-version=2025-01-01";
    let template = json!({ "containers": [{ "name": "worker", "image": "registry.example/worker:1",
        "env": [{ "name": "IMAGE_FACTORY_ORDER", "value": "{}" }], "resources": { "cpu": 1.0, "memory": "2Gi" } }] });
    let started = json!({ "name": "caj-factory-build-0000001", "id": "/subscriptions/sub-1/resourceGroups/rg-factory/providers/Microsoft.App/jobs/caj-factory-build/executions/caj-factory-build-0000001" });
    let operation = check(&exchange(
        "POST",
        path,
        template.clone(),
        200,
        started.clone(),
    ))
    .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(operation, "Jobs_Start");
    let mut wrong = template;
    wrong["containers"][0]["environment"] = json!([]);
    let violation = check(&exchange("POST", path, wrong, 200, started))
        .expect_err("an unknown container property");
    assert!(
        violation.to_string().contains("/containers/0/environment"),
        "{violation}"
    );
}

#[test]
fn the_function_app_reads_of_the_doctor_are_checked_against_microsoft_web_2024_04_01() {
    let site = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/testrg123/providers/Microsoft.Web/sites/sitef6141";
    let example = common::spec_validator::example(
        "specification/web/resource-manager/Microsoft.Web/stable/2024-04-01/examples/ListAppSettings.json",
    );
    let settings = example["responses"]["200"]["body"].clone();
    let operation = check(&exchange(
        "POST",
        &format!("{site}/config/appsettings/list?api-version=2024-04-01"),
        Value::Null,
        200,
        settings,
    ))
    .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(operation, "WebApps_ListApplicationSettings");
    let functions = json!({ "value": [{ "id": format!("{site}/functions/build"), "name": "sitef6141/build",
        "type": "Microsoft.Web/sites/functions", "properties": { "name": "build", "config": {} } }] });
    let violation = check(&exchange(
        "GET",
        &format!("{site}/functions?api-version=2024-04-01"),
        Value::Null,
        200,
        functions,
    ))
    .expect_err("a function's properties have no name");
    assert_eq!(violation.operation, "WebApps_ListFunctions");
    assert!(
        violation.to_string().contains("/value/0/properties/name"),
        "{violation}"
    );
}

/// A telemetry envelope as the exporter sends one: a span as a dependency.
fn envelope() -> Value {
    json!({
        "name": "Microsoft.ApplicationInsights.RemoteDependency",
        "time": "2026-11-30T11:00:00.123Z",
        "sampleRate": 100.0,
        "iKey": "11111111-2222-3333-4444-555555555555",
        "tags": { "ai.operation.id": "0af7651916cd43dd8448eb211c80319c", "ai.cloud.role": "image-factory" },
        "data": { "baseType": "RemoteDependencyData",
            "baseData": { "ver": 2, "name": "build", "id": "b7ad6b7169203331", "duration": "0.00:00:01.000000",
                "success": true, "properties": { "stage": "build" } } }
    })
}

/// The exporter's envelope with its `iKey` spelled `ikey`.
fn misspelled_ikey() -> Value {
    let mut envelope = envelope();
    if let Some(fields) = envelope.as_object_mut()
        && let Some(key) = fields.remove("iKey")
    {
        fields.insert("ikey".into(), key);
    }
    envelope
}

#[test]
fn an_envelope_with_a_misspelled_ikey_or_without_time_is_refused_with_the_operation_and_path() {
    let answer = common::ingestion::track_response(1, 1, &[]);
    let operation = check(&common::ingestion::exchange(
        "/v2.1/track",
        json!([envelope()]),
        200,
        answer,
    ))
    .unwrap_or_else(|v| panic!("{v}"));
    assert_eq!(operation, "track");

    let mut timeless = envelope();
    if let Some(fields) = timeless.as_object_mut() {
        fields.remove("time");
    }
    let violation = check(&common::ingestion::exchange(
        "/v2.1/track",
        json!([envelope(), misspelled_ikey(), timeless]),
        200,
        common::ingestion::track_response(3, 3, &[]),
    ))
    .expect_err("a misspelled iKey and a missing time");
    assert_eq!(violation.operation, "track");
    let broken: Vec<(&str, &str, &str)> = violation
        .issues
        .iter()
        .map(|i| (i.side.as_str(), i.path.as_str(), i.code.as_str()))
        .collect();
    assert!(
        broken.contains(&("request", "/1/ikey", "OBJECT_ADDITIONAL_PROPERTIES")),
        "{violation}"
    );
    assert!(
        broken.contains(&("request", "/2/time", "OBJECT_MISSING_REQUIRED_PROPERTY")),
        "{violation}"
    );
    assert_eq!(broken.len(), 2, "{violation}");
}

#[test]
fn a_track_answer_the_operation_does_not_define_is_refused() {
    let mut answer = common::ingestion::track_response(1, 1, &[]);
    answer["itemsRejected"] = json!(0);
    let violation = check(&common::ingestion::exchange(
        "/v2.1/track",
        json!([envelope()]),
        200,
        answer,
    ))
    .expect_err("an unknown property in the answer");
    assert_eq!(violation.operation, "track");
    assert!(
        violation
            .to_string()
            .contains("response /itemsRejected: OBJECT_ADDITIONAL_PROPERTIES"),
        "{violation}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ingestion_endpoint_refuses_a_misspelled_envelope_and_names_it() {
    use std::io::Write;
    let token = common::identity::token_for("https://monitor.azure.com");
    let ingestion = common::ingestion::Ingestion::accepting(&token);
    let started = common::ingestion::start(ingestion.clone()).await;
    let post = |envelopes: Value| {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(envelopes.to_string().as_bytes())
            .expect("compress");
        let body = gzip.finish().expect("compress");
        started
            .client
            .post(format!("{}v2.1/track", started.endpoint))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };

    let good = post(json!([envelope()])).await.expect("send");
    assert_eq!(good.status(), 200);
    let answer: Value = good.json().await.expect("a TrackResponse");
    assert_eq!(
        answer,
        json!({ "itemsReceived": 1, "itemsAccepted": 1, "errors": [] })
    );
    assert!(ingestion.take_violations().is_empty());

    let refused = post(json!([misspelled_ikey()])).await.expect("send");
    assert_eq!(refused.status(), 400);
    let answer: Value = refused.json().await.expect("a TrackResponse");
    assert_eq!(answer["itemsAccepted"], 0);
    assert_eq!(answer["errors"][0]["index"], 0);
    assert_eq!(answer["errors"][0]["statusCode"], 400);
    let violations = ingestion.take_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let named = violations[0].to_string();
    for part in [
        "track (POST https://dc.services.visualstudio.com/v2.1/track",
        "request /0/ikey: OBJECT_ADDITIONAL_PROPERTIES",
    ] {
        assert!(named.contains(part), "{named}");
    }
    assert_eq!(ingestion.items().await.len(), 1, "only the valid one");
    assert_eq!(
        *ingestion.refused.lock().await,
        vec!["/v2.1/track 400".to_string()]
    );
}
