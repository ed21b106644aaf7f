//! `[email]` and `[account]`: account recovery by email (password reset, verification).
use serde::Deserialize;

use super::{ConfigError, EmailBackend, EmailVerification, Rate, Secret, invalid, values};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub backend: EmailBackend,
    /// `smtp://host:port` (STARTTLS with `?tls=required`) or `smtps://user:pass@host:port`.
    pub smtp_url: Secret,
    /// Django's `DEFAULT_FROM_EMAIL`.
    pub from: String,
    /// Seconds for connecting and for each SMTP command; a whole mail gets twice this.
    pub timeout: u64,
    /// Link templates: `{uid}` and `{token}`, `{key}`.
    pub password_reset_url: String,
    pub verify_email_url: String,
    /// Django's `PASSWORD_RESET_TIMEOUT`, seconds.
    pub password_reset_timeout: u64,
    /// Mails waiting to be sent; beyond, new ones are dropped (and counted).
    pub queue_capacity: usize,
    #[serde(deserialize_with = "values::optional_rate")]
    pub throttle_address: Option<Rate>,
    #[serde(deserialize_with = "values::optional_rate")]
    pub throttle_ip: Option<Rate>,
}

impl Email {
    /// The mail timeout as a duration.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub email_verification: EmailVerification,
    /// Seconds a verification link stays valid (allauth's `EMAIL_CONFIRMATION_EXPIRE_DAYS`).
    pub email_verification_timeout: u64,
}

impl Email {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "email.from",
                format!("{:?} is not an address like \"Name <a@example.com>\"", self.from),
            ));
        }
        if self.backend == EmailBackend::Smtp {
            let scheme = url::Url::parse(self.smtp_url.expose()).map(|u| u.scheme().to_owned());
            if !matches!(scheme.as_deref(), Ok("smtp" | "smtps")) {
                return Err(invalid("email.smtp_url", "needs smtp://host:port or smtps://user:pass@host:port"));
            }
        }
        for (key, template, placeholders) in [
            ("email.password_reset_url", &self.password_reset_url, &["{uid}", "{token}"][..]),
            ("email.verify_email_url", &self.verify_email_url, &["{key}"][..]),
        ] {
            if let Some(missing) = placeholders.iter().find(|p| !template.contains(**p)) {
                return Err(invalid(key, format!("{template:?} has no {missing} placeholder")));
            }
        }
        let above_zero = [
            ("email.timeout", self.timeout),
            ("email.password_reset_timeout", self.password_reset_timeout),
            ("email.queue_capacity", self.queue_capacity as u64),
        ];
        match above_zero.into_iter().find(|(_, value)| *value == 0) {
            Some((key, _)) => Err(invalid(key, "must be above 0")),
            None => Ok(()),
        }
    }
}

impl Account {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.email_verification_timeout == 0 {
            return Err(invalid("account.email_verification_timeout", "must be above 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    #[test]
    fn email_settings_are_checked_by_name() {
        let mut settings = Settings::defaults().unwrap();
        settings.email.password_reset_url = "https://app.example.com/reset/{uid}/".into();
        assert!(settings.validate().unwrap_err().to_string().contains("{token}"));
        let mut settings = Settings::defaults().unwrap();
        settings.email.from = "not an address".into();
        assert!(settings.validate().unwrap_err().to_string().contains("email.from"));
        let mut settings = Settings::defaults().unwrap();
        settings.email.backend = crate::config::EmailBackend::Smtp;
        settings.email.smtp_url = crate::config::Secret::new("http://mail.example.com");
        assert!(settings.validate().unwrap_err().to_string().contains("email.smtp_url"));
    }
}
