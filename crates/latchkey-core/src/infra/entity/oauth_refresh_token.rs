use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub family_id: String,
    /// Hex SHA-256 of the token.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: String,
    /// Space-separated.
    pub scopes: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set when the token was exchanged for its successor; a second use is a replay.
    pub rotated_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// RFC 8707 resources of the grant, space-separated; None for a grant aimed at the issuer.
    pub resources: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
