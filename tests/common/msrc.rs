//! A stand-in for Microsoft's Security Update Guide API (CVRF v3.0) on a
//! loopback port, serving real CVRF documents of the third-party folder
//! (`msrc/cvrf/`), as they are or as a month the client has never seen
//! (the document renamed), or revised (a later `CurrentReleaseDate`).
//!
//! It answers what the client asks: `GET /updates` (every month),
//! `GET /updates('{yyyy-Mon}')` (that month, or every month as older
//! versions of the API did) and `GET /cvrf/{yyyy-Mon}` (the document, only
//! with `Accept: application/xml`; the real service answers JSON otherwise).
//! The lists come in one of two dialects: the OpenAPI description's (a bare
//! array, camelCase names) or the service's (OData's `{"value": [...]}`
//! envelope, `ID`, `CvrfUrl`, `CurrentReleaseDate`). Each exchange is
//! recorded, and [`FakeMsrc::check_contract`] checks them all against the
//! description (`msrc/swagger.json`): the service's lists with their
//! envelope opened and their names spelled as the description spells them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::openapi::{self, Exchange};

/// One month as the fake serves it.
#[derive(Clone, Debug)]
pub struct Month {
    /// `2024-Jun`.
    pub id: String,
    /// The CVRF document.
    pub xml: String,
}

/// The text of the first `<cvrf:{name}>` of `xml`.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<cvrf:{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {open} in the document"))
        + open.len();
    let end = xml[start..]
        .find('<')
        .unwrap_or_else(|| panic!("{open} is not closed"));
    &xml[start..start + end]
}

/// A CVRF date (`2026-01-03T01:41:03`) as the API's lists write it (with `Z`).
fn listed_date(cvrf: &str) -> String {
    if cvrf.ends_with('Z') {
        cvrf.to_string()
    } else {
        format!("{cvrf}Z")
    }
}

impl Month {
    /// The month `id` of the third-party folder, as Microsoft published it.
    pub fn real(id: &str) -> Month {
        let path = super::third_party(&format!("msrc/cvrf/cvrfDocument-{id}.xml"));
        let xml =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Month {
            id: id.to_string(),
            xml,
        }
    }

    /// The same document served as month `id` (its `ID` and `Alias`
    /// rewritten): a month the client has never seen.
    pub fn renamed(self, id: &str) -> Month {
        let xml = self
            .xml
            .replacen(
                &format!("<cvrf:ID>{}</cvrf:ID>", self.id),
                &format!("<cvrf:ID>{id}</cvrf:ID>"),
                1,
            )
            .replacen(
                &format!("<cvrf:Alias>{}</cvrf:Alias>", self.id),
                &format!("<cvrf:Alias>{id}</cvrf:Alias>"),
                1,
            );
        assert_ne!(xml, self.xml, "the document's ID was rewritten");
        Month {
            id: id.to_string(),
            xml,
        }
    }

    /// The same month revised at `current` (`2026-02-01T00:00:00`): its
    /// `CurrentReleaseDate` rewritten.
    pub fn revised(self, current: &str) -> Month {
        let old = element(&self.xml, "CurrentReleaseDate").to_string();
        Month {
            xml: self.xml.replacen(
                &format!("<cvrf:CurrentReleaseDate>{old}</cvrf:CurrentReleaseDate>"),
                &format!("<cvrf:CurrentReleaseDate>{current}</cvrf:CurrentReleaseDate>"),
                1,
            ),
            ..self
        }
    }

    /// Its entry in a list, in the description's spelling, pointing at
    /// `base`'s `/cvrf/{id}`.
    fn entry(&self, base: &str) -> Value {
        json!({
            "id": self.id,
            "alias": self.id,
            "documentTitle": element(&self.xml, "DocumentTitle"),
            "severity": null,
            "initialReleaseDate": listed_date(element(&self.xml, "InitialReleaseDate")),
            "currentReleaseDate": listed_date(element(&self.xml, "CurrentReleaseDate")),
            "cvrfUrl": format!("{base}/cvrf/{}", self.id),
        })
    }
}

/// How the lists are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// As the OpenAPI description declares them: a bare array, camelCase.
    Described,
    /// As the service answers: `{"@odata.context", "value"}`, PascalCase.
    Service,
}

/// The description's names of an update, for the service's spelling.
const UPDATE_FIELDS: [&str; 7] = [
    "id",
    "alias",
    "documentTitle",
    "severity",
    "initialReleaseDate",
    "currentReleaseDate",
    "cvrfUrl",
];

/// `cvrfUrl` → `CvrfUrl`, `id` → `ID`: the service's spelling.
fn service_name(name: &str) -> String {
    if name == "id" {
        return "ID".into();
    }
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

struct Fake {
    base: String,
    months: Vec<Month>,
    dialect: Dialect,
    every_month: bool,
    exchanges: Vec<(Exchange, String)>,
}

/// The stand-in, serving on loopback for as long as the test runs.
#[derive(Clone)]
pub struct FakeMsrc {
    /// The API's base URL, `http://127.0.0.1:<port>` (what `IMAGE_FACTORY_MSRC_URL` names).
    pub url: String,
    state: Arc<Mutex<Fake>>,
}

impl FakeMsrc {
    /// Serves `months` with lists in `dialect`.
    pub async fn start(months: Vec<Month>, dialect: Dialect) -> FakeMsrc {
        let state = Arc::new(Mutex::new(Fake {
            base: String::new(),
            months,
            dialect,
            every_month: false,
            exchanges: Vec::new(),
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let url = super::serve_loopback(app).await;
        state.lock().unwrap().base = url.clone();
        FakeMsrc { url, state }
    }

    /// Serves `month` from now on, in place of a month of the same id.
    pub fn publish(&self, month: Month) {
        let mut fake = self.state.lock().unwrap();
        fake.months.retain(|m| m.id != month.id);
        fake.months.push(month);
    }

    /// Answers `updates('{id}')` with every month, as older versions of the API did.
    pub fn answer_every_month(&self) {
        self.state.lock().unwrap().every_month = true;
    }

    /// The requests so far, `GET /updates('2024-Jun')`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .exchanges
            .iter()
            .map(|(e, _)| format!("{} {}", e.method, e.path))
            .collect()
    }

    /// Checks every exchange against the description; panics listing what
    /// broke it. Answers how many were checked.
    pub fn check_contract(&self) -> usize {
        let fake = self.state.lock().unwrap();
        let broken: Vec<String> = fake
            .exchanges
            .iter()
            .filter_map(|(exchange, accept)| {
                let mut errors = openapi::msrc()
                    .check_by_path(exchange)
                    .err()
                    .unwrap_or_default();
                let wanted = if exchange.path.starts_with("/cvrf/") {
                    "application/xml"
                } else {
                    "application/json"
                };
                if !accept.contains(wanted) {
                    errors.push(format!("Accept: {accept:?}, not {wanted}"));
                }
                (!errors.is_empty())
                    .then(|| format!("{} {}: {errors:?}", exchange.method, exchange.path))
            })
            .collect();
        assert!(
            broken.is_empty(),
            "the client broke the description:\n{}",
            broken.join("\n")
        );
        fake.exchanges.len()
    }
}

/// One answer, recorded.
async fn answer(
    State(state): State<Arc<Mutex<Fake>>>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().replace("%27", "'");
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    let mut fake = state.lock().unwrap();
    let listed = |fake: &Fake, only: Option<&str>| -> Vec<Value> {
        fake.months
            .iter()
            .filter(|m| only.is_none_or(|id| m.id == id))
            .map(|m| m.entry(&fake.base))
            .collect()
    };
    let (status, described, response): (StatusCode, Value, Response) = if let Some(id) =
        path.strip_prefix("/cvrf/")
    {
        match fake.months.iter().find(|m| m.id == id) {
            Some(month) if accept.contains("application/xml") => (
                StatusCode::OK,
                Value::Null,
                ([("content-type", "application/xml")], month.xml.clone()).into_response(),
            ),
            Some(_) => (
                StatusCode::NOT_ACCEPTABLE,
                Value::Null,
                StatusCode::NOT_ACCEPTABLE.into_response(),
            ),
            None => (
                StatusCode::NOT_FOUND,
                Value::Null,
                StatusCode::NOT_FOUND.into_response(),
            ),
        }
    } else {
        let only = path
            .strip_prefix("/updates('")
            .and_then(|rest| rest.strip_suffix("')"));
        if path != "/updates" && only.is_none() {
            (
                StatusCode::NOT_FOUND,
                Value::Null,
                StatusCode::NOT_FOUND.into_response(),
            )
        } else {
            let entries = listed(&fake, if fake.every_month { None } else { only });
            let body = match fake.dialect {
                Dialect::Described => Value::Array(entries.clone()),
                Dialect::Service => json!({
                    "@odata.context": format!("{}/$metadata#Updates", fake.base),
                    "value": entries.iter().map(|e| {
                        let object = e.as_object().expect("an entry");
                        Value::Object(object.iter().map(|(k, v)| (service_name(k), v.clone())).collect())
                    }).collect::<Vec<_>>(),
                }),
            };
            let described = described_list(&body);
            (StatusCode::OK, described, axum::Json(body).into_response())
        }
    };
    fake.exchanges.push((
        Exchange {
            method: method.to_string(),
            path,
            query,
            request: None,
            status: status.as_u16(),
            answer: described,
        },
        accept,
    ));
    response
}

/// A list as the description declares it: the bare array, or the service's
/// `value` with each name spelled as the description spells it (any other
/// name kept, for the schema to refuse).
fn described_list(body: &Value) -> Value {
    let Some(value) = body.get("value") else {
        return body.clone();
    };
    let entries = value.as_array().expect("a list");
    Value::Array(
        entries
            .iter()
            .map(|entry| {
                let object = entry.as_object().expect("an entry");
                Value::Object(
                    object
                        .iter()
                        .map(|(k, v)| {
                            let name = UPDATE_FIELDS
                                .iter()
                                .find(|f| f.eq_ignore_ascii_case(k))
                                .map_or_else(|| k.clone(), |f| f.to_string());
                            (name, v.clone())
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}
