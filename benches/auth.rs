//! The hot functions: argon2 at the configured parameters, token and session lookups, JWT
//! encode/verify (HS256 and each key pair), and the whole chain for each credential kind,
//! cached and not.
//!
//! `cargo bench --bench auth` (add `-- --quick` for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::{
    AppState, Settings,
    authn::Credentials,
    config::{JwtAlgorithm, Secret},
    crypto,
    service::{
        FieldErrors,
        identity::Origin,
        jwt::Jwt,
        sessions, tokens,
        users::{self, NewUser},
    },
    store,
};

const PASSWORD: &str = "c0rrect-h0rse-battery";

struct Fixture {
    state: AppState,
    uncached: AppState,
    password_hash: String,
    session_key: String,
    token_key: String,
    access: String,
    user: portcullis::store::user::Model,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::defaults().unwrap();
    settings.database.url = Secret::new(format!("sqlite://{}/bench.sqlite3?mode=rwc", dir.path().display()));
    let db = store::connect(&settings.database).await.unwrap();
    store::migrate(&db).await.unwrap();
    let state = AppState::new(db.clone(), settings.clone()).await.unwrap();
    let mut no_cache = settings;
    no_cache.cache.ttl = 0;
    let uncached = AppState::new(db.clone(), no_cache).await.unwrap();
    let new = NewUser { username: "bench".into(), password: PASSWORD.into(), ..NewUser::default() };
    let user = users::register(&db, &state.passwords, new, FieldErrors::default()).await.unwrap();
    let (session_key, _) = sessions::create(&db, &user, &Origin::default(), chrono::Duration::days(1)).await.unwrap();
    let (token_key, _) = tokens::create(&db, user.id, "bench", 0).await.unwrap();
    let access = state.jwt.access_for(&user).unwrap();
    Fixture { password_hash: user.password.clone(), state, uncached, session_key, token_key, access, user, _dir: dir }
}

/// A key pair made as at first start, in a database of its own.
async fn key_pair_jwt(algorithm: JwtAlgorithm) -> Jwt {
    let mut settings = Settings::defaults().unwrap();
    settings.jwt.algorithm = algorithm;
    let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
    opts.max_connections(1).sqlx_logging(false);
    let db = sea_orm::Database::connect(opts).await.unwrap();
    store::migrate(&db).await.unwrap();
    Jwt::load(&settings.jwt, &db).await.unwrap().0
}

fn creds_session(key: &str) -> Credentials {
    Credentials {
        method: "GET".into(),
        cookies: [("sessionid".to_owned(), key.to_owned())].into(),
        ..Credentials::default()
    }
}

fn creds_header(value: String) -> Credentials {
    Credentials { method: "GET".into(), authorization: Some(value.into_bytes()), ..Credentials::default() }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let f = rt.block_on(fixture());

    let mut g = c.benchmark_group("password");
    g.sample_size(20);
    g.bench_function("argon2id_verify_configured_params", |b| {
        b.to_async(&rt).iter(|| f.state.passwords.verify(PASSWORD.into(), Some(f.password_hash.clone())))
    });
    g.bench_function("argon2id_hash_configured_params", |b| {
        b.to_async(&rt).iter(|| f.state.passwords.hash(PASSWORD.into()))
    });
    g.finish();

    c.bench_function("token/sha256_digest", |b| b.iter(|| crypto::digest(black_box(&f.token_key))));
    let token_digest = crypto::digest(&f.token_key);
    c.bench_function("token/db_lookup", |b| b.to_async(&rt).iter(|| tokens::authenticate(&f.state.db, &token_digest)));
    let session_digest = crypto::digest(&f.session_key);
    c.bench_function("session/db_lookup", |b| b.to_async(&rt).iter(|| sessions::lookup(&f.state.db, &session_digest)));
    c.bench_function("jwt/encode_access", |b| b.iter(|| f.state.jwt.access_for(black_box(&f.user)).unwrap()));
    c.bench_function("jwt/verify_access", |b| {
        b.to_async(&rt).iter(|| async { f.state.jwt.decode(black_box(&f.access), Some("access")).await.unwrap() })
    });
    for algorithm in [JwtAlgorithm::RS256, JwtAlgorithm::ES256, JwtAlgorithm::EdDSA] {
        let jwt = rt.block_on(key_pair_jwt(algorithm));
        let access = jwt.access_for(&f.user).unwrap();
        c.bench_function(&format!("jwt/{algorithm:?}/encode_access"), |b| {
            b.iter(|| jwt.access_for(black_box(&f.user)).unwrap())
        });
        c.bench_function(&format!("jwt/{algorithm:?}/verify_access"), |b| {
            b.to_async(&rt).iter(|| async { jwt.decode(black_box(&access), Some("access")).await.unwrap() })
        });
    }

    let kinds = [
        ("session", creds_session(&f.session_key)),
        ("token", creds_header(format!("Token {}", f.token_key))),
        ("jwt", creds_header(format!("Bearer {}", f.access))),
    ];
    for (label, state) in [("cached", &f.state), ("uncached", &f.uncached)] {
        let chain = portcullis::authn::Chain::new(&state.settings.auth.chain, &state.authn());
        for (kind, creds) in &kinds {
            c.bench_function(&format!("chain/{label}/{kind}"), |b| {
                b.to_async(&rt).iter(|| async {
                    let found = chain.authenticate(creds).await.unwrap();
                    assert!(found.identity.is_some());
                })
            });
        }
    }
}

criterion_group!(auth, benches);
criterion_main!(auth);
