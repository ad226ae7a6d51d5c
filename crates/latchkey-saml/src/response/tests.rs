//! The verification path against real signed (and encrypted) responses from the test IdP.

mod corpus;
mod fuzz;

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::testkit::{Encryption, ResponseSpec, TestIdp};

pub(super) const IDP: &str = "https://idp.example.com/metadata";
pub(super) const SP: &str = "https://latchkey.example/saml/c1";
pub(super) const ACS: &str = "https://latchkey.example/saml/c1/acs";
pub(super) const NOW: i64 = 1_700_000_000;
pub(super) const REQUEST: &str = "_req0123456789abcdef0123456789abcd";
pub(super) const USER: &str = "alice@corp.example";

pub(super) fn idp() -> &'static TestIdp {
    static IDP_KEYS: OnceLock<TestIdp> = OnceLock::new();
    IDP_KEYS.get_or_init(|| TestIdp::generate(IDP))
}

/// The SP's own key pair (for encryption), generated with the same helper.
pub(super) fn sp_keys() -> &'static TestIdp {
    static SP_KEYS: OnceLock<TestIdp> = OnceLock::new();
    SP_KEYS.get_or_init(|| TestIdp::generate(SP))
}

pub(super) fn other_idp() -> &'static TestIdp {
    static OTHER: OnceLock<TestIdp> = OnceLock::new();
    OTHER.get_or_init(|| TestIdp::generate(IDP))
}

pub(super) fn spec() -> ResponseSpec {
    let mut spec = ResponseSpec::new(ACS, SP, USER, NOW);
    spec.in_response_to = Some(REQUEST.to_owned());
    spec.attributes = vec![
        ("email".into(), vec![USER.into()]),
        ("groups".into(), vec!["admins".into(), "staff".into()]),
    ];
    spec
}

pub(super) struct Env {
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<String>,
}

pub(super) fn env() -> Env {
    Env { certs: vec![idp().cert_der.clone()], keys: vec![sp_keys().key_pem.clone()] }
}

impl Env {
    pub fn expect(&self) -> ResponseExpectations<'_> {
        ResponseExpectations {
            idp_entity_id: IDP,
            idp_certs: &self.certs,
            sp_entity_id: SP,
            acs_url: ACS,
            in_response_to: Some(REQUEST),
            allow_unsolicited: false,
            algorithms: AlgorithmPolicy::default(),
            require_encryption: false,
            decryption_keys: &self.keys,
            now: NOW + 5,
            skew_secs: 60,
        }
    }
}

pub(super) fn b64(xml: &str) -> String {
    STANDARD.encode(xml)
}

/// Verifies `xml` with the default expectations.
pub(super) fn check(xml: &str) -> Result<VerifiedAssertion> {
    let env = env();
    verify_response(&b64(xml), &env.expect())
}

pub(super) fn reason(xml: &str) -> &'static str {
    match check(xml) {
        Ok(ok) => panic!("accepted: {ok:?}\n{xml}"),
        Err(error) => error.reason(),
    }
}

fn assert_alice(verified: &VerifiedAssertion, spec: &ResponseSpec, encrypted: bool) {
    assert_eq!(verified.name_id.as_ref().unwrap().value, USER);
    assert_eq!(verified.assertion_id, spec.assertion_id);
    assert_eq!(verified.response_id, spec.response_id);
    assert_eq!(verified.issuer, IDP);
    assert_eq!(verified.in_response_to.as_deref(), Some(REQUEST));
    assert_eq!(verified.session_index, spec.session_index);
    assert_eq!(verified.authn_instant, Some(NOW));
    assert_eq!(verified.authn_context_class, spec.authn_context_class);
    assert_eq!(verified.attributes["groups"], vec!["admins".to_owned(), "staff".to_owned()]);
    assert_eq!(verified.expires_at, NOW + spec.lifetime_secs + 60);
    assert_eq!(verified.encrypted, encrypted);
}

#[test]
fn response_signed_assertion_signed_or_both_are_accepted() {
    for (sign_response, sign_assertion) in [(true, false), (false, true), (true, true)] {
        let mut spec = spec();
        spec.sign_response = sign_response;
        spec.sign_assertion = sign_assertion;
        let verified = check(&idp().response_xml(&spec))
            .unwrap_or_else(|e| panic!("{sign_response} {sign_assertion}: {e}"));
        assert_alice(&verified, &spec, false);
    }
}

#[test]
fn encrypted_assertions_with_every_cipher() {
    for encryption in
        [Encryption::Aes128Cbc, Encryption::Aes256Gcm, Encryption::Aes256Cbc, Encryption::Aes128Gcm]
    {
        for (sign_response, sign_assertion) in [(false, true), (true, false), (true, true)] {
            let mut spec = spec();
            spec.encrypt_to = Some(sp_keys().cert_pem.clone());
            spec.encryption = encryption;
            spec.sign_response = sign_response;
            spec.sign_assertion = sign_assertion;
            let verified = check(&idp().response_xml(&spec))
                .unwrap_or_else(|e| panic!("{encryption:?} {sign_response} {sign_assertion}: {e}"));
            assert_alice(&verified, &spec, true);
        }
    }
}

#[test]
fn default_namespaces_and_whitespace_as_entra_writes_them() {
    let spec = spec();
    let assertion = idp()
        .assertion_xml(&spec)
        .replace("<saml:", "<")
        .replace("</saml:", "</")
        .replace("xmlns:saml=", "xmlns=")
        .replace("><", ">\n  <");
    let signed = idp().sign_xml(&assertion, &spec.assertion_id);
    let mut unsigned_response = spec.clone();
    unsigned_response.sign_response = false;
    let xml = idp().response_shell(&unsigned_response, &format!("\n{signed}\n"));
    let verified = check(&xml).unwrap();
    assert_eq!(verified.name_id.unwrap().value, USER);
    assert_eq!(verified.attributes["email"], vec![USER.to_owned()]);
}
