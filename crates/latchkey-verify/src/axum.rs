//! axum (tower) integration: [`LatchkeyLayer`] verifies the request's token once and the
//! [`Auth`] / [`RequireAuth`] extractors read the result.
//!
//! ```ignore
//! let app = Router::new()
//!     .route("/me", get(|RequireAuth(claims): RequireAuth| async move { Json(claims) }))
//!     .layer(LatchkeyLayer::new(verifier));
//! ```

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum_core::{
    body::Body,
    extract::FromRequestParts,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Request, StatusCode, header, request::Parts};

use crate::{
    Verifier,
    auth::{self, Auth, AuthConfig, AuthRefusal, AuthState, RequireAuth},
};

/// The layer. Every request's token is verified here; by default the request continues
/// whatever the outcome and the extractors decide, while [`LatchkeyLayer::required`] refuses
/// requests without a valid token before they reach a handler.
#[derive(Clone)]
pub struct LatchkeyLayer {
    verifier: Verifier,
    config: AuthConfig,
    required: bool,
    realm: Arc<str>,
}

impl LatchkeyLayer {
    pub fn new(verifier: Verifier) -> Self {
        let config = AuthConfig::default();
        let realm = Arc::from(config.realm.as_str());
        Self { verifier, config, required: false, realm }
    }

    /// The cookie a session token may come in when no `Authorization` header is sent
    /// ([`crate::DEFAULT_COOKIE`] by default); `None` reads the header only.
    pub fn cookie(mut self, name: Option<&str>) -> Self {
        self.config.cookie = name.map(str::to_owned);
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenge (`api` by default).
    pub fn realm(mut self, realm: &str) -> Self {
        self.config.realm = realm.to_owned();
        self.realm = Arc::from(realm);
        self
    }

    /// Refuse every request without a valid token.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl<S> tower_layer::Layer<S> for LatchkeyLayer {
    type Service = LatchkeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LatchkeyService { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct LatchkeyService<S> {
    inner: S,
    layer: LatchkeyLayer,
}

impl<S, B> tower_service::Service<Request<B>> for LatchkeyService<S>
where
    S: tower_service::Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let headers = req.headers();
            let outcome = auth::authenticate(
                &layer.verifier,
                &layer.config,
                headers.get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes),
                headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
            )
            .await;
            let state = AuthState::new(outcome, layer.realm.clone(), &layer.verifier);
            if layer.required
                && let Err(refusal) = AuthRefusal::from_state(Some(&state))
            {
                return Ok(refusal.into_response());
            }
            req.extensions_mut().insert(state);
            inner.call(req).await
        })
    }
}

impl IntoResponse for AuthRefusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut res = Response::new(Body::from(self.body()));
        *res.status_mut() = status;
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.www_authenticate()) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Auth::from_state(parts.extensions.get::<AuthState>()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequireAuth {
    type Rejection = AuthRefusal;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        AuthRefusal::from_state(parts.extensions.get::<AuthState>()).map(RequireAuth)
    }
}
