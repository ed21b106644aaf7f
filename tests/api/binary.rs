//! The real binary: the first-run experience, the CLI, configuration errors, signals.
use serde_json::{Value, json};

use crate::{
    helpers::{STRONG, TestApp, TestDb},
    process::{Served, run, text},
};

#[tokio::test]
async fn fresh_start_creates_the_sqlite_file_serves_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &[], &["--bind", "127.0.0.1:0"]);
    assert!(dir.path().join("portcullis.sqlite3").exists());
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/healthz", served.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let res = http
        .post(format!("{}/register/", served.base))
        .json(&json!({"username": "john", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"password": ["This password is too common."]}));
    let res = http
        .post(format!("{}/register/", served.base))
        .json(&json!({"username": "john", "password": STRONG}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(served.stop().success(), "SIGTERM exits 0");
    // The same user is there for the CLI afterwards.
    let out = run(
        dir.path(),
        &[("PORTCULLIS_SUPERUSER_PASSWORD", STRONG.into())],
        &["createsuperuser", "--noinput", "--username", "john"],
        "",
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("A user with that username already exists."), "{}", text(&out.stderr));
}

#[tokio::test]
async fn env_and_flags_override_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    let mut env = db.env();
    env.push(("PORTCULLIS_SERVER__BIND", "127.0.0.1:1".into()));
    // The flag beats the environment variable, which beats the file.
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    assert!(!served.base.ends_with(":1"));
    assert!(served.stop().success());
}

#[test]
fn configuration_errors_name_the_key_and_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    type Env<'a> = &'a [(&'a str, String)];
    let cases: [(&str, Env, &str); 7] = [
        ("[[gateway.rules]]\npath = \"/x/\"\npolicy = \"is_wizard\"\n", &[], "gateway.rules"),
        ("[[gateway.rules]]\npath = \"x\"\npolicy = \"allow_any\"\n", &[], "gateway.rules[0]"),
        ("[server]\nbnd = \"127.0.0.1:0\"\n", &[], "bnd"),
        ("[server]\nmax_body_bytes = \"lots\"\n", &[], "server.max_body_bytes"),
        ("[auth]\nchain = [\"session\", \"magic\"]\n", &[], "auth.chain"),
        ("", &[("PORTCULLIS_SESSION__COOKIE_AGE", "soon".into())], "session.cookie_age"),
        ("", &[("PORTCULLIS_NOPE__KEY", "1".into())], "nope"),
    ];
    for (file, env, key) in cases {
        std::fs::write(&cfg, file).unwrap();
        let out = run(dir.path(), env, &["--config", cfg.to_str().unwrap(), "serve", "--bind", "127.0.0.1:0"], "");
        assert!(!out.status.success(), "{file}");
        let err = text(&out.stderr).to_lowercase();
        assert!(err.contains("configuration error") && err.contains(key), "{key}: {err}");
        assert!(!dir.path().join("portcullis.sqlite3").exists(), "nothing started half-configured");
    }
    // Raising the login throttle alone is enough: the per-IP one follows it ("auto")...
    std::fs::write(&cfg, "[throttle]\nlogin = \"1000/min\"\n").unwrap();
    let out = run(dir.path(), &[], &["--config", cfg.to_str().unwrap(), "migrate"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ...and one set below it says which key to set, and to what.
    std::fs::write(&cfg, "[throttle]\nlogin = \"1000/min\"\nlogin_ip = \"20/min\"\n").unwrap();
    let out = run(dir.path(), &[], &["--config", cfg.to_str().unwrap(), "migrate"], "");
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("throttle.login_ip") && err.contains("\"4000/min\""), "{err}");
    let out = run(dir.path(), &[], &["--config", "/no/such/file.toml", "migrate"], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/no/such/file.toml"));
}

#[test]
fn createsuperuser_noinput_and_interactive() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    let mut env = db.env();
    let out = run(dir.path(), &env, &["createsuperuser", "--noinput", "--username", "admin"], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("PORTCULLIS_SUPERUSER_PASSWORD"));
    env.push(("PORTCULLIS_SUPERUSER_PASSWORD", STRONG.into()));
    let out = run(
        dir.path(),
        &env,
        &["createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Superuser created successfully.");
    let out = run(dir.path(), &env, &["createsuperuser", "--noinput", "--username", "ADMIN"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("username: A user with that username already exists."));
    let out = run(dir.path(), &env, &["createsuperuser", "--noinput"], "");
    assert!(text(&out.stderr).contains("You must use --username with --noinput."));
    // Interactive: piped answers; the first pair of passwords does not match.
    let answers = format!("root2\nroot2@example.com\n{STRONG}\nother\n{STRONG}\n{STRONG}\n");
    let out = run(dir.path(), &db.env(), &["createsuperuser"], &answers);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Error: Your passwords didn't match."));
    // Validators apply: a common password is refused with Django's message.
    let out =
        run(dir.path(), &db.env(), &["createsuperuser", "--username", "weak", "--email", ""], "password\npassword\n");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("password: This password is too common."), "{}", text(&out.stderr));
}

#[tokio::test]
async fn changepassword_rotates_the_hash() {
    let app = TestApp::new().await;
    app.register("carol").await;
    let dir = tempfile::tempdir().unwrap();
    let env = app.db.env();
    let out = run(dir.path(), &env, &["changepassword", "nobody"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("user 'nobody' does not exist"));
    let new = "an0ther-l0ng-passphrase";
    let out = run(dir.path(), &env, &["changepassword", "carol"], &format!("{new}\n{new}\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Password changed successfully for user 'carol'"));
    let out = run(dir.path(), &env, &["changepassword", "carol"], "a\nb\nc\nd\ne\nf\n");
    assert!(!out.status.success());
    let user = portcullis::service::users::find_by_username(&app.state.db, "carol").await.unwrap().unwrap();
    use portcullis::password::Verdict;
    assert_eq!(
        app.state.passwords.verify(new.into(), Some(user.password)).await.unwrap(),
        Verdict::Match { upgrade: false }
    );
}

#[test]
fn openapi_command_prints_the_repository_spec_and_migrate_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[], &["openapi"], "");
    assert!(out.status.success());
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();
    assert!(out.stdout == file, "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`");
    let db = TestDb::new();
    let out = run(dir.path(), &db.env(), &["migrate"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "Migrations applied.");
}

#[tokio::test]
async fn token_and_permission_commands() {
    let app = TestApp::new().await;
    app.register("john").await;
    let dir = tempfile::tempdir().unwrap();
    let env = app.db.env();
    let out = run(dir.path(), &env, &["drf_create_token", "john"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    let key = line.trim().strip_prefix("Generated token ").unwrap().strip_suffix(" for user john").unwrap().to_owned();
    assert_eq!(key.len(), 40);
    let res = app.get_auth("/profile/", &format!("Token {key}")).await;
    assert_eq!(res.body, json!({"username": "john", "email": ""}));
    // -r revokes the user's other tokens first.
    let out = run(dir.path(), &env, &["drf_create_token", "-r", "john"], "");
    let second = text(&out.stdout).trim().split(' ').nth(2).unwrap().to_owned();
    app.changed_elsewhere().await;
    assert_eq!(app.get_auth("/profile/", &format!("Token {key}")).await.body, json!({"detail": "Invalid token."}));
    assert_eq!(app.get_auth("/profile/", &format!("Token {second}")).await.status, 200);
    let out = run(dir.path(), &env, &["drf_create_token", "nobody"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("nobody"));

    // Permissions and groups.
    let browser = app.browser("writer").await;
    let publish = || browser.post_csrf("/publish/", json!({}));
    assert_eq!(publish().await.status, 403);
    let out = run(dir.path(), &env, &["grant", "writer", "articles.can_publish"], "");
    assert_eq!(text(&out.stdout).trim(), "Granted articles.can_publish to 'writer'.");
    assert_eq!(publish().await.status, 200);
    let out = run(dir.path(), &env, &["revoke", "writer", "articles.can_publish"], "");
    assert!(out.status.success());
    assert_eq!(publish().await.status, 403);
    assert!(run(dir.path(), &env, &["grant", "--group", "editors", "articles.can_publish"], "").status.success());
    let out = run(dir.path(), &env, &["addtogroup", "writer", "editors"], "");
    assert_eq!(text(&out.stdout).trim(), "Added 'writer' to group 'editors'.");
    let out = run(dir.path(), &env, &["addtogroup", "writer", "editors"], "");
    assert_eq!(text(&out.stdout).trim(), "'writer' was already in group 'editors'.");
    let out = run(dir.path(), &env, &["grant", "--group", "editors", "articles.can_publish"], "");
    assert_eq!(text(&out.stdout).trim(), "Group 'editors' already had articles.can_publish.");
    assert_eq!(publish().await.status, 200);
    let out = run(dir.path(), &env, &["grant", "writer", "nodot"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("app_label.codename"));

    // Deactivation ends sessions and tokens at once; activation lets the user back in.
    let out = run(dir.path(), &env, &["deactivate", "john"], "");
    assert!(out.status.success());
    app.changed_elsewhere().await;
    assert_eq!(
        app.get_auth("/profile/", &format!("Token {second}")).await.body,
        json!({"detail": "User inactive or deleted."})
    );
    assert!(run(dir.path(), &env, &["activate", "john"], "").status.success());
    app.changed_elsewhere().await;
    assert_eq!(app.get_auth("/profile/", &format!("Token {second}")).await.status, 200);
    assert_eq!(run(dir.path(), &env, &["deactivate", "ghost"], "").status.code(), Some(1));

    // The CLI's changes are in the audit trail too.
    for (event, who) in [
        ("user_deactivated", "john"),
        ("user_activated", "john"),
        ("permission_granted", "writer"),
        ("permission_revoked", "writer"),
        ("token_created", "john"),
    ] {
        let out = run(dir.path(), &env, &["audit", "--event", event], "");
        let listing = text(&out.stdout);
        assert!(
            listing.contains(event) && listing.contains(&format!("user={who}")) && listing.contains("\"via\":\"cli\""),
            "{event}: {listing}"
        );
    }
    let out = run(dir.path(), &env, &["audit", "--since", "not-a-time"], "");
    assert_eq!(out.status.code(), Some(1));
    let out = run(dir.path(), &env, &["clearaudit"], "");
    assert_eq!(text(&out.stdout).trim(), "Deleted 0 audit events older than 90 days.");
    let out = run(dir.path(), &env, &["clearsessions"], "");
    assert_eq!(
        text(&out.stdout).trim(),
        "Deleted 0 expired sessions and 0 expired logins waiting for a second factor."
    );
    let out = run(dir.path(), &env, &["flushexpiredtokens"], "");
    assert!(out.status.success());
}

#[tokio::test]
async fn client_ips_come_from_trusted_proxies_only_and_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    let mut env = db.env();
    env.push(("PORTCULLIS_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]".into()));
    env.push(("PORTCULLIS_THROTTLE__LOGIN", "3/min".into()));
    env.push(("PORTCULLIS_THROTTLE__LOGIN_IP", "4/min".into()));
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", served.base);
    let login = |user: &str, ip: &str| {
        http.post(url("/login/"))
            .header("x-forwarded-for", format!("6.6.6.6, {ip}"))
            .header("user-agent", "test-agent/1.0")
            .json(&json!({"username": user, "password": "wrong-password"}))
            .send()
    };
    // Four different usernames from one client IP: the fifth attempt is throttled per IP.
    for user in ["a", "b", "c", "d"] {
        assert_eq!(login(user, "10.9.8.7").await.unwrap().status(), 400);
    }
    let res = login("e", "10.9.8.7").await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    // Another client IP (as the proxy says) is not affected.
    assert_eq!(login("e", "10.1.1.1").await.unwrap().status(), 400);
    // The session records the client IP the proxy reported.
    http.post(url("/register/")).json(&json!({"username": "john", "password": STRONG})).send().await.unwrap();
    let res = http
        .post(url("/login/"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("user-agent", "test-agent/1.0")
        .json(&json!({"username": "john", "password": STRONG}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ");
    let list: Value = http.get(url("/sessions/")).header("cookie", cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["results"][0]["ip"], "203.0.113.9");
    assert_eq!(list["results"][0]["user_agent"], "test-agent/1.0");
    assert!(served.stop().success());
}
