//! Verified domains of organisations. An admin adds a domain, then proves control of it with a
//! DNS TXT record (`_latchkey-challenge.<domain>` = the domain's token) or with a code emailed to
//! an address on the domain. A verified domain belongs to one organisation only, and decides what
//! happens when people with addresses on it sign up (see [`crate::tenancy::enrollment`]).

use std::time::Duration;

use hickory_resolver::{
    Resolver,
    config::{NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use rand::Rng;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::infra::inline_sqlite::constraint_violation;
use crate::{
    Error, Result, Settings,
    identity::users::normalize_email,
    infra::audit::{self, Actor},
    infra::config::DnsResolver,
    infra::crypto,
    infra::entity::{org_domain, org_invitation, org_join_request},
    infra::ids,
    infra::mail::{MailKind, MailService},
    infra::store::Store,
    tenancy::access::{self, Need},
    tenancy::consumer_domains::is_consumer_domain,
    tenancy::model::{EnrollmentMode, InvitationStatus, JoinRequestStatus, OrgDomain},
    tenancy::orgs::lock_org,
};

/// The label under which the verification TXT record lives.
pub const CHALLENGE_LABEL: &str = "_latchkey-challenge";
/// How long an emailed code is valid.
pub const EMAIL_CODE_TTL_SECS: i64 = 600;
/// Wrong codes allowed per code; then a new one must be requested.
pub const EMAIL_CODE_MAX_ATTEMPTS: i32 = 5;
/// A new code can be requested this long after the previous one, which bounds guessing by
/// requesting code after code, and mail sent to someone else's mailbox.
pub const EMAIL_CODE_RESEND_SECS: i64 = 60;
/// Per-query timeout and tries; a verification click should answer within seconds.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
const DNS_ATTEMPTS: usize = 2;

#[derive(Clone)]
pub struct DomainService {
    store: Store,
    mail: MailService,
    resolver: DnsResolver,
}

/// Lower-cases, converts to ASCII (IDNA, as browsers do) and checks a domain name. IP addresses,
/// single labels and names that are not valid host names are refused.
pub fn normalize_domain(input: &str) -> Result<String> {
    let invalid = || Error::invalid("domain", "is not a valid domain name such as example.com");
    let trimmed = input.trim().trim_end_matches('.');
    if trimmed.is_empty() || trimmed.len() > 253 || trimmed.contains(['/', ':', '@', '[', ' ']) {
        return Err(invalid());
    }
    let domain = match url::Host::parse(trimmed) {
        Ok(url::Host::Domain(d)) => d,
        _ => return Err(invalid()),
    };
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld_ok = labels.last().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_digit()));
    if domain.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok {
        return Err(invalid());
    }
    Ok(domain)
}

/// What the DNS said about the challenge record.
enum TxtCheck {
    Found,
    /// The name exists with other TXT values, or does not exist.
    Missing,
    Failed(String),
}

/// Salted so equal codes for different domains hash differently; the code is short-lived and
/// rate-limited, which is what protects it, not the hash.
fn email_code_hash(domain_id: &str, code: &str) -> String {
    crypto::hash_secret_hex(&format!("{domain_id}:{code}"))
}

impl DomainService {
    pub fn new(store: Store, mail: MailService, settings: &Settings) -> Self {
        Self { store, mail, resolver: settings.dns_resolver.clone() }
    }

    async fn load<C: ConnectionTrait>(
        conn: &C,
        org_id: &str,
        domain_id: &str,
    ) -> Result<org_domain::Model> {
        org_domain::Entity::find_by_id(domain_id.to_owned())
            .filter(org_domain::Column::OrgId.eq(org_id))
            .one(conn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("domain {domain_id}")))
    }

    /// Adds an unverified domain to the organisation with a fresh verification token.
    pub async fn add_domain(&self, org_id: &str, domain: &str, actor: &Actor) -> Result<OrgDomain> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let domain = normalize_domain(domain)?;
        if is_consumer_domain(&domain) {
            return Err(Error::invalid(
                "domain",
                format!("{domain} is a public email provider; it cannot belong to an organisation"),
            ));
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        let existing = org_domain::Entity::find()
            .filter(org_domain::Column::Domain.eq(&domain))
            .all(&txn)
            .await?;
        if existing.iter().any(|d| d.org_id == org_id) {
            return Err(Error::Conflict(format!("{domain} has already been added")));
        }
        if existing.iter().any(|d| d.verified_domain.is_some()) {
            return Err(Error::Conflict(format!(
                "{domain} is already verified by another organisation"
            )));
        }
        let m = org_domain::ActiveModel {
            id: Set(ids::new_id(ids::ORG_DOMAIN)),
            org_id: Set(org_id.to_owned()),
            domain: Set(domain.clone()),
            verified_domain: Set(None),
            verification_token: Set(crypto::random_secret()),
            verified_at: Set(None),
            verification_method: Set(None),
            enrollment_mode: Set(EnrollmentMode::Manual.as_str().into()),
            email_code_hash: Set(None),
            email_code_address: Set(None),
            email_code_expires_at: Set(None),
            email_code_sent_at: Set(None),
            email_code_attempts: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.domain_added",
            Some(org_id),
            json!({ "domain_id": m.id, "domain": domain }),
        )
        .await?;
        txn.commit().await?;
        Ok(m.into())
    }

    /// The operator asserts that the organisation owns `domain` (`orgs domains add --verified`,
    /// or an instance administrator in the console): adds it if needed and marks it verified,
    /// audited with the method `operator`. Only instance actors may: organisation admins prove
    /// ownership by DNS or email.
    pub async fn add_verified(
        &self,
        org_id: &str,
        domain: &str,
        actor: &Actor,
    ) -> Result<OrgDomain> {
        if !access::is_instance_actor(self.store.db(), actor).await? {
            return Err(Error::Forbidden(
                "only instance administrators may assert domain ownership".into(),
            ));
        }
        let normalized = normalize_domain(domain)?;
        let existing = org_domain::Entity::find()
            .filter(org_domain::Column::OrgId.eq(org_id))
            .filter(org_domain::Column::Domain.eq(&normalized))
            .one(self.store.db())
            .await?;
        let domain_id = match existing {
            Some(d) => d.id,
            None => self.add_domain(org_id, &normalized, actor).await?.id,
        };
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        let d = Self::load(&txn, org_id, &domain_id).await?;
        let updated = mark_verified(&txn, d, "operator", actor, now).await?;
        txn.commit().await?;
        Ok(updated.into())
    }

    pub async fn list(&self, org_id: &str, actor: &Actor) -> Result<Vec<OrgDomain>> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        Ok(org_domain::Entity::find()
            .filter(org_domain::Column::OrgId.eq(org_id))
            .order_by_asc(org_domain::Column::Domain)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn get(&self, org_id: &str, domain_id: &str, actor: &Actor) -> Result<OrgDomain> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        Ok(Self::load(self.store.db(), org_id, domain_id).await?.into())
    }

    /// Looks up `_latchkey-challenge.<domain>` and verifies the domain if a TXT string equals its
    /// token. Not finding it is an error that says so; nothing changes then.
    pub async fn verify_dns(
        &self,
        org_id: &str,
        domain_id: &str,
        actor: &Actor,
    ) -> Result<OrgDomain> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let d = Self::load(self.store.db(), org_id, domain_id).await?;
        if d.verified_domain.is_some() {
            return Ok(d.into());
        }
        let name = format!("{CHALLENGE_LABEL}.{}", d.domain);
        // The lookup runs outside any transaction: no database lock waits on the network.
        match self.txt_check(&name, &d.verification_token).await {
            TxtCheck::Found => {}
            TxtCheck::Missing => {
                return Err(Error::invalid(
                    "domain",
                    format!("no TXT record at {name} holds the verification token yet"),
                ));
            }
            TxtCheck::Failed(reason) => {
                return Err(Error::invalid(
                    "domain",
                    format!("the DNS lookup of {name} failed ({reason}); try again later"),
                ));
            }
        }
        let txn = self.store.begin_write().await?;
        let d = Self::load(&txn, org_id, domain_id).await?;
        let d = mark_verified(&txn, d, "dns", actor, self.store.now()).await?;
        txn.commit().await?;
        Ok(d.into())
    }

    async fn txt_check(&self, name: &str, token: &str) -> TxtCheck {
        let builder = match &self.resolver {
            DnsResolver::System => match Resolver::builder_tokio() {
                Ok(b) => b,
                Err(e) => return TxtCheck::Failed(format!("no system resolver: {e}")),
            },
            DnsResolver::Servers(servers) => {
                let name_servers = servers
                    .iter()
                    .map(|addr| {
                        let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                        for c in &mut ns.connections {
                            c.port = addr.port();
                        }
                        ns
                    })
                    .collect();
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(name_servers),
                    TokioRuntimeProvider::default(),
                )
            }
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = DNS_TIMEOUT;
        opts.attempts = DNS_ATTEMPTS;
        // A fresh resolver per check, without cache: an admin who just published the record
        // must not be answered from a cached "no such name".
        opts.cache_size = 0;
        let resolver = match builder.build() {
            Ok(r) => r,
            Err(e) => return TxtCheck::Failed(e.to_string()),
        };
        let fqdn = format!("{name}.");
        let lookup = tokio::time::timeout(DNS_TIMEOUT * 4, resolver.txt_lookup(fqdn)).await;
        match lookup {
            Err(_) => TxtCheck::Failed("timed out".into()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => TxtCheck::Missing,
            Ok(Err(e)) => TxtCheck::Failed(e.to_string()),
            Ok(Ok(answer)) => {
                let token = token.as_bytes();
                let found = answer.answers().iter().any(|record| match &record.data {
                    // Each string, or the record's strings joined (long values are split).
                    RData::TXT(txt) => {
                        txt.txt_data.iter().any(|s| s.as_ref() == token)
                            || txt.txt_data.concat() == token
                    }
                    _ => false,
                });
                if found { TxtCheck::Found } else { TxtCheck::Missing }
            }
        }
    }

    /// Emails a 6-digit code to `address`, which must be on the domain. Returns the mail id.
    pub async fn start_email_verification(
        &self,
        org_id: &str,
        domain_id: &str,
        address: &str,
        actor: &Actor,
    ) -> Result<String> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let address = normalize_email(address)
            .map_err(|_| Error::invalid("address", "is not a valid email address"))?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let d = Self::load(&txn, org_id, domain_id).await?;
        if d.verified_domain.is_some() {
            return Err(Error::Conflict(format!("{} is already verified", d.domain)));
        }
        if address.rsplit_once('@').map(|(_, host)| host) != Some(d.domain.as_str()) {
            return Err(Error::invalid("address", format!("must be an address @{}", d.domain)));
        }
        if d.email_code_sent_at.is_some_and(|t| now < t + EMAIL_CODE_RESEND_SECS) {
            return Err(Error::Conflict(format!(
                "a code was sent less than {EMAIL_CODE_RESEND_SECS} seconds ago; wait before asking again"
            )));
        }
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        let domain = d.domain.clone();
        let mut am: org_domain::ActiveModel = d.into();
        am.email_code_hash = Set(Some(email_code_hash(domain_id, &code)));
        am.email_code_address = Set(Some(address.clone()));
        am.email_code_expires_at = Set(Some(now + EMAIL_CODE_TTL_SECS));
        am.email_code_sent_at = Set(Some(now));
        am.email_code_attempts = Set(0);
        am.updated_at = Set(now);
        am.update(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.domain_email_verification_started",
            Some(org_id),
            json!({ "domain_id": domain_id, "domain": domain, "address": address }),
        )
        .await?;
        let mail_id = self
            .mail
            .enqueue(&txn, &address, MailKind::DomainVerificationCode { domain, code })
            .await?;
        txn.commit().await?;
        self.mail.notify();
        Ok(mail_id)
    }

    /// Checks an emailed code; the right one verifies the domain. Each try is counted before the
    /// comparison, so concurrent guesses cannot exceed the limit.
    pub async fn confirm_email_code(
        &self,
        org_id: &str,
        domain_id: &str,
        code: &str,
        actor: &Actor,
    ) -> Result<OrgDomain> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::invalid("code", "must be the 6 digits from the email"));
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let d = Self::load(&txn, org_id, domain_id).await?;
        if d.verified_domain.is_some() {
            return Err(Error::Conflict(format!("{} is already verified", d.domain)));
        }
        let (Some(hash), Some(expires_at)) = (d.email_code_hash.clone(), d.email_code_expires_at)
        else {
            return Err(Error::Conflict("no verification code is pending; request one".into()));
        };
        if now >= expires_at {
            return Err(Error::Conflict("the code has expired; request a new one".into()));
        }
        let counted = org_domain::Entity::update_many()
            .col_expr(
                org_domain::Column::EmailCodeAttempts,
                Expr::col(org_domain::Column::EmailCodeAttempts).add(1),
            )
            .filter(org_domain::Column::Id.eq(domain_id))
            .filter(org_domain::Column::EmailCodeAttempts.lt(EMAIL_CODE_MAX_ATTEMPTS))
            .exec(&txn)
            .await?;
        if counted.rows_affected == 0 {
            return Err(Error::Conflict("too many wrong codes; request a new one".into()));
        }
        let expected = email_code_hash(domain_id, code);
        if !bool::from(expected.as_bytes().ct_eq(hash.as_bytes())) {
            // Keep the counted try.
            txn.commit().await?;
            return Err(Error::invalid("code", "is not the code that was sent"));
        }
        let d = Self::load(&txn, org_id, domain_id).await?;
        let d = mark_verified(&txn, d, "email", actor, now).await?;
        txn.commit().await?;
        Ok(d.into())
    }

    pub async fn set_enrollment_mode(
        &self,
        org_id: &str,
        domain_id: &str,
        mode: EnrollmentMode,
        actor: &Actor,
    ) -> Result<OrgDomain> {
        access::authorize(self.store.db(), org_id, actor, Need::Admin).await?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let d = Self::load(&txn, org_id, domain_id).await?;
        let domain = d.domain.clone();
        let mut am: org_domain::ActiveModel = d.into();
        am.enrollment_mode = Set(mode.as_str().into());
        am.updated_at = Set(self.store.now());
        let d = am.update(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.domain_enrollment_mode_set",
            Some(org_id),
            json!({ "domain_id": domain_id, "domain": domain, "mode": mode.as_str() }),
        )
        .await?;
        txn.commit().await?;
        Ok(d.into())
    }

    /// Removes the domain. Automatic invitations and suggestions it created and nobody acted on
    /// yet go with it; memberships stay.
    pub async fn remove_domain(&self, org_id: &str, domain_id: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        lock_org(&txn, org_id).await?;
        access::authorize(&txn, org_id, actor, Need::Admin).await?;
        let d = Self::load(&txn, org_id, domain_id).await?;
        org_domain::Entity::delete_by_id(d.id.clone()).exec(&txn).await?;
        // The organisation's verified domains are read once per revision (the SAML ACS).
        Store::bump_revision(&txn).await?;
        org_invitation::Entity::update_many()
            .col_expr(
                org_invitation::Column::Status,
                Expr::value(InvitationStatus::Revoked.as_str()),
            )
            .col_expr(org_invitation::Column::RevokedAt, Expr::value(now))
            .filter(org_invitation::Column::DomainId.eq(domain_id))
            .filter(org_invitation::Column::Status.eq(InvitationStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
        org_join_request::Entity::delete_many()
            .filter(org_join_request::Column::DomainId.eq(domain_id))
            .filter(org_join_request::Column::Status.eq(JoinRequestStatus::Suggested.as_str()))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            now,
            actor,
            "org.domain_removed",
            Some(org_id),
            json!({ "domain_id": domain_id, "domain": d.domain }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// Marks a domain verified unless another organisation holds it verified. The unique
/// `verified_domain` column settles races between organisations verifying at the same time.
async fn mark_verified<C: ConnectionTrait>(
    txn: &C,
    d: org_domain::Model,
    method: &str,
    actor: &Actor,
    now: i64,
) -> Result<org_domain::Model> {
    if d.verified_domain.is_some() {
        return Ok(d);
    }
    let taken =
        || Error::Conflict(format!("{} is already verified by another organisation", d.domain));
    let holder = org_domain::Entity::find()
        .filter(org_domain::Column::VerifiedDomain.eq(&d.domain))
        .one(txn)
        .await?;
    if holder.is_some() {
        return Err(taken());
    }
    let (org_id, domain_id, domain) = (d.org_id.clone(), d.id.clone(), d.domain.clone());
    let mut am: org_domain::ActiveModel = d.into();
    am.verified_domain = Set(Some(domain.clone()));
    am.verified_at = Set(Some(now));
    am.verification_method = Set(Some(method.to_owned()));
    am.email_code_hash = Set(None);
    am.email_code_address = Set(None);
    am.email_code_expires_at = Set(None);
    am.email_code_attempts = Set(0);
    am.updated_at = Set(now);
    let updated = am.update(txn).await.map_err(|e| match constraint_violation(&e) {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
            Error::Conflict(format!("{domain} is already verified by another organisation"))
        }
        _ => e.into(),
    })?;
    audit::record(
        txn,
        now,
        actor,
        "org.domain_verified",
        Some(&org_id),
        json!({ "domain_id": domain_id, "domain": domain, "method": method }),
    )
    .await?;
    // The SAML ACS reads an organisation's verified domains once per store revision.
    Store::bump_revision(txn).await?;
    Ok(updated)
}

/// The organisation that verified `domain`, if any (a verified domain belongs to one
/// organisation at most).
pub(crate) async fn verified_owner<C: ConnectionTrait>(
    conn: &C,
    domain: &str,
) -> Result<Option<String>> {
    Ok(org_domain::Entity::find()
        .filter(org_domain::Column::VerifiedDomain.eq(domain))
        .one(conn)
        .await?
        .map(|d| d.org_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        assert_eq!(normalize_domain(" Acme.COM. ").unwrap(), "acme.com");
        assert_eq!(normalize_domain("bücher.example").unwrap(), "xn--bcher-kva.example");
        assert_eq!(normalize_domain("xn--bcher-kva.example").unwrap(), "xn--bcher-kva.example");
        for bad in [
            "",
            "localhost",
            "acme",
            "192.0.2.1",
            "[::1]",
            "acme.com:443",
            "https://acme.com",
            "a@acme.com",
            "acme..com",
            "-acme.com",
            "acme-.com",
            "ac me.com",
            "acme.123",
            "under_score.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn email_codes_are_salted_by_domain() {
        assert_ne!(email_code_hash("dom_a", "123456"), email_code_hash("dom_b", "123456"));
        assert_eq!(email_code_hash("dom_a", "123456"), email_code_hash("dom_a", "123456"));
    }
}
