//! Microsoft's Security Update Guide API (CVRF v3.0): the monthly security
//! data the patch rules judge images against, behind the
//! [`SecurityUpdates`] port. No API key is needed.
//!
//! - **A month**: `GET {base}/updates('{yyyy-Mon}')` (JSON); the entry of
//!   its `value` whose `ID` is that month (older versions of the API
//!   answered with every month); then its `CvrfUrl`, fetched with `Accept:
//!   application/xml`, read by `domain::cvrf`.
//! - **The newest month**: `GET {base}/updates` (every month); the entry
//!   with the latest `InitialReleaseDate` among those whose `ID` is a month
//!   (`yyyy-Mon`; the list also holds ids such as `2017-May-B`, and
//!   release-note entries first released years ago and revised since).
//! - **Field names in any case**: the OpenAPI description spells them
//!   `id`, `cvrfUrl`, `currentReleaseDate`; the service answers `ID`,
//!   `CvrfUrl`, `CurrentReleaseDate`. The list is read from OData's
//!   `{"value": [...]}` envelope, which the service answers, or from a bare
//!   array, which the description declares.
//! - **The cache**: each month's document is kept as
//!   `cvrfDocument-<yyyy-Mon>.xml` in a folder the composition root gives,
//!   and fetched again when the list's `CurrentReleaseDate` differs from the
//!   cached document's own (the month was revised).
//! - **A folder instead of the API**: for machines without internet,
//!   `IMAGE_FACTORY_MSRC_URL` may name a folder of
//!   `cvrfDocument-<yyyy-Mon>.xml` files (the cache's layout): a month is its
//!   file, and the newest month is the file of the latest month.
//!
//! Errors: the API unreachable, a timeout, 408, 429 and 5xx are transient;
//! a month not published, an answer that is not the list or the CVRF
//! document of the month asked, a missing or unreadable file are permanent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::Url;
use reqwest::header::ACCEPT;
use serde_json::Value;

use crate::domain::cvrf::{CvrfDocument, CvrfError, MonthId, parse_cvrf_date};
use crate::ports::PortError;
use crate::ports::security_updates::SecurityUpdates;

/// The setting that names the API's base URL or a folder of documents.
pub const MSRC_URL: &str = "IMAGE_FACTORY_MSRC_URL";
/// The API's base URL unless configured.
pub const DEFAULT_MSRC_URL: &str = "https://api.msrc.microsoft.com/cvrf/v3.0";
/// How long one request may take, the document's body included (a month
/// is 1-3 MB of XML).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where Microsoft's security data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsrcSource {
    /// The API at this base URL (no trailing slash).
    Api(String),
    /// A folder of `cvrfDocument-<yyyy-Mon>.xml` files.
    Folder(PathBuf),
}

impl Default for MsrcSource {
    fn default() -> MsrcSource {
        MsrcSource::Api(DEFAULT_MSRC_URL.to_string())
    }
}

/// `IMAGE_FACTORY_MSRC_URL` names neither an API nor a folder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{MSRC_URL}: {message}")]
pub struct MsrcSettingError {
    /// What is wrong with it.
    pub message: String,
}

impl MsrcSettingError {
    fn new(message: String) -> MsrcSettingError {
        MsrcSettingError { message }
    }
}

impl MsrcSource {
    /// Reads [`MSRC_URL`] through `var`: unset, the public API; an http(s)
    /// URL (https, or http to this machine), that API; else a folder, which
    /// must exist.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<MsrcSource, MsrcSettingError> {
        let Some(value) = var(MSRC_URL)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        else {
            return Ok(MsrcSource::default());
        };
        let lower = value.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let base = value.trim_end_matches('/');
            let url = Url::parse(base)
                .map_err(|e| MsrcSettingError::new(format!("`{value}` is not a URL: {e}")))?;
            if !super::address::https_or_loopback(&url) {
                return Err(MsrcSettingError::new(format!(
                    "`{value}` is not https (http is accepted only for 127.0.0.1, ::1 and localhost)"
                )));
            }
            return Ok(MsrcSource::Api(base.to_string()));
        }
        let folder = PathBuf::from(&value);
        if folder.is_dir() {
            Ok(MsrcSource::Folder(folder))
        } else {
            Err(MsrcSettingError::new(format!(
                "`{value}` is neither an http(s) URL nor a folder (a folder of cvrfDocument-<yyyy-Mon>.xml files must exist)"
            )))
        }
    }
}

/// The security data port over the API (with its cache) or a folder.
pub struct Msrc {
    source: Source,
}

enum Source {
    Api {
        base: String,
        http: reqwest::Client,
        cache: Option<PathBuf>,
    },
    Folder(PathBuf),
}

/// One entry of the API's list of months.
#[derive(Debug)]
struct Entry {
    id: MonthId,
    initial_release: Option<DateTime<Utc>>,
    current_release: Option<DateTime<Utc>>,
    cvrf_url: Option<String>,
}

impl Msrc {
    /// The port over `source`; with the API, documents are cached in `cache`
    /// when given (created when first written).
    pub fn new(source: &MsrcSource, cache: Option<PathBuf>) -> Result<Msrc, String> {
        let source = match source {
            MsrcSource::Api(base) => Source::Api {
                base: base.clone(),
                http: reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .connect_timeout(CONNECT_TIMEOUT)
                    .user_agent(concat!("image-factory/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the Security Update Guide client: {e}"))?,
                cache,
            },
            MsrcSource::Folder(folder) => Source::Folder(folder.clone()),
        };
        Ok(Msrc { source })
    }
}

#[async_trait]
impl SecurityUpdates for Msrc {
    async fn newest(&self) -> Result<CvrfDocument, PortError> {
        match &self.source {
            Source::Api { base, http, cache } => {
                let url = format!("{base}/updates");
                let list = get(http, &url, "application/json").await?.ok_or_else(|| {
                    PortError::permanent(format!(
                        "{url} answered 404: is {MSRC_URL} the API's base?"
                    ))
                })?;
                let newest = entries(&url, &list)?
                    .into_iter()
                    .filter(|e| e.initial_release.is_some())
                    .max_by_key(|e| (e.initial_release, e.id))
                    .ok_or_else(|| {
                        PortError::permanent(format!(
                            "{url} listed no month (yyyy-Mon) with an InitialReleaseDate"
                        ))
                    })?;
                document(http, &url, &newest, cache.as_deref()).await
            }
            Source::Folder(folder) => {
                let newest = folder_months(folder).await?.into_iter().max().ok_or_else(|| {
                    PortError::permanent(format!(
                        "{} holds no cvrfDocument-<yyyy-Mon>.xml: put Microsoft's CVRF documents there",
                        folder.display()
                    ))
                })?;
                read_file(&document_file(folder, newest), newest).await
            }
        }
    }

    async fn month(&self, id: MonthId) -> Result<CvrfDocument, PortError> {
        match &self.source {
            Source::Api { base, http, cache } => {
                let url = format!("{base}/updates('{id}')");
                let unpublished = || {
                    PortError::permanent(format!(
                        "Microsoft has published no security updates for {id} ({url} does not list it)"
                    ))
                };
                let list = get(http, &url, "application/json")
                    .await?
                    .ok_or_else(unpublished)?;
                let entry = entries(&url, &list)?
                    .into_iter()
                    .find(|e| e.id == id)
                    .ok_or_else(unpublished)?;
                document(http, &url, &entry, cache.as_deref()).await
            }
            Source::Folder(folder) => read_file(&document_file(folder, id), id).await,
        }
    }
}

/// GETs `url` accepting `accept`: its body, or `None` for a 404.
async fn get(http: &reqwest::Client, url: &str, accept: &str) -> Result<Option<String>, PortError> {
    let response = http
        .get(url)
        .header(ACCEPT, accept)
        .send()
        .await
        .map_err(|e| {
            PortError::transient(format!(
                "the Security Update Guide API cannot be reached at {url}: {}",
                e.without_url()
            ))
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        return Err(PortError::transient(format!(
            "{url} answered {status}; try again later"
        )));
    }
    if !status.is_success() {
        return Err(PortError::permanent(format!("{url} answered {status}")));
    }
    response.text().await.map(Some).map_err(|e| {
        PortError::transient(format!(
            "{url}: the answer was cut short: {}",
            e.without_url()
        ))
    })
}

/// The field `name` of a JSON object, its name in any case.
fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// The months of a list answer (`{"value": [...]}` or `[...]`); entries
/// whose `ID` is not a month are left out.
fn entries(url: &str, body: &str) -> Result<Vec<Entry>, PortError> {
    let malformed = |what: &str| {
        PortError::permanent(format!("{url} did not answer a list of updates: {what}"))
    };
    let body: Value =
        serde_json::from_str(body).map_err(|e| malformed(&format!("not JSON ({e})")))?;
    let list = match &body {
        Value::Array(list) => list,
        other => field(other, "value")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no `value` array"))?,
    };
    let date = |entry: &Value, name: &str| {
        field(entry, name)
            .and_then(Value::as_str)
            .and_then(parse_cvrf_date)
    };
    Ok(list
        .iter()
        .filter_map(|entry| {
            let id = field(entry, "id")?.as_str()?.parse().ok()?;
            Some(Entry {
                id,
                initial_release: date(entry, "initialReleaseDate"),
                current_release: date(entry, "currentReleaseDate"),
                cvrf_url: field(entry, "cvrfUrl")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect())
}

/// The document of `entry` (listed by `listed_by`): the cached one when it
/// is as revised as the list says, else fetched from its `CvrfUrl` and cached.
async fn document(
    http: &reqwest::Client,
    listed_by: &str,
    entry: &Entry,
    cache: Option<&Path>,
) -> Result<CvrfDocument, PortError> {
    let id = entry.id;
    let current = entry.current_release.ok_or_else(|| {
        PortError::permanent(format!("{listed_by} gives {id} no CurrentReleaseDate"))
    })?;
    if let Some(cache) = cache
        && let Some(cached) = cached(cache, id).await
        && cached.current_release == current
    {
        return Ok(cached);
    }
    let link = entry
        .cvrf_url
        .as_deref()
        .ok_or_else(|| PortError::permanent(format!("{listed_by} gives {id} no CvrfUrl")))?;
    let url = Url::parse(listed_by)
        .and_then(|base| base.join(link))
        .ok()
        .filter(super::address::https_or_loopback)
        .ok_or_else(|| {
            PortError::permanent(format!(
                "{listed_by} gives {id} the CvrfUrl `{link}`, which is not an https URL"
            ))
        })?;
    let xml = get(http, url.as_str(), "application/xml")
        .await?
        .ok_or_else(|| PortError::permanent(format!("{url}, the CvrfUrl of {id}, answered 404")))?;
    let (document, xml) = parse(xml, id)
        .await
        .map_err(|e| PortError::permanent(format!("{url}: {e}")))?;
    if document.current_release != current {
        tracing::info!(month = %id, listed = %current, document = %document.current_release, "the month's document is not yet as revised as the list says: it will be fetched again");
    }
    if let Some(cache) = cache {
        store(cache, id, &xml).await;
    }
    Ok(document)
}

/// Parses `xml` off the runtime's threads and checks it is the month `id`;
/// hands the text back for the cache.
async fn parse(xml: String, id: MonthId) -> Result<(CvrfDocument, String), CvrfError> {
    let (parsed, xml) = tokio::task::spawn_blocking(move || (CvrfDocument::parse(&xml), xml))
        .await
        .map_err(|e| CvrfError(format!("reading it was cut short: {e}")))?;
    let document = parsed?;
    if document.id != id {
        return Err(CvrfError(format!(
            "it is the document of {}, not of {id}",
            document.id
        )));
    }
    Ok((document, xml))
}

/// `cvrfDocument-<yyyy-Mon>.xml` in `folder`.
fn document_file(folder: &Path, id: MonthId) -> PathBuf {
    folder.join(format!("cvrfDocument-{id}.xml"))
}

/// The cached document of `id`, if there is a readable one.
async fn cached(cache: &Path, id: MonthId) -> Option<CvrfDocument> {
    let xml = tokio::fs::read_to_string(document_file(cache, id))
        .await
        .ok()?;
    match parse(xml, id).await {
        Ok((document, _)) => Some(document),
        Err(e) => {
            tracing::warn!(month = %id, error = %e, "the cached document is not readable: fetching it again");
            None
        }
    }
}

/// Writes the document of `id` to the cache, private as the rest of the
/// data folder (a temporary file renamed over the old one, so a reader
/// never sees half of it). A failure is logged: the next call fetches again.
async fn store(cache: &Path, id: MonthId, xml: &str) {
    let file = document_file(cache, id);
    let temporary = cache.join(format!(".cvrfDocument-{id}.{}.tmp", std::process::id()));
    let written = async {
        crate::private::write_in_dir(&temporary, xml.as_bytes().to_vec()).await?;
        tokio::fs::rename(&temporary, &file).await
    };
    if let Err(e) = written.await {
        let _ = tokio::fs::remove_file(&temporary).await;
        tracing::warn!(file = %file.display(), error = %e, "cannot cache the month's CVRF document");
    }
}

/// The months a folder holds a `cvrfDocument-<yyyy-Mon>.xml` of.
async fn folder_months(folder: &Path) -> Result<Vec<MonthId>, PortError> {
    let unreadable =
        |e: std::io::Error| PortError::permanent(format!("cannot read {}: {e}", folder.display()));
    let mut entries = tokio::fs::read_dir(folder).await.map_err(unreadable)?;
    let mut months = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
        let name = entry.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cvrfDocument-"))
            .and_then(|n| n.strip_suffix(".xml"))
            .and_then(|n| n.parse().ok())
        {
            months.push(id);
        }
    }
    Ok(months)
}

/// The document of `id` in `file`.
async fn read_file(file: &Path, id: MonthId) -> Result<CvrfDocument, PortError> {
    let xml = match tokio::fs::read_to_string(file).await {
        Ok(xml) => xml,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PortError::permanent(format!(
                "no security data for {id}: {} does not exist (save the month's document there: GET {DEFAULT_MSRC_URL}/cvrf/{id} with Accept: application/xml)",
                file.display()
            )));
        }
        Err(e) => {
            return Err(PortError::permanent(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    };
    parse(xml, id)
        .await
        .map(|(document, _)| document)
        .map_err(|e| PortError::permanent(format!("{}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(value: Option<&str>) -> impl Fn(&str) -> Option<String> {
        let value = value.map(str::to_string);
        move |name| (name == MSRC_URL).then(|| value.clone()).flatten()
    }

    #[test]
    fn the_source_is_the_public_api_unless_a_url_or_a_folder_is_named() {
        assert_eq!(
            MsrcSource::from_vars(vars(None)).unwrap(),
            MsrcSource::Api(DEFAULT_MSRC_URL.into())
        );
        assert_eq!(
            MsrcSource::from_vars(vars(Some("  "))).unwrap(),
            MsrcSource::default()
        );
        assert_eq!(
            MsrcSource::from_vars(vars(Some("https://mirror.example/cvrf/v3.0/"))).unwrap(),
            MsrcSource::Api("https://mirror.example/cvrf/v3.0".into())
        );
        assert_eq!(
            MsrcSource::from_vars(vars(Some("http://127.0.0.1:8080"))).unwrap(),
            MsrcSource::Api("http://127.0.0.1:8080".into())
        );
        let folder = std::env::temp_dir();
        assert_eq!(
            MsrcSource::from_vars(vars(folder.to_str())).unwrap(),
            MsrcSource::Folder(folder.clone())
        );
        for (bad, expected) in [
            ("http://mirror.example/cvrf", "is not https"),
            ("https://", "is not a URL"),
            ("/no/such/folder", "neither an http(s) URL nor a folder"),
        ] {
            let err = MsrcSource::from_vars(vars(Some(bad)))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(MSRC_URL) && err.contains(expected),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn list_entries_are_read_in_any_case_from_the_envelope_or_a_bare_array() {
        let service = r#"{"@odata.context":"x","value":[
            {"ID":"2026-Jan","Alias":"2026-Jan","DocumentTitle":"January 2026 Security Updates","Severity":null,
             "InitialReleaseDate":"2026-01-13T08:00:00Z","CurrentReleaseDate":"2026-01-30T03:20:43Z",
             "CvrfUrl":"https://api.msrc.microsoft.com/cvrf/v3.0/cvrf/2026-Jan"},
            {"ID":"2017-May-B","CvrfUrl":"x"}]}"#;
        let read = entries("u", service).unwrap();
        assert_eq!(read.len(), 1, "2017-May-B is not a month");
        assert_eq!(read[0].id.to_string(), "2026-Jan");
        assert_eq!(
            read[0].current_release,
            parse_cvrf_date("2026-01-30T03:20:43Z")
        );
        assert_eq!(
            read[0].cvrf_url.as_deref(),
            Some("https://api.msrc.microsoft.com/cvrf/v3.0/cvrf/2026-Jan")
        );
        let described = r#"[{"id":"2026-Jan","alias":"2026-Jan","documentTitle":"t","initialReleaseDate":"2026-01-13T08:00:00Z","currentReleaseDate":"2026-01-30T03:20:43Z","cvrfUrl":"c"}]"#;
        let read = entries("u", described).unwrap();
        assert_eq!(
            (read[0].id.to_string(), read[0].cvrf_url.as_deref()),
            ("2026-Jan".to_string(), Some("c"))
        );
        for (bad, expected) in [
            ("<html/>", "not JSON"),
            ("{\"error\": {}}", "no `value` array"),
        ] {
            let err = entries("u", bad).unwrap_err();
            assert!(
                !err.is_transient() && err.message.contains(expected),
                "{err}"
            );
        }
    }
}
