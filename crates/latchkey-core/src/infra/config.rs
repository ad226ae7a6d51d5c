//! Settings from `LATCHKEY_*` environment variables and an optional TOML file (env wins),
//! validated in one pass so that a bad value stops start-up with a message naming the setting.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;
use url::Url;

use crate::infra::jose::SigningAlg;

pub use crate::infra::error::ConfigError;

/// Where a bad value came from, said in the error ([`ConfigError`] lives with the other errors,
/// so that `error.rs` needs nothing from here).
impl ConfigError {
    fn from_source(
        setting: &str,
        source: &Source,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        let mut e = Self::new(setting, expected, got);
        e.source_note = match source {
            Source::Env => " (from the environment)".into(),
            Source::File(path) => format!(" (key `{}` in {})", toml_key(setting), path),
            Source::Default => String::new(),
        };
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How an SQLite store makes a commit durable: its `PRAGMA synchronous`, in WAL mode.
/// `Normal`: commits are written to the WAL without an fsync (the WAL is synced at checkpoints),
/// so a power loss or OS crash can lose the last transactions, never corrupt the database; a
/// crash of Latchkey alone loses nothing. `Full`: the WAL is synced at every commit, so a
/// committed transaction survives a power loss too, at the cost of one fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Normal,
    Full,
}

impl SqliteSync {
    /// The value of SQLite's `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

#[derive(Clone)]
pub enum MasterKeySource {
    /// Base64 key given directly (`LATCHKEY_MASTER_KEY`).
    Inline(String),
    /// Key file; `generate` is true only for the default path, which is created on first start.
    File { path: PathBuf, generate: bool },
}

/// Where DNS lookups (domain verification TXT records) go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsResolver {
    /// The nameservers in /etc/resolv.conf.
    System,
    /// These nameservers, over UDP with TCP fallback (tests point this at a local server).
    Servers(Vec<SocketAddr>),
}

impl fmt::Display for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Servers(servers) => {
                let shown: Vec<String> = servers.iter().map(ToString::to_string).collect();
                f.write_str(&shown.join(","))
            }
        }
    }
}

/// The effective configuration. Built only through [`Settings::load`], so every instance is valid.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// External base URL without a trailing slash; it is the OIDC issuer, byte for byte.
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// SQLite only: `PRAGMA synchronous` of every connection (see [`SqliteSync`]).
    pub sqlite_synchronous: SqliteSync,
    pub master_key: MasterKeySource,
    /// Outgoing mail server (lettre URL syntax); without one, mail is written to
    /// `<data_dir>/mail/<id>.eml` instead.
    pub smtp_url: Option<String>,
    /// PEM file of extra CA certificates trusted for SMTP TLS (besides the built-in webpki roots),
    /// already checked to hold at least one certificate.
    pub smtp_ca_file: Option<PathBuf>,
    /// The From mailbox of every mail, already checked to parse (`Name <addr@host>` or `addr@host`).
    pub mail_from: String,
    pub log_format: LogFormat,
    pub log_level: String,
    pub workers: usize,
    pub session_token_ttl: Duration,
    pub session_token_alg: SigningAlg,
    pub session_idle_timeout: Duration,
    pub session_absolute_timeout: Duration,
    /// Password hashing and sign-in abuse limits.
    pub auth: AuthPolicy,
    /// Origins (scheme://host[:port]) allowed to request session tokens, besides our own.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies / load balancers whose `X-Forwarded-For` is believed: the client address
    /// (for per-address sign-in limits, sessions and audit events) is the rightmost address in
    /// that header that is not one of them. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Leeway for clocks that disagree; retired keys stay published this much longer too.
    pub clock_skew: Duration,
    pub max_body_bytes: usize,
    pub dns_resolver: DnsResolver,
    /// SAML IdP metadata URLs may point at loopback and private addresses (tests, labs).
    pub saml_metadata_allow_private: bool,
    /// How often metadata URLs of SAML connections are fetched again.
    pub saml_metadata_refresh: Duration,
    /// Google and Microsoft as upstream OpenID Connect providers (social sign-in and EASIE).
    pub upstream: UpstreamSettings,
    /// Problems worth a warning that do not stop start-up; logged once logging is set up.
    pub warnings: Vec<String>,
}

/// The OAuth client Latchkey is registered as at an upstream provider.
#[derive(Clone)]
pub struct UpstreamClient {
    pub client_id: String,
    pub client_secret: String,
}

/// Upstream OpenID Connect providers. Endpoints come from discovery under the issuer
/// (Google) or authority (Microsoft: a tenant's issuer is `{authority}/{tid}/v2.0`); both are
/// overridable so that private deployments and tests use the same code path.
#[derive(Clone)]
pub struct UpstreamSettings {
    /// `None`: "Continue with Google" and Google EASIE enrollments are off.
    pub google: Option<UpstreamClient>,
    pub microsoft: Option<UpstreamClient>,
    /// Without a trailing slash: issuers are compared byte for byte.
    pub google_issuer: String,
    pub microsoft_authority: String,
    /// How stale an EASIE session's last upstream check may be before tokens are minted.
    pub easie_recheck_interval: Duration,
    /// How long an unreachable upstream is tolerated before EASIE sessions fail closed.
    pub easie_upstream_grace: Duration,
}

/// Password and sign-in policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Consecutive failed sign-ins on one account before it is locked.
    pub max_failures: u32,
    /// How long a locked account stays locked.
    pub lockout: Duration,
    /// Failed sign-ins from one IP address within the lockout window before it is blocked.
    pub ip_max_failures: u32,
    /// Minimum zxcvbn score (0-4) for new passwords.
    pub password_min_score: u8,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Admin API requests one API key may make per minute, on all nodes together.
    pub api_key_rate_limit: u32,
}

impl Default for AuthPolicy {
    /// OWASP's Argon2id parameters (19 MiB, 2 passes, 1 lane).
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout: Duration::from_secs(15 * 60),
            ip_max_failures: 50,
            password_min_score: 3,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            api_key_rate_limit: 600,
        }
    }
}

/// Variables read by the CLI itself rather than by the settings.
const CLI_VARIABLES: &[&str] = &["LATCHKEY_CONFIG", "LATCHKEY_NEW_PASSWORD"];

/// Every recognised setting: environment name, and whether its whole value is secret
/// (URLs are shown with their password redacted instead).
const SETTINGS: &[(&str, bool)] = &[
    ("LATCHKEY_LISTEN", false),
    ("LATCHKEY_PUBLIC_URL", false),
    ("LATCHKEY_DATA_DIR", false),
    ("LATCHKEY_DATABASE_URL", false),
    ("LATCHKEY_SQLITE_SYNCHRONOUS", false),
    ("LATCHKEY_MASTER_KEY", true),
    ("LATCHKEY_MASTER_KEY_FILE", false),
    ("LATCHKEY_SMTP_URL", false),
    ("LATCHKEY_SMTP_CA_FILE", false),
    ("LATCHKEY_MAIL_FROM", false),
    ("LATCHKEY_LOG_FORMAT", false),
    ("LATCHKEY_LOG_LEVEL", false),
    ("LATCHKEY_WORKERS", false),
    ("LATCHKEY_SESSION_TOKEN_TTL", false),
    ("LATCHKEY_SESSION_TOKEN_ALG", false),
    ("LATCHKEY_SESSION_IDLE_TIMEOUT", false),
    ("LATCHKEY_SESSION_ABSOLUTE_TIMEOUT", false),
    ("LATCHKEY_SIGN_IN_MAX_FAILURES", false),
    ("LATCHKEY_SIGN_IN_LOCKOUT", false),
    ("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", false),
    ("LATCHKEY_API_KEY_RATE_LIMIT", false),
    ("LATCHKEY_PASSWORD_MIN_SCORE", false),
    ("LATCHKEY_ARGON2_MEMORY_KIB", false),
    ("LATCHKEY_ARGON2_ITERATIONS", false),
    ("LATCHKEY_ARGON2_PARALLELISM", false),
    ("LATCHKEY_ALLOWED_ORIGINS", false),
    ("LATCHKEY_TRUSTED_PROXIES", false),
    ("LATCHKEY_CLOCK_SKEW", false),
    ("LATCHKEY_MAX_BODY_BYTES", false),
    ("LATCHKEY_DNS_RESOLVER", false),
    ("LATCHKEY_SAML_METADATA_ALLOW_PRIVATE", false),
    ("LATCHKEY_SAML_METADATA_REFRESH", false),
    ("LATCHKEY_GOOGLE_CLIENT_ID", false),
    ("LATCHKEY_GOOGLE_CLIENT_SECRET", true),
    ("LATCHKEY_MICROSOFT_CLIENT_ID", false),
    ("LATCHKEY_MICROSOFT_CLIENT_SECRET", true),
    ("LATCHKEY_GOOGLE_ISSUER", false),
    ("LATCHKEY_MICROSOFT_AUTHORITY", false),
    ("LATCHKEY_EASIE_RECHECK_INTERVAL", false),
    ("LATCHKEY_EASIE_UPSTREAM_GRACE", false),
];

/// An address (a single host) or a CIDR range.
fn parse_ip_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn toml_key(setting: &str) -> String {
    setting.trim_start_matches("LATCHKEY_").to_ascii_lowercase()
}

#[derive(Clone, Debug)]
enum Source {
    Env,
    File(String),
    Default,
}

struct Raw {
    values: HashMap<&'static str, (String, Source)>,
}

impl Raw {
    fn get(&self, setting: &str) -> Option<(&str, &Source)> {
        self.values.get(setting).map(|(v, s)| (v.as_str(), s)).filter(|(v, _)| !v.is_empty())
    }
}

/// A TOML syntax error, placed as editors and compilers do: `path:line:column: message`.
fn toml_syntax_error(shown: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim_end();
    let got = match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{shown}:{line}:{column}: {message}")
        }
        None => format!("{shown}: {message}"),
    };
    ConfigError::new("--config", "valid TOML", got)
}

impl Settings {
    /// Reads the optional TOML file, overlays the `LATCHKEY_*` variables from `env`, and
    /// validates the result. Errors name the setting and what it should look like.
    pub fn load(
        config_file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut values: HashMap<&'static str, (String, Source)> = HashMap::new();
        if let Some(path) = config_file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", "a readable TOML file", format!("{shown}: {e}"))
            })?;
            let table: toml::Table =
                text.parse().map_err(|e: toml::de::Error| toml_syntax_error(&shown, &text, &e))?;
            for (key, value) in table {
                let Some((name, _)) = SETTINGS.iter().find(|(n, _)| toml_key(n) == key) else {
                    return Err(ConfigError::new(
                        "--config",
                        format!(
                            "only known keys ({})",
                            SETTINGS
                                .iter()
                                .map(|(n, _)| toml_key(n))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        format!("unknown key `{key}` in {shown}"),
                    ));
                };
                let text = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => {
                        return Err(ConfigError::from_source(
                            name,
                            &Source::File(shown.clone()),
                            "a string, number or list of strings",
                            other.type_str(),
                        ));
                    }
                };
                values.insert(name, (text, Source::File(shown.clone())));
            }
        }
        // An empty variable counts as unset, so it does not hide the file's value.
        for (name, _) in SETTINGS {
            if let Some(v) = env.get(*name).filter(|v| !v.trim().is_empty()) {
                values.insert(name, (v.clone(), Source::Env));
            }
        }
        let raw = Raw { values };
        let mut settings = Self::validate(&raw)?;
        let mut unknown: Vec<String> = env
            .keys()
            .filter(|k| {
                k.starts_with("LATCHKEY_")
                    && !k.starts_with("LATCHKEY_TEST_")
                    && !k.starts_with("LATCHKEY_BENCH_")
            })
            .filter(|k| {
                !SETTINGS.iter().any(|(n, _)| n == k) && !CLI_VARIABLES.contains(&k.as_str())
            })
            .cloned()
            .collect();
        unknown.sort();
        settings.warnings = unknown
            .into_iter()
            .map(|k| format!("ignoring unknown environment variable {k} (typo?)"))
            .collect();
        let smtp_tls = settings.smtp_url.as_deref().is_some_and(|u| {
            u.starts_with("smtps:") || u.contains("tls=required") || u.contains("tls=opportunistic")
        });
        settings.warn_if_sqlite_setting_unused(&raw);
        if settings.smtp_ca_file.is_some() && !smtp_tls {
            settings.warnings.push(
                "LATCHKEY_SMTP_CA_FILE is set but LATCHKEY_SMTP_URL does not use TLS: it is unused"
                    .to_owned(),
            );
        }
        Ok(settings)
    }

    /// A durability chosen for SQLite does nothing on PostgreSQL: say so rather than ignore it.
    fn warn_if_sqlite_setting_unused(&mut self, raw: &Raw) {
        if raw.get("LATCHKEY_SQLITE_SYNCHRONOUS").is_some() && !self.is_sqlite() {
            self.warnings.push(
                "LATCHKEY_SQLITE_SYNCHRONOUS is set but LATCHKEY_DATABASE_URL is not SQLite: it is unused"
                    .to_owned(),
            );
        }
    }

    /// Loads from the process environment.
    pub fn from_env(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load(config_file, &env)
    }

    fn validate(raw: &Raw) -> Result<Self, ConfigError> {
        let (listen, public_url) = network(raw)?;
        let (data_dir, database_url, sqlite_synchronous, master_key) = storage(raw)?;
        let (smtp_url, smtp_ca_file, mail_from) = mail(raw)?;
        let (log_format, log_level, workers) = process(raw)?;
        let (session_token_ttl, session_token_alg, session_idle_timeout, session_absolute_timeout) =
            sessions(raw)?;
        let (allowed_origins, trusted_proxies) = origins(raw)?;
        let clock_skew =
            duration(raw, "LATCHKEY_CLOCK_SKEW", "60s", Duration::ZERO, Duration::from_secs(600))?;
        let auth = auth_policy(raw)?;
        let max_body_bytes = parse(
            raw,
            "LATCHKEY_MAX_BODY_BYTES",
            "65536",
            "a size in bytes between 1024 and 16777216",
            |v| v.parse::<usize>().ok().filter(|n| (1024..=16 << 20).contains(n)),
        )?;

        let dns_resolver = parse(
            raw,
            "LATCHKEY_DNS_RESOLVER",
            "system",
            "`system` or a comma-separated list of nameservers such as 192.0.2.53:53,[2001:db8::53]:53",
            parse_dns_resolver,
        )?;
        let saml_metadata_allow_private =
            parse(raw, "LATCHKEY_SAML_METADATA_ALLOW_PRIVATE", "false", "true or false", |v| {
                v.parse::<bool>().ok()
            })?;
        let saml_metadata_refresh = duration(
            raw,
            "LATCHKEY_SAML_METADATA_REFRESH",
            "6h",
            Duration::from_secs(60),
            Duration::from_secs(7 * 24 * 3600),
        )?;

        let upstream = upstream(raw)?;

        Ok(Self {
            listen,
            public_url,
            data_dir,
            database_url,
            sqlite_synchronous,
            master_key,
            smtp_url,
            smtp_ca_file,
            mail_from,
            log_format,
            log_level,
            workers,
            session_token_ttl,
            session_token_alg,
            session_idle_timeout,
            session_absolute_timeout,
            auth,
            allowed_origins,
            trusted_proxies,
            clock_skew,
            max_body_bytes,
            dns_resolver,
            saml_metadata_allow_private,
            saml_metadata_refresh,
            upstream,
            warnings: Vec::new(),
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Our own origin (scheme://host[:port]), derived from the public URL.
    pub fn public_origin(&self) -> String {
        normalize_origin(&self.public_url).unwrap_or_else(|| self.public_url.clone())
    }

    /// Cookies may drop `Secure` only when the issuer is plain-http loopback.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The effective configuration with secrets redacted, as `latchkey config check` prints it.
    pub fn redacted(&self) -> BTreeMap<&'static str, serde_json::Value> {
        use serde_json::json;
        let mut m = BTreeMap::new();
        m.insert("LATCHKEY_LISTEN", json!(self.listen.to_string()));
        m.insert("LATCHKEY_PUBLIC_URL", json!(self.public_url));
        m.insert("LATCHKEY_DATA_DIR", json!(self.data_dir.display().to_string()));
        m.insert("LATCHKEY_DATABASE_URL", json!(redact_url(&self.database_url)));
        m.insert("LATCHKEY_SQLITE_SYNCHRONOUS", json!(self.sqlite_synchronous));
        match &self.master_key {
            MasterKeySource::Inline(_) => {
                m.insert("LATCHKEY_MASTER_KEY", json!("<redacted>"));
            }
            MasterKeySource::File { path, .. } => {
                m.insert("LATCHKEY_MASTER_KEY_FILE", json!(path.display().to_string()));
            }
        }
        m.insert(
            "LATCHKEY_SMTP_URL",
            self.smtp_url.as_deref().map_or(serde_json::Value::Null, |u| json!(redact_url(u))),
        );
        m.insert(
            "LATCHKEY_SMTP_CA_FILE",
            self.smtp_ca_file
                .as_deref()
                .map_or(serde_json::Value::Null, |p| json!(p.display().to_string())),
        );
        m.insert("LATCHKEY_MAIL_FROM", json!(self.mail_from));
        m.insert("LATCHKEY_LOG_FORMAT", json!(self.log_format));
        m.insert("LATCHKEY_LOG_LEVEL", json!(self.log_level));
        m.insert("LATCHKEY_WORKERS", json!(self.workers));
        m.insert(
            "LATCHKEY_SESSION_TOKEN_TTL",
            json!(humantime::format_duration(self.session_token_ttl).to_string()),
        );
        m.insert("LATCHKEY_SESSION_TOKEN_ALG", json!(self.session_token_alg.as_str()));
        m.insert(
            "LATCHKEY_SESSION_IDLE_TIMEOUT",
            json!(humantime::format_duration(self.session_idle_timeout).to_string()),
        );
        m.insert(
            "LATCHKEY_SESSION_ABSOLUTE_TIMEOUT",
            json!(humantime::format_duration(self.session_absolute_timeout).to_string()),
        );
        m.insert("LATCHKEY_ALLOWED_ORIGINS", json!(self.allowed_origins));
        m.insert(
            "LATCHKEY_TRUSTED_PROXIES",
            json!(self.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>()),
        );
        m.insert("LATCHKEY_SIGN_IN_MAX_FAILURES", json!(self.auth.max_failures));
        m.insert(
            "LATCHKEY_SIGN_IN_LOCKOUT",
            json!(humantime::format_duration(self.auth.lockout).to_string()),
        );
        m.insert("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", json!(self.auth.ip_max_failures));
        m.insert("LATCHKEY_API_KEY_RATE_LIMIT", json!(self.auth.api_key_rate_limit));
        m.insert("LATCHKEY_PASSWORD_MIN_SCORE", json!(self.auth.password_min_score));
        m.insert("LATCHKEY_ARGON2_MEMORY_KIB", json!(self.auth.argon2_memory_kib));
        m.insert("LATCHKEY_ARGON2_ITERATIONS", json!(self.auth.argon2_iterations));
        m.insert("LATCHKEY_ARGON2_PARALLELISM", json!(self.auth.argon2_parallelism));
        m.insert(
            "LATCHKEY_CLOCK_SKEW",
            json!(humantime::format_duration(self.clock_skew).to_string()),
        );
        m.insert("LATCHKEY_MAX_BODY_BYTES", json!(self.max_body_bytes));
        m.insert("LATCHKEY_DNS_RESOLVER", json!(self.dns_resolver.to_string()));
        m.insert("LATCHKEY_SAML_METADATA_ALLOW_PRIVATE", json!(self.saml_metadata_allow_private));
        m.insert(
            "LATCHKEY_SAML_METADATA_REFRESH",
            json!(humantime::format_duration(self.saml_metadata_refresh).to_string()),
        );
        self.upstream.redacted_into(&mut m);
        m
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl UpstreamSettings {
    fn redacted_into(&self, m: &mut BTreeMap<&'static str, serde_json::Value>) {
        use serde_json::{Value, json};
        let id =
            |c: &Option<UpstreamClient>| c.as_ref().map_or(Value::Null, |c| json!(c.client_id));
        let secret =
            |c: &Option<UpstreamClient>| c.as_ref().map_or(Value::Null, |_| json!("<redacted>"));
        m.insert("LATCHKEY_GOOGLE_CLIENT_ID", id(&self.google));
        m.insert("LATCHKEY_GOOGLE_CLIENT_SECRET", secret(&self.google));
        m.insert("LATCHKEY_MICROSOFT_CLIENT_ID", id(&self.microsoft));
        m.insert("LATCHKEY_MICROSOFT_CLIENT_SECRET", secret(&self.microsoft));
        m.insert("LATCHKEY_GOOGLE_ISSUER", json!(self.google_issuer));
        m.insert("LATCHKEY_MICROSOFT_AUTHORITY", json!(self.microsoft_authority));
        let d = |d: Duration| json!(humantime::format_duration(d).to_string());
        m.insert("LATCHKEY_EASIE_RECHECK_INTERVAL", d(self.easie_recheck_interval));
        m.insert("LATCHKEY_EASIE_UPSTREAM_GRACE", d(self.easie_upstream_grace));
    }
}

/// One provider's client: both the ID and the secret, or neither (the provider is off).
fn upstream_client(
    raw: &Raw,
    id_setting: &'static str,
    secret_setting: &'static str,
) -> Result<Option<UpstreamClient>, ConfigError> {
    match (raw.get(id_setting), raw.get(secret_setting)) {
        (None, None) => Ok(None),
        (Some((id, _)), Some((secret, _))) => Ok(Some(UpstreamClient {
            client_id: id.trim().to_owned(),
            client_secret: secret.trim().to_owned(),
        })),
        (Some((_, source)), None) => Err(ConfigError::from_source(
            secret_setting,
            source,
            format!("set together with {id_setting}"),
            "nothing".to_owned(),
        )),
        (None, Some((_, source))) => Err(ConfigError::from_source(
            id_setting,
            source,
            format!("set together with {secret_setting}"),
            "nothing".to_owned(),
        )),
    }
}

/// An upstream issuer or authority: https (http only on loopback, for tests and labs), no
/// query, fragment or credentials; kept without a trailing slash.
fn upstream_base_url(v: &str) -> Option<String> {
    let url = Url::parse(v).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    (scheme_ok && url.query().is_none() && url.fragment().is_none() && url.username().is_empty())
        .then(|| url.as_str().trim_end_matches('/').to_owned())
}

fn upstream(raw: &Raw) -> Result<UpstreamSettings, ConfigError> {
    let google =
        upstream_client(raw, "LATCHKEY_GOOGLE_CLIENT_ID", "LATCHKEY_GOOGLE_CLIENT_SECRET")?;
    let microsoft =
        upstream_client(raw, "LATCHKEY_MICROSOFT_CLIENT_ID", "LATCHKEY_MICROSOFT_CLIENT_SECRET")?;
    let expected = "an https URL without query or fragment (http only for a loopback host)";
    let google_issuer = parse(
        raw,
        "LATCHKEY_GOOGLE_ISSUER",
        latchkey_easie::provider::DEFAULT_GOOGLE_ISSUER,
        expected,
        upstream_base_url,
    )?;
    let microsoft_authority = parse(
        raw,
        "LATCHKEY_MICROSOFT_AUTHORITY",
        latchkey_easie::provider::DEFAULT_MICROSOFT_AUTHORITY,
        expected,
        |v| upstream_base_url(v).filter(|u| latchkey_easie::Authority::parse(u).is_ok()),
    )?;
    let easie_recheck_interval = duration(
        raw,
        "LATCHKEY_EASIE_RECHECK_INTERVAL",
        "10m",
        Duration::from_secs(60),
        Duration::from_secs(24 * 3600),
    )?;
    let easie_upstream_grace = duration(
        raw,
        "LATCHKEY_EASIE_UPSTREAM_GRACE",
        "1h",
        Duration::ZERO,
        Duration::from_secs(7 * 24 * 3600),
    )?;
    Ok(UpstreamSettings {
        google,
        microsoft,
        google_issuer,
        microsoft_authority,
        easie_recheck_interval,
        easie_upstream_grace,
    })
}

/// The listen address and the public URL (which defaults from it).
fn network(raw: &Raw) -> Result<(SocketAddr, String), ConfigError> {
    let listen = parse(
        raw,
        "LATCHKEY_LISTEN",
        "127.0.0.1:8080",
        "a socket address such as 127.0.0.1:8080",
        |v| v.parse::<SocketAddr>().ok(),
    )?;

    // Listening on all interfaces still needs a loopback default: plain http is only
    // accepted for loopback issuers.
    let default_public = if listen.ip().is_unspecified() {
        format!("http://localhost:{}", listen.port())
    } else {
        format!("http://{listen}")
    };
    let public_url = parse(
        raw,
        "LATCHKEY_PUBLIC_URL",
        &default_public,
        "an http(s) URL without query or fragment, https unless the host is loopback",
        |v| {
            let url = Url::parse(v).ok()?;
            let loopback = match url.host()? {
                url::Host::Domain(d) => d == "localhost",
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            };
            let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
            (scheme_ok
                && url.query().is_none()
                && url.fragment().is_none()
                && url.username().is_empty())
            .then(|| url.as_str().trim_end_matches('/').to_owned())
        },
    )?;
    Ok((listen, public_url))
}

/// Where the data lives: the data directory, the database, its durability and the master key.
fn storage(raw: &Raw) -> Result<(PathBuf, String, SqliteSync, MasterKeySource), ConfigError> {
    let data_dir =
        PathBuf::from(raw.get("LATCHKEY_DATA_DIR").map_or("./latchkey-data", |(v, _)| v));

    let default_db = format!("sqlite://{}?mode=rwc", data_dir.join("latchkey.db").display());
    let database_url =
        parse(raw, "LATCHKEY_DATABASE_URL", &default_db, "a sqlite:// or postgres:// URL", |v| {
            (v.starts_with("sqlite:")
                || v.starts_with("postgres://")
                || v.starts_with("postgresql://"))
            .then(|| v.to_owned())
        })?;

    let sqlite_synchronous = sqlite_synchronous(raw)?;

    let master_key = match (raw.get("LATCHKEY_MASTER_KEY"), raw.get("LATCHKEY_MASTER_KEY_FILE")) {
        (Some(_), Some((_, source))) => {
            return Err(ConfigError::from_source(
                "LATCHKEY_MASTER_KEY_FILE",
                source,
                "either LATCHKEY_MASTER_KEY or LATCHKEY_MASTER_KEY_FILE, not both",
                "both set",
            ));
        }
        (Some((v, _)), None) => MasterKeySource::Inline(v.to_owned()),
        (None, Some((v, _))) => MasterKeySource::File { path: PathBuf::from(v), generate: false },
        (None, None) => MasterKeySource::File { path: data_dir.join("master.key"), generate: true },
    };
    Ok((data_dir, database_url, sqlite_synchronous, master_key))
}

/// Outgoing mail: the SMTP server, its extra CA and the sender.
fn mail(raw: &Raw) -> Result<(Option<String>, Option<PathBuf>, String), ConfigError> {
    let smtp_url = match raw.get("LATCHKEY_SMTP_URL") {
        None => None,
        Some((v, source)) => {
            let v = v.trim();
            if let Err(expected) = check_smtp_url(v) {
                return Err(ConfigError::from_source(
                    "LATCHKEY_SMTP_URL",
                    source,
                    expected,
                    quote(&redact_url(v)),
                ));
            }
            Some(v.to_owned())
        }
    };
    let smtp_ca_file = match raw.get("LATCHKEY_SMTP_CA_FILE") {
        None => None,
        Some((v, source)) => {
            let path = PathBuf::from(v.trim());
            if let Err(got) = read_smtp_ca_file(&path) {
                return Err(ConfigError::from_source(
                    "LATCHKEY_SMTP_CA_FILE",
                    source,
                    "a readable PEM file with at least one CA certificate",
                    got,
                ));
            }
            Some(path)
        }
    };
    let mail_from = parse(
        raw,
        "LATCHKEY_MAIL_FROM",
        "Latchkey <noreply@localhost>",
        "a mailbox such as `Latchkey <noreply@example.com>` or `noreply@example.com`",
        |v| v.parse::<lettre::message::Mailbox>().ok().map(|_| v.to_owned()),
    )?;
    Ok((smtp_url, smtp_ca_file, mail_from))
}

/// Logging and the number of worker threads.
fn process(raw: &Raw) -> Result<(LogFormat, String, usize), ConfigError> {
    let log_format = parse(raw, "LATCHKEY_LOG_FORMAT", "text", "`text` or `json`", |v| match v {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    })?;
    let log_level = parse(
        raw,
        "LATCHKEY_LOG_LEVEL",
        "info",
        "a tracing filter such as `info` or `latchkey_web=debug,info`",
        |v| {
            (!v.trim().is_empty()
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "_=,:-.".contains(c)))
            .then(|| v.to_owned())
        },
    )?;
    let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    let workers = parse(
        raw,
        "LATCHKEY_WORKERS",
        &default_workers,
        "a number of worker threads between 1 and 256",
        |v| v.parse::<usize>().ok().filter(|n| (1..=256).contains(n)),
    )?;
    Ok((log_format, log_level, workers))
}

/// Session tokens and session lifetimes.
fn sessions(raw: &Raw) -> Result<(Duration, SigningAlg, Duration, Duration), ConfigError> {
    let session_token_ttl = duration(
        raw,
        "LATCHKEY_SESSION_TOKEN_TTL",
        "60s",
        Duration::from_secs(1),
        Duration::from_secs(3600),
    )?;
    let session_token_alg = parse(
        raw,
        "LATCHKEY_SESSION_TOKEN_ALG",
        "ES256",
        "one of ES256, RS256, EdDSA",
        SigningAlg::parse,
    )?;
    let session_idle_timeout = duration(
        raw,
        "LATCHKEY_SESSION_IDLE_TIMEOUT",
        "7d",
        Duration::from_secs(60),
        Duration::from_secs(400 * 86400),
    )?;
    let session_absolute_timeout = duration(
        raw,
        "LATCHKEY_SESSION_ABSOLUTE_TIMEOUT",
        "30d",
        Duration::from_secs(60),
        Duration::from_secs(400 * 86400),
    )?;
    if session_absolute_timeout < session_idle_timeout {
        let source = raw
            .get("LATCHKEY_SESSION_ABSOLUTE_TIMEOUT")
            .map_or(Source::Default, |(_, s)| s.clone());
        return Err(ConfigError::from_source(
            "LATCHKEY_SESSION_ABSOLUTE_TIMEOUT",
            &source,
            "a duration at least as long as LATCHKEY_SESSION_IDLE_TIMEOUT",
            humantime::format_duration(session_absolute_timeout).to_string(),
        ));
    }
    Ok((session_token_ttl, session_token_alg, session_idle_timeout, session_absolute_timeout))
}

/// Origins allowed to call the session API, and proxies trusted for the client address.
fn origins(raw: &Raw) -> Result<(Vec<String>, Vec<ipnet::IpNet>), ConfigError> {
    // An allowed origin is exactly scheme://host[:port]; a path would suggest a check we do not make.
    let bare_origin = |o: &str| {
        Url::parse(o)
            .ok()
            .filter(|u| {
                u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
            })
            .and_then(|_| normalize_origin(o))
    };
    let allowed_origins = match raw.get("LATCHKEY_ALLOWED_ORIGINS") {
        None => Vec::new(),
        Some((v, source)) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|o| {
                bare_origin(o).ok_or_else(|| {
                    ConfigError::from_source(
                        "LATCHKEY_ALLOWED_ORIGINS",
                        source,
                        "a comma-separated list of origins such as https://app.example.com",
                        quote(o),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let trusted_proxies = match raw.get("LATCHKEY_TRUSTED_PROXIES") {
        None => Vec::new(),
        Some((v, source)) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| {
                parse_ip_net(p).ok_or_else(|| {
                    ConfigError::from_source(
                        "LATCHKEY_TRUSTED_PROXIES",
                        source,
                        "a comma-separated list of addresses or CIDR ranges such as 10.0.0.0/8,2001:db8::1",
                        quote(p),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok((allowed_origins, trusted_proxies))
}

fn auth_policy(raw: &Raw) -> Result<AuthPolicy, ConfigError> {
    let d = AuthPolicy::default();
    let int = |setting: &str, default: u32, min: u32, max: u32| {
        parse(
            raw,
            setting,
            &default.to_string(),
            &format!("a whole number between {min} and {max}"),
            |v| v.parse::<u32>().ok().filter(|n| (min..=max).contains(n)),
        )
    };
    Ok(AuthPolicy {
        max_failures: int("LATCHKEY_SIGN_IN_MAX_FAILURES", d.max_failures, 1, 1000)?,
        lockout: duration(
            raw,
            "LATCHKEY_SIGN_IN_LOCKOUT",
            "15m",
            Duration::from_secs(1),
            Duration::from_secs(86400),
        )?,
        ip_max_failures: int("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", d.ip_max_failures, 1, 1_000_000)?,
        api_key_rate_limit: int("LATCHKEY_API_KEY_RATE_LIMIT", d.api_key_rate_limit, 1, 1_000_000)?,
        password_min_score: u8::try_from(int("LATCHKEY_PASSWORD_MIN_SCORE", 3, 0, 4)?).unwrap_or(4),
        argon2_memory_kib: int(
            "LATCHKEY_ARGON2_MEMORY_KIB",
            d.argon2_memory_kib,
            8 * 1024,
            4 * 1024 * 1024,
        )?,
        argon2_iterations: int("LATCHKEY_ARGON2_ITERATIONS", d.argon2_iterations, 1, 64)?,
        argon2_parallelism: int("LATCHKEY_ARGON2_PARALLELISM", d.argon2_parallelism, 1, 64)?,
    })
}

fn sqlite_synchronous(raw: &Raw) -> Result<SqliteSync, ConfigError> {
    let expected = "`normal` or `full`";
    parse(raw, "LATCHKEY_SQLITE_SYNCHRONOUS", "normal", expected, |v| {
        match v.to_ascii_lowercase().as_str() {
            "normal" => Some(SqliteSync::Normal),
            "full" => Some(SqliteSync::Full),
            _ => None,
        }
    })
}

fn quote(v: &str) -> String {
    let shown: String = v.chars().take(80).collect();
    format!("{shown:?}")
}

fn parse<T>(
    raw: &Raw,
    setting: &str,
    default: &str,
    expected: &str,
    f: impl Fn(&str) -> Option<T>,
) -> Result<T, ConfigError> {
    let (value, source) = raw.get(setting).map_or((default, &Source::Default), |(v, s)| (v, s));
    f(value.trim()).ok_or_else(|| ConfigError::from_source(setting, source, expected, quote(value)))
}

fn duration(
    raw: &Raw,
    setting: &str,
    default: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let expected = format!(
        "a duration such as `90s`, `15m` or `7d` between {} and {}",
        humantime::format_duration(min),
        humantime::format_duration(max)
    );
    parse(raw, setting, default, &expected, |v| {
        humantime::parse_duration(v).ok().filter(|d| *d >= min && *d <= max)
    })
}

/// `system`, or nameservers as `ip:port` (a bare IP means port 53).
fn parse_dns_resolver(v: &str) -> Option<DnsResolver> {
    if v.eq_ignore_ascii_case("system") {
        return Some(DnsResolver::System);
    }
    let servers = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
        })
        .collect::<Option<Vec<_>>>()?;
    (!servers.is_empty() && servers.iter().all(|s| s.port() != 0))
        .then_some(DnsResolver::Servers(servers))
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased, default ports dropped.
pub fn normalize_origin(value: &str) -> Option<String> {
    let url = Url::parse(value).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

/// Accepts lettre's connection URLs, but refuses to send codes or a password in clear text
/// across a network: plain SMTP (no `tls` parameter) only to a loopback host, and credentials
/// only with TLS (`smtps://` or `?tls=required`) unless the host is loopback.
fn check_smtp_url(value: &str) -> Result<(), &'static str> {
    const EXPECTED: &str = "an smtp:// or smtps:// URL with a host (smtps:// for TLS, \
        smtp://…?tls=required for STARTTLS, plain smtp:// only to a loopback host)";
    let url = Url::parse(value).map_err(|_| EXPECTED)?;
    // smtp is not a "special" scheme to the url crate, so an IPv4 host arrives as a domain.
    let loopback = match url.host().ok_or(EXPECTED)? {
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let credentials = !url.username().is_empty() || url.password().is_some();
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None) | ("smtp", Some("required")) => Ok(()),
        ("smtp", None) if loopback => Ok(()),
        ("smtp", None) => Err("smtps:// or smtp://…?tls=required (STARTTLS): plain SMTP is \
            accepted only to a loopback host"),
        ("smtp", Some("opportunistic")) if loopback || !credentials => Ok(()),
        ("smtp", Some("opportunistic")) => Err("smtps:// or smtp://…?tls=required when the URL \
            carries credentials: ?tls=opportunistic may send them in clear text"),
        ("smtp", Some(_)) => Err("an smtp:// URL whose tls parameter is `required` or \
            `opportunistic`"),
        ("smtps", Some(_)) => Err("an smtps:// URL without a tls parameter (smtps is always TLS)"),
        _ => Err(EXPECTED),
    }
}

/// Reads `LATCHKEY_SMTP_CA_FILE`: every `CERTIFICATE` block of the PEM file, each of which must
/// parse as a trust anchor; at least one is required. The error is for humans (path included).
pub(crate) fn read_smtp_ca_file(
    path: &Path,
) -> Result<lettre::transport::smtp::client::Certificate, String> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    // lettre skips blocks that are not certificates, so an empty or key-only file would add nothing.
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(format!("{shown}: no PEM `CERTIFICATE` block"));
    }
    let cert = Certificate::from_pem(&pem).map_err(|e| format!("{shown}: {e}"))?;
    // Building a TLS configuration parses each certificate into a trust anchor.
    TlsParameters::builder("localhost".to_owned())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(cert.clone())
        .build()
        .map_err(|e| format!("{shown}: {e}"))?;
    Ok(cert)
}

pub(crate) fn redact_url(value: &str) -> String {
    match Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("<redacted>"));
            // Shown as documented, not percent-encoded.
            url.to_string().replacen("%3Credacted%3E", "<redacted>", 1)
        }
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load(None, &env)
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert!(s.is_sqlite());
        assert!(s.database_url.contains("latchkey-data"));
        assert_eq!(s.session_token_ttl, Duration::from_secs(60));
        assert_eq!(s.session_token_alg, SigningAlg::ES256);
        assert!(!s.secure_cookies());
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn sqlite_synchronous_is_normal_or_full() {
        let s = load(&[]).unwrap();
        assert_eq!(s.sqlite_synchronous, SqliteSync::Normal);
        assert_eq!(s.redacted()["LATCHKEY_SQLITE_SYNCHRONOUS"], "normal");
        let s = load(&[("LATCHKEY_SQLITE_SYNCHRONOUS", "FULL")]).unwrap();
        assert_eq!(s.sqlite_synchronous, SqliteSync::Full);
        assert_eq!(s.sqlite_synchronous.pragma(), "FULL");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // Accepted on PostgreSQL, with a warning that it does nothing there.
        let s = load(&[
            ("LATCHKEY_SQLITE_SYNCHRONOUS", "full"),
            ("LATCHKEY_DATABASE_URL", "postgres://db/latchkey"),
        ])
        .unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("LATCHKEY_SQLITE_SYNCHRONOUS")),
            "{:?}",
            s.warnings
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, "sqlite_synchronous = \"sometimes\"\n").unwrap();
        let err = Settings::load(Some(&path), &HashMap::new()).unwrap_err();
        assert_eq!(err.setting, "LATCHKEY_SQLITE_SYNCHRONOUS");
        assert!(err.to_string().contains("sqlite_synchronous"), "{err}");
    }

    #[test]
    fn listening_everywhere_defaults_to_a_loopback_issuer() {
        let s = load(&[("LATCHKEY_LISTEN", "0.0.0.0:9000")]).unwrap();
        assert_eq!(s.public_url, "http://localhost:9000");
    }

    #[test]
    fn unknown_variables_warn_and_empty_ones_count_as_unset() {
        let s =
            load(&[("LATCHKEY_LISTNE", "x"), ("LATCHKEY_CONFIG", "x"), ("LATCHKEY_LISTEN", "")])
                .unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("LATCHKEY_LISTNE"));
        assert_eq!(s.listen.port(), 8080);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let s = load(&[("LATCHKEY_TRUSTED_PROXIES", " 10.1.2.3/8, 192.0.2.7 ,2001:db8::/32,")])
            .unwrap();
        let list: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(list, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert!(load(&[]).unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn each_bad_value_names_its_setting() {
        for (name, value) in [
            ("LATCHKEY_LISTEN", "not-an-address"),
            ("LATCHKEY_PUBLIC_URL", "http://example.com"),
            ("LATCHKEY_PUBLIC_URL", "https://example.com/?q=1"),
            ("LATCHKEY_DATABASE_URL", "mysql://x"),
            ("LATCHKEY_SQLITE_SYNCHRONOUS", "off"),
            ("LATCHKEY_SQLITE_SYNCHRONOUS", "extra"),
            ("LATCHKEY_SMTP_URL", "http://mail"),
            ("LATCHKEY_SMTP_URL", "smtp://mail.example.com"),
            ("LATCHKEY_SMTP_URL", "smtp://mail.example.com?tls=sometimes"),
            ("LATCHKEY_SMTP_URL", "smtp://u:p@mail.example.com?tls=opportunistic"),
            ("LATCHKEY_SMTP_URL", "smtps://mail.example.com?tls=required"),
            ("LATCHKEY_MAIL_FROM", "not a mailbox"),
            ("LATCHKEY_MAIL_FROM", "Latchkey <noreply>"),
            ("LATCHKEY_LOG_FORMAT", "xml"),
            ("LATCHKEY_WORKERS", "0"),
            ("LATCHKEY_SESSION_TOKEN_TTL", "forever"),
            ("LATCHKEY_SESSION_TOKEN_TTL", "2h"),
            ("LATCHKEY_SESSION_TOKEN_ALG", "HS256"),
            ("LATCHKEY_ALLOWED_ORIGINS", "ftp://x"),
            ("LATCHKEY_ALLOWED_ORIGINS", "https://app.example.com/path"),
            ("LATCHKEY_MAX_BODY_BYTES", "12"),
            ("LATCHKEY_DNS_RESOLVER", "dns.google"),
            ("LATCHKEY_DNS_RESOLVER", "127.0.0.1:53,nope"),
            ("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("LATCHKEY_TRUSTED_PROXIES", "10.0.0.1,proxy.example.com"),
        ] {
            let err =
                load(&[(name, value)]).err().unwrap_or_else(|| panic!("{name}={value} accepted"));
            assert_eq!(err.setting, name, "{err}");
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().contains("from the environment"), "{err}");
        }
    }

    #[test]
    fn env_wins_over_file_and_unknown_file_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nsession_token_ttl = \"30s\"\nallowed_origins = [\"https://app.example.com\"]\n").unwrap();
        let env = HashMap::from([("LATCHKEY_LISTEN".to_string(), "127.0.0.1:9001".to_string())]);
        let s = Settings::load(Some(&path), &env).unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert_eq!(s.session_token_ttl, Duration::from_secs(30));
        assert_eq!(s.allowed_origins, vec!["https://app.example.com"]);

        std::fs::write(&path, "session_token_ttl = \"soon\"\n").unwrap();
        let err = Settings::load(Some(&path), &HashMap::new()).unwrap_err();
        assert_eq!(err.setting, "LATCHKEY_SESSION_TOKEN_TTL");
        assert!(err.to_string().contains("session_token_ttl"), "{err}");

        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Settings::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn toml_syntax_errors_give_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n# a comment\nlog_level = \"info\n")
            .unwrap();
        let err = Settings::load(Some(&path), &HashMap::new()).unwrap_err().to_string();
        let at = format!("{}:3:", path.display());
        assert!(err.contains(&at), "no line in {err}");
        assert!(err.contains("valid TOML"), "{err}");
        std::fs::write(&path, "listen = = 1\n").unwrap();
        let err = Settings::load(Some(&path), &HashMap::new()).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:1:10: ", path.display())), "{err}");
    }

    #[test]
    fn mail_settings_accept_lettre_urls_and_mailboxes() {
        let s = load(&[]).unwrap();
        assert_eq!(s.smtp_url, None);
        assert_eq!(s.mail_from, "Latchkey <noreply@localhost>");
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pw@localhost:25",
            "smtp://[::1]:25",
            "smtp://mail.example.com:587?tls=required",
            "smtp://user:pw@mail.example.com?tls=required",
            "smtp://relay.internal?tls=opportunistic",
            "smtps://user:pw@mail.example.com:465",
            "smtps://mail.example.com/client.example.com",
        ] {
            let s = load(&[("LATCHKEY_SMTP_URL", url)]).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(s.smtp_url.as_deref(), Some(url));
        }
        for from in ["noreply@example.com", "\"Example, Inc.\" <noreply@example.com>"] {
            let s = load(&[("LATCHKEY_MAIL_FROM", from)]).unwrap();
            assert_eq!(s.mail_from, from);
        }
        // The refusal shows the URL without its password.
        let err = load(&[("LATCHKEY_SMTP_URL", "smtp://u:hunter2@mail.example.com")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn smtp_ca_file_must_hold_a_certificate() {
        assert_eq!(load(&[]).unwrap().smtp_ca_file, None);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-nodes", "-keyout"])
            .arg(dir.path().join("ca.key"))
            .arg("-out")
            .arg(&ca)
            .args(["-days", "1", "-subj", "/CN=Test CA"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shown = ca.display().to_string();
        let url = "smtps://mailer:pw@mail.example.com";
        let s = load(&[("LATCHKEY_SMTP_URL", url), ("LATCHKEY_SMTP_CA_FILE", &shown)]).unwrap();
        assert_eq!(s.smtp_ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(s.redacted()["LATCHKEY_SMTP_CA_FILE"], shown.as_str());
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // Set without a TLS URL: accepted, with a warning that it is unused.
        let s = load(&[("LATCHKEY_SMTP_CA_FILE", &shown)]).unwrap();
        assert!(s.warnings.iter().any(|w| w.contains("LATCHKEY_SMTP_CA_FILE")), "{:?}", s.warnings);

        let key_only = dir.path().join("ca.key").display().to_string();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap();
        let garbage = garbage.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        for bad in [&key_only, &garbage, &missing] {
            let err = load(&[("LATCHKEY_SMTP_URL", url), ("LATCHKEY_SMTP_CA_FILE", bad)])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.setting, "LATCHKEY_SMTP_CA_FILE", "{err}");
            assert!(err.to_string().contains(bad.as_str()), "{err}");
        }
    }

    #[test]
    fn dns_resolver_is_system_or_a_list_of_nameservers() {
        assert_eq!(load(&[]).unwrap().dns_resolver, DnsResolver::System);
        let s = load(&[("LATCHKEY_DNS_RESOLVER", "127.0.0.1:5353, [::1]:53 ,192.0.2.1")]).unwrap();
        assert_eq!(
            s.dns_resolver,
            DnsResolver::Servers(vec![
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap(),
                "192.0.2.1:53".parse().unwrap(),
            ])
        );
        assert_eq!(s.redacted()["LATCHKEY_DNS_RESOLVER"], "127.0.0.1:5353,[::1]:53,192.0.2.1:53");
        assert_eq!(
            load(&[("LATCHKEY_DNS_RESOLVER", "SYSTEM")]).unwrap().redacted()["LATCHKEY_DNS_RESOLVER"],
            "system"
        );
        assert!(load(&[("LATCHKEY_DNS_RESOLVER", "127.0.0.1:0")]).is_err());
        assert!(load(&[("LATCHKEY_DNS_RESOLVER", ",")]).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = load(&[
            ("LATCHKEY_MASTER_KEY", "c2VjcmV0"),
            ("LATCHKEY_DATABASE_URL", "postgres://u:hunter2@db/latchkey"),
            ("LATCHKEY_SMTP_URL", "smtps://mailer:swordfish@mail.example.com"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("swordfish") && shown.contains("mailer"), "{shown}");
        assert!(load(&[("LATCHKEY_MASTER_KEY", "a"), ("LATCHKEY_MASTER_KEY_FILE", "/k")]).is_err());
    }
}
