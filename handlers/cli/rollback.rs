//! `rollback`: an earlier gallery version of an image made latest again, in
//! the gallery the settings choose (the Azure Compute Gallery, or the data
//! folder's local gallery), and the rollback event of the run that released
//! it.

use std::process::ExitCode;

use chrono::Utc;

use super::output::print_answer;
use crate::config::{Settings, load_images};
use crate::domain::version::ImageVersion;
use crate::ports::gallery::GalleryOutcome;
use crate::startup::{Adapters, open_gallery};

/// Make an earlier gallery version of an image latest again.
///
/// Every higher version is excluded from latest (kept, not deleted). With
/// IMAGE_FACTORY_SUBSCRIPTION_ID, IMAGE_FACTORY_GALLERY_RESOURCE_GROUP and
/// IMAGE_FACTORY_GALLERY set, in the Azure Compute Gallery; else in the
/// local gallery (the data folder's releases/). Refuses a version the
/// gallery does not have or is deleting.
#[derive(clap::Args)]
pub struct Rollback {
    /// The image (its folder's name).
    #[arg(long)]
    image: String,
    /// The version to make latest (Major.Minor.Patch).
    #[arg(long)]
    to: String,
}

impl Rollback {
    /// Rolls back and says what is latest now.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Rollback { image, to } = self;
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
}

/// Applies the promotion plan of `to` to `image`'s versions in the gallery
/// the settings choose: the Azure Compute Gallery when the factory manages
/// Azure, else the data folder's local gallery.
async fn rollback(image: &str, to: &str) -> anyhow::Result<GalleryOutcome> {
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
        let store = crate::startup::open_store(settings, &adapters.store).await?;
        let follow_ups = crate::startup::follow_ups(settings)?;
        let now = Utc::now();
        let Some(id) = crate::followups::owe_rollback(store.as_ref(), image, version, now).await?
        else {
            return Ok::<_, anyhow::Error>(format!(
                "no run of this factory released {image} {version}: no rollback event sent"
            ));
        };
        if follow_ups.targets().is_empty() {
            return Ok(format!(
                "rollback event recorded on run {id}; no event target is configured here (IMAGE_FACTORY_EVENT_WEBHOOKS, IMAGE_FACTORY_EVENT_GRID_ENDPOINT), so it stays owed: the factory's sweeper delivers it"
            ));
        }
        let lines =
            crate::followups::deliver_pending(&follow_ups, store.as_ref(), &id, now).await?;
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
