//! The image checked against its declaration, on one machine, as the issue
//! asks: the example image declares a stand-in set (`[declare]` in its
//! `image.toml`: the Windows image's IIS, French language pack, fresh
//! Defender signatures, firewall profiles and services), its build writes
//! a stand-in system holding them (`scripts/provision.sh`), and after the
//! smoke test the local test environment runs its shell checker
//! (`scripts/check-declaration.sh`) with the declaration in its
//! environment. Real packer builds each image; the factory reads the
//! checker's output into one result per declared check.
//!
//! - One item missing from the image (`standin_omit`, a packer variable of
//!   the example, leaves a service out of the stand-in system): the run
//!   fails naming the check, what it expected and what it found; the run
//!   keeps the record and its page lists every check.
//! - Nothing missing: the run passes its test, its approver sees the checks
//!   (a fact in the request and a block on the page), and the release
//!   notes list them.
//! - A PowerShell checker cannot run on this machine: the run fails saying
//!   so, rather than passing unchecked.

mod common;

use std::path::Path;

use common::{Factory, Options, copy_example};
use image_factory::domain::run::{RunStatus, Stage, StageStatus};

/// Every check the example declares, in the declaration's order.
const DECLARED: [&str; 10] = [
    "feature:Web-Server",
    "language-pack:fr-FR",
    "defender:antivirus-enabled",
    "defender:signature-age-hours",
    "firewall:Domain",
    "firewall:Private",
    "firewall:Public",
    "service:W3SVC",
    "service:WinDefend",
    "service:mpssvc",
];

/// Adds `line` to image `name`'s `[packer.variables]`.
fn add_variable(images: &Path, name: &str, line: &str) {
    let toml = images.join(name).join("image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let anchor = format!("image_name = \"{name}\"");
    assert!(text.contains(&anchor), "{text}");
    std::fs::write(&toml, text.replace(&anchor, &format!("{anchor}\n{line}"))).unwrap();
}

/// Replaces `from` with `to` in image `name`'s `image.toml`.
fn edit(images: &Path, name: &str, from: &str, to: &str) {
    let toml = images.join(name).join("image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&toml, text.replace(from, to)).unwrap();
}

async fn page(factory: &Factory, url: &str) -> String {
    let response = factory.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_declaration_fails_a_run_missing_one_item_and_passes_a_complete_one_to_its_release_notes()
 {
    let images = tempfile::TempDir::new().unwrap();
    for name in ["complete", "missing", "powershell"] {
        copy_example(images.path(), name);
    }
    add_variable(images.path(), "missing", "standin_omit = \"service:W3SVC\"");
    edit(
        images.path(),
        "powershell",
        "checker = \"scripts/check-declaration.sh\"\n",
        "",
    );
    let factory = Factory::start_with(Options::with_images(images.path())).await;
    let commit = "d1d2d3d4e5f60718293a4b5c6d7e8f9012345678";
    let response = factory
        .push(
            commit,
            &[
                "images/complete/image.toml",
                "images/missing/image.toml",
                "images/powershell/image.toml",
            ],
        )
        .await;
    assert_eq!(response.status(), 202);

    // One item missing: the run fails on it, and keeps every result.
    let missing = factory
        .wait_status(&format!("push-missing-{commit}"), RunStatus::Failed)
        .await;
    assert_eq!(missing.stage(Stage::Test).status, StageStatus::Failed);
    let failure = missing.failure.clone().expect("a failure");
    assert_eq!(failure.stage, Some(Stage::Test));
    assert_eq!(
        failure.reason,
        "declaration checks failed (scripts/check-declaration.sh on this machine): 9 of 10 declared checks passed; failed: service:W3SVC: expected Running, found not installed"
    );
    assert_eq!(
        failure.diagnosis.map(|d| d.kind).as_deref(),
        Some("image-declaration")
    );
    let record = missing.declaration.as_deref().expect("the checks recorded");
    let names: Vec<&str> = record.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, DECLARED);
    let failed: Vec<&str> = record.failed().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["service:W3SVC"]);
    assert!(
        missing.checks[0].contains("smoke test passed"),
        "the smoke test ran first and passed: {:?}",
        missing.checks
    );
    assert!(missing.approval.is_none(), "nobody is asked to approve it");
    let run_page = page(
        &factory,
        &format!("{}/api/dashboard/runs/{}", factory.url, missing.id),
    )
    .await;
    assert!(
        run_page.contains("<h2>Declared contents</h2>"),
        "{run_page}"
    );
    assert!(
        run_page.contains(
            "<tr><td>service:W3SVC</td><td>Running</td><td>not installed</td><td><strong>FAILED</strong></td></tr>"
        ),
        "{run_page}"
    );
    assert!(run_page.contains(
        "<tr><td>service:WinDefend</td><td>Running</td><td>Running</td><td>passed</td></tr>"
    ));

    // A PowerShell checker runs only on the Azure test VM.
    let powershell = factory
        .wait_status(&format!("push-powershell-{commit}"), RunStatus::Failed)
        .await;
    let reason = powershell.failure.expect("a failure").reason;
    assert!(
        reason.starts_with("[declare] checker scripts/Test-ImageDeclaration.ps1 is a PowerShell script: it runs on the Azure test VM through Run Command"),
        "{reason}"
    );
    assert!(powershell.declaration.is_none(), "nothing was checked");

    // Nothing missing: every check passes, and the approver sees them.
    let id = format!("push-complete-{commit}");
    let complete = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let record = complete
        .declaration
        .as_deref()
        .expect("the checks recorded");
    assert!(record.passed(), "{}", record.summary());
    assert_eq!(record.checks.len(), DECLARED.len());
    assert_eq!(
        record.checker,
        "scripts/check-declaration.sh on this machine"
    );
    let age = record
        .checks
        .iter()
        .find(|c| c.name == "defender:signature-age-hours")
        .expect("the Defender check");
    assert_eq!(age.expected, "<= 24");
    assert!(
        complete
            .stage(Stage::Test)
            .summary
            .as_deref()
            .is_some_and(|s| s.ends_with("; 10 of 10 declared checks passed")),
        "{:?}",
        complete.stage(Stage::Test).summary
    );
    let link = factory.approval_link(&id, "platform-lead");
    let approval = page(&factory, &link).await;
    assert!(
        approval.contains("<dt>Declaration</dt><dd>10 of 10 declared checks passed</dd>"),
        "{approval}"
    );
    assert!(approval.contains("<h2>Declared contents</h2>"));
    assert!(approval.contains(
        "<tr><td>feature:Web-Server</td><td>Installed</td><td>Installed</td><td>passed</td></tr>"
    ));
    // The notice in the outbox (the Teams card and the email) has the fact.
    let note = common::outbox_notice(factory.data.path(), &id, "platform-lead");
    assert!(
        note["email"]["text"]
            .as_str()
            .unwrap()
            .contains("Declaration: 10 of 10 declared checks passed\n"),
        "{note}"
    );
    let facts = note["teams"]["attachments"][0]["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "FactSet")
        .expect("the card's facts")["facts"]
        .clone();
    assert!(
        facts.as_array().unwrap().iter().any(|f| f["title"]
            == "Declaration"
            && f["value"] == "10 of 10 declared checks passed"),
        "{facts}"
    );

    let decided = factory.decide(&link, "approve").await;
    assert_eq!(decided.status(), 200);
    let released = factory.wait_status(&id, RunStatus::Released).await;
    let location = released.release.clone().expect("released").location;
    let notes = std::fs::read_to_string(
        Path::new(&location)
            .parent()
            .expect("the release's folder")
            .join("release-notes.md"),
    )
    .unwrap();
    assert!(
        notes.contains(
            "## Declared contents\n\n10 of 10 declared checks passed, checked by scripts/check-declaration.sh on this machine."
        ),
        "{notes}"
    );
    for check in DECLARED {
        assert!(
            notes.contains(&format!("| {check} |")),
            "the notes list {check}: {notes}"
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&location).unwrap()).unwrap();
    assert_eq!(
        metadata["notes"]["declaration"]["checks"]
            .as_array()
            .map(Vec::len),
        Some(DECLARED.len())
    );
    let run_page = page(
        &factory,
        &format!("{}/api/dashboard/runs/{id}", factory.url),
    )
    .await;
    assert!(
        run_page.contains("<p>Declared contents:</p>"),
        "the release notes on the run page list them"
    );
    factory.stop().await;
}
