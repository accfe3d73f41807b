//! libFuzzer entry point for the `frames_stream` target; the properties live in `src/frames_stream.rs`, shared
//! with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::frames_stream::check(data));
