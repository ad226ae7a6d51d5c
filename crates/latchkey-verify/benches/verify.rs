//! Verification speed: the raw ES256 verification of ring (one `UnparsedPublicKey::verify` of
//! a signature over a session token's signing input) next to the whole
//! `Verifier::verify` (split, base64url, header checks, key by kid from the cache, the same
//! ring verification, claims parsing and checks) on the same token.
//!
//! Run with `cargo bench -p latchkey-verify --bench verify`. Criterion reports each function as
//! time per token and tokens per second ("elem/s"); then an interleaved run of both (blocks of
//! each in turn, so a neighbour's load on a shared machine hits both alike) prints the two rates
//! per core and their ratio. See docs/benchmarks.md.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::FutureExt;
use latchkey_verify::{ManualClock, Verifier};
use ring::{
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey},
};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

const ISSUER: &str = "http://127.0.0.1:8080";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    token: String,
    point: Vec<u8>,
    verifier: Verifier,
}

/// A session token as Latchkey mints it (same claims, header and key type), and a verifier
/// holding its key.
fn fixture() -> Result<Fixture, BoxError> {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|e| format!("{e:?}"))?;
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|e| format!("{e:?}"))?;
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let kid = "01JF0Q7ZJ6V7D1X5W8K3T2N4MB";
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    let header = json!({"typ": "JWT", "alg": "ES256", "kid": kid});
    let claims = json!({
        "iss": ISSUER, "sub": "usr_01JF0Q8B3XQ2M6T9V4R7K1P5ZC", "sid": "ses_01JF0Q8C4YR3N7V0W5S8L2Q6AD",
        "iat": NOW, "nbf": NOW, "exp": NOW + 60, "azp": ISSUER,
    });
    let input =
        format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = pair.sign(&rng, input.as_bytes()).map_err(|e| format!("{e:?}"))?;
    let token = format!("{input}.{}", b64(sig.as_ref()));
    let verifier = Verifier::builder(ISSUER)
        .authorized_party(ISSUER)
        .static_jwks(json!({ "keys": [jwk] }).to_string())
        .clock(ManualClock::new(NOW))
        .build()?;
    Ok(Fixture { token, point, verifier })
}

fn raw_verify(point: &[u8], input: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(input, sig).is_ok()
}

fn sdk_verify(verifier: &Verifier, token: &str) -> bool {
    matches!(verifier.verify(token).now_or_never(), Some(Ok(_)))
}

fn fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    eprintln!("verify bench: {what}: {e}");
    std::process::exit(1)
}

/// The signing input and signature of the fixture's token.
fn parts(f: &Fixture) -> (String, Vec<u8>) {
    let Some((input, sig)) = f.token.rsplit_once('.') else { fail("token", &"no signature") };
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap_or_else(|e| fail("signature", &e));
    (input.to_owned(), sig)
}

fn verify(c: &mut Criterion) {
    let f = fixture().unwrap_or_else(|e| fail("fixture", &e));
    let (input, sig) = parts(&f);
    if !raw_verify(&f.point, input.as_bytes(), &sig) || !sdk_verify(&f.verifier, &f.token) {
        fail("self-check", &"the token does not verify");
    }
    let mut group = c.benchmark_group("verify_es256");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ring_raw", |b| {
        b.iter(|| raw_verify(black_box(&f.point), black_box(input.as_bytes()), black_box(&sig)))
    });
    group.bench_function("latchkey_verify", |b| {
        b.iter(|| sdk_verify(black_box(&f.verifier), black_box(&f.token)))
    });
    group.finish();
    interleaved(&f, &input, &sig);
}

/// Both paths in alternating blocks for a few seconds; prints rates and the ratio.
fn interleaved(f: &Fixture, input: &str, sig: &[u8]) {
    const BLOCK: u32 = 500;
    let (mut raw_time, mut sdk_time, mut blocks) = (Duration::ZERO, Duration::ZERO, 0u32);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        for _ in 0..BLOCK {
            black_box(raw_verify(black_box(&f.point), black_box(input.as_bytes()), black_box(sig)));
        }
        raw_time += t.elapsed();
        let t = Instant::now();
        for _ in 0..BLOCK {
            black_box(sdk_verify(black_box(&f.verifier), black_box(&f.token)));
        }
        sdk_time += t.elapsed();
        blocks += 1;
    }
    let n = f64::from(blocks * BLOCK);
    let raw_rate = n / raw_time.as_secs_f64();
    let sdk_rate = n / sdk_time.as_secs_f64();
    println!("interleaved, one thread, {} tokens each:", blocks * BLOCK);
    println!("  ring raw ES256 verify:        {raw_rate:>9.0} /s");
    println!("  latchkey-verify Verifier:     {sdk_rate:>9.0} /s");
    println!("  ratio (SDK / raw):            {:>9.3}", sdk_rate / raw_rate);
}

criterion_group!(benches, verify);
criterion_main!(benches);
