//! A loopback Azure DevOps for the factory's Git calls: it keeps refs,
//! answers the refs API as the service does (one result per update,
//! `staleOldObjectId` for a ref that exists, a sign-in page for a token it
//! does not take), serves the Items API's zip of a folder at a commit, and
//! checks every request and answer against Microsoft's published Azure
//! DevOps REST specification (`specification/git/7.1/git.json`: operations
//! `Refs_Update Refs`, `Refs_List` and `Items_Get`). A repository may be
//! backed by a real git repository ([`DevOps::attach`]): its branch heads
//! are that repository's, and its zips are made with the `zip` crate from
//! the files `git archive` gives for the commit, their entries laid out as
//! [`ZipLayout`] says (the service does not document it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::{self, Exchange};

/// The repository id the tests use.
pub const REPOSITORY: &str = "278d5cd2-584d-4b63-824a-2ba458937249";
/// The project id the tests use.
pub const PROJECT: &str = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c";
const NO_OBJECT: &str = "0000000000000000000000000000000000000000";

/// Where a zip's entries start, relative to the repository's root, for the
/// requested folder `src/images`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZipLayout {
    /// The path from the repository's root (`src/images/example/...`), as
    /// the specification's examples name items.
    #[default]
    RepositoryPath,
    /// The requested folder's own name first (`images/example/...`).
    FolderName,
    /// Inside the requested folder (`example/...`).
    Inside,
}

/// What the loopback Azure DevOps keeps and saw.
#[derive(Default)]
pub struct State {
    /// Commits it has.
    pub commits: BTreeSet<String>,
    /// Refs and what they point at.
    pub refs: BTreeMap<String, String>,
    /// Repository id → the real git repository behind it.
    pub sources: BTreeMap<String, PathBuf>,
    /// How its zips lay out their entries.
    pub layout: ZipLayout,
    /// Whether the identity may create tags.
    pub denied: bool,
    /// Statuses to answer next, before anything else.
    pub failures: Vec<u16>,
    /// Every operation, in order.
    pub operations: Vec<String>,
    /// The query of every request.
    pub queries: Vec<BTreeMap<String, String>>,
    /// Rules of the specification broken.
    pub violations: Vec<String>,
    /// Every bearer token presented.
    pub tokens: Vec<String>,
}

/// The loopback Azure DevOps.
#[derive(Clone)]
pub struct DevOps {
    state: Arc<Mutex<State>>,
    /// The token the service takes.
    pub token: Arc<Mutex<String>>,
}

/// An answer: JSON, or the bytes of a zip.
enum Answer {
    Json(Value),
    Zip(Vec<u8>),
}

impl DevOps {
    /// A service that takes `token`.
    pub fn new(token: &str) -> DevOps {
        DevOps {
            state: Arc::default(),
            token: Arc::new(Mutex::new(token.to_string())),
        }
    }

    /// What it keeps and saw.
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Backs repository `id` with the real git repository at `dir`.
    pub fn attach(&self, id: &str, dir: &Path) {
        self.state()
            .sources
            .insert(id.to_string(), dir.to_path_buf());
    }

    /// Serves it on loopback; answers its base URL.
    pub async fn serve(&self) -> String {
        let devops = self.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let devops = devops.clone();
                async move { devops.answer(method, uri, headers, body) }
            },
        );
        super::serve_loopback(app).await
    }

    fn answer(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let query: BTreeMap<String, String> =
            serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
        let request: Option<Value> = if body.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&body).unwrap_or(Value::String("<not JSON>".into())))
        };
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_string();
        {
            let mut state = self.state();
            state.tokens.push(bearer.clone());
            state.queries.push(query.clone());
        }
        if bearer != *self.token.lock().unwrap_or_else(|e| e.into_inner()) {
            // What the service answers a token it does not take: a sign-in page.
            return (
                StatusCode::NON_AUTHORITATIVE_INFORMATION,
                [("content-type", "text/html")],
                "<html>Azure DevOps Services | Sign In</html>",
            )
                .into_response();
        }
        let path = uri.path().to_string();
        let operation = if method == Method::POST {
            "Refs_Update Refs"
        } else if path.ends_with("/items") {
            "Items_Get"
        } else {
            "Refs_List"
        };
        let (status, answer) = self.route(&method, &path, &query, request.as_ref());
        // The specification describes the list without the `{count, value}`
        // envelope every list answer has (its own examples show it); a zip
        // is no JSON to check.
        let described = match &answer {
            Answer::Zip(_) => Value::Null,
            Answer::Json(answer) => match (&answer["value"], answer["count"].as_u64()) {
                (Value::Array(items), Some(count)) if count as usize == items.len() => {
                    Value::Array(items.clone())
                }
                _ => answer.clone(),
            },
        };
        let exchange = Exchange {
            method: method.to_string(),
            path,
            query,
            request,
            status,
            answer: described,
        };
        let mut state = self.state();
        if let Err(broken) = openapi::azure_devops_git().check(operation, &exchange) {
            state.violations.push(format!("{operation}: {broken:?}"));
        }
        if exchange.query.get("api-version").map(String::as_str)
            != Some(openapi::azure_devops_git().version())
        {
            state
                .violations
                .push(format!("{operation}: api-version {:?}", exchange.query));
        }
        state.operations.push(operation.to_string());
        let status = StatusCode::from_u16(status).expect("status");
        match answer {
            Answer::Json(answer) => (status, axum::Json(answer)).into_response(),
            Answer::Zip(bytes) => {
                (status, [("content-type", "application/zip")], bytes).into_response()
            }
        }
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &BTreeMap<String, String>,
        body: Option<&Value>,
    ) -> (u16, Answer) {
        let mut state = self.state();
        if !state.failures.is_empty() {
            let status = state.failures.remove(0);
            return (
                status,
                Answer::Json(
                    json!({ "$id": "1", "message": "The service is unavailable.", "typeKey": "ServiceUnavailableException", "errorCode": 0 }),
                ),
            );
        }
        let repository = path
            .split("/repositories/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_string();
        let source = state.sources.get(&repository).cloned();
        if method == Method::GET && path.ends_with("/items") {
            let commit = query
                .get("versionDescriptor.version")
                .cloned()
                .unwrap_or_default();
            let folder = query
                .get("path")
                .map(|p| p.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let found = source.as_deref().and_then(|dir| {
                (query
                    .get("versionDescriptor.versionType")
                    .map(String::as_str)
                    == Some("commit")
                    && query.get("$format").map(String::as_str) == Some("zip"))
                .then(|| zip_of(dir, &commit, &folder, state.layout))
                .flatten()
            });
            return match found {
                Some(bytes) => (200, Answer::Zip(bytes)),
                None => (
                    404,
                    Answer::Json(json!({
                        "$id": "1",
                        "innerException": null,
                        "message": format!("TF401175: The version descriptor <Commit: {commit}> could not be resolved to a version in the repository"),
                        "typeName": "Microsoft.TeamFoundation.Git.Server.GitUnresolvableToCommitException, Microsoft.TeamFoundation.Git.Server",
                        "typeKey": "GitUnresolvableToCommitException",
                        "errorCode": 0,
                        "eventId": 3000
                    })),
                ),
            };
        }
        if method == Method::GET {
            let prefix = format!("refs/{}", query.get("filter").cloned().unwrap_or_default());
            let mut refs = state.refs.clone();
            if let Some(dir) = &source {
                refs.extend(heads(dir));
            }
            let value: Vec<Value> = refs
                .iter()
                .filter(|(name, _)| name.starts_with(&prefix))
                .map(|(name, id)| json!({ "name": name, "objectId": id, "url": "https://dev.azure.com/x" }))
                .collect();
            return (
                200,
                Answer::Json(json!({ "value": value, "count": value.len() })),
            );
        }
        let updates = body.and_then(Value::as_array).cloned().unwrap_or_default();
        let mut results = Vec::new();
        for update in updates {
            let name = update["name"].as_str().unwrap_or_default().to_string();
            let old = update["oldObjectId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let new = update["newObjectId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let current = state.refs.get(&name).cloned().unwrap_or(NO_OBJECT.into());
            let status = if state.denied {
                "createTagPermissionRequired"
            } else if current != old {
                "staleOldObjectId"
            } else if !state.commits.contains(&new) {
                "unresolvableToCommit"
            } else {
                state.refs.insert(name.clone(), new.clone());
                "succeeded"
            };
            results.push(json!({
                "repositoryId": REPOSITORY,
                "name": name,
                "oldObjectId": old,
                "newObjectId": new,
                "isLocked": false,
                "updateStatus": status,
                "success": status == "succeeded"
            }));
        }
        (
            200,
            Answer::Json(json!({ "value": results, "count": results.len() })),
        )
    }
}

/// The branch heads of the repository at `dir`: `refs/heads/<name>` → commit.
fn heads(dir: &Path) -> BTreeMap<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads/",
        ])
        .output()
        .expect("git for-each-ref");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .collect()
}

/// A zip of `folder` of the repository at `dir` at `commit` (a whole commit
/// id it has), its entries laid out as `layout` says; `None` when the
/// repository has no such commit or folder.
fn zip_of(dir: &Path, commit: &str, folder: &str, layout: ZipLayout) -> Option<Vec<u8>> {
    let full = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{commit}^{{commit}}"),
        ])
        .output()
        .ok()?;
    if !full.status.success() || String::from_utf8_lossy(&full.stdout).trim() != commit {
        return None;
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["archive", "--format=tar", commit, "--", folder])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let prefix = match layout {
        ZipLayout::RepositoryPath => String::new(),
        ZipLayout::FolderName => folder
            .rsplit_once('/')
            .map(|(up, _)| format!("{up}/"))
            .unwrap_or_default(),
        ZipLayout::Inside => format!("{folder}/"),
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut archive = tar::Archive::new(out.stdout.as_slice());
    let mut files = 0;
    for entry in archive.entries().expect("git's tar") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        let Some(name) = path.strip_prefix(&prefix) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory if !name.is_empty() => {
                zip.add_directory(name.trim_end_matches('/'), options)
                    .expect("a folder");
            }
            tar::EntryType::Regular => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("a file");
                zip.start_file(name, options).expect("a file");
                zip.write_all(&bytes).expect("a file");
                files += 1;
            }
            _ => {}
        }
    }
    (files > 0).then(|| zip.finish().expect("the zip").into_inner())
}
