//! Framework-free logic. [`accounts::Accounts`] holds the use cases — every account change
//! (log in, log out, change a password, revoke, deactivate, grant) is one method there,
//! emitting its own security event, and every door (HTTP, CLI) calls it. The other modules
//! are the data those use cases work on (users, sessions, tokens, JWTs, permissions).
pub mod accounts;
pub mod audit_log;
pub mod devices;
pub mod email_tokens;
pub mod identity;
pub mod introspection;
pub mod jwt;
pub mod mfa;
pub mod permissions;
pub mod sessions;
pub mod throttles;
pub mod tokens;
pub mod users;

use serde_json::{Map, Value};

/// Field name -> messages, in the order fields were checked (DRF's `serializer.errors`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let entry = self.0.entry(field.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.into()));
        }
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    /// `Ok(())` when nothing was added.
    pub fn into_result(self) -> Result<(), ServiceError> {
        if self.0.is_empty() { Ok(()) } else { Err(ServiceError::Invalid(self)) }
    }

    pub fn to_json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The same errors with one field renamed (a shared validator, another field name).
    pub fn renamed(mut self, from: &str, to: &str) -> Self {
        if let Some(v) = self.0.remove(from) {
            self.0.insert(to.to_owned(), v);
        }
        self
    }

    /// "field: message" lines, for the CLI.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(field, msgs)| {
                msgs.as_array().into_iter().flatten().filter_map(Value::as_str).map(move |m| format!("{field}: {m}"))
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {}", .0.lines().join("; "))]
    Invalid(FieldErrors),
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Hash(#[from] crate::password::HashError),
    #[error(transparent)]
    Signing(#[from] jwt::SigningError),
    /// A backing service other than the database (the shared throttle store).
    #[error("{0}")]
    Unavailable(String),
    /// Another request changed the same data first (409).
    #[error("{0}")]
    Conflict(&'static str),
    /// A sensitive action by a user with a second factor, on a credential that has not
    /// proven it within `mfa.step_up_age` (403 `mfa_required`).
    #[error("second factor required")]
    SecondFactorRequired,
}
