//! The CVRF parser and the patch rules on Microsoft's own documents: the
//! five months of the third-party folder (`msrc/cvrf/`, read from there),
//! checked against the facts measured in them (the folder's README), and the
//! rules' monotony checked over any builds (updates are cumulative, so a
//! higher build never misses more).

mod common;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use image_factory::domain::cvrf::{CvrfDocument, MonthId, Severity, WindowsBuild};
use image_factory::domain::evidence::{Evidence, InstallationType};
use image_factory::domain::patch::{
    self, CumulativeUpdate, KNOWN_OS, PatchError, Target, Warning, assess, exposure, newly_fixed,
};
use proptest::prelude::*;

/// The months in the folder, oldest first.
const MONTHS: [&str; 5] = ["2024-Jun", "2025-Sep", "2025-Nov", "2025-Dec", "2026-Jan"];

const WS2022: &str = "Windows Server 2022";
const WS2022_CORE: &str = "Windows Server 2022 (Server Core installation)";

/// Every month's document, parsed once.
fn months() -> &'static [CvrfDocument] {
    static MONTHS_READ: OnceLock<Vec<CvrfDocument>> = OnceLock::new();
    MONTHS_READ.get_or_init(|| {
        MONTHS
            .iter()
            .map(|id| {
                let path = common::third_party(&format!("msrc/cvrf/cvrfDocument-{id}.xml"));
                let xml = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                CvrfDocument::parse(&xml).unwrap_or_else(|e| panic!("{id}: {e}"))
            })
            .collect()
    })
}

fn month(id: &str) -> &'static CvrfDocument {
    months()
        .iter()
        .find(|m| m.id.to_string() == id)
        .unwrap_or_else(|| panic!("no month {id}"))
}

fn build(text: &str) -> WindowsBuild {
    text.parse().unwrap()
}

/// Windows Server 2022 at `10.0.20348.<revision>`.
fn ws2022(revision: u32) -> Target {
    Target::new(
        build(&format!("10.0.20348.{revision}")),
        InstallationType::Server,
    )
    .unwrap()
}

fn cves(fixes: &[patch::CveFix]) -> BTreeSet<String> {
    fixes.iter().map(|f| f.cve.clone()).collect()
}

#[test]
fn every_month_is_read_with_its_id_title_and_dates() {
    for (doc, id) in months().iter().zip(MONTHS) {
        assert_eq!(doc.id.to_string(), id);
        assert!(doc.title.ends_with("Security Updates"), "{}", doc.title);
        assert!(doc.current_release >= doc.initial_release, "{id}");
        assert!(
            doc.vulnerabilities.len() > 90,
            "{id}: {}",
            doc.vulnerabilities.len()
        );
    }
    // Documents are revised after release: 2025-Dec's is of 2026-01-03.
    let december = month("2025-Dec");
    assert_eq!(
        december.current_release.date_naive(),
        Utc.with_ymd_and_hms(2026, 1, 3, 0, 0, 0)
            .unwrap()
            .date_naive()
    );
    assert!(december.initial_release < december.current_release);
}

#[test]
fn windows_server_2022_is_found_by_name_in_every_month() {
    for doc in months() {
        assert_eq!(
            patch::product_id(doc, WS2022).unwrap(),
            "11923",
            "{}",
            doc.id
        );
        assert_eq!(
            patch::product_id(doc, WS2022_CORE).unwrap(),
            "11924",
            "{}",
            doc.id
        );
    }
    // Windows Server 2022, 23H2 Edition is another product, and another build.
    assert_eq!(
        patch::product_id(
            month("2024-Jun"),
            "Windows Server 2022, 23H2 Edition (Server Core installation)"
        )
        .unwrap(),
        "12244"
    );
    // Windows Server 2025 came out after June 2024.
    let target = Target::new(build("10.0.26100.1"), InstallationType::Server).unwrap();
    let err = exposure(month("2024-Jun"), &target).unwrap_err();
    assert!(
        matches!(&err, PatchError::UnknownProduct { product, .. } if product == "Windows Server 2025"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the 2024-Jun security data names no product \"Windows Server 2025\""
    );
}

#[test]
fn the_cumulative_update_of_each_month_is_its_highest_security_update() {
    let expected = [
        ("2024-Jun", "KB5039227", "10.0.20348.2527"),
        // Not in the README's list: measured in the document the same way.
        ("2025-Sep", "KB5065432", "10.0.20348.4171"),
        ("2025-Nov", "KB5068787", "10.0.20348.4405"),
        ("2025-Dec", "KB5071547", "10.0.20348.4529"),
        ("2026-Jan", "KB5073457", "10.0.20348.4648"),
    ];
    for (id, kb, fixed) in expected {
        let update = CumulativeUpdate {
            kb: kb.into(),
            fixed_build: build(fixed),
        };
        for product in [WS2022, WS2022_CORE] {
            assert_eq!(
                patch::cumulative_update(month(id), product).unwrap(),
                Some(update.clone()),
                "{id} {product}"
            );
        }
    }
}

#[test]
fn june_2024_fixes_30_cves_in_windows_server_2022_one_of_them_critical() {
    let june = month("2024-Jun");
    for installation in [InstallationType::Server, InstallationType::ServerCore] {
        let target = Target::new(build("10.0.20348.2461"), installation).unwrap();
        let before = exposure(june, &target).unwrap();
        assert_eq!(before.cves, 30);
        assert_eq!(before.missing.len(), 30, "May's build misses them all");
        assert_eq!(
            (
                before.missing_by_severity.critical,
                before.missing_by_severity.important
            ),
            (1, 29)
        );
        assert_eq!(before.missing_by_severity.total(), 30);
        let critical = &before.missing[0];
        assert_eq!(critical.cve, "CVE-2024-30080");
        assert_eq!(critical.severity, Severity::Critical);
        assert_eq!(critical.cvss, Some(9.8));
        assert_eq!(
            (critical.kb.as_str(), critical.fixed_build),
            ("KB5039227", build("10.0.20348.2527"))
        );
        assert!(critical.title.contains("MSMQ"), "{}", critical.title);
    }
}

#[test]
fn only_security_updates_count_not_the_hotpatch_of_the_same_month() {
    let june = month("2024-Jun");
    // June's hotpatch (KB5039330) brings 10.0.20348.2522 to the same
    // products: a build there does not carry the cumulative update.
    let hotpatch_build = exposure(june, &ws2022(2522)).unwrap();
    assert_eq!(hotpatch_build.missing.len(), 30);
    let at_the_update = exposure(june, &ws2022(2527)).unwrap();
    assert!(at_the_update.missing.is_empty());
    assert_eq!(
        at_the_update.cumulative_update.unwrap().kb,
        "KB5039227",
        "not the hotpatch's KB5039330"
    );
}

#[test]
fn cves_fixed_by_an_older_update_count_from_that_update_on() {
    // December 2025 lists two CVEs fixed only by October's KB5066782
    // (.4294), and one fixed by November's KB5068787 (.4405).
    let december = month("2025-Dec");
    let older = [
        ("CVE-2025-64679", "KB5066782", "10.0.20348.4294"),
        ("CVE-2025-64680", "KB5066782", "10.0.20348.4294"),
        ("CVE-2025-64678", "KB5068787", "10.0.20348.4405"),
    ];
    let before_october = exposure(december, &ws2022(4293)).unwrap();
    assert_eq!(before_october.cves, 32);
    assert_eq!(before_october.missing.len(), 32);
    for (cve, kb, fixed) in older {
        let fix = before_october
            .missing
            .iter()
            .find(|f| f.cve == cve)
            .unwrap();
        assert_eq!(
            (fix.kb.as_str(), fix.fixed_build),
            (kb, build(fixed)),
            "{cve}"
        );
    }
    let october = exposure(december, &ws2022(4294)).unwrap();
    assert_eq!(
        october.missing.len(),
        30,
        "October's update carries two of them"
    );
    let november = exposure(december, &ws2022(4405)).unwrap();
    assert_eq!(november.missing.len(), 29);
    assert!(november.missing.iter().all(|f| f.kb == "KB5071547"));
    assert!(
        exposure(december, &ws2022(4529))
            .unwrap()
            .missing
            .is_empty()
    );

    // November 2025 does the same with CVE-2025-62208 and -62209.
    let nov = exposure(month("2025-Nov"), &ws2022(4294)).unwrap();
    assert_eq!((nov.cves, nov.missing.len()), (31, 29));
    assert!(!cves(&nov.missing).contains("CVE-2025-62208"));
    assert!(!cves(&nov.missing).contains("CVE-2025-62209"));
}

#[test]
fn a_build_at_each_months_update_misses_nothing_for_every_os_the_rules_know() {
    for doc in months() {
        for (number, name) in KNOWN_OS {
            for installation in [InstallationType::Server, InstallationType::ServerCore] {
                let probe = Target::new(build(&format!("10.0.{number}.0")), installation).unwrap();
                let Some(update) = (match patch::cumulative_update(doc, &probe.product) {
                    Ok(update) => update,
                    Err(PatchError::UnknownProduct { .. })
                        if name == "Windows Server 2025" && doc.id.to_string() == "2024-Jun" =>
                    {
                        continue;
                    }
                    Err(e) => panic!("{}: {e}", doc.id),
                }) else {
                    panic!("{} has no security update for {}", doc.id, probe.product);
                };
                assert_eq!(
                    update.fixed_build.build, number,
                    "{} {}",
                    doc.id, probe.product
                );
                let at = Target::new(update.fixed_build, installation).unwrap();
                let judged = exposure(doc, &at).unwrap();
                assert!(
                    judged.missing.is_empty(),
                    "{} {}: {:?}",
                    doc.id,
                    at.product,
                    judged.missing
                );
                assert!(judged.cves > 0);
            }
        }
    }
}

/// Evidence of Windows Server 2022 at `build`, listing `hotfixes`.
fn evidence(build: &str, hotfixes: &[&str], reboot_pending: bool) -> Evidence {
    Evidence::parse(
        &serde_json::json!({
            "schema": "image-factory.evidence/1",
            "collectedAt": "2026-01-14T03:12:09Z",
            "os": { "productName": "Windows Server 2022 Datacenter", "installationType": "Server", "build": build },
            "rebootPending": reboot_pending,
            "hotfixes": hotfixes,
            "updates": [],
        })
        .to_string(),
    )
    .unwrap()
}

#[test]
fn evidence_is_judged_with_its_cross_checks() {
    let january = month("2026-Jan");
    let patched = assess(january, &evidence("10.0.20348.4648", &["KB5073457"], false)).unwrap();
    assert!(patched.compliant);
    assert!(patched.warnings.is_empty());
    assert_eq!(patched.exposure.product_id, "11923");

    let unlisted = assess(january, &evidence("10.0.20348.4648", &["KB5071547"], true)).unwrap();
    assert!(unlisted.compliant, "the build decides");
    assert_eq!(
        unlisted.warnings,
        [
            Warning::CumulativeUpdateNotInHotfixes {
                kb: "KB5073457".into()
            },
            Warning::RebootPending
        ]
    );

    let behind = assess(january, &evidence("10.0.20348.4529", &["KB5071547"], false)).unwrap();
    assert!(!behind.compliant);
    assert_eq!(behind.exposure.missing.len(), 77);
    assert_eq!(behind.exposure.missing_by_severity.critical, 1);
    assert!(
        behind.warnings.is_empty(),
        "the update is not installed: nothing to cross-check"
    );
    let json = serde_json::to_value(&behind).unwrap();
    for field in [
        "month",
        "product",
        "productId",
        "cumulativeUpdate",
        "osBuild",
        "compliant",
        "missing",
    ] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
    assert_eq!(json["month"], "2026-Jan");
    assert_eq!(
        json["cumulativeUpdate"],
        serde_json::json!({ "kb": "KB5073457", "fixedBuild": "10.0.20348.4648" })
    );
    let first = &json["missing"][0];
    assert_eq!(first["severity"], "Critical");
    assert_eq!(first["kb"], "KB5073457");
    assert_eq!(first["fixedBuild"], "10.0.20348.4648");

    // Windows Server 2016 (14393) is not an OS the rules know.
    let server_2016 = evidence("10.0.14393.1", &[], false);
    assert!(matches!(
        assess(january, &server_2016),
        Err(PatchError::UnknownOs(_))
    ));
}

#[test]
fn newly_fixed_lists_what_a_new_release_brings_across_months() {
    let (nov, dec) = (month("2025-Nov").clone(), month("2025-Dec").clone());
    // From November's update to December's: December's 29 new CVEs; the
    // three December lists with older fixes were already in.
    let fixed = newly_fixed(
        &[nov.clone(), dec.clone()],
        WS2022,
        build("10.0.20348.4405"),
        build("10.0.20348.4529"),
    )
    .unwrap();
    assert_eq!(fixed.len(), 29);
    assert!(
        fixed
            .iter()
            .all(|f| f.kb == "KB5071547" && f.month == "2025-Dec".parse::<MonthId>().unwrap())
    );
    // From October's update: November's 29 and December's 29 and 64678.
    let since_october = newly_fixed(
        &[nov, dec],
        WS2022,
        build("10.0.20348.4294"),
        build("10.0.20348.4529"),
    )
    .unwrap();
    assert_eq!(since_october.len(), 29 + 29 + 1);
    assert!(cves(&since_october).contains("CVE-2025-64678"));
    assert!(!cves(&since_october).contains("CVE-2025-64679"));
    assert!(
        since_october
            .windows(2)
            .all(|w| w[0].severity >= w[1].severity),
        "most severe first"
    );
    // Going back fixes nothing.
    assert!(
        newly_fixed(
            months(),
            WS2022,
            build("10.0.20348.4648"),
            build("10.0.20348.2527")
        )
        .unwrap()
        .is_empty()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_higher_build_never_misses_more(month in 0..MONTHS.len(), a in 2000u32..5000, b in 2000u32..5000) {
        let (low, high) = (a.min(b), a.max(b));
        let doc = &months()[month];
        let at_low = cves(&exposure(doc, &ws2022(low)).unwrap().missing);
        let at_high = cves(&exposure(doc, &ws2022(high)).unwrap().missing);
        prop_assert!(at_high.is_subset(&at_low), "{} at {high} misses {:?} more than at {low}", doc.id, at_high.difference(&at_low));
        // What the step fixed is exactly what it no longer misses.
        let fixed = cves(&newly_fixed(std::slice::from_ref(doc), WS2022, ws2022(low).build, ws2022(high).build).unwrap());
        prop_assert_eq!(fixed, at_low.difference(&at_high).cloned().collect::<BTreeSet<_>>());
    }

    #[test]
    fn steps_add_up(a in 2000u32..5000, b in 2000u32..5000, c in 2000u32..5000) {
        let mut steps = [a, b, c];
        steps.sort();
        let fixed = |from: u32, to: u32| cves(&newly_fixed(months(), WS2022, ws2022(from).build, ws2022(to).build).unwrap());
        let (first, second) = (fixed(steps[0], steps[1]), fixed(steps[1], steps[2]));
        prop_assert!(first.is_disjoint(&second));
        prop_assert_eq!(fixed(steps[0], steps[2]), first.union(&second).cloned().collect::<BTreeSet<_>>());
    }
}
