//! Every route: clean 4xx on malformed input, security headers, request IDs, health and metrics.

use latchkey_core::infra::audit::Actor;
use reqwest::Method;

use crate::support::{Backend, TestDb, TestServer, client, data_dir};

/// (method, path, headers, body)
type Case<'a> = (Method, &'a str, Vec<(&'a str, String)>, Option<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_a_clean_4xx_and_never_a_panic() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_MAX_BODY_BYTES", "4096")]).await;
    let ada = node.user("ada@example.com").await;
    let (_, secret) = node.session(&ada).await;
    let good_cookie = format!("latchkey_session={secret}");
    let origin = node.base_url.clone();

    let huge = "x".repeat(64 * 1024);
    let long_cookie = format!("latchkey_session={}", "A".repeat(6000));
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", origin.clone()), ("Cookie", "latchkey_session=%%%".into())],
            None,
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", origin.clone()), ("Cookie", long_cookie)],
            None,
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", origin.clone()), ("Cookie", "latchkey_session=a\"b\\c".into())],
            None,
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", origin.clone()), ("Cookie", "=;;;=;latchkey_session".into())],
            None,
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![
                ("Origin", origin.clone()),
                ("Cookie", good_cookie.clone()),
                ("Content-Type", "application/json".into()),
            ],
            Some(huge.clone()),
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", origin.clone()), ("Content-Type", "application/json".into())],
            Some("{not json".into()),
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", "http://[::1".into()), ("Cookie", good_cookie.clone())],
            None,
        ),
        (
            Method::POST,
            "/v1/session/token",
            vec![("Origin", "javascript:alert(1)".into()), ("Cookie", good_cookie.clone())],
            None,
        ),
        (Method::POST, "/v1/session/token?x=%ff%fe", vec![("Cookie", good_cookie.clone())], None),
        (Method::GET, "/v1/session/token", vec![("Cookie", good_cookie.clone())], None),
        (Method::PUT, "/v1/session/token", vec![("Origin", origin.clone())], Some("{}".into())),
        (Method::DELETE, "/v1/session/token", vec![], None),
        (Method::POST, "/.well-known/jwks.json", vec![], Some(huge.clone())),
        (Method::DELETE, "/healthz", vec![], None),
        (Method::POST, "/readyz", vec![], Some("x".into())),
        (Method::PATCH, "/metrics", vec![], None),
        (Method::GET, "/%ff%fe/../../etc/passwd", vec![], None),
        (Method::GET, "/v1/session/token/../../../etc/passwd", vec![], None),
        (Method::GET, "/v1/nope", vec![], None),
        (Method::GET, "/.well-known/openid-configuration%00", vec![], None),
    ];
    for (method, path, headers, body) in cases {
        let mut req = client().request(method.clone(), node.url(path));
        for (k, v) in &headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        assert!((400..500).contains(&status), "{method} {path} {headers:?} -> {status}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{method} {path}");
    }

    // Raw bytes that a well-behaved client would never send.
    for raw in [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: \xff\xfe\r\n\r\n".as_slice(),
        b"POST /v1/session/token HTTP/1.1\r\nHost: x\r\nX-Latchkey-CSRF: 1\r\nCookie: latchkey_session=a\x7f\xffb\r\n\r\n".as_slice(),
        b"POST /v1/session/token HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".as_slice(),
        b"POST /v1/session/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".as_slice(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello to a plain port".as_slice(),
    ] {
        let status = raw_request(&node.base_url, raw).await;
        // Opaque header bytes are legal HTTP (obs-text), so /healthz may still answer 200;
        // what matters is no 5xx and no crash.
        assert!(status.is_none() || status.is_some_and(|s| s < 500), "{:?} -> {status:?}", String::from_utf8_lossy(raw));
    }

    // Still serving, still correct.
    assert_eq!(client().get(node.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(node.token_request(&secret).await.status(), 200);
    node.stop().await;
}

/// Sends raw bytes, returns the status code if an HTTP response came back.
async fn raw_request(base_url: &str, bytes: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(bytes).await.ok()?;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_security_headers_and_request_ids() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    for path in ["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json", "/no-such-page"] {
        let res = client().get(node.url(path)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(h["x-request-id"].len(), 26, "{path}");
    }
    let res = client()
        .get(node.url("/healthz"))
        .header("X-Request-Id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-123");
    let res = client()
        .get(node.url("/healthz"))
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id with spaces");

    let res = client().get(node.url("/no-such-page")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    assert_eq!(client().get(node.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(client().get(node.url("/readyz")).send().await.unwrap().status(), 200);

    let ada = node.user("ada@example.com").await;
    let (sid, secret) = node.session(&ada).await;
    node.token(&secret).await;
    node.token(&secret).await;
    node.core.sessions.revoke(&sid, "test", &Actor::cli()).await.unwrap();
    assert_eq!(node.token_request(&secret).await.status(), 401);

    // A made-up method must not create series of its own.
    let odd = reqwest::Method::from_bytes(b"BREW").unwrap();
    client().request(odd, node.url("/healthz")).send().await.unwrap();
    let res = client().get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains("BREW"), "{text}");
    assert!(text.contains("method=\"OTHER\",route=\"/healthz\""), "{text}");
    assert!(text.contains("latchkey_session_tokens_minted_total{alg=\"ES256\"} 2"), "{text}");
    assert!(text.contains("latchkey_sessions_revoked_total 1"), "{text}");
    assert!(text.contains("latchkey_session_token_rejections_total 1"), "{text}");
    assert!(text.contains("latchkey_http_requests_total{method=\"POST\",route=\"/v1/session/token\",status=\"200\"} 2"), "{text}");
    assert!(text.contains("latchkey_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/session/token\"} 3"), "{text}");

    // With the database gone, readiness fails while liveness holds.
    node.core.store.clone().close().await;
    assert_eq!(client().get(node.url("/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(client().get(node.url("/healthz")).send().await.unwrap().status(), 200);
    node.stop().await;
}

/// actix-http keeps a connection's read buffer at the size its largest body grew it to, so a
/// keep-alive connection that once posted a 256 KiB SAML form would hold half a megabyte while
/// idle: such connections are closed after their response, ordinary ones are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_posted_a_large_body_is_closed_after_its_response() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let post = |len: usize| {
        client()
            .post(node.url("/saml/no-such-connection/acs"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("SAMLResponse={}", "QUJD".repeat(len / 4)))
            .send()
    };
    let connection = |res: &reqwest::Response| {
        res.headers().get("connection").and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase)
    };
    let large = post(80 * 1024).await.unwrap();
    assert!(large.status().is_client_error(), "{}", large.status());
    assert_eq!(connection(&large).as_deref(), Some("close"));
    let small = post(8 * 1024).await.unwrap();
    assert!(small.status().is_client_error(), "{}", small.status());
    assert_ne!(connection(&small).as_deref(), Some("close"));
    node.stop().await;
}

/// Large bodies whose handler waits before reading them (the ACS reads a few at once) stay
/// partly in the socket (the patched actix-http reads ahead only 32 KiB of a paused payload,
/// third_party/actix-http/PATCH.md): every one must still be read whole once its turn comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_that_wait_for_their_turn_are_read_whole() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let body = format!("SAMLResponse={}", "QUJD".repeat(250 * 1024 / 4));
    let posts = (0..24).map(|_| {
        client()
            .post(node.url("/saml/no-such-connection/acs"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
    });
    // A read that never resumed would hang here: the guard turns that into a failure.
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures_util::future::join_all(posts),
    )
    .await
    .expect("every waiting body is read once its turn comes");
    for answer in answers {
        let res = answer.unwrap();
        assert_eq!(res.status(), 400);
        // Read and decoded whole: refused for its connection, with a reference (a body cut
        // short would be "could not be read").
        let page = res.text().await.unwrap();
        assert!(page.contains("this reference"), "{page}");
    }
    node.stop().await;
}
