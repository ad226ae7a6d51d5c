//! `/admin`: the instance's figures with two server-drawn charts. Organisation admins, who
//! have no instance figures, land on their organisations.

use actix_web::{HttpRequest, http::StatusCode, web};

use super::{Console, Page, charts, nav, render, views};
use crate::{AppState, pages::support::see_other};

pub async fn show(req: HttpRequest, state: web::Data<AppState>) -> Page {
    let console = Console::load(&req, &state).await?;
    if !console.is_instance_admin() {
        return Ok(see_other("/admin/organizations"));
    }
    let stats = state.core.admin.dashboard.stats(&console.actor).await?;
    let today = stats.sign_ins.last().copied();
    let sign_in_bars: Vec<charts::Bar> = stats
        .sign_ins
        .iter()
        .map(|d| charts::Bar {
            label: super::when(d.day).chars().skip(5).take(5).collect(),
            values: vec![d.succeeded, d.failed],
        })
        .collect();
    let token_bars: Vec<charts::Bar> = stats
        .token_requests
        .iter()
        .map(|m| charts::Bar {
            label: super::when(m.minute).chars().skip(11).collect(),
            values: vec![m.count],
        })
        .collect();
    let view = views::Dashboard {
        nav: nav(&console, "dashboard", None),
        users: stats.users,
        organisations: stats.organisations,
        active_sessions: stats.active_sessions,
        sign_ins_today: today.map_or(0, |d| d.succeeded),
        failed_today: today.map_or(0, |d| d.failed),
        sign_in_chart: charts::bar_chart(
            "Sign-ins per day: successful and failed",
            &sign_in_bars,
            2,
        ),
        token_chart: charts::bar_chart("Token requests per minute", &token_bars, 10),
    };
    render(&state, &console, StatusCode::OK, &view)
}
