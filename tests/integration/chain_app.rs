//! An app of Latchkey's, as its developers would write it with the `openidconnect` crate, served
//! on loopback so that browser tests can drive the whole chain: `/login` sends the browser to
//! Latchkey's authorization endpoint (code + PKCE, `state`, `nonce`); `/callback` checks the
//! state (single use), redeems the code and verifies the ID token, then shows who signed in. Its
//! back-channel logout endpoint is a [`Receiver`] on a port of its own.

use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{Arc, Mutex},
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use base64::Engine as _;
use latchkey_core::{infra::audit::Actor, oauth::clients::NewClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope,
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
};
use serde_json::Value;

use crate::{backchannel::Receiver, support::TestServer};

/// The client type `from_provider_metadata` gives (authorization endpoint set, token and
/// userinfo endpoints as discovered).
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A completed sign-in as the app saw it, after the crate verified the ID token.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub email: String,
    pub sub: String,
    /// Latchkey's session ID (`sid`), which its logout tokens name.
    pub sid: String,
    pub amr: Vec<String>,
    pub refresh_token: String,
}

struct AppState {
    rp: Rp,
    http: openidconnect::reqwest::Client,
    /// Authorization requests in flight, by `state`: the PKCE verifier and the nonce.
    pending: Mutex<HashMap<String, (PkceCodeVerifier, Nonce)>>,
    signed_in: Mutex<Vec<SignIn>>,
}

pub struct ChainApp {
    pub url: String,
    pub logouts: Receiver,
    state: Arc<AppState>,
    handle: ServerHandle,
}

impl ChainApp {
    /// Registers the app as a first-party client of `node` (code + refresh, back-channel logout)
    /// and serves it.
    pub async fn start(node: &TestServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let logout_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let logout_uri = format!("http://{}/logout", logout_listener.local_addr().unwrap());
        let logouts = Receiver::default();
        logouts.serve(logout_listener).await;
        let new = NewClient {
            name: "Wiki".into(),
            redirect_uris: vec![format!("{url}/callback")],
            backchannel_logout_uri: Some(logout_uri),
            first_party: true,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            ..Default::default()
        };
        let created = node.core.clients.create(new, &Actor::cli()).await.unwrap();
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let issuer = IssuerUrl::new(node.base_url.clone()).unwrap();
        let meta = CoreProviderMetadata::discover_async(issuer, &http).await.unwrap();
        let rp = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(created.client.client_id.clone()),
            created.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(format!("{url}/callback")).unwrap());
        let state =
            Arc::new(AppState { rp, http, pending: Mutex::default(), signed_in: Mutex::default() });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/login", web::get().to(login))
                .route("/callback", web::get().to(callback))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, logouts, state, handle }
    }

    pub fn sign_ins(&self) -> Vec<SignIn> {
        self.state.signed_in.lock().unwrap().clone()
    }

    /// The app refreshes its tokens for a sign-in, as it would when its access token expires,
    /// and keeps the rotated refresh token.
    pub async fn refresh(&self, sign_in: &mut SignIn) -> Result<String, String> {
        let refresh = RefreshToken::new(sign_in.refresh_token.clone());
        let req = self.state.rp.exchange_refresh_token(&refresh).map_err(|e| e.to_string())?;
        let tokens = req.request_async(&self.state.http).await.map_err(|e| format!("{e:?}"))?;
        if let Some(rotated) = tokens.refresh_token() {
            sign_in.refresh_token = rotated.secret().clone();
        }
        Ok(tokens.access_token().secret().clone())
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn login(app: web::Data<AppState>) -> HttpResponse {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = app
        .rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    app.pending.lock().unwrap().insert(state.secret().clone(), (verifier, nonce));
    HttpResponse::Found().insert_header(("Location", url.to_string())).finish()
}

#[derive(serde::Deserialize)]
struct Callback {
    code: Option<String>,
    state: String,
    error: Option<String>,
}

async fn callback(app: web::Data<AppState>, q: web::Query<Callback>) -> HttpResponse {
    match complete(&app, q.into_inner()).await {
        Ok(s) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
            "<!doctype html><title>Wiki</title><h1>Signed in</h1>\
             <p>Email: <span id=\"email\">{}</span></p><p>Method: <span id=\"amr\">{}</span></p>",
            s.email,
            s.amr.join(" ")
        )),
        Err(e) => HttpResponse::BadRequest().content_type("text/plain").body(format!("error: {e}")),
    }
}

/// The app's side of the code flow; every check the crate offers, and the state single use.
async fn complete(app: &AppState, q: Callback) -> Result<SignIn, String> {
    let (verifier, nonce) =
        app.pending.lock().unwrap().remove(&q.state).ok_or("unknown or replayed state")?;
    if let Some(e) = q.error {
        return Err(e);
    }
    let code = q.code.ok_or("no code")?;
    let tokens = app
        .rp
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(verifier)
        .request_async(&app.http)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let id_token = openidconnect::TokenResponse::id_token(&tokens).ok_or("no ID token")?;
    let claims = id_token.claims(&app.rp.id_token_verifier(), &nonce).map_err(|e| e.to_string())?;
    // `sid` is not among the crate's standard claims: read it from the verified token's payload.
    let payload = id_token.to_string().split('.').nth(1).map(str::to_owned).unwrap_or_default();
    let raw: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let sign_in = SignIn {
        email: claims.email().map(|e| e.to_string()).ok_or("no email")?,
        sub: claims.subject().to_string(),
        sid: raw["sid"].as_str().ok_or("no sid")?.to_owned(),
        amr: claims.auth_method_refs().into_iter().flatten().map(|a| a.to_string()).collect(),
        refresh_token: tokens.refresh_token().ok_or("no refresh token")?.secret().clone(),
    };
    app.signed_in.lock().unwrap().push(sign_in.clone());
    Ok(sign_in)
}
