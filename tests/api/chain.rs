//! The chain's DRF semantics: not mine / success / failure per authenticator, the
//! 401-vs-403 rule keyed on the first authenticator, per-view chains, permissions.
use std::sync::atomic::Ordering;

use base64::Engine;
use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{STRONG, TestApp};

const NOT_PROVIDED: &str = "Authentication credentials were not provided.";

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

#[tokio::test]
async fn default_chain_starts_with_session_so_anonymous_is_403() {
    let app = TestApp::new().await;
    let res = app.get("/protected/").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, json!({"detail": NOT_PROVIDED}));
    assert!(res.headers.get("www-authenticate").is_none());
    // A bad credential of a later authenticator: its message, still 403.
    let res = app.get_auth("/protected/", "Token 0000000000000000000000000000000000000000").await;
    assert_eq!((res.status, res.body), (StatusCode::FORBIDDEN, json!({"detail": "Invalid token."})));
    // An unknown scheme is ignored: anonymous.
    let res = app.get_auth("/protected/", "Digest abc").await;
    assert_eq!(res.body, json!({"detail": NOT_PROVIDED}));
}

#[tokio::test]
async fn a_chain_starting_with_token_answers_401_with_its_challenge() {
    let app = TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Token, portcullis::config::AuthScheme::Session]
    })
    .await;
    let res = app.get("/protected/").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Token");
    assert_eq!(res.body, json!({"detail": NOT_PROVIDED}));
    let res = app.get_auth("/protected/", "Token nope").await;
    assert_eq!((res.status, res.body), (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token."})));
    // The keyword is configurable and matched case-insensitively.
    let app = TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Token];
        s.token.keyword = "Key".into();
    })
    .await;
    app.register("john").await;
    let token = app.token("john").await;
    assert_eq!(app.get_auth("/protected/", &format!("key {token}")).await.status, StatusCode::OK);
    let res = app.get_auth("/protected/", &format!("Token {token}")).await;
    assert_eq!(res.headers["www-authenticate"], "Key", "another scheme is anonymous");
}

#[tokio::test]
async fn jwt_and_basic_first_chains_have_their_challenges() {
    let app = TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Jwt, portcullis::config::AuthScheme::Token]
    })
    .await;
    let res = app.get("/protected/").await;
    assert_eq!(
        (res.status, res.headers["www-authenticate"].to_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "Bearer realm=\"api\"")
    );
    let res = app.get_auth("/protected/", "Token nope").await;
    assert_eq!(res.headers["www-authenticate"], "Bearer realm=\"api\"", "the FIRST authenticator decides");
    let app = TestApp::with(|s| s.auth.chain = vec![portcullis::config::AuthScheme::Basic]).await;
    let res = app.get("/protected/").await;
    assert_eq!(res.headers["www-authenticate"], "Basic realm=\"api\"");
}

#[tokio::test]
async fn session_challenge_turns_the_403_into_401() {
    let app = TestApp::with(|s| s.auth.session_challenge = true).await;
    let res = app.get("/protected/").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Session");
}

#[tokio::test]
async fn a_failing_authenticator_stops_the_chain() {
    let app = TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Token, portcullis::config::AuthScheme::Basic]
    })
    .await;
    app.register("john").await;
    // Token says "not mine" to Basic, so Basic runs and succeeds.
    assert_eq!(app.get_auth("/whoami/", &basic("john", STRONG)).await.body["auth"], "basic");
    // A token failure is final even though a later authenticator could have said yes.
    let browser = app.browser("ann").await;
    let res = browser.send(Method::GET, "/protected/", &[("authorization", "Token bad")], None).await;
    assert_eq!(res.body, json!({"detail": "Invalid token."}));
}

#[tokio::test]
async fn bad_credentials_fail_even_on_allow_any_views() {
    let app = TestApp::new().await;
    let res = app.call(Method::POST, "/register/", &[("authorization", "Token bad")], Some(&json!({}))).await;
    assert_eq!((res.status, res.body), (StatusCode::FORBIDDEN, json!({"detail": "Invalid token."})));
}

#[tokio::test]
async fn authentication_and_permissions_come_before_405() {
    let app = TestApp::new().await;
    let res = app.call(Method::DELETE, "/protected/", &[], None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    app.register("john").await;
    let token = app.token("john").await;
    let res = app.call(Method::DELETE, "/protected/", &[("authorization", &format!("Token {token}"))], None).await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.body, json!({"detail": "Method \"DELETE\" not allowed."}));
    assert_eq!(res.headers["allow"], "GET, HEAD");
}

#[tokio::test]
async fn per_view_chains_apply() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    // /profile/ is token-only: a valid session is not enough, and anonymous is 401 Token.
    let res = browser.get("/profile/").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Token");
    let token = app.token("john").await;
    let res = app.get_auth("/profile/", &format!("Token {token}")).await;
    assert_eq!(res.body, json!({"username": "john", "email": ""}));
}

#[tokio::test]
async fn every_kind_of_credential_reaches_whoami() {
    let app = TestApp::with(|s| {
        s.auth.chain = vec![
            portcullis::config::AuthScheme::Session,
            portcullis::config::AuthScheme::Token,
            portcullis::config::AuthScheme::Jwt,
            portcullis::config::AuthScheme::Basic,
        ]
    })
    .await;
    let browser = app.browser("john").await;
    assert_eq!(browser.get("/whoami/").await.body["auth"], "session");
    let token = app.token("john").await;
    assert_eq!(app.get_auth("/whoami/", &format!("Token {token}")).await.body["auth"], "token");
    let (access, _) = app.jwt("john").await;
    let who = app.get_auth("/whoami/", &format!("Bearer {access}")).await.body;
    assert_eq!((who["auth"].as_str(), who["username"].as_str()), (Some("jwt"), Some("john")));
    assert_eq!(app.get_auth("/whoami/", &basic("john", STRONG)).await.body["auth"], "basic");
}

#[tokio::test]
async fn default_permission_is_configurable() {
    let app = TestApp::with(|s| s.auth.default_permission = portcullis::config::DefaultPermission::AllowAny).await;
    let res = app.get("/session/").await;
    assert_eq!(res.body, json!({"session_key": null, "username": ""}));
    let app =
        TestApp::with(|s| s.auth.default_permission = portcullis::config::DefaultPermission::IsAuthenticatedOrReadOnly)
            .await;
    assert_eq!(app.get("/session/").await.status, StatusCode::OK);
    let app = TestApp::with(|s| s.auth.default_permission = portcullis::config::DefaultPermission::IsAdminUser).await;
    let browser = app.browser("john").await;
    let res = browser.get("/protected/").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, json!({"detail": "You do not have permission to perform this action."}));
}

#[tokio::test]
async fn publish_needs_the_permission_on_the_user_a_group_or_superuser() {
    let app = TestApp::new().await;
    let (accounts, cli) = (&app.state.accounts, &portcullis::service::identity::Origin::cli());
    let browser = app.browser("writer").await;
    let res = browser.post_csrf("/publish/", json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, json!({"detail": "You do not have permission to perform this action."}));
    assert_eq!(app.post_json("/publish/", &json!({})).await.body, json!({"detail": NOT_PROVIDED}));
    accounts.grant("writer", "articles.can_publish", cli).await.unwrap();
    let res = browser.post_csrf("/publish/", json!({})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({"message": "Article published by writer"}));
    accounts.revoke_permission("writer", "articles.can_publish", cli).await.unwrap();
    assert_eq!(browser.post_csrf("/publish/", json!({})).await.status, StatusCode::FORBIDDEN);
    accounts.grant_group("editors", "articles.can_publish", cli).await.unwrap();
    accounts.add_to_group("writer", "editors", cli).await.unwrap();
    assert_eq!(browser.post_csrf("/publish/", json!({})).await.status, StatusCode::OK);
    let boss = app.browser("boss").await;
    assert_eq!(boss.post_csrf("/publish/", json!({})).await.status, StatusCode::FORBIDDEN);
    make(&app, "boss", |u| u.is_superuser = sea_orm::Set(true)).await;
    app.changed_elsewhere().await;
    assert_eq!(boss.post_csrf("/publish/", json!({})).await.status, StatusCode::OK);
}

async fn make(app: &TestApp, username: &str, change: impl FnOnce(&mut portcullis::store::user::ActiveModel)) {
    use sea_orm::ActiveModelTrait;
    let mut user: portcullis::store::user::ActiveModel = app.user(username).await.into();
    change(&mut user);
    user.update(&app.state.db).await.unwrap();
}

#[tokio::test]
async fn users_list_is_for_staff_and_paginated() {
    let app = TestApp::new().await;
    let browser = app.browser("admin").await;
    assert_eq!(browser.get("/users/").await.status, StatusCode::FORBIDDEN);
    make(&app, "admin", |u| u.is_staff = sea_orm::Set(true)).await;
    app.changed_elsewhere().await;
    for name in ["u1", "u2", "u3"] {
        app.register(name).await;
    }
    let res = browser.get("/users/?page_size=2").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["count"], 4);
    assert_eq!(res.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(res.body["next"], "/users/?page=2&page_size=2");
    assert_eq!(res.body["previous"], json!(null));
    assert!(res.body["results"][0].get("password").is_none());
    let res = browser.get("/users/?page=2&page_size=2").await;
    assert_eq!(res.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(res.body["next"], json!(null));
    let res = browser.get("/users/?page=9").await;
    assert_eq!((res.status, res.body), (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})));
}

async fn queries_per_request(app: &TestApp) -> Vec<usize> {
    let browser = app.browser("john").await;
    let token = app.token("john").await;
    let (access, _) = app.jwt("john").await;
    let mut counts = Vec::new();
    for auth in [None, Some(format!("Token {token}")), Some(format!("Bearer {access}"))] {
        let get = || async {
            match &auth {
                None => browser.get("/protected/").await,
                Some(a) => app.get_auth("/protected/", a).await,
            }
        };
        get().await; // first use: records last_used, fills the cache
        app.state.events.flush().await; // and no audit write lands in the count
        let before = app.queries.load(Ordering::Relaxed);
        assert_eq!(get().await.status, StatusCode::OK);
        counts.push(app.queries.load(Ordering::Relaxed) - before);
    }
    counts
}

#[tokio::test]
async fn an_authenticated_request_costs_one_query_or_none_from_the_cache() {
    // No background read of the signing keys may land in a count.
    let uncached = queries_per_request(
        &TestApp::with(|s| {
            s.cache.ttl = 0;
            s.jwt.keys_poll_interval = 0;
        })
        .await,
    )
    .await;
    let cached = queries_per_request(&TestApp::with(|s| s.jwt.keys_poll_interval = 0).await).await;
    println!(
        "queries per authenticated GET /protected/ (session, token, jwt): {uncached:?} with cache.ttl = 0, {cached:?} cached"
    );
    assert_eq!(uncached, [1, 1, 1]);
    assert_eq!(cached, [0, 0, 0]);
}

#[tokio::test]
async fn revocations_through_the_server_beat_the_cache_and_others_wait_at_most_its_ttl() {
    let app = TestApp::with(|s| s.cache.ttl = 30).await;
    // Through this server: the very next request sees it, whatever the ttl.
    let browser = app.browser("john").await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK);
    let key = browser.cookie("sessionid").unwrap();
    browser.post_csrf("/logout/", json!({})).await;
    let replay = crate::helpers::Browser::new(&app);
    replay.set_cookie("sessionid", &key);
    assert_eq!(replay.get("/protected/").await.status, StatusCode::FORBIDDEN);
    let token = app.token("john").await;
    assert_eq!(app.get_auth("/protected/", &format!("Token {token}")).await.status, StatusCode::OK);
    app.call(Method::POST, "/logout/", &[("authorization", &format!("Token {token}"))], None).await;
    assert_eq!(app.get_auth("/protected/", &format!("Token {token}")).await.body, json!({"detail": "Invalid token."}));
    // Elsewhere (here: the database written directly): within cache.ttl.
    let app = TestApp::with(|s| s.cache.ttl = 1).await;
    app.register("ann").await;
    let token = app.token("ann").await;
    assert_eq!(app.get_auth("/protected/", &format!("Token {token}")).await.status, StatusCode::OK);
    portcullis::service::users::set_active(&app.state.db, "ann", false).await.unwrap();
    app.changed_elsewhere().await;
    assert_eq!(
        app.get_auth("/protected/", &format!("Token {token}")).await.body,
        json!({"detail": "User inactive or deleted."})
    );
}

#[tokio::test]
async fn basic_authentication_messages_follow_drf() {
    let app = TestApp::with(|s| s.auth.chain = vec![portcullis::config::AuthScheme::Basic]).await;
    app.register("john").await;
    let cases = [
        ("Basic".to_owned(), "Invalid basic header. No credentials provided."),
        ("Basic a b".to_owned(), "Invalid basic header. Credentials string should not contain spaces."),
        ("Basic !!!".to_owned(), "Invalid basic header. Credentials not correctly base64 encoded."),
        ("Basic bm9jb2xvbg==".to_owned(), "Invalid basic header. Credentials not correctly base64 encoded."),
        (basic("john", "wrong"), "Invalid username/password."),
        (basic("nobody", STRONG), "Invalid username/password."),
    ];
    for (header, detail) in cases {
        let res = app.get_auth("/protected/", &header).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(res.headers["www-authenticate"], "Basic realm=\"api\"");
        assert_eq!(res.body, json!({"detail": detail}), "{header}");
    }
    let res = app.get_auth("/protected/", &basic("john", STRONG)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.get_auth("/protected/", &basic("john", STRONG).replace("Basic", "basic")).await.status,
        StatusCode::OK
    );
    portcullis::service::users::set_active(&app.state.db, "john", false).await.unwrap();
    let res = app.get_auth("/protected/", &basic("john", STRONG)).await;
    assert_eq!(res.body, json!({"detail": "Invalid username/password."}));
    // Basic failures count toward the login throttle (5/min per username by default).
    for _ in 0..5 {
        app.get_auth("/protected/", &basic("target", "guess")).await;
    }
    let res = app.get_auth("/protected/", &basic("target", "guess")).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn example_cookie_views_follow_the_seed() {
    let app = TestApp::new().await;
    let browser = crate::helpers::Browser::new(&app);
    let res = browser.get("/cookie/set/").await;
    assert_eq!(res.body, json!({"message": "Cookie set!"}));
    let cookie = crate::helpers::set_cookie(&res, "token").unwrap();
    assert!(cookie.starts_with("token=example_cookie_value") && cookie.contains("Max-Age=3600"), "{cookie}");
    assert_eq!(browser.get("/cookie/get/").await.body, json!({"token": "example_cookie_value"}));
    assert_eq!(browser.get("/cookie/delete/").await.body, json!({"message": "Cookie deleted!"}));
    assert_eq!(browser.get("/cookie/get/").await.body, json!({"token": "No token"}));
}
