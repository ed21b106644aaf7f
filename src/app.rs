//! Routes and middleware: the whole HTTP application, built from an `AppState`.
use std::time::Instant;

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route,
    middleware::{CatchPanic, CookieJarManager, NormalizePath, TrailingSlash},
};

use crate::{
    api,
    error::to_drf_response,
    metrics::{Metrics, RequestLabels, RouteLabels},
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
    let service = api::service(&state);
    let spec = api::spec::spec_endpoint(&state);
    let docs = api::spec::swagger_ui(&state);
    let limit = state.settings.server.max_body_bytes;
    let allow = std::sync::Arc::new(api::spec::AllowTable::new(&state));
    let shared = std::sync::Arc::new(state.clone());
    let chains = api::policy::ViewChains::new(&state);
    let metrics = std::sync::Arc::clone(&state.metrics);
    let scrape = metrics_endpoint(&state, true);
    let (auth_request, forward_auth) = api::gateway::endpoints(&state);
    let (login_page, logout_page) = api::pages::endpoints(&state);
    let headers = api::headers::Headers::new(&state.settings);
    // Outermost first: log; add Django's headers (seeing the cookies written); write
    // cookies (also on error answers); map every error to DRF's JSON; normalise trailing
    // slashes; authenticate (before routing, so auth beats 405).
    Route::new()
        .nest("/", service)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/metrics", scrape)
        .at("/authz/auth-request", auth_request)
        .at("/authz/forward-auth", forward_auth)
        .at("/accounts/login", login_page)
        .at("/accounts/logout", logout_page)
        .around(move |next, req| {
            crate::api::auth::authenticate(next, req, std::sync::Arc::clone(&shared), std::sync::Arc::clone(&chains))
        })
        .with(NormalizePath::new(TrailingSlash::Trim))
        .data(state)
        .around(move |next, req| map_errors(next, req, limit, std::sync::Arc::clone(&allow)))
        // A bug must still answer DRF's JSON 500 (and be logged), not drop the connection.
        .with(CatchPanic::new().with_handler(|panic: Box<dyn std::any::Any + Send>| {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            crate::error::ApiError::Internal(format!("panic: {cause}")).to_response()
        }))
        .with(CookieJarManager::new())
        .around(move |next, req| api::headers::add(next, req, std::sync::Arc::clone(&headers)))
        .around(move |next, req| log_requests(next, req, std::sync::Arc::clone(&metrics)))
        .into_endpoint()
}

/// The spec as served at `/openapi.json` (and written to `openapi/openapi.json`).
pub fn spec_json(state: &AppState) -> String {
    api::spec::document(state)
}

async fn map_errors<E: Endpoint>(
    next: E,
    req: Request,
    limit: usize,
    allow: std::sync::Arc<api::spec::AllowTable>,
) -> poem::Result<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => to_drf_response(err, &method, limit),
    };
    if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(methods) = allow.allow(&path).and_then(|m| poem::http::HeaderValue::from_str(m).ok())
    {
        resp.headers_mut().insert(poem::http::header::ALLOW, methods);
    }
    Ok(resp)
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

async fn log_requests<E: Endpoint>(next: E, req: Request, metrics: std::sync::Arc<Metrics>) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query string may carry a secret.
    let path = req.uri().path().to_owned();
    let resp = next.call(req).await?.into_response();
    if metrics.enabled {
        let route = crate::api::policy::route_label(&path);
        let labels = RequestLabels { route, method: method_label(&method), status: resp.status().as_u16() };
        metrics.requests.get_or_create(&labels).inc();
        metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    }
    tracing::info!(
        target: "portcullis::request",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
    );
    Ok(resp)
}
