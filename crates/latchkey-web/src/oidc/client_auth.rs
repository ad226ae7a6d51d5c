//! Client authentication at the token, introspection and revocation endpoints: secrets
//! (basic/post), `private_key_jwt` (RFC 7523) with a `jti` replay check, and `none` for public
//! clients. Every failure is `invalid_client`; the reason is logged, not sent.

use std::sync::Arc;

use actix_web::{HttpRequest, http::header};
use latchkey_core::oauth::clients::{self, Client};
use latchkey_oidc::{
    OAuthError,
    params::Params,
    token::{ClientCredentials, client_credentials},
};
use serde_json::Value;

use crate::{AppState, error::oauth::OidcError};

/// Longest accepted assertion lifetime: RFC 7523 assertions are meant to be single-shot.
const MAX_ASSERTION_LIFETIME_SECS: i64 = 600;

fn reject(reason: &str) -> OAuthError {
    tracing::info!(reason, "client authentication failed");
    OAuthError::invalid_client("client authentication failed")
}

/// Authenticates the calling client. `allow_public` is false where RFC 7662 wants a
/// confidential caller (introspection). `revision` is the store revision read after the request
/// arrived: clients and their secrets come from memory unless they changed since.
pub async fn authenticate(
    req: &HttpRequest,
    params: &Params,
    state: &AppState,
    allow_public: bool,
    revision: i64,
) -> Result<Arc<Client>, OidcError> {
    let authorization =
        req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("\u{0}"));
    let creds = client_credentials(authorization, params).map_err(OidcError::Json)?;
    let core = &state.core;
    let client = match &creds {
        ClientCredentials::Basic { client_id, secret }
        | ClientCredentials::Post { client_id, secret } => {
            let client = core
                .clients
                .find_at(client_id, revision)
                .await?
                .ok_or_else(|| OidcError::Json(reject("unknown client")))?;
            if client.token_endpoint_auth_method != creds.method() {
                return Err(OidcError::Json(reject("auth method not registered for client")));
            }
            if !core.clients.verify_secret_at(client_id, secret, revision).await? {
                return Err(OidcError::Json(reject("wrong client secret")));
            }
            client
        }
        ClientCredentials::None { client_id } => {
            let client = core
                .clients
                .find_at(client_id, revision)
                .await?
                .ok_or_else(|| OidcError::Json(reject("unknown client")))?;
            if !client.is_public() || client.token_endpoint_auth_method != clients::AUTH_NONE {
                return Err(OidcError::Json(reject("confidential client without credentials")));
            }
            if !allow_public {
                return Err(OidcError::Json(reject("public clients may not call this endpoint")));
            }
            client
        }
        ClientCredentials::Assertion { client_id, assertion } => {
            verify_assertion(state, client_id.as_deref(), assertion, revision).await?
        }
    };
    Ok(client)
}

/// RFC 7523 §3: iss = sub = client_id, aud = our token endpoint (or the issuer), exp in the
/// near future, a fresh `jti`, signed by one of the client's registered keys with an
/// asymmetric algorithm (`alg: none` and HMAC never verify).
async fn verify_assertion(
    state: &AppState,
    form_client_id: Option<&str>,
    assertion: &str,
    revision: i64,
) -> Result<Arc<Client>, OidcError> {
    let core = &state.core;
    let err = |r: &str| OidcError::Json(reject(r));
    // Read the claimed issuer to find the client's keys; nothing is trusted before verification.
    let unverified = assertion
        .split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| err("malformed assertion"))?;
    let claimed = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| err("assertion without iss"))?;
    if form_client_id.is_some_and(|id| id != claimed) {
        return Err(err("client_id does not match the assertion"));
    }
    let client =
        core.clients.find_at(claimed, revision).await?.ok_or_else(|| err("unknown client"))?;
    if client.token_endpoint_auth_method != clients::AUTH_PRIVATE_KEY_JWT {
        return Err(err("client is not registered for private_key_jwt"));
    }
    let jwks = client.jwks.clone().ok_or_else(|| err("client has no keys"))?;
    let (_, claims) = latchkey_core::infra::jose::verify_with_jwks(assertion, &jwks)
        .map_err(|_| err("assertion signature not valid"))?;
    let now = state.core.clock.now();
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(&client.client_id) || s("sub") != Some(&client.client_id) {
        return Err(err("assertion iss/sub is not the client"));
    }
    let issuer = &core.settings.public_url;
    let token_endpoint = format!("{}/oauth2/token", issuer.trim_end_matches('/'));
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == &token_endpoint || a == issuer,
        Some(Value::Array(list)) => {
            list.iter().any(|a| a.as_str().is_some_and(|a| a == token_endpoint || a == issuer))
        }
        _ => false,
    };
    if !aud_ok {
        return Err(err("assertion audience is not this server"));
    }
    let exp =
        claims.get("exp").and_then(Value::as_i64).ok_or_else(|| err("assertion without exp"))?;
    if exp <= now || exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(err("assertion expired or too long-lived"));
    }
    if claims.get("nbf").and_then(Value::as_i64).is_some_and(|nbf| nbf > now + 30) {
        return Err(err("assertion not yet valid"));
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| err("assertion without jti"))?;
    if !core.oauth.remember_jti(&client.client_id, jti, exp).await? {
        return Err(err("assertion replayed (jti seen before)"));
    }
    Ok(client)
}
