//! The doctor's checks on this machine: the settings and secrets the factory
//! reads, packer and its version, every image (its image.toml, its
//! declaration checker, and the validate stage's static template checks), whether any image's scheduled
//! runs are paused (from the run store the settings choose), and the app's
//! layout against the handler, the infrastructure and the Functions host's
//! indexing rule.
//! Each check answers findings; none prints a secret's value.

use std::path::Path;
use std::time::Duration;

use super::Finding;
use crate::config::{
    Settings, check_operator_token, load_images, load_images_each, parse_key_ring, problems,
};
use crate::local::executor::LocalExecutor;
use crate::packer::{PackerVersion, parse_version};
use crate::ports::executor::{Check, Executor};

/// How long `packer version` may take.
const PACKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs every local check on the app under `root`, with settings from the
/// environment read through `var` (empty values count as unset).
pub async fn check(root: &Path, var: impl Fn(&str) -> Option<String>) -> Vec<Finding> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    let mut findings = Vec::new();
    // Every refused setting, each named (what `up` and `serve` would stop at).
    let problems = problems(|name| std::env::var(name).ok());
    let settings = match Settings::from_env() {
        Ok(settings) if problems.is_empty() => {
            findings.push(Finding::ok(
                "settings",
                "every IMAGE_FACTORY_* setting is valid",
            ));
            Some(settings)
        }
        Ok(_) | Err(_) => {
            for e in problems {
                findings.push(Finding::failure(
                    "settings",
                    e.to_string(),
                    "fix the setting it names (docs/configuration.md and docs/security.md say what each accepts)",
                ));
            }
            None
        }
    };
    findings.extend(secrets(&var));
    match &settings {
        Some(settings) => {
            findings.push(azure());
            let (finding, version) = packer(settings, &var).await;
            findings.push(finding);
            findings.extend(images(settings, version));
            findings.extend(schedules(settings).await);
        }
        None => {
            for check in ["azure settings", "packer", "images", "schedules"] {
                findings.push(Finding::info(
                    check,
                    "not checked: the settings are not valid",
                    "fix the settings first",
                ));
            }
        }
    }
    findings.push(layout(root));
    findings
}

fn secrets(var: &impl Fn(&str) -> Option<String>) -> Vec<Finding> {
    let mut findings = Vec::new();
    match var("IMAGE_FACTORY_APPROVAL_KEYS") {
        Some(keys) => match parse_key_ring(&keys) {
            Ok(_) => findings.push(Finding::ok(
                "approval keys",
                "IMAGE_FACTORY_APPROVAL_KEYS is set and valid",
            )),
            Err(e) => findings.push(Finding::failure(
                "approval keys",
                e.to_string(),
                "set IMAGE_FACTORY_APPROVAL_KEYS to id:base64 of at least 32 random bytes",
            )),
        },
        None => findings.push(Finding::info(
            "approval keys",
            "IMAGE_FACTORY_APPROVAL_KEYS is not set: `up` uses keys it generates in the data folder; `serve` (in Azure) refuses to start without it",
            "in Azure, the Key Vault reference the Bicep sets provides it",
        )),
    }
    for (check, name, without) in [
        (
            "github secret",
            "IMAGE_FACTORY_GITHUB_SECRET",
            "GitHub push webhooks are refused",
        ),
        (
            "operator token",
            "IMAGE_FACTORY_OPERATOR_TOKEN",
            "out-of-band triggers (`image-factory trigger`) are refused",
        ),
    ] {
        let valid = |token: &str| {
            name != "IMAGE_FACTORY_OPERATOR_TOKEN" || check_operator_token(token).is_ok()
        };
        findings.push(match var(name) {
            Some(value) if !valid(&value) => Finding::failure(
                check,
                format!(
                    "{name} is shorter than {} bytes",
                    crate::config::MIN_OPERATOR_TOKEN
                ),
                "set it to a long random value, e.g. `openssl rand -hex 32`",
            ),
            Some(_) => Finding::ok(check, format!("{name} is set")),
            None => Finding::info(
                check,
                format!("{name} is not set: `up` generates one; in Azure {without}"),
                "in Azure, the Key Vault reference the Bicep sets provides it",
            ),
        });
    }
    findings
}

fn azure() -> Finding {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let azure = match crate::azure::AzureSettings::from_vars(var) {
        Ok(azure) => azure,
        Err(e) => {
            return Finding::failure(
                "azure settings",
                e.to_string(),
                "fix the setting named; docs/configuration.md lists them",
            );
        }
    };
    match &azure {
        None => Finding::info(
            "azure settings",
            "not configured (IMAGE_FACTORY_SUBSCRIPTION_ID is not set): the factory makes no Azure calls and releases locally",
            "set IMAGE_FACTORY_SUBSCRIPTION_ID, IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and IMAGE_FACTORY_GALLERY to release to a gallery",
        ),
        Some(azure) => match (&azure.gallery_resource_group, &azure.gallery) {
            (Some(group), Some(gallery)) => Finding::ok(
                "azure settings",
                format!(
                    "subscription set, gallery {gallery} in {group}, builds {}",
                    match &azure.build_job {
                        Some(job) => format!("on the job {} in {}", job.name, job.resource_group),
                        None => "on this host".to_string(),
                    }
                ),
            ),
            _ => Finding::warning(
                "azure settings",
                "the subscription is set but no gallery: releases cannot be published",
                "set IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and IMAGE_FACTORY_GALLERY",
            ),
        },
    }
}

async fn packer(
    settings: &Settings,
    var: &impl Fn(&str) -> Option<String>,
) -> (Finding, Option<PackerVersion>) {
    let Some(path) = &settings.packer else {
        return match var("IMAGE_FACTORY_PACKER").as_deref() {
            Some("none") => (
                Finding::warning(
                    "packer",
                    "disabled (IMAGE_FACTORY_PACKER=none): the validate stage runs only the factory's own checks and builds cannot run here",
                    "install packer and unset IMAGE_FACTORY_PACKER",
                ),
                None,
            ),
            _ => (
                Finding::failure(
                    "packer",
                    "packer is not on the PATH",
                    "install packer 1.7 or newer (e.g. apt-get install packer), or set IMAGE_FACTORY_PACKER to its path",
                ),
                None,
            ),
        };
    };
    if !path.is_file() {
        return (
            Finding::failure(
                "packer",
                format!("{} does not exist or is not a file", path.display()),
                "install packer, or set IMAGE_FACTORY_PACKER to the path of the packer executable",
            ),
            None,
        );
    }
    let dir = std::env::temp_dir();
    let check = Check {
        program: path.to_path_buf(),
        args: vec!["version".into()],
        dir,
        env: Vec::new(),
        timeout: PACKER_TIMEOUT,
    };
    let output = match LocalExecutor.check(check).await {
        Ok(output) => output,
        Err(e) => {
            return (
                Finding::failure(
                    "packer",
                    e.to_string(),
                    "check that the file is the packer executable",
                ),
                None,
            );
        }
    };
    match parse_version(&output.output).filter(|_| output.code == Some(0)) {
        Some(version) if version.supports_init() => (
            Finding::ok("packer", format!("packer {version} at {}", path.display())),
            Some(version),
        ),
        Some(version) => (
            Finding::warning(
                "packer",
                format!(
                    "packer {version} at {} has no `packer init`: templates that pin plugins get only the factory's own checks",
                    path.display()
                ),
                "install packer 1.7 or newer",
            ),
            Some(version),
        ),
        None => (
            Finding::failure(
                "packer",
                format!(
                    "`{} version` did not print a version (exit {:?})",
                    path.display(),
                    output.code
                ),
                "check that IMAGE_FACTORY_PACKER names the packer executable",
            ),
            None,
        ),
    }
}

fn images(settings: &Settings, packer: Option<PackerVersion>) -> Vec<Finding> {
    let dir = &settings.images_dir;
    let each = match load_images_each(dir) {
        Ok(each) => each,
        Err(e) => {
            return vec![Finding::failure(
                "images",
                e.to_string(),
                "fix the images folder (IMAGE_FACTORY_IMAGES chooses it)",
            )];
        }
    };
    if each.is_empty() {
        return vec![Finding::warning(
            "images",
            format!("{} holds no image folder with an image.toml", dir.display()),
            "add a folder with image.toml and its Packer template (see images/example)",
        )];
    }
    // Each image on its own, as each run reads its own: every bad one is
    // listed, and the others are still checked.
    let mut images = Vec::new();
    let mut findings = Vec::new();
    for (name, image) in each {
        match image {
            Ok(image) => images.push(image),
            Err(e) => findings.push(Finding::failure(
                format!("image {name}"),
                e.to_string(),
                "fix its image.toml (or the folder's name); the other images build meanwhile, and this one's runs fail at their validate stage",
            )),
        }
    }
    let refused = findings.len();
    findings.insert(
        0,
        if refused == 0 {
            Finding::ok(
                "images",
                format!(
                    "{} image(s) in {}: every image.toml is valid",
                    images.len(),
                    dir.display()
                ),
            )
        } else {
            Finding::failure(
                "images",
                format!(
                    "{refused} of {} image(s) in {} are refused (each is listed below)",
                    refused + images.len(),
                    dir.display()
                ),
                "fix each image listed below",
            )
        },
    );
    for image in &images {
        let check = format!("image {}", image.name);
        if let Some(declare) = &image.settings.declare
            && !image.dir.join(&declare.checker).is_file()
        {
            findings.push(Finding::failure(
                check,
                format!(
                    "[declare] checker {} is not a file of the image's folder: every run would fail its test stage",
                    declare.checker
                ),
                format!(
                    "add the checker to {}, or name the right one in image.toml's [declare] checker",
                    image.dir.display()
                ),
            ));
            continue;
        }
        let report = match crate::template::check_folder(&image.dir) {
            Ok(report) => report,
            Err(e) => {
                findings.push(Finding::failure(
                    check,
                    e.to_string(),
                    "make the folder readable",
                ));
                continue;
            }
        };
        let (errors, warnings): (Vec<_>, Vec<_>) =
            report.findings.iter().partition(|f| f.kind.is_error());
        let listed = |list: &[&crate::template::Finding]| {
            list.iter()
                .take(5)
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !errors.is_empty() {
            findings.push(Finding::failure(
                check,
                format!(
                    "{} template problem(s) the validate stage would fail on: {}",
                    errors.len(),
                    listed(&errors)
                ),
                format!("fix the template in {}", image.dir.display()),
            ));
        } else if report.requires_plugins && packer.is_some_and(|v| !v.supports_init()) {
            findings.push(Finding::warning(
                check,
                "the template pins plugins, which this packer cannot init",
                "install packer 1.7 or newer",
            ));
        } else if !warnings.is_empty() {
            findings.push(Finding::warning(
                check,
                format!("{} warning(s): {}", warnings.len(), listed(&warnings)),
                format!("tidy the template in {}", image.dir.display()),
            ));
        } else {
            findings.push(Finding::ok(
                check,
                "the validate stage's static checks pass",
            ));
        }
    }
    findings
}

/// Whether any image's scheduled runs are paused, read from the run store
/// the settings choose (the local one only when it exists: doctor makes no
/// store). One warning per paused image, naming the failures and how to
/// resume.
async fn schedules(settings: &Settings) -> Vec<Finding> {
    let not_checked = |why: String| {
        vec![Finding::info(
            "schedules",
            format!("not checked: {why}"),
            "run doctor where the factory's run store is reachable",
        )]
    };
    let backend = match crate::startup::Adapters::from_env() {
        Ok(adapters) => adapters.store,
        Err(e) => return not_checked(e.to_string()),
    };
    if matches!(backend, crate::startup::StoreBackend::Sqlite) && !settings.store_path().is_file() {
        return not_checked(format!(
            "there is no run store at {} yet",
            settings.store_path().display()
        ));
    }
    let store = match crate::startup::open_store(settings, &backend).await {
        Ok(store) => store,
        Err(e) => return not_checked(format!("the run store cannot be opened: {e}")),
    };
    let Ok(images) = load_images(&settings.images_dir) else {
        return not_checked("the images cannot be read".into());
    };
    let mut findings = Vec::new();
    for image in images.values() {
        let pause_after = image.settings.schedule.pause_after_failures;
        match crate::schedules::state(store.as_ref(), &image.name, pause_after).await {
            Ok(state) => {
                if let Some(pause) = state.pause() {
                    findings.push(Finding::warning(
                        format!("schedule {}", image.name),
                        pause.describe(&image.name),
                        format!(
                            "fix what the last runs failed on, then release the image or run `image-factory images resume {}`",
                            image.name
                        ),
                    ));
                }
            }
            Err(e) => return not_checked(format!("the runs cannot be read: {e}")),
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok(
            "schedules",
            format!(
                "no image's scheduled runs are paused ({} image(s))",
                images.len()
            ),
        ));
    }
    findings
}

fn layout(root: &Path) -> Finding {
    match crate::package::check_layout(root) {
        Ok(functions) => Finding::ok(
            "app layout",
            format!(
                "{} functions, each packaged at <root>/<name>/function.json, where the Functions host indexes them; their bindings match the handler and their queues infra/queues.json",
                functions.len()
            ),
        ),
        Err(e) => Finding::failure(
            "app layout",
            e.to_string(),
            "fix the function folder it names, then run `image-factory package`",
        ),
    }
}
