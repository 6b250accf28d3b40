//! The embedded Functions host: runs the whole function set on one machine
//! with the same protocol the Azure Functions host speaks.
//!
//! It reads an app folder in the Functions host's layout (`host.json` and
//! `<name>/function.json` at the root, see [`crate::layout`]), serves the HTTP
//! triggers under `/api/`, fires the timers on their NCRONTAB schedules,
//! delivers queue messages from the embedded durable [`bus::Bus`], and calls
//! the handler for every invocation over HTTP, exactly as a custom handler is
//! called in Azure: `POST /{function}` with `{"Data", "Metadata"}`, values
//! encoded as the real host encodes them.

pub mod bus;
pub mod function_app;
mod http;
mod pumps;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use bus::{Bus, Outgoing, QueueOptions};
use function_app::{FunctionApp, FunctionDef};

use crate::protocol::{InvocationRequest, InvocationResponse, encode_value};

pub use crate::functions::DEAD_LETTER_QUEUE;

/// How the local host's queues behave (Service Bus queue properties).
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// Lock duration of every queue.
    pub lock_duration: Duration,
    /// Max delivery count of every queue.
    pub max_delivery_count: u32,
}

impl Default for BusSettings {
    fn default() -> BusSettings {
        BusSettings {
            lock_duration: Duration::from_secs(60),
            max_delivery_count: 5,
        }
    }
}

impl BusSettings {
    /// The options of one queue: stage queues forward dead letters to [`DEAD_LETTER_QUEUE`].
    pub fn queue_options(&self, queue: &str) -> QueueOptions {
        QueueOptions {
            lock_duration: self.lock_duration,
            max_delivery_count: self.max_delivery_count,
            forward_dead_letters_to: (queue != DEAD_LETTER_QUEUE)
                .then(|| DEAD_LETTER_QUEUE.to_string()),
        }
    }
}

/// The queue-triggered functions whose invocations run long jobs as child
/// processes of this machine (packer, smoke tests), and how many of those
/// invocations run at once across all of them. Their pumps share these
/// slots instead of `maxConcurrentCalls` each, and take a slot before they
/// receive a message: a message that waits for a slot waits in its queue,
/// unlocked, so no lock has to outlive its renewal and nothing is
/// redelivered because of the wait.
#[derive(Clone, Debug)]
pub struct LocalJobs {
    /// The functions (by name) whose invocations take a slot.
    pub functions: Vec<String>,
    /// How many of their invocations run at once.
    pub slots: NonZeroUsize,
}

/// A running local host.
pub struct LocalHost {
    /// Where its HTTP triggers are served.
    pub addr: SocketAddr,
    /// Its queues.
    pub bus: Bus,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalHost {
    /// Starts the host: HTTP front on `listener`, timers, and queue pumps, all
    /// calling the handler at `handler_url`, until `shutdown` is cancelled;
    /// the invocations of `jobs.functions` share `jobs.slots`.
    pub async fn start(
        app: FunctionApp,
        bus: Bus,
        listener: TcpListener,
        handler_url: String,
        jobs: LocalJobs,
        shutdown: CancellationToken,
    ) -> std::io::Result<LocalHost> {
        let addr = listener.local_addr()?;
        let invoker = Invoker::new(handler_url, bus.clone())?;
        let app = Arc::new(app);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(http::serve(
            listener,
            Arc::clone(&app),
            invoker.clone(),
            shutdown.clone(),
        )));
        let slots = Arc::new(tokio::sync::Semaphore::new(jobs.slots.get()));
        for function in app.functions.iter().cloned() {
            let shared = jobs
                .functions
                .contains(&function.name)
                .then(|| Arc::clone(&slots));
            if let Some(task) =
                pumps::spawn(function, &app, &invoker, &bus, shared, shutdown.clone())
            {
                tasks.push(task);
            }
        }
        Ok(LocalHost { addr, bus, tasks })
    }

    /// Waits for every task to stop (after the shutdown token is cancelled).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Calls the handler and routes what it answers.
#[derive(Clone)]
struct Invoker {
    client: reqwest::Client,
    handler_url: String,
    bus: Bus,
}

/// How an invocation ended.
enum Invoked {
    /// 2xx: the response.
    Ok(InvocationResponse),
    /// Non-2xx or no answer: the invocation failed.
    Failed(String),
}

impl Invoker {
    fn new(handler_url: String, bus: Bus) -> std::io::Result<Invoker> {
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
    async fn invoke(&self, function: &str, mut request: InvocationRequest) -> Invoked {
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
