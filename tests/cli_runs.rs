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
    // The stage it is at, and whom it waits on.
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains(" approve ") && row.ends_with("waiting on platform-lead"),
        "{table}"
    );

    let shown = cli(&factory, &["runs", "show", &id, "--json"]).await;
    let run: Run = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(run.status, RunStatus::WaitingForApproval);
    let text = stdout(&cli(&factory, &["runs", "show", &id]).await);
    assert!(
        text.contains("build") && text.contains("packer build produced"),
        "{text}"
    );

    // The build log reads as time, step and message; --raw is packer's own.
    let log = stdout(&cli(&factory, &["runs", "logs", &id]).await);
    let raw = stdout(&cli(&factory, &["runs", "logs", &id, "--raw"]).await);
    assert!(
        raw.contains(",ui,say,") && raw.contains(",artifact,0,"),
        "the raw build log: {raw}"
    );
    assert!(
        !log.contains(",ui,") && !log.contains("%!(PACKER_COMMA)"),
        "{log}"
    );
    let step = log
        .lines()
        .find(|l| l.contains("Running local shell script"))
        .unwrap_or_else(|| panic!("no step in the log: {log}"));
    let (time, rest) = step.split_once("  ").unwrap();
    assert!(
        chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").is_ok(),
        "a line starts with its time: {step}"
    );
    assert!(
        rest.trim_start().starts_with("golden.null.golden"),
        "then its step: {step}"
    );
    assert!(!log.contains('\u{1b}'), "no colour into a pipe: {log:?}");
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

/// `image-factory ARGS` on a terminal (a pseudo-terminal made by util-linux's
/// `script`), with `env` set: what the terminal showed.
async fn on_terminal(factory: &Factory, args: &[&str], env: &[(&str, &str)]) -> String {
    let binary = env!("CARGO_BIN_EXE_image-factory");
    let line = std::iter::once(binary)
        .chain(args.iter().copied())
        .chain(["--url", &factory.url])
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("IMAGE_FACTORY_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env_remove("NO_COLOR");
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().await.expect("run script (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_is_coloured_on_a_terminal_only_and_never_with_no_color() {
    let factory = Factory::start().await;
    let id = factory
        .push_and_wait(
            "7c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id
        .to_string();
    let coloured = on_terminal(&factory, &["runs", "logs", &id], &[]).await;
    assert!(
        coloured.contains("\x1b[1mRunning local shell script"),
        "a step is bold on a terminal: {coloured:?}"
    );
    for value in ["1", "true", "0"] {
        let plain = on_terminal(&factory, &["runs", "logs", &id], &[("NO_COLOR", value)]).await;
        assert!(plain.contains("Running local shell script"), "{plain:?}");
        assert!(!plain.contains('\x1b'), "NO_COLOR={value}: {plain:?}");
    }
    let empty = on_terminal(&factory, &["runs", "logs", &id], &[("NO_COLOR", "")]).await;
    assert!(
        empty.contains('\x1b'),
        "an empty NO_COLOR is unset: {empty:?}"
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_says_when_a_run_was_skipped_and_since_which_run_the_image_is_unchanged() {
    let factory = Factory::start().await;
    let released = factory
        .push_and_wait(
            "8c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await;
    factory
        .decide(
            &factory.approval_link(&released.id, "platform-lead"),
            "approve",
        )
        .await;
    factory.wait_status(&released.id, RunStatus::Released).await;

    let out = cli(
        &factory,
        &["trigger", "--image", "example", "--reason", "again"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = stdout(&out);
    assert!(
        said.starts_with(&format!("skipped: unchanged since run {}: ", released.id))
            && said.contains(&format!("identical to version {}", released.version))
            && said.contains("--force builds anyway"),
        "{said}"
    );
    let json = cli(
        &factory,
        &[
            "trigger", "--image", "example", "--reason", "again", "--json",
        ],
    )
    .await;
    let answer: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(answer["status"], "skipped");
    assert!(
        answer["skipped"]
            .as_str()
            .unwrap()
            .starts_with("unchanged since run")
    );

    let forced = cli(
        &factory,
        &[
            "trigger", "--image", "example", "--reason", "rebuild", "--force",
        ],
    )
    .await;
    let said = stdout(&forced);
    assert!(said.starts_with("started run oob-example-"), "{said}");
    factory.stop().await;
}

/// The field names in `value` that are not camelCase, by their path. The
/// members of a map keyed by data (an artifact's tags, the input files by
/// path, the packer variables by name) are values, not field names, and
/// what a notification sent (its `payload`: a Teams card, an email) is in
/// its channel's own format.
fn not_camel_case(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    const NOT_OURS: [&str; 4] = ["tags", "files", "variables", "payload"];
    match value {
        serde_json::Value::Object(map) => {
            for (key, member) in map {
                let camel = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && key.chars().all(|c| c.is_ascii_alphanumeric());
                if !camel {
                    found.push(format!("{path}.{key}"));
                }
                if !NOT_OURS.contains(&key.as_str()) {
                    not_camel_case(member, &format!("{path}.{key}"), found);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                not_camel_case(item, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_json_answer_names_its_fields_in_camel_case_as_the_api_does() {
    let factory = Factory::start().await;
    let released = factory
        .push_and_wait(
            "9c0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
            RunStatus::WaitingForApproval,
        )
        .await
        .id
        .to_string();
    let links = cli(&factory, &["approvals", "links", &released, "--json"]).await;
    let approved = cli(
        &factory,
        &["approve", &released, "--as", "platform-lead", "--json"],
    )
    .await;
    factory.wait_status(&released, RunStatus::Released).await;
    // A forced out-of-band run, to cancel.
    let forced = cli(
        &factory,
        &[
            "trigger", "--image", "example", "--reason", "x", "--force", "--json",
        ],
    )
    .await;
    let started: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    let cancelled = started["runId"].as_str().unwrap().to_string();
    let mut answers = vec![
        ("approvals links".to_string(), links),
        ("approve".to_string(), approved),
        ("trigger --force".to_string(), forced),
    ];
    for args in [
        vec!["runs", "--json"],
        vec!["runs", "show", &released, "--json"],
        vec!["runs", "notes", &released, "--json"],
        vec!["runs", "wait", &released, "--json"],
        vec!["fleet", "--json"],
        vec!["trigger", "--image", "example", "--reason", "x", "--json"],
        vec!["runs", "cancel", &cancelled, "--reason", "x", "--json"],
    ] {
        let out = cli(&factory, &args).await;
        answers.push((args[..2].join(" "), out));
    }
    for (command, out) in answers {
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{command} --json is not JSON: {e}: {}", stdout(&out)));
        let mut found = Vec::new();
        not_camel_case(&value, "", &mut found);
        assert!(found.is_empty(), "{command} --json names fields {found:?}");
    }
    factory.stop().await;
}
