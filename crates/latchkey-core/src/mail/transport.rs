//! Where a built message goes: an SMTP server (lettre, pooled connections), or — when no
//! `LATCHKEY_SMTP_URL` is configured — a `.eml` file under the data dir, so a new installation
//! can finish sign-up without a mail server.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{Error, Result, Settings};

/// Per SMTP command; a dead server must fail the attempt well inside the claim lease.
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
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                crate::config::ConfigError::new(
                    "LATCHKEY_SMTP_URL",
                    "an SMTP URL lettre accepts",
                    e.to_string(),
                )
            })?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let server = url::Url::parse(url)
            .map(|u| {
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or_default())
            })
            .unwrap_or_default();
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

/// Owner-only, and via rename so a reader never sees half a file (a retry replaces it).
fn write_eml(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |source| Error::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        crate::crypto::create_private_dir(dir)?;
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
