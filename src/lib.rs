//! portcullis: session, token and JWT authentication with Django REST Framework's semantics.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::await_holding_lock)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod app;
pub mod audit;
pub mod authn;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod django_import;
pub mod error;
pub mod events;
pub mod gateway;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod net;
pub mod password;
pub mod permissions;
pub mod server;
pub mod service;
pub mod state;
pub mod store;
pub mod throttle;

pub use app::build_app;
pub use config::Settings;
pub use state::AppState;
