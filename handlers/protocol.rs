//! The Azure Functions custom-handler invocation protocol, as the Functions
//! host speaks it: the host POSTs `{"Data": …, "Metadata": …}` to
//! `/{functionName}` and reads back `{"Outputs": …, "Logs": […], "ReturnValue": …}`.
//!
//! HTTP triggers arrive through the `req` binding (the host runs with
//! `enableForwardingHttpRequest: false`), so an HTTP function can also set
//! Service Bus outputs; its answer is the `res` output binding. Field names
//! and casing follow the official custom handler documentation and the
//! Functions host sources (see `tests/fixtures/protocol/SOURCES.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What the host sends for one invocation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InvocationRequest {
    /// Trigger and input binding values, by binding name.
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata (`DeliveryCount`, `MessageId`, `sys`, ...).
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// What the handler answers.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InvocationResponse {
    /// Output binding values, by binding name.
    #[serde(rename = "Outputs", default)]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to the function's log.
    #[serde(rename = "Logs", default)]
    pub logs: Vec<String>,
    /// The `$return` binding's value, if any.
    #[serde(rename = "ReturnValue", default)]
    pub return_value: Option<Value>,
}

/// Name of the HTTP trigger binding in every HTTP function of this app.
pub const HTTP_TRIGGER: &str = "req";
/// Name of the HTTP output binding in every HTTP function of this app.
pub const HTTP_OUTPUT: &str = "res";

/// The `req` binding of an HTTP-triggered invocation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HttpRequestData {
    /// The full request URL.
    #[serde(rename = "Url", default)]
    pub url: String,
    /// `GET`, `POST`, ...
    #[serde(rename = "Method", default)]
    pub method: String,
    /// Query parameters.
    #[serde(rename = "Query", default, deserialize_with = "lenient_map")]
    pub query: BTreeMap<String, String>,
    /// Headers; the host sends each as an array of values.
    #[serde(rename = "Headers", default, deserialize_with = "lenient_multimap")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Route parameters.
    #[serde(rename = "Params", default, deserialize_with = "lenient_map")]
    pub params: BTreeMap<String, String>,
    /// The body as the host read it: raw text, or parsed JSON.
    #[serde(rename = "Body", default)]
    pub body: Value,
    /// Authenticated identities (App Service authentication), if any.
    #[serde(rename = "Identities", default)]
    pub identities: Value,
}

impl HttpRequestData {
    /// A header's first value, matched without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    /// The body as text: raw text as sent, JSON re-encoded, nothing as empty.
    pub fn body_text(&self) -> String {
        match &self.body {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// The `res` output binding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HttpResponseData {
    /// HTTP status.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

impl HttpResponseData {
    /// A JSON response.
    pub fn json(status_code: u16, value: &impl Serialize) -> HttpResponseData {
        HttpResponseData {
            status_code,
            headers: BTreeMap::from([("Content-Type".into(), "application/json".into())]),
            body: serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into()),
        }
    }

    /// An HTML page.
    pub fn html(status_code: u16, body: String) -> HttpResponseData {
        HttpResponseData {
            status_code,
            headers: BTreeMap::from([
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
                ("Cache-Control".into(), "no-store".into()),
                ("X-Frame-Options".into(), "DENY".into()),
                (
                    "Content-Security-Policy".into(),
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'".into(),
                ),
                ("Referrer-Policy".into(), "no-referrer".into()),
            ]),
            body,
        }
    }

    /// A JSON error `{"error": message}`.
    pub fn error(status_code: u16, message: &str) -> HttpResponseData {
        HttpResponseData::json(status_code, &serde_json::json!({ "error": message }))
    }
}

impl InvocationResponse {
    /// A response whose `res` output is `http`.
    pub fn http(http: HttpResponseData) -> InvocationResponse {
        let mut response = InvocationResponse::default();
        response.set_output(HTTP_OUTPUT, &http);
        response
    }

    /// Sets an output binding's value.
    pub fn set_output(&mut self, name: &str, value: &impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.outputs.insert(name.to_string(), value);
    }

    /// Adds a line to the invocation's log.
    pub fn log(&mut self, line: impl Into<String>) {
        self.logs.push(line.into());
    }
}

/// The host sends some maps as objects and, in older versions, some as JSON text.
fn lenient_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Value::deserialize(d)?;
    let object = match value {
        Value::Object(o) => o,
        Value::String(s) => serde_json::from_str::<Map<String, Value>>(&s).unwrap_or_default(),
        _ => Map::new(),
    };
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Array(a) => a.first().map(scalar_text).unwrap_or_default(),
                other => scalar_text(&other),
            };
            (k, text)
        })
        .collect())
}

fn lenient_multimap<'de, D>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = Value::deserialize(d)?;
    let Value::Object(object) = value else {
        return Ok(BTreeMap::new());
    };
    Ok(object
        .into_iter()
        .map(|(k, v)| {
            let values = match v {
                Value::Array(a) => a.iter().map(scalar_text).collect(),
                other => vec![scalar_text(&other)],
            };
            (k, values)
        })
        .collect())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
