//! `git-push` (`POST /api/hooks/{provider}`): a push to the repository that
//! holds the image templates starts one run per image folder it touched.
//!
//! The signature is checked on the raw body before anything is parsed; a
//! redelivered webhook finds the runs it created the first time, because a
//! push run's id is `push-<image>-<commit>`.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::InvocationError;
use crate::app::{App, Created, dispatch_follow_up};
use crate::domain::run::{Trigger, TriggerKind};
use crate::protocol::{HttpRequestData, HttpResponseData, InvocationRequest, InvocationResponse};

/// Largest webhook body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A push webhook invocation.
#[derive(Debug)]
pub struct GitPush {
    provider: String,
    request: HttpRequestData,
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
}

#[derive(Debug, Deserialize)]
struct GitHubCommit {
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

/// GitHub lists at most this many commits in a push payload.
const GITHUB_COMMIT_LIMIT: usize = 20;

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
        if self.provider != "github" {
            return Err(Reply::error(
                404,
                &format!(
                    "unknown webhook provider `{}`; supported: github",
                    self.provider
                ),
            ));
        }
        let body = self.request.body_text();
        if body.len() > MAX_BODY {
            return Err(Reply::error(413, "the webhook body is larger than 1 MiB"));
        }
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
        if !github_signature_valid(secret.as_bytes(), body.as_bytes(), signature) {
            tracing::warn!("GitHub webhook refused: missing or wrong signature");
            return Err(Reply::error(
                401,
                "the X-Hub-Signature-256 signature is missing or does not match; check the webhook secret",
            ));
        }
        match self.request.header("X-GitHub-Event").unwrap_or_default() {
            "push" => {}
            "ping" => return Err(Reply::json(200, serde_json::json!({ "pong": true }))),
            other => {
                return Err(Reply::json(
                    202,
                    serde_json::json!({ "ignored": format!("event `{other}` starts nothing; only push does") }),
                ));
            }
        }
        let push: GitHubPush = serde_json::from_str(&body)
            .map_err(|e| Reply::error(400, &format!("the push payload is not valid: {e}")))?;
        let branch = push.git_ref.strip_prefix("refs/heads/").unwrap_or_default();
        if push.deleted || !app.settings.branches.iter().any(|b| b == branch) {
            return Err(Reply::json(
                202,
                serde_json::json!({ "ignored": format!("{} is not a built branch ({})", push.git_ref, app.settings.branches.join(", ")) }),
            ));
        }
        if push.after.len() < 7 || !push.after.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Reply::error(
                400,
                "the push payload's `after` is not a commit id",
            ));
        }
        let images = touched_images(app, &push);
        let commit = push.after.to_ascii_lowercase();
        let mut response = InvocationResponse::default();
        let mut started = Vec::new();
        for image in &images {
            let trigger = Trigger {
                kind: TriggerKind::Push,
                source: "github".into(),
                commit: Some(commit.clone()),
                branch: Some(branch.to_string()),
                actor: push.pusher.as_ref().map(|p| p.name.clone()),
                reason: None,
                force: false,
                base_image_version: None,
            };
            let id = format!("push-{image}-{}", &commit[..12.min(commit.len())]);
            let created = app
                .create_run(id, image, trigger)
                .await
                .map_err(|e| Reply::error(e.http_status(), &e.to_string()))?;
            dispatch_follow_up(&mut response, created.run());
            started.push(serde_json::json!({
                "runId": created.run().id,
                "image": image,
                "version": created.run().version,
                "new": matches!(created, Created::New(_)),
            }));
        }
        response.set_output(
            crate::protocol::HTTP_OUTPUT,
            &HttpResponseData::json(202, &serde_json::json!({ "runs": started })),
        );
        Ok(response)
    }
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
}

/// The images a push touched: folders under the images path with changed files.
/// GitHub lists at most 20 commits; for a larger push every image is built.
fn touched_images(app: &App, push: &GitHubPush) -> BTreeSet<String> {
    if push.commits.len() >= GITHUB_COMMIT_LIMIT {
        return app.images.keys().cloned().collect();
    }
    let prefix = format!("{}/", app.settings.repo_images_path.trim_end_matches('/'));
    push.commits
        .iter()
        .chain(push.head_commit.iter())
        .flat_map(|c| c.added.iter().chain(&c.removed).chain(&c.modified))
        .filter_map(|path| path.strip_prefix(&prefix)?.split('/').next())
        .filter(|name| app.images.contains_key(*name))
        .map(str::to_string)
        .collect()
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
