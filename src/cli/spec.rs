//! `qw spec-create`, `qw spec-list`, `qw spec-status`.

use clap::Args;

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::spec::{self, SpecError};

/// Arguments of `qw spec-create`.
#[derive(Debug, Args)]
pub struct SpecCreateArgs {
    /// Spec name (kebab-case).
    pub name: String,
    /// What the feature is.
    pub description: String,
}

/// Arguments of `qw spec-list`.
#[derive(Debug, Args)]
pub struct SpecListArgs {}

/// Arguments of `qw spec-status`.
#[derive(Debug, Args)]
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
            SpecError::Io(_) => CliError::failed(e.to_string()),
        }
    }
}

/// Run `qw spec-create`.
pub fn run_create(ctx: &Ctx, args: SpecCreateArgs) -> CmdResult {
    let had_project = ctx.project.exists();
    let created = spec::create(&ctx.project, &args.name, &args.description)?;
    if ctx.global.json {
        let v = serde_json::json!({
            "name": created.name(),
            "description": args.description,
            "path": created.dir().display().to_string(),
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
            eprintln!(
                "note: `.claude/` was new in {}; `qw init` adds steering documents and slash commands",
                ctx.project.root().display()
            );
        }
        eprintln!(
            "next: qw workflow-auto {} {}",
            created.name(),
            shell_words::quote(&args.description)
        );
    }
    Ok(0)
}

/// Run `qw spec-list`.
pub fn run_list(ctx: &Ctx, _args: SpecListArgs) -> CmdResult {
    let rows = spec::list(&ctx.project)?;
    if ctx.global.json {
        let v = serde_json::json!({ "specs": rows });
        outln!("{v}")?;
        return Ok(0);
    }
    if rows.is_empty() {
        if !ctx.global.quiet {
            outln!("no specs in {}", ctx.project.specs_dir().display())?;
            eprintln!("hint: create one with `qw spec-create NAME \"DESCRIPTION\"`");
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
            eprintln!("qw: warning: spec `{}`: {e}", r.name);
        }
    }
    Ok(0)
}
/// Run `qw spec-status`.
pub fn run_status(_ctx: &Ctx, _args: SpecStatusArgs) -> CmdResult {
    super::not_built("spec-status")
}
