//! The tower layer and the axum extractors.

use axum_core::{
    body::Body,
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::{Request, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

use super::kit::*;
use crate::{Auth, ManualClock, RequireAuth, Verifier, axum::LatchkeyLayer};

/// A handler answering 200 with the subject in a header, or the extractor's refusal.
async fn handler(req: Request<Body>) -> Result<Response, std::convert::Infallible> {
    let (mut parts, _) = req.into_parts();
    let optional = Auth::from_request_parts(&mut parts, &()).await.unwrap();
    Ok(match RequireAuth::from_request_parts(&mut parts, &()).await {
        Ok(RequireAuth(c)) => {
            assert_eq!(optional.claims.map(|o| o.sub().to_owned()), Some(c.sub().to_owned()));
            Response::builder().header("x-sub", c.sub()).body(Body::empty()).unwrap()
        }
        Err(refusal) => refusal.into_response(),
    })
}

#[tokio::test]
async fn the_layer_verifies_and_the_extractors_answer() {
    let key = TestKey::ed25519("k");
    let clock = ManualClock::new(NOW);
    let v = Verifier::builder(ISSUER)
        .audience(API)
        .static_jwks(jwks(&[&key]).to_string())
        .clock(clock.clone())
        .build()
        .unwrap();
    let access = key.sign("at+jwt", &access_claims());
    let call = |layer: LatchkeyLayer, req: Request<Body>| async move {
        layer.layer(service_fn(handler)).oneshot(req).await.unwrap()
    };
    let req = |auth: Option<String>, cookie: Option<String>| {
        let mut b = Request::get("/me");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(Body::empty()).unwrap()
    };
    let layer = LatchkeyLayer::new(v.clone());

    let res = call(layer.clone(), req(Some(format!("Bearer {access}")), None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-sub"], "usr_1");
    let res = call(layer.clone(), req(None, Some(format!("latchkey_token={access}")))).await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = call(layer.clone(), req(None, None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"api\"");

    clock.advance(301 + 5);
    let res = call(layer.realm("orders"), req(Some(format!("Bearer {access}")), None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer realm=\"orders\", error=\"invalid_token\", error_description=\"token expired\""
    );

    // Required mode refuses before the handler; without a cookie name, cookies are ignored.
    clock.set(NOW);
    let strict = LatchkeyLayer::new(v).required().cookie(None);
    let res = call(strict.clone(), req(None, Some(format!("latchkey_token={access}")))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = call(strict, req(Some(format!("Bearer {access}")), None)).await;
    assert_eq!(res.status(), StatusCode::OK);
}
