//! Broadcast peer for the ringcast benchmark, written the way tokio-tungstenite's
//! `server-custom-accept` example does it (hyper 1 HTTP/1.1 server, WebSocket upgrade
//! handed to `WebSocketStream::from_raw_socket`), with one `tokio::sync::broadcast`
//! channel per channel name in a `Mutex<HashMap>` and one task per connection.
//!
//!   GET  /ws/{channel}       subscribe (RFC 6455)
//!   POST /publish/{channel}  body = payload, one text frame to every subscriber
//!
//! Runtime: tokio multi-thread with `WORKERS` worker threads (start.sh sets it to the
//! number of cores in `CORES`). Logging: none.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::broadcast};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message, Utf8Bytes,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};

/// Messages a subscriber may fall behind before it is dropped (gorilla's chat hub uses
/// a 256-message send buffer per client; this is the same bound).
const CHANNEL_CAPACITY: usize = 256;
const MAX_BODY: usize = 1 << 20;

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Message>>>>;

fn full(b: impl Into<Bytes>) -> Full<Bytes> {
    Full::new(b.into())
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(full(body));
    *res.status_mut() = code;
    res
}

fn channel_of<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let ch = path.strip_prefix(prefix)?;
    (!ch.is_empty() && !ch.contains('/')).then_some(ch)
}

fn header_has(req: &Request<Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers()
        .get(name)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(',').any(|p| p.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

async fn subscriber(channels: Channels, name: String, ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) {
    let mut rx = {
        let mut map = channels.lock().unwrap();
        map.entry(name.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    };
    let mut ws = ws;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(msg) => {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                // Lagged: more than CHANNEL_CAPACITY behind -> drop the subscriber.
                Err(_) => break,
            },
            // Reading drives tungstenite's automatic pong replies to client pings.
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(rx);
    let _ = ws.close(None).await;
    let mut map = channels.lock().unwrap();
    if map.get(&name).is_some_and(|tx| tx.receiver_count() == 0) {
        map.remove(&name);
    }
}

async fn handle(channels: Channels, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();

    if req.method() == Method::POST {
        let Some(ch) = channel_of(&path, "/publish/") else {
            return Ok(status(StatusCode::NOT_FOUND, ""));
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST, "bad body\n")),
        };
        // Text frame for UTF-8 payloads (binary frame otherwise); encoded per subscriber.
        let msg = if std::str::from_utf8(&body).is_ok() {
            Message::Text(Utf8Bytes::try_from(body).expect("checked"))
        } else {
            Message::Binary(body)
        };
        let tx = channels.lock().unwrap().get(ch).cloned();
        let n = tx.map(|tx| tx.send(msg).unwrap_or(0)).unwrap_or(0);
        // 202: the message is in the broadcast ring; connection tasks write it later.
        let mut res = Response::new(full(format!("queued to {n}\n")));
        *res.status_mut() = StatusCode::ACCEPTED;
        return Ok(res);
    }

    let Some(ch) = channel_of(&path, "/ws/").map(str::to_owned) else {
        return Ok(status(StatusCode::NOT_FOUND, ""));
    };
    let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
    if req.method() != Method::GET
        || !header_has(&req, CONNECTION, "upgrade")
        || !header_has(&req, UPGRADE, "websocket")
        || req.headers().get(SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13")
        || key.is_none()
    {
        return Ok(status(StatusCode::BAD_REQUEST, "websocket upgrade expected\n"));
    }
    let accept = derive_accept_key(key.unwrap().as_bytes());
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(&mut req).await {
            // No extensions: tungstenite has no permessage-deflate, nothing is negotiated.
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(WebSocketConfig::default()),
            )
            .await;
            subscriber(channels, ch, ws).await;
        }
    });
    let mut res = Response::new(full(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(CONNECTION, "Upgrade".parse().unwrap());
    h.insert(UPGRADE, "websocket".parse().unwrap());
    h.insert(SEC_WEBSOCKET_ACCEPT, accept.parse().unwrap());
    Ok(res)
}

fn main() {
    let workers: usize = std::env::var("WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let port: u16 = std::env::var("PORT").ok().and_then(|v| v.parse().ok()).unwrap_or(18105);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = TcpListener::bind(addr).await.expect("bind");
        let channels: Channels = Arc::default();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            };
            // Tokio leaves Nagle on by default; a push server wants it off.
            let _ = stream.set_nodelay(true);
            let channels = channels.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(channels.clone(), req));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    std::process::exit(0);
}
