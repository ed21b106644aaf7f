//! The served OpenAPI document and the Swagger UI page.
//!
//! poem-openapi generates the document from the handlers; what it cannot say is added
//! here, in one pass over the generated JSON:
//! - paths end in `/`, as DRF's URLs (and API.md) do; the server answers both forms;
//! - the authentication schemes, and per operation the security and permission the policy
//!   table (`policy`) enforces — the one source, so the two cannot disagree. An unsafe
//!   request authenticated by the session cookie also needs the `X-CSRFToken` header
//!   (DRF's `SessionAuthentication.enforce_csrf`): those requirements name `session` *and*
//!   `csrf`;
//! - a response poem-openapi left without a description gets its status's reason phrase.
//!
//! The Swagger UI page embeds that document and copies the `csrftoken` cookie into the
//! `X-CSRFToken` header of unsafe requests, as Django's documentation tells JavaScript
//! clients to do, so "Try it out" works after logging in on the page itself.
use poem::{Endpoint, Response, Route, http::StatusCode};
use serde_json::{Value, json};

use super::{
    policy::{Policy, documented_requirement, documented_security, policy_for},
    precompressed::Precompressed,
};
use crate::state::AppState;

/// Paths that are not DRF views and keep their exact form.
const NO_SLASH: &[&str] = &["/healthz", "/.well-known/jwks.json", "/.well-known/openid-configuration"];

/// The document as served at `/openapi.json` and written by `portcullis openapi`.
pub fn document(state: &AppState) -> String {
    finish(&super::service(state).spec())
}

/// Applies this module's additions to poem-openapi's document.
fn finish(generated: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(generated) else {
        return generated.to_owned();
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let old = std::mem::take(paths);
        for (path, mut item) in old {
            let policy = policy_for(&path);
            if let Some(operations) = item.as_object_mut() {
                for (method, operation) in operations.iter_mut() {
                    if let Some(policy) = &policy {
                        document_policy(policy, method, operation);
                    }
                    finish_operation(operation);
                }
            }
            let path = if NO_SLASH.contains(&path.as_str()) || path.ends_with('/') { path } else { format!("{path}/") };
            paths.insert(path, item);
        }
    }
    if let Some(components) = doc.as_object_mut().map(|d| d.entry("components").or_insert_with(|| json!({}))) {
        components["securitySchemes"] = security_schemes();
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| generated.to_owned())
}

/// The ways to authenticate, as Swagger UI's "Authorize" offers them.
fn security_schemes() -> Value {
    json!({
        "basic": {"type": "http", "scheme": "basic",
            "description": "Username and password on every request (when `\"basic\"` is in `auth.chain`)."},
        "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRFToken",
            "description": "Django's CSRF token: the value of the `csrftoken` cookie (`GET /csrf/` sets it and \
                returns it). Needed, with the session cookie, on POST/PUT/PATCH/DELETE requests \
                authenticated by the session; not with Token, Bearer or Basic. The Swagger UI page \
                fills it in from the cookie by itself."},
        "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "simplejwt's access token from `POST /api/token/`."},
        "session": {"type": "apiKey", "in": "cookie", "name": "sessionid",
            "description": "The `sessionid` cookie set by `POST /login/` (the browser sends it by itself). \
                Unsafe methods also need the `X-CSRFToken` header."},
        "token": {"type": "apiKey", "in": "header", "name": "Authorization",
            "description": "DRF's token authentication: paste `Token <key>` (the key from \
                `POST /api-token-auth/` or `portcullis drf_create_token`)."},
    })
}

/// The operation's security and permission, from the policy table.
fn document_policy(policy: &Policy, method: &str, operation: &mut Value) {
    let Some(map) = operation.as_object_mut() else { return };
    map.insert("security".into(), documented_security(policy, method));
    if let Some(line) = documented_requirement(policy) {
        let description = match map.get("description").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => format!("{text}\n\n{line}"),
            _ => line,
        };
        map.insert("description".into(), json!(description));
    }
}

fn finish_operation(operation: &mut Value) {
    // The audit filters are parsed by the handler (for DRF's message); say what they take.
    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters.iter_mut() {
            if matches!(parameter["name"].as_str(), Some("since" | "until"))
                && let Some(schema) = parameter.get_mut("schema").and_then(Value::as_object_mut)
            {
                schema.insert("format".into(), json!("date-time"));
            }
        }
    }
    // The error set is documented once for every operation (`error::ApiError`); an operation
    // that reads no body cannot answer 413 or 415, and one with no parameters either, 400.
    let takes_body = operation.get("requestBody").is_some();
    let takes_parameters = operation.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
        if !takes_body {
            responses.remove("413");
            responses.remove("415");
            if !takes_parameters {
                responses.remove("400");
            }
        }
        for (status, response) in responses.iter_mut() {
            let empty = response.get("description").and_then(Value::as_str).is_none_or(str::is_empty);
            let reason = status.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok());
            if let (true, Some(reason), Some(map)) = (empty, reason, response.as_object_mut()) {
                map.insert("description".into(), json!(reason.canonical_reason().unwrap_or("Response")));
            }
        }
    }
}

/// The methods each documented path answers, for the `Allow` header of a 405 (RFC 9110
/// requires it; DRF sends it). Paths are matched without their trailing slash, `{param}`
/// matching one segment.
#[derive(Debug, Default)]
pub struct AllowTable(Vec<(Vec<String>, String)>);

impl AllowTable {
    pub fn new(state: &AppState) -> Self {
        let Ok(doc) = serde_json::from_str::<Value>(&document(state)) else { return Self::default() };
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else { return Self::default() };
        let table = paths
            .iter()
            .map(|(path, item)| {
                let segments = path.trim_matches('/').split('/').map(str::to_owned).collect();
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                (segments, methods.join(", "))
            })
            .collect();
        Self(table)
    }

    /// `Allow` for a request path, if it is a documented one.
    pub fn allow(&self, path: &str) -> Option<&str> {
        let wanted: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0.iter().find_map(|(segments, methods)| {
            let matches = segments.len() == wanted.len()
                && segments.iter().zip(&wanted).all(|(s, w)| (s.starts_with('{') && !w.is_empty()) || s == w);
            matches.then_some(methods.as_str())
        })
    }
}

/// Runs before every "Try it out" request: unsafe methods carry the CSRF cookie's value
/// (same origin only; Swagger UI sends the browser's cookies itself).
const CSRF_INTERCEPTOR: &str = r#"requestInterceptor: (req) => {
            if (!/^(GET|HEAD|OPTIONS|TRACE)$/i.test(req.method || "GET")) {
                const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
                if (m && !req.headers["X-CSRFToken"]) { req.headers["X-CSRFToken"] = decodeURIComponent(m[1]); }
            }
            return req;
        },
        deepLinking: true,"#;

/// `/docs/`: poem-openapi's Swagger UI (scripts and styles inline: works offline) with the
/// finished document and the CSRF interceptor; 1.7 MB, so compressed and revalidated.
pub fn swagger_ui(state: &AppState) -> impl Endpoint<Output = Response> + use<> {
    let service = super::service(state);
    let generated = service.spec();
    let html = service.swagger_ui_html().replacen(&generated, &finish(&generated), 1).replacen(
        "deepLinking: true,",
        CSRF_INTERCEPTOR,
        1,
    );
    Route::new().at("/", Precompressed::new(html, "text/html; charset=utf-8").endpoint())
}

/// `/openapi.json`.
pub fn spec_endpoint(state: &AppState) -> impl Endpoint<Output = Response> + use<> {
    Precompressed::new(document(state), "application/json; charset=utf-8").endpoint()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> Option<&'a serde_json::Map<String, Value>> {
        doc.get("paths")?.get(path)?.get(method)?.as_object()
    }

    #[test]
    fn paths_get_slashes_security_comes_from_the_policy_and_responses_a_description() {
        let generated = json!({
            "paths": {
                "/login": {"post": {"requestBody": {},
                                    "responses": {"200": {"description": ""}, "400": {"description": "Bad"}}}},
                "/session/data": {"get": {}, "patch": {}},
                "/publish": {"post": {"description": "Publish."}},
                "/healthz": {"get": {}}
            }
        });
        let doc: Value = serde_json::from_str(&finish(&generated.to_string())).unwrap();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert_eq!(paths, ["/login/", "/session/data/", "/publish/", "/healthz"]);
        let login = operation(&doc, "/login/", "post").unwrap();
        let chain = json!([{"session": [], "csrf": []}, {"token": []}, {"jwt": []}, {"basic": []}, {}]);
        assert_eq!(login["security"], chain);
        assert_eq!(login["responses"]["200"]["description"], "OK");
        assert_eq!(login["responses"]["400"]["description"], "Bad");
        assert_eq!(operation(&doc, "/session/data/", "get").unwrap()["security"], json!([{"session": []}]));
        assert_eq!(
            operation(&doc, "/session/data/", "patch").unwrap()["security"],
            json!([{"session": [], "csrf": []}])
        );
        let publish = operation(&doc, "/publish/", "post").unwrap()["description"].as_str().unwrap();
        assert!(publish.starts_with("Publish.\n\n**Permission:** `articles.can_publish`"), "{publish}");
        assert!(operation(&doc, "/healthz", "get").unwrap().get("security").is_none());
        assert_eq!(doc["components"]["securitySchemes"]["csrf"]["name"], "X-CSRFToken");
    }

    #[test]
    fn only_operations_that_read_a_body_document_413_and_415() {
        let errors = json!({"200": {"description": "OK"}, "400": {"description": "x"}, "413": {"description": "x"},
                            "415": {"description": "x"}});
        let generated = json!({"paths": {
            "/login": {"post": {"requestBody": {}, "responses": errors}},
            "/users": {"get": {"parameters": [{"name": "page"}], "responses": errors}},
            "/protected": {"get": {"responses": errors}}
        }});
        let doc: Value = serde_json::from_str(&finish(&generated.to_string())).unwrap();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            operation(&doc, path, method).unwrap()["responses"].as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(statuses("/login/", "post"), ["200", "400", "413", "415"]);
        assert_eq!(statuses("/users/", "get"), ["200", "400"]);
        assert_eq!(statuses("/protected/", "get"), ["200"]);
    }
}
