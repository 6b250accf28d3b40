//! What every command prints through: the factory's answer on stdout, and
//! how a reader that went away (`image-factory runs | head`) is told from a
//! failure.

use std::io::Write;
use std::process::ExitCode;

/// Prints the factory's answer (an error, not a panic, if stdout is closed).
pub(super) fn print_answer(text: String) -> anyhow::Result<ExitCode> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(ExitCode::SUCCESS)
}

/// Whether `error` is a write to a pipe whose reader has closed it (EPIPE).
pub(super) fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
