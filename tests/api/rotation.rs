//! Key rotation without downtime: tokens in flight stay valid, new ones are signed with the
//! new key at once on every instance, old public keys stay published until their tokens have
//! expired, then go; a restart on the same database changes nothing; `rotatekeys` refuses
//! keys it cannot replace.
use std::time::{Duration, Instant};

use poem::{EndpointExt, http::StatusCode, test::TestClient};
use portcullis::{config::JwtAlgorithm, service::identity::Origin, store::jwt::signing_key};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};

use crate::{
    helpers::{STRONG, TestApp, TestDb, answer},
    jwks::{bearer, jwks, jwt_app, kid, kids},
    process::{Served, run, text},
};

#[tokio::test]
async fn a_rotation_keeps_tokens_in_flight_valid_and_signs_with_the_new_key_at_once() {
    let app = jwt_app(JwtAlgorithm::ES256, |_| {}).await;
    app.register("john").await;
    let (old_access, old_refresh) = app.jwt("john").await;
    let old_kid = kid(&old_access);
    // The key the rotation will make current is in the JWKS already: a verifier that fetched
    // the set before the rotation holds it.
    let before = kids(&jwks(&app).await);
    assert_eq!(before.len(), 2);
    assert_eq!(before[0], old_kid);
    // Requests carrying the old token while the key changes: none is refused.
    let auth = bearer(&old_access);
    let in_flight = futures_util::future::join_all((0..20).map(|_| app.get_auth("/protected/", &auth)));
    let cli = Origin::cli();
    let rotation = app.state.accounts.rotate_signing_key(&cli);
    let (answers, rotated) = futures_util::future::join(in_flight, rotation).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    let rotated = rotated.unwrap();
    assert_eq!(rotated.previous.as_ref().map(|(k, _)| k.as_str()), Some(old_kid.as_str()));
    assert_eq!(rotated.kid, before[1], "the published next key signs now");
    assert!(rotated.published_for.is_some());
    let (new_access, _) = app.jwt("john").await;
    assert_eq!(kid(&new_access), rotated.kid);
    let after = kids(&jwks(&app).await);
    assert_eq!(after, [rotated.kid.clone(), rotated.next.clone(), old_kid.clone()], "current, next, old");
    // Old tokens live out their lifetime; refreshing an old refresh token gives a new-key access token.
    assert_eq!(app.get_auth("/protected/", &bearer(&old_access)).await.status, StatusCode::OK);
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": old_refresh})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(kid(res.body["access"].as_str().unwrap()), rotated.kid);
    // Recorded in the audit trail, with when the old key stops verifying.
    app.state.events.flush().await;
    let filter =
        portcullis::service::audit_log::Filter { event: Some("signing_key_rotated".into()), ..Default::default() };
    let (events, _) = portcullis::service::audit_log::page(&app.state.db, &filter, 0, 10).await.unwrap();
    let detail: Value = serde_json::from_str(&events[0].detail).unwrap();
    assert_eq!((detail["reason"].as_str(), detail["previous"].as_str()), (Some("rotatekeys"), Some(old_kid.as_str())));
    assert!(detail["previous_not_after"].is_string(), "{detail}");
    // The retired key pair's private half is gone from the database; its public half stays.
    let rows = signing_key::Entity::find().all(&app.state.db).await.unwrap();
    let old_row = rows.iter().find(|r| r.kid == old_kid).unwrap();
    assert!(old_row.private_key.is_none() && old_row.public_jwk.is_some() && old_row.not_after.is_some());
}

#[tokio::test]
async fn old_keys_leave_the_jwks_once_their_tokens_have_expired() {
    let app = jwt_app(JwtAlgorithm::EdDSA, |s| {
        s.jwt.access_token_lifetime = 30;
        s.jwt.refresh_token_lifetime = 60;
    })
    .await;
    app.register("john").await;
    let (old_access, _) = app.jwt("john").await;
    let started = chrono::Utc::now();
    let rotated = app.state.accounts.rotate_signing_key(&Origin::cli()).await.unwrap();
    // Kept for the longest token lifetime (60 s), plus the time an instance may take to hear
    // of the rotation (two polls of 2 s, and a minute).
    let (_, not_after) = rotated.previous.unwrap();
    let kept = (not_after - started).num_seconds();
    assert!((123..=125).contains(&kept), "{kept}");
    // When that time has come (here: made to have come), the old key is dropped: by the next
    // rotation or start-up, and it verifies nothing from then on.
    let old =
        signing_key::Entity::find().all(&app.state.db).await.unwrap().into_iter().find(|r| r.kid == kid(&old_access));
    let mut old: signing_key::ActiveModel = old.unwrap().into();
    old.not_after = Set(Some(chrono::Utc::now() - chrono::Duration::seconds(1)));
    old.update(&app.state.db).await.unwrap();
    let settings = (*app.state.settings).clone();
    let restarted = portcullis::AppState::new(app.state.db.clone(), settings).await.unwrap();
    let client = TestClient::new(portcullis::build_app(restarted).boxed());
    let set = answer(client.get("/.well-known/jwks.json").send().await.0).await.body;
    assert_eq!(kids(&set), [rotated.kid.clone(), rotated.next.clone()]);
    assert_eq!(signing_key::Entity::find().all(&app.state.db).await.unwrap().len(), 2, "the row is deleted");
    let res = answer(client.get("/protected/").header("authorization", bearer(&old_access)).send().await.0).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn other_instances_sign_with_the_new_key_within_their_poll_and_verify_any_key_at_once() {
    let app = jwt_app(JwtAlgorithm::RS256, |s| s.jwt.keys_poll_interval = 1).await;
    let settings = (*app.state.settings).clone();
    let polling = portcullis::AppState::new(app.state.db.clone(), settings.clone()).await.unwrap();
    // One that never polls: only a token naming a key it does not know makes it read them.
    let lazy = portcullis::AppState::new(
        app.state.db.clone(),
        portcullis::Settings {
            jwt: portcullis::config::Jwt { keys_poll_interval: 0, ..settings.jwt.clone() },
            cache: portcullis::config::Cache { notify: false, ..settings.cache.clone() },
            ..settings
        },
    )
    .await
    .unwrap();
    let lazy_client = TestClient::new(portcullis::build_app(lazy.clone()).boxed());
    app.register("john").await;
    let john = app.user("john").await;
    let rotated = app.state.accounts.rotate_signing_key(&Origin::cli()).await.unwrap();
    // Signs with the new key on its own within its poll interval (here 1 s).
    let started = Instant::now();
    while kid(&polling.jwt.access_for(&john).unwrap()) != rotated.kid {
        assert!(started.elapsed() < Duration::from_secs(5), "the other instance still signs with the old key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("another instance signed with the new key after {:?}", started.elapsed());
    // Two rotations on: the lazy instance has never seen the key that signs now.
    let rotated = app.state.accounts.rotate_signing_key(&Origin::cli()).await.unwrap();
    let (access, _) = app.jwt("john").await;
    assert_eq!(kid(&access), rotated.kid);
    assert!(!kids(&lazy.jwt.jwks()).contains(&rotated.kid));
    let res = answer(lazy_client.get("/protected/").header("authorization", bearer(&access)).send().await.0).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(kid(&lazy.jwt.access_for(&john).unwrap()), rotated.kid, "and it signs with it from then on");
}

#[tokio::test]
async fn hs256_rotates_its_generated_secret_and_refuses_a_configured_one() {
    let app = TestApp::new().await;
    app.register("john").await;
    let (old, _) = app.jwt("john").await;
    let rotated = app.state.accounts.rotate_signing_key(&Origin::cli()).await.unwrap();
    let (new, _) = app.jwt("john").await;
    assert_ne!(kid(&new), kid(&old));
    assert_eq!(kid(&new), rotated.kid);
    for token in [&old, &new] {
        assert_eq!(app.get_auth("/protected/", &bearer(token)).await.status, StatusCode::OK);
    }
    assert_eq!(jwks(&app).await, json!({"keys": []}));
    let app = TestApp::with(|s| s.jwt.signing_key = portcullis::config::Secret::new("django-insecure-key")).await;
    let err = app.state.accounts.rotate_signing_key(&Origin::cli()).await.unwrap_err();
    assert!(err.to_string().contains("jwt.signing_key is set"), "{err}");
}

/// `portcullis rotatekeys` against a running server on one SQLite file, and restarts.
#[tokio::test]
async fn rotatekeys_and_restarts_on_the_same_database_log_nobody_out() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let mut env = db.env();
    env.push(("PORTCULLIS_JWT__ALGORITHM", "ES256".into()));
    env.push(("PORTCULLIS_JWT__KEYS_POLL_INTERVAL", "1".into()));
    let http = reqwest::Client::new();
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let base = served.base.clone();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    assert_eq!(post("/register/", json!({"username": "john", "password": STRONG})).await.unwrap().status(), 201);
    let pair = |http: &reqwest::Client, base: &str| {
        let req = http.post(format!("{base}/api/token/")).json(&json!({"username": "john", "password": STRONG}));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let protected = |http: &reqwest::Client, base: &str, token: &str| {
        let req = http.get(format!("{base}/protected/")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let set = |http: &reqwest::Client, base: &str| {
        let req = http.get(format!("{base}/.well-known/jwks.json"));
        async move { kids(&req.send().await.unwrap().json::<Value>().await.unwrap()) }
    };
    let first = pair(&http, &base).await;
    let first_access = first["access"].as_str().unwrap().to_owned();
    let first_kid = kid(&first_access);

    // A restart keeps the key: the token issued before it is still valid.
    assert!(served.stop().success());
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let base = served.base.clone();
    let published = set(&http, &base).await;
    assert_eq!(published[0], first_kid);
    assert_eq!(published.len(), 2, "the current key and the next one: {published:?}");
    assert_eq!(protected(&http, &base, &first_access).await, 200);

    // rotatekeys while it serves: tokens in flight keep working, new ones get the new key
    // within the poll interval, without a restart.
    let out = run(dir.path(), &env, &["rotatekeys"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("signs from now on") && said.contains(&first_kid), "{said}");
    let started = Instant::now();
    let new_kid = loop {
        let access = pair(&http, &base).await["access"].as_str().unwrap().to_owned();
        assert_eq!(protected(&http, &base, &first_access).await, 200, "a token in flight was refused");
        if kid(&access) != first_kid {
            assert_eq!(protected(&http, &base, &access).await, 200);
            break kid(&access);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the server never picked up the new key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("the running server signed with the rotated key after {:?}", started.elapsed());
    assert_eq!(new_kid, published[1], "the key published as next at first start signs now");
    let after = set(&http, &base).await;
    assert_eq!((after.len(), &after[0], &after[2]), (3, &new_kid, &first_kid), "{after:?}");

    // And once more through a restart: both keys, both tokens.
    assert!(served.stop().success());
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let base = served.base.clone();
    assert_eq!(set(&http, &base).await, after);
    assert_eq!(protected(&http, &base, &first_access).await, 200);
    assert!(served.stop().success());

    // A configured key is not the CLI's to rotate: exit 1, saying what to do instead.
    let mut configured = env.clone();
    configured.push(("PORTCULLIS_JWT__ALGORITHM", "HS256".into()));
    configured.push(("PORTCULLIS_JWT__SIGNING_KEY", "django-insecure-key".into()));
    let out = run(dir.path(), &configured, &["rotatekeys"], "");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("jwt.signing_key is set"), "{}", text(&out.stderr));
}

/// PostgreSQL only: two servers that never poll (`keys_poll_interval = 0`) sign with the
/// new key as soon as `rotatekeys` commits, told by NOTIFY.
#[tokio::test]
async fn on_postgresql_every_instance_signs_with_the_new_key_at_once() {
    let db = TestDb::new();
    if db.schema.is_empty() {
        println!("skipped: set PORTCULLIS_TEST_DATABASE_URL=postgres://... to run the multi-instance tests");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut env = db.env();
    env.push(("PORTCULLIS_JWT__ALGORITHM", "ES256".into()));
    env.push(("PORTCULLIS_JWT__KEYS_POLL_INTERVAL", "0".into()));
    // Started at the same moment on an empty database: one key pair is made, not one each.
    let servers: Vec<Served> = std::thread::scope(|scope| {
        let starting: Vec<_> =
            (0..2).map(|_| scope.spawn(|| Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]))).collect();
        starting.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let http = reqwest::Client::new();
    let login = json!({"username": "john", "password": STRONG});
    let res = http.post(format!("{}/register/", servers[0].base)).json(&login).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let signing_kid = |base: String| {
        let req = http.post(format!("{base}/api/token/")).json(&login);
        async move { kid(req.send().await.unwrap().json::<Value>().await.unwrap()["access"].as_str().unwrap()) }
    };
    let before = signing_kid(servers[1].base.clone()).await;
    assert_eq!(signing_kid(servers[0].base.clone()).await, before);
    let published = http.get(format!("{}/.well-known/jwks.json", servers[0].base)).send().await.unwrap();
    assert_eq!(kids(&published.json::<Value>().await.unwrap()).len(), 2, "one current key and one next key");
    let out = run(dir.path(), &env, &["rotatekeys"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rotated_at = Instant::now();
    for server in &servers {
        while signing_kid(server.base.clone()).await == before {
            assert!(rotated_at.elapsed() < Duration::from_secs(5), "{} never heard of the rotation", server.base);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("both instances signed with the new key {:?} after rotatekeys exited", rotated_at.elapsed());
    for server in servers {
        assert!(server.stop().success());
    }
}
