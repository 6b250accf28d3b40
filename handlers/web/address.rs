//! Which addresses the web adapters may talk to.

/// Whether the factory may send to, or trust an answer from, `url`: https,
/// or http to this machine (127.0.0.1, ::1, localhost: tests and local peers).
pub(super) fn https_or_loopback(url: &reqwest::Url) -> bool {
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}
