//! Issue "Hold under attack": reproductions of what an attacker measured, through HTTP.
use futures_util::future::join_all;
use poem::http::{Method, StatusCode};
use portcullis::{
    config::{AuthScheme, Rate, ThrottleBackend},
    service::audit_log::{self, Filter},
};
use serde_json::{Value, json};

use crate::helpers::{Answer, Browser, STRONG, TestApp};

/// One password-checking door: how to ask it, and what a wrong password answers.
#[derive(Clone, Copy)]
enum Door {
    Login,
    Token,
    Jwt,
    Basic,
    PasswordChange,
}

async fn attempt(app: &TestApp, door: Door, password: &str, session: Option<&Browser<'_>>) -> StatusCode {
    let creds = json!({"username": "carol", "password": password});
    match door {
        Door::Login => app.post_json("/login/", &creds).await.status,
        Door::Token => app.post_json("/api-token-auth/", &creds).await.status,
        Door::Jwt => app.post_json("/api/token/", &creds).await.status,
        Door::Basic => {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("carol:{password}"));
            app.get_auth("/protected/", &format!("Basic {basic}")).await.status
        }
        Door::PasswordChange => {
            let body = json!({"old_password": password, "new_password": "an0ther-l0ng-passphrase"});
            session.expect("a logged-in browser").post_csrf("/password/change/", body).await.status
        }
    }
}

fn wrong_answer(door: Door) -> StatusCode {
    match door {
        Door::Jwt => StatusCode::UNAUTHORIZED,
        // The chain starts with the session, which has no challenge: DRF's 403.
        Door::Basic => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// 60 wrong guesses at once: how many were checked, how many throttled.
async fn burst(app: &TestApp, door: Door) -> (usize, usize) {
    let session = match door {
        Door::PasswordChange => Some(app.browser("carol").await),
        _ => {
            app.register("carol").await;
            None
        }
    };
    let guesses = (0..60).map(|_| attempt(app, door, "wrong-guess", session.as_ref()));
    let answers = join_all(guesses).await;
    let checked = answers.iter().filter(|s| **s == wrong_answer(door)).count();
    let throttled = answers.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked + throttled, 60, "{answers:?}");
    (checked, throttled)
}

/// At most `throttle.login` (5) of 60 concurrent guesses are ever checked; every other
/// answer, and then the right password's, is a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_overtake_the_login_throttle_at_any_door() {
    for door in [Door::Login, Door::Token, Door::Jwt, Door::Basic, Door::PasswordChange] {
        let app = TestApp::with(|s| s.auth.chain = AuthScheme::ALL.to_vec()).await;
        assert_eq!(burst(&app, door).await, (5, 55));
        let session = match door {
            Door::PasswordChange => Some(Browser::new(&app)),
            _ => None,
        };
        if session.is_none() {
            assert_eq!(attempt(&app, door, STRONG, None).await, StatusCode::TOO_MANY_REQUESTS);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_throttle_store_holds_under_concurrency_too() {
    let app = TestApp::with(|s| s.throttle.backend = ThrottleBackend::Database).await;
    assert_eq!(burst(&app, Door::Login).await, (5, 55));
    assert_eq!(attempt(&app, Door::Login, STRONG, None).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_attacker_cannot_lock_a_user_out_of_the_devices_she_logged_in_from() {
    let app = TestApp::new().await;
    let carol = app.browser("carol").await;
    assert!(carol.cookie("portcullis_device").is_some(), "a login earns a device cookie");
    // Someone else exhausts the username's budget: clients that never logged in as carol,
    // the right password included, are refused...
    for expected in [[StatusCode::BAD_REQUEST; 5].as_slice(), &[StatusCode::TOO_MANY_REQUESTS; 3]].concat() {
        assert_eq!(attempt(&app, Door::Login, "not-carols-password", None).await, expected);
    }
    assert_eq!(attempt(&app, Door::Login, STRONG, None).await, StatusCode::TOO_MANY_REQUESTS);
    // ...but carol's own browser logs in, changes her password, and gets tokens.
    let login = carol.post_csrf("/login/", json!({"username": "carol", "password": STRONG})).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let device = format!("portcullis_device={}", carol.cookie("portcullis_device").unwrap());
    let res = app
        .call(
            Method::POST,
            "/api/token/",
            &[("cookie", &device)],
            Some(&json!({"username": "carol", "password": STRONG})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "an API client holding the cookie too");
    let change = json!({"old_password": STRONG, "new_password": "an0ther-l0ng-passphrase"});
    assert_eq!(carol.post_csrf("/password/change/", change).await.status, StatusCode::OK);
    // Her device's budget is its own, and finite.
    let wrong = json!({"username": "carol", "password": "typo-typo-typo"});
    let answers = join_all((0..7).map(|_| carol.post_csrf("/login/", wrong.clone()))).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|a: &Answer| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count(), 5, "{statuses:?}");
    // A device cookie is no key to another account.
    let cookie = carol.cookie("portcullis_device").unwrap();
    let other = Browser::new(&app);
    other.set_cookie("portcullis_device", &cookie);
    app.register("dave").await;
    for _ in 0..5 {
        other.post("/login/", json!({"username": "dave", "password": "nope-nope"})).await;
    }
    assert_eq!(attempt_as(&app, "dave", &format!("portcullis_device={cookie}")).await, StatusCode::TOO_MANY_REQUESTS);
}

async fn attempt_as(app: &TestApp, username: &str, cookie: &str) -> StatusCode {
    let body = json!({"username": username, "password": STRONG});
    app.call(Method::POST, "/login/", &[("cookie", cookie)], Some(&body)).await.status
}

async fn recorded(app: &TestApp, event: &str) -> Vec<Value> {
    app.state.events.flush().await;
    let filter = Filter { event: Some(event.into()), ..Filter::default() };
    let (rows, _) = audit_log::page(&app.state.db, &filter, 0, 1000).await.unwrap();
    rows.iter().map(|r| serde_json::from_str(&r.detail).unwrap()).collect()
}

#[tokio::test]
async fn a_flood_of_throttled_requests_is_recorded_once_per_key_and_window() {
    let app = TestApp::with(|s| s.throttle.anon = Rate::parse("5/min").unwrap()).await;
    let answers = join_all((0..300).map(|_| app.get("/csrf/"))).await;
    let throttled = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(throttled, 295);
    let anon = recorded(&app, "throttled").await;
    assert_eq!(anon.len(), 1, "{anon:?}");
    assert_eq!(anon[0]["scope"], "anon");
    let text = app.state.metrics.render(&app.state.db, 0);
    let counted: f64 = text
        .lines()
        .filter(|l| l.starts_with("portcullis_throttled_total") && l.contains("scope=\"anon\""))
        .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, 295.0, "every refusal is still counted");
    // Failed logins at one name: five failures, then one throttled record for the bucket.
    let app = TestApp::new().await;
    app.register("carol").await;
    for _ in 0..50 {
        attempt(&app, Door::Token, "wrong-wrong-wrong", None).await;
    }
    let all = recorded(&app, "throttled").await;
    assert_eq!(all.iter().filter(|d| d["scope"] == "login").count(), 1, "{all:?}");
    assert_eq!(recorded(&app, "login_failed").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_throttle_store_holds_under_concurrency_too() {
    if std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), std::time::Duration::from_millis(300))
        .is_err()
    {
        println!("skipped: no Redis on 127.0.0.1:6379");
        return;
    }
    let app = TestApp::with(|s| {
        s.throttle.backend = ThrottleBackend::Redis;
        // Redis outlives test runs: count per username only (a fresh one each run), not per IP.
        s.throttle.login_ip = portcullis::config::DerivedRate::Set(None);
    })
    .await;
    let name = format!("carol{}", portcullis::crypto::random_hex(6));
    app.register(&name).await;
    let body = json!({"username": name, "password": "wrong-guess"});
    let answers = join_all((0..60).map(|_| app.post_json("/login/", &body))).await;
    let checked = answers.iter().filter(|a| a.status == StatusCode::BAD_REQUEST).count();
    let throttled = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, throttled), (5, 55));
}

/// A lookup that read a token just before its revocation must not put it back into the
/// cache afterwards (an attack measured 9 of 60 tokens answering 200 after their
/// revocation's 204, with `cache.ttl = 10`). Token lookups are made slow here, so each one
/// surely straddles its token's revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_never_outlives_its_revocation_in_the_cache() {
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook = std::sync::Arc::clone(&slow);
    let app = TestApp::with_hook(
        |s| s.cache.ttl = 10,
        move |info| {
            let sql = info.statement.to_string();
            if hook.load(std::sync::atomic::Ordering::Relaxed)
                && sql.starts_with("SELECT")
                && sql.contains("auth_token")
            {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        },
    )
    .await;
    app.register("carol").await;
    let revoker = format!("Token {}", app.token("carol").await);
    assert_eq!(app.get_auth("/whoami/", &revoker).await.status, StatusCode::OK, "cached from now on");
    let carol = app.user("carol").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (key, row) = portcullis::service::tokens::create(&app.state.db, carol.id, "race", 0).await.unwrap();
        tokens.push((format!("Token {key}"), row.id));
    }
    slow.store(true, std::sync::atomic::Ordering::Relaxed);
    for (auth, id) in &tokens {
        let reader = app.get_auth("/whoami/", auth);
        let revoke = async {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            app.call(Method::DELETE, &format!("/tokens/{id}/"), &[("authorization", &revoker)], None).await
        };
        let (read, revoked) = tokio::join!(reader, revoke);
        assert_eq!((read.status, revoked.status), (StatusCode::OK, StatusCode::NO_CONTENT));
        let after = app.get_auth("/whoami/", auth).await;
        assert_eq!((after.status, &after.body), (StatusCode::FORBIDDEN, &json!({"detail": "Invalid token."})));
    }
}

#[tokio::test]
async fn what_a_user_can_make_the_server_store_is_bounded() {
    let app = TestApp::with(|s| {
        s.session.max_data_bytes = 4096;
        s.session.max_per_user = 3;
        s.token.max_per_user = 3;
    })
    .await;
    let browser = app.browser("carol").await;
    let csrf = browser.cookie("csrftoken").unwrap();
    let patch = |body: Value| {
        let csrf = csrf.clone();
        let browser = &browser;
        async move { browser.send(Method::PATCH, "/session/data/", &[("x-csrftoken", &csrf)], Some(&body)).await }
    };
    assert_eq!(patch(json!({"a": "x".repeat(3000)})).await.status, StatusCode::OK);
    let res = patch(json!({"b": "x".repeat(3000)})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body, json!({"non_field_errors": ["Session data is limited to 4096 bytes."]}));
    let kept = browser.get("/session/data/").await.body;
    assert_eq!(
        (kept["a"].as_str().map(str::len), kept.get("b")),
        (Some(3000), None),
        "a refused PATCH changes nothing"
    );
    assert_eq!(patch(json!({"a": null, "b": "small"})).await.body, json!({"b": "small"}));

    // Sessions: a fourth login ends the least recently used one; the browser in use stays.
    let others: Vec<Browser> = (0..3).map(|_| Browser::new(&app)).collect();
    for other in &others {
        assert_eq!(
            other.post("/login/", json!({"username": "carol", "password": STRONG})).await.status,
            StatusCode::OK
        );
    }
    let listed = others[2].get("/sessions/").await.body;
    assert_eq!(listed["count"], 3);
    assert_eq!(browser.get("/protected/").await.status, StatusCode::FORBIDDEN, "the oldest session ended");
    assert_eq!(others[0].get("/protected/").await.status, StatusCode::OK);
    // Tokens: the oldest goes.
    let tokens: Vec<String> = {
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(app.token("carol").await);
        }
        made
    };
    assert_eq!(app.get_auth("/whoami/", &format!("Token {}", tokens[0])).await.status, StatusCode::FORBIDDEN);
    let page = app.get_auth("/tokens/?page_size=2", &format!("Token {}", tokens[3])).await.body;
    assert_eq!((page["count"].as_u64(), page["results"].as_array().map(Vec::len)), (Some(3), Some(2)));
    assert_eq!(page["next"], "/tokens/?page=2&page_size=2");
    let revoked = recorded(&app, "token_revoked").await;
    assert_eq!(revoked, [json!({"reason": "limit"})]);
}
