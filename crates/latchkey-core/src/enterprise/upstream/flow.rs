//! Signing in through Google or Microsoft: the authorization request and the callback.
//!
//! The start stores a pending request (the PKCE verifier, the nonce and the discovery target,
//! bound to the browser, single use, ten minutes) whose token is the `state`. The callback
//! takes it back, exchanges the code, has `openidconnect` verify the ID token (signature with
//! the provider's asymmetric keys, audience, expiry by our clock, nonce, and the issuer where
//! it is fixed), then lets `latchkey_easie::route` decide from the verified claims whether this
//! is an enrolled enterprise's member (tenant checks, just-in-time membership, refresh token
//! required) or a consumer sign-in, and finishes through the one sign-in completion with the
//! grant recorded in the same transaction. Every refusal is audited with a stable reason and
//! gets a reference for the error page; none creates a user or a session.

use std::{collections::HashMap, time::Duration};

use latchkey_easie::{
    Authority, Domain, EnterpriseIdentity, IdentityKey, Profile, SocialIdentity,
    google::{self, GoogleClaims},
    microsoft::{self, MicrosoftClaims},
    recheck::IdentitySnapshot,
    route::{self, Route, SignInClaims},
};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RequestTokenError, Scope, StandardErrorResponse, TokenResponse,
    core::{CoreAuthenticationFlow, CoreErrorResponseType, CoreTokenResponse},
};
use serde_json::{Value, json};

use super::{
    REQUEST_TTL_SECS, UpstreamService,
    provider::{self, Target, UpstreamError},
    vault::{self, GrantWrite, IssuedTokens},
};
use crate::{
    Error, Result,
    enterprise::easie::{EasieConnection, connections},
    identity::{
        external::{LinkPolicy, UpstreamIdentity},
        method::{AuthMethod, Upstream},
    },
    infra::{
        audit::{self, ClientInfo},
        crypto, ids,
    },
    sign_in::{
        OrgGrant, SignedIn, Verified, VerifiedSubject,
        pending::{BrowserBinding, PendingKind, PendingToken},
    },
    tenancy::access::ROLE_MEMBER,
};

/// Where a sign-in through a provider starts.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub provider: Upstream,
    /// Through an organisation's EASIE connection: its tenant's own endpoints, `hd` for Google.
    pub connection_id: Option<&'a str>,
    pub login_hint: Option<&'a str>,
    pub return_to: &'a str,
    pub browser: &'a BrowserBinding,
}

/// What the provider sent back to `/oauth/callback/{provider}`.
#[derive(Debug, Clone, Copy)]
pub struct CallbackInput<'a> {
    pub provider: &'a str,
    pub code: Option<&'a str>,
    pub state: Option<&'a str>,
    /// The provider's `error` (the user declined, the account is suspended, …).
    pub error: Option<&'a str>,
    pub binding: Option<&'a BrowserBinding>,
    pub client: &'a ClientInfo,
}

#[derive(Debug, Clone)]
pub struct CallbackSuccess {
    /// `None` when a signed-in user connected more access (`super::connect`): no new session.
    pub signed_in: Option<SignedIn>,
    pub return_to: String,
}

/// A refused answer: the stable reason (audit, metrics), the reference shown to the user, and
/// a sentence for the user when the reason is theirs to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRejection {
    pub reason: String,
    pub reference: String,
    pub message: Option<String>,
}

pub(super) enum Refusal {
    Policy { reason: &'static str, detail: String, message: Option<String> },
    Store(Error),
}

impl Refusal {
    pub(super) fn policy(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::Policy { reason, detail: detail.into(), message: None }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

impl From<sea_orm::DbErr> for Refusal {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Store(e.into())
    }
}

impl From<UpstreamError> for Refusal {
    fn from(e: UpstreamError) -> Self {
        Self::policy(e.reason, e.detail)
    }
}

impl From<latchkey_easie::Refusal> for Refusal {
    fn from(r: latchkey_easie::Refusal) -> Self {
        Self::Policy { reason: r.reason(), detail: String::new(), message: Some(r.message()) }
    }
}

/// The pending request an answer belongs to.
struct Pending {
    target: Target,
    connection_id: Option<String>,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    /// Incremental authorisation: the user connecting more access, and the scopes added.
    connect_user_id: Option<String>,
    extra_scopes: Vec<String>,
}

/// Who the verified claims say signed in, and how.
enum Decided {
    Enterprise { connection: EasieConnection, identity: Box<EnterpriseIdentity> },
    Social { identity: SocialIdentity },
}

impl Decided {
    fn key(&self) -> &IdentityKey {
        match self {
            Self::Enterprise { identity, .. } => &identity.key,
            Self::Social { identity } => &identity.key,
        }
    }
}

impl UpstreamService {
    /// The provider's authorization URL for a new sign-in from this browser.
    pub async fn start(&self, req: &StartRequest<'_>) -> Result<String> {
        let (target, connection) = match req.connection_id {
            Some(id) => {
                let c = self.enabled_connection(id).await?;
                (target_of(&c)?, Some(c))
            }
            None => match req.provider {
                Upstream::Google => (Target::Google, None),
                Upstream::Microsoft => (Target::MicrosoftCommon, None),
            },
        };
        let provider = target.provider();
        let client = match self.directory.client(&target, &self.redirect_uri(provider)).await {
            Ok(client) => client,
            Err(e) => return Err(self.start_error(provider, e).await),
        };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = crypto::random_secret();
        let kind = PendingKind::UpstreamOidc {
            upstream: provider,
            connection_id: connection.as_ref().map(|c| c.id.clone()),
            nonce: nonce.clone(),
            pkce_verifier: verifier.secret().clone(),
            target: target.to_stored(),
            extra_scopes: Vec::new(),
            connect_user_id: None,
        };
        let ttl = Duration::from_secs(REQUEST_TTL_SECS);
        let token = self.pending.begin(&kind, req.return_to, req.browser, ttl).await?;
        let mut auth = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(token.0),
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        auth = match provider {
            // Google issues a refresh token only for offline access with fresh consent.
            Upstream::Google => {
                auth.add_extra_param("access_type", "offline").add_extra_param("prompt", "consent")
            }
            Upstream::Microsoft => auth.add_scope(Scope::new("offline_access".into())),
        };
        if let (Some(c), Upstream::Google) = (&connection, provider) {
            // Only a hint for Google's account chooser: the `hd` claim is what is checked.
            auth = auth.add_extra_param("hd", c.domain.clone());
        }
        if let Some(hint) = req.login_hint.filter(|h| !h.is_empty() && h.len() <= 320) {
            auth = auth.add_extra_param("login_hint", hint.to_owned());
        }
        Ok(auth.url().0.to_string())
    }

    /// A provider whose documents cannot be trusted (another issuer, unreadable) is refused like
    /// an answer would be, audited with its reason: the operator needs to know which.
    async fn start_error(&self, provider: Upstream, e: UpstreamError) -> Error {
        if e.transient {
            self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Error::Unavailable(e.to_string());
        }
        if e.reason == "provider_not_configured" {
            return Error::NotFound(format!("sign-in provider {}", e.detail));
        }
        let client = ClientInfo::default();
        let input = CallbackInput {
            provider: provider.as_str(),
            code: None,
            state: None,
            error: None,
            binding: None,
            client: &client,
        };
        match self.reject(&input, e.reason, &e.detail, None).await {
            Ok(refused) => Error::Internal(format!("{e} (reference {})", refused.reference)),
            Err(store) => store,
        }
    }

    async fn enabled_connection(&self, id: &str) -> Result<EasieConnection> {
        let c = connections::find(self.store.db(), id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("connection {id}")))?;
        if !c.enabled {
            return Err(Error::Forbidden("this connection is disabled".into()));
        }
        Ok(c)
    }

    /// The callback. A refusal is audited here; the caller shows the reference. Storage
    /// failures are errors, not refusals.
    pub async fn callback(
        &self,
        input: &CallbackInput<'_>,
    ) -> Result<std::result::Result<CallbackSuccess, CallbackRejection>> {
        match self.callback_inner(input).await {
            Ok(success) => Ok(Ok(success)),
            Err(Refusal::Policy { reason, detail, message }) => {
                Ok(Err(self.reject(input, reason, &detail, message).await?))
            }
            Err(Refusal::Store(e)) => Err(e),
        }
    }

    async fn reject(
        &self,
        input: &CallbackInput<'_>,
        reason: &'static str,
        detail: &str,
        message: Option<String>,
    ) -> Result<CallbackRejection> {
        if reason == "upstream_unavailable" {
            self.counters.unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let reference = ids::new_id(ids::REFERENCE);
        let now = self.store.now();
        let actor = input.client.actor_for(None);
        let data = json!({
            "provider": input.provider, "reason": reason, "detail": detail,
            "reference": reference,
        });
        let action = "upstream.sign_in_rejected";
        audit::record(self.store.db(), now, &actor, action, Some(input.provider), data).await?;
        tracing::info!(provider = input.provider, reason, reference, "upstream sign-in refused");
        Ok(CallbackRejection { reason: reason.to_owned(), reference, message })
    }

    async fn callback_inner(
        &self,
        input: &CallbackInput<'_>,
    ) -> std::result::Result<CallbackSuccess, Refusal> {
        let pending = self.take_pending(input).await?;
        if let Some(error) = input.error {
            let error: String = error.chars().take(64).collect();
            return Err(Refusal::policy("upstream_error", error));
        }
        let code = input.code.filter(|c| !c.is_empty() && c.len() <= 4096);
        let code = code.ok_or_else(|| Refusal::policy("code_missing", ""))?;
        let (claims, tokens) = self.exchange(&pending, code).await?;
        let (decided, snapshot) = self
            .decide(pending.target.provider(), claims, pending.connection_id.as_deref())
            .await?;
        if let Some(user_id) = &pending.connect_user_id {
            let (key, extra) = (decided.key(), &pending.extra_scopes);
            self.finish_connect(user_id, key, &snapshot, &tokens, extra, input.client).await?;
            return Ok(CallbackSuccess { signed_in: None, return_to: pending.return_to });
        }
        let signed_in = self.complete(&decided, &snapshot, &tokens, input.client).await?;
        Ok(CallbackSuccess { signed_in: Some(signed_in), return_to: pending.return_to })
    }

    /// The pending request named by `state`, of this browser, for this provider, once.
    async fn take_pending(
        &self,
        input: &CallbackInput<'_>,
    ) -> std::result::Result<Pending, Refusal> {
        let unknown =
            || Refusal::policy("state_unknown", "unknown, expired, used or another browser's");
        let (Some(state), Some(binding)) = (input.state, input.binding) else {
            return Err(unknown());
        };
        let req = match self.pending.take(&PendingToken(state.to_owned()), binding).await {
            Ok(req) => req,
            Err(Error::NotFound(_)) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        match req.kind {
            PendingKind::UpstreamOidc {
                upstream,
                connection_id,
                nonce,
                pkce_verifier,
                target,
                extra_scopes,
                connect_user_id,
            } if upstream.as_str() == input.provider => {
                let target = Target::from_stored(&target)
                    .filter(|t| t.provider() == upstream)
                    .ok_or_else(|| Refusal::policy("pending_request_mismatch", "bad target"))?;
                Ok(Pending {
                    target,
                    connection_id,
                    nonce,
                    pkce_verifier,
                    return_to: req.return_to,
                    connect_user_id,
                    extra_scopes,
                })
            }
            _ => Err(Refusal::policy("pending_request_mismatch", "another flow's request")),
        }
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token.
    async fn exchange(
        &self,
        pending: &Pending,
        code: &str,
    ) -> std::result::Result<(Value, IssuedTokens), Refusal> {
        let target = &pending.target;
        let client = self.directory.client(target, &self.redirect_uri(target.provider())).await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| UpstreamError::refused("token_endpoint_missing", e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        let response = request.request_async(self.directory.http()).await.map_err(|e| {
            let unreadable = match &e {
                RequestTokenError::Parse(_, body) => provider::unreadable_id_token(body),
                _ => None,
            };
            unreadable.unwrap_or_else(|| token_error(e))
        })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| Refusal::policy("id_token_missing", "the token response has none"))?;
        let claims = self.directory.verify_id_token(target, id_token, Some(&pending.nonce)).await?;
        Ok((claims, issued_tokens(&response, self.store.now())))
    }

    /// Classifies the verified claims (see the module docs) and runs the checks of the route.
    async fn decide(
        &self,
        provider: Upstream,
        claims: Value,
        started_at: Option<&str>,
    ) -> std::result::Result<(Decided, IdentitySnapshot), Refusal> {
        let authority = self.directory.authority()?;
        let (google_claims, microsoft_claims);
        let (claims, snapshot) = match provider {
            Upstream::Google => {
                google_claims = GoogleClaims::from_value(claims)?;
                (SignInClaims::Google(&google_claims), IdentitySnapshot::google(&google_claims))
            }
            Upstream::Microsoft => {
                microsoft_claims = MicrosoftClaims::from_value(claims)?;
                let s = IdentitySnapshot::microsoft(&microsoft_claims);
                (SignInClaims::Microsoft(&microsoft_claims), s)
            }
        };
        let enrolled = self.enrollments_for(&claims).await?;
        let route = route::classify(claims, |d| enrolled.get(d.as_str()).map(|(_, e)| e.clone()));
        let decided = match route {
            Route::Refuse(r) => return Err(r.into()),
            Route::Enterprise(e) => {
                if started_at.is_some_and(|id| id != e.connection_id) {
                    return Err(Refusal::policy("connection_mismatch", e.connection_id));
                }
                let identity = route::enterprise_identity(claims, &e, &authority)?;
                let connection = enrolled
                    .into_values()
                    .map(|(c, _)| c)
                    .find(|c| c.id == e.connection_id)
                    .ok_or_else(|| Refusal::policy("connection_disabled", ""))?;
                Decided::Enterprise { connection, identity: Box::new(identity) }
            }
            Route::Social => match started_at {
                Some(id) => return Err(self.not_that_enterprise(id, claims, &authority).await),
                None => Decided::Social { identity: social_identity(claims, &authority)? },
            },
        };
        Ok((decided, snapshot))
    }

    /// The enabled enrollments of the domains the claims name (address and `hd`), loaded
    /// before classifying: a stored enrollment that cannot be read fails the sign-in rather
    /// than being skipped.
    async fn enrollments_for(
        &self,
        claims: &SignInClaims<'_>,
    ) -> Result<HashMap<String, (EasieConnection, latchkey_easie::Enrollment)>> {
        let mut domains: Vec<Domain> = Vec::new();
        match claims {
            SignInClaims::Google(c) => {
                domains.extend(c.email_address().ok().flatten().map(|e| e.domain().clone()));
                domains.extend(c.hosted_domain().ok().flatten());
            }
            SignInClaims::Microsoft(c) => {
                domains.extend(c.claimed_email().ok().flatten().map(|e| e.domain().clone()));
            }
        }
        let mut enrolled = HashMap::new();
        for d in domains {
            if let Some(c) = connections::enabled_for_domain(self.store.db(), d.as_str()).await? {
                let e = c.enrollment()?;
                enrolled.insert(d.as_str().to_owned(), (c, e));
            }
        }
        Ok(enrolled)
    }

    /// A sign-in started at an EASIE connection whose claims are not that enterprise's: the
    /// connection's own tenant check names the reason (a guest, a consumer account, another
    /// domain); a connection that is gone or disabled refuses as such.
    async fn not_that_enterprise(
        &self,
        connection_id: &str,
        claims: SignInClaims<'_>,
        authority: &Authority,
    ) -> Refusal {
        let connection = match self.enabled_connection(connection_id).await {
            Ok(c) => c,
            Err(Error::NotFound(_) | Error::Forbidden(_)) => {
                return Refusal::policy("connection_disabled", connection_id.to_owned());
            }
            Err(e) => return Refusal::Store(e),
        };
        let enrollment = match connection.enrollment() {
            Ok(e) => e,
            Err(e) => return Refusal::Store(e),
        };
        match route::enterprise_identity(claims, &enrollment, authority) {
            Err(r) => r.into(),
            Ok(_) => Refusal::policy("connection_mismatch", connection_id.to_owned()),
        }
    }
}

fn social_identity(
    claims: SignInClaims<'_>,
    authority: &Authority,
) -> std::result::Result<SocialIdentity, latchkey_easie::Refusal> {
    match claims {
        SignInClaims::Google(c) => google::social_identity(c),
        SignInClaims::Microsoft(c) => microsoft::social_identity(c, authority),
    }
}

/// The discovery target of an EASIE connection.
fn target_of(c: &EasieConnection) -> Result<Target> {
    match c.enrollment()?.tenant {
        None if c.provider == Upstream::Google => Ok(Target::Google),
        Some(tid) if c.provider == Upstream::Microsoft => Ok(Target::MicrosoftTenant(tid)),
        _ => Err(Error::Internal(format!("connection {}: provider and tenant disagree", c.id))),
    }
}

/// (issuer, subject) of an identity in `external_identities` and the vault: Google's `iss` and
/// `sub`, Microsoft's tenant issuer and `oid`.
pub fn identity_key_parts(key: &IdentityKey, authority: &Authority) -> (String, String) {
    match key {
        IdentityKey::Google { iss, sub } => (iss.clone(), sub.clone()),
        IdentityKey::Microsoft { tid, oid } => (authority.issuer_for(tid), oid.clone()),
    }
}

fn upstream_identity(
    key: &IdentityKey,
    authority: &Authority,
    email: Option<String>,
    email_verified: bool,
    profile: &Profile,
) -> UpstreamIdentity {
    let (issuer, subject) = identity_key_parts(key, authority);
    UpstreamIdentity {
        issuer,
        subject,
        email,
        email_verified,
        given_name: profile.given_name.clone(),
        family_name: profile.family_name.clone(),
        name: profile.name.clone(),
    }
}

/// Classifies a token endpoint failure: `invalid_grant` is the provider's "no" (revoked,
/// suspended, deleted); an answer that says nothing about the account is transient.
pub(crate) fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> UpstreamError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::InvalidGrant => {
                UpstreamError::refused("invalid_grant", r.to_string())
            }
            CoreErrorResponseType::Extension(code)
                if code == "temporarily_unavailable" || code == "server_error" =>
            {
                UpstreamError::unavailable(r.to_string())
            }
            other => UpstreamError::refused("token_request_refused", other.as_ref().to_owned()),
        },
        RequestTokenError::Request(e) => UpstreamError::unavailable(e.to_string()),
        RequestTokenError::Parse(e, _) => {
            UpstreamError::unavailable(format!("unreadable token response: {e}"))
        }
        RequestTokenError::Other(s) => UpstreamError::unavailable(s),
    }
}

pub(crate) fn issued_tokens(response: &CoreTokenResponse, now: i64) -> IssuedTokens {
    let expires_at = response
        .expires_in()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .map(|s| now.saturating_add(s));
    IssuedTokens {
        access_token: response.access_token().secret().clone(),
        expires_at,
        refresh_token: response.refresh_token().map(|r| r.secret().clone()),
        scopes: response
            .scopes()
            .map(|s| s.iter().map(|x| x.as_str().to_owned()).collect())
            .unwrap_or_default(),
    }
}

impl UpstreamService {
    /// Completes the sign-in and records the grant in one transaction; two first sign-ins of
    /// one identity race, and the loser retries once and finds the winner's account.
    async fn complete(
        &self,
        decided: &Decided,
        snapshot: &IdentitySnapshot,
        tokens: &IssuedTokens,
        client: &ClientInfo,
    ) -> std::result::Result<SignedIn, Refusal> {
        let authority = self.directory.authority()?;
        let (verified, key) = self.verified_for(decided, tokens, &authority).await?;
        let mut outcome =
            self.try_complete(&verified, &key, decided, snapshot, tokens, client).await;
        if matches!(outcome, Err(Refusal::Store(Error::Conflict(_)))) {
            outcome = self.try_complete(&verified, &key, decided, snapshot, tokens, client).await;
        }
        match outcome {
            Err(Refusal::Store(
                e @ (Error::Forbidden(_) | Error::Invalid { .. } | Error::Conflict(_)),
            )) => {
                let data = json!({ "method": verified.method, "reason": e.to_string() });
                let (now, actor) = (self.store.now(), client.actor_for(None));
                audit::record(self.store.db(), now, &actor, "sign_in.failed", None, data).await?;
                Err(Refusal::Policy {
                    reason: "account_refused",
                    message: e.public_message(),
                    detail: e.to_string(),
                })
            }
            other => other,
        }
    }

    /// The verified subject handed to the completion, and the identity's (issuer, subject).
    async fn verified_for(
        &self,
        decided: &Decided,
        tokens: &IssuedTokens,
        authority: &Authority,
    ) -> std::result::Result<(Verified, (String, String)), Refusal> {
        match decided {
            Decided::Enterprise { connection, identity } => {
                // Deprovisioning refreshes upstream: without a refresh token it could not.
                if tokens.refresh_token.is_none() {
                    return Err(Refusal::policy("refresh_token_missing", connection.id.clone()));
                }
                let up = upstream_identity(
                    &identity.key,
                    authority,
                    Some(identity.email.to_string()),
                    true,
                    &identity.profile,
                );
                let key = (up.issuer.clone(), up.subject.clone());
                let policy = LinkPolicy {
                    provision: true,
                    // Only an address the provider itself vouches for links to an existing
                    // account (Microsoft: `xms_edov`); the tenant vouches for membership.
                    link_verified_email: identity.email_verified,
                    refresh_profile: true,
                    domain_authority: true,
                    provision_unverified: false,
                };
                let verified = Verified {
                    method: AuthMethod::UpstreamOidc {
                        upstream: connection.provider,
                        connection_id: Some(connection.id.clone()),
                    },
                    subject: VerifiedSubject::Upstream { identity: up, policy },
                    join: Some(OrgGrant {
                        org_id: connection.org_id.clone(),
                        role: ROLE_MEMBER.to_owned(),
                        authoritative: false,
                    }),
                    upstream_session: None,
                };
                Ok((verified, key))
            }
            Decided::Social { identity } => self.social_verified(identity, authority).await,
        }
    }

    async fn social_verified(
        &self,
        identity: &SocialIdentity,
        authority: &Authority,
    ) -> std::result::Result<(Verified, (String, String)), Refusal> {
        // An address whose organisation requires its own identity provider cannot sign in
        // socially (unless it is on the connection's bypass list, which is audited).
        for email in [&identity.verified_email, &identity.email].into_iter().flatten() {
            match self.sign_in.require_password_route(&email.to_string()).await {
                Ok(()) => {}
                Err(Error::Forbidden(_)) => {
                    return Err(Refusal::policy("enterprise_connection_required", ""));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let email = identity.verified_email.as_ref().or(identity.email.as_ref());
        let up = upstream_identity(
            &identity.key,
            authority,
            email.map(ToString::to_string),
            identity.verified_email.is_some(),
            &identity.profile,
        );
        let key = (up.issuer.clone(), up.subject.clone());
        let policy = LinkPolicy {
            provision: true,
            link_verified_email: true,
            refresh_profile: false,
            domain_authority: false,
            provision_unverified: true,
        };
        let verified = Verified {
            method: AuthMethod::UpstreamOidc {
                upstream: identity.key.provider(),
                connection_id: None,
            },
            subject: VerifiedSubject::Upstream { identity: up, policy },
            join: None,
            upstream_session: None,
        };
        Ok((verified, key))
    }

    async fn try_complete(
        &self,
        verified: &Verified,
        key: &(String, String),
        decided: &Decided,
        snapshot: &IdentitySnapshot,
        tokens: &IssuedTokens,
        client: &ClientInfo,
    ) -> std::result::Result<SignedIn, Refusal> {
        let txn = self.store.begin_write().await?;
        let now = self.store.now();
        let signed_in = self.sign_in.complete_in(&txn, verified, client, None, now).await?;
        let (easie, next_check_at) = match decided {
            Decided::Enterprise { connection, .. } => (
                Some((connection.id.as_str(), connection.org_id.as_str())),
                Some(now.saturating_add(self.policy.interval())),
            ),
            Decided::Social { .. } => (None, None),
        };
        let grant = GrantWrite {
            user_id: &signed_in.user.id,
            provider: match decided {
                Decided::Enterprise { connection, .. } => connection.provider,
                Decided::Social { identity } => identity.key.provider(),
            },
            issuer: &key.0,
            subject: &key.1,
            easie,
            tokens,
            snapshot,
            next_check_at,
        };
        vault::record_sign_in(&txn, self.store.master_key(), &grant, now).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(signed_in)
    }
}
