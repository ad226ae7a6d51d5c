//! `/admin/audit`: the audit log filtered by actor, action, target, organisation and time
//! range, newest first, by cursor; and the same selection exported as CSV or JSON lines,
//! streamed page by page so an export of millions of events holds one page in memory.

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, http::header, web};
use chrono::NaiveDateTime;
use futures_util::{StreamExt as _, stream};
use latchkey_core::{Error as CoreError, admin::AuditQuery, infra::audit::AuditEvent};
use serde::Deserialize;

use super::{Console, Page, enc, nav, render, views, when};
use crate::{AppState, error::page::PageError};

/// The most events one export carries; narrow the filters for more.
const EXPORT_MAX_EVENTS: usize = 1_000_000;
const EXPORT_PAGE: u64 = 200;

#[derive(Deserialize, Default, Clone)]
pub struct Filters {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    org: Option<String>,
    /// `YYYY-MM-DDTHH:MM` (UTC), as a `datetime-local` field sends it.
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
    format: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

fn parse_time(field: &'static str, v: &Option<String>) -> Result<Option<i64>, CoreError> {
    let Some(raw) = non_empty(v) else { return Ok(None) };
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&raw, f).ok())
        .map(|t| Some(t.and_utc().timestamp()))
        .ok_or_else(|| CoreError::invalid(field, "is not a date and time (YYYY-MM-DDTHH:MM)"))
}

impl Filters {
    /// The query the services run. An organisation admin who names no organisation reads
    /// the one they administer, when there is exactly one.
    fn query(&self, console: &Console, limit: u64) -> Result<AuditQuery, CoreError> {
        let org = non_empty(&self.org).or_else(|| match console.admin_of.as_slice() {
            [only] if !console.is_instance_admin() => Some(only.organisation.id.clone()),
            _ => None,
        });
        Ok(AuditQuery {
            actor: non_empty(&self.actor),
            action: non_empty(&self.action),
            target: non_empty(&self.target),
            org,
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
            cursor: non_empty(&self.cursor),
            limit: Some(limit),
        })
    }

    /// The filters (not the cursor) as `&k=v` pairs.
    fn as_query_string(&self) -> String {
        let pairs = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("org", &self.org),
            ("since", &self.since),
            ("until", &self.until),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| non_empty(v).map(|v| format!("&{k}={}", enc(&v))))
            .collect()
    }
}

pub(super) fn event_row(e: AuditEvent) -> views::EventRow {
    views::EventRow {
        at: when(e.occurred_at),
        actor: e.actor,
        action: e.action,
        target: e.target_id.unwrap_or_default(),
        org: e.org_id.unwrap_or_default(),
        request_id: e.request_id.unwrap_or_default(),
        data: e.data.to_string(),
        id: e.id,
    }
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, q: web::Query<Filters>) -> Page {
    let console = Console::load(&req, &state).await?;
    let filters = q.into_inner();
    let query = filters.query(&console, 50)?;
    let page = state.core.admin.audit_log.events(&console.actor, &query).await?;
    let filter_query = filters.as_query_string();
    let next = page.next_cursor.map(|c| format!("/admin/audit?cursor={}{filter_query}", enc(&c)));
    let view = views::Audit {
        nav: nav(&console, "audit", None),
        actor: non_empty(&filters.actor).unwrap_or_default(),
        action: non_empty(&filters.action).unwrap_or_default(),
        target: non_empty(&filters.target).unwrap_or_default(),
        org: query.org.clone().unwrap_or_default(),
        since: non_empty(&filters.since).unwrap_or_default(),
        until: non_empty(&filters.until).unwrap_or_default(),
        rows: page.data.into_iter().map(event_row).collect(),
        next,
        filter_query,
    };
    render(&state, &console, StatusCode::OK, &view)
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    JsonLines,
}

pub async fn export(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<Filters>,
) -> Result<HttpResponse, PageError> {
    let console = Console::load(&req, &state).await?;
    let filters = q.into_inner();
    let format = match filters.format.as_deref() {
        Some("csv") => Format::Csv,
        Some("jsonl") => Format::JsonLines,
        _ => return Err(CoreError::invalid("format", "must be csv or jsonl").into()),
    };
    let mut query = filters.query(&console, EXPORT_PAGE)?;
    query.cursor = None;
    // The first page is read before answering, so a refusal (403, a bad filter) is a page
    // and not a broken download.
    let first = state.core.admin.audit_log.events(&console.actor, &query).await?;
    let (content_type, name) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "audit-events.csv"),
        Format::JsonLines => ("application/x-ndjson", "audit-events.jsonl"),
    };
    let header_row = match format {
        Format::Csv => Some(web::Bytes::from_static(CSV_HEADER.as_bytes())),
        Format::JsonLines => None,
    };
    let start = ExportState {
        state: state.clone(),
        actor: console.actor.clone(),
        query,
        pending: Some(first),
        sent: 0,
        format,
    };
    let pages = stream::unfold(start, next_chunk);
    let body = stream::iter(header_row.map(Ok::<_, actix_web::Error>)).chain(pages);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .streaming(body))
}

const CSV_HEADER: &str =
    "id,occurred_at,actor,action,target_id,organization_id,client_ip,user_agent,request_id,data\n";

struct ExportState {
    state: web::Data<AppState>,
    actor: latchkey_core::infra::audit::Actor,
    query: AuditQuery,
    pending: Option<latchkey_core::admin::Page<AuditEvent>>,
    sent: usize,
    format: Format,
}

/// The next page of the export as one chunk; the stream ends after the last page, at the
/// cap, or on a store error (logged; the download is then cut short).
async fn next_chunk(
    mut s: ExportState,
) -> Option<(Result<web::Bytes, actix_web::Error>, ExportState)> {
    let page = match s.pending.take() {
        Some(p) => p,
        None => {
            s.query.cursor.as_ref()?;
            match s.state.core.admin.audit_log.events(&s.actor, &s.query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "audit export stopped");
                    return None;
                }
            }
        }
    };
    if page.data.is_empty() || s.sent >= EXPORT_MAX_EVENTS {
        return None;
    }
    let mut out = String::new();
    for e in &page.data {
        out.push_str(&match s.format {
            Format::Csv => csv_line(e),
            Format::JsonLines => json_line(e),
        });
    }
    s.sent += page.data.len();
    // No cursor: this was the last page, and the next call ends the stream.
    s.query.cursor = page.next_cursor;
    if s.query.cursor.is_none() {
        s.pending = Some(latchkey_core::admin::Page { data: Vec::new(), next_cursor: None });
    }
    Some((Ok(web::Bytes::from(out)), s))
}

fn json_line(e: &AuditEvent) -> String {
    let mut line = serde_json::to_string(e).unwrap_or_default();
    line.push('\n');
    line
}

fn csv_line(e: &AuditEvent) -> String {
    let fields = [
        e.id.clone(),
        e.occurred_at.to_string(),
        e.actor.clone(),
        e.action.clone(),
        e.target_id.clone().unwrap_or_default(),
        e.org_id.clone().unwrap_or_default(),
        e.client_ip.clone().unwrap_or_default(),
        e.user_agent.clone().unwrap_or_default(),
        e.request_id.clone().unwrap_or_default(),
        e.data.to_string(),
    ];
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push('\n');
    line
}

/// RFC 4180 quoting, and a leading `'` before `=`, `+`, `-`, `@` so that a spreadsheet never
/// runs a value an attacker put in a user agent or a name as a formula.
fn csv_field(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@cmd"), "'@cmd");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
