//! Liveness for load balancers.
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, serde_json_body::SerdeJson};
use crate::{error::ErrorDetail, state::AppState};

pub struct HealthApi {
    pub state: std::sync::Arc<AppState>,
}

#[derive(Debug, Clone, Object, serde::Serialize)]
pub struct HealthBody {
    /// "ok"
    pub status: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The database answered its last probe.
    #[oai(status = 200)]
    Up(SerdeJson<HealthBody>),
    /// The database did not answer its last probe.
    #[oai(status = 503)]
    Down(Json<ErrorDetail>),
}

#[OpenApi(tag = "ApiTags::Admin")]
impl HealthApi {
    /// Health check
    ///
    /// 200 when the database answered the background probe (run about once a second),
    /// 503 when it did not. Never touches the database itself, so polling it is free.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthResponse {
        if self.state.health.is_up() {
            HealthResponse::Up(SerdeJson(HealthBody { status: "ok".into() }))
        } else {
            HealthResponse::Down(Json(ErrorDetail { detail: "The database is not answering.".into() }))
        }
    }
}
