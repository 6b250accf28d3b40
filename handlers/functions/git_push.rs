//! `git-push` (`POST /api/hooks/{provider}`): a push to the repository that
//! holds the image templates starts one run per image folder it touched.
//!
//! - `github`: the `X-Hub-Signature-256` HMAC of the raw body is checked
//!   before anything is parsed; `ping` is answered; only `push` starts runs;
//!   the changed files of the listed commits say which images to build (a push
//!   of 20 commits or more, where GitHub stops listing, builds every image).
//! - `azure-devops`: the `git.push` service-hook event, authenticated with the
//!   shared secret as the basic-auth password or in an `X-Hook-Secret` header.
//!   Its payload lists no files, so such a push builds every image; build
//!   avoidance then skips the images whose inputs did not change.
//!
//! Every push is built from its own commit: the images folder at the pushed
//! commit is snapshotted once ([`crate::sources`]), and the images, their
//! settings and every stage of their runs come from that snapshot. A commit
//! that adds an image folder builds it with no restart; a broken
//! `image.toml` makes a run its validate stage fails, and the others build.
//!
//! Only configured branches build. A push run's id is `push-<image>-<commit>`
//! with the whole commit id, so a redelivered webhook finds the runs it
//! created the first time and two commits never share a run. (Runs made
//! before ids carried the whole commit are named after its first 12
//! characters; a redelivery of such a push finds its run under that name.)
//!
//! Changed paths are normalised lexically (`.` and `..` segments, repeated
//! slashes, backslashes) before they are mapped to image folders; a path that
//! leaves the repository touches nothing. The answer lists what was ignored
//! and why: a branch that is not built, a path outside every image folder,
//! an image built on a factory image that has no release yet (its parent's
//! first release starts it).
//!
//! Every image of a push stands on its own: the run of each image that can
//! start is created and its first stage's message goes out with this
//! answer, whatever happens to the other images. A push is answered `202`
//! unless an image's run could not be made for a reason worth retrying (a
//! store outage): then the answer takes that status (`503`) and lists the
//! image under `failed`, the runs it did make still start, and a redelivery
//! finds them by their ids.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::invocation::InvocationError;
use crate::app::{App, CreateError, Created, dispatch_follow_up, secret_matches};
use crate::domain::run::{MESSAGE_KEPT, RepositoryRef, RunId, Trigger, TriggerKind};
use crate::ports::store::StoreError;
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

/// Largest webhook body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// GitHub lists at most this many commits in a push payload.
const GITHUB_COMMIT_LIMIT: usize = 20;

/// A push webhook invocation.
#[derive(Debug)]
pub struct GitPush {
    provider: String,
    request: HttpRequestData,
}

/// A push, whatever sent it.
struct Push {
    source: &'static str,
    branch: String,
    commit: String,
    actor: Option<String>,
    /// Changed files, when the provider lists them.
    paths: Option<Vec<String>>,
    /// The repository pushed to, when the payload names it.
    repository: Option<RepositoryRef>,
    /// The pushed commit's message, when the payload carries it.
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GitHubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    commits: Vec<GitHubCommit>,
    #[serde(default)]
    head_commit: Option<GitHubCommit>,
    #[serde(default)]
    pusher: Option<GitHubPusher>,
    #[serde(default)]
    repository: Option<GitHubRepository>,
}

#[derive(Debug, Deserialize)]
struct GitHubRepository {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct GitHubCommit {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct GitHubPusher {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevOpsEvent {
    event_type: String,
    #[serde(default)]
    resource: Option<DevOpsPush>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevOpsPush {
    #[serde(default)]
    ref_updates: Vec<DevOpsRefUpdate>,
    #[serde(default)]
    pushed_by: Option<DevOpsIdentity>,
    #[serde(default)]
    repository: Option<DevOpsRepository>,
    /// The pushed commits (Azure DevOps lists up to a few with their comments).
    #[serde(default)]
    commits: Vec<DevOpsCommit>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevOpsCommit {
    commit_id: String,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DevOpsRepository {
    id: String,
    url: String,
    project: DevOpsProject,
}

#[derive(Debug, Deserialize)]
struct DevOpsProject {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevOpsRefUpdate {
    name: String,
    new_object_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevOpsIdentity {
    #[serde(default)]
    display_name: Option<String>,
}

impl GitPush {
    /// Decodes the HTTP request.
    pub fn parse(request: &InvocationRequest) -> Result<GitPush, InvocationError> {
        let request = request.http_request()?;
        let provider = request.params.get("provider").cloned().unwrap_or_default();
        Ok(GitPush { provider, request })
    }

    /// Verifies and handles the push.
    pub async fn apply(self, app: &App) -> Result<InvocationResponse, InvocationError> {
        Ok(match self.handle(app).await {
            Ok(response) => response,
            Err(Reply(http)) => InvocationResponse::http(http),
        })
    }

    async fn handle(&self, app: &App) -> Result<InvocationResponse, Reply> {
        if !self.request.method.eq_ignore_ascii_case("POST") {
            return Err(Reply::error(405, "webhooks are POSTed"));
        }
        let body = self
            .request
            .body_bytes()
            .ok_or_else(|| Reply::error(400, "the webhook body could not be read"))?;
        if body.len() > MAX_BODY {
            return Err(Reply::error(413, "the webhook body is larger than 1 MiB"));
        }
        let pushes = match self.provider.as_str() {
            "github" => self.github(app, &body)?,
            "azure-devops" => self.azure_devops(app, &body)?,
            other => {
                return Err(Reply::error(
                    404,
                    &format!("unknown webhook provider `{other}`; supported: github, azure-devops"),
                ));
            }
        };
        let mut response = InvocationResponse::default();
        let mut started = Vec::new();
        let mut ignored = Vec::new();
        // Images whose run could not be made (a store outage): the answer
        // lists them with the error and takes the worst status, so the
        // sender delivers again; the runs made are found by their ids.
        let mut failed = Vec::new();
        let mut worst = 202;
        for push in pushes {
            if !app.settings.branches.contains(&push.branch) {
                ignored.push(serde_json::json!({
                    "branch": push.branch,
                    "reason": format!(
                        "not a built branch: IMAGE_FACTORY_BRANCHES lists {}",
                        app.settings.branches.join(", ")
                    ),
                }));
                continue;
            }
            // A commit whose source cannot be taken starts nothing; the
            // runs of the other pushes still go out with this answer.
            let source = match app
                .sources
                .take(push.repository.as_ref(), Some(&push.commit))
                .await
            {
                Ok(source) => source,
                Err(e) => {
                    worst = worst.max(if e.is_transient() { 503 } else { 422 });
                    failed.push(serde_json::json!({
                        "commit": push.commit,
                        "error": format!("cannot take the source of commit {}: {e}", push.commit),
                    }));
                    continue;
                }
            };
            let images = source.images(&app.settings.repo_images_path);
            let touched = touched_images(app, push.paths.as_deref(), &images);
            ignored.extend(
                touched
                    .ignored
                    .into_iter()
                    .map(|(path, reason)| serde_json::json!({ "path": path, "reason": reason })),
            );
            for image in touched.images {
                let trigger = Trigger {
                    kind: TriggerKind::Push,
                    source: push.source.into(),
                    commit: Some(push.commit.clone()),
                    branch: Some(push.branch.clone()),
                    actor: push.actor.clone(),
                    reason: None,
                    force: false,
                    base_image_version: None,
                    repository: push.repository.clone(),
                    message: push.message.clone(),
                };
                // Each image on its own: one that cannot start never stops
                // the others, and every run made here has its first
                // message in this same response.
                let created = match legacy_run(app, &image, &push.commit).await {
                    Ok(Some(existing)) => Ok(existing),
                    Ok(None) => {
                        app.create_run(
                            format!("push-{image}-{}", push.commit),
                            &image,
                            trigger,
                            &source,
                        )
                        .await
                    }
                    Err(e) => Err(CreateError::Store(e)),
                };
                match created {
                    Ok(created) => {
                        dispatch_follow_up(&mut response, created.run());
                        started.push(serde_json::json!({
                            "runId": created.run().id,
                            "image": image,
                            "version": created.run().version,
                            "new": matches!(created, Created::New(_)),
                        }));
                    }
                    Err(CreateError::ParentNotReleased { parent, .. }) => {
                        ignored.push(serde_json::json!({
                            "image": image,
                            "reason": format!(
                                "follows {parent}'s first release: {parent} has no release yet, and its release starts {image}"
                            ),
                        }));
                    }
                    Err(error) => {
                        tracing::warn!(image = %image, %error, "a pushed image's run was not created");
                        worst = worst.max(error.http_status());
                        failed.push(
                            serde_json::json!({ "image": image, "error": error.to_string() }),
                        );
                    }
                }
            }
        }
        let mut answer = serde_json::json!({ "runs": started });
        if !ignored.is_empty() {
            answer["ignored"] = serde_json::json!(ignored);
        }
        if !failed.is_empty() {
            answer["failed"] = serde_json::json!(failed);
        }
        response.set_output(
            crate::protocol::HTTP_OUTPUT,
            &HttpResponseData::json(worst, &answer),
        );
        Ok(response)
    }

    fn github(&self, app: &App, body: &[u8]) -> Result<Vec<Push>, Reply> {
        let Some(secret) = app.secrets.github.as_deref() else {
            return Err(Reply::error(
                503,
                "no GitHub webhook secret is configured (IMAGE_FACTORY_GITHUB_SECRET); refusing unsigned webhooks",
            ));
        };
        let signature = self
            .request
            .header("X-Hub-Signature-256")
            .unwrap_or_default();
        if !github_signature_valid(secret.as_bytes(), body, signature) {
            tracing::warn!("GitHub webhook refused: missing or wrong signature");
            return Err(Reply::error(
                401,
                "the X-Hub-Signature-256 signature is missing or does not match; check the webhook secret",
            ));
        }
        let body = utf8(body)?;
        match self.request.header("X-GitHub-Event").unwrap_or_default() {
            "push" => {}
            "ping" => return Err(Reply::json(200, serde_json::json!({ "pong": true }))),
            other => {
                return Err(Reply::ignored(format!(
                    "event `{other}` starts nothing; only push does"
                )));
            }
        }
        let push: GitHubPush = serde_json::from_str(body)
            .map_err(|e| Reply::error(400, &format!("the push payload is not valid: {e}")))?;
        let Some(branch) = push.git_ref.strip_prefix("refs/heads/") else {
            return Err(Reply::ignored(format!("{} is not a branch", push.git_ref)));
        };
        if push.deleted {
            return Err(Reply::ignored(format!("branch {branch} was deleted")));
        }
        let paths = (push.commits.len() < GITHUB_COMMIT_LIMIT).then(|| {
            push.commits
                .iter()
                .chain(push.head_commit.iter())
                .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified))
                .cloned()
                .collect()
        });
        Ok(vec![Push {
            source: "github",
            branch: branch.to_string(),
            commit: commit_id(&push.after)?,
            actor: push.pusher.map(|p| p.name),
            paths,
            repository: push.repository.as_ref().and_then(github_repository),
            message: push.head_commit.and_then(|c| c.message).map(kept_message),
        }])
    }

    fn azure_devops(&self, app: &App, body: &[u8]) -> Result<Vec<Push>, Reply> {
        let Some(secret) = app.secrets.azure_devops.as_deref() else {
            return Err(Reply::error(
                503,
                "no Azure DevOps service-hook secret is configured (IMAGE_FACTORY_AZURE_DEVOPS_SECRET); refusing unauthenticated webhooks",
            ));
        };
        let presented = self
            .request
            .header("X-Hook-Secret")
            .map(str::to_string)
            .or_else(|| basic_password(self.request.header("Authorization")?));
        if !presented.is_some_and(|p| secret_matches(secret, &p)) {
            tracing::warn!("Azure DevOps webhook refused: missing or wrong secret");
            return Err(Reply::error(
                401,
                "the service hook's basic-auth password or X-Hook-Secret header is missing or wrong",
            ));
        }
        let event: DevOpsEvent = serde_json::from_str(utf8(body)?).map_err(|e| {
            Reply::error(400, &format!("the service-hook payload is not valid: {e}"))
        })?;
        if event.event_type != "git.push" {
            return Err(Reply::ignored(format!(
                "event `{}` starts nothing; only git.push does",
                event.event_type
            )));
        }
        let push = event
            .resource
            .ok_or_else(|| Reply::error(400, "the git.push payload has no resource"))?;
        let actor = push.pushed_by.and_then(|p| p.display_name);
        let repository = push.repository.as_ref().and_then(devops_repository);
        let mut pushes = Vec::new();
        for update in push.ref_updates {
            let Some(branch) = update.name.strip_prefix("refs/heads/") else {
                continue;
            };
            if update.new_object_id.bytes().all(|b| b == b'0') {
                continue; // the branch was deleted
            }
            let message = push
                .commits
                .iter()
                .find(|c| c.commit_id.eq_ignore_ascii_case(&update.new_object_id))
                .and_then(|c| c.comment.clone())
                .map(kept_message);
            pushes.push(Push {
                source: "azure-devops",
                branch: branch.to_string(),
                commit: commit_id(&update.new_object_id)?,
                actor: actor.clone(),
                paths: None,
                repository: repository.clone(),
                message,
            });
        }
        Ok(pushes)
    }
}

/// A commit message as a run keeps it: cut to [`MESSAGE_KEPT`] bytes.
fn kept_message(message: String) -> String {
    crate::domain::truncate(&message, MESSAGE_KEPT)
}

/// The GitHub repository a push names (`repository.full_name`, `owner/name`).
fn github_repository(repository: &GitHubRepository) -> Option<RepositoryRef> {
    let (owner, repo) = repository.full_name.split_once('/')?;
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    (part(owner) && part(repo)).then(|| RepositoryRef::GitHub {
        owner: owner.to_string(),
        repo: repo.to_string(),
    })
}

/// The Azure DevOps repository a `git.push` names: its id, its project's id,
/// and the organization's URL, which is its API URL's part before `/_apis/`
/// (`https://dev.azure.com/<organization>/_apis/git/repositories/<id>`).
fn devops_repository(repository: &DevOpsRepository) -> Option<RepositoryRef> {
    let guid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let (organization_url, _) = repository.url.split_once("/_apis/")?;
    let web = organization_url.starts_with("https://") || organization_url.starts_with("http://");
    (web && guid(&repository.id) && guid(&repository.project.id)).then(|| {
        RepositoryRef::AzureDevOps {
            organization_url: organization_url.to_string(),
            project: repository.project.id.clone(),
            repository_id: repository.id.clone(),
        }
    })
}

/// An HTTP answer given early, with nothing stored and nothing dispatched.
struct Reply(HttpResponseData);

impl Reply {
    fn error(status: u16, message: &str) -> Reply {
        Reply(HttpResponseData::error(status, message))
    }

    fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply(HttpResponseData::json(status, &value))
    }

    /// 202 with nothing started, as providers expect for events they may send.
    fn ignored(reason: String) -> Reply {
        Reply::json(
            202,
            serde_json::json!({ "runs": [], "ignored": [{ "reason": reason }] }),
        )
    }
}

/// The run a push of `commit` made before run ids carried the whole commit
/// (`push-<image>-<first 12 characters>`), if there is one and it built this
/// very commit: a redelivered webhook finds it. A run of another commit that
/// shares the prefix is not this push's run.
async fn legacy_run(app: &App, image: &str, commit: &str) -> Result<Option<Created>, StoreError> {
    let Some(prefix) = commit.get(..12) else {
        return Ok(None);
    };
    let Ok(id) = format!("push-{image}-{prefix}").parse::<RunId>() else {
        return Ok(None);
    };
    match app.store.get(&id).await {
        Ok(stored) if stored.value.trigger.commit.as_deref() == Some(commit) => {
            Ok(Some(Created::Existing(stored.value)))
        }
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An authenticated body as text; one that is not UTF-8 is refused (400).
fn utf8(body: &[u8]) -> Result<&str, Reply> {
    std::str::from_utf8(body).map_err(|e| {
        Reply::error(
            400,
            &format!("the webhook body is not UTF-8 text (invalid byte at offset {}); webhooks send JSON", e.valid_up_to()),
        )
    })
}

/// A full commit id (40 or 64 hex digits), lower-cased.
fn commit_id(text: &str) -> Result<String, Reply> {
    let ok = matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err(Reply::error(400, "the push names no full commit id"));
    }
    Ok(text.to_ascii_lowercase())
}

/// The password of a `Basic` authorization header.
fn basic_password(header: &str) -> Option<String> {
    let encoded = crate::app::authorization(header, "Basic")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    decoded
        .split_once(':')
        .map(|(_, password)| password.to_string())
}

/// What a push's changed paths touched.
#[derive(Debug, Default, PartialEq, Eq)]
struct Touched {
    /// Image folders with changed files.
    images: BTreeSet<String>,
    /// Paths that touch no image, each with why.
    ignored: Vec<(String, String)>,
}

/// The images a push touched among `images` (those of the pushed commit's
/// snapshot): folders under the images path with changed files; every image
/// when the provider does not list files. A folder whose name cannot name
/// an image is listed as ignored, with why.
fn touched_images<T>(
    app: &App,
    paths: Option<&[String]>,
    images: &std::collections::BTreeMap<String, Result<T, String>>,
) -> Touched {
    let runnable = |name: &str| crate::domain::image::is_valid_image_name(name);
    let mut touched = match paths {
        None => Touched {
            images: images.keys().filter(|n| runnable(n)).cloned().collect(),
            ignored: Vec::new(),
        },
        Some(paths) => map_paths(&app.settings.repo_images_path, paths, |name| {
            images.contains_key(name)
        }),
    };
    let unnamed: Vec<String> = touched
        .images
        .iter()
        .filter(|n| !runnable(n))
        .cloned()
        .collect();
    for name in unnamed {
        touched.images.remove(&name);
        let why = images
            .get(&name)
            .and_then(|s| s.as_ref().err().cloned())
            .unwrap_or_default();
        touched.ignored.push((name, why));
    }
    touched
}

/// Maps repository paths to the image folders under `images_path` that
/// `is_image` knows, after normalising both; lists the other paths and why.
fn map_paths(images_path: &str, paths: &[String], is_image: impl Fn(&str) -> bool) -> Touched {
    let mut touched = Touched::default();
    let prefix = normalise(images_path).unwrap_or_default();
    let mut seen = BTreeSet::new();
    for path in paths {
        if !seen.insert(path.as_str()) {
            continue;
        }
        let Some(segments) = normalise(path) else {
            touched.ignored.push((
                path.clone(),
                "the path is absolute or leaves the repository".into(),
            ));
            continue;
        };
        let image = segments
            .strip_prefix(prefix.as_slice())
            .and_then(|rest| rest.first());
        match image {
            Some(name) if is_image(name) => {
                touched.images.insert(name.clone());
            }
            Some(name) => touched.ignored.push((
                path.clone(),
                format!(
                    "{}/{name} is not an image folder (no image.toml there)",
                    prefix.join("/")
                ),
            )),
            None => touched.ignored.push((
                path.clone(),
                format!(
                    "not under {}/, where the image folders are (IMAGE_FACTORY_REPO_IMAGES_PATH)",
                    prefix.join("/")
                ),
            )),
        }
    }
    touched
}

/// The segments of a repository path, normalised lexically: backslashes are
/// separators, empty and `.` segments go, `..` removes the segment before it.
/// `None` for a path that is absolute or climbs above the repository's root.
fn normalise(path: &str) -> Option<Vec<String>> {
    let path = path.replace('\\', "/");
    if path.starts_with('/') {
        return None;
    }
    let mut segments: Vec<String> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            other => segments.push(other.to_string()),
        }
    }
    Some(segments)
}

/// Checks GitHub's `sha256=<hex>` HMAC of the raw body, in constant time.
pub fn github_signature_valid(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!(
            "sha256={}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }

    #[test]
    fn paths_are_normalised_lexically_and_those_leaving_the_repository_are_refused() {
        let ok = |p: &str| normalise(p).map(|s| s.join("/"));
        assert_eq!(
            ok("images/example/build.pkr.hcl").as_deref(),
            Some("images/example/build.pkr.hcl")
        );
        assert_eq!(
            ok("images//./example/x").as_deref(),
            Some("images/example/x")
        );
        assert_eq!(
            ok("images\\example\\x").as_deref(),
            Some("images/example/x")
        );
        assert_eq!(
            ok("images/example/../../etc/passwd").as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(ok("a/b/../../c").as_deref(), Some("c"));
        for outside in [
            "..",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "\\server\\share",
            "images/../../x",
        ] {
            assert_eq!(normalise(outside), None, "{outside}");
        }
    }

    #[test]
    fn only_paths_inside_a_known_image_folder_touch_it() {
        let paths: Vec<String> = [
            "images/example/build.pkr.hcl",
            "images/example/../../etc/passwd",
            "images/web/./scripts/x.sh",
            "images/unknown/x",
            "images/example/../web2/x",
            "README.md",
            "images",
            "../images/example/x",
            "images/example/build.pkr.hcl",
        ]
        .map(String::from)
        .to_vec();
        let touched = map_paths("images/", &paths, |name| ["example", "web"].contains(&name));
        assert_eq!(
            touched.images.into_iter().collect::<Vec<_>>(),
            ["example", "web"]
        );
        let ignored: Vec<&str> = touched.ignored.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "images/example/../../etc/passwd",
                "images/unknown/x",
                "images/example/../web2/x",
                "README.md",
                "images",
                "../images/example/x",
            ]
        );
        let nested = map_paths("src/./images", &["src/images/web/x".to_string()], |_| true);
        assert_eq!(nested.images.into_iter().collect::<Vec<_>>(), ["web"]);
    }

    #[test]
    fn only_well_formed_repositories_are_recorded_from_a_push() {
        let github = |full_name: &str| {
            github_repository(&GitHubRepository {
                full_name: full_name.into(),
            })
        };
        assert_eq!(
            github("octo-org/images.git_x"),
            Some(RepositoryRef::GitHub {
                owner: "octo-org".into(),
                repo: "images.git_x".into()
            })
        );
        for bad in ["octo", "/images", "octo/", "octo/a/b", "octo/a b", "../x/y"] {
            assert_eq!(github(bad), None, "{bad}");
        }
        let devops = |url: &str, id: &str| {
            devops_repository(&DevOpsRepository {
                id: id.into(),
                url: url.into(),
                project: DevOpsProject {
                    id: "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c".into(),
                },
            })
        };
        let id = "278d5cd2-584d-4b63-824a-2ba458937249";
        assert_eq!(
            devops(
                &format!("https://dev.azure.com/fabrikam/_apis/git/repositories/{id}"),
                id
            ),
            Some(RepositoryRef::AzureDevOps {
                organization_url: "https://dev.azure.com/fabrikam".into(),
                project: "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c".into(),
                repository_id: id.into(),
            })
        );
        assert_eq!(devops("https://dev.azure.com/fabrikam/repo", id), None);
        assert_eq!(devops("file:///x/_apis/git", id), None);
        assert_eq!(
            devops("https://dev.azure.com/f/_apis/git/repositories/x", "../x"),
            None
        );
    }

    #[test]
    fn basic_auth_passwords_are_read_and_garbage_is_not() {
        assert_eq!(
            basic_password("Basic dXNlcjpzM2NyZXQ6eA==").as_deref(),
            Some("s3cret:x")
        );
        assert_eq!(
            basic_password("basic dXNlcjpzM2NyZXQ6eA==").as_deref(),
            Some("s3cret:x")
        );
        for bad in ["Basic", "Basic !!!", "Bearer dXNlcjpz", "Basic dXNlcg=="] {
            assert_eq!(basic_password(bad), None, "{bad}");
        }
    }

    #[test]
    fn github_signatures_verify_only_for_the_exact_body_and_secret() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload "Hello, World!".
        let documented = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(github_signature_valid(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            documented
        ));
        let sig = sign(b"s3cret", b"{}");
        assert!(github_signature_valid(b"s3cret", b"{}", &sig));
        assert!(!github_signature_valid(b"s3cret", b"{ }", &sig));
        assert!(!github_signature_valid(b"other", b"{}", &sig));
        for bad in [
            "",
            "sha256=",
            "sha1=abc",
            "sha256=zz",
            "sha256=abc",
            &sig[..sig.len() - 2],
        ] {
            assert!(!github_signature_valid(b"s3cret", b"{}", bad), "{bad}");
        }
    }
}
