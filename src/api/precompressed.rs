//! A document built once at start-up (the Swagger UI page, the spec), served with an `ETag`
//! and, to clients that accept it, gzipped — compressed once, here, not per request.
//!
//! `Cache-Control: no-cache` (store, but revalidate) rather than versioned asset paths:
//! the page has one URL, `/docs/`, and carries its scripts and the spec inline, so there is
//! no asset to version without splitting the page up. Revalidating costs one round trip
//! answered by a 304 with an empty body, and a new release is seen at once.
//!
//! Only gzip: every client that compresses accepts it and `flate2` is already here. Brotli
//! would be smaller still, but no crate here encodes it (poem's `compression` feature pulls
//! in async-compression with brotli and zstd, to compress on every request).
use std::{io::Write, sync::Arc};

use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use poem::{
    Endpoint, Request, Response,
    endpoint::make_sync,
    http::{StatusCode, header},
};
use sha2::{Digest, Sha256};

pub struct Precompressed {
    content_type: &'static str,
    identity: Bytes,
    /// `None` if compressing failed (writing to memory does not): then identity only.
    gzip: Option<Bytes>,
    /// A strong validator per representation: the content coding changes the bytes.
    etag: String,
    gzip_etag: String,
}

impl Precompressed {
    pub fn new(body: impl Into<Vec<u8>>, content_type: &'static str) -> Self {
        let identity = Bytes::from(body.into());
        let tag = hex::encode(&Sha256::digest(&identity)[..16]);
        Self {
            content_type,
            gzip: gzip(&identity).map(Bytes::from),
            identity,
            etag: format!("\"{tag}\""),
            gzip_etag: format!("\"{tag}-gzip\""),
        }
    }

    /// The endpoint answering every request with this document.
    pub fn endpoint(self) -> impl Endpoint<Output = Response> {
        let doc = Arc::new(self);
        make_sync(move |req| doc.answer(&req))
    }

    fn answer(&self, req: &Request) -> Response {
        let gzipped = self.gzip.as_ref().filter(|_| req.header(header::ACCEPT_ENCODING).is_some_and(accepts_gzip));
        let (body, etag) = match gzipped {
            Some(gzip) => (gzip, &self.gzip_etag),
            None => (&self.identity, &self.etag),
        };
        let mut builder = Response::builder()
            .header(header::ETAG, etag.as_str())
            .header(header::CACHE_CONTROL, "no-cache")
            .header(header::VARY, "Accept-Encoding");
        if req.header(header::IF_NONE_MATCH).is_some_and(|tags| matches(tags, etag)) {
            return builder.status(StatusCode::NOT_MODIFIED).finish();
        }
        if gzipped.is_some() {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
        }
        builder.content_type(self.content_type).body(body.clone())
    }
}

/// The default level: `best` takes twice as long (0.1 s in a debug build, on every app
/// built) for 0.1% less of the docs page.
fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).ok()?;
    encoder.finish().ok()
}

/// Whether an `Accept-Encoding` value takes gzip: named with a non-zero `q`, or else `*` so.
fn accepts_gzip(accept: &str) -> bool {
    let weight = |codings: &[&str]| {
        accept.split(',').find_map(|item| {
            let mut parts = item.split(';');
            let coding = parts.next()?.trim();
            codings.iter().any(|c| coding.eq_ignore_ascii_case(c)).then(|| {
                let q = parts.find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")));
                q.map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0))
            })
        })
    };
    weight(&["gzip", "x-gzip"]).or_else(|| weight(&["*"])).is_some_and(|q| q > 0.0)
}

/// `If-None-Match` with RFC 9110's weak comparison: `*`, or one of the listed tags.
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_weights_are_honoured() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("br, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip("gzip; q=0.0"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(matches("\"a\"", "\"a\""));
        assert!(matches("\"b\", W/\"a\"", "\"a\""));
        assert!(matches("*", "\"a\""));
        assert!(!matches("\"a-gzip\"", "\"a\""));
    }
}
