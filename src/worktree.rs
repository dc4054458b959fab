//! One git worktree per running parallel task (CONTRACT §10).
//!
//! Owns: every git command qw runs — discovering the repository, the dirty-tree check and
//! the `--allow-dirty` snapshot, creating a task's worktree on branch
//! `qw/<spec>/<task-id>` under `.claude/worktrees/<spec>-<task-id>`, committing a task's
//! changes, merging its branch into the integration branch (one at a time), removing
//! worktrees, and listing/pruning leftovers for `qw worktrees [--prune]`.
//! Must not: decide when tasks run or record outcomes (that is the workflow).
//!
//! git runs as argv (`git -C DIR …`), never through a shell, with `gc.auto=0` (no
//! background repacking between our commands) and commit signing/hooks off for the
//! commits qw makes itself (the task's `_Verify:_` is the gate).
//!
//! Never losing work: a worktree is removed only after everything in it is committed on
//! its branch, and a branch is deleted only when it holds no commit the integration
//! branch lacks. A leftover worktree (qw was SIGKILLed) is reused by the next run of its
//! task: if it holds nothing unmerged it is recreated from the current integration
//! point; otherwise the task resumes on it, with its earlier work.
//!
//! Who holds a worktree: the running workflow of its spec, through the spec's workflow
//! lock ([`Project::workflow_lock_file`], an `flock` that dies with its process). A
//! worktree whose spec lock is free is orphaned.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use serde::Serialize;

use crate::project::Project;

/// Errors from git or from the files around it. Each names the command or path.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// `git` is not installed.
    #[error("`git` was not found on PATH; task worktrees need git")]
    NoGit,
    /// A git command failed.
    #[error("`git {args}` failed in `{}`: {stderr}", dir.display())]
    Git {
        /// The arguments.
        args: String,
        /// Where it ran.
        dir: PathBuf,
        /// Its stderr (trimmed).
        stderr: String,
    },
    /// A directory in `.claude/worktrees/` that is no git worktree and holds files.
    #[error("`{}` is in the way: it is not a git worktree and holds files", .0.display())]
    InTheWay(PathBuf),
    /// I/O on a named path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl crate::exit::UserError for WorktreeError {
    fn exit_code(&self) -> i32 {
        crate::exit::FAILED
    }

    fn hints(&self) -> Vec<String> {
        match self {
            WorktreeError::NoGit => vec!["install git, or use `--isolate none`".into()],
            WorktreeError::InTheWay(_) => vec!["move it elsewhere and run again".into()],
            WorktreeError::Git { .. } | WorktreeError::Io(_) => Vec::new(),
        }
    }
}

type Result<T> = std::result::Result<T, WorktreeError>;

/// Run `git -C dir ARGS…` and return its output whatever the exit status.
fn git_output<I, S>(dir: &Path, args: I, env: &[(&str, &OsStr)]) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "gc.auto=0", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WorktreeError::NoGit
        } else {
            WorktreeError::Io(crate::fs::with_path(e, "run git in", dir))
        }
    })
}

/// Run git; stdout on success, [`WorktreeError::Git`] otherwise.
fn git<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Result<String> {
    let out = git_output(dir, args, &[])?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(git_error(dir, args, &out))
    }
}

fn git_error<S: AsRef<OsStr>>(dir: &Path, args: &[S], out: &Output) -> WorktreeError {
    WorktreeError::Git {
        args: args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
        dir: dir.to_path_buf(),
        stderr: String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', " | "),
    }
}

/// The git repository a project lives in.
#[derive(Debug, Clone)]
pub struct Repo {
    project: Project,
    /// The main worktree's top directory.
    top: PathBuf,
    /// The project root relative to `top`, `""` or ending in `/`.
    prefix: String,
    /// `$GIT_COMMON_DIR` (holds `info/exclude`).
    common_dir: PathBuf,
}

impl Repo {
    /// The repository holding the project, or `None` when it is not in one.
    pub fn discover(project: &Project) -> Result<Option<Repo>> {
        let root = project.root();
        let out = git_output(
            root,
            [
                "rev-parse",
                "--show-toplevel",
                "--show-prefix",
                "--git-common-dir",
            ],
            &[],
        )?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.split('\n').collect();
        let (Some(top), Some(prefix), Some(common)) = (lines.first(), lines.get(1), lines.get(2))
        else {
            return Ok(None);
        };
        if top.is_empty() {
            // Inside `.git` or a bare repository: no working tree to isolate.
            return Ok(None);
        }
        let common = Path::new(common);
        let common_dir = if common.is_absolute() {
            common.to_path_buf()
        } else {
            root.join(common)
        };
        Ok(Some(Repo {
            project: project.clone(),
            top: PathBuf::from(top),
            prefix: (*prefix).to_owned(),
            common_dir,
        }))
    }

    /// The main worktree's top directory.
    pub fn top(&self) -> &Path {
        &self.top
    }

    /// The branch checked out in the main worktree; `None` when HEAD is detached.
    pub fn current_branch(&self) -> Result<Option<String>> {
        let out = git_output(&self.top, ["symbolic-ref", "-q", "--short", "HEAD"], &[])?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !name.is_empty()).then_some(name))
    }

    /// The commit a revision names, if it exists.
    pub fn commit_of(&self, rev: &str) -> Result<Option<String>> {
        let out = git_output(
            &self.top,
            ["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")],
            &[],
        )?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !sha.is_empty()).then_some(sha))
    }

    /// Can git make commits here (user.name and user.email known)?
    pub fn identity_error(&self) -> Option<String> {
        match git_output(&self.top, ["var", "GIT_COMMITTER_IDENT"], &[]) {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().replace('\n', " ")),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Uncommitted changes (tracked or untracked, not ignored) outside the project's
    /// `.claude/`, as paths relative to the repository top.
    ///
    /// `.claude/` is not dirt: qw reads it from the main tree only (steering, spec
    /// documents, ticks in tasks.md) and writes its runtime files there, so nothing in it
    /// is hidden from tasks or touched by their merges.
    pub fn dirty_paths(&self) -> Result<Vec<String>> {
        let out = git(&self.top, &["status", "--porcelain=v1", "-z"])?;
        let claude = format!("{}.claude/", self.prefix);
        Ok(parse_status_z(&out)
            .into_iter()
            .filter(|p| !p.starts_with(&claude) && p.as_str() != claude.trim_end_matches('/'))
            .collect())
    }

    /// Make sure qw's runtime files never show in `git status` nor get committed: add
    /// them to `$GIT_COMMON_DIR/info/exclude` (the user's `.gitignore` is not touched).
    pub fn ensure_excludes(&self) -> Result<()> {
        let path = self.common_dir.join("info").join("exclude");
        let current = match crate::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        let have: BTreeSet<&str> = current.lines().map(str::trim).collect();
        let wanted: Vec<String> = RUNTIME_PATTERNS
            .iter()
            .map(|p| format!("/{}.claude/{p}", self.prefix))
            .filter(|p| !have.contains(p.as_str()))
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# qw runtime files (added by qw)\n");
        for w in wanted {
            text.push_str(&w);
            text.push('\n');
        }
        crate::fs::create_dir_all(crate::fs::parent_dir(&path))?;
        crate::fs::write_durable(&path, text.as_bytes())?;
        Ok(())
    }

    /// Save the dirty working tree (tracked changes and untracked files, not ignored
    /// ones) as a commit on branch `qw/<spec>/snapshot-<UTC stamp>`, without touching the
    /// working tree, the index or HEAD. Returns the branch, or `None` if nothing is dirty.
    pub fn snapshot_dirty(&self, spec: &str) -> Result<Option<String>> {
        if self.dirty_paths()?.is_empty() {
            return Ok(None);
        }
        let index = tempfile::Builder::new()
            .prefix("qw-snapshot-index")
            .tempfile_in(&self.common_dir)
            .map_err(|e| {
                crate::fs::with_path(e, "create a temporary index in", &self.common_dir)
            })?;
        let env = [("GIT_INDEX_FILE", index.path().as_os_str())];
        let run = |args: &[&str]| -> Result<String> {
            let out = git_output(&self.top, args, &env)?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            } else {
                Err(git_error(&self.top, args, &out))
            }
        };
        run(&["read-tree", "HEAD"])?;
        run(&["add", "-A", "--", ":/"])?;
        let tree = run(&["write-tree"])?;
        let message = format!(
            "qw: snapshot of the uncommitted work before workflow `{spec}` (--allow-dirty)"
        );
        let commit = run(&["commit-tree", &tree, "-p", "HEAD", "-m", &message])?;
        let branch = format!(
            "qw/{spec}/snapshot-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ")
        );
        git(&self.top, &["branch", &branch, &commit])?;
        Ok(Some(branch))
    }

    /// Commits on `branch` that `target` lacks.
    pub fn unmerged_commits(&self, branch: &str, target: &str) -> Result<u64> {
        let out = git(
            &self.top,
            &["rev-list", "--count", &format!("{target}..{branch}")],
        )?;
        Ok(out.trim().parse().unwrap_or(0))
    }

    fn worktrees_dir(&self) -> PathBuf {
        let dir = self.project.worktrees_dir();
        dir.canonicalize().unwrap_or(dir)
    }

    /// The spec folder inside a worktree (relative to the worktree's top).
    fn spec_rel(&self, spec: &str) -> String {
        format!("{}.claude/specs/{spec}", self.prefix)
    }

    fn branch_exists(&self, branch: &str) -> Result<bool> {
        Ok(self.commit_of(&format!("refs/heads/{branch}"))?.is_some())
    }

    /// Uncommitted changes in a worktree, leaving out the spec link qw put there.
    fn worktree_dirty(&self, path: &Path, spec: &str) -> Result<bool> {
        let out = git(
            path,
            &[
                "status",
                "--porcelain=v1",
                "-z",
                "--",
                ".",
                &format!(":(top,exclude){}", self.spec_rel(spec)),
            ],
        )?;
        Ok(!parse_status_z(&out).is_empty())
    }

    /// Stage and commit everything in a worktree except the spec link. False when there
    /// was nothing to commit.
    fn commit_in(&self, path: &Path, spec: &str, message: &str) -> Result<bool> {
        git(
            path,
            &[
                "add",
                "-A",
                "--",
                ".",
                &format!(":(top,exclude){}", self.spec_rel(spec)),
            ],
        )?;
        let staged = git_output(path, ["diff", "--cached", "--quiet"], &[])?;
        if staged.status.success() {
            return Ok(false);
        }
        git(path, &["commit", "-q", "--no-verify", "-m", message])?;
        Ok(true)
    }

    /// Every registered worktree (from `git worktree list --porcelain`).
    pub fn registered(&self) -> Result<Vec<ListedWorktree>> {
        Ok(parse_worktree_list(&git(
            &self.top,
            &["worktree", "list", "--porcelain"],
        )?))
    }

    /// Every local branch under `qw/`.
    fn qw_branches(&self) -> Result<Vec<String>> {
        let out = git(
            &self.top,
            &[
                "for-each-ref",
                "--format=%(refname:short)",
                "refs/heads/qw/",
            ],
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    }
}

/// Files qw writes under `.claude/` that are never the user's work.
const RUNTIME_PATTERNS: &[&str] = &[
    "worktrees/",
    "runs/",
    "backups/",
    "logs/",
    "unified_state.json",
    "unified_state.json.lock",
    ".unified_state.json.tmp*",
    "next_command.lock",
];

/// Paths in `git status --porcelain=v1 -z` output (a rename's source is skipped).
pub fn parse_status_z(out: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut records = out.split('\0');
    while let Some(rec) = records.next() {
        if rec.len() < 4 {
            continue;
        }
        let (xy, path) = rec.split_at(3);
        paths.push(path.to_owned());
        if xy.starts_with('R') || xy.starts_with('C') {
            records.next();
        }
    }
    paths
}

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedWorktree {
    /// Its directory.
    pub path: PathBuf,
    /// The commit checked out.
    pub head: Option<String>,
    /// The branch (without `refs/heads/`), if not detached.
    pub branch: Option<String>,
    /// `git worktree lock`ed (with the reason, possibly empty).
    pub locked: Option<String>,
    /// Its directory is gone (git would prune it).
    pub prunable: bool,
}

/// Parse `git worktree list --porcelain`: blocks of `key value` lines separated by
/// blank lines; `locked` and `prunable` may carry a reason.
pub fn parse_worktree_list(text: &str) -> Vec<ListedWorktree> {
    let mut out = Vec::new();
    let mut cur: Option<ListedWorktree> = None;
    for line in text.lines() {
        if line.is_empty() {
            out.extend(cur.take());
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if key == "worktree" {
            out.extend(cur.take());
            cur = Some(ListedWorktree {
                path: PathBuf::from(value),
                ..ListedWorktree::default()
            });
            continue;
        }
        let Some(w) = cur.as_mut() else { continue };
        match key {
            "HEAD" => w.head = Some(value.to_owned()),
            "branch" => {
                w.branch = Some(
                    value
                        .strip_prefix("refs/heads/")
                        .unwrap_or(value)
                        .to_owned(),
                );
            }
            "locked" => w.locked = Some(value.to_owned()),
            "prunable" => w.prunable = true,
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// Paths git names in a refused merge ("Your local changes to the following files would
/// be overwritten by merge:" / "untracked working tree files would be overwritten"):
/// the tab-indented lines of its message.
pub fn parse_refused_paths(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix('\t'))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `qw/<spec>/<task>` → `(spec, task)`.
pub fn parse_branch(branch: &str) -> Option<(&str, &str)> {
    let rest = branch.strip_prefix("qw/")?;
    let (spec, task) = rest.split_once('/')?;
    (!spec.is_empty() && !task.is_empty() && !task.contains('/')).then_some((spec, task))
}

/// The branch of a task.
pub fn task_branch(spec: &str, task_id: &str) -> String {
    format!("qw/{spec}/{task_id}")
}

/// A task's worktree while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeHandle {
    /// The task.
    pub task_id: String,
    /// The worktree's top directory (`.claude/worktrees/<spec>-<task-id>`).
    pub path: PathBuf,
    /// Where the task works: `path` joined with the project's place in the repository.
    pub workdir: PathBuf,
    /// `qw/<spec>/<task-id>`.
    pub branch: String,
    /// The task resumes earlier unmerged work found on its branch.
    pub resumed: bool,
}

/// How merging a task's branch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// A merge commit now holds the task's work.
    Merged,
    /// The branch held nothing the integration branch lacks.
    UpToDate,
    /// Not merged; the branch is kept. `paths` conflicted (or were in the way).
    Conflict {
        /// The paths.
        paths: Vec<String>,
        /// One line saying why.
        why: String,
    },
}

/// The worktrees of one workflow run: where tasks are created and merged back.
#[derive(Debug)]
pub struct Worktrees {
    repo: Repo,
    spec: String,
    integration: String,
    /// Serialises every git command that changes refs, worktrees or the main tree.
    lock: Mutex<()>,
}

impl Worktrees {
    /// Worktrees of `spec`, merged into `integration` (the branch checked out in the
    /// main worktree when the run started).
    pub fn new(repo: Repo, spec: &str, integration: &str) -> Worktrees {
        Worktrees {
            repo,
            spec: spec.to_owned(),
            integration: integration.to_owned(),
            lock: Mutex::new(()),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The integration branch.
    pub fn integration(&self) -> &str {
        &self.integration
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory of a task's worktree.
    pub fn path_of(&self, task_id: &str) -> PathBuf {
        self.repo
            .worktrees_dir()
            .join(format!("{}-{task_id}", self.spec))
    }

    /// Give a task its worktree, based on the integration branch's current tip (which
    /// holds every merged dependency). A leftover worktree or branch of the same task is
    /// reused: recreated from the new base if it holds nothing unmerged, resumed as it
    /// is otherwise.
    pub fn create(&self, task_id: &str) -> Result<WorktreeHandle> {
        let _g = self.guard();
        let branch = task_branch(&self.spec, task_id);
        let path = self.path_of(task_id);
        let top = self.repo.top.clone();
        let registered = self.repo.registered()?;
        let mut resumed = false;
        let mut ready = false;
        if let Some(w) = registered
            .iter()
            .find(|w| w.path == path || w.branch.as_deref() == Some(branch.as_str()))
        {
            if w.prunable || !w.path.is_dir() {
                git(&top, &["worktree", "prune"])?;
            } else if self.repo.worktree_dirty(&w.path, &self.spec)?
                || self.repo.unmerged_commits(&branch, &self.integration)? > 0
            {
                if w.path != path {
                    return Err(WorktreeError::InTheWay(w.path.clone()));
                }
                resumed = true;
                ready = true;
            } else {
                git(&top, &["worktree", "remove", "--force", &path_str(&w.path)])?;
            }
        }
        if !ready {
            clear_stray(&path)?;
            crate::fs::create_dir_all(self.repo.worktrees_dir())?;
            let p = path_str(&path);
            if self.repo.branch_exists(&branch)?
                && self.repo.unmerged_commits(&branch, &self.integration)? > 0
            {
                resumed = true;
                git(&top, &["worktree", "add", "-q", &p, &branch])?;
            } else {
                git(
                    &top,
                    &[
                        "worktree",
                        "add",
                        "-q",
                        "-B",
                        &branch,
                        &p,
                        &format!("refs/heads/{}", self.integration),
                    ],
                )?;
            }
        }
        let workdir = match self.repo.prefix.trim_end_matches('/') {
            "" => path.clone(),
            prefix => path.join(prefix),
        };
        self.link_spec(&workdir)?;
        Ok(WorktreeHandle {
            task_id: task_id.to_owned(),
            path,
            workdir,
            branch,
            resumed,
        })
    }

    /// Make `.claude/specs/<spec>` inside the worktree a link to the main tree's spec
    /// folder, so relative paths in `_Verify:_` commands and prompts resolve, and the
    /// spec documents (and tasks.md ticks) are one copy, owned by the main tree.
    fn link_spec(&self, workdir: &Path) -> Result<()> {
        let target = self.repo.project.spec_dir(&self.spec);
        let link = workdir.join(".claude").join("specs").join(&self.spec);
        match link.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => return Ok(()),
            // A checked-out copy of a committed spec folder, identical to HEAD: replaced
            // by the link (task commits never include this folder).
            Ok(m) if m.is_dir() => crate::fs::remove_dir_all(&link)?,
            Ok(_) => return Err(WorktreeError::InTheWay(link)),
            Err(_) => {}
        }
        crate::fs::create_dir_all(crate::fs::parent_dir(&link))?;
        std::os::unix::fs::symlink(&target, &link)
            .map_err(|e| crate::fs::with_path(e, "create the spec link", &link))?;
        Ok(())
    }

    /// Commit everything the task changed in its worktree (not the spec folder). False
    /// when there was nothing to commit.
    pub fn commit_all(&self, h: &WorktreeHandle, message: &str) -> Result<bool> {
        let _g = self.guard();
        self.repo.commit_in(&h.path, &self.spec, message)
    }

    /// Merge a task's branch into the integration branch in the main worktree with
    /// `git merge --no-ff`. On a conflict the merge is aborted (the main tree is as it
    /// was) and the branch kept.
    pub fn merge_into_integration(
        &self,
        h: &WorktreeHandle,
        message: &str,
    ) -> Result<MergeOutcome> {
        let _g = self.guard();
        let top = &self.repo.top;
        if self.repo.current_branch()?.as_deref() != Some(self.integration.as_str()) {
            return Ok(MergeOutcome::Conflict {
                paths: Vec::new(),
                why: format!(
                    "the main worktree `{}` is no longer on the integration branch `{}`; branch `{}` is kept — check `{}` out again and merge it",
                    top.display(),
                    self.integration,
                    h.branch,
                    self.integration
                ),
            });
        }
        if self.repo.unmerged_commits(&h.branch, "HEAD")? == 0 {
            return Ok(MergeOutcome::UpToDate);
        }
        let args = ["merge", "--no-ff", "--no-verify", "-m", message, &h.branch];
        let out = git_output(top, args, &[])?;
        if out.status.success() {
            return Ok(MergeOutcome::Merged);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if self.repo.commit_of("MERGE_HEAD")?.is_some() {
            let unmerged = git(top, &["diff", "--name-only", "--diff-filter=U", "-z"])?;
            let paths: Vec<String> = unmerged
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            git(top, &["merge", "--abort"])?;
            return Ok(MergeOutcome::Conflict {
                why: format!(
                    "merging `{}` into `{}` conflicts in {}; the branch is kept — merge it by hand (`git merge {}`) and run `qw workflow-continue`",
                    h.branch,
                    self.integration,
                    paths.join(", "),
                    h.branch
                ),
                paths,
            });
        }
        let paths = parse_refused_paths(&stderr);
        let first = stderr
            .lines()
            .chain(stdout.lines())
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git merge failed")
            .trim()
            .to_owned();
        Ok(MergeOutcome::Conflict {
            why: format!(
                "git refused to merge `{}` into `{}`: {first}{}; the branch is kept",
                h.branch,
                self.integration,
                if paths.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", paths.join(", "))
                }
            ),
            paths,
        })
    }

    /// Remove a task's worktree, after committing anything left in it (message
    /// `salvage`), and delete its branch when the integration branch holds all of it.
    /// Returns the branch if it was kept (it holds unmerged work).
    pub fn remove(&self, h: &WorktreeHandle, salvage: &str) -> Result<Option<String>> {
        let _g = self.guard();
        remove_one(
            &self.repo,
            &h.path,
            &h.branch,
            &self.spec,
            &self.integration,
            salvage,
        )
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Commit leftovers, remove the worktree, delete the branch if merged into `target`.
fn remove_one(
    repo: &Repo,
    path: &Path,
    branch: &str,
    spec: &str,
    target: &str,
    salvage: &str,
) -> Result<Option<String>> {
    if path.is_dir() {
        if repo.worktree_dirty(path, spec)? {
            repo.commit_in(path, spec, salvage)?;
        }
        git(
            &repo.top,
            &["worktree", "remove", "--force", &path_str(path)],
        )?;
    } else {
        git(&repo.top, &["worktree", "prune"])?;
    }
    if !repo.branch_exists(branch)? {
        return Ok(None);
    }
    if repo.unmerged_commits(branch, target)? == 0 {
        git(&repo.top, &["branch", "-D", branch])?;
        Ok(None)
    } else {
        Ok(Some(branch.to_owned()))
    }
}

/// Remove a directory that git does not know, if it holds no files (only folders and
/// links); refuse otherwise.
fn clear_stray(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    if holds_files(path)? {
        return Err(WorktreeError::InTheWay(path.to_path_buf()));
    }
    crate::fs::remove_dir_all(path)?;
    Ok(())
}

fn holds_files(dir: &Path) -> Result<bool> {
    let meta = crate::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(!meta.file_type().is_symlink());
    }
    for entry in crate::fs::read_dir(dir)? {
        let entry = entry?;
        if holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Is a workflow of `spec` running (holding its workflow lock)?
pub fn spec_is_running(project: &Project, spec: &str) -> bool {
    matches!(
        crate::fs::LockedFile::probe(project.workflow_lock_file(spec)),
        Ok(Some(_))
    )
}

/// Take a spec's workflow lock if no workflow holds it (`None` if one does).
fn hold_spec(project: &Project, spec: &str) -> Result<Option<crate::fs::LockedFile>> {
    crate::fs::create_dir_all(project.runs_dir())?;
    Ok(
        crate::fs::LockedFile::try_acquire(project.workflow_lock_file(spec))
            .map_err(std::io::Error::from)?,
    )
}

/// The state of a qw worktree or branch, for `qw worktrees`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A running qw holds it (or `git worktree lock`): never pruned.
    Locked,
    /// A worktree no running qw holds: `--prune` removes it (keeping unmerged work on
    /// its branch).
    Orphaned,
    /// A branch without worktree whose commits are all in HEAD: `--prune` deletes it.
    Merged,
    /// A branch without worktree holding commits HEAD lacks (e.g. a merge conflict):
    /// kept for the user.
    Unmerged,
    /// A `--allow-dirty` snapshot branch: never pruned.
    Snapshot,
}

/// One row of `qw worktrees`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The spec.
    pub spec: String,
    /// The task id (or `snapshot-…`).
    pub task: String,
    /// The branch.
    pub branch: String,
    /// The worktree directory, if there is one.
    pub path: Option<PathBuf>,
    /// See [`EntryState`].
    pub state: EntryState,
    /// Commits on the branch that HEAD lacks.
    pub unmerged_commits: u64,
    /// The worktree holds uncommitted changes.
    pub uncommitted_changes: bool,
}

/// Every qw worktree and `qw/` branch of the project (optionally of one spec).
pub fn list(repo: &Repo, spec: Option<&str>) -> Result<Vec<Entry>> {
    list_with(repo, spec, &|s| spec_is_running(&repo.project, s))
}

fn list_with(
    repo: &Repo,
    spec: Option<&str>,
    running: &dyn Fn(&str) -> bool,
) -> Result<Vec<Entry>> {
    let wt_dir = repo.worktrees_dir();
    let mut out = Vec::new();
    let mut with_worktree = BTreeSet::new();
    for w in repo.registered()? {
        let Some((s, t)) = w.branch.as_deref().and_then(parse_branch) else {
            continue;
        };
        if !w.path.starts_with(&wt_dir) || spec.is_some_and(|x| x != s) {
            continue;
        }
        let branch = w.branch.clone().unwrap_or_default();
        with_worktree.insert(branch.clone());
        let present = w.path.is_dir() && !w.prunable;
        let state = if w.locked.is_some() || running(s) {
            EntryState::Locked
        } else {
            EntryState::Orphaned
        };
        out.push(Entry {
            spec: s.to_owned(),
            task: t.to_owned(),
            unmerged_commits: repo.unmerged_commits(&branch, "HEAD")?,
            uncommitted_changes: present && repo.worktree_dirty(&w.path, s)?,
            path: Some(w.path.clone()),
            branch,
            state,
        });
    }
    for branch in repo.qw_branches()? {
        let Some((s, t)) = parse_branch(&branch) else {
            continue;
        };
        if with_worktree.contains(&branch) || spec.is_some_and(|x| x != s) {
            continue;
        }
        let unmerged = repo.unmerged_commits(&branch, "HEAD")?;
        let state = if t.starts_with("snapshot-") {
            EntryState::Snapshot
        } else if running(s) {
            EntryState::Locked
        } else if unmerged > 0 {
            EntryState::Unmerged
        } else {
            EntryState::Merged
        };
        out.push(Entry {
            spec: s.to_owned(),
            task: t.to_owned(),
            branch,
            path: None,
            state,
            unmerged_commits: unmerged,
            uncommitted_changes: false,
        });
    }
    out.sort_by(|a, b| (&a.spec, &a.task).cmp(&(&b.spec, &b.task)));
    Ok(out)
}

/// A branch [`prune`] kept: it holds commits HEAD lacks.
#[derive(Debug, Clone, Serialize)]
pub struct KeptBranch {
    /// The branch.
    pub branch: String,
    /// Commits on it that HEAD lacks.
    pub unmerged_commits: u64,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Worktree directories removed (with their `git worktree` entries).
    pub removed_worktrees: Vec<PathBuf>,
    /// Branches deleted (fully merged into HEAD).
    pub deleted_branches: Vec<String>,
    /// Branches kept because they hold commits HEAD lacks.
    pub kept_branches: Vec<KeptBranch>,
    /// Worktrees whose uncommitted changes were committed on their branch first.
    pub salvaged: Vec<String>,
    /// Entries left alone because a running qw holds them.
    pub skipped_locked: Vec<String>,
}

/// Remove orphaned worktrees (not held by a running qw) and their `git worktree`
/// entries; delete their branches when merged into HEAD, keep them (and say so) when they
/// hold unmerged commits. Uncommitted changes are committed on the branch first, so no
/// work is lost. Snapshot branches are never touched.
pub fn prune(repo: &Repo, spec: Option<&str>) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    // Hold the workflow lock of every spec we prune, so no workflow starts (and reuses a
    // worktree) while its worktrees are being removed.
    let mut held = std::collections::BTreeMap::new();
    let mut running = BTreeSet::new();
    for e in list_with(repo, spec, &|_| false)? {
        if held.contains_key(&e.spec) || running.contains(&e.spec) {
            continue;
        }
        match hold_spec(&repo.project, &e.spec)? {
            Some(f) => {
                held.insert(e.spec.clone(), f);
            }
            None => {
                running.insert(e.spec.clone());
            }
        }
    }
    for e in list_with(repo, spec, &|s| running.contains(s))? {
        match e.state {
            EntryState::Locked => report.skipped_locked.push(e.branch.clone()),
            EntryState::Snapshot => {}
            EntryState::Orphaned | EntryState::Merged | EntryState::Unmerged => {
                let path = e.path.clone().unwrap_or_default();
                if e.uncommitted_changes {
                    report.salvaged.push(e.branch.clone());
                }
                let salvage = format!(
                    "qw: {} task {} — uncommitted work saved by `qw worktrees --prune`",
                    e.spec, e.task
                );
                let kept = remove_one(repo, &path, &e.branch, &e.spec, "HEAD", &salvage)?;
                if e.path.is_some() {
                    report.removed_worktrees.push(path);
                }
                match kept {
                    Some(b) => {
                        let n = repo.unmerged_commits(&b, "HEAD")?;
                        report.kept_branches.push(KeptBranch {
                            branch: b,
                            unmerged_commits: n,
                        });
                    }
                    None => report.deleted_branches.push(e.branch.clone()),
                }
            }
        }
    }
    // Directories under `.claude/worktrees/` that git does not know (a creation cut
    // short): removed when they hold no files.
    let wt_dir = repo.worktrees_dir();
    if wt_dir.is_dir() {
        let known: BTreeSet<PathBuf> = repo.registered()?.into_iter().map(|w| w.path).collect();
        for entry in crate::fs::read_dir(&wt_dir)? {
            let p = entry?.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let of_running = running.iter().any(|s| name.starts_with(&format!("{s}-")));
            if known.contains(&p)
                || of_running
                || spec.is_some_and(|s| !name.starts_with(&format!("{s}-")))
            {
                continue;
            }
            if p.is_dir() && !holds_files(&p)? {
                crate::fs::remove_dir_all(&p)?;
                report.removed_worktrees.push(p);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_worktree_list_porcelain() {
        let text = "worktree /repo\nHEAD 1111\nbranch refs/heads/main\n\nworktree /repo/.claude/worktrees/demo-2.1\nHEAD 2222\nbranch refs/heads/qw/demo/2.1\nlocked held by qw\n\nworktree /gone\nHEAD 3333\ndetached\nprunable gitdir file points to non-existent location\n\n";
        let w = parse_worktree_list(text);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].branch.as_deref(), Some("main"));
        assert_eq!(w[1].path, PathBuf::from("/repo/.claude/worktrees/demo-2.1"));
        assert_eq!(w[1].branch.as_deref(), Some("qw/demo/2.1"));
        assert_eq!(w[1].locked.as_deref(), Some("held by qw"));
        assert!(!w[1].prunable);
        assert_eq!(w[2].branch, None);
        assert!(w[2].prunable);
        assert_eq!(w[2].head.as_deref(), Some("3333"));
        // No trailing blank line: the last block still counts.
        assert_eq!(parse_worktree_list("worktree /a\nHEAD 1\nbare").len(), 1);
        assert!(parse_worktree_list("").is_empty());
    }

    #[test]
    fn parses_refused_merge_paths() {
        let stderr = "error: Your local changes to the following files would be overwritten by merge:\n\tsrc/a.rs\n\tdocs/b c.md\nPlease commit your changes or stash them before you merge.\nAborting\n";
        assert_eq!(parse_refused_paths(stderr), vec!["src/a.rs", "docs/b c.md"]);
        assert!(parse_refused_paths("fatal: refusing to merge unrelated histories\n").is_empty());
    }

    #[test]
    fn parses_status_z_with_renames() {
        let out = " M src/a.rs\0R  new.rs\0old.rs\0?? .claude/\0A  x y\0";
        assert_eq!(
            parse_status_z(out),
            vec!["src/a.rs", "new.rs", ".claude/", "x y"]
        );
    }

    #[test]
    fn branches_name_spec_and_task() {
        assert_eq!(parse_branch("qw/demo/2.1"), Some(("demo", "2.1")));
        assert_eq!(task_branch("demo", "2.1"), "qw/demo/2.1");
        assert_eq!(parse_branch("qw/demo"), None);
        assert_eq!(parse_branch("feature/x/y"), None);
        assert_eq!(parse_branch("qw/a/b/c"), None);
    }
}
