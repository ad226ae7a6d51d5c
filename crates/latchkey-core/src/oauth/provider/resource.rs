//! What programs ask about tokens: userinfo (OIDC Core §5.3), introspection (RFC 7662) and
//! revocation (RFC 7009), with the verification of Latchkey's own access tokens they share. A
//! token that is not valid is a refusal (`invalid_token`, `active: false`); a store that cannot
//! answer is a server error, never reported as a bad token.

use latchkey_oidc::{
    ErrorCode, GrantType, OAuthError, SCOPE_OPENID,
    access_token::{self, Audience, AudiencePolicy, ClientTokenRefusal},
    claims, introspection,
    params::Params,
    token::ClientCredentials,
};
use serde_json::{Map, Value};

use super::{OAuthFailure, OAuthResult, OidcService, client_auth::Callers, issue, looks_like_jwt};
use crate::{Error, identity::model::UserStatus};

fn invalid_token() -> OAuthFailure {
    OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid").into()
}

impl OidcService {
    /// The claims about the user behind an access token, by the token's scopes. Refusals are
    /// `invalid_token` (the caller answers with a Bearer challenge).
    pub async fn userinfo(&self, access_token: &str) -> OAuthResult<Map<String, Value>> {
        let revision = self.grants.revision().await?;
        let claims = self
            .verify_access_token(access_token, AudiencePolicy::Issuer, revision)
            .await?
            .ok_or_else(invalid_token)?;
        let scopes = access_token::scopes(&claims);
        // Client-credentials tokens have no sid and no user: nothing to tell.
        if !scopes.iter().any(|s| s == SCOPE_OPENID) || !claims.contains_key("sid") {
            let e = OAuthError::new(
                ErrorCode::InvalidToken,
                "the token does not carry the openid scope",
            );
            return Err(e.into());
        }
        let user_id = claims.get("sub").and_then(Value::as_str).ok_or_else(invalid_token)?;
        let user = match self.users.get(user_id).await {
            Ok(u) => u,
            Err(Error::NotFound(_)) => return Err(invalid_token()),
            Err(e) => return Err(e.into()),
        };
        if user.status != UserStatus::Active {
            return Err(invalid_token());
        }
        Ok(claims::user_claims(&issue::subject_of(&user), &scopes))
    }

    /// The client behind a client_credentials access token for Latchkey's own back-end APIs
    /// (`aud` the issuer) that carries `scope`, which the client must still be registered
    /// for. A bad token is `invalid_token`; a user's token, or a client's without the scope
    /// (in the token or any longer in its registration), is `insufficient_scope` (RFC 6750 §3.1:
    /// the caller answers with a Bearer challenge).
    pub async fn authorize_client(&self, access_token: &str, scope: &str) -> OAuthResult<String> {
        let revision = self.grants.revision().await?;
        let claims = self
            .verify_access_token(access_token, AudiencePolicy::Issuer, revision)
            .await?
            .ok_or_else(invalid_token)?;
        let insufficient = || -> OAuthFailure {
            let what = format!("a client_credentials token with the {scope} scope is required");
            OAuthError::new(ErrorCode::InsufficientScope, what).into()
        };
        let client_id = match access_token::check_client_token(&claims, scope) {
            Ok(c) => c,
            Err(ClientTokenRefusal::NotAClientToken | ClientTokenRefusal::ScopeMissing) => {
                return Err(insufficient());
            }
        };
        let Some(client) = self.clients.find_at(client_id, revision).await? else {
            return Err(invalid_token());
        };
        if !client.allowed_scopes.iter().any(|s| s == scope)
            || !client.allows_grant(GrantType::ClientCredentials)
        {
            return Err(insufficient());
        }
        Ok(client.client_id.clone())
    }

    /// RFC 7662 for a confidential client: the token's facts while it is active, else
    /// `{"active": false}` whatever the reason.
    pub async fn introspect(
        &self,
        creds: &ClientCredentials,
        params: &Params,
    ) -> OAuthResult<Value> {
        let revision = self.grants.revision().await?;
        let auth = self.authenticate(creds, Callers::Confidential, revision).await?;
        let token = params.require("token")?;
        auth.confirm(&self.grants).await?;
        if looks_like_jwt(token) {
            let policy = AudiencePolicy::IssuerOrRegistered;
            if let Some(c) = self.verify_access_token(token, policy, revision).await? {
                return Ok(introspection::access_token(&c));
            }
        } else if let Some((grant, exp)) = self.grants.live_refresh(token).await? {
            return Ok(introspection::refresh_token(&introspection::RefreshToken {
                scope: &grant.scopes.join(" "),
                client_id: &grant.client_id,
                sub: &grant.user_id,
                exp,
                iss: &self.issuer,
                sid: &grant.session_id,
            }));
        }
        Ok(introspection::inactive())
    }

    /// RFC 7009: a refresh token of the calling client revokes its whole grant (family); other
    /// clients' and unknown tokens are ignored. Access tokens are short-lived JWTs that end with
    /// their session or grant, so revoking one alone is not supported (the endpoint answers 200
    /// as the RFC allows).
    pub async fn revoke(&self, creds: &ClientCredentials, params: &Params) -> OAuthResult<()> {
        let revision = self.grants.revision().await?;
        let auth = self.authenticate(creds, Callers::Any, revision).await?;
        let token = params.require("token")?;
        auth.confirm(&self.grants).await?;
        if !looks_like_jwt(token) {
            self.grants.revoke_refresh(token, &auth.client.client_id).await?;
        }
        Ok(())
    }

    /// One of our RFC 9068 access tokens, verified: signature against the published keys,
    /// `typ`, issuer, expiry and audience (`latchkey_oidc::access_token`), then (at once, not at
    /// expiry) that the session behind it is live and its grant not revoked. `Ok(None)` for a
    /// token that fails any of these.
    async fn verify_access_token(
        &self,
        token: &str,
        policy: AudiencePolicy,
        revision: i64,
    ) -> Result<Option<Map<String, Value>>, Error> {
        let Some((typ, claims)) = self.grants.verify_own_at(token, revision).await? else {
            return Ok(None);
        };
        let now = self.store.now();
        match access_token::check(typ.as_deref(), &claims, &self.issuer, now, policy) {
            Ok(Audience::Issuer) => {}
            Ok(Audience::IfRegistered { client_id, audiences }) => {
                let client = self.clients.find_at(client_id, revision).await?;
                if !client.is_some_and(|c| access_token::all_registered(&audiences, &c.audiences)) {
                    return Ok(None);
                }
            }
            Err(reason) => {
                tracing::debug!(?reason, "access token refused");
                return Ok(None);
            }
        }
        if let Some(sid) = claims.get("sid").and_then(Value::as_str)
            && !self.grants.session_is_active(sid).await?
        {
            return Ok(None);
        }
        if let Some(grant) = claims.get("grant_id").and_then(Value::as_str)
            && self.grants.grant_revoked(grant).await?
        {
            return Ok(None);
        }
        Ok(Some(claims))
    }
}
