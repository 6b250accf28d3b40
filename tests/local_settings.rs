//! `local.settings.json.example`, the Azure Functions Core Tools convention:
//! it names the runtime and host storage Core Tools need, every connection
//! the function.json files reference, and every setting the code requires;
//! `image-factory serve` starts with exactly its values (as `func start`
//! would pass them) in the folder `package --dir` writes; and the real
//! `local.settings.json` is never committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use image_factory::doctor::{connections, missing_settings, required_app_settings};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_values() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("local.settings.json.example"))
        .expect("local.settings.json.example");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the example is JSON");
    assert_eq!(json["IsEncrypted"], serde_json::json!(false));
    serde_json::from_value(json["Values"].clone()).expect("Values is a map of strings")
}

#[test]
fn the_example_names_the_runtime_storage_every_connection_and_every_required_setting() {
    let values = example_values();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");

    let jsons = image_factory::package::function_jsons(&repo()).expect("function.json files");
    let jsons: Vec<serde_json::Value> = jsons.into_iter().map(|(_, j)| j).collect();
    let named = connections(&jsons);
    assert!(
        !named.is_empty(),
        "the function.json files name no connection?"
    );
    for connection in &named {
        let setting = format!("{connection}__fullyQualifiedNamespace");
        assert!(
            values.contains_key(&setting),
            "the example lacks {setting} (the identity-based connection `{connection}`)"
        );
    }
    let present: std::collections::BTreeSet<String> = values
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    let required = required_app_settings(&jsons);
    let missing = missing_settings(&required, &present);
    assert!(missing.is_empty(), "the example lacks {missing:?}");
}

#[test]
fn the_real_local_settings_file_is_ignored_by_git() {
    let ignore = std::fs::read_to_string(repo().join(".gitignore")).expect(".gitignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "local.settings.json"),
        "local.settings.json holds secrets and must be in .gitignore"
    );
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// What Core Tools does with the example, minus the host: the staged folder
/// as the working directory, the Values (empty ones left out) as the
/// environment, and the port the host would choose.
fn serve(app: &Path, values: &BTreeMap<String, String>, port: u16) -> Child {
    let mut cmd = Command::new(app.join("image-factory"));
    cmd.arg("serve")
        .current_dir(app)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in values.iter().filter(|(_, v)| !v.is_empty()) {
        cmd.env(name, value);
    }
    Child(cmd.spawn().expect("start image-factory serve"))
}

#[tokio::test]
async fn serve_starts_in_the_staged_folder_with_exactly_the_examples_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = dir.path().join("app");
    image_factory::package::package_dir(
        &repo(),
        Some(Path::new(env!("CARGO_BIN_EXE_image-factory"))),
        &app,
    )
    .expect("package --dir");
    let values = example_values();
    let port = free_port();
    let mut child = serve(&app, &values, port);
    let client = reqwest::Client::new();
    let mut answered = false;
    for _ in 0..200 {
        if let Ok(Some(status)) = child.0.try_wait() {
            let mut err = String::new();
            if let Some(stderr) = child.0.stderr.as_mut() {
                let _ = std::io::Read::read_to_string(stderr, &mut err);
            }
            panic!("serve exited ({status}) with the example's settings: {err}");
        }
        if client
            .post(format!("http://127.0.0.1:{port}/no-such-function"))
            .json(&serde_json::json!({ "Data": {}, "Metadata": {} }))
            .send()
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "serve did not listen on FUNCTIONS_CUSTOMHANDLER_PORT"
    );

    // Without the one setting serve requires, it refuses to start and says which.
    let mut without = values.clone();
    without.remove("IMAGE_FACTORY_APPROVAL_KEYS");
    let mut child = serve(&app, &without, free_port());
    let status = child.0.wait().expect("serve ends");
    let mut err = String::new();
    if let Some(stderr) = child.0.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(stderr, &mut err);
    }
    assert!(!status.success());
    assert!(err.contains("IMAGE_FACTORY_APPROVAL_KEYS"), "{err}");
}
