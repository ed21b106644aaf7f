//! Password changes. Whoever asks — the user over HTTP (old password first), an operator
//! with `changepassword`, a reset link (`reset`) — a new password means the same thing: a new
//! hash and security stamp, every session, token and refresh token of the user ended (but
//! the credential the user is changing it with, when it is theirs), one audit event.
use super::{Accounts, LoginError};
use crate::{
    events::EventKind,
    service::{
        FieldErrors, ServiceError,
        identity::{Identity, Method, Origin},
        jwt, sessions, tokens,
        users::{self, Checked},
    },
    store::user,
    throttle::Bucket,
};

pub const WRONG_OLD_PASSWORD: &str = "Your old password was entered incorrectly. Please enter it again.";

/// Why `POST /password/change/` refused.
#[derive(Debug, thiserror::Error)]
pub enum PasswordChangeError {
    /// Too many failed password checks for this user or client.
    #[error("throttled for {0} seconds")]
    Throttled(u64),
    /// A field map: the old password is wrong, or the new one fails a validator (under
    /// `new_password`).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What survives a password change: the credential the user changed it with.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Keep {
    session: Option<i64>,
    token: Option<i64>,
}

impl Accounts {
    /// The user changes their own password: the old one is checked as a login is (same
    /// throttle). Their other credentials end; the session they used goes on under a new
    /// key (Django's `update_session_auth_hash`), returned for the new cookie.
    pub async fn change_password(
        &self,
        identity: &Identity,
        old: &str,
        new: String,
        origin: &Origin,
    ) -> Result<Option<String>, PasswordChangeError> {
        let user = &identity.user;
        self.require_step_up(identity).await?;
        // The user's own budget, not the username's: others' failed logins cannot stop it.
        match self.check_password(Bucket::Account(user.id), &user.username, old, origin).await {
            Ok(Checked::Valid(_)) => {}
            Ok(Checked::Invalid { .. })
            | Err(LoginError::Invalid | LoginError::Unverified | LoginError::SecondFactorRequired) => {
                return Err(ServiceError::Invalid(FieldErrors::single("old_password", WRONG_OLD_PASSWORD)).into());
            }
            Err(LoginError::Throttled(wait)) => return Err(PasswordChangeError::Throttled(wait)),
            Err(LoginError::Service(e)) => return Err(e.into()),
        }
        let keep = Keep {
            session: identity.session().filter(|_| identity.method == Method::Session).map(|s| s.id),
            token: identity.token_id(),
        };
        let (_, key) = self.replace_password((**user).clone(), new, keep, origin).await.map_err(|e| match e {
            ServiceError::Invalid(errors) => ServiceError::Invalid(errors.renamed("password", "new_password")),
            other => other,
        })?;
        Ok(key)
    }

    /// An operator sets a user's password (`changepassword`): every credential of theirs ends.
    pub async fn set_password(
        &self,
        username: &str,
        new: String,
        origin: &Origin,
    ) -> Result<user::Model, ServiceError> {
        let user = self.user(username).await?;
        Ok(self.replace_password(user, new, Keep::default(), origin).await?.0)
    }

    /// The one meaning of a new password. Validators report under "password".
    pub(super) async fn replace_password(
        &self,
        user: user::Model,
        new: String,
        keep: Keep,
        origin: &Origin,
    ) -> Result<(user::Model, Option<String>), ServiceError> {
        let user = users::set_password(&self.db, &self.passwords, user, new).await?;
        sessions::delete_for_user(&self.db, user.id, keep.session).await?;
        tokens::delete_for_user_except(&self.db, user.id, keep.token).await?;
        jwt::blacklist_user(&self.db, user.id).await?;
        let key = match keep.session {
            Some(id) => {
                Some(sessions::cycle_key(&self.db, id, Some(&user.security_stamp), self.session_age, None).await?)
            }
            None => None,
        };
        self.emit(EventKind::PasswordChanged, origin, Some(&user), None).await;
        Ok((user, key))
    }
}
