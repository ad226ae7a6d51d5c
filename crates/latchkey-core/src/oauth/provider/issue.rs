//! Token issuance: the user behind a grant, and the ID and access tokens signed for it. Claims
//! are typed structs (`latchkey_oidc::claims`) signed as they are; a JSON value is built only
//! when a client's JWT template adds claims.

use std::sync::Arc;

use latchkey_oidc::{
    OAuthError, SCOPE_OPENID,
    access_token::TYP as ACCESS_TOKEN_TYP,
    claims::{self, AuthContext, Subject},
};
use serde::Serialize;
use serde_json::Value;

use super::{OAuthResult, OidcService};
use crate::{
    identity::model::{User, UserStatus},
    infra::{ids, jose::SigningAlg},
    oauth::{clients::Client, model::GrantSubject},
};

/// The `typ` of ID tokens.
const ID_TOKEN_TYP: &str = "JWT";

/// What a successful token request returns (RFC 6749 §5.1).
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub scopes: Vec<String>,
}

/// The user side of a grant: subject claims and the authentication event, current as of the
/// request's store revision.
pub(super) struct GrantContext {
    pub subject: Arc<GrantSubject>,
    amr: Vec<String>,
    revision: i64,
}

/// What a user grant issues tokens for.
pub(super) struct UserGrant<'a> {
    pub session_id: &'a str,
    pub auth_time: i64,
    pub scopes: Vec<String>,
    pub nonce: Option<&'a str>,
    pub refresh_token: Option<String>,
    /// The code (and refresh family) the tokens come from: access tokens carry it, so revoking
    /// the grant ends them at once.
    pub grant_id: &'a str,
    /// RFC 8707: the access token's audiences; empty for the issuer.
    pub audiences: &'a [String],
}

/// [`OidcService::grant_context`] for a subject already looked up (a refresh finds it while
/// rotating); `invalid_grant` when the user or session is no longer live.
pub(super) fn context_of(
    subject: Arc<GrantSubject>,
    revision: i64,
    now: i64,
) -> OAuthResult<GrantContext> {
    if subject.user.status != UserStatus::Active {
        return Err(OAuthError::invalid_grant("the user is not active").into());
    }
    if !subject.is_live(now) {
        return Err(OAuthError::invalid_grant("the session has ended").into());
    }
    let amr = subject.auth_method().amr();
    Ok(GrantContext { subject, amr, revision })
}

/// The user as claims see it.
pub(super) fn subject_of(u: &User) -> Subject<'_> {
    Subject {
        user_id: &u.id,
        email: &u.primary_email,
        email_verified: u.email_verified,
        name: u.name.as_deref(),
        given_name: u.given_name.as_deref(),
        family_name: u.family_name.as_deref(),
        picture: u.image_url.as_deref(),
        updated_at: u.updated_at,
    }
}

impl OidcService {
    /// The grant's user and session; `invalid_grant` when either is no longer live.
    pub(super) async fn grant_context(
        &self,
        user_id: &str,
        session_id: &str,
        revision: i64,
    ) -> OAuthResult<GrantContext> {
        let subject = self
            .grants
            .grant_subject(session_id, revision)
            .await?
            .filter(|s| s.user.id == user_id)
            .ok_or_else(|| OAuthError::invalid_grant("the session has ended"))?;
        context_of(subject, revision, self.store.now())
    }

    /// The access token, and with `openid` the ID token, of a user grant.
    pub(super) async fn issue_user_tokens(
        &self,
        client: &Client,
        ctx: &GrantContext,
        grant: UserGrant<'_>,
    ) -> OAuthResult<Issued> {
        // The session's upstream account must still be valid (EASIE).
        match self.gates.check(&ctx.subject.user.id, &ctx.subject.auth_method()).await {
            Ok(()) => {}
            Err(crate::Error::Unauthenticated(why)) => {
                return Err(OAuthError::invalid_grant(why).into());
            }
            Err(e) => return Err(e.into()),
        }
        let now = self.store.now();
        let alg = client.signing_alg();
        let auth = AuthContext {
            session_id: grant.session_id,
            auth_time: grant.auth_time,
            amr: ctx.amr.clone(),
            acr: ctx.subject.auth_method().acr(),
            org_id: ctx.subject.org_id(),
            org_role: ctx.subject.org_role.as_deref(),
        };
        let jti = ids::new_id(ids::ACCESS_TOKEN);
        let mut at_claims = claims::access_token(&claims::AccessTokenInput {
            issuer: &self.issuer,
            audience: &self.issuer,
            client_id: &client.client_id,
            subject: Some(&ctx.subject.user.id),
            auth: Some(&auth),
            scopes: &grant.scopes,
            jti: &jti,
            now,
            ttl_secs: client.access_token_ttl_secs,
        });
        at_claims.grant_id = Some(grant.grant_id);
        at_claims.set_audiences(grant.audiences);
        let template = client.access_token_template.as_deref();
        let access_token =
            self.sign_for_user(alg, ACCESS_TOKEN_TYP, &at_claims, template, ctx, &auth).await?;
        let id_token = if grant.scopes.iter().any(|s| s == SCOPE_OPENID) {
            let subject = subject_of(&ctx.subject.user);
            let id_claims = claims::id_token(&claims::IdTokenInput {
                issuer: &self.issuer,
                client_id: &client.client_id,
                subject: &subject,
                auth: &auth,
                scopes: &grant.scopes,
                nonce: grant.nonce,
                access_token: Some(&access_token),
                alg: alg.as_str(),
                now,
                ttl_secs: client.id_token_ttl_secs,
            });
            let template = client.id_token_template.as_deref();
            Some(self.sign_for_user(alg, ID_TOKEN_TYP, &id_claims, template, ctx, &auth).await?)
        } else {
            None
        };
        Ok(Issued {
            access_token,
            expires_in: client.access_token_ttl_secs,
            id_token,
            refresh_token: grant.refresh_token,
            scopes: grant.scopes,
        })
    }

    /// Signs a user token's claims. Without a template the typed claims are signed as they are
    /// (no JSON value is built); with one, the template is rendered for the grant's session and
    /// organisation and its claims are added, the token's own always winning
    /// (`latchkey_oidc::claims::merge_template_claims`). A template that cannot be rendered fails
    /// the request rather than issue a token without the claims the client relies on.
    async fn sign_for_user<T: Serialize>(
        &self,
        alg: SigningAlg,
        typ: &str,
        claims: &T,
        template: Option<&str>,
        ctx: &GrantContext,
        auth: &AuthContext<'_>,
    ) -> OAuthResult<String> {
        let Some(name) = template else {
            return Ok(self.grants.sign_serialized_at(alg, typ, claims, ctx.revision).await?);
        };
        let mut value: Value = serde_json::to_value(claims).map_err(crate::Error::from)?;
        let extra = self.templates.render_for_session(name, auth.session_id, auth.org_id).await?;
        claims::merge_template_claims(&mut value, extra);
        Ok(self.grants.sign_at(alg, typ, &value, ctx.revision).await?)
    }

    /// A client_credentials access token: no user, `sub` is the client (RFC 9068 §2.2), `aud`
    /// the requested registered audiences or the issuer.
    pub(super) async fn issue_client_token(
        &self,
        client: &Client,
        scopes: Vec<String>,
        audiences: &[String],
        revision: i64,
    ) -> OAuthResult<Issued> {
        let jti = ids::new_id(ids::ACCESS_TOKEN);
        let mut claims = claims::access_token(&claims::AccessTokenInput {
            issuer: &self.issuer,
            audience: &self.issuer,
            client_id: &client.client_id,
            subject: None,
            auth: None,
            scopes: &scopes,
            jti: &jti,
            now: self.store.now(),
            ttl_secs: client.access_token_ttl_secs,
        });
        claims.set_audiences(audiences);
        let alg = client.signing_alg();
        let access_token =
            self.grants.sign_serialized_at(alg, ACCESS_TOKEN_TYP, &claims, revision).await?;
        Ok(Issued {
            access_token,
            expires_in: client.access_token_ttl_secs,
            id_token: None,
            refresh_token: None,
            scopes,
        })
    }
}
