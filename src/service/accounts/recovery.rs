//! What account recovery by email shares ([`reset`](super::reset),
//! [`verification`](super::verification)): the mailer and its queue, the stateless tokens,
//! the per-address and per-IP throttle, the letters and their links.
//!
//! A request for a mail does the same work whatever the address: check its form, count it
//! in the throttle, queue a job. Finding the account, making the token and talking to the
//! mail server happen in the job, off the request path; so the answer, and its timing, say
//! nothing of whether an account has the address, and a mail server that is down or slow
//! is a logged, counted failure, never a slow or failed answer.
use std::sync::Arc;

use super::Accounts;
use crate::{
    config::{EmailVerification, Settings},
    mail::{Letter, Mailer, outbox::Outbox},
    metrics::{MailLabels, Metrics},
    service::{
        FieldErrors, ServiceError,
        email_tokens::{EmailTokens, encode_uid},
        identity::Origin,
        throttles::{Repeats, record_throttled},
        users,
    },
    store::user,
    throttle::EmailThrottle,
};

pub const INVALID_EMAIL: &str = "Enter a valid email address.";
/// Django's `EmailField` max_length.
const MAX_EMAIL: usize = 254;
pub(super) const RESET: &str = "password_reset";
pub(super) const VERIFY: &str = "email_verification";

/// Why a request for a mail was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// Too many requests for this address or from this client.
    #[error("throttled for {0} seconds")]
    Throttled(u64),
    /// Not an email address (`{"email": [...]}`), or the throttle store is down.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The collaborators, built at start-up.
pub struct RecoveryParts {
    pub mailer: Mailer,
    pub outbox: Outbox,
    pub tokens: EmailTokens,
    pub throttle: EmailThrottle,
    pub metrics: Arc<Metrics>,
}

pub struct Recovery {
    pub(super) mailer: Mailer,
    pub(super) outbox: Outbox,
    pub(super) tokens: EmailTokens,
    throttle: EmailThrottle,
    /// Throttled requests already in the audit trail this window.
    repeats: Repeats,
    metrics: Arc<Metrics>,
    reset_url: String,
    verify_url: String,
    pub(super) verification: EmailVerification,
}

impl Recovery {
    pub fn new(parts: RecoveryParts, settings: &Settings) -> Self {
        Self {
            repeats: Repeats::new(parts.throttle.period()),
            mailer: parts.mailer,
            outbox: parts.outbox,
            tokens: parts.tokens,
            throttle: parts.throttle,
            metrics: parts.metrics,
            reset_url: settings.email.password_reset_url.clone(),
            verify_url: settings.email.verify_email_url.clone(),
            verification: settings.account.email_verification,
        }
    }

    /// Django's `password_reset_email.html`, in plain text.
    pub(super) fn reset_letter(&self, user: &user::Model, token: &str) -> Letter {
        let link = self.reset_url.replace("{uid}", &encode_uid(user.id)).replace("{token}", token);
        let site = site_name(&self.reset_url);
        Letter {
            to: user.email.clone(),
            subject: format!("Password reset on {site}"),
            body: format!(
                "You're receiving this email because you requested a password reset for your user account at \
                 {site}.\n\nPlease go to the following page and choose a new password:\n\n{link}\n\nYour username, \
                 in case you've forgotten: {}\n\nIf you did not ask for this, ignore this email: your password \
                 stays as it is.\n\nThe {site} team\n",
                user.username
            ),
        }
    }

    /// allauth's `email_confirmation_message.txt`, in plain text.
    pub(super) fn verification_letter(&self, user: &user::Model, key: &str) -> Letter {
        let link = self.verify_url.replace("{key}", key);
        let site = site_name(&self.verify_url);
        Letter {
            to: user.email.clone(),
            subject: format!("Please confirm your email address on {site}"),
            body: format!(
                "Hello from {site}!\n\nYou're receiving this email because user {} has given your email address \
                 to register an account on {site}.\n\nTo confirm this is correct, go to:\n\n{link}\n\nThe {site} \
                 team\n",
                user.username
            ),
        }
    }
}

/// The host (and port) the links point at: what the team's users know the site by.
fn site_name(template: &str) -> String {
    let probe = template.replace(['{', '}'], "");
    url::Url::parse(&probe)
        .ok()
        .and_then(|u| u.host_str().map(|h| u.port().map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))))
        .unwrap_or_else(|| "portcullis".to_owned())
}

impl Accounts {
    /// The request-path half of every mail request: the address's form (Django's
    /// `EmailField`), then the throttles. Returns the normalised address.
    pub(super) async fn mail_request(&self, email: &str, origin: &Origin) -> Result<String, RecoveryError> {
        let address = users::normalize_email(email)
            .filter(|a| a.chars().count() <= MAX_EMAIL)
            .ok_or_else(|| ServiceError::Invalid(FieldErrors::single("email", INVALID_EMAIL)))?;
        let taken = self.mail.throttle.take(&address, origin.ip).await;
        match taken.map_err(|e| ServiceError::Unavailable(e.to_string()))? {
            Ok(()) => Ok(address),
            Err(full) => {
                let ctx = async { origin.event(None, None) };
                record_throttled(&self.events, &self.mail.repeats, &full.bucket, "email", full.wait, ctx).await;
                Err(RecoveryError::Throttled(full.wait))
            }
        }
    }

    /// Sends one letter, off the request path; a failure is logged and counted, never raised.
    pub(super) async fn deliver(&self, kind: &'static str, user: &user::Model, letter: &Letter) -> bool {
        let result = self.mail.mailer.send(letter).await;
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        self.mail.metrics.emails.get_or_create(&MailLabels { kind, outcome }).inc();
        match &result {
            Ok(()) => tracing::info!(kind, user_id = user.id, "mail sent"),
            Err(e) => tracing::warn!(kind, user_id = user.id, error = %e, "could not send a mail"),
        }
        result.is_ok()
    }

    /// A job's own failure to read the database: as a failed mail.
    pub(super) fn job_failed(&self, kind: &'static str, error: &ServiceError) {
        self.mail.metrics.emails.get_or_create(&MailLabels { kind, outcome: "failed" }).inc();
        tracing::warn!(kind, %error, "could not prepare a mail");
    }

    /// The mailer, for `sendtestemail`.
    pub fn mailer(&self) -> &Mailer {
        &self.mail.mailer
    }

    /// Waits until every mail queued so far has been sent or given up (tests, CLI exit).
    pub async fn flush_mail(&self) {
        self.mail.outbox.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::site_name;

    #[test]
    fn the_site_is_the_links_host() {
        assert_eq!(site_name("https://app.example.com/reset/{uid}/{token}/"), "app.example.com");
        assert_eq!(site_name("http://localhost:3000/verify/{key}"), "localhost:3000");
        assert_eq!(site_name("{key}"), "portcullis");
    }
}
