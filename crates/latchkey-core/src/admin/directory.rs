//! The user directory as administrators see it: search and cursor pagination over all users
//! (instance actors) or over one organisation's members (that organisation's API keys). A
//! cursor is opaque to clients: the base64url of the last user ID of the page, so the next
//! page starts strictly after it whatever was inserted meanwhile, and a page costs the same
//! however deep it is (no OFFSET).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, ExprTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, Func, Query},
};

use crate::{
    Error, Result,
    identity::model::User,
    infra::{
        audit::{Actor, Principal},
        entity::{membership, user},
        ids,
        store::Store,
    },
    tenancy::access,
};

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 200;
/// A search string longer than any email address is no search.
const MAX_QUERY_CHARS: usize = 320;

/// One page of a listing, and where the next one starts (None on the last page).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

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
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 200"));
        }
        let mut select = user::Entity::find().order_by_asc(user::Column::Id);
        if let Some(after) = query.cursor.as_deref() {
            select = select.filter(user::Column::Id.gt(decode_cursor(after)?));
        }
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            select = select.filter(search(q)?);
        }
        if let Visibility::Members(org) = &visibility {
            select = select.filter(user::Column::Id.in_subquery(members_of(org)));
        }
        let mut rows = select.limit(limit + 1).all(self.store.db()).await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|u| encode_cursor(&u.id))
        } else {
            None
        };
        Ok(Page { data: rows.into_iter().map(User::from).collect(), next_cursor })
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

/// The users of an organisation (any membership status: a suspended member is still theirs
/// to see).
fn members_of(org_id: &str) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(membership::Column::UserId)
        .from(membership::Entity)
        .and_where(membership::Column::OrgId.eq(org_id))
        .to_owned()
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

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn encode_cursor(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let invalid = || Error::invalid("cursor", "is not a cursor of this listing");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let id = String::from_utf8(bytes).map_err(|_| invalid())?;
    if !ids::is_valid(ids::USER, &id) {
        return Err(invalid());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let id = ids::new_id(ids::USER);
        assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        for junk in ["", "!!", "dXNyX3g", &encode_cursor("org_01j0000000000000000000000")] {
            assert!(decode_cursor(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn like_wildcards_are_literal() {
        assert_eq!(escape_like("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
