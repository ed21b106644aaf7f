//! DRF's `SessionAuthentication` over our session table: the `sessionid` cookie names a
//! live session whose user is active and whose security stamp is the user's current one
//! (Django's `_auth_user_hash` check); unsafe methods must then pass the CSRF check.
use async_trait::async_trait;
use chrono::Utc;
use sea_orm::DatabaseConnection;

use std::sync::Arc;

use super::Deps;
use super::{
    Authenticator, Credential, Credentials, Failure, Identity, Method, Outcome, SessionRef,
    cache::{CredentialCache, Key},
    csrf,
};
use crate::{
    crypto,
    service::{identity::Aal, sessions},
};

pub struct SessionAuthenticator {
    db: DatabaseConnection,
    cache: Arc<CredentialCache>,
    cookie_name: String,
    csrf_cookie: String,
    csrf_header: String,
    trusted_origins: Vec<String>,
    /// `auth.session_challenge`: answer 401 + `WWW-Authenticate: Session` instead of 403.
    challenge: bool,
}

impl SessionAuthenticator {
    pub fn new(deps: &Deps) -> Self {
        let s = &deps.settings;
        Self {
            db: deps.db.clone(),
            cache: Arc::clone(&deps.cache),
            cookie_name: s.session.cookie_name.clone(),
            csrf_cookie: s.csrf.cookie_name.clone(),
            csrf_header: s.csrf.header_name.clone(),
            trusted_origins: s.csrf.trusted_origins.clone(),
            challenge: s.auth.session_challenge,
        }
    }
}

#[async_trait]
impl Authenticator for SessionAuthenticator {
    fn name(&self) -> &'static str {
        "session"
    }

    fn challenge(&self) -> Option<String> {
        self.challenge.then(|| "Session".to_owned())
    }

    async fn authenticate(&self, creds: &Credentials) -> Outcome {
        let Some(key) = creds.cookies.get(&self.cookie_name) else { return Outcome::NotMine };
        if !sessions::plausible_key(key) {
            return Outcome::Stale;
        }
        let digest = crypto::digest(key);
        let identity = match self.cache.get(&Key::Session(digest)) {
            Some(identity) => identity,
            _ => match self.load(&digest).await {
                Ok(Some(identity)) => identity,
                Ok(None) => return Outcome::Stale,
                Err(e) => return Outcome::Failed(Failure::Unavailable(e.to_string())),
            },
        };
        let Some(session) = identity.session() else { return Outcome::Stale };
        // Checked on every request, cached or not: expiry, activity and the password deps.
        let current = session.expires_at > Utc::now()
            && identity.user.is_active
            && crypto::constant_time_eq(session.auth_stamp.as_bytes(), identity.user.security_stamp.as_bytes());
        if !current {
            return Outcome::Stale;
        }
        let settings = csrf::CsrfSettings {
            cookie_name: &self.csrf_cookie,
            header_name: &self.csrf_header,
            trusted_origins: &self.trusted_origins,
        };
        if let Err(failure) = csrf::check(creds, &settings) {
            return Outcome::Failed(Failure::Csrf(failure.0));
        }
        Outcome::Authenticated(identity)
    }
}

impl SessionAuthenticator {
    /// The session and its user from the database, cached.
    async fn load(&self, digest: &[u8; 32]) -> Result<Option<Arc<Identity>>, sea_orm::DbErr> {
        let ticket = self.cache.ticket();
        let Some((session, user)) = sessions::lookup(&self.db, digest).await? else { return Ok(None) };
        let aal = Aal::from_parts(session.aal, session.aal_at);
        let session = SessionRef {
            id: session.id,
            public_id: session.public_id,
            last_seen: session.last_seen,
            expires_at: session.expires_at,
            auth_stamp: session.auth_stamp,
        };
        let identity = Arc::new(Identity {
            user: Arc::new(user),
            method: Method::Session,
            credential: Credential::Session(session),
            aal,
        });
        self.cache.insert(Key::Session(*digest), Arc::clone(&identity), ticket);
        Ok(Some(identity))
    }
}
