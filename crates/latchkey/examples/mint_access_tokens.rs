//! Mints real user access tokens for the resource-endpoint benchmark (issue 14; run by
//! scripts/bench-resource-endpoints before it starts the server on the same store).
//!
//!     mint_access_tokens --out DIR [--grants 200] [--refreshes 99] [--users 10]
//!
//! Opens the store the `LATCHKEY_*` environment names (the server's data directory and public
//! URL: the tokens' issuer must be the server's), creates `--users` users with one session each,
//! and one confidential client (client_secret_basic, ES256 tokens, an hour's access-token
//! lifetime so no token expires during a run). Then, for each of `--grants` grants (spread over
//! the sessions), issues an authorization code through the core (scopes `openid email
//! offline_access`, PKCE S256), exchanges it at the token endpoint's core (`OidcService::token`)
//! and refreshes the grant `--refreshes` times: every answer's access token is an ES256-signed
//! RFC 9068 token that introspection and userinfo accept. Writes DIR/tokens.txt (one access
//! token per line, in the order of issue), DIR/client_id and DIR/client_secret, and prints one
//! line of JSON with the counts and the time taken.

use std::{collections::HashMap, error::Error, path::PathBuf, time::Instant};

use futures_util::StreamExt as _;
use latchkey_core::{
    Latchkey, Settings,
    identity::{sessions::SessionOrigin, users::NewUser},
    infra::{audit::Actor, crypto},
    oauth::{NewCode, clients::NewClient},
};
use latchkey_oidc::{params::Params, pkce, token::ClientCredentials};
use serde_json::json;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SCOPES: [&str; 3] = ["openid", "email", "offline_access"];
/// Grants minted at once: SQLite writes one at a time, but signing and hashing overlap.
const PARALLEL: usize = 8;
const USAGE: &str =
    "usage: mint_access_tokens --out DIR [--grants 200] [--refreshes 99] [--users 10]";

struct Args {
    out: PathBuf,
    grants: usize,
    refreshes: usize,
    users: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let (mut grants, mut refreshes, mut users) = (200, 99, 10);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        let count = |v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or(format!("{arg} wants a count, got {v:?}"))
        };
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--grants" => grants = count(value()?)?,
            "--refreshes" => refreshes = value()?.parse().map_err(|_| USAGE.to_owned())?,
            "--users" => users = count(value()?)?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    Ok(Args { out: out.ok_or(USAGE)?, grants, refreshes, users })
}

/// Who the tokens are for: (user id, session id) per user.
async fn sessions(core: &Latchkey, users: usize) -> Res<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(users);
    let tag = crypto::random_secret();
    for i in 0..users {
        let new = NewUser {
            email: format!("bench-{i}-{}@example.com", &tag[..8].to_ascii_lowercase()),
            name: Some(format!("Bench User {i}")),
            email_verified: true,
            ..Default::default()
        };
        let user = core.users.create(new, &Actor::cli()).await?;
        let (session, _secret) =
            core.sessions.create(&user.id, SessionOrigin::default(), &Actor::cli()).await?;
        out.push((user.id, session.id));
    }
    Ok(out)
}

/// One grant: a code exchanged, then refreshed; its access tokens in the order of issue.
async fn grant(
    core: &Latchkey,
    creds: &ClientCredentials,
    (user_id, session_id): &(String, String),
    refreshes: usize,
) -> Res<Vec<String>> {
    let ClientCredentials::Basic { client_id, .. } = creds else {
        return Err("basic credentials expected".into());
    };
    let verifier = crypto::random_secret();
    let code = core
        .oauth
        .issue_code(NewCode {
            client_id: client_id.clone(),
            user_id: user_id.clone(),
            session_id: session_id.clone(),
            redirect_uri: REDIRECT.into(),
            scopes: SCOPES.map(str::to_owned).to_vec(),
            nonce: None,
            code_challenge: Some(pkce::s256_challenge(&verifier)),
            auth_time: core.store.now(),
            resources: vec![],
        })
        .await?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", &verifier)
        .finish();
    let mut issued = exchange(core, creds, &form).await?;
    let mut tokens = Vec::with_capacity(refreshes + 1);
    for _ in 0..refreshes {
        let refresh = issued.refresh_token.take().ok_or("no refresh token was issued")?;
        tokens.push(std::mem::take(&mut issued.access_token));
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", &refresh)
            .finish();
        issued = exchange(core, creds, &form).await?;
    }
    tokens.push(issued.access_token);
    Ok(tokens)
}

async fn exchange(
    core: &Latchkey,
    creds: &ClientCredentials,
    form: &str,
) -> Res<latchkey_core::oauth::provider::Issued> {
    let params = Params::parse(form).map_err(|e| format!("{e:?}"))?;
    core.oidc
        .token(creds, &params)
        .await
        .map_err(|e| format!("token request refused: {e:?}").into())
}

async fn run(args: Args) -> Res<serde_json::Value> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let core = Latchkey::open(Settings::load(None, &env)?).await?;
    let started = Instant::now();
    let who = sessions(&core, args.users).await?;
    let created = core
        .clients
        .create(
            NewClient {
                name: "Resource endpoint benchmark".into(),
                redirect_uris: vec![REDIRECT.into()],
                id_token_alg: Some("ES256".into()),
                access_token_ttl_secs: Some(3600),
                token_endpoint_auth_method: Some("client_secret_basic".into()),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await?;
    let client_id = created.client.client_id.clone();
    let secret = created.client_secret.ok_or("the client got no secret")?;
    let creds = ClientCredentials::Basic { client_id: client_id.clone(), secret: secret.clone() };
    let (core_ref, creds_ref, who_ref) = (&core, &creds, &who);
    let mut results = futures_util::stream::iter(0..args.grants)
        .map(|i| async move {
            let subject = &who_ref[i % who_ref.len()];
            (i, grant(core_ref, creds_ref, subject, args.refreshes).await)
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    results.sort_by_key(|(i, _)| *i);
    let mut lines = String::new();
    let mut count = 0usize;
    for (_, tokens) in results {
        for token in tokens? {
            lines.push_str(&token);
            lines.push('\n');
            count += 1;
        }
    }
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("tokens.txt"), lines)?;
    std::fs::write(args.out.join("client_id"), &client_id)?;
    std::fs::write(args.out.join("client_secret"), &secret)?;
    Ok(json!({
        "tokens": count,
        "grants": args.grants,
        "refreshes_per_grant": args.refreshes,
        "users": args.users,
        "client_id": client_id,
        "issuer": core.settings.public_url,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(line) => {
            println!("{line}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
