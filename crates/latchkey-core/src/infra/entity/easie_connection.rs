use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "easie_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    /// `google` or `microsoft`.
    pub provider: String,
    /// The enrolled domain, normalised (lower case, no trailing dot); unique on the instance.
    pub domain: String,
    /// Microsoft: the tenant pinned at enrollment (lower-case GUID).
    pub tenant_id: Option<String>,
    pub enabled: bool,
    /// JSON of the connection's options (the bypass allow-list).
    pub options: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
