//! The browser-facing steps: the authorization endpoint (OIDC Core §3.1.2), the consent form,
//! the account chooser (`prompt=select_account`) and RP-initiated logout. Each returns the next
//! step for the browser ([`AuthorizeStep`], [`LogoutStep`]); the web layer renders it (pages,
//! redirects, cookies) and owns nothing of the decision.

use latchkey_oidc::{
    ErrorCode, GrantType, OAuthError,
    access_token::is_access_token_typ,
    authorize::{self, AuthorizationRequest, AuthorizeError, ClientPolicy},
    params::Params,
    scope,
};
use serde_json::{Map, Value};

use super::{BrowserFailure, BrowserResult, OidcService};
use crate::{
    identity::model::User,
    infra::{audit::Actor, crypto},
    oauth::{clients::Client, model::NewCode},
    sign_in::ClientInfo,
};

/// Parameter that records when a forced re-authentication started, so the request that comes
/// back from the sign-in pages is not sent there again (prompt=login, max_age). Its value is
/// `<unix time>.<mac>`, the MAC binding it to this client, redirect URI, state and nonce so it
/// cannot be lifted into another request.
pub const AUTH_AFTER_PARAM: &str = "lk_auth_after";

/// How long a re-authentication marker is honoured.
const AUTH_AFTER_TTL_SECS: i64 = 900;

/// The browser's live session, as found from its cookie.
#[derive(Debug, Clone, Copy)]
pub struct BrowserSession<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
}

/// What the browser is to see next.
#[derive(Debug)]
pub enum AuthorizeStep {
    /// Sign in, then come back to the same request. `marker` (an [`AUTH_AFTER_PARAM`] value)
    /// keeps the request that comes back from being sent to sign-in or the chooser again.
    SignIn { login_hint: Option<String>, marker: Option<String> },
    /// The account chooser for the signed-in `user`; its form may end at `redirect_uri`.
    SelectAccount { client_name: String, redirect_uri: String, user: Box<User>, session_id: String },
    /// The consent page; its form may end at `redirect_uri`.
    Consent { client_name: String, redirect_uri: String, email: String, scopes: Vec<String> },
    /// Done: back to the client with a code.
    Code { location: String },
}

/// The account chooser's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChoice {
    /// "Continue as …": the request resumes with this account.
    Continue,
    /// "Use another account": this session ends, and the browser signs in again.
    Switch,
}

#[derive(Debug)]
pub enum SelectOutcome {
    Step(AuthorizeStep),
    /// The session was ended: clear its cookie, then take the step (sign in).
    SignedOut(AuthorizeStep),
}

/// Where RP-initiated logout leaves the browser.
#[derive(Debug)]
pub enum LogoutStep {
    /// Signed in, without an `id_token_hint` for this session: the user confirms on the
    /// sign-out page (a bare link must not sign people out).
    Confirm,
    /// To the registered `post_logout_redirect_uri` (with `state`), or the sign-in page.
    /// `session_ended`: the browser's session was ended here, so its cookie goes.
    Done { redirect: Option<String>, session_ended: bool },
}

impl OidcService {
    /// The authorization endpoint, for a browser with or without a session. `account_chosen`:
    /// the request comes from "Continue" on the account chooser.
    pub async fn authorize(
        &self,
        params: &Params,
        session: Option<BrowserSession<'_>>,
        account_chosen: bool,
    ) -> BrowserResult<AuthorizeStep> {
        let (client, areq) = self.validate_authorization(params).await?;
        let now = self.store.now();
        let Some(session) = session else {
            if areq.prompt.none {
                let e = OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in");
                return Err(self.redirect(&areq, e));
            }
            // Signing in answers every reason to sign in (prompt=login, max_age) and chooses
            // the account (prompt=select_account): the marker keeps the request that comes
            // back with the new session from being sent to sign-in, or the chooser, again.
            return Ok(self.sign_in_step(&areq, now));
        };
        let auth_time = self.sessions.get(session.session_id).await?.created_at;
        // A re-authentication we asked for is satisfied by a session started after we asked.
        let reauthenticated = self
            .auth_after(&areq, params)
            .is_some_and(|t| t <= now && now - t < AUTH_AFTER_TTL_SECS && auth_time >= t);
        if !reauthenticated && authorize::needs_reauthentication(&areq, auth_time, now) {
            if areq.prompt.none {
                let e = OAuthError::new(ErrorCode::LoginRequired, "re-authentication is required");
                return Err(self.redirect(&areq, e));
            }
            return Ok(self.sign_in_step(&areq, now));
        }
        // prompt=select_account: the signed-in account is shown, with the choice to use another
        // one. A sign-in made for this request (the marker) or "Continue" has already chosen.
        if areq.prompt.select_account && !reauthenticated && !account_chosen {
            return Ok(AuthorizeStep::SelectAccount {
                client_name: client.name,
                redirect_uri: areq.redirect_uri,
                user: Box::new(self.users.get(session.user_id).await?),
                session_id: session.session_id.to_owned(),
            });
        }
        if let Some(consent) = self.consent_step(&client, &areq, session.user_id).await? {
            return Ok(consent);
        }
        self.code_step(&client, &areq, session, auth_time).await
    }

    /// The consent form's answer (`allow` or not) for the request it was shown for.
    pub async fn consent(
        &self,
        params: &Params,
        session: Option<BrowserSession<'_>>,
        allow: bool,
    ) -> BrowserResult<AuthorizeStep> {
        let (client, areq) = self.validate_authorization(params).await?;
        let Some(session) = session else {
            return Ok(AuthorizeStep::SignIn { login_hint: areq.login_hint, marker: None });
        };
        if !allow {
            let e = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            return Err(self.redirect(&areq, e));
        }
        self.grants.grant_consent(session.user_id, &client.client_id, &areq.scopes).await?;
        let auth_time = self.sessions.get(session.session_id).await?.created_at;
        self.code_step(&client, &areq, session, auth_time).await
    }

    /// The account chooser's answer. `shown_session` is the session the chooser showed: the
    /// choice holds for that session only (another account signed in since is asked again).
    /// "Switch" ends the session (back-channel logout included) and sends the browser to
    /// sign-in without the request's `login_hint`, which named the account turned down.
    pub async fn select_account(
        &self,
        params: &Params,
        session: Option<BrowserSession<'_>>,
        shown_session: &str,
        choice: Option<AccountChoice>,
        client_info: &ClientInfo,
    ) -> BrowserResult<SelectOutcome> {
        let (_, mut areq) = self.validate_authorization(params).await?;
        let now = self.store.now();
        let Some(session) = session else {
            // Signed out meanwhile: signing in chooses the account.
            return Ok(SelectOutcome::Step(self.sign_in_step(&areq, now)));
        };
        if !crypto::constant_time_eq(shown_session, session.session_id) {
            return self.authorize(params, Some(session), false).await.map(SelectOutcome::Step);
        }
        match choice {
            Some(AccountChoice::Continue) => {
                self.authorize(params, Some(session), true).await.map(SelectOutcome::Step)
            }
            Some(AccountChoice::Switch) => {
                let ip = client_info.ip.clone();
                let actor = Actor::user(session.user_id, ip, client_info.user_agent.clone());
                self.sessions.end(session.session_id, &actor).await?;
                areq.login_hint = None;
                Ok(SelectOutcome::SignedOut(self.sign_in_step(&areq, now)))
            }
            None => Err(BrowserFailure::Page("Choose an account to continue.".into())),
        }
    }

    /// RP-Initiated Logout 1.0. With a valid `id_token_hint` for the current session, the
    /// session ends and the browser goes to the registered `post_logout_redirect_uri`.
    pub async fn logout(
        &self,
        params: &Params,
        session: Option<BrowserSession<'_>>,
    ) -> BrowserResult<LogoutStep> {
        let hint = self.logout_hint(params).await?;
        let hint_client = hint.as_ref().and_then(|c| c.get("aud")).and_then(Value::as_str);
        let client_id = match (params.get("client_id"), hint_client) {
            (Some(a), Some(b)) if a != b => {
                let m = "client_id does not match the id_token_hint.";
                return Err(BrowserFailure::Page(m.into()));
            }
            (Some(a), _) => Some(a),
            (None, b) => b,
        };
        let redirect = self.post_logout_redirect(params, client_id).await?;
        let hint_sid = hint.as_ref().and_then(|c| c.get("sid")).and_then(Value::as_str);
        let session_ended = match (session, hint_sid) {
            (Some(s), Some(sid)) if s.session_id == sid => {
                let actor = Actor::user(s.user_id, None, None);
                self.sessions.end(s.session_id, &actor).await?;
                true
            }
            // Unconfirmed: let the user decide on the sign-out page.
            (Some(_), _) => return Ok(LogoutStep::Confirm),
            (None, _) => false,
        };
        Ok(LogoutStep::Done { redirect, session_ended })
    }

    /// The request checked against its registered client; errors go where the protocol says.
    async fn validate_authorization(
        &self,
        params: &Params,
    ) -> BrowserResult<(Client, AuthorizationRequest)> {
        let client_id = authorize::client_id(params).map_err(|e| match e {
            AuthorizeError::Page(m) => BrowserFailure::Page(m),
            AuthorizeError::Redirect { .. } => BrowserFailure::Page("Invalid request.".into()),
        })?;
        let client = self.clients.find(client_id).await.map_err(|e| {
            tracing::error!(error = %e, "client lookup failed");
            BrowserFailure::Page("The sign-in service is temporarily unavailable.".into())
        })?;
        let resources: Vec<String> = client
            .iter()
            .flat_map(|c| c.audiences.iter().cloned())
            .chain(std::iter::once(self.issuer.to_string()))
            .collect();
        let policy = client.as_ref().map(|c| ClientPolicy {
            client_id: &c.client_id,
            redirect_uris: &c.redirect_uris,
            public: c.is_public(),
            require_pkce: c.require_pkce,
            allowed_scopes: &c.allowed_scopes,
            resources: &resources,
        });
        let areq = authorize::validate(params, policy).map_err(|e| self.browser_refusal(e))?;
        match client {
            Some(c) if c.allows_grant(GrantType::AuthorizationCode) => Ok((c, areq)),
            _ => {
                let m = "client may not use the code flow";
                Err(self.redirect(&areq, OAuthError::new(ErrorCode::UnauthorizedClient, m)))
            }
        }
    }

    /// The consent page, when a third-party client has no consent covering the request (or the
    /// request asks for it with prompt=consent).
    async fn consent_step(
        &self,
        client: &Client,
        areq: &AuthorizationRequest,
        user_id: &str,
    ) -> BrowserResult<Option<AuthorizeStep>> {
        if client.first_party {
            return Ok(None);
        }
        let granted = self.grants.consent(user_id, &client.client_id).await?;
        if scope::consent_covers(granted.as_deref(), &areq.scopes) && !areq.prompt.consent {
            return Ok(None);
        }
        if areq.prompt.none {
            let e = OAuthError::new(ErrorCode::ConsentRequired, "the user has not consented");
            return Err(self.redirect(areq, e));
        }
        Ok(Some(AuthorizeStep::Consent {
            client_name: client.name.clone(),
            redirect_uri: areq.redirect_uri.clone(),
            email: self.users.get(user_id).await?.primary_email,
            scopes: areq.scopes.clone(),
        }))
    }

    /// Issues the code and says where it goes.
    async fn code_step(
        &self,
        client: &Client,
        areq: &AuthorizationRequest,
        session: BrowserSession<'_>,
        auth_time: i64,
    ) -> BrowserResult<AuthorizeStep> {
        let new = NewCode {
            client_id: client.client_id.clone(),
            user_id: session.user_id.to_owned(),
            session_id: session.session_id.to_owned(),
            redirect_uri: areq.redirect_uri.clone(),
            scopes: areq.scopes.clone(),
            nonce: areq.nonce.clone(),
            code_challenge: areq.code_challenge.clone(),
            auth_time,
            resources: areq.resources.clone(),
        };
        let code = self.grants.issue_code(new).await.map_err(|e| {
            tracing::error!(error = %e, "could not store the authorization code");
            self.redirect(areq, OAuthError::new(ErrorCode::ServerError, "try again"))
        })?;
        let location = authorize::success_redirect(areq, &code, &self.issuer)
            .map_err(|_| BrowserFailure::Page("The redirect URI is not valid.".into()))?;
        Ok(AuthorizeStep::Code { location })
    }

    /// To sign-in, with a marker saying sign-in was requested at `now`.
    fn sign_in_step(&self, areq: &AuthorizationRequest, now: i64) -> AuthorizeStep {
        let marker = format!("{now}.{}", self.auth_after_mac(areq, now));
        AuthorizeStep::SignIn { login_hint: areq.login_hint.clone(), marker: Some(marker) }
    }

    fn auth_after_mac(&self, areq: &AuthorizationRequest, t: i64) -> String {
        let data = format!(
            "{t}\n{}\n{}\n{}\n{}",
            areq.client_id,
            areq.redirect_uri,
            areq.state.as_deref().unwrap_or_default(),
            areq.nonce.as_deref().unwrap_or_default()
        );
        self.store.master_key().mac_hex("oidc_auth_after", &data)
    }

    /// The time a verified re-authentication marker says sign-in was requested at.
    fn auth_after(&self, areq: &AuthorizationRequest, params: &Params) -> Option<i64> {
        let (t, mac) = params.get(AUTH_AFTER_PARAM)?.split_once('.')?;
        let t: i64 = t.parse().ok()?;
        let expected = self.auth_after_mac(areq, t);
        (!expected.is_empty() && crypto::constant_time_eq(&expected, mac)).then_some(t)
    }

    /// The claims of a valid `id_token_hint`: one of our tokens, not an access token, from this
    /// issuer (it may have expired: OIDC RP-Initiated Logout §2).
    async fn logout_hint(&self, params: &Params) -> BrowserResult<Option<Map<String, Value>>> {
        let Some(hint) = params.get("id_token_hint") else { return Ok(None) };
        let revision = self.grants.revision().await?;
        let verified = self.grants.verify_own_at(hint, revision).await?;
        verified
            .filter(|(typ, _)| !is_access_token_typ(typ.as_deref()))
            .map(|(_, c)| c)
            .filter(|c| c.get("iss").and_then(Value::as_str) == Some(&*self.issuer))
            .map(Some)
            .ok_or_else(|| BrowserFailure::Page("The id_token_hint is not valid.".into()))
    }

    /// The `post_logout_redirect_uri` (with `state`), when it is registered for the client.
    async fn post_logout_redirect(
        &self,
        params: &Params,
        client_id: Option<&str>,
    ) -> BrowserResult<Option<String>> {
        let Some(uri) = params.get("post_logout_redirect_uri") else { return Ok(None) };
        let client = match client_id {
            Some(id) => self.clients.find(id).await?,
            None => None,
        };
        if !client.is_some_and(|c| c.has_post_logout_redirect_uri(uri)) {
            let m = "The post_logout_redirect_uri is not registered for this application.";
            return Err(BrowserFailure::Page(m.into()));
        }
        let mut url = url::Url::parse(uri)
            .map_err(|_| BrowserFailure::Page("Invalid post_logout_redirect_uri.".into()))?;
        if let Some(st) = params.get("state") {
            url.query_pairs_mut().append_pair("state", st);
        }
        Ok(Some(String::from(url)))
    }
}
