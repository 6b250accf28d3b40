//! Reading archives into a [`SourceTree`]: tar (`git archive`, the
//! factory's own snapshots), gzipped tar (GitHub's tarballs) and zip (Azure
//! DevOps' items), each within [`Limits`], with every entry checked.
//!
//! Bytes are counted as the archive is read, kept or not: past
//! [`Limits::max_read`], or past [`Limits::max_ratio`] decompressed bytes per
//! compressed byte (once past [`RATIO_FLOOR`]), reading stops and the archive
//! is refused, so a bomb costs at most the limit's worth of work.

use std::cell::Cell;
use std::io::{Cursor, Read};
use std::rc::Rc;

use super::tree::{
    ArchiveError, Entry, Limits, Passed, RATIO_FLOOR, SourceTree, io_error, normalise, read_content,
};

/// The kind of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A plain tar stream.
    Tar,
    /// A gzipped tar stream.
    TarGz,
    /// A zip file.
    Zip,
}

/// Which part of an archive is the source tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Take off the first segment of every path, which must be the same for
    /// every entry (GitHub's `<owner>-<repo>-<commit>/`, whose name differs
    /// between anonymous and token downloads: it is never predicted).
    pub strip_first: bool,
    /// The folder inside the archive (after stripping) whose entries are
    /// kept, relative to it; the rest is skipped. Empty: everything.
    pub folder: String,
    /// Accept entries relative to any trailing part of [`Self::folder`]
    /// (`images/x` for the folder `src/images`), or to none of it: for
    /// archives whose layout is not documented (Azure DevOps' zip of a path).
    pub tolerate_leading: bool,
}

/// What an archive held: the tree, and the commit its pax global header
/// names (`git archive` of a commit writes it as `comment`).
#[derive(Debug, Default)]
pub struct Unpacked {
    /// The kept entries.
    pub tree: SourceTree,
    /// The commit id from the archive's pax global header, if any.
    pub commit: Option<String>,
}

/// Reads `bytes` as an archive of `format`, keeping the part `layout` says.
pub fn read(
    bytes: &[u8],
    format: Format,
    layout: &Layout,
    limits: &Limits,
) -> Result<Unpacked, ArchiveError> {
    let folder = normalise(layout.folder.as_bytes())?;
    let layout = Layout {
        folder,
        ..layout.clone()
    };
    match format {
        Format::Tar => read_tar(
            Counted::new(Cursor::new(bytes), None, limits),
            &layout,
            limits,
        ),
        Format::TarGz => {
            let compressed = Rc::new(Cell::new(0));
            let raw = Counting {
                inner: Cursor::new(bytes),
                count: Rc::clone(&compressed),
            };
            let gz = flate2::read::GzDecoder::new(raw);
            read_tar(Counted::new(gz, Some(compressed), limits), &layout, limits)
        }
        Format::Zip => read_zip(bytes, &layout, limits),
    }
}

/// Counts the bytes read through it (the compressed side of a stream).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The decompressed side of a stream: counts what is read and stops past
/// [`Limits::max_read`] or past the compression ratio.
struct Counted<R> {
    inner: R,
    read: u64,
    compressed: Option<Rc<Cell<u64>>>,
    limits: Limits,
}

impl<R: Read> Counted<R> {
    fn new(inner: R, compressed: Option<Rc<Cell<u64>>>, limits: &Limits) -> Counted<R> {
        Counted {
            inner,
            read: 0,
            compressed,
            limits: *limits,
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let passed = |e| Err(std::io::Error::other(Passed(e)));
        if self.read > self.limits.max_read {
            return passed(ArchiveError::Limit {
                what: format!("it unpacks to more than {} bytes", self.limits.max_read),
                limit: self.limits.max_read,
            });
        }
        if let Some(compressed) = &self.compressed {
            let compressed = compressed.get().max(1);
            if self.read > RATIO_FLOOR && self.read / compressed > self.limits.max_ratio {
                return passed(ArchiveError::Limit {
                    what: format!(
                        "{} compressed bytes unpack to {} or more, a ratio that betrays a compression bomb",
                        compressed, self.read
                    ),
                    limit: self.limits.max_ratio,
                });
            }
        }
        Ok(n)
    }
}

/// Where a normalised archive path lands in the tree: `None` when it is
/// outside the kept folder (or is the kept folder itself).
fn place(path: &str, folder: &str) -> Option<String> {
    if folder.is_empty() {
        return (!path.is_empty()).then(|| path.to_string());
    }
    path.strip_prefix(folder)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .map(str::to_string)
}

/// Takes the first segment off `path`, checking it is `top` (the first
/// entry's); `Ok(None)` for the top folder itself.
fn strip(path: &str, top: &mut Option<String>) -> Result<Option<String>, ArchiveError> {
    let (first, rest) = path.split_once('/').unwrap_or((path, ""));
    match top {
        Some(t) if t != first => Err(ArchiveError::Malformed(format!(
            "its entries are not all in one top folder ({t}/ and {first}/)"
        ))),
        _ => {
            *top = Some(first.to_string());
            Ok((!rest.is_empty()).then(|| rest.to_string()))
        }
    }
}

fn read_tar<R: Read>(
    reader: R,
    layout: &Layout,
    limits: &Limits,
) -> Result<Unpacked, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Unpacked::default();
    let mut top = None;
    let mut seen = 0usize;
    for entry in archive.entries().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        seen += 1;
        if seen > limits.max_files {
            return Err(ArchiveError::Limit {
                what: format!("more than {} entries", limits.max_files),
                limit: limits.max_files as u64,
            });
        }
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            if let Some(extensions) = entry.pax_extensions().map_err(io_error)? {
                for extension in extensions {
                    let extension = extension.map_err(io_error)?;
                    if extension.key_bytes() == b"comment" {
                        out.commit = Some(
                            String::from_utf8_lossy(extension.value_bytes())
                                .trim()
                                .to_string(),
                        );
                    }
                }
            }
            continue;
        }
        let path = normalise(&entry.path_bytes())?;
        let path = if layout.strip_first {
            match strip(&path, &mut top)? {
                Some(rest) => rest,
                None if kind.is_dir() => continue,
                None => {
                    return Err(ArchiveError::Malformed(format!(
                        "{path} lies outside the archive's top folder"
                    )));
                }
            }
        } else {
            path
        };
        let refused = |kind: &'static str| ArchiveError::Kind {
            path: path.clone(),
            kind,
        };
        let entry_kind = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => None,
            tar::EntryType::Directory | tar::EntryType::Symlink => None,
            tar::EntryType::Link => Some(refused("hard link")),
            tar::EntryType::Char | tar::EntryType::Block => Some(refused("device file")),
            tar::EntryType::Fifo => Some(refused("named pipe")),
            tar::EntryType::GNUSparse => Some(refused("sparse file")),
            _ => Some(refused("entry of an unknown type")),
        };
        if let Some(error) = entry_kind {
            return Err(error);
        }
        let Some(at) = place(&path, &layout.folder) else {
            continue;
        };
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    ArchiveError::Malformed(format!("the link {path} names no target"))
                })?;
                let target =
                    String::from_utf8(target.into_owned()).map_err(|_| ArchiveError::Link {
                        path: path.clone(),
                        target: String::new(),
                        why: "its target is not UTF-8",
                    })?;
                out.tree.insert(at, Entry::Link { target }, limits)?;
            }
            _ => {
                let executable = entry.header().mode().map_err(io_error)? & 0o111 != 0;
                let remaining = limits.max_bytes.saturating_sub(out.tree.size());
                let bytes = read_content(&mut entry, remaining, limits.max_bytes)?;
                out.tree
                    .insert(at, Entry::File { executable, bytes }, limits)?;
            }
        }
    }
    out.tree.check_links()?;
    Ok(out)
}

/// An entry of a zip, read before its place is known.
struct ZipEntry {
    path: String,
    entry: Option<Entry>,
}

fn read_zip(bytes: &[u8], layout: &Layout, limits: &Limits) -> Result<Unpacked, ArchiveError> {
    let malformed = |e: zip::result::ZipError| ArchiveError::Malformed(e.to_string());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(malformed)?;
    if archive.len() > limits.max_files {
        return Err(ArchiveError::Limit {
            what: format!("{} entries", archive.len()),
            limit: limits.max_files as u64,
        });
    }
    if archive.has_duplicate_names() {
        return Err(ArchiveError::Duplicate {
            path: "(an entry of the zip's directory)".into(),
        });
    }
    let mut read = Vec::with_capacity(archive.len());
    let mut total = 0u64;
    let (mut unpacked, mut compressed) = (0u64, 0u64);
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(malformed)?;
        let path = normalise(file.name_raw())?;
        if file.is_dir() {
            read.push(ZipEntry { path, entry: None });
            continue;
        }
        let mode = file.unix_mode().unwrap_or(0o644);
        let kind = mode & 0o170000;
        let refused = |kind: &'static str| ArchiveError::Kind {
            path: path.clone(),
            kind,
        };
        match kind {
            0 | 0o100000 | 0o120000 => {}
            0o020000 | 0o060000 => return Err(refused("device file")),
            0o010000 => return Err(refused("named pipe")),
            0o140000 => return Err(refused("socket")),
            _ => return Err(refused("entry of an unknown type")),
        }
        let remaining = limits.max_bytes.saturating_sub(total);
        let content =
            read_content(&mut file, remaining, limits.max_bytes).map_err(|e| match e {
                ArchiveError::Malformed(why) => ArchiveError::Malformed(format!(
                    "{path} cannot be read (corrupt or encrypted): {why}"
                )),
                other => other,
            })?;
        let size = content.len() as u64;
        unpacked += size;
        compressed += file.compressed_size();
        if size > RATIO_FLOOR && size / file.compressed_size().max(1) > limits.max_ratio
            || unpacked > RATIO_FLOOR && unpacked / compressed.max(1) > limits.max_ratio
        {
            return Err(ArchiveError::Limit {
                what: format!(
                    "{compressed} compressed bytes unpack to {unpacked} or more, a ratio that betrays a compression bomb"
                ),
                limit: limits.max_ratio,
            });
        }
        total += size;
        let entry = if file.is_symlink() || kind == 0o120000 {
            let target = String::from_utf8(content).map_err(|_| ArchiveError::Link {
                path: path.clone(),
                target: String::new(),
                why: "its target is not UTF-8",
            })?;
            Entry::Link { target }
        } else {
            Entry::File {
                executable: mode & 0o111 != 0,
                bytes: content,
            }
        };
        read.push(ZipEntry {
            path,
            entry: Some(entry),
        });
    }
    let folder = zip_folder(&read, layout);
    let mut out = Unpacked::default();
    for ZipEntry { path, entry } in read {
        let (Some(at), Some(entry)) = (place(&path, &folder), entry) else {
            continue;
        };
        out.tree.insert(at, entry, limits)?;
    }
    out.tree.check_links()?;
    Ok(out)
}

/// The folder of a zip's entries that holds the tree: the layout's folder,
/// or with [`Layout::tolerate_leading`] the longest trailing part of it
/// that every file lies under (none at all when no part fits).
fn zip_folder(entries: &[ZipEntry], layout: &Layout) -> String {
    if !layout.tolerate_leading || layout.folder.is_empty() {
        return layout.folder.clone();
    }
    let segments: Vec<&str> = layout.folder.split('/').collect();
    for start in 0..segments.len() {
        let candidate = segments[start..].join("/");
        let fits = entries
            .iter()
            .filter(|e| e.entry.is_some())
            .all(|e| place(&e.path, &candidate).is_some());
        if fits {
            return candidate;
        }
    }
    String::new()
}
