//! The audit trail and the Prometheus metrics.
use poem::{
    EndpointExt,
    http::{Method, StatusCode},
    test::TestClient,
};
use serde_json::{Value, json};

use crate::helpers::{Browser, STRONG, TestApp};

async fn staff_browser<'a>(app: &'a TestApp, name: &str) -> Browser<'a> {
    use sea_orm::{ActiveModelTrait, Set};
    let browser = app.browser(name).await;
    let mut user: portcullis::store::user::ActiveModel = app.user(name).await.into();
    user.is_staff = Set(true);
    user.update(&app.state.db).await.unwrap();
    app.changed_elsewhere().await;
    browser
}

async fn audit(browser: &Browser<'_>, app: &TestApp, query: &str) -> Vec<Value> {
    app.state.events.flush().await;
    let res = browser.get(&format!("/audit/?page_size=1000{query}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.body["results"].as_array().unwrap().clone()
}

fn find<'a>(events: &'a [Value], event: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == event).collect()
}

#[tokio::test]
async fn every_security_event_lands_in_the_audit_trail_without_secrets() {
    let app = TestApp::with(|s| s.jwt.rotate_refresh_tokens = true).await;
    let ua = [("user-agent", "audit-test/1.0")];
    let mut secrets: Vec<String> = vec![STRONG.into(), "wrong-password-9".into(), "n3w-passw0rd-here".into()];

    let john = Browser::new(&app);
    john.send(Method::POST, "/register/", &ua, Some(&json!({"username": "john", "password": STRONG}))).await;
    john.send(Method::POST, "/login/", &ua, Some(&json!({"username": "john", "password": "wrong-password-9"}))).await;
    john.send(Method::POST, "/login/", &ua, Some(&json!({"username": "john", "password": STRONG}))).await;
    secrets.push(john.cookie("sessionid").unwrap());
    secrets.push(john.cookie("csrftoken").unwrap());
    let token = app.token("john").await;
    secrets.push(token.clone());
    app.call(Method::POST, "/logout/", &[("authorization", &format!("Token {token}"))], None).await;
    let (access, refresh) = app.jwt("john").await;
    secrets.extend([access.clone(), refresh.clone()]);
    let rotated = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    secrets.push(rotated.body["refresh"].as_str().unwrap().to_owned());
    let reuse = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    let phone = Browser::new(&app);
    phone.post("/login/", json!({"username": "john", "password": STRONG})).await;
    let phone_id = john.get("/sessions/").await.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == json!(false))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let csrf = john.cookie("csrftoken").unwrap();
    john.send(Method::DELETE, &format!("/sessions/{phone_id}/"), &[("x-csrftoken", &csrf)], None).await;
    john.post_csrf("/password/change/", json!({"old_password": STRONG, "new_password": "n3w-passw0rd-here"})).await;
    secrets.push(john.cookie("sessionid").unwrap());
    john.post_csrf("/logoutall/", json!({})).await;
    app.register("victim").await;
    for _ in 0..6 {
        app.post_json("/login/", &json!({"username": "victim", "password": "guess-guess"})).await;
    }
    // A password typed into the username field is not kept in the trail.
    app.post_json("/login/", &json!({"username": "Pa55word-typed-here", "password": "x"})).await;
    secrets.push(john.cookie("portcullis_device").unwrap());

    let admin = staff_browser(&app, "admin").await;
    let events = audit(&admin, &app, "").await;
    let john_id = app.user("john").await.id;
    let kinds = [
        "user_created",
        "login_failed",
        "login_succeeded",
        "token_created",
        "logged_out",
        "jwt_issued",
        "jwt_rotated",
        "refresh_reuse_detected",
        "session_revoked",
        "password_changed",
        "logged_out_everywhere",
        "throttled",
    ];
    for kind in kinds {
        assert!(!find(&events, kind).is_empty(), "{kind} missing from {events:#?}");
    }
    let failed = find(&events, "login_failed");
    let failed = failed.iter().find(|e| e["username"] == "john").unwrap();
    assert_eq!(failed["user_agent"], "audit-test/1.0");
    assert_eq!(failed["user_id"], json!(null));
    let logins = find(&events, "login_succeeded");
    let login = logins.iter().find(|e| e["user_agent"] == "audit-test/1.0").expect("the browser's login");
    assert_eq!((login["username"].as_str(), &login["user_id"]), (Some("john"), &json!(john_id)));
    assert!(login["at"].as_str().unwrap().starts_with("20"));
    let reuse = find(&events, "refresh_reuse_detected")[0];
    assert_eq!(reuse["user_id"], json!(john_id));
    assert!(reuse["detail"]["family"].is_string() && reuse["detail"]["revoked"].as_u64().unwrap() >= 2);
    let revoked = find(&events, "session_revoked").into_iter().find(|e| e["credential"] == json!(phone_id));
    assert!(revoked.is_some(), "the session's public id is the credential");
    let mistyped = find(&events, "login_failed").into_iter().find(|e| e["detail"]["username_known"] == json!(false));
    let mistyped = mistyped.expect("a failed login at an unknown name");
    assert_eq!(mistyped["username"], json!(null));
    assert!(!serde_json::to_string(&events).unwrap().contains("Pa55word-typed-here"));
    let throttled = find(&events, "throttled")[0];
    assert_eq!(
        (throttled["username"].as_str(), throttled["detail"]["scope"].as_str()),
        (Some("victim"), Some("login"))
    );

    let everything = serde_json::to_string(&events).unwrap();
    for secret in &secrets {
        assert!(!everything.contains(secret.as_str()), "a secret reached the audit trail");
    }
    let rows = portcullis::service::audit_log::page(&app.state.db, &Default::default(), 0, 10_000).await.unwrap().0;
    let stored = format!("{rows:?}");
    for secret in &secrets {
        assert!(!stored.contains(secret.as_str()), "a secret reached the audit table");
    }
}

#[tokio::test]
async fn the_audit_trail_is_for_staff_and_a_users_own_events_for_them() {
    let app = TestApp::new().await;
    let john = app.browser("john").await;
    let ann = app.browser("ann").await;
    assert_eq!(john.get("/audit/").await.status, StatusCode::FORBIDDEN);
    app.state.events.flush().await;
    let mine = john.get("/audit/me/").await.body;
    let results = mine["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|e| e["username"] == "john"), "{mine}");
    assert!(ann.get("/audit/me/").await.body["results"].as_array().unwrap().iter().all(|e| e["username"] == "ann"));

    let admin = staff_browser(&app, "admin").await;
    let only_ann = audit(&admin, &app, "&user=ann").await;
    assert!(!only_ann.is_empty() && only_ann.iter().all(|e| e["username"] == "ann"));
    let created = audit(&admin, &app, "&event=user_created").await;
    assert_eq!(created.len(), 3);
    assert!(audit(&admin, &app, "&since=2999-01-01T00:00:00Z").await.is_empty());
    assert_eq!(audit(&admin, &app, "&until=2999-01-01T00:00:00Z").await.len(), audit(&admin, &app, "").await.len());
    let res = admin.get("/audit/?since=yesterday").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        res.body,
        json!({"since": ["Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."]})
    );
    let res = admin.get("/audit/?page_size=2").await;
    assert_eq!(res.body["results"].as_array().unwrap().len(), 2);
    assert!(res.body["next"].as_str().unwrap().starts_with("/audit/?page=2&page_size=2"));
}

#[tokio::test]
async fn a_full_audit_queue_drops_and_counts_instead_of_blocking() {
    let app = TestApp::with(|s| s.audit.queue_capacity = 1).await;
    for i in 0..50 {
        let ctx = portcullis::events::EventContext { user_id: Some(i), ..Default::default() };
        app.state.events.emit(portcullis::events::EventKind::LoginFailed, ctx).await;
    }
    let text = app.state.metrics.render(&app.state.db, 0);
    let dropped: f64 = metric(&text, "portcullis_audit_events_dropped_total");
    assert!(dropped >= 40.0, "{dropped}");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn labelled(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|lab| l.contains(lab)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_authentications_logins_throttling_and_the_cache() {
    let app = TestApp::with(|s| {
        s.metrics.token = portcullis::config::Secret::new("scrape-me");
        // On PostgreSQL the login's own NOTIFY comes back a moment later and empties the
        // user's cache entries, sometimes between the GETs counted below: not what this counts.
        s.cache.notify = false;
    })
    .await;
    let scraper = TestClient::new(portcullis::app::build_metrics_app(&app.state).boxed());
    let scrape = || async { scraper.get("/metrics").send().await.0.into_body().into_string().await.unwrap() };
    let before = scrape().await;
    let john = app.browser("john").await;
    for _ in 0..3 {
        john.get("/protected/").await;
    }
    app.post_json("/login/", &json!({"username": "john", "password": "nope-nope"})).await;
    for _ in 0..6 {
        app.post_json("/login/", &json!({"username": "eve", "password": "nope-nope"})).await;
    }
    app.get_auth("/protected/", "Token bad").await;
    let after = scrape().await;
    let delta = |name: &str, labels: &[&str]| labelled(&after, name, labels) - labelled(&before, name, labels);
    assert_eq!(delta("portcullis_http_requests_total", &["route=\"/protected\"", "status=\"200\""]), 3.0);
    assert!(delta("portcullis_http_request_duration_seconds_count", &["route=\"/protected\""]) >= 3.0);
    assert!(delta("portcullis_authentications_total", &["authenticator=\"session\"", "outcome=\"success\""]) >= 3.0);
    assert_eq!(
        delta(
            "portcullis_authentications_total",
            &["authenticator=\"token\"", "outcome=\"failure\"", "reason=\"Invalid token.\""]
        ),
        1.0
    );
    assert_eq!(delta("portcullis_logins_total", &["outcome=\"success\""]), 1.0);
    assert_eq!(delta("portcullis_logins_total", &["outcome=\"failure\""]), 6.0);
    assert_eq!(delta("portcullis_throttled_total", &["scope=\"login\""]), 1.0);
    assert!(delta("portcullis_credential_cache_hits_total", &[]) >= 2.0);
    assert!(after.contains("portcullis_db_pool_connections"));
    assert!(after.contains("portcullis_password_hash_wait_seconds_bucket"));
    // On the main listener only with the token, and never to the public.
    assert_eq!(app.get("/metrics").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get_auth("/metrics", "Bearer wrong").await.status, StatusCode::NOT_FOUND);
    let resp = app.client.get("/metrics").header("authorization", "Bearer scrape-me").send().await;
    resp.assert_status_is_ok();
    assert!(resp.0.into_body().into_string().await.unwrap().contains("portcullis_http_requests_total"));
}
