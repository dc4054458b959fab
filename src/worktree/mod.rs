//! One git worktree per running parallel task (CONTRACT §10).
//!
//! Owns: every git command qw runs — discovering the repository, the dirty-tree check and
//! the `--allow-dirty` snapshot, where task worktrees live ([`root`]: outside `.claude/`),
//! creating a task's worktree on branch `qw/<spec>/<task-id>`, capturing what a task's
//! worktree holds (whatever branch or detached HEAD its agent left), merging it into the
//! integration branch (one merge at a time across every qw process: [`lock`]), removing
//! worktrees, and listing/pruning leftovers for `qw worktrees [--prune]`.
//! Must not: decide when tasks run or record outcomes (that is the workflow).
//!
//! git runs as argv (`git -C DIR …`), never through a shell, with `gc.auto=0` (no
//! background repacking or worktree pruning between our commands), replace refs
//! ignored (`GIT_NO_REPLACE_OBJECTS`: qw merges the commits as they are), optional locks off
//! (our reads never take `index.lock` from a writer), and commit signing/hooks off for
//! the commits qw makes itself (the task's `_Verify:_` is the gate). A task's worktree is
//! addressed by its git dir (`--git-dir <common>/worktrees/<id> --work-tree <path>`),
//! so it is still read and saved when its agent deleted or replaced its `.git` file.
//!
//! Never losing work: a worktree is removed only after everything in it is committed on
//! its branch; a branch is deleted only when it holds no commit the integration branch
//! lacks (and, by a prune, only when its task is completed: [`prune`]); commits the agent left behind (another branch, a reset, a rebase) are named, and
//! kept on a branch when nothing else holds them. A leftover worktree (qw was SIGKILLed)
//! is saved and reused by the next run of its task. Work outside the worktree is named:
//! stash entries the task's agent left ([`Worktrees::stash_check`]), its worktree deleted
//! while it ran ([`Worktrees::gone`]), worktrees it added ([`Worktrees::foreign`]); its
//! worktree moved, its branch deleted and a history of its own committed, objects pruned
//! by a concurrent `git gc` ([`salvage`]). A task branch is resumed only from where qw
//! itself left it ([`owned`]).
//!
//! The target branch: qw merges only into the integration branch where it left it, or
//! where a move the main worktree followed put it; any other move is refused before any
//! merge or new task, touching nothing ([`target`]).
//!
//! Who holds a worktree: the running workflow of its spec, through the spec's workflow
//! lock ([`Project::workflow_lock_file`], an `flock` that dies with its process). A
//! worktree whose spec lock is free is orphaned. qw's worktrees are also `git worktree
//! lock`ed (reason `qw …`), so no `git worktree prune` drops one whose directory vanished
//! before qw saved it.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::exec::Cancel;
use crate::project::Project;

mod alive;
mod blame;
mod bounded;
mod codecfg;
mod copied;
mod copies;
mod cross;
mod disk;
mod gained;
mod ignored;
mod leftovers;
pub(crate) mod lock;
mod lost;
mod nested;
mod origin;
mod owned;
pub(crate) mod pending;
mod planted;
mod reflog;
pub(crate) mod root;
mod salvage;
pub(crate) mod shared;
mod shell;
mod stash;
pub(crate) mod target;
mod tied;
mod tree;
mod unblock;
pub(crate) mod usable;

pub use leftovers::{Entry, EntryState, KeptBranch, PruneReport, list, prune, spec_is_running};

/// Who runs a workflow of `spec` anywhere in `repo` (its repository-wide lock, or the
/// workflow lock of any checkout), as a phrase naming the pid and the lock; `mine` are
/// lock files the caller holds itself.
pub fn workflow_runner(repo: &Repo, spec: &str, mine: &[PathBuf]) -> Option<String> {
    alive::spec_runner(repo, spec, mine)
}

/// Take the repository-wide lock of `spec` (`<git-common-dir>/qw-workflows/<spec>.lock`)
/// that a workflow using task worktrees holds, whichever checkout it runs in; `None`
/// when another process holds it. `note` says where and onto what it runs.
pub fn hold_workflow_repo(
    repo: &Repo,
    spec: &str,
    note: &str,
) -> Result<Option<crate::fs::LockedFile>> {
    alive::try_hold(repo, spec, note)
}

/// The file of [`hold_workflow_repo`]'s lock.
pub fn workflow_repo_lock(repo: &Repo, spec: &str) -> PathBuf {
    alive::repo_lock_file(repo, spec)
}
pub use salvage::{SetAside, set_aside_spec_branches};
pub use shell::quote;
pub(crate) use shell::{continue_cmd, continue_of};
pub use stash::{StashBefore, StashCheck, StashEntry};
pub use target::{RefusedMove, refused_move};
pub(crate) use tree::MARKER as TASK_MARKER;
pub use tree::{Capture, in_progress};

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
    /// Something that is not qw's worktree is where one must go.
    #[error("`{}` is in the way: it is not a worktree qw made", .0.display())]
    InTheWay(PathBuf),
    /// The work in a worktree could not be saved, so the worktree was kept.
    #[error("the work in `{}` could not be saved on its branch, so the worktree is kept: {why}", path.display())]
    Unsaved {
        /// The worktree.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The main worktree is in a state qw must not touch.
    #[error("{0}")]
    MainTree(String),
    /// Where worktrees go could not be decided (a setting, no writable place).
    #[error("{0}")]
    Placement(String),
    /// The integration branch was moved, deleted or renamed, or the main worktree left
    /// it, by someone other than qw: qw merges nothing into it (the line says where qw
    /// left it and the git command that puts it back; see `worktree/target.rs`).
    #[error("{0}")]
    TargetMoved(String),
    /// The task's worktree held a history of its own (its branch deleted, a fresh root
    /// committed): kept on a branch of its own, not merged; the line says where.
    #[error("{0}")]
    OwnHistory(String),
    /// The task's result crossed with work from outside its worktree (its branch moved
    /// from elsewhere, another task's unmerged commits in it): not merged; the line
    /// says where everything is (see `worktree/cross.rs`).
    #[error("{0}")]
    Crossed(String),
    /// The task's agent made commits and then dropped them from its result (a `reset
    /// --hard`, a rebase leaving them out): the result lacks their work, so it is not
    /// reported done; the line says on which branch they are kept and how to merge them.
    #[error("{0}")]
    Dropped(String),
    /// An agent in the shared tree (no task worktrees) switched the user's branch or
    /// reset it under completed work: the line names the branch and the commit to
    /// recover (see `worktree/shared.rs`); no new task starts on that tree.
    #[error("{0}")]
    SharedTree(String),
    /// The main worktree's index holds staged changes: git would not merge, and qw
    /// never changes the user's index. The line names them and how to settle them.
    #[error("{0}")]
    Staged(String),
    /// Something left in the repository stops git (`core.bare` set by an agent, a stale
    /// `.lock` file): the line names it and the command that fixes it (see
    /// `worktree/blame.rs`).
    #[error("{0}")]
    Obstructed(String),
    /// The task's checked work is saved on its branch and only its merge is missing: the
    /// main worktree stayed busy past the wait, or the user's own uncommitted change is in
    /// the way. The line names what and says `workflow-continue` merges it without
    /// running the agent again (see `worktree/pending.rs`).
    #[error("{0}")]
    MergePending(String),
    /// Waiting for the repository lock was interrupted (the message says by what; the
    /// hints say how to resume or end the holder, e.g. `kill -CONT <pid>` when stopped).
    #[error("{0}")]
    Interrupted(String, Vec<String>),
    /// The repository lock could not be taken (its file, the file system).
    #[error(transparent)]
    Lock(Box<crate::fs::LockError>),
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
            WorktreeError::Lock(e) => e.hints(),
            WorktreeError::Interrupted(_, hints) => hints.clone(),
            WorktreeError::Git { .. }
            | WorktreeError::Unsaved { .. }
            | WorktreeError::MainTree(_)
            | WorktreeError::Placement(_)
            | WorktreeError::TargetMoved(_)
            | WorktreeError::OwnHistory(_)
            | WorktreeError::Crossed(_)
            | WorktreeError::Dropped(_)
            | WorktreeError::SharedTree(_)
            | WorktreeError::Staged(_)
            | WorktreeError::Obstructed(_)
            | WorktreeError::MergePending(_)
            | WorktreeError::Io(_) => Vec::new(),
        }
    }
}

type Result<T> = std::result::Result<T, WorktreeError>;

/// The environment variable that sets how long (seconds) a finished task waits for the
/// main worktree to be usable before its merge is left pending.
pub(crate) const MAIN_WAIT_ENV: &str = "QW_MAIN_WAIT_S";

/// How long staged changes in the main worktree are waited for before they are refused
/// (a `git add` whose `git commit` follows; [`main_wait_limit`] when shorter).
const STAGED_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a reading of the main worktree is tried again while a git writes there
/// ([`Worktrees::read_still`]).
const STILL_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a finished task waits for a busy main worktree ([`MAIN_WAIT_ENV`], else
/// 600 s).
pub(crate) fn main_wait_limit() -> std::time::Duration {
    let secs = std::env::var(MAIN_WAIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(600);
    std::time::Duration::from_secs(secs)
}

/// The longest commit, merge or reflog message qw gives git (bytes): far below the
/// kernel's 128 KiB per argument.
const MAX_MESSAGE: usize = 16 * 1024;

/// Build `git -C dir [PRE…] -c … ARGS…` with qw's fixed options and environment.
fn git_command<I, S>(dir: &Path, pre: &[&OsStr], args: I, env: &[(&str, &OsStr)]) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    // A message (`-m`) is one argument: over Linux's 128 KiB per argument (a put-back
    // naming thousands of paths) git could not even start (rev8a F4). Cut, marked.
    let mut after_m = false;
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| {
            let a = a.as_ref();
            let cut = after_m && a.len() > MAX_MESSAGE;
            after_m = a == "-m";
            if cut {
                let text = a.to_string_lossy();
                let mut end = MAX_MESSAGE;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                std::ffi::OsString::from(format!("{}… (cut)", &text[..end]))
            } else {
                a.to_os_string()
            }
        })
        .collect();
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(pre)
        .args(["-c", "gc.auto=0", "-c", "commit.gpgsign=false"])
        // No hook and no fsmonitor, whatever the shared config or `<common>/hooks` say:
        // an agent can write both (they are shared by every worktree), and what they
        // name would run in the main worktree and outlive the task (rev6b G11); the
        // user's own hooks are not qw's to run either (README: hooks).
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        // The objects as they are: a `git replace` of the target's tip (an agent's, rev1
        // L7) would make every merge of qw's see another history.
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Every other key that makes git run a program (a filter or merge driver, gpg, an
    // editor, a credential helper…) set, in any scope or include, otherwise than when
    // the run began: the user's value again, or a neutral one (rev7 R6, see `codecfg`).
    codecfg::apply(&mut cmd, &codecfg::pins(dir, pre));
    cmd
}

fn spawn_output(cmd: Command, dir: &Path) -> Result<Output> {
    spawn_output_with(cmd, None, dir)
}

fn spawn_output_with(cmd: Command, input: Option<Vec<u8>>, dir: &Path) -> Result<Output> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WorktreeError::NoGit
        } else {
            WorktreeError::Io(crate::fs::with_path(e, "run git in", dir))
        }
    };
    let work = work_tree_of(&cmd);
    let again = read_only(&cmd).then(|| (rebuilt(&cmd), input.clone()));
    let ran = bounded::output(cmd, input, work.as_deref()).map_err(io)?;
    // Freed of a FIFO made while it ran (rev9 N10) and failed for it: a git that
    // changes nothing runs once more, the FIFO gone.
    match again {
        Some((cmd, input))
            if (ran.on_fifo || !ran.released.is_empty()) && !ran.out.status.success() =>
        {
            let mut out = bounded::output(cmd, input, work.as_deref())
                .map_err(io)?
                .out;
            if !out.status.success() && !ran.released.is_empty() {
                out.stderr.extend_from_slice(
                    format!("\n{}\n", unblock::released_line(&ran.released)).as_bytes(),
                );
            }
            Ok(out)
        }
        _ => Ok(ran.out),
    }
}

/// The `--work-tree` a git of qw's is given (a task worktree's), if any.
fn work_tree_of(cmd: &Command) -> Option<PathBuf> {
    let mut args = cmd.get_args();
    args.by_ref().find(|a| *a == "--work-tree")?;
    args.next().map(PathBuf::from)
}

/// The git subcommands qw runs that change nothing (run again safely).
const READ_ONLY: [&str; 16] = [
    "cat-file",
    "check-ignore",
    "diff",
    "diff-tree",
    "for-each-ref",
    "log",
    "ls-files",
    "ls-tree",
    "merge-base",
    "name-rev",
    "patch-id",
    "rev-list",
    "rev-parse",
    "show",
    "show-ref",
    "stripspace",
];

/// `cmd` (built by [`git_command`]) runs a git that may run again once a named pipe
/// held it: one of [`READ_ONLY`], `worktree` or `branch`.
fn read_only(cmd: &Command) -> bool {
    let mut args = cmd.get_args().map(|a| a.to_string_lossy());
    while let Some(a) = args.next() {
        match a.as_ref() {
            "-C" | "-c" | "--git-dir" | "--work-tree" => {
                args.next();
            }
            // `worktree add` and `branch` (they read every worktree's HEAD first, rev9
            // N10) are run again too: ended there, they changed nothing yet.
            "worktree" | "branch" => return true,
            sub => return READ_ONLY.contains(&sub),
        }
    }
    false
}

/// The same command again (program, arguments, environment, directory).
fn rebuilt(cmd: &Command) -> Command {
    let mut again = Command::new(cmd.get_program());
    again.args(cmd.get_args()).stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => again.env(k, v),
            None => again.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        again.current_dir(d);
    }
    again
}

/// Run `git -C dir ARGS…` and return its output whatever the exit status.
fn git_output<I, S>(dir: &Path, args: I, env: &[(&str, &OsStr)]) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_output(git_command(dir, &[], args, env), dir)
}

/// Run `git -C dir [PRE…] ARGS…` with `input` on its stdin (written while git answers,
/// within the bound every git of qw's has) and return its output whatever the exit
/// status. `pre` as for [`git_command`] (`--git-dir`/`--work-tree` of a task worktree).
fn git_stdin_in(dir: &Path, pre: &[&OsStr], args: &[&str], input: Vec<u8>) -> Result<Output> {
    spawn_output_with(git_command(dir, pre, args, &[]), Some(input), dir)
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
        stderr: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', " | "),
            blame::ended_by_signal(&out.status)
        ),
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
    /// `$GIT_COMMON_DIR` (holds `info/exclude`, `worktrees/`, the repository lock).
    common_dir: PathBuf,
    /// The git dir of the worktree at `top` (where its MERGE_HEAD would be).
    git_dir: PathBuf,
    /// Where task worktrees go.
    placement: root::Placement,
}

impl Repo {
    /// The repository holding the project, or `None` when it is not in one. Reads the
    /// setting `quantumwala.worktree_root` to decide where task worktrees go.
    pub fn discover(project: &Project) -> Result<Option<Repo>> {
        let root = project.root();
        let out = git_output(
            root,
            [
                "rev-parse",
                "--show-toplevel",
                "--show-prefix",
                "--git-common-dir",
                "--absolute-git-dir",
            ],
            &[],
        )?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        if lines.len() != 5 {
            // A path holding a newline (rev1 L8): one question at a time.
            lines = newline_safe_paths(root)?;
        }
        let (Some(top), Some(prefix), Some(common), Some(git_dir)) =
            (lines.first(), lines.get(1), lines.get(2), lines.get(3))
        else {
            return Ok(None);
        };
        if top.is_empty() || top.starts_with("--") {
            // Inside `.git` or a bare repository: no working tree to isolate.
            return Ok(None);
        }
        let common = Path::new(common);
        let common_dir = if common.is_absolute() {
            common.to_path_buf()
        } else {
            root.join(common)
        };
        let common_dir = common_dir.canonicalize().unwrap_or(common_dir);
        // Where an agent's FIFO can hold a git of qw's (rev9 N10).
        unblock::watch_git_dir(&common_dir);
        let top = PathBuf::from(top);
        let setting = worktree_root_setting(project)?;
        let placement = root::choose(
            &top,
            project.root(),
            setting.as_deref(),
            &root::Env::current(),
            &root::writable,
        )
        .map_err(WorktreeError::Placement)?;
        Ok(Some(Repo {
            project: project.clone(),
            top,
            prefix: (*prefix).to_owned(),
            common_dir,
            git_dir: PathBuf::from(git_dir),
            placement,
        }))
    }

    /// The main worktree's top directory.
    pub fn top(&self) -> &Path {
        &self.top
    }

    /// Where this repository's task worktrees go, and why there.
    pub fn placement(&self) -> &root::Placement {
        &self.placement
    }

    /// The directory holding this repository's task worktrees.
    pub fn container(&self) -> &Path {
        &self.placement.container
    }

    /// The repository lock's file (see [`lock`]).
    pub fn lock_path(&self) -> PathBuf {
        lock::path_in(&self.common_dir)
    }

    /// Take the repository lock (see [`lock`]); `doing` is shown to waiters.
    pub fn lock(
        &self,
        doing: &str,
        cancel: Option<&Cancel>,
        on_wait: &dyn Fn(&str),
    ) -> Result<lock::RepoLock> {
        lock::acquire(&self.lock_path(), doing, cancel, on_wait)
    }

    /// The branch checked out in the main worktree; `None` when HEAD is detached.
    pub fn current_branch(&self) -> Result<Option<String>> {
        let out = git_output(&self.top, ["symbolic-ref", "-q", "HEAD"], &[])?;
        let full = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(out.status.success().then(|| branch_name(&full)).flatten())
    }

    /// The commit a revision names, if it exists (a bare branch name is read as the
    /// branch, see [`qualified`]).
    pub fn commit_of(&self, rev: &str) -> Result<Option<String>> {
        let rev = qualified(rev);
        let out = git_output(
            &self.top,
            ["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")],
            &[],
        )?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !sha.is_empty()).then_some(sha))
    }

    /// `(branch, tip commit)` of each of the local `branches` that exists and names a
    /// commit, as [`Self::commit_of`] of `refs/heads/<branch>` tells it, asked of one
    /// `git cat-file --batch-check` for all of them: a run's task branches number as
    /// many as its tasks, and one git per branch per task made a task's checks cost in
    /// proportion to the spec's size (rev8a F6). An answer that does not fit (a git
    /// that failed) is asked again branch by branch.
    pub fn tips_of<'b>(
        &self,
        branches: impl IntoIterator<Item = &'b String>,
    ) -> Result<Vec<(String, String)>> {
        let branches: Vec<&String> = branches.into_iter().collect();
        if branches.is_empty() {
            return Ok(Vec::new());
        }
        // Ref names hold no space, newline or `^` (git refuses them), so one per line.
        let input: String = branches
            .iter()
            .map(|b| format!("refs/heads/{b}^{{commit}}\n"))
            .collect();
        let answer = lost::git_stdin(
            self,
            &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            &input,
        )?;
        let lines: Vec<&str> = answer.lines().collect();
        if lines.len() != branches.len() {
            let mut tips = Vec::new();
            for b in branches {
                if let Some(c) = self.commit_of(&format!("refs/heads/{b}"))? {
                    tips.push((b.clone(), c));
                }
            }
            return Ok(tips);
        }
        Ok(branches
            .into_iter()
            .zip(lines)
            .filter_map(|(b, l)| {
                let sha = l.strip_suffix(" commit")?;
                (sha.len() >= 40 && sha.bytes().all(|c| c.is_ascii_hexdigit()))
                    .then(|| (b.clone(), sha.to_owned()))
            })
            .collect())
    }

    /// Can git make commits here (user.name and user.email known)?
    pub fn identity_error(&self) -> Option<String> {
        match git_output(&self.top, ["var", "GIT_COMMITTER_IDENT"], &[]) {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(git_reason(&String::from_utf8_lossy(&o.stderr))),
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
        let container = self.container_rel();
        Ok(parse_status_z(&out)
            .into_iter()
            .filter(|p| !p.starts_with(&claude) && p.as_str() != claude.trim_end_matches('/'))
            .filter(|p| {
                container
                    .as_ref()
                    .is_none_or(|c| !p.starts_with(c.as_str()))
            })
            .collect())
    }

    /// The container relative to the top (ending in `/`) when it lies inside the main
    /// worktree (a cache inside a home-directory repository, a setting pointing inside).
    fn container_rel(&self) -> Option<String> {
        let c = self.container();
        let c = c
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .and_then(|p| c.file_name().map(|n| p.join(n)))
            .unwrap_or_else(|| c.to_path_buf());
        let top = self.top.canonicalize().unwrap_or_else(|_| self.top.clone());
        let rel = c.strip_prefix(&top).ok()?;
        Some(format!("{}/", rel.to_string_lossy()))
    }

    /// The lines qw writes to `info/exclude` (its runtime files) and the spec link of
    /// `spec` in a task worktree: what a task worktree may hold ignored that is qw's,
    /// not the agent's (see [`tree::ignored_outside_project`]).
    fn qw_ignores(&self, spec: &str) -> Vec<String> {
        let mut out: Vec<String> = RUNTIME_PATTERNS
            .iter()
            .map(|p| format!("/{}.claude/{p}", self.prefix))
            .collect();
        out.extend(self.container_rel().map(|c| format!("/{c}")));
        out.push(format!("/{}", self.spec_rel(spec)));
        out
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
        let mut wanted: Vec<String> = RUNTIME_PATTERNS
            .iter()
            .map(|p| format!("/{}.claude/{p}", self.prefix))
            .collect();
        wanted.extend(self.container_rel().map(|c| format!("/{c}")));
        wanted.retain(|p| !have.contains(p.as_str()));
        if wanted.is_empty() {
            return Ok(());
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(EXCLUDE_HEADER);
        text.push('\n');
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
        let range = format!("{}..{}", qualified(target), qualified(branch));
        let out = git(&self.top, &["rev-list", "--count", &range])?;
        Ok(out.trim().parse().unwrap_or(0))
    }

    /// Is `a` an ancestor of (or equal to) `b`?
    fn is_ancestor(&self, a: &str, b: &str) -> Result<bool> {
        let (a, b) = (qualified(a), qualified(b));
        let out = git_output(
            &self.top,
            ["merge-base", "--is-ancestor", a.as_ref(), b.as_ref()],
            &[],
        )?;
        Ok(out.status.success())
    }

    /// The spec folder inside a worktree (relative to the worktree's top).
    fn spec_rel(&self, spec: &str) -> String {
        format!("{}.claude/specs/{spec}", self.prefix)
    }

    /// Did the branch move since it was made (its reflog holds more than its creation)?
    /// Without a reflog to tell, it counts as moved.
    fn branch_moved(&self, branch: &str) -> bool {
        let r = format!("refs/heads/{branch}");
        match git_output(
            &self.top,
            ["reflog", "show", "--format=%H", r.as_str()],
            &[],
        ) {
            Ok(o) if o.status.success() => {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count()
                    != 1
            }
            _ => true,
        }
    }

    fn branch_exists(&self, branch: &str) -> Result<bool> {
        Ok(self.commit_of(&format!("refs/heads/{branch}"))?.is_some())
    }

    /// A branch of the user's where git cannot hold qw's branches beside it (rev6b
    /// G18): `qw` or `qw/<spec>` (no `qw/<spec>/<id>` then), `qw-kept` (no
    /// `qw-kept/<sha>`, the keep step qw prints). `(the branch, one qw's it blocks)`.
    pub fn branch_in_the_way(&self, spec: &str) -> Option<(String, String)> {
        [
            ("qw".to_owned(), format!("qw/{spec}/1")),
            (format!("qw/{spec}"), format!("qw/{spec}/1")),
            ("qw-kept".to_owned(), "qw-kept/<commit>".to_owned()),
        ]
        .into_iter()
        .find(|(b, _)| self.branch_exists(b).unwrap_or(false))
    }

    /// The pre-1.x root, `<project>/.claude/worktrees/` (still searched and pruned).
    fn legacy_dir(&self) -> PathBuf {
        let dir = self.project.legacy_worktrees_dir();
        dir.canonicalize().unwrap_or(dir)
    }

    /// Every directory a qw worktree of this repository may sit in.
    fn containers(&self) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = self
            .placement
            .candidates
            .iter()
            .map(|c| c.canonicalize().unwrap_or_else(|_| c.clone()))
            .collect();
        all.push(self.legacy_dir());
        all
    }

    /// Every registered worktree (from `git worktree list --porcelain`), with its git
    /// dir and qw's marker when it has them.
    pub fn registered(&self) -> Result<Vec<ListedWorktree>> {
        tree::defuse_common(&self.common_dir);
        let mut listed =
            parse_worktree_list(&git(&self.top, &["worktree", "list", "--porcelain"])?);
        let admins = self.admin_dirs();
        for w in &mut listed {
            let canon = w.path.canonicalize().ok();
            w.admin = admins
                .iter()
                .find(|(_, p)| *p == w.path || canon.as_ref() == Some(p))
                .map(|(a, _)| a.clone());
            w.task = w.admin.as_deref().and_then(tree::read_marker);
        }
        Ok(listed)
    }

    /// `(git dir, worktree path)` of every linked worktree, read from
    /// `<common>/worktrees/*/gitdir` (works when the worktree's own `.git` is gone).
    fn admin_dirs(&self) -> Vec<(PathBuf, PathBuf)> {
        let Ok(entries) = crate::fs::read_dir(self.common_dir.join("worktrees")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let admin = e.path();
            let Ok(text) = crate::fs::read_to_string(admin.join("gitdir")) else {
                continue;
            };
            let dotgit = PathBuf::from(text.trim());
            let dotgit = if dotgit.is_absolute() {
                dotgit
            } else {
                admin.join(dotgit)
            };
            let path = crate::fs::parent_dir(&dotgit);
            let path = path.canonicalize().unwrap_or(path);
            out.push((admin, path));
        }
        out
    }

    /// Every local branch under `qw/`.
    fn qw_branches(&self) -> Result<Vec<String>> {
        let out = git(
            &self.top,
            &[
                "for-each-ref",
                "--format=%(refname:lstrip=2)",
                "refs/heads/qw/",
            ],
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    }

    /// An operation in progress in the main worktree (`a merge`, `a rebase`, …), which
    /// qw must neither merge into nor abort.
    fn main_in_progress(&self) -> Option<&'static str> {
        in_progress(&self.git_dir)
    }
}

/// `git rev-parse`'s top, prefix, common dir and git dir, asked one at a time so a
/// newline in a path is kept (only the line end git adds is taken off).
fn newline_safe_paths(root: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for q in [
        "--show-toplevel",
        "--show-prefix",
        "--git-common-dir",
        "--absolute-git-dir",
    ] {
        let o = git_output(root, ["rev-parse", q], &[])?;
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        out.push(text.strip_suffix('\n').unwrap_or(&text).to_owned());
    }
    Ok(out)
}

/// The reason in git's error text: its `fatal:` line (git's advice around it, such as
/// "Please tell me who you are" and its `--global` commands, is for git's own prompt), or
/// the whole text on one line when there is none.
fn git_reason(stderr: &str) -> String {
    match stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("fatal:"))
    {
        Some(r) => r.trim().to_owned(),
        None => stderr.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The setting `quantumwala.worktree_root`, if set.
fn worktree_root_setting(project: &Project) -> Result<Option<String>> {
    let settings = crate::settings::QwSettings::load(&project.settings_file())
        .map_err(|e| WorktreeError::Placement(e.to_string()))?;
    Ok(settings.quantumwala.worktree_root)
}

/// Files qw writes under `.claude/` that are never the user's work (`worktrees/` is the
/// old root of task worktrees).
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

/// The header qw writes above its lines in `info/exclude`.
const EXCLUDE_HEADER: &str = "# qw runtime files (added by qw)";

/// Whether `line` of `info/exclude` is one qw writes ([`Repo::ensure_excludes`]): its
/// header, or a runtime path of some project's `.claude/` (every project of the
/// repository adds its own).
pub(crate) fn is_qw_exclude_line(line: &str) -> bool {
    line == EXCLUDE_HEADER
        || (line.starts_with('/')
            && RUNTIME_PATTERNS.iter().any(|p| {
                line.strip_suffix(p)
                    .is_some_and(|rest| rest == "/.claude/" || rest.ends_with("/.claude/"))
            }))
}

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

/// The first ten characters of a commit id.
fn short(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
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
    /// Its git dir (`<common>/worktrees/<id>`), when found.
    pub admin: Option<PathBuf>,
    /// `(spec, task)` from qw's marker in its git dir.
    pub task: Option<(String, String)>,
}

impl ListedWorktree {
    /// Locked by someone other than qw (`git worktree lock` by hand).
    pub fn locked_by_user(&self) -> bool {
        self.locked
            .as_deref()
            .is_some_and(|r| !r.starts_with(tree::LOCK_REASON_PREFIX))
    }
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
/// the indented lines of its message (a tab from the checkout, two spaces from
/// merge-ort when the index differs from HEAD).
pub fn parse_refused_paths(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix('\t').or_else(|| l.strip_prefix("  ")))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `rev` as git must read it when it is a bare branch name: `refs/heads/<name>`. git
/// reads a bare name as `$GIT_DIR/<name>`, `refs/<name>`, `refs/tags/<name>` before
/// `refs/heads/<name>`, so an agent's `git tag qw/<spec>/<id> <merged commit>` made qw
/// count a task's unmerged branch as merged and report success without merging it
/// (found with rev8b F14). Commit ids, full refs, git's own `*HEAD` names and revision
/// expressions (`^`, `~`, `:`, `@{`) are left as they are.
pub(crate) fn qualified(rev: &str) -> std::borrow::Cow<'_, str> {
    let expression = ["^", "~", ":", "@{", ".."].iter().any(|m| rev.contains(m));
    let commit_id = rev.len() >= 4 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    let own = matches!(
        rev,
        "HEAD"
            | "MERGE_HEAD"
            | "ORIG_HEAD"
            | "FETCH_HEAD"
            | "CHERRY_PICK_HEAD"
            | "REBASE_HEAD"
            | "REVERT_HEAD"
            | "BISECT_HEAD"
            | "AUTO_MERGE"
    );
    if rev.is_empty() || expression || commit_id || own || rev.starts_with("refs/") {
        std::borrow::Cow::Borrowed(rev)
    } else {
        std::borrow::Cow::Owned(format!("refs/heads/{rev}"))
    }
}

/// The branch a full ref names (`refs/heads/main` → `main`), never git's short form:
/// `symbolic-ref --short` says `heads/main` as soon as a tag `main` exists (an agent's
/// `git tag main`), and that name compared with the target's made qw wait 600 s for a
/// main worktree that never left `main` (rev8b F14). `None` for anything but a branch.
pub(crate) fn branch_name(full_ref: &str) -> Option<String> {
    full_ref
        .strip_prefix("refs/heads/")
        .filter(|b| !b.is_empty())
        .map(str::to_owned)
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

/// `<spec>-<task>` → `(spec, task)`: spec names are kebab-case and task ids hold no `-`,
/// so the last `-` separates them.
fn parse_dir_name(name: &str) -> Option<(&str, &str)> {
    let (spec, task) = name.rsplit_once('-')?;
    (!spec.is_empty() && !task.is_empty()).then_some((spec, task))
}

/// A task's worktree while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreeHandle {
    /// The task.
    pub task_id: String,
    /// The worktree's top directory (`<container>/<spec>-<task-id>`).
    pub path: PathBuf,
    /// Its git dir (`<common>/worktrees/<id>`).
    pub admin: PathBuf,
    /// Where the task works: `path` joined with the project's place in the repository.
    pub workdir: PathBuf,
    /// `qw/<spec>/<task-id>`.
    pub branch: String,
    /// The task resumes earlier unmerged work found on its branch.
    pub resumed: bool,
    /// The stash (and the main worktree's uncommitted files) when the worktree was
    /// made: entries beyond these may be the task's (the stash is shared by every
    /// worktree), entries gone since are named.
    pub stash_before: StashBefore,
    /// The worktrees registered when this one was made (see [`Worktrees::foreign`]).
    pub worktrees_before: Vec<PathBuf>,
    /// How many changes of the shared git files were found before it was made (see
    /// [`Worktrees::planted`]).
    pub planted_from: usize,
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

/// Which of qw's own git steps failed for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Making (or reusing) the task's worktree.
    Prepare,
    /// Saving what the task's worktree holds on its branch.
    Commit,
    /// Merging the branch into the integration branch.
    Merge,
}

/// A failed git step of qw's, with the step.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct StepError {
    /// Which step.
    pub step: Step,
    /// What failed.
    #[source]
    pub source: WorktreeError,
}

/// A live merge-pending record (see `worktree/pending.rs`), as read at a run's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMerge {
    /// The task id.
    pub task_id: String,
    /// The branch the record names (anyone's words until the state vouches for it).
    pub branch: String,
    /// The saved tip it names (the branch is at it).
    pub tip: String,
    /// The target holds the tip already (qw was stopped after its merge).
    pub merged: bool,
}

/// What [`Worktrees::integrate`] did.
#[derive(Debug, Clone)]
pub struct Integrated {
    /// How the merge went.
    pub merge: MergeOutcome,
    /// What was saved (and the commits the agent left elsewhere).
    pub capture: Capture,
}

/// What [`Worktrees::remove`] did.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// The task's branch, when kept because it holds unmerged work.
    pub kept_branch: Option<String>,
    /// Commits the agent left elsewhere (named or kept on a branch).
    pub strays: Vec<String>,
    /// Things that went wrong but lost nothing (a directory that could not be removed).
    pub warnings: Vec<String>,
    /// What is worth telling and went right (nested repositories that were not the
    /// agent's work, removed with the worktree).
    pub notes: Vec<String>,
    /// Why the worktree was kept as it is, nothing saved (an operation its agent left
    /// half done: [`tree::unfinished`]); its line is also in `warnings`.
    pub unfinished: Option<String>,
}

/// The worktrees of one workflow run: where tasks are created and merged back.
#[derive(Debug)]
pub struct Worktrees {
    repo: Repo,
    spec: String,
    integration: String,
    cancel: Option<Cancel>,
    /// Where qw last saw the integration branch (when the run started, after each of
    /// its merges, after a move the main worktree followed): see [`Worktrees::check_target`].
    tip: std::sync::Mutex<Option<String>>,
    /// The first refusal of a move of the target in this run (see
    /// [`Worktrees::check_target`]): every later check gives it again.
    refused: std::sync::Mutex<Option<target::Moved>>,
    /// The task branches this run gave out: commits on them reach the target only by
    /// qw's merge (see [`Worktrees::check_target`]).
    given: std::sync::Mutex<BTreeSet<String>>,
    /// The task branches whose merge conflicted in this run, or whose task stopped with
    /// its work kept on them: qw told the user to merge them by hand, so the main
    /// worktree following such a merge made after that (past this many entries of its
    /// HEAD reflog) is the user's move (see [`Worktrees::check_target`]).
    by_hand: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
    /// What qw saw of the stash over the run (see [`stash`]).
    stash_watch: stash::Watch,
    /// The replace refs told of so far (see [`blame::new_replacements`]).
    replacements: std::sync::Mutex<BTreeSet<String>>,
    /// When the run began (seconds since the epoch): what the main worktree or a
    /// worktree qw did not make committed after it is not taken as the user's (see
    /// [`owned::set_aside_foreign`]).
    started: owned::RunStart,
    /// The shared git files (config, hooks, info) as the user had them, and changes
    /// found and undone (see [`planted`]).
    planted: std::sync::Mutex<planted::Watch>,
}

impl Worktrees {
    /// Worktrees of `spec`, merged into `integration` (the branch checked out in the
    /// main worktree when the run started).
    pub fn new(repo: Repo, spec: &str, integration: &str) -> Worktrees {
        // The spec folder agents reach through qw's link (rev9 N10).
        unblock::watch_work_dir(&repo.top.join(repo.spec_rel(spec)));
        let replacements = blame::replace_refs(&repo);
        let started = owned::RunStart {
            secs: owned::now_secs(),
            main_log: tree::head_log(&repo.git_dir).len(),
        };
        let tip = repo
            .commit_of(&format!("refs/heads/{integration}"))
            .ok()
            .flatten();
        Worktrees {
            repo,
            spec: spec.to_owned(),
            integration: integration.to_owned(),
            cancel: None,
            tip: std::sync::Mutex::new(tip),
            refused: std::sync::Mutex::new(None),
            given: std::sync::Mutex::new(BTreeSet::new()),
            by_hand: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            stash_watch: stash::Watch::default(),
            replacements: std::sync::Mutex::new(replacements),
            started,
            planted: std::sync::Mutex::new(planted::Watch::default()),
        }
    }

    /// From now on, the repository's shared config, hooks and `info/` files are the
    /// user's: a change of them found later (before each of qw's git steps, after each
    /// agent) is undone and told (see [`planted`]). Called once qw wrote its own
    /// lines to `info/exclude`.
    pub fn watch_shared(&self) {
        self.planted_watch().begin(&self.repo);
    }

    fn planted_watch(&self) -> std::sync::MutexGuard<'_, planted::Watch> {
        self.planted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Undo a change of the shared git files before qw's git runs (see [`planted`]).
    fn check_shared(&self) {
        self.planted_watch().check(&self.repo);
    }

    /// The changes of the shared git files found since task `h` started (its agent's,
    /// or another's running then), each undone: one line, or `None`.
    pub fn planted(&self, h: &WorktreeHandle) -> Option<String> {
        self.check_shared();
        let found = self.planted_watch().since(h.planted_from);
        (!found.is_empty()).then(|| {
            format!(
                "while task {} ran, {}",
                h.task_id,
                found.join("; and then ")
            )
        })
    }

    /// Code-running config keys set, since the run began, by a file the planted watch
    /// does not put back (the global or XDG config, an included file, a worktree's
    /// `config.worktree`), seen in task `h`'s worktree, the main one or any git of qw's
    /// so far: qw's own git does not run them ([`codecfg`]); each told once, as a
    /// warning (the user's git would run them; qw does not change those files).
    pub fn config_notes(&self, h: Option<&WorktreeHandle>) -> Vec<String> {
        if let Some(h) = h {
            let pre = [
                OsStr::new("--git-dir"),
                h.admin.as_os_str(),
                OsStr::new("--work-tree"),
                h.path.as_os_str(),
            ];
            codecfg::pins(&h.path, &pre);
        }
        codecfg::pins(&self.repo.top, &[]);
        codecfg::take_notes()
    }

    /// The changes of the shared git files found and not yet told (at the run's end).
    pub fn planted_untold(&self) -> Vec<String> {
        self.check_shared();
        self.planted_watch()
            .untold()
            .into_iter()
            .map(|l| format!("while the workflow ran, {l}"))
            .collect()
    }

    /// Give up waiting for the repository lock when `cancel` fires.
    pub fn with_cancel(mut self, cancel: Cancel) -> Worktrees {
        self.cancel = Some(cancel);
        self
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The integration branch.
    pub fn integration(&self) -> &str {
        &self.integration
    }

    fn lock(&self, doing: &str, on_wait: &dyn Fn(&str)) -> Result<lock::RepoLock> {
        let doing = format!("qw workflow `{}`: {doing}", self.spec);
        let g = self.repo.lock(&doing, self.cancel.as_ref(), on_wait)?;
        // Every git step of qw's takes this lock: what an agent planted in the shared
        // config or hooks is undone before it (see [`planted`]).
        self.check_shared();
        Ok(g)
    }

    fn tip(&self) -> Option<String> {
        self.tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_tip(&self, tip: Option<String>) {
        *self
            .tip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tip;
    }

    /// What task branches start from and are compared with: the commit qw last saw the
    /// integration branch at, so a move of the branch that qw refuses (see
    /// [`Worktrees::check_target`]) never makes a task's unmerged work look merged.
    fn target(&self) -> String {
        // The full name: a tag of the same name would win over the branch (rev8b F14).
        self.tip()
            .unwrap_or_else(|| format!("refs/heads/{}", self.integration))
    }

    /// Worktrees qw did not make that appeared while the task ran (its agent's `git
    /// worktree add`): one line naming each and its branch. Their work is not the
    /// task's result and is left where it is (never merged, never removed).
    pub fn foreign(&self, h: &WorktreeHandle) -> Option<String> {
        // Under the lock: another qw's worktree gets its marker before it is released.
        let _g = self
            .lock(
                &format!("checking the worktrees of task {}", h.task_id),
                &|_| {},
            )
            .ok()?;
        let replaced = blame::new_replacements(&self.repo, &self.replacements, &h.task_id);
        let new: Vec<String> = self
            .repo
            .registered()
            .ok()?
            .into_iter()
            .filter(|w| w.task.is_none() && !h.worktrees_before.contains(&w.path))
            .filter(|w| !same_path(&w.path, &self.repo.top))
            .inspect(|w| {
                if let Some(admin) = &w.admin {
                    owned::mark_appeared(admin, &self.spec, &h.task_id);
                }
            })
            .map(|w| match &w.branch {
                Some(b) => format!("`{}` (branch `{b}`)", w.path.display()),
                None => format!("`{}` (detached HEAD)", w.path.display()),
            })
            .collect();
        let worktrees = (!new.is_empty()).then(|| {
            format!(
                "a worktree qw did not make appeared while task {} ran (its agent's `git worktree add`?): {}; what is there is not part of the task's result and is left as it is (commits made there are never taken as yours, nor as any task's, on a task branch qw did not leave them on)",
                h.task_id,
                new.join(", ")
            )
        });
        match (worktrees, replaced) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }

    /// When the task's worktree was deleted while it ran (its directory is gone, by
    /// `rm -rf` or `git worktree remove`, or wiped: made again empty, or emptied of its
    /// files and `.git`): one line naming it, the task, and where its
    /// commits are (its branch, kept when it holds any).
    pub fn gone(&self, h: &WorktreeHandle) -> Option<String> {
        // Moved by a plain `mv` (a directory may have been made again where it was):
        // git is told where it is now (`git worktree repair`), so what it holds is saved
        // from there like after a `git worktree move`; what is at the old place is left
        // as it is.
        if repair_moved(&self.repo, &h.path, &h.admin).is_some()
            && let Some(line) = salvage::moved_line(&h.path, &h.admin, &h.task_id, &h.branch)
        {
            let line = line.replace(
                "(its agent's `git worktree move`?)",
                "(by a plain `mv`: qw told git where it is with `git worktree repair`)",
            );
            return Some(match remade(&h.path) {
                Some(r) => format!("{line}; {r}"),
                None => line,
            });
        }
        // Moved by its agent (`git worktree move`): not gone, but not where the task's
        // check and merge run either.
        if let Some(line) = salvage::moved_line(&h.path, &h.admin, &h.task_id, &h.branch) {
            return Some(line);
        }
        // Its directory deleted and made again, or emptied `.git` and all: its files are
        // not the task's work (see [`tree::wiped`]).
        if h.path.symlink_metadata().is_ok()
            && !tree::wiped(
                &tree::Tree::new(&h.path, &h.admin, &h.branch),
                &self.repo.spec_rel(&self.spec),
            )
        {
            return None;
        }
        let kept = self.repo.branch_exists(&h.branch).unwrap_or(false)
            && self
                .repo
                .unmerged_commits(&h.branch, &self.target())
                .unwrap_or(0)
                > 0;
        let what = if kept {
            format!(
                "its commits are kept on branch `{}`; its uncommitted files were not saved (they are not there); `{}` goes on from its commits",
                h.branch,
                shell::continue_cmd(&self.spec)
            )
        } else {
            format!(
                "it held no commit beyond `{}`, and its uncommitted files were not saved (they are not there); `{}` runs the task again",
                self.integration,
                shell::continue_cmd(&self.spec)
            )
        };
        Some(format!(
            "the worktree `{}` of task {} was deleted while the task ran (or moved away where qw did not find it); {what}",
            h.path.display(),
            h.task_id
        ))
    }

    /// Warning lines for the repositories nested in a task's worktree that its merged
    /// result left out (see [`nested::not_merged`]): the task completed, but not all its
    /// agent did is in the target.
    pub fn not_merged(&self, h: &WorktreeHandle, capture: &Capture) -> Vec<String> {
        let t = tree::Tree::new(&h.path, &h.admin, &h.branch);
        nested::not_merged(
            &self.repo,
            &t,
            &capture.left_out,
            capture.commit.as_deref(),
            &self.target(),
        )
    }

    /// Named pipes, sockets and devices named `.gitignore`, `.gitattributes` or
    /// `.gitmodules` the agent left in its worktree, removed before any git of qw's
    /// reads it (see [`tree::defuse_special`]): the line saying so, if any.
    /// Its git dir put back whole first, when its agent deleted or damaged it (see
    /// [`tree::repair_admin`]); both told in the lines returned.
    pub fn defuse(&self, h: &WorktreeHandle) -> Vec<String> {
        let t = tree::Tree::new(&h.path, &h.admin, &h.branch);
        let repaired = tree::repair_admin(&t);
        // Its `.git` pointing at a sibling's git dir (rev9 N9): its own again.
        let repointed = tree::repoint_dotgit(&t, &self.repo.spec_rel(&self.spec));
        // The spec folder is the main worktree's (qw's link in the worktree leads there):
        // a FIFO an agent put there through it would hang git in the main worktree
        // (rev9 N4).
        let spec_dir = self.repo.top.join(self.repo.spec_rel(&self.spec));
        [
            tree::repaired_line(&t, &repaired),
            repointed,
            tree::defused_line(&h.path, &tree::defuse_special(&h.path)),
            tree::defused_line(&spec_dir, &tree::defuse_special(&spec_dir)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The line of a task whose worktree holds a merge or rebase its agent left half
    /// done, or unresolved conflicts (see [`tree::unfinished`]): the worktree is kept as
    /// it is and nothing of it is saved. `None` when there is none. Called after
    /// [`Self::defuse`], which walked the work tree.
    pub fn unfinished(&self, h: &WorktreeHandle) -> Option<String> {
        let t = tree::Tree::new(&h.path, &h.admin, &h.branch);
        let why = tree::unfinished(&t, &self.spec).ok()??;
        Some(
            WorktreeError::Unsaved {
                path: h.path.clone(),
                why,
            }
            .to_string(),
        )
    }

    /// The preferred directory of a task's worktree.
    pub fn path_of(&self, task_id: &str) -> PathBuf {
        self.repo
            .container()
            .join(format!("{}-{task_id}", self.spec))
    }

    /// Give a task its worktree, based on the integration branch's current tip (which
    /// holds every merged dependency). A leftover worktree or branch of the same task is
    /// first saved (its uncommitted work committed on the branch), then reused: resumed
    /// as it is when it holds unmerged work and is sound, recreated otherwise. Returns the
    /// handle and notes worth telling (what was saved, what could not be removed).
    pub fn create(
        &self,
        task_id: &str,
        on_wait: &dyn Fn(&str),
    ) -> Result<(WorktreeHandle, Vec<String>)> {
        let branch = task_branch(&self.spec, task_id);
        let made = self
            .create_worktree(task_id, on_wait)
            .map_err(|e| self.explain(e, None, &branch))?;
        // The branch is this run's now: made for this target from this checkout.
        tied::record(
            &self.repo,
            &self.spec,
            task_id,
            &self.integration,
            &self.repo.top,
        );
        Ok(made)
    }

    /// A failure of qw's git step re-told when a signal or something left in the
    /// repository explains it ([`blame`]).
    fn explain(&self, e: WorktreeError, admin: Option<&Path>, branch: &str) -> WorktreeError {
        let cancel = self.cancel.clone().unwrap_or_else(Cancel::process);
        blame::explain(
            &self.repo,
            &cancel,
            e,
            admin,
            &[branch, &self.integration],
            &self.spec,
        )
    }

    fn create_worktree(
        &self,
        task_id: &str,
        on_wait: &dyn Fn(&str),
    ) -> Result<(WorktreeHandle, Vec<String>)> {
        let doing = format!("preparing task {task_id}");
        let mut g = self.lock(&doing, on_wait)?;
        let mut tries = 0;
        let _g = loop {
            // The main worktree only elsewhere for a moment (nothing moved), a git of the
            // user's at work there: wait for it.
            let (held, _) = self.wait_usable(g, &doing, false, on_wait)?;
            let before = usable::snapshot(&self.repo, &self.integration)?;
            target::refuse_if_moved(self, &format!("task {task_id} was not started"))?;
            match target::refuse_staged_start(self, task_id) {
                // Staged since the wait looked (a `git add` whose commit follows): the
                // wait again, with its moment for them.
                Err(WorktreeError::Staged(_))
                    if tries < 5 && self.main_changed(before.as_ref()) =>
                {
                    tries += 1;
                    g = held;
                }
                r => break r.map(|()| held)?,
            }
        };
        let target = self.target();
        let branch = task_branch(&self.spec, task_id);
        self.given
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(branch.clone());
        let preferred = self.path_of(task_id);
        let top = self.repo.top.clone();
        // A branch a run onto another target left (the same spec in another checkout):
        // never resumed here (rev6b G12).
        if let Some(line) =
            tied::foreign_target(&self.repo, &self.spec, task_id, &self.integration, &top)
        {
            return Err(WorktreeError::Obstructed(line));
        }
        let mut notes = Vec::new();
        let mut reuse: Option<(PathBuf, PathBuf)> = None;
        for w in self.repo.registered()? {
            let ours = leftovers::owner(&self.repo, &w);
            let mine = ours
                .as_ref()
                .is_some_and(|(s, t)| s == &self.spec && t == task_id);
            let holds_branch = w.branch.as_deref() == Some(branch.as_str());
            if !mine && !holds_branch {
                continue;
            }
            // Another live qw's worktree of this task is never taken over.
            if let Some(line) = mine.then(|| tied::live_elsewhere(&w, task_id)).flatten() {
                return Err(WorktreeError::Obstructed(line));
            }
            let (Some(admin), true) = (w.admin.clone(), mine) else {
                // Our branch, checked out in a worktree qw did not make.
                return Err(WorktreeError::Obstructed(owned::held_elsewhere(
                    &w, &branch, task_id, &self.spec,
                )));
            };
            // qw's first git in a worktree an earlier run left: nothing it would block on.
            tree::defuse_special(&w.path);
            let saved = tree::capture(
                &self.repo,
                &tree::Tree::new(&w.path, &admin, &branch),
                &self.spec,
                &format!(
                    "qw({}): task {task_id} — work left by an earlier run, saved",
                    self.spec
                ),
                &target,
            )
            .map_err(|e| match e {
                // Already says why and what keeps it (a rebase left half done).
                e @ WorktreeError::Unsaved { .. } => e,
                e => WorktreeError::Unsaved {
                    path: w.path.clone(),
                    why: e.to_string(),
                },
            })?;
            notes.extend(saved.strays);
            let survey = nested::survey(
                &self.repo,
                &tree::Tree::new(&w.path, &admin, &branch),
                &w.path,
                &target,
            );
            if let Some(line) = survey
                .kept
                .or_else(|| nested::modules_at_risk(&self.repo, &admin, &w.path, &branch))
            {
                // Not removed, and its branch stays checked out there.
                return Err(WorktreeError::MainTree(format!(
                    "task {task_id} was not started: {line}"
                )));
            }
            notes.extend(survey.note);
            if let Some(lines) = keep_remade(
                &self.repo,
                &tree::Tree::new(&w.path, &admin, &branch),
                &self.spec,
            ) {
                notes.extend(lines);
                continue;
            }
            if saved.saved_changes {
                notes.push(format!(
                    "saved the uncommitted work left in `{}` on branch `{branch}`",
                    w.path.display()
                ));
            }
            let sound = same_path(&w.path, &preferred) && tree::sound(&w.path, &admin);
            if reuse.is_none() && sound && self.repo.unmerged_commits(&branch, &target)? > 0 {
                reuse = Some((w.path.clone(), admin));
                continue;
            }
            notes.extend(tree::remove_tree(&self.repo, &w.path, Some(&admin)));
        }
        // A branch qw did not leave where it is (another task's agent made it): its
        // commits are kept apart, never resumed as this task's.
        let mut resume_told = false;
        if reuse.is_none()
            && let Some(told) = owned::set_aside_foreign(
                &self.repo,
                &branch,
                task_id,
                &target,
                &self.integration,
                self.started,
            )?
        {
            resume_told = told.resumes;
            notes.push(told.line);
        }
        let (path, admin, resumed) = match reuse {
            Some((path, admin)) => {
                // Locked again: an earlier run's lock may have been lifted by hand.
                let _ = git_output(
                    &top,
                    [
                        "worktree",
                        "lock",
                        "--reason",
                        &self.lock_reason(task_id),
                        &path_str(&path),
                    ],
                    &[],
                );
                (path, admin, true)
            }
            None => {
                let path = free_path(&preferred)?;
                crate::fs::create_dir_all(self.repo.container())?;
                let p = path_str(&path);
                let reason = self.lock_reason(task_id);
                let resumed = self.repo.branch_exists(&branch)?
                    && self.repo.unmerged_commits(&branch, &target)? > 0;
                // Locked as it is made: no `git worktree prune` drops it should its
                // directory vanish unsaved, and it is qw's even if qw is killed before
                // its marker is written.
                salvage::add_locked(&top, &p, &branch, (!resumed).then_some(&*target), &reason)?;
                owned::record(&self.repo, &branch)?;
                let admin = tree::admin_of(&path)?;
                tree::write_marker(&admin, &self.spec, task_id)?;
                lost::remember_packs(&self.repo, &admin)?;
                (path, admin, resumed)
            }
        };
        // Said once per task: not again when the line about its moved branch said it.
        if resumed && !resume_told {
            notes.push(format!(
                "resuming the unmerged work on branch `{branch}` left by an earlier run"
            ));
        }
        // A reftable repository keeps its logs in its tables: no log files there.
        if !reflog::is_reftable(&self.repo.common_dir) {
            lost::ensure_reflogs(&self.repo, &admin, &branch)?;
        }
        let workdir = match self.repo.prefix.trim_end_matches('/') {
            "" => path.clone(),
            prefix => path.join(prefix),
        };
        self.link_spec(&workdir)?;
        tree::hide_spec_files(
            &tree::Tree::new(&path, &admin, &branch),
            &self.repo.spec_rel(&self.spec),
        )?;
        // The user's Claude Code files git does not track, as read-only copies.
        notes.extend(copies::copy_into(&self.repo, &path, &admin, &workdir));
        let stash_before = self.stash_before(task_id, &path, &admin, &branch);
        Ok((
            WorktreeHandle {
                task_id: task_id.to_owned(),
                path,
                admin,
                workdir,
                branch,
                resumed,
                stash_before,
                worktrees_before: self
                    .repo
                    .registered()?
                    .into_iter()
                    .map(|w| w.path)
                    .collect(),
                planted_from: self.planted_watch().mark(),
            },
            notes,
        ))
    }

    fn lock_reason(&self, task_id: &str) -> String {
        format!(
            "{} workflow {} task {task_id} (pid {})",
            tree::LOCK_REASON_PREFIX,
            self.spec,
            std::process::id()
        )
    }

    /// Remove this spec's leftovers (qw was killed) that hold nothing unmerged or are
    /// broken, after saving what they hold; sound ones with unmerged work stay for their
    /// task to resume. Returns what is worth telling; nothing here fails the run.
    pub fn clear_merged_leftovers(&self, on_wait: &dyn Fn(&str)) -> Vec<String> {
        let mut notes = Vec::new();
        let _g = match self.lock("clearing leftovers of an earlier run", on_wait) {
            Ok(g) => g,
            Err(e) => return vec![format!("left the worktrees of an earlier run alone: {e}")],
        };
        // A branch moved onto a task's commits makes them look merged: nothing is
        // cleared against a target that is not where qw left it.
        match self.check_target() {
            Ok(None) => {}
            Ok(Some(m)) => {
                self.record_refusal(&m);
                return vec![format!(
                    "left the worktrees and branches of an earlier run alone: {}",
                    m.why
                )];
            }
            Err(e) => return vec![format!("left the worktrees of an earlier run alone: {e}")],
        }
        let entries = match leftovers::list_with(&self.repo, Some(&self.spec), &|_| None) {
            Ok(e) => e,
            Err(e) => {
                return vec![format!(
                    "could not list the worktrees of an earlier run: {e}"
                )];
            }
        };
        for e in entries {
            if e.task.starts_with("snapshot-")
                || e.task.contains('@')
                || e.state == EntryState::Locked
                || e.state == EntryState::Elsewhere
            {
                continue;
            }
            let clean = e.unmerged_commits == 0 && !e.uncommitted_changes;
            if !clean && e.problem.is_none() {
                continue;
            }
            // Moved off qw's unmerged tip (onto the target: `git branch -f <it> main`):
            // not merged work, put back when its task starts.
            if owned::moved_off_unmerged(&self.repo, &e.branch, &self.target()) {
                continue;
            }
            let removed = remove_one(
                &self.repo,
                e.path.as_deref().unwrap_or(Path::new("")),
                e.admin.as_deref(),
                &e.branch,
                &self.spec,
                &self.integration,
                &format!(
                    "qw({}): task {} — work left by an earlier run, saved",
                    self.spec, e.task
                ),
                false,
            );
            if let Some(p) = &e.problem {
                notes.push(format!(
                    "removed the broken worktree `{}` of task {} ({p}), after saving what it held",
                    e.path.as_deref().unwrap_or(Path::new("")).display(),
                    e.task
                ));
            }
            notes.extend(removed.strays);
            notes.extend(removed.notes);
            notes.extend(removed.warnings);
        }
        notes
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

    /// After the task's agent and verify passed: save what its worktree holds — its HEAD
    /// (whatever branch or detached HEAD the agent left) plus its files — on its branch,
    /// and merge that into the integration branch in the main worktree, one merge at a
    /// time across every qw. A conflict aborts the merge qw started (the main tree is as
    /// it was) and keeps the branch; a merge qw did not start is never touched. `vouch`
    /// (given the saved tip) records in the state that the merge is pending, before the
    /// merge-pending record is written; false: no record.
    pub fn integrate(
        &self,
        h: &WorktreeHandle,
        commit_message: &str,
        merge_message: &str,
        on_wait: &dyn Fn(&str),
        vouch: &dyn Fn(&str) -> bool,
    ) -> std::result::Result<Integrated, StepError> {
        self.integrate_steps(h, commit_message, merge_message, on_wait, vouch)
            .map_err(|e| StepError {
                step: e.step,
                source: self.explain(e.source, Some(&h.admin), &h.branch),
            })
    }

    fn integrate_steps(
        &self,
        h: &WorktreeHandle,
        commit_message: &str,
        merge_message: &str,
        on_wait: &dyn Fn(&str),
        vouch: &dyn Fn(&str) -> bool,
    ) -> std::result::Result<Integrated, StepError> {
        let commit = |source| StepError {
            step: Step::Commit,
            source,
        };
        let t = tree::Tree::new(&h.path, &h.admin, &h.branch);
        // qw's first git in the worktree since the `_Verify:_` ran there: nothing git
        // would block on is left (the save below does not walk the tree again).
        tree::defuse_special(&h.path);
        // A merge or rebase left half done: nothing saved (its conflict markers are not
        // the task's work), the worktree kept as it is for the user to finish or abort.
        if let Some(why) = tree::unfinished(&t, &self.spec).map_err(commit)? {
            return Err(commit(WorktreeError::Unsaved {
                path: h.path.clone(),
                why,
            }));
        }
        // Staging and writing objects needs no lock: only this task uses its worktree;
        // but not with a filter another agent planted in the shared config.
        self.check_shared();
        let stage = || tree::stage(&self.repo, &t, &self.spec, commit_message, &self.target());
        let staged = salvage::retry_missing(stage).map_err(commit)?;
        let doing = format!("merging task {}", h.task_id);
        let g = self.lock(&doing, on_wait).map_err(commit)?;
        // Objects pruned since staging (a concurrent `git gc --prune=now`): staged again.
        let capture = match tree::point_branch(&self.repo, &t, staged, &self.target()) {
            Err(e) if salvage::missing_object(&e) => {
                stage().and_then(|s| tree::point_branch(&self.repo, &t, s, &self.target()))
            }
            r => r,
        }
        .map_err(commit)?;
        if let Some(line) = &capture.own_history {
            return Err(commit(WorktreeError::OwnHistory(line.clone())));
        }
        if let Some(line) = &capture.crossed {
            return Err(commit(WorktreeError::Crossed(line.clone())));
        }
        if let Some(result) = &capture.commit {
            let target = self.target();
            let unheld = cross::unheld_deletions(
                &self.repo,
                &t,
                result,
                &target,
                &self.repo.spec_rel(&self.spec),
            )
            .map_err(commit)?;
            if !unheld.is_empty() {
                // Kept with those paths put back, so the next run resumes from a branch
                // whose merge deletes nothing its worktree never held (not refused again).
                let put_back = cross::put_back_unheld(
                    &self.repo,
                    &t,
                    &unheld,
                    result,
                    &target,
                    &format!(
                        "qw({}): task {} — put back {}, which its result deleted though its worktree never held them",
                        self.spec,
                        h.task_id,
                        unheld.join(", ")
                    ),
                )
                .ok();
                return Err(commit(WorktreeError::Crossed(cross::unheld_line(
                    &t,
                    &unheld,
                    result,
                    put_back.as_deref(),
                    &self.integration,
                    &self.spec,
                ))));
            }
        }
        if let Some(result) = &capture.commit {
            self.refuse_undone(h, &t, result).map_err(commit)?;
            // A file the main worktree ignores, forced into the result: the merge would
            // replace the user's ignored file of that name silently (rev8b F3); a change
            // to the project's `.claude/` (rev8a F5, rev8b F8).
            if let Some(line) = ignored::refusal(
                &self.repo,
                h,
                result,
                &self.target(),
                &self.integration,
                &self.spec,
            )
            .map_err(commit)?
            {
                return Err(commit(WorktreeError::Crossed(line)));
            }
        }
        if let Some(result) = &capture.commit {
            // The siblings' tips and worktrees, read once for both checks below.
            let others = self.other_task_tips(h).map_err(commit)?;
            if let Some(line) = self
                .brings_other_tasks(h, result, &others)
                .map_err(commit)?
            {
                return Err(commit(WorktreeError::Crossed(line)));
            }
            // The user's own branch switched to or merged by the agent (rev8a F8).
            if let Some(line) = self.brings_user_branches(h, result).map_err(commit)? {
                return Err(commit(WorktreeError::Crossed(line)));
            }
            // The same work copied (a cherry-pick, `git am`, a squash): refused alike (G9).
            if let Some(line) = self
                .copies_other_tasks(h, result, &others)
                .map_err(commit)?
            {
                return Err(commit(WorktreeError::Crossed(line)));
            }
        }
        // Copies of the user's own unmerged branch (rev8a F8 rest): refused alike.
        let mut capture = capture;
        if let Some(result) = &capture.commit {
            let user = self.copies_user_branches(h, result).map_err(commit)?;
            if let Some(line) = user.refused {
                return Err(commit(WorktreeError::Crossed(line)));
            }
            capture.strays.extend(user.skipped);
        }
        // Last of the refusals (a crossing above says more): the agent's own commits
        // dropped from its result (rev11a F1).
        if let Some(line) = &capture.dropped {
            return Err(commit(WorktreeError::Dropped(line.clone())));
        }
        let merge_err = |source| StepError {
            step: Step::Merge,
            source,
        };
        // Saved and checked: from here only the merge is missing, whatever stops it. The
        // state says so first (`vouch`: the record alone is anyone's to write); a record
        // the state could not vouch for is not written (the task would run again).
        if let Some(tip) = self
            .repo
            .commit_of(&format!("refs/heads/{}", h.branch))
            .map_err(merge_err)?
            && vouch(&tip)
        {
            pending::write(
                &self.repo,
                &pending::Pending {
                    spec: self.spec.clone(),
                    task_id: h.task_id.clone(),
                    branch: h.branch.clone(),
                    tip,
                    subject: merge_message.to_owned(),
                },
            )
            .map_err(merge_err)?;
        }
        let started = std::time::Instant::now();
        let mut g = g;
        let mut tries = 0;
        let (merge, _g) = loop {
            // The main worktree busy for a moment (a merge or rebase qw did not start,
            // HEAD on another branch, `index.lock`, staged changes a commit follows):
            // wait for it, the lock released meanwhile.
            let (held, busy) = self
                .wait_usable(g, &doing, true, on_wait)
                .map_err(merge_err)?;
            if let Some(why) = busy {
                return Err(merge_err(WorktreeError::MergePending(format!(
                    "{why}, for longer than qw waits ({} s, `{MAIN_WAIT_ENV}`), so task branch `{}` was not merged into `{}`; its checked work is saved there: once the main worktree is free, `{}` merges it (its agent does not run again)",
                    main_wait_limit().as_secs(),
                    h.branch,
                    self.integration,
                    shell::continue_cmd(&self.spec)
                ))));
            }
            let before = usable::snapshot(&self.repo, &self.integration).map_err(merge_err)?;
            match self.merge_into_integration(h, merge_message) {
                // Refused (git changed nothing) while the user's git changed the main
                // worktree under it — staged since the wait looked, a commit or checkout
                // under way: not the task's failure; wait and merge again (rev7 R11).
                Err(
                    WorktreeError::Staged(_)
                    | WorktreeError::MergePending(_)
                    | WorktreeError::Git { .. },
                ) if tries < 20
                    && started.elapsed() < main_wait_limit()
                    && self.repo.main_in_progress().is_none()
                    && self.main_changed(before.as_ref()) =>
                {
                    tries += 1;
                    g = held;
                }
                r => break (r.map_err(merge_err)?, held),
            }
        };
        if matches!(merge, MergeOutcome::Conflict { .. }) {
            // Aborted: the branch waits for the user's merge by hand, as advised.
            pending::remove(&self.repo, &self.spec, &h.task_id);
        }
        Ok(Integrated { merge, capture })
    }

    /// A result whose merge would delete or revert what the target gained while the task
    /// ran (`gained::undone`: a squash onto the target after a sibling merged) is not
    /// merged: kept on its branch with those paths as the target has them, and named.
    fn refuse_undone(&self, h: &WorktreeHandle, t: &tree::Tree<'_>, result: &str) -> Result<()> {
        // The branch as it is now, not where qw left it: the user's own commits on it
        // mid-run are gains the result must not undo either (rev7 R5).
        // (Gone or renamed: where qw left it; the target check tells the move.)
        let branch = format!("refs/heads/{}", self.integration);
        let target = match self.repo.commit_of(&branch) {
            Ok(Some(_)) => branch,
            _ => self.target(),
        };
        let undone = gained::undone(
            &self.repo,
            t,
            result,
            &target,
            &self.repo.spec_rel(&self.spec),
        )?;
        if undone.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = undone.iter().map(|u| u.path.clone()).collect();
        let put_back = gained::put_back(
            &self.repo,
            t,
            &paths,
            result,
            &target,
            &format!(
                "qw({}): task {} — put back {}, which its result took from `{}` though they came there while it ran",
                self.spec,
                h.task_id,
                paths.join(", "),
                self.integration
            ),
        )
        .ok();
        Err(WorktreeError::Crossed(gained::undone_line(
            t,
            &undone,
            result,
            put_back.as_deref(),
            &self.integration,
            &self.spec,
        )))
    }

    /// Merge a task's branch into the integration branch with `git merge --no-ff`
    /// (the repository lock is held).
    fn merge_into_integration(&self, h: &WorktreeHandle, message: &str) -> Result<MergeOutcome> {
        let top = &self.repo.top;
        if let Some(op) = self.repo.main_in_progress() {
            return Err(WorktreeError::MainTree(format!(
                "the main worktree `{}` is in the middle of {op} that qw did not start, so task branch `{}` was not merged (it is kept); finish or abort it (e.g. `git merge --continue` or `git merge --abort`), then run `{}`",
                top.display(),
                h.branch,
                shell::continue_cmd(&self.spec)
            )));
        }
        target::refuse_if_moved(
            self,
            &format!(
                "task branch `{}` was not merged (it is kept) and qw left the main worktree's index and files as they are",
                h.branch
            ),
        )?;
        self.refuse_staged(h)?;
        if self.repo.unmerged_commits(&h.branch, "HEAD")? == 0 {
            return Ok(MergeOutcome::UpToDate);
        }
        let Some(tip) = self.repo.commit_of(&format!("refs/heads/{}", h.branch))? else {
            return Ok(MergeOutcome::UpToDate);
        };
        let head_before = self.repo.commit_of("HEAD")?;
        // `--no-overwrite-ignore`: git's default replaces an ignored file of the main
        // worktree (the user's `.env`, qw's backups) without a word; refused instead, as
        // an untracked file in the way is (rev8b F3).
        let args = [
            "merge",
            "--no-ff",
            "--no-verify",
            "--no-overwrite-ignore",
            "-m",
            message,
            tip.as_str(),
        ];
        let mut tries = 0;
        let out = loop {
            let out = git_output(top, args, &[])?;
            tries += 1;
            // Another git (an editor's, the user's) holds the main index for a moment:
            // nothing was changed, so try again a few times before giving up.
            // (`could not write index`: the user's commit took the lock after git's
            // first look, rev6b G7.)
            let said = String::from_utf8_lossy(&out.stderr);
            let busy = !out.status.success()
                && (said.contains("index.lock")
                    || said.contains("could not write index")
                    || said.contains("Unable to write index"))
                && self.repo.main_in_progress().is_none();
            if !busy || tries >= 40 || self.cancel.as_ref().is_some_and(|c| c.pending().is_some()) {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        };
        if out.status.success() {
            let merged = self
                .repo
                .commit_of(&format!("refs/heads/{}", self.integration))?;
            if let Some(m) = &merged {
                origin::record_merge(&self.repo, &self.spec, &h.branch, &tip, m);
            }
            self.set_tip(merged);
            return Ok(MergeOutcome::Merged);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(merging) = self.repo.commit_of("MERGE_HEAD")? {
            if merging != tip {
                // Not ours: leave it exactly as it is.
                return Err(WorktreeError::MainTree(format!(
                    "the main worktree `{}` is in the middle of a merge of {merging} that qw did not start; branch `{}` is kept",
                    top.display(),
                    h.branch
                )));
            }
            let unmerged = git(top, &["diff", "--name-only", "--diff-filter=U", "-z"])?;
            let paths: Vec<String> = unmerged
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            let head_now = self.repo.commit_of("HEAD")?;
            if paths.is_empty() && head_now.is_some() && head_now != head_before {
                // No conflict: a commit of the user's moved HEAD under git's merge (git
                // writes the merged index, then MERGE_HEAD, then moves HEAD, with no
                // lock held in between: "cannot lock ref 'HEAD'"). Undone without
                // touching the user's commit or edits; merged again once the main
                // worktree holds still (see `integrate_steps`), else left pending.
                if let Some(base) = head_before.as_deref() {
                    self.undo_stopped_merge(base, &tip)?;
                }
                return Err(WorktreeError::MergePending(format!(
                    "git stopped the merge of task branch `{}` into `{}` without a conflict ({}; undone, the main worktree as it was), so it was not merged; its checked work is saved there: `{}` merges it (its agent does not run again)",
                    h.branch,
                    self.integration,
                    git_reason(&stderr),
                    shell::continue_cmd(&self.spec)
                )));
            }
            git(top, &["merge", "--abort"])?;
            self.merge_by_hand(&h.branch);
            return Ok(MergeOutcome::Conflict {
                why: format!(
                    "merging `{}` into `{}` conflicts in {}; the branch is kept — merge it by hand (`git merge {b}`, or `git merge --squash {b}` and a commit) and run `{c}`, which then counts it merged; or, to run the task again from `{}` instead, delete it (`git branch -D {b}`) and run `{c}`",
                    h.branch,
                    self.integration,
                    paths.join(", "),
                    self.integration,
                    b = quote(&h.branch),
                    c = shell::continue_cmd(&self.spec)
                ),
                paths,
            });
        }
        // Staged between the check and the merge: named as such, not as a conflict.
        self.refuse_staged(h)?;
        let paths = parse_refused_paths(&stderr);
        if paths.is_empty() {
            return Err(git_error(top, &args, &out));
        }
        // git refused before changing anything: the user's own uncommitted edit (or an
        // untracked file) is in the way. Not a conflict of the task's: only the merge is
        // missing, and `workflow-continue` merges the saved branch.
        let untracked = stderr.contains("untracked working tree files");
        let (what, settle) = if untracked {
            ("untracked file", "commit, move or remove")
        } else {
            ("uncommitted change to", "commit or stash")
        };
        let shown = paths
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(WorktreeError::MergePending(format!(
            "your {what} {shown} in the main worktree `{}` is in the way of merging task branch `{}` into `{}` (git refused the merge and changed nothing): {settle} it, then run `{}` (the task's checked work is kept on `{}` and is merged then; its agent does not run again)",
            top.display(),
            h.branch,
            self.integration,
            shell::continue_cmd(&self.spec),
            h.branch
        )))
    }

    /// Why the main worktree cannot take a merge for a moment though nothing moved: a
    /// merge or rebase qw did not start in progress there, another git's `index.lock`
    /// (`for_merge` only), or HEAD on another branch while the target is
    /// where qw left it. `None`: usable (anything else is for the usual checks).
    fn busy(&self, for_merge: bool, staged_too: bool) -> Result<Option<String>> {
        let top = &self.repo.top;
        if for_merge && let Some(op) = self.repo.main_in_progress() {
            return Ok(Some(format!(
                "the main worktree `{}` is in the middle of {op} that qw did not start (finish it, e.g. `git add` the resolved files and `git commit`, or abort it)",
                top.display()
            )));
        }
        // Also before a task starts: a git writing the main index is the user's commit,
        // checkout or stash under way, and what qw reads of the main worktree meanwhile
        // is half of one state and half of the next (rev7 R11).
        if let Some(o) = usable::index_lock(&self.repo) {
            return Ok(Some(format!("another git is at work there: {}", o.line)));
        }
        // Staged changes for a moment: the user's `git add` whose `git commit` follows.
        if staged_too && self.repo.main_in_progress().is_none() {
            let staged = self.repo.staged_paths()?;
            if !staged.is_empty() {
                return Ok(Some(format!(
                    "the main worktree `{}` has staged changes ({}) — a commit of yours under way?",
                    top.display(),
                    staged
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        // On another branch: whatever is committed there stays on it. (A detached HEAD
        // is refused at once: a commit made on it would be left to its reflog when the
        // main worktree goes back, so the refusal keeps it first.)
        let Some(on) = self.repo.current_branch()? else {
            return Ok(None);
        };
        if on == self.integration {
            return Ok(None);
        }
        let Some(tip) = self.tip() else {
            return Ok(None);
        };
        let at = self
            .repo
            .commit_of(&format!("refs/heads/{}", self.integration))?;
        if at.as_deref() != Some(tip.as_str()) || self.repo.main_in_progress().is_some() {
            return Ok(None);
        }
        Ok(Some(format!(
            "the main worktree `{}` is on branch `{on}`, not on `{}` (`{}` itself is where qw left it; `git switch {}` goes back)",
            top.display(),
            self.integration,
            self.integration,
            quote(&self.integration)
        )))
    }

    /// Hold `g` (the repository lock) only while the main worktree is usable: while
    /// [`Worktrees::busy`] says why not, release it, wait (said once after a second, and
    /// again when the reason changes; ended by a signal), and take it again — at most
    /// [`main_wait_limit`]. Returns the lock and, when the limit passed, why it is still
    /// busy.
    fn wait_usable(
        &self,
        mut g: lock::RepoLock,
        doing: &str,
        for_merge: bool,
        on_wait: &dyn Fn(&str),
    ) -> Result<(lock::RepoLock, Option<String>)> {
        let limit = main_wait_limit();
        let grace = limit.min(STAGED_GRACE);
        let started = std::time::Instant::now();
        let mut said: Option<String> = None;
        let cancel = self.cancel.clone().unwrap_or_else(Cancel::process);
        loop {
            let Some(why) = self.busy(for_merge, started.elapsed() < grace)? else {
                return Ok((g, None));
            };
            if started.elapsed() >= limit {
                return Ok((g, Some(why)));
            }
            drop(g);
            // Said again when the reason changes, not when only its details do (the
            // age, the pid of the user's next `git commit`).
            let kind: String = why.chars().take_while(|c| *c != '(').collect();
            if started.elapsed() >= std::time::Duration::from_secs(1)
                && said.as_deref() != Some(kind.as_str())
            {
                on_wait(&format!(
                    "waiting (up to {} s, `{MAIN_WAIT_ENV}`) before {doing}: {why}",
                    limit.as_secs()
                ));
                said = Some(kind);
            }
            if !cancel.sleep(std::time::Duration::from_millis(200)) {
                return Err(WorktreeError::Interrupted(
                    format!("a signal ended the wait for the main worktree before {doing} ({why})"),
                    Vec::new(),
                ));
            }
            g = self.lock(doing, on_wait)?;
        }
    }

    /// Undo qw's merge of `tip` that git stopped after writing the merged index and files
    /// because a commit of the user's moved HEAD from `base` (see
    /// `merge_into_integration`): forget the merge (`git merge --quit`), set the index
    /// back to HEAD — the user's commit — (`git reset -q`: files untouched), and put back
    /// as HEAD has them the paths the task changed whose file is still exactly what the
    /// merge wrote; a file changed since is the user's and left as it is.
    fn undo_stopped_merge(&self, base: &str, tip: &str) -> Result<()> {
        let top = &self.repo.top;
        let parted = git(top, &["merge-base", base, tip])?;
        let task_paths = self.repo.changed_paths(parted.trim(), tip)?;
        // What the merge wrote, before the index is set back: `<mode> <blob> <stage>\t<path>`.
        let mut written: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        let staged = git(top, &["ls-files", "-s", "-z"])?;
        for entry in staged.split('\0').filter(|e| !e.is_empty()) {
            if let Some((meta, path)) = entry.split_once('\t')
                && task_paths.contains(path)
                && let Some(blob) = meta.split(' ').nth(1)
            {
                written.insert(path.to_owned(), blob.to_owned());
            }
        }
        git(top, &["merge", "--quit"])?;
        git(top, &["reset", "-q"])?;
        for path in &task_paths {
            let file = top.join(path);
            let on_disk = if file.symlink_metadata().is_ok() {
                git(top, &["hash-object", "--", path])
                    .ok()
                    .map(|h| h.trim().to_owned())
            } else {
                None
            };
            if on_disk.as_deref() != written.get(path).map(String::as_str) {
                continue;
            }
            let spec = format!(":(top,literal){path}");
            if git(top, &["cat-file", "-e", &format!("HEAD:{path}")]).is_ok() {
                git(top, &["checkout", "-q", "HEAD", "--", &spec])?;
            } else if on_disk.is_some() {
                crate::fs::remove_file(&file)?;
            }
        }
        Ok(())
    }

    /// Did a git write in the main worktree since `before` (`None`: one held its index
    /// then), or does one hold its index now?
    fn main_changed(&self, before: Option<&usable::Snapshot>) -> bool {
        match (before, usable::snapshot(&self.repo, &self.integration)) {
            (Some(b), Ok(Some(now))) => *b != now,
            _ => true,
        }
    }

    /// `read` of the main worktree's state, taken while it holds still
    /// ([`usable::still`]: no `index.lock`, nothing rewritten between two snapshots), so
    /// a commit, checkout or stash of the user's under way is never read half done as
    /// staged changes or a moved target (rev7 R11). Tried again for up to
    /// [`STILL_WITHIN`]; then read as it is. Where qw left the target is put back after a
    /// reading that did not hold.
    pub(crate) fn read_still<T>(&self, mut read: impl FnMut() -> Result<T>) -> Result<T> {
        let end = std::time::Instant::now() + STILL_WITHIN;
        let cancel = self.cancel.clone().unwrap_or_else(Cancel::process);
        loop {
            let tip = self.tip();
            if let Some(r) = usable::still(&self.repo, &self.integration, &mut read)? {
                return Ok(r);
            }
            self.set_tip(tip);
            if std::time::Instant::now() >= end
                || !cancel.sleep(std::time::Duration::from_millis(50))
            {
                return read();
            }
        }
    }

    /// The tasks of this spec whose checked work is saved with only the merge missing
    /// (see `worktree/pending.rs`), each with whether the target holds it already (qw
    /// was stopped after its merge, before recording it). Read before the leftovers are
    /// cleared (a merged branch goes then).
    pub fn pending_merges(&self) -> Vec<PendingMerge> {
        // (Gone or renamed: where qw left it; the target check tells the move.)
        let branch = format!("refs/heads/{}", self.integration);
        let target = match self.repo.commit_of(&branch) {
            Ok(Some(_)) => branch,
            _ => self.target(),
        };
        pending::live(&self.repo, &self.spec)
            .into_iter()
            .map(|p| {
                let merged = self.repo.is_ancestor(&p.tip, &target).unwrap_or(false);
                PendingMerge {
                    task_id: p.task_id,
                    branch: p.branch,
                    tip: p.tip,
                    merged,
                }
            })
            .collect()
    }

    /// Forget that `task_id`'s merge is pending (it is recorded completed).
    pub fn forget_pending(&self, task_id: &str) {
        pending::remove(&self.repo, &self.spec, task_id);
    }

    /// Staged changes in the main worktree fail the merge of `h` naming them (git would
    /// refuse it, and qw never changes the user's index): [`WorktreeError::Staged`].
    fn refuse_staged(&self, h: &WorktreeHandle) -> Result<()> {
        let staged = self.read_still(|| self.repo.staged_paths())?;
        if staged.is_empty() {
            return Ok(());
        }
        Err(WorktreeError::Staged(format!(
            "{}, then run `{}`",
            self.repo.staged_line(
                &staged,
                &format!(
                    "task branch `{}` was not merged into `{}` (it is kept)",
                    h.branch, self.integration
                )
            ),
            shell::continue_cmd(&self.spec)
        )))
    }

    /// Remove a task's worktree, after saving what it holds on its branch (message
    /// `salvage`), and delete the branch when the integration branch holds all of it.
    /// Nothing here fails the task: a worktree whose work cannot be saved is kept, one
    /// that cannot be removed is left (its work saved) — both said in `warnings`.
    pub fn remove(&self, h: &WorktreeHandle, salvage: &str, on_wait: &dyn Fn(&str)) -> Removed {
        // The task's agent is done: a merge of its kept branch from here on is the user's.
        let mark = self.main_log_mark();
        let _g = match self.lock(
            &format!("removing the worktree of task {}", h.task_id),
            on_wait,
        ) {
            Ok(g) => g,
            Err(e) => {
                return Removed {
                    warnings: vec![format!(
                        "kept the worktree `{}` of task {}: {e}; `qw worktrees --prune` removes it later",
                        h.path.display(),
                        h.task_id
                    )],
                    ..Removed::default()
                };
            }
        };
        // Where its agent moved it, if it did (`git worktree move`).
        let path = salvage::where_now(&h.path, &h.admin);
        let removed = remove_one(
            &self.repo,
            &path,
            Some(&h.admin),
            &h.branch,
            &self.spec,
            &self.target(),
            salvage,
            false,
        );
        if let Some(kept) = &removed.kept_branch {
            // Said to the user as kept: their merge of it from now on is theirs.
            self.merge_by_hand_since(kept, mark);
        }
        removed
    }
}

/// Save, remove, delete the branch if merged into `target` and not `keep_branch` (the
/// lock is held).
#[allow(clippy::too_many_arguments)]
fn remove_one(
    repo: &Repo,
    path: &Path,
    admin: Option<&Path>,
    branch: &str,
    spec: &str,
    target: &str,
    salvage: &str,
    keep_branch: bool,
) -> Removed {
    let mut out = Removed::default();
    // Moved by a plain `mv` (a directory perhaps made again at its old place): saved and
    // removed where it is now; the old place is left alone.
    let moved = admin.and_then(|a| repair_moved(repo, path, a));
    let old_place = path;
    let path = moved.as_deref().unwrap_or(path);
    if let Some(now) = &moved {
        out.notes.push(format!(
            "the worktree `{}` had been moved to `{}` by a plain `mv`: qw told git where it is (`git worktree repair`) and saved and removed it from there",
            old_place.display(),
            now.display()
        ));
        out.warnings.extend(remade(old_place));
    }
    // A git dir that is gone (`git worktree remove` by someone else) holds nothing to
    // save: what was committed is on the branch, the rest went with it.
    if let Some(admin) = admin.filter(|a| a.symlink_metadata().is_ok()) {
        let t = tree::Tree::new(path, admin, branch);
        // qw's first git in a worktree left behind: nothing git would block on left.
        tree::defuse_special(path);
        // A merge or rebase its agent left half done: kept as it is, nothing committed
        // (the conflict markers are not the task's work; a rebase's progress is there).
        if let Ok(Some(why)) = tree::unfinished(&t, spec) {
            out.warnings.push(format!(
                "kept the worktree `{}` (not removed, nothing of it saved on branch `{branch}`): {why}",
                path.display()
            ));
            out.unfinished = Some(why);
            out.kept_branch = repo
                .branch_exists(branch)
                .unwrap_or(true)
                .then(|| branch.to_owned());
            return out;
        }
        match tree::capture(repo, &t, spec, salvage, target) {
            Ok(c) => out.strays = c.strays,
            Err(e) => {
                let fix = blame::cause(repo, Some(admin), &[branch])
                    .unwrap_or_else(|| "save it by hand".to_owned());
                out.warnings.push(format!(
                    "kept the worktree `{}`: its work could not be saved on branch `{branch}` ({e}); {fix}, then run `qw worktrees --prune`",
                    path.display()
                ));
                return out;
            }
        }
        // A repository or worktree the agent nested in it would go with it, or a
        // submodule's repository in its git dir holding commits found nowhere else: kept.
        let survey = nested::survey(repo, &t, path, target);
        if let Some(line) = survey
            .kept
            .or_else(|| nested::modules_at_risk(repo, admin, path, branch))
        {
            out.warnings.push(line);
            // Checked out there, so not deleted; named as kept when it holds unmerged work.
            let unmerged = repo.unmerged_commits(branch, target).unwrap_or(1) > 0;
            out.kept_branch = (keep_branch || unmerged).then(|| branch.to_owned());
            return out;
        }
        out.notes.extend(survey.note);
        // New files git ignores only by a rule outside the project's `.gitignore` files
        // (`info/exclude`, `core.excludesFile`): not saved, and removing the worktree
        // would delete them (rev6b G16): kept, named.
        // The copies of the user's Claude Code files (`copies`) are qw's, not new files.
        let mut ignores = repo.qw_ignores(spec);
        ignores.extend(copies::ignore_patterns(admin));
        if let Some(line) = tree::keep_ignored(&t, &ignores) {
            out.warnings.push(line);
            let unmerged = repo.unmerged_commits(branch, target).unwrap_or(1) > 0;
            out.kept_branch = (keep_branch || unmerged).then(|| branch.to_owned());
            return out;
        }
        if let Some(lines) = keep_remade(repo, &t, spec) {
            out.warnings.extend(lines);
            return finish(repo, out, branch, target, keep_branch, Some(admin));
        }
        out.notes.extend(copies::changed_line(path, admin));
    } else if admin.is_some() {
        // Its worktree was deleted under it (`git worktree remove` by its agent): what
        // its branch holds now is what the worktree committed, the task's own work.
        let _ = owned::record(repo, branch);
    }
    out.warnings.extend(tree::remove_tree(repo, path, admin));
    finish(repo, out, branch, target, keep_branch, admin)
}

/// The end of [`remove_one`], its worktree gone: delete the branch if merged into
/// `target` and not `keep_branch`, else name it as kept.
fn finish(
    repo: &Repo,
    mut out: Removed,
    branch: &str,
    target: &str,
    keep_branch: bool,
    admin: Option<&Path>,
) -> Removed {
    let kept = (|| -> Result<Option<String>> {
        if !repo.branch_exists(branch)? {
            return Ok(None);
        }
        if !keep_branch && repo.unmerged_commits(branch, target)? == 0 {
            git(&repo.top, &["branch", "-D", branch])?;
            owned::forget(repo, branch);
            Ok(None)
        } else {
            Ok(Some(branch.to_owned()))
        }
    })();
    match kept {
        Ok(k) => out.kept_branch = k,
        Err(e) => out
            .warnings
            .push(match blame::cause(repo, admin, &[branch]) {
                Some(c) => format!(
                    "kept branch `{branch}` (not deleted though merged): {c} (git said: {})",
                    blame::said(&e)
                ),
                None => format!("kept branch `{branch}`: {e}"),
            }),
    }
    out
}

/// When the task worktree whose git dir is `admin` is not at `path` (gone, or a
/// directory made again there) but was moved by a plain `mv` beside it: git is told
/// where it is now (`git worktree repair`), and that place is returned.
fn repair_moved(repo: &Repo, path: &Path, admin: &Path) -> Option<PathBuf> {
    if tree::sound(path, admin) {
        return None;
    }
    let now = lost::moved_by_mv(path, admin)?;
    let out = git_output(
        &repo.top,
        ["worktree".as_ref(), "repair".as_ref(), now.as_os_str()],
        &[],
    )
    .ok()?;
    out.status.success().then_some(now)
}

/// A wiped worktree (its directory made again, its `.git` gone, the index's files
/// missing) holding files: they were not saved (not the task's work), so the directory is
/// not deleted — only git's record of the worktree (its git dir). The lines saying so;
/// `None` when it is not such a worktree (remove it as usual).
fn keep_remade(repo: &Repo, t: &tree::Tree<'_>, spec: &str) -> Option<Vec<String>> {
    let path = t.path();
    if path.symlink_metadata().is_err() || !tree::wiped(t, &repo.spec_rel(spec)) {
        return None;
    }
    let line = remade(path)?;
    let admin = t.admin();
    lost::remember_reflog(admin);
    let mut out = Vec::new();
    if let Err(e) = crate::fs::remove_dir_all(admin) {
        out.push(format!(
            "could not remove `{}` ({e}); `git worktree prune` will",
            admin.display()
        ));
    }
    out.push(line);
    Some(out)
}

/// A directory at `path` that is not the worktree (made again there after the
/// worktree was moved or deleted) holding files: one line saying qw leaves it as it is
/// (rev3 M4: its files are nobody's qw knows, never deleted).
fn remade(path: &Path) -> Option<String> {
    let files = path.is_dir() && tree::holds_files(path).unwrap_or(true);
    files.then(|| {
        format!(
            "a directory made again at `{}` holds files qw did not save (they are not the worktree's): qw left it as it is, look through it",
            path.display()
        )
    })
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn same_path(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// `preferred` if nothing is there (or only empty folders, which are cleared), else the
/// first free `preferred~2`, `~3`, …: a directory left behind because it could not be
/// removed (its work saved) or something of the user's is never touched.
fn free_path(preferred: &Path) -> Result<PathBuf> {
    let name = preferred
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..=20 {
        let p = if n == 1 {
            preferred.to_path_buf()
        } else {
            preferred.with_file_name(format!("{name}~{n}"))
        };
        if p.symlink_metadata().is_err() {
            return Ok(p);
        }
        if !tree::holds_files(&p)? {
            crate::fs::remove_dir_all(&p)?;
            return Ok(p);
        }
    }
    Err(WorktreeError::InTheWay(preferred.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_branch_names_are_read_as_branches_and_nothing_else_is_touched() {
        assert_eq!(qualified("main"), "refs/heads/main");
        assert_eq!(qualified("qw/demo/2"), "refs/heads/qw/demo/2");
        assert_eq!(
            qualified("qw/demo/2@abc1234"),
            "refs/heads/qw/demo/2@abc1234"
        );
        for same in [
            "refs/heads/main",
            "refs/tags/v1",
            "HEAD",
            "MERGE_HEAD",
            "0123456789abcdef0123456789abcdef01234567",
            "abc1234",
            "abc1234^1",
            "main~2",
            "HEAD@{1}",
            "a..b",
            "main:src/x.rs",
            "",
        ] {
            assert_eq!(qualified(same), same);
        }
        assert_eq!(branch_name("refs/heads/main").as_deref(), Some("main"));
        assert_eq!(
            branch_name("refs/heads/heads/main").as_deref(),
            Some("heads/main")
        );
        assert_eq!(branch_name("refs/tags/main"), None);
        assert_eq!(branch_name("refs/heads/"), None);
    }

    #[test]
    fn tips_of_many_branches_answer_as_commit_of_each() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@l")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@l")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&["branch", "qw/demo/1"]);
        git(&["commit", "-q", "--allow-empty", "-m", "two"]);
        git(&["branch", "qw/demo/2"]);
        git(&["branch", "qw/demo/2@abc1234", "qw/demo/1"]);
        let repo = Repo::discover(&Project::at(dir.path())).unwrap().unwrap();
        let asked: Vec<String> = [
            "qw/demo/1",
            "gone",
            "qw/demo/2",
            "qw/demo/2@abc1234",
            "main",
        ]
        .map(str::to_owned)
        .to_vec();
        let one_by_one: Vec<(String, String)> = asked
            .iter()
            .filter_map(|b| {
                let c = repo.commit_of(&format!("refs/heads/{b}")).unwrap()?;
                Some((b.clone(), c))
            })
            .collect();
        assert_eq!(one_by_one.len(), 4, "{one_by_one:?}");
        assert_eq!(repo.tips_of(&asked).unwrap(), one_by_one);
        assert!(repo.tips_of(&Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn git_stdin_in_takes_and_gives_more_than_a_pipe_holds() {
        // `git stripspace` gives back what it read (no blank or trailing space here):
        // more than a pipe holds, each way.
        let dir = tempfile::tempdir().unwrap();
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let out = git_stdin_in(dir.path(), &[], &["stripspace"], input.clone()).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), input.len());
        assert!(out.stdout == input);
    }

    #[test]
    fn parses_worktree_list_porcelain() {
        let text = "worktree /repo\nHEAD 1111\nbranch refs/heads/main\n\nworktree /repo.qw-worktrees/demo-2.1\nHEAD 2222\nbranch refs/heads/qw/demo/2.1\nlocked qw: held\n\nworktree /gone\nHEAD 3333\ndetached\nprunable gitdir file points to non-existent location\nlocked\n\n";
        let w = parse_worktree_list(text);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].branch.as_deref(), Some("main"));
        assert_eq!(w[1].path, PathBuf::from("/repo.qw-worktrees/demo-2.1"));
        assert_eq!(w[1].branch.as_deref(), Some("qw/demo/2.1"));
        assert_eq!(w[1].locked.as_deref(), Some("qw: held"));
        assert!(!w[1].locked_by_user());
        assert!(!w[1].prunable);
        assert_eq!(w[2].branch, None);
        assert!(w[2].prunable);
        assert!(
            w[2].locked_by_user(),
            "a lock without qw's reason is the user's"
        );
        assert_eq!(w[2].head.as_deref(), Some("3333"));
        // No trailing blank line: the last block still counts.
        assert_eq!(parse_worktree_list("worktree /a\nHEAD 1\nbare").len(), 1);
        assert!(parse_worktree_list("").is_empty());
    }

    #[test]
    fn git_reason_is_the_fatal_line_or_the_whole_text() {
        let ident = "Committer identity unknown\n\n*** Please tell me who you are.\n\nRun\n\n  git config --global user.email \"you@example.com\"\n\nfatal: no email was given and auto-detection is disabled\n";
        assert_eq!(
            git_reason(ident),
            "no email was given and auto-detection is disabled"
        );
        assert_eq!(git_reason("error: one\n  two\n"), "error: one two");
    }

    #[test]
    fn parses_refused_merge_paths() {
        let stderr = "error: Your local changes to the following files would be overwritten by merge:\n\tsrc/a.rs\n\tdocs/b c.md\nPlease commit your changes or stash them before you merge.\nAborting\n";
        assert_eq!(parse_refused_paths(stderr), vec!["src/a.rs", "docs/b c.md"]);
        // merge-ort's own check of the index, indented with two spaces.
        let ort = "error: Your local changes to the following files would be overwritten by merge:\n  beta/t3.txt\nMerge with strategy ort failed.\n";
        assert_eq!(parse_refused_paths(ort), vec!["beta/t3.txt"]);
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
    fn branches_and_directories_name_spec_and_task() {
        assert_eq!(parse_branch("qw/demo/2.1"), Some(("demo", "2.1")));
        assert_eq!(task_branch("demo", "2.1"), "qw/demo/2.1");
        assert_eq!(parse_branch("qw/demo"), None);
        assert_eq!(parse_branch("feature/x/y"), None);
        assert_eq!(parse_branch("qw/a/b/c"), None);
        assert_eq!(parse_dir_name("user-auth-2.1"), Some(("user-auth", "2.1")));
        assert_eq!(parse_dir_name("demo-3"), Some(("demo", "3")));
        assert_eq!(parse_dir_name("nodash"), None);
    }

    #[test]
    fn free_path_steps_around_what_is_in_the_way() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("demo-1");
        assert_eq!(free_path(&p).unwrap(), p);
        crate::fs::create_dir_all(p.join("empty/dirs")).unwrap();
        assert_eq!(free_path(&p).unwrap(), p, "empty folders are cleared");
        assert!(!p.exists());
        crate::fs::create_dir_all(&p).unwrap();
        crate::fs::write(p.join("kept.txt"), "x").unwrap();
        assert_eq!(free_path(&p).unwrap(), d.path().join("demo-1~2"));
        assert!(p.join("kept.txt").is_file(), "files are never removed");
    }
}
