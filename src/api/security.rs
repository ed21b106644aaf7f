//! What the OpenAPI spec says about authentication: the schemes a client can use (Swagger
//! UI's "Authorize" offers them) and, per operation, which ones its chain accepts. The
//! handler parameter `Auth<S>` carries the [`Caller`] the authentication middleware
//! resolved; `S` only documents the view's chain (the middleware and `policy` enforce it).
//! The spec describes the default `auth.chain` plus Basic, since the served spec must not
//! change with configuration.
use std::{marker::PhantomData, ops::Deref};

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

use super::auth::Caller;
use crate::error::ApiError;

pub const SESSION: &str = "session";
pub const TOKEN: &str = "token";
pub const JWT: &str = "jwt";
pub const BASIC: &str = "basic";
/// Not a way to authenticate: what unsafe requests under the session also need (see `spec`).
pub const CSRF: &str = "csrf";

/// Which schemes an operation accepts, and whether anonymous callers are let in.
pub trait Schemes: Send + Sync + 'static {
    const NAMES: &'static [&'static str];
    const ANONYMOUS: bool;
}

/// The default chain: session cookie, `Token`, `Bearer` (and `Basic` when configured).
pub struct Chain;
impl Schemes for Chain {
    const NAMES: &'static [&'static str] = &[SESSION, TOKEN, JWT, BASIC];
    const ANONYMOUS: bool = false;
}

/// The default chain, anonymous callers allowed (DRF's `AllowAny`): bad credentials still fail.
pub struct Optional;
impl Schemes for Optional {
    const NAMES: &'static [&'static str] = Chain::NAMES;
    const ANONYMOUS: bool = true;
}

/// simplejwt's token views: `authentication_classes = ()`, open to anyone.
pub struct Nobody;
impl Schemes for Nobody {
    const NAMES: &'static [&'static str] = &[];
    const ANONYMOUS: bool = true;
}

/// `/profile/`: `authentication_classes = [TokenAuthentication]`.
pub struct TokenOnly;
impl Schemes for TokenOnly {
    const NAMES: &'static [&'static str] = &[TOKEN];
    const ANONYMOUS: bool = false;
}

/// `/session/data/`: the session's own data.
pub struct SessionOnly;
impl Schemes for SessionOnly {
    const NAMES: &'static [&'static str] = &[SESSION];
    const ANONYMOUS: bool = false;
}

/// The resolved caller, documented with the view's schemes.
pub struct Auth<S>(Caller, PhantomData<fn() -> S>);

impl<S> Deref for Auth<S> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

fn scheme(ty: &'static str, description: &'static str) -> MetaSecurityScheme {
    MetaSecurityScheme {
        ty,
        description: Some(description),
        name: None,
        key_in: None,
        scheme: None,
        bearer_format: None,
        flows: None,
        openid_connect_url: None,
    }
}

impl<'a, S: Schemes> ApiExtractor<'a> for Auth<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(SESSION, MetaSecurityScheme {
            name: Some("sessionid"),
            key_in: Some("cookie"),
            ..scheme("apiKey", "The `sessionid` cookie set by `POST /login/` (the browser sends it by itself). Unsafe methods also need the `X-CSRFToken` header.")
        });
        registry.create_security_scheme(TOKEN, MetaSecurityScheme {
            name: Some("Authorization"),
            key_in: Some("header"),
            ..scheme("apiKey", "DRF's token authentication: paste `Token <key>` (the key from `POST /api-token-auth/` or `portcullis drf_create_token`).")
        });
        registry.create_security_scheme(
            JWT,
            MetaSecurityScheme {
                scheme: Some("bearer"),
                bearer_format: Some("JWT"),
                ..scheme("http", "simplejwt's access token from `POST /api/token/`.")
            },
        );
        registry.create_security_scheme(
            BASIC,
            MetaSecurityScheme {
                scheme: Some("basic"),
                ..scheme("http", "Username and password on every request (when `\"basic\"` is in `auth.chain`).")
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        S::NAMES.to_vec()
    }

    fn has_security_fallback() -> bool {
        S::ANONYMOUS
    }

    async fn from_request(req: &'a Request, _body: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let caller = req.extensions().get::<Caller>().cloned();
        let caller = caller.ok_or_else(|| ApiError::Internal("no authentication policy for this route".into()))?;
        Ok(Self(caller, PhantomData))
    }
}
