//! Test support: start a real `ringcast` process on a free port and talk to it with a real
//! WebSocket client (tungstenite), raw TCP bytes, and plain HTTP/1.1.
//!
//! Each test starts its own server (`--listen 127.0.0.1:0`), reads the bound address from the
//! `listening on` log line, and the server is stopped when the handle drops.

#![allow(dead_code)]

pub mod redis_cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::WebSocket;

/// How long a test waits for anything the server should do promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// The public listener's address (WebSocket, `/healthz`, `/readyz`).
    pub address: SocketAddr,
    /// The API listener's address (`/publish`, `/stat`, `/metrics`).
    pub api_address: SocketAddr,
    /// `--api-key`, if the server was started with one (sent with every API request).
    pub api_key: Option<String>,
    /// Everything the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `ringcast --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --shards 2 --echo <args>`.
    pub fn start(args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringcast"));
        command.args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--log") {
            command.args(["--log", "info"]);
        }
        if !args.contains(&"--api-listen") {
            command.args(["--api-listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--shards") {
            command.args(["--shards", "2"]);
        }
        if !args.contains(&"--no-echo") {
            command.arg("--echo");
        }
        let args: Vec<&str> = args
            .iter()
            .copied()
            .filter(|arg| *arg != "--no-echo")
            .collect();
        let api_key = args
            .iter()
            .position(|arg| *arg == "--api-key")
            .and_then(|index| args.get(index + 1))
            .map(|key| key.to_string());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the ringcast binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let address = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let api = rest
                        .split("api on ")
                        .nth(1)
                        .and_then(|rest| rest.split(';').next())
                        .unwrap_or_default()
                        .to_string();
                    let _ = address_sender.send((address, api));
                }
                log_writer.lock().unwrap().push(line);
            }
        });
        let (address, api_address) = match address_receiver.recv_timeout(PATIENCE) {
            Ok((address, api)) => (
                address.parse().expect("a socket address"),
                api.parse().expect("the API's socket address"),
            ),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:?}", log.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            address,
            api_address,
            api_key,
            log,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Connects a tungstenite client to `path`.
    pub fn websocket(&self, path: &str) -> WebSocket<TcpStream> {
        let stream = TcpStream::connect(self.address).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let url = format!("ws://{}{}", self.address, path);
        let (socket, response) = tungstenite::client(url.as_str(), stream).expect("handshake");
        assert_eq!(response.status(), 101);
        socket
    }

    /// Connects and upgrades with raw bytes; returns the socket after the 101 response.
    pub fn raw_websocket(&self, path: &str) -> TcpStream {
        let mut stream = self.raw_connect();
        stream.write_all(upgrade_request(path).as_bytes()).unwrap();
        let head = read_http_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        stream
    }

    /// A plain TCP connection to the public listener, with a read timeout.
    pub fn raw_connect(&self) -> TcpStream {
        connect_to(self.address)
    }

    /// A plain TCP connection to the API listener, with a read timeout.
    pub fn raw_api_connect(&self) -> TcpStream {
        connect_to(self.api_address)
    }

    /// Sends raw request bytes on a new connection to the public listener; returns the status
    /// and the whole response.
    pub fn raw_request(&self, request: &[u8]) -> (u16, String) {
        raw_request_to(self.address, request)
    }

    /// The same to the API listener.
    pub fn raw_api_request(&self, request: &[u8]) -> (u16, String) {
        raw_request_to(self.api_address, request)
    }

    /// One HTTP/1.1 request (Connection: close) to the listener that serves `path` (the API
    /// for `/publish`, `/stat`, `/metrics`, with the API key if any; else the public one);
    /// returns the status and the body.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let api = ["/publish", "/stat", "/metrics", "/api/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
        let (address, headers) = if api {
            let headers = self
                .api_key
                .as_ref()
                .map(|key| format!("Authorization: Bearer {key}\r\n"))
                .unwrap_or_default();
            (self.api_address, headers)
        } else {
            (self.address, String::new())
        };
        http_to(address, method, path, &headers, body)
    }

    /// `POST /publish/{channel}`; asserts 200.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> String {
        let (status, body) = self.http("POST", &format!("/publish/{channel}"), payload);
        assert_eq!(status, 200, "publish failed: {body}");
        body
    }

    /// `GET /stat`.
    pub fn stat(&self) -> String {
        let (status, body) = self.http("GET", "/stat", b"");
        assert_eq!(status, 200);
        body
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (no drain, nothing said to anyone) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- server log ---");
            for line in self.log.lock().unwrap().iter() {
                eprintln!("{line}");
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A valid RFC 6455 upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads an HTTP response head byte by byte (so no frame bytes after it are consumed).
pub fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_string()
}

/// The status code of an HTTP response text (0 if none).
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Exactly once: after everything expected, nothing more arrives within 200 ms (then the
/// client's usual read timeout is back).
pub fn assert_nothing_more(client: &mut WebSocket<TcpStream>) {
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(client.read().is_err(), "no duplicate deliveries");
    client.get_mut().set_read_timeout(Some(PATIENCE)).unwrap();
}

/// A frame sent without a mask (what only servers may send), payload under 126 bytes.
pub fn unmasked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut bytes = vec![first_byte, payload.len() as u8];
    bytes.extend_from_slice(payload);
    bytes
}

/// A masked client frame (`first_byte`: FIN, RSV and opcode bits as given).
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    ringcast::protocol::frame::encode_client_frame(first_byte, [0x12, 0x34, 0x56, 0x78], payload)
}

/// A server frame as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The first byte (FIN, RSV, opcode).
    pub first_byte: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.first_byte & 0x0F
    }

    /// For a close frame: the code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one unmasked server frame; `None` at end of stream or timeout.
pub fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).ok()?;
    assert_eq!(header[1] & 0x80, 0, "server frames are never masked");
    let length = match header[1] & 0x7F {
        126 => {
            let mut bytes = [0u8; 2];
            stream.read_exact(&mut bytes).ok()?;
            u16::from_be_bytes(bytes) as usize
        }
        127 => {
            let mut bytes = [0u8; 8];
            stream.read_exact(&mut bytes).ok()?;
            u64::from_be_bytes(bytes) as usize
        }
        length => length as usize,
    };
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).ok()?;
    Some(Frame {
        first_byte: header[0],
        payload,
    })
}

/// Reads frames until a close frame; returns its code. Skips pings and data.
pub fn read_until_close(stream: &mut TcpStream) -> Option<u16> {
    // Bounded by the stream's read timeout per frame and by the frame count.
    for _ in 0..100_000 {
        let frame = read_frame(stream)?;
        if frame.opcode() == 8 {
            return frame.close_code();
        }
    }
    None
}

/// Asserts that the server closed the TCP connection (EOF or reset) within PATIENCE, skipping
/// whatever bytes arrive first.
pub fn assert_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(_) => return,
        }
    }
    panic!("connection not closed within {PATIENCE:?}");
}

/// Number of WebSocket connections `/stat` reports per shard.
pub fn connections_per_shard(stat: &str) -> Vec<usize> {
    stat.lines()
        .filter_map(|line| line.trim().strip_prefix("shard "))
        .filter_map(|rest| {
            rest.split(": ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until `condition` holds (polling), or panics after PATIENCE.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real `redis-server` on a free port, stopped on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// `--requirepass`, if it was started with one (the helpers below send AUTH first).
    password: Option<String>,
}

impl RedisServer {
    /// Starts `redis-server` (installed by tests/run.sh) on a free port.
    pub fn start() -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            password: None,
        };
        server.restart();
        server
    }

    /// Starts one that requires `password` (`--requirepass`), also after a restart.
    pub fn start_with_password(password: &str) -> RedisServer {
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            port,
            password: Some(password.to_string()),
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(
                self.password
                    .iter()
                    .flat_map(|password| ["--requirepass", password.as_str()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (bash tests/run.sh installs it)");
        self.child = Some(child);
        wait_until("redis-server to answer PING", || {
            self.try_command(&["PING"])
                .is_some_and(|reply| reply == "+PONG")
        });
    }

    /// Sends one command; returns the first reply line (e.g. `:1`, `+PONG`), or `None` if the
    /// server cannot be reached.
    pub fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(PATIENCE)).ok()?;
        if let Some(password) = &self.password {
            stream.write_all(&resp_command(&["AUTH", password])).ok()?;
        }
        stream.write_all(&resp_command(args)).ok()?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if self.password.is_some() {
            reader.read_line(&mut line).ok()?;
            line.clear();
        }
        reader.read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// Sends one command; panics if Redis does not answer.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).expect("redis answers")
    }

    /// `PUBSUB CHANNELS`: the channels someone is subscribed to.
    pub fn subscribed_channels(&self) -> Vec<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("redis");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        if let Some(password) = &self.password {
            stream
                .write_all(&resp_command(&["AUTH", password]))
                .unwrap();
        }
        stream
            .write_all(&resp_command(&["PUBSUB", "CHANNELS"]))
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if self.password.is_some() {
            reader.read_line(&mut line).unwrap();
            line.clear();
        }
        reader.read_line(&mut line).unwrap();
        let count: usize = line.trim_end().trim_start_matches('*').parse().unwrap_or(0);
        let mut channels = Vec::new();
        for _ in 0..count {
            let mut length = String::new();
            reader.read_line(&mut length).unwrap();
            let mut name = String::new();
            reader.read_line(&mut name).unwrap();
            channels.push(name.trim_end().to_string());
        }
        channels
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain TCP connection to `address` with a read timeout.
pub fn connect_to(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends raw request bytes on a new connection to `address`; returns the status and the whole
/// response.
pub fn raw_request_to(address: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = connect_to(address);
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    (status_of(&text), text)
}

/// One HTTP/1.1 request (Connection: close) to `address` with extra header lines (each ending
/// in CRLF); returns the status and the body.
pub fn http_to(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let (status, text) = raw_request_to(address, &request);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or("");
    (status, body.to_string())
}

/// `GET path` on `server`; returns the body.
pub fn get_body(server: &Server, path: &str) -> (u16, String) {
    server.http("GET", path, b"")
}
