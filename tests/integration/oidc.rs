//! OpenID Connect provider: the client registry (store on both backends, and the CLI).

use latchkey_core::{Error, infra::audit::Actor, oauth::clients::NewClient};
use serde_json::Value;

use crate::{
    on_both_backends,
    support::{Backend, TestDb, data_dir, latchkey, open_core},
};

fn confidential(name: &str) -> NewClient {
    NewClient {
        name: name.into(),
        redirect_uris: vec!["https://rp.example.com/cb".into(), "http://127.0.0.1:9/cb".into()],
        post_logout_redirect_uris: vec!["https://rp.example.com/bye".into()],
        ..Default::default()
    }
}

async fn client_registry_stores_hashed_rotating_secrets(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let core = open_core(dir.path(), &db, &[]).await;
    let actor = Actor::cli();

    let created = core.clients.create(confidential("Wiki"), &actor).await.unwrap();
    let id = created.client.client_id.clone();
    let secret = created.client_secret.clone().unwrap();
    assert!(id.starts_with("client_"));
    assert_eq!(created.client.token_endpoint_auth_method, "client_secret_basic");
    assert_eq!(created.client.id_token_alg, "RS256");
    assert!(created.client.require_pkce);
    assert!(!created.client.first_party);
    assert_eq!(created.client.grant_types, ["authorization_code", "refresh_token"]);

    // Exact redirect URI matching: no prefix, case or trailing-slash leniency.
    let client = core.clients.get(&id).await.unwrap();
    assert!(client.has_redirect_uri("https://rp.example.com/cb"));
    for near in
        ["https://rp.example.com/cb/", "https://RP.example.com/cb", "https://rp.example.com/c"]
    {
        assert!(!client.has_redirect_uri(near), "{near}");
    }
    assert!(client.has_post_logout_redirect_uri("https://rp.example.com/bye"));

    // Secrets are stored hashed, never in clear.
    use latchkey_core::infra::entity::oauth_client_secret;
    use sea_orm::EntityTrait;
    let rows = oauth_client_secret::Entity::find().all(core.store.db()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].secret_hash, secret);
    assert!(core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(!core.clients.verify_secret(&id, "wrong").await.unwrap());
    assert!(!core.clients.verify_secret(&id, "").await.unwrap());

    // Rotation with overlap: both secrets work; with overlap 0 the old ones stop at once.
    let (_, second) = core.clients.rotate_secret(&id, 3600, &actor).await.unwrap();
    assert!(core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(core.clients.verify_secret(&id, &second).await.unwrap());
    let (_, third) = core.clients.rotate_secret(&id, 0, &actor).await.unwrap();
    assert!(!core.clients.verify_secret(&id, &secret).await.unwrap());
    assert!(!core.clients.verify_secret(&id, &second).await.unwrap());
    assert!(core.clients.verify_secret(&id, &third).await.unwrap());

    // A secret belongs to its client only.
    let other = core.clients.create(confidential("Other"), &actor).await.unwrap();
    assert!(!core.clients.verify_secret(&other.client.client_id, &third).await.unwrap());

    // Public clients: no secret, auth method none, no client_credentials.
    let public = core
        .clients
        .create(NewClient { public: true, first_party: true, ..confidential("SPA") }, &actor)
        .await
        .unwrap();
    assert!(public.client_secret.is_none());
    assert_eq!(public.client.token_endpoint_auth_method, "none");
    assert!(core.clients.rotate_secret(&public.client.client_id, 0, &actor).await.is_err());
    let bad = NewClient {
        public: true,
        grant_types: vec!["client_credentials".into()],
        ..confidential("M2M")
    };
    assert!(matches!(core.clients.create(bad, &actor).await, Err(Error::Invalid { .. })));

    // Unsafe registrations are refused.
    for uri in ["http://rp.example.com/cb", "https://rp.example.com/cb#x", "/cb"] {
        let bad = NewClient { redirect_uris: vec![uri.into()], ..confidential("Bad") };
        assert!(
            matches!(core.clients.create(bad, &actor).await, Err(Error::Invalid { .. })),
            "{uri}"
        );
    }
    let no_uri = NewClient { redirect_uris: vec![], ..confidential("Bad") };
    assert!(core.clients.create(no_uri, &actor).await.is_err());
    let bad_jwt = NewClient {
        token_endpoint_auth_method: Some("private_key_jwt".into()),
        ..confidential("Bad")
    };
    assert!(core.clients.create(bad_jwt, &actor).await.is_err());

    assert_eq!(core.clients.list().await.unwrap().len(), 3);
    core.clients.delete(&id, &actor).await.unwrap();
    assert!(core.clients.find(&id).await.unwrap().is_none());
    assert!(!core.clients.verify_secret(&id, &third).await.unwrap());
    assert!(matches!(core.clients.delete(&id, &actor).await, Err(Error::NotFound(_))));
    assert!(core.clients.find("client_../x").await.unwrap().is_none());
    core.store.close().await;
}
on_both_backends!(client_registry_stores_hashed_rotating_secrets);

fn run_json(cwd: &std::path::Path, args: &[&str]) -> Value {
    let out = latchkey(cwd, &[]).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_clients() {
    let cwd = data_dir();
    let dir = cwd.path();

    let added = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "Wiki",
            "--redirect-uri",
            "https://wiki.example.com/cb",
            "--redirect-uri",
            "http://127.0.0.1:8080/cb",
            "--post-logout-redirect-uri",
            "https://wiki.example.com/",
            "--backchannel-logout-uri",
            "https://wiki.example.com/bcl",
        ],
    );
    let id = added["client_id"].as_str().unwrap().to_owned();
    let secret = added["client_secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("client_"));
    assert_eq!(secret.len(), 43);
    assert_eq!(added["client_type"], "confidential");
    assert_eq!(added["redirect_uris"].as_array().unwrap().len(), 2);
    assert_eq!(added["backchannel_logout_uri"], "https://wiki.example.com/bcl");

    let public = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "SPA",
            "--redirect-uri",
            "https://spa.example.com/cb",
            "--public",
            "--first-party",
        ],
    );
    assert!(public.get("client_secret").is_none());
    assert_eq!(public["client_type"], "public");
    assert_eq!(public["first_party"], true);
    assert_eq!(public["token_endpoint_auth_method"], "none");

    // The secret is shown once: never by list or show.
    let listed = run_json(dir, &["clients", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&secret));
    let shown = run_json(dir, &["clients", "show", &id]);
    assert_eq!(shown["name"], "Wiki");
    assert!(!shown.to_string().contains(&secret));

    let rotated = run_json(dir, &["clients", "rotate-secret", &id, "--overlap", "0"]);
    assert_eq!(rotated["client_id"], id.as_str());
    assert_ne!(rotated["client_secret"], secret.as_str());

    let plain = latchkey(dir, &[]).args(["clients", "list"]).output().unwrap();
    assert!(plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stdout).contains("Wiki"));

    let bad = latchkey(dir, &[])
        .args(["clients", "add", "--name", "Bad", "--redirect-uri", "http://evil.example/cb"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    for sub in ["add", "list", "show", "rotate-secret", "delete"] {
        let help = latchkey(dir, &[]).args(["clients", sub, "--help"]).output().unwrap();
        assert!(help.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&help.stdout).contains("--json"), "{sub}");
    }

    assert_eq!(run_json(dir, &["clients", "delete", &id])["client_id"], id.as_str());
    let missing = latchkey(dir, &[]).args(["clients", "show", &id]).output().unwrap();
    assert_eq!(missing.status.code(), Some(3));
    assert_eq!(run_json(dir, &["clients", "list"]).as_array().unwrap().len(), 1);
}

// ------------------------------------------------------------------ protocol flows

pub(crate) mod flows {
    use std::collections::HashMap;

    use latchkey_core::{infra::audit::Actor, infra::jose::SigningAlg, oauth::clients::NewClient};
    use openidconnect::{
        AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
        OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
        core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims},
    };
    use reqwest::StatusCode;
    use serde_json::{Value, json};

    use crate::{
        on_both_backends,
        pages::Browser,
        support::{Backend, TestDb, TestServer, client, data_dir},
    };

    pub(crate) const PASSWORD: &str = "correct horse battery";
    pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/cb";
    pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn query_of(location: &str) -> HashMap<String, String> {
        let url = url_parse(location);
        url.query_pairs().into_owned().collect()
    }

    fn url_parse(location: &str) -> reqwest::Url {
        reqwest::Url::parse(location)
            .or_else(|_| reqwest::Url::parse(&format!("http://x{location}")))
            .unwrap()
    }

    /// Follows an authorization URL through sign-in (if needed) to the code redirect.
    pub(crate) async fn authorize(
        browser: &Browser,
        auth_url: &str,
        email: &str,
    ) -> HashMap<String, String> {
        let path = {
            let u = url_parse(auth_url);
            format!("{}?{}", u.path(), u.query().unwrap_or_default())
        };
        let (status, body, location) = browser.get(&path).await;
        assert_eq!(status, 303, "{body}");
        let mut location = location.unwrap();
        if location.starts_with("/sign-in") {
            let return_to = query_of(&location)["return_to"].clone();
            assert!(return_to.starts_with("/oauth2/authorize/resume?"), "{return_to}");
            let (status, body, back) = browser.sign_in(email, PASSWORD, &return_to).await;
            assert_eq!(status, 303, "{body}");
            assert_eq!(back.as_deref(), Some(return_to.as_str()));
            // Back from sign-in, the browser is sent on by a page, not a 303 (CSP form-action).
            let (status, body, _) = browser.get(&return_to).await;
            assert_eq!(status, 200, "{body}");
            location = meta_refresh(&body);
        }
        assert!(location.starts_with(REDIRECT), "{location}");
        query_of(&location)
    }

    fn meta_refresh(html: &str) -> String {
        let marker = "content=\"0;url=";
        let start =
            html.find(marker).unwrap_or_else(|| panic!("no refresh in {html}")) + marker.len();
        let end = start + html[start..].find('"').unwrap();
        html[start..end].replace("&amp;", "&")
    }

    pub(crate) async fn token(
        node: &TestServer,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = client().post(node.url("/oauth2/token")).form(form);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        assert_eq!(res.headers()["cache-control"], "no-store", "{status}");
        (status, res.json().await.unwrap())
    }

    pub(crate) fn error_of(v: &(StatusCode, Value)) -> (u16, &str) {
        (v.0.as_u16(), v.1["error"].as_str().unwrap_or("<none>"))
    }

    pub(crate) async fn setup(
        backend: Backend,
    ) -> Option<(TestServer, tempfile::TempDir, String, String)> {
        let db = TestDb::new(backend).await?;
        let dir = data_dir();
        let node = TestServer::start(dir.path(), &db, &[]).await;
        node.user("ada@example.com").await;
        let created = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Wiki".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    post_logout_redirect_uris: vec!["http://127.0.0.1:9/bye".into()],
                    first_party: true,
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        Some((node, dir, created.client.client_id, created.client_secret.unwrap()))
    }

    /// The full flow with the `openidconnect` crate as the relying party.
    async fn openidconnect_rp_full_flow(backend: Backend) {
        let Some((node, _dir, client_id, secret)) = setup(backend).await else { return };
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let meta = CoreProviderMetadata::discover_async(
            IssuerUrl::new(node.base_url.clone()).unwrap(),
            &http,
        )
        .await
        .unwrap();
        let rp = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(client_id.clone()),
            Some(ClientSecret::new(secret.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, csrf_state, nonce) = rp
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();
        let browser = Browser::new(&node.base_url);
        let callback = authorize(&browser, auth_url.as_str(), "ada@example.com").await;
        assert_eq!(callback["state"], *csrf_state.secret());
        assert_eq!(callback["iss"], node.base_url);

        let tokens = rp
            .exchange_code(AuthorizationCode::new(callback["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_token = tokens.id_token().unwrap();
        let verifier = rp.id_token_verifier();
        let claims = id_token.claims(&verifier, &nonce).unwrap();
        assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
        assert_eq!(claims.issuer().as_str(), node.base_url);
        assert!(claims.auth_time().is_some());
        let expected_hash = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected_hash));
        let user = node.core.users.find_by_email("ada@example.com").await.unwrap().unwrap();
        assert_eq!(claims.subject().as_str(), user.id);

        // The raw ID token carries sid/azp/amr; the access token is an RFC 9068 JWT.
        let raw: Value = decode_payload(&id_token.to_string());
        assert_eq!(raw["azp"], client_id.as_str());
        assert!(raw["sid"].as_str().unwrap().starts_with("ses_"));
        assert_eq!(raw["amr"], json!(["pwd"]));
        let at = tokens.access_token().secret();
        assert_eq!(decode_header(at)["typ"], "at+jwt");
        assert_eq!(decode_payload(at)["client_id"], client_id.as_str());

        let info: CoreUserInfoClaims = rp
            .user_info(tokens.access_token().to_owned(), None)
            .unwrap()
            .request_async(&http)
            .await
            .unwrap();
        assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.com"));
        assert_eq!(info.subject().as_str(), user.id);
        // POST works too; a bad token gets a Bearer challenge.
        let res = client().post(node.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let res =
            client().get(node.url("/oauth2/userinfo")).bearer_auth("nope").send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

        let refresh = tokens.refresh_token().unwrap();
        let refreshed =
            rp.exchange_refresh_token(refresh).unwrap().request_async(&http).await.unwrap();
        let refresh2 = refreshed.refresh_token().unwrap().clone();
        assert_ne!(refresh2.secret(), refresh.secret());

        // Introspection (client-authenticated) sees the live tokens.
        let intro = introspect(&node, &client_id, &secret, refresh2.secret()).await;
        assert_eq!(intro["active"], true, "{intro}");
        let intro = introspect(&node, &client_id, &secret, refreshed.access_token().secret()).await;
        assert_eq!(intro["active"], true);
        assert_eq!(intro["sub"], user.id.as_str());

        // The oauth2 crate refuses revocation over plain http (RFC 7009 wants TLS), so revoke
        // as it would, by hand: client_secret_basic plus the token and its hint.
        let res = client()
            .post(node.url("/oauth2/revoke"))
            .basic_auth(&client_id, Some(&secret))
            .form(&[("token", refresh2.secret().as_str()), ("token_type_hint", "refresh_token")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let again = token(
            &node,
            Some((&client_id, &secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh2.secret())],
        )
        .await;
        assert_eq!(error_of(&again), (400, "invalid_grant"));
        assert_eq!(
            introspect(&node, &client_id, &secret, refresh2.secret()).await["active"],
            false
        );

        // An access token is not an id_token_hint; an unregistered post-logout URI is refused.
        let (status, _, location) = browser
            .get(&format!(
                "/oauth2/logout?id_token_hint={}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fbye",
                refreshed.access_token().secret()
            ))
            .await;
        assert_eq!((status.as_u16(), location), (400, None));
        let (status, _, location) = browser
            .get(&format!(
                "/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fevil"
            ))
            .await;
        assert_eq!((status.as_u16(), location), (400, None));
        // RP-initiated logout with id_token_hint ends the session and returns with state.
        let (status, _, location) = browser
            .get(&format!(
                "/oauth2/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye1",
                id_token, "http%3A%2F%2F127.0.0.1%3A9%2Fbye"
            ))
            .await;
        assert_eq!(status, 303);
        assert_eq!(location.as_deref(), Some("http://127.0.0.1:9/bye?state=bye1"));
        let intro = introspect(&node, &client_id, &secret, refreshed.access_token().secret()).await;
        assert_eq!(intro["active"], false, "access tokens die with their session");
        node.stop().await;
    }
    on_both_backends!(openidconnect_rp_full_flow);

    fn decode_part(jwt: &str, i: usize) -> Value {
        use base64::Engine;
        let part = jwt.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap(),
        )
        .unwrap()
    }
    pub(crate) fn decode_payload(jwt: &str) -> Value {
        decode_part(jwt, 1)
    }
    pub(crate) fn decode_header(jwt: &str) -> Value {
        decode_part(jwt, 0)
    }

    pub(crate) async fn introspect(
        node: &TestServer,
        id: &str,
        secret: &str,
        token: &str,
    ) -> Value {
        let res = client()
            .post(node.url("/oauth2/introspect"))
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub(crate) fn auth_path(client_id: &str, extra: &str) -> String {
        format!(
            "/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid+offline_access&state=st&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
        )
    }

    pub(crate) async fn code_for(node: &TestServer, browser: &Browser, client_id: &str) -> String {
        let q = authorize(browser, &node.url(&auth_path(client_id, "")), "ada@example.com").await;
        q["code"].clone()
    }

    /// Negative paths, each with its exact OAuth error.
    async fn oauth_errors_are_exact(backend: Backend) {
        let Some((node, _dir, id, secret)) = setup(backend).await else { return };
        let basic = Some((id.as_str(), secret.as_str()));
        let browser = Browser::new(&node.base_url);

        // Unknown client / unregistered redirect URI: an error page, never a redirect.
        for path in [
            auth_path("client_01jzzzzzzzzzzzzzzzzzzzzzzz", ""),
            auth_path(&id, "").replace("%3A9%2Fcb", "%3A9%2Fevil"),
            auth_path(&id, "").replace("%3A9%2Fcb", "%3A9%2Fcb%2F"),
        ] {
            let (status, body, location) = browser.get(&path).await;
            assert_eq!((status.as_u16(), location), (400, None), "{path}");
            assert!(body.contains("cannot be completed"));
        }

        // prompt=none without a session → login_required, with state and iss.
        let (status, _, location) = browser.get(&auth_path(&id, "&prompt=none")).await;
        assert_eq!(status, 303);
        let q = query_of(&location.unwrap());
        assert_eq!((q["error"].as_str(), q["state"].as_str()), ("login_required", "st"));
        assert_eq!(q["iss"], node.base_url);
        // Missing PKCE and `plain` → invalid_request redirect.
        for path in [
            auth_path(&id, "")
                .replace(&format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"), ""),
            auth_path(&id, "").replace("S256", "plain"),
        ] {
            let (_, _, location) = browser.get(&path).await;
            assert_eq!(query_of(&location.unwrap())["error"], "invalid_request", "{path}");
        }

        // Code reuse: the second use fails and revokes what the first issued.
        let code = code_for(&node, &browser, &id).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let first = token(&node, basic, &form).await;
        assert_eq!(first.0, 200, "{}", first.1);
        let refresh = first.1["refresh_token"].as_str().unwrap().to_owned();
        let first_at = first.1["access_token"].as_str().unwrap().to_owned();
        assert_eq!(introspect(&node, &id, &secret, &first_at).await["active"], true);
        assert_eq!(error_of(&token(&node, basic, &form).await), (400, "invalid_grant"));
        assert_eq!(introspect(&node, &id, &secret, &first_at).await["active"], false);
        let res =
            client().get(node.url("/oauth2/userinfo")).bearer_auth(&first_at).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let r =
            token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
                .await;
        assert_eq!(error_of(&r), (400, "invalid_grant"));

        // PKCE mismatch / missing verifier / wrong redirect_uri.
        for (verifier, redirect) in [
            (Some("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"), REDIRECT),
            (None, REDIRECT),
            (Some(VERIFIER), "http://127.0.0.1:9/other"),
        ] {
            let code = code_for(&node, &browser, &id).await;
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
            ];
            if let Some(v) = verifier {
                form.push(("code_verifier", v));
            }
            assert_eq!(
                error_of(&token(&node, basic, &form).await),
                (400, "invalid_grant"),
                "{verifier:?}"
            );
        }

        // Expired code.
        let code = code_for(&node, &browser, &id).await;
        {
            use latchkey_core::infra::entity::oauth_code;
            use sea_orm::{EntityTrait, sea_query::Expr};
            oauth_code::Entity::update_many()
                .col_expr(
                    oauth_code::Column::ExpiresAt,
                    Expr::value(crate::support::unix_now() - 1),
                )
                .exec(node.core.store.db())
                .await
                .unwrap();
        }
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        assert_eq!(error_of(&token(&node, basic, &form).await), (400, "invalid_grant"));

        // Client authentication: wrong secret, none at all, the wrong method.
        let code = code_for(&node, &browser, &id).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        assert_eq!(
            error_of(&token(&node, Some((&id, "wrong")), &form).await),
            (401, "invalid_client")
        );
        assert_eq!(error_of(&token(&node, None, &form).await), (401, "invalid_client"));
        let mut with_id = form.to_vec();
        with_id.push(("client_id", &id));
        assert_eq!(error_of(&token(&node, None, &with_id).await), (401, "invalid_client"));
        with_id.push(("client_secret", &secret));
        assert_eq!(
            error_of(&token(&node, None, &with_id).await),
            (401, "invalid_client"),
            "post is not registered"
        );

        // Refresh rotation: reuse of a rotated token revokes the whole family.
        let ok = token(&node, basic, &form).await;
        assert_eq!(ok.0, 200, "{}", ok.1);
        let r1 = ok.1["refresh_token"].as_str().unwrap().to_owned();
        let r =
            token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", &r1)]).await;
        assert_eq!(r.0, 200);
        let r2 = r.1["refresh_token"].as_str().unwrap().to_owned();
        let reuse =
            token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", &r1)]).await;
        assert_eq!(error_of(&reuse), (400, "invalid_grant"));
        let at2 = r.1["access_token"].as_str().unwrap().to_owned();
        assert_eq!(introspect(&node, &id, &secret, &at2).await["active"], false, "family revoked");
        let after =
            token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", &r2)]).await;
        assert_eq!(error_of(&after), (400, "invalid_grant"), "the family is revoked");
        let wider = token(
            &node,
            basic,
            &[("grant_type", "refresh_token"), ("refresh_token", &r2), ("scope", "openid email")],
        )
        .await;
        assert_eq!(error_of(&wider).0, 400);

        // Refresh after the Latchkey session is revoked → invalid_grant; tokens inactive at once.
        let code = code_for(&node, &browser, &id).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let ok = token(&node, basic, &form).await;
        let r = ok.1["refresh_token"].as_str().unwrap().to_owned();
        let at = ok.1["access_token"].as_str().unwrap().to_owned();
        let sid = decode_payload(&at)["sid"].as_str().unwrap().to_owned();
        node.core.sessions.revoke(&sid, "test", &Actor::cli()).await.unwrap();
        assert_eq!(introspect(&node, &id, &secret, &at).await["active"], false);
        let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(&at).send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(
            error_of(
                &token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", &r)])
                    .await
            ),
            (400, "invalid_grant")
        );

        // Malformed and oversized parameters.
        let long = "x".repeat(5000);
        assert_eq!(
            error_of(
                &token(
                    &node,
                    basic,
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &long),
                        ("redirect_uri", REDIRECT)
                    ]
                )
                .await
            ),
            (400, "invalid_request")
        );
        assert_eq!(
            error_of(&token(&node, basic, &[("grant_type", "password")]).await),
            (400, "unsupported_grant_type")
        );
        assert_eq!(
            error_of(
                &token(
                    &node,
                    basic,
                    &[("grant_type", "refresh_token"), ("grant_type", "refresh_token")]
                )
                .await
            ),
            (400, "invalid_request")
        );
        assert_eq!(
            error_of(&token(&node, basic, &[("grant_type", "client_credentials")]).await),
            (400, "unauthorized_client")
        );
        let res = client()
            .post(node.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .json(&json!({ "grant_type": "refresh_token" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
        let (status, _, location) =
            browser.get(&format!("{}&login_hint={long}", auth_path(&id, ""))).await;
        assert_eq!((status.as_u16(), location), (400, None));
        node.stop().await;
    }
    on_both_backends!(oauth_errors_are_exact);

    /// A store failure behind the browser-facing authorization endpoint is answered with an
    /// HTML page of its class (503), never with the JSON of the API endpoints.
    async fn authorize_failures_render_as_pages(backend: Backend) {
        let Some((node, _dir, _, _)) = setup(backend).await else { return };
        let third_party = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Elsewhere".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let browser = Browser::new(&node.base_url);
        assert_eq!(browser.sign_in("ada@example.com", PASSWORD, "").await.0, 303);
        // The consent lookup now fails in the store.
        use sea_orm::ConnectionTrait;
        node.core.store.db().execute_unprepared("DROP TABLE oauth_consents").await.unwrap();
        let path = format!(
            "/oauth2/authorize?response_type=code&client_id={}&redirect_uri={REDIRECT}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256&state=s",
            third_party.client.client_id
        );
        let res = browser.client.get(node.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 503);
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/html"), "{kind}");
        node.stop().await;
    }
    on_both_backends!(authorize_failures_render_as_pages);

    /// max_age forces a fresh sign-in when the session is older; afterwards the flow completes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn max_age_forces_reauthentication() {
        let (node, _dir, id, _) = setup(Backend::Sqlite).await.unwrap();
        let browser = Browser::new(&node.base_url);
        code_for(&node, &browser, &id).await;
        {
            use latchkey_core::infra::entity::session;
            use sea_orm::{EntityTrait, sea_query::Expr};
            session::Entity::update_many()
                .col_expr(
                    session::Column::CreatedAt,
                    Expr::value(crate::support::unix_now() - 3600),
                )
                .exec(node.core.store.db())
                .await
                .unwrap();
        }
        // Within max_age nothing happens; beyond it the user signs in again.
        let (status, _, location) = browser.get(&auth_path(&id, "&max_age=7200")).await;
        assert_eq!(status, 303);
        assert!(location.unwrap().starts_with(REDIRECT));
        let (_, _, location) = browser.get(&auth_path(&id, "&max_age=60&prompt=none")).await;
        assert_eq!(query_of(&location.unwrap())["error"], "login_required");
        let q =
            authorize(&browser, &node.url(&auth_path(&id, "&max_age=60")), "ada@example.com").await;
        assert!(q.contains_key("code"));
        let q = authorize(&browser, &node.url(&auth_path(&id, "&prompt=login")), "ada@example.com")
            .await;
        assert!(q.contains_key("code"));
        // Without a session, the one sign-in satisfies prompt=login and max_age=0: the request
        // that comes back is not sent to sign-in a second time.
        for extra in ["&prompt=login", "&max_age=0"] {
            let fresh = Browser::new(&node.base_url);
            let q = authorize(&fresh, &node.url(&auth_path(&id, extra)), "ada@example.com").await;
            assert!(q.contains_key("code"), "{extra}");
        }
        node.stop().await;
    }

    /// An authorization request for scopes `openid email` with `prompt` (URL-encoded).
    fn select_path(client_id: &str, prompt: &str) -> String {
        auth_path(client_id, &format!("&prompt={prompt}"))
            .replace("scope=openid+offline_access", "scope=openid+email")
    }

    /// The value of a hidden form field, HTML-unescaped.
    fn hidden(html: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name} in {html}"))
            + marker.len();
        let end = start + html[start..].find('"').unwrap();
        html[start..end]
            .replace("&#43;", "+")
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    }

    /// Redeems a code of the Wiki client (openid email) and returns the ID token's claims.
    async fn id_token_claims(node: &TestServer, id: &str, secret: &str, code: &str) -> Value {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let (status, body) = token(node, Some((id, secret)), &form).await;
        assert_eq!(status, 200, "{body}");
        let id_token = body["id_token"].as_str().unwrap();
        let jwks = node.jwks().await;
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        let key =
            jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
                .unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_issuer(&[&node.base_url]);
        v.set_audience(&[id]);
        jsonwebtoken::decode::<Value>(id_token, &key, &v).unwrap().claims
    }

    /// prompt=select_account: sign-in without a session, the account chooser with one, and
    /// "Continue" (CSRF-protected, bound to the session shown) finishing the flow.
    async fn select_account_shows_the_account_chooser(backend: Backend) {
        let Some((node, _dir, id, secret)) = setup(backend).await else { return };
        let ada = node.core.users.find_by_email("ada@example.com").await.unwrap().unwrap();
        node.core
            .users
            .update_name(&ada.id, Some("Ada Lovelace".into()), &Actor::cli())
            .await
            .unwrap();
        let browser = Browser::new(&node.base_url);
        let path = select_path(&id, "select_account");

        // No session: signing in is choosing; the request that comes back gets its code
        // (`authorize` fails on anything but the self-navigating page).
        let q = authorize(&browser, &node.url(&path), "ada@example.com").await;
        assert_eq!(q["state"], "st");
        let claims = id_token_claims(&node, &id, &secret, &q["code"]).await;
        assert_eq!(claims["sub"], ada.id.as_str());

        // With a session: the chooser, with the account, and no code.
        let res = browser.client.get(node.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("location").is_none());
        assert_eq!(res.headers()["cache-control"], "no-store");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("form-action 'self' http://127.0.0.1:9;"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let body = res.text().await.unwrap();
        for text in [
            "Choose an account",
            "to continue to Wiki",
            "ada@example.com",
            "Continue as Ada Lovelace",
            "Use another account",
            "action=\"/oauth2/select-account\"",
        ] {
            assert!(body.contains(text), "{text} in {body}");
        }
        assert!(!body.contains("code="), "{body}");
        let csrf = crate::pages::csrf_in(&body);
        let request = hidden(&body, "request");
        assert_eq!(request, path.split_once('?').unwrap().1);
        let session = hidden(&body, "session");
        assert!(session.starts_with("ses_"));

        // A forged re-authentication marker does not skip the chooser.
        let forged = format!("{path}&lk_auth_after={}.00ff", crate::support::unix_now());
        let (status, body, _) = browser.get(&forged).await;
        assert_eq!(status, 200);
        assert!(body.contains("Use another account"));

        // The choice needs the form's CSRF token and a same-site post.
        let form = |csrf: &str, session: &str, decision: &str| {
            vec![
                ("csrf_token".to_owned(), csrf.to_owned()),
                ("request".to_owned(), request.clone()),
                ("session".to_owned(), session.to_owned()),
                ("decision".to_owned(), decision.to_owned()),
            ]
        };
        let wrong = "A".repeat(43);
        let res = browser
            .client
            .post(node.url("/oauth2/select-account"))
            .header("Origin", node.base_url.clone())
            .form(&form(&wrong, &session, "continue"))
            .send()
            .await
            .unwrap();
        assert_eq!((res.status().as_u16(), res.headers().get("location")), (400, None));
        let res = browser
            .client
            .post(node.url("/oauth2/select-account"))
            .header("Origin", "http://evil.example")
            .form(&form(&csrf, &session, "continue"))
            .send()
            .await
            .unwrap();
        assert_eq!((res.status().as_u16(), res.headers().get("location")), (400, None));
        // A choice made for another session is asked again.
        let res = browser
            .client
            .post(node.url("/oauth2/select-account"))
            .header("Origin", node.base_url.clone())
            .form(&form(&csrf, "ses_01jzzzzzzzzzzzzzzzzzzzzzzz", "continue"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().contains("Use another account"));

        // Continue: the code, for the account shown.
        let res = browser
            .client
            .post(node.url("/oauth2/select-account"))
            .header("Origin", node.base_url.clone())
            .form(&form(&csrf, &session, "continue"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        let q = query_of(&location);
        assert_eq!((q["state"].as_str(), q["iss"].as_str()), ("st", node.base_url.as_str()));
        let claims = id_token_claims(&node, &id, &secret, &q["code"]).await;
        assert_eq!(claims["sub"], ada.id.as_str());
        assert_eq!(claims["email"], "ada@example.com");
        assert_eq!(claims["sid"], session.as_str());

        // A third-party client: the chooser, then its consent page.
        let other = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Other App".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap()
            .client
            .client_id;
        let (status, body, _) = browser.get(&select_path(&other, "select_account")).await;
        assert_eq!(status, 200);
        assert!(body.contains("to continue to Other App"), "{body}");
        let (status, body, location) = browser
            .post(
                "/oauth2/select-account",
                &[
                    ("csrf_token", &crate::pages::csrf_in(&body)),
                    ("request", &hidden(&body, "request")),
                    ("session", &hidden(&body, "session")),
                    ("decision", "continue"),
                ],
            )
            .await;
        assert_eq!((status.as_u16(), location), (200, None));
        assert!(body.contains("Allow Other App?"), "{body}");
        assert!(!body.contains("Use another account"));

        // prompt=none with select_account is invalid_request (OIDC Core 3.1.2.1), signed in
        // or not.
        for b in [&browser, &Browser::new(&node.base_url)] {
            let (status, _, location) = b.get(&select_path(&id, "none+select_account")).await;
            assert_eq!(status, 303);
            let q = query_of(&location.unwrap());
            assert_eq!((q["error"].as_str(), q["state"].as_str()), ("invalid_request", "st"));
            assert!(!q.contains_key("code"));
        }
        node.stop().await;
    }
    on_both_backends!(select_account_shows_the_account_chooser);

    /// "Use another account" ends the current session and signs in again into the same request,
    /// which then completes for the new account without the chooser.
    async fn select_account_use_another_account(backend: Backend) {
        let Some((node, _dir, id, secret)) = setup(backend).await else { return };
        let ada = node.core.users.find_by_email("ada@example.com").await.unwrap().unwrap();
        let bob = node.user("bob@example.com").await;
        let (ada_sid, ada_secret) = node.session(&ada).await;
        let browser = Browser::new(&node.base_url);
        browser.set_session(&ada_secret);

        let path = format!("{}&login_hint=ada%40example.com", select_path(&id, "select_account"));
        let (status, body, _) = browser.get(&path).await;
        assert_eq!(status, 200);
        assert!(body.contains("ada@example.com"), "{body}");
        let (status, _, location) = browser
            .post(
                "/oauth2/select-account",
                &[
                    ("csrf_token", &crate::pages::csrf_in(&body)),
                    ("request", &hidden(&body, "request")),
                    ("session", &ada_sid),
                    ("decision", "switch"),
                ],
            )
            .await;
        assert_eq!(status, 303);
        let location = location.unwrap();
        assert!(location.starts_with("/sign-in?return_to="), "{location}");
        // The hint named the account just turned down.
        assert!(!location.contains("login_hint=ada"), "{location}");

        // The old session is over: ended (not just forgotten by the browser), cookie dead.
        assert!(browser.cookie("latchkey_session").is_none_or(|v| v.is_empty()));
        let old = node.core.sessions.get(&ada_sid).await.unwrap();
        assert_eq!(old.status, latchkey_core::model::SessionStatus::Ended);
        assert_eq!(node.token_request(&ada_secret).await.status(), 401);

        // Sign in as someone else; back in the same request, no chooser: a code for Bob.
        let return_to = query_of(&location)["return_to"].clone();
        assert!(return_to.starts_with("/oauth2/authorize/resume?"), "{return_to}");
        assert!(return_to.contains("prompt=select_account"), "{return_to}");
        let (status, body, back) = browser.sign_in("bob@example.com", PASSWORD, &return_to).await;
        assert_eq!(status, 303, "{body}");
        assert_eq!(back.as_deref(), Some(return_to.as_str()));
        let (status, body, _) = browser.get(&return_to).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("Use another account"), "{body}");
        let q = query_of(&meta_refresh(&body));
        assert_eq!(q["state"], "st");
        let claims = id_token_claims(&node, &id, &secret, &q["code"]).await;
        assert_eq!(claims["sub"], bob.id.as_str());
        assert_eq!(claims["email"], "bob@example.com");
        assert_ne!(claims["sid"], ada_sid.as_str());

        // A new request with prompt=select_account asks again, now showing Bob.
        let (status, body, _) = browser.get(&path).await;
        assert_eq!(status, 200);
        assert!(body.contains("bob@example.com") && body.contains("Use another account"));
        node.stop().await;
    }
    on_both_backends!(select_account_use_another_account);

    /// Third-party clients ask for consent once; prompt=none without consent → consent_required.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn third_party_clients_need_consent() {
        let (node, _dir, _, _) = setup(Backend::Sqlite).await.unwrap();
        let third = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Other App".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let id = third.client.client_id;
        let browser = Browser::new(&node.base_url);
        let (_, _, location) = browser.get(&auth_path(&id, "")).await;
        let return_to = query_of(&location.unwrap())["return_to"].clone();
        browser.sign_in("ada@example.com", PASSWORD, &return_to).await;
        let (_, _, location) = browser.get(&auth_path(&id, "&prompt=none")).await;
        assert_eq!(query_of(&location.unwrap())["error"], "consent_required");
        let res = browser.client.get(node.url(&return_to)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("form-action 'self' http://127.0.0.1:9;"), "{csp}");
        let body = res.text().await.unwrap();
        assert!(body.contains("Allow Other App?"), "{body}");
        let csrf = crate::pages::csrf_in(&body);
        let request = return_to.trim_start_matches("/oauth2/authorize/resume?").to_owned();
        let (status, _, location) = browser
            .post(
                "/oauth2/consent",
                &[("csrf_token", &csrf), ("request", &request), ("decision", "deny")],
            )
            .await;
        assert_eq!(status, 303);
        assert_eq!(query_of(&location.unwrap())["error"], "access_denied");
        let (_, _, location) = browser
            .post(
                "/oauth2/consent",
                &[("csrf_token", &csrf), ("request", &request), ("decision", "allow")],
            )
            .await;
        assert!(query_of(&location.unwrap()).contains_key("code"));
        // Remembered: no page the second time.
        let (status, _, location) = browser.get(&auth_path(&id, "&prompt=none")).await;
        assert_eq!(status, 303);
        let code = query_of(&location.unwrap())["code"].clone();
        let secret = third.client_secret.unwrap();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let granted = token(&node, Some((&id, &secret)), &form).await;
        let refresh = granted.1["refresh_token"].as_str().unwrap().to_owned();

        // Listed on /account and revocable there; revoking also ends the app's refresh tokens.
        let (status, body, _) = browser.get("/account").await;
        assert_eq!(status, 200);
        assert!(body.contains("Other App"), "{body}");
        let csrf = crate::pages::csrf_in(&body);
        let (status, _, location) =
            browser.post(&format!("/account/apps/{id}/revoke"), &[("csrf_token", &csrf)]).await;
        assert_eq!(
            (status.as_u16(), location.as_deref()),
            (303, Some("/account?notice=app_revoked"))
        );
        let (_, body, _) = browser.get("/account").await;
        assert!(!body.contains("Other App"));
        let (_, _, location) = browser.get(&auth_path(&id, "&prompt=none")).await;
        assert_eq!(query_of(&location.unwrap())["error"], "consent_required");
        let r = token(
            &node,
            Some((&id, &secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(error_of(&r), (400, "invalid_grant"));
        node.stop().await;
    }

    /// A public client (auth method `none`, PKCE) with per-client ES256 / EdDSA ID tokens,
    /// verified by an independent JOSE library against the published JWKS.
    async fn public_client_with_other_id_token_algs(backend: Backend) {
        let Some((node, _dir, _, _)) = setup(backend).await else { return };
        for alg in ["ES256", "EdDSA"] {
            let spa = node
                .core
                .clients
                .create(
                    NewClient {
                        name: "SPA".into(),
                        public: true,
                        first_party: true,
                        redirect_uris: vec![REDIRECT.into()],
                        id_token_alg: Some(alg.into()),
                        ..Default::default()
                    },
                    &Actor::cli(),
                )
                .await
                .unwrap();
            let id = spa.client.client_id;
            let browser = Browser::new(&node.base_url);
            let code = code_for(&node, &browser, &id).await;
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", id.as_str()),
            ];
            let ok = token(&node, None, &form).await;
            assert_eq!(ok.0, 200, "{}", ok.1);
            let id_token = ok.1["id_token"].as_str().unwrap();
            let header = jsonwebtoken::decode_header(id_token).unwrap();
            assert_eq!(format!("{:?}", header.alg), alg);
            let jwks = node.jwks().await;
            let key = jsonwebtoken::DecodingKey::from_jwk(
                jwks.find(header.kid.as_deref().unwrap()).unwrap(),
            )
            .unwrap();
            let mut v = jsonwebtoken::Validation::new(header.alg);
            v.set_issuer(&[&node.base_url]);
            v.set_audience(&[&id]);
            let claims = jsonwebtoken::decode::<Value>(id_token, &key, &v).unwrap().claims;
            assert_eq!(claims["nonce"], "n");
            assert_eq!(claims["azp"], id.as_str());
            // Public clients cannot use client_credentials, nor authenticate with a secret.
            let cc =
                token(&node, None, &[("grant_type", "client_credentials"), ("client_id", &id)])
                    .await;
            assert_eq!(error_of(&cc), (400, "unauthorized_client"));
            let with_secret =
                token(&node, Some((&id, "x")), &[("grant_type", "client_credentials")]).await;
            assert_eq!(error_of(&with_secret), (401, "invalid_client"));
        }
        node.stop().await;
    }
    on_both_backends!(public_client_with_other_id_token_algs);

    pub(crate) fn assertion(pem: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.into());
        // PKCS#8 PEM → DER (jsonwebtoken's PEM parsing is behind a feature we do not build).
        use base64::Engine;
        let body: String =
            std::str::from_utf8(pem).unwrap().lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&der))
            .unwrap()
    }

    /// private_key_jwt (RFC 7523): valid once, never twice; alg none and tampered ones refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn private_key_jwt_client_credentials() {
        let (node, _dir, _, _) = setup(Backend::Sqlite).await.unwrap();
        let (pem, jwk) = SigningAlg::ES256.generate().unwrap();
        let mut jwk = Value::Object(jwk.as_ref().clone());
        jwk["kid"] = json!("k1");
        let m2m = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Batch".into(),
                    grant_types: vec!["client_credentials".into()],
                    token_endpoint_auth_method: Some("private_key_jwt".into()),
                    jwks: Some(json!({ "keys": [jwk] })),
                    allowed_scopes: vec!["reports:read".into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        assert!(m2m.client_secret.is_none());
        let id = m2m.client.client_id;
        let now = crate::support::unix_now();
        let claims = |jti: &str| json!({ "iss": id, "sub": id, "aud": node.url("/oauth2/token"), "exp": now + 60, "iat": now, "jti": jti });
        let send = |a: String, scope: &'static str| {
            let node_url = node.url("/oauth2/token");
            async move {
                let res = client()
                    .post(node_url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("scope", scope),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &a),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                (status, res.json::<Value>().await.unwrap())
            }
        };
        let good = assertion(&pem, "k1", &claims("j1"));
        let ok = send(good.clone(), "reports:read").await;
        assert_eq!(ok.0, 200, "{}", ok.1);
        let at = ok.1["access_token"].as_str().unwrap();
        assert_eq!(decode_payload(at)["sub"], id.as_str());
        assert_eq!(decode_header(at)["typ"], "at+jwt");
        assert!(ok.1.get("refresh_token").is_none() && ok.1.get("id_token").is_none());
        assert_eq!(
            error_of(&send(good, "reports:read").await),
            (401, "invalid_client"),
            "jti replay"
        );

        // alg none.
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none =
            format!("{}.{}.", b64(&json!({ "alg": "none", "kid": "k1" })), b64(&claims("j2")));
        assert_eq!(error_of(&send(none, "reports:read").await), (401, "invalid_client"));
        // Tampered payload under a valid signature.
        let signed = assertion(&pem, "k1", &claims("j3"));
        let parts: Vec<&str> = signed.split('.').collect();
        let mut c = claims("j3");
        c["exp"] = json!(now + 500);
        let tampered = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
        assert_eq!(error_of(&send(tampered, "reports:read").await), (401, "invalid_client"));
        // Signed by another key.
        let (other_pem, _) = SigningAlg::ES256.generate().unwrap();
        assert_eq!(
            error_of(&send(assertion(&other_pem, "k1", &claims("j4")), "reports:read").await),
            (401, "invalid_client")
        );
        // Wrong audience, expired.
        let mut c = claims("j5");
        c["aud"] = json!("https://elsewhere.example/token");
        assert_eq!(
            error_of(&send(assertion(&pem, "k1", &c), "reports:read").await),
            (401, "invalid_client")
        );
        let mut c = claims("j6");
        c["exp"] = json!(now - 5);
        assert_eq!(
            error_of(&send(assertion(&pem, "k1", &c), "reports:read").await),
            (401, "invalid_client")
        );
        // A scope the client may not have.
        assert_eq!(
            error_of(&send(assertion(&pem, "k1", &claims("j7")), "admin").await),
            (400, "invalid_scope")
        );
        node.stop().await;
    }

    pub(crate) async fn exchange(node: &TestServer, basic: (&str, &str), code: &str) -> Value {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let r = token(node, Some(basic), &form).await;
        assert_eq!(r.0, 200, "{}", r.1);
        r.1
    }

    pub(crate) async fn refresh(
        node: &TestServer,
        basic: (&str, &str),
        t: &str,
    ) -> (StatusCode, Value) {
        token(node, Some(basic), &[("grant_type", "refresh_token"), ("refresh_token", t)]).await
    }

    /// Concurrent refreshes are rotated in shared write transactions: every chain advances,
    /// and the same token sent several times at once is honoured once, then the family dies.
    async fn refresh_rotation_holds_under_concurrency(backend: Backend) {
        let Some((node, _dir, id, secret)) = setup(backend).await else { return };
        let basic = (id.as_str(), secret.as_str());
        let browser = Browser::new(&node.base_url);
        let mut chains = Vec::new();
        for _ in 0..6 {
            let code = code_for(&node, &browser, &id).await;
            chains.push(
                exchange(&node, basic, &code).await["refresh_token"].as_str().unwrap().to_owned(),
            );
        }
        // Six chains, each rotated five times, all at once.
        let runs = chains.iter().cloned().map(|first| {
            let node = &node;
            async move {
                let mut seen = vec![first.clone()];
                let mut t = first;
                for _ in 0..5 {
                    let (status, body) = refresh(node, basic, &t).await;
                    assert_eq!(status, 200, "{body}");
                    t = body["refresh_token"].as_str().unwrap().to_owned();
                    assert!(!seen.contains(&t));
                    seen.push(t.clone());
                }
                seen
            }
        });
        let results = futures_util::future::join_all(runs).await;
        let all: std::collections::HashSet<&String> = results.iter().flatten().collect();
        assert_eq!(all.len(), 6 * 6, "every token is distinct");
        // Old tokens of a chain are now reuse: the first one revokes chain 0's family.
        let (status, body) = refresh(&node, basic, &results[0][1]).await;
        assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
        let (status, _) = refresh(&node, basic, results[0].last().unwrap()).await;
        assert_eq!(status, 400, "the family of a reused token is revoked");
        // Other chains are untouched.
        let (status, body) = refresh(&node, basic, results[1].last().unwrap()).await;
        assert_eq!(status, 200, "{body}");

        // One token, five concurrent uses: exactly one succeeds, and its successor is revoked
        // with the family.
        let t = results[2].last().unwrap().clone();
        let tries = (0..5).map(|_| refresh(&node, basic, &t));
        let outcomes = futures_util::future::join_all(tries).await;
        let ok: Vec<&Value> = outcomes.iter().filter(|o| o.0 == 200).map(|o| &o.1).collect();
        assert_eq!(ok.len(), 1, "{outcomes:?}");
        for o in outcomes.iter().filter(|o| o.0 != 200) {
            assert_eq!(error_of(o), (400, "invalid_grant"));
        }
        let successor = ok[0]["refresh_token"].as_str().unwrap();
        assert_eq!(refresh(&node, basic, successor).await.0, 400);

        // A token presented by another client is refused and stays usable by its owner.
        let other = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Other".into(),
                    redirect_uris: vec![REDIRECT.into()],
                    first_party: true,
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let other_secret = other.client_secret.unwrap();
        let t = results[3].last().unwrap();
        let (status, _) = refresh(&node, (&other.client.client_id, &other_secret), t).await;
        assert_eq!(status, 400);
        assert_eq!(refresh(&node, basic, t).await.0, 200);

        // A session revoked through another node ends its refresh tokens at once.
        let t = results[4].last().unwrap();
        let ada = node.core.users.find_by_email("ada@example.com").await.unwrap().unwrap();
        let other_node = node.second_core().await;
        other_node.sessions.revoke_all_for_user(&ada.id, "test", &Actor::cli()).await.unwrap();
        let r = refresh(&node, basic, t).await;
        assert_eq!(error_of(&r), (400, "invalid_grant"));
        node.stop().await;
    }
    on_both_backends!(refresh_rotation_holds_under_concurrency);

    /// `org_id`/`org_role` come with the `organization` scope only, and follow role changes
    /// made on another node at the next refresh.
    async fn organisation_claims_follow_scope(backend: Backend) {
        let Some((node, _dir, id, secret)) = setup(backend).await else { return };
        let basic = (id.as_str(), secret.as_str());
        let browser = Browser::new(&node.base_url);
        let ada = node.core.users.find_by_email("ada@example.com").await.unwrap().unwrap();
        let acme = node.core.orgs.create("Acme Corp", "acme", &Actor::cli()).await.unwrap();
        let bob = node.user("bob@example.com").await;
        node.core.orgs.set_membership(&acme.id, &bob.id, "admin", &Actor::cli()).await.unwrap();
        node.core.orgs.set_membership(&acme.id, &ada.id, "admin", &Actor::cli()).await.unwrap();
        // Sign in, then make Acme the session's active organisation.
        let code = code_for(&node, &browser, &id).await;
        let plain = exchange(&node, basic, &code).await;
        let sessions = node.core.sessions.list(Some(&ada.id), false, 10).await.unwrap();
        assert_eq!(sessions.len(), 1);
        node.core
            .sessions
            .set_active_org(&sessions[0].id, Some(&acme.id), &Actor::cli())
            .await
            .unwrap();

        // Without the scope: nothing about organisations, even after the switch.
        let (status, body) = refresh(&node, basic, plain["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        for t in ["id_token", "access_token"] {
            assert!(decode_payload(body[t].as_str().unwrap()).get("org_id").is_none(), "{t}");
        }

        let path = auth_path(&id, "")
            .replace("scope=openid+offline_access", "scope=openid+offline_access+organization");
        let q = authorize(&browser, &node.url(&path), "ada@example.com").await;
        let scoped = exchange(&node, basic, &q["code"]).await;
        for t in ["id_token", "access_token"] {
            let c = decode_payload(scoped[t].as_str().unwrap());
            assert_eq!(
                (c["org_id"].as_str(), c["org_role"].as_str()),
                (Some(acme.id.as_str()), Some("admin")),
                "{t}"
            );
        }
        // A role change on another node shows at the next refresh.
        let other = node.second_core().await;
        other.orgs.set_membership(&acme.id, &ada.id, "member", &Actor::cli()).await.unwrap();
        let (status, body) = refresh(&node, basic, scoped["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let c = decode_payload(body["id_token"].as_str().unwrap());
        assert_eq!(c["org_role"], "member");
        // Removed from the organisation: the claims go.
        other.orgs.remove_member(&acme.id, &ada.id, &Actor::cli()).await.unwrap();
        let (status, body) = refresh(&node, basic, body["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert!(decode_payload(body["access_token"].as_str().unwrap()).get("org_id").is_none());
        node.stop().await;
    }
    on_both_backends!(organisation_claims_follow_scope);

    /// Clients and their secrets are cached behind the store revision: a secret rotated or a
    /// client deleted on another node stops working at the very next request here.
    async fn client_changes_reach_the_token_endpoint_at_once(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else { return };
        let dir = data_dir();
        let node = TestServer::start(dir.path(), &db, &[]).await;
        let created = node
            .core
            .clients
            .create(
                NewClient {
                    name: "Batch job".into(),
                    grant_types: vec!["client_credentials".into()],
                    allowed_scopes: vec!["reports".into()],
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let id = created.client.client_id;
        let old = created.client_secret.unwrap();
        // The other node first: opening it may bump the revision itself.
        let other = node.second_core().await;
        let grant = [("grant_type", "client_credentials")];
        // Twice: the second answer comes from the cache.
        for _ in 0..2 {
            assert_eq!(token(&node, Some((&id, &old)), &grant).await.0, 200);
        }
        let (_, new) = other.clients.rotate_secret(&id, 0, &Actor::cli()).await.unwrap();
        assert_eq!(
            error_of(&token(&node, Some((&id, &old)), &grant).await),
            (401, "invalid_client")
        );
        assert_eq!(token(&node, Some((&id, &new)), &grant).await.0, 200);
        other.clients.delete(&id, &Actor::cli()).await.unwrap();
        assert_eq!(
            error_of(&token(&node, Some((&id, &new)), &grant).await),
            (401, "invalid_client")
        );
        node.stop().await;
    }
    on_both_backends!(client_changes_reach_the_token_endpoint_at_once);
}
