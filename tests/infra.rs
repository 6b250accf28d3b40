//! Static checks of what is deployed: the Bicep under infra/ passes checkov
//! (a real child process) with no failed check, no parsing error and a reason
//! on every skip; host.json and every function.json validate against the
//! SchemaStore schemas (the third-party folder's project-fixtures-schemas) and match the handler's
//! function set; the queues Bicep creates come from infra/queues.json; the
//! function app runs on Flex Consumption (FC1) with the Custom Handler
//! runtime and an identity-read deployment container, and Application
//! Insights keeps local authentication disabled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image_factory::functions::NAMES;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// checkov from the project's virtualenv (scripts/setup.sh), else from the PATH.
fn checkov() -> PathBuf {
    let venv = repo().join(".venv/bin/checkov");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("checkov"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!("checkov is not installed: run scripts/setup.sh (it installs the pinned checkov into .venv)")
    })
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn bicep_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("infra/main.bicep")];
    let modules = repo().join("infra/modules");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&modules)
        .expect("infra/modules")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bicep"))
        .collect();
    more.sort();
    files.extend(more);
    files
}

#[test]
fn checkov_finds_no_failed_check_and_parses_every_bicep_file() {
    let output = Command::new(checkov())
        .args([
            "--directory",
            "infra",
            "--framework",
            "bicep",
            "--skip-download",
        ])
        .args(["--output", "json", "--quiet"])
        .current_dir(repo())
        .output()
        .expect("run checkov");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report = match report {
        Value::Array(mut reports) => reports.remove(0),
        other => other,
    };
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .map(|c| format!("{} {} {}", c["check_id"], c["file_path"], c["resource"]))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        summary["parsing_errors"], 0,
        "checkov could not parse: {summary}"
    );
    assert!(
        failed.is_empty(),
        "checkov failed checks:\n{}",
        failed.join("\n")
    );
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        summary["passed"].as_u64().unwrap_or(0) > 0,
        "checkov ran no check at all: {summary}"
    );
    // Every Bicep file was scanned (a file checkov skips silently proves nothing).
    assert!(
        summary["resource_count"].as_u64().unwrap_or(0) >= 20,
        "checkov saw too few resources: {summary}"
    );
    assert!(output.status.success(), "checkov exited {}", output.status);
}

#[test]
fn every_checkov_skip_gives_its_reason() {
    for file in bicep_files() {
        let text = std::fs::read_to_string(&file).expect("read bicep");
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line.trim().strip_prefix("//checkov:skip=") else {
                continue;
            };
            let reason = rest.split_once(':').map(|(_, r)| r.trim()).unwrap_or("");
            assert!(
                reason.len() >= 20,
                "{}:{}: a skip needs a reason after the check id: {line}",
                file.display(),
                n + 1
            );
        }
    }
}

#[test]
fn the_service_bus_module_creates_the_queues_listed_in_infra_queues_json() {
    let module = std::fs::read_to_string(repo().join("infra/modules/servicebus.bicep"))
        .expect("servicebus.bicep");
    assert!(module.contains("loadJsonContent('../queues.json')"));
    assert!(module.contains("for queue in config.queues"));
    // Nothing is forwarded (the Basic tier has no auto-forwarding): each
    // queue's dead-letter sub-queue has a function of its own.
    assert!(!module.contains("forwardDeadLetteredMessagesTo"));
    assert!(module.contains("param sku string = 'Basic'"));
    assert!(module.contains("maxDeliveryCount: config.maxDeliveryCount"));
    assert!(module.contains("lockDuration: config.lockDuration"));
}

#[test]
fn the_release_events_topic_takes_cloud_events_from_the_factory_identity_only() {
    let read = |path: &str| std::fs::read_to_string(repo().join(path)).expect(path);
    let module = read("infra/modules/events.bicep");
    assert!(module.contains("inputSchema: 'CloudEventSchemaV1_0'"));
    assert!(module.contains("disableLocalAuth: true"), "no access keys");
    // EventGrid Data Sender, on the topic, for the identity the app runs as.
    assert!(module.contains("'d5a91429-5739-47e2-a06b-3470a27159e7'"));
    assert!(module.contains("scope: topic"));
    let main = read("infra/main.bicep");
    assert!(main.contains("module events 'modules/events.bicep'"));
    assert!(main.contains("eventGridEndpoint: events.outputs.endpoint"));
    let app = read("infra/modules/functionapp.bicep");
    assert!(app.contains("name: 'IMAGE_FACTORY_EVENT_GRID_ENDPOINT'"));
}

/// The SchemaStore schema `name`, compiled. function.json's schema declares
/// draft-04 but relies on `const` (draft 6+) in its SQL and MySQL bindings;
/// under strict draft-04 rules those branches match any binding and every
/// `oneOf` fails, so it is read with draft-07 rules, as editors read it.
fn validator(name: &str) -> jsonschema::Validator {
    let schema = read_json(&common::third_party("project-fixtures-schemas").join(name));
    let compiled = if name == "function.json" {
        jsonschema::draft7::new(&schema)
    } else {
        jsonschema::validator_for(&schema)
    };
    compiled.unwrap_or_else(|e| panic!("the SchemaStore schema {name} does not compile: {e}"))
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn host_json_is_valid_against_the_schemastore_schema() {
    let validator = validator("host.json");
    let errors = schema_errors(&validator, &read_json(&repo().join("host.json")));
    assert!(errors.is_empty(), "host.json: {errors:#?}");
}

#[test]
fn every_function_json_is_valid_against_the_schemastore_schema() {
    let validator = validator("function.json");
    for name in NAMES {
        let path = repo().join("functions").join(name).join("function.json");
        let errors = schema_errors(&validator, &read_json(&path));
        assert!(
            errors.is_empty(),
            "functions/{name}/function.json: {errors:#?}"
        );
    }
}

#[test]
fn the_schemas_reject_what_the_host_would_reject() {
    // A binding without a direction, and a host.json of the wrong version:
    // proof that the validation above can fail.
    let function = validator("function.json");
    let broken = serde_json::json!({
        "bindings": [{ "type": "serviceBusTrigger", "name": "message", "queueName": "stage-build" }]
    });
    assert!(!schema_errors(&function, &broken).is_empty());
    let host = validator("host.json");
    assert!(!schema_errors(&host, &serde_json::json!({ "version": 2 })).is_empty());
}

#[test]
fn every_function_folder_is_served_by_the_handler_and_every_served_function_has_a_folder() {
    let functions = image_factory::package::check_app(&repo())
        .unwrap_or_else(|e| panic!("the app and the handler disagree: {e}"));
    let mut served = NAMES.to_vec();
    served.sort();
    assert_eq!(functions, served);
}

#[test]
fn every_image_that_publishes_to_the_gallery_describes_its_definition_and_bicep_makes_none() {
    // The factory makes each definition from image.toml before the build:
    // the infrastructure makes none (a Bicep definition without SecurityType
    // would refuse a Trusted Launch build, and could not be changed).
    let gallery =
        std::fs::read_to_string(repo().join("infra/modules/gallery.bicep")).expect("gallery.bicep");
    assert!(
        !gallery.contains("Microsoft.Compute/galleries/images"),
        "gallery.bicep makes an image definition: the factory makes them from image.toml"
    );
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("images")).expect("images") {
        let folder = entry.expect("entry").path();
        let Ok(text) = std::fs::read_to_string(folder.join("image.toml")) else {
            continue;
        };
        let name = folder.file_name().and_then(|n| n.to_str()).expect("a name");
        let settings = image_factory::config::parse_image_settings(&text).expect("valid");
        let templates: String = std::fs::read_dir(&folder)
            .expect("the folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".pkr.hcl"))
            .map(|p| std::fs::read_to_string(p).expect("a template"))
            .collect();
        let publishes = templates.contains("shared_image_gallery_destination");
        let definition = settings.gallery_definition(name);
        assert_eq!(
            publishes,
            definition.is_some(),
            "{name}: a template that publishes to the gallery needs gallery_image_name or [gallery] in image.toml, and only such a one"
        );
        if let Some(definition) = definition {
            if templates.contains("security_type") && templates.contains("\"TrustedLaunch\"") {
                assert!(
                    definition
                        .settings
                        .security_type
                        .as_str()
                        .starts_with("TrustedLaunch"),
                    "{name} builds Trusted Launch; its definition must support it"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no image publishes to the gallery?");
}

/// The `{ ... }` block that follows the first `marker` in `text`, braces balanced.
fn block<'a>(text: &'a str, marker: &str) -> &'a str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} is not in the file"));
    let open = at + text[at..].find('{').expect("an opening brace");
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..=open + i];
                }
            }
            _ => {}
        }
    }
    panic!("{marker}: unbalanced braces")
}

/// `text` with every run of whitespace made one space.
fn squeezed(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_function_app_runs_on_flex_consumption_with_the_custom_handler_runtime() {
    let app = std::fs::read_to_string(repo().join("infra/modules/functionapp.bicep"))
        .expect("functionapp.bicep");
    // The plan: FC1, FlexConsumption, Linux.
    let plan = squeezed(block(&app, "resource plan 'Microsoft.Web/serverfarms@"));
    for needed in ["name: 'FC1'", "tier: 'FlexConsumption'", "reserved: true"] {
        assert!(plan.contains(needed), "the plan lacks {needed}: {plan}");
    }
    let site = block(&app, "resource site 'Microsoft.Web/sites@");
    let config = block(site, "functionAppConfig:");
    // The runtime as Azure's stack data lists the Custom Handler stack for FC1.
    assert_eq!(
        squeezed(block(config, "runtime:")),
        "{ name: 'custom' version: '1.0' }"
    );
    // Scale settings are the module's parameters, within Flex's bounds.
    assert_eq!(
        squeezed(block(config, "scaleAndConcurrency:")),
        "{ instanceMemoryMB: instanceMemoryMB maximumInstanceCount: maximumInstanceCount }"
    );
    let params = squeezed(&app);
    assert!(params.contains("@allowed([ 512 2048 4096 ]) param instanceMemoryMB int = 2048"));
    assert!(params.contains("@minValue(40) @maxValue(1000) param maximumInstanceCount int"));
    // The deployment container is read with the user-assigned identity, no key.
    let storage = squeezed(block(config, "deployment:"));
    assert_eq!(
        storage,
        "{ storage: { type: 'blobContainer' value: deploymentContainerUrl authentication: { type: 'UserAssignedIdentity' userAssignedIdentityResourceId: identityId } } }"
    );
    let main = std::fs::read_to_string(repo().join("infra/main.bicep")).expect("main.bicep");
    assert!(main.contains("deploymentContainerUrl: storage.outputs.deploymentContainerUrl"));
    let host_storage =
        std::fs::read_to_string(repo().join("infra/modules/storage.bicep")).expect("storage.bicep");
    assert!(host_storage.contains("storageAccounts/blobServices/containers@"));
    assert!(host_storage.contains("allowSharedKeyAccess: false"));
    // What Flex Consumption deprecates is not set: the runtime is in
    // functionAppConfig, the package comes from the deployment container,
    // there is no content share and no Always On.
    for deprecated in [
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
    ] {
        assert!(
            !app.contains(&format!("name: '{deprecated}'")),
            "the Flex app sets {deprecated}"
        );
    }
    for property in ["alwaysOn:", "linuxFxVersion:", "use32BitWorkerProcess:"] {
        assert!(!site.contains(property), "the Flex app sets {property}");
    }
}

#[test]
fn application_insights_keeps_local_authentication_disabled() {
    let monitoring = std::fs::read_to_string(repo().join("infra/modules/monitoring.bicep"))
        .expect("monitoring.bicep");
    let insights = squeezed(block(
        &monitoring,
        "resource insights 'Microsoft.Insights/components@",
    ));
    assert!(insights.contains("DisableLocalAuth: true"), "{insights}");
    // The identity that exports traces may publish them.
    assert!(monitoring.contains("3913510d-42f4-4e42-8a64-420c390055eb"));
}

#[test]
fn the_packer_app_registration_trusts_the_factory_identity_and_its_principal_holds_the_builder_role()
 {
    let read = |path: &str| {
        std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    // The Graph objects: the app, its federated credential for the factory
    // identity (issuer: the tenant's Entra ID; subject: the identity's object
    // id; audience: the token exchange), and its service principal.
    let app = read("deploy/entra/packer-app.bicep");
    assert!(app.contains("extension microsoftGraphV1"));
    assert!(read("deploy/entra/bicepconfig.json").contains("\"microsoftGraphV1\""));
    let application = block(&app, "resource app 'Microsoft.Graph/applications@v1.0'");
    let credential = squeezed(block(application, "'federatedIdentityCredentials@v1.0'"));
    for needed in [
        "issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'",
        "subject: factoryIdentityPrincipalId",
        "audiences: [ 'api://AzureADTokenExchange' ]",
    ] {
        assert!(credential.contains(needed), "{needed} not in {credential}");
    }
    assert!(squeezed(&app).contains(
        "resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = { appId: app.appId }"
    ));
    // The deployment wires them: the job learns the app, its principal gets
    // the builder role where packer builds and publishes.
    let main = squeezed(&read("infra/main.bicep"));
    for group in ["buildGroup", "galleryGroup"] {
        assert!(
            main.contains(&format!(
                "= if (!empty(packerPrincipalId)) {{ name: 'packer-builder-on-{}' scope: {group} params: {{ roleDefinitionId: roles.outputs.builderRoleId principalId: packerPrincipalId }} }}",
                group.trim_end_matches("Group")
            )),
            "no builder role for packer's principal on {group}"
        );
    }
    assert!(main.contains("packerClientId: packerClientId"));
    assert!(
        main.contains("output FACTORY_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId")
    );
    let parameters = read_json(&repo().join("infra/main.parameters.json"));
    assert_eq!(
        parameters["parameters"]["packerClientId"]["value"],
        "${PACKER_CLIENT_ID=}"
    );
    assert_eq!(
        parameters["parameters"]["packerPrincipalId"]["value"],
        "${PACKER_PRINCIPAL_ID=}"
    );
}

/// The sample paths a route answers under `/api`: each parameter filled
/// with a value, an optional one also left out.
fn sample_paths(route: &str) -> Vec<String> {
    let mut paths = vec![String::from("/api")];
    for part in route.split('/').filter(|p| !p.is_empty()) {
        let optional = part.starts_with('{') && part.ends_with("?}");
        let value = if part.starts_with('{') { "x-1" } else { part };
        let mut next: Vec<String> = paths.iter().map(|p| format!("{p}/{value}")).collect();
        if optional {
            next.extend(paths.iter().cloned());
        }
        paths = next;
    }
    paths
}

/// Whether an `excludedPaths` entry of App Service authentication covers
/// `path`: the path itself, or with a trailing `/*` every path below it
/// (the product team's answer in MicrosoftDocs/azure-docs issue 86514).
fn excludes(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix("/*") {
        Some(prefix) => path.starts_with(&format!("{prefix}/")),
        None => pattern == path,
    }
}

#[test]
fn sign_in_leaves_out_exactly_the_routes_that_carry_their_own_signature() {
    let app = std::fs::read_to_string(repo().join("infra/modules/functionapp.bicep"))
        .expect("functionapp.bicep");
    let auth = block(&app, "resource auth 'Microsoft.Web/sites/config@");
    let settings = squeezed(auth);
    for needed in [
        "name: 'authsettingsV2'",
        "platform: { enabled: true }",
        "requireAuthentication: true",
        "unauthenticatedClientAction: 'RedirectToLoginPage'",
        "redirectToProvider: 'azureactivedirectory'",
        "clientId: signInClientId",
        "'api://${signInClientId}'",
        "tokenStore: { enabled: true }",
    ] {
        assert!(
            settings.contains(needed),
            "sign-in lacks {needed}: {settings}"
        );
    }
    assert!(
        app.contains(
            "resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(signInClientId))"
        ),
        "sign-in is on exactly when a client id is given"
    );
    let list = &auth[auth.find("excludedPaths: [").expect("excludedPaths")..];
    let list = &list[..list.find(']').expect("the list's end")];
    let excluded: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_matches('\''))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!excluded.is_empty());
    // The functions whose requests prove themselves: the webhook's HMAC
    // signature, the approval link's signed token. Everything else an
    // operator reads or does stays behind sign-in.
    let own_signature = ["git-push", "approval"];
    let mut used = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(repo().join("functions")).expect("functions/") {
        let dir = entry.expect("an entry").path();
        let function: Value = read_json(&dir.join("function.json"));
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Some(trigger) = function["bindings"]
            .as_array()
            .expect("bindings")
            .iter()
            .find(|b| b["type"] == "httpTrigger")
        else {
            continue;
        };
        let route = trigger["route"].as_str().expect("a route");
        for path in sample_paths(route) {
            let by: Vec<&&str> = excluded.iter().filter(|p| excludes(p, &path)).collect();
            used.extend(by.iter().map(|p| p.to_string()));
            assert_eq!(
                !by.is_empty(),
                own_signature.contains(&name.as_str()),
                "{name}: {path} is {}excluded from sign-in",
                if by.is_empty() { "not " } else { "" }
            );
        }
    }
    let stale: Vec<&&str> = excluded.iter().filter(|p| !used.contains(**p)).collect();
    assert!(
        stale.is_empty(),
        "excluded paths no function serves: {stale:?}"
    );
    // The excluded functions are anonymous at the host (their requests carry
    // their own proof); the operators' API keeps its function key.
    for (name, level) in [
        ("git-push", "anonymous"),
        ("approval", "anonymous"),
        ("runs", "function"),
        ("rollback", "function"),
    ] {
        let function = read_json(&repo().join("functions").join(name).join("function.json"));
        assert_eq!(function["bindings"][0]["authLevel"], level, "{name}");
    }
}

#[test]
fn the_alerts_are_deployed_to_one_action_group_and_the_patch_tuesday_rule_may_read_what_it_queries()
{
    let read = |path: &str| {
        std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let alerts = read("infra/modules/alerts.bicep");
    // Every alert acts through the one action group.
    let rules: Vec<&str> = [
        "resource waiting 'Microsoft.Insights/metricAlerts@",
        "resource failedRuns 'Microsoft.Insights/scheduledQueryRules@",
        "resource reaped 'Microsoft.Insights/scheduledQueryRules@",
        "resource unreleased 'Microsoft.Insights/scheduledQueryRules@",
    ]
    .iter()
    .map(|marker| block(&alerts, marker))
    .collect();
    for rule in &rules {
        let rule = squeezed(rule);
        assert!(
            rule.contains("actionGroupId: actions.id")
                || rule.contains("actionGroups: [ actions.id ]"),
            "a rule without the action group: {rule}"
        );
    }
    // A dead letter that waits in any queue's dead-letter sub-queue for 15
    // minutes (its count never 0 in the window) is one its function fails on.
    let waiting = squeezed(rules[0]);
    for needed in [
        "metricName: 'DeadletteredMessages'",
        "name: 'EntityName' operator: 'Include' values: [ '*' ]",
        "timeAggregation: 'Minimum'",
        "windowSize: 'PT15M'",
    ] {
        assert!(waiting.contains(needed), "{needed} not in {waiting}");
    }
    // The Patch Tuesday rule reads the gallery through Resource Graph as
    // its own identity: Reader on the workspace it is scoped to and on the
    // gallery's group.
    let unreleased = squeezed(rules[3]);
    assert!(unreleased.contains("identity: { type: 'SystemAssigned' }"));
    assert!(unreleased.contains("scopes: [ workspace.id ]"));
    let reader = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    let on_workspace = squeezed(block(
        &alerts,
        "resource unreleasedReadsWorkspace 'Microsoft.Authorization/roleAssignments@",
    ));
    assert!(alerts.contains(reader));
    assert!(on_workspace.contains("scope: workspace"));
    assert!(on_workspace.contains("principalId: unreleased.identity.principalId"));
    let main = squeezed(&read("infra/main.bicep"));
    assert!(main.contains("module alerts 'modules/alerts.bicep' = {"));
    assert!(main.contains(&format!(
        "module alertReadsGallery 'modules/role-assignment.bicep' = {{ name: 'alert-reads-gallery' scope: galleryGroup params: {{ roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{reader}') principalId: alerts.outputs.patchTuesdayPrincipalId }} }}"
    )));
    // The release days are the fleet view's grace, set once.
    assert!(main.contains("patchReleaseDays: patchGraceDays"));
    assert!(main.contains("patchGraceDays: patchGraceDays"));
    let app = squeezed(&read("infra/modules/functionapp.bicep"));
    assert!(app.contains("name: 'IMAGE_FACTORY_PATCH_GRACE_DAYS' value: string(patchGraceDays)"));
    let parameters = read_json(&repo().join("infra/main.parameters.json"));
    for (parameter, env) in [
        ("alertEmail", "${IMAGE_FACTORY_ALERT_EMAIL=}"),
        ("patchGraceDays", "${IMAGE_FACTORY_PATCH_GRACE_DAYS=7}"),
        ("buildNetwork", "${BUILD_NETWORK=private}"),
    ] {
        assert_eq!(
            parameters["parameters"][parameter]["value"], env,
            "{parameter}"
        );
    }
}
