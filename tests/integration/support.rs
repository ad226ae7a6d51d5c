use std::{collections::HashMap, net::TcpListener, path::Path, process::Command, time::Duration};

use actix_web::dev::ServerHandle;
use latchkey_core::{
    Latchkey, Settings, identity::sessions::SessionOrigin, identity::users::NewUser,
    infra::audit::Actor, infra::clock::Clock, model::User,
};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend, as two separate tests.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
}

/// A database for one test: a SQLite file in the data dir, or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self { url: None }),
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("LATCHKEY_TEST_POSTGRES_URL") else {
                    if std::env::var("LATCHKEY_TEST_SKIP_POSTGRES").is_ok() {
                        eprintln!(
                            "skipping PostgreSQL variant: LATCHKEY_TEST_SKIP_POSTGRES is set"
                        );
                        return None;
                    }
                    panic!(
                        "LATCHKEY_TEST_POSTGRES_URL is not set: run ./scripts/test, or set LATCHKEY_TEST_SKIP_POSTGRES=1 to skip PostgreSQL tests"
                    );
                };
                let name = format!(
                    "latchkey_test_{}_{}",
                    std::process::id(),
                    ulid::Ulid::new().to_string().to_ascii_lowercase()
                );
                let admin =
                    Database::connect(admin_url.clone()).await.expect("connect to test PostgreSQL");
                drop_stale_databases(&admin).await;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .expect("database URL has a path");
                Some(Self { url: Some(format!("{base}/{name}")) })
            }
        }
    }
}

/// Drops, once per test process, the databases of test processes that are gone: a developer's
/// PostgreSQL would otherwise keep one database per test run forever (scripts/test starts a
/// throwaway server, so this matters only there).
async fn drop_stale_databases(admin: &sea_orm::DatabaseConnection) {
    use sea_orm::{ConnectionTrait, Statement};
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let backend = admin.get_database_backend();
        let sql = "SELECT datname FROM pg_database WHERE datname LIKE 'latchkey_test_%'";
        let Ok(rows) = admin.query_all_raw(Statement::from_string(backend, sql)).await else {
            return;
        };
        for row in rows {
            let Ok(name) = row.try_get::<String>("", "datname") else { continue };
            let pid = name.trim_start_matches("latchkey_test_").split('_').next().unwrap_or("");
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        }
    })
    .await;
}

pub fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port")
}

/// One Latchkey node running in-process.
pub struct TestServer {
    pub core: Latchkey,
    /// This node's clock, shared with [`Self::second_core`]: tests move it forward instead of
    /// sleeping.
    pub clock: Clock,
    pub base_url: String,
    pub env: HashMap<String, String>,
    handle: ServerHandle,
}

impl TestServer {
    pub async fn start(data_dir: &Path, db: &TestDb, extra: &[(&str, &str)]) -> Self {
        let listener = free_listener();
        let addr = listener.local_addr().unwrap();
        let mut env = HashMap::from([
            ("LATCHKEY_DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("LATCHKEY_LISTEN".to_owned(), addr.to_string()),
            ("LATCHKEY_WORKERS".to_owned(), "2".to_owned()),
        ]);
        if let Some(url) = &db.url {
            env.insert("LATCHKEY_DATABASE_URL".into(), url.clone());
        }
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = Settings::load(None, &env).expect("valid test settings");
        let clock = Clock::system();
        let core =
            Latchkey::open_with_clock(settings, clock.clone()).await.expect("open the store");
        let server = latchkey_web::start(core.clone(), listener).expect("start the server");
        let handle = server.handle();
        tokio::spawn(server);
        Self { core, clock, base_url: format!("http://{addr}"), env, handle }
    }

    /// Another process's view of the same store (like the CLI, or a second node's core).
    pub async fn second_core(&self) -> Latchkey {
        let settings = Settings::load(None, &self.env).unwrap();
        Latchkey::open_with_clock(settings, self.clock.clone()).await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    pub async fn user(&self, email: &str) -> User {
        self.core
            .users
            .create(
                NewUser {
                    email: email.into(),
                    password: Some("correct horse battery".into()),
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap()
    }

    /// Starts a session for `user` and returns (session id, cookie secret).
    pub async fn session(&self, user: &User) -> (String, String) {
        let origin = SessionOrigin {
            auth_method: latchkey_core::identity::method::AuthMethod::Operator,
            client_ip: Some("127.0.0.1".into()),
            user_agent: Some("tests".into()),
            ..Default::default()
        };
        let (s, secret) = self.core.sessions.create(&user.id, origin, &Actor::cli()).await.unwrap();
        (s.id, secret)
    }

    /// POST /v1/session/token with the session cookie and our own Origin.
    pub async fn token_request(&self, secret: &str) -> reqwest::Response {
        client()
            .post(self.url("/v1/session/token"))
            .header("Cookie", format!("latchkey_session={secret}"))
            .header("Origin", self.base_url.clone())
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, secret: &str) -> String {
        let res = self.token_request(secret).await;
        assert_eq!(res.status(), 200, "token request failed");
        let body: Value = res.json().await.unwrap();
        body["jwt"].as_str().unwrap().to_owned()
    }

    pub async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let res = client().get(self.url("/.well-known/jwks.json")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Verifies a JWT with an independent JOSE library against a published JWK Set.
pub fn verify(
    token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().ok_or(jsonwebtoken::errors::ErrorKind::InvalidToken)?;
    let jwk = jwks.find(&kid).ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf", "iat"]);
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.leeway = 0;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

/// The `latchkey` binary, run with only the given environment (no inherited LATCHKEY_* vars).
pub fn latchkey(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LATCHKEY_")) {
        cmd.env_remove(k);
    }
    cmd.env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn data_dir() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// Opens a core on a data dir and database without starting the web server, so no job runner
/// runs and a test drives delivery itself (`core.jobs.run_due()`).
pub async fn open_core(data_dir: &Path, db: &TestDb, extra: &[(&str, &str)]) -> Latchkey {
    open_core_with_clock(data_dir, db, extra, Clock::system()).await
}

/// [`open_core`] on a given clock: cores opened on clones of one clock are nodes whose time a
/// test moves together.
pub async fn open_core_with_clock(
    data_dir: &Path,
    db: &TestDb,
    extra: &[(&str, &str)],
    clock: Clock,
) -> Latchkey {
    let mut env = HashMap::from([("LATCHKEY_DATA_DIR".to_owned(), data_dir.display().to_string())]);
    if let Some(url) = &db.url {
        env.insert("LATCHKEY_DATABASE_URL".into(), url.clone());
    }
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Latchkey::open_with_clock(Settings::load(None, &env).expect("valid test settings"), clock)
        .await
        .expect("open the store")
}

/// Debian's python3 (a pyenv one earlier on PATH lacks the distribution's aiosmtpd module).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server on loopback: aiosmtpd (Debian's python3-aiosmtpd) storing every message it
/// accepts in a maildir. Killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    maildir: TempDir,
    child: std::process::Child,
}

/// One received message, parsed by Python's `email` package (an independent MIME parser).
#[derive(Debug, serde::Deserialize)]
pub struct ParsedMail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub content_type: String,
    /// Leaf parts in order: (content type, decoded body).
    pub parts: Vec<(String, String)>,
}

impl ParsedMail {
    pub fn part(&self, content_type: &str) -> &str {
        self.parts
            .iter()
            .find(|(t, _)| t == content_type)
            .map(|(_, body)| body.as_str())
            .unwrap_or_else(|| panic!("no {content_type} part in {self:?}"))
    }
}

impl SmtpSink {
    /// Starts on `port`, or on a free one.
    pub async fn start(port: Option<u16>) -> Self {
        let port = port.unwrap_or_else(|| free_listener().local_addr().unwrap().port());
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new(SYSTEM_PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start aiosmtpd ({SYSTEM_PYTHON}): {e}"));
        let mut sink = Self { port, maildir, child };
        for _ in 0..150 {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!(
                    "aiosmtpd exited with {status}: is python3-aiosmtpd installed (scripts/test installs it)?"
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("aiosmtpd did not listen on 127.0.0.1:{port} within 15 s");
    }

    /// Starts tests/integration/smtp_tls_server.py on a free port: TLS only (STARTTLS required,
    /// or implicit TLS) with `pki`'s server certificate, and AUTH required as `mailer`/`s3cret`.
    pub async fn start_tls(mode: SmtpTls, pki: &TestPki) -> Self {
        let port = free_listener().local_addr().unwrap().port();
        let maildir = tempfile::tempdir().unwrap();
        let ready = maildir.path().join("ready");
        let script =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/integration/smtp_tls_server.py");
        let mode_arg = match mode {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "smtps",
        };
        let child = Command::new(SYSTEM_PYTHON)
            .arg(script)
            .arg(mode_arg)
            .arg(port.to_string())
            .arg(pki.server_cert())
            .arg(pki.server_key())
            .arg(maildir.path().join("box"))
            .arg(&ready)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script} ({SYSTEM_PYTHON}): {e}"));
        let mut sink = Self { port, maildir, child };
        for _ in 0..150 {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!("{script} exited with {status}: is python3-aiosmtpd installed?");
            }
            if ready.exists() {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{script} did not listen on 127.0.0.1:{port} within 15 s");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The maildir messages land in (for tests outside Rust, such as the browser tests).
    pub fn maildir(&self) -> std::path::PathBuf {
        self.maildir.path().join("box")
    }

    /// Every message received so far, in the order the maildir lists them.
    pub fn messages(&self) -> Vec<ParsedMail> {
        let dir = self.maildir.path().join("box").join("new");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.sort();
        parse_mail_files(&files)
    }

    /// Waits until at least `n` messages arrived (aiosmtpd writes before it answers 250, so
    /// this only matters for the background worker).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ParsedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How [`SmtpSink::start_tls`] speaks TLS.
#[derive(Clone, Copy, Debug)]
pub enum SmtpTls {
    /// Plain SMTP that requires STARTTLS (`smtp://…?tls=required`).
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
/// `openssl` CLI in a temporary directory.
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").current_dir(dir.path()).args(args).output();
            let out = out.unwrap_or_else(|e| panic!("run openssl: {e}"));
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=Latchkey Test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("server.ext"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Self { dir }
    }

    /// The CA certificate (PEM), for LATCHKEY_SMTP_CA_FILE.
    pub fn ca_cert(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert(&self) -> std::path::PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key(&self) -> std::path::PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses RFC 5322 files (maildir entries, .eml files) with Python's `email` package.
pub fn parse_mail_files(files: &[std::path::PathBuf]) -> Vec<ParsedMail> {
    if files.is_empty() {
        return Vec::new();
    }
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    out.append({
        "from": str(m["From"]), "to": str(m["To"]), "subject": str(m["Subject"]),
        "message_id": str(m["Message-ID"]), "content_type": m.get_content_type(),
        "parts": [[p.get_content_type(), p.get_content()] for p in m.walk() if not p.is_multipart()],
    })
print(json.dumps(out))
"#;
    let output = Command::new(SYSTEM_PYTHON).arg("-c").arg(SCRIPT).args(files).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The system time as unix seconds, for tests that compare against stored timestamps without
/// moving a node's clock.
pub fn unix_now() -> i64 {
    latchkey_core::infra::clock::Clock::system().now()
}

/// Runs one `node --test` script (its tests one at a time, the spec reporter) with these
/// variables, plus `SCREENSHOT_DIR` for the browser scripts; extra arguments go before the script.
/// Returns whether every test passed, and the report (stdout, then stderr).
pub async fn node_test(
    script: std::path::PathBuf,
    args: Vec<String>,
    envs: Vec<(&'static str, String)>,
) -> (bool, String) {
    let screenshots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
            .args(args)
            .arg(script)
            .envs(envs)
            .env("SCREENSHOT_DIR", screenshots)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}
