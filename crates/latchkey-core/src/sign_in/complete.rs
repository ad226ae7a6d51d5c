//! The one completion of every sign-in. A method (password, sign-up code, SAML, upstream OIDC)
//! first verifies who is there in its own way; [`SignInService::complete`] then, in one
//! transaction: resolves the account (the verified user, a new account, or the account an
//! external identity is linked to, linking or provisioning it just in time under the
//! connection's policy), checks it is active, applies the organisation membership a connection
//! grants and the enrollment of a new account's verified domain, starts the session with its
//! method, records the audit event and gives back the attempt's throttle reservation. A crash at
//! any point leaves either all of it or none of it.

use sea_orm::{ConnectionTrait, EntityTrait};
use serde_json::json;

use super::{ClientInfo, SignInService, throttle};
use crate::{
    Error, Result,
    identity::{
        external::{self, AccountByEmail, LinkPolicy, LinkVerdict, UpstreamIdentity},
        method::AuthMethod,
        model::{Session, User, UserStatus},
        sessions::{self, SessionOrigin},
        users::{self, NewUser},
    },
    infra::audit::{self, Actor},
    tenancy::{enrollment, orgs},
};

/// Who a method verified.
#[derive(Debug, Clone)]
pub enum VerifiedSubject {
    /// A known account, proven by its own credentials.
    User(String),
    /// A new account whose address was just proven (sign-up with an emailed code).
    NewAccount { email: String, password_hash: String },
    /// An identity asserted by an enterprise connection or an upstream provider.
    Upstream { identity: UpstreamIdentity, policy: LinkPolicy },
}

/// A membership an enterprise connection grants everyone who signs in through it.
#[derive(Debug, Clone)]
pub struct OrgGrant {
    pub org_id: String,
    pub role: String,
    /// The connection decides the role (mapped from the IdP's groups): every sign-in sets it,
    /// taking away a role the IdP no longer grants. Otherwise an existing role is kept.
    pub authoritative: bool,
}

/// Who the upstream provider says this session is, so its logout request can find it.
#[derive(Debug, Clone)]
pub struct UpstreamSession {
    pub connection_id: String,
    pub subject: String,
    pub subject_format: Option<String>,
    pub session_index: Option<String>,
}

/// The outcome of a method's own verification, handed to [`SignInService::complete`].
#[derive(Debug, Clone)]
pub struct Verified {
    pub method: AuthMethod,
    pub subject: VerifiedSubject,
    pub join: Option<OrgGrant>,
    pub upstream_session: Option<UpstreamSession>,
}

/// A new session: what the browser must store as its cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: Session,
    pub secret: String,
    /// The account was created by this sign-in.
    pub created: bool,
}

/// How the account behind a sign-in was found.
struct Resolved {
    user_id: String,
    created: bool,
    linked: bool,
    /// A linked identity's provider is the source of the account's names: copy them over.
    refresh_profile: bool,
}

impl SignInService {
    /// Completes a verified sign-in in one transaction (see the module documentation). A
    /// refusal (an inactive account, an address that belongs to someone else, a connection that
    /// does not provision) is audited as `sign_in.failed` and changes nothing else.
    pub async fn complete(&self, verified: Verified, client: &ClientInfo) -> Result<SignedIn> {
        let now = self.store.now();
        let mut outcome = self.complete_once(&verified, client, now).await;
        // Two first sign-ins of one new identity race to create its account; the loser finds
        // the winner's link on a second try.
        if matches!(outcome, Err(Error::Conflict(_)))
            && matches!(verified.subject, VerifiedSubject::Upstream { .. })
        {
            outcome = self.complete_once(&verified, client, now).await;
        }
        match outcome {
            Ok(signed_in) => Ok(signed_in),
            Err(e) => {
                let data = json!({ "method": verified.method, "reason": e.to_string() });
                let actor = client.actor_for(None);
                audit::record(self.store.db(), now, &actor, "sign_in.failed", None, data).await?;
                Err(e)
            }
        }
    }

    async fn complete_once(
        &self,
        verified: &Verified,
        client: &ClientInfo,
        now: i64,
    ) -> Result<SignedIn> {
        let (this, verified, client) = (self.clone(), verified.clone(), client.clone());
        self.store
            .write(move |txn| {
                Box::pin(async move { this.complete_in(txn, &verified, &client, None, now).await })
            })
            .await
    }

    /// [`Self::complete`] inside the caller's transaction, which may already hold the method's
    /// own writes (a used sign-up code). `throttle` is the attempt's reservation to give back.
    pub(crate) async fn complete_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        v: &Verified,
        client: &ClientInfo,
        throttle: Option<&throttle::Keys>,
        now: i64,
    ) -> Result<SignedIn> {
        let resolved = self.resolve(txn, v, client, now).await?;
        let user_id = resolved.user_id.as_str();
        let mut account = sessions::stamp_sign_in(txn, user_id, now).await?;
        if let (true, VerifiedSubject::Upstream { identity, .. }) =
            (resolved.refresh_profile, &v.subject)
        {
            account = users::refresh_profile(txn, account, identity, now).await?;
        }
        if UserStatus::parse(&account.status) != UserStatus::Active {
            return Err(Error::Forbidden("this account is not active".into()));
        }
        if let Some(grant) = &v.join {
            if grant.authoritative {
                orgs::set_member_role(txn, &grant.org_id, user_id, &grant.role, now).await?;
            } else {
                orgs::ensure_member(txn, &grant.org_id, user_id, &grant.role, now).await?;
            }
        }
        if resolved.created {
            enrollment::enroll_new_user(txn, user_id, now).await?;
        }
        let actor = client.actor_for(Some(user_id));
        let origin = SessionOrigin {
            auth_method: v.method.clone(),
            client_ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            // Signed in through an organisation's connection: that organisation is active.
            active_org_id: v.join.as_ref().map(|g| g.org_id.clone()),
        };
        let mut events = audit::Batch::default();
        let (session, secret) =
            self.sessions.start_in(txn, &account, &origin, &actor, now, &mut events).await?;
        if let Some(up) = &v.upstream_session {
            record_upstream_session(txn, &session.id, up, now).await?;
        }
        let action = match v.subject {
            VerifiedSubject::NewAccount { .. } => "sign_up.completed",
            _ => "sign_in.succeeded",
        };
        let data = json!({
            "method": v.method, "session_id": session.id, "email": account.primary_email,
            "provisioned": resolved.created, "linked": resolved.linked,
        });
        events.add(now, &actor, action, Some(user_id), data);
        events.write(txn).await?;
        if let Some(keys) = throttle {
            throttle::succeeded(txn, keys).await?;
        }
        Ok(SignedIn { user: account.into(), session, secret, created: resolved.created })
    }

    /// Finds or makes the account a verified subject signs in to.
    async fn resolve<C: ConnectionTrait>(
        &self,
        txn: &C,
        v: &Verified,
        client: &ClientInfo,
        now: i64,
    ) -> Result<Resolved> {
        match &v.subject {
            VerifiedSubject::User(id) => Ok(Resolved {
                user_id: id.clone(),
                created: false,
                linked: false,
                refresh_profile: false,
            }),
            VerifiedSubject::NewAccount { email, password_hash } => {
                let new =
                    NewUser { email: email.clone(), email_verified: true, ..NewUser::default() };
                let actor = client.actor_for(None);
                let u =
                    users::insert_user(txn, new, Some(password_hash.clone()), &actor, now).await?;
                Ok(Resolved { user_id: u.id, created: true, linked: false, refresh_profile: false })
            }
            VerifiedSubject::Upstream { identity, policy } => {
                self.resolve_upstream(txn, identity, *policy, &v.method, now).await
            }
        }
    }

    async fn resolve_upstream<C: ConnectionTrait>(
        &self,
        txn: &C,
        up: &UpstreamIdentity,
        policy: LinkPolicy,
        method: &AuthMethod,
        now: i64,
    ) -> Result<Resolved> {
        let connection_id = match method {
            AuthMethod::Saml { connection_id } => Some(connection_id.as_str()),
            AuthMethod::UpstreamOidc { connection_id, .. } => connection_id.as_deref(),
            AuthMethod::Password | AuthMethod::Operator => None,
        };
        // A linked identity is the common case, and the link decides alone: it is found and
        // marked used at once.
        let email = up.email.as_deref();
        let touched = external::find_and_touch(txn, &up.issuer, &up.subject, email, now).await?;
        if let Some(l) = touched {
            let refresh_profile = policy.refresh_profile;
            return Ok(Resolved {
                user_id: l.user_id,
                created: false,
                linked: false,
                refresh_profile,
            });
        }
        // Not linked yet: the address first, the link again last: an account that a concurrent
        // first sign-in of this identity just created is then always seen with its link, never
        // as someone else's.
        let by_email = self.account_by_email(txn, up).await?;
        let link = external::find(txn, &up.issuer, &up.subject).await?;
        match external::decide(link.as_ref(), by_email.as_ref(), up, policy) {
            LinkVerdict::Linked(user_id) => {
                if let Some(l) = &link {
                    external::touch(txn, &l.id, up.email.as_deref(), now).await?;
                }
                let refresh_profile = policy.refresh_profile;
                Ok(Resolved { user_id, created: false, linked: false, refresh_profile })
            }
            LinkVerdict::LinkExisting(user_id) => {
                external::link(txn, &user_id, up, connection_id, now).await?;
                if by_email.as_ref().is_some_and(|a| !a.email_verified) {
                    users::claim_unverified(txn, &user_id, up.email.as_deref(), now).await?;
                }
                Ok(Resolved { user_id, created: false, linked: true, refresh_profile: false })
            }
            LinkVerdict::Provision => {
                let new = NewUser {
                    email: up.email.clone().unwrap_or_default(),
                    email_verified: up.email_verified,
                    name: up.name.clone(),
                    given_name: up.given_name.clone(),
                    family_name: up.family_name.clone(),
                    ..NewUser::default()
                };
                let u = users::insert_user(txn, new, None, &Actor::system(), now).await?;
                external::link(txn, &u.id, up, connection_id, now).await?;
                Ok(Resolved { user_id: u.id, created: true, linked: true, refresh_profile: false })
            }
            LinkVerdict::Refuse(why) => Err(Error::Forbidden(why.message().into())),
        }
    }

    /// The account holding the identity's address, if the address is one we could store.
    async fn account_by_email<C: ConnectionTrait>(
        &self,
        txn: &C,
        up: &UpstreamIdentity,
    ) -> Result<Option<AccountByEmail>> {
        let Some(email) = up.email.as_deref() else { return Ok(None) };
        let Some((account, verified)) = users::find_by_email_in(txn, email).await? else {
            return Ok(None);
        };
        let has_identity_at_issuer =
            external::has_identity_at(txn, &account.id, &up.issuer).await?;
        Ok(Some(AccountByEmail {
            user_id: account.id,
            email_verified: verified,
            has_identity_at_issuer,
        }))
    }
}

/// Links a new session to the upstream provider's session (SAML NameID and SessionIndex).
async fn record_upstream_session<C: ConnectionTrait>(
    txn: &C,
    session_id: &str,
    up: &UpstreamSession,
    now: i64,
) -> Result<()> {
    use sea_orm::ActiveValue::Set;

    use crate::infra::entity::session_upstream;
    session_upstream::Entity::insert(session_upstream::ActiveModel {
        session_id: Set(session_id.to_owned()),
        connection_id: Set(up.connection_id.clone()),
        subject: Set(up.subject.clone()),
        subject_format: Set(up.subject_format.clone()),
        session_index: Set(up.session_index.clone()),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}
