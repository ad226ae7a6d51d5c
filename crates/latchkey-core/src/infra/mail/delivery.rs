//! Delivery of one queued mail: the [`Handler`] of [`crate::infra::jobs::JobKind::Mail`] jobs.
//! Claims, leases, retries and the erasure of bodies are the job outbox's.

use lettre::{
    Message,
    message::{Mailbox, MultiPart},
};

use super::{BODY_PURPOSE, MailService};
use crate::infra::{
    error::{Error, Result},
    jobs::{ClaimedJob, Handler, Job, JobFuture, MailJob, Outcome},
};

impl Handler for MailService {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            match &job.job {
                Job::Mail(mail) => self.deliver(&job.id, mail, job.attempts).await,
                other => Outcome::Fail(format!("not a mail: {:?}", other.kind())),
            }
        })
    }
}

impl MailService {
    /// Builds and sends one mail. A mail that cannot be built (undecryptable body, address the
    /// transport refuses) fails for good; a transport error is retried.
    async fn deliver(&self, id: &str, mail: &MailJob, attempts: i32) -> Outcome {
        let message = match self.build(id, mail) {
            Ok(m) => m,
            Err(e) => return Outcome::Fail(e.to_string()),
        };
        match self.inner.transport.send(id, &message).await {
            Ok(()) => {
                tracing::info!(mail_id = %id, kind = %mail.template, attempts, "mail sent");
                Outcome::Done(Vec::new())
            }
            Err(e) => Outcome::Retry(e),
        }
    }

    fn build(&self, id: &str, mail: &MailJob) -> Result<Message> {
        let key = self.inner.store.master_key();
        let text = String::from_utf8(key.open(BODY_PURPOSE, &mail.text)?.to_vec())
            .map_err(|_| Error::Internal("mail text body is not UTF-8".into()))?;
        let html = String::from_utf8(key.open(BODY_PURPOSE, &mail.html)?.to_vec())
            .map_err(|_| Error::Internal("mail HTML body is not UTF-8".into()))?;
        let to = mail
            .to
            .parse::<Mailbox>()
            .map_err(|e| Error::invalid("to", format!("{}: {e}", mail.to)))?;
        // Stable across retries, so a receiver can drop the duplicate of an ambiguous attempt.
        let message_id = format!("<{id}@{}>", self.inner.from.email.domain());
        Message::builder()
            .from(self.inner.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(message_id))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Error::Internal(format!("building mail {id}: {e}")))
    }
}
