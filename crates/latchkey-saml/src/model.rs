//! What a verified SAML message says, as plain data for the service layer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameId {
    /// The element's full text (never cut at a comment).
    pub value: String,
    pub format: Option<String>,
}

impl NameId {
    pub fn is_transient(&self) -> bool {
        self.format.as_deref() == Some(NAMEID_TRANSIENT)
    }
}

/// The one assertion a verified signature covers, with every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub response_id: String,
    pub assertion_id: String,
    /// The IdP entity ID (equal to the expected one).
    pub issuer: String,
    pub name_id: Option<NameId>,
    pub session_index: Option<String>,
    /// The request this answers; `None` for an unsolicited (IdP-initiated) response.
    pub in_response_to: Option<String>,
    /// Unix seconds after which the assertion is no longer acceptable (the latest of its
    /// NotOnOrAfter bounds plus skew): the replay cache must keep its ID until then.
    pub expires_at: i64,
    pub authn_instant: Option<i64>,
    pub authn_context_class: Option<String>,
    /// Attribute name → values, each value the full text of its element.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The assertion arrived as an EncryptedAssertion.
    pub encrypted: bool,
}
