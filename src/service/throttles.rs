//! DRF's `AnonRateThrottle` and `UserRateThrottle` (`throttle.anon`, `throttle.user`): every
//! request counts, per client IP for anonymous callers and per user otherwise; a refusal is
//! a security event.
use std::sync::Arc;

use serde_json::json;

use super::identity::{Identity, Origin};
use crate::{
    config,
    events::{EventKind, Events},
    throttle::Window,
};

#[derive(Clone)]
pub struct RequestThrottles {
    anon: Arc<Window>,
    user: Arc<Window>,
    events: Events,
}

impl RequestThrottles {
    pub fn new(settings: &config::Throttle, events: Events) -> Self {
        Self { anon: Arc::new(Window::new(settings.anon)), user: Arc::new(Window::new(settings.user)), events }
    }

    /// `Err(seconds)` when the caller must wait; the refusal is recorded.
    pub async fn check(&self, identity: Option<&Identity>, origin: &Origin) -> Result<(), u64> {
        let (scope, result) = match identity {
            Some(identity) if self.user.enabled() => ("user", self.user.allow(&identity.user.id.to_string())),
            None if self.anon.enabled() => {
                ("anon", self.anon.allow(&origin.ip.map_or_else(|| "unknown".into(), |ip| ip.to_string())))
            }
            _ => return Ok(()),
        };
        if let Err(wait) = result {
            let user = identity.map(|i| i.user.as_ref());
            let ctx = origin.event(user, None).with_detail(json!({"scope": scope, "retry_after": wait}));
            self.events.emit(EventKind::Throttled, ctx).await;
        }
        result
    }
}
