//! `SerdeJson<T>`: a JSON response body with poem-openapi's `Json<T>` media type, schema and
//! response meta (the spec cannot tell them apart), written by serde straight from `T`
//! instead of through `ToJSON`'s `serde_json::Value` (a map and a string per field, built
//! and dropped) and a content type parsed from text. For the bodies every request of a hot
//! path answers (`/healthz`, the example views); a test per type shows both write the same
//! bytes.
use poem::{IntoResponse, Response, http::HeaderValue, http::header::CONTENT_TYPE};
use poem_openapi::{
    ApiResponse,
    payload::Payload,
    registry::{MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

#[derive(Debug)]
pub struct SerdeJson<T>(pub T);

impl<T: Type> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = <poem_openapi::payload::Json<T> as Payload>::CONTENT_TYPE;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder().header(CONTENT_TYPE, HeaderValue::from_static(JSON)).body(body),
            // Only a map with non-string keys fails; these bodies are structs of strings.
            Err(e) => crate::error::ApiError::Internal(format!("serialising a response: {e}")).to_response(),
        }
    }
}

const JSON: &str = "application/json; charset=utf-8";

/// As poem-openapi's `Json<T>`: a 200 with this media type and `T`'s schema.
impl<T: Type + Serialize + Send> ApiResponse for SerdeJson<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType { content_type: Self::CONTENT_TYPE, schema: Self::schema_ref() }],
                headers: vec![],
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;
    use crate::api::{MessageBody, health::HealthBody};

    /// The bytes serde writes are the bytes poem-openapi's `ToJSON` writes, for every type
    /// answered through `SerdeJson`, with text that needs escaping.
    #[tokio::test]
    async fn serde_writes_what_poem_openapi_writes() {
        async fn same<T: ToJSON + Serialize + Send + Clone>(value: T) {
            let ours = SerdeJson(value.clone()).into_response();
            assert_eq!(ours.headers()[CONTENT_TYPE], JSON);
            let theirs = poem_openapi::payload::Json(value).into_response();
            assert_eq!(ours.into_body().into_vec().await.unwrap(), theirs.into_body().into_vec().await.unwrap());
        }
        for text in ["ok", "", "Hello, jöhn \"quoted\" \\ \u{0}\u{1f}\u{2028} 🎉"] {
            same(HealthBody { status: text.into() }).await;
            same(MessageBody { message: text.into() }).await;
        }
        assert_eq!(JSON, <poem_openapi::payload::Json<HealthBody> as Payload>::CONTENT_TYPE);
    }
}
