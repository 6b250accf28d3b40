//! The build worker's report, sent to the `build-completed` queue with the
//! Service Bus crate (`azure_messaging_servicebus` 0.21, the REST client: it
//! signs with a shared access key only). The worker holds one key: a
//! send-only authorization rule on that one queue, from Key Vault through the
//! job's secret reference (`IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION`). The
//! Function App itself reads its queues with its managed identity.
//!
//! The crate's URLs are fixed to `https://<namespace>.servicebus.windows.net`
//! and its HTTP client is injected: [`LegacyHttp`] implements the crate's
//! client trait over this crate's reqwest, and can send to another base URL
//! (`IMAGE_FACTORY_SERVICEBUS_ENDPOINT`, for tests and emulators only).
//! Shapes: the Service Bus REST reference, "Send Message" (POST
//! `/{queue}/messages`, `BrokerProperties` header, SAS authorization).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core_legacy as legacy;

use azure_messaging_servicebus::service_bus::{
    QueueClient, SendMessageOptions, SettableBrokerProperties,
};

use crate::ports::workers::{BuildReport, Reporter};

/// The queue workers report to.
pub const COMPLETION_QUEUE: &str = "build-completed";

/// A parsed Service Bus connection string (never printed: it holds a key).
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// The namespace's name (`<namespace>` of `sb://<namespace>.servicebus.windows.net/`).
    pub namespace: String,
    /// The authorization rule's name.
    pub key_name: String,
    /// The rule's key.
    pub key: String,
    /// The queue the rule is scoped to, when the string names one.
    pub entity: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("namespace", &self.namespace)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("entity", &self.entity)
            .finish()
    }
}

impl Connection {
    /// Parses `Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=...]`.
    /// Errors name the missing part, never the key.
    pub fn parse(text: &str) -> Result<Connection, String> {
        let mut parts: HashMap<String, String> = HashMap::new();
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| "a part of the connection string has no `=`".to_string())?;
            parts.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        let endpoint = parts
            .get("endpoint")
            .ok_or("the connection string has no Endpoint")?;
        let host = endpoint
            .strip_prefix("sb://")
            .ok_or(
                "the connection string's Endpoint is not sb://<namespace>.servicebus.windows.net/",
            )?
            .trim_end_matches('/');
        let namespace = host
            .strip_suffix(".servicebus.windows.net")
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .ok_or(
                "the connection string's Endpoint is not sb://<namespace>.servicebus.windows.net/",
            )?;
        let field = |name: &str, label: &str| {
            parts
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("the connection string has no {label}"))
        };
        Ok(Connection {
            namespace: namespace.to_string(),
            key_name: field("sharedaccesskeyname", "SharedAccessKeyName")?,
            key: field("sharedaccesskey", "SharedAccessKey")?,
            entity: parts.get("entitypath").cloned(),
        })
    }
}

/// The crate's HTTP client trait over reqwest, optionally sending to another
/// base URL than the namespace's.
#[derive(Debug)]
pub struct LegacyHttp {
    http: reqwest::Client,
    base: Option<reqwest::Url>,
}

impl LegacyHttp {
    /// A client sending where the crate says, or to `base` (scheme, host and port replaced).
    pub fn new(base: Option<&str>) -> Result<LegacyHttp, String> {
        let base = base
            .map(|b| reqwest::Url::parse(b).map_err(|e| format!("not a URL: {e}")))
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(LegacyHttp { http, base })
    }
}

#[async_trait]
impl legacy::HttpClient for LegacyHttp {
    async fn execute_request(&self, request: &legacy::Request) -> legacy::Result<legacy::Response> {
        let io = |e: reqwest::Error| {
            legacy::error::Error::message(
                legacy::error::ErrorKind::Io,
                format!("Service Bus did not answer: {}", e.without_url()),
            )
        };
        let mut url = request.url().clone();
        if let Some(base) = &self.base {
            let parts = url.set_scheme(base.scheme()).and_then(|()| {
                url.set_host(base.host_str()).map_err(|_| ())?;
                url.set_port(base.port())
            });
            if parts.is_err() {
                return Err(legacy::error::Error::message(
                    legacy::error::ErrorKind::Other,
                    "cannot send to the configured Service Bus endpoint",
                ));
            }
        }
        let method =
            reqwest::Method::from_bytes(request.method().as_ref().as_bytes()).map_err(|_| {
                legacy::error::Error::message(legacy::error::ErrorKind::Other, "bad method")
            })?;
        let mut builder = self.http.request(method, url);
        for (name, value) in request.headers().iter() {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let legacy::Body::Bytes(bytes) = request.body() {
            builder = builder.body(bytes.clone());
        }
        let response = builder.send().await.map_err(io)?;
        let status = legacy::StatusCode::try_from(response.status().as_u16()).map_err(|_| {
            legacy::error::Error::message(legacy::error::ErrorKind::Other, "bad status code")
        })?;
        let headers: HashMap<legacy::headers::HeaderName, legacy::headers::HeaderValue> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    legacy::headers::HeaderName::from(k.as_str().to_owned()),
                    legacy::headers::HeaderValue::from(v.to_str().ok()?.to_owned()),
                ))
            })
            .collect();
        let body = response.bytes().await.map_err(io)?;
        Ok(legacy::Response::new(
            status,
            legacy::headers::Headers::from(headers),
            Box::pin(legacy::BytesStream::new(body)),
        ))
    }
}

/// Sends reports to the completion queue.
#[derive(Debug)]
pub struct ServiceBusReporter {
    client: QueueClient,
}

impl ServiceBusReporter {
    /// A reporter for `connection`, sending through `http`.
    pub fn new(connection: &Connection, http: LegacyHttp) -> Result<ServiceBusReporter, String> {
        if let Some(entity) = &connection.entity
            && entity != COMPLETION_QUEUE
        {
            return Err(format!(
                "the connection string is scoped to queue {entity}, not {COMPLETION_QUEUE}"
            ));
        }
        let client = QueueClient::new(
            Arc::new(http),
            connection.namespace.clone(),
            COMPLETION_QUEUE,
            connection.key_name.clone(),
            connection.key.clone(),
        )
        .map_err(|e| format!("cannot make a Service Bus client: {}", e.kind()))?;
        Ok(ServiceBusReporter { client })
    }
}

#[async_trait]
impl Reporter for ServiceBusReporter {
    async fn send(&self, report: &BuildReport, message_id: &str) -> Result<(), String> {
        let body = serde_json::to_string(report).map_err(|e| format!("cannot encode: {e}"))?;
        let options = SendMessageOptions {
            content_type: Some("application/json".into()),
            broker_properties: Some(SettableBrokerProperties {
                message_id: Some(message_id.to_string()),
                ..SettableBrokerProperties::default()
            }),
            custom_properties: None,
        };
        self.client
            .send_message(&body, Some(options))
            .await
            .map_err(|e| match e.as_http_error() {
                Some(http) => format!(
                    "Service Bus answered {} ({})",
                    http.status(),
                    http.error_code().unwrap_or("no error code")
                ),
                None => format!("cannot send to Service Bus: {}", e.kind()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1zaG91bGQtbm90LWxlYWs=";

    #[test]
    fn a_connection_string_is_parsed_and_its_key_is_never_printed() {
        let text = format!(
            "Endpoint=sb://sb-factory.servicebus.windows.net/;SharedAccessKeyName=workers-send;SharedAccessKey={KEY};EntityPath=build-completed"
        );
        let connection = Connection::parse(&text).expect("parses");
        assert_eq!(connection.namespace, "sb-factory");
        assert_eq!(connection.key_name, "workers-send");
        assert_eq!(connection.key, KEY);
        assert_eq!(connection.entity.as_deref(), Some("build-completed"));
        assert!(!format!("{connection:?}").contains(KEY));
    }

    #[test]
    fn a_broken_connection_string_is_named_without_its_key() {
        for (text, expected) in [
            (
                format!("SharedAccessKeyName=a;SharedAccessKey={KEY}"),
                "no Endpoint",
            ),
            (
                format!("Endpoint=https://x.example/;SharedAccessKeyName=a;SharedAccessKey={KEY}"),
                "sb://",
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=a".to_string(),
                "no SharedAccessKey",
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;garbage".to_string(),
                "no `=`",
            ),
        ] {
            let error = Connection::parse(&text).expect_err("refused");
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains(KEY), "{error}");
        }
    }

    #[test]
    fn a_connection_for_another_queue_is_refused() {
        let connection = Connection {
            namespace: "ns".into(),
            key_name: "k".into(),
            key: KEY.into(),
            entity: Some("stage-build".into()),
        };
        let http = LegacyHttp::new(None).expect("http");
        let error = ServiceBusReporter::new(&connection, http).expect_err("refused");
        assert!(error.contains("stage-build"), "{error}");
    }
}
