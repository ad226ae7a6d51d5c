//! The user directory as administrators see it: search and cursor pagination (in ID order)
//! over all users (instance actors) or over one organisation's members (that organisation's
//! API keys).

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, Order, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, Func, Query},
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
        let mut scope = Condition::all();
        if let Some(after) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
            scope = scope.add(user::Column::Id.gt(decode_id_cursor(after, ids::USER)?));
        }
        if let Visibility::Members(org) = &visibility {
            scope = scope.add(user::Column::Id.in_subquery(members_of(org)));
        }
        let search = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => search(q)?,
            None => Search::All,
        };
        let filter = match search {
            Search::All => scope,
            Search::Id(id) => scope.add(user::Column::Id.eq(id)),
            Search::Prefix(prefix) => match self.narrow_matches(&prefix, &scope, limit).await? {
                Some(ids) => Condition::all().add(user::Column::Id.is_in(ids)),
                None => scope.add(prefix.in_id_order()),
            },
        };
        let rows = user::Entity::find()
            .filter(filter)
            .order_by_asc(user::Column::Id)
            .limit(limit + 1)
            .all(self.store.db())
            .await?;
        Ok(page_of(rows, limit, |u| id_cursor(&u.id), User::from))
    }

    /// The IDs of the next `limit + 1` matches of a prefix search (within `scope`: after the
    /// cursor, among the visible users), when each branch has at most [`NARROW`] matches in
    /// scope; None when one has more.
    ///
    /// Why two strategies: a page is in ID order, and no one index serves both "email (or
    /// name) starts with q" and "in ID order after the cursor". Reading a branch's matches
    /// from its (prefix, id) index costs what the branch matches (all of them are sorted by ID
    /// to find the page); walking the primary key from the cursor and testing each user costs
    /// the page size divided by the share of users that match. The first is cheap for rare
    /// prefixes (an email, a surname), the second for common ones (`ma`), and each is slow
    /// where the other is cheap. So each branch's matches are counted from its index, up to
    /// NARROW: when both are under it, their pages come from the indexes (two covering index
    /// range scans of at most NARROW entries, each sorted by ID with LIMIT, merged here); when
    /// one is over, at least NARROW of the users after the cursor match, and the walk in ID
    /// order finds a page quickly (about `limit × users / NARROW` users read at worst, when the
    /// matches are spread evenly). An OR of the two ranges in one query is not used: SQLite
    /// answers it with a multi-index OR that reads every match and sorts, PostgreSQL with a
    /// bitmap OR that does the same, which is the slow case for common prefixes.
    async fn narrow_matches(
        &self,
        prefix: &Prefix,
        scope: &Condition,
        limit: u64,
    ) -> Result<Option<Vec<String>>> {
        let db = self.store.db();
        let mut ids = Vec::new();
        for branch in prefix.branches() {
            // SELECT id, COUNT(*) OVER () FROM (SELECT id FROM users WHERE <branch> AND <scope>
            // LIMIT NARROW + 1) ORDER BY id LIMIT limit + 1
            let inner = Query::select()
                .column(user::Column::Id)
                .from(user::Entity)
                .cond_where(Condition::all().add(branch).add(scope.clone()))
                .limit(NARROW + 1)
                .to_owned();
            let outer = Query::select()
                .column(user::Column::Id)
                .expr_as(Expr::cust("COUNT(*) OVER ()"), "matches")
                .from_subquery(inner, "branch")
                .order_by(user::Column::Id, Order::Asc)
                .limit(limit + 1)
                .to_owned();
            for row in db.query_all(&outer).await? {
                if row.try_get::<i64>("", "matches")? > NARROW.cast_signed() {
                    return Ok(None);
                }
                ids.push(row.try_get::<String>("", "id")?);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(usize::try_from(limit + 1).unwrap_or(usize::MAX));
        Ok(Some(ids))
    }

    /// The users of `ids` the actor may see, in one query (for lists that show whose each row
    /// is); IDs they may not see, or that do not exist, are left out.
    pub async fn users_by_ids(&self, actor: &Actor, ids: &[String]) -> Result<Vec<User>> {
        let visibility = self.visibility(actor).await?;
        let mut select = user::Entity::find().filter(user::Column::Id.is_in(ids.iter().cloned()));
        if let Visibility::Members(org) = &visibility {
            select = select.filter(user::Column::Id.in_subquery(members_of(org)));
        }
        Ok(select.all(self.store.db()).await?.into_iter().map(User::from).collect())
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

/// Above this many matches after the cursor, a prefix branch is read in ID order rather than
/// from its index (see [`Directory::narrow_matches`]).
const NARROW: u64 = 5000;

/// What `q` asks for.
enum Search {
    All,
    Id(String),
    Prefix(Prefix),
}

/// A prefix search: emails and names from `from` (inclusive) to `to` (exclusive), the lower-cased
/// prefix and its successor (see [`successor`]).
struct Prefix {
    from: String,
    to: String,
}

impl Prefix {
    /// Emails are stored lower-cased, so their prefix is a range on `(primary_email, id)`;
    /// names are compared lower-cased, a range on the `(LOWER(name), id)` index.
    fn branches(&self) -> [Condition; 2] {
        let name = || Expr::expr(Func::lower(Expr::col((user::Entity, user::Column::Name))));
        [
            Condition::all()
                .add(user::Column::PrimaryEmail.gte(self.from.as_str()))
                .add(user::Column::PrimaryEmail.lt(self.to.as_str())),
            Condition::all().add(name().gte(self.from.as_str())).add(name().lt(self.to.as_str())),
        ]
    }

    /// Both branches as a filter for the walk in ID order. `COALESCE(x, '')` is `x` to every
    /// reader but the planner (the prefix is never empty, so no NULL name matches either
    /// way), which then cannot answer from the prefix indexes (the slow plan for a common
    /// prefix) and walks the primary key in ID order from the cursor.
    fn in_id_order(&self) -> Condition {
        let opaque = |e: Expr| Expr::expr(Func::coalesce([e, Expr::val("")]));
        let email = || opaque(Expr::col((user::Entity, user::Column::PrimaryEmail)));
        let name = || opaque(Func::lower(Expr::col((user::Entity, user::Column::Name))).into());
        let range = |e: &dyn Fn() -> Expr| {
            Condition::all().add(e().gte(self.from.as_str())).add(e().lt(self.to.as_str()))
        };
        Condition::any().add(range(&email)).add(range(&name))
    }
}

/// The search `q` asks for: a user ID exactly, else an email or name prefix (case-insensitive).
fn search(q: &str) -> Result<Search> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(Error::invalid("q", "is too long"));
    }
    if ids::is_valid(ids::USER, q) {
        return Ok(Search::Id(q.to_owned()));
    }
    let from = q.to_lowercase();
    let to = successor(&from);
    Ok(Search::Prefix(Prefix { from, to }))
}

/// The least string greater than every string that starts with `prefix`, in code point order
/// (which is the byte order of UTF-8: SQLite's BINARY collation and PostgreSQL's C and
/// C.UTF-8): the prefix with its last character replaced by the next one. So
/// `s >= prefix AND s < successor(prefix)` is exactly "s starts with prefix", as
/// `LIKE 'prefix%'` was, but as a range an index serves. A last character that has no next
/// one (U+10FFFF) is dropped and the one before it is increased instead. A prefix made only of
/// U+10FFFF characters, which nobody types, gets U+10FFFF as its bound and matches nothing.
fn successor(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    char::MAX.to_string()
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

    #[test]
    fn successor_bounds_a_prefix() {
        assert_eq!(successor("ma"), "mb");
        assert_eq!(successor("j."), "j/");
        assert_eq!(successor("z\u{D7FF}"), "z\u{E000}");
        assert_eq!(successor("a\u{10FFFF}"), "b");
        assert_eq!(successor("\u{10FFFF}"), "\u{10FFFF}");
        let (from, to) = ("ma", successor("ma"));
        for s in ["ma", "maria", "ma\u{FFFF}x", "ma\u{1F600}"] {
            assert!(s >= from && s < to.as_str(), "{s}");
        }
        for s in ["m", "mb", "lz", "mb\u{1F600}"] {
            assert!(!(s >= from && s < to.as_str()), "{s}");
        }
    }
}
