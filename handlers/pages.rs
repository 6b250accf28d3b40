//! Server-rendered HTML: the page frame every page extends
//! (`handlers/templates/base.html`), the filter that percent-encodes data
//! put into links, the escaper and rendering. Pages are askama templates with
//! the `.html` extension, so every value they print goes through
//! [`PageText`] (askama.toml): HTML-escaped, and its terminal and bidi
//! control characters shown as `<U+XXXX>`, unless a template says otherwise.

use std::fmt;

use askama::Template;
use askama::filters::{Escaper, Html};

use crate::domain::controls::{Lines, escape_controls};

/// The escaper of every value a page or email prints (askama.toml names it
/// for `.html` templates): control characters shown visibly
/// ([`escape_controls`], line breaks and tabs kept for `<pre>` logs), then
/// HTML's escaping. A right-to-left override in a file name reads as
/// `<U+202E>` instead of turning the name around.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageText;

impl Escaper for PageText {
    fn write_escaped_str<W: fmt::Write>(&self, dest: W, string: &str) -> fmt::Result {
        Html.write_escaped_str(dest, &escape_controls(string, Lines::Keep))
    }
}

/// How a page is laid out.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Use the full width (tables) instead of a reading column.
    pub wide: bool,
    /// Reload the page every this many seconds (a run still moving).
    pub refresh_seconds: Option<u32>,
    /// Show the operators' links (runs, fleet): the dashboard's pages, not
    /// the approvers'.
    pub nav: bool,
}

/// What the base layout needs of every page: its title (shown in the tab
/// and as the heading) and its layout. A page template has a `frame` field
/// and `{% extends "base.html" %}`.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The page's title, as text.
    pub title: String,
    /// How the page is laid out.
    pub layout: Layout,
}

impl Frame {
    /// A frame with the reading-column layout.
    pub fn new(title: impl Into<String>) -> Frame {
        Frame::with(title, Layout::default())
    }

    /// A frame with `layout`.
    pub fn with(title: impl Into<String>, layout: Layout) -> Frame {
        Frame {
            title: title.into(),
            layout,
        }
    }

    /// The page's largest width (CSS).
    pub fn width(&self) -> &'static str {
        if self.layout.wide { "72rem" } else { "40rem" }
    }
}

/// A page of one short message (`notice.html`).
#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage<'a> {
    frame: Frame,
    class: &'static str,
    message: &'a str,
    /// A link back: its address and its text.
    back: Option<(&'a str, &'a str)>,
}

/// A page that says `message` (text): an error notice when `error`, and a
/// link back (address, text) when given.
pub fn notice_page(title: &str, message: &str, error: bool, back: Option<(&str, &str)>) -> String {
    render(&NoticePage {
        frame: Frame::new(title),
        class: if error { "notice error" } else { "notice" },
        message,
        back,
    })
}

/// Renders a template. Templates here only print values whose `Display`
/// cannot fail, so a failure is a bug: it is logged and the reader gets a
/// short plain page instead of half of one.
pub fn render(template: &impl Template) -> String {
    template.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a template failed to render");
        "<!doctype html><title>Error</title><p>This page could not be shown.</p>".into()
    })
}

/// Percent-encodes `text` for one path segment or one query-string name or
/// value: every byte outside the unreserved characters of RFC 3986
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so `/`, `?`, `&`, `#`, quotes and
/// spaces in data can neither end the segment nor break out of the attribute.
pub fn url_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

/// The filters of the page templates. Askama looks them up in the module
/// that derives the template, which brings them in with
/// `use crate::pages::filters;`.
pub mod filters {
    /// `{{ value|url_encode }}`: [`super::url_encode`] of the value's text,
    /// for a path segment or a query value taken from data.
    #[askama::filter_fn]
    pub fn url_encode(
        value: impl std::fmt::Display,
        _: &dyn askama::Values,
    ) -> askama::Result<String> {
        Ok(super::url_encode(&value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_page_shows_control_characters_escaped_and_html_inert() {
        let page = notice_page(
            "rtl\u{202e}txt.exe",
            "<b>\u{1b}]0;owned\u{7}</b>\nline two",
            true,
            None,
        );
        assert!(
            !page
                .chars()
                .any(|c| crate::domain::controls::is_control(c) && c != '\n'),
            "{page:?}"
        );
        assert!(page.contains("rtl&#60;U+202E&#62;txt.exe"), "{page}");
        assert!(
            page.contains(
                "&#60;b&#62;&#60;U+001B&#62;]0;owned&#60;U+0007&#62;&#60;/b&#62;\nline two"
            ),
            "{page}"
        );
    }

    /// Percent-decoding, as a server reads a path segment.
    fn decode(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn an_encoded_value_is_unreserved_characters_and_escapes_that_decode_to_it(text in any::<String>()) {
            let encoded = url_encode(&text);
            prop_assert!(encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            prop_assert_eq!(decode(&encoded), text.as_bytes());
        }
    }

    #[test]
    fn unreserved_characters_stay_and_everything_else_is_percent_encoded() {
        assert_eq!(
            url_encode("push-web-2026.1125.0_a~b"),
            "push-web-2026.1125.0_a~b"
        );
        assert_eq!(url_encode("a b/c?d&e=f#g"), "a%20b%2Fc%3Fd%26e%3Df%23g");
        assert_eq!(
            url_encode(r#""><img src=x onerror=alert(1)>"#),
            "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
        );
        assert_eq!(url_encode("%41+'"), "%2541%2B%27");
        // Text outside ASCII is encoded byte by byte (UTF-8).
        assert_eq!(url_encode("é"), "%C3%A9");
        assert_eq!(url_encode(""), "");
    }

    #[test]
    fn markup_in_a_title_or_message_is_shown_as_text() {
        let page = notice_page(
            "<b>",
            r#"<script>alert("x")</script> & 'y'"#,
            true,
            Some(("/x", "back")),
        );
        assert!(
            !page.contains("<b>") && !page.contains("<script>"),
            "{page}"
        );
        assert!(
            page.contains("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62; &#38; &#39;y&#39;"),
            "{page}"
        );
    }
}
