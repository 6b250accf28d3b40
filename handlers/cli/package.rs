//! `package`: the deployable function app, zipped or as a folder, in the
//! Functions host's layout, checked against the handler, the infrastructure's
//! queues and the host's indexing rule.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::output::print_answer;

/// Write the deployable app in the Functions host's layout: host.json, one
/// <name>/function.json per function, images/ and the handler as
/// `image-factory`, all at the root of the zip (or of the --dir folder).
///
/// Refuses when a function folder is not a function the handler serves, a
/// served function has no folder, a function.json's bindings are not the
/// ones the handler decodes, a function.json names a queue that
/// infra/queues.json does not create, or the result breaks the host's
/// indexing rule.
#[derive(clap::Args)]
pub struct Package {
    /// The handler binary to package, built for Linux x86-64 (default: this executable).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where to write the zip.
    #[arg(long, default_value = "dist/image-factory.zip", conflicts_with = "dir")]
    out: PathBuf,
    /// Write the same layout unzipped into this folder instead (served by
    /// `up --root <folder>` and by `func start` in the folder). The folder is
    /// replaced: it must be new, empty or a previous `package --dir`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Folder holding host.json, functions/, images/ and infra/queues.json.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

impl Package {
    /// Writes the package and says what it holds.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Package {
            binary,
            out,
            dir,
            root,
        } = self;
        let binary = match binary {
            Some(path) => path,
            None => std::env::current_exe()
                .context("cannot tell where this executable is; pass --binary")?,
        };
        let (summary, written) = match dir {
            Some(dir) => (
                crate::package::package_dir(&root, Some(&binary), &dir)?,
                dir,
            ),
            None => (crate::package::package(&root, &binary, &out)?, out),
        };
        print_answer(format!(
            "wrote {}: {} entries, {} functions, handler {} as {}",
            written.display(),
            summary.entries.len(),
            summary.functions.len(),
            binary.display(),
            crate::package::EXECUTABLE
        ))
    }
}
