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
        .id
        .to_string();

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

    // A run that is not released has no notes: said, with a failing exit.
    let notes = cli(&factory, &["runs", "notes", &id]).await;
    assert!(!notes.status.success());
    let said = String::from_utf8_lossy(&notes.stderr);
    assert!(
        said.contains(&format!(
            "run {id} is waiting-for-approval: only a released run has release notes"
        )),
        "{said}"
    );
    assert!(notes.stdout.is_empty());
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
        .id
        .to_string();
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
        .id
        .to_string();
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

#[tokio::test(flavor = "multi_thread")]
async fn runs_exits_quietly_when_its_reader_has_gone() {
    let factory = Factory::start().await;
    // `image-factory runs | head`, with head already gone: the read end is
    // closed before the command writes a byte.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // (`output` would replace stdout with a pipe of its own.)
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["runs", "--url", &factory.url])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_links_prints_each_pending_approvers_link_from_the_outbox() {
    let factory = Factory::start().await;
    let id = factory
        .push_and_wait(
            "5e1f0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id
        .to_string();
    let link = factory.approval_link(&id, "platform-lead");

    let out = cli(&factory, &["approvals", "links", &id, "--wait", "30"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), format!("{link}\n"));
    let out = cli(
        &factory,
        &["approvals", "links", &id, "--as", "platform-lead", "--json"],
    )
    .await;
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(links[0]["approver"], "platform-lead");
    assert_eq!(links[0]["url"], link.as_str());
    let out = cli(
        &factory,
        &["approvals", "links", &id, "--as", "someone-else"],
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an approver"));

    factory.decide(&link, "approve").await;
    factory.wait_status(&id, RunStatus::Released).await;
    let out = cli(&factory, &["approvals", "links", &id]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("released"));
    factory.stop().await;
}
