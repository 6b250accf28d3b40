//! The traceability tags stamped on every artifact, as the seed's
//! `local.computed_tags` computes them: the image's common tags merged with
//! gitRef, imageVersion, imageName, buildDate and baselineVersion.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::version::ImageVersion;

/// The inputs of the computed tags.
pub struct TagInputs<'a> {
    /// The image's own tags (Environment, CreatedBy, ...).
    pub common: &'a BTreeMap<String, String>,
    /// The commit built, if any.
    pub git_ref: Option<&'a str>,
    /// The run's version.
    pub version: ImageVersion,
    /// The gallery image definition name, if set.
    pub gallery_image_name: Option<&'a str>,
    /// The image's name.
    pub image_name: &'a str,
    /// The day of the build.
    pub build_date: NaiveDate,
    /// The image's baseline (hardening baseline) version.
    pub baseline_version: &'a str,
}

/// The tags: common tags first, computed tags override them.
pub fn computed_tags(inputs: &TagInputs<'_>) -> BTreeMap<String, String> {
    let mut tags = inputs.common.clone();
    let git_ref = inputs.git_ref.filter(|r| !r.is_empty()).unwrap_or("manual");
    let image_name = match inputs.gallery_image_name.filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None => format!("{}-img", inputs.image_name),
    };
    for (k, v) in [
        ("gitRef", git_ref.to_string()),
        ("imageVersion", inputs.version.to_string()),
        ("imageName", image_name),
        (
            "buildDate",
            inputs.build_date.format("%Y-%m-%d").to_string(),
        ),
        ("baselineVersion", inputs.baseline_version.to_string()),
    ] {
        tags.insert(k.to_string(), v);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(common: &'a BTreeMap<String, String>, git_ref: Option<&'a str>) -> TagInputs<'a> {
        TagInputs {
            common,
            git_ref,
            version: ImageVersion::new(2026, 1125, 0).unwrap(),
            gallery_image_name: None,
            image_name: "web-base",
            build_date: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            baseline_version: "cis-2.0",
        }
    }

    #[test]
    fn computed_tags_follow_the_seed_and_override_common_tags() {
        let common = BTreeMap::from([
            ("Environment".to_string(), "Staging".to_string()),
            ("imageVersion".to_string(), "stale".to_string()),
        ]);
        let tags = computed_tags(&inputs(&common, Some("abc123")));
        assert_eq!(tags["gitRef"], "abc123");
        assert_eq!(tags["imageVersion"], "2026.1125.0");
        assert_eq!(tags["imageName"], "web-base-img");
        assert_eq!(tags["buildDate"], "2026-11-25");
        assert_eq!(tags["baselineVersion"], "cis-2.0");
        assert_eq!(tags["Environment"], "Staging");
    }

    #[test]
    fn a_run_without_a_commit_is_tagged_manual_and_a_gallery_name_wins() {
        let common = BTreeMap::new();
        let mut i = inputs(&common, Some(""));
        i.gallery_image_name = Some("windows-web-base");
        let tags = computed_tags(&i);
        assert_eq!(tags["gitRef"], "manual");
        assert_eq!(tags["imageName"], "windows-web-base");
    }
}
