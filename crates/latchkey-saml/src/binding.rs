//! The HTTP-Redirect and HTTP-POST bindings (SAML 2.0 Bindings §3.4, §3.5), plus the XML
//! plumbing every message module shares: escaping, instants, strict parsing, and enveloped
//! XML signatures (made and checked through samael's xmlsec).
//!
//! A Redirect-binding signature covers the URL-encoded octets exactly as sent, so a received
//! query is verified from the raw string, never from decoded-and-re-encoded values. samael's
//! `UrlVerifier` is not used on received input: it panics on a missing `SigAlg` and on SigAlg
//! URIs it does not know.

use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode, XmlSec,
};
use serde::{Deserialize, Serialize};
use url::form_urlencoded;

use crate::algorithms::{self, AlgorithmPolicy};
use crate::keys;
use crate::xml_guard::reject_doctype;
use crate::{Result, SamlError};

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Largest inflated Redirect-binding message.
pub const MAX_INFLATED_BYTES: usize = 128 * 1024;
/// Largest raw (URL-encoded) value of one Redirect-binding query parameter.
pub const MAX_REDIRECT_PARAM_BYTES: usize = 64 * 1024;
/// Largest base64 `SAMLRequest`/`SAMLResponse` form field of a POST-binding logout message.
pub const MAX_POST_BYTES: usize = 256 * 1024;

const REDIRECT_URI: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const POST_URI: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    Redirect,
    Post,
}

impl Binding {
    pub fn uri(self) -> &'static str {
        match self {
            Self::Redirect => REDIRECT_URI,
            Self::Post => POST_URI,
        }
    }

    pub fn from_uri(s: &str) -> Option<Self> {
        match s {
            REDIRECT_URI => Some(Self::Redirect),
            POST_URI => Some(Self::Post),
            _ => None,
        }
    }
}

/// An HTTP-POST binding message: the web layer renders it as an auto-submitting form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostForm {
    pub action: String,
    /// `SAMLRequest` or `SAMLResponse`, then `RelayState` when there is one.
    pub fields: Vec<(String, String)>,
}

/// The SP's signing key (PEM, RSA) and its certificate (PEM), published in SP metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub key_pem: String,
    pub cert_pem: String,
}

/// A received Redirect-binding message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectMessage {
    pub xml: String,
    pub relay_state: Option<String>,
    /// The query signature was verified with one of the given certificates.
    pub signed: bool,
}

fn internal(e: impl std::fmt::Display) -> SamlError {
    SamlError::Internal(e.to_string())
}

fn check_param(param: &str) -> Result<()> {
    match param {
        "SAMLRequest" | "SAMLResponse" => Ok(()),
        _ => Err(SamlError::Internal(format!("unknown binding parameter {param:?}"))),
    }
}

/// `application/x-www-form-urlencoded` exactly as Python's `urlencode` writes it (RFC 3986
/// unreserved characters kept, space as `+`, the rest `%XX`): verifiers such as pysaml2
/// re-encode the decoded values and check the signature over their own encoding.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Encodes a message for the Redirect binding: raw DEFLATE, base64, URL encoding, then
/// `RelayState`, and when signing `SigAlg` (RSA-SHA256) and `Signature` over the exact
/// `SAMLRequest=…&RelayState=…&SigAlg=…` octets (Bindings §3.4.4.1). The destination may
/// already carry a query string.
pub fn redirect_url(
    destination: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<String> {
    check_param(param)?;
    if destination.contains('#') {
        return Err(SamlError::Internal("destination carries a fragment".into()));
    }
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(xml.as_bytes()).map_err(internal)?;
    let deflated = encoder.finish().map_err(internal)?;
    let mut query = format!("{param}={}", url_encode(&STANDARD.encode(deflated)));
    if let Some(rs) = relay_state {
        query.push_str("&RelayState=");
        query.push_str(&url_encode(rs));
    }
    if let Some(signer) = signer {
        query.push_str("&SigAlg=");
        query.push_str(&url_encode(algorithms::RSA_SHA256));
        let signature = rsa_sha256_sign(&signer.key_pem, query.as_bytes())?;
        query.push_str("&Signature=");
        query.push_str(&url_encode(&STANDARD.encode(signature)));
    }
    let separator = match destination.find('?') {
        None => "?",
        Some(_) if destination.ends_with('?') || destination.ends_with('&') => "",
        Some(_) => "&",
    };
    Ok(format!("{destination}{separator}{query}"))
}

fn rsa_sha256_sign(key_pem: &str, data: &[u8]) -> Result<Vec<u8>> {
    let key = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|e| SamlError::Key(e.to_string()))?;
    if key.id() != Id::RSA {
        return Err(SamlError::Key("the SP signing key must be RSA".into()));
    }
    let mut signer =
        Signer::new(MessageDigest::sha256(), &key).map_err(|e| SamlError::Key(e.to_string()))?;
    signer.update(data).map_err(|e| SamlError::Key(e.to_string()))?;
    signer.sign_to_vec().map_err(|e| SamlError::Key(e.to_string()))
}

/// One query parameter: its decoded value and its raw (still URL-encoded) octets.
struct RawParam<'q> {
    raw: &'q str,
    value: String,
}

#[derive(Default)]
struct RedirectParams<'q> {
    message: Option<RawParam<'q>>,
    relay_state: Option<RawParam<'q>>,
    sig_alg: Option<RawParam<'q>>,
    signature: Option<RawParam<'q>>,
}

fn split_query<'q>(raw_query: &'q str, param: &str) -> Result<RedirectParams<'q>> {
    if raw_query.len() > 4 * MAX_REDIRECT_PARAM_BYTES {
        return Err(SamlError::TooLarge);
    }
    let mut out = RedirectParams::default();
    for segment in raw_query.trim_start_matches('?').split('&').filter(|s| !s.is_empty()) {
        let (raw_name, raw) = segment.split_once('=').unwrap_or((segment, ""));
        let name: String = form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        let slot = match name.as_str() {
            n if n == param => &mut out.message,
            "RelayState" => &mut out.relay_state,
            "SigAlg" => &mut out.sig_alg,
            "Signature" => &mut out.signature,
            _ => continue,
        };
        if raw.len() > MAX_REDIRECT_PARAM_BYTES {
            return Err(SamlError::TooLarge);
        }
        if slot.is_some() {
            return Err(SamlError::Malformed(format!("the query repeats {name}")));
        }
        let value = form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        *slot = Some(RawParam { raw, value });
    }
    Ok(out)
}

/// Decodes a received Redirect-binding message from the raw query string. With `certs`
/// non-empty the query must carry a `Signature` and an allowed `SigAlg` that verify with one of
/// them; with `certs` empty any signature is ignored and `signed` is false.
pub fn decode_redirect(
    raw_query: &str,
    param: &str,
    certs: &[Vec<u8>],
    policy: AlgorithmPolicy,
) -> Result<RedirectMessage> {
    check_param(param)?;
    let params = split_query(raw_query, param)?;
    let message =
        params.message.as_ref().ok_or_else(|| SamlError::Malformed(format!("no {param}")))?;
    let signed = !certs.is_empty();
    if signed {
        let signature = params.signature.as_ref().ok_or(SamlError::Unsigned)?;
        let sig_alg = params
            .sig_alg
            .as_ref()
            .ok_or_else(|| SamlError::BadSignature("Signature without SigAlg".into()))?;
        // Bindings §3.4.4.1: the octets signed, in this order, whatever order they arrived in.
        let mut octets = format!("{param}={}", message.raw);
        if let Some(rs) = &params.relay_state {
            octets.push_str("&RelayState=");
            octets.push_str(rs.raw);
        }
        octets.push_str("&SigAlg=");
        octets.push_str(sig_alg.raw);
        verify_query_signature(octets.as_bytes(), &sig_alg.value, &signature.value, certs, policy)?;
    }
    let xml = inflate_base64(&message.value)?;
    Ok(RedirectMessage { xml, relay_state: params.relay_state.map(|p| p.value), signed })
}

fn inflate_base64(value: &str) -> Result<String> {
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let deflated = STANDARD.decode(compact.as_bytes()).map_err(|_| SamlError::Base64)?;
    let mut inflated = Vec::new();
    let cap = u64::try_from(MAX_INFLATED_BYTES).map_err(internal)? + 1;
    DeflateDecoder::new(deflated.as_slice())
        .take(cap)
        .read_to_end(&mut inflated)
        .map_err(|_| SamlError::Inflate)?;
    if inflated.len() > MAX_INFLATED_BYTES {
        return Err(SamlError::TooLarge);
    }
    let xml = String::from_utf8(inflated)
        .map_err(|_| SamlError::Malformed("the message is not UTF-8".into()))?;
    reject_doctype(&xml)?;
    Ok(xml)
}

/// Which digest a query-signature algorithm uses, and whether its key is EC (else RSA).
fn sig_alg_params(sig_alg: &str) -> Option<(MessageDigest, bool)> {
    Some(match sig_alg {
        algorithms::RSA_SHA1 => (MessageDigest::sha1(), false),
        algorithms::RSA_SHA256 => (MessageDigest::sha256(), false),
        algorithms::RSA_SHA384 => (MessageDigest::sha384(), false),
        algorithms::RSA_SHA512 => (MessageDigest::sha512(), false),
        algorithms::ECDSA_SHA256 => (MessageDigest::sha256(), true),
        algorithms::ECDSA_SHA384 => (MessageDigest::sha384(), true),
        algorithms::ECDSA_SHA512 => (MessageDigest::sha512(), true),
        _ => return None,
    })
}

fn verify_query_signature(
    octets: &[u8],
    sig_alg: &str,
    signature_b64: &str,
    certs: &[Vec<u8>],
    policy: AlgorithmPolicy,
) -> Result<()> {
    if !policy.signature_allowed(sig_alg) {
        return Err(SamlError::AlgorithmNotAllowed(sig_alg.to_string()));
    }
    let (digest, is_ec) = sig_alg_params(sig_alg)
        .ok_or_else(|| SamlError::AlgorithmNotAllowed(sig_alg.to_string()))?;
    let compact: String = signature_b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let signature = STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| SamlError::BadSignature("the Signature is not base64".into()))?;
    for der in certs {
        let Ok(key) = X509::from_der(der).and_then(|c| c.public_key()) else { continue };
        let verified = match (is_ec, key.id()) {
            (false, Id::RSA) => verify_with(&key, digest, octets, &signature),
            (true, Id::EC) => ecdsa_der(&key, &signature)
                .is_some_and(|sig| verify_with(&key, digest, octets, &sig)),
            _ => false,
        };
        if verified {
            return Ok(());
        }
    }
    Err(SamlError::BadSignature("no trusted certificate verifies the query signature".into()))
}

fn verify_with(key: &PKey<Public>, digest: MessageDigest, data: &[u8], sig: &[u8]) -> bool {
    Verifier::new(digest, key).and_then(|mut v| v.verify_oneshot(sig, data)).unwrap_or(false)
}

/// XML-DSig ECDSA signature values are `r || s`; openssl verifies DER. A value that is not of
/// the curve's `r || s` length is tried as DER as it is.
fn ecdsa_der(key: &PKey<Public>, sig: &[u8]) -> Option<Vec<u8>> {
    let ec = key.ec_key().ok()?;
    let half = usize::try_from(ec.group().degree()).ok()?.div_ceil(8);
    if sig.len() != 2 * half {
        return Some(sig.to_vec());
    }
    let r = BigNum::from_slice(&sig[..half]).ok()?;
    let s = BigNum::from_slice(&sig[half..]).ok()?;
    EcdsaSig::from_private_components(r, s).ok()?.to_der().ok()
}

/// A POST-binding field: base64 to UTF-8 XML, refusing more than `max_bytes` of base64 and any
/// DOCTYPE.
pub fn decode_post(b64: &str, max_bytes: usize) -> Result<String> {
    let xml = String::from_utf8(decode_post_base64(b64, max_bytes)?)
        .map_err(|_| SamlError::Malformed("the message is not UTF-8".into()))?;
    reject_doctype(&xml)?;
    Ok(xml)
}

/// A POST-binding field's base64, refusing more than `max_bytes` of it. Some IdPs wrap the
/// base64 at 64 or 76 columns; most do not, and then no whitespace-free copy is made.
pub(crate) fn decode_post_base64(b64: &str, max_bytes: usize) -> Result<Vec<u8>> {
    if b64.len() > max_bytes {
        return Err(SamlError::TooLarge);
    }
    let bytes = if b64.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        STANDARD.decode(compact)
    } else {
        STANDARD.decode(b64)
    };
    bytes.map_err(|_| SamlError::Base64)
}

/// A POST-binding form for `xml` (already signed if it is to be).
pub(crate) fn post_form(
    action: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
) -> Result<PostForm> {
    check_param(param)?;
    let mut fields = vec![(param.to_string(), STANDARD.encode(xml.as_bytes()))];
    if let Some(rs) = relay_state {
        fields.push(("RelayState".to_string(), rs.to_string()));
    }
    Ok(PostForm { action: action.to_string(), fields })
}

// ---- XML plumbing shared by the message modules ----

/// Escapes text or an attribute value. Characters XML 1.0 cannot carry at all are refused
/// rather than dropped, so what is signed is what was asked for.
pub(crate) fn esc(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(SamlError::Internal("a value carries a control character".into()));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// xs:dateTime in UTC with a `Z`, whole seconds (SAML Core §1.3.3).
pub(crate) fn iso_instant(t: i64) -> Result<String> {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .ok_or_else(|| SamlError::Internal(format!("instant {t} out of range")))
}

/// Parses an xs:dateTime. SAML requires UTC; a value without a zone is read as UTC.
pub(crate) fn parse_instant(s: &str) -> Result<i64> {
    let s = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(d.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|d| d.and_utc().timestamp())
        .map_err(|_| SamlError::Malformed(format!("bad xs:dateTime {s:?}")))
}

/// Strict parsing: no DTD at all, well-formedness errors refused, a node budget.
pub(crate) fn parse_xml(xml: &str) -> Result<roxmltree::Document<'_>> {
    reject_doctype(xml)?;
    let options =
        roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 200_000, ..Default::default() };
    roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| SamlError::Malformed(e.to_string()))
}

pub(crate) fn is_el(n: roxmltree::Node<'_, '_>, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

/// Child elements of `n` named `{ns}name`.
pub(crate) fn children<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children().filter(move |c| is_el(*c, ns, name))
}

/// The one child element `{ns}name`; several are refused.
pub(crate) fn only_child<'a, 'i>(
    n: roxmltree::Node<'a, 'i>,
    ns: &'a str,
    name: &'a str,
) -> Result<Option<roxmltree::Node<'a, 'i>>> {
    let mut it = children(n, ns, name);
    let first = it.next();
    if it.next().is_some() {
        return Err(SamlError::Malformed(format!("more than one {name}")));
    }
    Ok(first)
}

/// The element's full text: every text and CDATA descendant, comments skipped (so a comment
/// never cuts a value short).
pub(crate) fn full_text(n: roxmltree::Node<'_, '_>) -> String {
    n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect()
}

/// An enveloped-signature template for the element with `id` (RSA-SHA256, SHA-256,
/// exclusive C14N), carrying the signer's certificate. It goes right after the Issuer.
pub(crate) fn signature_template(id: &str, signer: &SigningKey) -> Result<String> {
    signature_template_with(id, signer, algorithms::RSA_SHA256, algorithms::DIGEST_SHA256)
}

/// [`signature_template`] with other algorithms (tests build SHA-1 signatures with it).
pub(crate) fn signature_template_with(
    id: &str,
    signer: &SigningKey,
    signature_alg: &str,
    digest_alg: &str,
) -> Result<String> {
    let cert = keys::cert_base64(&keys::cert_der(&signer.cert_pem)?);
    Ok(format!(
        "<ds:Signature xmlns:ds=\"{NS_DSIG}\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{}\"/>\
         <ds:Reference URI=\"#{}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{EXC_C14N}\"/>\
         </ds:Transforms><ds:DigestMethod Algorithm=\"{}\"/><ds:DigestValue/></ds:Reference>\
         </ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data>\
         <ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         </ds:Signature>",
        esc(signature_alg)?,
        esc(id)?,
        esc(digest_alg)?,
    ))
}

/// Fills in the signature template carried by `xml` (see [`signature_template`]).
pub(crate) fn sign_enveloped(xml: &str, signer: &SigningKey) -> Result<String> {
    let key = PKey::private_key_from_pem(signer.key_pem.as_bytes())
        .map_err(|e| SamlError::Key(e.to_string()))?;
    let der = key.private_key_to_der().map_err(|e| SamlError::Key(e.to_string()))?;
    XmlSec::sign_xml(xml, &der).map_err(|e| SamlError::Internal(format!("signing failed: {e}")))
}

fn allowed_algorithms(policy: AlgorithmPolicy) -> Option<&'static [AllowedSignatureAlgorithm]> {
    use AllowedSignatureAlgorithm as A;
    const STRICT: &[A] =
        &[A::RsaSha256, A::RsaSha384, A::RsaSha512, A::EcdsaSha256, A::EcdsaSha384, A::EcdsaSha512];
    // samael's list has no SHA-1 entry: with SHA-1 allowed the algorithms were already checked
    // against the policy by `check_enveloped_shape`, so xmlsec is left unrestricted.
    if policy.allow_sha1 { None } else { Some(STRICT) }
}

/// Checks that `root` carries exactly one signature, as its own child, with one Reference to
/// the root's ID, only enveloped/C14N transforms, and algorithms the policy allows.
fn check_enveloped_shape(root: roxmltree::Node<'_, '_>, policy: AlgorithmPolicy) -> Result<()> {
    let id = root.attribute("ID").filter(|v| !v.is_empty());
    let id = id.ok_or_else(|| SamlError::Malformed("the message has no ID".into()))?;
    let signatures: Vec<_> =
        root.descendants().filter(|n| is_el(*n, NS_DSIG, "Signature")).collect();
    let signature = match signatures.as_slice() {
        [] => return Err(SamlError::Unsigned),
        [one] => *one,
        _ => return Err(SamlError::Wrapping("more than one Signature".into())),
    };
    if signature.parent() != Some(root) {
        return Err(SamlError::Wrapping("the Signature is not on the message itself".into()));
    }
    let malformed = || SamlError::BadSignature("incomplete Signature".into());
    let signed_info = only_child(signature, NS_DSIG, "SignedInfo")?.ok_or_else(malformed)?;
    let method = only_child(signed_info, NS_DSIG, "SignatureMethod")?.ok_or_else(malformed)?;
    let method = method.attribute("Algorithm").unwrap_or_default();
    if !policy.signature_allowed(method) {
        return Err(SamlError::AlgorithmNotAllowed(method.to_string()));
    }
    let references: Vec<_> = children(signed_info, NS_DSIG, "Reference").collect();
    let [reference] = references.as_slice() else {
        return Err(SamlError::Wrapping("the Signature must have exactly one Reference".into()));
    };
    if reference.attribute("URI") != Some(format!("#{id}").as_str()) {
        return Err(SamlError::Wrapping("the signed Reference is not the message".into()));
    }
    let digest = only_child(*reference, NS_DSIG, "DigestMethod")?.ok_or_else(malformed)?;
    let digest = digest.attribute("Algorithm").unwrap_or_default();
    if !policy.digest_allowed(digest) {
        return Err(SamlError::AlgorithmNotAllowed(digest.to_string()));
    }
    for transforms in children(*reference, NS_DSIG, "Transforms") {
        for t in transforms.children().filter(|n| n.is_element()) {
            let alg = t.attribute("Algorithm").unwrap_or_default();
            let known = is_el(t, NS_DSIG, "Transform")
                && matches!(
                    alg,
                    ENVELOPED
                        | EXC_C14N
                        | "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
                        | "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
                        | "http://www.w3.org/2006/12/xml-c14n11"
                );
            if !known {
                return Err(SamlError::Wrapping(format!("transform not allowed: {alg}")));
            }
        }
    }
    Ok(())
}

/// Verifies the enveloped signature of a protocol message whose root is `{protocol}root_name`
/// and returns the XML that the signature covers (samael's reduction to signed content), to be
/// the only thing read afterwards.
pub(crate) fn verify_enveloped(
    xml: &str,
    root_name: &str,
    certs: &[Vec<u8>],
    policy: AlgorithmPolicy,
) -> Result<String> {
    let id = {
        let doc = parse_xml(xml)?;
        let root = doc.root_element();
        if !is_el(root, NS_PROTOCOL, root_name) {
            return Err(SamlError::Malformed(format!("the message is not a {root_name}")));
        }
        check_enveloped_shape(root, policy)?;
        root.attribute("ID").unwrap_or_default().to_string()
    };
    if certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    let certs: Vec<CertificateDer> =
        certs.iter().map(|c| CertificateDer::from(c.clone())).collect();
    let verified = XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        allowed_algorithms(policy),
    )
    .map_err(|e| SamlError::BadSignature(e.to_string()))?;
    // What xmlsec verified must be that same message, whole.
    let doc = parse_xml(&verified)?;
    let root = doc.root_element();
    if !is_el(root, NS_PROTOCOL, root_name) || root.attribute("ID") != Some(id.as_str()) {
        return Err(SamlError::Wrapping("the verified content is not the message".into()));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{other_pair, test_pair};

    pub(crate) fn signer() -> SigningKey {
        let p = test_pair();
        SigningKey { key_pem: p.key_pem.clone(), cert_pem: p.cert_pem.clone() }
    }

    fn cert() -> Vec<u8> {
        keys::cert_der(&test_pair().cert_pem).unwrap()
    }

    fn query_of(url: &str) -> &str {
        url.split_once('?').unwrap().1
    }

    const XML: &str = "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
                       ID=\"_1\" Version=\"2.0\"/>";

    #[test]
    fn binding_uris() {
        for b in [Binding::Redirect, Binding::Post] {
            assert_eq!(Binding::from_uri(b.uri()), Some(b));
        }
        assert_eq!(Binding::from_uri("urn:oasis:names:tc:SAML:2.0:bindings:SOAP"), None);
    }

    #[test]
    fn unsigned_round_trip() {
        let url = redirect_url("https://idp.example/sso", "SAMLRequest", XML, Some("a b&c"), None)
            .unwrap();
        assert!(url.starts_with("https://idp.example/sso?SAMLRequest="));
        let m = decode_redirect(query_of(&url), "SAMLRequest", &[], AlgorithmPolicy::default())
            .unwrap();
        assert_eq!(
            m,
            RedirectMessage { xml: XML.into(), relay_state: Some("a b&c".into()), signed: false }
        );
        // The destination's own query string is kept.
        let url = redirect_url("https://idp.example/sso?tenant=1", "SAMLRequest", XML, None, None)
            .unwrap();
        assert!(url.starts_with("https://idp.example/sso?tenant=1&SAMLRequest="));
        assert!(redirect_url("https://idp.example/#x", "SAMLRequest", XML, None, None).is_err());
        assert!(redirect_url("https://idp.example/", "Other", XML, None, None).is_err());
    }

    #[test]
    fn signed_round_trip_and_tampering() {
        let strict = AlgorithmPolicy::default();
        let certs = [cert()];
        let url = redirect_url(
            "https://idp.example/slo",
            "SAMLResponse",
            XML,
            Some("rs"),
            Some(&signer()),
        )
        .unwrap();
        let q = query_of(&url);
        assert!(q.contains(
            "&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256&Signature="
        ));
        let m = decode_redirect(q, "SAMLResponse", &certs, strict).unwrap();
        assert!(m.signed);
        assert_eq!(m.relay_state.as_deref(), Some("rs"));
        // Parameter order does not matter for the signed octets.
        let parts: Vec<&str> = q.split('&').collect();
        let reordered = format!("{}&{}&{}&{}", parts[3], parts[2], parts[1], parts[0]);
        assert!(decode_redirect(&reordered, "SAMLResponse", &certs, strict).unwrap().signed);
        // Changed RelayState, dropped RelayState, wrong parameter name, wrong certificate.
        let tampered = q.replace("RelayState=rs", "RelayState=rt");
        assert!(matches!(
            decode_redirect(&tampered, "SAMLResponse", &certs, strict),
            Err(SamlError::BadSignature(_))
        ));
        let dropped = q.replace("&RelayState=rs", "");
        assert!(matches!(
            decode_redirect(&dropped, "SAMLResponse", &certs, strict),
            Err(SamlError::BadSignature(_))
        ));
        assert!(decode_redirect(q, "SAMLRequest", &certs, strict).is_err());
        let other = [keys::cert_der(&other_pair().cert_pem).unwrap()];
        assert!(matches!(
            decode_redirect(q, "SAMLResponse", &other, strict),
            Err(SamlError::BadSignature(_))
        ));
        // Rollover: any trusted certificate will do.
        let both = [other[0].clone(), certs[0].clone()];
        assert!(decode_redirect(q, "SAMLResponse", &both, strict).is_ok());
        // A repeated parameter is refused.
        let doubled = format!("{q}&RelayState=rs");
        assert!(matches!(
            decode_redirect(&doubled, "SAMLResponse", &certs, strict),
            Err(SamlError::Malformed(_))
        ));
    }

    #[test]
    fn missing_or_unacceptable_sig_alg() {
        let strict = AlgorithmPolicy::default();
        let certs = [cert()];
        let unsigned = redirect_url("https://x/", "SAMLRequest", XML, None, None).unwrap();
        assert_eq!(
            decode_redirect(query_of(&unsigned), "SAMLRequest", &certs, strict),
            Err(SamlError::Unsigned)
        );
        let url = redirect_url("https://x/", "SAMLRequest", XML, None, Some(&signer())).unwrap();
        let q = query_of(&url);
        let (head, sig) = q.split_once("&SigAlg=").unwrap();
        let sig = sig.split_once('&').unwrap().1;
        let no_alg = format!("{head}&{sig}");
        assert!(matches!(
            decode_redirect(&no_alg, "SAMLRequest", &certs, strict),
            Err(SamlError::BadSignature(_))
        ));
        for alg in [
            "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
            "urn:unknown",
            "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
        ] {
            let q = format!("{head}&SigAlg={}&{sig}", url_encode(alg));
            assert!(matches!(
                decode_redirect(&q, "SAMLRequest", &certs, strict),
                Err(SamlError::AlgorithmNotAllowed(_))
            ));
            let lax = AlgorithmPolicy { allow_sha1: true };
            assert!(matches!(
                decode_redirect(&q, "SAMLRequest", &certs, lax),
                Err(SamlError::AlgorithmNotAllowed(_))
            ));
        }
    }

    fn sign_query(octets: &str, digest: MessageDigest) -> String {
        let key = PKey::private_key_from_pem(test_pair().key_pem.as_bytes()).unwrap();
        let mut s = Signer::new(digest, &key).unwrap();
        s.update(octets.as_bytes()).unwrap();
        url_encode(&STANDARD.encode(s.sign_to_vec().unwrap()))
    }

    #[test]
    fn sha1_only_when_allowed() {
        let plain = redirect_url("https://x/", "SAMLRequest", XML, None, None).unwrap();
        let octets = format!("{}&SigAlg={}", query_of(&plain), url_encode(algorithms::RSA_SHA1));
        let q = format!("{octets}&Signature={}", sign_query(&octets, MessageDigest::sha1()));
        let certs = [cert()];
        assert!(matches!(
            decode_redirect(&q, "SAMLRequest", &certs, AlgorithmPolicy::default()),
            Err(SamlError::AlgorithmNotAllowed(_))
        ));
        assert!(
            decode_redirect(&q, "SAMLRequest", &certs, AlgorithmPolicy { allow_sha1: true })
                .unwrap()
                .signed
        );
        // RSA-SHA512 from an IdP is fine.
        let octets = format!("{}&SigAlg={}", query_of(&plain), url_encode(algorithms::RSA_SHA512));
        let q = format!("{octets}&Signature={}", sign_query(&octets, MessageDigest::sha512()));
        assert!(
            decode_redirect(&q, "SAMLRequest", &certs, AlgorithmPolicy::default()).unwrap().signed
        );
    }

    #[test]
    fn ecdsa_query_signature() {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let ec = openssl::ec::EcKey::generate(&group).unwrap();
        let key = PKey::from_ec_key(ec).unwrap();
        let mut b = X509::builder().unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "ec").unwrap();
        let name = name.build();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::from_unix(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::from_unix(2_000_000_000).unwrap()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let der = b.build().to_der().unwrap();
        let plain = redirect_url("https://x/", "SAMLRequest", XML, None, None).unwrap();
        let octets =
            format!("{}&SigAlg={}", query_of(&plain), url_encode(algorithms::ECDSA_SHA256));
        let mut s = Signer::new(MessageDigest::sha256(), &key).unwrap();
        let der_sig = s.sign_oneshot_to_vec(octets.as_bytes()).unwrap();
        let sig = EcdsaSig::from_der(&der_sig).unwrap();
        let mut raw = sig.r().to_vec_padded(32).unwrap();
        raw.extend(sig.s().to_vec_padded(32).unwrap());
        let policy = AlgorithmPolicy::default();
        for form in [raw, der_sig] {
            let q = format!("{octets}&Signature={}", url_encode(&STANDARD.encode(form)));
            assert!(
                decode_redirect(&q, "SAMLRequest", std::slice::from_ref(&der), policy)
                    .unwrap()
                    .signed
            );
            // An RSA certificate never verifies an ECDSA SigAlg.
            assert!(decode_redirect(&q, "SAMLRequest", &[cert()], policy).is_err());
        }
    }

    #[test]
    fn inflate_bomb_and_bad_encodings() {
        let big = "<a>".to_string() + &"x".repeat(MAX_INFLATED_BYTES) + "</a>";
        let url = redirect_url("https://x/", "SAMLRequest", &big, None, None).unwrap();
        assert!(query_of(&url).len() < MAX_REDIRECT_PARAM_BYTES);
        let p = AlgorithmPolicy::default();
        assert_eq!(
            decode_redirect(query_of(&url), "SAMLRequest", &[], p),
            Err(SamlError::TooLarge)
        );
        assert_eq!(
            decode_redirect("SAMLRequest=%%%", "SAMLRequest", &[], p),
            Err(SamlError::Base64)
        );
        assert_eq!(
            decode_redirect("SAMLRequest=aGVsbG8%3D", "SAMLRequest", &[], p),
            Err(SamlError::Inflate)
        );
        assert!(matches!(
            decode_redirect("RelayState=x", "SAMLRequest", &[], p),
            Err(SamlError::Malformed(_))
        ));
        let huge = format!("SAMLRequest={}", "A".repeat(MAX_REDIRECT_PARAM_BYTES + 1));
        assert_eq!(decode_redirect(&huge, "SAMLRequest", &[], p), Err(SamlError::TooLarge));
        let doctype =
            redirect_url("https://x/", "SAMLRequest", "<!DOCTYPE a><a/>", None, None).unwrap();
        assert_eq!(
            decode_redirect(query_of(&doctype), "SAMLRequest", &[], p),
            Err(SamlError::Doctype)
        );
    }

    #[test]
    fn post_decoding() {
        let b64 = STANDARD.encode(XML);
        assert_eq!(decode_post(&b64, 1024).unwrap(), XML);
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(decode_post(&wrapped, 1024).unwrap(), XML);
        assert_eq!(decode_post(&b64, 10), Err(SamlError::TooLarge));
        assert_eq!(decode_post("***", 10), Err(SamlError::Base64));
        assert_eq!(
            decode_post(&STANDARD.encode([0xff, 0xfe]), 10).map_err(|e| e.reason()),
            Err("malformed")
        );
        assert_eq!(decode_post(&STANDARD.encode("<!DOCTYPE x><x/>"), 100), Err(SamlError::Doctype));
    }

    #[test]
    fn url_encoding_matches_python_urlencode() {
        // urllib.parse.urlencode({"k": "a b*~/+=&é"}) == "k=a+b%2A~%2F%2B%3D%26%C3%A9"
        assert_eq!(url_encode("a b*~/+=&\u{e9}"), "a+b%2A~%2F%2B%3D%26%C3%A9");
    }

    #[test]
    fn helpers() {
        assert_eq!(esc("a<b>&\"'\n").unwrap(), "a&lt;b&gt;&amp;&quot;&apos;&#10;");
        assert!(esc("a\u{1}").is_err());
        assert_eq!(iso_instant(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(parse_instant("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert_eq!(parse_instant("2023-11-14T22:13:20.123Z").unwrap(), 1_700_000_000);
        assert_eq!(parse_instant("2023-11-14T23:13:20+01:00").unwrap(), 1_700_000_000);
        assert_eq!(parse_instant("2023-11-14T22:13:20").unwrap(), 1_700_000_000);
        assert!(parse_instant("yesterday").is_err());
        let doc = parse_xml("<a><b>x<!-- c -->y<![CDATA[z]]></b></a>").unwrap();
        assert_eq!(full_text(doc.root_element()), "xyz");
        assert!(parse_xml("<a><b></a>").is_err());
    }
}
