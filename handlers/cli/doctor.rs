//! `doctor`: what is wrong before a run finds it, on this machine and, with
//! `--url`, in the deployed app; the exit code is 1 when something is.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::doctor::{Finding, Report, deployed, local};

/// Tell what is wrong before a run does: packer and its version, every
/// image (image.toml and the validate stage's static checks), the settings
/// and secrets (never their values), and the app layout. With --url, the
/// deployed app too, through Resource Manager: its functions against the
/// package, the queues, the build job, the gallery and image definitions,
/// and the app settings. Exits 1 when something is wrong.
#[derive(clap::Args)]
pub struct Doctor {
    /// The repository (host.json, functions/, infra/queues.json).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// The deployed factory's base URL: also check the deployed app (needs
    /// IMAGE_FACTORY_SUBSCRIPTION_ID and the app's name and resource group).
    #[arg(long)]
    url: Option<String>,
    /// The function app's name.
    #[arg(long, env = "IMAGE_FACTORY_FUNCTION_APP")]
    app: Option<String>,
    /// The function app's resource group.
    #[arg(long, env = "IMAGE_FACTORY_FUNCTION_APP_RESOURCE_GROUP")]
    resource_group: Option<String>,
    /// The Service Bus namespace holding the queues.
    #[arg(long, env = "IMAGE_FACTORY_SERVICEBUS_NAMESPACE")]
    servicebus_namespace: Option<String>,
    /// The namespace's resource group (default: the app's).
    #[arg(long, env = "IMAGE_FACTORY_SERVICEBUS_RESOURCE_GROUP")]
    servicebus_resource_group: Option<String>,
}

impl Doctor {
    /// Checks and prints the findings.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Doctor {
            root,
            json,
            url,
            app,
            resource_group,
            servicebus_namespace,
            servicebus_resource_group,
        } = self;
        let var = |name: &str| std::env::var(name).ok();
        let mut findings = local::check(&root, var).await;
        match url {
            Some(url) => {
                let target = deployed::Target {
                    url,
                    app,
                    resource_group,
                    servicebus_namespace,
                    servicebus_resource_group,
                };
                findings.extend(deployed::check_target(&root, target).await);
            }
            None => findings.push(Finding::info(
                "deployed app",
                "not checked",
                "pass --url with the app's name and resource group (and the Azure settings) to check the deployed app",
            )),
        }
        let report = Report::new(findings);
        let text = if json {
            serde_json::to_string_pretty(&report.to_json())?
        } else {
            report.to_text()
        };
        write!(std::io::stdout().lock(), "{text}")?;
        if json {
            writeln!(std::io::stdout().lock())?;
        }
        Ok(ExitCode::from(report.exit_code()))
    }
}
