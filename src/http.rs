//! The small HTTP/1.1 surface ringcast speaks before (or instead of) WebSocket.
//!
//! Sans-IO: parses a request head with `httparse` under hard limits, maps the path to a
//! [`Route`], and builds responses. Each refusal is an [`HttpError`] whose status is decided here
//! and nowhere else. It deliberately does not support chunked request bodies (411 instead):
//! publishers send `Content-Length`, as curl and every HTTP client library do.

use crate::auth::api_key::{ApiKeyError, Presented};
use crate::auth::token::TokenError;
use crate::channel::{ChannelError, ChannelName, ChannelPolicy};

/// Why a request was refused; each variant maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// 400: the request is malformed or breaks RFC 6455 §4.2.1.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// 401: the API listener's key is missing or wrong.
    #[error("{0}")]
    Unauthorized(ApiKeyError),
    /// 403: `--strict` is on and the channel is not in `--channels`.
    #[error("channel not allowed")]
    ChannelForbidden,
    /// 403: the subscription's token is missing, forged, expired or does not grant the channel.
    #[error("{0}")]
    SubscriptionRefused(TokenError),
    /// 403: the upgrade's `Origin` is not in `--allowed-origins`.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// 404: no such endpoint.
    #[error("not found")]
    NotFound,
    /// 405: the endpoint exists but not for this method.
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// 411: a body without `Content-Length`.
    #[error("Content-Length required")]
    LengthRequired,
    /// 413: the body is larger than `--max-message-bytes`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 426: a WebSocket endpoint reached without an `Upgrade: websocket` header.
    #[error("upgrade required")]
    UpgradeRequired,
    /// 426: `Sec-WebSocket-Version` is not 13 (RFC 6455 §4.4).
    #[error("unsupported WebSocket version")]
    UnsupportedWebSocketVersion,
    /// 431: the request head is larger than `--max-header-bytes`.
    #[error("request header fields too large")]
    HeaderTooLarge,
    /// 431: more header fields than `--max-headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// 503: this shard is at `--max-connections`.
    #[error("connection limit reached")]
    ConnectionLimit,
    /// 503: this client address holds `--max-connections-per-ip` connections already.
    #[error("too many connections from this address")]
    AddressLimit,
    /// 503: the server is draining.
    #[error("server is shutting down")]
    ShuttingDown,
    /// 503: a publish could not be handed to every shard in time.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// 503: a dependency (Redis) is unavailable.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HttpError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::Unauthorized(_) => 401,
            HttpError::ChannelForbidden
            | HttpError::SubscriptionRefused(_)
            | HttpError::OriginNotAllowed => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed { .. } => 405,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::UpgradeRequired | HttpError::UnsupportedWebSocketVersion => 426,
            HttpError::HeaderTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::ConnectionLimit
            | HttpError::AddressLimit
            | HttpError::ShuttingDown
            | HttpError::Overloaded(_)
            | HttpError::Unavailable(_) => 503,
        }
    }

    /// The complete response (the connection is closed after it).
    pub fn response(&self) -> Vec<u8> {
        let extra: &[(&str, &str)] = match self {
            HttpError::MethodNotAllowed { allow } => &[("Allow", allow)],
            HttpError::UpgradeRequired | HttpError::UnsupportedWebSocketVersion => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            HttpError::ConnectionLimit
            | HttpError::AddressLimit
            | HttpError::Overloaded(_)
            | HttpError::Unavailable(_) => &[("Retry-After", "1")],
            HttpError::Unauthorized(_) => &[("WWW-Authenticate", "Bearer")],
            _ => &[],
        };
        let body = Response::json_body(&serde_json::json!({ "error": self.to_string() }));
        response(self.status(), extra, ContentType::Json, &body, false)
    }
}

impl From<ChannelError> for HttpError {
    fn from(error: ChannelError) -> HttpError {
        match error {
            ChannelError::InvalidName => {
                HttpError::BadRequest("channel names are 1-164 bytes of [A-Za-z0-9_-=@,.;:#]")
            }
            ChannelError::Forbidden => HttpError::ChannelForbidden,
        }
    }
}

/// The content types ringcast answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/json`.
    Json,
    /// `text/plain; charset=utf-8`.
    Text,
    /// The OpenMetrics text exposition (what Prometheus scrapes natively).
    OpenMetrics,
}

impl ContentType {
    /// The header value.
    pub fn header_value(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Text => "text/plain; charset=utf-8",
            ContentType::OpenMetrics => {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }
}

/// What a handler answers: a status, a content type and a body. Handlers build one; the
/// connection code writes it (with keep-alive or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The body's content type.
    pub content_type: ContentType,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON answer, serialized by serde_json (one line, newline-terminated).
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: ContentType::Json,
            body: Response::json_body(value),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: ContentType::Text,
            body: body.into_bytes(),
        }
    }

    /// `value` as a JSON body ending in a newline (friendlier to `curl`).
    fn json_body(value: &serde_json::Value) -> Vec<u8> {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        body
    }

    /// The complete response bytes.
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        response(self.status, &[], self.content_type, &self.body, keep_alive)
    }
}

/// HTTP methods ringcast routes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// Anything else (kept for the 405).
    Other,
}

/// The parts of a request head ringcast looks at, owned so the read buffer can be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Request method.
    pub method: Method,
    /// Request target without the query string.
    pub path: String,
    /// The query string (after `?`), empty if none.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub http_minor_version: u8,
    /// A `Host` header is present.
    pub has_host: bool,
    /// `Upgrade` lists the `websocket` token.
    pub upgrade_websocket: bool,
    /// `Connection` lists the `upgrade` token.
    pub connection_upgrade: bool,
    /// The connection stays open after the response (HTTP/1.1 default, or `keep-alive` on 1.0).
    pub keep_alive: bool,
    /// `Sec-WebSocket-Version`, if present.
    pub websocket_version: Option<Vec<u8>>,
    /// `Sec-WebSocket-Key`, if present (exactly once).
    pub websocket_key: Option<Vec<u8>>,
    /// `Sec-WebSocket-Extensions`, if present: every such header's value, in order, joined with
    /// ", " into one list (RFC 7230 §3.2.2 allows combining them so; RFC 6455 §9.1 lets the
    /// header appear several times). Bounded by `max_header_bytes`, like the head.
    pub websocket_extensions: Option<Vec<u8>>,
    /// `Origin`, if present (browsers send it with every WebSocket upgrade).
    pub origin: Option<Vec<u8>>,
    /// The API credential sent (`Authorization: Bearer`, `X-API-Key`); redacted in `Debug`.
    pub credentials: Presented,
    /// `Content-Length`, if present.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` is present (not supported: 411).
    pub has_transfer_encoding: bool,
    /// `Expect: 100-continue` (curl sends it for bodies over 1 KiB).
    pub expect_continue: bool,
    /// Bytes the head occupies, including the blank line.
    pub head_len: usize,
}

/// Parses the request head at the start of `buf`.
///
/// `Ok(None)` means incomplete (read more); the limits are enforced both on an incomplete head
/// (a client cannot stream headers forever) and on a complete one.
pub fn parse_request_head(
    buf: &[u8],
    max_header_bytes: usize,
    max_headers: usize,
) -> Result<Option<RequestHead>, HttpError> {
    // The common limit fits on the stack: no allocation per parse.
    let mut stack_headers = [httparse::EMPTY_HEADER; 64];
    let mut heap_headers = Vec::new();
    let headers: &mut [httparse::Header<'_>] = if max_headers <= stack_headers.len() {
        &mut stack_headers[..max_headers]
    } else {
        heap_headers.resize(max_headers, httparse::EMPTY_HEADER);
        &mut heap_headers
    };
    let mut request = httparse::Request::new(headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) if buf.len() >= max_header_bytes => {
            return Err(HttpError::HeaderTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(HttpError::BadRequest("malformed HTTP request")),
    };
    if head_len > max_header_bytes {
        return Err(HttpError::HeaderTooLarge);
    }
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let http_minor_version = request.version.unwrap_or(0);
    let mut head = RequestHead {
        method,
        path,
        query,
        http_minor_version,
        has_host: false,
        upgrade_websocket: false,
        connection_upgrade: false,
        keep_alive: http_minor_version >= 1,
        websocket_version: None,
        websocket_key: None,
        websocket_extensions: None,
        origin: None,
        credentials: Presented::default(),
        content_length: None,
        has_transfer_encoding: false,
        expect_continue: false,
        head_len,
    };
    for header in request.headers.iter() {
        apply_header(&mut head, header.name, header.value)?;
    }
    // RFC 7230 §3.3.3: a message with both is a request-smuggling attempt ("ought to be
    // handled as an error"): a proxy and ringcast could disagree on where the body ends.
    if head.content_length.is_some() && head.has_transfer_encoding {
        return Err(HttpError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    Ok(Some(head))
}

fn apply_header(head: &mut RequestHead, name: &str, value: &[u8]) -> Result<(), HttpError> {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "host" => head.has_host = true,
        "upgrade" => head.upgrade_websocket |= has_token(value, "websocket"),
        "connection" => {
            head.connection_upgrade |= has_token(value, "upgrade");
            if has_token(value, "close") {
                head.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                head.keep_alive = true;
            }
        }
        "sec-websocket-version" => head.websocket_version = Some(trim(value).to_vec()),
        "sec-websocket-key" => {
            // RFC 6455 §4.1: the key appears once; two keys make the accept ambiguous.
            if head.websocket_key.is_some() {
                return Err(HttpError::BadRequest("duplicate Sec-WebSocket-Key"));
            }
            head.websocket_key = Some(trim(value).to_vec());
        }
        "sec-websocket-extensions" => {
            // RFC 7230 §3.2.2: "A recipient MAY combine multiple header fields with the same
            // field name into one "field-name: field-value" pair ... by appending each
            // subsequent field value to the combined field value in order, separated by a
            // comma."
            let extensions = head.websocket_extensions.get_or_insert_with(Vec::new);
            if !extensions.is_empty() {
                extensions.extend_from_slice(b", ");
            }
            extensions.extend_from_slice(trim(value));
        }
        "content-length" => {
            let length = std::str::from_utf8(trim(value))
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or(HttpError::BadRequest("invalid Content-Length"))?;
            if head
                .content_length
                .is_some_and(|previous| previous != length)
            {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            head.content_length = Some(length);
        }
        "transfer-encoding" => head.has_transfer_encoding = true,
        "origin" => head.origin = Some(trim(value).to_vec()),
        "authorization" => head.credentials.read_authorization(value),
        "x-api-key" => head.credentials.api_key = Some(trim(value).to_vec()),
        "expect" => head.expect_continue = has_token(value, "100-continue"),
        _ => {}
    }
    Ok(())
}

/// Does the comma-separated header value list `token` (case-insensitively)?
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&byte| byte == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |end| end + 1);
    &value[start..end]
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /ws/{channel}` + upgrade: subscribe to a channel.
    Subscribe(ChannelName),
    /// `GET /echo` + upgrade: echo every message (conformance testing).
    Echo,
    /// `POST /publish/{channel}`: deliver the body to every subscriber.
    Publish(ChannelName),
    /// `GET /healthz`: 200 when every shard runs.
    Health,
    /// `GET /readyz`: 200 when the node delivers (Redis subscribed, with `--redis`).
    Ready,
    /// `GET /stat`: a plain-text status page (`?format=json`: the same as JSON).
    Stat {
        /// `?format=json` was asked.
        json: bool,
    },
    /// `GET /metrics`: Prometheus/OpenMetrics exposition.
    Metrics,
    /// `GET /app/{key}` + upgrade: a Pusher client (the path and query are the head's).
    PusherConnect,
    /// `/apps/{id}/...`: the Pusher HTTP API (signed; routed further by `api::pusher`).
    PusherApi,
    /// `GET /connection/websocket` + upgrade: a Centrifugo client.
    CentrifugoConnect,
    /// `POST /api/publish`, `POST /api/history`: Centrifugo's server API (API listener).
    CentrifugoApi(CentrifugoApi),
}

/// Which Centrifugo server API method a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CentrifugoApi {
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/history`.
    History,
}

impl Route {
    /// Does this route switch to WebSocket?
    pub fn is_websocket(&self) -> bool {
        matches!(
            self,
            Route::Subscribe(_) | Route::Echo | Route::PusherConnect | Route::CentrifugoConnect
        )
    }
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`: WebSocket upgrades, `/healthz`, `/readyz`.
    Public,
    /// `--api-listen`: `/publish`, `/stat`, `/metrics` (and the probes), behind `--api-key`.
    Api,
}

/// What routing needs to know besides the request.
#[derive(Debug, Clone, Copy)]
pub struct RouteRules<'a> {
    /// The listener the request came in on.
    pub listener: Listener,
    /// Which channel names are allowed.
    pub policy: &'a ChannelPolicy,
    /// `--echo`: `/echo` exists.
    pub echo: bool,
}

/// Maps listener, method and path to a route, checking channel names against the policy.
/// A route of the other listener is answered 404, as if it did not exist.
pub fn route(head: &RequestHead, rules: RouteRules<'_>) -> Result<Route, HttpError> {
    let path = head.path.as_str();
    let public = rules.listener == Listener::Public;
    if path.starts_with("/apps/") {
        // Signed by the application's secret: on both listeners (methods checked there).
        return Ok(Route::PusherApi);
    }
    let (route, allowed_method, allow) = if path.starts_with("/app/") {
        if !public {
            return Err(HttpError::NotFound);
        }
        (Route::PusherConnect, Method::Get, "GET")
    } else if let Some(name) = path.strip_prefix("/ws/") {
        if !public {
            return Err(HttpError::NotFound);
        }
        (
            Route::Subscribe(rules.policy.check(name)?),
            Method::Get,
            "GET",
        )
    } else if let Some(name) = path.strip_prefix("/publish/") {
        if public {
            return Err(HttpError::NotFound);
        }
        (
            Route::Publish(rules.policy.check(name)?),
            Method::Post,
            "POST",
        )
    } else {
        match (path, rules.listener) {
            ("/echo", Listener::Public) if rules.echo => (Route::Echo, Method::Get, "GET"),
            ("/healthz", _) => (Route::Health, Method::Get, "GET"),
            ("/readyz", _) => (Route::Ready, Method::Get, "GET"),
            ("/stat", Listener::Api) => {
                let json = head.query.split('&').any(|pair| pair == "format=json");
                (Route::Stat { json }, Method::Get, "GET")
            }
            ("/metrics", Listener::Api) => (Route::Metrics, Method::Get, "GET"),
            ("/connection/websocket", Listener::Public) => {
                (Route::CentrifugoConnect, Method::Get, "GET")
            }
            ("/api/publish", Listener::Api) => (
                Route::CentrifugoApi(CentrifugoApi::Publish),
                Method::Post,
                "POST",
            ),
            ("/api/history", Listener::Api) => (
                Route::CentrifugoApi(CentrifugoApi::History),
                Method::Post,
                "POST",
            ),
            ("/ws", Listener::Public) | ("/publish", Listener::Api) => {
                return Err(HttpError::BadRequest("missing channel name"));
            }
            _ => return Err(HttpError::NotFound),
        }
    };
    if head.method != allowed_method {
        return Err(HttpError::MethodNotAllowed { allow });
    }
    Ok(route)
}

/// The value of query parameter `name` (percent-decoded), if present.
pub fn query_parameter(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Builds a complete response with `Content-Length`.
pub fn response(
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: ContentType,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (name, value) in extra_headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "Content-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            content_type.header_value(),
            body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// The interim response that lets a client holding `Expect: 100-continue` send its body.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(request: &str) -> Result<Option<RequestHead>, HttpError> {
        parse_request_head(request.as_bytes(), 1024, 8)
    }

    #[test]
    fn partial_head_asks_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn limits_apply_to_partial_and_complete_heads() {
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1100));
        assert_eq!(parse(&long), Err(HttpError::HeaderTooLarge));
        let long_complete = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1100));
        assert_eq!(parse(&long_complete), Err(HttpError::HeaderTooLarge));
        let many: String = (0..9).map(|i| format!("X-{i}: y\r\n")).collect();
        let request = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&request), Err(HttpError::TooManyHeaders));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(parse("\x16\x03\x01junk\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn body_headers_are_read() {
        let head = parse(
            "POST /publish/a?x=1 HTTP/1.1\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.path, "/publish/a");
        assert_eq!(head.content_length, Some(12));
        assert!(head.expect_continue);
        assert!(head.keep_alive);
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn extension_headers_are_combined_in_order() {
        let extensions = |request: &str| parse(request).unwrap().unwrap().websocket_extensions;
        assert_eq!(extensions("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            extensions("GET / HTTP/1.1\r\nSec-WebSocket-Extensions:  a; b=1 \r\n\r\n"),
            Some(b"a; b=1".to_vec())
        );
        assert_eq!(
            extensions(
                "GET / HTTP/1.1\r\nsec-websocket-extensions: permessage-deflate; \
                 server_max_window_bits=10, x\r\nHost: h\r\n\
                 SEC-WEBSOCKET-EXTENSIONS: permessage-deflate\r\n\r\n"
            ),
            Some(b"permessage-deflate; server_max_window_bits=10, x, permessage-deflate".to_vec())
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(
            !parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    fn rules(listener: Listener, policy: &ChannelPolicy, echo: bool) -> RouteRules<'_> {
        RouteRules {
            listener,
            policy,
            echo,
        }
    }

    #[test]
    fn routes_and_their_errors() {
        let open = ChannelPolicy::open();
        let public = |request: &str| {
            route(
                &parse(request).unwrap().unwrap(),
                rules(Listener::Public, &open, true),
            )
        };
        let api = |request: &str| {
            route(
                &parse(request).unwrap().unwrap(),
                rules(Listener::Api, &open, true),
            )
        };
        assert_eq!(
            public("GET /ws/news HTTP/1.1\r\n\r\n"),
            Ok(Route::Subscribe(ChannelName::new("news").unwrap()))
        );
        assert_eq!(public("GET /echo HTTP/1.1\r\n\r\n"), Ok(Route::Echo));
        assert_eq!(public("GET /healthz HTTP/1.1\r\n\r\n"), Ok(Route::Health));
        assert_eq!(api("GET /readyz HTTP/1.1\r\n\r\n"), Ok(Route::Ready));
        assert_eq!(
            public("GET /nope HTTP/1.1\r\n\r\n"),
            Err(HttpError::NotFound)
        );
        assert_eq!(
            public("POST /ws/news HTTP/1.1\r\n\r\n"),
            Err(HttpError::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            api("GET /publish/news HTTP/1.1\r\n\r\n"),
            Err(HttpError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            public("GET /ws/bad%20name HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            public("GET /ws/ HTTP/1.1\r\n\r\n").unwrap_err().status(),
            400
        );
        assert_eq!(
            public("GET /ws HTTP/1.1\r\n\r\n").unwrap_err().status(),
            400
        );
    }

    #[test]
    fn each_listener_serves_only_its_routes() {
        let open = ChannelPolicy::open();
        let public = |request: &str| {
            route(
                &parse(request).unwrap().unwrap(),
                rules(Listener::Public, &open, false),
            )
        };
        let api = |request: &str| {
            route(
                &parse(request).unwrap().unwrap(),
                rules(Listener::Api, &open, false),
            )
        };
        for request in [
            "POST /publish/news HTTP/1.1\r\n\r\n",
            "GET /stat HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n\r\n",
            "GET /echo HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(public(request), Err(HttpError::NotFound), "{request}");
        }
        for request in [
            "GET /ws/news HTTP/1.1\r\n\r\n",
            "GET /echo HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(api(request), Err(HttpError::NotFound), "{request}");
        }
        assert!(matches!(
            api("POST /publish/news HTTP/1.1\r\n\r\n"),
            Ok(Route::Publish(_))
        ));
        assert_eq!(
            api("GET /stat?format=json HTTP/1.1\r\n\r\n"),
            Ok(Route::Stat { json: true })
        );
    }

    #[test]
    fn smuggling_heads_are_refused() {
        let request =
            "POST /publish/a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(request).unwrap_err().status(), 400);
    }

    #[test]
    fn credentials_and_origin_are_read_and_the_query_decoded() {
        let head = parse(
            "GET /ws/a?token=a.b%2Ec&x=1 HTTP/1.1\r\nOrigin: https://app.example\r\nAuthorization: Bearer k1\r\nX-API-Key: k2\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.origin.as_deref(), Some(&b"https://app.example"[..]));
        assert_eq!(head.credentials.bearer.as_deref(), Some(&b"k1"[..]));
        assert_eq!(head.credentials.api_key.as_deref(), Some(&b"k2"[..]));
        assert_eq!(
            query_parameter(&head.query, "token").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(query_parameter(&head.query, "missing"), None);
        assert!(!format!("{head:?}").contains("k1"));
    }

    #[test]
    fn error_responses_carry_their_headers() {
        let text =
            String::from_utf8(HttpError::MethodNotAllowed { allow: "GET" }.response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        let text = String::from_utf8(HttpError::HeaderTooLarge.response()).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "));
    }
}
