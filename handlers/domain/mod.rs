//! The domain core: runs, their state machine, versions, tags and approval
//! tokens. Pure: no I/O, no clock, no Azure, HTTP or storage types.

pub mod approval;
pub mod calendar;
pub mod diagnosis;
pub mod fleet;
pub mod followup;
pub mod gallery;
pub mod git_tag;
pub mod image;
pub mod machine;
pub mod release_event;
pub mod run;
pub mod schedule;
pub mod tags;
pub mod version;

/// Cuts text to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
