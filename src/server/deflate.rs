//! permessage-deflate on a shard: what each connection agreed to, the shard's one compressor,
//! and the per-message frame cache that compresses a publication once per wire format.
//!
//! A connection keeps only [`Deflate`] (a few bytes: whether it negotiated the extension, the
//! client's context rule, the window it asked the server to stay within). Its inflater lives in
//! the frame decoder, created on its first compressed frame (see `protocol::message`).
//!
//! The shard keeps one [`ShardCompressor`], built on the first message worth compressing (about
//! 200 KB at level 1). The fan-out asks a [`FrameCache`] for each subscriber's frame: the plain
//! frame is built once per wire format as before; the compressed one once per wire format too,
//! only when the first subscriber that negotiated the extension needs it, only for a message of
//! at least `--compress-min-bytes`, and kept only if it is smaller. Every subscriber that may
//! receive it shares the same `Bytes`: nothing is allocated or copied per subscriber.
//!
//! Deliberately not here: negotiation and the RFC 7692 byte rules (`protocol::deflate`), queueing
//! and counting (the registry).

use std::time::Instant;

use bytes::Bytes;

use crate::protocol::deflate::{
    CompressionLevel, InboundCompression, MessageCompressor, Negotiated,
};
use crate::protocol::frame::server_data_frame_message;
use crate::publication::Publication;
use crate::telemetry::counters::{Counter, ShardStats};
use crate::wire::WireFormat;

/// What a connection negotiated about permessage-deflate (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deflate {
    /// Not negotiated (not offered, no acceptable offer, or `--compression off`): every frame
    /// it gets is uncompressed and RSV1 from it is a protocol error (1002).
    #[default]
    Off,
    /// Negotiated on these terms (the server's context is always reset).
    On(Negotiated),
}

impl Deflate {
    /// How the connection's frame decoder treats RSV1.
    pub fn inbound(self) -> InboundCompression {
        match self {
            Deflate::Off => InboundCompression::Off,
            Deflate::On(negotiated) => negotiated.inbound(),
        }
    }
}

/// The counts one fan-out (or one echo) adds to the shard's deflate counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeflateTally {
    /// Messages compressed (the compressed frame was kept).
    pub messages_compressed: u64,
    /// Messages tried that did not get smaller.
    pub messages_incompressible: u64,
    /// Microseconds spent compressing.
    pub compress_us: u64,
    /// Compressed frames queued.
    pub frames: u64,
    /// Bytes those frames would have been uncompressed.
    pub uncompressed_bytes: u64,
    /// Bytes they saved on the wire.
    pub saved_bytes: u64,
}

impl DeflateTally {
    /// Adds the tally to the shard's counters.
    pub fn record(&self, stats: &mut ShardStats) {
        stats.add(Counter::DeflateMessagesCompressed, self.messages_compressed);
        stats.add(
            Counter::DeflateMessagesIncompressible,
            self.messages_incompressible,
        );
        stats.add(Counter::DeflateCompressUs, self.compress_us);
        stats.add(Counter::DeflateFrames, self.frames);
        stats.add(Counter::DeflateUncompressedBytes, self.uncompressed_bytes);
        stats.add(Counter::DeflateSavedBytes, self.saved_bytes);
    }
}

/// A message compressed once, shared by every connection that may receive it.
#[derive(Debug, Clone)]
struct Compressed {
    /// The complete RSV1 frame.
    frame: Bytes,
    /// The uncompressed message's length (for `Negotiated::may_send_compressed`).
    message_bytes: usize,
    /// The uncompressed frame's length.
    plain_frame_bytes: usize,
}

/// The shard's compressor and the threshold, from `--compression-level` and
/// `--compress-min-bytes`.
pub struct ShardCompressor {
    /// The level the compressor is built with.
    level: CompressionLevel,
    /// Messages shorter than this go out uncompressed.
    min_bytes: usize,
    /// Built on the first message worth compressing (about 200 KB at level 1).
    compressor: Option<MessageCompressor>,
}

impl std::fmt::Debug for ShardCompressor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ShardCompressor")
            .field("level", &self.level)
            .field("min_bytes", &self.min_bytes)
            .field("built", &self.compressor.is_some())
            .finish()
    }
}

impl ShardCompressor {
    /// A compressor at `level` for messages of at least `min_bytes`.
    pub fn new(level: CompressionLevel, min_bytes: usize) -> ShardCompressor {
        ShardCompressor {
            level,
            min_bytes,
            compressor: None,
        }
    }

    /// The compressed form of `plain`, an uncompressed server data frame; `None` for a frame
    /// that is not one, a message under the threshold, or one that would not get smaller.
    fn compress(&mut self, plain: &Bytes, tally: &mut DeflateTally) -> Option<Compressed> {
        let (kind, message) = server_data_frame_message(plain)?;
        if message.len() < self.min_bytes.max(1) {
            return None;
        }
        let level = self.level;
        let compressor = self
            .compressor
            .get_or_insert_with(|| MessageCompressor::new(level));
        let started = Instant::now();
        let frame = compressor.compress_frame(kind, message);
        tally.compress_us += started.elapsed().as_micros() as u64;
        // Only when it saves bytes on the wire (frame headers included).
        let Some(frame) = frame.filter(|frame| frame.len() < plain.len()) else {
            tally.messages_incompressible += 1;
            return None;
        };
        tally.messages_compressed += 1;
        Some(Compressed {
            frame,
            message_bytes: message.len(),
            plain_frame_bytes: plain.len(),
        })
    }

    /// The frame to queue for a connection that negotiated `deflate` instead of `plain` (a
    /// reply such as an echo, compressed for that one connection).
    pub fn compress_reply(
        &mut self,
        deflate: Deflate,
        plain: Bytes,
        tally: &mut DeflateTally,
    ) -> Bytes {
        let Deflate::On(negotiated) = deflate else {
            return plain;
        };
        match self.compress(&plain, tally) {
            Some(compressed) if negotiated.may_send_compressed(compressed.message_bytes) => {
                tally.frames += 1;
                tally.uncompressed_bytes += compressed.plain_frame_bytes as u64;
                tally.saved_bytes += (compressed.plain_frame_bytes - compressed.frame.len()) as u64;
                compressed.frame
            }
            _ => plain,
        }
    }
}

/// The frames of one publication, built lazily once per wire format (plain, and compressed
/// when a subscriber that negotiated permessage-deflate needs it) and shared by every
/// subscriber.
#[derive(Default)]
pub struct FrameCache {
    /// Per format: not built yet, or built (`None`: no form in that format).
    plain: [Option<Option<Bytes>>; WireFormat::COUNT],
    /// Per format: not tried yet, or tried (`None`: not worth it).
    compressed: [Option<Option<Compressed>>; WireFormat::COUNT],
    /// What compressing and queueing compressed frames added up to.
    pub tally: DeflateTally,
}

impl FrameCache {
    /// The frame for a subscriber speaking `format` that negotiated `deflate` (`None`: this
    /// publication cannot be sent in that format). `compressor` is `None` with
    /// `--compression off`.
    pub fn get(
        &mut self,
        format: WireFormat,
        deflate: Deflate,
        publication: &Publication,
        compressor: Option<&mut ShardCompressor>,
    ) -> Option<Bytes> {
        let plain = self.plain[format.index()]
            .get_or_insert_with(|| crate::wire::frame_publication(format, publication))
            .as_ref()?;
        let (Deflate::On(negotiated), Some(compressor)) = (deflate, compressor) else {
            return Some(plain.clone());
        };
        let tally = &mut self.tally;
        let compressed = self.compressed[format.index()]
            .get_or_insert_with(|| compressor.compress(plain, tally));
        match compressed {
            Some(compressed) if negotiated.may_send_compressed(compressed.message_bytes) => {
                tally.frames += 1;
                tally.uncompressed_bytes += compressed.plain_frame_bytes as u64;
                tally.saved_bytes += (compressed.plain_frame_bytes - compressed.frame.len()) as u64;
                Some(compressed.frame.clone())
            }
            _ => Some(plain.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelName;
    use crate::protocol::deflate::{ContextTakeover, WindowBits, inflate_message};
    use crate::protocol::frame::RSV1_BIT;

    fn negotiated(server_max_window_bits: Option<u8>) -> Deflate {
        Deflate::On(Negotiated {
            client_context: ContextTakeover::Reset,
            server_max_window_bits: server_max_window_bits.and_then(WindowBits::new),
        })
    }

    fn publication(payload: &[u8]) -> Publication {
        Publication::new(
            ChannelName::new("a").unwrap(),
            Bytes::copy_from_slice(payload),
        )
    }

    fn json(bytes: usize) -> Vec<u8> {
        let unit = br#"{"event":"trade","price":101.25,"qty":3},"#;
        unit.iter().copied().cycle().take(bytes).collect()
    }

    #[test]
    fn compressed_once_and_shared_plain_for_the_others() {
        let mut compressor = ShardCompressor::new(CompressionLevel::FASTEST, 256);
        let message = json(1024);
        let publication = publication(&message);
        let mut cache = FrameCache::default();
        let on = negotiated(None);
        let first = cache
            .get(WireFormat::Raw, on, &publication, Some(&mut compressor))
            .unwrap();
        let second = cache
            .get(WireFormat::Raw, on, &publication, Some(&mut compressor))
            .unwrap();
        let plain = cache
            .get(
                WireFormat::Raw,
                Deflate::Off,
                &publication,
                Some(&mut compressor),
            )
            .unwrap();
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "one compressed frame, shared"
        );
        assert_eq!(first[0], 0x81 | RSV1_BIT);
        assert_eq!(plain[0], 0x81, "no RSV1 on the plain frame");
        assert_eq!(cache.tally.messages_compressed, 1);
        assert_eq!(cache.tally.frames, 2);
        let (kind, _) = server_data_frame_message(&plain).unwrap();
        assert_eq!(kind, crate::protocol::message::DataKind::Text);
        let header_bytes = if first[1] & 0x7f == 126 { 4 } else { 2 };
        let payload = &first[header_bytes..];
        assert_eq!(inflate_message(payload, 1 << 20).unwrap(), message);
        assert_eq!(
            cache.tally.saved_bytes,
            2 * (plain.len() - first.len()) as u64
        );
    }

    #[test]
    fn under_the_threshold_or_incompressible_goes_plain() {
        let mut compressor = ShardCompressor::new(CompressionLevel::FASTEST, 256);
        let on = negotiated(None);
        let small = publication(&json(255));
        let mut cache = FrameCache::default();
        let frame = cache
            .get(WireFormat::Raw, on, &small, Some(&mut compressor))
            .unwrap();
        assert_eq!(frame[0], 0x81);
        assert_eq!(cache.tally.messages_compressed, 0);
        assert!(compressor.compressor.is_none(), "not even built");
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..2048)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut noisy = publication(&noise);
        noisy.kind = crate::protocol::message::DataKind::Binary;
        let mut cache = FrameCache::default();
        let frame = cache
            .get(WireFormat::Raw, on, &noisy, Some(&mut compressor))
            .unwrap();
        assert_eq!(frame[0], 0x82);
        assert_eq!(cache.tally.messages_incompressible, 1);
        // With --compression off nothing is tried.
        let mut cache = FrameCache::default();
        let big = publication(&json(4096));
        let frame = cache.get(WireFormat::Raw, on, &big, None).unwrap();
        assert_eq!(frame[0], 0x81);
    }

    #[test]
    fn a_small_server_window_gets_only_messages_that_fit_it() {
        let mut compressor = ShardCompressor::new(CompressionLevel::FASTEST, 64);
        let window_9 = negotiated(Some(9));
        for (size, compressed) in [(512usize, true), (513, false)] {
            let publication = publication(&json(size));
            let mut cache = FrameCache::default();
            let frame = cache
                .get(
                    WireFormat::Raw,
                    window_9,
                    &publication,
                    Some(&mut compressor),
                )
                .unwrap();
            assert_eq!(frame[0] & RSV1_BIT != 0, compressed, "{size}");
        }
    }

    #[test]
    fn replies_are_compressed_for_connections_that_negotiated() {
        let mut compressor = ShardCompressor::new(CompressionLevel::FASTEST, 256);
        let mut tally = DeflateTally::default();
        let message = json(1000);
        let plain = crate::protocol::frame::encode_server_frame(
            crate::protocol::frame::OpCode::Text,
            &message,
        );
        let same = compressor.compress_reply(Deflate::Off, plain.clone(), &mut tally);
        assert_eq!(same, plain);
        let compressed = compressor.compress_reply(negotiated(None), plain.clone(), &mut tally);
        assert_eq!(compressed[0], 0xC1);
        assert!(compressed.len() < plain.len());
        assert_eq!(tally.frames, 1);
    }
}
