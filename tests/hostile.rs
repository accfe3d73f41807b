//! Hostile input: each attack gets its exact answer (an HTTP status or a close code) and ends
//! only the attacker's connection. Every server here runs one shard (`--shards 1`), so the
//! watchers, tungstenite clients subscribed to a channel, share the attacker's shard; they must
//! receive every broadcast published during and after each attack.
//!
//! The resource attacks (connection cap, stalled readers, reply floods, abandoned handshakes)
//! also read the server's own numbers from `/proc/<pid>`: CPU time, resident memory and open
//! descriptors, and print them (`--nocapture` shows them).
//! Every loop here is bounded in count and every wait in time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    Frame, PATIENCE, Server, assert_closed, masked_frame, read_frame, read_http_head,
    read_until_close, unmasked_frame, upgrade_request,
};
use tungstenite::{Message, WebSocket};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Watchers: the clients that share the attacker's shard.
// ---------------------------------------------------------------------------------------------

/// What a watcher's reader thread reports: a data message's payload, or why it stopped.
type Delivery = Result<Vec<u8>, String>;

/// Clients subscribed to one channel, each read by its own thread (which also answers the
/// server's pings, so short idle timeouts do not close them). Stopped and joined on drop.
struct Watchers {
    /// The channel they watch.
    channel: String,
    /// One inbox per watcher, fed by its thread.
    inboxes: Vec<Receiver<Delivery>>,
    /// Tells the threads to stop (checked between reads of at most 100 ms).
    stop: Arc<AtomicBool>,
    /// The reader threads.
    threads: Vec<JoinHandle<()>>,
    /// Broadcasts published so far (numbers the next one).
    published: usize,
}

impl Watchers {
    /// Subscribes `count` clients to `channel`.
    fn subscribe(server: &Server, channel: &str, count: usize) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut inboxes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for _ in 0..count {
            let socket = server.websocket(&format!("/ws/{channel}"));
            let (sender, inbox) = mpsc::channel();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || watch(socket, &stop, &sender)));
            inboxes.push(inbox);
        }
        Watchers {
            channel: channel.to_string(),
            inboxes,
            stop,
            threads,
            published: 0,
        }
    }

    /// Publishes a fresh message to the channel and asserts that every watcher receives it as
    /// its next message, within PATIENCE.
    fn assert_receive_broadcast(&mut self, server: &Server, moment: &str) {
        self.published += 1;
        let text = format!("{} #{} ({moment})", self.channel, self.published);
        server.publish(&self.channel, text.as_bytes());
        for (index, inbox) in self.inboxes.iter().enumerate() {
            match inbox.recv_timeout(PATIENCE) {
                Ok(Ok(payload)) => assert_eq!(
                    String::from_utf8_lossy(&payload),
                    text,
                    "watcher {index}, {moment}"
                ),
                Ok(Err(why)) => panic!("watcher {index} stopped ({why}), {moment}"),
                Err(_) => panic!("watcher {index} got nothing within {PATIENCE:?}, {moment}"),
            }
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A watcher's reader loop: forwards data messages until told to stop or the socket ends.
fn watch(mut socket: WebSocket<TcpStream>, stop: &AtomicBool, inbox: &Sender<Delivery>) {
    socket
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Bounded by the stop flag, checked at least every 100 ms.
    while !stop.load(Ordering::Relaxed) {
        let delivery = match socket.read() {
            Ok(Message::Text(text)) => Ok(text.as_bytes().to_vec()),
            Ok(Message::Binary(bytes)) => Ok(bytes.to_vec()),
            // tungstenite queues the pong itself and sends it on the next read.
            Ok(_) => continue,
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(error) => Err(error.to_string()),
        };
        let ended = delivery.is_err();
        if inbox.send(delivery).is_err() || ended {
            return;
        }
    }
}

/// The server still does its job: `/healthz` answers 200 and a new subscriber receives a
/// broadcast.
fn assert_still_serving(server: &Server) {
    let (status, body) = server.http("GET", "/healthz", b"");
    assert_eq!(status, 200, "{body}");
    let mut newcomer = server.websocket("/ws/newcomer");
    server.publish("newcomer", b"welcome");
    assert_eq!(newcomer.read().unwrap(), Message::Text("welcome".into()));
}

// ---------------------------------------------------------------------------------------------
// Raw bytes.
// ---------------------------------------------------------------------------------------------

/// Asserts that `response` is exactly one refusal: `status_line`, the `required` header lines,
/// `Connection: close`, and a JSON error body of exactly `Content-Length` bytes (nothing after).
fn assert_refusal(response: &str, status_line: &str, required: &[&str]) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {response:?}"));
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some(status_line), "{response}");
    let headers: Vec<&str> = lines.collect();
    for line in required.iter().chain(&["Connection: close"]) {
        assert!(headers.contains(line), "{line:?} missing in {response:?}");
    }
    let length: usize = headers
        .iter()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {response:?}"));
    assert_eq!(body.len(), length, "nothing follows the body: {response:?}");
    assert!(body.starts_with("{\"error\":"), "{response:?}");
}

/// Writes, ignoring a refusal that arrived first (the server may answer before all is sent).
fn write_leniently(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Reads until the server closes; returns what arrived (a reset after the reply is fine).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    // Bounded by the deadline and the per-read timeout.
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
        }
    }
    String::from_utf8_lossy(&response).to_string()
}

/// Just the header of a masked frame announcing `length` bytes, without the masking key: the
/// length alone must be enough to refuse it.
fn length_header(first_byte: u8, length: u64) -> Vec<u8> {
    let mut bytes = vec![first_byte];
    if length <= 0xFFFF {
        bytes.push(0x80 | 126);
        bytes.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        bytes.push(0x80 | 127);
        bytes.extend_from_slice(&length.to_be_bytes());
    }
    bytes
}

/// A close frame carrying `code`.
fn close_with_code(code: u16) -> Vec<u8> {
    masked_frame(0x88, &code.to_be_bytes())
}

/// Concatenates frames into one byte string.
fn frames(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// An upgraded connection with a small receive buffer (4 KiB asked, the kernel doubles it), so
/// that a client which stops reading is noticed after little data, not after megabytes of
/// loopback buffering.
fn small_buffered_websocket(server: &Server, path: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.address.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(upgrade_request(path).as_bytes()).unwrap();
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

/// A keep-alive publisher: one connection for many `POST /publish` requests.
struct Publisher {
    reader: BufReader<TcpStream>,
}

impl Publisher {
    fn connect(server: &Server) -> Publisher {
        Publisher {
            reader: BufReader::new(server.raw_api_connect()),
        }
    }

    /// Publishes and asserts 200.
    fn publish(&mut self, channel: &str, payload: &[u8]) {
        let mut request = format!(
            "POST /publish/{channel} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        )
        .into_bytes();
        request.extend_from_slice(payload);
        self.reader.get_mut().write_all(&request).unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
        let mut length = 0;
        // Bounded by the server's header count.
        for _ in 0..32 {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.strip_prefix("Content-Length: ") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The server's own numbers, from /proc.
// ---------------------------------------------------------------------------------------------

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd is readable")
        .count()
}

/// Resident set size of process `pid`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// User plus system CPU time of process `pid` (all its threads).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may contain spaces; the fields after it do not. After the ')' come
    // field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a /proc stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / ticks_per_second)
}

/// Mebibytes, for messages.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

// ---------------------------------------------------------------------------------------------
// Handshake attacks.
// ---------------------------------------------------------------------------------------------

#[test]
fn refused_handshakes_get_their_exact_answer_while_the_shard_keeps_broadcasting() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--max-header-bytes",
        "1KiB",
        "--max-headers",
        "16",
    ]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let valid = upgrade_request("/ws/news");
    let key_line = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let upgrade_required = ["Upgrade: websocket", "Sec-WebSocket-Version: 13"];
    let cases: Vec<(&str, String, &str, &[&str])> = vec![
        (
            "head over --max-header-bytes",
            valid.replace(
                "Host: test",
                &format!("Host: test\r\nX-Big: {}", "a".repeat(2000)),
            ),
            "HTTP/1.1 431 Request Header Fields Too Large",
            &[],
        ),
        (
            "more than --max-headers fields",
            valid.replace(
                "Host: test",
                &(0..20)
                    .map(|i| format!("X-{i}: y"))
                    .collect::<Vec<_>>()
                    .join("\r\n"),
            ),
            "HTTP/1.1 431 Request Header Fields Too Large",
            &[],
        ),
        (
            "POST on /ws/*",
            valid.replace("GET", "POST"),
            "HTTP/1.1 405 Method Not Allowed",
            &["Allow: GET"],
        ),
        (
            "PUT on /echo",
            upgrade_request("/echo").replace("GET", "PUT"),
            "HTTP/1.1 405 Method Not Allowed",
            &["Allow: GET"],
        ),
        (
            "unknown path",
            valid.replace("/ws/news", "/wss/news"),
            "HTTP/1.1 404 Not Found",
            &[],
        ),
        (
            "/ws without a channel",
            valid.replace("/ws/news", "/ws"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "no Sec-WebSocket-Key",
            valid.replace(key_line, ""),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "Sec-WebSocket-Key not base64",
            valid.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!not~base64!!"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "Sec-WebSocket-Key of 15 bytes",
            valid.replace("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAA"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "empty Sec-WebSocket-Key",
            valid.replace("dGhlIHNhbXBsZSBub25jZQ==", ""),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "two Sec-WebSocket-Key headers",
            valid.replace(key_line, &key_line.repeat(2)),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
        (
            "Sec-WebSocket-Version 8",
            valid.replace("Version: 13", "Version: 8"),
            "HTTP/1.1 426 Upgrade Required",
            &upgrade_required,
        ),
        (
            "Sec-WebSocket-Version 14",
            valid.replace("Version: 13", "Version: 14"),
            "HTTP/1.1 426 Upgrade Required",
            &upgrade_required,
        ),
        (
            "no Sec-WebSocket-Version",
            valid.replace("Sec-WebSocket-Version: 13\r\n", ""),
            "HTTP/1.1 426 Upgrade Required",
            &upgrade_required,
        ),
        (
            "NUL in a header value",
            valid.replace("Host: test", "Host: te\0st"),
            "HTTP/1.1 400 Bad Request",
            &[],
        ),
    ];
    for (name, request, status_line, required) in &cases {
        // Half the request, a broadcast while the attacker waits, then the rest.
        let bytes = request.as_bytes();
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        let mut stream = server.raw_connect();
        stream.write_all(first).unwrap();
        watchers.assert_receive_broadcast(&server, &format!("during {name}"));
        write_leniently(&mut stream, rest);
        let response = read_to_close(&mut stream);
        assert_refusal(&response, status_line, required);
    }
    watchers.assert_receive_broadcast(&server, "after every refusal");
    assert!(server.stat().contains("connections 4\n"), "only watchers");
}

#[test]
fn a_head_streamed_slowly_past_the_limit_gets_431() {
    let server = Server::start(&["--shards", "1", "--max-header-bytes", "1KiB"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let mut stream = server.raw_connect();
    stream
        .write_all(b"GET /ws/news HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    // 64-byte header lines every 20 ms, never the blank line: 1 KiB is passed after ~16.
    let line = format!("X-Filler: {}\r\n", "f".repeat(52));
    let mut sent = 0;
    let mut refused_after_bytes = None;
    for round in 0..64 {
        if stream.write_all(line.as_bytes()).is_err() {
            break;
        }
        sent += line.len();
        if round == 8 {
            watchers.assert_receive_broadcast(&server, "while the head streams");
        }
        std::thread::sleep(Duration::from_millis(20));
        // The refusal must come once the limit is passed, not after the handshake timeout.
        stream.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let answered = matches!(stream.peek(&mut peek), Ok(1));
        stream.set_nonblocking(false).unwrap();
        if answered {
            refused_after_bytes = Some(sent);
            break;
        }
    }
    let refused_after_bytes = refused_after_bytes.expect("a 431 while the head was streaming");
    assert!(
        refused_after_bytes <= 1024 + 2 * line.len(),
        "refused {refused_after_bytes} bytes in: soon after the limit"
    );
    let response = read_to_close(&mut stream);
    assert_refusal(
        &response,
        "HTTP/1.1 431 Request Header Fields Too Large",
        &[],
    );
    watchers.assert_receive_broadcast(&server, "after the 431");
}

#[test]
fn a_head_ending_in_lf_cr_lf_is_answered_at_once() {
    let server = Server::start(&["--shards", "1"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    // RFC 9112 §2.2: a recipient MAY take a bare LF as a line end; httparse does. Whichever the
    // server decides (101 or 400), the answer is due at once, not after the handshake timeout.
    let bare_lf = upgrade_request("/echo").replace("\r\n", "\n");
    let lf_cr_lf = format!("{}\r\n", bare_lf.strip_suffix('\n').unwrap());
    for (name, request) in [
        ("LF lines, LF end", bare_lf),
        ("LF lines, CRLF end", lf_cr_lf),
    ] {
        let mut stream = server.raw_connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let head = read_http_head(&mut stream);
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{name}: {head:?}"
        );
        stream
            .write_all(&masked_frame(0x81, name.as_bytes()))
            .unwrap();
        assert_eq!(read_frame(&mut stream).unwrap().payload, name.as_bytes());
        watchers.assert_receive_broadcast(&server, &format!("after {name}"));
    }
}

#[test]
fn slowloris_handshakes_are_closed_after_the_handshake_timeout() {
    let server = Server::start(&["--shards", "1", "--handshake-timeout", "1s"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let request = upgrade_request("/ws/slow");
    let started = Instant::now();
    // Five attackers dribble a valid request one byte every 50 ms (it would take ~7 s).
    let attackers: Vec<(TcpStream, JoinHandle<usize>)> = (0..5)
        .map(|_| {
            let stream = server.raw_connect();
            let mut writer = stream.try_clone().unwrap();
            let bytes = request.clone().into_bytes();
            let dribbler = std::thread::spawn(move || {
                let mut sent = 0;
                for byte in bytes.iter().take(bytes.len() - 1) {
                    if writer.write_all(std::slice::from_ref(byte)).is_err() {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                sent
            });
            (stream, dribbler)
        })
        .collect();
    watchers.assert_receive_broadcast(&server, "while the attackers dribble");
    for (mut stream, dribbler) in attackers {
        let received = read_to_close(&mut stream);
        let closed_after = started.elapsed();
        assert_eq!(received, "", "no answer to an unfinished request");
        assert!(
            closed_after >= Duration::from_millis(900),
            "closed after {closed_after:?}: not before the handshake timeout"
        );
        assert!(
            closed_after < Duration::from_secs(5),
            "closed after {closed_after:?}: soon after the 1 s handshake timeout"
        );
        let sent = dribbler.join().unwrap();
        assert!(
            sent < request.len() - 1,
            "stopped by the close ({sent} bytes)"
        );
    }
    watchers.assert_receive_broadcast(&server, "after the slowloris");
}

// ---------------------------------------------------------------------------------------------
// Frame attacks.
// ---------------------------------------------------------------------------------------------

/// Reads the attacker's reply: it must be one close frame with `code` and a valid UTF-8
/// reason, then the end of the connection.
fn assert_close_reply(stream: &mut TcpStream, code: u16, name: &str) {
    let close: Frame = read_frame(stream).unwrap_or_else(|| panic!("{name}: no close frame"));
    assert_eq!(close.first_byte, 0x88, "{name}: a final close frame first");
    assert_eq!(close.close_code(), Some(code), "{name}");
    assert!(close.payload.len() <= 125, "{name}");
    assert!(std::str::from_utf8(&close.payload[2..]).is_ok(), "{name}");
    assert_closed(stream);
}

#[test]
fn frame_violations_get_their_close_code_while_the_shard_keeps_broadcasting() {
    let server = Server::start(&["--shards", "1", "--max-message-bytes", "1KiB"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let mut cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("unmasked text".into(), unmasked_frame(0x81, b"hi"), 1002),
        (
            "unmasked close".into(),
            unmasked_frame(0x88, &[3, 232]),
            1002,
        ),
        ("RSV1".into(), masked_frame(0xC1, b"hi"), 1002),
        ("RSV2".into(), masked_frame(0xA1, b"hi"), 1002),
        ("RSV3".into(), masked_frame(0x91, b"hi"), 1002),
        ("RSV1 on a ping".into(), masked_frame(0xC9, b""), 1002),
        ("fragmented ping".into(), masked_frame(0x09, b"p"), 1002),
        ("fragmented pong".into(), masked_frame(0x0A, b"p"), 1002),
        (
            "fragmented close".into(),
            masked_frame(0x08, &[3, 232]),
            1002,
        ),
        (
            "ping of 126 bytes".into(),
            masked_frame(0x89, &[0; 126]),
            1002,
        ),
        (
            "close of 126 bytes".into(),
            masked_frame(0x88, &[b'a'; 126]),
            1002,
        ),
        (
            "pong with a 64-bit length".into(),
            masked_frame(0x8A, &[0; 70_000]),
            1002,
        ),
        (
            "continuation without start".into(),
            masked_frame(0x80, b"x"),
            1002,
        ),
        (
            "fragment without start".into(),
            masked_frame(0x00, b"x"),
            1002,
        ),
        (
            "text inside a fragmented message".into(),
            frames(&[masked_frame(0x01, b"a"), masked_frame(0x81, b"b")]),
            1002,
        ),
        (
            "binary inside a fragmented message".into(),
            frames(&[masked_frame(0x02, b"a"), masked_frame(0x02, b"b")]),
            1002,
        ),
        (
            "invalid UTF-8".into(),
            masked_frame(0x81, &[0xce, 0xba, 0xff]),
            1007,
        ),
        (
            "overlong encoding".into(),
            masked_frame(0x81, b"\xc0\xaf"),
            1007,
        ),
        (
            "UTF-16 surrogate".into(),
            masked_frame(0x81, b"\xed\xa0\x80"),
            1007,
        ),
        (
            "code point over U+10FFFF".into(),
            masked_frame(0x81, b"\xf4\x90\x80\x80"),
            1007,
        ),
        (
            "truncated code point".into(),
            masked_frame(0x81, b"ok\xe2\x82"),
            1007,
        ),
        (
            "invalid UTF-8 across fragments".into(),
            frames(&[masked_frame(0x01, b"\xe2\x82"), masked_frame(0x80, b"\x28")]),
            1007,
        ),
        (
            "invalid 4-byte sequence across 3 fragments".into(),
            frames(&[
                masked_frame(0x01, b"\xf0"),
                masked_frame(0x00, b"\x9f\x98"),
                masked_frame(0x80, b"\x28"),
            ]),
            1007,
        ),
        (
            // RFC 6455 §8.1: fail as soon as the bytes are invalid, not at the end.
            "invalid first fragment of an unfinished message".into(),
            masked_frame(0x01, b"ok\xff"),
            1007,
        ),
        (
            "message ending inside a code point".into(),
            frames(&[masked_frame(0x01, b"\xf0\x9f"), masked_frame(0x80, b"")]),
            1007,
        ),
        (
            "1 GiB frame, header only".into(),
            length_header(0x82, 1 << 30),
            1009,
        ),
        (
            "1025-byte frame, header only".into(),
            length_header(0x81, 1025),
            1009,
        ),
        (
            "64-bit length with its top bit set".into(),
            length_header(0x82, 1 << 63),
            1002,
        ),
        (
            "fragments over the limit, second header (with its key) only".into(),
            frames(&[
                masked_frame(0x02, &[0; 1000]),
                length_header(0x80, 200),
                vec![1, 2, 3, 4],
            ]),
            1009,
        ),
        (
            "one-byte close payload".into(),
            masked_frame(0x88, &[3]),
            1002,
        ),
        (
            "close reason not UTF-8".into(),
            masked_frame(0x88, &[0x03, 0xe8, b'o', 0xff]),
            1007,
        ),
    ];
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        cases.push((format!("close code {code}"), close_with_code(code), 1002));
    }
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        cases.push((
            format!("reserved opcode {opcode:#x}"),
            masked_frame(0x80 | opcode, b""),
            1002,
        ));
    }
    for (name, bytes, code) in &cases {
        let mut stream = server.raw_websocket("/ws/victim");
        // The first half, a broadcast while the attacker's frame is unfinished, then the rest.
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        stream.write_all(first).unwrap();
        watchers.assert_receive_broadcast(&server, &format!("during {name}"));
        write_leniently(&mut stream, rest);
        assert_close_reply(&mut stream, *code, name);
    }
    // Junk pipelined behind an upgrade: the 101 first, then the close.
    let mut stream = server.raw_connect();
    let mut bytes = upgrade_request("/ws/victim").into_bytes();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    stream.write_all(&bytes).unwrap();
    let head = read_http_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_close_reply(&mut stream, 1002, "pipelined junk");
    watchers.assert_receive_broadcast(&server, "after every violation");
    assert!(server.stat().contains("connections 4\n"), "only watchers");
}

#[test]
fn valid_fragmented_text_and_valid_close_codes_are_accepted() {
    let server = Server::start(&["--shards", "1"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let mut echo = server.raw_websocket("/echo");
    // "a😀b": the 4-byte code point F0 9F 98 80 split across three fragments.
    echo.write_all(&masked_frame(0x01, b"a\xf0")).unwrap();
    watchers.assert_receive_broadcast(&server, "inside a split code point");
    echo.write_all(&masked_frame(0x00, b"\x9f\x98")).unwrap();
    echo.write_all(&masked_frame(0x89, b"interleaved ping"))
        .unwrap();
    echo.write_all(&masked_frame(0x80, b"\x80b")).unwrap();
    let pong = read_frame(&mut echo).unwrap();
    assert_eq!(
        (pong.first_byte, pong.payload.as_slice()),
        (0x8A, &b"interleaved ping"[..])
    );
    let echoed = read_frame(&mut echo).unwrap();
    assert_eq!(echoed.first_byte, 0x81);
    assert_eq!(String::from_utf8(echoed.payload).unwrap(), "a😀b");
    // Every code point length, each split byte by byte into one-byte fragments.
    let text = "$¢€😀";
    let bytes = text.as_bytes();
    let mut fragments = Vec::new();
    for (index, byte) in bytes.iter().enumerate() {
        let opcode = if index == 0 { 0x01 } else { 0x00 };
        let fin = if index == bytes.len() - 1 { 0x80 } else { 0x00 };
        fragments.push(masked_frame(fin | opcode, std::slice::from_ref(byte)));
    }
    echo.write_all(&fragments.concat()).unwrap();
    let echoed = read_frame(&mut echo).unwrap();
    assert_eq!(String::from_utf8(echoed.payload).unwrap(), text);
    for code in [1000u16, 1001, 1003, 1008, 1011, 3000, 4999] {
        let mut stream = server.raw_websocket("/ws/victim");
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        stream.write_all(&masked_frame(0x88, &payload)).unwrap();
        let close = read_frame(&mut stream).unwrap();
        assert_eq!(close.close_code(), Some(code), "code {code} is echoed");
        assert_closed(&mut stream);
    }
    watchers.assert_receive_broadcast(&server, "after the valid input");
}

#[test]
fn a_client_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let close_timeout = Duration::from_secs(1);
    let server = Server::start(&[
        "--shards",
        "1",
        "--ping-interval",
        "200ms",
        "--idle-timeout",
        "600ms",
        "--close-timeout",
        "1s",
    ]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    // Silent until the idle close arrives, then busy (pings, text) but never a close.
    let mut attacker = server.raw_websocket("/ws/victim");
    assert_eq!(read_until_close(&mut attacker), Some(1001));
    let closed_at = Instant::now();
    let mut writer = attacker.try_clone().unwrap();
    let chatter = std::thread::spawn(move || {
        // Bounded: 200 rounds of 25 ms, or until the server is gone.
        for round in 0..200u32 {
            let bytes = if round % 2 == 0 {
                masked_frame(0x89, b"still here")
            } else {
                masked_frame(0x81, b"hello?")
            };
            if writer.write_all(&bytes).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    watchers.assert_receive_broadcast(&server, "while our close waits for an answer");
    // After our close the server sends no more data, and ends the connection once the close
    // timeout has passed.
    let ended_after = loop {
        match read_frame(&mut attacker) {
            Some(frame) => assert!(
                matches!(frame.opcode(), 0x9 | 0xA),
                "nothing but pings or pongs after our close, got {frame:?}"
            ),
            None => break closed_at.elapsed(),
        }
    };
    assert!(
        ended_after >= close_timeout.mul_f32(0.8),
        "ended after {ended_after:?}: the close timeout is waited for"
    );
    assert!(
        ended_after < close_timeout + Duration::from_secs(4),
        "ended after {ended_after:?}: soon after the close timeout"
    );
    let _ = attacker.shutdown(std::net::Shutdown::Both);
    chatter.join().unwrap();
    watchers.assert_receive_broadcast(&server, "after the unanswered close");
    common::wait_until("the attacker to be gone", || {
        server.stat().contains("connections 4\n")
    });
}

#[test]
fn frames_written_one_byte_at_a_time_still_decode() {
    let server = Server::start(&["--shards", "1"]);
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let mut stream = server.raw_connect(); // TCP_NODELAY: every write is its own segment.
    let write_bytewise = |stream: &mut TcpStream, bytes: &[u8]| {
        for byte in bytes {
            stream.write_all(std::slice::from_ref(byte)).unwrap();
            std::thread::sleep(Duration::from_micros(300));
        }
    };
    let request = upgrade_request("/echo");
    let (first, rest) = request.as_bytes().split_at(40);
    write_bytewise(&mut stream, first);
    watchers.assert_receive_broadcast(&server, "inside a byte-by-byte request");
    write_bytewise(&mut stream, rest);
    let head = read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");

    let text = "byte by byte: h\u{e9}llo \u{2603} \u{1f600}";
    write_bytewise(&mut stream, &masked_frame(0x81, text.as_bytes()));
    let echoed = read_frame(&mut stream).unwrap();
    assert_eq!(
        (echoed.first_byte, echoed.payload),
        (0x81, text.as_bytes().to_vec())
    );

    let binary: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect(); // 16-bit length
    let message = frames(&[
        masked_frame(0x02, &binary[..100]),
        masked_frame(0x89, b"ping inside"),
        masked_frame(0x80, &binary[100..]),
    ]);
    let (first, rest) = message.split_at(message.len() / 2);
    write_bytewise(&mut stream, first);
    watchers.assert_receive_broadcast(&server, "inside a byte-by-byte message");
    write_bytewise(&mut stream, rest);
    let pong = read_frame(&mut stream).unwrap();
    assert_eq!(
        (pong.first_byte, pong.payload),
        (0x8A, b"ping inside".to_vec())
    );
    let echoed = read_frame(&mut stream).unwrap();
    assert_eq!((echoed.first_byte, echoed.payload), (0x82, binary));

    write_bytewise(&mut stream, &close_with_code(1000));
    assert_close_reply(&mut stream, 1000, "byte-by-byte close");
    watchers.assert_receive_broadcast(&server, "after the byte-by-byte session");
}

// ---------------------------------------------------------------------------------------------
// Resource attacks.
// ---------------------------------------------------------------------------------------------

#[test]
fn upgrades_over_the_connection_cap_get_503_without_spinning() {
    let server = Server::start(&["--shards", "1", "--max-connections", "4"]);
    let pid = server.pid();
    // The watchers fill the cap.
    let mut watchers = Watchers::subscribe(&server, "capped", 4);
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let address = server.address;
    // 200 refused upgrades from 4 threads at once; plain HTTP is still answered meanwhile.
    let attackers: Vec<JoinHandle<()>> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut stream = TcpStream::connect(address).unwrap();
                    stream.set_read_timeout(Some(PATIENCE)).unwrap();
                    stream
                        .write_all(upgrade_request("/ws/capped").as_bytes())
                        .unwrap();
                    let response = read_to_close(&mut stream);
                    assert_refusal(
                        &response,
                        "HTTP/1.1 503 Service Unavailable",
                        &["Retry-After: 1"],
                    );
                }
            })
        })
        .collect();
    for round in 0..5 {
        watchers.assert_receive_broadcast(&server, &format!("refusals under way ({round})"));
        let (status, body) = server.http("GET", "/healthz", b"");
        assert_eq!(status, 200, "{body}");
    }
    for attacker in attackers {
        attacker.join().expect("every extra upgrade got its 503");
    }
    let refusal_cpu = cpu_time(pid) - cpu_before;
    let refusal_time = started.elapsed();
    // No spinning afterwards either: an idle second costs (almost) nothing.
    let idle_before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let idle_cpu = cpu_time(pid) - idle_before;
    eprintln!(
        "connection cap: 200 refusals took {refusal_time:?} and {refusal_cpu:?} of server CPU; \
         then 1 s idle used {idle_cpu:?}"
    );
    assert!(
        refusal_cpu < Duration::from_secs(2),
        "server CPU for 200 refusals: {refusal_cpu:?}"
    );
    assert!(
        idle_cpu < Duration::from_millis(300),
        "server CPU while idle: {idle_cpu:?}"
    );
    watchers.assert_receive_broadcast(&server, "after the refusals");
    assert!(server.stat().contains("connections 4\n"));
}

#[test]
fn stalled_readers_are_closed_with_1008_and_memory_stays_bounded() {
    const STALLED: usize = 20;
    const MESSAGE_BYTES: usize = 32 << 10;
    const MESSAGES: usize = 640; // 20 MiB for every subscriber of the channel.
    let server = Server::start(&[
        "--shards",
        "1",
        "--outbound-queue-bytes",
        "256KiB",
        "--close-timeout",
        "1s",
    ]);
    let pid = server.pid();
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| small_buffered_websocket(&server, "/ws/firehose"))
        .collect();
    let rss_before = rss_bytes(pid);
    let mut rss_peak = rss_before;
    let mut publisher = Publisher::connect(&server);
    let payload = vec![b'x'; MESSAGE_BYTES];
    for sequence in 0..MESSAGES {
        publisher.publish("firehose", &payload);
        if sequence % 32 == 0 {
            rss_peak = rss_peak.max(rss_bytes(pid));
        }
        if sequence == MESSAGES / 2 {
            watchers.assert_receive_broadcast(&server, "during the flood");
        }
    }
    rss_peak = rss_peak.max(rss_bytes(pid));
    watchers.assert_receive_broadcast(&server, "after the flood");
    common::wait_until("every stalled reader to be closed", || {
        server.stat().contains("connections 4\n")
    });
    let stat = server.stat();
    assert!(
        stat.contains(&format!("closed_slow_consumer {STALLED}\n")),
        "{stat}"
    );
    let rss_after = rss_bytes(pid);
    eprintln!(
        "stalled readers: RSS {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < 64 * MIB,
        "RSS grew by {:.1} MiB",
        mib(rss_peak - rss_before)
    );
    // Each stalled reader, reading at last: whole frames, then the 1008 close or the end.
    let mut saw_1008 = 0;
    for (index, stream) in stalled.iter_mut().enumerate() {
        let mut code = None;
        // Bounded: far more frames than the buffers between us can hold.
        for _ in 0..MESSAGES {
            match read_frame(stream) {
                Some(frame) if frame.opcode() == 0x8 => {
                    code = frame.close_code();
                    break;
                }
                Some(frame) => assert_eq!(frame.opcode(), 0x1, "reader {index}"),
                None => break,
            }
        }
        assert!(
            matches!(code, Some(1008) | None),
            "reader {index}: {code:?}"
        );
        saw_1008 += usize::from(code.is_some());
        assert_closed(stream);
    }
    eprintln!("stalled readers: {saw_1008} of {STALLED} read the 1008 close frame");
    watchers.assert_receive_broadcast(&server, "after the stalled readers are gone");
}

/// Writes `chunk` again and again until the server stops taking it (no progress for 500 ms, or
/// the connection is closed); returns the bytes sent. Bounded: at most 4096 chunks.
fn flood_until_refused(stream: &mut TcpStream, chunk: &[u8]) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent_bytes = 0;
    for _ in 0..4096 {
        match stream.write_all(chunk) {
            Ok(()) => sent_bytes += chunk.len(),
            Err(error) => {
                assert!(
                    matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                    ),
                    "{error} after {sent_bytes} bytes"
                );
                return sent_bytes;
            }
        }
    }
    panic!("the server kept reading {sent_bytes} bytes whose replies are never read");
}

#[test]
fn clients_that_never_read_their_replies_are_closed_as_slow_consumers() {
    let server = Server::start(&[
        "--shards",
        "1",
        "--ping-interval",
        "500ms",
        "--idle-timeout",
        "2s",
        "--close-timeout",
        "1s",
    ]);
    let pid = server.pid();
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    let rss_before = rss_bytes(pid);
    // One sends 16 KiB messages to /echo, the other floods tiny pings (a pong each, where the
    // per-frame overhead dominates); neither reads what comes back. Their replies count
    // against the outbound limit like broadcasts: past it, the connection is closed (1008).
    let mut echo_flooder = small_buffered_websocket(&server, "/echo");
    let echo_sent = flood_until_refused(&mut echo_flooder, &masked_frame(0x82, &[0xAB; 16 << 10]));
    let mut ping_flooder = small_buffered_websocket(&server, "/ws/victim");
    let ping_sent = flood_until_refused(&mut ping_flooder, &masked_frame(0x89, b"").repeat(10_000));
    let refused_at = Instant::now();
    let rss_refused = rss_bytes(pid);
    watchers.assert_receive_broadcast(&server, "while the flooders are refused");
    common::wait_until("the flooders to be closed", || {
        server.stat().contains("connections 4\n")
    });
    eprintln!(
        "reply floods: {:.1} MiB of echoes and {:.1} MiB of pings sent before the server \
         refused more; both gone {:?} later; RSS {:.1} MiB before, {:.1} MiB at the refusal",
        mib(echo_sent as u64),
        mib(ping_sent as u64),
        refused_at.elapsed(),
        mib(rss_before),
        mib(rss_refused)
    );
    assert!(
        rss_refused.saturating_sub(rss_before) < 32 * MIB,
        "RSS grew by {:.1} MiB",
        mib(rss_refused.saturating_sub(rss_before))
    );
    let stat = server.stat();
    assert!(stat.contains("closed_slow_consumer 2\n"), "{stat}");
    assert_closed(&mut echo_flooder);
    assert_closed(&mut ping_flooder);
    watchers.assert_receive_broadcast(&server, "after the flooders are gone");
}

/// Opens `count` connections from 127.0.0.1..127.0.0.4, sends each a partial upgrade request,
/// and drops them: the even ones with a FIN, the odd ones with a reset (SO_LINGER 0).
fn abandon_handshakes(server: &Server, count: usize) {
    let partial = b"GET /ws/abandoned HTTP/1.1\r\nHost: test\r\nUpgrade: webs";
    let mut sockets = Vec::with_capacity(count);
    for index in 0..count {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // The port is chosen at connect time, per destination: no bind-time port exhaustion.
        let enable: libc::c_int = 1;
        // SAFETY: a valid socket and a pointer to an int of the stated size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &enable as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let source = Ipv4Addr::new(127, 0, 0, 1 + (index % 4) as u8);
        socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
        socket.connect(&server.address.into()).unwrap();
        socket.send(partial).unwrap();
        if index % 2 == 1 {
            socket.set_linger(Some(Duration::ZERO)).unwrap();
        }
        sockets.push(socket);
    }
    drop(sockets);
}

#[test]
fn fifty_thousand_abandoned_handshakes_leave_no_trace() {
    const HANDSHAKES: usize = 50_000;
    const BATCH: usize = 2_000;
    let server = Server::start(&["--shards", "1"]);
    let pid = server.pid();
    let mut watchers = Watchers::subscribe(&server, "watch", 4);
    assert_still_serving(&server);
    common::wait_until("the newcomer to be gone", || {
        server.stat().contains("connections 4\n")
    });
    let fds_before = open_fds(pid);
    let rss_before = rss_bytes(pid);
    let started = Instant::now();
    let mut fds_peak = fds_before;
    for batch in 0..HANDSHAKES / BATCH {
        // Let the server catch up first, so the accept queue holds at most two batches.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fds = open_fds(pid);
            fds_peak = fds_peak.max(fds);
            if fds <= fds_before + BATCH {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server is stuck at {fds} fds"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        abandon_handshakes(&server, BATCH);
        if batch % 5 == 4 {
            watchers.assert_receive_broadcast(&server, &format!("after batch {batch}"));
        }
    }
    let attack_time = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fds_after = open_fds(pid);
    while fds_after > fds_before + 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        fds_after = open_fds(pid);
    }
    let rss_after = rss_bytes(pid);
    eprintln!(
        "{HANDSHAKES} abandoned handshakes in {attack_time:?}: fds {fds_before} before, \
         {fds_peak} peak, {fds_after} after ({:?} after the attack); RSS {:.1} MiB before, \
         {:.1} MiB after",
        started.elapsed() - attack_time,
        mib(rss_before),
        mib(rss_after)
    );
    assert!(
        fds_after <= fds_before + 3,
        "open descriptors: {fds_before} before, {fds_after} after"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 32 * MIB,
        "RSS grew from {:.1} MiB to {:.1} MiB",
        mib(rss_before),
        mib(rss_after)
    );
    let stat = server.stat();
    assert!(stat.contains("connections 4\n"), "{stat}");
    watchers.assert_receive_broadcast(&server, "after every batch");
    assert_still_serving(&server);
}
