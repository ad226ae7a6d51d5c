//! Hosted pages through HTTP as a browser sends it: CSRF, sign-in, throttling, redirects, account.

use std::time::Duration;

use latchkey_core::infra::audit::Actor;
use reqwest::{StatusCode, header};

use crate::{
    on_both_backends,
    support::{Backend, TestDb, TestServer, data_dir},
};

/// A browser: cookie jar, no automatic redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36")
            .build()
            .unwrap();
        Self { client, base: base.to_owned(), jar }
    }

    /// Puts a session cookie (from `TestServer::session`) in the jar, as a sign-in would.
    pub fn set_session(&self, secret: &str) {
        let url = reqwest::Url::parse(&self.base).unwrap();
        self.jar.add_cookie_str(&format!("latchkey_session={secret}; Path=/"), &url);
    }

    /// The value of a cookie the browser holds for the site, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = reqwest::Url::parse(&self.base).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_owned()))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String, Option<String>) {
        let res = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = res.status();
        let location = res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
        (status, res.text().await.unwrap(), location)
    }

    /// Posts a form from one of our pages (same Origin, as a browser does).
    pub async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::ORIGIN, self.base.clone())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let location = res.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
        (status, res.text().await.unwrap(), location)
    }

    /// The CSRF token of the page at `path` (fetching it also sets the cookie).
    pub async fn csrf(&self, path: &str) -> String {
        let (status, body, _) = self.get(path).await;
        assert!(status.is_success(), "{path}: {status}");
        csrf_in(&body)
    }

    /// Signs in through the two-step form; returns the final response.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        return_to: &str,
    ) -> (StatusCode, String, Option<String>) {
        let csrf = self.csrf("/sign-in").await;
        let (status, body, _) = self
            .post("/sign-in", &[("csrf_token", &csrf), ("email", email), ("return_to", return_to)])
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Enter your password"));
        let csrf = csrf_in(&body);
        self.post(
            "/sign-in/password",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", password),
                ("return_to", return_to),
            ],
        )
        .await
    }
}

/// Where a page that navigates by itself (meta refresh) sends the browser.
pub fn refresh_target(html: &str) -> String {
    let marker = "content=\"0;url=";
    let start = html.find(marker).unwrap_or_else(|| panic!("no refresh in {html}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&")
}

pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start =
        html.find(marker).unwrap_or_else(|| panic!("no CSRF token in {html}")) + marker.len();
    html[start..start + 43].to_owned()
}

async fn sign_in_and_account_pages(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let ada = node.user("ada@example.com").await;
    let browser = Browser::new(&node.base_url);

    // The password step looks the same for an unknown address: no account enumeration.
    let csrf = browser.csrf("/sign-in?login_hint=ada@example.com").await;
    let (_, known, _) =
        browser.post("/sign-in", &[("csrf_token", &csrf), ("email", "ada@example.com")]).await;
    let (_, unknown, _) =
        browser.post("/sign-in", &[("csrf_token", &csrf), ("email", "nobody@example.com")]).await;
    assert_eq!(known.replace("ada@example.com", "X"), unknown.replace("nobody@example.com", "X"));
    let (status, body, _) =
        browser.post("/sign-in", &[("csrf_token", &csrf), ("email", "not-an-email")]).await;
    assert_eq!(status, 400);
    assert!(body.contains("valid email"));

    let (status, body, _) = browser.sign_in("ada@example.com", "wrong password!", "").await;
    assert_eq!(status, 401);
    assert!(body.contains("Incorrect email or password"));
    let (status, _, _) = browser.sign_in("nobody@example.com", "correct horse battery", "").await;
    assert_eq!(status, 401);

    // Wait out the retry delay two failures earned, then sign in.
    node.clock.advance(Duration::from_secs(1));
    let (status, _, location) =
        browser.sign_in("Ada@Example.com", "correct horse battery", "").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/account"));

    let (status, body, _) = browser.get("/account").await;
    assert_eq!(status, 200);
    assert!(body.contains("ada@example.com"));
    assert!(body.contains("This device"));
    assert!(body.contains("Chrome on Linux"));

    // The page session is the hybrid session: it mints tokens.
    let res = browser
        .client
        .post(node.url("/v1/session/token"))
        .header("X-Latchkey-CSRF", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Profile and password changes.
    let csrf = browser.csrf("/account").await;
    let (status, _, location) =
        browser.post("/account/profile", &[("csrf_token", &csrf), ("name", "Ada Lovelace")]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/account?notice=profile"))
    );
    assert_eq!(node.core.users.get(&ada.id).await.unwrap().name.as_deref(), Some("Ada Lovelace"));
    let (status, body, _) = browser
        .post(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", "nope nope nope"),
                ("new_password", "quartz violin ember lantern"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("current password is not correct"), "{body}");
    let (status, body, _) = browser
        .post(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", "correct horse battery"),
                ("new_password", "password123"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("too easy to guess"), "{body}");
    let (status, _, _) = browser
        .post(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", "correct horse battery"),
                ("new_password", "quartz violin ember lantern"),
            ],
        )
        .await;
    assert_eq!(status, 303);

    // Another browser signs in; the first signs it out from its sessions list.
    let before: Vec<String> = node
        .core
        .sessions
        .list(Some(&ada.id), false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let other = Browser::new(&node.base_url);
    let (status, _, _) = other.sign_in("ada@example.com", "quartz violin ember lantern", "").await;
    assert_eq!(status, 303);
    assert_eq!(other.get("/account").await.0, 200);
    let sessions = node.core.sessions.list(Some(&ada.id), false, 10).await.unwrap();
    assert_eq!(sessions.len(), 2);
    let (_, body, _) = browser.get("/account").await;
    let newest = &sessions.iter().find(|s| !before.contains(&s.id)).unwrap().id;
    assert!(
        body.contains(&format!("/account/sessions/{newest}/revoke")),
        "no sign-out button for the other session"
    );
    let (status, _, location) =
        browser.post(&format!("/account/sessions/{newest}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/account?notice=session_revoked"))
    );
    let (status, _, location) = other.get("/account").await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/sign-in"));

    // Someone else's session id reads as not found.
    let bob = node.user("bob@example.com").await;
    let (bob_sid, _) = node.session(&bob).await;
    let (status, _, _) = browser
        .post(&format!("/account/sessions/{bob_sid}/revoke"), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(status, 404);
    assert_eq!(node.core.sessions.get(&bob_sid).await.unwrap().status.as_str(), "active");

    // Sign out everywhere else, then sign out.
    let third = Browser::new(&node.base_url);
    assert_eq!(third.sign_in("ada@example.com", "quartz violin ember lantern", "").await.0, 303);
    let (status, _, _) =
        browser.post("/account/sessions/revoke-others", &[("csrf_token", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(third.get("/account").await.0, 303);
    assert_eq!(browser.get("/account").await.0, 200);
    let (status, _, location) = browser.post("/sign-out", &[("csrf_token", &csrf)]).await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/sign-in?signed_out=1"))
    );
    assert_eq!(browser.get("/account").await.0, 303);
    assert!(node.core.sessions.list(Some(&ada.id), false, 10).await.unwrap().is_empty());

    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 200).await.unwrap();
    for action in [
        "sign_in.failed",
        "sign_in.succeeded",
        "password.changed",
        "password.change_failed",
        "session.revoked",
        "session.revoked_others",
        "session.ended",
    ] {
        assert!(events.iter().any(|e| e.action == action), "no {action} audit event");
    }
    node.stop().await;
}
on_both_backends!(sign_in_and_account_pages);

/// Fails one sign-in, moving the node's clock past any retry delay first; returns the status
/// of the failure.
async fn fail_once(node: &TestServer, browser: &Browser, email: &str) -> StatusCode {
    for _ in 0..120 {
        let (status, _, _) = browser.sign_in(email, "definitely wrong", "").await;
        if status != StatusCode::TOO_MANY_REQUESTS {
            return status;
        }
        node.clock.advance(Duration::from_secs(1));
    }
    panic!("still throttled after two minutes");
}

async fn failed_sign_ins_are_throttled_and_lock_the_account(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(
        dir.path(),
        &db,
        &[
            ("LATCHKEY_SIGN_IN_MAX_FAILURES", "3"),
            ("LATCHKEY_SIGN_IN_LOCKOUT", "4s"),
            ("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", "1000"),
        ],
    )
    .await;
    node.user("ada@example.com").await;
    let browser = Browser::new(&node.base_url);

    assert_eq!(fail_once(&node, &browser, "ada@example.com").await, 401);
    assert_eq!(fail_once(&node, &browser, "ada@example.com").await, 401);
    // Two failures earn a one-second delay: an immediate retry is refused with Retry-After
    // (unless the clock just crossed a second, in which case it counts as the third failure).
    let res = browser
        .client
        .post(node.url("/sign-in/password"))
        .header("Origin", node.base_url.clone())
        .form(&[
            ("csrf_token", browser.csrf("/sign-in").await.as_str()),
            ("email", "ada@example.com"),
            ("password", "still wrong"),
        ])
        .send()
        .await
        .unwrap();
    if res.status() == StatusCode::TOO_MANY_REQUESTS {
        assert!(res.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    } else {
        assert_eq!(res.status(), 401);
    }
    // The third failure locks the account.
    if node.core.sign_in.lockout_status("ada@example.com").await.unwrap().failures < 3 {
        assert_eq!(fail_once(&node, &browser, "ada@example.com").await, 401);
    }
    let lock = node.core.sign_in.lockout_status("ada@example.com").await.unwrap();
    assert!(lock.locked_until.is_some(), "{lock:?}");
    let (status, body, _) = browser.sign_in("ada@example.com", "correct horse battery", "").await;
    assert_eq!(status, 429, "locked account accepted the right password");
    assert!(body.contains("Too many attempts"));
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 100).await.unwrap();
    assert!(events.iter().any(|e| e.action == "user.locked_out"));

    // An administrator can see and clear the lockout.
    node.core.sign_in.unlock("ada@example.com", &Actor::cli()).await.unwrap();
    assert_eq!(browser.sign_in("ada@example.com", "correct horse battery", "").await.0, 303);
    node.stop().await;

    // The lockout also ends by itself.
    let node = TestServer::start(
        dir.path(),
        &db,
        &[("LATCHKEY_SIGN_IN_MAX_FAILURES", "1"), ("LATCHKEY_SIGN_IN_LOCKOUT", "5s")],
    )
    .await;
    let browser = Browser::new(&node.base_url);
    assert_eq!(fail_once(&node, &browser, "ada@example.com").await, 401);
    assert_eq!(browser.sign_in("ada@example.com", "correct horse battery", "").await.0, 429);
    node.clock.advance(Duration::from_secs(5));
    assert_eq!(browser.sign_in("ada@example.com", "correct horse battery", "").await.0, 303);
    node.stop().await;
}
on_both_backends!(failed_sign_ins_are_throttled_and_lock_the_account);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_ip_are_capped_across_accounts() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node =
        TestServer::start(dir.path(), &db, &[("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", "4")]).await;
    node.user("ada@example.com").await;
    let browser = Browser::new(&node.base_url);
    for i in 0..4 {
        assert_eq!(fail_once(&node, &browser, &format!("user{i}@example.com")).await, 401);
    }
    let (status, _, _) = browser.sign_in("ada@example.com", "correct horse battery", "").await;
    assert_eq!(status, 429, "the IP should be blocked for every account");
    node.stop().await;
}

/// A browser whose requests carry `X-Forwarded-For: <forwarded>`, as if behind a proxy.
fn forwarded_browser(base: &str, forwarded: &str) -> Browser {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let mut headers = header::HeaderMap::new();
    headers.insert("x-forwarded-for", header::HeaderValue::from_str(forwarded).unwrap());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap();
    Browser { client, base: base.to_owned(), jar }
}

/// Behind a trusted proxy the per-address cap and the session's address are the forwarded
/// client's; from an untrusted peer a forged `X-Forwarded-For` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    for trusted in [true, false] {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let dir = data_dir();
        let mut env = vec![("LATCHKEY_SIGN_IN_IP_MAX_FAILURES", "4")];
        if trusted {
            env.push(("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1/32, ::1"));
        }
        let node = TestServer::start(dir.path(), &db, &env).await;
        let ada = node.user("ada@example.com").await;
        // The client wrote the left entry itself; the proxy appended the right one.
        let mallory = forwarded_browser(&node.base_url, "198.51.100.1, 203.0.113.1");
        for i in 0..4 {
            assert_eq!(fail_once(&node, &mallory, &format!("user{i}@example.com")).await, 401);
        }
        let other = forwarded_browser(&node.base_url, "198.51.100.1, 203.0.113.2");
        let (status, _, _) = other.sign_in("ada@example.com", "correct horse battery", "").await;
        if trusted {
            assert_eq!(status, 303, "another client behind the proxy is not blocked");
            let sessions = node.core.sessions.list(Some(&ada.id), false, 10).await.unwrap();
            assert_eq!(sessions[0].client_ip.as_deref(), Some("203.0.113.2"));
        } else {
            assert_eq!(status, 429, "a forged header must not escape the per-address cap");
        }
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_a_valid_csrf_token_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    node.user("ada@example.com").await;
    let browser = Browser::new(&node.base_url);
    let csrf = browser.csrf("/sign-in").await;
    let form = [("email", "ada@example.com"), ("password", "correct horse battery")];

    // Missing token.
    let (status, body, _) = browser.post("/sign-in/password", &form).await;
    assert_eq!(status, 403);
    assert!(body.contains("This form has expired"));
    // Wrong token.
    let mut with_token = form.to_vec();
    with_token.push(("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(browser.post("/sign-in/password", &with_token).await.0, 403);
    // Right token from a cross-site page.
    let mut right = form.to_vec();
    right.push(("csrf_token", &csrf));
    let res = browser
        .client
        .post(node.url("/sign-in/password"))
        .header("Origin", "https://evil.example.com")
        .form(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = browser
        .client
        .post(node.url("/sign-in/password"))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Right token without the cookie (another browser).
    let stranger = Browser::new(&node.base_url);
    assert_eq!(stranger.post("/sign-in/password", &right).await.0, 403);
    for path in [
        "/sign-in",
        "/sign-up",
        "/sign-up/verify",
        "/sign-out",
        "/password/forgot",
        "/password/reset",
        "/account/profile",
        "/account/password",
        "/account/sessions/revoke-others",
    ] {
        assert_eq!(stranger.post(path, &[("email", "x@example.com")]).await.0, 403, "{path}");
    }
    // Nothing signed in on the way, and the genuine form works.
    assert!(node.core.sessions.list(None, false, 10).await.unwrap().is_empty());
    assert_eq!(browser.post("/sign-in/password", &right).await.0, 303);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(
        dir.path(),
        &db,
        &[("LATCHKEY_ALLOWED_ORIGINS", "https://app.example.com")],
    )
    .await;
    node.user("ada@example.com").await;
    for (return_to, expected) in [
        ("https://evil.example.com/steal", "/account"),
        ("//evil.example.com/steal", "/account"),
        ("/\\evil.example.com", "/account"),
        ("\\\\evil.example.com", "/account"),
        ("javascript:alert(1)", "/account"),
        ("https://app.example.com@evil.example.com/", "/account"),
        ("https://user:pw@app.example.com/", "/account"),
        ("https://app.example.com.evil.com/", "/account"),
        ("http://app.example.com/", "/account"),
        ("/account?tab=sessions", "/account?tab=sessions"),
        ("https://app.example.com/callback?x=1", "https://app.example.com/callback?x=1"),
    ] {
        let browser = Browser::new(&node.base_url);
        let (status, _, location) =
            browser.sign_in("ada@example.com", "correct horse battery", return_to).await;
        assert_eq!(status, 303, "{return_to}");
        assert_eq!(location.as_deref(), Some(expected), "return_to {return_to}");
    }
    // The form pages never even carry a foreign target.
    let browser = Browser::new(&node.base_url);
    let (_, body, _) = browser.get("/sign-in?return_to=https%3A%2F%2Fevil.example.com").await;
    assert!(!body.contains("evil.example.com"));
    let (_, body, _) = browser.get("/sign-up?return_to=%2F%2Fevil.example.com").await;
    assert!(!body.contains("evil.example.com"));
    let (_, body, _) = browser.get("/sign-in?redirect_url=%2F%2Fevil.example.com").await;
    assert!(!body.contains("evil.example.com"));
    let (_, body, _) =
        browser.get("/sign-in?redirect_url=https%3A%2F%2Fapp.example.com%2Fdone").await;
    assert!(
        body.contains("value=\"https://app.example.com/done\""),
        "redirect_url is an alias of return_to"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_a_strict_csp_and_work_without_javascript() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let browser = Browser::new(&node.base_url);
    for path in [
        "/sign-in",
        "/sign-up",
        "/password/forgot",
        "/password/reset?token=x",
        "/sign-up/verify?attempt=nope",
    ] {
        let res = browser.client.get(node.url(path)).send().await.unwrap();
        assert!(res.status().is_success() || res.status().is_client_error(), "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("style-src 'self'")
                && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(res.headers()["x-frame-options"], "DENY");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body = res.text().await.unwrap();
        assert!(!body.contains("<script"), "{path} uses JavaScript");
        assert!(body.contains("<html lang=\"en\">") && body.contains("<h1"), "{path}");
    }
    let css = browser.client.get(node.url("/assets/latchkey.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    node.stop().await;
}

/// The first 6-digit run in a mail's text part.
pub(crate) fn code_in(text: &str) -> String {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(5))
        .find(|&i| {
            bytes[i..i + 6].iter().all(u8::is_ascii_digit)
                && (i == 0 || !bytes[i - 1].is_ascii_digit())
                && bytes.get(i + 6).is_none_or(|b| !b.is_ascii_digit())
        })
        .map(|i| text[i..i + 6].to_owned())
        .unwrap_or_else(|| panic!("no code in {text}"))
}

async fn sign_up_with_an_emailed_code(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let browser = Browser::new(&node.base_url);

    // Weak passwords and passwords made of the address are refused before any mail goes out.
    let csrf = browser.csrf("/sign-up").await;
    for weak in ["short", "password123", "grace.hopper.example"] {
        let (status, body, _) = browser
            .post(
                "/sign-up",
                &[("csrf_token", &csrf), ("email", "grace.hopper@example.com"), ("password", weak)],
            )
            .await;
        assert_eq!(status, 400, "{weak}");
        assert!(body.contains("The password"), "{body}");
    }
    let (status, _, location) = browser
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "Grace.Hopper@example.com"),
                ("password", "quartz violin ember lantern"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    let verify_path = location.unwrap();
    assert!(verify_path.starts_with("/sign-up/verify?attempt="), "{verify_path}");
    // No account until the code is entered.
    assert!(node.core.users.find_by_email("grace.hopper@example.com").await.unwrap().is_none());

    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to.contains("grace.hopper@example.com"));
    let code = code_in(mails[0].part("text/plain"));

    let (status, body, _) = browser.get(&verify_path).await;
    assert_eq!(status, 200);
    assert!(body.contains("grace.hopper@example.com"));
    let csrf = csrf_in(&body);
    let attempt = verify_path.trim_start_matches("/sign-up/verify?attempt=").to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body, _) = browser
        .post("/sign-up/verify", &[("csrf_token", &csrf), ("attempt", &attempt), ("code", wrong)])
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("4 attempts left"), "{body}");
    let (status, _, location) = browser
        .post("/sign-up/verify", &[("csrf_token", &csrf), ("attempt", &attempt), ("code", &code)])
        .await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/account")));
    let user = node.core.users.find_by_email("grace.hopper@example.com").await.unwrap().unwrap();
    assert!(user.email_verified);
    assert_eq!(browser.get("/account").await.0, 200);
    // The code works once.
    let (status, _, _) = browser
        .post("/sign-up/verify", &[("csrf_token", &csrf), ("attempt", &attempt), ("code", &code)])
        .await;
    assert_eq!(status, 404);

    // Signing up again with a taken address looks the same but mails nothing and cannot complete.
    let again = Browser::new(&node.base_url);
    let csrf = again.csrf("/sign-up").await;
    let (status, _, location) = again
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "grace.hopper@example.com"),
                ("password", "another long passphrase here"),
            ],
        )
        .await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/sign-up/verify?attempt="));
    // The second sign-up committed before its answer: had it queued a mail, the queue would
    // hold two.
    use latchkey_core::infra::entity::job_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let mails = job_outbox::Entity::find()
        .filter(job_outbox::Column::Kind.eq("mail"))
        .count(node.core.store.db())
        .await
        .unwrap();
    assert_eq!(mails, 1, "a code was mailed for an existing account");

    // Five wrong codes void an attempt; so does the clock.
    let third = Browser::new(&node.base_url);
    let csrf = third.csrf("/sign-up").await;
    let (_, _, location) = third
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "alan@example.com"),
                ("password", "quartz violin ember lantern"),
            ],
        )
        .await;
    let attempt = location.unwrap().trim_start_matches("/sign-up/verify?attempt=").to_owned();
    let mails = smtp.wait_for(2, Duration::from_secs(15)).await;
    let code = code_in(mails.iter().find(|m| m.to.contains("alan@")).unwrap().part("text/plain"));
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(
            third
                .post(
                    "/sign-up/verify",
                    &[("csrf_token", &csrf), ("attempt", &attempt), ("code", wrong)]
                )
                .await
                .0,
            400
        );
    }
    let (status, body, _) = third
        .post("/sign-up/verify", &[("csrf_token", &csrf), ("attempt", &attempt), ("code", &code)])
        .await;
    assert!(status == 400 || status == 404, "{status}");
    assert!(
        body.contains("expired") || body.contains("start again") || body.contains("Start again"),
        "{body}"
    );
    assert!(node.core.users.find_by_email("alan@example.com").await.unwrap().is_none());

    let fourth = Browser::new(&node.base_url);
    let csrf = fourth.csrf("/sign-up").await;
    let (_, _, location) = fourth
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "edsger@example.com"),
                ("password", "quartz violin ember lantern"),
            ],
        )
        .await;
    let attempt = location.unwrap().trim_start_matches("/sign-up/verify?attempt=").to_owned();
    let mails = smtp.wait_for(3, Duration::from_secs(15)).await;
    let code = code_in(mails.iter().find(|m| m.to.contains("edsger@")).unwrap().part("text/plain"));
    {
        use latchkey_core::infra::entity::sign_up_attempt;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        sign_up_attempt::Entity::update_many()
            .col_expr(
                sign_up_attempt::Column::ExpiresAt,
                Expr::value(crate::support::unix_now() - 1),
            )
            .filter(sign_up_attempt::Column::Id.eq(attempt.as_str()))
            .exec(node.core.store.db())
            .await
            .unwrap();
    }
    let (status, _, _) = fourth
        .post("/sign-up/verify", &[("csrf_token", &csrf), ("attempt", &attempt), ("code", &code)])
        .await;
    assert!(status == 400 || status == 404, "{status}");
    assert!(node.core.users.find_by_email("edsger@example.com").await.unwrap().is_none());
    node.stop().await;
}
on_both_backends!(sign_up_with_an_emailed_code);

async fn password_reset_links_work_once_and_expire(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let ada = node.user("ada@example.com").await;
    let (_, old_secret) = node.session(&ada).await;
    let browser = Browser::new(&node.base_url);

    // Unknown addresses get the same answer and no mail.
    let csrf = browser.csrf("/password/forgot").await;
    let (status, unknown, _) = browser
        .post("/password/forgot", &[("csrf_token", &csrf), ("email", "nobody@example.com")])
        .await;
    assert_eq!(status, 200);
    let (status, known, _) = browser
        .post("/password/forgot", &[("csrf_token", &csrf), ("email", "ada@example.com")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(known, unknown);
    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to.contains("ada@example.com"));
    let text = mails[0].part("text/plain");
    let start = text.find("/password/reset?token=").expect("reset link in mail");
    let token: String = text[start + "/password/reset?token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43);
    assert!(mails[0].part("text/html").contains(&token));

    let reset_path = format!("/password/reset?token={token}");
    let (status, body, _) = browser.get(&reset_path).await;
    assert_eq!(status, 200);
    let csrf = csrf_in(&body);
    let (status, body, _) = browser
        .post(
            "/password/reset",
            &[("csrf_token", &csrf), ("token", &token), ("password", "password1")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("too easy to guess"), "{body}");
    let (status, _, location) = browser
        .post(
            "/password/reset",
            &[("csrf_token", &csrf), ("token", &token), ("password", "new quartz violin ember")],
        )
        .await;
    assert_eq!((status, location.as_deref()), (StatusCode::SEE_OTHER, Some("/sign-in?reset=1")));
    // Every session ended; the new password works, the old one does not.
    assert_eq!(node.token_request(&old_secret).await.status(), 401);
    assert_eq!(
        Browser::new(&node.base_url)
            .sign_in("ada@example.com", "correct horse battery", "")
            .await
            .0,
        401
    );
    assert_eq!(
        Browser::new(&node.base_url)
            .sign_in("ada@example.com", "new quartz violin ember", "")
            .await
            .0,
        303
    );

    // Single use.
    let (status, body, _) = browser.get(&reset_path).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid, has been used, or has expired"));
    let (status, _, _) = browser
        .post(
            "/password/reset",
            &[("csrf_token", &csrf), ("token", &token), ("password", "yet another quartz violin")],
        )
        .await;
    assert_eq!(status, 400);

    // Expiry.
    let (status, _, _) = browser
        .post("/password/forgot", &[("csrf_token", &csrf), ("email", "ada@example.com")])
        .await;
    assert_eq!(status, 200);
    let mails = smtp.wait_for(2, Duration::from_secs(15)).await;
    let text = mails[1].part("text/plain");
    let start = text.find("/password/reset?token=").unwrap() + "/password/reset?token=".len();
    let token2: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    {
        use latchkey_core::infra::entity::password_reset;
        use sea_orm::{EntityTrait, sea_query::Expr};
        password_reset::Entity::update_many()
            .col_expr(
                password_reset::Column::ExpiresAt,
                Expr::value(crate::support::unix_now() - 1),
            )
            .exec(node.core.store.db())
            .await
            .unwrap();
    }
    let (status, _, _) = browser.get(&format!("/password/reset?token={token2}")).await;
    assert_eq!(status, 400);
    let (status, _, _) = browser
        .post(
            "/password/reset",
            &[("csrf_token", &csrf), ("token", &token2), ("password", "yet another quartz violin")],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        Browser::new(&node.base_url)
            .sign_in("ada@example.com", "new quartz violin ember", "")
            .await
            .0,
        303
    );

    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 200).await.unwrap();
    assert!(events.iter().any(|e| e.action == "password.reset"));
    assert!(events.iter().any(|e| e.action == "password.reset_requested"));
    node.stop().await;
}
on_both_backends!(password_reset_links_work_once_and_expire);

/// Using an emailed reset link proves control of the address: it becomes verified.
async fn a_password_reset_verifies_the_address(backend: Backend) {
    use latchkey_core::infra::entity::user_email;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let Some(db) = TestDb::new(backend).await else { return };
    let smtp = crate::support::SmtpSink::start(None).await;
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[("LATCHKEY_SMTP_URL", &smtp.url())]).await;
    let ada = node.user("ada@example.com").await;
    assert!(!ada.email_verified);
    let browser = Browser::new(&node.base_url);
    let csrf = browser.csrf("/password/forgot").await;
    browser.post("/password/forgot", &[("csrf_token", &csrf), ("email", "ada@example.com")]).await;
    let mails = smtp.wait_for(1, Duration::from_secs(15)).await;
    let text = mails[0].part("text/plain");
    let start = text.find("/password/reset?token=").unwrap() + "/password/reset?token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let (status, _, _) = browser
        .post(
            "/password/reset",
            &[("csrf_token", &csrf), ("token", &token), ("password", "new quartz violin ember")],
        )
        .await;
    assert_eq!(status, 303);
    assert!(node.core.users.get(&ada.id).await.unwrap().email_verified);
    let row = user_email::Entity::find()
        .filter(user_email::Column::Email.eq("ada@example.com"))
        .one(node.core.store.db())
        .await
        .unwrap()
        .unwrap();
    assert!(row.verified && row.verified_at.is_some());
    let events = latchkey_core::infra::audit::recent(node.core.store.db(), 50).await.unwrap();
    let verified = events.iter().find(|e| e.action == "email.verified").expect("audited");
    assert_eq!(verified.data["method"], "password_reset");
    node.stop().await;
}
on_both_backends!(a_password_reset_verifies_the_address);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_send_mail_are_rate_limited() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let browser = Browser::new(&node.base_url);
    let csrf = browser.csrf("/password/forgot").await;
    for _ in 0..5 {
        assert_eq!(
            browser
                .post("/password/forgot", &[("csrf_token", &csrf), ("email", "target@example.com")])
                .await
                .0,
            200
        );
    }
    let res = browser
        .client
        .post(node.url("/password/forgot"))
        .header("Origin", node.base_url.clone())
        .form(&[("csrf_token", csrf.as_str()), ("email", "target@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
    assert!(res.text().await.unwrap().contains("Too many requests"));
    // Other addresses are unaffected.
    assert_eq!(
        browser
            .post("/password/forgot", &[("csrf_token", &csrf), ("email", "other@example.com")])
            .await
            .0,
        200
    );

    for i in 0..5 {
        let (status, body, _) = browser
            .post(
                "/sign-up",
                &[
                    ("csrf_token", &csrf),
                    ("email", "flood@example.com"),
                    ("password", "quartz violin ember lantern"),
                ],
            )
            .await;
        assert_eq!(status, 303, "attempt {i}: {body}");
    }
    let (status, _, _) = browser
        .post(
            "/sign-up",
            &[
                ("csrf_token", &csrf),
                ("email", "flood@example.com"),
                ("password", "quartz violin ember lantern"),
            ],
        )
        .await;
    assert_eq!(status, 429);
    node.stop().await;
}

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// What a browser gets for an address it should not have asked for that way: a redirect to the
/// form's page, or an HTML page (never an empty body); programs keep their JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_pages_for_wrong_methods_and_unknown_paths() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    node.user("ada@example.com").await;
    let browser = Browser::new(&node.base_url);
    let get = |path: &str| {
        browser.client.get(node.url(path)).header(header::ACCEPT, BROWSER_ACCEPT).send()
    };

    // The reload after a wrong password lands on the sign-in form again.
    let (status, _, _) = browser.sign_in("ada@example.com", "wrong password!", "").await;
    assert_eq!(status, 401);
    let org = "org_01m8aaaaaaaaaaaaaaaaaaaaaa";
    let join_requests = format!("/organizations/{org}/join-requests");
    let decision = format!("{join_requests}/jrq_01m8aaaaaaaaaaaaaaaaaaaaaa/approve");
    let redirects = [
        ("/sign-in/password", "/sign-in"),
        ("/account/profile", "/account"),
        ("/account/password", "/account"),
        ("/account/sessions/revoke-others", "/account"),
        ("/account/sessions/ses_x/revoke", "/account"),
        ("/account/apps/client_x/revoke", "/account"),
        ("/account/organization", "/account"),
        ("/account/email/verify", "/account"),
        ("/account/invitations/inv_x/accept", "/account"),
        ("/account/organizations/org_x/join", "/account"),
        (decision.as_str(), join_requests.as_str()),
        ("/organizations/..%2F..%2Fevil/join-requests/x/approve", "/account"),
    ];
    for (path, form_page) in redirects {
        let res = get(path).await.unwrap();
        assert_eq!(res.status(), 303, "GET {path}");
        assert_eq!(res.headers()[header::LOCATION], form_page, "GET {path}");
    }

    // No page to go back to, or another method: a 405 page that says so, with Allow.
    let wrong_methods = [
        (reqwest::Method::GET, "/oauth2/consent", "POST"),
        (reqwest::Method::GET, "/oauth2/select-account", "POST"),
        (reqwest::Method::PUT, "/oauth2/consent", "POST"),
        (reqwest::Method::PUT, "/account/profile", "POST"),
        (reqwest::Method::DELETE, "/sign-in/password", "POST"),
        (reqwest::Method::DELETE, "/sign-in", "GET, POST"),
        (reqwest::Method::PATCH, "/password/reset", "GET, POST"),
        (reqwest::Method::POST, "/account", "GET"),
        (reqwest::Method::POST, join_requests.as_str(), "GET"),
    ];
    for (method, path, allow) in wrong_methods {
        let res = browser
            .client
            .request(method.clone(), node.url(path))
            .header(header::ACCEPT, BROWSER_ACCEPT)
            .header(header::ORIGIN, node.base_url.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()[header::ALLOW], allow, "{method} {path}");
        let kind = res.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/html"), "{method} {path}: {kind}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains("cannot be opened directly") && body.contains("href=\"/account\""),
            "{method} {path}: {body}"
        );
    }

    // Unknown paths: a page for browsers, JSON for programs and under the API prefixes.
    let res = get("/no-such-page").await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let body = res.text().await.unwrap();
    assert!(body.contains("Page not found") && body.contains("href=\"/account\""), "{body}");
    for (path, accept) in [
        ("/no-such-page", None),
        ("/no-such-page", Some("*/*")),
        ("/no-such-page", Some("application/json")),
        ("/no-such-page", Some("application/json, text/html;q=0.5")),
        ("/v1/nope", Some(BROWSER_ACCEPT)),
        ("/oauth2/nope", Some(BROWSER_ACCEPT)),
        ("/.well-known/nope", Some(BROWSER_ACCEPT)),
    ] {
        let mut req = browser.client.get(node.url(path));
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404, "{path} {accept:?}");
        let json: serde_json::Value = res.json().await.unwrap();
        assert_eq!(json["error"], "not_found", "{path} {accept:?}");
    }

    // The tab icon: small, cached for long, compiled in.
    let res = get("/favicon.ico").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/x-icon");
    let cache = res.headers()[header::CACHE_CONTROL].to_str().unwrap().to_owned();
    let max_age: u64 = cache.split("max-age=").nth(1).unwrap().parse().unwrap();
    assert!(cache.contains("public") && max_age >= 86_400, "{cache}");
    let icon = res.bytes().await.unwrap();
    assert!(icon.starts_with(&[0, 0, 1, 0]) && icon.len() < 4096, "{} bytes", icon.len());
    node.stop().await;
}
