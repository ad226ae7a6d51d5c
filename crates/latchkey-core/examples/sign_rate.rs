//! Raw single-thread JWS signing rate for one algorithm: the ceiling for the token endpoint.
//!
//!     cargo run --release -p latchkey-core --example sign_rate -- --alg ES256 --seconds 3
//!
//! Signs the claims the token endpoint signs for a plain session (iss, sub, sid, iat, nbf, exp,
//! azp; header typ=JWT and kid) with a freshly generated key, over and over on this thread, and
//! prints one line of JSON: {"alg":"ES256","signs_per_sec":47000.0,"signs":…,"seconds":…}, plus
//! the thread's CPU time and the rate per CPU-second where /proc/thread-self/schedstat exists.
//! scripts/bench-token-endpoint compares the endpoint's throughput with this figure.

mod support;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use josekit::jws::JwsHeader;
use latchkey_core::{infra::ids, infra::jose::SigningAlg};
use serde::Serialize;

type BoxError = Box<dyn std::error::Error>;

const USAGE: &str = "usage: sign_rate [--alg ES256|RS256|EdDSA] [--seconds N]";

/// Same fields, order and sizes as the claims of `SessionTokenService::mint`.
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

struct Args {
    alg: SigningAlg,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { alg: SigningAlg::ES256, seconds: 3.0 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| it.next()).ok_or(format!("{name} needs a value"));
        match name.as_str() {
            "--alg" => {
                let v = value()?;
                args.alg = SigningAlg::parse(&v)
                    .ok_or_else(|| format!("unknown algorithm {v:?}: use ES256, RS256 or EdDSA"))?;
            }
            "--seconds" => {
                let v = value()?;
                args.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| format!("--seconds wants a number of seconds, got {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn run(args: &Args) -> Result<serde_json::Value, BoxError> {
    let alg = args.alg;
    let kid = ids::new_id(ids::SIGNING_KEY);
    let (pem, _jwk) = alg.generate()?;
    let signer = alg.signer_from_pem(&pem, &kid)?;
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(&kid);
    let origin = "http://127.0.0.1:8080";
    let now = latchkey_core::infra::clock::Clock::system().now();
    let (sub, sid) = (ids::new_id(ids::USER), ids::new_id(ids::SESSION));
    let payload = serde_json::to_vec(&Claims {
        iss: origin,
        sub: &sub,
        sid: &sid,
        iat: now,
        nbf: now,
        exp: now + 60,
        azp: origin,
    })?;

    let sign = || josekit::jws::serialize_compact(black_box(&payload), &header, signer.as_ref());

    // Warm up caches and CPU frequency before measuring.
    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(300) {
        black_box(sign()?);
    }

    let budget = Duration::from_secs_f64(args.seconds);
    let cpu_before = support::thread_cpu_ns();
    let started = Instant::now();
    let mut signs: u64 = 0;
    let elapsed = loop {
        // Look at the clock every few signs only; RS256 signs are slow enough to check each time.
        for _ in 0..16 {
            black_box(sign()?);
        }
        signs += 16;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    let cpu = match (cpu_before, support::thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
        _ => None,
    };
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let rate = signs as f64 / elapsed.as_secs_f64();
    let mut line = serde_json::json!({
        "alg": alg.as_str(),
        "signs_per_sec": round(rate, 1),
        "signs": signs,
        "seconds": round(elapsed.as_secs_f64(), 3),
    });
    // On a busy machine the wall-clock rate drops with the CPU share this thread got; the rate
    // per CPU-second does not, so it tells noise from a real change.
    if let Some(cpu) = cpu {
        line["cpu_seconds"] = serde_json::json!(round(cpu, 3));
        line["signs_per_cpu_sec"] = serde_json::json!(round(signs as f64 / cpu, 1));
    }
    Ok(line)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args) {
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
