//! Without the Application Insights connection string, the factory logs and
//! works, and exports nothing.

mod common;

use common::Factory;
use image_factory::azure::telemetry::Telemetry;
use image_factory::domain::run::RunStatus;

#[tokio::test(flavor = "multi_thread")]
async fn without_the_connection_string_nothing_is_exported_and_nothing_fails() {
    let telemetry = Telemetry::install(true, None).unwrap();
    let factory = Factory::start().await;
    let run = factory
        .push_and_wait(
            "ac0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    assert_eq!(run.status, RunStatus::WaitingForApproval);
    telemetry.flush();
    factory.stop().await;
}
