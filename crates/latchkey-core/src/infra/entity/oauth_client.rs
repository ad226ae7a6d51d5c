use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    pub client_type: String,
    /// JSON array of exact redirect URIs.
    pub redirect_uris: String,
    /// JSON array.
    pub post_logout_redirect_uris: String,
    /// JSON array.
    pub grant_types: String,
    pub token_endpoint_auth_method: String,
    /// JWK set (JSON) for `private_key_jwt`.
    pub jwks: Option<String>,
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    /// JSON array.
    pub allowed_scopes: String,
    pub require_pkce: bool,
    pub id_token_alg: String,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// JSON array of the audiences client_credentials may request (RFC 8707); NULL for none.
    pub audiences: Option<String>,
    /// Name of the JWT template whose claims are added to the client's access tokens.
    pub access_token_template: Option<String>,
    /// Name of the JWT template whose claims are added to the client's ID tokens.
    pub id_token_template: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
