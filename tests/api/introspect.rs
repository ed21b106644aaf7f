//! `POST /introspect/` (RFC 7662): who may ask, what a live DRF token, access JWT or refresh
//! JWT answers, `{"active": false}` for everything else, and never a stale answer after a
//! revocation, wherever it was made.
use base64::Engine;
use poem::http::{Method, StatusCode};
use portcullis::{config::AuthScheme, service::identity::Origin};
use serde_json::{Value, json};

use crate::helpers::{Answer, STRONG, TestApp, answer};

const FORM: &str = "application/x-www-form-urlencoded";
const INACTIVE: fn() -> Value = || json!({"active": false});

/// A service account "svc" holding `portcullis.introspect`, and its token.
async fn service(app: &TestApp) -> String {
    app.register("svc").await;
    app.state.accounts.grant("svc", "portcullis.introspect", &Origin::cli()).await.unwrap();
    app.token("svc").await
}

/// A form-encoded introspection request, as RFC 7662 has it.
async fn introspect(app: &TestApp, authorization: &str, token: &str) -> Answer {
    let body = serde_urlencoded::to_string([("token", token), ("token_type_hint", "access_token")]).unwrap();
    let req = app.client.post("/introspect/").header("authorization", authorization).content_type(FORM).body(body);
    answer(req.send().await.0).await
}

fn basic(user: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{STRONG}")))
}

#[tokio::test]
async fn only_holders_of_portcullis_introspect_may_ask_with_any_credential_or_basic() {
    let app = TestApp::new().await;
    let svc = format!("Token {}", service(&app).await);
    app.register("john").await;
    let john = format!("Token {}", app.token("john").await);
    // Anonymous: the view's chain is auth.chain (session first: DRF's 403) and Basic.
    let res = app.post_raw("/introspect/", Some(FORM), "token=x").await;
    assert_eq!(
        (res.status, res.body),
        (StatusCode::FORBIDDEN, json!({"detail": "Authentication credentials were not provided."}))
    );
    let res = introspect(&app, &john, "x").await;
    assert_eq!(
        (res.status, res.body),
        (StatusCode::FORBIDDEN, json!({"detail": "You do not have permission to perform this action."}))
    );
    // The permission through a token, a JWT, or Basic (not in auth.chain: added for this view).
    let (svc_access, _) = app.jwt("svc").await;
    for authorization in [svc.clone(), format!("Bearer {svc_access}"), basic("svc")] {
        let res = introspect(&app, &authorization, "x").await;
        assert_eq!((res.status, res.body), (StatusCode::OK, INACTIVE()), "{authorization}");
    }
    let res = introspect(&app, &basic("john"), "x").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Through a group, or as a superuser, as Django's has_perm.
    app.register("gw").await;
    app.state.accounts.grant_group("gateways", "portcullis.introspect", &Origin::cli()).await.unwrap();
    app.state.accounts.add_to_group("gw", "gateways", &Origin::cli()).await.unwrap();
    assert_eq!(introspect(&app, &basic("gw"), "x").await.status, StatusCode::OK);
    // A chain that starts with a challenge answers 401 with it.
    let app = TestApp::with(|s| s.auth.chain = vec![AuthScheme::Token]).await;
    let res = app.post_raw("/introspect/", Some(FORM), "token=x").await;
    assert_eq!((res.status, res.headers["www-authenticate"].to_str().unwrap()), (StatusCode::UNAUTHORIZED, "Token"));
}

#[tokio::test]
async fn live_tokens_say_whose_and_what_they_are() {
    let app = TestApp::with(|s| s.token.ttl = 3600).await;
    let svc = format!("Token {}", service(&app).await);
    app.register("john").await;
    let john = app.user("john").await;
    let token = app.token("john").await;
    let (access, refresh) = app.jwt("john").await;
    let res = introspect(&app, &svc, &token).await;
    assert_eq!(res.headers["cache-control"], "no-store");
    let body = res.body;
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("token")));
    assert_eq!((body["sub"].as_str(), body["username"].as_str()), (Some(john.id.to_string().as_str()), Some("john")));
    let (exp, iat) = (body["exp"].as_i64().unwrap(), body["iat"].as_i64().unwrap());
    assert!((3599..=3601).contains(&(exp - iat)), "{body}");
    for (jwt, kind, lifetime) in [(&access, "access", 300), (&refresh, "refresh", 86400)] {
        let body = introspect(&app, &svc, jwt).await.body;
        assert_eq!(body["token_type"], kind, "{body}");
        assert_eq!(body["sub"], john.id.to_string());
        assert_eq!(body["exp"].as_i64().unwrap() - body["iat"].as_i64().unwrap(), lifetime);
        assert_eq!(body.as_object().unwrap().len(), 6, "{body}");
    }
    // A DRF token that never expires (token.ttl = 0, DRF's default) has no exp.
    let app = TestApp::new().await;
    let svc = format!("Token {}", service(&app).await);
    app.register("ann").await;
    let body = introspect(&app, &svc, &app.token("ann").await).await.body;
    assert!(body["active"].as_bool().unwrap() && body.get("exp").is_none(), "{body}");
    // JSON bodies are DRF's other parser: accepted too.
    let res = app.call(Method::POST, "/introspect/", &[("authorization", &svc)], Some(&json!({"token": "x"}))).await;
    assert_eq!((res.status, res.body), (StatusCode::OK, INACTIVE()));
}

#[tokio::test]
async fn anything_not_live_is_inactive_and_bad_requests_are_clear_errors() {
    let app = TestApp::with(|s| {
        s.jwt.access_token_lifetime = 1;
        s.server.max_body_bytes = 4096;
    })
    .await;
    let svc = format!("Token {}", service(&app).await);
    app.register("john").await;
    let (short, _) = app.jwt("john").await;
    let forged = {
        let mut parts: Vec<&str> = short.split('.').collect();
        parts[2] = "c2lnbmF0dXJl";
        parts.join(".")
    };
    let long = "a".repeat(3000);
    for token in ["0123456789abcdef0123456789abcdef01234567", "x", "a.b.c", forged.as_str(), long.as_str(), " "] {
        let res = introspect(&app, &svc, token).await;
        assert_eq!((res.status, &res.body), (StatusCode::OK, &INACTIVE()), "{token:.40}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(introspect(&app, &svc, &short).await.body, INACTIVE(), "expired");
    // No token: DRF's field error. A body over server.max_body_bytes: 413. Neither is a 500.
    let res = app
        .client
        .post("/introspect/")
        .header("authorization", &svc)
        .content_type(FORM)
        .body("token_type_hint=x")
        .send()
        .await;
    let res = answer(res.0).await;
    assert_eq!((res.status, res.body), (StatusCode::BAD_REQUEST, json!({"token": ["This field is required."]})));
    let res = app.call(Method::POST, "/introspect/", &[("authorization", &svc)], Some(&json!({"token": 40}))).await;
    assert_eq!((res.status, res.body), (StatusCode::BAD_REQUEST, json!({"token": ["Not a valid string."]})));
    let res = answer(
        app.client
            .post("/introspect/")
            .header("authorization", &svc)
            .content_type(FORM)
            .body("token=x&token_type_hint=a%00b")
            .send()
            .await
            .0,
    )
    .await;
    let null = json!({"token_type_hint": ["Null characters are not allowed."]});
    assert_eq!((res.status, res.body), (StatusCode::BAD_REQUEST, null));
    let big = format!("token={}", "a".repeat(5000));
    let res = answer(
        app.client.post("/introspect/").header("authorization", &svc).content_type(FORM).body(big).send().await.0,
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert!(res.body["detail"].as_str().unwrap().contains("4096"), "{}", res.body);
    let res = app.post_raw("/introspect/", Some("text/plain"), "token=x").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no credentials: refused before the body is read");
    let res = answer(
        app.client
            .post("/introspect/")
            .header("authorization", &svc)
            .content_type("text/plain")
            .body("x")
            .send()
            .await
            .0,
    )
    .await;
    assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn every_revocation_is_seen_at_once_wherever_it_was_made() {
    // A long cache: what the authenticators may reuse, introspection never does.
    let app = TestApp::with(|s| {
        s.cache.ttl = 60;
        s.jwt.rotate_refresh_tokens = true;
    })
    .await;
    let svc = format!("Token {}", service(&app).await);
    let active = |token: String| {
        let svc = svc.clone();
        let app = &app;
        async move { introspect(app, &svc, &token).await.body["active"].as_bool().unwrap() }
    };
    app.register("john").await;
    // A token revoked in the database by someone else (another instance, SQL by hand) while
    // this instance has it cached: /protected/ may still accept it for cache.ttl, never introspection.
    let token = app.token("john").await;
    assert_eq!(app.get_auth("/protected/", &format!("Token {token}")).await.status, StatusCode::OK);
    let john = app.user("john").await;
    portcullis::service::tokens::delete_for_user(&app.state.db, john.id).await.unwrap();
    assert!(!active(token).await);
    // Logout with the token, and a blacklisted or rotated-away refresh token.
    let token = app.token("john").await;
    assert!(active(token.clone()).await);
    app.call(Method::POST, "/logout/", &[("authorization", &format!("Token {token}"))], None).await;
    assert!(!active(token).await);
    let (_, refresh) = app.jwt("john").await;
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    let rotated = res.body["refresh"].as_str().unwrap().to_owned();
    assert!(!active(refresh).await, "rotated away");
    assert!(active(rotated.clone()).await);
    app.post_json("/api/token/blacklist/", &json!({"refresh": rotated})).await;
    assert!(!active(rotated).await, "blacklisted");
    // A password change ends access and refresh JWTs and tokens; so does deactivation.
    let (access, refresh) = app.jwt("john").await;
    let token = app.token("john").await;
    assert!(active(access.clone()).await && active(refresh.clone()).await);
    app.state.accounts.set_password("john", "an0ther-g00d-passw0rd".into(), &Origin::cli()).await.unwrap();
    for credential in [access, refresh, token] {
        assert!(!active(credential).await);
    }
    app.register("ann").await;
    let (access, _) = app.jwt("ann").await;
    portcullis::service::users::set_active(&app.state.db, "ann", false).await.unwrap();
    assert!(!active(access).await, "deactivated in the database");
}
