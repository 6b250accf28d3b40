//! Reading what the `packer` binary prints and writes.
//!
//! This module owns the formats that come back from Packer: the text of
//! `packer version`, the line format of `-machine-readable` output (with an
//! incremental collector of artifacts and error messages, and its lines told
//! as a person reads them: [`readable`]), the JSON file the
//! `manifest` post-processor writes, and the Azure resource ids inside an
//! `azure-arm` artifact. Everything here is pure parsing; running Packer is
//! left to the caller.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A Packer release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl PackerVersion {
    /// Whether this release has `packer init` and understands
    /// `packer { required_plugins { ... } }` (1.7.0 and newer).
    pub fn supports_init(&self) -> bool {
        (self.major, self.minor) >= (1, 7)
    }
}

impl fmt::Display for PackerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Reads the version from the output of `packer version`.
///
/// Accepts the plain form (`Packer v1.6.6`, possibly followed by an
/// out-of-date notice as newer releases print), the machine-readable form
/// (`<timestamp>,,version,1.6.6`) and a bare `1.6.6` line as printed by
/// `packer --version`. Pre-release and build suffixes on the patch number are
/// ignored.
pub fn parse_version(output: &str) -> Option<PackerVersion> {
    output.lines().map(str::trim).find_map(|line| {
        if let Some(machine) = parse_machine_line(line) {
            return match machine.kind.as_str() {
                "version" => machine.data.first().and_then(|v| parse_semver(v)),
                _ => None,
            };
        }
        match line.strip_prefix("Packer ") {
            Some(rest) => parse_semver(rest),
            None => parse_semver(line),
        }
    })
}

/// Parses `v1.2.3` / `1.2.3-dev` at the start of `text`.
fn parse_semver(text: &str) -> Option<PackerVersion> {
    let word = text.split_whitespace().next()?;
    let word = word.strip_prefix('v').unwrap_or(word);
    let mut parts = word.splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch_text = parts.next()?;
    let digits = patch_text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(patch_text.len());
    let patch = patch_text[..digits].parse().ok()?;
    Some(PackerVersion {
        major,
        minor,
        patch,
    })
}

/// One line of `-machine-readable` output: `timestamp,target,type,data...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineLine {
    /// Unix time, in seconds, when Packer printed the line.
    pub timestamp: i64,
    /// The build the line is about (e.g. `golden.null.golden`); empty for
    /// lines about the whole run.
    pub target: String,
    /// Message type, e.g. `ui`, `artifact`, `artifact-count`, `error`.
    pub kind: String,
    /// Comma-separated data fields, unescaped: `%!(PACKER_COMMA)` becomes
    /// `,`, and the two-character sequences `\n` and `\r` become a newline
    /// and a carriage return.
    pub data: Vec<String>,
}

/// Parses one line of `-machine-readable` output; `None` for anything else
/// (such as log lines that Packer interleaves on the same stream).
pub fn parse_machine_line(line: &str) -> Option<MachineLine> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut fields = line.split(',');
    let timestamp = fields.next()?.parse().ok()?;
    let target = unescape(fields.next()?);
    let kind = unescape(fields.next()?);
    if kind.is_empty() {
        return None;
    }
    Some(MachineLine {
        timestamp,
        target,
        kind,
        data: fields.map(unescape).collect(),
    })
}

/// Undoes the escaping of one machine-readable field.
fn unescape(field: &str) -> String {
    const COMMA: &str = "%!(PACKER_COMMA)";
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix(COMMA) {
            out.push(',');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("\\n") {
            out.push('\n');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("\\r") {
            out.push('\r');
            rest = after;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// What a line of a build log says, as a person reads it: one of the
/// lines [`readable`] makes of a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When Packer printed it (Unix seconds, UTC); `None` for a line that
    /// is not Packer's machine-readable output (a note of the factory's,
    /// a line Packer wrote to its standard error).
    pub time: Option<i64>,
    /// Who said it: the build (`golden.null.golden`, with a post-processor
    /// `golden.null.golden (artifice)`), `packer` for Packer itself, or
    /// `factory` for the factory's own notes (`[image-factory] ...`);
    /// empty when unknown.
    pub step: String,
    /// What kind of line it is.
    pub kind: LogKind,
    /// The message, without Packer's `==> build: ` prefix.
    pub text: String,
}

impl LogLine {
    /// The time as `HH:MM:SS` (UTC), or eight spaces for a line without one.
    pub fn clock(&self) -> String {
        self.time
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or_else(|| " ".repeat(8), |t| t.format("%H:%M:%S").to_string())
    }

    /// The message as shown: a step's output indented by two spaces, an
    /// error marked `error: `.
    pub fn shown(&self) -> String {
        match self.kind {
            LogKind::Output => format!("  {}", self.text),
            LogKind::Error => format!("error: {}", self.text),
            LogKind::Step | LogKind::Note => self.text.clone(),
        }
    }
}

/// A whole build log (or its last lines) as a person reads it: a line per
/// message, `HH:MM:SS  step  message`, the steps lined up ([`readable`]).
pub fn readable_text(log: &str) -> String {
    let lines: Vec<LogLine> = log.lines().flat_map(readable).collect();
    let width = lines
        .iter()
        .map(|l| l.step.chars().count())
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| format!("{}  {:<width$}  {}\n", l.clock(), l.step, l.shown()))
        .collect()
}

/// The kinds of lines of a readable build log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// A step begins or ends (`==> build: Running local shell script`).
    Step,
    /// What a step printed (`    build: image written`).
    Output,
    /// An error: Packer's, or what a step wrote to its standard error.
    Error,
    /// Anything else: a summary line, a note, a line outside the format.
    Note,
}

/// The lines a person reads for one line of a build log: Packer's
/// `-machine-readable` `ui` messages (`say`, `message`, `error`) with the
/// time, the step and the message, each of the message's own lines (Packer
/// writes a newline as `\n` and a comma as `%!(PACKER_COMMA)`) on a line
/// of its own, blank ones left out. Packer's other records (`artifact`,
/// `error-count`, `version`, ...) repeat what its `ui` lines say and are
/// left out (`runs logs --raw` keeps them). A line outside the format is
/// kept as it is, with no time.
pub fn readable(line: &str) -> Vec<LogLine> {
    let line = line.trim_end_matches(['\n', '\r']);
    let Some(machine) = parse_machine_line(line) else {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let (step, text) = match line.strip_prefix("[image-factory] ") {
            Some(note) => ("factory", note),
            None => ("", line),
        };
        return vec![LogLine {
            time: None,
            step: step.to_string(),
            kind: LogKind::Note,
            text: text.to_string(),
        }];
    };
    let (level, message) = match (machine.kind.as_str(), machine.data.as_slice()) {
        ("ui", [level, message @ ..]) => (level.as_str(), message.join(",")),
        _ => return Vec::new(),
    };
    let mut step = (!machine.target.is_empty()).then(|| machine.target.clone());
    let mut kind = match level {
        "error" => LogKind::Error,
        "message" => LogKind::Output,
        _ => LogKind::Note,
    };
    let mut lines = Vec::new();
    for part in message.split(['\n', '\r']) {
        if part.trim().is_empty() {
            continue;
        }
        let (said_by, text, prefix_kind) = split_prefix(part);
        if let Some(by) = said_by {
            step = Some(by.to_string());
        }
        if kind != LogKind::Error {
            kind = prefix_kind.unwrap_or(kind);
        }
        lines.push(LogLine {
            time: Some(machine.timestamp),
            step: step.clone().unwrap_or_else(|| "packer".to_string()),
            kind,
            text: text.to_string(),
        });
    }
    lines
}

/// Packer's prefix of a `ui` message: `==> build: ` (a step),
/// `    build: ` (a step's output), `--> build: ` (a build's result), or a
/// bare `==> ` (Packer itself). Answers who said it, the message, and the
/// kind the prefix tells.
fn split_prefix(part: &str) -> (Option<&str>, &str, Option<LogKind>) {
    let markers = [
        ("==> ", LogKind::Step),
        ("--> ", LogKind::Note),
        ("    ", LogKind::Output),
    ];
    for (marker, kind) in markers {
        let Some(rest) = part.strip_prefix(marker) else {
            continue;
        };
        // `build: message`, where the build's name has no spaces but may
        // be followed by a post-processor's name in parentheses.
        let named = rest.find(": ").filter(|&end| {
            let name = &rest[..end];
            !name.is_empty() && (!name.contains(' ') || name.ends_with(')'))
        });
        return match named {
            Some(end) => (Some(&rest[..end]), &rest[end + 2..], Some(kind)),
            None => (None, rest.trim_start(), Some(kind)),
        };
    }
    (None, part, None)
}

/// An artifact announced at the end of `packer build -machine-readable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Artifact {
    /// The build that produced it (the line's target, e.g.
    /// `golden.null.golden`).
    pub builder: String,
    /// Id of the builder or post-processor that made it, e.g.
    /// `Azure.ResourceManagement.VMImage`.
    pub builder_id: String,
    /// The artifact id (for `azure-arm`, usually the managed image id).
    pub id: String,
    /// Human-readable description, possibly several lines.
    pub string: String,
    /// Local files that belong to the artifact.
    pub files: Vec<String>,
}

/// A build that failed, from a `<build>,error,<message>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// The build name.
    pub build: String,
    /// Why it failed.
    pub message: String,
}

/// Collects artifacts and errors from `-machine-readable` output, fed one
/// line at a time as Packer prints them.
///
/// An artifact is complete at its `artifact,<index>,end` line; artifacts of a
/// run that stopped before that line are not reported.
#[derive(Debug, Default)]
pub struct ArtifactCollector {
    artifacts: Vec<Artifact>,
    /// Artifacts whose `end` line has not come yet, by (target, index).
    pending: BTreeMap<(String, String), Artifact>,
    errors: Vec<String>,
    build_errors: Vec<BuildError>,
}

impl ArtifactCollector {
    /// An empty collector.
    pub fn new() -> ArtifactCollector {
        ArtifactCollector::default()
    }

    /// Takes one line of output; returns it parsed (so callers can show
    /// progress), or `None` when it is not a machine-readable line.
    pub fn feed(&mut self, line: &str) -> Option<MachineLine> {
        let parsed = parse_machine_line(line)?;
        match (parsed.kind.as_str(), parsed.data.as_slice()) {
            ("artifact", [index, key, rest @ ..]) => {
                self.record_artifact(&parsed.target, index, key, rest);
            }
            ("ui", [level, message @ ..]) if level == "error" => {
                self.errors.push(message.join(","));
            }
            ("error", message) if !parsed.target.is_empty() => {
                self.build_errors.push(BuildError {
                    build: parsed.target.clone(),
                    message: message.join(","),
                });
            }
            _ => {}
        }
        Some(parsed)
    }

    fn record_artifact(&mut self, target: &str, index: &str, key: &str, rest: &[String]) {
        let slot = (target.to_owned(), index.to_owned());
        if key == "end" {
            if let Some(artifact) = self.pending.remove(&slot) {
                self.artifacts.push(artifact);
            }
            return;
        }
        let artifact = self.pending.entry(slot).or_insert_with(|| Artifact {
            builder: target.to_owned(),
            ..Artifact::default()
        });
        match (key, rest) {
            ("builder-id", value) => artifact.builder_id = value.join(","),
            ("id", value) => artifact.id = value.join(","),
            ("string", value) => artifact.string = value.join(","),
            ("file", [_, name @ ..]) => artifact.files.push(name.join(",")),
            _ => {}
        }
    }

    /// Artifacts completed so far, in the order Packer announced them.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }

    /// Messages of the `ui,error` lines so far, in order.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Builds reported as failed so far.
    pub fn build_errors(&self) -> &[BuildError] {
        &self.build_errors
    }
}

/// The JSON file written by the `manifest` post-processor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// One entry per build and run; runs without `-force` append.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub builds: Vec<ManifestBuild>,
    /// `packer_run_uuid` of the most recent run.
    #[serde(default)]
    pub last_run_uuid: String,
}

/// One build recorded in a [`Manifest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBuild {
    /// Build (source) name.
    #[serde(default)]
    pub name: String,
    /// Builder type, e.g. `azure-arm` or `null`.
    #[serde(default)]
    pub builder_type: String,
    /// Unix time, in seconds, when the build finished.
    #[serde(default)]
    pub build_time: i64,
    /// Files of the artifact; Packer writes `null` when there are none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub files: Vec<ManifestFile>,
    /// The artifact id.
    #[serde(default)]
    pub artifact_id: String,
    /// Id of the Packer run that made this build.
    #[serde(default)]
    pub packer_run_uuid: String,
    /// The post-processor's `custom_data` (string values only).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub custom_data: BTreeMap<String, String>,
}

/// A file listed in a [`ManifestBuild`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path as Packer saw it.
    pub name: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

impl Manifest {
    /// The builds of the most recent run (`packer_run_uuid ==
    /// last_run_uuid`), in file order.
    pub fn last_run(&self) -> Vec<&ManifestBuild> {
        if self.last_run_uuid.is_empty() {
            return Vec::new();
        }
        self.builds
            .iter()
            .filter(|build| build.packer_run_uuid == self.last_run_uuid)
            .collect()
    }
}

impl ManifestBuild {
    /// Azure resource ids found in the artifact id of this build.
    pub fn azure_ids(&self) -> AzureIds {
        let mut ids = AzureIds::default();
        ids.fill_from(&self.artifact_id);
        ids
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid packer manifest: {0}")]
pub struct ManifestError(#[from] serde_json::Error);

/// Parses the JSON written by the `manifest` post-processor.
///
/// # Errors
///
/// Returns [`ManifestError`] when `json` is not a manifest.
pub fn parse_manifest(json: &str) -> Result<Manifest, ManifestError> {
    Ok(serde_json::from_str(json)?)
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Builder id of Packer's `azure-arm` builder.
pub const AZURE_ARM_BUILDER_ID: &str = "Azure.ResourceManagement.VMImage";

/// Azure resources that an `azure-arm` build produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureIds {
    /// `/subscriptions/…/providers/Microsoft.Compute/images/<name>`.
    pub managed_image_id: Option<String>,
    /// `/subscriptions/…/providers/Microsoft.Compute/galleries/<gallery>/images/<image>/versions/<version>`.
    pub gallery_version_id: Option<String>,
}

impl AzureIds {
    /// Fills whatever is still unknown from `other`.
    pub fn merge(&mut self, other: AzureIds) {
        self.managed_image_id = self.managed_image_id.take().or(other.managed_image_id);
        self.gallery_version_id = self.gallery_version_id.take().or(other.gallery_version_id);
    }

    /// Takes `candidate` as whichever id it is shaped like, unless that id is
    /// already known.
    fn fill_from(&mut self, candidate: &str) {
        let candidate = candidate.trim();
        if self.managed_image_id.is_none() && is_managed_image_id(candidate) {
            self.managed_image_id = Some(candidate.to_owned());
        }
        if self.gallery_version_id.is_none() && is_gallery_version_id(candidate) {
            self.gallery_version_id = Some(candidate.to_owned());
        }
    }
}

/// Extracts the managed image id and the shared image gallery version id
/// from an `azure-arm` artifact.
///
/// The artifact string of the `azure-arm` builder has one `Key: value` per
/// line (`ManagedImageId: …`, `ManagedImageSharedImageGalleryId: …`); entries
/// separated by commas are read too. The artifact id (the managed image id,
/// or with newer plugins the gallery version id when no managed image is
/// made) fills in whatever the string lacks. Values that are not shaped like
/// the Azure resource id they should be are ignored.
pub fn azure_ids(artifact: &Artifact) -> AzureIds {
    let mut ids = AzureIds::default();
    for entry in artifact.string.split(['\n', ',']) {
        let Some((key, value)) = entry.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "ManagedImageId" if is_managed_image_id(value) => {
                ids.managed_image_id = Some(value.to_owned());
            }
            "ManagedImageSharedImageGalleryId" if is_gallery_version_id(value) => {
                ids.gallery_version_id = Some(value.to_owned());
            }
            _ => {}
        }
    }
    ids.fill_from(&artifact.id);
    ids
}

/// Lower-cased path segments of an ARM resource id, or `None` when `id` does
/// not start with `/subscriptions/`.
fn resource_segments(id: &str) -> Option<Vec<String>> {
    let segments: Vec<String> = id
        .trim_matches('/')
        .split('/')
        .map(str::to_ascii_lowercase)
        .collect();
    let well_formed = id.starts_with('/')
        && segments.first().is_some_and(|s| s == "subscriptions")
        && segments
            .iter()
            .all(|s| !s.is_empty() && !s.contains(char::is_whitespace));
    well_formed.then_some(segments)
}

/// Whether the segments end with `providers/Microsoft.Compute/<kinds…>`,
/// each kind followed by a name.
fn is_compute_resource(id: &str, kinds: &[&str]) -> bool {
    let Some(segments) = resource_segments(id) else {
        return false;
    };
    let tail_len = 2 + 2 * kinds.len();
    let Some(start) = segments.len().checked_sub(tail_len) else {
        return false;
    };
    let tail = &segments[start..];
    tail[0] == "providers"
        && tail[1] == "microsoft.compute"
        && kinds
            .iter()
            .enumerate()
            .all(|(i, kind)| tail[2 + 2 * i] == *kind)
}

fn is_managed_image_id(id: &str) -> bool {
    is_compute_resource(id, &["images"])
}

fn is_gallery_version_id(id: &str) -> bool {
    is_compute_resource(id, &["galleries", "images", "versions"])
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD_SUCCESS: &str = include_str!("../tests/fixtures/packer/build-success.machine.txt");
    const BUILD_FAILURE: &str = include_str!("../tests/fixtures/packer/build-failure.machine.txt");
    const MANIFEST: &str = include_str!("../tests/fixtures/packer/manifest.json");
    const VERSION: &str = include_str!("../tests/fixtures/packer/packer-version.txt");
    const VERSION_MACHINE: &str =
        include_str!("../tests/fixtures/packer/packer-version.machine.txt");

    const MANAGED_IMAGE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-images/providers/Microsoft.Compute/images/win2022-golden-1.2.3";
    const GALLERY_VERSION: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-gallery/providers/Microsoft.Compute/galleries/golden/images/win2022-golden/versions/1.2.3";

    fn collect(output: &str) -> ArtifactCollector {
        let mut collector = ArtifactCollector::new();
        for line in output.lines() {
            collector.feed(line);
        }
        collector
    }

    fn version(major: u32, minor: u32, patch: u32) -> PackerVersion {
        PackerVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn version_of_the_recorded_packer() {
        let v = parse_version(VERSION).expect("version");
        assert_eq!(v, version(1, 6, 6));
        assert!(!v.supports_init());
        assert_eq!(v.to_string(), "1.6.6");
        assert_eq!(parse_version(VERSION_MACHINE), Some(version(1, 6, 6)));
    }

    #[test]
    fn version_formats() {
        let newer = "Packer v1.14.2\n\nYour version of Packer is out of date! The latest version\nis 1.15.0. You can update by downloading from www.packer.io/downloads\n";
        assert_eq!(parse_version(newer), Some(version(1, 14, 2)));
        assert!(version(1, 14, 2).supports_init());
        assert!(version(1, 7, 0).supports_init());
        assert!(version(2, 0, 0).supports_init());
        assert!(!version(1, 6, 99).supports_init());
        assert_eq!(parse_version("1.9.4\n"), Some(version(1, 9, 4)));
        assert_eq!(parse_version("Packer v1.7.0-dev"), Some(version(1, 7, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("Packer vX.Y.Z"), None);
        assert_eq!(parse_version("command not found"), None);
        assert_eq!(parse_version("Packer v1.6"), None);
    }

    #[test]
    fn machine_line_unescapes_commas_and_newlines() {
        let line = parse_machine_line(
            "1795598663,,ui,say,\\n==> Builds finished. The artifacts of successful builds are:",
        )
        .expect("line");
        assert_eq!(line.timestamp, 1_795_598_663);
        assert_eq!(line.target, "");
        assert_eq!(line.kind, "ui");
        assert_eq!(
            line.data,
            vec![
                "say",
                "\n==> Builds finished. The artifacts of successful builds are:"
            ]
        );

        let escaped = "1,b,artifact,0,string,a%!(PACKER_COMMA) b\\nc\\r\n";
        let line = parse_machine_line(escaped).expect("line");
        assert_eq!(line.data, vec!["0", "string", "a, b\nc\r"]);

        let empty = parse_machine_line("1795598520,,version-prelease,").expect("line");
        assert_eq!(empty.data, vec![""]);
    }

    #[test]
    fn non_machine_lines_are_ignored() {
        for line in [
            "",
            "2018/10/19 09:50:03 waiting for all plugin processes to complete...",
            "Packer v1.6.6",
            "123",
            "123,target",
            "123,target,",
            "notanumber,,ui,say,x",
        ] {
            assert_eq!(parse_machine_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn recorded_json_message_survives_unescaping() {
        let tags_line = BUILD_SUCCESS
            .lines()
            .find(|l| l.contains("tags: "))
            .expect("tags line");
        let line = parse_machine_line(tags_line).expect("line");
        let message = &line.data[1];
        let json = message.split_once("tags: ").expect("prefix").1;
        let tags: BTreeMap<String, String> = serde_json::from_str(json).expect("json");
        assert_eq!(tags["gitRef"], "abc");
        assert_eq!(tags["imageVersion"], "1.2.3");
    }

    #[test]
    fn collector_reads_recorded_successful_build() {
        let collector = collect(BUILD_SUCCESS);
        assert_eq!(collector.errors(), &[] as &[String]);
        assert_eq!(collector.build_errors(), &[]);
        let artifacts = collector.artifacts();
        assert_eq!(artifacts.len(), 3);
        assert_eq!(
            artifacts[0],
            Artifact {
                builder: "golden.null.golden".into(),
                builder_id: "fnoeding.null".into(),
                id: "Null".into(),
                string: "Did not export anything. This is the null builder".into(),
                files: vec![],
            }
        );
        let files = vec![
            "./output/win2022-golden-1.2.3/tags.json".to_owned(),
            "./output/win2022-golden-1.2.3/index.html".to_owned(),
        ];
        assert_eq!(
            artifacts[1],
            Artifact {
                builder: "golden.null.golden".into(),
                builder_id: "packer.post-processor.artifice".into(),
                id: String::new(),
                string: format!("Created artifact from files: {}", files.join(", ")),
                files,
            }
        );
        assert_eq!(artifacts[2], artifacts[1]);
        assert_eq!(azure_ids(&artifacts[0]), AzureIds::default());
    }

    #[test]
    fn collector_reads_recorded_failed_build() {
        let collector = collect(BUILD_FAILURE);
        assert!(collector.artifacts().is_empty());
        assert_eq!(
            collector.errors(),
            &[
                "==> golden.null.golden: smoke: index.html missing, tags ok".to_owned(),
                "Build 'golden.null.golden' errored after 24 milliseconds 979 microseconds: Script exited with non-zero exit status: 3.Allowed exit codes are: [0]".to_owned(),
                "\n==> Some builds didn't complete successfully and had errors:".to_owned(),
                "--> golden.null.golden: Script exited with non-zero exit status: 3.Allowed exit codes are: [0]".to_owned(),
            ]
        );
        assert_eq!(
            collector.build_errors(),
            &[BuildError {
                build: "golden.null.golden".into(),
                message: "Script exited with non-zero exit status: 3.Allowed exit codes are: [0]"
                    .into(),
            }]
        );
    }

    #[test]
    fn collector_returns_parsed_lines_and_skips_unfinished_artifacts() {
        let mut collector = ArtifactCollector::new();
        assert_eq!(collector.feed("log line"), None);
        let line = collector
            .feed("1,b,artifact,0,builder-id,x")
            .expect("parsed");
        assert_eq!(line.kind, "artifact");
        collector.feed("1,b,artifact,0,id,y");
        assert!(collector.artifacts().is_empty());
        collector.feed("1,c,artifact,0,end");
        assert!(collector.artifacts().is_empty());
        collector.feed("1,b,artifact,0,end");
        assert_eq!(collector.artifacts().len(), 1);
        assert_eq!(collector.artifacts()[0].id, "y");
        collector.feed("1,b,artifact");
        collector.feed("1,b,artifact,1");
        collector.feed("1,,ui,error");
        assert_eq!(collector.artifacts().len(), 1);
    }

    #[test]
    fn azure_artifact_through_the_collector() {
        // Layout of the azure-arm builder's artifact string (one `Key: value`
        // per line), escaped as -machine-readable prints it.
        let string = format!(
            "Azure.ResourceManagement.VMImage:\\n\\nOSType: Windows\\nManagedImageResourceGroupName: rg-images\\nManagedImageName: win2022-golden-1.2.3\\nManagedImageId: {MANAGED_IMAGE}\\nManagedImageLocation: westeurope\\nManagedImageSharedImageGalleryId: {GALLERY_VERSION}\\nSharedImageGalleryResourceGroup: rg-gallery\\nSharedImageGalleryName: golden\\nSharedImageGalleryImageName: win2022-golden\\nSharedImageGalleryImageVersion: 1.2.3\\nSharedImageGalleryReplicatedRegions: westeurope%!(PACKER_COMMA) northeurope\\n"
        );
        let output = format!(
            "1700000000,golden.azure-arm.win,artifact-count,1\n\
             1700000000,golden.azure-arm.win,artifact,0,builder-id,{AZURE_ARM_BUILDER_ID}\n\
             1700000000,golden.azure-arm.win,artifact,0,id,{MANAGED_IMAGE}\n\
             1700000000,golden.azure-arm.win,artifact,0,string,{string}\n\
             1700000000,golden.azure-arm.win,artifact,0,files-count,0\n\
             1700000000,golden.azure-arm.win,artifact,0,end\n"
        );
        let collector = collect(&output);
        let artifact = &collector.artifacts()[0];
        assert_eq!(artifact.builder_id, AZURE_ARM_BUILDER_ID);
        assert!(artifact.string.contains("westeurope, northeurope\n"));
        assert_eq!(
            azure_ids(artifact),
            AzureIds {
                managed_image_id: Some(MANAGED_IMAGE.into()),
                gallery_version_id: Some(GALLERY_VERSION.into()),
            }
        );
    }

    #[test]
    fn azure_ids_from_comma_separated_string_and_from_id() {
        let artifact = Artifact {
            string: format!(
                "ManagedImageResourceGroupName: rg-images, ManagedImageName: win, ManagedImageId: {MANAGED_IMAGE}, ManagedImageSharedImageGalleryId: {GALLERY_VERSION}"
            ),
            ..Artifact::default()
        };
        assert_eq!(
            azure_ids(&artifact).gallery_version_id.as_deref(),
            Some(GALLERY_VERSION)
        );
        assert_eq!(
            azure_ids(&artifact).managed_image_id.as_deref(),
            Some(MANAGED_IMAGE)
        );

        // Gallery-only publishing: the id is the gallery version.
        let gallery_only = Artifact {
            id: GALLERY_VERSION.into(),
            string: "Azure.ResourceManagement.VMImage:\n\nOSType: Linux\n".into(),
            ..Artifact::default()
        };
        assert_eq!(
            azure_ids(&gallery_only),
            AzureIds {
                managed_image_id: None,
                gallery_version_id: Some(GALLERY_VERSION.into()),
            }
        );

        // A VHD build has neither.
        let vhd = Artifact {
            id: "https://acct.blob.core.windows.net/system/Microsoft.Compute/Images/images/packer-osDisk.vhd".into(),
            string: "StorageAccountLocation: westeurope\nOSDiskUri: https://acct.blob.core.windows.net/x.vhd\n".into(),
            ..Artifact::default()
        };
        assert_eq!(azure_ids(&vhd), AzureIds::default());
    }

    #[test]
    fn malformed_azure_ids_are_ignored() {
        for bad in [
            "",
            "UNKNOWN ID",
            "/subscriptions/",
            "/providers/Microsoft.Compute/images/x",
            "subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/x",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/images/",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/g/images/i",
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/images/x",
        ] {
            let artifact = Artifact {
                id: bad.into(),
                string: format!("ManagedImageId: {bad}\nManagedImageSharedImageGalleryId: {bad}\n"),
                ..Artifact::default()
            };
            assert_eq!(azure_ids(&artifact), AzureIds::default(), "{bad:?}");
        }
    }

    #[test]
    fn recorded_manifest_and_its_last_run() {
        let manifest = parse_manifest(MANIFEST).expect("manifest");
        assert_eq!(manifest.builds.len(), 2);
        let first = &manifest.builds[0];
        assert_eq!(first.name, "golden");
        assert_eq!(first.builder_type, "null");
        assert_eq!(first.build_time, 1_795_598_663);
        assert_eq!(first.artifact_id, "");
        assert_eq!(
            first.files,
            vec![
                ManifestFile {
                    name: "./output/win2022-golden-1.2.3/tags.json".into(),
                    size: 168,
                },
                ManifestFile {
                    name: "./output/win2022-golden-1.2.3/index.html".into(),
                    size: 135,
                },
            ]
        );
        assert_eq!(first.custom_data["gitRef"], "abc");

        let last = manifest.last_run();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].packer_run_uuid, manifest.last_run_uuid);
        assert_eq!(last[0].custom_data["gitRef"], "manual");
        assert_eq!(last[0].custom_data["imageVersion"], "1.2.4");
        assert_eq!(last[0].azure_ids(), AzureIds::default());
    }

    #[test]
    fn manifest_with_null_files_and_azure_artifact_id() {
        // The null builder alone writes `"files": null`.
        let json = format!(
            r#"{{
  "builds": [
    {{
      "name": "golden",
      "builder_type": "null",
      "build_time": 1795598510,
      "files": null,
      "artifact_id": "Null",
      "packer_run_uuid": "67c6beaf-93c2-49d6-a055-5c84a8490f38",
      "custom_data": {{"gitRef": "abc"}}
    }},
    {{
      "name": "win",
      "builder_type": "azure-arm",
      "build_time": 1795598999,
      "files": null,
      "artifact_id": "{MANAGED_IMAGE}",
      "packer_run_uuid": "67c6beaf-93c2-49d6-a055-5c84a8490f38",
      "custom_data": null
    }}
  ],
  "last_run_uuid": "67c6beaf-93c2-49d6-a055-5c84a8490f38"
}}"#
        );
        let manifest = parse_manifest(&json).expect("manifest");
        assert!(manifest.builds[0].files.is_empty());
        assert_eq!(manifest.last_run().len(), 2);
        assert_eq!(
            manifest.builds[1].azure_ids().managed_image_id.as_deref(),
            Some(MANAGED_IMAGE)
        );
        assert!(manifest.builds[1].custom_data.is_empty());
    }

    #[test]
    fn bad_manifests_are_errors_or_empty() {
        assert!(parse_manifest("").is_err());
        assert!(parse_manifest("null").is_err());
        assert!(parse_manifest("\"text\"").is_err());
        assert!(parse_manifest("{\"builds\": 3}").is_err());
        let empty = parse_manifest("{}").expect("empty object");
        assert!(empty.builds.is_empty());
        assert!(empty.last_run().is_empty());
        let err = parse_manifest("{").expect_err("truncated");
        assert!(err.to_string().starts_with("invalid packer manifest"));
    }

    fn told(log: &str) -> Vec<(String, LogKind, String)> {
        log.lines()
            .flat_map(readable)
            .map(|l| (l.step, l.kind, l.text))
            .collect()
    }

    #[test]
    fn a_build_log_reads_as_steps_their_output_and_errors_with_commas_and_lines_restored() {
        let lines = told(BUILD_FAILURE);
        let line = |step: &str, kind, text: &str| (step.to_string(), kind, text.to_string());
        let build = "golden.null.golden";
        assert_eq!(
            lines[..5],
            [
                line(
                    build,
                    LogKind::Step,
                    "Running local shell script: ./scripts/provision.sh"
                ),
                line(
                    build,
                    LogKind::Output,
                    "image written to ./output/win2022-golden-1.2.3"
                ),
                line(
                    build,
                    LogKind::Output,
                    r#"tags: {"baselineVersion":"2024.1","buildDate":"2026-11-25","costCenter":"cc-1234","gitRef":"abc","imageName":"win2022-golden","imageVersion":"1.2.3","owner":"platform-team"}"#
                ),
                line(
                    build,
                    LogKind::Step,
                    "Running local shell script: ./scripts/smoke.sh"
                ),
                line(build, LogKind::Error, "smoke: index.html missing, tags ok"),
            ]
        );
        // A message that starts with an escaped newline is one line, and
        // Packer's own lines are said by `packer`.
        assert!(lines.contains(&line(
            "packer",
            LogKind::Step,
            "Wait completed after 25 milliseconds 112 microseconds"
        )));
        assert!(lines.contains(&line(
            build,
            LogKind::Error,
            "Script exited with non-zero exit status: 3.Allowed exit codes are: [0]"
        )));
        // The machine records (error-count, error) are not repeated.
        assert!(!lines.iter().any(|(_, _, text)| text == "1"));
        assert_eq!(
            lines
                .iter()
                .filter(|(_, _, t)| t.starts_with("Script exited"))
                .count(),
            1
        );
    }

    #[test]
    fn a_post_processor_a_multi_line_message_and_lines_outside_the_format_are_told_too() {
        let lines = told(BUILD_SUCCESS);
        assert!(lines.contains(&(
            "golden.null.golden (artifice)".to_string(),
            LogKind::Step,
            "Using these artifact files: ./output/win2022-golden-1.2.3/tags.json, ./output/win2022-golden-1.2.3/index.html".to_string()
        )));
        assert!(
            !lines.iter().any(|(_, _, t)| t.contains("builder-id")),
            "artifact records are left out: {lines:?}"
        );
        let said = readable("1795598663,b,ui,message,    b: one\\n    b: two\\r\\n\\n");
        let texts: Vec<&str> = said.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert!(said.iter().all(|l| l.time == Some(1_795_598_663)));
        let note = readable("[image-factory] killed after the timeout of 600s\n");
        assert_eq!(
            (note[0].time, note[0].step.as_str(), note[0].text.as_str()),
            (None, "factory", "killed after the timeout of 600s")
        );
        let plain = readable("Error: Failed to parse the template");
        assert_eq!(plain[0].step, "");
        assert_eq!(plain[0].text, "Error: Failed to parse the template");
        assert!(readable("").is_empty());
        assert!(readable("1795598663,,error-count,1").is_empty());
    }

    #[test]
    fn a_whole_log_reads_as_aligned_lines_of_time_step_and_message() {
        let text = readable_text(BUILD_FAILURE);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..2],
            [
                "09:24:29  golden.null.golden  Running local shell script: ./scripts/provision.sh",
                "09:24:29  golden.null.golden    image written to ./output/win2022-golden-1.2.3",
            ]
        );
        assert!(
            lines.contains(
                &"09:24:29  golden.null.golden  error: smoke: index.html missing, tags ok"
            )
        );
        assert!(lines.contains(
            &"09:24:29  packer              Wait completed after 25 milliseconds 112 microseconds"
        ));
        assert_eq!(readable_text(""), "");
    }
}
