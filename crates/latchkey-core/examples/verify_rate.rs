//! Raw single-thread ES256 verification rate: the ceiling for introspection and userinfo when
//! every request brings a token not seen before.
//!
//!     cargo run --release -p latchkey-core --example verify_rate -- --seconds 3
//!
//! Signs one RFC 9068 access token (the claims Latchkey puts in a user's access token, header
//! typ=at+jwt and kid) with a freshly generated P-256 key, then verifies its precomputed signing
//! input and raw signature over and over on this thread with the primitive Latchkey's ES256
//! keys verify with (`infra::jose::es256`): SHA-256, R and S into an `ECDSA_SIG`, OpenSSL's
//! `ECDSA_do_verify` on a key parsed once; no base64 and no JSON. It then times
//! `KeySet::verify`, the whole compact-JWS path the endpoints take (header decoding, key choice
//! by kid, base64, signature, claims parsed into a map), and josekit's ES256 verifier on the
//! same input (what Latchkey called before: it sets up an EVP context for every call), for as
//! long again each. Prints one line of JSON: {"alg":"ES256", "verifies_per_sec":…,
//! "verifies":…,"seconds":…,"keyset_verifies_per_sec":…,"josekit_verifies_per_sec":…}, plus
//! the thread's CPU time and the rates per CPU-second where /proc/thread-self/schedstat exists.
//! scripts/bench-resource-endpoints compares the endpoints with `verifies_per_sec`.

mod support;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use josekit::jws::{ES256, JwsHeader, JwsVerifier};
use latchkey_core::infra::{
    ids,
    jose::{KeySet, SigningAlg},
};
use serde_json::json;

type BoxError = Box<dyn std::error::Error>;

const USAGE: &str = "usage: verify_rate [--seconds N]";

fn parse_args() -> Result<f64, String> {
    let mut seconds = 3.0;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        match name.as_str() {
            "--seconds" => {
                let v = inline.or_else(|| it.next()).ok_or("--seconds needs a value")?;
                seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| format!("--seconds wants a number of seconds, got {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(seconds)
}

/// A user's access token as Latchkey signs it (same claims, same sizes), and its JWK set.
fn sample_token() -> Result<(String, josekit::jwk::Jwk, Vec<u8>), BoxError> {
    let kid = ids::new_id(ids::SIGNING_KEY);
    let (pem, mut jwk) = SigningAlg::ES256.generate()?;
    jwk.set_key_id(&kid);
    let signer = SigningAlg::ES256.signer_from_pem(&pem, &kid)?;
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id(&kid);
    let now = latchkey_core::infra::clock::Clock::system().now();
    let origin = "http://127.0.0.1:8080";
    let claims = json!({
        "iss": origin,
        "aud": origin,
        "sub": ids::new_id(ids::USER),
        "client_id": ids::new_id(ids::OAUTH_CLIENT),
        "iat": now,
        "exp": now + 3600,
        "jti": ids::new_id(ids::ACCESS_TOKEN),
        "scope": "openid email offline_access",
        "auth_time": now,
        "sid": ids::new_id(ids::SESSION),
        "amr": ["pwd"],
        "grant_id": ids::new_id(ids::OAUTH_CODE),
    });
    let token = josekit::jws::serialize_compact(&serde_json::to_vec(&claims)?, &header, &*signer)?;
    Ok((token, jwk, pem))
}

/// Runs `op` for `budget` after a short warm-up: (operations, wall seconds, CPU seconds).
fn time_loop(
    budget: Duration,
    mut op: impl FnMut() -> Result<(), BoxError>,
) -> Result<(u64, f64, Option<f64>), BoxError> {
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(300) {
        op()?;
    }
    let cpu_before = support::thread_cpu_ns();
    let started = Instant::now();
    let mut n: u64 = 0;
    let elapsed = loop {
        for _ in 0..16 {
            op()?;
        }
        n += 16;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    let cpu = match (cpu_before, support::thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
        _ => None,
    };
    Ok((n, elapsed.as_secs_f64(), cpu))
}

fn run(seconds: f64) -> Result<serde_json::Value, BoxError> {
    let (token, jwk, pem) = sample_token()?;
    let (input, signature) = token.rsplit_once('.').ok_or("not a compact JWS")?;
    let signature = URL_SAFE_NO_PAD.decode(signature)?;
    let jwks = json!({ "keys": [serde_json::Value::Object(jwk.clone().into())] });
    let budget = Duration::from_secs_f64(seconds);

    // The primitive: SHA-256 of the signing input, the signature's R and S converted on every
    // call, OpenSSL's ECDSA_do_verify with a key parsed once.
    let ec_key = openssl::pkey::PKey::private_key_from_pem(&pem)?.ec_key()?;
    let (verifies, wall, cpu) = time_loop(budget, || {
        let digest = openssl::sha::sha256(black_box(input.as_bytes()));
        let (r, s) = black_box(&signature).split_at(32);
        let sig = openssl::ecdsa::EcdsaSig::from_private_components(
            openssl::bn::BigNum::from_slice(r)?,
            openssl::bn::BigNum::from_slice(s)?,
        )?;
        if !sig.verify(&digest, &ec_key)? {
            return Err("signature did not verify".into());
        }
        Ok(())
    })?;

    let keys = KeySet::from_jwks(&jwks);
    let (full, full_wall, full_cpu) = time_loop(budget, || {
        black_box(keys.verify(black_box(&token))?);
        Ok(())
    })?;

    // For comparison with the runs before `infra::jose::es256`: josekit's verifier.
    let verifier = ES256.verifier_from_jwk(&jwk)?;
    let (jose, jose_wall, _) = time_loop(budget, || {
        verifier.verify(black_box(input.as_bytes()), black_box(&signature))?;
        Ok(())
    })?;

    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let mut line = json!({
        "alg": "ES256",
        "verifies_per_sec": round(verifies as f64 / wall, 1),
        "verifies": verifies,
        "seconds": round(wall, 3),
        "keyset_verifies_per_sec": round(full as f64 / full_wall, 1),
        "token_bytes": token.len(),
        "josekit_verifies_per_sec": round(jose as f64 / jose_wall, 1),
    });
    // On a busy machine the wall-clock rate drops with the CPU share this thread got; the rate
    // per CPU-second does not, so it tells noise from a real change.
    if let Some(cpu) = cpu {
        line["cpu_seconds"] = json!(round(cpu, 3));
        line["verifies_per_cpu_sec"] = json!(round(verifies as f64 / cpu, 1));
    }
    if let Some(cpu) = full_cpu {
        line["keyset_verifies_per_cpu_sec"] = json!(round(full as f64 / cpu, 1));
    }
    Ok(line)
}

fn main() -> std::process::ExitCode {
    let seconds = match parse_args() {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(seconds) {
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
