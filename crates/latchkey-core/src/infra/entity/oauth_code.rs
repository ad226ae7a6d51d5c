use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Hex SHA-256 of the code.
    #[sea_orm(unique)]
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    pub redirect_uri: String,
    /// Space-separated.
    pub scopes: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub replayed_at: Option<i64>,
    /// Set when the grant (this code and the refresh-token family it started) was revoked:
    /// refresh reuse, RFC 7009, consent withdrawn, session ended. Replay sets both.
    pub revoked_at: Option<i64>,
    /// RFC 8707 resources of the grant, space-separated; None for a grant aimed at the issuer.
    pub resources: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
