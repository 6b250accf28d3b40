//! Traces in Application Insights: with the connection string set, the
//! stages of a run are exported as one trace (its id derived from the run id)
//! to the ingestion endpoint the string names — here an HTTPS endpoint on
//! loopback that, like a component with local authentication disabled,
//! refuses every request without the bearer token of the factory's identity
//! (tests/common/ingestion.rs) — signed in with the real managed identity
//! credential against the managed identity endpoint stand-in
//! (tests/common/identity.rs); and no secret is in what is sent. What is
//! sent is checked against the published ingestion (`track`) specification.

mod common;

use std::sync::Arc;

use common::identity::{self, IdentityEndpoint};
use common::ingestion::{self, Ingestion};
use common::{Factory, GITHUB_SECRET, OPERATOR_TOKEN};
use image_factory::azure::identity::Identity;
use image_factory::azure::telemetry::{Export, Telemetry};
use image_factory::domain::run::RunStatus;
use image_factory::trace::run_trace_id;

#[test]
fn with_the_connection_string_a_runs_stages_are_exported_as_one_trace_with_the_identitys_token() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity_endpoint = IdentityEndpoint::serve_for_process(&runtime);
    runtime.block_on(async {
        let monitor_token = identity::token_for("https://monitor.azure.com");
        let ingestion = Ingestion::accepting(&monitor_token);
        let started = ingestion::start(ingestion.clone()).await;
        let credential = Identity::Managed {
            client_id: Some(identity::CLIENT_ID.to_string()),
        }
        .credential()
        .expect("managed identity credential");
        let telemetry = Arc::new(
            Telemetry::install(
                true,
                Some(Export {
                    connection_string: started.connection_string.clone(),
                    credential,
                    http: started.client.clone(),
                }),
            )
            .expect("telemetry"),
        );

        let factory = Factory::start().await;
        let run = factory
            .push_and_wait(
                "ab0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
                RunStatus::WaitingForApproval,
            )
            .await;
        let flushing = Arc::clone(&telemetry);
        tokio::task::spawn_blocking(move || flushing.flush())
            .await
            .expect("flush");

        // Every request carried the identity's token to the Entra ID endpoint.
        let refused = ingestion.refused.lock().await.clone();
        assert!(refused.is_empty(), "refused: {refused:?}");
        let items = ingestion.items().await;
        assert!(!items.is_empty(), "nothing reached the ingestion endpoint");
        let asked = identity_endpoint.requests();
        assert!(
            asked
                .iter()
                .any(|r| r.resource == "https://monitor.azure.com"
                    && r.client_id.as_deref() == Some(identity::CLIENT_ID)),
            "{asked:?}"
        );

        let trace = run_trace_id(&run.id).to_string();
        let stages: Vec<String> = items
            .iter()
            .filter(|i| i["tags"]["ai.operation.id"] == trace.as_str())
            .filter_map(|i| {
                i["data"]["baseData"]["properties"]["stage"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        for stage in ["validate", "build", "test", "approve"] {
            assert!(
                stages.iter().any(|s| s == stage),
                "stage {stage} is not in the run's trace: {stages:?}"
            );
        }
        let sent = ingestion.accepted.lock().await.join("\n");
        for secret in [GITHUB_SECRET, OPERATOR_TOKEN, monitor_token.as_str()] {
            assert!(!sent.contains(secret), "a secret was exported");
        }
        // Every export and every answer is what the ingestion spec defines.
        ingestion.assert_valid();
        factory.stop().await;
    });
}
