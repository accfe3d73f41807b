//! permessage-deflate (RFC 7692), sans-IO: negotiation, compression once per message, and
//! bounded inflation of client messages.
//!
//! - `negotiate`: reads the client's `Sec-WebSocket-Extensions` offers (§5, §7.1), picks the
//!   first one ringcast can honour and builds the response value. The server always answers
//!   `server_no_context_takeover`: every message is compressed on its own, so one compressed
//!   frame serves every subscriber that negotiated the extension.
//! - `compress`: [`MessageCompressor`], one per shard, compresses a whole message once
//!   (`libdeflater`, one shot; chosen by measurement, see `results/deflate-choice/`) into the
//!   §7.2.1 payload, or into a complete RSV1 frame ready to share.
//! - `inflate`: [`Inflater`], a streaming raw inflater (`flate2` on `zlib-rs`) for client
//!   messages that checks the inflated size against the message limit while inflating (a zip
//!   bomb fails with 1009 before its output exists). The frame decoder owns one lazily, in an
//!   `Option<Box<_>>`, only while it is needed.
//!
//! Deliberately not here: which frames get RSV1 on the wire (`frame`), reassembly and UTF-8
//! (`message`), and everything about connections, fan-out and configuration (the server).

mod compress;
mod inflate;
mod negotiate;

pub use compress::{CompressionLevel, InvalidCompressionLevel, MessageCompressor};
pub use inflate::{Inflater, inflate_message};
pub use negotiate::{
    ClientContextPolicy, ClientWindowOffer, ContextTakeover, Decline, DeflatePolicy,
    EXTENSION_NAME, InboundCompression, Negotiated, Offer, WindowBits, negotiate, offers,
};

/// RFC 7692 §7.2.1: the 4 octets a sender removes from the end of its compressed data, and
/// §7.2.2: that a receiver appends before inflating.
pub const EMPTY_BLOCK_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
