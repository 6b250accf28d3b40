//! `image-factory doctor`: the real binary on the repository as a fresh clone
//! has it (every check reported, healthy), with a broken image or a missing
//! packer (non-zero, with the reason); and its Resource Manager checks of a
//! deployed app, contract-tested against the loopback Resource Manager with
//! bodies shaped as the REST API specifications define them.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use axum::http::Method;
use common::arm_server::{ArmServer, Reply, TOKEN};
use image_factory::azure::{AzureSettings, BuildJob, ReaperSettings, TestVmSettings};
use image_factory::doctor::deployed::{self, Deployment, Expected};
use image_factory::doctor::{Finding, Report, Severity, required_app_settings};
use serde_json::{Value, json};

/// Runs `doctor --json` on the repository with only `env` (and the PATH) set,
/// as on a fresh clone with no settings.
fn doctor(env: &[(&str, &Path)]) -> (Output, Value) {
    doctor_with(&[], env)
}

fn doctor_with(args: &[&str], env: &[(&str, &Path)]) -> (Output, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_image-factory"));
    cmd.args(["doctor", "--json"])
        .args(args)
        .arg("--root")
        .arg(common::repo_root())
        .current_dir(common::repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = cmd.output().expect("run image-factory doctor");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, report)
}

fn finding<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["check"] == check))
        .unwrap_or_else(|| panic!("no finding for {check}: {report:#}"))
}

#[test]
fn a_fresh_clone_reports_every_check_and_is_healthy() {
    let (output, report) = doctor(&[]);
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["healthy"], json!(true), "{report:#}");
    assert_eq!(report["failures"], json!(0));
    for check in [
        "settings",
        "approval keys",
        "github secret",
        "operator token",
        "azure settings",
        "packer",
        "images",
        "image example",
        "app layout",
        "deployed app",
    ] {
        let f = finding(&report, check);
        assert_ne!(f["severity"], json!("failure"), "{f:#}");
    }
    // What a fresh clone lacks is a note, not a failure: Azure, secrets, the deployed app.
    assert_eq!(
        finding(&report, "azure settings")["severity"],
        json!("info")
    );
    assert_eq!(finding(&report, "approval keys")["severity"], json!("info"));
    assert_eq!(finding(&report, "deployed app")["severity"], json!("info"));
    assert_eq!(finding(&report, "app layout")["severity"], json!("ok"));
}

#[test]
fn a_broken_image_makes_doctor_fail_naming_the_image_and_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = common::copy_example(dir.path(), "example");
    let template = image.join("build.pkr.hcl");
    let text = std::fs::read_to_string(&template).expect("template");
    std::fs::write(&template, text.replacen("var.", "var.undeclared_", 1)).expect("write");
    let (output, report) = doctor(&[("IMAGE_FACTORY_IMAGES", dir.path())]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["healthy"], json!(false));
    let f = finding(&report, "image example");
    assert_eq!(f["severity"], json!("failure"), "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("undeclared"),
        "{f:#}"
    );
    // Failures come first.
    assert_eq!(report["findings"][0]["severity"], json!("failure"));
}

#[test]
fn a_declaration_checker_missing_from_the_image_folder_makes_doctor_fail_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let image = common::copy_example(dir.path(), "example");
    std::fs::remove_file(image.join("scripts/check-declaration.sh")).expect("removed");
    let (output, report) = doctor(&[("IMAGE_FACTORY_IMAGES", dir.path())]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let f = finding(&report, "image example");
    assert_eq!(f["severity"], json!("failure"), "{f:#}");
    assert!(
        f["message"].as_str().unwrap_or_default().starts_with(
            "[declare] checker scripts/check-declaration.sh is not a file of the image's folder"
        ),
        "{f:#}"
    );
}

#[test]
fn every_bad_image_toml_is_listed_on_its_own_and_the_good_image_is_still_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_example(dir.path(), "example");
    let zero = common::copy_example(dir.path(), "zero");
    let typo = common::copy_example(dir.path(), "typo");
    let orphan = common::copy_example(dir.path(), "orphan");
    let append = |folder: &Path, text: &str| {
        let file = folder.join("image.toml");
        let mut toml = std::fs::read_to_string(&file).expect("image.toml");
        toml.push_str(text);
        std::fs::write(&file, toml).expect("write");
    };
    append(&zero, "\n[gallery.recommended]\nvcpus_min = 0\n");
    std::fs::write(typo.join("image.toml"), "[smoke.command\n").expect("write");
    append(&orphan, "\n[base_image]\nfactory = \"gone\"\n");
    let (output, report) = doctor(&[("IMAGE_FACTORY_IMAGES", dir.path())]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let images = finding(&report, "images");
    assert!(
        images["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3 of 4 image(s)"),
        "{images:#}"
    );
    for (name, said) in [
        ("zero", "[gallery.recommended] vcpus must be from 1 to 1024"),
        ("typo", "line 1"),
        ("orphan", "gone"),
    ] {
        let f = finding(&report, &format!("image {name}"));
        assert_eq!(f["severity"], json!("failure"), "{f:#}");
        let message = f["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(said) && message.contains(&format!("{name}/image.toml")),
            "{name}: {f:#}"
        );
    }
    // The good image was checked on its own (its template, packer).
    let good = finding(&report, "image example");
    assert_ne!(good["severity"], json!("failure"), "{good:#}");
}

#[test]
fn doctor_reports_every_setting_the_factory_would_refuse_at_start_naming_each() {
    let bad = [
        ("IMAGE_FACTORY_PATCH_GRACE_DAYS", ""),
        ("IMAGE_FACTORY_PARALLELISM", " 7"),
        ("IMAGE_FACTORY_PUBLIC_URL", "javascript:alert(1)"),
        ("IMAGE_FACTORY_OPERATOR_TOKEN", "sesame-17"),
    ];
    let env: Vec<(&str, &Path)> = bad
        .iter()
        .map(|(name, value)| (*name, Path::new(*value)))
        .collect();
    let (output, report) = doctor(&env);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let failures: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == "settings" && f["severity"] == "failure")
        .map(|f| f["message"].as_str().unwrap_or_default().to_string())
        .collect();
    for (name, _) in bad {
        assert!(
            failures
                .iter()
                .any(|m| m.contains(&format!("setting {name} is not valid"))),
            "{name} is not reported: {failures:#?}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("sesame-17"),
        "the token is never printed"
    );
}

#[test]
fn a_missing_packer_makes_doctor_fail_with_the_reason() {
    let (output, report) = doctor(&[("IMAGE_FACTORY_PACKER", Path::new("/nonexistent"))]);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    let f = finding(&report, "packer");
    assert_eq!(f["severity"], json!("failure"), "{f:#}");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/nonexistent does not exist"),
        "{f:#}"
    );
    assert!(
        f["action"]
            .as_str()
            .unwrap_or_default()
            .contains("install packer")
    );
}

#[test]
fn the_text_report_names_what_is_wrong_and_what_to_do() {
    let output = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["doctor", "--root"])
        .arg(common::repo_root())
        .current_dir(common::repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IMAGE_FACTORY_PACKER", "/nonexistent")
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("FAIL  packer: /nonexistent does not exist"),
        "{text}"
    );
    assert!(text.contains("      -> install packer"), "{text}");
    assert!(text.trim_end().ends_with("warning(s)"), "{text}");
}

// --- The deployed checks, against the loopback Resource Manager ---

const SITE: &str =
    "/subscriptions/sub-1/resourceGroups/rg-factory/providers/Microsoft.Web/sites/func-imgf";
const NAMESPACE: &str = "/subscriptions/sub-1/resourceGroups/rg-factory/providers/Microsoft.ServiceBus/namespaces/sb-imgf";
const JOB: &str =
    "/subscriptions/sub-1/resourceGroups/rg-factory-build/providers/Microsoft.App/jobs/job-build";
const GALLERY: &str = "/subscriptions/sub-1/resourceGroups/rg-img-gallery/providers/Microsoft.Compute/galleries/acg_shared";
/// A value that must never reach a finding.
const SECRET_VALUE: &str =
    "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/approval-keys/)";

/// One function as `WebApps_ListFunctions` answers it: a `FunctionEnvelope`
/// (Microsoft.Web 2024-04-01 WebApps.json; the operation has no example, so
/// the fields are the schema's: `name` is `{site}/{function}`, `properties.name`
/// the function's own).
fn function(name: &str) -> Value {
    json!({
        "id": format!("{SITE}/functions/{name}"),
        "name": format!("func-imgf/{name}"),
        "type": "Microsoft.Web/sites/functions",
        "properties": {
            "function_app_id": SITE,
            "script_root_path_href": format!("https://func-imgf.azurewebsites.net/admin/vfs/home/site/wwwroot/{name}/"),
            "config_href": format!("https://func-imgf.azurewebsites.net/admin/vfs/home/site/wwwroot/{name}/function.json"),
            "config": {},
            "invoke_url_template": null,
            "language": "custom",
            "isDisabled": false
        }
    })
}

/// `WebApps_ListApplicationSettings`: a `StringDictionary`, as in the spec's
/// example `Microsoft.Web/stable/2024-04-01/examples/ListAppSettings.json`
/// (id, name `appsettings`, type, kind `app`, the settings in `properties`).
fn app_settings(names: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.to_string(), json!(SECRET_VALUE)))
        .collect();
    json!({
        "id": format!("{SITE}/config/appsettings"),
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "kind": "app",
        "properties": properties
    })
}

/// One queue as `Queues_ListByNamespace` (Microsoft.ServiceBus 2021-11-01)
/// lists it: an `SBQueue` (id, name, type, properties), in a `value` page as
/// the spec's `SBTopicListByNameSpace.json` lists topics (the queue listing's
/// own example was not at hand).
fn queue(name: &str) -> Value {
    json!({
        "id": format!("{NAMESPACE}/queues/{name}"),
        "name": name,
        "type": "Microsoft.ServiceBus/Namespaces/Queues",
        "properties": {
            "lockDuration": "PT1M",
            "maxDeliveryCount": 5,
            "status": "Active"
        }
    })
}

fn not_found(what: &str) -> Value {
    json!({ "error": { "code": "ResourceNotFound", "message": format!("The Resource '{what}' was not found.") } })
}

fn azure(server: &ArmServer) -> (image_factory::azure::arm::ArmClient, AzureSettings) {
    let (arm, _) = server.client();
    let settings = AzureSettings {
        endpoint: server.base.clone(),
        subscription_id: "sub-1".into(),
        gallery_resource_group: Some("rg-img-gallery".into()),
        gallery: Some("acg_shared".into()),
        build_job: Some(BuildJob {
            resource_group: "rg-factory-build".into(),
            name: "job-build".into(),
            log_container_url: "https://logs.blob.core.windows.net/build-logs".into(),
        }),
        test_vm: TestVmSettings::default(),
        reaper: ReaperSettings::default(),
    };
    (arm, settings)
}

fn deployment() -> Deployment {
    Deployment {
        resource_group: "rg-factory".into(),
        app: "func-imgf".into(),
        servicebus: Some(("rg-factory".into(), "sb-imgf".into())),
    }
}

fn expected() -> Expected {
    let jsons = image_factory::package::function_jsons(&common::repo_root()).expect("functions");
    Expected {
        functions: vec!["git-push".into(), "runs".into(), "stage-build".into()],
        queues: ["stage-build", "stage-test"]
            .into_iter()
            .map(String::from)
            .collect(),
        settings: required_app_settings(jsons.iter().map(|(_, j)| j)),
        image_definitions: vec![seed_definition()],
        approvers: vec![("windows-web-base".into(), "alice@contoso.com".into(), true)],
    }
}

/// The seed image's gallery image definition, as its image.toml describes it.
fn seed_definition() -> image_factory::domain::image::GalleryDefinition {
    let text = std::fs::read_to_string(
        common::repo_root().join("images/base-w2022-datacenter/image.toml"),
    )
    .expect("image.toml");
    image_factory::config::parse_image_settings(&text)
        .expect("valid")
        .gallery_definition("base-w2022-datacenter")
        .expect("it publishes to the gallery")
}

/// The definition as Resource Manager answers it, from `properties`.
fn definition_answer(properties: serde_json::Value) -> serde_json::Value {
    json!({ "id": format!("{GALLERY}/images/windows-web-base"), "name": "windows-web-base", "location": "westeurope", "properties": properties })
}

const VNET: &str = "/subscriptions/sub-1/resourceGroups/rg-factory-build/providers/Microsoft.Network/virtualNetworks/vnet-imgf";
const NSG: &str = "/subscriptions/sub-1/resourceGroups/rg-factory-build/providers/Microsoft.Network/networkSecurityGroups/nsg-imgf-vms";

/// The build network as `VirtualNetworks_Get` (Network 2024-03-01,
/// `VirtualNetworkGet.json`'s shape) answers it: an `environment` subnet
/// (delegated to Container Apps when `delegated`, of `environment_prefix`)
/// and the `vms` subnet with its network security group.
fn build_network(delegated: bool, environment_prefix: &str) -> Value {
    let delegations = if delegated {
        json!([{ "name": "container-apps", "id": format!("{VNET}/subnets/environment/delegations/container-apps"),
                 "properties": { "serviceName": "Microsoft.App/environments", "provisioningState": "Succeeded" } }])
    } else {
        json!([])
    };
    json!({
        "id": VNET,
        "name": "vnet-imgf",
        "type": "Microsoft.Network/virtualNetworks",
        "location": "westeurope",
        "properties": {
            "provisioningState": "Succeeded",
            "addressSpace": { "addressPrefixes": ["10.42.0.0/24"] },
            "subnets": [
                { "id": format!("{VNET}/subnets/environment"), "name": "environment",
                  "properties": { "addressPrefix": environment_prefix, "delegations": delegations, "provisioningState": "Succeeded" } },
                { "id": format!("{VNET}/subnets/vms"), "name": "vms",
                  "properties": { "addressPrefix": "10.42.0.64/26", "networkSecurityGroup": { "id": NSG }, "provisioningState": "Succeeded" } }
            ],
            "virtualNetworkPeerings": []
        }
    })
}

/// One security rule as `NetworkSecurityGroups_Get` lists it.
fn rule(name: &str, priority: u32, access: &str, source: &str, port: &str) -> Value {
    json!({
        "id": format!("{NSG}/securityRules/{name}"),
        "name": name,
        "properties": {
            "protocol": if port == "*" { "*" } else { "Tcp" },
            "sourcePortRange": "*",
            "destinationPortRange": port,
            "sourceAddressPrefix": source,
            "destinationAddressPrefix": "*",
            "access": access,
            "priority": priority,
            "direction": "Inbound",
            "provisioningState": "Succeeded"
        }
    })
}

/// The VM subnet's network security group (Network 2024-03-01,
/// `NetworkSecurityGroupGet.json`'s shape): `rules` and Azure's default
/// inbound rules.
fn security_group(rules: Vec<Value>) -> Value {
    json!({
        "id": NSG,
        "name": "nsg-imgf-vms",
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": "westeurope",
        "properties": {
            "provisioningState": "Succeeded",
            "securityRules": rules,
            "defaultSecurityRules": [
                rule("AllowVnetInBound", 65000, "Allow", "VirtualNetwork", "*"),
                rule("AllowAzureLoadBalancerInBound", 65001, "Allow", "AzureLoadBalancer", "*"),
                rule("DenyAllInBound", 65500, "Deny", "*", "*")
            ]
        }
    })
}

/// The factory's own rules (infra/modules/network.bicep).
fn factory_rules() -> Vec<Value> {
    vec![
        rule(
            "allow-winrm-from-environment",
            100,
            "Allow",
            "10.42.0.0/27",
            "5986",
        ),
        rule("deny-all-other-inbound", 4096, "Deny", "*", "*"),
    ]
}

const ALL_SETTINGS: &[&str] = &[
    "AzureWebJobsStorage__accountName",
    "ServiceBus__fullyQualifiedNamespace",
    "IMAGE_FACTORY_APPROVAL_KEYS",
    "IMAGE_FACTORY_EMAIL_ENDPOINT",
    "IMAGE_FACTORY_EMAIL_SENDER",
    "IMAGE_FACTORY_TEAMS_WEBHOOK_URL",
];

#[tokio::test]
async fn a_complete_deployment_passes_every_deployed_check_with_the_token_and_api_versions() {
    let server = ArmServer::start(vec![
        // WebApps_ListFunctions is pageable: the second page comes through nextLink.
        Reply::new(
            Method::GET,
            &format!("{SITE}/functions"),
            200,
            json!({
                "value": [function("git-push"), function("runs")],
                "nextLink": format!("{{base}}{SITE}/functions?api-version=2024-04-01&$skiptoken=2")
            }),
        ),
        Reply::new(
            Method::GET,
            &format!("{SITE}/functions"),
            200,
            json!({ "value": [function("stage-build")] }),
        ),
        Reply::new(
            Method::POST,
            &format!("{SITE}/config/appsettings/list"),
            200,
            app_settings(ALL_SETTINGS),
        ),
        Reply::new(
            Method::GET,
            &format!("{NAMESPACE}/queues"),
            200,
            json!({ "value": [queue("stage-build"), queue("stage-test")] }),
        ),
        Reply::new(
            Method::GET,
            JOB,
            200,
            json!({ "id": JOB, "name": "job-build", "type": "Microsoft.App/jobs", "location": "westeurope", "properties": { "provisioningState": "Succeeded" } }),
        ),
        Reply::new(
            Method::GET,
            GALLERY,
            200,
            json!({ "id": GALLERY, "name": "acg_shared", "location": "westeurope", "properties": { "provisioningState": "Succeeded" } }),
        ),
        Reply::new(
            Method::GET,
            &format!("{GALLERY}/images/windows-web-base"),
            200,
            definition_answer(json!({
                "osType": "Windows", "osState": "Generalized", "hyperVGeneration": "V2",
                "identifier": { "publisher": "ImageFactory", "offer": "WindowsServer", "sku": "2022-datacenter-base" },
                "features": [{ "name": "SecurityType", "value": "TrustedLaunchSupported" }],
                "provisioningState": "Succeeded"
            })),
        ),
        Reply::new(Method::GET, VNET, 200, build_network(true, "10.42.0.0/27")),
        Reply::new(Method::GET, NSG, 200, security_group(factory_rules())),
    ])
    .await;
    let (arm, mut settings) = azure(&server);
    settings.test_vm.subnet_id = Some(format!("{VNET}/subnets/vms"));
    let findings = deployed::check(&arm, &settings, &deployment(), &expected()).await;
    let report = Report::new(findings);
    assert!(report.healthy(), "{}", report.to_text());
    for check in ["build network", "environment subnet", "build subnet rules"] {
        assert!(
            report.findings().iter().any(|f| f.check == check),
            "no {check} finding: {}",
            report.to_text()
        );
    }
    assert!(
        report.findings().iter().all(|f| f.severity == Severity::Ok),
        "{}",
        report.to_text()
    );
    assert!(server.unserved().is_empty(), "{:?}", server.unserved());
    let seen = server.seen();
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let uri = |prefix: &str| {
        seen.iter()
            .find(|s| s.uri.starts_with(prefix))
            .map(|s| s.uri.clone())
            .unwrap_or_default()
    };
    assert!(uri(&format!("{SITE}/functions")).contains("api-version=2024-04-01"));
    assert!(uri(&format!("{SITE}/config/appsettings/list")).contains("api-version=2024-04-01"));
    assert!(uri(&format!("{NAMESPACE}/queues")).contains("api-version=2021-11-01"));
    assert!(uri(VNET).contains("api-version=2024-03-01"));
    assert!(uri(NSG).contains("api-version=2024-03-01"));
    assert!(seen.iter().any(|s| s.uri.contains("skiptoken=2")));
}

/// Only the network's findings of a report.
fn network_findings(findings: Vec<Finding>) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| {
            ["build network", "environment subnet", "build subnet rules"]
                .contains(&f.check.as_str())
        })
        .collect()
}

#[tokio::test]
async fn a_build_network_without_its_delegation_a_big_enough_subnet_or_winrm_fails_naming_what() {
    let server = ArmServer::start(vec![
        // The environment's subnet is not delegated: the rules are not judged.
        Reply::new(Method::GET, VNET, 200, build_network(false, "10.42.0.0/27")),
        // Delegated, but a /28 (with the factory's rules).
        Reply::new(Method::GET, VNET, 200, build_network(true, "10.42.0.0/28")),
        Reply::new(Method::GET, NSG, 200, security_group(factory_rules())),
        // A /27, whose rules deny everything, WinRM from the environment too.
        Reply::new(Method::GET, VNET, 200, build_network(true, "10.42.0.0/27")),
        Reply::new(
            Method::GET,
            NSG,
            200,
            security_group(vec![rule("deny-all-other-inbound", 4096, "Deny", "*", "*")]),
        ),
    ])
    .await;
    let (arm, mut settings) = azure(&server);
    settings.test_vm.subnet_id = Some(format!("{VNET}/subnets/vms"));
    let deployment = Deployment {
        servicebus: None,
        ..deployment()
    };

    let first = network_findings(deployed::check(&arm, &settings, &deployment, &expected()).await);
    let text = Report::new(first.clone()).to_text();
    let find = |findings: &[Finding], check: &str| {
        findings
            .iter()
            .find(|f| f.check == check)
            .cloned()
            .unwrap_or_else(|| panic!("no {check}: {text}"))
    };
    let environment = find(&first, "environment subnet");
    assert_eq!(environment.severity, Severity::Failure, "{text}");
    assert!(
        environment
            .message
            .contains("delegated to Microsoft.App/environments"),
        "{text}"
    );
    // Without the environment's subnet the rules cannot be judged: a warning.
    assert_eq!(
        find(&first, "build subnet rules").severity,
        Severity::Warning,
        "{text}"
    );

    let second = network_findings(deployed::check(&arm, &settings, &deployment, &expected()).await);
    let environment = find(&second, "environment subnet");
    assert_eq!(environment.severity, Severity::Failure);
    assert!(
        environment.message.contains("/28") && environment.message.contains("/27"),
        "{:?}",
        environment
    );

    let third = network_findings(deployed::check(&arm, &settings, &deployment, &expected()).await);
    let rules = find(&third, "build subnet rules");
    assert_eq!(rules.severity, Severity::Failure, "{rules:?}");
    assert!(
        rules
            .message
            .contains("WinRM from the environment's subnet is refused (deny-all-other-inbound)"),
        "{rules:?}"
    );
    let server_rules = server.seen();
    assert!(
        server_rules
            .iter()
            .filter(|s| s.uri.starts_with(NSG))
            .count()
            == 2
    );
    assert!(server.unserved().is_empty(), "{:?}", server.unserved());
}

#[tokio::test]
async fn the_default_rules_alone_admit_the_network_and_an_open_port_is_named() {
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, VNET, 200, build_network(true, "10.42.0.0/27")),
        Reply::new(
            Method::GET,
            NSG,
            200,
            security_group(vec![
                rule(
                    "allow-winrm-from-environment",
                    100,
                    "Allow",
                    "10.42.0.0/27",
                    "5986",
                ),
                rule("rdp-for-debugging", 200, "Allow", "Internet", "3389"),
            ]),
        ),
    ])
    .await;
    let (arm, mut settings) = azure(&server);
    settings.test_vm.subnet_id = Some(format!("{VNET}/subnets/vms"));
    let deployment = Deployment {
        servicebus: None,
        ..deployment()
    };
    let findings =
        network_findings(deployed::check(&arm, &settings, &deployment, &expected()).await);
    let rules = findings
        .iter()
        .find(|f| f.check == "build subnet rules")
        .expect("the rules are judged");
    assert_eq!(rules.severity, Severity::Failure, "{rules:?}");
    assert!(
        rules
            .message
            .contains("port 3389 from the internet is admitted (rdp-for-debugging)"),
        "{rules:?}"
    );
    assert!(
        rules
            .message
            .contains("WinRM from elsewhere in the network is admitted (AllowVnetInBound)"),
        "{rules:?}"
    );
    assert!(server.unserved().is_empty());
}

#[tokio::test]
async fn a_deployment_that_lacks_things_gets_a_failure_naming_each_and_no_setting_value() {
    let server = ArmServer::start(vec![
        Reply::new(
            Method::GET,
            &format!("{SITE}/functions"),
            200,
            json!({ "value": [function("git-push")] }),
        ),
        Reply::new(
            Method::POST,
            &format!("{SITE}/config/appsettings/list"),
            200,
            app_settings(&["AzureWebJobsStorage", "IMAGE_FACTORY_APPROVAL_KEYS"]),
        ),
        Reply::new(
            Method::GET,
            &format!("{NAMESPACE}/queues"),
            200,
            json!({ "value": [queue("stage-test")] }),
        ),
        Reply::new(Method::GET, JOB, 404, not_found("job-build")),
        Reply::new(
            Method::GET,
            GALLERY,
            200,
            json!({ "id": GALLERY, "name": "acg_shared", "location": "westeurope", "properties": { "provisioningState": "Succeeded" } }),
        ),
        // What infra/modules/gallery.bicep used to make: no SecurityType.
        Reply::new(
            Method::GET,
            &format!("{GALLERY}/images/windows-web-base"),
            200,
            definition_answer(json!({
                "osType": "Windows", "osState": "Generalized", "hyperVGeneration": "V2",
                "identifier": { "publisher": "ImageFactory", "offer": "WindowsServer", "sku": "2022-datacenter-base" },
                "provisioningState": "Succeeded"
            })),
        ),
    ])
    .await;
    let (arm, settings) = azure(&server);
    let report = Report::new(deployed::check(&arm, &settings, &deployment(), &expected()).await);
    let text = report.to_text();
    assert_eq!(report.exit_code(), 1, "{text}");
    let failed = |check: &str| -> &Finding {
        report
            .findings()
            .iter()
            .find(|f| f.check == check && f.severity == Severity::Failure)
            .unwrap_or_else(|| panic!("{check} did not fail: {text}"))
    };
    assert!(
        failed("deployed functions")
            .message
            .contains("runs, stage-build"),
        "{text}"
    );
    assert!(
        failed("app settings")
            .message
            .contains("ServiceBus__fullyQualifiedNamespace"),
        "{text}"
    );
    assert!(failed("queues").message.contains("stage-build"), "{text}");
    assert!(
        failed("approver channels")
            .message
            .contains("no approver of windows-web-base will be told"),
        "{text}"
    );
    assert!(
        failed("build job")
            .message
            .contains("job-build does not exist"),
        "{text}"
    );
    let definition = failed("image definition windows-web-base");
    assert!(
        definition.message.contains("lacks SecurityType")
            && definition
                .message
                .contains("SecurityType unset (image.toml says TrustedLaunchSupported)")
            && definition
                .action
                .as_deref()
                .unwrap_or_default()
                .contains("delete the definition"),
        "{text}"
    );
    let json = report.to_json().to_string();
    assert!(
        !json.contains("KeyVault") && !text.contains("KeyVault"),
        "a setting's value leaked"
    );
}

#[tokio::test]
async fn an_app_with_no_function_says_the_package_layout_is_the_likely_cause() {
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, &format!("{SITE}/functions"), 200, json!({ "value": [] })),
        Reply::new(
            Method::POST,
            &format!("{SITE}/config/appsettings/list"),
            403,
            json!({ "error": { "code": "AuthorizationFailed", "message": "The client does not have authorization to perform action 'Microsoft.Web/sites/config/list/action'." } }),
        ),
    ])
    .await;
    let (arm, mut settings) = azure(&server);
    settings.build_job = None;
    settings.gallery = None;
    let mut target = deployment();
    target.servicebus = None;
    let report = Report::new(deployed::check(&arm, &settings, &target, &expected()).await);
    let text = report.to_text();
    let functions = report
        .findings()
        .iter()
        .find(|f| f.check == "deployed functions")
        .expect("functions finding");
    assert_eq!(functions.severity, Severity::Failure, "{text}");
    assert!(
        functions
            .action
            .as_deref()
            .unwrap_or_default()
            .contains("not at its root"),
        "{text}"
    );
    let app_settings = report
        .findings()
        .iter()
        .find(|f| f.check == "app settings")
        .expect("settings finding");
    assert!(
        app_settings
            .action
            .as_deref()
            .unwrap_or_default()
            .contains("Reader"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_url_checks_the_deployed_app_with_the_identitys_token_and_passes_when_all_is_there()
{
    let root = common::repo_root();
    let functions: Vec<Value> = image_factory::functions::NAMES
        .iter()
        .map(|name| function(name))
        .collect();
    let queues: Vec<Value> = image_factory::package::InfraQueues::load(&root)
        .expect("infra/queues.json")
        .all()
        .iter()
        .map(|q| queue(q))
        .collect();
    // The App Service managed identity endpoint (IDENTITY_ENDPOINT) answers the token.
    let identity_endpoint = common::identity::IdentityEndpoint::default();
    let identity = identity_endpoint.serve().await;
    // Only the seed image publishes to the gallery; its definition is as its image.toml says.
    let definition = |name: &str| {
        Reply::new(
            Method::GET,
            &format!("{GALLERY}/images/{name}"),
            200,
            definition_answer(json!({
                "osType": "Windows", "osState": "Generalized", "hyperVGeneration": "V2",
                "identifier": { "publisher": "ImageFactory", "offer": "WindowsServer", "sku": "2022-datacenter-base" },
                "features": [{ "name": "SecurityType", "value": "TrustedLaunchSupported" }],
                "provisioningState": "Succeeded"
            })),
        )
    };
    let server = ArmServer::start(vec![
        Reply::new(Method::GET, &format!("{SITE}/functions"), 200, json!({ "value": functions })),
        Reply::new(
            Method::POST,
            &format!("{SITE}/config/appsettings/list"),
            200,
            app_settings(ALL_SETTINGS),
        ),
        Reply::new(Method::GET, &format!("{NAMESPACE}/queues"), 200, json!({ "value": queues })),
        Reply::new(
            Method::GET,
            GALLERY,
            200,
            json!({ "id": GALLERY, "name": "acg_shared", "location": "westeurope", "properties": { "provisioningState": "Succeeded" } }),
        ),
        definition("windows-web-base"),
    ])
    .await;
    let base = server.base.clone();
    // The function app itself (its public URL) is another server than Resource Manager.
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_url = format!("http://{}/", app_listener.local_addr().expect("addr"));
    // Behind App Service authentication: the dashboard sends a request
    // without sign-in to the sign-in page.
    tokio::spawn(async move {
        axum::serve(
            app_listener,
            axum::Router::new()
                .route("/", axum::routing::get(|| async { "up" }))
                .route(
                    "/api/dashboard",
                    axum::routing::get(|| async {
                        (
                            axum::http::StatusCode::FOUND,
                            [(
                                "location",
                                "/.auth/login/aad?post_login_redirect_uri=/api/dashboard",
                            )],
                        )
                    }),
                ),
        )
        .await
    });
    let (output, report) = tokio::task::spawn_blocking(move || {
        doctor_with(
            &[
                "--url",
                &app_url,
                "--app",
                "func-imgf",
                "--resource-group",
                "rg-factory",
                "--servicebus-namespace",
                "sb-imgf",
            ],
            &[
                ("IMAGE_FACTORY_SUBSCRIPTION_ID", Path::new("sub-1")),
                (
                    "IMAGE_FACTORY_GALLERY_RESOURCE_GROUP",
                    Path::new("rg-img-gallery"),
                ),
                ("IMAGE_FACTORY_GALLERY", Path::new("acg_shared")),
                ("IMAGE_FACTORY_ARM_ENDPOINT", Path::new(&base)),
                ("IDENTITY_ENDPOINT", Path::new(&identity)),
                (
                    "IDENTITY_HEADER",
                    Path::new(common::identity::HEADER_SECRET),
                ),
            ],
        )
    })
    .await
    .expect("doctor ran");
    assert!(output.status.success(), "{report:#}");
    for check in [
        "app url",
        "sign-in",
        "deployed functions",
        "app settings",
        "approver channels",
        "queues",
        "gallery",
    ] {
        assert_eq!(
            finding(&report, check)["severity"],
            json!("ok"),
            "{report:#}"
        );
    }
    assert_eq!(finding(&report, "build job")["severity"], json!("info"));
    let definitions = report["findings"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|f| {
                    f["check"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("image definition "))
                })
                .count()
        })
        .unwrap_or_default();
    // One definition: only the seed image publishes to the gallery.
    assert_eq!(definitions, 1, "{report:#}");
    assert_eq!(
        finding(&report, "image definition windows-web-base")["severity"],
        json!("ok")
    );
    let arm: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.uri.starts_with("/subscriptions/"))
        .collect();
    assert_eq!(arm.len(), 5, "{arm:?}");
    let bearer = format!(
        "Bearer {}",
        common::identity::token_for("https://management.azure.com")
    );
    assert!(
        arm.iter()
            .all(|s| s.authorization.as_deref() == Some(bearer.as_str()))
    );
    assert!(
        !report.to_string().contains("KeyVault"),
        "a setting's value leaked"
    );
}

#[tokio::test]
async fn approvers_told_by_one_channel_only_or_that_email_cannot_reach_get_a_warning_each() {
    let server = ArmServer::start(vec![
        Reply::new(
            Method::GET,
            &format!("{SITE}/functions"),
            200,
            json!({ "value": [function("git-push"), function("runs"), function("stage-build")] }),
        ),
        Reply::new(
            Method::POST,
            &format!("{SITE}/config/appsettings/list"),
            200,
            app_settings(&[
                "AzureWebJobsStorage__accountName",
                "ServiceBus__fullyQualifiedNamespace",
                "IMAGE_FACTORY_APPROVAL_KEYS",
                "IMAGE_FACTORY_EMAIL_ENDPOINT",
                "IMAGE_FACTORY_EMAIL_SENDER",
            ]),
        ),
    ])
    .await;
    let (arm, settings) = azure(&server);
    let expected = Expected {
        approvers: vec![
            ("web".into(), "alice@contoso.com".into(), true),
            ("web".into(), "platform-lead".into(), false),
        ],
        ..expected()
    };
    let deployment = Deployment {
        servicebus: None,
        ..deployment()
    };
    let report = Report::new(deployed::check(&arm, &settings, &deployment, &expected).await);
    let text = report.to_text();
    let warned = |check: &str| -> &Finding {
        report
            .findings()
            .iter()
            .find(|f| f.check == check && f.severity == Severity::Warning)
            .unwrap_or_else(|| panic!("{check} did not warn: {text}"))
    };
    assert!(
        warned("approver channels")
            .message
            .contains("the approvers of web are told by email only: Teams is not configured"),
        "{text}"
    );
    assert!(
        warned("approver addresses")
            .message
            .contains("email cannot reach platform-lead (web)"),
        "{text}"
    );
}

#[tokio::test]
async fn doctor_url_fails_a_dashboard_that_answers_without_sign_in_and_passes_one_that_refuses() {
    let open = common::serve_loopback(axum::Router::new().route(
        "/api/dashboard",
        axum::routing::get(|| async { "<html>the runs</html>" }),
    ))
    .await;
    let finding = deployed::sign_in(&open).await;
    assert_eq!(finding.severity, Severity::Failure, "{finding:?}");
    assert!(
        finding
            .message
            .contains("answers a request without sign-in (HTTP 200)"),
        "{finding:?}"
    );
    assert!(
        finding
            .action
            .as_deref()
            .unwrap_or_default()
            .contains("SIGN_IN_CLIENT_ID"),
        "{finding:?}"
    );
    let refusing = common::serve_loopback(axum::Router::new().route(
        "/api/dashboard",
        axum::routing::get(|| async { axum::http::StatusCode::UNAUTHORIZED }),
    ))
    .await;
    assert_eq!(deployed::sign_in(&refusing).await.severity, Severity::Ok);
    // A redirect somewhere else than a sign-in page is not taken for one.
    let elsewhere = common::serve_loopback(axum::Router::new().route(
        "/api/dashboard",
        axum::routing::get(|| async {
            (
                axum::http::StatusCode::FOUND,
                [("location", "https://example.com/")],
            )
        }),
    ))
    .await;
    assert_eq!(
        deployed::sign_in(&elsewhere).await.severity,
        Severity::Warning
    );
}
