//! `TestApp`: the application in-process on a fresh database, and request shorthands.
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use poem::{
    EndpointExt, Response,
    endpoint::BoxEndpoint,
    http::{HeaderMap, Method, StatusCode},
    test::TestClient,
};
use portcullis::{AppState, Settings, build_app, config::Secret, store};
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct TestApp {
    pub client: TestClient<BoxEndpoint<'static>>,
    pub state: AppState,
    pub db: TestDb,
    /// Statements sent to the database so far (sea-orm's metric callback).
    pub queries: Arc<AtomicUsize>,
}

/// A database of its own for one test: a SQLite file in a temporary directory, or a
/// PostgreSQL schema named after a random id.
pub struct TestDb {
    pub url: String,
    pub schema: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub fn new() -> Self {
        match std::env::var("PORTCULLIS_TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => {
                Self { url, schema: format!("pt_{}", portcullis::crypto::random_hex(8)), _dir: None }
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/db.sqlite3?mode=rwc", dir.path().display());
                Self { url, schema: String::new(), _dir: Some(dir) }
            }
        }
    }

    /// Environment for a `portcullis` process that should use this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("DATABASE_URL", self.url.clone()), ("PORTCULLIS_DATABASE__SCHEMA", self.schema.clone())]
    }

    pub fn apply(&self, settings: &mut Settings) {
        settings.database.url = Secret::new(self.url.clone());
        settings.database.schema = self.schema.clone();
    }
}

/// Bodies as a client sees them: status, headers and JSON.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// An app whose settings `tweak` adjusts from the compiled-in defaults.
    pub async fn with(tweak: impl FnOnce(&mut Settings)) -> Self {
        Self::with_hook(tweak, |_| {}).await
    }

    /// As `with`, and `hook` sees every statement after it ran (on the thread that ran it:
    /// a sleep there makes that query slow).
    pub async fn with_hook(
        tweak: impl FnOnce(&mut Settings),
        hook: impl Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static,
    ) -> Self {
        let mut settings = Settings::defaults().unwrap();
        let db = TestDb::new();
        db.apply(&mut settings);
        // A key of the test's own: no key file is read or written in the working directory.
        settings.mfa.key = Secret::new(portcullis::crypto::random_hex(32));
        tweak(&mut settings);
        settings.validate().unwrap();
        let mut conn = store::connect(&settings.database).await.unwrap();
        store::migrate(&conn).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queries);
        conn.set_metric_callback(move |info| {
            counter.fetch_add(1, Ordering::Relaxed);
            hook(info);
        });
        let state = AppState::new(conn, settings).await.unwrap();
        let client = TestClient::new(build_app(state.clone()).boxed());
        Self { client, state, db, queries }
    }

    /// Any request: method, path, extra headers, optional JSON body.
    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
        let mut req = self.client.request(method, path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body_json(body);
        }
        answer(req.send().await.0).await
    }

    /// GET with an `Authorization` header.
    pub async fn get_auth(&self, path: &str, authorization: &str) -> Answer {
        self.call(Method::GET, path, &[("authorization", authorization)], None).await
    }

    /// A registered user, logged in through `/login/` in a fresh browser.
    pub async fn browser(&self, username: &str) -> Browser<'_> {
        self.register(username).await;
        let browser = Browser::new(self);
        let res = browser.post("/login/", json!({"username": username, "password": STRONG})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        browser
    }

    /// A new opaque token for a registered user.
    pub async fn token(&self, username: &str) -> String {
        let res = self.post_json("/api-token-auth/", &json!({"username": username, "password": STRONG})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.body["token"].as_str().unwrap().to_owned()
    }

    /// A new (access, refresh) pair for a registered user.
    pub async fn jwt(&self, username: &str) -> (String, String) {
        let res = self.post_json("/api/token/", &json!({"username": username, "password": STRONG})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        (res.body["access"].as_str().unwrap().to_owned(), res.body["refresh"].as_str().unwrap().to_owned())
    }

    /// Waits out `cache.ttl`: a change made outside this process's request path (the CLI,
    /// another instance, a test writing the database) is seen within that time.
    pub async fn changed_elsewhere(&self) {
        let ttl = std::time::Duration::from_secs(self.state.settings.cache.ttl);
        if !ttl.is_zero() {
            tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn user(&self, username: &str) -> portcullis::store::user::Model {
        portcullis::service::users::find_by_username(&self.state.db, username).await.unwrap().unwrap()
    }
}

/// A client that keeps cookies, as a browser (or curl with a cookie jar) does.
pub struct Browser<'a> {
    app: &'a TestApp,
    pub cookies: Mutex<BTreeMap<String, String>>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self { app, cookies: Mutex::new(BTreeMap::new()) }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies.lock().unwrap().insert(name.into(), value.into());
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, &[], Some(&body)).await
    }

    /// POST with the CSRF header taken from the `csrftoken` cookie, as a SPA does.
    pub async fn post_csrf(&self, path: &str, body: Value) -> Answer {
        let token = self.cookie("csrftoken").unwrap_or_default();
        self.send(Method::POST, path, &[("x-csrftoken", &token)], Some(&body)).await
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
        let mut req = self.app.client.request(method, path);
        let jar: Vec<String> = self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !jar.is_empty() {
            req = req.header("cookie", jar.join("; "));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body_json(body);
        }
        let res = answer(req.send().await.0).await;
        for set in res.headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attrs) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if attrs.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        res
    }
}

/// The `Set-Cookie` header for `name`, if the answer has one.
pub fn set_cookie<'r>(res: &'r Answer, name: &str) -> Option<&'r str> {
    res.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        answer(self.client.post(path).body_json(body).send().await.0).await
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Answer {
        let mut req = self.client.post(path).body(body.into());
        if let Some(ct) = content_type {
            req = req.content_type(ct);
        }
        answer(req.send().await.0).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        answer(self.client.get(path).send().await.0).await
    }

    /// Registers `username` with a password the validators accept.
    pub async fn register(&self, username: &str) -> Answer {
        self.post_json("/register/", &serde_json::json!({"username": username, "password": STRONG})).await
    }
}

pub const STRONG: &str = "c0rrect-h0rse-battery";

pub async fn answer(resp: Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().into_vec().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    Answer { status, headers, body }
}
