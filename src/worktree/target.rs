//! The target branch: where qw merges task branches, and whether it is still where qw
//! left it.
//!
//! qw merges only into the integration branch where it left it, or where a move the main
//! worktree followed put it ([`Worktrees::check_target`]); a branch moved under the main
//! worktree's index or files (an agent's `update-ref`, a `reset --mixed`, a deletion),
//! or moved onto commits of a task qw has not merged, is refused before any merge or new
//! task, touching nothing.

use std::collections::BTreeSet;

use super::{Result, WorktreeError, Worktrees, git, git_output, short, task_branch};

impl Worktrees {
    /// Is the integration branch where qw left it (the repository lock is held)? A move
    /// the main worktree followed — its index holds the new commit, and the old one is in
    /// the new one's history (the user committed there, another qw merged, a pull) — is
    /// taken as the new place, unless it brings in commits of a task branch of this run
    /// that qw did not merge (an agent's move, even with a commit made on top of it), or
    /// the main worktree's files of the paths it changed do not match the index (a
    /// `reset --mixed`). Any other move (an agent's `update-ref` or `reset --soft`
    /// from its worktree, a deletion, a rewind) is [`WorktreeError::TargetMoved`], saying
    /// where qw left the branch and where it is now; nothing is touched.
    pub(super) fn check_target(&self) -> Result<()> {
        let b = &self.integration;
        let now = self.repo.commit_of(&format!("refs/heads/{b}"))?;
        let Some(was) = self.tip() else {
            self.set_tip(now);
            return Ok(());
        };
        let Some(now) = now else {
            return Err(WorktreeError::TargetMoved(format!(
                "the target branch `{b}` was moved while the workflow ran, not by qw: it was deleted (qw left it at {})",
                short(&was)
            )));
        };
        if now == was {
            return Ok(());
        }
        let keeps = self.repo.is_ancestor(&was, &now)?;
        let follows = self.repo.index_holds(&now)?;
        let task = if keeps && follows {
            self.brings_task_commits(&was, &now)?
        } else {
            None
        };
        let stale = if keeps && follows && task.is_none() {
            self.stale_files(&was, &now)?
        } else {
            Vec::new()
        };
        if keeps && follows && task.is_none() && stale.is_empty() {
            self.set_tip(Some(now));
            return Ok(());
        }
        let why = if let Some(branch) = task {
            format!(
                "it holds commits of task branch `{branch}` that qw did not merge (an agent's move, whatever was committed on top)"
            )
        } else if !stale.is_empty() {
            format!(
                "the main worktree's files were not moved with it ({} differ from its index)",
                stale.join(", ")
            )
        } else if follows {
            format!(
                "the commits qw merged (up to {}) are no longer on it",
                short(&was)
            )
        } else {
            "the main worktree's index and files were not moved with it".to_owned()
        };
        Err(WorktreeError::TargetMoved(format!(
            "the target branch `{b}` was moved while the workflow ran, not by qw: qw left it at {}, it is now at {}, and {why}",
            short(&was),
            short(&now)
        )))
    }

    /// The task branch of this run (the branches it gave out, the HEADs of its running
    /// tasks' worktrees) with commits that `now` holds and `was` lacks: commits qw did not merge,
    /// brought into the target by someone else's move.
    fn brings_task_commits(&self, was: &str, now: &str) -> Result<Option<String>> {
        let mut tips: Vec<(String, String)> = Vec::new();
        let given = self
            .given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for branch in given {
            if let Some(c) = self.repo.commit_of(&format!("refs/heads/{branch}"))? {
                tips.push((branch, c));
            }
        }
        for w in self.repo.registered()? {
            let Some((spec, task)) = &w.task else {
                continue;
            };
            if spec != &self.spec {
                continue;
            }
            let branch = task_branch(spec, task);
            if let Some(head) = w.head {
                tips.push((branch, head));
            }
        }
        for (branch, tip) in tips {
            // Any commit both hold lies under one of their merge bases: the task's
            // commits are brought in when a merge base is not in `was`.
            let out = git_output(&self.repo.top, ["merge-base", "--all", now, &tip], &[])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            for base in text.split_whitespace() {
                if !self.repo.is_ancestor(base, was)? {
                    return Ok(Some(branch));
                }
            }
        }
        Ok(None)
    }

    /// The paths that differ between `was` and `now` whose files in the main worktree do
    /// not match its index (a `reset --mixed` moved the branch and the index, not the
    /// files). qw's own `.claude/` is left out (it writes the ticks there).
    fn stale_files(&self, was: &str, now: &str) -> Result<Vec<String>> {
        let top = &self.repo.top;
        let changed = git(
            top,
            &["diff", "--name-only", "--no-renames", "-z", was, now],
        )?;
        let claude = format!("{}.claude/", self.repo.prefix);
        let paths: BTreeSet<&str> = changed
            .split('\0')
            .filter(|p| !p.is_empty() && !p.starts_with(&claude))
            .collect();
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        // The whole tree, then only those paths: no pathspec (globs, argv length).
        let out = git(top, &["diff", "--name-only", "--no-renames", "-z"])?;
        Ok(out
            .split('\0')
            .filter(|p| paths.contains(p))
            .map(str::to_owned)
            .collect())
    }

    /// How to go on after [`WorktreeError::TargetMoved`].
    pub(super) fn target_hint(&self) -> String {
        let b = &self.integration;
        match self.tip() {
            Some(was) => format!(
                "put `{b}` back (`git update-ref refs/heads/{b} {was}`) or make the main worktree match it, then run `qw workflow-continue`"
            ),
            None => format!("check `{b}` out again, then run `qw workflow-continue`"),
        }
    }
}
