//! Where a run's build logs live in its folder, one per build attempt.
//!
//! Attempt `n` of the build stage (its number is its place in the stage's
//! recorded attempts, from 1) writes `build.attempt-<n>.log`, and `build.log`
//! is a second name (a hard link) of the current attempt's file. When a later
//! attempt starts (after a crash, a redelivery), `build.log` moves to the new
//! attempt's file and the dead attempt's log stays as it was, so what it
//! printed can still be read (`runs logs --attempt n`, the run's page).

use std::path::{Path, PathBuf};

/// The current attempt's log, in the run's folder.
pub const CURRENT: &str = "build.log";

/// The log of build attempt `attempt` (from 1) in `run_dir`.
pub fn attempt_path(run_dir: &Path, attempt: usize) -> PathBuf {
    run_dir.join(format!("build.attempt-{attempt}.log"))
}

/// Prepares the log of build attempt `attempt` in `run_dir` (created 0700
/// if missing): its own file (0600), with `build.log` naming it. A
/// `build.log` of an earlier attempt keeps its attempt's name; one written by
/// a version that kept a single log is kept as the previous attempt's.
/// Returns the path to write (`build.log`).
pub fn start_attempt(run_dir: &Path, attempt: usize) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    crate::private::create_dir(run_dir)?;
    let current = run_dir.join(CURRENT);
    let mine = attempt_path(run_dir, attempt);
    if let Ok(meta) = std::fs::symlink_metadata(&current)
        && meta.nlink() == 1
    {
        let previous = attempt_path(run_dir, attempt.saturating_sub(1).max(1));
        if !previous.exists() {
            std::fs::hard_link(&current, &previous)?;
        }
    }
    drop(crate::private::open_append(&mine)?);
    if !same_file(&current, &mine) {
        // Link, then rename over `build.log`: a reader never sees it missing.
        let staged = run_dir.join(format!("{CURRENT}.{attempt}.new"));
        let _ = std::fs::remove_file(&staged);
        std::fs::hard_link(&mine, &staged)?;
        std::fs::rename(&staged, &current)?;
    }
    Ok(current)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The log to read for attempt `attempt` of a build stage that recorded
/// `attempts`: the attempt's own file, or `build.log` for the last attempt
/// of a run whose log was kept under that name only.
pub fn path_of(run_dir: &Path, attempt: usize, attempts: usize) -> PathBuf {
    let own = attempt_path(run_dir, attempt);
    if attempt == attempts && !own.exists() {
        return run_dir.join(CURRENT);
    }
    own
}

/// The logs the attempts before the last one left, oldest first.
pub fn earlier(run_dir: &Path, attempts: usize) -> Vec<(usize, PathBuf)> {
    (1..attempts)
        .map(|n| (n, attempt_path(run_dir, n)))
        .filter(|(_, path)| path.is_file())
        .collect()
}

/// Parses an attempt number given by a user: digits only, from 1 to the
/// `attempts` the build stage recorded.
pub fn parse_attempt(text: &str, attempts: usize) -> Result<usize, String> {
    let number = Some(text)
        .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|n| (1..=attempts).contains(n));
    number.ok_or_else(|| match attempts {
        0 => "the build has no attempt yet".to_string(),
        1 => "attempt must be 1: the build has one attempt".to_string(),
        n => format!("attempt must be a number from 1 to {n}, the build's attempts"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attempt_keeps_its_log_and_build_log_names_the_current_one() {
        let root = tempfile::TempDir::new().unwrap();
        let run_dir = root.path().join("runs/r1");
        let log = start_attempt(&run_dir, 1).unwrap();
        std::fs::write(&log, "first attempt\n").unwrap();
        // The same attempt again appends to its own log.
        assert_eq!(start_attempt(&run_dir, 1).unwrap(), log);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "first attempt\n");

        let log = start_attempt(&run_dir, 2).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
        std::fs::write(&log, "second attempt\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(path_of(&run_dir, 1, 2)).unwrap(),
            "first attempt\n"
        );
        assert_eq!(
            std::fs::read_to_string(path_of(&run_dir, 2, 2)).unwrap(),
            "second attempt\n"
        );
        assert_eq!(earlier(&run_dir, 2), vec![(1, attempt_path(&run_dir, 1))]);
        let names: Vec<String> = std::fs::read_dir(&run_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "no staged link is left behind: {names:?}");
    }

    #[test]
    fn a_single_log_of_an_older_version_is_kept_as_the_previous_attempts() {
        let root = tempfile::TempDir::new().unwrap();
        std::fs::write(root.path().join(CURRENT), "old\n").unwrap();
        start_attempt(root.path(), 3).unwrap();
        assert_eq!(
            std::fs::read_to_string(attempt_path(root.path(), 2)).unwrap(),
            "old\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join(CURRENT)).unwrap(),
            ""
        );
        // A run that has no attempt files at all is read from build.log.
        let legacy = tempfile::TempDir::new().unwrap();
        assert_eq!(path_of(legacy.path(), 1, 1), legacy.path().join(CURRENT));
    }

    #[test]
    fn attempt_numbers_are_digits_within_the_recorded_attempts() {
        assert_eq!(parse_attempt("2", 2), Ok(2));
        assert_eq!(parse_attempt("1", 3), Ok(1));
        for bad in [
            "0",
            "3",
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "x",
            "99999999999999999999",
        ] {
            let error = parse_attempt(bad, 2).expect_err(bad);
            assert!(error.contains("from 1 to 2"), "{bad}: {error}");
        }
        assert!(parse_attempt("1", 0).is_err());
    }
}
