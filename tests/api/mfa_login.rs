//! The login's second step at every door (`/login/`, `/api-token-auth/`, `/api/token/`, the
//! login page; Basic refused), and bad input: wrong, reused, malformed codes; ephemeral
//! tokens used twice, expired, or for another user; throttling; never a 500.
use base64::Engine;
use poem::http::{Method, StatusCode};
use portcullis::{
    config::AuthScheme,
    service::audit_log::{self, Filter},
};
use serde_json::json;

use crate::{
    helpers::{Browser, STRONG, TestApp, set_cookie},
    mfa::{code, enrol, field, next_window, send},
};

const INVALID_EPHEMERAL: &str = "Invalid or expired token.";
const MALFORMED: &str = "Enter a 6-digit code or a recovery code.";

/// The user's audit event kinds, oldest first.
pub async fn events(app: &TestApp, username: &str) -> Vec<String> {
    app.state.events.flush().await;
    let filter = Filter { username: Some(username.into()), ..Filter::default() };
    let (rows, _) = audit_log::page(&app.state.db, &filter, 0, 200).await.unwrap();
    rows.into_iter().rev().map(|r| r.event.to_owned()).collect()
}

/// A right password at `path`: the ephemeral token of the pending login.
async fn ephemeral(app: &TestApp, path: &str, username: &str) -> String {
    let res = app.post_json(path, &json!({"username": username, "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["mfa_required"], true, "{path}: {}", res.body);
    assert!(res.headers.get("set-cookie").is_none(), "{path}: nothing is issued yet");
    assert_eq!(res.body.as_object().unwrap().len(), 2, "{}", res.body);
    res.body["ephemeral_token"].as_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, ephemeral: &str, code: &str) -> crate::helpers::Answer {
    app.post_json("/mfa/verify/", &json!({"ephemeral_token": ephemeral, "code": code})).await
}

#[tokio::test]
async fn each_credential_endpoint_asks_for_the_code_and_verify_answers_as_that_endpoint() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;

    // /login/: the session cookie comes with the second step, at aal 2.
    let browser = Browser::new(&app);
    let res = browser.post("/login/", json!({"username": "ann", "password": STRONG})).await;
    assert_eq!(res.body["mfa_required"], true, "{}", res.body);
    assert!(browser.cookie("sessionid").is_none());
    next_window(&app, "ann").await;
    let body = json!({"ephemeral_token": res.body["ephemeral_token"], "code": code(&ann.secret, 0)});
    let res = browser.post("/mfa/verify/", body).await;
    assert_eq!(res.body, json!({"message": "Logged in successfully"}));
    assert!(set_cookie(&res, "sessionid").unwrap().contains("HttpOnly"));
    assert!(set_cookie(&res, "csrftoken").is_some() && set_cookie(&res, "portcullis_device").is_some());
    assert_eq!(res.headers["cache-control"], "no-store");
    let whoami = browser.get("/whoami/").await.body;
    assert_eq!((whoami["auth"].as_str(), whoami["aal"].as_i64()), (Some("session"), Some(2)));

    // /api-token-auth/: the token (with its device name).
    let token = ephemeral(&app, "/api-token-auth/", "ann").await;
    let res = verify(&app, &token, &code(&ann.secret, 1)).await;
    let key = res.body["token"].as_str().unwrap_or_else(|| panic!("{}", res.body));
    assert_eq!((key.len(), res.body.as_object().unwrap().len()), (40, 1));
    let whoami = app.get_auth("/whoami/", &format!("Token {key}")).await.body;
    assert_eq!((whoami["auth"].as_str(), whoami["aal"].as_i64()), (Some("token"), Some(2)));

    // /api/token/: the pair, with recovery codes this time.
    let jwt = ephemeral(&app, "/api/token/", "ann").await;
    let res = verify(&app, &jwt, &ann.recovery[0]).await;
    assert!(res.body["refresh"].is_string() && res.body["access"].is_string(), "{}", res.body);
    let whoami = app.get_auth("/whoami/", &format!("Bearer {}", res.body["access"].as_str().unwrap())).await.body;
    assert_eq!((whoami["auth"].as_str(), whoami["aal"].as_i64()), (Some("jwt"), Some(2)));
    let again = verify(&app, &ephemeral(&app, "/api/token/", "ann").await, &ann.recovery[0]).await;
    assert_eq!(field(&again, "code"), "Invalid code.", "a recovery code works once");
    assert_eq!(send(&app, Method::GET, "/mfa/", &ann.auth, None).await.body["recovery_codes_left"], 9);

    // Users without a second factor are not asked, and their credentials are at aal 1.
    app.register("bob").await;
    let bob = app.token("bob").await;
    assert_eq!(app.get_auth("/whoami/", &format!("Token {bob}")).await.body["aal"], 1);

    let kinds = events(&app, "ann").await;
    for kind in ["mfa_challenged", "mfa_verified", "mfa_recovery_code_used", "login_succeeded", "jwt_issued"] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
    let metrics = app.state.metrics.render(&app.state.db, 0);
    assert!(metrics.contains(r#"portcullis_mfa_codes_total{method="totp",outcome="success"}"#), "{metrics}");
    assert!(metrics.contains(r#"portcullis_mfa_codes_total{method="recovery_code",outcome="failure"} 1"#));
}

#[tokio::test]
async fn basic_authentication_is_refused_to_users_with_a_second_factor() {
    let app = TestApp::with(|s| s.auth.chain = vec![AuthScheme::Basic, AuthScheme::Token]).await;
    let _ann = enrol(&app, "ann").await;
    let basic = |password: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ann:{password}")))
    };
    let res = app.get_auth("/whoami/", &basic(STRONG)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.body, json!({"detail": "Second factor required.", "code": "mfa_required"}));
    assert_eq!(res.headers["www-authenticate"], "Basic realm=\"api\"");
    let res = app.get_auth("/whoami/", &basic("wrong-password")).await;
    assert_eq!(res.body, json!({"detail": "Invalid username/password."}), "nothing told without the password");
}

#[tokio::test]
async fn ephemeral_tokens_work_once_expire_and_complete_only_their_own_login() {
    let app = TestApp::with(|s| s.mfa.ephemeral_ttl = 2).await;
    let ann = enrol(&app, "ann").await;
    let bob = enrol(&app, "bob").await;
    next_window(&app, "ann").await;
    next_window(&app, "bob").await;

    let token = ephemeral(&app, "/api-token-auth/", "ann").await;
    // Bob's code with Ann's pending login: a wrong code for Ann.
    if code(&bob.secret, 0) != code(&ann.secret, 0) {
        assert_eq!(field(&verify(&app, &token, &code(&bob.secret, 0)).await, "code"), "Invalid code.");
    }
    assert_eq!(verify(&app, &token, &code(&ann.secret, 0)).await.status, StatusCode::OK, "a wrong code keeps it");
    let twice = verify(&app, &token, &code(&ann.secret, 1)).await;
    assert_eq!((twice.status, field(&twice, "ephemeral_token")), (StatusCode::BAD_REQUEST, INVALID_EPHEMERAL.into()));

    let late = ephemeral(&app, "/login/", "bob").await;
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    assert_eq!(field(&verify(&app, &late, &code(&bob.secret, 0)).await, "ephemeral_token"), INVALID_EPHEMERAL);
    assert_eq!(
        field(&verify(&app, &"ab".repeat(32), &code(&bob.secret, 0)).await, "ephemeral_token"),
        INVALID_EPHEMERAL
    );

    // A password change (or any new security stamp) ends pending logins.
    let pending = ephemeral(&app, "/login/", "bob").await;
    let out = crate::process::run(tempfile::tempdir().unwrap().path(), &app.db.env(), &["logoutall", "bob"], "");
    assert!(out.status.success());
    assert_eq!(field(&verify(&app, &pending, &code(&bob.secret, 0)).await, "ephemeral_token"), INVALID_EPHEMERAL);
}

#[tokio::test]
async fn bad_input_gets_drf_field_errors_and_never_a_500() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    let token = ephemeral(&app, "/login/", "ann").await;
    let res = app.post_json("/mfa/verify/", &json!({})).await;
    let required = json!(["This field is required."]);
    assert_eq!(
        (res.status, &res.body),
        (StatusCode::BAD_REQUEST, &json!({"ephemeral_token": required, "code": required}))
    );
    let res = app.post_json("/mfa/verify/", &json!({"ephemeral_token": null, "code": ["1"]})).await;
    assert_eq!(res.body, json!({"ephemeral_token": ["This field may not be null."], "code": ["Not a valid string."]}));
    for bad in ["abcdef", "1234567", "12345", "12 34 56", &"1".repeat(100), "１２３４５６", "123456\u{0}"] {
        let res = verify(&app, &token, bad).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", res.body);
        assert!(res.body["code"].is_array(), "{bad:?}: {}", res.body);
    }
    assert_eq!(field(&verify(&app, &token, "abcdef").await, "code"), MALFORMED);
    assert_eq!(
        field(&verify(&app, "nope", "abcdef").await, "ephemeral_token"),
        INVALID_EPHEMERAL,
        "both fields are reported"
    );
    let res = app.post_raw("/mfa/verify/", Some("application/json"), "[1]").await;
    assert!(res.body["non_field_errors"].is_array());
    let res = app.post_raw("/mfa/verify/", Some("application/json"), "{").await;
    assert!(res.body["detail"].as_str().unwrap().starts_with("JSON parse error"));
    // A code sent as a JSON number, and a form-encoded body, are read as DRF reads them.
    next_window(&app, "ann").await;
    let digits = code(&ann.secret, 0);
    if !digits.starts_with('0') {
        let res = app
            .post_json("/mfa/verify/", &json!({"ephemeral_token": token, "code": digits.parse::<u32>().unwrap()}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let token = ephemeral(&app, "/login/", "ann").await;
    let form = format!("ephemeral_token={token}&code={}", ann.recovery[1]);
    let res = app.post_raw("/mfa/verify/", Some("application/x-www-form-urlencoded"), form).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // Bodies that are not objects, where nothing is read from them either.
    for path in ["/mfa/totp/setup/", "/mfa/recovery-codes/"] {
        let res = app.call(Method::POST, path, &[("authorization", &ann.auth)], Some(&json!([null, null]))).await;
        assert!(res.body["non_field_errors"].is_array(), "{path}: {}", res.body);
    }
    // The endpoints of a logged-in user refuse anonymous callers as DRF does.
    for path in ["/mfa/step-up/", "/mfa/totp/setup/", "/mfa/recovery-codes/"] {
        assert_eq!(app.post_json(path, &json!({"code": "123456"})).await.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn wrong_codes_spend_the_usernames_login_throttle() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    next_window(&app, "ann").await;
    let token = ephemeral(&app, "/api/token/", "ann").await;
    let right = code(&ann.secret, 0);
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(field(&verify(&app, &token, wrong).await, "code"), "Invalid code.");
    }
    let res = verify(&app, &token, &right).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "the right code too, once throttled: {}", res.body);
    assert!(res.headers.contains_key("retry-after"));
    let res = app.post_json("/api/token/", &json!({"username": "ann", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "the same bucket as passwords");
    assert_eq!(events(&app, "ann").await.iter().filter(|e| *e == "mfa_failed").count(), 5);
}

#[tokio::test]
async fn two_concurrent_verifies_of_one_login_issue_one_credential() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    next_window(&app, "ann").await;
    let token = ephemeral(&app, "/api-token-auth/", "ann").await;
    let (c0, c1) = (code(&ann.secret, 0), ann.recovery[2].clone());
    let (a, b) = tokio::join!(verify(&app, &token, &c0), verify(&app, &token, &c1));
    let ok = [&a, &b].iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(ok, 1, "{} {} / {} {}", a.status, a.body, b.status, b.body);
}

#[tokio::test]
async fn an_unreadable_secret_is_a_503_and_recovery_codes_still_work() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    // As if the key had changed: the sealed secret no longer opens.
    let user = app.user("ann").await;
    let db = &app.state.db;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    portcullis::store::mfa::totp::Entity::update_many()
        .col_expr(portcullis::store::mfa::totp::Column::Secret, Expr::value(vec![0u8; 48]))
        .filter(portcullis::store::mfa::totp::Column::UserId.eq(user.id))
        .exec(db)
        .await
        .unwrap();
    let token = ephemeral(&app, "/login/", "ann").await;
    let res = verify(&app, &token, &code(&ann.secret, 0)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert!(res.body["detail"].is_string());
    assert_eq!(verify(&app, &token, &ann.recovery[4]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_login_page_asks_for_the_code_in_a_second_form() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    next_window(&app, "ann").await;
    let page = |cookie: &str, form: String| {
        let req = app.client.post("/accounts/login/?next=/dashboard/").header("cookie", cookie.to_owned());
        async move {
            let resp = req.content_type("application/x-www-form-urlencoded").body(form).send().await.0;
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, resp.into_body().into_string().await.unwrap())
        }
    };
    let secret = "a".repeat(32);
    let cookie = format!("csrftoken={secret}");
    let form = format!("csrfmiddlewaretoken={secret}&username=ann&password={STRONG}");
    let (status, headers, html) = page(&cookie, form).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("sessionid=")));
    assert!(html.contains("name=\"code\"") && html.contains("autocomplete=\"one-time-code\""), "{html}");
    let pending = regex::Regex::new(r#"name="ephemeral_token" value="([0-9a-f]+)""#).unwrap().captures(&html).unwrap()
        [1]
    .to_owned();

    let wrong = if code(&ann.secret, 0) == "000000" { "111111" } else { "000000" };
    let step = |c: &str| format!("csrfmiddlewaretoken={secret}&ephemeral_token={pending}&code={c}&next=/dashboard/");
    let (status, _, html) = page(&cookie, step(wrong)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Invalid code.") && html.contains(&pending), "the code form again: {html}");
    let (status, headers, _) = page(&cookie, step(&code(&ann.secret, 0))).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (StatusCode::FOUND, "/dashboard/"));
    assert!(headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("sessionid=")));
    // Used, or from another door (an /api-token-auth/ login): back to the password form.
    let (_, _, html) = page(&cookie, step(&code(&ann.secret, 1))).await;
    assert!(html.contains("This login has expired") && html.contains("name=\"password\""), "{html}");
    let token_login = ephemeral(&app, "/api-token-auth/", "ann").await;
    let form = format!("csrfmiddlewaretoken={secret}&ephemeral_token={token_login}&code={}", code(&ann.secret, 1));
    let (_, _, html) = page(&cookie, form).await;
    assert!(html.contains("This login has expired"), "{html}");
}
