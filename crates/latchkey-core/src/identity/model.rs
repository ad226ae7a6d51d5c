//! Identity types handed out by the services (and printed by the CLI with `--json`).

use serde::Serialize;

use crate::infra::entity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Deactivated,
    Banned,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deactivated => "deactivated",
            Self::Banned => "banned",
        }
    }

    /// Unknown stored values read as `Banned`, so a corrupt row never grants access.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "deactivated" => Self::Deactivated,
            _ => Self::Banned,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub primary_email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub image_url: Option<String>,
    pub public_metadata: serde_json::Value,
    pub private_metadata: serde_json::Value,
    pub is_admin: bool,
    pub status: UserStatus,
    pub status_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
}

impl From<entity::user::Model> for User {
    fn from(m: entity::user::Model) -> Self {
        Self {
            status: UserStatus::parse(&m.status),
            public_metadata: serde_json::from_str(&m.public_metadata).unwrap_or_default(),
            private_metadata: serde_json::from_str(&m.private_metadata).unwrap_or_default(),
            id: m.id,
            primary_email: m.primary_email,
            email_verified: m.email_verified,
            name: m.name,
            given_name: m.given_name,
            family_name: m.family_name,
            image_url: m.image_url,
            is_admin: m.is_admin,
            status_reason: m.status_reason,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_sign_in_at: m.last_sign_in_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Active,
    Ended,
    Revoked,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// The stored status. Unknown values read as `Revoked`, so a corrupt row never grants access.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "ended" => Self::Ended,
            "expired" => Self::Expired,
            _ => Self::Revoked,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// Effective status: a stored `active` session past either expiry reads as `expired`.
    pub status: SessionStatus,
    pub end_reason: Option<String>,
    pub auth_method: crate::identity::method::AuthMethod,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub active_org_id: Option<String>,
    pub created_at: i64,
    /// When the user last proved who they are in this session: its sign-in, or a later
    /// password re-entry (what "a recent sign-in" means before sensitive actions).
    pub authenticated_at: i64,
    pub last_active_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

impl Session {
    /// A stored session is live when it is `active` and inside both of its expiries; the one
    /// rule every check of a session's liveness uses.
    pub fn model_is_active(m: &entity::session::Model, now: i64) -> bool {
        SessionStatus::parse(&m.status) == SessionStatus::Active
            && now < m.expires_at
            && now < m.idle_expires_at
    }

    pub fn from_model(m: entity::session::Model, now: i64) -> Self {
        let status = match SessionStatus::parse(&m.status) {
            SessionStatus::Active if !Self::model_is_active(&m, now) => SessionStatus::Expired,
            status => status,
        };
        Self {
            id: m.id,
            user_id: m.user_id,
            status,
            end_reason: m.end_reason,
            auth_method: crate::identity::method::AuthMethod::from_stored(&m.auth_method),
            client_ip: m.client_ip,
            user_agent: m.user_agent,
            active_org_id: m.active_org_id,
            created_at: m.created_at,
            authenticated_at: m.reauthenticated_at.map_or(m.created_at, |r| r.max(m.created_at)),
            last_active_at: m.last_active_at,
            idle_expires_at: m.idle_expires_at,
            expires_at: m.expires_at,
            ended_at: m.ended_at,
        }
    }
}
