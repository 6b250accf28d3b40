//! The local executor: runs the executor port's jobs and short checks as
//! child processes of this machine (see [`crate::ports::executor`] for what
//! it guarantees: streamed private logs, timeouts, cancellation, orphans of a
//! crashed attempt stopped).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::domain::truncate;
use crate::ports::executor::{
    CHECK_OUTPUT_LIMIT, Check, CheckOutput, Executor, ExecutorError, Job, JobEnd, JobOutcome,
};
use crate::private;

/// Longest line kept whole; longer lines are cut (the log gets the cut line).
const MAX_LINE: usize = 64 * 1024;

/// Runs jobs as child processes of this machine.
#[derive(Clone, Debug, Default)]
pub struct LocalExecutor;

#[async_trait]
impl Executor for LocalExecutor {
    async fn check(&self, check: Check) -> Result<CheckOutput, ExecutorError> {
        let program = check.program.display().to_string();
        let mut command = Command::new(&check.program);
        let child = private::private_umask(&mut command)
            .args(&check.args)
            .current_dir(&check.dir)
            .envs(check.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecutorError::Spawn {
                program: program.clone(),
                source,
            })?;
        match tokio::time::timeout(check.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                Ok(CheckOutput {
                    code: out.status.code(),
                    output: truncate(text.trim(), CHECK_OUTPUT_LIMIT),
                })
            }
            Ok(Err(source)) => Err(ExecutorError::Wait { program, source }),
            Err(_) => Err(ExecutorError::TimedOut {
                program,
                seconds: check.timeout.as_secs(),
            }),
        }
    }

    async fn run(
        &self,
        job: Job,
        on_line: &mut (dyn for<'l> FnMut(&'l str) + Send),
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        let log_err = |source| ExecutorError::Log {
            path: job.log.clone(),
            source,
        };
        let pid_file = job.log.with_extension("pgid");
        stop_orphan(&pid_file, &job.program).await;
        let path = job.log.clone();
        let file = private::blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                private::create_dir(dir)?;
            }
            private::open_append(&path)
        })
        .await
        .map_err(log_err)?;
        let mut log = LogWriter::new(tokio::fs::File::from_std(file));

        let started = Instant::now();
        let mut command = Command::new(&job.program);
        private::private_umask(&mut command)
            .args(&job.args)
            .current_dir(&job.dir)
            .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| ExecutorError::Spawn {
            program: job.program.display().to_string(),
            source,
        })?;
        let pgid = child.id().unwrap_or(0);
        private::write_in_dir(&pid_file, pgid.to_string().into_bytes())
            .await
            .map_err(log_err)?;

        let mut stdout = child.stdout.take().map(LineReader::new);
        let mut stderr = child.stderr.take().map(LineReader::new);
        let deadline = tokio::time::sleep(job.timeout);
        tokio::pin!(deadline);
        let mut end = None;
        while stdout.is_some() || stderr.is_some() {
            tokio::select! {
                line = next_line(&mut stdout) => {
                    if let Some(line) = line {
                        log.line(&line).await.map_err(log_err)?;
                        on_line(&line);
                    }
                }
                line = next_line(&mut stderr) => {
                    if let Some(line) = line {
                        log.line(&line).await.map_err(log_err)?;
                    }
                }
                _ = flush_due(log.due) => log.flush().await.map_err(log_err)?,
                _ = &mut deadline => { end = Some(JobEnd::TimedOut); break; }
                _ = cancel.cancelled() => { end = Some(JobEnd::Cancelled); break; }
            }
        }
        log.flush().await.map_err(log_err)?;
        let end = match end {
            Some(forced) => {
                kill_group(pgid);
                let _ = child.wait().await;
                let note = match forced {
                    JobEnd::TimedOut => format!(
                        "[image-factory] killed after the timeout of {:?}",
                        job.timeout
                    ),
                    _ => "[image-factory] cancelled".to_string(),
                };
                log.line(&note).await.map_err(log_err)?;
                forced
            }
            None => {
                let status = tokio::select! {
                    status = child.wait() => status.ok(),
                    _ = &mut deadline => { kill_group(pgid); None }
                };
                // The group may have children left that closed their pipes.
                kill_group(pgid);
                match status.map(|s| s.code()) {
                    Some(Some(code)) => JobEnd::Exited(code),
                    Some(None) => JobEnd::Signalled,
                    None => {
                        let _ = child.wait().await;
                        JobEnd::TimedOut
                    }
                }
            }
        };
        log.flush().await.map_err(log_err)?;
        let _ = tokio::fs::remove_file(&pid_file).await;
        Ok(JobOutcome {
            end,
            elapsed: started.elapsed(),
        })
    }

    async fn stop(&self, log: &Path, program: &Path) -> Result<Option<u32>, ExecutorError> {
        let stopped = stop_group(&log.with_extension("pgid"), program).await;
        if let Some(pgid) = stopped {
            tracing::info!(pgid, log = %log.display(), "stopped a job");
        }
        Ok(stopped)
    }
}

/// The run's log file, written through a buffer (one system call per 64 KiB,
/// not per line). A line waits in the buffer at most [`FLUSH_EVERY`]: the
/// buffer is flushed when a line arrives after that, and on a timer
/// ([`flush_due`]) when the child goes quiet, so followers of the log see it
/// grow and a crash of this process loses at most that much of it.
struct LogWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// When the oldest line not yet flushed must be flushed, if one waits.
    due: Option<tokio::time::Instant>,
}

/// How long a written line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

impl LogWriter {
    fn new(file: tokio::fs::File) -> LogWriter {
        LogWriter {
            file: tokio::io::BufWriter::with_capacity(64 * 1024, file),
            due: None,
        }
    }

    async fn line(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes()).await?;
        self.file.write_all(b"\n").await?;
        let due = *self
            .due
            .get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_EVERY);
        if tokio::time::Instant::now() >= due {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.due = None;
        self.file.flush().await
    }
}

/// Resolves when buffered lines are due on disk (`due`); never while no line
/// waits, so a quiet child costs no wake-ups.
async fn flush_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads lines of at most [`MAX_LINE`] bytes, lossily decoded.
struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> LineReader<R> {
        LineReader {
            reader: BufReader::new(inner),
            buf: Vec::with_capacity(1024),
        }
    }

    /// The next line, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        self.buf.clear();
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(bytes) => bytes,
                Err(_) => return None,
            };
            if available.is_empty() {
                return (!self.buf.is_empty()).then(|| self.take());
            }
            let (used, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.buf.len());
            let keep = if done { used - 1 } else { used };
            self.buf.extend_from_slice(&available[..keep.min(room)]);
            self.reader.consume(used);
            if done {
                return Some(self.take());
            }
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.buf);
        line.trim_end_matches('\r').to_string()
    }
}

async fn next_line<R: AsyncRead + Unpin>(reader: &mut Option<LineReader<R>>) -> Option<String> {
    let Some(r) = reader.as_mut() else {
        return std::future::pending().await;
    };
    let line = r.next().await;
    if line.is_none() {
        *reader = None;
    }
    line
}

/// Stops a whole process group.
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the process group; it
        // touches no memory of this process.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Stops the process group a crashed earlier attempt left running, if any and
/// if its leader is still the same program (process ids get reused).
async fn stop_orphan(pid_file: &Path, program: &Path) {
    if let Some(pgid) = stop_group(pid_file, program).await {
        tracing::warn!(
            pgid,
            "stopped the process group a previous attempt left running"
        );
    }
}

/// Stops the process group whose id `pid_file` holds, if its leader is
/// still `program` (process ids get reused), and removes the file. Answers
/// the group stopped.
async fn stop_group(pid_file: &Path, program: &Path) -> Option<u32> {
    let text = tokio::fs::read_to_string(pid_file).await.ok()?;
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut stopped = None;
    if let (Ok(pgid), Some(name)) = (text.trim().parse::<u32>(), name) {
        let cmdline = tokio::fs::read(format!("/proc/{pgid}/cmdline"))
            .await
            .unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&name) {
            kill_group(pgid);
            stopped = Some(pgid);
        }
    }
    let _ = tokio::fs::remove_file(pid_file).await;
    stopped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child prints a line and goes quiet: the line reaches the log file
    /// while the child still runs, not when it ends.
    #[tokio::test]
    async fn a_line_before_a_quiet_stretch_reaches_the_log_while_the_child_runs() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let log = dir.path().join("run/build.log");
        let job = Job {
            program: "sh".into(),
            args: vec!["-c".into(), "echo first line; sleep 30".into()],
            dir: dir.path().to_path_buf(),
            env: Vec::new(),
            log: log.clone(),
            timeout: Duration::from_secs(60),
        };
        let cancel = CancellationToken::new();
        let running = tokio::spawn({
            let cancel = cancel.clone();
            async move { LocalExecutor.run(job, &mut |_| {}, cancel).await }
        });
        // Far less than the child's sleep, far more than the flush interval.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut text = String::new();
        while tokio::time::Instant::now() < deadline {
            text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !running.is_finished(),
            "the child ended early: {:?}",
            running.await
        );
        cancel.cancel();
        let outcome = running.await.expect("join").expect("run");
        assert_eq!(
            text, "first line\n",
            "the log on disk while the child slept"
        );
        assert_eq!(outcome.end, JobEnd::Cancelled);
    }

    /// A cancel stops a running job by its log, as the freeing of a
    /// cancelled run does, without the token of the call that started it:
    /// its whole process group ends, and a second stop finds nothing.
    #[tokio::test]
    async fn a_job_is_stopped_by_its_log_whoever_started_it() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let log = dir.path().join("run/build.log");
        let marker = dir.path().join("child-survived");
        let job = Job {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "(sleep 2; touch {}) & echo started; sleep 30",
                    marker.display()
                ),
            ],
            dir: dir.path().to_path_buf(),
            env: Vec::new(),
            log: log.clone(),
            timeout: Duration::from_secs(60),
        };
        let running = tokio::spawn(async move {
            LocalExecutor
                .run(job, &mut |_| {}, CancellationToken::new())
                .await
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::fs::read_to_string(&log)
            .await
            .unwrap_or_default()
            .is_empty()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the job never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stopped = LocalExecutor
            .stop(&log, Path::new("sh"))
            .await
            .expect("stop");
        assert!(stopped.is_some(), "a running job is stopped");
        let outcome = running.await.expect("join").expect("run");
        assert_eq!(outcome.end, JobEnd::Signalled);
        assert_eq!(
            LocalExecutor
                .stop(&log, Path::new("sh"))
                .await
                .expect("stop"),
            None,
            "nothing is left to stop"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !marker.exists(),
            "a child of the job outlived the stop of its group"
        );
    }
}
