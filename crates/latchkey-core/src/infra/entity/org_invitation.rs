use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "org_invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    /// Normalised (lower-case) address the invitation was sent to.
    pub email: String,
    pub role: String,
    /// Hex SHA-256 of the accept token; the token itself is only in the link.
    #[sea_orm(unique)]
    pub token_hash: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    /// `admin` (sent by an organisation admin) or `domain` (automatic, from a verified domain).
    pub source: String,
    pub domain_id: Option<String>,
    pub inviter_user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
