use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Hex SHA-256 of the cookie secret; the secret itself is never stored.
    #[sea_orm(unique)]
    pub secret_hash: String,
    pub user_id: String,
    pub status: String,
    pub end_reason: Option<String>,
    pub auth_method: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub active_org_id: Option<String>,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    /// When the user last entered their password again in this session (console re-auth).
    pub reauthenticated_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
