//! The `-var` arguments of a run's packer commands (validate and build).

use std::path::Path;

use crate::domain::evidence::EVIDENCE_FILE;
use crate::domain::image::ImageConfig;
use crate::domain::run::BuildSpec;

/// The `-var` arguments every packer command of a run gets: the run's version
/// and commit as the seed passes them, the run's id (`factory_run_id`, which
/// the Windows template tags its resources with), the image's baseline,
/// where the build leaves its patch evidence (`evidence_path`: in
/// `run_dir`, the run's folder, when given; else the file's name), and the
/// image's own variables. The factory's variables are passed only to
/// templates that declare them (packer refuses undeclared `-var`s).
pub(super) fn packer_vars(
    spec: &BuildSpec,
    image: &ImageConfig,
    declared: &[String],
    run_dir: Option<&Path>,
) -> Vec<String> {
    let evidence = run_dir.map_or_else(
        || EVIDENCE_FILE.to_string(),
        |dir| dir.join(EVIDENCE_FILE).display().to_string(),
    );
    let factory = [
        ("gallery_image_version", spec.version.clone()),
        ("run_id", spec.commit.clone()),
        // The run's id: the template tags what the builder creates with it (the reaper's key).
        ("factory_run_id", spec.run_id.to_string()),
        ("evidence_path", evidence),
        ("baseline_version", image.settings.baseline_version.clone()),
        (
            "base_image_version",
            spec.base_image_version.clone().unwrap_or_default(),
        ),
    ];
    let mut args = Vec::new();
    for (name, value) in factory {
        let given = matches!(name, "baseline_version" | "base_image_version") && value.is_empty();
        if declared.iter().any(|d| d == name) && !given {
            args.push("-var".to_string());
            args.push(format!("{name}={value}"));
        }
    }
    for (name, value) in &image.settings.packer.variables {
        args.push("-var".to_string());
        args.push(format!("{name}={value}"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::parse_image_settings;

    fn image() -> ImageConfig {
        ImageConfig {
            name: "example".into(),
            dir: "images/example".into(),
            settings: parse_image_settings(
                "baseline_version = \"2024.1\"\n[smoke.command]\nargv = [\"true\"]\n[approval]\napprovers = [\"lead\"]\n",
            )
            .expect("settings"),
        }
    }

    fn spec() -> BuildSpec {
        BuildSpec {
            run_id: "push-example-c0ffee".parse().expect("a run id"),
            version: "2026.1201.0".into(),
            commit: "c0ffee".into(),
            base_image_version: None,
        }
    }

    #[test]
    fn the_run_id_goes_to_a_template_that_declares_factory_run_id_and_to_no_other() {
        let declared: Vec<String> = ["gallery_image_version", "run_id", "factory_run_id"]
            .map(String::from)
            .to_vec();
        let args = packer_vars(&spec(), &image(), &declared, None);
        assert_eq!(
            args,
            [
                "-var",
                "gallery_image_version=2026.1201.0",
                "-var",
                "run_id=c0ffee",
                "-var",
                "factory_run_id=push-example-c0ffee"
            ]
        );
        let older = packer_vars(&spec(), &image(), &declared[..2], None);
        assert!(
            !older.iter().any(|a| a.starts_with("factory_run_id=")),
            "packer refuses a -var the template does not declare: {older:?}"
        );
    }
}
