//! The fleet view that the `dashboard` function's page (`/api/dashboard/fleet`)
//! and the `runs` function's JSON (`GET /api/runs?view=fleet`) both answer
//! with: the images of the built branch's head (`App::current_images`)
//! sorted by name, a page at a time, each with its compliance state and
//! facts, under a headline over every image.
//!
//! Store cost per page: one [`RunStore::image_runs`] call for the page's
//! images and the images built on them (for outdated children), and one
//! [`RunStore::images_patched_since`] call for the headline; neither reads
//! the whole history. When a row's current release recorded patch evidence,
//! the newest month of Microsoft's security data is read once for the page
//! (the client keeps the document cached), never per image. An image whose newest failed run is newer than its
//! newest release may have its scheduled runs paused: for it alone, its
//! history is read back to that release (`crate::schedules::state`).
//!
//! [`RunStore::image_runs`]: crate::ports::store::RunStore::image_runs
//! [`RunStore::images_patched_since`]: crate::ports::store::RunStore::images_patched_since

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::app::App;
use crate::domain::fleet::{
    FleetPage, PatchWindow, has_evidence, headline, outdated_children, patch_level, row,
};
use crate::domain::image::children_of;
use crate::ports::store::StoreError;

/// Images per page unless asked otherwise.
pub const DEFAULT_PAGE: usize = 25;
/// Most images a page holds.
pub const MAX_PAGE: usize = 100;

/// Why a page of the fleet view could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A continuation token this view did not hand out.
    #[error("the continuation token is not valid; start again from the first page")]
    BadContinuation,
    /// The store failed.
    #[error("cannot read the fleet's runs: {0}")]
    Store(#[from] StoreError),
}

/// The page of at most `limit` images after the one `continuation` names.
pub async fn fleet_page(
    app: &App,
    continuation: Option<&str>,
    limit: usize,
) -> Result<FleetPage, FleetError> {
    let now = app.now();
    let window = PatchWindow::at(&app.settings.calendar, app.settings.patch_grace, now);
    // The images of the built branch's head, ordered by name: pages are slices of it.
    let images = app.current_images().await;
    let names: Vec<String> = images.keys().cloned().collect();
    let start = match continuation {
        None => 0,
        Some(token) => {
            let after = decode(token)?;
            names.partition_point(|n| n.as_str() <= after.as_str())
        }
    };
    let end = names.len().min(start + limit.clamp(1, MAX_PAGE));
    let page = &names[start..end];
    // The page's images and the images built on them, in one query.
    let mut wanted: Vec<String> = page.to_vec();
    for name in page {
        for child in children_of(&images, name) {
            if !wanted.iter().any(|w| w == child) {
                wanted.push(child.to_string());
            }
        }
    }
    let (runs, patched) = tokio::try_join!(
        app.store.image_runs(&wanted),
        app.store.images_patched_since(window.build_time)
    )?;
    let shown: Vec<_> = runs.iter().filter(|r| page.contains(&r.image)).collect();
    let newest = if shown.iter().any(|r| has_evidence(r.released.as_ref())) {
        Some(
            app.security_updates
                .newest()
                .await
                .map_err(|e| format!("Microsoft's security data could not be read: {e}")),
        )
    } else {
        None
    };
    let mut rows = Vec::new();
    for r in shown {
        let children: Vec<&_> = children_of(&images, &r.image)
            .into_iter()
            .filter_map(|child| runs.iter().find(|c| c.image == child))
            .collect();
        let mut fleet_row = row(&window, r, now);
        fleet_row.outdated_children = outdated_children(r, &children);
        fleet_row.patch_level = patch_level(
            r.released.as_ref(),
            newest.as_ref().map(|n| n.as_ref().map_err(String::as_str)),
        );
        if r.may_be_paused() {
            let state =
                crate::schedules::state(app.store.as_ref(), &r.image, app.pause_after(&r.image))
                    .await?;
            fleet_row.paused = state.pause().cloned();
        }
        rows.push(fleet_row);
    }
    Ok(FleetPage {
        headline: headline(&window, &names, &patched, now),
        images: rows,
        continuation: page
            .last()
            .filter(|_| end < names.len())
            .map(|last| URL_SAFE_NO_PAD.encode(last)),
    })
}

fn decode(token: &str) -> Result<String, FleetError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|name| !name.is_empty())
        .ok_or(FleetError::BadContinuation)
}
