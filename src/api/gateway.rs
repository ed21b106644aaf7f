//! Forward auth for reverse proxies: `GET /authz/auth-request/` (nginx `auth_request`) and
//! `/authz/forward-auth/` (Caddy `forward_auth`, Traefik `ForwardAuth`). The proxy asks
//! about the original request; the chain (`gateway.chain`), its credential cache and the
//! revocations are the views' own, and `[[gateway.rules]]` (first match, else
//! `auth.default_permission`) say what it needs. On 200 the caller goes to the upstream in
//! `Remote-*` headers. These are not DRF views: they are routed outside the spec and the
//! authentication middleware, and authenticate the *original* request themselves.
use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    endpoint::make,
    http::{HeaderValue, StatusCode, header},
};
use serde_json::json;

use super::auth;
use crate::{
    authn::{Chain, Credentials, Failure, Refused},
    error::{ApiError, NOT_AUTHENTICATED, PERMISSION_DENIED, json_response},
    gateway::{self, Original, Rules},
    service::{identity::Identity, permissions},
    state::AppState,
};

/// Which proxy protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// nginx: `X-Original-Method` and `X-Original-URL`; only 200, 401 or 403 (nginx turns
    /// any other answer into a 500).
    AuthRequest,
    /// Caddy, Traefik: `X-Forwarded-Method/Proto/Host/Uri`; browsers may be redirected.
    ForwardAuth,
}

/// The caller, for the proxy to copy to the upstream.
const REMOTE_HEADERS: [&str; 6] =
    ["remote-user", "remote-user-id", "remote-email", "remote-name", "remote-groups", "remote-auth"];

struct Gateway {
    state: AppState,
    chain: Chain,
    rules: Rules,
    /// `Remote-Groups` per user, kept `cache.ttl` like the credentials themselves (the
    /// header is information for the upstream; `group:` rules read the database).
    groups: Option<moka::sync::Cache<i64, Arc<str>>>,
}

/// The two endpoints, sharing one gateway.
pub fn endpoints(
    state: &AppState,
) -> (impl Endpoint<Output = Response> + use<>, impl Endpoint<Output = Response> + use<>) {
    let settings = &state.settings;
    let schemes = if settings.gateway.chain.is_empty() { &settings.auth.chain } else { &settings.gateway.chain };
    let gateway = Arc::new(Gateway {
        chain: Chain::new(schemes, &state.authn()),
        rules: Rules::new(&settings.gateway.rules),
        groups: (settings.cache.ttl > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.cache.max_entries)
                .time_to_live(std::time::Duration::from_secs(settings.cache.ttl))
                .build()
        }),
        state: state.clone(),
    });
    let endpoint = move |mode| {
        let gateway = Arc::clone(&gateway);
        make(move |req: Request| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, poem::Error>(gateway.decide(&req, mode).await) }
        })
    };
    (endpoint(Mode::AuthRequest), endpoint(Mode::ForwardAuth))
}

impl Gateway {
    async fn decide(&self, req: &Request, mode: Mode) -> Response {
        let state = &self.state;
        let trusted = req.remote_addr().as_socket_addr().is_some_and(|a| state.proxies.trusts(a.ip()));
        let original = original(req, mode, trusted);
        let mut creds = auth::from_headers(req, state);
        creds.method.clone_from(&original.method);
        creds.host.clone_from(&original.host);
        creds.secure = original.scheme == "https";
        let identity = match self.chain.authenticate(&creds).await {
            Ok(found) => found.identity,
            Err(refused) => return self.refused(refused, mode),
        };
        let default = state.default_permission;
        let allowed = match self.rules.policy_for(&original) {
            Some(policy) => gateway::allows(policy, identity.as_deref(), &original.method, &state.db).await,
            None => default.allows(identity.as_deref(), &original.method, &state.db).await,
        };
        match (allowed, identity) {
            (Ok(true), identity) => self.allowed(identity.as_deref(), &creds).await,
            (Ok(false), None) => self.anonymous(req, mode, &original),
            (Ok(false), Some(_)) => deny(StatusCode::FORBIDDEN, PERMISSION_DENIED, None),
            (Err(e), _) => self.unavailable(mode, &e.to_string()),
        }
    }

    /// 200, with the caller for the upstream. An anonymous caller (an `allow_any` rule) gets
    /// the headers empty rather than absent: Caddy 2.6's `copy_headers` sends an absent one
    /// to the upstream as its literal placeholder (`{http.reverse_proxy.header.Remote-User}`),
    /// while nginx drops an empty one.
    async fn allowed(&self, identity: Option<&Identity>, creds: &Credentials) -> Response {
        let mut resp = StatusCode::OK.into_response();
        let Some(identity) = identity else {
            for name in REMOTE_HEADERS {
                resp.headers_mut().insert(name, HeaderValue::from_static(""));
            }
            return resp;
        };
        if let Some(key) = creds.cookies.get(&self.state.settings.session.cookie_name) {
            auth::record_activity(&self.state, identity, key).await;
        }
        let groups = self.groups(identity.user.id).await;
        let user = &identity.user;
        let name = format!("{} {}", user.first_name, user.last_name);
        let values = [
            user.username.as_str(),
            &user.id.to_string(),
            user.email.as_str(),
            name.trim(),
            &groups,
            identity.method.as_str(),
        ];
        for (name, value) in REMOTE_HEADERS.into_iter().zip(values) {
            resp.headers_mut().insert(name, header_value(value));
        }
        resp
    }

    async fn groups(&self, user_id: i64) -> Arc<str> {
        if let Some(found) = self.groups.as_ref().and_then(|c| c.get(&user_id)) {
            return found;
        }
        let names: Arc<str> =
            permissions::group_names(&self.state.db, user_id).await.unwrap_or_default().join(",").into();
        if let Some(cache) = &self.groups {
            cache.insert(user_id, Arc::clone(&names));
        }
        names
    }

    /// No (or no good enough) credential: a browser goes to the login page, others get 401.
    fn anonymous(&self, req: &Request, mode: Mode, original: &Original) -> Response {
        let login_url = &self.state.settings.gateway.login_url;
        let browser = req.header("accept").is_some_and(|a| a.contains("text/html"));
        if mode == Mode::ForwardAuth && browser && !login_url.is_empty() {
            let separator = if login_url.contains('?') { '&' } else { '?' };
            let next = url::form_urlencoded::byte_serialize(original.url().as_bytes()).collect::<String>();
            let status = match original.method.as_str() {
                "GET" | "HEAD" => StatusCode::FOUND,
                _ => StatusCode::SEE_OTHER,
            };
            let location = header_value(&format!("{login_url}{separator}next={next}"));
            return Response::builder().status(status).header(header::LOCATION, location).finish();
        }
        deny(StatusCode::UNAUTHORIZED, NOT_AUTHENTICATED, self.chain.any_challenge())
    }

    /// What the chain refused: a bad credential is a 401, a CSRF failure a 403.
    fn refused(&self, refused: Refused, mode: Mode) -> Response {
        let challenge = self.chain.any_challenge();
        match refused.failure {
            Failure::Credentials(detail) => deny(StatusCode::UNAUTHORIZED, &detail, challenge),
            Failure::Detailed(body) => {
                let mut resp = json_response(StatusCode::UNAUTHORIZED, &body);
                if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
                }
                resp
            }
            Failure::Csrf(reason) => deny(StatusCode::FORBIDDEN, &format!("CSRF Failed: {reason}"), None),
            // Basic with the right password of an unverified user: not a way in.
            Failure::EmailNotVerified => deny(StatusCode::UNAUTHORIZED, "E-mail is not verified.", challenge),
            Failure::Throttled(wait) if mode == Mode::ForwardAuth => ApiError::Throttled { wait }.to_response(),
            Failure::Throttled(_) => deny(StatusCode::FORBIDDEN, "Request was throttled.", None),
            Failure::Unavailable(cause) => self.unavailable(mode, &cause),
        }
    }

    /// The database did not answer: nginx is told "no" (fail closed; a 503 would become
    /// its 500), others get the usual 503.
    fn unavailable(&self, mode: Mode, cause: &str) -> Response {
        match mode {
            Mode::AuthRequest => {
                tracing::warn!(%cause, "gateway decision refused: backing service unavailable");
                deny(StatusCode::FORBIDDEN, "The service is temporarily unavailable; try again shortly.", None)
            }
            Mode::ForwardAuth => ApiError::Unavailable(cause.to_owned()).to_response(),
        }
    }
}

/// The original request: from the proxy's headers when the proxy is trusted, else the
/// request as it arrived (a client cannot describe its own request to us).
fn original(req: &Request, mode: Mode, trusted: bool) -> Original {
    let header = |name: &str| req.header(name).filter(|_| trusted).map(str::to_owned);
    let arrived = Original {
        method: req.method().as_str().to_owned(),
        scheme: "http".into(),
        host: req.header("host").map(str::to_owned),
        uri: req.uri().path_and_query().map_or_else(|| "/".into(), |p| p.as_str().to_owned()),
    };
    let described = match mode {
        Mode::AuthRequest => header("x-original-url")
            .and_then(|url| Original::from_url(&header("x-original-method").unwrap_or_else(|| "GET".into()), &url)),
        Mode::ForwardAuth => header("x-forwarded-uri").map(|uri| Original {
            method: header("x-forwarded-method").unwrap_or_else(|| arrived.method.clone()).to_ascii_uppercase(),
            scheme: header("x-forwarded-proto").unwrap_or_else(|| "http".into()).to_ascii_lowercase(),
            host: header("x-forwarded-host").or_else(|| arrived.host.clone()),
            uri,
        }),
    };
    described.unwrap_or(arrived)
}

/// DRF's `{"detail": ...}` with a status and, for 401, the challenge.
fn deny(status: StatusCode, detail: &str, challenge: Option<String>) -> Response {
    let mut resp = json_response(status, &json!({ "detail": detail }));
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

/// A header value from any text: UTF-8 passes as bytes (nginx and Caddy copy them as they
/// are); control characters, which would end or split the header, are dropped.
fn header_value(text: &str) -> HeaderValue {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    HeaderValue::from_bytes(clean.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}
