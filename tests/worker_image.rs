//! The build worker's image and the infrastructure around it agree with the
//! code (Docker is not needed: what can be checked without building the
//! image is checked here):
//!
//! - deploy/worker/Dockerfile's entrypoint is a real subcommand of the binary
//!   (the real binary answers `--help` for it), runs as a non-root user and
//!   pins packer with a checksum;
//! - the build job (infra/modules/containerapps.bicep) runs that command in
//!   the container the factory looks up by name, and every `IMAGE_FACTORY_*`
//!   name it sets is one the worker reads; every `PKR_VAR_<name>` names a
//!   variable of the Windows template, and every `ARM_*` the template reads is
//!   set by the job, except the sign-in the worker adds per build
//!   (`ARM_CLIENT_ID`, `ARM_OIDC_TOKEN`), which the job must not fix;
//! - the function app (infra/modules/functionapp.bicep) sets every setting the
//!   Azure path needs (every name `AzureSettings::from_vars` reads that has no
//!   default).

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every string literal `"PREFIX..."` (letters, digits and `_`) in `text`.
fn literals(text: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let needle = format!("\"{prefix}");
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let tail = &rest[at + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('"') {
            found.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    found.sort();
    found.dedup();
    found
}

/// The code before its unit tests.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// One environment entry of the job's container: its name and its literal
/// value (Bicep source text) or secret reference.
#[derive(Debug)]
struct EnvEntry {
    name: String,
    value: Option<String>,
    secret_ref: Option<String>,
}

/// The `env: [...]` entries of the job's container, read line by line.
fn job_env(bicep: &str) -> Vec<EnvEntry> {
    let start = bicep
        .find("env: [")
        .expect("the job's container has an env list");
    let mut entries: Vec<EnvEntry> = Vec::new();
    for line in bicep[start..].lines().skip(1) {
        let line = line.trim();
        if line == "]" {
            break;
        }
        let quoted = |rest: &str| rest.trim().trim_matches('\'').to_string();
        if let Some(rest) = line.strip_prefix("name: ") {
            entries.push(EnvEntry {
                name: quoted(rest),
                value: None,
                secret_ref: None,
            });
        } else if let Some(rest) = line.strip_prefix("value: ") {
            entries.last_mut().expect("a value after a name").value = Some(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("secretRef: ") {
            entries
                .last_mut()
                .expect("a secretRef after a name")
                .secret_ref = Some(quoted(rest));
        }
    }
    assert!(!entries.is_empty(), "no env entry found in the job");
    entries
}

/// The quoted items of the Bicep array that follows `key: [` in `text`.
fn bicep_array(text: &str, key: &str) -> Vec<String> {
    let start = text
        .find(&format!("{key}: ["))
        .unwrap_or_else(|| panic!("no `{key}: [` found"));
    text[start..]
        .lines()
        .skip(1)
        .map(str::trim)
        .take_while(|l| *l != "]")
        .map(|l| l.trim_matches('\'').to_string())
        .collect()
}

fn dockerfile() -> String {
    read("deploy/worker/Dockerfile")
}

fn entrypoint() -> Vec<String> {
    let text = dockerfile();
    let line = text
        .lines()
        .rfind(|l| l.starts_with("ENTRYPOINT "))
        .expect("the Dockerfile has an ENTRYPOINT");
    serde_json::from_str(line.trim_start_matches("ENTRYPOINT ").trim())
        .expect("the ENTRYPOINT is in exec (JSON array) form")
}

#[test]
fn the_dockerfile_entrypoint_is_a_real_subcommand_of_the_binary() {
    let entry = entrypoint();
    assert_eq!(entry.first().map(String::as_str), Some("image-factory"));
    assert_eq!(entry, ["image-factory", "worker"]);
    let output = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(&entry[1..])
        .arg("--help")
        .output()
        .expect("run image-factory");
    assert!(
        output.status.success(),
        "`{} --help` exited {}: {}",
        entry.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // And a made-up subcommand is refused: the check above can fail.
    let bogus = Command::new(env!("CARGO_BIN_EXE_image-factory"))
        .args(["no-such-subcommand", "--help"])
        .output()
        .expect("run image-factory");
    assert!(!bogus.status.success());
}

#[test]
fn the_dockerfile_runs_as_a_non_root_user_with_a_pinned_checked_packer() {
    let text = dockerfile();
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets a USER");
    let uid = user.split(':').next().unwrap_or_default().trim();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "the worker must not run as root: USER {user}"
    );
    let arg = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}= default"))
            .trim()
            .to_string()
    };
    let version = arg("PACKER_VERSION");
    let (major, minor) = version
        .split_once('.')
        .map(|(a, b)| (a, b.split('.').next().unwrap_or_default()))
        .expect("PACKER_VERSION is MAJOR.MINOR.PATCH");
    let (major, minor): (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
    assert!(
        (major, minor) >= (1, 7),
        "packer {version}: the templates need 1.7+"
    );
    let sha = arg("PACKER_SHA256");
    assert!(
        sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
        "PACKER_SHA256 is not a SHA-256: {sha}"
    );
    assert!(text.contains("sha256sum -c -"), "the zip is not checked");
    assert!(
        text.contains("if [ -z \"${PACKER_SHA256}\" ]"),
        "an empty checksum must fail the build"
    );
    // The images are where the job says they are.
    assert!(text.contains("COPY images/ /app/images/"));
}

#[test]
fn the_build_job_runs_the_entrypoint_in_the_container_the_factory_starts() {
    let bicep = read("infra/modules/containerapps.bicep");
    assert!(
        bicep.contains(&format!(
            "name: '{}'",
            image_factory::azure::jobs::WORKER_CONTAINER
        )),
        "the job has no container named {}",
        image_factory::azure::jobs::WORKER_CONTAINER
    );
    assert_eq!(bicep_array(&bicep, "command"), entrypoint());
    assert!(
        bicep.contains("replicaRetryLimit: 0"),
        "the platform must not retry a build: the factory's watchdog does"
    );
}

#[test]
fn every_image_factory_name_the_job_sets_is_one_the_worker_reads() {
    let bicep = read("infra/modules/containerapps.bicep");
    let env = job_env(&bicep);
    // What the worker reads: its module and the `worker` command (cli/worker.rs).
    let mut read_by_worker = literals(without_tests(&read("handlers/worker.rs")), "IMAGE_FACTORY_");
    read_by_worker.extend(literals(
        without_tests(&read("handlers/cli/worker.rs")),
        "IMAGE_FACTORY_",
    ));
    let set: Vec<&EnvEntry> = env
        .iter()
        .filter(|e| e.name.starts_with("IMAGE_FACTORY_"))
        .collect();
    assert!(
        set.len() >= 3,
        "too few IMAGE_FACTORY_ names found: {env:?}"
    );
    for entry in &set {
        assert!(
            read_by_worker.contains(&entry.name),
            "the job sets {} but the worker does not read it (it reads {read_by_worker:?})",
            entry.name
        );
    }
    // The order is added per execution by the factory, never fixed on the job.
    assert!(
        !env.iter()
            .any(|e| e.name == image_factory::worker::ORDER_VAR),
        "the job must not fix {}",
        image_factory::worker::ORDER_VAR
    );
    // What the worker cannot do without is there.
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    for needed in [
        "IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION",
        "IMAGE_FACTORY_IMAGES",
        "IMAGE_FACTORY_DATA",
        "AZURE_CLIENT_ID",
    ] {
        assert!(names.contains(&needed), "the job does not set {needed}");
    }
    // The connection string comes from the Key Vault secret, never a value.
    let send = env
        .iter()
        .find(|e| e.name == "IMAGE_FACTORY_SERVICEBUS_SEND_CONNECTION")
        .expect("set");
    assert!(
        send.value.is_none(),
        "the send connection must be a secretRef"
    );
    let secret = send.secret_ref.as_deref().expect("a secretRef");
    assert!(
        bicep.contains(&format!("name: '{secret}'")) && bicep.contains("keyVaultUrl:"),
        "the secret {secret} is not a Key Vault reference of the job"
    );
    // The images folder is the one the Dockerfile copies them to.
    let images = env
        .iter()
        .find(|e| e.name == "IMAGE_FACTORY_IMAGES")
        .and_then(|e| e.value.clone())
        .expect("a value");
    assert_eq!(images, "'/app/images'");
}

#[test]
fn packer_gets_the_settings_and_credentials_the_windows_template_reads() {
    let env = job_env(&read("infra/modules/containerapps.bicep"));
    let template = read("images/base-w2022-datacenter/variables.pkr.hcl");
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    let pkr_vars: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix("PKR_VAR_"))
        .collect();
    for var in &pkr_vars {
        assert!(
            template.contains(&format!("variable \"{var}\"")),
            "the job sets PKR_VAR_{var} but the Windows template declares no variable {var}"
        );
    }
    for needed in [
        "build_resource_group_name",
        "gallery_name",
        "gallery_resource_group_name",
    ] {
        assert!(
            pkr_vars.contains(&needed),
            "the job does not set PKR_VAR_{needed}"
        );
    }
    // Every ARM_* the template takes from the environment is set: by the
    // job, or per build by the worker's federated sign-in (the app's client
    // id and the assertion, which is a secret the job must never hold).
    let mut rest = template.as_str();
    let mut arm = Vec::new();
    while let Some(at) = rest.find("env(\"ARM_") {
        let tail = &rest[at + 5..];
        let end = tail.find('"').expect("closing quote");
        arm.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    let from_worker = ["ARM_CLIENT_ID", "ARM_OIDC_TOKEN"];
    for name in from_worker {
        assert!(
            arm.iter().any(|a| a == name),
            "the template does not read {name}"
        );
        assert!(
            !names.contains(&name),
            "the job must not set {name}: the worker sets it per build"
        );
        assert!(
            read("handlers/worker.rs").contains(&format!("\"{name}\"")),
            "the worker does not set {name}"
        );
    }
    for name in arm.iter().filter(|a| !from_worker.contains(&a.as_str())) {
        assert!(
            names.contains(&name.as_str()),
            "the job does not set {name}"
        );
    }
    // The template hands the assertion to the plugin's client_jwt, hidden.
    let source = read("images/base-w2022-datacenter/source.pkr.hcl");
    assert!(source.contains("client_jwt         = var.client_jwt"));
    let client_jwt = template
        .split("variable \"client_jwt\"")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("the template declares client_jwt");
    assert!(client_jwt.contains("sensitive   = true"), "{client_jwt}");
    // The worker's sign-in is on: the job names the app registration.
    assert!(names.contains(&image_factory::worker::PACKER_CLIENT_ID_VAR));
    // Nothing picks packer's metadata-endpoint managed identity, which Container Apps does not serve.
    assert!(!names.contains(&"ARM_USE_MSI"));
}

#[test]
fn the_function_app_sets_every_setting_the_azure_path_needs() {
    let code = read("handlers/azure/mod.rs");
    // Names with a default the deployment is happy with.
    let defaulted = [
        "IMAGE_FACTORY_ARM_ENDPOINT",
        "IMAGE_FACTORY_TEST_GROUP_MAX_AGE_HOURS",
    ];
    let needed: Vec<String> = literals(without_tests(&code), "IMAGE_FACTORY_")
        .into_iter()
        .filter(|n| !defaulted.contains(&n.as_str()))
        .collect();
    for name in [
        "IMAGE_FACTORY_SUBSCRIPTION_ID",
        "IMAGE_FACTORY_GALLERY_RESOURCE_GROUP",
        "IMAGE_FACTORY_GALLERY",
        "IMAGE_FACTORY_BUILD_JOB",
        "IMAGE_FACTORY_BUILD_JOB_RESOURCE_GROUP",
        "IMAGE_FACTORY_BUILD_LOGS_URL",
        "IMAGE_FACTORY_TEST_LOCATION",
    ] {
        assert!(
            needed.iter().any(|n| n == name),
            "{name} is no longer read by AzureSettings::from_vars: update this test"
        );
    }
    let app = read("infra/modules/functionapp.bicep");
    for name in &needed {
        assert!(
            app.contains(&format!("name: '{name}'")),
            "the function app does not set {name}, which the Azure path needs"
        );
    }
    // The logs URL is the logs module's container URL, without a SAS.
    let main = read("infra/main.bicep");
    assert!(main.contains("buildLogsUrl: logs.outputs.containerUrl"));
    let logs = read("infra/modules/logs.bicep");
    assert!(logs.contains("allowSharedKeyAccess: false"));
    assert!(logs.contains(
        "output containerUrl string = '${storage.properties.primaryEndpoints.blob}${containerName}'"
    ));
}
