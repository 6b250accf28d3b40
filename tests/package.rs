//! `image-factory package`, run as the real binary: the zip's layout, and the
//! refusals when the app and the handler or the infrastructure disagree
//! (checked on temporary copies of the app folder).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_factory::functions::NAMES;

const BIN: &str = env!("CARGO_BIN_EXE_image-factory");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies what `package` reads (host.json, functions/, images/, infra/queues.json) into `to`.
fn copy_app(to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create dir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
    let repo = repo();
    std::fs::copy(repo.join("host.json"), to.join("host.json")).expect("host.json");
    copy_dir(&repo.join("functions"), &to.join("functions"));
    copy_dir(&repo.join("images"), &to.join("images"));
    std::fs::create_dir_all(to.join("infra")).expect("infra dir");
    std::fs::copy(repo.join("infra/queues.json"), to.join("infra/queues.json")).expect("queues");
}

fn package(root: &Path, out: &Path, binary: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("package")
        .arg("--root")
        .arg(root)
        .arg("--out")
        .arg(out);
    if let Some(binary) = binary {
        cmd.arg("--binary").arg(binary);
    }
    cmd.output().expect("run image-factory package")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_package_holds_host_json_every_function_the_images_and_the_executable_handler() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("dist/image-factory.zip");
    let output = package(&repo(), &out, None);
    assert!(
        output.status.success(),
        "package failed: {}",
        stderr(&output)
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).expect("zip")).expect("a zip");
    let names: Vec<String> = (0..zip.len())
        .map(|i| {
            let entry = zip.by_index(i).expect("entry");
            entry.name().expect("a UTF-8 name").to_string()
        })
        .collect();
    assert!(names.contains(&"host.json".to_string()), "{names:?}");
    for name in NAMES {
        let entry = format!("functions/{name}/function.json");
        assert!(names.contains(&entry), "{entry} missing from {names:?}");
    }
    assert!(
        names.contains(&"images/example/image.toml".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"images/example/build.pkr.hcl".to_string()),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("infra/") || n.starts_with("handlers/")),
        "only the app goes in the package: {names:?}"
    );

    // The handler sits at the root under the name host.json starts, executable,
    // byte for byte the binary that ran (the default --binary).
    let host: serde_json::Value = {
        let mut file = zip.by_name("host.json").expect("host.json");
        serde_json::from_reader(&mut file).expect("host.json is JSON")
    };
    assert_eq!(
        host.pointer("/customHandler/description/defaultExecutablePath"),
        Some(&serde_json::json!("image-factory"))
    );
    assert_eq!(
        host.pointer("/customHandler/description/arguments"),
        Some(&serde_json::json!(["serve"]))
    );
    let mut handler = zip
        .by_name("image-factory")
        .expect("the handler at the root");
    assert_eq!(handler.unix_mode().map(|m| m & 0o777), Some(0o755));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut handler, &mut bytes).expect("read handler");
    assert_eq!(bytes, std::fs::read(BIN).expect("the binary"));
}

#[test]
fn a_served_function_without_its_folder_is_refused_naming_both_sides() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    std::fs::remove_dir_all(dir.path().join("functions/stage-test")).expect("remove");
    let out = dir.path().join("out.zip");
    let output = package(dir.path(), &out, None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("the handler serves `stage-test`")
            && err.contains("functions/stage-test/function.json does not exist"),
        "{err}"
    );
    assert!(!out.exists(), "no zip is written when a check fails");
}

#[test]
fn a_function_folder_the_handler_does_not_serve_is_refused_naming_both_sides() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    let extra = dir.path().join("functions/stage-publish");
    std::fs::create_dir_all(&extra).expect("mkdir");
    std::fs::copy(
        dir.path().join("functions/stage-release/function.json"),
        extra.join("function.json"),
    )
    .expect("copy");
    let out = dir.path().join("out.zip");
    let output = package(dir.path(), &out, None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("functions/stage-publish/function.json defines `stage-publish`")
            && err.contains("the handler serves no function of that name")
            && err.contains("stage-release"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_function_json_naming_a_queue_infra_does_not_create_is_refused_naming_both_sides() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    let path = dir.path().join("functions/stage-approve/function.json");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(
        &path,
        text.replace("\"stage-release\"", "\"stage-publish\""),
    )
    .expect("write");
    let out = dir.path().join("out.zip");
    let output = package(dir.path(), &out, None);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(
            "functions/stage-approve/function.json binding `release` names queue `stage-publish`"
        ) && err.contains("infra/queues.json does not create")
            && err.contains("build-completed"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_binary_that_is_not_a_linux_x86_64_executable_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("handler.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    let out = dir.path().join("out.zip");
    let output = package(&repo(), &out, Some(&script));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("is not a Linux x86-64 executable"), "{err}");
    assert!(!out.exists());
}
