//! Azure Resource Manager adapters: the REST client (`arm`) and the calls the
//! stages and timers make through it (`compute`: galleries and Marketplace
//! images; `release`: publishing in the gallery; `testvm`: the test stage's
//! temporary VM; `reaper`: what runs leave behind, and the boot diagnostics
//! of the VMs that failed). Tokens come from the factory's Entra ID
//! identity; no keys.

pub mod arm;
pub mod blob;
pub mod compute;
pub mod cosmos;
pub mod definition;
pub mod email;
pub mod eventgrid;
pub mod gallery;
pub mod identity;
pub mod jobs;
pub mod network;
pub mod reaper;
pub mod servicebus;
pub mod snapshots;
pub mod telemetry;
pub mod testvm;

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

/// An Azure setting that is wrong: which one, and what is wrong (never its value).
#[derive(Debug, thiserror::Error)]
#[error("setting {name} is not valid: {message}")]
pub struct SettingError {
    /// The variable.
    pub name: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Where the factory's Azure resources are, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureSettings {
    /// Resource Manager's base URL (`IMAGE_FACTORY_ARM_ENDPOINT`, default `https://management.azure.com`).
    pub endpoint: String,
    /// The subscription (`IMAGE_FACTORY_SUBSCRIPTION_ID`).
    pub subscription_id: String,
    /// The gallery's resource group (`IMAGE_FACTORY_GALLERY_RESOURCE_GROUP`), if images go to a gallery.
    pub gallery_resource_group: Option<String>,
    /// The gallery (`IMAGE_FACTORY_GALLERY`).
    pub gallery: Option<String>,
    /// The Container Apps job that runs builds off the host, if builds run there.
    pub build_job: Option<BuildJob>,
    /// Where and how the test stage's VM runs (`IMAGE_FACTORY_TEST_*`).
    pub test_vm: TestVmSettings,
    /// What the reaper may do (`IMAGE_FACTORY_REAPER_*`).
    pub reaper: ReaperSettings,
}

/// The Container Apps job whose executions are the build workers
/// (`IMAGE_FACTORY_BUILD_JOB`, `IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP`), and
/// the Blob Storage container their logs go to (`IMAGE_FACTORY_BUILD_LOGS_URL`,
/// `https://<account>.blob.core.windows.net/<container>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildJob {
    /// The job's resource group.
    pub resource_group: String,
    /// The job's name.
    pub name: String,
    /// The build logs' container URL.
    pub log_container_url: String,
}

/// The test stage's VM on Azure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestVmSettings {
    /// The region test resource groups and VMs are created in
    /// (`IMAGE_FACTORY_TEST_LOCATION`); without it the Azure test stage
    /// refuses to run and says so.
    pub location: Option<String>,
    /// The VM size (`IMAGE_FACTORY_TEST_VM_SIZE`, default `Standard_D2s_v5`).
    pub vm_size: String,
    /// The build network's VM subnet, where the test VM's NIC goes
    /// (`IMAGE_FACTORY_TEST_SUBNET_ID`, a subnet's resource id); `None`: the
    /// test makes a network of its own in its group.
    pub subnet_id: Option<String>,
}

impl Default for TestVmSettings {
    fn default() -> TestVmSettings {
        TestVmSettings {
            location: None,
            vm_size: "Standard_D2s_v5".into(),
            subnet_id: None,
        }
    }
}

impl TestVmSettings {
    fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<TestVmSettings, SettingError> {
        let defaults = TestVmSettings::default();
        let word = |name: &'static str, max: usize| -> Result<Option<String>, SettingError> {
            match var(name) {
                Some(v)
                    if !v.is_empty()
                        && v.len() <= max
                        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Ok(Some(v))
                }
                Some(_) => Err(SettingError {
                    name,
                    message: "must be letters, digits and _ (e.g. westeurope, Standard_D2s_v5)"
                        .into(),
                }),
                None => Ok(None),
            }
        };
        let subnet_id = match var("IMAGE_FACTORY_TEST_SUBNET_ID").filter(|v| !v.is_empty()) {
            Some(id) if network::SubnetId::parse(&id).is_some() => Some(id),
            Some(_) => {
                return Err(SettingError {
                    name: "IMAGE_FACTORY_TEST_SUBNET_ID",
                    message: "must be a subnet's resource id, /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<network>/subnets/<subnet>".into(),
                });
            }
            None => None,
        };
        Ok(TestVmSettings {
            location: word("IMAGE_FACTORY_TEST_LOCATION", 64)?,
            vm_size: word("IMAGE_FACTORY_TEST_VM_SIZE", 64)?.unwrap_or(defaults.vm_size),
            subnet_id,
        })
    }
}

/// What the reaper may do (docs/reaper.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaperSettings {
    /// Report what would be deleted and delete nothing
    /// (`IMAGE_FACTORY_REAPER_DRY_RUN`: `true` or `false`, default `false`).
    pub dry_run: bool,
    /// A tagged resource of a run this factory does not know is deleted once
    /// older than this (`IMAGE_FACTORY_REAPER_MAX_AGE_HOURS`, default 24:
    /// longer than any build and test).
    pub max_age_hours: u32,
}

impl Default for ReaperSettings {
    fn default() -> ReaperSettings {
        ReaperSettings {
            dry_run: false,
            max_age_hours: 24,
        }
    }
}

impl ReaperSettings {
    fn from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<ReaperSettings, SettingError> {
        let defaults = ReaperSettings::default();
        let dry_run = match var("IMAGE_FACTORY_REAPER_DRY_RUN").filter(|v| !v.is_empty()) {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(SettingError {
                    name: "IMAGE_FACTORY_REAPER_DRY_RUN",
                    message: "must be true or false".into(),
                });
            }
            None => defaults.dry_run,
        };
        let max_age_hours =
            match var("IMAGE_FACTORY_REAPER_MAX_AGE_HOURS").filter(|v| !v.is_empty()) {
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|h| (1..=24 * 30).contains(h))
                    .ok_or_else(|| SettingError {
                        name: "IMAGE_FACTORY_REAPER_MAX_AGE_HOURS",
                        message: "must be a whole number of hours between 1 and 720".into(),
                    })?,
                None => defaults.max_age_hours,
            };
        Ok(ReaperSettings {
            dry_run,
            max_age_hours,
        })
    }
}

impl AzureSettings {
    /// Reads the settings; `None` when `IMAGE_FACTORY_SUBSCRIPTION_ID` is not
    /// set (the factory then makes no Azure calls: the local path).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<AzureSettings>, SettingError> {
        let Some(subscription_id) = var("IMAGE_FACTORY_SUBSCRIPTION_ID") else {
            return Ok(None);
        };
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 90
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        };
        if !segment_ok(&subscription_id) {
            return Err(SettingError {
                name: "IMAGE_FACTORY_SUBSCRIPTION_ID",
                message: "must be a subscription id (a GUID)".into(),
            });
        }
        let named = |name: &'static str| -> Result<Option<String>, SettingError> {
            match var(name) {
                Some(v) if segment_ok(&v) => Ok(Some(v)),
                Some(_) => Err(SettingError {
                    name,
                    message: "must be an Azure resource name (letters, digits, - _ . ( ))".into(),
                }),
                None => Ok(None),
            }
        };
        let endpoint =
            var("IMAGE_FACTORY_ARM_ENDPOINT").unwrap_or_else(|| arm::DEFAULT_ENDPOINT.to_string());
        let build_job = match (
            named("IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP")?,
            named("IMAGE_FACTORY_BUILD_JOB")?,
        ) {
            (Some(resource_group), Some(name)) => {
                let url = var("IMAGE_FACTORY_BUILD_LOGS_URL").ok_or(SettingError {
                    name: "IMAGE_FACTORY_BUILD_LOGS_URL",
                    message: "is required with IMAGE_FACTORY_BUILD_JOB (the build logs' container, https://<account>.blob.core.windows.net/<container>)".into(),
                })?;
                blob::check_container_url(&url).map_err(|message| SettingError {
                    name: "IMAGE_FACTORY_BUILD_LOGS_URL",
                    message,
                })?;
                Some(BuildJob {
                    resource_group,
                    name,
                    log_container_url: url,
                })
            }
            (None, None) => None,
            _ => {
                return Err(SettingError {
                    name: "IMAGE_FACTORY_BUILD_JOB",
                    message: "and IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP go together: set both to build off the host, or neither".into(),
                });
            }
        };
        Ok(Some(AzureSettings {
            endpoint,
            subscription_id,
            gallery_resource_group: named("IMAGE_FACTORY_GALLERY_RESOURCE_GROUP")?,
            gallery: named("IMAGE_FACTORY_GALLERY")?,
            build_job,
            test_vm: TestVmSettings::from_vars(&var)?,
            reaper: ReaperSettings::from_vars(&var)?,
        }))
    }

    /// The gallery image definition `image` in the configured gallery, if one is configured.
    pub fn gallery_image(&self, image: &str) -> Option<compute::GalleryImage> {
        Some(compute::GalleryImage {
            subscription_id: self.subscription_id.clone(),
            resource_group: self.gallery_resource_group.clone()?,
            gallery: self.gallery.clone()?,
            image: image.to_string(),
        })
    }
}

/// The factory's Azure access: settings and a Resource Manager client.
#[derive(Clone, Debug)]
pub struct Azure {
    /// Where things are.
    pub settings: AzureSettings,
    /// The client.
    pub arm: arm::ArmClient,
}

impl Azure {
    /// A client for `settings` with tokens from `credential`.
    pub fn new(
        settings: AzureSettings,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Azure, arm::ArmError> {
        let arm = arm::ArmClient::new(
            &settings.endpoint,
            credential,
            arm::tokio_sleeper(),
            arm::Patience::default(),
        )?;
        Ok(Azure { settings, arm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<AzureSettings>, SettingError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AzureSettings::from_vars(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_test_vm_and_reaper_settings_have_defaults_and_refuse_bad_values_by_name() {
        let sub = ("IMAGE_FACTORY_SUBSCRIPTION_ID", "sub-1");
        let plain = settings(&[sub]).expect("valid").expect("azure");
        assert_eq!(plain.test_vm, TestVmSettings::default());
        assert_eq!(plain.test_vm.location, None);
        assert_eq!(plain.test_vm.subnet_id, None);
        assert_eq!(plain.reaper, ReaperSettings::default());
        assert!(!plain.reaper.dry_run);
        assert_eq!(plain.reaper.max_age_hours, 24);
        let subnet = "/subscriptions/sub-1/resourceGroups/rg-f-build/providers/Microsoft.Network/virtualNetworks/vnet-imgf-f/subnets/vms";
        let set = settings(&[
            sub,
            ("IMAGE_FACTORY_TEST_LOCATION", "francecentral"),
            ("IMAGE_FACTORY_TEST_VM_SIZE", "Standard_B2ms"),
            ("IMAGE_FACTORY_TEST_SUBNET_ID", subnet),
            ("IMAGE_FACTORY_REAPER_DRY_RUN", "True"),
            ("IMAGE_FACTORY_REAPER_MAX_AGE_HOURS", "12"),
        ])
        .expect("valid")
        .expect("azure");
        assert_eq!(
            set.test_vm,
            TestVmSettings {
                location: Some("francecentral".into()),
                vm_size: "Standard_B2ms".into(),
                subnet_id: Some(subnet.into()),
            }
        );
        assert_eq!(
            set.reaper,
            ReaperSettings {
                dry_run: true,
                max_age_hours: 12,
            }
        );
        for (name, value) in [
            ("IMAGE_FACTORY_TEST_LOCATION", "west europe"),
            ("IMAGE_FACTORY_TEST_VM_SIZE", "Standard/B2"),
            (
                "IMAGE_FACTORY_TEST_SUBNET_ID",
                "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
            ),
            ("IMAGE_FACTORY_TEST_SUBNET_ID", "vms"),
            ("IMAGE_FACTORY_REAPER_MAX_AGE_HOURS", "9999"),
            ("IMAGE_FACTORY_REAPER_MAX_AGE_HOURS", "six"),
            ("IMAGE_FACTORY_REAPER_DRY_RUN", "yes"),
        ] {
            let error = settings(&[sub, (name, value)])
                .expect_err(value)
                .to_string();
            assert!(error.contains(name) && !error.contains(value), "{error}");
        }
    }
}
