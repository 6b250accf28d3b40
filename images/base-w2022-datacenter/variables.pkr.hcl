# Azure credentials come from ARM_* environment variables, settings from
# PKR_VAR_* (packer reads PKR_VAR_<name> for variable <name> itself). Nothing
# secret has a literal default. docs/windows-image.md lists every variable the
# factory passes, with its meaning and default.

# --- Sign-in ---------------------------------------------------------------

variable "subscription_id" {
  type        = string
  description = "Azure subscription id (also the gallery's subscription)."
  default     = env("ARM_SUBSCRIPTION_ID")
}

variable "tenant_id" {
  type        = string
  description = "Azure tenant id."
  default     = env("ARM_TENANT_ID")
}

variable "client_id" {
  type        = string
  description = "Client id of the app registration packer signs in as (empty: the VM's managed identity, or the Azure CLI's sign-in)."
  default     = env("ARM_CLIENT_ID")
}

variable "client_jwt" {
  type        = string
  sensitive   = true
  description = "Client assertion of client_id: on the build worker, its managed identity token for api://AzureADTokenExchange, which the app registration trusts as a federated credential (set per build by the worker; empty: another sign-in)."
  default     = env("ARM_OIDC_TOKEN")
}

variable "use_azure_cli_auth" {
  type        = bool
  description = "Sign in with the Azure CLI's session (developer machines)."
  default     = false
}

# --- Where the build VM runs -----------------------------------------------

variable "location" {
  type        = string
  description = "Region of the build VM when packer creates a temporary resource group (ignored with build_resource_group_name)."
  default     = "France Central"
}

variable "vm_size" {
  type        = string
  description = "Size of the build VM; it must support Trusted Launch (Generation 2)."
  default     = "Standard_D4s_v5"
}

variable "build_resource_group_name" {
  type        = string
  description = "Existing resource group the build VM runs in (empty: packer creates a temporary group in var.location and deletes it)."
  default     = ""
}

# --- Where the image goes: straight to the gallery (Trusted Launch) --------

variable "gallery_name" {
  type        = string
  description = "Azure Compute Gallery the new version is published to. Required: a Trusted Launch build has no managed image to fall back to."

  validation {
    condition     = length(var.gallery_name) > 0
    error_message = "The gallery_name value must name the Azure Compute Gallery: the Trusted Launch build publishes straight to it."
  }
}

variable "gallery_resource_group_name" {
  type        = string
  description = "Resource group of the gallery."

  validation {
    condition     = length(var.gallery_resource_group_name) > 0
    error_message = "The gallery_resource_group_name value must name the gallery's resource group."
  }
}

variable "gallery_image_name" {
  type        = string
  description = "Gallery image definition; the factory makes it from image.toml ([gallery]) before the build (Generation 2, SecurityType TrustedLaunchSupported)."

  validation {
    condition     = length(var.gallery_image_name) > 0
    error_message = "The gallery_image_name value must name an existing image definition of the gallery."
  }
}

variable "gallery_image_version" {
  type        = string
  description = "Gallery image version to publish, MAJOR.MINOR.PATCH (set by the factory)."
  default     = "0.0.1"

  validation {
    condition     = length(split(".", var.gallery_image_version)) == 3
    error_message = "The gallery_image_version value must have three dot-separated parts, like 1.2.3."
  }
}

variable "replication_regions" {
  type        = list(string)
  description = "Regions the new gallery version is stored in (one target_region each); the build region must be one of them."
  default     = ["francecentral"]
}

# --- What the factory stamps on the build -----------------------------------

variable "run_id" {
  type        = string
  description = "Git commit the factory builds (the seed's name for it; the gitRef tag); empty for manual builds."
  default     = ""
}

variable "factory_run_id" {
  type        = string
  description = "The factory's run id (e.g. push-base-w2022-datacenter-<commit>; the factory checks run ids where they arrive). Every resource the builder creates is tagged image-factory-run = this id, which the reaper matches against the run store; empty for manual builds, which get no factory tags."
  default     = ""

  validation {
    condition     = length(var.factory_run_id) <= 200
    error_message = "The factory_run_id value must be a factory run id (at most 200 characters)."
  }
}

variable "baseline_version" {
  type        = string
  description = "Version of the hardening baseline applied to the image."
  default     = "2024.1"
}

# --- Build network ----------------------------------------------------------

variable "build_network" {
  type        = string
  description = "private: the build VM gets only a private address in virtual_network_name and packer reaches WinRM over it (packer must run inside that network or a peered one). public-trial: packer creates a temporary network with a public IP, for trials only."
  default     = "private"

  validation {
    condition     = contains(["private", "public-trial"], var.build_network)
    error_message = "The build_network value must be \"private\" (production) or \"public-trial\"."
  }
}

variable "virtual_network_name" {
  type        = string
  description = "Existing virtual network of the build VM (required when build_network is private)."
  default     = ""
}

variable "virtual_network_subnet_name" {
  type        = string
  description = "Subnet of virtual_network_name for build VMs (empty: the builder picks the network's only subnet)."
  default     = ""
}

variable "virtual_network_resource_group_name" {
  type        = string
  description = "Resource group of virtual_network_name (empty: the builder looks it up)."
  default     = ""
}

variable "trial_allowed_inbound_ip_addresses" {
  type        = list(string)
  description = "public-trial only: addresses or CIDR ranges allowed to reach WinRM on the public IP (empty: the builder's network security group admits any address)."
  default     = []
}

variable "management_cidrs" {
  type        = list(string)
  description = "Addresses or CIDR ranges the image's firewall admits to WinRM over HTTPS (5986) and RDP (3389); packer's own address must be among them, since the steps after the firewall lock-down still use WinRM."
  default     = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]

  validation {
    condition     = length(var.management_cidrs) > 0
    error_message = "The management_cidrs value must list at least one address or range (packer needs WinRM after the firewall lock-down)."
  }
}

# --- Diagnostics and evidence ----------------------------------------------

variable "boot_diag_storage_account" {
  type        = string
  description = "Name of the storage account that receives the build VM's boot diagnostics (serial log, screenshot); empty: boot diagnostics off."
  default     = ""
}

variable "evidence_path" {
  type        = string
  description = "Where image-evidence.json is downloaded to on the machine running packer (relative: packer's working directory, beside manifest.json)."
  default     = "image-evidence.json"
}

# --- Limits of every wait -----------------------------------------------------

variable "winrm_timeout" {
  type        = string
  description = "How long packer waits for WinRM on the new VM."
  default     = "30m"
}

variable "provisioner_timeout_minutes" {
  type        = number
  description = "Limit of each provisioning step that is not a Windows Update pass or the generalisation (IIS, language pack, Defender, firewall, clean-up, evidence)."
  default     = 60

  validation {
    condition     = var.provisioner_timeout_minutes >= 5
    error_message = "The provisioner_timeout_minutes value must be at least 5."
  }
}

variable "windows_update_max_passes" {
  type        = number
  description = "Windows Update passes (search, install, restart when needed) before the build must have converged; the template holds 4 passes, so at most 4."
  default     = 3

  validation {
    condition     = var.windows_update_max_passes >= 1 && var.windows_update_max_passes <= 4
    error_message = "The windows_update_max_passes value must be between 1 and 4 (the passes the template holds)."
  }
}

variable "windows_update_pass_timeout_minutes" {
  type        = number
  description = "Limit of one Windows Update pass (search, download, install)."
  default     = 90

  validation {
    condition     = var.windows_update_pass_timeout_minutes >= 10
    error_message = "The windows_update_pass_timeout_minutes value must be at least 10."
  }
}

variable "windows_update_timeout_minutes" {
  type        = number
  description = "Limit of all Windows Update passes together, restarts included; checked at the start of each pass and by the final check."
  default     = 150

  validation {
    condition     = var.windows_update_timeout_minutes >= 10
    error_message = "The windows_update_timeout_minutes value must be at least 10."
  }
}

variable "windows_update_max_failures_per_update" {
  type        = number
  description = "An update that fails this many times (in passes separated by a restart) is a reboot loop, and the build stops naming it."
  default     = 2

  validation {
    condition     = var.windows_update_max_failures_per_update >= 1
    error_message = "The windows_update_max_failures_per_update value must be at least 1."
  }
}

variable "windows_update_max_pending_reboots" {
  type        = number
  description = "A pending reboot that is still pending after this many restarts in a row is a reboot loop, and the build stops naming the pending-reboot keys."
  default     = 2

  validation {
    condition     = var.windows_update_max_pending_reboots >= 1
    error_message = "The windows_update_max_pending_reboots value must be at least 1."
  }
}

variable "windows_update_search_criteria" {
  type        = string
  description = "Windows Update Agent search criteria of each pass (Defender definition updates are left to the Defender step)."
  default     = "IsInstalled=0 and IsHidden=0 and Type='Software' and BrowseOnly=0"
}

variable "windows_restart_timeout_minutes" {
  type        = number
  description = "Limit of each restart after a Windows Update pass (Windows may apply updates for a long time while it restarts)."
  default     = 30

  validation {
    condition     = var.windows_restart_timeout_minutes >= 5
    error_message = "The windows_restart_timeout_minutes value must be at least 5."
  }
}

variable "guest_agent_timeout_minutes" {
  type        = number
  description = "How long the generalisation waits for the Azure guest agent (RdAgent, WindowsAzureGuestAgent) to run before it fails."
  default     = 15

  validation {
    condition     = var.guest_agent_timeout_minutes >= 1
    error_message = "The guest_agent_timeout_minutes value must be at least 1."
  }
}

variable "sysprep_timeout_minutes" {
  type        = number
  description = "How long the generalisation waits for ImageState IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE before it fails with the state it saw."
  default     = 30

  validation {
    condition     = var.sysprep_timeout_minutes >= 5
    error_message = "The sysprep_timeout_minutes value must be at least 5."
  }
}

# --- Offline sources ----------------------------------------------------------

variable "language_pack_url" {
  type        = string
  description = "Where the French language pack CAB is hosted (empty: Windows Update)."
  default     = ""
}

variable "defender_definitions_share" {
  type        = string
  description = "UNC share with Defender definition updates for networks without egress (empty: Microsoft Update)."
  default     = ""
}

variable "common_tags" {
  type        = map(string)
  description = "Tags applied to every image."
  default = {
    Environment = "Staging"
    CreatedBy   = "Packer"
    Purpose     = "base-Image"
    OS          = "Windows"
  }
}
