//! `image-factory package`, run as the real binary: the zip's and the
//! folder's layout (the Functions host's: every function folder at the root),
//! `up --root` serving that folder, and the refusals when the app and the
//! handler, the infrastructure or the host's indexing rule disagree (checked
//! on temporary copies of the app folder).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_factory::functions::NAMES;
use image_factory::package::MARKER;

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

/// Packages `root` into `root/out.zip` expecting a refusal: no zip is
/// written, and the refusal's text is returned.
fn refused(root: &Path) -> String {
    let out = root.join("out.zip");
    let output = package(root, &out, None);
    assert!(!output.status.success(), "package accepted the app");
    assert!(!out.exists(), "no zip is written when a check fails");
    stderr(&output)
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
        let entry = format!("{name}/function.json");
        assert!(names.contains(&entry), "{entry} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("functions/")),
        "the host indexes only the root's folders: {names:?}"
    );
    // The host's indexing rule over the real zip: exactly the handler's functions.
    let mut served = NAMES.to_vec();
    served.sort();
    assert_eq!(
        image_factory::layout::check_paths(&names).expect("the zip follows the host's layout"),
        served
    );
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
    let err = refused(dir.path());
    assert!(
        err.contains("the handler serves `stage-test`")
            && err.contains("functions/stage-test/function.json does not exist"),
        "{err}"
    );
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
    let err = refused(dir.path());
    assert!(
        err.contains("functions/stage-publish/function.json defines `stage-publish`")
            && err.contains("the handler serves no function of that name")
            && err.contains("stage-release"),
        "{err}"
    );
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
    let err = refused(dir.path());
    assert!(
        err.contains(
            "functions/stage-approve/function.json binding `release` names queue `stage-publish`"
        ) && err.contains("infra/queues.json does not create")
            && err.contains("build-completed"),
        "{err}"
    );
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

/// A small Linux x86-64 executable to package instead of this 75 MB debug
/// build where the handler's bytes do not matter (the first test checks them).
const SMALL_ELF: &str = "/bin/true";

fn package_dir(root: &Path, dir: &Path) -> Output {
    Command::new(BIN)
        .arg("package")
        .arg("--root")
        .arg(root)
        .arg("--dir")
        .arg(dir)
        .arg("--binary")
        .arg(SMALL_ELF)
        .output()
        .expect("run image-factory package --dir")
}

#[test]
fn package_dir_writes_the_zips_layout_unzipped_and_replaces_only_an_app_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let zip_path = dir.path().join("app.zip");
    assert!(
        package(&repo(), &zip_path, Some(Path::new(SMALL_ELF)))
            .status
            .success()
    );
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("zip")).expect("zip");
    let mut zipped: Vec<String> = (0..zip.len())
        .map(|i| {
            zip.by_index(i)
                .expect("entry")
                .name()
                .expect("name")
                .to_string()
        })
        .collect();
    zipped.sort();

    let app = dir.path().join("app");
    let output = package_dir(&repo(), &app);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut written = image_factory::layout::relative_files(&app).expect("listed");
    assert!(
        written.contains(&MARKER.to_string()),
        "the folder carries the package's marker: {written:?}"
    );
    written.retain(|name| name != MARKER);
    assert_eq!(written, zipped, "--dir and the zip hold the same files");
    assert_eq!(
        std::fs::read(app.join("image-factory")).expect("handler"),
        std::fs::read(SMALL_ELF).expect("binary")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.join("image-factory"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    // A second staging replaces the first (Core Tools' local.settings.json stays)...
    std::fs::write(app.join("local.settings.json"), "{\"Values\": {}}").expect("write");
    assert!(package_dir(&repo(), &app).status.success());
    assert_eq!(
        std::fs::read_to_string(app.join("local.settings.json")).expect("kept"),
        "{\"Values\": {}}"
    );
    // ...but a folder that is not an app folder is never overwritten.
    let other = dir.path().join("notes");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("todo.txt"), "keep me").expect("write");
    let output = package_dir(&repo(), &other);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("refusing to replace"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(other.join("todo.txt")).expect("kept"),
        "keep me"
    );
}

/// Every file under `dir` with its content, for "nothing was touched" checks.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    image_factory::layout::relative_files(dir)
        .expect("listed")
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name)).expect("read");
            (name, bytes)
        })
        .collect()
}

#[test]
fn package_dir_refuses_a_folder_in_the_hosts_layout_that_it_did_not_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Someone's own function app: host.json, a function, and their sources.
    let theirs = dir.path().join("their-app");
    std::fs::create_dir_all(theirs.join("runs")).expect("mkdir");
    std::fs::create_dir_all(theirs.join("src")).expect("mkdir");
    std::fs::copy(repo().join("host.json"), theirs.join("host.json")).expect("copy");
    std::fs::copy(
        repo().join("functions/runs/function.json"),
        theirs.join("runs/function.json"),
    )
    .expect("copy");
    std::fs::write(theirs.join("src/main.rs"), "fn main() {}\n").expect("write");
    std::fs::write(theirs.join("NOTES.md"), "my notes\n").expect("write");
    let before = snapshot(&theirs);

    let output = package_dir(&repo(), &theirs);
    assert!(
        !output.status.success(),
        "package --dir replaced their folder"
    );
    let err = stderr(&output);
    assert!(
        err.contains("refusing to replace") && err.contains("carries no marker"),
        "{err}"
    );
    assert_eq!(snapshot(&theirs), before, "nothing in their folder changed");
}

#[test]
fn package_dir_refuses_its_own_folder_once_it_holds_files_it_did_not_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    assert!(package_dir(&repo(), &app).status.success());
    for (extra, content) in [
        ("src/lib.rs", "pub fn mine() {}\n"),
        ("extra/function.json", "{\"bindings\": []}"),
    ] {
        let path = app.join(extra);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        let before = snapshot(&app);
        let output = package_dir(&repo(), &app);
        assert!(!output.status.success(), "{extra} was deleted");
        let err = stderr(&output);
        assert!(
            err.contains("refusing to replace") && err.contains(extra),
            "the refusal names {extra}: {err}"
        );
        assert_eq!(snapshot(&app), before, "nothing changed");
        std::fs::remove_file(&path).expect("remove");
    }
    // Without them, the folder is the package's own again and is replaced.
    std::fs::remove_dir(app.join("src")).expect("rmdir");
    std::fs::remove_dir(app.join("extra")).expect("rmdir");
    let output = package_dir(&repo(), &app);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_file_a_previous_package_wrote_does_not_linger_when_the_app_no_longer_has_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(&root).expect("mkdir");
    copy_app(&root);
    std::fs::create_dir_all(root.join("images/retired")).expect("mkdir");
    std::fs::write(root.join("images/retired/notes.txt"), "old image\n").expect("write");
    let app = dir.path().join("app");
    assert!(package_dir(&root, &app).status.success());
    assert!(app.join("images/retired/notes.txt").is_file());

    std::fs::remove_dir_all(root.join("images/retired")).expect("retire the image");
    let output = package_dir(&root, &app);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!app.join("images/retired").exists());
}

#[test]
fn package_dir_never_removes_a_partial_folder_it_did_not_create() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    // A folder of that name that this run did not make: someone's work.
    let partial = dir.path().join("app.partial");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join("keep.txt"), "mine\n").expect("write");

    let output = package_dir(&repo(), &app);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        std::fs::read_to_string(partial.join("keep.txt")).expect("kept"),
        "mine\n"
    );
    // What this run wrote beside the folder is gone: only the app and theirs remain.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["app", "app.partial"]);
}

#[test]
fn a_function_json_whose_bindings_do_not_match_the_handler_is_refused_naming_the_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    let path = dir.path().join("functions/stage-build/function.json");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("\"message\"", "\"msg\"")).expect("write");
    let err = refused(dir.path());
    assert!(
        err.contains("functions/stage-build/function.json does not match the handler")
            && err.contains("named `message`"),
        "{err}"
    );
    assert!(
        !package_dir(dir.path(), &dir.path().join("app"))
            .status
            .success()
    );
    assert!(!dir.path().join("app").exists());
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn up(root: &Path, data: &Path, port: u16) -> Child {
    Child(
        Command::new(BIN)
            .args(["up", "--port", &port.to_string(), "--root"])
            .arg(root)
            .env("IMAGE_FACTORY_DATA", data)
            .env("IMAGE_FACTORY_PACKER", "none")
            .env_remove("IMAGE_FACTORY_IMAGES")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start image-factory up"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn up_root_serves_the_folder_package_dir_wrote_with_its_images() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    assert!(package_dir(&repo(), &app).status.success());
    let port = free_port();
    let _up = up(&app, &dir.path().join("data"), port);
    let base = format!("http://127.0.0.1:{port}/api");
    let client = reqwest::Client::new();
    let mut answered = None;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/runs")).send().await {
            answered = Some(r.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        answered,
        Some(reqwest::StatusCode::OK),
        "up --root did not serve /api/runs"
    );
    let status = |path: &'static str| {
        let client = client.clone();
        let url = format!("{base}/{path}");
        async move { client.get(url).send().await.expect(path).status().as_u16() }
    };
    // The images are the folder's own images/ (IMAGE_FACTORY_IMAGES unset).
    assert_eq!(status("dashboard/images/example").await, 200);
    assert_eq!(status("dashboard/images/no-such-image").await, 404);
    assert_eq!(status("no-such-function").await, 404);
}

#[test]
fn up_refuses_a_folder_the_host_would_not_index_naming_the_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    assert!(package_dir(&repo(), &app).status.success());
    // A function folder nested one level down: the host would skip it.
    std::fs::create_dir_all(app.join("more")).expect("mkdir");
    std::fs::rename(app.join("sweeper"), app.join("more/sweeper")).expect("move");
    let mut child = up(&app, &dir.path().join("data"), free_port());
    let status = child.0.wait().expect("up ends");
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("stderr"), &mut err)
        .expect("read");
    assert!(!status.success());
    assert!(
        err.contains("more/sweeper/function.json") && err.contains("would skip this function"),
        "{err}"
    );

    // The repository's own layout is refused too, with the way to stage it.
    let mut child = up(&repo(), &dir.path().join("data"), free_port());
    let status = child.0.wait().expect("up ends");
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("stderr"), &mut err)
        .expect("read");
    assert!(!status.success());
    assert!(err.contains("package --dir"), "{err}");
}

#[test]
fn a_function_folder_whose_name_the_host_refuses_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    std::fs::rename(
        dir.path().join("functions/stage-test"),
        dir.path().join("functions/stage.test"),
    )
    .expect("rename");
    let err = refused(dir.path());
    assert!(
        err.contains("functions/stage.test/function.json")
            && err.contains("not a valid function name for the Functions host"),
        "{err}"
    );
}

#[test]
fn a_function_json_nested_below_a_function_folder_is_refused_as_the_host_would_skip_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_app(dir.path());
    let nested = dir.path().join("functions/runs/v2");
    std::fs::create_dir_all(&nested).expect("mkdir");
    std::fs::copy(
        dir.path().join("functions/runs/function.json"),
        nested.join("function.json"),
    )
    .expect("copy");
    let err = refused(dir.path());
    assert!(
        err.contains("runs/v2/function.json") && err.contains("would skip this function"),
        "{err}"
    );
}
