//! Enrollment through verified domains: what happens when someone with a verified address on an
//! organisation's verified domain signs up, and the join requests that follow.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde_json::json;

use crate::{
    Error, Result, Settings,
    identity::model::User,
    infra::audit::{self, Actor},
    infra::entity::{org_domain, org_join_request, organisation, user},
    infra::ids,
    infra::mail::{MailKind, MailService},
    infra::store::Store,
    tenancy::access::{self, Need},
    tenancy::invitations::{self, InvitationSource},
    tenancy::model::{
        EnrollmentMode, JoinRequest, JoinRequestStatus, JoinRequestView, JoinSuggestion,
        Membership, UserInvitation,
    },
    tenancy::orgs::{ROLE_MEMBER, admin_emails, find_membership, insert_membership, lock_org},
};

#[derive(Clone)]
pub struct EnrollmentService {
    store: Store,
    mail: MailService,
    public_url: String,
}

/// The domain part of a verified address, or None when the address does not count.
fn verified_domain_of(u: &user::Model) -> Option<&str> {
    if !u.email_verified {
        return None;
    }
    u.primary_email.rsplit_once('@').map(|(_, d)| d)
}

impl EnrollmentService {
    pub fn new(store: Store, mail: MailService, settings: &Settings) -> Self {
        Self { store, mail, public_url: settings.public_url.clone() }
    }

    /// Applies the enrollment of the user's verified domain (see [`enroll_new_user`]) in its own
    /// transaction.
    pub async fn on_sign_up(&self, user: &User) -> Result<()> {
        let txn = self.store.begin_write().await?;
        enroll_new_user(&txn, &user.id, self.store.now()).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Invitations the user can accept, for their account page.
    pub async fn pending_invitations_for_user(&self, user: &User) -> Result<Vec<UserInvitation>> {
        let pending =
            invitations::pending_for_email(self.store.db(), &user.primary_email, self.store.now())
                .await?;
        Ok(pending
            .into_iter()
            .map(|(inv, org)| UserInvitation {
                id: inv.id,
                org_id: org.id,
                org_name: org.name,
                org_slug: org.slug,
                role: inv.role,
                created_at: inv.created_at,
                expires_at: inv.expires_at,
            })
            .collect())
    }

    /// Organisations the user may ask to join (`suggested`) or has asked to (`pending`).
    pub async fn suggestions_for_user(&self, user: &User) -> Result<Vec<JoinSuggestion>> {
        let db = self.store.db();
        let rows = org_join_request::Entity::find()
            .filter(org_join_request::Column::UserId.eq(&user.id))
            .filter(org_join_request::Column::Status.is_in([
                JoinRequestStatus::Suggested.as_str(),
                JoinRequestStatus::Pending.as_str(),
            ]))
            .order_by_desc(org_join_request::Column::CreatedAt)
            .all(db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(org) = organisation::Entity::find_by_id(r.org_id.clone()).one(db).await? {
                out.push(JoinSuggestion {
                    status: JoinRequestStatus::parse(&r.status),
                    id: r.id,
                    org_id: org.id,
                    org_name: org.name,
                    org_slug: org.slug,
                    created_at: r.created_at,
                });
            }
        }
        Ok(out)
    }

    /// The user asks to join. Allowed when their verified address is on one of the
    /// organisation's verified domains in `automatic_suggestion` mode; the admins are emailed.
    /// Asking again while pending is a no-op; after a rejection it is refused.
    pub async fn request_to_join(
        &self,
        org_id: &str,
        user_id: &str,
        actor: &Actor,
    ) -> Result<JoinRequest> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let org = lock_org(&txn, org_id).await?;
        let u = user::Entity::find_by_id(user_id.to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
        let d = eligible_domain(&txn, org_id, &u).await?;
        if find_membership(&txn, org_id, user_id).await?.is_some() {
            return Err(Error::Conflict("you are already a member".into()));
        }
        let r = match upsert_request(&txn, org_id, user_id, &d.id, now).await? {
            Requested::AlreadyPending(r) => return Ok(r.into()),
            Requested::Now(r) => r,
        };
        audit::record(
            &txn,
            now,
            actor,
            "org.join_requested",
            Some(org_id),
            json!({ "join_request_id": r.id, "user_id": user_id }),
        )
        .await?;
        let requester = match &u.name {
            Some(name) => format!("{name} <{}>", u.primary_email),
            None => u.primary_email.clone(),
        };
        let link = format!("{}/organizations/{org_id}/join-requests", self.public_url);
        for admin in admin_emails(&txn, org_id).await? {
            self.mail
                .enqueue(
                    &txn,
                    &admin,
                    MailKind::JoinRequest {
                        org_name: org.name.clone(),
                        requester: requester.clone(),
                        link: link.clone(),
                    },
                )
                .await?;
        }
        txn.commit().await?;
        self.mail.notify();
        Ok(r.into())
    }

    /// Pending requests of the organisation with the requesters' identity, oldest first.
    pub async fn list_join_requests(
        &self,
        org_id: &str,
        actor: &Actor,
    ) -> Result<Vec<JoinRequestView>> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let db = self.store.db();
        let rows = org_join_request::Entity::find()
            .filter(org_join_request::Column::OrgId.eq(org_id))
            .filter(org_join_request::Column::Status.eq(JoinRequestStatus::Pending.as_str()))
            .order_by_asc(org_join_request::Column::RequestedAt)
            .all(db)
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let users: HashMap<String, user::Model> = user::Entity::find()
            .filter(user::Column::Id.is_in(rows.iter().map(|r| r.user_id.clone())))
            .all(db)
            .await?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect();
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let u = users.get(&r.user_id)?;
                Some(JoinRequestView {
                    email: u.primary_email.clone(),
                    name: u.name.clone(),
                    request: r.into(),
                })
            })
            .collect())
    }

    /// An admin approves a pending request: the requester becomes a `member`.
    pub async fn approve_join_request(
        &self,
        org_id: &str,
        request_id: &str,
        actor: &Actor,
    ) -> Result<Membership> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        access::authorize(&txn, org_id, actor, Need::Admin).await?;
        let r = self.pending_request(&txn, org_id, request_id).await?;
        let user_id = r.user_id.clone();
        let membership = match find_membership(&txn, org_id, &user_id).await? {
            Some(m) => m,
            None => insert_membership(&txn, org_id, &user_id, ROLE_MEMBER, now).await?,
        };
        self.decide(&txn, r, JoinRequestStatus::Approved, actor).await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.join_request_approved",
            Some(org_id),
            json!({ "join_request_id": request_id, "user_id": user_id, "role": membership.role }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(membership.into())
    }

    /// An admin declines a pending request; the user cannot ask again.
    pub async fn reject_join_request(
        &self,
        org_id: &str,
        request_id: &str,
        actor: &Actor,
    ) -> Result<JoinRequest> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        access::authorize(&txn, org_id, actor, Need::Admin).await?;
        let r = self.pending_request(&txn, org_id, request_id).await?;
        let user_id = r.user_id.clone();
        let r = self.decide(&txn, r, JoinRequestStatus::Rejected, actor).await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.join_request_rejected",
            Some(org_id),
            json!({ "join_request_id": request_id, "user_id": user_id }),
        )
        .await?;
        txn.commit().await?;
        Ok(r.into())
    }

    async fn pending_request<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        org_id: &str,
        request_id: &str,
    ) -> Result<org_join_request::Model> {
        let r = org_join_request::Entity::find_by_id(request_id.to_owned())
            .filter(org_join_request::Column::OrgId.eq(org_id))
            .one(conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("join request {request_id}")))?;
        match JoinRequestStatus::parse(&r.status) {
            JoinRequestStatus::Pending => Ok(r),
            // A suggestion the user never acted on is nothing an admin can decide.
            JoinRequestStatus::Suggested => {
                Err(Error::NotFound(format!("join request {request_id}")))
            }
            other => Err(Error::Conflict(format!(
                "join request {request_id} was already {}",
                other.as_str()
            ))),
        }
    }

    async fn decide<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        r: org_join_request::Model,
        status: JoinRequestStatus,
        actor: &Actor,
    ) -> Result<org_join_request::Model> {
        let mut am: org_join_request::ActiveModel = r.into();
        am.status = Set(status.as_str().into());
        am.decided_at = Set(Some(self.store.now()));
        am.decided_by = Set(Some(actor.name()));
        Ok(am.update(conn).await?)
    }
}

/// The organisation's verified domain, in `automatic_suggestion` mode, of the user's verified
/// address: what entitles them to ask to join.
async fn eligible_domain<C: ConnectionTrait>(
    txn: &C,
    org_id: &str,
    u: &user::Model,
) -> Result<org_domain::Model> {
    let found = match verified_domain_of(u) {
        Some(domain) => {
            org_domain::Entity::find()
                .filter(org_domain::Column::OrgId.eq(org_id))
                .filter(org_domain::Column::VerifiedDomain.eq(domain))
                .filter(
                    org_domain::Column::EnrollmentMode
                        .eq(EnrollmentMode::AutomaticSuggestion.as_str()),
                )
                .one(txn)
                .await?
        }
        None => None,
    };
    found.ok_or_else(|| {
        Error::Forbidden(
            "your verified email address does not allow requests to join this organisation".into(),
        )
    })
}

enum Requested {
    /// Asked before and still pending: nothing changes.
    AlreadyPending(org_join_request::Model),
    Now(org_join_request::Model),
}

/// Records a pending request to join: a new one, or a suggestion (or an old approval of someone
/// who has since left) turned into one. A declined request stays declined.
async fn upsert_request<C: ConnectionTrait>(
    txn: &C,
    org_id: &str,
    user_id: &str,
    domain_id: &str,
    now: i64,
) -> Result<Requested> {
    let existing = org_join_request::Entity::find()
        .filter(org_join_request::Column::OrgId.eq(org_id))
        .filter(org_join_request::Column::UserId.eq(user_id))
        .one(txn)
        .await?;
    let r = match existing {
        Some(r) => match JoinRequestStatus::parse(&r.status) {
            JoinRequestStatus::Pending => return Ok(Requested::AlreadyPending(r)),
            JoinRequestStatus::Rejected => {
                return Err(Error::Conflict(
                    "your request to join was declined; ask an admin for an invitation".into(),
                ));
            }
            JoinRequestStatus::Suggested | JoinRequestStatus::Approved => {
                let mut am: org_join_request::ActiveModel = r.into();
                am.status = Set(JoinRequestStatus::Pending.as_str().into());
                am.domain_id = Set(Some(domain_id.to_owned()));
                am.requested_at = Set(Some(now));
                am.decided_at = Set(None);
                am.decided_by = Set(None);
                am.update(txn).await?
            }
        },
        None => {
            org_join_request::ActiveModel {
                id: Set(ids::new_id(ids::JOIN_REQUEST)),
                org_id: Set(org_id.to_owned()),
                user_id: Set(user_id.to_owned()),
                domain_id: Set(Some(domain_id.to_owned())),
                status: Set(JoinRequestStatus::Pending.as_str().into()),
                created_at: Set(now),
                requested_at: Set(Some(now)),
                decided_at: Set(None),
                decided_by: Set(None),
            }
            .insert(txn)
            .await?
        }
    };
    Ok(Requested::Now(r))
}

/// For a new account whose address is verified, in the caller's transaction (the sign-in
/// completion's): the organisation that verified the address's domain applies its enrollment
/// mode. `automatic_invitation` creates a pending invitation (no mail: it shows on the account
/// page), `automatic_suggestion` a suggestion to request to join, `manual` nothing.
pub(crate) async fn enroll_new_user<C: ConnectionTrait>(
    txn: &C,
    user_id: &str,
    now: i64,
) -> Result<()> {
    // The stored row, not a caller's copy, decides whether the address is verified.
    let Some(u) = user::Entity::find_by_id(user_id.to_owned()).one(txn).await? else {
        return Err(Error::NotFound(format!("user {user_id}")));
    };
    let Some(domain) = verified_domain_of(&u) else {
        return Ok(());
    };
    let Some(d) = org_domain::Entity::find()
        .filter(org_domain::Column::VerifiedDomain.eq(domain))
        .one(txn)
        .await?
    else {
        return Ok(());
    };
    let mode = EnrollmentMode::parse(&d.enrollment_mode);
    if mode == EnrollmentMode::Manual {
        return Ok(());
    }
    lock_org(txn, &d.org_id).await?;
    if find_membership(txn, &d.org_id, &u.id).await?.is_some() {
        return Ok(());
    }
    match mode {
        EnrollmentMode::Manual => Ok(()),
        EnrollmentMode::AutomaticInvitation => invite_by_domain(txn, &u, &d, now).await,
        EnrollmentMode::AutomaticSuggestion => suggest_by_domain(txn, &u, &d, now).await,
    }
}

async fn invite_by_domain<C: ConnectionTrait>(
    txn: &C,
    u: &user::Model,
    d: &org_domain::Model,
    now: i64,
) -> Result<()> {
    if invitations::has_live_pending(txn, &d.org_id, &u.primary_email, now).await? {
        return Ok(());
    }
    // The token is dropped: this invitation is accepted from the account page.
    let (inv, _) = invitations::insert_invitation(
        txn,
        &d.org_id,
        &u.primary_email,
        ROLE_MEMBER,
        InvitationSource::Domain { domain_id: &d.id },
        now,
    )
    .await?;
    audit::record(
        txn,
        now,
        &Actor::system(),
        "org.invitation_created",
        Some(&d.org_id),
        json!({
            "invitation_id": inv.id, "email": u.primary_email, "role": ROLE_MEMBER,
            "source": "domain", "domain": d.domain,
        }),
    )
    .await
}

async fn suggest_by_domain<C: ConnectionTrait>(
    txn: &C,
    u: &user::Model,
    d: &org_domain::Model,
    now: i64,
) -> Result<()> {
    let existing = org_join_request::Entity::find()
        .filter(org_join_request::Column::OrgId.eq(&d.org_id))
        .filter(org_join_request::Column::UserId.eq(&u.id))
        .one(txn)
        .await?;
    if existing.is_some() {
        return Ok(());
    }
    let r = org_join_request::ActiveModel {
        id: Set(ids::new_id(ids::JOIN_REQUEST)),
        org_id: Set(d.org_id.clone()),
        user_id: Set(u.id.clone()),
        domain_id: Set(Some(d.id.clone())),
        status: Set(JoinRequestStatus::Suggested.as_str().into()),
        created_at: Set(now),
        requested_at: Set(None),
        decided_at: Set(None),
        decided_by: Set(None),
    }
    .insert(txn)
    .await?;
    audit::record(
        txn,
        now,
        &Actor::system(),
        "org.join_suggested",
        Some(&d.org_id),
        json!({ "join_request_id": r.id, "user_id": u.id, "domain": d.domain }),
    )
    .await
}
