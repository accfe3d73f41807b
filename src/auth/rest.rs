//! Signed HTTP API requests (rest-api.md, "Authentication").
//!
//! "The following query parameters must be included with all requests": `auth_key`,
//! `auth_timestamp` ("The server will only accept requests where the timestamp is within 600s
//! of the current time"), `auth_version` ("currently 1.0"); `body_md5` ("must be included for
//! all requests with a non-empty body"); and `auth_signature`, "a HMAC SHA256 hex digest ...
//! of the following components concatenated with newline characters": the uppercase method,
//! the request path, and "The query parameters sorted by key, with keys converted to
//! lowercase, then joined as in the query string. Note that the string must not be
//! URL-escaped".
//!
//! So the query is percent-decoded (form encoding: `+` is a space, as Rack and Python's
//! `parse_qs` read it), keys lowercased, `auth_signature` left out, the pairs sorted by key
//! and joined as `k=v&k=v` with the decoded values. The official SDKs build that same string
//! from their unescaped parameters (`util.toOrderedArray(params).join("&")` in
//! pusher-http-node, `make_query_string` in pusher-http-python). The path is signed as sent.
//!
//! Timestamps exactly 600 s away are refused, as the reference implementation (the
//! `pusher-signature` gem) does: 599 s passes, 600 s fails.
//!
//! Deliberately not here: routing, body parsing (`api::pusher`), and the clock (callers pass
//! `now_unix_s`).

use md5::{Digest, Md5};

use super::{hex_lower, hmac_sha256_hex, verify_hmac_sha256_hex};
use crate::apps::App;

/// rest-api.md: "within 600s of the current time".
pub const TIMESTAMP_GRACE_S: u64 = 600;
/// Most query parameters a signed request may carry.
pub const MAX_QUERY_PARAMS: usize = 32;
/// Longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The only `auth_version` there is.
pub const AUTH_VERSION: &str = "1.0";

/// The parts of an HTTP request the signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestRequest<'a> {
    /// Method as sent (`GET`, `POST`).
    pub method: &'a str,
    /// Path as sent, without the query (`/apps/3/events`).
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Raw body (empty for GET).
    pub body: &'a [u8],
}

/// The request's own parameters once its signature checked out: every query parameter except
/// `auth_key`, `auth_timestamp`, `auth_version`, `body_md5` and `auth_signature`, decoded, keys
/// lowercased, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedQuery {
    /// `(key, value)` pairs, sorted by key, keys unique.
    params: Vec<(String, String)>,
}

impl SignedQuery {
    /// The value of `key` (lowercase).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .binary_search_by(|(candidate, _)| candidate.as_str().cmp(key))
            .ok()
            .map(|index| self.params[index].1.as_str())
    }

    /// Every parameter, sorted by key.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

/// Why a signed request was refused. One variant per rule; [`RestAuthError::status`] is the
/// only status mapping. The messages follow the reference implementation's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestAuthError {
    /// The query string is longer than [`MAX_QUERY_BYTES`].
    #[error("Query string too long")]
    QueryTooLong,
    /// More than [`MAX_QUERY_PARAMS`] parameters.
    #[error("Too many query parameters")]
    TooManyParams,
    /// A key appears twice (after lowercasing): the signed string would be ambiguous.
    #[error("Duplicate query parameter: {0}")]
    DuplicateParam(String),
    /// "The following query parameters must be included with all requests": `auth_key`.
    #[error("auth_key required")]
    MissingAuthKey,
    /// `auth_key` is not the key of the application in the path.
    #[error("Unknown auth_key")]
    UnknownAuthKey,
    /// `auth_timestamp` is missing.
    #[error("Timestamp required")]
    MissingTimestamp,
    /// `auth_timestamp` is not a number of seconds.
    #[error("Invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// "The server will only accept requests where the timestamp is within 600s of the
    /// current time".
    #[error(
        "Timestamp expired: Given timestamp ({}) not within 600s of server time ({})",
        iso8601_utc(*given_s),
        iso8601_utc(*now_s)
    )]
    TimestampExpired {
        /// `auth_timestamp`.
        given_s: u64,
        /// The server's clock.
        now_s: u64,
    },
    /// `auth_version` is missing.
    #[error("Version required")]
    MissingVersion,
    /// `auth_version` is not "1.0".
    #[error("Version not supported")]
    UnsupportedVersion,
    /// `auth_signature` is missing.
    #[error("Signature required")]
    MissingSignature,
    /// "The following query parameters must be included for all requests with a non-empty
    /// body": `body_md5`.
    #[error("body_md5 required for a request with a body")]
    MissingBodyMd5,
    /// `body_md5` is not the hex MD5 of the body.
    #[error("body_md5 does not match the body")]
    BodyMd5Mismatch,
    /// The signature is not the HMAC of the string to sign (which holds no secret).
    #[error(
        "Invalid signature: you should have sent HmacSHA256Hex({string_to_sign:?}, your_secret_key), but you sent {sent:?}"
    )]
    InvalidSignature {
        /// `METHOD\nPATH\nQUERY` as the server computed it.
        string_to_sign: String,
        /// The `auth_signature` received.
        sent: String,
    },
}

impl RestAuthError {
    /// rest-api.md: "400: Error: details in response body", "401: Authentication error:
    /// response body will contain an explanation".
    pub fn status(&self) -> u16 {
        match self {
            RestAuthError::QueryTooLong
            | RestAuthError::TooManyParams
            | RestAuthError::DuplicateParam(_) => 400,
            RestAuthError::MissingAuthKey
            | RestAuthError::UnknownAuthKey
            | RestAuthError::MissingTimestamp
            | RestAuthError::InvalidTimestamp(_)
            | RestAuthError::TimestampExpired { .. }
            | RestAuthError::MissingVersion
            | RestAuthError::UnsupportedVersion
            | RestAuthError::MissingSignature
            | RestAuthError::MissingBodyMd5
            | RestAuthError::BodyMd5Mismatch
            | RestAuthError::InvalidSignature { .. } => 401,
        }
    }
}

/// The authentication parameters, taken out of the query.
#[derive(Default)]
struct AuthParams {
    /// `auth_key`.
    key: Option<String>,
    /// `auth_timestamp`.
    timestamp: Option<String>,
    /// `auth_version`.
    version: Option<String>,
    /// `body_md5`.
    body_md5: Option<String>,
    /// `auth_signature`.
    signature: Option<String>,
}

/// Verifies a signed request for `app` (the application named in the path) at `now_unix_s`.
pub fn verify_request(
    app: &App,
    request: &RestRequest<'_>,
    now_unix_s: u64,
) -> Result<SignedQuery, RestAuthError> {
    let params = decode_query(request.query)?;
    let mut auth = AuthParams::default();
    let mut own = Vec::with_capacity(params.len());
    // Bounded: at most MAX_QUERY_PARAMS pairs.
    for (key, value) in &params {
        let slot = match key.as_str() {
            "auth_key" => &mut auth.key,
            "auth_timestamp" => &mut auth.timestamp,
            "auth_version" => &mut auth.version,
            "body_md5" => &mut auth.body_md5,
            "auth_signature" => &mut auth.signature,
            _ => {
                own.push((key.clone(), value.clone()));
                continue;
            }
        };
        *slot = Some(value.clone());
    }
    check_auth_params(app, &auth, request.body, now_unix_s)?;
    let signature = auth.signature.as_deref().unwrap_or_default();
    let string_to_sign = string_to_sign(request.method, request.path, &params);
    if !verify_hmac_sha256_hex(app.secret.expose(), &[string_to_sign.as_bytes()], signature) {
        return Err(RestAuthError::InvalidSignature {
            string_to_sign,
            sent: signature.to_string(),
        });
    }
    if let Some(claimed) = &auth.body_md5
        && !claimed.eq_ignore_ascii_case(&body_md5_hex(request.body))
    {
        return Err(RestAuthError::BodyMd5Mismatch);
    }
    Ok(SignedQuery { params: own })
}

/// Presence and validity of everything but the signature, in the reference order.
fn check_auth_params(
    app: &App,
    auth: &AuthParams,
    body: &[u8],
    now_unix_s: u64,
) -> Result<(), RestAuthError> {
    let key = auth.key.as_deref().ok_or(RestAuthError::MissingAuthKey)?;
    if key != app.key {
        return Err(RestAuthError::UnknownAuthKey);
    }
    let timestamp = auth
        .timestamp
        .as_deref()
        .ok_or(RestAuthError::MissingTimestamp)?;
    let given_s: u64 = timestamp
        .parse()
        .map_err(|_| RestAuthError::InvalidTimestamp(timestamp.to_string()))?;
    if given_s.abs_diff(now_unix_s) >= TIMESTAMP_GRACE_S {
        return Err(RestAuthError::TimestampExpired {
            given_s,
            now_s: now_unix_s,
        });
    }
    match auth.version.as_deref() {
        None => return Err(RestAuthError::MissingVersion),
        Some(AUTH_VERSION) => {}
        Some(_) => return Err(RestAuthError::UnsupportedVersion),
    }
    if auth.signature.is_none() {
        return Err(RestAuthError::MissingSignature);
    }
    if !body.is_empty() && auth.body_md5.is_none() {
        return Err(RestAuthError::MissingBodyMd5);
    }
    Ok(())
}

/// Decodes `query` into `(lowercase key, value)` pairs sorted by key, refusing duplicates.
fn decode_query(query: &str) -> Result<Vec<(String, String)>, RestAuthError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(RestAuthError::QueryTooLong);
    }
    let mut params: Vec<(String, String)> = Vec::new();
    // Bounded: at most MAX_QUERY_PARAMS + 1 pairs are looked at.
    for (key, value) in form_urlencoded::parse(query.as_bytes()).take(MAX_QUERY_PARAMS + 1) {
        if params.len() == MAX_QUERY_PARAMS {
            return Err(RestAuthError::TooManyParams);
        }
        params.push((key.to_lowercase(), value.into_owned()));
    }
    params.sort_by(|(left, _), (right, _)| left.cmp(right));
    if let Some(pair) = params.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(RestAuthError::DuplicateParam(pair[0].0.clone()));
    }
    Ok(params)
}

/// `METHOD\nPATH\nk=v&k=v` over `params` (sorted, keys lowercase), leaving out
/// `auth_signature`.
fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut out = String::with_capacity(method.len() + path.len() + 2 + 64 * params.len());
    out.push_str(&method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(path);
    out.push('\n');
    let mut first = true;
    // Bounded: at most MAX_QUERY_PARAMS pairs.
    for (key, value) in params.iter().filter(|(key, _)| key != "auth_signature") {
        if !first {
            out.push('&');
        }
        first = false;
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Hex MD5 of `body`, as `body_md5` carries it.
pub fn body_md5_hex(body: &[u8]) -> String {
    hex_lower(&Md5::digest(body))
}

/// Builds the signed query string for a request, as the server SDKs do (tests, the benchmark's
/// publisher): the authentication parameters plus `params`, sorted, values percent-encoded for
/// the URL, `auth_signature` last. `body_md5` is included when `body` is not empty.
pub fn sign_query(
    app: &App,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    timestamp_s: u64,
) -> String {
    let mut pairs: Vec<(String, String)> = vec![
        ("auth_key".into(), app.key.clone()),
        ("auth_timestamp".into(), timestamp_s.to_string()),
        ("auth_version".into(), AUTH_VERSION.into()),
    ];
    if !body.is_empty() {
        pairs.push(("body_md5".into(), body_md5_hex(body)));
    }
    pairs.extend(
        params
            .iter()
            .map(|(key, value)| (key.to_lowercase(), value.to_string())),
    );
    pairs.sort_by(|(left, _), (right, _)| left.cmp(right));
    let signature = hmac_sha256_hex(
        app.secret.expose(),
        &[string_to_sign(method, path, &pairs).as_bytes()],
    );
    pairs.push(("auth_signature".into(), signature));
    let mut query = form_urlencoded::Serializer::new(String::new());
    // Bounded: one pair per parameter given plus five.
    for (key, value) in &pairs {
        query.append_pair(key, value);
    }
    query.finish()
}

/// `1970-01-01T00:20:34Z` for 1234: the timestamps in [`RestAuthError::TimestampExpired`].
pub fn iso8601_utc(unix_s: u64) -> String {
    let days = unix_s / 86_400;
    let seconds_of_day = unix_s % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60
    )
}

/// Gregorian date of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`, for
/// non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rest-api.md, "Worked authentication example": "app_id 3 key 278d425bdf160c739803
    /// secret 7ad3773142a6692b25b8".
    fn docs_app() -> App {
        App::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8").unwrap()
    }

    const DOCS_BODY: &[u8] =
        br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const DOCS_QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";
    const DOCS_NOW_S: u64 = 1_353_088_179;

    fn docs_request(query: &str) -> RestRequest<'_> {
        RestRequest {
            method: "POST",
            path: "/apps/3/events",
            query,
            body: DOCS_BODY,
        }
    }

    #[test]
    fn worked_example_from_the_docs() {
        assert_eq!(body_md5_hex(DOCS_BODY), "ec365a775a4cd0599faeb73354201b6f");
        let params = decode_query(DOCS_QUERY).unwrap();
        assert_eq!(
            string_to_sign("POST", "/apps/3/events", &params),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        let verified = verify_request(&docs_app(), &docs_request(DOCS_QUERY), DOCS_NOW_S);
        assert_eq!(verified, Ok(SignedQuery::default()));
        let signed = sign_query(
            &docs_app(),
            "POST",
            "/apps/3/events",
            &[],
            DOCS_BODY,
            DOCS_NOW_S,
        );
        assert!(signed.ends_with(
            "&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        ));
    }

    #[test]
    fn timestamp_window_is_600_seconds_exclusive() {
        let app = docs_app();
        for now in [DOCS_NOW_S - 599, DOCS_NOW_S + 599] {
            assert!(verify_request(&app, &docs_request(DOCS_QUERY), now).is_ok());
        }
        for now in [DOCS_NOW_S - 600, DOCS_NOW_S + 600] {
            assert!(matches!(
                verify_request(&app, &docs_request(DOCS_QUERY), now),
                Err(RestAuthError::TimestampExpired { .. })
            ));
        }
        let expired = RestAuthError::TimestampExpired {
            given_s: 1234,
            now_s: 1234 + 600,
        };
        assert_eq!(
            expired.to_string(),
            "Timestamp expired: Given timestamp (1970-01-01T00:20:34Z) not within 600s of server time (1970-01-01T00:30:34Z)"
        );
    }

    #[test]
    fn own_parameters_are_signed_decoded_and_returned() {
        let app = docs_app();
        let path = "/apps/3/channels";
        let params = [
            ("filter_by_prefix", "presence-"),
            ("info", "user_count,subscription_count"),
        ];
        let query = sign_query(&app, "GET", path, &params, b"", DOCS_NOW_S);
        assert!(
            query.contains("info=user_count%2Csubscription_count"),
            "{query}"
        );
        let request = RestRequest {
            method: "GET",
            path,
            query: &query,
            body: b"",
        };
        let verified = verify_request(&app, &request, DOCS_NOW_S).unwrap();
        assert_eq!(verified.get("info"), Some("user_count,subscription_count"));
        assert_eq!(verified.get("filter_by_prefix"), Some("presence-"));
        assert_eq!(verified.get("auth_key"), None);
        // The SDKs put values in the URL unescaped; the signature is over the same text.
        let unescaped = query.replace("%2C", ",");
        let request = RestRequest {
            query: &unescaped,
            ..request
        };
        assert!(verify_request(&app, &request, DOCS_NOW_S).is_ok());
        // Keys are lowercased before signing: `Name` signs as `name`.
        let mixed_case = sign_query(&app, "GET", path, &[("Name", "Something else")], b"", 1);
        let request = RestRequest {
            query: &mixed_case.replace("name=", "NAME="),
            ..request
        };
        let verified = verify_request(&app, &request, 1).unwrap();
        assert_eq!(verified.get("name"), Some("Something else"));
    }

    #[test]
    fn python_sdk_sends_body_md5_of_an_empty_body() {
        let app = docs_app();
        let mut pairs = vec![
            ("auth_key", "278d425bdf160c739803".to_string()),
            ("auth_timestamp", DOCS_NOW_S.to_string()),
            ("auth_version", "1.0".to_string()),
            ("body_md5", "d41d8cd98f00b204e9800998ecf8427e".to_string()),
        ];
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let signature = hmac_sha256_hex(
            b"7ad3773142a6692b25b8",
            &[string_to_sign("GET", "/apps/3/channels", &owned).as_bytes()],
        );
        pairs.push(("auth_signature", signature));
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let request = RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            query: &query,
            body: b"",
        };
        assert!(verify_request(&app, &request, DOCS_NOW_S).is_ok());
    }

    fn without(param: &str) -> String {
        DOCS_QUERY
            .split('&')
            .filter(|pair| !pair.starts_with(&format!("{param}=")))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn replacing(param: &str, value: &str) -> String {
        DOCS_QUERY
            .split('&')
            .map(|pair| {
                if pair.starts_with(&format!("{param}=")) {
                    format!("{param}={value}")
                } else {
                    pair.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    #[test]
    fn one_test_per_error_variant() {
        let app = docs_app();
        let check = |query: &str| verify_request(&app, &docs_request(query), DOCS_NOW_S);
        let long = format!("{DOCS_QUERY}&x={}", "y".repeat(MAX_QUERY_BYTES));
        assert_eq!(check(&long), Err(RestAuthError::QueryTooLong));
        let many = (0..=MAX_QUERY_PARAMS)
            .map(|index| format!("p{index}=1"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(check(&many), Err(RestAuthError::TooManyParams));
        assert_eq!(
            check(&format!("{DOCS_QUERY}&AUTH_KEY=x")),
            Err(RestAuthError::DuplicateParam("auth_key".into()))
        );
        assert_eq!(
            check(&without("auth_key")),
            Err(RestAuthError::MissingAuthKey)
        );
        assert_eq!(
            check(&replacing("auth_key", "other")),
            Err(RestAuthError::UnknownAuthKey)
        );
        assert_eq!(
            check(&without("auth_timestamp")),
            Err(RestAuthError::MissingTimestamp)
        );
        assert_eq!(
            check(&replacing("auth_timestamp", "soon")),
            Err(RestAuthError::InvalidTimestamp("soon".into()))
        );
        assert!(matches!(
            check(&replacing("auth_timestamp", "1")),
            Err(RestAuthError::TimestampExpired { given_s: 1, .. })
        ));
        assert_eq!(
            check(&without("auth_version")),
            Err(RestAuthError::MissingVersion)
        );
        assert_eq!(
            check(&replacing("auth_version", "2.0")),
            Err(RestAuthError::UnsupportedVersion)
        );
        assert_eq!(
            check(&without("auth_signature")),
            Err(RestAuthError::MissingSignature)
        );
        assert_eq!(
            check(&without("body_md5")),
            Err(RestAuthError::MissingBodyMd5)
        );
        let tampered = RestRequest {
            body: br#"{"name":"foo","channels":["project-4"],"data":"{}"}"#,
            ..docs_request(DOCS_QUERY)
        };
        assert_eq!(
            verify_request(&app, &tampered, DOCS_NOW_S),
            Err(RestAuthError::BodyMd5Mismatch)
        );
        let wrong = check(&replacing("auth_signature", "asdf")).unwrap_err();
        assert!(matches!(wrong, RestAuthError::InvalidSignature { .. }));
        assert_eq!(
            wrong.to_string(),
            "Invalid signature: you should have sent HmacSHA256Hex(\"POST\\n/apps/3/events\\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f\", your_secret_key), but you sent \"asdf\""
        );
        assert_eq!(wrong.status(), 401);
        assert_eq!(RestAuthError::TooManyParams.status(), 400);
    }

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_utc(1_353_088_179), "2012-11-16T17:49:39Z");
        assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
