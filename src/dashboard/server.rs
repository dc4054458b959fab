//! The HTTP side: routes, the guard every request passes (Host, token, headers), pages,
//! the server-sent event stream and the action endpoints.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Local;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::watch;

use super::actions::{self, Action};
use super::security::{cookie_name, cookie_value, ct_eq, host_allowed, new_token, query_value};
use super::snapshot::Frame;
use super::view::{self, esc, url_segment};
use super::watch::{WatchConfig, start};
use super::{DashboardConfig, DashboardError};
use crate::names::{NameKind, validate};

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How long open connections (event streams, keep-alive) get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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
}

type Shared = Arc<App>;

/// Serve the dashboard on `listener` until `shutdown` resolves, then drain for at most a
/// few seconds. The state is watched from a separate thread for as long as this runs.
pub async fn serve(
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
    let app = Arc::new(App {
        cfg,
        addr,
        frames,
        stopping: stopping.clone(),
        csrf,
    });
    let router = router(app);
    let mut stop_wait = stopping;
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stop_wait.wait_for(|s| *s).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    let result = tokio::select! {
        r = &mut server => r.map_err(DashboardError::Serve),
        () = shutdown => {
            stop_tx.send_replace(true);
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r.map_err(DashboardError::Serve),
                Err(_) => Ok(()),
            }
        }
    };
    drop(watcher);
    result
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/spec/{name}", get(spec_page))
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
    /// Already-escaped HTML.
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_page(self.status, self.title, &self.message)
    }
}

/// A small HTML error page with a status code.
fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    (
        status,
        Html(view::page(
            title,
            None,
            &format!("<h1>{}</h1><p>{message}</p>", esc(title)),
        )),
    )
        .into_response()
}

/// Every request: Host check (403), token from the query or the cookie (401), then the
/// response gets the cookie (on the first visit) and headers that keep it local.
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
            &format!(
                "The Host header <code>{}</code> does not name this dashboard's address; open the URL printed by <code>qw dashboard</code>.",
                esc(host)
            ),
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
            "Open the full URL printed by <code>qw dashboard</code> (it ends in <code>?token=…</code>).",
        );
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

async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "No such page; go back to the <a href=\"/\">overview</a>.",
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

fn project_line(app: &App) -> String {
    format!(
        "<p class=\"project\">Project <code>{}</code>{}</p>",
        esc(&app.cfg.project.root().display().to_string()),
        if app.cfg.allow_actions {
            " · actions enabled"
        } else {
            " · read-only"
        }
    )
}

async fn overview(State(app): State<Shared>) -> Html<String> {
    let frame = app.frames.borrow().clone();
    let mut body = String::from("<h1>Overview</h1>");
    body.push_str(&project_line(&app));
    let _ = write!(body, "<div id=\"live\">{}</div>", frame.overview);
    if app.cfg.allow_actions {
        body.push_str("<section id=\"actions\"><h2>Actions</h2><p><a class=\"button\" href=\"/confirm/backup\">Back up the state…</a></p></section>");
    }
    Html(view::page("Overview", Some("/events"), &body))
}

/// Spec names as they may appear in a state (the Python system was not strict about
/// kebab-case): the general safe-name rule, so the name is also a safe path component.
fn viewable_spec(name: &str) -> Result<(), Refusal> {
    validate(NameKind::Backup, name).map_err(|e| Refusal {
        status: StatusCode::NOT_FOUND,
        title: "No such spec",
        message: format!(
            "{}; go back to the <a href=\"/\">overview</a>.",
            esc(&e.to_string())
        ),
    })
}

async fn spec_page(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    if let Err(r) = viewable_spec(&name) {
        return r.into_response();
    }
    let frame = app.frames.borrow().clone();
    let live = view::spec_fragment(&frame, &name, Local::now());
    let mut body = format!("<h1>Spec <code>{}</code></h1>", esc(&name));
    body.push_str(&project_line(&app));
    body.push_str("<nav class=\"docs\">Documents: ");
    let dir = app.cfg.project.spec_dir(&name);
    for (doc, files) in view::DOCUMENTS {
        if files.iter().any(|f| dir.join(f).is_file()) {
            let _ = write!(
                body,
                "<a href=\"/spec/{}/{doc}\">{doc}</a> ",
                url_segment(&name)
            );
        } else {
            let _ = write!(body, "<span class=\"missing\">{doc}</span> ");
        }
    }
    body.push_str("</nav>");
    let _ = write!(body, "<div id=\"live\">{live}</div>");
    if app.cfg.allow_actions {
        let _ = write!(
            body,
            "<section id=\"actions\"><h2>Actions</h2><p><a class=\"button\" href=\"/confirm/reset/{}\">Soft-reset this workflow…</a></p></section>",
            url_segment(&name)
        );
    }
    let src = format!("/events?spec={}", url_segment(&name));
    Html(view::page(&format!("Spec {name}"), Some(&src), &body)).into_response()
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
            &format!(
                "Spec <code>{}</code> has no {} document yet.",
                esc(&name),
                esc(&doc)
            ),
        );
    };
    let path2 = path.clone();
    let text = match blocking("Cannot read document", move || {
        crate::fs::read_to_string(&path2)
    })
    .await
    {
        Ok(t) => t,
        Err(page) => return page,
    };
    let body = format!(
        "<p class=\"crumbs\"><a href=\"/spec/{url}\">{name}</a> / {doc} <small><code>{path}</code></small></p><article class=\"markdown\">{md}</article>",
        url = url_segment(&name),
        name = esc(&name),
        doc = esc(&doc),
        path = esc(&path.display().to_string()),
        md = view::markdown(&text),
    );
    Html(view::page(&format!("{name} {doc}"), None, &body)).into_response()
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Stream the live fragment of this spec's page instead of the overview.
    spec: Option<String>,
}

/// Server-sent events: the current live fragment at once, then one per new frame.
async fn events(State(app): State<Shared>, Query(q): Query<EventsQuery>) -> Response {
    if let Some(name) = &q.spec
        && let Err(r) = viewable_spec(name)
    {
        return r.into_response();
    }
    let stream = fragment_stream(app.frames.clone(), app.stopping.clone(), q.spec);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn fragment_stream(
    frames: watch::Receiver<Arc<Frame>>,
    stopping: watch::Receiver<bool>,
    spec: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (frames, stopping, spec, true),
        |(mut frames, mut stopping, spec, first)| async move {
            if *stopping.borrow() {
                return None;
            }
            if !first {
                tokio::select! {
                    r = frames.changed() => r.ok()?,
                    _ = stopping.wait_for(|s| *s) => return None,
                }
            }
            let frame = frames.borrow_and_update().clone();
            let html = match &spec {
                Some(name) => view::spec_fragment(&frame, name, Local::now()),
                None => frame.overview.clone(),
            };
            let ev = Event::default()
                .event("update")
                .id(frame.seq.to_string())
                .data(html);
            Some((Ok(ev), (frames, stopping, spec, false)))
        },
    )
}

fn actions_disabled() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        title: "Actions are disabled",
        message: "This dashboard is read-only; restart it with <code>qw dashboard --allow-actions</code> to back up or reset from the page.".to_owned(),
    }
}

fn confirm_page(app: &App, title: &str, what: &str, post_to: &str, fields: &str) -> Response {
    let body = format!(
        "<h1>{title}</h1><p>{what}</p><form method=\"post\" action=\"{post_to}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">{fields}<button type=\"submit\" id=\"confirm\">Confirm</button> <a href=\"/\">Cancel</a></form>",
        title = esc(title),
        csrf = esc(&app.csrf),
    );
    Html(view::page(title, None, &body)).into_response()
}

async fn confirm_backup(State(app): State<Shared>) -> Response {
    if !app.cfg.allow_actions {
        return actions_disabled().into_response();
    }
    confirm_page(
        &app,
        "Back up the state",
        "Copy <code>.claude/unified_state.json</code> to <code>.claude/backups/state/</code> by running <code>qw state-backup</code>.",
        "/actions/backup",
        "",
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
            &esc(&e.to_string()),
        );
    }
    confirm_page(
        &app,
        &format!("Soft-reset {name}"),
        &format!(
            "Run <code>qw workflow-reset {} --yes</code>: the state is backed up first, then tasks in progress, failed or blocked go back to pending and the phase returns to the one after the last completed phase. No file is touched.",
            esc(&name)
        ),
        "/actions/reset",
        &format!(
            "<input type=\"hidden\" name=\"spec\" value=\"{}\">",
            esc(&name)
        ),
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
                message: format!("Requests from <code>{}</code> are refused.", esc(origin)),
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
            message:
                "Start the action from the dashboard page (reload it if the server was restarted)."
                    .to_owned(),
        });
    }
    if form.confirm.as_deref() != Some("yes") {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            title: "Not confirmed",
            message: "Confirm the action on its confirmation page first.".to_owned(),
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
            &esc(&e.to_string()),
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
    let body = format!(
        "<h1>{title}</h1><p><code id=\"command\">{cmd}</code> exited with <strong id=\"exit-code\">{code}</strong>.</p><h2>Output</h2><pre id=\"stdout\">{stdout}</pre><pre id=\"stderr\">{stderr}</pre><p><a href=\"/\">Back to the overview</a></p>",
        title = if ok { "Done" } else { "The action failed" },
        cmd = esc(&out.command),
        code = out
            .code
            .map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
        stdout = esc(&out.stdout),
        stderr = esc(&out.stderr),
    );
    (status, Html(view::page("Action result", None, &body))).into_response()
}

async fn action_backup(
    State(app): State<Shared>,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if let Err(r) = check_action(&app, &headers, &form) {
        return r.into_response();
    }
    run_action(app, Action::Backup).await
}

async fn action_reset(
    State(app): State<Shared>,
    headers: HeaderMap,
    form: Result<axum::Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or_default();
    if let Err(r) = check_action(&app, &headers, &form) {
        return r.into_response();
    }
    let action = match Action::soft_reset(form.spec.as_deref().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid spec name",
                &esc(&e.to_string()),
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(listener, cfg, async move {
            let _ = stop_rx.await;
        }));

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

        stop_tx.send(()).unwrap();
        let result = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await })
            .expect("serve returned after shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}
