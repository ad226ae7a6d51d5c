use sea_orm::entity::prelude::*;

/// One row per (organisation, user): a suggestion becomes a request, then a decision.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "org_join_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    /// The verified domain that made the user eligible.
    pub domain_id: Option<String>,
    /// `suggested`, `pending`, `approved` or `rejected`.
    pub status: String,
    pub created_at: i64,
    pub requested_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
