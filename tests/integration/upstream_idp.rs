//! The Google / Microsoft stand-in (tests/upstream-idp, oidc-provider from npm) as a test
//! fixture: started per test on a free port, stopped when dropped (its stdin is a pipe that
//! closes, and the child is killed on drop). Latchkey talks to it through the production code
//! path, with only `LATCHKEY_GOOGLE_ISSUER` / `LATCHKEY_MICROSOFT_AUTHORITY` pointing here.

use std::{path::PathBuf, process::Stdio};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
};

pub const GOOGLE_CLIENT: (&str, &str) = ("google-client", "google-secret");
pub const MICROSOFT_CLIENT: (&str, &str) = ("ms-client", "ms-secret");

pub struct UpstreamIdp {
    pub google_issuer: String,
    pub microsoft_authority: String,
    pub admin: String,
    http: reqwest::Client,
    _child: Child,
    _stdin: ChildStdin,
    _config: tempfile::NamedTempFile,
}

impl UpstreamIdp {
    /// Starts the emulator with `config` (its README's format; users, tenants, clients).
    pub async fn start(config: Value) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/upstream-idp");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), config.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(root.join("server.mjs"))
            .args(["--port", "0", "--config"])
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node tests/upstream-idp/server.mjs (npm ci in tests/upstream-idp)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).await.unwrap();
        let ready: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let status = child.try_wait();
                panic!("the emulator's ready line {line:?} ({e}); the emulator: {status:?}")
            }
        };
        let s = |k: &str| ready[k].as_str().unwrap().to_owned();
        Self {
            google_issuer: s("google_issuer"),
            microsoft_authority: s("microsoft_authority"),
            admin: s("admin"),
            http: reqwest::Client::new(),
            _child: child,
            _stdin: stdin,
            _config: file,
        }
    }

    /// Latchkey settings that point both providers here, with the standard test clients.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LATCHKEY_GOOGLE_CLIENT_ID", GOOGLE_CLIENT.0.into()),
            ("LATCHKEY_GOOGLE_CLIENT_SECRET", GOOGLE_CLIENT.1.into()),
            ("LATCHKEY_MICROSOFT_CLIENT_ID", MICROSOFT_CLIENT.0.into()),
            ("LATCHKEY_MICROSOFT_CLIENT_SECRET", MICROSOFT_CLIENT.1.into()),
            ("LATCHKEY_GOOGLE_ISSUER", self.google_issuer.clone()),
            ("LATCHKEY_MICROSOFT_AUTHORITY", self.microsoft_authority.clone()),
        ]
    }

    /// Registers the standard clients with the redirect URIs of a Latchkey at `base_url`.
    pub async fn register_clients(&self, base_url: &str) {
        for (family, (id, secret)) in [("google", GOOGLE_CLIENT), ("microsoft", MICROSOFT_CLIENT)] {
            let client = json!({
                "client_id": id, "client_secret": secret,
                "redirect_uris": [format!("{base_url}/oauth/callback/{family}")],
            });
            self.admin(&format!("/{family}/clients"), client).await;
        }
    }

    /// POSTs to the admin API (`path` below `/admin`) and returns the JSON answer.
    pub async fn admin(&self, path: &str, body: Value) -> Value {
        let res = self.http.post(format!("{}{path}", self.admin)).json(&body).send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "admin {path}: {status} {body}");
        body
    }

    /// DELETEs an admin resource (an outage).
    pub async fn admin_delete(&self, path: &str) {
        let res = self.http.delete(format!("{}{path}", self.admin)).send().await.unwrap();
        assert!(res.status().is_success(), "admin DELETE {path}: {}", res.status());
    }
}

#[tokio::test]
async fn the_emulator_serves_discovery_at_the_issuers_it_announces() {
    let idp = UpstreamIdp::start(json!({})).await;
    let get = |url: String| async move {
        reqwest::get(url).await.unwrap().json::<Value>().await.unwrap()
    };
    let google = get(format!("{}/.well-known/openid-configuration", idp.google_issuer)).await;
    assert_eq!(google["issuer"], idp.google_issuer.as_str());
    let common =
        get(format!("{}/common/v2.0/.well-known/openid-configuration", idp.microsoft_authority))
            .await;
    assert_eq!(common["issuer"], format!("{}/{{tenantid}}/v2.0", idp.microsoft_authority));
}
