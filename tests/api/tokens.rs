//! Opaque tokens: DRF's header parsing and messages, digests only, per-device tokens,
//! expiry, revocation.
use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{STRONG, TestApp};

async fn token_app() -> TestApp {
    TestApp::with(|s| s.auth.chain = vec![portcullis::config::AuthScheme::Token]).await
}

#[tokio::test]
async fn obtain_token_gives_a_drf_format_key_stored_only_as_a_digest() {
    let app = token_app().await;
    app.register("john").await;
    let res =
        app.post_json("/api-token-auth/", &json!({"username": "john", "password": STRONG, "name": "iPhone"})).await;
    assert_eq!(res.status, StatusCode::OK);
    let key = res.body["token"].as_str().unwrap();
    assert_eq!(key.len(), 40);
    assert!(key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let rows = portcullis::service::tokens::list_for_user(&app.state.db, app.user("john").await.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key_digest, portcullis::crypto::digest(key).to_vec());
    assert_eq!(rows[0].name, "iPhone");
    let res = app.get_auth("/profile/", &format!("Token {key}")).await;
    assert_eq!(res.body, json!({"username": "john", "email": ""}));
    // Form-encoded too, as DRF's parsers.
    let res = app
        .post_raw(
            "/api-token-auth/",
            Some("application/x-www-form-urlencoded"),
            format!("username=john&password={STRONG}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_ne!(res.body["token"].as_str().unwrap(), key, "a new token per call");
}

#[tokio::test]
async fn obtain_token_errors_are_drfs() {
    let app = token_app().await;
    app.register("john").await;
    let res = app.post_json("/api-token-auth/", &json!({"username": "john", "password": "wrong"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body, json!({"non_field_errors": ["Unable to log in with provided credentials."]}));
    let res = app.post_json("/api-token-auth/", &json!({})).await;
    assert_eq!(res.body, json!({"username": ["This field is required."], "password": ["This field is required."]}));
}

#[tokio::test]
async fn header_parsing_messages_follow_drf() {
    let app = token_app().await;
    let cases = [
        ("Token", "Invalid token header. No credentials provided."),
        ("Token ", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        ("Token nothex", "Invalid token."),
        ("Token 0123456789abcdef0123456789abcdef01234567", "Invalid token."),
        ("token 0123456789abcdef0123456789abcdef01234567", "Invalid token."),
    ];
    for (header, detail) in cases {
        let res = app.get_auth("/protected/", header).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(res.headers["www-authenticate"], "Token");
        assert_eq!(res.body, json!({"detail": detail}), "{header}");
    }
    let resp = app
        .client
        .get("/protected/")
        .header("authorization", poem::http::HeaderValue::from_bytes(b"Token \xff\xfe").unwrap())
        .send()
        .await;
    let res = crate::helpers::answer(resp.0).await;
    assert_eq!(
        res.body,
        json!({"detail": "Invalid token header. Token string should not contain invalid characters."})
    );
    let res = app.get("/protected/").await;
    assert_eq!(res.body, json!({"detail": "Authentication credentials were not provided."}));
}

#[tokio::test]
async fn tokens_are_per_device_listed_and_revoked_one_by_one() {
    let app = token_app().await;
    app.register("john").await;
    let phone = app.token("john").await;
    let laptop = app.token("john").await;
    let res = app.get_auth("/tokens/", &format!("Token {phone}")).await;
    let list = res.body["results"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    for t in &list {
        for f in ["id", "name", "created", "last_used", "expires"] {
            assert!(t.get(f).is_some(), "{f}");
        }
        assert!(!t.to_string().contains(&phone) && !t.to_string().contains(&laptop), "never the key");
    }
    let laptop_id = portcullis::service::tokens::list_for_user(&app.state.db, app.user("john").await.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.key_digest == portcullis::crypto::digest(&laptop).to_vec())
        .unwrap()
        .id;
    app.register("mallory").await;
    let mallory = app.token("mallory").await;
    let path = format!("/tokens/{laptop_id}/");
    let res = app.call(Method::DELETE, &path, &[("authorization", &format!("Token {mallory}"))], None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = app.call(Method::DELETE, &path, &[("authorization", &format!("Token {phone}"))], None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get_auth("/protected/", &format!("Token {laptop}")).await.body, json!({"detail": "Invalid token."}));
    assert_eq!(app.get_auth("/protected/", &format!("Token {phone}")).await.status, StatusCode::OK);
    let res =
        app.call(Method::DELETE, "/tokens/not-a-number/", &[("authorization", &format!("Token {phone}"))], None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logout_revokes_the_token_without_csrf() {
    let app = TestApp::new().await;
    app.register("john").await;
    let token = app.token("john").await;
    let res = app.call(Method::POST, "/logout/", &[("authorization", &format!("Token {token}"))], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.get_auth("/profile/", &format!("Token {token}")).await;
    assert_eq!((res.status, res.body), (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token."})));
}

#[tokio::test]
async fn tokens_expire_with_a_ttl() {
    let app = TestApp::with(|s| s.token.ttl = 1).await;
    app.register("john").await;
    let token = app.token("john").await;
    assert_eq!(app.get_auth("/profile/", &format!("Token {token}")).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(app.get_auth("/profile/", &format!("Token {token}")).await.body, json!({"detail": "Invalid token."}));
    let flushed = portcullis::service::tokens::flush_expired(&app.state.db).await.unwrap();
    assert_eq!(flushed, 1);
}

#[tokio::test]
async fn last_used_is_recorded_at_most_once_a_minute() {
    let app = token_app().await;
    app.register("john").await;
    let token = app.token("john").await;
    let id = app.user("john").await.id;
    let rows = || portcullis::service::tokens::list_for_user(&app.state.db, id);
    assert!(rows().await.unwrap()[0].last_used.is_none());
    app.get_auth("/protected/", &format!("Token {token}")).await;
    let first = rows().await.unwrap()[0].last_used.unwrap();
    app.get_auth("/protected/", &format!("Token {token}")).await;
    assert_eq!(rows().await.unwrap()[0].last_used.unwrap(), first);
}
