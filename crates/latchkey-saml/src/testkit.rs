//! A signing test identity provider: real RSA-2048 keys, real XML signatures (xmlsec through
//! samael) and real xmlenc encryption (openssl), so the tests of this crate, of the other crates
//! and the benchmark exercise the same verification path as production. Never compiled into
//! production builds (`cfg(any(test, feature = "testkit"))`).
//!
//! Panics on failure: it is test tooling and a failure there is a broken test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use samael::crypto::{Crypto, CryptoProvider};

use crate::algorithms::{
    DIGEST_SHA1, DIGEST_SHA256, DIGEST_SHA512, RSA_SHA1, RSA_SHA256, RSA_SHA512,
};
use crate::model::{NAMEID_EMAIL, NameId};
use crate::response::dom::{self, Element, NS_ASSERTION, NS_PROTOCOL};

mod encrypt;

pub use encrypt::{Encryption, KeyTransport, encrypt_assertion};

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlg {
    RsaSha256,
    RsaSha512,
    /// Legacy, for the tests proving it is refused unless allowed.
    RsaSha1,
}

impl SignatureAlg {
    pub fn uris(self) -> (&'static str, &'static str) {
        match self {
            Self::RsaSha256 => (RSA_SHA256, DIGEST_SHA256),
            Self::RsaSha512 => (RSA_SHA512, DIGEST_SHA512),
            Self::RsaSha1 => (RSA_SHA1, DIGEST_SHA1),
        }
    }
}

/// A key pair and self-signed certificate (also usable as a test SP's encryption key).
#[derive(Debug, Clone)]
pub struct TestIdp {
    pub entity_id: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
}

/// What the next response says. Start from [`ResponseSpec::new`] and change fields.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub acs_url: String,
    pub sp_entity_id: String,
    pub in_response_to: Option<String>,
    pub name_id: NameId,
    pub session_index: Option<String>,
    pub authn_context_class: Option<String>,
    pub attributes: Vec<(String, Vec<String>)>,
    /// IssueInstant, AuthnInstant and the start of validity (unix seconds).
    pub now: i64,
    /// NotOnOrAfter = now + lifetime_secs (Conditions and SubjectConfirmationData).
    pub lifetime_secs: i64,
    pub sign_response: bool,
    pub sign_assertion: bool,
    pub signature_alg: SignatureAlg,
    /// The SP encryption certificate (PEM): the assertion becomes an EncryptedAssertion.
    pub encrypt_to: Option<String>,
    pub encryption: Encryption,
    pub key_transport: KeyTransport,
    pub status: String,
    pub sub_status: Option<String>,
    /// Response Destination; `None` leaves it out. Defaults to the ACS URL.
    pub destination: Option<String>,
    /// SubjectConfirmationData Recipient; `None` leaves it out. Defaults to the ACS URL.
    pub recipient: Option<String>,
    /// `None` leaves the AudienceRestriction out. Defaults to the SP entity ID.
    pub audience: Option<String>,
    /// Overrides the IdP entity ID in the Response Issuer; `Some("")` leaves it out.
    pub response_issuer: Option<String>,
    /// Overrides the IdP entity ID in the Assertion Issuer.
    pub assertion_issuer: Option<String>,
    pub response_id: String,
    pub assertion_id: String,
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("_{hex}")
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// xs:dateTime in UTC, as SAML wants it.
pub fn instant(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl ResponseSpec {
    pub fn new(acs_url: &str, sp_entity_id: &str, name_id: &str, now: i64) -> Self {
        Self {
            acs_url: acs_url.to_owned(),
            sp_entity_id: sp_entity_id.to_owned(),
            in_response_to: None,
            name_id: NameId { value: name_id.to_owned(), format: Some(NAMEID_EMAIL.to_owned()) },
            session_index: Some(random_id()),
            authn_context_class: Some(PASSWORD_PROTECTED.to_owned()),
            attributes: Vec::new(),
            now,
            lifetime_secs: 300,
            sign_response: true,
            sign_assertion: false,
            signature_alg: SignatureAlg::RsaSha256,
            encrypt_to: None,
            encryption: Encryption::Aes256Gcm,
            key_transport: KeyTransport::RsaOaepMgf1p,
            status: STATUS_SUCCESS.to_owned(),
            sub_status: None,
            destination: Some(acs_url.to_owned()),
            recipient: Some(acs_url.to_owned()),
            audience: Some(sp_entity_id.to_owned()),
            response_issuer: None,
            assertion_issuer: None,
            response_id: random_id(),
            assertion_id: random_id(),
        }
    }
}

fn opt_attr(name: &str, value: Option<&str>) -> String {
    value.map(|v| format!(r#" {name}="{}""#, xml_escape(v))).unwrap_or_default()
}

impl TestIdp {
    /// A fresh RSA-2048 key and a self-signed certificate valid for ten years.
    pub fn generate(entity_id: &str) -> Self {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "latchkey test idp").unwrap();
        let name = name.build();
        let mut builder = X509::builder().unwrap();
        builder.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false).unwrap();
        builder.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        builder.set_not_after(&Asn1Time::days_from_now(3650).unwrap()).unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = builder.build();
        Self {
            entity_id: entity_id.to_owned(),
            key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            cert_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            cert_der: cert.to_der().unwrap(),
        }
    }

    /// The assertion alone, unsigned, with its namespace declared on itself.
    pub fn assertion_xml(&self, spec: &ResponseSpec) -> String {
        let issue = instant(spec.now);
        let until = instant(spec.now + spec.lifetime_secs);
        let issuer = spec.assertion_issuer.as_deref().unwrap_or(&self.entity_id);
        let name_id = format!(
            "<saml:NameID{}>{}</saml:NameID>",
            opt_attr("Format", spec.name_id.format.as_deref()),
            xml_escape(&spec.name_id.value)
        );
        let confirmation = format!(
            r#"<saml:SubjectConfirmation Method="{BEARER}"><saml:SubjectConfirmationData{}{} NotOnOrAfter="{until}"/></saml:SubjectConfirmation>"#,
            opt_attr("InResponseTo", spec.in_response_to.as_deref()),
            opt_attr("Recipient", spec.recipient.as_deref()),
        );
        let audience = spec
            .audience
            .as_deref()
            .map(|a| {
                format!(
                    "<saml:AudienceRestriction><saml:Audience>{}</saml:Audience></saml:AudienceRestriction>",
                    xml_escape(a)
                )
            })
            .unwrap_or_default();
        let authn = format!(
            r#"<saml:AuthnStatement AuthnInstant="{issue}"{}><saml:AuthnContext>{}</saml:AuthnContext></saml:AuthnStatement>"#,
            opt_attr("SessionIndex", spec.session_index.as_deref()),
            spec.authn_context_class
                .as_deref()
                .map(|c| format!(
                    "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                    xml_escape(c)
                ))
                .unwrap_or_default(),
        );
        format!(
            r#"<saml:Assertion xmlns:saml="{NS_ASSERTION}" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{}" Version="2.0" IssueInstant="{issue}"><saml:Issuer>{}</saml:Issuer><saml:Subject>{name_id}{confirmation}</saml:Subject><saml:Conditions NotBefore="{issue}" NotOnOrAfter="{until}">{audience}</saml:Conditions>{authn}{}</saml:Assertion>"#,
            spec.assertion_id,
            xml_escape(issuer),
            attribute_statement(&spec.attributes),
        )
    }

    /// A Response around `body` (an assertion or an EncryptedAssertion), unsigned.
    pub fn response_shell(&self, spec: &ResponseSpec, body: &str) -> String {
        let issuer = spec.response_issuer.as_deref().unwrap_or(&self.entity_id);
        let issuer = if issuer.is_empty() {
            String::new()
        } else {
            format!("<saml:Issuer>{}</saml:Issuer>", xml_escape(issuer))
        };
        let sub = spec
            .sub_status
            .as_deref()
            .map(|s| format!(r#"<samlp:StatusCode Value="{}"/>"#, xml_escape(s)))
            .unwrap_or_default();
        let status = if sub.is_empty() {
            format!(r#"<samlp:StatusCode Value="{}"/>"#, xml_escape(&spec.status))
        } else {
            format!(
                r#"<samlp:StatusCode Value="{}">{sub}</samlp:StatusCode>"#,
                xml_escape(&spec.status)
            )
        };
        format!(
            r#"<samlp:Response xmlns:samlp="{NS_PROTOCOL}" xmlns:saml="{NS_ASSERTION}" ID="{}" Version="2.0" IssueInstant="{}"{}{}>{issuer}<samlp:Status>{status}</samlp:Status>{body}</samlp:Response>"#,
            spec.response_id,
            instant(spec.now),
            opt_attr("Destination", spec.destination.as_deref()),
            opt_attr("InResponseTo", spec.in_response_to.as_deref()),
        )
    }

    /// The complete response as the spec asks: assertion signed and/or encrypted, response signed.
    pub fn response_xml(&self, spec: &ResponseSpec) -> String {
        let mut assertion = self.assertion_xml(spec);
        if spec.sign_assertion {
            assertion = self.sign_xml_with(&assertion, &spec.assertion_id, spec.signature_alg);
        }
        let body = match &spec.encrypt_to {
            Some(cert_pem) => {
                encrypt_assertion(&assertion, cert_pem, spec.encryption, spec.key_transport)
            }
            None => assertion,
        };
        let response = self.response_shell(spec, &body);
        if spec.sign_response {
            self.sign_xml_with(&response, &spec.response_id, spec.signature_alg)
        } else {
            response
        }
    }

    /// The base64 form field the browser posts.
    pub fn response_b64(&self, spec: &ResponseSpec) -> String {
        STANDARD.encode(self.response_xml(spec))
    }

    /// Signs the element carrying `ID="id"` (enveloped, exclusive c14n, RSA-SHA256), putting the
    /// Signature after its Issuer as SAML wants it. The rest of `xml` is left byte for byte.
    pub fn sign_xml(&self, xml: &str, id: &str) -> String {
        self.sign_xml_with(xml, id, SignatureAlg::RsaSha256)
    }

    pub fn sign_xml_with(&self, xml: &str, id: &str, alg: SignatureAlg) -> String {
        let root = dom::parse(xml).expect("sign_xml: input must be well-formed");
        let mut path = Vec::new();
        assert!(find_path(&root, id, &mut path), "sign_xml: no element with ID {id}");
        let target = *path.last().unwrap();
        // Exclusive c14n renders only visibly used namespaces, so signing the element on its own
        // (carrying every declaration in scope) gives the signature it has in place.
        let inherited: Vec<(String, String)> = path[..path.len() - 1]
            .iter()
            .flat_map(|e| e.decls.iter().cloned())
            .filter(|(prefix, _)| !target.decls.iter().any(|(p, _)| p == prefix))
            .collect();
        let element = &xml[target.start..target.end];
        let standalone = with_declarations(element, target, &inherited);
        let standalone = insert_signature_template(&standalone, id, alg, &self.cert_der);
        let key_der = PKey::private_key_from_pem(self.key_pem.as_bytes())
            .unwrap()
            .private_key_to_der()
            .unwrap();
        let signed = Crypto::sign_xml(standalone.as_bytes(), &key_der).expect("xmlsec signing");
        let signed = strip_declaration(&signed);
        format!("{}{}{}", &xml[..target.start], signed.trim_end(), &xml[target.end..])
    }
}

fn attribute_statement(attributes: &[(String, Vec<String>)]) -> String {
    if attributes.is_empty() {
        return String::new();
    }
    let body: String = attributes
        .iter()
        .map(|(name, values)| {
            let values: String = values
                .iter()
                .map(|v| {
                    format!(
                        r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
                        xml_escape(v)
                    )
                })
                .collect();
            format!(
                r#"<saml:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">{values}</saml:Attribute>"#,
                xml_escape(name)
            )
        })
        .collect();
    format!("<saml:AttributeStatement>{body}</saml:AttributeStatement>")
}

fn find_path<'e>(element: &'e Element, id: &str, path: &mut Vec<&'e Element>) -> bool {
    path.push(element);
    if element.attr("ID") == Some(id) {
        return true;
    }
    for child in element.elements() {
        if find_path(child, id, path) {
            return true;
        }
    }
    path.pop();
    false
}

fn with_declarations(element_xml: &str, element: &Element, extra: &[(String, String)]) -> String {
    let name_end =
        element_xml.find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').unwrap();
    let decls: String = extra
        .iter()
        .map(|(prefix, uri)| {
            if prefix.is_empty() {
                format!(r#" xmlns="{}""#, xml_escape(uri))
            } else {
                format!(r#" xmlns:{prefix}="{}""#, xml_escape(uri))
            }
        })
        .collect();
    let _ = element;
    format!("{}{decls}{}", &element_xml[..name_end], &element_xml[name_end..])
}

/// The template xmlsec fills in: placed after the element's Issuer (or first, without one).
fn insert_signature_template(xml: &str, id: &str, alg: SignatureAlg, cert_der: &[u8]) -> String {
    let (signature_uri, digest_uri) = alg.uris();
    let template = format!(
        r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{signature_uri}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest_uri}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
        STANDARD.encode(cert_der)
    );
    let root = dom::parse(xml).unwrap();
    let at = match root.elements().next() {
        Some(first) if first.is(NS_ASSERTION, "Issuer") => first.end,
        _ => root.content_start,
    };
    assert!(at < root.end, "sign_xml: cannot sign an empty element");
    format!("{}{template}{}", &xml[..at], &xml[at..])
}

fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim_start();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|(_, body)| body.trim_start()).unwrap_or(xml),
        None => xml,
    }
}
