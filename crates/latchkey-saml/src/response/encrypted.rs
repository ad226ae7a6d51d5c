//! EncryptedAssertion: decrypt, put the plaintext assertion back where the EncryptedAssertion
//! was, and run the plain path on the result.
//!
//! Why splice rather than verify the plaintext on its own: the decrypted `<saml:Assertion>` may
//! use namespace prefixes declared on the Response, and once spliced it is subject to exactly
//! the same shape checks, samael verification and condition checks as a plain assertion, so an
//! attacker (anyone can encrypt to our public key) gains nothing by encrypting.
//!
//! Who vouches for the assertion:
//! - Response signed: its signature covers the ciphertext, so it is verified first, over the
//!   original bytes, before anything is decrypted (no decryption oracle for forged messages).
//!   The Response signature is then removed from the spliced document (the splice breaks its
//!   digest); the Response's content stays what was verified. A signature inside the
//!   assertion, if there is one, is verified as well.
//! - Response unsigned: the decrypted assertion must carry its own valid signature
//!   ("signed, then encrypted"), verified by samael on the spliced document; else `Unsigned`.

use super::dom::{self, Element};
use super::shape::{self, Body, Shape};
use super::{ResponseExpectations, checks, engine, same_assertion};
use crate::{Result, SamlError, VerifiedAssertion};

pub(super) fn verify(
    xml: &str,
    shape: &Shape<'_>,
    encrypted_assertion: &Element,
    expect: &ResponseExpectations<'_>,
) -> Result<VerifiedAssertion> {
    let response_signed = shape.response_signature.is_some();
    if response_signed {
        engine::verify_response_signature(xml, expect)?;
    }
    let plaintext = crate::decrypt::decrypt_assertion(encrypted_assertion, expect.decryption_keys)?;
    let (start, end) = (encrypted_assertion.start, encrypted_assertion.end);
    // `shape` guarantees the Response signature precedes the assertion.
    let spliced = match shape.response_signature {
        Some(signature) => {
            [&xml[..signature.start], &xml[signature.end..start], &plaintext, &xml[end..]].concat()
        }
        None => [&xml[..start], plaintext.as_str(), &xml[end..]].concat(),
    };
    let root = dom::parse(&spliced)?;
    checks::check_time_syntax(&root)?;
    let spliced_shape = shape::analyse(&root, expect.algorithms)?;
    let Body::Plain { assertion, signature } = spliced_shape.body else {
        return Err(SamlError::Wrapping("an encrypted assertion inside an encrypted one".into()));
    };
    if signature.is_some() {
        let verified = engine::verify(&spliced, expect)?;
        same_assertion(&verified, assertion)?;
    } else if !response_signed {
        return Err(SamlError::Unsigned);
    }
    checks::evaluate(spliced_shape.response, assertion, response_signed, true, expect)
}
