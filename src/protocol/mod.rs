//! The WebSocket protocol, sans-IO: pure functions and state machines over byte slices, with no
//! runtime imports, so they can be unit-tested exhaustively and fuzzed.
//!
//! - `handshake`: RFC 6455 §4.2 opening handshake (validation, accept key, 101 response).
//! - `frame`: §5.2 frame headers, decoding client frames and encoding server frames.
//! - `mask`: §5.3 masking, fast and reference.
//! - `message`: frames to events, fragment reassembly (§5.4) and UTF-8 validation (§8.1).
//! - `close`: §5.5.1/§7.4 close payloads and codes.
//! - `deflate`: RFC 7692 permessage-deflate (negotiation, compression once per message,
//!   bounded inflation); `frame` and `message` handle its RSV1 bit.
//! - `error`: one error per violated rule, mapped to its close code.

pub mod close;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
