//! Outgoing mail through a transactional outbox. [`MailService::enqueue`] renders a mail and
//! stores it in the caller's transaction, so a rolled-back change sends nothing; a worker then
//! claims due rows and delivers them over SMTP (or, with no `LATCHKEY_SMTP_URL`, writes them as
//! `.eml` files under the data dir), retrying with backoff. Delivery is at least once: a sender
//! that dies between the SMTP acknowledgement and marking the row sent causes one repeat, which
//! carries the same Message-ID.

mod queue;
mod templates;
mod transport;

use std::{sync::Arc, time::Duration};

use lettre::message::Mailbox;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use tokio::sync::Notify;

use self::transport::Transport;
use crate::{Error, Result, Settings, infra::entity::mail_outbox, infra::ids, infra::store::Store};

pub use queue::{GIVE_UP_AFTER, retry_delay, status};

/// How long a sign-up code is valid; the mail says so.
pub const SIGN_UP_CODE_VALIDITY: Duration = Duration::from_secs(10 * 60);
/// How long a password-reset link is valid; the mail says so.
pub const PASSWORD_RESET_VALIDITY: Duration = Duration::from_secs(30 * 60);
/// How long an email-verification link is valid; the mail says so.
pub const EMAIL_VERIFICATION_VALIDITY: Duration = Duration::from_secs(60 * 60);

/// The product name every mail carries.
const PRODUCT: &str = "Latchkey";

/// What to send. Codes and links are made by the caller; this module only renders and delivers.
/// Codes must be 1–64 ASCII letters or digits and links absolute http(s) URLs (they end up in an
/// href); names are free text, escaped in HTML and kept to one line in subjects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// A 6-digit code, valid [`SIGN_UP_CODE_VALIDITY`].
    SignUpCode {
        code: String,
    },
    /// A single-use link, valid [`PASSWORD_RESET_VALIDITY`].
    PasswordReset {
        link: String,
    },
    /// A single-use link that proves control of the address, valid
    /// [`EMAIL_VERIFICATION_VALIDITY`].
    EmailVerification {
        link: String,
    },
    Invitation {
        org_name: String,
        link: String,
        inviter: Option<String>,
    },
    DomainVerificationCode {
        domain: String,
        code: String,
    },
    /// To an organisation's admins (automatic suggestion).
    JoinRequest {
        org_name: String,
        requester: String,
        link: String,
    },
}

impl MailKind {
    /// Stored with the row and logged; never includes the code or link.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SignUpCode { .. } => "sign_up_code",
            Self::PasswordReset { .. } => "password_reset",
            Self::EmailVerification { .. } => "email_verification",
            Self::Invitation { .. } => "invitation",
            Self::DomainVerificationCode { .. } => "domain_verification_code",
            Self::JoinRequest { .. } => "join_request",
        }
    }
}

/// Sealing purpose of stored mail bodies (the AEAD associated data).
const BODY_PURPOSE: &str = "mail-body";

#[derive(Clone)]
pub struct MailService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    from: Mailbox,
    /// Shown in links back to this instance from every mail's footer.
    site: String,
    transport: Transport,
    wake: Notify,
}

impl MailService {
    /// Builds the transport from the settings; must run inside the Tokio runtime (the SMTP
    /// connection pool starts its housekeeping task here).
    pub fn new(store: Store, settings: &Settings) -> Result<Self> {
        let from = settings.mail_from.parse::<Mailbox>().map_err(|e| {
            crate::infra::config::ConfigError::new(
                "LATCHKEY_MAIL_FROM",
                "a mailbox such as `Latchkey <noreply@example.com>`",
                e.to_string(),
            )
        })?;
        let transport = Transport::from_settings(settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                from,
                site: settings.public_url.clone(),
                transport,
                wake: Notify::new(),
            }),
        })
    }

    /// Queues a mail inside the caller's transaction/connection, so a rolled-back change sends
    /// nothing. Renders it now, so a template error fails the caller rather than the worker.
    /// Call [`MailService::notify`] after committing to send at once rather than at the next poll.
    /// Fails with [`Error::Invalid`] (`to`, `code` or `link`) on a bad address, code or link.
    pub async fn enqueue<C: ConnectionTrait>(
        &self,
        conn: &C,
        to: &str,
        kind: MailKind,
    ) -> Result<String> {
        // The one address rule: whatever the store took, the mailer takes.
        let to = crate::infra::email::normalize_email(to)?
            .parse::<Mailbox>()
            .map_err(|_| Error::invalid("email", "is not a valid email address"))?;
        let rendered = templates::render(&kind, &self.inner.site)?;
        let key = self.inner.store.master_key();
        let id = ids::new_id(ids::MAIL);
        let now = self.inner.store.now();
        mail_outbox::Entity::insert(mail_outbox::ActiveModel {
            id: Set(id.clone()),
            kind: Set(kind.name().to_owned()),
            recipient: Set(to.to_string()),
            subject: Set(rendered.subject),
            text_body: Set(key.seal(BODY_PURPOSE, rendered.text.as_bytes())?),
            html_body: Set(key.seal(BODY_PURPOSE, rendered.html.as_bytes())?),
            status: Set(status::PENDING.to_owned()),
            attempts: Set(0),
            next_attempt_at: Set(now),
            claimed_until: Set(None),
            last_error: Set(None),
            created_at: Set(now),
            sent_at: Set(None),
        })
        .exec_without_returning(conn)
        .await?;
        tracing::debug!(mail_id = %id, kind = kind.name(), "mail queued");
        Ok(id)
    }

    /// Wakes the worker (call after committing a transaction that enqueued mail).
    pub fn notify(&self) {
        self.inner.wake.notify_one();
    }
}
