//! Response headers: Django's default middleware (security headers, `Vary: Cookie`),
//! `Cache-Control: no-store` on credentials, the compressed and revalidated docs page, cookies.
use chrono::{DateTime, Utc};
use poem::http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::helpers::{Browser, STRONG, TestApp, set_cookie};

/// The value of `attribute` (`Max-Age`, `Expires`) in a `Set-Cookie` header.
fn cookie_attribute<'c>(cookie: &'c str, attribute: &str) -> Option<&'c str> {
    cookie.split(';').filter_map(|part| part.trim().split_once('=')).find(|(k, _)| *k == attribute).map(|(_, v)| v)
}

#[tokio::test]
async fn a_cookie_with_a_lifetime_has_max_age_and_expires() {
    let app = TestApp::new().await;
    let res = Browser::new(&app).get("/cookie/set/").await;
    assert_eq!(res.body, json!({"message": "Cookie set!"}));
    let cookie = set_cookie(&res, "token").unwrap();
    assert_eq!(cookie_attribute(cookie, "Max-Age"), Some("3600"), "{cookie}");
    let expires = cookie_attribute(cookie, "Expires").unwrap_or_else(|| panic!("no Expires: {cookie}"));
    let expires = DateTime::parse_from_rfc2822(expires).unwrap().with_timezone(&Utc);
    let left = (expires - Utc::now()).num_seconds();
    assert!((3590..=3600).contains(&left), "{cookie}");
    assert_eq!(res.status, StatusCode::OK);
}

/// The raw answer, whatever its body.
async fn raw(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> poem::Response {
    let mut req = app.client.request(method, path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.0
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn varies_on_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("cookie"))
}

#[tokio::test]
async fn every_answer_has_djangos_security_headers_and_html_cannot_be_framed() {
    let app = TestApp::new().await;
    let answers = [
        (Method::GET, "/healthz"),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/docs/"),
        (Method::GET, "/nowhere/"),
        (Method::GET, "/protected/"),
        (Method::DELETE, "/api/token/"),
        (Method::POST, "/login/"),
    ];
    for (method, path) in answers {
        let resp = raw(&app, method.clone(), path, &[]).await;
        let h = resp.headers();
        assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{method} {path}");
        assert_eq!(header(h, "referrer-policy"), Some("same-origin"), "{method} {path}");
        assert_eq!(header(h, "cross-origin-opener-policy"), Some("same-origin"), "{method} {path}");
        if path == "/docs/" {
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(h, "x-frame-options"), Some("DENY"));
            assert_eq!(header(h, "content-security-policy"), Some("frame-ancestors 'none'"));
        } else {
            assert_ne!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert!(header(h, "content-type").unwrap().starts_with("application/json"), "{path}");
        }
    }
}

#[tokio::test]
async fn answers_that_depend_on_the_session_cookie_vary_on_it() {
    let app = TestApp::new().await;
    let token = format!("Token {}", {
        app.register("john").await;
        app.token("john").await
    });
    // Views whose chain reads the session, whoever answers and however.
    for (path, auth) in [("/protected/", ""), ("/protected", &*token), ("/whoami/", &*token), ("/login/", "")] {
        let res = app.call(Method::GET, path, &[("authorization", auth)], None).await;
        assert!(varies_on_cookie(&res.headers), "{path}: {:?}", res.headers);
    }
    // Token only (`/profile/`), no authentication (simplejwt's views), not a view at all.
    for path in ["/profile/", "/api/token/", "/api/token/refresh/", "/healthz", "/openapi.json", "/nowhere/"] {
        let res = raw(&app, Method::GET, path, &[("authorization", &token)]).await;
        assert!(!varies_on_cookie(res.headers()), "{path}: {:?}", res.headers());
    }
    // Without the session in `auth.chain`, the default views do not read the cookie.
    let tokens_only = TestApp::with(|s| s.auth.chain = vec![portcullis::config::AuthScheme::Token]).await;
    assert!(!varies_on_cookie(&tokens_only.get("/protected/").await.headers));
    assert!(varies_on_cookie(&tokens_only.get("/session/data/").await.headers));
}

#[tokio::test]
async fn credential_answers_are_not_stored() {
    let app = TestApp::new().await;
    let no_store = |res: &crate::helpers::Answer| header(&res.headers, "cache-control") == Some("no-store");
    let john = app.browser("john").await;
    let creds = json!({"username": "john", "password": STRONG});
    let wrong = json!({"username": "john", "password": "wrong-wrong"});
    let pair = app.post_json("/api/token/", &creds).await;
    let refresh = json!({"refresh": pair.body["refresh"]});
    let answers = [
        ("/api-token-auth/", app.post_json("/api-token-auth/", &creds).await),
        ("/api-token-auth/ refused", app.post_json("/api-token-auth/", &wrong).await),
        ("/api/token/", pair),
        ("/api/token/refresh/", app.post_json("/api/token/refresh/", &refresh).await),
        ("/api/token/refresh/ refused", app.post_json("/api/token/refresh/", &json!({"refresh": "x"})).await),
        ("/login/", Browser::new(&app).post("/login/", creds.clone()).await),
        ("/login/ refused", app.post_json("/login/", &wrong).await),
        ("/login without the slash", app.post_json("/login", &creds).await),
    ];
    for (what, res) in &answers {
        assert!(no_store(res), "{what}: {} {:?}", res.status, res.headers);
    }
    let new_password = json!({"old_password": STRONG, "new_password": "n3w-passw0rd-here"});
    let changed = john.post_csrf("/password/change/", new_password).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert!(set_cookie(&changed, "sessionid").is_some());
    assert!(no_store(&changed) && varies_on_cookie(&changed.headers), "{:?}", changed.headers);
    // Answers without a credential may be cached as usual.
    assert!(!no_store(&john.get("/protected/").await));
    assert!(!no_store(&app.get("/healthz").await));
}

/// The body of an answer, as bytes.
async fn bytes(resp: poem::Response) -> Vec<u8> {
    resp.into_body().into_vec().await.unwrap()
}

#[tokio::test]
async fn the_docs_page_is_served_compressed_and_revalidated() {
    let app = TestApp::new().await;
    let plain = raw(&app, Method::GET, "/docs/", &[]).await;
    assert_eq!(header(plain.headers(), "content-encoding"), None);
    let etag = header(plain.headers(), "etag").unwrap().to_owned();
    assert_eq!(header(plain.headers(), "cache-control"), Some("no-cache"));
    let page = bytes(plain).await;

    let resp = raw(&app, Method::GET, "/docs/", &[("accept-encoding", "br;q=1.0, gzip;q=0.8")]).await;
    let h = resp.headers().clone();
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&h, "content-security-policy"), Some("frame-ancestors 'none'"));
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    assert!(h.get_all("vary").iter().any(|v| v == "Accept-Encoding"), "{h:?}");
    let gz_etag = header(&h, "etag").unwrap().to_owned();
    assert_ne!(gz_etag, etag, "each content coding has its own validator");
    let gzipped = bytes(resp).await;
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut unzipped).unwrap();
    assert!(unzipped == page, "the gzip answer is the page");
    assert!(gzipped.len() * 3 < page.len(), "{} of {} bytes", gzipped.len(), page.len());

    for (tag, coding) in [(&etag, "identity"), (&gz_etag, "gzip")] {
        let again = raw(&app, Method::GET, "/docs/", &[("if-none-match", tag), ("accept-encoding", coding)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{coding}");
        assert_eq!(header(again.headers(), "etag"), Some(tag.as_str()));
        assert_eq!(header(again.headers(), "x-content-type-options"), Some("nosniff"));
        assert!(bytes(again).await.is_empty());
    }
    let stale = raw(&app, Method::GET, "/docs/", &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(stale.status(), StatusCode::OK);
}
