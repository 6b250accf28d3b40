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
mod invoker;
mod pumps;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use bus::{Bus, QueueOptions};
use function_app::FunctionApp;
use invoker::Invoker;

pub use invoker::{queue_invocation, queue_messages};

pub use crate::functions::DEAD_LETTER_SUFFIX;

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
    /// The options of one queue. A queue's dead letters go to its
    /// dead-letter sub-queue, addressed as Service Bus addresses it
    /// (`<queue>/$DeadLetterQueue`, [`DEAD_LETTER_SUFFIX`]), where a
    /// dead-letter function receives them like any queue's messages; a
    /// message there is never dead-lettered again (Service Bus does not
    /// dead-letter from a dead-letter sub-queue), it is delivered until it is
    /// completed.
    pub fn queue_options(&self, queue: &str) -> QueueOptions {
        let sub_queue = queue.ends_with(DEAD_LETTER_SUFFIX);
        QueueOptions {
            lock_duration: self.lock_duration,
            max_delivery_count: if sub_queue {
                u32::MAX
            } else {
                self.max_delivery_count
            },
            forward_dead_letters_to: (!sub_queue).then(|| format!("{queue}{DEAD_LETTER_SUFFIX}")),
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
