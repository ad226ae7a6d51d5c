//! An API protected by `latchkey-verify`: `GET /api/public` answers everyone (and greets a
//! signed-in caller by id), `GET /api/me` answers only a caller with a valid Latchkey token and
//! returns its claims. CORS lets one web app origin call it with the token in `Authorization`.
//!
//! Configuration (environment):
//! - `LATCHKEY_ISSUER` (required): Latchkey's public URL, exactly as in the tokens' `iss`.
//! - `APP_ORIGIN`: the web app's origin (`http://localhost:3000`). Session tokens minted for
//!   that app carry it as `azp`; it is also the origin CORS allows.
//! - `API_AUDIENCE`: this API's identifier, for RFC 9068 access tokens whose `aud` names it.
//!   At least one of `APP_ORIGIN` and `API_AUDIENCE` must be set.
//! - `LISTEN`: the address to listen on, `127.0.0.1:8081` by default.
//!
//! Run: `cargo run -p latchkey-verify --features actix --example actix_api` (see README.md).

use actix_cors::Cors;
use actix_web::{App, HttpResponse, HttpServer, dev::Server, http::header, web};
use latchkey_verify::{Auth, RequireAuth, Verifier, actix::LatchkeyAuth};
use serde_json::json;

/// The example's settings.
pub struct Config {
    pub issuer: String,
    pub app_origin: Option<String>,
    pub audience: Option<String>,
    pub listen: String,
}

impl Config {
    /// Reads the settings through `var` (the process environment in `main`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let non_empty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let issuer = non_empty("LATCHKEY_ISSUER").ok_or("LATCHKEY_ISSUER is required")?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            app_origin: non_empty("APP_ORIGIN"),
            audience: non_empty("API_AUDIENCE"),
            listen: non_empty("LISTEN").unwrap_or_else(|| "127.0.0.1:8081".to_owned()),
        })
    }

    pub fn verifier(&self) -> Result<Verifier, latchkey_verify::ConfigError> {
        let mut b = Verifier::builder(&self.issuer);
        if let Some(origin) = &self.app_origin {
            b = b.authorized_party(origin);
        }
        if let Some(aud) = &self.audience {
            b = b.audience(aud);
        }
        b.build()
    }
}

async fn public(auth: Auth) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": "hello",
        "sub": auth.claims.as_ref().map(|c| c.sub()),
    }))
}

async fn me(RequireAuth(claims): RequireAuth) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(claims)
}

/// Starts the API on `listener`; the returned server runs when awaited (or spawned).
pub fn server(config: &Config, listener: std::net::TcpListener) -> std::io::Result<Server> {
    let verifier = config.verifier().map_err(std::io::Error::other)?;
    let origin = config.app_origin.clone();
    Ok(HttpServer::new(move || {
        let mut cors = Cors::default()
            .allowed_methods(["GET"])
            .allowed_headers([header::AUTHORIZATION])
            .max_age(600);
        if let Some(o) = &origin {
            cors = cors.allowed_origin(o);
        }
        App::new()
            // Outermost: preflights are answered before authentication, and refusals carry
            // the CORS headers so the page can read the 401.
            .wrap(LatchkeyAuth::new(verifier.clone()).realm("actix-api"))
            .wrap(cors)
            .route("/api/public", web::get().to(public))
            .route("/api/me", web::get().to(me))
    })
    .workers(2)
    .listen(listener)?
    .run())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config::from_env(|k| std::env::var(k).ok()).map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(&config.listen)?;
    eprintln!("actix-api listening on http://{}", listener.local_addr()?);
    server(&config, listener)?.await
}
