//! Every refusal, with a fixed key set and a clock that only moves when told to.

use ring::hmac;
use serde_json::{Value, json};

use super::kit::*;
use crate::{ManualClock, TokenType, Verifier, VerifyError};

fn verifier(keys: &[&TestKey], clock: &ManualClock) -> Verifier {
    Verifier::builder(ISSUER)
        .authorized_party(APP)
        .audience(API)
        .static_jwks(jwks(keys).to_string())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn with(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

async fn refused(v: &Verifier, token: &str) -> VerifyError {
    v.verify(token).await.expect_err("token should be refused")
}

#[tokio::test]
async fn valid_tokens_of_each_kind_and_algorithm_are_accepted() {
    let (es, ed) = (TestKey::es256("es"), TestKey::ed25519("ed"));
    let clock = ManualClock::new(NOW);
    let v = verifier(&[&es, &ed], &clock);
    for key in [&es, &ed] {
        let c = v.verify(&key.sign("JWT", &session_claims())).await.unwrap();
        assert_eq!(c.token_type(), TokenType::Session);
        assert_eq!((c.sub(), c.sid(), c.azp()), ("usr_1", Some("ses_1"), Some(APP)));
        assert_eq!(
            (c.org_id(), c.org_role(), c.org_slug()),
            (Some("org_1"), Some("admin"), Some("acme"))
        );
        let c = v.verify(&key.sign("at+jwt", &access_claims())).await.unwrap();
        assert_eq!(c.token_type(), TokenType::Access);
        assert_eq!(c.scopes().collect::<Vec<_>>(), ["openid", "read"]);
        assert_eq!(c.client_id(), Some("cli_1"));
    }
    // The media-type form of typ is the same type (RFC 7515 §4.1.9).
    v.verify(&es.sign("application/at+jwt", &access_claims())).await.unwrap();
}

#[tokio::test]
async fn time_issuer_and_audience_refusals() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = verifier(&[&key], &clock);
    let session = key.sign("JWT", &session_claims());

    clock.set(NOW + 60 + 5);
    assert_eq!(refused(&v, &session).await, VerifyError::Expired);
    clock.set(NOW + 64);
    v.verify(&session).await.expect("within the 5 s skew");
    clock.set(NOW - 6);
    assert_eq!(refused(&v, &session).await, VerifyError::NotYetValid);
    clock.set(NOW);

    let cases = [
        (json!({"iss": "https://evil.example.com"}), VerifyError::Issuer),
        (json!({"iss": format!("{ISSUER}/")}), VerifyError::Issuer),
        (json!({"azp": "https://evil.example.com"}), VerifyError::Audience),
        (json!({"azp": null}), VerifyError::Audience),
        (json!({"aud": "https://other.example.com"}), VerifyError::Audience),
        (json!({"exp": null}), VerifyError::Claim("exp")),
    ];
    for (extra, want) in cases {
        let token = key.sign("JWT", &with(session_claims(), extra.clone()));
        assert_eq!(refused(&v, &token).await, want, "{extra}");
    }
    for extra in
        [json!({"aud": "https://other.example.com"}), json!({"aud": null}), json!({"aud": ISSUER})]
    {
        let token = key.sign("at+jwt", &with(access_claims(), extra.clone()));
        assert_eq!(refused(&v, &token).await, VerifyError::Audience, "{extra}");
    }
    // A configured client list restricts access tokens.
    let only_app = Verifier::builder(ISSUER)
        .audience(API)
        .client("cli_other")
        .static_jwks(jwks(&[&key]).to_string())
        .clock(clock.clone())
        .build()
        .unwrap();
    let access = key.sign("at+jwt", &access_claims());
    assert_eq!(refused(&only_app, &access).await, VerifyError::Audience);
}

#[tokio::test]
async fn tampering_is_refused() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = verifier(&[&key], &clock);
    let token = key.sign("JWT", &session_claims());
    let parts: Vec<&str> = token.split('.').collect();

    let forged = with(session_claims(), json!({"sub": "usr_admin"}));
    let tampered_payload = format!("{}.{}.{}", parts[0], b64(forged.to_string()), parts[2]);
    assert_eq!(refused(&v, &tampered_payload).await, VerifyError::Signature);

    let mut sig = super::super::jws::decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert_eq!(refused(&v, &tampered_sig).await, VerifyError::Signature);

    // Signed by another key under the same kid.
    let impostor = TestKey::es256("k");
    assert_eq!(refused(&v, &impostor.sign("JWT", &session_claims())).await, VerifyError::Signature);

    for bad in ["", "abc", "a.b", "a.b.c", &format!("{token}.x"), &format!("{token}=")] {
        assert!(matches!(refused(&v, bad).await, VerifyError::Malformed(_)), "{bad:?}");
    }
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = verifier(&[&key], &clock);
    let claims = session_claims();
    let body = |h: Value| format!("{}.{}", b64(h.to_string()), b64(claims.to_string()));

    // alg none, with and without a signature.
    let none = body(json!({"alg": "none", "kid": "k", "typ": "JWT"}));
    assert_eq!(refused(&v, &format!("{none}.")).await, VerifyError::Algorithm("none"));
    assert_eq!(refused(&v, &format!("{none}.{}", b64("x"))).await, VerifyError::Algorithm("none"));

    // HS256 with the public key as the HMAC secret, in each form an attacker could pick.
    let jwk_text = key.jwk().to_string();
    for secret in [key.public_bytes(), jwk_text.into_bytes()] {
        let input = body(json!({"alg": "HS256", "kid": "k", "typ": "JWT"}));
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), input.as_bytes());
        let token = format!("{input}.{}", b64(mac.as_ref()));
        assert_eq!(refused(&v, &token).await, VerifyError::Algorithm("HMAC"));
    }

    // A header alg that is not the key's, even with a valid ES256 signature.
    for alg in ["RS256", "EdDSA", "ES384", "PS256"] {
        let h = json!({"alg": alg, "kid": "k", "typ": "JWT"});
        let token = key.sign_with_header(&h, &claims);
        assert!(matches!(refused(&v, &token).await, VerifyError::Algorithm(_)), "{alg}");
    }
}

#[tokio::test]
async fn header_type_and_kid_are_required() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = verifier(&[&key], &clock);
    let claims = session_claims();
    let cases = [
        (json!({"alg": "ES256", "kid": "k"}), VerifyError::Type),
        (json!({"alg": "ES256", "kid": "k", "typ": "logout+jwt"}), VerifyError::Type),
        (json!({"alg": "ES256", "kid": "k", "typ": "JOSE"}), VerifyError::Type),
        (json!({"alg": "ES256", "typ": "JWT"}), VerifyError::Malformed("no kid")),
        (json!({"alg": "ES256", "kid": "other", "typ": "JWT"}), VerifyError::UnknownKey),
        (
            json!({"alg": "ES256", "kid": "k", "typ": "JWT", "crit": ["exp"]}),
            VerifyError::Malformed("critical header extension"),
        ),
    ];
    for (h, want) in cases {
        assert_eq!(refused(&v, &key.sign_with_header(&h, &claims)).await, want, "{h}");
    }
    // Only session tokens accepted: an access token is refused for its type.
    let sessions_only = Verifier::builder(ISSUER)
        .authorized_party(APP)
        .audience(API)
        .token_types(&[TokenType::Session])
        .static_jwks(jwks(&[&key]).to_string())
        .clock(clock.clone())
        .build()
        .unwrap();
    let access = key.sign("at+jwt", &access_claims());
    assert_eq!(refused(&sessions_only, &access).await, VerifyError::Type);
}

#[test]
fn configurations_that_accept_nothing_are_refused() {
    use crate::ConfigError;
    let b = || Verifier::builder(ISSUER).static_jwks(r#"{"keys":[]}"#);
    assert_eq!(b().build().unwrap_err(), ConfigError::NothingAccepted);
    assert!(matches!(b().audience(API).token_types(&[]).build(), Err(ConfigError::NoTokenType)));
    for issuer in ["id.example.com", "https://id.example.com/", ""] {
        let r = Verifier::builder(issuer).audience(API).build();
        assert!(matches!(r, Err(ConfigError::Issuer(_))), "{issuer}");
    }
    let bad_jwks = Verifier::builder(ISSUER).audience(API).static_jwks("[]").build();
    assert!(matches!(bad_jwks, Err(ConfigError::Jwks(_))));
}
