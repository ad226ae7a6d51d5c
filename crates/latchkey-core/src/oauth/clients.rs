//! The OAuth / OpenID Connect client registry: relying parties that delegate sign-in to
//! Latchkey. Client secrets are stored as SHA-256 hashes (they carry 256 random bits) and are
//! shown once; rotating keeps the previous secret valid for an overlap period. A client may
//! also register the audiences (APIs) its access tokens may be issued for (RFC 8707 `resource`,
//! on client_credentials and on user grants) and
//! name JWT templates whose claims are added to its access and ID tokens.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::Serialize;
use serde_json::{Map, json};

use latchkey_oidc::{ClientAuthMethod, DEFAULT_CLIENT_SCOPES, GrantType};
use sea_orm::DatabaseTransaction;

use crate::{
    Error, Result,
    infra::audit::{self, Actor},
    infra::crypto,
    infra::entity::{jwt_template, oauth_client, oauth_client_secret},
    infra::ids,
    infra::jose::SigningAlg,
    infra::store::Store,
};

const MAX_REDIRECT_URIS: usize = 20;
const MAX_AUDIENCES: usize = 20;
const MAX_URI_LEN: usize = 2000;
/// Default overlap during which a rotated-out secret still works.
pub const DEFAULT_SECRET_OVERLAP_SECS: i64 = 24 * 3600;
/// The longest access-token lifetime a client may have (the signing keys' retention counts on it).
pub const MAX_ACCESS_TOKEN_TTL_SECS: i64 = 3600;
/// Every client's ID-token lifetime (the signing keys' retention counts on it).
pub const ID_TOKEN_TTL_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Confidential,
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    /// Unknown stored values read as `Public`: a public client gets no secret-based trust.
    fn parse(s: &str) -> Self {
        if s == "confidential" { Self::Confidential } else { Self::Public }
    }
}

/// A registered client as the rest of Latchkey sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    pub allowed_scopes: Vec<String>,
    pub require_pkce: bool,
    pub id_token_alg: String,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// Audiences client_credentials may ask for with `resource` / `audience` (RFC 8707).
    pub audiences: Vec<String>,
    /// JWT template (by name) whose claims are added to the client's access tokens.
    pub access_token_template: Option<String>,
    /// JWT template (by name) whose claims are added to the client's ID tokens.
    pub id_token_template: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.client_type == ClientType::Public
    }

    /// Exact string comparison, as OAuth 2.1 requires: no prefix or pattern matching.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }

    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|u| u == uri)
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.iter().any(|g| g == grant.as_str())
    }

    /// The registered token-endpoint authentication method; None for a stored value Latchkey
    /// does not know, which no credentials match.
    pub fn auth_method(&self) -> Option<ClientAuthMethod> {
        ClientAuthMethod::parse(&self.token_endpoint_auth_method)
    }

    /// What the client's ID tokens (and logout tokens) are signed with.
    pub fn signing_alg(&self) -> SigningAlg {
        SigningAlg::parse(&self.id_token_alg).unwrap_or(SigningAlg::ID_TOKEN_DEFAULT)
    }
}

fn json_list(s: &str) -> Vec<String> {
    // A corrupt list reads as empty, which matches nothing: fail closed.
    serde_json::from_str(s).unwrap_or_default()
}

impl From<oauth_client::Model> for Client {
    fn from(m: oauth_client::Model) -> Self {
        Self {
            client_type: ClientType::parse(&m.client_type),
            redirect_uris: json_list(&m.redirect_uris),
            post_logout_redirect_uris: json_list(&m.post_logout_redirect_uris),
            grant_types: json_list(&m.grant_types),
            allowed_scopes: json_list(&m.allowed_scopes),
            jwks: m.jwks.as_deref().and_then(|j| serde_json::from_str(j).ok()),
            audiences: m.audiences.as_deref().map(json_list).unwrap_or_default(),
            access_token_template: m.access_token_template,
            id_token_template: m.id_token_template,
            client_id: m.client_id,
            name: m.name,
            token_endpoint_auth_method: m.token_endpoint_auth_method,
            first_party: m.first_party,
            backchannel_logout_uri: m.backchannel_logout_uri,
            require_pkce: m.require_pkce,
            id_token_alg: m.id_token_alg,
            access_token_ttl_secs: m.access_token_ttl_secs,
            id_token_ttl_secs: m.id_token_ttl_secs,
            refresh_token_ttl_secs: m.refresh_token_ttl_secs,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// What `clients add` registers. Empty lists mean "the defaults for this client type".
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    pub allowed_scopes: Vec<String>,
    pub id_token_alg: Option<String>,
    pub access_token_ttl_secs: Option<i64>,
    /// Audiences (APIs) its access tokens may be aimed at (RFC 8707 `resource`).
    pub audiences: Vec<String>,
    /// JWT template names for the access / ID tokens of user grants (need
    /// authorization_code); each must exist.
    pub access_token_template: Option<String>,
    pub id_token_template: Option<String>,
}

/// A client with its one-time secret (None for public clients).
#[derive(Debug, Clone, Serialize)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: Client,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// What `clients update` (and `PATCH /api/v1/applications/{id}`) changes; `None` leaves a
/// field as it is, a list replaces the registered one whole, `Some(None)` clears an optional
/// field. The client type and its authentication method are fixed at registration (a change
/// would orphan or need secrets; register a new client instead).
#[derive(Debug, Clone, Default)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// An empty list means the defaults, as at registration.
    pub grant_types: Option<Vec<String>>,
    /// An empty list means the defaults, as at registration.
    pub allowed_scopes: Option<Vec<String>>,
    pub first_party: Option<bool>,
    pub backchannel_logout_uri: Option<Option<String>>,
    pub id_token_alg: Option<String>,
    pub access_token_ttl_secs: Option<i64>,
    pub audiences: Option<Vec<String>>,
    pub access_token_template: Option<Option<String>>,
    pub id_token_template: Option<Option<String>>,
}

impl ClientPatch {
    /// The registration `current` would be with this patch applied, to be checked exactly as a
    /// new registration is.
    fn applied_to(&self, current: &Client) -> NewClient {
        let pick = |new: &Option<Vec<String>>, old: &Vec<String>| {
            new.clone().unwrap_or_else(|| old.clone())
        };
        NewClient {
            name: self.name.clone().unwrap_or_else(|| current.name.clone()),
            public: current.is_public(),
            redirect_uris: pick(&self.redirect_uris, &current.redirect_uris),
            post_logout_redirect_uris: pick(
                &self.post_logout_redirect_uris,
                &current.post_logout_redirect_uris,
            ),
            grant_types: pick(&self.grant_types, &current.grant_types),
            token_endpoint_auth_method: Some(current.token_endpoint_auth_method.clone()),
            jwks: current.jwks.clone(),
            first_party: self.first_party.unwrap_or(current.first_party),
            backchannel_logout_uri: self
                .backchannel_logout_uri
                .clone()
                .unwrap_or_else(|| current.backchannel_logout_uri.clone()),
            allowed_scopes: pick(&self.allowed_scopes, &current.allowed_scopes),
            id_token_alg: Some(
                self.id_token_alg.clone().unwrap_or_else(|| current.id_token_alg.clone()),
            ),
            access_token_ttl_secs: Some(
                self.access_token_ttl_secs.unwrap_or(current.access_token_ttl_secs),
            ),
            audiences: pick(&self.audiences, &current.audiences),
            access_token_template: self
                .access_token_template
                .clone()
                .unwrap_or_else(|| current.access_token_template.clone()),
            id_token_template: self
                .id_token_template
                .clone()
                .unwrap_or_else(|| current.id_token_template.clone()),
        }
    }
}

/// Registered redirect URIs are compared byte for byte, so they must be unambiguous: absolute,
/// no fragment, HTTPS except on loopback (RFC 8252 native apps may also use a private-use
/// scheme with a dot, e.g. `com.example.app:/cb`).
pub fn validate_redirect_uri(field: &'static str, uri: &str) -> Result<()> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return Err(Error::invalid(field, "must be 1-2000 characters"));
    }
    let parsed = url::Url::parse(uri)
        .map_err(|e| Error::invalid(field, format!("{uri:?} is not an absolute URL: {e}")))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(Error::invalid(field, format!("{uri:?} must not contain a fragment")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(field, format!("{uri:?} must not contain credentials")));
    }
    let loopback = matches!(
        parsed.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    let ok = match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => loopback,
        "javascript" | "data" | "file" | "vbscript" => false,
        other => other.contains('.'),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{uri:?}: use https, http on loopback, or a reverse-domain private scheme"),
        ))
    }
}

/// An audience a client may ask for: an absolute URI without a fragment (RFC 8707 §2), later
/// compared byte for byte with the requested `resource` / `audience`.
pub fn validate_audience(uri: &str) -> Result<()> {
    if uri.is_empty() || uri.len() > MAX_URI_LEN {
        return Err(Error::invalid("audience", "must be 1-2000 characters"));
    }
    let parsed = url::Url::parse(uri)
        .map_err(|e| Error::invalid("audience", format!("{uri:?} is not an absolute URI: {e}")))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(Error::invalid("audience", format!("{uri:?} must not contain a fragment")));
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid("audience", format!("{uri:?} must not contain spaces")));
    }
    Ok(())
}

/// A template name as given (trimmed); empty means none.
fn template_name(name: Option<String>) -> Option<String> {
    name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty())
}

fn validate_ttl(field: &'static str, secs: i64, min: i64, max: i64) -> Result<i64> {
    if (min..=max).contains(&secs) {
        Ok(secs)
    } else {
        Err(Error::invalid(field, format!("must be between {min} and {max} seconds")))
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A registration that passed every check, ready to store.
struct ValidClient {
    name: String,
    public: bool,
    redirect_uris: Vec<String>,
    post_logout: Vec<String>,
    backchannel_logout_uri: Option<String>,
    grant_types: Vec<String>,
    audiences: Vec<String>,
    /// (field, name) of the access- and ID-token templates.
    templates: [(&'static str, Option<String>); 2],
    auth_method: ClientAuthMethod,
    jwks: Option<serde_json::Value>,
    first_party: bool,
    allowed_scopes: Vec<String>,
    id_token_alg: SigningAlg,
    access_ttl: i64,
}

impl ValidClient {
    fn check(new: NewClient) -> Result<Self> {
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid("name", "must be 1-200 characters"));
        }
        let redirect_uris = uri_list("redirect_uri", new.redirect_uris)?;
        let post_logout = uri_list("post_logout_redirect_uri", new.post_logout_redirect_uris)?;
        if let Some(uri) = &new.backchannel_logout_uri {
            validate_redirect_uri("backchannel_logout_uri", uri)?;
        }
        let grant_types = grant_types(new.grant_types, new.public, &redirect_uris)?;
        let has = |g: GrantType| grant_types.iter().any(|x| x == g.as_str());
        let audiences = audiences(new.audiences)?;
        let templates = [
            ("access_token_template", template_name(new.access_token_template)),
            ("id_token_template", template_name(new.id_token_template)),
        ];
        if let Some((field, _)) = templates.iter().find(|(_, t)| t.is_some())
            && !has(GrantType::AuthorizationCode)
        {
            return Err(Error::invalid(
                field,
                "templates apply to user tokens: the client needs authorization_code",
            ));
        }
        let auth_method = auth_method(new.public, new.token_endpoint_auth_method.as_deref())?;
        if auth_method == ClientAuthMethod::PrivateKeyJwt && !has_keys(new.jwks.as_ref()) {
            return Err(Error::invalid("jwks", "private_key_jwt needs a JWK set with keys"));
        }
        let allowed_scopes = allowed_scopes(new.allowed_scopes)?;
        let id_token_alg = match new.id_token_alg.as_deref() {
            None => SigningAlg::ID_TOKEN_DEFAULT,
            Some(a) => SigningAlg::parse(a)
                .ok_or_else(|| Error::invalid("id_token_alg", "use RS256, ES256 or EdDSA"))?,
        };
        let access_ttl = validate_ttl(
            "access_token_ttl",
            new.access_token_ttl_secs.unwrap_or(300),
            60,
            MAX_ACCESS_TOKEN_TTL_SECS,
        )?;
        Ok(Self {
            name,
            public: new.public,
            redirect_uris,
            post_logout,
            backchannel_logout_uri: new.backchannel_logout_uri,
            grant_types,
            audiences,
            templates,
            auth_method,
            jwks: new.jwks,
            first_party: new.first_party,
            allowed_scopes,
            id_token_alg,
            access_ttl,
        })
    }

    fn model(&self, client_id: &str, now: i64) -> oauth_client::ActiveModel {
        let client_type = if self.public { ClientType::Public } else { ClientType::Confidential };
        oauth_client::ActiveModel {
            client_id: Set(client_id.to_owned()),
            name: Set(self.name.clone()),
            client_type: Set(client_type.as_str().to_owned()),
            redirect_uris: Set(json!(self.redirect_uris).to_string()),
            post_logout_redirect_uris: Set(json!(self.post_logout).to_string()),
            grant_types: Set(json!(self.grant_types).to_string()),
            token_endpoint_auth_method: Set(self.auth_method.as_str().to_owned()),
            jwks: Set(self.jwks.as_ref().map(ToString::to_string)),
            first_party: Set(self.first_party),
            backchannel_logout_uri: Set(self.backchannel_logout_uri.clone()),
            allowed_scopes: Set(json!(self.allowed_scopes).to_string()),
            // PKCE is on for every client by default (OAuth 2.1); public clients cannot opt out.
            require_pkce: Set(true),
            id_token_alg: Set(self.id_token_alg.as_str().to_owned()),
            access_token_ttl_secs: Set(self.access_ttl),
            id_token_ttl_secs: Set(ID_TOKEN_TTL_SECS),
            refresh_token_ttl_secs: Set(30 * 24 * 3600),
            audiences: Set((!self.audiences.is_empty()).then(|| json!(self.audiences).to_string())),
            access_token_template: Set(self.templates[0].1.clone()),
            id_token_template: Set(self.templates[1].1.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
}

impl ValidClient {
    /// `model` with the fields a [`ClientPatch`] may change set from this registration.
    fn apply_to(&self, model: &mut oauth_client::Model) {
        model.name.clone_from(&self.name);
        model.redirect_uris = json!(self.redirect_uris).to_string();
        model.post_logout_redirect_uris = json!(self.post_logout).to_string();
        model.grant_types = json!(self.grant_types).to_string();
        model.allowed_scopes = json!(self.allowed_scopes).to_string();
        model.first_party = self.first_party;
        model.backchannel_logout_uri.clone_from(&self.backchannel_logout_uri);
        model.id_token_alg = self.id_token_alg.as_str().to_owned();
        model.access_token_ttl_secs = self.access_ttl;
        model.audiences = (!self.audiences.is_empty()).then(|| json!(self.audiences).to_string());
        model.access_token_template.clone_from(&self.templates[0].1);
        model.id_token_template.clone_from(&self.templates[1].1);
    }
}

/// The fields whose shown value differs, each as `{before, after}`.
fn changed_fields(before: &Client, after: &Client) -> Map<String, serde_json::Value> {
    let (Ok(serde_json::Value::Object(b)), Ok(serde_json::Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Map::new();
    };
    a.into_iter()
        .filter(|(k, v)| k != "updated_at" && b.get(k) != Some(v))
        .map(|(k, v)| {
            let was = b.get(&k).cloned().unwrap_or_default();
            (k, json!({ "before": was, "after": v }))
        })
        .collect()
}

/// Deduplicated, at most [`MAX_REDIRECT_URIS`], each a safe redirect URI.
fn uri_list(field: &'static str, uris: Vec<String>) -> Result<Vec<String>> {
    let uris = dedup(uris);
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(Error::invalid(field, "at most 20"));
    }
    for uri in &uris {
        validate_redirect_uri(field, uri)?;
    }
    Ok(uris)
}

/// The grant types (the defaults when none are given): known ones, client_credentials only for
/// confidential clients, authorization_code only with a redirect URI.
fn grant_types(given: Vec<String>, public: bool, redirect_uris: &[String]) -> Result<Vec<String>> {
    let mut grants = dedup(given);
    if grants.is_empty() {
        grants = GrantType::DEFAULT.iter().map(|g| g.as_str().to_owned()).collect();
    }
    if let Some(g) = grants.iter().find(|g| GrantType::parse(g).is_none()) {
        return Err(Error::invalid("grant_type", format!("unsupported grant type {g:?}")));
    }
    let has = |g: GrantType| grants.iter().any(|x| x == g.as_str());
    if public && has(GrantType::ClientCredentials) {
        return Err(Error::invalid("grant_type", "public clients cannot use client_credentials"));
    }
    if has(GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(Error::invalid("redirect_uri", "give at least one for authorization_code"));
    }
    Ok(grants)
}

/// The audiences (APIs) the client's access tokens may be aimed at: valid, at most
/// [`MAX_AUDIENCES`].
fn audiences(given: Vec<String>) -> Result<Vec<String>> {
    let audiences = dedup(given);
    if audiences.len() > MAX_AUDIENCES {
        return Err(Error::invalid("audience", "at most 20"));
    }
    for aud in &audiences {
        validate_audience(aud)?;
    }
    Ok(audiences)
}

/// Public clients use `none`; confidential ones a secret (basic by default) or `private_key_jwt`.
fn auth_method(public: bool, given: Option<&str>) -> Result<ClientAuthMethod> {
    let field = "token_endpoint_auth_method";
    match (public, given.map(|m| (m, ClientAuthMethod::parse(m)))) {
        (true, None | Some((_, Some(ClientAuthMethod::None)))) => Ok(ClientAuthMethod::None),
        (true, Some(_)) => Err(Error::invalid(field, "public clients use none")),
        (false, None) => Ok(ClientAuthMethod::CONFIDENTIAL_DEFAULT),
        (false, Some((_, Some(m)))) if m.is_confidential() => Ok(m),
        (false, Some((other, _))) => {
            Err(Error::invalid(field, format!("unsupported for confidential clients: {other:?}")))
        }
    }
}

fn has_keys(jwks: Option<&serde_json::Value>) -> bool {
    jwks.and_then(|j| j.get("keys")).and_then(|k| k.as_array()).is_some_and(|k| !k.is_empty())
}

/// The scopes the client may request (the defaults when none are given), each a plain token.
fn allowed_scopes(given: Vec<String>) -> Result<Vec<String>> {
    let mut scopes = dedup(given);
    if scopes.is_empty() {
        scopes = DEFAULT_CLIENT_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(s) = scopes.iter().find(|s| {
        s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(Error::invalid("scope", format!("invalid scope {s:?}")));
    }
    Ok(scopes)
}

/// Checked in the write transaction, so a template cannot vanish in between (deleting one checks
/// for clients naming it, also in a write transaction).
async fn check_templates_exist(
    txn: &DatabaseTransaction,
    templates: &[(&'static str, Option<String>)],
) -> Result<()> {
    for (field, name) in templates {
        let Some(name) = name else { continue };
        let exists = jwt_template::Entity::find()
            .filter(jwt_template::Column::Name.eq(name))
            .one(txn)
            .await?
            .is_some();
        if !exists {
            return Err(Error::invalid(field, format!("no JWT template named {name:?}")));
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct ClientService {
    store: Store,
    /// Clients with their secret hashes, each tagged with the store revision it was read at.
    /// Changes to a client or its secrets bump the revision, so every node re-reads it on its
    /// next request; unknown ids are never cached.
    cache: Arc<RwLock<HashMap<String, Arc<CachedClient>>>>,
}

struct CachedClient {
    revision: i64,
    client: Arc<Client>,
    /// (SHA-256 hex, expiry) of each stored secret.
    secrets: Vec<(String, Option<i64>)>,
}

/// Bounds the cache when ids are made up: only registered clients are cached, and there are
/// rarely this many.
const CACHE_CAPACITY: usize = 10_000;

impl ClientService {
    pub fn new(store: Store) -> Self {
        Self { store, cache: Arc::default() }
    }

    /// The client (and its secrets) as of `revision`, from memory unless it changed since.
    async fn cached(&self, client_id: &str, revision: i64) -> Result<Option<Arc<CachedClient>>> {
        if !ids::is_valid(ids::OAUTH_CLIENT, client_id) {
            return Ok(None);
        }
        let hit = self.cache.read().ok().and_then(|c| c.get(client_id).cloned());
        if let Some(c) = hit.filter(|c| c.revision >= revision) {
            return Ok(Some(c));
        }
        let db = self.store.db();
        let Some(model) = oauth_client::Entity::find_by_id(client_id.to_owned()).one(db).await?
        else {
            if let Ok(mut cache) = self.cache.write() {
                cache.remove(client_id);
            }
            return Ok(None);
        };
        let secrets = oauth_client_secret::Entity::find()
            .filter(oauth_client_secret::Column::ClientId.eq(client_id))
            .all(db)
            .await?
            .into_iter()
            .map(|r| (r.secret_hash, r.expires_at))
            .collect();
        let entry = Arc::new(CachedClient { revision, client: Arc::new(model.into()), secrets });
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(client_id.to_owned(), entry.clone());
        }
        Ok(Some(entry))
    }

    /// [`Self::find`] for the protocol endpoints: served from memory, current as of `revision`
    /// (read with [`Store::current_revision`] after the request arrived).
    pub async fn find_at(&self, client_id: &str, revision: i64) -> Result<Option<Arc<Client>>> {
        Ok(self.cached(client_id, revision).await?.map(|c| c.client.clone()))
    }

    /// [`Self::verify_secret`] against the cached secret hashes, current as of `revision`.
    pub async fn verify_secret_at(
        &self,
        client_id: &str,
        secret: &str,
        revision: i64,
    ) -> Result<bool> {
        if secret.is_empty() || secret.len() > 512 {
            return Ok(false);
        }
        let Some(entry) = self.cached(client_id, revision).await? else {
            return Ok(false);
        };
        Ok(secret_matches(&entry.secrets, secret, self.store.now()))
    }

    pub async fn create(&self, new: NewClient, actor: &Actor) -> Result<CreatedClient> {
        let now = self.store.now();
        let client_id = ids::new_id(ids::OAUTH_CLIENT);
        let valid = ValidClient::check(new)?;
        let model = valid.model(&client_id, now);
        let txn = self.store.begin_write().await?;
        check_templates_exist(&txn, &valid.templates).await?;
        let model = model.insert(&txn).await?;
        let secret = if valid.auth_method.uses_secret() {
            Some(insert_secret(&txn, &client_id, now).await?)
        } else {
            None
        };
        audit::record(
            &txn,
            now,
            actor,
            "client.created",
            Some(&client_id),
            json!({
                "name": model.name,
                "client_type": model.client_type,
                "audiences": valid.audiences,
                "access_token_template": model.access_token_template,
                "id_token_template": model.id_token_template,
            }),
        )
        .await?;
        txn.commit().await?;
        Ok(CreatedClient { client: model.into(), client_secret: secret })
    }

    /// Applies `patch` if `precondition` holds for the client as stored when the change
    /// begins (else [`Error::PreconditionFailed`]), after checking the result exactly as a
    /// registration is checked. Nothing to change writes nothing; a change is audited
    /// `client.updated` with the before and after of each changed field.
    pub async fn update(
        &self,
        client_id: &str,
        patch: &ClientPatch,
        actor: &Actor,
        precondition: impl Fn(&Client) -> bool + Send,
    ) -> Result<Client> {
        let txn = self.store.begin_write().await?;
        let existing = oauth_client::Entity::find_by_id(client_id.to_owned())
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("client {client_id}")))?;
        let current = Client::from(existing.clone());
        if !precondition(&current) {
            return Err(Error::PreconditionFailed(
                "the client changed since it was read; read it again".into(),
            ));
        }
        let valid = ValidClient::check(patch.applied_to(&current))?;
        check_templates_exist(&txn, &valid.templates).await?;
        let mut next = existing;
        valid.apply_to(&mut next);
        let changes = changed_fields(&current, &Client::from(next.clone()));
        if changes.is_empty() {
            return Ok(current);
        }
        let now = self.store.now();
        next.updated_at = now;
        let updated = next.into_active_model().reset_all().update(&txn).await?;
        let data = json!({ "changes": changes });
        audit::record(&txn, now, actor, "client.updated", Some(client_id), data).await?;
        // Clients are cached on every node against the revision.
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(updated.into())
    }

    pub async fn list(&self) -> Result<Vec<Client>> {
        Ok(oauth_client::Entity::find()
            .order_by_asc(oauth_client::Column::CreatedAt)
            .order_by_asc(oauth_client::Column::ClientId)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The client, or None for an unknown (or malformed) client_id.
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>> {
        if !ids::is_valid(ids::OAUTH_CLIENT, client_id) {
            return Ok(None);
        }
        Ok(oauth_client::Entity::find_by_id(client_id.to_owned())
            .one(self.store.db())
            .await?
            .map(Into::into))
    }

    pub async fn get(&self, client_id: &str) -> Result<Client> {
        self.find(client_id).await?.ok_or_else(|| Error::NotFound(format!("client {client_id}")))
    }

    /// Issues a new secret; older secrets keep working for `overlap_secs` (0 ends them now).
    pub async fn rotate_secret(
        &self,
        client_id: &str,
        overlap_secs: i64,
        actor: &Actor,
    ) -> Result<(Client, String)> {
        let overlap = validate_ttl("overlap", overlap_secs, 0, 30 * 24 * 3600)?;
        let client = self.get(client_id).await?;
        if !client.auth_method().is_some_and(ClientAuthMethod::uses_secret) {
            return Err(Error::invalid("client", "this client does not use a client secret"));
        }
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        // Shorten, never extend, the life of secrets already on their way out.
        oauth_client_secret::Entity::update_many()
            .col_expr(oauth_client_secret::Column::ExpiresAt, Expr::value(now + overlap))
            .filter(oauth_client_secret::Column::ClientId.eq(client_id))
            .filter(
                sea_orm::Condition::any()
                    .add(oauth_client_secret::Column::ExpiresAt.is_null())
                    .add(oauth_client_secret::Column::ExpiresAt.gt(now + overlap)),
            )
            .exec(&txn)
            .await?;
        let secret = insert_secret(&txn, client_id, now).await?;
        audit::record(
            &txn,
            now,
            actor,
            "client.secret_rotated",
            Some(client_id),
            json!({ "overlap_secs": overlap }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok((client, secret))
    }

    pub async fn delete(&self, client_id: &str, actor: &Actor) -> Result<()> {
        let now = self.store.now();
        let client = self.get(client_id).await?;
        let txn = self.store.begin_write().await?;
        oauth_client_secret::Entity::delete_many()
            .filter(oauth_client_secret::Column::ClientId.eq(client_id))
            .exec(&txn)
            .await?;
        oauth_client::Entity::delete_by_id(client_id.to_owned()).exec(&txn).await?;
        audit::record(
            &txn,
            now,
            actor,
            "client.deleted",
            Some(client_id),
            json!({ "name": client.name }),
        )
        .await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// True when `secret` is one of the client's unexpired secrets. The stored hashes are
    /// compared in constant time.
    pub async fn verify_secret(&self, client_id: &str, secret: &str) -> Result<bool> {
        if secret.is_empty() || secret.len() > 512 || !ids::is_valid(ids::OAUTH_CLIENT, client_id) {
            return Ok(false);
        }
        let rows: Vec<(String, Option<i64>)> = oauth_client_secret::Entity::find()
            .filter(oauth_client_secret::Column::ClientId.eq(client_id))
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|r| (r.secret_hash, r.expires_at))
            .collect();
        Ok(secret_matches(&rows, secret, self.store.now()))
    }
}

/// True when `secret` hashes to one of the unexpired stored hashes; every hash is compared,
/// in constant time.
fn secret_matches(stored: &[(String, Option<i64>)], secret: &str, now: i64) -> bool {
    let hash = crypto::hash_secret_hex(secret);
    let mut ok = false;
    for (stored_hash, expires_at) in stored {
        let live = expires_at.is_none_or(|t| t > now);
        ok |= live & crypto::constant_time_eq(stored_hash, &hash);
    }
    ok
}

async fn insert_secret<C: sea_orm::ConnectionTrait>(
    conn: &C,
    client_id: &str,
    now: i64,
) -> Result<String> {
    let secret = crypto::random_secret();
    oauth_client_secret::ActiveModel {
        id: Set(ids::new_id(ids::OAUTH_CLIENT_SECRET)),
        client_id: Set(client_id.to_owned()),
        secret_hash: Set(crypto::hash_secret_hex(&secret)),
        created_at: Set(now),
        expires_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_must_be_exact_and_safe() {
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "com.example.app:/oauth",
        ] {
            assert!(validate_redirect_uri("r", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/relative",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "myapp:/cb",
        ] {
            assert!(validate_redirect_uri("r", bad).is_err(), "{bad}");
        }
        assert!(
            validate_redirect_uri("r", &format!("https://a.example/{}", "x".repeat(2000))).is_err()
        );
    }

    #[test]
    fn audiences_are_absolute_uris_without_fragments() {
        for ok in ["https://api.example.com", "https://api.example.com/v1/", "urn:example:api"] {
            assert!(validate_audience(ok).is_ok(), "{ok}");
        }
        for bad in ["", "api", "/v1", "https://api.example.com/#x", "https://a.example/ b"] {
            assert!(matches!(validate_audience(bad), Err(Error::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn a_patch_is_checked_as_a_registration_and_reports_only_what_changed() {
        use sea_orm::TryIntoModel as _;
        let new = NewClient {
            name: "App".into(),
            redirect_uris: vec!["https://a.example/cb".into()],
            ..Default::default()
        };
        let model = ValidClient::check(new).unwrap().model("client_x", 1).try_into_model().unwrap();
        let current = Client::from(model.clone());
        let patch = ClientPatch {
            access_token_ttl_secs: Some(600),
            audiences: Some(Vec::new()),
            ..Default::default()
        };
        let valid = ValidClient::check(patch.applied_to(&current)).unwrap();
        let mut next = model;
        valid.apply_to(&mut next);
        let changes = changed_fields(&current, &Client::from(next));
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["access_token_ttl_secs"]);
        assert_eq!(changes["access_token_ttl_secs"], json!({ "before": 300, "after": 600 }));
        let refused = [
            ClientPatch {
                redirect_uris: Some(vec!["http://evil.example/cb".into()]),
                ..Default::default()
            },
            ClientPatch { grant_types: Some(vec!["password".into()]), ..Default::default() },
            ClientPatch { audiences: Some(vec!["api".into()]), ..Default::default() },
            ClientPatch { access_token_ttl_secs: Some(5), ..Default::default() },
            ClientPatch { name: Some(" ".into()), ..Default::default() },
        ];
        for bad in refused {
            let checked = ValidClient::check(bad.applied_to(&current));
            assert!(matches!(checked, Err(Error::Invalid { .. })), "{bad:?}");
        }
        // The type and the authentication method are those registered.
        let kept = ClientPatch::default().applied_to(&current);
        assert!(!kept.public);
        assert_eq!(kept.token_endpoint_auth_method.as_deref(), Some("client_secret_basic"));
    }
}
