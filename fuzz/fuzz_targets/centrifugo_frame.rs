//! libFuzzer entry point for the `centrifugo_frame` target; the properties live in
//! `src/centrifugo_frame.rs`, shared with the stable replay test.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::centrifugo_frame::check(data));
