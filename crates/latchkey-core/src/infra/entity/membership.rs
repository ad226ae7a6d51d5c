use sea_orm::entity::prelude::*;

/// `status` of a membership that grants its role.
pub const STATUS_ACTIVE: &str = "active";
/// `status` of a membership that deprovisioning suspended: it grants nothing until a new valid
/// sign-in through the organisation's connection makes it active again.
pub const STATUS_SUSPENDED: &str = "suspended";

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub role: String,
    /// `active`, or `suspended` by deprovisioning (grants nothing until a new sign-in).
    pub status: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
