//! `qw init`: scaffold `.claude/` without overwriting anything the user changed.

use clap::Args;

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::spec::scaffold::{self, Action, ScaffoldError};

/// Arguments of `qw init`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Writes .claude/steering/{product,tech,structure}.md, .claude/specs/, qw's keys in
.claude/settings.local.json (only missing ones; every other key is kept in place; among
them `quantumwala.claude_permissions`, which explains the permission choice for the
headless `claude -p` runs: `--claude-arg=--permission-mode --claude-arg=acceptEdits`,
allow rules, and `bypassPermissions`, which Claude Code refuses as root) and
.claude/commands/*.md slash commands that call `qw`. Safe to re-run: files you edited are
kept, untouched ones are updated. Each file is reported as created, updated, unchanged or
kept. A settings file that is not valid JSON, or holds a bad value for one of qw's keys,
stops init (exit 2) before anything is written.

Example:
  qw init && qw init --json")]
pub struct InitArgs {}

impl From<ScaffoldError> for CliError {
    fn from(e: ScaffoldError) -> Self {
        match e {
            ScaffoldError::Settings(s) => CliError::from(s),
            ScaffoldError::NotAFile { .. } => CliError::usage(e.to_string()),
            ScaffoldError::Io(ref io) if crate::fs::is_refused(io) => {
                CliError::usage(e.to_string())
            }
            ScaffoldError::Io(_) => CliError::failed(e.to_string()),
        }
    }
}

/// Run `qw init`.
pub(crate) fn run(ctx: &Ctx, _args: InitArgs) -> CmdResult {
    // A settings file that is not JSON, or holds values qw would later refuse, stops init
    // here, before anything is written.
    let settings = ctx.settings_file()?.clone();
    let report = scaffold::init(&ctx.project, settings)?;
    for w in &report.warnings {
        crate::diag!("qw: warning: {w}");
    }
    if ctx.global.json {
        let mut v = serde_json::to_value(&report).map_err(|e| CliError::failed(e.to_string()))?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "project".to_owned(),
                ctx.project.root().display().to_string().into(),
            );
            for a in [
                Action::Created,
                Action::Updated,
                Action::Unchanged,
                Action::Kept,
            ] {
                obj.insert(a.as_str().to_owned(), report.count(a).into());
            }
        }
        outln!("{v}")?;
        return Ok(0);
    }
    if !ctx.global.quiet {
        for f in &report.files {
            match &f.note {
                Some(n) => outln!("{:<9} {} ({n})", f.action.as_str(), f.path)?,
                None => outln!("{:<9} {}", f.action.as_str(), f.path)?,
            }
        }
    }
    outln!(
        "qw init in {}: {} created, {} updated, {} unchanged, {} kept",
        ctx.project.root().display(),
        report.count(Action::Created),
        report.count(Action::Updated),
        report.count(Action::Unchanged),
        report.count(Action::Kept),
    )?;
    if !ctx.global.quiet && report.count(Action::Created) > 0 {
        crate::diag!(
            "next: describe your project in .claude/steering/*.md, then `qw workflow-auto NAME \"DESC\" --claude-arg=--permission-mode --claude-arg=acceptEdits` (claude runs headless: see `quantumwala.claude_permissions` in .claude/settings.local.json)"
        );
    }
    if !ctx.global.quiet {
        for note in git_notes(&ctx.project) {
            crate::diag!("note: {note}");
        }
    }
    Ok(0)
}

/// What would stop a parallel `workflow-auto` in this repository before its first task:
/// parallel tasks run in git worktrees, which need a commit to start from and an
/// identity to commit with. Said at init so the first run is not the first to say it.
fn git_notes(project: &crate::project::Project) -> Vec<String> {
    let Ok(Some(repo)) = crate::worktree::Repo::discover(project) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    if let (Ok(Some(branch)), Ok(None)) = (repo.current_branch(), repo.commit_of("HEAD")) {
        notes.push(format!(
            "branch `{branch}` has no commit yet; parallel tasks run in git worktrees started from one: commit once (`git add -A && git commit -m init`) before `qw workflow-auto`, or pass `--isolate none`"
        ));
    }
    if let Some(why) = repo.identity_error() {
        notes.push(format!(
            "git cannot make commits here ({why}); qw commits each task's work: set `git config user.name` and `git config user.email`, or pass `--isolate none`"
        ));
    }
    notes
}
