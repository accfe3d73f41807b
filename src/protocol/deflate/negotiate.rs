//! RFC 7692 §5 and §7.1: permessage-deflate negotiation, server side.
//!
//! The client lists offers in `Sec-WebSocket-Extensions` (RFC 6455 §9.1 grammar, several header
//! lines combined with commas as RFC 7230 §3.2.2 allows); the server accepts at most one and
//! answers with the agreed parameters. Every offer of `permessage-deflate` is read in order; an
//! offer that breaks a §7.1 rule is declined (a typed [`Decline`]) and the next one is tried.
//!
//! What ringcast agrees to, and why:
//! - `server_no_context_takeover`, always, offered or not (§7.1.1.1 allows adding it): each
//!   message is compressed on its own, so the same compressed frame serves every subscriber.
//! - `server_max_window_bits=N`, when offered, is accepted with the same N (§7.1.2.1). The
//!   compressor uses a 32 KiB window, but with no context kept a message of at most 2^N bytes
//!   can never refer further back than 2^N bytes, so such a connection is sent the compressed
//!   frame only for messages of at most 2^N bytes ([`Negotiated::may_send_compressed`]) and the
//!   uncompressed frame otherwise: the promise holds without a second compressor.
//! - `client_no_context_takeover`: echoed when offered; added to every response under the
//!   default [`ClientContextPolicy::AlwaysReset`], so the inflater lives only while a message is
//!   being inflated instead of for the rest of the connection (about 47 KB measured).
//! - `client_max_window_bits` is never answered: the inflater takes any window up to 15, and a
//!   smaller one would not make it smaller (measured), so there is nothing to ask for.
//!
//! Deliberately not here: reading HTTP headers (`http.rs` combines them) and writing the 101
//! response (`handshake.rs`).

/// The extension token (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The base-2 logarithm of an LZ77 sliding window, 8..=15 (RFC 7692 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WindowBits(u8);

impl WindowBits {
    /// 256 bytes, the smallest window RFC 7692 allows.
    pub const MIN: WindowBits = WindowBits(8);
    /// 32 KiB, the DEFLATE maximum and the default when nothing is negotiated.
    pub const MAX: WindowBits = WindowBits(15);

    /// `bits` if it is within 8..=15.
    pub fn new(bits: u8) -> Option<WindowBits> {
        (WindowBits::MIN.0..=WindowBits::MAX.0)
            .contains(&bits)
            .then_some(WindowBits(bits))
    }

    /// The logarithm.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The window size in bytes.
    pub fn window_bytes(self) -> usize {
        1 << self.0
    }
}

/// Whether an endpoint keeps its LZ77 window from one message to the next (RFC 7692 §7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextTakeover {
    /// The window carries over: the receiver's inflater must live as long as the connection.
    Kept,
    /// `*_no_context_takeover`: each message is compressed on its own.
    Reset,
}

/// What the server answers about the client's context when the client did not offer
/// `client_no_context_takeover` (RFC 7692 §7.1.1.2 lets the server add it to any response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientContextPolicy {
    /// Always answer `client_no_context_takeover`: a client's inflater is dropped after each
    /// message, so a connection that once sent a compressed message does not keep ~47 KB.
    #[default]
    AlwaysReset,
    /// Let the client keep its window unless it offered not to (better compression of client
    /// messages; each such connection keeps its inflater after its first compressed message).
    AsOffered,
}

/// The server's side of the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflatePolicy {
    /// See [`ClientContextPolicy`]; default `AlwaysReset`.
    pub client_context: ClientContextPolicy,
}

/// What an offer said about `client_max_window_bits` (RFC 7692 §7.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWindowOffer {
    /// Not offered: the server must not answer with it.
    Absent,
    /// Offered without a value: the client accepts a limit from the server.
    Unspecified,
    /// Offered with a value: the client will not use a larger window.
    Limit(WindowBits),
}

/// One valid `permessage-deflate` offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// `server_no_context_takeover` offered: `Reset`.
    pub server_context: ContextTakeover,
    /// `client_no_context_takeover` offered: `Reset` (a promise by the client, §7.1.1.2).
    pub client_context: ContextTakeover,
    /// `server_max_window_bits`, if offered.
    pub server_max_window_bits: Option<WindowBits>,
    /// `client_max_window_bits`.
    pub client_max_window_bits: ClientWindowOffer,
}

/// The four parameters RFC 7692 §7.1 defines for an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameter {
    /// §7.1.1.1.
    ServerNoContextTakeover,
    /// §7.1.1.2.
    ClientNoContextTakeover,
    /// §7.1.2.1.
    ServerMaxWindowBits,
    /// §7.1.2.2.
    ClientMaxWindowBits,
}

impl Parameter {
    fn from_name(name: &[u8]) -> Option<Parameter> {
        [
            (
                &b"server_no_context_takeover"[..],
                Parameter::ServerNoContextTakeover,
            ),
            (
                b"client_no_context_takeover",
                Parameter::ClientNoContextTakeover,
            ),
            (b"server_max_window_bits", Parameter::ServerMaxWindowBits),
            (b"client_max_window_bits", Parameter::ClientMaxWindowBits),
        ]
        .into_iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, parameter)| parameter)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Why an offer of `permessage-deflate` was declined: one variant per rule of RFC 7692 §7.1
/// ("A server MUST decline an extension negotiation offer for this extension if any of the
/// following conditions are met") plus the RFC 6455 §9.1 grammar. A decline is not an error of
/// the handshake: the next offer is tried, and without one the connection is uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Decline {
    /// RFC 6455 §9.1: `extension-param = token [ "=" (token | quoted-string) ]`.
    #[error("malformed extension parameter")]
    Malformed,
    /// §7.1: "The negotiation offer contains an extension parameter not defined for use in an
    /// offer."
    #[error("unknown extension parameter")]
    UnknownParameter,
    /// §7.1: "The negotiation offer contains an extension parameter with an invalid value."
    #[error("invalid value for {0:?}")]
    InvalidValue(Parameter),
    /// §7.1: "The negotiation offer contains multiple extension parameters with the same name."
    #[error("{0:?} given twice")]
    DuplicateParameter(Parameter),
}

/// What the server agreed to; its response is [`Negotiated::response_value`]. The server's own
/// context is always reset (`server_no_context_takeover`), so it is no field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Whether the client keeps its window between messages, so whether the connection's
    /// inflater outlives a message.
    pub client_context: ContextTakeover,
    /// The window the client asked the server to stay within, echoed in the response; `None`
    /// when not offered (32 KiB, nothing to limit).
    pub server_max_window_bits: Option<WindowBits>,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response_value(&self) -> String {
        let mut value = format!("{EXTENSION_NAME}; server_no_context_takeover");
        if self.client_context == ContextTakeover::Reset {
            value.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            value.push_str(&format!("; server_max_window_bits={}", bits.get()));
        }
        value
    }

    /// May this connection be sent the compressed frame of a message of `message_bytes`?
    /// With no context kept, a message of at most 2^N bytes never refers more than 2^N bytes
    /// back, which keeps the `server_max_window_bits=N` promise (RFC 7692 §7.1.2.1) with the
    /// shared 32 KiB-window compressor; a longer message goes out uncompressed (RSV1 clear is
    /// always allowed, §6).
    pub fn may_send_compressed(&self, message_bytes: usize) -> bool {
        match self.server_max_window_bits {
            None => true,
            Some(bits) => bits == WindowBits::MAX || message_bytes <= bits.window_bytes(),
        }
    }

    /// How the connection's frame decoder must treat RSV1 and inflate.
    pub fn inbound(&self) -> InboundCompression {
        InboundCompression::Deflate(self.client_context)
    }
}

/// What the frame decoder of a connection does with client messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundCompression {
    /// No extension: RSV1 is a protocol error, as without this module.
    Off,
    /// permessage-deflate: RSV1 marks a compressed message; the inflater's window is kept or
    /// dropped after each message.
    Deflate(ContextTakeover),
}

/// Picks the first `permessage-deflate` offer in `extensions` (the combined
/// `Sec-WebSocket-Extensions` value) that is valid, and what the server agrees to; `None` when
/// there is none (the connection is then uncompressed).
pub fn negotiate(extensions: &[u8], policy: &DeflatePolicy) -> Option<Negotiated> {
    offers(extensions).find_map(|offer| offer.ok().map(|offer| accept(&offer, policy)))
}

/// Every valid offer is honoured (see the module header for the window): the response.
fn accept(offer: &Offer, policy: &DeflatePolicy) -> Negotiated {
    // §7.1.1.2: "A server MAY include the "client_no_context_takeover" extension parameter in
    // an extension negotiation response."
    let client_context = match (offer.client_context, policy.client_context) {
        (ContextTakeover::Reset, _) | (_, ClientContextPolicy::AlwaysReset) => {
            ContextTakeover::Reset
        }
        (ContextTakeover::Kept, ClientContextPolicy::AsOffered) => ContextTakeover::Kept,
    };
    Negotiated {
        client_context,
        // §7.1.2.1: "A server accepts an extension negotiation offer with this parameter by
        // including the "server_max_window_bits" extension parameter in the extension
        // negotiation response to send back to the client with the same or smaller value".
        server_max_window_bits: offer.server_max_window_bits,
    }
}

/// Every `permessage-deflate` offer in `extensions`, in order, each read or declined. Other
/// extensions are skipped. Bounded: one item per comma-separated element of the value, whose
/// length the HTTP head limit bounds.
pub fn offers(extensions: &[u8]) -> impl Iterator<Item = Result<Offer, Decline>> + '_ {
    Unquoted::new(extensions, b',').filter_map(|element| {
        let mut pieces = Unquoted::new(element, b';');
        let name = trim(pieces.next().unwrap_or_default());
        name.eq_ignore_ascii_case(EXTENSION_NAME.as_bytes())
            .then(|| parse_offer(pieces))
    })
}

/// Reads the parameters of one offer (the pieces after its name).
fn parse_offer<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Result<Offer, Decline> {
    let mut offer = Offer {
        server_context: ContextTakeover::Kept,
        client_context: ContextTakeover::Kept,
        server_max_window_bits: None,
        client_max_window_bits: ClientWindowOffer::Absent,
    };
    let mut seen = 0u8;
    // Bounded: one pass per ';'-separated piece of a bounded header value.
    for piece in pieces {
        let (name, value) = split_parameter(piece)?;
        let parameter = Parameter::from_name(name).ok_or(Decline::UnknownParameter)?;
        if seen & parameter.bit() != 0 {
            return Err(Decline::DuplicateParameter(parameter));
        }
        seen |= parameter.bit();
        let invalid = Decline::InvalidValue(parameter);
        match (parameter, value) {
            // §7.1.1.1 and §7.1.1.2: "This extension parameter has no value."
            (Parameter::ServerNoContextTakeover, None) => {
                offer.server_context = ContextTakeover::Reset;
            }
            (Parameter::ClientNoContextTakeover, None) => {
                offer.client_context = ContextTakeover::Reset;
            }
            (Parameter::ServerNoContextTakeover | Parameter::ClientNoContextTakeover, Some(_)) => {
                return Err(invalid);
            }
            // §7.1.2.1: the value is required, "a decimal integer value without leading zeroes
            // between 8 to 15, inclusive".
            (Parameter::ServerMaxWindowBits, value) => {
                let bits = value.as_deref().and_then(parse_window_bits);
                offer.server_max_window_bits = Some(bits.ok_or(invalid)?);
            }
            // §7.1.2.2: "This parameter has no value or a decimal integer value without leading
            // zeroes between 8 to 15 inclusive".
            (Parameter::ClientMaxWindowBits, None) => {
                offer.client_max_window_bits = ClientWindowOffer::Unspecified;
            }
            (Parameter::ClientMaxWindowBits, Some(value)) => {
                let bits = parse_window_bits(&value).ok_or(invalid)?;
                offer.client_max_window_bits = ClientWindowOffer::Limit(bits);
            }
        }
    }
    Ok(offer)
}

/// Splits `name [ "=" value ]`, checking the name is a token and unquoting the value (RFC 6455
/// §9.1: "When using the quoted-string syntax variant, the value after quoted-string unescaping
/// MUST conform to the 'token' ABNF.").
fn split_parameter(piece: &[u8]) -> Result<(&[u8], Option<Vec<u8>>), Decline> {
    let (name, value) = match piece.iter().position(|&byte| byte == b'=') {
        Some(at) => (trim(&piece[..at]), Some(trim(&piece[at + 1..]))),
        None => (trim(piece), None),
    };
    if !is_token(name) {
        return Err(Decline::Malformed);
    }
    let Some(value) = value else {
        return Ok((name, None));
    };
    let value = match value.strip_prefix(b"\"") {
        Some(quoted) => unquote(quoted).ok_or(Decline::Malformed)?,
        None => value.to_vec(),
    };
    if !is_token(&value) {
        return Err(Decline::Malformed);
    }
    Ok((name, Some(value)))
}

/// The content of a quoted-string whose opening quote is already stripped: escapes resolved,
/// `None` unless the closing quote is the last byte.
fn unquote(quoted: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(quoted.len());
    let mut bytes = quoted.iter();
    // Bounded: one pass per byte of the value.
    while let Some(&byte) = bytes.next() {
        match byte {
            b'\\' => out.push(*bytes.next()?),
            b'"' => return bytes.next().is_none().then_some(out),
            other => out.push(other),
        }
    }
    None
}

/// RFC 7692 §7.1.2: `1*DIGIT`, no leading zero, 8..=15.
fn parse_window_bits(value: &[u8]) -> Option<WindowBits> {
    let digits_ok =
        matches!(value.len(), 1 | 2) && value[0] != b'0' && value.iter().all(u8::is_ascii_digit);
    if !digits_ok {
        return None;
    }
    let bits = value
        .iter()
        .fold(0u8, |total, digit| total * 10 + (digit - b'0'));
    WindowBits::new(bits)
}

/// RFC 7230 §3.2.6: `token = 1*tchar`.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// Strips optional whitespace (RFC 7230 OWS: spaces and tabs).
fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |end| end + 1);
    &bytes[start..end]
}

/// Splits a header value at a delimiter that is not inside a quoted-string (a quoted value may
/// hold a comma or a semicolon). An unterminated quote runs to the end of the value.
struct Unquoted<'a> {
    /// What is left to split; `None` once the last piece was returned.
    rest: Option<&'a [u8]>,
    /// The delimiter byte.
    delimiter: u8,
}

impl<'a> Unquoted<'a> {
    fn new(value: &'a [u8], delimiter: u8) -> Unquoted<'a> {
        Unquoted {
            rest: Some(value),
            delimiter,
        }
    }
}

impl<'a> Iterator for Unquoted<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        let mut quoted = false;
        let mut escaped = false;
        // Bounded: one pass per byte of the remaining value.
        for (at, &byte) in rest.iter().enumerate() {
            match (quoted, escaped, byte) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, false, b'"') => quoted = !quoted,
                (false, _, delimiter) if delimiter == self.delimiter => {
                    self.rest = Some(&rest[at + 1..]);
                    return Some(&rest[..at]);
                }
                _ => {}
            }
        }
        self.rest = None;
        Some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(extensions: &str) -> Option<Result<Offer, Decline>> {
        offers(extensions.as_bytes()).next()
    }

    fn agreed(extensions: &str) -> Option<String> {
        negotiate(extensions.as_bytes(), &DeflatePolicy::default()).map(|n| n.response_value())
    }

    const BARE: Offer = Offer {
        server_context: ContextTakeover::Kept,
        client_context: ContextTakeover::Kept,
        server_max_window_bits: None,
        client_max_window_bits: ClientWindowOffer::Absent,
    };

    #[test]
    fn each_parameter_is_read() {
        let bits = |n| WindowBits::new(n).unwrap();
        let cases = [
            ("permessage-deflate", BARE),
            (
                "permessage-deflate; server_no_context_takeover",
                Offer {
                    server_context: ContextTakeover::Reset,
                    ..BARE
                },
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                Offer {
                    client_context: ContextTakeover::Reset,
                    ..BARE
                },
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                Offer {
                    server_max_window_bits: Some(bits(10)),
                    ..BARE
                },
            ),
            (
                "permessage-deflate; client_max_window_bits",
                Offer {
                    client_max_window_bits: ClientWindowOffer::Unspecified,
                    ..BARE
                },
            ),
            (
                "permessage-deflate; client_max_window_bits=8",
                Offer {
                    client_max_window_bits: ClientWindowOffer::Limit(bits(8)),
                    ..BARE
                },
            ),
            (
                // Quoted values, odd case and whitespace are all RFC 6455 §9.1 syntax.
                "Permessage-Deflate ;\tCLIENT_MAX_WINDOW_BITS = \"15\" ; server_max_window_bits=\"8\"",
                Offer {
                    server_max_window_bits: Some(bits(8)),
                    client_max_window_bits: ClientWindowOffer::Limit(bits(15)),
                    ..BARE
                },
            ),
        ];
        for (extensions, expected) in cases {
            assert_eq!(first(extensions), Some(Ok(expected)), "{extensions}");
        }
    }

    #[test]
    fn each_rule_declines_the_offer() {
        use Parameter::*;
        let cases = [
            ("permessage-deflate; foo", Decline::UnknownParameter),
            ("permessage-deflate; x=1", Decline::UnknownParameter),
            (
                "permessage-deflate; server_no_context_takeover=1",
                Decline::InvalidValue(ServerNoContextTakeover),
            ),
            (
                "permessage-deflate; client_no_context_takeover=\"\"",
                Decline::Malformed,
            ),
            (
                "permessage-deflate; client_no_context_takeover=x",
                Decline::InvalidValue(ClientNoContextTakeover),
            ),
            (
                "permessage-deflate; server_max_window_bits",
                Decline::InvalidValue(ServerMaxWindowBits),
            ),
            (
                "permessage-deflate; server_max_window_bits=7",
                Decline::InvalidValue(ServerMaxWindowBits),
            ),
            (
                "permessage-deflate; server_max_window_bits=16",
                Decline::InvalidValue(ServerMaxWindowBits),
            ),
            (
                "permessage-deflate; server_max_window_bits=09",
                Decline::InvalidValue(ServerMaxWindowBits),
            ),
            (
                "permessage-deflate; client_max_window_bits=0x9",
                Decline::InvalidValue(ClientMaxWindowBits),
            ),
            (
                "permessage-deflate; client_max_window_bits=100",
                Decline::InvalidValue(ClientMaxWindowBits),
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                Decline::DuplicateParameter(ServerNoContextTakeover),
            ),
            (
                "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
                Decline::DuplicateParameter(ClientMaxWindowBits),
            ),
            (
                "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
                Decline::DuplicateParameter(ClientNoContextTakeover),
            ),
            (
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
                Decline::DuplicateParameter(ServerMaxWindowBits),
            ),
            ("permessage-deflate; ", Decline::Malformed),
            ("permessage-deflate; =9", Decline::Malformed),
            (
                "permessage-deflate; server_max_window_bits=\"9",
                Decline::Malformed,
            ),
            (
                "permessage-deflate; server_max_window_bits=\"9\"x",
                Decline::Malformed,
            ),
            (
                "permessage-deflate; client_max_window_bits=9 9",
                Decline::Malformed,
            ),
        ];
        for (extensions, decline) in cases {
            assert_eq!(first(extensions), Some(Err(decline)), "{extensions}");
            assert_eq!(agreed(extensions), None, "{extensions}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        // Autobahn 13.7's offers: the first with a small server window, then fallbacks.
        let offers = "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
             server_no_context_takeover; server_max_window_bits=8, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits, \
             permessage-deflate";
        assert_eq!(
            agreed(offers).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=8"
            )
        );
        // A declined offer is skipped; other extensions are ignored.
        let offers = "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, \
             permessage-deflate; server_max_window_bits=12";
        assert_eq!(
            agreed(offers).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=12"
            )
        );
        // A comma inside a quoted value does not split the list.
        let offers = "foo; bar=\"a,b\", permessage-deflate";
        assert_eq!(offers_count(offers), 1);
        assert_eq!(agreed("foo, bar").as_deref(), None);
        assert_eq!(agreed("").as_deref(), None);
        assert_eq!(
            agreed(", ,permessage-deflate,").as_deref(),
            agreed("permessage-deflate").as_deref()
        );
    }

    fn offers_count(extensions: &str) -> usize {
        offers(extensions.as_bytes()).count()
    }

    #[test]
    fn chromium_offer_and_client_context_policies() {
        // What Chromium sends by default.
        let chromium = b"permessage-deflate; client_max_window_bits";
        let reset = negotiate(chromium, &DeflatePolicy::default()).unwrap();
        assert_eq!(reset.client_context, ContextTakeover::Reset);
        assert_eq!(
            reset.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            reset.inbound(),
            InboundCompression::Deflate(ContextTakeover::Reset)
        );
        let as_offered = DeflatePolicy {
            client_context: ClientContextPolicy::AsOffered,
        };
        let kept = negotiate(chromium, &as_offered).unwrap();
        assert_eq!(kept.client_context, ContextTakeover::Kept);
        assert_eq!(
            kept.response_value(),
            "permessage-deflate; server_no_context_takeover"
        );
        // A client that promises not to keep context is believed under either policy.
        let promised = negotiate(
            b"permessage-deflate; client_no_context_takeover",
            &as_offered,
        )
        .unwrap();
        assert_eq!(promised.client_context, ContextTakeover::Reset);
    }

    #[test]
    fn a_small_server_window_limits_which_messages_go_compressed() {
        let negotiated =
            |offer: &str| negotiate(offer.as_bytes(), &DeflatePolicy::default()).unwrap();
        let unlimited = negotiated("permessage-deflate");
        assert!(unlimited.may_send_compressed(usize::MAX));
        let full = negotiated("permessage-deflate; server_max_window_bits=15");
        assert!(full.may_send_compressed(1 << 20));
        assert!(
            full.response_value()
                .ends_with("; server_max_window_bits=15")
        );
        let small = negotiated("permessage-deflate; server_max_window_bits=8");
        assert!(small.may_send_compressed(256));
        assert!(!small.may_send_compressed(257));
        let ten = negotiated("permessage-deflate; server_max_window_bits=10");
        assert!(ten.may_send_compressed(1024));
        assert!(!ten.may_send_compressed(1025));
    }

    #[test]
    fn window_bits_bounds() {
        assert_eq!(WindowBits::new(7), None);
        assert_eq!(WindowBits::new(8), Some(WindowBits::MIN));
        assert_eq!(WindowBits::new(15), Some(WindowBits::MAX));
        assert_eq!(WindowBits::new(16), None);
        assert_eq!(WindowBits::MAX.window_bytes(), 32768);
    }
}
