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

use std::sync::Arc;

use super::{OAuthFailure, OAuthResult, OidcService, client_auth::Callers, issue, looks_like_jwt};
use crate::{
    Error,
    oauth::{GrantSubject, access_tokens::VerifiedToken},
};

fn invalid_token() -> OAuthFailure {
    OAuthError::new(ErrorCode::InvalidToken, "the access token is invalid").into()
}

impl OidcService {
    /// The claims about the user behind an access token, by the token's scopes. Refusals are
    /// `invalid_token` (the caller answers with a Bearer challenge).
    pub async fn userinfo(&self, access_token: &str) -> OAuthResult<Map<String, Value>> {
        let revision = self.grants.revision_pooled().await?;
        let live = self
            .verify_access_token(access_token, AudiencePolicy::Issuer, revision)
            .await?
            .ok_or_else(invalid_token)?;
        let scopes = access_token::scopes(&live.token.claims);
        // Client-credentials tokens have no session and no user: nothing to tell.
        let Some(subject) = live.subject.filter(|_| scopes.iter().any(|s| s == SCOPE_OPENID))
        else {
            let e = OAuthError::new(
                ErrorCode::InvalidToken,
                "the token does not carry the openid scope",
            );
            return Err(e.into());
        };
        Ok(claims::user_claims(&issue::subject_of(&subject.user), &scopes))
    }

    /// The client behind a client_credentials access token for Latchkey's own back-end APIs
    /// (`aud` the issuer) that carries `scope`, which the client must still be registered
    /// for. A bad token is `invalid_token`; a user's token, or a client's without the scope
    /// (in the token or any longer in its registration), is `insufficient_scope` (RFC 6750 §3.1:
    /// the caller answers with a Bearer challenge).
    pub async fn authorize_client(&self, access_token: &str, scope: &str) -> OAuthResult<String> {
        let revision = self.grants.revision().await?;
        let live = self
            .verify_access_token(access_token, AudiencePolicy::Issuer, revision)
            .await?
            .ok_or_else(invalid_token)?;
        let claims = &live.token.claims;
        let insufficient = || -> OAuthFailure {
            let what = format!("a client_credentials token with the {scope} scope is required");
            OAuthError::new(ErrorCode::InsufficientScope, what).into()
        };
        let client_id = match access_token::check_client_token(claims, scope) {
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
            if let Some(live) = self.verify_access_token(token, policy, revision).await? {
                return Ok(introspection::access_token(&live.token.claims));
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

    /// RFC 7009: a refresh token of the calling client revokes its whole grant (family), and
    /// with it the access tokens issued from it; an access token of the calling client is
    /// refused at introspection and userinfo from the next request on, on every node. Other
    /// clients' and unknown tokens are ignored (the endpoint answers 200 as the RFC requires).
    pub async fn revoke(&self, creds: &ClientCredentials, params: &Params) -> OAuthResult<()> {
        let revision = self.grants.revision().await?;
        let auth = self.authenticate(creds, Callers::Any, revision).await?;
        let token = params.require("token")?;
        auth.confirm(&self.grants).await?;
        if !looks_like_jwt(token) {
            self.grants.revoke_refresh(token, &auth.client.client_id).await?;
            return Ok(());
        }
        let Some(v) = self.grants.verified_access_token(token, revision).await? else {
            return Ok(());
        };
        let now = self.store.now();
        match access_token::revocable(v.typ.as_deref(), &v.claims, &self.issuer, now) {
            Ok(r) if r.client_id == auth.client.client_id => {
                self.grants.revoke_access_token(r.jti, r.client_id, r.exp).await?;
                tracing::info!(client_id = r.client_id, jti = r.jti, "access token revoked");
            }
            Ok(_) => tracing::info!("revocation of another client's access token ignored"),
            Err(reason) => tracing::debug!(?reason, "revocation of an unusable token ignored"),
        }
        Ok(())
    }

    /// One of our RFC 9068 access tokens, verified: signature against the published keys,
    /// `typ`, issuer, expiry and audience (`latchkey_oidc::access_token`), then (at once, not at
    /// expiry) that it was not revoked, its grant not revoked and the session behind it live.
    /// `Ok(None)` for a token that fails any of these. Each step after the signature is answered
    /// from state tagged with the store revision, so a token seen before costs no verification
    /// and no query until something changes.
    async fn verify_access_token(
        &self,
        token: &str,
        policy: AudiencePolicy,
        revision: i64,
    ) -> Result<Option<LiveToken>, Error> {
        let Some(v) = self.grants.verified_access_token(token, revision).await? else {
            return Ok(None);
        };
        let now = self.store.now();
        match access_token::check(v.typ.as_deref(), &v.claims, &self.issuer, now, policy) {
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
        // Every access token Latchkey issues has a jti; one without cannot be checked against
        // the revocation list, so it is refused.
        let Some(jti) = v.claim("jti") else { return Ok(None) };
        if self.grants.access_token_revoked(jti, revision).await? {
            return Ok(None);
        }
        if let Some(grant) = v.claim("grant_id")
            && self.grants.grant_revoked_at(grant, revision).await?
        {
            return Ok(None);
        }
        let subject = match v.claim("sid") {
            None => None,
            Some(sid) => {
                let subject = self.grants.grant_subject(sid, revision).await?;
                match subject.filter(|s| Some(s.user.id.as_str()) == v.claim("sub")) {
                    Some(s) if s.is_live(now) => Some(s),
                    _ => return Ok(None),
                }
            }
        };
        Ok(Some(LiveToken { token: v, subject }))
    }
}

/// An access token that is valid now, with the user and session behind it (none for a
/// client's own token).
struct LiveToken {
    token: Arc<VerifiedToken>,
    subject: Option<Arc<GrantSubject>>,
}
