//! Broadcast peer for the ringcast benchmark on fastwebsockets (Deno's WebSocket
//! library), following its `echo_server_split` example: hyper 1 HTTP/1.1 server,
//! `fastwebsockets::upgrade::upgrade`, the socket split into a read half (its own task,
//! answering pings through the shared write half) and a write half fed from a
//! `tokio::sync::broadcast` channel per channel name (`Mutex<HashMap>`).
//!
//!   GET  /ws/{channel}       subscribe (RFC 6455)
//!   POST /publish/{channel}  body = payload, one text frame to every subscriber
//!
//! Runtime: tokio multi-thread with `WORKERS` worker threads. Logging: none.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, upgrade};
use http_body_util::{BodyExt, Either, Empty, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::broadcast};

/// Messages a subscriber may fall behind before it is dropped (same bound as the
/// gorilla hub's 256-message client buffer and the tokio-tungstenite peer).
const CHANNEL_CAPACITY: usize = 256;
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct Msg {
    text: bool,
    payload: Bytes,
}

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Msg>>>>;
type Body = Either<Full<Bytes>, Empty<Bytes>>;

fn reply(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(body.into())));
    *res.status_mut() = code;
    res
}

fn channel_of<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let ch = path.strip_prefix(prefix)?;
    (!ch.is_empty() && !ch.contains('/')).then_some(ch)
}

async fn subscriber(channels: Channels, name: String, fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let mut rx = {
        let mut map = channels.lock().unwrap();
        map.entry(name.clone())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    };
    let (mut read, write) = ws.split(tokio::io::split);
    let write = Arc::new(tokio::sync::Mutex::new(write));

    // Read half: pongs and close replies are "obligated sends" written via the write half.
    let wr = write.clone();
    let mut reader = tokio::spawn(async move {
        loop {
            let frame = read
                .read_frame::<_, WebSocketError>(&mut |f: Frame<'_>| {
                    let wr = wr.clone();
                    let f = Frame::new(f.fin, f.opcode, None, Payload::Owned(f.payload.to_vec()));
                    async move { wr.lock().await.write_frame(f).await }
                })
                .await;
            match frame {
                Ok(f) if f.opcode == OpCode::Close => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });

    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(m) => {
                    let payload = Payload::Borrowed(&m.payload);
                    let frame = if m.text { Frame::text(payload) } else { Frame::binary(payload) };
                    if write.lock().await.write_frame(frame).await.is_err() {
                        break;
                    }
                }
                // Lagged: more than CHANNEL_CAPACITY behind -> drop the subscriber.
                Err(_) => break,
            },
            _ = &mut reader => break,
        }
    }
    reader.abort();
    drop(rx);
    let mut map = channels.lock().unwrap();
    if map.get(&name).is_some_and(|tx| tx.receiver_count() == 0) {
        map.remove(&name);
    }
    Ok(())
}

async fn handle(channels: Channels, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::POST {
        let Some(ch) = channel_of(&path, "/publish/") else {
            return Ok(reply(StatusCode::NOT_FOUND, ""));
        };
        let payload = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "bad body\n")),
        };
        let text = std::str::from_utf8(&payload).is_ok();
        let tx = channels.lock().unwrap().get(ch).cloned();
        let n = tx.map(|tx| tx.send(Msg { text, payload }).unwrap_or(0)).unwrap_or(0);
        // 202: the message is in the broadcast ring; connection tasks write it later.
        return Ok(reply(StatusCode::ACCEPTED, format!("queued to {n}\n")));
    }
    let Some(ch) = channel_of(&path, "/ws/").map(str::to_owned) else {
        return Ok(reply(StatusCode::NOT_FOUND, ""));
    };
    if req.method() != Method::GET || !upgrade::is_upgrade_request(&req) {
        return Ok(reply(StatusCode::BAD_REQUEST, "websocket upgrade expected\n"));
    }
    // fastwebsockets implements no extensions: permessage-deflate is never negotiated.
    match upgrade::upgrade(&mut req) {
        Ok((res, fut)) => {
            tokio::spawn(async move {
                let _ = subscriber(channels, ch, fut).await;
            });
            Ok(res.map(Either::Right))
        }
        Err(_) => Ok(reply(StatusCode::BAD_REQUEST, "bad upgrade\n")),
    }
}

fn main() {
    let workers: usize = std::env::var("WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let port: u16 = std::env::var("PORT").ok().and_then(|v| v.parse().ok()).unwrap_or(18106);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("bind");
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
