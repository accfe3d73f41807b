//! libFuzzer entry point for the `handshake` target; the properties live in `src/handshake.rs`, shared
//! with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::handshake::check(data));
