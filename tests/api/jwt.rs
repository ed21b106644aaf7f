//! simplejwt's endpoints, bodies and errors, and what portcullis does beyond it: atomic
//! rotation with reuse detection, revocation on password change, no 500 for deleted users,
//! algorithm pinning.
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::http::{Method, StatusCode};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{STRONG, TestApp};

pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn header(token: &str) -> Value {
    let head = token.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap()
}

async fn jwt_app(tweak: impl FnOnce(&mut portcullis::Settings)) -> TestApp {
    TestApp::with(|s| {
        s.auth.chain = vec![portcullis::config::AuthScheme::Jwt];
        tweak(s);
    })
    .await
}

/// The generated HS256 secret that signs now.
pub async fn hs_key(app: &TestApp) -> String {
    use portcullis::store::jwt::signing_key;
    use sea_orm::{ColumnTrait, QueryFilter};
    signing_key::Entity::find()
        .filter(signing_key::Column::RetiredAt.is_null())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
        .private_key
        .unwrap()
}

pub fn not_valid(message: &str) -> Value {
    json!({
        "detail": "Given token not valid for any token type",
        "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": message}],
    })
}

#[tokio::test]
async fn obtain_gives_a_simplejwt_pair() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    let kid = header(&access)["kid"].as_str().unwrap().to_owned();
    assert!(kid.starts_with("hs256-"), "{kid}");
    assert_eq!(header(&access), json!({"typ": "JWT", "alg": "HS256", "kid": kid}));
    let (a, r) = (claims(&access), claims(&refresh));
    assert_eq!(a["token_type"], "access");
    assert_eq!(r["token_type"], "refresh");
    assert_eq!(a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(), 300);
    assert_eq!(r["exp"].as_i64().unwrap() - r["iat"].as_i64().unwrap(), 86400);
    assert_eq!(a["user_id"], json!(app.user("john").await.id.to_string()));
    for c in [&a, &r] {
        let jti = c["jti"].as_str().unwrap();
        assert!(jti.len() == 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!c.to_string().contains(&app.user("john").await.security_stamp), "the stamp never leaves the server");
    }
    let res = app.get_auth("/protected/", &format!("Bearer {access}")).await;
    assert_eq!(res.status, StatusCode::OK);
    // Only the refresh token's jti is stored.
    let rows = portcullis::store::jwt::outstanding::Entity::find().all(&app.state.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].jti, r["jti"].as_str().unwrap());
}

#[tokio::test]
async fn obtain_errors_are_simplejwts() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let res = app.post_json("/api/token/", &json!({"username": "john", "password": "wrong"})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Bearer realm=\"api\"");
    assert_eq!(res.body, json!({"detail": "No active account found with the given credentials"}));
    let res = app.post_json("/api/token/", &json!({"username": ""})).await;
    assert_eq!(
        res.body,
        json!({"username": ["This field may not be blank."], "password": ["This field is required."]})
    );
    let res = app
        .post_raw("/api/token/", Some("application/x-www-form-urlencoded"), format!("username=john&password={STRONG}"))
        .await;
    assert_eq!(res.status, StatusCode::OK, "form-encoded works");
}

#[tokio::test]
async fn bearer_header_errors_are_simplejwts() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    let bad_header = json!({"detail": "Authorization header must contain two space-delimited values", "code": "bad_authorization_header"});
    for h in ["Bearer", format!("Bearer {access} extra").as_str()] {
        let res = app.get_auth("/protected/", h).await;
        assert_eq!((res.status, &res.body), (StatusCode::UNAUTHORIZED, &bad_header));
        assert_eq!(res.headers["www-authenticate"], "Bearer realm=\"api\"");
    }
    assert_eq!(app.get_auth("/protected/", "Bearer garbage").await.body, not_valid("Token is invalid"));
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {refresh}")).await.body, not_valid("Token has wrong type"));
    // simplejwt matches the header type case-sensitively: "bearer" is not ours, so anonymous.
    let res = app.get_auth("/protected/", &format!("bearer {access}")).await;
    assert_eq!(res.body, json!({"detail": "Authentication credentials were not provided."}));
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let app = jwt_app(|s| {
        s.jwt.access_token_lifetime = 1;
        s.jwt.refresh_token_lifetime = 1;
    })
    .await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {access}")).await.status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {access}")).await.body, not_valid("Token is expired"));
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.body, json!({"detail": "Token is expired", "code": "token_not_valid"}));
    let res = app.post_json("/api/token/verify/", &json!({"token": access})).await;
    assert_eq!(res.body, json!({"detail": "Token is expired", "code": "token_not_valid"}));
}

#[tokio::test]
async fn refresh_verify_and_blacklist_follow_simplejwt() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["access"]);
    let new_access = res.body["access"].as_str().unwrap();
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {new_access}")).await.status, StatusCode::OK);

    let res = app.post_json("/api/token/refresh/", &json!({"refresh": access})).await;
    assert_eq!(
        (res.status, res.body),
        (StatusCode::UNAUTHORIZED, json!({"detail": "Token has wrong type", "code": "token_not_valid"}))
    );
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": "x.y.z"})).await;
    assert_eq!(res.body, json!({"detail": "Token is invalid", "code": "token_not_valid"}));
    assert_eq!(
        app.post_json("/api/token/refresh/", &json!({})).await.body,
        json!({"refresh": ["This field is required."]})
    );
    assert_eq!(
        app.post_json("/api/token/verify/", &json!({})).await.body,
        json!({"token": ["This field is required."]})
    );

    for token in [&access, &refresh] {
        let res = app.post_json("/api/token/verify/", &json!({"token": token})).await;
        assert_eq!((res.status, res.body), (StatusCode::OK, json!({})));
    }
    let res = app.post_json("/api/token/blacklist/", &json!({"refresh": access})).await;
    assert_eq!(res.body, json!({"detail": "Token has wrong type", "code": "token_not_valid"}));
    let res = app.post_json("/api/token/blacklist/", &json!({"refresh": refresh})).await;
    assert_eq!((res.status, res.body), (StatusCode::OK, json!({})));
    let res = app.post_json("/api/token/blacklist/", &json!({"refresh": refresh})).await;
    assert_eq!(res.body, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}));
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.body, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}));
    // Unlike simplejwt, verify refuses a blacklisted token whatever the settings.
    let res = app.post_json("/api/token/verify/", &json!({"token": refresh})).await;
    assert_eq!(
        (res.status, res.body),
        (StatusCode::UNAUTHORIZED, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}))
    );
}

/// Whether or not rotation also blacklists the spent token, replaying it revokes its family.
#[tokio::test]
async fn rotation_spends_the_old_token_and_reuse_revokes_the_family() {
    for blacklist_after_rotation in [false, true] {
        let app = jwt_app(|s| {
            s.jwt.rotate_refresh_tokens = true;
            s.jwt.blacklist_after_rotation = blacklist_after_rotation;
        })
        .await;
        app.register("john").await;
        let app = &app;
        let refresh = |token: &str| {
            let body = json!({"refresh": token});
            async move { app.post_json("/api/token/refresh/", &body).await }
        };
        let (_, first) = app.jwt("john").await;
        let res = refresh(&first).await;
        assert_eq!(res.status, StatusCode::OK);
        let second = res.body["refresh"].as_str().unwrap().to_owned();
        assert_ne!(second, first);
        let third = refresh(&second).await.body["refresh"].as_str().unwrap().to_owned();
        // The thief replays the spent token: refused, and the legitimate descendants die too.
        let spent = json!({"detail": "Token is blacklisted", "code": "token_not_valid"});
        let res = refresh(&first).await;
        assert_eq!((res.status, &res.body), (StatusCode::UNAUTHORIZED, &spent), "{blacklist_after_rotation}");
        for token in [&third, &second] {
            let res = refresh(token).await;
            assert_eq!((res.status, &res.body), (StatusCode::UNAUTHORIZED, &spent), "{blacklist_after_rotation}");
        }
        app.state.events.flush().await;
        let filter = portcullis::service::audit_log::Filter {
            event: Some("refresh_reuse_detected".into()),
            ..Default::default()
        };
        let (events, _) = portcullis::service::audit_log::page(&app.state.db, &filter, 0, 10).await.unwrap();
        assert!(!events.is_empty(), "no reuse event with blacklist_after_rotation = {blacklist_after_rotation}");
        // Another login's family is untouched.
        let (_, other) = app.jwt("john").await;
        assert_eq!(refresh(&other).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_win() {
    let app = jwt_app(|s| {
        s.jwt.rotate_refresh_tokens = true;
        s.jwt.blacklist_after_rotation = true;
    })
    .await;
    app.register("john").await;
    let (_, refresh) = app.jwt("john").await;
    let body = json!({"refresh": refresh});
    let attempts: Vec<_> = (0..6).map(|_| app.post_json("/api/token/refresh/", &body)).collect();
    let results = futures_util::future::join_all(attempts).await;
    let winners = results.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(winners, 1, "{:?}", results.iter().map(|r| &r.body).collect::<Vec<_>>());
    assert!(results.iter().all(|r| r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn algorithm_confusion_none_and_foreign_keys_are_refused() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, _) = app.jwt("john").await;
    let c = claims(&access);
    let key = hs_key(&app).await;
    let forge = |alg: Algorithm, secret: &[u8]| {
        jsonwebtoken::encode(&Header::new(alg), &c, &EncodingKey::from_secret(secret)).unwrap()
    };
    // The real key re-signs to a valid token: the forgery checks below are meaningful.
    assert_eq!(
        app.get_auth("/protected/", &format!("Bearer {}", forge(Algorithm::HS256, key.as_bytes()))).await.status,
        StatusCode::OK
    );
    for token in [forge(Algorithm::HS384, key.as_bytes()), forge(Algorithm::HS256, b"another key")] {
        assert_eq!(app.get_auth("/protected/", &format!("Bearer {token}")).await.body, not_valid("Token is invalid"));
    }
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&c));
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {none}")).await.body, not_valid("Token is invalid"));
}

#[tokio::test]
async fn an_asymmetric_algorithm_refuses_hs_tokens_signed_with_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("ed.pem"), dir.path().join("ed.pub.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(ok.success());
    let app = jwt_app(|s| {
        s.jwt.algorithm = portcullis::config::JwtAlgorithm::EdDSA;
        s.jwt.private_key_file = private.display().to_string();
        s.jwt.public_key_file = public.display().to_string();
    })
    .await;
    app.register("john").await;
    let (access, _) = app.jwt("john").await;
    assert_eq!(header(&access)["alg"], "EdDSA");
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {access}")).await.status, StatusCode::OK);
    let pem = std::fs::read(&public).unwrap();
    let confused =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(&access), &EncodingKey::from_secret(&pem))
            .unwrap();
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {confused}")).await.body, not_valid("Token is invalid"));
}

#[tokio::test]
async fn deleted_and_inactive_users_are_401_never_500() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    portcullis::service::users::set_active(&app.state.db, "john", false).await.unwrap();
    assert_eq!(
        app.get_auth("/protected/", &format!("Bearer {access}")).await.body,
        json!({"detail": "User is inactive", "code": "user_inactive"})
    );
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(
        (res.status, res.body),
        (StatusCode::UNAUTHORIZED, json!({"detail": "No active account found for the given token."}))
    );
    let id = app.user("john").await.id;
    portcullis::store::user::Entity::delete_by_id(id).exec(&app.state.db).await.unwrap();
    app.changed_elsewhere().await;
    assert_eq!(
        app.get_auth("/protected/", &format!("Bearer {access}")).await.body,
        json!({"detail": "User not found", "code": "user_not_found"})
    );
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_with_a_refresh_token_blacklists_it() {
    let app = TestApp::new().await;
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    let res = app
        .call(
            Method::POST,
            "/logout/",
            &[("authorization", &format!("Bearer {access}"))],
            Some(&json!({"refresh": refresh})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
    assert_eq!(res.body, json!({"detail": "Token is blacklisted", "code": "token_not_valid"}));
}

#[tokio::test]
async fn the_generated_key_is_persisted_and_shared() {
    let app = jwt_app(|_| {}).await;
    app.register("john").await;
    let (access, _) = app.jwt("john").await;
    // A second instance on the same database verifies the first one's tokens.
    let settings = (*app.state.settings).clone();
    let other = portcullis::AppState::new(app.state.db.clone(), settings).await.unwrap();
    assert!(other.jwt.decode(&access, Some("access")).await.is_ok());
    // A configured key is used as given.
    let app = jwt_app(|s| s.jwt.signing_key = portcullis::config::Secret::new("django-insecure-key")).await;
    app.register("ann").await;
    let (access, _) = app.jwt("ann").await;
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    assert!(
        jsonwebtoken::decode::<Value>(&access, &jsonwebtoken::DecodingKey::from_secret(b"django-insecure-key"), &v)
            .is_ok()
    );
}

#[tokio::test]
async fn audience_and_issuer_are_set_and_required() {
    let app = jwt_app(|s| {
        s.jwt.audience = "my-api".into();
        s.jwt.issuer = "portcullis-test".into();
    })
    .await;
    app.register("john").await;
    let (access, _) = app.jwt("john").await;
    let c = claims(&access);
    assert_eq!((c["aud"].as_str(), c["iss"].as_str()), (Some("my-api"), Some("portcullis-test")));
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {access}")).await.status, StatusCode::OK);
    let mut stripped = c.clone();
    stripped.as_object_mut().unwrap().remove("aud");
    let key = hs_key(&app).await;
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &stripped, &EncodingKey::from_secret(key.as_bytes()))
            .unwrap();
    assert_eq!(app.get_auth("/protected/", &format!("Bearer {token}")).await.body, not_valid("Token is invalid"));
}
