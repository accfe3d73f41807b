//! The properties ringcast's fuzz targets check, shared by the libFuzzer targets in
//! `fuzz_targets/` and by the stable replay test `tests/fuzz_regressions.rs`, which includes this
//! file with `#[path]` so both check exactly the same things.
//!
//! Each target module owns one `check(data)` that turns raw fuzz bytes into an input (see
//! `input`), drives the sans-IO protocol code and panics when a property breaks; a panic is what
//! libFuzzer records as a crash. This crate deliberately uses only `ringcast` and `std`: the
//! replay test can see nothing else without touching the root manifest.

pub mod centrifugo_frame;
pub mod close_payload;
pub mod frames_stream;
pub mod handshake;
pub mod inflate;
pub mod input;
pub mod mask;
pub mod seeds;

use ringcast::protocol::frame::encode_client_frame;

/// A fuzz target's property check: panics on a violation.
pub type Check = fn(&[u8]);

/// Every target by name (the name of its corpus and regressions folders) with its check.
pub const TARGETS: [(&str, Check); 6] = [
    ("handshake", handshake::check),
    ("frames_stream", frames_stream::check),
    ("close_payload", close_payload::check),
    ("mask", mask::check),
    ("inflate", inflate::check),
    ("centrifugo_frame", centrifugo_frame::check),
];

/// Builds a masked client frame the way a client library would (RFC 6455 §5.2, shortest length
/// encoding, reference mask), so checks and seeds can speak the client side of the protocol.
pub fn client_frame(fin: bool, opcode_bits: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    encode_client_frame((if fin { 0x80 } else { 0 }) | opcode_bits, key, payload)
}
