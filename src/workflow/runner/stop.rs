//! Whether new work may start: the one place that combines the reasons to stop.

use std::sync::Mutex;

use crate::exec::Cancel;
use crate::workflow::events::StopReason;

/// The most severe [`StopReason`] so far. A signal is read from the [`Cancel`] token
/// (set by the signal handlers) each time, so it is never missed and never consumed.
#[derive(Debug)]
pub(crate) struct Stop<'a> {
    cancel: &'a Cancel,
    requested: Mutex<Option<StopReason>>,
}

impl<'a> Stop<'a> {
    /// Nothing stops work yet (unless `cancel` carries a signal).
    pub(crate) fn new(cancel: &'a Cancel) -> Stop<'a> {
        Stop {
            cancel,
            requested: Mutex::new(None),
        }
    }

    /// Stop new work for `reason`; it replaces the current reason only if more severe.
    pub(crate) fn request(&self, reason: StopReason) {
        let mut current = self
            .requested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current
            .as_ref()
            .is_none_or(|c| reason.severity() > c.severity())
        {
            *current = Some(reason);
        }
    }

    /// Why no new work may start, if it may not: the most severe reason requested, or
    /// a pending signal, which outranks every other.
    pub(crate) fn reason(&self) -> Option<StopReason> {
        if let Some(signal) = self.signal() {
            return Some(StopReason::Signal { signal });
        }
        self.requested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// True when no new work may start.
    pub(crate) fn is_stopping(&self) -> bool {
        self.reason().is_some()
    }

    /// The signal that reached qw, if one did.
    pub(crate) fn signal(&self) -> Option<i32> {
        self.cancel.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_more_severe_reason_replaces_and_an_equal_one_does_not() {
        let cancel = Cancel::new();
        let stop = Stop::new(&cancel);
        assert_eq!(stop.reason(), None);
        stop.request(StopReason::FailFast { task: "1".into() });
        let ceiling = StopReason::CostCeiling {
            limit: "per_run".into(),
            limit_usd: 1.0,
            spent_usd: 1.0,
        };
        stop.request(ceiling.clone());
        stop.request(StopReason::UsageLimit {
            evidence: "later".into(),
            resets_at: None,
        });
        stop.request(StopReason::FailFast { task: "2".into() });
        assert_eq!(stop.reason(), Some(ceiling));
        cancel.request(15);
        assert_eq!(stop.reason(), Some(StopReason::Signal { signal: 15 }));
        assert_eq!(stop.signal(), Some(15));
        assert!(stop.is_stopping());
    }
}
