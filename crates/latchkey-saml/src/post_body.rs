//! The HTTP-POST binding's form body (`application/x-www-form-urlencoded`), decoded as it
//! arrives: the message field (`SAMLResponse`) is percent-decoded and base64-decoded chunk by
//! chunk straight into its XML bytes, and `RelayState` is kept as text.
//!
//! Why not a form extractor followed by a base64 decode: for a 256 KiB response that holds the
//! raw body, the percent-decoded field and the decoded XML at once (each grown by doubling),
//! about a megabyte per message being read; here only the XML (three quarters of the field) is
//! kept, in a buffer sized once from the declared length.
//!
//! Two kinds of failure: a body that is not a well-formed form of the binding ([`FormError`],
//! shown as "could not be read"), and a message field that cannot be a SAML message
//! ([`SamlError::TooLarge`], [`SamlError::Base64`]), which the ACS audits like any refused
//! response. After a message error the rest of the field is skipped, not decoded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::SamlError;

/// Most a `RelayState` may carry. SAML Bindings asks IdPs for at most 80 bytes; some send
/// longer opaque values, so this only bounds memory.
pub const MAX_RELAY_STATE_BYTES: usize = 4096;

/// Significant base64 characters decoded at a time (a multiple of 4).
const BASE64_BLOCK: usize = 4096;

/// Keys longer than this are no field of the binding; their values are skipped.
const MAX_KEY_BYTES: usize = 32;

/// Why a body is not a form of the binding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("a percent escape in the form is not two hexadecimal digits")]
    BadEscape,
    #[error("the form carries the field {0} twice")]
    Duplicate(&'static str),
    #[error("RelayState is not UTF-8 or is longer than {MAX_RELAY_STATE_BYTES} bytes")]
    BadRelayState,
}

/// The decoded form: the message as XML bytes (or why it cannot be one) and the RelayState.
#[derive(Debug)]
pub struct PostBody {
    /// Empty when the field was absent or empty: the verification refuses that.
    pub message: Result<Vec<u8>, SamlError>,
    pub relay_state: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Message,
    RelayState,
    Other,
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Percent,
    High(u8),
}

/// Feed the body's chunks in order with [`Self::feed`], then [`Self::finish`].
pub struct PostBodyDecoder {
    message_field: &'static str,
    max_message_b64: usize,
    escape: Escape,
    in_value: bool,
    key: Vec<u8>,
    field: Field,
    seen_message: bool,
    seen_relay: bool,
    message_b64_len: usize,
    staged: Vec<u8>,
    padded: bool,
    xml: Vec<u8>,
    message_error: Option<SamlError>,
    relay: Option<Vec<u8>>,
}

impl PostBodyDecoder {
    /// `message_field` is the binding's parameter (`SAMLResponse`), `max_message_b64` the most
    /// base64 it may carry, `declared_len` the body's Content-Length if any (sizes the XML
    /// buffer once).
    pub fn new(
        message_field: &'static str,
        max_message_b64: usize,
        declared_len: Option<usize>,
    ) -> Self {
        let expected = declared_len.unwrap_or(0).min(max_message_b64) / 4 * 3;
        Self {
            message_field,
            max_message_b64,
            escape: Escape::None,
            in_value: false,
            key: Vec::new(),
            field: Field::Other,
            seen_message: false,
            seen_relay: false,
            message_b64_len: 0,
            staged: Vec::with_capacity(BASE64_BLOCK),
            padded: false,
            xml: Vec::with_capacity(expected),
            message_error: None,
            relay: None,
        }
    }

    /// Decodes the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), FormError> {
        for &b in chunk {
            match (self.escape, b) {
                (Escape::None, b'%') => self.escape = Escape::Percent,
                (Escape::None, b'&') => self.end_pair()?,
                (Escape::None, b'=') if !self.in_value => self.start_value()?,
                (Escape::None, b'+') => self.push(b' ')?,
                (Escape::None, _) => self.push(b)?,
                (Escape::Percent, _) => self.escape = Escape::High(hex(b)?),
                (Escape::High(high), _) => {
                    self.escape = Escape::None;
                    self.push(high << 4 | hex(b)?)?;
                }
            }
        }
        Ok(())
    }

    /// Ends the body: the last pair, the last base64 block.
    pub fn finish(mut self) -> Result<PostBody, FormError> {
        if !matches!(self.escape, Escape::None) {
            return Err(FormError::BadEscape);
        }
        self.end_pair()?;
        let message = match self.message_error {
            Some(e) => Err(e),
            None => Ok(self.xml),
        };
        let relay_state = match self.relay {
            Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| FormError::BadRelayState)?),
            None => None,
        };
        Ok(PostBody { message, relay_state })
    }

    fn start_value(&mut self) -> Result<(), FormError> {
        self.in_value = true;
        self.field = if self.key == self.message_field.as_bytes() {
            if std::mem::replace(&mut self.seen_message, true) {
                return Err(FormError::Duplicate(self.message_field));
            }
            Field::Message
        } else if self.key == b"RelayState" {
            if std::mem::replace(&mut self.seen_relay, true) {
                return Err(FormError::Duplicate("RelayState"));
            }
            self.relay = Some(Vec::new());
            Field::RelayState
        } else {
            Field::Other
        };
        Ok(())
    }

    fn end_pair(&mut self) -> Result<(), FormError> {
        if !self.in_value && !self.key.is_empty() {
            // A key without '=' is a field with an empty value.
            self.start_value()?;
        }
        if self.field == Field::Message {
            self.flush_base64(true);
        }
        self.in_value = false;
        self.key.clear();
        self.field = Field::Other;
        Ok(())
    }

    /// One decoded byte of the current key or value.
    fn push(&mut self, b: u8) -> Result<(), FormError> {
        if !self.in_value {
            if self.key.len() <= MAX_KEY_BYTES {
                self.key.push(b);
            }
            return Ok(());
        }
        match self.field {
            Field::Message => self.push_base64(b),
            Field::RelayState => {
                let relay = self.relay.get_or_insert_with(Vec::new);
                if relay.len() >= MAX_RELAY_STATE_BYTES {
                    return Err(FormError::BadRelayState);
                }
                relay.push(b);
            }
            Field::Other => {}
        }
        Ok(())
    }

    fn push_base64(&mut self, b: u8) {
        if self.message_error.is_some() {
            return;
        }
        self.message_b64_len += 1;
        if self.message_b64_len > self.max_message_b64 {
            self.fail(SamlError::TooLarge);
            return;
        }
        // Some IdPs wrap the base64 at 64 or 76 columns.
        if b.is_ascii_whitespace() {
            return;
        }
        self.padded |= b == b'=';
        self.staged.push(b);
        if self.staged.len() >= BASE64_BLOCK {
            self.flush_base64(false);
        }
    }

    /// Decodes the staged characters. Mid-field only whole blocks without padding are decoded,
    /// so decoding block by block accepts exactly what decoding the whole field would: once
    /// '=' is seen everything stays staged until the field ends, where the engine's canonical
    /// padding rules judge it all.
    fn flush_base64(&mut self, last: bool) {
        if self.message_error.is_some() || (!last && self.padded) {
            return;
        }
        if STANDARD.decode_vec(&self.staged, &mut self.xml).is_err() {
            self.fail(SamlError::Base64);
            return;
        }
        self.staged.clear();
    }

    fn fail(&mut self, e: SamlError) {
        self.message_error = Some(e);
        self.staged = Vec::new();
        self.xml = Vec::new();
    }
}

fn hex(b: u8) -> Result<u8, FormError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(FormError::BadEscape),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_in(chunks: &[&[u8]], max: usize) -> Result<PostBody, FormError> {
        let mut d = PostBodyDecoder::new("SAMLResponse", max, None);
        for c in chunks {
            d.feed(c)?;
        }
        d.finish()
    }

    fn decode(body: &str) -> Result<PostBody, FormError> {
        decode_in(&[body.as_bytes()], 1 << 20)
    }

    fn form_value(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn decodes_the_message_and_the_relay_state() {
        let b64 = STANDARD.encode("<samlp:Response/>");
        let body = format!("SAMLResponse={}&RelayState={}", form_value(&b64), form_value("a b&c"));
        let got = decode(&body).unwrap();
        assert_eq!(got.message.unwrap(), b"<samlp:Response/>");
        assert_eq!(got.relay_state.as_deref(), Some("a b&c"));
    }

    #[test]
    fn wrapped_base64_and_unknown_fields_are_accepted() {
        let b64 = STANDARD.encode("x".repeat(200));
        let wrapped: String =
            b64.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l) + "\r\n").collect();
        let body = format!("other=1&SAMLResponse={}&flag", form_value(&wrapped));
        let got = decode(&body).unwrap();
        assert_eq!(got.message.unwrap(), "x".repeat(200).as_bytes());
        assert_eq!(got.relay_state, None);
    }

    #[test]
    fn a_missing_message_is_empty_and_refused_later() {
        let got = decode("RelayState=r").unwrap();
        assert_eq!(got.message.unwrap(), b"");
        assert_eq!(got.relay_state.as_deref(), Some("r"));
    }

    #[test]
    fn form_errors() {
        assert_eq!(decode("SAMLResponse=%zz").unwrap_err(), FormError::BadEscape);
        assert_eq!(decode("SAMLResponse=QQ%3").unwrap_err(), FormError::BadEscape);
        assert_eq!(
            decode("SAMLResponse=QUJD&SAMLResponse=QUJD").unwrap_err(),
            FormError::Duplicate("SAMLResponse")
        );
        assert_eq!(
            decode("RelayState=a&RelayState=b").unwrap_err(),
            FormError::Duplicate("RelayState")
        );
        assert_eq!(decode("RelayState=%FF").unwrap_err(), FormError::BadRelayState);
        let long = format!("RelayState={}", "a".repeat(MAX_RELAY_STATE_BYTES + 1));
        assert_eq!(decode(&long).unwrap_err(), FormError::BadRelayState);
    }

    #[test]
    fn message_errors_are_saml_errors() {
        let bad = decode("SAMLResponse=QUJ*").unwrap();
        assert_eq!(bad.message.unwrap_err(), SamlError::Base64);
        // Padding in the middle, even across a block boundary.
        let mid = format!("SAMLResponse={}{}", form_value("QQ=="), "QUJD".repeat(2000));
        assert_eq!(decode(&mid).unwrap().message.unwrap_err(), SamlError::Base64);
        // Not canonical: trailing bits set.
        assert_eq!(
            decode("SAMLResponse=QR%3D%3D").unwrap().message.unwrap_err(),
            SamlError::Base64
        );
        let big = decode_in(&[b"SAMLResponse=", "QUJD".repeat(10).as_bytes()], 39).unwrap();
        assert_eq!(big.message.unwrap_err(), SamlError::TooLarge);
        // The cap counts what the field carries, whitespace included, like the one-shot decode.
        let spaced = decode_in(&[b"SAMLResponse=QUJD+++++"], 8).unwrap();
        assert_eq!(spaced.message.unwrap_err(), SamlError::TooLarge);
    }

    proptest! {
        #[test]
        fn chunking_never_changes_the_result(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            relay in "[ -~]{0,40}",
            cuts in proptest::collection::vec(0usize..40_000, 0..12),
            wrap in any::<bool>(),
        ) {
            let mut b64 = STANDARD.encode(&data);
            if wrap {
                b64 = b64.as_bytes().chunks(64).map(|l| String::from_utf8_lossy(l) + "\n").collect();
            }
            let body = format!("RelayState={}&SAMLResponse={}", form_value(&relay), form_value(&b64));
            let bytes = body.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&bytes[at..c]);
                at = c;
            }
            chunks.push(&bytes[at..]);
            let got = decode_in(&chunks, 1 << 20).unwrap();
            prop_assert_eq!(got.message.unwrap(), data);
            prop_assert_eq!(got.relay_state.unwrap(), relay);
        }

        #[test]
        fn accepts_exactly_what_the_one_shot_decode_accepts(field in "[A-Za-z0-9+/=]{0,9000}") {
            let one_shot = STANDARD.decode(field.as_bytes());
            let got = decode(&format!("SAMLResponse={}", form_value(&field))).unwrap();
            match one_shot {
                Ok(bytes) => prop_assert_eq!(got.message.unwrap(), bytes),
                Err(_) => prop_assert_eq!(got.message.unwrap_err(), SamlError::Base64),
            }
        }
    }
}
