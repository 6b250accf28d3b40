//! `image-factory package`: the deployable function app, as a zip (`--out`)
//! or as a folder (`--dir`), both in the Functions host's layout.
//!
//! The repository keeps its functions under `functions/<name>/`; the host
//! indexes only folders directly under the app root (see [`crate::layout`]).
//! Packaging lays them out as the host reads them: `host.json`, one
//! `<name>/function.json` per function, the `images/` folder and the handler
//! executable `image-factory` (the `defaultExecutablePath` of `host.json`),
//! built for Linux x86-64. The same staging, without the executable, is the
//! folder `image-factory up` serves from the repository.
//!
//! Before writing anything the app is checked against the handler and the
//! infrastructure, so a package that cannot work in Azure is never built:
//! every function folder must be a function the handler serves, every served
//! function must have a folder, and every queue a `function.json` names must
//! be one `infra/queues.json` creates (the same file the Bicep reads), and
//! every function.json's bindings must be the ones the handler decodes
//! ([`crate::functions::check_bindings`]). What is written is then held to the
//! host's indexing rule ([`crate::layout`]). Each refusal names the folder.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::functions::{DEAD_LETTER_SUFFIX, NAMES};
use crate::layout::{self, LayoutError};

/// Name of the handler executable at the zip's root (host.json's `defaultExecutablePath`).
pub const EXECUTABLE: &str = "image-factory";

/// Azure Functions Core Tools' settings file in an app folder: kept when
/// [`package_dir`] replaces the folder, never written by it.
pub const LOCAL_SETTINGS: &str = "local.settings.json";

/// The file `package --dir` writes at the folder's root to say the folder
/// is its own: the files it wrote, so that a later `package --dir` replaces
/// only a folder holding nothing else.
pub const MARKER: &str = ".image-factory-package.json";

/// Where the list of queues the infrastructure creates lives, relative to the app root.
pub const QUEUES_FILE: &str = "infra/queues.json";

/// Why the app cannot be packaged.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A function folder that the handler does not serve.
    #[error(
        "functions/{folder}/function.json defines `{folder}`, but the handler serves no function of that name (it serves: {served})"
    )]
    UnservedFunction {
        /// The folder under `functions/`.
        folder: String,
        /// The functions the handler serves.
        served: String,
    },
    /// A served function without a folder.
    #[error(
        "the handler serves `{name}`, but functions/{name}/function.json does not exist: the Functions host would never call it"
    )]
    MissingFunction {
        /// The function's name.
        name: String,
    },
    /// A binding naming a queue the infrastructure does not create.
    #[error(
        "functions/{function}/function.json binding `{binding}` names queue `{queue}`, which {QUEUES_FILE} does not create (it creates: {created})"
    )]
    UnknownQueue {
        /// The function.
        function: String,
        /// The binding's name.
        binding: String,
        /// The queue it names.
        queue: String,
        /// The queues infra creates.
        created: String,
    },
    /// host.json does not start the executable the package holds.
    #[error(
        "host.json: customHandler.description.defaultExecutablePath is {found:?}, but the package holds the handler as `{EXECUTABLE}`"
    )]
    ExecutablePath {
        /// What host.json says.
        found: String,
    },
    /// The binary is not a Linux x86-64 executable.
    #[error(
        "{path} is not a Linux x86-64 executable ({what}); build the handler with `cargo build --release` on a Linux x86-64 machine and pass it with --binary"
    )]
    NotLinuxX86_64 {
        /// The binary.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// A function.json whose bindings are not the ones the handler decodes.
    #[error("functions/{folder}/function.json does not match the handler: {message}")]
    Bindings {
        /// The function's folder.
        folder: String,
        /// What differs and what the handler expects.
        message: String,
    },
    /// What would be shipped breaks the Functions host's indexing rule.
    #[error("the packaged app breaks the Functions host's layout rule: {0}")]
    Layout(#[from] LayoutError),
    /// `--dir` names a folder that is not this command's own to replace.
    #[error(
        "refusing to replace {}: {reason}; name a new or empty folder, or move what you keep out of it first",
        path.display()
    )]
    NotOurs {
        /// The folder.
        path: PathBuf,
        /// Why it is not the package's own.
        reason: String,
    },
    /// A file's content is not what it must be.
    #[error("{path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The queues the infrastructure creates, as `infra/queues.json` lists them.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfraQueues {
    /// The stage queues and the worker-completion queue.
    pub queues: Vec<String>,
    /// Deliveries before a message is dead-lettered.
    pub max_delivery_count: u32,
    /// Peek-lock duration (ISO 8601, e.g. `PT1M`).
    pub lock_duration: String,
}

impl InfraQueues {
    /// Reads `infra/queues.json` under `root`.
    pub fn load(root: &Path) -> Result<InfraQueues, PackageError> {
        let path = root.join(QUEUES_FILE);
        let text = read_text(&path)?;
        serde_json::from_str(&text).map_err(|e| PackageError::Invalid {
            path,
            message: e.to_string(),
        })
    }

    /// Every queue a function may be triggered by: the listed ones and
    /// their dead-letter sub-queues (`<queue>/$DeadLetterQueue`, which
    /// every queue has).
    pub fn all(&self) -> BTreeSet<String> {
        self.queues
            .iter()
            .flat_map(|q| [q.clone(), format!("{q}{DEAD_LETTER_SUFFIX}")])
            .collect()
    }
}

/// What a package holds, for the operator's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackageSummary {
    /// Every entry written, in order.
    pub entries: Vec<String>,
    /// The functions packaged.
    pub functions: Vec<String>,
}

/// Checks the app under `root` against the handler and the infrastructure:
/// function folders against [`NAMES`], queues against `infra/queues.json`,
/// and host.json's executable path. Returns the functions found.
pub fn check_app(root: &Path) -> Result<Vec<String>, PackageError> {
    let host_path = root.join("host.json");
    let host = read_json(&host_path)?;
    let executable = host
        .pointer("/customHandler/description/defaultExecutablePath")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if executable != EXECUTABLE {
        return Err(PackageError::ExecutablePath {
            found: executable.to_string(),
        });
    }

    let folders = function_folders(root)?;
    if let Some(folder) = folders.iter().find(|f| !layout::valid_function_name(f)) {
        return Err(LayoutError::InvalidName {
            folder: format!("functions/{folder}"),
        }
        .into());
    }
    let served: BTreeSet<&str> = NAMES.iter().copied().collect();
    for folder in &folders {
        if !served.contains(folder.as_str()) {
            return Err(PackageError::UnservedFunction {
                folder: folder.clone(),
                served: NAMES.join(", "),
            });
        }
    }
    for name in NAMES {
        if !folders.iter().any(|f| f == name) {
            return Err(PackageError::MissingFunction {
                name: name.to_string(),
            });
        }
    }

    let created = InfraQueues::load(root)?.all();
    for folder in &folders {
        let path = root
            .join("functions")
            .join(folder)
            .join(layout::FUNCTION_JSON);
        let json = read_json(&path)?;
        let bindings = json
            .get("bindings")
            .and_then(Value::as_array)
            .ok_or_else(|| PackageError::Invalid {
                path: path.clone(),
                message: "has no `bindings` array".into(),
            })?;
        for binding in bindings {
            let Some(queue) = binding.get("queueName").and_then(Value::as_str) else {
                continue;
            };
            if !created.contains(queue) {
                return Err(PackageError::UnknownQueue {
                    function: folder.clone(),
                    binding: binding
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    queue: queue.to_string(),
                    created: created.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        crate::functions::check_bindings(folder, &json).map_err(|message| {
            PackageError::Bindings {
                folder: folder.clone(),
                message,
            }
        })?;
    }
    Ok(folders)
}

/// Checks the repository's app under `root` as [`package`] does (against the
/// handler, the infrastructure and the host's indexing rule) without writing
/// anything; answers the functions the host would index.
pub fn check_layout(root: &Path) -> Result<Vec<String>, PackageError> {
    app_files(root).map(|(functions, _)| functions)
}

/// Every function.json of the repository under `root`, by function name, sorted.
pub fn function_jsons(root: &Path) -> Result<Vec<(String, Value)>, PackageError> {
    function_folders(root)?
        .into_iter()
        .map(|name| {
            let json = read_json(
                &root
                    .join("functions")
                    .join(&name)
                    .join(layout::FUNCTION_JSON),
            )?;
            Ok((name, json))
        })
        .collect()
}

/// Files to write: (name in the app, source path).
type AppFiles = Vec<(String, PathBuf)>;

/// The files of the app in the host's layout, checked ([`check_app`]) and in
/// order: (`name in the app`, source) for `host.json`, every
/// `<name>/…` from the repository's `functions/<name>/`, and `images/…`.
fn app_files(root: &Path) -> Result<(Vec<String>, AppFiles), PackageError> {
    let functions = check_app(root)?;
    let mut files: Vec<(String, PathBuf)> = vec![("host.json".into(), root.join("host.json"))];
    for name in &functions {
        collect_files(&root.join("functions").join(name), name, &mut files)?;
    }
    let images = root.join("images");
    if images.is_dir() {
        collect_files(&images, "images", &mut files)?;
    }
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    layout::check_paths(&names)?;
    Ok((functions, files))
}

/// Checks the app under `root` ([`check_app`]), then writes the zip to `out`:
/// `host.json`, `<name>/…` for every function, `images/…` and `binary` as
/// [`EXECUTABLE`] (mode 0755), all at the zip's root. Nothing is written when
/// a check fails; the zip is written beside `out` first (under a name no
/// file had, `<out>.partial-<random>`) and renamed into place when complete.
pub fn package(root: &Path, binary: &Path, out: &Path) -> Result<PackageSummary, PackageError> {
    let (functions, files) = app_files(root)?;
    check_linux_x86_64(binary)?;

    let (partial, file) = fresh_beside(out, |p| File::create_new(p))?;
    let result = write_zip(&partial, file, &files, binary);
    match result {
        Ok(entries) => {
            std::fs::rename(&partial, out).map_err(|e| io(out, e))?;
            Ok(PackageSummary { entries, functions })
        }
        Err(e) => {
            // Made by this call a moment ago: nobody else's.
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Checks the app under `root` ([`check_app`]), then writes it unzipped into
/// `dir`, in the same layout as [`package`]: a folder that the embedded host
/// (`image-factory up --root <dir>`) and Azure Functions Core Tools
/// (`func start` in `dir`) both serve. With `binary`, the handler is copied
/// as [`EXECUTABLE`] (mode 0755); without it (the embedded host runs the
/// handler in-process) no executable is written.
///
/// `dir` is replaced whole, so that a file removed from the repository does
/// not linger, but only when it is the package's own: new, empty, or a
/// folder that carries the [`MARKER`] a previous `package --dir` wrote and
/// nothing but the files that marker lists (and [`LOCAL_SETTINGS`], which is
/// kept). Anything else is refused and left as it is. The new folder is
/// written beside it first, under a name no other folder has
/// (`<dir>.partial-<random>`, created by this call and removed by it if the
/// writing fails), then checked as the host would index it, then moved into
/// place.
pub fn package_dir(
    root: &Path,
    binary: Option<&Path>,
    dir: &Path,
) -> Result<PackageSummary, PackageError> {
    package_dir_with(root, binary, dir, Modes::Repository)
}

/// The file modes of the folder [`package_dir_with`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modes {
    /// As the repository has them (the executable 0755): a folder to deploy
    /// or to serve with Core Tools.
    Repository,
    /// Only the factory's user: folders 0700, files 0600 (0700 for the
    /// executable), as everything in the data folder ([`crate::private`]).
    Private,
}

/// Where `image-factory up` stages the repository's app in the data folder.
pub const STAGED_APP: &str = "app";

/// Stages the repository's app under `root` for the local host into the
/// data folder's [`STAGED_APP`] folder, private as the rest of the data
/// folder (made 0700 first if it is new), without the executable (the
/// embedded host runs the handler in-process); answers the folder.
pub fn stage_in_data(root: &Path, data_dir: &Path) -> Result<PathBuf, PackageError> {
    crate::private::create_dir(data_dir).map_err(|e| io(data_dir, e))?;
    let dir = data_dir.join(STAGED_APP);
    package_dir_with(root, None, &dir, Modes::Private)?;
    Ok(dir)
}

/// [`package_dir`], with the folder's files made with `modes`.
pub fn package_dir_with(
    root: &Path,
    binary: Option<&Path>,
    dir: &Path,
    modes: Modes,
) -> Result<PackageSummary, PackageError> {
    let (functions, files) = app_files(root)?;
    if let Some(binary) = binary {
        check_linux_x86_64(binary)?;
    }
    check_replaceable(dir)?;
    let (partial, ()) = fresh_beside(dir, |p| std::fs::create_dir(p))?;
    let written = write_dir(&partial, &files, binary).and_then(|entries| {
        write_marker(&partial, &entries)?;
        // Core Tools' settings live beside host.json and are the operator's: kept.
        let settings = dir.join(LOCAL_SETTINGS);
        if settings.is_file() {
            std::fs::copy(&settings, partial.join(LOCAL_SETTINGS)).map_err(|e| io(&settings, e))?;
        }
        if modes == Modes::Private {
            crate::private::tighten(&partial).map_err(|e| io(&partial, e))?;
        }
        Ok(entries)
    });
    let entries = match written {
        Ok(entries) => entries,
        Err(e) => {
            // Made by this call a moment ago: nobody else's.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&partial, dir).map_err(|e| io(dir, e))?;
    Ok(PackageSummary { entries, functions })
}

/// What [`MARKER`] holds.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Marker {
    /// What wrote the folder.
    written_by: String,
    /// Every file written, relative to the folder, `/`-separated.
    files: Vec<String>,
}

/// What a marker's `writtenBy` says.
const WRITTEN_BY: &str = "image-factory package --dir";

fn write_marker(dir: &Path, entries: &[String]) -> Result<(), PackageError> {
    let marker = Marker {
        written_by: WRITTEN_BY.to_string(),
        files: entries.to_vec(),
    };
    let path = dir.join(MARKER);
    let text = serde_json::to_string_pretty(&marker).map_err(|e| PackageError::Invalid {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(|e| io(&path, e))
}

/// Whether `dir` is the package's own to replace: missing, empty, or a
/// previous `package --dir` holding only what its [`MARKER`] lists (and
/// [`LOCAL_SETTINGS`]). Symbolic links are never followed.
fn check_replaceable(dir: &Path) -> Result<(), PackageError> {
    let refuse = |reason: String| PackageError::NotOurs {
        path: dir.to_path_buf(),
        reason,
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir, e)),
    };
    if !meta.is_dir() {
        return Err(refuse("it is not a folder".into()));
    }
    let found = layout::relative_files(dir).map_err(|e| PackageError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    if found.is_empty() {
        return Ok(());
    }
    let marker_path = dir.join(MARKER);
    let text = match std::fs::read_to_string(&marker_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse(format!(
                "it is not empty and carries no marker ({MARKER}) of a previous `package --dir`"
            )));
        }
        Err(e) => return Err(io(&marker_path, e)),
    };
    let marker: Marker = serde_json::from_str(&text)
        .ok()
        .filter(|m: &Marker| m.written_by == WRITTEN_BY)
        .ok_or_else(|| {
            refuse(format!(
                "its {MARKER} is not a marker `package --dir` wrote"
            ))
        })?;
    let ours: BTreeSet<&str> = marker
        .files
        .iter()
        .map(String::as_str)
        .chain([MARKER, LOCAL_SETTINGS])
        .collect();
    match found.iter().find(|f| !ours.contains(f.as_str())) {
        Some(foreign) => Err(refuse(format!(
            "it holds {foreign}, which the previous `package --dir` did not write"
        ))),
        None => Ok(()),
    }
}

/// Makes (with `make`, which must refuse an existing path) something beside
/// `path` under a name nothing had (`<path>.partial-<random>`): one this
/// call made, so that it may remove it. Answers its path and what `make` gave.
fn fresh_beside<T>(
    path: &Path,
    make: impl Fn(&Path) -> std::io::Result<T>,
) -> Result<(PathBuf, T), PackageError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut last = None;
    for _ in 0..16 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".partial-{:08x}", rand::random::<u32>()));
        let partial = PathBuf::from(name);
        match make(&partial) {
            Ok(made) => return Ok((partial, made)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io(&partial, e)),
        }
    }
    Err(io(
        path,
        last.unwrap_or_else(|| std::io::Error::other("no free name beside it")),
    ))
}

/// Writes the app's files into `dir`, a new empty folder.
fn write_dir(
    dir: &Path,
    files: &[(String, PathBuf)],
    binary: Option<&Path>,
) -> Result<Vec<String>, PackageError> {
    let mut entries = Vec::new();
    let executable = binary.map(|b| (EXECUTABLE.to_string(), b.to_path_buf()));
    for (name, source) in files.iter().chain(executable.iter()) {
        let target = dir.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::copy(source, &target).map_err(|e| io(source, e))?;
        entries.push(name.clone());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if binary.is_some() {
            let path = dir.join(EXECUTABLE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io(&path, e))?;
        }
    }
    layout::check_dir(dir)?;
    Ok(entries)
}

fn write_zip(
    path: &Path,
    file: File,
    files: &[(String, PathBuf)],
    binary: &Path,
) -> Result<Vec<String>, PackageError> {
    let mut zip = ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let zip_err = |e: zip::result::ZipError| PackageError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut entries = Vec::new();
    for (name, source) in files {
        let mode = file_mode(source);
        zip.start_file(name.as_str(), options.unix_permissions(mode))
            .map_err(zip_err)?;
        copy_into(source, &mut zip)?;
        entries.push(name.clone());
    }
    zip.start_file(EXECUTABLE, options.unix_permissions(0o755))
        .map_err(zip_err)?;
    copy_into(binary, &mut zip)?;
    entries.push(EXECUTABLE.to_string());
    let mut file = zip.finish().map_err(zip_err)?;
    file.flush().map_err(|e| io(path, e))?;
    Ok(entries)
}

fn copy_into(source: &Path, out: &mut impl Write) -> Result<(), PackageError> {
    let mut input = File::open(source).map_err(|e| io(source, e))?;
    std::io::copy(&mut input, out).map_err(|e| io(source, e))?;
    Ok(())
}

#[cfg(unix)]
fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644)
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> u32 {
    0o644
}

/// Refuses anything but a 64-bit little-endian ELF executable for x86-64.
fn check_linux_x86_64(binary: &Path) -> Result<(), PackageError> {
    let mut header = [0u8; 20];
    let mut file = File::open(binary).map_err(|e| io(binary, e))?;
    let refuse = |what: &str| PackageError::NotLinuxX86_64 {
        path: binary.to_path_buf(),
        what: what.to_string(),
    };
    file.read_exact(&mut header)
        .map_err(|_| refuse("too short to be an executable"))?;
    if &header[0..4] != b"\x7fELF" {
        return Err(refuse("not an ELF file"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(refuse("not a 64-bit little-endian ELF file"));
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    if machine != 0x3e {
        return Err(refuse(&format!("ELF machine {machine:#x}, not x86-64")));
    }
    Ok(())
}

/// The folders under `functions/` that hold a `function.json`, sorted.
fn function_folders(root: &Path) -> Result<Vec<String>, PackageError> {
    let dir = root.join("functions");
    let entries = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(&dir, e))?;
        if entry.path().join("function.json").is_file() {
            folders.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    folders.sort();
    Ok(folders)
}

/// Every regular file under `dir`, as (`prefix/relative`, path), sorted.
fn collect_files(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PackageError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, &name, out)?;
        } else if kind.is_file() {
            out.push((name, path));
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, PackageError> {
    std::fs::read_to_string(path).map_err(|e| io(path, e))
}

fn read_json(path: &Path) -> Result<Value, PackageError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| PackageError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn io(path: &Path, e: std::io::Error) -> PackageError {
    PackageError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_app_passes_its_own_checks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let functions = check_app(root).expect("the app in the repository is packageable");
        let mut served = NAMES.to_vec();
        served.sort();
        assert_eq!(functions, served);
    }

    #[test]
    fn infra_creates_every_stage_queue_the_worker_queue_and_their_dead_letters() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let queues = InfraQueues::load(root).expect("infra/queues.json");
        let all = queues.all();
        for queue in [
            "stage-validate",
            "stage-build",
            "stage-test",
            "stage-approve",
            "stage-release",
            "build-completed",
        ] {
            assert!(all.contains(queue), "infra does not create {queue}");
        }
        // Every dead-letter function reads the sub-queue of a created queue.
        for (function, queue) in crate::functions::DEAD_LETTER_FUNCTIONS {
            assert!(all.contains(queue), "{function} reads {queue}");
        }
        assert!(!all.contains("dead-letters"));
        // The local host's defaults (host::BusSettings) are what Azure does.
        let local = crate::host::BusSettings::default();
        assert_eq!(queues.max_delivery_count, local.max_delivery_count);
        assert_eq!(queues.lock_duration, "PT1M");
        assert_eq!(local.lock_duration.as_secs(), 60);
    }

    #[test]
    fn a_script_is_not_a_linux_executable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let script = dir.path().join("handler");
        std::fs::write(&script, "#!/bin/sh\necho hello from a script\n").expect("write");
        let err = check_linux_x86_64(&script).expect_err("a script is refused");
        assert!(err.to_string().contains("not an ELF file"), "{err}");
    }
}
