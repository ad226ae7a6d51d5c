//! Single Logout. IdP-initiated: a signed LogoutRequest (matched on NameID and SessionIndex)
//! ends the Latchkey sessions it names, with back-channel logout to the apps, and is answered
//! with a signed LogoutResponse. SP-initiated: signing out of a session that came through a
//! connection whose IdP advertises SLO sends the browser on to the IdP with a signed
//! LogoutRequest (Redirect binding); the IdP's LogoutResponse comes back to the same endpoint.

use std::time::Duration;

use latchkey_saml::{
    NameId,
    algorithms::AlgorithmPolicy,
    binding::PostForm,
    logout::{self, LogoutExpectations, LogoutRequestSpec, LogoutResponseSpec},
    request,
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use serde_json::json;

use super::{SamlService, connections, sp_keys};
use crate::{
    Error, Result,
    infra::{
        audit::{self, Actor},
        entity::{saml_connection, session, session_upstream},
    },
    sign_in::pending::{BrowserBinding, PendingKind, PendingToken},
};

/// A message that arrived at the SLO endpoint.
pub enum SloMessage<'a> {
    /// The raw query string of a Redirect-binding message.
    Redirect(&'a str),
    /// The HTTP-POST binding's form fields.
    Post {
        saml_request: Option<&'a str>,
        saml_response: Option<&'a str>,
        relay_state: Option<&'a str>,
    },
}

/// Where the browser goes after the SLO endpoint.
#[derive(Debug, Clone)]
pub enum SloOutcome {
    /// Our LogoutResponse to the IdP (after an IdP-initiated logout).
    Redirect(String),
    Post(PostForm),
    /// An SP-initiated logout came back: continue here.
    Done {
        return_to: String,
    },
}

impl SamlService {
    fn expectations<'a>(
        &self,
        model: &'a saml_connection::Model,
        certs: &'a [Vec<u8>],
        slo_url: &'a str,
    ) -> Result<LogoutExpectations<'a>> {
        let options = connections::options_of(model)?;
        Ok(LogoutExpectations {
            idp_entity_id: &model.idp_entity_id,
            idp_certs: certs,
            destination: slo_url,
            policy: AlgorithmPolicy { allow_sha1: options.allow_sha1 },
            now: self.store.now(),
            skew_secs: options.skew_secs,
        })
    }

    /// Handles a LogoutRequest or LogoutResponse from the IdP. A refused message is audited
    /// (`saml.logout_rejected`, with the reason) and changes nothing.
    pub async fn single_logout(
        &self,
        connection_id: &str,
        message: SloMessage<'_>,
        browser: Option<&BrowserBinding>,
    ) -> Result<SloOutcome> {
        let outcome = self.single_logout_inner(connection_id, message, browser).await;
        if let Err(e @ (Error::Invalid { .. } | Error::NotFound(_))) = &outcome {
            let data = json!({ "reason": e.to_string() });
            let now = self.store.now();
            let target = Some(connection_id);
            let actor = Actor {
                principal: audit::Principal::Anonymous,
                client_ip: None,
                user_agent: None,
                request_id: None,
            };
            audit::record(self.store.db(), now, &actor, "saml.logout_rejected", target, data)
                .await?;
        }
        outcome
    }

    async fn single_logout_inner(
        &self,
        connection_id: &str,
        message: SloMessage<'_>,
        browser: Option<&BrowserBinding>,
    ) -> Result<SloOutcome> {
        let model = self.load(self.store.db(), connection_id).await?;
        let certs = connections::stored_certs(&model);
        let slo_url = self.urls(connection_id).slo_url;
        let expect = self.expectations(&model, &certs, &slo_url)?;
        let bad = |e: latchkey_saml::SamlError| Error::invalid("SAMLRequest", e.to_string());
        match message {
            SloMessage::Redirect(query) if has_param(query, "SAMLRequest") => {
                let req = logout::parse_logout_request_redirect(query, &expect).map_err(bad)?;
                self.idp_logout(&model, &req).await
            }
            SloMessage::Redirect(query) => {
                let res = logout::parse_logout_response_redirect(query, &expect).map_err(bad)?;
                self.logout_came_back(res, browser).await
            }
            SloMessage::Post { saml_request: Some(b64), relay_state, .. } => {
                let req =
                    logout::parse_logout_request_post(b64, relay_state, &expect).map_err(bad)?;
                self.idp_logout(&model, &req).await
            }
            SloMessage::Post { saml_response: Some(b64), relay_state, .. } => {
                let res =
                    logout::parse_logout_response_post(b64, relay_state, &expect).map_err(bad)?;
                self.logout_came_back(res, browser).await
            }
            SloMessage::Post { .. } => Err(Error::invalid("SAMLRequest", "no SAML message")),
        }
    }

    /// Ends the sessions a verified LogoutRequest names and answers it.
    async fn idp_logout(
        &self,
        model: &saml_connection::Model,
        req: &logout::ReceivedLogoutRequest,
    ) -> Result<SloOutcome> {
        let now = self.store.now();
        let mut filter = Condition::all()
            .add(session_upstream::Column::ConnectionId.eq(model.id.clone()))
            .add(session_upstream::Column::Subject.eq(req.name_id.value.clone()));
        if !req.session_indexes.is_empty() {
            filter = filter
                .add(session_upstream::Column::SessionIndex.is_in(req.session_indexes.clone()));
        }
        let session_ids: Vec<String> = session_upstream::Entity::find()
            .filter(filter)
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        let txn = self.store.begin_write().await?;
        let ended = if session_ids.is_empty() {
            0
        } else {
            let filter = Condition::all().add(session::Column::Id.is_in(session_ids));
            crate::identity::sessions::end_matching(&txn, filter, "saml_logout", now).await?
        };
        let data = json!({ "name_id": req.name_id.value, "session_indexes": req.session_indexes,
            "sessions_ended": ended, "request_id": req.id });
        audit::record(&txn, now, &Actor::system(), "saml.logout_requested", Some(&model.id), data)
            .await?;
        txn.commit().await?;
        self.store.notify_jobs();
        self.answer_logout(model, req, now).await
    }

    async fn answer_logout(
        &self,
        model: &saml_connection::Model,
        req: &logout::ReceivedLogoutRequest,
        now: i64,
    ) -> Result<SloOutcome> {
        let destination = model
            .idp_slo_url
            .clone()
            .ok_or_else(|| Error::invalid("SAMLRequest", "the IdP advertises no SLO endpoint"))?;
        let keys = sp_keys::live(self.store.db(), &model.id, now).await?;
        let signer = sp_keys::signing_key(&self.store, &keys)?;
        let urls = self.urls(&model.id);
        let id = request::new_message_id();
        let spec = LogoutResponseSpec {
            id: &id,
            issue_instant: now,
            issuer: &urls.sp_entity_id,
            destination: &destination,
            in_response_to: &req.id,
            success: true,
        };
        let relay = req.relay_state.as_deref();
        let internal =
            |e: latchkey_saml::SamlError| Error::Internal(format!("LogoutResponse: {e}"));
        if model.idp_slo_binding.as_deref() == Some("post") {
            logout::logout_response_post(&spec, relay, Some(&signer))
                .map(SloOutcome::Post)
                .map_err(internal)
        } else {
            logout::logout_response_redirect(&spec, relay, Some(&signer))
                .map(SloOutcome::Redirect)
                .map_err(internal)
        }
    }

    /// The IdP's answer to our LogoutRequest: the request must be this browser's. The Latchkey
    /// session ended before the browser left; an IdP that could not end its own session is put
    /// on record (`saml.logout_incomplete`), since the user may still be signed in there.
    async fn logout_came_back(
        &self,
        res: logout::ReceivedLogoutResponse,
        browser: Option<&BrowserBinding>,
    ) -> Result<SloOutcome> {
        let refused =
            || Error::invalid("SAMLResponse", "not an answer to a logout this browser started");
        let (Some(relay), Some(browser)) = (res.relay_state, browser) else {
            return Err(refused());
        };
        let req = self.pending.take(&PendingToken(relay), browser).await.map_err(|_| refused())?;
        match req.kind {
            PendingKind::SamlLogout { request_id, connection_id }
                if Some(&request_id) == res.in_response_to.as_ref() =>
            {
                if !res.success {
                    let data = json!({ "status": res.status, "request_id": request_id });
                    let (now, actor) = (self.store.now(), Actor::system());
                    let target = Some(connection_id.as_str());
                    audit::record(
                        self.store.db(),
                        now,
                        &actor,
                        "saml.logout_incomplete",
                        target,
                        data,
                    )
                    .await?;
                }
                Ok(SloOutcome::Done { return_to: req.return_to })
            }
            _ => Err(refused()),
        }
    }

    /// After the caller ended `session_id`: where to send the browser so the IdP signs it out
    /// too (SP-initiated SLO), if the session came through a connection whose IdP has SLO.
    pub async fn logout_redirect(
        &self,
        session_id: &str,
        return_to: &str,
        browser: &BrowserBinding,
    ) -> Result<Option<String>> {
        let Some(link) = session_upstream::Entity::find_by_id(session_id.to_owned())
            .one(self.store.db())
            .await?
        else {
            return Ok(None);
        };
        let Ok(model) = self.load(self.store.db(), &link.connection_id).await else {
            return Ok(None);
        };
        let Some(destination) = model.idp_slo_url.clone().filter(|_| model.enabled) else {
            return Ok(None);
        };
        let now = self.store.now();
        let id = request::new_message_id();
        let kind =
            PendingKind::SamlLogout { connection_id: model.id.clone(), request_id: id.clone() };
        let ttl = Duration::from_secs(super::REQUEST_TTL_SECS);
        let token = self.pending.begin(&kind, return_to, browser, ttl).await?;
        let keys = sp_keys::live(self.store.db(), &model.id, now).await?;
        let signer = sp_keys::signing_key(&self.store, &keys)?;
        let name_id = NameId { value: link.subject.clone(), format: link.subject_format.clone() };
        let urls = self.urls(&model.id);
        let spec = LogoutRequestSpec {
            id: &id,
            issue_instant: now,
            issuer: &urls.sp_entity_id,
            destination: &destination,
            name_id: &name_id,
            session_index: link.session_index.as_deref(),
        };
        logout::logout_request_redirect(&spec, Some(&token.0), Some(&signer))
            .map(Some)
            .map_err(|e| Error::Internal(format!("LogoutRequest: {e}")))
    }
}

fn has_param(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| kv.split('=').next() == Some(name))
}
