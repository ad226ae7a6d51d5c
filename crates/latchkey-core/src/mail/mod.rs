// placeholder: replaced by feat/mail at merge
//
// The mail queue is written on feat/mail. This stand-in has the same public signatures so that
// the organisation code can enqueue mail in its own transactions; it stores and sends nothing.

//! Outgoing mail (placeholder until feat/mail is merged).

use sea_orm::ConnectionTrait;

use crate::{Result, Settings, store::Store};

/// What a message says; the mail queue renders each kind into a subject and body.
#[derive(Debug, Clone)]
pub enum MailKind {
    SignUpCode { code: String },
    PasswordReset { link: String },
    Invitation { org_name: String, link: String, inviter: Option<String> },
    DomainVerificationCode { domain: String, code: String },
    JoinRequest { org_name: String, requester: String, link: String },
}

#[derive(Clone)]
pub struct MailService {}

impl MailService {
    pub fn new(_store: Store, _settings: &Settings) -> Self {
        Self {}
    }

    /// Queues a message in the caller's transaction and returns its id.
    /// Placeholder: inserts nothing.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        _conn: &C,
        _to: &str,
        _kind: MailKind,
    ) -> Result<String> {
        Ok(crate::ids::new_id("mail"))
    }

    /// Wakes the sender after a commit. Placeholder: does nothing.
    pub fn notify(&self) {}
}
