use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret; unique.
    pub secret_hash: String,
    /// The secret's first characters, for telling keys apart in listings.
    pub prefix: String,
    /// The organisation the key acts on; None for the whole instance.
    pub org_id: Option<String>,
    /// Who created it (the audit actor's description).
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
