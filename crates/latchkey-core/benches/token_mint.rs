//! Session-token minting, per signing algorithm: the raw signing rate (one
//! `josekit::jws::serialize_compact` over a typical claims payload) next to the full
//! `SessionTokenService::mint` path on a SQLite store in a temporary directory (revision gate,
//! session snapshot cache, activity tracking, claims serialisation and signing), and the first
//! mint after the store revision moved (any revocation on any node does that), which reloads
//! the session snapshot and the signer, and `KeyService::load_signer` alone.
//!
//! Run with `cargo bench -p latchkey-core --bench token_mint`; criterion reports each function
//! as time per token and as tokens per second ("elem/s"). See docs/benchmarks.md.

use std::{
    collections::HashMap,
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use josekit::jws::{JwsHeader, JwsSigner};
use latchkey_core::{
    Latchkey, Settings, identity::sessions::SessionOrigin, identity::users::NewUser,
    infra::audit::Actor, infra::ids, infra::jose::SigningAlg, infra::store::Store,
};
use serde::Serialize;

type BoxError = Box<dyn std::error::Error>;

/// The issuer and `azp` of the default loopback configuration.
const ORIGIN: &str = "http://127.0.0.1:8080";

/// The claims the token endpoint signs for a session without an active organisation
/// (same fields and order as `session_tokens::Claims`).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    sid: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    azp: &'a str,
}

/// A fresh key for `alg`, the JWS header the endpoint uses (`typ`, `kid`) and a typical payload.
struct RawSigner {
    signer: Box<dyn JwsSigner>,
    header: JwsHeader,
    payload: Vec<u8>,
}

fn raw_signer(alg: SigningAlg) -> Result<RawSigner, BoxError> {
    let kid = ids::new_id(ids::SIGNING_KEY);
    let (pem, _jwk) = alg.generate()?;
    let signer = alg.signer_from_pem(&pem, &kid)?;
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(&kid);
    let now = latchkey_core::infra::clock::Clock::system().now();
    let (sub, sid) = (ids::new_id(ids::USER), ids::new_id(ids::SESSION));
    let payload = serde_json::to_vec(&Claims {
        iss: ORIGIN,
        sub: &sub,
        sid: &sid,
        iat: now,
        nbf: now,
        exp: now + 60,
        azp: ORIGIN,
    })?;
    Ok(RawSigner { signer, header, payload })
}

/// An opened store using `alg` for session tokens, with one user and one active session.
struct MintFixture {
    runtime: tokio::runtime::Runtime,
    core: Latchkey,
    secret: String,
    _dir: tempfile::TempDir,
}

impl MintFixture {
    fn new(alg: SigningAlg) -> Result<Self, BoxError> {
        let dir = tempfile::tempdir()?;
        let env = HashMap::from([
            ("LATCHKEY_DATA_DIR".to_owned(), dir.path().display().to_string()),
            ("LATCHKEY_SESSION_TOKEN_ALG".to_owned(), alg.as_str().to_owned()),
        ]);
        let settings = Settings::load(None, &env)?;
        // Each actix worker runs on a single-threaded runtime; do the same here.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (core, secret) = runtime.block_on(async {
            let core = Latchkey::open(settings).await?;
            let user = core
                .users
                .create(
                    NewUser {
                        email: "bench@example.com".into(),
                        name: Some("Bench User".into()),
                        email_verified: true,
                        ..Default::default()
                    },
                    &Actor::cli(),
                )
                .await?;
            let origin = SessionOrigin {
                auth_method: latchkey_core::identity::method::AuthMethod::Password,
                client_ip: Some("127.0.0.1".into()),
                user_agent: Some("criterion".into()),
                ..Default::default()
            };
            let (_session, secret) = core.sessions.create(&user.id, origin, &Actor::cli()).await?;
            // The first mint loads the session snapshot and the signer; later ones hit the caches
            // as a busy endpoint does.
            core.session_tokens.mint(&secret, ORIGIN).await?;
            Ok::<_, latchkey_core::Error>((core, secret))
        })?;
        Ok(Self { runtime, core, secret, _dir: dir })
    }

    fn close(self) {
        let Self { runtime, core, _dir, .. } = self;
        runtime.block_on(core.store.close());
    }
}

fn fail(what: &str, alg: SigningAlg, e: &dyn std::fmt::Display) -> ! {
    eprintln!("token_mint: {what} for {}: {e}", alg.as_str());
    std::process::exit(1)
}

fn token_mint(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_mint");
    group.throughput(Throughput::Elements(1));
    for alg in SigningAlg::ALL {
        let RawSigner { signer, header, payload } =
            raw_signer(alg).unwrap_or_else(|e| fail("cannot set up the signer", alg, &e));
        group.bench_function(BenchmarkId::new("raw_sign", alg.as_str()), |b| {
            b.iter(|| {
                josekit::jws::serialize_compact(
                    black_box(&payload),
                    black_box(&header),
                    signer.as_ref(),
                )
            })
        });

        let fixture =
            MintFixture::new(alg).unwrap_or_else(|e| fail("cannot set up the store", alg, &e));
        group.bench_function(BenchmarkId::new("mint", alg.as_str()), |b| {
            b.iter(|| {
                fixture
                    .runtime
                    .block_on(fixture.core.session_tokens.mint(black_box(&fixture.secret), ORIGIN))
            })
        });

        // What a stale signer costs to reload: query the active key, unseal it, parse the PEM.
        group.bench_function(BenchmarkId::new("load_signer", alg.as_str()), |b| {
            b.iter(|| fixture.runtime.block_on(fixture.core.keys.load_signer(alg)))
        });

        // The first request after a revocation anywhere: the revision bump (not timed) makes the
        // cached snapshot and signer stale, so mint reloads both. Each iteration needs a bump
        // first, so the timing is done by hand and the run kept short.
        group.warm_up_time(Duration::from_millis(200));
        group.measurement_time(Duration::from_secs(1));
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("mint_after_revision_bump", alg.as_str()), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    if let Err(e) =
                        fixture.runtime.block_on(Store::bump_revision(fixture.core.store.db()))
                    {
                        fail("cannot bump the revision", alg, &e);
                    }
                    let started = Instant::now();
                    let minted = fixture
                        .runtime
                        .block_on(fixture.core.session_tokens.mint(&fixture.secret, ORIGIN));
                    timed += started.elapsed();
                    if let Err(e) = black_box(minted) {
                        fail("mint after a revision bump failed", alg, &e);
                    }
                }
                timed
            })
        });
        group.warm_up_time(WARM_UP);
        group.measurement_time(MEASUREMENT);
        group.sample_size(SAMPLES);

        // Every iteration must have produced a token, not an error.
        if let Err(e) =
            fixture.runtime.block_on(fixture.core.session_tokens.mint(&fixture.secret, ORIGIN))
        {
            fail("mint failed", alg, &e);
        }
        fixture.close();
    }
    group.finish();
}

// Short runs: the differences that matter here are large. RS256 signs take about a
// millisecond, so keep the sample count low enough for them to fit the measurement time.
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);
const SAMPLES: usize = 40;

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .sample_size(SAMPLES);
    targets = token_mint
}
criterion_main!(benches);
