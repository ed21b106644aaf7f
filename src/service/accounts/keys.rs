//! The JWT signing key: rotated by an operator (`portcullis rotatekeys`), recorded in the
//! audit trail like every other change that decides which credentials are accepted.
use serde_json::json;

use super::Accounts;
use crate::{
    events::{EventKind, Events},
    service::{
        identity::Origin,
        jwt::{RotateError, Rotated},
    },
};

impl Accounts {
    /// A new signing key from now on, on every instance; the old one verifies (and stays in
    /// the JWKS) until every token it signed has expired. Refused for keys from the
    /// configuration, which portcullis cannot replace.
    pub async fn rotate_signing_key(&self, origin: &Origin) -> Result<Rotated, RotateError> {
        let rotated = self.jwt.rotate().await?;
        record_key_change(&self.events, &rotated, origin).await;
        Ok(rotated)
    }
}

/// The audit event of a key change (a rotation, or a key made at start-up).
pub async fn record_key_change(events: &Events, rotated: &Rotated, origin: &Origin) {
    let (previous, previous_not_after) = match &rotated.previous {
        Some((kid, at)) => (Some(kid.clone()), Some(at.to_rfc3339())),
        None => (None, None),
    };
    let detail = json!({
        "kid": rotated.kid,
        "algorithm": format!("{:?}", rotated.algorithm),
        "reason": rotated.reason,
        "published_for_seconds": rotated.published_for.map(|d| d.num_seconds()),
        "previous": previous,
        "previous_not_after": previous_not_after,
        "next": rotated.next,
    });
    let ctx = origin.event(None, Some(rotated.kid.chars().take(64).collect())).with_detail(detail);
    events.emit(EventKind::SigningKeyRotated, ctx).await;
}
