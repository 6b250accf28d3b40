# Azure credentials come from ARM_* environment variables, settings from
# PKR_VAR_* (packer reads PKR_VAR_<name> for variable <name> itself). Nothing
# secret has a literal default. Gallery variables left empty build a managed
# image only.

variable "subscription_id" {
  type        = string
  description = "Azure subscription id."
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

variable "location" {
  type        = string
  description = "Region of the build VM and the managed image."
  default     = "France Central"
}

variable "vm_size" {
  type        = string
  description = "Size of the build VM."
  default     = "Standard_D4s_v5"
}

variable "build_resource_group_name" {
  type        = string
  description = "Existing resource group the build VM runs in (empty: packer creates a temporary group in var.location and deletes it)."
  default     = ""
}

variable "managed_image_name" {
  type        = string
  description = "The managed image name."
  default     = "base-w2022-datacenter"
}

variable "managed_image_resource_group_name" {
  type        = string
  description = "Resource group of the managed image."
  default     = "rg-img-build"
}

variable "gallery_name" {
  type        = string
  description = "Azure Compute Gallery to publish to (empty: managed image only)."
  default     = ""
}

variable "gallery_resource_group_name" {
  type        = string
  description = "Resource group of the gallery."
  default     = ""
}

variable "gallery_image_name" {
  type        = string
  description = "Gallery image definition."
  default     = ""
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
  description = "Regions the new gallery version is replicated to."
  default     = ["francecentral"]
}

variable "run_id" {
  type        = string
  description = "Git commit the factory builds; empty for manual builds."
  default     = ""
}

variable "baseline_version" {
  type        = string
  description = "Version of the hardening baseline applied to the image."
  default     = "2024.1"
}

variable "winrm_timeout" {
  type        = string
  description = "How long packer waits for WinRM."
  default     = "30m"
}

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
