//! The actix-web application: routes, middleware and the mapping of core errors to HTTP.
//! Handlers stay thin: parse the request, call a core service, render the result.

mod admin_api;
pub mod client_ip;
mod console;
pub mod csp;
pub mod csrf;
mod error;
pub mod extract;
pub mod http_middleware;
pub mod metrics;
mod oidc;
mod pages;
pub mod pending;
mod routes;
mod saml;
mod state;
mod upstream;

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::Server, middleware::from_fn, web};
use latchkey_core::Latchkey;

pub use error::ApiError;
pub use state::{AppState, session_cookie_name};

/// How often batched session activity is written to the store.
const ACTIVITY_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Binds and starts the server; the returned handle completes after a graceful shutdown
/// (SIGTERM/SIGINT or [`actix_web::dev::ServerHandle::stop`]).
pub fn start(core: Latchkey, listener: TcpListener) -> std::io::Result<Server> {
    let state = web::Data::new(AppState::new(core.clone()));
    let workers = core.settings.workers;
    let max_body = core.settings.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(
                web::JsonConfig::default().limit(max_body).error_handler(error::api::json_error),
            )
            .app_data(
                web::FormConfig::default().limit(max_body).error_handler(error::api::form_error),
            )
            .app_data(web::QueryConfig::default().error_handler(error::api::query_error))
            .app_data(web::PathConfig::default().error_handler(error::api::path_error))
            // The protocol endpoints first: actix tries resources in order, and the dynamic
            // paths of the admin API and pages cost a regex match each.
            .configure(oidc::configure)
            .configure(routes::configure)
            .configure(admin_api::configure)
            .configure(saml::configure)
            .configure(upstream::configure)
            .configure(console::configure)
            .configure(pages::configure)
            .default_service(web::to(error::not_found))
            .wrap(from_fn(http_middleware::body_limit))
            .wrap(http_middleware::security_headers(state.core.settings.secure_cookies()))
            .wrap(from_fn(http_middleware::observe))
    })
    .workers(workers)
    // The binary watches SIGTERM and SIGINT itself, from before the first connection
    // (see `serve`); actix-server would only start watching once its future first runs.
    .disable_signals()
    .shutdown_timeout(10)
    .client_request_timeout(Duration::from_secs(10))
    .listen(listener)?
    .run();

    let flusher = core.session_tokens.clone();
    let handle = server.handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ACTIVITY_FLUSH_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = flusher.flush_activity().await {
                tracing::warn!(error = %e, "could not write session activity");
            }
        }
    });
    let _ = handle;
    // The job outbox: outgoing mail and back-channel logout, whatever requests queued (and
    // anything left from before a restart or by a node that died).
    core.jobs.spawn();
    // Sessions that expire (absolute or idle) are marked so, and their clients notified.
    core.sessions.spawn_expiry_sweeper();
    Ok(server)
}

/// Runs until shut down, then writes pending session activity.
pub async fn serve(core: Latchkey, listener: TcpListener) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Watched before the server answers anything: a SIGTERM that arrives as soon as it does
    // (an orchestrator's stop right after a health check) still shuts it down gracefully,
    // where the default action would kill the process.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let server = start(core.clone(), listener)?;
    let handle = server.handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        }
        handle.stop(true).await;
    });
    server.await?;
    match core.session_tokens.flush_activity().await {
        Ok(n) => tracing::info!(sessions = n, "wrote pending session activity"),
        Err(e) => tracing::warn!(error = %e, "could not write session activity at shutdown"),
    }
    Ok(())
}

pub type SharedState = Arc<AppState>;
