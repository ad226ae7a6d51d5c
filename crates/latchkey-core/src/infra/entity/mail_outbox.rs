use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mail_outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Which [`crate::infra::mail::MailKind`] this is (`sign_up_code`, …), for logs and operators.
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    /// Sealed with the master key (purpose `mail-body`); emptied once the mail is sent or given up.
    pub text_body: String,
    /// Sealed like `text_body`.
    pub html_body: String,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    /// While `sending`: the claim's expiry, after which another sender may take the row over.
    pub claimed_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
