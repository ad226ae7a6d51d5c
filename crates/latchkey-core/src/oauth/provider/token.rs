//! The token endpoint (RFC 6749 §3.2): authorization_code, refresh_token and
//! client_credentials. Each grant checks everything the request can be refused for first; only
//! then does it write (the assertion's `jti`, the code's use, the refresh token's rotation) and
//! sign. The store revision is read once per request and used for every cached lookup.

use latchkey_oidc::{
    ErrorCode, GrantType, OAuthError, SCOPE_OFFLINE_ACCESS,
    params::Params,
    scope,
    token::{self, ClientCredentials, CodeBinding, TokenRequest},
};

use super::{
    OAuthResult, OidcService,
    client_auth::{Callers, ClientAuth},
    issue::{Issued, UserGrant, context_of},
};
use crate::oauth::model::{RefreshGrant, RefreshOutcome};

fn unauthorized() -> OAuthError {
    OAuthError::new(ErrorCode::UnauthorizedClient, "grant type not allowed for this client")
}

fn code_refused() -> OAuthError {
    OAuthError::invalid_grant("the code is invalid or was already used")
}

impl OidcService {
    /// One token request, from the client's credentials and the form's parameters.
    pub async fn token(&self, creds: &ClientCredentials, params: &Params) -> OAuthResult<Issued> {
        let revision = self.grants.revision().await?;
        let auth = self.authenticate(creds, Callers::Any, revision).await?;
        let request = token::parse_token_request(params)?;
        if !auth.client.allows_grant(request.grant_type()) {
            return Err(unauthorized().into());
        }
        match request {
            TokenRequest::AuthorizationCode { code, redirect_uri, code_verifier, audiences } => {
                let presented = Presented { code: &code, redirect_uri: &redirect_uri, audiences };
                self.code_grant(auth, presented, code_verifier.as_deref(), revision).await
            }
            TokenRequest::RefreshToken { refresh_token, scopes, audiences } => {
                let requested = Requested { scopes, audiences };
                self.refresh_grant(auth, &refresh_token, requested, revision).await
            }
            TokenRequest::ClientCredentials { scopes, audiences } => {
                let client = &auth.client;
                if client.is_public() {
                    return Err(unauthorized().into());
                }
                scope::check_client_credentials(&scopes, &client.allowed_scopes)?;
                // RFC 8707: only audiences registered for the client; none keeps the issuer.
                token::check_audiences(&audiences, &client.audiences)?;
                auth.confirm(&self.grants).await?;
                self.issue_client_token(client, scopes, &audiences, revision).await
            }
        }
    }

    /// RFC 6749 §4.1.3. The code's client, redirect URI, PKCE verifier and expiry, and the
    /// session behind it, are checked before the code is claimed: a refused request leaves an
    /// unused code usable by its client. A used code presented again is a replay (RFC 6749
    /// §4.1.2): refused, and what its first use issued is revoked.
    async fn code_grant(
        &self,
        auth: ClientAuth,
        presented: Presented<'_>,
        code_verifier: Option<&str>,
        revision: i64,
    ) -> OAuthResult<Issued> {
        let Some(code) = self.grants.find_code(presented.code).await? else {
            return Err(code_refused().into());
        };
        if code.used {
            auth.confirm(&self.grants).await?;
            self.grants.code_replayed(&code).await?;
            return Err(code_refused().into());
        }
        if code.revoked {
            return Err(code_refused().into());
        }
        let binding = CodeBinding {
            client_id: &code.client_id,
            redirect_uri: &code.redirect_uri,
            code_challenge: code.code_challenge.as_deref(),
            expires_at: code.expires_at,
        };
        let (client_id, now) = (&auth.client.client_id, self.store.now());
        token::check_code(&binding, client_id, presented.redirect_uri, code_verifier, now)?;
        let (registered, issuer) = (&auth.client.audiences, &*self.issuer);
        let audiences =
            token::user_token_audiences(&presented.audiences, &code.resources, registered, issuer)?;
        let ctx = self.grant_context(&code.user_id, &code.session_id, revision).await?;
        auth.confirm(&self.grants).await?;
        // One caller wins the code; one that loses raced a replay of it.
        if !self.grants.claim_code(&code.id).await? {
            self.grants.code_replayed(&code).await?;
            return Err(code_refused().into());
        }
        let client = &auth.client;
        let refresh_token = if code.scopes.iter().any(|s| s == SCOPE_OFFLINE_ACCESS)
            && client.allows_grant(GrantType::RefreshToken)
        {
            let grant = RefreshGrant {
                family_id: code.id.clone(),
                client_id: client.client_id.clone(),
                user_id: code.user_id.clone(),
                session_id: code.session_id.clone(),
                scopes: code.scopes.clone(),
                auth_time: code.auth_time,
                // What the authorization request named, else what this exchange named.
                resources: if code.resources.is_empty() {
                    audiences.clone()
                } else {
                    code.resources.clone()
                },
            };
            Some(self.grants.issue_refresh(&grant, client.refresh_token_ttl_secs).await?)
        } else {
            None
        };
        let grant = UserGrant {
            session_id: &code.session_id,
            auth_time: code.auth_time,
            scopes: code.scopes.clone(),
            nonce: code.nonce.as_deref(),
            refresh_token,
            grant_id: &code.id,
            audiences: &audiences,
        };
        let issued = self.issue_user_tokens(client, &ctx, grant).await?;
        // A replay of the code racing this exchange revokes what we just issued.
        if !self.grants.settle_grant(&code.id).await? {
            return Err(OAuthError::invalid_grant("the code was used twice").into());
        }
        Ok(issued)
    }

    /// RFC 6749 §6, rotating the refresh token on every use. A request that names `scope` has
    /// it checked against the token's grant before the rotation (one read of the token's
    /// scopes), so a refused request leaves the token usable and its grant alive; without
    /// `scope` the rotation is the only statement.
    async fn refresh_grant(
        &self,
        auth: ClientAuth,
        refresh_token: &str,
        requested: Requested,
        revision: i64,
    ) -> OAuthResult<Issued> {
        let client = &auth.client;
        let (registered, issuer) = (&client.audiences, &*self.issuer);
        if let Some((scopes, resources)) =
            self.grants.refresh_scopes(refresh_token, &client.client_id).await?
        {
            if let Some(wanted) = &requested.scopes {
                scope::check_within(wanted, &scopes)?;
            }
            token::refresh_token_audiences(&requested.audiences, &resources, registered, issuer)?;
        }
        auth.confirm(&self.grants).await?;
        let ttl = client.refresh_token_ttl_secs;
        let rotated = self.grants.rotate_refresh(refresh_token, &client.client_id, ttl, revision);
        let (grant, token, subject) = match rotated.await? {
            RefreshOutcome::Rotated { grant, token, subject } => (grant, token, subject),
            RefreshOutcome::Invalid(reason) => return Err(OAuthError::invalid_grant(reason).into()),
            RefreshOutcome::Reused => {
                let reason = "refresh token reuse detected; the grant is revoked";
                return Err(OAuthError::invalid_grant(reason).into());
            }
        };
        // Checked above for a live token; the family's scopes and resources never change as it
        // rotates.
        let audiences = token::refresh_token_audiences(
            &requested.audiences,
            &grant.resources,
            registered,
            issuer,
        )?;
        let scopes = scope::narrow_on_refresh(requested.scopes, grant.scopes)?;
        let ctx = context_of(subject, revision, self.store.now())?;
        let grant = UserGrant {
            session_id: &grant.session_id,
            auth_time: grant.auth_time,
            scopes,
            nonce: None,
            refresh_token: Some(token),
            grant_id: &grant.family_id,
            audiences: &audiences,
        };
        self.issue_user_tokens(client, &ctx, grant).await
    }
}

/// What an authorization_code request presents besides the verifier.
struct Presented<'a> {
    code: &'a str,
    redirect_uri: &'a str,
    /// RFC 8707 `resource` / `audience` values.
    audiences: Vec<String>,
}

/// What a refresh_token request narrows the grant to.
struct Requested {
    scopes: Option<Vec<String>>,
    /// RFC 8707 `resource` / `audience` values.
    audiences: Vec<String>,
}
