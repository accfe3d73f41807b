//! A small broadcast server for the end-to-end tests, written with tungstenite so the harness's
//! own WebSocket code is checked against an independent implementation.
//!
//! One port speaks three protocols, told apart by peeking at the first bytes: `GET /ws/{channel}`
//! (RFC 6455 upgrade, then every publish to the channel as one frame, text if UTF-8), `POST
//! /publish/{channel}` (HTTP/1.1 keep-alive, answers 200 with `{"sent":n}`), and RESP
//! `PUBLISH ws:broadcast:{channel} payload` like Redis. It pings every new subscriber once and
//! counts the pongs, so the tests also prove that the client answers pings with masked pongs
//! (tungstenite rejects unmasked client frames). Thread per connection: fine for ~100 sockets.

#![allow(dead_code)]
// tungstenite fixes the callback's error type (an HTTP response), so its size is not ours to choose.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Bytes, Message};

/// Subscribers per channel.
type Channels = Arc<Mutex<HashMap<String, Vec<Sender<Message>>>>>;

/// A running test server; stops accepting when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Pongs received (one ping per subscriber).
    pub pongs: Arc<AtomicU64>,
    /// Subscribers that completed the upgrade.
    pub subscribers: Arc<AtomicU64>,
    /// Set to stop every thread.
    stop: Arc<AtomicBool>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the server on an ephemeral loopback port.
pub fn start() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = TestServer {
        addr: listener.local_addr().unwrap(),
        pongs: Arc::new(AtomicU64::new(0)),
        subscribers: Arc::new(AtomicU64::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let channels: Channels = Arc::default();
    let (pongs, subscribers, stop) = (
        server.pongs.clone(),
        server.subscribers.clone(),
        server.stop.clone(),
    );
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let (channels, pongs, subscribers, stop) = (
                        channels.clone(),
                        pongs.clone(),
                        subscribers.clone(),
                        stop.clone(),
                    );
                    std::thread::spawn(move || route(stream, channels, pongs, subscribers, stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    server
}

/// Dispatches a new connection by its first bytes.
fn route(
    stream: TcpStream,
    channels: Channels,
    pongs: Arc<AtomicU64>,
    subscribers: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let mut first = [0u8; 4];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if stream.peek(&mut first).unwrap_or(0) < 1 {
        return;
    }
    match &first {
        b"GET " => subscribe(stream, channels, pongs, subscribers, stop),
        b"POST" => serve_http(stream, channels, stop),
        _ if first[0] == b'*' => serve_resp(stream, channels, stop),
        _ => {}
    }
}

/// Publishes seen, for the lossy mode.
static PUBLISHES: AtomicU64 = AtomicU64::new(0);

/// Sends `payload` to every subscriber of `channel`; returns how many got it. Channels whose name
/// starts with `lossy` silently drop every fifth publish, so the tests can prove loss is caught.
fn broadcast(channels: &Channels, channel: &str, payload: Vec<u8>) -> usize {
    if channel.starts_with("lossy") && PUBLISHES.fetch_add(1, Ordering::Relaxed) % 5 == 4 {
        return 0;
    }
    let message = match String::from_utf8(payload) {
        Ok(text) => Message::text(text),
        Err(error) => Message::binary(error.into_bytes()),
    };
    let mut channels = channels.lock().unwrap();
    let Some(list) = channels.get_mut(channel) else {
        return 0;
    };
    list.retain(|subscriber| subscriber.send(message.clone()).is_ok());
    list.len()
}

/// A WebSocket subscriber: upgrade, ping once, then forward broadcasts and read pongs.
fn subscribe(
    stream: TcpStream,
    channels: Channels,
    pongs: Arc<AtomicU64>,
    subscribers: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let callback = move |request: &Request, response: Response| {
        *seen.lock().unwrap() = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(mut socket) = tungstenite::accept_hdr(stream, callback) else {
        return;
    };
    let channel = path.lock().unwrap().trim_start_matches("/ws/").to_owned();
    let (sender, receiver) = mpsc::channel();
    channels
        .lock()
        .unwrap()
        .entry(channel)
        .or_default()
        .push(sender);
    subscribers.fetch_add(1, Ordering::Relaxed);
    socket
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(2)))
        .unwrap();
    if socket
        .send(Message::Ping(Bytes::from_static(b"are you there")))
        .is_err()
    {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        while let Ok(message) = receiver.try_recv() {
            if socket.send(message).is_err() {
                return;
            }
        }
        match socket.read() {
            Ok(Message::Pong(payload)) if payload.as_ref() == b"are you there" => {
                pongs.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// HTTP/1.1 keep-alive publishes.
fn serve_http(stream: TcpStream, channels: Channels, stop: Arc<AtomicBool>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while !stop.load(Ordering::Relaxed) {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let channel = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_start_matches("/publish/")
            .to_owned();
        let sent = broadcast(&channels, &channel, body);
        let answer = format!("{{\"sent\":{sent}}}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// RESP `PUBLISH ws:broadcast:{channel} payload`, answered with `:n`.
fn serve_resp(stream: TcpStream, channels: Channels, stop: Arc<AtomicBool>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let read_bulk = |reader: &mut BufReader<TcpStream>| -> Option<Vec<u8>> {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let length: usize = header.trim().strip_prefix('$')?.parse().ok()?;
        let mut bulk = vec![0u8; length + 2];
        reader.read_exact(&mut bulk).ok()?;
        bulk.truncate(length);
        Some(bulk)
    };
    while !stop.load(Ordering::Relaxed) {
        let mut array = String::new();
        if reader.read_line(&mut array).unwrap_or(0) == 0 || array.trim() != "*3" {
            return;
        }
        let (Some(_command), Some(channel), Some(payload)) = (
            read_bulk(&mut reader),
            read_bulk(&mut reader),
            read_bulk(&mut reader),
        ) else {
            return;
        };
        let channel = String::from_utf8(channel).unwrap();
        let sent = broadcast(
            &channels,
            channel.trim_start_matches("ws:broadcast:"),
            payload,
        );
        if writer.write_all(format!(":{sent}\r\n").as_bytes()).is_err() {
            return;
        }
    }
}
