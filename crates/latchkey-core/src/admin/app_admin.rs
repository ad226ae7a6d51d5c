//! Applications (OAuth / OpenID Connect clients) as administrators manage them, for the admin
//! API, the console and the CLI alike: listed by cursor, read, registered, changed, their
//! secret rotated, deleted. Clients act on the whole instance (any user may sign in to them),
//! so only instance actors manage them; the registry's own rules, validation and audit events
//! are those of [`ClientService`].

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::paging::{Page, decode_id_cursor, id_cursor, page_of, page_size};
use crate::{
    Error, Result,
    infra::{audit::Actor, entity::oauth_client, ids, store::Store},
    oauth::clients::{Client, ClientPatch, ClientService, CreatedClient, NewClient},
    tenancy::access,
};

pub const DEFAULT_PAGE_SIZE: u64 = 50;

/// A page of applications, ordered by ID.
#[derive(Debug, Clone, Default)]
pub struct AppQuery {
    pub cursor: Option<String>,
    pub limit: Option<u64>,
}

#[derive(Clone)]
pub struct AppAdmin {
    store: Store,
    clients: ClientService,
}

impl AppAdmin {
    pub fn new(store: Store, clients: ClientService) -> Self {
        Self { store, clients }
    }

    async fn require_instance(&self, actor: &Actor) -> Result<()> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(());
        }
        Err(Error::Forbidden("only instance administrators manage applications".into()))
    }

    pub async fn list(&self, actor: &Actor, q: &AppQuery) -> Result<Page<Client>> {
        self.require_instance(actor).await?;
        let limit = page_size(q.limit, DEFAULT_PAGE_SIZE)?;
        let mut select = oauth_client::Entity::find().order_by_asc(oauth_client::Column::ClientId);
        if let Some(after) = q.cursor.as_deref().filter(|c| !c.is_empty()) {
            let after = decode_id_cursor(after, ids::OAUTH_CLIENT)?;
            select = select.filter(oauth_client::Column::ClientId.gt(after));
        }
        let rows = select.limit(limit + 1).all(self.store.db()).await?;
        Ok(page_of(rows, limit, |c| id_cursor(&c.client_id), Client::from))
    }

    pub async fn get(&self, actor: &Actor, client_id: &str) -> Result<Client> {
        self.require_instance(actor).await?;
        self.clients.get(client_id).await
    }

    /// Registers a client; a confidential client's secret is in the answer, once.
    pub async fn create(&self, actor: &Actor, new: NewClient) -> Result<CreatedClient> {
        self.require_instance(actor).await?;
        self.clients.create(new, actor).await
    }

    /// See [`ClientService::update`].
    pub async fn update(
        &self,
        actor: &Actor,
        client_id: &str,
        patch: &ClientPatch,
        precondition: impl Fn(&Client) -> bool + Send,
    ) -> Result<Client> {
        self.require_instance(actor).await?;
        self.clients.update(client_id, patch, actor, precondition).await
    }

    pub async fn delete(&self, actor: &Actor, client_id: &str) -> Result<()> {
        self.require_instance(actor).await?;
        self.clients.delete(client_id, actor).await
    }

    /// A new secret (returned once); older ones keep working for `overlap_secs`.
    pub async fn rotate_secret(
        &self,
        actor: &Actor,
        client_id: &str,
        overlap_secs: i64,
    ) -> Result<(Client, String)> {
        self.require_instance(actor).await?;
        self.clients.rotate_secret(client_id, overlap_secs, actor).await
    }
}
