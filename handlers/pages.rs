//! Server-rendered HTML: the page frame and escaping. Every user-supplied
//! string shown on a page goes through [`escape`].

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete page: `title` is escaped, `body` is trusted HTML built with [`escape`].
pub fn page(title: &str, body: &str) -> String {
    page_with(title, body, Layout::default())
}

/// How a page is laid out.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Use the full width (tables) instead of a reading column.
    pub wide: bool,
    /// Reload the page every this many seconds (a run still moving).
    pub refresh_seconds: Option<u32>,
}

/// A complete page with a layout.
pub fn page_with(title: &str, body: &str, layout: Layout) -> String {
    let width = if layout.wide { "72rem" } else { "40rem" };
    let refresh = layout
        .refresh_seconds
        .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
{refresh}
<title>{title} · image-factory</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: {width}; margin: 2rem auto; padding: 0 1rem; color: #1b1f24; }}
table {{ border-collapse: collapse; width: 100%; font-size: .92rem; }}
th, td {{ text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e6ea; vertical-align: top; }}
.scroll {{ overflow-x: auto; }}
.status {{ display: inline-block; padding: .05rem .5rem; border-radius: 1rem; font-size: .85rem; background: #eef0f3; }}
.status.released {{ background: #dff3e4; color: #14532d; }}
.status.failed, .status.rejected, .status.approval-expired {{ background: #fdecea; color: #7f1d1d; }}
.status.running, .status.queued {{ background: #e7f0fd; color: #1e3a8a; }}
.status.waiting-for-approval {{ background: #fff4d6; color: #713f12; }}
pre {{ background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }}
form.filters {{ display: flex; gap: .6rem; flex-wrap: wrap; align-items: end; margin-bottom: 1rem; }}
nav a {{ margin-right: 1rem; }}
h1 {{ font-size: 1.4rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; }}
dt {{ font-weight: 600; }} dd {{ margin: 0; overflow-wrap: anywhere; }}
.notice {{ padding: .8rem 1rem; border-radius: .4rem; background: #eef3fb; }}
.error {{ background: #fdecea; }}
textarea {{ width: 100%; min-height: 4rem; box-sizing: border-box; }}
button {{ font-size: 1rem; padding: .6rem 1.4rem; margin: .6rem .6rem 0 0; border-radius: .4rem; border: 1px solid #888; cursor: pointer; }}
button.approve {{ background: #1f7a35; color: #fff; border-color: #1f7a35; }}
button.reject {{ background: #fff; color: #a11; border-color: #a11; }}
</style>
</head>
<body>
<nav class="site"><a href="/api/dashboard">Runs</a><a href="/api/dashboard/fleet">Fleet</a></nav>
<h1>{title}</h1>
{body}
</body>
</html>
"#,
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_user_text_is_shown_as_text() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert!(!page("<b>", "").contains("<b>"));
    }
}
