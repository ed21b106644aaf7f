//! The authenticator chain, as DRF's `DEFAULT_AUTHENTICATION_CLASSES`: tried in order, each
//! authenticator answers "not mine" (the next is tried), a user (the chain stops), or a
//! failure (the chain stops and the request is refused; later ones are not tried).
//!
//! Adding an authenticator is one module implementing [`Authenticator`] plus one line in
//! [`build`] (and its name in `config::AuthScheme`); `auth.chain` then names it. What an
//! authenticator vouches for is a `service::identity::Identity`.
pub mod basic;
pub mod cache;
pub mod csrf;
pub mod jwt;
pub mod notify;
pub mod session;
pub mod token;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;

use sea_orm::DatabaseConnection;

pub use crate::service::identity::{Credential, Identity, Method, SessionRef};
use crate::{
    config::{AuthScheme, Settings},
    metrics::{AuthLabels, Metrics},
    service::{accounts::Accounts, identity::Origin, jwt::Jwt},
};

/// What authenticators are built from.
pub struct Deps {
    pub db: DatabaseConnection,
    pub cache: Arc<cache::CredentialCache>,
    pub jwt: Arc<Jwt>,
    /// Basic checks passwords through the login use case.
    pub accounts: Accounts,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
}

/// What the transport layer collected from a request; authenticators see nothing else.
/// Its `Debug` shows which credentials are present, never their values.
#[derive(Default, Clone)]
pub struct Credentials {
    pub method: String,
    /// The raw `Authorization` header (bytes: DRF reports non-UTF-8 as invalid characters).
    pub authorization: Option<Vec<u8>>,
    pub cookies: HashMap<String, String>,
    pub origin: Option<String>,
    pub referer: Option<String>,
    /// `Host` as sent, for the same-origin check.
    pub host: Option<String>,
    /// Whether the client reached us over HTTPS (via a trusted proxy's X-Forwarded-Proto).
    pub secure: bool,
    /// The CSRF header's value (`csrf.header_name`).
    pub csrf_header: Option<String>,
    /// `csrfmiddlewaretoken` of a form-encoded body.
    pub csrf_form: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The device cookie (`throttle.device_cookie_name`), for password checks.
    pub device: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method)
            .field("authorization", &self.authorization.as_ref().map(|_| "[redacted]"))
            .field("cookies", &self.cookies.keys().collect::<Vec<_>>())
            .field("origin", &self.origin)
            .field("host", &self.host)
            .field("secure", &self.secure)
            .field("client_ip", &self.client_ip)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// GET, HEAD, OPTIONS and TRACE never need CSRF protection.
    pub fn is_safe_method(&self) -> bool {
        matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }

    /// Where the request comes from, for the audit trail and session records.
    pub fn origin(&self) -> Origin {
        Origin {
            ip: self.client_ip,
            user_agent: self.user_agent.clone(),
            via: None,
            device: self.device.clone().map(crate::config::Secret::new),
        }
    }

    /// The `Authorization` header split as DRF does (`get_authorization_header().split()`).
    pub fn authorization_parts(&self) -> Option<Vec<&[u8]>> {
        let raw = self.authorization.as_deref()?;
        let parts: Vec<&[u8]> = raw.split(|b| b.is_ascii_whitespace()).filter(|p| !p.is_empty()).collect();
        (!parts.is_empty()).then_some(parts)
    }
}

pub enum Outcome {
    NotMine,
    /// Not mine, and the credential the client holds is dead (an unknown, expired or
    /// revoked session cookie): the response tells the client to drop it.
    Stale,
    Authenticated(Arc<Identity>),
    Failed(Failure),
}

/// Why an authenticator refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// DRF's `AuthenticationFailed(detail)`: 401 or 403 by the first-authenticator rule.
    Credentials(String),
    /// Like `Credentials`, with a structured body (simplejwt's `{"detail", "code", ...}`).
    Detailed(serde_json::Value),
    /// A CSRF failure: DRF's `PermissionDenied`, always 403.
    Csrf(String),
    /// Too many failed password checks (Basic): 429.
    Throttled(u64),
    /// A right password of a user whose email must be verified first (Basic): the 400 every
    /// password door gives (`ApiError::email_not_verified`).
    EmailNotVerified,
    /// The database did not answer.
    Unavailable(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    fn name(&self) -> &'static str;
    /// The `WWW-Authenticate` value this authenticator offers, if any (DRF's
    /// `authenticate_header`); a chain whose first authenticator has none answers 403.
    fn challenge(&self) -> Option<String>;
    async fn authenticate(&self, creds: &Credentials) -> Outcome;
}

/// Builds an authenticator by its `auth.chain` name.
pub fn build(scheme: AuthScheme, deps: &Deps) -> Arc<dyn Authenticator> {
    match scheme {
        AuthScheme::Session => Arc::new(session::SessionAuthenticator::new(deps)),
        AuthScheme::Token => Arc::new(token::TokenAuthenticator::new(deps)),
        AuthScheme::Jwt => Arc::new(jwt::JwtAuthenticator::new(deps)),
        AuthScheme::Basic => Arc::new(basic::BasicAuthenticator::new(deps)),
    }
}

/// An ordered list of authenticators.
#[derive(Clone)]
pub struct Chain {
    links: Vec<Link>,
    metrics: Arc<Metrics>,
}

/// An authenticator and its counters for the outcomes without a reason (not mine, stale,
/// success), taken from the family at their first use: every request counts one, and the
/// family's lookup hashes the labels with SipHash.
#[derive(Clone)]
struct Link {
    authenticator: Arc<dyn Authenticator>,
    counted: [OnceLock<Counter>; 3],
}

const OUTCOMES: [&str; 3] = ["not_mine", "stale", "success"];

impl Chain {
    pub fn new(schemes: &[AuthScheme], deps: &Deps) -> Self {
        let links =
            schemes.iter().map(|s| Link { authenticator: build(*s, deps), counted: Default::default() }).collect();
        Self { links, metrics: Arc::clone(&deps.metrics) }
    }

    /// The first authenticator's challenge decides 401 vs 403 (DRF `get_authenticate_header`).
    pub fn challenge(&self) -> Option<String> {
        self.links.first().and_then(|l| l.authenticator.challenge())
    }

    /// The first challenge any authenticator offers (a gateway's 401 needs one).
    pub fn any_challenge(&self) -> Option<String> {
        self.links.iter().find_map(|l| l.authenticator.challenge())
    }

    /// Runs the chain: `identity: None` is an anonymous request.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<ChainResult, Refused> {
        let mut result = ChainResult::default();
        for link in &self.links {
            let authenticator = &link.authenticator;
            let outcome = authenticator.authenticate(creds).await;
            self.count(link, &outcome);
            match outcome {
                Outcome::NotMine => continue,
                Outcome::Stale => {
                    result.stale.push(authenticator.name());
                    continue;
                }
                Outcome::Authenticated(identity) => {
                    result.identity = Some(identity);
                    return Ok(result);
                }
                Outcome::Failed(failure) => return Err(Refused { failure, challenge: self.challenge() }),
            }
        }
        Ok(result)
    }
}

impl Chain {
    fn count(&self, link: &Link, outcome: &Outcome) {
        let authenticator = link.authenticator.name();
        let slot = match outcome {
            Outcome::NotMine => 0,
            Outcome::Stale => 1,
            Outcome::Authenticated(_) => 2,
            Outcome::Failed(f) => {
                let labels = AuthLabels { authenticator, outcome: "failure", reason: f.reason() };
                self.metrics.authentications.get_or_create(&labels).inc();
                return;
            }
        };
        link.counted[slot]
            .get_or_init(|| {
                let labels = AuthLabels { authenticator, outcome: OUTCOMES[slot], reason: String::new() };
                self.metrics.authentications.get_or_create(&labels).clone()
            })
            .inc();
    }
}

impl Failure {
    /// A short, bounded label for metrics: DRF's detail, simplejwt's code, or the kind.
    fn reason(&self) -> String {
        match self {
            Self::Credentials(detail) => detail.clone(),
            Self::Detailed(body) => body["code"].as_str().unwrap_or("invalid").to_owned(),
            Self::Csrf(_) => "csrf".into(),
            Self::Throttled(_) => "throttled".into(),
            Self::EmailNotVerified => "email_not_verified".into(),
            Self::Unavailable(_) => "unavailable".into(),
        }
    }
}

/// The chain refused the request: an authenticator's failure, and the chain's challenge
/// (401 with it, 403 without, by DRF's first-authenticator rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub failure: Failure,
    pub challenge: Option<String>,
}

/// What the chain found.
#[derive(Debug, Default)]
pub struct ChainResult {
    pub identity: Option<Arc<Identity>>,
    /// Authenticators that saw a dead credential (its cookie should be cleared).
    pub stale: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::Credentials;

    #[test]
    fn debug_output_never_shows_secrets() {
        let creds = Credentials {
            authorization: Some(b"Token 0123456789abcdef0123456789abcdef01234567".to_vec()),
            cookies: [("sessionid".to_owned(), "s3cr3tsessionkey".to_owned())].into(),
            csrf_header: Some("csrfsecretvalue".into()),
            ..Credentials::default()
        };
        let shown = format!("{creds:?}");
        for secret in ["0123456789abcdef", "s3cr3tsessionkey", "csrfsecretvalue"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sessionid"));
    }
}
