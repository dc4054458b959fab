//! `qw dashboard`: HTTP-level security and pages, live updates over SSE, state replaced
//! and corrupted under the server, 200 concurrent event streams, and a real headless
//! Chromium driven over WebDriver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{MarkerGuard, TestProject, marker, stdout, wait_until};

/// Signal one process by pid (never a group, never through the `kill` command).
fn send_signal(pid: u32, sig: Signal) {
    let pid = i32::try_from(pid).unwrap();
    assert!(pid > 1, "refusing to signal pid {pid}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

const FIXTURE: &str = include_str!("../fixtures/python_unified_state.json");

/// A running `qw dashboard`, stopped (TERM, then KILL) when dropped.
struct Dash {
    child: Option<Child>,
    /// `127.0.0.1:PORT`
    addr: String,
    token: String,
    _guard: MarkerGuard,
}

impl Dash {
    fn start(p: &TestProject, extra: &[&str]) -> Dash {
        Dash::start_wrapped(p, extra, |c| c)
    }

    /// Start through `wrap` (e.g. under `prlimit`), which must exec `qw` in place.
    fn start_wrapped(
        p: &TestProject,
        extra: &[&str],
        wrap: impl FnOnce(Command) -> Command,
    ) -> Dash {
        let m = marker();
        let mut args = vec!["dashboard"];
        args.extend_from_slice(extra);
        let mut child = wrap(p.qw(&args))
            .env("QW_TEST_MARKER", &m)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let guard = MarkerGuard(m);
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim();
        let rest = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("no URL on the first line: {line:?}"));
        let (addr, token) = rest.split_once("/?token=").unwrap();
        Dash {
            child: Some(child),
            addr: addr.to_owned(),
            token: token.to_owned(),
            _guard: guard,
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.as_ref().unwrap().id()).unwrap()
    }

    fn port(&self) -> u16 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    /// `GET path` with the token in the query (appended with `?` or `&`).
    fn get(&self, path: &str) -> Resp {
        let sep = if path.contains('?') { '&' } else { '?' };
        http(
            &self.addr,
            &format!(
                "GET {path}{sep}token={} HTTP/1.1\r\nHost: {}\r\n",
                self.token, self.addr
            ),
        )
    }

    fn post(&self, path: &str, form: &str, extra_headers: &str) -> Resp {
        http(
            &self.addr,
            &format!(
                "POST {path}?token={} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra_headers}\r\n{form}",
                self.token,
                self.addr,
                form.len()
            ),
        )
    }

    /// Stop with `sig` and return the exit status (None: had to be killed).
    fn stop(&mut self, sig: Signal, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        send_signal(child.id(), sig);
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        self.stop(Signal::SIGTERM, Duration::from_secs(5));
    }
}

/// `secret` with its last character changed, so it is certainly wrong.
fn altered(secret: &str) -> String {
    let last = if secret.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &secret[..secret.len() - 1])
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Send a raw request (head without the final blank line, or with a body after it) and
/// read the whole response (`Connection: close`).
fn http(addr: &str, request: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = if request.contains("\r\n\r\n") {
        request.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
    } else {
        format!("{request}Connection: close\r\n\r\n")
    };
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    Resp {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// A server-sent event stream read line by line.
struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    fn open(d: &Dash, path: &str) -> Sse {
        let s = TcpStream::connect(&d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut w = s.try_clone().unwrap();
        write!(
            w,
            "GET {path}{sep}token={} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            d.token, d.addr
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "SSE refused: {status}");
        // Skip the response head.
        loop {
            let mut l = String::new();
            reader.read_line(&mut l).unwrap();
            if l == "\r\n" || l.is_empty() {
                break;
            }
        }
        Sse { reader }
    }

    /// The data of the next `update` event (None on EOF or timeout). The body is chunked:
    /// chunk-size lines are skipped as they never start with a field name.
    fn next_update(&mut self) -> Option<String> {
        let mut data = String::new();
        let mut is_update = false;
        loop {
            let mut l = String::new();
            match self.reader.read_line(&mut l) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = l.trim_end_matches(['\r', '\n']);
            if let Some(d) = l.strip_prefix("data: ") {
                data.push_str(d);
                data.push('\n');
            } else if l == "event: update" {
                is_update = true;
            } else if l.is_empty() && is_update && !data.is_empty() {
                return Some(data);
            } else if l.is_empty() && !data.is_empty() {
                data.clear();
            }
        }
    }

    /// Read updates until one satisfies `pred` (or `timeout` passes).
    fn until(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let ev = self.next_update()?;
            if pred(&ev) {
                return Some(ev);
            }
        }
        None
    }
}

/// Replace the state the way qw's writers do: temp file in the same directory + rename.
fn write_state(p: &TestProject, contents: &str) {
    let dir = p.claude();
    let tmp = dir.join(format!(".unified_state.json.tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join("unified_state.json")).unwrap();
}

fn project_with_fixture() -> TestProject {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", FIXTURE);
    p.write(
        ".claude/specs/user-auth/requirements.md",
        "# Requirements\n\n<script>alert('pwned')</script>\n\n1. Users log in with **email**.\n",
    );
    p
}

/// The fixture with task 1.1 of `user-auth` set to `status`.
fn fixture_with_task_status(status: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    v["specifications"]["user-auth"]["tasks"]["1.1"]["status"] = status.into();
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn dashboard_pages_need_the_token_and_a_matching_host() {
    let p = project_with_fixture();
    let d = Dash::start(&p, &[]);
    assert_eq!(d.token.len(), 32, "128-bit hex token");

    // Every page answers with the token, and is readable without JavaScript.
    let home = d.get("/");
    assert_eq!(home.status, 200, "{home:?}");
    assert!(home.body.contains("href=\"/spec/user-auth\""));
    assert!(
        home.body.contains("Add password hashing"),
        "running task listed"
    );
    assert!(
        home.body.contains("Timeout after 300s"),
        "recent error listed"
    );
    assert!(home.body.contains("id=\"gauge-load\""), "gauges shown");
    let cookie = home.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        home.header("content-security-policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    for path in ["/spec/user-auth", "/assets/app.js", "/assets/style.css"] {
        assert_eq!(d.get(path).status, 200, "{path}");
    }
    let spec = d.get("/spec/user-auth");
    assert!(spec.body.contains("id=\"task-1.1\""), "{}", spec.body);
    assert!(spec.body.contains("href=\"/spec/user-auth/requirements\""));
    let doc = d.get("/spec/user-auth/requirements");
    assert_eq!(doc.status, 200);
    assert!(doc.body.contains("<strong>email</strong>"));
    assert!(
        !doc.body.contains("<script>alert"),
        "raw HTML escaped: {}",
        doc.body
    );
    assert!(doc.body.contains("&lt;script&gt;"));
    assert_eq!(d.get("/spec/user-auth/design").status, 404);
    assert_eq!(d.get("/spec/..%2Fetc").status, 404);
    assert_eq!(d.get("/nope").status, 404);
    let mut sse = Sse::open(&d, "/events");
    assert!(sse.next_update().unwrap().contains("user-auth"));

    // No token, a wrong token, or a foreign Host: refused.
    let host = format!("Host: {}\r\n", d.addr);
    for path in ["/", "/spec/user-auth", "/assets/app.js", "/events"] {
        let r = http(&d.addr, &format!("GET {path} HTTP/1.1\r\n{host}"));
        assert_eq!(r.status, 401, "{path} without token");
        assert!(!r.body.contains("user-auth"), "nothing leaks: {}", r.body);
        let wrong = altered(&d.token);
        let r = http(
            &d.addr,
            &format!("GET {path}?token={wrong} HTTP/1.1\r\n{host}"),
        );
        assert_eq!(r.status, 401, "{path} with wrong token");
    }
    for bad_host in [
        "evil.example".to_owned(),
        format!("evil.example:{}", d.port()),
        format!("127.0.0.1:{}", d.port() ^ 1),
    ] {
        let r = http(
            &d.addr,
            &format!("GET /?token={} HTTP/1.1\r\nHost: {bad_host}\r\n", d.token),
        );
        assert_eq!(r.status, 403, "Host {bad_host}");
    }
    let r = http(&d.addr, &format!("GET /?token={} HTTP/1.1\r\n", d.token));
    assert_eq!(r.status, 403, "no Host header");

    // After the first visit the cookie alone is enough, also via `localhost`.
    let kv = cookie.split(';').next().unwrap();
    let r = http(
        &d.addr,
        &format!(
            "GET /spec/user-auth HTTP/1.1\r\nHost: localhost:{}\r\nCookie: {kv}\r\n",
            d.port()
        ),
    );
    assert_eq!(r.status, 200);
    let r = http(
        &d.addr,
        &format!(
            "GET / HTTP/1.1\r\n{host}Cookie: {}=notthetoken\r\n",
            kv.split('=').next().unwrap()
        ),
    );
    assert_eq!(r.status, 401);
}

/// The hidden CSRF field of a confirmation page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 32].to_owned()
}

/// The text of the value cell of gauge row `id` on a page.
fn gauge_value(page: &str, id: &str) -> String {
    let row_start = page
        .find(&format!("id=\"gauge-{id}\""))
        .unwrap_or_else(|| panic!("no gauge-{id} row: {page}"));
    let row = &page[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    let cell = row.rfind("class=\"value\">").unwrap();
    let value = &row[cell + "class=\"value\">".len()..];
    value[..value.find('<').unwrap()].to_owned()
}

#[test]
fn dashboard_gauges_show_probes_limits_and_slots_from_admission() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 987, "max_memory": 0.97, "high_impact_load": 1000, "max_concurrent": 5}}"#,
    );
    // Hold one admission slot in this project's runtime directory for the whole test.
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let mut holder = p
        .qw(&["exec", "--admit", "--", "sleep", "60"])
        .env("QW_TEST_MARKER", &m)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let holds_slot = wait_until(Duration::from_secs(30), || {
        let o = p.run(&["--json", "resources"]);
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).is_ok_and(|v| {
            v["slots"]["in_use"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        })
    });
    assert!(holds_slot, "the holder never took a slot");

    let d = Dash::start(&p, &[]);
    let home = d.get("/");
    assert_eq!(home.status, 200, "{home:?}");
    let load = gauge_value(&home.body, "load");
    let (value, limit) = load
        .split_once(" (limit ")
        .unwrap_or_else(|| panic!("no limit on the load gauge: {load:?}"));
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("load gauge not numeric: {load:?}"));
    assert!(value >= 0.0, "{load}");
    assert_eq!(limit, "987.00)", "{load}");
    let memory = gauge_value(&home.body, "memory");
    assert!(memory.ends_with(" (limit 0.97)"), "{memory}");
    let used: f64 = memory.split_once(' ').unwrap().0.parse().unwrap();
    assert!((0.0..=1.0).contains(&used), "{memory}");
    assert!(
        home.body.contains("<span class=\"value\">1 / 5</span>"),
        "one of five slots in use: {}",
        home.body
    );

    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn dashboard_actions_need_allow_actions_csrf_and_confirmation() {
    let p = project_with_fixture();
    let before = p.read(".claude/unified_state.json");

    // Read-only by default: no confirmation page, no action.
    let ro = Dash::start(&p, &[]);
    assert_eq!(ro.get("/confirm/backup").status, 403);
    assert_eq!(ro.get("/confirm/reset/user-auth").status, 403);
    let r = ro.post("/actions/backup", "csrf=x&confirm=yes", "");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--allow-actions"), "{}", r.body);
    assert!(!ro.get("/").body.contains("/confirm/backup"));
    drop(ro);

    let d = Dash::start(&p, &["--allow-actions"]);
    assert!(d.get("/").body.contains("href=\"/confirm/backup\""));
    let confirm = d.get("/confirm/backup");
    assert_eq!(confirm.status, 200);
    let csrf = csrf_of(&confirm.body);
    assert_eq!(
        d.post("/actions/backup", "confirm=yes", "").status,
        403,
        "no CSRF"
    );
    let wrong = altered(&csrf);
    assert_eq!(
        d.post("/actions/backup", &format!("csrf={wrong}&confirm=yes"), "")
            .status,
        403,
        "wrong CSRF"
    );
    assert_eq!(
        d.post("/actions/backup", &format!("csrf={csrf}"), "")
            .status,
        400,
        "not confirmed"
    );
    let origin = "Origin: http://evil.example\r\n";
    assert_eq!(
        d.post(
            "/actions/backup",
            &format!("csrf={csrf}&confirm=yes"),
            origin
        )
        .status,
        403,
        "cross-site origin"
    );
    // Invalid names never reach a child process.
    assert_eq!(d.get("/confirm/reset/Bad_Name").status, 400);
    let r = d.post(
        "/actions/reset",
        &format!("csrf={csrf}&confirm=yes&spec=..%2F..%2Fetc"),
        "",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        p.read(".claude/unified_state.json"),
        before,
        "nothing touched"
    );
    assert!(!p.claude().join("backups").exists(), "no action ran");

    // The real thing runs `qw -C <project> state-backup` as a child, like the CLI.
    let origin = format!("Origin: http://{}\r\n", d.addr);
    let r = d.post(
        "/actions/backup",
        &format!("csrf={csrf}&confirm=yes"),
        &origin,
    );
    assert!(r.body.contains("state-backup</code>"), "{}", r.body);
    let code: i32 = {
        let at = r.body.find("id=\"exit-code\">").unwrap() + "id=\"exit-code\">".len();
        r.body[at..].split('<').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        r.status == 200,
        code == 0,
        "status follows the child's exit code"
    );
    if code == 0 {
        let backups = std::fs::read_dir(p.claude().join("backups/state"))
            .unwrap()
            .count();
        assert!(backups >= 1, "a backup was written");
    }
}

#[test]
fn dashboard_banner_follows_state_replaced_corrupted_and_restored() {
    let p = project_with_fixture();
    let d = Dash::start(&p, &[]);
    let mut sse = Sse::open(&d, "/events?spec=user-auth");
    let first = sse.next_update().unwrap();
    assert!(first.contains("data-status=\"in_progress\""), "{first}");
    assert!(!first.contains("id=\"banner\""));
    let long = Duration::from_secs(10);

    write_state(&p, &fixture_with_task_status("completed"));
    sse.until(long, |e| {
        e.contains("id=\"task-1.1\" class=\"st-completed\"")
    })
    .expect("replaced state pushed");

    write_state(&p, "{\"specifications\": {\"user-auth\": ");
    let ev = sse
        .until(long, |e| e.contains("id=\"banner\""))
        .expect("corruption banner pushed");
    assert!(ev.contains("cannot be read"), "{ev}");
    assert!(
        ev.contains("id=\"task-1.1\""),
        "last good state still shown"
    );
    let page = d.get("/spec/user-auth");
    assert_eq!(page.status, 200, "server keeps serving");
    assert!(page.body.contains("id=\"banner\""));

    std::fs::remove_file(p.claude().join("unified_state.json")).unwrap();
    sse.until(long, |e| e.contains("No state file"))
        .expect("missing-state banner pushed");
    assert_eq!(d.get("/").status, 200);

    write_state(&p, FIXTURE);
    sse.until(long, |e| {
        !e.contains("id=\"banner\"") && e.contains("data-status=\"in_progress\"")
    })
    .expect("banner gone after restore");
    let home = d.get("/");
    assert_eq!(home.status, 200);
    assert!(!home.body.contains("id=\"banner\""));
}

#[test]
fn dashboard_stops_cleanly_on_sigint_and_sigterm_with_clients_connected() {
    let p = project_with_fixture();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let mut d = Dash::start(&p, &[]);
        let mut sse = Sse::open(&d, "/events");
        assert!(sse.next_update().is_some());
        let st = d
            .stop(sig, Duration::from_secs(10))
            .expect("exited by itself");
        assert_eq!(st.code(), Some(0), "signal {sig:?}");
        // The stream ends (EOF, not the 15 s read timeout) once the server is gone.
        let start = Instant::now();
        let mut buffered = 0;
        while sse.next_update().is_some() {
            buffered += 1;
            assert!(buffered < 5, "stream still open");
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "stream not closed"
        );
    }
}

#[test]
fn dashboard_refuses_bad_bind_and_warns_off_loopback() {
    let p = project_with_fixture();
    let out = p.run(&["dashboard", "--bind", "not-an-ip"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(crate::support::stderr(&out).contains("not-an-ip"));

    let m = marker();
    let _g = MarkerGuard(m.clone());
    let mut child = p
        .qw(&["--json", "dashboard", "--bind", "0.0.0.0"])
        .env("QW_TEST_MARKER", &m)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["url"].as_str().unwrap().contains("?token="), "{v}");
    send_signal(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn dashboard_serves_200_event_streams_while_the_state_changes_20_times_a_second() {
    const CLIENTS: usize = 200;
    let run_for = Duration::from_secs(10);
    let p = project_with_fixture();
    let d = Dash::start(&p, &[]);
    let pid = d.pid();
    let rss_before = rss_kib(pid);

    let stop_at = Instant::now() + run_for;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = d.addr.clone();
            let token = d.token.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || -> Result<usize, String> {
                    let s = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))
                        .map_err(|e| e.to_string())?;
                    let path = if i % 2 == 0 {
                        "/events".to_owned()
                    } else {
                        "/events?spec=user-auth".to_owned()
                    };
                    (&s).write_all(
                        format!(
                            "GET {path}{}token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n",
                            if i % 2 == 0 { '?' } else { '&' }
                        )
                        .as_bytes(),
                    )
                    .map_err(|e| e.to_string())?;
                    let mut r = BufReader::new(s);
                    let mut events = 0;
                    let mut line = String::new();
                    r.read_line(&mut line).map_err(|e| e.to_string())?;
                    if !line.contains(" 200 ") {
                        return Err(format!("status line {line:?}"));
                    }
                    while Instant::now() < stop_at {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) => return Err("stream ended early".into()),
                            Ok(_) => {
                                if line.starts_with("event: update") {
                                    events += 1;
                                }
                            }
                            Err(e) => {
                                return Err(format!("read failed after {events} events: {e}"));
                            }
                        }
                    }
                    Ok(events)
                })
                .unwrap()
        })
        .collect();

    // 20 writes a second, alternating task 1.1's status.
    let mut writes = 0;
    let mut rss_peak = 0;
    let mut home_failures = 0;
    while Instant::now() < stop_at {
        let status = if writes % 2 == 0 {
            "completed"
        } else {
            "in_progress"
        };
        write_state(&p, &fixture_with_task_status(status));
        writes += 1;
        if writes % 20 == 0 {
            rss_peak = rss_peak.max(rss_kib(pid));
            if d.get("/").status != 200 {
                home_failures += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut counts = Vec::new();
    for c in clients {
        match c.join().unwrap() {
            Ok(n) => counts.push(n),
            Err(e) => panic!("an SSE client failed: {e}"),
        }
    }
    let rss_after = rss_kib(pid);
    rss_peak = rss_peak.max(rss_after);
    let min = *counts.iter().min().unwrap();
    let total: usize = counts.iter().sum();
    eprintln!(
        "200 SSE clients, {writes} state writes: events per client min {min}, total {total}; RSS {rss_before} KiB before, peak {rss_peak} KiB"
    );
    assert_eq!(home_failures, 0, "the page kept answering");
    assert!(writes >= 50, "the writer kept up ({writes})");
    // Frames coalesce for slow clients, so not every write reaches every client, but
    // every client must keep receiving.
    assert!(min >= 10, "a client starved: {counts:?}");
    assert!(
        rss_peak < 256 * 1024 && rss_peak < rss_before + 150 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB"
    );
}

/// A free loopback port (bound then released; a race with another process is unlikely).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver in its own process group, killed (group and marker) when dropped.
struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
    session: Option<String>,
    _guard: MarkerGuard,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{s}", self.base))
                .call();
        }
        // Through nix, not the `kill` command: procps-ng 4 parses `kill -9 -PGID` as
        // `kill(-1, SIGKILL)`, which would end every process on the machine.
        let pgid = i32::try_from(self.child.id()).unwrap();
        if pgid > 1 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `_guard` then kills anything left carrying the marker (e.g. a browser that
        // moved to its own process group).
    }
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let m = marker();
        let guard = MarkerGuard(m.clone());
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .env("QW_TEST_MARKER", &m)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let d = Driver {
            child,
            base,
            agent,
            session: None,
            _guard: guard,
        };
        let ready = wait_until(Duration::from_secs(20), || {
            d.agent
                .get(&format!("{}/status", d.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .is_some_and(|b| b.contains("\"ready\":true"))
        });
        assert!(ready, "chromedriver did not become ready");
        d
    }

    fn send(&self, method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            _ => self.agent.get(&url).call(),
        };
        let text = resp.unwrap().body_mut().read_to_string().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {path}: {text}"
        );
        v
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_ref().unwrap())
    }

    fn script(&self, js: &str) -> serde_json::Value {
        let p = self.session_path("/execute/sync");
        self.send("POST", &p, &serde_json::json!({"script": js, "args": []}))["value"].clone()
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Minimal standard base64 decoder for the screenshot.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

#[test]
fn dashboard_in_headless_chromium_shows_a_task_complete_without_reloading() {
    let (Some(chromium), Some(chromedriver)) = (
        which("chromium").or_else(|| which("chromium-browser")),
        which("chromedriver"),
    ) else {
        panic!(
            "chromium and chromedriver are required: `apt-get install chromium chromium-driver` (.ci/run installs them)"
        );
    };
    let p = project_with_fixture();
    let dash = Dash::start(&p, &[]);
    let profile = tempfile::tempdir().unwrap();
    let mut driver = Driver::start(&chromedriver);
    let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1280,900",
            ]
        }
    }}});
    let created = driver.send("POST", "/session", &caps);
    driver.session = Some(created["value"]["sessionId"].as_str().unwrap().to_owned());

    let url = format!("http://{}/spec/user-auth?token={}", dash.addr, dash.token);
    driver.send(
        "POST",
        &driver.session_path("/url"),
        &serde_json::json!({"url": url}),
    );
    let status_js = "var r = document.getElementById('task-1.1'); return r ? r.getAttribute('data-status') : null;";
    assert_eq!(driver.script(status_js), "in_progress");
    // A marker on `window` survives only if the page is never reloaded.
    driver.script("window.qwNoReload = 'still here'; return null;");
    assert!(
        wait_until(Duration::from_secs(15), || driver
            .script("return document.getElementById('conn').className;")
            == "conn on"),
        "the event stream never connected"
    );

    // The workflow command is not built yet, so the test plays the running workflow:
    // it rewrites the state as a task's completion would (task 1.1 in_progress →
    // completed), atomically, as qw's writers do.
    write_state(&p, &fixture_with_task_status("completed"));
    let changed = wait_until(Duration::from_secs(15), || {
        driver.script(status_js) == "completed"
    });
    assert!(changed, "the row never turned completed");
    assert_eq!(
        driver.script("return window.qwNoReload || null;"),
        "still here",
        "the page was reloaded"
    );

    let shot = driver.send(
        "GET",
        &driver.session_path("/screenshot"),
        &serde_json::Value::Null,
    );
    let png = base64_decode(shot["value"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard-task-completed.png"), png).unwrap();
}

const STREAM: &str = include_str!("../fixtures/claude_stream_json_write.jsonl");

/// A spec `greeter` whose task 1 completed in run `r1` and whose task 2.1 runs now in
/// run `r2` (its event stream cut after the tool call).
fn project_with_runs() -> (TestProject, String, String) {
    let p = TestProject::new();
    let r1 = "20260101T100000000-greeter-task-1-a1-aaaaaa".to_owned();
    let r2 = "20260101T100100000-greeter-task-2.1-a1-bbbbbb".to_owned();
    p.write(
        ".claude/unified_state.json",
        &serde_json::json!({
            "agents": {"active_tasks": ["2.1"]},
            "specifications": {"greeter": {
                "name": "greeter", "current_phase": "implementation",
                "created_at": "2026-01-01T09:59:00Z",
                "tasks": {
                    "1": {"id": "1", "status": "completed", "description": "Make <it>", "attempts": 1,
                          "run_id": r1, "completed_at": "2026-01-01T10:00:40Z"},
                    "2.1": {"id": "2.1", "status": "in_progress", "description": "Write hello",
                            "agent": "claude", "attempts": 1, "run_id": r2,
                            "started_at": "2026-01-01T10:01:00Z"}}}}
        })
        .to_string(),
    );
    p.write(&format!(".claude/runs/{r1}/prompt.md"), "Do task 1 <now>");
    p.write(&format!(".claude/runs/{r1}/events.jsonl"), STREAM);
    p.write(&format!(".claude/runs/{r1}/verify.log"), "ok\n");
    let lines: Vec<&str> = STREAM.lines().collect();
    p.write(&format!(".claude/runs/{r2}/prompt.md"), "Do task 2.1");
    p.write(
        &format!(".claude/runs/{r2}/events.jsonl"),
        &format!("{}\n{}\n", lines[0], lines[1]),
    );
    // Another spec's run, which greeter's pages must not serve.
    p.write(
        ".claude/runs/20260101T100100000-other-task-1-a1-cccccc/events.jsonl",
        STREAM,
    );
    (p, r1, r2)
}

#[test]
fn dashboard_links_tasks_to_their_runs_and_draws_the_timeline_live() {
    let (p, r1, r2) = project_with_runs();
    let d = Dash::start(&p, &[]);

    // The overview and the spec page say what the running agent does.
    let home = d.get("/");
    assert!(home.body.contains("→ Write"), "{}", home.body);
    let spec = d.get("/spec/greeter");
    assert_eq!(spec.status, 200);
    let b = &spec.body;
    assert!(b.contains("<svg class=\"timeline\""), "{b}");
    assert!(
        b.contains(&format!("href=\"/spec/greeter/run/{r1}\"")),
        "{b}"
    );
    assert!(
        b.contains(&format!("href=\"/spec/greeter/run/{r2}\"")),
        "{b}"
    );
    assert!(b.contains("class=\"run end-completed\""));
    assert!(b.contains("class=\"run end-running\""));
    assert!(b.contains("Make &lt;it&gt;"));
    assert!(
        b.contains("http-equiv=\"refresh\""),
        "reloads itself without JavaScript"
    );

    // A finished run: its steps, its prompt, its verify log.
    let run1 = d.get(&format!("/spec/greeter/run/{r1}"));
    assert_eq!(run1.status, 200, "{}", run1.body);
    assert!(run1.body.contains("→ Write"), "{}", run1.body);
    assert!(run1.body.contains("result: success"));
    assert!(run1.body.contains("Do task 1 &lt;now&gt;"));
    assert!(run1.body.contains("id=\"run-turns\">2<"));

    // A running one updates live as the agent writes.
    let mut sse = Sse::open(&d, &format!("/events?spec=greeter&run={r2}"));
    let first = sse.next_update().unwrap();
    assert!(
        first.contains("→ Write") && !first.contains("result:"),
        "{first}"
    );
    let rest: String = STREAM.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p.claude().join(format!("runs/{r2}/events.jsonl")))
        .unwrap();
    f.write_all(rest.as_bytes()).unwrap();
    drop(f);
    sse.until(Duration::from_secs(15), |e| e.contains("result: success"))
        .expect("the run's end pushed");

    // Runs that are not this spec's, or not runs at all, are not served.
    for bad in [
        "20260101T100100000-other-task-1-a1-cccccc".to_owned(),
        "..%2F..%2Fetc".to_owned(),
        "20260101T100100000-greeter-task-9-a1-dddddd".to_owned(),
    ] {
        let r = d.get(&format!("/spec/greeter/run/{bad}"));
        assert_eq!(r.status, 404, "{bad}");
        let r = d.get(&format!("/events?spec=greeter&run={bad}"));
        assert_eq!(r.status, 404, "stream of {bad}");
    }
}

/// Open descriptors of `pid`.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// `c` run under `prlimit --nofile=LIMIT` (util-linux), which execs it in place.
fn under_prlimit(c: Command, nofile: &str) -> Command {
    let mut w = Command::new("prlimit");
    w.arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

/// The soft open-file limit of `pid`, from `/proc/PID/limits`.
fn soft_nofile(pid: i32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[test]
fn dashboard_answers_the_owner_while_1100_strangers_hold_sockets() {
    const IDLE: usize = 1000;
    const HALF_SENT: usize = 50;
    const SLOW: usize = 50;
    // This test holds 1 100 sockets itself.
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = 4096.min(hard);
    if soft < want {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, hard)
            .unwrap();
    }
    assert!(
        want >= 1500,
        "the test needs 1 500 descriptors; the hard limit is {hard}"
    );

    // The soft limit is raised to the hard one at start.
    let p = project_with_fixture();
    let d = Dash::start_wrapped(&p, &[], |c| under_prlimit(c, "1024:4096"));
    assert_eq!(soft_nofile(d.pid()), 4096);
    drop(d);

    // The usual 1 024, soft and hard.
    let d = Dash::start_wrapped(&p, &[], |c| under_prlimit(c, "1024:1024"));
    let pid = d.pid();
    assert_eq!(d.get("/").status, 200);
    // The owner's live stream, open before the strangers come: never shed.
    let mut sse = Sse::open(&d, "/events?spec=user-auth");
    assert!(sse.next_update().is_some());
    let baseline = fd_count(pid);

    let connect =
        || TcpStream::connect_timeout(&d.addr.parse().unwrap(), Duration::from_secs(10)).ok();
    let mut strangers: Vec<TcpStream> = (0..IDLE).filter_map(|_| connect()).collect();
    for _ in 0..HALF_SENT {
        if let Some(mut s) = connect() {
            let _ =
                s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", d.addr).as_bytes());
            strangers.push(s);
        }
    }
    let slow: Vec<TcpStream> = (0..SLOW).filter_map(|_| connect()).collect();
    assert!(
        strangers.len() + slow.len() >= 1000,
        "the strangers could connect"
    );
    // Slow loris: one byte a second on each, until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let loris = std::thread::spawn(move || {
        let mut slow = slow;
        let head = b"GET / HTTP/1.1\r\nX-A: b";
        let mut i = 0;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            for s in &mut slow {
                let _ = s.write_all(&[head[i.min(head.len() - 1)]]);
            }
            i += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
    });

    // The owner is answered (the harness bounds the wait at 20 s per read).
    let page = d.get("/spec/user-auth");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"task-1.1\""));
    // A stranger without a token still gets nothing.
    let r = http(&d.addr, &format!("GET / HTTP/1.1\r\nHost: {}\r\n", d.addr));
    assert_eq!(r.status, 401);
    // The owner's stream was not shed: it still receives changes.
    write_state(&p, &fixture_with_task_status("completed"));
    sse.until(Duration::from_secs(20), |e| {
        e.contains("data-status=\"completed\"")
    })
    .expect("the owner's stream survived the strangers");
    assert!(
        fd_count(pid) < 1024,
        "below the open-file limit: {}",
        fd_count(pid)
    );

    // The strangers leave: the server's descriptors return to the baseline.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    loris.join().unwrap();
    drop(strangers);
    let back = wait_until(Duration::from_secs(30), || fd_count(pid) <= baseline);
    assert!(back, "descriptors {} > baseline {baseline}", fd_count(pid));
    assert_eq!(d.get("/").status, 200);
}
