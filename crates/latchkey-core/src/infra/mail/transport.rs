//! Where a built message goes: an SMTP server (lettre, pooled connections), or — when no
//! `LATCHKEY_SMTP_URL` is configured — a `.eml` file under the data dir, so a new installation
//! can finish sign-up without a mail server.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    transport::smtp::{
        AsyncSmtpTransportBuilder,
        client::{Tls, TlsParameters},
    },
};

use crate::{Error, Result, Settings};

/// Per SMTP command: a dead server fails the attempt in bounded time (the job's lease is
/// renewed meanwhile, so a slow server does not get the mail sent twice).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) enum Transport {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, server: String },
    Directory(PathBuf),
}

impl Transport {
    pub(super) fn from_settings(settings: &Settings) -> Result<Self> {
        let Some(url) = &settings.smtp_url else {
            return Ok(Self::Directory(settings.data_dir.join("mail")));
        };
        // lettre's URL syntax: smtp:// plain, smtp://…?tls=required STARTTLS, smtps:// TLS,
        // user:password@ for AUTH. The settings have already refused clear text off loopback.
        let url_error = |e: String| {
            crate::infra::config::ConfigError::new(
                "LATCHKEY_SMTP_URL",
                "an SMTP URL lettre accepts",
                e,
            )
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| url_error(e.to_string()))?
            .timeout(Some(SMTP_TIMEOUT));
        let parsed = url::Url::parse(url).map_err(|e| url_error(e.to_string()))?;
        if let Some(ca_file) = &settings.smtp_ca_file {
            builder = with_extra_roots(builder, &parsed, ca_file)?;
        }
        let transport = builder.build();
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let server =
            format!("{}://{}{port}", parsed.scheme(), parsed.host_str().unwrap_or_default());
        Ok(Self::Smtp { transport, server })
    }

    /// A line for the start-up log (no credentials).
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Smtp { server, .. } => format!("sending mail through {server}"),
            Self::Directory(dir) => format!(
                "no LATCHKEY_SMTP_URL configured: writing mail as .eml files to {}",
                dir.display()
            ),
        }
    }

    /// Delivers one message; the error text is what the outbox row records.
    pub(super) async fn send(&self, id: &str, message: &Message) -> Result<(), String> {
        match self {
            Self::Smtp { transport, .. } => {
                transport.send(message.clone()).await.map(drop).map_err(|e| e.to_string())
            }
            Self::Directory(dir) => {
                let path = dir.join(format!("{id}.eml"));
                let bytes = message.formatted();
                let target = path.clone();
                tokio::task::spawn_blocking(move || write_eml(&target, &bytes))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                tracing::info!(
                    mail_id = id,
                    "mail written to {} (no LATCHKEY_SMTP_URL configured)",
                    path.display()
                );
                Ok(())
            }
        }
    }
}

/// Replaces the TLS parameters lettre derived from the URL with ones that also trust the CA
/// certificates of `LATCHKEY_SMTP_CA_FILE` (on top of the built-in webpki roots), keeping the
/// URL's mode: `smtps://` implicit TLS, `?tls=required` or `?tls=opportunistic` STARTTLS. The
/// server's certificate and host name are still verified. A plain `smtp://` URL uses no TLS, so
/// the file changes nothing there.
fn with_extra_roots(
    builder: AsyncSmtpTransportBuilder,
    url: &url::Url,
    ca_file: &Path,
) -> Result<AsyncSmtpTransportBuilder> {
    let ca_error = |got: String| {
        crate::infra::config::ConfigError::new(
            "LATCHKEY_SMTP_CA_FILE",
            "a readable PEM file with at least one CA certificate",
            got,
        )
    };
    let tls_param = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let wrap: fn(TlsParameters) -> Tls = match (url.scheme(), tls_param.as_deref()) {
        ("smtps", _) => Tls::Wrapper,
        (_, Some("required")) => Tls::Required,
        (_, Some("opportunistic")) => Tls::Opportunistic,
        _ => return Ok(builder),
    };
    let cert = crate::infra::config::read_smtp_ca_file(ca_file).map_err(ca_error)?;
    // The same name lettre checks the certificate against when it builds from the URL.
    let domain = url.host_str().unwrap_or_default().to_owned();
    let params = TlsParameters::builder(domain)
        .add_root_certificate(cert)
        .build()
        .map_err(|e| ca_error(format!("{}: {e}", ca_file.display())))?;
    Ok(builder.tls(wrap(params)))
}

/// Owner-only, and via rename so a reader never sees half a file (a retry replaces it).
fn write_eml(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |source| Error::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        crate::infra::crypto::create_private_dir(dir)?;
    }
    let tmp = path.with_extension("eml.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    file.write_all(bytes).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}
