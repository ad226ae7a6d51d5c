//! Organisation types handed out by the services (and printed by the CLI with `--json`).

use serde::Serialize;

use crate::infra::entity;

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
    /// `active`, or `suspended` by deprovisioning (grants nothing until the next valid
    /// sign-in through the organisation's connection).
    pub status: String,
    pub created_at: i64,
}

impl From<entity::membership::Model> for Membership {
    fn from(m: entity::membership::Model) -> Self {
        Self {
            id: m.id,
            org_id: m.org_id,
            user_id: m.user_id,
            role: m.role,
            status: m.status,
            created_at: m.created_at,
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
