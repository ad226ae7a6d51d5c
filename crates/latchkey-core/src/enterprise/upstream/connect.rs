//! A user's connected Google and Microsoft accounts: incremental authorisation (more scopes
//! for an account already connected), the list `/account` shows, and disconnecting.
//!
//! Asking for more access is a new authorization request at the provider, for the scopes the
//! grant holds plus the requested ones, carrying `connect_user_id` in its pending request. Its
//! answer goes through the sign-in callback's checks (state, PKCE, nonce, ID token, tenant
//! rules), then must come from the very identity of the user's grant, since another account's
//! tokens must never land in this user's vault; the grant takes the new tokens and the scopes
//! the provider says it granted. No session is started: the user is signed in already.
//!
//! Disconnecting forgets the tokens (the sign-in link stays: the user may still sign in with
//! the provider, which connects it again) and, at Google, revokes the grant upstream on a best
//! effort basis. An EASIE grant cannot be disconnected: the organisation requires it for
//! deprovisioning.

use std::time::Duration;

use latchkey_easie::{IdentityKey, recheck::IdentitySnapshot};
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, Scope, core::CoreAuthenticationFlow};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    Directory, REQUEST_TTL_SECS, UpstreamService,
    flow::{Refusal, identity_key_parts},
    provider::UpstreamError,
    tokens::scopes_of,
    vault::{self, GrantWrite, IssuedTokens},
};
use crate::{
    Error, Result,
    identity::method::Upstream,
    infra::{
        audit::{self, Actor, ClientInfo},
        crypto,
        entity::{external_identity, upstream_grant},
    },
    sign_in::pending::{BrowserBinding, PendingKind},
};

/// Most scopes one request may add.
pub const MAX_REQUESTED_SCOPES: usize = 20;
/// Longest `scope` parameter accepted.
pub const MAX_SCOPE_PARAM_LEN: usize = 1024;

/// The scopes a user asks to add (`scope`, space-separated), deduplicated in request order.
/// Each is an RFC 6749 scope token (printable ASCII without space, `"` or `\`); at least one,
/// at most [`MAX_REQUESTED_SCOPES`], the whole at most [`MAX_SCOPE_PARAM_LEN`] characters.
pub fn parse_requested_scopes(raw: &str) -> Result<Vec<String>> {
    if raw.len() > MAX_SCOPE_PARAM_LEN {
        return Err(Error::invalid(
            "scope",
            format!("is longer than {MAX_SCOPE_PARAM_LEN} characters"),
        ));
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in raw.split(' ').filter(|s| !s.is_empty()) {
        if !s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)) {
            return Err(Error::invalid("scope", "holds a character a scope may not contain"));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(Error::invalid("scope", "names no scope"));
    }
    if scopes.len() > MAX_REQUESTED_SCOPES {
        return Err(Error::invalid(
            "scope",
            format!("names more than {MAX_REQUESTED_SCOPES} scopes"),
        ));
    }
    Ok(scopes)
}

/// What the authorization request asks for besides `openid` (which the client adds): the
/// sign-in's own scopes, those the grant holds, and the requested ones. Google grants offline
/// access through `access_type`, not a scope; Microsoft needs `offline_access` to keep issuing
/// refresh tokens.
pub fn scopes_to_request(provider: Upstream, granted: &[String], extra: &[String]) -> Vec<String> {
    let own: &[&str] = match provider {
        Upstream::Google => &["email", "profile"],
        Upstream::Microsoft => &["email", "profile", "offline_access"],
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in own.iter().copied().chain(granted.iter().chain(extra).map(String::as_str)) {
        let skip = s == "openid" || (provider == Upstream::Google && s == "offline_access");
        if !skip && !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_owned());
        }
    }
    scopes
}

/// A connected account as `/account` lists it.
#[derive(Debug, Clone)]
pub struct ConnectedAccount {
    pub provider: Upstream,
    /// The address the provider gave for the identity, when it gave one.
    pub email: Option<String>,
    pub scopes: Vec<String>,
    /// The EASIE connection the account belongs to: the organisation requires it.
    pub connection_id: Option<String>,
}

/// Revoking a disconnected grant at the provider: sent after the disconnect is committed,
/// never holding it up.
pub struct UpstreamRevocation {
    directory: Directory,
    token: Zeroizing<String>,
}

impl UpstreamRevocation {
    /// Sends the revocation (RFC 7009) to Google's `revocation_endpoint`; a failure is only
    /// logged: the tokens are forgotten here whatever Google answers.
    pub async fn send(self) {
        if let Err(e) = self.try_send().await {
            tracing::info!(error = %e, "upstream revocation failed");
        }
    }

    async fn try_send(&self) -> std::result::Result<(), String> {
        let settings = self.directory.settings();
        let url = format!("{}/.well-known/openid-configuration", settings.google_issuer);
        let http = self.directory.http();
        let doc: serde_json::Value = http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let Some(endpoint) = doc.get("revocation_endpoint").and_then(|v| v.as_str()) else {
            return Err("the provider names no revocation endpoint".into());
        };
        let (id, secret) =
            self.directory.credentials(Upstream::Google).map_err(|e| e.to_string())?;
        // RFC 6749 §2.3.1: the credentials are form-encoded before the Basic encoding.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        http.post(endpoint)
            .basic_auth(enc(id.as_str()), Some(enc(secret.secret())))
            .form(&[("token", self.token.as_str())])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl UpstreamService {
    /// The provider's authorization URL asking the signed-in user's connected account for
    /// `requested` scopes on top of those it granted (see the module docs).
    pub async fn start_connect(
        &self,
        user_id: &str,
        provider: Upstream,
        requested: &[String],
        browser: &BrowserBinding,
    ) -> Result<String> {
        let grant = vault::find(self.store.db(), user_id, provider).await?;
        let grant = grant.ok_or_else(|| Error::NotFound("connected account".into()))?;
        if grant.status != vault::STATUS_ACTIVE && grant.connection_id.is_some() {
            return Err(Error::Forbidden(
                "Sign in through your organisation again before asking for more access".into(),
            ));
        }
        let snapshot = vault::snapshot_from_json(&grant.snapshot)?;
        let target = Self::target_of(&grant, &snapshot)?;
        let client = self.directory.client(&target, &self.redirect_uri(provider)).await;
        let client = client.map_err(|e| self.connect_error(e))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = crypto::random_secret();
        let kind = PendingKind::UpstreamOidc {
            upstream: provider,
            connection_id: grant.connection_id.clone(),
            nonce: nonce.clone(),
            pkce_verifier: verifier.secret().clone(),
            target: target.to_stored(),
            extra_scopes: requested.to_vec(),
            connect_user_id: Some(user_id.to_owned()),
        };
        let ttl = Duration::from_secs(REQUEST_TTL_SECS);
        let token = self.pending.begin(&kind, "/account?notice=connected", browser, ttl).await?;
        let mut auth = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(token.0),
            move || Nonce::new(nonce),
        );
        for s in scopes_to_request(provider, &scopes_of(&grant.scopes), requested) {
            auth = auth.add_scope(Scope::new(s));
        }
        auth = auth.set_pkce_challenge(challenge);
        if provider == Upstream::Google {
            auth = auth
                .add_extra_param("include_granted_scopes", "true")
                .add_extra_param("access_type", "offline")
                .add_extra_param("prompt", "consent");
        }
        if let Some(hint) = self.login_hint(&grant).await? {
            auth = auth.add_extra_param("login_hint", hint);
        }
        Ok(auth.url().0.to_string())
    }

    fn connect_error(&self, e: UpstreamError) -> Error {
        if e.transient {
            self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Error::Unavailable(e.to_string())
        } else {
            Error::Internal(e.to_string())
        }
    }

    /// Points the provider at the connected account: Google takes its `sub`, Microsoft the
    /// address (its object id is no sign-in name).
    async fn login_hint(&self, grant: &upstream_grant::Model) -> Result<Option<String>> {
        if grant.provider == Upstream::Google.as_str() {
            return Ok(Some(grant.subject.clone()));
        }
        Ok(identity_email(self, grant).await?.filter(|e| e.len() <= 320))
    }

    /// The answer to a [`Self::start_connect`] request, whose claims passed the sign-in checks:
    /// stores the tokens and granted scopes in the user's grant if the answer is that grant's
    /// identity. Audited as `upstream.connected`.
    pub(super) async fn finish_connect(
        &self,
        user_id: &str,
        key: &IdentityKey,
        snapshot: &IdentitySnapshot,
        tokens: &IssuedTokens,
        requested: &[String],
        client: &ClientInfo,
    ) -> std::result::Result<(), Refusal> {
        let authority = self.directory.authority()?;
        let (issuer, subject) = identity_key_parts(key, &authority);
        let provider = key.provider();
        let txn = self.store.begin_write().await?;
        let now = self.store.now();
        let Some(grant) = vault::find(&txn, user_id, provider).await? else {
            return Err(Refusal::policy("connect_grant_missing", ""));
        };
        if grant.issuer != issuer || grant.subject != subject {
            return Err(Refusal::policy("connect_identity_mismatch", grant.id));
        }
        if grant.status != vault::STATUS_ACTIVE && grant.connection_id.is_some() {
            return Err(Refusal::policy("connect_grant_revoked", grant.id));
        }
        let mut tokens = tokens.clone();
        if tokens.scopes.is_empty() {
            // The provider did not say: what was asked for (RFC 6749 §5.1).
            let asked = scopes_to_request(provider, &scopes_of(&grant.scopes), requested);
            tokens.scopes = std::iter::once("openid".to_owned()).chain(asked).collect();
        }
        let write = GrantWrite {
            user_id,
            provider,
            issuer: &issuer,
            subject: &subject,
            easie: grant.connection_id.as_deref().zip(grant.org_id.as_deref()),
            tokens: &tokens,
            snapshot,
            next_check_at: grant
                .connection_id
                .as_ref()
                .map(|_| now.saturating_add(self.policy.interval())),
        };
        vault::record_sign_in(&txn, self.store.master_key(), &write, now).await?;
        let data = json!({
            "provider": provider.as_str(), "grant_id": grant.id, "requested": requested,
            "scopes": tokens.scopes,
        });
        let actor = client.actor_for(Some(user_id));
        audit::record(&txn, now, &actor, "upstream.connected", Some(user_id), data).await?;
        txn.commit().await.map_err(Error::from)?;
        self.forget_allowance(user_id, provider.as_str());
        Ok(())
    }

    /// The user's connected accounts (active grants), by provider.
    pub async fn connected_accounts(&self, user_id: &str) -> Result<Vec<ConnectedAccount>> {
        let grants = upstream_grant::Entity::find()
            .filter(upstream_grant::Column::UserId.eq(user_id))
            .filter(upstream_grant::Column::Status.eq(vault::STATUS_ACTIVE))
            .order_by_asc(upstream_grant::Column::Provider)
            .all(self.store.db())
            .await?;
        let mut accounts = Vec::with_capacity(grants.len());
        for g in grants {
            let Ok(provider) = Upstream::parse(&g.provider) else { continue };
            accounts.push(ConnectedAccount {
                provider,
                email: identity_email(self, &g).await?,
                scopes: scopes_of(&g.scopes),
                connection_id: g.connection_id,
            });
        }
        Ok(accounts)
    }

    /// Disconnects the user's account at `provider`: the grant is revoked and its tokens
    /// forgotten, audited as `upstream.disconnected`. An EASIE grant is refused
    /// ([`Error::Forbidden`]); none is [`Error::NotFound`]. Returns the upstream revocation
    /// to send (Google), which the caller runs without waiting for it.
    pub async fn disconnect(
        &self,
        user_id: &str,
        provider: Upstream,
        actor: &Actor,
    ) -> Result<Option<UpstreamRevocation>> {
        let grant = vault::find(self.store.db(), user_id, provider).await?;
        let grant = grant
            .filter(|g| g.status == vault::STATUS_ACTIVE)
            .ok_or_else(|| Error::NotFound("connected account".into()))?;
        if grant.connection_id.is_some() {
            return Err(Error::Forbidden(
                "your organisation requires this connection: it cannot be disconnected".into(),
            ));
        }
        let key = self.store.master_key();
        let token = match vault::refresh_token(key, &grant)? {
            Some(t) => Some(t),
            None => vault::access_token(key, &grant)?,
        };
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        if !vault::revoke(&txn, &grant.id, "disconnected", now).await? {
            txn.rollback().await?;
            return Err(Error::NotFound("connected account".into()));
        }
        let data = json!({ "provider": provider.as_str(), "grant_id": grant.id });
        audit::record(&txn, now, actor, "upstream.disconnected", Some(user_id), data).await?;
        txn.commit().await?;
        Ok(match (provider, token) {
            (Upstream::Google, Some(token)) => {
                Some(UpstreamRevocation { directory: self.directory.clone(), token })
            }
            _ => None,
        })
    }
}

/// The address the identity behind a grant signed in with.
async fn identity_email(
    service: &UpstreamService,
    grant: &upstream_grant::Model,
) -> Result<Option<String>> {
    Ok(external_identity::Entity::find()
        .filter(external_identity::Column::UserId.eq(grant.user_id.as_str()))
        .filter(external_identity::Column::Issuer.eq(grant.issuer.as_str()))
        .filter(external_identity::Column::Subject.eq(grant.subject.as_str()))
        .one(service.store.db())
        .await?
        .and_then(|i| i.email))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn requested_scopes_are_scope_tokens_within_the_limits() {
        let cal = "https://www.googleapis.com/auth/calendar.readonly";
        assert_eq!(parse_requested_scopes(cal).unwrap(), [cal]);
        assert_eq!(
            parse_requested_scopes(" Calendars.Read  Mail.Read Calendars.Read ").unwrap(),
            ["Calendars.Read", "Mail.Read"]
        );
        for bad in ["", "   ", "a\tb", "a\nb", "caf\u{e9}", "a\"b", "a\\b", "a\u{7f}"] {
            assert!(parse_requested_scopes(bad).is_err(), "{bad:?}");
        }
        let twenty: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
        assert_eq!(parse_requested_scopes(&twenty.join(" ")).unwrap(), twenty);
        let many: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
        assert!(parse_requested_scopes(&many.join(" ")).is_err());
        // Repeats count once.
        assert!(parse_requested_scopes(&vec!["s"; 30].join(" ")).is_ok());
        let long = "x".repeat(MAX_SCOPE_PARAM_LEN);
        assert!(parse_requested_scopes(&long).is_ok());
        assert!(parse_requested_scopes(&format!("{long}y")).is_err());
    }

    #[test]
    fn the_request_keeps_what_was_granted_and_adds_the_rest() {
        let granted = v(&["openid", "email", "profile", "offline_access", "Mail.Read"]);
        assert_eq!(
            scopes_to_request(Upstream::Microsoft, &granted, &v(&["Calendars.Read", "Mail.Read"])),
            ["email", "profile", "offline_access", "Mail.Read", "Calendars.Read"]
        );
        let cal = "https://www.googleapis.com/auth/calendar.readonly";
        // Google: offline access is `access_type=offline`; its scope would be refused.
        assert_eq!(
            scopes_to_request(Upstream::Google, &granted, &v(&[cal, "openid"])),
            ["email", "profile", "Mail.Read", cal]
        );
        assert_eq!(scopes_to_request(Upstream::Google, &[], &[]), ["email", "profile"]);
    }
}
