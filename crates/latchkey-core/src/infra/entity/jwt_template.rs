use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jwt_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    #[sea_orm(unique)]
    pub name: String,
    /// The claims template (a JSON object) as given, placeholders included.
    pub claims: String,
    /// `instance` (the session-token key) or `HS256` (the template's own secret).
    pub signing_alg: String,
    /// For `HS256`: the shared secret sealed with the master key (purpose bound to the id).
    pub secret_enc: Option<String>,
    pub lifetime_secs: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
