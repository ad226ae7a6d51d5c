//! What a node runs in the background for the core: the job runner. It maps each
//! [`JobKind`] to its handler (mail delivery, the back-channel logout fan-out and delivery; the
//! SAML metadata refresh and EASIE re-validation come next) and runs due jobs when a commit
//! wakes it ([`crate::infra::store::Store::notify_jobs`]) and every [`POLL_INTERVAL`]. It lives
//! at the crate root because it may use every domain; the queue itself is `infra::jobs`.

use std::{sync::Arc, time::Duration};

use crate::{
    Result,
    enterprise::{saml::SamlService, upstream::UpstreamService},
    infra::jobs::{Handler, Handlers, JobKind, JobQueue, RunReport},
    infra::mail::MailService,
    infra::store::Store,
    oauth::backchannel::BackchannelService,
    sign_in::pending::PendingStore,
};

/// How often the runner looks for due jobs when nothing woke it (retries, jobs queued by other
/// nodes or by the CLI, claims of dead nodes to take over).
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often finished jobs past their retention are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How often SAML connections are checked for a due metadata refresh.
const METADATA_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// How often EASIE grants are looked at for a due upstream re-check (the interval itself is
/// at least a minute, so a due check waits at most this much longer in the sweep; minting
/// checks it at once anyway).
const EASIE_SWEEP_INTERVAL: Duration = Duration::from_secs(20);
/// EASIE grants checked upstream at once (the pace keeps the rate down; this bounds bursts of
/// slow upstream answers).
const EASIE_SWEEP_PARALLEL: usize = 16;

/// Runs this node's share of the job outbox.
#[derive(Clone)]
pub struct JobRunner {
    store: Store,
    queue: JobQueue,
    handlers: Arc<Handlers>,
    mail: MailService,
    pending: PendingStore,
    saml: SamlService,
    upstream: UpstreamService,
}

impl JobRunner {
    pub fn new(
        store: Store,
        mail: MailService,
        backchannel: BackchannelService,
        pending: PendingStore,
        saml: SamlService,
        upstream: UpstreamService,
    ) -> Self {
        // Exhaustive on purpose: a new kind does not compile until it has a handler.
        let handler_of = |kind: JobKind| -> Arc<dyn Handler> {
            match kind {
                JobKind::Mail => Arc::new(mail.clone()),
                JobKind::SessionsEnded | JobKind::BackchannelLogout => {
                    Arc::new(backchannel.clone())
                }
            }
        };
        let handlers = JobKind::ALL.into_iter().map(|k| (k, handler_of(k))).collect();
        let queue = JobQueue::new(store.clone());
        Self { queue, store, handlers: Arc::new(handlers), mail, pending, saml, upstream }
    }

    /// This runner with another handler for `kind` (tests: a job that takes as long as they
    /// say, a node that dies mid-job).
    pub fn with_handler(mut self, kind: JobKind, handler: Arc<dyn Handler>) -> Self {
        Arc::make_mut(&mut self.handlers).insert(kind, handler);
        self
    }

    /// One pass: runs every due job until none is left to claim.
    pub async fn run_due(&self) -> Result<RunReport> {
        self.queue.run_due(&self.handlers).await
    }

    /// Deletes finished jobs past their kind's retention.
    pub async fn purge_finished(&self) -> Result<u64> {
        self.queue.purge_finished().await
    }

    /// The background loop of a server node: a pass whenever a commit queued jobs on this node,
    /// and every [`POLL_INTERVAL`]; finished jobs and stale pending sign-in requests purged
    /// hourly.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tracing::info!("{}", self.mail.describe_transport());
        tokio::spawn(async move {
            // The first purge waits an interval: right after start-up there is little to purge,
            // and a purge racing the first requests would be surprising.
            let mut last_purge = Some(tokio::time::Instant::now());
            let mut last_metadata_check: Option<tokio::time::Instant> = None;
            let mut last_sweep: Option<tokio::time::Instant> = None;
            // A paced sweep can take minutes: it runs beside the job passes, one at a time.
            let mut sweep: Option<tokio::task::JoinHandle<()>> = None;
            loop {
                if let Err(e) = runner.run_due().await {
                    tracing::warn!(error = %e, "job pass failed");
                }
                if last_metadata_check.is_none_or(|at| at.elapsed() >= METADATA_CHECK_INTERVAL) {
                    last_metadata_check = Some(tokio::time::Instant::now());
                    if let Err(e) = runner.saml.refresh_due().await {
                        tracing::warn!(error = %e, "could not refresh SAML metadata");
                    }
                }
                let idle = sweep.as_ref().is_none_or(tokio::task::JoinHandle::is_finished);
                if idle && last_sweep.is_none_or(|at| at.elapsed() >= EASIE_SWEEP_INTERVAL) {
                    last_sweep = Some(tokio::time::Instant::now());
                    let upstream = runner.upstream.clone();
                    sweep = Some(tokio::spawn(async move {
                        let pace = upstream.sweep_pace();
                        if let Err(e) = upstream.recheck_due(EASIE_SWEEP_PARALLEL, pace).await {
                            tracing::warn!(error = %e, "could not re-check EASIE grants upstream");
                        }
                    }));
                }
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_INTERVAL) {
                    last_purge = Some(tokio::time::Instant::now());
                    if let Err(e) = runner.purge_finished().await {
                        tracing::warn!(error = %e, "could not purge finished jobs");
                    }
                    // Sign-in requests that expired or were answered wait for nothing more.
                    if let Err(e) = runner.pending.purge().await {
                        tracing::warn!(error = %e, "could not purge pending sign-in requests");
                    }
                    // Consumed assertion IDs are kept only until their assertion expires.
                    if let Err(e) = runner.saml.purge_assertion_ids().await {
                        tracing::warn!(error = %e, "could not purge SAML assertion IDs");
                    }
                    // Likewise the IDs of security events, once too old to be accepted.
                    if let Err(e) = runner.upstream.purge_event_ids().await {
                        tracing::warn!(error = %e, "could not purge security event IDs");
                    }
                }
                tokio::select! {
                    () = runner.store.jobs_wake().notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        })
    }
}
