//! The Bicep under infra/ against Bicep's own type data (the `types.json`
//! files Microsoft generates from the REST API specifications): every
//! `resource` declaration's type and api-version exist, and its body fits
//! the type: property names at every depth, enum and literal values,
//! required and read-only properties, `existing` bodies, child resources
//! nested or with `parent:`. The check prints its summary (run with
//! `--nocapture`). Errors planted into copies of the real modules are each
//! caught with file and line; a file the published grammar cannot parse is
//! reported unchecked and fails; the resources the infrastructure is about
//! to take on (tests/fixtures/bicep/planned.bicep) are known to the data.
//! See docs/infra-checks.md.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::bicep::{self, Report, TypeLibrary};
use tempfile::TempDir;

/// The type data, read once per test process.
fn library() -> &'static TypeLibrary {
    static LIBRARY: OnceLock<TypeLibrary> = OnceLock::new();
    LIBRARY.get_or_init(|| TypeLibrary::open(&common::third_party("bicep-types-az/generated")))
}

fn check_dir(base: &Path, dir: &str) -> Report {
    bicep::check_files(library(), base, &bicep::bicep_files(&base.join(dir)))
}

/// `resource` declarations counted by their keyword at the start of a
/// line, without the grammar.
fn resource_lines(files: &[PathBuf]) -> usize {
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read a Bicep file"))
        .map(|text| {
            text.lines()
                .filter(|line| line.trim_start().starts_with("resource "))
                .count()
        })
        .sum()
}

#[test]
fn every_resource_in_infra_fits_bicep_type_data() {
    let root = common::repo_root();
    let files = bicep::bicep_files(&root.join("infra"));
    let report = bicep::check_files(library(), &root, &files);
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    let declared = resource_lines(&files);
    assert!(declared > 40, "infra/ declares {declared} resources");
    assert_eq!(report.stats.resources_declared, declared, "{report}");
    assert_eq!(report.stats.resources_checked, declared, "{report}");
    assert!(
        report.stats.existing > 0 && report.stats.children > 0,
        "{report}"
    );
}

/// A copy of infra/ in a temporary folder with `from` (found exactly once
/// in `file`) replaced by `to`; the line `marker` is on afterwards.
struct Planted {
    dir: TempDir,
    file: String,
    line: usize,
}

fn plant(file: &str, from: &str, to: &str, marker: &str) -> Planted {
    let root = common::repo_root();
    let dir = tempfile::tempdir().expect("temp dir");
    for source in walk(&root.join("infra")) {
        let relative = source.strip_prefix(&root).expect("under the repository");
        let target = dir.path().join(relative);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("create folder");
        std::fs::copy(&source, &target).expect("copy");
    }
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).expect("read the module");
    assert_eq!(text.matches(from).count(), 1, "{file} has {from:?} once");
    let planted = text.replacen(from, to, 1);
    let line = planted
        .lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker:?} is in the planted {file}"))
        + 1;
    std::fs::write(&path, planted).expect("write the planted module");
    Planted {
        dir,
        file: file.to_string(),
        line,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The planted copy gives exactly one error, on the planted line, saying `says`.
fn caught(planted: &Planted, says: &str) {
    let report = check_dir(planted.dir.path(), "infra");
    assert!(report.unchecked.is_empty(), "{report}");
    assert_eq!(report.findings.len(), 1, "one error expected:\n{report}");
    let finding = &report.findings[0];
    assert_eq!(
        (finding.file.as_str(), finding.line),
        (planted.file.as_str(), planted.line),
        "{report}"
    );
    assert!(
        finding.message.contains(says),
        "{:?} says {says:?}",
        finding.message
    );
}

/// The planted copy passes: the change is one the type data allows.
fn passes(planted: &Planted) -> Report {
    let report = check_dir(planted.dir.path(), "infra");
    assert!(report.is_clean(), "{report}");
    report
}

#[test]
fn misspelled_properties_are_caught_at_every_depth() {
    caught(
        &plant(
            "infra/modules/storage.bicep",
            "allowBlobPublicAccess: false",
            "allowBlobPublicAcess: false",
            "allowBlobPublicAcess",
        ),
        "resource storage (Microsoft.Storage/storageAccounts@2023-05-01) properties.allowBlobPublicAcess: unknown property (did you mean `allowBlobPublicAccess`?)",
    );
    caught(
        &plant(
            "infra/modules/containerapps.bicep",
            "replicaCompletionCount: 1",
            "replicaCompletionCont: 1",
            "replicaCompletionCont",
        ),
        "properties.configuration.manualTriggerConfig.replicaCompletionCont: unknown property",
    );
    // An item of an array of objects, in a variable the body concatenates.
    caught(
        &plant(
            "infra/modules/functionapp.bicep",
            "    name: 'AzureWebJobsStorage__credential'",
            "    nmae: 'AzureWebJobsStorage__credential'",
            "nmae:",
        ),
        "properties.siteConfig.appSettings[1].nmae: unknown property",
    );
    // Names are compared as Bicep compares them: case and all.
    caught(
        &plant(
            "infra/modules/monitoring.bicep",
            "DisableLocalAuth: true",
            "disableLocalAuth: true",
            "disableLocalAuth",
        ),
        "properties.disableLocalAuth: unknown property (did you mean `DisableLocalAuth`?)",
    );
}

#[test]
fn wrong_enum_and_literal_values_are_caught() {
    caught(
        &plant(
            "infra/modules/cosmos.bicep",
            "defaultConsistencyLevel: 'Session'",
            "defaultConsistencyLevel: 'Sesion'",
            "'Sesion'",
        ),
        "properties.consistencyPolicy.defaultConsistencyLevel: 'Sesion' is not one of 'Eventual' | 'Session' | 'BoundedStaleness' | 'Strong' | 'ConsistentPrefix'",
    );
    // A discriminator picks the shape of the object.
    caught(
        &plant(
            "infra/modules/cosmos.bicep",
            "type: 'Continuous'",
            "type: 'Continous'",
            "'Continous'",
        ),
        "properties.backupPolicy.type: 'Continous' is not one of 'Continuous', 'Periodic'",
    );
    caught(
        &plant(
            "infra/modules/keyvault.bicep",
            "enablePurgeProtection: true",
            "enablePurgeProtection: 'true'",
            "enablePurgeProtection",
        ),
        "properties.enablePurgeProtection: expects bool, not 'true'",
    );
    // An open enum (Azure's extensible enums) takes any string.
    passes(&plant(
        "infra/modules/storage.bicep",
        "minimumTlsVersion: 'TLS1_2'",
        "minimumTlsVersion: 'TLS1_3'",
        "TLS1_3",
    ));
}

#[test]
fn missing_required_properties_are_caught() {
    caught(
        &plant(
            "infra/modules/keyvault.bicep",
            "    tenantId: subscription().tenantId\n",
            "",
            "  properties: {",
        ),
        "resource vault (Microsoft.KeyVault/vaults@2023-07-01) properties: missing required property `tenantId`",
    );
    caught(
        &plant(
            "infra/modules/keyvault.bicep",
            "      family: 'A'\n",
            "",
            "    sku: {",
        ),
        "properties.sku: missing required property `family`",
    );
}

#[test]
fn unknown_api_versions_and_types_are_caught() {
    caught(
        &plant(
            "infra/modules/keyvault.bicep",
            "'Microsoft.KeyVault/vaults@2023-07-01'",
            "'Microsoft.KeyVault/vaults@2023-07-02'",
            "@2023-07-02",
        ),
        "Bicep's type data has no api-version 2023-07-02 of Microsoft.KeyVault/vaults; it has 2023-02-01, 2023-07-01,",
    );
    // The same for an existing resource.
    caught(
        &plant(
            "infra/modules/servicebus.bicep",
            "'Microsoft.KeyVault/vaults@2023-07-01' existing",
            "'Microsoft.KeyVault/vaults@2019-09-01' existing",
            "@2019-09-01",
        ),
        "no api-version 2019-09-01 of Microsoft.KeyVault/vaults",
    );
    caught(
        &plant(
            "infra/modules/identity.bicep",
            "'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31'",
            "'Microsoft.ManagedIdentity/userAssignedIdentity@2023-01-31'",
            "userAssignedIdentity@",
        ),
        "Bicep's type data has no resource type Microsoft.ManagedIdentity/userAssignedIdentity (at any api-version)",
    );
}

#[test]
fn writing_a_read_only_property_is_caught() {
    caught(
        &plant(
            "infra/modules/monitoring.bicep",
            "    DisableLocalAuth: true\n",
            "    DisableLocalAuth: true\n    ConnectionString: 'InstrumentationKey=00000000-0000-0000-0000-000000000000'\n",
            "ConnectionString:",
        ),
        "resource insights (Microsoft.Insights/components@2020-02-02) properties.ConnectionString: is read-only: Azure sets it, a template cannot",
    );
}

#[test]
fn an_existing_resource_says_only_which_resource_it_is() {
    caught(
        &plant(
            "infra/modules/containerapps.bicep",
            "  name: workspaceName\n}",
            "  name: workspaceName\n  sku: {\n    name: 'PerGB2018'\n  }\n}",
            "  sku: {",
        ),
        "resource workspace (Microsoft.OperationalInsights/workspaces@2023-09-01) sku: an existing resource's body takes only name, scope and parent",
    );
}

#[test]
fn child_resources_nested_or_with_parent_are_typed_as_children() {
    // Nested: the parent's type plus the segment, at the parent's api-version.
    let nested = "  kind: 'StorageV2'\n  resource files 'fileServices' = {\n    name: 'default'\n    properties: {\n      shareDeleteRetentionPolicy: {\n        enabled: true\n        days: 7\n      }\n    }\n  }\n";
    let planted = plant(
        "infra/modules/storage.bicep",
        "  kind: 'StorageV2'\n",
        nested,
        "days: 7",
    );
    let clean = passes(&planted);
    let root = check_dir(&common::repo_root(), "infra");
    assert_eq!(clean.stats.children, root.stats.children + 1);
    caught(
        &plant(
            "infra/modules/storage.bicep",
            "  kind: 'StorageV2'\n",
            &nested.replace("days: 7", "dayz: 7"),
            "dayz: 7",
        ),
        "resource storage::files (Microsoft.Storage/storageAccounts/fileServices@2023-05-01) properties.shareDeleteRetentionPolicy.dayz: unknown property (did you mean `days`?)",
    );
    caught(
        &plant(
            "infra/modules/storage.bicep",
            "  kind: 'StorageV2'\n",
            &nested.replace("'fileServices'", "'fileService'"),
            "'fileService'",
        ),
        "no resource type Microsoft.Storage/storageAccounts/fileService",
    );
    // `parent:` names a resource of the parent type.
    caught(
        &plant(
            "infra/modules/servicebus.bicep",
            "  parent: namespace\n  name: 'workers-send'",
            "  parent: vault\n  name: 'workers-send'",
            "parent: vault",
        ),
        "parent: `vault` is a Microsoft.KeyVault/vaults; the parent of a Microsoft.ServiceBus/namespaces/authorizationRules is a Microsoft.ServiceBus/namespaces",
    );
    // A child declared with its parent is named by its own segment.
    caught(
        &plant(
            "infra/modules/servicebus.bicep",
            "  parent: namespace\n  name: 'workers-send'",
            "  parent: namespace\n  name: 'namespace/workers-send'",
            "namespace/workers-send",
        ),
        "name: 'namespace/workers-send': a child declared with its parent is named by its own segment",
    );
    // A child type needs its parent.
    caught(
        &plant(
            "infra/modules/servicebus.bicep",
            "  parent: namespace\n  name: 'workers-send'",
            "  name: 'workers-send'",
            "name: 'workers-send'",
        ),
        "a Microsoft.ServiceBus/namespaces/authorizationRules declared without `parent` is named by 2 segments",
    );
}

#[test]
fn a_file_the_grammar_cannot_parse_is_unchecked_and_fails() {
    let cases = [
        (
            "infra/modules/identity.bicep",
            "@description('Name of the identity.')",
            "extension microsoftGraphV1\n\n@description('Name of the identity.')",
            "extension microsoftGraphV1",
        ),
        (
            "infra/main.bicep",
            "var tags = {\n",
            "var tags = {\n  ...{ owner: 'platform' }\n",
            // The grammar's error starts at the object that holds the spread.
            "var tags = {",
        ),
        (
            "infra/modules/roles.bicep",
            "      subscriptionId\n    ]",
            "      subscription().id\n    ]",
            "      subscription().id",
        ),
    ];
    for (file, from, to, marker) in cases {
        let planted = plant(file, from, to, marker);
        let report = check_dir(planted.dir.path(), "infra");
        assert!(!report.is_clean(), "{report}");
        assert_eq!(report.unchecked.len(), 1, "{report}");
        let unchecked = &report.unchecked[0];
        assert_eq!(
            (unchecked.file.as_str(), unchecked.line),
            (file, planted.line),
            "{report}"
        );
        assert!(
            report.to_string().contains("files unchecked: 1"),
            "{report}"
        );
    }
}

#[test]
fn the_resources_planned_next_are_known_to_the_type_data() {
    let fixtures = common::repo_root().join("tests/fixtures/bicep");
    let report = check_dir(&fixtures, "");
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.stats.resources_checked,
        resource_lines(&bicep::bicep_files(&fixtures))
    );
    // And each of them is checked, not waved through.
    let text = std::fs::read_to_string(fixtures.join("planned.bicep")).expect("fixture");
    let mistakes = [
        (
            "addressPrefix: '10.20.2.0/24'",
            "adressPrefix: '10.20.2.0/24'",
            "unknown property (did you mean `addressPrefix`?)",
        ),
        (
            "unauthenticatedClientAction: 'RedirectToLoginPage'",
            "unauthenticatedClientAction: 'RedirectToLogin'",
            "'RedirectToLogin' is not one of",
        ),
        (
            "useCommonAlertSchema: true",
            "useCommonAlertSchma: true",
            "emailReceivers[0].useCommonAlertSchma: unknown property",
        ),
        (
            "'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'",
            "'odata.type': 'Microsoft.Azure.Monitor.SingleResource'",
            "criteria['odata.type']: 'Microsoft.Azure.Monitor.SingleResource' is not one of",
        ),
        (
            "severity: 2",
            "severity: 'high'",
            "resource deadLetters (Microsoft.Insights/metricAlerts@2018-03-01) properties.severity: expects int, not 'high'",
        ),
        (
            "minFailingPeriodsToAlert: 1",
            "minFailingPeriodsToAlrt: 1",
            "failingPeriods.minFailingPeriodsToAlrt: unknown property",
        ),
        (
            "displayName: 'image-factory approvals'",
            "displayname: 'image-factory approvals'",
            "properties.displayname: unknown property (did you mean `displayName`?)",
        ),
        (
            "disableLocalAuth: true\n  }\n}\n\nresource premium",
            "disableLocalAuth: 'yes'\n  }\n}\n\nresource premium",
            "properties.disableLocalAuth: expects bool, not 'yes'",
        ),
        (
            "name: 'Premium'",
            "name: 'Premum'",
            "sku.name: 'Premum' is not one of",
        ),
    ];
    for (from, to, says) in mistakes {
        assert_eq!(
            text.matches(from).count(),
            1,
            "the fixture has {from:?} once"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("planned.bicep"), text.replacen(from, to, 1))
            .expect("write");
        let report = check_dir(dir.path(), "");
        assert_eq!(report.findings.len(), 1, "{to:?}:\n{report}");
        assert!(
            report.findings[0].message.contains(says),
            "{to:?}:\n{report}"
        );
    }
}
