//! libFuzzer entry point for the `close_payload` target; the properties live in `src/close_payload.rs`, shared
//! with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::close_payload::check(data));
