//! The cancellation token: how SIGINT, SIGTERM and SIGHUP reach every wait of a process.
//!
//! Owns: [`Cancel`], the flag a signal handler sets and every long wait polls (a
//! supervised run, an admission queue, a file lock, a sleep between attempts).
//! Must not: act on a signal itself; the waiter decides what stopping means.
//!
//! It lives apart from `exec` so low layers (`fs` locks) can take it without depending
//! on process supervision; `exec::Cancel` re-exports it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A shared flag through which a caller asks a run to stop: holds the signal to forward
/// (0 = none). A second request escalates to SIGKILL at once.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    signal: Arc<AtomicUsize>,
    /// The token this one was made from ([`Cancel::linked`]): its request counts here too.
    parent: Option<Arc<AtomicUsize>>,
}

/// The token installed by [`Cancel::on_signals`], shared by everything in the process.
static PROCESS: Mutex<Option<Cancel>> = Mutex::new(None);

impl Cancel {
    /// A token nobody has triggered.
    pub fn new() -> Cancel {
        Cancel::default()
    }
    /// Ask the run to stop by forwarding `signal` to its tree.
    pub fn request(&self, signal: i32) {
        self.signal
            .store(usize::try_from(signal).unwrap_or(0), Ordering::SeqCst);
    }
    /// A token that is set when this one is (a signal reaches every wait it is passed
    /// to) and can also be set on its own, without touching this one: a workflow cancels
    /// the jobs it handed out (`--fail-fast` under a batch scheduler) through it while the
    /// process's own token keeps saying that no signal came.
    pub fn linked(&self) -> Cancel {
        Cancel {
            signal: Arc::new(AtomicUsize::new(0)),
            parent: Some(Arc::clone(&self.signal)),
        }
    }
    /// The pending signal, if any (the parent's first, for a [linked](Self::linked) token).
    pub fn pending(&self) -> Option<i32> {
        let parent = self.parent.as_ref().map_or(0, |p| p.load(Ordering::SeqCst));
        match parent {
            0 => match self.signal.load(Ordering::SeqCst) {
                0 => None,
                s => i32::try_from(s).ok(),
            },
            s => i32::try_from(s).ok(),
        }
    }
    /// Clear and return the pending signal (a [linked](Self::linked) token clears only
    /// its own request, never its parent's).
    pub fn take(&self) -> Option<i32> {
        match self.signal.swap(0, Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }
    /// The token set by SIGINT, SIGTERM and SIGHUP (their number is stored): from then on
    /// those signals no longer end this process; the caller forwards them to its runs.
    /// The handlers are installed once per process; later calls return the same token.
    pub fn on_signals() -> std::io::Result<Cancel> {
        let mut process = PROCESS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cancel) = process.as_ref() {
            return Ok(cancel.clone());
        }
        let cancel = Cancel::new();
        for sig in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            let value = usize::try_from(sig).unwrap_or(15);
            signal_hook::flag::register_usize(sig, cancel.cell(), value)?;
        }
        *process = Some(cancel.clone());
        Ok(cancel)
    }

    /// The process's signal token if [`on_signals`](Self::on_signals) installed one, else
    /// a token nobody triggers (signals then end the process as usual, which releases
    /// its locks). Waits that have no token of their own use this one, so no wait of a
    /// process that catches signals can ignore them.
    pub fn process() -> Cancel {
        PROCESS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Sleep for `d` unless a stop is requested first; true if the whole time passed.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        loop {
            if self.pending().is_some() {
                return false;
            }
            let left = end.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// The shared cell, for `signal_hook::flag::register_usize`.
    pub fn cell(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_sleep_stops_early_on_a_request_and_not_otherwise() {
        let c = Cancel::new();
        assert!(c.sleep(Duration::from_millis(20)));
        c.request(2);
        let start = std::time::Instant::now();
        assert!(!c.sleep(Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(c.pending(), Some(2), "sleep must not consume the request");
    }

    #[test]
    fn a_linked_token_sees_its_parent_and_its_own_request_stays_its_own() {
        let parent = Cancel::new();
        let child = parent.linked();
        assert_eq!(child.pending(), None);
        child.request(15);
        assert_eq!(child.pending(), Some(15));
        assert_eq!(parent.pending(), None, "the child's request stays its own");
        parent.request(2);
        assert_eq!(
            child.pending(),
            Some(2),
            "a signal to the parent outranks it"
        );
        assert_eq!(child.take(), Some(15));
        assert_eq!(parent.pending(), Some(2), "take never clears the parent");
        let fresh = parent.linked();
        assert_eq!(fresh.pending(), Some(2));
    }
}
