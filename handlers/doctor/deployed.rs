//! The doctor's checks of the deployed app, through Resource Manager: the
//! functions the Functions host indexed against the package's, the Service
//! Bus queues against `infra/queues.json`, the build job, the gallery and its
//! image definitions, the build network, the app settings the code reads (by name: values
//! are never kept or printed), and that every image's approvers are told by
//! email and Teams. Before Resource Manager, it checks that the dashboard
//! refuses a request without sign-in (401, or a redirect to the sign-in
//! page). [`check_target`] starts from `doctor --url`'s
//! flags and the environment (settings, the identity); [`check`] makes the
//! calls.
//!
//! API versions, from the Azure REST API specifications
//! (Azure/azure-rest-api-specs):
//! - `Microsoft.Web` 2024-04-01 (`specification/web/resource-manager/Microsoft.Web/stable/2024-04-01/WebApps.json`
//!   at commit 182d3c01e745ca6f99df7eadb2990185ddd8f340): `WebApps_ListFunctions`
//!   (`GET .../sites/{name}/functions`, pageable through `nextLink`, a
//!   `FunctionEnvelopeCollection`) and `WebApps_ListApplicationSettings`
//!   (`POST .../sites/{name}/config/appsettings/list`, a `StringDictionary`);
//! - `Microsoft.ServiceBus` 2021-11-01 (stable): `Queues_ListByNamespace`;
//! - the Container Apps job and the gallery with the versions the factory
//!   already uses ([`crate::azure::jobs::APPS_API`], [`crate::azure::compute::GALLERY_API`]);
//! - `Microsoft.Network` 2024-03-01 ([`crate::azure::network::NETWORK_API`]):
//!   `VirtualNetworks_Get` (`virtualNetwork.json`) and
//!   `NetworkSecurityGroups_Get` (`networkSecurityGroup.json`), for the build
//!   network around `IMAGE_FACTORY_TEST_SUBNET_ID`: the VM subnet exists, a
//!   subnet of the network is delegated to `Microsoft.App/environments` (at
//!   least a /27), and the VM subnet's network security group admits WinRM
//!   (5986) from that subnet and nothing from the internet or the rest of
//!   the network ([`crate::domain::nsg`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use super::{Finding, RequiredSetting, missing_settings};
use crate::azure::arm::{ArmClient, ArmError};
use crate::azure::identity::Identity;
use crate::azure::network::{NETWORK_API, SubnetId};
use crate::azure::{Azure, AzureSettings};
use crate::config::{Settings, load_images_each};
use crate::domain::image::GalleryDefinition;
use crate::domain::nsg::{Decision, Flow, Prefix, decide, rules_of};
use crate::package;

/// API version of the function app calls.
pub const WEB_API: &str = "2024-04-01";
/// API version of the Service Bus queue listing.
pub const SERVICEBUS_API: &str = "2021-11-01";

/// Where the deployed app and its queues are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The function app's resource group.
    pub resource_group: String,
    /// The function app's name.
    pub app: String,
    /// The Service Bus namespace's resource group and name, if known.
    pub servicebus: Option<(String, String)>,
}

/// What the deployed app should have, from the package and the infrastructure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The functions the package holds.
    pub functions: Vec<String>,
    /// The queues `infra/queues.json` creates.
    pub queues: BTreeSet<String>,
    /// The app settings the code and the host read.
    pub settings: Vec<RequiredSetting>,
    /// The gallery image definitions the images release to, as each
    /// image's `image.toml` describes it.
    pub image_definitions: Vec<GalleryDefinition>,
    /// Every image's approvers: (image, approver, whether an email address
    /// reaches them, as `IMAGE_FACTORY_APPROVERS` here resolves them).
    pub approvers: Vec<(String, String, bool)>,
}

/// Where `doctor --url` looks for the deployed app (from its flags).
pub struct Target {
    /// The factory's base URL.
    pub url: String,
    /// The function app's name.
    pub app: Option<String>,
    /// The function app's resource group.
    pub resource_group: Option<String>,
    /// The Service Bus namespace.
    pub servicebus_namespace: Option<String>,
    /// The namespace's resource group (default: the app's).
    pub servicebus_resource_group: Option<String>,
}

/// The deployed checks of `doctor`: the app answers at its URL, then the
/// Resource Manager checks with the package under `root` as the expectation.
pub async fn check_target(root: &Path, target: Target) -> Vec<Finding> {
    let mut findings = Vec::new();
    findings.push(match reqwest::get(&target.url).await {
        Ok(answer) => Finding::ok(
            "app url",
            format!("{} answers (HTTP {})", target.url, answer.status().as_u16()),
        ),
        Err(e) => Finding::failure(
            "app url",
            format!("{} does not answer: {e}", target.url),
            "check the URL (`azd env get-value IMAGE_FACTORY_PUBLIC_URL`) and that the app is running",
        ),
    });
    findings.push(sign_in(&target.url).await);
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Ok(settings), Ok(azure)) = (Settings::from_env(), AzureSettings::from_vars(var)) else {
        return findings; // the local checks already report the settings
    };
    let (Some(azure), Some(app), Some(resource_group)) = (azure, target.app, target.resource_group)
    else {
        findings.push(Finding::failure(
            "deployed app",
            "cannot check the deployed app through Resource Manager: the subscription, the app or its resource group is not known",
            "set IMAGE_FACTORY_SUBSCRIPTION_ID, and pass --app and --resource-group (or IMAGE_FACTORY_FUNCTION_APP, IMAGE_FACTORY_FUNCTION_APP_RESOURCE_GROUP)",
        ));
        return findings;
    };
    let expected = match expected(root, &settings) {
        Ok(expected) => expected,
        Err(e) => {
            findings.push(Finding::failure(
                "deployed app",
                format!("cannot tell what the app should have: {e}"),
                "fix the local problems above first",
            ));
            return findings;
        }
    };
    let credential = match Identity::from_vars(|name| std::env::var(name).ok()).credential() {
        Ok(credential) => credential,
        Err(e) => {
            findings.push(Finding::failure(
                "deployed app",
                e,
                "sign in with `az login`",
            ));
            return findings;
        }
    };
    let client = match Azure::new(azure.clone(), credential) {
        Ok(client) => client,
        Err(e) => {
            findings.push(Finding::failure(
                "deployed app",
                e.to_string(),
                "check IMAGE_FACTORY_ARM_ENDPOINT",
            ));
            return findings;
        }
    };
    let servicebus = target.servicebus_namespace.map(|namespace| {
        (
            target
                .servicebus_resource_group
                .unwrap_or_else(|| resource_group.clone()),
            namespace,
        )
    });
    let deployment = Deployment {
        resource_group,
        app,
        servicebus,
    };
    findings.extend(check(&client.arm, &azure, &deployment, &expected).await);
    findings
}

/// What the deployed app should have: the package's functions, the infra's
/// queues, the settings the function.json files and `serve` need, and the
/// images' gallery definitions.
pub fn expected(root: &Path, settings: &Settings) -> Result<Expected, String> {
    let functions = package::check_layout(root).map_err(|e| e.to_string())?;
    let jsons = package::function_jsons(root).map_err(|e| e.to_string())?;
    // The queues themselves: their dead-letter sub-queues are not listed.
    let queues = package::InfraQueues::load(root)
        .map_err(|e| e.to_string())?
        .queues
        .into_iter()
        .collect();
    // Each image on its own: a refused one is reported by the local checks.
    let images = load_images_each(&settings.images_dir).map_err(|e| e.to_string())?;
    Ok(Expected {
        functions,
        queues,
        settings: super::required_app_settings(jsons.iter().map(|(_, j)| j)),
        image_definitions: images
            .iter()
            .filter_map(|(name, image)| image.as_ref().ok()?.settings.gallery_definition(name))
            .collect(),
        approvers: images
            .values()
            .filter_map(|i| i.as_ref().ok())
            .flat_map(|i| {
                i.settings.approval.approvers.iter().map(|a| {
                    let email = settings.approvers.identity(a).email().is_some();
                    (i.name.clone(), a.clone(), email)
                })
            })
            .collect(),
    })
}

/// What an unauthenticated request to the dashboard gets: 401 (or 403), or
/// a redirect to the sign-in page, when App Service authentication is in
/// front; the page itself when nothing is.
pub async fn sign_in(url: &str) -> Finding {
    const CHECK: &str = "sign-in";
    let dashboard = format!("{}/api/dashboard", url.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(e) => return Finding::failure(CHECK, e.to_string(), "try again"),
    };
    let answer = match client.get(&dashboard).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Finding::failure(
                CHECK,
                format!("{dashboard} does not answer: {e}"),
                "check the URL and that the app is running",
            );
        }
    };
    let status = answer.status().as_u16();
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let to_sign_in = [
        "/.auth/login",
        "login.microsoftonline.com",
        "login.windows.net",
    ]
    .iter()
    .any(|p| location.contains(p));
    match status {
        401 | 403 => Finding::ok(
            CHECK,
            format!("{dashboard} refuses a request without sign-in (HTTP {status})"),
        ),
        300..=399 if to_sign_in => Finding::ok(
            CHECK,
            format!("{dashboard} sends a request without sign-in to sign in (HTTP {status})"),
        ),
        200..=299 => Finding::failure(
            CHECK,
            format!(
                "{dashboard} answers a request without sign-in (HTTP {status}): the dashboard and the runs it shows are open to anyone"
            ),
            "put App Service authentication in front: `azd env set SIGN_IN_CLIENT_ID <client id>` and `azd provision` (docs/sign-in.md)",
        ),
        _ => Finding::warning(
            CHECK,
            format!(
                "{dashboard} answers a request without sign-in with HTTP {status}{}, neither a refusal nor a sign-in redirect",
                if location.is_empty() {
                    String::new()
                } else {
                    format!(" to {location}")
                }
            ),
            "check the app's authentication settings (docs/sign-in.md)",
        ),
    }
}

/// Whether the deployed app tells every image's approvers by email and by
/// Teams (its settings, by name), and whether email reaches each approver.
fn approver_channels(
    present: &BTreeSet<String>,
    approvers: &[(String, String, bool)],
) -> Vec<Finding> {
    const CHECK: &str = "approver channels";
    let images: BTreeSet<&str> = approvers.iter().map(|(i, _, _)| i.as_str()).collect();
    if images.is_empty() {
        return vec![Finding::info(
            CHECK,
            "no image has approvers",
            "nothing to do",
        )];
    }
    let has = |name: &str| present.contains(name);
    let email = has("IMAGE_FACTORY_EMAIL_ENDPOINT") && has("IMAGE_FACTORY_EMAIL_SENDER");
    let teams = has("IMAGE_FACTORY_TEAMS_WEBHOOK_URL");
    let listed = images.iter().copied().collect::<Vec<_>>().join(", ");
    const SET_EMAIL: &str = "`azd env set IMAGE_FACTORY_EMAIL_ENDPOINT https://<name>.communication.azure.com` and `IMAGE_FACTORY_EMAIL_SENDER DoNotReply@<domain>`, then `azd provision` (docs/deploying.md)";
    const SET_TEAMS: &str = "create the Key Vault secret teams-webhook-url, `azd env set TEAMS_NOTIFICATIONS true`, then `azd provision` (docs/deploying.md)";
    let mut findings = vec![match (email, teams) {
        (true, true) => Finding::ok(
            CHECK,
            format!("the approvers of {listed} are told by email and Teams"),
        ),
        (false, true) => Finding::warning(
            CHECK,
            format!("the approvers of {listed} are told by Teams only: email is not configured"),
            SET_EMAIL,
        ),
        (true, false) => Finding::warning(
            CHECK,
            format!("the approvers of {listed} are told by email only: Teams is not configured"),
            SET_TEAMS,
        ),
        (false, false) => Finding::failure(
            CHECK,
            format!("no approver of {listed} will be told: neither email nor Teams is configured"),
            format!("{SET_EMAIL}; or {SET_TEAMS}"),
        ),
    }];
    let unreachable: Vec<String> = approvers
        .iter()
        .filter(|(_, _, has_email)| !has_email)
        .map(|(image, approver, _)| format!("{approver} ({image})"))
        .collect();
    if email && !unreachable.is_empty() {
        findings.push(Finding::warning(
            "approver addresses",
            format!(
                "email cannot reach {}: no email address",
                unreachable.join(", ")
            ),
            "name them by email address in image.toml, or map them (`azd env set IMAGE_FACTORY_APPROVERS name=address,...`)",
        ));
    }
    findings
}

/// Runs every deployed check.
pub async fn check(
    arm: &ArmClient,
    azure: &AzureSettings,
    deployment: &Deployment,
    expected: &Expected,
) -> Vec<Finding> {
    let site = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
        azure.subscription_id, deployment.resource_group, deployment.app
    );
    let (settings, present) = app_settings(arm, &site, &deployment.app, &expected.settings).await;
    let mut findings = vec![
        functions(arm, &site, &deployment.app, &expected.functions).await,
        settings,
    ];
    if let Some(present) = &present {
        findings.extend(approver_channels(present, &expected.approvers));
    }
    findings.push(match &deployment.servicebus {
        Some((group, namespace)) => {
            queues(arm, &azure.subscription_id, group, namespace, &expected.queues).await
        }
        None => Finding::warning(
            "queues",
            "not checked: the Service Bus namespace is not known",
            "pass --servicebus-namespace (and --servicebus-resource-group when it is not the app's)",
        ),
    });
    findings.push(build_job(arm, azure).await);
    findings.extend(gallery(arm, azure, &expected.image_definitions).await);
    findings.extend(network(arm, azure).await);
    findings
}

/// The smallest subnet a workload-profiles Container Apps environment takes.
const ENVIRONMENT_SUBNET_MAX_LENGTH: u8 = 27;

/// The build network around the test VMs' subnet: both subnets and the
/// network security group between them.
async fn network(arm: &ArmClient, azure: &AzureSettings) -> Vec<Finding> {
    const CHECK: &str = "build network";
    let Some(subnet) = azure.test_vm.subnet_id.as_deref().and_then(SubnetId::parse) else {
        return vec![Finding::warning(
            CHECK,
            "not configured: test VMs get a network of their own, and the build network cannot be checked",
            "set IMAGE_FACTORY_TEST_SUBNET_ID to the build network's VM subnet (`azd env get-value IMAGE_FACTORY_TEST_SUBNET_ID`)",
        )];
    };
    let path = format!("{}?api-version={NETWORK_API}", subnet.network_id());
    let vnet = match arm.get_optional(&path).await {
        Ok(Some(vnet)) => vnet,
        Ok(None) => {
            return vec![Finding::failure(
                CHECK,
                format!(
                    "the network {} does not exist in {}",
                    subnet.network, subnet.resource_group
                ),
                "provision again (`azd provision`) or correct IMAGE_FACTORY_TEST_SUBNET_ID",
            )];
        }
        Err(e) => {
            let action = arm_action(&e);
            return vec![Finding::failure(
                CHECK,
                format!("cannot read the network {}: {e}", subnet.network),
                action,
            )];
        }
    };
    let subnets = vnet
        .pointer("/properties/subnets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let named = |name: &str| {
        subnets.iter().find(|s| {
            s.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    let prefix_of = |s: &Value| {
        s.pointer("/properties/addressPrefix")
            .and_then(Value::as_str)
            .and_then(Prefix::parse)
    };
    let mut findings = Vec::new();
    let Some(vms) = named(&subnet.subnet) else {
        findings.push(Finding::failure(
            CHECK,
            format!(
                "the network {} has no subnet {}: the test VM's NIC cannot join it",
                subnet.network, subnet.subnet
            ),
            "provision again (`azd provision`) or correct IMAGE_FACTORY_TEST_SUBNET_ID",
        ));
        return findings;
    };
    findings.push(Finding::ok(
        CHECK,
        format!(
            "the network {} has the VM subnet {}",
            subnet.network, subnet.subnet
        ),
    ));
    let delegated = subnets.iter().find(|s| {
        s.pointer("/properties/delegations")
            .and_then(Value::as_array)
            .is_some_and(|d| {
                d.iter().any(|d| {
                    d.pointer("/properties/serviceName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft.App/environments"))
                })
            })
    });
    let environment = match delegated {
        None => {
            findings.push(Finding::failure(
                "environment subnet",
                format!(
                    "no subnet of {} is delegated to Microsoft.App/environments: the build job's environment is not in the network, and packer cannot reach a private build VM",
                    subnet.network
                ),
                "provision again (`azd provision`): infra/modules/network.bicep delegates the `environment` subnet",
            ));
            None
        }
        Some(env) => {
            let name = env.get("name").and_then(Value::as_str).unwrap_or("?");
            let prefix = prefix_of(env);
            findings.push(match prefix {
                Some(p) if p.length <= ENVIRONMENT_SUBNET_MAX_LENGTH => Finding::ok(
                    "environment subnet",
                    format!(
                        "{name} ({}/{}) is delegated to Microsoft.App/environments",
                        p.address, p.length
                    ),
                ),
                Some(p) => Finding::failure(
                    "environment subnet",
                    format!(
                        "{name} is a /{}: a workload-profiles environment needs at least a /27",
                        p.length
                    ),
                    "give the environment a /27 or larger subnet (environmentSubnetPrefix); it cannot be resized once the environment exists",
                ),
                None => Finding::failure(
                    "environment subnet",
                    format!("{name} has no IPv4 address prefix this check can read"),
                    "check the subnet's address prefix",
                ),
            });
            prefix
        }
    };
    findings.push(
        match (
            environment,
            vms.pointer("/properties/networkSecurityGroup/id")
                .and_then(Value::as_str),
        ) {
            (_, None) => Finding::failure(
                "build subnet rules",
                format!(
                    "the subnet {} has no network security group: every address of the network reaches the build VMs",
                    subnet.subnet
                ),
                "provision again (`azd provision`): infra/modules/network.bicep attaches the VM subnet's network security group",
            ),
            (None, Some(_)) => Finding::warning(
                "build subnet rules",
                "not checked: the environment's subnet is not known",
                "fix the environment subnet first",
            ),
            (Some(environment), Some(nsg)) => {
                let network: Vec<Prefix> = vnet
                    .pointer("/properties/addressSpace/addressPrefixes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(Prefix::parse)
                    .collect();
                rules(arm, nsg, environment, prefix_of(vms), &network).await
            }
        },
    );
    findings
}

/// Whether the network security group `nsg` admits WinRM from the
/// environment's subnet, and nothing from the internet or from elsewhere in
/// the network.
async fn rules(
    arm: &ArmClient,
    nsg: &str,
    environment: Prefix,
    vms: Option<Prefix>,
    network: &[Prefix],
) -> Finding {
    const CHECK: &str = "build subnet rules";
    let name = nsg.rsplit('/').next().unwrap_or(nsg);
    let body = match arm.get(&format!("{nsg}?api-version={NETWORK_API}")).await {
        Ok(body) => body,
        Err(e) => {
            let action = arm_action(&e);
            return Finding::failure(CHECK, format!("cannot read {name}: {e}"), action);
        }
    };
    let rules = match rules_of(&body) {
        Ok(rules) => rules,
        Err(e) => {
            return Finding::failure(
                CHECK,
                format!("{name}: {e}"),
                "check the rules in the portal",
            );
        }
    };
    // Addresses that stand for each source: one in the environment's
    // subnet, one on the internet (a documentation address), one elsewhere
    // in the network (the VM subnet itself).
    let winrm = 5986;
    let internet = std::net::Ipv4Addr::new(203, 0, 113, 10);
    let mut refused = Vec::new();
    let mut unknown = Vec::new();
    match decide(
        &rules,
        network,
        Flow {
            source: environment.nth(4),
            port: winrm,
        },
    ) {
        Decision::Allowed(_) => {}
        Decision::Denied(by) => refused.push(format!(
            "WinRM from the environment's subnet is refused ({by}): packer cannot reach a build VM"
        )),
        Decision::Unknown(why) => unknown.push(why),
    }
    let mut probes: Vec<(String, Flow)> = [22, 80, 443, 3389, 5985, winrm]
        .into_iter()
        .map(|port| {
            (
                format!("port {port} from the internet"),
                Flow {
                    source: internet,
                    port,
                },
            )
        })
        .collect();
    if let Some(vms) = vms {
        probes.push((
            "WinRM from elsewhere in the network".into(),
            Flow {
                source: vms.nth(4),
                port: winrm,
            },
        ));
    }
    for (what, flow) in probes {
        match decide(&rules, network, flow) {
            Decision::Denied(_) => {}
            Decision::Allowed(by) => refused.push(format!("{what} is admitted ({by})")),
            Decision::Unknown(why) => unknown.push(why),
        }
    }
    if !refused.is_empty() {
        return Finding::failure(
            CHECK,
            format!("{name}: {}", refused.join("; ")),
            "provision again (`azd provision`): infra/modules/network.bicep admits WinRM from the environment's subnet and denies every other inbound connection",
        );
    }
    if !unknown.is_empty() {
        return Finding::warning(
            CHECK,
            format!("{name}: {}", unknown.join("; ")),
            "check those rules in the portal",
        );
    }
    Finding::ok(
        CHECK,
        format!(
            "{name} admits WinRM (5986) from {}/{} only and nothing from the internet",
            environment.address, environment.length
        ),
    )
}

/// What to do about a Resource Manager failure.
fn arm_action(e: &ArmError) -> String {
    match e {
        ArmError::Unauthorized { .. } | ArmError::Token(_) => {
            "sign in (`az login`) as an identity with Reader on the resource group".into()
        }
        ArmError::NotFound { .. } => {
            "check the subscription, resource group and name (`azd env get-values`)".into()
        }
        e if e.is_transient() => "try again later".into(),
        _ => "check the settings naming the resource".into(),
    }
}

async fn functions(arm: &ArmClient, site: &str, app: &str, expected: &[String]) -> Finding {
    const CHECK: &str = "deployed functions";
    let listed = match arm
        .list(&format!("{site}/functions?api-version={WEB_API}"))
        .await
    {
        Ok(listed) => listed,
        Err(e) => {
            let action = arm_action(&e);
            return Finding::failure(
                CHECK,
                format!("cannot list the functions of {app}: {e}"),
                action,
            );
        }
    };
    // `properties.name` is the function's name; the resource name is `{site}/{function}`.
    let deployed: BTreeSet<String> = listed
        .iter()
        .filter_map(|f| {
            f.pointer("/properties/name")
                .and_then(Value::as_str)
                .or_else(|| f.get("name").and_then(Value::as_str))
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        })
        .collect();
    let expected: BTreeSet<String> = expected.iter().cloned().collect();
    let missing: Vec<&String> = expected.difference(&deployed).collect();
    let extra: Vec<&String> = deployed.difference(&expected).collect();
    if deployed.is_empty() {
        return Finding::failure(
            CHECK,
            format!("{app} has no function: the host indexed nothing"),
            "deploy the package built by `image-factory package` (`azd deploy`); a package whose function folders are not at its root deploys as zero functions",
        );
    }
    if !missing.is_empty() {
        return Finding::failure(
            CHECK,
            format!(
                "{app} lacks {} of the package's functions: {}",
                missing.len(),
                join(&missing)
            ),
            "deploy the current package (`azd deploy`), then check the host's function errors in Application Insights",
        );
    }
    if !extra.is_empty() {
        return Finding::warning(
            CHECK,
            format!(
                "{app} runs functions the package does not hold: {}",
                join(&extra)
            ),
            "deploy the current package (`azd deploy`) so that the app runs this version",
        );
    }
    Finding::ok(
        CHECK,
        format!("{app} runs the package's {} functions", expected.len()),
    )
}

/// The settings check, and the names of the settings the app has (when
/// they could be listed).
async fn app_settings(
    arm: &ArmClient,
    site: &str,
    app: &str,
    required: &[RequiredSetting],
) -> (Finding, Option<BTreeSet<String>>) {
    const CHECK: &str = "app settings";
    let answer = match arm
        .post(
            &format!("{site}/config/appsettings/list?api-version={WEB_API}"),
            &json!({}),
        )
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            let action = arm_action(&e);
            return (
                Finding::failure(
                    CHECK,
                    format!("cannot list the settings of {app}: {e}"),
                    action,
                ),
                None,
            );
        }
    };
    // Only the names are kept; the values (Key Vault references, ids) are dropped here.
    let present: BTreeSet<String> = answer
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let missing = missing_settings(required, &present);
    if missing.is_empty() {
        let found = Finding::ok(
            CHECK,
            format!(
                "{app} has the {} settings the host and the handler need",
                required.len()
            ),
        );
        return (found, Some(present));
    }
    let listed: Vec<String> = missing
        .iter()
        .map(|r| format!("{} ({})", r.names.join(" or "), r.why))
        .collect();
    let found = Finding::failure(
        CHECK,
        format!("{app} lacks {}", listed.join("; ")),
        "provision again (`azd provision`): infra/modules/functionapp.bicep sets every one of them",
    );
    (found, Some(present))
}

async fn queues(
    arm: &ArmClient,
    subscription: &str,
    group: &str,
    namespace: &str,
    expected: &BTreeSet<String>,
) -> Finding {
    const CHECK: &str = "queues";
    let path = format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.ServiceBus/namespaces/{namespace}/queues?api-version={SERVICEBUS_API}"
    );
    let listed = match arm.list(&path).await {
        Ok(listed) => listed,
        Err(e) => {
            let action = arm_action(&e);
            return Finding::failure(
                CHECK,
                format!("cannot list the queues of {namespace}: {e}"),
                action,
            );
        }
    };
    let present: BTreeSet<String> = listed
        .iter()
        .filter_map(|q| q.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let missing: Vec<&String> = expected.difference(&present).collect();
    if missing.is_empty() {
        Finding::ok(
            CHECK,
            format!(
                "{namespace} has the {} queues infra/queues.json lists",
                expected.len()
            ),
        )
    } else {
        Finding::failure(
            CHECK,
            format!("{namespace} lacks the queue(s) {}", join(&missing)),
            "provision again (`azd provision`): infra/modules/servicebus.bicep creates every queue of infra/queues.json",
        )
    }
}

async fn build_job(arm: &ArmClient, azure: &AzureSettings) -> Finding {
    const CHECK: &str = "build job";
    let Some(job) = &azure.build_job else {
        return Finding::info(
            CHECK,
            "not configured: builds run on the function app's host",
            "set IMAGE_FACTORY_BUILD_JOB and IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP to build off the host",
        );
    };
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.App/jobs/{}?api-version={}",
        azure.subscription_id,
        job.resource_group,
        job.name,
        crate::azure::jobs::APPS_API
    );
    match arm.get_optional(&path).await {
        Ok(Some(_)) => Finding::ok(
            CHECK,
            format!("the job {} exists in {}", job.name, job.resource_group),
        ),
        Ok(None) => Finding::failure(
            CHECK,
            format!(
                "the job {} does not exist in {}",
                job.name, job.resource_group
            ),
            "provision again (`azd provision`) or correct IMAGE_FACTORY_BUILD_JOB",
        ),
        Err(e) => {
            let action = arm_action(&e);
            Finding::failure(
                CHECK,
                format!("cannot read the job {}: {e}", job.name),
                action,
            )
        }
    }
}

async fn gallery(
    arm: &ArmClient,
    azure: &AzureSettings,
    definitions: &[GalleryDefinition],
) -> Vec<Finding> {
    const CHECK: &str = "gallery";
    let (Some(group), Some(gallery)) = (&azure.gallery_resource_group, &azure.gallery) else {
        return vec![Finding::warning(
            CHECK,
            "not configured: releases cannot be published",
            "set IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and IMAGE_FACTORY_GALLERY",
        )];
    };
    let base = format!(
        "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Compute/galleries/{gallery}",
        azure.subscription_id
    );
    let api = crate::azure::compute::GALLERY_API;
    match arm.get_optional(&format!("{base}?api-version={api}")).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return vec![Finding::failure(
                CHECK,
                format!("the gallery {gallery} does not exist in {group}"),
                "provision again (`azd provision`) or correct IMAGE_FACTORY_GALLERY",
            )];
        }
        Err(e) => {
            let action = arm_action(&e);
            return vec![Finding::failure(
                CHECK,
                format!("cannot read the gallery {gallery}: {e}"),
                action,
            )];
        }
    }
    let mut findings = vec![Finding::ok(
        CHECK,
        format!("the gallery {gallery} exists in {group}"),
    )];
    for definition in definitions {
        let name = &definition.name;
        let check = format!("image definition {name}");
        let path = format!("{base}/images/{name}?api-version={api}");
        findings.push(match arm.get_optional(&path).await {
            Ok(Some(existing)) => {
                let differences = crate::azure::definition::fixed_differences(&existing, definition);
                let security = crate::azure::definition::security_type(&existing);
                if differences.is_empty() {
                    Finding::ok(
                        check,
                        format!(
                            "{gallery} has the definition as image.toml describes it (SecurityType {})",
                            security.as_deref().unwrap_or("unset: standard VMs only")
                        ),
                    )
                } else {
                    let lacks = if security.is_none() {
                        "; it lacks SecurityType, so a Trusted Launch build cannot publish to it"
                    } else {
                        ""
                    };
                    Finding::failure(
                        check,
                        format!(
                            "{gallery} has the definition with {}{lacks}: the build stage refuses it",
                            differences.join(", ")
                        ),
                        "Azure does not let these change: delete the definition if it has no versions (the factory makes it again from image.toml before the next build), or set another gallery_image_name",
                    )
                }
            }
            Ok(None) => Finding::info(
                check,
                format!("{gallery} has no image definition {name} yet"),
                "nothing to do: the factory creates it from image.toml before the image's next build",
            ),
            Err(e) => {
                let action = arm_action(&e);
                Finding::failure(check, format!("cannot read it: {e}"), action)
            }
        });
    }
    findings
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
