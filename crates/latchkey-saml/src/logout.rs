//! Single Logout (SAML 2.0 Core §3.7, Profiles §4.4) both ways: the SP's LogoutRequest to the
//! IdP and its answer, and the IdP's LogoutRequest to the SP and the SP's answer, over the
//! Redirect binding (query signature) and the POST binding (enveloped signature).
//!
//! A received message is acted on only when signed by a trusted IdP key, issued by the
//! connection's IdP, addressed to this SP's SLO URL, and fresh. For POST, only the content the
//! verified signature covers is read.

use crate::algorithms::AlgorithmPolicy;
use crate::binding::{
    self, MAX_POST_BYTES, NS_ASSERTION, NS_PROTOCOL, PostForm, SigningKey, children, decode_post,
    decode_redirect, esc, full_text, is_el, iso_instant, only_child, parse_instant, parse_xml,
    redirect_url, sign_enveloped, signature_template, verify_enveloped,
};
use crate::model::NameId;
use crate::{Result, SamlError};

/// How old (beyond the clock skew) a received logout message may be.
pub const MAX_MESSAGE_AGE_SECS: i64 = 180;

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
const REASON_USER: &str = "urn:oasis:names:tc:SAML:2.0:logout:user";

/// A LogoutRequest from the SP to the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutRequestSpec<'a> {
    pub id: &'a str,
    pub issue_instant: i64,
    /// The SP entity ID.
    pub issuer: &'a str,
    /// The IdP's SingleLogoutService location.
    pub destination: &'a str,
    /// The NameID of the assertion that started the session.
    pub name_id: &'a NameId,
    pub session_index: Option<&'a str>,
}

/// What a received logout message must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutExpectations<'a> {
    pub idp_entity_id: &'a str,
    pub idp_certs: &'a [Vec<u8>],
    /// This SP's SLO URL.
    pub destination: &'a str,
    pub policy: AlgorithmPolicy,
    pub now: i64,
    pub skew_secs: i64,
}

/// A verified LogoutRequest from the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedLogoutRequest {
    pub id: String,
    pub issuer: String,
    pub name_id: NameId,
    /// Empty means every session of this NameID.
    pub session_indexes: Vec<String>,
    pub relay_state: Option<String>,
    pub not_on_or_after: Option<i64>,
}

/// A LogoutResponse from the SP to the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponseSpec<'a> {
    pub id: &'a str,
    pub issue_instant: i64,
    /// The SP entity ID.
    pub issuer: &'a str,
    /// The IdP's SLO ResponseLocation (or Location).
    pub destination: &'a str,
    pub in_response_to: &'a str,
    pub success: bool,
}

/// A verified LogoutResponse from the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedLogoutResponse {
    pub in_response_to: Option<String>,
    pub success: bool,
    pub relay_state: Option<String>,
    /// The top-level StatusCode value.
    pub status: String,
}

fn check_ids(id: &str, issuer: &str) -> Result<()> {
    if id.is_empty() || issuer.is_empty() {
        return Err(SamlError::Internal("logout message without ID or issuer".into()));
    }
    Ok(())
}

fn logout_request(spec: &LogoutRequestSpec, signer: Option<&SigningKey>) -> Result<String> {
    check_ids(spec.id, spec.issuer)?;
    let format = match &spec.name_id.format {
        Some(f) => format!(" Format=\"{}\"", esc(f)?),
        None => String::new(),
    };
    let session = match spec.session_index {
        Some(s) => format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(s)?),
        None => String::new(),
    };
    let signature = signer.map(|s| signature_template(spec.id, s)).transpose()?;
    Ok(format!(
        "<samlp:LogoutRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" \
         Reason=\"{REASON_USER}\"><saml:Issuer>{}</saml:Issuer>{}\
         <saml:NameID{format}>{}</saml:NameID>{session}</samlp:LogoutRequest>",
        esc(spec.id)?,
        iso_instant(spec.issue_instant)?,
        esc(spec.destination)?,
        esc(spec.issuer)?,
        signature.unwrap_or_default(),
        esc(&spec.name_id.value)?,
    ))
}

/// The unsigned LogoutRequest XML.
pub fn logout_request_xml(spec: &LogoutRequestSpec) -> Result<String> {
    logout_request(spec, None)
}

/// The SP's LogoutRequest over the Redirect binding (query-signed when `signer` is given).
pub fn logout_request_redirect(
    spec: &LogoutRequestSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<String> {
    redirect_url(spec.destination, "SAMLRequest", &logout_request(spec, None)?, relay_state, signer)
}

/// The SP's LogoutRequest over the POST binding (enveloped signature when `signer` is given).
pub fn logout_request_post(
    spec: &LogoutRequestSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<PostForm> {
    let xml = match signer {
        Some(s) => sign_enveloped(&logout_request(spec, Some(s))?, s)?,
        None => logout_request(spec, None)?,
    };
    binding::post_form(spec.destination, "SAMLRequest", &xml, relay_state)
}

fn logout_response(spec: &LogoutResponseSpec, signer: Option<&SigningKey>) -> Result<String> {
    check_ids(spec.id, spec.issuer)?;
    let status = if spec.success { STATUS_SUCCESS } else { STATUS_RESPONDER };
    let signature = signer.map(|s| signature_template(spec.id, s)).transpose()?;
    Ok(format!(
        "<samlp:LogoutResponse xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{}\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{}\" InResponseTo=\"{}\">\
         <saml:Issuer>{}</saml:Issuer>{}<samlp:Status><samlp:StatusCode Value=\"{status}\"/>\
         </samlp:Status></samlp:LogoutResponse>",
        esc(spec.id)?,
        iso_instant(spec.issue_instant)?,
        esc(spec.destination)?,
        esc(spec.in_response_to)?,
        esc(spec.issuer)?,
        signature.unwrap_or_default(),
    ))
}

/// The unsigned LogoutResponse XML.
pub fn logout_response_xml(spec: &LogoutResponseSpec) -> Result<String> {
    logout_response(spec, None)
}

/// The SP's LogoutResponse over the Redirect binding.
pub fn logout_response_redirect(
    spec: &LogoutResponseSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<String> {
    let xml = logout_response(spec, None)?;
    redirect_url(spec.destination, "SAMLResponse", &xml, relay_state, signer)
}

/// The SP's LogoutResponse over the POST binding.
pub fn logout_response_post(
    spec: &LogoutResponseSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<PostForm> {
    let xml = match signer {
        Some(s) => sign_enveloped(&logout_response(spec, Some(s))?, s)?,
        None => logout_response(spec, None)?,
    };
    binding::post_form(spec.destination, "SAMLResponse", &xml, relay_state)
}

/// The checks every received logout message passes: protocol element, version, ID, Issuer,
/// Destination and IssueInstant. Returns the ID and the issuer.
fn check_message(
    root: roxmltree::Node<'_, '_>,
    name: &str,
    expect: &LogoutExpectations,
) -> Result<(String, String)> {
    if !is_el(root, NS_PROTOCOL, name) {
        return Err(SamlError::Malformed(format!("the message is not a {name}")));
    }
    if root.attribute("Version") != Some("2.0") {
        return Err(SamlError::Malformed("the message is not SAML 2.0".into()));
    }
    let id = root.attribute("ID").filter(|v| !v.is_empty());
    let id = id.ok_or_else(|| SamlError::Malformed("the message has no ID".into()))?;
    let issuer = only_child(root, NS_ASSERTION, "Issuer")?
        .ok_or_else(|| SamlError::Issuer(String::new()))?;
    let issuer = full_text(issuer);
    if issuer != expect.idp_entity_id {
        return Err(SamlError::Issuer(issuer));
    }
    // Bindings §3.4.5.2 and §3.5.5.2: a signed message must name its Destination.
    let destination = root.attribute("Destination").unwrap_or_default();
    if destination != expect.destination {
        return Err(SamlError::Destination(destination.to_string()));
    }
    let instant = root.attribute("IssueInstant");
    let instant = instant.ok_or_else(|| SamlError::Malformed("no IssueInstant".into()))?;
    let instant = parse_instant(instant)?;
    if instant > expect.now + expect.skew_secs {
        return Err(SamlError::NotYetValid);
    }
    if instant < expect.now - expect.skew_secs - MAX_MESSAGE_AGE_SECS {
        return Err(SamlError::Expired);
    }
    Ok((id.to_string(), issuer))
}

fn read_logout_request(
    xml: &str,
    relay_state: Option<String>,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutRequest> {
    let doc = parse_xml(xml)?;
    let root = doc.root_element();
    let (id, issuer) = check_message(root, "LogoutRequest", expect)?;
    let not_on_or_after = root.attribute("NotOnOrAfter").map(parse_instant).transpose()?;
    if not_on_or_after.is_some_and(|t| expect.now >= t + expect.skew_secs) {
        return Err(SamlError::Expired);
    }
    let Some(name_id) = only_child(root, NS_ASSERTION, "NameID")? else {
        let other = children(root, NS_ASSERTION, "EncryptedID")
            .chain(children(root, NS_ASSERTION, "BaseID"))
            .next();
        let why =
            if other.is_some() { "EncryptedID and BaseID are not supported" } else { "no NameID" };
        return Err(SamlError::NoSubject(why.into()));
    };
    let name_id = NameId {
        value: full_text(name_id),
        format: name_id.attribute("Format").map(str::to_string),
    };
    if name_id.value.is_empty() {
        return Err(SamlError::NoSubject("empty NameID".into()));
    }
    let session_indexes = children(root, NS_PROTOCOL, "SessionIndex").map(full_text).collect();
    Ok(ReceivedLogoutRequest { id, issuer, name_id, session_indexes, relay_state, not_on_or_after })
}

fn read_logout_response(
    xml: &str,
    relay_state: Option<String>,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutResponse> {
    let doc = parse_xml(xml)?;
    let root = doc.root_element();
    check_message(root, "LogoutResponse", expect)?;
    let status = only_child(root, NS_PROTOCOL, "Status")?
        .ok_or_else(|| SamlError::Malformed("no Status".into()))?;
    let code = only_child(status, NS_PROTOCOL, "StatusCode")?
        .ok_or_else(|| SamlError::Malformed("no StatusCode".into()))?;
    let status = code.attribute("Value").unwrap_or_default().to_string();
    Ok(ReceivedLogoutResponse {
        in_response_to: root.attribute("InResponseTo").map(str::to_string),
        success: status == STATUS_SUCCESS,
        relay_state,
        status,
    })
}

fn require_certs(expect: &LogoutExpectations) -> Result<()> {
    if expect.idp_certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    Ok(())
}

/// An IdP's LogoutRequest over the Redirect binding; the query signature is required.
pub fn parse_logout_request_redirect(
    raw_query: &str,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutRequest> {
    require_certs(expect)?;
    let m = decode_redirect(raw_query, "SAMLRequest", expect.idp_certs, expect.policy)?;
    if !m.signed {
        return Err(SamlError::Unsigned);
    }
    read_logout_request(&m.xml, m.relay_state, expect)
}

/// An IdP's LogoutRequest over the POST binding; the enveloped signature is required and only
/// the content it covers is read.
pub fn parse_logout_request_post(
    b64: &str,
    relay_state: Option<&str>,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutRequest> {
    require_certs(expect)?;
    let xml = decode_post(b64, MAX_POST_BYTES)?;
    let verified = verify_enveloped(&xml, "LogoutRequest", expect.idp_certs, expect.policy)?;
    read_logout_request(&verified, relay_state.map(str::to_string), expect)
}

/// The IdP's LogoutResponse over the Redirect binding; the query signature is required.
pub fn parse_logout_response_redirect(
    raw_query: &str,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutResponse> {
    require_certs(expect)?;
    let m = decode_redirect(raw_query, "SAMLResponse", expect.idp_certs, expect.policy)?;
    if !m.signed {
        return Err(SamlError::Unsigned);
    }
    read_logout_response(&m.xml, m.relay_state, expect)
}

/// The IdP's LogoutResponse over the POST binding; the enveloped signature is required.
pub fn parse_logout_response_post(
    b64: &str,
    relay_state: Option<&str>,
    expect: &LogoutExpectations,
) -> Result<ReceivedLogoutResponse> {
    require_certs(expect)?;
    let xml = decode_post(b64, MAX_POST_BYTES)?;
    let verified = verify_enveloped(&xml, "LogoutResponse", expect.idp_certs, expect.policy)?;
    read_logout_response(&verified, relay_state.map(str::to_string), expect)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::algorithms;
    use crate::binding::signature_template_with;
    use crate::keys::tests::{NOW, other_pair, test_pair};
    use crate::keys::{self};
    use crate::model::NAMEID_EMAIL;

    const IDP: &str = "https://idp.example/idp";
    const SLO: &str = "https://sp.example/saml/c1/slo";

    fn signer() -> SigningKey {
        let p = test_pair();
        SigningKey { key_pem: p.key_pem.clone(), cert_pem: p.cert_pem.clone() }
    }

    fn certs() -> Vec<Vec<u8>> {
        vec![keys::cert_der(&test_pair().cert_pem).unwrap()]
    }

    fn expect(certs: &[Vec<u8>]) -> LogoutExpectations<'_> {
        LogoutExpectations {
            idp_entity_id: IDP,
            idp_certs: certs,
            destination: SLO,
            policy: AlgorithmPolicy::default(),
            now: NOW + 5,
            skew_secs: 60,
        }
    }

    fn name_id() -> NameId {
        NameId { value: "alice@corp.example".into(), format: Some(NAMEID_EMAIL.into()) }
    }

    /// A LogoutRequest as the IdP would send it to the SP.
    fn idp_request<'a>(name_id: &'a NameId, id: &'a str) -> LogoutRequestSpec<'a> {
        LogoutRequestSpec {
            id,
            issue_instant: NOW,
            issuer: IDP,
            destination: SLO,
            name_id,
            session_index: Some("_sess1"),
        }
    }

    fn query(url: &str) -> &str {
        url.split_once('?').unwrap().1
    }

    fn post_xml(form: &PostForm) -> String {
        String::from_utf8(STANDARD.decode(&form.fields[0].1).unwrap()).unwrap()
    }

    #[test]
    fn request_redirect_round_trip_and_checks() {
        let n = name_id();
        let certs = certs();
        let url =
            logout_request_redirect(&idp_request(&n, "_r1"), Some("rs"), Some(&signer())).unwrap();
        let got = parse_logout_request_redirect(query(&url), &expect(&certs)).unwrap();
        assert_eq!(
            got,
            ReceivedLogoutRequest {
                id: "_r1".into(),
                issuer: IDP.into(),
                name_id: n.clone(),
                session_indexes: vec!["_sess1".into()],
                relay_state: Some("rs".into()),
                not_on_or_after: None,
            }
        );
        // Unsigned, wrong key, no keys at all.
        let unsigned = logout_request_redirect(&idp_request(&n, "_r1"), None, None).unwrap();
        assert_eq!(
            parse_logout_request_redirect(query(&unsigned), &expect(&certs)),
            Err(SamlError::Unsigned)
        );
        let other = vec![keys::cert_der(&other_pair().cert_pem).unwrap()];
        assert!(matches!(
            parse_logout_request_redirect(query(&url), &expect(&other)),
            Err(SamlError::BadSignature(_))
        ));
        assert_eq!(
            parse_logout_request_redirect(query(&url), &expect(&[])),
            Err(SamlError::NoSigningCertificate)
        );
        // Issuer, Destination (no prefix match) and time.
        let mut e = expect(&certs);
        e.idp_entity_id = "https://idp.example/idp2";
        assert!(matches!(
            parse_logout_request_redirect(query(&url), &e),
            Err(SamlError::Issuer(_))
        ));
        let mut e = expect(&certs);
        e.destination = "https://sp.example/saml/c1/slo/extra";
        assert!(matches!(
            parse_logout_request_redirect(query(&url), &e),
            Err(SamlError::Destination(_))
        ));
        let mut e = expect(&certs);
        e.now = NOW - 61;
        assert_eq!(parse_logout_request_redirect(query(&url), &e), Err(SamlError::NotYetValid));
        e.now = NOW + 60 + MAX_MESSAGE_AGE_SECS + 1;
        assert_eq!(parse_logout_request_redirect(query(&url), &e), Err(SamlError::Expired));
        // A response is not a request.
        assert!(parse_logout_response_redirect(query(&url), &expect(&certs)).is_err());
    }

    /// Signs `xml` (carrying a template) as the IdP.
    fn sign(xml: &str) -> String {
        sign_enveloped(xml, &signer()).unwrap()
    }

    fn b64(xml: &str) -> String {
        STANDARD.encode(xml)
    }

    #[test]
    fn request_post_good_tampered_unsigned() {
        let n = name_id();
        let certs = certs();
        let form =
            logout_request_post(&idp_request(&n, "_p1"), Some("rs"), Some(&signer())).unwrap();
        assert_eq!(form.action, SLO);
        let got =
            parse_logout_request_post(&form.fields[0].1, Some("rs"), &expect(&certs)).unwrap();
        assert_eq!(got.id, "_p1");
        assert_eq!(got.name_id, n);
        assert_eq!(got.relay_state.as_deref(), Some("rs"));
        let xml = post_xml(&form);
        let tampered = xml.replace("alice@corp.example", "bob@corp.example");
        assert!(matches!(
            parse_logout_request_post(&b64(&tampered), None, &expect(&certs)),
            Err(SamlError::BadSignature(_))
        ));
        let unsigned = logout_request_post(&idp_request(&n, "_p1"), None, None).unwrap();
        assert_eq!(
            parse_logout_request_post(&unsigned.fields[0].1, None, &expect(&certs)),
            Err(SamlError::Unsigned)
        );
        let other = vec![keys::cert_der(&other_pair().cert_pem).unwrap()];
        assert!(matches!(
            parse_logout_request_post(&form.fields[0].1, None, &expect(&other)),
            Err(SamlError::BadSignature(_))
        ));
        assert_eq!(
            parse_logout_request_post(&b64("<!DOCTYPE x><x/>"), None, &expect(&certs)),
            Err(SamlError::Doctype)
        );
    }

    #[test]
    fn request_post_wrapping_is_refused() {
        let n = name_id();
        let certs = certs();
        let signed = post_xml(
            &logout_request_post(&idp_request(&n, "_orig"), None, Some(&signer())).unwrap(),
        );
        let signed_body = &signed[signed.find("<samlp:LogoutRequest").unwrap()..].trim_end();
        let evil_open = format!(
            "<samlp:LogoutRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
             ID=\"_evil\" Version=\"2.0\" IssueInstant=\"{}\" Destination=\"{SLO}\">\
             <saml:Issuer>{IDP}</saml:Issuer>",
            iso_instant(NOW).unwrap()
        );
        // 1. The signed request hidden in Extensions under an unsigned root.
        let wrapped = format!(
            "{evil_open}<samlp:Extensions>{signed_body}</samlp:Extensions>\
             <saml:NameID>victim@corp.example</saml:NameID></samlp:LogoutRequest>"
        );
        assert!(matches!(
            parse_logout_request_post(&b64(&wrapped), None, &expect(&certs)),
            Err(SamlError::Wrapping(_))
        ));
        // 2. The Signature moved onto the unsigned root, still pointing at the original.
        let start = signed_body.find("<ds:Signature").unwrap();
        let end = signed_body.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let sig = &signed_body[start..end];
        let original_unsigned = format!("{}{}", &signed_body[..start], &signed_body[end..]);
        let moved = format!(
            "{evil_open}{sig}<saml:NameID>victim@corp.example</saml:NameID>\
             <samlp:Extensions>{original_unsigned}</samlp:Extensions></samlp:LogoutRequest>"
        );
        assert!(matches!(
            parse_logout_request_post(&b64(&moved), None, &expect(&certs)),
            Err(SamlError::Wrapping(_))
        ));
        // 3. A second signature anywhere.
        let doubled = signed.replace(
            "</samlp:LogoutRequest>",
            &format!("<samlp:Extensions>{sig}</samlp:Extensions></samlp:LogoutRequest>"),
        );
        assert!(matches!(
            parse_logout_request_post(&b64(&doubled), None, &expect(&certs)),
            Err(SamlError::Wrapping(_))
        ));
        // 4. A second NameID added after signing.
        let extra = signed.replace(
            "</samlp:LogoutRequest>",
            "<saml:NameID>x</saml:NameID></samlp:LogoutRequest>",
        );
        assert!(parse_logout_request_post(&b64(&extra), None, &expect(&certs)).is_err());
    }

    #[test]
    fn name_id_is_read_whole_despite_comments() {
        let full = "victim@corp.example.evil.example";
        let n = NameId { value: full.into(), format: None };
        let certs = certs();
        // Redirect binding: the comment is inside the signed octets; the value is read whole.
        let plain = logout_request_xml(&idp_request(&n, "_c0")).unwrap();
        let commented = plain.replace(".evil.example", "<!---->.evil.example");
        let url = redirect_url(SLO, "SAMLRequest", &commented, None, Some(&signer())).unwrap();
        let got = parse_logout_request_redirect(query(&url), &expect(&certs)).unwrap();
        assert_eq!(got.name_id.value, full);
        // POST binding: a comment in the signed value, or one inserted after signing (exclusive
        // C14N leaves comments out of the digest). samael's reduction refuses comments inside
        // signed content; either way the truncated value never comes out.
        let template = logout_request(&idp_request(&n, "_c1"), Some(&signer())).unwrap();
        let signed_with = sign(&template.replace(".evil.example", "<!---->.evil.example"));
        let inserted = sign(&template).replace("victim@", "victim<!-- x -->@");
        for xml in [signed_with, inserted] {
            match parse_logout_request_post(&b64(&xml), None, &expect(&certs)) {
                Ok(got) => assert_eq!(got.name_id.value, full),
                Err(e) => assert_eq!(e.reason(), "bad_signature"),
            }
        }
    }

    #[test]
    fn sha1_post_signature_only_when_allowed() {
        let n = name_id();
        let certs = certs();
        let spec = idp_request(&n, "_s1");
        let plain = logout_request(&spec, None).unwrap();
        let template = signature_template_with(
            "_s1",
            &signer(),
            algorithms::RSA_SHA1,
            algorithms::DIGEST_SHA1,
        )
        .unwrap();
        let xml = sign(&plain.replace("</saml:Issuer>", &format!("</saml:Issuer>{template}")));
        assert!(matches!(
            parse_logout_request_post(&b64(&xml), None, &expect(&certs)),
            Err(SamlError::AlgorithmNotAllowed(_))
        ));
        let mut lax = expect(&certs);
        lax.policy = AlgorithmPolicy { allow_sha1: true };
        assert_eq!(parse_logout_request_post(&b64(&xml), None, &lax).unwrap().id, "_s1");
    }

    #[test]
    fn not_on_or_after_and_missing_name_id() {
        let n = name_id();
        let certs = certs();
        let plain = logout_request(&idp_request(&n, "_n1"), Some(&signer())).unwrap();
        let limited = plain.replace(
            "Version=\"2.0\"",
            &format!("Version=\"2.0\" NotOnOrAfter=\"{}\"", iso_instant(NOW + 30).unwrap()),
        );
        let xml = sign(&limited);
        let got = parse_logout_request_post(&b64(&xml), None, &expect(&certs)).unwrap();
        assert_eq!(got.not_on_or_after, Some(NOW + 30));
        let mut late = expect(&certs);
        late.now = NOW + 90;
        assert_eq!(parse_logout_request_post(&b64(&xml), None, &late), Err(SamlError::Expired));
        let encrypted = sign(&plain.replace(
            "<saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">alice@corp.example</saml:NameID>",
            "<saml:EncryptedID><x/></saml:EncryptedID>",
        ));
        assert!(matches!(
            parse_logout_request_post(&b64(&encrypted), None, &expect(&certs)),
            Err(SamlError::NoSubject(_))
        ));
    }

    fn idp_response(id: &str, success: bool) -> LogoutResponseSpec<'_> {
        LogoutResponseSpec {
            id,
            issue_instant: NOW,
            issuer: IDP,
            destination: SLO,
            in_response_to: "_req",
            success,
        }
    }

    #[test]
    fn response_round_trips() {
        let certs = certs();
        let url = logout_response_redirect(&idp_response("_a1", true), Some("rs"), Some(&signer()))
            .unwrap();
        let got = parse_logout_response_redirect(query(&url), &expect(&certs)).unwrap();
        assert_eq!(
            got,
            ReceivedLogoutResponse {
                in_response_to: Some("_req".into()),
                success: true,
                relay_state: Some("rs".into()),
                status: STATUS_SUCCESS.into(),
            }
        );
        let form =
            logout_response_post(&idp_response("_a2", false), None, Some(&signer())).unwrap();
        assert_eq!(form.fields[0].0, "SAMLResponse");
        let got = parse_logout_response_post(&form.fields[0].1, None, &expect(&certs)).unwrap();
        assert!(!got.success);
        assert_eq!(got.status, STATUS_RESPONDER);
        let unsigned = logout_response_redirect(&idp_response("_a3", true), None, None).unwrap();
        assert_eq!(
            parse_logout_response_redirect(query(&unsigned), &expect(&certs)),
            Err(SamlError::Unsigned)
        );
        let unsigned = logout_response_post(&idp_response("_a4", true), None, None).unwrap();
        assert_eq!(
            parse_logout_response_post(&unsigned.fields[0].1, None, &expect(&certs)),
            Err(SamlError::Unsigned)
        );
        let mut e = expect(&certs);
        e.destination = "https://sp.example/other";
        assert!(matches!(
            parse_logout_response_post(&form.fields[0].1, None, &e),
            Err(SamlError::Destination(_))
        ));
        let tampered = post_xml(&form).replace(STATUS_RESPONDER, STATUS_SUCCESS);
        assert!(matches!(
            parse_logout_response_post(&b64(&tampered), None, &expect(&certs)),
            Err(SamlError::BadSignature(_))
        ));
    }

    #[test]
    fn sp_request_xml_shape() {
        let n = NameId { value: "a&b".into(), format: None };
        let spec = LogoutRequestSpec { session_index: None, ..idp_request(&n, "_x") };
        let xml = logout_request_xml(&spec).unwrap();
        let doc = parse_xml(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("Reason"), Some(REASON_USER));
        let nid = only_child(root, NS_ASSERTION, "NameID").unwrap().unwrap();
        assert_eq!(full_text(nid), "a&b");
        assert_eq!(nid.attribute("Format"), None);
        assert_eq!(children(root, NS_PROTOCOL, "SessionIndex").count(), 0);
        let r = logout_response_xml(&idp_response("_y", true)).unwrap();
        assert!(r.contains("InResponseTo=\"_req\""));
        let bad = LogoutRequestSpec { id: "", ..spec };
        assert!(logout_request_xml(&bad).is_err());
    }
}
