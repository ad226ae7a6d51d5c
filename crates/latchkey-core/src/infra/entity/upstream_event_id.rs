use sea_orm::entity::prelude::*;

/// A security event token already acted on (replay cache).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_event_ids")]
pub struct Model {
    /// Hex SHA-256 of (issuer, jti), truncated to fit.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
