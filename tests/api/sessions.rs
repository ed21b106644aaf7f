//! Session authentication: the seed's browser flow, fixation, logout, expiry, sliding
//! expiry, session data, the session list, password change and login throttling.
use std::time::Duration;

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Browser, STRONG, TestApp, set_cookie};

#[tokio::test]
async fn the_seed_flow_register_login_protected_logout() {
    let app = TestApp::new().await;
    let browser = Browser::new(&app);
    let res = browser.post("/register/", json!({"username": "john", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = browser.post("/login/", json!({"username": "john", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({"message": "Logged in successfully"}));
    let session = set_cookie(&res, "sessionid").unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"));
    let csrf = set_cookie(&res, "csrftoken").unwrap();
    assert!(!csrf.contains("HttpOnly") && csrf.contains("Max-Age=31449600"), "{csrf}");
    let key = browser.cookie("sessionid").unwrap();
    assert_eq!(key.len(), 32);

    let res = browser.get("/protected/").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({"message": "Hello, john! You have access to this view."}));
    let res = browser.get("/dashboard/").await;
    assert_eq!(res.body, json!({"message": "Hello john, welcome to your dashboard"}));

    let res = browser.post_csrf("/logout/", json!({})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({"message": "Logged out successfully"}));
    let removal = set_cookie(&res, "sessionid").unwrap();
    assert!(
        removal.starts_with("sessionid=;") && removal.contains("Max-Age=0") && removal.contains("1970"),
        "{removal}"
    );

    // The old cookie replayed is anonymous: 403 with the default chain (session first).
    let replay = Browser::new(&app);
    replay.set_cookie("sessionid", &key);
    let res = replay.get("/protected/").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.body, json!({"detail": "Authentication credentials were not provided."}));
    assert!(res.headers.get("www-authenticate").is_none());
    assert!(set_cookie(&res, "sessionid").is_some_and(|c| c.contains("Max-Age=0")), "a dead cookie is cleared");
}

#[tokio::test]
async fn only_a_digest_of_the_session_key_is_stored() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let key = browser.cookie("sessionid").unwrap();
    let rows = portcullis::service::sessions::list_for_user(&app.state.db, app.user("john").await.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key_digest, portcullis::crypto::digest(&key).to_vec());
    assert_ne!(rows[0].public_id, key);
    let res = browser.get("/session/").await;
    assert_eq!(res.body, json!({"session_key": rows[0].public_id, "username": "john"}));
}

#[tokio::test]
async fn login_replaces_a_presented_session_key() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let first = browser.cookie("sessionid").unwrap();
    browser
        .send(
            Method::PATCH,
            "/session/data/",
            &[("x-csrftoken", &browser.cookie("csrftoken").unwrap())],
            Some(&json!({"cart": 3})),
        )
        .await;
    let res = browser.post_csrf("/login/", json!({"username": "john", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let second = browser.cookie("sessionid").unwrap();
    assert_ne!(first, second, "the key is rotated at login");
    assert_eq!(browser.get("/session/data/").await.body, json!({"cart": 3}), "same user: data kept (cycle_key)");
    let old = Browser::new(&app);
    old.set_cookie("sessionid", &first);
    assert_eq!(old.get("/protected/").await.status, StatusCode::FORBIDDEN);

    // A fixated key of another user's session is dropped, not adopted.
    app.register("eve").await;
    let res = browser.post_csrf("/login/", json!({"username": "eve", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(browser.get("/session/data/").await.body, json!({}));
    let old = Browser::new(&app);
    old.set_cookie("sessionid", &second);
    assert_eq!(old.get("/protected/").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn wrong_password_unknown_and_inactive_users_get_one_answer() {
    let app = TestApp::new().await;
    app.register("john").await;
    app.register("sleepy").await;
    portcullis::service::users::set_active(&app.state.db, "sleepy", false).await.unwrap();
    for (username, password) in [("john", "wrong-password"), ("nobody", STRONG), ("sleepy", STRONG)] {
        let res = app.post_json("/login/", &json!({"username": username, "password": password})).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(res.body, json!({"error": "Invalid credentials"}));
        assert!(set_cookie(&res, "sessionid").is_none());
    }
    // The seed's view answers any failed login alike, missing and malformed fields included.
    for body in [
        json!({}),
        json!({"password": STRONG}),
        json!({"username": "john"}),
        json!({"username": 5, "password": []}),
        json!({"username": "", "password": ""}),
        json!({"username": null, "password": STRONG}),
    ] {
        let res = app.post_json("/login/", &body).await;
        assert_eq!(
            (res.status, &res.body),
            (StatusCode::BAD_REQUEST, &json!({"error": "Invalid credentials"})),
            "{body}"
        );
    }
    assert_eq!(app.post_raw("/login/", None, "").await.body, json!({"error": "Invalid credentials"}));
    let res = app
        .post_raw("/login/", Some("application/x-www-form-urlencoded"), format!("username=john&password={STRONG}"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "form-encoded login");
    assert!(app.user("john").await.last_login.is_some(), "last_login updated");
}

#[tokio::test]
async fn login_refuses_a_foreign_origin() {
    let app = TestApp::new().await;
    app.register("john").await;
    let body = json!({"username": "john", "password": STRONG});
    let res = app
        .call(Method::POST, "/login/", &[("origin", "http://evil.example"), ("host", "localhost")], Some(&body))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        res.body,
        json!({"detail": "CSRF Failed: Origin checking failed - http://evil.example does not match any trusted origins."})
    );
    let res =
        app.call(Method::POST, "/login/", &[("origin", "http://localhost"), ("host", "localhost")], Some(&body)).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app
        .call(
            Method::POST,
            "/register/",
            &[("origin", "http://evil.example")],
            Some(&json!({"username": "x", "password": STRONG})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_username() {
    let app = TestApp::new().await;
    app.register("john").await;
    for _ in 0..5 {
        let res = app.post_json("/login/", &json!({"username": "john", "password": "nope-nope-nope"})).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
    }
    // Even the right password waits now, and so does any endpoint that checks a password.
    for path in ["/login/", "/api-token-auth/", "/api/token/"] {
        let res = app.post_json(path, &json!({"username": "JOHN", "password": STRONG})).await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        let wait: u64 = res.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait));
        assert_eq!(
            res.body,
            json!({"detail": format!("Request was throttled. Expected available in {wait} seconds.")})
        );
    }
    app.register("ann").await;
    let res = app.post_json("/login/", &json!({"username": "ann", "password": STRONG})).await;
    assert_eq!(res.status, StatusCode::OK, "other users are not affected");
}

#[tokio::test]
async fn a_short_cookie_age_expires_the_session() {
    let app = TestApp::with(|s| s.session.cookie_age = 1).await;
    let browser = app.browser("john").await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stale = Browser::new(&app);
    stale.set_cookie("sessionid", &browser.cookie("sessionid").unwrap());
    assert_eq!(stale.get("/protected/").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn browser_close_cookies_have_no_expiry() {
    let app = TestApp::with(|s| s.session.expire_at_browser_close = true).await;
    app.register("john").await;
    let res = app.post_json("/login/", &json!({"username": "john", "password": STRONG})).await;
    let cookie = set_cookie(&res, "sessionid").unwrap();
    assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"), "{cookie}");
    assert!(cookie.contains("HttpOnly"));
}

#[tokio::test]
async fn cookie_flags_follow_the_config() {
    let app = TestApp::with(|s| {
        s.session.cookie_secure = true;
        s.session.cookie_samesite = portcullis::config::SameSite::Strict;
        s.csrf.cookie_secure = true;
        s.session.cookie_name = "sid".into();
        s.session.cookie_domain = "example.test".into();
    })
    .await;
    app.register("john").await;
    let res = app.post_json("/login/", &json!({"username": "john", "password": STRONG})).await;
    let cookie = set_cookie(&res, "sid").unwrap();
    assert!(cookie.contains("Secure") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Domain=example.test"), "SESSION_COOKIE_DOMAIN: {cookie}");
    assert!(set_cookie(&res, "csrftoken").unwrap().contains("Secure"));
    // Removing a domain cookie takes the same domain.
    let sid = cookie.split(';').next().unwrap().to_owned();
    let token = app.token("john").await;
    app.call(poem::http::Method::POST, "/logoutall/", &[("authorization", &format!("Token {token}"))], None).await;
    let res = app.call(poem::http::Method::GET, "/csrf/", &[("cookie", &sid)], None).await;
    let removal = set_cookie(&res, "sid").unwrap();
    assert!(removal.contains("Max-Age=0") && removal.contains("Domain=example.test"), "{removal}");
}

#[tokio::test]
async fn save_every_request_slides_the_expiry() {
    let app = TestApp::with(|s| {
        s.session.cookie_age = 2;
        s.session.save_every_request = true;
    })
    .await;
    let browser = app.browser("john").await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let res = browser.get("/protected/").await;
        assert_eq!(res.status, StatusCode::OK, "still alive after {:?}", res.body);
        assert!(set_cookie(&res, "sessionid").is_some_and(|c| c.contains("Max-Age=2")), "the cookie is re-sent");
    }
    // Without activity it expires.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn session_data_merges_and_concurrent_patches_all_survive() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let csrf = browser.cookie("csrftoken").unwrap();
    let patch = |body: serde_json::Value| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move { browser.send(Method::PATCH, "/session/data/", &[("x-csrftoken", &csrf)], Some(&body)).await }
    };
    assert_eq!(browser.get("/session/data/").await.body, json!({}));
    let res = patch(json!({"theme": "dark", "lang": "fr"})).await;
    assert_eq!(res.body, json!({"theme": "dark", "lang": "fr"}));
    let res = patch(json!({"lang": null, "n": 1})).await;
    assert_eq!(res.body, json!({"theme": "dark", "n": 1}));
    let writes: Vec<_> = (0..8).map(|i| patch(json!({ format!("k{i}"): i }))).collect();
    for res in futures_util::future::join_all(writes).await {
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    let data = browser.get("/session/data/").await.body;
    for i in 0..8 {
        assert_eq!(data[format!("k{i}")], json!(i), "{data}");
    }
    let res = patch(json!([1])).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    // Not for token users: the view's chain is session only.
    app.register("tok").await;
    let token = app.token("tok").await;
    let res = app.get_auth("/session/data/", &format!("Token {token}")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_can_be_listed_and_revoked_but_only_ones_own() {
    let app = TestApp::new().await;
    let laptop = app.browser("john").await;
    let phone = Browser::new(&app);
    phone.post("/login/", json!({"username": "john", "password": STRONG})).await;
    let res = laptop.get("/sessions/").await;
    assert_eq!((&res.body["count"], &res.body["next"]), (&json!(2), &json!(null)));
    let list = res.body["results"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    let fields = ["id", "created", "last_seen", "expires", "ip", "user_agent", "current"];
    assert!(list.iter().all(|s| fields.iter().all(|f| s.get(f).is_some())));
    let current: Vec<_> = list.iter().filter(|s| s["current"] == json!(true)).collect();
    assert_eq!(current.len(), 1);
    let other_id = list.iter().find(|s| s["current"] == json!(false)).unwrap()["id"].as_str().unwrap().to_owned();

    let mallory = app.browser("mallory").await;
    let token = mallory.cookie("csrftoken").unwrap();
    let res = mallory.send(Method::DELETE, &format!("/sessions/{other_id}/"), &[("x-csrftoken", &token)], None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body, json!({"detail": "Not found."}));

    let token = laptop.cookie("csrftoken").unwrap();
    let res = laptop.send(Method::DELETE, &format!("/sessions/{other_id}/"), &[("x-csrftoken", &token)], None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(phone.get("/protected/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(laptop.get("/protected/").await.status, StatusCode::OK);
    assert_eq!(laptop.get("/sessions/").await.body["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn password_change_keeps_this_session_and_ends_every_other_credential() {
    let app = TestApp::new().await;
    let laptop = app.browser("john").await;
    let phone = Browser::new(&app);
    phone.post("/login/", json!({"username": "john", "password": STRONG})).await;
    let token = app.token("john").await;
    let (access, refresh) = app.jwt("john").await;
    let old_key = laptop.cookie("sessionid").unwrap();

    let res = laptop
        .post_csrf("/password/change/", json!({"old_password": "wrong", "new_password": "n3w-passw0rd-here"}))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.body,
        json!({"old_password": ["Your old password was entered incorrectly. Please enter it again."]})
    );
    let res = laptop.post_csrf("/password/change/", json!({"old_password": STRONG, "new_password": "123"})).await;
    assert_eq!(res.body["new_password"][0], "This password is too short. It must contain at least 8 characters.");

    let res = laptop
        .post_csrf("/password/change/", json!({"old_password": STRONG, "new_password": "n3w-passw0rd-here"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, json!({"message": "Password changed successfully"}));
    let new_key = laptop.cookie("sessionid").unwrap();
    assert_ne!(new_key, old_key, "the current session goes on under a new key");
    assert_eq!(laptop.get("/protected/").await.status, StatusCode::OK);
    assert_eq!(phone.get("/protected/").await.status, StatusCode::FORBIDDEN);
    let res = app.get_auth("/profile/", &format!("Token {token}")).await;
    assert_eq!(res.body, json!({"detail": "Invalid token."}));
    let res = app.get_auth("/protected/", &format!("Bearer {access}")).await;
    assert_eq!(res.body["code"], "password_changed");
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = app.post_json("/login/", &json!({"username": "john", "password": "n3w-passw0rd-here"})).await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn logoutall_revokes_sessions_tokens_and_jwts() {
    let app = TestApp::new().await;
    let laptop = app.browser("john").await;
    let phone = Browser::new(&app);
    phone.post("/login/", json!({"username": "john", "password": STRONG})).await;
    let token = app.token("john").await;
    let (access, refresh) = app.jwt("john").await;
    let res = app.call(Method::POST, "/logoutall/", &[("authorization", &format!("Token {token}"))], None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    for browser in [&laptop, &phone] {
        assert_eq!(browser.get("/protected/").await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.get_auth("/profile/", &format!("Token {token}")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_auth("/whoami/", &format!("Bearer {access}")).await.status, StatusCode::FORBIDDEN);
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.body, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}));
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let token = app.token("john").await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK);
    portcullis::service::users::set_active(&app.state.db, "john", false).await.unwrap();
    app.changed_elsewhere().await;
    assert_eq!(browser.get("/protected/").await.status, StatusCode::FORBIDDEN);
    let res = app.get_auth("/profile/", &format!("Token {token}")).await;
    assert_eq!(res.body, json!({"detail": "User inactive or deleted."}));
}

#[tokio::test]
async fn clearsessions_deletes_only_expired_sessions() {
    let app = TestApp::new().await;
    let browser = app.browser("john").await;
    let user = app.user("john").await;
    let origin = portcullis::service::identity::Origin::default();
    let expired = chrono::Duration::seconds(-10);
    for _ in 0..1000 {
        portcullis::service::sessions::create(&app.state.db, &user, &origin, expired).await.unwrap();
    }
    let started = std::time::Instant::now();
    let deleted = portcullis::service::sessions::clear_expired(&app.state.db).await.unwrap();
    println!("clearsessions: {deleted} expired sessions deleted in {:?}", started.elapsed());
    assert_eq!(deleted, 1000);
    assert_eq!(browser.get("/protected/").await.status, StatusCode::OK, "the live session survives");
}

#[tokio::test]
async fn a_django_hash_logs_in_and_is_upgraded_to_argon2id_in_the_same_request() {
    use sea_orm::{ActiveModelTrait, Set};
    let app = TestApp::new().await;
    app.register("django_user").await;
    // Made by Django 5.2's make_password("hunter2") with 1000 PBKDF2 iterations.
    let django = "pbkdf2_sha256$1000$TzixmBWPqsHdrNOmrlFVH2$uD+YX0sfTIFBf7OKNmazQvRQK55YnbAAeBKS+ZabzUs=";
    let mut user: portcullis::store::user::ActiveModel = app.user("django_user").await.into();
    user.password = Set(django.into());
    user.update(&app.state.db).await.unwrap();
    let res = app.post_json("/login/", &json!({"username": "django_user", "password": "hunter3"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.user("django_user").await.password, django, "a failed login changes nothing");
    let res = app.post_json("/login/", &json!({"username": "django_user", "password": "hunter2"})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let stored = app.user("django_user").await.password;
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    let res = app.post_json("/login/", &json!({"username": "django_user", "password": "hunter2"})).await;
    assert_eq!(res.status, StatusCode::OK, "the upgraded hash verifies");
}
