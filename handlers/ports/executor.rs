//! The executor port: where work runs — long work (a `packer build`, streamed
//! into the run's log) and short checks (`packer validate`, a smoke command,
//! collected whole with a timeout). The adapter that runs both as child
//! processes of this machine is `local::executor`.
//!
//! The local executor streams the child's output line by line into the run's
//! log file (constant memory, whatever the log's size; on disk at most a
//! second after the child printed it, private to the factory's user, as is
//! what the child writes: see [`crate::private`]), hands each stdout line
//! to the caller (to collect packer's artifacts as they appear), enforces a
//! timeout, and can be cancelled. The child runs in its own process group so a
//! timeout or cancel stops packer and every plugin process it started; its
//! process group id is written beside the log so that, after a crash of this
//! process, the next attempt stops the orphan before starting again.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// One piece of long work. Its `Debug` names the environment variables
/// without their values (they may hold a sign-in secret).
#[derive(Clone)]
pub struct Job {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub dir: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The log file (created or appended to).
    pub log: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Job")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("dir", &self.dir)
            .field("env", &env)
            .field("log", &self.log)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// Exited with this code (0 is success).
    Exited(i32),
    /// Killed by a signal it did not expect.
    Signalled,
    /// Killed because it ran past its timeout.
    TimedOut,
    /// Killed because it was cancelled.
    Cancelled,
}

/// A finished job.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    /// How it ended.
    pub end: JobEnd,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Why a job could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program was started but could not be waited for.
    #[error("{program} failed: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A short check ran past its timeout and was killed.
    #[error("{program} did not finish within {seconds} s")]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout.
        seconds: u64,
    },
    /// The log could not be written.
    #[error("cannot write the log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A short check (`packer version`, `validate`, a smoke command): its whole
/// output is wanted, within a timeout. Its `Debug` names the environment
/// variables without their values.
#[derive(Clone)]
pub struct Check {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub dir: PathBuf,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Killed after this long.
    pub timeout: Duration,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Check")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("dir", &self.dir)
            .field("env", &env)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a short check printed and how it ended.
#[derive(Clone, Debug)]
pub struct CheckOutput {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// stdout then stderr, trimmed and cut to [`CHECK_OUTPUT_LIMIT`].
    pub output: String,
}

/// The most output a short check keeps, in bytes.
pub const CHECK_OUTPUT_LIMIT: usize = 16 * 1024;

/// Runs work.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs `check` to its end or its timeout and collects its output.
    async fn check(&self, check: Check) -> Result<CheckOutput, ExecutorError>;

    /// Runs `job` to its end, passing each stdout line to `on_line`.
    async fn run(
        &self,
        job: Job,
        on_line: &mut (dyn for<'l> FnMut(&'l str) + Send),
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError>;

    /// Stops the job of `program` that writes the log `log`, if one still
    /// runs, whoever started it (this process, or one that crashed): a
    /// cancelled run's build. Answers the process group stopped, `None`
    /// when no such job runs.
    async fn stop(
        &self,
        log: &std::path::Path,
        program: &std::path::Path,
    ) -> Result<Option<u32>, ExecutorError>;
}
