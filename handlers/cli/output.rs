//! What every command prints through: the factory's answer on stdout, how
//! a reader that went away (`image-factory runs | head`) is told from a
//! failure, and colour. Colour codes go only to a terminal, and never while
//! `NO_COLOR` is set ([`crate::domain::controls::colour`]): output
//! redirected to a file or a pipe is plain text.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use crate::domain::controls::colour;

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

/// Whether what goes to stdout may be coloured.
pub(super) fn colour_stdout() -> bool {
    colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// A colour (SGR code) text may be painted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Paint {
    /// Bold: what starts a step.
    Bold,
    /// Dim: times and other context.
    Dim,
    /// Red: errors.
    Red,
}

/// `text` in `paint` when `on`, else as it is.
pub(super) fn paint(text: &str, paint: Paint, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let code = match paint {
        Paint::Bold => "1",
        Paint::Dim => "2",
        Paint::Red => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}
