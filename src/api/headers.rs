//! The headers a Django project's default middleware puts on its answers, and one it leaves
//! to each view. Applied around everything else (the cookie jar, the error mapping), so
//! every final answer gets them, errors and 404s included:
//! - `SecurityMiddleware`: `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
//!   `Cross-Origin-Opener-Policy: same-origin`;
//! - `XFrameOptionsMiddleware`, on HTML pages: `X-Frame-Options: DENY`, with the CSP
//!   `frame-ancestors 'none'` that supersedes it in current browsers;
//! - `SessionMiddleware`: `Vary: Cookie` when the answer depends on the session cookie,
//!   i.e. the view's chain reads it, or the answer sets it;
//! - `Cache-Control: no-store` on answers that carry a credential (RFC 6749 §5.1): the
//!   credential endpoints' answers, and any answer that sets the session cookie. Django
//!   leaves this to the view, and DRF's and simplejwt's views do not set it.
use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderName, HeaderValue, header},
};

use super::policy::{ViewChain, policy_for};
use crate::config::{AuthScheme, Settings};

/// Views whose answer carries a credential, or says whether one is live (an introspection
/// answer kept by a cache would outlive a revocation); paths without their trailing slash.
const CREDENTIAL_PATHS: &[&str] = &[
    "/login",
    "/api-token-auth",
    "/api/token",
    "/api/token/refresh",
    "/introspect",
    "/tokens",
    "/mfa/verify",
    "/mfa/step-up",
    "/mfa/totp/setup",
    "/mfa/totp/activate",
    "/mfa/recovery-codes",
];

/// Not among `http`'s constants; a constant, so its name is checked once, at compile time.
const CROSS_ORIGIN_OPENER_POLICY: HeaderName = HeaderName::from_static("cross-origin-opener-policy");

/// Always set, unless the answer set its own (as Django's `setdefault`).
/// (Made from static parts: nothing is parsed per answer.)
fn every_answer() -> [(HeaderName, HeaderValue); 3] {
    [
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (CROSS_ORIGIN_OPENER_POLICY, HeaderValue::from_static("same-origin")),
    ]
}

fn html_pages() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'")),
    ]
}

/// What the headers depend on in the configuration, read once.
#[derive(Debug)]
pub struct Headers {
    /// Whether `auth.chain` (the chain of views that do not set their own) reads the session.
    default_chain_reads_session: bool,
    /// `<session.cookie_name>=`: how a `Set-Cookie` for the session cookie starts.
    session_cookie: String,
}

impl Headers {
    pub fn new(settings: &Settings) -> Arc<Self> {
        Arc::new(Self {
            default_chain_reads_session: settings.auth.chain.contains(&AuthScheme::Session),
            session_cookie: format!("{}=", settings.session.cookie_name),
        })
    }

    /// Whether the view at `path` runs the session authenticator (only DRF views do).
    fn reads_session(&self, path: &str) -> bool {
        policy_for(path).is_some_and(|policy| match policy.chain {
            ViewChain::Only(chain) => chain.contains(&AuthScheme::Session),
            ViewChain::DefaultAnd(extra) => extra == AuthScheme::Session || self.default_chain_reads_session,
            ViewChain::Default => self.default_chain_reads_session,
        })
    }

    fn sets_session(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.starts_with(&self.session_cookie)))
    }

    pub fn apply(&self, path: &str, resp: &mut Response) {
        let html = resp.content_type().is_some_and(|t| t.starts_with("text/html"));
        let sets_session = self.sets_session(resp.headers());
        let headers = resp.headers_mut();
        for (name, value) in every_answer().into_iter().chain(html.then(html_pages).into_iter().flatten()) {
            headers.entry(name).or_insert(value);
        }
        if sets_session || self.reads_session(path) {
            headers.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        if sets_session || CREDENTIAL_PATHS.contains(&path) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// The middleware: `.around(move |next, req| headers::add(next, req, Arc::clone(&headers)))`.
/// The error mapping inside it has turned every error into an answer already.
pub async fn add<E: Endpoint>(next: E, req: Request, headers: Arc<Headers>) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let mut resp = next.call(req).await?.into_response();
    headers.apply(&path, &mut resp);
    Ok(resp)
}
