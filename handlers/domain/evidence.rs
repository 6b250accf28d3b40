//! The evidence a Windows build collects about itself, `image-evidence.json`
//! (schema `image-factory.evidence/1`): what the image's last provisioner
//! read after the final Windows Update pass and reboot, before
//! generalisation. The patch rules ([`super::patch`]) judge it against
//! Microsoft's data. Pure: [`Evidence::parse`] reads a string.
//!
//! ```json
//! {
//!   "schema": "image-factory.evidence/1",
//!   "collectedAt": "2026-02-11T03:12:09Z",
//!   "os": { "productName": "Windows Server 2022 Datacenter", "installationType": "Server", "build": "10.0.20348.4773" },
//!   "rebootPending": false,
//!   "hotfixes": ["KB5075906"],
//!   "updates": [{ "title": "2026-02 Cumulative Update ... (KB5075906)", "kb": "KB5075906", "resultCode": 2, "date": "2026-02-11T02:58:00Z" }],
//!   "defenderSignatureVersion": "1.445.123.0",
//!   "installedFeatures": ["Web-Server"],
//!   "languagePacks": ["en-US"]
//! }
//! ```
//!
//! - `os.build` is `10.0.<CurrentBuild>.<UBR>` from the registry
//!   (`HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion`), read after the
//!   last reboot: updates are cumulative, so it says which fixes are in.
//! - `os.installationType` is the registry's `InstallationType`, `Server`
//!   or `Server Core`.
//! - `hotfixes` is `Get-HotFix`; `updates` the Windows Update history
//!   (`resultCode` 2 = succeeded): cross-checks of the build.
//! - `rebootPending` is read from the usual pending-reboot keys.
//! - The auditor's extras are optional; `standIn: true` marks the shape the
//!   example image writes from a variable, not read from Windows.
//!
//! Parsing is strict: another schema, an unknown field, a build that is not
//! `10.0.<build>.<ubr>` or a result code outside 0-5 is refused with the
//! field named.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cvrf::WindowsBuild;

/// The schema this module reads and writes.
pub const EVIDENCE_SCHEMA: &str = "image-factory.evidence/1";

/// The file name the build writes and the build stage stores.
pub const EVIDENCE_FILE: &str = "image-evidence.json";

/// The registry's `InstallationType` of a Windows Server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallationType {
    /// With the desktop experience.
    Server,
    /// Server Core.
    #[serde(rename = "Server Core")]
    ServerCore,
}

/// What the OS says it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsFacts {
    /// The registry's `ProductName` (`Windows Server 2022 Datacenter`).
    pub product_name: String,
    /// `Server` or `Server Core`.
    pub installation_type: InstallationType,
    /// `10.0.<CurrentBuild>.<UBR>`.
    pub build: WindowsBuild,
}

/// One entry of the Windows Update history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRecord {
    /// The update's title.
    pub title: String,
    /// Its KB (`KB5075906`), when its title names one.
    #[serde(default)]
    pub kb: Option<String>,
    /// The operation's result: 0 not started, 1 in progress, 2 succeeded,
    /// 3 succeeded with errors, 4 failed, 5 aborted.
    pub result_code: u8,
    /// When it was installed.
    pub date: DateTime<Utc>,
}

impl UpdateRecord {
    /// The result code of an update that installed.
    pub const SUCCEEDED: u8 = 2;
}

/// `image-evidence.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    /// [`EVIDENCE_SCHEMA`].
    pub schema: String,
    /// When it was read.
    pub collected_at: DateTime<Utc>,
    /// The OS.
    pub os: OsFacts,
    /// Whether Windows waits for a reboot to finish installing something.
    pub reboot_pending: bool,
    /// `Get-HotFix`'s ids (`KB5075906`).
    pub hotfixes: Vec<String>,
    /// The Windows Update history.
    pub updates: Vec<UpdateRecord>,
    /// Microsoft Defender's antivirus signature version, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defender_signature_version: Option<String>,
    /// The Windows features installed (`Get-WindowsFeature` names), if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_features: Option<Vec<String>>,
    /// The language packs installed (`en-US`), if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_packs: Option<Vec<String>>,
    /// True when written by a stand-in (the example image), not read from Windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
}

/// Evidence that cannot be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the evidence file is not valid: {0}")]
pub struct EvidenceError(pub String);

impl Evidence {
    /// Reads `image-evidence.json` strictly (see the module's comment).
    pub fn parse(text: &str) -> Result<Evidence, EvidenceError> {
        let value: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| EvidenceError(format!("not JSON: {e}")))?;
        match value.get("schema") {
            Some(serde_json::Value::String(schema)) if schema == EVIDENCE_SCHEMA => {}
            Some(other) => {
                return Err(EvidenceError(format!(
                    "its schema is {other}, and this factory reads \"{EVIDENCE_SCHEMA}\""
                )));
            }
            None => {
                return Err(EvidenceError(format!(
                    "it has no \"schema\" (expected \"{EVIDENCE_SCHEMA}\")"
                )));
            }
        }
        let evidence: Evidence =
            serde_json::from_value(value).map_err(|e| EvidenceError(e.to_string()))?;
        let build = evidence.os.build;
        if (build.major, build.minor) != (10, 0) {
            return Err(EvidenceError(format!(
                "os.build {build} is not 10.0.<build>.<ubr>"
            )));
        }
        if let Some(update) = evidence.updates.iter().find(|u| u.result_code > 5) {
            return Err(EvidenceError(format!(
                "updates: \"{}\" has resultCode {}, and Windows Update's result codes are 0-5",
                update.title, update.result_code
            )));
        }
        if let Some(blank) = evidence.hotfixes.iter().find(|h| h.trim().is_empty()) {
            return Err(EvidenceError(format!(
                "hotfixes holds an empty id ({blank:?})"
            )));
        }
        Ok(evidence)
    }

    /// Whether `Get-HotFix` listed `kb` (`KB5075906`, in any case).
    pub fn lists_hotfix(&self, kb: &str) -> bool {
        self.hotfixes
            .iter()
            .any(|h| h.trim().eq_ignore_ascii_case(kb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "schema": "image-factory.evidence/1",
      "collectedAt": "2026-02-11T03:12:09Z",
      "os": { "productName": "Windows Server 2022 Datacenter", "installationType": "Server", "build": "10.0.20348.4773" },
      "rebootPending": false,
      "hotfixes": ["KB5075906"],
      "updates": [{ "title": "2026-02 Cumulative Update (KB5075906)", "kb": "KB5075906", "resultCode": 2, "date": "2026-02-11T02:58:00Z" }]
    }"#;

    fn with(from: &str, to: &str) -> Result<Evidence, EvidenceError> {
        assert!(SAMPLE.contains(from), "{from}");
        Evidence::parse(&SAMPLE.replace(from, to))
    }

    #[test]
    fn the_issues_sample_is_read_field_by_field() {
        let evidence = Evidence::parse(SAMPLE).unwrap();
        assert_eq!(evidence.os.installation_type, InstallationType::Server);
        assert_eq!(evidence.os.build.to_string(), "10.0.20348.4773");
        assert!(!evidence.reboot_pending && !evidence.stand_in);
        assert!(evidence.lists_hotfix("kb5075906"));
        assert!(!evidence.lists_hotfix("KB5073457"));
        assert_eq!(evidence.updates[0].result_code, UpdateRecord::SUCCEEDED);
        assert_eq!(evidence.defender_signature_version, None);
        // Written back, it reads the same (the build stage stores it so).
        let again = Evidence::parse(&serde_json::to_string(&evidence).unwrap()).unwrap();
        assert_eq!(again, evidence);
    }

    #[test]
    fn the_auditors_extras_and_the_stand_in_marker_are_read() {
        let evidence = with(
            "\"rebootPending\": false,",
            r#""rebootPending": true, "defenderSignatureVersion": "1.445.123.0",
               "installedFeatures": ["Web-Server"], "languagePacks": ["en-US"], "standIn": true,"#,
        )
        .unwrap();
        assert!(evidence.reboot_pending && evidence.stand_in);
        assert_eq!(
            evidence.defender_signature_version.as_deref(),
            Some("1.445.123.0")
        );
        assert_eq!(
            evidence.installed_features,
            Some(vec!["Web-Server".to_string()])
        );
        assert_eq!(evidence.language_packs, Some(vec!["en-US".to_string()]));
        let written = serde_json::to_value(&evidence).unwrap();
        assert_eq!(written["standIn"], true);
        assert_eq!(written["os"]["installationType"], "Server");
        let core = with("\"Server\"", "\"Server Core\"").unwrap();
        assert_eq!(core.os.installation_type, InstallationType::ServerCore);
    }

    #[test]
    fn bad_evidence_is_refused_saying_what_is_wrong() {
        let refused = |result: Result<Evidence, EvidenceError>, expected: &str| {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        };
        refused(Evidence::parse("<xml/>"), "not JSON");
        refused(
            with("image-factory.evidence/1", "image-factory.evidence/2"),
            "\"image-factory.evidence/2\"",
        );
        refused(
            with("\"schema\": \"image-factory.evidence/1\",", ""),
            "no \"schema\"",
        );
        refused(
            with("10.0.20348.4773", "10.0.20348"),
            "\"10.0.20348\" is not a Windows build",
        );
        refused(
            with("10.0.20348.4773", "6.3.9600.1"),
            "os.build 6.3.9600.1 is not 10.0.<build>.<ubr>",
        );
        refused(with("\"Server\"", "\"Client\""), "unknown variant `Client`");
        refused(
            with("\"resultCode\": 2", "\"resultCode\": 9"),
            "resultCode 9",
        );
        refused(
            with("\"resultCode\": 2", "\"resultCode\": -1"),
            "invalid value",
        );
        refused(
            with("\"rebootPending\": false,", "\"rebootPending\": \"no\","),
            "invalid type",
        );
        refused(
            with("\"rebootPending\": false,", ""),
            "missing field `rebootPending`",
        );
        refused(with("\"hotfixes\"", "\"hotfix\""), "unknown field `hotfix`");
        refused(
            with("[\"KB5075906\"]", "[\" \"]"),
            "hotfixes holds an empty id",
        );
        refused(
            with("2026-02-11T03:12:09Z", "yesterday"),
            "input contains invalid characters",
        );
    }
}
