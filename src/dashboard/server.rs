//! The HTTP side: routes, the guard every request passes (Host, token, headers), pages,
//! the server-sent event streams and the action endpoints. Connections are accepted by
//! [`super::conn`] (timeouts, caps, shedding strangers).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt as _};
use maud::{Markup, html};
use serde::Deserialize;
use tokio::sync::watch;

use super::actions::{self, Action};
use super::conn::{self, ConnHandle};
use super::run_log::RunLog;
use super::security::{cookie_name, cookie_value, ct_eq, host_allowed, new_token, query_value};
use super::snapshot::{Frame, file_tail};
use super::view::{self, RunInfo, url_segment};
use super::watch::{WatchConfig, start};
use super::{DashboardConfig, DashboardError};
use crate::agent::runs::{self, RunUnit};
use crate::names::{NameKind, validate};
use crate::workflow::status::{self, RunEnd, Timeline};

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How long open connections (event streams, keep-alive) get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Without JavaScript, live pages reload themselves this often.
const RELOAD_SECS: u32 = 5;
/// Spec pages remembered at once (one render per spec and frame, shared by viewers).
const SPEC_CACHE: usize = 64;
/// How much of a run's prompt, stderr and verify log a run page shows.
const FILE_TAIL_BYTES: u64 = 16 * 1024;

/// A spec page's live fragment for one frame, and the timeline it drew.
type SpecView = (u64, Markup, Option<Arc<Timeline>>);

/// Shared by every handler.
struct App {
    cfg: DashboardConfig,
    /// The bound address, for the Host check and the cookie name.
    addr: SocketAddr,
    /// The newest frame; every page and stream renders from it.
    frames: watch::Receiver<Arc<Frame>>,
    /// Flips to true on shutdown so event streams end and the server can drain.
    stopping: watch::Receiver<bool>,
    /// Required in every POST form; distinct from the access token so a leaked page
    /// source does not leak access, and vice versa.
    csrf: String,
    /// The newest rendering of each viewed spec page, by spec name.
    spec_views: Mutex<HashMap<String, SpecView>>,
}

type Shared = Arc<App>;

/// Serve the dashboard on `listener` until `shutdown` resolves, then drain for at most a
/// few seconds. The state is watched from a separate thread for as long as this runs.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    cfg: DashboardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    let addr = listener.local_addr().map_err(DashboardError::Serve)?;
    let (watcher, frames) = start(WatchConfig {
        project: cfg.project.clone(),
        gauges: Arc::clone(&cfg.gauges),
        poll_interval: cfg.poll_interval,
        refresh_interval: cfg.refresh_interval,
    })
    .map_err(DashboardError::Watcher)?;
    let (stop_tx, stopping) = watch::channel(false);
    let csrf = new_token().map_err(|e| {
        DashboardError::Serve(std::io::Error::other(format!(
            "cannot generate a CSRF token: {e}"
        )))
    })?;
    let limits = cfg.limits;
    let app = Arc::new(App {
        cfg,
        addr,
        frames,
        stopping: stopping.clone(),
        csrf,
        spec_views: Mutex::new(HashMap::new()),
    });
    let server = conn::serve(listener, router(app), limits, stopping, SHUTDOWN_GRACE);
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = shutdown => {
            stop_tx.send_replace(true);
            server.await;
        }
    }
    drop(watcher);
    Ok(())
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/spec/{name}", get(spec_page))
        .route("/spec/{name}/run/{run}", get(run_page))
        .route("/spec/{name}/{doc}", get(doc_page))
        .route("/events", get(events))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/confirm/backup", get(confirm_backup))
        .route("/confirm/reset/{name}", get(confirm_reset))
        .route("/actions/backup", post(action_backup))
        .route("/actions/reset", post(action_reset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

/// A refused request, rendered as [`error_page`] (small, so `Result`s stay small).
struct Refusal {
    status: StatusCode,
    title: &'static str,
    message: Markup,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_page(self.status, self.title, self.message)
    }
}

/// A small HTML error page with a status code.
fn error_page(status: StatusCode, title: &str, message: Markup) -> Response {
    (
        status,
        view::page(title, None, None, view::error_body(title, message)),
    )
        .into_response()
}

/// Every request: Host check (403), token from the query or the cookie (401), then the
/// response gets the cookie (on the first visit) and headers that keep it local. A
/// request that passes marks its connection as the owner's, which is never shed.
async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_allowed(host, app.addr) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Forbidden host",
            html! {
                "The Host header " code { (host) } " does not name this dashboard's address; open the URL printed by "
                code { "qw dashboard" } "."
            },
        );
    }
    let token = app.cfg.token.as_bytes();
    let cookie_ok = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .filter_map(|h| cookie_value(h, &cookie_name(app.addr.port())))
        .any(|v| ct_eq(v.as_bytes(), token));
    let query_ok = req
        .uri()
        .query()
        .and_then(|q| query_value(q, "token"))
        .is_some_and(|v| ct_eq(v.as_bytes(), token));
    if !cookie_ok && !query_ok {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "Token required",
            html! {
                "Open the full URL printed by " code { "qw dashboard" } " (it ends in "
                code { "?token=…" } ")."
            },
        );
    }
    if let Some(c) = req.extensions().get::<ConnHandle>() {
        c.authenticate();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if query_ok && !cookie_ok {
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            cookie_name(app.addr.port()),
            app.cfg.token
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    // The token is in the first URL: never send it to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn back_to_overview() -> Markup {
    html! { "go back to the " a href="/" { "overview" } "." }
}

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        html! { "No such page; " (back_to_overview()) },
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

async fn style_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
}

fn project_line(app: &App) -> Markup {
    html! {
        p.project {
            "Project " code { (app.cfg.project.root().display()) }
            @if app.cfg.allow_actions { " · actions enabled" } @else { " · read-only" }
        }
    }
}

async fn overview(State(app): State<Shared>) -> Response {
    let frame = app.frames.borrow().clone();
    let body = html! {
        h1 { "Overview" }
        (project_line(&app))
        div #live { (frame.overview_html) }
        @if app.cfg.allow_actions {
            section #actions { h2 { "Actions" } p { a.button href="/confirm/backup" { "Back up the state…" } } }
        }
    };
    view::page("Overview", Some("/events"), Some(RELOAD_SECS), body).into_response()
}

/// Spec names as they may appear in a state (the Python system was not strict about
/// kebab-case): the general safe-name rule, so the name is also a safe path component.
fn viewable_spec(name: &str) -> Result<(), Refusal> {
    validate(NameKind::Backup, name).map_err(|e| Refusal {
        status: StatusCode::NOT_FOUND,
        title: "No such spec",
        message: html! { (e.to_string()) "; " (back_to_overview()) },
    })
}

/// The spec page's live fragment for the current frame: rendered once per frame and
/// spec, whoever asks (the timeline lists the spec's run folders).
fn spec_view(app: &App, frame: &Frame, name: &str) -> (Markup, Option<Arc<Timeline>>) {
    let cache = |m: &Mutex<HashMap<String, SpecView>>| {
        m.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .filter(|(seq, _, _)| *seq == frame.seq)
            .map(|(_, html, tl)| (html.clone(), tl.clone()))
    };
    if let Some(hit) = cache(&app.spec_views) {
        return hit;
    }
    let timeline = frame.shown_state().and_then(|state| {
        let runs = runs::list(&app.cfg.project, name).unwrap_or_default();
        status::timeline(state, name, &runs, frame.read_at.to_utc()).map(Arc::new)
    });
    let html = view::spec_fragment(frame, name, timeline.as_deref());
    let mut views = app
        .spec_views
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if views.len() >= SPEC_CACHE && !views.contains_key(name) {
        views.clear();
    }
    views.insert(name.to_owned(), (frame.seq, html.clone(), timeline.clone()));
    (html, timeline)
}

async fn spec_page(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    if let Err(r) = viewable_spec(&name) {
        return r.into_response();
    }
    let frame = app.frames.borrow().clone();
    let (live, _) = spec_view(&app, &frame, &name);
    let dir = app.cfg.project.spec_dir(&name);
    let body = html! {
        h1 { "Spec " code { (name) } }
        (project_line(&app))
        nav.docs {
            "Documents: "
            @for (doc, files) in view::DOCUMENTS {
                @if files.iter().any(|f| dir.join(f).is_file()) {
                    a href={ "/spec/" (url_segment(&name)) "/" (doc) } { (doc) } " "
                } @else {
                    span.missing { (doc) } " "
                }
            }
        }
        div #live { (live) }
        @if app.cfg.allow_actions {
            section #actions {
                h2 { "Actions" }
                p { a.button href={ "/confirm/reset/" (url_segment(&name)) } { "Soft-reset this workflow…" } }
            }
        }
    };
    let src = format!("/events?spec={}", url_segment(&name));
    view::page(&format!("Spec {name}"), Some(&src), Some(RELOAD_SECS), body).into_response()
}

async fn doc_page(
    State(app): State<Shared>,
    Path((name, doc)): Path<(String, String)>,
) -> Response {
    if let Err(r) = viewable_spec(&name) {
        return r.into_response();
    }
    let Some((_, files)) = view::DOCUMENTS.iter().find(|(d, _)| *d == doc) else {
        return not_found().await;
    };
    let dir = app.cfg.project.spec_dir(&name);
    let Some(path) = files.iter().map(|f| dir.join(f)).find(|p| p.is_file()) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such document",
            html! { "Spec " code { (name) } " has no " (doc) " document yet." },
        );
    };
    let path2 = path.clone();
    let root = app.cfg.project.root().to_path_buf();
    let text = match blocking("Cannot read document", move || {
        crate::spec::read_document(&root, &path2)
    })
    .await
    {
        Ok(t) => t,
        Err(page) => return page,
    };
    let body = html! {
        p.crumbs {
            a href={ "/spec/" (url_segment(&name)) } { (name) } " / " (doc) " "
            small { code { (path.display()) } }
        }
        article.markdown { (view::markdown(&text)) }
    };
    view::page(&format!("{name} {doc}"), None, None, body).into_response()
}

/// A run of a spec, checked: a run id of the spec's that names an existing folder.
struct RunRef {
    spec: String,
    id: String,
    unit: RunUnit,
    attempt: u32,
    dir: std::path::PathBuf,
}

fn find_run(app: &App, spec: &str, run: &str) -> Result<RunRef, Refusal> {
    let missing = || Refusal {
        status: StatusCode::NOT_FOUND,
        title: "No such run",
        message: html! {
            "Spec " code { (spec) } " has no run " code { (run) } " in " code { ".claude/runs/" }
            " (old runs are pruned); go back to the " a href={ "/spec/" (url_segment(spec)) } { "spec" } "."
        },
    };
    viewable_spec(spec)?;
    let (unit, attempt, _) = runs::parse_run_name(run, spec).ok_or_else(missing)?;
    let dir = runs::run_dir(&app.cfg.project, run).ok_or_else(missing)?;
    if !dir.is_dir() {
        return Err(missing());
    }
    Ok(RunRef {
        spec: spec.to_owned(),
        id: run.to_owned(),
        unit,
        attempt,
        dir,
    })
}

/// How the run ended, from the spec's timeline for this frame.
fn run_end(app: &App, frame: &Frame, run: &RunRef) -> Option<RunEnd> {
    let (_, timeline) = spec_view(app, frame, &run.spec);
    timeline?
        .lanes
        .iter()
        .flatten()
        .find(|r| r.run_id == run.id)
        .map(|r| r.end.clone())
}

fn run_fragment(run: &RunRef, log: &RunLog, end: Option<&RunEnd>, seq: u64) -> Markup {
    view::run_fragment(
        &RunInfo {
            spec: &run.spec,
            run_id: &run.id,
            unit: &run.unit,
            attempt: run.attempt,
            end,
        },
        log,
        seq,
    )
}

async fn run_page(
    State(app): State<Shared>,
    Path((name, run)): Path<(String, String)>,
) -> Response {
    let run = match find_run(&app, &name, &run) {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let frame = app.frames.borrow().clone();
    let mut log = RunLog::new(&run.dir);
    log.poll();
    let end = run_end(&app, &frame, &run);
    let files: Vec<(&str, Option<String>)> = ["prompt.md", "stderr.log", "verify.log"]
        .into_iter()
        .map(|f| {
            let text = file_tail(&run.dir.join(f), FILE_TAIL_BYTES)
                .filter(|(t, _)| !t.trim().is_empty())
                .map(|(t, cut)| if cut { format!("…\n{t}") } else { t });
            (f, text)
        })
        .collect();
    let info = RunInfo {
        spec: &run.spec,
        run_id: &run.id,
        unit: &run.unit,
        attempt: run.attempt,
        end: end.as_ref(),
    };
    let title = match &run.unit {
        RunUnit::Task(id) => format!("Task {id}"),
        RunUnit::Phase(p) => format!("Phase {p}"),
    };
    let body = html! {
        h1 { (title) @if run.attempt > 0 { ", attempt " (run.attempt) } }
        (view::run_header(&info, &files))
        div #live { (run_fragment(&run, &log, end.as_ref(), frame.seq)) }
    };
    let src = format!(
        "/events?spec={}&run={}",
        url_segment(&run.spec),
        url_segment(&run.id)
    );
    view::page(
        &format!("{} {title}", run.spec),
        Some(&src),
        Some(RELOAD_SECS),
        body,
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Stream the live fragment of this spec's page instead of the overview.
    spec: Option<String>,
    /// With `spec`: stream this run's page.
    run: Option<String>,
}

/// Server-sent events: the current live fragment at once, then one per change.
async fn events(State(app): State<Shared>, Query(q): Query<EventsQuery>) -> Response {
    let stream = match (q.spec, q.run) {
        (Some(spec), Some(run)) => match find_run(&app, &spec, &run) {
            Ok(r) => run_stream(app, r).boxed(),
            Err(refusal) => return refusal.into_response(),
        },
        (Some(spec), None) => match viewable_spec(&spec) {
            Ok(()) => fragment_stream(app, Some(spec)).boxed(),
            Err(refusal) => return refusal.into_response(),
        },
        (None, _) => fragment_stream(app, None).boxed(),
    };
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn update(seq: u64, html: Markup) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("update")
        .id(seq.to_string())
        .data(html.into_string()))
}

/// The next frame, or None when the server stops.
async fn next_frame(
    frames: &mut watch::Receiver<Arc<Frame>>,
    stopping: &mut watch::Receiver<bool>,
) -> Option<Arc<Frame>> {
    if *stopping.borrow() {
        return None;
    }
    tokio::select! {
        r = frames.changed() => r.ok()?,
        _ = stopping.wait_for(|s| *s) => return None,
    }
    Some(frames.borrow_and_update().clone())
}

fn fragment_stream(
    app: Shared,
    spec: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let frames = app.frames.clone();
    let stopping = app.stopping.clone();
    futures_util::stream::unfold(
        (app, frames, stopping, spec, true),
        |(app, mut frames, mut stopping, spec, first)| async move {
            let frame = if first {
                if *stopping.borrow() {
                    return None;
                }
                frames.borrow_and_update().clone()
            } else {
                next_frame(&mut frames, &mut stopping).await?
            };
            let html = match &spec {
                Some(name) => spec_view(&app, &frame, name).0,
                None => frame.overview_html.clone(),
            };
            Some((
                update(frame.seq, html),
                (app, frames, stopping, spec, false),
            ))
        },
    )
}

/// A run page's stream: the log is followed for this viewer; an update is sent when the
/// agent wrote something or the run's end changed.
fn run_stream(app: Shared, run: RunRef) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let frames = app.frames.clone();
    let stopping = app.stopping.clone();
    let log = RunLog::new(&run.dir);
    futures_util::stream::unfold(
        (app, frames, stopping, run, log, None::<Option<RunEnd>>),
        |(app, mut frames, mut stopping, run, mut log, mut sent_end)| async move {
            loop {
                let frame = if sent_end.is_none() {
                    if *stopping.borrow() {
                        return None;
                    }
                    frames.borrow_and_update().clone()
                } else {
                    next_frame(&mut frames, &mut stopping).await?
                };
                let grew = log.poll();
                let end = run_end(&app, &frame, &run);
                if grew || sent_end.as_ref() != Some(&end) {
                    let html = run_fragment(&run, &log, end.as_ref(), frame.seq);
                    sent_end = Some(end);
                    return Some((
                        update(frame.seq, html),
                        (app, frames, stopping, run, log, sent_end),
                    ));
                }
            }
        },
    )
}

fn actions_disabled() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "Actions are disabled",
        message: html! {
            "This dashboard is read-only; restart it with " code { "qw dashboard --allow-actions" }
            " to back up or reset from the page."
        },
    }
}

fn confirm_page(
    app: &App,
    title: &str,
    what: Markup,
    post_to: &str,
    spec: Option<&str>,
) -> Response {
    let body = html! {
        h1 { (title) }
        p { (what) }
        form method="post" action=(post_to) {
            input type="hidden" name="csrf" value=(app.csrf);
            input type="hidden" name="confirm" value="yes";
            @if let Some(s) = spec { input type="hidden" name="spec" value=(s); }
            button type="submit" #confirm { "Confirm" } " "
            a href="/" { "Cancel" }
        }
    };
    view::page(title, None, None, body).into_response()
}

async fn confirm_backup(State(app): State<Shared>) -> Response {
    if !app.cfg.allow_actions {
        return actions_disabled().into_response();
    }
    confirm_page(
        &app,
        "Back up the state",
        html! {
            "Copy " code { ".claude/unified_state.json" } " to " code { ".claude/backups/state/" }
            " by running " code { "qw state-backup" } "."
        },
        "/actions/backup",
        None,
    )
}

async fn confirm_reset(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    if !app.cfg.allow_actions {
        return actions_disabled().into_response();
    }
    if let Err(e) = Action::soft_reset(&name) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid spec name",
            html! { (e.to_string()) },
        );
    }
    confirm_page(
        &app,
        &format!("Soft-reset {name}"),
        html! {
            "Run " code { "qw workflow-reset " (name) " --yes" } ": the state is backed up first, then tasks in progress, failed or blocked go back to pending and the phase returns to the one after the last completed phase. No file is touched."
        },
        "/actions/reset",
        Some(&name),
    )
}

#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    spec: Option<String>,
}

/// Checks shared by every action POST; `Err` is the refusal to send.
fn check_action(app: &App, headers: &HeaderMap, form: &ActionForm) -> Result<(), Refusal> {
    if !app.cfg.allow_actions {
        return Err(actions_disabled());
    }
    // A cross-site form post names its own origin; refuse anything but ours.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = origin.strip_prefix("http://").unwrap_or("");
        if !host_allowed(host, app.addr) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                title: "Forbidden origin",
                message: html! { "Requests from " code { (origin) } " are refused." },
            });
        }
    }
    let csrf_ok = form
        .csrf
        .as_deref()
        .is_some_and(|c| ct_eq(c.as_bytes(), app.csrf.as_bytes()));
    if !csrf_ok {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            title: "Missing or wrong CSRF token",
            message: html! {
                "Start the action from the dashboard page (reload it if the server was restarted)."
            },
        });
    }
    if form.confirm.as_deref() != Some("yes") {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            title: "Not confirmed",
            message: html! { "Confirm the action on its confirmation page first." },
        });
    }
    Ok(())
}

/// Run blocking work off the async runtime; a failure (or a panicked task) becomes an
/// error page titled `title`.
async fn blocking<T, E>(
    title: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Response>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let fail = |e: &dyn std::fmt::Display| {
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            title,
            html! { (e.to_string()) },
        )
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(fail(&e)),
        Err(e) => Err(fail(&e)),
    }
}

async fn run_action(app: Shared, action: Action) -> Response {
    let exe = app.cfg.qw_exe.clone();
    let root = app.cfg.project.root().to_path_buf();
    let a2 = action.clone();
    let out = match blocking("Action failed to start", move || {
        actions::run(&exe, &root, &a2)
    })
    .await
    {
        Ok(o) => o,
        Err(page) => return page,
    };
    let ok = out.code == Some(0);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = html! {
        h1 { @if ok { "Done" } @else { "The action failed" } }
        p {
            code #command { (out.command) } " exited with "
            strong #exit-code { (out.code.map_or_else(|| "a signal".to_owned(), |c| c.to_string())) } "."
        }
        h2 { "Output" }
        pre #stdout { (out.stdout) }
        pre #stderr { (out.stderr) }
        p { a href="/" { "Back to the overview" } }
    };
    (status, view::page("Action result", None, None, body)).into_response()
}

/// The form an action posts, as axum reads it.
type PostedForm = Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>;

/// An action's form (empty when it cannot be read), once [`check_action`] allowed it.
fn checked_form(app: &App, headers: &HeaderMap, form: PostedForm) -> Result<ActionForm, Refusal> {
    let form = form.map(|f| f.0).unwrap_or_default();
    check_action(app, headers, &form)?;
    Ok(form)
}

async fn action_backup(
    State(app): State<Shared>,
    headers: HeaderMap,
    form: PostedForm,
) -> Response {
    if let Err(r) = checked_form(&app, &headers, form) {
        return r.into_response();
    }
    run_action(app, Action::Backup).await
}

async fn action_reset(State(app): State<Shared>, headers: HeaderMap, form: PostedForm) -> Response {
    let form = match checked_form(&app, &headers, form) {
        Ok(form) => form,
        Err(r) => return r.into_response(),
    };
    let action = match Action::soft_reset(form.spec.as_deref().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid spec name",
                html! { (e.to_string()) },
            );
        }
    };
    run_action(app, action).await
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::super::Gauges;
    use super::*;

    /// `serve` on a port of its own in a runtime of its own, until [`Serving::stop`].
    struct Serving {
        rt: tokio::runtime::Runtime,
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<Result<(), DashboardError>>,
    }

    impl Serving {
        fn start(cfg: DashboardConfig) -> Serving {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = rt.spawn(serve(listener, cfg, async move {
                let _ = stop_rx.await;
            }));
            Serving {
                rt,
                addr,
                stop,
                server,
            }
        }

        /// Ask it to stop; it must return, without an error, within 10 s.
        fn stop(self) {
            self.stop.send(()).unwrap();
            let server = self.server;
            let result = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
                .expect("serve returned after shutdown")
                .unwrap();
            assert!(result.is_ok(), "{result:?}");
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_injected_gauges_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let project = crate::project::Project::at(dir.path());
        let mut cfg = DashboardConfig::new(project, "t0k".repeat(11), "/nonexistent/qw".into());
        cfg.gauges = Arc::new(|| Gauges {
            load_per_cpu: Some(0.42),
            memory: Some(0.91),
            psi_cpu: None,
            psi_memory: Some(0.05),
            slots_used: Some(3),
            slots_max: Some(8),
            limit_load_per_cpu: Some(0.85),
            limit_memory: Some(0.8),
        });
        let token = cfg.token.clone();
        let server = Serving::start(cfg);
        let addr = server.addr;

        let page = get(addr, &format!("/?token={token}"));
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("0.42 (limit 0.85)"), "{page}");
        assert!(page.contains("0.91 (limit 0.80)"));
        assert!(
            page.contains("fill over"),
            "memory above its limit is marked"
        );
        assert!(page.contains("3 / 8"));
        assert!(
            page.contains("No state file"),
            "missing state: banner, no crash"
        );
        assert!(get(addr, "/").starts_with("HTTP/1.1 401"));

        server.stop();
    }

    #[test]
    fn header_and_idle_timeouts_close_strangers_but_not_event_streams() {
        let dir = tempfile::tempdir().unwrap();
        let project = crate::project::Project::at(dir.path());
        let mut cfg = DashboardConfig::new(project, "t0k".repeat(11), "/nonexistent/qw".into());
        cfg.limits.header_timeout = Duration::from_millis(300);
        cfg.refresh_interval = Duration::from_millis(200);
        let token = cfg.token.clone();
        let server = Serving::start(cfg);
        let addr = server.addr;
        // Every read below is bounded by the harness; EOF means the server closed.
        let closed = |s: &mut std::net::TcpStream| {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).is_ok()
        };
        // Idle before any request, and headers that never end.
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        let mut half = std::net::TcpStream::connect(addr).unwrap();
        write!(half, "GET / HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").unwrap();
        assert!(closed(&mut idle), "an idle connection is closed");
        assert!(closed(&mut half), "a half-sent head is closed");
        // Keep-alive after a full answer: idle again, closed again.
        let mut ka = std::net::TcpStream::connect(addr).unwrap();
        write!(ka, "GET /?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        ka.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        ka.read_to_end(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
        // An event stream lives for many header timeouts: it is a response in progress.
        let mut sse = std::net::TcpStream::connect(addr).unwrap();
        write!(
            sse,
            "GET /events?token={token} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        )
        .unwrap();
        sse.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = std::time::Instant::now();
        let mut updates = 0;
        let mut chunk = [0u8; 4096];
        while started.elapsed() < Duration::from_millis(1500) {
            let n = sse.read(&mut chunk).unwrap();
            assert!(
                n > 0,
                "the event stream was closed after {:?}",
                started.elapsed()
            );
            updates += String::from_utf8_lossy(&chunk[..n])
                .matches("event: update")
                .count();
        }
        assert!(updates >= 2, "{updates} updates");
        server.stop();
    }
}
