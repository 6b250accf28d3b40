//! The operator's commands that need no running factory.

use std::path::{Path, PathBuf};
use std::process::Command;

fn image_factory(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(args)
        .output()
        .expect("run image-factory");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn schedule_prints_the_next_firings_of_the_second_tuesday_schedule() {
    let (ok, stdout, stderr) = image_factory(&[
        "schedule",
        "0 0 18 8-14 * Tue",
        "--next",
        "5",
        "--after",
        "2026-11-25T00:00:00",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout,
        "2026-12-08 18:00:00 Tue UTC\n\
         2027-01-12 18:00:00 Tue UTC\n\
         2027-02-09 18:00:00 Tue UTC\n\
         2027-03-09 18:00:00 Tue UTC\n\
         2027-04-13 18:00:00 Tue UTC\n"
    );
}

#[test]
fn schedule_explains_what_is_wrong_with_a_bad_expression() {
    let (ok, stdout, stderr) = image_factory(&["schedule", "0 0 25 * * *"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("hour") && stderr.contains("25"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_the_port_the_functions_host_gives() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .arg("serve")
        .env_remove("FUNCTIONS_CUSTOMHANDLER_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
}

#[test]
fn serve_refuses_to_start_without_an_approval_signing_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
        .env_remove("IMAGE_FACTORY_APPROVAL_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("IMAGE_FACTORY_APPROVAL_KEYS"));
}

#[test]
fn patch_tuesday_prints_the_second_tuesdays_and_the_configured_build_times() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_TUESDAY_ZONE", "Europe/Paris")
        .env("IMAGE_FACTORY_PATCH_TUESDAY_OFFSET_DAYS", "7")
        .env("IMAGE_FACTORY_PATCH_TUESDAY_HOUR", "18")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 13);
    assert_eq!(
        lines[1],
        "2027-01-12     2027-01-19 18:00 CET  (2027-01-19 17:00 UTC)"
    );
    assert_eq!(
        lines[7],
        "2027-07-13     2027-07-20 18:00 CEST  (2027-07-20 16:00 UTC)"
    );
    assert_eq!(
        lines[12],
        "2027-12-14     2027-12-21 18:00 CET  (2027-12-21 17:00 UTC)"
    );
}

#[test]
fn patch_tuesday_refuses_a_time_zone_that_does_not_exist() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_TUESDAY_ZONE", "Mars/Olympus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Mars/Olympus"));
}

#[test]
fn a_patch_grace_period_beyond_the_next_build_is_refused_naming_the_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["patch-tuesday", "--year", "2027"])
        .env("IMAGE_FACTORY_PATCH_GRACE_DAYS", "40")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IMAGE_FACTORY_PATCH_GRACE_DAYS") && stderr.contains("0-27 days"),
        "{stderr}"
    );
}

#[test]
fn up_refuses_a_parallelism_of_zero_or_garbage_before_it_starts_anything() {
    let data = tempfile::TempDir::new().unwrap();
    let up = |env: Option<&str>, flag: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_image-factory"));
        command
            .args(["up", "--port", "0"])
            .env("IMAGE_FACTORY_DATA", data.path().join("data"));
        if let Some(value) = env {
            command.env("IMAGE_FACTORY_PARALLELISM", value);
        }
        if let Some(value) = flag {
            command.arg(format!("--parallelism={value}"));
        }
        let out = command.output().expect("run image-factory");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for value in ["0", "many", "-2"] {
        let stderr = up(Some(value), None);
        assert!(
            stderr.contains("IMAGE_FACTORY_PARALLELISM") && stderr.contains("at least 1"),
            "{value}: {stderr}"
        );
        let stderr = up(None, Some(value));
        assert!(stderr.contains("--parallelism"), "{value}: {stderr}");
    }
    assert!(
        !data.path().join("data").exists(),
        "a refused setting changed nothing"
    );
}

#[test]
fn rollback_without_azure_acts_on_the_local_gallery_and_refuses_what_it_does_not_hold() {
    let data = tempfile::TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["rollback", "--image", "example", "--to", "2026.901.0"])
        .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
        .env("IMAGE_FACTORY_DATA", data.path())
        .output()
        .expect("run image-factory");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("version 2026.901.0 is not in the gallery"),
        "{stderr}"
    );
    assert!(
        !data.path().join("releases").join("example").exists(),
        "a refused rollback writes nothing"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["rollback", "--image", "nope", "--to", "2026.901.0"])
        .env_remove("IMAGE_FACTORY_SUBSCRIPTION_ID")
        .env("IMAGE_FACTORY_DATA", data.path())
        .output()
        .expect("run image-factory");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image nope"));
}

/// Runs `up` on the images `setup` writes under `<root>/images`; answers
/// its error output once it refused to start (a factory that accepted the
/// images would run until stopped).
fn up_refusal(setup: impl FnOnce(&Path)) -> String {
    let root = tempfile::TempDir::new().unwrap();
    setup(&root.path().join("images"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["up", "--port", "0"])
        .env("IMAGE_FACTORY_IMAGES", root.path().join("images"))
        .env("IMAGE_FACTORY_DATA", root.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("up started with images it should refuse");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The example image's settings.
fn example_settings() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/example/image.toml"),
    )
    .unwrap()
}

#[test]
fn up_refuses_an_image_whose_build_timeout_is_zero_naming_the_file_and_the_key() {
    let settings = example_settings();
    assert!(settings.contains("timeout_minutes = 10"), "{settings}");
    let mut file = PathBuf::new();
    let stderr = up_refusal(|images| {
        let folder = images.join("zero");
        std::fs::create_dir_all(&folder).unwrap();
        file = folder.join("image.toml");
        std::fs::write(
            &file,
            settings.replace("timeout_minutes = 10", "timeout_minutes = 0"),
        )
        .unwrap();
    });
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("[packer] timeout_minutes"),
        "{stderr}"
    );
}

#[test]
fn up_refuses_images_built_on_each_other_or_on_an_unknown_image_naming_them() {
    let layered = |images: &Path, pairs: &[(&str, &str)]| {
        for (name, parent) in pairs {
            let folder = images.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(
                folder.join("image.toml"),
                format!(
                    "{}\n[base_image]\nfactory = \"{parent}\"\n",
                    example_settings()
                ),
            )
            .unwrap();
        }
    };
    let stderr = up_refusal(|images| layered(images, &[("iis", "hardened"), ("hardened", "iis")]));
    assert!(stderr.contains("are built on each other"), "{stderr}");
    assert!(stderr.contains("hardened → iis → hardened"), "{stderr}");
    let stderr = up_refusal(|images| layered(images, &[("iis", "nowhere")]));
    assert!(
        stderr.contains("image iis is built on nowhere, which is not an image of the factory"),
        "{stderr}"
    );
}

#[test]
fn schedule_says_so_and_fails_when_a_schedule_never_fires() {
    let (ok, stdout, stderr) = image_factory(&["schedule", "0 0 0 30 Feb *"]);
    assert!(!ok, "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("never fires"), "{stderr}");
}

#[test]
fn patch_tuesday_refuses_a_year_outside_the_calendar_it_knows() {
    for year in ["262143", "-5", "1969", "10000"] {
        let (ok, stdout, stderr) = image_factory(&["patch-tuesday", &format!("--year={year}")]);
        assert!(!ok, "{year}: {stdout}");
        assert!(
            stderr.contains("1970..=9999") && !stderr.contains("no such month"),
            "{year}: {stderr}"
        );
    }
}
