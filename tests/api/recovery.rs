//! Password reset by email (API.md "Account recovery by email"): the link, what it ends, when
//! it stops working, every error row, throttling, and a mail server that is not there.
use poem::http::StatusCode;
use portcullis::{
    Settings,
    config::{EmailBackend, Rate},
    mail::Letter,
    service::audit_log::{self, Filter},
};
use serde_json::{Value, json};

use crate::helpers::{Answer, Browser, STRONG, TestApp};

pub const SENT: &str = "Password reset e-mail has been sent.";
const DONE: &str = "Password has been reset with the new password.";
const NEW: &str = "an0ther-l0ng-passphrase";

/// An app whose mails stay in memory, throttles off unless `tweak` sets them.
pub async fn mail_app(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    TestApp::with(|s| {
        s.email.backend = EmailBackend::Memory;
        s.email.throttle_address = None;
        s.email.throttle_ip = None;
        tweak(s);
    })
    .await
}

/// Registers `username` with `email` (and the helpers' password).
pub async fn register_with(app: &TestApp, username: &str, email: &str) {
    let res = app.post_json("/register/", &json!({"username": username, "password": STRONG, "email": email})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
}

/// Every mail sent so far, once the queue has run.
pub async fn letters(app: &TestApp) -> Vec<Letter> {
    app.state.accounts.flush_mail().await;
    app.state.accounts.mailer().sent()
}

/// The uid and token of the last reset link sent.
async fn link(app: &TestApp) -> (String, String) {
    let letters = letters(app).await;
    let body = &letters.last().expect("a reset mail").body;
    let re = regex::Regex::new(r"http://localhost:3000/password/reset/confirm/([^/\s]+)/([^/\s]+)/").unwrap();
    let caps = re.captures(body).unwrap_or_else(|| panic!("no link in {body}"));
    (caps[1].to_owned(), caps[2].to_owned())
}

async fn reset(app: &TestApp, email: &str) -> Answer {
    app.post_json("/password/reset/", &json!({ "email": email })).await
}

async fn confirm(app: &TestApp, uid: &str, token: &str, new: &str) -> Answer {
    let body = json!({"uid": uid, "token": token, "new_password1": new, "new_password2": new});
    app.post_json("/password/reset/confirm/", &body).await
}

async fn events(app: &TestApp, event: &str) -> Vec<Value> {
    app.state.events.flush().await;
    let filter = Filter { event: Some(event.into()), ..Filter::default() };
    let (rows, _) = audit_log::page(&app.state.db, &filter, 0, 100).await.unwrap();
    rows.into_iter()
        .map(|r| json!({"user": r.username, "detail": serde_json::from_str::<Value>(&r.detail).unwrap()}))
        .collect()
}

#[tokio::test]
async fn a_reset_link_sets_the_password_once_and_ends_every_credential() {
    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "ann@example.com").await;
    let browser = Browser::new(&app);
    assert_eq!(browser.post("/login/", json!({"username": "ann", "password": STRONG})).await.status, StatusCode::OK);
    let token = app.token("ann").await;
    let (access, refresh) = app.jwt("ann").await;

    let res = reset(&app, "ann@example.com").await;
    assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": SENT})));
    let sent = letters(&app).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "ann@example.com");
    assert_eq!(sent[0].subject, "Password reset on localhost:3000");
    assert!(sent[0].body.contains("Your username, in case you've forgotten: ann"), "{}", sent[0].body);
    let (uid, token_in_link) = link(&app).await;

    let res = confirm(&app, &uid, &token_in_link, NEW).await;
    assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": DONE})));
    assert_ne!(browser.get("/protected/").await.status, StatusCode::OK, "the session ended");
    assert_ne!(app.get_auth("/protected/", &format!("Token {token}")).await.status, StatusCode::OK);
    assert_ne!(app.get_auth("/protected/", &format!("Bearer {access}")).await.status, StatusCode::OK);
    let refreshed = app.post_json("/api/token/refresh/", &json!({ "refresh": refresh })).await;
    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
    let old = app.post_json("/login/", &json!({"username": "ann", "password": STRONG})).await;
    assert_eq!(old.status, StatusCode::BAD_REQUEST);

    let again = confirm(&app, &uid, &token_in_link, "y3t-an0ther-passphrase").await;
    assert_eq!((again.status, &again.body), (StatusCode::BAD_REQUEST, &json!({"token": ["Invalid value"]})));
    let new = app.post_json("/login/", &json!({"username": "ann", "password": NEW})).await;
    assert_eq!(new.status, StatusCode::OK, "the new password works, the second one was not set");

    let requested = events(&app, "password_reset_requested").await;
    assert_eq!(requested, [json!({"user": "ann", "detail": {"mail": "sent"}})]);
    assert_eq!(events(&app, "password_reset_completed").await.len(), 1);
    assert_eq!(events(&app, "password_changed").await.len(), 1, "one password change, not two");
}

#[tokio::test]
async fn every_address_gets_the_same_answer_and_only_a_reachable_account_a_mail() {
    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "Ann@Example.com").await;
    register_with(&app, "gone", "gone@example.com").await;
    app.state.accounts.set_active("gone", false, &Default::default()).await.unwrap();
    register_with(&app, "nopass", "nopass@example.com").await;
    let unusable = "UPDATE auth_user SET password = '!unusable' WHERE username = 'nopass'";
    sea_orm::ConnectionTrait::execute_unprepared(&app.state.db, unusable).await.unwrap();

    for address in ["nobody@example.com", "gone@example.com", "nopass@example.com", "ANN@EXAMPLE.COM"] {
        let res = reset(&app, address).await;
        assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": SENT})), "{address}");
    }
    let sent = letters(&app).await;
    assert_eq!(sent.iter().map(|l| l.to.as_str()).collect::<Vec<_>>(), ["Ann@example.com"], "the stored address");
    let unknown = events(&app, "password_reset_requested").await;
    let anonymous: Vec<_> = unknown.iter().filter(|e| e["user"].is_null()).collect();
    assert_eq!(anonymous.len(), 3);
    assert!(anonymous.iter().all(|e| e["detail"] == json!({"address_known": false})), "no address stored");
}

#[tokio::test]
async fn a_request_that_is_not_an_address_is_refused_with_drfs_messages() {
    let app = mail_app(|_| {}).await;
    for (body, want) in [
        (json!({"email": "not-an-address"}), json!({"email": ["Enter a valid email address."]})),
        (json!({"email": "a@b"}), json!({"email": ["Enter a valid email address."]})),
        (json!({"email": ""}), json!({"email": ["This field may not be blank."]})),
        (json!({}), json!({"email": ["This field is required."]})),
        (json!({"email": null}), json!({"email": ["This field may not be null."]})),
        (json!([1]), json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})),
    ] {
        let res = app.post_json("/password/reset/", &body).await;
        assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &want), "{body}");
    }
    assert!(letters(&app).await.is_empty());
}

#[tokio::test]
async fn every_error_row_of_the_confirmation() {
    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "ann@example.com").await;
    reset(&app, "ann@example.com").await;
    let (uid, token) = link(&app).await;
    let bad = |field: &str| json!({ field: ["Invalid value"] });
    let cases = [
        (confirm(&app, "!!", &token, NEW).await, bad("uid")),
        (confirm(&app, "OTk5", &token, NEW).await, bad("uid")),
        (confirm(&app, &uid, "cz8wpe-00000000000000000000000000000000", NEW).await, bad("token")),
        (confirm(&app, &uid, "nonsense", NEW).await, bad("token")),
        (
            confirm(&app, &uid, &token, "short").await,
            json!({"new_password2": [
            "This password is too short. It must contain at least 8 characters."]}),
        ),
        (
            confirm(&app, &uid, &token, "40958172635491").await,
            json!({"new_password2": ["This password is entirely numeric."]}),
        ),
    ];
    for (res, want) in cases {
        assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &want));
    }
    let body = json!({"uid": uid, "token": token, "new_password1": NEW, "new_password2": "something-else-1"});
    let res = app.post_json("/password/reset/confirm/", &body).await;
    let mismatch = json!({"new_password2": ["The two password fields didn\u{2019}t match."]});
    assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &mismatch));
    let res = app.post_json("/password/reset/confirm/", &json!({"uid": "", "new_password1": NEW})).await;
    let required = json!({"uid": ["This field may not be blank."], "token": ["This field is required."],
        "new_password2": ["This field is required."]});
    assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &required));
    assert_eq!(confirm(&app, &uid, &token, NEW).await.status, StatusCode::OK, "none of the refusals spent the link");
}

#[tokio::test]
async fn a_link_dies_when_the_user_logs_in_changes_the_password_or_waits_too_long() {
    let app = mail_app(|s| s.email.password_reset_timeout = 1).await;
    register_with(&app, "ann", "ann@example.com").await;
    reset(&app, "ann@example.com").await;
    let (uid, token) = link(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(confirm(&app, &uid, &token, NEW).await.body, json!({"token": ["Invalid value"]}), "expired");

    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "ann@example.com").await;
    reset(&app, "ann@example.com").await;
    let (uid, token) = link(&app).await;
    // last_login is kept to the second, as Django's token reads it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.post_json("/login/", &json!({"username": "ann", "password": STRONG})).await.status, StatusCode::OK);
    assert_eq!(confirm(&app, &uid, &token, NEW).await.body, json!({"token": ["Invalid value"]}), "logged in since");

    let browser = Browser::new(&app);
    assert_eq!(browser.post("/login/", json!({"username": "ann", "password": STRONG})).await.status, StatusCode::OK);
    reset(&app, "ann@example.com").await;
    let (uid, token) = link(&app).await;
    let change = json!({"old_password": STRONG, "new_password": "s0mething-else-entirely"});
    assert_eq!(browser.post_csrf("/password/change/", change).await.status, StatusCode::OK);
    assert_eq!(confirm(&app, &uid, &token, NEW).await.body, json!({"token": ["Invalid value"]}), "password changed");
}

#[tokio::test]
async fn of_two_confirmations_racing_with_one_link_one_wins() {
    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "ann@example.com").await;
    reset(&app, "ann@example.com").await;
    let (uid, token) = link(&app).await;
    let (a, b) = tokio::join!(confirm(&app, &uid, &token, NEW), confirm(&app, &uid, &token, "the-0ther-passphrase"));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST], "{} / {}", a.body, b.body);
    assert_eq!(events(&app, "password_changed").await.len(), 1);
}

#[tokio::test]
async fn requests_are_throttled_per_address_and_per_client_whether_or_not_the_address_is_known() {
    let app = mail_app(|s| {
        s.email.throttle_address = Rate::parse("2/hour").unwrap();
        s.email.throttle_ip = Rate::parse("5/hour").unwrap();
    })
    .await;
    register_with(&app, "ann", "ann@example.com").await;
    for address in ["ann@example.com", "nobody@example.com"] {
        for _ in 0..2 {
            assert_eq!(reset(&app, address).await.status, StatusCode::OK);
        }
        let res = reset(&app, address).await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{address}");
        assert!(res.body["detail"].as_str().unwrap().starts_with("Request was throttled. Expected available in"));
        assert!(res.headers.get("retry-after").is_some());
    }
    assert_eq!(
        app.post_json("/registration/resend-email/", &json!({"email": "x@example.com"})).await.status,
        StatusCode::OK
    );
    let res = reset(&app, "y@example.com").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "the client's fifth request an hour was its last");
    assert_eq!(letters(&app).await.len(), 2, "the throttled requests sent nothing");
    let throttled = events(&app, "throttled").await;
    assert!(throttled.iter().all(|e| e["detail"]["scope"] == "email"));
    assert_eq!(throttled.len(), 3, "one record per key and window");
}

#[tokio::test]
async fn a_mail_server_that_is_not_there_is_a_counted_failure_never_a_slow_or_failed_answer() {
    // A port nothing listens on any more: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = mail_app(|s| {
        s.email.backend = EmailBackend::Smtp;
        s.email.smtp_url = portcullis::config::Secret::new(format!("smtp://127.0.0.1:{port}"));
        s.email.timeout = 2;
    })
    .await;
    register_with(&app, "ann", "ann@example.com").await;
    let started = std::time::Instant::now();
    let res = reset(&app, "ann@example.com").await;
    assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": SENT})));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    app.state.accounts.flush_mail().await;
    let metrics = app.state.metrics.render(&app.state.db, 0);
    assert!(metrics.contains(r#"portcullis_emails_total{kind="password_reset",outcome="failed"} 1"#), "{metrics}");
    assert_eq!(events(&app, "password_reset_requested").await[0]["detail"], json!({"mail": "failed"}));
}

#[test]
fn sendtestemail_prints_a_whole_message_on_the_console_and_fails_on_a_dead_server() {
    let (db, dir) = (crate::helpers::TestDb::new(), tempfile::tempdir().unwrap());
    let out = crate::process::run(dir.path(), &db.env(), &["sendtestemail", "ann@example.com"], "");
    let stdout = crate::process::text(&out.stdout);
    assert!(out.status.success(), "{}", crate::process::text(&out.stderr));
    for header in
        ["From: webmaster@localhost", "To: ann@example.com", "Subject: Test email from ", "Date: ", "Message-ID: <"]
    {
        assert!(stdout.contains(header), "{header} in {stdout}");
    }
    assert!(stdout.contains("If you're reading this, it was successful."));
    assert!(stdout.trim_end().ends_with("Sent a test email to ann@example.com."), "{stdout}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = [
        db.env(),
        vec![
            ("PORTCULLIS_EMAIL__BACKEND", "smtp".to_owned()),
            ("PORTCULLIS_EMAIL__SMTP_URL", format!("smtp://user:hunter2@127.0.0.1:{port}")),
        ],
    ]
    .concat();
    let out = crate::process::run(dir.path(), &env, &["sendtestemail", "ann@example.com"], "");
    let stderr = crate::process::text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("could not send to ann@example.com"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the URL's password reached the message: {stderr}");
}
