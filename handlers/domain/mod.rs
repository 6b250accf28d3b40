//! The domain core: runs, their state machine, versions, tags and approval
//! tokens; the patch evidence, Microsoft's CVRF data and the patch rules;
//! the reaper's rules and what a network security group admits; an image's
//! declaration and its checks' record.
//! Pure: no I/O, no clock, no Azure, HTTP or storage types.

pub mod approval;
pub mod approvers;
pub mod calendar;
pub mod controls;
pub mod cvrf;
pub mod declaration;
pub mod diagnosis;
pub mod evidence;
pub mod fleet;
pub mod followup;
pub mod gallery;
pub mod git_tag;
pub mod image;
pub mod machine;
pub mod nsg;
pub mod patch;
pub mod patch_gate;
pub mod patch_view;
pub mod pause;
pub mod principal;
pub mod reaper;
pub mod release_event;
pub mod release_notes;
pub mod rollback;
pub mod run;
pub mod schedule;
pub mod source;
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

/// Seconds as people read them: `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn human_duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
