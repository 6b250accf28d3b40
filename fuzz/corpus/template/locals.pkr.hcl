locals {
  image_version = var.gallery_image_version
  output_dir    = "output/${var.image_name}-${var.gallery_image_version}"

  computed_tags = merge(var.common_tags, {
    gitRef          = var.run_id != "" ? var.run_id : "manual"
    imageVersion    = var.gallery_image_version
    imageName       = var.image_name
    buildDate       = formatdate("YYYY-MM-DD", timestamp())
    baselineVersion = var.baseline_version
  })
}
