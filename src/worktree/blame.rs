//! Who to blame when one of qw's own git steps fails (rev1 L6).
//!
//! A failed `git merge`, `update-ref` or `worktree add` of qw's is told as "qw's git step
//! failed, not the agent" — wrong when the cause is elsewhere:
//! - a signal (Ctrl-C reaches qw's git child too, which dies with no message): the step
//!   was interrupted, and the task is recorded as interrupted, not as a failure;
//! - `core.bare = true` in the shared config (an agent's `git config core.bare true` in
//!   its worktree writes the repository's config): git then works in no worktree;
//! - a `.lock` file a killed git left beside a ref, the index or the config: git will
//!   not change what it guards while it is there.
//!
//! [`explain`] turns such a failure into [`WorktreeError::Interrupted`] or
//! [`WorktreeError::Obstructed`] (one line naming the setting or file and the command
//! that fixes it); any other failure is left as it is.
//! Must not: change the repository (the user decides; a stale lock in a task's own git
//! dir is removed where the worktree is saved, see `tree::stage`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Repo, WorktreeError, git_output, quote};
use crate::exec::Cancel;

/// `e` re-told when a signal or something left in the repository explains it (see the
/// module doc); `admin` is the task worktree's git dir, `branches` the refs the step
/// touched (without `refs/heads/`), `spec` the workflow's spec.
pub(crate) fn explain(
    repo: &Repo,
    cancel: &Cancel,
    e: WorktreeError,
    admin: Option<&Path>,
    branches: &[&str],
    spec: &str,
) -> WorktreeError {
    if !matches!(e, WorktreeError::Git { .. } | WorktreeError::Unsaved { .. }) {
        return e;
    }
    // The flag is set by qw's signal handling, which may not have run yet when git's
    // end is seen: git's own death by the signal tells it too.
    let by_signal = match &e {
        // Not when qw's own bound ended it (it says so: `bounded`).
        WorktreeError::Git { stderr, .. } if !stderr.contains("qw ended this git") => INTERRUPTS
            .iter()
            .find(|s| stderr.ends_with(&format!("(git was ended by {s})")))
            .map(|s| (*s).to_owned()),
        _ => None,
    };
    if let Some(sig) = cancel.pending().map(signal_name).or(by_signal) {
        return WorktreeError::Interrupted(
            format!("{sig} arrived while qw's git step ran, which it ended ({e})"),
            Vec::new(),
        );
    }
    match cause(repo, admin, branches) {
        Some(line) => WorktreeError::Obstructed(format!(
            "{line}, then run `{}` (git said: {})",
            super::shell::continue_cmd(spec),
            said(&e)
        )),
        None => e,
    }
}

/// The first line of git's message in `e` (git's advice after it is for its own prompt).
pub(crate) fn said(e: &WorktreeError) -> String {
    match e {
        WorktreeError::Git { stderr, .. } => stderr
            .split(" | ")
            .next()
            .unwrap_or(stderr.as_str())
            .to_owned(),
        other => other.to_string(),
    }
}

/// The signals that ask qw to stop (see `crate::cancel`).
const INTERRUPTS: [&str; 3] = ["SIGINT", "SIGTERM", "SIGHUP"];

/// ` (git was ended by SIGINT)` when a signal ended git (it then says nothing itself);
/// empty otherwise.
pub(crate) fn ended_by_signal(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    status
        .signal()
        .map(|s| format!(" (git was ended by {})", signal_name(s)))
        .unwrap_or_default()
}

/// `SIGINT` for 2, and so on.
fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_owned())
}

/// What in the repository stops git, with its fix, as the start of a sentence: `core.bare`
/// set, or `.lock` files left beside what the step touches. `None` when nothing is.
pub(crate) fn cause(repo: &Repo, admin: Option<&Path>, branches: &[&str]) -> Option<String> {
    let mut parts = Vec::new();
    if bare(repo) {
        parts.push(format!(
            "the repository's `core.bare` is `true` (a task's `git config core.bare true` in its worktree writes the shared config `{}`), so git works in no worktree of it: `git --git-dir={} config core.bare false` puts it back",
            repo.common_dir.join("config").display(),
            quote(&repo.common_dir.to_string_lossy())
        ));
    }
    let locks: Vec<PathBuf> = lock_files(repo, admin, branches)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if !locks.is_empty() {
        let names: Vec<String> = locks.iter().map(|p| format!("`{}`", p.display())).collect();
        let rm: Vec<String> = locks
            .iter()
            .map(|p| quote(&p.to_string_lossy()).into_owned())
            .collect();
        parts.push(format!(
            "{} {} left by a git that did not finish (a task's agent's, killed?), and git changes nothing such a file guards while it is there: once no git runs in this repository, `rm -- {}`",
            names.join(", "),
            if locks.len() == 1 { "is" } else { "are" },
            rm.join(" ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Is `core.bare` true in the shared config?
fn bare(repo: &Repo) -> bool {
    let config = repo.common_dir.join("config");
    git_output(
        &repo.top,
        [
            "config".as_ref(),
            "--file".as_ref(),
            config.as_os_str(),
            "--type=bool".as_ref(),
            "core.bare".as_ref(),
        ],
        &[],
    )
    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// The `.lock` files that would stop the step: beside the refs it touches, the task
/// worktree's HEAD and index, the main worktree's HEAD and index, the packed refs, the
/// config and a reftable's table list.
fn lock_files(repo: &Repo, admin: Option<&Path>, branches: &[&str]) -> Vec<PathBuf> {
    let common = &repo.common_dir;
    let mut out: Vec<PathBuf> = branches
        .iter()
        .map(|b| common.join("refs").join("heads").join(format!("{b}.lock")))
        .collect();
    if let Some(a) = admin {
        out.extend([a.join("HEAD.lock"), a.join("index.lock")]);
    }
    out.extend([
        repo.git_dir.join("HEAD.lock"),
        repo.git_dir.join("index.lock"),
        common.join("packed-refs.lock"),
        common.join("config.lock"),
        common.join("reftable").join("tables.list.lock"),
    ]);
    out.dedup();
    out
}

/// The replace refs there are, as `<replaced> <replacement>` (`git replace` makes every
/// git show one commit as another; qw's own gits ignore them, see `git_command`).
pub(crate) fn replace_refs(repo: &Repo) -> BTreeSet<String> {
    git_output(
        &repo.top,
        [
            "for-each-ref",
            "--format=%(refname:strip=2) %(objectname)",
            "refs/replace/",
        ],
        &[],
    )
    .ok()
    .filter(|o| o.status.success())
    .map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Replace refs made since `seen` was taken (added to it, so each is told once): one
/// line naming each and the command that removes it (rev1 L7).
pub(crate) fn new_replacements(
    repo: &Repo,
    seen: &std::sync::Mutex<BTreeSet<String>>,
    task: &str,
) -> Option<String> {
    let now = replace_refs(repo);
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let new: Vec<String> = now
        .iter()
        .filter(|r| !seen.contains(*r))
        .filter_map(|r| {
            let (old, by) = r.split_once(' ')?;
            Some(format!(
                "commit {} shown as {} (`git replace -d {old}` removes it)",
                super::short(old),
                super::short(by)
            ))
        })
        .collect();
    seen.extend(now);
    (!new.is_empty()).then(|| {
        format!(
            "a `git replace` ref appeared while task {task} ran (its agent's?): every git of this repository now shows one commit as another — {}; qw merges the commits as they are, ignoring it",
            new.join(", ")
        )
    })
}
