//! The Azure Functions custom-handler invocation protocol, as the Functions
//! host speaks it: the host POSTs `{"Data": …, "Metadata": …}` to
//! `/{functionName}` and reads back `{"Outputs": …, "Logs": […], "ReturnValue": …}`.
//!
//! HTTP triggers arrive through the `req` binding (the host runs with
//! `enableForwardingHttpRequest: false`), so an HTTP function can also set
//! Service Bus outputs; its answer is the `res` output binding. Field names
//! and casing follow the official custom handler documentation and the
//! Functions host sources (see `tests/fixtures/protocol/SOURCES.md`; the
//! verbatim captures it names are read by `tests/handler_protocol.rs` from
//! the third-party folder).

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

/// Why an invocation could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A binding the function needs is missing from `Data`.
    #[error("the invocation has no `{0}` entry in Data")]
    MissingData(String),
    /// A metadata key the function needs is missing.
    #[error("the invocation has no `{0}` entry in Metadata")]
    MissingMetadata(String),
    /// A value does not have the expected shape.
    #[error("the invocation's `{name}` is not valid: {message}")]
    Invalid {
        /// Which value.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl InvocationRequest {
    /// A `Data` entry with the host's encoding undone (see [`decode_value`]).
    pub fn data_value(&self, name: &str) -> Result<Value, ProtocolError> {
        self.data
            .get(name)
            .map(decode_value)
            .ok_or_else(|| ProtocolError::MissingData(name.to_string()))
    }

    /// A `Data` entry decoded into `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ProtocolError> {
        serde_json::from_value(self.data_value(name)?).map_err(|e| ProtocolError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })
    }

    /// A `Metadata` entry as text (strings as they are, numbers in decimal).
    ///
    /// The host's encoding is undone once, never more: a string arrives as
    /// its JSON text (`"\"abc\""`), a number as its digits (`"1"`). Decoding
    /// further (as [`decode_value`] does for message bodies) would turn a
    /// message id such as `1234567890123e45` into the number `1.234567890123e57`.
    pub fn metadata_text(&self, name: &str) -> Option<String> {
        match self.metadata.get(name)? {
            Value::String(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::String(s)) => Some(s),
                // A number's text as the host sent it (no round trip through f64).
                Ok(Value::Number(_)) => Some(text.trim().to_string()),
                Ok(_) => None,
                // Not JSON: the unquoted form the documentation shows.
                Err(_) => Some(text.clone()),
            },
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A `Metadata` entry as a non-negative integer.
    pub fn metadata_u32(&self, name: &str) -> Option<u32> {
        self.metadata_text(name)?.parse().ok()
    }

    /// A `Metadata` entry that is an object (`ApplicationProperties`, ...).
    pub fn metadata_object(&self, name: &str) -> Option<Map<String, Value>> {
        match self.metadata.get(name).map(decode_value)? {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The `req` binding of an HTTP-triggered invocation.
    pub fn http_request(&self) -> Result<HttpRequestData, ProtocolError> {
        let value = self
            .data
            .get(HTTP_TRIGGER)
            .ok_or_else(|| ProtocolError::MissingData(HTTP_TRIGGER.to_string()))?;
        serde_json::from_value(value.clone()).map_err(|e| ProtocolError::Invalid {
            name: HTTP_TRIGGER.to_string(),
            message: e.to_string(),
        })
    }
}

/// Undoes the host's encoding of values: it sends strings, numbers and
/// booleans as JSON text inside a JSON string (`"DeliveryCount": "1"`,
/// `"MessageId": "\"abc\""`, a Service Bus body JSON-encoded twice), while
/// objects stay objects. Text that is not JSON is kept as it is.
pub fn decode_value(value: &Value) -> Value {
    let mut current = value.clone();
    for _ in 0..3 {
        let Value::String(text) = &current else {
            break;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(inner) => current = inner,
            Err(_) => break,
        }
    }
    current
}

/// Encodes a value as the Functions host does for `Data` and `Metadata`:
/// objects and arrays as they are, anything else as its JSON text in a string.
pub fn encode_value(value: &Value) -> Value {
    match value {
        Value::Object(_) | Value::Array(_) => value.clone(),
        other => Value::String(other.to_string()),
    }
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
    /// The body's bytes in base64, set by the local host instead of `Body`
    /// when they are not UTF-8 (see [`HttpRequestData::body_bytes`]).
    #[serde(
        rename = "BodyBase64",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub body_base64: Option<String>,
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

    /// The body's bytes, exactly as received when the host could keep them.
    ///
    /// A webhook's signature covers the bytes its sender sent, so they must
    /// reach the function unchanged. The Functions host hands a custom
    /// handler the body as a JSON string, which cannot hold bytes that are
    /// not UTF-8: in Azure such a body arrives already decoded (changed), and
    /// its signature then fails to verify. The local host does better: it
    /// carries a body that is not UTF-8 in `BodyBase64` (and no `Body`), so
    /// a function checks the signature over the very bytes received and can
    /// then refuse the body for not being text. A `BodyBase64` that is not
    /// base64 gives `None`: no bytes are known.
    pub fn body_bytes(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        use base64::Engine;
        match &self.body_base64 {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .map(std::borrow::Cow::Owned),
            None => Some(match &self.body {
                Value::String(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
                _ => std::borrow::Cow::Owned(self.body_text().into_bytes()),
            }),
        }
    }

    /// The body as text: raw text as sent, JSON re-encoded, nothing as empty.
    /// A body that is not UTF-8 (carried in `BodyBase64`) reads as empty.
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

    /// Plain text.
    pub fn text(status_code: u16, body: String) -> HttpResponseData {
        HttpResponseData {
            status_code,
            headers: BTreeMap::from([("Content-Type".into(), "text/plain; charset=utf-8".into())]),
            body,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> InvocationRequest {
        let path = format!(
            "{}/tests/fixtures/protocol/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_service_bus_invocation_decodes_its_double_encoded_body_and_stringified_metadata() {
        let req = fixture("servicebus-request.json");
        let body = req.data_value("mySbMsg").unwrap();
        assert_eq!(body["orderId"], 42);
        assert_eq!(req.metadata_u32("DeliveryCount"), Some(1));
        assert_eq!(
            req.metadata_text("MessageId").as_deref(),
            Some("3f2a6d4e8b1c4f0e9a7d5c3b2a1f0e9d")
        );
        assert_eq!(
            req.metadata_object("ApplicationProperties").unwrap()["tenant"],
            "contoso"
        );
    }

    #[test]
    fn a_message_id_that_reads_as_a_json_number_is_kept_as_sent() {
        // The local bus's ids are 16 hex digits; about one in 8,400 is all
        // decimal digits but one `e` ("1234567890123e45"), which is also a
        // JSON number. Read as a number it would come back as "1.234567890123e+57",
        // and every "0e…" id as "0.0": a redelivery would not match its
        // recorded attempt, and two different messages would look like one.
        for id in [
            "1234567890123e45",
            "0e12345678901234",
            "0e99999999999999",
            "4711",
        ] {
            let mut metadata = Map::new();
            metadata.insert("MessageId".into(), encode_value(&Value::String(id.into())));
            metadata.insert("DeliveryCount".into(), encode_value(&Value::from(3)));
            let req = InvocationRequest {
                data: Map::new(),
                metadata,
            };
            assert_eq!(req.metadata_text("MessageId").as_deref(), Some(id));
            assert_eq!(req.metadata_u32("DeliveryCount"), Some(3));
        }
        // The typed form the documentation shows: a number stays its decimal text.
        let mut metadata = Map::new();
        metadata.insert("DeliveryCount".into(), Value::from(2));
        metadata.insert("Id".into(), Value::String("a0004923-x".into()));
        let req = InvocationRequest {
            data: Map::new(),
            metadata,
        };
        assert_eq!(req.metadata_u32("DeliveryCount"), Some(2));
        assert_eq!(req.metadata_text("Id").as_deref(), Some("a0004923-x"));
    }

    #[test]
    fn an_http_invocation_exposes_the_raw_body_headers_and_route_params() {
        let req = fixture("http-request.json").http_request().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.params["id"], "42");
        assert_eq!(req.query["verbose"], "true");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let body: Value = serde_json::from_str(&req.body_text()).unwrap();
        assert_eq!(body["age"], 12);
    }

    #[test]
    fn a_timer_invocation_carries_the_schedule_status() {
        let req = fixture("timer-request.json");
        let timer = req.data_value("myTimer").unwrap();
        assert_eq!(timer["IsPastDue"], false);
        assert_eq!(timer["ScheduleStatus"]["Next"], "2016-10-04T10:20:00+00:00");
    }

    #[test]
    fn responses_serialize_with_the_hosts_field_names() {
        let mut response =
            InvocationResponse::http(HttpResponseData::json(201, &serde_json::json!({"id": 42})));
        response.log("created");
        let wire: Value = serde_json::to_value(&response).unwrap();
        assert_eq!(wire["Outputs"]["res"]["statusCode"], 201);
        assert!(wire["Outputs"]["res"]["body"].is_string());
        assert_eq!(wire["Logs"][0], "created");
        let documented: InvocationResponse = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/protocol/http-response.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let res: HttpResponseData =
            serde_json::from_value(documented.outputs["res"].clone()).unwrap();
        assert_eq!(res.status_code, 201);
    }

    #[test]
    fn encoding_then_decoding_gives_the_value_back() {
        for v in [
            serde_json::json!(1),
            serde_json::json!("abc"),
            serde_json::json!({"a": [1]}),
            serde_json::json!(true),
        ] {
            assert_eq!(decode_value(&encode_value(&v)), v);
        }
        let body = Value::String(r#"{"runId":"r1"}"#.into());
        assert_eq!(decode_value(&encode_value(&body))["runId"], "r1");
    }
}
