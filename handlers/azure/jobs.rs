//! Build workers as Azure Container Apps job executions (Microsoft.App,
//! api-version 2025-01-01): start one per build order, read its state for the
//! watchdog, stop it. The job itself (image, identity, secrets, timeout) is
//! defined by the infrastructure; a start only adds the order to the worker
//! container's environment, so the job definition stays the one source of
//! its settings.
//!
//! Starting is idempotent per stage message: before starting, the
//! executions are listed and an execution whose order has the same run and
//! message, still running or ended well, is adopted instead. A stage message
//! delivered again after a crash therefore never starts a second packer build.
//! A worker the watchdog already counted lost is never adopted again.
//! Shapes: azure-rest-api-specs, specification/app/resource-manager/
//! Microsoft.App/stable/2025-01-01/examples/Job_Get.json, Job_Start.json,
//! Job_Executions_Get.json, Job_Execution_Get.json, Job_Stop_Execution.json.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::BuildJob;
use super::arm::ArmClient;
use crate::domain::run::{RunId, WorkerRef};
use crate::ports::PortError;
use crate::ports::workers::{BuildOrder, ORDER_VAR, WorkerState, Workers};

/// The Container Apps API version the factory speaks.
pub const APPS_API: &str = "2025-01-01";

/// The name of the job's container that runs the worker.
pub const WORKER_CONTAINER: &str = "worker";

/// Build workers on a Container Apps job.
#[derive(Clone, Debug)]
pub struct ContainerAppsWorkers {
    arm: ArmClient,
    job_path: String,
}

impl ContainerAppsWorkers {
    /// Workers of `job` in `subscription_id`, through `arm`.
    pub fn new(arm: ArmClient, subscription_id: &str, job: &BuildJob) -> ContainerAppsWorkers {
        ContainerAppsWorkers {
            arm,
            job_path: format!(
                "/subscriptions/{subscription_id}/resourceGroups/{}/providers/Microsoft.App/jobs/{}",
                job.resource_group, job.name
            ),
        }
    }

    fn path(&self, tail: &str) -> String {
        format!("{}{tail}?api-version={APPS_API}", self.job_path)
    }

    /// The execution already started for `order`'s stage message, if one is
    /// still running or ended well.
    async fn started_for(&self, order: &BuildOrder) -> Result<Option<WorkerRef>, PortError> {
        let found = self
            .of_message(&order.run_id, &order.message_id)
            .await?
            .into_iter()
            .filter(|(worker, state)| {
                !order.lost_workers.contains(&worker.id)
                    && matches!(state, WorkerState::Running | WorkerState::Succeeded { .. })
            })
            .map(|(worker, _)| worker)
            .next_back();
        Ok(found)
    }

    /// The job's executions started for the stage message `message_id` of
    /// `run`, oldest first as the job lists them, with their states.
    async fn of_message(
        &self,
        run: &RunId,
        message_id: &str,
    ) -> Result<Vec<(WorkerRef, WorkerState)>, PortError> {
        let executions = self.arm.list(&self.path("/executions")).await?;
        let mut found = Vec::new();
        for execution in &executions {
            let Some(theirs) = order_of(execution) else {
                continue;
            };
            let name = execution["name"].as_str().unwrap_or_default();
            if theirs.run_id != *run || theirs.message_id != message_id || name.is_empty() {
                continue;
            }
            let worker = WorkerRef {
                id: theirs.worker_id,
                execution: name.to_string(),
                started_at: time_of(execution, "startTime").unwrap_or_else(Utc::now),
                log_url: theirs.log_url,
            };
            found.push((worker, state_of(execution)));
        }
        Ok(found)
    }

    /// The job's template with `order` added to the worker container's environment.
    async fn template_for(&self, order: &BuildOrder) -> Result<Value, PortError> {
        let job = self.arm.get(&self.path("")).await?;
        let template = &job["properties"]["template"];
        let mut containers = template["containers"]
            .as_array()
            .cloned()
            .ok_or_else(|| PortError::permanent("the build job has no containers"))?;
        let position = containers
            .iter()
            .position(|c| c["name"] == WORKER_CONTAINER)
            .or(if containers.len() == 1 { Some(0) } else { None })
            .ok_or_else(|| {
                PortError::permanent(format!(
                    "the build job has no container named {WORKER_CONTAINER}"
                ))
            })?;
        let order_json = serde_json::to_string(order)
            .map_err(|e| PortError::permanent(format!("cannot encode the order: {e}")))?;
        let container = &mut containers[position];
        let mut env: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
        env.retain(|e| e["name"] != ORDER_VAR);
        env.push(json!({ "name": ORDER_VAR, "value": order_json }));
        container["env"] = Value::Array(env);
        let mut body = json!({ "containers": containers });
        if let Some(init) = template.get("initContainers").filter(|v| v.is_array()) {
            body["initContainers"] = init.clone();
        }
        Ok(body)
    }
}

#[async_trait]
impl Workers for ContainerAppsWorkers {
    async fn start(&self, order: &BuildOrder) -> Result<WorkerRef, PortError> {
        // Only a later delivery of the message can find the worker an
        // earlier one started: a first one does not list the job's
        // executions (a list that grows with every build of the fleet).
        if order.delivery != 1
            && let Some(worker) = self.started_for(order).await?
        {
            tracing::info!(execution = %worker.execution, "build worker already started for this message; adopting it");
            return Ok(worker);
        }
        let template = self.template_for(order).await?;
        let started = self.arm.post(&self.path("/start"), &template).await?;
        let name = started["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                PortError::permanent(format!(
                    "the job start answered no execution name: {started}"
                ))
            })?;
        tracing::info!(execution = %name, worker = %order.worker_id, "build worker started");
        Ok(WorkerRef {
            id: order.worker_id.clone(),
            execution: name.to_string(),
            started_at: Utc::now(),
            log_url: order.log_url.clone(),
        })
    }

    async fn state(&self, worker: &WorkerRef) -> Result<WorkerState, PortError> {
        let path = self.path(&format!("/executions/{}", worker.execution));
        Ok(match self.arm.get_optional(&path).await? {
            Some(execution) => state_of(&execution),
            None => WorkerState::Missing,
        })
    }

    async fn stop(&self, worker: &WorkerRef) -> Result<(), PortError> {
        let path = self.path(&format!("/executions/{}/stop", worker.execution));
        match self.arm.post(&path, &json!({})).await {
            Ok(_) | Err(super::arm::ArmError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn stop_started_for(
        &self,
        run: &RunId,
        message_id: &str,
    ) -> Result<Vec<WorkerRef>, PortError> {
        let mut stopped = Vec::new();
        for (worker, state) in self.of_message(run, message_id).await? {
            if state == WorkerState::Running {
                self.stop(&worker).await?;
                tracing::info!(execution = %worker.execution, "stopped a build worker of a cancelled run");
                stopped.push(worker);
            }
        }
        Ok(stopped)
    }
}

/// The order in an execution's worker container environment, if it has one.
fn order_of(execution: &Value) -> Option<BuildOrder> {
    let containers = execution["properties"]["template"]["containers"].as_array()?;
    containers
        .iter()
        .filter_map(|c| c["env"].as_array())
        .flatten()
        .find(|e| e["name"] == ORDER_VAR)
        .and_then(|e| e["value"].as_str())
        .and_then(|v| serde_json::from_str(v).ok())
}

fn time_of(execution: &Value, field: &str) -> Option<DateTime<Utc>> {
    execution["properties"][field]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The execution's state, from its documented statuses (Running, Processing,
/// Stopped, Degraded, Failed, Unknown, Succeeded).
fn state_of(execution: &Value) -> WorkerState {
    let status = execution["properties"]["status"]
        .as_str()
        .unwrap_or("Unknown");
    let ended_at = time_of(execution, "endTime");
    match status {
        "Running" | "Processing" | "Unknown" => WorkerState::Running,
        "Succeeded" => WorkerState::Succeeded { ended_at },
        other => WorkerState::Ended {
            status: other.to_string(),
            ended_at,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_maps_to_a_state() {
        let at = |status: &str| {
            state_of(
                &json!({ "properties": { "status": status, "endTime": "2023-02-13T20:47:30+00:00" } }),
            )
        };
        for running in ["Running", "Processing", "Unknown"] {
            assert_eq!(at(running), WorkerState::Running, "{running}");
        }
        assert!(matches!(
            at("Succeeded"),
            WorkerState::Succeeded { ended_at: Some(_) }
        ));
        for ended in ["Stopped", "Degraded", "Failed"] {
            assert!(
                matches!(at(ended), WorkerState::Ended { ref status, .. } if status == ended),
                "{ended}"
            );
        }
    }
}
