//! The login's second step and the one code check. A right password of a user with a
//! second factor opens a pending login (an ephemeral token, stored as a digest, bound to
//! the user, their security stamp, what the login issues and the device cookie outcome);
//! `POST /mfa/verify/` completes it once, with a code, within `mfa.ephemeral_ttl`.
//!
//! Codes are guesses like passwords: each attempt is counted in the same login throttle
//! before it is checked and given back when right. At the login step the bucket is the one
//! the password was counted in — the username's, or the device's for a client holding a
//! device cookie of that user (cookies are handed out only after a complete login, so a
//! password alone cannot buy a fresh budget of code guesses); logged in, the account's.
use std::future::Future;

use chrono::Utc;
use serde_json::json;

use super::{
    Accounts, WithDevice,
    login::{Passed, Pending, Purpose},
    mfa::MfaError,
};
use crate::{
    events::EventKind,
    service::{
        FieldErrors, ServiceError,
        identity::{Aal, Identity, Origin},
        jwt::Pair,
        mfa::{self, Code, records},
        users,
    },
    store::{mfa::totp, user},
    throttle::Bucket,
};

pub const INVALID_CODE: &str = "Invalid code.";
pub const USED_CODE: &str = "This code has already been used; wait for the next one.";
pub const MALFORMED_CODE: &str = "Enter a 6-digit code or a recovery code.";
pub const INVALID_EPHEMERAL: &str = "Invalid or expired token.";

/// What a completed login issued: the credential of the endpoint that started it (no
/// `Debug`: it holds secrets).
pub enum Issued {
    /// The new session's cookie value.
    Session(String),
    Token(String),
    Jwt(Pair),
}

/// Why a well-formed code was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Wrong,
    /// Right, but its time step (or a later one) was used already.
    Replayed,
}

fn invalid(field: &str, message: &str) -> ServiceError {
    ServiceError::Invalid(FieldErrors::single(field, message))
}

impl Accounts {
    /// After a right password: `None` for a user without a second factor (the login goes
    /// on), else a pending login to complete with a code.
    pub(super) async fn ask_second_factor(
        &self,
        passed: &Passed,
        purpose: Purpose,
        token_name: &str,
        origin: &Origin,
    ) -> Result<Option<Pending>, ServiceError> {
        let user = &passed.user;
        if !records::active(&self.db, user.id).await? {
            return Ok(None);
        }
        let new = records::NewChallenge {
            user_id: user.id,
            purpose: purpose.as_str(),
            token_name: token_name.to_owned(),
            device: passed.device.clone(),
            issue_device: passed.device.is_none(),
            auth_stamp: user.security_stamp.clone(),
        };
        let ephemeral_token = records::create_challenge(&self.db, new, self.mfa.ephemeral_ttl).await?;
        let ctx = origin.event(Some(user), None).with_detail(json!({"purpose": purpose.as_str()}));
        self.emit_with(EventKind::MfaChallenged, ctx).await;
        Ok(Some(Pending { ephemeral_token }))
    }

    /// `POST /mfa/verify/`: the pending login `ephemeral` names, completed by `code` (TOTP
    /// or recovery), issues what its endpoint would have, at level 2. The pending login
    /// survives a wrong code (within the throttle) and ends when it succeeds. A door that
    /// can issue one kind only (the login page: sessions) says so in `only`.
    pub async fn complete_login(
        &self,
        ephemeral: &str,
        code: &str,
        only: Option<Purpose>,
        presented: Option<&Identity>,
        origin: &Origin,
    ) -> Result<WithDevice<Issued>, MfaError> {
        let parsed = Code::parse(code);
        let found = records::find_challenge(&self.db, ephemeral, Utc::now()).await.map_err(ServiceError::from)?;
        let found = found.filter(|c| only.is_none_or(|p| p.as_str() == c.purpose));
        let pending = match found {
            Some(pending) => self.pending_user(pending).await?,
            None => None,
        };
        let mut errors = FieldErrors::default();
        if pending.is_none() {
            errors.add("ephemeral_token", INVALID_EPHEMERAL);
        }
        if parsed.is_none() {
            errors.add("code", MALFORMED_CODE);
        }
        let (Some((pending, user)), Some(code)) = (pending, parsed) else {
            return Err(ServiceError::Invalid(errors).into());
        };
        let bucket = pending.device.as_deref().map_or(Bucket::Username(&user.username), Bucket::Device);
        self.check_code(&user, &code, bucket, "login", origin).await?;
        if !records::consume_challenge(&self.db, pending.id).await.map_err(ServiceError::from)? {
            return Err(invalid("ephemeral_token", INVALID_EPHEMERAL).into());
        }
        self.verified(&user, &code, "login", origin).await;
        let aal = Aal::two(Utc::now());
        let purpose = Purpose::parse(&pending.purpose).unwrap_or(Purpose::Session);
        let issued = match purpose {
            Purpose::Session => Issued::Session(self.open_session(&user, presented, aal, origin).await?),
            Purpose::Token => Issued::Token(self.create_token_with(&user, &pending.token_name, aal, origin).await?),
            Purpose::Jwt => Issued::Jwt(self.issue_jwt(&user, aal, origin).await?),
        };
        let device = pending.issue_device.then(|| self.devices.issue(&user.username));
        Ok(WithDevice { value: issued, device })
    }

    /// The pending login's user, while they are active and their password unchanged.
    async fn pending_user(
        &self,
        pending: crate::store::mfa::challenge::Model,
    ) -> Result<Option<(crate::store::mfa::challenge::Model, user::Model)>, ServiceError> {
        let user = users::find_by_id(&self.db, pending.user_id).await?;
        Ok(user.filter(|u| u.is_active && u.security_stamp == pending.auth_stamp).map(|u| (pending, u)))
    }

    /// A code as typed, or the field error.
    pub(super) fn parse_code(raw: &str) -> Result<Code, ServiceError> {
        Code::parse(raw).ok_or_else(|| invalid("code", MALFORMED_CODE))
    }

    /// Checks a code of a user whose TOTP is active, counted in `bucket` (and the client
    /// IP's). A refusal is a security event; a success is recorded by the caller once what
    /// it unlocks is done (`verified`).
    pub(super) async fn check_code(
        &self,
        user: &user::Model,
        code: &Code,
        bucket: Bucket<'_>,
        purpose: &'static str,
        origin: &Origin,
    ) -> Result<(), MfaError> {
        let outcome = async {
            match code {
                Code::Totp(digits) => self.totp_matches(user, digits).await,
                Code::Recovery(normalised) => {
                    Ok(match records::use_recovery_code(&self.db, user.id, normalised).await? {
                        true => Ok(()),
                        false => Err(Refusal::Wrong),
                    })
                }
            }
        };
        self.attempt(user, code.method(), bucket, purpose, origin, outcome).await.map(|_| ())
    }

    /// The first code of a pending setup: the step it belongs to.
    pub(super) async fn check_pending(
        &self,
        user: &user::Model,
        row: &totp::Model,
        digits: &str,
        origin: &Origin,
    ) -> Result<i64, MfaError> {
        let outcome = async {
            let secret = self.open_secret(user, row)?;
            Ok(step_of(&secret, digits).ok_or(Refusal::Wrong))
        };
        self.attempt(user, "totp", Bucket::Account(user.id), "activate", origin, outcome).await
    }

    /// Counts the attempt before `check` runs, gives it back when right; refusals are events
    /// and field errors. A fault of the server (no key, the database) is not the user's.
    async fn attempt<T>(
        &self,
        user: &user::Model,
        method: &'static str,
        bucket: Bucket<'_>,
        purpose: &'static str,
        origin: &Origin,
        check: impl Future<Output = Result<Result<T, Refusal>, ServiceError>>,
    ) -> Result<T, MfaError> {
        let reservation = self.reserve(bucket, &user.username, origin).await?.map_err(MfaError::Throttled)?;
        match check.await {
            Ok(Ok(value)) => {
                self.give_back(reservation).await?;
                Ok(value)
            }
            Ok(Err(refusal)) => {
                let (reason, message) = match refusal {
                    Refusal::Wrong => ("wrong", INVALID_CODE),
                    Refusal::Replayed => ("replayed", USED_CODE),
                };
                let detail = json!({"method": method, "purpose": purpose, "reason": reason});
                self.emit_with(EventKind::MfaFailed, origin.event(Some(user), None).with_detail(detail)).await;
                Err(invalid("code", message).into())
            }
            Err(e) => {
                self.give_back(reservation).await?;
                Err(e.into())
            }
        }
    }

    /// A TOTP code against the user's active secret; its step is then spent.
    async fn totp_matches(&self, user: &user::Model, digits: &str) -> Result<Result<(), Refusal>, ServiceError> {
        let Some(row) = records::find(&self.db, user.id).await?.filter(|r| r.confirmed_at.is_some()) else {
            return Ok(Err(Refusal::Wrong));
        };
        let secret = self.open_secret(user, &row)?;
        let Some(step) = step_of(&secret, digits) else { return Ok(Err(Refusal::Wrong)) };
        Ok(match records::use_step(&self.db, row.id, step).await? {
            true => Ok(()),
            false => Err(Refusal::Replayed),
        })
    }

    fn open_secret(&self, user: &user::Model, row: &totp::Model) -> Result<Vec<u8>, ServiceError> {
        let key = self.mfa.key()?;
        key.open(user.id, &row.secret).ok_or_else(|| {
            ServiceError::Unavailable(format!(
                "the TOTP secret of user {} was sealed under MFA key {} and does not open with key {}",
                user.id,
                row.key_id,
                key.id()
            ))
        })
    }

    /// Records an accepted code (after what it unlocked was written: the event also drops the
    /// user's cached credentials, whose level may have changed).
    pub(super) async fn verified(&self, user: &user::Model, code: &Code, purpose: &'static str, origin: &Origin) {
        let (kind, mut detail) = match code {
            Code::Totp(_) => (EventKind::MfaVerified, json!({"method": "totp", "purpose": purpose})),
            Code::Recovery(_) => {
                (EventKind::MfaRecoveryCodeUsed, json!({"method": "recovery_code", "purpose": purpose}))
            }
        };
        if matches!(code, Code::Recovery(_)) {
            let left = records::recovery_codes_left(&self.db, user.id).await.unwrap_or_default();
            detail["left"] = json!(left);
        }
        self.emit_with(kind, origin.event(Some(user), None).with_detail(detail)).await;
    }
}

/// The time step `digits` belongs to for `secret`, now.
fn step_of(secret: &[u8], digits: &str) -> Option<i64> {
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    mfa::check(secret, digits, now).and_then(|step| i64::try_from(step).ok())
}
