//! Invitations to join an organisation, by email. The accept link carries a random token whose
//! SHA-256 is stored; the token is shown once, to the inviting admin and in the email.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};
use serde::Serialize;
use serde_json::json;

use crate::{
    Error, Result, Settings,
    identity::model::UserStatus,
    identity::users::normalize_email,
    infra::audit::{self, Actor},
    infra::crypto,
    infra::entity::{org_invitation, user, user_email},
    infra::ids,
    infra::mail::{MailKind, MailService},
    infra::store::Store,
    tenancy::access::{self, Need},
    tenancy::model::{Invitation, InvitationStatus, Membership},
    tenancy::orgs::{find_membership, insert_membership, lock_org, validate_role},
};

/// How long an invitation can be accepted.
pub const INVITATION_TTL_SECS: i64 = 7 * 86400;

/// A new invitation with its accept link, which only the inviter (and the email) ever see.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedInvitation {
    #[serde(flatten)]
    pub invitation: Invitation,
    pub accept_url: String,
}

/// Where an invitation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvitationSource<'a> {
    Admin { inviter: Option<&'a str> },
    Domain { domain_id: &'a str },
}

/// What stands between a signed-in user and an invitation that is still valid, when it is
/// something the user can fix: the page says so (and how) rather than "no longer valid".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptBlocker {
    /// The invitation was sent to another address.
    OtherAddress { invited: String },
    /// The invitation was sent to the user's address, which is not verified yet.
    UnverifiedAddress { email: String },
}

/// A valid invitation as its link's page shows it to a signed-in user.
#[derive(Debug, Clone)]
pub struct InvitationPreview {
    pub invitation: Invitation,
    pub organisation: crate::tenancy::model::Organisation,
    /// None when the user can accept it now.
    pub blocker: Option<AcceptBlocker>,
}

#[derive(Clone)]
pub struct InvitationService {
    store: Store,
    mail: MailService,
    public_url: String,
}

/// Marks stale pending invitations for (org, email) expired and tells whether a live one remains.
/// Runs under the organisation lock, so "one pending invitation per org and address" holds.
pub(crate) async fn has_live_pending<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    email: &str,
    now: i64,
) -> Result<bool> {
    org_invitation::Entity::update_many()
        .col_expr(org_invitation::Column::Status, Expr::value(InvitationStatus::Expired.as_str()))
        .filter(org_invitation::Column::OrgId.eq(org_id))
        .filter(org_invitation::Column::Email.eq(email))
        .filter(org_invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .filter(org_invitation::Column::ExpiresAt.lte(now))
        .exec(conn)
        .await?;
    Ok(org_invitation::Entity::find()
        .filter(org_invitation::Column::OrgId.eq(org_id))
        .filter(org_invitation::Column::Email.eq(email))
        .filter(org_invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .one(conn)
        .await?
        .is_some())
}

/// Inserts a pending invitation; returns it with its token (to be put in a link, or dropped).
pub(crate) async fn insert_invitation<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    email: &str,
    role: &str,
    source: InvitationSource<'_>,
    now: i64,
) -> Result<(org_invitation::Model, String)> {
    let token = crypto::random_secret();
    let (source_name, inviter, domain_id) = match source {
        InvitationSource::Admin { inviter } => ("admin", inviter, None),
        InvitationSource::Domain { domain_id } => ("domain", None, Some(domain_id)),
    };
    let m = org_invitation::ActiveModel {
        id: Set(ids::new_id(ids::INVITATION)),
        org_id: Set(org_id.to_owned()),
        email: Set(email.to_owned()),
        role: Set(role.to_owned()),
        token_hash: Set(crypto::hash_secret_hex(&token)),
        status: Set(InvitationStatus::Pending.as_str().into()),
        source: Set(source_name.into()),
        domain_id: Set(domain_id.map(str::to_owned)),
        inviter_user_id: Set(inviter.map(str::to_owned)),
        created_at: Set(now),
        expires_at: Set(now + INVITATION_TTL_SECS),
        accepted_at: Set(None),
        accepted_by: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok((m, token))
}

/// Tokens are our own URL-safe secrets; anything else cannot match and is not looked up.
fn plausible_token(token: &str) -> bool {
    (20..=128).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl InvitationService {
    pub fn new(store: Store, mail: MailService, settings: &Settings) -> Self {
        Self { store, mail, public_url: settings.public_url.clone() }
    }

    fn accept_url(&self, token: &str) -> String {
        format!("{}/invitations/accept?token={token}", self.public_url)
    }

    /// Invites `email` to the organisation with `role`, and queues the email in the same
    /// transaction. Refused when the address already has a pending invitation or belongs to a
    /// member.
    pub async fn invite(
        &self,
        org_id: &str,
        email: &str,
        role: &str,
        inviter_user_id: Option<&str>,
        actor: &Actor,
    ) -> Result<IssuedInvitation> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        validate_role(role)?;
        let email = normalize_email(email)?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let org = lock_org(&txn, org_id).await?;
        if let Some(owner) = user_email::Entity::find()
            .filter(user_email::Column::Email.eq(&email))
            .one(&txn)
            .await?
            && find_membership(&txn, org_id, &owner.user_id).await?.is_some()
        {
            return Err(Error::Conflict(format!("{email} is already a member")));
        }
        if has_live_pending(&txn, org_id, &email, now).await? {
            return Err(Error::Conflict(format!(
                "{email} already has a pending invitation; revoke it to send a new one"
            )));
        }
        let inviter_name = match inviter_user_id {
            Some(id) => user::Entity::find_by_id(id.to_owned())
                .one(&txn)
                .await?
                .map(|u| u.name.unwrap_or(u.primary_email)),
            None => None,
        };
        let (m, token) = insert_invitation(
            &txn,
            org_id,
            &email,
            role,
            InvitationSource::Admin { inviter: inviter_user_id },
            now,
        )
        .await?;
        let accept_url = self.accept_url(&token);
        audit::record(
            &txn,
            now,
            actor,
            "org.invitation_created",
            Some(org_id),
            json!({ "invitation_id": m.id, "email": email, "role": role, "source": "admin" }),
        )
        .await?;
        self.mail
            .enqueue(
                &txn,
                &email,
                MailKind::Invitation {
                    org_name: org.name,
                    link: accept_url.clone(),
                    inviter: inviter_name,
                },
            )
            .await?;
        txn.commit().await?;
        self.mail.notify();
        Ok(IssuedInvitation { invitation: Invitation::from_model(m, now), accept_url })
    }

    /// Invitations of the organisation that can still be accepted, oldest first.
    pub async fn list_pending(&self, org_id: &str, actor: &Actor) -> Result<Vec<Invitation>> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let now = self.store.now();
        Ok(org_invitation::Entity::find()
            .filter(org_invitation::Column::OrgId.eq(org_id))
            .filter(org_invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
            .filter(org_invitation::Column::ExpiresAt.gt(now))
            .order_by_asc(org_invitation::Column::CreatedAt)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|m| Invitation::from_model(m, now))
            .collect())
    }

    /// Withdraws a pending invitation; its link stops working at once.
    pub async fn revoke(
        &self,
        org_id: &str,
        invitation_id: &str,
        actor: &Actor,
    ) -> Result<Invitation> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let m = org_invitation::Entity::find_by_id(invitation_id.to_owned())
            .filter(org_invitation::Column::OrgId.eq(org_id))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("invitation {invitation_id}")))?;
        if InvitationStatus::of(&m, now) != InvitationStatus::Pending {
            return Err(Error::Conflict(format!("invitation {invitation_id} is not pending")));
        }
        let mut am: org_invitation::ActiveModel = m.into();
        am.status = Set(InvitationStatus::Revoked.as_str().into());
        am.revoked_at = Set(Some(now));
        let m = am.update(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.invitation_revoked",
            Some(org_id),
            json!({ "invitation_id": invitation_id, "email": m.email }),
        )
        .await?;
        txn.commit().await?;
        Ok(Invitation::from_model(m, now))
    }

    /// The invitation behind an accept-link token with its organisation, for showing the link's
    /// page before the user accepts. Used, expired and revoked invitations read as not found.
    pub async fn peek(
        &self,
        token: &str,
    ) -> Result<(Invitation, crate::tenancy::model::Organisation)> {
        let not_found = || Error::NotFound("invitation".into());
        if !plausible_token(token) {
            return Err(not_found());
        }
        let m = org_invitation::Entity::find()
            .filter(org_invitation::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .one(self.store.db())
            .await?
            .ok_or_else(not_found)?;
        let invitation = Invitation::from_model(m, self.store.now());
        if invitation.status != InvitationStatus::Pending {
            return Err(not_found());
        }
        let org = crate::infra::entity::organisation::Entity::find_by_id(invitation.org_id.clone())
            .one(self.store.db())
            .await?
            .ok_or_else(not_found)?;
        Ok((invitation, org.into()))
    }

    /// The invitation behind an accept-link token, and whether `user_id` can accept it now (the
    /// same rules as [`Self::accept`]). Invitations that can no longer be accepted read as not
    /// found, as in [`Self::peek`].
    pub async fn preview(&self, token: &str, user_id: &str) -> Result<InvitationPreview> {
        let (invitation, organisation) = self.peek(token).await?;
        let user = user::Entity::find_by_id(user_id.to_owned())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        let blocker = if !user.primary_email.eq_ignore_ascii_case(&invitation.email) {
            Some(AcceptBlocker::OtherAddress { invited: invitation.email.clone() })
        } else if !user.email_verified {
            Some(AcceptBlocker::UnverifiedAddress { email: user.primary_email })
        } else {
            None
        };
        Ok(InvitationPreview { invitation, organisation, blocker })
    }

    /// Accepts the invitation behind an accept-link token for `user_id`.
    pub async fn accept(&self, token: &str, user_id: &str, actor: &Actor) -> Result<Membership> {
        if !plausible_token(token) {
            return Err(Error::NotFound("invitation".into()));
        }
        let txn = self.store.begin_write().await?;
        let m = org_invitation::Entity::find()
            .filter(org_invitation::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound("invitation".into()))?;
        let membership = accept_in(&txn, m, user_id, actor, self.store.now()).await?;
        txn.commit().await?;
        Ok(membership)
    }

    /// Accepts an invitation addressed to the user, from their account page (automatic
    /// invitations have no link).
    pub async fn accept_by_id(
        &self,
        invitation_id: &str,
        user_id: &str,
        actor: &Actor,
    ) -> Result<Membership> {
        let txn = self.store.begin_write().await?;
        let m = org_invitation::Entity::find_by_id(invitation_id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("invitation {invitation_id}")))?;
        // Someone else's invitation reads as not found rather than as forbidden.
        let u = user::Entity::find_by_id(user_id.to_owned()).one(&txn).await?;
        if u.is_none_or(|u| u.primary_email != m.email) {
            return Err(Error::NotFound(format!("invitation {invitation_id}")));
        }
        let membership = accept_in(&txn, m, user_id, actor, self.store.now()).await?;
        txn.commit().await?;
        Ok(membership)
    }
}

/// Checks and consumes an invitation in the caller's transaction: it must be pending, and the
/// user's verified primary address must be the invited one. Existing members keep their role.
async fn accept_in<C: ConnectionTrait>(
    txn: &C,
    m: org_invitation::Model,
    user_id: &str,
    actor: &Actor,
    now: i64,
) -> Result<Membership> {
    lock_org(txn, &m.org_id).await?;
    // Re-read under the lock: a concurrent accept of the same token must see it used.
    let m = org_invitation::Entity::find_by_id(m.id.clone())
        .one(txn)
        .await?
        .ok_or_else(|| Error::NotFound("invitation".into()))?;
    match InvitationStatus::of(&m, now) {
        InvitationStatus::Pending => {}
        InvitationStatus::Accepted => {
            return Err(Error::Conflict("this invitation has already been used".into()));
        }
        InvitationStatus::Revoked => {
            return Err(Error::Conflict("this invitation has been revoked".into()));
        }
        InvitationStatus::Expired => {
            return Err(Error::Conflict("this invitation has expired".into()));
        }
    }
    let u = user::Entity::find_by_id(user_id.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
    if UserStatus::parse(&u.status) != UserStatus::Active {
        return Err(Error::Forbidden("the account is not active".into()));
    }
    if !u.primary_email.eq_ignore_ascii_case(&m.email) {
        return Err(Error::Forbidden(
            "this invitation was sent to a different email address".into(),
        ));
    }
    if !u.email_verified {
        return Err(Error::Forbidden(
            "verify your email address before accepting the invitation".into(),
        ));
    }
    let membership = match find_membership(txn, &m.org_id, user_id).await? {
        Some(existing) => existing,
        None => insert_membership(txn, &m.org_id, user_id, &m.role, now).await?,
    };
    let org_id = m.org_id.clone();
    let invitation_id = m.id.clone();
    let mut am: org_invitation::ActiveModel = m.into();
    am.status = Set(InvitationStatus::Accepted.as_str().into());
    am.accepted_at = Set(Some(now));
    am.accepted_by = Set(Some(user_id.to_owned()));
    am.update(txn).await?;
    audit::record(
        txn,
        now,
        actor,
        "org.invitation_accepted",
        Some(&org_id),
        json!({ "invitation_id": invitation_id, "user_id": user_id, "role": membership.role }),
    )
    .await?;
    Store::bump_revision(txn).await?;
    Ok(membership.into())
}

/// Pending invitations addressed to `email`, newest first, with their organisation.
pub(crate) async fn pending_for_email<C: ConnectionTrait>(
    conn: &C,
    email: &str,
    now: i64,
) -> Result<Vec<(org_invitation::Model, crate::infra::entity::organisation::Model)>> {
    use crate::infra::entity::organisation;
    let invitations = org_invitation::Entity::find()
        .filter(org_invitation::Column::Email.eq(email))
        .filter(org_invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
        .filter(org_invitation::Column::ExpiresAt.gt(now))
        .order_by_desc(org_invitation::Column::CreatedAt)
        .all(conn)
        .await?;
    let mut out = Vec::with_capacity(invitations.len());
    for inv in invitations {
        if let Some(org) = organisation::Entity::find_by_id(inv.org_id.clone()).one(conn).await? {
            out.push((inv, org));
        }
    }
    Ok(out)
}
