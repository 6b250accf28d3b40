//! Writing a checked [`SourceTree`] to disk: into a fresh folder beside the
//! target (`<name>.partial-<random>`), folders and files first, links last,
//! every file created new (`O_EXCL`, `O_NOFOLLOW`: nothing already there is
//! written through), then renamed into place. Every path was checked when
//! the tree was read, and no link exists until every file is written, so
//! nothing is written outside the target folder. What is written is
//! private, as the rest of the data folder: folders 0700, files 0600, or
//! 0700 when executable.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::tree::{ArchiveError, Entry, SourceTree};

/// Writes `tree` as the folder `target`, replacing what was there (a
/// folder this function wrote before). The parent of `target` must exist.
pub fn unpack(tree: &SourceTree, target: &Path) -> Result<(), ArchiveError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ArchiveError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::other("the target names no folder"),
        })?;
    let partial = target.with_file_name(format!("{name}.partial-{:016x}", rand::random::<u64>()));
    let old = target.with_file_name(format!("{name}.old-{:016x}", rand::random::<u64>()));
    let result = write_tree(tree, &partial).and_then(|()| replace(&partial, target, &old));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn write_tree(tree: &SourceTree, root: &Path) -> Result<(), ArchiveError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(root)
        .map_err(write_error(root))?;
    let mut links = Vec::new();
    for (path, entry) in tree.entries() {
        let file = root.join(path);
        match entry {
            Entry::File { executable, bytes } => {
                if let Some(parent) = file.parent() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(write_error(parent))?;
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(if *executable { 0o700 } else { 0o600 })
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&file)
                    .map_err(write_error(&file))?;
                out.write_all(bytes).map_err(write_error(&file))?;
            }
            Entry::Link { target } => links.push((file, target)),
        }
    }
    for (file, target) in links {
        if let Some(parent) = file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(write_error(parent))?;
        }
        std::os::unix::fs::symlink(target, &file).map_err(write_error(&file))?;
    }
    Ok(())
}

/// Moves `partial` to `target`, the old `target` (if any) out of the way first.
fn replace(partial: &Path, target: &Path, old: &Path) -> Result<(), ArchiveError> {
    let moved: Option<&Path> = match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            std::fs::rename(target, old).map_err(write_error(target))?;
            Some(old)
        }
        Ok(_) => {
            return Err(ArchiveError::Write {
                path: target.to_path_buf(),
                source: std::io::Error::other("something that is not a folder is in the way"),
            });
        }
        Err(_) => None,
    };
    std::fs::rename(partial, target).map_err(write_error(target))?;
    if let Some(old) = moved {
        std::fs::remove_dir_all(old).map_err(write_error(old))?;
    }
    Ok(())
}
