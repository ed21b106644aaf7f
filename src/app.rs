//! Routes and middleware: the whole HTTP application, built from an `AppState`.
use std::time::Instant;

use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, middleware::CookieJarManager};

use crate::{
    api,
    error::to_drf_response,
    metrics::{Metrics, RequestLabels},
    state::AppState,
};

/// A bounded label: the standard methods, or "other".
fn method_label(method: &poem::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The application: the OpenAPI routes, `/openapi.json`, the Swagger UI at `/docs/`,
/// trailing-slash normalisation, DRF-shaped errors for everything, one log line per request.
pub fn build_app(state: AppState) -> impl Endpoint<Output = Response> {
    let spec = api::spec::spec_endpoint(&state);
    let docs = api::spec::swagger_ui(&state);
    let allow = api::spec::AllowTable::new(&state);
    let chains = api::policy::ViewChains::new(&state);
    let metrics = std::sync::Arc::clone(&state.metrics);
    let scrape = metrics_endpoint(&state, true);
    let (auth_request, forward_auth) = api::gateway::endpoints(&state);
    let (login_page, logout_page) = api::pages::endpoints(&state);
    let headers = api::headers::Headers::new(&state.settings);
    // Outermost first: add Django's headers (seeing the cookies written), count and log
    // (`outermost`); write cookies, also on error answers (poem's `CookieJarManager`);
    // answer a panic and every error in DRF's JSON, normalise the path, authenticate before
    // routing, so auth beats 405 (`framed`). Three layers, not eight: each layer moves the
    // request (488 bytes) and its inner future whole, and they were a fifth of a request.
    let outside_the_spec = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/metrics", scrape)
        .at("/authz/auth-request", auth_request)
        .at("/authz/forward-auth", forward_auth)
        .at("/accounts/login", login_page)
        .at("/accounts/logout", logout_page);
    let dispatch = Dispatch { api: Operations::new(api::apis(&state)), others: outside_the_spec };
    let framed = Framed { inner: dispatch, state, chains, allow };
    Outermost { inner: framed.with(CookieJarManager::new()), headers, metrics }
}

/// `framed` around the routers, `outermost` around the cookie jar: poem's `around` would
/// hand each an `Arc` of the inner endpoint per request, whose `call` is an `async` wrapper
/// holding the request beside the inner future.
struct Framed<E> {
    inner: E,
    state: AppState,
    chains: std::sync::Arc<api::policy::ViewChains>,
    allow: api::spec::AllowTable,
}

impl<E: Endpoint> Endpoint for Framed<E> {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        framed(&self.inner, req, &self.state, &self.chains, &self.allow)
    }
}

struct Outermost<E> {
    inner: E,
    headers: std::sync::Arc<api::headers::Headers>,
    metrics: std::sync::Arc<Metrics>,
}

impl<E: Endpoint> Endpoint for Outermost<E> {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        outermost(&self.inner, req, &self.headers, &self.metrics)
    }
}

/// The two routers: the operations of the spec (and the 404s) and one for the few endpoints
/// outside the spec. Picking by prefix costs less than nesting the first at "/" in a `Route`,
/// which matches twice and rebuilds every request's URI.
struct Dispatch {
    api: Operations,
    others: Route,
}

/// The spec's operations, routed as `OpenApiService::into_endpoint` routes them (the same
/// endpoints, from `OpenApi::add_routes`; the same 404, 405 and HEAD-as-GET), without the
/// layers it wraps them in that this application does not use or already has: a second
/// cookie jar, a boxed future, two response mappings, and a `Route` for paths without
/// parameters — those (all but a few) are one hash lookup here, and poem's `Route` only sees
/// the paths with `{parameters}`, which it extracts.
struct Operations {
    exact: rustc_hash::FxHashMap<String, Methods>,
    with_parameters: Route,
}

impl Operations {
    fn new(apis: impl poem_openapi::OpenApi) -> Self {
        let mut table = std::collections::HashMap::new();
        apis.add_routes(&mut table);
        let mut exact = rustc_hash::FxHashMap::default();
        let mut with_parameters = Route::new();
        for (path, endpoints) in table {
            let methods = Methods(endpoints.into_iter().collect());
            // poem-openapi writes a parameter as `/:param0`, and paths without a trailing slash.
            if path.contains("/:") {
                with_parameters = with_parameters.at(path, methods);
            } else {
                exact.insert(path, methods);
            }
        }
        Self { exact, with_parameters }
    }

    fn call(&self, mut req: Request) -> Routed<'_> {
        // What poem-openapi's `Query` parameters read (`OpenApiService` inserts it for every
        // request); parsed only when there is a query string.
        let query = match req.uri().query() {
            Some(q) if !q.is_empty() => req.params::<Vec<(String, String)>>().unwrap_or_default(),
            _ => Vec::new(),
        };
        req.extensions_mut().insert(poem_openapi::__private::UrlQuery(query));
        match self.exact.get(req.uri().path()) {
            Some(methods) => methods.route(req),
            None => Box::pin(self.with_parameters.call(req)),
        }
    }
}

/// One path's operations by method (poem's `RouteMethod`).
struct Methods(Vec<(poem::http::Method, poem::endpoint::BoxEndpoint<'static>)>);

impl Methods {
    fn find(&self, method: &poem::http::Method) -> Option<&poem::endpoint::BoxEndpoint<'static>> {
        self.0.iter().find(|(m, _)| m == method).map(|(_, endpoint)| endpoint)
    }

    fn route(&self, mut req: Request) -> Routed<'_> {
        use poem::endpoint::DynEndpoint;
        if let Some(endpoint) = self.find(req.method()) {
            return DynEndpoint::call(endpoint.as_ref(), req);
        }
        // HEAD is GET without the body, unless the path declares HEAD itself.
        if req.method() == poem::http::Method::HEAD
            && let Some(get) = self.find(&poem::http::Method::GET)
        {
            req.set_method(poem::http::Method::GET);
            return Box::pin(async move {
                let mut resp = DynEndpoint::call(get.as_ref(), req).await?;
                resp.set_body(());
                Ok(resp)
            });
        }
        Box::pin(std::future::ready(Err(poem::error::MethodNotAllowedError.into())))
    }
}

impl Endpoint for Methods {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        self.route(req)
    }
}

impl Dispatch {
    fn outside_the_spec(path: &str) -> bool {
        let under =
            |prefix: &str| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        path == "/openapi.json" || path == "/metrics" || under("/docs") || under("/authz") || under("/accounts")
    }
}

/// A request's future from the routers: the operation's own boxed future, which the layers
/// around hold as a pointer (an `async fn` here would hold the request as well, a few
/// hundred bytes more in each layer's future, each moved whole).
type Routed<'a> = futures_util::future::BoxFuture<'a, poem::Result<Response>>;

impl Endpoint for Dispatch {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        if Self::outside_the_spec(req.uri().path()) { Box::pin(self.others.call(req)) } else { self.api.call(req) }
    }
}

/// The spec as served at `/openapi.json` (and written to `openapi/openapi.json`).
pub fn spec_json(state: &AppState) -> String {
    api::spec::document(state)
}

/// Inside the cookie jar: a panic answers DRF's JSON 500 (and is logged) instead of dropping
/// the connection; every error is DRF's JSON, a 405 with `Allow`; the path is normalised
/// (trailing and doubled slashes, as DRF's URLs are written); extractors find the body
/// limit; then authentication and the router (`api::auth::authenticate`).
async fn framed<E: Endpoint>(
    next: &E,
    mut req: Request,
    state: &AppState,
    chains: &api::policy::ViewChains,
    allow: &api::spec::AllowTable,
) -> poem::Result<Response> {
    let limit = state.settings.server.max_body_bytes;
    let method = req.method().clone();
    normalize_path(&mut req);
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(api::body::BodyLimit(limit));
    let answer = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(api::auth::authenticate(
        next, req, state, chains,
    )))
    .await;
    let mut resp = match answer {
        Ok(Ok(resp)) => resp,
        Ok(Err(err)) => to_drf_response(err, &method, limit),
        Err(panic) => {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            crate::error::ApiError::Internal(format!("panic: {cause}")).to_response()
        }
    };
    if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = allow.allow(&path).and_then(|m| poem::http::HeaderValue::from_str(m).ok())
    {
        resp.headers_mut().insert(poem::http::header::ALLOW, methods);
    }
    Ok(resp)
}

/// `/login/` → `/login`, `//a//b/` → `/a/b` (poem's `NormalizePath` with `Trim`, without a
/// regex and a new URI for paths already clean); the query string is kept.
fn normalize_path(req: &mut Request) {
    let path = req.uri().path();
    let clean = !(path.len() > 1 && path.ends_with('/') || path.contains("//"));
    if clean {
        return;
    }
    let mut clean = String::with_capacity(path.len() + req.uri().query().map_or(0, |q| q.len() + 1));
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(query) = req.uri().query() {
        clean.push('?');
        clean.push_str(query);
    }
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = poem::http::uri::PathAndQuery::from_maybe_shared(clean).ok();
    // Made of the parts of a valid URI; should that ever fail, the path stays as it came.
    if let Ok(uri) = poem::http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// `GET /metrics`. On the main listener (`behind_token`) only for `Authorization: Bearer
/// <metrics.token>`, and not at all without a token; on `metrics.bind`, for anyone who can
/// reach that address.
pub fn metrics_endpoint(state: &AppState, behind_token: bool) -> impl Endpoint<Output = Response> + use<> {
    let state = state.clone();
    poem::endpoint::make(move |req: Request| {
        let state = state.clone();
        async move {
            let token = state.settings.metrics.token.expose();
            if behind_token {
                let sent = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
                if token.is_empty() || !crate::crypto::constant_time_eq(sent.as_bytes(), token.as_bytes()) {
                    return Err(crate::error::ApiError::NotFound.into());
                }
            }
            let body = state.metrics.render(&state.db, state.cache.len());
            Ok::<_, poem::Error>(
                Response::builder().content_type("text/plain; version=0.0.4; charset=utf-8").body(body),
            )
        }
    })
}

/// The separate metrics listener's application (`metrics.bind`).
pub fn build_metrics_app(state: &AppState) -> impl Endpoint<Output = Response> + use<> {
    let headers = api::headers::Headers::new(&state.settings);
    Route::new()
        .at("/metrics", metrics_endpoint(state, false))
        .around(move |next, req| api::headers::add(next, req, std::sync::Arc::clone(&headers)))
}

/// Django's headers on the final answer (`api::headers`), then the request's metrics and
/// its log line (`logging::request`): one layer, one copy of the path.
async fn outermost<E: Endpoint>(
    next: &E,
    req: Request,
    headers: &api::headers::Headers,
    metrics: &Metrics,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query string may carry a secret.
    let path = req.uri().path().to_owned();
    let mut resp = next.call(req).await?.into_response();
    headers.apply(&path, &mut resp);
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    if metrics.enabled {
        let route = crate::api::policy::route_label(&path);
        let labels = RequestLabels { route, method: method_label(&method), status };
        metrics.request(labels, elapsed.as_secs_f64());
    }
    crate::logging::request(method.as_str(), &path, status, elapsed.as_micros() as u64);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(uri: &str) -> String {
        let mut req = Request::builder().uri(uri.parse::<poem::http::Uri>().unwrap()).finish();
        normalize_path(&mut req);
        req.uri().to_string()
    }

    #[test]
    fn paths_are_normalised_as_poems_trim_did() {
        assert_eq!(normalized("/login/"), "/login");
        assert_eq!(normalized("/login"), "/login");
        assert_eq!(normalized("/"), "/");
        assert_eq!(normalized("//"), "/");
        assert_eq!(normalized("//tokens//12///?page=2&x=%2F"), "/tokens/12?page=2&x=%2F");
        assert_eq!(normalized("/audit/?since=2026-01-01T00:00:00Z"), "/audit?since=2026-01-01T00:00:00Z");
        assert_eq!(normalized("/a/b/?"), "/a/b?");
        assert_eq!(normalized("/caf%C3%A9/"), "/caf%C3%A9");
        // An absolute-form target (a proxy's) keeps its scheme and authority.
        assert_eq!(normalized("http://example.com/login/?next=/x/"), "http://example.com/login?next=/x/");
        assert_eq!(normalized("http://example.com//a//"), "http://example.com/a");
    }

    #[test]
    fn the_spec_router_gets_every_path_but_the_few_outside_it() {
        for path in ["/openapi.json", "/metrics", "/docs", "/docs/index.css", "/authz/auth-request", "/accounts/login"]
        {
            assert!(Dispatch::outside_the_spec(path), "{path}");
        }
        for path in ["/login", "/docsx", "/authzz", "/accounts", "/healthz", "/", "/openapi.jsonx"] {
            assert_eq!(Dispatch::outside_the_spec(path), path == "/accounts", "{path}");
        }
    }

    /// The layers around the routers hold a pointer to the operation's future, not a future
    /// of the router's own with the request inside (see `Routed`).
    #[tokio::test]
    async fn the_routers_futures_are_a_pointer() {
        let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
        opts.sqlx_logging(false).max_connections(1);
        let db = sea_orm::Database::connect(opts).await.unwrap();
        crate::store::migrate(&db).await.unwrap();
        let settings = crate::config::load(None, &Default::default()).unwrap();
        let state = AppState::new(db, settings).await.unwrap();
        let dispatch = Dispatch { api: Operations::new(api::apis(&state)), others: Route::new() };
        let req = |path| Request::builder().uri_str(path).finish();
        let pointer = std::mem::size_of::<Routed<'_>>();
        for path in ["/healthz", "/sessions/1", "/openapi.json", "/no/such/path"] {
            assert_eq!(std::mem::size_of_val(&dispatch.call(req(path))), pointer, "{path}");
        }
        let ok = dispatch.call(req("/healthz")).await.unwrap();
        assert_eq!(ok.status(), poem::http::StatusCode::OK);
    }
}
