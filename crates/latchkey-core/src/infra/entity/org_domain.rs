use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "org_domains")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub org_id: String,
    /// Lower-case ASCII (IDNA) domain name.
    pub domain: String,
    /// Equal to `domain` once verified, NULL before. Its unique index makes "a verified domain
    /// belongs to one organisation" hold under concurrency on both backends (NULLs never clash).
    #[sea_orm(unique)]
    pub verified_domain: Option<String>,
    /// Expected value of the `_latchkey-challenge.<domain>` TXT record.
    pub verification_token: String,
    pub verified_at: Option<i64>,
    /// `dns` or `email`.
    pub verification_method: Option<String>,
    pub enrollment_mode: String,
    /// Hex SHA-256 of the emailed code (salted with the domain id), while one is pending.
    pub email_code_hash: Option<String>,
    pub email_code_address: Option<String>,
    pub email_code_expires_at: Option<i64>,
    pub email_code_sent_at: Option<i64>,
    pub email_code_attempts: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
