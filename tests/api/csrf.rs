//! CSRF as DRF's SessionAuthentication + Django's CsrfViewMiddleware: only for
//! session-authenticated unsafe requests, with Django's exact failure reasons.
use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Browser, TestApp};

async fn post_with(browser: &Browser<'_>, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let res = browser.send(Method::POST, "/publish/", headers, Some(&json!({}))).await;
    (res.status, res.body["detail"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn every_failure_reason_is_djangos() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let secret = browser.cookie("csrftoken").unwrap();
    assert_eq!(secret.len(), 32);

    let (status, detail) = post_with(&browser, &[]).await;
    assert_eq!((status, detail.as_str()), (StatusCode::FORBIDDEN, "CSRF Failed: CSRF token missing."));
    let cases = [
        ("short", "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."),
        (&"!".repeat(32)[..], "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header has invalid characters."),
        (&"a".repeat(32)[..], "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect."),
        (&"a".repeat(64)[..], "CSRF Failed: CSRF token from the 'X-Csrftoken' HTTP header incorrect."),
    ];
    for (token, reason) in cases {
        assert_eq!(post_with(&browser, &[("x-csrftoken", token)]).await.1, reason, "{token}");
    }
    let origin = [("x-csrftoken", secret.as_str()), ("origin", "https://evil.example"), ("host", "localhost")];
    assert_eq!(
        post_with(&browser, &origin).await.1,
        "CSRF Failed: Origin checking failed - https://evil.example does not match any trusted origins."
    );
    let cookies_only = Browser::new(&app);
    cookies_only.set_cookie("sessionid", &browser.cookie("sessionid").unwrap());
    assert_eq!(post_with(&cookies_only, &[("x-csrftoken", &secret)]).await.1, "CSRF Failed: CSRF cookie not set.");
    cookies_only.set_cookie("csrftoken", "tooshort");
    assert_eq!(
        post_with(&cookies_only, &[("x-csrftoken", &secret)]).await.1,
        "CSRF Failed: CSRF cookie has incorrect length."
    );
    cookies_only.set_cookie("csrftoken", &"$".repeat(32));
    assert_eq!(
        post_with(&cookies_only, &[("x-csrftoken", &secret)]).await.1,
        "CSRF Failed: CSRF cookie has invalid characters."
    );
}

#[tokio::test]
async fn the_secret_a_masked_token_or_a_form_field_passes() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    app.state
        .accounts
        .grant("john", "articles.can_publish", &portcullis::service::identity::Origin::cli())
        .await
        .unwrap();
    let secret = browser.cookie("csrftoken").unwrap();
    assert_eq!(post_with(&browser, &[("x-csrftoken", &secret)]).await.0, StatusCode::OK);
    // GET /csrf/ gives a masked 64-character token, different each time, for the same secret.
    let first = browser.get("/csrf/").await.body["csrfToken"].as_str().unwrap().to_owned();
    let second = browser.get("/csrf/").await.body["csrfToken"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 64);
    assert_ne!(first, second);
    assert_eq!(browser.cookie("csrftoken").unwrap(), secret, "an existing cookie is kept");
    for token in [&first, &second] {
        assert_eq!(post_with(&browser, &[("x-csrftoken", token)]).await.0, StatusCode::OK);
    }
    // Same origin is fine.
    let same = [("x-csrftoken", secret.as_str()), ("origin", "http://localhost:8000"), ("host", "localhost:8000")];
    assert_eq!(post_with(&browser, &same).await.0, StatusCode::OK);
    // The form field csrfmiddlewaretoken, for HTML forms.
    let cookie = format!("sessionid={}; csrftoken={secret}", browser.cookie("sessionid").unwrap());
    let resp = app
        .client
        .post("/publish/")
        .header("cookie", cookie)
        .content_type("application/x-www-form-urlencoded")
        .body(format!("csrfmiddlewaretoken={first}"))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
}

#[tokio::test]
async fn trusted_origins_are_accepted() {
    let app = TestApp::with(|s| {
        s.csrf.trusted_origins =
            vec!["https://app.example.com".into(), "https://*.example.org".into(), "https://*corp.test".into()]
    })
    .await;
    let browser = app.browser("john").await;
    app.state
        .accounts
        .grant("john", "articles.can_publish", &portcullis::service::identity::Origin::cli())
        .await
        .unwrap();
    let secret = browser.cookie("csrftoken").unwrap();
    for (origin, ok) in [
        ("https://app.example.com", true),
        ("https://a.example.org", true),
        ("http://a.example.org", false),
        ("https://example.com", false),
        // As Django's CSRF_TRUSTED_ORIGINS: the port counts, and "*" only ever means "*.".
        ("https://a.example.org:8443", false),
        ("https://evilexample.org", false),
        ("https://corp.test", true),
        ("https://evilcorp.test", false),
    ] {
        let status = post_with(&browser, &[("x-csrftoken", &secret), ("origin", origin)]).await.0;
        assert_eq!(status == StatusCode::OK, ok, "{origin}");
    }
}

#[tokio::test]
async fn safe_methods_anonymous_and_token_requests_are_never_checked() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK);
    // Anonymous POST: no CSRF (DRF), the view's own rules apply.
    assert_eq!(app.post_json("/logout/", &json!({})).await.status, StatusCode::OK);
    // A token request with a session cookie and no CSRF header: the token is checked first
    // on a token-first chain, and token requests are CSRF-exempt.
    let app = TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Token, portcullis::config::AuthScheme::Session]
    })
    .await;
    let browser = app.browser("ann").await;
    let token = app.token("ann").await;
    let res = browser.send(Method::POST, "/logout/", &[("authorization", &format!("Token {token}"))], None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.get_auth("/profile/", &format!("Token {token}")).await;
    assert_eq!(res.body, json!({"detail": "Invalid token."}), "logout revoked the token");
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK, "and left the session alone");
}
