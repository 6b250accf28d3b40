//! The Windows Server 2022 template (`images/base-w2022-datacenter`), as far
//! as it can be checked without Windows, PowerShell or Azure
//! (docs/windows-image.md says what is not): the factory's own checks find
//! nothing and a run of it passes the validate stage with the local packer
//! (which, older than 1.7, cannot read `required_plugins`: the stage says so
//! in a warning, and the build then fails here and is diagnosed); `packer fmt`
//! accepts it; its variables and locals, evaluated by the local packer, tag
//! every resource with the run and refuse a private build without a network;
//! the build block collects the evidence after the last Windows Update pass
//! and restart and before generalisation, builds on Trusted Launch straight
//! into the gallery, and bounds every wait; and the scripts stop on their
//! first error, read before they change, and produce the documented JSON.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Factory, OPERATOR_TOKEN, Options, repo_root};
use hcl_edit::structure::{Block, Body};
use image_factory::config::{SmokeTest, find_on_path, load_images};
use image_factory::domain::run::{RunStatus, Stage, StageStatus};
use image_factory::template::check_folder;

fn template_dir() -> PathBuf {
    repo_root().join("images").join("base-w2022-datacenter")
}

fn read(relative: &str) -> String {
    let path = template_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn docs() -> String {
    std::fs::read_to_string(repo_root().join("docs").join("windows-image.md"))
        .expect("docs/windows-image.md")
}

fn parse(relative: &str) -> Body {
    hcl_edit::parser::parse_body(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The source text of an attribute's value, trimmed.
fn attr(body: &Body, key: &str) -> Option<String> {
    body.get_attribute(key)
        .map(|a| a.value.to_string().trim().to_string())
}

/// One provisioner of the build block, in the order packer runs them.
struct Provisioner<'a> {
    kind: String,
    block: &'a Block,
}

impl Provisioner<'_> {
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.block.body, key)
    }

    /// The script file it runs (`scripts/NAME.ps1` → `NAME.ps1`), if any.
    fn script(&self) -> Option<String> {
        let script = self.attr("script")?;
        let name = script.rsplit('/').next()?;
        Some(name.trim_end_matches('"').to_string())
    }

    fn env(&self) -> String {
        self.attr("environment_vars").unwrap_or_default()
    }

    fn runs(&self, script: &str) -> bool {
        self.script().as_deref() == Some(script)
    }
}

fn provisioners(build: &Body) -> Vec<Provisioner<'_>> {
    let build = build.get_blocks("build").next().expect("a build block");
    build
        .body
        .get_blocks("provisioner")
        .map(|block| Provisioner {
            kind: block
                .labels
                .first()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default(),
            block,
        })
        .collect()
}

fn position(all: &[Provisioner<'_>], what: &str, pick: impl Fn(&Provisioner<'_>) -> bool) -> usize {
    all.iter()
        .position(pick)
        .unwrap_or_else(|| panic!("no provisioner {what}"))
}

fn last_position(all: &[Provisioner<'_>], pick: impl Fn(&Provisioner<'_>) -> bool) -> usize {
    all.iter().rposition(pick).expect("at least one")
}

/// The script files of `scripts/`, by name.
fn scripts() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(template_dir().join("scripts"))
        .expect("scripts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "ps1" || x == "psm1"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&p).expect("script");
            (name, text)
        })
        .collect();
    found.sort();
    found
}

/// The JSON of the first fenced block of `language` after `heading` in the
/// docs page.
fn doc_sample(heading: &str, language: &str) -> serde_json::Value {
    let page = docs();
    let after = &page[page.find(heading).unwrap_or_else(|| panic!("{heading}"))..];
    let fence = format!("```{language}\n");
    let start = after.find(&fence).expect("a sample") + fence.len();
    let end = start + after[start..].find("```").expect("its end");
    serde_json::from_str(&after[start..end]).unwrap_or_else(|e| panic!("{heading}: {e}"))
}

// --- The factory's checks and stages -----------------------------------------

#[test]
fn the_factory_checks_find_nothing_in_the_windows_template() {
    let report = check_folder(&template_dir()).expect("readable");
    let findings: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(
        findings.is_empty(),
        "no error and no unused variable: {findings:?}"
    );
    assert!(report.requires_plugins, "the azure plugin is pinned");
    for declared in [
        "gallery_image_version",
        "run_id",
        "baseline_version",
        "factory_run_id",
        "evidence_path",
        "boot_diag_storage_account",
        "virtual_network_name",
        "virtual_network_subnet_name",
        "virtual_network_resource_group_name",
        "build_network",
    ] {
        assert!(
            report.variables.iter().any(|v| v == declared),
            "{declared} is declared so the factory passes it"
        );
    }
    for script in [
        "scripts/ImageFactory.psm1",
        "scripts/Invoke-WindowsUpdatePass.ps1",
        "scripts/Write-ImageEvidence.ps1",
        "scripts/Invoke-Generalization.ps1",
    ] {
        assert!(
            report.scripts.iter().any(|s| s == script),
            "{script} is used: {:?}",
            report.scripts
        );
    }
}

#[test]
fn every_variable_the_image_settings_pass_is_declared_and_every_variable_is_documented() {
    let report = check_folder(&template_dir()).expect("readable");
    let images = load_images(&repo_root().join("images")).expect("images load");
    let passed = &images["base-w2022-datacenter"].settings.packer.variables;
    for name in passed.keys() {
        assert!(
            report.variables.contains(name),
            "image.toml passes -var {name}, which packer refuses: the template does not declare it"
        );
    }
    let page = docs();
    for name in &report.variables {
        assert!(
            page.contains(&format!("`{name}`")),
            "docs/windows-image.md does not document the variable {name}"
        );
    }
}

#[test]
fn the_windows_image_settings_watch_its_marketplace_base_and_test_iis() {
    let images = load_images(&repo_root().join("images")).expect("images load");
    let windows = &images["base-w2022-datacenter"].settings;
    let base = windows
        .marketplace_base()
        .expect("a Marketplace base image");
    assert_eq!(
        (
            base.publisher.as_str(),
            base.offer.as_str(),
            base.sku.as_str()
        ),
        (
            "MicrosoftWindowsServer",
            "WindowsServer",
            "2022-datacenter-azure-edition"
        )
    );
    assert!(matches!(windows.smoke, SmokeTest::Http { .. }));
    assert_eq!(windows.approval.required, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_of_the_windows_template_passes_validate_and_its_failed_build_is_diagnosed() {
    let images = tempfile::TempDir::new().unwrap();
    copy_dir(
        &template_dir(),
        &images.path().join("base-w2022-datacenter"),
    );
    let factory = Factory::start_with(Options {
        images_dir: images.path().to_path_buf(),
        ..Options::default()
    })
    .await;
    let response = factory
        .http
        .post(format!("{}/api/runs", factory.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&serde_json::json!({ "image": "base-w2022-datacenter", "reason": "template check", "force": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
    let runs = factory.app.store.list(&Default::default()).await.unwrap();
    let id = runs.runs[0].id.clone();
    let run = factory.wait_status(&id, RunStatus::Failed).await;
    let validate = run.stage(Stage::Validate);
    assert_eq!(validate.status, StageStatus::Succeeded, "{run:#?}");
    let failure = run.failure.as_ref().expect("failed");
    assert_eq!(failure.stage, Some(Stage::Build), "{failure:?}");
    if run.findings.iter().any(|f| f.kind == "packer-too-old") {
        // packer < 1.7 cannot read the plugin block: the build cannot start.
        assert_eq!(
            failure.diagnosis.as_ref().map(|d| d.kind.as_str()),
            Some("plugin-missing"),
            "{failure:?}"
        );
    }
    factory.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

// --- Real packer on the template's files ---------------------------------------

fn packer() -> PathBuf {
    find_on_path("packer")
        .expect("these tests run real packer: install it (apt-get install packer)")
}

#[test]
fn packer_fmt_accepts_the_template() {
    let out = Command::new(packer())
        .args(["fmt", "-check", "."])
        .current_dir(template_dir())
        .output()
        .expect("packer runs");
    assert!(
        out.status.success(),
        "not formatted (run `packer fmt .`): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What packer makes of the template's variables and locals for the given
/// `-var`s: the template's own `variables.pkr.hcl` and `locals.pkr.hcl` with a
/// null build that writes the locals as JSON. `Err` holds packer's output
/// when it refuses the values.
fn evaluate(vars: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let dir = tempfile::TempDir::new().unwrap();
    for file in ["variables.pkr.hcl", "locals.pkr.hcl"] {
        std::fs::copy(template_dir().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("probe.pkr.hcl"),
        r#"source "null" "probe" {
  communicator = "none"
}

build {
  sources = ["source.null.probe"]

  provisioner "shell-local" {
    environment_vars = ["PROBE_JSON=${jsonencode({
      virtual_network_name = local.virtual_network_name
      private_network      = local.private_network
      azure_tags           = local.azure_tags
      windows_update_env   = local.windows_update_env
    })}"]
    inline = ["printf '%s' \"$PROBE_JSON\" > probe.json"]
  }
}
"#,
    )
    .unwrap();
    let mut command = Command::new(packer());
    command
        .arg("build")
        .current_dir(dir.path())
        .env("CHECKPOINT_DISABLE", "1");
    for (name, value) in [
        ("gallery_name", "gal"),
        ("gallery_resource_group_name", "rg-gallery"),
        ("gallery_image_name", "windows-web-base"),
    ]
    .iter()
    .chain(vars)
    {
        command.arg("-var").arg(format!("{name}={value}"));
    }
    let out = command.arg(".").output().expect("packer runs");
    if !out.status.success() {
        // packer wraps its messages at its own width: one line of words.
        let text = format!(
            "{} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let json = std::fs::read_to_string(dir.path().join("probe.json")).expect("probe.json");
    Ok(serde_json::from_str(&json).expect("JSON"))
}

#[test]
fn every_resource_of_a_factory_build_carries_the_run_and_a_manual_build_none() {
    let run = "push-base-w2022-datacenter-0123456789abcdef0123456789abcdef01234567";
    let locals = evaluate(&[
        ("virtual_network_name", "vnet-factory"),
        ("factory_run_id", run),
        ("run_id", "0123456789abcdef0123456789abcdef01234567"),
    ])
    .expect("packer accepts a factory build");
    let tags = &locals["azure_tags"];
    assert_eq!(tags["image-factory-run"], run, "{tags}");
    assert_eq!(tags["image-factory"], "build", "{tags}");
    assert_eq!(
        tags["gitRef"], "0123456789abcdef0123456789abcdef01234567",
        "the seed's tags stay: {tags}"
    );
    assert_eq!(tags["imageName"], "windows-web-base");

    let manual = evaluate(&[("virtual_network_name", "vnet-factory")]).expect("manual build");
    let tags = manual["azure_tags"].as_object().expect("tags");
    assert!(
        !tags.keys().any(|k| k.starts_with("image-factory")),
        "a manual build is no run of the factory's: the reaper must never find it: {tags:?}"
    );
    // The source puts these tags on everything the builder creates.
    let source = parse("source.pkr.hcl");
    let azure = source.get_blocks("source").next().expect("source");
    assert_eq!(
        attr(&azure.body, "azure_tags").as_deref(),
        Some("local.azure_tags")
    );
}

#[test]
fn the_default_build_network_is_private_and_refused_without_a_network() {
    let private = evaluate(&[("virtual_network_name", "vnet-factory")]).expect("private");
    assert_eq!(private["private_network"], true, "private is the default");
    assert_eq!(private["virtual_network_name"], "vnet-factory");

    let refused = evaluate(&[]).expect_err("a private build without a network");
    assert!(
        refused.contains("virtual_network_name is empty"),
        "the builder would create a public IP; packer must stop first: {refused}"
    );

    let trial = evaluate(&[("build_network", "public-trial")]).expect("a trial");
    assert_eq!(
        trial["virtual_network_name"], "",
        "a trial lets the builder make its network"
    );

    let typo = evaluate(&[("build_network", "public"), ("virtual_network_name", "v")])
        .expect_err("an unknown mode");
    assert!(typo.contains("build_network"), "{typo}");

    // And the builder is never asked for a public IP on the private network.
    let source = parse("source.pkr.hcl");
    let azure = &source.get_blocks("source").next().expect("source").body;
    assert_eq!(
        attr(azure, "private_virtual_network_with_public_ip").as_deref(),
        Some("false")
    );
    assert_eq!(
        attr(azure, "virtual_network_name").as_deref(),
        Some("local.virtual_network_name")
    );
}

#[test]
fn windows_update_passes_are_bounded_by_what_the_template_holds() {
    let build = parse("build.pkr.hcl");
    let all = provisioners(&build);
    let passes: Vec<String> = all
        .iter()
        .filter(|p| p.runs("Invoke-WindowsUpdatePass.ps1"))
        .map(|p| p.env())
        .collect();
    let numbered = passes
        .iter()
        .filter(|env| !env.contains("WU_PASS=final"))
        .count();
    assert_eq!(numbered, 4, "{passes:?}");
    assert!(
        passes
            .last()
            .is_some_and(|env| env.contains("WU_PASS=final"))
    );

    let four = evaluate(&[
        ("virtual_network_name", "v"),
        ("windows_update_max_passes", "4"),
    ])
    .expect("4 passes: the template holds 4");
    assert!(
        four["windows_update_env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e == "WU_MAX_PASSES=4"),
        "{four}"
    );
    for refused in ["5", "0"] {
        let out = evaluate(&[
            ("virtual_network_name", "v"),
            ("windows_update_max_passes", refused),
        ])
        .expect_err(refused);
        assert!(out.contains("windows_update_max_passes"), "{out}");
    }
}

// --- The build block ---------------------------------------------------------------

#[test]
fn the_evidence_is_collected_after_the_last_update_pass_and_restart_and_before_generalisation() {
    let build = parse("build.pkr.hcl");
    let all = provisioners(&build);
    let final_check = position(&all, "for the final Windows Update check", |p| {
        p.runs("Invoke-WindowsUpdatePass.ps1") && p.env().contains("WU_PASS=final")
    });
    let last_pass = last_position(&all, |p| p.runs("Invoke-WindowsUpdatePass.ps1"));
    let last_restart = last_position(&all, |p| p.kind == "windows-restart");
    let evidence = position(&all, "writing the evidence", |p| {
        p.runs("Write-ImageEvidence.ps1")
    });
    let generalisation = position(&all, "generalising", |p| {
        p.runs("Invoke-Generalization.ps1")
    });

    assert_eq!(last_pass, final_check, "the final check is the last pass");
    assert!(
        last_restart < final_check,
        "the final check follows the last restart"
    );
    assert!(evidence > final_check && evidence > last_restart);
    assert_eq!(
        generalisation,
        all.len() - 1,
        "generalisation is the last step"
    );
    assert!(evidence < generalisation);

    // Right after the evidence, it is downloaded to where the factory says.
    let download = &all[evidence + 1];
    assert_eq!(download.kind, "file");
    assert_eq!(download.attr("direction").as_deref(), Some("\"download\""));
    assert_eq!(
        download.attr("source").as_deref(),
        Some("local.evidence_remote_path")
    );
    assert_eq!(
        download.attr("destination").as_deref(),
        Some("var.evidence_path")
    );
    assert!(
        all[evidence]
            .env()
            .contains("EVIDENCE_PATH=${local.evidence_remote_path}"),
        "the script writes where the download reads"
    );
    assert_eq!(
        evidence + 2,
        generalisation,
        "nothing runs between the evidence and generalisation"
    );

    // The update history is read through the COM object, as SYSTEM.
    for index in [evidence, final_check] {
        let p = &all[index];
        assert_eq!(p.attr("elevated_user").as_deref(), Some("\"SYSTEM\""));
    }
}

#[test]
fn the_build_runs_on_trusted_launch_and_publishes_straight_to_the_gallery() {
    let source = parse("source.pkr.hcl");
    let azure = &source.get_blocks("source").next().expect("source").body;
    assert_eq!(
        attr(azure, "security_type").as_deref(),
        Some("\"TrustedLaunch\"")
    );
    assert_eq!(attr(azure, "secure_boot_enabled").as_deref(), Some("true"));
    assert_eq!(attr(azure, "vtpm_enabled").as_deref(), Some("true"));

    let gallery = azure
        .get_blocks("shared_image_gallery_destination")
        .next()
        .expect("a gallery destination");
    for (key, value) in [
        ("gallery_name", "var.gallery_name"),
        ("resource_group", "var.gallery_resource_group_name"),
        ("image_name", "var.gallery_image_name"),
        ("image_version", "var.gallery_image_version"),
    ] {
        assert_eq!(attr(&gallery.body, key).as_deref(), Some(value), "{key}");
    }
    assert!(
        azure
            .get_blocks("shared_image_gallery_destination")
            .nth(1)
            .is_none(),
        "one destination"
    );

    // The builder refuses secure boot and vTPM with a managed image, and a
    // VHD is no gallery version: no such option, nor a variable for one, in
    // any file of the template.
    for file in [
        "source.pkr.hcl",
        "build.pkr.hcl",
        "locals.pkr.hcl",
        "variables.pkr.hcl",
    ] {
        let text = read(file);
        for option in [
            "managed_image_",
            "capture_container_name",
            "capture_name_prefix",
        ] {
            assert!(!text.contains(option), "{file} still has {option}");
        }
    }

    // The plugin is pinned to the release the docs cite.
    let plugins = parse("plugins.pkr.hcl");
    let packer_block = plugins.get_blocks("packer").next().expect("packer block");
    let required = packer_block
        .body
        .get_blocks("required_plugins")
        .next()
        .expect("required_plugins");
    let azure_plugin = required
        .body
        .get_attribute("azure")
        .expect("azure plugin")
        .value
        .to_string();
    assert!(
        azure_plugin.contains("version = \"= 2.6.3\""),
        "{azure_plugin}"
    );
    assert!(docs().contains("v2.6.3"));
}

#[test]
fn every_wait_has_a_limit() {
    let build = parse("build.pkr.hcl");
    for p in provisioners(&build) {
        let label = format!("{} {:?}", p.kind, p.script());
        match p.kind.as_str() {
            "windows-restart" => assert!(p.attr("restart_timeout").is_some(), "{label}"),
            _ => assert!(p.attr("timeout").is_some(), "{label} has no timeout"),
        }
    }
    let source = parse("source.pkr.hcl");
    let azure = &source.get_blocks("source").next().expect("source").body;
    assert_eq!(
        attr(azure, "winrm_timeout").as_deref(),
        Some("var.winrm_timeout")
    );
    assert_eq!(
        attr(azure, "boot_diag_storage_account").as_deref(),
        Some("var.boot_diag_storage_account"),
        "boot diagnostics go to the factory's account"
    );

    // A loop in a script polls against a deadline.
    for (name, text) in scripts() {
        let loops = text.matches("while (").count();
        if loops > 0 {
            assert!(
                text.contains("(Get-Date) -gt $deadline"),
                "{name} loops without a deadline"
            );
        }
        assert!(!text.contains("while ($true) { Start-Sleep"), "{name}");
    }
    // The generalisation's waits: the guest agent services, then the image
    // state, each with its own deadline and the state it saw.
    let generalise = read("scripts/Invoke-Generalization.ps1");
    for needed in [
        "'RdAgent', 'WindowsAzureGuestAgent'",
        "GUEST_AGENT_TIMEOUT_MINUTES",
        "SYSPREP_TIMEOUT_MINUTES",
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
        "last state",
        "setuperr.log",
    ] {
        assert!(generalise.contains(needed), "{needed}");
    }
    let agent = generalise
        .find("'WindowsAzureGuestAgent'")
        .expect("agent wait");
    let sysprep = generalise.find("Sysprep.exe").expect("Sysprep");
    assert!(agent < sysprep, "the guest agent before Sysprep");
}

// --- The scripts -----------------------------------------------------------------------

/// The script's statements, without comments and blank lines.
fn statements(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn every_script_stops_on_its_first_error() {
    let all = scripts();
    assert!(
        all.len() >= 9,
        "{:?}",
        all.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (name, text) in &all {
        let lines = statements(text);
        // A param block comes first when there is one; then the preference.
        let mut rest = lines.as_slice();
        if rest.first().is_some_and(|l| l.starts_with("param(")) {
            let end = rest.iter().position(|l| *l == ")").expect("end of param");
            rest = &rest[end + 1..];
        }
        assert_eq!(
            rest.first().copied(),
            Some("$ErrorActionPreference = 'Stop'"),
            "{name} must stop on its first error before doing anything"
        );
    }
}

#[test]
fn every_script_reads_before_it_changes() {
    // (script, what it reads, what it changes): the read comes first.
    let cases = [
        (
            "Install-FR-Language.ps1",
            "Get-WindowsPackage -Online",
            "Add-WindowsPackage",
        ),
        (
            "Install-FR-Language.ps1",
            "Get-WindowsPackage -Online",
            "Install-Language",
        ),
        (
            "Install-Windows-Defender.ps1",
            "Get-WindowsFeature",
            "Install-WindowsFeature",
        ),
        (
            "Install-Windows-Defender.ps1",
            "AntivirusSignatureAge",
            "Update-MpSignature",
        ),
        (
            "Configure-Windows-Firewall.ps1",
            "Get-NetFirewallRule",
            "New-NetFirewallRule",
        ),
        (
            "Cleanup.ps1",
            "/AnalyzeComponentStore",
            "/StartComponentCleanup",
        ),
        (
            "Invoke-WindowsUpdatePass.ps1",
            "if ($state.converged)",
            "CreateUpdateInstaller",
        ),
        (
            "Invoke-WindowsUpdatePass.ps1",
            "$elapsedMinutes -gt $timeoutMinutes",
            "CreateUpdateInstaller",
        ),
        (
            "Invoke-WindowsUpdatePass.ps1",
            "-ge $maxPendingReboots",
            "CreateUpdateInstaller",
        ),
        (
            "Invoke-WindowsUpdatePass.ps1",
            "if ($number -gt $maxPasses)",
            "CreateUpdateInstaller",
        ),
        (
            "Invoke-Generalization.ps1",
            "if ($state -eq $generalized)",
            "Remove-Item",
        ),
        (
            "Invoke-Generalization.ps1",
            "if ($state -eq $generalized)",
            "Sysprep.exe",
        ),
        (
            "ImageFactory.psm1",
            "if (-not (Test-Path -Path $folder))",
            "New-Item",
        ),
    ];
    for (script, reads, changes) in cases {
        let text = read(&format!("scripts/{script}"));
        let read_at = text
            .find(reads)
            .unwrap_or_else(|| panic!("{script}: {reads}"));
        let change_at = text
            .find(changes)
            .unwrap_or_else(|| panic!("{script}: {changes}"));
        assert!(
            read_at < change_at,
            "{script} changes ({changes}) before it reads ({reads})"
        );
    }
    // The declaration checks and the evidence change nothing in the image
    // (the evidence writes its own file only).
    for script in ["Test-ImageDeclaration.ps1", "Write-ImageEvidence.ps1"] {
        let text = read(&format!("scripts/{script}"));
        for verb in [
            "Install-",
            "Set-",
            "Remove-Item",
            "Add-WindowsPackage",
            "Update-MpSignature",
            "New-NetFirewallRule",
        ] {
            assert!(!text.contains(verb), "{script} changes something: {verb}");
        }
    }
}

#[test]
fn the_evidence_script_writes_every_field_the_docs_show_and_never_half_a_file() {
    let sample = doc_sample("## The patch evidence", "json");
    let script = read("scripts/Write-ImageEvidence.ps1");
    assert_eq!(sample["schema"], "image-factory.evidence/1");
    assert!(script.contains("schema               = 'image-factory.evidence/1'"));
    // The issue's fields, with their types.
    assert!(sample["collectedAt"].is_string());
    for key in ["productName", "installationType", "build"] {
        assert!(sample["os"][key].is_string(), "os.{key}");
    }
    assert!(sample["rebootPending"].is_boolean());
    assert!(
        sample["hotfixes"]
            .as_array()
            .is_some_and(|h| h.iter().all(|k| k.is_string()))
    );
    let update = &sample["updates"][0];
    for key in ["title", "kb", "date"] {
        assert!(update[key].is_string(), "updates[].{key}");
    }
    assert_eq!(update["resultCode"], 2);
    assert!(
        sample["os"]["build"]
            .as_str()
            .is_some_and(|b| b.starts_with("10.0.20348.")),
        "10.0.<CurrentBuild>.<UBR>"
    );

    // Every key of the sample is one the script writes: top level, os,
    // image, defender and an update entry.
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for object in [
        &sample,
        &sample["os"],
        &sample["image"],
        &sample["defender"],
        update,
    ] {
        keys.extend(object.as_object().expect("object").keys().cloned());
    }
    for key in &keys {
        let written = [
            format!("    {key} "),
            format!("{key} = "),
            format!("$os.{key} = "),
        ];
        assert!(
            written.iter().any(|w| script.contains(w.as_str())),
            "the docs show {key}, which Write-ImageEvidence.ps1 does not write"
        );
    }
    // Sources read where the docs say.
    for source in [
        "HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
        "'10.0.{0}.{1}' -f $currentVersion.CurrentBuild, $currentVersion.UBR",
        "$currentVersion.InstallationType",
        "Get-HotFix",
        "New-Object -ComObject Microsoft.Update.Session",
        "QueryHistory",
        "Get-PendingRebootReason",
        "Get-MpComputerStatus",
        "MUILanguages",
    ] {
        assert!(script.contains(source), "{source}");
    }
    let helpers = read("scripts/ImageFactory.psm1");
    for key in [
        "Component Based Servicing\\RebootPending",
        "WindowsUpdate\\Auto Update\\RebootRequired",
        "PendingFileRenameOperations",
    ] {
        assert!(helpers.contains(key), "pending-reboot marker {key}");
    }
    // Each source is read on its own, a failure becomes null and a line of
    // "unavailable"; the file goes in place whole.
    assert!(script.contains("catch {") && script.contains("Write-Output $null"));
    assert!(script.contains("unavailable          = $unavailable.ToArray()"));
    assert!(script.contains("Write-JsonFile -Path $path -Value $evidence"));
    assert!(helpers.contains("$temporary = \"$Path.$PID.tmp\""));
    assert!(helpers.contains("[System.IO.File]::Replace($temporary, $Path"));
}

#[test]
fn the_factory_reads_the_evidence_the_script_writes_and_gates_the_windows_image() {
    use image_factory::domain::evidence::{Evidence, InstallationType};
    use image_factory::domain::patch::Target;
    // The sample the docs show (every key of which the script writes, see
    // above) is what the build stage's parser reads.
    let sample = doc_sample("## The patch evidence", "json");
    let evidence = Evidence::parse(&sample.to_string()).expect("the factory reads the sample");
    assert_eq!(evidence.os.installation_type, InstallationType::Server);
    assert!(!evidence.reboot_pending && !evidence.stand_in);
    assert_eq!(
        evidence.image.as_ref().and_then(|i| i.run_id.as_deref()),
        sample["image"]["runId"].as_str()
    );
    // A source the script could not read is null and listed: the parser
    // keeps reading, and refuses only a null the rules judge.
    let mut unread = sample.clone();
    unread["hotfixes"] = serde_json::Value::Null;
    unread["defender"] = serde_json::Value::Null;
    unread["unavailable"] = serde_json::json!([{ "source": "hotfixes", "error": "RPC" }]);
    let read = Evidence::parse(&unread.to_string()).expect("null sources are read");
    assert!(read.hotfixes.is_empty() && !read.could_read("hotfixes"));
    let mut no_build = sample.clone();
    no_build["os"]["build"] = serde_json::Value::Null;
    no_build["unavailable"] =
        serde_json::json!([{ "source": "os.build", "error": "UBR is missing" }]);
    let refused = Evidence::parse(&no_build.to_string())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("os.build is null") && refused.contains("UBR is missing"),
        "{refused}"
    );

    // The Windows image is gated, on the product its evidence names.
    let images = load_images(&repo_root().join("images")).expect("images load");
    let patch = images["base-w2022-datacenter"]
        .settings
        .patch
        .clone()
        .expect("the Windows image has a [patch] table");
    assert_eq!(
        Target::of(&evidence).expect("a known OS").product,
        patch.product
    );
    assert!(
        images["example"].settings.patch.is_none(),
        "the example is not gated by default (the README's path needs no internet)"
    );
}

#[test]
fn the_declaration_script_prints_the_documented_checks() {
    let sample = doc_sample("## The declaration checks", "json");
    let checks = sample["checks"].as_array().expect("checks");
    let script = read("scripts/Test-ImageDeclaration.ps1");
    assert!(script.contains(
        "[ordered]@{ name = $Name; expected = $Expected; actual = [string]$actual; ok = [bool]$ok }"
    ));
    assert!(script.contains(
        "ConvertTo-Json -InputObject ([ordered]@{ checks = $checks.ToArray() }) -Depth 4 -Compress"
    ));
    assert!(script.contains("if ($failed.Count -gt 0) {\n    exit 1"));
    for check in checks {
        let keys: Vec<&String> = check.as_object().expect("a check").keys().collect();
        assert_eq!(keys, ["actual", "expected", "name", "ok"], "{check}");
        let name = check["name"].as_str().expect("name");
        let kind = name.split(':').next().expect("kind");
        assert!(
            script.contains(&format!("\"{kind}:")) || script.contains(&format!("'{name}'")),
            "the docs show the check {name}, which the script does not make"
        );
    }
    // The seed's declaration: IIS, French, fresh Defender signatures, every
    // firewall profile on.
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for declared in [
        "feature:Web-Server",
        "language-pack:fr-FR",
        "defender:signature-age-hours",
        "firewall:Domain",
        "firewall:Private",
        "firewall:Public",
    ] {
        assert!(names.contains(&declared), "{declared}");
    }
    // Its parameters are the ones documented, and the [declare] table names
    // each of them.
    let page = docs();
    for (parameter, key) in [
        ("Features", "features"),
        ("LanguagePacks", "language_packs"),
        (
            "DefenderSignatureMaxAgeHours",
            "defender_signature_max_age_hours",
        ),
        ("FirewallProfiles", "firewall_profiles"),
        ("Services", "services"),
    ] {
        assert!(script.contains(&format!("${parameter} =")), "{parameter}");
        assert!(
            page.contains(&format!("`-{parameter}`")),
            "{parameter} documented"
        );
        assert!(page.contains(&format!("\n{key} = ")), "[declare] {key}");
    }
    // The image declares the table the page shows, the factory's default
    // checker is this script, and it sends the parameters the page lists.
    let images = load_images(&repo_root().join("images")).expect("images load");
    let declare = images["base-w2022-datacenter"]
        .settings
        .declare
        .clone()
        .expect("the Windows image declares what it holds");
    assert_eq!(declare.checker, "scripts/Test-ImageDeclaration.ps1");
    let toml = read("image.toml");
    let table = toml
        .split("\n[declare]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the [declare] table");
    assert!(
        page.contains(&format!("```toml\n[declare]\n{table}\n```")),
        "the page shows the image's table:\n{table}"
    );
    let sent: Vec<String> = declare
        .parameters()
        .iter()
        .map(|p| format!("`{}={}`", p.name, p.value))
        .collect();
    let flat = page.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!(
            "Run Command parameters for it: {}.",
            sent.join(", ")
        )),
        "{sent:?}"
    );
    // The seed's sample names only checks the image declares.
    let expected = declare.expected();
    for name in &names {
        assert!(expected.iter().any(|e| e == name), "{name}");
    }
}

#[test]
fn every_failure_kind_a_script_prints_is_documented() {
    let page = docs();
    let mut kinds = BTreeSet::new();
    for (name, text) in scripts() {
        for marker in ["[image-factory:", "Stop-Build '", "Stop-Generalization '"] {
            let mut rest = text.as_str();
            while let Some(at) = rest.find(marker) {
                let tail = &rest[at + marker.len()..];
                let end = tail
                    .find([']', '\''])
                    .unwrap_or_else(|| panic!("{name}: unterminated kind"));
                let kind = &tail[..end];
                if !kind.starts_with('$') {
                    kinds.insert(kind.to_string());
                }
                rest = tail;
            }
        }
    }
    assert!(kinds.contains("windows-update-reboot-loop"), "{kinds:?}");
    assert!(kinds.contains("guest-agent-not-ready"), "{kinds:?}");
    for kind in &kinds {
        assert!(
            page.contains(&format!("`{kind}`")),
            "the failure kind {kind} is not in docs/windows-image.md"
        );
    }
}
