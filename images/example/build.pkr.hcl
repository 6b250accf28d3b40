build {
  name    = "golden"
  sources = ["source.null.golden"]

  provisioner "shell-local" {
    script = "${path.root}/scripts/provision.sh"
    environment_vars = [
      "OUTPUT_DIR=${local.output_dir}",
      "IMAGE_NAME=${var.image_name}",
      "IMAGE_VERSION=${local.image_version}",
      "TAGS_JSON=${jsonencode(local.computed_tags)}",
      "STANDIN_OMIT=${var.standin_omit}",
    ]
  }

  provisioner "shell-local" {
    scripts          = ["${path.root}/scripts/smoke.sh"]
    environment_vars = ["OUTPUT_DIR=${local.output_dir}"]
  }

  # Stand-in patch evidence, last as on Windows (nothing when
  # evidence_os_build is empty).
  provisioner "shell-local" {
    script = "${path.root}/scripts/write-evidence.sh"
    environment_vars = [
      "EVIDENCE_PATH=${var.evidence_path}",
      "EVIDENCE_OS_BUILD=${var.evidence_os_build}",
      "EVIDENCE_INSTALLATION_TYPE=${var.evidence_installation_type}",
      "EVIDENCE_PRODUCT_NAME=${var.evidence_product_name}",
      "EVIDENCE_HOTFIXES=${var.evidence_hotfixes}",
      "EVIDENCE_REBOOT_PENDING=${var.evidence_reboot_pending}",
      "IMAGE_NAME=${var.image_name}",
      "IMAGE_VERSION=${local.image_version}",
      "FACTORY_RUN_ID=${var.factory_run_id}",
    ]
  }

  post-processors {
    post-processor "artifice" {
      files = [
        "${local.output_dir}/tags.json",
        "${local.output_dir}/index.html",
      ]
    }

    post-processor "manifest" {
      output      = "manifest.json"
      custom_data = local.computed_tags
    }
  }
}
