//! `image-factory doctor`: what is wrong, found before a run finds it.
//!
//! This module is the pure part: a [`Finding`] per check (what is wrong and
//! what to do), the [`Report`] that orders them (failures first, then
//! warnings, notes and passes, each group in the order the checks ran), its
//! verdict and exit status, its JSON and its text, and the app settings the
//! deployed app needs. The checks themselves sit at the edges:
//! [`local`] (packer, images, settings and secrets, the app layout) and
//! [`deployed`] (the app in Azure, through Resource Manager).
//!
//! Secrets are never part of a finding: checks name settings, never values.

pub mod deployed;
pub mod local;

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

/// How bad a finding is. Only [`Severity::Failure`] fails the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The check passed.
    Ok,
    /// Worth knowing, nothing to fix (e.g. Azure not configured on a laptop).
    Info,
    /// Works, but something will go wrong or is missing.
    Warning,
    /// Something is wrong: a run would fail on it.
    Failure,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "note",
            Severity::Warning => "warn",
            Severity::Failure => "FAIL",
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check (`packer`, `image example`, `app layout`, ...).
    pub check: String,
    /// How bad it is.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl Finding {
    /// A passed check.
    pub fn ok(check: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            severity: Severity::Ok,
            message: message.into(),
            action: None,
        }
    }

    /// A note, with what to do if the operator wants it otherwise.
    pub fn info(
        check: impl Into<String>,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Finding {
        Finding::with_action(Severity::Info, check.into(), message.into(), action.into())
    }

    /// A warning and what to do.
    pub fn warning(
        check: impl Into<String>,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Finding {
        Finding::with_action(
            Severity::Warning,
            check.into(),
            message.into(),
            action.into(),
        )
    }

    /// A failure and what to do.
    pub fn failure(
        check: impl Into<String>,
        message: impl Into<String>,
        action: impl Into<String>,
    ) -> Finding {
        Finding::with_action(
            Severity::Failure,
            check.into(),
            message.into(),
            action.into(),
        )
    }

    fn with_action(severity: Severity, check: String, message: String, action: String) -> Finding {
        Finding {
            check,
            severity,
            message,
            action: Some(action),
        }
    }
}

/// Every finding of one doctor run, ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    findings: Vec<Finding>,
}

impl Report {
    /// Orders `findings`: most severe first, the checks' own order kept within
    /// a severity.
    pub fn new(mut findings: Vec<Finding>) -> Report {
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        Report { findings }
    }

    /// The findings, in report order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Whether nothing failed (warnings do not fail a report).
    pub fn healthy(&self) -> bool {
        self.count(Severity::Failure) == 0
    }

    /// The process exit status: 0 when healthy, 1 when something failed.
    pub fn exit_code(&self) -> u8 {
        if self.healthy() { 0 } else { 1 }
    }

    /// The verdict line.
    pub fn verdict(&self) -> String {
        let (failures, warnings) = (self.count(Severity::Failure), self.count(Severity::Warning));
        match (failures, warnings) {
            (0, 0) => format!("healthy: {} checks passed", self.findings.len()),
            (0, w) => format!("healthy, with {w} warning(s)"),
            (f, w) => format!("{f} problem(s) to fix before a run, {w} warning(s)"),
        }
    }

    /// The report as JSON: `healthy`, `failures`, `warnings`, `verdict` and `findings`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "healthy": self.healthy(),
            "failures": self.count(Severity::Failure),
            "warnings": self.count(Severity::Warning),
            "verdict": self.verdict(),
            "findings": self.findings,
        })
    }

    /// The report as text: one line per finding, its action indented below.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&format!(
                "{:<4}  {}: {}\n",
                f.severity.label(),
                f.check,
                f.message
            ));
            if let Some(action) = &f.action {
                out.push_str(&format!("      -> {action}\n"));
            }
        }
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }
}

/// A setting the deployed app must have: any one of `names` satisfies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiredSetting {
    /// Accepted names (the first is the preferred one).
    pub names: Vec<String>,
    /// Who needs it and why.
    pub why: String,
}

/// What `serve` refuses to start without (see `startup::Secrets::from_env`).
pub const SERVE_REQUIRES: &[&str] = &["IMAGE_FACTORY_APPROVAL_KEYS"];

/// The app settings the deployed app needs, given its function.json files:
/// the Functions host's own storage, every
/// Service Bus connection the bindings name (identity-based
/// `<connection>__fullyQualifiedNamespace`, or a connection string under the
/// plain name), and what `serve` refuses to start without.
pub fn required_app_settings<'a>(
    function_jsons: impl IntoIterator<Item = &'a Value>,
) -> Vec<RequiredSetting> {
    // No FUNCTIONS_WORKER_RUNTIME: on Flex Consumption the runtime is the
    // site's functionAppConfig.runtime (`custom`), and the setting is refused.
    let mut required = vec![RequiredSetting {
        names: vec![
            "AzureWebJobsStorage__accountName".into(),
            "AzureWebJobsStorage".into(),
        ],
        why: "the Functions host keeps timers' schedules and keys in its storage account".into(),
    }];
    for connection in connections(function_jsons) {
        required.push(RequiredSetting {
            names: vec![
                format!("{connection}__fullyQualifiedNamespace"),
                connection.clone(),
            ],
            why: format!("the Service Bus bindings name the connection `{connection}`"),
        });
    }
    for name in SERVE_REQUIRES {
        required.push(RequiredSetting {
            names: vec![name.to_string()],
            why: "`image-factory serve` refuses to start without it".into(),
        });
    }
    required
}

/// Every `connection` a binding of `function_jsons` names, sorted.
pub fn connections<'a>(function_jsons: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    function_jsons
        .into_iter()
        .filter_map(|json| json.get("bindings").and_then(Value::as_array))
        .flatten()
        .filter_map(|b| b.get("connection").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The required settings that `present` does not satisfy.
pub fn missing_settings<'a>(
    required: &'a [RequiredSetting],
    present: &BTreeSet<String>,
) -> Vec<&'a RequiredSetting> {
    required
        .iter()
        .filter(|r| !r.names.iter().any(|n| present.contains(n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failures_come_first_and_the_checks_order_is_kept_within_a_severity() {
        let report = Report::new(vec![
            Finding::ok("packer", "1.10.0"),
            Finding::warning("image a", "unused variable", "remove it"),
            Finding::failure("image b", "parse error", "fix it"),
            Finding::info("azure", "not configured", "set it"),
            Finding::failure("app layout", "skipped", "move it"),
            Finding::ok("settings", "valid"),
        ]);
        let order: Vec<&str> = report.findings().iter().map(|f| f.check.as_str()).collect();
        assert_eq!(
            order,
            [
                "image b",
                "app layout",
                "image a",
                "azure",
                "packer",
                "settings"
            ]
        );
    }

    #[test]
    fn only_failures_make_the_report_unhealthy_and_the_exit_status_non_zero() {
        let warned = Report::new(vec![
            Finding::ok("packer", "1.10.0"),
            Finding::warning("image a", "unused variable", "remove it"),
            Finding::info("azure", "not configured", "set it"),
        ]);
        assert!(warned.healthy());
        assert_eq!(warned.exit_code(), 0);
        assert_eq!(warned.verdict(), "healthy, with 1 warning(s)");
        let failed = Report::new(vec![
            Finding::ok("packer", "1.10.0"),
            Finding::failure("images", "no folder", "create it"),
        ]);
        assert!(!failed.healthy());
        assert_eq!(failed.exit_code(), 1);
        assert!(failed.verdict().starts_with("1 problem(s)"));
        assert_eq!(Report::new(Vec::new()).exit_code(), 0);
    }

    #[test]
    fn the_json_and_text_name_every_finding_and_its_action() {
        let report = Report::new(vec![
            Finding::ok("packer", "packer 1.10.0"),
            Finding::failure("images", "images/: no such folder", "create it"),
        ]);
        let json = report.to_json();
        assert_eq!(json["healthy"], json!(false));
        assert_eq!(json["failures"], json!(1));
        assert_eq!(json["findings"][0]["severity"], json!("failure"));
        assert_eq!(json["findings"][0]["action"], json!("create it"));
        assert_eq!(json["findings"][1]["severity"], json!("ok"));
        assert!(json["findings"][1].get("action").is_none());
        let text = report.to_text();
        assert!(text.starts_with("FAIL  images: images/: no such folder\n      -> create it\n"));
        assert!(text.contains("ok    packer: packer 1.10.0\n"));
    }

    #[test]
    fn the_required_settings_follow_the_bindings_connections() {
        let functions = [
            json!({"bindings": [{"type": "serviceBusTrigger", "connection": "ServiceBus"}]}),
            json!({"bindings": [{"type": "serviceBus", "connection": "Other"}, {"type": "http"}]}),
        ];
        let required = required_app_settings(&functions);
        let first: Vec<&str> = required.iter().map(|r| r.names[0].as_str()).collect();
        assert_eq!(
            first,
            [
                "AzureWebJobsStorage__accountName",
                "Other__fullyQualifiedNamespace",
                "ServiceBus__fullyQualifiedNamespace",
                "IMAGE_FACTORY_APPROVAL_KEYS"
            ]
        );
        let present: BTreeSet<String> = [
            "AzureWebJobsStorage",
            "ServiceBus__fullyQualifiedNamespace",
            "Other",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let missing: Vec<&str> = missing_settings(&required, &present)
            .iter()
            .map(|r| r.names[0].as_str())
            .collect();
        assert_eq!(missing, ["IMAGE_FACTORY_APPROVAL_KEYS"]);
    }
}
