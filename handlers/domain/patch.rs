//! The patch rules: whether an image's OS build carries a month's security
//! fixes, judged on Microsoft's own data ([`super::cvrf`]) and the evidence
//! the build collected inside the image ([`super::evidence`]). Pure.
//!
//! The rules, with the facts measured in Microsoft's CVRF documents that
//! they rest on (`docs/patch-evidence.md`):
//!
//! - **The product**, by name, never by a hard-coded id: the OS build's
//!   number names the OS (`20348` is Windows Server 2022, [`KNOWN_OS`]; any
//!   other is refused), the installation type the product:
//!   `Windows Server 2022` for `Server`, `Windows Server 2022 (Server Core
//!   installation)` for `Server Core`. Its `ProductID` is looked up in each
//!   month's product tree (11923 and 11924 in every month measured).
//! - **The fixes that count**: `Vendor Fix` remediations with `SubType`
//!   "Security Update" naming the product; hotpatch, security-only and
//!   rollup updates name the same product with other builds.
//! - **Fixed**: a CVE is fixed in a build at or above the *lowest* such
//!   `FixedBuild` for the product, because updates are cumulative (a month's
//!   document also lists CVEs fixed by an older month's update).
//! - **The month's cumulative update**: the product's Security Update with
//!   the highest `FixedBuild` of the month.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cvrf::{CvrfDocument, MonthId, Severity, VendorFix, Vulnerability, WindowsBuild};
use super::evidence::{Evidence, InstallationType};

/// The OS builds the rules know, and the product name of each in
/// Microsoft's data (`Server`; `Server Core` adds " (Server Core installation)").
pub const KNOWN_OS: [(u32, &str); 3] = [
    (17763, "Windows Server 2019"),
    (20348, "Windows Server 2022"),
    (26100, "Windows Server 2025"),
];

/// Why the rules cannot judge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The OS build's number is not in [`KNOWN_OS`].
    #[error(
        "OS build {0} is not an OS the patch rules know (they know {known}); the evidence must come from one of them",
        known = known_os()
    )]
    UnknownOs(WindowsBuild),
    /// The month's document does not name the product.
    #[error("the {month} security data names no product \"{product}\"")]
    UnknownProduct {
        /// The month.
        month: MonthId,
        /// The product's name.
        product: String,
    },
    /// The month's document gives one product name several ids.
    #[error(
        "the {month} security data names \"{product}\" with several ids ({ids}): cannot tell which one is meant"
    )]
    AmbiguousProduct {
        /// The month.
        month: MonthId,
        /// The product's name.
        product: String,
        /// Its ids, comma-separated.
        ids: String,
    },
    /// A security update for the product gives no Windows build as its fixed build.
    #[error(
        "the {month} security data gives {kb}, which fixes {cve} in \"{product}\", the FixedBuild \"{fixed_build}\", which is not a Windows build: cannot tell which builds carry it"
    )]
    FixedBuild {
        /// The month.
        month: MonthId,
        /// The CVE.
        cve: String,
        /// The update.
        kb: String,
        /// The product's name.
        product: String,
        /// The fixed build as written.
        fixed_build: String,
    },
}

/// Every product name the rules know: each OS of [`KNOWN_OS`], and its
/// Server Core installation.
pub fn known_products() -> Vec<String> {
    KNOWN_OS
        .iter()
        .flat_map(|(_, name)| [name.to_string(), server_core(name)])
        .collect()
}

/// The Server Core product of an OS's name.
fn server_core(os: &str) -> String {
    format!("{os} (Server Core installation)")
}

/// `20348 (Windows Server 2022), ...` for messages.
fn known_os() -> String {
    KNOWN_OS
        .iter()
        .map(|(build, name)| format!("{build} ({name})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the rules judge: a product, by its name in Microsoft's data, at an
/// OS build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `Windows Server 2022` or `Windows Server 2022 (Server Core installation)`.
    pub product: String,
    /// The OS build, `10.0.20348.2527`.
    pub build: WindowsBuild,
}

impl Target {
    /// The product a build of `installation` is: its OS from the build's
    /// number ([`KNOWN_OS`]); an unknown number is refused.
    pub fn new(build: WindowsBuild, installation: InstallationType) -> Result<Target, PatchError> {
        let os = KNOWN_OS
            .iter()
            .find(|(number, _)| *number == build.build && (build.major, build.minor) == (10, 0))
            .map(|(_, name)| *name)
            .ok_or(PatchError::UnknownOs(build))?;
        let product = match installation {
            InstallationType::Server => os.to_string(),
            InstallationType::ServerCore => server_core(os),
        };
        Ok(Target { product, build })
    }

    /// The target the evidence describes.
    pub fn of(evidence: &Evidence) -> Result<Target, PatchError> {
        Target::new(evidence.os.build, evidence.os.installation_type)
    }
}

/// The update a month's fixes for a product come in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CumulativeUpdate {
    /// `KB5039227`.
    pub kb: String,
    /// The build it brings, `10.0.20348.2527`.
    pub fixed_build: WindowsBuild,
}

/// A CVE of a month, and the first update that fixes it in a product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CveFix {
    /// `CVE-2024-30080`.
    pub cve: String,
    /// Its title.
    pub title: String,
    /// Its severity for the product.
    pub severity: Severity,
    /// Its highest CVSS base score, if scored.
    pub cvss: Option<f64>,
    /// The lowest build that carries the fix.
    pub fixed_build: WindowsBuild,
    /// The update that brings that build.
    pub kb: String,
    /// The month whose data says so.
    pub month: MonthId,
}

/// Equal to itself: a score is a parsed 0-10 or a JSON number, never NaN.
impl Eq for CveFix {}

/// How many CVEs of each severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeverityCounts {
    /// Critical.
    pub critical: usize,
    /// Important.
    pub important: usize,
    /// Moderate.
    pub moderate: usize,
    /// Low.
    pub low: usize,
    /// Rated with no severity.
    pub unrated: usize,
}

impl SeverityCounts {
    /// The counts of `fixes`' severities.
    pub fn of<'a>(fixes: impl IntoIterator<Item = &'a CveFix>) -> SeverityCounts {
        let mut counts = SeverityCounts::default();
        for fix in fixes {
            *counts.slot(fix.severity) += 1;
        }
        counts
    }

    fn slot(&mut self, severity: Severity) -> &mut usize {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::Important => &mut self.important,
            Severity::Moderate => &mut self.moderate,
            Severity::Low => &mut self.low,
            Severity::Unrated => &mut self.unrated,
        }
    }

    /// The count of one severity.
    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::Important => self.important,
            Severity::Moderate => self.moderate,
            Severity::Low => self.low,
            Severity::Unrated => self.unrated,
        }
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.critical + self.important + self.moderate + self.low + self.unrated
    }
}

impl std::fmt::Display for SeverityCounts {
    /// `1 Critical, 29 Important` (the severities present, most severe first).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = Severity::MOST_SEVERE_FIRST
            .iter()
            .filter(|s| self.get(**s) > 0)
            .map(|s| format!("{} {s}", self.get(*s)))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A build judged against one month: which of the month's CVEs for its
/// product it still misses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// The month judged against.
    pub month: MonthId,
    /// The product's name in Microsoft's data.
    pub product: String,
    /// Its id in that month's data.
    pub product_id: String,
    /// The month's cumulative update for the product; `None` when the month
    /// has no security update for it.
    pub cumulative_update: Option<CumulativeUpdate>,
    /// The build judged.
    pub os_build: WindowsBuild,
    /// How many CVEs the month fixes in the product.
    pub cves: usize,
    /// The CVEs the build does not carry the fix of, most severe first.
    pub missing: Vec<CveFix>,
    /// The missing CVEs by severity.
    pub missing_by_severity: SeverityCounts,
}

/// The month's CVEs for `product_id`, each with its lowest Security Update
/// build, in document order.
fn product_fixes(
    month: &CvrfDocument,
    product: &str,
    product_id: &str,
) -> Result<Vec<CveFix>, PatchError> {
    let mut fixes = Vec::new();
    for vulnerability in &month.vulnerabilities {
        if let Some(fix) = lowest_fix(month, vulnerability, product, product_id)? {
            fixes.push(fix);
        }
    }
    Ok(fixes)
}

/// The Windows build a security update for the product brings.
fn windows_build(
    month: &CvrfDocument,
    vulnerability: &Vulnerability,
    fix: &VendorFix,
    product: &str,
) -> Result<WindowsBuild, PatchError> {
    fix.windows_build().ok_or_else(|| PatchError::FixedBuild {
        month: month.id,
        cve: vulnerability.cve.clone(),
        kb: fix.kb.clone(),
        product: product.to_string(),
        fixed_build: fix.fixed_build.clone(),
    })
}

/// The lowest Security Update build that fixes `vulnerability` in the product, if any.
fn lowest_fix(
    month: &CvrfDocument,
    vulnerability: &Vulnerability,
    product: &str,
    product_id: &str,
) -> Result<Option<CveFix>, PatchError> {
    let mut lowest: Option<(WindowsBuild, &str)> = None;
    for fix in vulnerability
        .fixes
        .iter()
        .filter(|f| f.is_security_update() && f.products.iter().any(|p| p == product_id))
    {
        let build = windows_build(month, vulnerability, fix, product)?;
        if lowest.is_none_or(|(b, _)| build < b) {
            lowest = Some((build, &fix.kb));
        }
    }
    Ok(lowest.map(|(fixed_build, kb)| CveFix {
        cve: vulnerability.cve.clone(),
        title: vulnerability.title.clone(),
        severity: vulnerability
            .severities
            .get(product_id)
            .copied()
            .unwrap_or(Severity::Unrated),
        cvss: vulnerability.cvss.as_ref().map(|c| c.base_score),
        fixed_build,
        kb: kb.to_string(),
        month: month.id,
    }))
}

/// The id of the product named `product` in `month`'s product tree.
pub fn product_id<'a>(month: &'a CvrfDocument, product: &str) -> Result<&'a str, PatchError> {
    let mut ids = month.product_ids(product);
    ids.sort_unstable();
    ids.dedup();
    match ids.as_slice() {
        [id] => Ok(id),
        [] => Err(PatchError::UnknownProduct {
            month: month.id,
            product: product.to_string(),
        }),
        many => Err(PatchError::AmbiguousProduct {
            month: month.id,
            product: product.to_string(),
            ids: many.join(", "),
        }),
    }
}

/// The month's cumulative update for the product: its Security Update with
/// the highest fixed build (`None` when the month has none for it).
pub fn cumulative_update(
    month: &CvrfDocument,
    product: &str,
) -> Result<Option<CumulativeUpdate>, PatchError> {
    let id = product_id(month, product)?;
    let mut highest: Option<CumulativeUpdate> = None;
    for vulnerability in &month.vulnerabilities {
        for fix in vulnerability
            .fixes
            .iter()
            .filter(|f| f.is_security_update() && f.products.iter().any(|p| p == id))
        {
            let build = windows_build(month, vulnerability, fix, product)?;
            if highest.as_ref().is_none_or(|h| build > h.fixed_build) {
                highest = Some(CumulativeUpdate {
                    kb: fix.kb.clone(),
                    fixed_build: build,
                });
            }
        }
    }
    Ok(highest)
}

/// Most severe first, then the highest score, then by CVE.
fn by_gravity(a: &CveFix, b: &CveFix) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then(b.cvss.unwrap_or(0.0).total_cmp(&a.cvss.unwrap_or(0.0)))
        .then_with(|| a.cve.cmp(&b.cve))
}

/// Which of `month`'s CVEs for the target's product its build misses: those
/// whose lowest Security Update build is above it.
pub fn exposure(month: &CvrfDocument, target: &Target) -> Result<Exposure, PatchError> {
    let id = product_id(month, &target.product)?;
    let fixes = product_fixes(month, &target.product, id)?;
    let cves = fixes.len();
    let mut missing: Vec<CveFix> = fixes
        .into_iter()
        .filter(|fix| target.build < fix.fixed_build)
        .collect();
    missing.sort_by(by_gravity);
    Ok(Exposure {
        month: month.id,
        product: target.product.clone(),
        product_id: id.to_string(),
        cumulative_update: cumulative_update(month, &target.product)?,
        os_build: target.build,
        cves,
        missing_by_severity: SeverityCounts::of(&missing),
        missing,
    })
}

/// Something the evidence says that the verdict does not count but a person
/// should know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Warning {
    /// The build says the month's cumulative update is in, and `Get-HotFix`
    /// does not list it (an update provisioner may have skipped it, or the
    /// build came from a base image that already had it).
    CumulativeUpdateNotInHotfixes {
        /// The update.
        kb: String,
    },
    /// Windows waits for a reboot: the build read may not be the one the
    /// image boots into.
    RebootPending,
    /// The evidence was written by a stand-in, not read from Windows.
    StandIn,
    /// The build could not read one of its sources (`hotfixes`, `updates`,
    /// `defender`, ...).
    SourceUnavailable {
        /// Which.
        source: String,
        /// The error it gave.
        error: String,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::CumulativeUpdateNotInHotfixes { kb } => write!(
                f,
                "the OS build says the cumulative update {kb} is installed, but Get-HotFix does not list it"
            ),
            Warning::RebootPending => f.write_str(
                "Windows was waiting for a reboot when the evidence was read: the OS build may not be final",
            ),
            Warning::StandIn => {
                f.write_str("the evidence is a stand-in written by the build, not read from Windows")
            }
            Warning::SourceUnavailable { source, error } => {
                write!(f, "the build could not read {source}: {error}")
            }
        }
    }
}

/// The evidence of one image judged against one month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// What the build misses.
    #[serde(flatten)]
    pub exposure: Exposure,
    /// True when it misses nothing.
    pub compliant: bool,
    /// What the evidence says besides (see [`Warning`]).
    pub warnings: Vec<Warning>,
}

/// Judges `evidence` against `month`: the exposure of its OS build, and the
/// warnings of its cross-checks (the cumulative update absent from
/// `hotfixes` while the build says it is installed, when `Get-HotFix`
/// could be read; a pending reboot; a stand-in; each source the build
/// could not read). Compliant means no CVE missing; the warnings do not
/// change it.
pub fn assess(month: &CvrfDocument, evidence: &Evidence) -> Result<Verdict, PatchError> {
    let exposure = exposure(month, &Target::of(evidence)?)?;
    let mut warnings = Vec::new();
    if let Some(update) = &exposure.cumulative_update
        && exposure.os_build >= update.fixed_build
        && evidence.could_read("hotfixes")
        && !evidence.lists_hotfix(&update.kb)
    {
        warnings.push(Warning::CumulativeUpdateNotInHotfixes {
            kb: update.kb.clone(),
        });
    }
    if evidence.reboot_pending {
        warnings.push(Warning::RebootPending);
    }
    if evidence.stand_in {
        warnings.push(Warning::StandIn);
    }
    warnings.extend(
        evidence
            .unavailable
            .iter()
            .map(|u| Warning::SourceUnavailable {
                source: u.source.clone(),
                error: u.error.clone(),
            }),
    );
    Ok(Verdict {
        compliant: exposure.missing.is_empty(),
        exposure,
        warnings,
    })
}

/// The CVEs fixed in `product` by going from build `from` to build `to`,
/// across `months` (the months since the previous release): those whose
/// lowest Security Update build, over all the months, is above `from` and at
/// or below `to` (a CVE several months list counts once, from its lowest
/// build). Most severe first. Nothing when `to` is not above `from`.
pub fn newly_fixed(
    months: &[CvrfDocument],
    product: &str,
    from: WindowsBuild,
    to: WindowsBuild,
) -> Result<Vec<CveFix>, PatchError> {
    let mut lowest: BTreeMap<String, CveFix> = BTreeMap::new();
    for month in months {
        let id = product_id(month, product)?;
        for fix in product_fixes(month, product, id)? {
            match lowest.get(&fix.cve) {
                Some(known) if known.fixed_build <= fix.fixed_build => {}
                _ => {
                    lowest.insert(fix.cve.clone(), fix);
                }
            }
        }
    }
    let mut fixed: Vec<CveFix> = lowest
        .into_values()
        .filter(|fix| from < fix.fixed_build && fix.fixed_build <= to)
        .collect();
    fixed.sort_by(by_gravity);
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> WindowsBuild {
        text.parse().unwrap()
    }

    #[test]
    fn the_build_number_names_the_os_and_the_installation_type_the_product() {
        let server = Target::new(build("10.0.20348.2527"), InstallationType::Server).unwrap();
        assert_eq!(server.product, "Windows Server 2022");
        let core = Target::new(build("10.0.20348.1"), InstallationType::ServerCore).unwrap();
        assert_eq!(
            core.product,
            "Windows Server 2022 (Server Core installation)"
        );
        // Windows Server 2022, 23H2 Edition is another product (25398).
        let err = Target::new(build("10.0.25398.950"), InstallationType::ServerCore).unwrap_err();
        assert_eq!(err, PatchError::UnknownOs(build("10.0.25398.950")));
        let message = err.to_string();
        assert!(
            message.contains("OS build 10.0.25398.950 is not an OS the patch rules know")
                && message.contains("20348 (Windows Server 2022)"),
            "{message}"
        );
        assert!(Target::new(build("6.3.20348.1"), InstallationType::Server).is_err());
    }

    #[test]
    fn a_security_update_for_the_product_without_a_windows_build_is_refused() {
        use crate::domain::cvrf::Product;
        let month = CvrfDocument {
            id: "2024-Jun".parse().unwrap(),
            title: "June 2024 Security Updates".into(),
            initial_release: chrono::DateTime::UNIX_EPOCH,
            current_release: chrono::DateTime::UNIX_EPOCH,
            products: vec![Product {
                id: "11923".into(),
                name: "Windows Server 2022".into(),
            }],
            vulnerabilities: vec![Vulnerability {
                cve: "CVE-1".into(),
                title: String::new(),
                severities: BTreeMap::new(),
                cvss: None,
                fixes: vec![VendorFix {
                    kb: "KB1".into(),
                    sub_type: VendorFix::SECURITY_UPDATE.into(),
                    fixed_build: "https://aka.ms/OfficeSecurityReleases".into(),
                    products: vec!["11923".into()],
                }],
            }],
        };
        let target = Target::new(build("10.0.20348.1"), InstallationType::Server).unwrap();
        let err = exposure(&month, &target).unwrap_err().to_string();
        assert!(
            err.contains("KB1, which fixes CVE-1 in \"Windows Server 2022\", the FixedBuild \"https://aka.ms/OfficeSecurityReleases\", which is not a Windows build"),
            "{err}"
        );
    }

    #[test]
    fn severity_counts_print_the_severities_present_most_severe_first() {
        let counts = SeverityCounts {
            critical: 1,
            important: 29,
            ..SeverityCounts::default()
        };
        assert_eq!(counts.to_string(), "1 Critical, 29 Important");
        assert_eq!(counts.total(), 30);
        assert_eq!(SeverityCounts::default().to_string(), "none");
    }

    #[test]
    fn warnings_serialise_with_their_kind() {
        let warning = Warning::CumulativeUpdateNotInHotfixes { kb: "KB1".into() };
        assert_eq!(
            serde_json::to_value(&warning).unwrap(),
            serde_json::json!({ "kind": "cumulative-update-not-in-hotfixes", "kb": "KB1" })
        );
        assert_eq!(
            serde_json::to_value(Warning::RebootPending).unwrap(),
            serde_json::json!({ "kind": "reboot-pending" })
        );
    }
}
