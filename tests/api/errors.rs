//! API.md's table of bad input: always JSON in DRF's shape, never a 500 or plain text.
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn malformed_json_is_a_400_parse_error() {
    let app = TestApp::new().await;
    for body in ["{\"username\": ", "{'a': 1}", "nope", "{\"a\": 1,}"] {
        let res = app.post_raw("/register/", Some("application/json"), body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        let detail = res.body["detail"].as_str().unwrap();
        assert!(detail.starts_with("JSON parse error - "), "{detail}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_an_object_gets_non_field_errors() {
    let app = TestApp::new().await;
    for (body, kind) in [("[1, 2]", "list"), ("\"x\"", "str"), ("3", "int"), ("null", "NoneType"), ("true", "bool")] {
        let res = app.post_raw("/register/", Some("application/json"), body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            res.body,
            json!({"non_field_errors": [format!("Invalid data. Expected a dictionary, but got {kind}.")]})
        );
    }
}

#[tokio::test]
async fn unsupported_media_types_are_415() {
    let app = TestApp::new().await;
    for ct in ["text/plain", "application/xml", "multipart/form-data; boundary=x"] {
        let res = app.post_raw("/register/", Some(ct), "x").await;
        assert_eq!(res.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(res.body, json!({"detail": format!("Unsupported media type \"{ct}\" in request.")}));
    }
}

#[tokio::test]
async fn no_content_type_means_no_data_as_in_drf() {
    let app = TestApp::new().await;
    let res = app.post_raw("/register/", None, "username=x").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.body, json!({"username": ["This field is required."], "password": ["This field is required."]}));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::with(|s| s.server.max_body_bytes = 1024).await;
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(2048));
    let res = app.post_raw("/register/", Some("application/json"), big).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.body, json!({"detail": "Request body is larger than the limit of 1024 bytes."}));
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let app = TestApp::new().await;
    let res = app.get("/no/such/thing/").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.body, json!({"detail": "Not found."}));
    let res = app.get("/register/").await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.body, json!({"detail": "Method \"GET\" not allowed."}));
    assert_eq!(res.headers["allow"], "POST", "RFC 9110 (and DRF) name the allowed methods");
    let res = crate::helpers::answer(app.client.delete("/register").send().await.0).await;
    assert_eq!(res.body, json!({"detail": "Method \"DELETE\" not allowed."}));
    let res = crate::helpers::answer(app.client.delete("/healthz").send().await.0).await;
    assert_eq!((res.status, &res.headers["allow"]), (StatusCode::METHOD_NOT_ALLOWED, &"GET, HEAD".parse().unwrap()));
    let res = crate::helpers::answer(app.client.get("/session/data/").send().await.0).await;
    assert_ne!(res.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// HEAD is GET without the body wherever GET is routed, with or without path parameters; a
/// path that has no GET answers HEAD with 405.
#[tokio::test]
async fn head_is_get_without_the_body() {
    let app = TestApp::new().await;
    for path in ["/healthz", "/.well-known/jwks.json"] {
        let get = app.get(path).await;
        let head = crate::helpers::answer(app.client.head(path).send().await.0).await;
        assert_eq!((head.status, &head.body), (StatusCode::OK, &Value::Null), "{path}");
        assert_eq!(head.headers["content-type"], get.headers["content-type"], "{path}");
    }
    let res = crate::helpers::answer(app.client.head("/register/").send().await.0).await;
    assert_eq!((res.status, &res.headers["allow"]), (StatusCode::METHOD_NOT_ALLOWED, &"POST".parse().unwrap()));
    // A path with a parameter and no GET (DELETE /sessions/{id}/): 405 once authenticated.
    app.register("headuser").await;
    let token = app.token("headuser").await;
    let res = crate::helpers::answer(
        app.client.head("/sessions/1/").header("Authorization", format!("Token {token}")).send().await.0,
    )
    .await;
    assert_eq!((res.status, &res.headers["allow"]), (StatusCode::METHOD_NOT_ALLOWED, &"DELETE".parse().unwrap()));
}

#[tokio::test]
async fn odd_bytes_and_unicode_never_break_the_server() {
    let app = TestApp::new().await;
    let res = app.post_raw("/register/", Some("application/json"), vec![0xff, 0xfe, 0x00]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = app.post_raw("/register/", Some("application/x-www-form-urlencoded"), vec![0xff, b'=', 0xfe]).await;
    assert!(res.status.is_client_error(), "{}", res.status);
    let res = app.post_json("/register/", &json!({"username": "emoji😀", "password": "🔐🔐🔐🔐🔐🔐🔐🔐🔐"})).await;
    assert_eq!(
        res.body["username"][0],
        "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
    );
}

#[tokio::test]
async fn healthz_answers_without_authentication() {
    let app = TestApp::new().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, json!({"status": "ok"}));
    assert_eq!(app.get("/healthz/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn schemathesis_findings_stay_fixed() {
    let app = TestApp::new().await;
    app.register("john").await;
    let token = format!("Token {}", app.token("john").await);
    // A page whose offset overflowed was a panic (a dropped connection): pages are bounded in
    // the spec and checked, and a page past the end is DRF's 404.
    let res = app.get_auth("/audit/me/?page=4611686018427387905", &token).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body["detail"].as_str().unwrap().contains("parameter `page`"), "{}", res.body);
    let res = app.get_auth("/audit/me/?page=1000000000&page_size=1000000000", &token).await;
    assert_eq!((res.status, res.body), (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})));
    // logout's optional refresh field is still checked.
    let auth = [("authorization", token.as_str())];
    let res = app.call(poem::http::Method::POST, "/logout/", &auth, Some(&json!({"refresh": {}}))).await;
    assert_eq!((res.status, res.body), (StatusCode::BAD_REQUEST, json!({"refresh": ["Not a valid string."]})));
    // Without a body, logout is DRF's empty `request.data` (the spec says the body is optional).
    let res = app.call(poem::http::Method::POST, "/logout/", &auth, None).await;
    assert_eq!(res.status, StatusCode::OK);
}
