//! Known-good reference echo server (tungstenite, thread per connection),
//! only for validating tests/autobahn before ringcast exists.
//! GET /echo only (other paths: 404); every complete message is echoed back
//! as it came; 16 MiB message limit; no extensions.
use std::net::{TcpListener, TcpStream};
use std::thread;

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Error, Message};

const LIMIT: usize = 16 * 1024 * 1024 + 1024;

fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(LIMIT))
        .max_frame_size(Some(LIMIT));
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() != "/echo" {
            let mut err = ErrorResponse::new(Some("only /echo\n".into()));
            *err.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
            return Err(err);
        }
        resp.headers_mut()
            .insert("Server", "reference-echo (tungstenite)".parse().unwrap());
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, check, Some(config)) else {
        return;
    };
    let mut errors = 0;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(msg).is_err() {
                    break;
                }
            }
            Ok(_) => {} // ping/pong/close are answered by tungstenite
            Err(Error::ConnectionClosed | Error::AlreadyClosed | Error::Io(_)) => break,
            Err(e) => {
                // tungstenite reports protocol/UTF-8/size errors but leaves the
                // close to us: fail the connection with the matching code, then
                // keep reading until the peer's close completes the handshake.
                errors += 1;
                let code = match e {
                    Error::Utf8(_) => CloseCode::Invalid,
                    Error::Capacity(_) => CloseCode::Size,
                    _ => CloseCode::Protocol,
                };
                let frame = CloseFrame { code, reason: "".into() };
                if errors > 3 || ws.close(Some(frame)).is_err() {
                    break;
                }
            }
        }
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr).expect("bind");
    println!("reference echo server (tungstenite) on ws://{addr}/echo");
    for stream in listener.incoming().flatten() {
        thread::spawn(move || serve(stream));
    }
}
