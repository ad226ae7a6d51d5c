//! SAML 2.0 Metadata: reading an IdP's `EntityDescriptor` (what a connection trusts) and
//! writing the SP's own. IdP metadata without a signing certificate is refused, because a
//! connection that trusts no key verifies nothing. The metadata's own XML signature is not
//! checked: it arrives from an administrator (upload, or an HTTPS URL the administrator chose).

use crate::binding::{
    Binding, NS_DSIG, NS_METADATA, NS_PROTOCOL, children, esc, full_text, is_el, iso_instant,
    only_child, parse_instant, parse_xml,
};
use crate::keys::{cert_base64, cert_der};
use crate::{Result, SamlError};

/// Encryption algorithms the SP can decrypt, strongest first (SAML2int asks for GCM).
pub const ENCRYPTION_METHODS: &[&str] = &[
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub binding: Binding,
    pub location: String,
    /// Where responses to this endpoint go, when it differs (SingleLogoutService).
    pub response_location: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// Redirect and POST SingleSignOnService endpoints, in document order.
    pub sso: Vec<Endpoint>,
    /// Redirect and POST SingleLogoutService endpoints, in document order.
    pub slo: Vec<Endpoint>,
    /// DER certificates of every signing KeyDescriptor (several during a key rollover).
    pub signing_certs: Vec<Vec<u8>>,
    pub want_authn_requests_signed: bool,
    pub name_id_formats: Vec<String>,
    /// The earliest validUntil on the entity, its IDPSSODescriptor or an enclosing group.
    pub valid_until: Option<i64>,
}

impl IdpMetadata {
    /// The first SSO endpoint with this binding.
    pub fn sso_for(&self, binding: Binding) -> Option<&Endpoint> {
        self.sso.iter().find(|e| e.binding == binding)
    }

    /// The first SLO endpoint with this binding.
    pub fn slo_for(&self, binding: Binding) -> Option<&Endpoint> {
        self.slo.iter().find(|e| e.binding == binding)
    }
}

fn bad(msg: impl Into<String>) -> SamlError {
    SamlError::Metadata(msg.into())
}

fn http_url(s: &str, what: &str) -> Result<String> {
    let s = s.trim();
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_string()),
        _ => Err(bad(format!("the {what} location {s:?} is not an http(s) URL"))),
    }
}

/// Reads IdP metadata: an `EntityDescriptor`, or an `EntitiesDescriptor` holding exactly one
/// entity with an IDPSSODescriptor.
pub fn parse_idp_metadata(xml: &str, now: i64) -> Result<IdpMetadata> {
    let doc = parse_xml(xml).map_err(|e| match e {
        SamlError::Malformed(m) => bad(format!("not well-formed XML: {m}")),
        other => other,
    })?;
    let root = doc.root_element();
    let entity = if is_el(root, NS_METADATA, "EntityDescriptor") {
        root
    } else if is_el(root, NS_METADATA, "EntitiesDescriptor") {
        let idps: Vec<_> = root
            .descendants()
            .filter(|n| is_el(*n, NS_METADATA, "EntityDescriptor"))
            .filter(|n| children(*n, NS_METADATA, "IDPSSODescriptor").next().is_some())
            .collect();
        match idps.as_slice() {
            [one] => *one,
            [] => return Err(bad("the EntitiesDescriptor holds no identity provider")),
            more => {
                return Err(bad(format!(
                    "the EntitiesDescriptor holds {} identity providers; give the metadata of one",
                    more.len()
                )));
            }
        }
    } else {
        return Err(bad("the root element is not a SAML 2.0 EntityDescriptor"));
    };
    let entity_id = entity.attribute("entityID").unwrap_or_default();
    if entity_id.is_empty() || entity_id.len() > 1024 {
        return Err(bad("the entityID is missing or longer than 1024 characters"));
    }
    let idps: Vec<_> = children(entity, NS_METADATA, "IDPSSODescriptor")
        .filter(|d| {
            d.attribute("protocolSupportEnumeration")
                .is_some_and(|p| p.split_ascii_whitespace().any(|u| u == NS_PROTOCOL))
        })
        .collect();
    let idp = match idps.as_slice() {
        [one] => *one,
        [] => return Err(bad("no IDPSSODescriptor supporting SAML 2.0")),
        _ => return Err(bad("more than one SAML 2.0 IDPSSODescriptor")),
    };

    let mut valid_until = None::<i64>;
    for node in entity.ancestors().filter(|n| n.is_element()).chain(std::iter::once(idp)) {
        if let Some(v) = node.attribute("validUntil") {
            let t = parse_instant(v).map_err(|_| bad(format!("bad validUntil {v:?}")))?;
            valid_until = Some(valid_until.map_or(t, |u| u.min(t)));
        }
    }
    if let Some(t) = valid_until.filter(|t| *t <= now) {
        return Err(bad(format!("the metadata expired at {}", iso_instant(t)?)));
    }

    let sso = endpoints(idp, "SingleSignOnService")?;
    if sso.is_empty() {
        return Err(bad("no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding"));
    }
    let slo = endpoints(idp, "SingleLogoutService")?;
    let signing_certs = signing_certs(idp)?;
    let name_id_formats = children(idp, NS_METADATA, "NameIDFormat")
        .map(|n| full_text(n).trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let want = idp.attribute("WantAuthnRequestsSigned");
    Ok(IdpMetadata {
        entity_id: entity_id.to_string(),
        sso,
        slo,
        signing_certs,
        want_authn_requests_signed: matches!(want, Some("true" | "1")),
        name_id_formats,
        valid_until,
    })
}

fn endpoints(idp: roxmltree::Node<'_, '_>, name: &str) -> Result<Vec<Endpoint>> {
    let mut out = Vec::new();
    for e in children(idp, NS_METADATA, name) {
        // SOAP, Artifact and other bindings are not used by this SP.
        let Some(binding) = e.attribute("Binding").and_then(Binding::from_uri) else { continue };
        let location = http_url(e.attribute("Location").unwrap_or_default(), name)?;
        let response_location =
            e.attribute("ResponseLocation").map(|r| http_url(r, name)).transpose()?;
        out.push(Endpoint { binding, location, response_location });
    }
    Ok(out)
}

fn signing_certs(idp: roxmltree::Node<'_, '_>) -> Result<Vec<Vec<u8>>> {
    let mut certs: Vec<Vec<u8>> = Vec::new();
    for kd in children(idp, NS_METADATA, "KeyDescriptor") {
        // A KeyDescriptor without `use` serves both signing and encryption (Metadata §2.4.1.1).
        if !matches!(kd.attribute("use"), None | Some("signing")) {
            continue;
        }
        let Some(key_info) = only_child(kd, NS_DSIG, "KeyInfo")? else { continue };
        for data in children(key_info, NS_DSIG, "X509Data") {
            for c in children(data, NS_DSIG, "X509Certificate") {
                let der = cert_der(&full_text(c))
                    .map_err(|e| bad(format!("a signing certificate does not parse: {e}")))?;
                if !certs.contains(&der) {
                    certs.push(der);
                }
            }
        }
    }
    if certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    Ok(certs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpMetadataSpec<'a> {
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    pub slo_url: Option<&'a str>,
    /// DER certificates; during a key rotation both the old and the new one.
    pub signing_certs: &'a [Vec<u8>],
    pub encryption_certs: &'a [Vec<u8>],
    pub name_id_formats: &'a [&'a str],
    pub authn_requests_signed: bool,
    /// Unix seconds.
    pub valid_until: i64,
    /// Published with the origin of `acs_url` as the OrganizationURL (the schema requires one).
    pub organisation_name: Option<&'a str>,
}

fn key_descriptor(usage: &str, der: &[u8], methods: &[&str]) -> String {
    let mut out = format!(
        "<md:KeyDescriptor use=\"{usage}\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}\
         </ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
        cert_base64(der)
    );
    for m in methods {
        out.push_str(&format!("<md:EncryptionMethod Algorithm=\"{m}\"/>"));
    }
    out.push_str("</md:KeyDescriptor>");
    out
}

fn organisation(name: &str, acs_url: &str) -> Result<String> {
    let origin = url::Url::parse(acs_url)
        .map(|u| u.origin().ascii_serialization() + "/")
        .map_err(|_| SamlError::Internal("the ACS URL is not a URL".into()))?;
    let (name, origin) = (esc(name)?, esc(&origin)?);
    Ok(format!(
        "<md:Organization><md:OrganizationName xml:lang=\"en\">{name}</md:OrganizationName>\
         <md:OrganizationDisplayName xml:lang=\"en\">{name}</md:OrganizationDisplayName>\
         <md:OrganizationURL xml:lang=\"en\">{origin}</md:OrganizationURL></md:Organization>"
    ))
}

/// The SP's metadata document. Every KeyDescriptor is labelled with its own use (samael's
/// generator mislabels the second one), and the encryption ones list the accepted algorithms.
pub fn sp_metadata_xml(spec: &SpMetadataSpec) -> Result<String> {
    if spec.signing_certs.is_empty() {
        return Err(SamlError::Internal("SP metadata without a signing certificate".into()));
    }
    let mut sso = format!(
        "<md:SPSSODescriptor protocolSupportEnumeration=\"{NS_PROTOCOL}\" \
         AuthnRequestsSigned=\"{}\" WantAssertionsSigned=\"true\">",
        spec.authn_requests_signed
    );
    for der in spec.signing_certs {
        sso.push_str(&key_descriptor("signing", der, &[]));
    }
    for der in spec.encryption_certs {
        sso.push_str(&key_descriptor("encryption", der, ENCRYPTION_METHODS));
    }
    if let Some(slo) = spec.slo_url {
        let slo = esc(slo)?;
        for b in [Binding::Redirect, Binding::Post] {
            sso.push_str(&format!(
                "<md:SingleLogoutService Binding=\"{}\" Location=\"{slo}\"/>",
                b.uri()
            ));
        }
    }
    for f in spec.name_id_formats {
        sso.push_str(&format!("<md:NameIDFormat>{}</md:NameIDFormat>", esc(f)?));
    }
    sso.push_str(&format!(
        "<md:AssertionConsumerService Binding=\"{}\" Location=\"{}\" index=\"0\" \
         isDefault=\"true\"/></md:SPSSODescriptor>",
        Binding::Post.uri(),
        esc(spec.acs_url)?
    ));
    let org = match spec.organisation_name {
        Some(name) => organisation(name, spec.acs_url)?,
        None => String::new(),
    };
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<md:EntityDescriptor \
         xmlns:md=\"{NS_METADATA}\" xmlns:ds=\"{NS_DSIG}\" entityID=\"{}\" validUntil=\"{}\">\
         {sso}{org}</md:EntityDescriptor>\n",
        esc(spec.entity_id)?,
        iso_instant(spec.valid_until)?
    ))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use samael::metadata::EntityDescriptor;

    use super::*;
    use crate::keys::tests::{NOW, other_pair, test_pair};
    use crate::model::{NAMEID_EMAIL, NAMEID_PERSISTENT};

    fn b64(pem: &str) -> String {
        cert_base64(&cert_der(pem).unwrap())
    }

    fn okta(cert: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><md:EntityDescriptor entityID="http://www.okta.com/exk1fcia6d6EMsf331d8" xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"><md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat><md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://dev-123.okta.com/app/dev-123_latchkey_1/exk1fcia6d6EMsf331d8/sso/saml"/><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://dev-123.okta.com/app/dev-123_latchkey_1/exk1fcia6d6EMsf331d8/sso/saml"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    #[test]
    fn okta_metadata() {
        let cert = b64(&test_pair().cert_pem);
        let m = parse_idp_metadata(&okta(&cert), NOW).unwrap();
        assert_eq!(m.entity_id, "http://www.okta.com/exk1fcia6d6EMsf331d8");
        assert_eq!(m.sso.len(), 2);
        assert_eq!(m.sso[0].binding, Binding::Post);
        assert_eq!(m.sso_for(Binding::Redirect).unwrap().binding, Binding::Redirect);
        assert!(m.slo.is_empty());
        assert_eq!(m.signing_certs, vec![cert_der(&cert).unwrap()]);
        assert!(!m.want_authn_requests_signed);
        assert_eq!(m.name_id_formats.len(), 2);
        assert_eq!(m.valid_until, None);
    }

    #[test]
    fn entra_metadata_with_rollover() {
        let (a, b) = (b64(&test_pair().cert_pem), b64(&other_pair().cert_pem));
        let xml = format!(
            r##"<?xml version="1.0" encoding="utf-8"?><EntityDescriptor ID="_5a1c0e3a-1c2b-4b7e-9d3c-2f1e0b5c6d7e" entityID="https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/" xmlns="urn:oasis:names:tc:SAML:2.0:metadata"><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo><CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><Reference URI="#_5a1c0e3a-1c2b-4b7e-9d3c-2f1e0b5c6d7e"><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue>AAAA</DigestValue></Reference></SignedInfo><SignatureValue>AAAA</SignatureValue></Signature><RoleDescriptor xsi:type="fed:SecurityTokenServiceType" protocolSupportEnumeration="http://docs.oasis-open.org/wsfed/federation/200706" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706"><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{a}</X509Certificate></X509Data></KeyInfo></KeyDescriptor></RoleDescriptor><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{a}</X509Certificate></X509Data></KeyInfo></KeyDescriptor><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{b}</X509Certificate></X509Data></KeyInfo></KeyDescriptor><SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/saml2"/><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/saml2"/><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/saml2"/></IDPSSODescriptor></EntityDescriptor>"##
        );
        let m = parse_idp_metadata(&xml, NOW).unwrap();
        assert_eq!(m.entity_id, "https://sts.windows.net/9188040d-6c67-4c5b-b112-36a304b66dad/");
        assert_eq!(m.signing_certs.len(), 2);
        assert_eq!(m.slo_for(Binding::Redirect).unwrap().location, m.sso[0].location);
        assert_eq!(m.sso[0].binding, Binding::Redirect);
    }

    #[test]
    fn google_metadata() {
        let cert = b64(&test_pair().cert_pem);
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://accounts.google.com/o/saml2?idpid=C01abcdef" validUntil="2028-09-20T12:00:00.000Z">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
        <ds:X509Data>
          <ds:X509Certificate>{cert}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://accounts.google.com/o/saml2/idp?idpid=C01abcdef"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://accounts.google.com/o/saml2/idp?idpid=C01abcdef"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        );
        let m = parse_idp_metadata(&xml, NOW).unwrap();
        assert_eq!(m.entity_id, "https://accounts.google.com/o/saml2?idpid=C01abcdef");
        assert_eq!(m.name_id_formats, vec![NAMEID_EMAIL.to_string()]);
        assert_eq!(m.valid_until, Some(1_853_064_000));
        assert!(matches!(parse_idp_metadata(&xml, 1_853_064_000), Err(SamlError::Metadata(_))));
    }

    fn pysaml2(cert: &str, with_signing_use: bool) -> String {
        let wrapped: String = cert
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
            .collect();
        let usage = if with_signing_use { " use=\"signing\"" } else { "" };
        format!(
            r#"<?xml version='1.0' encoding='UTF-8'?>
<ns0:EntitiesDescriptor xmlns:ns0="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ns1="http://www.w3.org/2000/09/xmldsig#" Name="urn:example:federation" validUntil="2030-01-01T00:00:00Z"><ns0:EntityDescriptor entityID="https://sp.other.example/metadata"><ns0:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><ns0:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.other.example/acs" index="0"/></ns0:SPSSODescriptor></ns0:EntityDescriptor><ns0:EntityDescriptor entityID="http://127.0.0.1:8088/idp.xml" validUntil="2029-01-01T00:00:00Z"><ns0:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="true"><ns0:KeyDescriptor{usage}><ns1:KeyInfo><ns1:X509Data><ns1:X509Certificate>
{wrapped}</ns1:X509Certificate></ns1:X509Data></ns1:KeyInfo></ns0:KeyDescriptor><ns0:KeyDescriptor use="encryption"><ns1:KeyInfo><ns1:X509Data><ns1:X509Certificate>{other}</ns1:X509Certificate></ns1:X509Data></ns1:KeyInfo></ns0:KeyDescriptor><ns0:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:8088/slo/redirect" ResponseLocation="http://127.0.0.1:8088/slo/response"/><ns0:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="http://127.0.0.1:8088/slo/soap"/><ns0:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</ns0:NameIDFormat><ns0:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:8088/sso/redirect"/><ns0:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="http://127.0.0.1:8088/sso/art"/></ns0:IDPSSODescriptor><ns0:Organization><ns0:OrganizationName xml:lang="en">Test IdP</ns0:OrganizationName></ns0:Organization></ns0:EntityDescriptor></ns0:EntitiesDescriptor>"#,
            other = b64(&other_pair().cert_pem),
        )
    }

    #[test]
    fn pysaml2_entities_descriptor() {
        let cert = b64(&test_pair().cert_pem);
        for with_use in [true, false] {
            let m = parse_idp_metadata(&pysaml2(&cert, with_use), NOW).unwrap();
            assert_eq!(m.entity_id, "http://127.0.0.1:8088/idp.xml");
            // The encryption-only key is not a signing key.
            assert_eq!(m.signing_certs, vec![cert_der(&cert).unwrap()]);
            assert!(m.want_authn_requests_signed);
            assert_eq!(m.sso.len(), 1);
            assert_eq!(m.slo.len(), 1);
            assert_eq!(
                m.slo[0].response_location.as_deref(),
                Some("http://127.0.0.1:8088/slo/response")
            );
            assert_eq!(m.name_id_formats, vec![NAMEID_PERSISTENT.to_string()]);
            // The earliest validUntil wins.
            assert_eq!(m.valid_until, Some(1_861_920_000));
        }
    }

    #[test]
    fn refusals() {
        let cert = b64(&test_pair().cert_pem);
        let good = okta(&cert);
        let no_cert = good.replace("use=\"signing\"", "use=\"encryption\"");
        assert_eq!(parse_idp_metadata(&no_cert, NOW), Err(SamlError::NoSigningCertificate));
        let no_key = good.replace(&cert, "");
        assert!(matches!(parse_idp_metadata(&no_key, NOW), Err(SamlError::Metadata(_))));
        let doctype = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", &good[38..]);
        assert_eq!(parse_idp_metadata(&doctype, NOW), Err(SamlError::Doctype));
        let sp_only = good.replace("IDPSSODescriptor", "SPSSODescriptor");
        assert!(matches!(parse_idp_metadata(&sp_only, NOW), Err(SamlError::Metadata(_))));
        let soap_only = good.replace("HTTP-POST", "SOAP").replace("HTTP-Redirect", "SOAP");
        assert!(matches!(parse_idp_metadata(&soap_only, NOW), Err(SamlError::Metadata(_))));
        let ftp = good.replace("https://dev-123", "ftp://dev-123");
        assert!(matches!(parse_idp_metadata(&ftp, NOW), Err(SamlError::Metadata(_))));
        let js = good.replace("https://dev-123.okta.com/app", "javascript:alert(1)//");
        assert!(matches!(parse_idp_metadata(&js, NOW), Err(SamlError::Metadata(_))));
        let expired = good.replace("entityID=", "validUntil=\"2020-01-01T00:00:00Z\" entityID=");
        assert!(matches!(parse_idp_metadata(&expired, NOW), Err(SamlError::Metadata(_))));
        let saml1 = good.replace(
            "urn:oasis:names:tc:SAML:2.0:protocol",
            "urn:oasis:names:tc:SAML:1.1:protocol",
        );
        assert!(matches!(parse_idp_metadata(&saml1, NOW), Err(SamlError::Metadata(_))));
        let no_entity_id =
            good.replace("entityID=\"http://www.okta.com/exk1fcia6d6EMsf331d8\"", "");
        assert!(matches!(parse_idp_metadata(&no_entity_id, NOW), Err(SamlError::Metadata(_))));
        assert!(matches!(parse_idp_metadata("<a/>", NOW), Err(SamlError::Metadata(_))));
        assert!(matches!(parse_idp_metadata("not xml", NOW), Err(SamlError::Metadata(_))));
        // A group of two identity providers is ambiguous.
        let two = format!(
            "<md:EntitiesDescriptor xmlns:md=\"{NS_METADATA}\">{}{}</md:EntitiesDescriptor>",
            &good[38..],
            &good[38..].replace("exk1fcia6d6EMsf331d8\"", "other\"")
        );
        assert!(matches!(parse_idp_metadata(&two, NOW), Err(SamlError::Metadata(_))));
    }

    fn sp_spec<'a>(signing: &'a [Vec<u8>], encryption: &'a [Vec<u8>]) -> SpMetadataSpec<'a> {
        SpMetadataSpec {
            entity_id: "https://login.example/saml/c1",
            acs_url: "https://login.example/saml/c1/acs",
            slo_url: Some("https://login.example/saml/c1/slo"),
            signing_certs: signing,
            encryption_certs: encryption,
            name_id_formats: &[NAMEID_EMAIL, NAMEID_PERSISTENT],
            authn_requests_signed: true,
            valid_until: NOW + 7 * 86_400,
            organisation_name: Some("Acme & Co <Ltd>"),
        }
    }

    #[test]
    fn sp_metadata_round_trips_through_samael() {
        let a = cert_der(&test_pair().cert_pem).unwrap();
        let b = cert_der(&other_pair().cert_pem).unwrap();
        let signing = [a.clone(), b.clone()];
        let encryption = [a.clone()];
        let xml = sp_metadata_xml(&sp_spec(&signing, &encryption)).unwrap();
        let ed = EntityDescriptor::from_str(&xml).unwrap();
        assert_eq!(ed.entity_id.as_deref(), Some("https://login.example/saml/c1"));
        assert_eq!(ed.valid_until.unwrap().timestamp(), NOW + 7 * 86_400);
        let sp = &ed.sp_sso_descriptors.as_ref().unwrap()[0];
        assert_eq!(sp.authn_requests_signed, Some(true));
        assert_eq!(sp.want_assertions_signed, Some(true));
        let kds = sp.key_descriptors.as_ref().unwrap();
        let uses: Vec<_> = kds.iter().map(|k| k.key_use.as_deref()).collect();
        assert_eq!(uses, [Some("signing"), Some("signing"), Some("encryption")]);
        let certs: Vec<_> = kds
            .iter()
            .map(|k| k.key_info.x509_data.as_ref().unwrap().certificates[0].clone())
            .collect();
        assert_eq!(certs, [cert_base64(&a), cert_base64(&b), cert_base64(&a)]);
        let methods: Vec<_> = kds[2]
            .encryption_methods
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.algorithm.as_str())
            .collect();
        assert_eq!(methods, ENCRYPTION_METHODS);
        assert!(kds[0].encryption_methods.as_ref().is_none_or(|m| m.is_empty()));
        let slo = sp.single_logout_services.as_ref().unwrap();
        assert_eq!(slo.len(), 2);
        assert_eq!(slo[0].binding, Binding::Redirect.uri());
        assert_eq!(slo[1].binding, Binding::Post.uri());
        let acs = &sp.assertion_consumer_services[0];
        assert_eq!((acs.index, acs.is_default), (0, Some(true)));
        assert_eq!(acs.binding, Binding::Post.uri());
        assert_eq!(acs.location, "https://login.example/saml/c1/acs");
        assert_eq!(sp.name_id_formats.as_ref().unwrap().len(), 2);
        let org = ed.organization.unwrap();
        assert_eq!(org.organization_names.unwrap()[0].value, "Acme & Co <Ltd>");
        // samael cannot read OrganizationURL (it looks for a prefixed name): check it here.
        let doc = parse_xml(&xml).unwrap();
        let org = only_child(doc.root_element(), NS_METADATA, "Organization").unwrap().unwrap();
        let url = only_child(org, NS_METADATA, "OrganizationURL").unwrap().unwrap();
        assert_eq!(full_text(url), "https://login.example/");
    }

    #[test]
    fn sp_metadata_is_well_formed_and_minimal_variant() {
        let a = cert_der(&test_pair().cert_pem).unwrap();
        let mut spec = sp_spec(std::slice::from_ref(&a), &[]);
        spec.slo_url = None;
        spec.organisation_name = None;
        spec.authn_requests_signed = false;
        let xml = sp_metadata_xml(&spec).unwrap();
        let doc = parse_xml(&xml).unwrap();
        let sp = only_child(doc.root_element(), NS_METADATA, "SPSSODescriptor").unwrap().unwrap();
        assert_eq!(sp.attribute("AuthnRequestsSigned"), Some("false"));
        assert_eq!(children(sp, NS_METADATA, "SingleLogoutService").count(), 0);
        assert_eq!(children(sp, NS_METADATA, "KeyDescriptor").count(), 1);
        assert!(!xml.contains("Organization"));
        // Schema order inside SPSSODescriptor.
        let order: Vec<_> =
            sp.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
        assert_eq!(
            order,
            ["KeyDescriptor", "NameIDFormat", "NameIDFormat", "AssertionConsumerService"]
        );
        assert!(sp_metadata_xml(&sp_spec(&[], &[])).is_err());
        let mut bad = sp_spec(std::slice::from_ref(&a), &[]);
        bad.entity_id = "x\u{1}";
        assert!(sp_metadata_xml(&bad).is_err());
    }
}
