//! `dashboard` (`GET /api/dashboard[/runs/{id} | /images/{name} |
//! /changelog/{image} | /fleet | /reaper]`): the operators' pages. In Azure they sit
//! behind App Service authentication, and with sign-in on the handler
//! refuses a request without a signed-in principal itself
//! ([`super::caller`]); locally the host serves them on loopback only.

use std::io::{Read, Seek, SeekFrom};

use super::caller::reader;
use super::invocation::{InvocationError, retry};
use crate::app::App;
use crate::build_log;
use crate::dashboard::changelog::changelog_page;
use crate::dashboard::reaper::{Mode, reaper_page};
use crate::dashboard::{
    AttemptLog, ChildBase, Filters, ImageTree, ParentBase, image_page, not_found_page,
    refusal_page, run_page, runs_page,
};
use crate::domain::fleet::outdated_reason;
use crate::domain::image::children_of;
use crate::domain::run::{RunId, RunStatus, Stage};
use crate::ports::store::{RunQuery, StoreError};
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

/// Bytes of the build log shown on a run's page.
const LOG_TAIL: u64 = 8 * 1024;
/// Runs per page of the list.
const PAGE_SIZE: usize = 50;
/// Releases per page of an image's changelog.
const CHANGELOG_PAGE: usize = 20;
/// The newest runs whose records the reaper's panel shows.
const REAPER_RUNS: usize = 100;

/// A dashboard request.
#[derive(Debug)]
pub struct Dashboard {
    request: HttpRequestData,
}

impl Dashboard {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<Dashboard, InvocationError> {
        Ok(Dashboard {
            request: request.http_request()?,
        })
    }

    /// Renders the page asked for.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        if !matches!(
            self.request.method.to_ascii_uppercase().as_str(),
            "GET" | "HEAD"
        ) {
            return Ok(html(
                405,
                refusal_page("Not allowed", "The dashboard is read-only."),
            ));
        }
        if let Err(refused) = reader(app, &self.request) {
            return Ok(html(
                refused.status,
                refusal_page("Sign in", &refused.message),
            ));
        }
        let param = |name: &str| {
            self.request
                .params
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let now = app.now();
        let response = match (param("section").as_deref(), param("id")) {
            (None, None) => self.runs(app, now).await?,
            (Some("fleet"), None) => self.fleet(app).await?,
            (Some("reaper"), None) => {
                let query = RunQuery {
                    limit: REAPER_RUNS,
                    ..RunQuery::default()
                };
                let page = app
                    .store
                    .list(&query)
                    .await
                    .map_err(|e| retry("cannot list runs", e))?;
                let mode = match &app.reaper {
                    None => Mode::Off,
                    Some(reaper) if reaper.dry_run => Mode::DryRun,
                    Some(_) => Mode::Deleting,
                };
                html(200, reaper_page(&page.runs, mode))
            }
            (Some("runs"), Some(id)) => match id.parse::<RunId>() {
                Err(e) => html(404, not_found_page(&e.to_string())),
                Ok(id) => match app.store.get(&id).await {
                    Ok(stored) => {
                        let run_dir = app.settings.run_dir(&id);
                        let tail = log_tail(&run_dir.join(build_log::CURRENT));
                        let attempts = stored.value.stage(Stage::Build).attempts.len();
                        let earlier: Vec<AttemptLog> = build_log::earlier(&run_dir, attempts)
                            .into_iter()
                            .filter_map(|(attempt, path)| {
                                Some(AttemptLog {
                                    attempt,
                                    tail: log_tail(&path)?,
                                })
                            })
                            .collect();
                        html(200, run_page(&stored.value, tail.as_deref(), &earlier, now))
                    }
                    Err(StoreError::NotFound { .. }) => {
                        html(404, not_found_page(&format!("There is no run {id}.")))
                    }
                    Err(e) => return Err(retry("cannot read the run", e)),
                },
            },
            (Some("images"), Some(name)) => {
                let query = RunQuery {
                    image: Some(name.clone()),
                    limit: 100,
                    ..RunQuery::default()
                };
                let page = app
                    .store
                    .list(&query)
                    .await
                    .map_err(|e| retry("cannot list runs", e))?;
                let images = app.current_images().await;
                if !images.contains_key(&name) && page.runs.is_empty() {
                    html(404, not_found_page(&format!("There is no image {name}.")))
                } else {
                    let tree = image_tree(app, &images, &name).await?;
                    let gallery = app.gallery.versions(&name).await.map_err(|e| {
                        tracing::warn!(image = %name, error = %e, "cannot read the gallery");
                        format!("The gallery could not be read: {e}")
                    });
                    html(200, image_page(&name, &page.runs, &gallery, &tree, now))
                }
            }
            (Some("changelog"), Some(name)) => self.changelog(app, &name).await?,
            _ => html(404, not_found_page("There is no such page.")),
        };
        Ok(response)
    }

    /// An image's releases, newest first, with their notes; a page at a time.
    async fn changelog(
        &self,
        app: &App,
        image: &str,
    ) -> Result<InvocationResponse, InvocationError> {
        let query = RunQuery {
            image: Some(image.to_string()),
            statuses: vec![RunStatus::Released],
            limit: CHANGELOG_PAGE,
            continuation: self
                .request
                .query
                .get("continuation")
                .filter(|c| !c.is_empty())
                .cloned(),
            without_withdrawn: false,
        };
        let page = match app.store.list(&query).await {
            Ok(page) => page,
            Err(StoreError::BadContinuation) => {
                return Ok(html(
                    400,
                    refusal_page("Bad page", "That page link is not valid."),
                ));
            }
            Err(e) => return Err(retry("cannot list releases", e)),
        };
        if page.runs.is_empty() && !app.current_images().await.contains_key(image) {
            return Ok(html(
                404,
                not_found_page(&format!("There is no image {image}.")),
            ));
        }
        Ok(html(
            200,
            changelog_page(image, &page.runs, page.continuation.as_deref()),
        ))
    }

    async fn fleet(&self, app: &App) -> Result<InvocationResponse, InvocationError> {
        let continuation = self
            .request
            .query
            .get("continuation")
            .filter(|c| !c.is_empty());
        match super::fleet::fleet_page(
            app,
            continuation.map(String::as_str),
            super::fleet::DEFAULT_PAGE,
        )
        .await
        {
            Ok(fleet) => Ok(html(200, crate::dashboard::fleet::fleet_page(&fleet))),
            Err(super::fleet::FleetError::BadContinuation) => Ok(html(
                400,
                crate::pages::notice_page(
                    "Bad page",
                    "That page link is not valid.",
                    true,
                    Some(("/api/dashboard/fleet", "← the fleet")),
                ),
            )),
            Err(e) => Err(retry("cannot show the fleet", e)),
        }
    }

    async fn runs(
        &self,
        app: &App,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<InvocationResponse, InvocationError> {
        let q = &self.request.query;
        let mut filters = Filters::default();
        let current = app.current_images().await;
        if let Some(image) = q.get("image").filter(|i| !i.is_empty()) {
            if !current.contains_key(image) {
                return Ok(html(
                    404,
                    not_found_page(&format!("There is no image {image}.")),
                ));
            }
            filters.image = Some(image.clone());
        }
        if let Some(status) = q.get("status").filter(|s| !s.is_empty()) {
            match RunStatus::from_name(status) {
                Some(s) => filters.status = Some(s),
                None => {
                    return Ok(html(
                        400,
                        refusal_page("Bad filter", &format!("Unknown status {status}.")),
                    ));
                }
            }
        }
        let query = RunQuery {
            image: filters.image.clone(),
            statuses: filters.status.into_iter().collect(),
            limit: PAGE_SIZE,
            continuation: q.get("continuation").filter(|c| !c.is_empty()).cloned(),
            without_withdrawn: false,
        };
        let listed = match app.store.list(&query).await {
            Ok(page) => page,
            Err(StoreError::BadContinuation) => {
                return Ok(html(
                    400,
                    refusal_page("Bad page", "That page link is not valid."),
                ));
            }
            Err(e) => return Err(retry("cannot list runs", e)),
        };
        let images: Vec<String> = current.keys().cloned().collect();
        Ok(html(
            200,
            runs_page(
                &listed.runs,
                &images,
                &filters,
                listed.continuation.as_deref(),
                now,
            ),
        ))
    }
}

/// The image tree around `name`: its parent with the version this image's
/// current release was built on, its children with theirs, each with why
/// it is outdated when built on another version than the current one (a
/// version a rollback withdrew says who withdrew it and why); one store
/// query.
async fn image_tree(
    app: &App,
    images: &std::collections::BTreeMap<String, crate::domain::image::ImageConfig>,
    name: &str,
) -> Result<ImageTree, InvocationError> {
    let parent = images.get(name).and_then(|i| i.settings.parent());
    let children = children_of(images, name);
    let names: Vec<String> = std::iter::once(name)
        .chain(parent)
        .chain(children.iter().copied())
        .map(String::from)
        .collect();
    let runs = app
        .store
        .image_runs(&names)
        .await
        .map_err(|e| retry("cannot read the image tree", e))?;
    let current = |image: &str| {
        runs.iter()
            .find(|r| r.image == image)
            .and_then(|r| r.released.as_ref())
    };
    let built_on = |image: &str| current(image).and_then(|r| r.trigger.base_image_version.clone());
    let outdated = |parent: Option<&crate::domain::run::Run>, base: Option<&String>| {
        outdated_reason(parent?, base?)
    };
    Ok(ImageTree {
        parent: parent.map(|p| {
            let base = built_on(name);
            ParentBase {
                name: p.to_string(),
                outdated: outdated(current(p), base.as_ref()),
                latest: current(p).map(|r| r.version.to_string()),
                built_on: base,
            }
        }),
        children: children
            .iter()
            .map(|child| {
                let base = built_on(child);
                ChildBase {
                    outdated: outdated(current(name), base.as_ref()),
                    name: child.to_string(),
                    built_on: base,
                }
            })
            .collect(),
    })
}

fn html(status: u16, body: String) -> InvocationResponse {
    InvocationResponse::http(HttpResponseData::html(status, body))
}

/// The last lines of a log file, if there is one.
fn log_tail(path: &std::path::Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    // Drop a first line cut in the middle.
    let text = if len > LOG_TAIL {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    // As a person reads it: time, step, message (packer's own lines are
    // `runs logs --raw`). Line ends written by Windows tools are line
    // ends; a lone carriage return (or any other control) is shown
    // escaped by the page.
    Some(crate::packer::readable_text(&text.replace("\r\n", "\n")))
}
