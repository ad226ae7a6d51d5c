//! The key cache against a loopback HTTP server: first fetch, unknown kid then found, the
//! refetch rate limit, removed keys, stale-if-error, discovery.

use serde_json::json;

use super::kit::*;
use crate::{CacheSettings, ManualClock, Verifier, VerifyError};

fn verifier(server: &KeyServer, clock: &ManualClock) -> Verifier {
    Verifier::builder(ISSUER)
        .authorized_party(APP)
        .jwks_uri(format!("{}/jwks.json", server.url))
        .clock(clock.clone())
        .cache(CacheSettings { max_age: 300, min_refetch_interval: 30, stale_if_error: 600 })
        .build()
        .unwrap()
}

#[tokio::test]
async fn keys_are_fetched_once_and_reused() {
    let key = TestKey::es256("k1");
    let server = KeyServer::start(Answer::Status(500)).await;
    server.serve_keys(&[&key]);
    let clock = ManualClock::new(NOW);
    let v = verifier(&server, &clock);
    let token = key.sign("JWT", &session_claims());
    for _ in 0..5 {
        v.verify(&token).await.unwrap();
    }
    assert_eq!(server.hits(), 1);
    // Clones share the cache.
    v.clone().verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn an_unknown_kid_is_refetched_at_most_once_per_interval() {
    let (k1, k2, k3) = (TestKey::es256("k1"), TestKey::es256("k2"), TestKey::ed25519("k3"));
    let server = KeyServer::start(Answer::Status(500)).await;
    server.serve_keys(&[&k1]);
    let clock = ManualClock::new(NOW);
    let v = verifier(&server, &clock);
    v.verify(&k1.sign("JWT", &session_claims())).await.unwrap();
    assert_eq!(server.hits(), 1);

    // A kid nobody published: refused; the refetch it triggered was the only one.
    let made_up = TestKey::es256("made-up").sign("JWT", &session_claims());
    clock.advance(30);
    assert_eq!(v.verify(&made_up).await.unwrap_err(), VerifyError::UnknownKey);
    assert_eq!(server.hits(), 2);
    for _ in 0..10 {
        assert_eq!(v.verify(&made_up).await.unwrap_err(), VerifyError::UnknownKey);
    }
    assert_eq!(server.hits(), 2, "kid misses within 30 s fetch nothing");

    // A rotation publishes k2 and k3. Within the interval the new kid is not looked up yet...
    server.serve_keys(&[&k1, &k2, &k3]);
    let t2 = k2.sign("JWT", &session_claims());
    clock.advance(29);
    assert_eq!(v.verify(&t2).await.unwrap_err(), VerifyError::UnknownKey);
    assert_eq!(server.hits(), 2);
    // ...and once the interval has passed, the miss refetches and finds it.
    clock.advance(1);
    let claims = v.verify(&t2).await.unwrap();
    assert_eq!(claims.sub(), "usr_1");
    assert_eq!(server.hits(), 3);
    v.verify(&k3.sign("JWT", &session_claims())).await.unwrap();
    v.verify(&k1.sign("JWT", &session_claims())).await.unwrap();
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_verifying_after_a_refresh() {
    let (old, new) = (TestKey::es256("old"), TestKey::es256("new"));
    let server = KeyServer::start(Answer::Status(500)).await;
    server.serve_keys(&[&old, &new]);
    let clock = ManualClock::new(NOW);
    let v = verifier(&server, &clock);
    let mut claims = session_claims();
    claims["exp"] = json!(NOW + 3600);
    let by_old = old.sign("JWT", &claims);
    v.verify(&by_old).await.unwrap();

    server.serve_keys(&[&new]);
    // Until the key set ages, the cached copy still has the old key.
    clock.advance(299);
    v.verify(&by_old).await.unwrap();
    assert_eq!(server.hits(), 1);
    // At max_age the set is refetched: the withdrawn key no longer verifies anything.
    clock.advance(1);
    assert_eq!(v.verify(&by_old).await.unwrap_err(), VerifyError::UnknownKey);
    assert_eq!(server.hits(), 2);
    let mut fresh = session_claims();
    fresh["exp"] = json!(NOW + 3600);
    v.verify(&new.sign("JWT", &fresh)).await.unwrap();
}

#[tokio::test]
async fn the_last_good_keys_serve_while_fetches_fail_then_expire() {
    let key = TestKey::es256("k");
    let server = KeyServer::start(Answer::Status(500)).await;
    let clock = ManualClock::new(NOW);
    let v = verifier(&server, &clock);
    let mut claims = session_claims();
    claims["exp"] = json!(NOW + 10_000);
    let token = key.sign("JWT", &claims);

    // Nothing fetched yet and the issuer fails: the keys are unavailable (not the token's fault).
    assert_eq!(v.verify(&token).await.unwrap_err(), VerifyError::KeysUnavailable);
    assert_eq!(VerifyError::KeysUnavailable.status(), 503);
    assert_eq!(server.hits(), 1);
    // No retry storm: the next attempt waits for the refetch interval.
    assert_eq!(v.verify(&token).await.unwrap_err(), VerifyError::KeysUnavailable);
    assert_eq!(server.hits(), 1);
    clock.advance(30);
    server.serve_keys(&[&key]);
    v.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 2);
    let fetched_at = NOW + 30;

    // The issuer goes down (an error page, then garbage): past max_age the old set still serves.
    server.serve(Answer::Status(503));
    clock.set(fetched_at + 300);
    v.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 3);
    server.serve(Answer::Json("{\"not\": \"a jwks\"}".into()));
    clock.set(fetched_at + 300 + 30);
    v.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 4);
    clock.set(fetched_at + 300 + 599);
    v.verify(&token).await.unwrap();
    // Past max_age + stale_if_error it does not.
    clock.set(fetched_at + 300 + 600);
    assert_eq!(v.verify(&token).await.unwrap_err(), VerifyError::KeysUnavailable);
    // Back up: verification resumes at the next permitted fetch.
    server.serve_keys(&[&key]);
    clock.advance(30);
    v.verify(&token).await.unwrap();
}

#[tokio::test]
async fn discovery_names_the_key_set_and_must_name_the_issuer() {
    let key = TestKey::es256("k");
    let server = KeyServer::start(Answer::Status(500)).await;
    let clock = ManualClock::new(NOW);
    // One answer for every path: a document that is both a discovery document and a JWKS.
    let both = |issuer: &str| {
        let mut doc = jwks(&[&key]);
        doc["issuer"] = json!(issuer);
        doc["jwks_uri"] = json!(format!("{}/keys", server.url));
        Answer::Json(doc.to_string())
    };
    let mut claims = session_claims();
    claims["iss"] = json!(server.url);
    let token = key.sign("JWT", &claims);
    let discovering = || {
        Verifier::builder(server.url.clone())
            .authorized_party(APP)
            .use_discovery()
            .clock(clock.clone())
            .build()
            .unwrap()
    };

    server.serve(both(&server.url));
    let v = discovering();
    v.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 2, "discovery, then the key set");

    server.serve(both("https://someone-else.example.com"));
    let v = discovering();
    assert_eq!(v.verify(&token).await.unwrap_err(), VerifyError::KeysUnavailable);
}

#[tokio::test]
async fn prefetch_loads_the_keys_up_front() {
    let key = TestKey::es256("k");
    let server = KeyServer::start(Answer::Status(500)).await;
    server.serve_keys(&[&key, &TestKey::ed25519("e")]);
    let clock = ManualClock::new(NOW);
    let v = verifier(&server, &clock);
    assert_eq!(v.prefetch().await.unwrap(), 2);
    v.verify(&key.sign("JWT", &session_claims())).await.unwrap();
    assert_eq!(server.hits(), 1);
}
