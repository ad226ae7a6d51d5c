//! actix-web integration: the [`LatchkeyAuth`] middleware verifies the request's token once and
//! the [`Auth`] / [`RequireAuth`] extractors read the result.
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, web};
//! use latchkey_verify::{Auth, RequireAuth, Verifier, actix::LatchkeyAuth};
//!
//! # fn app(verifier: Verifier) {
//! let app = App::new()
//!     .wrap(LatchkeyAuth::new(verifier))
//!     .route("/me", web::get().to(|RequireAuth(claims): RequireAuth| async move {
//!         HttpResponse::Ok().json(claims)
//!     }))
//!     .route("/hello", web::get().to(|auth: Auth| async move {
//!         match auth.claims {
//!             Some(c) => format!("hello {}", c.sub()),
//!             None => "hello stranger".to_owned(),
//!         }
//!     }));
//! # }
//! ```

use std::{
    future::{Ready, ready},
    rc::Rc,
    sync::Arc,
};

use actix_web::{
    FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError,
    body::EitherBody,
    dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::{StatusCode, header},
};
use futures_util::future::LocalBoxFuture;

use crate::{
    Verifier,
    auth::{self, Auth, AuthConfig, AuthRefusal, AuthState, RequireAuth},
};

/// The middleware. Every request's token is verified here; by default the request continues
/// whatever the outcome and the extractors decide, while [`LatchkeyAuth::required`] refuses
/// requests without a valid token before they reach a handler.
#[derive(Clone)]
pub struct LatchkeyAuth {
    verifier: Verifier,
    config: AuthConfig,
    required: bool,
}

impl LatchkeyAuth {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier, config: AuthConfig::default(), required: false }
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
        self
    }

    /// Refuse every request without a valid token (for a scope of protected routes).
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
}

impl ResponseError for AuthRefusal {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header((header::WWW_AUTHENTICATE, self.www_authenticate()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/json")
            .body(self.body())
    }
}

impl<S, B> Transform<S, ServiceRequest> for LatchkeyAuth
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = LatchkeyAuthMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let realm: Arc<str> = Arc::from(self.config.realm.as_str());
        ready(Ok(LatchkeyAuthMiddleware { service: Rc::new(service), auth: self.clone(), realm }))
    }
}

pub struct LatchkeyAuthMiddleware<S> {
    service: Rc<S>,
    auth: LatchkeyAuth,
    realm: Arc<str>,
}

impl<S, B> Service<ServiceRequest> for LatchkeyAuthMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let auth = self.auth.clone();
        let realm = self.realm.clone();
        Box::pin(async move {
            let headers = req.headers();
            let outcome = auth::authenticate(
                &auth.verifier,
                &auth.config,
                headers.get_all(header::AUTHORIZATION).map(|v| v.as_bytes()),
                headers.get_all(header::COOKIE).map(|v| v.as_bytes()),
            )
            .await;
            let state = AuthState::new(outcome, realm, &auth.verifier);
            if auth.required
                && let Err(refusal) = AuthRefusal::from_state(Some(&state))
            {
                let res = refusal.error_response();
                return Ok(req.into_response(res).map_into_right_body());
            }
            req.extensions_mut().insert(state);
            service.call(req).await.map(ServiceResponse::map_into_left_body)
        })
    }
}

impl FromRequest for Auth {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Auth::from_state(req.extensions().get::<AuthState>())))
    }
}

impl FromRequest for RequireAuth {
    type Error = AuthRefusal;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(AuthRefusal::from_state(req.extensions().get::<AuthState>()).map(RequireAuth))
    }
}
