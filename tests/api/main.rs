//! The one integration-test binary (every extra test file would be another binary to link).
//! With PORTCULLIS_TEST_DATABASE_URL=postgres://... every test runs in a fresh PostgreSQL
//! schema; otherwise in a fresh SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attack;
mod binary;
mod chain;
mod csrf;
mod django;
mod doors;
mod errors;
mod gateway;
mod headers;
mod helpers;
mod introspect;
mod jwks;
mod jwt;
mod limits;
mod mfa;
mod mfa_login;
mod observability;
mod openapi;
mod policy;
mod process;
mod recovery;
mod register;
mod rotation;
mod scale;
mod sessions;
mod tokens;
mod verification;
