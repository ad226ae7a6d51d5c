//! The negative corpus: each case is signed with the trusted IdP key (unless the point is that
//! it is not) and breaks exactly one rule; each asserts the exact reason code.

use super::*;
use crate::algorithms::{DIGEST_SHA1, DIGEST_SHA256};
use crate::testkit::{SignatureAlg, encrypt_assertion, instant};

/// Builds a response like `TestIdp::response_xml`, editing the assertion before it is signed
/// and the Response before it is signed: the edits are what the IdP signs.
fn build(
    spec: &ResponseSpec,
    edit_assertion: impl Fn(&str) -> String,
    edit_response: impl Fn(&str) -> String,
) -> String {
    let mut assertion = edit_assertion(&idp().assertion_xml(spec));
    if spec.sign_assertion {
        assertion = idp().sign_xml_with(&assertion, &spec.assertion_id, spec.signature_alg);
    }
    let body = match &spec.encrypt_to {
        Some(cert) => encrypt_assertion(&assertion, cert, spec.encryption, spec.key_transport),
        None => assertion,
    };
    let response = edit_response(&idp().response_shell(spec, &body));
    if spec.sign_response {
        idp().sign_xml_with(&response, &spec.response_id, spec.signature_alg)
    } else {
        response
    }
}

fn same(xml: &str) -> String {
    xml.to_owned()
}

fn assertion_signed_spec() -> ResponseSpec {
    let mut spec = spec();
    spec.sign_response = false;
    spec.sign_assertion = true;
    spec
}

fn ok_with(xml: &str, adjust: impl Fn(&mut ResponseExpectations<'_>)) -> bool {
    let env = env();
    let mut expect = env.expect();
    adjust(&mut expect);
    verify_response(&b64(xml), &expect).is_ok()
}

fn reason_with(xml: &str, adjust: impl Fn(&mut ResponseExpectations<'_>)) -> &'static str {
    let env = env();
    let mut expect = env.expect();
    adjust(&mut expect);
    match verify_response(&b64(xml), &expect) {
        Ok(ok) => panic!("accepted: {ok:?}\n{xml}"),
        Err(error) => error.reason(),
    }
}

/// The source text of the first element with this local name.
fn element<'x>(xml: &'x str, name: &str) -> &'x str {
    let root = dom::parse(xml).unwrap();
    let found = root.descendants().into_iter().find(|e| e.name == name).unwrap();
    &xml[found.start..found.end]
}

fn mallory(spec: &ResponseSpec, id: &str) -> String {
    let mut evil = spec.clone();
    evil.name_id.value = "mallory@corp.example".into();
    evil.assertion_id = id.into();
    idp().assertion_xml(&evil)
}

// ---- Parsing and size ----

#[test]
fn too_large_bad_base64_and_no_certificate() {
    let env = env();
    let huge = "A".repeat(MAX_RESPONSE_BYTES + 4);
    assert_eq!(verify_response(&huge, &env.expect()).unwrap_err().reason(), "too_large");
    assert_eq!(verify_response("not*base64", &env.expect()).unwrap_err().reason(), "bad_base64");
    let xml = idp().response_xml(&spec());
    let mut expect = env.expect();
    expect.idp_certs = &[];
    assert_eq!(
        verify_response(&b64(&xml), &expect).unwrap_err().reason(),
        "no_signing_certificate"
    );
    // Line-wrapped base64 is fine.
    let wrapped: String = b64(&xml)
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    assert!(verify_response(&wrapped, &env.expect()).is_ok());
    assert_eq!(reason("<samlp:Response"), "malformed");
    assert_eq!(reason(&xml.replace("samlp:Response", "samlp:LogoutResponse")), "malformed");
}

#[test]
fn xxe_and_billion_laughs_are_refused_before_parsing() {
    let xml = idp().response_xml(&spec());
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>{}"#,
        xml.replace(USER, "&x;")
    );
    assert_eq!(reason(&xxe), "doctype");
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>{}"#,
        xml.replace(USER, "&lol2;")
    );
    assert_eq!(reason(&laughs), "doctype");
}

// ---- Signatures ----

#[test]
fn unsigned_tampered_and_untrusted_are_refused() {
    let mut unsigned = spec();
    unsigned.sign_response = false;
    assert_eq!(reason(&idp().response_xml(&unsigned)), "unsigned");

    let signed = idp().response_xml(&spec());
    let tampered = signed.replacen(USER, "mallory@corp.example", 1);
    assert_eq!(reason(&tampered), "bad_signature");
    let tampered = idp().response_xml(&assertion_signed_spec()).replacen(USER, "mallory@x", 1);
    assert_eq!(reason(&tampered), "bad_signature");

    let untrusted = other_idp().response_xml(&spec());
    assert_eq!(reason(&untrusted), "bad_signature");
    // Key rollover: any of the configured certificates.
    let env = env();
    let certs = vec![other_idp().cert_der.clone(), idp().cert_der.clone()];
    let mut expect = env.expect();
    expect.idp_certs = &certs;
    assert!(verify_response(&b64(&untrusted), &expect).is_ok());
    assert!(verify_response(&b64(&signed), &expect).is_ok());
}

#[test]
fn sha1_only_when_allowed() {
    let mut legacy = spec();
    legacy.signature_alg = SignatureAlg::RsaSha1;
    let xml = idp().response_xml(&legacy);
    assert_eq!(reason(&xml), "algorithm_not_allowed");
    let env = env();
    let mut expect = env.expect();
    expect.algorithms = AlgorithmPolicy { allow_sha1: true };
    assert!(verify_response(&b64(&xml), &expect).is_ok());
    // A SHA-1 digest under an allowed signature method is refused as well.
    let sha1_digest = idp().response_xml(&spec()).replace(DIGEST_SHA256, DIGEST_SHA1);
    assert_eq!(reason(&sha1_digest), "algorithm_not_allowed");
    let mut strong = spec();
    strong.signature_alg = SignatureAlg::RsaSha512;
    assert!(check(&idp().response_xml(&strong)).is_ok());
}

#[test]
fn a_signature_must_reference_its_own_parent() {
    let spec = spec();
    let xml = idp().response_xml(&spec);
    let moved = xml.replace(
        &format!(r##"URI="#{}""##, spec.response_id),
        &format!(r##"URI="#{}""##, spec.assertion_id),
    );
    assert_eq!(reason(&moved), "signature_wrapping");
    let whole_document = xml.replace(&format!(r##"URI="#{}""##, spec.response_id), r#"URI="""#);
    assert_eq!(reason(&whole_document), "signature_wrapping");
}

// ---- XML Signature Wrapping (the classic shapes) ----

#[test]
fn xsw1_and_xsw2_signed_response_wrapped_by_an_evil_one() {
    let spec = spec();
    let original = idp().response_xml(&spec);
    let signature = element(&original, "Signature");
    let mut evil_spec = spec.clone();
    evil_spec.response_id = "_evil_response".into();
    let evil_body = mallory(&spec, "_evil_assertion");
    let evil = idp().response_shell(&evil_spec, &evil_body);
    let issuer_end = evil.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    // XSW1: the original Response inside the copied Signature.
    let inner = signature.replace("</ds:Signature>", &format!("{original}</ds:Signature>"));
    let xsw1 = format!("{}{inner}{}", &evil[..issuer_end], &evil[issuer_end..]);
    assert_eq!(reason(&xsw1), "signature_wrapping");
    // XSW2: the original Response next to the Signature, before it.
    let xsw2 = format!("{}{original}{signature}{}", &evil[..issuer_end], &evil[issuer_end..]);
    assert_eq!(reason(&xsw2), "signature_wrapping");
}

#[test]
fn xsw3_to_xsw8_signed_assertion_with_an_evil_one() {
    let spec = assertion_signed_spec();
    let xml = idp().response_xml(&spec);
    let signed = element(&xml, "Assertion").to_owned();
    let signature = element(&signed, "Signature").to_owned();
    let evil = mallory(&spec, "_evil");
    let evil_same_id = mallory(&spec, &spec.assertion_id);
    let unsigned_original = signed.replace(&signature, "");
    let issuer_end = |a: &str| a.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
    let with_after_issuer = |a: &str, extra: &str| {
        let at = issuer_end(a);
        format!("{}{extra}{}", &a[..at], &a[at..])
    };
    let cases = [
        // XSW3: an evil assertion before the signed one.
        ("xsw3", xml.replace(&signed, &format!("{evil}{signed}"))),
        // Second unsigned assertion after the signed one.
        ("second after", xml.replace(&signed, &format!("{signed}{evil}"))),
        // XSW4: the signed assertion inside the evil one.
        (
            "xsw4",
            xml.replace(
                &signed,
                &evil.replace("</saml:Assertion>", &format!("{signed}</saml:Assertion>")),
            ),
        ),
        // XSW5: the evil copy carries the signature, the original moves to the end.
        (
            "xsw5",
            xml.replace(
                &signed,
                &format!("{}{unsigned_original}", with_after_issuer(&evil_same_id, &signature)),
            ),
        ),
        // XSW6: the evil copy carries the signature, the original inside ds:Object.
        (
            "xsw6",
            xml.replace(
                &signed,
                &with_after_issuer(
                    &evil_same_id,
                    &signature.replace(
                        "</ds:Signature>",
                        &format!("<ds:Object>{unsigned_original}</ds:Object></ds:Signature>"),
                    ),
                ),
            ),
        ),
        // XSW7: the signed assertion hidden in Extensions, the evil one in its place.
        (
            "xsw7",
            xml.replace(
                "<samlp:Status>",
                &format!("<samlp:Extensions>{signed}</samlp:Extensions><samlp:Status>"),
            )
            .replace(&format!("</samlp:Status>{signed}"), &format!("</samlp:Status>{evil}")),
        ),
        // XSW8: evil assertion whose signature's Object holds the original without signature.
        (
            "xsw8",
            xml.replace(
                &signed,
                &with_after_issuer(
                    &evil,
                    &signature.replace(
                        "</ds:Signature>",
                        &format!("<ds:Object>{unsigned_original}</ds:Object></ds:Signature>"),
                    ),
                ),
            ),
        ),
        // The Response signature moved into Extensions.
        (
            "extensions",
            xml.replace(&signed, &unsigned_original).replace(
                "<samlp:Status>",
                &format!("<samlp:Extensions>{signature}</samlp:Extensions><samlp:Status>"),
            ),
        ),
    ];
    for (name, case) in cases {
        assert_eq!(
            check(&case).map_err(|e| e.reason()).unwrap_err(),
            "signature_wrapping",
            "{name}"
        );
    }
}

#[test]
fn a_second_assertion_next_to_a_signed_response_is_refused() {
    let spec = spec();
    let evil = mallory(&spec, "_evil");
    let xml =
        build(&spec, same, |r| r.replace("</samlp:Response>", &format!("{evil}</samlp:Response>")));
    assert_eq!(reason(&xml), "signature_wrapping");
}

#[test]
fn comment_injection_is_refused_never_truncated() {
    for (sign_response, sign_assertion) in [(true, false), (false, true)] {
        let mut spec = spec();
        spec.sign_response = sign_response;
        spec.sign_assertion = sign_assertion;
        spec.name_id.value = "victim@corp.example.evil.example".into();
        let xml = idp()
            .response_xml(&spec)
            .replace("victim@corp.example.evil.example", "victim@corp.example<!---->.evil.example");
        assert_eq!(reason(&xml), "malformed");
        // In an attribute value too.
        spec.name_id.value = USER.into();
        spec.attributes = vec![("email".into(), vec!["victim@corp.example.evil.example".into()])];
        let xml = idp()
            .response_xml(&spec)
            .replace("victim@corp.example.evil.example", "victim@corp.example<!---->.evil.example");
        assert_eq!(reason(&xml), "malformed");
    }
    // Comments between elements are harmless and accepted.
    let xml = idp().response_xml(&spec()).replace("<saml:Subject>", "<saml:Subject><!-- x -->");
    assert_eq!(check(&xml).unwrap().name_id.unwrap().value, USER);
}

// ---- Exact string checks ----

#[test]
fn audience_recipient_destination_issuer() {
    let mut s = spec();
    s.audience = Some("https://other.example/sp".into());
    assert_eq!(reason(&idp().response_xml(&s)), "audience_mismatch");
    let mut s = spec();
    s.audience = Some(format!("{SP}/"));
    assert_eq!(reason(&idp().response_xml(&s)), "audience_mismatch");
    let mut s = spec();
    s.audience = None;
    assert_eq!(reason(&idp().response_xml(&s)), "no_audience_restriction");

    let mut s = spec();
    s.response_issuer = Some("https://evil.example/idp".into());
    assert_eq!(reason(&idp().response_xml(&s)), "issuer_mismatch");
    let mut s = spec();
    s.assertion_issuer = Some("https://evil.example/idp".into());
    assert_eq!(reason(&idp().response_xml(&s)), "issuer_mismatch");
    let mut s = spec();
    s.response_issuer = Some(String::new());
    assert!(check(&idp().response_xml(&s)).is_ok());
}

#[test]
fn acs_url_prefixes_and_extensions_are_refused() {
    let prefix = &ACS[..ACS.len() - 1];
    for wrong in [format!("{ACS}x"), prefix.to_owned(), format!("{ACS}/"), ACS.to_uppercase()] {
        let mut s = spec();
        s.recipient = Some(wrong.clone());
        assert_eq!(reason(&idp().response_xml(&s)), "recipient_mismatch", "{wrong}");
        let mut s = spec();
        s.destination = Some(wrong.clone());
        assert_eq!(reason(&idp().response_xml(&s)), "destination_mismatch", "{wrong}");
    }
    let mut s = spec();
    s.destination = None;
    assert_eq!(reason(&idp().response_xml(&s)), "destination_mismatch");
    let mut s = spec();
    s.recipient = None;
    assert_eq!(reason(&idp().response_xml(&s)), "recipient_mismatch");
}

#[test]
fn status_must_be_success() {
    let mut s = spec();
    s.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into();
    s.sub_status = Some("urn:oasis:names:tc:SAML:2.0:status:AuthnFailed".into());
    let err = check(&idp().response_xml(&s)).unwrap_err();
    assert_eq!(err.reason(), "status_not_success");
    assert!(err.to_string().contains("AuthnFailed"), "{err}");
    // A failure response usually has no assertion at all.
    let failure = idp().sign_xml(&idp().response_shell(&s, ""), &s.response_id);
    assert_eq!(reason(&failure), "status_not_success");
}

// ---- Time ----

#[test]
fn expired_and_not_yet_valid_with_skew() {
    let xml = idp().response_xml(&spec());
    // NotOnOrAfter = NOW + 300, skew 60.
    assert_eq!(reason_with(&xml, |e| e.now = NOW + 360), "expired");
    assert_eq!(reason_with(&xml, |e| e.now = NOW + 3600), "expired");
    assert!(ok_with(&xml, |e| e.now = NOW + 359));
    assert!(ok_with(&xml, |e| e.now = NOW - 60));
    assert_eq!(reason_with(&xml, |e| e.now = NOW - 61), "not_yet_valid");
    assert_eq!(reason_with(&xml, |e| (e.now, e.skew_secs) = (NOW + 300, 0)), "expired");
}

#[test]
fn each_validity_bound_is_checked_on_its_own() {
    let spec = spec();
    // Conditions NotBefore in the future (beyond skew).
    let future = instant(NOW + 200);
    let xml = build(
        &spec,
        |a| {
            a.replace(
                &format!(r#"NotBefore="{}""#, instant(NOW)),
                &format!(r#"NotBefore="{future}""#),
            )
        },
        same,
    );
    assert_eq!(reason(&xml), "not_yet_valid");
    // Conditions expired but the confirmation not.
    let xml = build(
        &spec,
        |a| {
            a.replacen(
                &format!(
                    r#"<saml:Conditions NotBefore="{}" NotOnOrAfter="{}""#,
                    instant(NOW),
                    instant(NOW + 300)
                ),
                &format!(
                    r#"<saml:Conditions NotBefore="{}" NotOnOrAfter="{}""#,
                    instant(NOW),
                    instant(NOW - 100)
                ),
                1,
            )
        },
        same,
    );
    assert_eq!(reason(&xml), "expired");
    // Confirmation expired but the Conditions not.
    let xml = build(
        &spec,
        |a| {
            a.replacen(
                &format!(r#"NotOnOrAfter="{}"/>"#, instant(NOW + 300)),
                &format!(r#"NotOnOrAfter="{}"/>"#, instant(NOW - 100)),
                1,
            )
        },
        same,
    );
    assert_eq!(reason(&xml), "expired");
    // IssueInstant too old (older than 5 minutes + skew) while everything else is valid.
    let mut old = spec.clone();
    old.now = NOW - 400;
    old.lifetime_secs = 1000;
    assert_eq!(reason(&idp().response_xml(&old)), "expired");
    // IssueInstant in the future.
    let xml = build(&spec, same, |r| {
        r.replacen(
            &format!(r#"IssueInstant="{}""#, instant(NOW)),
            &format!(r#"IssueInstant="{future}""#),
            1,
        )
    });
    assert_eq!(reason(&xml), "not_yet_valid");
    // Unparseable or absurd dates.
    let xml = build(&spec, |a| a.replace(&instant(NOW + 300), "+262000-01-01T00:00:00Z"), same);
    assert_eq!(reason(&xml), "malformed");
}

#[test]
fn conditions_audience_restriction_and_bearer_confirmation_are_required() {
    let spec = spec();
    let no_conditions = build(
        &spec,
        |a| {
            let start = a.find("<saml:Conditions").unwrap();
            let end = a.find("</saml:Conditions>").unwrap() + "</saml:Conditions>".len();
            format!("{}{}", &a[..start], &a[end..])
        },
        same,
    );
    assert_eq!(reason(&no_conditions), "no_conditions");
    let holder_of_key = build(&spec, |a| a.replace("cm:bearer", "cm:holder-of-key"), same);
    assert_eq!(reason(&holder_of_key), "no_bearer_confirmation");
    let no_until = build(
        &spec,
        |a| a.replacen(&format!(r#" NotOnOrAfter="{}"/>"#, instant(NOW + 300)), "/>", 1),
        same,
    );
    assert_eq!(reason(&no_until), "no_bearer_confirmation");
}

// ---- InResponseTo ----

#[test]
fn in_response_to_rules() {
    let mut s = spec();
    s.in_response_to = None;
    let unsolicited = idp().response_xml(&s);
    assert_eq!(reason(&unsolicited), "in_response_to_missing");
    assert_eq!(reason_with(&unsolicited, |e| e.in_response_to = None), "unsolicited_not_allowed");
    let env = env();
    let mut expect = env.expect();
    expect.in_response_to = None;
    expect.allow_unsolicited = true;
    let ok = verify_response(&b64(&unsolicited), &expect).unwrap();
    assert_eq!(ok.in_response_to, None);

    let solicited = idp().response_xml(&spec());
    assert_eq!(
        verify_response(&b64(&solicited), &expect).unwrap_err().reason(),
        "unsolicited_with_in_response_to"
    );
    assert_eq!(
        reason_with(&solicited, |e| e.in_response_to = Some("_another")),
        "in_response_to_mismatch"
    );

    // The confirmation names another request while the Response names ours.
    let spec = spec();
    let xml = build(&spec, |a| a.replace(REQUEST, "_another"), same);
    assert_eq!(reason(&xml), "in_response_to_mismatch");
    // Unsolicited allowed, but the assertion's confirmation answers a request.
    let mut s = spec.clone();
    s.in_response_to = None;
    let xml = build(
        &s,
        |a| {
            a.replace(
                "<saml:SubjectConfirmationData ",
                &format!(r#"<saml:SubjectConfirmationData InResponseTo="{REQUEST}" "#),
            )
        },
        same,
    );
    assert_eq!(
        verify_response(&b64(&xml), &expect).unwrap_err().reason(),
        "unsolicited_with_in_response_to"
    );
}

#[test]
fn only_the_assertion_signed_binds_the_request_through_the_assertion() {
    // The unsigned Response's InResponseTo is rewritten to the attacker's own request.
    let spec = assertion_signed_spec();
    let xml = idp().response_xml(&spec);
    let mine =
        xml.replacen(&format!(r#"InResponseTo="{REQUEST}""#), r#"InResponseTo="_attacker""#, 1);
    assert_eq!(
        reason_with(&mine, |e| e.in_response_to = Some("_attacker")),
        "in_response_to_mismatch"
    );
    // Without InResponseTo in the signed assertion, the unsigned Response cannot vouch for it.
    let xml = build(&spec, |a| a.replace(&format!(r#" InResponseTo="{REQUEST}""#), ""), same);
    assert_eq!(reason(&xml), "in_response_to_missing");
}

// ---- Encryption ----

#[test]
fn encryption_rules() {
    let mut s = spec();
    s.encrypt_to = Some(sp_keys().cert_pem.clone());
    s.sign_response = false;
    s.sign_assertion = false;
    assert_eq!(reason(&idp().response_xml(&s)), "unsigned");

    let plain = idp().response_xml(&spec());
    assert_eq!(reason_with(&plain, |e| e.require_encryption = true), "encryption_required");
    let mut s = spec();
    s.encrypt_to = Some(sp_keys().cert_pem.clone());
    let encrypted = idp().response_xml(&s);
    let env = env();
    let mut expect = env.expect();
    expect.require_encryption = true;
    assert!(verify_response(&b64(&encrypted), &expect).unwrap().encrypted);

    // Encrypted for another key; and the SP's previous key during a rotation.
    let stranger = TestIdp::generate("https://stranger.example");
    let mut s = spec();
    s.encrypt_to = Some(stranger.cert_pem.clone());
    let other = idp().response_xml(&s);
    assert_eq!(reason(&other), "decryption_failed");
    let keys = vec![sp_keys().key_pem.clone(), stranger.key_pem.clone()];
    let mut expect = env.expect();
    expect.decryption_keys = &keys;
    assert!(verify_response(&b64(&other), &expect).is_ok());
}

#[test]
fn encrypted_forgeries_are_refused() {
    let spec = spec();
    // Anyone can encrypt to our certificate: an unsigned forged assertion, encrypted.
    let forged = encrypt_assertion(
        &mallory(&spec, "_evil"),
        &sp_keys().cert_pem,
        Encryption::Aes256Gcm,
        crate::testkit::KeyTransport::RsaOaepMgf1p,
    );
    let mut s = spec.clone();
    s.sign_response = false;
    assert_eq!(reason(&idp().response_shell(&s, &forged)), "unsigned");
    // Swapped into a signed Response: its signature no longer holds.
    let mut s = spec.clone();
    s.encrypt_to = Some(sp_keys().cert_pem.clone());
    let signed = idp().response_xml(&s);
    let original = element(&signed, "EncryptedAssertion");
    assert_eq!(reason(&signed.replace(original, &forged)), "bad_signature");
    // A wrapping shape inside the encryption: a signed assertion plus an evil one.
    let signed_assertion = idp().sign_xml(&idp().assertion_xml(&spec), &spec.assertion_id);
    let both = format!("{signed_assertion}{}", mallory(&spec, "_evil"));
    let wrapped = encrypt_assertion(
        &both,
        &sp_keys().cert_pem,
        Encryption::Aes128Cbc,
        crate::testkit::KeyTransport::RsaOaepSha256,
    );
    let mut s = spec.clone();
    s.sign_response = false;
    assert_eq!(reason(&idp().response_shell(&s, &wrapped)), "signature_wrapping");
    // A tampered signed-then-encrypted assertion.
    let tampered = signed_assertion.replacen(USER, "mallory@corp.example", 1);
    let tampered = encrypt_assertion(
        &tampered,
        &sp_keys().cert_pem,
        Encryption::Aes128Gcm,
        crate::testkit::KeyTransport::RsaOaepMgf1p,
    );
    assert_eq!(reason(&idp().response_shell(&s, &tampered)), "bad_signature");
}
