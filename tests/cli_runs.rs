//! The operator's commands against a running factory: list and show runs,
//! read a build log, decide, and wait for a run with exit codes scripts can
//! rely on.

mod common;

use std::process::Output;

use common::{Factory, OPERATOR_TOKEN};
use image_factory::domain::run::{Run, RunStatus};

async fn cli(factory: &Factory, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"));
    command
        .args(args)
        .args(["--url", &factory.url])
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("IMAGE_FACTORY_DATA", factory.data.path());
    command.output().await.expect("run image-factory")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_listed_shown_and_their_logs_printed_as_text_or_json() {
    let factory = Factory::start().await;
    let id = factory
        .push_and_wait(
            "1c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id;

    let list = cli(&factory, &["runs", "--json"]).await;
    assert!(list.status.success());
    let runs: Vec<Run> = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    let table = stdout(
        &cli(
            &factory,
            &["runs", "list", "--status", "waiting-for-approval"],
        )
        .await,
    );
    assert!(table.starts_with("RUN") && table.contains(&id), "{table}");

    let shown = cli(&factory, &["runs", "show", &id, "--json"]).await;
    let run: Run = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(run.status, RunStatus::WaitingForApproval);
    let text = stdout(&cli(&factory, &["runs", "show", &id]).await);
    assert!(
        text.contains("build") && text.contains("packer build produced"),
        "{text}"
    );

    let log = stdout(&cli(&factory, &["runs", "logs", &id]).await);
    assert!(
        log.contains(",ui,say,") && log.contains("artifact"),
        "the build log: {log}"
    );
    let followed = stdout(&cli(&factory, &["runs", "logs", &id, "--follow"]).await);
    assert_eq!(
        followed, log,
        "following a finished build prints the whole log and stops"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_with_a_code_that_says_how_the_run_ended() {
    let factory = Factory::start().await;
    let first = factory
        .push_and_wait(
            "3c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id;
    let refused = cli(&factory, &["reject", &first, "--as", "mallory"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an approver"));
    cli(&factory, &["reject", &first, "--as", "platform-lead"]).await;
    let rejected = cli(&factory, &["runs", "wait", &first]).await;
    assert_eq!(rejected.status.code(), Some(11));

    let id = factory
        .push_and_wait(
            "2c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id;
    let still = cli(&factory, &["runs", "wait", &id, "--timeout", "1"]).await;
    assert_eq!(still.status.code(), Some(20), "still waiting for approval");
    let approved = cli(
        &factory,
        &["approve", &id, "--as", "platform-lead", "--comment", "ok"],
    )
    .await;
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let done = cli(
        &factory,
        &["runs", "wait", &id, "--json", "--timeout", "60"],
    )
    .await;
    assert_eq!(done.status.code(), Some(0));
    let run: Run = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(run.status, RunStatus::Released);

    let unknown = cli(&factory, &["runs", "wait", "no-such-run"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    factory.stop().await;
}
