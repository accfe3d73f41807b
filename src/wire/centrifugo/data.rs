//! How a publication's payload travels inside the JSON protocol.
//!
//! Centrifugo's docs (`docs/transports/client_protocol.md`): "in JSON format `bytes` fields
//! transformed into embedded JSON by Centrifugo". Its own API only accepts JSON `data`, so for
//! Centrifugo every payload is JSON. ringcast also takes raw bodies (`POST /publish/{channel}`,
//! Redis), so it decides, once per message:
//! - valid JSON: embedded as is, minus raw newlines (`\n` separates replies in a frame; in valid
//!   JSON a raw newline can only be whitespace between tokens, so removing it changes nothing:
//!   centrifugal/protocol's `Raw.MarshalJSON` does the same);
//! - any other UTF-8 text: embedded as a JSON string (`hello` arrives as `"hello"`); a client
//!   cannot tell it from a publisher that sent the JSON string `"hello"`;
//! - anything that is not UTF-8: refused ([`InappropriateProtocol`]); Centrifugo disconnects
//!   JSON subscribers of such a publication with 3506 "inappropriate protocol" ("JSON clients
//!   can not handle binary").

/// A payload the JSON protocol cannot carry (not UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("binary payload: the JSON protocol can not carry it")]
pub struct InappropriateProtocol;

/// How a payload is embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonData<'a> {
    /// Valid JSON, embedded as is (raw newlines dropped).
    Json(&'a [u8]),
    /// Text that is not JSON, embedded as a JSON string.
    Text(&'a str),
}

impl<'a> JsonData<'a> {
    /// Decides how `payload` is embedded.
    pub fn classify(payload: &'a [u8]) -> Result<JsonData<'a>, InappropriateProtocol> {
        if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok() {
            return Ok(JsonData::Json(payload));
        }
        std::str::from_utf8(payload)
            .map(JsonData::Text)
            .map_err(|_| InappropriateProtocol)
    }

    /// Bytes [`JsonData::write`] appends at most for plain content (an estimate for capacity).
    pub fn len_hint(&self) -> usize {
        match self {
            JsonData::Json(json) => json.len(),
            JsonData::Text(text) => text.len() + 2,
        }
    }

    /// Appends the embedded form to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            JsonData::Json(json) => {
                // Bounded: one pass over the payload.
                for piece in json.split(|&byte| byte == b'\n') {
                    out.extend_from_slice(piece);
                }
            }
            JsonData::Text(text) => {
                // Writing a &str to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, text);
            }
        }
    }
}

/// Appends `raw` JSON text (a value taken from a client command, already valid) as is.
pub fn write_raw(out: &mut Vec<u8>, raw: &[u8]) {
    out.extend_from_slice(raw);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn embedded(payload: &[u8]) -> Result<String, InappropriateProtocol> {
        let data = JsonData::classify(payload)?;
        let mut out = Vec::new();
        data.write(&mut out);
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn json_is_embedded_as_is() {
        assert_eq!(
            embedded(br#"{"input":"hello"}"#).unwrap(),
            r#"{"input":"hello"}"#
        );
        assert_eq!(embedded(b"42").unwrap(), "42");
        assert_eq!(embedded(b"null").unwrap(), "null");
        assert_eq!(embedded(b" [1, 2] ").unwrap(), " [1, 2] ");
    }

    #[test]
    fn raw_newlines_are_dropped_from_json() {
        assert_eq!(
            embedded(b"{\n  \"a\": \"x\\ny\"\n}\n").unwrap(),
            "{  \"a\": \"x\\ny\"}"
        );
    }

    #[test]
    fn other_text_becomes_a_json_string() {
        assert_eq!(embedded(b"hello").unwrap(), r#""hello""#);
        assert_eq!(embedded(b"").unwrap(), r#""""#);
        assert_eq!(embedded(b"a\"b\nc").unwrap(), r#""a\"b\nc""#);
        assert_eq!(embedded(b"{broken").unwrap(), r#""{broken""#);
    }

    #[test]
    fn binary_is_refused() {
        assert_eq!(embedded(&[0xff, 0xfe]), Err(InappropriateProtocol));
    }

    proptest! {
        /// Whatever UTF-8 payload, the embedded form is one line of valid JSON.
        #[test]
        fn embedded_text_is_one_json_line(text in ".*") {
            let line = embedded(text.as_bytes()).unwrap();
            prop_assert!(!line.contains('\n'));
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                prop_assert_eq!(value, serde_json::Value::String(text));
            }
        }
    }
}
