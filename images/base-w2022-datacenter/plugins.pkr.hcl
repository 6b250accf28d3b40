packer {
  required_version = ">= 1.7.0"
  required_plugins {
    azure = {
      source = "github.com/hashicorp/azure"
      # Exactly the release whose options and checks docs/windows-image.md
      # cites: Trusted Launch (security_type, since 2.0.5) published straight
      # to a gallery with target_region blocks (since 2.0.3).
      version = "= 2.6.3"
    }
  }
}
