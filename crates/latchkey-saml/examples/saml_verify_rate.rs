//! Raw single-thread rate of parsing and verifying SAML responses: the ceiling for the ACS.
//!
//!     saml_verify_rate --bodies F --cert idp.pem --idp-entity-id E --acs-url U \
//!         --sp-entity-id S --now UNIX [--seconds 3] [--distinct 1000]
//!
//! Reads the form bodies written by the `saml_responses` example (the very responses the
//! benchmark posts to the ACS), takes the first `--distinct` of them, and runs
//! `response::verify_response` over them in turn on this thread with the expectations the ACS
//! uses for an unsolicited response on a connection allowing IdP-initiated SSO: base64, the
//! DOCTYPE guard, Latchkey's own parse and shape checks, samael's parse with xmlsec signature
//! verification and reduction, every profile condition. No storage, no HTTP. `--now` is the
//! instant the responses were generated at, so the clock never rejects them here.
//!
//! Prints one line of JSON: {"verifications_per_sec":…,"verifications":…,"seconds":…,
//! "cpu_seconds":…,"verifications_per_cpu_sec":…} (CPU figures where
//! /proc/thread-self/schedstat exists). scripts/bench-saml-acs compares the ACS with it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use latchkey_saml::algorithms::AlgorithmPolicy;
use latchkey_saml::response::{ResponseExpectations, verify_response};

type BoxError = Box<dyn std::error::Error>;

const USAGE: &str = "usage: saml_verify_rate --bodies F --cert idp.pem --idp-entity-id E \
                     --acs-url U --sp-entity-id S --now UNIX [--seconds 3] [--distinct 1000]";

#[derive(Default)]
struct Args {
    bodies: String,
    cert: String,
    idp_entity_id: String,
    acs_url: String,
    sp_entity_id: String,
    now: i64,
    seconds: f64,
    distinct: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { seconds: 3.0, distinct: 1000, ..Args::default() };
    let mut it = std::env::args().skip(1);
    let mut seen_now = false;
    while let Some(name) = it.next() {
        if name == "-h" || name == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = it.next().ok_or(format!("{name} needs a value"))?;
        let bad = |what: &str| format!("{name} wants {what}, got {value:?}");
        match name.as_str() {
            "--bodies" => args.bodies = value,
            "--cert" => args.cert = value,
            "--idp-entity-id" => args.idp_entity_id = value,
            "--acs-url" => args.acs_url = value,
            "--sp-entity-id" => args.sp_entity_id = value,
            "--now" => {
                args.now = value.parse().map_err(|_| bad("unix seconds"))?;
                seen_now = true;
            }
            "--seconds" => {
                args.seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| bad("a number of seconds"))?;
            }
            "--distinct" => {
                args.distinct =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("a count"))?;
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let required = [&args.bodies, &args.cert, &args.idp_entity_id, &args.acs_url];
    if required.iter().any(|s| s.is_empty()) || args.sp_entity_id.is_empty() || !seen_now {
        return Err(USAGE.to_owned());
    }
    Ok(args)
}

/// The base64 `SAMLResponse` of each of the first `n` form bodies.
fn load_responses(path: &str, n: usize) -> Result<Vec<String>, BoxError> {
    let text = std::fs::read_to_string(path)?;
    let responses: Vec<String> = text
        .lines()
        .take(n)
        .filter_map(|line| {
            url::form_urlencoded::parse(line.as_bytes())
                .find(|(k, _)| k == "SAMLResponse")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    if responses.is_empty() {
        return Err(format!("{path}: no SAMLResponse form bodies").into());
    }
    Ok(responses)
}

fn run(args: &Args) -> Result<serde_json::Value, BoxError> {
    let responses = load_responses(&args.bodies, args.distinct)?;
    let pem = std::fs::read(&args.cert)?;
    let cert = openssl::x509::X509::from_pem(&pem)?.to_der()?;
    let certs = [cert];
    let expect = ResponseExpectations {
        idp_entity_id: &args.idp_entity_id,
        idp_certs: &certs,
        sp_entity_id: &args.sp_entity_id,
        acs_url: &args.acs_url,
        in_response_to: None,
        allow_unsolicited: true,
        algorithms: AlgorithmPolicy { allow_sha1: false },
        require_encryption: false,
        decryption_keys: &[],
        now: args.now,
        skew_secs: 60,
    };
    // Every response must pass: a rejected one would be cheaper than the ACS's work.
    for r in &responses {
        verify_response(r, &expect)?;
    }
    let mut next = responses.iter().cycle();
    let mut verify = || verify_response(black_box(next.next().map_or("", String::as_str)), &expect);

    let warm_up = Instant::now();
    while warm_up.elapsed() < Duration::from_millis(300) {
        black_box(verify()?);
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let cpu_before = thread_cpu_ns();
    let started = Instant::now();
    let mut verifications: u64 = 0;
    let elapsed = loop {
        black_box(verify()?);
        verifications += 1;
        let elapsed = started.elapsed();
        if elapsed >= budget {
            break elapsed;
        }
    };
    let cpu = match (cpu_before, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
        _ => None,
    };
    let round = |x: f64, digits: i32| (x * 10f64.powi(digits)).round() / 10f64.powi(digits);
    let mut line = serde_json::json!({
        "verifications_per_sec": round(verifications as f64 / elapsed.as_secs_f64(), 1),
        "verifications": verifications,
        "seconds": round(elapsed.as_secs_f64(), 3),
        "distinct_responses": responses.len(),
        "saml_response_b64_bytes": responses.first().map_or(0, String::len),
    });
    // On a busy machine the wall-clock rate drops with the CPU share this thread got; the rate
    // per CPU-second does not, so it tells noise from a real change.
    if let Some(cpu) = cpu {
        line["cpu_seconds"] = serde_json::json!(round(cpu, 3));
        line["verifications_per_cpu_sec"] = serde_json::json!(round(verifications as f64 / cpu, 1));
    }
    Ok(line)
}

/// CPU time this thread has run, from Linux's /proc/thread-self/schedstat (nanoseconds).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
