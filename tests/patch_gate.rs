//! The patch gate on one machine, as the issue asks: the example image
//! (null builder) writes stand-in evidence from its variables, the build
//! stage records it, and the test stage judges it against Microsoft's own
//! CVRF documents (a folder of the real files, `msrc/cvrf/` of the
//! third-party folder) before the smoke test.
//!
//! - A Patch Tuesday: a release carrying November 2025's update, then
//!   December's document is published: the fleet view shows the older
//!   release exposed to December's CVEs; a build still at November's level
//!   fails naming the missing CVEs; a build at December's level is released,
//!   its notes list the CVEs newly fixed, linked to the Security Update
//!   Guide, its `image-version.json` carries the OS build and the KB, and
//!   `patch status --image` judges it through the factory.
//! - A pending reboot fails, no evidence fails, the cumulative update
//!   missing from `Get-HotFix` is a warning shown to the approver.
//! - Microsoft's API unreachable: the run waits, the sweeper tries again,
//!   and after `unverified_after_hours` it reaches its approver marked
//!   "patch level not verified".
//!
//! Expected CVEs come from the documents themselves, through the patch
//! rules (`tests/patch_rules.rs` checks those against the facts measured in
//! the documents): nothing here is retyped by hand.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{Factory, Options, copy_example};
use image_factory::domain::cvrf::{CvrfDocument, Severity};
use image_factory::domain::evidence::InstallationType;
use image_factory::domain::fleet::{FleetPage, PatchLevel};
use image_factory::domain::patch::{Target, Warning, exposure, newly_fixed};
use image_factory::domain::patch_gate::PatchStatus;
use image_factory::domain::run::{Run, RunStatus, Stage, StageStatus};
use image_factory::web::msrc::MsrcSource;

const PRODUCT: &str = "Windows Server 2022";
/// November 2025's cumulative update for Windows Server 2022, and its build.
const NOVEMBER: (&str, &str) = ("KB5068787", "10.0.20348.4405");
/// December 2025's.
const DECEMBER: (&str, &str) = ("KB5071547", "10.0.20348.4529");
/// September 2025's.
const SEPTEMBER: (&str, &str) = ("KB5065432", "10.0.20348.4171");

/// A month of the third-party folder, parsed.
fn month(id: &str) -> CvrfDocument {
    let path = common::third_party(&format!("msrc/cvrf/cvrfDocument-{id}.xml"));
    CvrfDocument::parse(&std::fs::read_to_string(&path).expect("the CVRF document"))
        .expect("a CVRF document")
}

/// A folder of CVRF documents as `IMAGE_FACTORY_MSRC_URL` names one: links
/// to the third-party files of `months`; [`publish`] adds one.
fn cvrf_folder(months: &[&str]) -> tempfile::TempDir {
    let folder = tempfile::TempDir::new().unwrap();
    for id in months {
        publish(folder.path(), id);
    }
    folder
}

/// Microsoft publishes month `id`: its document appears in the folder.
fn publish(folder: &Path, id: &str) {
    let name = format!("cvrfDocument-{id}.xml");
    std::os::unix::fs::symlink(
        common::third_party(&format!("msrc/cvrf/{name}")),
        folder.join(name),
    )
    .expect("link the document");
}

/// The stand-in a build of image `name` claims.
struct StandIn<'a> {
    build: &'a str,
    hotfixes: &'a str,
    reboot_pending: bool,
}

/// Sets image `name`'s `image.toml` (in `images`): the `[patch]` gate, and
/// the stand-in evidence its build writes (`None`: none).
fn configure(images: &Path, name: &str, stand_in: Option<StandIn<'_>>) {
    let toml = images.join(name).join("image.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let base = text.split("\n# -- patch --\n").next().unwrap().to_string();
    let base = base
        .lines()
        .filter(|l| !l.starts_with("evidence_"))
        .collect::<Vec<_>>()
        .join("\n");
    let anchor = format!("image_name = \"{name}\"");
    let variables = match stand_in {
        Some(s) => format!(
            "{anchor}\nevidence_os_build = \"{}\"\nevidence_hotfixes = \"{}\"\nevidence_reboot_pending = \"{}\"",
            s.build, s.hotfixes, s.reboot_pending
        ),
        None => anchor.clone(),
    };
    let text = format!(
        "{}\n# -- patch --\n[patch]\nproduct = \"{PRODUCT}\"\nunverified_after_hours = 1\ngrace_days = 3\n",
        base.replace(&anchor, &variables)
    );
    std::fs::write(&toml, text).unwrap();
}

/// A fresh commit id for the `n`th push.
fn commit(n: u32) -> String {
    format!("{n:040x}")
}

async fn push(factory: &Factory, image: &str, n: u32) -> String {
    let commit = commit(n);
    let response = factory
        .push(&commit, &[&format!("images/{image}/image.toml")])
        .await;
    assert_eq!(response.status(), 202);
    format!("push-{image}-{commit}")
}

async fn approve(factory: &Factory, id: &str) -> Run {
    factory.wait_status(id, RunStatus::WaitingForApproval).await;
    let decided = factory
        .decide(&factory.approval_link(id, "platform-lead"), "approve")
        .await;
    assert_eq!(decided.status(), 200);
    factory.wait_status(id, RunStatus::Released).await
}

async fn fleet(factory: &Factory) -> FleetPage {
    factory.get_json("/api/runs?view=fleet").await
}

/// `image-factory patch status` against the factory and the folder.
async fn patch_status(factory: &Factory, msrc: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch", "status", "--url", &factory.url])
        .args(args)
        .env("IMAGE_FACTORY_MSRC_URL", msrc)
        .env("IMAGE_FACTORY_DATA", factory.data.path().join("cli"))
        .env("IMAGE_FACTORY_PACKER", "none")
        .output()
        .await
        .expect("run image-factory");
    (
        out.status.code().expect("an exit status"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn build(text: &str) -> image_factory::domain::cvrf::WindowsBuild {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_tuesday_fails_a_build_that_misses_the_months_fixes_and_releases_one_that_carries_them()
 {
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "web");
    let msrc = cvrf_folder(&["2025-Nov"]);
    let factory = Factory::start_with(Options {
        msrc: MsrcSource::Folder(msrc.path().to_path_buf()),
        ..Options::with_images(images.path())
    })
    .await;
    let (november, december) = (month("2025-Nov"), month("2025-Dec"));

    // November: the image carries November's update, and is released.
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: NOVEMBER.1,
            hotfixes: NOVEMBER.0,
            reboot_pending: false,
        }),
    );
    let first = approve(&factory, &push(&factory, "web", 1).await).await;
    let record = first
        .build
        .as_ref()
        .and_then(|b| b.evidence.as_deref())
        .expect("evidence recorded");
    let evidence = record.evidence().expect("collected");
    assert!(evidence.stand_in);
    assert_eq!(evidence.os.build, build(NOVEMBER.1));
    assert_eq!(
        evidence.image.as_ref().and_then(|i| i.run_id.as_deref()),
        Some(first.id.as_str()),
        "the factory passed factory_run_id"
    );
    let location = record.location().expect("kept");
    let bytes = std::fs::read(location).expect("the evidence file is kept in the run's folder");
    assert!(location.starts_with(factory.app.settings.run_dir(&first.id).to_str().unwrap()));
    let image_factory::domain::evidence::EvidenceRecord::Collected { sha256, .. } = record else {
        panic!("{record:?}")
    };
    assert_eq!(*sha256, image_factory::domain::sha256_hex(&bytes));
    let gate = first.patch.as_deref().expect("the gate's record");
    assert_eq!(gate.status, PatchStatus::Passed);
    let verdict = gate.verdict.as_ref().expect("a verdict");
    assert_eq!(verdict.exposure.month, november.id);
    assert_eq!(
        verdict
            .exposure
            .cumulative_update
            .as_ref()
            .map(|u| u.kb.as_str()),
        Some(NOVEMBER.0)
    );
    assert!(verdict.warnings.contains(&Warning::StandIn));
    assert!(
        gate.newly_fixed.is_none(),
        "the first release has nothing to compare with"
    );

    // Patch Tuesday: Microsoft publishes December. The older release is
    // exposed, and the fleet view says to what.
    publish(msrc.path(), "2025-Dec");
    let target = Target::new(build(NOVEMBER.1), InstallationType::Server).unwrap();
    let exposed = exposure(&december, &target).unwrap();
    assert!(!exposed.missing.is_empty());
    let page = fleet(&factory).await;
    let row = &page.images[0];
    let PatchLevel::Evidence {
        run_id,
        month: judged,
        exposed_to,
        by_severity,
        since,
        ..
    } = &row.patch_level
    else {
        panic!("{row:?}")
    };
    assert_eq!((run_id.as_str(), *judged), (first.id.as_str(), december.id));
    assert_eq!(*exposed_to, exposed.missing.len());
    assert_eq!(*by_severity, exposed.missing_by_severity);
    assert_eq!(*since, december.initial_release);
    let described = row.patch_level.describe().unwrap();
    assert!(
        described.starts_with(&format!(
            "exposed to {} CVEs, {} Critical, since {}",
            exposed.missing.len(),
            exposed.missing_by_severity.critical,
            december.initial_release.format("%Y-%m-%d")
        )),
        "{described}"
    );
    let html = factory
        .http
        .get(format!("{}/api/dashboard/fleet", factory.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&described),
        "the fleet page shows the exposure"
    );
    // The auditor's command agrees, through the factory.
    let (code, out, err) = patch_status(&factory, msrc.path(), &["--image", "web", "--json"]).await;
    assert_eq!(code, 1, "{out}{err}");
    let judged: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(judged["month"], "2025-Dec");
    assert_eq!(
        judged["missing"].as_array().unwrap().len(),
        exposed.missing.len()
    );
    let (code, out, _) = patch_status(
        &factory,
        msrc.path(),
        &["--image", "web", "--month", "2025-Nov"],
    )
    .await;
    assert_eq!(code, 0, "{out}");

    // The month's update was skipped: the build is still at November's. The
    // run fails before its smoke test, naming each missing CVE, its
    // severity and the KB that fixes it.
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: NOVEMBER.1,
            hotfixes: NOVEMBER.0,
            reboot_pending: false,
        }),
    );
    // (the same stand-in as the release: a new file makes the inputs
    // differ, or the run would be skipped as identical to it)
    std::fs::write(
        images.path().join("web/scripts/note.txt"),
        "skipped update\n",
    )
    .unwrap();
    let skipped = factory
        .wait_status(&push(&factory, "web", 2).await, RunStatus::Failed)
        .await;
    let failure = skipped.failure.clone().unwrap();
    assert_eq!(failure.stage, Some(Stage::Test));
    assert!(
        failure
            .reason
            .starts_with("patch gate: build 10.0.20348.4405 misses"),
        "{}",
        failure.reason
    );
    for fix in exposed.missing.iter().take(20) {
        let named = format!("{} ({}, {})", fix.cve, fix.severity, fix.kb);
        assert!(
            failure.reason.contains(&named),
            "{named} in {}",
            failure.reason
        );
        assert_eq!(fix.kb, DECEMBER.0);
    }
    // December also lists CVEs fixed by October's update: a November build has them.
    for older in ["CVE-2025-64679", "CVE-2025-64680"] {
        assert!(!failure.reason.contains(older), "{older}");
    }
    assert!(skipped.checks.is_empty(), "no smoke test ran");
    let gate = skipped.patch.as_deref().unwrap();
    assert_eq!(
        gate.verdict.as_ref().unwrap().exposure.missing,
        exposed.missing
    );

    // The rebuild carries December's update: released, with what it fixes.
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: DECEMBER.1,
            hotfixes: &format!("{},{}", NOVEMBER.0, DECEMBER.0),
            reboot_pending: false,
        }),
    );
    let id = push(&factory, "web", 3).await;
    let waiting = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let fixed = newly_fixed(
        &[november.clone(), december.clone()],
        PRODUCT,
        build(NOVEMBER.1),
        build(DECEMBER.1),
    )
    .unwrap();
    assert!(!fixed.is_empty());
    let critical = fixed
        .iter()
        .filter(|f| f.severity == Severity::Critical)
        .count();
    let summary = format!(
        "fixes {} CVEs ({critical} Critical) since {}",
        fixed.len(),
        first.version
    );
    let page = factory
        .http
        .get(factory.approval_link(&id, "platform-lead"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [DECEMBER.1, DECEMBER.0, summary.as_str()] {
        assert!(
            page.contains(shown),
            "the approval page does not show {shown}"
        );
    }
    let outbox = common::outbox_notice(factory.data.path(), &id, "platform-lead");
    let card = outbox["teams"].to_string();
    let email = outbox["email"]["text"].as_str().unwrap();
    for shown in [DECEMBER.1, DECEMBER.0, summary.as_str()] {
        assert!(
            card.contains(shown) && email.contains(shown),
            "the card and the email show {shown}"
        );
    }
    assert_eq!(waiting.stage(Stage::Test).status, StageStatus::Succeeded);
    let released = approve(&factory, &id).await;
    let gate = released.patch.as_deref().unwrap();
    let newly = gate
        .newly_fixed
        .as_ref()
        .expect("newly fixed since the first release");
    assert_eq!(newly.cves, fixed);
    assert_eq!(newly.since_version, first.version.to_string());

    let release = released.release.clone().unwrap();
    assert_eq!(release.os_build.as_deref(), Some(DECEMBER.1));
    assert_eq!(release.cumulative_update.as_deref(), Some(DECEMBER.0));
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&release.location).unwrap()).unwrap();
    assert_eq!(published["osBuild"], DECEMBER.1);
    assert_eq!(published["cumulativeUpdate"], DECEMBER.0);
    let notes = std::fs::read_to_string(
        factory
            .app
            .settings
            .run_dir(&released.id)
            .join("release-notes.md"),
    )
    .unwrap();
    assert!(notes.contains("## Security updates"), "{notes}");
    assert!(
        notes.contains(&format!(
            "{} CVEs newly fixed since {}",
            fixed.len(),
            first.version
        )),
        "{notes}"
    );
    for fix in &fixed {
        let link = format!(
            "[{}](https://msrc.microsoft.com/update-guide/vulnerability/{})",
            fix.cve, fix.cve
        );
        assert!(notes.contains(&link), "{link} in the notes");
    }
    let headings: Vec<&str> = notes.lines().filter(|l| l.starts_with("### ")).collect();
    let severities: Vec<String> = Severity::MOST_SEVERE_FIRST
        .iter()
        .filter(|s| fixed.iter().any(|f| f.severity == **s))
        .map(|s| format!("### {s}"))
        .collect();
    assert_eq!(headings, severities, "by severity, most severe first");

    // The fleet view: the latest release carries every fix of December.
    let row = &fleet(&factory).await.images[0];
    assert!(
        matches!(&row.patch_level, PatchLevel::Evidence { exposed_to: 0, run_id, .. } if *run_id == released.id.as_str()),
        "{row:?}"
    );
    let (code, out, err) = patch_status(&factory, msrc.path(), &["--image", "web"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(DECEMBER.0), "{out}");
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_reboot_or_no_evidence_fails_the_run_and_a_cumulative_update_missing_from_the_hotfixes_is_a_warning()
 {
    let images = tempfile::TempDir::new().unwrap();
    for name in ["reboot", "none", "hotfix"] {
        copy_example(images.path(), name);
    }
    configure(
        images.path(),
        "reboot",
        Some(StandIn {
            build: DECEMBER.1,
            hotfixes: DECEMBER.0,
            reboot_pending: true,
        }),
    );
    configure(images.path(), "none", None);
    configure(
        images.path(),
        "hotfix",
        Some(StandIn {
            build: DECEMBER.1,
            hotfixes: "",
            reboot_pending: false,
        }),
    );
    let msrc = cvrf_folder(&["2025-Nov", "2025-Dec"]);
    let factory = Factory::start_with(Options {
        msrc: MsrcSource::Folder(msrc.path().to_path_buf()),
        ..Options::with_images(images.path())
    })
    .await;
    let c = commit(7);
    let response = factory
        .push(
            &c,
            &[
                "images/reboot/image.toml",
                "images/none/image.toml",
                "images/hotfix/image.toml",
            ],
        )
        .await;
    assert_eq!(response.status(), 202);

    let reboot = factory
        .wait_status(&format!("push-reboot-{c}"), RunStatus::Failed)
        .await;
    let reason = reboot.failure.unwrap().reason;
    assert!(
        reason
            .starts_with("patch gate: Windows was waiting for a reboot when the evidence was read"),
        "{reason}"
    );
    assert!(
        !reason.contains("misses"),
        "December's build misses nothing: {reason}"
    );

    let none = factory
        .wait_status(&format!("push-none-{c}"), RunStatus::Failed)
        .await;
    let reason = none.failure.clone().unwrap().reason;
    assert!(
        reason.starts_with("patch gate: no evidence: the build wrote no image-evidence.json"),
        "{reason}"
    );
    assert!(
        matches!(
            none.build.as_ref().and_then(|b| b.evidence.as_deref()),
            Some(image_factory::domain::evidence::EvidenceRecord::Missing { .. })
        ),
        "the run records that there is none"
    );
    assert_eq!(none.stage(Stage::Test).status, StageStatus::Failed);

    let id = format!("push-hotfix-{c}");
    let hotfix = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let verdict = hotfix
        .patch
        .as_deref()
        .and_then(|p| p.verdict.clone())
        .unwrap();
    assert!(verdict.compliant);
    let warning = Warning::CumulativeUpdateNotInHotfixes {
        kb: DECEMBER.0.into(),
    };
    assert!(
        verdict.warnings.contains(&warning),
        "{:?}",
        verdict.warnings
    );
    let page = factory
        .http
        .get(factory.approval_link(&id, "platform-lead"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("the OS build says the cumulative update KB5071547 is installed, but Get-HotFix does not list it"),
        "the approver sees the warning"
    );
    // The operators' page of the run shows the same patch facts.
    let run_page = factory
        .http
        .get(format!("{}/api/dashboard/runs/{id}", factory.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [
        "<h2>Patch level</h2>",
        DECEMBER.1,
        "Get-HotFix does not list it",
        "sha256:",
    ] {
        assert!(
            run_page.contains(shown),
            "the run page does not show {shown}"
        );
    }
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_microsofts_api_unreachable_the_run_waits_then_reaches_its_approver_marked_not_verified()
 {
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "web");
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: DECEMBER.1,
            hotfixes: DECEMBER.0,
            reboot_pending: false,
        }),
    );
    // A loopback port nothing listens on: every request is refused.
    let api = format!("http://127.0.0.1:{}", common::child::free_port());
    let offset = Arc::new(AtomicI64::new(0));
    let clock = Arc::clone(&offset);
    let factory = Factory::start_with(Options {
        msrc: MsrcSource::Api(api),
        tweak: Box::new(move |app| {
            app.clock = Arc::new(move || {
                chrono::Utc::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))
            });
        }),
        ..Options::with_images(images.path())
    })
    .await;
    let id = push(&factory, "web", 9).await;
    let waits = |tries: u32| move |run: &Run| matches!(run.patch.as_deref().map(|p| &p.status), Some(PatchStatus::Waiting { tries: t, .. }) if *t == tries);
    let first = factory
        .wait_for(&id, Duration::from_secs(240), waits(1))
        .await;
    assert_eq!(
        first.status,
        RunStatus::Running,
        "it waits; it does not pass"
    );
    assert_eq!(first.stage(Stage::Test).status, StageStatus::Pending);
    assert!(
        first.checks.is_empty(),
        "no smoke test before the gate decides"
    );
    let Some(PatchStatus::Waiting { error, .. }) = first.patch.as_deref().map(|p| &p.status) else {
        unreachable!()
    };
    assert!(error.contains("cannot be reached"), "{error}");

    // Eleven minutes on, the sweeper sends the stage again: still unreachable.
    offset.store(11 * 60, Ordering::SeqCst);
    factory.sweep().await;
    let second = factory
        .wait_for(&id, Duration::from_secs(60), waits(2))
        .await;
    assert_eq!(second.status, RunStatus::Running);

    // Past [patch] unverified_after_hours (1): on to the approver, marked.
    offset.store(75 * 60, Ordering::SeqCst);
    factory.sweep().await;
    let run = factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let gate = run.patch.as_deref().unwrap();
    assert!(
        matches!(gate.status, PatchStatus::NotVerified { since, .. } if Some(since) == first.patch.as_ref().map(|p| p.at))
    );
    assert!(
        !run.checks.is_empty(),
        "the smoke test ran after the gate let it through"
    );
    let page = factory
        .http
        .get(factory.approval_link(&id, "platform-lead"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("patch-alert") && page.contains("Patch level not verified"),
        "{page}"
    );
    let outbox = common::outbox_notice(factory.data.path(), &id, "platform-lead");
    let body = &outbox["teams"]["attachments"][0]["content"]["body"];
    assert_eq!(body[1]["color"], "Attention");
    assert!(
        body[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("Patch level not verified")
    );
    assert!(
        outbox["email"]["text"]
            .as_str()
            .unwrap()
            .contains("Patch level not verified")
    );
    factory.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_rule_judges_against_the_month_before_and_a_month_missing_from_the_folder_is_named()
 {
    let images = tempfile::TempDir::new().unwrap();
    copy_example(images.path(), "web");
    let msrc = cvrf_folder(&["2025-Sep"]);
    let (september, november, december) = (month("2025-Sep"), month("2025-Nov"), month("2025-Dec"));
    // The factory's clock, set to the days the story happens on.
    let offset = Arc::new(AtomicI64::new(0));
    let clock = Arc::clone(&offset);
    let set_clock = |at: chrono::DateTime<chrono::Utc>| {
        offset.store((at - chrono::Utc::now()).num_seconds(), Ordering::SeqCst);
    };
    set_clock(september.initial_release + chrono::Duration::days(20));
    let factory = Factory::start_with(Options {
        msrc: MsrcSource::Folder(msrc.path().to_path_buf()),
        tweak: Box::new(move |app| {
            app.clock = Arc::new(move || {
                chrono::Utc::now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))
            });
        }),
        ..Options::with_images(images.path())
    })
    .await;
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: SEPTEMBER.1,
            hotfixes: SEPTEMBER.0,
            reboot_pending: false,
        }),
    );
    let first = approve(&factory, &push(&factory, "web", 20).await).await;
    let judged = first
        .patch
        .as_deref()
        .and_then(|p| p.verdict.as_ref())
        .unwrap();
    assert_eq!(judged.exposure.month, september.id);

    // November and December are published (October's document is not in
    // the folder); a day after December's release, with three days of
    // grace, a build at November's level is judged against November.
    publish(msrc.path(), "2025-Nov");
    publish(msrc.path(), "2025-Dec");
    set_clock(december.initial_release + chrono::Duration::days(1));
    configure(
        images.path(),
        "web",
        Some(StandIn {
            build: NOVEMBER.1,
            hotfixes: NOVEMBER.0,
            reboot_pending: false,
        }),
    );
    let id = push(&factory, "web", 21).await;
    factory
        .wait_status(&id, RunStatus::WaitingForApproval)
        .await;
    let page = factory
        .http
        .get(factory.approval_link(&id, "platform-lead"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("judged against 2025-Nov: 2025-Dec was published")
            && page.contains("grace_days is 3"),
        "the approver sees which month and why"
    );
    let released = approve(&factory, &id).await;
    let gate = released.patch.as_deref().unwrap();
    assert_eq!(gate.status, PatchStatus::Passed);
    assert_eq!(gate.verdict.as_ref().unwrap().exposure.month, november.id);
    let newly = gate.newly_fixed.as_ref().unwrap();
    assert_eq!(
        newly
            .months
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        ["2025-Sep", "2025-Nov"]
    );
    assert_eq!(newly.unread.len(), 1);
    assert!(
        newly.unread[0].starts_with("2025-Oct: "),
        "{:?}",
        newly.unread
    );
    assert_eq!(
        newly.cves,
        newly_fixed(
            &[september, november],
            PRODUCT,
            build(SEPTEMBER.1),
            build(NOVEMBER.1)
        )
        .unwrap()
    );
    let notes = std::fs::read_to_string(
        factory
            .app
            .settings
            .run_dir(&released.id)
            .join("release-notes.md"),
    )
    .unwrap();
    assert!(
        notes.contains("Months not read (their CVEs may be missing above): 2025-Oct"),
        "{notes}"
    );
    factory.stop().await;
}

/// The `language` fenced blocks of `docs/patch-evidence.md`, in order.
fn doc_blocks(language: &str) -> Vec<String> {
    let page = std::fs::read_to_string(common::repo_root().join("docs/patch-evidence.md"))
        .expect("docs/patch-evidence.md");
    let fence = format!("```{language}\n");
    page.split(&fence)
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_docs_samples_of_the_evidence_and_the_gates_record_read_as_the_factory_reads_them() {
    use image_factory::domain::evidence::Evidence;
    use image_factory::domain::patch_gate::PatchRecord;
    let json = doc_blocks("json");
    let evidence = Evidence::parse(&json[0]).expect("the evidence sample");
    assert_eq!(evidence.os.build, build("10.0.20348.4773"));
    let record: PatchRecord = serde_json::from_str(&json[1]).expect("the gate's record sample");
    assert_eq!(record.status, PatchStatus::Passed);
    let newly = record.newly_fixed.expect("newly fixed");
    assert_eq!(newly.cves[0].kb, DECEMBER.0);
    // Its CVE is one December's document fixes with its update, at its build.
    let december = month("2025-Dec");
    let fixed = newly_fixed(&[december], PRODUCT, build(NOVEMBER.1), build(DECEMBER.1)).unwrap();
    assert!(fixed.contains(&newly.cves[0]), "{:?}", newly.cves[0]);
}
