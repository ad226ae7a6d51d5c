//! The user directory as administrators see it: search and cursor pagination (in ID order)
//! over all users (instance actors) or over one organisation's members (that organisation's
//! API keys).

use sea_orm::{
    ColumnTrait, Condition, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Func},
};

use super::paging::{Page, decode_id_cursor, id_cursor, members_of, page_of, page_size};
use crate::{
    Error, Result,
    identity::model::User,
    infra::{
        audit::{Actor, Principal},
        entity::user,
        ids,
        store::Store,
    },
    tenancy::access,
};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// A search string longer than any email address is no search.
const MAX_QUERY_CHARS: usize = 320;

/// A user search: `q` matches a user ID exactly, or an email or name by prefix (case-insensitive).
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

/// Which users an actor may see.
enum Visibility {
    All,
    Members(String),
}

#[derive(Clone)]
pub struct Directory {
    store: Store,
}

impl Directory {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn visibility(&self, actor: &Actor) -> Result<Visibility> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(Visibility::All);
        }
        match &actor.principal {
            Principal::ApiKey { org_id: Some(org), .. } => Ok(Visibility::Members(org.clone())),
            Principal::Anonymous => Err(Error::Unauthenticated("no credentials")),
            _ => Err(Error::Forbidden("only administrators may list users".into())),
        }
    }

    pub async fn users(&self, actor: &Actor, query: &UserQuery) -> Result<Page<User>> {
        let visibility = self.visibility(actor).await?;
        let limit = page_size(query.limit, DEFAULT_PAGE_SIZE)?;
        let mut select = user::Entity::find().order_by_asc(user::Column::Id);
        if let Some(after) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
            select = select.filter(user::Column::Id.gt(decode_id_cursor(after, ids::USER)?));
        }
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            select = select.filter(search(q)?);
        }
        if let Visibility::Members(org) = &visibility {
            select = select.filter(user::Column::Id.in_subquery(members_of(org)));
        }
        let rows = select.limit(limit + 1).all(self.store.db()).await?;
        Ok(page_of(rows, limit, |u| id_cursor(&u.id), User::from))
    }

    /// One user, if the actor may see them (else [`Error::NotFound`], as for no such user).
    pub async fn user(&self, actor: &Actor, id: &str) -> Result<User> {
        let visibility = self.visibility(actor).await?;
        let not_found = || Error::NotFound(format!("user {id}"));
        let mut select = user::Entity::find_by_id(id.to_owned());
        if let Visibility::Members(org) = &visibility {
            select = select.filter(user::Column::Id.in_subquery(members_of(org)));
        }
        select.one(self.store.db()).await?.map(User::from).ok_or_else(not_found)
    }
}

/// The search condition. Emails are stored lower-cased, so their prefix is a range on the
/// unique index (`>= q AND < q + U+FFFF`); names are compared lower-cased.
fn search(q: &str) -> Result<Condition> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::invalid("q", "is too long"));
    }
    if ids::is_valid(ids::USER, q) {
        return Ok(Condition::all().add(user::Column::Id.eq(q)));
    }
    let lower = q.to_lowercase();
    let upper_bound = format!("{lower}\u{ffff}");
    let pattern = format!("{}%", escape_like(&lower));
    let name = Expr::expr(Func::lower(Expr::col((user::Entity, user::Column::Name))))
        .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\'));
    Ok(Condition::any()
        .add(
            Condition::all()
                .add(user::Column::PrimaryEmail.gte(lower.clone()))
                .add(user::Column::PrimaryEmail.lt(upper_bound)),
        )
        .add(name))
}

/// `s` with LIKE's wildcards (and the escape character) made literal.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
