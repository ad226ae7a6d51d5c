use actix_web::{HttpResponse, web};

use crate::{ApiError, AppState};

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.core.sessions.count_by_status().await?;
    state.metrics.set_session_counts(&counts);
    let body = state.metrics.render().map_err(|_| ApiError::internal())?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body))
}
