//! Every refused request gets its exact status (RFC 6455 §4.2.1, RFC 7231), and the shard keeps
//! serving everyone else.

mod common;

use std::io::Write;

use common::{Server, upgrade_request};
use tungstenite::Message;

/// Sends `request` on a raw connection; asserts the status (and that a broadcast still reaches
/// a client afterwards, so the refusal ended only that connection).
fn assert_refused(server: &Server, request: &[u8], status: u16, must_contain: &[&str]) {
    // Publishes are refused by the API listener; everything else by the public one.
    let (got, response) = if request.windows(9).any(|window| window == b"/publish/") {
        server.raw_api_request(request)
    } else {
        server.raw_request(request)
    };
    assert_eq!(got, status, "{response}");
    for needle in must_contain {
        assert!(
            response.contains(needle),
            "{needle:?} missing in {response}"
        );
    }
    assert!(response.contains("Connection: close"), "{response}");
}

#[test]
fn bad_requests_get_their_status_and_the_server_keeps_serving() {
    let server = Server::start(&["--max-header-bytes", "1KiB", "--max-headers", "16"]);
    let mut watcher = server.websocket("/ws/watch");
    let valid = upgrade_request("/ws/news");

    let cases: Vec<(Vec<u8>, u16, Vec<&str>)> = vec![
        (valid.replace("GET", "POST").into_bytes(), 405, vec!["Allow: GET"]),
        (valid.replace("GET", "DELETE").into_bytes(), 405, vec!["Allow: GET"]),
        (valid.replace("/ws/news", "/nowhere").into_bytes(), 404, vec![]),
        (valid.replace("/ws/news", "/ws/bad*name").into_bytes(), 400, vec![]),
        (valid.replace("/ws/news", &format!("/ws/{}", "x".repeat(165))).into_bytes(), 400, vec![]),
        (
            valid.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "").into_bytes(),
            400,
            vec![],
        ),
        (valid.replace("dGhlIHNhbXBsZSBub25jZQ==", "dG9vc2hvcnQ=").into_bytes(), 400, vec![]),
        (
            valid.replace("Version: 13", "Version: 8").into_bytes(),
            426,
            vec!["Sec-WebSocket-Version: 13"],
        ),
        (
            valid.replace("Upgrade: websocket\r\n", "").into_bytes(),
            426,
            vec!["Upgrade: websocket"],
        ),
        (valid.replace("Connection: Upgrade", "Connection: keep-alive").into_bytes(), 400, vec![]),
        (valid.replace("Host: test\r\n", "").into_bytes(), 400, vec![]),
        (valid.replace("HTTP/1.1", "HTTP/1.0").into_bytes(), 400, vec![]),
        (
            valid.replace("Host: test", &format!("Host: test\r\nX-Big: {}", "a".repeat(2000))).into_bytes(),
            431,
            vec![],
        ),
        (
            valid
                .replace(
                    "Host: test",
                    &(0..20).map(|i| format!("X-{i}: y")).collect::<Vec<_>>().join("\r\n"),
                )
                .into_bytes(),
            431,
            vec![],
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400, vec![]),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, vec![]),
        (b"POST /publish/news HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 411, vec![]),
        (b"POST /publish/news HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n".to_vec(), 400, vec![]),
        (b"GET /publish/news HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405, vec!["Allow: POST"]),
    ];
    for (request, status, headers) in &cases {
        assert_refused(&server, request, *status, headers);
    }
    server.publish("watch", b"still serving");
    assert_eq!(
        watcher.read().unwrap(),
        Message::Text("still serving".into())
    );
}

#[test]
fn connection_cap_answers_503_before_upgrade() {
    let server = Server::start(&["--shards", "1", "--max-connections", "3"]);
    let mut clients: Vec<_> = (0..3).map(|_| server.websocket("/ws/capped")).collect();
    let (status, response) = server.raw_request(upgrade_request("/ws/capped").as_bytes());
    assert_eq!(status, 503, "{response}");
    assert!(response.contains("Retry-After"), "{response}");
    // The accepted ones still work, and a slot frees up when one leaves.
    clients.pop().unwrap().close(None).unwrap();
    let mut upgraded = None;
    common::wait_until("a slot to free up", || {
        let mut stream = server.raw_connect();
        stream
            .write_all(upgrade_request("/ws/capped").as_bytes())
            .unwrap();
        let head = common::read_http_head(&mut stream);
        let accepted = head.starts_with("HTTP/1.1 101");
        if accepted {
            upgraded = Some(stream);
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        }
        accepted
    });
    server.publish("capped", b"after");
    assert_eq!(
        common::read_frame(upgraded.as_mut().unwrap())
            .unwrap()
            .payload,
        b"after"
    );
    assert_eq!(
        clients[0].read().unwrap(),
        tungstenite::Message::Text("after".into())
    );
}

#[test]
fn frames_pipelined_behind_the_request_are_processed() {
    let server = Server::start(&[]);
    let mut stream = server.raw_connect();
    let mut bytes = upgrade_request("/echo").into_bytes();
    bytes.extend(common::masked_frame(0x81, b"early"));
    stream.write_all(&bytes).unwrap();
    let head = common::read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(common::read_frame(&mut stream).unwrap().payload, b"early");
}

#[test]
fn pipelined_junk_after_the_request_fails_with_1002() {
    let server = Server::start(&[]);
    let mut stream = server.raw_connect();
    let mut bytes = upgrade_request("/ws/junk").into_bytes();
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    stream.write_all(&bytes).unwrap();
    let head = common::read_http_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(common::read_until_close(&mut stream), Some(1002));
    common::assert_closed(&mut stream);
}
