//! SP-initiated `<samlp:AuthnRequest>` (SAML 2.0 Core §3.4.1) over the Redirect binding (the
//! signature travels in the query) or the POST binding (an enveloped XML signature). The ID is
//! random (128 bits) because the ACS accepts a response only for an ID this browser started.

use crate::binding::{
    self, NS_ASSERTION, NS_PROTOCOL, PostForm, SigningKey, esc, iso_instant, redirect_url,
    sign_enveloped, signature_template,
};
use crate::{Result, SamlError};

/// `"_"` and 32 hex digits from a CSPRNG: 128 bits, and a valid xs:ID (which may not start
/// with a digit).
pub fn new_message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut id = String::with_capacity(33);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthnRequestSpec<'a> {
    pub id: &'a str,
    pub issue_instant: i64,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    /// The IdP's SSO endpoint for the chosen binding.
    pub destination: &'a str,
    pub name_id_format: Option<&'a str>,
    pub force_authn: bool,
}

fn build(spec: &AuthnRequestSpec, signer: Option<&SigningKey>) -> Result<String> {
    if spec.id.is_empty() || spec.sp_entity_id.is_empty() || spec.acs_url.is_empty() {
        return Err(SamlError::Internal("AuthnRequest without ID, issuer or ACS URL".into()));
    }
    let force = if spec.force_authn { " ForceAuthn=\"true\"" } else { "" };
    let format = match spec.name_id_format {
        Some(f) => format!(" Format=\"{}\"", esc(f)?),
        None => String::new(),
    };
    let signature = match signer {
        Some(s) => signature_template(spec.id, s)?,
        None => String::new(),
    };
    Ok(format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\"{force} \
         ProtocolBinding=\"{post}\" AssertionConsumerServiceURL=\"{acs}\">\
         <saml:Issuer>{issuer}</saml:Issuer>{signature}\
         <samlp:NameIDPolicy{format} AllowCreate=\"true\"/></samlp:AuthnRequest>",
        id = esc(spec.id)?,
        instant = iso_instant(spec.issue_instant)?,
        dest = esc(spec.destination)?,
        post = binding::Binding::Post.uri(),
        acs = esc(spec.acs_url)?,
        issuer = esc(spec.sp_entity_id)?,
    ))
}

/// The unsigned request XML (ProtocolBinding HTTP-POST, AssertionConsumerServiceURL,
/// NameIDPolicy AllowCreate="true", Issuer).
pub fn authn_request_xml(spec: &AuthnRequestSpec) -> Result<String> {
    build(spec, None)
}

/// The Redirect-binding URL (query-signed when `signer` is given).
pub fn authn_request_redirect(
    spec: &AuthnRequestSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<String> {
    redirect_url(spec.destination, "SAMLRequest", &authn_request_xml(spec)?, relay_state, signer)
}

/// The POST-binding form (enveloped RSA-SHA256 signature when `signer` is given).
pub fn authn_request_post(
    spec: &AuthnRequestSpec,
    relay_state: Option<&str>,
    signer: Option<&SigningKey>,
) -> Result<PostForm> {
    let xml = match signer {
        Some(s) => sign_enveloped(&build(spec, Some(s))?, s)?,
        None => build(spec, None)?,
    };
    binding::post_form(spec.destination, "SAMLRequest", &xml, relay_state)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use samael::schema::AuthnRequest;

    use super::*;
    use crate::algorithms::AlgorithmPolicy;
    use crate::binding::{children, decode_redirect, parse_xml, verify_enveloped};
    use crate::keys::tests::{NOW, test_pair};
    use crate::keys::{self};
    use crate::model::NAMEID_EMAIL;

    fn signer() -> SigningKey {
        let p = test_pair();
        SigningKey { key_pem: p.key_pem.clone(), cert_pem: p.cert_pem.clone() }
    }

    fn spec(id: &str) -> AuthnRequestSpec<'_> {
        AuthnRequestSpec {
            id,
            issue_instant: NOW,
            sp_entity_id: "https://sp.example/saml/c1",
            acs_url: "https://sp.example/saml/c1/acs",
            destination: "https://idp.example/sso?x=1&y=2",
            name_id_format: Some(NAMEID_EMAIL),
            force_authn: false,
        }
    }

    #[test]
    fn ids_are_random_and_valid() {
        let a = new_message_id();
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
        assert!(a[1..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, new_message_id());
    }

    #[test]
    fn xml_has_the_required_parts_and_samael_reads_it() {
        let id = new_message_id();
        let mut s = spec(&id);
        s.force_authn = true;
        let xml = authn_request_xml(&s).unwrap();
        let parsed: AuthnRequest = xml.parse().unwrap();
        assert_eq!(parsed.id, id);
        assert_eq!(parsed.destination.as_deref(), Some("https://idp.example/sso?x=1&y=2"));
        assert_eq!(parsed.force_authn, Some(true));
        assert_eq!(parsed.issue_instant.timestamp(), NOW);
        assert_eq!(parsed.assertion_consumer_service_url.as_deref(), Some(s.acs_url));
        assert_eq!(parsed.protocol_binding.as_deref(), Some(crate::binding::Binding::Post.uri()));
        assert_eq!(parsed.issuer.unwrap().value.as_deref(), Some(s.sp_entity_id));
        let policy = parsed.name_id_policy.unwrap();
        assert_eq!(policy.format.as_deref(), Some(NAMEID_EMAIL));
        assert_eq!(policy.allow_create, Some(true));
        let mut no_format = spec(&id);
        no_format.name_id_format = None;
        assert!(!authn_request_xml(&no_format).unwrap().contains("Format="));
        assert!(!xml.contains("Signature"));
    }

    #[test]
    fn redirect_round_trip_signed() {
        let id = new_message_id();
        let url = authn_request_redirect(&spec(&id), Some("state"), Some(&signer())).unwrap();
        assert!(url.starts_with("https://idp.example/sso?x=1&y=2&SAMLRequest="));
        let query = url.split_once('?').unwrap().1;
        let cert = keys::cert_der(&test_pair().cert_pem).unwrap();
        let m = decode_redirect(query, "SAMLRequest", &[cert], AlgorithmPolicy::default()).unwrap();
        assert!(m.signed);
        assert_eq!(m.relay_state.as_deref(), Some("state"));
        assert_eq!(m.xml, authn_request_xml(&spec(&id)).unwrap());
    }

    #[test]
    fn post_signed_verifies_and_unsigned_does_not() {
        let id = new_message_id();
        let form = authn_request_post(&spec(&id), Some("rs"), Some(&signer())).unwrap();
        assert_eq!(form.action, "https://idp.example/sso?x=1&y=2");
        assert_eq!(form.fields[0].0, "SAMLRequest");
        assert_eq!(form.fields[1], ("RelayState".to_string(), "rs".to_string()));
        let xml = String::from_utf8(STANDARD.decode(&form.fields[0].1).unwrap()).unwrap();
        // Signature right after Issuer, as the schema orders it.
        let doc = parse_xml(&xml).unwrap();
        let names: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(names, ["Issuer", "Signature", "NameIDPolicy"]);
        let cert = keys::cert_der(&test_pair().cert_pem).unwrap();
        let verified = verify_enveloped(
            &xml,
            "AuthnRequest",
            std::slice::from_ref(&cert),
            AlgorithmPolicy::default(),
        )
        .unwrap();
        let vdoc = parse_xml(&verified).unwrap();
        assert_eq!(vdoc.root_element().attribute("ID"), Some(id.as_str()));
        assert_eq!(children(vdoc.root_element(), NS_ASSERTION, "Issuer").count(), 1);
        let tampered = xml.replace("https://sp.example/saml/c1/acs", "https://evil.example/acs");
        assert!(matches!(
            verify_enveloped(
                &tampered,
                "AuthnRequest",
                std::slice::from_ref(&cert),
                AlgorithmPolicy::default()
            ),
            Err(SamlError::BadSignature(_))
        ));
        let unsigned = authn_request_post(&spec(&id), None, None).unwrap();
        assert_eq!(unsigned.fields.len(), 1);
        let xml = String::from_utf8(STANDARD.decode(&unsigned.fields[0].1).unwrap()).unwrap();
        assert_eq!(
            verify_enveloped(&xml, "AuthnRequest", &[cert], AlgorithmPolicy::default()),
            Err(SamlError::Unsigned)
        );
    }

    #[test]
    fn values_are_escaped() {
        let mut s = spec("_1");
        s.acs_url = "https://sp.example/acs?a=1&b=\"2\"";
        let xml = authn_request_xml(&s).unwrap();
        let doc = parse_xml(&xml).unwrap();
        assert_eq!(doc.root_element().attribute("AssertionConsumerServiceURL"), Some(s.acs_url));
        s.id = "";
        assert!(authn_request_xml(&s).is_err());
    }
}
