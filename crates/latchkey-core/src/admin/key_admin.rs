//! Signing keys and JWT templates as administrators manage them (the console and the admin
//! API): instance actors only, on the same services as `latchkey keys …` and
//! `latchkey templates …`.

use serde_json::{Map, Value};

use crate::{
    Error, Result,
    infra::{
        audit::Actor,
        jose::SigningAlg,
        keys::{KeyService, SigningKeyInfo},
        store::Store,
    },
    oauth::jwt_templates::{JwtTemplate, JwtTemplateService, NewTemplate},
    tenancy::access,
};

#[derive(Clone)]
pub struct KeyAdmin {
    store: Store,
    keys: KeyService,
    templates: JwtTemplateService,
}

impl KeyAdmin {
    pub fn new(store: Store, keys: KeyService, templates: JwtTemplateService) -> Self {
        Self { store, keys, templates }
    }

    async fn require_instance(&self, actor: &Actor) -> Result<()> {
        if access::is_instance_actor(self.store.db(), actor).await? {
            return Ok(());
        }
        Err(Error::Forbidden("only instance administrators manage keys and templates".into()))
    }

    pub async fn keys(&self, actor: &Actor) -> Result<Vec<SigningKeyInfo>> {
        self.require_instance(actor).await?;
        self.keys.list().await
    }

    /// A new active key for `alg` (ES256, RS256, EdDSA); the previous one stays published
    /// until every token it signed has expired. Returns the new key and the retired one.
    pub async fn rotate(
        &self,
        actor: &Actor,
        alg: &str,
    ) -> Result<(SigningKeyInfo, Option<SigningKeyInfo>)> {
        self.require_instance(actor).await?;
        let alg = SigningAlg::parse(alg)
            .ok_or_else(|| Error::invalid("alg", "must be ES256, RS256 or EdDSA"))?;
        self.keys.rotate(alg, actor).await
    }

    /// Takes a retired key out of the JWKS now (see [`KeyService::withdraw`]).
    pub async fn withdraw(&self, actor: &Actor, kid: &str) -> Result<SigningKeyInfo> {
        self.require_instance(actor).await?;
        self.keys.withdraw(kid, actor).await
    }

    pub async fn templates(&self, actor: &Actor) -> Result<Vec<JwtTemplate>> {
        self.require_instance(actor).await?;
        self.templates.list().await
    }

    pub async fn template(&self, actor: &Actor, name: &str) -> Result<JwtTemplate> {
        self.require_instance(actor).await?;
        self.templates.get(name).await
    }

    pub async fn create_template(&self, actor: &Actor, new: NewTemplate) -> Result<JwtTemplate> {
        self.require_instance(actor).await?;
        self.templates.create(new, actor).await
    }

    pub async fn update_template(
        &self,
        actor: &Actor,
        name: &str,
        claims: Option<Value>,
        lifetime_secs: Option<i64>,
    ) -> Result<JwtTemplate> {
        self.require_instance(actor).await?;
        self.templates.update(name, claims, lifetime_secs, actor).await
    }

    pub async fn delete_template(&self, actor: &Actor, name: &str) -> Result<()> {
        self.require_instance(actor).await?;
        self.templates.delete(name, actor).await
    }

    /// What `claims` render to for `user_id` (see [`JwtTemplateService::preview`]).
    pub async fn preview(
        &self,
        actor: &Actor,
        claims: &Value,
        user_id: &str,
    ) -> Result<Map<String, Value>> {
        self.require_instance(actor).await?;
        self.templates.preview(claims, user_id).await
    }
}
