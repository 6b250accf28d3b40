//! The reaper, as specifications: the `reaper` timer of a factory whose Azure
//! access points at the Resource Manager stand-in (every request and reply
//! validated against Microsoft's REST API specifications: resources.json
//! 2021-04-01, Compute 2024-07-01, Network 2024-03-01), with the strays a
//! killed build leaves behind (its VM, NIC and public IP, and the OS disk
//! made with the VM) and a failed test's resource group. Each test checks the
//! exact requests sent: what is found, whose boot diagnostics are saved with
//! the run first, what is deleted and in which order, and what is never
//! touched: a resource without the factory's tags, a resource of a run still
//! going, a gallery image version the builder tagged. The boot diagnostics'
//! blobs come from a real HTTP server on loopback standing for the storage
//! behind the SAS URIs.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method};
use chrono::{DateTime, TimeZone, Utc};
use common::arm_server::{ArmServer, Reply, Seen, tags_updated};
use common::{Factory, Options, copy_example, serve_loopback};
use image_factory::azure::TestVmSettings;
use image_factory::domain::run::{
    Failure, ReapOutcome, Run, RunId, RunStatus, Trigger, TriggerKind,
};
use serde_json::{Value, json};

const KILLED: &str = "push-example-killed0";
const FAILED_TEST: &str = "push-example-failedtest0";
const RUNNING: &str = "push-example-running0";
const BUILD_GROUP: &str = "/subscriptions/sub-1/resourceGroups/rg-f-build";
const SAS: &str =
    "sv=2024-08-04&se=2026-12-01T13%3A00%3A00Z&sr=b&sp=r&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D";
const SERIAL_LOG: &str =
    "Windows Boot Manager\r\n[image-factory] Sysprep hangs at IMAGE_STATE_UNDEPLOYABLE\r\n";
const SCREENSHOT: &[u8] = b"BM\x36\x00\x00\x00 a bitmap";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn in_build(kind: &str, name: &str) -> String {
    format!("{BUILD_GROUP}/providers/{kind}/{name}")
}

fn test_group() -> String {
    image_factory::azure::testvm::group_name(FAILED_TEST)
}

fn test_group_path() -> String {
    format!("/subscriptions/sub-1/resourceGroups/{}", test_group())
}

fn smoke_vm() -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm-smoke",
        test_group_path()
    )
}

fn build_vm() -> String {
    in_build("Microsoft.Compute/virtualMachines", "pkrvmkilled")
}

fn build_nic() -> String {
    in_build("Microsoft.Network/networkInterfaces", "pkrnikilled")
}

fn build_ip() -> String {
    in_build("Microsoft.Network/publicIPAddresses", "pkripkilled")
}

fn build_disk() -> String {
    in_build("Microsoft.Compute/disks", "pkroskilled")
}

fn running_vm() -> String {
    in_build("Microsoft.Compute/virtualMachines", "pkrvmrunning")
}

fn untagged_vm() -> String {
    in_build("Microsoft.Compute/virtualMachines", "vm-someone-else")
}

fn foreign_nic() -> String {
    in_build("Microsoft.Network/networkInterfaces", "nic-copied-tag")
}

fn gallery_version() -> String {
    "/subscriptions/sub-1/resourceGroups/rg-f-gallery/providers/Microsoft.Compute/galleries/gal_imgf/images/windows-web-base/versions/2026.1201.0".into()
}

fn build_tags(run: &str) -> Value {
    json!({ "image-factory": "build", "image-factory-run": run, "gitRef": "c0ffee", "imageName": "windows-web-base" })
}

fn test_tags(run: &str, created: &str) -> Value {
    json!({ "image-factory": "test", "image-factory-run": run, "image-factory-created": created })
}

/// One item of a `Resources_List` page (a `GenericResourceExpanded`).
fn listed(id: &str, kind: &str, tags: Option<Value>) -> Value {
    let mut item = json!({
        "id": id,
        "name": id.rsplit('/').next().unwrap(),
        "type": kind,
        "location": "westeurope"
    });
    if let Some(tags) = tags {
        item["tags"] = tags;
    }
    item
}

/// The `Resources_List` answer for the tag filter, one page.
fn resources(items: Vec<Value>) -> Reply {
    Reply::new(
        Method::GET,
        "/subscriptions/sub-1/resources",
        200,
        json!({ "value": items }),
    )
}

/// The `ResourceGroups_List` answer (the `ResourceGroup` definition's shape
/// per item, as `CreateResourceGroup.json` shows it).
fn groups(items: Vec<(String, Value)>) -> Reply {
    let value: Vec<Value> = items
        .into_iter()
        .map(|(name, tags)| {
            json!({
                "id": format!("/subscriptions/sub-1/resourceGroups/{name}"),
                "name": name,
                "type": "Microsoft.Resources/resourceGroups",
                "location": "westeurope",
                "tags": tags,
                "properties": { "provisioningState": "Succeeded" }
            })
        })
        .collect();
    Reply::new(
        Method::GET,
        "/subscriptions/sub-1/resourcegroups",
        200,
        json!({ "value": value }),
    )
}

/// A VM as `VirtualMachines_Get` answers (ComputeRP 2024-07-01
/// `VirtualMachine_Get.json`'s shape): its tags, OS disk and boot diagnostics.
fn vm(id: &str, tags: Option<Value>, os_disk: &str, boot_diagnostics: bool) -> Value {
    let mut body = json!({
        "id": id,
        "name": id.rsplit('/').next().unwrap(),
        "type": "Microsoft.Compute/virtualMachines",
        "location": "westeurope",
        "properties": {
            "vmId": "0f47b100-583c-48e3-a4c0-aefc2c9bbcc1",
            "hardwareProfile": { "vmSize": "Standard_D4s_v5" },
            "storageProfile": {
                "osDisk": {
                    "osType": "Windows",
                    "name": os_disk.rsplit('/').next().unwrap(),
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": { "storageAccountType": "Premium_LRS", "id": os_disk },
                    "diskSizeGB": 127
                },
                "dataDisks": []
            },
            "diagnosticsProfile": { "bootDiagnostics": { "enabled": boot_diagnostics } },
            "provisioningState": "Succeeded"
        }
    });
    if let Some(tags) = tags {
        body["tags"] = tags;
    }
    body
}

fn get_vm(id: &str, body: Value) -> Reply {
    Reply::new(Method::GET, id, 200, body)
}

/// `VirtualMachines_RetrieveBootDiagnosticsData`: the two SAS URIs, on the
/// loopback storage.
fn boot_data(vm: &str, blobs: &str) -> Reply {
    let name = vm.rsplit('/').next().unwrap();
    Reply::new(
        Method::POST,
        &format!("{vm}/retrieveBootDiagnosticsData"),
        200,
        json!({
            "consoleScreenshotBlobUri": format!("{blobs}/bootdiagnostics-x/{name}.screenshot.bmp?{SAS}"),
            "serialConsoleLogBlobUri": format!("{blobs}/bootdiagnostics-x/{name}.serialconsole.log?{SAS}")
        }),
    )
}

/// A deletion answered 200 (the network and compute deletions' examples).
fn deleted(path: &str) -> Reply {
    Reply::new(Method::DELETE, path, 200, Value::Null)
}

/// `ResourceGroups_Delete`: 202 with a location, then 200 when gone.
fn group_deleted(path: &str, op: &str) -> Vec<Reply> {
    let result = format!("/subscriptions/sub-1/operationresults/{op}");
    vec![
        Reply::new(Method::DELETE, path, 202, Value::Null).header(
            "location",
            &format!("{{base}}{result}?api-version=2021-04-01"),
        ),
        Reply::new(Method::GET, &result, 200, Value::Null),
    ]
}

/// What the loopback storage served: (path, Authorization header).
type Served = Arc<Mutex<Vec<(String, Option<String>)>>>;

async fn blob(
    State(served): State<Served>,
    UrlPath((container, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Vec<u8> {
    served.lock().unwrap().push((
        format!("/{container}/{file}"),
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    ));
    if file.ends_with(".bmp") {
        SCREENSHOT.to_vec()
    } else {
        SERIAL_LOG.as_bytes().to_vec()
    }
}

async fn storage() -> (String, Served) {
    let served = Served::default();
    let app = axum::Router::new()
        .route("/{container}/{file}", axum::routing::get(blob))
        .with_state(served.clone());
    (serve_loopback(app).await, served)
}

async fn factory(server: &ArmServer) -> (Factory, tempfile::TempDir) {
    let images = tempfile::TempDir::new().expect("a folder");
    copy_example(images.path(), "example");
    let (azure, _) = server.azure(TestVmSettings::default());
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| {
            image_factory::startup::use_azure(app, azure, None);
            app.clock = Arc::new(now);
        }),
        ..Options::default()
    })
    .await;
    (factory, images)
}

/// Stores a run of the example image in `status`; an ended one ended an hour ago.
async fn store_run(factory: &Factory, id: &str, status: RunStatus) {
    let mut run = Run::new(
        id.parse().unwrap(),
        "example".into(),
        "2026.1201.0".parse().unwrap(),
        Trigger::new(TriggerKind::Push, "github"),
        BTreeMap::new(),
        now() - chrono::Duration::hours(3),
    );
    run.status = status;
    run.updated_at = now() - chrono::Duration::hours(1);
    if status == RunStatus::Failed {
        run.failure = Some(Failure {
            stage: None,
            reason: "the build worker was stopped".into(),
            at: now() - chrono::Duration::hours(1),
            diagnosis: None,
        });
    }
    factory.app.store.create(&run).await.expect("stored");
}

async fn stored(factory: &Factory, id: &str) -> Run {
    let id: RunId = id.parse().unwrap();
    factory.app.store.get(&id).await.expect("the run").value
}

/// The requests received, as `METHOD path` (no query), listings included.
fn requests(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.uri.split('?').next().unwrap()))
        .collect()
}

/// The listing of the first firing: the killed build's strays, a failed
/// test's VM (its group is listed apart), and what must never be touched.
fn first_listing() -> Reply {
    resources(vec![
        listed(
            &build_vm(),
            "Microsoft.Compute/virtualMachines",
            Some(build_tags(KILLED)),
        ),
        listed(
            &build_nic(),
            "Microsoft.Network/networkInterfaces",
            Some(build_tags(KILLED)),
        ),
        listed(
            &build_ip(),
            "Microsoft.Network/publicIPAddresses",
            Some(build_tags(KILLED)),
        ),
        listed(
            &smoke_vm(),
            "Microsoft.Compute/virtualMachines",
            Some(test_tags(FAILED_TEST, "2026-12-01T09:30:00Z")),
        ),
        listed(
            &running_vm(),
            "Microsoft.Compute/virtualMachines",
            Some(build_tags(RUNNING)),
        ),
        listed(
            &gallery_version(),
            "Microsoft.Compute/galleries/images/versions",
            Some(build_tags(KILLED)),
        ),
        // Carries a run id but not the factory's own tag.
        listed(
            &foreign_nic(),
            "Microsoft.Network/networkInterfaces",
            Some(json!({ "image-factory-run": KILLED })),
        ),
        // Listed without its tags: read, and found to have none.
        listed(&untagged_vm(), "Microsoft.Compute/virtualMachines", None),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_builds_strays_are_found_diagnosed_and_deleted_and_nothing_else_is_touched() {
    let (blobs, served) = storage().await;
    let untagged = get_vm(
        &untagged_vm(),
        vm(
            &untagged_vm(),
            None,
            &in_build("Microsoft.Compute/disks", "os-else"),
            false,
        ),
    );
    let mut script = vec![
        // Firing 1.
        first_listing(),
        untagged.clone(),
        groups(vec![(
            test_group(),
            test_tags(FAILED_TEST, "2026-12-01T09:30:00Z"),
        )]),
        groups(vec![]),
        // The build VM's boot diagnostics are off (packer): turned on.
        get_vm(
            &build_vm(),
            vm(&build_vm(), Some(build_tags(KILLED)), &build_disk(), false),
        ),
        Reply::new(
            Method::PATCH,
            &build_vm(),
            200,
            vm(&build_vm(), Some(build_tags(KILLED)), &build_disk(), true),
        ),
        // The failed test's VM has them (managed): read, then its group goes.
        get_vm(
            &smoke_vm(),
            vm(
                &smoke_vm(),
                Some(test_tags(FAILED_TEST, "2026-12-01T09:30:00Z")),
                &format!(
                    "{}/providers/Microsoft.Compute/disks/osdisk-smoke",
                    test_group_path()
                ),
                true,
            ),
        ),
        boot_data(&smoke_vm(), &blobs),
    ];
    script.extend(group_deleted(&test_group_path(), "del-group"));
    // Firing 2: the build VM's diagnostics are read, its disk tagged with
    // its run, then the VM, its NIC and its public IP deleted, in that order.
    script.extend([
        resources(vec![
            listed(
                &build_vm(),
                "Microsoft.Compute/virtualMachines",
                Some(build_tags(KILLED)),
            ),
            listed(
                &build_nic(),
                "Microsoft.Network/networkInterfaces",
                Some(build_tags(KILLED)),
            ),
            listed(
                &build_ip(),
                "Microsoft.Network/publicIPAddresses",
                Some(build_tags(KILLED)),
            ),
            listed(
                &running_vm(),
                "Microsoft.Compute/virtualMachines",
                Some(build_tags(RUNNING)),
            ),
            listed(
                &gallery_version(),
                "Microsoft.Compute/galleries/images/versions",
                Some(build_tags(KILLED)),
            ),
            listed(&untagged_vm(), "Microsoft.Compute/virtualMachines", None),
        ]),
        untagged,
        groups(vec![]),
        groups(vec![]),
        get_vm(
            &build_vm(),
            vm(&build_vm(), Some(build_tags(KILLED)), &build_disk(), true),
        ),
        boot_data(&build_vm(), &blobs),
        get_vm(
            &build_vm(),
            vm(&build_vm(), Some(build_tags(KILLED)), &build_disk(), true),
        ),
        tags_updated(
            &build_disk(),
            json!({ "image-factory": "build", "image-factory-run": KILLED }),
        ),
        deleted(&build_vm()),
        deleted(&build_nic()),
        deleted(&build_ip()),
    ]);
    let server = ArmServer::start(script).await;
    let (factory, _images) = factory(&server).await;
    store_run(&factory, KILLED, RunStatus::Failed).await;
    store_run(&factory, FAILED_TEST, RunStatus::Failed).await;
    store_run(&factory, RUNNING, RunStatus::Running).await;

    let first = factory.reap().await;
    let after_first = server.seen().len();
    let second = factory.reap().await;

    let seen = server.seen();
    assert!(server.unserved().is_empty(), "{:?}", server.unserved());
    let fired: Vec<String> = requests(&seen);
    let group_op = "GET /subscriptions/sub-1/operationresults/del-group".to_string();
    assert_eq!(
        fired[..after_first],
        [
            "GET /subscriptions/sub-1/resources".to_string(),
            format!("GET {}", untagged_vm()),
            "GET /subscriptions/sub-1/resourcegroups".into(),
            "GET /subscriptions/sub-1/resourcegroups".into(),
            format!("GET {}", build_vm()),
            format!("PATCH {}", build_vm()),
            format!("GET {}", smoke_vm()),
            format!("POST {}/retrieveBootDiagnosticsData", smoke_vm()),
            format!("DELETE {}", test_group_path()),
            group_op,
        ],
        "first firing: {first:?}"
    );
    assert_eq!(
        fired[after_first..],
        [
            "GET /subscriptions/sub-1/resources".to_string(),
            format!("GET {}", untagged_vm()),
            "GET /subscriptions/sub-1/resourcegroups".into(),
            "GET /subscriptions/sub-1/resourcegroups".into(),
            format!("GET {}", build_vm()),
            format!("POST {}/retrieveBootDiagnosticsData", build_vm()),
            format!("GET {}", build_vm()),
            format!(
                "PATCH {}/providers/Microsoft.Resources/tags/default",
                build_disk()
            ),
            format!("DELETE {}", build_vm()),
            format!("DELETE {}", build_nic()),
            format!("DELETE {}", build_ip()),
        ],
        "second firing: {second:?}"
    );
    // The queries: the documented tag filters, the VM forced, the group's VMs forced.
    let query = |s: &Seen| {
        s.uri
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        query(&seen[0]),
        "$filter=startswith%28tagName%2C%20%27image-factory-run%27%29&api-version=2021-04-01"
    );
    assert_eq!(
        query(&seen[2]),
        "$filter=tagName%20eq%20%27image-factory%27%20and%20tagValue%20eq%20%27test%27&api-version=2021-04-01"
    );
    assert!(query(&seen[3]).contains("tagValue%20eq%20%27build%27"));
    assert_eq!(query(&seen[5]), "api-version=2024-07-01");
    assert_eq!(
        seen[5].body.clone().unwrap(),
        json!({ "properties": { "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } } } })
    );
    assert_eq!(
        query(&seen[7]),
        "sasUriExpirationTimeInMinutes=30&api-version=2024-07-01"
    );
    assert_eq!(
        query(&seen[8]),
        "forceDeletionTypes=Microsoft.Compute/virtualMachines&api-version=2021-04-01"
    );
    let second_seen = &seen[after_first..];
    assert_eq!(
        second_seen[7].body.clone().unwrap(),
        json!({ "operation": "Merge", "properties": { "tags": { "image-factory": "build", "image-factory-run": KILLED } } })
    );
    assert_eq!(
        query(&second_seen[8]),
        "forceDeletion=true&api-version=2024-07-01"
    );
    assert_eq!(query(&second_seen[9]), "api-version=2024-03-01");
    assert_eq!(query(&second_seen[10]), "api-version=2024-03-01");

    // Never touched: the running run's VM, the gallery version, the NIC
    // without the factory's own tag; the untagged VM only read.
    for untouched in [running_vm(), gallery_version(), foreign_nic()] {
        assert!(
            !seen.iter().any(|s| s.uri.starts_with(&untouched)),
            "{untouched} was touched"
        );
    }
    assert!(
        seen.iter()
            .filter(|s| s.uri.starts_with(&untagged_vm()))
            .all(|s| s.method == Method::GET)
    );

    // The boot diagnostics: downloaded without the Resource Manager token,
    // kept with each run, linked from its record; no signature anywhere.
    let served = served.lock().unwrap().clone();
    assert_eq!(served.len(), 4, "{served:?}");
    assert!(served.iter().all(|(_, auth)| auth.is_none()), "{served:?}");
    let killed = stored(&factory, KILLED).await;
    let tested = stored(&factory, FAILED_TEST).await;
    for (run, vm_id, role) in [
        (&killed, build_vm(), "build"),
        (&tested, smoke_vm(), "test"),
    ] {
        let record = run
            .boot_diagnostics
            .iter()
            .find(|d| d.vm == vm_id)
            .unwrap_or_else(|| {
                panic!("no boot diagnostics of {vm_id}: {:?}", run.boot_diagnostics)
            });
        assert_eq!(record.role, role);
        let log = record.serial_log.clone().expect("the serial log is kept");
        let shot = record.screenshot.clone().expect("the screenshot is kept");
        assert_eq!(std::fs::read_to_string(&log).expect("the log"), SERIAL_LOG);
        assert_eq!(std::fs::read(&shot).expect("the screenshot"), SCREENSHOT);
        assert!(log.contains(run.id.as_str()), "{log}");
    }
    let killed_diagnostics = &killed.boot_diagnostics[0];
    assert_eq!(killed_diagnostics.attempts, 2, "turned on, then read");
    // What was reaped, on each run.
    let outcomes = |run: &Run| -> Vec<(String, ReapOutcome)> {
        run.reaped
            .iter()
            .map(|r| (r.resource.clone(), r.outcome))
            .collect()
    };
    assert_eq!(
        outcomes(&killed),
        [
            (build_vm(), ReapOutcome::Deleted),
            (build_nic(), ReapOutcome::Deleted),
            (build_ip(), ReapOutcome::Deleted),
        ]
    );
    assert!(
        killed
            .reaped
            .iter()
            .all(|r| r.reason == format!("run {KILLED} ended failed"))
    );
    assert_eq!(
        outcomes(&tested),
        [(test_group_path(), ReapOutcome::Deleted)]
    );
    assert!(stored(&factory, RUNNING).await.reaped.is_empty());
    assert_eq!(
        killed.status,
        RunStatus::Failed,
        "the run's status is as it was"
    );
    let everything = format!(
        "{} {} {first:?} {second:?}",
        serde_json::to_string(&killed).unwrap(),
        serde_json::to_string(&tested).unwrap()
    );
    assert!(
        !everything.contains("sig="),
        "a SAS signature was kept or logged"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_dry_run_mode_nothing_is_deleted_and_what_would_be_is_recorded() {
    let server = ArmServer::start(vec![
        resources(vec![listed(
            &build_disk(),
            "Microsoft.Compute/disks",
            Some(json!({ "image-factory": "build", "image-factory-run": KILLED })),
        )]),
        groups(vec![]),
        groups(vec![]),
    ])
    .await;
    let (factory, _images) = factory(&server).await;
    store_run(&factory, KILLED, RunStatus::Failed).await;
    let mut app = factory.app.clone();
    app.reaper
        .as_mut()
        .expect("the reaper runs with Azure")
        .dry_run = true;

    let request: image_factory::protocol::InvocationRequest =
        serde_json::from_value(json!({ "Data": { "timer": {} }, "Metadata": {} })).unwrap();
    let answer = image_factory::functions::Function::parse("reaper", &request)
        .expect("a reaper invocation")
        .apply(&app)
        .await
        .expect("a firing");

    assert!(server.unserved().is_empty());
    assert!(
        !server.seen().iter().any(|s| s.method != Method::GET),
        "a dry run only reads"
    );
    assert!(
        answer
            .logs
            .iter()
            .any(|l| l.starts_with(&format!("would delete {}", build_disk()))),
        "{:?}",
        answer.logs
    );
    let run = stored(&factory, KILLED).await;
    assert_eq!(run.reaped.len(), 1);
    assert_eq!(run.reaped[0].outcome, ReapOutcome::WouldDelete);
    assert_eq!(run.reaped[0].resource_type, "Microsoft.Compute/disks");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_a_run_this_factory_does_not_know_goes_only_once_older_than_the_limit() {
    let old = test_tags("push-other-factory1", "2026-11-30T10:00:00Z");
    let young = test_tags("push-other-factory2", "2026-12-01T10:00:00Z");
    let mut script = vec![
        resources(vec![]),
        groups(vec![
            ("imgf-test-push-other-factory1-1111aaaa".into(), old),
            ("imgf-test-push-other-factory2-2222bbbb".into(), young),
        ]),
        groups(vec![]),
    ];
    script.extend(group_deleted(
        "/subscriptions/sub-1/resourceGroups/imgf-test-push-other-factory1-1111aaaa",
        "del-old",
    ));
    let server = ArmServer::start(script).await;
    let (factory, _images) = factory(&server).await;

    let logs = factory.reap().await;

    assert!(server.unserved().is_empty(), "{logs:?}");
    let deletes: Vec<String> = requests(&server.seen())
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        ["DELETE /subscriptions/sub-1/resourceGroups/imgf-test-push-other-factory1-1111aaaa"]
    );
    assert!(
        logs.iter()
            .any(|l| l
                .contains("is unknown to this factory and the resource is older than 24 hours")),
        "{logs:?}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_listing_fails_the_firing_and_deletes_nothing() {
    let server = ArmServer::start(vec![Reply::new(
        Method::GET,
        "/subscriptions/sub-1/resources",
        403,
        json!({ "error": { "code": "AuthorizationFailed", "message": "The client does not have authorization to perform action 'Microsoft.Resources/subscriptions/resources/read'." } }),
    )])
    .await;
    let (factory, _images) = factory(&server).await;
    let request: image_factory::protocol::InvocationRequest =
        serde_json::from_value(json!({ "Data": { "timer": {} }, "Metadata": {} })).unwrap();

    let failed = image_factory::functions::Function::parse("reaper", &request)
        .expect("a reaper invocation")
        .apply(&factory.app)
        .await
        .expect_err("the firing fails");

    assert_eq!(failed.status(), 500);
    assert!(
        failed
            .to_string()
            .contains("cannot list what runs left behind")
            && failed.to_string().contains("AuthorizationFailed"),
        "{failed}"
    );
    assert_eq!(
        requests(&server.seen()),
        ["GET /subscriptions/sub-1/resources"]
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_factory_has_nothing_to_reap_and_the_reaper_does_nothing() {
    let factory = Factory::start().await;
    assert!(factory.app.reaper.is_none());

    let logs = factory.reap().await;

    assert_eq!(
        logs,
        ["nothing to reap: this factory creates no cloud resources"]
    );
    let panel = factory
        .http
        .get(format!("{}/api/dashboard/reaper", factory.url))
        .send()
        .await
        .expect("the panel")
        .text()
        .await
        .expect("html");
    assert!(panel.contains("Nothing to reap here"), "{panel}");
    factory.stop().await;
}
