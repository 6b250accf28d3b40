//! Failure diagnosis: what a failed build or test most likely ran into, read
//! from its reason and log excerpt against the troubleshooting table the
//! factory's Windows template comes with (WinRM, language pack, Defender,
//! Sysprep, gallery replication, authentication, quota, resource groups, ...).
//!
//! Pure and table-driven: the first row whose every pattern of one of its
//! alternatives occurs in the text (case-insensitively) wins, so the more
//! specific rows come first. The Windows template's scripts name the failures
//! they detect on a line of their own, `[image-factory:<kind>] <what they
//! saw>` (docs/windows-image.md, "Failure kinds"): those rows come first and
//! carry the kind the script printed.

use serde::{Deserialize, Serialize};

/// The likely cause of a failure and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// A stable name of the row that matched (`winrm-unreachable`, ...).
    pub kind: String,
    /// What the operator sees.
    pub symptom: String,
    /// The likely cause.
    pub cause: String,
    /// The quick fix.
    pub fix: String,
}

/// One row of the troubleshooting table.
struct Row {
    kind: &'static str,
    /// Alternatives; each is a set of lowercase fragments that must all occur.
    patterns: &'static [&'static [&'static str]],
    symptom: &'static str,
    cause: &'static str,
    fix: &'static str,
}

/// The troubleshooting table, most specific rows first.
const TABLE: &[Row] = &[
    Row {
        // First: the reason names the failed checks (`language-pack:fr-FR`,
        // `defender:signature-age-hours`), whose words other rows match.
        kind: "image-declaration",
        patterns: &[&["declaration checks failed"]],
        symptom: "the test VM lacks something the image declares (image.toml [declare])",
        cause: "a provisioner that did not install or start it (a feature, language pack, service), a firewall profile left off, or Defender signatures older than the declared age",
        fix: "the reason names each failed check with what was expected and found: fix the template step that provides it, or correct the declaration; the run page lists every check",
    },
    Row {
        kind: "windows-update-timeout",
        patterns: &[&["[image-factory:windows-update-timeout]"]],
        symptom: "the Windows Update passes ran past their time limit",
        cause: "slow downloads (no nearby update source, throttled outbound access) or an update that takes very long to install",
        fix: "read the passes' results in the build log; check the build VM's outbound access (the build network's NAT gateway) or raise windows_update_timeout_minutes (with the image's [packer] timeout_minutes)",
    },
    Row {
        kind: "windows-update-not-converged",
        patterns: &[&["[image-factory:windows-update-not-converged]"]],
        symptom: "updates were still applicable after the last Windows Update pass",
        cause: "more updates than windows_update_max_passes passes install (a servicing stack update first, then the cumulative update), or an update that installs but never stops being offered",
        fix: "the line names what is still applicable: raise windows_update_max_passes (the template holds 4), or hide the update that keeps coming back",
    },
    Row {
        kind: "windows-update-reboot-loop",
        patterns: &[&["[image-factory:windows-update-reboot-loop]"]],
        symptom: "Windows Update is in a reboot loop",
        cause: "the same update fails again after each restart, or a reboot stays pending across restarts",
        fix: "the line names the update, its HRESULT and the passes (or the pending-reboot keys): look the HRESULT up, update the base image or install that update offline; the kept VM's boot diagnostics show its last screen",
    },
    Row {
        kind: "windows-update-reboot-pending",
        patterns: &[&["[image-factory:windows-update-reboot-pending]"]],
        symptom: "a reboot was still pending after the last Windows Update pass",
        cause: "an update installed by the last pass asked for a restart the build did not give it",
        fix: "raise windows_update_max_passes so that a pass and its restart follow, or find the pending-reboot key the line names",
    },
    Row {
        kind: "windows-update-config",
        patterns: &[&["[image-factory:windows-update-config]"]],
        symptom: "the Windows Update step refused its settings",
        cause: "a limit passed to the update script is not a whole number (or the pass is not a number or 'final')",
        fix: "correct the windows_update_* variable the line names (image.toml [packer.variables] or the template's defaults)",
    },
    Row {
        kind: "guest-agent-not-ready",
        patterns: &[&["[image-factory:guest-agent-not-ready]"]],
        symptom: "the Azure guest agent was not running before Sysprep",
        cause: "RdAgent or WindowsAzureGuestAgent did not start in guest_agent_timeout_minutes (a broken agent, or a VM still busy after its updates)",
        fix: "the line names the service and its status: look at the kept VM's boot diagnostics and the agent's logs; raise guest_agent_timeout_minutes only when the agent starts late",
    },
    Row {
        kind: "sysprep-failed",
        patterns: &[&["[image-factory:sysprep-failed]"]],
        symptom: "Sysprep ended without generalizing the VM",
        cause: "an app or a pending servicing operation that blocks generalisation (setuperr.log says which)",
        fix: "the line quotes the end of C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log: remove the blocking app (often a Store app provisioned for one user) or clear the pending operation, then build again",
    },
    Row {
        kind: "sysprep-timeout",
        patterns: &[&["[image-factory:sysprep-timeout]"]],
        symptom: "Sysprep did not reach IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE in time",
        cause: "Sysprep hangs (often on a pending update or a service that does not stop) or needs longer than sysprep_timeout_minutes",
        fix: "the line lists every image state seen and the end of setuperr.log; the kept VM's screenshot (boot diagnostics, on the run's page) shows where Sysprep stands",
    },
    Row {
        kind: "winrm-auth",
        patterns: &[
            &["winrm", "401"],
            &["winrm", "unauthorized"],
            &["winrm", "access is denied"],
            &["winrm", "authentication failed"],
        ],
        symptom: "WinRM authentication fails",
        cause: "wrong username/password or CredSSP not enabled",
        fix: "verify the credentials, enable CredSSP, and make the WinRM settings match the template",
    },
    Row {
        kind: "winrm-unreachable",
        patterns: &[
            &["timeout waiting for winrm"],
            &["waiting for winrm", "timeout"],
            &["winrm", "connection refused"],
            &["winrm", "i/o timeout"],
            &["5986", "timed out"],
        ],
        symptom: "WinRM never connects",
        cause: "port 5986 blocked or the self-signed certificate not trusted",
        fix: "set `winrm_insecure = true` (with `winrm_use_ssl = true`) and allow 5986 from the build network",
    },
    Row {
        kind: "language-pack",
        patterns: &[
            &["install-fr-language", "fail"],
            &["install-fr-language", "error"],
            &["add-windowspackage"],
            &["language pack", "fail"],
            &["lp.cab", "not found"],
        ],
        symptom: "language pack fails",
        cause: "Windows Update disabled or the package missing",
        fix: "host the CAB files in blob storage and point `Install-FR-Language.ps1` at them (LANGUAGE_PACK_URL)",
    },
    Row {
        kind: "defender-offline",
        patterns: &[
            &["update-mpsignature"],
            &["install-windows-defender", "timeout"],
            &["defender", "signature", "fail"],
            &["mpcmdrun", "error"],
        ],
        symptom: "Defender update hangs",
        cause: "no internet egress from the build VM",
        fix: "use `Update-MpSignature -UpdateSource FileShares` with DEFENDER_DEFINITIONS_SHARE pointing at an internal share",
    },
    Row {
        kind: "sysprep",
        patterns: &[
            &["sysprep", "fail"],
            &["sysprep", "error"],
            &["sysprep", "did not"],
            &["image_state_undeployable"],
            &["imagestate", "timeout"],
            &["not generalized"],
        ],
        symptom: "Sysprep quits instantly or the capture fails",
        cause: "pending updates or services still running, so the VM was not generalized",
        fix: "inspect C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log and rerun after clearing pending tasks",
    },
    Row {
        kind: "gallery-version-stuck",
        patterns: &[
            &["gallery", "creating", "did not finish"],
            &["gallery image version", "provisioningstate"],
            &["replication", "region"],
            &["galleryimageversion", "timeout"],
        ],
        symptom: "gallery version stuck \"Creating\"",
        cause: "region quota or a wrong replication list",
        fix: "read the version's provisioningState (`az sig image-version show`) and adjust the replication regions",
    },
    Row {
        kind: "quota",
        patterns: &[
            &["quotaexceeded"],
            &["quota exceeded"],
            &["operation could not be completed as it results in exceeding approved"],
            &["skunotavailable"],
        ],
        symptom: "\"Resource quota exceeded\"",
        cause: "subscription quota limits reached",
        fix: "check the subscription's quotas for the VM size and region and request an increase, or pick another size",
    },
    Row {
        kind: "resource-group-not-found",
        patterns: &[
            &["resourcegroupnotfound"],
            &["resource group", "could not be found"],
        ],
        symptom: "Packer cannot find the resource group",
        cause: "wrong resource group name or a region mismatch",
        fix: "check `managed_image_resource_group_name`, the gallery resource group and `location`",
    },
    Row {
        kind: "auth",
        patterns: &[
            &["authentication failed"],
            &["authorizationfailed"],
            &["aadsts"],
            &["invalidauthenticationtoken"],
            &["does not have authorization"],
            &["status=403"],
            &["401 unauthorized"],
        ],
        symptom: "\"Authentication failed\" or not authorized",
        cause: "expired or wrong credentials, or an identity without the needed role",
        fix: "check ARM_TENANT_ID/ARM_CLIENT_ID (or the managed identity) and grant the role on the build and gallery resource groups",
    },
    Row {
        kind: "ssh-timeout",
        patterns: &[&["timeout waiting for ssh"], &["ssh", "handshake failed"]],
        symptom: "SSH connection times out",
        cause: "port 22 blocked or cloud-init not finished",
        fix: "check the NSG rules and wait for the VM to finish provisioning",
    },
    Row {
        kind: "script-failed",
        patterns: &[
            &["script exited with non-zero exit status"],
            &["error uploading script"],
        ],
        symptom: "a provisioner script failed",
        cause: "a script path that is wrong, or the script's own error",
        fix: "read the script's output just above in the log; use absolute paths and enable verbose logging",
    },
    Row {
        kind: "plugin-missing",
        patterns: &[
            &["unknown source type", "azure-arm"],
            &["plugin", "azure", "not installed"],
            &["packer init"],
            &["unsupported packer core version"],
            &["required_plugins", "not expected"],
        ],
        symptom: "the build fails at the azure-arm step or packer refuses the template",
        cause: "the azure plugin is missing or packer is too old",
        fix: "run `packer init` with packer 1.7+ and check the pinned plugin version",
    },
    Row {
        kind: "smoke-test-no-answer",
        patterns: &[
            &["smoke test get", "no answer"],
            &["smoke test get", "answered"],
        ],
        symptom: "the test VM never answered the HTTP smoke test",
        cause: "IIS not installed or not started, or the firewall/NSG blocks port 80",
        fix: "check the IIS provisioner and the firewall script; the VM's boot diagnostics show whether it started",
    },
];

/// The likely cause of a failure whose reason and log excerpt are `text`.
pub fn diagnose(text: &str) -> Option<Diagnosis> {
    let lower = text.to_lowercase();
    TABLE
        .iter()
        .find(|row| {
            row.patterns
                .iter()
                .any(|all| all.iter().all(|p| lower.contains(p)))
        })
        .map(|row| Diagnosis {
            kind: row.kind.into(),
            symptom: row.symptom.into(),
            cause: row.cause.into(),
            fix: row.fix.into(),
        })
}

/// The last line of `log` that a row of the table recognises, preferring a
/// specific row to the generic "a script failed", cut to 300 bytes: the
/// evidence a failure reason quotes so that its diagnosis can be made (and
/// checked by a reader) from the reason alone.
pub fn evidence(log: &str) -> Option<String> {
    let recognised = |generic: bool| {
        log.lines()
            .rev()
            .find(|line| diagnose(line).is_some_and(|d| generic || d.kind != "script-failed"))
    };
    recognised(false).or_else(|| recognised(true)).map(|line| {
        let line = line.trim();
        let mut end = line.len().min(300);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line[..end].to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (log excerpt, expected kind): each row of the seed's troubleshooting
    /// table recognised from the kind of line packer, Azure or Windows prints.
    const CASES: &[(&str, &str)] = &[
        (
            "==> azure-arm.image: Timeout waiting for WinRM.",
            "winrm-unreachable",
        ),
        (
            "azure-arm.image: dial tcp 20.1.2.3:5986: i/o timeout (waiting for WinRM)",
            "winrm-unreachable",
        ),
        (
            "==> azure-arm.image: WinRM: http response error: 401 - invalid content type",
            "winrm-auth",
        ),
        (
            "azure-arm.image: Install-FR-Language.ps1 : Add-WindowsPackage failed. Error code = 0x800f081f",
            "language-pack",
        ),
        (
            "azure-arm.image: Update-MpSignature : Virus and spyware definitions update was not completed",
            "defender-offline",
        ),
        (
            "azure-arm.image: ImageState: IMAGE_STATE_UNDEPLOYABLE; Sysprep did not complete",
            "sysprep",
        ),
        (
            "gallery image version 1.2.3 is still Creating: the operation did not finish; provisioningState Creating",
            "gallery-version-stuck",
        ),
        (
            "Code=\"OperationNotAllowed\" Message=\"Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota\"",
            "quota",
        ),
        (
            "StatusCode=404 -- Original Error: Code=\"ResourceGroupNotFound\" Message=\"Resource group 'rg-img' could not be found.\"",
            "resource-group-not-found",
        ),
        ("AADSTS7000215: Invalid client secret provided.", "auth"),
        (
            "Code=\"AuthorizationFailed\" Message=\"The client 'x' with object id 'y' does not have authorization to perform action\"",
            "auth",
        ),
        (
            "Script exited with non-zero exit status: 1. Allowed exit codes are: [0]",
            "script-failed",
        ),
        (
            "Error: Failed preparing provisioner-block \"powershell\" \"\"\n  on build.pkr.hcl: Unknown source type \"azure-arm\"",
            "plugin-missing",
        ),
        (
            "Error: Unsupported Packer Core version ... This configuration does not support Packer version 1.6.6.",
            "plugin-missing",
        ),
        (
            "smoke test GET http://10.0.0.4/ failed for 600 s: no answer (connection refused)",
            "smoke-test-no-answer",
        ),
        (
            "declaration checks failed (scripts/Test-ImageDeclaration.ps1 through Run Command in vm-smoke): 9 of 10 declared checks passed; failed: defender:signature-age-hours: expected <= 24, found 30.1 (signatures 1.443.512.0, updated 2026-02-11T02:40:13Z)",
            "image-declaration",
        ),
    ];

    /// Lines as the Windows template's scripts print them
    /// (`Invoke-WindowsUpdatePass.ps1`, `Invoke-Generalization.ps1`), each
    /// recognised by the kind it names, before the generic rows that also
    /// match its words ("Sysprep did not", "script exited").
    const TEMPLATE_KINDS: &[(&str, &str)] = &[
        (
            "azure-arm.image: [image-factory:windows-update-timeout] the Windows Update passes took 152 minute(s), over windows_update_timeout_minutes (150)",
            "windows-update-timeout",
        ),
        (
            "azure-arm.image: [image-factory:windows-update-not-converged] 2 update(s) still applicable after 3 pass(es): 2026-02 Cumulative Update (KB5075906)",
            "windows-update-not-converged",
        ),
        (
            "azure-arm.image: [image-factory:windows-update-reboot-loop] KB5075906 failed in passes 1, 2 (HRESULT 0x800F0922)",
            "windows-update-reboot-loop",
        ),
        (
            "azure-arm.image: [image-factory:windows-update-reboot-pending] a reboot is pending after the last pass: Component Based Servicing\\RebootPending",
            "windows-update-reboot-pending",
        ),
        (
            "azure-arm.image: [image-factory:windows-update-config] WU_MAX_PASSES must be a whole number of at least 1, not 'three'",
            "windows-update-config",
        ),
        (
            "azure-arm.image: [image-factory:guest-agent-not-ready] the Azure guest agent service RdAgent is 'Stopped' after 15 minute(s)",
            "guest-agent-not-ready",
        ),
        (
            "azure-arm.image: [image-factory:sysprep-failed] Sysprep exited (code 0) but ImageState is IMAGE_STATE_UNDEPLOYABLE; Sysprep did not generalize",
            "sysprep-failed",
        ),
        (
            "azure-arm.image: [image-factory:sysprep-timeout] Sysprep did not reach IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE within 30 minute(s) (sysprep_timeout_minutes; ImageState timeout)",
            "sysprep-timeout",
        ),
    ];

    #[test]
    fn every_failure_kind_the_windows_template_prints_is_its_own_diagnosis() {
        for (line, kind) in TEMPLATE_KINDS {
            let found = diagnose(line).map(|d| d.kind);
            assert_eq!(found.as_deref(), Some(*kind), "for {line:?}");
            // The evidence quoted from a log is that line, even when a
            // generic line follows it.
            let log = format!(
                "{line}\n==> azure-arm.image: Script exited with non-zero exit status: 1. Allowed exit codes are: [0]"
            );
            assert_eq!(evidence(&log).as_deref(), Some(*line));
        }
        // Every kind the template's scripts print has its row.
        let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("images/base-w2022-datacenter/scripts");
        let mut printed = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&scripts).expect("the template's scripts") {
            let text = std::fs::read_to_string(entry.expect("an entry").path()).unwrap_or_default();
            for part in text.split("[image-factory:").skip(1) {
                let kind: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                if !kind.is_empty() && part[kind.len()..].starts_with(']') {
                    printed.insert(kind);
                }
            }
        }
        assert!(printed.len() >= 8, "{printed:?}");
        for kind in &printed {
            assert!(
                TABLE.iter().any(|row| row.kind == kind.as_str()),
                "the template prints [image-factory:{kind}] but the table has no row for it"
            );
        }
    }

    #[test]
    fn every_row_of_the_troubleshooting_table_is_recognised_from_a_log_excerpt() {
        for (excerpt, kind) in CASES {
            let found = diagnose(excerpt).map(|d| d.kind);
            assert_eq!(found.as_deref(), Some(*kind), "for {excerpt:?}");
        }
    }

    #[test]
    fn text_that_matches_no_row_has_no_diagnosis() {
        assert_eq!(
            diagnose("packer build exited with code 1: no error message"),
            None
        );
        assert_eq!(diagnose(""), None);
    }

    #[test]
    fn every_diagnosis_names_a_cause_and_a_fix() {
        for row in TABLE {
            assert!(!row.cause.is_empty() && !row.fix.is_empty(), "{}", row.kind);
            assert!(!row.patterns.is_empty(), "{}", row.kind);
        }
    }

    #[test]
    fn the_evidence_is_the_last_specific_log_line() {
        let log = "==> azure-arm.image: Creating resource group ...\n\
                   ==> azure-arm.image: Waiting for WinRM to become available...\n\
                   ==> azure-arm.image: Timeout waiting for WinRM.\n\
                   Build 'azure-arm.image' errored after 30 minutes";
        assert_eq!(
            evidence(log).as_deref(),
            Some("==> azure-arm.image: Timeout waiting for WinRM.")
        );
        let log = "==> azure-arm.image: Provisioning with powershell script: scripts/Install-FR-Language.ps1\n\
                   ==> azure-arm.image: Provisioning with powershell script: scripts/Install-Windows-Defender.ps1\n\
                   azure-arm.image: Update-MpSignature : definitions update was not completed\n\
                   ==> azure-arm.image: Script exited with non-zero exit status: 1. Allowed exit codes are: [0]";
        assert_eq!(
            evidence(log)
                .and_then(|line| diagnose(&line))
                .map(|d| d.kind)
                .as_deref(),
            Some("defender-offline")
        );
        assert_eq!(evidence("all fine\nnothing here"), None);
    }
}
