//! The leftovers of runs on Azure, through Resource Manager: what the reaper
//! lists, deletes and reads the boot diagnostics of (docs/reaper.md).
//!
//! - **Listing.** `Resources_List` over the subscription with
//!   `$filter=startswith(tagName, 'image-factory-run')` (a filter on the tag
//!   name only, which keeps the tags in the answer), and `ResourceGroups_List`
//!   filtered on `image-factory` = `test`, then `build` (the documented
//!   `tagName eq ... and tagValue eq ...`). A group listed without its tags
//!   is read (`ResourceGroups_Get`); a group being deleted is left to
//!   Resource Manager.
//! - **Deletion.** A group: `ResourceGroups_Delete` with its VMs forced. A
//!   VM: read it (`VirtualMachines_Get`), tag each of its disks that lacks
//!   them with the VM's factory tags (`Tags_UpdateAtScope`, `Merge`: the
//!   builder's OS disk is created with the VM and carries none), then
//!   `VirtualMachines_Delete` with `forceDeletion`; its disks are reaped at a
//!   later firing, as tagged resources. Any other type the reaper deletes:
//!   `DELETE` of its id with that type's api-version ([`api_version`]).
//! - **Boot diagnostics.** A VM whose boot diagnostics are off (packer turns
//!   them off unless given a storage account) has them turned on, managed
//!   storage (`VirtualMachines_Update`), and is read at the next firing; then
//!   `VirtualMachines_RetrieveBootDiagnosticsData` gives two SAS URIs, whose
//!   blobs are downloaded (a plain GET, never with the Resource Manager
//!   token; the URIs are secrets and are never logged or kept).
//!
//! API versions: Microsoft.Resources 2021-04-01, Compute 2024-07-01, Network
//! 2024-03-01 (each checked against its specification in the contract
//! tests); managed disks `2024-03-02` and Key Vault `2023-07-01`, whose
//! specifications the contract tests do not hold (docs/verification.md).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::arm::{ArmClient, ArmError, provisioning_state};
use super::compute::COMPUTE_API;
use super::network::NETWORK_API;
use crate::domain::reaper::{
    CREATED_TAG, DISK_TYPE, FACTORY_TAG, RESOURCE_GROUP_TYPE, RUN_TAG, Tagged,
};
use crate::ports::PortError;
use crate::ports::leftovers::{Capture, Leftovers};

/// API version of the resource, group and tag calls (Microsoft.Resources).
pub const RESOURCES_API: &str = "2021-04-01";
/// API version of a managed disk's deletion (Microsoft.Compute DiskRP).
pub const DISK_API: &str = "2024-03-02";
/// API version of a key vault's deletion (Microsoft.KeyVault).
pub const KEY_VAULT_API: &str = "2023-07-01";
/// How long the SAS URIs of boot diagnostics stay valid.
const SAS_MINUTES: u32 = 30;
/// Bytes of one boot diagnostics blob kept at most (a serial log can grow).
const MAX_BLOB_BYTES: u64 = 32 * 1024 * 1024;

/// The api-version the reaper deletes a resource of `resource_type` with,
/// for each of [`REAPED_TYPES`].
pub fn api_version(resource_type: &str) -> Option<&'static str> {
    let kind = resource_type.to_ascii_lowercase();
    Some(match kind.as_str() {
        "microsoft.compute/virtualmachines" => COMPUTE_API,
        "microsoft.compute/disks" => DISK_API,
        "microsoft.keyvault/vaults" => KEY_VAULT_API,
        "microsoft.network/networkinterfaces"
        | "microsoft.network/publicipaddresses"
        | "microsoft.network/networksecuritygroups"
        | "microsoft.network/virtualnetworks" => NETWORK_API,
        _ => return None,
    })
}

/// A `$filter` value, percent-encoded for a query string.
fn encoded(filter: &str) -> String {
    filter
        .replace(' ', "%20")
        .replace('\'', "%27")
        .replace(',', "%2C")
        .replace('(', "%28")
        .replace(')', "%29")
}

/// The listing filter of resources carrying the run tag.
pub fn resources_filter() -> String {
    encoded(&format!("startswith(tagName, '{RUN_TAG}')"))
}

/// The listing filter of groups tagged `image-factory` = `role`.
pub fn groups_filter(role: &str) -> String {
    encoded(&format!(
        "tagName eq '{FACTORY_TAG}' and tagValue eq '{role}'"
    ))
}

/// The factory's resources in one subscription.
#[derive(Clone, Debug)]
pub struct AzureLeftovers {
    arm: ArmClient,
    subscription_id: String,
    downloads: reqwest::Client,
}

impl AzureLeftovers {
    /// The leftovers in `subscription_id`, through `arm`.
    pub fn new(arm: ArmClient, subscription_id: &str) -> Result<AzureLeftovers, PortError> {
        let downloads = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PortError::permanent(format!("cannot build an HTTP client: {e}")))?;
        Ok(AzureLeftovers {
            arm,
            subscription_id: subscription_id.to_string(),
            downloads,
        })
    }

    fn subscription(&self) -> String {
        format!("/subscriptions/{}", self.subscription_id)
    }

    async fn groups(&self, role: &str) -> Result<Vec<Tagged>, ArmError> {
        let listed = self
            .arm
            .list(&format!(
                "{}/resourcegroups?$filter={}&api-version={RESOURCES_API}",
                self.subscription(),
                groups_filter(role)
            ))
            .await?;
        let mut groups = Vec::new();
        for group in listed {
            let Some(name) = group.get("name").and_then(Value::as_str) else {
                continue;
            };
            if provisioning_state(&group).as_deref() == Some("Deleting") {
                continue;
            }
            let body = if group.get("tags").is_some_and(|t| t.get(RUN_TAG).is_some()) {
                group.clone()
            } else {
                match self
                    .arm
                    .get_optional(&format!(
                        "{}/resourcegroups/{name}?api-version={RESOURCES_API}",
                        self.subscription()
                    ))
                    .await?
                {
                    Some(full) => full,
                    None => continue,
                }
            };
            let tags = tags_of(&body);
            groups.push(Tagged {
                id: format!("{}/resourceGroups/{name}", self.subscription()),
                resource_type: RESOURCE_GROUP_TYPE.into(),
                group: name.to_string(),
                created: created_of(&tags, None),
                tags,
            });
        }
        Ok(groups)
    }

    async fn resources(&self) -> Result<Vec<Tagged>, ArmError> {
        let listed = self
            .arm
            .list(&format!(
                "{}/resources?$filter={}&api-version={RESOURCES_API}",
                self.subscription(),
                resources_filter()
            ))
            .await?;
        let mut resources = Vec::new();
        for item in listed {
            let (Some(id), Some(kind)) = (
                item.get("id").and_then(Value::as_str),
                item.get("type").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(group) = group_of(id) else { continue };
            let mut tags = tags_of(&item);
            // An answer without the tags: read the resource, when its type
            // is one the reaper knows (it could not delete any other).
            if tags.is_empty()
                && let Some(api) = api_version(kind)
                && let Some(full) = self
                    .arm
                    .get_optional(&format!("{id}?api-version={api}"))
                    .await?
            {
                tags = tags_of(&full);
            }
            let listed_created = item
                .get("createdTime")
                .and_then(Value::as_str)
                .and_then(parse_time);
            resources.push(Tagged {
                id: id.to_string(),
                resource_type: kind.to_string(),
                group,
                created: created_of(&tags, listed_created),
                tags,
            });
        }
        Ok(resources)
    }

    async fn delete_vm(&self, vm: &Tagged) -> Result<bool, ArmError> {
        let path = format!("{}?api-version={COMPUTE_API}", vm.id);
        let Some(body) = self.arm.get_optional(&path).await? else {
            return Ok(false);
        };
        let factory: Value = [FACTORY_TAG, RUN_TAG]
            .into_iter()
            .filter_map(|name| vm.tags.get(name).map(|v| (name.to_string(), json!(v))))
            .collect::<serde_json::Map<String, Value>>()
            .into();
        for disk in disks_of(&body) {
            self.arm
                .patch(
                    &format!(
                        "{disk}/providers/Microsoft.Resources/tags/default?api-version={RESOURCES_API}"
                    ),
                    &json!({ "operation": "Merge", "properties": { "tags": factory } }),
                )
                .await?;
        }
        self.arm
            .delete(&format!(
                "{}?forceDeletion=true&api-version={COMPUTE_API}",
                vm.id
            ))
            .await
    }

    /// Downloads the blob at the SAS URI `url` into `path`, at most
    /// [`MAX_BLOB_BYTES`]; errors never show the URI's query (its signature).
    async fn download(&self, url: &str, path: &Path) -> Result<(), PortError> {
        let shown = url.split('?').next().unwrap_or_default().to_string();
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| PortError::permanent(format!("{shown} is not a URL")))?;
        let loopback = parsed.host_str().is_some_and(|h| {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        });
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
            return Err(PortError::permanent(format!(
                "refusing to download {shown}: boot diagnostics are read over https only"
            )));
        }
        let failed = |e: reqwest::Error| {
            PortError::transient(format!("cannot download {shown}: {}", e.without_url()))
        };
        let mut answer = self.downloads.get(parsed).send().await.map_err(failed)?;
        if !answer.status().is_success() {
            return Err(PortError::transient(format!(
                "downloading {shown} answered HTTP {}",
                answer.status().as_u16()
            )));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(failed)? {
            if bytes.len() as u64 + chunk.len() as u64 > MAX_BLOB_BYTES {
                return Err(PortError::permanent(format!(
                    "{shown} is larger than {} MiB",
                    MAX_BLOB_BYTES / 1024 / 1024
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let target = path.to_path_buf();
        crate::private::blocking(move || {
            if let Some(dir) = target.parent() {
                crate::private::create_dir(dir)?;
            }
            std::fs::write(&target, &bytes)
        })
        .await
        .map_err(|e| PortError::transient(format!("cannot write {}: {e}", path.display())))
    }
}

#[async_trait]
impl Leftovers for AzureLeftovers {
    async fn list(&self) -> Result<Vec<Tagged>, PortError> {
        let mut all = self
            .resources()
            .await
            .map_err(|e| PortError::from(e).context("listing the tagged resources"))?;
        for role in ["test", "build"] {
            all.extend(
                self.groups(role).await.map_err(|e| {
                    PortError::from(e).context("listing the tagged resource groups")
                })?,
            );
        }
        Ok(all)
    }

    async fn delete(&self, resource: &Tagged) -> Result<bool, PortError> {
        let deleted = if resource.is_group() {
            self.arm
                .delete(&format!(
                    "{}?forceDeletionTypes=Microsoft.Compute/virtualMachines&api-version={RESOURCES_API}",
                    resource.id
                ))
                .await
        } else if resource.is_vm() {
            self.delete_vm(resource).await
        } else {
            let Some(api) = api_version(&resource.resource_type) else {
                return Err(PortError::permanent(format!(
                    "the reaper does not delete a {}",
                    resource.resource_type
                )));
            };
            self.arm
                .delete(&format!("{}?api-version={api}", resource.id))
                .await
        };
        deleted.map_err(|e| PortError::from(e).context(&format!("deleting {}", resource.id)))
    }

    async fn boot_diagnostics(&self, vm: &Tagged, dir: &Path) -> Result<Capture, PortError> {
        let context = |e: ArmError| {
            PortError::from(e).context(&format!("reading the boot diagnostics of {}", vm.id))
        };
        let path = format!("{}?api-version={COMPUTE_API}", vm.id);
        let Some(body) = self.arm.get_optional(&path).await.map_err(context)? else {
            return Ok(Capture::Pending("the VM no longer exists".into()));
        };
        let enabled = body
            .pointer("/properties/diagnosticsProfile/bootDiagnostics/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !enabled {
            self.arm
                .patch(
                    &path,
                    &json!({ "properties": { "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } } } }),
                )
                .await
                .map_err(context)?;
            return Ok(Capture::Pending(
                "boot diagnostics were off (packer turns them off without a storage account); turned on with managed storage, read at the next firing".into(),
            ));
        }
        let uris = self
            .arm
            .post(
                &format!(
                    "{}/retrieveBootDiagnosticsData?sasUriExpirationTimeInMinutes={SAS_MINUTES}&api-version={COMPUTE_API}",
                    vm.id
                ),
                &json!({}),
            )
            .await
            .map_err(context)?;
        let name = vm.id.rsplit('/').next().unwrap_or("vm");
        let mut saved = (None, None);
        for (key, file, slot) in [
            ("serialConsoleLogBlobUri", format!("{name}-serial.log"), 0),
            (
                "consoleScreenshotBlobUri",
                format!("{name}-screenshot.bmp"),
                1,
            ),
        ] {
            let Some(url) = uris
                .get(key)
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
            else {
                continue;
            };
            let target = dir.join(file);
            self.download(url, &target).await?;
            if slot == 0 {
                saved.0 = Some(target);
            } else {
                saved.1 = Some(target);
            }
        }
        Ok(match saved {
            (None, None) => {
                Capture::Pending("the platform has written no boot diagnostics yet".into())
            }
            (serial_log, screenshot) => Capture::Saved {
                serial_log,
                screenshot,
            },
        })
    }
}

/// The string tags of a resource body.
fn tags_of(body: &Value) -> BTreeMap<String, String> {
    body.get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When a resource was created: its creation tag, else what the listing said.
fn created_of(
    tags: &BTreeMap<String, String>,
    listed: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    tags.get(CREATED_TAG).and_then(|t| parse_time(t)).or(listed)
}

/// The resource group named in a resource id.
fn group_of(id: &str) -> Option<String> {
    let mut segments = id.split('/');
    while let Some(segment) = segments.next() {
        if segment.eq_ignore_ascii_case("resourceGroups") {
            return segments
                .next()
                .filter(|g| !g.is_empty())
                .map(str::to_string);
        }
    }
    None
}

/// The managed disks of a VM body (its OS disk and data disks).
fn disks_of(vm: &Value) -> Vec<String> {
    let storage = vm.pointer("/properties/storageProfile");
    let mut disks: Vec<String> = storage
        .and_then(|s| s.pointer("/osDisk/managedDisk/id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .into_iter()
        .collect();
    disks.extend(
        storage
            .and_then(|s| s.get("dataDisks"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.pointer("/managedDisk/id").and_then(Value::as_str))
            .map(str::to_string),
    );
    disks
        .into_iter()
        .filter(|d| {
            d.to_ascii_lowercase()
                .contains(&DISK_TYPE.to_ascii_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reaper::{REAPED_TYPES, VM_TYPE};

    #[test]
    fn every_type_the_reaper_deletes_has_its_api_version() {
        for kind in REAPED_TYPES {
            assert!(api_version(kind).is_some(), "{kind}");
        }
        assert_eq!(
            api_version("microsoft.compute/VIRTUALMACHINES"),
            Some(COMPUTE_API)
        );
        assert_eq!(
            api_version("Microsoft.Compute/galleries/images/versions"),
            None
        );
        assert_eq!(api_version(VM_TYPE), Some("2024-07-01"));
    }

    #[test]
    fn the_filters_are_the_documented_ones_encoded() {
        assert_eq!(
            resources_filter(),
            "startswith%28tagName%2C%20%27image-factory-run%27%29"
        );
        assert_eq!(
            groups_filter("test"),
            "tagName%20eq%20%27image-factory%27%20and%20tagValue%20eq%20%27test%27"
        );
    }

    #[test]
    fn ids_give_their_group_and_a_vm_its_disks() {
        assert_eq!(
            group_of(
                "/subscriptions/s/resourceGroups/rg-b/providers/Microsoft.Compute/virtualMachines/v"
            )
            .as_deref(),
            Some("rg-b")
        );
        assert_eq!(group_of("/subscriptions/s"), None);
        let vm = json!({ "properties": { "storageProfile": {
            "osDisk": { "managedDisk": { "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/os" } },
            "dataDisks": [ { "managedDisk": { "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/data" } }, { "lun": 1 } ]
        }}});
        assert_eq!(
            disks_of(&vm),
            [
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/os",
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/data"
            ]
        );
    }
}
