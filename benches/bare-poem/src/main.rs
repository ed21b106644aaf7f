//! The ceiling `scripts/loadtest.sh` measures portcullis against: poem's own server and
//! router, nothing else, answering the requests the load test sends with the same bodies
//! (`GET /healthz` and `GET /protected/`, whatever credential comes with it).
//!
//! usage: bare-poem 127.0.0.1:PORT
use poem::{Route, Server, get, handler, listener::TcpListener, web::Json};
use serde_json::{Value, json};

#[handler]
fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[handler]
fn protected() -> Json<Value> {
    Json(json!({"message": "Hello, loadtest! You have access to this view."}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8001".to_owned());
    let app = Route::new().at("/healthz", get(healthz)).at("/protected/", get(protected));
    Server::new(TcpListener::bind(bind)).run(app).await
}
