//! Organisations as administrators manage them: listed and searched (instance actors see all,
//! an organisation's key its own), read, and renamed or re-slugged with a precondition checked
//! on the locked row and the before/after audited. Creating one is for instance actors.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Func},
};
use serde_json::{Map, json};

use super::paging::{Page, decode_id_cursor, id_cursor, page_of, page_size};
use crate::{
    Error, Result,
    enterprise::{easie::EasieService, saml::SamlService},
    infra::{
        audit::{self, Actor, Principal},
        entity::{membership, organisation, session},
        ids,
        store::Store,
    },
    tenancy::{
        access::{self, Need},
        model::Organisation,
        orgs::{OrgService, validate_slug},
    },
};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_NAME_CHARS: usize = 256;

/// An organisation search: `q` matches an ID exactly, or a slug or name by prefix
/// (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct OrgQuery {
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OrgPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
}

#[derive(Clone)]
pub struct OrgAdmin {
    store: Store,
    orgs: OrgService,
    saml: SamlService,
    easie: EasieService,
}

impl OrgAdmin {
    pub fn new(store: Store, orgs: OrgService, saml: SamlService, easie: EasieService) -> Self {
        Self { store, orgs, saml, easie }
    }

    /// Deletes an organisation (instance actors only). Its connections go first, each as its
    /// own deletion does it (the sessions they signed in end, with back-channel logout; the
    /// EASIE grants are revoked); then, in one transaction, sessions forget it as their active
    /// organisation and the organisation goes with its memberships, domains, invitations, join
    /// requests and API keys. Users stay. Audited `org.deleted` with what it was.
    pub async fn delete(&self, actor: &Actor, id: &str) -> Result<()> {
        if !access::is_instance_actor(self.store.db(), actor).await? {
            return Err(Error::Forbidden(
                "only instance administrators delete organisations".into(),
            ));
        }
        let org = self.orgs.get(id).await?;
        for c in self.saml.list(Some(id), actor).await? {
            self.saml.delete(&c.connection_id, actor).await?;
        }
        for c in self.easie.list(Some(id), actor).await? {
            self.easie.delete(&c.connection_id, actor).await?;
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        session::Entity::update_many()
            .col_expr(session::Column::ActiveOrgId, Expr::value(None::<String>))
            .filter(session::Column::ActiveOrgId.eq(id))
            .exec(&txn)
            .await?;
        let in_org = membership::Entity::find().filter(membership::Column::OrgId.eq(id));
        let members = sea_orm::PaginatorTrait::count(in_org, &txn).await?;
        organisation::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
        let data = json!({ "name": org.name, "slug": org.slug, "members": members });
        audit::record(&txn, now, actor, "org.deleted", Some(id), data).await?;
        // Roles and memberships are in session tokens.
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn list(&self, actor: &Actor, q: &OrgQuery) -> Result<Page<Organisation>> {
        let db = self.store.db();
        let limit = page_size(q.limit, DEFAULT_PAGE_SIZE)?;
        let mut select = organisation::Entity::find().order_by_asc(organisation::Column::Id);
        if !access::is_instance_actor(db, actor).await? {
            match &actor.principal {
                Principal::ApiKey { org_id: Some(own), .. } => {
                    select = select.filter(organisation::Column::Id.eq(own.as_str()));
                }
                _ => return Err(Error::Forbidden("only administrators list organisations".into())),
            }
        }
        if let Some(after) = q.cursor.as_deref().filter(|c| !c.is_empty()) {
            let after = decode_id_cursor(after, ids::ORGANISATION)?;
            select = select.filter(organisation::Column::Id.gt(after));
        }
        if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            select = select.filter(search(text));
        }
        let rows = select.limit(limit + 1).all(db).await?;
        Ok(page_of(rows, limit, |o| id_cursor(&o.id), Organisation::from))
    }

    /// One organisation the actor may administer (else [`Error::NotFound`] or
    /// [`Error::Forbidden`], as every organisation check answers).
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<Organisation> {
        access::authorize(self.store.db(), id, actor, Need::Admin).await?;
        self.orgs.get(id).await
    }

    pub async fn create(&self, actor: &Actor, name: &str, slug: &str) -> Result<Organisation> {
        if !access::is_instance_actor(self.store.db(), actor).await? {
            return Err(Error::Forbidden(
                "only instance administrators create organisations".into(),
            ));
        }
        self.orgs.create(name, slug, actor).await
    }

    /// Applies `patch` if `precondition` holds for the organisation as stored when the change
    /// begins (else [`Error::PreconditionFailed`]). Nothing to change writes nothing.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        patch: &OrgPatch,
        precondition: impl Fn(&Organisation) -> bool + Send,
    ) -> Result<Organisation> {
        let name = patch.name.as_deref().map(str::trim);
        if name.is_some_and(|n| n.is_empty() || n.chars().count() > MAX_NAME_CHARS) {
            return Err(Error::invalid("name", "must be 1-256 characters"));
        }
        if let Some(slug) = &patch.slug {
            validate_slug(slug)?;
        }
        let txn = self.store.begin_write().await?;
        access::authorize(&txn, id, actor, Need::Admin).await?;
        let existing = organisation::Entity::find_by_id(id.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("organisation {id}")))?;
        if !precondition(&Organisation::from(existing.clone())) {
            return Err(Error::PreconditionFailed(
                "the organisation changed since it was read; read it again".into(),
            ));
        }
        let mut changes = Map::new();
        let mut am: organisation::ActiveModel = existing.clone().into();
        if let Some(n) = name.filter(|n| *n != existing.name) {
            changes.insert("name".into(), json!({ "before": existing.name, "after": n }));
            am.name = Set(n.to_owned());
        }
        if let Some(s) = patch.slug.as_deref().filter(|s| *s != existing.slug) {
            let taken = organisation::Entity::find()
                .filter(organisation::Column::Slug.eq(s))
                .one(&txn)
                .await?
                .is_some();
            if taken {
                return Err(Error::Conflict(format!(
                    "an organisation with slug {s} already exists"
                )));
            }
            changes.insert("slug".into(), json!({ "before": existing.slug, "after": s }));
            am.slug = Set(s.to_owned());
        }
        if changes.is_empty() {
            return Ok(existing.into());
        }
        let now = self.store.now();
        am.updated_at = Set(now);
        let updated = am.update(&txn).await?;
        audit::record(&txn, now, actor, "org.updated", Some(id), json!({ "changes": changes }))
            .await?;
        txn.commit().await?;
        Ok(updated.into())
    }
}

/// An exact ID, or a slug or name prefix (slugs are lower case; names compared lower-cased).
fn search(q: &str) -> Condition {
    if ids::is_valid(ids::ORGANISATION, q) {
        return Condition::all().add(organisation::Column::Id.eq(q));
    }
    let lower = q.to_lowercase();
    let pattern = format!("{}%", super::directory::escape_like(&lower));
    let like = |col: organisation::Column| {
        Expr::expr(Func::lower(Expr::col((organisation::Entity, col))))
            .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\'))
    };
    Condition::any().add(like(organisation::Column::Slug)).add(like(organisation::Column::Name))
}
