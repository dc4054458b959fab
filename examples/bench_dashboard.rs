//! Benchmark for `qw dashboard` (run through `scripts/bench-dashboard`).
//!
//! Prints requests per second for the main page (with a static asset through the same
//! guard as the reference ceiling of the server stack) and the time from a state write
//! to the server-sent event that carries it reaching a client (goal: p99 < 250 ms),
//! measured while other clients listen too.
//!
//! Usage: `bench_dashboard QW_BINARY [SECONDS]`
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURE: &str = include_str!("../tests/fixtures/python_unified_state.json");

fn state_with_marker(n: usize) -> String {
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    v["specifications"]["user-auth"]["description"] = format!("bench-marker-{n}-end").into();
    serde_json::to_string_pretty(&v).unwrap()
}

fn write_state(claude: &Path, contents: &str) {
    let tmp = claude.join(".unified_state.json.benchtmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, claude.join("unified_state.json")).unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Keep-alive GETs of `path` on `threads` connections for `dur`: (requests/s, sorted ms).
fn load(addr: &str, cookie: &str, path: &str, threads: usize, dur: Duration) -> (f64, Vec<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (addr, cookie, path, stop) = (
                addr.to_owned(),
                cookie.to_owned(),
                path.to_owned(),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let s = TcpStream::connect(&addr).unwrap();
                s.set_nodelay(true).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let req =
                    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
                let mut lat = Vec::new();
                let mut line = String::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    w.write_all(req.as_bytes()).unwrap();
                    let mut len = 0usize;
                    let mut status = 0;
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if status == 0 {
                            status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    assert_eq!(status, 200, "{path}");
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / dur.as_secs_f64(), all)
}

/// Open an event stream and return its reader positioned at the body.
fn sse(addr: &str, cookie: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    (&s).write_all(
        format!("GET /events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    r
}

fn main() {
    let mut args = std::env::args().skip(1);
    let qw = args
        .next()
        .expect("usage: bench_dashboard QW_BINARY [SECONDS]");
    let secs: u64 = args.next().map_or(5, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let claude = dir.path().join(".claude");
    std::fs::create_dir_all(&claude).unwrap();
    write_state(&claude, &state_with_marker(0));

    let mut child = Command::new(&qw)
        .arg("-C")
        .arg(dir.path())
        .arg("dashboard")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let rest = url.trim().strip_prefix("http://").unwrap();
    let (addr, token) = rest.split_once("/?token=").unwrap();
    let port = addr.rsplit_once(':').unwrap().1;
    let cookie = format!("qw_dashboard_{port}={token}");

    let threads = 4;
    let dur = Duration::from_secs(secs);
    let (page_rps, page_lat) = load(addr, &cookie, "/", threads, dur);
    let (css_rps, _) = load(addr, &cookie, "/assets/style.css", threads, dur);
    println!(
        "main page: {page_rps:.0} req/s on {threads} keep-alive connections (p50 {:.2} ms, p99 {:.2} ms)",
        percentile(&page_lat, 0.5),
        percentile(&page_lat, 0.99)
    );
    println!(
        "reference, static asset through the same guard: {css_rps:.0} req/s (main page at {:.0}% of it)",
        page_rps / css_rps * 100.0
    );

    // State write → SSE event latency, with 49 other clients listening.
    let background: Vec<_> = (0..49).map(|_| sse(addr, &cookie)).collect();
    let drainers: Vec<_> = background
        .into_iter()
        .map(|mut r| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
            })
        })
        .collect();
    let writes = (secs as usize * 20).max(100);
    let written: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; writes + 1]));
    let mut reader = sse(addr, &cookie);
    let w2 = Arc::clone(&written);
    let measure = std::thread::spawn(move || {
        let mut lat = Vec::new();
        let mut line = String::new();
        let mut last = 0;
        while last < writes {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let Some(at) = line.find("bench-marker-") else {
                continue;
            };
            let n: usize = line[at + 13..].split('-').next().unwrap().parse().unwrap();
            if n > last {
                let now = Instant::now();
                if let Some(t) = w2.lock().unwrap()[n] {
                    lat.push(now.duration_since(t).as_secs_f64() * 1000.0);
                }
                last = n;
            }
        }
        lat
    });
    std::thread::sleep(Duration::from_millis(300));
    for n in 1..=writes {
        written.lock().unwrap()[n] = Some(Instant::now());
        write_state(&claude, &state_with_marker(n));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let mut lat = measure.join().unwrap();
    let _ = child.wait();
    for d in drainers {
        let _ = d.join();
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "state write -> SSE event at a client (50 clients listening, 20 writes/s): {} of {writes} writes seen, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal p99 < 250 ms; polling alone would be up to 500 ms)",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}
