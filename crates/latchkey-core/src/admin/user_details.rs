//! What an administrator sees of one account beyond its row (memberships, linked identities,
//! lockout), and clearing a lockout. Instance actors only, as for changing accounts.

use sea_orm::EntityTrait;
use serde::Serialize;
use serde_json::json;

use crate::{
    Error, Result,
    identity::{external, external::ExternalIdentity, model::User},
    infra::{
        audit::{self, Actor},
        store::Store,
    },
    sign_in::throttle,
    tenancy::{access, model::UserOrganisation, orgs::OrgService},
};

/// One account as the console's user page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UserOverview {
    pub user: User,
    pub organisations: Vec<UserOrganisation>,
    pub identities: Vec<ExternalIdentity>,
    /// The applications the user has let act for them.
    pub consents: Vec<crate::oauth::model::ConsentInfo>,
    /// Until when password sign-in is locked, if it is now.
    pub locked_until: Option<i64>,
}

#[derive(Clone)]
pub struct UserDetails {
    store: Store,
    orgs: OrgService,
    grants: crate::oauth::OAuthService,
}

impl UserDetails {
    pub fn new(store: Store, orgs: OrgService, grants: crate::oauth::OAuthService) -> Self {
        Self { store, orgs, grants }
    }

    async fn require_instance(&self, actor: &Actor) -> Result<()> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(());
        }
        Err(Error::Forbidden("only instance administrators see accounts".into()))
    }

    async fn user(&self, id: &str) -> Result<User> {
        crate::infra::entity::user::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .map(User::from)
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    pub async fn overview(&self, actor: &Actor, id: &str) -> Result<UserOverview> {
        self.require_instance(actor).await?;
        let user = self.user(id).await?;
        let db = self.store.db();
        let now = self.store.now();
        let lock = throttle::Keys::new(&user.primary_email, None);
        let locked_until =
            throttle::status(db, &lock, now).await?.locked_until.filter(|t| *t > now);
        Ok(UserOverview {
            organisations: self.orgs.list_for_user(id).await?,
            identities: external::of_user(db, id).await?,
            consents: self.grants.consents_of(id).await?,
            locked_until,
            user,
        })
    }

    /// Clears the account's failed sign-in counter and lockout, audited as `user.unlocked`.
    pub async fn unlock(&self, actor: &Actor, id: &str) -> Result<()> {
        self.require_instance(actor).await?;
        let user = self.user(id).await?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        throttle::clear_account(&txn, &throttle::Keys::new(&user.primary_email, None)).await?;
        let data = json!({ "email": user.primary_email });
        audit::record(&txn, now, actor, "user.unlocked", Some(id), data).await?;
        txn.commit().await?;
        Ok(())
    }
}
