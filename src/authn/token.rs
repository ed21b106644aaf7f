//! DRF's `TokenAuthentication`: `Authorization: Token <key>` (keyword configurable,
//! matched case-insensitively), with DRF's exact header-parsing messages. Keys are looked up
//! by their SHA-256 digest; unknown, revoked and expired keys are all "Invalid token.".
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::DatabaseConnection;

use super::Deps;
use super::{
    Authenticator, Credential, Credentials, Failure, Identity, Method, Outcome,
    cache::{CredentialCache, Key},
};
use crate::{
    crypto,
    service::{identity::Aal, tokens},
};

pub const INVALID_TOKEN: &str = "Invalid token.";
pub const INACTIVE: &str = "User inactive or deleted.";

pub struct TokenAuthenticator {
    db: DatabaseConnection,
    cache: Arc<CredentialCache>,
    keyword: String,
}

impl TokenAuthenticator {
    pub fn new(deps: &Deps) -> Self {
        Self { db: deps.db.clone(), cache: Arc::clone(&deps.cache), keyword: deps.settings.token.keyword.clone() }
    }

    /// The token and its user from the database (`None`: unknown, revoked or expired), cached.
    async fn load(&self, digest: &[u8; 32]) -> Result<Option<Arc<Identity>>, sea_orm::DbErr> {
        let ticket = self.cache.ticket();
        let Some((token, user)) = tokens::authenticate(&self.db, digest).await? else { return Ok(None) };
        let identity = Arc::new(Identity {
            user: Arc::new(user),
            method: Method::Token,
            credential: Credential::Token { id: token.id, expires_at: token.expires_at },
            aal: Aal::from_parts(token.aal, token.aal_at),
        });
        self.cache.insert(Key::Token(*digest), Arc::clone(&identity), ticket);
        Ok(Some(identity))
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
        if !tokens::plausible_key(key) {
            return failed(INVALID_TOKEN);
        }
        let digest = crypto::digest(key);
        let identity = match self.cache.get(&Key::Token(digest)) {
            Some(identity) => identity,
            _ => match self.load(&digest).await {
                Ok(Some(identity)) => identity,
                Ok(None) => return failed(INVALID_TOKEN),
                Err(e) => return Outcome::Failed(Failure::Unavailable(e.to_string())),
            },
        };
        if let Credential::Token { expires_at: Some(at), .. } = identity.credential
            && at <= Utc::now()
        {
            return failed(INVALID_TOKEN);
        }
        if !identity.user.is_active {
            return failed(INACTIVE);
        }
        Outcome::Authenticated(identity)
    }
}
