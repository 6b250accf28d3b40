//! The content hash of a run's build inputs: every file of the image's
//! template folder (but `image.toml`'s approval and test settings), the packer
//! variables and baseline the factory passes, and the Marketplace base image
//! version when known. Two runs with the same hash build the same image, so
//! the second can be skipped. Beside the hash, the same inputs one by one
//! (each file's own hash), from which the release notes name what changed
//! (by path, with a name's control characters escaped: `domain::controls`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::controls::{Lines, escape_controls};
use crate::domain::image::{IMAGE_FILE, ImageConfig};
use crate::domain::run::InputManifest;

/// A build's inputs: their hash, and the same inputs one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs {
    /// One hash of everything (build avoidance compares it).
    pub hash: String,
    /// Each input on its own (the release notes compare them); `None` for
    /// a folder of more than [`MANIFEST_FILES`] files, whose list would
    /// weigh down every run record.
    pub manifest: Option<InputManifest>,
}

/// Files of an image folder beyond which the inputs are not listed one by one.
pub const MANIFEST_FILES: usize = 1000;

/// Hashes the inputs of a build of `image` from `base_image_version`.
pub fn inputs(image: &ImageConfig, base_image_version: Option<&str>) -> std::io::Result<Inputs> {
    let mut files = Vec::new();
    collect(&image.dir, &image.dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    let mut manifest = InputManifest {
        variables: image.settings.packer.variables.clone(),
        baseline: image.settings.baseline_version.clone(),
        base_image_version: base_image_version.map(String::from),
        ..InputManifest::default()
    };
    for relative in &files {
        let bytes = std::fs::read(image.dir.join(relative))?;
        let path = relative.to_string_lossy();
        field(&mut hasher, "file", path.as_bytes());
        field(&mut hasher, "content", &bytes);
        let key: Vec<_> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect();
        // The path as the notes show it: a name's control characters escaped.
        let key = escape_controls(&key.join("/"), Lines::Escape).into_owned();
        manifest.files.insert(key, hex(&Sha256::digest(&bytes)));
    }
    for (name, value) in &image.settings.packer.variables {
        field(&mut hasher, "var", name.as_bytes());
        field(&mut hasher, "value", value.as_bytes());
    }
    field(
        &mut hasher,
        "baseline",
        image.settings.baseline_version.as_bytes(),
    );
    field(
        &mut hasher,
        "base",
        base_image_version.unwrap_or_default().as_bytes(),
    );
    Ok(Inputs {
        hash: hex(&hasher.finalize()),
        manifest: (files.len() <= MANIFEST_FILES).then_some(manifest),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Length-prefixed, so no two different inputs hash the same stream.
fn field(hasher: &mut Sha256, tag: &str, bytes: &[u8]) {
    hasher.update(tag.as_bytes());
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file()
            && !(dir == root && entry.file_name() == IMAGE_FILE)
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::parse_image_settings;

    fn hash(image: &ImageConfig, base: Option<&str>) -> std::io::Result<String> {
        inputs(image, base).map(|i| i.hash)
    }

    fn image(dir: &Path) -> ImageConfig {
        let settings = parse_image_settings(
            "[smoke.command]\nargv = [\"true\"]\n[approval]\napprovers = [\"a\"]\n",
        )
        .unwrap();
        ImageConfig {
            name: "x".into(),
            dir: dir.to_path_buf(),
            settings,
        }
    }

    /// An image folder: a template, a script and `image.toml`.
    fn template_folder() -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("build.pkr.hcl"), "build {}").unwrap();
        std::fs::write(dir.path().join("scripts/a.ps1"), "Write-Host a").unwrap();
        std::fs::write(dir.path().join(IMAGE_FILE), "approvers").unwrap();
        dir
    }

    #[test]
    fn the_hash_changes_with_any_template_file_variable_or_base_version_and_nothing_else() {
        let dir = template_folder();
        let img = image(dir.path());
        let base = hash(&img, None).unwrap();
        assert_eq!(base, hash(&img, None).unwrap());

        std::fs::write(dir.path().join(IMAGE_FILE), "other approvers").unwrap();
        assert_eq!(
            base,
            hash(&img, None).unwrap(),
            "approval settings are not build inputs"
        );

        assert_ne!(base, hash(&img, Some("20348.2849.241109")).unwrap());

        std::fs::write(dir.path().join("scripts/a.ps1"), "Write-Host b").unwrap();
        let script_changed = hash(&img, None).unwrap();
        assert_ne!(base, script_changed);

        let mut with_var = img.clone();
        with_var
            .settings
            .packer
            .variables
            .insert("vm_size".into(), "Standard_D4s_v5".into());
        assert_ne!(script_changed, hash(&with_var, None).unwrap());

        std::fs::rename(
            dir.path().join("scripts/a.ps1"),
            dir.path().join("scripts/b.ps1"),
        )
        .unwrap();
        assert_ne!(
            script_changed,
            hash(&img, None).unwrap(),
            "a renamed file changes the hash"
        );
    }

    #[test]
    fn the_manifest_holds_each_file_hash_by_its_path_and_the_settings() {
        let dir = template_folder();
        let img = image(dir.path());
        let manifest = inputs(&img, Some("20348.1")).unwrap().manifest.unwrap();
        let paths: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["build.pkr.hcl", "scripts/a.ps1"],
            "image.toml is not an input"
        );
        assert_eq!(
            manifest.files["scripts/a.ps1"],
            hex(&Sha256::digest(b"Write-Host a")),
            "each file's own SHA-256"
        );
        assert_eq!(manifest.base_image_version.as_deref(), Some("20348.1"));
        assert_eq!(manifest.baseline, img.settings.baseline_version);

        std::fs::write(dir.path().join("scripts/a.ps1"), "Write-Host b").unwrap();
        let changed = inputs(&img, Some("20348.1"))
            .unwrap()
            .manifest
            .unwrap()
            .changes_since(&manifest);
        assert_eq!(changed.modified, ["scripts/a.ps1"]);
        assert!(changed.added.is_empty() && changed.removed.is_empty());
    }

    #[test]
    fn a_folder_of_too_many_files_is_hashed_but_not_listed() {
        let dir = tempfile::TempDir::new().unwrap();
        for i in 0..=MANIFEST_FILES {
            std::fs::write(dir.path().join(format!("f{i}")), "x").unwrap();
        }
        let result = inputs(&image(dir.path()), None).unwrap();
        assert_eq!(result.manifest, None);
        assert_eq!(result.hash.len(), 64);
    }
}
