//! Just enough RFC 6455 for a load generator and for the floor server, sans-IO.
//!
//! `handshake` builds and checks the HTTP upgrade on both sides, `frame` parses server frames
//! and encodes client (masked) and server (unmasked) frames, `mask` XORs payloads. Nothing here
//! touches a socket: every function works on byte slices, so each rule is unit-tested alone.

pub mod frame;
pub mod handshake;
pub mod mask;
