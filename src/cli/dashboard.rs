//! `qw dashboard`: serve the live local web view until SIGINT/SIGTERM.
//!
//! Binds, prints the tokenised URL as the first line of stdout, then hands over to
//! [`crate::dashboard::serve`]. Everything worth testing lives in the library module.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Args;

use super::{CliError, CmdResult, Ctx};
use crate::admission::{Admission, Probes};
use crate::dashboard::{self, DashboardConfig, GaugeProvider, Gauges};
use crate::exit;

/// Arguments of `qw dashboard`.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:\n  qw dashboard --port 8080 --open")]
pub struct DashboardArgs {
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind (loopback by default; anything else prints a warning).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Open the page in a browser.
    #[arg(long)]
    pub open: bool,
    /// Allow state-changing actions from the page (backup, soft reset).
    #[arg(long)]
    pub allow_actions: bool,
}

/// Parse `--bind`: an IP literal or `localhost`.
fn bind_ip(s: &str) -> Result<IpAddr, CliError> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            CliError::usage(format!(
                "invalid --bind address `{s}`: expected an IP address or `localhost` (host names are not looked up)"
            ))
            .hint("use `--bind 127.0.0.1` (the default), `--bind localhost` or `--bind ::1`")
        })
}

/// Run `qw dashboard`.
pub(crate) fn run(ctx: &Ctx, args: DashboardArgs) -> CmdResult {
    let ip = bind_ip(&args.bind)?;
    // Before the URL is printed: whoever reads it may flood the port at once.
    dashboard::raise_nofile_limit();
    let requested = SocketAddr::new(ip, args.port);
    let std_listener = std::net::TcpListener::bind(requested).map_err(|e| {
        CliError::failed(format!("cannot listen on `{requested}`: {e}"))
            .hint("choose another `--port`, or `--port 0` to pick a free one")
    })?;
    std_listener.set_nonblocking(true).map_err(|e| {
        CliError::failed(format!("cannot configure the socket on `{requested}`: {e}"))
    })?;
    let addr = std_listener
        .local_addr()
        .map_err(|e| CliError::failed(format!("cannot read the bound address: {e}")))?;
    if !ip.is_loopback() {
        crate::diag!(
            "qw: warning: serving on `{ip}`, which is not a loopback address: anyone who can reach it and has the URL can read this project's state{}",
            if args.allow_actions {
                " and run actions"
            } else {
                ""
            }
        );
    }
    let token = dashboard::new_token()
        .map_err(|e| CliError::failed(format!("cannot generate an access token: {e}")))?;
    let qw_exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the running `qw` binary: {e}")))?;
    let mut cfg = DashboardConfig::new(ctx.project.clone(), token.clone(), qw_exe);
    cfg.allow_actions = args.allow_actions;
    cfg.gauges = admission_gauges(super::resolve::admission(ctx.settings()?, None));
    let url = dashboard::url(addr, &token);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        // Signal handlers go in before the URL is printed: whoever reads the URL may
        // stop us at once, and must get a clean exit.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| CliError::failed(format!("cannot use the socket on `{addr}`: {e}")))?;
        announce(ctx, &url, addr, args.allow_actions);
        if args.open {
            open_browser(&url);
        }
        dashboard::serve(listener, cfg, shutdown)
            .await
            .map_err(|e| CliError::failed(e.to_string()))
    })?;
    Ok(exit::SUCCESS)
}

/// Gauges from the admission module: fresh probes and slot holders on every frame, the
/// limits resolved once at start (a settings file with a bad value stops the command
/// before, exit 2, like every command that reads the settings).
fn admission_gauges(admission: Admission) -> GaugeProvider {
    let Admission { limits, slots, .. } = admission;
    std::sync::Arc::new(move || {
        let probes = Probes::read();
        // PSI is a percentage; the gauges are fractions.
        let pct = |v: Option<f64>| v.map(|v| v / 100.0);
        Gauges {
            load_per_cpu: probes.load_per_cpu(),
            memory: probes.memory_used(),
            psi_cpu: pct(probes.cpu_pressure),
            psi_memory: pct(probes.memory_pressure),
            slots_used: u32::try_from(slots.in_use().len()).ok(),
            slots_max: u32::try_from(limits.max_concurrent).ok(),
            limit_load_per_cpu: Some(limits.max_load),
            limit_memory: Some(limits.max_memory),
        }
    })
}

/// Print the URL (or, with `--json`, an object holding it) as the first line of stdout,
/// flushed at once so a script or test can read it while the server runs.
fn announce(ctx: &Ctx, url: &str, addr: SocketAddr, allow_actions: bool) {
    let line = if ctx.global.json {
        serde_json::json!({
            "url": url,
            "address": addr.to_string(),
            "port": addr.port(),
            "allow_actions": allow_actions,
        })
        .to_string()
    } else {
        url.to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    if ctx.global.verbosity() != crate::logging::Verbosity::Quiet {
        crate::diag!(
            "qw: dashboard for `{}` ({}); Ctrl-C to stop",
            ctx.project.root().display(),
            if allow_actions {
                "actions enabled"
            } else {
                "read-only"
            }
        );
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let err = |e: std::io::Error| CliError::failed(format!("cannot install signal handlers: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(err)?;
    let mut term = signal(SignalKind::terminate()).map_err(err)?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Ask the desktop to open `url`; a failure is only a warning (the URL is printed).
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reap it in the background so it does not linger as a zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => crate::diag!(
            "qw: warning: could not run `{program}` to open the page: {e}; open the URL above yourself"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_takes_ip_literals_and_localhost_and_names_what_it_refuses() {
        assert_eq!(
            bind_ip("localhost").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            bind_ip("LOCALHOST").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(bind_ip("[::1]").unwrap(), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            bind_ip("0.0.0.0").unwrap(),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        let e = bind_ip("vm").unwrap_err();
        assert_eq!(e.code, crate::exit::USAGE);
        assert_eq!(
            e.message,
            "invalid --bind address `vm`: expected an IP address or `localhost` (host names are not looked up)"
        );
        assert!(
            e.hints.iter().any(|h| h.contains("--bind localhost")),
            "{:?}",
            e.hints
        );
    }
}
