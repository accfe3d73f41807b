//! Chooses permessage-deflate's compressor and inflater by measurement (issue 16).
//!
//! Compression: every candidate compresses one whole message with no context kept between
//! messages (ringcast always negotiates `server_no_context_takeover`, so one compressed frame
//! serves every subscriber), producing the RFC 7692 §7.2.1 payload. Candidates: `libdeflater`
//! (one-shot raw deflate; the output ends with a BFINAL block, so §7.2.1's empty stored block
//! is one appended 0x00), `flate2` on its `zlib-rs` backend and `miniz_oxide` (both streaming:
//! `Sync` flush, the trailing 0x00 0x00 0xff 0xff dropped, then a reset). Inflation: the same
//! payloads with 0x00 0x00 0xff 0xff appended (§7.2.2), through a streaming `flate2`/`zlib-rs`
//! inflater, `miniz_oxide`'s, and `libdeflater`'s one-shot decompressor; plus the heap each
//! inflater holds once it has inflated a message (glibc `mallinfo2`), which is what a
//! connection keeping its context pays.
//!
//! It also times ringcast's own `MessageCompressor` (the chosen library behind its API) so the
//! wrapper's cost shows. Every compressed payload is inflated back and compared, so a fast but
//! wrong candidate cannot win. Run: `cargo run --release --example deflate_choice`.
//! Deliberately not a criterion bench: it prints one table for results/deflate-choice/README.md.

use std::hint::black_box;
use std::time::Instant;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZFlush};
use ringcast::protocol::deflate::{
    CompressionLevel, Inflater, MessageCompressor, Negotiated, inflate_message,
};
use ringcast::protocol::message::MessageDecoder;

/// RFC 7692 §7.2.2: the tail a receiver appends before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Message sizes measured: a tiny event, a small one, the 1 KiB, a big snapshot.
const SIZES_BYTES: [usize; 4] = [64, 256, 1024, 16384];
/// Wall time spent timing one (candidate, level, size) cell, per repetition.
const BATCH_MS: u128 = 60;
/// Repetitions of each cell; the fastest is reported (the machine is shared: other work only
/// ever makes a batch slower, so the minimum is the least disturbed estimate).
const REPETITIONS: usize = 5;

/// A JSON push event stream like the ones ringcast fans out (trades on a market channel), cut
/// to `size_bytes`. Deterministic: a xorshift generator seeded with the size.
fn json_payload(size_bytes: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ size_bytes as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = String::from("[");
    // Bounded: each object adds > 100 bytes, so at most size_bytes / 100 + 1 iterations.
    while out.len() < size_bytes {
        let id = next() % 1_000_000;
        let price = 40_000.0 + (next() % 500_000) as f64 / 100.0;
        let amount = (next() % 100_000) as f64 / 10_000.0;
        let side = if next() % 2 == 0 { "buy" } else { "sell" };
        out.push_str(&format!(
            "{{\"channel\":\"trades.BTC-USD\",\"event\":\"trade\",\"data\":{{\"id\":{id},\
             \"price\":\"{price:.2}\",\"amount\":\"{amount:.4}\",\"side\":\"{side}\",\
             \"timestamp\":{}}}}},",
            1_700_000_000_000u64 + next() % 1_000_000
        ));
    }
    out.truncate(size_bytes);
    out.into_bytes()
}

/// One way of compressing a whole message into an RFC 7692 payload.
trait Candidate {
    /// Compresses `message` into `out` (cleared first).
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>);
}

/// `libdeflater`, one shot.
struct Libdeflate(libdeflater::Compressor);

impl Candidate for Libdeflate {
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let bound = self.0.deflate_compress_bound(message.len());
        out.clear();
        out.resize(bound + 1, 0);
        let written = self
            .0
            .deflate_compress(message, out)
            .expect("the bound always fits");
        // §7.2.1 step 2 and 3 after a BFINAL block: an empty stored block is one 0x00 byte
        // plus 0x00 0x00 0xff 0xff, of which the 4 last bytes are removed.
        out[written] = 0x00;
        out.truncate(written + 1);
    }
}

/// `flate2` on `zlib-rs`, streaming with a sync flush and a reset per message.
struct Flate2(Compress);

impl Candidate for Flate2 {
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(message.len() + message.len() / 8 + 64);
        let status = self
            .0
            .compress_vec(message, out, FlushCompress::Sync)
            .expect("valid stream");
        assert_eq!(status, Status::Ok);
        assert!(out.ends_with(&TAIL), "sync flush ends with an empty block");
        out.truncate(out.len() - TAIL.len());
        self.0.reset();
    }
}

/// `miniz_oxide`, streaming with a sync flush and a reset per message.
struct Miniz(Box<CompressorOxide>);

impl Candidate for Miniz {
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.resize(message.len() + message.len() / 8 + 64, 0);
        let result =
            miniz_oxide::deflate::stream::deflate(&mut self.0, message, out, MZFlush::Sync);
        assert!(result.status.is_ok());
        assert_eq!(result.bytes_consumed, message.len());
        out.truncate(result.bytes_written);
        assert!(out.ends_with(&TAIL), "sync flush ends with an empty block");
        out.truncate(out.len() - TAIL.len());
        self.0.reset();
    }
}

/// ringcast's own compressor, the API the server calls.
struct Ringcast(MessageCompressor);

impl Candidate for Ringcast {
    fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        out.clear();
        if let Some(payload) = self.0.compress_message(message) {
            out.extend_from_slice(&payload);
        }
    }
}

fn candidates(level: u8) -> Vec<(&'static str, Box<dyn Candidate>)> {
    let mut miniz = Box::<CompressorOxide>::default();
    miniz.set_format_and_level(DataFormat::Raw, level);
    vec![
        (
            "libdeflater",
            Box::new(Libdeflate(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(i32::from(level)).expect("level 1..=12"),
            ))),
        ),
        (
            "flate2/zlib-rs",
            Box::new(Flate2(Compress::new(
                Compression::new(u32::from(level)),
                false,
            ))),
        ),
        ("miniz_oxide", Box::new(Miniz(miniz))),
        (
            "ringcast (libdeflater)",
            Box::new(Ringcast(MessageCompressor::new(
                CompressionLevel::new(level).expect("levels 1 and 6 exist"),
            ))),
        ),
    ]
}

/// Inflates an RFC 7692 payload with a fresh `flate2` inflater (the reference for checks).
fn inflate_reference(payload: &[u8], expected_len: usize) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut inflater = Decompress::new(false);
    let mut out = Vec::with_capacity(expected_len + 64);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid payload");
    out
}

/// Nanoseconds per call of `work` in the fastest of `REPETITIONS` batches of about `BATCH_MS`.
fn time_ns(mut work: impl FnMut()) -> f64 {
    let mut batches_ns = Vec::with_capacity(REPETITIONS);
    // Bounded: REPETITIONS batches, each stopping after BATCH_MS.
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed().as_millis() < BATCH_MS {
            for _ in 0..16 {
                work();
            }
            calls += 16;
        }
        batches_ns.push(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    batches_ns.into_iter().fold(f64::INFINITY, f64::min)
}

fn compression_table() {
    println!("## Compression (one message, no context kept)\n");
    println!("| library | level | message bytes | compressed bytes | ratio | ns/message | MB/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for level in [1u8, 6] {
        for size_bytes in SIZES_BYTES {
            let message = json_payload(size_bytes);
            for (name, mut candidate) in candidates(level) {
                let mut out = Vec::new();
                candidate.compress(&message, &mut out);
                assert_eq!(inflate_reference(&out, size_bytes), message, "{name}");
                let compressed_bytes = out.len();
                let ns = time_ns(|| candidate.compress(black_box(&message), &mut out));
                println!(
                    "| {name} | {level} | {size_bytes} | {compressed_bytes} | {:.2} | {ns:.0} | {:.0} |",
                    size_bytes as f64 / compressed_bytes as f64,
                    size_bytes as f64 / ns * 1000.0,
                );
            }
        }
    }
}

/// Heap bytes in use according to glibc.
fn heap_bytes() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2().uordblks }
}

fn inflate_table() {
    println!("\n## Inflation (payloads compressed by libdeflater level 6)\n");
    println!(
        "| inflater | message bytes | ns/message (reset, reused) | ns/message (created per message) |"
    );
    println!("| --- | --- | --- | --- |");
    for size_bytes in SIZES_BYTES {
        let message = json_payload(size_bytes);
        let mut payload = Vec::new();
        Libdeflate(libdeflater::Compressor::new(
            libdeflater::CompressionLvl::default(),
        ))
        .compress(&message, &mut payload);
        let ringcast_payload = payload.clone();
        payload.extend_from_slice(&TAIL);
        let mut out = vec![0u8; size_bytes + 64];

        let mut flate = Decompress::new(false);
        let flate_once = |inflater: &mut Decompress, out: &mut [u8]| {
            inflater.reset(false);
            inflater
                .decompress(&payload, out, FlushDecompress::Sync)
                .expect("valid");
            assert_eq!(inflater.total_out() as usize, size_bytes);
        };
        let reused = time_ns(|| flate_once(&mut flate, &mut out));
        let created = time_ns(|| flate_once(&mut Decompress::new(false), &mut out));
        println!("| flate2/zlib-rs | {size_bytes} | {reused:.0} | {created:.0} |");

        let mut miniz = InflateState::new_boxed(DataFormat::Raw);
        let miniz_once = |state: &mut InflateState, out: &mut [u8]| {
            state.reset(DataFormat::Raw);
            let result = miniz_oxide::inflate::stream::inflate(state, &payload, out, MZFlush::Sync);
            assert_eq!(result.bytes_written, size_bytes);
        };
        let reused = time_ns(|| miniz_once(&mut miniz, &mut out));
        let created =
            time_ns(|| miniz_once(&mut InflateState::new_boxed(DataFormat::Raw), &mut out));
        println!("| miniz_oxide | {size_bytes} | {reused:.0} | {created:.0} |");

        // One shot: needs the whole message and an output buffer as big as the result (a
        // zip bomb's output must be allocated up to the limit before the answer is known).
        let mut decompressor = libdeflater::Decompressor::new();
        let exact = &mut out[..size_bytes];
        let reused = time_ns(|| {
            let written = decompressor.deflate_decompress(&payload, exact);
            assert_eq!(written, Ok(size_bytes));
        });
        println!("| libdeflater (one shot) | {size_bytes} | {reused:.0} | - |");

        // ringcast's path: a fresh Inflater per message (client context reset), bounded output.
        let created = time_ns(|| {
            let inflated = inflate_message(black_box(&ringcast_payload), 1 << 20).expect("valid");
            assert_eq!(inflated.len(), size_bytes);
        });
        println!("| ringcast inflate_message (flate2/zlib-rs) | {size_bytes} | - | {created:.0} |");
    }
}

fn memory_table() {
    println!("\n## Memory\n");
    let message = json_payload(16384);
    let mut payload = Vec::new();
    Libdeflate(libdeflater::Compressor::new(
        libdeflater::CompressionLvl::default(),
    ))
    .compress(&message, &mut payload);
    let mut with_tail = payload.clone();
    with_tail.extend_from_slice(&TAIL);
    let mut out = vec![0u8; 16384 + 64];
    let before = heap_bytes();
    let mut flate = Decompress::new(false);
    flate
        .decompress(&with_tail, &mut out, FlushDecompress::Sync)
        .expect("valid");
    println!(
        "- flate2/zlib-rs inflater after a 16 KiB message, window 15: {} bytes",
        heap_bytes() - before
    );
    drop(flate);
    let small = json_payload(512);
    let mut small_payload = Vec::new();
    Libdeflate(libdeflater::Compressor::new(
        libdeflater::CompressionLvl::default(),
    ))
    .compress(&small, &mut small_payload);
    small_payload.extend_from_slice(&TAIL);
    let before = heap_bytes();
    let mut flate = Decompress::new_with_window_bits(false, 9);
    flate
        .decompress(&small_payload, &mut out, FlushDecompress::Sync)
        .expect("valid");
    println!(
        "- flate2/zlib-rs inflater after a 512 B message, window 9: {} bytes",
        heap_bytes() - before
    );
    drop(flate);
    let before = heap_bytes();
    let mut inflater = Inflater::new();
    let mut inflated = Vec::new();
    inflater
        .inflate(&payload, &mut inflated, 1 << 20)
        .expect("valid");
    inflater
        .finish_message(&mut inflated, 1 << 20)
        .expect("valid");
    drop(inflated);
    println!(
        "- ringcast Inflater (boxed by the decoder) after a 16 KiB message: {} bytes",
        heap_bytes() - before
    );
    drop(inflater);
    let before = heap_bytes();
    let mut miniz = InflateState::new_boxed(DataFormat::Raw);
    let _ = miniz_oxide::inflate::stream::inflate(&mut miniz, &with_tail, &mut out, MZFlush::Sync);
    println!("- miniz_oxide inflater: {} bytes", heap_bytes() - before);
    drop(miniz);
    let before = heap_bytes();
    let decompressor = libdeflater::Decompressor::new();
    println!(
        "- libdeflater decompressor: {} bytes",
        heap_bytes() - before
    );
    drop(decompressor);
    for level in [1, 6] {
        let before = heap_bytes();
        let compressor = MessageCompressor::new(CompressionLevel::new(level).expect("level"));
        println!(
            "- ringcast MessageCompressor (libdeflater) level {level}, one per shard: {} bytes",
            heap_bytes() - before
        );
        drop(compressor);
    }
    println!(
        "- per connection, idle: size_of::<MessageDecoder>() = {} bytes (with or without the \
         extension: same type, no inflater until the first compressed frame), \
         size_of::<Option<Negotiated>>() = {} bytes",
        std::mem::size_of::<MessageDecoder>(),
        std::mem::size_of::<Option<Negotiated>>()
    );
}

fn main() {
    compression_table();
    inflate_table();
    memory_table();
}
