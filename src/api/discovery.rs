//! What other services need to verify portcullis JWTs offline: the public keys (RFC 7517
//! JWKS) and a minimal discovery document (`issuer`, `jwks_uri`) for JWT middlewares that
//! find the keys from an issuer URL.
use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Example};
use serde_json::Value;

use super::ApiTags;
use crate::state::AppState;

pub struct DiscoveryApi {
    pub state: std::sync::Arc<AppState>,
}

/// One public key (RFC 7517), with what verifiers need to choose it.
#[derive(Debug, Object)]
pub struct JwkBody {
    /// Key type: `RSA`, `EC` (P-256) or `OKP` (Ed25519).
    pub kty: String,
    /// The `kid` in the header of the tokens this key verifies.
    pub kid: String,
    /// Always `sig`.
    #[oai(rename = "use")]
    pub use_: String,
    /// `RS256`, `ES256` or `EdDSA`: the only algorithm tokens of this key may name.
    pub alg: String,
    /// RSA modulus (base64url).
    #[oai(skip_serializing_if_is_none)]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[oai(skip_serializing_if_is_none)]
    pub e: Option<String>,
    /// Curve: `P-256` or `Ed25519`.
    #[oai(skip_serializing_if_is_none)]
    pub crv: Option<String>,
    /// Public point x (EC) or the public key (OKP), base64url.
    #[oai(skip_serializing_if_is_none)]
    pub x: Option<String>,
    /// Public point y (EC), base64url.
    #[oai(skip_serializing_if_is_none)]
    pub y: Option<String>,
}

/// The public keys that verify portcullis JWTs: the current one first, then the next one
/// (published ahead of the rotation that makes it sign), then retired ones whose tokens may
/// not have expired yet. Empty with HS256 (a shared secret is never published).
#[derive(Debug, Object)]
#[oai(example)]
pub struct JwkSetBody {
    pub keys: Vec<JwkBody>,
}

impl Example for JwkSetBody {
    fn example() -> Self {
        let key = JwkBody {
            kty: "EC".into(),
            kid: "TKfbpR5Ya3kUsA1Rb3tX4x3iJhyAN9xq1wKtOMa4VAU".into(),
            use_: "sig".into(),
            alg: "ES256".into(),
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".into()),
            y: Some("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".into()),
        };
        Self { keys: vec![key] }
    }
}

/// Where a JWT middleware finds the keys (OpenID Connect Discovery's two required fields that
/// apply, and RFC 8414's endpoints).
#[derive(Debug, Object)]
pub struct DiscoveryBody {
    /// `jwt.issuer` when set (tokens then carry it as `iss`), else this server's URL.
    pub issuer: String,
    pub jwks_uri: String,
    /// simplejwt's `TokenObtainPairView`.
    pub token_endpoint: String,
    /// RFC 7662.
    pub introspection_endpoint: String,
}

/// Public, cacheable for `jwt.jwks_max_age` seconds.
#[derive(ApiResponse)]
pub enum Cacheable<T: poem_openapi::types::ToJSON> {
    #[oai(status = 200)]
    Ok(Json<T>, #[oai(header = "Cache-Control")] String),
}

impl DiscoveryApi {
    fn cache_control(&self) -> String {
        format!("public, max-age={}", self.state.settings.jwt.jwks_max_age)
    }

    /// This server's URL as its clients reach it: the scheme a trusted proxy reports, and the
    /// `Host` the request names (a host cannot be told otherwise, as Django's `build_absolute_uri`).
    fn base_url(&self, req: &Request) -> String {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let trusted = req.remote_addr().as_socket_addr().is_some_and(|a| self.state.proxies.trusts(a.ip()));
        let https = trusted && header("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
        let host = header("host")
            .filter(|h| !h.is_empty() && h.parse::<poem::http::uri::Authority>().is_ok())
            .map_or_else(|| self.state.settings.server.bind.to_string(), str::to_owned);
        format!("{}://{host}", if https { "https" } else { "http" })
    }
}

fn text(jwk: &Value, field: &str) -> Option<String> {
    jwk.get(field).and_then(Value::as_str).map(str::to_owned)
}

#[OpenApi(tag = "ApiTags::Services")]
impl DiscoveryApi {
    /// The public keys that verify JWTs (JWKS)
    ///
    /// RFC 7517. Every JWT's header names its key (`kid`); a verifier takes that key from
    /// here and checks the token with the key's `alg` only. The key that will sign after the
    /// next `portcullis rotatekeys` is listed ahead, so a verifier's cached set already holds
    /// it; an old key stays until every token it signed has expired. With HS256,
    /// `{"keys": []}`: the shared secret is never published.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self) -> Cacheable<JwkSetBody> {
        let set = self.state.jwt.jwks();
        let keys = set["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| JwkBody {
                kty: text(k, "kty").unwrap_or_default(),
                kid: text(k, "kid").unwrap_or_default(),
                use_: text(k, "use").unwrap_or_default(),
                alg: text(k, "alg").unwrap_or_default(),
                n: text(k, "n"),
                e: text(k, "e"),
                crv: text(k, "crv"),
                x: text(k, "x"),
                y: text(k, "y"),
            })
            .collect();
        Cacheable::Ok(Json(JwkSetBody { keys }), self.cache_control())
    }

    /// Discovery: the issuer and where its keys are
    ///
    /// For JWT middlewares configured with an issuer URL (OpenID Connect Discovery's
    /// `issuer` and `jwks_uri`). Set `jwt.issuer` to the URL clients reach portcullis at:
    /// tokens then carry it as `iss`, which such middlewares check.
    #[oai(path = "/.well-known/openid-configuration", method = "get", operation_id = "openid_configuration")]
    async fn openid_configuration(&self, req: &Request) -> Cacheable<DiscoveryBody> {
        let issuer = &self.state.settings.jwt.issuer;
        let base = match url::Url::parse(issuer) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => issuer.trim_end_matches('/').to_owned(),
            _ => self.base_url(req),
        };
        let body = DiscoveryBody {
            issuer: if issuer.is_empty() { base.clone() } else { issuer.clone() },
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            token_endpoint: format!("{base}/api/token/"),
            introspection_endpoint: format!("{base}/introspect/"),
        };
        Cacheable::Ok(Json(body), self.cache_control())
    }
}
