//! `/admin/organizations`: the list (every organisation for instance administrators, their
//! own for organisation admins), creation, and one organisation's page: members and roles,
//! invitations, domains with their verification and enrollment mode, connections, deletion.

use actix_web::{HttpRequest, http::StatusCode, web};
use latchkey_core::{admin::OrgQuery, tenancy::model::EnrollmentMode};
use serde::Deserialize;

use super::{Console, CsrfOnly, Page, enc, inline_or_page, nav, render, views, when};
use crate::{AppState, pages::support::see_other};

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

fn org_row(o: latchkey_core::tenancy::model::Organisation) -> views::OrgRow {
    views::OrgRow { id: o.id, name: o.name, slug: o.slug, created: when(o.created_at) }
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<ListQuery>) -> Page {
    let console = Console::load(&req, &state).await?;
    let q = q.into_inner();
    let search = q.q.clone().unwrap_or_default();
    let (rows, next) = if console.is_instance_admin() {
        let query = OrgQuery { q: q.q, cursor: q.cursor, limit: Some(50) };
        let page = state.core.admin.orgs.list(&console.actor, &query).await?;
        let next = page
            .next_cursor
            .map(|c| format!("/admin/organizations?q={}&cursor={}", enc(&search), enc(&c)));
        (page.data.into_iter().map(org_row).collect(), next)
    } else {
        let own = console.admin_of.iter().map(|o| org_row(o.organisation.clone())).collect();
        (own, None)
    };
    orgs_page(&state, &console, search, rows, next, None, StatusCode::OK)
}

fn orgs_page(
    state: &AppState,
    console: &Console,
    q: String,
    rows: Vec<views::OrgRow>,
    next: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let view = views::Orgs {
        nav: nav(console, "organizations", None),
        csrf: console.csrf.token.clone(),
        q,
        rows,
        next,
        error,
    };
    render(state, console, status, &view)
}

#[derive(Deserialize)]
pub struct NewOrg {
    csrf_token: String,
    name: String,
    slug: String,
}

pub async fn create(req: HttpRequest, state: web::Data<AppState>, form: web::Form<NewOrg>) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    match state.core.admin.orgs.create(&console.actor, &form.name, &form.slug).await {
        Ok(org) => Ok(see_other(&format!("/admin/organizations/{}?notice=created", org.id))),
        Err(e) => {
            let message = inline_or_page(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            orgs_page(&state, &console, String::new(), Vec::new(), None, Some(message), status)
        }
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    notice: Option<String>,
}

fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "created" => Some("The organisation is created."),
        "role" => Some("The member's role is changed."),
        "removed" => Some("The member is removed."),
        "invited" => Some("The invitation is mailed."),
        "invitation_revoked" => Some("The invitation is revoked."),
        "domain_added" => Some("The domain is added. Verify it by DNS, or mark it verified."),
        "domain_verified" => Some("The domain is verified."),
        "mode" => Some("The domain's enrollment mode is changed."),
        "domain_removed" => Some("The domain is removed."),
        _ => None,
    }
}

pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ShowQuery>,
) -> Page {
    let console = Console::load(&req, &state).await?;
    console.require_org_admin(&path)?;
    let notice = notice_text(q.notice.as_deref());
    org_page(&state, &console, &path, notice, None, StatusCode::OK).await
}

async fn org_page(
    state: &AppState,
    console: &Console,
    org_id: &str,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Page {
    let (core, actor) = (&state.core, &console.actor);
    // The admin-only listing first: a plain member of the organisation is refused here.
    let invitations = core.invitations.list_pending(org_id, actor).await?;
    let org = core.admin.orgs.get(actor, org_id).await?;
    let members = core.orgs.members(org_id, actor).await?;
    let domains = core.domains.list(org_id, actor).await?;
    let view = views::OrgPage {
        nav: nav(console, "organizations", notice),
        csrf: console.csrf.token.clone(),
        org: org_row(org),
        members: members
            .into_iter()
            .map(|m| views::MemberRow {
                user_id: m.membership.user_id,
                email: m.email,
                name: m.name.unwrap_or_default(),
                role: m.membership.role,
                status: m.membership.status,
            })
            .collect(),
        invitations: invitations
            .into_iter()
            .map(|i| views::InvitationRow {
                id: i.id,
                email: i.email,
                role: i.role,
                expires: when(i.expires_at),
            })
            .collect(),
        domains: domains
            .into_iter()
            .map(|d| views::DomainRow {
                id: d.id,
                domain: d.domain,
                verified: d.verified,
                method: d.verification_method.unwrap_or_default(),
                mode: d.enrollment_mode.as_str().to_owned(),
                txt_name: d.txt_record_name.unwrap_or_default(),
                txt_value: d.txt_record_value.unwrap_or_default(),
            })
            .collect(),
        connections: connections(state, console, org_id).await?,
        join_requests: core
            .enrollment
            .list_join_requests(org_id, actor)
            .await?
            .into_iter()
            .map(|j| (j.request.id, j.email, j.request.requested_at.map(when).unwrap_or_default()))
            .collect(),
        instance_admin: console.is_instance_admin(),
        error,
    };
    render(state, console, status, &view)
}

async fn connections(
    state: &AppState,
    console: &Console,
    org_id: &str,
) -> Result<Vec<views::ConnectionRow>, crate::error::page::PageError> {
    use latchkey_core::admin::AnyConnection;
    let all = state.core.admin.connections.list(org_id, &console.actor).await?;
    let rows = all
        .into_iter()
        .map(|c| match c {
            AnyConnection::Saml(c) => views::ConnectionRow {
                label: format!("{} ({})", c.name, c.idp_entity_id),
                id: c.connection_id,
                kind: "SAML",
                enabled: c.enabled,
            },
            AnyConnection::Easie(c) => views::ConnectionRow {
                label: format!("{} ({:?})", c.domain, c.provider),
                id: c.connection_id,
                kind: "EASIE",
                enabled: c.enabled,
            },
        })
        .collect();
    Ok(rows)
}

/// After a change: back to the organisation's page with a notice, or the page again with
/// the error next to the forms.
async fn outcome(
    state: &AppState,
    console: &Console,
    org_id: &str,
    result: latchkey_core::Result<()>,
    notice: &str,
) -> Page {
    match result {
        Ok(()) => Ok(see_other(&format!("/admin/organizations/{org_id}?notice={notice}"))),
        Err(e) => {
            let message = inline_or_page(e)?;
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            org_page(state, console, org_id, None, Some(message), status).await
        }
    }
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_org_admin(&path)?;
    console
        .require_recent_sign_in(state.core.store.now(), &format!("/admin/organizations/{path}"))?;
    state.core.admin.orgs.delete(&console.actor, &path).await?;
    Ok(see_other("/admin/organizations"))
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf_token: String,
    role: String,
}

pub async fn set_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<RoleForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, user_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let r = state.core.orgs.set_membership(&org_id, &user_id, &form.role, &console.actor).await;
    outcome(&state, &console, &org_id, r.map(|_| ()), "role").await
}

pub async fn remove_member(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, user_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let r = state.core.orgs.remove_member(&org_id, &user_id, &console.actor).await;
    outcome(&state, &console, &org_id, r, "removed").await
}

#[derive(Deserialize)]
pub struct InviteForm {
    csrf_token: String,
    email: String,
    role: String,
}

pub async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<InviteForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_org_admin(&path)?;
    let inviter = Some(console.user.id.as_str());
    let r = state.core.invitations.invite(&path, &form.email, &form.role, inviter, &console.actor);
    outcome(&state, &console, &path, r.await.map(|_| ()), "invited").await
}

pub async fn revoke_invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, invitation_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let r = state.core.invitations.revoke(&org_id, &invitation_id, &console.actor).await;
    outcome(&state, &console, &org_id, r.map(|_| ()), "invitation_revoked").await
}

#[derive(Deserialize)]
pub struct DomainForm {
    csrf_token: String,
    domain: String,
}

pub async fn add_domain(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<DomainForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    console.require_org_admin(&path)?;
    let r = state.core.domains.add_domain(&path, &form.domain, &console.actor).await;
    outcome(&state, &console, &path, r.map(|_| ()), "domain_added").await
}

pub async fn verify_domain(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, domain_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let r = state.core.domains.verify_dns(&org_id, &domain_id, &console.actor).await;
    outcome(&state, &console, &org_id, r.map(|_| ()), "domain_verified").await
}

/// An instance administrator asserts the organisation owns the domain (audited as the
/// `operator` method); organisation admins prove it by DNS.
pub async fn mark_verified(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, domain_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let domains = &state.core.domains;
    let domain = domains.get(&org_id, &domain_id, &console.actor).await?;
    let r = domains.add_verified(&org_id, &domain.domain, &console.actor).await;
    outcome(&state, &console, &org_id, r.map(|_| ()), "domain_verified").await
}

#[derive(Deserialize)]
pub struct ModeForm {
    csrf_token: String,
    mode: String,
}

pub async fn set_mode(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<ModeForm>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, domain_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let mode = match form.mode.as_str() {
        "manual" | "automatic_invitation" | "automatic_suggestion" => {
            EnrollmentMode::parse(&form.mode)
        }
        _ => return Err(latchkey_core::Error::invalid("mode", "is not an enrollment mode").into()),
    };
    let domains = &state.core.domains;
    let r = domains.set_enrollment_mode(&org_id, &domain_id, mode, &console.actor).await;
    outcome(&state, &console, &org_id, r.map(|_| ()), "mode").await
}

pub async fn remove_domain(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfOnly>,
) -> Page {
    let console = Console::submit(&req, &state, &form.csrf_token).await?;
    let (org_id, domain_id) = path.into_inner();
    console.require_org_admin(&org_id)?;
    let r = state.core.domains.remove_domain(&org_id, &domain_id, &console.actor).await;
    outcome(&state, &console, &org_id, r, "domain_removed").await
}
