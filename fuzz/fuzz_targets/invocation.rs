//! Any bytes as an invocation payload, decoded for every function (the
//! webhook parsers included): decoding may refuse, never panic.
#![no_main]

use image_factory::functions::{Function, NAMES};
use image_factory::protocol::InvocationRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<InvocationRequest>(data) {
        for name in NAMES {
            let _ = Function::parse(name, &request);
        }
    }
});
