//! A gallery image definition from an image's `image.toml` (`[gallery]`,
//! `gallery_image_name`): the factory creates it before the image's first
//! build and updates it before later ones, so a push of a new image folder
//! is enough (packer's Azure builder publishes a Trusted Launch build
//! straight to the gallery and does not create the definition).
//!
//! GalleryRP 2024-03-03, `GalleryImages_CreateOrUpdate` (PUT) after a
//! `GalleryImages_Get`, and `Galleries_Get` for the gallery's region when
//! the definition is new. Azure lets a definition's description and
//! recommended machine change; its OS type and state, Hyper-V generation,
//! identifier and features (`SecurityType`) are fixed once it exists. So:
//! a missing definition is created; one whose fixed properties are as
//! `image.toml` says is updated only when what may change differs (and
//! left alone otherwise: repeating the call sends nothing); one whose fixed
//! properties differ is refused with what differs and what to do, and
//! nothing is sent.

use serde_json::{Value, json};

use super::arm::{ArmClient, ArmError};
use super::compute::{GALLERY_API, GalleryImage};
use crate::domain::image::{GalleryDefinition, HyperVGeneration, OsState, OsType};

/// What defining did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defined {
    /// The definition did not exist; it was created.
    Created,
    /// It existed; its description or recommended machine were updated.
    Updated,
    /// It existed as `image.toml` says; nothing was sent.
    Unchanged,
}

/// Why a definition was not made as `image.toml` says.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// Resource Manager refused or failed.
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// The definition exists with other fixed properties.
    #[error(
        "the gallery image definition {name} exists with {}; Azure does not let these change: delete the definition if it has no versions, or set another gallery_image_name in image.toml",
        .differences.join(", ")
    )]
    Fixed {
        /// The definition.
        name: String,
        /// Each difference: `osState Specialized (image.toml says Generalized)`.
        differences: Vec<String>,
    },
    /// The gallery's answer has no region.
    #[error("the gallery {0} names no location")]
    NoLocation(String),
}

impl DefinitionError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DefinitionError::Arm(e) if e.is_transient())
    }
}

fn os_type(value: OsType) -> &'static str {
    match value {
        OsType::Windows => "Windows",
        OsType::Linux => "Linux",
    }
}

fn os_state(value: OsState) -> &'static str {
    match value {
        OsState::Generalized => "Generalized",
        OsState::Specialized => "Specialized",
    }
}

fn generation(value: HyperVGeneration) -> &'static str {
    match value {
        HyperVGeneration::V1 => "V1",
        HyperVGeneration::V2 => "V2",
    }
}

/// The `SecurityType` feature's value a definition says (`None`: the
/// definition has no such feature: standard VMs only).
pub fn security_type(definition: &Value) -> Option<String> {
    definition["properties"]["features"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("SecurityType"))
        })
        .and_then(|f| f["value"].as_str())
        .map(str::to_string)
}

/// The SecurityType `definition` should have: `None` for standard VMs only
/// (no feature is sent for them).
fn wanted_security_type(definition: &GalleryDefinition) -> Option<&'static str> {
    match definition.settings.security_type.as_str() {
        "Standard" => None,
        other => Some(other),
    }
}

/// The properties Azure keeps fixed that `existing` has otherwise than
/// `wanted` says, each as `property value (image.toml says value)`.
pub fn fixed_differences(existing: &Value, wanted: &GalleryDefinition) -> Vec<String> {
    let properties = &existing["properties"];
    let settings = &wanted.settings;
    let mut differences = Vec::new();
    let mut compare = |what: &str, found: Option<&str>, want: Option<&str>| {
        let same = match (found, want) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            differences.push(format!(
                "{what} {} (image.toml says {})",
                found.unwrap_or("unset"),
                want.unwrap_or("none")
            ));
        }
    };
    compare(
        "osType",
        properties["osType"].as_str(),
        Some(os_type(settings.os_type)),
    );
    compare(
        "osState",
        properties["osState"].as_str(),
        Some(os_state(settings.os_state)),
    );
    compare(
        "hyperVGeneration",
        // A definition made without one is generation 1.
        Some(properties["hyperVGeneration"].as_str().unwrap_or("V1")),
        Some(generation(settings.hyper_v_generation)),
    );
    let identifier = &properties["identifier"];
    compare(
        "identifier publisher",
        identifier["publisher"].as_str(),
        Some(&settings.publisher),
    );
    compare(
        "identifier offer",
        identifier["offer"].as_str(),
        Some(&settings.offer),
    );
    compare(
        "identifier sku",
        identifier["sku"].as_str(),
        Some(&wanted.sku),
    );
    let found = security_type(existing);
    compare(
        "SecurityType",
        found.as_deref().filter(|v| *v != "Standard"),
        wanted_security_type(wanted),
    );
    differences
}

/// The updatable part of a definition's properties as `wanted` says it.
fn updatable(wanted: &GalleryDefinition) -> Value {
    let mut properties = serde_json::Map::new();
    if let Some(description) = &wanted.settings.description {
        properties.insert("description".into(), json!(description));
    }
    if let Some(r) = &wanted.settings.recommended {
        let range = |min: Option<u32>, max: Option<u32>| {
            let mut range = serde_json::Map::new();
            if let Some(min) = min {
                range.insert("min".into(), json!(min));
            }
            if let Some(max) = max {
                range.insert("max".into(), json!(max));
            }
            Value::Object(range)
        };
        let mut recommended = serde_json::Map::new();
        if r.vcpus_min.is_some() || r.vcpus_max.is_some() {
            recommended.insert("vCPUs".into(), range(r.vcpus_min, r.vcpus_max));
        }
        if r.memory_gb_min.is_some() || r.memory_gb_max.is_some() {
            recommended.insert("memory".into(), range(r.memory_gb_min, r.memory_gb_max));
        }
        properties.insert("recommended".into(), Value::Object(recommended));
    }
    Value::Object(properties)
}

/// Whether `existing`'s updatable properties are as `wanted` says (what
/// `image.toml` leaves out is left as it is).
fn updatable_same(existing: &Value, wanted: &GalleryDefinition) -> bool {
    let want = updatable(wanted);
    let have = &existing["properties"];
    want.as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| contains(&have[key], value))
}

/// Whether `have` holds every field of `want` with the same value.
fn contains(have: &Value, want: &Value) -> bool {
    match want {
        Value::Object(fields) => fields.iter().all(|(k, v)| contains(&have[k], v)),
        other => have == other,
    }
}

/// The whole definition `wanted` as a `GalleryImages_CreateOrUpdate` body in `location`.
pub fn body(wanted: &GalleryDefinition, location: &str) -> Value {
    let settings = &wanted.settings;
    let mut properties = updatable(wanted);
    properties["osType"] = json!(os_type(settings.os_type));
    properties["osState"] = json!(os_state(settings.os_state));
    properties["hyperVGeneration"] = json!(generation(settings.hyper_v_generation));
    properties["identifier"] = json!({
        "publisher": settings.publisher,
        "offer": settings.offer,
        "sku": wanted.sku,
    });
    if let Some(security) = wanted_security_type(wanted) {
        properties["features"] = json!([{ "name": "SecurityType", "value": security }]);
    }
    json!({ "location": location, "properties": properties })
}

/// The gallery's resource path (`GalleryImage` names one of its definitions).
fn gallery_path(image: &GalleryImage) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}?api-version={GALLERY_API}",
        image.subscription_id, image.resource_group, image.gallery
    )
}

/// A definition's resource path.
pub fn definition_path(image: &GalleryImage) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}?api-version={GALLERY_API}",
        image.subscription_id, image.resource_group, image.gallery, image.image
    )
}

/// Creates or updates the definition `image` as `wanted` says (see the module's comment).
pub async fn define(
    arm: &ArmClient,
    image: &GalleryImage,
    wanted: &GalleryDefinition,
) -> Result<Defined, DefinitionError> {
    let path = definition_path(image);
    match arm.get_optional(&path).await? {
        None => {
            let gallery = arm.get(&gallery_path(image)).await?;
            let location = gallery["location"]
                .as_str()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| DefinitionError::NoLocation(image.gallery.clone()))?;
            arm.put(&path, &body(wanted, location)).await?;
            Ok(Defined::Created)
        }
        Some(existing) => {
            let differences = fixed_differences(&existing, wanted);
            if !differences.is_empty() {
                return Err(DefinitionError::Fixed {
                    name: wanted.name.clone(),
                    differences,
                });
            }
            if updatable_same(&existing, wanted) {
                return Ok(Defined::Unchanged);
            }
            let location = existing["location"].as_str().unwrap_or_default();
            arm.put(&path, &body(wanted, location)).await?;
            Ok(Defined::Updated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::{GallerySettings, Recommended, SecurityType};

    fn wanted() -> GalleryDefinition {
        GalleryDefinition {
            name: "windows-web-base".into(),
            sku: "2022-datacenter-base".into(),
            settings: GallerySettings {
                publisher: "ImageFactory".into(),
                offer: "WindowsServer".into(),
                sku: Some("2022-datacenter-base".into()),
                description: Some("Windows Server 2022".into()),
                recommended: Some(Recommended {
                    vcpus_min: Some(2),
                    vcpus_max: Some(16),
                    memory_gb_min: None,
                    memory_gb_max: None,
                }),
                ..GallerySettings::default()
            },
        }
    }

    #[test]
    fn a_definition_as_image_toml_says_differs_in_nothing_and_a_missing_security_type_is_named() {
        let body = body(&wanted(), "francecentral");
        assert_eq!(
            body["properties"]["features"][0]["value"],
            "TrustedLaunchSupported"
        );
        assert_eq!(body["properties"]["recommended"]["vCPUs"]["max"], 16);
        assert!(body["properties"]["recommended"].get("memory").is_none());
        assert!(fixed_differences(&body, &wanted()).is_empty());
        assert!(updatable_same(&body, &wanted()));

        // What infra/modules/gallery.bicep made before: no SecurityType.
        let mut bicep = body.clone();
        bicep["properties"]
            .as_object_mut()
            .expect("properties")
            .remove("features");
        assert_eq!(
            fixed_differences(&bicep, &wanted()),
            ["SecurityType unset (image.toml says TrustedLaunchSupported)"]
        );
        let mut other = body.clone();
        other["properties"]["osState"] = json!("Specialized");
        other["properties"]["identifier"]["sku"] = json!("other");
        assert_eq!(fixed_differences(&other, &wanted()).len(), 2);

        // A new description is an update, not a difference.
        let mut described = wanted();
        described.settings.description = Some("new words".into());
        assert!(fixed_differences(&body, &described).is_empty());
        assert!(!updatable_same(&body, &described));

        // Standard VMs: no feature sent, and a definition without one matches.
        let mut standard = wanted();
        standard.settings.security_type = SecurityType::Standard;
        assert!(fixed_differences(&bicep, &standard).is_empty());
        assert!(
            super::body(&standard, "x")["properties"]
                .get("features")
                .is_none()
        );
    }
}
