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
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · image-factory</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #1b1f24; }}
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
