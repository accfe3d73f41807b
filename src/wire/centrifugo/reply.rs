//! Server replies and pushes, written straight into WebSocket text frames.
//!
//! A frame holds one or more replies, one JSON object per line (centrifuge-js `decodeReplies`
//! splits on `\n` and skips empty lines). Replies to commands carry the command's `id`; pushes
//! have none (`{"push":{...}}`); the server ping is `{}` (`client_protocol.md`: "server
//! periodically sends empty commands to clients and expects empty replies from them").
//! Fields at their zero value are left out, as centrifuge's JSON encoder does
//! (`{"id":1,"subscribe":{}}`), in `client.proto` field order.
//!
//! The publication push ([`publication_frame`]) is built once per message and shared by every
//! subscriber: it holds nothing about a connection. Every frame is one allocation: the JSON is
//! written after room for the largest header, the header goes right before it.
//!
//! Deliberately not here: which reply to send (the session and the server decide), sockets.

use bytes::Bytes;

use super::codes::{ClientError, UnsubscribeCode};
use super::data::{InappropriateProtocol, JsonData, write_raw};
use crate::channel::ChannelName;
use crate::history::recovery::{RecoveryOutcome, Synchronized};
use crate::history::{HistoryPage, HistoryPublication};
use crate::protocol::frame::{MAX_SERVER_HEADER_BYTES, OpCode, encode_server_header};

/// `connect` result (client.proto `ConnectResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResult<'a> {
    /// The connection's id (`client`), unique across nodes.
    pub client: &'a str,
    /// The server's version (`version`).
    pub version: &'a str,
    /// Seconds until the client must `refresh` its token (`expires: true`, `ttl`), or `None`.
    pub ttl_s: Option<u32>,
    /// Seconds between server pings (`ping`); 0 sends none.
    pub ping_s: u32,
    /// Whether the server expects a pong to each ping (`pong`).
    pub pong: bool,
    /// Data for the client, raw JSON (`data`), e.g. from the connect token.
    pub data: Option<&'a [u8]>,
}

/// `refresh` result (client.proto `RefreshResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshResult<'a> {
    /// The connection's id.
    pub client: &'a str,
    /// The server's version.
    pub version: &'a str,
    /// Seconds until the next refresh, or `None` when the new token never expires.
    pub ttl_s: Option<u32>,
}

/// `subscribe` result (client.proto `SubscribeResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeResult<'a> {
    /// A channel without history: `{}`.
    Plain,
    /// A channel with history: positioned and recoverable, with the recovery's outcome.
    Positioned(&'a Synchronized),
}

/// Replies and pushes for one connection, batched into one WebSocket frame.
#[derive(Debug)]
pub struct ReplyBatch {
    /// The frame under construction.
    frame: FrameBuf,
    /// Replies written.
    count: usize,
}

impl Default for ReplyBatch {
    fn default() -> ReplyBatch {
        ReplyBatch::new()
    }
}

impl ReplyBatch {
    /// An empty batch.
    pub fn new() -> ReplyBatch {
        ReplyBatch {
            frame: FrameBuf::with_capacity(128),
            count: 0,
        }
    }

    /// Replies written so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of JSON written so far (to flush early under a per-frame budget).
    pub fn len_bytes(&self) -> usize {
        self.frame.body_len()
    }

    /// The frame, or `None` when nothing was written.
    pub fn finish(self) -> Option<Bytes> {
        (self.count > 0).then(|| self.frame.finish())
    }

    /// `{"id":N,"error":{"code":..,"message":..}}` (plus `"temporary":true` when it is).
    pub fn error(&mut self, id: u32, error: ClientError) {
        let out = self.line();
        out.extend_from_slice(b"{\"id\":");
        push_u64(out, u64::from(id));
        out.extend_from_slice(b",\"error\":{\"code\":");
        push_u64(out, u64::from(error.code()));
        out.extend_from_slice(b",\"message\":");
        push_str(out, error.message());
        if error.temporary() {
            out.extend_from_slice(b",\"temporary\":true");
        }
        out.extend_from_slice(b"}}");
    }

    /// The reply to `connect`.
    pub fn connect(&mut self, id: u32, result: &ConnectResult<'_>) {
        let out = self.reply(id, "connect");
        let mut fields = Fields::new(out);
        fields.str("client", result.client);
        fields.str("version", result.version);
        if let Some(ttl_s) = result.ttl_s {
            fields.bool("expires", true);
            fields.u64("ttl", u64::from(ttl_s));
        }
        if let Some(data) = result.data {
            fields.raw("data", data);
        }
        fields.u64("ping", u64::from(result.ping_s));
        fields.bool("pong", result.pong);
        fields.close();
        self.end_reply();
    }

    /// The reply to `refresh`.
    pub fn refresh(&mut self, id: u32, result: &RefreshResult<'_>) {
        let out = self.reply(id, "refresh");
        let mut fields = Fields::new(out);
        fields.str("client", result.client);
        fields.str("version", result.version);
        if let Some(ttl_s) = result.ttl_s {
            fields.bool("expires", true);
            fields.u64("ttl", u64::from(ttl_s));
        }
        fields.close();
        self.end_reply();
    }

    /// The reply to `sub_refresh`.
    pub fn sub_refresh(&mut self, id: u32, ttl_s: Option<u32>) {
        let out = self.reply(id, "sub_refresh");
        let mut fields = Fields::new(out);
        if let Some(ttl_s) = ttl_s {
            fields.bool("expires", true);
            fields.u64("ttl", u64::from(ttl_s));
        }
        fields.close();
        self.end_reply();
    }

    /// The reply to `subscribe`. Fails (writing nothing) when a recovered payload is binary.
    pub fn subscribe(
        &mut self,
        id: u32,
        result: SubscribeResult<'_>,
    ) -> Result<(), InappropriateProtocol> {
        let mark = self.frame.body_len();
        let out = self.reply(id, "subscribe");
        let mut fields = Fields::new(out);
        if let SubscribeResult::Positioned(sync) = result {
            fields.bool("recoverable", true);
            fields.str("epoch", sync.reply_position.epoch.as_str());
            if !sync.reply_publications.is_empty()
                && let Err(error) = fields.publications("publications", &sync.reply_publications)
            {
                self.frame.truncate_body(mark);
                return Err(error);
            }
            fields.bool("recovered", sync.outcome == RecoveryOutcome::Recovered);
            fields.u64("offset", sync.reply_position.offset);
            fields.bool("positioned", true);
            fields.bool(
                "was_recovering",
                sync.outcome != RecoveryOutcome::NotRequested,
            );
        }
        fields.close();
        self.end_reply();
        Ok(())
    }

    /// The reply to `history`. Fails (writing nothing) when a payload is binary.
    pub fn history(&mut self, id: u32, page: &HistoryPage) -> Result<(), InappropriateProtocol> {
        let mark = self.frame.body_len();
        let out = self.reply(id, "history");
        let mut fields = Fields::new(out);
        if !page.publications.is_empty()
            && let Err(error) = fields.publications("publications", &page.publications)
        {
            self.frame.truncate_body(mark);
            return Err(error);
        }
        fields.str("epoch", page.position.epoch.as_str());
        fields.u64("offset", page.position.offset);
        fields.close();
        self.end_reply();
        Ok(())
    }

    /// An empty result: `{"id":N,"<method>":{}}` (`unsubscribe`, `publish`).
    pub fn empty(&mut self, id: u32, method: EmptyResult) {
        let out = self.reply(id, method.field());
        out.push(b'}');
        self.end_reply();
    }

    /// The server ping `{}`.
    pub fn ping(&mut self) {
        self.line().extend_from_slice(b"{}");
    }

    /// `{"push":{"channel":"ch","unsubscribe":{"code":2500,"reason":"insufficient state"}}}`.
    pub fn unsubscribe_push(&mut self, channel: &ChannelName, code: UnsubscribeCode) {
        let out = self.line();
        out.extend_from_slice(b"{\"push\":{\"channel\":");
        push_str(out, channel.as_str());
        out.extend_from_slice(b",\"unsubscribe\":{\"code\":");
        push_u64(out, u64::from(code.code()));
        out.extend_from_slice(b",\"reason\":");
        push_str(out, code.reason());
        out.extend_from_slice(b"}}}");
    }

    /// A publication push for this connection only (what [`Synchronized::then_push`] holds).
    /// Fails (writing nothing) when the payload is binary.
    pub fn publication_push(
        &mut self,
        channel: &ChannelName,
        publication: &HistoryPublication,
    ) -> Result<(), InappropriateProtocol> {
        let data = JsonData::classify(&publication.payload)?;
        let out = self.line();
        write_publication_push(out, channel, data, Some(publication.offset));
        Ok(())
    }

    /// Starts a line (the separator before every reply but the first).
    fn line(&mut self) -> &mut Vec<u8> {
        self.count += 1;
        let out = self.frame.body();
        if self.count > 1 {
            out.push(b'\n');
        }
        out
    }

    /// Starts `{"id":N,"<field>":{` .
    fn reply(&mut self, id: u32, field: &str) -> &mut Vec<u8> {
        let out = self.line();
        out.extend_from_slice(b"{\"id\":");
        push_u64(out, u64::from(id));
        out.extend_from_slice(b",\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":{");
        out
    }

    /// Closes what [`ReplyBatch::reply`] opened (after the result's own `}`).
    fn end_reply(&mut self) {
        self.frame.body().push(b'}');
    }
}

/// The commands whose result is `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyResult {
    /// `unsubscribe`.
    Unsubscribe,
    /// `publish`.
    Publish,
}

impl EmptyResult {
    fn field(self) -> &'static str {
        match self {
            EmptyResult::Unsubscribe => "unsubscribe",
            EmptyResult::Publish => "publish",
        }
    }
}

/// The publication push every subscriber of `channel` receives, as one WebSocket text frame:
/// `{"push":{"channel":"ch","pub":{"data":...,"offset":N}}}`. Built once per message; no field
/// depends on the connection. `offset` is left out for channels without history.
pub fn publication_frame(
    channel: &ChannelName,
    payload: &[u8],
    offset: Option<u64>,
) -> Result<Bytes, InappropriateProtocol> {
    let data = JsonData::classify(payload)?;
    let mut frame = FrameBuf::with_capacity(48 + channel.as_str().len() + data.len_hint());
    write_publication_push(frame.body(), channel, data, offset);
    Ok(frame.finish())
}

fn write_publication_push(
    out: &mut Vec<u8>,
    channel: &ChannelName,
    data: JsonData<'_>,
    offset: Option<u64>,
) {
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    push_str(out, channel.as_str());
    out.extend_from_slice(b",\"pub\":");
    write_publication(out, data, offset);
    out.extend_from_slice(b"}}");
}

/// `{"data":...,"offset":N}` (client.proto `Publication`: data = 4, offset = 6).
fn write_publication(out: &mut Vec<u8>, data: JsonData<'_>, offset: Option<u64>) {
    out.extend_from_slice(b"{\"data\":");
    data.write(out);
    if let Some(offset) = offset.filter(|&offset| offset > 0) {
        out.extend_from_slice(b",\"offset\":");
        push_u64(out, offset);
    }
    out.push(b'}');
}

/// The fields of one JSON object, comma-separated, zero values left out.
struct Fields<'a> {
    /// Where they go (after the object's `{`).
    out: &'a mut Vec<u8>,
    /// Whether a field was written (a comma goes before the next).
    any: bool,
}

impl<'a> Fields<'a> {
    fn new(out: &'a mut Vec<u8>) -> Fields<'a> {
        Fields { out, any: false }
    }

    fn key(&mut self, key: &str) {
        if self.any {
            self.out.push(b',');
        }
        self.any = true;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.key(key);
            push_str(self.out, value);
        }
    }

    fn u64(&mut self, key: &str, value: u64) {
        if value != 0 {
            self.key(key);
            push_u64(self.out, value);
        }
    }

    fn bool(&mut self, key: &str, value: bool) {
        if value {
            self.key(key);
            self.out.extend_from_slice(b"true");
        }
    }

    fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        write_raw(self.out, json);
    }

    fn publications(
        &mut self,
        key: &str,
        publications: &[HistoryPublication],
    ) -> Result<(), InappropriateProtocol> {
        self.key(key);
        self.out.push(b'[');
        // Bounded: by the publications given (a recovery's or a page's limit).
        for (index, publication) in publications.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            let data = JsonData::classify(&publication.payload)?;
            write_publication(self.out, data, Some(publication.offset));
        }
        self.out.push(b']');
        Ok(())
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn push_str(out: &mut Vec<u8>, text: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    // Bounded: at most 20 decimal digits in a u64.
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// A text frame under construction: room for the largest header, then the JSON.
#[derive(Debug)]
struct FrameBuf {
    /// `MAX_SERVER_HEADER_BYTES` reserved bytes, then the body.
    buf: Vec<u8>,
}

impl FrameBuf {
    fn with_capacity(body_bytes: usize) -> FrameBuf {
        let mut buf = Vec::with_capacity(MAX_SERVER_HEADER_BYTES + body_bytes);
        buf.resize(MAX_SERVER_HEADER_BYTES, 0);
        FrameBuf { buf }
    }

    fn body(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn body_len(&self) -> usize {
        self.buf.len() - MAX_SERVER_HEADER_BYTES
    }

    fn truncate_body(&mut self, body_len: usize) {
        self.buf.truncate(MAX_SERVER_HEADER_BYTES + body_len);
    }

    /// The frame: header written right before the body, one allocation, no copy.
    fn finish(mut self) -> Bytes {
        let mut header = [0u8; MAX_SERVER_HEADER_BYTES];
        let header_len = encode_server_header(OpCode::Text, self.body_len(), &mut header);
        let start = MAX_SERVER_HEADER_BYTES - header_len;
        self.buf[start..MAX_SERVER_HEADER_BYTES].copy_from_slice(&header[..header_len]);
        Bytes::from(self.buf).slice(start..)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::history::recovery::RecoveryOutcome;
    use crate::history::{Epoch, StreamPosition, UnrecoverableReason};

    /// The JSON lines of a frame, checking the WebSocket header on the way (FIN + text, the
    /// shortest length encoding, the length right).
    fn lines(frame: &[u8]) -> Vec<String> {
        assert_eq!(frame[0], 0x81);
        let (length, header) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            short => (short as usize, 2),
        };
        assert_eq!(frame.len(), header + length);
        let text = std::str::from_utf8(&frame[header..]).unwrap();
        // As centrifuge-js decodeReplies: split on newlines, skip empty ones.
        text.split('\n')
            .filter(|line| !line.trim().is_empty())
            .map(String::from)
            .collect()
    }

    fn single(batch: ReplyBatch) -> String {
        let frame = batch.finish().unwrap();
        let mut lines = lines(&frame);
        assert_eq!(lines.len(), 1);
        lines.remove(0)
    }

    fn at(offset: u64) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: Epoch::new("e1"),
        }
    }

    fn publication(offset: u64, payload: &'static [u8]) -> HistoryPublication {
        HistoryPublication {
            offset,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn errors_as_the_docs_show_them() {
        let mut batch = ReplyBatch::new();
        batch.error(1, ClientError::Internal);
        assert_eq!(
            single(batch),
            r#"{"id":1,"error":{"code":100,"message":"internal server error","temporary":true}}"#
        );
        let mut batch = ReplyBatch::new();
        batch.error(7, ClientError::UnrecoverablePosition);
        assert_eq!(
            single(batch),
            r#"{"id":7,"error":{"code":112,"message":"unrecoverable position"}}"#
        );
    }

    #[test]
    fn connect_result() {
        let mut batch = ReplyBatch::new();
        batch.connect(
            1,
            &ConnectResult {
                client: "7f5ba5a8",
                version: "0.1.0",
                ttl_s: None,
                ping_s: 25,
                pong: true,
                data: None,
            },
        );
        assert_eq!(
            single(batch),
            r#"{"id":1,"connect":{"client":"7f5ba5a8","version":"0.1.0","ping":25,"pong":true}}"#
        );
        let mut batch = ReplyBatch::new();
        batch.connect(
            2,
            &ConnectResult {
                client: "c",
                version: "",
                ttl_s: Some(3600),
                ping_s: 0,
                pong: false,
                data: Some(br#"{"hello":"x"}"#),
            },
        );
        assert_eq!(
            single(batch),
            r#"{"id":2,"connect":{"client":"c","expires":true,"ttl":3600,"data":{"hello":"x"}}}"#
        );
    }

    #[test]
    fn refresh_results() {
        let mut batch = ReplyBatch::new();
        batch.refresh(
            3,
            &RefreshResult {
                client: "c",
                version: "1",
                ttl_s: Some(60),
            },
        );
        batch.sub_refresh(4, Some(30));
        batch.sub_refresh(5, None);
        let frame = batch.finish().unwrap();
        assert_eq!(
            lines(&frame),
            [
                r#"{"id":3,"refresh":{"client":"c","version":"1","expires":true,"ttl":60}}"#,
                r#"{"id":4,"sub_refresh":{"expires":true,"ttl":30}}"#,
                r#"{"id":5,"sub_refresh":{}}"#,
            ]
        );
    }

    #[test]
    fn subscribe_results() {
        let mut batch = ReplyBatch::new();
        batch.subscribe(2, SubscribeResult::Plain).unwrap();
        assert_eq!(single(batch), r#"{"id":2,"subscribe":{}}"#);

        let recovered = Synchronized {
            outcome: RecoveryOutcome::Recovered,
            reply_position: at(3),
            reply_publications: vec![publication(4, br#"{"a":1}"#), publication(5, b"text")],
            then_push: Vec::new(),
            cursor: at(5),
        };
        let mut batch = ReplyBatch::new();
        batch
            .subscribe(3, SubscribeResult::Positioned(&recovered))
            .unwrap();
        assert_eq!(
            single(batch),
            concat!(
                r#"{"id":3,"subscribe":{"recoverable":true,"epoch":"e1","publications":"#,
                r#"[{"data":{"a":1},"offset":4},{"data":"text","offset":5}],"#,
                r#""recovered":true,"offset":3,"positioned":true,"was_recovering":true}}"#
            )
        );

        let lost = Synchronized {
            outcome: RecoveryOutcome::NotRecovered(UnrecoverableReason::Trimmed),
            reply_position: at(9),
            reply_publications: Vec::new(),
            then_push: Vec::new(),
            cursor: at(9),
        };
        let mut batch = ReplyBatch::new();
        batch
            .subscribe(4, SubscribeResult::Positioned(&lost))
            .unwrap();
        assert_eq!(
            single(batch),
            r#"{"id":4,"subscribe":{"recoverable":true,"epoch":"e1","offset":9,"positioned":true,"was_recovering":true}}"#
        );

        let fresh = Synchronized {
            outcome: RecoveryOutcome::NotRequested,
            reply_position: at(0),
            ..lost
        };
        let mut batch = ReplyBatch::new();
        batch
            .subscribe(5, SubscribeResult::Positioned(&fresh))
            .unwrap();
        assert_eq!(
            single(batch),
            r#"{"id":5,"subscribe":{"recoverable":true,"epoch":"e1","positioned":true}}"#
        );
    }

    #[test]
    fn a_binary_publication_leaves_the_batch_unchanged() {
        let binary = Synchronized {
            outcome: RecoveryOutcome::Recovered,
            reply_position: at(0),
            reply_publications: vec![publication(1, b"ok"), publication(2, b"\xff")],
            then_push: Vec::new(),
            cursor: at(2),
        };
        let mut batch = ReplyBatch::new();
        batch.ping();
        assert_eq!(
            batch.subscribe(1, SubscribeResult::Positioned(&binary)),
            Err(InappropriateProtocol)
        );
        let page = HistoryPage {
            publications: vec![publication(2, b"\xff")],
            position: at(2),
        };
        assert_eq!(batch.history(2, &page), Err(InappropriateProtocol));
        let channel = ChannelName::new("a").unwrap();
        assert_eq!(
            batch.publication_push(&channel, &publication(2, b"\xff")),
            Err(InappropriateProtocol)
        );
        assert_eq!(single(batch), "{}");
    }

    #[test]
    fn history_results() {
        let page = HistoryPage {
            publications: vec![publication(2, b"2"), publication(1, b"1")],
            position: at(2),
        };
        let mut batch = ReplyBatch::new();
        batch.history(6, &page).unwrap();
        assert_eq!(
            single(batch),
            r#"{"id":6,"history":{"publications":[{"data":2,"offset":2},{"data":1,"offset":1}],"epoch":"e1","offset":2}}"#
        );
        let mut batch = ReplyBatch::new();
        batch
            .history(
                7,
                &HistoryPage {
                    publications: Vec::new(),
                    position: at(0),
                },
            )
            .unwrap();
        assert_eq!(single(batch), r#"{"id":7,"history":{"epoch":"e1"}}"#);
    }

    #[test]
    fn empty_results_pings_and_pushes_batch_into_one_frame() {
        let channel = ChannelName::new("news").unwrap();
        let mut batch = ReplyBatch::new();
        assert!(batch.is_empty());
        batch.empty(8, EmptyResult::Unsubscribe);
        batch.empty(9, EmptyResult::Publish);
        batch.ping();
        batch.unsubscribe_push(&channel, UnsubscribeCode::Insufficient);
        batch
            .publication_push(&channel, &publication(10, b"hi"))
            .unwrap();
        assert_eq!(batch.len(), 5);
        assert!(batch.len_bytes() > 100);
        let frame = batch.finish().unwrap();
        assert_eq!(
            lines(&frame),
            [
                r#"{"id":8,"unsubscribe":{}}"#,
                r#"{"id":9,"publish":{}}"#,
                "{}",
                r#"{"push":{"channel":"news","unsubscribe":{"code":2500,"reason":"insufficient state"}}}"#,
                r#"{"push":{"channel":"news","pub":{"data":"hi","offset":10}}}"#,
            ]
        );
        assert_eq!(ReplyBatch::default().finish(), None);
    }

    #[test]
    fn the_publication_push_as_centrifuge_sends_it() {
        let channel = ChannelName::new("news").unwrap();
        let frame = publication_frame(&channel, br#"{"input":"hello"}"#, Some(7)).unwrap();
        assert_eq!(
            &frame[..],
            &b"\x81\x47{\"push\":{\"channel\":\"news\",\"pub\":{\"data\":{\"input\":\"hello\"},\"offset\":7}}}"[..]
        );
        let frame = publication_frame(&channel, b"plain", None).unwrap();
        assert_eq!(
            lines(&frame),
            [r#"{"push":{"channel":"news","pub":{"data":"plain"}}}"#]
        );
        assert_eq!(
            publication_frame(&channel, &[0xc3, 0x28], Some(1)),
            Err(InappropriateProtocol)
        );
        let big = vec![b'7'; 70_000];
        let frame = publication_frame(&channel, &big, Some(1)).unwrap();
        assert_eq!(frame[1], 127);
        assert_eq!(lines(&frame).len(), 1);
    }

    proptest! {
        /// Whatever the payload and offset, the push is one line of JSON a client reads back to
        /// the same data and offset.
        #[test]
        fn publication_pushes_read_back(
            payload in prop_oneof![
                ".*".prop_map(String::into_bytes),
                any::<i64>().prop_map(|n| n.to_string().into_bytes()),
                "[a-z]{0,10}".prop_map(|s| serde_json::to_vec(&json!({"k": s, "n": [1, 2]})).unwrap()),
            ],
            offset in proptest::option::of(1u64..),
        ) {
            let channel = ChannelName::new("c").unwrap();
            let frame = publication_frame(&channel, &payload, offset).unwrap();
            let lines = lines(&frame);
            prop_assert_eq!(lines.len(), 1);
            let reply: Value = serde_json::from_str(&lines[0]).unwrap();
            let expected = serde_json::from_slice::<Value>(&payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8(payload.clone()).unwrap()));
            prop_assert_eq!(&reply["push"]["pub"]["data"], &expected);
            prop_assert_eq!(reply["push"]["pub"]["offset"].as_u64(), offset);
            prop_assert_eq!(&reply["push"]["channel"], "c");
        }
    }
}
