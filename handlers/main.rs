//! `image-factory`: the operator's interface.
//!
//! - `up`: the whole factory on this machine (handler + embedded Functions host);
//! - `serve`: the custom handler alone, as the Azure Functions host starts it;
//! - `push`: send a signed GitHub push webhook to a running factory;
//! - `trigger`: start an out-of-band run;
//! - `approve`, `reject`: decide for an approver, with the same checks as a link;
//! - `patch-tuesday`: print a year's Patch Tuesdays and build times;
//! - `runs`: list runs or show one;
//! - `schedule`: print the next firings of a timer schedule;
//! - `package`: the deployable zip of the function app (checked against the handler and infra).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{NaiveDateTime, Utc};
use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use image_factory::config::Settings;
use image_factory::domain::calendar::{Month, patch_tuesday};
use image_factory::domain::schedule::Schedule;
use image_factory::host::BusSettings;
use image_factory::startup::{Secrets, build_app, start_local};

#[derive(Parser)]
#[command(
    name = "image-factory",
    version,
    about = "A serverless golden-image factory for Azure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole factory on this machine: handler, HTTP triggers on /api/, timers and queues.
    Up {
        /// Port of the HTTP triggers (as `func start`).
        #[arg(long, default_value_t = 7071, env = "IMAGE_FACTORY_PORT")]
        port: u16,
        /// Folder holding host.json and functions/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Lock duration of the local queues, in seconds.
        #[arg(long, default_value_t = 60)]
        lock_seconds: u64,
        /// Deliveries before a local queue dead-letters a message.
        #[arg(long, default_value_t = 5)]
        max_deliveries: u32,
    },
    /// Run the custom handler alone on FUNCTIONS_CUSTOMHANDLER_PORT (what the Functions host starts).
    Serve,
    /// Send a signed GitHub push webhook to a running factory.
    Push {
        /// The commit id pushed.
        #[arg(long)]
        commit: String,
        /// Files the push changed (repository paths, e.g. images/example/build.pkr.hcl).
        #[arg(long = "changed", required = true)]
        changed: Vec<String>,
        /// The branch pushed to.
        #[arg(long, default_value = "main")]
        branch: String,
        /// The factory's base URL.
        #[arg(long, default_value = "http://localhost:7071")]
        url: String,
    },
    /// Start an out-of-band run of an image (an urgent security fix, a rebuild on demand).
    Trigger {
        /// The image to build.
        #[arg(long)]
        image: String,
        /// Why: recorded on the run.
        #[arg(long)]
        reason: String,
        /// Build even if the inputs are identical to the last release.
        #[arg(long)]
        force: bool,
        /// The factory's base URL.
        #[arg(long, default_value = "http://localhost:7071")]
        url: String,
    },
    /// Record an approver's decision to approve a run (same checks as a link).
    Approve {
        /// The run.
        run: String,
        /// The approver deciding.
        #[arg(long = "as")]
        approver: String,
        /// A comment for the audit trail.
        #[arg(long, default_value = "")]
        comment: String,
        /// The factory's base URL.
        #[arg(long, default_value = "http://localhost:7071")]
        url: String,
    },
    /// Record an approver's decision to reject a run.
    Reject {
        /// The run.
        run: String,
        /// The approver deciding.
        #[arg(long = "as")]
        approver: String,
        /// A comment for the audit trail.
        #[arg(long, default_value = "")]
        comment: String,
        /// The factory's base URL.
        #[arg(long, default_value = "http://localhost:7071")]
        url: String,
    },
    /// List runs, or show one run.
    Runs {
        /// A run id to show.
        id: Option<String>,
        /// Only runs of this image.
        #[arg(long)]
        image: Option<String>,
        /// The factory's base URL.
        #[arg(long, default_value = "http://localhost:7071")]
        url: String,
    },
    /// Print a year's Patch Tuesdays and the factory's monthly build times.
    PatchTuesday {
        /// The year.
        #[arg(long)]
        year: i32,
    },
    /// Write the deployable zip: host.json, functions/, images/ and the handler as `image-factory`.
    ///
    /// Refuses when a function folder is not a function the handler serves, a
    /// served function has no folder, or a function.json names a queue that
    /// infra/queues.json does not create.
    Package {
        /// The handler binary to package, built for Linux x86-64 (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where to write the zip.
        #[arg(long, default_value = "dist/image-factory.zip")]
        out: PathBuf,
        /// Folder holding host.json, functions/, images/ and infra/queues.json.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Print the next firings of a timer schedule (NCRONTAB, six fields, UTC).
    Schedule {
        /// The schedule, e.g. "0 0 18 8-14 * Tue".
        expression: String,
        /// How many firings.
        #[arg(long, default_value_t = 5)]
        next: usize,
        /// Start after this time (YYYY-MM-DDTHH:MM:SS, UTC); default now.
        #[arg(long)]
        after: Option<NaiveDateTime>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            port,
            root,
            lock_seconds,
            max_deliveries,
        } => {
            init_logging(false);
            let shutdown = CancellationToken::new();
            let mut settings = Settings::from_env()?;
            settings.local = true;
            if std::env::var_os("IMAGE_FACTORY_PUBLIC_URL").is_none() {
                settings.public_url = format!("http://localhost:{port}");
            }
            let secrets = Secrets::from_env(&settings, true)?;
            let app = build_app(settings, secrets, shutdown.clone())?;
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| {
                    format!("cannot listen on 127.0.0.1:{port}; is another factory running?")
                })?;
            let bus = BusSettings {
                lock_duration: std::time::Duration::from_secs(lock_seconds.max(1)),
                max_delivery_count: max_deliveries.max(1),
            };
            let local = start_local(app, &root, listener, bus).await?;
            tracing::info!(
                "image-factory is up: HTTP triggers on http://{}/api/ (handler on {})",
                local.host_addr,
                local.handler_addr
            );
            wait_for_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
            local.stopped().await;
            Ok(())
        }
        Command::Serve => {
            init_logging(true);
            let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .context("FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Functions host sets it")?
                .parse()
                .context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port number")?;
            let shutdown = CancellationToken::new();
            let settings = Settings::from_env()?;
            let secrets = Secrets::from_env(&settings, false)?;
            let app = build_app(settings, secrets, shutdown.clone())?;
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            let server = tokio::spawn(image_factory::server::serve(listener, app));
            wait_for_signal().await;
            shutdown.cancel();
            server.await??;
            Ok(())
        }
        Command::Push {
            commit,
            changed,
            branch,
            url,
        } => push(&commit, &changed, &branch, &url).await,
        Command::Trigger {
            image,
            reason,
            force,
            url,
        } => {
            let body = serde_json::json!({ "image": image, "reason": reason, "force": force });
            operator_post(&url, "", &body).await
        }
        Command::Approve {
            run,
            approver,
            comment,
            url,
        } => {
            let body =
                serde_json::json!({ "decision": "approve", "as": approver, "comment": comment });
            operator_post(&url, &run, &body).await
        }
        Command::Reject {
            run,
            approver,
            comment,
            url,
        } => {
            let body =
                serde_json::json!({ "decision": "reject", "as": approver, "comment": comment });
            operator_post(&url, &run, &body).await
        }
        Command::Runs { id, image, url } => {
            let mut target = format!("{}/api/runs", url.trim_end_matches('/'));
            if let Some(id) = id {
                target = format!("{target}/{id}");
            } else if let Some(image) = image {
                target = format!("{target}?image={image}");
            }
            let response = reqwest::get(&target)
                .await
                .with_context(|| format!("cannot reach {target}"))?;
            let status = response.status();
            let body = response.text().await?;
            println!("{body}");
            if !status.is_success() {
                bail!("the factory answered {status}");
            }
            Ok(())
        }
        Command::PatchTuesday { year } => {
            let calendar = Settings::from_env()?.calendar;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "Patch Tuesday  build time ({}, {} day(s) later at {:02}:00)",
                calendar.zone, calendar.offset_days, calendar.hour
            )?;
            for month in 1..=12 {
                let day = patch_tuesday(year, month).context("no such month")?;
                let build = calendar.build_time(Month { year, month });
                writeln!(
                    out,
                    "{}     {}  ({} UTC)",
                    day.format("%Y-%m-%d"),
                    build
                        .with_timezone(&calendar.zone)
                        .format("%Y-%m-%d %H:%M %Z"),
                    build.format("%Y-%m-%d %H:%M")
                )?;
            }
            Ok(())
        }
        Command::Package { binary, out, root } => {
            let binary = match binary {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("cannot tell where this executable is; pass --binary")?,
            };
            let summary = image_factory::package::package(&root, &binary, &out)?;
            println!(
                "wrote {}: {} entries, {} functions, handler {} as {}",
                out.display(),
                summary.entries.len(),
                summary.functions.len(),
                binary.display(),
                image_factory::package::EXECUTABLE
            );
            Ok(())
        }
        Command::Schedule {
            expression,
            next,
            after,
        } => {
            let schedule = Schedule::parse(&expression)?;
            let after = after.unwrap_or_else(|| Utc::now().naive_utc());
            let mut out = std::io::stdout().lock();
            for firing in schedule.upcoming(after, next) {
                writeln!(out, "{}", firing.format("%Y-%m-%d %H:%M:%S %a UTC"))?;
            }
            Ok(())
        }
    }
}

/// POSTs `body` to `/api/runs/{run}` with the operator token and prints the answer.
async fn operator_post(url: &str, run: &str, body: &serde_json::Value) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let Some(token) = Secrets::from_env(&settings, true)?.operator else {
        bail!("no operator token: set IMAGE_FACTORY_OPERATOR_TOKEN");
    };
    let mut target = format!("{}/api/runs", url.trim_end_matches('/'));
    if !run.is_empty() {
        target = format!("{target}/{run}");
    }
    let response = reqwest::Client::new()
        .post(&target)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {target}"))?;
    let status = response.status();
    println!("{}", response.text().await?);
    if !status.is_success() {
        bail!("the factory answered {status}");
    }
    Ok(())
}

/// Builds a GitHub push payload, signs it with the webhook secret and posts it.
async fn push(commit: &str, changed: &[String], branch: &str, url: &str) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let Some(secret) = Secrets::from_env(&settings, true)?.github else {
        bail!("no GitHub webhook secret: set IMAGE_FACTORY_GITHUB_SECRET");
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0000000000000000000000000000000000000000",
        "after": commit,
        "deleted": false,
        "commits": [{ "id": commit, "added": [], "removed": [], "modified": changed }],
        "head_commit": { "id": commit, "added": [], "removed": [], "modified": changed },
        "pusher": { "name": std::env::var("USER").unwrap_or_else(|_| "operator".into()) },
    }))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(&body);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let target = format!("{}/api/hooks/github", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&target)
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header(
            "X-GitHub-Delivery",
            format!("{:032x}", rand::random::<u128>()),
        )
        .header("X-Hub-Signature-256", format!("sha256={signature}"))
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {target}"))?;
    let status = response.status();
    println!("{}", response.text().await?);
    if !status.is_success() {
        bail!("the factory answered {status}");
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
