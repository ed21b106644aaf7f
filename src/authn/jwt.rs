//! simplejwt's `JWTAuthentication`: `Authorization: Bearer <access token>` (header types
//! matched case-sensitively, as simplejwt), with simplejwt's exact error bodies. Refused
//! unlike simplejwt: tokens issued before a password change or "log out everywhere".
use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::{Value, json};

use super::{
    Authenticator, Credential, Credentials, Deps, Failure, Identity, Method, Outcome,
    cache::{CredentialCache, Key},
};
use crate::{
    crypto,
    service::jwt::{self, Jwt, TokenError},
    store::user,
};

pub struct JwtAuthenticator {
    db: DatabaseConnection,
    cache: Arc<CredentialCache>,
    jwt: Arc<Jwt>,
    header_types: Vec<String>,
}

impl JwtAuthenticator {
    pub fn new(deps: &Deps) -> Self {
        Self {
            db: deps.db.clone(),
            cache: Arc::clone(&deps.cache),
            jwt: Arc::clone(&deps.jwt),
            header_types: deps.settings.jwt.auth_header_types.clone(),
        }
    }

    async fn user(&self, id: i64) -> Result<Option<Arc<user::Model>>, sea_orm::DbErr> {
        Ok(user::Entity::find_by_id(id).one(&self.db).await?.map(Arc::new))
    }
}

fn refuse(body: Value) -> Outcome {
    Outcome::Failed(Failure::Detailed(body))
}

/// simplejwt's `InvalidToken` for an access token that fails a check.
fn not_valid(message: &str) -> Outcome {
    refuse(json!({
        "detail": "Given token not valid for any token type",
        "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": message}],
    }))
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn challenge(&self) -> Option<String> {
        self.header_types.first().map(|t| format!("{t} realm=\"api\""))
    }

    async fn authenticate(&self, creds: &Credentials) -> Outcome {
        let Some(parts) = creds.authorization_parts() else { return Outcome::NotMine };
        if !self.header_types.iter().any(|t| t.as_bytes() == parts[0]) {
            return Outcome::NotMine;
        }
        let [_, raw] = parts.as_slice() else {
            return refuse(json!({
                "detail": "Authorization header must contain two space-delimited values",
                "code": "bad_authorization_header",
            }));
        };
        let Ok(raw) = std::str::from_utf8(raw) else { return not_valid(jwt::msg::INVALID) };
        // A token verified within cache.ttl is not verified again; expiry is still checked.
        let digest = crypto::digest(raw);
        if let Some(identity) = self.cache.get(&Key::Jwt(digest)) {
            match identity.credential {
                Credential::Jwt { exp, .. } if !self.jwt.expired(exp) => return Outcome::Authenticated(identity),
                _ => return not_valid(jwt::msg::EXPIRED),
            }
        }
        let ticket = self.cache.ticket();
        let claims = match self.jwt.decode(raw, Some(jwt::ACCESS)).await {
            Ok(claims) => claims,
            Err(TokenError::Token(message)) => return not_valid(message),
            Err(_) => return not_valid(jwt::msg::INVALID),
        };
        let Some(user_id) = claims.user_id else {
            return refuse(
                json!({"detail": "Token contained no recognizable user identification", "code": "token_not_valid"}),
            );
        };
        let user = match self.user(user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return refuse(json!({"detail": "User not found", "code": "user_not_found"})),
            Err(e) => return Outcome::Failed(Failure::Unavailable(e.to_string())),
        };
        if !user.is_active {
            return refuse(json!({"detail": "User is inactive", "code": "user_inactive"}));
        }
        if !jwt::stamp_matches(claims.stamp.as_deref(), &user.security_stamp) {
            return refuse(json!({"detail": "The user's password has been changed.", "code": "password_changed"}));
        }
        let identity = Arc::new(Identity {
            user,
            method: Method::Jwt,
            credential: Credential::Jwt { jti: claims.jti, exp: claims.exp },
            aal: claims.aal,
        });
        self.cache.insert(Key::Jwt(digest), Arc::clone(&identity), ticket);
        Outcome::Authenticated(identity)
    }
}
