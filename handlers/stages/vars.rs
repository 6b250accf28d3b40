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
