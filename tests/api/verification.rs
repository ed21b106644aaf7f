//! Email verification (`account.email_verification`): the mail at registration, the key, and
//! "mandatory" refusing unverified users at every door that takes a password.
use base64::Engine;
use poem::http::StatusCode;
use portcullis::config::{AuthScheme, EmailVerification};
use serde_json::{Value, json};

use crate::{
    helpers::{Answer, STRONG, TestApp},
    recovery::{letters, mail_app, register_with},
};

const NOT_VERIFIED: &str = "E-mail is not verified.";

fn mandatory(s: &mut portcullis::Settings) {
    s.account.email_verification = EmailVerification::Mandatory;
    s.auth.chain = vec![AuthScheme::Session, AuthScheme::Token, AuthScheme::Jwt, AuthScheme::Basic];
}

/// The key of the last verification link sent.
async fn key(app: &TestApp) -> String {
    let letters = letters(app).await;
    let body = &letters.last().expect("a verification mail").body;
    let re = regex::Regex::new(r"http://localhost:3000/verify-email/([^/\s]+)/").unwrap();
    re.captures(body).unwrap_or_else(|| panic!("no link in {body}"))[1].to_owned()
}

async fn verify(app: &TestApp, key: &str) -> Answer {
    app.post_json("/registration/verify-email/", &json!({ "key": key })).await
}

/// Each door's answer to `password` for `username`: /login/, /api-token-auth/, /api/token/, Basic.
async fn doors(app: &TestApp, username: &str, password: &str) -> Vec<(StatusCode, Value)> {
    let body = json!({"username": username, "password": password});
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut answers = Vec::new();
    for path in ["/login/", "/api-token-auth/", "/api/token/"] {
        let res = app.post_json(path, &body).await;
        answers.push((res.status, res.body));
    }
    let res = app.get_auth("/whoami/", &format!("Basic {basic}")).await;
    answers.push((res.status, res.body));
    answers
}

#[tokio::test]
async fn mandatory_verification_refuses_every_door_after_the_password_check_until_the_link_is_followed() {
    let app = mail_app(mandatory).await;
    register_with(&app, "ann", "ann@example.com").await;
    let refused = (StatusCode::BAD_REQUEST, json!({"non_field_errors": [NOT_VERIFIED]}));
    assert_eq!(doors(&app, "ann", STRONG).await, vec![refused.clone(); 4]);
    // A wrong password is refused as for anyone: the rule tells nothing to who lacks it.
    let wrong = doors(&app, "ann", "wrong-password").await;
    assert!(wrong.iter().all(|(_, body)| !body.to_string().contains(NOT_VERIFIED)), "{wrong:?}");
    assert_eq!(wrong[0], (StatusCode::BAD_REQUEST, json!({"error": "Invalid credentials"})));

    let sent = letters(&app).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].to.as_str(), sent[0].subject.as_str()),
        ("ann@example.com", "Please confirm your email address on localhost:3000")
    );
    let key = key(&app).await;
    let res = verify(&app, &key).await;
    assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": "ok"})));
    assert!(doors(&app, "ann", STRONG).await.iter().all(|(status, _)| *status == StatusCode::OK));
    let res = verify(&app, &key).await;
    assert_eq!((res.status, &res.body), (StatusCode::NOT_FOUND, &json!({"detail": "Not found."})), "used");
    assert!(app.user("ann").await.email_verified);
}

#[tokio::test]
async fn users_without_an_address_cannot_log_in_under_mandatory_but_an_operators_superuser_can() {
    let app = mail_app(mandatory).await;
    assert_eq!(app.register("bob").await.status, StatusCode::CREATED);
    let res = app.post_json("/login/", &json!({"username": "bob", "password": STRONG})).await;
    assert_eq!(res.body, json!({"non_field_errors": [NOT_VERIFIED]}));
    assert!(letters(&app).await.is_empty(), "no address, no mail");
    let out = crate::process::run(
        tempfile::tempdir().unwrap().path(),
        &[
            app.db.env(),
            vec![
                ("PORTCULLIS_SUPERUSER_PASSWORD", STRONG.to_owned()),
                ("PORTCULLIS_ACCOUNT__EMAIL_VERIFICATION", "mandatory".into()),
            ],
        ]
        .concat(),
        &["createsuperuser", "--username", "root", "--email", "root@example.com", "--noinput"],
        "",
    );
    assert!(out.status.success(), "{}", crate::process::text(&out.stderr));
    let res = app.post_json("/login/", &json!({"username": "root", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn optional_verification_sends_the_mail_and_refuses_nothing_and_none_sends_nothing() {
    let app = mail_app(|s| s.account.email_verification = EmailVerification::Optional).await;
    register_with(&app, "ann", "ann@example.com").await;
    assert_eq!(letters(&app).await.len(), 1);
    assert_eq!(app.post_json("/login/", &json!({"username": "ann", "password": STRONG})).await.status, StatusCode::OK);

    let app = mail_app(|_| {}).await;
    register_with(&app, "ann", "ann@example.com").await;
    assert!(letters(&app).await.is_empty());
    let res = app.post_json("/registration/resend-email/", &json!({"email": "ann@example.com"})).await;
    assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": "ok"})));
    assert_eq!(letters(&app).await.len(), 1, "asked for, a verification mail goes whatever the setting");
    assert_eq!(verify(&app, &key(&app).await).await.status, StatusCode::OK);
}

#[tokio::test]
async fn resend_answers_the_same_for_every_address_and_mails_only_unverified_accounts() {
    let app = mail_app(mandatory).await;
    register_with(&app, "ann", "ann@example.com").await;
    register_with(&app, "cy", "cy@example.com").await;
    assert_eq!(verify(&app, &key(&app).await).await.status, StatusCode::OK, "cy's");
    let before = letters(&app).await.len();
    for address in ["ann@example.com", "cy@example.com", "nobody@example.com"] {
        let res = app.post_json("/registration/resend-email/", &json!({ "email": address })).await;
        assert_eq!((res.status, &res.body), (StatusCode::OK, &json!({"detail": "ok"})), "{address}");
    }
    let sent = letters(&app).await;
    assert_eq!(sent[before..].iter().map(|l| l.to.as_str()).collect::<Vec<_>>(), ["ann@example.com"]);
    let res = app.post_json("/registration/resend-email/", &json!({"email": "nope"})).await;
    assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &json!({"email": ["Enter a valid email address."]})));
    // The first mail's key still works: keys are not stored, each one is valid on its own.
    let first = sent[0].body.split("verify-email/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    assert_eq!(verify(&app, &first).await.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_that_are_unknown_forged_for_another_address_or_expired_are_not_found() {
    let app = mail_app(|s| {
        mandatory(s);
        s.account.email_verification_timeout = 1;
    })
    .await;
    register_with(&app, "ann", "ann@example.com").await;
    let key = key(&app).await;
    let last = if key.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &key[..key.len() - 1]);
    let not_found = (StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    for bad in ["nonsense", "MQ.x.y", "OTk5.cz8wpe.00", &forged] {
        let res = verify(&app, bad).await;
        assert_eq!((res.status, res.body), not_found, "{bad}");
    }
    let res = app.post_json("/registration/verify-email/", &json!({})).await;
    assert_eq!((res.status, &res.body), (StatusCode::BAD_REQUEST, &json!({"key": ["This field is required."]})));
    let moved = "UPDATE auth_user SET email = 'ann@example.org' WHERE username = 'ann'";
    sea_orm::ConnectionTrait::execute_unprepared(&app.state.db, moved).await.unwrap();
    assert_eq!(verify(&app, &key).await.status, StatusCode::NOT_FOUND, "the key was for the old address");
    let back = "UPDATE auth_user SET email = 'ann@example.com' WHERE username = 'ann'";
    sea_orm::ConnectionTrait::execute_unprepared(&app.state.db, back).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(verify(&app, &key).await.status, StatusCode::NOT_FOUND, "expired");
    assert!(!app.user("ann").await.email_verified);
}
