//! libFuzzer entry point for the `mask` target; the properties live in `src/mask.rs`, shared
//! with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::mask::check(data));
