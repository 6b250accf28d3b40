source "azure-arm" "image" {
  subscription_id    = var.subscription_id
  tenant_id          = var.tenant_id
  client_id          = var.client_id
  client_jwt         = var.client_jwt
  use_azure_cli_auth = var.use_azure_cli_auth

  os_type         = "Windows"
  image_publisher = "MicrosoftWindowsServer"
  image_offer     = "WindowsServer"
  image_sku       = "2022-datacenter-azure-edition"

  # An existing build group (the factory's) or, when none is given, a
  # temporary group packer creates in var.location and deletes; packer
  # refuses a location together with an existing group.
  location                  = var.build_resource_group_name == "" ? var.location : ""
  vm_size                   = var.vm_size
  build_resource_group_name = var.build_resource_group_name

  communicator   = "winrm"
  winrm_use_ssl  = true
  winrm_insecure = true
  winrm_timeout  = var.winrm_timeout
  winrm_username = "packer"

  managed_image_name                = "${var.managed_image_name}-${var.gallery_image_version}"
  managed_image_resource_group_name = var.managed_image_resource_group_name

  dynamic "shared_image_gallery_destination" {
    for_each = local.use_gallery ? [1] : []
    content {
      subscription         = var.subscription_id
      resource_group       = var.gallery_resource_group_name
      gallery_name         = var.gallery_name
      image_name           = var.gallery_image_name
      image_version        = var.gallery_image_version
      replication_regions  = var.replication_regions
      storage_account_type = "Standard_LRS"
    }
  }

  azure_tags = local.computed_tags
}
