//! The served spec is the one in the repository, and the docs work offline.
use poem::http::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn served_spec_is_byte_identical_to_the_repository_file() {
    let app = TestApp::new().await;
    let resp = app.client.get("/openapi.json").send().await;
    resp.assert_status_is_ok();
    let served = resp.0.into_body().into_string().await.unwrap();
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap();
    assert!(served == file, "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`");
    let spec: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(spec["servers"], serde_json::json!([]), "no host or port may be baked into the spec");
    assert!(spec["paths"]["/register/"]["post"].is_object(), "DRF's paths, with their trailing slash");
}

#[tokio::test]
async fn swagger_ui_is_served_with_its_assets_inline() {
    let app = TestApp::new().await;
    let resp = app.client.get("/docs/").send().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    let html = resp.0.into_body().into_string().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"));
    assert!(html.contains(r#"req.headers["X-CSRFToken"]"#), "the CSRF interceptor is in the page");
    assert!(html.contains(r#""/login/""#), "the page embeds the finished spec");
    assert!(!html.contains("<script src=\"http") && !html.contains("<link href=\"http"), "no CDN");
}

#[tokio::test]
async fn every_operation_but_the_operational_ones_has_an_authentication_policy() {
    let app = TestApp::new().await;
    let spec: serde_json::Value = serde_json::from_str(&portcullis::app::spec_json(&app.state)).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{}", paths.len());
    for path in paths.keys() {
        // The middleware sees paths after trailing slashes are trimmed.
        let concrete = path.replace("{id}", "1").trim_end_matches('/').to_owned();
        let has_policy = portcullis::api::policy::policy_for(&concrete).is_some();
        assert_eq!(has_policy, path != "/healthz", "{path}");
    }
}

#[tokio::test]
async fn the_spec_offers_the_four_schemes_and_says_which_each_operation_accepts() {
    let app = TestApp::new().await;
    let spec: serde_json::Value = serde_json::from_str(&portcullis::app::spec_json(&app.state)).unwrap();
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "sessionid");
    assert_eq!(
        (schemes["token"]["in"].as_str(), schemes["token"]["name"].as_str()),
        (Some("header"), Some("Authorization"))
    );
    assert_eq!(
        (schemes["jwt"]["scheme"].as_str(), schemes["jwt"]["bearerFormat"].as_str()),
        (Some("bearer"), Some("JWT"))
    );
    assert_eq!(schemes["basic"]["scheme"], "basic");
    let security = |path: &str, method: &str| spec["paths"][path][method]["security"].clone();
    let chain = serde_json::json!([{"session": []}, {"token": []}, {"jwt": []}, {"basic": []}]);
    assert_eq!(security("/protected/", "get"), chain);
    assert_eq!(security("/profile/", "get"), serde_json::json!([{"token": []}]));
    assert_eq!(security("/session/data/", "get"), serde_json::json!([{"session": []}]));
    // Unsafe methods under the session also need the CSRF header (DRF's enforce_csrf).
    assert_eq!(security("/session/data/", "patch"), serde_json::json!([{"session": [], "csrf": []}]));
    assert_eq!(
        schemes["csrf"],
        serde_json::json!({"type": "apiKey", "in": "header", "name": "X-CSRFToken",
        "description": schemes["csrf"]["description"]})
    );
    let unsafe_chain = serde_json::json!([{"session": [], "csrf": []}, {"token": []}, {"jwt": []}, {"basic": []}, {}]);
    assert_eq!(security("/login/", "post"), unsafe_chain);
    assert_eq!(security("/api/token/refresh/", "post"), serde_json::json!([{}]));
}
