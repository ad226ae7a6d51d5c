//! OpenID Connect client options that shape token claims: the audiences a client_credentials
//! client may ask for (RFC 8707 resource indicators) and JWT templates as a client's access- and
//! ID-token claims.

use latchkey_core::{
    Error, infra::audit::Actor, infra::jose::SigningAlg, oauth::clients::NewClient,
    oauth::jwt_templates::NewTemplate,
};
use serde_json::{Value, json};

use crate::{
    oidc::flows::{
        CHALLENGE, REDIRECT, VERIFIER, authorize, decode_header, decode_payload, error_of,
        introspect, token,
    },
    on_both_backends,
    pages::Browser,
    support::{Backend, TestDb, TestServer, client, data_dir, latchkey},
};

const API: &str = "https://api.example.com";
const REPORTS: &str = "https://reports.example.com/v1";

/// Verifies a token's signature against the published JWKS with an independent JOSE library,
/// with its issuer and (one of) its audience(s); returns the claims.
async fn verified(node: &TestServer, jwt: &str, audience: &str) -> Value {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks = node.jwks().await;
    let key =
        jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap())
            .unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[&node.base_url]);
    v.set_audience(&[audience]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .unwrap_or_else(|e| panic!("{e}: {}", decode_payload(jwt)))
        .claims
}

/// client_credentials with `audience` / `resource` (RFC 8707): the token's `aud` is what was
/// asked for, if registered; anything else is `invalid_target`.
async fn client_credentials_audiences(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let created = node
        .core
        .clients
        .create(
            NewClient {
                name: "Batch".into(),
                grant_types: vec!["client_credentials".into()],
                allowed_scopes: vec!["reports:read".into()],
                audiences: vec![API.into(), REPORTS.into(), API.into()],
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let id = created.client.client_id;
    let secret = created.client_secret.unwrap();
    assert_eq!(created.client.audiences, [API, REPORTS]);
    // Stored, not only echoed.
    assert_eq!(node.core.clients.get(&id).await.unwrap().audiences, [API, REPORTS]);
    let basic = Some((id.as_str(), secret.as_str()));
    let cc = |extra: &'static [(&'static str, &'static str)]| {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", "reports:read")];
        form.extend_from_slice(extra);
        form
    };

    // One audience: aud is that string, signed with the instance keys.
    let ok = token(&node, basic, &cc(&[("audience", API)])).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let api_token = ok.1["access_token"].as_str().unwrap().to_owned();
    let claims = verified(&node, &api_token, API).await;
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["scope"], "reports:read");
    assert_eq!(decode_header(&api_token)["typ"], "at+jwt");
    let ok = token(&node, basic, &cc(&[("resource", REPORTS)])).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let claims = verified(&node, ok.1["access_token"].as_str().unwrap(), REPORTS).await;
    assert_eq!(claims["aud"], REPORTS);

    // Several (resource is repeatable; audience and resource together), in request order.
    for form in [
        cc(&[("resource", REPORTS), ("resource", API)]),
        cc(&[("resource", REPORTS), ("audience", API), ("audience", REPORTS)]),
    ] {
        let ok = token(&node, basic, &form).await;
        assert_eq!(ok.0, 200, "{}", ok.1);
        let claims = verified(&node, ok.1["access_token"].as_str().unwrap(), API).await;
        assert_eq!(claims["aud"], json!([REPORTS, API]), "{form:?}");
    }

    // None asked for: aud stays the issuer, as before.
    let ok = token(&node, basic, &cc(&[])).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let plain = ok.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verified(&node, &plain, &node.base_url).await["aud"], node.base_url.as_str());

    // Unregistered, near misses and malformed resources: invalid_target, 400, no-store (the
    // `token` helper checks Cache-Control on every answer).
    for form in [
        cc(&[("audience", "https://evil.example")]),
        cc(&[("resource", "https://api.example.com/")]),
        cc(&[("resource", "HTTPS://api.example.com")]),
        cc(&[("audience", API), ("audience", "https://evil.example")]),
        cc(&[("resource", "api")]),
        cc(&[("resource", "https://api.example.com#x")]),
    ] {
        assert_eq!(
            error_of(&token(&node, basic, &form).await),
            (400, "invalid_target"),
            "{form:?}"
        );
    }
    let res = client()
        .post(node.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&cc(&[("audience", "https://evil.example")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["pragma"], "no-cache");

    // A client with no registered audiences may not name any.
    let other = node
        .core
        .clients
        .create(
            NewClient {
                name: "Other".into(),
                grant_types: vec!["client_credentials".into()],
                allowed_scopes: vec!["reports:read".into()],
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    let other_secret = other.client_secret.unwrap();
    let other_basic = Some((other.client.client_id.as_str(), other_secret.as_str()));
    assert!(other.client.audiences.is_empty());
    assert_eq!(
        error_of(&token(&node, other_basic, &cc(&[("audience", API)])).await),
        (400, "invalid_target")
    );

    // Introspection (for resource servers) accepts audiences registered for the token's client;
    // Latchkey's own userinfo accepts only tokens for the issuer.
    let seen = introspect(&node, &other.client.client_id, &other_secret, &api_token).await;
    assert_eq!((seen["active"].as_bool(), seen["aud"].as_str()), (Some(true), Some(API)));
    let seen = introspect(&node, &id, &secret, &plain).await;
    assert_eq!(seen["active"], true);
    let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(&api_token).send().await;
    assert_eq!(res.unwrap().status(), 401);
    node.core.clients.delete(&id, &Actor::cli()).await.unwrap();
    let seen = introspect(&node, &other.client.client_id, &other_secret, &api_token).await;
    assert_eq!(seen["active"], false, "its client and so its audiences are gone");

    // Registration rules: absolute URIs without fragments (for any grant: user grants name
    // them with `resource` too).
    for (grants, aud) in [
        (vec!["client_credentials"], "api"),
        (vec!["client_credentials"], "https://api.example.com/#x"),
        (vec!["authorization_code"], "https://api.example.com/ x"),
    ] {
        let bad = NewClient {
            name: "Bad".into(),
            redirect_uris: vec![REDIRECT.into()],
            grant_types: grants.into_iter().map(str::to_owned).collect(),
            audiences: vec![aud.into()],
            ..Default::default()
        };
        assert!(
            matches!(
                node.core.clients.create(bad, &Actor::cli()).await,
                Err(Error::Invalid { field: "audience", .. })
            ),
            "{aud}"
        );
    }
    node.stop().await;
}
on_both_backends!(client_credentials_audiences);

fn auth_path(client_id: &str) -> String {
    format!(
        "/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&scope=openid+email+offline_access&state=st&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256"
    )
}

/// Sets a stored template's claims directly, bypassing the checks of `templates add` (as a
/// template written by hand or by an older version could be).
async fn force_template_claims(node: &TestServer, name: &str, claims: &Value) {
    use latchkey_core::infra::entity::jwt_template;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let res = jwt_template::Entity::update_many()
        .col_expr(jwt_template::Column::Claims, Expr::value(claims.to_string()))
        .filter(jwt_template::Column::Name.eq(name))
        .exec(node.core.store.db())
        .await
        .unwrap();
    assert_eq!(res.rows_affected, 1);
}

/// A client's access- and ID-token templates: rendered for the user and session of the grant
/// and added to the tokens (code and refresh grants), never replacing a protocol claim, never
/// applied to client_credentials.
async fn client_templates_shape_user_tokens(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = data_dir();
    let node = TestServer::start(dir.path(), &db, &[]).await;
    let user = node.user("ada@example.com").await;
    let actor = Actor::cli();
    let templates = &node.core.jwt_templates;
    // Claims the protocol sets that `templates add` does not refuse (only iss sub sid iat nbf
    // exp azp are refused there) must still lose against the protocol's values.
    let at_claims = json!({
        "role": "authenticated",
        "email": "{{user.primary_email}}",
        "via": "{{session.auth_method}}",
        "aud": "https://evil.example",
        "scope": "admin",
        "client_id": "client_evil",
        "jti": "forged",
        "grant_id": "forged",
        "auth_time": 1,
        "amr": ["forged"],
        "typ": "forged",
    });
    let id_claims = json!({
        "role": "member",
        "greeting": "hello {{user.primary_email}}",
        "email": "eve@example.com",
        "nonce": "forged",
        "at_hash": "forged",
        "aud": "client_evil",
        "acr": "forged",
    });
    for (name, claims) in [("api-claims", &at_claims), ("id-claims", &id_claims)] {
        let new = NewTemplate { name: name.into(), claims: claims.clone(), ..Default::default() };
        templates.create(new, &actor).await.unwrap();
    }
    // The first line of defence: a template may not name sub or iss at all...
    for reserved in ["sub", "iss"] {
        let new = NewTemplate {
            name: "bad".into(),
            claims: json!({ reserved: "forged" }),
            ..Default::default()
        };
        assert!(matches!(templates.create(new, &actor).await, Err(Error::Invalid { .. })));
    }
    // ...and one that does anyway (written into the store directly) changes nothing either.
    let mut forced_at = at_claims.clone();
    let mut forced_id = id_claims.clone();
    for c in [&mut forced_at, &mut forced_id] {
        for (k, v) in [
            ("sub", json!("usr_forged")),
            ("iss", json!("https://evil.example")),
            ("sid", json!("forged")),
            ("exp", json!(1)),
            ("iat", json!(1)),
            ("azp", json!("client_evil")),
        ] {
            c[k] = v;
        }
    }
    force_template_claims(&node, "api-claims", &forced_at).await;
    force_template_claims(&node, "id-claims", &forced_id).await;

    // Registration: templates must exist, and are for user tokens (authorization_code).
    let wiki = |at: Option<&str>, id: Option<&str>| NewClient {
        name: "Wiki".into(),
        redirect_uris: vec![REDIRECT.into()],
        first_party: true,
        access_token_template: at.map(str::to_owned),
        id_token_template: id.map(str::to_owned),
        ..Default::default()
    };
    for (at, id, field) in [
        (Some("nope"), None, "access_token_template"),
        (None, Some("nope"), "id_token_template"),
        (Some("api-claims"), Some("nope"), "id_token_template"),
    ] {
        let res = node.core.clients.create(wiki(at, id), &actor).await;
        assert!(matches!(res, Err(Error::Invalid { field: f, .. }) if f == field), "{res:?}");
    }
    let m2m_only = NewClient {
        grant_types: vec!["client_credentials".into()],
        redirect_uris: vec![],
        ..wiki(Some("api-claims"), None)
    };
    assert!(matches!(
        node.core.clients.create(m2m_only, &actor).await,
        Err(Error::Invalid { field: "access_token_template", .. })
    ));
    let created =
        node.core.clients.create(wiki(Some("api-claims"), Some("id-claims")), &actor).await;
    let created = created.unwrap();
    let id = created.client.client_id.clone();
    let secret = created.client_secret.unwrap();
    let stored = node.core.clients.get(&id).await.unwrap();
    assert_eq!(stored.access_token_template.as_deref(), Some("api-claims"));
    assert_eq!(stored.id_token_template.as_deref(), Some("id-claims"));
    let basic = Some((id.as_str(), secret.as_str()));

    // The code flow.
    let browser = Browser::new(&node.base_url);
    let q = authorize(&browser, &node.url(&auth_path(&id)), "ada@example.com").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let ok = token(&node, basic, &form).await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let now = crate::support::unix_now();
    let check_access = |at: &Value| {
        assert_eq!(at["role"], "authenticated");
        assert_eq!(at["email"], "ada@example.com");
        assert_eq!(at["via"], "password");
        assert_eq!(at["sub"], user.id.as_str());
        assert_eq!(at["iss"], node.base_url.as_str());
        assert_eq!(at["aud"], node.base_url.as_str());
        assert_eq!(at["client_id"], id.as_str());
        assert_eq!(at["scope"], "openid email offline_access");
        assert!(at["jti"].as_str().unwrap().starts_with("at_"), "{at}");
        assert_ne!(at["grant_id"], "forged");
        assert_ne!(at["sid"], "forged");
        assert_eq!(at["amr"], json!(["pwd"]));
        assert!(at["auth_time"].as_i64().unwrap() > 1);
        assert!(at["exp"].as_i64().unwrap() > now);
        assert!(at.get("typ").is_none(), "{at}");
    };
    let access = ok.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(decode_header(&access)["typ"], "at+jwt");
    let at = verified(&node, &access, &node.base_url).await;
    check_access(&at);
    let id_token = ok.1["id_token"].as_str().unwrap();
    let it = verified(&node, id_token, &id).await;
    assert_eq!(it["role"], "member");
    assert_eq!(it["greeting"], "hello ada@example.com");
    assert_eq!(it["email"], "ada@example.com", "the scope's email claim is Latchkey's");
    assert_eq!(it["sub"], user.id.as_str());
    assert_eq!(it["iss"], node.base_url.as_str());
    assert_eq!((it["aud"].as_str(), it["azp"].as_str()), (Some(id.as_str()), Some(id.as_str())));
    assert_eq!(it["nonce"], "n");
    assert_eq!(it["sid"], at["sid"]);
    assert_ne!(it["at_hash"], "forged");
    assert!(it.get("acr").is_none(), "{it}");
    // Signed with the client's algorithm (RS256 by default), not the template's settings.
    assert_eq!(decode_header(id_token)["alg"], "RS256");

    // The access token still works at userinfo (its aud was not replaced).
    let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["sub"], user.id.as_str());

    // The refresh grant renders the templates again; a refreshed ID token has no nonce, and
    // the template's does not slip in.
    let refresh = ok.1["refresh_token"].as_str().unwrap();
    let r =
        token(&node, basic, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    check_access(&verified(&node, r.1["access_token"].as_str().unwrap(), &node.base_url).await);
    let it = verified(&node, r.1["id_token"].as_str().unwrap(), &id).await;
    assert_eq!((it["role"].as_str(), it["sub"].as_str()), (Some("member"), Some(user.id.as_str())));
    assert!(it.get("nonce").is_none(), "{it}");

    // client_credentials tokens have no user: the template does not apply to them.
    let both = node
        .core
        .clients
        .create(
            NewClient {
                name: "Both".into(),
                redirect_uris: vec![REDIRECT.into()],
                grant_types: vec!["authorization_code".into(), "client_credentials".into()],
                allowed_scopes: vec!["openid".into(), "reports:read".into()],
                access_token_template: Some("api-claims".into()),
                audiences: vec![API.into()],
                ..Default::default()
            },
            &actor,
        )
        .await
        .unwrap();
    let both_secret = both.client_secret.unwrap();
    let cc = token(
        &node,
        Some((&both.client.client_id, &both_secret)),
        &[("grant_type", "client_credentials"), ("scope", "reports:read")],
    )
    .await;
    assert_eq!(cc.0, 200, "{}", cc.1);
    let claims = verified(&node, cc.1["access_token"].as_str().unwrap(), &node.base_url).await;
    assert!(claims.get("role").is_none(), "{claims}");
    assert_eq!(claims["sub"], both.client.client_id.as_str());

    // Latchkey's userinfo takes only tokens for the issuer: not even a user token (signed with
    // the instance keys) whose aud is registered for its client, which introspection accepts.
    let mut other_aud = at.clone();
    other_aud["client_id"] = json!(both.client.client_id);
    for (aud, status) in [(json!(node.base_url), 200), (json!(API), 401), (json!([API]), 401)] {
        other_aud["aud"] = aud.clone();
        let jwt = node.core.oauth.sign(SigningAlg::RS256, "at+jwt", &other_aud).await.unwrap();
        let res = client().get(node.url("/oauth2/userinfo")).bearer_auth(&jwt).send().await;
        assert_eq!(res.unwrap().status(), status, "{aud}");
        assert_eq!(introspect(&node, &id, &secret, &jwt).await["active"], true, "{aud}");
    }
    other_aud["aud"] = json!([API, "https://evil.example"]);
    let jwt = node.core.oauth.sign(SigningAlg::RS256, "at+jwt", &other_aud).await.unwrap();
    assert_eq!(introspect(&node, &id, &secret, &jwt).await["active"], false);

    // A template in use cannot be deleted; once its clients are gone it can.
    let res = templates.delete("api-claims", &actor).await;
    assert!(matches!(res, Err(Error::Conflict(_))), "{res:?}");
    assert!(templates.get("api-claims").await.is_ok());
    node.core.clients.delete(&both.client.client_id, &actor).await.unwrap();
    assert!(matches!(templates.delete("api-claims", &actor).await, Err(Error::Conflict(_))));
    node.core.clients.delete(&id, &actor).await.unwrap();
    templates.delete("api-claims", &actor).await.unwrap();
    templates.delete("id-claims", &actor).await.unwrap();
    node.stop().await;
}
on_both_backends!(client_templates_shape_user_tokens);

fn run_json(cwd: &std::path::Path, args: &[&str]) -> Value {
    let out = latchkey(cwd, &[]).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs a command that must fail with `code`: 2 for a refused argument, 1 for a refusal at run
/// time.
fn run_fails(cwd: &std::path::Path, code: i32, args: &[&str]) -> String {
    let out = latchkey(cwd, &[]).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run_text(cwd: &std::path::Path, args: &[&str]) -> String {
    let out = latchkey(cwd, &[]).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_client_audiences_and_templates() {
    let cwd = data_dir();
    let dir = cwd.path();
    let help = run_text(dir, &["clients", "add", "--help"]);
    for flag in ["--audience <URI>", "--access-token-template <NAME>", "--id-token-template <NAME>"]
    {
        assert!(help.contains(flag), "{flag}: {help}");
    }
    run_json(
        dir,
        &["templates", "add", "--name", "api", "--claims", r#"{"role": "authenticated"}"#],
    );

    // Unknown templates are refused, and nothing is registered.
    for flag in ["--access-token-template", "--id-token-template"] {
        let err = run_fails(
            dir,
            2,
            &[
                "clients",
                "add",
                "--name",
                "Bad",
                "--redirect-uri",
                "https://x.example.com/cb",
                flag,
                "nope",
            ],
        );
        assert!(err.contains("no JWT template named \"nope\""), "{err}");
    }
    assert_eq!(run_json(dir, &["clients", "list"]), json!([]));

    let wiki = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "Wiki",
            "--redirect-uri",
            "https://wiki.example.com/cb",
            "--access-token-template",
            "api",
            "--id-token-template",
            "api",
        ],
    );
    assert_eq!(
        (wiki["access_token_template"].as_str(), wiki["id_token_template"].as_str()),
        (Some("api"), Some("api"))
    );
    assert_eq!(wiki["audiences"], json!([]));
    let wiki_id = wiki["client_id"].as_str().unwrap().to_owned();

    let m2m = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "Batch",
            "--grant-type",
            "client_credentials",
            "--audience",
            API,
            "--audience",
            REPORTS,
        ],
    );
    assert_eq!(m2m["audiences"], json!([API, REPORTS]));
    assert!(m2m["access_token_template"].is_null());
    let m2m_id = m2m["client_id"].as_str().unwrap().to_owned();
    // A code-flow app registers its API too (RFC 8707 `resource` on user grants).
    let app = run_json(
        dir,
        &[
            "clients",
            "add",
            "--name",
            "Notes",
            "--redirect-uri",
            "https://x.example.com/cb",
            "--audience",
            API,
        ],
    );
    assert_eq!(app["audiences"], json!([API]));
    let err = run_fails(
        dir,
        2,
        &[
            "clients",
            "add",
            "--name",
            "Bad",
            "--grant-type",
            "client_credentials",
            "--audience",
            "api",
        ],
    );
    assert!(err.contains("audience"), "{err}");

    // show and list, as JSON and as text.
    let shown = run_json(dir, &["clients", "show", &m2m_id]);
    assert_eq!(shown["audiences"], json!([API, REPORTS]));
    let shown = run_json(dir, &["clients", "show", &wiki_id]);
    assert_eq!(shown["id_token_template"], "api");
    let listed = run_json(dir, &["clients", "list"]);
    assert_eq!(listed[0]["access_token_template"], "api");
    assert_eq!(listed[1]["audiences"], json!([API, REPORTS]));
    let text = run_text(dir, &["clients", "show", &m2m_id]);
    assert!(text.contains(&format!("audience:       {API}\n")), "{text}");
    assert!(text.contains(&format!("audience:       {REPORTS}\n")), "{text}");
    let text = run_text(dir, &["clients", "show", &wiki_id]);
    assert!(text.contains("at template:    api\n") && text.contains("id template:    api\n"));
    let text = run_text(dir, &["clients", "list"]);
    assert!(text.contains("TEMPLATES (AT/ID)") && text.contains("AUDIENCES"), "{text}");
    assert!(text.contains(" api/api "), "{text}");
    assert!(text.contains(&format!(" {API},{REPORTS} ")), "{text}");

    // A template in use cannot be deleted.
    let err = run_fails(dir, 1, &["templates", "delete", "api"]);
    assert!(err.contains(&wiki_id), "{err}");
    run_json(dir, &["clients", "delete", &wiki_id]);
    assert_eq!(run_json(dir, &["templates", "delete", "api"])["name"], "api");
}
