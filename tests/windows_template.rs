//! The Windows Server 2022 template (`images/base-w2022-datacenter`): the
//! factory's own checks find no error, its settings load, and a run of it
//! passes the validate stage of a real factory with the local packer (which,
//! older than 1.7, cannot read `required_plugins`: the stage says so in a
//! warning). Its build then fails here (no Azure credentials, no azure plugin)
//! and the run records the failure with its diagnosis.

mod common;

use common::{Factory, OPERATOR_TOKEN, Options, repo_root};
use image_factory::config::{SmokeTest, load_images};
use image_factory::domain::run::{RunStatus, Stage, StageStatus};
use image_factory::template::check_folder;

fn template_dir() -> std::path::PathBuf {
    repo_root().join("images").join("base-w2022-datacenter")
}

#[test]
fn the_factory_checks_find_no_error_in_the_windows_template() {
    let report = check_folder(&template_dir()).expect("readable");
    let errors: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.kind.is_error())
        .map(|f| f.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(report.requires_plugins, "the azure plugin is pinned");
    for declared in ["gallery_image_version", "run_id", "baseline_version"] {
        assert!(
            report.variables.iter().any(|v| v == declared),
            "{declared} is declared so the factory passes it"
        );
    }
}

#[test]
fn every_provisioner_script_checks_before_it_changes() {
    let scripts = template_dir().join("scripts");
    for name in [
        "Install-FR-Language.ps1",
        "Install-Windows-Defender.ps1",
        "Configure-Windows-Firewall.ps1",
        "Cleanup.ps1",
    ] {
        let text = std::fs::read_to_string(scripts.join(name)).expect(name);
        assert!(
            text.contains("$ErrorActionPreference = 'Stop'"),
            "{name} stops on the first error"
        );
        assert!(
            text.contains("if (") || text.contains("if ($"),
            "{name} checks before it changes"
        );
    }
    let language = std::fs::read_to_string(scripts.join("Install-FR-Language.ps1")).unwrap();
    assert!(
        language.contains("LANGUAGE_PACK_URL"),
        "offline fallback for the language pack"
    );
    let defender = std::fs::read_to_string(scripts.join("Install-Windows-Defender.ps1")).unwrap();
    assert!(
        defender.contains("-UpdateSource FileShares"),
        "offline fallback for Defender definitions"
    );
    let build = std::fs::read_to_string(template_dir().join("build.pkr.hcl")).unwrap();
    assert!(build.contains("IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"));
}

#[test]
fn the_windows_image_settings_watch_its_marketplace_base_and_test_iis() {
    let images = load_images(&repo_root().join("images")).expect("images load");
    let windows = &images["base-w2022-datacenter"].settings;
    let base = windows
        .marketplace_base()
        .expect("a Marketplace base image");
    assert_eq!(
        (
            base.publisher.as_str(),
            base.offer.as_str(),
            base.sku.as_str()
        ),
        (
            "MicrosoftWindowsServer",
            "WindowsServer",
            "2022-datacenter-azure-edition"
        )
    );
    assert!(matches!(windows.smoke, SmokeTest::Http { .. }));
    assert_eq!(windows.approval.required, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_the_windows_template_passes_validate_and_its_failed_build_is_diagnosed() {
    let images = tempfile::TempDir::new().unwrap();
    copy_dir(
        &template_dir(),
        &images.path().join("base-w2022-datacenter"),
    );
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        ..Options::default()
    })
    .await;
    let response = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({ "image": "base-w2022-datacenter", "reason": "template check", "force": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
    let runs = factory.app.store.list(&Default::default()).await.unwrap();
    let id = runs.runs[0].id.clone();
    let run = factory.wait_status(&id, RunStatus::Failed).await;
    let validate = run.stage(Stage::Validate);
    assert_eq!(validate.status, StageStatus::Succeeded, "{run:#?}");
    let failure = run.failure.as_ref().expect("failed");
    assert_eq!(failure.stage, Some(Stage::Build), "{failure:?}");
    if run.findings.iter().any(|f| f.kind == "packer-too-old") {
        // packer < 1.7 cannot read the plugin block: the build cannot start.
        assert_eq!(
            failure.diagnosis.as_ref().map(|d| d.kind.as_str()),
            Some("plugin-missing"),
            "{failure:?}"
        );
    }
    factory.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
