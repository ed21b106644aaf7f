//! DRF's `TokenAuthentication`: `Authorization: Token <key>` (keyword configurable,
//! matched case-insensitively), with DRF's exact header-parsing messages. Keys are looked up
//! by their SHA-256 digest; unknown, revoked and expired keys are all "Invalid token.".
use async_trait::async_trait;
use sea_orm::DatabaseConnection;

use super::{Authenticator, Credential, Credentials, Failure, Identity, Method, Outcome};
use crate::{service::tokens, state::AppState};

pub const INVALID_TOKEN: &str = "Invalid token.";
pub const INACTIVE: &str = "User inactive or deleted.";

pub struct TokenAuthenticator {
    db: DatabaseConnection,
    keyword: String,
}

impl TokenAuthenticator {
    pub fn new(state: &AppState) -> Self {
        Self { db: state.db.clone(), keyword: state.settings.token.keyword.clone() }
    }
}

fn failed(detail: &str) -> Outcome {
    Outcome::Failed(Failure::Credentials(detail.to_owned()))
}

#[async_trait]
impl Authenticator for TokenAuthenticator {
    fn name(&self) -> &'static str {
        "token"
    }

    fn challenge(&self) -> Option<String> {
        Some(self.keyword.clone())
    }

    async fn authenticate(&self, creds: &Credentials) -> Outcome {
        let Some(parts) = creds.authorization_parts() else { return Outcome::NotMine };
        if !parts[0].eq_ignore_ascii_case(self.keyword.as_bytes()) {
            return Outcome::NotMine;
        }
        let key = match parts.as_slice() {
            [_] => return failed("Invalid token header. No credentials provided."),
            [_, key] => key,
            _ => return failed("Invalid token header. Token string should not contain spaces."),
        };
        let Ok(key) = std::str::from_utf8(key) else {
            return failed("Invalid token header. Token string should not contain invalid characters.");
        };
        match tokens::authenticate(&self.db, key).await {
            Ok(Some((token, user))) if user.is_active => Outcome::Authenticated(Box::new(Identity {
                user,
                method: Method::Token,
                credential: Credential::Token { id: token.id },
            })),
            Ok(Some(_)) => failed(INACTIVE),
            Ok(None) => failed(INVALID_TOKEN),
            Err(e) => Outcome::Failed(Failure::Unavailable(e.to_string())),
        }
    }
}
