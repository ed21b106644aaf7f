//! "Forgot password": dj-rest-auth's `PasswordResetView` and `PasswordResetConfirmView`, with
//! Django's token (`service::email_tokens`). The new password goes through the one password
//! change (`replace_password`): every session, token and JWT of the user ends.
use chrono::Utc;
use serde_json::json;

use super::{
    Accounts,
    password::Keep,
    recovery::{RESET, RecoveryError},
};
use crate::{
    events::EventKind,
    service::{FieldErrors, ServiceError, email_tokens::decode_uid, identity::Origin, users},
    store::user,
};

/// dj-rest-auth's message for a uid or token that is not (or no longer) valid.
pub const INVALID_VALUE: &str = "Invalid value";
/// Django's `SetPasswordForm` message.
pub const MISMATCH: &str = "The two password fields didn\u{2019}t match.";

/// What a reset link's page posts back.
#[derive(Debug, Clone)]
pub struct ResetConfirmation {
    pub uid: String,
    pub token: String,
    pub new_password1: String,
    pub new_password2: String,
}

impl Accounts {
    /// `POST /password/reset/`: the same answer, after the same work, for every address; a
    /// mail goes (from the queue) to each active user with that email and a usable password.
    pub async fn request_password_reset(&self, email: &str, origin: &Origin) -> Result<(), RecoveryError> {
        let address = self.mail_request(email, origin).await?;
        let (this, origin) = (self.clone(), origin.clone());
        self.mail.outbox.submit(RESET, async move { this.send_reset_mails(&address, &origin).await });
        Ok(())
    }

    /// The queued half: Django's `PasswordResetForm.save`. Recorded either way; an unknown
    /// address is recorded without the address.
    async fn send_reset_mails(&self, address: &str, origin: &Origin) {
        let found = match users::active_with_email(&self.db, address).await {
            Ok(found) => found,
            Err(e) => return self.job_failed(RESET, &e),
        };
        if found.is_empty() {
            let ctx = origin.event(None, None).with_detail(json!({"address_known": false}));
            self.emit_with(EventKind::PasswordResetRequested, ctx).await;
        }
        for user in found {
            let letter = self.mail.reset_letter(&user, &self.mail.tokens.reset_token(&user, Utc::now()));
            let sent = self.deliver(RESET, &user, &letter).await;
            let detail = json!({"mail": if sent { "sent" } else { "failed" }});
            self.emit_with(EventKind::PasswordResetRequested, origin.event(Some(&user), None).with_detail(detail))
                .await;
        }
    }

    /// `POST /password/reset/confirm/`: checks the uid, then the token, then the new password
    /// (twice, then Django's validators, reported under `new_password2` as `SetPasswordForm`
    /// does). Of two confirmations racing with one link, one wins: the other's token is stale.
    pub async fn confirm_password_reset(
        &self,
        confirmation: ResetConfirmation,
        origin: &Origin,
    ) -> Result<user::Model, ServiceError> {
        let invalid = |field: &str| ServiceError::Invalid(FieldErrors::single(field, INVALID_VALUE));
        let user = match decode_uid(&confirmation.uid) {
            Some(id) => users::find_by_id(&self.db, id).await?,
            None => None,
        };
        let user = user.ok_or_else(|| invalid("uid"))?;
        // Links go to active users only; one deactivated since must not get back in by it.
        if !user.is_active || !self.mail.tokens.check_reset_token(&user, &confirmation.token, Utc::now()) {
            return Err(invalid("token"));
        }
        if confirmation.new_password1 != confirmation.new_password2 {
            return Err(ServiceError::Invalid(FieldErrors::single("new_password2", MISMATCH)));
        }
        let (user, _) = self
            .replace_password(user, confirmation.new_password2, Keep::default(), origin)
            .await
            .map_err(|e| match e {
                ServiceError::Invalid(errors) => ServiceError::Invalid(errors.renamed("password", "new_password2")),
                ServiceError::Conflict(_) => invalid("token"),
                other => other,
            })?;
        self.emit(EventKind::PasswordResetCompleted, origin, Some(&user), None).await;
        Ok(user)
    }
}
