//! A loopback GitHub for the factory's GitHub calls: it keeps refs,
//! answers as GitHub does (422 "Reference already exists", its error
//! bodies, installation tokens, 302 to a download host for a tarball) and
//! checks every request and answer against GitHub's published OpenAPI
//! description (`@octokit/openapi`, pinned), verifying the app's JWT with
//! the test app's public key. A repository may be backed by a real git
//! repository ([`GitHub::attach`]): its branch heads are that repository's,
//! and its tarballs are made by the real `git archive --format=tar.gz
//! --prefix=<owner>-<repo>-<commit>/`, served by a second loopback host
//! (GitHub's `codeload`) with the commit abbreviated for anonymous
//! downloads and whole for signed ones, as GitHub names the top folder.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use super::openapi::{self, Exchange};

/// The test app's id.
pub const APP_ID: &str = "123456";
/// The test app's installation.
pub const INSTALLATION: u64 = 987654;
/// The fine-grained token GitHub takes.
pub const PAT: &str = "github_pat_11AAAAAAA0fine_grained_test_token";
/// A commit of `octo/images`.
pub const A: &str = "aa218f56b14c9653891f9e74264a383fa43fefbd";
/// Another commit of `octo/images`.
pub const B: &str = "bb218f56b14c9653891f9e74264a383fa43fefbd";
const DOCS: &str = "https://docs.github.com/rest/git/refs#create-a-reference";

/// The test app's key pair (PKCS#1 private key, as GitHub hands it out; SPKI public key).
pub fn key_pair() -> (String, String) {
    let private = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(private.status.success());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("app.pem");
    std::fs::write(&file, &private.stdout).expect("write key");
    let public = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&file)
        .output()
        .expect("openssl rsa -pubout");
    assert!(public.status.success());
    (
        String::from_utf8(private.stdout).expect("pem"),
        String::from_utf8(public.stdout).expect("pem"),
    )
}

/// What the loopback GitHub keeps and saw.
#[derive(Default)]
pub struct State {
    /// `owner/repo` → commits it has.
    pub repos: BTreeMap<String, BTreeSet<String>>,
    /// Repositories anyone may read without signing in.
    pub public: BTreeSet<String>,
    /// `owner/repo` → the real git repository behind it (its heads and tarballs).
    pub sources: BTreeMap<String, PathBuf>,
    /// Repositories the credentials may read but not write.
    pub read_only: BTreeSet<String>,
    /// `owner/repo` → ref → sha.
    pub refs: BTreeMap<String, BTreeMap<String, String>>,
    /// Annotated tag objects: sha → the commit it tags.
    pub tag_objects: BTreeMap<String, String>,
    /// Installation tokens handed out.
    pub tokens: Vec<String>,
    /// How long installation tokens last.
    pub token_life: Option<Duration>,
    /// Statuses to answer next, before anything else.
    pub failures: Vec<u16>,
    /// Every exchange, with the operation it was of.
    pub exchanges: Vec<(String, Exchange)>,
    /// Rules of GitHub's description broken.
    pub violations: Vec<String>,
    /// Why JWTs were refused.
    pub jwt_refusals: Vec<String>,
    /// The download host's base URL.
    pub codeload: String,
    /// The headers of every request the download host answered.
    pub downloads: Vec<HeaderMap>,
    /// Tarballs served in place of `git archive`'s, by commit (a host
    /// that serves another commit than the one asked for).
    pub planted: BTreeMap<String, Vec<u8>>,
}

/// The loopback GitHub.
#[derive(Clone)]
pub struct GitHub {
    state: Arc<Mutex<State>>,
    public_key: String,
}

impl GitHub {
    /// A GitHub holding `octo/images` with commits [`A`] and [`B`], whose
    /// app is verified with `public_key`.
    pub fn new(public_key: &str) -> GitHub {
        let mut state = State::default();
        state
            .repos
            .insert("octo/images".into(), [A, B].map(String::from).into());
        GitHub {
            state: Arc::new(Mutex::new(state)),
            public_key: public_key.to_string(),
        }
    }

    /// What it keeps and saw.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves the API and its download host on loopback; answers the API's base URL.
    pub async fn serve(&self) -> String {
        let github = self.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let github = github.clone();
                async move { github.answer(method, uri, headers, body) }
            },
        );
        let codeload = self.clone();
        let downloads = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let codeload = codeload.clone();
            async move { codeload.download(uri, headers) }
        });
        let codeload_url = super::serve_loopback(downloads).await;
        self.state().codeload = codeload_url;
        super::serve_loopback(app).await
    }

    /// Backs `owner/repo` with the real git repository at `dir`: its
    /// branches are the repository's heads and its commits' tarballs are
    /// made by `git archive`; `public` lets anyone read it.
    pub fn attach(&self, owner_repo: &str, dir: &Path, public: bool) {
        let mut state = self.state();
        state.repos.entry(owner_repo.to_string()).or_default();
        state
            .sources
            .insert(owner_repo.to_string(), dir.to_path_buf());
        if public {
            state.public.insert(owner_repo.to_string());
        }
    }

    /// The download host's answer: the tarball of the commit the path
    /// names, its top folder `<owner>-<repo>-<commit>` with the commit
    /// abbreviated when the download was not signed (`short=1`).
    fn download(&self, uri: Uri, headers: HeaderMap) -> Response {
        let query: BTreeMap<String, String> =
            serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
        let (dir, planted, segments) = {
            let mut state = self.state();
            state.downloads.push(headers);
            let segments: Vec<String> = uri
                .path()
                .trim_start_matches('/')
                .split('/')
                .map(str::to_string)
                .collect();
            let key = format!(
                "{}/{}",
                segments.first().cloned().unwrap_or_default(),
                segments.get(1).cloned().unwrap_or_default()
            );
            let commit = segments.get(3).cloned().unwrap_or_default();
            (
                state.sources.get(&key).cloned(),
                state.planted.get(&commit).cloned(),
                segments,
            )
        };
        let [owner, repo, kind, commit] = segments.as_slice() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if kind != "legacy.tar.gz" || query.get("token").is_none_or(String::is_empty) {
            return StatusCode::NOT_FOUND.into_response();
        }
        if let Some(bytes) = planted {
            return (
                StatusCode::OK,
                [("content-type", "application/x-gzip")],
                bytes,
            )
                .into_response();
        }
        let Some(dir) = dir else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let shown = if query.get("short").map(String::as_str) == Some("1") {
            &commit[..7]
        } else {
            commit.as_str()
        };
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args([
                "archive",
                "--format=tar.gz",
                &format!("--prefix={owner}-{repo}-{shown}/"),
                commit,
            ])
            .output()
            .expect("git archive");
        assert!(
            out.status.success(),
            "git archive: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            StatusCode::OK,
            [("content-type", "application/x-gzip")],
            out.stdout,
        )
            .into_response()
    }

    /// Answers one request and checks the exchange against GitHub's description.
    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let request: Option<Value> = if body.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&body).unwrap_or(Value::String("<not JSON>".into())))
        };
        let path = uri.path().to_string();
        let (operation, status, answer) = self.route(&method, &path, &headers, request.as_ref());
        let location = answer["location"]
            .as_str()
            .filter(|_| status == 302)
            .map(str::to_string);
        let answer = if location.is_some() {
            Value::Null
        } else {
            answer
        };
        let exchange = Exchange {
            method: method.to_string(),
            path,
            query: BTreeMap::new(),
            request,
            status,
            answer: answer.clone(),
        };
        let mut state = self.state();
        if headers
            .get("x-github-api-version")
            .and_then(|v| v.to_str().ok())
            != Some("2022-11-28")
            || headers.get("accept").and_then(|v| v.to_str().ok())
                != Some("application/vnd.github+json")
            || headers.get("user-agent").is_none()
        {
            state.violations.push(format!(
                "{operation}: GitHub's headers are missing: {headers:?}"
            ));
        }
        if let Err(broken) = openapi::github().check(&operation, &exchange) {
            state.violations.push(format!("{operation}: {broken:?}"));
        }
        state.exchanges.push((operation, exchange));
        if let Some(location) = location {
            return (StatusCode::FOUND, [("location", location)]).into_response();
        }
        let mut response = (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(answer),
        )
            .into_response();
        if status == 201 && method == Method::POST {
            response.headers_mut().insert(
                "location",
                "https://api.github.com/repos/octo/images/git/refs/tags/x"
                    .parse()
                    .expect("header"),
            );
        }
        response
    }

    /// The operation, status and body GitHub would answer.
    fn route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> (String, u16, Value) {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        let error = |status: u16, message: &str| {
            (
                status,
                json!({ "message": message, "documentation_url": DOCS, "status": status.to_string() }),
            )
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let ["app", "installations", id, "access_tokens"] = segments.as_slice() {
            let op = "apps/create-installation-access-token".to_string();
            if let Some(status) = self.take_failure() {
                let (s, b) = error(status, "Service Unavailable");
                return (op, s, b);
            }
            if let Err(why) = self.verify_jwt(&bearer) {
                self.state().jwt_refusals.push(why);
                let (s, b) = error(401, "A JSON web token could not be decoded");
                return (op, s, b);
            }
            if *id != INSTALLATION.to_string() {
                let (s, b) = error(404, "Not Found");
                return (op, s, b);
            }
            let token = format!("ghs_{}", uuid_like());
            let mut state = self.state();
            let life = state.token_life.unwrap_or(Duration::hours(1));
            state.tokens.push(token.clone());
            let expires = (Utc::now() + life).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            return (
                op,
                201,
                json!({
                    "token": token,
                    "expires_at": expires,
                    "permissions": { "contents": "write", "metadata": "read" },
                    "repository_selection": "selected"
                }),
            );
        }
        let op = match (method, segments.as_slice()) {
            (&Method::POST, ["repos", _, _, "git", "refs"]) => "git/create-ref",
            (&Method::GET, ["repos", _, _, "git", "ref", ..]) => "git/get-ref",
            (&Method::GET, ["repos", _, _, "git", "tags", _]) => "git/get-tag",
            (&Method::GET, ["repos", _, _, "tarball", _]) => "repos/download-tarball-archive",
            _ => {
                let (s, b) = error(404, "Not Found");
                return ("unknown".into(), s, b);
            }
        }
        .to_string();
        if let Some(status) = self.take_failure() {
            let (s, b) = error(status, "Server Error");
            return (op, s, b);
        }
        let mut state = self.state();
        let repo = format!("{}/{}", segments[1], segments[2]);
        let signed = !bearer.is_empty();
        if signed && bearer != PAT && !state.tokens.contains(&bearer) {
            let (s, b) = error(401, "Bad credentials");
            return (op, s, b);
        }
        // A repository nobody signed in may read is one GitHub does not show.
        let readable = signed || (method == Method::GET && state.public.contains(&repo));
        let Some(commits) = state.repos.get(&repo).cloned().filter(|_| readable) else {
            let (s, b) = error(404, "Not Found");
            return (op, s, b);
        };
        let source = state.sources.get(&repo).cloned();
        if op == "repos/download-tarball-archive" {
            let wanted = segments[4];
            let Some(commit) = source.as_deref().and_then(|dir| resolve(dir, wanted)) else {
                let (s, b) = error(404, "Not Found");
                return (op, s, b);
            };
            let token = uuid_like();
            let short = if signed { "" } else { "&short=1" };
            let location = format!(
                "{}/{repo}/legacy.tar.gz/{commit}?token={token}{short}",
                state.codeload
            );
            return (op, 302, json!({ "location": location }));
        }
        let tag_objects = state.tag_objects.clone();
        let git_ref = |name: &str, sha: &str| {
            let (kind, kinds) = if tag_objects.contains_key(sha) {
                ("tag", "tags")
            } else {
                ("commit", "commits")
            };
            json!({
                "ref": name,
                "node_id": "MDM6UmVmcmVmcy90YWdz",
                "url": format!("https://api.github.com/repos/{repo}/git/{name}"),
                "object": {
                    "type": kind,
                    "sha": sha,
                    "url": format!("https://api.github.com/repos/{repo}/git/{kinds}/{sha}")
                }
            })
        };
        if op == "git/get-tag" {
            let sha = segments[5];
            return match tag_objects.get(sha) {
                Some(commit) => (
                    op,
                    200,
                    json!({
                        "node_id": "MDM6VGFnOTQwYmQzMzYyNDhlZmFlMGY5ZWU1YmM3YjJkNWM5ODU4ODdiMTZhYw==",
                        "tag": "example/1.2.3",
                        "sha": sha,
                        "url": format!("https://api.github.com/repos/{repo}/git/tags/{sha}"),
                        "message": "tagged by hand",
                        "tagger": { "date": "2026-11-30T12:00:00Z", "email": "ops@example.com", "name": "Ops" },
                        "object": {
                            "sha": commit,
                            "type": "commit",
                            "url": format!("https://api.github.com/repos/{repo}/git/commits/{commit}")
                        },
                        "verification": { "verified": false, "reason": "unsigned", "payload": null, "signature": null, "verified_at": null }
                    }),
                ),
                None => {
                    let (s, b) = error(404, "Not Found");
                    (op, s, b)
                }
            };
        }
        if op == "git/get-ref" {
            let name = format!("refs/{}", segments[5..].join("/"));
            let head = name
                .starts_with("refs/heads/")
                .then(|| source.as_deref().and_then(|dir| resolve(dir, &name)))
                .flatten();
            return match head.or_else(|| state.refs.get(&repo).and_then(|r| r.get(&name)).cloned())
            {
                Some(sha) => (op, 200, git_ref(&name, &sha)),
                None => {
                    let (s, b) = error(404, "Not Found");
                    (op, s, b)
                }
            };
        }
        if state.read_only.contains(&repo) {
            let (s, b) = error(403, "Resource not accessible by integration");
            return (op, s, b);
        }
        let name = body
            .and_then(|b| b["ref"].as_str())
            .unwrap_or_default()
            .to_string();
        let sha = body
            .and_then(|b| b["sha"].as_str())
            .unwrap_or_default()
            .to_string();
        if !name.starts_with("refs/") || name.matches('/').count() < 2 {
            let (s, b) = error(422, "Reference name is invalid");
            return (op, s, b);
        }
        if !commits.contains(&sha) {
            let (s, b) = error(422, "Object does not exist");
            return (op, s, b);
        }
        let refs = state.refs.entry(repo.clone()).or_default();
        if refs.contains_key(&name) {
            let (s, b) = error(422, "Reference already exists");
            return (op, s, b);
        }
        refs.insert(name.clone(), sha.clone());
        (op, 201, git_ref(&name, &sha))
    }

    /// The next planted failure, if any.
    fn take_failure(&self) -> Option<u16> {
        let mut state = self.state();
        (!state.failures.is_empty()).then(|| state.failures.remove(0))
    }

    /// Checks the app's JWT as GitHub does: RS256 by the app's key, issued
    /// by the app, at most 10 minutes long, not issued in the future.
    fn verify_jwt(&self, jwt: &str) -> Result<(), String> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
        let key =
            DecodingKey::from_rsa_pem(self.public_key.as_bytes()).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[APP_ID]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = decode::<Value>(jwt, &key, &validation)
            .map_err(|e| e.to_string())?
            .claims;
        let iat = claims["iat"].as_i64().unwrap_or_default();
        let exp = claims["exp"].as_i64().unwrap_or_default();
        if exp - iat > 600 {
            return Err(format!("lasts {} s, more than 10 minutes", exp - iat));
        }
        if iat > Utc::now().timestamp() {
            return Err("issued in the future".into());
        }
        Ok(())
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..36)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// The full id of `rev` as a commit of the repository at `dir`, if it has it.
fn resolve(dir: &Path, rev: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ])
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}
