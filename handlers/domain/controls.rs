//! Text from outside, shown as what it is. A push carries text its author
//! chose: a commit message, a pusher's name, a branch, file names. Terminal
//! controls in it (ESC sequences that retitle or clear a terminal, BEL, a
//! carriage return that rewrites the line) and bidirectional controls (a
//! right-to-left override that shows `rtl<U+202E>txt.exe` as `rtlexe.txt`)
//! would act on whoever reads it: in release notes, on the pages, in the
//! CLI's output. [`escape_controls`] replaces each with a visible escape,
//! `<U+XXXX>`, so the text reads as written and does nothing.
//!
//! Runs escape the push's text when they are created (a run's record holds
//! the escaped text, and so does everything made from it: notes, pages,
//! events, the CLI's output); the release notes' Markdown and every page
//! escape again on the way out, for records written before and text that
//! did not come from a push (docs/security.md says why both).
//!
//! The factory's own colour codes are terminal controls too: [`colour`]
//! says when what it prints may carry them.

use std::borrow::Cow;

/// Whether output may be coloured: only when it goes to a terminal, and
/// never while `NO_COLOR` is set to a non-empty value, whatever its value
/// (<https://no-color.org>). `no_color` is the variable's value, if set.
/// Output redirected to a file or a pipe stays plain text.
pub fn colour(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Whether line breaks and tabs stay in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    /// Text of several lines (a commit message): `\n` and `\t` stay.
    Keep,
    /// One line (a name, a branch, a path): they are escaped too.
    Escape,
}

/// Whether `c` is a control character that acts on a terminal or on the
/// direction of text: the C0 controls (U+0000-U+001F), DEL and the C1
/// controls (U+007F-U+009F), the Arabic letter mark (U+061C), the
/// left-to-right and right-to-left marks (U+200E, U+200F), the embeddings
/// and overrides (U+202A-U+202E), the isolates (U+2066-U+2069), and the
/// line and paragraph separators (U+2028, U+2029).
pub fn is_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// `text` with every control character ([`is_control`]) shown as
/// `<U+XXXX>` (four hex digits, upper case), but for `\n` and `\t` when
/// `lines` is [`Lines::Keep`]. Text without one is returned as it is, and
/// escaped text is left as it is (escaping twice changes nothing).
pub fn escape_controls(text: &str, lines: Lines) -> Cow<'_, str> {
    let kept = |c: char| lines == Lines::Keep && matches!(c, '\n' | '\t');
    if !text.chars().any(|c| is_control(c) && !kept(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_control(c) && !kept(c) {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape_controls`] of an optional text, owned.
pub fn escape_option(text: Option<String>, lines: Lines) -> Option<String> {
    text.map(|t| match escape_controls(&t, lines) {
        Cow::Borrowed(_) => t,
        Cow::Owned(escaped) => escaped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color_set_to_anything() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        for value in ["1", "0", "false", "no"] {
            assert!(!colour(true, Some(OsStr::new(value))), "NO_COLOR={value}");
        }
        assert!(!colour(false, None), "a file or pipe gets no colour");
    }
    use proptest::prelude::*;

    #[test]
    fn terminal_and_bidi_controls_are_shown_escaped_and_plain_text_is_untouched() {
        assert_eq!(
            escape_controls("rtl\u{202e}txt.exe", Lines::Escape),
            "rtl<U+202E>txt.exe"
        );
        assert_eq!(
            escape_controls("\u{1b}]0;owned\u{7}\u{1b}[2J\r", Lines::Escape),
            "<U+001B>]0;owned<U+0007><U+001B>[2J<U+000D>"
        );
        assert_eq!(
            escape_controls(
                "a\u{9b}b\u{7f}\u{2066}c\u{2069}\u{200f}\u{61c}\u{2028}",
                Lines::Escape
            ),
            "a<U+009B>b<U+007F><U+2066>c<U+2069><U+200F><U+061C><U+2028>"
        );
        assert_eq!(
            escape_controls("line one\n\tline two\r\n", Lines::Keep),
            "line one\n\tline two<U+000D>\n"
        );
        assert_eq!(
            escape_controls("a\nb\tc", Lines::Escape),
            "a<U+000A>b<U+0009>c"
        );
        let plain = "Harden RDP — für alle, 中文, emoji 👩‍💻 (with a zero-width joiner)";
        assert!(matches!(
            escape_controls(plain, Lines::Escape),
            Cow::Borrowed(p) if p == plain
        ));
        assert_eq!(escape_option(None, Lines::Keep), None);
        assert_eq!(
            escape_option(Some("eve\u{202e}".into()), Lines::Escape).as_deref(),
            Some("eve<U+202E>")
        );
    }

    /// The text an escaped text was made from: each `<U+XXXX>` read back.
    fn read_back(escaped: &str) -> String {
        let mut out = String::new();
        let mut rest = escaped;
        while let Some(at) = rest.find("<U+") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 3..];
            let end = tail.find('>').expect("an escape ends with >");
            let code = u32::from_str_radix(&tail[..end], 16).expect("hex");
            out.push(char::from_u32(code).expect("a character"));
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        out
    }

    proptest! {
        /// Whatever the text, the escaped text holds no control but the
        /// kept line breaks, says exactly which character stood where (the
        /// escapes read back give the text), and escaping it again changes
        /// nothing.
        #[test]
        fn no_control_survives_nothing_is_lost_and_escaping_is_idempotent(
            text in "(\\PC|[\\x{0}-\\x{1f}\\x{7f}-\\x{9f}\\x{200e}\\x{200f}\\x{202a}-\\x{202e}\\x{2066}-\\x{2069}]){0,40}",
            keep in any::<bool>(),
        ) {
            prop_assume!(!text.contains("<U+"));
            let lines = if keep { Lines::Keep } else { Lines::Escape };
            let once = escape_controls(&text, lines).into_owned();
            prop_assert!(once.chars().all(|c| !is_control(c) || (keep && matches!(c, '\n' | '\t'))));
            prop_assert_eq!(read_back(&once), text);
            prop_assert_eq!(escape_controls(&once, lines).into_owned(), once);
        }
    }
}
