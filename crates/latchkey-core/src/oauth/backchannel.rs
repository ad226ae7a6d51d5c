//! OpenID Connect Back-Channel Logout 1.0: when a Latchkey session ends, every client that got
//! tokens for it and registered a `backchannel_logout_uri` is sent a signed logout token.
//!
//! Whatever ends sessions queues one [`Job::SessionsEnded`] in the same transaction (see
//! `identity::sessions::enqueue_ended`), so a rolled-back change notifies nobody and a
//! committed one is never forgotten. Its handler, here, finds the clients that got tokens for
//! those sessions and queues one [`Job::BackchannelLogout`] per (session, client), recorded with
//! the first job's outcome so the fan-out happens once. Each of those signs a logout token with
//! the client's ID-token algorithm key and POSTs it; the job outbox claims, retries with backoff
//! and gives up after a day. Delivery is at least once; the `jti` is the job id, so a receiver
//! can drop a repeat.

use std::time::Duration;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;

use crate::{
    Error, Result,
    infra::entity::{oauth_client, oauth_code},
    infra::jobs::{ClaimedJob, FollowUp, Handler, Job, JobFuture, LogoutJob, Outcome},
    infra::jose::SigningAlg,
    infra::store::Store,
    oauth::OAuthService,
};

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
pub const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens are only for immediate use; two minutes covers clock skew.
pub const LOGOUT_TOKEN_TTL_SECS: i64 = 120;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct BackchannelService {
    store: Store,
    oauth: OAuthService,
    issuer: String,
    http: reqwest::Client,
}

/// Runs both back-channel kinds: the fan-out of ended sessions and each logout token.
impl Handler for BackchannelService {
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> JobFuture<'a> {
        Box::pin(async move {
            match &job.job {
                Job::SessionsEnded { session_ids } => self.sessions_ended(session_ids).await,
                Job::BackchannelLogout(logout) => self.post(&job.id, logout).await,
                other => Outcome::Fail(format!("not a back-channel job: {:?}", other.kind())),
            }
        })
    }
}

impl BackchannelService {
    pub fn new(store: Store, oauth: OAuthService, issuer: &str) -> Result<Self> {
        // No redirects: the token goes to the registered URI only. Short timeouts: one slow
        // client must not hold up everyone else's notifications.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent("Latchkey back-channel logout")
            .build()
            .map_err(|e| Error::Internal(format!("HTTP client: {e}")))?;
        Ok(Self { store, oauth, issuer: issuer.to_owned(), http })
    }

    /// One logout job per (session, client with a back-channel URI) that was issued tokens for
    /// the session, that is redeemed a code bound to it (every refresh-token family starts from
    /// such a code, so the refresh tokens need no lookup of their own).
    async fn sessions_ended(&self, session_ids: &[String]) -> Outcome {
        match self.logout_jobs(session_ids).await {
            Ok(jobs) => {
                if !jobs.is_empty() {
                    tracing::debug!(notifications = jobs.len(), "queueing back-channel logout");
                }
                Outcome::Done(jobs)
            }
            Err(e) => Outcome::Retry(format!("finding the clients of ended sessions: {e}")),
        }
    }

    async fn logout_jobs(&self, session_ids: &[String]) -> Result<Vec<FollowUp>> {
        logout_jobs(self.store.db(), session_ids).await
    }

    /// The logout token of notification `jti` (Back-Channel Logout 1.0 §2.4): no nonce,
    /// `typ: logout+jwt`, signed with the key of the client's ID-token algorithm.
    pub async fn logout_token(&self, jti: &str, logout: &LogoutJob) -> Result<String> {
        // A client deleted since the session ended is not told anything.
        let client = oauth_client::Entity::find_by_id(logout.client_id.clone())
            .one(self.store.db())
            .await?
            .ok_or_else(|| Error::NotFound(format!("client {}", logout.client_id)))?;
        let alg = SigningAlg::parse(&client.id_token_alg).unwrap_or(SigningAlg::ID_TOKEN_DEFAULT);
        let now = self.store.now();
        let claims = json!({
            "iss": self.issuer,
            "aud": logout.client_id,
            "iat": now,
            "exp": now + LOGOUT_TOKEN_TTL_SECS,
            "jti": jti,
            "sub": logout.user_id,
            "sid": logout.session_id,
            "events": { LOGOUT_EVENT: {} },
        });
        self.oauth.sign(alg, "logout+jwt", &claims).await
    }

    async fn post(&self, jti: &str, logout: &LogoutJob) -> Outcome {
        let token = match self.logout_token(jti, logout).await {
            Ok(t) => t,
            Err(e @ Error::NotFound(_)) => return Outcome::Fail(e.to_string()),
            Err(e) => return Outcome::Retry(format!("signing: {e}")),
        };
        let res = self
            .http
            .post(&logout.uri)
            .header("cache-control", "no-cache, no-store")
            .form(&[("logout_token", token.as_str())])
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                tracing::info!(notification = %jti, client_id = %logout.client_id, "back-channel logout delivered");
                Outcome::Done(Vec::new())
            }
            // §2.8: 400 means the RP refused the token; sending it again will not help.
            Ok(r) if r.status() == reqwest::StatusCode::BAD_REQUEST => {
                Outcome::Fail(format!("receiver answered {}", r.status()))
            }
            Ok(r) => Outcome::Retry(format!("receiver answered {}", r.status())),
            Err(e) => Outcome::Retry(format!("{e}")),
        }
    }
}

/// The (session, client) notifications for `session_ids`: one per client with a back-channel
/// URI that redeemed a code bound to the session.
async fn logout_jobs<C: ConnectionTrait>(db: &C, session_ids: &[String]) -> Result<Vec<FollowUp>> {
    let mut pairs: Vec<(String, String, String)> = oauth_code::Entity::find()
        .select_only()
        .column(oauth_code::Column::SessionId)
        .column(oauth_code::Column::ClientId)
        .column(oauth_code::Column::UserId)
        .filter(oauth_code::Column::SessionId.is_in(session_ids.iter().cloned()))
        .filter(oauth_code::Column::UsedAt.is_not_null())
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut client_ids: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    client_ids.sort();
    client_ids.dedup();
    let uris: std::collections::HashMap<String, String> = oauth_client::Entity::find()
        .select_only()
        .column(oauth_client::Column::ClientId)
        .column(oauth_client::Column::BackchannelLogoutUri)
        .filter(oauth_client::Column::ClientId.is_in(client_ids))
        .filter(oauth_client::Column::BackchannelLogoutUri.is_not_null())
        .into_tuple::<(String, Option<String>)>()
        .all(db)
        .await?
        .into_iter()
        .filter_map(|(id, uri)| uri.filter(|u| !u.is_empty()).map(|u| (id, u)))
        .collect();
    Ok(pairs
        .into_iter()
        .filter_map(|(session_id, client_id, user_id)| {
            let uri = uris.get(&client_id)?.clone();
            // A session ends once; the key is a second guard against telling a client twice.
            let dedupe_key = format!("backchannel_logout:{session_id}:{client_id}");
            let job = Job::BackchannelLogout(LogoutJob { client_id, session_id, user_id, uri });
            Some(FollowUp { job, dedupe_key: Some(dedupe_key) })
        })
        .collect())
}

/// Queues, in the caller's transaction, the logout notifications of `session_ids` at once,
/// rather than through the [`Job::SessionsEnded`] fan-out: for a caller that deletes the codes
/// the fan-out reads (deleting a user). Same jobs and dedupe keys as the fan-out; how many.
pub(crate) async fn queue_logouts_now<C: ConnectionTrait>(
    conn: &C,
    session_ids: &[String],
    now: i64,
) -> Result<usize> {
    if session_ids.is_empty() {
        return Ok(0);
    }
    let jobs = logout_jobs(conn, session_ids).await?;
    for f in &jobs {
        crate::infra::jobs::enqueue(conn, &f.job, now, f.dedupe_key.as_deref()).await?;
    }
    Ok(jobs.len())
}
