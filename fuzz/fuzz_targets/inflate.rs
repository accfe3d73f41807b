//! libFuzzer entry point for the `inflate` target; the properties live in `src/inflate.rs`,
//! shared with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::inflate::check(data));
