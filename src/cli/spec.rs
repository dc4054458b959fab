//! `qw spec-create`, `qw spec-list`, `qw spec-status`.

use clap::Args;

use super::out::outln;
use std::fmt::Write as _;

use super::status::{error_line, phases_line, table, write_stdout};
use super::{CliError, CmdResult, Ctx};
use crate::fmt::{duration as seconds, one_line};
use crate::spec::{self, SpecError};
use crate::state::{CompletedPhase, Phase, StateError, StateStore, Timestamp, UnifiedState};
use crate::workflow::status::{self as view, SpecDetail};

/// Arguments of `qw spec-create`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
While another qw writes the state, it waits (up to QW_LOCK_TIMEOUT, saying after a second
who holds it); Ctrl-C, SIGTERM or SIGHUP end the wait with 128+N. A spec that could not be
recorded is not created: its new folder is removed again.

Example:
  qw spec-create user-auth \"Email and password login\"")]
pub struct SpecCreateArgs {
    /// Spec name (kebab-case).
    pub name: String,
    /// What the feature is.
    pub description: String,
}

/// Arguments of `qw spec-list`.
#[derive(Debug, Args)]
#[command(after_long_help = "Example:\n  qw spec-list --json")]
pub struct SpecListArgs {}

/// Arguments of `qw spec-status`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Shows the spec's phase, which documents exist, and every leaf task of tasks.md in file
order with its status, attempts, duration, cost, outcome and error (then any task only the
state knows). Without NAME, every spec (folders and state entries) is shown.
Exit 0; 2 when NAME is invalid or names no spec.

Example:
  qw spec-status user-auth")]
pub struct SpecStatusArgs {
    /// The spec (default: every spec).
    pub name: Option<String>,
}

impl From<SpecError> for CliError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Name(_) => CliError::usage(e.to_string())
                .hint("spec names are kebab-case: lowercase letters, digits and single hyphens"),
            SpecError::Exists { ref name, .. } => {
                let hint = format!(
                    "`qw spec-status {name}` shows it; `qw workflow-continue {name}` resumes it"
                );
                CliError::usage(e.to_string()).hint(hint)
            }
            SpecError::EmptyDescription { .. } | SpecError::Tasks(_) => {
                CliError::usage(e.to_string())
            }
            SpecError::Io(ref io) if crate::fs::is_refused(io) => CliError::usage(e.to_string()),
            SpecError::Io(_) => CliError::failed(e.to_string()),
        }
    }
}

/// Run `qw spec-create`.
pub(crate) fn run_create(ctx: &Ctx, args: SpecCreateArgs) -> CmdResult {
    let had_project = ctx.project.exists();
    // From here SIGINT, SIGTERM and SIGHUP end the wait for the state lock with 128+N (a
    // line names the holder after a second), and the new folder is taken back.
    crate::cancel::Cancel::on_signals()
        .map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))?;
    let created = spec::create(&ctx.project, &args.name, &args.description)?;
    let store = StateStore::new(&ctx.project);
    if let Err(e) = store.update(|s| record_created(s, created.name(), &args.description)) {
        return Err(not_recorded(&created, e));
    }
    if ctx.global.json {
        let v = serde_json::json!({
            "name": created.name(),
            "description": args.description,
            "path": created.dir().display().to_string(),
            "phase": Phase::RequirementsGeneration.as_str(),
            "state": store.path().display().to_string(),
        });
        outln!("{v}")?;
        return Ok(0);
    }
    outln!(
        "created spec `{}` in {}",
        created.name(),
        created.dir().display()
    )?;
    if !ctx.global.quiet {
        if !had_project {
            crate::diag!(
                "note: `.claude/` was new in {}; `qw init` adds steering documents and slash commands",
                ctx.project.root().display()
            );
        }
        crate::diag!(
            "next: qw workflow-auto {} {}",
            created.name(),
            shell_words::quote(&args.description)
        );
    }
    Ok(0)
}

/// The error of a `spec-create` whose spec could not be recorded in the state (its wait
/// for the lock interrupted, or the write failed): the folder it just made is removed
/// again while it is still empty, so no half-made spec is left.
fn not_recorded(created: &spec::Spec, e: StateError) -> CliError {
    let removed = crate::fs::remove_dir(created.dir()).is_ok();
    let outcome = if removed {
        format!("spec `{}` was not created", created.name())
    } else {
        format!(
            "`{}` was created but is not recorded in the state",
            created.dir().display()
        )
    };
    let mut err = CliError::from_user(&e);
    err.message = format!("{e}; {outcome}");
    if !removed && e.interrupted().is_none() {
        err = err.hint(format!(
            "`qw workflow-auto {} \"DESCRIPTION\"` records it when it starts",
            created.name()
        ));
    }
    err
}

/// Run `qw spec-list`.
pub(crate) fn run_list(ctx: &Ctx, _args: SpecListArgs) -> CmdResult {
    let rows = spec::list(&ctx.project)?;
    if ctx.global.json {
        let v = serde_json::json!({ "specs": rows });
        outln!("{v}")?;
        return Ok(0);
    }
    if rows.is_empty() {
        if !ctx.global.quiet {
            outln!("no specs in {}", ctx.project.specs_dir().display())?;
            crate::diag!("hint: create one with `qw spec-create NAME \"DESCRIPTION\"`");
        }
        return Ok(0);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    outln!("{:<width$}  {:<8}  DOCUMENTS", "NAME", "TASKS")?;
    for r in &rows {
        let tasks = match (&r.tasks_error, r.documents.tasks) {
            (Some(_), _) => "invalid".to_owned(),
            (None, true) => format!("{}/{}", r.tasks_done, r.tasks_total),
            (None, false) => "-".to_owned(),
        };
        let docs = r.documents.present();
        let docs = if docs.is_empty() {
            "-".to_owned()
        } else {
            docs.join(" ")
        };
        outln!("{:<width$}  {tasks:<8}  {docs}", r.name)?;
    }
    for r in &rows {
        if let Some(e) = &r.tasks_error {
            crate::diag!("qw: warning: spec `{}`: {e}", r.name);
        }
    }
    Ok(0)
}
/// Record a new spec in the state: its description, `spec_creation` completed, and
/// `requirements_generation` next. A leftover entry of the same name (its folder was
/// deleted) keeps its tasks and later phases.
fn record_created(s: &mut UnifiedState, name: &str, description: &str) {
    let entry = s.specifications.entry(name.to_owned()).or_default();
    entry.name = name.to_owned();
    entry.description = description.to_owned();
    let now = Timestamp::now();
    if entry.created_at.is_none() {
        entry.created_at = Some(now.clone());
    }
    if !entry
        .completed_phases
        .iter()
        .any(|c| c.phase == Phase::SpecCreation)
    {
        entry.completed_phases.push(CompletedPhase {
            phase: Phase::SpecCreation,
            completed_at: Some(now),
            extra: Default::default(),
        });
    }
    if entry.current_phase.index() <= Phase::SpecCreation.index() {
        entry.current_phase = Phase::RequirementsGeneration;
    }
    let phase = entry.current_phase.clone();
    s.workflow.current_spec = Some(name.to_owned());
    s.workflow.global_phase = phase;
}

/// Run `qw spec-status`.
pub(crate) fn run_status(ctx: &Ctx, args: SpecStatusArgs) -> CmdResult {
    // Refuse a bad name before reading anything.
    let named = match &args.name {
        Some(n) => Some(spec::Spec::new(&ctx.project, n)?),
        None => None,
    };
    let state = StateStore::new(&ctx.project).load()?;
    let specs: Vec<spec::Spec> = match named {
        Some(s) => {
            if !s.exists() && !state.specifications.contains_key(s.name()) {
                let e = StateError::SpecNotFound {
                    name: s.name().to_owned(),
                    dir: s.dir().to_path_buf(),
                };
                return Err(e.into());
            }
            vec![s]
        }
        None => every_spec(ctx, &state)?,
    };
    let details: Vec<SpecDetail> = specs
        .iter()
        .map(|s| {
            let tasks = s.load_tasks().map_err(|e| e.to_string());
            let mut d = view::spec_detail(
                &state,
                s.name(),
                s.documents(),
                tasks.as_ref().map(Option::as_ref).map_err(Clone::clone),
            );
            if let Some(step) = view::running_step(&ctx.project, s.name()) {
                d.next_step = Some(step);
            }
            if let Some(e) = &d.tasks_error {
                crate::diag!("qw: warning: spec `{}`: {e}", d.name);
            }
            d
        })
        .collect();
    if ctx.global.json {
        let text = if args.name.is_some() {
            details.first().map(serde_json::to_string)
        } else {
            Some(serde_json::to_string(
                &serde_json::json!({ "specs": details }),
            ))
        };
        let mut text = text
            .transpose()
            .map_err(|e| CliError::failed(format!("cannot serialize the spec status: {e}")))?
            .unwrap_or_default();
        text.push('\n');
        write_stdout(&text)?;
        return Ok(0);
    }
    if details.is_empty() {
        write_stdout(&format!(
            "no specs in `{}`\n",
            ctx.project.specs_dir().display()
        ))?;
        if !ctx.global.quiet {
            crate::diag!("hint: create one with `qw spec-create NAME \"DESCRIPTION\"`");
        }
        return Ok(0);
    }
    let text = details
        .iter()
        .map(render_detail)
        .collect::<Vec<_>>()
        .join("\n");
    write_stdout(&text)?;
    Ok(0)
}

/// Every spec folder and every spec in the state, by name.
fn every_spec(ctx: &Ctx, state: &UnifiedState) -> Result<Vec<spec::Spec>, CliError> {
    let mut names: Vec<String> = spec::list(&ctx.project)?
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.extend(state.specifications.keys().cloned());
    names.sort();
    names.dedup();
    // State entries whose names are not valid spec names have no folder to show.
    Ok(names
        .iter()
        .filter_map(|n| spec::Spec::new(&ctx.project, n).ok())
        .collect())
}

fn render_detail(d: &SpecDetail) -> String {
    let mut out = String::new();
    let _ = write!(out, "spec {}", d.name);
    if !d.description.is_empty() {
        let _ = write!(out, " — {}", one_line(&d.description, 200));
    }
    out.push('\n');
    let mut field = |k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<11} {v}");
    };
    let mut phase = d.phase.clone();
    if !d.in_state {
        phase.push_str(" (not in the state yet)");
    }
    field("phase", &phase);
    if !d.phases.is_empty() {
        field("completed", &phases_line(&d.phases));
    }
    let docs = d.documents.present();
    field(
        "documents",
        &if docs.is_empty() {
            "none".to_owned()
        } else {
            docs.join(" ")
        },
    );
    field(
        "progress",
        &format!(
            "{}/{} tasks completed ({:.0}%), {} failed, {} blocked; cost {}, {} tokens",
            d.counts.completed,
            d.counts.total,
            d.progress_percentage,
            d.counts.failed,
            d.counts.blocked,
            crate::fmt::usd(d.cost_usd),
            d.tokens.total
        ),
    );
    if let Some(until) = &d.paused_until {
        field("paused", &format!("until {until}"));
    }
    if let Some(e) = &d.last_error {
        field("last error", &error_line(e));
    }
    if let Some(e) = &d.tasks_error {
        field("tasks.md", &one_line(e, 200));
    }
    if let Some(next) = &d.next_step {
        field("next", next);
    }
    if d.tasks.is_empty() {
        return out;
    }
    out.push('\n');
    let header = [
        "ID", "STATUS", "ATTEMPTS", "DURATION", "COST", "OUTCOME", "TITLE",
    ];
    let rows: Vec<[String; 7]> = d
        .tasks
        .iter()
        .map(|t| {
            let mut title = one_line(&t.title, 80);
            if t.checked.is_none() && d.documents.tasks && d.tasks_error.is_none() {
                title.push_str(" (not in tasks.md)");
            }
            [
                t.id.clone(),
                t.status.clone(),
                t.attempts.to_string(),
                t.duration_seconds
                    .map(seconds)
                    .unwrap_or_else(|| "-".into()),
                t.cost_usd
                    .map(crate::fmt::usd)
                    .unwrap_or_else(|| "-".into()),
                t.outcome.clone().unwrap_or_else(|| "-".into()),
                title,
            ]
        })
        .collect();
    let mut table_text = String::new();
    table(&mut table_text, &header, &rows);
    // Each task's error goes on the line below its row.
    let mut lines = table_text.lines();
    if let Some(h) = lines.next() {
        let _ = writeln!(out, "{h}");
    }
    for (line, t) in lines.zip(&d.tasks) {
        let _ = writeln!(out, "{line}");
        if let Some(e) = t.error.as_deref().filter(|_| t.status != "completed") {
            let _ = writeln!(out, "    error: {}", one_line(e, 200));
        }
    }
    out
}
