//! Files and folders that only the factory's own user may read.
//!
//! The data folder holds live approval links (the outbox), signing keys
//! (`local-secrets.json`), the run store and the local queues (SQLite files
//! and their write-ahead logs) and build logs. Its folders are made 0700 and
//! its files 0600 whatever the process umask: the mode is given when a file
//! or folder is created and set again explicitly afterwards, because a umask
//! can only take bits away and a file that already existed keeps its mode.
//! The modes are set explicitly rather than by changing the process umask,
//! which would change every file the process writes (and, in tests, every
//! file of the test harness).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of a private folder.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents, each new folder 0700, and sets
/// `dir` itself to 0700 even if it existed.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    create_missing(dir)?;
    set_mode(dir, DIR_MODE)
}

fn create_missing(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_missing(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => set_mode(dir, DIR_MODE),
        // Created meanwhile by another task.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending, creating it 0600 if it is missing, and sets
/// its mode to 0600.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Writes `bytes` to `path` (replacing what it held), the file 0600.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)
}

/// [`create_dir`] of `path`'s folder, then [`write`], off the async runtime's threads.
pub async fn write_in_dir(path: &Path, bytes: Vec<u8>) -> std::io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || {
        if let Some(dir) = path.parent() {
            create_dir(dir)?;
        }
        write(&path, &bytes)
    })
    .await
}

/// Runs file-system work on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
}

/// Makes the child processes `command` starts create their files and
/// folders private (umask 077): what packer or a smoke test writes in a run's
/// folder is as private as the rest of the data folder.
pub fn private_umask(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    // SAFETY: the closure runs in the forked child before exec; umask(2) is
    // async-signal-safe and touches no memory.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        })
    }
}

/// Sets the mode of `path` (following no symbolic link) when it differs.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))
}

/// Makes what is at `path`, if anything, private: a folder and everything in
/// it (folders 0700, files 0600, or 0700 when their owner may execute them),
/// or a single file. Symbolic links are neither followed nor changed. For
/// data written by a version that left it readable by other users.
pub fn tighten(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        set_mode(path, DIR_MODE)?;
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path())?;
        }
    } else if meta.is_file() {
        let executable = meta.permissions().mode() & 0o100 != 0;
        set_mode(path, if executable { DIR_MODE } else { FILE_MODE })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn folders_and_files_are_private_and_loose_ones_are_tightened() {
        let root = tempfile::TempDir::new().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir(&deep).unwrap();
        assert_eq!(mode(&root.path().join("a")), DIR_MODE);
        assert_eq!(mode(&deep), DIR_MODE);
        let file = deep.join("f.json");
        write(&file, b"{}").unwrap();
        assert_eq!(mode(&file), FILE_MODE);

        std::fs::set_permissions(&deep, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        let script = deep.join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, Permissions::from_mode(0o755)).unwrap();
        tighten(&root.path().join("a")).unwrap();
        assert_eq!(mode(&deep), DIR_MODE);
        assert_eq!(mode(&file), FILE_MODE);
        assert_eq!(
            mode(&script),
            0o700,
            "an executable stays executable by its owner"
        );
        tighten(&root.path().join("missing")).unwrap();

        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        drop(open_append(&file).unwrap());
        assert_eq!(
            mode(&file),
            FILE_MODE,
            "an existing file opened is made private"
        );
    }
}
