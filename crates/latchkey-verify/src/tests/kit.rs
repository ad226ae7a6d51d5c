//! Test keys, token signing and a one-route HTTP server for key sets.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ISSUER: &str = "https://id.example.com";
pub const APP: &str = "https://app.example.com";
pub const API: &str = "https://api.example.com";
pub const NOW: i64 = 1_800_000_000;

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub enum Pair {
    Es(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pub pair: Pair,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        Self { kid: kid.into(), alg: "ES256", pair: Pair::Es(pair) }
    }

    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self { kid: kid.into(), alg: "EdDSA", pair: Pair::Ed(pair) }
    }

    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.pair {
            Pair::Es(p) => p.public_key().as_ref().to_vec(),
            Pair::Ed(p) => p.public_key().as_ref().to_vec(),
        }
    }

    pub fn jwk(&self) -> Value {
        let public = self.public_bytes();
        match &self.pair {
            Pair::Es(_) => json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "alg": "ES256", "use": "sig",
                "x": b64(&public[1..33]), "y": b64(&public[33..65])
            }),
            Pair::Ed(_) => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "alg": "EdDSA", "use": "sig",
                "x": b64(&public)
            }),
        }
    }

    pub fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Es(p) => p.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec(),
            Pair::Ed(p) => p.sign(message).as_ref().to_vec(),
        }
    }

    /// A compact JWS of `claims` with the given header.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign_raw(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.alg, "kid": self.kid, "typ": typ}), claims)
    }
}

pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// Claims of a session token minted at `NOW` for [`APP`].
pub fn session_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "usr_1", "sid": "ses_1", "iat": NOW, "nbf": NOW,
        "exp": NOW + 60, "azp": APP, "org_id": "org_1", "org_role": "admin", "org_slug": "acme"
    })
}

/// Claims of an RFC 9068 access token for [`API`].
pub fn access_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "usr_1", "aud": API, "client_id": "cli_1", "iat": NOW,
        "exp": NOW + 300, "jti": "j1", "scope": "openid read"
    })
}

/// What the test server answers.
#[derive(Clone)]
pub enum Answer {
    Json(String),
    Status(u16),
}

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with the current [`Answer`] and
/// counts requests.
#[derive(Clone)]
pub struct KeyServer {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

impl KeyServer {
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = Self { url, answer: Arc::new(Mutex::new(answer)), hits: Default::default() };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else { return };
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    let answer = s.answer.lock().unwrap().clone();
                    let (status, body) = match answer {
                        Answer::Json(b) => (200, b),
                        Answer::Status(code) => (code, String::new()),
                    };
                    let res = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(res.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        server
    }

    pub fn serve(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn serve_keys(&self, keys: &[&TestKey]) {
        self.serve(Answer::Json(jwks(keys).to_string()));
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
