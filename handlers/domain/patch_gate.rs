//! The patch gate of the test stage: for an image whose `image.toml` has a
//! `[patch]` table, the build's evidence ([`super::evidence`]) judged
//! against Microsoft's data for the newest month ([`super::patch`]), and
//! what the run records of it ([`PatchRecord`]). Pure: the stage reads the
//! data and the clock and hands them in; every decision is here.
//!
//! - **The month**: the newest month Microsoft published; during the first
//!   `grace_days` days after its publication, the month before
//!   ([`grace_month`]): the month's update may not be buildable yet.
//! - **Fails the run**: no evidence (the template wrote none, or it is not
//!   valid), evidence of another product than `[patch] product`, any CVE
//!   of the month the OS build misses (each named with its severity and the
//!   KB that fixes it), a pending reboot.
//! - **Warns**: what [`super::patch::assess`] warns of (the cumulative
//!   update missing from `Get-HotFix` while the build says it is in, a
//!   stand-in evidence, a source the build could not read).
//! - **Waits**: when Microsoft's data cannot be read for a while (a
//!   transient error), the run waits and the stage is tried again
//!   ([`unreachable`]); it never passes silently: after
//!   `unverified_after_hours` it goes on to approval marked "patch level
//!   not verified" (recorded, and shown to approvers).
//! - **Newly fixed**: the CVEs the build fixes since the image's previous
//!   release ([`NewlyFixed`]), over the months from the one the previous
//!   release was judged against ([`months_between`]).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::cvrf::{CvrfDocument, MonthId, Severity, WindowsBuild};
use super::evidence::{Evidence, EvidenceRecord};
use super::patch::{
    CumulativeUpdate, CveFix, SeverityCounts, Target, Verdict, assess, newly_fixed,
};

/// Most months read back for the CVEs newly fixed since the previous
/// release: a year (an image released less often lists the year's).
pub const MAX_MONTHS: usize = 12;

/// Missing CVEs a failure's reason names before it counts the rest (the
/// record keeps them all).
const NAMED_IN_REASON: usize = 20;

/// How an attempt of the test stage that waits for Microsoft's data ends.
pub const WAITING_FOR_DATA: &str = "waiting for Microsoft's security data";

/// The `[patch]` section of `image.toml` (read and range-checked with the
/// rest of it, `domain::image`): the test stage checks the build's evidence
/// (`image-evidence.json`) against Microsoft's security data for the newest
/// month (docs/patch-evidence.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PatchSettings {
    /// The product the image is, as Microsoft's data names it
    /// (`Windows Server 2022`, `Windows Server 2022 (Server Core
    /// installation)`): the evidence's OS build and installation type must
    /// name the same.
    pub product: String,
    /// For this many days after a month was published, the gate judges
    /// against the month before (the month's update may not be buildable
    /// yet). 0: the newest month from its first day.
    #[serde(default)]
    pub grace_days: u32,
    /// How long the gate waits for Microsoft's data when it cannot be read,
    /// before the run goes on to its approvers marked "patch level not
    /// verified".
    #[serde(default = "default_unverified_hours")]
    pub unverified_after_hours: u32,
}

fn default_unverified_hours() -> u32 {
    24
}

/// What the run records of its patch gate (`Run::patch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchRecord {
    /// The product `[patch]` names.
    pub product: String,
    /// Where the gate stands.
    pub status: PatchStatus,
    /// The evidence judged against the month, when it was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why the month judged against is not the newest, when the grace rule
    /// picked the month before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    /// The CVEs fixed since the image's previous release, when it had one
    /// with evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newly_fixed: Option<NewlyFixed>,
    /// When the gate decided this.
    pub at: DateTime<Utc>,
}

/// Where the gate stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum PatchStatus {
    /// The build carries every fix of the month, with no reboot pending.
    Passed,
    /// The run fails: each reason in words.
    Failed {
        /// Why.
        reasons: Vec<String>,
    },
    /// Microsoft's data could not be read; the stage is tried again.
    Waiting {
        /// Since when it could not.
        since: DateTime<Utc>,
        /// When the run goes on unverified if it still cannot.
        until: DateTime<Utc>,
        /// The last error.
        error: String,
        /// Tries so far.
        tries: u32,
    },
    /// Microsoft's data could not be read for `[patch]
    /// unverified_after_hours`: the run went on to approval marked so.
    NotVerified {
        /// Since when it could not.
        since: DateTime<Utc>,
        /// The last error.
        error: String,
    },
}

/// The CVEs an image's build fixes since its previous release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewlyFixed {
    /// The previous release's version.
    pub since_version: String,
    /// Its OS build.
    pub since_build: WindowsBuild,
    /// The CVEs, most severe first.
    pub cves: Vec<CveFix>,
    /// Their counts by severity.
    pub by_severity: SeverityCounts,
    /// The months read.
    pub months: Vec<MonthId>,
    /// Months that could not be read, each with the reason (their CVEs
    /// may be missing from the list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
}

impl NewlyFixed {
    /// The CVEs fixed in `product` from `since_build` (the previous release
    /// `since_version`'s) to `build`, over `months` (`unread`: the months
    /// that could not be read, with why). `None` when the data names no
    /// such product in one of the months.
    pub fn of(
        months: &[CvrfDocument],
        unread: Vec<String>,
        product: &str,
        since_version: &str,
        since_build: WindowsBuild,
        build: WindowsBuild,
    ) -> Option<NewlyFixed> {
        let cves = newly_fixed(months, product, since_build, build).ok()?;
        Some(NewlyFixed {
            since_version: since_version.to_string(),
            since_build,
            by_severity: SeverityCounts::of(&cves),
            cves,
            months: months.iter().map(|m| m.id).collect(),
            unread,
        })
    }

    /// `fixes 27 CVEs (1 Critical) since 2026.1101.0`.
    pub fn summary(&self) -> String {
        let critical = self.by_severity.get(Severity::Critical);
        format!(
            "fixes {} CVE{} ({critical} Critical) since {}",
            self.cves.len(),
            if self.cves.len() == 1 { "" } else { "s" },
            self.since_version
        )
    }
}

/// The Security Update Guide's page of a CVE
/// (`https://msrc.microsoft.com/update-guide/vulnerability/CVE-2026-20822`);
/// `None` for an id that is not `CVE-<year>-<number>`.
pub fn update_guide_url(cve: &str) -> Option<String> {
    let mut parts = cve.split('-');
    let well_formed = parts.next() == Some("CVE")
        && parts
            .next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && parts
            .next()
            .is_some_and(|n| (4..=8).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    well_formed.then(|| format!("https://msrc.microsoft.com/update-guide/vulnerability/{cve}"))
}

/// What a release's notes say of its patch level: the OS build, the
/// cumulative update, how the gate judged it, and the CVEs newly fixed
/// since the previous release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityNote {
    /// The OS build the build read inside the image.
    pub os_build: WindowsBuild,
    /// True when the evidence is a stand-in (the example image).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
    /// The month's cumulative update, when the gate judged the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cumulative_update: Option<CumulativeUpdate>,
    /// The month judged against, when judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<MonthId>,
    /// The patch level in words ("carries every fix of 2026-Jan", "patch
    /// level not verified: ...", "not checked: the image has no [patch]").
    pub level: String,
    /// The CVEs newly fixed since the previous release, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newly_fixed: Option<NewlyFixed>,
}

impl SecurityNote {
    /// The note of a release whose build collected `evidence` and whose
    /// gate recorded `record`; `None` without evidence.
    pub fn of(record: Option<&PatchRecord>, evidence: Option<&Evidence>) -> Option<SecurityNote> {
        let evidence = evidence?;
        let verdict = record.and_then(|r| r.verdict.as_ref());
        let level = match (record, verdict) {
            (None, _) => {
                "not checked against Microsoft's data: the image's image.toml has no [patch]"
                    .to_string()
            }
            (
                Some(PatchRecord {
                    status: PatchStatus::NotVerified { since, error },
                    ..
                }),
                _,
            ) => format!(
                "patch level not verified: Microsoft's security data could not be read from {} on ({error})",
                when(*since)
            ),
            (Some(_), Some(v)) if v.compliant => format!(
                "carries every fix of {} for {} ({} CVEs)",
                v.exposure.month, v.exposure.product, v.exposure.cves
            ),
            (Some(_), Some(v)) => format!(
                "misses {} of {}'s {} CVEs ({})",
                v.exposure.missing.len(),
                v.exposure.month,
                v.exposure.cves,
                v.exposure.missing_by_severity
            ),
            (Some(r), None) => r.summary(),
        };
        Some(SecurityNote {
            os_build: evidence.os.build,
            stand_in: evidence.stand_in,
            cumulative_update: verdict.and_then(|v| v.exposure.cumulative_update.clone()),
            month: verdict.map(|v| v.exposure.month),
            level,
            newly_fixed: record.and_then(|r| r.newly_fixed.clone()),
        })
    }
}

/// The month before the newest that the grace rule picks, if it does: the
/// newest month (`newest`, first published `published`) is younger than
/// `grace_days` days at `now`.
pub fn grace_month(
    newest: MonthId,
    published: DateTime<Utc>,
    grace_days: u32,
    now: DateTime<Utc>,
) -> Option<MonthId> {
    (now < published + Duration::days(i64::from(grace_days)))
        .then(|| MonthId::from(newest.month().previous()))
}

/// Why the grace rule judged against `month` rather than `newest`.
pub fn grace_note(
    month: MonthId,
    newest: MonthId,
    published: DateTime<Utc>,
    grace_days: u32,
) -> String {
    format!(
        "judged against {month}: {newest} was published {} and [patch] grace_days is {grace_days}",
        published.format("%Y-%m-%d %H:%M UTC")
    )
}

/// The months from `from` to `to`, both included, the latest
/// [`MAX_MONTHS`] of them; empty when `from` is after `to`.
pub fn months_between(from: MonthId, to: MonthId) -> Vec<MonthId> {
    let mut months = Vec::new();
    let mut month = to;
    while month >= from && months.len() < MAX_MONTHS {
        months.push(month);
        month = MonthId::from(month.month().previous());
    }
    months.reverse();
    months
}

/// The month the previous release's CVEs are counted from: the month its
/// gate judged against, else the month before its evidence was collected
/// (its update is at most that old).
pub fn counted_from(previous: Option<&PatchRecord>, evidence: &Evidence) -> MonthId {
    previous
        .and_then(|p| p.verdict.as_ref())
        .map(|v| v.exposure.month)
        .unwrap_or_else(|| {
            let collected = super::calendar::Month::of(evidence.collected_at, chrono_tz::Tz::UTC);
            MonthId::from(collected.previous())
        })
}

/// The evidence the gate can judge, or why the run fails without asking
/// Microsoft: no evidence, evidence that is not valid, an OS the rules do
/// not know, or another product than `[patch] product`.
pub fn judgeable<'a>(
    settings: &PatchSettings,
    record: Option<&'a EvidenceRecord>,
) -> Result<&'a Evidence, String> {
    let record = record.ok_or_else(|| {
        "no evidence: the build collected none (the template declares no evidence_path variable, so the factory did not ask for image-evidence.json)".to_string()
    })?;
    let evidence = match record.evidence() {
        Some(evidence) => evidence,
        None => return Err(record.why_none().unwrap_or_default()),
    };
    let target = Target::of(evidence).map_err(|e| e.to_string())?;
    if target.product != settings.product {
        return Err(format!(
            "the evidence is of {} (build {}, installation {}), and [patch] product is {}",
            target.product, evidence.os.build, evidence.os.installation_type, settings.product
        ));
    }
    Ok(evidence)
}

/// The gate's record when its evidence could not be judged: the run fails.
pub fn refused(settings: &PatchSettings, reason: String, now: DateTime<Utc>) -> PatchRecord {
    PatchRecord {
        product: settings.product.clone(),
        status: PatchStatus::Failed {
            reasons: vec![reason],
        },
        verdict: None,
        grace: None,
        newly_fixed: None,
        at: now,
    }
}

/// Judges `evidence` against `month`: passed, or failed with every reason
/// (missing CVEs, a pending reboot, data that names no such product).
pub fn judge(
    settings: &PatchSettings,
    evidence: &Evidence,
    month: &CvrfDocument,
    grace: Option<String>,
    newly_fixed: Option<NewlyFixed>,
    now: DateTime<Utc>,
) -> PatchRecord {
    let verdict = match assess(month, evidence) {
        Ok(verdict) => verdict,
        Err(e) => {
            return PatchRecord {
                grace,
                ..refused(settings, e.to_string(), now)
            };
        }
    };
    let mut reasons = Vec::new();
    if !verdict.compliant {
        reasons.push(missing_reason(&verdict));
    }
    if evidence.reboot_pending {
        let markers = evidence
            .reboot_pending_reasons
            .as_ref()
            .filter(|r| !r.is_empty())
            .map_or(String::new(), |r| format!(" ({})", r.join(", ")));
        reasons.push(format!(
            "Windows was waiting for a reboot when the evidence was read{markers}: the image may not boot into build {}",
            evidence.os.build
        ));
    }
    PatchRecord {
        product: settings.product.clone(),
        status: if reasons.is_empty() {
            PatchStatus::Passed
        } else {
            PatchStatus::Failed { reasons }
        },
        verdict: Some(verdict),
        grace,
        newly_fixed,
        at: now,
    }
}

/// `build 10.0.20348.4529 misses 3 of 2026-Jan's 77 CVEs (1 Critical, 2
/// Important): CVE-… (Critical, KB5073457), …`.
fn missing_reason(verdict: &Verdict) -> String {
    let e = &verdict.exposure;
    let mut named: Vec<String> = e
        .missing
        .iter()
        .take(NAMED_IN_REASON)
        .map(|f| format!("{} ({}, {})", f.cve, f.severity, f.kb))
        .collect();
    if e.missing.len() > NAMED_IN_REASON {
        named.push(format!("and {} more", e.missing.len() - NAMED_IN_REASON));
    }
    format!(
        "build {} misses {} of {}'s {} CVEs for {} ({}): {}",
        e.os_build,
        e.missing.len(),
        e.month,
        e.cves,
        e.product,
        e.missing_by_severity,
        named.join(", ")
    )
}

/// The gate's record when Microsoft's data cannot be read now (`error`, a
/// transient one) at `now`, after `previous` (the run's record so far):
/// waiting, counted from the first time it could not; or, once
/// `unverified_after_hours` have passed since then, not verified.
pub fn unreachable(
    settings: &PatchSettings,
    previous: Option<&PatchRecord>,
    error: &str,
    now: DateTime<Utc>,
) -> PatchRecord {
    let (since, tries) = match previous.map(|p| &p.status) {
        Some(PatchStatus::Waiting { since, tries, .. }) => (*since, tries.saturating_add(1)),
        _ => (now, 1),
    };
    let until = since + Duration::hours(i64::from(settings.unverified_after_hours));
    let status = if now >= until {
        PatchStatus::NotVerified {
            since,
            error: error.to_string(),
        }
    } else {
        PatchStatus::Waiting {
            since,
            until,
            error: error.to_string(),
            tries,
        }
    };
    PatchRecord {
        product: settings.product.clone(),
        status,
        verdict: None,
        grace: None,
        newly_fixed: None,
        at: now,
    }
}

/// The OS build the evidence reads, with the product and installation,
/// and whether it is a stand-in.
pub fn os_build_fact(evidence: &Evidence) -> (&'static str, String) {
    (
        "OS build",
        format!(
            "{} ({}, {}){}",
            evidence.os.build,
            evidence
                .os
                .product_name
                .as_deref()
                .unwrap_or("product not read"),
            evidence.os.installation_type,
            if evidence.stand_in {
                "; stand-in evidence, not read from Windows"
            } else {
                ""
            }
        ),
    )
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl PatchRecord {
    /// Whether the run goes on past the gate (passed, or not verified).
    pub fn lets_through(&self) -> bool {
        matches!(
            self.status,
            PatchStatus::Passed | PatchStatus::NotVerified { .. }
        )
    }

    /// The reason a failed gate gives the run: its reasons joined.
    pub fn failure_reason(&self) -> Option<String> {
        match &self.status {
            PatchStatus::Failed { reasons } => Some(format!("patch gate: {}", reasons.join("; "))),
            _ => None,
        }
    }

    /// One line on where the gate stands (the test stage's summary).
    pub fn summary(&self) -> String {
        match (&self.status, &self.verdict) {
            (PatchStatus::Passed, Some(v)) => format!(
                "patch level: build {} carries every fix of {} for {}",
                v.exposure.os_build, v.exposure.month, v.exposure.product
            ),
            (PatchStatus::Passed, None) => "patch level: passed".into(),
            (PatchStatus::Failed { reasons }, _) => format!("patch gate: {}", reasons.join("; ")),
            (
                PatchStatus::Waiting {
                    since,
                    until,
                    error,
                    tries,
                },
                _,
            ) => format!(
                "{WAITING_FOR_DATA} since {} ({tries} tries; goes on unverified at {}): {error}",
                when(*since),
                when(*until)
            ),
            (PatchStatus::NotVerified { since, error }, _) => format!(
                "patch level not verified: Microsoft's security data could not be read since {}: {error}",
                when(*since)
            ),
        }
    }

    /// What an approver must see first, when there is something: the
    /// patch level not verified, fixes missing, a stand-in evidence.
    pub fn alert(&self) -> Option<String> {
        match &self.status {
            PatchStatus::NotVerified { since, error } => Some(format!(
                "Patch level not verified: Microsoft's security data could not be read from {} on ({error}). The image's fixes were not checked against the month.",
                when(*since)
            )),
            PatchStatus::Failed { reasons } => {
                Some(format!("Patch gate failed: {}", reasons.join("; ")))
            }
            PatchStatus::Passed | PatchStatus::Waiting { .. } => None,
        }
    }

    /// The facts people decide on, as (name, value) text: the OS build,
    /// the cumulative update, what the release fixes since the previous
    /// one, anything missing, the warnings. `evidence` is the build's.
    pub fn facts(&self, evidence: Option<&Evidence>) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        if let Some(evidence) = evidence {
            facts.push(os_build_fact(evidence));
        }
        if let Some(verdict) = &self.verdict {
            let e = &verdict.exposure;
            let update = match &e.cumulative_update {
                Some(u) => format!(
                    "{} (build {}) of {}, {}",
                    u.kb,
                    u.fixed_build,
                    e.month,
                    if e.os_build >= u.fixed_build {
                        "installed"
                    } else {
                        "NOT installed"
                    }
                ),
                None => format!("none in {} for {}", e.month, e.product),
            };
            facts.push(("Cumulative update", update));
            facts.push((
                "Patch level",
                if verdict.compliant {
                    format!("carries the fixes of all {} CVEs of {}", e.cves, e.month)
                } else {
                    format!(
                        "misses {} of {}'s {} CVEs ({})",
                        e.missing.len(),
                        e.month,
                        e.cves,
                        e.missing_by_severity
                    )
                },
            ));
            if !e.missing.is_empty() {
                facts.push((
                    "Missing",
                    e.missing
                        .iter()
                        .map(|f| format!("{} ({}, {})", f.cve, f.severity, f.kb))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
        if let Some(grace) = &self.grace {
            facts.push(("Month", grace.clone()));
        }
        if let Some(fixed) = &self.newly_fixed {
            facts.push(("Security fixes", fixed.summary()));
        }
        if let Some(alert) = self.alert() {
            facts.push(("Patch gate", alert));
        }
        for warning in self.verdict.iter().flat_map(|v| &v.warnings) {
            facts.push(("Patch warning", warning.to_string()));
        }
        facts
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::evidence::EvidenceRecord;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
    }

    fn settings() -> PatchSettings {
        PatchSettings {
            product: "Windows Server 2022".into(),
            grace_days: 3,
            unverified_after_hours: 24,
        }
    }

    fn evidence(build: &str, installation: &str, reboot: bool) -> EvidenceRecord {
        let text = format!(
            r#"{{"schema":"image-factory.evidence/1","collectedAt":"2026-01-14T03:00:00Z",
               "os":{{"installationType":"{installation}","build":"{build}"}},
               "rebootPending":{reboot},"hotfixes":[],"updates":[]}}"#
        );
        EvidenceRecord::read(Some(text.as_bytes()), "runs/r/image-evidence.json")
    }

    #[test]
    fn the_grace_rule_picks_the_month_before_for_the_first_days_only() {
        let jan: MonthId = "2026-Jan".parse().unwrap();
        let published = at(13, 8);
        let dec: MonthId = "2025-Dec".parse().unwrap();
        assert_eq!(grace_month(jan, published, 3, at(13, 9)), Some(dec));
        assert_eq!(grace_month(jan, published, 3, at(16, 7)), Some(dec));
        assert_eq!(grace_month(jan, published, 3, at(16, 8)), None);
        assert_eq!(grace_month(jan, published, 0, at(13, 8)), None);
        assert!(
            grace_note(dec, jan, published, 3)
                .contains("2026-Jan was published 2026-01-13 08:00 UTC")
        );
    }

    #[test]
    fn a_cves_page_is_linked_only_for_a_cve_id() {
        assert_eq!(
            update_guide_url("CVE-2024-30080").as_deref(),
            Some("https://msrc.microsoft.com/update-guide/vulnerability/CVE-2024-30080")
        );
        for bad in [
            "CVE-24-30080",
            "CVE-2024-30080x",
            "cve-2024-30080",
            "CVE-2024-1",
            "CVE-2024-30080/../x",
            "",
        ] {
            assert_eq!(update_guide_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn months_between_run_from_the_first_to_the_last_and_keep_the_latest_year() {
        let m = |s: &str| s.parse::<MonthId>().unwrap();
        let names = |months: Vec<MonthId>| months.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(months_between(m("2025-Nov"), m("2026-Jan"))),
            ["2025-Nov", "2025-Dec", "2026-Jan"]
        );
        assert_eq!(
            names(months_between(m("2026-Jan"), m("2026-Jan"))),
            ["2026-Jan"]
        );
        assert!(months_between(m("2026-Feb"), m("2026-Jan")).is_empty());
        let long = months_between(m("2020-Jan"), m("2026-Jan"));
        assert_eq!(long.len(), MAX_MONTHS);
        assert_eq!(long[0].to_string(), "2025-Feb");
    }

    #[test]
    fn no_evidence_or_evidence_of_another_product_fails_without_asking_microsoft() {
        let settings = settings();
        let none = judgeable(&settings, None).unwrap_err();
        assert!(none.contains("declares no evidence_path"), "{none}");
        let missing = EvidenceRecord::read(None, "runs/r/image-evidence.json");
        let err = judgeable(&settings, Some(&missing)).unwrap_err();
        assert!(
            err.starts_with("no evidence:") && err.contains("runs/r/image-evidence.json"),
            "{err}"
        );
        let invalid = EvidenceRecord::read(Some(b"[]"), "f");
        assert!(
            judgeable(&settings, Some(&invalid))
                .unwrap_err()
                .contains("was refused")
        );
        let core = evidence("10.0.20348.4648", "Server Core", false);
        let err = judgeable(&settings, Some(&core)).unwrap_err();
        assert!(
            err.contains("Windows Server 2022 (Server Core installation)")
                && err.contains("[patch] product is Windows Server 2022"),
            "{err}"
        );
        let unknown = evidence("10.0.25398.950", "Server", false);
        assert!(
            judgeable(&settings, Some(&unknown))
                .unwrap_err()
                .contains("not an OS the patch rules know")
        );
        assert!(
            judgeable(
                &settings,
                Some(&evidence("10.0.20348.4648", "Server", false))
            )
            .is_ok()
        );
        let record = refused(&settings, err, at(14, 0));
        assert!(!record.lets_through());
        assert!(
            record
                .failure_reason()
                .unwrap()
                .starts_with("patch gate: the evidence is of")
        );
    }

    #[test]
    fn an_unreachable_api_waits_from_the_first_failure_then_lets_the_run_through_unverified() {
        let settings = settings();
        let first = unreachable(&settings, None, "connection refused", at(14, 0));
        let PatchStatus::Waiting {
            since,
            until,
            tries,
            ..
        } = &first.status
        else {
            panic!("{first:?}")
        };
        assert_eq!((*since, *until, *tries), (at(14, 0), at(15, 0), 1));
        assert!(!first.lets_through() && first.failure_reason().is_none());
        let second = unreachable(&settings, Some(&first), "503", at(14, 23));
        assert!(
            matches!(second.status, PatchStatus::Waiting { since, tries: 2, .. } if since == at(14, 0))
        );
        assert!(
            second
                .summary()
                .contains("goes on unverified at 2026-01-15 00:00 UTC")
        );
        let late = unreachable(&settings, Some(&second), "503", at(15, 0));
        assert_eq!(
            late.status,
            PatchStatus::NotVerified {
                since: at(14, 0),
                error: "503".into()
            }
        );
        assert!(late.lets_through());
        assert!(
            late.alert()
                .unwrap()
                .starts_with("Patch level not verified")
        );
        // A new wait after a judged record starts its own count.
        let judged = refused(&settings, "x".into(), at(16, 0));
        let again = unreachable(&settings, Some(&judged), "timeout", at(17, 0));
        assert!(
            matches!(again.status, PatchStatus::Waiting { since, tries: 1, .. } if since == at(17, 0))
        );
    }
}
