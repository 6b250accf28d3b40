//! The content hash of a run's build inputs: every file of the image's
//! template folder (but `image.toml`'s approval and test settings), the packer
//! variables and baseline the factory passes, and the Marketplace base image
//! version when known. Two runs with the same hash build the same image, so
//! the second can be skipped.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::image::{IMAGE_FILE, ImageConfig};

/// Hashes the inputs of a build of `image` from `base_image_version`.
pub fn inputs_hash(
    image: &ImageConfig,
    base_image_version: Option<&str>,
) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(&image.dir, &image.dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in &files {
        let bytes = std::fs::read(image.dir.join(relative))?;
        field(&mut hasher, "file", relative.to_string_lossy().as_bytes());
        field(&mut hasher, "content", &bytes);
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
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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

    #[test]
    fn the_hash_changes_with_any_template_file_variable_or_base_version_and_nothing_else() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::write(dir.path().join("build.pkr.hcl"), "build {}").unwrap();
        std::fs::write(dir.path().join("scripts/a.ps1"), "Write-Host a").unwrap();
        std::fs::write(dir.path().join(IMAGE_FILE), "approvers").unwrap();
        let img = image(dir.path());
        let base = inputs_hash(&img, None).unwrap();
        assert_eq!(base, inputs_hash(&img, None).unwrap());

        std::fs::write(dir.path().join(IMAGE_FILE), "other approvers").unwrap();
        assert_eq!(
            base,
            inputs_hash(&img, None).unwrap(),
            "approval settings are not build inputs"
        );

        assert_ne!(base, inputs_hash(&img, Some("20348.2849.241109")).unwrap());

        std::fs::write(dir.path().join("scripts/a.ps1"), "Write-Host b").unwrap();
        let script_changed = inputs_hash(&img, None).unwrap();
        assert_ne!(base, script_changed);

        let mut with_var = img.clone();
        with_var
            .settings
            .packer
            .variables
            .insert("vm_size".into(), "Standard_D4s_v5".into());
        assert_ne!(script_changed, inputs_hash(&with_var, None).unwrap());

        std::fs::rename(
            dir.path().join("scripts/a.ps1"),
            dir.path().join("scripts/b.ps1"),
        )
        .unwrap();
        assert_ne!(
            script_changed,
            inputs_hash(&img, None).unwrap(),
            "a renamed file changes the hash"
        );
    }
}
