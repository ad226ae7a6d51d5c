//! What the Google / Microsoft tests share: a node whose providers are the emulator
//! (tests/upstream-idp) with an organisation that verified some domains, EASIE enrollment
//! straight into the store (the service and the CLI have tests of their own), and a browser
//! that follows redirects across Latchkey and the provider.

use latchkey_core::{
    identity::method::Upstream,
    infra::{audit::Actor, entity::easie_connection},
};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::Value;

use crate::{
    support::{Backend, TestDb, TestServer, data_dir},
    upstream_idp::UpstreamIdp,
};

/// A node signing in through the emulator, and the organisation "Acme".
pub struct UpstreamFixture {
    pub node: TestServer,
    pub idp: UpstreamIdp,
    pub org_id: String,
    _data: tempfile::TempDir,
}

impl UpstreamFixture {
    /// Starts the emulator with `config` and a node using it; Acme verifies `domains`. `None`
    /// when the backend is not available here.
    pub async fn start(backend: Backend, config: Value, domains: &[&str]) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let idp = UpstreamIdp::start(config).await;
        let data = data_dir();
        let settings = idp.settings();
        let extra: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let node = TestServer::start(data.path(), &db, &extra).await;
        idp.register_clients(&node.base_url).await;
        let org_id = acme(&node, domains).await;
        Some(Self { node, idp, org_id, _data: data })
    }

    pub async fn enroll(&self, provider: Upstream, domain: &str, tenant: Option<&str>) -> String {
        enroll(&self.node, &self.org_id, provider, domain, tenant).await
    }
}

/// Creates the organisation "Acme" with `domains` verified; returns its id.
pub async fn acme(node: &TestServer, domains: &[&str]) -> String {
    let org = node.core.orgs.create("Acme", "acme", &Actor::cli()).await.unwrap();
    for domain in domains {
        node.core.domains.add_verified(&org.id, domain, &Actor::cli()).await.unwrap();
    }
    org.id
}

/// Enrolls `domain` of `org_id` directly in the store; the connection's id is
/// `con_test_{domain with _ for .}`.
pub async fn enroll(
    node: &TestServer,
    org_id: &str,
    provider: Upstream,
    domain: &str,
    tenant: Option<&str>,
) -> String {
    let id = format!("con_test_{}", domain.replace('.', "_"));
    let now = node.core.store.now();
    easie_connection::Entity::insert(easie_connection::ActiveModel {
        id: Set(id.clone()),
        org_id: Set(org_id.to_owned()),
        provider: Set(provider.as_str().to_owned()),
        domain: Set(domain.to_owned()),
        tenant_id: Set(tenant.map(str::to_owned)),
        enabled: Set(true),
        options: Set("{}".into()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(node.core.store.db())
    .await
    .unwrap();
    id
}

/// A browser: cookies kept, redirects left to [`follow`].
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

/// Where a browser ended up: the last response's status, `Location` and body, and the
/// callback URL it passed through (if any).
pub struct Journey {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub callback: Option<String>,
}

/// Follows redirects from `url` (across Latchkey and the provider) until a response that is
/// not a redirect, or Latchkey's answer at its callback (the sign-in's landing).
pub async fn follow(node: &TestServer, b: &reqwest::Client, url: &str) -> Journey {
    let mut url = url.to_owned();
    let mut callback = None;
    for _ in 0..25 {
        let res = b.get(&url).send().await.unwrap();
        let status = res.status().as_u16();
        let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let at_callback = url.starts_with(&node.url("/oauth/callback/"));
        if at_callback {
            callback = Some(url.clone());
        }
        match location {
            Some(loc) if (300..400).contains(&status) && !at_callback => {
                url = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
            }
            location => {
                let body = res.text().await.unwrap_or_default();
                return Journey { status, location, body, callback };
            }
        }
    }
    panic!("too many redirects from {url}");
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
