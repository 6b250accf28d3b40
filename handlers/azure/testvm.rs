//! The test stage on Azure: one resource group per run holding a NIC
//! without public address in the build network's VM subnet and a VM made
//! from the image the build produced (a Trusted Launch VM when the image's
//! gallery definition admits one); the image's HTTP smoke check run inside
//! the VM through Run Command, then its declaration checks (`[declare]`:
//! the image's PowerShell checker, through Run Command too); the group
//! deleted when the test passed, its declaration checks failed or it could
//! not start, kept when the VM failed its smoke check (the reaper reads its
//! boot diagnostics, then deletes it).
//!
//! Decisions, and why:
//!
//! - **Deterministic names.** The group is `imgf-test-<run id, sanitised>-<8
//!   hex of its SHA-256>` (at most 79 characters, under ARM's 90); inside it
//!   the names are constants (`nic-smoke`, `vm-smoke`, `osdisk-smoke`, and
//!   `vnet-smoke` without a shared subnet). A redelivered stage therefore
//!   addresses the very same resources: the group and NIC are PUT again (a
//!   PUT of the same body changes nothing), and the VM is read first and
//!   reused when it exists, so no retry ever creates a second VM or disk.
//! - **The network.** With `IMAGE_FACTORY_TEST_SUBNET_ID` (the deployment
//!   sets it) the NIC joins the build network's VM subnet, whose network
//!   security group admits nothing but WinRM from the build job; without it
//!   the group gets an isolated network of its own (`vnet-smoke`). Either
//!   way the VM has no public address: the function reaches it only through
//!   Run Command.
//! - **Tags.** `image-factory: test` marks the group as the factory's,
//!   `image-factory-run` names the run, `image-factory-created` (RFC 3339) is
//!   when the stage's current attempt started: the group, the NIC, the VM and
//!   its OS disk carry them (the disk, made with the VM, takes no tags then:
//!   they are merged onto it through the tags API right after), so the
//!   reaper finds every one of them ([`crate::domain::reaper`]).
//! - **No inbound port.** The smoke check (`[smoke.http]`: URL, status, text)
//!   runs inside the VM: `POST .../virtualMachines/{vm}/runCommand` with
//!   `RunPowerShellScript`, a script doing `Invoke-WebRequest` and printing
//!   `IMGF-STATUS=`, `IMGF-CONTAINS=` and `IMGF-ERROR=` lines that are read
//!   back from the `ComponentStatus/StdOut/succeeded` item. The check is
//!   repeated every 30 s until the image's smoke timeout; the last answer is
//!   kept for the failure reason.
//! - **Trusted Launch.** The VM's security type follows the image's gallery
//!   definition (`[gallery] security_type`): a definition that admits
//!   Trusted Launch VMs (`TrustedLaunchSupported`, `TrustedLaunch`,
//!   `TrustedLaunchAndConfidentialVmSupported`) gets one
//!   (`securityProfile.securityType = TrustedLaunch`, secure boot and vTPM
//!   on), so the test boots the image as its consumers will; `Standard` and
//!   `ConfidentialVMSupported`, and a managed image, get a standard VM. A
//!   definition that admits only confidential VMs is refused before anything
//!   is created: the test VM is never confidential.
//! - **Declaration checks.** After the smoke check passed, the image's
//!   checker (`[declare] checker`, `Test-ImageDeclaration.ps1`) runs through
//!   Run Command with the declaration as its parameters, at most
//!   [`DECLARATION_CHECKS_PER_COMMAND`] checks a command: Azure returns only
//!   the last 4,096 bytes of a command's output. Its JSON line is read into
//!   one result per declared check (`domain::declaration`); a command the
//!   VM answers with a conflict (another command running) is tried again.
//! - **Boot diagnostics** are on (managed storage): a VM that fails its check
//!   keeps its group, and the reaper saves its serial log and screenshot
//!   with the run before it deletes the group.
//! - **The password.** Windows needs an administrator password; a random one
//!   is made per attempt, sent only in the VM's PUT body, and scrubbed from
//!   every message this module returns. Nobody logs in: Run Command goes
//!   through the VM agent.
//! - **Deletion waits.** The group's DELETE (VMs force-deleted) is followed
//!   to its end so that the recorded outcome ("deleted") is true; a test takes
//!   minutes, deletion a few more, well inside the stage's time. If the
//!   deletion fails or the process dies first, the reaper deletes the group
//!   once its run has ended.
//!
//! Shapes come from the Azure REST API specifications (each contract test
//! names its example); they are verified against that contract, not live.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use async_trait::async_trait;

use super::arm::{ArmClient, ArmError, provisioning_state};
use super::compute::COMPUTE_API;
use super::network::NETWORK_API;
use super::reaper::RESOURCES_API;
use crate::domain::declaration::{
    CheckResult, CheckerKind, DeclarationRecord, DeclareSettings, Parameter, read_output,
};
use crate::domain::image::{GalleryDefinition, SecurityType, SmokeTest};
use crate::domain::reaper::{CREATED_TAG, FACTORY_TAG, RUN_TAG};
use crate::domain::run::Run;
use crate::ports::PortError;
use crate::ports::test_env::{SmokeOrder, SmokeReport, TestEnvironment};

/// Every test group's name starts so.
pub const GROUP_PREFIX: &str = "imgf-test-";
/// The value of the factory tag on what the test stage creates.
pub const ROLE: &str = "test";
/// The test VM's name inside its group.
pub const VM_NAME: &str = "vm-smoke";
/// Pause between two smoke checks (and between two tries of a
/// declaration command the VM was too busy for).
pub const SMOKE_PAUSE: Duration = Duration::from_secs(30);
/// Checks one declaration command asks for: Azure returns only the last
/// 4,096 bytes of a Run Command's output, and a check's line of JSON takes
/// up to a few hundred.
pub const DECLARATION_CHECKS_PER_COMMAND: usize = 8;
/// Tries of one declaration command the VM answers with a conflict.
const DECLARATION_TRIES: u32 = 3;

const VNET_NAME: &str = "vnet-smoke";
const SUBNET_NAME: &str = "default";
const NIC_NAME: &str = "nic-smoke";
const OS_DISK_NAME: &str = "osdisk-smoke";
/// Windows computer names have at most 15 characters.
const COMPUTER_NAME: &str = "imgf-smoke";
const ADMIN_USERNAME: &str = "imgfadmin";

/// The resource group of `run_id`'s test: the same for every attempt.
pub fn group_name(run_id: &str) -> String {
    let digest = Sha256::digest(run_id.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut slug = String::new();
    for c in run_id.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && slug.ends_with('-')) {
            slug.push(c);
        }
        if slug.len() == 60 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        format!("{GROUP_PREFIX}{short}")
    } else {
        format!("{GROUP_PREFIX}{slug}-{short}")
    }
}

/// The HTTP check run inside the VM, from the image's `[smoke.http]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeCheck {
    /// The URL, as the VM sees it (`http://localhost/`).
    pub url: String,
    /// The status it must answer.
    pub status: u16,
    /// Text the body must contain, if any.
    pub contains: Option<String>,
    /// How long to keep trying.
    pub timeout: Duration,
}

impl SmokeCheck {
    /// A check, refused when the URL is not a plain http(s) URL (it is
    /// written into a PowerShell script).
    pub fn new(
        url: &str,
        status: u16,
        contains: Option<&str>,
        timeout: Duration,
    ) -> Result<SmokeCheck, TestVmError> {
        let plain = (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok()
            && url
                .chars()
                .all(|c| c.is_ascii_graphic() && !QUOTES.contains(&c) && c != '`');
        if !plain {
            return Err(TestVmError::BadCheck(url.to_string()));
        }
        Ok(SmokeCheck {
            url: url.to_string(),
            status,
            contains: contains.map(str::to_string),
            timeout,
        })
    }

    /// The PowerShell lines Run Command executes.
    pub fn script(&self) -> Vec<String> {
        let contains = quote(self.contains.as_deref().unwrap_or_default());
        vec![
            "$ProgressPreference = 'SilentlyContinue'".into(),
            "$status = 0; $found = $false".into(),
            "try {".into(),
            format!(
                "  $response = Invoke-WebRequest -Uri {} -UseBasicParsing -TimeoutSec 30",
                quote(&self.url)
            ),
            "  $status = [int]$response.StatusCode".into(),
            format!("  $found = ([string]$response.Content).Contains({contains})"),
            "} catch {".into(),
            "  if ($_.Exception.Response) { $status = [int]$_.Exception.Response.StatusCode }"
                .into(),
            "  Write-Output ('IMGF-ERROR=' + $_.Exception.Message)".into(),
            "}".into(),
            "Write-Output ('IMGF-STATUS=' + $status)".into(),
            "Write-Output ('IMGF-CONTAINS=' + $found)".into(),
        ]
    }

    /// Reads a Run Command answer: `Ok(status)` when the check passed, else
    /// what answered, in words.
    pub fn verdict(&self, answer: &Value) -> Result<u16, String> {
        let (stdout, stderr) = run_command_output(answer);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(name).map(str::trim))
        };
        let status = field("IMGF-STATUS=").and_then(|s| s.parse::<u16>().ok());
        let found = field("IMGF-CONTAINS=").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        let error = field("IMGF-ERROR=").unwrap_or_default();
        let why = match status {
            Some(s) if s == self.status && (found || self.contains.is_none()) => return Ok(s),
            Some(s) if s == self.status => format!(
                "answered {s} without {:?} in the body",
                self.contains.as_deref().unwrap_or_default()
            ),
            Some(0) => format!("no answer ({error})"),
            Some(s) => format!("answered {s}, expected {}", self.status),
            None => format!("no result from the script: {}", stdout.trim()),
        };
        let stderr = stderr.trim();
        Err(if stderr.is_empty() {
            why
        } else {
            format!("{why}; stderr: {stderr}")
        })
    }
}

const QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201a}', '\u{201b}'];

/// A PowerShell single-quoted string: every kind of single quote doubled.
fn quote(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        if QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The StdOut and StdErr messages of a Run Command answer: `{"value": [...]}`
/// (the RunCommand example's body) or the same list under
/// `properties.output` (the shape of an `Azure-AsyncOperation` status).
fn run_command_output(answer: &Value) -> (String, String) {
    let items = answer
        .get("value")
        .or_else(|| answer.pointer("/properties/output/value"))
        .and_then(Value::as_array);
    let mut stdout = String::new();
    let mut stderr = String::new();
    for item in items.into_iter().flatten() {
        let code = item.get("code").and_then(Value::as_str).unwrap_or_default();
        let message = item
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if code.contains("StdOut") {
            stdout.push_str(message);
        } else if code.contains("StdErr") {
            stderr.push_str(message);
        }
    }
    (stdout, stderr)
}

/// The security type of the test VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmSecurity {
    /// A standard VM (no security profile).
    Standard,
    /// A Trusted Launch VM: secure boot and vTPM on.
    TrustedLaunch,
}

/// The test VM's security type for an image made into `image_id`, whose
/// gallery definition is `definition` (`None`: the image publishes to no
/// gallery): Trusted Launch when the definition admits it, standard
/// otherwise; an error for a definition that admits only confidential VMs.
pub fn vm_security(
    image_id: &str,
    definition: Option<&GalleryDefinition>,
) -> Result<VmSecurity, TestVmError> {
    let in_gallery = image_id
        .to_ascii_lowercase()
        .contains("/providers/microsoft.compute/galleries/");
    let Some(definition) = definition.filter(|_| in_gallery) else {
        return Ok(VmSecurity::Standard);
    };
    match definition.settings.security_type {
        SecurityType::TrustedLaunchSupported
        | SecurityType::TrustedLaunch
        | SecurityType::TrustedLaunchAndConfidentialVmSupported => Ok(VmSecurity::TrustedLaunch),
        SecurityType::Standard | SecurityType::ConfidentialVmSupported => Ok(VmSecurity::Standard),
        SecurityType::ConfidentialVm => Err(TestVmError::Confidential {
            definition: definition.name.clone(),
        }),
    }
}

/// The image's declaration checks, as the VM runs them.
#[derive(Clone, Debug)]
pub struct DeclarationPlan {
    /// The checker's path in the image's folder.
    pub checker: String,
    /// The checker's lines.
    pub script: Vec<String>,
    /// The parameters of each Run Command.
    pub batches: Vec<Vec<Parameter>>,
}

impl DeclarationPlan {
    /// The plan of `declare`, whose checker's text is `script`; refused for
    /// a checker that is not PowerShell.
    pub fn new(declare: &DeclareSettings, script: &str) -> Result<DeclarationPlan, TestVmError> {
        if CheckerKind::of(&declare.checker) != Some(CheckerKind::PowerShell) {
            return Err(TestVmError::BadChecker(declare.checker.clone()));
        }
        Ok(DeclarationPlan {
            checker: declare.checker.clone(),
            script: script
                .trim_start_matches('\u{feff}')
                .lines()
                .map(str::to_string)
                .collect(),
            batches: declare.batches(DECLARATION_CHECKS_PER_COMMAND),
        })
    }
}

/// What the test needs to know.
#[derive(Clone, Debug)]
pub struct TestPlan {
    /// The subscription the group is created in.
    pub subscription_id: String,
    /// The run (names the group).
    pub run_id: String,
    /// The region.
    pub location: String,
    /// The VM size.
    pub vm_size: String,
    /// The gallery image version id or managed image id the VM is made from.
    pub image_id: String,
    /// The creation tag's time: when the stage's current attempt started.
    pub created: DateTime<Utc>,
    /// The subnet the NIC joins (the build network's VM subnet); `None`:
    /// an isolated network of its own in the group.
    pub subnet_id: Option<String>,
    /// The VM's security type.
    pub security: VmSecurity,
    /// The check.
    pub check: SmokeCheck,
    /// The declaration checks run after it, for an image with `[declare]`.
    pub declaration: Option<DeclarationPlan>,
}

/// Why the test did not pass. Messages never contain the VM's password.
#[derive(Debug, thiserror::Error)]
pub enum TestVmError {
    /// Resource Manager refused or failed a step.
    #[error("{step}: {message}")]
    Arm {
        /// What was being done.
        step: &'static str,
        /// The client's error, in words.
        message: String,
        /// Whether trying again later may succeed.
        transient: bool,
    },
    /// The VM exists from an earlier attempt but did not provision.
    #[error("the test VM {vm} is in provisioning state {state}")]
    VmFailed {
        /// The VM.
        vm: String,
        /// Its state.
        state: String,
    },
    /// The check never passed.
    #[error(
        "smoke test GET {url} in the test VM failed for {seconds} s after {tries} tries: {last}"
    )]
    NoAnswer {
        /// The URL.
        url: String,
        /// The smoke timeout.
        seconds: u64,
        /// Checks made.
        tries: u32,
        /// The last answer.
        last: String,
    },
    /// The configured URL cannot be put in the script.
    #[error(
        "the smoke test URL {0:?} cannot be checked in the VM: it must be a plain http(s) URL without quotes"
    )]
    BadCheck(String),
    /// The image's definition admits only confidential VMs.
    #[error(
        "the gallery image definition {definition} admits only confidential VMs (security_type = \"ConfidentialVM\"); the test stage makes Trusted Launch or standard VMs: use TrustedLaunchAndConfidentialVmSupported or ConfidentialVMSupported"
    )]
    Confidential {
        /// The definition's name.
        definition: String,
    },
    /// The image's checker cannot run through Run Command.
    #[error(
        "[declare] checker {0} is not a PowerShell script (.ps1): the Azure test VM runs the checker through Run Command's RunPowerShellScript"
    )]
    BadChecker(String),
}

impl TestVmError {
    /// True when trying again later may succeed (throttling, server errors, transport).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TestVmError::Arm {
                transient: true,
                ..
            }
        )
    }
}

/// What happened to the test group at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Deleted by this call.
    Deleted,
    /// It was already gone.
    AlreadyGone,
    /// Kept: its VM failed the check; the reaper saves the VM's boot
    /// diagnostics, then deletes the group.
    Kept,
    /// The deletion failed; the reaper will delete the group.
    Failed(String),
}

/// A passed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passed {
    /// The status answered.
    pub status: u16,
    /// On which try.
    pub tries: u32,
    /// What the declaration checker reported, for a plan with one.
    pub declared: Option<Declared>,
}

/// What the declaration commands brought back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// Every check reported, all commands together.
    pub checks: Vec<CheckResult>,
    /// Why a command gave no result, if one did not.
    pub error: Option<String>,
    /// Run Commands made.
    pub commands: usize,
}

/// Everything one test did.
#[derive(Debug)]
pub struct TestReport {
    /// The resource group.
    pub group: String,
    /// The VM's name.
    pub vm: String,
    /// True when the VM existed from an earlier attempt and was reused.
    pub vm_reused: bool,
    /// The check's result.
    pub result: Result<Passed, TestVmError>,
    /// The group's deletion.
    pub cleanup: Cleanup,
}

/// The administrator password of one attempt's VM; never shown.
struct AdminPassword(String);

impl AdminPassword {
    /// 24 random characters (about 140 bits) plus one of each class Azure
    /// requires (upper, lower, digit, special).
    fn generate() -> AdminPassword {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let bytes: [u8; 24] = rand::random();
        let mut text: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        text.push_str("-Qz7");
        AdminPassword(text)
    }

    /// `text` with the password replaced.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "<redacted>")
    }
}

impl std::fmt::Debug for AdminPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn group_path(subscription_id: &str, group: &str) -> String {
    format!("/subscriptions/{subscription_id}/resourceGroups/{group}")
}

fn tags(plan: &TestPlan) -> Value {
    let mut tags = Map::new();
    tags.insert(FACTORY_TAG.into(), ROLE.into());
    tags.insert(RUN_TAG.into(), plan.run_id.clone().into());
    tags.insert(
        CREATED_TAG.into(),
        plan.created
            .to_rfc3339_opts(SecondsFormat::Secs, true)
            .into(),
    );
    Value::Object(tags)
}

/// Runs the test of `plan`: creates (or finds) the group, NIC and VM,
/// checks the URL inside the VM until it passes or time runs out, then
/// deletes the group, unless the VM failed its check: the group is then kept
/// for the VM's boot diagnostics (the reaper deletes it).
pub async fn run(arm: &ArmClient, plan: &TestPlan) -> TestReport {
    let group = group_name(&plan.run_id);
    let password = AdminPassword::generate();
    let mut vm_reused = false;
    let result = provision_and_check(arm, plan, &group, &password, &mut vm_reused).await;
    let keep = matches!(
        result,
        Err(TestVmError::NoAnswer { .. } | TestVmError::VmFailed { .. })
    );
    let cleanup = if keep {
        Cleanup::Kept
    } else {
        match delete_group(arm, &plan.subscription_id, &group).await {
            Cleanup::Failed(e) => Cleanup::Failed(password.scrub(&e)),
            other => other,
        }
    };
    tracing::info!(
        %group,
        passed = result.is_ok(),
        ?cleanup,
        "test VM checked and its resource group cleaned up"
    );
    TestReport {
        group,
        vm: VM_NAME.to_string(),
        vm_reused,
        result,
        cleanup,
    }
}

async fn provision_and_check(
    arm: &ArmClient,
    plan: &TestPlan,
    group: &str,
    password: &AdminPassword,
    vm_reused: &mut bool,
) -> Result<Passed, TestVmError> {
    let failed = |step: &'static str| {
        move |e: ArmError| TestVmError::Arm {
            step,
            transient: e.is_transient(),
            message: password.scrub(&e.to_string()),
        }
    };
    let base = group_path(&plan.subscription_id, group);
    let tags = tags(plan);
    let location = plan.location.as_str();

    // ResourceGroups_CreateOrUpdate.
    arm.put(
        &format!("{base}?api-version={RESOURCES_API}"),
        &json!({ "location": location, "tags": tags }),
    )
    .await
    .map_err(failed("creating the test resource group"))?;

    // The build network's VM subnet, or VirtualNetworks_CreateOrUpdate: an
    // isolated network of the group's own, one subnet.
    let subnet_id = match &plan.subnet_id {
        Some(subnet) => subnet.clone(),
        None => {
            let vnet_id = format!("{base}/providers/Microsoft.Network/virtualNetworks/{VNET_NAME}");
            arm.put(
                &format!("{vnet_id}?api-version={NETWORK_API}"),
                &json!({
                    "location": location,
                    "tags": tags,
                    "properties": {
                        "addressSpace": { "addressPrefixes": ["10.250.0.0/24"] },
                        "subnets": [{ "name": SUBNET_NAME, "properties": { "addressPrefix": "10.250.0.0/27" } }]
                    }
                }),
            )
            .await
            .map_err(failed("creating the test network"))?;
            format!("{vnet_id}/subnets/{SUBNET_NAME}")
        }
    };

    // NetworkInterfaces_CreateOrUpdate: a private address only.
    let nic_id = format!("{base}/providers/Microsoft.Network/networkInterfaces/{NIC_NAME}");
    arm.put(
        &format!("{nic_id}?api-version={NETWORK_API}"),
        &json!({
            "location": location,
            "tags": tags,
            "properties": {
                "ipConfigurations": [{
                    "name": "ipconfig1",
                    "properties": {
                        "privateIPAllocationMethod": "Dynamic",
                        "subnet": { "id": subnet_id }
                    }
                }]
            }
        }),
    )
    .await
    .map_err(failed("creating the test VM's network interface"))?;

    // VirtualMachines_Get, then VirtualMachines_CreateOrUpdate only when missing.
    let vm_id = format!("{base}/providers/Microsoft.Compute/virtualMachines/{VM_NAME}");
    let vm_path = format!("{vm_id}?api-version={COMPUTE_API}");
    match arm
        .get_optional(&vm_path)
        .await
        .map_err(failed("reading the test VM"))?
    {
        Some(existing) => match provisioning_state(&existing).as_deref() {
            Some(state @ ("Failed" | "Canceled")) => {
                return Err(TestVmError::VmFailed {
                    vm: VM_NAME.into(),
                    state: state.into(),
                });
            }
            _ => *vm_reused = true,
        },
        None => {
            let mut body = json!({
                "location": location,
                "tags": tags,
                "properties": {
                    "hardwareProfile": { "vmSize": plan.vm_size },
                    "storageProfile": {
                        "imageReference": { "id": plan.image_id },
                        "osDisk": {
                            "name": OS_DISK_NAME,
                            "caching": "ReadWrite",
                            "createOption": "FromImage",
                            "deleteOption": "Delete",
                            "managedDisk": { "storageAccountType": "StandardSSD_LRS" }
                        }
                    },
                    "osProfile": {
                        "computerName": COMPUTER_NAME,
                        "adminUsername": ADMIN_USERNAME,
                        "adminPassword": password.0
                    },
                    "networkProfile": {
                        "networkInterfaces": [{ "id": nic_id, "properties": { "primary": true } }]
                    },
                    // Managed storage: a VM that fails its check shows its
                    // serial log and screenshot (the reaper saves them).
                    "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } }
                }
            });
            if plan.security == VmSecurity::TrustedLaunch {
                // As the image's consumers boot it: secure boot and vTPM on.
                body["properties"]["securityProfile"] = json!({
                    "securityType": "TrustedLaunch",
                    "uefiSettings": { "secureBootEnabled": true, "vTpmEnabled": true }
                });
            }
            arm.put(&vm_path, &body)
                .await
                .map_err(failed("creating the test VM"))?;
        }
    }

    // Tags_UpdateAtScope: the OS disk, made with the VM, carries no tags of
    // its own; merged on every attempt (the same tags change nothing).
    let disk_id = format!("{base}/providers/Microsoft.Compute/disks/{OS_DISK_NAME}");
    arm.patch(
        &format!(
            "{disk_id}/providers/Microsoft.Resources/tags/default?api-version={RESOURCES_API}"
        ),
        &json!({ "operation": "Merge", "properties": { "tags": tags } }),
    )
    .await
    .map_err(failed("tagging the test VM's OS disk"))?;

    // VirtualMachines_RunCommand until the check passes or time runs out.
    let check = &plan.check;
    let command_path = format!("{vm_id}/runCommand?api-version={COMPUTE_API}");
    let command = json!({ "commandId": "RunPowerShellScript", "script": check.script() });
    let max_tries = u32::try_from((check.timeout.as_secs() / SMOKE_PAUSE.as_secs()).max(1))
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    // A deadline past what the clock can count is never reached (the tries still end).
    let deadline = tokio::time::Instant::now().checked_add(check.timeout);
    let mut last = String::from("not checked");
    let mut tries = 0;
    while tries < max_tries {
        tries += 1;
        match arm.post(&command_path, &command).await {
            Ok(answer) => match check.verdict(&answer) {
                Ok(status) => {
                    let declared = match &plan.declaration {
                        Some(declaration) => Some(
                            declare(arm, &command_path, declaration, password)
                                .await
                                .map_err(failed("running the declaration checks in the test VM"))?,
                        ),
                        None => None,
                    };
                    return Ok(Passed {
                        status,
                        tries,
                        declared,
                    });
                }
                Err(why) => last = why,
            },
            // The VM or its agent is not ready (busy, extension failed): try again.
            Err(e @ (ArmError::Conflict { .. } | ArmError::OperationFailed { .. })) => {
                last = format!("no answer (Run Command: {e})");
            }
            Err(e) => return Err(failed("running the smoke check in the test VM")(e)),
        }
        if tries >= max_tries
            || deadline.is_some_and(|d| tokio::time::Instant::now() + SMOKE_PAUSE > d)
        {
            break;
        }
        arm.wait(SMOKE_PAUSE).await;
    }
    let mut end = last.len().min(500);
    while !last.is_char_boundary(end) {
        end -= 1;
    }
    Err(TestVmError::NoAnswer {
        url: check.url.clone(),
        seconds: check.timeout.as_secs(),
        tries,
        last: password.scrub(&last[..end]),
    })
}

/// Runs the declaration's commands (VirtualMachines_RunCommand with the
/// checker's lines and one batch of parameters each), reading each
/// command's JSON line. A command the VM is too busy for is tried again
/// ([`DECLARATION_TRIES`] times, [`SMOKE_PAUSE`] apart); an output without a
/// result is recorded as the command's error. `Err` only when Resource
/// Manager refused otherwise.
async fn declare(
    arm: &ArmClient,
    command_path: &str,
    plan: &DeclarationPlan,
    password: &AdminPassword,
) -> Result<Declared, ArmError> {
    let mut declared = Declared {
        checks: Vec::new(),
        error: None,
        commands: 0,
    };
    let mut errors = Vec::new();
    for batch in &plan.batches {
        let parameters: Vec<Value> = batch
            .iter()
            .map(|p| json!({ "name": p.name, "value": p.value }))
            .collect();
        let command = json!({
            "commandId": "RunPowerShellScript",
            "script": plan.script,
            "parameters": parameters
        });
        let mut tries = 0;
        let answer = loop {
            tries += 1;
            declared.commands += 1;
            match arm.post(command_path, &command).await {
                Ok(answer) => break Ok(answer),
                Err(e @ (ArmError::Conflict { .. } | ArmError::OperationFailed { .. }))
                    if tries < DECLARATION_TRIES =>
                {
                    tracing::info!(error = %e, "the VM is busy: the declaration command is tried again");
                    arm.wait(SMOKE_PAUSE).await;
                }
                Err(e @ (ArmError::Conflict { .. } | ArmError::OperationFailed { .. })) => {
                    break Err(format!("Run Command failed {tries} times: {e}"));
                }
                Err(e) => return Err(e),
            }
        };
        let read = answer.and_then(|answer| {
            let (stdout, stderr) = run_command_output(&answer);
            read_output(&password.scrub(&stdout)).map_err(|e| {
                let stderr = password.scrub(stderr.trim());
                if stderr.is_empty() {
                    e
                } else {
                    format!("{e}; stderr: {}", crate::domain::truncate(&stderr, 300))
                }
            })
        });
        match read {
            Ok(checks) => declared.checks.extend(checks),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        declared.error = Some(errors.join("; "));
    }
    Ok(declared)
}

/// Deletes a test group and waits until it is gone (VMs force-deleted: a
/// test VM holds nothing worth a graceful shutdown).
async fn delete_group(arm: &ArmClient, subscription_id: &str, group: &str) -> Cleanup {
    let path = format!(
        "{}?forceDeletionTypes=Microsoft.Compute/virtualMachines&api-version={RESOURCES_API}",
        group_path(subscription_id, group)
    );
    match arm.delete(&path).await {
        Ok(true) => Cleanup::Deleted,
        Ok(false) => Cleanup::AlreadyGone,
        Err(e) => Cleanup::Failed(e.to_string()),
    }
}

/// The test environment on Azure: the smoke test in a temporary VM made
/// from the built image (the module's description says how).
#[derive(Clone, Debug)]
pub struct AzureTestVms {
    /// The Resource Manager client.
    pub arm: ArmClient,
    /// The subscription the per-run groups are created in.
    pub subscription_id: String,
    /// Region, VM size and subnet.
    pub settings: super::TestVmSettings,
}

#[async_trait]
impl TestEnvironment for AzureTestVms {
    /// A VM is made only for a build that produced an image in Azure, and
    /// only an HTTP check runs inside it.
    fn accepts(&self, order: &SmokeOrder<'_>) -> bool {
        order.built_image.is_some() && matches!(order.image.settings.smoke, SmokeTest::Http { .. })
    }

    async fn smoke(&self, order: &SmokeOrder<'_>) -> Result<SmokeReport, PortError> {
        let SmokeTest::Http {
            url,
            status,
            contains,
            timeout_seconds,
        } = &order.image.settings.smoke
        else {
            return Err(PortError::permanent(
                "the Azure test stage needs a [smoke.http] check",
            ));
        };
        let Some(image_id) = order.built_image.as_deref() else {
            return Err(PortError::permanent(
                "the build produced no image in Azure to make a test VM from",
            ));
        };
        let settings = &self.settings;
        let Some(location) = settings.location.clone() else {
            return Err(PortError::permanent(format!(
                "the build produced {image_id} but IMAGE_FACTORY_TEST_LOCATION is not set: the test VM needs a region"
            )));
        };
        let permanent = |e: TestVmError| PortError::permanent(e.to_string());
        let check = SmokeCheck::new(
            url,
            *status,
            contains.as_deref(),
            Duration::from_secs(*timeout_seconds),
        )
        .map_err(permanent)?;
        let definition = order.image.settings.gallery_definition(&order.image.name);
        let security = vm_security(image_id, definition.as_ref()).map_err(permanent)?;
        let declare = order.image.settings.declare.as_ref();
        let declaration = match declare {
            Some(declare) => {
                let path = order.image.dir.join(&declare.checker);
                let script = std::fs::read_to_string(&path).map_err(|e| {
                    PortError::permanent(format!(
                        "[declare] checker {} cannot be read from the image's folder: {e}",
                        declare.checker
                    ))
                })?;
                Some(DeclarationPlan::new(declare, &script).map_err(permanent)?)
            }
            None => None,
        };
        let plan = TestPlan {
            subscription_id: self.subscription_id.clone(),
            run_id: order.run.id.to_string(),
            location: location.clone(),
            vm_size: settings.vm_size.clone(),
            image_id: image_id.to_string(),
            created: order.started_at,
            subnet_id: settings.subnet_id.clone(),
            security,
            check,
            declaration,
        };
        let report = run(&self.arm, &plan).await;
        let group = &report.group;
        let cleanup = match &report.cleanup {
            Cleanup::Deleted => format!("resource group {group} deleted"),
            Cleanup::AlreadyGone => format!("resource group {group} was already gone"),
            Cleanup::Kept => format!(
                "resource group {group} kept for the VM's boot diagnostics; the reaper saves them with the run, then deletes the group"
            ),
            Cleanup::Failed(e) => format!(
                "resource group {group} not deleted ({e}); the reaper deletes it once the run has ended"
            ),
        };
        let vm = format!(
            "test VM {} ({}, {}, {location}) in resource group {group} from {image_id}{}",
            report.vm,
            plan.vm_size,
            match plan.security {
                VmSecurity::TrustedLaunch => "Trusted Launch: secure boot and vTPM on",
                VmSecurity::Standard => "standard security",
            },
            if report.vm_reused {
                ", reused from an earlier attempt"
            } else {
                ""
            }
        );
        match report.result {
            Ok(passed) => {
                let mut checks = vec![
                    vm,
                    format!(
                        "smoke test GET {url} inside the VM (Run Command) answered {}{} on try {}",
                        passed.status,
                        contains
                            .as_deref()
                            .map(|c| format!(" with {c:?}"))
                            .unwrap_or_default(),
                        passed.tries
                    ),
                ];
                let declaration = match (declare, passed.declared) {
                    (Some(declare), Some(declared)) => {
                        let record = DeclarationRecord::judge(
                            declare,
                            format!("{} through Run Command in {VM_NAME}", declare.checker),
                            declared.checks,
                            declared.error,
                        );
                        checks.push(format!(
                            "declaration checks inside the VM ({} Run Command(s)): {}",
                            declared.commands,
                            record.summary()
                        ));
                        Some(record)
                    }
                    _ => None,
                };
                checks.push(cleanup);
                Ok(SmokeReport {
                    checks,
                    failure: None,
                    declaration,
                })
            }
            Err(e) if e.is_transient() => Err(PortError::transient(format!("{e}; {cleanup}"))),
            Err(e) => Ok(SmokeReport {
                checks: Vec::new(),
                failure: Some(format!("{e}; {vm}; {cleanup}")),
                declaration: None,
            }),
        }
    }

    /// Deletes the run's test group (the same for every attempt), waiting
    /// until it is gone. A test attempt still under way fails on the
    /// missing group and its result is not recorded; one that put the group
    /// again afterwards deletes it at its end, and the reaper deletes what a
    /// crash left once the run has ended.
    async fn free(&self, run: &Run) -> Result<Option<String>, PortError> {
        let group = group_name(&run.id);
        match delete_group(&self.arm, &self.subscription_id, &group).await {
            Cleanup::Deleted => Ok(Some(format!("test resource group {group} deleted"))),
            Cleanup::AlreadyGone => Ok(Some(format!(
                "test resource group {group} was already gone"
            ))),
            Cleanup::Failed(e) => Err(PortError::transient(format!(
                "test resource group {group} not deleted: {e}"
            ))),
            Cleanup::Kept => Err(PortError::transient(format!(
                "test resource group {group} was kept"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_name_is_deterministic_short_and_distinct_per_run() {
        let a = group_name("push-base-w2022-datacenter-c0ffee");
        assert_eq!(a, group_name("push-base-w2022-datacenter-c0ffee"));
        assert!(
            a.starts_with("imgf-test-push-base-w2022-datacenter-c0ffee-"),
            "{a}"
        );
        assert_ne!(a, group_name("push-base-w2022-datacenter-c0ffef"));
        let long = group_name(&format!("a//b {}/Ünïcode run", "x".repeat(300)));
        assert!(long.len() <= 90, "{long}");
        for name in [&a, &long, &group_name("///")] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
            assert!(!name.ends_with('.') && !name.contains("--"), "{name}");
        }
    }

    #[test]
    fn a_password_meets_azure_complexity_differs_each_time_and_is_never_shown() {
        let one = AdminPassword::generate();
        let two = AdminPassword::generate();
        assert_ne!(one.0, two.0);
        assert!(one.0.len() >= 12 && one.0.len() <= 123);
        assert!(one.0.chars().any(|c| c.is_ascii_uppercase()));
        assert!(one.0.chars().any(|c| c.is_ascii_lowercase()));
        assert!(one.0.chars().any(|c| c.is_ascii_digit()));
        assert!(one.0.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_eq!(format!("{one:?}"), "<redacted>");
        assert_eq!(one.scrub(&format!("x {} y", one.0)), "x <redacted> y");
    }

    #[test]
    fn the_script_quotes_what_it_embeds_and_refuses_urls_that_would_break_it() {
        let check = SmokeCheck::new(
            "http://localhost/",
            200,
            Some("it's IIS"),
            Duration::from_secs(60),
        )
        .expect("a plain URL");
        let script = check.script().join("\n");
        assert!(script.contains("-Uri 'http://localhost/'"), "{script}");
        assert!(script.contains(".Contains('it''s IIS')"), "{script}");
        for bad in [
            "ftp://x/",
            "http://x/'; Remove-Item C:\\",
            "http://x/\u{2019}",
            "http://a b/",
            "localhost",
        ] {
            assert!(
                matches!(
                    SmokeCheck::new(bad, 200, None, Duration::from_secs(1)),
                    Err(TestVmError::BadCheck(_))
                ),
                "{bad}"
            );
        }
    }

    fn answer(stdout: &str, stderr: &str) -> Value {
        json!({ "value": [
            { "code": "ComponentStatus/StdOut/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": stdout },
            { "code": "ComponentStatus/StdErr/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "message": stderr }
        ]})
    }

    #[test]
    fn run_command_output_is_read_into_a_verdict() {
        let check = SmokeCheck::new(
            "http://localhost/",
            200,
            Some("IIS"),
            Duration::from_secs(60),
        )
        .expect("valid");
        assert_eq!(
            check.verdict(&answer("IMGF-STATUS=200\nIMGF-CONTAINS=True\n", "")),
            Ok(200)
        );
        assert_eq!(
            check.verdict(&answer("IMGF-STATUS=200\nIMGF-CONTAINS=False\n", "")),
            Err("answered 200 without \"IIS\" in the body".into())
        );
        assert_eq!(
            check.verdict(&answer("IMGF-STATUS=503\nIMGF-CONTAINS=False\n", "")),
            Err("answered 503, expected 200".into())
        );
        assert_eq!(
            check.verdict(&answer(
                "IMGF-ERROR=Unable to connect to the remote server\nIMGF-STATUS=0\nIMGF-CONTAINS=False\n",
                "boom"
            )),
            Err("no answer (Unable to connect to the remote server); stderr: boom".into())
        );
        // The same list under properties.output (an async operation's status).
        let nested = json!({ "status": "Succeeded", "properties": { "output": answer("IMGF-STATUS=200\nIMGF-CONTAINS=True", "") } });
        assert_eq!(check.verdict(&nested), Ok(200));
        assert!(check.verdict(&json!({})).is_err());
    }
}
