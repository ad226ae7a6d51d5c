// placeholder: replaced by feat/mail at merge
use sea_orm::ConnectionTrait;

use crate::{Result, Settings, store::Store};

pub enum MailKind {
    SignUpCode { code: String },
    PasswordReset { link: String },
    Invitation { org_name: String, link: String, inviter: Option<String> },
    DomainVerificationCode { domain: String, code: String },
    JoinRequest { org_name: String, requester: String, link: String },
}

#[derive(Clone)]
pub struct MailService;

impl MailService {
    pub fn new(_store: Store, _settings: &Settings) -> Result<Self> {
        Ok(Self)
    }
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        _conn: &C,
        _to: &str,
        _kind: MailKind,
    ) -> Result<String> {
        Ok(String::new())
    }
    pub fn notify(&self) {}
}
