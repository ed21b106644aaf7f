//! HTTP handlers: thin, they parse, call a service, and map the result.
pub mod account;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod caller;
pub mod cookies;
pub mod discovery;
pub mod examples;
pub mod fields;
pub mod gateway;
pub mod headers;
pub mod health;
pub mod introspect;
pub mod mfa;
pub mod pages;
pub mod pages_html;
pub mod pagination;
pub mod policy;
pub mod precompressed;
pub mod recovery;
pub mod serde_json_body;
pub mod session;
pub mod spec;
pub mod tokens;

use poem_openapi::{ApiResponse, Object, OpenApiService, Tags};

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Browser sessions: login, logout, the session cookie and CSRF.
    Session,
    /// Opaque `Authorization: Token <key>` keys (DRF's authtoken).
    Token,
    /// JSON Web Tokens (simplejwt's access/refresh pairs).
    #[oai(rename = "JWT")]
    Jwt,
    /// Accounts: registration, profile, password, recovery by email.
    Account,
    /// The second factor (TOTP and recovery codes): enrolment, step-up for sensitive
    /// actions, and the second step of a login.
    #[oai(rename = "MFA")]
    Mfa,
    /// Staff-only and operational endpoints.
    Admin,
    /// For the services behind portcullis: the public keys that verify JWTs offline, discovery,
    /// and token introspection (RFC 7662).
    Services,
    /// The tutorial's example views: protected pages, permissions, cookies.
    Examples,
}

/// `{"message": "..."}`
#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct MessageBody {
    pub message: String,
}

/// A revocation's answer.
#[derive(ApiResponse)]
pub enum Deleted {
    /// Revoked.
    #[oai(status = 204)]
    NoContent,
}

pub type Apis = (
    account::AccountApi,
    recovery::RecoveryApi,
    mfa::MfaApi,
    session::SessionApi,
    tokens::TokenApi,
    examples::ExamplesApi,
    admin::AdminApi,
    audit::AuditApi,
    health::HealthApi,
    discovery::DiscoveryApi,
    introspect::IntrospectApi,
);

const DESCRIPTION: &str = "portcullis gives API clients what Django REST Framework's \
authentication gives Django projects: session cookies for browsers, opaque `Token` keys for \
mobile apps and scripts, and JWT access/refresh pairs, behind one authenticator chain tried \
in order, with DRF's status codes and error bodies.";

/// Every operation, sharing one state: poem-openapi clones an operation's object for each
/// request, so it holds one `Arc` rather than the state's dozen.
pub fn apis(state: &AppState) -> Apis {
    let state = std::sync::Arc::new(state.clone());
    (
        account::AccountApi { state: state.clone() },
        recovery::RecoveryApi { state: state.clone() },
        mfa::MfaApi { state: state.clone() },
        session::SessionApi { state: state.clone() },
        tokens::TokenApi { state: state.clone() },
        examples::ExamplesApi { state: state.clone() },
        admin::AdminApi { state: state.clone() },
        audit::AuditApi { state: state.clone() },
        health::HealthApi { state: state.clone() },
        discovery::DiscoveryApi { state: state.clone() },
        introspect::IntrospectApi { state },
    )
}

/// The operations as poem-openapi documents them (the spec and the Swagger UI).
pub fn service(state: &AppState) -> OpenApiService<Apis, ()> {
    OpenApiService::new(apis(state), "portcullis", env!("CARGO_PKG_VERSION")).description(DESCRIPTION)
}
