//! Abuse of Google and Microsoft sign-in with crafted ID tokens and discovery documents, each
//! expecting a refusal, its audited reason, and nothing created (no user, membership, identity,
//! grant or session).
//!
//! Latchkey is pointed at a fake provider run by the test (actix-web on a free loopback port):
//! it serves discovery documents in Google's and Microsoft's shapes whose issuer is its own
//! address and whose `jwks_uri` is the emulator's real key set, an authorization endpoint that
//! sends the browser straight back with a code, and a token endpoint that answers with whatever
//! the test scripted for that flow. The tokens are signed by the emulator (`POST /admin/sign`)
//! with exactly the claims a case needs, so everything but the one flaw under test is valid:
//! the same production code path as with the real providers, only the endpoints differ.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use latchkey_core::{
    identity::{method::Upstream, users::NewUser},
    infra::{
        audit::{self, Actor},
        entity::{external_identity, membership, session, upstream_grant, user},
    },
};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir, free_listener},
    upstream_idp::{GOOGLE_CLIENT, MICROSOFT_CLIENT, UpstreamIdp},
    upstream_support::{acme, browser, enroll},
};

const CONTOSO: &str = "11111111-1111-4111-8111-111111111111";
const FABRIKAM: &str = "22222222-2222-4222-8222-222222222222";
const OTHER_CLIENT: &str = "someone-elses-client";

/// What the fake provider serves; tests change it between flows.
#[derive(Default)]
struct Script {
    /// The emulator's key set URLs, by family (`google`, `microsoft`).
    jwks: HashMap<&'static str, String>,
    /// An issuer a discovery document names instead of its own, by the document's base path
    /// (`/google`, `/ms/{tenant}/v2.0`).
    issuer_override: HashMap<String, String>,
    /// The token endpoint's answer to the flow of each `state`.
    answers: HashMap<String, Value>,
}

struct Shared {
    base: String,
    script: Arc<Mutex<Script>>,
}

/// A Google / Microsoft look-alike under the test's control (see the module docs).
struct FakeProvider {
    base: String,
    script: Arc<Mutex<Script>>,
}

impl FakeProvider {
    async fn start(idp: &UpstreamIdp) -> Self {
        let jwks_uri = |doc: String| async move {
            let doc: Value = reqwest::get(doc).await.unwrap().json().await.unwrap();
            doc["jwks_uri"].as_str().unwrap().to_owned()
        };
        let discovery = "/.well-known/openid-configuration";
        let google = jwks_uri(format!("{}{discovery}", idp.google_issuer)).await;
        let microsoft =
            jwks_uri(format!("{}/common/v2.0{discovery}", idp.microsoft_authority)).await;
        let script = Arc::new(Mutex::new(Script {
            jwks: HashMap::from([("google", google), ("microsoft", microsoft)]),
            ..Script::default()
        }));
        let listener = free_listener();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = web::Data::new(Shared { base: base.clone(), script: script.clone() });
        let server = HttpServer::new(move || {
            App::new().app_data(shared.clone()).default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self { base, script }
    }

    fn google_issuer(&self) -> String {
        format!("{}/google", self.base)
    }

    fn microsoft_authority(&self) -> String {
        format!("{}/ms", self.base)
    }

    fn tenant_issuer(&self, tid: &str) -> String {
        format!("{}/ms/{tid}/v2.0", self.base)
    }

    /// Makes the discovery document at `base_path` name `issuer`.
    fn name_issuer(&self, base_path: &str, issuer: &str) {
        let mut script = self.script.lock().unwrap();
        script.issuer_override.insert(base_path.to_owned(), issuer.to_owned());
    }

    fn answer(&self, state: &str, answer: Value) {
        self.script.lock().unwrap().answers.insert(state.to_owned(), answer);
    }
}

async fn serve(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path();
    if let Some(prefix) = path.strip_suffix("/.well-known/openid-configuration") {
        return discovery(&shared, prefix);
    }
    if path.ends_with("/auth") {
        // Straight back with a code naming the flow: no login, no consent.
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
        let (Some(redirect), Some(state)) = (query.get("redirect_uri"), query.get("state")) else {
            return HttpResponse::BadRequest().finish();
        };
        let back = reqwest::Url::parse_with_params(
            redirect,
            [("code", format!("c.{state}").as_str()), ("state", state.as_str())],
        )
        .unwrap();
        return HttpResponse::Found().insert_header(("location", back.to_string())).finish();
    }
    if path.ends_with("/token") {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let state = form.get("code").and_then(|c| c.strip_prefix("c.")).unwrap_or_default();
        return match shared.script.lock().unwrap().answers.remove(state) {
            Some(answer) => HttpResponse::Ok().json(answer),
            None => HttpResponse::BadRequest().json(json!({ "error": "invalid_grant" })),
        };
    }
    HttpResponse::NotFound().finish()
}

/// Google's document at `/google`, a Microsoft tenant's at `/ms/{tid}/v2.0`, and the
/// multi-tenant one at `/ms/common/v2.0` with its `{tenantid}` template issuer. Every document
/// also offers HMAC and `none`, as a hostile provider would.
fn discovery(shared: &Shared, prefix: &str) -> HttpResponse {
    let base = &shared.base;
    let (family, issuer) = match prefix {
        "/google" => ("google", format!("{base}{prefix}")),
        "/ms/common/v2.0" => ("microsoft", format!("{base}/ms/{{tenantid}}/v2.0")),
        p if p.starts_with("/ms/") && p.ends_with("/v2.0") => ("microsoft", format!("{base}{p}")),
        _ => return HttpResponse::NotFound().finish(),
    };
    let script = shared.script.lock().unwrap();
    let issuer = script.issuer_override.get(prefix).cloned().unwrap_or(issuer);
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}{prefix}/auth"),
        "token_endpoint": format!("{base}{prefix}/token"),
        "jwks_uri": script.jwks[family],
        "response_types_supported": ["code"],
        "subject_types_supported": [if family == "google" { "public" } else { "pairwise" }],
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

struct Fixture {
    node: TestServer,
    idp: UpstreamIdp,
    fake: FakeProvider,
    org_id: String,
    google_connection: String,
    microsoft_connection: String,
    _data: tempfile::TempDir,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    let db = TestDb::new(backend).await?;
    let idp = UpstreamIdp::start(json!({})).await;
    let fake = FakeProvider::start(&idp).await;
    let data = data_dir();
    let (google_issuer, authority) = (fake.google_issuer(), fake.microsoft_authority());
    let settings = [
        ("LATCHKEY_GOOGLE_CLIENT_ID", GOOGLE_CLIENT.0),
        ("LATCHKEY_GOOGLE_CLIENT_SECRET", GOOGLE_CLIENT.1),
        ("LATCHKEY_MICROSOFT_CLIENT_ID", MICROSOFT_CLIENT.0),
        ("LATCHKEY_MICROSOFT_CLIENT_SECRET", MICROSOFT_CLIENT.1),
        ("LATCHKEY_GOOGLE_ISSUER", google_issuer.as_str()),
        ("LATCHKEY_MICROSOFT_AUTHORITY", authority.as_str()),
    ];
    let node = TestServer::start(data.path(), &db, &settings).await;
    let org_id = acme(&node, &["acme.test", "contoso.test", "fabrikam.test"]).await;
    let mut f = Fixture {
        node,
        idp,
        fake,
        org_id,
        google_connection: String::new(),
        microsoft_connection: String::new(),
        _data: data,
    };
    f.google_connection = enroll(&f.node, &f.org_id, Upstream::Google, "acme.test", None).await;
    f.microsoft_connection =
        enroll(&f.node, &f.org_id, Upstream::Microsoft, "contoso.test", Some(CONTOSO)).await;
    Some(f)
}

/// Where a sign-in starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// "Continue with Google": Google's issuer.
    GoogleSocial,
    /// "Continue with Microsoft": `/common`, whose issuer is a template.
    MicrosoftSocial,
    /// The Google EASIE connection of acme.test.
    GoogleEasie,
    /// The Microsoft EASIE connection of contoso.test: Contoso's own endpoints.
    MicrosoftEasie,
}

impl Start {
    fn path(self, f: &Fixture) -> String {
        match self {
            Self::GoogleSocial => "/oauth/start/google?return_to=/account".into(),
            Self::MicrosoftSocial => "/oauth/start/microsoft?return_to=/account".into(),
            Self::GoogleEasie => format!("/easie/{}/login?return_to=/account", f.google_connection),
            Self::MicrosoftEasie => {
                format!("/easie/{}/login?return_to=/account", f.microsoft_connection)
            }
        }
    }

    fn family(self) -> &'static str {
        match self {
            Self::GoogleSocial | Self::GoogleEasie => "google",
            Self::MicrosoftSocial | Self::MicrosoftEasie => "microsoft",
        }
    }
}

/// A sign-in started at Latchkey and sent to the fake provider's authorization endpoint.
struct Flow {
    browser: reqwest::Client,
    authorize: String,
    state: String,
    nonce: String,
}

async fn begin(f: &Fixture, start: Start) -> Flow {
    let browser = browser();
    let res = browser.get(f.node.url(&start.path(f))).send().await.unwrap();
    assert_eq!(res.status(), 302, "{start:?}: {}", res.text().await.unwrap_or_default());
    let authorize = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&f.fake.base), "{authorize}");
    let query: HashMap<String, String> =
        reqwest::Url::parse(&authorize).unwrap().query_pairs().into_owned().collect();
    let (state, nonce) = (query["state"].clone(), query["nonce"].clone());
    Flow { browser, authorize, state, nonce }
}

/// Latchkey's answer at the callback.
struct Outcome {
    status: u16,
    location: Option<String>,
    body: String,
}

/// Scripts the token endpoint's answer for the flow, then lets the browser go through the
/// provider and back to Latchkey's callback.
async fn finish(f: &Fixture, flow: &Flow, answer: Value) -> Outcome {
    f.fake.answer(&flow.state, answer);
    let res = flow.browser.get(&flow.authorize).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&f.node.url("/oauth/callback/")), "{callback}");
    let res = flow.browser.get(&callback).send().await.unwrap();
    let status = res.status().as_u16();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    Outcome { status, location, body: res.text().await.unwrap_or_default() }
}

fn token_response(id_token: &str) -> Value {
    json!({
        "access_token": "upstream-access-token",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "upstream-refresh-token",
        "id_token": id_token,
        "scope": "openid email profile",
    })
}

/// How a crafted ID token is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signing {
    /// With the family's published key: a genuine signature.
    Published,
    /// With a key nobody publishes, under the published `kid`.
    Forged,
    /// With the published key but naming a `kid` the key set does not have.
    UnknownKid,
    /// With the other family's published key (and its `kid`).
    OtherFamily,
    /// `alg: none`, no signature.
    Unsigned,
    /// HS256 with the client secret as the key, which the client shares with the provider.
    ClientSecret,
}

async fn sign(f: &Fixture, family: &str, claims: &Value, signing: Signing) -> String {
    let other = if family == "google" { "microsoft" } else { "google" };
    let request = match signing {
        Signing::Published => json!({ "family": family, "claims": claims }),
        Signing::Forged => json!({ "family": family, "claims": claims, "forged": true }),
        Signing::UnknownKid => {
            json!({ "family": family, "claims": claims, "header": { "kid": "not-published" } })
        }
        Signing::OtherFamily => json!({ "family": other, "claims": claims }),
        Signing::Unsigned => json!({ "family": family, "claims": claims, "alg": "none" }),
        Signing::ClientSecret => {
            let secret = if family == "google" { GOOGLE_CLIENT.1 } else { MICROSOFT_CLIENT.1 };
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            return jsonwebtoken::encode(&header, claims, &key).unwrap();
        }
    };
    f.idp.admin("/sign", request).await["jwt"].as_str().unwrap().to_owned()
}

/// What the claims of a case are built from.
struct Ctx {
    now: i64,
    nonce: String,
    /// The nonce of the control sign-in, completed before the cases run.
    earlier_nonce: String,
    google_issuer: String,
    /// The emulator's Google issuer: a real issuer, whose key Latchkey would accept.
    emulator_google_issuer: String,
    authority: String,
    emulator_authority: String,
}

impl Ctx {
    fn tenant_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }
}

/// Valid claims of a Google account: a Workspace member of `hd` when given, else a consumer.
fn google(c: &Ctx, email: &str, hd: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": c.google_issuer, "aud": GOOGLE_CLIENT.0, "azp": GOOGLE_CLIENT.0,
        "sub": format!("1{:020}", email.len() * 7919 + email.bytes().map(usize::from).sum::<usize>()),
        "email": email, "email_verified": true, "name": "Crafted Account",
        "iat": c.now, "exp": c.now + 3600, "nonce": c.nonce,
    });
    if let Some(hd) = hd {
        claims["hd"] = json!(hd);
    }
    claims
}

/// Valid claims of a member of Microsoft tenant `tid`, with an owner-verified address.
fn microsoft(c: &Ctx, tid: &str, oid: &str, email: &str) -> Value {
    json!({
        "iss": c.tenant_issuer(tid), "aud": MICROSOFT_CLIENT.0,
        "sub": format!("pairwise-{oid}"), "oid": oid, "tid": tid, "ver": "2.0",
        "email": email, "xms_edov": true, "preferred_username": email, "name": "Crafted Member",
        "iat": c.now, "exp": c.now + 3600, "nonce": c.nonce,
    })
}

/// `base` with `patch`'s top-level claims set; a `null` in the patch removes the claim.
fn with(mut base: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// Builds a case's claims.
type Claims = fn(&Ctx) -> Value;
/// Builds the token endpoint's answer around the signed ID token.
type Answer = fn(String) -> Value;

/// One abuse case: where it starts, the claims, how they are signed, and the reason the
/// refusal must be audited with.
struct Case {
    name: &'static str,
    start: Start,
    claims: Claims,
    signing: Signing,
    reason: &'static str,
}

/// Rows of (users, memberships, sessions, external identities, upstream grants).
async fn counts(f: &Fixture) -> [u64; 5] {
    let db = f.node.core.store.db();
    [
        user::Entity::find().count(db).await.unwrap(),
        membership::Entity::find().count(db).await.unwrap(),
        session::Entity::find().count(db).await.unwrap(),
        external_identity::Entity::find().count(db).await.unwrap(),
        upstream_grant::Entity::find().count(db).await.unwrap(),
    ]
}

/// The newest `upstream.sign_in_rejected` event's data.
async fn last_refusal(f: &Fixture) -> Value {
    audit::recent(f.node.core.store.db(), 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "upstream.sign_in_rejected")
        .map(|e| e.data)
        .unwrap_or(Value::Null)
}

/// What is wrong with a refusal, if anything: it must be a 400 page naming the reference of
/// the newest refusal, which has `reason`.
async fn check_refused(f: &Fixture, outcome: &Outcome, reason: &str) -> Option<String> {
    if outcome.status != 400 {
        return Some(format!("expected 400, got {} {}", outcome.status, outcome.body));
    }
    let event = last_refusal(f).await;
    if event["reason"] != reason {
        return Some(format!("refused as {}, {event}", event["reason"]));
    }
    let reference = event["reference"].as_str().unwrap_or("no reference");
    (!outcome.body.contains(reference)).then(|| format!("the page does not name {reference}"))
}

async fn assert_refused(f: &Fixture, what: &str, outcome: &Outcome, reason: &str) {
    if let Some(wrong) = check_refused(f, outcome, reason).await {
        panic!("{what}: expected {reason}: {wrong}");
    }
}

fn assert_signed_in(what: &str, outcome: &Outcome) {
    assert_eq!(outcome.status, 303, "{what}: {}", outcome.body);
    assert_eq!(outcome.location.as_deref(), Some("/account"), "{what}");
}

async fn ctx(f: &Fixture, nonce: &str, earlier_nonce: &str) -> Ctx {
    Ctx {
        now: f.node.core.store.now(),
        nonce: nonce.to_owned(),
        earlier_nonce: earlier_nonce.to_owned(),
        google_issuer: f.fake.google_issuer(),
        emulator_google_issuer: f.idp.google_issuer.clone(),
        authority: f.fake.microsoft_authority(),
        emulator_authority: f.idp.microsoft_authority.clone(),
    }
}

/// Runs the control sign-in (`control` must succeed), then every case, each from a new
/// browser: refused with its reason, nothing created.
async fn run_table(f: &Fixture, control: Case, cases: &[Case]) {
    let flow = begin(f, control.start).await;
    let c = ctx(f, &flow.nonce, "").await;
    let token = sign(f, control.start.family(), &(control.claims)(&c), control.signing).await;
    assert_signed_in(control.name, &finish(f, &flow, token_response(&token)).await);
    let earlier_nonce = flow.nonce;
    // Every case runs, and the failures are reported together.
    let mut failures = Vec::new();
    for case in cases {
        let before = counts(f).await;
        let flow = begin(f, case.start).await;
        let c = ctx(f, &flow.nonce, &earlier_nonce).await;
        let token = sign(f, case.start.family(), &(case.claims)(&c), case.signing).await;
        let outcome = finish(f, &flow, token_response(&token)).await;
        if let Some(wrong) = check_refused(f, &outcome, case.reason).await {
            failures.push(format!("{}: expected {}: {wrong}", case.name, case.reason));
        } else if counts(f).await != before {
            failures.push(format!("{}: rows were created", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

async fn crafted_google_id_tokens_are_refused(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    // An account whose verified address a forged or loose token could take over.
    let victim =
        NewUser { email: "victim@example.test".into(), email_verified: true, ..NewUser::default() };
    f.node.core.users.create(victim, &Actor::cli()).await.unwrap();
    use Signing::*;
    use Start::*;
    let control = Case {
        name: "a Workspace member through the EASIE connection (issued a minute ahead of our clock)",
        start: GoogleEasie,
        claims: |c| {
            with(google(c, "alice@acme.test", Some("acme.test")), json!({ "iat": c.now + 60 }))
        },
        signing: Published,
        reason: "",
    };
    let cases = [
        Case {
            name: "iss of another issuer (one whose key we trust)",
            start: GoogleSocial,
            claims: |c| {
                with(google(c, "a1@gmail.test", None), json!({ "iss": c.emulator_google_issuer }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "iss with a trailing slash",
            start: GoogleSocial,
            claims: |c| {
                let iss = format!("{}/", c.google_issuer);
                with(google(c, "a2@gmail.test", None), json!({ "iss": iss }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "iss of another issuer on an enterprise account",
            start: GoogleEasie,
            claims: |c| {
                let claims = google(c, "alice@acme.test", Some("acme.test"));
                with(claims, json!({ "iss": c.emulator_google_issuer }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "a token for another client",
            start: GoogleSocial,
            claims: |c| {
                let patch = json!({ "aud": OTHER_CLIENT, "azp": OTHER_CLIENT });
                with(google(c, "a3@gmail.test", None), patch)
            },
            signing: Published,
            reason: "audience_mismatch",
        },
        Case {
            name: "a token for us and another client",
            start: GoogleSocial,
            claims: |c| {
                let patch = json!({ "aud": [GOOGLE_CLIENT.0, OTHER_CLIENT] });
                with(google(c, "a4@gmail.test", None), patch)
            },
            signing: Published,
            reason: "audience_mismatch",
        },
        Case {
            name: "a token for us, authorized for another client (azp)",
            start: GoogleSocial,
            claims: |c| with(google(c, "a5@gmail.test", None), json!({ "azp": OTHER_CLIENT })),
            signing: Published,
            reason: "azp_mismatch",
        },
        Case {
            name: "a forged signature",
            start: GoogleEasie,
            claims: |c| google(c, "alice@acme.test", Some("acme.test")),
            signing: Forged,
            reason: "signature_invalid",
        },
        Case {
            name: "a key the provider does not publish",
            start: GoogleSocial,
            claims: |c| google(c, "a6@gmail.test", None),
            signing: UnknownKid,
            reason: "signature_key_unknown",
        },
        Case {
            name: "signed with Microsoft's key",
            start: GoogleSocial,
            claims: |c| google(c, "a7@gmail.test", None),
            signing: OtherFamily,
            reason: "signature_key_unknown",
        },
        Case {
            name: "alg none",
            start: GoogleEasie,
            claims: |c| google(c, "alice@acme.test", Some("acme.test")),
            signing: Unsigned,
            reason: "signature_algorithm_refused",
        },
        Case {
            name: "HS256 with the client secret",
            start: GoogleEasie,
            claims: |c| google(c, "alice@acme.test", Some("acme.test")),
            signing: ClientSecret,
            reason: "signature_algorithm_refused",
        },
        Case {
            name: "expired by Latchkey's clock",
            start: GoogleSocial,
            claims: |c| {
                let patch = json!({ "iat": c.now - 7200, "exp": c.now - 1 });
                with(google(c, "a8@gmail.test", None), patch)
            },
            signing: Published,
            reason: "id_token_expired",
        },
        Case {
            name: "expiring this very second",
            start: GoogleSocial,
            claims: |c| with(google(c, "a9@gmail.test", None), json!({ "exp": c.now })),
            signing: Published,
            reason: "id_token_expired",
        },
        Case {
            name: "issued in the future (beyond five minutes of skew)",
            start: GoogleSocial,
            claims: |c| {
                let patch = json!({ "iat": c.now + 3600, "exp": c.now + 7200 });
                with(google(c, "a17@gmail.test", None), patch)
            },
            signing: Published,
            reason: "id_token_issued_in_future",
        },
        Case {
            name: "the nonce of an earlier, completed sign-in",
            start: GoogleEasie,
            claims: |c| {
                let claims = google(c, "alice@acme.test", Some("acme.test"));
                with(claims, json!({ "nonce": c.earlier_nonce }))
            },
            signing: Published,
            reason: "nonce_mismatch",
        },
        Case {
            name: "no nonce",
            start: GoogleSocial,
            claims: |c| with(google(c, "a10@gmail.test", None), json!({ "nonce": null })),
            signing: Published,
            reason: "nonce_missing",
        },
        Case {
            name: "an empty sub",
            start: GoogleSocial,
            claims: |c| with(google(c, "a11@gmail.test", None), json!({ "sub": "" })),
            signing: Published,
            reason: "sub_missing",
        },
        Case {
            name: "email_verified as the string \"true\" on the enrolled domain",
            start: GoogleEasie,
            claims: |c| {
                let claims = google(c, "carl@acme.test", Some("acme.test"));
                with(claims, json!({ "email_verified": "true" }))
            },
            signing: Published,
            // The crate's typed claims refuse a string there: the token is malformed.
            reason: "claims_malformed",
        },
        Case {
            name: "email_verified as the string \"true\" for another account's address",
            start: GoogleSocial,
            claims: |c| {
                let claims = google(c, "victim@example.test", None);
                with(claims, json!({ "email_verified": "true" }))
            },
            signing: Published,
            reason: "claims_malformed",
        },
        Case {
            name: "no sub",
            start: GoogleSocial,
            claims: |c| with(google(c, "a12@gmail.test", None), json!({ "sub": null })),
            signing: Published,
            reason: "claims_malformed",
        },
        Case {
            name: "sub as a number",
            start: GoogleSocial,
            claims: |c| with(google(c, "a13@gmail.test", None), json!({ "sub": 42 })),
            signing: Published,
            reason: "claims_malformed",
        },
        Case {
            name: "no iss",
            start: GoogleSocial,
            claims: |c| with(google(c, "a14@gmail.test", None), json!({ "iss": null })),
            signing: Published,
            reason: "claims_malformed",
        },
        Case {
            name: "no exp",
            start: GoogleSocial,
            claims: |c| with(google(c, "a15@gmail.test", None), json!({ "exp": null })),
            signing: Published,
            reason: "claims_malformed",
        },
        Case {
            name: "a Workspace of another domain (hd) on the enrolled domain, signed for real",
            start: GoogleSocial,
            claims: |c| google(c, "dora@acme.test", Some("evil.test")),
            signing: Published,
            reason: "hd_mismatch",
        },
    ];
    run_table(&f, control, &cases).await;
}

async fn crafted_microsoft_id_tokens_are_refused(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let victim =
        NewUser { email: "victim@example.test".into(), email_verified: true, ..NewUser::default() };
    f.node.core.users.create(victim, &Actor::cli()).await.unwrap();
    use Signing::*;
    use Start::*;
    const CAROL: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const MALLORY: &str = "cccccccc-0000-4000-8000-000000000003";
    let control = Case {
        name: "a Contoso member through the EASIE connection",
        start: MicrosoftEasie,
        claims: |c| microsoft(c, CONTOSO, CAROL, "carol@contoso.test"),
        signing: Published,
        reason: "",
    };
    let cases = [
        Case {
            name: "another tenant's token at the pinned tenant's endpoints",
            start: MicrosoftEasie,
            claims: |c| microsoft(c, FABRIKAM, MALLORY, "mallory@contoso.test"),
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "the pinned tenant's issuer with another tenant's tid",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(c, FABRIKAM, MALLORY, "mallory@contoso.test");
                with(claims, json!({ "iss": c.tenant_issuer(CONTOSO) }))
            },
            signing: Published,
            reason: "tenant_mismatch",
        },
        Case {
            name: "through /common: iss of another tenant than tid",
            start: MicrosoftSocial,
            claims: |c| {
                let claims = microsoft(c, FABRIKAM, MALLORY, "mallory@elsewhere.test");
                with(claims, json!({ "iss": c.tenant_issuer(CONTOSO) }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "through /common: the template issuer itself",
            start: MicrosoftSocial,
            claims: |c| {
                let claims = microsoft(c, FABRIKAM, MALLORY, "mallory@elsewhere.test");
                with(claims, json!({ "iss": c.tenant_issuer("{tenantid}") }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "through /common: the tenant's issuer at another authority",
            start: MicrosoftSocial,
            claims: |c| {
                let iss = format!("{}/{FABRIKAM}/v2.0", c.emulator_authority);
                let claims = microsoft(c, FABRIKAM, MALLORY, "mallory@elsewhere.test");
                with(claims, json!({ "iss": iss }))
            },
            signing: Published,
            reason: "issuer_mismatch",
        },
        Case {
            name: "through /common: another tenant's member with an enrolled address",
            start: MicrosoftSocial,
            claims: |c| microsoft(c, FABRIKAM, MALLORY, "carol@contoso.test"),
            signing: Published,
            reason: "tenant_mismatch",
        },
        Case {
            name: "a token for another client",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(c, CONTOSO, CAROL, "carol@contoso.test");
                with(claims, json!({ "aud": OTHER_CLIENT }))
            },
            signing: Published,
            reason: "audience_mismatch",
        },
        Case {
            name: "a forged signature",
            start: MicrosoftEasie,
            claims: |c| microsoft(c, CONTOSO, CAROL, "carol@contoso.test"),
            signing: Forged,
            reason: "signature_invalid",
        },
        Case {
            name: "signed with Google's key",
            start: MicrosoftEasie,
            claims: |c| microsoft(c, CONTOSO, CAROL, "carol@contoso.test"),
            signing: OtherFamily,
            reason: "signature_key_unknown",
        },
        Case {
            name: "alg none",
            start: MicrosoftSocial,
            claims: |c| microsoft(c, FABRIKAM, MALLORY, "mallory@elsewhere.test"),
            signing: Unsigned,
            reason: "signature_algorithm_refused",
        },
        Case {
            name: "HS256 with the client secret",
            start: MicrosoftEasie,
            claims: |c| microsoft(c, CONTOSO, CAROL, "carol@contoso.test"),
            signing: ClientSecret,
            reason: "signature_algorithm_refused",
        },
        Case {
            name: "expired by Latchkey's clock",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(c, CONTOSO, CAROL, "carol@contoso.test");
                with(claims, json!({ "iat": c.now - 7200, "exp": c.now - 1 }))
            },
            signing: Published,
            reason: "id_token_expired",
        },
        Case {
            name: "the nonce of an earlier, completed sign-in",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(c, CONTOSO, CAROL, "carol@contoso.test");
                with(claims, json!({ "nonce": c.earlier_nonce }))
            },
            signing: Published,
            reason: "nonce_mismatch",
        },
        Case {
            name: "no nonce",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(c, CONTOSO, CAROL, "carol@contoso.test");
                with(claims, json!({ "nonce": null }))
            },
            signing: Published,
            reason: "nonce_missing",
        },
        Case {
            name: "no tid",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(
                    c,
                    CONTOSO,
                    "aaaaaaaa-0000-4000-8000-000000000004",
                    "dan@contoso.test",
                );
                with(claims, json!({ "tid": null }))
            },
            signing: Published,
            reason: "tid_missing",
        },
        Case {
            name: "an empty oid",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(
                    c,
                    CONTOSO,
                    "aaaaaaaa-0000-4000-8000-000000000005",
                    "erin@contoso.test",
                );
                with(claims, json!({ "oid": "" }))
            },
            signing: Published,
            reason: "oid_missing",
        },
        Case {
            name: "acct as the string \"1\"",
            start: MicrosoftEasie,
            claims: |c| {
                let claims = microsoft(
                    c,
                    CONTOSO,
                    "aaaaaaaa-0000-4000-8000-000000000006",
                    "fay@contoso.test",
                );
                with(claims, json!({ "acct": "1" }))
            },
            signing: Published,
            reason: "acct_malformed",
        },
        Case {
            name: "xms_edov as the string \"true\" for another account's address",
            start: MicrosoftSocial,
            claims: |c| {
                let claims = microsoft(c, FABRIKAM, MALLORY, "victim@example.test");
                with(claims, json!({ "xms_edov": "true" }))
            },
            signing: Published,
            reason: "account_refused",
        },
    ];
    run_table(&f, control, &cases).await;
}

/// Signs in (or tries to) with `claims` from `start`, the token response shaped by `answer`.
async fn attempt(f: &Fixture, start: Start, claims: Claims, answer: Answer) -> Outcome {
    let flow = begin(f, start).await;
    let c = ctx(f, &flow.nonce, "").await;
    let token = sign(f, start.family(), &claims(&c), Signing::Published).await;
    finish(f, &flow, answer(token)).await
}

fn without_refresh_token(token: String) -> Value {
    with(token_response(&token), json!({ "refresh_token": null }))
}

/// EASIE needs the refresh token to deprovision: a first sign-in without one is refused before
/// anything is written, and the same account is provisioned once the provider sends one.
/// Consumer sign-in needs none.
async fn token_responses_without_what_a_sign_in_needs_are_refused(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    let users = &f.node.core.users;
    let members: [(Start, Claims, &str); 2] = [
        (
            Start::GoogleEasie,
            |c| google(c, "alice@acme.test", Some("acme.test")),
            "alice@acme.test",
        ),
        (
            Start::MicrosoftEasie,
            |c| microsoft(c, CONTOSO, "aaaaaaaa-0000-4000-8000-000000000001", "carol@contoso.test"),
            "carol@contoso.test",
        ),
    ];
    for (start, claims, email) in members {
        let before = counts(&f).await;
        let outcome = attempt(&f, start, claims, without_refresh_token).await;
        assert_refused(&f, email, &outcome, "refresh_token_missing").await;
        assert_eq!(counts(&f).await, before, "{email}: nothing is created");
        assert!(users.find_by_email(email).await.unwrap().is_none());
        // "Continue with …" with the same account is the same enterprise sign-in.
        let social = match start {
            Start::GoogleEasie => Start::GoogleSocial,
            _ => Start::MicrosoftSocial,
        };
        let outcome = attempt(&f, social, claims, without_refresh_token).await;
        assert_refused(&f, email, &outcome, "refresh_token_missing").await;
        assert_eq!(counts(&f).await, before, "{email}: nothing is created");
        // With a refresh token: one user, membership, session, identity and grant.
        assert_signed_in(email, &attempt(&f, start, claims, |t| token_response(&t)).await);
        let after = counts(&f).await;
        assert_eq!(after.map(|n| n - 1), before, "{email}: one of each is created");
        assert!(users.find_by_email(email).await.unwrap().is_some());
    }
    let consumer: Claims = |c| google(c, "bob@gmail.test", None);
    let outcome = attempt(&f, Start::GoogleSocial, consumer, without_refresh_token).await;
    assert_signed_in("a consumer without a refresh token", &outcome);
    // No ID token, or one that is not a JWT at all.
    let before = counts(&f).await;
    let no_id_token: Answer = |t| with(token_response(&t), json!({ "id_token": null }));
    let outcome = attempt(&f, Start::GoogleEasie, consumer, no_id_token).await;
    assert_refused(&f, "no ID token", &outcome, "id_token_missing").await;
    let not_a_jwt: Answer = |t| with(token_response(&t), json!({ "id_token": "not.a-jwt" }));
    let outcome = attempt(&f, Start::GoogleSocial, consumer, not_a_jwt).await;
    assert_refused(&f, "an ID token that is not a JWT", &outcome, "claims_malformed").await;
    assert_eq!(counts(&f).await, before, "nothing is created");
}

/// A discovery document must name the configured issuer (a tenant's own `{authority}/{tid}/v2.0`,
/// `/common`'s template): refused when the sign-in starts, and when a stale cached document is
/// fetched again at the callback.
async fn a_discovery_document_naming_another_issuer_is_refused(backend: Backend) {
    let Some(f) = fixture(backend).await else { return };
    // A tenant whose document names another tenant's issuer.
    f.fake.name_issuer(&format!("/ms/{FABRIKAM}/v2.0"), &f.fake.tenant_issuer(CONTOSO));
    let fabrikam =
        enroll(&f.node, &f.org_id, Upstream::Microsoft, "fabrikam.test", Some(FABRIKAM)).await;
    // /common naming a fixed issuer rather than its template.
    f.fake.name_issuer("/ms/common/v2.0", &format!("{}/ms/common/v2.0", f.fake.base));
    let starts = [
        format!("/easie/{fabrikam}/login?login_hint=x@fabrikam.test"),
        "/oauth/start/microsoft".to_owned(),
    ];
    for path in starts {
        let before = counts(&f).await;
        let res = browser().get(f.node.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 500, "{path}: not sent to the provider");
        assert_eq!(last_refusal(&f).await["reason"], "discovery_issuer_mismatch", "{path}");
        assert_eq!(counts(&f).await, before);
    }
    // Google's document is fetched and cached (for an hour) by a first start...
    begin(&f, Start::GoogleSocial).await;
    f.node.clock.advance(std::time::Duration::from_secs(55 * 60));
    // ...still used by a start 55 minutes later, then names another issuer when fetched again
    // at that flow's callback, 6 minutes later.
    let flow = begin(&f, Start::GoogleSocial).await;
    f.fake.name_issuer("/google", &f.idp.google_issuer);
    f.node.clock.advance(std::time::Duration::from_secs(6 * 60));
    let c = ctx(&f, &flow.nonce, "").await;
    let token = sign(&f, "google", &google(&c, "zed@gmail.test", None), Signing::Published).await;
    let before = counts(&f).await;
    let outcome = finish(&f, &flow, token_response(&token)).await;
    assert_refused(&f, "at the callback", &outcome, "discovery_issuer_mismatch").await;
    assert_eq!(counts(&f).await, before);
    // The next start fetches it again: refused there too.
    let res = browser().get(f.node.url("/oauth/start/google")).send().await.unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(last_refusal(&f).await["reason"], "discovery_issuer_mismatch");
}

on_both_backends!(crafted_google_id_tokens_are_refused);
on_both_backends!(crafted_microsoft_id_tokens_are_refused);
on_both_backends!(token_responses_without_what_a_sign_in_needs_are_refused);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_document_naming_another_issuer_is_refused_sqlite() {
    a_discovery_document_naming_another_issuer_is_refused(Backend::Sqlite).await;
}
