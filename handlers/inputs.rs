//! The content hash of a run's build inputs: every file of the image's
//! folder in the run's source snapshot (but `image.toml`, whose approval and
//! test settings are not build inputs), the packer variables and baseline
//! the factory passes, and the Marketplace base image version when known.
//! Two runs with the same hash build the same image, so the second can be
//! skipped. Beside the hash, the same inputs one by one (each file's own
//! hash), from which the release notes name what changed (by path, with a
//! name's control characters escaped: `domain::controls`). Pure: the files
//! come from the snapshot, in memory.

use sha2::{Digest, Sha256};

use crate::domain::controls::{Lines, escape_controls};
use crate::domain::image::{IMAGE_FILE, ImageSettings};
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

/// One entry of an image's folder: its path in the folder (`/`-separated)
/// and its content (a link's content is its target).
pub type FolderEntry<'a> = (&'a str, &'a [u8]);

/// Hashes the inputs of a build from the image folder's `entries` (in any
/// order), its `settings` and `base_image_version`.
pub fn inputs<'a>(
    entries: impl IntoIterator<Item = FolderEntry<'a>>,
    settings: &ImageSettings,
    base_image_version: Option<&str>,
) -> Inputs {
    let mut files: Vec<FolderEntry<'a>> = entries
        .into_iter()
        .filter(|(path, _)| *path != IMAGE_FILE)
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    let mut manifest = InputManifest {
        variables: settings.packer.variables.clone(),
        baseline: settings.baseline_version.clone(),
        base_image_version: base_image_version.map(String::from),
        ..InputManifest::default()
    };
    for (path, bytes) in &files {
        field(&mut hasher, "file", path.as_bytes());
        field(&mut hasher, "content", bytes);
        // The path as the notes show it: a name's control characters escaped.
        manifest.files.insert(
            escape_controls(path, Lines::Escape).into_owned(),
            hex(&Sha256::digest(bytes)),
        );
    }
    for (name, value) in &settings.packer.variables {
        field(&mut hasher, "var", name.as_bytes());
        field(&mut hasher, "value", value.as_bytes());
    }
    field(
        &mut hasher,
        "baseline",
        settings.baseline_version.as_bytes(),
    );
    field(
        &mut hasher,
        "base",
        base_image_version.unwrap_or_default().as_bytes(),
    );
    Inputs {
        hash: hex(&hasher.finalize()),
        manifest: (files.len() <= MANIFEST_FILES).then_some(manifest),
    }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::image::parse_image_settings;

    fn settings() -> ImageSettings {
        parse_image_settings(
            "[smoke.command]\nargv = [\"true\"]\n[approval]\napprovers = [\"a\"]\n",
        )
        .unwrap()
    }

    /// An image folder: a template, a script and `image.toml`.
    fn template_folder() -> BTreeMap<String, Vec<u8>> {
        [
            ("build.pkr.hcl", "build {}"),
            ("scripts/a.ps1", "Write-Host a"),
            (IMAGE_FILE, "approvers"),
        ]
        .into_iter()
        .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
        .collect()
    }

    fn of(
        folder: &BTreeMap<String, Vec<u8>>,
        settings: &ImageSettings,
        base: Option<&str>,
    ) -> Inputs {
        inputs(
            folder.iter().map(|(p, b)| (p.as_str(), b.as_slice())),
            settings,
            base,
        )
    }

    fn hash(folder: &BTreeMap<String, Vec<u8>>, base: Option<&str>) -> String {
        of(folder, &settings(), base).hash
    }

    #[test]
    fn the_hash_changes_with_any_template_file_variable_or_base_version_and_nothing_else() {
        let mut folder = template_folder();
        let base = hash(&folder, None);
        assert_eq!(base, hash(&folder, None));

        folder.insert(IMAGE_FILE.into(), b"other approvers".to_vec());
        assert_eq!(
            base,
            hash(&folder, None),
            "approval settings are not build inputs"
        );

        assert_ne!(base, hash(&folder, Some("20348.2849.241109")));

        folder.insert("scripts/a.ps1".into(), b"Write-Host b".to_vec());
        let script_changed = hash(&folder, None);
        assert_ne!(base, script_changed);

        let mut with_var = settings();
        with_var
            .packer
            .variables
            .insert("vm_size".into(), "Standard_D4s_v5".into());
        assert_ne!(script_changed, of(&folder, &with_var, None).hash);

        let moved = folder.remove("scripts/a.ps1").unwrap();
        folder.insert("scripts/b.ps1".into(), moved);
        assert_ne!(
            script_changed,
            hash(&folder, None),
            "a renamed file changes the hash"
        );
    }

    #[test]
    fn the_manifest_holds_each_file_hash_by_its_path_and_the_settings() {
        let mut folder = template_folder();
        let settings = settings();
        let manifest = of(&folder, &settings, Some("20348.1")).manifest.unwrap();
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
        assert_eq!(manifest.baseline, settings.baseline_version);

        folder.insert("scripts/a.ps1".into(), b"Write-Host b".to_vec());
        let changed = of(&folder, &settings, Some("20348.1"))
            .manifest
            .unwrap()
            .changes_since(&manifest);
        assert_eq!(changed.modified, ["scripts/a.ps1"]);
        assert!(changed.added.is_empty() && changed.removed.is_empty());
    }

    #[test]
    fn a_folder_of_too_many_files_is_hashed_but_not_listed() {
        let folder: BTreeMap<String, Vec<u8>> = (0..=MANIFEST_FILES)
            .map(|i| (format!("f{i}"), b"x".to_vec()))
            .collect();
        let result = of(&folder, &settings(), None);
        assert_eq!(result.manifest, None);
        assert_eq!(result.hash.len(), 64);
    }
}
