//! Any text as an approval token: verification refuses it, never panics.
#![no_main]

use chrono::Utc;
use image_factory::domain::approval::{KeyRing, SigningKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::new("fuzz", vec![7u8; 32]).expect("key");
    let ring = KeyRing::new(vec![key]).expect("ring");
    let token = String::from_utf8_lossy(data);
    let _ = ring.verify(&token, Utc::now());
});
