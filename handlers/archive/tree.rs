//! The source tree an archive becomes: its entries (files and links), the
//! limits an archive is read within, the path rules every entry passes, and
//! the canonical form and hash of a tree.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};

/// One entry of a tree: a file or a symbolic link (folders are implied by paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Whether it is executable (any execute bit set where it came from).
        executable: bool,
        /// Its content.
        bytes: Vec<u8>,
    },
    /// A symbolic link, its target relative to the link's folder.
    Link {
        /// Where it points, as written in the archive.
        target: String,
    },
}

/// How much an archive may hold: beyond any of these it is refused.
/// The defaults are far above what an images repository holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries read from the archive (files, folders, links, headers).
    pub max_files: usize,
    /// Bytes of the files kept (the snapshot's size).
    pub max_bytes: u64,
    /// Bytes read from the archive after decompression, kept or not.
    pub max_read: u64,
    /// Decompressed bytes per compressed byte, once past [`RATIO_FLOOR`].
    pub max_ratio: u64,
}

/// Decompressed bytes below which the compression ratio is not checked
/// (small text compresses well: a ratio there betrays nothing).
pub const RATIO_FLOOR: u64 = 1024 * 1024;

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 1024;

/// Deepest path accepted, in folders.
pub const MAX_DEPTH: usize = 64;

impl Limits {
    /// The largest canonical archive a tree within these limits makes: its
    /// files' bytes, and at most 4 KiB of headers and padding per entry
    /// (a header, a long name's extension, the padding to 512 bytes), plus
    /// the end of the archive. A stored snapshot larger than this was not
    /// written by the factory.
    pub fn max_archive(&self) -> u64 {
        self.max_bytes
            .saturating_add((self.max_files as u64).saturating_mul(4096))
            .saturating_add(1024)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_files: 20_000,
            max_bytes: 256 * 1024 * 1024,
            max_read: 2 * 1024 * 1024 * 1024,
            max_ratio: 200,
        }
    }
}

/// Why an archive was refused or could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry's path is unsafe or malformed.
    #[error("the archive entry {path:?} is refused: {why}")]
    Path {
        /// The path as written in the archive (escaped when shown).
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An entry of a kind a source tree never holds.
    #[error(
        "the archive entry {path:?} is a {kind}; a source snapshot holds only files, folders and links inside it"
    )]
    Kind {
        /// The entry's path.
        path: String,
        /// Its kind (`hard link`, `device file`, ...).
        kind: &'static str,
    },
    /// Two entries of the same path, or a file where a folder is.
    #[error(
        "the archive holds {path:?} twice (or as a file and a folder); refusing an ambiguous archive"
    )]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A symbolic link that leaves the tree or passes through another link.
    #[error("the link {path:?} -> {target:?} is refused: {why}")]
    Link {
        /// The link.
        path: String,
        /// Its target.
        target: String,
        /// Why.
        why: &'static str,
    },
    /// A limit was passed.
    #[error(
        "the archive is refused: {what} (limit {limit}); a real images folder is far below it, so this archive is broken or hostile"
    )]
    Limit {
        /// What was counted, with its count.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// The archive is not what it claims to be.
    #[error("the archive cannot be read: {0}")]
    Malformed(String),
    /// The target folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A tree of files and links, by path (`a/b.txt`, `/`-separated, relative,
/// normalised), as read from an archive within [`Limits`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTree {
    entries: BTreeMap<String, Entry>,
    bytes: u64,
}

/// A path as written in an archive, checked and normalised: `/`-separated
/// segments, no empty or `.` segment, no `..`, not absolute, no drive letter,
/// no backslash or NUL, valid UTF-8, at most [`MAX_PATH`] bytes and
/// [`MAX_DEPTH`] deep. Trailing slashes (folders) are dropped.
pub fn normalise(raw: &[u8]) -> Result<String, ArchiveError> {
    let shown = || String::from_utf8_lossy(raw).chars().take(200).collect();
    let refuse = |why| ArchiveError::Path { path: shown(), why };
    let text = std::str::from_utf8(raw).map_err(|_| refuse("it is not UTF-8"))?;
    if text.len() > MAX_PATH {
        return Err(refuse("it is longer than 1024 bytes"));
    }
    if text.contains('\0') {
        return Err(refuse("it holds a NUL byte"));
    }
    if text.contains('\\') {
        return Err(refuse(
            "it holds a backslash (a Windows separator or an escape)",
        ));
    }
    if text.starts_with('/') {
        return Err(refuse("it is absolute"));
    }
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(refuse("it starts with a drive letter"));
    }
    let mut segments = Vec::new();
    for segment in text.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(refuse("it climbs out with `..`")),
            s => segments.push(s),
        }
    }
    if segments.len() > MAX_DEPTH {
        return Err(refuse("it is more than 64 folders deep"));
    }
    Ok(segments.join("/"))
}

impl SourceTree {
    /// An empty tree.
    pub fn new() -> SourceTree {
        SourceTree::default()
    }

    /// Adds `entry` at `path` (already [`normalise`]d, not empty), refusing a
    /// duplicate, a file where a folder is (or the reverse), a path under a
    /// link, and more files or bytes than `limits` allow.
    pub fn insert(
        &mut self,
        path: String,
        entry: Entry,
        limits: &Limits,
    ) -> Result<(), ArchiveError> {
        if path.is_empty() {
            return Err(ArchiveError::Path {
                path,
                why: "it names the root",
            });
        }
        if self.entries.contains_key(&path) {
            return Err(ArchiveError::Duplicate { path });
        }
        // A parent that is a file or a link, or a child already under this path.
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if self.entries.contains_key(up) {
                return Err(ArchiveError::Duplicate { path });
            }
            parent = up;
        }
        let under = format!("{path}/");
        if self
            .entries
            .range(under.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&under))
        {
            return Err(ArchiveError::Duplicate { path });
        }
        if self.entries.len() >= limits.max_files {
            return Err(ArchiveError::Limit {
                what: format!("more than {} files", limits.max_files),
                limit: limits.max_files as u64,
            });
        }
        if let Entry::File { bytes, .. } = &entry {
            self.bytes += bytes.len() as u64;
            if self.bytes > limits.max_bytes {
                return Err(ArchiveError::Limit {
                    what: format!("its files hold more than {} bytes", limits.max_bytes),
                    limit: limits.max_bytes,
                });
            }
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Checks every link: its target, taken from the link's folder, stays
    /// inside the tree and passes through no other link. Call once every
    /// entry is in (a link may point at an entry read after it).
    pub fn check_links(&self) -> Result<(), ArchiveError> {
        for (path, entry) in &self.entries {
            let Entry::Link { target } = entry else {
                continue;
            };
            let refuse = |why| ArchiveError::Link {
                path: path.clone(),
                target: target.clone(),
                why,
            };
            if target.is_empty() || target.starts_with('/') || target.contains(['\\', '\0']) {
                return Err(refuse("its target is empty, absolute or holds a backslash"));
            }
            let mut at: Vec<&str> = path.split('/').collect();
            at.pop();
            for segment in target.split('/') {
                match segment {
                    "" | "." => {}
                    ".." => {
                        if at.pop().is_none() {
                            return Err(refuse("it leaves the tree"));
                        }
                    }
                    s => {
                        at.push(s);
                        let so_far = at.join("/");
                        if so_far == *path {
                            return Err(refuse("it points at itself"));
                        }
                        if matches!(self.entries.get(&so_far), Some(Entry::Link { .. })) {
                            return Err(refuse("it passes through another link"));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The entries, by path.
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// Bytes of all files.
    pub fn size(&self) -> u64 {
        self.bytes
    }

    /// The part of the tree under `folder` (a normalised path; empty: the
    /// whole tree), with `folder/` taken off every path. Links keep their
    /// targets: a link that leaves the part is refused by [`Self::check_links`]
    /// on the part.
    pub fn subtree(&self, folder: &str) -> SourceTree {
        if folder.is_empty() {
            return self.clone();
        }
        let prefix = format!("{folder}/");
        let mut part = SourceTree::new();
        for (path, entry) in self.entries.range(prefix.clone()..) {
            let Some(rest) = path.strip_prefix(&prefix) else {
                break;
            };
            if let Entry::File { bytes, .. } = entry {
                part.bytes += bytes.len() as u64;
            }
            part.entries.insert(rest.to_string(), entry.clone());
        }
        part
    }

    /// The folders directly at the top of the tree.
    pub fn top_folders(&self) -> Vec<&str> {
        let mut folders: Vec<&str> = self
            .entries
            .keys()
            .filter_map(|p| p.split_once('/').map(|(top, _)| top))
            .collect();
        folders.dedup();
        folders
    }

    /// A file's content, if `path` is a file of the tree.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.entries.get(path) {
            Some(Entry::File { bytes, .. }) => Some(bytes),
            _ => None,
        }
    }

    /// The canonical archive of the tree (see the module's comment).
    pub fn canonical(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            // Writing to memory fails only on a path tar cannot hold, and
            // every path here was normalised (relative, no `..`, UTF-8).
            let written = match entry {
                Entry::File { executable, bytes } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(if *executable { 0o755 } else { 0o644 });
                    header.set_size(bytes.len() as u64);
                    builder.append_data(&mut header, path, bytes.as_slice())
                }
                Entry::Link { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)
                }
            };
            debug_assert!(written.is_ok(), "{path}: {written:?}");
        }
        builder
            .into_inner()
            .unwrap_or_else(|_| unreachable!("writing to memory does not fail"))
    }

    /// The canonical archive and its SHA-256 (lower-case hex).
    pub fn canonical_with_hash(&self) -> (Vec<u8>, String) {
        let bytes = self.canonical();
        let hash = sha256_hex(&bytes);
        (bytes, hash)
    }

    /// The SHA-256 of the canonical archive of the part under `folder`: the
    /// hash of one image's folder.
    pub fn folder_hash(&self, folder: &str) -> String {
        sha256_hex(&self.subtree(folder).canonical())
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A limit passed while reading, carried through the tar reader's `io::Error`.
#[derive(Debug)]
pub(crate) struct Passed(pub(super) ArchiveError);

impl std::fmt::Display for Passed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Passed {}

/// An I/O error from reading an archive: the limit it carries, or malformed.
pub(crate) fn io_error(e: std::io::Error) -> ArchiveError {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<Passed>() {
            Ok(passed) => passed.0,
            Err(other) => ArchiveError::Malformed(other.to_string()),
        },
        None => ArchiveError::Malformed("the archive ends early or is corrupt".into()),
    }
}

/// Reads one entry's content, at most `remaining` bytes of kept files (the
/// rest of [`Limits::max_bytes`]); more is the limit passed.
pub(super) fn read_content(
    reader: &mut dyn Read,
    remaining: u64,
    limit: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::new();
    reader
        .take(remaining.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > remaining {
        return Err(ArchiveError::Limit {
            what: format!("its files hold more than {limit} bytes"),
            limit,
        });
    }
    Ok(bytes)
}
