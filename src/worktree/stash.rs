//! The stash (`refs/stash` and its reflog), shared by every worktree of a repository:
//! which entries a task's agent made and left there ([`Worktrees::stashed`]).

use std::collections::BTreeSet;

use super::{Repo, WorktreeHandle, Worktrees, git_output, parse_branch, tree};

impl Repo {
    /// The stash (shared by every worktree of the repository), newest first:
    /// `stash@{index}`, its commit and the message git gave it.
    pub fn stash_entries(&self) -> Vec<StashEntry> {
        let Ok(out) = git_output(&self.top, ["stash", "list", "--format=%H%x09%gs"], &[]) else {
            return Vec::new();
        };
        if !out.status.success() {
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .enumerate()
            .map(|(index, (commit, message))| StashEntry {
                index,
                commit: commit.to_owned(),
                message: message.to_owned(),
            })
            .collect()
    }
}

/// One entry of the stash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StashEntry {
    /// `N` of `stash@{N}` (changes as entries come and go; the commit does not).
    pub index: usize,
    /// The stash commit.
    pub commit: String,
    /// What git wrote: `WIP on <branch>: <sha> <subject>` or `On <branch>: <message>`.
    pub message: String,
}

impl StashEntry {
    /// The branch the stash was made on (`(no branch)` for a detached HEAD), from
    /// git's message.
    fn branch(&self) -> Option<&str> {
        let rest = self
            .message
            .strip_prefix("WIP on ")
            .or_else(|| self.message.strip_prefix("On "))?;
        // A branch name never holds `:`.
        rest.split_once(':').map(|(b, _)| b)
    }

    /// `stash@{N} (<commit>, "<message>")`.
    fn describe(&self) -> String {
        format!(
            "stash@{{{}}} (commit {}, \"{}\")",
            self.index,
            &self.commit[..self.commit.len().min(12)],
            crate::fmt::escaped_line(&self.message)
        )
    }
}

impl Worktrees {
    /// Does a stash entry hold anything but the spec link qw put in task worktrees
    /// (which `git stash -u` takes along as an untracked file)?
    fn stash_holds_work(&self, stash: &str) -> bool {
        let spec = self.repo.spec_rel(&self.spec);
        let mut paths = Vec::new();
        for args in [
            vec!["diff", "--name-only", "-z", &format!("{stash}^1"), stash],
            vec!["ls-tree", "-r", "-z", "--name-only", &format!("{stash}^3")],
        ] {
            if let Ok(out) = git_output(&self.repo.top, &args, &[])
                && out.status.success()
            {
                paths.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split('\0')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                );
            }
        }
        paths
            .iter()
            .any(|p| p != &spec && !p.starts_with(&format!("{spec}/")))
    }

    /// The stash entries the task's agent made and left there (`git stash` keeps work
    /// out of the worktree, so qw would not merge it): one line naming each
    /// (`stash@{N}` and its commit), or `None`. The stash is shared by every worktree:
    /// an entry is the task's when it is new since the worktree was made and was made
    /// on the task's branch — or on a branch (or detached HEAD) this worktree's HEAD
    /// went to, from a commit it visited. Entries made on another task's branch or in
    /// another worktree are not. Nothing is applied or dropped.
    pub fn stashed(&self, h: &WorktreeHandle) -> Option<String> {
        let log = tree::reflog_entries(&h.admin);
        let visited: BTreeSet<&str> = log.iter().map(|(c, _)| c.as_str()).collect();
        let mut went: BTreeSet<&str> = BTreeSet::new();
        let mut detached = false;
        for (_, m) in &log {
            if let Some((from, to)) = m
                .strip_prefix("checkout: moving from ")
                .and_then(|r| r.split_once(" to "))
            {
                for b in [from, to] {
                    if b == "HEAD" || (b.len() >= 40 && b.bytes().all(|c| c.is_ascii_hexdigit())) {
                        detached = true;
                    } else {
                        went.insert(b);
                    }
                }
            }
        }
        let mine: Vec<String> = self
            .repo
            .stash_entries()
            .into_iter()
            .filter(|e| !h.stashes_before.contains(&e.commit))
            .filter(|e| self.stash_holds_work(&e.commit))
            .filter(|e| match e.branch() {
                Some(b) if b == h.branch => true,
                Some(b) if parse_branch(b).is_some() => false,
                Some(b) => {
                    let on_mine = if b == "(no branch)" {
                        detached
                    } else {
                        went.contains(b)
                    };
                    on_mine
                        && self
                            .repo
                            .commit_of(&format!("{}^1", e.commit))
                            .ok()
                            .flatten()
                            .is_some_and(|p| visited.contains(p.as_str()))
                }
                None => false,
            })
            .map(|e| e.describe())
            .collect();
        if mine.is_empty() {
            return None;
        }
        Some(format!(
            "task {}'s agent left its work in the stash, which qw does not merge: {}; it is kept there, not applied — bring it back with `git stash apply <commit>` (its number changes as stashes come and go), or run `qw workflow-continue` to run the task again",
            h.task_id,
            mine.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stash_entries_name_their_branch() {
        let e = |m: &str| StashEntry {
            index: 2,
            commit: "0123456789abcdef0123".into(),
            message: m.into(),
        };
        assert_eq!(
            e("WIP on qw/demo/1: 368ad93 second").branch(),
            Some("qw/demo/1")
        );
        assert_eq!(e("On feature/x: my: note").branch(), Some("feature/x"));
        assert_eq!(
            e("WIP on (no branch): 368ad93 a").branch(),
            Some("(no branch)")
        );
        assert_eq!(e("autostash").branch(), None);
        let d = e("On main: a\nb").describe();
        assert_eq!(d, "stash@{2} (commit 0123456789ab, \"On main: a\\nb\")");
    }
}
