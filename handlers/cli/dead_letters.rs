//! `dead-letters`: the messages the local factory's bus gave up on, read
//! from `bus.db` in the data folder (`IMAGE_FACTORY_DATA`): `list` shows
//! them, `replay ID` sends one again to its queue.
//!
//! Every stage queue forwards its dead letters to `dead-letters`, whose
//! function fails the message's run with the reason; what stays in a
//! dead-letter sub-queue is a message that function itself gave up on (the
//! run store was down for every delivery, say), so its run may still be
//! shown running. Replaying it lets the function try again. A run that was
//! failed is not brought back by a replay: start it again with
//! `image-factory trigger --image <image> --force --reason "…"`
//! (docs/operations.md, "Dead letters"). In Azure the dead letters are in
//! Service Bus, not here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;

use super::output::print_answer;
use crate::app::StageMessage;
use crate::config::Settings;
use crate::domain::controls::{Lines, escape_controls};
use crate::host::bus::{Bus, DeadLetter};
use crate::host::{BusSettings, DEAD_LETTER_QUEUE};

/// The local bus's file in the data folder (`startup::start_local` opens it).
const BUS_FILE: &str = "bus.db";

/// The local factory's dead-lettered messages: list them, or send one again
/// to its queue (the local bus only; in Azure see docs/operations.md).
#[derive(clap::Args)]
pub struct DeadLetters {
    #[command(subcommand)]
    action: DeadLettersAction,
}

#[derive(clap::Subcommand)]
enum DeadLettersAction {
    /// List every dead-lettered message of the local bus, oldest first: its
    /// ID (what `replay` takes), queue, when it was enqueued, the run and
    /// stage it carries, its deliveries and why it was dead-lettered.
    List {
        /// Print JSON instead of one line per message.
        #[arg(long)]
        json: bool,
    },
    /// Send a dead-lettered message again to its queue, as it is (body and
    /// reason), available at once: its function gets it again, and the
    /// message leaves the list. Refused, changing nothing, for an ID that is
    /// not a dead letter.
    Replay {
        /// The message's ID, as `list` prints it.
        id: i64,
    },
}

impl DeadLetters {
    /// Lists or replays.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let bus = open(&Settings::from_env()?.data_dir)?;
        match self.action {
            DeadLettersAction::List { json } => {
                let letters = bus.all_dead_letters().await?;
                if json {
                    let listed: Vec<_> = letters.iter().map(to_json).collect();
                    return print_answer(serde_json::to_string_pretty(&listed)?);
                }
                print_list(&letters)
            }
            DeadLettersAction::Replay { id } => {
                let letter = bus.resubmit(id).await?;
                print_answer(replayed(&letter))
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
        "id": letter.sequence,
        "messageId": letter.message_id,
        "queue": letter.queue,
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
        writeln!(out, "no dead-lettered message")?;
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
            "{}  {}  {}  {carries}  after {} deliveries: {}",
            letter.sequence,
            letter.queue,
            letter.enqueued_at.format("%Y-%m-%d %H:%M:%S UTC"),
            letter.delivery_count,
            why(letter)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a replay did, and what comes of it.
fn replayed(letter: &DeadLetter) -> String {
    let then = match stage_message(letter) {
        Some(m) if letter.queue == DEAD_LETTER_QUEUE => format!(
            "the dead-letter function fails run {} at its {} stage with the reason, unless the run has moved on or ended; to build again, `image-factory trigger --image <image> --force --reason \"…\"`",
            m.run_id, m.stage
        ),
        Some(m) => format!(
            "its function runs the {} stage of run {} again",
            m.stage, m.run_id
        ),
        None => "its function gets it again".to_string(),
    };
    format!(
        "replayed message {} to {}: {then}",
        letter.sequence, letter.queue
    )
}
