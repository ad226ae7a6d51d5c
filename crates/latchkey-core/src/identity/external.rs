//! External identities: who an upstream provider or an enterprise connection says someone is,
//! linked to one Latchkey user. An identity is keyed by (issuer, subject) — a SAML entity ID
//! and persistent NameID, an OIDC `iss` and `sub`, Microsoft's tenant and object ids — and never
//! by email address, which providers let people change. [`decide`] holds the linking rules.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use serde::Serialize;

use crate::infra::inline_sqlite::constraint_violation;
use crate::infra::{
    entity::external_identity,
    error::{Error, Result},
    ids,
};

/// What a provider asserted about the person who just signed in there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    /// The SAML IdP entity ID, or the OIDC issuer (for Microsoft, the tenant's issuer).
    pub issuer: String,
    /// The stable subject at that issuer.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches for the address (Google `email_verified`, Microsoft
    /// `xms_edov`, a SAML connection whose organisation verified the domain).
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
}

/// What a connection or provider allows when an identity is not linked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Create an account just in time for a new identity.
    pub provision: bool,
    /// Link a new identity to the existing account with the same, verified, address.
    pub link_verified_email: bool,
    /// The provider is the source of truth for the profile: every sign-in copies its names
    /// onto the linked account.
    pub refresh_profile: bool,
    /// The provider speaks for the address's whole domain (an organisation's connection for a
    /// domain it verified): it may claim an account whose address nobody verified yet. The
    /// claim takes the account over cleanly (see `users::claim_unverified`), since whoever made
    /// it never proved the address.
    pub domain_authority: bool,
    /// A new account may be created with an address the provider does not vouch for (consumer
    /// social sign-in: a Microsoft account without `xms_edov`). The address is stored
    /// unverified, so it never links and anyone who proves it later can claim it.
    pub provision_unverified: bool,
}

/// Why an identity cannot sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRefusal {
    /// The address belongs to an account this identity may not be linked to.
    AddressTaken,
    /// Nobody has this identity and the connection does not create accounts.
    NotProvisioned,
    /// A new account needs a verified address, and the provider gave none.
    NoVerifiedAddress,
}

impl LinkRefusal {
    pub fn message(self) -> &'static str {
        match self {
            Self::AddressTaken => {
                "this email address already belongs to an account; sign in to it first"
            }
            Self::NotProvisioned => "there is no account for this identity",
            Self::NoVerifiedAddress => "the identity provider did not confirm an email address",
        }
    }
}

/// The account an identity signs in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkVerdict {
    /// Already linked to this user.
    Linked(String),
    /// Link to this existing user, found by verified address.
    LinkExisting(String),
    /// Create an account for it.
    Provision,
    Refuse(LinkRefusal),
}

/// An existing account with the identity's address, as far as linking cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountByEmail {
    pub user_id: String,
    /// The account's address is verified (otherwise nobody proved they own it).
    pub email_verified: bool,
    /// The account already has another identity at the same issuer: a second one must not be
    /// attached to it silently.
    pub has_identity_at_issuer: bool,
}

/// The linking rules. An existing link always wins; otherwise an address only links when the
/// provider vouches for it, the account's own address is verified, and the account has no
/// other identity at that issuer; a new account needs a verified address too.
pub fn decide(
    link: Option<&external_identity::Model>,
    by_email: Option<&AccountByEmail>,
    up: &UpstreamIdentity,
    policy: LinkPolicy,
) -> LinkVerdict {
    if let Some(l) = link {
        return LinkVerdict::Linked(l.user_id.clone());
    }
    match by_email {
        Some(a) => {
            let may_link = policy.link_verified_email
                && up.email_verified
                && (a.email_verified || policy.domain_authority)
                && !a.has_identity_at_issuer;
            if may_link {
                LinkVerdict::LinkExisting(a.user_id.clone())
            } else {
                LinkVerdict::Refuse(LinkRefusal::AddressTaken)
            }
        }
        None if !policy.provision => LinkVerdict::Refuse(LinkRefusal::NotProvisioned),
        None if up.email.is_none() || !(up.email_verified || policy.provision_unverified) => {
            LinkVerdict::Refuse(LinkRefusal::NoVerifiedAddress)
        }
        None => LinkVerdict::Provision,
    }
}

/// An identity as listed for its account.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalIdentity {
    pub id: String,
    pub user_id: String,
    pub issuer: String,
    pub subject: String,
    pub connection_id: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
}

impl From<external_identity::Model> for ExternalIdentity {
    fn from(m: external_identity::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            issuer: m.issuer,
            subject: m.subject,
            connection_id: m.connection_id,
            email: m.email,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
        }
    }
}

pub(crate) async fn find<C: ConnectionTrait>(
    conn: &C,
    issuer: &str,
    subject: &str,
) -> Result<Option<external_identity::Model>> {
    Ok(external_identity::Entity::find()
        .filter(external_identity::Column::Issuer.eq(issuer))
        .filter(external_identity::Column::Subject.eq(subject))
        .one(conn)
        .await?)
}

/// The link of (issuer, subject), marked used now with the address the provider sent, in one
/// statement: a returning identity, the common case, needs nothing else from this table.
pub(crate) async fn find_and_touch<C: ConnectionTrait>(
    conn: &C,
    issuer: &str,
    subject: &str,
    email: Option<&str>,
    now: i64,
) -> Result<Option<external_identity::Model>> {
    Ok(external_identity::Entity::update_many()
        .col_expr(external_identity::Column::LastUsedAt, Expr::value(now))
        .col_expr(external_identity::Column::Email, Expr::value(email.map(str::to_owned)))
        .filter(external_identity::Column::Issuer.eq(issuer))
        .filter(external_identity::Column::Subject.eq(subject))
        .exec_with_returning(conn)
        .await?
        .into_iter()
        .next())
}

pub(crate) async fn has_identity_at<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    issuer: &str,
) -> Result<bool> {
    Ok(external_identity::Entity::find()
        .filter(external_identity::Column::UserId.eq(user_id))
        .filter(external_identity::Column::Issuer.eq(issuer))
        .one(conn)
        .await?
        .is_some())
}

/// Links `up` to `user_id` in the caller's transaction. The unique (issuer, subject) index
/// makes a concurrent second link of the same identity fail instead of creating two.
pub(crate) async fn link<C: ConnectionTrait>(
    conn: &C,
    user_id: &str,
    up: &UpstreamIdentity,
    connection_id: Option<&str>,
    now: i64,
) -> Result<external_identity::Model> {
    let model = external_identity::Model {
        id: ids::new_id(ids::EXTERNAL_IDENTITY),
        user_id: user_id.to_owned(),
        issuer: up.issuer.clone(),
        subject: up.subject.clone(),
        connection_id: connection_id.map(str::to_owned),
        email: up.email.clone(),
        created_at: now,
        last_used_at: now,
    };
    external_identity::Entity::insert(external_identity::ActiveModel {
        id: Set(model.id.clone()),
        user_id: Set(model.user_id.clone()),
        issuer: Set(model.issuer.clone()),
        subject: Set(model.subject.clone()),
        connection_id: Set(model.connection_id.clone()),
        email: Set(model.email.clone()),
        created_at: Set(now),
        last_used_at: Set(now),
    })
    .exec_without_returning(conn)
    .await
    .map_err(|e| match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict("this identity was linked to an account meanwhile; try again".into())
        }
        _ => e.into(),
    })?;
    Ok(model)
}

/// Records a sign-in through an existing link (and the address the provider now reports).
pub(crate) async fn touch<C: ConnectionTrait>(
    conn: &C,
    id: &str,
    email: Option<&str>,
    now: i64,
) -> Result<()> {
    external_identity::Entity::update_many()
        .col_expr(external_identity::Column::LastUsedAt, Expr::value(now))
        .col_expr(external_identity::Column::Email, Expr::value(email.map(str::to_owned)))
        .filter(external_identity::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A user's linked identities, oldest first.
pub async fn of_user<C: ConnectionTrait>(conn: &C, user_id: &str) -> Result<Vec<ExternalIdentity>> {
    Ok(external_identity::Entity::find()
        .filter(external_identity::Column::UserId.eq(user_id))
        .order_by_asc(external_identity::Column::CreatedAt)
        .all(conn)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            issuer: "https://idp.example.com".into(),
            subject: "00u1".into(),
            email: Some("ada@example.com".into()),
            email_verified: verified,
            given_name: None,
            family_name: None,
            name: None,
        }
    }

    fn account(verified: bool, has_identity: bool) -> AccountByEmail {
        AccountByEmail {
            user_id: "usr_1".into(),
            email_verified: verified,
            has_identity_at_issuer: has_identity,
        }
    }

    const OPEN: LinkPolicy = LinkPolicy {
        provision: true,
        link_verified_email: true,
        refresh_profile: false,
        domain_authority: false,
        provision_unverified: false,
    };

    #[test]
    fn an_existing_link_wins_over_everything() {
        let link = external_identity::Model {
            id: "ext_1".into(),
            user_id: "usr_9".into(),
            issuer: "i".into(),
            subject: "s".into(),
            connection_id: None,
            email: None,
            created_at: 0,
            last_used_at: 0,
        };
        let closed = LinkPolicy { provision: false, link_verified_email: false, ..OPEN };
        let other = account(true, false);
        assert_eq!(
            decide(Some(&link), Some(&other), &up(false), closed),
            LinkVerdict::Linked("usr_9".into())
        );
    }

    #[test]
    fn an_address_links_only_when_everyone_vouches_for_it() {
        let verdict = |a: AccountByEmail, verified: bool, p: LinkPolicy| {
            decide(None, Some(&a), &up(verified), p)
        };
        assert_eq!(
            verdict(account(true, false), true, OPEN),
            LinkVerdict::LinkExisting("usr_1".into())
        );
        let taken = LinkVerdict::Refuse(LinkRefusal::AddressTaken);
        // The provider does not vouch for the address.
        assert_eq!(verdict(account(true, false), false, OPEN), taken);
        // Nobody proved they own the existing account's address.
        assert_eq!(verdict(account(false, false), true, OPEN), taken);
        // The account already has an identity at this issuer.
        assert_eq!(verdict(account(true, true), true, OPEN), taken);
        // The connection does not link by address.
        let no_link = LinkPolicy { link_verified_email: false, ..OPEN };
        assert_eq!(verdict(account(true, false), true, no_link), taken);
        // The domain's own connection claims an account nobody verified, but never one that
        // already has an identity there.
        let authority = LinkPolicy { domain_authority: true, ..OPEN };
        assert_eq!(
            verdict(account(false, false), true, authority),
            LinkVerdict::LinkExisting("usr_1".into())
        );
        assert_eq!(verdict(account(false, true), true, authority), taken);
        assert_eq!(verdict(account(false, false), false, authority), taken);
    }

    #[test]
    fn new_accounts_need_provisioning_and_a_verified_address() {
        assert_eq!(decide(None, None, &up(true), OPEN), LinkVerdict::Provision);
        assert_eq!(
            decide(None, None, &up(false), OPEN),
            LinkVerdict::Refuse(LinkRefusal::NoVerifiedAddress)
        );
        let mut no_email = up(true);
        no_email.email = None;
        assert_eq!(
            decide(None, None, &no_email, OPEN),
            LinkVerdict::Refuse(LinkRefusal::NoVerifiedAddress)
        );
        let closed = LinkPolicy { provision: false, ..OPEN };
        assert_eq!(
            decide(None, None, &up(true), closed),
            LinkVerdict::Refuse(LinkRefusal::NotProvisioned)
        );
        // Social sign-in may create an account with an unvouched address, never link by it.
        let social = LinkPolicy { provision_unverified: true, ..OPEN };
        assert_eq!(decide(None, None, &up(false), social), LinkVerdict::Provision);
        assert_eq!(
            decide(None, Some(&account(true, false)), &up(false), social),
            LinkVerdict::Refuse(LinkRefusal::AddressTaken)
        );
    }
}
