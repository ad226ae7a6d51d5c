//! Sessions as administrators see them: listed across the instance (or, for an organisation's
//! key, its members' sessions), newest first with a cursor, and revoked one at a time. A
//! revocation takes effect on the next token request on every node and sends back-channel
//! logouts, as any revocation does (`SessionService::revoke`).

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::paging::{Page, decode_time_cursor, members_of, page_of, page_size, time_cursor};
use crate::{
    Error, Result,
    identity::{
        model::{Session, SessionStatus},
        sessions::SessionService,
    },
    infra::{
        audit::{Actor, Principal},
        entity::session,
        ids,
        store::Store,
    },
    tenancy::access,
};

/// Sessions per page unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// Which sessions: of one user, of one organisation's members, active only unless
/// `include_ended`.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub user_id: Option<String>,
    pub org_id: Option<String>,
    pub include_ended: bool,
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

#[derive(Clone)]
pub struct SessionAdmin {
    store: Store,
    sessions: SessionService,
}

impl SessionAdmin {
    pub fn new(store: Store, sessions: SessionService) -> Self {
        Self { store, sessions }
    }

    /// The organisation an actor is limited to (None: the whole instance); others are refused.
    async fn scope(&self, actor: &Actor) -> Result<Option<String>> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(None);
        }
        match &actor.principal {
            Principal::ApiKey { org_id: Some(org), .. } => Ok(Some(org.clone())),
            _ => Err(Error::Forbidden("only administrators manage sessions".into())),
        }
    }

    pub async fn list(&self, actor: &Actor, q: &SessionQuery) -> Result<Page<Session>> {
        let scope = self.scope(actor).await?;
        let limit = page_size(q.limit, DEFAULT_PAGE_SIZE)?;
        if let (Some(own), Some(asked)) = (&scope, &q.org_id)
            && own != asked
        {
            return Err(Error::NotFound(format!("organisation {asked}")));
        }
        let now = self.store.now();
        let mut select = session::Entity::find()
            .order_by_desc(session::Column::CreatedAt)
            .order_by_desc(session::Column::Id);
        if let Some(org) = scope.as_ref().or(q.org_id.as_ref()) {
            select = select.filter(session::Column::UserId.in_subquery(members_of(org)));
        }
        if let Some(user) = &q.user_id {
            select = select.filter(session::Column::UserId.eq(user.as_str()));
        }
        if !q.include_ended {
            select = select
                .filter(session::Column::Status.eq(SessionStatus::Active.as_str()))
                .filter(session::Column::ExpiresAt.gt(now))
                .filter(session::Column::IdleExpiresAt.gt(now));
        }
        if let Some(cursor) = q.cursor.as_deref().filter(|c| !c.is_empty()) {
            let (at, id) = decode_time_cursor(cursor, ids::SESSION)?;
            select = select.filter(
                Condition::any().add(session::Column::CreatedAt.lt(at)).add(
                    Condition::all()
                        .add(session::Column::CreatedAt.eq(at))
                        .add(session::Column::Id.lt(id)),
                ),
            );
        }
        let rows = select.limit(limit + 1).all(self.store.db()).await?;
        let cursor = |s: &session::Model| time_cursor(s.created_at, &s.id);
        Ok(page_of(rows, limit, cursor, |m| Session::from_model(m, now)))
    }

    /// Revokes one session. A session the actor may not see is [`Error::NotFound`]; one that
    /// had already ended answers as it is.
    pub async fn revoke(&self, actor: &Actor, id: &str) -> Result<Session> {
        let scope = self.scope(actor).await?;
        let not_found = || Error::NotFound(format!("session {id}"));
        let mut select = session::Entity::find_by_id(id.to_owned());
        if let Some(org) = &scope {
            select = select.filter(session::Column::UserId.in_subquery(members_of(org)));
        }
        select.one(self.store.db()).await?.ok_or_else(not_found)?;
        self.sessions.revoke(id, "revoked_by_admin", actor).await?;
        self.sessions.get(id).await
    }

    /// Revokes every active session of a user in one transaction (their applications get
    /// back-channel logout). Instance actors only: an account's sessions may belong to
    /// several organisations.
    pub async fn revoke_all(&self, actor: &Actor, user_id: &str) -> Result<u64> {
        if self.scope(actor).await?.is_some() {
            return Err(Error::Forbidden(
                "only instance administrators end all of a user's sessions".into(),
            ));
        }
        self.sessions.revoke_all_for_user(user_id, "revoked_by_admin", actor).await
    }
}
