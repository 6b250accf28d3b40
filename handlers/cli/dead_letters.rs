//! `dead-letters`: the messages Service Bus (or the local bus) gave up on.
//!
//! Each queue's dead letters wait in its dead-letter sub-queue
//! (`<queue>/$DeadLetterQueue`), where the function `dead-letter-<queue>`
//! fails the message's run with the reason and completes the message. So
//! replaying a dead letter means starting its run's work again, not moving
//! a message: the stage it was for belongs to a run that has ended.
//!
//! - `list` reads the local factory's bus (`bus.db` in the data folder,
//!   `IMAGE_FACTORY_DATA`): the dead letters its functions have not handled
//!   yet (the factory is stopped, or the function fails on them: their
//!   deliveries say how often it tried);
//! - `replay RUN` asks a running factory, local or deployed (`--url`), like
//!   every operator command: for a run a dead letter failed, it starts the
//!   run's image again as a forced out-of-band run, whose reason names the
//!   run replayed. A run that is not (yet) failed by a dead letter is
//!   refused, and nothing is started (docs/operations.md, "Dead letters").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use super::client::Client;
use super::output::print_answer;
use crate::app::StageMessage;
use crate::config::Settings;
use crate::domain::controls::{Lines, escape_controls};
use crate::domain::run::{Run, RunId, RunStatus};
use crate::host::bus::{Bus, DeadLetter};
use crate::host::{BusSettings, DEAD_LETTER_SUFFIX};

/// The local bus's file in the data folder (`startup::start_local` opens it).
const BUS_FILE: &str = "bus.db";

/// How the dead-letter function words a run's failure
/// (`functions::dead_letter`): what tells a run failed by a dead letter.
const DEAD_LETTERED: &str = "the stage message was dead-lettered";

/// Dead-lettered messages: list the local bus's, or start again the run one
/// failed (docs/operations.md, "Dead letters").
#[derive(clap::Args)]
pub struct DeadLetters {
    #[command(subcommand)]
    action: DeadLettersAction,
}

#[derive(clap::Subcommand)]
enum DeadLettersAction {
    /// List the local bus's dead letters not handled yet, oldest first: the
    /// sub-queue holding each, when it was first sent, the run and stage it
    /// carries, how often its dead-letter function tried it, and why it was
    /// dead-lettered. Normally empty while the factory runs.
    List {
        /// Print JSON instead of one line per message.
        #[arg(long)]
        json: bool,
    },
    /// Start again the work of a run a dead letter failed: its image, as a
    /// forced out-of-band run whose reason names this run. Refused, starting
    /// nothing, for a run that is not failed by a dead letter.
    Replay {
        /// The run the dead letter failed.
        run: RunId,
        /// The factory's base URL.
        #[arg(
            long,
            env = "IMAGE_FACTORY_URL",
            default_value = "http://localhost:7071"
        )]
        url: String,
    },
}

impl DeadLetters {
    /// Lists or replays.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            DeadLettersAction::List { json } => {
                let bus = open(&Settings::from_env()?.data_dir)?;
                let letters = bus.all_dead_letters(DEAD_LETTER_SUFFIX).await?;
                if json {
                    let listed: Vec<_> = letters.iter().map(to_json).collect();
                    return print_answer(serde_json::to_string_pretty(&listed)?);
                }
                print_list(&letters)
            }
            DeadLettersAction::Replay { run, url } => {
                let client = Client::new(&url);
                let failed = client.run(&run).await?;
                let reason = replay_reason(&failed)?;
                let body = json!({ "image": failed.image, "reason": reason, "force": true });
                print_answer(client.operator_post(None, &body).await?)
            }
        }
    }
}

/// The local bus of the data folder `data`; a folder without one is
/// refused (and left without one).
fn open(data: &Path) -> anyhow::Result<Bus> {
    let path: PathBuf = data.join(BUS_FILE);
    if !path.is_file() {
        bail!(
            "there is no local bus at {}: is this the factory's data folder (IMAGE_FACTORY_DATA)? A deployed factory's dead letters are in Service Bus (docs/operations.md, \"Dead letters\")",
            path.display()
        );
    }
    let settings = BusSettings::default();
    Bus::open(&path, move |queue| settings.queue_options(queue))
        .with_context(|| format!("cannot open the local bus at {}", path.display()))
}

/// The out-of-band run's reason, when `run` was failed by a dead letter;
/// otherwise what the operator can do instead.
fn replay_reason(run: &Run) -> anyhow::Result<String> {
    let id = &run.id;
    let failure = match (run.status, &run.failure) {
        (RunStatus::Failed, Some(failure)) => failure,
        (status, _) if !status.is_terminal() => bail!(
            "run {id} is {}: no dead letter has failed it (`image-factory dead-letters list` shows one its function has not handled yet)",
            status.name()
        ),
        (status, _) => bail!(
            "run {id} is {}, not failed by a dead letter: nothing to replay",
            status.name()
        ),
    };
    let stage = failure.stage.map_or("no", |s| s.name());
    if !failure.reason.starts_with(DEAD_LETTERED) {
        bail!(
            "run {id} failed at {stage} stage for another reason than a dead letter ({}); to build {} again: `image-factory trigger --image {} --force --reason \"…\"`",
            escape_controls(&failure.reason, Lines::Escape),
            run.image,
            run.image
        );
    }
    Ok(format!(
        "replay of run {id}, failed at its {stage} stage by a dead-lettered message"
    ))
}

/// The run and stage a dead letter carries, when its body is a stage message.
fn stage_message(letter: &DeadLetter) -> Option<StageMessage> {
    serde_json::from_str(&letter.body).ok()
}

/// Why, as one line: the reason and its description.
fn why(letter: &DeadLetter) -> String {
    let why = match (letter.reason.is_empty(), letter.description.is_empty()) {
        (true, true) => "no reason recorded".to_string(),
        (false, true) => letter.reason.clone(),
        (true, false) => letter.description.clone(),
        (false, false) => format!("{}: {}", letter.reason, letter.description),
    };
    escape_controls(&why, Lines::Escape).into_owned()
}

/// A dead letter in the naming of every `--json` answer (camelCase).
fn to_json(letter: &DeadLetter) -> serde_json::Value {
    let message = stage_message(letter);
    json!({
        "queue": letter.queue,
        "messageId": letter.message_id,
        "enqueuedAt": letter.enqueued_at,
        "deliveryCount": letter.delivery_count,
        "runId": message.as_ref().map(|m| m.run_id.to_string()),
        "stage": message.as_ref().map(|m| m.stage.name()),
        "reason": letter.reason,
        "description": letter.description,
        "body": letter.body,
    })
}

/// One line per dead letter, or a line saying there is none.
fn print_list(letters: &[DeadLetter]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if letters.is_empty() {
        writeln!(out, "no dead letter waiting")?;
        return Ok(ExitCode::SUCCESS);
    }
    for letter in letters {
        let carries = match stage_message(letter) {
            Some(m) => format!("run {} stage {}", m.run_id, m.stage),
            None => format!(
                "not a stage message: {}",
                escape_controls(&letter.body, Lines::Escape)
            ),
        };
        writeln!(
            out,
            "{}  {}  {carries}  tried {} time(s) by its function: {}",
            letter.queue,
            letter.enqueued_at.format("%Y-%m-%d %H:%M:%S UTC"),
            letter.delivery_count,
            why(letter)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
