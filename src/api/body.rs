//! Request bodies as DRF's default parsers read them: JSON or form-encoded into one
//! `request.data` value, with DRF's errors for bad JSON (400), other media types (415),
//! bodies over `server.max_body_bytes` (413) and bodies not received within
//! `server.body_timeout` (408). The typed schema `T` is for the spec only;
//! fields are checked by `fields::Fields` so that errors come out as DRF's field map.
use std::marker::PhantomData;

use poem::{Request, RequestBody, error::ReadBodyError};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, Registry},
    types::Type,
};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// `REQUIRED = false`: an absent body reads as `{}` (as it always does in DRF); the spec
/// says the body is optional.
pub struct DrfBody<T, const REQUIRED: bool = true> {
    pub data: Value,
    _schema: PhantomData<fn() -> T>,
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

impl<'a, T: Type, const REQUIRED: bool> ApiExtractor<'a> for DrfBody<T, REQUIRED> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        let content = [JSON, FORM].map(|content_type| MetaMediaType { content_type, schema: T::schema_ref() });
        Some(MetaRequest { description: None, content: content.into(), required: REQUIRED })
    }

    async fn from_request(req: &'a Request, body: &mut RequestBody, _: ExtractParamOptions<()>) -> poem::Result<Self> {
        let limit = req.data::<BodyLimit>().map_or(1 << 20, |l| l.0);
        let data = parse(req, body, limit).await?;
        Ok(Self { data, _schema: PhantomData })
    }
}

/// `server.max_body_bytes`, put in every request's extensions by `app::framed`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Why a body could not be read, as DRF-shaped errors: 413 over `limit`; 408 when it did not
/// arrive within `server.body_timeout` (the server's deadline fails the read with `TimedOut`).
pub fn read_error(e: ReadBodyError, limit: usize) -> ApiError {
    match e {
        ReadBodyError::PayloadTooLarge => ApiError::PayloadTooLarge(limit),
        ReadBodyError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::Body {
            status: poem::http::StatusCode::REQUEST_TIMEOUT,
            body: serde_json::json!({ "detail": e.to_string() }),
            challenge: None,
        },
        other => ApiError::Parse(format!("Could not read the request body: {other}")),
    }
}

async fn parse(req: &Request, body: &mut RequestBody, limit: usize) -> Result<Value, ApiError> {
    let body = body.take().map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = body.into_bytes_limit(limit).await.map_err(|e| read_error(e, limit))?;
    let content_type = req.content_type().unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    // DRF: no content type means no data, whatever the body.
    if media_type.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    if media_type == JSON || (media_type.starts_with("application/") && media_type.ends_with("+json")) {
        if bytes.is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        return serde_json::from_slice(&bytes).map_err(|e| ApiError::Parse(format!("JSON parse error - {e}")));
    }
    if media_type == FORM {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|e| ApiError::Parse(format!("Form parse error - {e}")))?;
        // As Django's QueryDict.get: the last value of a repeated key wins.
        let map = pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return Ok(Value::Object(map));
    }
    Err(ApiError::UnsupportedMediaType(content_type.to_owned()))
}
