//! Verifying a `<samlp:Response>` posted to the ACS: the fail-closed heart of the service
//! provider. Order of work, cheapest and most dangerous first:
//!
//! 1. Size cap, base64, UTF-8, DOCTYPE refused before any parser sees the message.
//! 2. Our own parse (`dom`) and the shape check (`shape`): one Response, exactly one assertion
//!    as its direct child, enveloped signatures referencing their parent only, allowed
//!    signature/digest algorithms, unique IDs. Wrapping shapes are refused, never repaired.
//! 3. Signatures verified by samael's high-level parse (`engine`), which keeps only verified
//!    content; its assertion ID must be the one we read.
//! 4. Every profile condition (`checks`), with our clock and exact string comparisons.
//!
//! Encrypted assertions go through [`crate::decrypt`] and then the same steps (`encrypted`).

mod checks;
pub(crate) mod dom;
mod encrypted;
mod engine;
pub(crate) mod shape;

#[cfg(test)]
mod tests;

use self::shape::Body;
use crate::algorithms::AlgorithmPolicy;
use crate::{Result, SamlError, VerifiedAssertion};

/// Upper bound on the base64 `SAMLResponse` form field.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// What this connection and this browser expect of the response.
#[derive(Clone)]
pub struct ResponseExpectations<'a> {
    pub idp_entity_id: &'a str,
    /// The IdP's signing certificates (DER), several during a key rollover.
    pub idp_certs: &'a [Vec<u8>],
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The ID of the AuthnRequest this browser started; None when no request is pending
    /// (unsolicited).
    pub in_response_to: Option<&'a str>,
    /// IdP-initiated SSO allowed on this connection.
    pub allow_unsolicited: bool,
    pub algorithms: AlgorithmPolicy,
    pub require_encryption: bool,
    /// The SP's decryption private keys (PEM), current first then previous during a rotation.
    pub decryption_keys: &'a [String],
    /// Unix seconds.
    pub now: i64,
    /// Allowed clock skew in seconds (default 60, at most 300: the caller clamps).
    pub skew_secs: i64,
}

/// Redacts the private keys: expectations may end up in a log line.
impl std::fmt::Debug for ResponseExpectations<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseExpectations")
            .field("idp_entity_id", &self.idp_entity_id)
            .field("idp_certs", &self.idp_certs.len())
            .field("sp_entity_id", &self.sp_entity_id)
            .field("acs_url", &self.acs_url)
            .field("in_response_to", &self.in_response_to)
            .field("allow_unsolicited", &self.allow_unsolicited)
            .field("algorithms", &self.algorithms)
            .field("require_encryption", &self.require_encryption)
            .field("decryption_keys", &format_args!("[{} redacted]", self.decryption_keys.len()))
            .field("now", &self.now)
            .field("skew_secs", &self.skew_secs)
            .finish()
    }
}

/// A `SAMLResponse` form field decoded once: size cap, base64 and UTF-8 checked. The caller
/// learns from it whether decryption keys are needed before it verifies.
pub struct DecodedResponse {
    xml: String,
}

impl DecodedResponse {
    pub fn decode(saml_response_b64: &str) -> Result<Self> {
        Self::from_xml(crate::binding::decode_post_base64(saml_response_b64, MAX_RESPONSE_BYTES)?)
    }

    /// A response whose base64 was decoded already (see [`crate::post_body`]).
    pub fn from_xml(bytes: Vec<u8>) -> Result<Self> {
        let xml = String::from_utf8(bytes).map_err(|_| SamlError::Malformed("not UTF-8".into()))?;
        Ok(Self { xml })
    }

    /// Whether the message mentions an EncryptedAssertion anywhere: the SP's keys are unsealed
    /// only then. A false positive costs an unseal; a false negative is impossible, since the
    /// shape check finds the element by that name.
    pub fn may_be_encrypted(&self) -> bool {
        self.xml.contains("EncryptedAssertion")
    }
}

/// samael's reduced assertion must be the one our checks read.
fn same_assertion(verified: &samael::schema::Assertion, assertion: &dom::Element) -> Result<()> {
    if assertion.attr("ID") != Some(verified.id.as_str()) {
        return Err(SamlError::Wrapping("the verified assertion is not the one read".into()));
    }
    Ok(())
}

/// Verifies a base64 `SAMLResponse` against what the connection and the browser expect, and
/// returns the one assertion a checked signature covers.
pub fn verify_response(
    saml_response_b64: &str,
    expect: &ResponseExpectations<'_>,
) -> Result<VerifiedAssertion> {
    if expect.idp_certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    verify_decoded(&DecodedResponse::decode(saml_response_b64)?, expect)
}

/// [`verify_response`] of a response decoded already.
pub fn verify_decoded(
    response: &DecodedResponse,
    expect: &ResponseExpectations<'_>,
) -> Result<VerifiedAssertion> {
    if expect.idp_certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    let xml = response.xml.as_str();
    crate::xml_guard::reject_doctype(xml)?;
    let root = dom::parse(xml)?;
    shape::expect_response(&root)?;
    // A failed login carries no assertion: say so rather than "no assertion".
    checks::check_status(&root)?;
    checks::check_time_syntax(&root)?;
    let shape = shape::analyse(&root, expect.algorithms)?;
    match shape.body {
        Body::Plain { assertion, signature } => {
            if expect.require_encryption {
                return Err(SamlError::EncryptionRequired);
            }
            let response_signed = shape.response_signature.is_some();
            if !response_signed && signature.is_none() {
                return Err(SamlError::Unsigned);
            }
            let verified = engine::verify(xml, expect)?;
            same_assertion(&verified, assertion)?;
            checks::evaluate(shape.response, assertion, response_signed, false, expect)
        }
        Body::Encrypted(encrypted_assertion) => {
            encrypted::verify(xml, &shape, encrypted_assertion, expect)
        }
    }
}
