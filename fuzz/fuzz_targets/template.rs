//! Any text as a Packer template: the factory's checks report, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("build.pkr.hcl"), data).expect("write");
    let _ = image_factory::template::check_folder(dir.path());
});
