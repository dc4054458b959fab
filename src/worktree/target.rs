//! The target branch: where qw merges task branches, and whether it is still where qw
//! left it.
//!
//! qw merges only into the integration branch where it left it, or where a move the main
//! worktree followed put it ([`Worktrees::check_target`]). Anything else is a [`Moved`]
//! target, refused before any merge or new task, touching nothing: the branch moved
//! under the main worktree's index or files (an agent's `update-ref`, a `reset
//! --mixed`, a deletion), moved onto commits of a task qw has not merged (a merge, a
//! fast-forward, a `reset --hard` in the main worktree), renamed, or the main worktree
//! no longer on it (a detached HEAD, another branch checked out).
//!
//! The way back is worked out when the refusal is given ([`Worktrees::check_target`]):
//! the newest place the branch's reflog (the main HEAD's, when the branch was deleted)
//! shows that holds qw's merges and no commit of a task qw has not merged — so a commit
//! the user made before the move is kept — and the one git command that puts the branch
//! there without touching anything else: `git update-ref` when the index stayed behind,
//! `git reset -q` when only the files did, `git reset --keep` when both followed.
//!
//! A refusal is recorded in `<git-common-dir>/qw-refused-moves/<spec>` ([`refused_move`]):
//! the next run of the spec (`workflow-continue`) checks the target against where the
//! refused run left it and is refused (exit 2) until it is put back — or until the user
//! deletes the record, taking the branch as it is. `workflow-reset` leaves the record.
//!
//! Staged changes in the main worktree ([`Repo::staged_paths`]) are not a move: git
//! merges only while the index matches the last commit, and qw never changes the user's
//! index, so they are refused before a run and fail a merge naming them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{
    Repo, Result, WorktreeError, Worktrees, git, git_output, parse_branch, short, task_branch,
};

/// The folder (in the common git dir) of the refused-move records, one file per spec.
const RECORDS: &str = "qw-refused-moves";

/// The target branch is not where qw left it: why, and what puts it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    /// One clause: where qw left the branch, where it is, what changed.
    pub(crate) why: String,
    /// What puts it back, with the exact git command (`put `main` back (`git …`)`).
    pub(crate) fix: String,
}

impl Moved {
    /// `why; <what was not done>; fix`, then the `qw workflow-continue` of the spec.
    pub(crate) fn line(&self, spec: &str, not_done: &str) -> String {
        format!(
            "{}; {not_done}; {}, then run `qw workflow-continue {}`",
            self.why,
            self.fix,
            quote(spec)
        )
    }
}

/// Where a refused run left the target branch (read from its record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMove {
    /// The record file (deleting it takes the branch as it is).
    pub file: PathBuf,
    /// The integration branch of the refused run.
    pub integration: String,
    /// The commit qw had left it at.
    pub was: String,
}

/// The most of a record qw reads (it writes a few hundred bytes).
const RECORD_MAX: usize = 64 * 1024;

/// The record of a refused move of `spec`'s target branch, if there is one. It is read
/// as a regular file only (never a FIFO, which would block, nor a device, nor more than
/// [`RECORD_MAX`]); one that is not a record qw wrote is `Err(line)`: one line naming
/// the file and what is wrong with it, and that deleting it takes the branch as it is.
pub fn refused_move(repo: &Repo, spec: &str) -> std::result::Result<Option<RefusedMove>, String> {
    let file = record_path(repo, spec);
    let bad = |what: &str| {
        format!(
            "the record of a refused move of the target branch `{}` {what}; delete it to take the branch as it is (`rm -r -- {}`), then run `qw workflow-continue {}` again",
            file.display(),
            quote(&file.to_string_lossy()),
            quote(spec)
        )
    };
    match file.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(&format!("cannot be read: {e}"))),
        Ok(m) if m.is_dir() => return Err(bad("is a directory, not a file qw wrote")),
        Ok(_) => {}
    }
    let text = match crate::fs::read_regular_text(&file, RECORD_MAX) {
        Ok(t) => t,
        Err(e) => return Err(bad(&format!("cannot be read as qw wrote it: {e}"))),
    };
    match parse_record(&text) {
        Some((integration, was)) => Ok(Some(RefusedMove {
            file,
            integration,
            was,
        })),
        None => Err(bad("is not one qw wrote (no `branch` and `was` lines)")),
    }
}

// Branch names may hold `$(…)`, backquotes, spaces: one quoting rule for every hint.
use super::shell::quote;

/// `(branch, was)` from a record's text; `None` when it is not one qw wrote.
fn parse_record(text: &str) -> Option<(String, String)> {
    let mut integration = None;
    let mut was = None;
    for line in text.lines() {
        if let Some(b) = line.strip_prefix("branch ") {
            integration = Some(b.trim().to_owned());
        } else if let Some(c) = line.strip_prefix("was ") {
            was = Some(c.trim().to_owned());
        }
    }
    match (integration, was) {
        (Some(b), Some(c))
            if !b.is_empty() && c.len() >= 40 && c.bytes().all(|x| x.is_ascii_hexdigit()) =>
        {
            Some((b, c))
        }
        _ => None,
    }
}

fn record_path(repo: &Repo, spec: &str) -> PathBuf {
    repo.common_dir.join(RECORDS).join(spec)
}

impl Repo {
    /// Paths whose staged content differs from HEAD in the main worktree's index
    /// (relative to the repository top; `.claude/` included, the worktree container
    /// left out). HEAD without a commit: none.
    pub fn staged_paths(&self) -> Result<Vec<String>> {
        if self.commit_of("HEAD")?.is_none() {
            return Ok(Vec::new());
        }
        let out = git(
            &self.top,
            &[
                "diff-index",
                "--cached",
                "--name-only",
                "--no-renames",
                "-z",
                "HEAD",
                "--",
            ],
        )?;
        let container = self.container_rel();
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                container
                    .as_ref()
                    .is_none_or(|c| !p.starts_with(c.as_str()))
            })
            .map(str::to_owned)
            .collect())
    }

    /// One line refusing staged `paths`: which, where, and the git commands that settle
    /// them (`git restore --staged -- <pathspecs>` copied as it is, from anywhere in the
    /// repository: each path is `:(top,literal)<path>`, so neither the directory it is
    /// run from nor a glob character in a name changes what it names). A name with a
    /// backquote or a control character (a newline) is shown escaped, and the command
    /// then names all staged paths (`:/`): nothing in a name can break the line.
    pub fn staged_line(&self, paths: &[String], what: &str) -> String {
        let odd = |p: &str| p.chars().any(|c| c == '`' || c.is_control());
        let shown: Vec<String> = paths
            .iter()
            .take(5)
            .map(|p| {
                if odd(p) {
                    format!("{p:?}").replace('`', "\\u{60}")
                } else {
                    p.clone()
                }
            })
            .collect();
        let more = if paths.len() > 5 {
            format!(" and {} more", paths.len() - 5)
        } else {
            String::new()
        };
        let names = if paths.len() > 20 || paths.iter().any(|p| odd(p)) {
            ":/".to_owned()
        } else {
            paths
                .iter()
                .map(|p| quote(&format!(":(top,literal){p}")).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "the main worktree `{}` has staged changes ({}{more}); {what}: git merges only while the index matches the last commit, and qw never changes your index — commit them (`git commit`), stash them (`git stash`) or unstage them (`git restore --staged -- {names}`)",
            self.top.display(),
            shown.join(", ")
        )
    }

    /// Paths that differ between two commits (`.claude/` of the project included).
    pub(super) fn changed_paths(&self, a: &str, b: &str) -> Result<BTreeSet<String>> {
        let out = git(
            &self.top,
            &["diff", "--name-only", "--no-renames", "-z", a, b, "--"],
        )?;
        Ok(split_z(&out))
    }

    /// Paths where the main worktree's index (`cached`) or its files (else) differ from
    /// `commit`. Untracked files do not count.
    fn differs_from(&self, commit: &str, cached: bool) -> Result<BTreeSet<String>> {
        let mut args = vec!["diff-index", "--name-only", "--no-renames", "-z"];
        if cached {
            args.push("--cached");
        }
        args.extend([commit, "--"]);
        Ok(split_z(&git(&self.top, &args)?))
    }

    /// The commits a ref (`refs/heads/<b>`) pointed at, newest first (at most 200).
    fn reflog_of(&self, r: &str) -> Vec<String> {
        match git_output(
            &self.top,
            ["reflog", "show", "-n", "200", "--format=%H", r],
            &[],
        ) {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Was `branch` made by renaming `from` (`git branch -m`), as its reflog says?
    fn renamed_from(&self, branch: &str, from: &str) -> bool {
        let r = format!("refs/heads/{branch}");
        let said = format!("renamed refs/heads/{from} to {r}");
        git_output(
            &self.top,
            ["reflog", "show", "-n", "200", "--format=%gs", &r],
            &[],
        )
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&said))
    }
}

fn split_z(out: &str) -> BTreeSet<String> {
    out.split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Worktrees {
    /// Is the integration branch where qw left it (the repository lock is held)? The
    /// main worktree must be on it; a move the main worktree followed — its index holds
    /// the new commit on the paths the move changed, and the old one is in the new one's
    /// history (the user committed there, even part of what was staged; another qw
    /// merged; a pull) — is taken as the new place, unless it brings in commits of a
    /// task branch of this spec that qw did not merge (an agent's move, even with a
    /// commit made on top of it), or the main worktree's files of the paths it changed
    /// do not match the index (a `reset --mixed`). Anything else is `Some(Moved)`,
    /// saying where qw left the branch, where it is now and the command that puts it
    /// back; nothing is touched. A check that passes clears the spec's record of a
    /// refused move.
    pub(crate) fn check_target(&self) -> Result<Option<Moved>> {
        let b = &self.integration;
        let now = self.repo.commit_of(&format!("refs/heads/{b}"))?;
        let Some(was) = self.tip() else {
            self.set_tip(now);
            return Ok(None);
        };
        let head = self.repo.current_branch()?;
        if head.as_deref() != Some(b.as_str()) {
            return self
                .off_target(&was, now.as_deref(), head.as_deref())
                .map(Some);
        }
        let Some(now) = now else {
            return Ok(Some(Moved {
                why: format!(
                    "the target branch `{b}` was moved while the workflow ran, not by qw: it was deleted (qw left it at {})",
                    short(&was)
                ),
                fix: self.restore_fix(&was, None)?,
            }));
        };
        if now == was {
            self.clear_record();
            return Ok(None);
        }
        let keeps = self.repo.is_ancestor(&was, &now)?;
        let changed = self.repo.changed_paths(&was, &now)?;
        let follows = self.repo.differs_from(&now, true)?.is_disjoint(&changed);
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
            self.clear_record();
            return Ok(None);
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
        Ok(Some(Moved {
            why: format!(
                "the target branch `{b}` was moved while the workflow ran, not by qw: qw left it at {}, it is now at {}, and {why}",
                short(&was),
                short(&now)
            ),
            fix: self.restore_fix(&was, Some(&now))?,
        }))
    }

    /// The main worktree is not on the target branch: renamed (`git branch -m`, from any
    /// worktree), a detached HEAD, another branch checked out.
    fn off_target(&self, was: &str, now: Option<&str>, head: Option<&str>) -> Result<Moved> {
        let b = &self.integration;
        let top = self.repo.top.display();
        let prefix = format!("the target branch `{b}` was moved while the workflow ran, not by qw");
        if now.is_none()
            && let Some(other) = head
            && self.repo.renamed_from(other, b)
        {
            return Ok(Moved {
                why: format!(
                    "{prefix}: it was renamed to `{other}` (qw left it at {})",
                    short(was)
                ),
                fix: format!(
                    "rename it back (`git branch -m {} {}`)",
                    quote(other),
                    quote(b)
                ),
            });
        }
        let on = match head {
            Some(other) => format!("it is on branch `{other}`"),
            None => format!(
                "it has a detached HEAD{}",
                self.repo
                    .commit_of("HEAD")?
                    .map(|c| format!(" at {}", short(&c)))
                    .unwrap_or_default()
            ),
        };
        let Some(now) = now else {
            // Deleted too: made again where its history says, and checked out.
            let (r, _) = self.restore_point(was, None)?;
            return Ok(Moved {
                why: format!(
                    "{prefix}: it was deleted (qw left it at {}), and the main worktree `{top}` is no longer on it ({on})",
                    short(was)
                ),
                fix: format!(
                    "make it again and check it out (`git switch -c {} {r}`)",
                    quote(b)
                ),
            });
        };
        let at = if now == was {
            format!("`{b}` itself is where qw left it, at {}", short(was))
        } else {
            format!("`{b}` is at {}, qw left it at {}", short(now), short(was))
        };
        Ok(Moved {
            why: format!("{prefix}: the main worktree `{top}` is no longer on it ({on}; {at})"),
            fix: format!("check `{b}` out again (`git switch {}`)", quote(b)),
        })
    }

    /// What puts the target back (the main worktree is on it): to the newest place its
    /// reflog shows that holds what qw left there and no unmerged task commit, with the
    /// git command that moves only what moved: `update-ref` when the index stayed
    /// there, `reset -q` when the index followed and the files stayed, `reset --keep`
    /// when both followed. `now` is `None` when the branch was deleted (its reflog went
    /// with it: the main HEAD's is read).
    ///
    /// A command never drops a commit: when the branch holds commits that the place it
    /// goes back to lacks and no task branch holds (the user's resolution of a merge, an
    /// amended merge, a commit on top of an agent's move), the fix first keeps them on a
    /// branch of their own (`git branch qw-kept/<sha> <sha>`), naming them — one
    /// command that keeps them all whatever they are, where a cherry-pick could conflict
    /// and would put an agent's commit back as well; the user takes what they want from
    /// there.
    fn restore_fix(&self, was: &str, now: Option<&str>) -> Result<String> {
        let b = &self.integration;
        let ref_b = quote(&format!("refs/heads/{b}")).into_owned();
        let (r, no_reflog) = self.restore_point(was, now)?;
        let cmd = if now.is_none() {
            format!("git update-ref {ref_b} {r}")
        } else {
            let index = self.repo.differs_from(&r, true)?;
            if index.is_empty() {
                format!("git update-ref {ref_b} {r}")
            } else if self.repo.differs_from(&r, false)?.is_disjoint(&index) {
                format!("git reset -q {r}")
            } else {
                format!("git reset --keep {r}")
            }
        };
        let note = if no_reflog {
            format!(
                " (no reflog of `{b}` was there to say where it was before: back to where qw left it)"
            )
        } else {
            String::new()
        };
        let back = format!("put `{b}` back (`{cmd}`){note}");
        let Some(now) = now else {
            return Ok(back);
        };
        let left = self.left_out(&r, now)?;
        if left.is_empty() {
            return Ok(back);
        }
        let kept = format!("qw-kept/{}", short(now));
        let more = if left.len() > 3 {
            format!(" and {} more", left.len() - 3)
        } else {
            String::new()
        };
        Ok(format!(
            "that would leave out {} ({}{more}): keep them first (`git branch {} {now}`), then {back}",
            if left.len() == 1 {
                "a commit".to_owned()
            } else {
                format!("{} commits", left.len())
            },
            left.iter()
                .take(3)
                .map(|c| short(c))
                .collect::<Vec<_>>()
                .join(", "),
            quote(&kept)
        ))
    }

    /// The commits `now` holds that `r` lacks and no task branch of this spec holds
    /// (newest first, at most 50): what putting the branch back at `r` would drop.
    fn left_out(&self, r: &str, now: &str) -> Result<Vec<String>> {
        if self.repo.is_ancestor(now, r)? {
            return Ok(Vec::new());
        }
        let tips = self.task_tips()?;
        let range = format!("{r}..{now}");
        let mut args = vec!["rev-list", "--max-count=50", range.as_str()];
        if !tips.is_empty() {
            args.push("--not");
            args.extend(tips.iter().map(|(_, c)| c.as_str()));
        }
        Ok(git(&self.repo.top, &args)?
            .split_whitespace()
            .map(str::to_owned)
            .collect())
    }

    /// The newest commit the target's reflog (the main HEAD's when the branch is gone)
    /// shows that holds `was` and no commit of a task qw has not merged, other than
    /// `now` (the place refused); `was` when none does. The flag says no reflog was
    /// there to read (expired, turned off).
    fn restore_point(&self, was: &str, now: Option<&str>) -> Result<(String, bool)> {
        let b = &self.integration;
        let r = format!("refs/heads/{b}");
        let mut log = self.repo.reflog_of(&r);
        if self.repo.commit_of(&r)?.is_none() || log.is_empty() {
            // Read from the file: git will not show HEAD's reflog while HEAD names a
            // branch that is gone.
            log = super::tree::reflog_entries(&self.repo.git_dir)
                .into_iter()
                .rev()
                .map(|(c, _)| c)
                .collect();
        }
        let no_reflog = log.is_empty();
        let mut seen = BTreeSet::new();
        for c in log {
            if c == was {
                break;
            }
            if Some(c.as_str()) == now
                || !seen.insert(c.clone())
                || self.repo.commit_of(&c)?.is_none()
            {
                continue;
            }
            if self.repo.is_ancestor(was, &c)? && self.brings_task_commits(was, &c)?.is_none() {
                return Ok((c, false));
            }
        }
        Ok((was.to_owned(), no_reflog))
    }

    /// Note a refused move of the target in the spec's record (see [`refused_move`]);
    /// a record already there keeps where the first refusal left the branch.
    pub(crate) fn record_refusal(&self, moved: &Moved) {
        let Some(was) = self.tip() else { return };
        let path = record_path(&self.repo, &self.spec);
        if path.symlink_metadata().is_ok() {
            return;
        }
        let text = format!(
            "branch {}\nwas {was}\n# qw refused to merge into it: {}\n# put it back, or delete this file to take the branch as it is\n",
            self.integration, moved.why
        );
        let written = crate::fs::create_dir_all(crate::fs::parent_dir(&path))
            .and_then(|()| crate::fs::write_durable(&path, text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(
                "could not record the refused move of `{}`: {e}",
                self.integration
            );
        }
    }

    /// The target is back where it belongs: the record of a refused move is done with.
    fn clear_record(&self) {
        let path = record_path(&self.repo, &self.spec);
        if path.symlink_metadata().is_ok() {
            let _ = crate::fs::remove_file(&path);
        }
    }

    /// Go on from where a refused run left the target (its record): the next check
    /// compares the branch with that commit, not with where it is now.
    pub fn resume_from(&self, refused: &RefusedMove) {
        if refused.integration == self.integration {
            self.set_tip(Some(refused.was.clone()));
        }
    }

    /// The task branch of this spec (the branches this run gave out, the `qw/<spec>/<id>`
    /// branches there are, the HEADs of its running tasks' worktrees) with commits that
    /// `now` holds and `was` lacks: commits qw did not merge, brought into the target by
    /// someone else's move.
    fn brings_task_commits(&self, was: &str, now: &str) -> Result<Option<String>> {
        let by_hand = self
            .by_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (branch, tip) in self.task_tips()? {
            if by_hand.contains(&branch) {
                // qw told the user to merge it by hand: their merge is no agent's move.
                continue;
            }
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

    /// A task branch whose merge conflicted: qw told the user to merge it by hand.
    pub(crate) fn merge_by_hand(&self, branch: &str) {
        self.by_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(branch.to_owned());
    }

    /// This spec's task branches: the ones this run gave out and the `qw/<spec>/<id>`
    /// branches there are (not `--allow-dirty` snapshots, not `<id>@<sha>` kept work).
    pub(super) fn task_branches(&self) -> Result<BTreeSet<String>> {
        let mut branches = self
            .given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for b in self.repo.qw_branches()? {
            if parse_branch(&b).is_some_and(|(s, t)| {
                s == self.spec && !t.starts_with("snapshot-") && !t.contains('@')
            }) {
                branches.insert(b);
            }
        }
        Ok(branches)
    }

    /// `(branch, tip)` of this spec's task branches: the branches this run gave out, the
    /// `qw/<spec>/<id>` branches there are, the HEADs of its tasks' worktrees.
    fn task_tips(&self) -> Result<Vec<(String, String)>> {
        let mut tips: Vec<(String, String)> = Vec::new();
        for branch in self.task_branches()? {
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
        Ok(tips)
    }

    /// The paths that differ between `was` and `now` whose files in the main worktree do
    /// not match its index (a `reset --mixed` moved the branch and the index, not the
    /// files). qw's own `.claude/` is left out (it writes the ticks there).
    fn stale_files(&self, was: &str, now: &str) -> Result<Vec<String>> {
        let top = &self.repo.top;
        let claude = format!("{}.claude/", self.repo.prefix);
        let paths: BTreeSet<String> = self
            .repo
            .changed_paths(was, now)?
            .into_iter()
            .filter(|p| !p.starts_with(&claude))
            .collect();
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        // The whole tree, then only those paths: no pathspec (globs, argv length).
        let out = git(top, &["diff", "--name-only", "--no-renames", "-z"])?;
        Ok(out
            .split('\0')
            .filter(|p| paths.contains(*p))
            .map(str::to_owned)
            .collect())
    }
}

impl Worktrees {
    /// The run is over (its last task done, failed, or the run interrupted): the target
    /// is checked once more, so a move made in the last task, which no merge or task
    /// start comes after, is refused and recorded like any other. The line to tell, when
    /// it moved; nothing when the check cannot be made (the lock is not to be had).
    pub fn check_at_end(&self, on_wait: &dyn Fn(&str)) -> Option<String> {
        let _g = self
            .lock("checking the target branch at the end of the run", on_wait)
            .ok()?;
        match self.check_target() {
            Ok(Some(m)) => {
                self.record_refusal(&m);
                Some(m.line(
                    &self.spec,
                    "qw noticed it when the run ended and merges nothing into it until it is put back",
                ))
            }
            Ok(None) => None,
            Err(e) => Some(format!(
                "could not check the target branch `{}` at the end of the run: {e}",
                self.integration
            )),
        }
    }
}

/// Refuse what qw is about to do when the target moved (see [`Worktrees::check_target`]):
/// `Err(TargetMoved)` with the line, the refusal recorded. A check that cannot be made
/// (git failed) fails the step too: qw merges nothing into a branch it could not check.
pub(crate) fn refuse_if_moved(w: &Worktrees, not_done: &str) -> Result<()> {
    match w.check_target()? {
        Some(m) => {
            w.record_refusal(&m);
            Err(WorktreeError::TargetMoved(m.line(&w.spec, not_done)))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_no_record() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let text = format!("branch main\nwas {sha}\n# qw refused to merge into it: x\n");
        assert_eq!(parse_record(&text), Some(("main".into(), sha.into())));
        assert_eq!(parse_record("branch main\n"), None);
        assert_eq!(parse_record("branch main\nwas HEAD\n"), None);
        assert_eq!(parse_record(&format!("branch \nwas {sha}\n")), None);
        assert_eq!(parse_record(""), None);
    }

    #[test]
    fn a_moved_line_says_what_was_not_done_and_how_to_go_on() {
        let m = Moved {
            why: "the target branch `main` was moved".into(),
            fix: "put `main` back (`git reset --keep abc`)".into(),
        };
        assert_eq!(
            m.line("demo", "task 2 was not started"),
            "the target branch `main` was moved; task 2 was not started; put `main` back (`git reset --keep abc`), then run `qw workflow-continue demo`"
        );
    }
}
