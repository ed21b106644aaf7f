//! One behaviour, every door: an account change made over HTTP and the same change made
//! with the CLI end the same credentials and leave the same audit event.
use poem::http::StatusCode;
use portcullis::service::audit_log::{self, Filter};
use serde_json::{Value, json};

use crate::{
    helpers::{Browser, STRONG, TestApp},
    process::{run, text},
};

/// One of each credential a user can hold, made through the HTTP endpoints.
struct Held<'a> {
    browser: Browser<'a>,
    token: String,
    access: String,
    refresh: String,
}

async fn hold<'a>(app: &'a TestApp, username: &str) -> Held<'a> {
    let browser = app.browser(username).await;
    let token = app.token(username).await;
    let (access, refresh) = app.jwt(username).await;
    Held { browser, token, access, refresh }
}

/// Which of them still work: [session, token, access JWT, refresh JWT].
async fn alive(app: &TestApp, held: &Held<'_>) -> [bool; 4] {
    let ok = |status: StatusCode| status == StatusCode::OK;
    let refreshed = app.post_json("/api/token/refresh/", &json!({"refresh": held.refresh})).await;
    [
        ok(held.browser.get("/protected/").await.status),
        ok(app.get_auth("/protected/", &format!("Token {}", held.token)).await.status),
        ok(app.get_auth("/protected/", &format!("Bearer {}", held.access)).await.status),
        ok(refreshed.status),
    ]
}

/// The user's audit events after `since` (oldest first), as comparable values: the kind,
/// whether a credential is named, and the detail without `via` (where the change came from).
async fn events_since(app: &TestApp, username: &str, since: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    app.state.events.flush().await;
    let filter = Filter { username: Some(username.into()), since: Some(since), ..Filter::default() };
    let (rows, _) = audit_log::page(&app.state.db, &filter, 0, 100).await.unwrap();
    rows.into_iter()
        .rev()
        .map(|row| {
            let mut detail: Value = serde_json::from_str(&row.detail).unwrap();
            detail.as_object_mut().unwrap().remove("via");
            json!({"event": row.event, "credential": row.credential.is_some(), "detail": detail})
        })
        .collect()
}

fn cli(app: &TestApp, args: &[&str], stdin: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &app.db.env(), args, stdin);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

const NEW: &str = "an0ther-l0ng-passphrase";

#[tokio::test]
async fn a_password_change_ends_the_same_credentials_through_http_and_the_cli() {
    let app = TestApp::new().await;
    let (web, ops) = (hold(&app, "web").await, hold(&app, "ops").await);
    let other = Browser::new(&app);
    other.post("/login/", json!({"username": "web", "password": STRONG})).await;
    let since = chrono::Utc::now();

    let res = web.browser.post_csrf("/password/change/", json!({"old_password": STRONG, "new_password": NEW})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    cli(&app, &["changepassword", "ops"], &format!("{NEW}\n{NEW}\n"));
    app.changed_elsewhere().await;

    // Over HTTP the session that made the change goes on (Django's update_session_auth_hash);
    // everything else of both users is dead.
    assert_eq!(alive(&app, &web).await, [true, false, false, false]);
    assert_eq!(other.get("/protected/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(alive(&app, &ops).await, [false, false, false, false]);
    let changed = vec![json!({"event": "password_changed", "credential": false, "detail": {}})];
    assert_eq!(events_since(&app, "web", since).await, changed);
    assert_eq!(events_since(&app, "ops", since).await, changed);
    // And the new password is the one that logs in, whichever door set it.
    for user in ["web", "ops"] {
        let res = app.post_json("/api/token/", &json!({"username": user, "password": NEW})).await;
        assert_eq!(res.status, StatusCode::OK, "{user}");
    }
}

#[tokio::test]
async fn logout_everywhere_is_the_same_through_http_and_the_cli() {
    let app = TestApp::new().await;
    let (web, ops) = (hold(&app, "web").await, hold(&app, "ops").await);
    let since = chrono::Utc::now();
    let res = web.browser.post_csrf("/logoutall/", json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let line = cli(&app, &["logoutall", "ops"], "");
    assert!(line.contains("'ops'"), "{line}");
    app.changed_elsewhere().await;
    assert_eq!(alive(&app, &web).await, [false; 4]);
    assert_eq!(alive(&app, &ops).await, [false; 4]);
    let ended = vec![json!({"event": "logged_out_everywhere", "credential": false, "detail": {}})];
    assert_eq!(events_since(&app, "web", since).await, ended);
    assert_eq!(events_since(&app, "ops", since).await, ended);
}

#[tokio::test]
async fn a_token_made_by_either_door_works_and_is_recorded_alike() {
    let app = TestApp::new().await;
    app.register("web").await;
    app.register("ops").await;
    let since = chrono::Utc::now();
    let web = app.token("web").await;
    let line = cli(&app, &["drf_create_token", "ops"], "");
    let ops = line.trim().strip_prefix("Generated token ").unwrap().strip_suffix(" for user ops").unwrap();
    for token in [web.as_str(), ops] {
        assert_eq!(app.get_auth("/whoami/", &format!("Token {token}")).await.status, StatusCode::OK);
    }
    let created = vec![json!({"event": "token_created", "credential": true, "detail": {}})];
    assert_eq!(events_since(&app, "ops", since).await, created);
    // Over HTTP the token is the end of a login: its failed and successful checks are
    // recorded too, but the change itself is the same event.
    assert_eq!(events_since(&app, "web", since).await, created);
}

#[tokio::test]
async fn registering_and_createsuperuser_record_the_same_event() {
    let app = TestApp::new().await;
    let since = chrono::Utc::now();
    app.register("web").await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = app.db.env();
    env.push(("PORTCULLIS_SUPERUSER_PASSWORD", STRONG.into()));
    let out = run(dir.path(), &env, &["createsuperuser", "--noinput", "--username", "ops"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created = vec![json!({"event": "user_created", "credential": false, "detail": {}})];
    assert_eq!(events_since(&app, "web", since).await, created);
    assert_eq!(events_since(&app, "ops", since).await, created);
}

#[tokio::test]
async fn deactivation_by_the_cli_ends_every_credential_and_activation_restores_them() {
    let app = TestApp::new().await;
    let held = hold(&app, "carol").await;
    let since = chrono::Utc::now();
    cli(&app, &["deactivate", "carol"], "");
    app.changed_elsewhere().await;
    assert_eq!(alive(&app, &held).await, [false; 4]);
    cli(&app, &["activate", "carol"], "");
    app.changed_elsewhere().await;
    // As in Django, an inactive user's credentials are refused, not deleted; only the
    // browser's session cookie is gone (the refused request told it to drop the cookie).
    assert_eq!(alive(&app, &held).await, [false, true, true, true]);
    let kinds: Vec<Value> = events_since(&app, "carol", since).await.into_iter().map(|e| e["event"].clone()).collect();
    assert_eq!(kinds, [json!("user_deactivated"), json!("user_activated")]);
}
