//! `rollback`: an earlier released version of an image made current again,
//! asked of a running factory (`--url`), which performs it with its own
//! gallery, store and event targets and records who asked and why. For a
//! factory that is down, `--direct` does the same from this machine's own
//! settings, with a warning.

use std::process::ExitCode;

use chrono::Utc;
use serde_json::Value;

use super::client::Client;
use super::output::print_answer;
use crate::config::{Settings, load_images};
use crate::domain::rollback::Request;
use crate::startup::{Adapters, open_gallery};

/// Make an earlier released version of an image current again.
///
/// The factory at --url excludes every higher version from latest in its
/// gallery (kept, not deleted), records the rollback with who asked and why
/// on the runs it touched (the image page, the fleet and the changelog show
/// it) and sends the image-factory.image.rolled-back event to its event
/// targets. Refused, with nothing changed: a version the factory never
/// released or its gallery no longer holds, the current version, and a
/// rollback while a release of the same image is under way. With sign-in
/// in front of the factory, IMAGE_FACTORY_API_SCOPE (and
/// IMAGE_FACTORY_FUNCTION_KEY) let the command through, and the signed-in
/// operator is recorded; else the operator token is sent and --as (your
/// user name) is recorded.
#[derive(clap::Args)]
pub struct Rollback {
    /// The image (its folder's name).
    #[arg(long)]
    image: String,
    /// The version to make current (Major.Minor.Patch).
    #[arg(long)]
    to: String,
    /// Why: recorded with the rollback and sent in its event.
    #[arg(long)]
    reason: String,
    /// Who asks, when no sign-in says (default: $USER).
    #[arg(long = "as")]
    actor: Option<String>,
    /// The factory's base URL.
    #[arg(
        long,
        env = "IMAGE_FACTORY_URL",
        default_value = "http://localhost:7071"
    )]
    url: String,
    /// Only for a factory that is down: roll back from this machine's own
    /// settings (its gallery, store and event targets), recorded as `direct`.
    #[arg(long)]
    direct: bool,
    /// Print the factory's answer as JSON.
    #[arg(long)]
    json: bool,
}

impl Rollback {
    /// Rolls back and says what is current now.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let actor = self.actor.clone().unwrap_or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "operator".into())
        });
        let answer = if self.direct {
            eprintln!(
                "warning: --direct rolls back from this machine's own settings, not the factory's: use it only while the factory at {} is down. The rollback is recorded as `direct`; its event goes to the event targets set here, or stays owed for the factory's sweeper.",
                self.url
            );
            direct(&self.image, &self.to, &self.reason, &actor).await?
        } else {
            Client::new(&self.url)
                .rollback(&self.image, &self.to, &self.reason, &actor)
                .await?
        };
        if self.json {
            return print_answer(serde_json::to_string_pretty(&answer)?);
        }
        print_answer(describe(&self.image, &answer))
    }
}

/// What the factory's answer says, in lines.
fn describe(image: &str, answer: &Value) -> String {
    let b = &answer["rollback"];
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let list = |v: &Value| {
        let items: Vec<String> = v
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    let mut lines = vec![format!(
        "{image}: {} is current (rolled back from {}; excluded from latest: {})",
        text(&b["to"]),
        b["from"].as_str().unwrap_or("no current version"),
        list(&answer["excluded"]),
    )];
    if answer["completed"].as_bool() == Some(true) {
        lines.push("this completed a rollback that was cut short earlier".into());
    }
    lines.push(format!(
        "recorded for {} ({}) at {}: {}",
        text(&b["actor"]),
        text(&b["via"]),
        text(&b["at"]),
        text(&b["reason"])
    ));
    lines.push(format!(
        "event {} (image-factory.image.rolled-back) owed by run {}",
        text(&b["id"]),
        text(&answer["eventRun"])
    ));
    if answer["waitingAbove"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        lines.push(format!(
            "waiting for approval above it, and made current if approved: {}",
            list(&answer["waitingAbove"])
        ));
    }
    lines.join("\n")
}

/// The rollback from this machine's settings, answered as the factory would.
async fn direct(image: &str, to: &str, reason: &str, actor: &str) -> anyhow::Result<Value> {
    let settings = Settings::from_env()?;
    let adapters = Adapters::from_env()?;
    let to = to.parse().map_err(|e| anyhow::anyhow!("--to {to}: {e}"))?;
    let images = load_images(&settings.images_dir)?;
    let gallery = open_gallery(&settings, &adapters, &images)?;
    let store = crate::startup::open_store(&settings, &adapters.store).await?;
    let follow_ups = crate::startup::follow_ups(&settings)?;
    let now = Utc::now();
    let request = Request {
        image: image.to_string(),
        to,
        reason: reason.to_string(),
        actor: actor.to_string(),
        via: "direct".into(),
    };
    let done = crate::rollback::perform(store.as_ref(), gallery.as_ref(), request, now).await?;
    if follow_ups.targets().is_empty() {
        eprintln!(
            "no event target is configured here (IMAGE_FACTORY_EVENT_WEBHOOKS, IMAGE_FACTORY_EVENT_GRID_ENDPOINT): the rollback's event stays owed on run {}, and the factory's sweeper delivers it",
            done.event_run
        );
    } else {
        match crate::followups::deliver_pending(&follow_ups, store.as_ref(), &done.event_run, now)
            .await
        {
            Ok(lines) => lines.iter().for_each(|l| eprintln!("{l}")),
            Err(e) => eprintln!(
                "the rollback is done and its event recorded, but not delivered now ({e}); the factory's sweeper delivers it"
            ),
        }
    }
    Ok(done.answer())
}
