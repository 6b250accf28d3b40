//! Approval links, signing keys, the run store and the queues are readable
//! by the factory's user only: whatever the umask, every folder of the data
//! folder is 0700 and every file 0600 — the outbox, the run folders and what
//! packer wrote there, the SQLite files and their write-ahead logs, the local
//! secrets, the app `up` stages — and a data folder an older version left readable is made
//! private at start-up. Drives the real binary as a child process started
//! with umask 022.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::child::{UpOptions, free_port, push, up, wait};
use image_factory::domain::run::RunStatus;

/// Every entry under `root` with its mode (permission bits only).
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        found.push((
            path.clone(),
            meta.is_dir(),
            meta.permissions().mode() & 0o7777,
        ));
        if meta.is_dir() {
            found.extend(modes(&path));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_data_folder_is_private_whatever_the_umask() {
    let images = tempfile::TempDir::new().unwrap();
    common::copy_example(images.path(), "example");
    let root = tempfile::TempDir::new().unwrap();
    let data = root.path().join("data");
    // What a version that left things readable wrote before.
    let old_outbox = data.join("outbox/push-example-old");
    std::fs::create_dir_all(&old_outbox).unwrap();
    std::fs::write(old_outbox.join("platform-lead.json"), "{}").unwrap();
    std::fs::write(data.join("runs.db"), "").unwrap();
    for (path, mode) in [
        (data.clone(), 0o755),
        (data.join("outbox"), 0o755),
        (old_outbox.clone(), 0o755),
        (old_outbox.join("platform-lead.json"), 0o644),
        (data.join("runs.db"), 0o644),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    let factory = up(UpOptions {
        images: images.path(),
        data: &data,
        port: free_port(),
        umask: Some(0o022),
    })
    .await;
    let id = push(
        &factory.url,
        "7e0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b",
        &["images/example/build.pkr.hcl"],
    )
    .await;
    wait(&factory.url, &id, "approval reached", |r| {
        r.status == RunStatus::WaitingForApproval
    })
    .await;

    let found = modes(&data);
    let names: Vec<String> = found
        .iter()
        .map(|(p, _, _)| p.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    // What must be there for the check to mean something.
    for expected in [
        format!("outbox/{id}/platform-lead.json"),
        format!("runs/{id}/build.log"),
        format!("runs/{id}/manifest.json"),
        "runs.db-wal".to_string(),
        "runs.db-shm".to_string(),
        "bus.db".to_string(),
        "bus.db-wal".to_string(),
        "local-secrets.json".to_string(),
    ] {
        assert!(
            names.contains(&expected),
            "{expected} is missing: {names:#?}"
        );
    }
    // `app/` is the repository's app staged by `up` (host.json, function.json
    // files, images): private like everything else in the data folder.
    assert!(
        names.iter().any(|n| n == "app/host.json"),
        "the staged app is missing: {names:#?}"
    );
    let mut loose: Vec<String> = found
        .iter()
        // Folders 0700; files 0600, or 0700 when their owner may run them
        // (the staged image's scripts).
        .filter(|(_, dir, mode)| {
            if *dir {
                *mode != 0o700
            } else {
                !matches!(*mode, 0o600 | 0o700)
            }
        })
        .map(|(path, _, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    let data_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777;
    if data_mode != 0o700 {
        loose.push(format!("{} {data_mode:o}", data.display()));
    }
    assert!(loose.is_empty(), "readable by others: {loose:#?}");
    drop(factory);
}
