//! The test stage on Azure, as specifications: the unchanged Resource
//! Manager client over real HTTP on loopback, against a stand-in answering
//! with bodies and headers shaped as the Azure REST API specifications'
//! examples (each fixture names its example), every request and reply
//! validated against the specifications. Each test checks the exact requests
//! sent: what is created, with which names, tags and bodies, that a retry
//! creates nothing twice, that the NIC joins the build network's subnet when
//! one is configured, that the VM is a Trusted Launch VM when the image's
//! gallery definition admits one, that the image's declaration checker
//! (`Test-ImageDeclaration.ps1`, the Windows image's own file) runs through
//! Run Command with the declaration as its parameters and its output is read
//! into one result per check, and that the resource group is deleted in
//! every outcome but a VM that failed its check (kept for its boot
//! diagnostics, which the reaper saves: tests/reaper.rs). Verified against
//! the official contract, not against a live subscription.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;
use chrono::{DateTime, TimeZone, Utc};
use common::arm_server::{ArmServer, Reply, Seen, TOKEN, tags_updated};
use common::{Factory, Options, copy_example};
use image_factory::azure::TestVmSettings;
use image_factory::azure::testvm;
use image_factory::domain::machine::{Event, decide};
use image_factory::domain::run::{
    BuildResult, Execution, Run, Stage, StageOutput, Trigger, TriggerKind,
};
use image_factory::stages::StageResult;
use serde_json::{Value, json};

const RUN_ID: &str = "push-example-c0ffee";
const VERSION_ID: &str = "/subscriptions/sub-1/resourceGroups/rg-img-gallery/providers/Microsoft.Compute/galleries/acg_shared/images/windows-web-base/versions/2026.1125.0";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

/// When the test stage's attempt started (the creation tag).
fn attempt_started() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 11, 58, 0).unwrap()
}

fn group() -> String {
    testvm::group_name(RUN_ID)
}

fn group_path() -> String {
    format!("/subscriptions/sub-1/resourceGroups/{}", group())
}

fn vnet_path() -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet-smoke",
        group_path()
    )
}

fn nic_path() -> String {
    format!(
        "{}/providers/Microsoft.Network/networkInterfaces/nic-smoke",
        group_path()
    )
}

fn vm_path() -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm-smoke",
        group_path()
    )
}

fn disk_path() -> String {
    format!(
        "{}/providers/Microsoft.Compute/disks/osdisk-smoke",
        group_path()
    )
}

/// The build network's VM subnet, as the deployment configures it.
const SUBNET_ID: &str = "/subscriptions/sub-1/resourceGroups/rg-f-build/providers/Microsoft.Network/virtualNetworks/vnet-imgf-f/subnets/vms";

/// The OS disk gets the run's tags (Tags_UpdateAtScope, Merge).
fn disk_tagged() -> Reply {
    tags_updated(
        &disk_path(),
        json!({ "image-factory": "test", "image-factory-run": RUN_ID, "image-factory-created": "2026-11-25T11:58:00Z" }),
    )
}

fn run_command_path() -> String {
    format!("{}/runCommand", vm_path())
}

/// Microsoft.Resources 2021-04-01 `CreateResourceGroup.json`: 201 with the group.
fn group_created() -> Reply {
    Reply::new(
        Method::PUT,
        &group_path(),
        201,
        json!({
            "id": group_path(),
            "name": group(),
            "location": "westeurope",
            "tags": { "image-factory": "test", "image-factory-run": RUN_ID },
            "properties": { "provisioningState": "Succeeded" }
        }),
    )
}

/// Network 2024-03-01 `VirtualNetworkCreateSubnet.json`: 201, Succeeded.
fn vnet_created() -> Reply {
    Reply::new(
        Method::PUT,
        &vnet_path(),
        201,
        json!({
            "name": "vnet-smoke",
            "id": vnet_path(),
            "type": "Microsoft.Network/virtualNetworks",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "addressSpace": { "addressPrefixes": ["10.250.0.0/24"] },
                "subnets": [{
                    "id": format!("{}/subnets/default", vnet_path()),
                    "name": "default",
                    "properties": { "addressPrefix": "10.250.0.0/27", "provisioningState": "Succeeded" }
                }],
                "virtualNetworkPeerings": []
            }
        }),
    )
}

/// Network 2024-03-01 `NetworkInterfaceCreate.json`: 201, Succeeded (one
/// private ip configuration, no public address).
fn nic_created() -> Reply {
    Reply::new(
        Method::PUT,
        &nic_path(),
        201,
        json!({
            "name": "nic-smoke",
            "id": nic_path(),
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "ipConfigurations": [{
                    "name": "ipconfig1",
                    "id": format!("{}/ipConfigurations/ipconfig1", nic_path()),
                    "properties": {
                        "provisioningState": "Succeeded",
                        "privateIPAddress": "10.250.0.4",
                        "privateIPAllocationMethod": "Dynamic",
                        "subnet": { "id": format!("{}/subnets/default", vnet_path()) },
                        "primary": true,
                        "privateIPAddressVersion": "IPv4"
                    }
                }],
                "enableAcceleratedNetworking": false,
                "enableIPForwarding": false
            },
            "type": "Microsoft.Network/networkInterfaces"
        }),
    )
}

/// A VM shaped as ComputeRP 2024-07-01
/// `VirtualMachine_Create_FromACustomImage.json` / `VirtualMachine_Get.json`.
fn vm_body(state: &str) -> Value {
    vm_body_as(state, None)
}

/// [`vm_body`] with a security profile (ComputeRP 2024-07-01
/// `SecurityProfile`), as a Trusted Launch VM answers with the one it was
/// created with.
fn vm_body_as(state: &str, security: Option<&Value>) -> Value {
    let mut body = json!({
        "id": vm_path(),
        "type": "Microsoft.Compute/virtualMachines",
        "properties": {
            "osProfile": { "adminUsername": "imgfadmin", "secrets": [], "computerName": "imgf-smoke" },
            "networkProfile": { "networkInterfaces": [{ "id": nic_path(), "properties": { "primary": true } }] },
            "storageProfile": {
                "imageReference": { "id": VERSION_ID },
                "osDisk": {
                    "name": "osdisk-smoke",
                    "diskSizeGB": 127,
                    "managedDisk": { "storageAccountType": "StandardSSD_LRS" },
                    "caching": "ReadWrite",
                    "createOption": "FromImage",
                    "osType": "Windows"
                },
                "dataDisks": []
            },
            "vmId": "71aa3d5a-d73d-4970-9182-8580433b2865",
            "hardwareProfile": { "vmSize": "Standard_D2s_v5" },
            "provisioningState": state
        },
        "name": "vm-smoke",
        "location": "westeurope"
    });
    if let Some(security) = security {
        body["properties"]["securityProfile"] = security.clone();
    }
    body
}

/// The security profile of a Trusted Launch VM.
fn trusted_launch() -> Value {
    json!({ "securityType": "TrustedLaunch", "uefiSettings": { "secureBootEnabled": true, "vTpmEnabled": true } })
}

/// The VM does not exist yet (the 404 error body of a VirtualMachines_Get).
fn vm_missing() -> Reply {
    Reply::new(
        Method::GET,
        &vm_path(),
        404,
        json!({ "error": { "code": "ResourceNotFound", "message": "The Resource 'Microsoft.Compute/virtualMachines/vm-smoke' was not found." } }),
    )
}

/// VirtualMachines_CreateOrUpdate: 201 `Creating` (the example's body) with
/// an `Azure-AsyncOperation` status that succeeds, then the VM as it is.
fn vm_created(op: &str) -> Vec<Reply> {
    vm_created_as(op, None)
}

/// [`vm_created`], the VM answering with `security` as its security profile.
fn vm_created_as(op: &str, security: Option<&Value>) -> Vec<Reply> {
    let status = format!(
        "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/{op}"
    );
    vec![
        Reply::new(
            Method::PUT,
            &vm_path(),
            201,
            vm_body_as("Creating", security),
        )
        .header(
            "Azure-AsyncOperation",
            &format!("{{base}}{status}?api-version=2024-07-01"),
        ),
        Reply::new(
            Method::GET,
            &status,
            200,
            json!({ "startTime": "2026-11-25T11:58:30Z", "endTime": "2026-11-25T12:01:10Z", "status": "Succeeded", "name": op }),
        ),
        Reply::new(
            Method::GET,
            &vm_path(),
            200,
            vm_body_as("Succeeded", security),
        ),
    ]
}

/// ComputeRP 2024-07-01 `runCommandExamples/VirtualMachineRunCommand.json`:
/// 202 with a `Location` to poll, then 200 with the StdOut/StdErr statuses.
fn run_command(op: &str, stdout: &str) -> Vec<Reply> {
    let location = format!(
        "/subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/{op}"
    );
    vec![
        Reply::new(Method::POST, &run_command_path(), 202, Value::Null).header(
            "Location",
            &format!("{{base}}{location}?monitor=true&api-version=2024-07-01"),
        ),
        Reply::new(
            Method::GET,
            &location,
            200,
            json!({ "value": [
                { "code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": stdout },
                { "code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": "" }
            ]}),
        ),
    ]
}

const IIS_ANSWERS: &str = "IMGF-STATUS=200\nIMGF-CONTAINS=True\n";
const NOBODY_ANSWERS: &str =
    "IMGF-ERROR=Unable to connect to the remote server\nIMGF-STATUS=0\nIMGF-CONTAINS=False\n";

/// Microsoft.Resources 2024-03-01 `ForceDeleteVMsInResourceGroup.json`:
/// 202 with a `location`, then 200 when the group is gone.
fn group_deleted(op: &str) -> Vec<Reply> {
    let result = format!("/subscriptions/sub-1/operationresults/{op}");
    vec![
        Reply::new(Method::DELETE, &group_path(), 202, Value::Null).header(
            "location",
            &format!("{{base}}{result}?api-version=2021-04-01"),
        ),
        Reply::new(Method::GET, &result, 200, Value::Null),
    ]
}

fn network() -> Vec<Reply> {
    vec![group_created(), vnet_created(), nic_created()]
}

/// The requests received, without the listings of the reaper timer (the
/// embedded host fires it every ten minutes; unscripted, they change nothing).
fn seen(server: &ArmServer) -> Vec<Seen> {
    server
        .seen()
        .into_iter()
        .filter(|s| {
            !s.uri.starts_with("/subscriptions/sub-1/resourcegroups?")
                && !s.uri.starts_with("/subscriptions/sub-1/resources?")
        })
        .collect()
}

/// The requests received, as `METHOD path` without the query.
fn requests(server: &ArmServer) -> Vec<String> {
    seen(server)
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.method,
                s.uri.split('?').next().unwrap_or_default()
            )
        })
        .collect()
}

/// A factory whose `example` image's smoke test is the Windows image's
/// `[smoke.http]` check, with Azure pointing at `server`.
async fn factory(
    server: &ArmServer,
    timeout_seconds: u64,
) -> (Factory, tempfile::TempDir, Arc<Mutex<Vec<Duration>>>) {
    factory_in(server, timeout_seconds, None).await
}

/// [`factory`], the test VM's NIC in `subnet` when one is given.
async fn factory_in(
    server: &ArmServer,
    timeout_seconds: u64,
    subnet: Option<&str>,
) -> (Factory, tempfile::TempDir, Arc<Mutex<Vec<Duration>>>) {
    factory_with(server, timeout_seconds, subnet, Image::default()).await
}

/// What the test's image has beyond the example's files with the Windows
/// image's smoke check.
#[derive(Default)]
struct Image<'a> {
    /// Its gallery definition's `security_type`, when it publishes to a
    /// gallery (`gallery_image_name = "windows-web-base"`).
    security_type: Option<&'a str>,
    /// Whether it declares what the Windows image declares (its
    /// `[declare]` table), checked by the Windows image's own
    /// `Test-ImageDeclaration.ps1`, copied into the image's folder.
    declare: bool,
}

/// The Windows image's `[declare]` table, as its `image.toml` writes it.
fn windows_declaration() -> String {
    let text = std::fs::read_to_string(common::repo_root().join(WINDOWS_IMAGE).join("image.toml"))
        .expect("the Windows image's image.toml");
    let start = text.find("\n[declare]\n").expect("a [declare] table") + 1;
    let end = text[start..].find("\n\n").map_or(text.len(), |e| start + e);
    text[start..end].to_string()
}

const WINDOWS_IMAGE: &str = "images/base-w2022-datacenter";

/// The Windows image's declaration checker.
fn checker_lines() -> Vec<String> {
    std::fs::read_to_string(
        common::repo_root()
            .join(WINDOWS_IMAGE)
            .join("scripts/Test-ImageDeclaration.ps1"),
    )
    .expect("the checker")
    .lines()
    .map(str::to_string)
    .collect()
}

/// [`factory_in`] with `image`'s gallery definition and declaration.
async fn factory_with(
    server: &ArmServer,
    timeout_seconds: u64,
    subnet: Option<&str>,
    image: Image<'_>,
) -> (Factory, tempfile::TempDir, Arc<Mutex<Vec<Duration>>>) {
    let images = tempfile::TempDir::new().expect("a folder");
    let dir = copy_example(images.path(), "example");
    let toml = std::fs::read_to_string(dir.join("image.toml")).expect("image.toml");
    let start = toml.find("[smoke.command]").expect("a smoke section");
    let end = toml[start..]
        .find("[approval]")
        .expect("an approval section")
        + start;
    // (The example's own [declare], with its shell checker, sits between
    // the two and goes with its smoke test.)
    let mut toml = format!(
        "{}[smoke.http]\nurl = \"http://localhost/\"\nstatus = 200\ncontains = \"IIS\"\ntimeout_seconds = {timeout_seconds}\n\n{}",
        &toml[..start],
        &toml[end..]
    );
    if let Some(security_type) = image.security_type {
        toml = format!(
            "gallery_image_name = \"windows-web-base\"\n{toml}\n[gallery]\nsecurity_type = \"{security_type}\"\n"
        );
    }
    if image.declare {
        toml = format!("{toml}\n{}\n", windows_declaration());
        std::fs::copy(
            common::repo_root()
                .join(WINDOWS_IMAGE)
                .join("scripts/Test-ImageDeclaration.ps1"),
            dir.join("scripts/Test-ImageDeclaration.ps1"),
        )
        .expect("the checker copied");
    }
    assert!(!toml.contains("check-declaration.sh"), "{toml}");
    std::fs::write(dir.join("image.toml"), toml).expect("written");
    let (azure, waits) = server.azure(TestVmSettings {
        location: Some("westeurope".into()),
        subnet_id: subnet.map(str::to_string),
        ..TestVmSettings::default()
    });
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        tweak: Box::new(move |app| {
            image_factory::startup::use_azure(app, azure, None);
            app.clock = Arc::new(now);
        }),
        ..Options::default()
    })
    .await;
    (factory, images, waits)
}

fn execution(stage: Stage, delivery: u32) -> Execution {
    Execution {
        message_id: format!("message-{stage}"),
        delivery,
    }
}

/// The run as recorded when its test stage starts (delivery `delivery`):
/// validated, built into a gallery version.
fn run_at_test(delivery: u32) -> Run {
    let mut run = Run::new(
        RUN_ID.parse().unwrap(),
        "example".into(),
        "2026.1125.0".parse().expect("a version"),
        Trigger {
            commit: Some("c0ffee".into()),
            branch: Some("main".into()),
            ..Trigger::new(TriggerKind::Push, "github")
        },
        BTreeMap::new(),
        attempt_started() - chrono::Duration::hours(1),
    );
    let outputs = [
        (
            Stage::Validate,
            StageOutput::Validated {
                findings: vec![],
                packer_version: None,
            },
        ),
        (
            Stage::Build,
            StageOutput::Built(BuildResult {
                artifacts: vec![],
                managed_image_id: None,
                gallery_version_id: Some(VERSION_ID.into()),
                log: "build.log".into(),
                duration_seconds: 1800,
                evidence: None,
            }),
        ),
    ];
    for (stage, output) in outputs {
        let at = attempt_started() - chrono::Duration::minutes(30);
        for event in [
            Event::StageStarted {
                stage,
                execution: execution(stage, 1),
                at,
            },
            Event::StageSucceeded {
                stage,
                execution: execution(stage, 1),
                at,
                output,
            },
        ] {
            run = decide(&run, &event).expect("a valid step").run;
        }
    }
    for n in 1..=delivery {
        let event = Event::StageStarted {
            stage: Stage::Test,
            execution: execution(Stage::Test, n),
            at: attempt_started(),
        };
        run = decide(&run, &event).expect("the test stage starts").run;
    }
    run
}

/// The run as the stage function records the result.
fn record(run: &Run, result: &StageResult, delivery: u32) -> Run {
    let execution = execution(Stage::Test, delivery);
    let event = match result {
        StageResult::Succeeded(output) => Event::StageSucceeded {
            stage: Stage::Test,
            execution,
            at: now(),
            output: output.clone(),
        },
        StageResult::Failed(reason) => Event::StageFailed {
            stage: Stage::Test,
            execution,
            at: now(),
            reason: reason.clone(),
        },
        StageResult::DeclarationFailed {
            checks,
            patch,
            record,
        } => Event::DeclarationFailed {
            execution,
            at: now(),
            checks: checks.clone(),
            patch: patch.clone(),
            record: record.clone(),
        },
        other => panic!("not a recorded result: {other:?}"),
    };
    decide(run, &event).expect("recorded").run
}

/// The VM's administrator password, from the VM's PUT body.
fn password(server: &ArmServer) -> String {
    let put = seen(server)
        .into_iter()
        .find(|s| s.method == Method::PUT && s.uri.starts_with(&vm_path()))
        .expect("the VM was put");
    put.body.expect("a body")["properties"]["osProfile"]["adminPassword"]
        .as_str()
        .expect("a password")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stage_creates_a_vm_from_the_new_version_finds_iis_answering_and_deletes_the_group() {
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    script.extend(run_command("rc-1", NOBODY_ANSWERS));
    script.extend(run_command("rc-2", IIS_ANSWERS));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let (factory, _images, waits) = factory(&server, 600).await;
    let run = run_at_test(1);

    let result = factory.app.execute_stage(&run, Stage::Test).await;

    let StageResult::Succeeded(StageOutput::Tested { checks, .. }) = &result else {
        panic!("the test stage did not succeed: {result:?}");
    };
    assert_eq!(
        requests(&server),
        [
            format!("PUT {}", group_path()),
            format!("PUT {}", vnet_path()),
            format!("PUT {}", nic_path()),
            format!("GET {}", vm_path()),
            format!("PUT {}", vm_path()),
            "GET /subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/vm-op-1".into(),
            format!("GET {}", vm_path()),
            format!(
                "PATCH {}/providers/Microsoft.Resources/tags/default",
                disk_path()
            ),
            format!("POST {}", run_command_path()),
            "GET /subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/rc-1".into(),
            format!("POST {}", run_command_path()),
            "GET /subscriptions/sub-1/providers/Microsoft.Compute/locations/westeurope/operations/rc-2".into(),
            format!("DELETE {}", group_path()),
            "GET /subscriptions/sub-1/operationresults/del-1".into(),
        ]
    );
    assert!(server.unserved().is_empty());
    let seen = seen(&server);
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    assert!(group().starts_with("imgf-test-push-example-c0ffee-") && group().len() <= 90);
    assert!(
        seen[0].uri.ends_with("?api-version=2021-04-01"),
        "{}",
        seen[0].uri
    );
    assert!(seen[1].uri.ends_with("?api-version=2024-03-01"));
    assert!(seen[2].uri.ends_with("?api-version=2024-03-01"));
    assert!(seen[4].uri.ends_with("?api-version=2024-07-01"));
    assert!(
        seen[7]
            .uri
            .ends_with("/tags/default?api-version=2021-04-01")
    );
    assert!(seen[8].uri.ends_with("/runCommand?api-version=2024-07-01"));
    assert!(
        seen[12]
            .uri
            .contains("forceDeletionTypes=Microsoft.Compute/virtualMachines"),
        "{}",
        seen[12].uri
    );

    // The group, network, NIC, VM and OS disk: the factory's tags, the
    // attempt's start (the reaper's keys); the group in the configured region.
    let factory_tags = json!({ "image-factory": "test", "image-factory-run": RUN_ID, "image-factory-created": "2026-11-25T11:58:00Z" });
    let body = seen[0].body.clone().expect("a body");
    assert_eq!(body["location"], "westeurope");
    for put in &seen[..5] {
        if put.method == Method::PUT {
            assert_eq!(
                put.body.clone().expect("a body")["tags"],
                factory_tags,
                "{}",
                put.uri
            );
        }
    }
    assert_eq!(
        seen[7].body.clone().expect("a body"),
        json!({ "operation": "Merge", "properties": { "tags": factory_tags } })
    );
    // The NIC: a private address in the run's own subnet, no public one.
    let nic = seen[2].body.clone().expect("a body");
    let ip = &nic["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(
        ip["subnet"]["id"],
        format!("{}/subnets/default", vnet_path())
    );
    assert!(ip.get("publicIPAddress").is_none(), "{nic}");
    // The VM: from the gallery version, on that NIC, with a generated password.
    let vm = seen[4].body.clone().expect("a body");
    assert_eq!(
        vm["properties"]["storageProfile"]["imageReference"]["id"],
        VERSION_ID
    );
    assert_eq!(
        vm["properties"]["storageProfile"]["osDisk"]["name"],
        "osdisk-smoke"
    );
    assert_eq!(
        vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"],
        nic_path()
    );
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"],
        "Standard_D2s_v5"
    );
    // Boot diagnostics on, managed storage (no account named).
    assert_eq!(
        vm["properties"]["diagnosticsProfile"],
        json!({ "bootDiagnostics": { "enabled": true } })
    );
    let secret = password(&server);
    assert!(secret.len() >= 12, "Azure wants at least 12 characters");
    // The check: the image's URL and text, inside the VM.
    let command = seen[8].body.clone().expect("a body");
    assert_eq!(command["commandId"], "RunPowerShellScript");
    let script: Vec<String> = serde_json::from_value(command["script"].clone()).expect("lines");
    let script = script.join("\n");
    assert!(
        script.contains("Invoke-WebRequest -Uri 'http://localhost/'"),
        "{script}"
    );
    assert!(script.contains(".Contains('IIS')"), "{script}");
    // One 30 s pause between the two checks (the others are the operations' polls).
    let pauses = waits
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.as_secs() == 30)
        .count();
    assert_eq!(pauses, 1);

    assert_eq!(checks.len(), 3, "{checks:?}");
    assert!(
        checks[0].contains(&group())
            && checks[0].contains("vm-smoke")
            && checks[0].contains(VERSION_ID),
        "{}",
        checks[0]
    );
    assert_eq!(
        checks[1],
        "smoke test GET http://localhost/ inside the VM (Run Command) answered 200 with \"IIS\" on try 2"
    );
    assert_eq!(checks[2], format!("resource group {} deleted", group()));
    let recorded = record(&run, &result, 1);
    assert_eq!(&recorded.checks, checks);
    let stored = serde_json::to_string(&recorded).expect("JSON");
    assert!(
        !stored.contains(&secret),
        "the VM's password is in the recorded run"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_stage_reuses_every_name_and_the_existing_vm_and_creates_nothing_twice() {
    let outage = json!({ "error": { "code": "InternalServerError", "message": "Encountered internal server error." } });
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    // First delivery: Resource Manager fails the check and the deletion.
    script.push(Reply::new(
        Method::POST,
        &run_command_path(),
        500,
        outage.clone(),
    ));
    script.push(Reply::new(Method::DELETE, &group_path(), 500, outage));
    // Second delivery: the group, network and VM are still there.
    script.extend(network());
    script.push(Reply::new(
        Method::GET,
        &vm_path(),
        200,
        vm_body("Succeeded"),
    ));
    script.push(disk_tagged());
    script.extend(run_command("rc-2", IIS_ANSWERS));
    script.extend(group_deleted("del-2"));
    let server = ArmServer::start(script).await;
    let (factory, _images, _) = factory(&server, 600).await;

    let first = factory
        .app
        .execute_stage(&run_at_test(1), Stage::Test)
        .await;
    let StageResult::Retry(reason) = &first else {
        panic!("a 500 on the first delivery is retried: {first:?}");
    };
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(
        reason.contains(&format!("resource group {} not deleted", group()))
            && reason.contains("the reaper deletes it once the run has ended"),
        "{reason}"
    );
    let first_requests = requests(&server);

    let run = run_at_test(2);
    let second = factory.app.execute_stage(&run, Stage::Test).await;
    let StageResult::Succeeded(StageOutput::Tested { checks, .. }) = &second else {
        panic!("the second delivery did not succeed: {second:?}");
    };
    assert!(
        checks[0].ends_with("reused from an earlier attempt"),
        "{}",
        checks[0]
    );
    assert_eq!(checks[2], format!("resource group {} deleted", group()));
    assert!(server.unserved().is_empty());

    let all = requests(&server);
    let second_requests = &all[first_requests.len()..];
    let writes = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|r| {
                (r.starts_with("PUT ") || r.starts_with("PATCH ")) && !r.ends_with("vm-smoke")
            })
            .cloned()
            .collect()
    };
    assert_eq!(
        writes(&first_requests),
        writes(second_requests),
        "the same group, network, NIC and disk tags, by the same names"
    );
    let vm_puts = all
        .iter()
        .filter(|r| **r == format!("PUT {}", vm_path()))
        .count();
    assert_eq!(vm_puts, 1, "one VM, created once: {all:?}");
    assert!(
        all.iter()
            .filter(|r| !r.contains("/operations/") && !r.contains("/operationresults/"))
            .all(|r| r.contains(&group_path())),
        "nothing outside the run's group: {all:?}"
    );
    let secret = password(&server);
    assert!(!reason.contains(&secret));
    assert!(
        !serde_json::to_string(&record(&run, &second, 2))
            .expect("JSON")
            .contains(&secret)
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_that_never_answers_fails_the_stage_with_the_last_answer_and_the_group_is_kept_for_the_reaper()
 {
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    // 90 s of patience, a check every 30 s: four checks.
    for n in 1..=4 {
        script.extend(run_command(&format!("rc-{n}"), NOBODY_ANSWERS));
    }
    let server = ArmServer::start(script).await;
    let (factory, _images, waits) = factory(&server, 90).await;
    let run = run_at_test(1);

    let result = factory.app.execute_stage(&run, Stage::Test).await;

    let StageResult::Failed(reason) = &result else {
        panic!("a VM that never answers fails the stage: {result:?}");
    };
    assert!(
        reason.starts_with(
            "smoke test GET http://localhost/ in the test VM failed for 90 s after 4 tries: no answer (Unable to connect to the remote server)"
        ),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "resource group {} kept for the VM's boot diagnostics; the reaper saves them with the run, then deletes the group",
            group()
        )),
        "{reason}"
    );
    assert!(server.unserved().is_empty(), "four checks");
    assert!(
        !requests(&server).iter().any(|r| r.starts_with("DELETE")),
        "the group is not deleted: {:?}",
        requests(&server)
    );
    let pauses = waits
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.as_secs() == 30)
        .count();
    assert_eq!(pauses, 3);
    let recorded = record(&run, &result, 1);
    let failure = recorded.failure.expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Test));
    assert_eq!(
        failure.diagnosis.map(|d| d.kind).as_deref(),
        Some("smoke-test-no-answer")
    );
    assert!(
        !serde_json::to_string(&recorded.checks)
            .expect("JSON")
            .contains(&password(&server))
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_then_recorded_as_the_stage_outcome_and_the_group_is_deleted_each_time()
 {
    let throttled = json!({ "error": { "code": "TooManyRequests", "message": "The request is being throttled." } });
    let throttled_vm = || {
        // The client's three retries after Retry-After, then it gives up.
        (0..4)
            .map(|_| {
                Reply::new(Method::PUT, &vm_path(), 429, throttled.clone())
                    .header("Retry-After", "7")
            })
            .collect::<Vec<_>>()
    };
    let mut script = Vec::new();
    for delivery in 1..=2 {
        script.extend(network());
        script.push(vm_missing());
        script.extend(throttled_vm());
        script.extend(group_deleted(&format!("del-{delivery}")));
    }
    let server = ArmServer::start(script).await;
    let (factory, _images, waits) = factory(&server, 600).await;

    let first = factory
        .app
        .execute_stage(&run_at_test(1), Stage::Test)
        .await;
    let StageResult::Retry(reason) = &first else {
        panic!("throttling on the first delivery is retried: {first:?}");
    };
    assert!(
        reason.starts_with("creating the test VM: throttled by Resource Manager 4 times"),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!("resource group {} deleted", group())),
        "{reason}"
    );

    let run = run_at_test(3);
    let last = factory.app.execute_stage(&run, Stage::Test).await;
    let StageResult::Failed(reason) = &last else {
        panic!("throttling on the third delivery is the stage's outcome: {last:?}");
    };
    assert!(
        reason.contains("throttled by Resource Manager 4 times"),
        "{reason}"
    );
    assert!(reason.contains("still failing on delivery 3"), "{reason}");
    assert!(
        reason.contains(&format!("resource group {} deleted", group())),
        "{reason}"
    );
    assert!(server.unserved().is_empty());
    let retry_afters = waits
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.as_secs() == 7)
        .count();
    assert_eq!(
        retry_afters, 6,
        "three waits per delivery, as Retry-After asked"
    );
    let recorded = record(&run, &last, 3);
    assert_eq!(recorded.failure.expect("a failure").reason, *reason);
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_refusal_fails_the_stage_with_the_quota_diagnosis_and_the_group_is_deleted() {
    let mut script = network();
    script.push(vm_missing());
    script.push(Reply::new(
        Method::PUT,
        &vm_path(),
        409,
        json!({ "error": { "code": "OperationNotAllowed", "message": "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: westeurope, Current Limit: 0, Current Usage: 0, Additional Required: 2, (Minimum) New Limit Required: 2." } }),
    ));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let (factory, _images, _) = factory(&server, 600).await;
    let run = run_at_test(1);

    let result = factory.app.execute_stage(&run, Stage::Test).await;

    let StageResult::Failed(reason) = &result else {
        panic!("a quota refusal fails the stage: {result:?}");
    };
    assert!(
        reason.starts_with("creating the test VM: quota exceeded (OperationNotAllowed)"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("resource group {} deleted", group())),
        "{reason}"
    );
    assert!(server.unserved().is_empty());
    let failure = record(&run, &result, 1).failure.expect("a failure");
    assert_eq!(failure.diagnosis.map(|d| d.kind).as_deref(), Some("quota"));
    assert!(!reason.contains(&password(&server)));
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_build_network_configured_the_nic_joins_its_subnet_and_no_network_is_made() {
    let nic_in_subnet = {
        let mut reply = nic_created();
        reply.body["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"] =
            json!(SUBNET_ID);
        reply
    };
    let mut script = vec![group_created(), nic_in_subnet, vm_missing()];
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    script.extend(run_command("rc-1", IIS_ANSWERS));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let (factory, _images, _) = factory_in(&server, 600, Some(SUBNET_ID)).await;

    let result = factory
        .app
        .execute_stage(&run_at_test(1), Stage::Test)
        .await;

    assert!(
        matches!(result, StageResult::Succeeded(_)),
        "the test passes: {result:?}"
    );
    let sent = requests(&server);
    assert!(
        !sent.iter().any(|r| r.contains("virtualNetworks")),
        "no network of the test's own: {sent:?}"
    );
    let nic = seen(&server)
        .into_iter()
        .find(|s| s.method == Method::PUT && s.uri.starts_with(&nic_path()))
        .and_then(|s| s.body)
        .expect("the NIC was put");
    let ip = &nic["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(ip["subnet"]["id"], SUBNET_ID);
    assert!(ip.get("publicIPAddress").is_none(), "{nic}");
    assert!(server.unserved().is_empty());
    factory.stop().await;
}

/// The checker's output for `checks`: (name, expected, actual, ok), one line
/// of JSON as `Test-ImageDeclaration.ps1` prints it (docs/windows-image.md).
fn declared(checks: &[(&str, &str, &str, bool)]) -> String {
    let checks: Vec<Value> = checks
        .iter()
        .map(|(name, expected, actual, ok)| {
            json!({ "name": name, "expected": expected, "actual": actual, "ok": ok })
        })
        .collect();
    format!("{}\n", json!({ "checks": checks }))
}

/// The first eight checks of the Windows image's declaration, all passed.
const FIRST_EIGHT: [(&str, &str, &str, bool); 8] = [
    ("feature:Web-Server", "Installed", "Installed", true),
    ("language-pack:fr-FR", "installed", "installed", true),
    ("defender:antivirus-enabled", "True", "True", true),
    (
        "defender:signature-age-hours",
        "<= 24",
        "3.2 (signatures 1.443.512.0, updated 2026-11-25T08:40:13Z)",
        true,
    ),
    ("firewall:Domain", "True", "True", true),
    ("firewall:Private", "True", "True", true),
    ("firewall:Public", "True", "True", true),
    ("service:W3SVC", "Running", "Running", true),
];

/// The Run Command bodies the stage posted, in order.
fn run_commands(server: &ArmServer) -> Vec<Value> {
    seen(server)
        .into_iter()
        .filter(|s| s.method == Method::POST && s.uri.starts_with(&run_command_path()))
        .map(|s| s.body.expect("a body"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_launch_definition_gets_a_trusted_launch_vm_a_standard_one_a_standard_vm_and_a_confidential_one_none()
 {
    for (security_type, profile, says) in [
        (
            "TrustedLaunchSupported",
            Some(trusted_launch()),
            "Trusted Launch: secure boot and vTPM on",
        ),
        (
            "TrustedLaunch",
            Some(trusted_launch()),
            "Trusted Launch: secure boot and vTPM on",
        ),
        ("Standard", None, "standard security"),
    ] {
        let mut script = network();
        script.push(vm_missing());
        script.extend(vm_created_as("vm-op-1", profile.as_ref()));
        script.push(disk_tagged());
        script.extend(run_command("rc-1", IIS_ANSWERS));
        script.extend(group_deleted("del-1"));
        let server = ArmServer::start(script).await;
        let image = Image {
            security_type: Some(security_type),
            declare: false,
        };
        let (factory, _images, _) = factory_with(&server, 600, None, image).await;

        let result = factory
            .app
            .execute_stage(&run_at_test(1), Stage::Test)
            .await;

        let StageResult::Succeeded(StageOutput::Tested { checks, .. }) = &result else {
            panic!("{security_type}: the test stage did not succeed: {result:?}");
        };
        assert!(checks[0].contains(says), "{security_type}: {}", checks[0]);
        let vm = seen(&server)
            .into_iter()
            .find(|s| s.method == Method::PUT && s.uri.starts_with(&vm_path()))
            .and_then(|s| s.body)
            .expect("the VM was put");
        assert_eq!(
            vm["properties"].get("securityProfile"),
            profile.as_ref(),
            "{security_type}"
        );
        assert_eq!(
            vm["properties"]["storageProfile"]["imageReference"]["id"], VERSION_ID,
            "from the new gallery version"
        );
        assert!(server.unserved().is_empty(), "{security_type}");
        factory.stop().await;
    }

    // A definition that admits only confidential VMs: refused before
    // anything is created.
    let server = ArmServer::start(Vec::new()).await;
    let image = Image {
        security_type: Some("ConfidentialVM"),
        declare: false,
    };
    let (factory, _images, _) = factory_with(&server, 600, None, image).await;
    let result = factory
        .app
        .execute_stage(&run_at_test(1), Stage::Test)
        .await;
    let StageResult::Failed(reason) = &result else {
        panic!("a confidential-only definition fails the stage: {result:?}");
    };
    assert!(
        reason.starts_with(
            "the gallery image definition windows-web-base admits only confidential VMs"
        ),
        "{reason}"
    );
    assert!(requests(&server).is_empty(), "{:?}", requests(&server));
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_declaration_runs_through_run_command_eight_checks_a_command_and_a_missing_item_fails_the_run()
 {
    let busy = json!({ "error": { "code": "Conflict", "message": "Run command extension execution is in progress. Please wait for completion before invoking a run command." } });
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created_as("vm-op-1", Some(&trusted_launch())));
    script.push(disk_tagged());
    script.extend(run_command("rc-1", IIS_ANSWERS));
    // The first declaration command meets the VM still busy: tried again.
    script.push(Reply::new(Method::POST, &run_command_path(), 409, busy));
    script.extend(run_command("rc-2", &declared(&FIRST_EIGHT)));
    script.extend(run_command(
        "rc-3",
        &declared(&[
            ("service:WinDefend", "Running", "Running", true),
            ("service:mpssvc", "Running", "Stopped", false),
        ]),
    ));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let image = Image {
        security_type: Some("TrustedLaunchSupported"),
        declare: true,
    };
    let (factory, _images, waits) = factory_with(&server, 600, None, image).await;
    let run = run_at_test(1);

    let result = factory.app.execute_stage(&run, Stage::Test).await;

    let StageResult::DeclarationFailed {
        checks,
        record: declaration,
        ..
    } = &result
    else {
        panic!("a stopped service fails the declaration: {result:?}");
    };
    assert!(server.unserved().is_empty());
    // The smoke check, then three declaration commands (one refused as busy).
    let commands = run_commands(&server);
    assert_eq!(commands.len(), 4);
    let lines = checker_lines();
    for command in &commands[1..] {
        assert_eq!(command["commandId"], "RunPowerShellScript");
        let sent: Vec<String> = serde_json::from_value(command["script"].clone()).expect("lines");
        assert_eq!(sent, lines, "the image's own checker, line by line");
    }
    let parameters = |command: &Value| -> Vec<(String, String)> {
        command["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("a name").to_string(),
                    p["value"].as_str().expect("a value").to_string(),
                )
            })
            .collect()
    };
    let expected_first: Vec<(String, String)> = [
        ("Features", "Web-Server"),
        ("LanguagePacks", "fr-FR"),
        ("DefenderSignatureMaxAgeHours", "24"),
        ("FirewallProfiles", "Domain,Private,Public"),
        ("Services", "W3SVC"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(parameters(&commands[1]), expected_first);
    assert_eq!(
        parameters(&commands[2]),
        parameters(&commands[1]),
        "the same command again"
    );
    assert_eq!(
        parameters(&commands[3]),
        [("Services".to_string(), "WinDefend,mpssvc".to_string())]
    );
    assert!(
        commands[0].get("parameters").is_none(),
        "the smoke check takes none"
    );
    // One pause before trying the busy VM again.
    let pauses = waits
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.as_secs() == 30)
        .count();
    assert_eq!(pauses, 1);
    // The group is deleted: the VM answered; what it lacks is the image's.
    assert!(
        requests(&server).contains(&format!("DELETE {}", group_path())),
        "{:?}",
        requests(&server)
    );

    assert_eq!(
        declaration.checker,
        "scripts/Test-ImageDeclaration.ps1 through Run Command in vm-smoke"
    );
    assert_eq!(declaration.checks.len(), 10);
    let failed: Vec<&str> = declaration
        .failed()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["service:mpssvc"]);
    assert!(
        checks.iter().any(|c| c
            == "declaration checks inside the VM (3 Run Command(s)): 9 of 10 declared checks passed; failed: service:mpssvc: expected Running, found Stopped"),
        "{checks:?}"
    );
    let recorded = record(&run, &result, 1);
    assert_eq!(
        recorded.status,
        image_factory::domain::run::RunStatus::Failed
    );
    assert_eq!(recorded.declaration.as_deref(), Some(&**declaration));
    let failure = recorded.failure.expect("a failure");
    assert_eq!(
        failure.reason,
        "declaration checks failed (scripts/Test-ImageDeclaration.ps1 through Run Command in vm-smoke): 9 of 10 declared checks passed; failed: service:mpssvc: expected Running, found Stopped"
    );
    assert_eq!(
        failure.diagnosis.map(|d| d.kind).as_deref(),
        Some("image-declaration")
    );
    assert!(
        !serde_json::to_string(&recorded.declaration)
            .expect("JSON")
            .contains(&password(&server))
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_declared_check_passing_is_recorded_with_the_smoke_test_and_an_answer_without_a_result_fails()
 {
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    script.extend(run_command("rc-1", IIS_ANSWERS));
    script.extend(run_command("rc-2", &declared(&FIRST_EIGHT)));
    script.extend(run_command(
        "rc-3",
        &declared(&[
            ("service:WinDefend", "Running", "Running", true),
            ("service:mpssvc", "Running", "Running", true),
        ]),
    ));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let image = Image {
        security_type: None,
        declare: true,
    };
    let (factory, _images, _) = factory_with(&server, 600, None, image).await;
    let run = run_at_test(1);

    let result = factory.app.execute_stage(&run, Stage::Test).await;

    let StageResult::Succeeded(StageOutput::Tested {
        checks,
        declaration: Some(declaration),
        ..
    }) = &result
    else {
        panic!("every check passed: {result:?}");
    };
    assert!(declaration.passed(), "{}", declaration.summary());
    assert_eq!(declaration.checks.len(), 10);
    assert_eq!(
        checks[2],
        "declaration checks inside the VM (2 Run Command(s)): 10 of 10 declared checks passed"
    );
    assert_eq!(checks[3], format!("resource group {} deleted", group()));
    assert!(server.unserved().is_empty());
    let recorded = record(&run, &result, 1);
    assert_eq!(recorded.declaration.as_deref(), Some(&**declaration));
    assert!(
        recorded
            .stage(Stage::Test)
            .summary
            .as_deref()
            .is_some_and(|s| s.ends_with("; 10 of 10 declared checks passed"))
    );
    factory.stop().await;

    // The checker prints no result (its output cut, or it did not run):
    // nothing is taken as checked.
    let mut script = network();
    script.push(vm_missing());
    script.extend(vm_created("vm-op-1"));
    script.push(disk_tagged());
    script.extend(run_command("rc-1", IIS_ANSWERS));
    script.extend(run_command(
        "rc-2",
        "\"expected\":\"Running\",\"actual\":\"Running\",\"ok\":true}]}",
    ));
    script.extend(run_command("rc-3", &declared(&[])));
    script.extend(group_deleted("del-1"));
    let server = ArmServer::start(script).await;
    let image = Image {
        security_type: None,
        declare: true,
    };
    let (factory, _images, _) = factory_with(&server, 600, None, image).await;
    let result = factory
        .app
        .execute_stage(&run_at_test(1), Stage::Test)
        .await;
    let StageResult::DeclarationFailed {
        record: declaration,
        ..
    } = &result
    else {
        panic!("no result is a failure: {result:?}");
    };
    let error = declaration
        .error
        .as_deref()
        .expect("why there is no result");
    assert!(
        error.starts_with("the checker printed no result (one line of JSON with \"checks\")"),
        "{error}"
    );
    assert_eq!(declaration.failed().len(), 10, "{}", declaration.summary());
    assert_eq!(
        declaration.checks[0].actual,
        "not checked: the checker gave no result"
    );
    assert!(server.unserved().is_empty());
    factory.stop().await;
}
