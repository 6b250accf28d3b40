//! `image-factory`: the operator's interface.
//!
//! - `up`: the whole factory on this machine (handler + embedded Functions host);
//! - `serve`: the custom handler alone, as the Azure Functions host starts it;
//! - `push`: send a signed GitHub push webhook to a running factory;
//! - `trigger`: start an out-of-band run;
//! - `approve`, `reject`: decide for an approver, with the same checks as a link;
//! - `patch-tuesday`: print a year's Patch Tuesdays and build times;
//! - `patch status`: a build's evidence judged against Microsoft's security data;
//! - `runs`: list runs or show one;
//! - `fleet`: every image's compliance with this month's patches, and what its runs wait on;
//! - `schedule`: print the next firings of a timer schedule;
//! - `package`: the deployable function app, zipped or as a folder, in the host's layout (checked against the handler, infra and the host's indexing rule);
//! - `doctor`: what is wrong before a run finds it (packer, images, settings, layout; with --url the deployed app);
//! - `rollback`: make an earlier gallery version of an image latest again (Resource Manager);
//! - `worker`: run one build off the host and report it (the Container Apps job's command).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{NaiveDateTime, Utc};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use image_factory::azure::identity::Identity;
use image_factory::azure::telemetry::Telemetry;
use image_factory::client::{self, Client};
use image_factory::config::{Settings, load_images};
use image_factory::domain::calendar::{Month, patch_tuesday};
use image_factory::domain::run::RunId;
use image_factory::domain::schedule::Schedule;
use image_factory::domain::version::ImageVersion;
use image_factory::host::BusSettings;
use image_factory::startup::{Adapters, Secrets, build_app, open_gallery, start_local};

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

/// Who decides on which run.
#[derive(clap::Args)]
struct DecisionArgs {
    /// The run.
    run: RunId,
    /// The approver deciding.
    #[arg(long = "as")]
    approver: String,
    /// A comment for the audit trail.
    #[arg(long, default_value = "")]
    comment: String,
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
}

impl DecisionArgs {
    async fn send(self, decision: &str) -> anyhow::Result<ExitCode> {
        let body = serde_json::json!({ "decision": decision, "as": self.approver, "comment": self.comment });
        print_answer(
            Client::new(&self.url)
                .operator_post(Some(&self.run), &body)
                .await?,
        )
    }
}

#[derive(Subcommand)]
enum RunsAction {
    /// List runs, newest first (the default).
    List {
        /// Only runs of this image.
        #[arg(long)]
        image: Option<String>,
        /// Only runs in this status (queued, running, waiting-for-approval, released, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one run's stages and outcome.
    Show {
        /// The run.
        id: RunId,
    },
    /// Print a run's build log; --follow keeps printing until the run ends.
    Logs {
        /// The run.
        id: RunId,
        /// Keep following the log.
        #[arg(long)]
        follow: bool,
        /// The log of this build attempt (from 1; `runs show --json` lists
        /// them) instead of the current one's: what an attempt cut short by
        /// a crash printed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        attempt: Option<u32>,
    },
    /// Print a released run's release notes (Markdown, as `release-notes.md`;
    /// with --json, the `notes` of its `image-version.json`).
    Notes {
        /// The run.
        id: RunId,
    },
    /// Wait for a run to end; the exit code says how (0 released or skipped,
    /// 10 failed, 11 rejected, 12 approval expired, 20 still going after --timeout).
    Wait {
        /// The run.
        id: RunId,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum ApprovalsAction {
    /// Print the approval link of each approver who has not decided, one per
    /// line, from this machine's outbox (a local factory writes it there).
    Links {
        /// The run.
        run: RunId,
        /// Only this approver's link.
        #[arg(long = "as")]
        approver: Option<String>,
        /// Wait up to this many seconds for the run to reach its approvers.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// Print JSON (approver, url, expiresAt) instead of one link a line.
        #[arg(long)]
        json: bool,
        /// The factory's base URL.
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
    },
}

#[derive(Subcommand)]
enum PatchAction {
    /// Judge the evidence a build collected inside an image
    /// (image-evidence.json) against Microsoft's security data for a month.
    ///
    /// Exits 0 when the OS build carries every fix of the month, 1 when fixes
    /// are missing, 2 on bad input or when the data cannot be read.
    Status(image_factory::patch_status::StatusArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole factory on this machine: handler, HTTP triggers on /api/, timers and queues.
    Up {
        /// Port of the HTTP triggers (as `func start`).
        #[arg(long, default_value_t = 7071, env = "IMAGE_FACTORY_PORT")]
        port: u16,
        /// An app folder in the Functions host's layout (host.json and one
        /// <name>/function.json per function at its root), e.g. written by
        /// `package --dir`; its images/ are used unless IMAGE_FACTORY_IMAGES is
        /// set. Without it, the repository in the current folder (host.json,
        /// functions/) is staged into the data folder's app/ and served from there.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Lock duration of the local queues, in seconds.
        #[arg(long, default_value_t = 60)]
        lock_seconds: u64,
        /// Deliveries before a local queue dead-letters a message.
        #[arg(long, default_value_t = 5)]
        max_deliveries: u32,
        /// How many long local jobs (packer checks and builds, smoke tests)
        /// run at once, at least 1 (default: IMAGE_FACTORY_PARALLELISM, else
        /// the number of cores).
        #[arg(long)]
        parallelism: Option<std::num::NonZeroUsize>,
    },
    /// Run the custom handler alone on FUNCTIONS_CUSTOMHANDLER_PORT (what the Functions host starts).
    Serve,
    /// Run one build off the host: the order in IMAGE_FACTORY_BUILD_ORDER, the
    /// log to IMAGE_FACTORY_BUILD_LOGS_URL's container, the report to the
    /// build-completed queue (IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION).
    ///
    /// The build job's command. Exits 0 once the report is sent, whatever the
    /// build's outcome; 1 when it could not be sent (the watchdog then acts).
    Worker,
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
        /// The commit's message (the release notes quote its first line).
        #[arg(long)]
        message: Option<String>,
        /// The factory's base URL.
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
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
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
    },
    /// Approval links of a run that waits for its approvers.
    Approvals {
        #[command(subcommand)]
        action: ApprovalsAction,
    },
    /// Record an approver's decision to approve a run (same checks as a link).
    Approve(DecisionArgs),
    /// Record an approver's decision to reject a run.
    Reject(DecisionArgs),
    /// List runs, show one, follow its log, or wait for it to end.
    Runs {
        #[command(subcommand)]
        action: Option<RunsAction>,
        /// The factory's base URL.
        #[arg(
            long,
            global = true,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Every image's compliance with this month's patches: its latest
    /// release, patched / due / overdue with the days, its runs in flight and
    /// what they wait on, its last failure (docs/fleet.md).
    Fleet {
        /// The factory's base URL.
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An image's patch level, proven by its evidence against Microsoft's
    /// security data (docs/patch-evidence.md).
    Patch {
        #[command(subcommand)]
        action: PatchAction,
    },
    /// Print a year's Patch Tuesdays and the factory's monthly build times.
    PatchTuesday {
        /// The year (1970-9999).
        #[arg(long, value_parser = clap::value_parser!(i32).range(MIN_YEAR..=MAX_YEAR))]
        year: i32,
    },
    /// Write the deployable app in the Functions host's layout: host.json, one
    /// <name>/function.json per function, images/ and the handler as
    /// `image-factory`, all at the root of the zip (or of the --dir folder).
    ///
    /// Refuses when a function folder is not a function the handler serves, a
    /// served function has no folder, a function.json's bindings are not the
    /// ones the handler decodes, a function.json names a queue that
    /// infra/queues.json does not create, or the result breaks the host's
    /// indexing rule.
    Package {
        /// The handler binary to package, built for Linux x86-64 (default: this executable).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where to write the zip.
        #[arg(long, default_value = "dist/image-factory.zip", conflicts_with = "dir")]
        out: PathBuf,
        /// Write the same layout unzipped into this folder instead (served by
        /// `up --root <folder>` and by `func start` in the folder). The folder is
        /// replaced: it must be new, empty or a previous `package --dir`.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Folder holding host.json, functions/, images/ and infra/queues.json.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Tell what is wrong before a run does: packer and its version, every
    /// image (image.toml and the validate stage's static checks), the settings
    /// and secrets (never their values), and the app layout. With --url, the
    /// deployed app too, through Resource Manager: its functions against the
    /// package, the queues, the build job, the gallery and image definitions,
    /// and the app settings. Exits 1 when something is wrong.
    Doctor {
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
    },
    /// Make an earlier gallery version of an image latest again.
    ///
    /// Every higher version is excluded from latest (kept, not deleted). With
    /// IMAGE_FACTORY_SUBSCRIPTION_ID, IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and
    /// IMAGE_FACTORY_GALLERY set, in the Azure Compute Gallery; else in the
    /// local gallery (the data folder's releases/). Refuses a version the
    /// gallery does not have or is deleting.
    Rollback {
        /// The image (its folder's name).
        #[arg(long)]
        image: String,
        /// The version to make latest (Major.Minor.Patch).
        #[arg(long)]
        to: String,
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

/// The years `patch-tuesday` prints: the calendar's range, not chrono's.
const MIN_YEAR: i64 = 1970;
const MAX_YEAR: i64 = 9999;

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
        Ok(code) => code,
        // The reader went away (`image-factory runs | head`): nothing is
        // wrong, and there is nobody left to tell.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up {
            port,
            root,
            lock_seconds,
            max_deliveries,
            parallelism,
        } => {
            let _telemetry = Telemetry::from_env(false)?;
            let shutdown = CancellationToken::new();
            let mut settings = Settings::from_env()?;
            settings.local = true;
            if let Some(parallelism) = parallelism {
                settings.parallelism = parallelism;
            }
            if std::env::var_os("IMAGE_FACTORY_PUBLIC_URL").is_none() {
                settings.public_url = format!("http://localhost:{port}");
            }
            let root = match root {
                Some(root) => {
                    if std::env::var_os("IMAGE_FACTORY_IMAGES").is_none() {
                        settings.images_dir = root.join("images");
                    }
                    root
                }
                None => {
                    let staged = settings.data_dir.join("app");
                    image_factory::package::package_dir(std::path::Path::new("."), None, &staged)
                        .context("cannot stage the repository's functions for the local host (run `image-factory up` in the repository, or pass --root <app folder>)")?;
                    staged
                }
            };
            let secrets = Secrets::from_env(&settings, true)?;
            let app = build_app(settings, Adapters::from_env()?, secrets, shutdown.clone()).await?;
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            let _telemetry = Telemetry::from_env(true)?;
            let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
                .context("FUNCTIONS_CUSTOMHANDLER_PORT is not set; the Functions host sets it")?
                .parse()
                .context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port number")?;
            let shutdown = CancellationToken::new();
            let settings = Settings::from_env()?;
            let secrets = Secrets::from_env(&settings, false)?;
            let app = build_app(settings, Adapters::from_env()?, secrets, shutdown.clone()).await?;
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            let server = tokio::spawn(image_factory::server::serve(listener, app));
            wait_for_signal().await;
            shutdown.cancel();
            server.await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => worker().await,
        Command::Push {
            commit,
            changed,
            branch,
            message,
            url,
        } => print_answer(
            Client::new(&url)
                .push(&commit, &changed, &branch, message.as_deref())
                .await?,
        ),
        Command::Trigger {
            image,
            reason,
            force,
            url,
        } => {
            let body = serde_json::json!({ "image": image, "reason": reason, "force": force });
            print_answer(Client::new(&url).operator_post(None, &body).await?)
        }
        Command::Approvals {
            action:
                ApprovalsAction::Links {
                    run,
                    approver,
                    wait,
                    json,
                    url,
                },
        } => {
            let outbox = Settings::from_env()?.data_dir.join("outbox");
            let links = client::approval_links(
                &Client::new(&url),
                &run,
                &outbox,
                approver.as_deref(),
                std::time::Duration::from_secs(wait),
            )
            .await?;
            if json {
                return print_answer(serde_json::to_string_pretty(&links)?);
            }
            let mut out = std::io::stdout().lock();
            for link in links {
                writeln!(out, "{}", link.url)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve(args) => args.send("approve").await,
        Command::Reject(args) => args.send("reject").await,
        Command::Runs { action, url, json } => {
            let client = Client::new(&url);
            match action.unwrap_or(RunsAction::List {
                image: None,
                status: None,
            }) {
                RunsAction::List { image, status } => {
                    let runs = client.list(image.as_deref(), status.as_deref()).await?;
                    if json {
                        print_answer(serde_json::to_string_pretty(&runs)?)?;
                    } else {
                        client::print_table(&runs)?;
                    }
                }
                RunsAction::Show { id } => {
                    let run = client.run(&id).await?;
                    if json {
                        print_answer(serde_json::to_string_pretty(&run)?)?;
                    } else {
                        client::print_run(&run)?;
                    }
                }
                RunsAction::Notes { id } => {
                    let run = client.run(&id).await?;
                    let Some(release) = &run.release else {
                        anyhow::bail!(
                            "run {id} is {}: only a released run has release notes",
                            run.status
                        );
                    };
                    let Some(notes) = &release.notes else {
                        anyhow::bail!(
                            "run {id} was released before the factory wrote release notes"
                        );
                    };
                    if json {
                        print_answer(serde_json::to_string_pretty(notes)?)?;
                    } else {
                        print_answer(notes.markdown(&run.image, &release.image_version))?;
                    }
                }
                RunsAction::Logs {
                    id,
                    follow,
                    attempt,
                } => {
                    let mut offset = 0;
                    loop {
                        let (chunk, next) = client.log(&id, offset, attempt).await?;
                        let mut out = std::io::stdout().lock();
                        out.write_all(chunk.as_bytes())?;
                        out.flush()?;
                        offset = next;
                        if !follow {
                            break;
                        }
                        // The log is complete once the build stage has ended.
                        if chunk.is_empty()
                            && client::build_finished(&client.run(&id).await?, attempt)
                        {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
                RunsAction::Wait { id, timeout } => {
                    let (run, code) =
                        client::wait(&client, &id, std::time::Duration::from_secs(timeout), json)
                            .await?;
                    if json {
                        print_answer(serde_json::to_string_pretty(&run)?)?;
                    } else {
                        client::print_run(&run)?;
                    }
                    return Ok(ExitCode::from(code));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fleet { url, json } => {
            let fleet = Client::new(&url).fleet().await?;
            if json {
                print_answer(serde_json::to_string_pretty(&fleet)?)?;
            } else {
                client::print_fleet(&fleet)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Patch {
            action: PatchAction::Status(args),
        } => Ok(image_factory::patch_status::status(args).await),
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Package {
            binary,
            out,
            dir,
            root,
        } => {
            let binary = match binary {
                Some(path) => path,
                None => std::env::current_exe()
                    .context("cannot tell where this executable is; pass --binary")?,
            };
            let (summary, written) = match dir {
                Some(dir) => (
                    image_factory::package::package_dir(&root, Some(&binary), &dir)?,
                    dir,
                ),
                None => (image_factory::package::package(&root, &binary, &out)?, out),
            };
            print_answer(format!(
                "wrote {}: {} entries, {} functions, handler {} as {}",
                written.display(),
                summary.entries.len(),
                summary.functions.len(),
                binary.display(),
                image_factory::package::EXECUTABLE
            ))
        }
        Command::Doctor {
            root,
            json,
            url,
            app,
            resource_group,
            servicebus_namespace,
            servicebus_resource_group,
        } => {
            let var = |name: &str| std::env::var(name).ok();
            let mut findings = image_factory::doctor::local::check(&root, var).await;
            match url {
                Some(url) => {
                    let target = image_factory::doctor::deployed::Target {
                        url,
                        app,
                        resource_group,
                        servicebus_namespace,
                        servicebus_resource_group,
                    };
                    findings.extend(
                        image_factory::doctor::deployed::check_target(&root, target).await,
                    );
                }
                None => findings.push(image_factory::doctor::Finding::info(
                    "deployed app",
                    "not checked",
                    "pass --url with the app's name and resource group (and the Azure settings) to check the deployed app",
                )),
            }
            let report = image_factory::doctor::Report::new(findings);
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
        Command::Rollback { image, to } => {
            let outcome = rollback(&image, &to).await?;
            let excluded = if outcome.excluded.is_empty() {
                "none".to_string()
            } else {
                outcome.excluded.join(", ")
            };
            print_answer(format!(
                "{image}: {} is latest (excluded from latest: {excluded})",
                outcome.promoted.as_deref().unwrap_or(to.as_str())
            ))
        }
        Command::Schedule {
            expression,
            next,
            after,
        } => {
            let schedule = Schedule::parse(&expression)?;
            let after = after.unwrap_or_else(|| Utc::now().naive_utc());
            if schedule.next_after(after).is_none() {
                anyhow::bail!(
                    "the schedule \"{expression}\" never fires: no date up to the year 9999 matches it (is the day of the month one the month has, e.g. not 30 Feb?)"
                );
            }
            let mut out = std::io::stdout().lock();
            for firing in schedule.upcoming(after, next) {
                writeln!(out, "{}", firing.format("%Y-%m-%d %H:%M:%S %a UTC"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether `error` is a write to a pipe whose reader has closed it (EPIPE).
fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Applies the promotion plan of `to` to `image`'s versions in the gallery
/// the settings choose: the Azure Compute Gallery when the factory manages
/// Azure, else the data folder's local gallery.
async fn rollback(
    image: &str,
    to: &str,
) -> anyhow::Result<image_factory::ports::gallery::GalleryOutcome> {
    let settings = Settings::from_env()?;
    let adapters = Adapters::from_env()?;
    let version: ImageVersion = to.parse().map_err(|e| anyhow::anyhow!("--to {to}: {e}"))?;
    let images = load_images(&settings.images_dir)?;
    if !images.contains_key(image) {
        anyhow::bail!(
            "no image {image} in {} (the images are: {})",
            settings.images_dir.display(),
            images.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let gallery = open_gallery(&settings, &adapters, &images)?;
    let outcome = gallery.rollback(image, version).await?;
    announce_rollback(&settings, image, &version.to_string()).await;
    Ok(outcome)
}

/// Sends `image-factory.image.rolled-back` for the run that released
/// `version` (recorded on it first, so the sweeper retries what fails here).
/// The rollback is done either way: a failure here is reported, not fatal.
async fn announce_rollback(settings: &Settings, image: &str, version: &str) {
    let announced = async {
        let adapters = Adapters::from_env()?;
        let store = image_factory::startup::open_store(settings, &adapters.store).await?;
        let follow_ups = image_factory::startup::follow_ups(settings)?;
        let now = Utc::now();
        let Some(id) =
            image_factory::followups::owe_rollback(store.as_ref(), image, version, now).await?
        else {
            return Ok::<_, anyhow::Error>(format!(
                "no run of this factory released {image} {version}: no rollback event sent"
            ));
        };
        let lines =
            image_factory::followups::deliver_pending(&follow_ups, store.as_ref(), &id, now)
                .await?;
        Ok(format!(
            "rollback event recorded on run {id}{}",
            lines.iter().map(|l| format!("\n  {l}")).collect::<String>()
        ))
    };
    match announced.await {
        Ok(text) => eprintln!("{text}"),
        Err(e) => eprintln!(
            "the rollback is done, but its event was not recorded: {e:#}; nothing will retry it"
        ),
    }
}

/// Prints the factory's answer (an error, not a panic, if stdout is closed).
fn print_answer(text: String) -> anyhow::Result<ExitCode> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// The `worker` command: one build, its log, its report.
async fn worker() -> anyhow::Result<ExitCode> {
    use image_factory::azure::blob::{BlobLogs, container_of};
    use image_factory::azure::servicebus::{Connection, LegacyHttp, ServiceBusReporter};
    use image_factory::local::executor::LocalExecutor;
    use image_factory::worker::{self, WorkerSettings};

    let _telemetry = Telemetry::from_env(true)?;
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let settings = WorkerSettings::from_vars(var).map_err(anyhow::Error::msg)?;
    let credential = Identity::from_vars(var)
        .credential()
        .map_err(anyhow::Error::msg)?;
    let extra_root = var("IMAGE_FACTORY_BUILD_LOGS_CA").map(std::path::PathBuf::from);
    let uploader = BlobLogs::new(
        container_of(&settings.order.log_url),
        credential.clone(),
        extra_root.as_deref(),
    )?;
    let connection = var("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION")
        .context("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION is not set (the job's secret reference to Key Vault)")?;
    let connection = Connection::parse(&connection)
        .map_err(|e| anyhow::anyhow!("IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION: {e}"))?;
    let http = LegacyHttp::new(var("IMAGE_FACTORY_SERVICEBUS_ENDPOINT").as_deref())
        .map_err(|e| anyhow::anyhow!("IMAGE_FACTORY_SERVICEBUS_ENDPOINT: {e}"))?;
    let reporter = ServiceBusReporter::new(&connection, http).map_err(anyhow::Error::msg)?;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    // The worker's span is a stage span of the run's trace, like the handler's.
    let span = tracing::info_span!(
        "stage",
        run_id = %settings.order.run_id,
        stage = "build",
        worker = %settings.order.worker_id
    );
    image_factory::trace::join_run_trace(&span, &settings.order.run_id);
    let work = async {
        tracing::info!(run_id = %settings.order.run_id, worker = %settings.order.worker_id, "build worker started");
        match worker::run(
            &settings,
            credential.as_ref(),
            &LocalExecutor,
            &uploader,
            &reporter,
            cancel,
        )
        .await
        {
            Ok(report) => {
                tracing::info!(run_id = %report.run_id, outcome = ?report.outcome, "build reported");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "build worker failed");
                ExitCode::FAILURE
            }
        }
    };
    Ok(tracing::Instrument::instrument(work, span).await)
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
