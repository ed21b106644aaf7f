//! What handlers receive about the caller: [`Authed`] where the view's policy lets only
//! authenticated requests through, [`MaybeAuthed`] where anonymous ones get through too.
//! Both carry what the authentication middleware resolved (`auth::Caller`); neither
//! documents anything — the spec's security comes from the policy table (`policy`).
use std::{ops::Deref, sync::Arc};

use poem::{Request, RequestBody};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::auth::Caller;
use crate::{
    authn::{Credentials, Identity, csrf},
    config::Settings,
    error::{ApiError, NOT_AUTHENTICATED},
    service::identity::Origin,
};

fn caller(req: &Request) -> Result<Caller, ApiError> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("no authentication policy for {}", req.uri().path())))
}

/// An authenticated caller.
pub struct Authed {
    pub identity: Arc<Identity>,
    pub creds: Arc<Credentials>,
}

impl Authed {
    pub fn origin(&self) -> Origin {
        self.creds.origin()
    }
}

impl Deref for Authed {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.identity
    }
}

impl<'a> ApiExtractor<'a> for Authed {
    const TYPES: &'static [ApiExtractorType] = &[];
    type ParamType = ();
    type ParamRawType = ();

    /// Only reached anonymously on a view whose permission lets anonymous callers in
    /// (`auth.default_permission = "allow_any"` on `/protected/`): DRF's `NotAuthenticated`.
    async fn from_request(req: &'a Request, _: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let Caller { identity, creds } = caller(req)?;
        let identity =
            identity.ok_or_else(|| ApiError::Unauthenticated { detail: NOT_AUTHENTICATED.into(), challenge: None })?;
        Ok(Self { identity, creds })
    }
}

/// A caller who may be anonymous (bad credentials were refused all the same).
pub struct MaybeAuthed {
    pub identity: Option<Arc<Identity>>,
    pub creds: Arc<Credentials>,
}

impl MaybeAuthed {
    pub fn origin(&self) -> Origin {
        self.creds.origin()
    }

    /// Login CSRF: DRF never checks anonymous POSTs, so a foreign page could sign a victim
    /// into the attacker's account. On login and registration a present `Origin` must be
    /// ours or trusted.
    pub fn refuse_foreign_origin(&self, settings: &Settings) -> Result<(), ApiError> {
        match &self.creds.origin {
            Some(origin) if !csrf::origin_verified(&self.creds, origin, &settings.csrf.trusted_origins) => {
                Err(ApiError::PermissionDenied(format!(
                    "CSRF Failed: Origin checking failed - {origin} does not match any trusted origins."
                )))
            }
            _ => Ok(()),
        }
    }
}

impl<'a> ApiExtractor<'a> for MaybeAuthed {
    const TYPES: &'static [ApiExtractorType] = &[];
    type ParamType = ();
    type ParamRawType = ();

    async fn from_request(req: &'a Request, _: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let Caller { identity, creds } = caller(req)?;
        Ok(Self { identity, creds })
    }
}
