//! The WebSocket URL: `/app/{key}?protocol=7&client=js&version=8.4.0`.
//!
//! protocol: "Clients should make a WebSocket connection to `.../app/[key]`" with the query
//! parameters `protocol` ("The protocol version to use"), `client` ("of the form
//! `platform-library`") and `version` ("The version of the library which is connecting").
//! pusher-js sends `?protocol=7&client=js&version=8.4.0&flash=false`.
//!
//! Only protocol 7 is spoken (the current one; "Protocols 1, 2, and 3 are no longer
//! supported", 4-6 differ in error reporting this server does not reproduce). A missing
//! `protocol` is 4008 (the docs: inferring it "is deprecated and will in future be replaced by
//! a 4008 error code"); one that is not a decimal integer is 4006 ("Invalid version string
//! format"); any other number is 4007 ("Unsupported protocol version"). `client` and `version`
//! are informational: kept when short and printable, never refused.
//!
//! The refusal is sent after the WebSocket handshake completes (a browser cannot read an HTTP
//! status of a failed upgrade): the server upgrades, sends the reply of
//! [`ConnectError::reply`], and closes.
//!
//! Deliberately not here: looking the key up (`apps::Apps::by_key`, then
//! [`ConnectError::AppNotFound`] and friends), counting connections.

use super::error::ConnectError;

/// The protocol version spoken.
pub const PROTOCOL_VERSION: u32 = 7;
/// The WebSocket path prefix.
pub const CONNECT_PATH_PREFIX: &str = "/app/";
/// Longest `client` or `version` kept, in bytes.
pub const MAX_CLIENT_INFO_BYTES: usize = 64;
/// Most query parameters looked at.
pub const MAX_CONNECT_PARAMS: usize = 16;

/// A well-formed connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest<'a> {
    /// The application key from the path.
    pub app_key: &'a str,
    /// `protocol` (always [`PROTOCOL_VERSION`] once accepted).
    pub protocol: u32,
    /// `client`, when short and printable (`js`, `iOS-libPusher`).
    pub client: Option<String>,
    /// `version`, when short and printable (`8.4.0`).
    pub version: Option<String>,
}

/// Parses the path (without query) and the raw query of a Pusher WebSocket request.
pub fn parse_connect<'a>(path: &'a str, query: &str) -> Result<ConnectRequest<'a>, ConnectError> {
    let app_key = path
        .strip_prefix(CONNECT_PATH_PREFIX)
        .filter(|key| !key.is_empty() && !key.contains('/'))
        .ok_or(ConnectError::PathNotFound)?;
    let mut protocol = None;
    let mut client = None;
    let mut version = None;
    // Bounded: at most MAX_CONNECT_PARAMS pairs are looked at.
    for (key, value) in form_urlencoded::parse(query.as_bytes()).take(MAX_CONNECT_PARAMS) {
        match key.as_ref() {
            "protocol" => protocol = Some(value.into_owned()),
            "client" => client = printable(&value),
            "version" => version = printable(&value),
            _ => {}
        }
    }
    let protocol = protocol.ok_or(ConnectError::NoProtocolVersion)?;
    let is_decimal = !protocol.is_empty()
        && protocol.len() <= 9
        && protocol.bytes().all(|byte| byte.is_ascii_digit());
    if !is_decimal {
        return Err(ConnectError::InvalidVersionFormat);
    }
    let protocol: u32 = protocol
        .parse()
        .map_err(|_| ConnectError::InvalidVersionFormat)?;
    if protocol != PROTOCOL_VERSION {
        return Err(ConnectError::UnsupportedProtocolVersion(protocol));
    }
    Ok(ConnectRequest {
        app_key,
        protocol,
        client,
        version,
    })
}

fn printable(value: &str) -> Option<String> {
    let keep = !value.is_empty()
        && value.len() <= MAX_CLIENT_INFO_BYTES
        && value.bytes().all(|byte| byte.is_ascii_graphic());
    keep.then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_js_url() {
        let request = parse_connect(
            "/app/278d425bdf160c739803",
            "protocol=7&client=js&version=8.4.0&flash=false",
        );
        assert_eq!(
            request,
            Ok(ConnectRequest {
                app_key: "278d425bdf160c739803",
                protocol: 7,
                client: Some("js".into()),
                version: Some("8.4.0".into()),
            })
        );
    }

    #[test]
    fn client_and_version_are_optional_and_bounded() {
        let request = parse_connect("/app/key", "protocol=7").unwrap();
        assert_eq!((request.client, request.version), (None, None));
        let long = format!("protocol=7&client={}&version=1%202", "x".repeat(65));
        let request = parse_connect("/app/key", &long).unwrap();
        assert_eq!((request.client, request.version), (None, None));
    }

    #[test]
    fn one_test_per_error_variant() {
        for path in ["/app/", "/app", "/apps/key", "/app/key/extra", "/"] {
            assert_eq!(
                parse_connect(path, "protocol=7"),
                Err(ConnectError::PathNotFound),
                "{path}"
            );
        }
        // protocol page's own example URL asks for protocol 5.
        assert_eq!(
            parse_connect("/app/APP_KEY", "client=js&version=7.0.3&protocol=5"),
            Err(ConnectError::UnsupportedProtocolVersion(5))
        );
        assert_eq!(
            parse_connect("/app/key", "client=js&version=8.4.0"),
            Err(ConnectError::NoProtocolVersion)
        );
        for bad in [
            "protocol=",
            "protocol=seven",
            "protocol=7.0",
            "protocol=-7",
            "protocol=99999999999",
        ] {
            assert_eq!(
                parse_connect("/app/key", bad),
                Err(ConnectError::InvalidVersionFormat),
                "{bad}"
            );
        }
    }
}
