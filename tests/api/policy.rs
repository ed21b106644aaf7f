//! The spec's per-operation security is what the server enforces: for every documented
//! operation, an anonymous call and a call with each of the four kinds of credential are
//! let through exactly when the spec says so.
use poem::http::{Method, StatusCode};
use portcullis::{
    config::AuthScheme,
    service::{identity::Origin, sessions, tokens},
};
use serde_json::{Value, json};

use crate::helpers::{Answer, STRONG, TestApp};

const NOT_PROVIDED: &str = "Authentication credentials were not provided.";

/// Refused for want of (acceptable) credentials, as the chain and permission refuse.
fn refused(res: &Answer) -> bool {
    matches!(res.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) && res.body["detail"] == NOT_PROVIDED
}

/// A fresh credential of `scheme` for the superuser "root", as request headers.
async fn credential(app: &TestApp, scheme: &str) -> Vec<(String, String)> {
    let db = &app.state.db;
    let root = app.user("root").await;
    match scheme {
        "session" => {
            let (key, _) = sessions::create(db, &root, &Origin::default(), chrono::Duration::hours(1)).await.unwrap();
            let secret = "a".repeat(32);
            vec![("cookie".into(), format!("sessionid={key}; csrftoken={secret}")), ("x-csrftoken".into(), secret)]
        }
        "token" => {
            let (key, _) = tokens::create(db, root.id, "policy", 0).await.unwrap();
            vec![("authorization".into(), format!("Token {key}"))]
        }
        "jwt" => vec![("authorization".into(), format!("Bearer {}", app.state.jwt.access_for(&root).unwrap()))],
        _ => {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("root:{STRONG}"));
            vec![("authorization".into(), format!("Basic {basic}"))]
        }
    }
}

async fn call(app: &TestApp, method: &str, path: &str, headers: &[(String, String)]) -> Answer {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let body = (method != Method::GET).then(|| json!({}));
    app.call(method, path, &headers, body.as_ref()).await
}

#[tokio::test]
async fn every_operation_enforces_the_security_its_spec_documents() {
    let app = TestApp::with(|s| s.auth.chain = AuthScheme::ALL.to_vec()).await;
    app.register("root").await;
    let mut root: portcullis::store::user::ActiveModel = app.user("root").await.into();
    root.is_staff = sea_orm::Set(true);
    root.is_superuser = sea_orm::Set(true);
    sea_orm::ActiveModelTrait::update(root, &app.state.db).await.unwrap();

    let spec: Value = serde_json::from_str(&portcullis::app::spec_json(&app.state)).unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(security) = operation["security"].as_array() else {
                assert_eq!(path, "/healthz", "only operational endpoints document no security");
                continue;
            };
            let concrete = path.replace("{id}", "nope");
            let documented = |name: &str| security.iter().any(|r| r.get(name).is_some());
            let anonymous = call(&app, method, &concrete, &[]).await;
            assert_eq!(
                !refused(&anonymous),
                security.contains(&json!({})),
                "anonymous {method} {path}: {}",
                anonymous.body
            );
            for scheme in ["session", "token", "jwt", "basic"] {
                let res = call(&app, method, &concrete, &credential(&app, scheme).await).await;
                if documented(scheme) {
                    assert!(!refused(&res), "{scheme} {method} {path} is documented but refused: {}", res.body);
                    assert_ne!(res.status, StatusCode::UNAUTHORIZED, "{scheme} {method} {path}: {}", res.body);
                } else if !security.contains(&json!({})) {
                    assert!(refused(&res), "{scheme} {method} {path} is not documented but let through: {}", res.body);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 25, "{checked}");
}
