//! The audit log as administrators read it: filtered by actor, action, target and time range,
//! newest first, paginated by cursor. The cursor names the last event of its page (its time and
//! ID), so a page never repeats or skips an event, and new events (which are newer) never shift
//! the pages already read.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::directory::{MAX_PAGE_SIZE, Page};
use crate::{
    Error, Result,
    infra::{
        audit::{Actor, AuditEvent},
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

    /// Events matching `query`, newest first. Instance actors only: events are not yet
    /// attributed to organisations, so an organisation's key or admin is refused (403).
    pub async fn events(&self, actor: &Actor, query: &AuditQuery) -> Result<Page<AuditEvent>> {
        let db = self.store.db();
        if !access::is_instance_actor(db, actor).await? {
            return Err(Error::Forbidden(
                "the audit log is readable by instance administrators and instance keys".into(),
            ));
        }
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 200"));
        }
        let mut select = audit_event::Entity::find()
            .filter(filters(query))
            .order_by_desc(audit_event::Column::OccurredAt)
            .order_by_desc(audit_event::Column::Id);
        if let Some(cursor) = query.cursor.as_deref() {
            let (at, id) = decode_cursor(cursor)?;
            // Strictly older than the last event shown: earlier time, or the same time and a
            // smaller ID.
            select = select.filter(
                Condition::any().add(audit_event::Column::OccurredAt.lt(at)).add(
                    Condition::all()
                        .add(audit_event::Column::OccurredAt.eq(at))
                        .add(audit_event::Column::Id.lt(id)),
                ),
            );
        }
        let mut rows = select.limit(limit + 1).all(db).await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|e| encode_cursor(e.occurred_at, &e.id))
        } else {
            None
        };
        Ok(Page { data: rows.into_iter().map(AuditEvent::from).collect(), next_cursor })
    }
}

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
    if let Some(s) = q.since {
        c = c.add(audit_event::Column::OccurredAt.gte(s));
    }
    if let Some(u) = q.until {
        c = c.add(audit_event::Column::OccurredAt.lt(u));
    }
    c
}

fn encode_cursor(at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let invalid = || Error::invalid("cursor", "is not a cursor of this listing");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (at, id) = text.split_once(':').ok_or_else(invalid)?;
    let at: i64 = at.parse().map_err(|_| invalid())?;
    if !ids::is_valid(ids::AUDIT_EVENT, id) {
        return Err(invalid());
    }
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let id = ids::new_id(ids::AUDIT_EVENT);
        assert_eq!(decode_cursor(&encode_cursor(1_800_000_000, &id)).unwrap(), (1_800_000_000, id));
        let user = ids::new_id(ids::USER);
        for junk in [
            String::new(),
            "!!".into(),
            URL_SAFE_NO_PAD.encode("x:evt_1"),
            URL_SAFE_NO_PAD.encode(format!("1:{user}")),
        ] {
            assert!(decode_cursor(&junk).is_err(), "{junk}");
        }
    }
}
