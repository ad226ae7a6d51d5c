//! The EASIE re-validation benchmark (run by scripts/bench-easie-sweep, which starts the
//! upstream emulator and pins this process to one CPU): BENCH_USERS Workspace members of an
//! enrolled domain sign in (their refresh tokens obtained from the emulator with real
//! authorization code flows), then
//!
//! 1. the session-token endpoint's rate for those users, with wrk, and nothing to re-check;
//! 2. the sweep alone: every grant falls due (the clock moves on) and is refreshed upstream;
//!    users re-validated per second;
//! 3. both at once: every grant due again, wrk on the token endpoint while the sweep runs.
//!
//! Prints one JSON object with the figures. Settings (environment): BENCH_GOOGLE_ISSUER and
//! BENCH_ADMIN (the emulator's), BENCH_USERS (10000), BENCH_PARALLEL (sweep concurrency, 16),
//! BENCH_WRK_SECONDS (10), BENCH_WRK_CONNECTIONS (32), BENCH_WRK_CPU (1), BENCH_DIR (a data
//! directory to create).

use std::{collections::HashMap, error::Error, net::TcpListener, time::Instant};

use futures_util::StreamExt as _;
use latchkey_core::{
    Latchkey, Settings,
    enterprise::{
        easie::{EasieOptions, connections::NewEasieConnection},
        upstream::{
            Pace,
            vault::{self, GrantWrite, IssuedTokens},
        },
    },
    identity::{
        external::{LinkPolicy, UpstreamIdentity},
        method::{AuthMethod, Upstream},
    },
    infra::{audit::Actor, clock::Clock},
    sign_in::{ClientInfo, OrgGrant, Verified, VerifiedSubject},
};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const CLIENT: (&str, &str) = ("google-client", "google-secret");
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const DOMAIN: &str = "bench.test";

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn number(name: &str, default: u64) -> u64 {
    var(name, &default.to_string()).parse().unwrap_or(default)
}

/// One upstream sign-in done directly at the emulator: (sub, refresh token, access token).
async fn upstream_tokens(auth: &str, token: &str, email: &str) -> Res<(String, String, String)> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()?;
    let mut url = reqwest::Url::parse_with_params(
        auth,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT.0),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email profile"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("login_hint", email),
            ("state", "bench"),
            ("nonce", "bench"),
        ],
    )?;
    let code = loop {
        let res = browser.get(url.clone()).send().await?;
        let location = res.headers().get("location").ok_or("no redirect at the emulator")?;
        let next = url.join(location.to_str()?)?;
        if next.as_str().starts_with(REDIRECT) {
            let code = next.query_pairs().find(|(k, _)| k == "code").ok_or("no code")?;
            break code.1.into_owned();
        }
        url = next;
    };
    let res: Value = reqwest::Client::new()
        .post(token)
        .basic_auth(CLIENT.0, Some(CLIENT.1))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)])
        .send()
        .await?
        .json()
        .await?;
    let text = |k: &str| res[k].as_str().map(str::to_owned).ok_or(format!("no {k} in {res}"));
    let id_token = text("id_token")?;
    let payload = id_token.split('.').nth(1).ok_or("bad id_token")?;
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    let sub = claims["sub"].as_str().ok_or("no sub")?.to_owned();
    Ok((sub, text("refresh_token")?, text("access_token")?))
}

/// Signs a member in through the connection, as the callback would, and records the grant.
async fn sign_in(
    core: &Latchkey,
    issuer: &str,
    connection: (&str, &str),
    email: &str,
    (sub, refresh, access): (String, String, String),
) -> Res<String> {
    let identity = UpstreamIdentity {
        issuer: issuer.to_owned(),
        subject: sub.clone(),
        email: Some(email.to_owned()),
        email_verified: true,
        given_name: None,
        family_name: None,
        name: None,
    };
    let policy = LinkPolicy {
        provision: true,
        link_verified_email: true,
        refresh_profile: true,
        domain_authority: true,
        provision_unverified: false,
    };
    let verified = Verified {
        method: AuthMethod::UpstreamOidc {
            upstream: Upstream::Google,
            connection_id: Some(connection.0.to_owned()),
        },
        subject: VerifiedSubject::Upstream { identity, policy },
        join: Some(OrgGrant {
            org_id: connection.1.to_owned(),
            role: "member".into(),
            authoritative: false,
        }),
        upstream_session: None,
    };
    let client = ClientInfo { ip: Some("127.0.0.1".into()), user_agent: Some("bench".into()) };
    let signed_in = core.sign_in.complete(verified, &client).await?;
    let tokens = IssuedTokens {
        access_token: access,
        expires_at: None,
        refresh_token: Some(refresh),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
    };
    let snapshot = vault::snapshot_from_json(&json!({ "sub": sub, "hd": DOMAIN }).to_string())?;
    let now = core.store.now();
    let grant = GrantWrite {
        user_id: &signed_in.user.id,
        provider: Upstream::Google,
        issuer,
        subject: &sub,
        easie: Some(connection),
        tokens: &tokens,
        snapshot: &snapshot,
        next_check_at: Some(now + 600),
    };
    vault::record_sign_in(core.store.db(), core.store.master_key(), &grant, now).await?;
    Ok(signed_in.secret)
}

/// Runs wrk against the session-token endpoint with the members' cookies; requests/s.
fn wrk(base: &str, lua: &std::path::Path, seconds: u64) -> Res<f64> {
    let out = std::process::Command::new("taskset")
        .args(["-c", &var("BENCH_WRK_CPU", "1"), "wrk", "-t1"])
        .arg(format!("-c{}", number("BENCH_WRK_CONNECTIONS", 32)))
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(lua)
        .arg(format!("{base}/v1/session/token"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        return Err(format!("token requests failed:\n{text}").into());
    }
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .ok_or(format!("no rate in wrk's output:\n{text}"))?;
    Ok(rate.trim().parse()?)
}

/// The emulator's client and members, and its authorization and token endpoints.
async fn prepare_upstream(issuer: &str, admin: &str, users: u64) -> Res<(String, String)> {
    let http = reqwest::Client::new();
    let client =
        json!({ "client_id": CLIENT.0, "client_secret": CLIENT.1, "redirect_uris": [REDIRECT] });
    http.post(format!("{admin}/google/clients")).json(&client).send().await?.error_for_status()?;
    let people: Vec<Value> =
        (0..users).map(|i| json!({ "email": format!("u{i}@{DOMAIN}"), "hd": DOMAIN })).collect();
    for chunk in people.chunks(1000) {
        http.post(format!("{admin}/google/users")).json(chunk).send().await?.error_for_status()?;
    }
    let discovery: Value =
        http.get(format!("{issuer}/.well-known/openid-configuration")).send().await?.json().await?;
    let text = |k: &str| discovery[k].as_str().map(str::to_owned).ok_or(format!("no {k}"));
    Ok((text("authorization_endpoint")?, text("token_endpoint")?))
}

/// The organisation, its verified domain and its EASIE enrollment: (connection, org) ids.
async fn enroll(core: &Latchkey) -> Res<(String, String)> {
    let org = core.orgs.create("Bench", "bench", &Actor::cli()).await?;
    core.domains.add_verified(&org.id, DOMAIN, &Actor::cli()).await?;
    let new = NewEasieConnection {
        org_id: org.id.clone(),
        provider: Upstream::Google,
        domain: DOMAIN.into(),
        tenant_id: None,
        options: EasieOptions::default(),
    };
    let connection = core.easie.create(new, &Actor::cli()).await?;
    Ok((connection.connection_id, org.id))
}

/// Every member signed in: their session cookies' secrets.
async fn seed(
    core: &Latchkey,
    issuer: &str,
    endpoints: &(String, String),
    ids: (&str, &str),
    users: u64,
) -> Res<Vec<String>> {
    futures_util::stream::iter(0..users)
        .map(|i| async move {
            let email = format!("u{i}@{DOMAIN}");
            let tokens = upstream_tokens(&endpoints.0, &endpoints.1, &email).await?;
            sign_in(core, issuer, ids, &email, tokens).await
        })
        .buffer_unordered(16)
        .collect::<Vec<Res<String>>>()
        .await
        .into_iter()
        .collect()
}

/// A wrk script that posts to the token endpoint with each member's cookie in turn.
fn token_script(dir: &std::path::Path, base: &str, secrets: &[String]) -> Res<std::path::PathBuf> {
    let lua = dir.join("tokens.lua");
    let cookies: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        &lua,
        format!(
            "local s = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i % #s + 1\n  \
             return wrk.format(\"POST\", nil, {{[\"Cookie\"] = \"latchkey_session=\" .. s[i], \
             [\"Origin\"] = \"{base}\"}}, nil)\nend\n",
            cookies.join(",")
        ),
    )?;
    Ok(lua)
}

fn wrk_in_background(
    base: &str,
    lua: &std::path::Path,
    seconds: u64,
) -> tokio::task::JoinHandle<Res<f64>> {
    let (base, lua) = (base.to_owned(), lua.to_owned());
    tokio::task::spawn_blocking(move || wrk(&base, &lua, seconds))
}

/// The three measurements (see the module docs).
async fn measure(core: &Latchkey, clock: &Clock, base: &str, lua: &std::path::Path) -> Res<Value> {
    let parallel = usize::try_from(number("BENCH_PARALLEL", 16))?;
    let wrk_seconds = number("BENCH_WRK_SECONDS", 10);
    let baseline = wrk_in_background(base, lua, wrk_seconds).await??;
    // Every grant inside the sweep's lead (the last five minutes of the interval).
    let up = &core.upstream;
    clock.advance(std::time::Duration::from_secs(310));
    let t = Instant::now();
    let alone = up.recheck_due(parallel, Pace::UNPACED).await?;
    let alone_secs = t.elapsed().as_secs_f64();
    clock.advance(std::time::Duration::from_secs(310));
    // As the server runs it: paced (the grants spread over three quarters of the lead).
    let pace = up.sweep_pace();
    let during = wrk_in_background(base, lua, wrk_seconds);
    let t = Instant::now();
    let together = up.recheck_due(parallel, pace).await?;
    let together_secs = t.elapsed().as_secs_f64();
    let during = during.await??;
    let per_sec = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    Ok(json!({
        "sweep_parallel": parallel,
        "sweep_alone": { "report": alone, "seconds": alone_secs,
                         "users_per_second": per_sec(alone.checked, alone_secs) },
        "sweep_with_load": { "report": together, "seconds": together_secs,
                             "users_per_second": per_sec(together.checked, together_secs) },
        "token_rate_baseline": baseline,
        "token_rate_during_sweep": during,
        "token_rate_ratio": if baseline > 0.0 { during / baseline } else { 0.0 },
        "wrk_seconds": wrk_seconds,
        "pace_over_seconds": pace.over_secs,
        "interval_seconds": 600,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Res<()> {
    let issuer = var("BENCH_GOOGLE_ISSUER", "");
    let admin = var("BENCH_ADMIN", "");
    let users = number("BENCH_USERS", 10_000);
    let dir = std::path::PathBuf::from(var("BENCH_DIR", "/tmp/latchkey-easie-bench"));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let env = HashMap::from([
        ("LATCHKEY_DATA_DIR".to_owned(), dir.display().to_string()),
        ("LATCHKEY_LISTEN".to_owned(), listener.local_addr()?.to_string()),
        ("LATCHKEY_WORKERS".to_owned(), "1".to_owned()),
        ("LATCHKEY_LOG_LEVEL".to_owned(), "warn".to_owned()),
        ("LATCHKEY_GOOGLE_CLIENT_ID".to_owned(), CLIENT.0.to_owned()),
        ("LATCHKEY_GOOGLE_CLIENT_SECRET".to_owned(), CLIENT.1.to_owned()),
        ("LATCHKEY_GOOGLE_ISSUER".to_owned(), issuer.clone()),
    ]);
    let clock = Clock::system();
    let core = Latchkey::open_with_clock(Settings::load(None, &env)?, clock.clone()).await?;
    let endpoints = prepare_upstream(&issuer, &admin, users).await?;
    let (connection_id, org_id) = enroll(&core).await?;
    let started = Instant::now();
    let ids = (connection_id.as_str(), org_id.as_str());
    let secrets = seed(&core, &issuer, &endpoints, ids, users).await?;
    let seeding_secs = started.elapsed().as_secs_f64();
    let server = latchkey_web::start(core.clone(), listener)?;
    let handle = server.handle();
    tokio::spawn(server);
    let lua = token_script(&dir, &base, &secrets)?;
    let mut report = measure(&core, &clock, &base, &lua).await?;
    handle.stop(true).await;
    report["users"] = json!(users);
    report["seeding_seconds"] = json!(seeding_secs);
    println!("{report}");
    Ok(())
}
