mod health;
mod jwks;
mod metrics;
mod orgs;
mod sdk;
mod session_token;
mod upstream_tokens;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/healthz").route(web::get().to(health::healthz)))
        .service(web::resource("/v1/me").route(web::get().to(session_token::me)))
        .service(web::resource("/readyz").route(web::get().to(health::readyz)))
        .service(web::resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(web::resource("/.well-known/jwks.json").route(web::get().to(jwks::jwks)))
        .service(
            web::resource("/v1/session/token")
                .wrap(actix_web::middleware::from_fn(sdk::cors_on_errors))
                .route(web::post().to(session_token::mint))
                .route(web::method(actix_web::http::Method::OPTIONS).to(session_token::preflight)),
        )
        .service(
            web::resource("/v1/session/token/{template}")
                .wrap(actix_web::middleware::from_fn(sdk::cors_on_errors))
                .route(web::post().to(session_token::mint_template))
                .route(web::method(actix_web::http::Method::OPTIONS).to(session_token::preflight)),
        )
        .configure(orgs::configure)
        .configure(sdk::configure)
        .configure(upstream_tokens::configure);
}
