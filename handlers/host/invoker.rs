//! How the host calls the handler: one HTTP POST per invocation, as the
//! Functions host calls a custom handler, and what its answer means (the
//! messages its Service Bus outputs stand for); and how a queue message
//! becomes an invocation.

use chrono::Utc;
use serde_json::{Map, Value};

use super::bus::{self, Bus, Outgoing};
use super::function_app::FunctionDef;
use crate::protocol::{InvocationRequest, InvocationResponse, encode_value};

/// Calls the handler and routes what it answers.
#[derive(Clone)]
pub(super) struct Invoker {
    client: reqwest::Client,
    handler_url: String,
    /// The bus the answers' messages go to.
    pub(super) bus: Bus,
}

/// How an invocation ended.
pub(super) enum Invoked {
    /// 2xx: the response.
    Ok(InvocationResponse),
    /// Non-2xx or no answer: the invocation failed.
    Failed(String),
}

impl Invoker {
    pub(super) fn new(handler_url: String, bus: Bus) -> std::io::Result<Invoker> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Invoker {
            client,
            handler_url: handler_url.trim_end_matches('/').to_string(),
            bus,
        })
    }

    /// POSTs one invocation to the handler.
    pub(super) async fn invoke(&self, function: &str, mut request: InvocationRequest) -> Invoked {
        let invocation_id = crate::ports::clock::new_id();
        request.metadata.insert(
            "sys".into(),
            serde_json::json!({
                "MethodName": function,
                "UtcNow": Utc::now().to_rfc3339(),
                "RandGuid": crate::ports::clock::new_id(),
            }),
        );
        let sent = self
            .client
            .post(format!("{}/{function}", self.handler_url))
            .header("X-Azure-Functions-InvocationId", &invocation_id)
            .header("X-Azure-Functions-HostVersion", "image-factory-local")
            .json(&request)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Invoked::Failed(format!("the handler did not answer: {e}")),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let logs: Vec<String> = serde_json::from_str::<InvocationResponse>(&text)
                .map(|r| r.logs)
                .unwrap_or_else(|_| vec![text.chars().take(500).collect()]);
            return Invoked::Failed(format!(
                "the handler answered {status}: {}",
                logs.join("; ")
            ));
        }
        match serde_json::from_str::<InvocationResponse>(&text) {
            Ok(r) => {
                for line in &r.logs {
                    tracing::info!(function, invocation_id = %invocation_id, "{line}");
                }
                Invoked::Ok(r)
            }
            Err(e) => Invoked::Failed(format!(
                "the handler's answer is not an invocation response: {e}"
            )),
        }
    }
}

/// The messages a response's Service Bus outputs stand for, as the host sends
/// them: an array is one message per element, anything else one message.
pub fn queue_messages(function: &FunctionDef, response: &InvocationResponse) -> Vec<Outgoing> {
    let mut messages = Vec::new();
    for (name, value) in &response.outputs {
        let Some(queue) = function.queue_outputs.get(name) else {
            if name != crate::protocol::HTTP_OUTPUT {
                tracing::error!(function = %function.name, output = %name, "the handler set an output that function.json does not declare; it is dropped, as the Functions host drops it");
            }
            continue;
        };
        let items = match value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for item in items {
            let body = match item {
                Value::String(s) => s,
                other => other.to_string(),
            };
            messages.push(Outgoing {
                queue: queue.clone(),
                body,
                properties: Map::new(),
                scheduled_at: None,
            });
        }
    }
    messages
}

/// The `Data`/`Metadata` of a Service Bus triggered invocation, encoded as
/// the Functions host encodes them (see docs/custom-handler-protocol.md).
pub fn queue_invocation(binding: &str, message: &bus::Received) -> InvocationRequest {
    let mut data = Map::new();
    data.insert(
        binding.into(),
        encode_value(&Value::String(message.body.clone())),
    );
    let mut metadata = Map::new();
    let text = |s: &str| encode_value(&Value::String(s.to_string()));
    metadata.insert(
        "DeliveryCount".into(),
        encode_value(&Value::from(message.delivery_count)),
    );
    metadata.insert("MessageId".into(), text(&message.message_id));
    metadata.insert("LockToken".into(), text(&message.lock_token));
    metadata.insert(
        "SequenceNumber".into(),
        encode_value(&Value::from(message.sequence)),
    );
    metadata.insert(
        "EnqueuedTimeUtc".into(),
        Value::String(message.enqueued_at.format("%Y-%m-%dT%H:%M:%S").to_string()),
    );
    metadata.insert("ContentType".into(), text("text/plain"));
    metadata.insert(
        "ApplicationProperties".into(),
        Value::Object(message.properties.clone()),
    );
    metadata.insert(
        "UserProperties".into(),
        Value::Object(message.properties.clone()),
    );
    InvocationRequest { data, metadata }
}
