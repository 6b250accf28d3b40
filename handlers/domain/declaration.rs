//! An image's declaration: what `image.toml`'s `[declare]` says every VM
//! made from the image contains (Windows features installed, language packs
//! installed, Defender on with signatures no older than a number of hours,
//! firewall profiles on, services running), the parameters its checker
//! takes, what the checker printed read into one result per check, and the
//! record the run keeps ([`DeclarationRecord`]: on the run page, the
//! approval page and messages, the release notes).
//!
//! The checker is a script of the image's folder (`[declare] checker`): a
//! PowerShell one (`.ps1`, the Windows image's `Test-ImageDeclaration.ps1`)
//! runs on the Azure test VM through Run Command, a shell one (`.sh`, the
//! example's stand-in) on this machine. Both print one line of JSON,
//! `{"checks":[{"name","expected","actual","ok"}]}`, whose check names this
//! module derives from the declaration ([`DeclareSettings::expected`]): a
//! declared check the checker did not report fails, so a checker that
//! stops early never passes an image.
//!
//! Pure. The table's ranges and name rules are checked with the rest of
//! `image.toml` (`image`); the test environments run the checker.

use serde::{Deserialize, Serialize};

use super::controls::{Lines, escape_controls};
use super::truncate;

/// The checker an image's `[declare]` runs when it names none.
pub const DEFAULT_CHECKER: &str = "scripts/Test-ImageDeclaration.ps1";

/// Bytes of a check's name a record keeps.
const NAME_KEPT: usize = 120;
/// Bytes of a check's expected or actual value a record keeps.
const VALUE_KEPT: usize = 300;
/// Failing checks a failure reason names before it counts the rest.
const FAILURES_NAMED: usize = 5;

/// The `[declare]` table of `image.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeclareSettings {
    /// Windows features (roles and features) that must be installed.
    #[serde(default)]
    pub features: Vec<String>,
    /// UI languages that must be installed (`fr-FR`).
    #[serde(default)]
    pub language_packs: Vec<String>,
    /// Defender must be on with signatures at most this many hours old
    /// when the test VM is checked; `None`: Defender is not checked.
    #[serde(default)]
    pub defender_signature_max_age_hours: Option<u32>,
    /// Firewall profiles that must be on.
    #[serde(default)]
    pub firewall_profiles: Vec<FirewallProfile>,
    /// Services that must be running (service names, not display names).
    #[serde(default)]
    pub services: Vec<String>,
    /// The checker: a script of the image's folder, `.ps1` (run on the
    /// Azure test VM through Run Command) or `.sh` (run on this machine).
    #[serde(default = "default_checker")]
    pub checker: String,
}

fn default_checker() -> String {
    DEFAULT_CHECKER.into()
}

impl Default for DeclareSettings {
    /// Nothing declared, the default checker.
    fn default() -> DeclareSettings {
        DeclareSettings {
            features: Vec::new(),
            language_packs: Vec::new(),
            defender_signature_max_age_hours: None,
            firewall_profiles: Vec::new(),
            services: Vec::new(),
            checker: default_checker(),
        }
    }
}

/// A Windows Firewall profile.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum FirewallProfile {
    /// The domain profile.
    Domain,
    /// The private profile.
    Private,
    /// The public profile.
    Public,
}

impl FirewallProfile {
    /// The profile's name as Windows writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            FirewallProfile::Domain => "Domain",
            FirewallProfile::Private => "Private",
            FirewallProfile::Public => "Public",
        }
    }
}

/// How a checker runs, from its file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckerKind {
    /// A PowerShell script: on the Azure test VM, through Run Command
    /// (`RunPowerShellScript`, the parameters by name).
    PowerShell,
    /// A shell script: on this machine with `sh`, the parameters in its
    /// environment (`DECLARE_FEATURES`, ...).
    Shell,
}

impl CheckerKind {
    /// The kind of checker `path` is, by its extension.
    pub fn of(path: &str) -> Option<CheckerKind> {
        if path.ends_with(".ps1") {
            Some(CheckerKind::PowerShell)
        } else if path.ends_with(".sh") {
            Some(CheckerKind::Shell)
        } else {
            None
        }
    }
}

/// One parameter of the checker: its name as the PowerShell checker takes
/// it, and its value (a list is one comma-separated string, as Run Command
/// passes every parameter as a string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    /// `Features`, `LanguagePacks`, `DefenderSignatureMaxAgeHours`,
    /// `FirewallProfiles` or `Services`.
    pub name: &'static str,
    /// The value.
    pub value: String,
}

impl Parameter {
    /// The environment variable a shell checker reads the parameter from
    /// (`DECLARE_FEATURES`, ...).
    pub fn environment_name(&self) -> String {
        let mut name = String::from("DECLARE");
        for c in self.name.chars() {
            if c.is_ascii_uppercase() {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }
}

/// One declared item, in the declaration's order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item<'a> {
    Feature(&'a str),
    LanguagePack(&'a str),
    Defender(u32),
    Firewall(FirewallProfile),
    Service(&'a str),
}

impl Item<'_> {
    /// The names of the checks the checker reports for the item.
    fn checks(&self) -> Vec<String> {
        match self {
            Item::Feature(name) => vec![format!("feature:{name}")],
            Item::LanguagePack(tag) => vec![format!("language-pack:{tag}")],
            Item::Defender(_) => vec![
                "defender:antivirus-enabled".into(),
                "defender:signature-age-hours".into(),
            ],
            Item::Firewall(profile) => vec![format!("firewall:{}", profile.as_str())],
            Item::Service(name) => vec![format!("service:{name}")],
        }
    }
}

impl DeclareSettings {
    /// Every declared item, in order: features, language packs, Defender,
    /// firewall profiles, services.
    fn items(&self) -> Vec<Item<'_>> {
        let mut items: Vec<Item<'_>> = self.features.iter().map(|f| Item::Feature(f)).collect();
        items.extend(self.language_packs.iter().map(|l| Item::LanguagePack(l)));
        items.extend(self.defender_signature_max_age_hours.map(Item::Defender));
        items.extend(self.firewall_profiles.iter().map(|p| Item::Firewall(*p)));
        items.extend(self.services.iter().map(|s| Item::Service(s)));
        items
    }

    /// Whether the table declares nothing.
    pub fn is_empty(&self) -> bool {
        self.items().is_empty()
    }

    /// The names of the checks the checker must report, in order
    /// (`feature:Web-Server`, ..., `defender:antivirus-enabled`,
    /// `defender:signature-age-hours`, `firewall:Domain`, `service:W3SVC`).
    pub fn expected(&self) -> Vec<String> {
        self.items().iter().flat_map(Item::checks).collect()
    }

    /// The checker's parameters for the whole declaration; a list left
    /// empty is left out (the checker does not check it).
    pub fn parameters(&self) -> Vec<Parameter> {
        parameters(&self.items())
    }

    /// The declaration cut into parameter sets of at most `max_checks`
    /// checks each (an item is never split; one of more checks than that
    /// goes alone): one Run Command each, whose output Azure keeps only
    /// the last 4,096 bytes of.
    pub fn batches(&self, max_checks: usize) -> Vec<Vec<Parameter>> {
        let mut batches = Vec::new();
        let mut batch: Vec<Item<'_>> = Vec::new();
        let mut checks = 0;
        for item in self.items() {
            let n = item.checks().len();
            if !batch.is_empty() && checks + n > max_checks {
                batches.push(parameters(&batch));
                batch.clear();
                checks = 0;
            }
            checks += n;
            batch.push(item);
        }
        if !batch.is_empty() {
            batches.push(parameters(&batch));
        }
        batches
    }
}

/// The parameters of `items`.
fn parameters(items: &[Item<'_>]) -> Vec<Parameter> {
    let list = |pick: &dyn Fn(&Item<'_>) -> Option<String>| {
        items.iter().filter_map(pick).collect::<Vec<_>>().join(",")
    };
    let all = [
        (
            "Features",
            list(&|i| match i {
                Item::Feature(f) => Some(f.to_string()),
                _ => None,
            }),
        ),
        (
            "LanguagePacks",
            list(&|i| match i {
                Item::LanguagePack(l) => Some(l.to_string()),
                _ => None,
            }),
        ),
        (
            "DefenderSignatureMaxAgeHours",
            list(&|i| match i {
                Item::Defender(hours) => Some(hours.to_string()),
                _ => None,
            }),
        ),
        (
            "FirewallProfiles",
            list(&|i| match i {
                Item::Firewall(p) => Some(p.as_str().to_string()),
                _ => None,
            }),
        ),
        (
            "Services",
            list(&|i| match i {
                Item::Service(s) => Some(s.to_string()),
                _ => None,
            }),
        ),
    ];
    all.into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| Parameter { name, value })
        .collect()
}

/// One check as the checker reported it (or as the factory recorded it
/// when the checker did not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `feature:Web-Server`, `service:W3SVC`, ...
    pub name: String,
    /// What the declaration asks for (`Installed`, `Running`, `<= 24`).
    pub expected: String,
    /// What the checker found.
    pub actual: String,
    /// Whether the check passed.
    pub ok: bool,
}

/// The checker's output as printed.
#[derive(Deserialize)]
struct Output {
    checks: Vec<CheckResult>,
}

/// Reads a checker's standard output: the last line that is its JSON
/// object. Every text is cut to a length and its control characters
/// escaped (it comes from the VM).
pub fn read_output(stdout: &str) -> Result<Vec<CheckResult>, String> {
    let parsed = stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|line| line.starts_with('{'))
        .find_map(|line| serde_json::from_str::<Output>(line).ok());
    let Some(output) = parsed else {
        let shown = escape_controls(stdout.trim(), Lines::Escape).into_owned();
        return Err(if shown.is_empty() {
            "the checker printed nothing".into()
        } else {
            format!(
                "the checker printed no result (one line of JSON with \"checks\"); its output ends with: {}",
                tail(&shown, 300)
            )
        });
    };
    Ok(output
        .checks
        .into_iter()
        .map(|c| CheckResult {
            name: clean(&c.name, NAME_KEPT),
            expected: clean(&c.expected, VALUE_KEPT),
            actual: clean(&c.actual, VALUE_KEPT),
            ok: c.ok,
        })
        .collect())
}

fn clean(text: &str, max: usize) -> String {
    truncate(&escape_controls(text, Lines::Escape), max)
}

/// The last `max` bytes of `text` or fewer, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// What the test stage recorded of an image's declaration checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclarationRecord {
    /// Which checker ran, and where (`scripts/Test-ImageDeclaration.ps1
    /// through Run Command in vm-smoke`).
    pub checker: String,
    /// One result per declared check, in the declaration's order, then any
    /// other the checker reported.
    pub checks: Vec<CheckResult>,
    /// Why the checker gave no result, when it did not (every declared
    /// check is then recorded failed, "not checked").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DeclarationRecord {
    /// The record of `settings`' checks from what `checker` reported, and
    /// why it gave no (complete) result, if it did not: a declared check
    /// missing from the report fails, "not reported" (or "not checked"
    /// when the checker gave no result).
    pub fn judge(
        settings: &DeclareSettings,
        checker: String,
        reported: Vec<CheckResult>,
        error: Option<String>,
    ) -> DeclarationRecord {
        let missing = if error.is_some() {
            "not checked: the checker gave no result"
        } else {
            "not reported by the checker"
        };
        let mut checks: Vec<CheckResult> = settings
            .expected()
            .iter()
            .map(|name| {
                reported
                    .iter()
                    .find(|r| r.name.eq_ignore_ascii_case(name))
                    .cloned()
                    .unwrap_or_else(|| CheckResult {
                        name: name.clone(),
                        expected: "a result".into(),
                        actual: missing.into(),
                        ok: false,
                    })
            })
            .collect();
        for extra in reported {
            if !checks
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&extra.name))
            {
                checks.push(extra);
            }
        }
        DeclarationRecord {
            checker,
            checks,
            error,
        }
    }

    /// [`DeclarationRecord::judge`] of one checker's output, read.
    pub fn of_output(
        settings: &DeclareSettings,
        checker: String,
        answer: Result<Vec<CheckResult>, String>,
    ) -> DeclarationRecord {
        match answer {
            Ok(reported) => DeclarationRecord::judge(settings, checker, reported, None),
            Err(e) => DeclarationRecord::judge(settings, checker, Vec::new(), Some(e)),
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.ok)
    }

    /// The checks that failed.
    pub fn failed(&self) -> Vec<&CheckResult> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    /// One line: how many checks passed, and which failed.
    pub fn summary(&self) -> String {
        let total = self.checks.len();
        let failed = self.failed();
        let passed = total - failed.len();
        let mut line = format!("{passed} of {total} declared checks passed");
        if let Some(error) = &self.error {
            line.push_str(&format!(" ({error})"));
        }
        if !failed.is_empty() {
            let named: Vec<String> = failed
                .iter()
                .take(FAILURES_NAMED)
                .map(|c| describe(c))
                .collect();
            line.push_str(&format!("; failed: {}", named.join("; ")));
            if failed.len() > FAILURES_NAMED {
                line.push_str(&format!(" and {} more", failed.len() - FAILURES_NAMED));
            }
        }
        line
    }

    /// Why the run fails, for a record that did not pass (the diagnosis
    /// table knows the words it starts with).
    pub fn failure_reason(&self) -> String {
        format!(
            "declaration checks failed ({}): {}",
            self.checker,
            self.summary()
        )
    }

    /// The facts people are shown: the summary, and the checker.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Declaration", self.summary()),
            ("Declaration checker", self.checker.clone()),
        ]
    }

    /// Each check on a line: `passed feature:Web-Server: Installed`.
    pub fn lines(&self) -> Vec<String> {
        self.checks
            .iter()
            .map(|c| {
                if c.ok {
                    format!("passed {}: {}", c.name, c.actual)
                } else {
                    format!("FAILED {}", describe(c))
                }
            })
            .collect()
    }
}

/// A failed check in words: `service:W3SVC: expected Running, found Stopped`.
fn describe(check: &CheckResult) -> String {
    format!(
        "{}: expected {}, found {}",
        check.name, check.expected, check.actual
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> DeclareSettings {
        DeclareSettings {
            features: vec!["Web-Server".into()],
            language_packs: vec!["fr-FR".into()],
            defender_signature_max_age_hours: Some(24),
            firewall_profiles: vec![
                FirewallProfile::Domain,
                FirewallProfile::Private,
                FirewallProfile::Public,
            ],
            services: vec!["W3SVC".into(), "WinDefend".into(), "mpssvc".into()],
            checker: DEFAULT_CHECKER.into(),
        }
    }

    /// The seed's sample output, as docs/windows-image.md shows it.
    const SAMPLE: &str = r#"{"checks":[{"name":"feature:Web-Server","expected":"Installed","actual":"Installed","ok":true},{"name":"language-pack:fr-FR","expected":"installed","actual":"installed","ok":true},{"name":"defender:antivirus-enabled","expected":"True","actual":"True","ok":true},{"name":"defender:signature-age-hours","expected":"<= 24","actual":"3.2 (signatures 1.443.512.0, updated 2026-02-11T02:40:13Z)","ok":true},{"name":"firewall:Domain","expected":"True","actual":"True","ok":true},{"name":"firewall:Private","expected":"True","actual":"True","ok":true},{"name":"firewall:Public","expected":"True","actual":"True","ok":true},{"name":"service:W3SVC","expected":"Running","actual":"Running","ok":true}]}"#;

    #[test]
    fn the_declaration_names_its_checks_and_parameters_as_the_checker_takes_them() {
        let d = seed();
        assert_eq!(
            d.expected(),
            [
                "feature:Web-Server",
                "language-pack:fr-FR",
                "defender:antivirus-enabled",
                "defender:signature-age-hours",
                "firewall:Domain",
                "firewall:Private",
                "firewall:Public",
                "service:W3SVC",
                "service:WinDefend",
                "service:mpssvc",
            ]
        );
        let params: Vec<(String, &str, String)> = d
            .parameters()
            .into_iter()
            .map(|p| (p.environment_name(), p.name, p.value))
            .collect();
        assert_eq!(
            params,
            [
                ("DECLARE_FEATURES".into(), "Features", "Web-Server".into()),
                (
                    "DECLARE_LANGUAGE_PACKS".into(),
                    "LanguagePacks",
                    "fr-FR".into()
                ),
                (
                    "DECLARE_DEFENDER_SIGNATURE_MAX_AGE_HOURS".into(),
                    "DefenderSignatureMaxAgeHours",
                    "24".into()
                ),
                (
                    "DECLARE_FIREWALL_PROFILES".into(),
                    "FirewallProfiles",
                    "Domain,Private,Public".into()
                ),
                (
                    "DECLARE_SERVICES".into(),
                    "Services",
                    "W3SVC,WinDefend,mpssvc".into()
                ),
            ]
        );
        let only_services = DeclareSettings {
            services: vec!["W3SVC".into()],
            ..DeclareSettings::default()
        };
        assert_eq!(
            only_services.parameters(),
            [Parameter {
                name: "Services",
                value: "W3SVC".into()
            }],
            "an empty list is not passed"
        );
        assert!(DeclareSettings::default().is_empty());
    }

    #[test]
    fn batches_hold_at_most_the_checks_asked_and_never_split_an_item() {
        let d = seed();
        let batches = d.batches(4);
        let names: Vec<Vec<String>> = batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|p| format!("{}={}", p.name, p.value))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [
                vec![
                    "Features=Web-Server".to_string(),
                    "LanguagePacks=fr-FR".into(),
                    "DefenderSignatureMaxAgeHours=24".into()
                ],
                vec![
                    "FirewallProfiles=Domain,Private,Public".into(),
                    "Services=W3SVC".into()
                ],
                vec!["Services=WinDefend,mpssvc".into()],
            ]
        );
        assert_eq!(d.batches(10).len(), 1);
        assert_eq!(d.batches(1).len(), 9, "Defender's two checks go alone");
        assert!(DeclareSettings::default().batches(8).is_empty());
    }

    #[test]
    fn the_checkers_output_is_read_into_one_result_per_declared_check() {
        let d = seed();
        let read = read_output(&format!("WARNING: noise\n{SAMPLE}\n")).expect("the sample");
        assert_eq!(read.len(), 8);
        let record = DeclarationRecord::of_output(&d, "sample".into(), Ok(read));
        assert!(!record.passed(), "two services were not reported");
        assert_eq!(record.checks.len(), 10);
        let failed: Vec<&str> = record.failed().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(failed, ["service:WinDefend", "service:mpssvc"]);
        assert_eq!(
            record.summary(),
            "8 of 10 declared checks passed; failed: service:WinDefend: expected a result, found not reported by the checker; service:mpssvc: expected a result, found not reported by the checker"
        );
        assert!(
            record
                .failure_reason()
                .starts_with("declaration checks failed (sample): 8 of 10")
        );

        let fewer = DeclareSettings {
            services: vec!["W3SVC".into()],
            ..seed()
        };
        let record = DeclarationRecord::of_output(&fewer, "sample".into(), read_output(SAMPLE));
        assert!(record.passed(), "{}", record.summary());
        assert_eq!(record.summary(), "8 of 8 declared checks passed");
        assert_eq!(record.lines()[0], "passed feature:Web-Server: Installed");
    }

    #[test]
    fn a_failing_check_an_extra_one_and_no_result_are_all_failures_in_words() {
        let d = DeclareSettings {
            services: vec!["W3SVC".into()],
            ..DeclareSettings::default()
        };
        let stopped = r#"{"checks":[{"name":"service:W3SVC","expected":"Running","actual":"Stopped","ok":false},{"name":"service:Extra","expected":"Running","actual":"Running","ok":true}]}"#;
        let record = DeclarationRecord::of_output(&d, "c".into(), read_output(stopped));
        assert_eq!(record.checks.len(), 2, "the extra check is kept");
        assert_eq!(
            record.summary(),
            "1 of 2 declared checks passed; failed: service:W3SVC: expected Running, found Stopped"
        );
        assert_eq!(
            record.lines()[0],
            "FAILED service:W3SVC: expected Running, found Stopped"
        );

        for (stdout, says) in [
            ("", "the checker printed nothing"),
            (
                "{\"checks\":[{\"name\":\"service:W3",
                "its output ends with: {\"checks\"",
            ),
            ("Get-Service : \u{1b}[31mboom", "<U+001B>[31mboom"),
        ] {
            let error = read_output(stdout).expect_err(stdout);
            assert!(error.contains(says), "{error}");
            let record = DeclarationRecord::of_output(&d, "c".into(), Err(error.clone()));
            assert!(!record.passed());
            assert_eq!(record.error.as_deref(), Some(error.as_str()));
            assert_eq!(
                record.checks[0].actual,
                "not checked: the checker gave no result"
            );
        }
    }

    #[test]
    fn what_the_vm_prints_is_cut_and_its_controls_escaped() {
        let long = "x".repeat(1000);
        let line = format!(
            r#"{{"checks":[{{"name":"service:W3SVC\u001b","expected":"Running","actual":"{long}","ok":false}}]}}"#
        );
        let read = read_output(&line).expect("valid JSON");
        assert_eq!(read[0].name, "service:W3SVC<U+001B>");
        assert!(read[0].actual.len() <= VALUE_KEPT + '…'.len_utf8());
    }

    #[test]
    fn the_record_reads_and_writes_as_the_run_document_holds_it() {
        let record = DeclarationRecord::of_output(&seed(), "c".into(), read_output(SAMPLE));
        let json = serde_json::to_value(&record).expect("JSON");
        assert_eq!(json["checks"][0]["name"], "feature:Web-Server");
        assert!(json.get("error").is_none());
        let back: DeclarationRecord = serde_json::from_value(json).expect("read back");
        assert_eq!(back, record);
    }
}
