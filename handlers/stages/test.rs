//! The test stage: the image's smoke test. Locally it is an HTTP check
//! against a URL or a command run in the template folder.
//!
//! On Azure (the subscription is set, the build produced a gallery version or
//! a managed image, and the smoke test is `[smoke.http]`), the check runs
//! inside a temporary VM made from that image (`azure::testvm`): one resource
//! group per run, deleted in every outcome. What was created, what answered
//! and how the group was cleaned up are the stage's checks, or its failure
//! reason. A transient Resource Manager failure (throttling after the
//! client's own retries, 5xx, transport) leaves the message to be delivered
//! again on the first two deliveries (deterministic names: nothing is
//! created twice); from the third it is recorded as the stage's failure.
//! A `[smoke.command]` test runs locally as before.

use std::time::Duration;

use super::{StageResult, run_short, truncate};
use crate::app::App;
use crate::azure::Azure;
use crate::azure::testvm::{self, Cleanup, SmokeCheck, TestPlan};
use crate::config::{ImageConfig, SmokeTest};
use crate::domain::run::{Run, Stage, StageOutput};

/// Pause between two tries of an HTTP smoke check.
const HTTP_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// Deliveries of the test stage that retry a transient Azure failure; from
/// this one on it is recorded as the stage's failure.
const LAST_RETRIED_DELIVERY: u32 = 2;

pub(super) async fn run(app: &App, run: &Run, image: &ImageConfig) -> StageResult {
    if let (Some(azure), SmokeTest::Http { .. }, Some(image_id)) =
        (&app.azure, &image.settings.smoke, built_image(run))
    {
        return on_azure(app, azure, run, image, image_id).await;
    }
    match &image.settings.smoke {
        SmokeTest::Command {
            argv,
            timeout_seconds,
        } => {
            let run_dir = app.settings.run_dir(&run.id);
            let run_dir = std::path::absolute(&run_dir).unwrap_or(run_dir);
            let env = vec![
                ("RUN_ID".to_string(), run.id.to_string()),
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

/// The image the build produced on Azure: its gallery version, else its managed image.
fn built_image(run: &Run) -> Option<&str> {
    let build = run.build.as_ref()?;
    build
        .gallery_version_id
        .as_deref()
        .or(build.managed_image_id.as_deref())
}

/// The smoke test in a temporary VM made from `image_id`.
async fn on_azure(
    app: &App,
    azure: &Azure,
    run: &Run,
    image: &ImageConfig,
    image_id: &str,
) -> StageResult {
    let SmokeTest::Http {
        url,
        status,
        contains,
        timeout_seconds,
    } = &image.settings.smoke
    else {
        return StageResult::Failed("the Azure test stage needs a [smoke.http] check".into());
    };
    let settings = &azure.settings.test_vm;
    let Some(location) = settings.location.clone() else {
        return StageResult::Failed(format!(
            "the build produced {image_id} but IMAGE_FACTORY_TEST_LOCATION is not set: the test VM needs a region"
        ));
    };
    let check = match SmokeCheck::new(
        url,
        *status,
        contains.as_deref(),
        Duration::from_secs(*timeout_seconds),
    ) {
        Ok(check) => check,
        Err(e) => return StageResult::Failed(e.to_string()),
    };
    let attempt = run.stage(Stage::Test).current_attempt();
    let plan = TestPlan {
        subscription_id: azure.settings.subscription_id.clone(),
        run_id: run.id.to_string(),
        location: location.clone(),
        vm_size: settings.vm_size.clone(),
        image_id: image_id.to_string(),
        created: attempt.map_or_else(|| app.now(), |a| a.started_at),
        check,
    };
    let report = testvm::run(&azure.arm, &plan).await;
    let group = &report.group;
    let cleanup = match &report.cleanup {
        Cleanup::Deleted => format!("resource group {group} deleted"),
        Cleanup::AlreadyGone => format!("resource group {group} was already gone"),
        Cleanup::Failed(e) => format!(
            "resource group {group} not deleted ({e}); the sweeper deletes it once older than {} h",
            settings.max_age_hours
        ),
    };
    let vm = format!(
        "test VM {} ({}, {location}) in resource group {group} from {image_id}{}",
        report.vm,
        plan.vm_size,
        if report.vm_reused {
            ", reused from an earlier attempt"
        } else {
            ""
        }
    );
    match report.result {
        Ok(passed) => StageResult::Succeeded(StageOutput::Tested {
            checks: vec![
                vm,
                format!(
                    "smoke test GET {url} inside the VM (Run Command) answered {}{} on try {}",
                    passed.status,
                    contains
                        .as_deref()
                        .map(|c| format!(" with {c:?}"))
                        .unwrap_or_default(),
                    passed.tries
                ),
                cleanup,
            ],
        }),
        Err(e) if e.is_transient() => {
            let delivery = attempt.map_or(1, |a| a.execution.delivery);
            if delivery < LAST_RETRIED_DELIVERY + 1 {
                StageResult::Retry(format!("{e}; {cleanup}"))
            } else {
                StageResult::Failed(format!(
                    "{e} (still failing on delivery {delivery} of the test stage; start the run again later); {vm}; {cleanup}"
                ))
            }
        }
        Err(e) => StageResult::Failed(format!("{e}; {vm}; {cleanup}")),
    }
}
