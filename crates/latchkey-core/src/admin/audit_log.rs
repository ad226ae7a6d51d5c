//! The audit log as administrators read it: filtered by actor, action, target and time range,
//! newest first, paginated by cursor. The cursor names the last event of its page (its time and
//! ID), so a page never repeats or skips an event, and new events (which are newer) never shift
//! the pages already read.

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::paging::{Page, decode_time_cursor, page_of, page_size, time_cursor};
use crate::{
    Error, Result,
    infra::{
        audit::{Actor, AuditEvent, Principal},
        entity::audit_event,
        ids,
        store::Store,
    },
    tenancy::access,
};

pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// Which events: each given filter must match (exactly; times are Unix seconds, `since`
/// inclusive, `until` exclusive).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `user:usr_…`, `api_key:apk_…`, `client:…`, `cli`, `system` or `anonymous`.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Events concerning this organisation (an organisation's admins and keys read only these).
    pub org: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

#[derive(Clone)]
pub struct AuditLog {
    store: Store,
}

impl AuditLog {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Events matching `query`, newest first. Instance actors read every event; an
    /// organisation's admin or API key only the events concerning that organisation (a key's
    /// own organisation is implied; a user names it), others get 403 or 404 as for the
    /// organisation itself.
    pub async fn events(&self, actor: &Actor, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let db = self.store.db();
        let query = &self.scoped(actor, query).await?;
        let limit = page_size(query.limit, DEFAULT_PAGE_SIZE)?;
        let mut select = audit_event::Entity::find()
            .filter(filters(query))
            .order_by_desc(audit_event::Column::OccurredAt)
            .order_by_desc(audit_event::Column::Id);
        if let Some(cursor) = query.cursor.as_deref().filter(|c| !c.is_empty()) {
            let (at, id) = decode_time_cursor(cursor, ids::AUDIT_EVENT)?;
            // Strictly older than the last event shown: earlier time, or the same time and a
            // smaller ID. The redundant `occurred_at <= at` is the range the (…, occurred_at)
            // indexes serve: PostgreSQL does not derive it from the OR, and without it reads
            // every newer event again (a deep page costing in proportion to its depth).
            select = select.filter(audit_event::Column::OccurredAt.lte(at)).filter(
                Condition::any().add(audit_event::Column::OccurredAt.lt(at)).add(
                    Condition::all()
                        .add(audit_event::Column::OccurredAt.eq(at))
                        .add(audit_event::Column::Id.lt(id)),
                ),
            );
        }
        let rows = select.limit(limit + 1).all(db).await?;
        Ok(page_of(rows, limit, |e| time_cursor(e.occurred_at, &e.id), AuditEvent::from))
    }

    /// Events matching `query`'s filters that occurred at `from` (Unix seconds) or later,
    /// oldest first, at most [`FOLLOW_BATCH`]: what a follower polls for. Followers ask again
    /// from a little before the newest event they printed and drop the IDs they have seen, so
    /// an event committed a moment after a newer one is not missed.
    pub async fn from_time(
        &self,
        actor: &Actor,
        query: &AuditQuery,
        from: i64,
    ) -> Result<Vec<AuditEvent>> {
        let db = self.store.db();
        if !access::is_instance_actor(db, actor).await? {
            return Err(Error::Forbidden(
                "the audit log is readable by instance administrators and instance keys".into(),
            ));
        }
        let rows = audit_event::Entity::find()
            .filter(filters(query))
            .filter(audit_event::Column::OccurredAt.gte(from))
            .order_by_asc(audit_event::Column::OccurredAt)
            .order_by_asc(audit_event::Column::Id)
            .limit(FOLLOW_BATCH)
            .all(db)
            .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

impl AuditLog {
    /// The query as `actor` may run it.
    async fn scoped(&self, actor: &Actor, query: &AuditQuery) -> Result<AuditQuery> {
        let db = self.store.db();
        if access::is_instance_actor(db, actor).await? {
            return Ok(query.clone());
        }
        let org = match (&actor.principal, &query.org) {
            (Principal::ApiKey { org_id: Some(own), .. }, None) => own.clone(),
            (_, Some(org)) => org.clone(),
            (Principal::Anonymous, None) => return Err(Error::Unauthenticated("no credentials")),
            (_, None) => {
                return Err(Error::Forbidden(
                    "the whole audit log is readable by instance administrators and instance keys; name your organisation".into(),
                ));
            }
        };
        access::authorize(db, &org, actor, access::Need::Admin).await?;
        Ok(AuditQuery { org: Some(org), ..query.clone() })
    }
}

/// The most events one poll of a follower reads.
pub const FOLLOW_BATCH: u64 = 1000;

fn filters(q: &AuditQuery) -> Condition {
    let mut c = Condition::all();
    if let Some(a) = &q.actor {
        c = c.add(audit_event::Column::Actor.eq(a.as_str()));
    }
    if let Some(a) = &q.action {
        c = c.add(audit_event::Column::Action.eq(a.as_str()));
    }
    if let Some(t) = &q.target {
        c = c.add(audit_event::Column::TargetId.eq(t.as_str()));
    }
    if let Some(o) = &q.org {
        c = c.add(audit_event::Column::OrgId.eq(o.as_str()));
    }
    if let Some(s) = q.since {
        c = c.add(audit_event::Column::OccurredAt.gte(s));
    }
    if let Some(u) = q.until {
        c = c.add(audit_event::Column::OccurredAt.lt(u));
    }
    c
}
