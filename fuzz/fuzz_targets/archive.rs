//! Any bytes as a source archive (tar, gzipped tar, zip, under each layout
//! the hosts use): the reader refuses or reads within its limits, never
//! panics; what it reads unpacks with nothing written outside the target
//! folder and no link leading out of it; its canonical form reads back to
//! the same hash.
#![no_main]

use std::path::Path;

use image_factory::archive::{self, Format, Layout, Limits};
use libfuzzer_sys::fuzz_target;

/// Every link under `dir` resolves inside `root` (or to nothing).
fn links_stay_inside(root: &Path, dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read the unpacked folder") {
        let path = entry.expect("an entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            if let Ok(resolved) = std::fs::canonicalize(&path) {
                assert!(resolved.starts_with(root), "{} leaves the tree", path.display());
            }
        } else if meta.is_dir() {
            links_stay_inside(root, &path);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_files: 200,
        max_bytes: 1 << 20,
        max_read: 4 << 20,
        max_ratio: 100,
    };
    let layouts = [
        Layout::default(),
        Layout {
            strip_first: true,
            folder: "images".into(),
            tolerate_leading: false,
        },
        Layout {
            strip_first: false,
            folder: "src/images".into(),
            tolerate_leading: true,
        },
    ];
    for format in [Format::Tar, Format::TarGz, Format::Zip] {
        for layout in &layouts {
            let Ok(read) = archive::read(data, format, layout, &limits) else {
                continue;
            };
            let dir = tempfile::TempDir::new().expect("temp dir");
            let run = dir.path().join("run");
            std::fs::create_dir(&run).expect("run folder");
            let target = run.join("source");
            if archive::unpack(&read.tree, &target).is_ok() {
                let root = std::fs::canonicalize(&target).expect("the target");
                links_stay_inside(&root, &root);
            }
            let beside: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
            assert_eq!(beside.len(), 1, "only the run folder");
            let (bytes, hash) = read.tree.canonical_with_hash();
            let again = archive::read(&bytes, Format::Tar, &Layout::default(), &limits)
                .expect("a canonical archive reads back");
            assert_eq!(again.tree.canonical_with_hash().1, hash);
        }
    }
});
