//! Email verification (`account.email_verification`, django-allauth's): a mail with a link
//! after registration and on request, and the link's key marking the address verified. Under
//! "mandatory" the password check refuses unverified users (`login`).
use chrono::Utc;
use serde_json::json;

use super::{
    Accounts,
    recovery::{RecoveryError, VERIFY},
};
use crate::{
    config::EmailVerification,
    events::EventKind,
    service::{ServiceError, email_tokens::EmailTokens, identity::Origin, users},
    store::user,
};

impl Accounts {
    /// After a registration: a verification mail, queued, when the setting asks for one and
    /// the user gave an address not known to be theirs already.
    pub(super) fn after_registration(&self, user: &user::Model, origin: &Origin) {
        if self.mail.verification == EmailVerification::None || user.email.is_empty() || user.email_verified {
            return;
        }
        let (this, user, origin) = (self.clone(), user.clone(), origin.clone());
        self.mail.outbox.submit(VERIFY, async move { this.send_verification(&user, &origin).await });
    }

    /// `POST /registration/resend-email/`: the same answer, after the same work, for every
    /// address; a mail goes (from the queue) to each active user with that unverified email.
    pub async fn resend_verification(&self, email: &str, origin: &Origin) -> Result<(), RecoveryError> {
        let address = self.mail_request(email, origin).await?;
        let (this, origin) = (self.clone(), origin.clone());
        self.mail.outbox.submit(VERIFY, async move { this.send_verifications(&address, &origin).await });
        Ok(())
    }

    async fn send_verifications(&self, address: &str, origin: &Origin) {
        match users::active_with_email(&self.db, address).await {
            Ok(found) => {
                for user in found.into_iter().filter(|u| !u.email_verified) {
                    self.send_verification(&user, origin).await;
                }
            }
            Err(e) => self.job_failed(VERIFY, &e),
        }
    }

    async fn send_verification(&self, user: &user::Model, origin: &Origin) {
        let letter = self.mail.verification_letter(user, &self.mail.tokens.verification_key(user, Utc::now()));
        let sent = self.deliver(VERIFY, user, &letter).await;
        let detail = json!({"mail": if sent { "sent" } else { "failed" }});
        self.emit_with(EventKind::EmailVerificationSent, origin.event(Some(user), None).with_detail(detail)).await;
    }

    /// `POST /registration/verify-email/`: `NotFound` for a key that is malformed, forged,
    /// expired, for another address than the user's current one, or already used.
    pub async fn verify_email(&self, key: &str, origin: &Origin) -> Result<user::Model, ServiceError> {
        let not_found = || ServiceError::NotFound("no such verification key".into());
        let parsed = EmailTokens::parse_verification_key(key).ok_or_else(not_found)?;
        let user = users::find_by_id(&self.db, parsed.user_id).await?.ok_or_else(not_found)?;
        let valid = !user.email.is_empty()
            && !user.email_verified
            && self.mail.tokens.check_verification_key(&user, &parsed, Utc::now());
        // The update checks the flag again: of two uses at once, one wins.
        if !valid || !users::mark_email_verified(&self.db, user.id, &user.email).await? {
            return Err(not_found());
        }
        let user = user::Model { email_verified: true, ..user };
        let ctx = origin.event(Some(&user), None).with_detail(json!({"email": user.email}));
        self.emit_with(EventKind::EmailVerified, ctx).await;
        Ok(user)
    }

    /// Under "mandatory", whether `user` may not log in yet.
    pub(super) fn unverified(&self, user: &user::Model) -> bool {
        self.mail.verification == EmailVerification::Mandatory && !user.email_verified
    }
}
