//! `image-factory patch status`: the evidence a build collected inside an
//! image (`image-evidence.json`, or with `--image` the evidence the running
//! factory recorded for the image's latest release) judged against
//! Microsoft's security data for a month (the newest unless `--month` names
//! one), for auditors. The data comes from the Security Update Guide API or
//! the folder `IMAGE_FACTORY_MSRC_URL` names, cached in the data folder
//! (docs/patch-evidence.md).
//!
//! Exit status: [`exit::COMPLIANT`] (0), [`exit::MISSING`] (1) when fixes are
//! missing, [`exit::ERROR`] (2) on bad input or when the data cannot be
//! read, with the reason on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::client::Client;
use crate::config::Settings;
use crate::domain::cvrf::{CvrfDocument, MonthId};
use crate::domain::evidence::Evidence;
use crate::domain::patch::{Verdict, assess};
use crate::domain::run::RunStatus;
use crate::startup::{Adapters, open_security_updates};

/// The exit statuses of `patch status`.
pub mod exit {
    /// The build carries every fix of the month.
    pub const COMPLIANT: u8 = 0;
    /// Fixes are missing.
    pub const MISSING: u8 = 1;
    /// Bad input, or Microsoft's data cannot be read.
    pub const ERROR: u8 = 2;
}

/// An image's patch level, proven by its evidence against Microsoft's
/// security data (docs/patch-evidence.md).
#[derive(clap::Args, Debug)]
pub struct Patch {
    #[command(subcommand)]
    action: PatchAction,
}

#[derive(clap::Subcommand, Debug)]
enum PatchAction {
    /// Judge the evidence a build collected inside an image
    /// (image-evidence.json, or an image's latest release's with --image)
    /// against Microsoft's security data for a month.
    ///
    /// Exits 0 when the OS build carries every fix of the month, 1 when fixes
    /// are missing, 2 on bad input or when the data or the factory cannot be read.
    Status(StatusArgs),
}

impl Patch {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            PatchAction::Status(args) => Ok(status(args).await),
        }
    }
}

/// `patch status`'s arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["evidence", "image"])))]
pub struct StatusArgs {
    /// The evidence file the build collected (image-evidence.json).
    #[arg(long)]
    pub evidence: Option<PathBuf>,
    /// The image whose latest release's evidence is judged, as the running
    /// factory (--url) recorded it.
    #[arg(long)]
    pub image: Option<String>,
    /// The factory's base URL (with --image).
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    pub url: String,
    /// The month to judge against (yyyy-Mon, e.g. 2026-Jan); default: the
    /// newest month Microsoft published.
    #[arg(long)]
    pub month: Option<MonthId>,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `patch status`: prints the verdict (or the reason it cannot be
/// given, on stderr) and answers the exit status.
async fn status(args: StatusArgs) -> ExitCode {
    let judged = judge(&args).await;
    let printed = judged.and_then(|(month, verdict)| {
        let text = if args.json {
            serde_json::to_string_pretty(&verdict)?
        } else {
            render(&month, &verdict)
        };
        writeln!(std::io::stdout().lock(), "{text}")?;
        Ok(verdict.compliant)
    });
    match printed {
        Ok(true) => ExitCode::from(exit::COMPLIANT),
        Ok(false) => ExitCode::from(exit::MISSING),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The evidence to judge: the file, or the image's latest release's as
/// the factory recorded it.
async fn evidence(args: &StatusArgs) -> anyhow::Result<Evidence> {
    if let Some(path) = &args.evidence {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the evidence file {}", path.display()))?;
        return Evidence::parse(&text).with_context(|| path.display().to_string());
    }
    let image = args.image.as_deref().unwrap_or_default();
    let client = Client::new(&args.url);
    let release = client
        .list(Some(image), Some(RunStatus::Released.name()))
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("image {image} has no release at {}", args.url))?;
    let record = client.evidence(&release.id).await?;
    match record.evidence() {
        Some(evidence) => Ok(evidence.clone()),
        None => anyhow::bail!(
            "{image} {} (run {}): {}",
            release.version,
            release.id,
            record.why_none().unwrap_or_default()
        ),
    }
}

/// Reads the evidence and the month, and judges.
async fn judge(args: &StatusArgs) -> anyhow::Result<(CvrfDocument, Verdict)> {
    let evidence = evidence(args).await?;
    let settings = Settings::from_env()?;
    let adapters = Adapters::from_env()?;
    let data = open_security_updates(&settings, &adapters)?;
    let month = match args.month {
        Some(id) => data.month(id).await,
        None => data.newest().await,
    }
    .context("cannot read Microsoft's security data")?;
    let verdict = assess(&month, &evidence)?;
    Ok((month, verdict))
}

/// The verdict as people read it: a summary, the missing CVEs (most severe
/// first) and the warnings.
fn render(month: &CvrfDocument, verdict: &Verdict) -> String {
    let exposure = &verdict.exposure;
    let mut out = format!(
        "{} (product {}) at {}, against {} ({}, revised {})\n",
        exposure.product,
        exposure.product_id,
        exposure.os_build,
        exposure.month,
        month.title,
        month.current_release.format("%Y-%m-%d"),
    );
    match &exposure.cumulative_update {
        Some(update) => out.push_str(&format!(
            "cumulative update: {} ({}), {}\n",
            update.kb,
            update.fixed_build,
            if exposure.os_build >= update.fixed_build {
                "installed"
            } else {
                "not installed"
            }
        )),
        None => out.push_str("cumulative update: none this month for this product\n"),
    }
    if verdict.compliant {
        out.push_str(&format!(
            "compliant: carries the fixes of all {} CVEs the month lists for {}\n",
            exposure.cves, exposure.product
        ));
    } else {
        out.push_str(&format!(
            "NOT compliant: misses {} of the month's {} CVEs ({})\n",
            exposure.missing.len(),
            exposure.cves,
            exposure.missing_by_severity
        ));
        for fix in &exposure.missing {
            let score = fix
                .cvss
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:<16} {:<9} {:>4}  {} ({})  {}\n",
                fix.cve, fix.severity, score, fix.kb, fix.fixed_build, fix.title
            ));
        }
    }
    for warning in &verdict.warnings {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out.trim_end().to_string()
}
