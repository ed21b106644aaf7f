//! The gateway's HTML pages for browsers: `/accounts/login/` and `/accounts/logout/`
//! (Django's `LoginView`/`LogoutView` paths). Server-rendered, no JavaScript, CSRF-protected
//! as Django protects every form (the `csrftoken` cookie and a `csrfmiddlewaretoken` field,
//! the Origin check), never framed (the headers middleware sends `X-Frame-Options: DENY` on
//! HTML), and `next` only ever leads to this host or `gateway.allowed_redirect_hosts`.
//! Logging in and out are the same use cases as `POST /login/` and `POST /logout/`; for a
//! user with a second factor, a right password shows a second form asking for a code (the
//! pending login's ephemeral token in a hidden field), completed as `POST /mfa/verify/`
//! completes a login.
use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    endpoint::make,
    http::{Method, StatusCode, header},
    web::cookie::CookieJar,
};

use super::{auth, cookies, pages_html as html};
use crate::{
    authn::{Chain, Credentials, Identity, csrf},
    config::AuthScheme,
    service::{
        ServiceError,
        accounts::{Issued, Login, LoginError, MfaError, Purpose, WithDevice},
    },
    state::AppState,
};

struct Pages {
    state: AppState,
    /// The session authenticator alone: who is logged in on this browser.
    session: Chain,
}

/// `/accounts/login/` and `/accounts/logout/`.
pub fn endpoints(
    state: &AppState,
) -> (impl Endpoint<Output = Response> + use<>, impl Endpoint<Output = Response> + use<>) {
    let pages = Arc::new(Pages { session: Chain::new(&[AuthScheme::Session], &state.authn()), state: state.clone() });
    let login = {
        let pages = Arc::clone(&pages);
        make(move |req: Request| {
            let pages = Arc::clone(&pages);
            async move { Ok::<_, poem::Error>(pages.login(req).await) }
        })
    };
    let logout = make(move |req: Request| {
        let pages = Arc::clone(&pages);
        async move { Ok::<_, poem::Error>(pages.logout(req).await) }
    });
    (login, logout)
}

/// The fields of a form POST.
#[derive(Debug, Default)]
struct Form {
    username: String,
    password: String,
    next: String,
    csrf: Option<String>,
    /// The second step: the pending login and its code.
    ephemeral_token: String,
    code: String,
}

impl Pages {
    async fn login(&self, mut req: Request) -> Response {
        let jar = req.cookie().clone();
        let secret = self.csrf_secret(&req, &jar);
        let next = query_next(&req);
        let page = |status, error: Option<&str>, next: &str, username: &str| {
            page_of(status, &html::login(&csrf::mask(&secret), next, username, error))
        };
        match *req.method() {
            Method::GET | Method::HEAD => return page(StatusCode::OK, None, &next, ""),
            Method::POST => {}
            _ => return method_not_allowed("GET, HEAD, POST"),
        }
        let form = match self.form(&mut req).await {
            Ok(form) => form,
            Err(resp) => return resp,
        };
        let next = if form.next.is_empty() { next } else { form.next.clone() };
        let creds = self.credentials(&req, &form);
        if let Err(failure) = self.check_csrf(&creds) {
            return page_of(StatusCode::FORBIDDEN, &html::csrf_failure(&failure.0));
        }
        let presented = self.logged_in(&creds).await;
        let origin = creds.origin();
        let accounts = &self.state.accounts;
        if !form.ephemeral_token.is_empty() {
            let only = Some(Purpose::Session);
            let done = accounts.complete_login(&form.ephemeral_token, &form.code, only, presented.as_deref(), &origin);
            return match done.await {
                Ok(WithDevice { value: Issued::Session(key), device }) => {
                    self.logged_in_as(&req, &jar, &key, device, &next)
                }
                Ok(_) => page(StatusCode::OK, Some(html::EXPIRED), &next, ""),
                Err(e) => self.code_refused(e, &secret, &next, &form.ephemeral_token),
            };
        }
        match accounts.log_in(&form.username, &form.password, presented.as_deref(), &origin).await {
            Ok(Login::Done(WithDevice { value: key, device })) => self.logged_in_as(&req, &jar, &key, device, &next),
            Ok(Login::SecondFactor(pending)) => {
                page_of(StatusCode::OK, &html::login_code(&csrf::mask(&secret), &next, &pending.ephemeral_token, None))
            }
            Err(LoginError::Invalid | LoginError::SecondFactorRequired) => {
                page(StatusCode::OK, Some(html::INVALID_LOGIN), &next, &form.username)
            }
            Err(LoginError::Unverified) => page(StatusCode::OK, Some(html::UNVERIFIED), &next, &form.username),
            Err(LoginError::Throttled(wait)) => {
                let message = format!("Too many failed attempts. Try again in {wait} seconds.");
                page(StatusCode::TOO_MANY_REQUESTS, Some(&message), &next, &form.username)
            }
            Err(LoginError::Service(e)) => {
                tracing::warn!(error = %e, "login page: the login could not be completed");
                page(StatusCode::SERVICE_UNAVAILABLE, Some(html::UNAVAILABLE), &next, &form.username)
            }
        }
    }

    /// The session cookie of a complete login, and off to `next`.
    fn logged_in_as(&self, req: &Request, jar: &CookieJar, key: &str, device: Option<String>, next: &str) -> Response {
        let settings = &self.state.settings;
        jar.add(cookies::session(key, settings));
        jar.add(cookies::csrf(&csrf::new_secret(), settings));
        if let Some(device) = device {
            jar.add(cookies::device(&device, settings));
        }
        redirect(&self.safe_next(req, next))
    }

    /// A refused code: the code form again with why, or the password form when the pending
    /// login is gone (expired, used, or its password changed).
    fn code_refused(&self, e: MfaError, secret: &str, next: &str, ephemeral: &str) -> Response {
        let token = csrf::mask(secret);
        let (status, message) = match e {
            MfaError::Throttled(wait) => {
                (StatusCode::TOO_MANY_REQUESTS, format!("Too many failed attempts. Try again in {wait} seconds."))
            }
            MfaError::Service(ServiceError::Invalid(errors)) if errors.has("ephemeral_token") => {
                return page_of(StatusCode::OK, &html::login(&token, next, "", Some(html::EXPIRED)));
            }
            MfaError::Service(ServiceError::Invalid(errors)) => (
                StatusCode::OK,
                errors.lines().first().map_or(String::new(), |l| l.trim_start_matches("code: ").to_owned()),
            ),
            MfaError::Service(e) => {
                tracing::warn!(error = %e, "login page: the second step could not be completed");
                (StatusCode::SERVICE_UNAVAILABLE, html::UNAVAILABLE.to_owned())
            }
        };
        page_of(status, &html::login_code(&token, next, ephemeral, Some(&message)))
    }

    async fn logout(&self, mut req: Request) -> Response {
        let jar = req.cookie().clone();
        let secret = self.csrf_secret(&req, &jar);
        let next = query_next(&req);
        match *req.method() {
            Method::GET | Method::HEAD => return page_of(StatusCode::OK, &html::logout(&csrf::mask(&secret), &next)),
            Method::POST => {}
            _ => return method_not_allowed("GET, HEAD, POST"),
        }
        let form = match self.form(&mut req).await {
            Ok(form) => form,
            Err(resp) => return resp,
        };
        let creds = self.credentials(&req, &form);
        if let Err(failure) = self.check_csrf(&creds) {
            return page_of(StatusCode::FORBIDDEN, &html::csrf_failure(&failure.0));
        }
        if let Some(identity) = self.logged_in(&creds).await {
            let settings = &self.state.settings;
            match self.state.accounts.logout(Some(&identity), None, &creds.origin()).await {
                Ok(_) => jar.add(cookies::removal(&settings.session.cookie_name, settings)),
                Err(e) => {
                    tracing::warn!(error = %e, "logout page: the logout could not be completed");
                    return page_of(StatusCode::SERVICE_UNAVAILABLE, &html::message("Try again", html::UNAVAILABLE));
                }
            }
        }
        let next = if form.next.is_empty() { next } else { form.next };
        if next.is_empty() {
            return page_of(StatusCode::OK, &html::message("Logged out", "You are logged out."));
        }
        redirect(&self.safe_next(&req, &next))
    }

    /// The browser's CSRF secret, set in a cookie if it has none (Django's `get_token`).
    fn csrf_secret(&self, req: &Request, jar: &CookieJar) -> String {
        let settings = &self.state.settings;
        let cookie = req.cookie().get(&settings.csrf.cookie_name).map(|c| c.value_str().to_owned());
        csrf::valid_cookie_secret(cookie.as_deref()).unwrap_or_else(|| {
            let secret = csrf::new_secret();
            jar.add(cookies::csrf(&secret, settings));
            secret
        })
    }

    async fn form(&self, req: &mut Request) -> Result<Form, Response> {
        let limit = self.state.settings.server.max_body_bytes;
        let bytes = req.take_body().into_bytes_limit(limit).await.map_err(|_| {
            page_of(StatusCode::PAYLOAD_TOO_LARGE, &html::message("Too large", "The form is larger than allowed."))
        })?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let mut form = Form::default();
        for (key, value) in pairs {
            match key.as_str() {
                "username" => form.username = value,
                "password" => form.password = value,
                "next" => form.next = value,
                "ephemeral_token" => form.ephemeral_token = value,
                "code" => form.code = value,
                "csrfmiddlewaretoken" => form.csrf = Some(value),
                _ => {}
            }
        }
        Ok(form)
    }

    fn credentials(&self, req: &Request, form: &Form) -> Credentials {
        let mut creds = auth::from_headers(req, &self.state);
        creds.csrf_form.clone_from(&form.csrf);
        creds
    }

    /// Django checks every form POST, anonymous or not (its login view is CSRF-protected).
    fn check_csrf(&self, creds: &Credentials) -> Result<(), csrf::CsrfFailure> {
        let settings = &self.state.settings.csrf;
        let csrf = csrf::CsrfSettings {
            cookie_name: &settings.cookie_name,
            header_name: &settings.header_name,
            trusted_origins: &settings.trusted_origins,
        };
        csrf::check(creds, &csrf)
    }

    /// The session this browser holds, if any (checked as a safe request: CSRF is the
    /// page's own business).
    async fn logged_in(&self, creds: &Credentials) -> Option<Arc<Identity>> {
        let safe = Credentials { method: "GET".into(), ..creds.clone() };
        self.session.authenticate(&safe).await.ok().and_then(|found| found.identity)
    }

    /// Django's `url_has_allowed_host_and_scheme`: a path on this host, or an http(s) URL to
    /// this host or one of `gateway.allowed_redirect_hosts`; anything else goes to "/".
    fn safe_next(&self, req: &Request, next: &str) -> String {
        let own = req.header("host").unwrap_or_default();
        let allowed = &self.state.settings.gateway.allowed_redirect_hosts;
        if is_safe_redirect(next, own, allowed) { next.to_owned() } else { "/".to_owned() }
    }
}

fn is_safe_redirect(next: &str, own_host: &str, allowed: &[String]) -> bool {
    if next.is_empty() || next.contains('\\') || next.chars().any(char::is_control) {
        return false;
    }
    if next.starts_with('/') {
        return !next.starts_with("//");
    }
    let Ok(url) = url::Url::parse(next) else { return false };
    let Some(host) = url.host_str() else { return false };
    let netloc = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let own = own_host.eq_ignore_ascii_case(&netloc) || own_host.eq_ignore_ascii_case(host);
    matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && (own || allowed.iter().any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(&netloc)))
}

fn query_next(req: &Request) -> String {
    let query = req.uri().query().unwrap_or_default();
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .rev()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// An HTML answer that no cache keeps (it holds a CSRF token; Django's `never_cache`).
fn page_of(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.to_owned())
}

fn redirect(location: &str) -> Response {
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, location).finish()
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut resp = page_of(StatusCode::METHOD_NOT_ALLOWED, &html::message("Not allowed", "Use the form."));
    resp.headers_mut().insert(header::ALLOW, poem::http::HeaderValue::from_static(allow));
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::is_safe_redirect;

    #[test]
    fn next_leads_only_to_this_host_or_the_allowed_ones() {
        let allowed = ["app.example.com".to_owned()];
        let ok = |next| is_safe_redirect(next, "auth.example.com", &allowed);
        assert!(ok("/dashboard/?x=1") && ok("https://app.example.com/x") && ok("http://auth.example.com/"));
        assert!(ok("https://app.example.com:8443/x"), "a port of an allowed host");
        for bad in [
            "//evil.com/x",
            "/\\\\evil.com",
            "https://evil.com/",
            "javascript:alert(1)",
            "ftp://app.example.com/",
            "https://user@evil.com@app.example.com/",
            "",
            "https://app.example.com.evil.com/",
            "/x\ny",
        ] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
