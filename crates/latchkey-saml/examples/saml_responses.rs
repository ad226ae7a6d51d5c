//! Pre-generates signed SAML responses for the ACS benchmark (scripts/bench-saml-acs).
//!
//!     saml_responses keygen --entity-id E --dir D
//!     saml_responses generate --dir D --acs-url U --sp-entity-id S --now T --count N \
//!         [--users 1000] [--first 0] [--domain bench.example] [--assertion-bytes 2048] --out F
//!
//! `keygen` writes an RSA-2048 test IdP (`D/idp.pem` certificate, `D/idp.key` private key), so
//! every batch of a run is signed by the IdP the connection trusts. `generate` writes `F`, one
//! URL-encoded form body (`SAMLResponse=…`) per line, each a distinct unsolicited response
//! (own Response and Assertion IDs, so the replay cache accepts each once), response signed
//! with RSA-SHA256, for user `(first + k) mod users`: NameID `bench-user-<i>` (persistent) and
//! attributes email `user<i>@<domain>`, givenName, sn, displayName, groups, padded with an
//! unmapped attribute until the unsigned assertion is `--assertion-bytes` long. It prints one
//! line of JSON with the sizes and the time taken.
//!
//! `--now` is passed in (`date +%s`) rather than read here: the benchmark runs the server on the
//! real clock, and the validity window of these responses must contain the moment they are
//! posted (IssueInstant at most 300 s + skew old).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use latchkey_saml::model::NAMEID_PERSISTENT;
use latchkey_saml::testkit::{ResponseSpec, TestIdp};
use openssl::x509::X509;

const USAGE: &str = "usage: saml_responses keygen --entity-id E --dir D
       saml_responses generate --dir D --acs-url U --sp-entity-id S --now UNIX --count N \\
           [--users 1000] [--first 0] [--domain bench.example] [--assertion-bytes 2048] \\
           [--threads N] --out FILE";

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut flags = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let name = arg.strip_prefix("--").ok_or_else(|| format!("unexpected {arg:?}\n{USAGE}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        flags.insert(name.to_owned(), value.clone());
    }
    Ok(flags)
}

fn flag<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    flags.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required\n{USAGE}"))
}

fn number<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: Option<T>,
) -> Result<T, String> {
    match (flags.get(name), default) {
        (Some(v), _) => v.parse().map_err(|_| format!("--{name}: not a number: {v:?}")),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("--{name} is required\n{USAGE}")),
    }
}

fn keygen(flags: &HashMap<String, String>) -> Result<(), String> {
    let dir = PathBuf::from(flag(flags, "dir")?);
    let idp = TestIdp::generate(flag(flags, "entity-id")?);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("idp.pem"), &idp.cert_pem).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("idp.key"), &idp.key_pem).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("idp.entity"), &idp.entity_id).map_err(|e| e.to_string())?;
    Ok(())
}

fn load_idp(dir: &std::path::Path) -> Result<TestIdp, String> {
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", name));
    let cert_pem = read("idp.pem")?;
    let cert_der = X509::from_pem(cert_pem.as_bytes())
        .and_then(|c| c.to_der())
        .map_err(|e| format!("idp.pem: {e}"))?;
    Ok(TestIdp { entity_id: read("idp.entity")?, key_pem: read("idp.key")?, cert_pem, cert_der })
}

struct Batch {
    idp: TestIdp,
    acs_url: String,
    sp_entity_id: String,
    domain: String,
    now: i64,
    users: u64,
    first: u64,
    assertion_bytes: usize,
}

impl Batch {
    fn spec(&self, k: u64) -> ResponseSpec {
        let i = (self.first + k) % self.users;
        let mut spec = ResponseSpec::new(&self.acs_url, &self.sp_entity_id, "", self.now);
        spec.name_id.value = format!("bench-user-{i:06}");
        spec.name_id.format = Some(NAMEID_PERSISTENT.to_owned());
        let attr = |name: &str, values: &[String]| (name.to_owned(), values.to_vec());
        spec.attributes = vec![
            attr("email", &[format!("user{i}@{}", self.domain)]),
            attr("givenName", &[format!("Bench{i}")]),
            attr("sn", &["User".to_owned()]),
            attr("displayName", &[format!("Bench{i} User")]),
            attr("groups", &["staff".to_owned(), "engineering".to_owned()]),
        ];
        let size = self.idp.assertion_xml(&spec).len();
        // The padding attribute's own markup is ~150 bytes; fill the rest with its value.
        let markup = 150;
        if self.assertion_bytes > size + markup {
            let pad = self.assertion_bytes - size - markup;
            let value: String =
                "abcdefghijklmnopqrstuvwxyz0123456789".chars().cycle().take(pad).collect();
            spec.attributes.push(attr("benchPadding", &[value]));
        }
        spec
    }

    /// One form body and the size of its assertion and of its base64.
    fn body(&self, k: u64) -> (String, usize, usize) {
        let spec = self.spec(k);
        let assertion = self.idp.assertion_xml(&spec).len();
        let b64 = self.idp.response_b64(&spec);
        let encoded: String = url::form_urlencoded::byte_serialize(b64.as_bytes()).collect();
        (format!("SAMLResponse={encoded}"), assertion, b64.len())
    }
}

fn generate(flags: &HashMap<String, String>) -> Result<(), String> {
    let dir = PathBuf::from(flag(flags, "dir")?);
    let count: u64 = number(flags, "count", None)?;
    let threads: usize = number(
        flags,
        "threads",
        Some(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)),
    )?;
    let batch = Batch {
        idp: load_idp(&dir)?,
        acs_url: flag(flags, "acs-url")?.to_owned(),
        sp_entity_id: flag(flags, "sp-entity-id")?.to_owned(),
        domain: flags.get("domain").cloned().unwrap_or_else(|| "bench.example".to_owned()),
        now: number(flags, "now", None)?,
        users: number(flags, "users", Some(1000u64))?.max(1),
        first: number(flags, "first", Some(0u64))?,
        assertion_bytes: number(flags, "assertion-bytes", Some(2048usize))?,
    };
    let started = Instant::now();
    let threads = threads.clamp(1, 64) as u64;
    // Each thread signs every threads-th response; lines keep their order in the file.
    let parts: Vec<Vec<(String, usize, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let batch = &batch;
                s.spawn(move || {
                    (t..count).step_by(threads as usize).map(|k| batch.body(k)).collect()
                })
            })
            .collect();
        // The testkit panics on a broken set-up; a generator thread's panic is passed on.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let out = flag(flags, "out")?;
    let file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let mut file = std::io::BufWriter::new(file);
    let (mut assertion_max, mut b64_max, mut body_max) = (0, 0, 0);
    for k in 0..count {
        let (body, assertion, b64) = &parts[(k % threads) as usize][(k / threads) as usize];
        writeln!(file, "{body}").map_err(|e| e.to_string())?;
        assertion_max = assertion_max.max(*assertion);
        b64_max = b64_max.max(*b64);
        body_max = body_max.max(body.len());
    }
    file.flush().map_err(|e| e.to_string())?;
    let line = serde_json::json!({
        "count": count,
        "assertion_bytes_max": assertion_max,
        "saml_response_b64_bytes_max": b64_max,
        "form_body_bytes_max": body_max,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    println!("{line}");
    if b64_max > latchkey_saml::response::MAX_RESPONSE_BYTES {
        return Err(format!(
            "the base64 responses ({b64_max} bytes) exceed the ACS limit of {} bytes",
            latchkey_saml::response::MAX_RESPONSE_BYTES
        ));
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keygen") => parse_flags(&args[1..]).and_then(|f| keygen(&f)),
        Some("generate") => parse_flags(&args[1..]).and_then(|f| generate(&f)),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::ExitCode::from(2)
        }
    }
}
