//! Noticing state changes: file notifications on `.claude/` (the state is replaced by
//! rename, so the directory is watched, not the file) plus a polling fallback that compares
//! the file's inode, size and mtime. Every change publishes a new [`Frame`] on a
//! `tokio::sync::watch` channel; slow clients simply skip to the newest frame, so memory
//! stays bounded however many clients listen.
//!
//! It also follows the event streams of running tasks (`agent::runs::Follow`, read
//! incrementally from where it stopped), so a frame is published when an agent does
//! something even if the state did not change.
//!
//! Runs on its own OS thread: reads are small, blocking, and must not stall the server.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Local;
use notify::Watcher as _;
use tokio::sync::watch;

use super::GaugeProvider;
use super::snapshot::{Frame, StateRead, log_tail, parse_state, read_state_bytes};
use super::view::{OverviewInputs, overview_fragment};
use crate::agent::runs::{Follow, output_file, run_dir};
use crate::project::Project;
use crate::state::UnifiedState;
use crate::workflow::status::{self, Activities, Inputs};

/// How the watcher behaves.
pub(crate) struct WatchConfig {
    pub project: Project,
    pub gauges: GaugeProvider,
    /// How often the state file's metadata is checked when notifications are silent.
    pub poll_interval: Duration,
    /// How often the page is re-rendered without a state change (gauges, elapsed times).
    pub refresh_interval: Duration,
}

/// (inode, size, mtime in ns) of the state file, or None when it is missing.
type Signature = Option<(u64, u64, i128)>;

fn signature(path: &std::path::Path) -> Signature {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.ino(),
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    ))
}

/// Owns the watcher thread; dropping it stops the thread (within one poll interval).
pub(crate) struct StateWatcher {
    stop: Arc<AtomicBool>,
    /// Wakes the thread so it sees `stop` at once instead of after a poll interval.
    wake: mpsc::SyncSender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StateWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read the state once, publish the first frame, and start watching.
pub(crate) fn start(
    cfg: WatchConfig,
) -> std::io::Result<(StateWatcher, watch::Receiver<Arc<Frame>>)> {
    let mut w = Worker::new(cfg);
    let first = w.read_frame();
    let (tx, rx) = watch::channel(Arc::new(first));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let (ev_tx, ev_rx) = mpsc::sync_channel::<()>(1);
    let wake = ev_tx.clone();
    let thread = std::thread::Builder::new()
        .name("qw-dashboard-watch".into())
        .spawn(move || w.run(&tx, &stop2, ev_tx, &ev_rx))?;
    Ok((
        StateWatcher {
            stop,
            wake,
            thread: Some(thread),
        },
        rx,
    ))
}

struct Worker {
    cfg: WatchConfig,
    state_path: PathBuf,
    seq: u64,
    last_sig: Signature,
    last_bytes: Option<Option<Vec<u8>>>,
    last_state: StateRead,
    last_good: Option<Arc<UnifiedState>>,
    /// The event streams of running tasks, by run id.
    follows: HashMap<String, Follow>,
}

impl Worker {
    fn new(cfg: WatchConfig) -> Worker {
        let state_path = cfg.project.state_file();
        Worker {
            state_path: state_path.clone(),
            cfg,
            seq: 0,
            last_sig: None,
            last_bytes: None,
            last_state: StateRead::Missing { path: state_path },
            last_good: None,
            follows: HashMap::new(),
        }
    }

    /// Read the state and render the first frame.
    fn read_frame(&mut self) -> Frame {
        self.reload();
        self.poll_runs();
        self.render()
    }

    /// Re-read the state file; true when what it says (content, absence, read error)
    /// differs from the last read.
    fn reload(&mut self) -> bool {
        self.last_sig = signature(&self.state_path);
        let bytes = match read_state_bytes(&self.state_path) {
            Ok(b) => b,
            Err(e) => {
                let changed = self.last_bytes.is_some()
                    || !matches!(self.last_state, StateRead::Corrupt { .. });
                self.last_bytes = None;
                self.last_state = StateRead::Corrupt {
                    path: self.state_path.clone(),
                    error: e.to_string(),
                };
                return changed;
            }
        };
        if self.last_bytes.as_ref() == Some(&bytes) {
            return false;
        }
        self.last_state = match &bytes {
            None => StateRead::Missing {
                path: self.state_path.clone(),
            },
            Some(b) => parse_state(&self.state_path, b),
        };
        if let Some(v) = self.last_state.state() {
            self.last_good = Some(Arc::clone(v));
        }
        self.last_bytes = Some(bytes);
        true
    }

    /// Follow the running tasks of the shown state (new runs from their start, finished
    /// ones dropped) and read what they appended; true when any wrote an event.
    fn poll_runs(&mut self) -> bool {
        let ids = self
            .last_state
            .state()
            .or(self.last_good.as_ref())
            .map(|s| status::running_run_ids(s))
            .unwrap_or_default();
        self.follows.retain(|id, _| ids.contains(id));
        let mut grew = false;
        for id in ids {
            if !self.follows.contains_key(&id) {
                let Some(path) = run_dir(&self.cfg.project, &id).and_then(|d| output_file(&d))
                else {
                    continue;
                };
                self.follows.insert(id.clone(), Follow::new(path));
            }
            if let Some(f) = self.follows.get_mut(&id) {
                grew |= f.poll().is_ok_and(|r| !r.is_empty());
            }
        }
        grew
    }

    fn render(&mut self) -> Frame {
        self.seq += 1;
        let now = Local::now();
        let gauges = (self.cfg.gauges)();
        let tail = log_tail(&self.cfg.project.logs_dir(), now);
        let activity: Activities = self
            .follows
            .iter()
            .map(|(id, f)| (id.clone(), f.activity().clone()))
            .collect();
        let shown = self.last_state.state().or(self.last_good.as_ref());
        let overview = shown.map(|s| {
            Arc::new(status::overview(
                s,
                &Inputs {
                    now,
                    profiling: false,
                    activity: &activity,
                },
            ))
        });
        let mut frame = Frame {
            seq: self.seq,
            state: self.last_state.clone(),
            last_good: self.last_good.clone(),
            read_at: now,
            overview,
            overview_html: maud::html! {},
        };
        frame.overview_html = overview_fragment(
            &frame,
            &OverviewInputs {
                gauges: &gauges,
                log_tail: &tail,
            },
        );
        frame
    }

    fn run(
        mut self,
        tx: &watch::Sender<Arc<Frame>>,
        stop: &AtomicBool,
        ev_tx: mpsc::SyncSender<()>,
        ev_rx: &mpsc::Receiver<()>,
    ) {
        let mut watcher =
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok() {
                    // A full channel already means "look again"; nothing is lost.
                    let _ = ev_tx.try_send(());
                }
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::debug!(
                        "dashboard: file notifications unavailable ({e}); polling only"
                    );
                    None
                }
            };
        let claude = self.cfg.project.claude_dir();
        let mut watching = false;
        let mut next_refresh = Instant::now() + self.cfg.refresh_interval;
        while !stop.load(Ordering::SeqCst) {
            // `.claude/` may appear after the dashboard started: keep trying to watch it.
            if !watching && let Some(w) = watcher.as_mut() {
                watching = w
                    .watch(&claude, notify::RecursiveMode::NonRecursive)
                    .is_ok();
            }
            let wait = self
                .cfg
                .poll_interval
                .min(next_refresh.saturating_duration_since(Instant::now()));
            let notified = match ev_rx.recv_timeout(wait) {
                Ok(()) => {
                    // Let a burst of events (write, rename, chmod) settle, then read once.
                    std::thread::sleep(Duration::from_millis(5));
                    while ev_rx.try_recv().is_ok() {}
                    true
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    watcher = None;
                    watching = false;
                    std::thread::sleep(wait);
                    false
                }
            };
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let sig = signature(&self.state_path);
            let changed = notified || sig != self.last_sig;
            let refresh_due = Instant::now() >= next_refresh;
            // A notification may be about another file in `.claude/` (the lock file,
            // a backup): only a different state, or the refresh timer, publishes.
            let state_changed = changed && self.reload();
            let agents_moved = self.poll_runs();
            if state_changed || agents_moved || refresh_due {
                tx.send_replace(Arc::new(self.render()));
                next_refresh = Instant::now() + self.cfg.refresh_interval;
            }
            if !claude.is_dir() {
                watching = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher of `project`, polling every 50 ms (no timed refresh).
    fn watching(project: &Project) -> (StateWatcher, watch::Receiver<Arc<Frame>>) {
        start(WatchConfig {
            project: project.clone(),
            gauges: Arc::new(super::super::Gauges::default),
            poll_interval: Duration::from_millis(50),
            refresh_interval: Duration::from_secs(3600),
        })
        .unwrap()
    }

    #[test]
    fn publishes_changes_corruption_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        crate::fs::create_dir_all(project.claude_dir()).unwrap();
        let (_w, mut rx) = watching(&project);
        assert!(matches!(rx.borrow().state, StateRead::Missing { .. }));
        let wait_for = |rx: &mut watch::Receiver<Arc<Frame>>, pred: &dyn Fn(&Frame) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if pred(&rx.borrow_and_update()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        crate::fs::write_durable(&project.state_file(), br#"{"specifications":{"a":{}}}"#).unwrap();
        assert!(wait_for(
            &mut rx,
            &|f| matches!(&f.state, StateRead::Ok(v) if v.specifications.contains_key("a"))
        ));
        crate::fs::write_durable(&project.state_file(), b"{not json").unwrap();
        assert!(wait_for(&mut rx, &|f| matches!(
            f.state,
            StateRead::Corrupt { .. }
        ) && f.last_good.is_some()));
        crate::fs::remove_file(project.state_file()).unwrap();
        assert!(wait_for(&mut rx, &|f| matches!(
            f.state,
            StateRead::Missing { .. }
        )));
    }

    #[test]
    fn publishes_what_a_running_agent_writes() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        crate::fs::create_dir_all(project.claude_dir()).unwrap();
        let run = "20260101T100000000-s-task-1-a1-abcdef";
        crate::fs::write_durable(
            &project.state_file(),
            serde_json::json!({"agents": {"active_tasks": ["1"]}, "specifications": {"s": {
                "tasks": {"1": {"id": "1", "status": "in_progress", "run_id": run}}}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let events = project.runs_dir().join(run).join("events.jsonl");
        crate::fs::create_dir_all(events.parent().unwrap()).unwrap();
        let stream = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");
        let first = stream.lines().next().unwrap();
        crate::fs::write(&events, format!("{first}\n")).unwrap();
        let (_w, mut rx) = watching(&project);
        let turns = |f: &Frame| {
            f.overview
                .as_ref()
                .and_then(|o| o.specs[0].running_tasks[0].turns)
        };
        assert_eq!(turns(&rx.borrow()), Some(0), "the init line is read");
        // The state does not change; the agent's next events alone publish a frame.
        crate::fs::write(&events, stream).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && turns(&rx.borrow_and_update()) != Some(2) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(turns(&rx.borrow()), Some(2));
        assert!(rx.borrow().overview_html.0.contains("→ Write"));
    }
}
