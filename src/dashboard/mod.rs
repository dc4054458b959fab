//! `qw dashboard`: a live local web view of specs, tasks, running work (what each agent
//! is doing, the run's events step by step, a timeline of a spec's runs), admission
//! gauges, costs, errors and the log tail (CONTRACT §8).
//!
//! Owns the HTTP server ([`serve`]) and how it accepts connections (timeouts, caps,
//! shedding strangers: `conn`), its security (token, Host check, CSRF), watching the
//! state file and running tasks' event streams, and rendering HTML. It must not take the
//! state's write lock or write the state itself: it reads the file without a lock
//! (writers replace it by rename, so a read is never partial) into the one read model of
//! [`crate::workflow::status`], and the optional actions run the `qw` CLI as a child so
//! they are recorded exactly like the CLI's.
//!
//! Data flow: `watch` thread (notify + polling; follows running runs' `events.jsonl`) →
//! `snapshot::Frame` (typed state, activity, overview) on a tokio `watch` channel → page
//! handlers (server-rendered HTML through `view`, maud) and `/events` (server-sent events
//! carrying the re-rendered live fragment, which a 20-line embedded script swaps in).
//! Module dependencies point one way: `server` → `view` → `snapshot`, `run_log`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::project::Project;

mod actions;
mod conn;
mod run_log;
mod security;
mod server;
mod snapshot;
mod view;
mod watch;

pub(crate) use conn::{ConnLimits, raise_nofile_limit};
pub(crate) use security::new_token;
pub(crate) use server::serve;

/// Admission gauges as the dashboard draws them; every field is optional and shown as
/// "n/a" when absent. Fractions are 0..1 (load per CPU may exceed 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Gauges {
    /// 1-minute load average divided by usable CPUs.
    pub load_per_cpu: Option<f64>,
    /// Memory in use, 0..1.
    pub memory: Option<f64>,
    /// CPU pressure, PSI `some avg10`, as a fraction 0..1.
    pub psi_cpu: Option<f64>,
    /// Memory pressure, PSI `some avg10`, as a fraction 0..1.
    pub psi_memory: Option<f64>,
    /// Admission slots in use across the user's `qw` processes.
    pub slots_used: Option<u32>,
    /// Maximum admission slots.
    pub slots_max: Option<u32>,
    /// Configured load-per-CPU limit, drawn as a marker.
    pub limit_load_per_cpu: Option<f64>,
    /// Configured memory limit, drawn as a marker.
    pub limit_memory: Option<f64>,
}

/// Supplies the current gauges; called once per rendered frame (about every refresh
/// interval and on every state change), on the watcher thread.
pub(crate) type GaugeProvider = Arc<dyn Fn() -> Gauges + Send + Sync>;

/// Everything the server needs; build with [`DashboardConfig::new`] and adjust fields.
#[derive(Clone)]
pub(crate) struct DashboardConfig {
    /// The project whose `.claude/` is shown.
    pub project: Project,
    /// The access token required on every request (see [`new_token`]).
    pub token: String,
    /// Admission gauges (the CLI wires the admission module here).
    pub gauges: GaugeProvider,
    /// Whether the page may run `state-backup` and soft `workflow-reset`.
    pub allow_actions: bool,
    /// The `qw` binary that actions run (normally `std::env::current_exe()`).
    pub qw_exe: PathBuf,
    /// State-file polling interval when notifications are silent or unavailable.
    pub poll_interval: Duration,
    /// Re-render interval without state changes (gauges and elapsed times move).
    pub refresh_interval: Duration,
    /// Connection timeouts and caps.
    pub limits: ConnLimits,
}

impl std::fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("project", &self.project)
            .field("allow_actions", &self.allow_actions)
            .field("qw_exe", &self.qw_exe)
            .finish_non_exhaustive()
    }
}

impl DashboardConfig {
    /// Read-only defaults: no gauges, 500 ms polling, 2 s refresh, default limits.
    pub(crate) fn new(project: Project, token: String, qw_exe: PathBuf) -> DashboardConfig {
        DashboardConfig {
            project,
            token,
            gauges: Arc::new(Gauges::default),
            allow_actions: false,
            qw_exe,
            poll_interval: Duration::from_millis(500),
            refresh_interval: Duration::from_secs(2),
            limits: ConnLimits::default(),
        }
    }
}

/// The URL to print: `http://HOST:PORT/?token=…`.
pub(crate) fn url(addr: SocketAddr, token: &str) -> String {
    format!(
        "http://{}:{}/?token={token}",
        security::url_host(addr),
        addr.port()
    )
}

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DashboardError {
    /// The state watcher thread could not start.
    #[error("failed to start the state watcher: {0}")]
    Watcher(#[source] std::io::Error),
    /// The HTTP server failed while serving.
    #[error("the dashboard server failed: {0}")]
    Serve(#[source] std::io::Error),
}
