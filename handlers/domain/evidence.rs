//! The evidence a Windows build collects about itself, `image-evidence.json`
//! (schema `image-factory.evidence/1`): what the image's last provisioner
//! read after the final Windows Update pass and reboot, before
//! generalisation. The patch rules ([`super::patch`]) judge it against
//! Microsoft's data. Pure: [`Evidence::parse`] reads a string, and
//! [`EvidenceRecord::read`] what the build stage keeps of a file.
//!
//! The shape is the one the Windows template's `Write-ImageEvidence.ps1`
//! writes (docs/windows-image.md shows a sample):
//!
//! ```json
//! {
//!   "schema": "image-factory.evidence/1",
//!   "collectedAt": "2026-02-11T03:12:09Z",
//!   "image": { "name": "windows-web-base", "version": "2026.211.0", "runId": "pt-base-w2022-datacenter-2026-02" },
//!   "os": { "productName": "Windows Server 2022 Datacenter", "editionId": "ServerDatacenter",
//!           "installationType": "Server", "displayVersion": "21H2", "build": "10.0.20348.4773",
//!           "lastBootAt": "2026-02-11T03:01:44Z" },
//!   "rebootPending": false,
//!   "rebootPendingReasons": [],
//!   "hotfixes": ["KB5075906"],
//!   "updates": [{ "title": "2026-02 Cumulative Update ... (KB5075906)", "kb": "KB5075906", "resultCode": 2, "operation": 1, "date": "2026-02-11T02:58:00Z" }],
//!   "defender": { "antivirusEnabled": true, "signatureVersion": "1.443.512.0", "signatureLastUpdated": "2026-02-11T02:40:13Z",
//!                 "signatureAgeHours": 0.5, "engineVersion": "1.1.25120.1", "platformVersion": "4.18.25120.2" },
//!   "features": ["Web-Server"],
//!   "languagePacks": ["en-US"],
//!   "unavailable": []
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
//! - `rebootPending` is read from the usual pending-reboot keys
//!   (`rebootPendingReasons` names those set).
//! - A source the build could not read is `null` and listed in
//!   `unavailable` (`{"source", "error"}`). The build, the installation type
//!   and the pending reboot are what the rules judge: one of them `null` is
//!   refused, naming the source's error; an unreadable `hotfixes` or
//!   `updates` reads as empty (its `unavailable` entry says why).
//! - The auditor's extras (`image`, `defender`, `features`,
//!   `languagePacks`, the other `os` values) are optional; `standIn: true`
//!   marks the shape the example image writes from a variable, not read
//!   from Windows.
//!
//! Parsing is strict: another schema, an unknown field, a build that is not
//! `10.0.<build>.<ubr>` or a result code outside 0-5 is refused with the
//! field named.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::cvrf::WindowsBuild;

/// The schema this module reads and writes.
pub const EVIDENCE_SCHEMA: &str = "image-factory.evidence/1";

/// The file name the build writes and the build stage stores.
pub const EVIDENCE_FILE: &str = "image-evidence.json";

/// The largest evidence file the factory reads: a fresh image's update
/// history and features are a few kilobytes, and the record travels in the
/// build worker's report and the run document.
pub const EVIDENCE_MAX_BYTES: usize = 128 * 1024;

/// The registry's `InstallationType` of a Windows Server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstallationType {
    /// With the desktop experience.
    Server,
    /// Server Core.
    #[serde(rename = "Server Core")]
    ServerCore,
}

impl std::fmt::Display for InstallationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InstallationType::Server => "Server",
            InstallationType::ServerCore => "Server Core",
        })
    }
}

/// What the image, as the factory named it, is (copied by the build).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageFacts {
    /// The image's gallery name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The version built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The factory's run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// What the OS says it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OsFacts {
    /// The registry's `ProductName` (`Windows Server 2022 Datacenter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    /// The registry's `EditionID` (`ServerDatacenter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition_id: Option<String>,
    /// `Server` or `Server Core`.
    pub installation_type: InstallationType,
    /// The registry's `DisplayVersion` (`21H2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_version: Option<String>,
    /// `10.0.<CurrentBuild>.<UBR>`.
    pub build: WindowsBuild,
    /// When the OS last started (the build is read after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot_at: Option<DateTime<Utc>>,
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
    /// 1 installation, 2 uninstallation, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<u8>,
    /// When it was installed, when recorded.
    #[serde(default)]
    pub date: Option<DateTime<Utc>>,
}

impl UpdateRecord {
    /// The result code of an update that installed.
    pub const SUCCEEDED: u8 = 2;
}

/// Microsoft Defender, as `Get-MpComputerStatus` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefenderFacts {
    /// Whether the antivirus is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub antivirus_enabled: Option<bool>,
    /// The antivirus signature version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_version: Option<String>,
    /// When the signatures were last updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_last_updated: Option<DateTime<Utc>>,
    /// Their age when read, in hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_age_hours: Option<f64>,
    /// The engine's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// The platform's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
}

/// Equal to itself: the age is a JSON number, never NaN.
impl Eq for DefenderFacts {}

/// A source the build could not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Unavailable {
    /// Which (`hotfixes`, `updates`, `os.build`, ...).
    pub source: String,
    /// The error it gave.
    pub error: String,
}

/// `image-evidence.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    /// [`EVIDENCE_SCHEMA`].
    pub schema: String,
    /// When it was read.
    pub collected_at: DateTime<Utc>,
    /// The image as the factory named it to the build, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageFacts>,
    /// The OS.
    pub os: OsFacts,
    /// Whether Windows waits for a reboot to finish installing something.
    pub reboot_pending: bool,
    /// The pending-reboot markers that are set, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_pending_reasons: Option<Vec<String>>,
    /// `Get-HotFix`'s ids (`KB5075906`); empty when unreadable.
    #[serde(deserialize_with = "null_as_empty")]
    pub hotfixes: Vec<String>,
    /// The Windows Update history; empty when unreadable.
    #[serde(deserialize_with = "null_as_empty")]
    pub updates: Vec<UpdateRecord>,
    /// Microsoft Defender's state, if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defender: Option<DefenderFacts>,
    /// The Windows features installed (`Get-WindowsFeature` names), if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
    /// The language packs installed (`en-US`), if read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_packs: Option<Vec<String>>,
    /// The sources the build could not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
    /// True when written by a stand-in (the example image), not read from Windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
}

/// A list that the build may have written as `null` (unreadable): empty.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Evidence that cannot be read, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the evidence file is not valid: {0}")]
pub struct EvidenceError(pub String);

/// The values the rules judge, by their path in the file and the
/// `unavailable` source that explains a `null`.
const JUDGED: [(&str, &str, &str); 3] = [
    ("os", "build", "os.build"),
    ("os", "installationType", "os"),
    ("", "rebootPending", "rebootPending"),
];

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
        unread_judged_value(&value)?;
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

    /// Whether the build could read `source` (`hotfixes`, `updates`, ...).
    pub fn could_read(&self, source: &str) -> bool {
        !self.unavailable.iter().any(|u| u.source == source)
    }
}

/// Refuses a `null` where the rules need a value, naming the build's error
/// for it when `unavailable` gives one.
fn unread_judged_value(value: &serde_json::Value) -> Result<(), EvidenceError> {
    for (parent, key, source) in JUDGED {
        let holder = if parent.is_empty() {
            Some(value)
        } else {
            value.get(parent)
        };
        if !holder.and_then(|h| h.get(key)).is_some_and(|v| v.is_null()) {
            continue;
        }
        let path = if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        };
        let why = value
            .get("unavailable")
            .and_then(|u| u.as_array())
            .and_then(|list| {
                list.iter()
                    .find(|u| u.get("source").and_then(|s| s.as_str()) == Some(source))
            })
            .and_then(|u| u.get("error").and_then(|e| e.as_str()))
            .map_or_else(String::new, |error| format!(" ({source}: {error})"));
        return Err(EvidenceError(format!(
            "{path} is null: the build could not read it{why}, and the patch rules judge it"
        )));
    }
    Ok(())
}

/// What the build stage keeps of an image's evidence (on the run's build
/// result): the file as collected, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum EvidenceRecord {
    /// The file was there and is valid.
    Collected {
        /// Its SHA-256, hex, as the build wrote it.
        sha256: String,
        /// Its size in bytes.
        bytes: u64,
        /// Where the factory keeps it (the run's folder, or a blob).
        location: String,
        /// What it says.
        evidence: Box<Evidence>,
    },
    /// The file was there and is not valid evidence.
    Invalid {
        /// Its SHA-256, hex; `None` for a file larger than the factory reads.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// Where the factory keeps it.
        location: String,
        /// Why it was refused.
        reason: String,
    },
    /// The template declares `evidence_path` and no file came back.
    Missing {
        /// What was looked for.
        reason: String,
    },
}

impl EvidenceRecord {
    /// The record of the file at `location` whose content is `bytes`
    /// (`None`: there was no file): its hash and what it says, or why it
    /// is refused (not valid, or larger than [`EVIDENCE_MAX_BYTES`]: the
    /// caller may stop reading one byte past the limit).
    pub fn read(bytes: Option<&[u8]>, location: &str) -> EvidenceRecord {
        let Some(bytes) = bytes else {
            return EvidenceRecord::Missing {
                reason: format!(
                    "the build wrote no {EVIDENCE_FILE} (looked for {location}): the template's evidence step did not run or did not bring the file back"
                ),
            };
        };
        if bytes.len() > EVIDENCE_MAX_BYTES {
            return EvidenceRecord::Invalid {
                sha256: None,
                location: location.to_string(),
                reason: format!(
                    "it is larger than the {EVIDENCE_MAX_BYTES} bytes the factory reads"
                ),
            };
        }
        let sha256 = super::sha256_hex(bytes);
        let invalid = |reason: String| EvidenceRecord::Invalid {
            sha256: Some(sha256.clone()),
            location: location.to_string(),
            reason,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return invalid("it is not UTF-8 text".into());
        };
        match Evidence::parse(text) {
            Ok(evidence) => EvidenceRecord::Collected {
                sha256,
                bytes: bytes.len() as u64,
                location: location.to_string(),
                evidence: Box::new(evidence),
            },
            Err(e) => invalid(e.to_string()),
        }
    }

    /// The evidence, when collected.
    pub fn evidence(&self) -> Option<&Evidence> {
        match self {
            EvidenceRecord::Collected { evidence, .. } => Some(evidence),
            _ => None,
        }
    }

    /// Where the file is kept, when there was one.
    pub fn location(&self) -> Option<&str> {
        match self {
            EvidenceRecord::Collected { location, .. }
            | EvidenceRecord::Invalid { location, .. } => Some(location),
            EvidenceRecord::Missing { .. } => None,
        }
    }

    /// The same record kept at `location` instead (after an upload).
    pub fn moved_to(self, to: &str) -> EvidenceRecord {
        match self {
            EvidenceRecord::Collected {
                sha256,
                bytes,
                evidence,
                ..
            } => EvidenceRecord::Collected {
                sha256,
                bytes,
                location: to.to_string(),
                evidence,
            },
            EvidenceRecord::Invalid { sha256, reason, .. } => EvidenceRecord::Invalid {
                sha256,
                location: to.to_string(),
                reason,
            },
            missing @ EvidenceRecord::Missing { .. } => missing,
        }
    }

    /// Why there is no evidence to judge, when there is none.
    pub fn why_none(&self) -> Option<String> {
        match self {
            EvidenceRecord::Collected { .. } => None,
            EvidenceRecord::Invalid {
                reason, location, ..
            } => Some(format!(
                "the evidence file {location} was refused: {reason}"
            )),
            EvidenceRecord::Missing { reason } => Some(format!("no evidence: {reason}")),
        }
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
        assert_eq!(evidence.defender, None);
        // Written back, it reads the same (the build stage stores it so).
        let again = Evidence::parse(&serde_json::to_string(&evidence).unwrap()).unwrap();
        assert_eq!(again, evidence);
    }

    #[test]
    fn the_auditors_extras_and_the_stand_in_marker_are_read() {
        let evidence = with(
            "\"rebootPending\": false,",
            r#""rebootPending": true, "rebootPendingReasons": ["Component Based Servicing\\RebootPending"],
               "image": { "name": "windows-web-base", "version": "2026.211.0", "runId": "pt-w-2026-02" },
               "defender": { "antivirusEnabled": true, "signatureVersion": "1.445.123.0", "signatureAgeHours": 0.5 },
               "features": ["Web-Server"], "languagePacks": ["en-US"], "unavailable": [], "standIn": true,"#,
        )
        .unwrap();
        assert!(evidence.reboot_pending && evidence.stand_in);
        let defender = evidence.defender.clone().unwrap();
        assert_eq!(defender.signature_version.as_deref(), Some("1.445.123.0"));
        assert_eq!(defender.signature_age_hours, Some(0.5));
        assert_eq!(evidence.features, Some(vec!["Web-Server".to_string()]));
        assert_eq!(evidence.language_packs, Some(vec!["en-US".to_string()]));
        assert_eq!(
            evidence.image.as_ref().and_then(|i| i.run_id.as_deref()),
            Some("pt-w-2026-02")
        );
        let written = serde_json::to_value(&evidence).unwrap();
        assert_eq!(written["standIn"], true);
        assert_eq!(written["os"]["installationType"], "Server");
        let core = with("\"Server\"", "\"Server Core\"").unwrap();
        assert_eq!(core.os.installation_type, InstallationType::ServerCore);
    }

    #[test]
    fn a_source_the_build_could_not_read_is_named_and_refused_only_when_judged() {
        // Get-HotFix and the update history unreadable: empty lists, and
        // the evidence says which source failed.
        let evidence = with(
            "\"hotfixes\": [\"KB5075906\"],",
            r#""hotfixes": null, "unavailable": [{ "source": "hotfixes", "error": "RPC server unavailable" }],"#,
        )
        .unwrap();
        assert!(evidence.hotfixes.is_empty() && !evidence.could_read("hotfixes"));
        assert!(evidence.could_read("updates"));
        // The build or the pending reboot unreadable: refused with the error.
        let err = with("\"build\": \"10.0.20348.4773\"", r#""build": null"#).unwrap_err();
        assert!(err.to_string().contains("os.build is null"), "{err}");
        let err = Evidence::parse(&SAMPLE.replace(
            "\"rebootPending\": false,",
            r#""rebootPending": null, "unavailable": [{ "source": "rebootPending", "error": "access denied" }],"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rebootPending is null") && err.contains("rebootPending: access denied"),
            "{err}"
        );
    }

    #[test]
    fn the_build_stage_keeps_the_hash_and_what_the_file_says_or_why_there_is_none() {
        let record = EvidenceRecord::read(Some(SAMPLE.as_bytes()), "runs/r/image-evidence.json");
        let EvidenceRecord::Collected {
            sha256,
            bytes,
            evidence,
            ..
        } = &record
        else {
            panic!("{record:?}")
        };
        assert_eq!(*sha256, crate::domain::sha256_hex(SAMPLE.as_bytes()));
        assert_eq!(sha256.len(), 64);
        assert_eq!(*bytes, SAMPLE.len() as u64);
        assert_eq!(evidence.os.build.to_string(), "10.0.20348.4773");
        let moved = record.clone().moved_to("https://blob/r/w.json");
        assert_eq!(moved.location(), Some("https://blob/r/w.json"));
        assert_eq!(moved.evidence(), record.evidence());

        let missing = EvidenceRecord::read(None, "runs/r/image-evidence.json");
        assert!(missing.evidence().is_none());
        assert!(
            missing
                .why_none()
                .unwrap()
                .contains("runs/r/image-evidence.json"),
            "{missing:?}"
        );
        let invalid = EvidenceRecord::read(Some(b"{}"), "f");
        assert!(
            matches!(&invalid, EvidenceRecord::Invalid { reason, .. } if reason.contains("no \"schema\""))
        );
        let huge = vec![b' '; EVIDENCE_MAX_BYTES + 1];
        assert!(
            matches!(EvidenceRecord::read(Some(&huge), "f"), EvidenceRecord::Invalid { reason, .. } if reason.contains("larger than"))
        );
        // Kept on the run as JSON, it reads back the same.
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"state\":\"collected\""));
        assert_eq!(
            serde_json::from_str::<EvidenceRecord>(&json).unwrap(),
            record
        );
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
