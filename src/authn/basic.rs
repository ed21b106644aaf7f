//! DRF's `BasicAuthentication`: `Authorization: Basic base64(username:password)`, with
//! DRF's messages. The password check is the login one: argon2 off the async workers, the
//! dummy hash for unknown users, and the same failure throttle as `/login/`. Users with a
//! second factor are refused: Basic has no way to ask for the code.
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;

use super::{Authenticator, Credential, Credentials, Deps, Failure, Identity, Method, Outcome};
use crate::{
    error::second_factor_body,
    service::{
        accounts::{Accounts, LoginError},
        identity::Aal,
    },
};

pub const INVALID: &str = "Invalid username/password.";

pub struct BasicAuthenticator {
    accounts: Accounts,
}

impl BasicAuthenticator {
    pub fn new(deps: &Deps) -> Self {
        Self { accounts: deps.accounts.clone() }
    }
}

fn failed(detail: &str) -> Outcome {
    Outcome::Failed(Failure::Credentials(detail.to_owned()))
}

/// base64, then UTF-8 falling back to latin-1, split at the first colon (DRF).
fn decode(raw: &[u8]) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    let text = String::from_utf8(bytes.clone()).unwrap_or_else(|_| bytes.iter().map(|&b| b as char).collect());
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

#[async_trait]
impl Authenticator for BasicAuthenticator {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn challenge(&self) -> Option<String> {
        Some("Basic realm=\"api\"".to_owned())
    }

    async fn authenticate(&self, creds: &Credentials) -> Outcome {
        let Some(parts) = creds.authorization_parts() else { return Outcome::NotMine };
        if !parts[0].eq_ignore_ascii_case(b"basic") {
            return Outcome::NotMine;
        }
        let raw = match parts.as_slice() {
            [_] => return failed("Invalid basic header. No credentials provided."),
            [_, raw] => raw,
            _ => return failed("Invalid basic header. Credentials string should not contain spaces."),
        };
        let Some((username, password)) = decode(raw) else {
            return failed("Invalid basic header. Credentials not correctly base64 encoded.");
        };
        match self.accounts.authenticate_basic(&username, &password, &creds.origin()).await {
            // A Basic client sends its password on every request: no device cookie for it.
            Ok(user) => Outcome::Authenticated(Arc::new(Identity {
                user: Arc::new(user),
                method: Method::Basic,
                credential: Credential::Basic,
                aal: Aal::ONE,
            })),
            Err(LoginError::Invalid) => failed(INVALID),
            // Basic cannot carry a code: a user with a second factor must log in another way.
            Err(LoginError::SecondFactorRequired) => Outcome::Failed(Failure::Detailed(second_factor_body())),
            Err(LoginError::Throttled(wait)) => Outcome::Failed(Failure::Throttled(wait)),
            Err(LoginError::Unverified) => Outcome::Failed(Failure::EmailNotVerified),
            Err(LoginError::Service(e)) => Outcome::Failed(Failure::Unavailable(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_as_drf() {
        assert_eq!(decode(b"am9objpwYTpzcw=="), Some(("john".into(), "pa:ss".into())));
        assert_eq!(decode(b"bm9jb2xvbg=="), None);
        assert_eq!(decode(b"!!!"), None);
        // latin-1 fallback: "j\xe9:x"
        assert_eq!(decode(b"auk6eA=="), Some(("j\u{e9}".into(), "x".into())));
    }
}
