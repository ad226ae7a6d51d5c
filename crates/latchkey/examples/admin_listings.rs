//! The admin listings benchmark (issue 13; run by scripts/bench-admin-listings). Two commands:
//!
//! `admin_listings seed --users N --audit-events M [--json]` fills the store named by
//! `LATCHKEY_DATABASE_URL` (SQLite or PostgreSQL; migrated first) with N users and M audit
//! events, written directly as rows: multi-row INSERTs of 1,000 rows, 10 statements per
//! transaction, no password hashing and no user_emails rows (the listings read `users` only).
//! Names are drawn from weighted first- and family-name lists so that prefix searches match
//! realistic shares of the directory; emails follow five common patterns and carry the user's
//! number to stay unique. Events are spread evenly over the year before now (so their IDs,
//! ULIDs of their time, are in time order as real ones are), over users, API keys and the
//! system as actors, 16 actions, users and organisations as targets, and 1,000 organisations.
//! The generator is seeded: the same N and M give the same rows (but for the ULIDs' times).
//!
//! `admin_listings measure --base URL --key KEY [--requests R] [--pages P] [--max-p99-ms T]`
//! runs against a server started on that store: for each listing case it walks the cursors once
//! to page P (1,000) or the last page, then times R (200) requests of the first page and R of
//! that deep page, one at a time, and prints one JSON object with p50/p99 per case. Exits 1
//! when a p99 reaches T (50) ms.

use std::{error::Error, time::Instant};

use latchkey_core::infra::entity::{audit_event, user};
use latchkey_migration::MigratorTrait as _;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
    sea_query::{Query, SimpleExpr},
};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Rows per INSERT statement, and statements per transaction.
const ROWS_PER_INSERT: usize = 1000;
const INSERTS_PER_TXN: usize = 10;

/// SplitMix64: small, fast, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    /// An index into a list weighted by rank (Zipf-like: the first entries are the commonest).
    fn zipf(&mut self, n: usize) -> usize {
        // Squaring a uniform number in [0, 1) favours small values.
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * n as f64) as usize).min(n - 1)
    }
}

const GIVEN: &[&str] = &[
    "Maria",
    "James",
    "Anna",
    "John",
    "Mohammed",
    "Sofia",
    "David",
    "Emma",
    "Michael",
    "Olivia",
    "Daniel",
    "Laura",
    "Thomas",
    "Sarah",
    "Martin",
    "Julia",
    "Peter",
    "Marta",
    "Jose",
    "Lucia",
    "Robert",
    "Elena",
    "Paul",
    "Chloe",
    "Mark",
    "Hannah",
    "Luca",
    "Amelia",
    "Ahmed",
    "Isabel",
    "Kevin",
    "Nina",
    "Andrew",
    "Fatima",
    "Wei",
    "Yuki",
    "Carlos",
    "Ines",
    "Pierre",
    "Claire",
    "Jan",
    "Eva",
    "Oliver",
    "Mia",
    "Noah",
    "Zoe",
    "Liam",
    "Ava",
    "Ethan",
    "Grace",
    "Lukas",
    "Lea",
    "Matteo",
    "Giulia",
    "Hugo",
    "Alice",
    "Arjun",
    "Priya",
    "Kenji",
    "Aiko",
    "Omar",
    "Leila",
    "Samuel",
    "Rachel",
    "Victor",
    "Irene",
    "Felix",
    "Nora",
    "Adam",
    "Ruth",
    "Björn",
    "Åsa",
    "Zoltán",
    "Chiara",
    "Dmitri",
    "Olga",
    "Kwame",
    "Ama",
    "Tomasz",
    "Agnieszka",
];
const FAMILY: &[&str] = &[
    "Smith",
    "Garcia",
    "Müller",
    "Martin",
    "Rossi",
    "Kim",
    "Nguyen",
    "Johnson",
    "Brown",
    "Lopez",
    "Schmidt",
    "Bernard",
    "Silva",
    "Wang",
    "Li",
    "Khan",
    "Dubois",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Moore",
    "Taylor",
    "Anderson",
    "Thomas",
    "Jackson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Roberts",
    "Carter",
    "Phillips",
    "Evans",
    "Turner",
    "Torres",
    "Parker",
    "Collins",
    "Edwards",
    "Stewart",
    "Flores",
    "Morris",
    "Murphy",
    "Cook",
    "Rogers",
    "Morgan",
    "Peterson",
    "Cooper",
    "Reed",
    "Bailey",
    "Bell",
    "Gomez",
    "Kelly",
    "Howard",
    "Ward",
    "Cox",
    "Diaz",
    "Richardson",
    "Wood",
    "Watson",
    "Brooks",
    "Bennett",
    "Gray",
    "James",
    "Reyes",
    "Cruz",
    "Hughes",
    "Price",
    "Myers",
    "Long",
    "Foster",
    "Sanders",
    "Ross",
    "Morales",
    "Powell",
    "Sullivan",
    "Russell",
    "Ortiz",
    "Jenkins",
    "Perry",
    "Novak",
    "Kowalski",
    "Yamamoto",
    "Tanaka",
    "Sato",
    "Okafor",
    "Mensah",
    "Haddad",
    "Nakamura",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "mail.test",
    "acme.test",
    "globex.test",
    "initech.test",
    "umbrella.test",
    "hooli.test",
    "stark.test",
    "wayne.test",
];
/// Actions with a weight each (out of 1000).
const ACTIONS: &[(&str, u32)] = &[
    ("user.signed_in", 420),
    ("session.refreshed", 150),
    ("user.sign_in_failed", 90),
    ("session.revoked", 60),
    ("user.signed_out", 60),
    ("oauth.token_issued", 50),
    ("user.password_changed", 30),
    ("user.email_verified", 25),
    ("user.created", 20),
    ("membership.created", 20),
    ("user.updated", 20),
    ("invitation.created", 15),
    ("organization.updated", 15),
    ("api_key.created", 10),
    ("user.deleted", 10),
    ("jwt_template.updated", 5),
];
const ORGS: usize = 1000;
const API_KEYS: usize = 50;

fn ascii_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ö' | 'Ö' => 'o',
            'ü' | 'Ü' => 'u',
            'å' | 'Å' | 'á' => 'a',
            'ø' => 'o',
            c => c,
        })
        .collect::<String>()
        .to_lowercase()
}

/// A ULID-bodied ID for `prefix` at `ms` (Unix milliseconds).
fn id_at(prefix: &str, ms: u64, rng: &mut Rng) -> String {
    let random = (u128::from(rng.next()) << 16) ^ u128::from(rng.next());
    format!("{prefix}_{}", ulid::Ulid::from_parts(ms, random).to_string().to_ascii_lowercase())
}

fn now_ms() -> u64 {
    u64::try_from(latchkey_core::infra::clock::Clock::system().now()).unwrap_or(0) * 1000
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn number(args: &[String], name: &str, default: u64) -> Res<u64> {
    match arg(args, name) {
        Some(v) => {
            Ok(v.replace('_', "").parse().map_err(|_| format!("{name}: not a number: {v}"))?)
        }
        None => Ok(default),
    }
}

const USAGE: &str = "usage:
  admin_listings seed --users N --audit-events M [--json]
      (the store: LATCHKEY_DATABASE_URL, e.g. sqlite:///path/latchkey.db?mode=rwc)
  admin_listings measure --base URL --key API_KEY [--requests 200] [--pages 1000] [--max-p99-ms 50]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("seed") => seed(&args).await,
        Some("measure") => measure(&args).await,
        _ => {
            println!("{USAGE}");
            return if args.iter().any(|a| a == "--help" || a == "-h") {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("admin_listings: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The year the seeded rows are spread over.
#[derive(Clone, Copy)]
struct Span {
    start_ms: u64,
    year_ms: u64,
}

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

/// Inserts `users` users; returns their IDs.
async fn seed_users(
    db: &DatabaseConnection,
    users: u64,
    Span { start_ms, year_ms }: Span,
    rng: &mut Rng,
) -> Res<Vec<String>> {
    // Users, created over the year (so their IDs are in creation order).
    let mut user_ids = Vec::with_capacity(usize::try_from(users)?);
    let cols = [
        user::Column::Id,
        user::Column::PrimaryEmail,
        user::Column::EmailVerified,
        user::Column::Name,
        user::Column::GivenName,
        user::Column::FamilyName,
        user::Column::PublicMetadata,
        user::Column::PrivateMetadata,
        user::Column::IsAdmin,
        user::Column::Status,
        user::Column::CreatedAt,
        user::Column::UpdatedAt,
        user::Column::LastSignInAt,
    ];
    let mut n = 0u64;
    while n < users {
        let txn = db.begin().await?;
        for _ in 0..INSERTS_PER_TXN {
            if n >= users {
                break;
            }
            let mut insert = Query::insert();
            insert.into_table(user::Entity).columns(cols);
            let rows = (users - n).min(ROWS_PER_INSERT as u64);
            for _ in 0..rows {
                let ms = start_ms + year_ms * n / users.max(1);
                let id = id_at("usr", ms, rng);
                let given = GIVEN[rng.zipf(GIVEN.len())];
                let family = FAMILY[rng.zipf(FAMILY.len())];
                let (g, f) = (ascii_fold(given), ascii_fold(family));
                // The initial-dot-surname pattern is the commonest (a third).
                let local = match rng.below(6) {
                    0 => format!("{g}.{f}"),
                    1 | 2 => format!("{}.{f}", &g[..1]),
                    3 => format!("{g}_{f}"),
                    4 => format!("{f}.{g}"),
                    _ => format!("{g}{}", &f[..1]),
                };
                let email = format!("{local}{n}@{}", DOMAINS[rng.below(DOMAINS.len())]);
                // A few users have no name, a few a middle initial.
                let name = match rng.below(20) {
                    0 => None,
                    1 => {
                        Some(format!("{given} {}. {family}", (b'A' + rng.below(26) as u8) as char))
                    }
                    _ => Some(format!("{given} {family}")),
                };
                let secs = i64::try_from(ms / 1000)?;
                let values: Vec<SimpleExpr> = vec![
                    id.clone().into(),
                    email.into(),
                    (rng.below(10) != 0).into(),
                    name.into(),
                    Some(given.to_owned()).into(),
                    Some(family.to_owned()).into(),
                    "{}".into(),
                    "{}".into(),
                    false.into(),
                    (if rng.below(50) == 0 { "suspended" } else { "active" }).into(),
                    secs.into(),
                    secs.into(),
                    Some(secs).into(),
                ];
                insert.values_panic(values);
                user_ids.push(id);
                n += 1;
            }
            txn.execute(&insert).await?;
        }
        txn.commit().await?;
    }
    Ok(user_ids)
}

/// Inserts `events` audit events, by users of `user_ids`, keys, the CLI and the system.
async fn seed_events(
    db: &DatabaseConnection,
    events: u64,
    Span { start_ms, year_ms }: Span,
    user_ids: &[String],
    rng: &mut Rng,
) -> Res<()> {
    let orgs: Vec<String> = (0..ORGS).map(|_| id_at("org", start_ms, rng)).collect();
    let keys: Vec<String> = (0..API_KEYS).map(|_| id_at("apk", start_ms, rng)).collect();
    let total_weight: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
    let cols = [
        audit_event::Column::Id,
        audit_event::Column::OccurredAt,
        audit_event::Column::Actor,
        audit_event::Column::Action,
        audit_event::Column::TargetId,
        audit_event::Column::ClientIp,
        audit_event::Column::UserAgent,
        audit_event::Column::Data,
        audit_event::Column::RequestId,
        audit_event::Column::OrgId,
    ];
    let mut n = 0u64;
    while n < events {
        let txn = db.begin().await?;
        for _ in 0..INSERTS_PER_TXN {
            if n >= events {
                break;
            }
            let mut insert = Query::insert();
            insert.into_table(audit_event::Entity).columns(cols);
            let rows = (events - n).min(ROWS_PER_INSERT as u64);
            for _ in 0..rows {
                // Evenly over the year, oldest first, as they would have been written.
                let ms = start_ms + year_ms * n / events.max(1);
                let id = id_at("evt", ms, rng);
                let mut w = u32::try_from(rng.below(total_weight as usize))?;
                let action = ACTIONS
                    .iter()
                    .find(|(_, weight)| {
                        let hit = w < *weight;
                        w = w.saturating_sub(*weight);
                        hit
                    })
                    .map_or("user.signed_in", |(a, _)| a);
                let user_id = if user_ids.is_empty() {
                    None
                } else {
                    Some(user_ids[rng.zipf(user_ids.len())].clone())
                };
                let org = (rng.below(3) == 0).then(|| orgs[rng.zipf(ORGS)].clone());
                let (actor, target) = match rng.below(20) {
                    0 => (format!("api_key:{}", keys[rng.below(API_KEYS)]), user_id),
                    1 => ("system".to_owned(), user_id),
                    2 => ("cli".to_owned(), org.clone()),
                    _ => match &user_id {
                        Some(u) => (format!("user:{u}"), Some(u.clone())),
                        None => ("anonymous".to_owned(), None),
                    },
                };
                let request = (rng.below(4) == 0).then(|| id_at("req", ms, rng));
                let values: Vec<SimpleExpr> = vec![
                    id.into(),
                    i64::try_from(ms / 1000)?.into(),
                    actor.into(),
                    action.into(),
                    target.into(),
                    Some(format!("10.{}.{}.{}", rng.below(256), rng.below(256), rng.below(256)))
                        .into(),
                    Some("Mozilla/5.0 (X11; Linux x86_64) bench").into(),
                    "{}".into(),
                    request.into(),
                    org.into(),
                ];
                insert.values_panic(values);
                n += 1;
            }
            txn.execute(&insert).await?;
        }
        txn.commit().await?;
    }
    Ok(())
}

async fn seed(args: &[String]) -> Res<bool> {
    let users = number(args, "--users", 1_000_000)?;
    let events = number(args, "--audit-events", 10_000_000)?;
    let url = std::env::var("LATCHKEY_DATABASE_URL").map_err(|_| "set LATCHKEY_DATABASE_URL")?;
    // One connection, so that the SQLite pragmas below hold for every statement.
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    let db = Database::connect(options).await?;
    let backend = db.get_database_backend();
    latchkey_migration::Migrator::up(&db, None).await?;
    if backend == DbBackend::Sqlite {
        // This connection only: nothing to lose if the seed is interrupted (start again).
        db.execute_unprepared("PRAGMA synchronous = OFF").await?;
        db.execute_unprepared("PRAGMA cache_size = -524288").await?;
        db.execute_unprepared("PRAGMA temp_store = MEMORY").await?;
    } else {
        db.execute_unprepared("SET synchronous_commit = off").await?;
    }
    let mut rng = Rng(0x1a7c_4b3e_5eed_0001);
    let started = Instant::now();
    let end_ms = now_ms();
    let span = Span { start_ms: end_ms - YEAR_MS, year_ms: YEAR_MS };
    let user_ids = seed_users(&db, users, span, &mut rng).await?;
    let users_seconds = started.elapsed().as_secs_f64();
    seed_events(&db, events, span, &user_ids, &mut rng).await?;
    // PostgreSQL: fresh statistics and visibility map, as autovacuum would leave them (the
    // index-only scans rely on the map). SQLite: nothing, as Latchkey never runs ANALYZE, so
    // the plans measured are those of a store without statistics.
    if backend == DbBackend::Postgres {
        db.execute_unprepared("VACUUM ANALYZE users").await?;
        db.execute_unprepared("VACUUM ANALYZE audit_events").await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "users": users,
        "audit_events": events,
        "users_seconds": users_seconds,
        "seconds": seconds,
        "backend": format!("{backend:?}"),
    });
    if args.iter().any(|a| a == "--json") {
        println!("{summary}");
    } else {
        println!("seeded {users} users and {events} audit events in {seconds:.0} s");
    }
    Ok(true)
}

/// One listing to measure: a path and its fixed query parameters.
struct Case {
    name: String,
    path: &'static str,
    params: Vec<(&'static str, String)>,
}

impl Case {
    fn new(name: &str, path: &'static str, params: &[(&'static str, &str)]) -> Self {
        let params = params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        Self { name: name.to_owned(), path, params }
    }
}

/// The listings measured: users without a search, with a common prefix (names and emails
/// starting with "ma": about a sixth of the seeded users, read in ID order), an email-only
/// prefix ("m.", the f.last pattern: about 7%), a rarer name prefix ("zoltán", a few thousand users,
/// read from the name index) and one exact email (given: the first user of the listing's
/// page 1000); the audit log unfiltered and filtered by one action (15% of the events).
const ONE_EMAIL: &str = "users q=<one email>";

fn cases(email: &str) -> Vec<Case> {
    vec![
        Case::new("users", "/api/v1/users", &[]),
        Case::new("users q=ma (name and email prefix)", "/api/v1/users", &[("q", "ma")]),
        Case::new("users q=m. (email prefix)", "/api/v1/users", &[("q", "m.")]),
        Case::new("users q=zoltán (rare name prefix)", "/api/v1/users", &[("q", "zoltán")]),
        Case::new(ONE_EMAIL, "/api/v1/users", &[("q", email)]),
        Case::new("audit log", "/api/v1/audit-events", &[]),
        Case::new(
            "audit log action=session.refreshed",
            "/api/v1/audit-events",
            &[("action", "session.refreshed")],
        ),
    ]
}

/// Listings are read 50 to a page, as the console does.
const PAGE_SIZE: &str = "50";

async fn page(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    case: &Case,
    cursor: Option<&str>,
) -> Res<(usize, Option<String>, Value)> {
    let mut url = reqwest::Url::parse(&format!("{base}{}", case.path))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("limit", PAGE_SIZE);
        for (k, v) in &case.params {
            q.append_pair(k, v);
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
    }
    let res = http.get(url).bearer_auth(key).send().await?;
    let status = res.status();
    let body: Value = res.json().await?;
    if !status.is_success() {
        return Err(format!("{}: {status}: {body}", case.name).into());
    }
    let rows = body["data"].as_array().map_or(0, Vec::len);
    Ok((rows, body["next_cursor"].as_str().map(str::to_owned), body))
}

fn ms(result: &Value, key: &str) -> f64 {
    result[key].as_f64().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn timed(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    case: &Case,
    cursor: Option<&str>,
    requests: usize,
) -> Res<Value> {
    // A few untimed requests first: the connection and the pages are warm, as for a console.
    for _ in 0..5 {
        page(http, base, key, case, cursor).await?;
    }
    let mut ms = Vec::with_capacity(requests);
    let mut rows = 0;
    for _ in 0..requests {
        let t = Instant::now();
        rows = page(http, base, key, case, cursor).await?.0;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "rows": rows,
        "p50_ms": percentile(&ms, 50.0),
        "p99_ms": percentile(&ms, 99.0),
        "max_ms": ms.last().copied().unwrap_or(0.0),
    }))
}

async fn measure(args: &[String]) -> Res<bool> {
    let base = arg(args, "--base").ok_or("--base is required")?;
    let key = arg(args, "--key").ok_or("--key is required")?;
    let requests = usize::try_from(number(args, "--requests", 200)?)?.max(1);
    let pages = number(args, "--pages", 1000)?.max(2);
    let limit = number(args, "--max-p99-ms", 50)? as f64;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let mut results = Vec::new();
    let mut ok = true;
    let mut cases = cases("");
    for i in 0..cases.len() {
        let case = &cases[i];
        // Walk to the deep page once.
        let walk = Instant::now();
        let mut cursor: Option<String> = None;
        let mut deepest = 1;
        let (_, mut next, mut body) = page(&http, &base, &key, case, None).await?;
        while deepest < pages {
            let Some(c) = next.take() else { break };
            let (_, n, b) = page(&http, &base, &key, case, Some(&c)).await?;
            cursor = Some(c);
            next = n;
            body = b;
            deepest += 1;
        }
        if i == 0 {
            // The exact-email case searches for the first user of the listing's deep page.
            let email = body["data"][0]["email"].as_str().ok_or("no user to search for")?;
            let at = cases.iter().position(|c| c.name == ONE_EMAIL).ok_or("no email case")?;
            cases[at] = Case::new(ONE_EMAIL, "/api/v1/users", &[("q", email)]);
        }
        let case = &cases[i];
        let walk_seconds = walk.elapsed().as_secs_f64();
        let first = timed(&http, &base, &key, case, None, requests).await?;
        let deep = timed(&http, &base, &key, case, cursor.as_deref(), requests).await?;
        for r in [&first, &deep] {
            if r["p99_ms"].as_f64().unwrap_or(f64::MAX) >= limit {
                ok = false;
            }
        }
        eprintln!(
            "{}: page 1 p50 {:.1} ms p99 {:.1} ms; page {deepest} p50 {:.1} ms p99 {:.1} ms",
            case.name,
            ms(&first, "p50_ms"),
            ms(&first, "p99_ms"),
            ms(&deep, "p50_ms"),
            ms(&deep, "p99_ms")
        );
        results.push(json!({
            "case": case.name,
            "path": case.path,
            "params": case.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "page_size": PAGE_SIZE.parse::<u32>()?,
            "walk_seconds": walk_seconds,
            "first_page": first,
            "deep_page": deep,
            "deep_page_number": deepest,
        }));
    }
    println!(
        "{}",
        json!({"requests_per_page": requests, "max_p99_ms": limit, "ok": ok, "cases": results})
    );
    Ok(ok)
}
