//! EASIE enrollments: which domain goes to which provider (and, for Microsoft, which pinned
//! tenant). A domain is enrolled at most once on the instance (a unique index decides races),
//! only by the organisation that verified it, never a consumer mail domain, and not while the
//! organisation has an enabled SAML connection (which covers all of its domains already).
//! Disabling or deleting a connection ends every session signed in through it; deleting keeps
//! the accounts.

use latchkey_easie::{Domain, Enrollment, Provider, TenantId};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{EasieService, tenant};
use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result,
    identity::method::AuthMethod,
    infra::{
        audit::{self, Actor, Principal},
        email::normalize_email,
        entity::{easie_connection, saml_connection, session},
        ids,
        store::Store,
    },
    tenancy::{
        access::{self, Need},
        consumer_domains::is_consumer_domain,
        domains::{normalize_domain, verified_owner},
    },
};

/// More break-glass addresses than this is not break-glass.
const MAX_BYPASS: usize = 100;

/// Options of an EASIE connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EasieOptions {
    /// Addresses on the domain that may still sign in with a password (break-glass admins);
    /// every use is audited.
    pub bypass: Vec<String>,
}

impl EasieOptions {
    /// Normalises the bypass addresses and checks they are on the enrolled domain: an EASIE
    /// connection covers that domain only, so an address elsewhere would bypass nothing.
    pub fn validate(mut self, domain: &Domain) -> Result<Self> {
        if self.bypass.len() > MAX_BYPASS {
            return Err(Error::invalid("bypass", format!("at most {MAX_BYPASS} addresses")));
        }
        let mut list = Vec::with_capacity(self.bypass.len());
        for address in &self.bypass {
            let email = normalize_email(address)?;
            if email.rsplit_once('@').map(|(_, d)| d) != Some(domain.as_str()) {
                return Err(Error::invalid(
                    "bypass",
                    format!("{email} is not an address on the enrolled domain {domain}"),
                ));
            }
            list.push(email);
        }
        list.sort();
        list.dedup();
        self.bypass = list;
        Ok(self)
    }
}

/// The name a connection is shown and routed under.
pub fn display_name(provider: Provider, domain: &str) -> String {
    let product = match provider {
        Provider::Google => "Google Workspace",
        Provider::Microsoft => "Microsoft Entra ID",
    };
    format!("{product} ({domain})")
}

/// An EASIE connection as the services hand it around (and the upstream sign-in reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EasieConnection {
    pub id: String,
    pub kind: &'static str,
    pub org_id: String,
    pub provider: Provider,
    pub domain: String,
    pub tenant_id: Option<String>,
    pub enabled: bool,
    pub options: EasieOptions,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<easie_connection::Model> for EasieConnection {
    type Error = Error;

    fn try_from(m: easie_connection::Model) -> Result<Self> {
        let provider = Provider::parse(&m.provider)
            .map_err(|_| Error::Internal(format!("connection {}: unknown provider", m.id)))?;
        let options = serde_json::from_str(&m.options)?;
        Ok(Self {
            id: m.id,
            kind: "easie",
            org_id: m.org_id,
            provider,
            domain: m.domain,
            tenant_id: m.tenant_id,
            enabled: m.enabled,
            options,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl EasieConnection {
    /// The enrollment the sign-in rules check claims against. A stored domain or tenant that no
    /// longer parses is a fault, never a reason to skip the checks.
    pub fn enrollment(&self) -> Result<Enrollment> {
        let bad = |what: &str| Error::Internal(format!("connection {}: stored {what}", self.id));
        let tenant = match &self.tenant_id {
            Some(t) => Some(TenantId::parse(t).map_err(|_| bad("tenant id"))?),
            None => None,
        };
        Ok(Enrollment {
            connection_id: self.id.clone(),
            domain: Domain::parse(&self.domain).map_err(|_| bad("domain"))?,
            provider: self.provider,
            tenant,
        })
    }
}

/// The connection with this ID, enabled or not.
pub async fn find<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<EasieConnection>> {
    easie_connection::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .map(EasieConnection::try_from)
        .transpose()
}

/// The enabled connection that enrolled `domain` (normalised), if any, as long as its
/// organisation still holds the domain verified: a domain the organisation gave up is no longer
/// its to vouch for, whatever the enrollment says.
pub async fn enabled_for_domain<C: ConnectionTrait>(
    conn: &C,
    domain: &str,
) -> Result<Option<EasieConnection>> {
    let Some(model) = easie_connection::Entity::find()
        .filter(easie_connection::Column::Domain.eq(domain))
        .filter(easie_connection::Column::Enabled.eq(true))
        .one(conn)
        .await?
    else {
        return Ok(None);
    };
    if verified_owner(conn, domain).await?.as_deref() != Some(model.org_id.as_str()) {
        return Ok(None);
    }
    EasieConnection::try_from(model).map(Some)
}

/// A new enrollment, as the operator or an organisation admin asks for it.
#[derive(Debug, Clone)]
pub struct NewEasieConnection {
    pub org_id: String,
    pub provider: Provider,
    /// One of the organisation's verified domains.
    pub domain: String,
    /// Microsoft only: the tenant to pin; resolved from the domain when absent.
    pub tenant_id: Option<String>,
    pub options: EasieOptions,
}

/// A connection as the CLI, the console and the API show it (one shape everywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EasieConnectionView {
    pub connection_id: String,
    /// `easie` (SAML connections say `saml`), so mixed lists can be told apart.
    pub kind: &'static str,
    pub protocol: &'static str,
    pub name: String,
    pub org_id: String,
    pub provider: Provider,
    pub domain: String,
    pub tenant_id: Option<String>,
    pub enabled: bool,
    /// Where the browser starts a sign-in for the domain.
    pub login_url: String,
    pub options: EasieOptions,
    /// Why the connection may not do what it says (shown, not enforced here).
    pub warnings: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The domain to enroll: normalised like verified domains are, never a consumer mail domain,
/// and valid for the tenant checks.
pub fn enrollment_domain(input: &str) -> Result<Domain> {
    let domain = normalize_domain(input)?;
    if is_consumer_domain(&domain) {
        return Err(Error::invalid(
            "domain",
            format!("{domain} is a consumer mail domain: anyone can get an address there"),
        ));
    }
    Domain::parse(&domain).map_err(|e| Error::invalid("domain", e.to_string()))
}

/// The tenant given with an enrollment: Microsoft only, a GUID, not the consumer tenant.
pub fn given_tenant(provider: Provider, tenant_id: Option<&str>) -> Result<Option<TenantId>> {
    match (provider, tenant_id) {
        (_, None) => Ok(None),
        (Provider::Google, Some(_)) => Err(Error::invalid(
            "tenant_id",
            "only Microsoft enrollments pin a tenant; Google Workspace is checked by its domain",
        )),
        (Provider::Microsoft, Some(t)) => tenant::parse_given_tenant(t).map(Some),
    }
}

/// Refuses a domain the organisation cannot enroll now: not verified by it, enrolled already
/// (by anyone), or covered by the organisation's enabled SAML connection.
async fn check_enrollable<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    domain: &Domain,
) -> Result<()> {
    check_verified(conn, org_id, domain).await?;
    if let Some(existing) = easie_connection::Entity::find()
        .filter(easie_connection::Column::Domain.eq(domain.as_str()))
        .one(conn)
        .await?
    {
        return Err(Error::Conflict(if existing.org_id == org_id {
            format!("{domain} is already enrolled (connection {})", existing.id)
        } else {
            format!("{domain} is already enrolled by another organisation")
        }));
    }
    check_no_enabled_saml(conn, org_id, domain).await
}

async fn check_verified<C: ConnectionTrait>(conn: &C, org_id: &str, domain: &Domain) -> Result<()> {
    if verified_owner(conn, domain.as_str()).await?.as_deref() == Some(org_id) {
        return Ok(());
    }
    Err(Error::invalid(
        "domain",
        format!("{domain} is not a verified domain of the organisation: verify it first"),
    ))
}

async fn check_no_enabled_saml<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    domain: &Domain,
) -> Result<()> {
    match enabled_saml(conn, org_id).await? {
        Some(id) => Err(Error::Conflict(format!(
            "the organisation has an enabled SAML connection ({id}), which already covers all \
             of its verified domains; disable or delete it before enrolling {domain} with EASIE"
        ))),
        None => Ok(()),
    }
}

async fn enabled_saml<C: ConnectionTrait>(conn: &C, org_id: &str) -> Result<Option<String>> {
    Ok(saml_connection::Entity::find()
        .filter(saml_connection::Column::OrgId.eq(org_id))
        .filter(saml_connection::Column::Enabled.eq(true))
        .order_by_asc(saml_connection::Column::CreatedAt)
        .one(conn)
        .await?
        .map(|m| m.id))
}

/// The unique index on the domain decides between simultaneous enrollments.
fn enrolled_already(e: sea_orm::DbErr, domain: &Domain) -> Error {
    match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict(format!("{domain} is already enrolled"))
        }
        _ => e.into(),
    }
}

/// Ends every active session signed in through a connection, queueing their back-channel
/// logout in the same transaction.
async fn end_sessions<C: ConnectionTrait>(
    txn: &C,
    c: &EasieConnection,
    reason: &str,
    now: i64,
) -> Result<u64> {
    let method =
        AuthMethod::UpstreamOidc { upstream: c.provider, connection_id: Some(c.id.clone()) };
    let filter = sea_orm::Condition::all().add(session::Column::AuthMethod.eq(method.to_stored()));
    crate::identity::sessions::end_matching(txn, filter, reason, now).await
}

impl EasieService {
    /// Enrolls a domain (enabled). For Microsoft the tenant is pinned now: the given one, or
    /// the one Microsoft names for the domain; when both are known they must agree.
    pub async fn create(
        &self,
        new: NewEasieConnection,
        actor: &Actor,
    ) -> Result<EasieConnectionView> {
        let domain = enrollment_domain(&new.domain)?;
        let given = given_tenant(new.provider, new.tenant_id.as_deref())?;
        let options = new.options.validate(&domain)?;
        // Everything that can be refused is refused before a request leaves for Microsoft.
        let db = self.store.db();
        access::authorize(db, &new.org_id, actor, Need::Admin).await?;
        self.require_configured(new.provider)?;
        check_enrollable(db, &new.org_id, &domain).await?;
        let pinned = match new.provider {
            Provider::Microsoft => {
                let discovered = self.tenants.discover(&domain).await;
                Some(tenant::pin_tenant(&domain, given, discovered)?)
            }
            Provider::Google => None,
        };
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        access::authorize(&txn, &new.org_id, actor, Need::Admin).await?;
        check_enrollable(&txn, &new.org_id, &domain).await?;
        let id = ids::new_id(ids::EASIE_CONNECTION);
        easie_connection::ActiveModel {
            id: Set(id.clone()),
            org_id: Set(new.org_id.clone()),
            provider: Set(new.provider.as_str().to_owned()),
            domain: Set(domain.as_str().to_owned()),
            tenant_id: Set(pinned.as_ref().map(|(t, _)| t.as_str().to_owned())),
            enabled: Set(true),
            options: Set(serde_json::to_string(&options)?),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| enrolled_already(e, &domain))?;
        let data = json!({
            "org_id": new.org_id, "provider": new.provider, "domain": domain.as_str(),
            "tenant_id": pinned.as_ref().map(|(t, _)| t.as_str()),
            "tenant_source": pinned.as_ref().map(|(_, s)| s), "options": options,
        });
        audit::record(&txn, now, actor, "easie.connection_created", Some(&id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.show(&id, actor).await
    }

    /// Whether `id` names an EASIE connection (rather than a SAML one, or nothing). Says
    /// nothing else about it: reading it needs [`Self::show`], which checks the caller.
    pub async fn is_easie(&self, id: &str) -> Result<bool> {
        if !ids::is_valid(ids::EASIE_CONNECTION, id) {
            return Ok(false);
        }
        Ok(find(self.store.db(), id).await?.is_some())
    }

    async fn load<C: ConnectionTrait>(&self, conn: &C, id: &str) -> Result<EasieConnection> {
        let not_found = || Error::NotFound(format!("connection {id}"));
        if !ids::is_valid(ids::EASIE_CONNECTION, id) {
            return Err(not_found());
        }
        find(conn, id).await?.ok_or_else(not_found)
    }

    /// One connection, for an organisation admin or the operator.
    pub async fn show(&self, id: &str, actor: &Actor) -> Result<EasieConnectionView> {
        let db = self.store.db();
        let c = self.load(db, id).await?;
        access::authorize(db, &c.org_id, actor, Need::Admin).await?;
        self.view(c).await
    }

    /// Connections of one organisation, or of every organisation for the operator; oldest
    /// first.
    pub async fn list(
        &self,
        org_id: Option<&str>,
        actor: &Actor,
    ) -> Result<Vec<EasieConnectionView>> {
        let db = self.store.db();
        let mut q = easie_connection::Entity::find()
            .order_by_asc(easie_connection::Column::CreatedAt)
            .order_by_asc(easie_connection::Column::Id);
        match org_id {
            Some(org) => {
                access::authorize(db, org, actor, Need::Admin).await?;
                q = q.filter(easie_connection::Column::OrgId.eq(org));
            }
            None if matches!(actor.principal, Principal::Cli | Principal::System) => {}
            None => return Err(Error::Forbidden("name the organisation".into())),
        }
        let mut out = Vec::new();
        for model in q.all(db).await? {
            out.push(self.view(EasieConnection::try_from(model)?).await?);
        }
        Ok(out)
    }

    async fn view(&self, c: EasieConnection) -> Result<EasieConnectionView> {
        let db = self.store.db();
        let mut warnings = Vec::new();
        if verified_owner(db, &c.domain).await?.as_deref() != Some(c.org_id.as_str()) {
            warnings.push(format!(
                "{} is no longer a verified domain of the organisation: the connection is not \
                 enforced and nobody can sign in through it",
                c.domain
            ));
        }
        if self.require_configured(c.provider).is_err() {
            warnings.push(format!("{} sign-in is not configured on this instance", c.provider));
        }
        if let Some(saml) = enabled_saml(db, &c.org_id).await? {
            warnings.push(format!(
                "the organisation's enabled SAML connection {saml} takes precedence in routing"
            ));
        }
        Ok(EasieConnectionView {
            login_url: format!("{}{}", self.public_url, Self::login_path(&c.id)),
            name: display_name(c.provider, &c.domain),
            connection_id: c.id,
            kind: "easie",
            protocol: "easie",
            org_id: c.org_id,
            provider: c.provider,
            domain: c.domain,
            tenant_id: c.tenant_id,
            enabled: c.enabled,
            options: c.options,
            warnings,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }

    /// Enables or disables a connection. Disabling ends every session signed in through it
    /// (with back-channel logout); enabling checks again what creating checked.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<EasieConnectionView> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let c = self.load(&txn, id).await?;
        access::authorize(&txn, &c.org_id, actor, Need::Admin).await?;
        if enabled && !c.enabled {
            let domain = c.enrollment()?.domain;
            check_verified(&txn, &c.org_id, &domain).await?;
            check_no_enabled_saml(&txn, &c.org_id, &domain).await?;
        }
        easie_connection::Entity::update_many()
            .col_expr(easie_connection::Column::Enabled, sea_orm::sea_query::Expr::value(enabled))
            .col_expr(easie_connection::Column::UpdatedAt, sea_orm::sea_query::Expr::value(now))
            .filter(easie_connection::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let ended =
            if enabled { 0 } else { end_sessions(&txn, &c, "connection_disabled", now).await? };
        let action = if enabled { "easie.connection_enabled" } else { "easie.connection_disabled" };
        let data = json!({
            "org_id": c.org_id, "domain": c.domain, "before": { "enabled": c.enabled },
            "after": { "enabled": enabled }, "sessions_ended": ended,
        });
        audit::record(&txn, now, actor, action, Some(id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        self.show(id, actor).await
    }

    /// Replaces a connection's options (the bypass allow-list), validated as a whole.
    pub async fn set_options(
        &self,
        id: &str,
        options: EasieOptions,
        actor: &Actor,
    ) -> Result<EasieConnectionView> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let c = self.load(&txn, id).await?;
        access::authorize(&txn, &c.org_id, actor, Need::Admin).await?;
        let options = options.validate(&c.enrollment()?.domain)?;
        easie_connection::Entity::update_many()
            .col_expr(
                easie_connection::Column::Options,
                sea_orm::sea_query::Expr::value(serde_json::to_string(&options)?),
            )
            .col_expr(easie_connection::Column::UpdatedAt, sea_orm::sea_query::Expr::value(now))
            .filter(easie_connection::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let data = json!({ "before": c.options, "after": options });
        audit::record(&txn, now, actor, "easie.connection_updated", Some(id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.show(id, actor).await
    }

    /// Deletes a connection: enforcement ends, the sessions signed in through it end (with
    /// back-channel logout), and no further sign-in can use it; the accounts and their
    /// memberships stay.
    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let c = self.load(&txn, id).await?;
        access::authorize(&txn, &c.org_id, actor, Need::Admin).await?;
        let ended = end_sessions(&txn, &c, "connection_deleted", now).await?;
        easie_connection::Entity::delete_by_id(id.to_owned()).exec(&txn).await?;
        let data = json!({ "before": c, "sessions_ended": ended });
        audit::record(&txn, now, actor, "easie.connection_deleted", Some(id), data).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(e: Error) -> &'static str {
        match e {
            Error::Invalid { field, .. } => field,
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn enrolled_domains_are_normalised_and_never_consumer_domains() {
        assert_eq!(enrollment_domain(" Acme.COM. ").unwrap().as_str(), "acme.com");
        assert_eq!(enrollment_domain("bücher.example").unwrap().as_str(), "xn--bcher-kva.example");
        for consumer in ["gmail.com", "Outlook.com", "mail.yahoo.co.uk", "hotmail.com."] {
            let err = enrollment_domain(consumer).unwrap_err();
            assert!(err.to_string().contains("consumer"), "{consumer}: {err}");
        }
        for bad in ["", "acme", "127.0.0.1", "a@acme.com", "https://acme.com", "acme..com"] {
            assert_eq!(field(enrollment_domain(bad).unwrap_err()), "domain", "{bad:?}");
        }
    }

    #[test]
    fn only_microsoft_pins_a_tenant() {
        let tid = "11111111-1111-4111-8111-111111111111";
        assert_eq!(given_tenant(Provider::Google, None).unwrap(), None);
        assert_eq!(field(given_tenant(Provider::Google, Some(tid)).unwrap_err()), "tenant_id");
        assert_eq!(given_tenant(Provider::Microsoft, Some(tid)).unwrap().unwrap().as_str(), tid);
        let consumer = latchkey_easie::CONSUMER_TENANT_ID;
        assert_eq!(
            field(given_tenant(Provider::Microsoft, Some(consumer)).unwrap_err()),
            "tenant_id"
        );
        assert_eq!(
            field(given_tenant(Provider::Microsoft, Some("common")).unwrap_err()),
            "tenant_id"
        );
    }

    #[test]
    fn bypass_addresses_are_normalised_and_on_the_enrolled_domain() {
        let acme = Domain::parse("acme.com").unwrap();
        let o = EasieOptions { bypass: vec!["Root@ACME.com".into(), "root@acme.com".into()] };
        assert_eq!(o.validate(&acme).unwrap().bypass, vec!["root@acme.com"]);
        for bad in ["root@other.com", "root@eu.acme.com", "root@acme.com.evil.io", "not-an-address"]
        {
            let o = EasieOptions { bypass: vec![bad.into()] };
            assert!(o.validate(&acme).is_err(), "{bad}");
        }
        let many =
            EasieOptions { bypass: (0..=MAX_BYPASS).map(|i| format!("a{i}@acme.com")).collect() };
        assert_eq!(field(many.validate(&acme).unwrap_err()), "bypass");
    }

    #[test]
    fn names_say_the_product_and_the_domain() {
        assert_eq!(display_name(Provider::Google, "acme.com"), "Google Workspace (acme.com)");
        assert_eq!(display_name(Provider::Microsoft, "acme.com"), "Microsoft Entra ID (acme.com)");
    }
}
