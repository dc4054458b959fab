//! Which target a task branch was made for (rev6b G12): `qw/<spec>/<id>` is named by
//! spec and task only, so the same spec run in two checkouts of one repository (the
//! main one on `main`, a `git worktree add` one on `feature`) would resume, and merge
//! into `feature`, a branch a run onto `main` left — or take over its running worktree.
//!
//! qw records, for each task branch it makes, the target branch and the checkout:
//! `<git-common-dir>/qw-target/<spec>/<id>` (`refs/heads/<target>` then the checkout's
//! top, one per line). A run onto another target does not resume such a branch nor reuse
//! its worktree: the task is not started, and the line says whose it is and the two ways
//! on. A worktree the qw named in its lock reason still runs in is never taken over.

use std::path::{Path, PathBuf};

use super::{ListedWorktree, Repo};

/// The record of task `id`'s branch of `spec`.
fn record_file(repo: &Repo, spec: &str, id: &str) -> PathBuf {
    repo.common_dir.join("qw-target").join(spec).join(id)
}

/// Record that `spec`'s task `id` branch is made for `target` (a branch name) from the
/// checkout `top`. A record that cannot be written only leaves the branch unchecked.
pub(crate) fn record(repo: &Repo, spec: &str, id: &str, target: &str, top: &Path) {
    let file = record_file(repo, spec, id);
    let written = crate::fs::create_dir_all(crate::fs::parent_dir(&file)).and_then(|()| {
        crate::fs::write_durable(
            &file,
            format!("refs/heads/{target}\n{}\n", top.display()).as_bytes(),
        )
    });
    if let Err(e) = written {
        tracing::debug!("could not record the target of task {id} of `{spec}`: {e}");
    }
}

/// The target branch (without `refs/heads/`) and checkout recorded for task `id`'s
/// branch of `spec`, if any.
pub(crate) fn recorded(repo: &Repo, spec: &str, id: &str) -> Option<(String, PathBuf)> {
    let text = crate::fs::read_regular_text(&record_file(repo, spec, id), 8192).ok()?;
    let mut lines = text.lines();
    let target = lines.next()?.strip_prefix("refs/heads/")?.to_owned();
    let top = PathBuf::from(lines.next().unwrap_or_default());
    (!target.is_empty()).then_some((target, top))
}

/// Forget the record of task `id`'s branch of `spec` (the branch was set aside).
pub(crate) fn forget(repo: &Repo, spec: &str, id: &str) {
    let _ = crate::fs::remove_file(record_file(repo, spec, id));
}

/// Forget every record of `spec` (its task branches were set aside).
pub(crate) fn forget_spec(repo: &Repo, spec: &str) {
    let dir = repo.common_dir.join("qw-target").join(spec);
    if dir.is_dir() {
        let _ = crate::fs::remove_dir_all(&dir);
    }
}

/// Why task `id` of `spec` must not start on `target` from the checkout `top`: its
/// branch exists and was made for another target (a run of the same spec in another
/// checkout, or onto another branch). `None` when it may.
pub(crate) fn foreign_target(
    repo: &Repo,
    spec: &str,
    id: &str,
    target: &str,
    top: &Path,
) -> Option<String> {
    let branch = super::task_branch(spec, id);
    let tip = repo.commit_of(&format!("refs/heads/{branch}")).ok()??;
    let (theirs, checkout) = recorded(repo, spec, id)?;
    if theirs == target {
        return None;
    }
    let q = super::quote;
    let aside = format!("{branch}@{}", &tip[..7.min(tip.len())]);
    let here = if same_dir(&checkout, top) {
        "in this checkout".to_owned()
    } else {
        format!("in the checkout `{}`", checkout.display())
    };
    Some(format!(
        "task {id} was not started: its branch `{branch}` holds the work of a run of `{spec}` onto `{theirs}` ({here}), not onto `{target}`; qw does not resume it here — finish that run where it was made (`qw -C {} workflow-continue {spec}`), or keep its work apart (`git branch -m {} {}`) and run again",
        q(&checkout.to_string_lossy()),
        q(&branch),
        q(&aside),
    ))
}

/// A worktree of task `id` that another live qw made (its lock reason's pid): never
/// taken over, whatever its spec's lock says.
pub(crate) fn live_elsewhere(w: &ListedWorktree, id: &str) -> Option<String> {
    let pid = super::alive::maker_alive(w)?;
    Some(format!(
        "task {id} was not started: its worktree `{}` is in use by another qw (pid {pid}) — the same spec running in another checkout of this repository; wait for it to end",
        w.path.display()
    ))
}

/// The same directory (as given, or once both are resolved)?
pub(crate) fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
