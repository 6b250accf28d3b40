//! The validate stage: checks that fail in seconds, before any VM exists.
//! First the factory's own checks of the template folder (it parses,
//! variables are declared, scripts exist, no secret literals, plugins pinned),
//! then `packer init` (1.7+), `packer fmt -check` and `packer validate`.
//! (A run whose inputs are identical to the image's last release is skipped
//! when it is created, before this stage: see [`crate::app::App::create_run`].)

use std::path::Path;
use std::time::Duration;

use super::result::StageResult;
use super::vars::packer_vars;
use crate::domain::image::ImageConfig;
use crate::domain::run::{BuildSpec, FindingRecord, Run, StageOutput};
use crate::packer::parse_version;
use crate::ports::executor::{Check, Executor};
use crate::template::{Finding, check_folder};

/// How long each packer check may take.
const PACKER_CHECK_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn run(
    executor: &dyn Executor,
    packer: Option<&Path>,
    run: &Run,
    image: &ImageConfig,
) -> StageResult {
    let dir = image.dir.clone();
    let report = match tokio::task::spawn_blocking(move || check_folder(&dir)).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return StageResult::Failed(format!("cannot read the template: {e}")),
        Err(e) => return StageResult::Retry(format!("template check task failed: {e}")),
    };
    let (errors, warnings): (Vec<&Finding>, Vec<&Finding>) =
        report.findings.iter().partition(|f| f.kind.is_error());
    if !errors.is_empty() {
        let listed: Vec<String> = errors.iter().take(10).map(|f| f.to_string()).collect();
        return StageResult::Failed(format!(
            "{} template problem(s) in {}: {}",
            errors.len(),
            image.name,
            listed.join("; ")
        ));
    }
    let mut findings: Vec<FindingRecord> = warnings.iter().map(|f| record(f)).collect();

    let Some(packer) = packer else {
        return StageResult::Succeeded(StageOutput::Validated {
            findings,
            packer_version: None,
        });
    };
    let check = |args: Vec<String>| Check {
        program: packer.to_path_buf(),
        args,
        dir: image.dir.clone(),
        env: Vec::new(),
        timeout: PACKER_CHECK_TIMEOUT,
    };
    let version_out = match executor.check(check(vec!["version".into()])).await {
        Ok(out) => out,
        Err(e) => return StageResult::Failed(format!("packer is configured but {e}")),
    };
    let Some(version) = parse_version(&version_out.output) else {
        return StageResult::Failed(format!(
            "cannot tell the version of {}: it printed {:?}",
            packer.display(),
            version_out.output
        ));
    };
    if report.requires_plugins && !version.supports_init() {
        findings.push(FindingRecord {
            file: String::new(),
            line: 0,
            kind: "packer-too-old".into(),
            error: false,
            message: format!(
                "the template pins plugins (required_plugins, packer 1.7+); packer {version} here cannot run init, fmt or validate on it, so only the factory's own checks ran"
            ),
        });
        return StageResult::Succeeded(StageOutput::Validated {
            findings,
            packer_version: Some(version.to_string()),
        });
    }
    let vars = packer_vars(&BuildSpec::of(run), image, &report.variables, None);
    let mut steps: Vec<(&str, Vec<String>)> = Vec::new();
    if version.supports_init() {
        steps.push(("packer init", vec!["init".into(), ".".into()]));
    }
    steps.push((
        "packer fmt -check",
        vec!["fmt".into(), "-check".into(), ".".into()],
    ));
    let mut validate = vec!["validate".to_string()];
    validate.extend(vars);
    validate.push(".".into());
    steps.push(("packer validate", validate));
    for (what, args) in steps {
        match executor.check(check(args)).await {
            Ok(out) if out.code == Some(0) => {}
            Ok(out) => {
                let detail = if what == "packer fmt -check" {
                    format!(
                        "these files are not formatted (run `packer fmt .`): {}",
                        out.output.replace('\n', ", ")
                    )
                } else {
                    out.output
                };
                return StageResult::Failed(format!("{what} failed for {}: {detail}", image.name));
            }
            Err(e) => return StageResult::Failed(format!("{what}: {e}")),
        }
    }
    StageResult::Succeeded(StageOutput::Validated {
        findings,
        packer_version: Some(version.to_string()),
    })
}

fn record(f: &Finding) -> FindingRecord {
    FindingRecord {
        file: f.file.clone(),
        line: f.line,
        kind: f.kind.as_str().to_string(),
        error: f.kind.is_error(),
        message: f.message.clone(),
    }
}
