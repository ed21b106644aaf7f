//! Offline verification (API.md "Offline verification of JWTs"): the JWKS and discovery
//! documents, a `kid` in every token, keys made at first start for each algorithm and kept
//! in the database, key files, and everything a forger tries (unknown `kid`, `alg` swaps,
//! malformed tokens). Rotation is in `rotation.rs`.
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::Jwk};
use poem::{EndpointExt, http::StatusCode, test::TestClient};
use portcullis::{
    config::{AuthScheme, JwtAlgorithm},
    store::jwt::signing_key,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    helpers::{Answer, TestApp, answer},
    jwt::{claims, header, hs_key, not_valid},
};

pub async fn jwt_app(algorithm: JwtAlgorithm, tweak: impl FnOnce(&mut portcullis::Settings)) -> TestApp {
    TestApp::with(|s| {
        s.auth.chain = vec![AuthScheme::Jwt];
        s.jwt.algorithm = algorithm;
        tweak(s);
    })
    .await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn kid(token: &str) -> String {
    header(token)["kid"].as_str().unwrap().to_owned()
}

/// `GET /.well-known/jwks.json`, checked for what every answer must have.
pub async fn jwks(app: &TestApp) -> Value {
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.headers["cache-control"], "public, max-age=300");
    assert!(res.headers.get("vary").is_none(), "the same for everyone: no Vary: Cookie");
    res.body
}

pub fn kids(set: &Value) -> Vec<String> {
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// The current key's row (private key included).
async fn current_row(app: &TestApp) -> signing_key::Model {
    signing_key::Entity::find()
        .filter(signing_key::Column::RetiredAt.is_null())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn with_hs256_the_jwks_is_empty_and_every_token_names_its_key() {
    let app = jwt_app(JwtAlgorithm::HS256, |_| {}).await;
    assert_eq!(jwks(&app).await, json!({"keys": []}));
    app.register("john").await;
    let (access, refresh) = app.jwt("john").await;
    assert_eq!(kid(&access), kid(&refresh));
    let secret = hs_key(&app).await;
    let sign = |kid: Option<&str>| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, &claims(&access), &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    // The right secret with the right kid, or with none (simplejwt's tokens have none): valid.
    for token in [sign(Some(&kid(&access))), sign(None)] {
        assert_eq!(app.get_auth("/protected/", &bearer(&token)).await.status, StatusCode::OK);
    }
    // The right secret under a kid that names no key: refused.
    let res = app.get_auth("/protected/", &bearer(&sign(Some("hs256-000000000000000000000000")))).await;
    assert_eq!((res.status, res.body), (StatusCode::UNAUTHORIZED, not_valid("Token is invalid")));
    // What the database holds never shows its secret in Debug output.
    let row = current_row(&app).await;
    assert!(!format!("{row:?}").contains(&secret), "{row:?}");
}

#[tokio::test]
async fn each_asymmetric_algorithm_gets_a_key_pair_at_first_start_and_publishes_it() {
    for (algorithm, alg, kty) in [
        (JwtAlgorithm::RS256, "RS256", "RSA"),
        (JwtAlgorithm::ES256, "ES256", "EC"),
        (JwtAlgorithm::EdDSA, "EdDSA", "OKP"),
    ] {
        let app = jwt_app(algorithm, |_| {}).await;
        let set = jwks(&app).await;
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "the current key and the next one, published ahead: {set}");
        assert!(keys.iter().all(|k| k["alg"] == alg && k["kty"] == kty));
        let key = &keys[0];
        assert_eq!(
            (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
            (Some(kty), Some(alg), Some("sig"))
        );
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{alg}: the JWKS shows a private parameter {private}");
        }
        app.register("john").await;
        let (access, refresh) = app.jwt("john").await;
        assert_eq!(header(&access)["alg"], alg);
        assert_eq!(kid(&access), key["kid"].as_str().unwrap());
        // A verifier holding nothing but the JWKS accepts the token.
        let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
        let mut validation = Validation::new(jwk.common.key_algorithm.unwrap().to_string().parse().unwrap());
        validation.validate_aud = false;
        let decoded = jsonwebtoken::decode::<Value>(&access, &DecodingKey::from_jwk(&jwk).unwrap(), &validation);
        assert_eq!(decoded.unwrap().claims["token_type"], "access", "{alg}");
        assert_eq!(app.get_auth("/protected/", &bearer(&access)).await.status, StatusCode::OK, "{alg}");
        let res = app.post_json("/api/token/refresh/", &json!({"refresh": refresh})).await;
        assert_eq!(res.status, StatusCode::OK, "{alg}: {}", res.body);
        // The pair is in the database, its private half as PKCS#8 PEM, never in Debug output.
        let row = current_row(&app).await;
        assert!(row.private_key.as_deref().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{row:?}").contains("PRIVATE KEY"), "{row:?}");
        // Every instance on the database shares it (a second one makes no key of its own).
        let settings = (*app.state.settings).clone();
        let other = portcullis::AppState::new(app.state.db.clone(), settings).await.unwrap();
        assert_eq!(other.jwt.jwks(), set);
    }
}

/// Answers of a request carrying `token` on each door that reads one: never a 500, always
/// the door's own refusal.
async fn refused_everywhere(app: &TestApp, token: &str, why: &str) {
    let res = app.get_auth("/protected/", &bearer(token)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{why}: {}", res.body);
    assert_eq!(res.body["code"], "token_not_valid", "{why}: {}", res.body);
    for (path, field) in [("/api/token/verify/", "token"), ("/api/token/refresh/", "refresh")] {
        let res = app.post_json(path, &json!({ field: token })).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{why} {path}: {}", res.body);
        assert_eq!(res.body["code"], "token_not_valid", "{why} {path}: {}", res.body);
    }
}

#[tokio::test]
async fn forged_tokens_wrong_kids_and_alg_swaps_are_refused_never_a_500() {
    let app = jwt_app(JwtAlgorithm::RS256, |_| {}).await;
    app.register("john").await;
    let (access, _) = app.jwt("john").await;
    let c = claims(&access);
    let real_kid = kid(&access);
    let key = &jwks(&app).await["keys"][0];
    let private = current_row(&app).await.private_key.unwrap();
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, &c, key).unwrap()
    };
    let rsa = EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
    // The real private key and kid: valid, so the refusals below are about what they change.
    assert_eq!(app.get_auth("/protected/", &bearer(&sign(Algorithm::RS256, &real_kid, &rsa))).await.status, 200);
    refused_everywhere(&app, &sign(Algorithm::RS256, "no-such-kid", &rsa), "unknown kid").await;
    refused_everywhere(&app, &sign(Algorithm::RS384, &real_kid, &rsa), "RS384 under an RS256 key").await;
    refused_everywhere(&app, &sign(Algorithm::PS256, &real_kid, &rsa), "PS256 under an RS256 key").await;
    // RS → HS: the public key, in every form a verifier might hold it, as the HMAC secret.
    use rsa::{BigUint, pkcs8::EncodePublicKey};
    let part = |name: &str| {
        use base64::Engine;
        BigUint::from_bytes_be(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap(),
        )
    };
    let public = rsa::RsaPublicKey::new(part("n"), part("e")).unwrap();
    let pem = public.to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    for secret in [pem.as_bytes(), key.to_string().as_bytes(), key["n"].as_str().unwrap().as_bytes()] {
        for kid in [real_kid.as_str(), "no-such-kid"] {
            let token = sign(Algorithm::HS256, kid, &EncodingKey::from_secret(secret));
            refused_everywhere(&app, &token, "HS256 with the public key as secret").await;
        }
        let mut h = Header::new(Algorithm::HS256);
        h.kid = None;
        let token = jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(secret)).unwrap();
        refused_everywhere(&app, &token, "HS256 without kid").await;
    }
    // alg "none", and garbage of every shape.
    let b64 = |v: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let payload = b64(&c.to_string());
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "kid": real_kid}).to_string()));
    let numeric_kid = format!("{}.{payload}.c2ln", b64(r#"{"alg":"RS256","kid":42}"#));
    let not_json = format!("{}.{payload}.c2ln", b64("not json"));
    let huge = format!("{}.{}.c2ln", b64(&json!({"alg": "RS256", "kid": real_kid}).to_string()), "A".repeat(100_000));
    for (token, why) in [
        (none.as_str(), "alg none"),
        (&numeric_kid, "a kid that is a number"),
        (&not_json, "a header that is not JSON"),
        ("a.b.c", "three bits of nothing"),
        ("....", "dots"),
        ("eyJhbGciOiJSUzI1NiJ9", "a header alone"),
        (&huge, "100 kB"),
    ] {
        refused_everywhere(&app, token, why).await;
    }
}

#[tokio::test]
async fn key_files_still_work_and_old_public_keys_keep_their_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl").args(args).current_dir(dir.path()).status().unwrap();
        assert!(ok.success(), "openssl {args:?}");
    };
    for n in ["1", "2"] {
        let key = format!("ec{n}.pem");
        openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key]);
        openssl(&["pkey", "-pubout", "-in", &key, "-out", &format!("ec{n}.pub.pem")]);
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let first = jwt_app(JwtAlgorithm::ES256, |s| {
        s.jwt.private_key_file = path("ec1.pem");
        s.jwt.public_key_file = path("ec1.pub.pem");
    })
    .await;
    first.register("john").await;
    let (old, _) = first.jwt("john").await;
    assert_eq!(kids(&jwks(&first).await), [kid(&old)]);
    assert!(signing_key::Entity::find().all(&first.state.db).await.unwrap().is_empty(), "files are not copied");
    let refused = first.state.accounts.rotate_signing_key(&portcullis::service::identity::Origin::cli()).await;
    assert!(refused.unwrap_err().to_string().contains("jwt.previous_public_key_files"));

    // The operator replaces the files and lists the old public key: old tokens stay valid.
    let mut settings = (*first.state.settings).clone();
    settings.jwt.private_key_file = path("ec2.pem");
    settings.jwt.public_key_file = path("ec2.pub.pem");
    settings.jwt.previous_public_key_files = vec![path("ec1.pub.pem")];
    settings.validate().unwrap();
    let second = portcullis::AppState::new(first.state.db.clone(), settings.clone()).await.unwrap();
    let client = TestClient::new(portcullis::build_app(second.clone()).boxed());
    let get = |token: String| {
        let req = client.get("/protected/").header("authorization", bearer(&token));
        async move { answer(req.send().await.0).await }
    };
    assert_eq!(get(old.clone()).await.status, StatusCode::OK);
    let new = second.jwt.access_for(&first.user("john").await).unwrap();
    assert_ne!(kid(&new), kid(&old));
    assert_eq!(get(new.clone()).await.status, StatusCode::OK);
    let set = answer(client.get("/.well-known/jwks.json").send().await.0).await.body;
    assert_eq!(kids(&set), [kid(&new), kid(&old)]);

    // A public key file that is not the private key's pair stops start-up, naming both.
    settings.jwt.public_key_file = path("ec1.pub.pem");
    let err = portcullis::AppState::new(first.state.db.clone(), settings).await.err().unwrap();
    assert!(err.to_string().contains("is not the public half"), "{err}");
}

#[tokio::test]
async fn switching_from_hs256_to_a_key_pair_keeps_issued_tokens_valid() {
    let app = TestApp::new().await;
    app.register("john").await;
    let (hs_access, hs_refresh) = app.jwt("john").await;
    let mut settings = (*app.state.settings).clone();
    settings.jwt.algorithm = JwtAlgorithm::EdDSA;
    // A restart with the new algorithm on the same database.
    let state = portcullis::AppState::new(app.state.db.clone(), settings).await.unwrap();
    let client = TestClient::new(portcullis::build_app(state.clone()).boxed());
    let call = |path: &str, token: &str| {
        let req = client.get(path).header("authorization", bearer(token));
        async move { answer(req.send().await.0).await }
    };
    let set = answer(client.get("/.well-known/jwks.json").send().await.0).await.body;
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the current and next EdDSA keys; HS256 secrets are never published: {set}");
    assert!(keys.iter().all(|k| k["alg"] == "EdDSA"), "{set}");
    assert_eq!(call("/protected/", &hs_access).await.status, StatusCode::OK);
    let res: Answer =
        answer(client.post("/api/token/refresh/").body_json(&json!({"refresh": hs_refresh})).send().await.0).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let access = res.body["access"].as_str().unwrap();
    assert_eq!(header(access)["alg"], "EdDSA");
    assert_eq!(call("/protected/", access).await.status, StatusCode::OK);
}

#[tokio::test]
async fn discovery_names_the_issuer_and_where_its_keys_are() {
    let app = TestApp::new().await;
    let res = app
        .call(poem::http::Method::GET, "/.well-known/openid-configuration", &[("host", "auth.example.com:8443")], None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["cache-control"], "public, max-age=300");
    assert_eq!(
        res.body,
        json!({
            "issuer": "http://auth.example.com:8443",
            "jwks_uri": "http://auth.example.com:8443/.well-known/jwks.json",
            "token_endpoint": "http://auth.example.com:8443/api/token/",
            "introspection_endpoint": "http://auth.example.com:8443/introspect/",
        })
    );
    // The trailing slash answers the same.
    assert_eq!(app.get("/.well-known/jwks.json/").await.status, StatusCode::OK);
    // With jwt.issuer set to the public URL, that URL (and tokens carry it as `iss`).
    let app = TestApp::with(|s| s.jwt.issuer = "https://auth.example.com".into()).await;
    let res = app.get("/.well-known/openid-configuration").await;
    assert_eq!(res.body["issuer"], "https://auth.example.com");
    assert_eq!(res.body["jwks_uri"], "https://auth.example.com/.well-known/jwks.json");
    app.register("john").await;
    assert_eq!(claims(&app.jwt("john").await.0)["iss"], "https://auth.example.com");
}
