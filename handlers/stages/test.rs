//! The test stage: the image's smoke test. Locally it is an HTTP check
//! against a URL or a command run in the template folder; on Azure (a later
//! adapter of the same stage) a temporary VM answers the HTTP check.

use std::time::Duration;

use super::{StageResult, run_short, truncate};
use crate::app::App;
use crate::config::{ImageConfig, SmokeTest};
use crate::domain::run::{Run, StageOutput};

/// Pause between two tries of an HTTP smoke check.
const HTTP_RETRY_PAUSE: Duration = Duration::from_secs(2);

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    match &image.settings.smoke {
        SmokeTest::Command {
            argv,
            timeout_seconds,
        } => {
            let run_dir = app.settings.run_dir(&run.id);
            let run_dir = std::path::absolute(&run_dir).unwrap_or(run_dir);
            let env = vec![
                ("RUN_ID".to_string(), run.id.clone()),
                ("RUN_DIR".to_string(), run_dir.display().to_string()),
                ("IMAGE_NAME".to_string(), run.image.clone()),
                ("IMAGE_VERSION".to_string(), run.version.to_string()),
                (
                    "GIT_COMMIT".to_string(),
                    run.trigger.commit.clone().unwrap_or_default(),
                ),
            ];
            let (program, args) = match argv.split_first() {
                Some(split) => split,
                None => return StageResult::Failed("the smoke test command is empty".into()),
            };
            let timeout = Duration::from_secs(*timeout_seconds);
            match run_short(program.as_ref(), args, &image.dir, &env, timeout).await {
                Ok(out) if out.code == Some(0) => StageResult::Succeeded(StageOutput::Tested {
                    checks: vec![format!(
                        "`{}` passed: {}",
                        argv.join(" "),
                        truncate(&out.output, 500)
                    )],
                }),
                Ok(out) => StageResult::Failed(format!(
                    "smoke test `{}` failed (exit {}): {}",
                    argv.join(" "),
                    out.code.map_or("by signal".into(), |c| c.to_string()),
                    truncate(&out.output, 2000)
                )),
                Err(e) => StageResult::Failed(format!("smoke test: {e}")),
            }
        }
        SmokeTest::Http {
            url,
            status,
            contains,
            timeout_seconds,
        } => {
            http_check(
                url,
                *status,
                contains.as_deref(),
                Duration::from_secs(*timeout_seconds),
            )
            .await
        }
    }
}

/// GETs `url` until it answers `status` (and contains `contains`) or time runs out.
async fn http_check(
    url: &str,
    status: u16,
    contains: Option<&str>,
    timeout: Duration,
) -> StageResult {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return StageResult::Retry(format!("cannot build an HTTP client: {e}")),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match client.get(url).send().await {
            Ok(response) => {
                let got = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let body_ok = contains.is_none_or(|c| body.contains(c));
                if got == status && body_ok {
                    return StageResult::Succeeded(StageOutput::Tested {
                        checks: vec![format!("GET {url} answered {got}")],
                    });
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
        if tokio::time::Instant::now() + HTTP_RETRY_PAUSE > deadline {
            return StageResult::Failed(format!(
                "smoke test GET {url} failed for {} s: {last}",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(HTTP_RETRY_PAUSE).await;
    }
}
