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
    ]
  }

  provisioner "shell-local" {
    scripts          = ["${path.root}/scripts/smoke.sh"]
    environment_vars = ["OUTPUT_DIR=${local.output_dir}"]
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
