#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| labctl::fuzz::unit_file(data));
