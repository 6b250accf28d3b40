build {
  name    = "base-w2022-datacenter"
  sources = ["source.azure-arm.image"]

  # Every step has a limit (timeout, restart_timeout, or a deadline inside its
  # script): a stuck VM fails the build with what it saw instead of running
  # until the stage times out. docs/windows-image.md lists each limit.

  # 1. WinRM answers (this command ran), and the build's own folder exists.
  provisioner "powershell" {
    timeout = "5m"
    inline = [
      "$ErrorActionPreference = 'Stop'",
      "if (-not (Test-Path '${local.factory_dir}')) { New-Item -ItemType Directory -Path '${local.factory_dir}' | Out-Null }",
      "Write-Output \"WinRM is ready on $env:COMPUTERNAME\"",
    ]
  }

  # 2. The helpers the Windows Update passes and the evidence share.
  provisioner "file" {
    timeout     = "5m"
    source      = "${path.root}/scripts/ImageFactory.psm1"
    destination = "${local.factory_dir}/ImageFactory.psm1"
  }

  # 3. IIS: the Web-Server role, W3SVC started automatically.
  provisioner "powershell" {
    timeout = "${var.provisioner_timeout_minutes}m"
    inline = [
      "$ErrorActionPreference = 'Stop'",
      "if (-not (Get-WindowsFeature -Name Web-Server).Installed) { Install-WindowsFeature -Name Web-Server -IncludeManagementTools | Out-Null }",
      "Set-Service -Name W3SVC -StartupType Automatic",
      "Start-Service -Name W3SVC",
    ]
  }

  # 4. French language pack (offline source when LANGUAGE_PACK_URL is set),
  #    before the updates: a cumulative update must follow a language pack.
  provisioner "powershell" {
    timeout          = "${var.provisioner_timeout_minutes}m"
    environment_vars = ["LANGUAGE_PACK_URL=${var.language_pack_url}"]
    script           = "${path.root}/scripts/Install-FR-Language.ps1"
  }

  provisioner "windows-restart" {
    restart_timeout = "${var.windows_restart_timeout_minutes}m"
  }

  # 5. Windows Update: at most var.windows_update_max_passes passes (the four
  #    below), each followed by a restart when it asked for one. A pass after
  #    convergence, or beyond the limit, does nothing. A reboot loop (the same
  #    update failing again after a restart, or a pending reboot that survives
  #    restarts) stops the build naming it. Run as SYSTEM: the Windows Update
  #    Agent refuses to install from a remote session.
  provisioner "powershell" {
    timeout           = "${var.windows_update_pass_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars  = concat(["WU_PASS=1"], local.windows_update_env)
    script            = "${path.root}/scripts/Invoke-WindowsUpdatePass.ps1"
  }

  provisioner "windows-restart" {
    restart_command = local.restart_if_needed
    restart_timeout = "${var.windows_restart_timeout_minutes}m"
  }

  provisioner "powershell" {
    timeout           = "${var.windows_update_pass_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars  = concat(["WU_PASS=2"], local.windows_update_env)
    script            = "${path.root}/scripts/Invoke-WindowsUpdatePass.ps1"
  }

  provisioner "windows-restart" {
    restart_command = local.restart_if_needed
    restart_timeout = "${var.windows_restart_timeout_minutes}m"
  }

  provisioner "powershell" {
    timeout           = "${var.windows_update_pass_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars  = concat(["WU_PASS=3"], local.windows_update_env)
    script            = "${path.root}/scripts/Invoke-WindowsUpdatePass.ps1"
  }

  provisioner "windows-restart" {
    restart_command = local.restart_if_needed
    restart_timeout = "${var.windows_restart_timeout_minutes}m"
  }

  provisioner "powershell" {
    timeout           = "${var.windows_update_pass_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars  = concat(["WU_PASS=4"], local.windows_update_env)
    script            = "${path.root}/scripts/Invoke-WindowsUpdatePass.ps1"
  }

  provisioner "windows-restart" {
    restart_command = local.restart_if_needed
    restart_timeout = "${var.windows_restart_timeout_minutes}m"
  }

  # 6. After the last restart: nothing applicable left, no reboot pending,
  #    within the time limit; else the build stops here saying which.
  provisioner "powershell" {
    timeout           = "${var.windows_update_pass_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars  = concat(["WU_PASS=final"], local.windows_update_env)
    script            = "${path.root}/scripts/Invoke-WindowsUpdatePass.ps1"
  }

  # 7. Defender and its signatures (internal share when there is no egress).
  provisioner "powershell" {
    timeout          = "${var.provisioner_timeout_minutes}m"
    environment_vars = ["DEFENDER_DEFINITIONS_SHARE=${var.defender_definitions_share}"]
    script           = "${path.root}/scripts/Install-Windows-Defender.ps1"
  }

  # 8. Firewall lock-down: WinRM and RDP only from what the policy allows.
  provisioner "powershell" {
    timeout          = "${var.provisioner_timeout_minutes}m"
    environment_vars = ["MANAGEMENT_CIDRS=${join(",", var.management_cidrs)}"]
    script           = "${path.root}/scripts/Configure-Windows-Firewall.ps1"
  }

  # 9. Clean-up before capture.
  provisioner "powershell" {
    timeout = "${var.provisioner_timeout_minutes}m"
    script  = "${path.root}/scripts/Cleanup.ps1"
  }

  # 10. Patch evidence: what the image says about itself after the last
  #     Windows Update pass and restart, then brought to the factory.
  provisioner "powershell" {
    timeout           = "${var.provisioner_timeout_minutes}m"
    elevated_user     = "SYSTEM"
    elevated_password = ""
    environment_vars = [
      "EVIDENCE_PATH=${local.evidence_remote_path}",
      "IMAGE_NAME=${var.gallery_image_name}",
      "IMAGE_VERSION=${var.gallery_image_version}",
      "FACTORY_RUN_ID=${var.factory_run_id}",
    ]
    script = "${path.root}/scripts/Write-ImageEvidence.ps1"
  }

  provisioner "file" {
    timeout     = "5m"
    direction   = "download"
    source      = local.evidence_remote_path
    destination = var.evidence_path
  }

  # 11. Generalisation: wait for the guest agent, Sysprep once, wait for the
  #     image state; each wait has a deadline and fails with what it saw.
  provisioner "powershell" {
    timeout = "${var.guest_agent_timeout_minutes + var.sysprep_timeout_minutes + 5}m"
    environment_vars = [
      "GUEST_AGENT_TIMEOUT_MINUTES=${var.guest_agent_timeout_minutes}",
      "SYSPREP_TIMEOUT_MINUTES=${var.sysprep_timeout_minutes}",
      "FACTORY_DIR=${local.factory_dir}",
    ]
    script = "${path.root}/scripts/Invoke-Generalization.ps1"
  }

  post-processor "manifest" {
    output      = "manifest.json"
    strip_path  = true
    custom_data = local.computed_tags
  }
}
