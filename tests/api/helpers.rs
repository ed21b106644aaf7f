//! `TestApp`: the application in-process on a fresh database, and request shorthands.
use poem::{
    EndpointExt, Response,
    endpoint::BoxEndpoint,
    http::{HeaderMap, StatusCode},
    test::TestClient,
};
use portcullis::{AppState, Settings, build_app, config::Secret, store};
use serde_json::Value;
use tempfile::TempDir;

pub struct TestApp {
    pub client: TestClient<BoxEndpoint<'static>>,
    pub state: AppState,
    pub db: TestDb,
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
        let mut settings = Settings::defaults().unwrap();
        let db = TestDb::new();
        db.apply(&mut settings);
        tweak(&mut settings);
        settings.validate().unwrap();
        let conn = store::connect(&settings.database).await.unwrap();
        store::migrate(&conn).await.unwrap();
        let state = AppState::new(conn, settings).await.unwrap();
        let client = TestClient::new(build_app(state.clone()).boxed());
        Self { client, state, db }
    }

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
