//! The shared tree's guard (no task worktrees: `--parallel 1`, `--isolate none`): every
//! agent works in the user's own checkout, on the user's branch. Before each agent qw
//! marks the branch checked out and its tip ([`mark`]); after it ([`check`]), HEAD must
//! still be on that branch and the branch's tip must still hold the marked one. An agent
//! that switched the user to a branch of its own (`git switch -c`, a detached HEAD), or
//! reset or rewrote the branch (erasing completed tasks' commits), fails its task with
//! one line naming the branch and the commit to recover (kept on `qw-kept/<spec>/<id>`):
//! never reported completed (rev11b F3, F6). Committing forward on the branch is fine.

use std::path::Path;

use super::git_output;

/// Where the shared tree was before an agent ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    /// The branch checked out (`refs/heads/…`), None when HEAD was detached.
    branch: Option<String>,
    /// The commit HEAD pointed at.
    tip: String,
}

fn out(dir: &Path, args: &[&str]) -> Option<String> {
    let o = git_output(dir, args, &[]).ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The branch and tip of the git checkout at `root`; None when `root` is not in a git
/// repository or HEAD has no commit yet (nothing any agent could erase).
pub(crate) fn mark(root: &Path) -> Option<Mark> {
    let tip = out(root, &["rev-parse", "--verify", "-q", "HEAD^{commit}"])?;
    let branch = out(root, &["symbolic-ref", "-q", "HEAD"]);
    Some(Mark { branch, tip })
}

/// After an agent in the shared tree: None when HEAD is still on the marked branch and
/// its tip holds the marked tip; else the line that fails the task (the marked tip kept
/// on `refs/heads/qw-kept/<spec>/<task>` when the branch no longer holds it).
pub(crate) fn check(root: &Path, spec: &str, task: &str, before: &Mark) -> Option<String> {
    let now = mark(root);
    let short = |c: &str| c[..c.len().min(10)].to_owned();
    let name = |r: &str| r.strip_prefix("refs/heads/").unwrap_or(r).to_owned();
    let holds = |tip: &str| {
        git_output(root, ["merge-base", "--is-ancestor", &before.tip, tip], &[])
            .is_ok_and(|o| o.status.success())
    };
    let keep = || -> String {
        let kept = format!("qw-kept/{spec}/{task}");
        let ok = git_output(
            root,
            [
                "update-ref",
                "-m",
                "qw: the shared tree's tip before an agent moved it",
                &format!("refs/heads/{kept}"),
                &before.tip,
            ],
            &[],
        )
        .is_ok_and(|o| o.status.success());
        if ok { kept } else { short(&before.tip) }
    };
    let Some(branch) = &before.branch else {
        // Detached before (not a workflow qw starts on a branch): only the tip counts.
        return match now {
            Some(n) if holds(&n.tip) => None,
            _ => Some(format!(
                "task {task}'s agent moved the detached HEAD of the shared tree off {} (history reset or rewritten): it is kept as `{}`; `git checkout {}` gets it back; no new task starts on this tree",
                short(&before.tip),
                keep(),
                short(&before.tip)
            )),
        };
    };
    let b = name(branch);
    let tip_now = out(
        root,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("{branch}^{{commit}}"),
        ],
    );
    let on_branch = now.as_ref().and_then(|n| n.branch.as_deref()) == Some(branch.as_str());
    let branch_holds = tip_now.as_deref().is_some_and(holds);
    if on_branch && branch_holds {
        return None;
    }
    let mut parts = Vec::new();
    if !on_branch {
        let at = match now.as_ref() {
            Some(Mark {
                branch: Some(r), ..
            }) => format!("on branch `{}`", name(r)),
            Some(n) => format!("on a detached HEAD at {}", short(&n.tip)),
            None => "with no commit checked out".to_owned(),
        };
        let back = match now.as_ref() {
            Some(Mark {
                branch: Some(r), ..
            }) => format!(
                "`git switch {b}` then `git merge {}` brings its work back",
                name(r)
            ),
            Some(n) => format!(
                "`git switch {b}` then `git merge {}` brings its work back",
                short(&n.tip)
            ),
            None => format!("`git switch {b}` returns to it"),
        };
        parts.push(format!(
            "task {task}'s agent left the shared tree {at} instead of `{b}` (qw's tasks work on `{b}`): {back}"
        ));
    }
    if !branch_holds {
        let now_at = tip_now
            .as_deref()
            .map_or_else(|| "gone".to_owned(), |t| format!("at {}", short(t)));
        let kept = keep();
        parts.push(format!(
            "branch `{b}` no longer holds {} (the work there before this agent: reset or rewritten, now {now_at}): it is kept as `{kept}`; `git switch {b} && git merge {kept}` brings it back",
            short(&before.tip),
        ));
    }
    Some(format!(
        "{}; no new task starts on this tree",
        parts.join("; ")
    ))
}
