//! Log output on stderr: text, coloured only when stderr is a terminal, or one JSON object per
//! line (`LATCHKEY_LOG_FORMAT=json`) for log shippers.
//!
//! ERROR is kept for our own faults. actix-http answers malformed requests itself (400 before
//! any handler or middleware of ours runs) and logs each one at ERROR, so anyone could fill the
//! error log: those events are dropped and recorded again at debug (see [`ClientFaults`]).

use std::io::IsTerminal;

use latchkey_core::{Settings, infra::config::LogFormat};
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer, fmt, layer::Context, layer::SubscriberExt, util::SubscriberInitExt,
};

pub fn init(settings: &Settings, serving: bool) {
    // CLI commands keep stdout for their output and log only problems.
    let level = if serving { settings.log_level.clone() } else { "warn".to_owned() };
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let output = fmt::layer().with_writer(std::io::stderr);
    let output = match settings.log_format {
        LogFormat::Json => output.json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => output.with_ansi(colours_wanted()).boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(ClientFaults).with(output).try_init();
}

/// Colour codes only for a person at a terminal: a file, a pipe or the journal gets plain text.
/// `NO_COLOR` (https://no-color.org) turns them off everywhere.
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Drops actix-http's ERROR events about requests or connections the client got wrong, and
/// logs them again at debug under `latchkey::http`.
struct ClientFaults;

impl<S: Subscriber> Layer<S> for ClientFaults {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || !meta.target().starts_with("actix_http::") {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if !is_client_fault(&message.0) {
            return true;
        }
        tracing::debug!(target: "latchkey::http", error = %message.0, "malformed request or dropped connection");
        false
    }
}

/// What actix-http says about a bad request or a client that went away (its `DispatchError`
/// and decoder messages). A failure of our own response body ("body error") is not one.
fn is_client_fault(message: &str) -> bool {
    const CLIENT: [&str; 7] = [
        "stream error: request parse error",
        "stream error: I/O error",
        "stream error: request did not complete within the specified timeout",
        "stream error: connection shutdown timeout",
        "stream error: handler dropped payload before reading EOF",
        "MAX_BUFFER_SIZE unprocessed data reached",
        "write zero; closing",
    ];
    CLIENT.iter().any(|prefix| message.starts_with(prefix))
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_client_fault;

    #[test]
    fn client_mistakes_are_told_apart_from_our_faults() {
        for client in [
            "stream error: request parse error: invalid Header provided",
            "stream error: request parse error: invalid HTTP version specified",
            "stream error: I/O error: Connection reset by peer (os error 104)",
            "stream error: request did not complete within the specified timeout",
            "MAX_BUFFER_SIZE unprocessed data reached, closing",
        ] {
            assert!(is_client_fault(client), "{client}");
        }
        for ours in [
            "stream error: body error: database went away",
            "stream error: internal error",
            "Response payload stream error: boom",
            "Initialization of HTTP service error: ()",
        ] {
            assert!(!is_client_fault(ours), "{ours}");
        }
    }
}
