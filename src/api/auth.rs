//! The authentication middleware: collects credentials from the request, runs the view's
//! chain and permission (see `policy`), applies DRF's throttles, and hands handlers a
//! [`Caller`] (as `caller::Authed` or `caller::MaybeAuthed`). Afterwards it keeps sessions
//! alive (sliding expiry) and clears dead cookies.
use std::sync::Arc;

use chrono::Utc;
use poem::{Endpoint, IntoResponse, Request, Response, http::header, web::cookie::CookieJar};

use super::{
    cookies,
    policy::{ViewChains, policy_for},
};
use crate::{
    authn::{Credentials, Identity, Method, cache::Key},
    crypto,
    error::{ApiError, NOT_AUTHENTICATED, PERMISSION_DENIED},
    service::sessions,
    state::AppState,
};

/// Who is calling, as the chain decided.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Option<Arc<Identity>>,
    pub creds: Arc<Credentials>,
}

pub async fn authenticate<E: Endpoint>(
    next: &E,
    mut req: Request,
    state: &AppState,
    chains: &ViewChains,
) -> poem::Result<Response> {
    let Some(policy) = policy_for(req.uri().path()) else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let creds = Arc::new(collect(&mut req, state).await?);
    let chain = chains.of(&policy);
    let found = chain.authenticate(&creds).await.map_err(ApiError::from)?;
    let jar = req.cookie().clone();
    if found.stale.contains(&"session") {
        jar.add(cookies::removal(&state.settings.session.cookie_name, &state.settings));
    }
    let permission = policy.permission.unwrap_or(state.default_permission);
    if !permission.allows(found.identity.as_deref(), &creds.method, &state.db).await.map_err(ApiError::from)? {
        return Err(match found.identity {
            None => ApiError::Unauthenticated { detail: NOT_AUTHENTICATED.into(), challenge: chain.challenge() },
            Some(_) => ApiError::PermissionDenied(PERMISSION_DENIED.into()),
        }
        .into());
    }
    if let Err(wait) = state.throttles.check(found.identity.as_deref(), &creds.origin()).await {
        return Err(ApiError::Throttled { wait }.into());
    }
    let caller = Caller { identity: found.identity, creds };
    req.extensions_mut().insert(caller.clone());
    let resp = next.call(req).await?.into_response();
    if resp.status().is_success()
        && let Some(identity) = &caller.identity
        && identity.method == Method::Session
    {
        keep_alive(state, &jar, &caller).await;
    }
    Ok(resp)
}

/// Records activity on the session (throttled) and, with `save_every_request`, slides its
/// expiry and re-sends the cookie with a fresh Max-Age.
async fn keep_alive(state: &AppState, jar: &CookieJar, caller: &Caller) {
    let settings = &state.settings.session;
    let Some(key) = caller.creds.cookies.get(&settings.cookie_name) else { return };
    let Some(identity) = caller.identity.as_deref() else { return };
    record_activity(state, identity, key).await;
    // Only if the view did not replace or remove the cookie itself (login, logout, password change).
    let unchanged = jar.get(&settings.cookie_name).is_some_and(|c| c.value_str() == key);
    if settings.save_every_request && unchanged {
        jar.add(cookies::session(key, &state.settings));
    }
}

/// Records activity on the session `key` names (at most once a minute, see
/// `sessions::should_touch`), sliding its expiry with `save_every_request`.
pub async fn record_activity(state: &AppState, identity: &Identity, key: &str) {
    let Some(session) = identity.session() else { return };
    let settings = &state.settings.session;
    let age = settings.age();
    if sessions::should_touch(session.last_seen, age, Utc::now()) {
        let extend = settings.save_every_request.then_some(age);
        // Boxed, as every await off the common path here: the futures of the layers around
        // a request are moved whole, and this one would make each of them bigger.
        if let Err(e) = Box::pin(sessions::touch(&state.db, session.id, extend)).await {
            tracing::warn!(error = %e, "could not record session activity");
        }
        // The cached copy has the old times: the next request reads the new ones.
        state.cache.forget(&Key::Session(crypto::digest(key)));
    }
}

/// Gathers what authenticators may look at; nothing else of the request reaches them.
async fn collect(req: &mut Request, state: &AppState) -> Result<Credentials, ApiError> {
    let settings = &state.settings;
    let mut creds = from_headers(req, state);
    let is_form = req.content_type().is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !creds.is_safe_method() && is_form && creds.cookies.contains_key(&settings.session.cookie_name) {
        creds.csrf_form = Box::pin(read_form_token(req, settings.server.max_body_bytes)).await?;
    }
    Ok(creds)
}

const FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");

/// A header's value as text, if it is. Standard names are given as `HeaderName`s, so they
/// are not parsed from a string on every request.
fn text(req: &Request, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What the request's head says: credentials, CSRF header, origin, client.
pub fn from_headers(req: &Request, state: &AppState) -> Credentials {
    let settings = &state.settings;
    let owned = |name| text(req, name).map(str::to_owned);
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let client_ip = state.proxies.client_ip(peer, text(req, FORWARDED_FOR));
    let secure = peer.is_some_and(|p| state.proxies.trusts(p))
        && text(req, FORWARDED_PROTO).is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let mut creds = Credentials {
        method: req.method().as_str().to_owned(),
        authorization: req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec()),
        origin: owned(header::ORIGIN),
        referer: owned(header::REFERER),
        host: owned(header::HOST),
        secure,
        csrf_header: text(req, settings.csrf.header_name.as_str()).map(str::to_owned),
        client_ip,
        user_agent: owned(header::USER_AGENT),
        ..Credentials::default()
    };
    for name in [&settings.session.cookie_name, &settings.csrf.cookie_name] {
        if let Some(cookie) = req.cookie().get(name) {
            creds.cookies.insert(name.clone(), cookie.value_str().to_owned());
        }
    }
    creds.device = req.cookie().get(&settings.throttle.device_cookie_name).map(|c| c.value_str().to_owned());
    creds
}

/// Django reads `csrfmiddlewaretoken` from a form POST; the body is put back for the view.
async fn read_form_token(req: &mut Request, limit: usize) -> Result<Option<String>, ApiError> {
    let bytes = req.take_body().into_bytes_limit(limit).await.map_err(|e| super::body::read_error(e, limit))?;
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|pairs| pairs.into_iter().rev().find(|(k, _)| k == "csrfmiddlewaretoken").map(|(_, v)| v));
    req.set_body(bytes);
    Ok(token)
}
