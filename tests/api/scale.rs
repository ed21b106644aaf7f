//! Several instances: real `portcullis` processes on one PostgreSQL database (these tests
//! run in the PostgreSQL pass; on SQLite they return at once), the shared throttle stores,
//! and the database going away and coming back.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{STRONG, TestDb},
    process::Served,
};

/// A client keeping cookies across instances, as a browser behind a load balancer does.
#[derive(Default)]
struct Client {
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Client {
    async fn send(&self, method: Method, url: String, auth: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, url);
        let jar: Vec<String> = self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        if let Some(csrf) = self.cookies.lock().unwrap().get("csrftoken") {
            req = req.header("x-csrftoken", csrf.as_str());
        }
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        for set in res.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if attrs.contains("Max-Age=0") {
                jar.remove(name)
            } else {
                jar.insert(name.into(), value.into())
            };
        }
        let bytes = res.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn postgres() -> Option<TestDb> {
    let db = TestDb::new();
    if db.schema.is_empty() {
        println!("skipped: set PORTCULLIS_TEST_DATABASE_URL=postgres://... to run the multi-instance tests");
        return None;
    }
    Some(db)
}

/// Starts `n` instances at the same moment.
fn start_instances(env: &[(&str, String)], n: usize) -> (Vec<Served>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let handles: Vec<_> = dirs
        .iter()
        .map(|d| {
            let (dir, env) = (d.path().to_owned(), env.clone());
            std::thread::spawn(move || {
                let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                Served::start(&dir, &env, &["--bind", "127.0.0.1:0"])
            })
        })
        .collect();
    (handles.into_iter().map(|h| h.join().unwrap()).collect(), dirs)
}

#[tokio::test]
async fn two_instances_on_one_postgresql_share_every_credential_and_revocation() {
    let Some(db) = postgres() else { return };
    let mut env = db.env();
    env.push(("PORTCULLIS_THROTTLE__BACKEND", "database".into()));
    env.push(("PORTCULLIS_CACHE__TTL", "30".into())); // revocations must not wait for the ttl
    let (servers, _dirs) = start_instances(&env, 2);
    let (a, b) = (servers[0].base.clone(), servers[1].base.clone());

    // Migrations ran exactly once, whichever instance won the lock.
    let mut settings = portcullis::Settings::defaults().unwrap();
    db.apply(&mut settings);
    let conn = portcullis::store::connect(&settings.database).await.unwrap();
    use sea_orm::ConnectionTrait;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let migrations = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), migrations as i64);

    // Sessions: log in on A, use the cookie on B; log out on B, the cookie is dead on A at once.
    let browser = Client::default();
    let (status, _) = browser
        .send(Method::POST, format!("{a}/register/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    assert_eq!(status, 201);
    let (status, _) = browser
        .send(Method::POST, format!("{a}/login/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(browser.send(Method::GET, format!("{a}/protected/"), None, None).await.0, 200);
    assert_eq!(browser.send(Method::GET, format!("{b}/protected/"), None, None).await.0, 200);
    let old_cookie = browser.cookies.lock().unwrap().clone();
    assert_eq!(browser.send(Method::POST, format!("{b}/logout/"), None, None).await.0, 200);
    let replay = Client { cookies: Mutex::new(old_cookie), ..Client::default() };
    assert_eq!(replay.send(Method::GET, format!("{a}/protected/"), None, None).await.0, 403);

    // Tokens: revoked on A, refused by B (which had it cached) at once.
    let api = Client::default();
    let (_, body) = api
        .send(Method::POST, format!("{a}/api-token-auth/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    let token = format!("Token {}", body["token"].as_str().unwrap());
    assert_eq!(api.send(Method::GET, format!("{b}/profile/"), Some(&token), None).await.0, 200);
    let (_, tokens) = api.send(Method::GET, format!("{a}/tokens/"), Some(&token), None).await;
    let id = tokens["results"][0]["id"].as_i64().unwrap();
    assert_eq!(api.send(Method::DELETE, format!("{a}/tokens/{id}/"), Some(&token), None).await.0, 204);
    assert_eq!(
        api.send(Method::GET, format!("{b}/profile/"), Some(&token), None).await.1,
        json!({"detail": "Invalid token."})
    );

    // JWTs: signed on A, verified on B (one shared key); a refresh blacklisted on A is refused on B.
    let (_, pair) = api
        .send(Method::POST, format!("{a}/api/token/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    let bearer = format!("Bearer {}", pair["access"].as_str().unwrap());
    assert_eq!(api.send(Method::GET, format!("{b}/whoami/"), Some(&bearer), None).await.0, 200);
    assert_eq!(
        api.send(Method::POST, format!("{a}/api/token/blacklist/"), None, Some(json!({"refresh": pair["refresh"]})))
            .await
            .0,
        200
    );
    let (status, body) = api
        .send(Method::POST, format!("{b}/api/token/refresh/"), None, Some(json!({"refresh": pair["refresh"]})))
        .await;
    assert_eq!((status, body["detail"].as_str()), (StatusCode::UNAUTHORIZED, Some("Token is blacklisted")));
    // Log out everywhere on A: B refuses the (cached) access token at once.
    let (_, body) = api
        .send(Method::POST, format!("{a}/api-token-auth/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    let token = format!("Token {}", body["token"].as_str().unwrap());
    assert_eq!(api.send(Method::POST, format!("{a}/logoutall/"), Some(&token), None).await.0, 200);
    assert_eq!(api.send(Method::GET, format!("{b}/whoami/"), Some(&bearer), None).await.0, 403);

    // Login throttling counts across instances (5 failures per username per minute).
    for (i, base) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (status, _) = api
            .send(
                Method::POST,
                format!("{base}/login/"),
                None,
                Some(json!({"username": "victim", "password": "guess"})),
            )
            .await;
        assert_eq!(status, 400, "attempt {i}");
    }
    assert_eq!(
        api.send(Method::POST, format!("{b}/login/"), None, Some(json!({"username": "victim", "password": "guess"})))
            .await
            .0,
        429
    );

    for server in servers {
        assert!(server.stop().success());
    }
}

#[tokio::test]
async fn sliding_sessions_written_by_two_instances_lose_nothing() {
    let Some(db) = postgres() else { return };
    let mut env = db.env();
    env.push(("PORTCULLIS_SESSION__SAVE_EVERY_REQUEST", "true".into()));
    env.push(("PORTCULLIS_SESSION__COOKIE_AGE", "5".into()));
    let (servers, _dirs) = start_instances(&env, 2);
    let bases = [servers[0].base.clone(), servers[1].base.clone()];
    let browser = Arc::new(Client::default());
    browser
        .send(
            Method::POST,
            format!("{}/register/", bases[0]),
            None,
            Some(json!({"username": "ann", "password": STRONG})),
        )
        .await;
    browser
        .send(Method::POST, format!("{}/login/", bases[1]), None, Some(json!({"username": "ann", "password": STRONG})))
        .await;
    let writes = (0..16).map(|i| {
        let (browser, base) = (Arc::clone(&browser), bases[i % 2].clone());
        async move {
            browser
                .send(Method::PATCH, format!("{base}/session/data/"), None, Some(json!({ format!("k{i}"): i })))
                .await
                .0
        }
    });
    for status in futures_util::future::join_all(writes).await {
        assert_eq!(status, 200);
    }
    let (_, data) = browser.send(Method::GET, format!("{}/session/data/", bases[0]), None, None).await;
    for i in 0..16 {
        assert_eq!(data[format!("k{i}")], json!(i), "{data}");
    }
    // A deleted session is not brought back by a sliding write from the other instance.
    let (_, list) = browser.send(Method::GET, format!("{}/sessions/", bases[0]), None, None).await;
    let id = list["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(browser.send(Method::DELETE, format!("{}/sessions/{id}/", bases[0]), None, None).await.0, 204);
    assert_eq!(browser.send(Method::GET, format!("{}/session/data/", bases[1]), None, None).await.0, 403);
    for server in servers {
        assert!(server.stop().success());
    }
}

fn redis_answers() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_millis(300)).is_ok()
}

#[tokio::test]
async fn the_redis_throttle_is_shared_and_fails_closed_only_for_logins() {
    if !redis_answers() {
        println!("skipped: no Redis on 127.0.0.1:6379");
        return;
    }
    let db = TestDb::new();
    let mut env = db.env();
    env.push(("PORTCULLIS_THROTTLE__BACKEND", "redis".into()));
    env.push(("PORTCULLIS_THROTTLE__REDIS_URL", "redis://127.0.0.1:6379".into()));
    // Redis outlives test runs: count per username only (a fresh one each run), not per IP.
    env.push(("PORTCULLIS_THROTTLE__LOGIN_IP", "100000/min".into()));
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let api = Client::default();
    let victim = format!("victim{}", portcullis::crypto::random_hex(6));
    for _ in 0..5 {
        let (status, _) = api
            .send(
                Method::POST,
                format!("{}/login/", served.base),
                None,
                Some(json!({"username": victim, "password": "guess"})),
            )
            .await;
        assert_eq!(status, 400);
    }
    let (status, body) = api
        .send(
            Method::POST,
            format!("{}/login/", served.base),
            None,
            Some(json!({"username": victim, "password": "guess"})),
        )
        .await;
    assert_eq!(status, 429, "{body}");
    // Another process on the same Redis sees the same counts.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Served::start(other_dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    assert_eq!(
        api.send(
            Method::POST,
            format!("{}/login/", other.base),
            None,
            Some(json!({"username": victim, "password": "guess"}))
        )
        .await
        .0,
        429
    );
    assert!(other.stop().success());
    assert!(served.stop().success());

    // Redis unreachable: password checks answer 503, everything else works.
    env.push(("PORTCULLIS_THROTTLE__REDIS_URL", "redis://127.0.0.1:1".into()));
    let down = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let (status, _) = api
        .send(
            Method::POST,
            format!("{}/register/", down.base),
            None,
            Some(json!({"username": "bob", "password": STRONG})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = api
        .send(Method::POST, format!("{}/login/", down.base), None, Some(json!({"username": "bob", "password": STRONG})))
        .await;
    assert_eq!(status, 503);
    assert!(body["detail"].as_str().is_some());
    assert_eq!(api.send(Method::GET, format!("{}/healthz", down.base), None, None).await.0, 200);
    assert!(down.stop().success());
}

/// A TCP proxy to PostgreSQL that the test can cut and restore: the database "goes away"
/// for one server only, without disturbing other tests.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// Closes the listener and every proxied connection.
    fn cut(self) -> u16 {
        self.task.abort();
        self.port
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_answers_503_and_the_server_recovers_by_itself() {
    let Some(db) = postgres() else { return };
    let proxy = Proxy::start(0).await;
    // A name of its own, so that only this server's connections are terminated below.
    let application_name = format!("pt_outage_{}", portcullis::crypto::random_hex(4));
    let proxied = db.url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let separator = if proxied.contains('?') { '&' } else { '?' };
    let url = format!("{proxied}{separator}application_name={application_name}");
    assert_ne!(url, db.url, "the test database URL must name 127.0.0.1:5432");
    let env = vec![
        ("DATABASE_URL", url),
        ("PORTCULLIS_DATABASE__SCHEMA", db.schema.clone()),
        ("PORTCULLIS_DATABASE__ACQUIRE_TIMEOUT", "1".to_owned()),
        ("PORTCULLIS_DATABASE__CONNECT_TIMEOUT", "1".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    let base = served.base.clone();
    let api = Client::default();
    api.send(Method::POST, format!("{base}/register/"), None, Some(json!({"username": "john", "password": STRONG})))
        .await;
    let (_, body) = api
        .send(
            Method::POST,
            format!("{base}/api-token-auth/"),
            None,
            Some(json!({"username": "john", "password": STRONG})),
        )
        .await;
    let token = format!("Token {}", body["token"].as_str().unwrap());
    assert_eq!(api.send(Method::GET, format!("{base}/tokens/"), Some(&token), None).await.0, 200);

    let port = proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut health_down, mut request_down) = (false, false);
    while Instant::now() < deadline && !(health_down && request_down) {
        let (status, body) = api.send(Method::GET, format!("{base}/healthz"), None, None).await;
        health_down |= status == 503;
        let (status, body2) = api
            .send(
                Method::POST,
                format!("{base}/register/"),
                None,
                Some(json!({"username": format!("u{}", portcullis::crypto::random_hex(4)), "password": STRONG})),
            )
            .await;
        assert!(status == 503 || status == 201, "{status} {body2} (healthz {body})");
        assert_ne!(status.as_u16(), 500);
        request_down |= status == 503;
        if status == 503 {
            assert!(body2["detail"].is_string());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(health_down && request_down, "the outage was seen: healthz {health_down}, requests {request_down}");

    let _proxy = Proxy::start(port).await;
    recovers(&api, &base, &token).await;

    // PostgreSQL ends the server's sessions (pg_terminate_backend): no 500, and it recovers.
    let terminated = terminate_backends(&db, &application_name).await;
    assert!(terminated > 0, "the server's connections were found by application_name");
    for _ in 0..10 {
        let (status, body) = api.send(Method::GET, format!("{base}/tokens/"), Some(&token), None).await;
        assert!(status == 200 || status == 503, "{status} {body}");
    }
    recovers(&api, &base, &token).await;
    assert!(served.stop().success());
}

async fn recovers(api: &Client, base: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let healthy = api.send(Method::GET, format!("{base}/healthz"), None, None).await.0 == 200;
        let listed = api.send(Method::GET, format!("{base}/tokens/"), Some(token), None).await.0 == 200;
        if healthy && listed {
            return;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn terminate_backends(db: &TestDb, application_name: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let sql = format!(
        "SELECT COUNT(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = '{application_name}'"
    );
    let row =
        conn.query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}
