//! Raw single-thread Argon2id verification rate at Latchkey's password parameters: the physical
//! limit the password sign-in benchmark (scripts/bench-password-sign-in) compares against.
//!
//! `cargo run --release -p latchkey-core --example argon2_rate -- --seconds 5`
//! Prints one JSON line: {"verifications_per_sec": …, "memory_kib": …, "iterations": …, "parallelism": …}.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use latchkey_core::infra::config::AuthPolicy;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut seconds = 5.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().ok_or("--seconds needs a value")?.parse()?,
            "--help" | "-h" => {
                println!(
                    "usage: argon2_rate [--seconds S]   (parameters: LATCHKEY_ARGON2_* defaults)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let policy = AuthPolicy::default();
    let params = Params::new(
        policy.argon2_memory_kib,
        policy.argon2_iterations,
        policy.argon2_parallelism,
        None,
    )
    .map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    // The fastest honest verification: one Argon2id pass into reused memory (as the server
    // does), so the ratio measures the server's overhead and nothing else.
    let salt = b"latchkey-bench-salt";
    let mut memory = vec![Block::default(); params.block_count()];
    let mut out = [0u8; 32];
    argon
        .hash_password_into_with_memory(b"bench password 123", salt, &mut out, &mut memory)
        .map_err(|e| e.to_string())?;
    let expected = out;

    let limit = Duration::from_secs_f64(seconds);
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < limit {
        argon
            .hash_password_into_with_memory(b"bench password 123", salt, &mut out, &mut memory)
            .map_err(|e| e.to_string())?;
        if out != expected {
            return Err("verification mismatch".into());
        }
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let per_cpu = cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| end - start)
        .filter(|s| *s > 0.0)
        .map_or(rate, |s| n as f64 / s);
    println!(
        "{{\"verifications_per_sec\":{rate:.2},\"verifications_per_cpu_sec\":{per_cpu:.2},\"memory_kib\":{},\"iterations\":{},\"parallelism\":{}}}",
        policy.argon2_memory_kib, policy.argon2_iterations, policy.argon2_parallelism
    );
    Ok(())
}

/// This process's user + system CPU time, from /proc (Linux), in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
