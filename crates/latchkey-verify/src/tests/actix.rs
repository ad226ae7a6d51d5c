//! The actix-web middleware and extractors: where the token is read from, and the RFC 6750
//! answers.

use actix_web::{App, HttpResponse, test, web};
use serde_json::{Value, json};

use super::kit::*;
use crate::{Auth, ManualClock, RequireAuth, Verifier, actix::LatchkeyAuth};

fn verifier(key: &TestKey, clock: &ManualClock) -> Verifier {
    Verifier::builder(ISSUER)
        .authorized_party(APP)
        .static_jwks(jwks(&[key]).to_string())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn challenge<B>(res: &actix_web::dev::ServiceResponse<B>) -> String {
    res.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned()
}

async fn me(RequireAuth(claims): RequireAuth) -> HttpResponse {
    HttpResponse::Ok().json(claims)
}

async fn public(auth: Auth) -> HttpResponse {
    let refusal = auth.refusal().map(ToString::to_string);
    HttpResponse::Ok()
        .json(json!({ "sub": auth.claims.map(|c| c.sub().to_owned()), "refusal": refusal }))
}

#[actix_web::test]
async fn require_auth_answers_401_with_a_bearer_challenge() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let app = test::init_service(
        App::new()
            .wrap(LatchkeyAuth::new(verifier(&key, &clock)).realm("example"))
            .route("/me", web::get().to(me))
            .route("/public", web::get().to(public)),
    )
    .await;
    let token = key.sign("JWT", &session_claims());
    let get = |uri: &str| test::TestRequest::get().uri(uri);

    // No token: 401 with a challenge that carries no error code (RFC 6750 §3.1).
    let res = test::call_service(&app, get("/me").to_request()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(challenge(&res), "Bearer realm=\"example\"");

    // A valid token in the header, then in the cookie.
    let req = get("/me").insert_header(("Authorization", format!("Bearer {token}")));
    let body: Value = test::call_and_read_body_json(&app, req.to_request()).await;
    assert_eq!((body["sub"].as_str(), body["sid"].as_str()), (Some("usr_1"), Some("ses_1")));
    assert_eq!(body["token_type"], "session");
    let req = get("/me").insert_header(("Cookie", format!("theme=dark; latchkey_token={token}")));
    let body: Value = test::call_and_read_body_json(&app, req.to_request()).await;
    assert_eq!(body["org_id"], "org_1");

    // Expired, or not a bearer credential: invalid_token with a description.
    clock.advance(3600);
    let req = get("/me").insert_header(("Authorization", format!("Bearer {token}")));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        challenge(&res),
        "Bearer realm=\"example\", error=\"invalid_token\", error_description=\"token expired\""
    );
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["error"], "invalid_token");
    let req = get("/me").insert_header(("Authorization", "Basic dXNlcjpwYXNz"));
    let res = test::call_service(&app, req.to_request()).await;
    assert_eq!(res.status(), 401);
    assert!(challenge(&res).contains("invalid_token"));

    // The optional extractor: anonymous without a token and with a refused one.
    let body: Value = test::call_and_read_body_json(&app, get("/public").to_request()).await;
    assert_eq!(body, json!({"sub": null, "refusal": null}));
    let req = get("/public").insert_header(("Cookie", format!("latchkey_token={token}")));
    let body: Value = test::call_and_read_body_json(&app, req.to_request()).await;
    assert_eq!(body, json!({"sub": null, "refusal": "token expired"}));
    clock.set(NOW);
    let req = get("/public").insert_header(("Cookie", format!("latchkey_token={token}")));
    let body: Value = test::call_and_read_body_json(&app, req.to_request()).await;
    assert_eq!(body["sub"], "usr_1");
}

#[actix_web::test]
async fn a_required_middleware_guards_a_whole_scope_and_the_cookie_is_configurable() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = verifier(&key, &clock);
    let app = test::init_service(
        App::new()
            .service(
                web::scope("/private")
                    .wrap(LatchkeyAuth::new(v.clone()).required().cookie(Some("app_token")))
                    .route("/x", web::get().to(|| async { "secret" })),
            )
            .route("/unguarded", web::get().to(me)),
    )
    .await;
    let token = key.sign("JWT", &session_claims());
    let get = |uri: &str| test::TestRequest::get().uri(uri);
    let res = test::call_service(&app, get("/private/x").to_request()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(challenge(&res), "Bearer realm=\"api\"");
    let req = get("/private/x").insert_header(("Cookie", format!("latchkey_token={token}")));
    assert_eq!(test::call_service(&app, req.to_request()).await.status(), 401);
    let req = get("/private/x").insert_header(("Cookie", format!("app_token={token}")));
    assert_eq!(test::call_service(&app, req.to_request()).await.status(), 200);
    // RequireAuth without the middleware fails closed.
    let req = get("/unguarded").insert_header(("Authorization", format!("Bearer {token}")));
    assert_eq!(test::call_service(&app, req.to_request()).await.status(), 503);
}

#[actix_web::test]
async fn a_missing_required_scope_is_403_insufficient_scope() {
    let key = TestKey::es256("k");
    let clock = ManualClock::new(NOW);
    let v = Verifier::builder(ISSUER)
        .audience(API)
        .required_scope("write")
        .static_jwks(jwks(&[&key]).to_string())
        .clock(clock.clone())
        .build()
        .unwrap();
    let app =
        test::init_service(App::new().wrap(LatchkeyAuth::new(v)).route("/me", web::get().to(me)))
            .await;
    let token = key.sign("at+jwt", &access_claims());
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(("Authorization", format!("Bearer {token}")))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        challenge(&res),
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"write\""
    );
    let mut claims = access_claims();
    claims["scope"] = json!("read write");
    let granted = key.sign("at+jwt", &claims);
    let req = test::TestRequest::get()
        .uri("/me")
        .insert_header(("Authorization", format!("Bearer {granted}")))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
}
