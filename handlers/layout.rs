//! The Functions host's app layout rule: which `function.json` files the host
//! indexes, checked over the root-relative paths of an app (a folder or a zip)
//! so that the zip, `package --dir` and the folder the embedded host loads are
//! held to one rule.
//!
//! The rule, from the Azure Functions host's source (Azure/azure-functions-host):
//!
//! - `src/WebJobs.Script/Host/HostFunctionMetadataProvider.cs` at commit
//!   0058565eb5d288f12b3a6aa867004f156983965e: `ReadFunctionsMetadata`
//!   enumerates only the *immediate* sub-folders of the script root
//!   (`Directory.EnumerateDirectories(ScriptPath)`, not recursive) and reads
//!   `<folder>/function.json` in each; a folder without one is "not a function
//!   directory" and is skipped silently. The folder's name is the function's
//!   name, validated by `Utility.ValidateName`, and a function.json without a
//!   binding is refused ("At least one binding must be declared").
//! - `src/WebJobs.Script/Utility.cs` at commit
//!   0058f8befdb9bb9da5cb9ac183896590a02f2cbf: `FunctionNameValidationRegex`
//!   is `^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)` (case-insensitive), and
//!   `BindingNameValidationRegex` is `^([a-zA-Z][a-zA-Z0-9]{0,127}|$return)$`.
//!   Function names compare case-insensitively (`FunctionNamesMatch`).
//!
//! A function.json anywhere else (the repository's `functions/<name>/`, a
//! nested folder, the root itself) is never read by the host: the app would
//! deploy with that function missing, so it is refused here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file the host reads in each function folder.
pub const FUNCTION_JSON: &str = "function.json";
/// The host's configuration at the app root.
pub const HOST_JSON: &str = "host.json";

/// Why an app's layout is not one the Functions host indexes as meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// No `host.json` at the root.
    #[error(
        "there is no host.json at the app root: the Functions host would not start the app (stage the repository with `image-factory package --dir <folder>`)"
    )]
    NoHostJson,
    /// No function folder at the root.
    #[error(
        "no <name>/function.json directly under the app root: the Functions host would index no function{hint}"
    )]
    NoFunctions {
        /// A hint when the repository layout was given instead.
        hint: String,
    },
    /// A function.json the host never reads.
    #[error(
        "{path}: the Functions host reads only <root>/<name>/function.json (its immediate sub-folders), so it would skip this function; move the folder `{folder}` to the app root"
    )]
    Skipped {
        /// The file, relative to the root.
        path: String,
        /// The folder holding it.
        folder: String,
    },
    /// A folder name the host refuses as a function name.
    #[error(
        "{folder}/function.json: the folder's name is not a valid function name for the Functions host (a letter, then up to 127 letters, digits, _ or -, and not `host`); rename the folder"
    )]
    InvalidName {
        /// The folder.
        folder: String,
    },
    /// Two folders whose names the host takes for the same function.
    #[error(
        "{first}/function.json and {second}/function.json name the same function for the Functions host, which compares names case-insensitively; rename one"
    )]
    Duplicate {
        /// The first folder.
        first: String,
        /// The second folder.
        second: String,
    },
    /// The folder could not be listed.
    #[error("cannot list {}: {message}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Whether the host accepts `name` as a function name (`FunctionNameValidationRegex`).
pub fn valid_function_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && bytes.len() <= 128
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        && !name.eq_ignore_ascii_case("host")
}

/// Whether the host accepts `name` as a binding name (`BindingNameValidationRegex`).
pub fn valid_binding_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    name == "$return"
        || (bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.len() <= 128
            && bytes.iter().all(u8::is_ascii_alphanumeric))
}

/// Applies the host's indexing rule to an app given as its files' paths
/// relative to the root (`/`-separated, as zip entries are). Answers the
/// functions the host would index, sorted; refuses any function.json it would
/// skip, any name it refuses, and a layout without host.json or functions.
pub fn check_paths<S: AsRef<str>>(paths: &[S]) -> Result<Vec<String>, LayoutError> {
    let mut host_json = false;
    let mut functions: BTreeMap<String, String> = BTreeMap::new();
    let mut skipped = Vec::new();
    for path in paths {
        let path = path.as_ref().trim_start_matches("./");
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [HOST_JSON] => host_json = true,
            [folder, FUNCTION_JSON] => {
                if !valid_function_name(folder) {
                    return Err(LayoutError::InvalidName {
                        folder: folder.to_string(),
                    });
                }
                if let Some(first) =
                    functions.insert(folder.to_ascii_lowercase(), folder.to_string())
                {
                    return Err(LayoutError::Duplicate {
                        first,
                        second: folder.to_string(),
                    });
                }
            }
            [.., folder, FUNCTION_JSON] => skipped.push((path.to_string(), folder.to_string())),
            [FUNCTION_JSON] => skipped.push((path.to_string(), ".".to_string())),
            _ => {}
        }
    }
    if let Some((path, folder)) = skipped.into_iter().min() {
        return Err(LayoutError::Skipped { path, folder });
    }
    if !host_json {
        return Err(LayoutError::NoHostJson);
    }
    if functions.is_empty() {
        return Err(LayoutError::NoFunctions {
            hint: String::new(),
        });
    }
    let mut names: Vec<String> = functions.into_values().collect();
    names.sort();
    Ok(names)
}

/// Applies [`check_paths`] to the folder `root`. A folder in the repository's
/// layout (`functions/<name>/function.json`) is refused with a hint to stage it.
pub fn check_dir(root: &Path) -> Result<Vec<String>, LayoutError> {
    let paths = relative_files(root)?;
    check_paths(&paths).map_err(|e| match e {
        LayoutError::Skipped { path, .. } if path.starts_with("functions/") => {
            LayoutError::NoFunctions {
                hint: format!(
                    " ({path} is the repository's layout: serve the repository with `image-factory up` and no --root, or stage it with `image-factory package --dir <folder>`)"
                ),
            }
        }
        other => other,
    })
}

/// Every file under `root`, relative and `/`-separated, sorted. Symbolic
/// links to folders are not followed.
pub fn relative_files(root: &Path) -> Result<Vec<String>, LayoutError> {
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), LayoutError> {
    let err = |e: std::io::Error| LayoutError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().map_err(err)?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{name}/"), out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_the_hosts_regex() {
        for good in ["runs", "stage-validate", "a", "A_1-b", &"x".repeat(128)] {
            assert!(valid_function_name(good), "{good}");
        }
        for bad in [
            "",
            "1runs",
            "-runs",
            "runs.v2",
            "run s",
            "host",
            "HOST",
            "functions/runs",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!valid_function_name(bad), "{bad}");
        }
        // Only the whole name `host` is refused.
        assert!(valid_function_name("hosts"));
    }

    #[test]
    fn binding_names_follow_the_hosts_regex() {
        for good in ["req", "res", "message", "validate", "$return", "a1"] {
            assert!(valid_binding_name(good), "{good}");
        }
        for bad in ["", "1a", "stage-build", "a_b", "$other"] {
            assert!(!valid_binding_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_host_layout_indexes_the_root_folders() {
        let functions = check_paths(&[
            "host.json",
            "runs/function.json",
            "git-push/function.json",
            "images/example/image.toml",
            "image-factory",
        ])
        .expect("indexed");
        assert_eq!(functions, ["git-push", "runs"]);
    }

    #[test]
    fn a_nested_function_json_is_skipped_by_the_host_and_refused_naming_it() {
        let err = check_paths(&[
            "host.json",
            "runs/function.json",
            "functions/git-push/function.json",
        ])
        .expect_err("skipped");
        assert_eq!(
            err,
            LayoutError::Skipped {
                path: "functions/git-push/function.json".into(),
                folder: "git-push".into()
            }
        );
        assert!(err.to_string().contains("move the folder `git-push`"));
        let err = check_paths(&["host.json", "function.json", "runs/function.json"])
            .expect_err("root function.json");
        assert!(matches!(err, LayoutError::Skipped { .. }), "{err}");
    }

    #[test]
    fn names_the_host_refuses_and_duplicates_are_refused_naming_the_folder() {
        let err = check_paths(&["host.json", "stage.v2/function.json"]).expect_err("name");
        assert!(
            err.to_string().starts_with("stage.v2/function.json"),
            "{err}"
        );
        let err = check_paths(&["host.json", "host/function.json"]).expect_err("host");
        assert_eq!(
            err,
            LayoutError::InvalidName {
                folder: "host".into()
            }
        );
        let err = check_paths(&["host.json", "Runs/function.json", "runs/function.json"])
            .expect_err("dup");
        assert!(matches!(err, LayoutError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn an_app_without_host_json_or_functions_is_refused() {
        assert_eq!(
            check_paths(&["runs/function.json"]),
            Err(LayoutError::NoHostJson)
        );
        assert!(matches!(
            check_paths(&["host.json", "images/a/image.toml"]),
            Err(LayoutError::NoFunctions { .. })
        ));
    }

    #[test]
    fn the_repository_itself_is_not_the_host_layout_and_the_refusal_says_how_to_stage_it() {
        let err = check_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).expect_err("repo layout");
        let text = err.to_string();
        assert!(
            text.contains("repository's layout") && text.contains("package --dir"),
            "{text}"
        );
    }
}
