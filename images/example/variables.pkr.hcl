variable "image_name" {
  type        = string
  description = "Name of the image definition in the gallery."
  default     = "example"
}

variable "gallery_image_version" {
  type        = string
  description = "Gallery image version to publish, MAJOR.MINOR.PATCH."
  default     = "0.0.1"

  validation {
    condition     = length(split(".", var.gallery_image_version)) == 3
    error_message = "The gallery_image_version value must have three dot-separated parts, like 1.2.3."
  }
}

variable "run_id" {
  type        = string
  description = "CI run identifier; empty for manual builds."
  default     = ""
}

variable "baseline_version" {
  type        = string
  description = "Version of the hardening baseline applied to the image."
  default     = "2024.1"
}

variable "common_tags" {
  type        = map(string)
  description = "Tags applied to every image."
  default = {
    owner      = "platform-team"
    costCenter = "cc-1234"
  }
}

variable "factory_run_id" {
  type        = string
  description = "The factory's run id (set by the factory); copied into the stand-in evidence."
  default     = ""
}

# --- Stand-in patch evidence --------------------------------------------------
# The example has no Windows to read: it writes image-evidence.json in the
# shape the Windows template writes, from these variables, marked
# "standIn": true (docs/patch-evidence.md). With evidence_os_build empty (the
# default) it writes none.

variable "evidence_path" {
  type        = string
  description = "Where image-evidence.json is written (set by the factory: the run's folder)."
  default     = "image-evidence.json"
}

variable "evidence_os_build" {
  type        = string
  description = "The OS build the stand-in evidence claims, 10.0.<build>.<ubr> (e.g. 10.0.20348.4648); empty: no evidence is written."
  default     = ""
}

variable "evidence_installation_type" {
  type        = string
  description = "The installation type the stand-in evidence claims: Server or Server Core."
  default     = "Server"
}

variable "evidence_product_name" {
  type        = string
  description = "The product name the stand-in evidence claims."
  default     = "Windows Server 2022 Datacenter"
}

variable "evidence_hotfixes" {
  type        = string
  description = "The hotfixes the stand-in evidence lists, comma-separated KB numbers (e.g. KB5073457)."
  default     = ""
}

variable "evidence_reboot_pending" {
  type        = string
  description = "Whether the stand-in evidence says a reboot is pending: true or false."
  default     = "false"
}

# --- Stand-in system ----------------------------------------------------------
# The image writes a stand-in "system" holding what the Windows image holds
# and declares (scripts/provision.sh); the test stage checks it against
# image.toml's [declare] (scripts/check-declaration.sh).

variable "standin_omit" {
  type        = string
  description = "One declared check whose item the stand-in system leaves out (e.g. service:W3SVC); empty: nothing is left out."
  default     = ""
}
