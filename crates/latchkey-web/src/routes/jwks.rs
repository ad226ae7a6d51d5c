use actix_web::{HttpResponse, web};

use crate::{ApiError, AppState};

/// Active keys and retired ones whose tokens may still be valid.
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let revision = state.core.store.current_revision().await?;
    let set = state.core.keys.jwks_at(revision).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header(("Cache-Control", "public, max-age=60"))
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .json(&*set))
}
