//! Whether new work may start, and whether work already handed out is cancelled: the one
//! place that combines the reasons to stop.

use std::sync::Mutex;

use crate::exec::Cancel;
use crate::workflow::events::StopReason;

/// The most severe [`StopReason`] so far. A signal is read from the [`Cancel`] token
/// (set by the signal handlers) each time, so it is never missed and never consumed.
///
/// Jobs get [`Stop::jobs`], a token linked to the signal token: a signal reaches them,
/// and so does a reason that [cancels submitted work](StopReason::cancels_submitted)
/// (SIGTERM, as Ctrl-C would, so the executor ends them the same way).
#[derive(Debug)]
pub(crate) struct Stop<'a> {
    cancel: &'a Cancel,
    jobs: Cancel,
    scheduled: bool,
    requested: Mutex<Option<StopReason>>,
}

/// The signal a job is cancelled with when a reason other than a signal stops it.
const CANCEL_SIGNAL: i32 = 15;

impl<'a> Stop<'a> {
    /// Nothing stops work yet (unless `cancel` carries a signal). `scheduled`: the
    /// executor is a batch scheduler ([`crate::exec::Executor::schedules`]).
    pub(crate) fn new(cancel: &'a Cancel, scheduled: bool) -> Stop<'a> {
        Stop {
            cancel,
            jobs: cancel.linked(),
            scheduled,
            requested: Mutex::new(None),
        }
    }

    /// The token every job runs under: set by a signal, or by a reason that cancels
    /// submitted work.
    pub(crate) fn jobs(&self) -> &Cancel {
        &self.jobs
    }

    /// Whether running jobs were told to end for a reason that is not a signal.
    pub(crate) fn cancelled_jobs(&self) -> bool {
        self.signal().is_none() && self.jobs.pending().is_some()
    }

    /// Stop new work for `reason`; it replaces the current reason only if more severe.
    /// A reason that cancels submitted work also cancels the running jobs.
    pub(crate) fn request(&self, reason: StopReason) {
        if reason.cancels_submitted(self.scheduled) && self.jobs.pending().is_none() {
            self.jobs.request(CANCEL_SIGNAL);
        }
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

    /// Whether `reason` cancels the running jobs under this executor.
    pub(crate) fn cancels(&self, reason: &StopReason) -> bool {
        reason.cancels_submitted(self.scheduled)
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
        let stop = Stop::new(&cancel, false);
        assert_eq!(stop.reason(), None);
        stop.request(StopReason::FailFast { task: "1".into() });
        let ceiling = StopReason::CostCeiling {
            limit: "per_run".into(),
            limit_usd: 1.0,
            spent_usd: 1.0,
            expected_usd: 0.0,
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

    #[test]
    fn fail_fast_and_a_ceiling_cancel_jobs_only_under_a_batch_scheduler() {
        let ceiling = || StopReason::CostCeiling {
            limit: "per_run".into(),
            limit_usd: 1.0,
            spent_usd: 1.0,
            expected_usd: 0.0,
        };
        let fail = || StopReason::FailFast { task: "1".into() };
        let usage = || StopReason::UsageLimit {
            evidence: "x".into(),
            resets_at: None,
        };
        for (reason, local, scheduled) in [
            (fail(), false, true),
            (ceiling(), false, true),
            (usage(), false, false),
        ] {
            for (sched, want) in [(false, local), (true, scheduled)] {
                let cancel = Cancel::new();
                let stop = Stop::new(&cancel, sched);
                stop.request(reason.clone());
                assert_eq!(stop.jobs().pending().is_some(), want, "{reason:?} {sched}");
                assert_eq!(stop.cancelled_jobs(), want);
                assert_eq!(stop.signal(), None, "no signal is made up");
            }
        }
        let cancel = Cancel::new();
        let stop = Stop::new(&cancel, false);
        cancel.request(2);
        assert_eq!(stop.jobs().pending(), Some(2), "a signal reaches every job");
        assert!(!stop.cancelled_jobs());
    }
}
