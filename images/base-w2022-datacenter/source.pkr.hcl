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

  # Trusted Launch: a Generation 2 VM with secure boot and a virtual TPM. The
  # builder accepts secure boot and vTPM only when it publishes straight to a
  # gallery, so there is no managed image in between (docs/windows-image.md).
  security_type       = "TrustedLaunch"
  secure_boot_enabled = true
  vtpm_enabled        = true

  # The build network. private (the default): the VM gets a NIC in the given
  # subnet and no public IP, and packer talks WinRM to its private address;
  # the subnet's network security group decides who may. public-trial: no
  # network given, so the builder creates a temporary one with a public IP and
  # a network security group admitting trial_allowed_inbound_ip_addresses.
  virtual_network_name                   = local.virtual_network_name
  virtual_network_subnet_name            = local.private_network ? var.virtual_network_subnet_name : ""
  virtual_network_resource_group_name    = local.private_network ? var.virtual_network_resource_group_name : ""
  private_virtual_network_with_public_ip = false
  allowed_inbound_ip_addresses           = local.private_network ? [] : var.trial_allowed_inbound_ip_addresses

  communicator   = "winrm"
  winrm_use_ssl  = true
  winrm_insecure = true
  winrm_timeout  = var.winrm_timeout
  winrm_username = "packer"

  # Boot diagnostics (serial log and screenshot) into the factory's storage
  # account; the builder turns them off when no account is given.
  boot_diag_storage_account = var.boot_diag_storage_account

  shared_image_gallery_destination {
    subscription         = var.subscription_id
    resource_group       = var.gallery_resource_group_name
    gallery_name         = var.gallery_name
    image_name           = var.gallery_image_name
    image_version        = var.gallery_image_version
    storage_account_type = "Standard_LRS"

    dynamic "target_region" {
      for_each = var.replication_regions
      content {
        name = target_region.value
      }
    }
  }

  azure_tags = local.azure_tags
}
