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
