//! Keeping IdP metadata fresh: connections created from a metadata URL fetch it again every
//! `LATCHKEY_SAML_METADATA_REFRESH` (6 h by default) and on demand. A new document replaces
//! the IdP side only if it parses and names a signing certificate; a failed fetch keeps the
//! last good copy, is audited and counted in metrics. The next refresh time is claimed with a
//! conditional update, so only one node of a cluster fetches a given connection.

use std::sync::atomic::Ordering;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;

use super::{ConnectionView, SamlService, connections};
use crate::{
    Error, Result,
    infra::{
        audit::{self, Actor},
        entity::saml_connection,
        store::Store,
    },
    tenancy::access::{self, Need},
};

impl SamlService {
    /// Fetches a connection's metadata URL now (the operator's `refresh-metadata`).
    pub async fn refresh_metadata(&self, id: &str, actor: &Actor) -> Result<ConnectionView> {
        let model = self.load(self.store.db(), id).await?;
        access::authorize(self.store.db(), &model.org_id, actor, Need::Admin).await?;
        if model.metadata_url.is_none() {
            return Err(Error::invalid("metadata_url", "this connection has no metadata URL"));
        }
        self.refresh_one(model, actor).await?;
        self.show(id, actor).await
    }

    /// Refreshes every connection whose refresh is due; returns how many were attempted.
    pub async fn refresh_due(&self) -> Result<usize> {
        let now = self.store.now();
        let due = saml_connection::Entity::find()
            .filter(saml_connection::Column::MetadataUrl.is_not_null())
            .filter(saml_connection::Column::MetadataNextRefreshAt.lte(now))
            .all(self.store.db())
            .await?;
        let mut attempted = 0;
        for model in due {
            // Claim it: the node whose update moves the time forward does the fetch.
            let claimed = saml_connection::Entity::update_many()
                .col_expr(
                    saml_connection::Column::MetadataNextRefreshAt,
                    Expr::value(now + self.refresh_every_secs),
                )
                .filter(saml_connection::Column::Id.eq(model.id.clone()))
                .filter(
                    saml_connection::Column::MetadataNextRefreshAt
                        .eq(model.metadata_next_refresh_at),
                )
                .exec(self.store.db())
                .await?;
            if claimed.rows_affected == 1 {
                attempted += 1;
                if let Err(e) = self.refresh_one(model, &Actor::system()).await {
                    tracing::warn!(error = %e, "SAML metadata refresh failed");
                }
            }
        }
        Ok(attempted)
    }

    /// Fetches and applies one connection's metadata; a failure is recorded and returned.
    async fn refresh_one(&self, model: saml_connection::Model, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let url = model.metadata_url.clone().unwrap_or_default();
        let fetched = match self.fetcher.fetch(&url).await {
            Ok(xml) => connections::parse_metadata(&xml, now).map(|idp| (idp, xml)),
            Err(e) => Err(e),
        };
        let id = model.id.clone();
        let mut am: saml_connection::ActiveModel = model.into();
        am.metadata_next_refresh_at = Set(Some(now + self.refresh_every_secs));
        am.updated_at = Set(now);
        match fetched {
            Ok((idp, xml)) => {
                connections::apply_idp(&mut am, &idp);
                am.metadata_xml = Set(Some(xml));
                am.metadata_fetched_at = Set(Some(now));
                am.metadata_error = Set(None);
                // New certificates or endpoints: the ACS's per-revision copy must see them.
                let txn = self.store.begin_write().await?;
                am.update(&txn).await?;
                let data = json!({ "url": url, "certificates": idp.certs.len() });
                audit::record(&txn, now, actor, "saml.metadata_refreshed", Some(&id), data).await?;
                Store::bump_revision(&txn).await?;
                txn.commit().await?;
                self.flag_expiring(&id, &idp.certs, now).await
            }
            Err(e) => {
                am.metadata_error = Set(Some(e.to_string()));
                am.update(self.store.db()).await?;
                self.counters.metadata_refresh_failures.fetch_add(1, Ordering::Relaxed);
                let data = json!({ "url": url, "error": e.to_string() });
                audit::record(
                    self.store.db(),
                    now,
                    actor,
                    "saml.metadata_refresh_failed",
                    Some(&id),
                    data,
                )
                .await?;
                Err(e)
            }
        }
    }
}
