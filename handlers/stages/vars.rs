//! The `-var` arguments of a run's packer commands (validate and build).

use crate::domain::image::ImageConfig;
use crate::domain::run::BuildSpec;

/// The `-var` arguments every packer command of a run gets: the run's version
/// and commit as the seed passes them, the image's baseline, and the image's
/// own variables. The factory's variables are passed only to templates that
/// declare them (packer refuses undeclared `-var`s).
pub(super) fn packer_vars(
    spec: &BuildSpec,
    image: &ImageConfig,
    declared: &[String],
) -> Vec<String> {
    let factory = [
        ("gallery_image_version", spec.version.clone()),
        ("run_id", spec.commit.clone()),
        // The run's id: the template tags what the builder creates with it (the reaper's key).
        ("factory_run_id", spec.run_id.to_string()),
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
