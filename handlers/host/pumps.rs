//! The local host's non-HTTP triggers: a pump per queue-triggered function
//! (a permit before each receive, from its own `maxConcurrentCalls` or from
//! the slots of long local jobs it shares with other pumps; peek-lock,
//! invoke, complete or abandon, lock renewal while the invocation runs) and
//! a loop per timer (NCRONTAB, UTC, with the schedule status kept
//! so that a firing missed while the host was down happens once at start-up,
//! with `IsPastDue`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::bus::{Bus, Received};
use super::function_app::{FunctionApp, FunctionDef, TriggerBinding};
use super::invoker::{Invoked, Invoker, queue_invocation, queue_messages};
use crate::domain::schedule::Schedule;
use crate::protocol::InvocationRequest;

/// How often an idle pump looks for messages that became visible by time
/// (expired locks, scheduled messages).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Starts the loop that triggers `function`, if it is not HTTP-triggered. A
/// queue pump takes a permit of `slots` (shared with other pumps) before it
/// receives a message when given, else one of its own `maxConcurrentCalls`.
pub(super) fn spawn(
    function: FunctionDef,
    app: &FunctionApp,
    invoker: &Invoker,
    bus: &Bus,
    slots: Option<Arc<Semaphore>>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    match function.trigger.clone() {
        TriggerBinding::Http { .. } => None,
        TriggerBinding::Queue { queue, name } => {
            let pump = QueuePump {
                function: Arc::new(function),
                queue,
                binding: name,
                invoker: invoker.clone(),
                bus: bus.clone(),
                permits: slots
                    .unwrap_or_else(|| Arc::new(Semaphore::new(app.settings.max_concurrent_calls))),
                max_renewal: app.settings.max_auto_lock_renewal,
            };
            Some(tokio::spawn(pump.run(shutdown)))
        }
        TriggerBinding::Timer {
            schedule,
            run_on_startup,
            name,
        } => {
            let timer = Timer {
                function,
                binding: name,
                schedule,
            };
            Some(tokio::spawn(timer_loop(
                timer,
                run_on_startup,
                invoker.clone(),
                bus.clone(),
                shutdown,
            )))
        }
    }
}

#[derive(Clone)]
struct QueuePump {
    function: Arc<FunctionDef>,
    queue: String,
    binding: String,
    invoker: Invoker,
    bus: Bus,
    permits: Arc<Semaphore>,
    max_renewal: Duration,
}

impl QueuePump {
    async fn run(self, shutdown: CancellationToken) {
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.permits).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = shutdown.cancelled() => return,
            };
            match self.bus.receive(&self.queue).await {
                Ok(Some(message)) => {
                    let pump = self.clone();
                    tokio::spawn(async move {
                        pump.process(message).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.bus.changed() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(queue = %self.queue, "cannot receive: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn process(&self, message: Received) {
        let name = &self.function.name;
        let invocation = queue_invocation(&self.binding, &message);
        let renewal = self.keep_locked(&message);
        let outcome = tokio::select! {
            outcome = self.invoker.invoke(name, invocation) => outcome,
            () = renewal => Invoked::Failed("the message's lock could not be renewed".into()),
        };
        let settled = match outcome {
            Invoked::Ok(response) => {
                let outputs = queue_messages(&self.function, &response);
                self.bus.complete(&message, outputs).await
            }
            Invoked::Failed(reason) => {
                tracing::warn!(function = %name, delivery = message.delivery_count, "invocation failed, message abandoned: {reason}");
                self.bus.abandon(&message, &reason).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(function = %name, "message not settled ({e}); it will be delivered again");
        }
    }

    /// Renews the lock at half its duration until `max_renewal` has passed;
    /// resolves only if a renewal fails.
    async fn keep_locked(&self, message: &Received) {
        let started = tokio::time::Instant::now();
        let mut locked_until = message.locked_until;
        loop {
            let left = (locked_until - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(left / 2).await;
            if started.elapsed() >= self.max_renewal {
                // As in Azure: past the renewal limit the lock simply runs out.
                return std::future::pending().await;
            }
            match self.bus.renew(message).await {
                Ok(until) => locked_until = until,
                Err(e) => {
                    tracing::warn!(function = %self.function.name, "lock renewal failed: {e}");
                    return;
                }
            }
        }
    }
}

/// A timer function with its trigger's parts.
struct Timer {
    function: FunctionDef,
    binding: String,
    schedule: Schedule,
}

async fn timer_loop(
    timer: Timer,
    run_on_startup: bool,
    invoker: Invoker,
    bus: Bus,
    shutdown: CancellationToken,
) {
    let name = timer.function.name.clone();
    let mut last: Option<DateTime<Utc>> = None;
    let missed = match bus.timer_next(&name).await {
        Ok(Some(next)) => next <= Utc::now(),
        Ok(None) => false,
        Err(e) => {
            tracing::error!(function = %name, "cannot read the timer's status: {e}");
            false
        }
    };
    if missed || run_on_startup {
        last = Some(timer.fire(&invoker, &bus, last, missed).await);
    }
    loop {
        let Some(next) = next_firing(&timer.schedule, Utc::now()) else {
            tracing::warn!(function = %name, schedule = %timer.schedule, "the schedule never fires again");
            return;
        };
        if let Err(e) = bus.timer_record(&name, last, next).await {
            tracing::error!(function = %name, "cannot record the timer's status: {e}");
        }
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        last = Some(timer.fire(&invoker, &bus, last, false).await);
    }
}

fn next_firing(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_after(after.naive_utc()).map(|n| n.and_utc())
}

impl Timer {
    /// Invokes the function once and sends its messages; returns the firing time.
    async fn fire(
        &self,
        invoker: &Invoker,
        bus: &Bus,
        last: Option<DateTime<Utc>>,
        past_due: bool,
    ) -> DateTime<Utc> {
        let name = &self.function.name;
        let now = Utc::now();
        let next = next_firing(&self.schedule, now);
        let info = serde_json::json!({
            "Schedule": { "AdjustForDST": true },
            "ScheduleStatus": {
                "Last": last.unwrap_or(now).to_rfc3339(),
                "Next": next.map(|n| n.to_rfc3339()),
                "LastUpdated": now.to_rfc3339(),
            },
            "IsPastDue": past_due,
        });
        let mut data = Map::new();
        data.insert(self.binding.clone(), info);
        let request = InvocationRequest {
            data,
            metadata: Map::<String, Value>::new(),
        };
        tracing::info!(function = %name, past_due, "timer fired");
        match invoker.invoke(name, request).await {
            Invoked::Ok(response) => {
                let messages = queue_messages(&self.function, &response);
                if !messages.is_empty()
                    && let Err(e) = bus.send(messages).await
                {
                    tracing::error!(function = %name, "cannot send the timer's messages: {e}");
                }
            }
            // As in Azure, a failed timer invocation is not retried.
            Invoked::Failed(reason) => {
                tracing::warn!(function = %name, "timer invocation failed: {reason}")
            }
        }
        now
    }
}
