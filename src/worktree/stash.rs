//! The stash (`refs/stash` and its reflog), shared by every worktree of a repository:
//! which entries a task's agent made and left there, which entries went away while it
//! ran (and where their changes are), and whether the main worktree's uncommitted work
//! (untracked directories file by file) went into it or off its disk
//! ([`Worktrees::stash_check`]); the spec link a `git stash -u` took is put
//! back ([`Worktrees::relink_spec`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::shell::quote;
use super::tree::{LogLine, head_log};
use super::{Repo, WorktreeHandle, Worktrees, git_command, git_output};

impl Repo {
    /// How the entry `commit` comes back into the main worktree, as one backquoted
    /// command: `git stash apply <commit>` — unless its untracked files (`^3`, taken by a
    /// `git stash -u` in a task's worktree) hold qw's spec link, which the main worktree
    /// has as a folder (of `spec`): git refuses the whole apply then ("already exists, no
    /// checkout"), so the entry's changes to tracked files are applied as a patch and its
    /// untracked files but the link restored from `^3`, never overwriting or removing a
    /// file the entry does not hold (`--overlay`).
    pub(crate) fn way_back(&self, spec: &str, commit: &str) -> String {
        let link = self.spec_rel(spec);
        let holds_link = git_output(
            &self.top,
            ["cat-file", "-e", &format!("{commit}^3:{link}")],
            &[],
        )
        .is_ok_and(|o| o.status.success());
        if !holds_link {
            return format!("`git stash apply {commit}`");
        }
        let tracked = git_output(
            &self.top,
            ["diff", "--quiet", &format!("{commit}^1"), commit],
            &[],
        )
        .is_ok_and(|o| o.status.code() == Some(1));
        let restore = format!(
            "git restore --overlay --source={commit}^3 -- ':/' ':(top,exclude){}'",
            link.replace('\'', "'\\''")
        );
        let command = if tracked {
            format!("git stash show -p --binary {commit} | git apply && {restore}")
        } else {
            restore
        };
        format!(
            "`{command}` (not `git stash apply {commit}`, which git refuses: its untracked files hold qw's spec link `{link}`, a folder in the main worktree)"
        )
    }

    /// The stash (shared by every worktree of the repository), newest first:
    /// `stash@{index}`, its commit, when it was made and the message git gave it.
    pub fn stash_entries(&self) -> Vec<StashEntry> {
        self.stash_list().unwrap_or_default()
    }

    /// The line naming the stash entries made on `branch` (git's `WIP on <branch>:` /
    /// `On <branch>:`), for a removal of that branch that would otherwise say nothing of
    /// them (`qw worktrees --prune` deleting it as merged, rev5b F20): the entries stay
    /// in the stash, and the line says how each comes back. `None` when there is none.
    pub(crate) fn stash_made_on(&self, branch: &str) -> Option<String> {
        let made: Vec<String> = self
            .stash_entries()
            .into_iter()
            .filter(|e| e.branch() == Some(branch))
            .map(|e| {
                format!(
                    "{} — {}",
                    e.describe(),
                    self.way_back(spec_of(branch), &e.commit)
                )
            })
            .collect();
        (!made.is_empty()).then(|| {
            format!(
                "the stash holds {} entr{} made on branch `{branch}`, which is not on it nor merged with it (its task's agent stashed that work): {}; they stay in the stash",
                made.len(),
                if made.len() == 1 { "y" } else { "ies" },
                made.join(", ")
            )
        })
    }

    /// [`Repo::stash_entries`], or `None` when git could not list them (tried
    /// [`LIST_TRIES`] times: `git stash list` fails with `bad revision 'refs/stash'`
    /// when another worktree drops or pops the last entry as it runs).
    fn stash_list(&self) -> Option<Vec<StashEntry>> {
        let out = (0..LIST_TRIES)
            .filter_map(|_| {
                git_output(
                    &self.top,
                    ["stash", "list", "--format=%H%x09%ct%x09%gs"],
                    &[],
                )
                .ok()
            })
            .find(|out| out.status.success())?;
        let list = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (commit, rest) = l.split_once('\t')?;
                let (time, message) = rest.split_once('\t')?;
                Some((commit, time.parse().unwrap_or(0), message))
            })
            .enumerate()
            .map(|(index, (commit, time, message))| StashEntry {
                index,
                commit: commit.to_owned(),
                time,
                message: message.to_owned(),
            })
            .collect();
        Some(list)
    }

    /// The main worktree's uncommitted paths (see [`Repo::dirty_paths`]) with the blob
    /// id of each file (`None`: deleted, or not a regular file), read without touching
    /// the index. An untracked directory (`git status` names it `dir/`) is listed file
    /// by file, nested ones too ([`Repo::untracked_in`]).
    fn dirty_files(&self) -> Vec<(String, Option<String>)> {
        self.dirty_files_and_dirs().0
    }

    /// [`Repo::dirty_files`], and the untracked directories they were listed from.
    fn dirty_files_and_dirs(&self) -> (Vec<(String, Option<String>)>, Vec<String>) {
        let Ok(paths) = self.dirty_paths() else {
            return (Vec::new(), Vec::new());
        };
        let (dirs, mut files): (Vec<String>, Vec<String>) =
            paths.into_iter().partition(|p| p.ends_with('/'));
        files.extend(self.untracked_in(&dirs));
        files.sort();
        files.dedup();
        let blobs = file_blobs(&self.top, &files);
        (files.into_iter().zip(blobs).collect(), dirs)
    }

    /// The files inside the untracked directories `dirs` (named as `git status` names
    /// them, ending in `/`), at most [`MAX_UNTRACKED_FILES`] in all. A directory over
    /// that bound, or one git cannot list, stands for itself (its name, ending in `/`),
    /// as does a repository nested in one.
    fn untracked_in(&self, dirs: &[String]) -> Vec<String> {
        if dirs.is_empty() {
            return Vec::new();
        }
        let specs: Vec<String> = dirs.iter().map(|d| format!(":(top,literal){d}")).collect();
        let mut args = vec!["ls-files", "--others", "--exclude-standard", "-z", "--"];
        args.extend(specs.iter().map(String::as_str));
        let listed: Vec<String> = match git_output(&self.top, &args, &[]) {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => return dirs.to_vec(),
        };
        let mut files = Vec::new();
        for d in dirs {
            let inside: Vec<&String> = listed
                .iter()
                .filter(|p| p.starts_with(d.as_str()))
                .collect();
            if inside.is_empty() || files.len() + inside.len() > MAX_UNTRACKED_FILES {
                files.push(d.clone());
            } else {
                files.extend(inside.into_iter().cloned());
            }
        }
        files
    }
}

/// How many files inside the main worktree's untracked directories qw records at most
/// (each is hashed at every task's start): a bigger directory is recorded by its name.
const MAX_UNTRACKED_FILES: usize = 2_000;

/// [`file_blob`] of each of `rels` (relative to `dir`), one `git hash-object` for all
/// (names ending in `/` are directories: `None`).
fn file_blobs(dir: &Path, rels: &[String]) -> Vec<Option<String>> {
    let regular: Vec<bool> = rels
        .iter()
        .map(|p| !p.ends_with('/') && dir.join(p).symlink_metadata().is_ok_and(|m| m.is_file()))
        .collect();
    // `--stdin-paths` reads a name a line, unquoted.
    let batched: Vec<&String> = rels
        .iter()
        .zip(&regular)
        .filter(|(p, r)| **r && !p.contains('\n'))
        .map(|(p, _)| p)
        .collect();
    let input: String = batched.iter().map(|p| format!("{p}\n")).collect();
    let hashed: Option<Vec<String>> = if batched.is_empty() {
        Some(Vec::new())
    } else {
        git_with_input(dir, &["hash-object", "--stdin-paths"], &input)
            .map(|out| out.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|h| h.len() == batched.len())
    };
    let Some(hashed) = hashed else {
        // A file went away as it was read: one at a time.
        return rels
            .iter()
            .map(|p| {
                if p.ends_with('/') {
                    None
                } else {
                    file_blob(dir, p)
                }
            })
            .collect();
    };
    let mut hashed = hashed.into_iter();
    rels.iter()
        .zip(&regular)
        .map(|(p, r)| {
            if !*r {
                None
            } else if p.contains('\n') {
                file_blob(dir, p)
            } else {
                hashed.next()
            }
        })
        .collect()
}

/// Run git in `dir` with `input` on its stdin; stdout on success.
fn git_with_input(dir: &Path, args: &[&str], input: &str) -> Option<String> {
    use std::io::Write;
    let mut cmd = git_command(dir, &[], args, &[]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_owned();
    // Written from a thread: git answers as it reads, and a full pipe would block.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How many times the stash is listed before qw takes it as unreadable.
const LIST_TRIES: usize = 3;

/// The blob id of the file at `dir/rel` (`None` when there is no regular file).
fn file_blob(dir: &Path, rel: &str) -> Option<String> {
    let path = dir.join(rel);
    let meta = path.symlink_metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let out = git_output(dir, ["hash-object", "--", rel], &[]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One entry of the stash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StashEntry {
    /// `N` of `stash@{N}` (changes as entries come and go; the commit does not).
    pub index: usize,
    /// The stash commit.
    pub commit: String,
    /// When it was made (the stash commit's time, seconds since the epoch).
    pub time: i64,
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

    /// Like [`StashEntry::describe`] for an entry that may no longer be listed (its
    /// number then is the one it had, or none for one qw never saw listed).
    fn gone_describe(&self) -> String {
        if self.index == usize::MAX {
            format!(
                "commit {} (\"{}\")",
                &self.commit[..self.commit.len().min(12)],
                crate::fmt::escaped_line(&self.message)
            )
        } else {
            self.describe()
        }
    }

    /// The command that puts the entry back in the stash with its message.
    fn store_command(&self) -> String {
        format!(
            "git stash store -m {} {}",
            quote(&self.message),
            self.commit
        )
    }
}

/// What the stash and the main worktree held when a task's worktree was made, and
/// where its worktree's reset traces stood (see [`Worktrees::stash_check`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StashBefore {
    /// The stash's entries.
    pub entries: Vec<StashEntry>,
    /// The main worktree's uncommitted files (path, blob id; `None`: deleted).
    pub main_dirty: Vec<(String, Option<String>)>,
    /// When the listing of `entries` started (see [`Watch`]).
    at: Option<Instant>,
    /// When it was taken: stash commits written since may be the task's.
    since: Option<SystemTime>,
    /// Stash commits written shortly before `since` ([`LISTING_RACE`]) that the listing
    /// did not hold, each with whether the task's worktree already held its changes:
    /// an entry another worktree's `git stash` was making as the task started (its
    /// commit is written before its ref), or one already gone. Not the task's.
    unsettled: Vec<(StashEntry, bool)>,
}

/// Where a worktree's traces of a `git stash` stood when qw last made it ready: the
/// number of lines of its HEAD reflog (`git worktree add` writes a reset line too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Mark {
    reflog_lines: usize,
}

impl Mark {
    fn of(git_dir: &Path) -> Mark {
        Mark {
            reflog_lines: head_log(git_dir).len(),
        }
    }
}

/// One line of a HEAD reflog: the new commit, its time and message.
/// A worktree qw watches for stashes: a running task's, or the main one.
#[derive(Debug, Clone)]
struct Watched {
    /// `task N` or `the main worktree`.
    who: String,
    /// The task's branch (`None` for the main worktree).
    branch: Option<String>,
    /// Its top directory.
    path: PathBuf,
    /// Its git dir.
    git_dir: PathBuf,
    /// The branch its HEAD was on when qw made it ready.
    start: String,
    /// Its traces when qw made it ready.
    mark: Mark,
}

impl Watched {
    fn start_branch(&self) -> &str {
        &self.start
    }
}

/// Each reflog line with the branch HEAD was on at it (`(no branch)` when detached),
/// following `checkout: moving from A to B` lines from `start`.
fn walk_log(log: &[LogLine], start: &str) -> Vec<(String, LogLine)> {
    let mut on = start.to_owned();
    log.iter()
        .map(|l| {
            if let Some((_, to)) = l
                .message
                .strip_prefix("checkout: moving from ")
                .and_then(|r| r.split_once(" to "))
            {
                let detached =
                    to == "HEAD" || (to.len() >= 40 && to.bytes().all(|c| c.is_ascii_hexdigit()));
                on = if detached {
                    "(no branch)".to_owned()
                } else {
                    to.to_owned()
                };
            }
            (on.clone(), l.clone())
        })
        .collect()
}

/// What qw knows of the stash over a run: the worktrees it watches, every entry it
/// saw (so an entry made and popped between two tasks' looks is still known), and the
/// entries already warned about (each warning is said once).
#[derive(Debug, Default)]
pub(crate) struct Watch {
    inner: Mutex<WatchState>,
}

#[derive(Debug, Default)]
struct WatchState {
    watched: Vec<Watched>,
    /// commit → (entry, when the last listing holding it started, and ended).
    seen: BTreeMap<String, (StashEntry, Instant, Instant)>,
    told: BTreeSet<String>,
    /// The main worktree's uncommitted files when the run's first task was made.
    main_dirty_at_start: Option<Vec<(String, Option<String>)>>,
    /// The untracked directories those files were listed from (see [`shown`]).
    main_dirs_at_start: Vec<String>,
    /// The run's `--allow-dirty` snapshot: branch and commit.
    snapshot: Option<(String, String)>,
    /// commit → the worktrees that may have made it (see [`Worktrees::stash_check`]).
    candidates: BTreeMap<String, BTreeSet<String>>,
}

impl Watch {
    fn state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// List the stash, recording what it holds (`None`: git could not list it) and
    /// when the listing started.
    fn list(&self, repo: &Repo) -> (Option<Vec<StashEntry>>, Instant) {
        let started = Instant::now();
        let list = repo.stash_list();
        let ended = Instant::now();
        let mut s = self.state();
        for e in list.iter().flatten() {
            s.seen.insert(e.commit.clone(), (e.clone(), started, ended));
        }
        (list, started)
    }

    /// Entries a listing that started after `after` and ended before `before` held
    /// (their last listing).
    fn listed_between(&self, after: Instant, before: Instant) -> Vec<StashEntry> {
        self.state()
            .seen
            .values()
            .filter(|(_, started, ended)| *started > after && *ended < before)
            .map(|(e, _, _)| e.clone())
            .collect()
    }

    /// Is this the first time `key` is told?
    fn first_telling(&self, key: &str) -> bool {
        self.state().told.insert(key.to_owned())
    }
}

/// Which worktrees may have made a stash entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Maker {
    /// This task's worktree.
    Mine,
    /// Another worktree (or none qw watches).
    NotMine,
    /// This one or the others named: qw cannot tell.
    Ambiguous(Vec<String>),
}

/// Decide from who has strong evidence (a reset of its worktree at the entry's base
/// commit when it was made) and, failing that, weak evidence (its HEAD went to that
/// branch or detached HEAD and visited that commit).
fn decide(
    strong_mine: bool,
    strong_others: &[String],
    weak_mine: bool,
    weak_others: &[String],
) -> Maker {
    let pick = |mine: bool, others: &[String]| match (mine, others.is_empty()) {
        (true, true) => Maker::Mine,
        (true, false) => Maker::Ambiguous(others.to_vec()),
        (false, _) => Maker::NotMine,
    };
    if strong_mine || !strong_others.is_empty() {
        pick(strong_mine, strong_others)
    } else {
        pick(weak_mine, weak_others)
    }
}

/// What [`Worktrees::stash_check`] found for a task.
#[derive(Debug, Clone, Default)]
pub struct StashCheck {
    /// The task left its work in the stash (or its entry was dropped): one line naming
    /// where the work is; the task fails.
    pub failure: Option<String>,
    /// What happened to the stash meanwhile: `(line, first time told)`.
    pub notes: Vec<(String, bool)>,
}

/// Was the entry made on the branch of another task (`qw/<spec>/<id>`, not `h`'s)?
fn other_task_branch(e: &StashEntry, h: &WorktreeHandle) -> bool {
    e.branch()
        .is_some_and(|b| b != h.branch && super::parse_branch(b).is_some())
}

/// An entry that may be this task's or others': said so, never claimed.
/// The spec of task branch `qw/<spec>/<id>` (the branch itself otherwise: no spec link
/// of qw's is named so).
fn spec_of(branch: &str) -> &str {
    branch
        .strip_prefix("qw/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(branch)
}

fn ambiguous(e: &StashEntry, who: &[String]) -> String {
    format!(
        "{} (this task's or {}'s: each of their worktrees went there from its base commit and was written after it was made; qw cannot tell which agent stashed it)",
        e.gone_describe(),
        who.join(", ")
    )
}

/// Loose objects written since a task started beyond which the stash commits among
/// them are not looked for (a huge unpacked repository).
const MAX_FRESH_OBJECTS: usize = 20_000;

/// Time slack between a stash commit's time and the reset `git stash` then does.
const SLACK_SECS: i64 = 2;

/// How long before a task's listing of the stash a `git stash` elsewhere may have
/// written its commit and not yet its ref (the listing misses the entry, whose commit
/// is older than the task): such commits are looked for when the task starts.
const LISTING_RACE: Duration = Duration::from_secs(2);

impl Worktrees {
    /// Take what [`StashBefore`] records, and start watching the task's worktree (its
    /// traces now are qw's own: `git worktree add` resets it too).
    pub(crate) fn stash_before(
        &self,
        task_id: &str,
        path: &Path,
        admin: &Path,
        branch: &str,
    ) -> StashBefore {
        // Before the listing: an entry made after it is found among the objects.
        let since = SystemTime::now();
        let (entries, at) = self.stash_watch.list(&self.repo);
        let entries = entries.unwrap_or_default();
        // A `git stash` running elsewhere writes its commit, then its ref: the listing
        // may miss an entry whose commit is older than `since` (and a loose object's
        // time is the kernel's coarse clock). Those are kept apart: not the task's, and
        // said popped into its worktree only if it did not hold their changes already.
        let unsettled = self
            .stash_commits_since(since.checked_sub(LISTING_RACE).unwrap_or(since))
            .into_iter()
            .filter(|e| !entries.iter().any(|b| b.commit == e.commit))
            .map(|e| {
                let held = self.holds_stash(path, &self.stash_files(&e.commit));
                (e, held)
            })
            .collect();
        let main = self.repo.git_dir.clone();
        let mut s = self.stash_watch.state();
        if !s.watched.iter().any(|w| w.branch.is_none()) {
            s.watched.push(Watched {
                who: "the main worktree".into(),
                branch: None,
                start: self.integration.clone(),
                path: self.repo.top.clone(),
                mark: Mark::of(&main),
                git_dir: main,
            });
        }
        s.watched.retain(|w| w.git_dir != admin);
        s.watched.push(Watched {
            who: format!("task {task_id}"),
            branch: Some(branch.to_owned()),
            start: branch.to_owned(),
            path: path.to_path_buf(),
            git_dir: admin.to_path_buf(),
            mark: Mark::of(admin),
        });
        // The user's uncommitted work: what the main worktree held when the run's
        // first task was made (and still holds), not what an agent wrote there since.
        let (now_dirty, now_dirs) = self.repo.dirty_files_and_dirs();
        if s.main_dirty_at_start.is_none() {
            s.main_dirs_at_start = now_dirs;
        }
        let at_start = s
            .main_dirty_at_start
            .get_or_insert_with(|| now_dirty.clone());
        let main_dirty = now_dirty
            .into_iter()
            .filter(|f| at_start.contains(f))
            .collect();
        drop(s);
        StashBefore {
            entries,
            main_dirty,
            at: Some(at),
            since: Some(since),
            unsettled,
        }
    }

    /// The paths a stash entry changes, each with its blob id there (`None`: deleted),
    /// tracked ones and untracked ones (`^3`), without qw's spec link.
    fn stash_files(&self, stash: &str) -> Vec<(String, Option<String>)> {
        let spec = self.repo.spec_rel(&self.spec);
        let mine = |p: &str| p != spec && !p.starts_with(&format!("{spec}/"));
        let mut files = Vec::new();
        if let Ok(out) = git_output(
            &self.repo.top,
            [
                "diff",
                "--raw",
                "--no-renames",
                "--no-abbrev",
                "-z",
                &format!("{stash}^1"),
                stash,
            ],
            &[],
        ) && out.status.success()
        {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut parts = text.split('\0');
            while let (Some(meta), Some(path)) = (parts.next(), parts.next()) {
                // `:old-mode new-mode old-sha new-sha status`
                let words: Vec<&str> = meta.split(' ').collect();
                let blob = words
                    .get(3)
                    .copied()
                    .filter(|b| b.bytes().any(|c| c != b'0'));
                if mine(path) && !path.is_empty() {
                    files.push((path.to_owned(), blob.map(str::to_owned)));
                }
            }
        }
        if let Ok(out) = git_output(
            &self.repo.top,
            ["ls-tree", "-r", "-z", &format!("{stash}^3")],
            &[],
        ) && out.status.success()
        {
            for rec in String::from_utf8_lossy(&out.stdout).split('\0') {
                // `<mode> blob <sha>\t<path>`
                let Some((meta, path)) = rec.split_once('\t') else {
                    continue;
                };
                if mine(path) {
                    let blob = meta.split(' ').nth(2).map(str::to_owned);
                    files.push((path.to_owned(), blob));
                }
            }
        }
        files
    }

    /// Does a stash entry hold anything but the spec link qw put in task worktrees
    /// (which `git stash -u` takes along as an untracked file)?
    fn stash_holds_work(&self, stash: &str) -> bool {
        !self.stash_files(stash).is_empty()
    }

    /// Do the files in the worktree at `dir` hold exactly what the stash entry changes
    /// (it was applied or popped there)? Paths are relative to a worktree's top.
    fn holds_stash(&self, dir: &Path, files: &[(String, Option<String>)]) -> bool {
        !files.is_empty() && files.iter().all(|(p, blob)| file_blob(dir, p) == *blob)
    }

    /// Does the worktree at `dir` still hold the change a stash entry made, though its
    /// files may have been edited further after a pop (or an autostash's re-apply)?
    /// Per path: a deletion is held when the file is gone; otherwise the file is the
    /// entry's, or it holds every line the entry added to the base's version, each as
    /// many times (lines the entry only removed are not asked for).
    fn holds_change(&self, dir: &Path, e: &StashEntry, files: &[(String, Option<String>)]) -> bool {
        self.holds_change_by(e, files, |p| {
            (
                file_blob(dir, p),
                crate::fs::read_to_string(dir.join(p)).ok(),
            )
        })
    }

    /// Does the target's tip hold the change a stash entry made, as [`Self::holds_change`]
    /// asks of a worktree (its owner's merge brought it there)?
    fn target_holds_change(&self, e: &StashEntry, files: &[(String, Option<String>)]) -> bool {
        let target = self.target();
        self.holds_change_by(e, files, |p| {
            let out = git_output(
                &self.repo.top,
                ["rev-parse", "-q", "--verify", &format!("{target}:{p}")],
                &[],
            );
            let blob = out.ok().and_then(|o| {
                let sha = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                (o.status.success() && !sha.is_empty()).then_some(sha)
            });
            let text = blob.as_ref().and_then(|b| {
                let o = git_output(&self.repo.top, ["cat-file", "blob", b], &[]).ok()?;
                o.status
                    .success()
                    .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
            });
            (blob, text)
        })
    }

    /// [`Self::holds_change`] of the files `read` gives (path → its blob and its text).
    fn holds_change_by(
        &self,
        e: &StashEntry,
        files: &[(String, Option<String>)],
        read: impl Fn(&str) -> (Option<String>, Option<String>),
    ) -> bool {
        let blob_lines = |rev: &str| -> Option<Vec<String>> {
            let out = git_output(&self.repo.top, ["cat-file", "blob", rev], &[]).ok()?;
            out.status.success().then(|| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
        };
        let count = |lines: &[String]| {
            let mut m: BTreeMap<String, usize> = BTreeMap::new();
            for l in lines {
                *m.entry(l.clone()).or_default() += 1;
            }
            m
        };
        !files.is_empty()
            && files.iter().all(|(p, blob)| {
                let (now, text) = read(p);
                if now == *blob {
                    return true;
                }
                let (Some(blob), Some(_)) = (blob, now) else {
                    return false;
                };
                let Some(stashed) = blob_lines(blob) else {
                    return false;
                };
                let base = blob_lines(&format!("{}^1:{p}", e.commit)).unwrap_or_default();
                let Some(text) = text else {
                    return false;
                };
                let here: Vec<String> = text.lines().map(str::to_owned).collect();
                let (stashed, base, here) = (count(&stashed), count(&base), count(&here));
                stashed.iter().all(|(l, n)| {
                    let added = n.saturating_sub(*base.get(l).unwrap_or(&0));
                    added == 0 || here.get(l).copied().unwrap_or(0) >= *n
                })
            })
    }

    /// Is every path a stash entry changes changed again in the worktree at `dir`:
    /// its file differs from the entry's base commit's version and from the target's
    /// (a deleted path: gone)? Then the entry was popped or applied there and worked on
    /// further; a `git stash` then `drop` leaves its paths as the base has them.
    fn changed_again(
        &self,
        dir: &Path,
        e: &StashEntry,
        files: &[(String, Option<String>)],
    ) -> bool {
        let target = self.target();
        let blob_at = |rev: &str, p: &str| -> Option<String> {
            let out = git_output(
                &self.repo.top,
                ["rev-parse", "-q", "--verify", &format!("{rev}:{p}")],
                &[],
            )
            .ok()?;
            let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !sha.is_empty()).then_some(sha)
        };
        !files.is_empty()
            && files.iter().all(|(p, blob)| {
                let now = file_blob(dir, p);
                match (blob, now) {
                    (None, now) => now.is_none(),
                    (Some(_), None) => false,
                    (Some(_), Some(now)) => {
                        Some(&now) != blob_at(&format!("{}^1", e.commit), p).as_ref()
                            && Some(&now) != blob_at(&target, p).as_ref()
                    }
                }
            })
    }

    /// Did the task's worktree do anything besides what went into the stash: a commit
    /// of its own (HEAD moved from where it started), or uncommitted changes?
    fn did_other_work(&self, h: &WorktreeHandle) -> bool {
        let start = head_log(&h.admin).into_iter().next().map(|l| l.to);
        let head = git_output(
            &h.path,
            ["rev-parse", "-q", "--verify", "HEAD^{commit}"],
            &[],
        )
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        if start.is_none() || head != start {
            return true;
        }
        let spec = self.repo.spec_rel(&self.spec);
        git_output(
            &h.path,
            ["status", "--porcelain", "-z", "--untracked-files=all"],
            &[],
        )
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split('\0')
                .filter_map(|r| r.get(3..))
                .any(|p| !p.is_empty() && p != spec && !p.starts_with(&format!("{spec}/")))
        })
    }

    /// The worktrees qw watches, other than `h`'s.
    fn others(&self, h: &WorktreeHandle) -> Vec<Watched> {
        self.stash_watch
            .state()
            .watched
            .iter()
            .filter(|w| w.git_dir != h.admin && w.git_dir.exists())
            .cloned()
            .collect()
    }

    /// Strong evidence that the worktree made the entry: since qw made it ready, it was
    /// reset at the entry's base commit, on the entry's branch, about when the entry
    /// was made (`git stash` writes `reset: moving to HEAD` in its HEAD reflog on a
    /// branch; on a detached HEAD it leaves no such line).
    fn reset_at(w: &Watched, e: &StashEntry, branch: &str, base: &str) -> bool {
        let near = |t: i64| (t - e.time).abs() <= SLACK_SECS;
        walk_log(&head_log(&w.git_dir), w.start_branch())
            .iter()
            .skip(w.mark.reflog_lines)
            .any(|(on, l)| {
                on == branch && l.to == base && l.message == "reset: moving to HEAD" && near(l.time)
            })
    }

    /// A worktree whose index was last written before the entry's commit was (its loose
    /// object's time, to the nanosecond) did not make it: `git stash` resets the index
    /// after writing the commit. Unknown (packed, unreadable) counts as possible.
    fn index_before(&self, w: &Watched, e: &StashEntry) -> bool {
        let index = w
            .git_dir
            .join("index")
            .symlink_metadata()
            .and_then(|m| m.modified())
            .ok();
        match (self.object_time(&e.commit), index) {
            (Some(made), Some(index)) => index < made,
            _ => false,
        }
    }

    /// When a loose object was written (`None` when packed or unreadable).
    fn object_time(&self, sha: &str) -> Option<SystemTime> {
        let (dir, file) = sha.split_at(2.min(sha.len()));
        let object = self.repo.common_dir.join("objects").join(dir).join(file);
        object.symlink_metadata().and_then(|m| m.modified()).ok()
    }

    /// Weak evidence: the worktree's HEAD was on the entry's branch (or a detached
    /// HEAD) and visited its base commit.
    fn went_to(w: &Watched, branch: &str, base: &str) -> bool {
        let walk = walk_log(&head_log(&w.git_dir), w.start_branch());
        walk.iter().any(|(on, _)| on == branch) && walk.iter().any(|(_, l)| l.to == base)
    }

    /// Who made the entry, seen from task `h`.
    fn maker(&self, h: &WorktreeHandle, e: &StashEntry) -> Maker {
        let Some(b) = e.branch() else {
            return Maker::NotMine;
        };
        if b == h.branch {
            return Maker::Mine;
        }
        // Written before the task's worktree was ready: not its agent's.
        if let (Some(made), Some(since)) = (self.object_time(&e.commit), h.stash_before.since)
            && made < since
        {
            return Maker::NotMine;
        }
        let others = self.others(h);
        // Another running task's branch: checked out in its worktree only.
        let task_branch_of_other = others.iter().any(|w| w.branch.as_deref() == Some(b))
            || self.repo.registered().is_ok_and(|all| {
                all.iter().any(|w| {
                    w.admin.as_deref() != Some(h.admin.as_path())
                        && w.task.is_some()
                        && w.branch.as_deref() == Some(b)
                })
            });
        if task_branch_of_other {
            return Maker::NotMine;
        }
        let Some(base) = self
            .repo
            .commit_of(&format!("{}^1", e.commit))
            .ok()
            .flatten()
        else {
            return Maker::NotMine;
        };
        let me = self
            .stash_watch
            .state()
            .watched
            .iter()
            .find(|w| w.git_dir == h.admin)
            .cloned()
            .unwrap_or_else(|| Watched {
                who: format!("task {}", h.task_id),
                branch: Some(h.branch.clone()),
                start: h.branch.clone(),
                path: h.path.clone(),
                git_dir: h.admin.clone(),
                mark: Mark::default(),
            });
        let strong_mine = Self::reset_at(&me, e, b, &base);
        let strong_others: Vec<String> = others
            .iter()
            .filter(|w| Self::reset_at(w, e, b, &base))
            .map(|w| w.who.clone())
            .collect();
        // Who may have made it now, narrowed by what an earlier look found (a worktree
        // ruled out then stays out; one gone since stays in).
        let live: BTreeSet<String> = std::iter::once(me.who.clone())
            .chain(others.iter().map(|w| w.who.clone()))
            .collect();
        let now: BTreeSet<String> = std::iter::once(&me)
            .chain(others.iter().filter(|w| w.branch.is_some()))
            .filter(|w| Self::went_to(w, b, &base) && !self.index_before(w, e))
            .map(|w| w.who.clone())
            .collect();
        let may = {
            let mut st = self.stash_watch.state();
            let may: BTreeSet<String> = match st.candidates.get(&e.commit) {
                Some(prior) => prior
                    .iter()
                    .filter(|w| now.contains(*w) || !live.contains(*w))
                    .cloned()
                    .collect(),
                None => now,
            };
            st.candidates.insert(e.commit.clone(), may.clone());
            may
        };
        let weak_mine = may.contains(&me.who);
        let weak_others: Vec<String> = may.into_iter().filter(|w| w != &me.who).collect();
        decide(strong_mine, &strong_others, weak_mine, &weak_others)
    }

    /// What the task's agent did to the shared stash, after it ran: `failure` when it
    /// left its work there (the task fails naming where the work is), `notes` for what
    /// happened to entries and the main worktree meanwhile (each `(line, first time
    /// told)`; the task's outcome is not changed by them: who did it is not always known).
    ///
    /// An entry is the task's when it is new since the worktree was made and was made
    /// on the task's branch — or on another branch (one named like qw's too) or a
    /// detached HEAD, when this worktree was reset at the entry's base commit as it was
    /// made (the reflog line `git stash` writes on a branch) and no other watched
    /// worktree was, or, with no such trace anywhere, when only this worktree's HEAD went
    /// there from that commit and its index was written after the entry's commit (a
    /// stash resets it; an index older than the commit rules the worktree out). When
    /// several worktrees fit, the entry is named as possibly this task's or theirs
    /// (never claimed as if each owned it). Entries made on another task's branch or in
    /// another worktree are not the task's. Nothing is applied or dropped.
    ///
    /// Entries gone from the stash (there when the task started, seen by qw since, or
    /// stash commits written since — loose objects, looked for back to [`LISTING_RACE`]
    /// before the task started, since another worktree's `git stash` writes its commit
    /// before its ref — and no longer listed):
    /// - the task's own, back in its worktree (a `stash` then `pop`, the files maybe
    ///   edited further: every line the entry added is still there): nothing to say;
    /// - the task's own, now in another task's worktree or in the main worktree: said
    ///   (its work is merged with that task's, or is there);
    /// - the task's own, nowhere, while the task did other work (a commit, other
    ///   changes: a `git stash && git stash drop` of junk): said, with `git stash store
    ///   -m "…" <commit>` to put it back;
    /// - the task's own, nowhere, and the task did nothing else (the entry held its only
    ///   work): the task fails, with that command;
    /// - another's, popped into this worktree: said (merged with this task's work; for
    ///   an entry whose commit predates the task and that its listing missed, only if
    ///   the worktree did not hold its changes when the task started);
    /// - another's (the user's), nowhere: said, with `git stash store -m "…" <commit>`.
    ///
    /// And the main worktree's uncommitted changes of the run's start gone into a new
    /// entry made on the target branch (`git -C <main> stash`): by an agent or by the
    /// user, qw cannot tell, so it says so, with `git stash apply <commit>`.
    pub fn stash_check(&self, h: &WorktreeHandle) -> StashCheck {
        // Listed twice: an entry counts as gone only when neither listing holds it (a
        // listing taken while other worktrees' `git stash` write can miss one), and
        // nothing counts as gone when git could not list the stash.
        let (first, t0) = self.stash_watch.list(&self.repo);
        let now = first.clone().unwrap_or_default();
        let second = first
            .as_ref()
            .and_then(|_| self.stash_watch.list(&self.repo).0);
        let readable = second.is_some();
        let second = second.unwrap_or_default();
        let listed = |c: &str| {
            !readable || now.iter().any(|e| e.commit == c) || second.iter().any(|e| e.commit == c)
        };
        let before = |c: &str| h.stash_before.entries.iter().any(|b| b.commit == c);
        // Held by this task's worktree before its agent ran (`None`: not unsettled).
        let unsettled = |c: &str| {
            h.stash_before
                .unsettled
                .iter()
                .find(|(u, _)| u.commit == c)
                .map(|(_, held)| *held)
        };
        let mut mine = Vec::new();
        let mut maybe = Vec::new();
        for e in now
            .iter()
            .filter(|e| !before(&e.commit) && unsettled(&e.commit).is_none())
            .filter(|e| self.stash_holds_work(&e.commit))
        {
            match self.maker(h, e) {
                Maker::Mine => {
                    mine.push(format!(
                        "{} — {}",
                        e.describe(),
                        self.repo.way_back(&self.spec, &e.commit)
                    ));
                }
                Maker::NotMine => {}
                // Made on another task's branch: that task's own check speaks of it.
                Maker::Ambiguous(_) if other_task_branch(e, h) => {}
                Maker::Ambiguous(who) => maybe.push(format!(
                    "{} — {}",
                    ambiguous(e, &who),
                    self.repo.way_back(&self.spec, &e.commit)
                )),
            }
        }
        // Gone: known to have been there, or written as a stash commit since.
        let mut gone: Vec<StashEntry> = h
            .stash_before
            .entries
            .iter()
            .filter(|e| !listed(&e.commit))
            .cloned()
            .collect();
        // Listed (by a listing of any task's) after this task's worktree was made and
        // before this check, and not now.
        let seen = h
            .stash_before
            .at
            .map(|at| self.stash_watch.listed_between(at, t0))
            .unwrap_or_default();
        for e in seen
            .iter()
            .chain(h.stash_before.unsettled.iter().map(|(u, _)| u))
        {
            if !listed(&e.commit) && !gone.iter().any(|k| k.commit == e.commit) {
                gone.push(e.clone());
            }
        }
        // From as far back as the task's start looked (commits it found then are
        // already in `gone`, or listed): a commit not found then was written after.
        if let Some(since) = h.stash_before.since {
            let from = since.checked_sub(LISTING_RACE).unwrap_or(since);
            for e in self.stash_commits_since(from) {
                if !listed(&e.commit) && !gone.iter().any(|k| k.commit == e.commit) {
                    gone.push(e);
                }
            }
        }
        let mut notes = Vec::new();
        let mut dropped = Vec::new();
        let mut siblings = Vec::new();
        let others = self.others(h);
        for e in &gone {
            let files = self.stash_files(&e.commit);
            if files.is_empty() {
                continue;
            }
            let held_before = unsettled(&e.commit);
            let own = if before(&e.commit) || held_before.is_some() {
                Maker::NotMine
            } else {
                self.maker(h, e)
            };
            // Popped here while the task ran: not what its worktree held at its start.
            // Another task's entry (that task failed for it) is held even when the pop
            // was edited further, committed or not: every line it added is still here
            // — unless the target holds them already (its owner's merge brought them).
            let here = (self.holds_stash(&h.path, &files)
                || (own != Maker::Mine
                    && other_task_branch(e, h)
                    && self.holds_change(&h.path, e, &files)
                    && !self.target_holds_change(e, &files)))
                && held_before != Some(true);
            // Made on another task's branch and not popped here: that task's own check
            // speaks of it (rev4 F11).
            if own != Maker::Mine && !here && other_task_branch(e, h) {
                continue;
            }
            let in_task = others
                .iter()
                .find(|w| w.branch.is_some() && self.holds_stash(&w.path, &files));
            let in_main = self.holds_stash(&self.repo.top, &files);
            let paths = files
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let whose = match e.branch() {
                Some(b) => format!(", made on `{b}`"),
                None => String::new(),
            };
            let line = match (&own, here, in_task, in_main) {
                // Stashed and popped back in its own worktree.
                (Maker::Mine, true, _, _) => continue,
                // Popped into another task's worktree: that task is refused for it
                // and puts the entry back (rev5b F16), so this task's work is merged
                // by neither: it fails, naming the entry.
                (Maker::Mine, false, Some(w), _) => {
                    dropped.push(format!(
                        "{} was popped into {}'s worktree, which is not merged with another task's entry (qw takes its changes ({paths}) out of that task's work and puts the entry back in the stash; bring it back with `git stash apply {}`, or `{}` should it be gone)",
                        e.gone_describe(),
                        w.who,
                        e.commit,
                        e.store_command()
                    ));
                    continue;
                }
                (Maker::Mine, false, None, true) => format!(
                    "task {}'s stash entry {} is gone from the stash and its changes ({paths}) are in the main worktree (merged with another task's work, or popped there)",
                    h.task_id,
                    e.gone_describe()
                ),
                // Popped here, then edited further (or committed and edited): the
                // entry's change is still in the worktree's files.
                (Maker::Mine, false, None, false) if self.holds_change(&h.path, e, &files) => {
                    continue;
                }
                // Popped here and refined past every line it added (rev4 F11): each of
                // its paths is changed again, from its base and from the target; a
                // `git stash` + `drop` leaves them at the base (or the target's).
                (Maker::Mine, false, None, false) if self.changed_again(&h.path, e, &files) => {
                    continue;
                }
                // Dropped on purpose (`git stash && git stash drop`: "throw this away"),
                // while the task did other work: said, with the way back, not failed.
                (Maker::Mine, false, None, false) if self.did_other_work(h) => format!(
                    "task {}'s agent stashed changes ({paths}) and the entry {} is gone from the stash, its changes not in the task's files (dropped on purpose?); the task's other work goes on as usual — if that entry was wanted, put it back with `{}`",
                    h.task_id,
                    e.gone_describe(),
                    e.store_command()
                ),
                (Maker::Mine, false, None, false) => {
                    dropped.push(format!(
                        "{} is gone from the stash (dropped by its agent, another task's or yours) and its changes ({paths}) are nowhere qw looks — put it back with `{}`",
                        e.gone_describe(),
                        e.store_command()
                    ));
                    continue;
                }
                // Another task's entry (made on its branch) popped here: its work
                // would reach the target through this task's merge, which
                // `brings_other_tasks` refuses for commits (rev5b F16). Taken out of
                // this worktree's files and put back in the stash; the task fails.
                (m, true, _, _) if *m != Maker::Mine && other_task_branch(e, h) => {
                    siblings.push(self.take_out_sibling(h, e, &files, &paths));
                    continue;
                }
                (_, true, _, _) => format!(
                    "task {}: stash entry {}{whose} was popped into its worktree while it ran: its changes ({paths}) are merged with the task's work; to have the entry back in the stash as well: `{}`",
                    h.task_id,
                    e.gone_describe(),
                    e.store_command()
                ),
                // Popped into another task's worktree (that task says so) or the main
                // one (yours, or merged by another task): nothing lost.
                (_, false, Some(_), _) | (_, false, None, true) => continue,
                (Maker::Ambiguous(who), false, None, false) => {
                    maybe.push(format!(
                        "{}, gone from the stash — put it back with `{}`",
                        ambiguous(e, who),
                        e.store_command()
                    ));
                    continue;
                }
                (Maker::NotMine, false, None, false) => {
                    if !before(&e.commit) && !seen.iter().any(|k| k.commit == e.commit) {
                        // Someone else's, not listed while qw looked during the task.
                        continue;
                    }
                    format!(
                        "stash entry {}{whose} is gone from the stash since task {} started (a `git stash clear`, `drop` or `pop` by its agent, another task's or yours: qw cannot tell which); put it back with `{}`",
                        e.gone_describe(),
                        h.task_id,
                        e.store_command()
                    )
                }
            };
            let first = self
                .stash_watch
                .first_telling(&format!("gone {}", e.commit));
            notes.push((line, first));
        }
        notes.extend(self.main_stashed(h, &now));
        let mut parts = Vec::new();
        if !mine.is_empty() {
            parts.push(format!(
                "task {}'s agent left its work in the stash, which qw does not merge: {}; it is kept there, not applied — bring it back, in the main worktree, with the command named with it (by its commit: its number changes as stashes come and go)",
                h.task_id,
                mine.join(", ")
            ));
        }
        if !siblings.is_empty() {
            parts.push(format!(
                "task {}'s worktree took in another task's stash entry while it ran: {}; another task's work reaches `{}` only through that task's own check and merge, so task {} was not merged; its own work is kept on branch `{}`",
                h.task_id,
                siblings.join("; "),
                self.integration,
                h.task_id,
                h.branch
            ));
        }
        if !dropped.is_empty() {
            parts.push(format!(
                "task {}'s agent stashed its work: {}",
                h.task_id,
                dropped.join(", ")
            ));
        }
        if !maybe.is_empty() {
            parts.push(format!(
                "a stash entry made while task {} ran may hold its work (ambiguous): {}; it is not applied — the command named with it brings it back",
                h.task_id,
                maybe.join(", ")
            ));
        }
        let failure = (!parts.is_empty()).then(|| {
            format!(
                "{}; or run `{}` to run the task again",
                parts.join("; "),
                super::shell::continue_cmd(&self.spec)
            )
        });
        StashCheck { failure, notes }
    }

    /// Another task's entry `e`, popped into `h`'s worktree (every path of `files` is
    /// the entry's there, or holds every line it added): each path is set back to the
    /// target's version (removed when the target lacks it; edits made after the pop go
    /// with it — the task runs again), so the task's saved work no longer holds the other task's
    /// changes, and the entry is stored in the stash again (its owner's to apply). The
    /// phrase naming what was done, for the task's failure line.
    fn take_out_sibling(
        &self,
        h: &WorktreeHandle,
        e: &StashEntry,
        files: &[(String, Option<String>)],
        paths: &str,
    ) -> String {
        let target = self.target();
        let mut left = Vec::new();
        for (p, _) in files {
            let spec = format!(":(top,literal){p}");
            let in_target = git_output(
                &self.repo.top,
                ["cat-file", "-e", &format!("{target}:{p}")],
                &[],
            )
            .is_ok_and(|o| o.status.success());
            let done = if in_target {
                git_output(&h.path, ["checkout", &target, "--", &spec], &[])
                    .is_ok_and(|o| o.status.success())
            } else {
                let file = h.path.join(p);
                let gone = match file.symlink_metadata() {
                    Ok(_) => crate::fs::remove_file(&file).is_ok(),
                    Err(_) => true,
                };
                gone && git_output(
                    &h.path,
                    ["rm", "-q", "--cached", "--ignore-unmatch", "--", &spec],
                    &[],
                )
                .is_ok_and(|o| o.status.success())
            };
            if !done {
                left.push(format!("`{p}`"));
            }
        }
        let stored = git_output(
            &self.repo.top,
            ["stash", "store", "-m", &e.message, &e.commit],
            &[],
        )
        .is_ok_and(|o| o.status.success());
        let whose = e
            .branch()
            .and_then(super::parse_branch)
            .map(|(spec, id)| {
                if spec == self.spec {
                    format!("task {id}'s")
                } else {
                    format!("task {id} of `{spec}`'s")
                }
            })
            .unwrap_or_else(|| "another task's".into());
        let back = if stored {
            format!(
                "the entry is back in the stash ({whose} to apply: `git stash apply {}`)",
                e.commit
            )
        } else {
            format!(
                "put the entry back in the stash with `{}`",
                e.store_command()
            )
        };
        let out = if left.is_empty() {
            format!(
                "its changes ({paths}) are taken out of task {}'s files (set back to `{}`'s version) before its work is saved, so `{}` runs the task again from its own work and merges it",
                h.task_id,
                self.integration,
                super::shell::continue_cmd(&self.spec)
            )
        } else {
            format!(
                "its changes ({paths}) are taken out of task {}'s files except {} (take those out by hand on branch `{}` before `{}`)",
                h.task_id,
                left.join(", "),
                h.branch,
                super::shell::continue_cmd(&self.spec)
            )
        };
        format!("stash entry {}, {whose}: {out}; {back}", e.gone_describe())
    }

    /// Stash commits (two or three parents, `WIP on …`/`On …`, an `index on …` second
    /// parent) written as loose objects since `since`: entries made meanwhile, even when
    /// gone from the stash before qw looked. Packed objects are not seen (a `git gc`).
    fn stash_commits_since(&self, since: SystemTime) -> Vec<StashEntry> {
        let objects = self.repo.common_dir.join("objects");
        let mut shas = Vec::new();
        let Ok(dirs) = crate::fs::read_dir(&objects) else {
            return Vec::new();
        };
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(files) = crate::fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let fresh = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since);
                if fresh {
                    shas.push(format!("{name}{}", f.file_name().to_string_lossy()));
                }
            }
            if shas.len() > MAX_FRESH_OBJECTS {
                return Vec::new();
            }
        }
        if shas.is_empty() {
            return Vec::new();
        }
        let input = shas.join("\n") + "\n";
        let Some(types) = git_with_input(
            &self.repo.top,
            &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            &input,
        ) else {
            return Vec::new();
        };
        let commits: Vec<&str> = types
            .lines()
            .filter_map(|l| l.strip_suffix(" commit"))
            .collect();
        let described = |revs: &[&str]| -> Vec<(String, Vec<String>, i64, String)> {
            if revs.is_empty() {
                return Vec::new();
            }
            let mut args = vec![
                "log",
                "--no-walk=unsorted",
                "--format=%H%x09%P%x09%ct%x09%s",
            ];
            args.extend(revs);
            let Ok(out) = git_output(&self.repo.top, &args, &[]) else {
                return Vec::new();
            };
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let mut w = l.splitn(4, '\t');
                    let (c, p, t, m) = (w.next()?, w.next()?, w.next()?, w.next()?);
                    Some((
                        c.to_owned(),
                        p.split(' ').map(str::to_owned).collect(),
                        t.parse().unwrap_or(0),
                        m.to_owned(),
                    ))
                })
                .collect()
        };
        let stashes: Vec<(String, Vec<String>, i64, String)> = described(&commits)
            .into_iter()
            .filter(|(_, p, _, m)| {
                (2..=3).contains(&p.len()) && (m.starts_with("WIP on ") || m.starts_with("On "))
            })
            .collect();
        let seconds: Vec<&str> = stashes.iter().map(|(_, p, _, _)| p[1].as_str()).collect();
        let index_commits: BTreeSet<String> = described(&seconds)
            .into_iter()
            .filter(|(_, _, _, m)| m.starts_with("index on "))
            .map(|(c, _, _, _)| c)
            .collect();
        stashes
            .into_iter()
            .filter(|(_, p, _, _)| index_commits.contains(&p[1]))
            .map(|(commit, _, time, message)| StashEntry {
                index: usize::MAX,
                commit,
                time,
                message,
            })
            .collect()
    }

    /// After the task's agent ran: put back the spec link `git stash -u` (or a clean)
    /// removed from its worktree, so its `_Verify:_` still finds the spec.
    /// Only a missing link is made again: whatever the agent put there is left alone.
    pub fn relink_spec(&self, h: &WorktreeHandle) {
        let link = h.workdir.join(".claude").join("specs").join(&self.spec);
        if h.path.symlink_metadata().is_ok()
            && link.symlink_metadata().is_err()
            && let Err(e) = self.link_spec(&h.workdir)
        {
            tracing::warn!(
                "task {}: the spec link could not be put back: {e}",
                h.task_id
            );
        }
    }

    /// The main worktree's uncommitted changes recorded when the task started that are
    /// no longer there: when a new stash entry made on the target branch holds them,
    /// named with `git stash apply`; gone from the disk with no entry holding them (a
    /// `git clean -fd`, an `rm`, a stash entry dropped since), named with the `git
    /// restore` that takes them from the `--allow-dirty` snapshot.
    fn main_stashed(&self, h: &WorktreeHandle, now: &[StashEntry]) -> Vec<(String, bool)> {
        let before = &h.stash_before.main_dirty;
        if before.is_empty() {
            return Vec::new();
        }
        let current = self.repo.dirty_files();
        let vanished: Vec<&(String, Option<String>)> =
            before.iter().filter(|f| !current.contains(f)).collect();
        if vanished.is_empty() {
            return Vec::new();
        }
        // Each untracked directory of the run's start with how many of the files the
        // task's start recorded lie in it: named whole only when all of them are gone.
        let dirs: Vec<(String, usize)> = self
            .stash_watch
            .state()
            .main_dirs_at_start
            .iter()
            .map(|d| {
                let n = before
                    .iter()
                    .filter(|(p, _)| p.starts_with(d.as_str()))
                    .count();
                (d.clone(), n)
            })
            .collect();
        let mut taken: BTreeSet<&str> = BTreeSet::new();
        let mut notes = Vec::new();
        for e in now
            .iter()
            .filter(|e| !h.stash_before.entries.iter().any(|b| b.commit == e.commit))
            .filter(|e| e.branch() == Some(self.integration.as_str()))
        {
            let files = self.stash_files(&e.commit);
            let held: Vec<&str> = vanished
                .iter()
                .filter(|(p, blob)| {
                    if p.ends_with('/') {
                        // A directory recorded by its name: the entry holds files in it.
                        files.iter().any(|(q, _)| q.starts_with(p.as_str()))
                    } else {
                        files.iter().any(|(q, b)| q == p && b == blob)
                    }
                })
                .map(|(p, _)| p.as_str())
                .collect();
            if held.is_empty() {
                continue;
            }
            taken.extend(held.iter().copied());
            let line = format!(
                "the uncommitted changes in the main worktree `{}` ({}) went into stash entry {} while task {} ran — a `git stash` there by an agent or by you: qw cannot tell (ambiguous), so no task is blamed; they are kept there — bring them back with `git stash apply {}`",
                self.repo.top.display(),
                shown(&held, &dirs).join(", "),
                e.describe(),
                h.task_id,
                e.commit
            );
            notes.push((
                line,
                self.stash_watch
                    .first_telling(&format!("main {}", e.commit)),
            ));
        }
        let gone: Vec<&(String, Option<String>)> = vanished
            .into_iter()
            .filter(|(p, _)| !taken.contains(p.as_str()))
            .filter(|(p, _)| {
                self.repo
                    .top
                    .join(p.trim_end_matches('/'))
                    .symlink_metadata()
                    .is_err()
            })
            .collect();
        if let Some(line) = self.gone_from_main(h, &gone, &dirs) {
            let key = format!(
                "main gone {}",
                gone.iter()
                    .map(|(p, _)| p.as_str())
                    .collect::<Vec<_>>()
                    .join("\0")
            );
            notes.push((line, self.stash_watch.first_telling(&key)));
        }
        notes
    }

    /// The line naming the main worktree's uncommitted files `gone` from its disk while
    /// task `h` ran, with the command that brings back those the run's `--allow-dirty`
    /// snapshot holds as they were (`None` when nothing is gone).
    fn gone_from_main(
        &self,
        h: &WorktreeHandle,
        gone: &[&(String, Option<String>)],
        dirs: &[(String, usize)],
    ) -> Option<String> {
        if gone.is_empty() {
            return None;
        }
        let snapshot = self.stash_watch.state().snapshot.clone();
        let (kept, lost): (Vec<&str>, Vec<&str>) = match &snapshot {
            Some((_, commit)) => {
                let holds = self.snapshot_holds(commit, gone);
                let (k, l): (Vec<_>, Vec<_>) = gone.iter().zip(holds).partition(|(_, h)| *h);
                (
                    k.into_iter().map(|(f, _)| f.0.as_str()).collect(),
                    l.into_iter().map(|(f, _)| f.0.as_str()).collect(),
                )
            }
            None => (Vec::new(), gone.iter().map(|f| f.0.as_str()).collect()),
        };
        let top = self.repo.top.display();
        let mut line = format!(
            "uncommitted files of the main worktree `{top}` are gone from it since task {} started ({}) — a `git clean`, a `git stash -u` whose entry is gone, or a removal there, by an agent or by you: qw cannot tell (ambiguous), so no task is blamed",
            h.task_id,
            shown(&kept.iter().chain(&lost).copied().collect::<Vec<_>>(), dirs).join(", ")
        );
        if let (Some((branch, commit)), false) = (&snapshot, kept.is_empty()) {
            let specs: Vec<String> = shown_paths(&kept, dirs)
                .iter()
                .map(|p| quote(&format!(":(top,literal){p}")).into_owned())
                .collect();
            line.push_str(&format!(
                "; the `--allow-dirty` snapshot `{branch}` holds {} as they were — bring them back with `git -C {} restore --source={commit} -- {}`",
                shown(&kept, dirs).join(", "),
                quote(&self.repo.top.to_string_lossy()),
                specs.join(" ")
            ));
        }
        if !lost.is_empty() {
            line.push_str(&format!(
                "; qw holds no copy of {}",
                shown(&lost, dirs).join(", ")
            ));
        }
        Some(line)
    }

    /// Does the snapshot `commit` hold each of `files` as recorded (the same blob; for a
    /// directory recorded by its name, a directory)?
    fn snapshot_holds(&self, commit: &str, files: &[&(String, Option<String>)]) -> Vec<bool> {
        let asked: Vec<String> = files
            .iter()
            .map(|(p, _)| format!("{commit}:{}", p.trim_end_matches('/')))
            .collect();
        if asked.iter().any(|a| a.contains('\n')) {
            return vec![false; files.len()];
        }
        let input: String = asked.iter().map(|a| format!("{a}\n")).collect();
        let Some(out) = git_with_input(
            &self.repo.top,
            &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            &input,
        ) else {
            return vec![false; files.len()];
        };
        let answers: Vec<&str> = out.lines().collect();
        if answers.len() != files.len() {
            return vec![false; files.len()];
        }
        files
            .iter()
            .zip(answers)
            .map(|((p, blob), a)| match a.split_once(' ') {
                Some((_, "tree")) => p.ends_with('/'),
                Some((sha, "blob")) => blob.as_deref() == Some(sha),
                _ => false,
            })
            .collect()
    }

    /// Record the run's `--allow-dirty` snapshot branch (see [`Repo::snapshot_dirty`]):
    /// what an agent removes from the main worktree is named with it.
    pub(crate) fn keep_snapshot(&self, branch: &str) {
        if let Ok(Some(commit)) = self.repo.commit_of(&format!("refs/heads/{branch}")) {
            self.stash_watch.state().snapshot = Some((branch.to_owned(), commit));
        }
    }
}

/// `paths` as a line names them: all the recorded files of an untracked directory of
/// the run's start (`dirs`: each with how many files were recorded in it) as
/// `dir/ (N files)`.
fn shown(paths: &[&str], dirs: &[(String, usize)]) -> Vec<String> {
    grouped(paths, dirs)
        .into_iter()
        .map(|(p, n)| match n {
            Some(n) => format!("{p} ({n} file{})", if n == 1 { "" } else { "s" }),
            None => p,
        })
        .collect()
}

/// [`shown`]'s names as paths: a whole directory as `dir/`.
fn shown_paths(paths: &[&str], dirs: &[(String, usize)]) -> Vec<String> {
    grouped(paths, dirs).into_iter().map(|(p, _)| p).collect()
}

/// Each directory of `dirs` all of whose recorded files are in `paths`, with their
/// number (`None` for a directory recorded by its name), then the other paths.
fn grouped(paths: &[&str], dirs: &[(String, usize)]) -> Vec<(String, Option<usize>)> {
    let mut out = Vec::new();
    let mut rest: Vec<&str> = paths.to_vec();
    for (d, recorded) in dirs {
        let inside = rest.iter().filter(|p| p.starts_with(d.as_str())).count();
        if inside > 0 && inside == *recorded {
            rest.retain(|p| !p.starts_with(d.as_str()));
            let by_name = paths.contains(&d.as_str());
            out.push((d.clone(), (!by_name).then_some(inside)));
        }
    }
    out.extend(rest.into_iter().map(|p| (p.to_owned(), None)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stash_entries_name_their_branch() {
        let e = |m: &str| StashEntry {
            index: 2,
            commit: "0123456789abcdef0123".into(),
            time: 0,
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

    #[test]
    fn a_store_command_keeps_the_message_through_a_shell() {
        let e = StashEntry {
            index: 0,
            commit: "abc".into(),
            time: 0,
            message: "On main: it's $HOME `x`".into(),
        };
        assert_eq!(
            e.store_command(),
            r"git stash store -m 'On main: it'\''s $HOME `x`' abc"
        );
        // The one quoting rule of every printed command: a word with nothing a shell
        // reads is left bare.
        let bare = StashEntry {
            message: "autostash".into(),
            ..e.clone()
        };
        assert_eq!(bare.store_command(), "git stash store -m autostash abc");
        assert_eq!(e.gone_describe(), e.describe());
        let never_listed = StashEntry {
            index: usize::MAX,
            ..e
        };
        assert!(never_listed.gone_describe().starts_with("commit abc ("));
    }

    /// The printed `git stash store` command, run by `sh` as the user would, puts the
    /// entry back with its message byte for byte and runs nothing else.
    #[test]
    fn a_printed_store_command_round_trips_through_sh() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("repo");
        crate::fs::create_dir_all(&top).unwrap();
        git(&top, &["init", "-q", "-b", "main"]);
        crate::fs::write(top.join("f.txt"), "0\n").unwrap();
        git(&top, &["add", "f.txt"]);
        git(&top, &["commit", "-q", "-m", "first"]);
        for (i, message) in [
            "On main: it's $HOME `touch PWNED` $(touch PWNED) !! {a,b} *",
            "autostash",
            "WIP on main: 0123456 first",
        ]
        .into_iter()
        .enumerate()
        {
            crate::fs::write(top.join("f.txt"), format!("change {i}\n")).unwrap();
            let commit = git(&top, &["stash", "create"]);
            git(&top, &["checkout", "-q", "--", "f.txt"]);
            let e = StashEntry {
                index: 0,
                commit: commit.clone(),
                time: 0,
                message: message.into(),
            };
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(e.store_command())
                .current_dir(&top)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {out:?}", e.store_command());
            assert_eq!(
                git(&top, &["stash", "list", "-n1", "--format=%H %gs"]),
                format!("{commit} {message}")
            );
        }
        assert!(!top.join("PWNED").exists());
    }

    #[test]
    fn reflog_lines_follow_the_branch_head_was_on() {
        let dir = tempfile::tempdir().unwrap();
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let log = format!(
            "{z} {a} N <n@e> 100 +0000\treset: moving to HEAD\n\
             {a} {a} N <n@e> 101 +0000\tcheckout: moving from qw/demo/1 to HEAD\n\
             {a} {b} N <n@e> 102 +0000\tcheckout: moving from {a} to feat\n\
             junk line\n\
             {b} {b} N <n@e> 103 -0100\treset: moving to HEAD\n"
        );
        crate::fs::create_dir_all(dir.path().join("logs")).unwrap();
        crate::fs::write(dir.path().join("logs").join("HEAD"), log).unwrap();
        let lines = head_log(dir.path());
        assert_eq!(lines.len(), 4, "the junk line is skipped");
        assert_eq!(lines[3].time, 103);
        let walk: Vec<(String, i64)> = walk_log(&lines, "qw/demo/1")
            .into_iter()
            .map(|(on, l)| (on, l.time))
            .collect();
        assert_eq!(
            walk,
            vec![
                ("qw/demo/1".into(), 100),
                ("(no branch)".into(), 101),
                ("feat".into(), 102),
                ("feat".into(), 103)
            ]
        );
        assert!(head_log(&dir.path().join("none")).is_empty());
    }

    /// A directory is named whole only when every file recorded in it is among the
    /// paths: a part of it is named file by file (a `git restore` of the whole directory
    /// would overwrite the files still there).
    #[test]
    fn an_untracked_directory_is_named_whole_only_when_all_its_files_are_gone() {
        let dirs = vec![("n/".to_owned(), 3), ("big/".to_owned(), 1)];
        assert_eq!(
            shown(&["a.txt", "n/1", "n/d/2", "n/d/e/3"], &dirs),
            vec!["n/ (3 files)", "a.txt"]
        );
        assert_eq!(shown_paths(&["n/1", "n/d/2", "n/d/e/3"], &dirs), vec!["n/"]);
        assert_eq!(shown(&["n/1", "n/d/2"], &dirs), vec!["n/1", "n/d/2"]);
        // Recorded by its name (over the bound): itself.
        assert_eq!(shown(&["big/"], &dirs), vec!["big/"]);
        assert_eq!(shown(&["x"], &[("x/".to_owned(), 0)]), vec!["x"]);
    }

    #[test]
    fn strong_evidence_wins_and_several_fits_are_ambiguous() {
        let two = |a: &str| vec![a.to_owned()];
        assert_eq!(decide(true, &[], false, &two("task 2")), Maker::Mine);
        assert_eq!(
            decide(true, &two("task 2"), true, &[]),
            Maker::Ambiguous(two("task 2"))
        );
        assert_eq!(decide(false, &two("task 2"), true, &[]), Maker::NotMine);
        assert_eq!(decide(false, &[], true, &[]), Maker::Mine);
        assert_eq!(
            decide(false, &[], true, &two("task 3")),
            Maker::Ambiguous(two("task 3"))
        );
        assert_eq!(decide(false, &[], false, &two("task 3")), Maker::NotMine);
        assert_eq!(decide(false, &[], false, &[]), Maker::NotMine);
    }

    /// `git` in `dir` (identity given), its trimmed stdout; panics on failure.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=T",
                "-c",
                "user.email=t@e",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The main worktree's untracked directories are recorded file by file (nested,
    /// with each file's blob id as git computes it); one over the bound, and a
    /// repository nested in one, stand for themselves.
    #[test]
    fn untracked_directories_are_recorded_file_by_file_within_a_bound() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("repo");
        crate::fs::create_dir_all(top.join("n/d/e")).unwrap();
        git(&top, &["init", "-q", "-b", "main"]);
        crate::fs::write(top.join("t.txt"), "0\n").unwrap();
        git(&top, &["add", "t.txt"]);
        git(&top, &["commit", "-q", "-m", "first"]);
        crate::fs::write(top.join("t.txt"), "1\n").unwrap();
        crate::fs::write(top.join("n/a"), "a\n").unwrap();
        crate::fs::write(top.join("n/d/e/b c"), "b\n").unwrap();
        crate::fs::create_dir_all(top.join("n/inner")).unwrap();
        git(&top.join("n/inner"), &["init", "-q"]);
        crate::fs::write(top.join("n/inner/x"), "x\n").unwrap();
        crate::fs::create_dir_all(top.join("big")).unwrap();
        for i in 0..=MAX_UNTRACKED_FILES {
            crate::fs::write(top.join(format!("big/{i}")), "").unwrap();
        }
        let project = crate::project::Project::at(&top);
        let repo = Repo::discover(&project).unwrap().unwrap();
        let (files, dirs) = repo.dirty_files_and_dirs();
        assert_eq!(dirs, vec!["big/", "n/"]);
        let blob = |p: &str| Some(git(&top, &["hash-object", "--", p]));
        assert_eq!(
            files,
            vec![
                ("big/".to_owned(), None),
                ("n/a".to_owned(), blob("n/a")),
                ("n/d/e/b c".to_owned(), blob("n/d/e/b c")),
                ("n/inner/".to_owned(), None),
                ("t.txt".to_owned(), blob("t.txt")),
            ]
        );
    }

    /// Another worktree's `git stash` writes its commit, then its ref: a task whose
    /// listing came in between (`git stash create`, then `store`, make that order) still
    /// finds the entry when it is popped into its worktree before qw looks again.
    #[test]
    fn an_entry_made_as_the_task_started_and_popped_into_it_is_told() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("repo");
        crate::fs::create_dir_all(top.join(".claude/specs/demo")).unwrap();
        crate::fs::write(top.join(".claude/specs/demo/tasks.md"), "- [ ] 1. a\n").unwrap();
        git(&top, &["init", "-q", "-b", "main"]);
        crate::fs::write(top.join(".git/info/exclude"), ".claude/\n").unwrap();
        crate::fs::write(top.join("f.txt"), "0\n").unwrap();
        git(&top, &["add", "f.txt"]);
        git(&top, &["commit", "-q", "-m", "first"]);
        let project = crate::project::Project::at(&top);
        let repo = Repo::discover(&project).unwrap().unwrap();
        let w = Worktrees::new(repo, "demo", "main");
        // The commit of an entry on its way into the stash: written, not yet listed.
        crate::fs::write(top.join("f.txt"), "1\n").unwrap();
        let made = git(&top, &["stash", "create"]);
        git(&top, &["checkout", "-q", "--", "f.txt"]);
        let (h, _) = w.create("2", &|_| {}).unwrap();
        assert!(h.stash_before.entries.is_empty());
        git(&top, &["stash", "store", "-m", "WIP on main: first", &made]);
        git(&h.path, &["stash", "pop", "-q"]);
        let c = w.stash_check(&h);
        assert!(c.failure.is_none(), "{:?}", c.failure);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].0.contains("popped into its worktree") && c.notes[0].0.contains(&made[..12]),
            "{:?}",
            c.notes
        );
    }
}
