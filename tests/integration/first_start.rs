//! Start-up of the real binary: zero-configuration first start, config errors, graceful stop.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::support::{client, data_dir, free_listener, latchkey};

fn free_port() -> u16 {
    free_listener().local_addr().unwrap().port()
}

/// Spawns `latchkey serve` and waits until /readyz answers; returns the child and its stdout lines.
async fn spawn_serve(cwd: &std::path::Path, port: u16) -> (Child, Vec<String>) {
    let mut child = latchkey(cwd, &[("LATCHKEY_LISTEN", &format!("127.0.0.1:{port}"))])
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        if let Ok(res) = client().get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && res.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Everything start-up prints comes before its last line, "Latchkey listening on …": wait
    // for that one, so an absent line is absent for good.
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("Latchkey listening on")) {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("no listening line ({e}) in {lines:?}"),
        }
    }
    (child, lines)
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no graceful exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_on_an_empty_directory() {
    let cwd = data_dir();
    let port = free_port();
    let (child, lines) = spawn_serve(cwd.path(), port).await;
    assert!(
        lines.iter().any(|l| l.contains("latchkey admin create --email")),
        "no first-admin hint in {lines:?}"
    );

    let data = cwd.path().join("latchkey-data");
    assert!(data.join("latchkey.db").is_file());
    let key_mode = std::fs::metadata(data.join("master.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);

    let jwks: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{port}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "private part published");

    // The CLI works on the same data directory while the server runs.
    let out = latchkey(cwd.path(), &[])
        .args(["admin", "create", "--email", "root@example.com", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["is_admin"], true);
    assert!(created["generated_password"].as_str().unwrap().len() >= 32);

    assert!(terminate(child).success(), "SIGTERM should stop the server cleanly");

    // Second start: same key, no admin hint any more.
    let (child, lines) = spawn_serve(cwd.path(), port).await;
    assert!(!lines.iter().any(|l| l.contains("admin create")), "{lines:?}");
    let again: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{port}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["keys"][0]["kid"], keys[0]["kid"]);
    assert!(terminate(child).success());
}

#[test]
fn config_errors_name_the_setting() {
    let cwd = data_dir();
    for (name, value) in [
        ("LATCHKEY_LISTEN", "localhost"),
        ("LATCHKEY_PUBLIC_URL", "http://idp.example.com"),
        ("LATCHKEY_DATABASE_URL", "mysql://root@localhost/x"),
        ("LATCHKEY_SESSION_TOKEN_TTL", "sometimes"),
        ("LATCHKEY_SESSION_TOKEN_ALG", "none"),
        ("LATCHKEY_LOG_FORMAT", "yaml"),
        ("LATCHKEY_SMTP_URL", "mail.example.com"),
        ("LATCHKEY_ALLOWED_ORIGINS", "https://ok.example.com,notanorigin"),
        ("LATCHKEY_MASTER_KEY", "too-short"),
    ] {
        for command in [&["serve"][..], &["config", "check"][..]] {
            let out = latchkey(cwd.path(), &[(name, value)]).args(command).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if name == "LATCHKEY_MASTER_KEY" && command == ["config", "check"] {
                // The key is only decoded when the store opens.
                assert!(out.status.success(), "{stderr}");
                continue;
            }
            assert_eq!(out.status.code(), Some(2), "{name}={value} {command:?}: {stderr}");
            assert!(stderr.contains(name), "{name}={value}: {stderr}");
            assert!(stderr.contains("expected"), "{stderr}");
        }
    }
    // A bad value stops start-up before anything is written.
    assert!(!cwd.path().join("latchkey-data").exists());

    let key_file = cwd.path().join("missing.key");
    let out = latchkey(cwd.path(), &[("LATCHKEY_MASTER_KEY_FILE", key_file.to_str().unwrap())])
        .args(["users", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LATCHKEY_MASTER_KEY_FILE"));

    let toml = cwd.path().join("latchkey.toml");
    std::fs::write(&toml, "session_idle_timeout = \"1d\"\nsession_absolute_timeout = \"1h\"\n")
        .unwrap();
    let out = latchkey(cwd.path(), &[])
        .args(["--config", toml.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("LATCHKEY_SESSION_ABSOLUTE_TIMEOUT")
            && stderr.contains("session_absolute_timeout"),
        "{stderr}"
    );

    std::fs::write(
        &toml,
        "listen = \"127.0.0.1:9999\"\nsmtp_url = \"smtp://user:pw-secret@127.0.0.1:2525\"\n",
    )
    .unwrap();
    let out = latchkey(
        cwd.path(),
        &[
            ("LATCHKEY_MASTER_KEY", "c2VjcmV0LXZhbHVl"),
            ("LATCHKEY_DATABASE_URL", "postgres://u:db-secret@127.0.0.1/x"),
        ],
    )
    .args(["--config", toml.to_str().unwrap(), "config", "check", "--json"])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        !shown.contains("pw-secret")
            && !shown.contains("db-secret")
            && !shown.contains("c2VjcmV0LXZhbHVl"),
        "{shown}"
    );
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["settings"]["LATCHKEY_LISTEN"], "127.0.0.1:9999");
    assert_eq!(v["settings"]["LATCHKEY_MASTER_KEY"], "<redacted>");
}

#[test]
fn every_command_has_help() {
    let cwd = data_dir();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["config", "--help"],
        &["config", "check", "--help"],
        &["admin", "create", "--help"],
        &["users", "--help"],
        &["users", "add", "--help"],
        &["users", "list", "--help"],
        &["users", "show", "--help"],
        &["users", "deactivate", "--help"],
        &["users", "unlock", "--help"],
        &["users", "reactivate", "--help"],
        &["sessions", "create", "--help"],
        &["sessions", "list", "--help"],
        &["sessions", "revoke", "--help"],
        &["keys", "list", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let out = latchkey(cwd.path(), &[]).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{args:?}");
    }
    let out = latchkey(cwd.path(), &[]).args(["sessions", "revoke"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "revoke needs an id or --user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_ids() {
    let cwd = data_dir();
    let port = free_port();
    let mut child = latchkey(
        cwd.path(),
        &[("LATCHKEY_LISTEN", &format!("127.0.0.1:{port}")), ("LATCHKEY_LOG_FORMAT", "json")],
    )
    .arg("serve")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        if let Ok(res) = client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .header("X-Request-Id", "probe-42")
            .send()
            .await
            && res.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = terminate(child);
    assert!(status.success());
    let lines: Vec<String> = rx.try_iter().collect();
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let access = events
        .iter()
        .find(|e| e["span"]["request_id"] == "probe-42")
        .unwrap_or_else(|| panic!("no access log with the request id in {lines:?}"));
    assert_eq!(access["status"], 200);
    assert_eq!(access["span"]["path"], "/healthz");
    assert!(events.iter().any(|e| e["message"] == "Latchkey is ready"));
}

/// `latchkey serve` with stderr captured line by line; returns once /healthz answers.
async fn spawn_logging(
    cwd: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let listen = format!("127.0.0.1:{port}");
    let mut env = env.to_vec();
    env.push(("LATCHKEY_LISTEN", &listen));
    let mut cmd = latchkey(cwd, &env);
    // As under systemd or with `2>file`: stderr is not a terminal, and NO_COLOR is not set.
    cmd.env_remove("NO_COLOR");
    let mut child = cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        if let Ok(res) = client().get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && res.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, rx)
}

/// Sends raw bytes on a fresh connection and returns the status line of the answer.
fn raw_request(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_not_errors_and_piped_logs_are_plain_text() {
    let cwd = data_dir();
    let port = free_port();
    let (child, rx) = spawn_logging(cwd.path(), port, &[("LATCHKEY_LOG_LEVEL", "debug")]).await;
    let malformed: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /sign-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    ];
    for _ in 0..5 {
        for bytes in malformed {
            let status = raw_request(port, bytes);
            assert!(status.is_empty() || status.contains(" 400 "), "{status}");
        }
    }
    // Malformed bodies and parameters that reach the app: 4xx, not errors either.
    let base = format!("http://127.0.0.1:{port}");
    for (path, content_type, body) in [
        ("/v1/organizations", "application/json", "{not json"),
        ("/oauth2/token", "application/x-www-form-urlencoded", "%%%"),
        ("/oauth2/introspect", "text/plain", "token=x"),
        ("/sign-in", "application/x-www-form-urlencoded", "csrf_token=%ff"),
    ] {
        let res = client()
            .post(format!("{base}{path}"))
            .header("Content-Type", content_type)
            .header("X-Latchkey-CSRF", "1")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{path}: {}", res.status());
    }
    let res = client().get(format!("{base}/oauth2/authorize?%zz=1")).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    assert!(terminate(child).success());

    let lines: Vec<String> = rx.try_iter().collect();
    assert!(lines.iter().any(|l| l.contains("Latchkey is ready")), "{lines:?}");
    let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(coloured.is_empty(), "ANSI codes in piped logs: {coloured:?}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "client mistakes logged as errors: {errors:?}");
    // Still on record for whoever debugs, at debug level.
    assert!(
        lines.iter().any(|l| l.contains("DEBUG") && l.contains("request parse error")),
        "{lines:?}"
    );
}

#[test]
fn a_database_that_cannot_be_opened_stops_start_up_fast_and_writes_no_key() {
    let cwd = data_dir();
    let refused = free_port(); // nothing listens there any more
    let postgres = format!("postgres://latchkey:db-secret@127.0.0.1:{refused}/latchkey");
    let directory = cwd.path().join("a-directory.db");
    std::fs::create_dir(&directory).unwrap();
    let sqlite = format!("sqlite://{}?mode=rwc", directory.display());
    let blocker = cwd.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let under_a_file = blocker.join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    for (env, named) in [
        (("LATCHKEY_DATABASE_URL", postgres.as_str()), "LATCHKEY_DATABASE_URL"),
        (("LATCHKEY_DATABASE_URL", sqlite.as_str()), directory.to_str().unwrap()),
        (("LATCHKEY_DATA_DIR", under_a_file.to_str().unwrap()), under_a_file.to_str().unwrap()),
    ] {
        for command in [&["serve"][..], &["users", "list"], &["migrate"]] {
            let started = Instant::now();
            let out = latchkey(cwd.path(), &[env, ("LATCHKEY_LISTEN", &listen)])
                .args(command)
                .output()
                .unwrap();
            let took = started.elapsed();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(took < Duration::from_secs(4), "{env:?} {command:?} took {took:?}");
            assert_eq!(out.status.code(), Some(2), "{env:?} {command:?}: {stderr}");
            assert!(stderr.contains(named), "{env:?} {command:?}: {stderr}");
            assert!(stderr.contains("LATCHKEY_DATABASE_URL"), "{stderr}");
            assert!(!stderr.contains("db-secret"), "password shown: {stderr}");
            assert!(!cwd.path().join("latchkey-data/master.key").exists(), "{env:?} {command:?}");
        }
    }
    // The refusal says why.
    let out = latchkey(cwd.path(), &[("LATCHKEY_DATABASE_URL", &postgres)])
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(stderr.contains("<redacted>"), "{stderr}");
}
