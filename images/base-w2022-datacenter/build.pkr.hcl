build {
  name    = "base-w2022-datacenter"
  sources = ["source.azure-arm.image"]

  # 1. WinRM readiness: the first command only proves the session is stable.
  provisioner "powershell" {
    inline = [
      "$ErrorActionPreference = 'Stop'",
      "while ((Get-Service -Name WinRM).Status -ne 'Running') { Start-Sleep -Seconds 5 }",
      "Write-Output 'WinRM is ready'",
    ]
  }

  # 2. IIS: the Web-Server role, W3SVC started automatically.
  provisioner "powershell" {
    inline = [
      "$ErrorActionPreference = 'Stop'",
      "if (-not (Get-WindowsFeature -Name Web-Server).Installed) { Install-WindowsFeature -Name Web-Server -IncludeManagementTools | Out-Null }",
      "Set-Service -Name W3SVC -StartupType Automatic",
      "Start-Service -Name W3SVC",
    ]
  }

  # 3. French language pack (offline source when LANGUAGE_PACK_URL is set).
  provisioner "powershell" {
    environment_vars = ["LANGUAGE_PACK_URL=${var.language_pack_url}"]
    script           = "${path.root}/scripts/Install-FR-Language.ps1"
  }

  # 4. Defender and its signatures (internal share when there is no egress).
  provisioner "powershell" {
    environment_vars = ["DEFENDER_DEFINITIONS_SHARE=${var.defender_definitions_share}"]
    script           = "${path.root}/scripts/Install-Windows-Defender.ps1"
  }

  # 5. Firewall lock-down: WinRM and RDP only from what the policy allows.
  provisioner "powershell" {
    script = "${path.root}/scripts/Configure-Windows-Firewall.ps1"
  }

  # 6. Clean-up before capture.
  provisioner "powershell" {
    script = "${path.root}/scripts/Cleanup.ps1"
  }

  # 7. Sysprep once, then poll the image state until it is generalized.
  provisioner "powershell" {
    inline = [
      "$ErrorActionPreference = 'Stop'",
      "while ((Get-Service RdAgent).Status -ne 'Running') { Start-Sleep -Seconds 5 }",
      "while ((Get-Service WindowsAzureGuestAgent).Status -ne 'Running') { Start-Sleep -Seconds 5 }",
      "& $env:SystemRoot\\System32\\Sysprep\\Sysprep.exe /oobe /generalize /quiet /quit /mode:vm",
      "$deadline = (Get-Date).AddMinutes(30)",
      "while ($true) { $state = (Get-ItemProperty HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State).ImageState; Write-Output $state; if ($state -eq 'IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE') { break }; if ((Get-Date) -gt $deadline) { throw \"Sysprep did not reach IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE (ImageState timeout, last $state); see C:\\Windows\\System32\\Sysprep\\Panther\\setuperr.log\" }; Start-Sleep -Seconds 10 }",
    ]
  }

  post-processor "manifest" {
    output      = "manifest.json"
    strip_path  = true
    custom_data = local.computed_tags
  }
}
