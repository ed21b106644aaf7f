//! `portcullis import-django` through the real binary, from a database shaped as Django
//! makes it (the CI run in tests/django builds one with Django itself).
use std::path::Path;

use portcullis::service::permissions;
use sea_orm::{ConnectionTrait, Database, EntityTrait};
use serde_json::json;

use crate::{
    helpers::{Browser, TestApp},
    process::{run, text},
};

/// Django's `SECRET_KEY` in these tests.
const SECRET: &str = "django-insecure-portcullis-test";
/// Django 5.2's make_password("hunter2") at 1000 PBKDF2 iterations and bcrypt_sha256 at 4
/// rounds (src/password/django.rs has the whole set).
const ALICE_HASH: &str = "pbkdf2_sha256$1000$TzixmBWPqsHdrNOmrlFVH2$uD+YX0sfTIFBf7OKNmazQvRQK55YnbAAeBKS+ZabzUs=";
const BOB_HASH: &str = "bcrypt_sha256$$2b$04$inmpNax3NPrQtx75wlrovu0BrBia5nLgys6qvKIgwLGjerSKG1ZZy";
const ALICE_TOKEN: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
/// Alice's logged-in session, as Django 5.2.19 signed it under `SECRET` (user id "1",
/// `_auth_user_hash` of `ALICE_HASH`, and `"cart": [1, 2]`).
const ALICE_SESSION_KEY: &str = "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6";
const ALICE_SESSION: &str = ".eJxVjDsOwjAQBe_iOrL8ib0kJT0nQMha79okgGwpnwpxdxIpBbRv5s1bBFyXIaxzmsLIohdaNL9bRHqmsgN-YLlXSbUs0xjlrsiDzvJSOb3Oh_sXGHAetncLbAk6nblT1lM8Ge9UR-iNMhqRIgMnmx0bbwFSdMSgAB3mVnHO7RYlnBbRX3Vjbp8v1xQ7-A:1xUy3A:V0y7JPNFL-MScSDbBnd5rAKeLde6YmA0JSnJO6Lgxf8";

/// Django's DDL for the tables the import reads (SQLite, as `manage.py migrate` makes it).
const DJANGO_SCHEMA: &[&str] = &[
    r#"CREATE TABLE "django_content_type" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app_label" varchar(100) NOT NULL, "model" varchar(100) NOT NULL)"#,
    r#"CREATE TABLE "auth_permission" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "content_type_id" integer NOT NULL, "codename" varchar(100) NOT NULL, "name" varchar(255) NOT NULL)"#,
    r#"CREATE TABLE "auth_group" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(150) NOT NULL UNIQUE)"#,
    r#"CREATE TABLE "auth_group_permissions" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "group_id" integer NOT NULL, "permission_id" integer NOT NULL)"#,
    r#"CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "last_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL, "date_joined" datetime NOT NULL, "first_name" varchar(150) NOT NULL)"#,
    r#"CREATE TABLE "auth_user_groups" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" integer NOT NULL, "group_id" integer NOT NULL)"#,
    r#"CREATE TABLE "auth_user_user_permissions" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "user_id" integer NOT NULL, "permission_id" integer NOT NULL)"#,
    r#"CREATE TABLE "authtoken_token" ("key" varchar(40) NOT NULL PRIMARY KEY, "created" datetime NOT NULL, "user_id" integer NOT NULL UNIQUE)"#,
    r#"CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL)"#,
];

/// A small Django project: alice (PBKDF2, editor, token, live session), bob (bcrypt_sha256,
/// a direct permission), carol (unusable password), dave (an MD5 hash nothing here reads),
/// an expired session, and `extra` statements on top.
async fn django_db(dir: &Path, extra: &[&str]) -> String {
    let url = format!("sqlite://{}/django.sqlite3", dir.display());
    let db = Database::connect(format!("{url}?mode=rwc")).await.unwrap();
    let rows = [
        "INSERT INTO django_content_type VALUES (4, 'auth', 'user')",
        "INSERT INTO auth_permission VALUES (14, 4, 'change_user', 'Can change user'), (16, 4, 'view_user', 'Can view user')",
        "INSERT INTO auth_group VALUES (1, 'editors')",
        "INSERT INTO auth_group_permissions VALUES (1, 1, 14)",
        &format!(
            "INSERT INTO auth_user VALUES \
             (1, '{ALICE_HASH}', '2026-11-01 10:00:00.123456', 0, 'alice', 'Liddell', 'alice@example.com', 0, 1, '2020-01-02 03:04:05', 'Alice'), \
             (2, '{BOB_HASH}', NULL, 1, 'bob', '', 'bob@example.com', 1, 1, '2021-01-02 03:04:05', ''), \
             (5, '!unusable0123456789abcdef0123456789abcdef', NULL, 0, 'carol', '', '', 0, 1, '2022-01-02 03:04:05', ''), \
             (7, 'md5$salt$0123456789abcdef0123456789abcdef', NULL, 0, 'dave', '', '', 0, 1, '2023-01-02 03:04:05', '')"
        ),
        "INSERT INTO auth_user_groups VALUES (1, 1, 1)",
        "INSERT INTO auth_user_user_permissions VALUES (1, 2, 16)",
        &format!("INSERT INTO authtoken_token VALUES ('{ALICE_TOKEN}', '2026-01-01 00:00:00', 1)"),
        &format!("INSERT INTO django_session VALUES ('{ALICE_SESSION_KEY}', '{ALICE_SESSION}', '2099-01-01 00:00:00')"),
        &format!(
            "INSERT INTO django_session VALUES ('expired0expired0expired0expired0', '{ALICE_SESSION}', '2001-01-01 00:00:00')"
        ),
    ];
    for sql in DJANGO_SCHEMA.iter().copied().chain(rows.iter().copied()).chain(extra.iter().copied()) {
        db.execute_unprepared(sql).await.unwrap();
    }
    db.close().await.unwrap();
    url
}

fn import(app: &TestApp, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut env = app.db.env();
    env.push(("DJANGO_SECRET_KEY", SECRET.to_owned()));
    let out = run(dir, &env, &[&["import-django"], args].concat(), "");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

async fn count(app: &TestApp, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = app.state.db.query_one_raw(sea_orm::Statement::from_string(app.state.db.get_database_backend(), sql));
    row.await.unwrap().unwrap().try_get("", "n").unwrap()
}

#[tokio::test]
async fn everyone_logs_in_with_their_django_password_token_and_session() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let from = django_db(dir.path(), &[]).await;

    // A dry run reports what would happen and writes nothing.
    let (code, out, err) = import(&app, dir.path(), &["--from", &from, "--sessions", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "would import 4 users, 1 groups, 2 permissions, 1 tokens, 1 sessions; 0 skipped");
    assert_eq!(count(&app, "auth_user").await, 0);

    let (code, out, err) = import(&app, dir.path(), &["--from", &from, "--sessions"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "imported 4 users, 1 groups, 2 permissions, 1 tokens, 1 sessions; 0 skipped");
    assert!(err.contains(r#"warning: user "dave": password hash format "md5" is not supported"#), "{err}");
    assert!(err.contains("portcullis changepassword dave"), "{err}");
    assert!(err.contains("not imported: 1 expired sessions"), "{err}");
    app.changed_elsewhere().await;

    // Ids, fields and permissions as in Django.
    let alice = app.user("alice").await;
    assert_eq!((alice.id, alice.email.as_str(), alice.first_name.as_str()), (1, "alice@example.com", "Alice"));
    assert_eq!(alice.date_joined.to_rfc3339(), "2020-01-02T03:04:05+00:00");
    let bob = app.user("bob").await;
    assert_eq!((bob.id, bob.is_staff, bob.is_superuser), (2, true, true));
    assert_eq!(app.user("dave").await.id, 7);
    let db = &app.state.db;
    assert!(permissions::user_has_perm(db, &alice, "auth.change_user").await.unwrap(), "through editors");
    assert!(!permissions::user_has_perm(db, &alice, "auth.view_user").await.unwrap());
    // bob is a superuser: every permission; the direct grant is there too.
    assert_eq!(count(&app, "auth_user_user_permissions").await, 1);

    // The DRF token works as it is, and only its digest is stored.
    let res = app.get_auth("/profile/", &format!("Token {ALICE_TOKEN}")).await;
    assert_eq!(
        (res.status.as_u16(), res.body.clone()),
        (200, json!({"username": "alice", "email": "alice@example.com"}))
    );
    let stored = portcullis::store::token::Entity::find().all(db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key_digest, portcullis::crypto::digest(ALICE_TOKEN).to_vec());

    // The browser keeps its sessionid cookie, and its data.
    let browser = Browser::new(&app);
    browser.set_cookie("sessionid", ALICE_SESSION_KEY);
    let res = browser.get("/protected/").await;
    assert_eq!(res.body, json!({"message": "Hello, alice! You have access to this view."}));
    assert_eq!(browser.get("/session/data/").await.body["cart"], json!([1, 2]));

    // Passwords: each Django format logs in, and is upgraded to argon2id by that login.
    for (name, password) in [("alice", "hunter2"), ("bob", "hunter2")] {
        let res = app.post_json("/login/", &json!({"username": name, "password": password})).await;
        assert_eq!(res.status, 200, "{name}: {:?}", res.body);
        assert!(app.user(name).await.password.starts_with("$argon2id$"), "{name}");
    }
    for name in ["carol", "dave"] {
        let res = app.post_json("/login/", &json!({"username": name, "password": "hunter2"})).await;
        assert_eq!(res.status, 400, "{name}");
    }

    // A second run changes nothing: alice's upgraded hash stays, nothing is duplicated.
    let (code, out, err) = import(&app, dir.path(), &["--from", &from, "--sessions"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "imported 0 users, 0 groups, 0 permissions, 0 tokens, 0 sessions; 0 skipped \
         (4 users, 1 groups, 2 permissions, 1 tokens, 1 sessions already here, 0 users updated)"
    );
    assert!(app.user("alice").await.password.starts_with("$argon2id$"));
    for (table, rows) in [("auth_user", 4), ("auth_user_groups", 1), ("auth_group_permissions", 1), ("auth_token", 1)] {
        assert_eq!(count(&app, table).await, rows, "{table}");
    }
    assert_eq!(app.post_json("/login/", &json!({"username": "alice", "password": "hunter2"})).await.status, 200);

    // dave can be given a password here.
    let out = run(dir.path(), &app.db.env(), &["changepassword", "dave"], "a-new-passphrase-42\na-new-passphrase-42\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let res = app.post_json("/login/", &json!({"username": "dave", "password": "a-new-passphrase-42"})).await;
    assert_eq!(res.status, 200);

    // A new registration does not collide with the imported ids.
    assert_eq!(app.register("erin").await.status, 201);
    assert!(app.user("erin").await.id > 7);
}

#[tokio::test]
async fn a_change_in_django_between_runs_is_carried_over() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let from = django_db(dir.path(), &[]).await;
    assert_eq!(import(&app, dir.path(), &["--from", &from]).0, Some(0));
    let token = format!("Token {ALICE_TOKEN}");
    assert_eq!(app.get_auth("/profile/", &token).await.status, 200);
    // alice is deactivated in Django; the next run carries it over, and her token stops.
    let db = Database::connect(&from).await.unwrap();
    db.execute_unprepared("UPDATE auth_user SET is_active = 0 WHERE username = 'alice'").await.unwrap();
    db.close().await.unwrap();
    let (code, out, err) = import(&app, dir.path(), &["--from", &from]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.trim().ends_with("(4 users, 1 groups, 2 permissions, 1 tokens already here, 1 users updated)"),
        "{out}"
    );
    app.changed_elsewhere().await;
    assert!(!app.user("alice").await.is_active);
    assert_eq!(app.get_auth("/profile/", &token).await.status, 401);
}

#[tokio::test]
async fn bad_rows_stop_the_import_unless_skipped() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Django allows "Alice" beside "alice"; here usernames are unique ignoring case.
    let from = django_db(
        dir.path(),
        &[
            "INSERT INTO auth_user VALUES (9, '!x', NULL, 0, 'Alice', '', '', 0, 1, '2024-01-02 03:04:05', '')",
            "INSERT INTO auth_user_groups VALUES (2, 9, 1)",
            "INSERT INTO authtoken_token VALUES ('0123456789abcdef0123456789abcdef01234567', '2026-01-01 00:00:00', 9)",
        ],
    )
    .await;
    let (code, out, err) = import(&app, dir.path(), &["--from", &from]);
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert!(err.contains("1 rows cannot be imported (nothing was written"), "{err}");
    assert!(err.contains(r#"user 9 "Alice": username differs only in case from user 1 "alice""#), "{err}");
    assert_eq!(count(&app, "auth_user").await, 0, "nothing written");

    // --skip-bad-rows leaves Alice out, with her membership and token.
    let (code, out, err) = import(&app, dir.path(), &["--from", &from, "--skip-bad-rows"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "imported 4 users, 1 groups, 2 permissions, 1 tokens; 1 skipped");
    assert!(err.contains(r#"skipped user 9 "Alice""#), "{err}");
    assert_eq!(count(&app, "auth_user_groups").await, 1);
    assert_eq!(count(&app, "auth_token").await, 1);
}

#[tokio::test]
async fn sources_that_are_not_django_are_refused_with_the_reason() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(path.join("notes.sqlite3"), "these are not the tables you are looking for").unwrap();
    let cases = [
        (
            format!("sqlite://{}/notes.sqlite3", path.display()),
            "not a Django database: the file is not an SQLite database",
        ),
        (format!("sqlite://{}/missing.sqlite3", path.display()), "cannot open the Django database"),
        ("https://example.com/db".to_owned(), "expected sqlite:///path/to/db.sqlite3"),
    ];
    for (from, want) in cases {
        let (code, out, err) = import(&app, path, &["--from", &from]);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{from}");
        assert!(err.contains(want), "{from}: {err}");
    }
    // An SQLite database with only some of Django's tables.
    let partial = format!("sqlite://{}/partial.sqlite3?mode=rwc", path.display());
    let db = Database::connect(&partial).await.unwrap();
    for sql in &DJANGO_SCHEMA[..3] {
        db.execute_unprepared(sql).await.unwrap();
    }
    db.close().await.unwrap();
    let (code, _, err) = import(&app, path, &["--from", &partial]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no table auth_user, auth_user_groups, auth_user_user_permissions, auth_group_permissions"),
        "{err}"
    );
    assert!(err.contains("has `manage.py migrate` run?"), "{err}");
    // Sessions signed with another SECRET_KEY are bad rows: most likely the wrong key.
    let from = django_db(path, &[]).await;
    let mut env = app.db.env();
    env.push(("DJANGO_SECRET_KEY", "not-the-key".to_owned()));
    let out = run(path, &env, &["import-django", "--from", &from, "--sessions"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("session data signature does not match the given SECRET_KEY"));
    let out = run(path, &app.db.env(), &["import-django", "--from", &from, "--sessions"], "");
    assert!(text(&out.stderr).contains("--sessions needs Django's SECRET_KEY"), "{}", text(&out.stderr));
    assert_eq!(count(&app, "auth_user").await, 0);
}

#[tokio::test]
async fn a_dumpdata_file_imports_like_the_database() {
    let app = TestApp::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = json!([
        {"model": "contenttypes.contenttype", "pk": 4, "fields": {"app_label": "auth", "model": "user"}},
        {"model": "auth.permission", "pk": 14, "fields": {"name": "Can change user", "content_type": 4, "codename": "change_user"}},
        {"model": "auth.group", "pk": 1, "fields": {"name": "editors", "permissions": [14]}},
        {"model": "auth.user", "pk": 1, "fields": {"password": ALICE_HASH, "last_login": null, "is_superuser": false,
            "username": "alice", "first_name": "", "last_name": "", "email": "", "is_staff": false, "is_active": true,
            "date_joined": "2020-01-02T03:04:05.678Z", "groups": [1], "user_permissions": []}},
        {"model": "authtoken.token", "pk": ALICE_TOKEN, "fields": {"user": 1, "created": "2026-01-01T00:00:00Z"}}
    ]);
    let file = dir.path().join("dump.json");
    std::fs::write(&file, dump.to_string()).unwrap();
    let from = file.display().to_string();
    let (code, out, err) = import(&app, dir.path(), &["--from", &from]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "imported 1 users, 1 groups, 1 permissions, 1 tokens; 0 skipped");
    assert_eq!(app.get_auth("/profile/", &format!("Token {ALICE_TOKEN}")).await.status, 200);
    let alice = app.user("alice").await;
    assert!(permissions::user_has_perm(&app.state.db, &alice, "auth.change_user").await.unwrap());
    // Without content types, permissions cannot be named: say how to dump.
    let no_types = json!(dump.as_array().unwrap()[1..].to_vec());
    std::fs::write(&file, no_types.to_string()).unwrap();
    let (code, _, err) = import(&app, dir.path(), &["--from", &from]);
    assert_eq!(code, Some(1));
    assert!(err.contains("the file has no contenttypes records"), "{err}");
    assert!(err.contains("manage.py dumpdata auth authtoken contenttypes --format json"), "{err}");
    assert_eq!(count(&app, "auth_user").await, 1, "the first import stands");
}

#[tokio::test]
async fn simplejwt_tokens_signed_with_the_django_key_work_until_the_password_changes() {
    let app = TestApp::with(|s| s.jwt.signing_key = portcullis::config::Secret::new(SECRET.to_owned())).await;
    let dir = tempfile::tempdir().unwrap();
    let from = django_db(dir.path(), &[]).await;
    assert_eq!(import(&app, dir.path(), &["--from", &from]).0, Some(0));
    // What simplejwt's AccessToken.for_user(alice) carries (no stamp claim: not ours).
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"token_type": "access", "exp": now + 300, "iat": now, "jti": "0123456789abcdef0123456789abcdef", "user_id": "1"});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let access = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let bearer = format!("Bearer {access}");
    let res = app.get_auth("/protected/", &bearer).await;
    assert_eq!(res.body, json!({"message": "Hello, alice! You have access to this view."}));
    // A password change here ends them, as it ends the JWTs portcullis issues.
    let alice = app.user("alice").await;
    portcullis::service::users::set_password(&app.state.db, &app.state.passwords, alice, "a-new-passphrase-42".into())
        .await
        .unwrap();
    app.changed_elsewhere().await;
    // 403, not 401: the default chain starts with the session (DRF's first-authenticator rule).
    let res = app.get_auth("/protected/", &bearer).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.body["code"], "password_changed");
}
