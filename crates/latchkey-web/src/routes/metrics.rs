use actix_web::{HttpResponse, web};

use crate::{ApiError, AppState};

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.core.sessions.count_by_status().await?;
    state.metrics.set_session_counts(&counts);
    let expiring = state.core.saml.expiring_certificates().await?;
    state.metrics.set_saml_figures(state.core.saml.metadata_refresh_failures(), expiring);
    state.metrics.set_upstream_unavailable(state.core.upstream.unavailable_count());
    let body = state.metrics.render().map_err(|_| ApiError::internal())?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}
