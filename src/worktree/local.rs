//! The user's own Claude Code files that git does not hold (rev6b G19).
//!
//! A task worktree is a checkout: it has what the branch tracks, nothing the user keeps
//! ignored. Claude Code reads its project settings (permission allow-lists, hooks, env),
//! slash commands, subagents, `CLAUDE.local.md` and `.mcp.json` from the working
//! directory, and a project's tests often read `.env`; with these ignored (the usual
//! case for `settings.local.json`, often for all of `.claude/`), an agent in a worktree
//! would run without them, unlike under `--isolate none`. So each that the main tree has,
//! that the worktree lacks and that git ignores there is linked into the worktree (an
//! absolute symlink to the main tree's copy, as the spec folder is): one copy, the same
//! as the agent would see in the shared tree. Never qw's own files under `.claude/`
//! (runs, logs, backups, the state): only the names below. A file git would stage
//! (untracked but not ignored) is never linked — qw's save would commit it.

use std::path::Path;

use super::{Repo, Result, git_output};

/// What is linked, relative to the project's root.
pub(crate) const LINKED: &[&str] = &[
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".claude/commands",
    ".claude/agents",
    "CLAUDE.md",
    "CLAUDE.local.md",
    ".mcp.json",
    ".env",
    ".env.local",
];

/// Link each of [`LINKED`] that the project's main tree has and the worktree's project
/// directory `workdir` lacks, where git ignores it in the worktree. Returns the names
/// linked.
pub(crate) fn link_into(repo: &Repo, workdir: &Path) -> Result<Vec<String>> {
    let main = repo.project.root();
    let mut linked = Vec::new();
    for name in LINKED {
        let source = main.join(name);
        let Ok(meta) = std::fs::metadata(&source) else {
            continue;
        };
        if !(meta.is_file() || meta.is_dir()) {
            continue;
        }
        let link = workdir.join(name);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        // Ignored in the worktree (`git check-ignore` exits 0), else it would be staged.
        let out = git_output(workdir, ["check-ignore", "-q", "--", name], &[])?;
        if !out.status.success() {
            continue;
        }
        crate::fs::create_dir_all(crate::fs::parent_dir(&link))?;
        std::os::unix::fs::symlink(&source, &link)
            .map_err(|e| crate::fs::with_path(e, "link the user's file", &link))?;
        linked.push((*name).to_owned());
    }
    Ok(linked)
}
