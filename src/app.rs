//! Routes and middleware: the whole HTTP application, built from an `AppState`.
use std::time::Instant;

use poem::{
    Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route,
    middleware::{CookieJarManager, NormalizePath, TrailingSlash},
};

use crate::{api, error::to_drf_response, state::AppState};

/// The application: the OpenAPI routes, `/openapi.json`, the Swagger UI at `/docs/`,
/// trailing-slash normalisation, DRF-shaped errors for everything, one log line per request.
pub fn build_app(state: AppState) -> impl Endpoint<Output = Response> {
    let service = api::service(&state);
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    let limit = state.settings.server.max_body_bytes;
    let shared = std::sync::Arc::new(state.clone());
    // Outermost first: log; write cookies (also on error answers); map every error to
    // DRF's JSON; normalise trailing slashes; authenticate (before routing, so auth beats 405).
    Route::new()
        .nest("/", service)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .around(move |next, req| crate::api::auth::authenticate(next, req, std::sync::Arc::clone(&shared)))
        .with(NormalizePath::new(TrailingSlash::Trim))
        .data(state)
        .around(move |next, req| map_errors(next, req, limit))
        .with(CookieJarManager::new())
        .around(log_requests)
        .into_endpoint()
}

/// The spec as served at `/openapi.json` (and written to `openapi/openapi.json`).
pub fn spec_json(state: &AppState) -> String {
    api::service(state).spec()
}

async fn map_errors<E: Endpoint>(next: E, req: Request, limit: usize) -> poem::Result<Response> {
    let method = req.method().clone();
    Ok(match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => to_drf_response(err, &method, limit),
    })
}

async fn log_requests<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query string may carry a secret.
    let path = req.uri().path().to_owned();
    let resp = next.call(req).await?.into_response();
    tracing::info!(
        target: "portcullis::request",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
    );
    Ok(resp)
}
