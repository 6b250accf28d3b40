locals {
  # The seed's traceability tags: the image's common tags with gitRef,
  # imageVersion, imageName, buildDate and baselineVersion (the manifest's
  # custom_data; the factory computes the same in domain::tags).
  computed_tags = merge(var.common_tags, {
    gitRef          = var.run_id != "" ? var.run_id : "manual"
    imageVersion    = var.gallery_image_version
    imageName       = var.gallery_image_name
    buildDate       = formatdate("YYYY-MM-DD", timestamp())
    baselineVersion = var.baseline_version
  })

  # The factory's tags on every resource the builder creates (its temporary
  # resource group, VM, OS disk, NIC, network, public IP, key vault) and on the
  # gallery version it publishes: the reaper's key. A manual build (no
  # factory_run_id) carries none, so the reaper never touches it.
  run_tags = {
    for name, value in {
      "image-factory"     = "build"
      "image-factory-run" = var.factory_run_id
    } : name => value if var.factory_run_id != ""
  }

  azure_tags = merge(local.computed_tags, local.run_tags)

  # The build network. In private mode the builder must be given a network:
  # without one it would create a public IP. file() of a path that cannot
  # exist stops packer with this sentence before any VM exists (only the
  # chosen branch of a condition is reported).
  private_network = var.build_network == "private"
  virtual_network_name = local.private_network ? (
    var.virtual_network_name != "" ? var.virtual_network_name : file("build_network is private but virtual_network_name is empty: pass the build subnet's network, or set build_network = public-trial for a trial with a public IP")
  ) : ""

  # Where the build keeps its own files inside the VM (removed before
  # generalisation), and the evidence it downloads.
  factory_dir          = "C:/ProgramData/image-factory"
  evidence_remote_path = "${local.factory_dir}/image-evidence.json"

  # After a Windows Update pass: restart only when the pass asked for it (it
  # leaves this marker), so the passes after convergence cost seconds.
  restart_if_needed = "powershell -NoProfile -ExecutionPolicy Bypass -Command \"if (Test-Path '${local.factory_dir}/windows-update/restart-needed') { shutdown /r /f /t 0 /c 'image-factory: Windows Update pass' } else { Write-Output 'image-factory: no restart needed after this pass' }\""

  # The environment of every Windows Update step: its limits.
  windows_update_env = [
    "WU_MAX_PASSES=${var.windows_update_max_passes}",
    "WU_TIMEOUT_MINUTES=${var.windows_update_timeout_minutes}",
    "WU_MAX_FAILURES_PER_UPDATE=${var.windows_update_max_failures_per_update}",
    "WU_MAX_PENDING_REBOOTS=${var.windows_update_max_pending_reboots}",
    "WU_SEARCH_CRITERIA=${var.windows_update_search_criteria}",
  ]
}
