//! Source snapshots as files: the canonical archive a run's source is kept
//! in, named by its SHA-256, and the one way any archive the factory reads
//! (GitHub's tarballs, Azure DevOps' zips, `git archive`, its own snapshots)
//! becomes files on disk.
//!
//! An archive is hostile input. It is read into a [`SourceTree`] first, in
//! memory and within [`Limits`], with every path checked ([`SourceTree::insert`]):
//! no `..`, no absolute path or drive letter, no hard link, device file or
//! duplicate entry, no symbolic link that leaves the tree or passes through
//! another link. Only a tree that passed every check is written to disk
//! ([`unpack`]), into a folder that did not exist, never following a link.
//!
//! The canonical form of a tree ([`SourceTree::canonical`]) is a tar archive
//! of its files and links, sorted by path, each file 0644 or 0755 by its
//! executable bit, links 0777, owner 0, group 0, time 0, no user or group
//! names, folders implied by the paths: the same tree always gives the same
//! bytes, so the same hash, whatever order, times or owners it came with.

mod read;
mod tree;
mod unpack;

pub use read::{Format, Layout, Unpacked, read};
pub use tree::{
    ArchiveError, Entry, Limits, MAX_DEPTH, MAX_PATH, RATIO_FLOOR, SourceTree, normalise,
    sha256_hex,
};
pub use unpack::unpack;

#[cfg(test)]
mod tests;
