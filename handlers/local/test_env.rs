//! The local test environment: the image's smoke test on this machine — the
//! `[smoke.command]` run in the template folder (with the run's id, folder,
//! image, version and commit in its environment), or the `[smoke.http]`
//! check GET until it answers as expected or its time runs out — then, for
//! an image with `[declare]`, its shell checker (`[declare] checker`, a
//! `.sh` of the image's folder) run with `sh` in the template folder, the
//! same environment plus the declaration as `DECLARE_*` variables, within
//! the smoke test's time. Its output is read into one result per declared
//! check (`domain::declaration`). A PowerShell checker runs only on the
//! Azure test VM: here it fails the test, saying so.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::declaration::{CheckerKind, DeclarationRecord, DeclareSettings, read_output};
use crate::domain::image::SmokeTest;
use crate::domain::run::Run;
use crate::domain::truncate;
use crate::local::executor::LocalExecutor;
use crate::ports::PortError;
use crate::ports::executor::{Check, Executor};
use crate::ports::test_env::{SmokeOrder, SmokeReport, TestEnvironment};

/// Pause between two tries of an HTTP smoke check.
const HTTP_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Runs smoke tests on this machine.
#[derive(Clone, Debug, Default)]
pub struct LocalTestEnvironment;

#[async_trait]
impl TestEnvironment for LocalTestEnvironment {
    fn accepts(&self, _order: &SmokeOrder<'_>) -> bool {
        true
    }

    async fn smoke(&self, order: &SmokeOrder<'_>) -> Result<SmokeReport, PortError> {
        let (mut report, timeout) = match &order.image.settings.smoke {
            SmokeTest::Command {
                argv,
                timeout_seconds,
            } => {
                let timeout = Duration::from_secs(*timeout_seconds);
                (command(order, argv, timeout).await?, timeout)
            }
            SmokeTest::Http {
                url,
                status,
                contains,
                timeout_seconds,
            } => {
                let timeout = Duration::from_secs(*timeout_seconds);
                (
                    http_check(url, *status, contains.as_deref(), timeout).await?,
                    timeout,
                )
            }
        };
        if report.failure.is_none()
            && let Some(declare) = &order.image.settings.declare
        {
            match declaration(order, declare, timeout).await {
                Ok(record) => report.declaration = Some(record),
                Err(reason) => report.failure = Some(reason),
            }
        }
        Ok(report)
    }

    /// A local test keeps nothing: a smoke command or check that was under
    /// way ends on its own timeout, and its result is not recorded.
    async fn free(&self, _run: &Run) -> Result<Option<String>, PortError> {
        Ok(None)
    }
}

fn passed(check: String) -> SmokeReport {
    SmokeReport {
        checks: vec![check],
        failure: None,
        declaration: None,
    }
}

fn failed(reason: String) -> SmokeReport {
    SmokeReport {
        checks: Vec::new(),
        failure: Some(reason),
        declaration: None,
    }
}

/// The run's facts a smoke command and a checker find in their environment.
fn run_environment(order: &SmokeOrder<'_>) -> Vec<(String, String)> {
    let run = order.run;
    let run_dir = std::path::absolute(&order.run_dir).unwrap_or_else(|_| order.run_dir.clone());
    vec![
        ("RUN_ID".to_string(), run.id.to_string()),
        ("RUN_DIR".to_string(), run_dir.display().to_string()),
        ("IMAGE_NAME".to_string(), run.image.clone()),
        ("IMAGE_VERSION".to_string(), run.version.to_string()),
        (
            "GIT_COMMIT".to_string(),
            run.trigger.commit.clone().unwrap_or_default(),
        ),
    ]
}

/// The `[smoke.command]` test.
async fn command(
    order: &SmokeOrder<'_>,
    argv: &[String],
    timeout: Duration,
) -> Result<SmokeReport, PortError> {
    let env = run_environment(order);
    let Some((program, args)) = argv.split_first() else {
        return Ok(failed("the smoke test command is empty".into()));
    };
    let check = Check {
        program: program.into(),
        args: args.to_vec(),
        dir: order.image.dir.clone(),
        env,
        timeout,
    };
    Ok(match LocalExecutor.check(check).await {
        Ok(out) if out.code == Some(0) => passed(format!(
            "`{}` passed: {}",
            argv.join(" "),
            truncate(&out.output, 500)
        )),
        Ok(out) => failed(format!(
            "smoke test `{}` failed (exit {}): {}",
            argv.join(" "),
            out.code.map_or("by signal".into(), |c| c.to_string()),
            truncate(&out.output, 2000)
        )),
        Err(e) => failed(format!("smoke test: {e}")),
    })
}

/// The declaration checks: the image's shell checker on this machine. `Err`
/// when it cannot run here (a PowerShell checker, a checker missing from
/// the image's folder, the process failing to start); its verdict,
/// whatever it printed, is the record.
async fn declaration(
    order: &SmokeOrder<'_>,
    declare: &DeclareSettings,
    timeout: Duration,
) -> Result<DeclarationRecord, String> {
    let checker = &declare.checker;
    if CheckerKind::of(checker) != Some(CheckerKind::Shell) {
        return Err(format!(
            "[declare] checker {checker} is a PowerShell script: it runs on the Azure test VM through Run Command, and this machine runs only a shell checker (.sh)"
        ));
    }
    if !order.image.dir.join(checker).is_file() {
        return Err(format!(
            "[declare] checker {checker} is not a file of the image's folder"
        ));
    }
    let mut env = run_environment(order);
    env.extend(
        declare
            .parameters()
            .into_iter()
            .map(|p| (p.environment_name(), p.value)),
    );
    let check = Check {
        program: "sh".into(),
        args: vec![checker.clone()],
        dir: order.image.dir.clone(),
        env,
        timeout,
    };
    let out = LocalExecutor
        .check(check)
        .await
        .map_err(|e| format!("the declaration checker {checker}: {e}"))?;
    let answer = match (read_output(&out.output), out.code) {
        (Ok(checks), _) => Ok(checks),
        (Err(e), Some(code)) => Err(format!("{e} (exit {code})")),
        (Err(e), None) => Err(format!("{e} (killed by a signal)")),
    };
    Ok(DeclarationRecord::of_output(
        declare,
        format!("{checker} on this machine"),
        answer,
    ))
}

/// GETs `url` until it answers `status` (and contains `contains`) or time runs out.
async fn http_check(
    url: &str,
    status: u16,
    contains: Option<&str>,
    timeout: Duration,
) -> Result<SmokeReport, PortError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| PortError::transient(format!("cannot build an HTTP client: {e}")))?;
    // A deadline past what the clock can count is never reached.
    let deadline = tokio::time::Instant::now().checked_add(timeout);
    loop {
        let last = match client.get(url).send().await {
            Ok(response) => {
                let got = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let body_ok = contains.is_none_or(|c| body.contains(c));
                if got == status && body_ok {
                    return Ok(passed(format!("GET {url} answered {got}")));
                }
                if got != status {
                    format!("answered {got}, expected {status}")
                } else {
                    format!(
                        "answered {got} without {:?} in the body",
                        contains.unwrap_or_default()
                    )
                }
            }
            Err(e) => format!("no answer ({e})"),
        };
        if deadline.is_some_and(|d| tokio::time::Instant::now() + HTTP_RETRY_PAUSE > d) {
            return Ok(failed(format!(
                "smoke test GET {url} failed for {} s: {last}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(HTTP_RETRY_PAUSE).await;
    }
}
