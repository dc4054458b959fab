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
    Repo, Result, WorktreeError, Worktrees, disk, git, git_output, origin, parse_branch, short,
    task_branch,
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
            "{}; {not_done}; {}, then run `{}`",
            self.why,
            self.fix,
            super::shell::continue_cmd(spec)
        )
    }
}

/// A task branch whose commits a move of the target brought in (see
/// [`Worktrees::check_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Brought {
    /// The task branch.
    branch: String,
    /// Paths where a merge of it by hand left conflict markers (none: not merged by hand).
    markers: Vec<String>,
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
            "the record `{}` of a refused move of spec `{spec}`'s target branch {what}; delete it to take the branch as it is (`rm -r -- {}`), then run `{}` again",
            file.display(),
            quote(&file.to_string_lossy()),
            super::shell::continue_cmd(spec)
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
        Some((integration, was)) if !super::tree::is_commit(repo, &was) => Err(bad(&format!(
            "names commit {was} as where qw left branch `{integration}`, and the repository has no such commit (pruned, or the record was copied from elsewhere)"
        ))),
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
            "the main worktree `{}` has staged changes ({}{more}); {what}: git merges only while the index matches the last commit, and qw never changes your index — commit them (`git commit`), stash them (`git stash`) or unstage them (`git restore --staged -- {names}`; the files stay changed, so a run then needs `--allow-dirty`)",
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

/// Where a hint puts the target back ([`Worktrees::restore_point`]).
#[derive(Debug)]
struct Point {
    /// The commit.
    at: String,
    /// No reflog said where the branch was: what was found instead.
    no_reflog: Option<Found>,
    /// Other commits, only reflogs hold, to keep first.
    keep: Vec<String>,
}

/// What was found when no reflog said where the branch was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// Nothing: back where qw left it.
    Nothing,
    /// Commits on top of qw's last merge that only reflogs hold: the newest.
    Loose,
}

impl Point {
    fn at(c: String) -> Point {
        Point {
            at: c,
            no_reflog: None,
            keep: Vec::new(),
        }
    }

    /// The clause saying that no reflog said where `b` was, or nothing.
    fn note(&self, b: &str) -> String {
        match self.no_reflog {
            None => String::new(),
            Some(Found::Nothing) => format!(
                " (no reflog of `{b}` was there to say where it was before: back to where qw left it)"
            ),
            Some(Found::Loose) => format!(
                " (no reflog of `{b}` could be read: back to the newest commit on top of qw's last merge that no branch holds)"
            ),
        }
    }
}

/// `back`, first keeping `commits` (and what they hold) on branches of their own
/// (`git branch qw-kept/<sha> <sha>`), naming `left` (the commits `back` leaves out;
/// `commits` themselves when empty): a command never drops a commit.
fn keep_first(commits: &[String], left: &[String], back: String) -> String {
    let mut seen = BTreeSet::new();
    let commits: Vec<&String> = commits.iter().filter(|c| seen.insert(*c)).collect();
    if commits.is_empty() {
        return back;
    }
    let left: Vec<&String> = if left.is_empty() {
        commits.clone()
    } else {
        left.iter().collect()
    };
    let cmds: Vec<String> = commits.iter().map(|c| keep_cmd(c)).collect();
    leave_out(&left, &cmds.join(", "), &back)
}

/// `` `git branch qw-kept/<sha7> <commit>` ``: keeps `commit` on a branch of its own.
fn keep_cmd(commit: &str) -> String {
    format!(
        "`git branch {} {commit}`",
        quote(&format!("qw-kept/{}", short(commit)))
    )
}

/// "that would leave out <the first three of `left`>: keep them first (`cmds`), then
/// `back`".
fn leave_out<S: AsRef<str>>(left: &[S], cmds: &str, back: &str) -> String {
    let more = if left.len() > 3 {
        format!(" and {} more", left.len() - 3)
    } else {
        String::new()
    };
    format!(
        "that would leave out {} ({}{more}): keep {} first ({cmds}), then {back}",
        if left.len() == 1 {
            "a commit".to_owned()
        } else {
            format!("{} commits", left.len())
        },
        left.iter()
            .take(3)
            .map(|c| short(c.as_ref()))
            .collect::<Vec<_>>()
            .join(", "),
        if left.len() == 1 { "it" } else { "them" },
    )
}

/// A rebase of the target ([`Repo::rebased`]): where onto, and the commits it brought.
#[derive(Debug)]
struct Rebase {
    /// The commit the rewritten history now starts from.
    onto: String,
    /// The commits the new history holds that are no copy of one of the old (newest
    /// first, at most 50): what the rebase brought in.
    brought: Vec<String>,
}

impl Rebase {
    /// `N commits (a, b, c…) up to <onto>`.
    fn onto_line(&self) -> String {
        let more = if self.brought.len() > 3 {
            format!(" and {} more", self.brought.len() - 3)
        } else {
            String::new()
        };
        format!(
            "{} it did not hold ({}{more}), up to {}",
            if self.brought.len() == 1 {
                "a commit".to_owned()
            } else {
                format!("{} commits", self.brought.len())
            },
            self.brought
                .iter()
                .take(3)
                .map(|c| short(c))
                .collect::<Vec<_>>()
                .join(", "),
            short(&self.onto)
        )
    }
}

impl Repo {
    /// Is `now` a rebase of `was` onto other commits: every commit `was` holds and `now`
    /// lacks has a copy (the same patch) in `now`, and those copies sit on top of the
    /// commits the rebase brought (none of which is a copy)? Merges are not compared
    /// (a rebase drops them, replaying what they merged).
    fn rebased(&self, was: &str, now: &str) -> Result<Option<Rebase>> {
        let range = format!("{now}...{was}");
        let lost = git(
            &self.top,
            &[
                "rev-list",
                "--cherry-pick",
                "--right-only",
                "--no-merges",
                range.as_str(),
            ],
        )?;
        if !lost.trim().is_empty() {
            return Ok(None);
        }
        let marked = git(
            &self.top,
            &[
                "rev-list",
                "--cherry-mark",
                "--left-only",
                "--no-merges",
                "--topo-order",
                range.as_str(),
            ],
        )?;
        let lines: Vec<&str> = marked.split_whitespace().collect();
        // Newest first: the copies, then only what the rebase brought.
        let copies = lines.iter().take_while(|l| l.starts_with('=')).count();
        let brought: Vec<String> = lines[copies..]
            .iter()
            .map(|l| l.trim_start_matches(['=', '+', '<', '>']).to_owned())
            .collect();
        if copies == 0 || brought.is_empty() || lines[copies..].iter().any(|l| l.starts_with('=')) {
            return Ok(None);
        }
        let onto = brought[0].clone();
        // The copies are all that lies between `onto` and `now`.
        let above = git(
            &self.top,
            &["rev-list", "--count", &format!("{onto}..{now}")],
        )?;
        if above.trim().parse::<usize>().ok() != Some(copies) {
            return Ok(None);
        }
        Ok(Some(Rebase {
            onto,
            brought: brought.into_iter().take(50).collect(),
        }))
    }
}

impl Repo {
    /// The `qw-kept/*` branches a put-back hint of qw's told the user to make (rev5b F8),
    /// with how many commits each holds that HEAD lacks (those with none left out).
    pub fn kept_by_put_back(&self) -> Result<Vec<(String, u64)>> {
        let out = git(
            &self.top,
            &[
                "for-each-ref",
                "--format=%(refname:lstrip=2)",
                "refs/heads/qw-kept/",
            ],
        )?;
        let mut kept = Vec::new();
        for b in out.lines().map(str::trim).filter(|b| !b.is_empty()) {
            let n = self.unmerged_commits(b, "HEAD")?;
            if n > 0 {
                kept.push((b.to_owned(), n));
            }
        }
        Ok(kept)
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
    /// commit made on top of it; not a commit made in the main worktree that a task
    /// merged or rebased onto later, nor the user's merge of a branch qw told them to
    /// merge by hand: [`Self::brings_task_commits`]), or the main worktree's files of
    /// the paths it changed are still the old tip's while the index moved (a `reset
    /// --mixed`; a file the user edited after committing it is neither). Anything else is `Some(Moved)`,
    /// saying where qw left the branch, where it is now and the command that puts it
    /// back; nothing is touched. A check that passes clears the spec's record of a
    /// refused move.
    pub(crate) fn check_target(&self) -> Result<Option<Moved>> {
        // Once refused, refused for the rest of the run: nothing more is merged, so the
        // put-back printed with the refusal still holds when the run ends
        // ([`Self::check_at_end`] checks afresh and says which way it went).
        if let Some(m) = self.refused_in_run() {
            return Ok(Some(m));
        }
        let moved = self.read_still(|| self.check_target_now())?;
        if let Some(m) = &moved {
            *self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(m.clone());
        }
        Ok(moved)
    }

    fn refused_in_run(&self) -> Option<Moved> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether every step from `was` to `now` is an entry of the main worktree's HEAD
    /// reflog made by a git command that moves the index with the branch (`commit`,
    /// `merge`, `pull`, `cherry-pick`, `revert`) since the run began: the user's own
    /// commits there. Read after the branch (git appends the log entry before it moves
    /// the ref), so a commit being made — its ref moved, its index not yet written — or
    /// the user's next one, already staged or committed, is still the user's; the index
    /// is not read twice against a branch that moves in between (rev6b G7, G15).
    fn made_in_main(&self, was: &str, now: &str) -> bool {
        let log = super::tree::head_log(&self.repo.git_dir);
        let from = self.started.main_log.min(log.len());
        let log = &log[from..];
        let Some(end) = log.iter().rposition(|l| l.to == now) else {
            return false;
        };
        let mut at = now;
        for l in log[..=end].iter().rev() {
            if l.to != at {
                return false;
            }
            let porcelain = ["commit", "merge ", "pull", "cherry-pick", "revert"]
                .iter()
                .any(|p| l.message.starts_with(p));
            if !porcelain {
                return false;
            }
            if l.from == was {
                return true;
            }
            at = &l.from;
        }
        false
    }

    fn check_target_now(&self) -> Result<Option<Moved>> {
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
        let follows = self.repo.differs_from(&now, true)?.is_disjoint(&changed)
            || (keeps && self.made_in_main(&was, &now));
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
        let why = if let Some(Brought { branch, markers }) = task {
            if markers.is_empty() {
                format!(
                    "it holds commits of task branch `{branch}` that qw did not merge (a merge, a fast-forward or a reset onto commits a task's worktree made, or that nothing the main worktree made or moved to accounts for: an agent's move, or a merge of a task's branch while it ran — whatever was committed on top)"
                )
            } else {
                format!(
                    "it holds a merge of task branch `{branch}` that left conflict markers in {} (a leftover conflict marker, as `git diff --check` says)",
                    markers.join(", ")
                )
            }
        } else if !stale.is_empty() {
            format!(
                "the main worktree's files were not moved with it ({} still as the branch had them where qw left it, unlike its index: a `git reset --mixed`?)",
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
        let rebase = if follows && !keeps {
            // Against where the hint puts it back (a commit of the user's made before
            // the pull is there, and its copy in `now`).
            let at = self.restore_point(&was, Some(&now))?.at;
            self.repo.rebased(&at, &now)?
        } else {
            None
        };
        let (why, fix) = match rebase {
            // The history qw merged was rewritten onto other commits (a `git pull
            // --rebase`): its merges are on it only as copies, which qw cannot check
            // against what it merged. Put back, and the commits the rebase brought
            // taken by a merge instead, which keeps qw's merges as they are.
            Some(r) => (
                format!(
                    "{why}: it was rebased onto {} (as a pull with --rebase does), holding copies of the commits qw merged, not them",
                    r.onto_line()
                ),
                format!(
                    "{}, then take those commits by a merge, which keeps qw's merges (`git merge --no-edit {}`)",
                    self.restore_fix(&was, Some(&now))?,
                    r.onto
                ),
            ),
            None => (why, self.restore_fix(&was, Some(&now))?),
        };
        Ok(Some(Moved {
            why: format!(
                "the target branch `{b}` was moved while the workflow ran, not by qw: qw left it at {}, it is now at {}, and {why}",
                short(&was),
                short(&now)
            ),
            fix,
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
        {
            let said = self.repo.renamed_from(other, b);
            // No log says so (reftable, logs expired or off): the branch the main
            // worktree is on holds what qw merged, so a rename is likely, not certain.
            let likely = !said
                && parse_branch(other).is_none()
                && self.repo.is_ancestor(was, &format!("refs/heads/{other}"))?
                && self
                    .repo
                    .commit_of(&format!("refs/heads/{other}"))?
                    .map(|t| self.brings_task_commits(was, &t))
                    .transpose()?
                    .flatten()
                    .is_none();
            if said || likely {
                let how = if said {
                    format!("it was renamed to `{other}`")
                } else {
                    format!(
                        "it was renamed to `{other}` or deleted (no reflog says which; `{other}`, where the main worktree is, holds what qw merged)"
                    )
                };
                return Ok(Moved {
                    why: format!("{prefix}: {how} (qw left it at {})", short(was)),
                    fix: format!(
                        "rename it back (`git branch -m {} {}`)",
                        quote(other),
                        quote(b)
                    ),
                });
            }
        }
        let detached = if head.is_none() {
            self.repo.commit_of("HEAD")?
        } else {
            None
        };
        if now.is_none()
            && let Some(h) = &detached
            && let Some((to, said)) = self.renamed_while_detached(was)?
        {
            // Renamed, and the main worktree detached (before or after): the way back
            // is the rename back, then the branch checked out again; a commit made on
            // the detached HEAD that the branch lacks is kept first.
            let how = if said {
                format!("it was renamed to `{to}`")
            } else {
                format!(
                    "it was renamed to `{to}` or deleted (no reflog says which; `{to}` is the one branch that holds what qw merged)"
                )
            };
            let keep = if self.left_out(&format!("refs/heads/{to}"), h)?.is_empty() {
                Vec::new()
            } else {
                vec![h.clone()]
            };
            let back = format!(
                "rename it back and check it out (`git branch -m {} {}`, then `git switch {}`)",
                quote(&to),
                quote(b),
                quote(b)
            );
            return Ok(Moved {
                why: format!(
                    "{prefix}: {how} (qw left it at {}), and the main worktree `{top}` has a detached HEAD at {}",
                    short(was),
                    short(h)
                ),
                fix: keep_first(&keep, &[], back),
            });
        }
        let on = match head {
            Some(other) => format!("it is on branch `{other}`"),
            None => format!(
                "it has a detached HEAD{}",
                detached
                    .as_ref()
                    .map(|c| format!(" at {}", short(c)))
                    .unwrap_or_default()
            ),
        };
        let Some(now) = now else {
            // Deleted too: made again where its history says, and checked out.
            let p = self.restore_point(was, None)?;
            let mut keep = p.keep.clone();
            if let Some(h) = &detached {
                // Commits made on the detached HEAD would be held by its reflog only.
                keep.extend(
                    self.left_out(&p.at, h)?
                        .into_iter()
                        .take(1)
                        .map(|_| h.clone()),
                );
            }
            let back = format!(
                "make it again and check it out (`git switch -c {} {}`){}",
                quote(b),
                p.at,
                p.note(b)
            );
            return Ok(Moved {
                why: format!(
                    "{prefix}: it was deleted (qw left it at {}), and the main worktree `{top}` is no longer on it ({on})",
                    short(was)
                ),
                fix: keep_first(&keep, &[], back),
            });
        };
        let back = format!("check `{b}` out again (`git switch {}`)", quote(b));
        let keep = match &detached {
            Some(h) if !self.left_out(now, h)?.is_empty() => vec![h.clone()],
            _ => Vec::new(),
        };
        // The branch itself did not move: only the main worktree left it (rev8b F10: not
        // "was moved … itself is where qw left it").
        let why = if now == was {
            format!(
                "the main worktree `{top}` moved off the target branch `{b}` while the workflow ran, not by qw: it is no longer on it ({on}); `{b}` itself is where qw left it, at {}",
                short(was)
            )
        } else {
            format!(
                "{prefix}: the main worktree `{top}` is no longer on it ({on}; `{b}` is at {}, qw left it at {})",
                short(now),
                short(was)
            )
        };
        Ok(Moved {
            why,
            fix: keep_first(&keep, &[], back),
        })
    }

    /// The branch the target was renamed to while the main worktree is on none (a
    /// detached HEAD): one whose reflog says it was renamed from the target (`true`), else
    /// the one branch other than qw's that holds `was` and no unmerged task commit, when
    /// there is exactly one (`false`: likely, not certain). Only branches holding `was`
    /// are looked at.
    fn renamed_while_detached(&self, was: &str) -> Result<Option<(String, bool)>> {
        let b = &self.integration;
        let out = git(
            &self.repo.top,
            &[
                "for-each-ref",
                "--format=%(refname:lstrip=2)",
                "--contains",
                was,
                "refs/heads/",
            ],
        )?;
        let holding: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|x| !x.is_empty() && !x.starts_with("qw/") && !x.starts_with("qw-kept/"))
            .collect();
        if let Some(to) = holding.iter().find(|x| self.repo.renamed_from(x, b)) {
            return Ok(Some(((*to).to_owned(), true)));
        }
        let [only] = holding.as_slice() else {
            return Ok(None);
        };
        let Some(tip) = self.repo.commit_of(&format!("refs/heads/{only}"))? else {
            return Ok(None);
        };
        if self.brings_task_commits(was, &tip)?.is_some() {
            return Ok(None);
        }
        Ok(Some(((*only).to_owned(), false)))
    }

    /// What puts the target back (the main worktree is on it): to the newest place its
    /// reflog shows that holds what qw left there and no unmerged task commit, with the
    /// git command that moves only what moved: `update-ref` when the index stayed
    /// there, `reset -q` when the index followed and the files on disk still are the
    /// place's (untracked ones included), `reset --keep` when both followed. `now` is `None` when the branch was deleted (its reflog went
    /// with it: the main HEAD's is read).
    ///
    /// A command never drops a commit: when the branch holds commits that the place it
    /// goes back to lacks (the user's resolution of a merge, an amended merge, a commit on
    /// top of an agent's move, whatever task branch holds them too), the fix first keeps them on a
    /// branch of their own (`git branch qw-kept/<sha> <sha>`), naming them — one
    /// command that keeps them all whatever they are, where a cherry-pick could conflict
    /// and would put an agent's commit back as well; the user takes what they want from
    /// there.
    fn restore_fix(&self, was: &str, now: Option<&str>) -> Result<String> {
        let b = &self.integration;
        let ref_b = quote(&format!("refs/heads/{b}")).into_owned();
        let p = self.restore_point(was, now)?;
        let r = &p.at;
        let cmd = if now.is_none() {
            format!("git update-ref {ref_b} {r}")
        } else {
            let index = self.repo.differs_from(r, true)?;
            if index.is_empty() {
                format!("git update-ref {ref_b} {r}")
            } else if disk::as_in(&self.repo, r, &index)?.len() == index.len() {
                // The files on disk (untracked ones too: a mixed reset leaves the undone
                // commit's new files untracked, and `--keep` would refuse them) are `r`'s.
                format!("git reset -q {r}")
            } else {
                format!("git reset --keep {r}")
            }
        };
        let back = format!("put `{b}` back (`{cmd}`){}", p.note(b));
        let Some(now) = now else {
            return Ok(keep_first(&p.keep, &[], back));
        };
        // What the branch holds when the hint is followed is kept first, by its name, not
        // by the commit it is at now: whatever lands on it after this line is printed —
        // another workflow's merge, a commit of the user's — is not dropped by the
        // put-back (rev5b F14).
        let mut left = self.left_out(r, now)?;
        let first = format!(
            "`git branch {} {}`",
            quote(&format!("qw-kept/{}", short(now))),
            quote(b)
        );
        let mut cmds = vec![first];
        cmds.extend(p.keep.iter().map(|c| keep_cmd(c)));
        if left.is_empty() && p.keep.is_empty() {
            return Ok(format!(
                "keep what `{b}` holds first ({}: anything that lands on it before you put it back — another workflow's merge, a commit of yours — stays there), then {back}",
                cmds.join(", ")
            ));
        }
        left.extend(p.keep.iter().cloned());
        Ok(leave_out(
            &left,
            &format!(
                "{}; the first keeps whatever is on `{b}` when you run it",
                cmds.join(", ")
            ),
            &back,
        ))
    }

    /// The commits `now` holds that `r` lacks (newest first, at most 50): what putting
    /// the branch back at `r` would take off it — whatever other branch holds them too
    /// (a task that merged the target holds the user's commits). Only a task's own
    /// commits (made by it, as its reflogs say) that its branch holds are left to that
    /// branch: qw merges them with the task.
    fn left_out(&self, r: &str, now: &str) -> Result<Vec<String>> {
        if self.repo.is_ancestor(now, r)? {
            return Ok(Vec::new());
        }
        let range = format!("{r}..{now}");
        let args = vec!["rev-list", "--max-count=50", range.as_str()];
        let mut left: Vec<String> = git(&self.repo.top, &args)?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let running = self.running_admins()?;
        for (branch, tip) in self.task_tips()? {
            if left.is_empty() {
                break;
            }
            let admin = running.iter().find(|(b, _)| b == &branch).map(|(_, a)| a);
            let made = origin::made_by_task(&self.repo, &branch, admin.map(PathBuf::as_path));
            let mut keep = Vec::new();
            for c in left {
                if !(made.contains(&c) && self.repo.is_ancestor(&c, &tip)?) {
                    keep.push(c);
                }
            }
            left = keep;
        }
        Ok(left)
    }

    /// The newest commit the target's reflog (the main HEAD's when the branch is gone)
    /// shows that holds `was` and no commit of a task qw has not merged, other than
    /// `now` (the place refused); `was` when none does. When no reflog was there to
    /// read (expired, turned off, or git cannot read the main HEAD's: the reftable
    /// backend with HEAD naming the deleted branch) and the branch is gone, the commits
    /// that only reflogs hold on top of `was` are the place (the newest) and kept (the
    /// others), so no commit of the user's is left out for want of a log.
    fn restore_point(&self, was: &str, now: Option<&str>) -> Result<Point> {
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
                return Ok(Point::at(c));
            }
        }
        if no_reflog && now.is_none() {
            let mut found = Vec::new();
            for c in super::reflog::held_only_by_reflogs(&self.repo, was)? {
                if self.brings_task_commits(was, &c)?.is_none() {
                    found.push(c);
                }
            }
            if let Some((at, others)) = found.split_first() {
                return Ok(Point {
                    at: at.clone(),
                    no_reflog: Some(Found::Loose),
                    keep: others.to_vec(),
                });
            }
        }
        Ok(Point {
            at: was.to_owned(),
            no_reflog: no_reflog.then_some(Found::Nothing),
            keep: Vec::new(),
        })
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

    /// The task branch (this spec's or another workflow's: the branches this run gave
    /// out, the `qw/<spec>/<id>` branches there are, the HEADs of task worktrees) with
    /// commits that `now` holds and `was` lacks: commits qw did not merge, brought into
    /// the target by someone else's move. A commit the main worktree's git made or moved
    /// to (the user's commit, a merge made there, a `git pull` or `git merge <branch>`
    /// that fast-forwarded, a reset) is not a task's because a task merged or rebased
    /// onto it afterwards, whoever wrote it; a commit a task's worktree made is
    /// ([`origin::brings`]). Nor is what another workflow's qw merged, nor what a branch
    /// qw kept and named (`qw/<spec>/<id>@<sha>`) holds once the main worktree merged it.
    /// A branch qw told the user to merge by hand (its merge conflicted, or its task
    /// stopped with its work kept: [`Self::merge_by_hand`]) merged by the main worktree
    /// since, while no worktree runs on it, is the user's — so is any merge the main
    /// worktree made of another workflow's branch no worktree runs on (that workflow's
    /// process told the user, this one cannot know when) — unless that merge (or one of
    /// a kept branch) left conflict markers in paths both sides changed.
    fn brings_task_commits(&self, was: &str, now: &str) -> Result<Option<Brought>> {
        let by_hand = self
            .by_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let gained = origin::gained(&self.repo, was, now)?;
        if gained.is_empty() {
            return Ok(None);
        }
        let log = origin::main_log(&self.repo);
        let lines = super::tree::head_log(&self.repo.git_dir);
        let times: Vec<i64> = if lines.len() == log.len() {
            lines.iter().map(|l| l.time).collect()
        } else {
            Vec::new()
        };
        let running = self.running_admins()?;
        let admins: Vec<&std::path::Path> = running.iter().map(|(_, a)| a.as_path()).collect();
        let users = origin::users(&self.repo, &self.spec, was, &gained, &log, &admins)?;
        // A kept branch qw named, merged in the main worktree: the user's merge, as qw
        // advised — unless it left conflict markers.
        for (branch, tip) in &users.kept {
            let markers = self.markers_of(was, now, tip)?;
            if !markers.is_empty() {
                return Ok(Some(Brought {
                    branch: branch.clone(),
                    markers,
                }));
            }
        }
        let mut by_task: std::collections::BTreeMap<String, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for (branch, tip) in self.task_tips()? {
            let admin = running.iter().find(|(b, _)| b == &branch).map(|(_, a)| a);
            // Another workflow's branch no worktree runs on: that workflow (its own
            // process) told the user to merge it by hand; this one cannot know when, so
            // any merge of it the main worktree made counts.
            let other_spec = parse_branch(&branch).is_some_and(|(s, _)| s != self.spec);
            let mark = by_hand
                .get(&branch)
                .copied()
                .or_else(|| other_spec.then_some(0));
            // Another workflow's branch counts only once that workflow left it where it
            // is (its record names the tip), and only a merge made after it did: a merge
            // of it made while its task ran is its agent's (rev5b F14).
            let left_since = if by_hand.contains_key(&branch) {
                Some(i64::MIN)
            } else {
                super::owned::left_there_since(&self.repo, &branch, &tip)
            };
            // Where the HEAD log was when that workflow left it, where known: a merge
            // made in that very second is told by position.
            let left_at = (!by_hand.contains_key(&branch) && times.len() == log.len())
                .then(|| super::owned::left_there_at(&self.repo, &branch, &tip, &lines))
                .flatten();
            if let Some(mark) = mark
                && admin.is_none()
                && let Some(left_since) = left_since
            {
                let since = log.get(mark..).unwrap_or(&[]);
                let mut merged = false;
                for (i, (c, _)) in since.iter().enumerate() {
                    // By position where the record has one; else by time: both times
                    // are whole seconds, so a merge in the very second the record was
                    // written is taken as made while the task ran (refused, its hint
                    // keeps everything): the safe side of the tie.
                    let after = match left_at {
                        Some(n) => mark + i >= n,
                        None => times.get(mark + i).is_none_or(|t| *t > left_since),
                    };
                    if after && gained.contains(c) && self.repo.is_ancestor(&tip, c)? {
                        merged = true;
                        break;
                    }
                }
                if merged {
                    // The user's merge by hand, as qw advised — unless it left markers.
                    let markers = self.markers_of(was, now, &tip)?;
                    if markers.is_empty() {
                        continue;
                    }
                    return Ok(Some(Brought { branch, markers }));
                }
            }
            let made = by_task.entry(branch.clone()).or_insert_with(|| {
                origin::made_by_task(&self.repo, &branch, admin.map(PathBuf::as_path))
            });
            if origin::brings(&self.repo, &tip, was, &gained, &users, made)? {
                return Ok(Some(Brought {
                    branch,
                    markers: Vec::new(),
                }));
            }
        }
        Ok(None)
    }

    /// The branch of `task_id` (`qw/<spec>/<id>`) when it is there and the target holds
    /// all of it — its commits, or its changes squashed in by hand ([`Self::squashed`]):
    /// merged by hand. `None` otherwise, when the branch is not at the tip qw left it at
    /// (`owned::left_there_since`), or when git cannot say.
    pub(crate) fn merged_branch(&self, task_id: &str) -> Option<String> {
        let branch = task_branch(&self.spec, task_id);
        let tip = self
            .repo
            .commit_of(&format!("refs/heads/{branch}"))
            .ok()??;
        let target = format!("refs/heads/{}", self.integration);
        // Merged or squashed, only at the tip qw left the branch at: a branch moved since
        // (onto a commit the target holds, `git branch -f <it> main`, or its tree) is not
        // the task's work, and is put back when its task starts (rev8b F6).
        super::owned::left_there_since(&self.repo, &branch, &tip)?;
        (self.repo.is_ancestor(&tip, &target).unwrap_or(false) || self.squashed(&tip, &target))
            .then_some(branch)
    }

    /// Did the target take in `tip`'s changes without its commits — `git merge --squash
    /// <branch>`, the conflict resolved, committed (rev5b F17)? A merge of `tip` now
    /// changes nothing of the target but paths where it conflicts (`git merge-tree`), and
    /// each of those the target last changed in a commit made in the main worktree (its
    /// HEAD reflog: the user's resolution, not a task's commit nor qw's merge) no earlier
    /// than `tip` was made. A conflict that was never resolved leaves those paths as the
    /// other side wrote them, so it is not taken for a squash.
    pub(crate) fn squashed(&self, tip: &str, target: &str) -> bool {
        let top = &self.repo.top;
        let Ok(out) = git_output(
            top,
            [
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                "-z",
                target,
                tip,
            ],
            &[],
        ) else {
            return false;
        };
        // 0: clean, 1: conflicts; anything else: git cannot say.
        if !matches!(out.status.code(), Some(0 | 1)) {
            return false;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut parts = text.split('\0').filter(|p| !p.is_empty());
        let Some(tree) = parts.next() else {
            return false;
        };
        let conflicted: BTreeSet<&str> = parts.collect();
        let Ok(differ) = git(top, &["diff-tree", "-r", "--name-only", "-z", target, tree]) else {
            return false;
        };
        let differ: Vec<&str> = differ.split('\0').filter(|p| !p.is_empty()).collect();
        if differ.iter().any(|p| !conflicted.contains(p)) {
            return false;
        }
        if conflicted.is_empty() {
            return true;
        }
        let Ok(made) = git(top, &["log", "-1", "--format=%ct", tip]) else {
            return false;
        };
        let Ok(made) = made.trim().parse::<i64>() else {
            return false;
        };
        let here = origin::made_in(&self.repo.git_dir);
        conflicted.iter().all(|p| {
            let Ok(last) = git(
                top,
                &[
                    "log",
                    "-1",
                    "--format=%H %ct",
                    target,
                    "--",
                    &format!(":(top,literal){p}"),
                ],
            ) else {
                return false;
            };
            let mut w = last.split_whitespace();
            match (w.next(), w.next().and_then(|t| t.parse::<i64>().ok())) {
                (Some(c), Some(t)) => here.contains(c) && t >= made,
                _ => false,
            }
        })
    }

    /// The tasks whose `qw/<spec>/<id>` branch the target holds all of (read before
    /// merged leftovers are cleared: a branch merged by hand is deleted with them).
    pub(crate) fn merged_task_ids(&self) -> Vec<String> {
        let Ok(branches) = self.task_branches() else {
            return Vec::new();
        };
        branches
            .iter()
            .filter_map(|b| parse_branch(b).map(|(_, t)| t.to_owned()))
            .filter(|t| self.merged_branch(t).is_some())
            .collect()
    }

    /// `(task branch, git dir)` of every registered task worktree, this spec's and other
    /// workflows' in the same repository.
    fn running_admins(&self) -> Result<Vec<(String, PathBuf)>> {
        Ok(self
            .repo
            .registered()?
            .into_iter()
            .filter_map(|w| match (w.task, w.admin) {
                (Some((spec, task)), Some(admin)) => Some((task_branch(&spec, &task), admin)),
                _ => None,
            })
            .collect())
    }

    /// Paths both the target (`was`) and a task's `tip` changed since they parted, where
    /// `was..now` adds a leftover conflict marker.
    fn markers_of(&self, was: &str, now: &str, tip: &str) -> Result<Vec<String>> {
        let out = git_output(&self.repo.top, ["merge-base", was, tip], &[])?;
        let parted = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || parted.is_empty() {
            return Ok(Vec::new());
        }
        let both: BTreeSet<String> = self
            .repo
            .changed_paths(&parted, tip)?
            .intersection(&self.repo.changed_paths(&parted, was)?)
            .cloned()
            .collect();
        Ok(origin::conflict_markers(&self.repo, was, now, &both)?
            .into_iter()
            .collect())
    }

    /// A task branch qw told the user to merge by hand: its merge conflicted, or its task
    /// stopped with its unmerged work kept on it. A merge of it the main worktree makes
    /// from now on (its HEAD reflog grows past this point) is the user's move, not an
    /// agent's (see [`Self::brings_task_commits`]); the first mark stays.
    pub(crate) fn merge_by_hand(&self, branch: &str) {
        self.merge_by_hand_since(branch, self.main_log_mark());
    }

    /// Where the main worktree's HEAD reflog is now (see [`Self::merge_by_hand_since`]).
    pub(crate) fn main_log_mark(&self) -> usize {
        origin::main_log(&self.repo).len()
    }

    /// [`Self::merge_by_hand`], counting only merges past `mark` entries of the main
    /// worktree's HEAD reflog (taken when the task's agent was done).
    pub(crate) fn merge_by_hand_since(&self, branch: &str, mark: usize) {
        self.by_hand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(branch.to_owned())
            .or_insert(mark);
    }

    /// This spec's task branches: the ones this run gave out and the `qw/<spec>/<id>`
    /// branches there are (not `--allow-dirty` snapshots, not `<id>@<sha>` kept work).
    pub(super) fn task_branches(&self) -> Result<BTreeSet<String>> {
        self.task_branches_of(Some(&self.spec))
    }

    /// Every workflow's task branches: as [`Self::task_branches`], whatever their spec.
    /// Two workflows can run in one repository, and an agent of one can take the
    /// other's unmerged work (see [`Self::brings_other_tasks`]).
    pub(super) fn all_task_branches(&self) -> Result<BTreeSet<String>> {
        self.task_branches_of(None)
    }

    /// `(branch, tip)` of each of [`Self::all_task_branches`] that exists (one git for
    /// all: the branches this run gave out are as many as its tasks).
    pub(super) fn all_task_branch_tips(&self) -> Result<Vec<(String, String)>> {
        self.repo.tips_of(&self.all_task_branches()?)
    }

    /// The given branches and the `qw/<spec>/<id>` task branches of `spec` (of every
    /// spec when `None`).
    fn task_branches_of(&self, spec: Option<&str>) -> Result<BTreeSet<String>> {
        let mut branches = self
            .given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for b in self.repo.qw_branches()? {
            if parse_branch(&b).is_some_and(|(s, t)| {
                spec.is_none_or(|spec| s == spec) && !t.starts_with("snapshot-") && !t.contains('@')
            }) {
                branches.insert(b);
            }
        }
        Ok(branches)
    }

    /// `(branch, tip)` of every task branch in the repository, this spec's and other
    /// workflows' (a move of the target bringing in another workflow's unmerged task is
    /// no less a move): the branches this run gave out, the `qw/<spec>/<id>` branches
    /// there are, the HEADs of task worktrees.
    fn task_tips(&self) -> Result<Vec<(String, String)>> {
        let mut tips = self.all_task_branch_tips()?;
        for w in self.repo.registered()? {
            let Some((spec, task)) = &w.task else {
                continue;
            };
            let branch = task_branch(spec, task);
            if let Some(head) = w.head {
                tips.push((branch, head));
            }
        }
        Ok(tips)
    }

    /// The paths that differ between `was` and `now` whose files in the main worktree do
    /// not match its index and still are `was`'s version (a `reset --mixed` moved the
    /// branch and the index, not the files). A file that is neither — the user committed
    /// it and went on editing, or committed part of it (`git add -p`) — is no sign of a
    /// move. qw's own `.claude/` is left out (it writes the ticks there).
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
        let differ: BTreeSet<String> = out
            .split('\0')
            .filter(|p| paths.contains(*p))
            .map(str::to_owned)
            .collect();
        Ok(disk::as_in(&self.repo, was, &differ)?.into_iter().collect())
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
        // Afresh: a refusal given earlier in the run is told again as it is now (its
        // put-back worked out again), or said to be over.
        let earlier = self.refused_in_run();
        match self.read_still(|| self.check_target_now()) {
            Ok(Some(m)) => {
                self.record_refusal(&m);
                Some(m.line(
                    &self.spec,
                    if earlier.is_some() {
                        "qw refused it earlier in the run, merged nothing into it since, and merges nothing into it until it is put back (this line's commands are the ones to run, worked out when the run ended)"
                    } else {
                        "qw noticed it when the run ended and merges nothing into it until it is put back"
                    },
                ))
            }
            Ok(None) if earlier.is_some() => Some(format!(
                "the move of the target branch `{}` refused earlier in this run no longer stands (it is where qw left it, or moved as the main worktree's own commits move it): nothing to put back, skip the commands printed with that refusal; run `{}` for the tasks it stopped",
                self.integration,
                super::shell::continue_cmd(&self.spec)
            )),
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

/// Staged changes in the main worktree stop a new task before its agent runs, as a
/// move does: git would refuse its merge (see [`Repo::staged_paths`]), so its work
/// would only wait on its branch. `Err(Staged)` naming them and how to settle them.
/// Not while the main worktree is in the middle of a merge (or rebase, …) qw did not
/// start: its staged paths are that operation's, which the merge step names as such.
pub(crate) fn refuse_staged_start(w: &Worktrees, task_id: &str) -> Result<()> {
    let staged = w.read_still(|| match w.repo.main_in_progress() {
        Some(_) => Ok(Vec::new()),
        None => w.repo.staged_paths(),
    })?;
    if staged.is_empty() {
        return Ok(());
    }
    Err(WorktreeError::Staged(format!(
        "{}, then run `{}`",
        w.repo
            .staged_line(&staged, &format!("task {task_id} was not started")),
        super::shell::continue_cmd(&w.spec)
    )))
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
