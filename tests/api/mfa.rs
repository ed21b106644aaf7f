//! The second factor: enrolment, the otpauth:// URL field by field, recovery codes,
//! step-up for sensitive actions, deactivation. Codes come from the RFC 6238 implementation
//! below, written from the RFC and checked on its test vectors, not from the server's crate.
use base64::Engine;
use hmac::{Hmac, Mac};
use poem::http::{Method, StatusCode};
use portcullis::store::mfa::totp;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::helpers::{Answer, STRONG, TestApp};

/// RFC 4226 §5.3 over RFC 6238's counter: HMAC-SHA-1, dynamic truncation, 6 digits.
pub fn totp_at(secret: &[u8], unix: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&(unix / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let binary = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    format!("{:06}", binary % 1_000_000)
}

/// RFC 4648 base32 (no padding), as otpauth:// URLs carry secrets.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u64, 0);
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn the_test_implementation_matches_rfc_6238() {
    // Appendix B (SHA-1, secret "12345678901234567890"): the 8-digit codes' last six digits.
    let secret = b"12345678901234567890";
    for (time, code) in
        [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
    {
        assert_eq!(totp_at(secret, time), code, "T={time}");
    }
    assert_eq!(base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), secret);
}

/// The code `offset` steps away from now.
pub fn code(secret: &[u8], offset: i64) -> String {
    let now = chrono::Utc::now().timestamp() + offset * 30;
    totp_at(secret, u64::try_from(now).unwrap())
}

/// Forgets the user's last accepted step: as if the next 30-second window had come (tests
/// need more fresh codes than a window has). Within 5 s of a step's end it first waits for
/// the next step, so that codes the test computes "one step either side" of now are still
/// that when the server checks them (a slow run crossed the boundary in between).
pub async fn next_window(app: &TestApp, username: &str) {
    let into_step = chrono::Utc::now().timestamp_millis().rem_euclid(30_000);
    if into_step > 25_000 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::try_from(30_100 - into_step).unwrap())).await;
    }
    let user = app.user(username).await;
    totp::Entity::update_many()
        .col_expr(totp::Column::LastStep, Expr::value(Option::<i64>::None))
        .filter(totp::Column::UserId.eq(user.id))
        .exec(&app.state.db)
        .await
        .unwrap();
}

pub async fn send(app: &TestApp, method: Method, path: &str, auth: &str, body: Option<Value>) -> Answer {
    app.call(method, path, &[("authorization", auth)], body.as_ref()).await
}

pub async fn post(app: &TestApp, path: &str, auth: &str, body: Value) -> Answer {
    send(app, Method::POST, path, auth, Some(body)).await
}

/// A user with an active TOTP: their secret and recovery codes, and a token (at aal 2, as
/// activation left it).
pub struct Enrolled {
    pub secret: Vec<u8>,
    pub recovery: Vec<String>,
    pub auth: String,
}

pub async fn enrol(app: &TestApp, username: &str) -> Enrolled {
    app.register(username).await;
    let auth = format!("Token {}", app.token(username).await);
    let setup = post(app, "/mfa/totp/setup/", &auth, json!({})).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    let secret = base32_decode(setup.body["secret"].as_str().unwrap());
    let res = post(app, "/mfa/totp/activate/", &auth, json!({"code": code(&secret, 0)})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let recovery = res.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    Enrolled { secret, recovery, auth }
}

pub fn field(res: &Answer, name: &str) -> String {
    res.body[name][0].as_str().unwrap_or_else(|| panic!("{}: no {name} error in {}", res.status, res.body)).to_owned()
}

pub const MFA_REQUIRED: &str = r#"{"code":"mfa_required","detail":"Second factor required."}"#;

pub fn is_mfa_required(res: &Answer) -> bool {
    res.status == StatusCode::FORBIDDEN && res.body == serde_json::from_str::<Value>(MFA_REQUIRED).unwrap()
}

/// The claims of a JWT, unverified.
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn setup_gives_a_secret_an_otpauth_url_and_a_qr_code_and_a_first_code_activates_it() {
    let app = TestApp::new().await;
    app.register("ann").await;
    let auth = format!("Token {}", app.token("ann").await);
    let status = send(&app, Method::GET, "/mfa/", &auth, None).await;
    assert_eq!(status.body, json!({"totp": false, "recovery_codes_left": 0}));
    let setup = post(&app, "/mfa/totp/setup/", &auth, json!({})).await;
    assert_eq!(setup.status, StatusCode::OK, "{}", setup.body);
    assert_eq!(setup.headers["cache-control"], "no-store", "the answer carries a secret");
    let secret_b32 = setup.body["secret"].as_str().unwrap();
    assert_eq!((secret_b32.len(), base32_decode(secret_b32).len()), (32, 20), "160 bits, RFC 4226's recommendation");

    // The otpauth:// URL, field by field (Google Authenticator's key URI format).
    let url = url::Url::parse(setup.body["otpauth_url"].as_str().unwrap()).unwrap();
    assert_eq!((url.scheme(), url.host_str()), ("otpauth", Some("totp")));
    assert_eq!(url.path(), "/portcullis:ann", "issuer:account label");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("secret").map(String::as_str), Some(secret_b32));
    assert_eq!(query.get("issuer").map(String::as_str), Some("portcullis"));
    // Absent parameters mean SHA1, 6 digits, 30 s; present ones must say so.
    assert_eq!(query.get("algorithm").map_or("SHA1", String::as_str), "SHA1");
    assert_eq!(query.get("digits").map_or("6", String::as_str), "6");
    assert_eq!(query.get("period").map_or("30", String::as_str), "30");
    assert_eq!(query.len(), 2, "{query:?}");
    let svg = setup.body["qr_svg"].as_str().unwrap();
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains("<path"), "{svg}");

    // Not active until confirmed: the password alone still logs in.
    assert!(
        app.post_json("/api-token-auth/", &json!({"username": "ann", "password": STRONG})).await.body["token"]
            .is_string()
    );
    // The database holds the secret sealed, never in clear.
    let secret = base32_decode(secret_b32);
    let row = portcullis::service::mfa::records::find(&app.state.db, app.user("ann").await.id).await.unwrap().unwrap();
    assert!(!row.secret.windows(secret.len()).any(|w| w == secret.as_slice()) && row.confirmed_at.is_none());

    let wrong = if code(&secret, 0) == "000000" { "111111" } else { "000000" };
    let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": wrong})).await;
    assert_eq!((res.status, field(&res, "code")), (StatusCode::BAD_REQUEST, "Invalid code.".into()));
    let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": "abcd-efgh-jkmn"})).await;
    assert_eq!(field(&res, "code"), "Enter the 6-digit code your authenticator app shows.");
    let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": code(&secret, 0)})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let codes: Vec<&str> = res.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| regex::Regex::new("^[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}$").unwrap().is_match(c)));
    assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
    let status = send(&app, Method::GET, "/mfa/", &auth, None).await;
    assert_eq!(status.body, json!({"totp": true, "recovery_codes_left": 10}));

    // Enrolment twice: refused while active, whatever the code.
    let again = post(&app, "/mfa/totp/setup/", &auth, json!({})).await;
    assert_eq!(field(&again, "non_field_errors"), "TOTP is already active; deactivate it first.");
    let again = post(&app, "/mfa/totp/activate/", &auth, json!({"code": code(&secret, 1)})).await;
    assert_eq!(field(&again, "non_field_errors"), "TOTP is already active; deactivate it first.");
}

#[tokio::test]
async fn a_second_setup_replaces_a_pending_one_and_activation_needs_a_setup() {
    let app = TestApp::new().await;
    app.register("bob").await;
    let auth = format!("Token {}", app.token("bob").await);
    let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": "123456"})).await;
    assert_eq!(field(&res, "non_field_errors"), "No TOTP setup to confirm: call POST /mfa/totp/setup/ first.");
    let first = post(&app, "/mfa/totp/setup/", &auth, json!({})).await.body;
    let second = post(&app, "/mfa/totp/setup/", &auth, json!({})).await.body;
    assert_ne!(first["secret"], second["secret"]);
    let old = base32_decode(first["secret"].as_str().unwrap());
    let new = base32_decode(second["secret"].as_str().unwrap());
    if code(&old, 0) != code(&new, 0) {
        let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": code(&old, 0)})).await;
        assert_eq!(field(&res, "code"), "Invalid code.", "the replaced secret is gone");
    }
    let res = post(&app, "/mfa/totp/activate/", &auth, json!({"code": code(&new, 0)})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
}

#[tokio::test]
async fn codes_are_accepted_once_and_one_step_either_side() {
    // More refusals than the default 5 a minute.
    let app = TestApp::with(|s| s.throttle.login = portcullis::config::Rate::parse("50/min").unwrap()).await;
    let ann = enrol(&app, "ann").await;
    next_window(&app, "ann").await;
    let step_up = |c: String| post(&app, "/mfa/step-up/", &ann.auth, json!({ "code": c }));
    assert_eq!(step_up(code(&ann.secret, -1)).await.body, json!({"aal": 2}), "the previous step");
    let replay = step_up(code(&ann.secret, -1)).await;
    let used = "This code has already been used; wait for the next one.";
    assert_eq!((replay.status, field(&replay, "code")), (StatusCode::BAD_REQUEST, used.into()));
    assert_eq!(step_up(code(&ann.secret, 0)).await.status, StatusCode::OK, "the current step");
    assert_eq!(field(&step_up(code(&ann.secret, 0)).await, "code"), used);
    assert_eq!(step_up(code(&ann.secret, 1)).await.status, StatusCode::OK, "the next step");
    // Two steps away: wrong, whichever way (unless the digits happen to coincide).
    next_window(&app, "ann").await;
    for offset in [-3, -2, 2, 3] {
        let c = code(&ann.secret, offset);
        if (-1..=1).all(|near| code(&ann.secret, near) != c) {
            assert_eq!(field(&step_up(c).await, "code"), "Invalid code.", "offset {offset}");
        }
    }
}

#[tokio::test]
async fn sensitive_actions_need_a_second_factor_within_the_step_up_age() {
    let app = TestApp::with(|s| s.mfa.step_up_age = 1).await;
    let ann = enrol(&app, "ann").await;
    // Activation proved the factor: the token is at aal 2, fresh.
    let whoami = send(&app, Method::GET, "/whoami/", &ann.auth, None).await;
    assert_eq!((whoami.body["aal"].as_i64(), whoami.body["auth"].as_str()), (Some(2), Some("token")));
    let res = post(&app, "/tokens/", &ann.auth, json!({"name": "laptop"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let laptop = format!("Token {}", res.body["token"].as_str().unwrap());
    assert_eq!(send(&app, Method::GET, "/whoami/", &laptop, None).await.body["aal"], 2, "the caller's level");

    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    for (path, body) in [
        ("/mfa/recovery-codes/", json!({})),
        ("/tokens/", json!({})),
        ("/password/change/", json!({"old_password": STRONG, "new_password": "an0ther-h0rse-battery"})),
    ] {
        let res = post(&app, path, &ann.auth, body).await;
        assert!(is_mfa_required(&res), "{path}: {} {}", res.status, res.body);
    }
    // Cached now at its old level: the step-up must not be hidden by the credential cache.
    next_window(&app, "ann").await;
    assert_eq!(
        post(&app, "/mfa/step-up/", &ann.auth, json!({"code": code(&ann.secret, 0)})).await.status,
        StatusCode::OK
    );
    let res = post(&app, "/mfa/recovery-codes/", &ann.auth, json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_ne!(res.body["recovery_codes"][0], json!(ann.recovery[0]));
    let res = post(
        &app,
        "/password/change/",
        &ann.auth,
        json!({"old_password": STRONG, "new_password": "an0ther-h0rse-battery"}),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // Users without a second factor pass: a password is all they have.
    app.register("bob").await;
    let bob = format!("Token {}", app.token("bob").await);
    let res = post(&app, "/tokens/", &bob, json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let res =
        send(&app, Method::GET, "/whoami/", &format!("Token {}", res.body["token"].as_str().unwrap()), None).await;
    assert_eq!(res.body["aal"], 1);
    assert_eq!(
        field(&post(&app, "/mfa/step-up/", &bob, json!({"code": "123456"})).await, "non_field_errors"),
        "TOTP is not active."
    );
}

#[tokio::test]
async fn a_jwt_caller_steps_up_with_a_new_access_token() {
    let app = TestApp::with(|s| s.mfa.step_up_age = 60).await;
    let ann = enrol(&app, "ann").await;
    // A pair obtained through the login's second step is at aal 2.
    let ephemeral = app.post_json("/api/token/", &json!({"username": "ann", "password": STRONG})).await;
    next_window(&app, "ann").await;
    let body = json!({"ephemeral_token": ephemeral.body["ephemeral_token"], "code": code(&ann.secret, 0)});
    let pair = app.post_json("/mfa/verify/", &body).await.body;
    let access = pair["access"].as_str().unwrap();
    let c = claims(access);
    assert_eq!(c["aal"], 2);
    assert!((c["aal_at"].as_i64().unwrap() - chrono::Utc::now().timestamp()).abs() < 5);
    let refreshed = app.post_json("/api/token/refresh/", &json!({"refresh": pair["refresh"]})).await;
    assert_eq!(claims(refreshed.body["access"].as_str().unwrap())["aal_at"], c["aal_at"], "refresh keeps the level");
    let bearer = format!("Bearer {access}");
    assert_eq!(send(&app, Method::GET, "/whoami/", &bearer, None).await.body["aal"], 2);

    // An old access token from before the second factor: step-up answers a new one.
    let old = format!("Bearer {}", app.state.jwt.access_for(&app.user("ann").await).unwrap());
    assert!(is_mfa_required(&post(&app, "/mfa/recovery-codes/", &old, json!({})).await));
    let stepped = post(&app, "/mfa/step-up/", &old, json!({"code": code(&ann.secret, 1)})).await;
    assert_eq!(stepped.body["aal"], 2, "{}", stepped.body);
    let new = format!("Bearer {}", stepped.body["access"].as_str().unwrap());
    assert_eq!(post(&app, "/mfa/recovery-codes/", &new, json!({})).await.status, StatusCode::OK);
    assert!(is_mfa_required(&post(&app, "/mfa/recovery-codes/", &old, json!({})).await), "a JWT cannot change");
}

#[tokio::test]
async fn deactivation_takes_a_code_and_the_cli_can_remove_a_factor_without_one() {
    let app = TestApp::new().await;
    let ann = enrol(&app, "ann").await;
    next_window(&app, "ann").await;
    let wrong = if code(&ann.secret, 0) == "000000" { "111111" } else { "000000" };
    let res = post(&app, "/mfa/totp/deactivate/", &ann.auth, json!({"code": wrong})).await;
    assert_eq!(field(&res, "code"), "Invalid code.");
    let res = post(&app, "/mfa/totp/deactivate/", &ann.auth, json!({"code": ann.recovery[3].to_uppercase()})).await;
    assert_eq!(res.body, json!({"message": "Second factor removed"}));
    assert_eq!(send(&app, Method::GET, "/mfa/", &ann.auth, None).await.body["totp"], false);
    let res = app.post_json("/api-token-auth/", &json!({"username": "ann", "password": STRONG})).await;
    assert!(res.body["token"].is_string(), "a password alone again: {}", res.body);
    let res = post(&app, "/mfa/totp/deactivate/", &ann.auth, json!({"code": code(&ann.secret, 0)})).await;
    assert_eq!(field(&res, "non_field_errors"), "TOTP is not active.");

    let _bob = enrol(&app, "bob").await;
    let dir = tempfile::tempdir().unwrap();
    let out = crate::process::run(dir.path(), &app.db.env(), &["disable_mfa", "bob"], "");
    assert!(out.status.success(), "{}", crate::process::text(&out.stderr));
    assert!(crate::process::text(&out.stdout).contains("removed"));
    let res = app.post_json("/api-token-auth/", &json!({"username": "bob", "password": STRONG})).await;
    assert!(res.body["token"].is_string(), "{}", res.body);
    let out = crate::process::run(dir.path(), &app.db.env(), &["disable_mfa", "nobody"], "");
    assert_eq!(out.status.code(), Some(1));

    let events = crate::mfa_login::events(&app, "ann").await;
    for kind in ["mfa_enrolled", "mfa_failed", "mfa_recovery_code_used", "mfa_disabled"] {
        assert!(events.contains(&kind.to_owned()), "{kind} in {events:?}");
    }
    assert!(crate::mfa_login::events(&app, "bob").await.contains(&"mfa_disabled".to_owned()));
}
