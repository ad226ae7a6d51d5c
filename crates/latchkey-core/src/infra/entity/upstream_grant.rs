use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    /// `google` or `microsoft`.
    pub provider: String,
    /// The identity the grant belongs to (as in `external_identities`).
    pub issuer: String,
    pub subject: String,
    /// The EASIE connection the grant was made through; `None` for consumer sign-in.
    pub connection_id: Option<String>,
    pub org_id: Option<String>,
    /// Sealed with the master key (purpose names the grant).
    pub refresh_token_sealed: Option<String>,
    pub access_token_sealed: Option<String>,
    pub access_token_expires_at: Option<i64>,
    /// Space-separated scopes the provider granted.
    pub scopes: String,
    /// JSON of `latchkey_easie::recheck::IdentitySnapshot`'s fields.
    pub snapshot: String,
    pub last_success_at: i64,
    /// When the grant is next re-checked upstream; `None` when it never is (consumer grants,
    /// revoked ones).
    pub next_check_at: Option<i64>,
    /// `active` or `revoked`.
    pub status: String,
    pub revoked_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
