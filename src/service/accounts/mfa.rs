//! The second factor's use cases: enrolment (setup, activation with a first code, recovery
//! codes), deactivation, step-up, and the rule every sensitive action applies
//! ([`Accounts::require_step_up`]). Codes are checked in `challenge`.
//!
//! The command line is an operator on the server, not a user: its commands (a new password,
//! a token, `disable_mfa`) need no second factor.
use chrono::{DateTime, Duration, Utc};

use super::Accounts;
use crate::{
    config,
    events::EventKind,
    service::{
        FieldErrors, ServiceError,
        identity::{Aal, Credential, Identity, Origin},
        mfa::{self, Code, Provisioning, key::MfaKey, records},
        sessions, tokens,
    },
    store::user,
    throttle::Bucket,
};

pub const NOT_ACTIVE: &str = "TOTP is not active.";
pub const ALREADY_ACTIVE: &str = "TOTP is already active; deactivate it first.";
pub const NO_SETUP: &str = "No TOTP setup to confirm: call POST /mfa/totp/setup/ first.";
pub const TOTP_ONLY: &str = "Enter the 6-digit code your authenticator app shows.";
const NO_KEY: &str = "no MFA key is configured (mfa.key or mfa.key_file)";

/// The settings and key the second factor works with.
pub struct SecondFactor {
    pub(super) key: Option<MfaKey>,
    issuer: String,
    pub(super) ephemeral_ttl: Duration,
    step_up_age: Duration,
}

impl SecondFactor {
    pub fn new(key: Option<MfaKey>, settings: &config::Mfa) -> Self {
        Self {
            key,
            issuer: settings.issuer.clone(),
            ephemeral_ttl: settings.ephemeral_ttl(),
            step_up_age: settings.step_up_age(),
        }
    }

    pub(super) fn key(&self) -> Result<&MfaKey, ServiceError> {
        self.key.as_ref().ok_or_else(|| ServiceError::Unavailable(NO_KEY.into()))
    }
}

/// Why a code was not accepted, beyond a field error.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// Too many failed codes (or passwords) for this user or client.
    #[error("throttled for {0} seconds")]
    Throttled(u64),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// `GET /mfa/`.
#[derive(Debug, Clone, Copy)]
pub struct MfaStatus {
    pub totp: bool,
    pub recovery_codes_left: u64,
}

/// A credential raised to level 2 at `at`. An access JWT cannot change: a JWT caller gets a
/// new access token at level 2 instead.
#[derive(Debug, Clone)]
pub struct Stepped {
    pub at: DateTime<Utc>,
    pub access: Option<String>,
}

fn invalid(field: &str, message: &str) -> ServiceError {
    ServiceError::Invalid(FieldErrors::single(field, message))
}

impl Accounts {
    pub async fn mfa_status(&self, user: &user::Model) -> Result<MfaStatus, ServiceError> {
        let totp = records::active(&self.db, user.id).await?;
        let recovery_codes_left = if totp { records::recovery_codes_left(&self.db, user.id).await? } else { 0 };
        Ok(MfaStatus { totp, recovery_codes_left })
    }

    /// `POST /mfa/totp/setup/`: a new secret, pending until a first code confirms it (a
    /// second setup replaces a pending one). Refused while a TOTP is active.
    pub async fn totp_setup(&self, identity: &Identity) -> Result<Provisioning, ServiceError> {
        let user = &identity.user;
        if records::active(&self.db, user.id).await? {
            return Err(invalid("non_field_errors", ALREADY_ACTIVE));
        }
        let key = self.mfa.key()?;
        let secret = mfa::new_secret();
        let sealed = key.seal(user.id, &secret).ok_or_else(|| ServiceError::Unavailable("sealing failed".into()))?;
        if !records::save_pending(&self.db, user.id, sealed, key.id()).await? {
            return Err(ServiceError::Conflict("Another TOTP setup of this account was confirmed meanwhile."));
        }
        mfa::provisioning(&secret, &self.mfa.issuer, &user.username).map_err(ServiceError::Unavailable)
    }

    /// `POST /mfa/totp/activate/`: a first code confirms the pending secret; the user gets
    /// their recovery codes (shown once), and the credential that proved the code counts as
    /// level 2 now.
    pub async fn totp_activate(
        &self,
        identity: &Identity,
        code: &str,
        origin: &Origin,
    ) -> Result<(Vec<String>, Stepped), MfaError> {
        let user = &identity.user;
        let row = match records::find(&self.db, user.id).await.map_err(ServiceError::from)? {
            None => return Err(invalid("non_field_errors", NO_SETUP).into()),
            Some(row) if row.confirmed_at.is_some() => return Err(invalid("non_field_errors", ALREADY_ACTIVE).into()),
            Some(row) => row,
        };
        let code = match Self::parse_code(code)? {
            Code::Totp(code) => code,
            Code::Recovery(_) => return Err(invalid("code", TOTP_ONLY).into()),
        };
        let step = self.check_pending(user, &row, &code, origin).await?;
        if !records::confirm(&self.db, row.id, step).await.map_err(ServiceError::from)? {
            return Err(ServiceError::Conflict("This TOTP setup was confirmed meanwhile.").into());
        }
        let codes = mfa::new_recovery_codes();
        records::replace_recovery_codes(&self.db, user.id, &codes).await.map_err(ServiceError::from)?;
        let stepped = self.raise(identity).await?;
        self.emit(EventKind::MfaEnrolled, origin, Some(user), None).await;
        Ok((codes, stepped))
    }

    /// `POST /mfa/totp/deactivate/`: a code (TOTP or recovery) proves the factor now; the
    /// secret and the recovery codes are deleted.
    pub async fn totp_deactivate(&self, identity: &Identity, code: &str, origin: &Origin) -> Result<(), MfaError> {
        let user = &identity.user;
        let code = self.active_code(user, code).await?;
        self.check_code(user, &code, Bucket::Account(user.id), "deactivate", origin).await?;
        records::delete(&self.db, user.id).await.map_err(ServiceError::from)?;
        self.verified(user, &code, "deactivate", origin).await;
        self.emit(EventKind::MfaDisabled, origin, Some(user), None).await;
        Ok(())
    }

    /// `POST /mfa/recovery-codes/`: a new set; the old codes stop working.
    pub async fn regenerate_recovery_codes(
        &self,
        identity: &Identity,
        origin: &Origin,
    ) -> Result<Vec<String>, ServiceError> {
        let user = &identity.user;
        if !records::active(&self.db, user.id).await? {
            return Err(invalid("non_field_errors", NOT_ACTIVE));
        }
        self.require_step_up(identity).await?;
        let codes = mfa::new_recovery_codes();
        records::replace_recovery_codes(&self.db, user.id, &codes).await?;
        self.emit(EventKind::MfaRecoveryCodesGenerated, origin, Some(user), None).await;
        Ok(codes)
    }

    /// `POST /mfa/step-up/`: a code makes the credential of the request count as level 2,
    /// from now.
    pub async fn step_up(&self, identity: &Identity, code: &str, origin: &Origin) -> Result<Stepped, MfaError> {
        let user = &identity.user;
        let code = self.active_code(user, code).await?;
        self.check_code(user, &code, Bucket::Account(user.id), "step_up", origin).await?;
        let stepped = self.raise(identity).await?;
        // After the write: the event drops the cached credential, so the next request reads
        // the new level (a lookup racing it cannot store the old one, see `authn::cache`).
        self.verified(user, &code, "step_up", origin).await;
        Ok(stepped)
    }

    /// What a sensitive action asks of a user with a second factor: a credential that proved
    /// it within `mfa.step_up_age`. Users without one pass (a password is all they have).
    pub async fn require_step_up(&self, identity: &Identity) -> Result<(), ServiceError> {
        if identity.aal.fresh(self.mfa.step_up_age, Utc::now()) || !records::active(&self.db, identity.user.id).await? {
            return Ok(());
        }
        Err(ServiceError::SecondFactorRequired)
    }

    /// `portcullis disable_mfa`: an operator removes a user's second factor (a lost phone
    /// and lost recovery codes). Returns whether the user had one.
    pub async fn disable_mfa(&self, username: &str, origin: &Origin) -> Result<bool, ServiceError> {
        let user = self.user(username).await?;
        let had = records::delete(&self.db, user.id).await?;
        if had {
            self.emit(EventKind::MfaDisabled, origin, Some(&user), None).await;
        }
        Ok(had)
    }

    /// A well-formed code of a user whose TOTP is active.
    async fn active_code(&self, user: &user::Model, code: &str) -> Result<Code, MfaError> {
        if !records::active(&self.db, user.id).await.map_err(ServiceError::from)? {
            return Err(invalid("non_field_errors", NOT_ACTIVE).into());
        }
        Ok(Self::parse_code(code)?)
    }

    /// The credential of the request counts as level 2 from now.
    async fn raise(&self, identity: &Identity) -> Result<Stepped, ServiceError> {
        let at = Utc::now();
        let access = match &identity.credential {
            Credential::Session(session) => {
                sessions::raise(&self.db, session.id, at).await?;
                None
            }
            Credential::Token { id, .. } => {
                tokens::raise(&self.db, *id, at).await?;
                None
            }
            Credential::Jwt { .. } => Some(self.jwt.access_with(&identity.user, Aal::two(at))?),
            // Users with a second factor cannot use Basic; there is nothing to raise.
            Credential::Basic => None,
        };
        Ok(Stepped { at, access })
    }
}
