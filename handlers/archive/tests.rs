use std::io::Write;

use proptest::prelude::*;

use super::*;

fn file(bytes: &[u8], executable: bool) -> Entry {
    Entry::File {
        executable,
        bytes: bytes.to_vec(),
    }
}

fn tree(entries: &[(&str, Entry)]) -> SourceTree {
    let mut tree = SourceTree::new();
    for (path, entry) in entries {
        tree.insert(path.to_string(), entry.clone(), &Limits::default())
            .expect("a valid entry");
    }
    tree
}

/// One raw tar header with any name, type, mode, owner and time (the
/// crate's own setters refuse `..` and absolute names: an attacker's do not).
fn raw_entry(
    out: &mut Vec<u8>,
    name: &[u8],
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    link: &[u8],
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(1000 + mtime % 7);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

/// An entry as [`tar_of`] takes it: name, type, link target, content.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn tar_of(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        raw_entry(&mut out, name, *kind, 0o644, 0, link, data);
    }
    finish(out)
}

fn read_tar(bytes: &[u8]) -> Result<SourceTree, ArchiveError> {
    read(bytes, Format::Tar, &Layout::default(), &Limits::default()).map(|r| r.tree)
}

const REGULAR: tar::EntryType = tar::EntryType::Regular;

/// A tree as a generator: up to 12 files with small paths, contents and exec bits.
fn trees() -> impl Strategy<Value = Vec<(String, Vec<u8>, bool)>> {
    proptest::collection::btree_map(
        "[a-c]{1,3}(/[a-c]{1,3}){0,2}\\.(txt|sh)",
        (proptest::collection::vec(any::<u8>(), 0..64), any::<bool>()),
        1..12,
    )
    .prop_map(|m| {
        // Drop files whose path is another's folder (a/b and a/b/c.txt cannot both be).
        let paths: Vec<String> = m.keys().cloned().collect();
        m.into_iter()
            .filter(|(p, _)| !paths.iter().any(|q| q.starts_with(&format!("{p}/"))))
            .map(|(p, (bytes, exec))| (p, bytes, exec))
            .collect()
    })
}

fn build(files: &[(String, Vec<u8>, bool)]) -> SourceTree {
    let mut tree = SourceTree::new();
    for (path, bytes, exec) in files {
        tree.insert(path.clone(), file(bytes, *exec), &Limits::default())
            .expect("insert");
    }
    tree
}

proptest! {
    #[test]
    fn the_same_tree_gives_the_same_hash_whatever_the_order_times_modes_and_owners(
        files in trees(),
        seed in any::<u64>(),
    ) {
        let expected = build(&files).canonical_with_hash().1;
        // The same files in another order, as a foreign tar with its own
        // times, owners and permission bits (only the exec bit counts).
        let mut shuffled = files.clone();
        let n = shuffled.len();
        for i in 0..n {
            let j = (seed as usize).wrapping_mul(31).wrapping_add(i * 17) % n;
            shuffled.swap(i, j);
        }
        let mut out = Vec::new();
        for (i, (path, bytes, exec)) in shuffled.iter().enumerate() {
            let mode = if *exec { 0o700 | (seed as u32 & 0o055) } else { 0o600 | (seed as u32 & 0o044) };
            raw_entry(&mut out, path.as_bytes(), REGULAR, mode, seed.wrapping_add(i as u64) % 1_000_000_000, b"", bytes);
        }
        let read_back = read_tar(&finish(out)).expect("a valid archive");
        prop_assert_eq!(read_back.canonical_with_hash().1, expected.clone());
        // And the canonical archive reads back to itself.
        let canonical = build(&files).canonical();
        prop_assert_eq!(read_tar(&canonical).expect("canonical").canonical_with_hash().1, expected);
    }

    #[test]
    fn any_change_to_a_files_bytes_name_or_exec_bit_changes_the_hash(
        files in trees(),
        which in any::<prop::sample::Index>(),
        change in 0..3u8,
    ) {
        let before = build(&files).canonical_with_hash().1;
        let mut changed = files.clone();
        let i = which.index(changed.len());
        match change {
            0 => changed[i].1.push(b'!'),
            1 => changed[i].0.push('x'),
            _ => changed[i].2 = !changed[i].2,
        }
        prop_assume!(changed.iter().filter(|f| f.0 == changed[i].0).count() == 1);
        prop_assume!(!changed.iter().any(|f| f.0.starts_with(&format!("{}/", changed[i].0))));
        prop_assert_ne!(build(&changed).canonical_with_hash().1, before);
    }
}

#[test]
fn the_canonical_archive_has_fixed_modes_owners_and_times() {
    let t = tree(&[
        ("b/run.sh", file(b"#!/bin/sh\n", true)),
        ("a.txt", file(b"a", false)),
        (
            "link",
            Entry::Link {
                target: "a.txt".into(),
            },
        ),
    ]);
    let bytes = t.canonical();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let seen: Vec<(String, u32, u64, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
                h.uid().unwrap() + h.gid().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a.txt".to_string(), 0o644, 0, 0),
            ("b/run.sh".to_string(), 0o755, 0, 0),
            ("link".to_string(), 0o777, 0, 0),
        ]
    );
    assert_eq!(t.folder_hash("b"), sha256_hex(&t.subtree("b").canonical()));
    assert_ne!(t.folder_hash("b"), t.canonical_with_hash().1);
}

#[test]
fn paths_that_leave_the_tree_are_refused_by_name() {
    for (name, why) in [
        (&b"../x"[..], "`..`"),
        (b"a/../../x", "`..`"),
        (b"/etc/passwd", "absolute"),
        (b"C:/Windows/x", "drive letter"),
        (b"c:x", "drive letter"),
        (b"a\\..\\x", "backslash"),
        (b"a/\xff", "UTF-8"),
    ] {
        let error = read_tar(&tar_of(&[(name, REGULAR, b"", b"x")])).expect_err("refused");
        assert!(error.to_string().contains(why), "{name:?}: {error}");
    }
    let deep = "a/".repeat(65) + "x";
    assert!(
        normalise(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("deep")
    );
    assert_eq!(normalise(b"./a//b/").unwrap(), "a/b");
}

#[test]
fn hard_links_devices_and_pipes_are_refused() {
    for (kind, named) in [
        (tar::EntryType::Link, "hard link"),
        (tar::EntryType::Char, "device file"),
        (tar::EntryType::Block, "device file"),
        (tar::EntryType::Fifo, "named pipe"),
    ] {
        let archive = tar_of(&[(b"a", REGULAR, b"", b"x"), (b"b", kind, b"a", b"")]);
        let error = read_tar(&archive).expect_err("refused");
        assert!(error.to_string().contains(named), "{error}");
    }
}

#[test]
fn duplicate_entries_and_a_file_where_a_folder_is_are_refused() {
    let twice = tar_of(&[(b"a", REGULAR, b"", b"1"), (b"./a", REGULAR, b"", b"2")]);
    assert!(matches!(
        read_tar(&twice),
        Err(ArchiveError::Duplicate { .. })
    ));
    let file_then_folder = tar_of(&[(b"a", REGULAR, b"", b"1"), (b"a/b", REGULAR, b"", b"2")]);
    assert!(matches!(
        read_tar(&file_then_folder),
        Err(ArchiveError::Duplicate { .. })
    ));
    let folder_then_file = tar_of(&[(b"a/b", REGULAR, b"", b"1"), (b"a", REGULAR, b"", b"2")]);
    assert!(matches!(
        read_tar(&folder_then_file),
        Err(ArchiveError::Duplicate { .. })
    ));
}

#[test]
fn links_are_kept_inside_the_tree_and_refused_when_they_leave_it_or_chain() {
    let sym = tar::EntryType::Symlink;
    let inside = tar_of(&[
        (b"a/f", REGULAR, b"", b"x"),
        (b"a/l", sym, b"f", b""),
        (b"b/l", sym, b"../a/f", b""),
    ]);
    assert_eq!(read_tar(&inside).expect("inside").entries().len(), 3);
    for (target, why) in [
        (&b"../../etc"[..], "leaves"),
        (b"/etc/passwd", "absolute"),
        (b"../..", "leaves"),
    ] {
        let archive = tar_of(&[(b"a/l", sym, target, b"")]);
        let error = read_tar(&archive).expect_err("refused");
        assert!(error.to_string().contains(why), "{target:?}: {error}");
    }
    // `s` -> `.` is inside, but `a` -> `s/..` climbs out through it.
    let chained = tar_of(&[(b"d/s", sym, b".", b""), (b"d/a", sym, b"s/../..", b"")]);
    assert!(read_tar(&chained).is_err());
    let through = tar_of(&[(b"s", sym, b"d", b""), (b"a", sym, b"s/x", b"")]);
    let error = read_tar(&through).expect_err("through a link");
    assert!(error.to_string().contains("another link"), "{error}");
    let under = tar_of(&[(b"s", sym, b"d", b""), (b"s/x", REGULAR, b"", b"1")]);
    assert!(matches!(
        read_tar(&under),
        Err(ArchiveError::Duplicate { .. })
    ));
}

#[test]
fn more_files_or_bytes_than_the_limits_are_refused() {
    let limits = Limits {
        max_files: 3,
        max_bytes: 10,
        ..Limits::default()
    };
    let many = tar_of(&[
        (b"a", REGULAR, b"", b""),
        (b"b", REGULAR, b"", b""),
        (b"c", REGULAR, b"", b""),
        (b"d", REGULAR, b"", b""),
    ]);
    let error = read(&many, Format::Tar, &Layout::default(), &limits).expect_err("too many");
    assert!(
        matches!(error, ArchiveError::Limit { limit: 3, .. }),
        "{error}"
    );
    let big = tar_of(&[
        (b"a", REGULAR, b"", b"123456"),
        (b"b", REGULAR, b"", b"123456"),
    ]);
    let error = read(&big, Format::Tar, &Layout::default(), &limits).expect_err("too big");
    assert!(
        matches!(error, ArchiveError::Limit { limit: 10, .. }),
        "{error}"
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_compression_bomb_is_refused_before_it_is_unpacked() {
    // 64 MiB of zeros gzip to about 64 KiB: a ratio of 1000.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let bomb = gzip(&tar_of(&[(b"zeros", REGULAR, b"", &zeros)]));
    let error =
        read(&bomb, Format::TarGz, &Layout::default(), &Limits::default()).expect_err("bomb");
    assert!(error.to_string().contains("compression bomb"), "{error}");
    // The same bytes under a ratio that allows them are read.
    let lenient = Limits {
        max_ratio: 10_000,
        ..Limits::default()
    };
    let tree = read(&bomb, Format::TarGz, &Layout::default(), &lenient)
        .expect("allowed")
        .tree;
    assert_eq!(tree.size(), zeros.len() as u64);
    // A zip bomb too.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("zeros", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&zeros).unwrap();
    let bomb = zip.finish().unwrap().into_inner();
    let error = read(&bomb, Format::Zip, &Layout::default(), &Limits::default()).expect_err("bomb");
    assert!(error.to_string().contains("compression bomb"), "{error}");
}

#[test]
fn a_github_tarball_loses_its_top_folder_and_names_its_commit() {
    let mut out = Vec::new();
    let comment = b"52 comment=0123456789abcdef0123456789abcdef01234567\n";
    raw_entry(
        &mut out,
        b"pax_global_header",
        tar::EntryType::XGlobalHeader,
        0o666,
        0,
        b"",
        comment,
    );
    raw_entry(
        &mut out,
        b"octo-images-0123456/",
        tar::EntryType::Directory,
        0o755,
        0,
        b"",
        b"",
    );
    raw_entry(
        &mut out,
        b"octo-images-0123456/README.md",
        REGULAR,
        0o644,
        0,
        b"",
        b"readme",
    );
    raw_entry(
        &mut out,
        b"octo-images-0123456/images/web/image.toml",
        REGULAR,
        0o644,
        0,
        b"",
        b"x",
    );
    raw_entry(
        &mut out,
        b"octo-images-0123456/images/web/run.sh",
        REGULAR,
        0o755,
        0,
        b"",
        b"y",
    );
    let archive = gzip(&finish(out));
    let layout = Layout {
        strip_first: true,
        folder: "images".into(),
        tolerate_leading: false,
    };
    let read = read(&archive, Format::TarGz, &layout, &Limits::default()).expect("read");
    assert_eq!(
        read.commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    let paths: Vec<&String> = read.tree.entries().keys().collect();
    assert_eq!(paths, ["web/image.toml", "web/run.sh"]);
    assert_eq!(read.tree.top_folders(), ["web"]);

    let mut two = Vec::new();
    raw_entry(&mut two, b"a/images/x", REGULAR, 0o644, 0, b"", b"1");
    raw_entry(&mut two, b"b/images/y", REGULAR, 0o644, 0, b"", b"2");
    let error =
        super::read(&finish(two), Format::Tar, &layout, &Limits::default()).expect_err("two tops");
    assert!(error.to_string().contains("one top folder"), "{error}");
}

#[test]
fn a_zip_of_the_images_path_is_read_with_or_without_its_leading_folder() {
    let zip_of = |names: &[&str]| {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for name in names {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(name.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    };
    let layout = Layout {
        strip_first: false,
        folder: "src/images".into(),
        tolerate_leading: true,
    };
    for names in [
        ["src/images/web/image.toml", "src/images/web/a.sh"],
        ["images/web/image.toml", "images/web/a.sh"],
        ["web/image.toml", "web/a.sh"],
    ] {
        let tree = read(&zip_of(&names), Format::Zip, &layout, &Limits::default())
            .expect("read")
            .tree;
        let paths: Vec<&String> = tree.entries().keys().collect();
        assert_eq!(paths, ["web/a.sh", "web/image.toml"], "{names:?}");
    }
    let error = read(&zip_of(&["../x"]), Format::Zip, &layout, &Limits::default()).expect_err("..");
    assert!(error.to_string().contains("`..`"), "{error}");
}

#[test]
fn unpacking_writes_the_tree_and_nothing_outside_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let t = tree(&[
        ("web/image.toml", file(b"toml", false)),
        ("web/scripts/run.sh", file(b"#!/bin/sh", true)),
        (
            "web/link",
            Entry::Link {
                target: "scripts/run.sh".into(),
            },
        ),
    ]);
    let target = dir.path().join("source");
    unpack(&t, &target).expect("unpack");
    assert_eq!(
        std::fs::read(target.join("web/link")).unwrap(),
        b"#!/bin/sh"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(target.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    // Private, as the rest of the data folder; the executable bit is kept.
    assert_eq!(mode("web/scripts/run.sh"), 0o700);
    assert_eq!(mode("web/image.toml"), 0o600);
    assert_eq!(mode("web/scripts"), 0o700);
    // Unpacked again over itself: the old content goes, nothing is left beside it.
    std::fs::write(target.join("web/stray"), "edited").unwrap();
    unpack(&t, &target).expect("again");
    assert!(!target.join("web/stray").exists());
    let beside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
