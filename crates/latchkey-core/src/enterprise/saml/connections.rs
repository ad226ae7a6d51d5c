//! Creating, reading and changing SAML connections. The IdP side comes from metadata XML, a
//! metadata URL (fetched now and refreshed periodically, the last good copy kept on failure) or
//! manual fields; either way it must name at least one signing certificate, since without one
//! nothing could be verified. Disabling or deleting a connection ends every session it created.

use base64::Engine;
use latchkey_saml::{
    binding::Binding,
    keys,
    metadata::{self, IdpMetadata},
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{ConnectionOptions, SamlService, SpUrls, sp_keys};
use crate::{
    Error, Result,
    identity::method::AuthMethod,
    infra::{
        audit::{self, Actor},
        entity::{saml_connection, session},
        ids,
    },
    tenancy::access::{self, Need},
};

/// Certificates expiring within this many days are flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 90;

/// Where the IdP side of a new connection comes from.
#[derive(Debug, Clone)]
pub enum IdpSource {
    MetadataXml(String),
    MetadataUrl(String),
    Manual {
        entity_id: String,
        sso_url: String,
        sso_binding: Binding,
        slo_url: Option<String>,
        /// PEM or bare base64 certificates.
        certs: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct NewConnection {
    /// An ID reserved beforehand (the console's wizard shows the SP entity ID and ACS URL,
    /// which contain it, before the IdP side is known); None: a new one.
    pub reserved_id: Option<String>,
    pub org_id: String,
    pub name: String,
    pub source: IdpSource,
    pub options: ConnectionOptions,
}

/// The IdP side, however it was given.
#[derive(Debug, Clone)]
pub(crate) struct IdpSide {
    pub entity_id: String,
    pub sso_redirect: Option<String>,
    pub sso_post: Option<String>,
    pub slo_url: Option<String>,
    pub slo_binding: Option<Binding>,
    pub certs: Vec<Vec<u8>>,
}

impl IdpSide {
    pub(crate) fn from_metadata(m: IdpMetadata) -> Self {
        let find = |list: &[metadata::Endpoint], b: Binding| {
            list.iter().find(|e| e.binding == b).map(|e| e.location.clone())
        };
        let slo = find(&m.slo, Binding::Redirect)
            .map(|u| (u, Binding::Redirect))
            .or_else(|| find(&m.slo, Binding::Post).map(|u| (u, Binding::Post)));
        Self {
            sso_redirect: find(&m.sso, Binding::Redirect),
            sso_post: find(&m.sso, Binding::Post),
            slo_url: slo.as_ref().map(|(u, _)| u.clone()),
            slo_binding: slo.map(|(_, b)| b),
            entity_id: m.entity_id,
            certs: m.signing_certs,
        }
    }

    fn manual(
        entity_id: &str,
        sso_url: &str,
        binding: Binding,
        slo_url: Option<&str>,
        certs: &[String],
    ) -> Result<Self> {
        let certs = certs
            .iter()
            .map(|c| keys::cert_der(c).map_err(|e| Error::invalid("cert", e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        if certs.is_empty() {
            return Err(Error::invalid("cert", "at least one IdP signing certificate is needed"));
        }
        for (field, url) in [("sso_url", Some(sso_url)), ("slo_url", slo_url)] {
            if let Some(u) = url {
                check_http_url(field, u)?;
            }
        }
        if entity_id.trim().is_empty() || entity_id.len() > 1024 {
            return Err(Error::invalid("idp_entity_id", "must be 1 to 1024 characters"));
        }
        Ok(Self {
            entity_id: entity_id.trim().to_owned(),
            sso_redirect: (binding == Binding::Redirect).then(|| sso_url.to_owned()),
            sso_post: (binding == Binding::Post).then(|| sso_url.to_owned()),
            slo_url: slo_url.map(str::to_owned),
            slo_binding: slo_url.map(|_| Binding::Redirect),
            certs,
        })
    }
}

fn check_http_url(field: &'static str, u: &str) -> Result<()> {
    match url::Url::parse(u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => Ok(()),
        _ => Err(Error::invalid(field, "must be an http(s) URL")),
    }
}

/// Parses metadata XML into the IdP side, with the reason in operator words.
pub(crate) fn parse_metadata(xml: &str, now: i64) -> Result<IdpSide> {
    metadata::parse_idp_metadata(xml, now)
        .map(IdpSide::from_metadata)
        .map_err(|e| Error::invalid("metadata", e.to_string()))
}

/// One certificate as `connections show` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    pub sha256: String,
    pub not_after: i64,
    /// Expires within 90 days (or already has).
    pub expires_soon: bool,
}

/// A connection as the CLI, the console and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub connection_id: String,
    /// `saml` (EASIE connections say `easie`), so mixed lists can be told apart.
    pub kind: &'static str,
    pub org_id: String,
    pub name: String,
    pub protocol: &'static str,
    pub enabled: bool,
    #[serde(flatten)]
    pub urls: SpUrls,
    pub idp_entity_id: String,
    pub idp_sso_redirect_url: Option<String>,
    pub idp_sso_post_url: Option<String>,
    pub idp_slo_url: Option<String>,
    pub idp_certificates: Vec<CertificateView>,
    pub sp_certificates: Vec<CertificateView>,
    /// Where the IdP metadata is fetched from, if it is.
    pub idp_metadata_url: Option<String>,
    pub metadata_refreshed_at: Option<i64>,
    pub metadata_error: Option<String>,
    pub options: ConnectionOptions,
    pub warnings: Vec<String>,
    pub created_at: i64,
}

pub(crate) fn certificate_view(der: &[u8], now: i64) -> CertificateView {
    let not_after = keys::cert_not_after(der).unwrap_or(0);
    CertificateView {
        sha256: hex(&Sha256::digest(der)),
        not_after,
        expires_soon: not_after - now < EXPIRY_WARNING_DAYS * 86_400,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored certificates (a JSON array of base64 DER).
pub(crate) fn stored_certs(model: &saml_connection::Model) -> Vec<Vec<u8>> {
    let list: Vec<String> = serde_json::from_str(&model.idp_certs).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    list.iter().filter_map(|c| b64.decode(c).ok()).collect()
}

fn certs_json(certs: &[Vec<u8>]) -> String {
    let list: Vec<String> = certs.iter().map(|c| keys::cert_base64(c)).collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn options_of(model: &saml_connection::Model) -> Result<ConnectionOptions> {
    serde_json::from_str(&model.options)
        .map_err(|e| Error::Internal(format!("connection {} options: {e}", model.id)))
}

/// Writes the IdP side onto a connection row.
pub(crate) fn apply_idp(am: &mut saml_connection::ActiveModel, idp: &IdpSide) {
    am.idp_entity_id = Set(idp.entity_id.clone());
    am.idp_sso_redirect_url = Set(idp.sso_redirect.clone());
    am.idp_sso_post_url = Set(idp.sso_post.clone());
    am.idp_slo_url = Set(idp.slo_url.clone());
    am.idp_slo_binding = Set(idp.slo_binding.map(|b| binding_name(b).to_owned()));
    am.idp_certs = Set(certs_json(&idp.certs));
}

pub(crate) fn binding_name(b: Binding) -> &'static str {
    match b {
        Binding::Redirect => "redirect",
        Binding::Post => "post",
    }
}

impl SamlService {
    /// Creates a connection (enabled) with a fresh SP key pair.
    pub async fn create(&self, new: NewConnection, actor: &Actor) -> Result<ConnectionView> {
        let now = self.store.now();
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("name", "must be 1 to 200 characters"));
        }
        let options = new.options.validate()?;
        // Authorised before anything leaves for the network: a caller who may not manage the
        // organisation must not make Latchkey fetch URLs for it.
        access::authorize(self.store.db(), &new.org_id, actor, Need::Admin).await?;
        let (idp, metadata_url, metadata_xml) = self.resolve_source(&new.source, now).await?;
        let txn = self.store.begin_write().await?;
        access::authorize(&txn, &new.org_id, actor, Need::Admin).await?;
        let id = match new.reserved_id {
            None => ids::new_id(ids::SAML_CONNECTION),
            Some(id) if !ids::is_valid(ids::SAML_CONNECTION, &id) => {
                return Err(Error::invalid("connection_id", "is not a connection ID"));
            }
            Some(id) => {
                if saml_connection::Entity::find_by_id(id.clone()).one(&txn).await?.is_some() {
                    return Err(Error::Conflict(format!("connection {id} already exists")));
                }
                id
            }
        };
        let mut am = saml_connection::ActiveModel {
            id: Set(id.clone()),
            org_id: Set(new.org_id.clone()),
            name: Set(name),
            enabled: Set(true),
            metadata_url: Set(metadata_url.clone()),
            metadata_fetched_at: Set(metadata_url.as_ref().map(|_| now)),
            metadata_xml: Set(metadata_xml),
            metadata_error: Set(None),
            metadata_next_refresh_at: Set(metadata_url
                .as_ref()
                .map(|_| now + self.refresh_every_secs)),
            options: Set(serde_json::to_string(&options)?),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        apply_idp(&mut am, &idp);
        am.insert(&txn).await?;
        sp_keys::create(&txn, &self.store, &id, now).await?;
        let data = json!({
            "org_id": new.org_id, "idp_entity_id": idp.entity_id, "metadata_url": metadata_url,
            "options": options,
        });
        audit::record(&txn, now, actor, "saml.connection_created", Some(&id), data).await?;
        crate::infra::store::Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.flag_expiring(&id, &idp.certs, now).await?;
        self.show(&id, actor).await
    }

    /// The IdP side of a source, with the metadata URL and the fetched document if any.
    async fn resolve_source(
        &self,
        source: &IdpSource,
        now: i64,
    ) -> Result<(IdpSide, Option<String>, Option<String>)> {
        match source {
            IdpSource::MetadataXml(xml) => Ok((parse_metadata(xml, now)?, None, Some(xml.clone()))),
            IdpSource::MetadataUrl(url) => {
                check_http_url("metadata_url", url)?;
                let xml = self.fetcher.fetch(url).await?;
                Ok((parse_metadata(&xml, now)?, Some(url.clone()), Some(xml)))
            }
            IdpSource::Manual { entity_id, sso_url, sso_binding, slo_url, certs } => Ok((
                IdpSide::manual(entity_id, sso_url, *sso_binding, slo_url.as_deref(), certs)?,
                None,
                None,
            )),
        }
    }

    pub(crate) async fn load<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: &str,
    ) -> Result<saml_connection::Model> {
        if !ids::is_valid(ids::SAML_CONNECTION, id) {
            return Err(Error::NotFound(format!("connection {id}")));
        }
        saml_connection::Entity::find_by_id(id.to_owned())
            .one(conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("connection {id}")))
    }

    /// One connection, for an organisation admin or the operator.
    pub async fn show(&self, id: &str, actor: &Actor) -> Result<ConnectionView> {
        let db = self.store.db();
        let model = self.load(db, id).await?;
        access::authorize(db, &model.org_id, actor, Need::Admin).await?;
        self.view(model).await
    }

    /// Connections of one organisation, or of every organisation for the operator.
    pub async fn list(&self, org_id: Option<&str>, actor: &Actor) -> Result<Vec<ConnectionView>> {
        let db = self.store.db();
        let mut q =
            saml_connection::Entity::find().order_by_asc(saml_connection::Column::CreatedAt);
        match org_id {
            Some(org) => {
                access::authorize(db, org, actor, Need::Admin).await?;
                q = q.filter(saml_connection::Column::OrgId.eq(org));
            }
            None if matches!(actor.principal, audit::Principal::Cli | audit::Principal::System) => {
            }
            None => return Err(Error::Forbidden("name the organisation".into())),
        }
        let mut out = Vec::new();
        for model in q.all(db).await? {
            out.push(self.view(model).await?);
        }
        Ok(out)
    }

    async fn view(&self, model: saml_connection::Model) -> Result<ConnectionView> {
        let now = self.store.now();
        let options = options_of(&model)?;
        let sp = sp_keys::live(self.store.db(), &model.id, now).await?;
        let sp_certificates =
            sp_keys::certificates(&sp)?.iter().map(|c| certificate_view(c, now)).collect();
        let idp_certificates: Vec<CertificateView> =
            stored_certs(&model).iter().map(|c| certificate_view(c, now)).collect();
        let mut warnings = options.warnings();
        for c in idp_certificates.iter().filter(|c| c.expires_soon) {
            warnings.push(format!(
                "IdP certificate {} expires at {}",
                &c.sha256[..16],
                c.not_after
            ));
        }
        if let Some(e) = &model.metadata_error {
            warnings.push(format!("last metadata refresh failed: {e}"));
        }
        Ok(ConnectionView {
            urls: self.urls(&model.id),
            connection_id: model.id,
            kind: "saml",
            org_id: model.org_id,
            name: model.name,
            protocol: "saml",
            enabled: model.enabled,
            idp_entity_id: model.idp_entity_id,
            idp_sso_redirect_url: model.idp_sso_redirect_url,
            idp_sso_post_url: model.idp_sso_post_url,
            idp_slo_url: model.idp_slo_url,
            idp_certificates,
            sp_certificates,
            idp_metadata_url: model.metadata_url,
            metadata_refreshed_at: model.metadata_fetched_at,
            metadata_error: model.metadata_error,
            options,
            warnings,
            created_at: model.created_at,
        })
    }

    /// Enables or disables a connection. Disabling ends every session it created.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<ConnectionView> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let model = self.load(&txn, id).await?;
        access::authorize(&txn, &model.org_id, actor, Need::Admin).await?;
        let (org_id, was) = (model.org_id.clone(), model.enabled);
        let mut am: saml_connection::ActiveModel = model.into();
        am.enabled = Set(enabled);
        am.updated_at = Set(now);
        am.update(&txn).await?;
        let ended =
            if enabled { 0 } else { end_sessions(&txn, id, "connection_disabled", now).await? };
        let action = if enabled { "saml.connection_enabled" } else { "saml.connection_disabled" };
        let data = json!({
            "org_id": org_id, "sessions_ended": ended,
            "before": { "enabled": was }, "after": { "enabled": enabled },
        });
        audit::record(&txn, now, actor, action, Some(id), data).await?;
        crate::infra::store::Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        self.show(id, actor).await
    }

    /// Deletes a connection, ending its sessions; its users keep their accounts.
    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let model = self.load(&txn, id).await?;
        access::authorize(&txn, &model.org_id, actor, Need::Admin).await?;
        let ended = end_sessions(&txn, id, "connection_deleted", now).await?;
        saml_connection::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
        let data = json!({ "org_id": model.org_id, "sessions_ended": ended });
        audit::record(&txn, now, actor, "saml.connection_deleted", Some(id), data).await?;
        crate::infra::store::Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(())
    }

    /// Replaces the SP key pair; the old one stays published for the overlap.
    pub async fn rotate_sp_key(&self, id: &str, actor: &Actor) -> Result<ConnectionView> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let model = self.load(&txn, id).await?;
        access::authorize(&txn, &model.org_id, actor, Need::Admin).await?;
        sp_keys::rotate(&txn, &self.store, id, now).await?;
        let data = json!({ "overlap_secs": sp_keys::ROTATION_OVERLAP_SECS });
        audit::record(&txn, now, actor, "saml.sp_key_rotated", Some(id), data).await?;
        txn.commit().await?;
        self.show(id, actor).await
    }

    /// Changes a connection's options (validated as a whole).
    pub async fn set_options(
        &self,
        id: &str,
        options: ConnectionOptions,
        actor: &Actor,
    ) -> Result<ConnectionView> {
        let now = self.store.now();
        let options = options.validate()?;
        let txn = self.store.begin_write().await?;
        let model = self.load(&txn, id).await?;
        access::authorize(&txn, &model.org_id, actor, Need::Admin).await?;
        let before = options_of(&model)?;
        let mut am: saml_connection::ActiveModel = model.into();
        am.options = Set(serde_json::to_string(&options)?);
        am.updated_at = Set(now);
        am.update(&txn).await?;
        let data = json!({ "before": before, "after": options });
        audit::record(&txn, now, actor, "saml.connection_updated", Some(id), data).await?;
        crate::infra::store::Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.show(id, actor).await
    }

    /// Audits IdP certificates that expire within 90 days.
    pub(crate) async fn flag_expiring(&self, id: &str, certs: &[Vec<u8>], now: i64) -> Result<()> {
        for view in certs.iter().map(|c| certificate_view(c, now)).filter(|v| v.expires_soon) {
            let data = json!({ "sha256": view.sha256, "not_after": view.not_after });
            let actor = Actor::system();
            audit::record(
                self.store.db(),
                now,
                &actor,
                "saml.certificate_expiring",
                Some(id),
                data,
            )
            .await?;
        }
        Ok(())
    }

    /// IdP certificates of enabled connections expiring within 90 days (for metrics).
    pub async fn expiring_certificates(&self) -> Result<u64> {
        let now = self.store.now();
        let rows = saml_connection::Entity::find()
            .filter(saml_connection::Column::Enabled.eq(true))
            .all(self.store.db())
            .await?;
        let soon = rows
            .iter()
            .flat_map(stored_certs)
            .filter(|c| certificate_view(c, now).expires_soon)
            .count();
        Ok(u64::try_from(soon).unwrap_or(u64::MAX))
    }
}

/// Ends every active session created through a connection, queueing their back-channel
/// logout in the same transaction.
pub(crate) async fn end_sessions<C: ConnectionTrait>(
    txn: &C,
    connection_id: &str,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let method = AuthMethod::Saml { connection_id: connection_id.to_owned() }.to_stored();
    let filter = sea_orm::Condition::all().add(session::Column::AuthMethod.eq(method));
    crate::identity::sessions::end_matching(txn, filter, reason, now).await
}

/// How long a copy of the SP metadata stays valid: IdPs re-read it well before then, and a
/// rotated key's overlap (14 days) is longer.
const SP_METADATA_VALIDITY_SECS: i64 = 7 * 86_400;

impl SamlService {
    /// The SP metadata of a connection: both certificates during a key rotation's overlap.
    pub async fn sp_metadata(&self, id: &str) -> Result<String> {
        let now = self.store.now();
        let model = self.load(self.store.db(), id).await?;
        let options = options_of(&model)?;
        let keys = sp_keys::live(self.store.db(), id, now).await?;
        let certs = sp_keys::certificates(&keys)?;
        let urls = self.urls(id);
        let formats: Vec<&str> = match options.name_id_format.as_deref() {
            Some(f) => vec![f],
            None => {
                vec![latchkey_saml::model::NAMEID_EMAIL, latchkey_saml::model::NAMEID_PERSISTENT]
            }
        };
        let spec = metadata::SpMetadataSpec {
            entity_id: &urls.sp_entity_id,
            acs_url: &urls.acs_url,
            slo_url: Some(&urls.slo_url),
            signing_certs: &certs,
            encryption_certs: &certs,
            name_id_formats: &formats,
            authn_requests_signed: options.sign_requests,
            valid_until: now + SP_METADATA_VALIDITY_SECS,
            organisation_name: None,
        };
        metadata::sp_metadata_xml(&spec).map_err(|e| Error::Internal(format!("SP metadata: {e}")))
    }
}
