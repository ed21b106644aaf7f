//! Forward auth (`/authz/...`) and the login page, through the real binary on loopback: the
//! test is the proxy (it is in `server.trusted_proxies`), sending what nginx and Caddy send.
use reqwest::{StatusCode, header::HeaderMap, redirect::Policy};
use serde_json::{Value, json};

use crate::{
    helpers::{STRONG, TestDb},
    process::{Served, run, text},
};

const RULES: &str = r#"
[server]
trusted_proxies = ["127.0.0.1"]
[gateway]
login_url = "https://auth.example.test/accounts/login/"
allowed_redirect_hosts = ["app.example.test"]
[[gateway.rules]]
path = "/public/"
policy = "allow_any"
[[gateway.rules]]
host = "*.example.test"
path = "/admin/"
policy = "is_admin_user"
[[gateway.rules]]
path = "/reports/"
methods = ["GET"]
policy = "perm:reports.view"
[[gateway.rules]]
path = "/editors/"
policy = "group:editors"
"#;

struct Gate {
    served: Served,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    http: reqwest::Client,
}

impl Gate {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new();
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).unwrap();
        let mut env = db.env();
        env.push(("PORTCULLIS_CONFIG", file.to_str().unwrap().to_owned()));
        std::mem::forget(db);
        let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
        let http = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
        Self { served, dir, env, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.base)
    }

    fn cli(&self, args: &[&str]) {
        let out = run(self.dir.path(), &self.env, args, "");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }

    async fn token(&self, username: &str) -> String {
        let creds = json!({"username": username, "password": STRONG});
        self.http.post(self.url("/register/")).json(&creds).send().await.unwrap();
        let res: Value =
            self.http.post(self.url("/api-token-auth/")).json(&creds).send().await.unwrap().json().await.unwrap();
        format!("Token {}", res["token"].as_str().unwrap())
    }

    /// nginx's `auth_request` sub-request for `method url`, with the client's headers.
    async fn nginx(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
        let mut req = self
            .http
            .get(self.url("/authz/auth-request/"))
            .header("x-original-method", method)
            .header("x-original-url", url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.json().await.unwrap_or(Value::Null))
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_chain_and_the_rules_decide_for_the_original_request() {
    let gate = Gate::start(RULES);
    let app = "https://app.example.test";
    let (status, headers, body) = gate.nginx("GET", &format!("{app}/orders/"), &[]).await;
    assert_eq!(
        (status, &body),
        (StatusCode::UNAUTHORIZED, &json!({"detail": "Authentication credentials were not provided."}))
    );
    assert_eq!(header(&headers, "www-authenticate"), "Token", "the chain's first challenge");
    let (status, headers, _) = gate.nginx("GET", &format!("{app}/public/x"), &[]).await;
    assert_eq!(status, StatusCode::OK, "allow_any lets anonymous callers through");
    assert_eq!(header(&headers, "remote-user"), "", "with empty identity headers");
    assert!(headers.contains_key("remote-user"), "present, so that Caddy 2.6 copies nothing else");

    let john = gate.token("john").await;
    gate.cli(&["addtogroup", "john", "editors"]);
    let (status, headers, _) = gate.nginx("GET", &format!("{app}/orders/"), &[("authorization", &john)]).await;
    assert_eq!(status, StatusCode::OK);
    for (name, value) in [("remote-user", "john"), ("remote-auth", "token"), ("remote-groups", "editors")] {
        assert_eq!(header(&headers, name), value, "{name}");
    }
    assert!(header(&headers, "remote-user-id").parse::<i64>().is_ok());
    // Rules: staff only, a permission granted by the CLI, a group; the first match wins.
    assert_eq!(gate.nginx("GET", &format!("{app}/admin/"), &[("authorization", &john)]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(gate.nginx("GET", "https://other.test/admin/", &[("authorization", &john)]).await.0, StatusCode::OK);
    assert_eq!(
        gate.nginx("GET", &format!("{app}/reports/1"), &[("authorization", &john)]).await.0,
        StatusCode::FORBIDDEN
    );
    gate.cli(&["grant", "john", "reports.view"]);
    assert_eq!(gate.nginx("GET", &format!("{app}/reports/1"), &[("authorization", &john)]).await.0, StatusCode::OK);
    assert_eq!(gate.nginx("GET", &format!("{app}/editors/"), &[("authorization", &john)]).await.0, StatusCode::OK);
    let ann = gate.token("ann").await;
    assert_eq!(
        gate.nginx("GET", &format!("{app}/editors/"), &[("authorization", &ann)]).await.0,
        StatusCode::FORBIDDEN
    );

    // A token revoked through the API is refused by the very next decision.
    let tokens: Value =
        gate.http.get(gate.url("/tokens/")).header("authorization", &ann).send().await.unwrap().json().await.unwrap();
    let id = tokens["results"][0]["id"].as_i64().unwrap();
    let revoked =
        gate.http.delete(gate.url(&format!("/tokens/{id}/"))).header("authorization", &ann).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let (status, _, body) = gate.nginx("GET", &format!("{app}/orders/"), &[("authorization", &ann)]).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &json!({"detail": "Invalid token."})));
    assert!(gate.served.stop().success());
}

#[tokio::test]
async fn sessions_through_the_gateway_need_csrf_on_unsafe_methods() {
    let gate = Gate::start(RULES);
    gate.token("carol").await;
    let login = gate
        .http
        .post(gate.url("/login/"))
        .json(&json!({"username": "carol", "password": STRONG}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let cookie = cookies.join("; ");
    let csrf = cookies.iter().find_map(|c| c.strip_prefix("csrftoken=")).unwrap().to_owned();
    let app = "https://app.example.test";
    let (status, headers, _) = gate.nginx("GET", &format!("{app}/orders/"), &[("cookie", &cookie)]).await;
    assert_eq!((status, header(&headers, "remote-auth")), (StatusCode::OK, "session"));
    let (status, _, body) = gate.nginx("POST", &format!("{app}/orders/"), &[("cookie", &cookie)]).await;
    // An HTTPS original without Origin gets Django's strict Referer check first.
    let referer_missing = json!({"detail": "CSRF Failed: Referer checking failed - no Referer."});
    assert_eq!((status, &body), (StatusCode::FORBIDDEN, &referer_missing));
    let (status, _, body) =
        gate.nginx("POST", &format!("{app}/orders/"), &[("cookie", &cookie), ("origin", app)]).await;
    assert_eq!((status, &body), (StatusCode::FORBIDDEN, &json!({"detail": "CSRF Failed: CSRF token missing."})));
    let with_token = [("cookie", cookie.as_str()), ("x-csrftoken", csrf.as_str()), ("origin", app)];
    assert_eq!(gate.nginx("POST", &format!("{app}/orders/"), &with_token).await.0, StatusCode::OK);
    let foreign = [("cookie", cookie.as_str()), ("x-csrftoken", csrf.as_str()), ("origin", "https://evil.test")];
    assert_eq!(gate.nginx("POST", &format!("{app}/orders/"), &foreign).await.0, StatusCode::FORBIDDEN);
    assert!(gate.served.stop().success());
}

#[tokio::test]
async fn forward_auth_redirects_browsers_and_answers_api_clients_in_json() {
    let gate = Gate::start(RULES);
    let ask = |accept: &'static str, method: &'static str| {
        gate.http
            .get(gate.url("/authz/forward-auth/"))
            .header("accept", accept)
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.test")
            .header("x-forwarded-uri", "/orders/?page=2")
            .send()
    };
    let res = ask("text/html,application/xhtml+xml", "GET").await.unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        header(res.headers(), "location"),
        "https://auth.example.test/accounts/login/?next=https%3A%2F%2Fapp.example.test%2Forders%2F%3Fpage%3D2"
    );
    assert_eq!(ask("text/html", "POST").await.unwrap().status(), StatusCode::SEE_OTHER);
    let res = ask("application/json", "GET").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"detail": "Authentication credentials were not provided."}));
    assert!(gate.served.stop().success());
}

#[tokio::test]
async fn headers_describing_the_original_request_are_believed_only_from_trusted_proxies() {
    let gate = Gate::start(&RULES.replace(r#"trusted_proxies = ["127.0.0.1"]"#, "trusted_proxies = []"));
    // "/public/" is allow_any, but an untrusted peer cannot say that is what it asks about:
    // the decision is about GET /authz/auth-request/ itself (default: is_authenticated).
    let (status, _, _) = gate.nginx("GET", "https://app.example.test/public/", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(gate.served.stop().success());
}

#[tokio::test]
async fn the_login_page_logs_in_with_csrf_and_only_redirects_where_allowed() {
    let gate = Gate::start(RULES);
    gate.token("dave").await;
    let page = gate.http.get(gate.url("/accounts/login/?next=https://app.example.test/orders/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(page.headers(), "x-frame-options"), "DENY");
    assert!(header(page.headers(), "content-type").starts_with("text/html"));
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("csrftoken="))
        .unwrap();
    let csrf_cookie = csrf_cookie.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let token =
        html.split("name=\"csrfmiddlewaretoken\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert!(html.contains("value=\"https://app.example.test/orders/\""), "next is kept in the form");
    let post = |form: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut req = gate.http.post(gate.url("/accounts/login/")).form(&form);
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        req.send()
    };
    let creds = |next: &str| {
        vec![
            ("username", "dave".to_owned()),
            ("password", STRONG.to_owned()),
            ("next", next.to_owned()),
            ("csrfmiddlewaretoken", token.clone()),
        ]
    };
    let res = post(creds("https://app.example.test/orders/"), None).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF cookie");
    assert!(res.text().await.unwrap().contains("CSRF verification failed"));
    let mut wrong = creds("/");
    wrong[1].1 = "wrong-password".into();
    let res = post(wrong, Some(csrf_cookie.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Please enter a correct username and password."));
    let res = post(creds("https://app.example.test/orders/"), Some(csrf_cookie.clone())).await.unwrap();
    assert_eq!(
        (res.status(), header(res.headers(), "location")),
        (StatusCode::FOUND, "https://app.example.test/orders/")
    );
    assert!(res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("sessionid=")));
    for unsafe_next in ["https://evil.test/", "//evil.test/x", "javascript:alert(1)"] {
        let res = post(creds(unsafe_next), Some(csrf_cookie.clone())).await.unwrap();
        assert_eq!(header(res.headers(), "location"), "/", "{unsafe_next}");
    }
    assert!(gate.served.stop().success());
}
