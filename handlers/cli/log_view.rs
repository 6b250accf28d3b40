//! How `runs logs` prints a build log: as a person reads it (time, step,
//! message: [`crate::packer::readable`]), or with `--raw` as Packer wrote
//! it (`-machine-readable`). The log arrives in pieces that may end inside
//! a line (or a character): a readable line is printed once it is whole.

use std::io::Write;

use super::output::{Paint, paint};
use crate::domain::controls::{Lines, escape_controls};
use crate::packer::{LogKind, LogLine, readable};

/// Prints a build log piece by piece.
pub(super) struct LogPrinter {
    /// Print the log as it is.
    raw: bool,
    /// Colour the readable lines.
    colour: bool,
    /// The start of a line whose end has not arrived.
    pending: Vec<u8>,
    /// The widest step printed so far: the steps line up.
    step_width: usize,
}

impl LogPrinter {
    /// A printer of the raw log, or of readable lines (coloured when `colour`).
    pub(super) fn new(raw: bool, colour: bool) -> LogPrinter {
        LogPrinter {
            raw,
            colour,
            pending: Vec::new(),
            step_width: 6,
        }
    }

    /// Prints what `piece` completes.
    pub(super) fn feed(&mut self, out: &mut impl Write, piece: &[u8]) -> std::io::Result<()> {
        if self.raw {
            return out.write_all(piece);
        }
        self.pending.extend_from_slice(piece);
        let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let whole: Vec<u8> = self.pending.drain(..=last).collect();
        for line in String::from_utf8_lossy(&whole).lines() {
            self.print(out, line)?;
        }
        Ok(())
    }

    /// Prints the rest: a last line the log did not end.
    pub(super) fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.print(out, &String::from_utf8_lossy(&rest))?;
        }
        Ok(())
    }

    fn print(&mut self, out: &mut impl Write, line: &str) -> std::io::Result<()> {
        for said in readable(line) {
            self.step_width = self.step_width.max(said.step.chars().count());
            writeln!(out, "{}", self.format(&said))?;
        }
        Ok(())
    }

    /// `HH:MM:SS  step  message` (the time in UTC; blank for a line that
    /// has none), control characters shown escaped.
    fn format(&self, said: &LogLine) -> String {
        let step = format!(
            "{:<width$}",
            escape_controls(&said.step, Lines::Escape),
            width = self.step_width
        );
        let shown = said.shown();
        let shown = escape_controls(&shown, Lines::Escape);
        let message = match said.kind {
            LogKind::Step => paint(&shown, Paint::Bold, self.colour),
            LogKind::Error => paint(&shown, Paint::Red, self.colour),
            LogKind::Output | LogKind::Note => shown.into_owned(),
        };
        format!(
            "{}  {}  {message}",
            paint(&said.clock(), Paint::Dim, self.colour),
            paint(&step, Paint::Dim, self.colour)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(raw: bool, colour: bool, pieces: &[&[u8]]) -> String {
        let mut printer = LogPrinter::new(raw, colour);
        let mut out = Vec::new();
        for piece in pieces {
            printer.feed(&mut out, piece).unwrap();
        }
        printer.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_split_between_pieces_even_inside_a_character_is_printed_whole_once() {
        let line = "1795598663,,ui,message,    b: caf\u{e9}%!(PACKER_COMMA) ok\n".as_bytes();
        // Inside the two bytes of "é", and before the line's end.
        let inside = line.iter().position(|&b| b == 0xc3).unwrap() + 1;
        for at in [inside, line.len() - 1] {
            let text = printed(false, false, &[&line[..at], &line[at..]]);
            assert_eq!(text, "09:24:23  b         café, ok\n", "cut at {at}");
        }
    }

    #[test]
    fn raw_is_the_log_as_written_and_colour_only_when_asked() {
        let log = b"1795598663,,ui,error,==> b: it broke\n1795598663,,error-count,1\n";
        assert_eq!(printed(true, false, &[log]).as_bytes(), log);
        let plain = printed(false, false, &[log]);
        assert_eq!(plain, "09:24:23  b       error: it broke\n");
        let coloured = printed(false, true, &[log]);
        assert!(
            coloured.contains("\x1b[31merror: it broke\x1b[0m"),
            "{coloured:?}"
        );
    }

    #[test]
    fn control_characters_in_a_log_are_shown_not_obeyed() {
        let log = "1795598663,,ui,message,    b: \u{1b}]0;owned\u{7}\n[image-factory] cancelled";
        let text = printed(false, false, &[log.as_bytes()]);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("<U+001B>]0;owned<U+0007>"), "{text}");
        assert!(text.ends_with("          factory  cancelled\n"), "{text:?}");
    }
}
