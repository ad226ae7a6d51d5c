//! Web Browser SSO: starting an SP-initiated sign-in, and the assertion consumer service.
//!
//! The start stores a pending request (random 128-bit AuthnRequest ID, bound to the browser by
//! a cookie, single use, ten minutes) and sends the browser to the IdP with the pending token as
//! RelayState. The ACS takes that request back (or, without one, treats the response as
//! unsolicited), re-checks the connection, has `latchkey-saml` verify the response against
//! exactly what was asked, consumes the assertion ID (replay) and completes the sign-in through
//! the one completion step. Every refusal is audited with its precise reason and gets a
//! reference ID for the error page; none creates a user or a session.

use std::{sync::Arc, time::Duration};

use latchkey_saml::{
    SamlError, VerifiedAssertion,
    algorithms::AlgorithmPolicy,
    binding::PostForm,
    mapping,
    request::{self, AuthnRequestSpec},
    response::{self, ResponseExpectations},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{REQUEST_TTL_SECS, SamlService, connections, sp_keys};
use crate::{
    Error, Result,
    identity::{
        external::{LinkPolicy, UpstreamIdentity},
        method::AuthMethod,
    },
    infra::{
        audit::{self, ClientInfo},
        email::normalize_email,
        entity::{org_domain, saml_assertion_id, saml_connection},
        ids,
        inline_sqlite::constraint_violation,
    },
    sign_in::{
        OrgGrant, SignedIn, UpstreamSession, Verified, VerifiedSubject,
        pending::{BrowserBinding, PendingKind, PendingToken},
    },
};

/// How the browser goes to the IdP.
#[derive(Debug, Clone)]
pub enum LoginStart {
    Redirect(String),
    /// An auto-submitting form (the IdP only offers POST, or it was asked for).
    Post(PostForm),
}

/// What the ACS received.
pub struct AcsInput<'a> {
    pub connection_id: &'a str,
    /// The decoded `SAMLResponse`, or why it could not be decoded (audited as a refusal).
    pub response: &'a std::result::Result<response::DecodedResponse, SamlError>,
    pub relay_state: Option<&'a str>,
    /// The browser's pending-request binding cookie, if it sent one.
    pub binding: Option<&'a BrowserBinding>,
    pub client: &'a ClientInfo,
}

/// A refused response: the reason code (audit, metrics) and the reference ID shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcsRejection {
    pub reason: String,
    pub reference: String,
}

/// The sign-in the ACS completed, and where the browser goes next.
#[derive(Debug, Clone)]
pub struct AcsSuccess {
    pub signed_in: SignedIn,
    pub return_to: String,
}

/// What an accepted response led to: a sign-in, or (for a test started from the console) the
/// assertion as Latchkey mapped it, with nobody signed in or provisioned.
#[derive(Debug, Clone)]
pub enum AcsOutcome {
    SignedIn(Box<AcsSuccess>),
    Tested(Box<TestedAssertion>),
}

/// A test sign-in's assertion: every attribute as received, and what the mapping made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestedAssertion {
    pub connection_id: String,
    /// The account key at this connection (the subject attribute, else the NameID).
    pub subject: String,
    pub name_id_format: Option<String>,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    /// The organisation role the groups give.
    pub role: String,
    pub encrypted: bool,
    pub attributes: std::collections::BTreeMap<String, Vec<String>>,
    /// The console page the test started from.
    pub return_to: String,
}

/// The pending request a response answers: its AuthnRequest ID, where the browser goes next,
/// and who is testing the connection (if this is a test).
struct Answered {
    request_id: String,
    return_to: String,
    tested_by: Option<String>,
}

/// The subject key of a SAML identity: the connection, never the IdP's entity ID alone, so
/// two organisations using one IdP can never share accounts by NameID.
pub fn identity_issuer(connection_id: &str) -> String {
    format!("saml:{connection_id}")
}

impl SamlService {
    /// Starts SP-initiated SSO for an enabled connection.
    pub async fn start_login(
        &self,
        connection_id: &str,
        return_to: &str,
        browser: &BrowserBinding,
        prefer_post: bool,
    ) -> Result<LoginStart> {
        self.start(connection_id, return_to, browser, prefer_post, None).await
    }

    /// Starts a test sign-in of a connection for one of its organisation's admins (the
    /// console's "test connection"): the answer comes back to the connection's console page
    /// as mapped, and signs nobody in. Only a user may test, so the result has an owner.
    pub async fn start_test(
        &self,
        connection_id: &str,
        browser: &BrowserBinding,
        actor: &crate::infra::audit::Actor,
    ) -> Result<LoginStart> {
        let model = self.load(self.store.db(), connection_id).await?;
        crate::tenancy::access::authorize(
            self.store.db(),
            &model.org_id,
            actor,
            crate::tenancy::access::Need::Admin,
        )
        .await?;
        let tester = actor.user_id().ok_or_else(|| {
            Error::Forbidden("a connection is tested by a signed-in admin".into())
        })?;
        let back = format!("/admin/connections/{connection_id}");
        self.start(connection_id, &back, browser, false, Some(tester.to_owned())).await
    }

    async fn start(
        &self,
        connection_id: &str,
        return_to: &str,
        browser: &BrowserBinding,
        prefer_post: bool,
        tested_by: Option<String>,
    ) -> Result<LoginStart> {
        let now = self.store.now();
        let model = self.enabled(connection_id).await?;
        let options = connections::options_of(&model)?;
        let request_id = request::new_message_id();
        let kind = PendingKind::SamlAuthn {
            connection_id: connection_id.to_owned(),
            request_id: request_id.clone(),
            tested_by,
        };
        let ttl = Duration::from_secs(REQUEST_TTL_SECS);
        let token = self.pending.begin(&kind, return_to, browser, ttl).await?;
        let urls = self.urls(connection_id);
        let post = match (&model.idp_sso_redirect_url, &model.idp_sso_post_url) {
            (Some(_), Some(p)) if prefer_post => Some(p),
            (None, Some(p)) => Some(p),
            _ => None,
        };
        let destination = post
            .or(model.idp_sso_redirect_url.as_ref())
            .ok_or_else(|| Error::Internal("connection without an SSO endpoint".into()))?;
        let spec = AuthnRequestSpec {
            id: &request_id,
            issue_instant: now,
            sp_entity_id: &urls.sp_entity_id,
            acs_url: &urls.acs_url,
            destination,
            name_id_format: options.name_id_format.as_deref(),
            force_authn: false,
        };
        let signer = if options.sign_requests {
            let keys = sp_keys::live(self.store.db(), connection_id, now).await?;
            Some(sp_keys::signing_key(&self.store, &keys)?)
        } else {
            None
        };
        let relay = Some(token.0.as_str());
        let start = if post.is_some() {
            request::authn_request_post(&spec, relay, signer.as_ref()).map(LoginStart::Post)
        } else {
            request::authn_request_redirect(&spec, relay, signer.as_ref()).map(LoginStart::Redirect)
        };
        start.map_err(|e| Error::Internal(format!("AuthnRequest: {e}")))
    }

    /// An enabled connection of an existing organisation (checked at start and again at the
    /// ACS, so disabling takes effect for flows already under way).
    async fn enabled(&self, connection_id: &str) -> Result<saml_connection::Model> {
        let model = self.load(self.store.db(), connection_id).await?;
        if !model.enabled {
            return Err(Error::Forbidden("this connection is disabled".into()));
        }
        Ok(model)
    }

    /// The assertion consumer service. A refusal is audited here; the caller shows the
    /// reference. Storage failures are errors, not rejections.
    pub async fn consume(
        &self,
        input: &AcsInput<'_>,
    ) -> Result<std::result::Result<AcsOutcome, AcsRejection>> {
        match self.consume_inner(input).await {
            Ok(success) => Ok(Ok(success)),
            Err(Refusal::Saml(e)) => {
                Ok(Err(self.reject(input, e.reason(), &e.to_string()).await?))
            }
            Err(Refusal::Policy(reason, detail)) => {
                Ok(Err(self.reject(input, reason, &detail).await?))
            }
            Err(Refusal::Store(e)) => Err(e),
        }
    }

    async fn reject(
        &self,
        input: &AcsInput<'_>,
        reason: &str,
        detail: &str,
    ) -> Result<AcsRejection> {
        let reference = ids::new_id(ids::REFERENCE);
        let now = self.store.now();
        let actor = input.client.actor_for(None);
        let data = json!({ "reason": reason, "detail": detail, "reference": reference });
        let target = Some(input.connection_id);
        audit::record(self.store.db(), now, &actor, "saml.response_rejected", target, data).await?;
        tracing::info!(
            connection = input.connection_id,
            reason,
            reference,
            "SAML response refused"
        );
        Ok(AcsRejection { reason: reason.to_owned(), reference })
    }

    /// The connection and its organisation's verified domains as of a store revision read
    /// after this request arrived: every write to either bumps the revision (connection
    /// changes, metadata refresh, domain verification and removal, organisation deletion), so
    /// a connection disabled on any node is refused at the next response.
    async fn acs_context(&self, connection_id: &str) -> Result<Arc<AcsContext>> {
        let revision = self.store.current_revision().await?;
        if let Some((at, ctx)) = self.acs_contexts.get(connection_id)
            && at >= revision
        {
            return Ok(ctx);
        }
        let db = self.store.db();
        let model = self.load(db, connection_id).await?;
        let verified_domains = org_domain::Entity::find()
            .filter(org_domain::Column::OrgId.eq(&model.org_id))
            .filter(org_domain::Column::VerifiedDomain.is_not_null())
            .all(db)
            .await?
            .into_iter()
            .filter_map(|d| d.verified_domain)
            .collect();
        let options = connections::options_of(&model)?;
        let idp_certs = connections::stored_certs(&model);
        let ctx = Arc::new(AcsContext { model, options, idp_certs, verified_domains });
        self.acs_contexts.insert(connection_id.to_owned(), (revision, Arc::clone(&ctx)));
        Ok(ctx)
    }

    async fn consume_inner(
        &self,
        input: &AcsInput<'_>,
    ) -> std::result::Result<AcsOutcome, Refusal> {
        let ctx = match self.acs_context(input.connection_id).await {
            Ok(ctx) if !ctx.model.enabled => {
                return Err(Refusal::policy("connection_disabled", ""));
            }
            Ok(ctx) => ctx,
            Err(Error::NotFound(_)) => return Err(Refusal::policy("unknown_connection", "")),
            Err(e) => return Err(Refusal::Store(e)),
        };
        let (model, options) = (&ctx.model, &ctx.options);
        let pending = self.take_pending(input).await?;
        let assertion = self.verify(&ctx, input.response, pending.as_ref()).await?;
        let verified = match self.verified_for(&ctx, &assertion) {
            Ok(v) => v,
            Err(e) => {
                // Refused, but spent: the same assertion cannot be tried again later.
                ReplayKey::new(&model.id, &assertion).consume(self.store.db()).await?;
                return Err(e);
            }
        };
        if let Some(Answered { tested_by: Some(tester), return_to, .. }) = pending {
            let tested = self.tested(
                model,
                options,
                &assertion,
                &verified,
                input.client,
                (&tester, return_to),
            );
            return Ok(AcsOutcome::Tested(Box::new(tested.await?)));
        }
        let signed_in = self.complete_once(&model.id, &assertion, &verified, input.client).await?;
        let return_to = match pending {
            Some(answered) => answered.return_to,
            None => options.idp_initiated_landing.clone(),
        };
        Ok(AcsOutcome::SignedIn(Box::new(AcsSuccess { signed_in, return_to })))
    }

    /// A test's answer: the assertion ID is spent (a test response cannot be replayed as a
    /// sign-in), the result audited as the tester's `saml.connection_tested`, nothing else
    /// written.
    async fn tested(
        &self,
        model: &saml_connection::Model,
        options: &super::ConnectionOptions,
        a: &VerifiedAssertion,
        verified: &Verified,
        client: &ClientInfo,
        (tester, return_to): (&str, String),
    ) -> std::result::Result<TestedAssertion, Refusal> {
        let mapped = mapping::map_identity(a, &options.mapping)?;
        let email = match &verified.subject {
            VerifiedSubject::Upstream { identity, .. } => {
                identity.email.clone().unwrap_or_default()
            }
            VerifiedSubject::User(_) | VerifiedSubject::NewAccount { .. } => String::new(),
        };
        let tested = TestedAssertion {
            connection_id: model.id.clone(),
            subject: mapped.subject,
            name_id_format: a.name_id.as_ref().and_then(|n| n.format.clone()),
            email,
            given_name: mapped.given_name,
            family_name: mapped.family_name,
            display_name: mapped.display_name,
            role: options.role_for(&mapped.groups),
            groups: mapped.groups,
            encrypted: a.encrypted,
            attributes: a.attributes.clone(),
            return_to,
        };
        let txn = self.store.begin_write().await?;
        ReplayKey::new(&model.id, a).consume(&txn).await?;
        let actor = client.actor_for(Some(tester));
        let data = json!({
            "email": tested.email, "subject": tested.subject, "groups": tested.groups,
            "role": tested.role, "org_id": model.org_id,
        });
        let now = self.store.now();
        audit::record(&txn, now, &actor, "saml.connection_tested", Some(&model.id), data).await?;
        txn.commit().await.map_err(Error::from)?;
        Ok(tested)
    }

    /// The pending request this response answers: (AuthnRequest ID, return_to). Without a
    /// RelayState the browser is taken to start nothing (unsolicited); a RelayState that names
    /// no request of this browser is treated the same way, so a response that nevertheless
    /// carries InResponseTo is refused by the verification.
    async fn take_pending(
        &self,
        input: &AcsInput<'_>,
    ) -> std::result::Result<Option<Answered>, Refusal> {
        let (Some(relay), Some(binding)) = (input.relay_state, input.binding) else {
            return Ok(None);
        };
        match self.pending.take(&PendingToken(relay.to_owned()), binding).await {
            Ok(req) => match req.kind {
                PendingKind::SamlAuthn { connection_id, request_id, tested_by }
                    if connection_id == input.connection_id =>
                {
                    Ok(Some(Answered { request_id, return_to: req.return_to, tested_by }))
                }
                _ => Err(Refusal::policy("pending_request_mismatch", "another flow's request")),
            },
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(Refusal::Store(e)),
        }
    }

    async fn verify(
        &self,
        ctx: &AcsContext,
        decoded: &std::result::Result<response::DecodedResponse, SamlError>,
        pending: Option<&Answered>,
    ) -> std::result::Result<VerifiedAssertion, Refusal> {
        let (model, options, now) = (&ctx.model, &ctx.options, self.store.now());
        // The SP's private keys are unsealed only for a response that carries ciphertext.
        let decoded = decoded.as_ref().map_err(|e| Refusal::Saml(e.clone()))?;
        let decryption_keys = if decoded.may_be_encrypted() {
            let keys = sp_keys::live(self.store.db(), &model.id, now).await?;
            sp_keys::decryption_keys(&self.store, &keys)?
        } else {
            Vec::new()
        };
        let urls = self.urls(&model.id);
        let expect = ResponseExpectations {
            idp_entity_id: &model.idp_entity_id,
            idp_certs: &ctx.idp_certs,
            sp_entity_id: &urls.sp_entity_id,
            acs_url: &urls.acs_url,
            in_response_to: pending.map(|p| p.request_id.as_str()),
            // Without a request of this browser the response is verified as unsolicited either
            // way, so the refusal can say whether it answered some other request.
            allow_unsolicited: true,
            algorithms: AlgorithmPolicy { allow_sha1: options.allow_sha1 },
            require_encryption: options.require_encryption,
            decryption_keys: &decryption_keys,
            now,
            skew_secs: options.skew_secs.clamp(0, super::options::MAX_SKEW_SECS),
        };
        match response::verify_decoded(decoded, &expect) {
            Ok(_) if pending.is_none() && !options.allow_idp_initiated => {
                Err(Refusal::Saml(SamlError::Unsolicited))
            }
            Ok(a) => Ok(a),
            // Without a request of this browser, an answer to "some request" is an answer to
            // an unknown, expired, used or another browser's request.
            Err(SamlError::UnsolicitedWithInResponseTo) => {
                Err(Refusal::policy("in_response_to_unknown", "no pending request of this browser"))
            }
            Err(e) => Err(Refusal::Saml(e)),
        }
    }

    /// Consumes the assertion ID and completes the sign-in in one transaction (one commit per
    /// sign-in). A refused completion still consumes the ID, in a transaction of its own.
    async fn complete_once(
        &self,
        connection_id: &str,
        a: &VerifiedAssertion,
        verified: &Verified,
        client: &ClientInfo,
    ) -> std::result::Result<SignedIn, Refusal> {
        let mut outcome = self.try_complete(connection_id, a, verified, client).await;
        // Two first sign-ins of one new identity race to create its account; the loser finds
        // the winner's link on a second try.
        if matches!(outcome, Err(Refusal::Store(Error::Conflict(_)))) {
            outcome = self.try_complete(connection_id, a, verified, client).await;
        }
        match outcome {
            Err(Refusal::Store(
                e @ (Error::Forbidden(_) | Error::Invalid { .. } | Error::Conflict(_)),
            )) => {
                ReplayKey::new(connection_id, a).consume(self.store.db()).await?;
                let data = json!({ "method": verified.method, "reason": e.to_string() });
                let (now, actor) = (self.store.now(), client.actor_for(None));
                audit::record(self.store.db(), now, &actor, "sign_in.failed", None, data).await?;
                Err(Refusal::policy("account_refused", &e.to_string()))
            }
            other => other,
        }
    }

    async fn try_complete(
        &self,
        connection_id: &str,
        a: &VerifiedAssertion,
        verified: &Verified,
        client: &ClientInfo,
    ) -> std::result::Result<SignedIn, Refusal> {
        let (sign_in, now) = (self.sign_in.clone(), self.store.now());
        let replay = ReplayKey::new(connection_id, a);
        let (verified, client) = (verified.clone(), client.clone());
        self.store
            .write(move |txn| {
                Box::pin(async move {
                    replay.consume(txn).await?;
                    Ok(sign_in.complete_in(txn, &verified, &client, None, now).await?)
                })
            })
            .await
    }

    /// Deletes consumed assertion IDs past their expiry; returns how many.
    pub async fn purge_assertion_ids(&self) -> Result<u64> {
        let now = self.store.now();
        let res = saml_assertion_id::Entity::delete_many()
            .filter(saml_assertion_id::Column::ExpiresAt.lt(now))
            .exec(self.store.db())
            .await?;
        Ok(res.rows_affected)
    }

    /// What the completion needs: the mapped identity keyed by (connection, subject), its
    /// address vouched for only inside the organisation's verified domains, and the mapped role.
    fn verified_for(
        &self,
        ctx: &AcsContext,
        a: &VerifiedAssertion,
    ) -> std::result::Result<Verified, Refusal> {
        let (model, options) = (&ctx.model, &ctx.options);
        let mapped = mapping::map_identity(a, &options.mapping)?;
        let email = match mapped.email.as_deref().map(normalize_email) {
            Some(Ok(e)) => e,
            Some(Err(_)) => return Err(Refusal::policy("bad_email", "unusable email attribute")),
            None => return Err(Refusal::policy("no_email", "the assertion carries no email")),
        };
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if !ctx.verified_domains.iter().any(|d| d == domain) {
            return Err(Refusal::policy("email_outside_domains", &email));
        }
        let identity = UpstreamIdentity {
            issuer: identity_issuer(&model.id),
            subject: mapped.subject.clone(),
            email: Some(email),
            email_verified: true,
            given_name: mapped.given_name.clone(),
            family_name: mapped.family_name.clone(),
            name: mapped.display_name.clone(),
        };
        let policy = LinkPolicy {
            provision: true,
            link_verified_email: true,
            refresh_profile: true,
            domain_authority: true,
            provision_unverified: false,
        };
        Ok(Verified {
            method: AuthMethod::Saml { connection_id: model.id.clone() },
            subject: VerifiedSubject::Upstream { identity, policy },
            join: Some(OrgGrant {
                org_id: model.org_id.clone(),
                role: options.role_for(&mapped.groups),
                authoritative: options.roles_from_groups(),
            }),
            upstream_session: Some(UpstreamSession {
                connection_id: model.id.clone(),
                subject: a
                    .name_id
                    .as_ref()
                    .map_or_else(|| mapped.subject.clone(), |n| n.value.clone()),
                subject_format: a.name_id.as_ref().and_then(|n| n.format.clone()),
                session_index: a.session_index.clone(),
            }),
        })
    }
}

/// What the ACS needs of a connection besides the response, read once per store revision.
pub(crate) struct AcsContext {
    model: saml_connection::Model,
    options: super::ConnectionOptions,
    /// The IdP's signing certificates (DER), decoded from the row.
    idp_certs: Vec<Vec<u8>>,
    /// The organisation's verified domains: only addresses in them are vouched for.
    verified_domains: Vec<String>,
}

/// Why the ACS refused, before it is audited.
enum Refusal {
    Saml(SamlError),
    Policy(&'static str, String),
    Store(Error),
}

impl Refusal {
    fn policy(reason: &'static str, detail: &str) -> Self {
        Self::Policy(reason, detail.to_owned())
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

impl From<SamlError> for Refusal {
    fn from(e: SamlError) -> Self {
        Self::Saml(e)
    }
}

/// The record of one consumed assertion: its connection and ID, hashed, kept until the
/// assertion expires.
struct ReplayKey {
    id: String,
    expires_at: i64,
}

impl ReplayKey {
    fn new(connection_id: &str, a: &VerifiedAssertion) -> Self {
        let key = Sha256::digest(format!("{connection_id}\n{}", a.assertion_id).as_bytes());
        Self { id: key.iter().map(|b| format!("{b:02x}")).collect(), expires_at: a.expires_at }
    }

    /// Records the assertion ID: a second use fails on every node, since the insert of one
    /// primary key decides.
    async fn consume<C: sea_orm::ConnectionTrait>(
        self,
        conn: &C,
    ) -> std::result::Result<(), Refusal> {
        let row =
            saml_assertion_id::ActiveModel { id: Set(self.id), expires_at: Set(self.expires_at) };
        match saml_assertion_id::Entity::insert(row).exec_without_returning(conn).await {
            Ok(_) => Ok(()),
            Err(e) => match constraint_violation(&e) {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                    Err(Refusal::policy("replay", "assertion ID already used"))
                }
                _ => Err(Refusal::Store(e.into())),
            },
        }
    }
}
