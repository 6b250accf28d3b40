//! `image-factory patch status` as auditors run it: the real binary as a
//! child process, judging evidence files against a stand-in of Microsoft's
//! Security Update Guide API that serves months the client has never seen
//! (real CVRF documents renamed to months still to come), and against a
//! folder of documents; its exit status (0 compliant, 1 fixes missing, 2 bad
//! input or data unreadable), its summary and its JSON.

mod common;

use std::path::Path;

use common::msrc::{Dialect, FakeMsrc, Month};
use serde_json::Value;
use tempfile::TempDir;

/// What one run printed, and how it ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `patch status` with `args`, `IMAGE_FACTORY_MSRC_URL` set to `msrc`
/// and its own data folder.
async fn patch_status(msrc: &str, data: &Path, args: &[&str]) -> Ran {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch", "status"])
        .args(args)
        .env("IMAGE_FACTORY_MSRC_URL", msrc)
        .env("IMAGE_FACTORY_DATA", data)
        .env("IMAGE_FACTORY_PACKER", "none")
        .output()
        .await
        .expect("run image-factory");
    Ran {
        code: out.status.code().expect("an exit status"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An evidence file of Windows Server 2022 (`installation`) at `build`
/// listing `hotfixes`, written in `dir`.
fn evidence(dir: &Path, name: &str, installation: &str, build: &str, hotfixes: &[&str]) -> String {
    let path = dir.join(name);
    let body = serde_json::json!({
        "schema": "image-factory.evidence/1",
        "collectedAt": "2031-03-12T03:12:09Z",
        "os": { "productName": "Windows Server 2022 Datacenter", "installationType": installation, "build": build },
        "rebootPending": false,
        "hotfixes": hotfixes,
        "updates": [{ "title": "Cumulative Update", "kb": hotfixes.first(), "resultCode": 2, "date": "2031-03-12T02:58:00Z" }],
    });
    std::fs::write(&path, serde_json::to_string_pretty(&body).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test]
async fn months_the_client_has_never_seen_are_judged_from_the_api() {
    // March and February 2031: January 2026's and December 2025's documents.
    let fake = FakeMsrc::start(
        vec![
            Month::real("2025-Dec").renamed("2031-Feb"),
            Month::real("2026-Jan").renamed("2031-Mar"),
        ],
        Dialect::Service,
    )
    .await;
    let dir = TempDir::new().unwrap();
    let behind = evidence(
        dir.path(),
        "behind.json",
        "Server",
        "10.0.20348.4529",
        &["KB5071547"],
    );

    // Without --month: the newest month, which the build is behind.
    let ran = patch_status(&fake.url, dir.path(), &["--evidence", &behind]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let first = ran.stdout.lines().next().unwrap();
    assert!(
        first.starts_with(
            "Windows Server 2022 (product 11923) at 10.0.20348.4529, against 2031-Mar"
        ),
        "{first}"
    );
    assert!(
        ran.stdout
            .contains("cumulative update: KB5073457 (10.0.20348.4648), not installed"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("NOT compliant: misses 77 of the month's 77 CVEs (1 Critical, 76 Important)"),
        "{}",
        ran.stdout
    );
    let missing: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("  CVE-"))
        .collect();
    assert_eq!(missing.len(), 77);
    assert!(
        missing[0].contains("Critical") && missing[0].contains("KB5073457 (10.0.20348.4648)"),
        "{}",
        missing[0]
    );

    // The same as JSON.
    let ran = patch_status(&fake.url, dir.path(), &["--evidence", &behind, "--json"]).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["month"], "2031-Mar");
    assert_eq!(json["product"], "Windows Server 2022");
    assert_eq!(json["productId"], "11923");
    assert_eq!(
        json["cumulativeUpdate"],
        serde_json::json!({ "kb": "KB5073457", "fixedBuild": "10.0.20348.4648" })
    );
    assert_eq!(json["osBuild"], "10.0.20348.4529");
    assert_eq!(json["compliant"], false);
    assert_eq!(json["missing"].as_array().unwrap().len(), 77);
    let critical = &json["missing"][0];
    assert!(
        critical["cve"].as_str().unwrap().starts_with("CVE-"),
        "{critical}"
    );
    assert_eq!(
        (
            critical["severity"].as_str(),
            critical["kb"].as_str(),
            critical["fixedBuild"].as_str()
        ),
        (Some("Critical"), Some("KB5073457"), Some("10.0.20348.4648"))
    );

    // February's month, which the build carries.
    let ran = patch_status(
        &fake.url,
        dir.path(),
        &["--evidence", &behind, "--month", "2031-Feb"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains(
            "compliant: carries the fixes of all 32 CVEs the month lists for Windows Server 2022"
        ),
        "{}",
        ran.stdout
    );

    // A build at March's update, without it in Get-HotFix: compliant, with a warning.
    let patched = evidence(
        dir.path(),
        "patched.json",
        "Server",
        "10.0.20348.4648",
        &["KB5071547"],
    );
    let ran = patch_status(&fake.url, dir.path(), &["--evidence", &patched, "--json"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(json["compliant"], true);
    assert_eq!(json["missing"], serde_json::json!([]));
    assert_eq!(
        json["warnings"],
        serde_json::json!([{ "kind": "cumulative-update-not-in-hotfixes", "kb": "KB5073457" }])
    );

    // Every request fits the API's description; the documents were cached.
    fake.check_contract();
    assert!(dir.path().join("msrc/cvrfDocument-2031-Mar.xml").is_file());
    let documents = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /cvrf/"))
        .count();
    assert_eq!(
        documents,
        2,
        "each month's document fetched once: {:?}",
        fake.requests()
    );
}

#[tokio::test]
async fn a_folder_of_documents_answers_without_internet() {
    let folder = common::third_party("msrc/cvrf");
    let dir = TempDir::new().unwrap();
    let core = evidence(
        dir.path(),
        "core.json",
        "Server Core",
        "10.0.20348.2527",
        &["KB5039227"],
    );
    let ran = patch_status(
        folder.to_str().unwrap(),
        dir.path(),
        &["--evidence", &core, "--month", "2024-Jun", "--json"],
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let json: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        json["product"],
        "Windows Server 2022 (Server Core installation)"
    );
    assert_eq!(json["productId"], "11924");
    assert_eq!(json["cves"], 30);
    // The newest month of the folder is January 2026.
    let ran = patch_status(folder.to_str().unwrap(), dir.path(), &["--evidence", &core]).await;
    assert_eq!(ran.code, 1);
    assert!(
        ran.stdout
            .lines()
            .next()
            .unwrap()
            .contains("against 2026-Jan"),
        "{}",
        ran.stdout
    );
}

#[tokio::test]
async fn bad_input_or_unreadable_data_exits_2_with_the_reason() {
    let folder = common::third_party("msrc/cvrf");
    let folder = folder.to_str().unwrap();
    let dir = TempDir::new().unwrap();
    let good = evidence(
        dir.path(),
        "good.json",
        "Server",
        "10.0.20348.4648",
        &["KB5073457"],
    );
    let wrong_schema = dir.path().join("schema.json");
    std::fs::write(
        &wrong_schema,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("evidence/1", "evidence/9"),
    )
    .unwrap();
    let other_os = evidence(dir.path(), "2016.json", "Server", "10.0.14393.7070", &[]);
    let closed = format!("http://127.0.0.1:{}", common::child::free_port());
    let cases: [(&str, Vec<&str>, &str); 9] = [
        (
            folder,
            vec!["--evidence", "/no/such/evidence.json"],
            "cannot read the evidence file /no/such/evidence.json",
        ),
        (
            folder,
            vec!["--evidence", wrong_schema.to_str().unwrap()],
            "\"image-factory.evidence/9\"",
        ),
        (
            folder,
            vec!["--evidence", &other_os],
            "OS build 10.0.14393.7070 is not an OS the patch rules know",
        ),
        (
            folder,
            vec!["--evidence", &good, "--month", "2026-13"],
            "is not a month of security updates",
        ),
        (
            folder,
            vec!["--evidence", &good, "--month", "2031-Mar"],
            "cvrfDocument-2031-Mar.xml does not exist",
        ),
        (&closed, vec!["--evidence", &good], "cannot be reached"),
        // What to judge: a file or an image, one of them.
        (
            folder,
            vec![],
            "the following required arguments were not provided",
        ),
        (
            folder,
            vec!["--evidence", &good, "--image", "web"],
            "cannot be used with",
        ),
        // An image's evidence comes from the factory, which must answer.
        (
            folder,
            vec!["--image", "web", "--url", &closed],
            "cannot reach http://127.0.0.1",
        ),
    ];
    for (msrc, args, reason) in cases {
        let ran = patch_status(msrc, dir.path(), &args).await;
        assert_eq!(ran.code, 2, "{args:?}: {}{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.is_empty(), "{args:?}: {}", ran.stdout);
        assert!(
            ran.stderr.contains(reason),
            "{args:?}: expected {reason:?} in {}",
            ran.stderr
        );
    }
}
