//! Domain types handed out by the services (and printed by the CLI with `--json`).

use serde::Serialize;

use crate::entity;

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
}

#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// Effective status: a stored `active` session past either expiry reads as `expired`.
    pub status: SessionStatus,
    pub end_reason: Option<String>,
    pub auth_method: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub active_org_id: Option<String>,
    pub created_at: i64,
    pub last_active_at: i64,
    pub idle_expires_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
}

impl Session {
    /// A stored session is live when it is `active` and inside both of its expiries; the one
    /// rule every check of a session's liveness uses.
    pub fn model_is_active(m: &entity::session::Model, now: i64) -> bool {
        m.status == "active" && now < m.expires_at && now < m.idle_expires_at
    }

    pub fn from_model(m: entity::session::Model, now: i64) -> Self {
        let status = match m.status.as_str() {
            "active" if !Self::model_is_active(&m, now) => SessionStatus::Expired,
            "active" => SessionStatus::Active,
            "ended" => SessionStatus::Ended,
            "expired" => SessionStatus::Expired,
            _ => SessionStatus::Revoked,
        };
        Self {
            id: m.id,
            user_id: m.user_id,
            status,
            end_reason: m.end_reason,
            auth_method: m.auth_method,
            client_ip: m.client_ip,
            user_agent: m.user_agent,
            active_org_id: m.active_org_id,
            created_at: m.created_at,
            last_active_at: m.last_active_at,
            idle_expires_at: m.idle_expires_at,
            expires_at: m.expires_at,
            ended_at: m.ended_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Organisation {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_at: i64,
}

impl From<entity::organisation::Model> for Organisation {
    fn from(m: entity::organisation::Model) -> Self {
        Self { id: m.id, name: m.name, slug: m.slug, created_at: m.created_at }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub role: String,
    pub created_at: i64,
}

impl From<entity::membership::Model> for Membership {
    fn from(m: entity::membership::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            user_id: m.user_id,
            role: m.role,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub alg: String,
    pub status: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// A retired key stays in the JWKS until this time.
    pub publish_until: Option<i64>,
    pub published: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: i64,
    pub actor: String,
    pub action: String,
    pub target_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub data: serde_json::Value,
}

impl From<entity::audit_event::Model> for AuditEvent {
    fn from(m: entity::audit_event::Model) -> Self {
        Self {
            data: serde_json::from_str(&m.data).unwrap_or_default(),
            id: m.id,
            occurred_at: m.occurred_at,
            actor: m.actor,
            action: m.action,
            target_id: m.target_id,
            client_ip: m.client_ip,
            user_agent: m.user_agent,
        }
    }
}

/// An organisation as one of its members sees it in their list.
#[derive(Debug, Clone, Serialize)]
pub struct UserOrganisation {
    #[serde(flatten)]
    pub organisation: Organisation,
    pub role: String,
}

/// A membership with the member's identity, for the organisation's member list.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    #[serde(flatten)]
    pub membership: Membership,
    pub email: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// The effective status: a stored `pending` invitation past its expiry reads as `expired`.
    pub fn of(m: &entity::org_invitation::Model, now: i64) -> Self {
        match m.status.as_str() {
            "pending" if now >= m.expires_at => Self::Expired,
            "pending" => Self::Pending,
            "accepted" => Self::Accepted,
            "expired" => Self::Expired,
            _ => Self::Revoked,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub status: InvitationStatus,
    /// `admin` (sent by an admin) or `domain` (created at sign-up from a verified domain).
    pub source: String,
    pub inviter_user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

impl Invitation {
    pub fn from_model(m: entity::org_invitation::Model, now: i64) -> Self {
        Self {
            status: InvitationStatus::of(&m, now),
            id: m.id,
            org_id: m.org_id,
            email: m.email,
            role: m.role,
            source: m.source,
            inviter_user_id: m.inviter_user_id,
            created_at: m.created_at,
            expires_at: m.expires_at,
            accepted_at: m.accepted_at,
        }
    }
}

/// A pending invitation as its recipient sees it (account page).
#[derive(Debug, Clone, Serialize)]
pub struct UserInvitation {
    pub id: String,
    pub org_id: String,
    pub org_name: String,
    pub org_slug: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What happens when someone with a verified address on a verified domain signs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentMode {
    /// Nothing: admins invite people themselves.
    Manual,
    /// The new user gets a pending invitation (role `member`).
    AutomaticInvitation,
    /// The new user is offered to request to join; an admin approves.
    AutomaticSuggestion,
}

impl EnrollmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::AutomaticInvitation => "automatic_invitation",
            Self::AutomaticSuggestion => "automatic_suggestion",
        }
    }

    /// Unknown stored values read as `Manual`, which grants nothing.
    pub fn parse(s: &str) -> Self {
        match s {
            "automatic_invitation" => Self::AutomaticInvitation,
            "automatic_suggestion" => Self::AutomaticSuggestion,
            _ => Self::Manual,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OrgDomain {
    pub id: String,
    pub org_id: String,
    pub domain: String,
    pub verified: bool,
    pub verified_at: Option<i64>,
    /// `dns` or `email`.
    pub verification_method: Option<String>,
    pub enrollment_mode: EnrollmentMode,
    /// The TXT record that proves control, while the domain is unverified.
    pub txt_record_name: Option<String>,
    pub txt_record_value: Option<String>,
    /// Where a verification code was last sent, while one is pending.
    pub email_code_sent_to: Option<String>,
    pub created_at: i64,
}

impl From<entity::org_domain::Model> for OrgDomain {
    fn from(m: entity::org_domain::Model) -> Self {
        let verified = m.verified_domain.is_some();
        Self {
            txt_record_name: (!verified).then(|| format!("_latchkey-challenge.{}", m.domain)),
            txt_record_value: (!verified).then(|| m.verification_token.clone()),
            email_code_sent_to: if verified { None } else { m.email_code_address },
            enrollment_mode: EnrollmentMode::parse(&m.enrollment_mode),
            id: m.id,
            org_id: m.org_id,
            domain: m.domain,
            verified,
            verified_at: m.verified_at,
            verification_method: m.verification_method,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRequestStatus {
    /// Offered to the user at sign-up; not yet asked for.
    Suggested,
    Pending,
    Approved,
    Rejected,
}

impl JoinRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suggested => "suggested",
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "suggested" => Self::Suggested,
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            _ => Self::Rejected,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JoinRequest {
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub status: JoinRequestStatus,
    pub created_at: i64,
    pub requested_at: Option<i64>,
    pub decided_at: Option<i64>,
}

impl From<entity::org_join_request::Model> for JoinRequest {
    fn from(m: entity::org_join_request::Model) -> Self {
        Self {
            status: JoinRequestStatus::parse(&m.status),
            id: m.id,
            org_id: m.org_id,
            user_id: m.user_id,
            created_at: m.created_at,
            requested_at: m.requested_at,
            decided_at: m.decided_at,
        }
    }
}

/// A join request with the requester's identity, for the organisation's admins.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRequestView {
    #[serde(flatten)]
    pub request: JoinRequest,
    pub email: String,
    pub name: Option<String>,
}

/// An organisation a user may ask to join (or has asked to), for their account page.
#[derive(Debug, Clone, Serialize)]
pub struct JoinSuggestion {
    pub id: String,
    pub org_id: String,
    pub org_name: String,
    pub org_slug: String,
    /// `suggested` until the user asks, then `pending`.
    pub status: JoinRequestStatus,
    pub created_at: i64,
}
