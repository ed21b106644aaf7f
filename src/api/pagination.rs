//! DRF's `PageNumberPagination`: `?page=N` (from 1) and `?page_size=N`, the envelope's
//! `next`/`previous` links, and 404 "Invalid page." past the end.
use poem::http::StatusCode;
use poem_openapi::{
    Object,
    types::{ParseFromJSON, ToJSON},
};
use serde_json::json;

use crate::error::ApiError;

/// DRF's `PageNumberPagination` envelope.
#[derive(Debug, Object)]
pub struct Page<T: ParseFromJSON + ToJSON> {
    pub count: u64,
    /// The next page's URL (path and query), or null.
    #[oai(nullable)]
    pub next: Option<String>,
    #[oai(nullable)]
    pub previous: Option<String>,
    pub results: Vec<T>,
}

pub const DEFAULT_SIZE: u64 = 100;
pub const MAX_SIZE: u64 = 1000;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// From 1.
    pub page: u64,
    pub size: u64,
}

impl PageRequest {
    pub fn new(page: Option<u64>, size: Option<u64>) -> Self {
        Self { page: page.unwrap_or(1), size: size.unwrap_or(DEFAULT_SIZE).clamp(1, MAX_SIZE) }
    }

    /// The page index from 0 for the store, or DRF's 404 when the page does not exist.
    /// Called with the total count once it is known.
    pub fn check(&self, count: u64) -> Result<(), ApiError> {
        let last = count.div_ceil(self.size).max(1);
        if self.page == 0 || self.page > last {
            return Err(ApiError::Body {
                status: StatusCode::NOT_FOUND,
                body: json!({"detail": "Invalid page."}),
                challenge: None,
            });
        }
        Ok(())
    }

    /// The envelope of one page of `count` items at `path` (other filters kept in `extra`).
    pub fn page<T: ParseFromJSON + ToJSON>(&self, path: &str, count: u64, extra: &str, results: Vec<T>) -> Page<T> {
        let (next, previous) = self.links(path, count, extra);
        Page { count, next, previous, results }
    }

    /// `next` and `previous` as paths with the query (other filters kept in `extra`).
    fn links(&self, path: &str, count: u64, extra: &str) -> (Option<String>, Option<String>) {
        let last = count.div_ceil(self.size).max(1);
        let link = |p: u64| format!("{path}?page={p}&page_size={}{extra}", self.size);
        ((self.page < last).then(|| link(self.page + 1)), (self.page > 1).then(|| link(self.page - 1)))
    }
}
