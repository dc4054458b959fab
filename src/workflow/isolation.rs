//! Where each implementation task works: its own git worktree (`--isolate worktree`) or
//! the project's tree (`none`), plus the environment that tells it so (`QW_WORKTREE`,
//! `QW_TASK_PORT`).
//!
//! Decided once per run, before anything is written ([`plan`]); the git side lives in
//! [`crate::worktree`]. Per task: [`TaskSpace::enter`] before the first attempt,
//! [`TaskSpace::integrate`] after an attempt whose agent and `_Verify:_` passed (commit
//! on the task's branch, merge into the integration branch under one lock, in the order
//! tasks complete — which is dependency order, since dependents start only after their
//! dependencies completed), [`TaskSpace::leave`] once the task's attempts are over.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

use super::reporter::Events;
use super::{Isolation, Options, WorkflowError};
use crate::agent::TaskJob;
use crate::agent::outcome::{AgentRun, Outcome};
use crate::project::Project;
use crate::worktree::{MergeOutcome, Repo, WorktreeHandle, Worktrees};

/// What [`plan`] found, before anything is written.
#[derive(Debug)]
pub(crate) struct Plan {
    repo: Repo,
    integration: String,
    dirty: Vec<String>,
}

/// Why task worktrees cannot be used here (exit 2; nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// `--isolate worktree` outside a git repository.
    #[error("--isolate worktree needs git, but `{}` is not inside a git repository", root.display())]
    NotARepository {
        /// The project root.
        root: PathBuf,
    },
    /// git is missing or failed while looking at the repository.
    #[error(transparent)]
    Git(crate::worktree::WorktreeError),
    /// HEAD is detached: no branch to merge task branches into.
    #[error("task worktrees need a branch to merge into, but HEAD in `{}` is detached", top.display())]
    DetachedHead {
        /// The repository's top directory.
        top: PathBuf,
    },
    /// The branch has no commit to start task worktrees from.
    #[error(
        "task worktrees start from the last commit, but branch `{branch}` in `{}` has no commit yet",
        top.display()
    )]
    NoCommit {
        /// The branch.
        branch: String,
        /// The repository's top directory.
        top: PathBuf,
    },
    /// git has no identity to commit with.
    #[error("qw commits each task's work, but git cannot make commits here: {why}")]
    NoIdentity {
        /// What git said.
        why: String,
    },
    /// Uncommitted changes, without `--allow-dirty`.
    #[error(
        "the working tree `{}` has uncommitted changes ({}); qw merges task branches into `{integration}` and never risks uncommitted work",
        top.display(),
        listed(paths)
    )]
    Dirty {
        /// The repository's top directory.
        top: PathBuf,
        /// The changed paths.
        paths: Vec<String>,
        /// The branch tasks are merged into.
        integration: String,
        /// The spec (names the snapshot branch in the hint).
        spec: String,
    },
}

/// The first five paths, and how many more.
fn listed(paths: &[String]) -> String {
    let shown: Vec<&str> = paths.iter().take(5).map(String::as_str).collect();
    let more = if paths.len() > 5 {
        format!(" and {} more", paths.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

impl crate::exit::UserError for IsolationError {
    fn exit_code(&self) -> i32 {
        crate::exit::USAGE
    }

    fn hints(&self) -> Vec<String> {
        vec![match self {
            IsolationError::NotARepository { .. } => "run `git init && git add -A && git commit -m init` first, or use `--isolate none` (every task in the project's own tree)".into(),
            IsolationError::Git(_) => "install git, or use `--isolate none`".into(),
            IsolationError::DetachedHead { .. } => {
                "check a branch out (`git switch -c work`), or use `--isolate none`".into()
            }
            IsolationError::NoCommit { .. } => {
                "commit once (`git add -A && git commit -m init`), or use `--isolate none`".into()
            }
            IsolationError::NoIdentity { .. } => "set `git config user.name` and `git config user.email`, or use `--isolate none`".into(),
            IsolationError::Dirty { spec, .. } => format!(
                "commit or stash them, or pass --allow-dirty (qw first saves them on branch `qw/{spec}/snapshot-<time>` and tasks start from the last commit), or use `--isolate none`"
            ),
        }]
    }
}

/// Decide the isolation of this run. Refusals (exit 2) come before any write: worktrees
/// asked for outside git, no commit or branch to start from, no git identity, a dirty
/// tree without `--allow-dirty`.
pub(crate) fn plan(
    project: &Project,
    spec: &str,
    options: &Options,
) -> Result<Option<Plan>, WorkflowError> {
    let wanted = match options.isolate {
        Isolation::None => return Ok(None),
        Isolation::Worktree => true,
        Isolation::Auto => options.parallel > 1,
    };
    if !wanted {
        return Ok(None);
    }
    let explicit = options.isolate == Isolation::Worktree;
    let repo = match Repo::discover(project) {
        Ok(Some(r)) => r,
        Ok(None) if !explicit => return Ok(None),
        Err(crate::worktree::WorktreeError::NoGit) if !explicit => return Ok(None),
        Ok(None) => {
            return Err(IsolationError::NotARepository {
                root: project.root().to_path_buf(),
            }
            .into());
        }
        Err(e) => return Err(IsolationError::Git(e).into()),
    };
    let Some(integration) = repo.current_branch()? else {
        return Err(IsolationError::DetachedHead {
            top: repo.top().to_path_buf(),
        }
        .into());
    };
    if repo.commit_of("HEAD")?.is_none() {
        return Err(IsolationError::NoCommit {
            branch: integration,
            top: repo.top().to_path_buf(),
        }
        .into());
    }
    if let Some(why) = repo.identity_error() {
        return Err(IsolationError::NoIdentity { why }.into());
    }
    let dirty = repo.dirty_paths()?;
    if !dirty.is_empty() && !options.allow_dirty {
        return Err(IsolationError::Dirty {
            top: repo.top().to_path_buf(),
            paths: dirty,
            integration,
            spec: spec.to_owned(),
        }
        .into());
    }
    Ok(Some(Plan {
        repo,
        integration,
        dirty,
    }))
}

/// Per-run bookkeeping of where tasks work.
#[derive(Debug)]
pub(crate) struct TaskSpace {
    worktrees: Option<Worktrees>,
    root: PathBuf,
    spec: String,
    /// Ports handed out in this run (never twice).
    ports: Mutex<HashSet<u16>>,
    /// The worktree of each task that is between `enter` and `leave`.
    active: Mutex<HashMap<String, WorktreeHandle>>,
}

impl TaskSpace {
    /// Every task in the project's tree.
    pub(crate) fn shared(project: &Project, spec: &str) -> TaskSpace {
        TaskSpace {
            worktrees: None,
            root: project.root().to_path_buf(),
            spec: spec.to_owned(),
            ports: Mutex::new(HashSet::new()),
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Start worktree isolation (the workflow lock is held): exclude qw's runtime files
    /// from git, snapshot a dirty tree (`--allow-dirty`), and clear leftovers of this
    /// spec that hold nothing unmerged (a killed run's merged tasks).
    pub(crate) fn start(
        project: &Project,
        spec: &str,
        plan: Option<Plan>,
        events: &Events<'_>,
    ) -> Result<TaskSpace, WorkflowError> {
        let mut space = TaskSpace::shared(project, spec);
        let Some(plan) = plan else {
            return Ok(space);
        };
        plan.repo.ensure_excludes()?;
        if !plan.dirty.is_empty()
            && let Some(branch) = plan.repo.snapshot_dirty(spec)?
        {
            events.note(format!(
                    "--allow-dirty: saved the uncommitted changes on branch `{branch}` (the working tree is untouched); tasks start from the last commit of `{}`",
                    plan.integration
                ))?;
        }
        for e in crate::worktree::list(&plan.repo, Some(spec))? {
            // A worktree or branch of a task that was merged before qw was killed.
            let snapshot = e.task.starts_with("snapshot-");
            if !snapshot && e.unmerged_commits == 0 && !e.uncommitted_changes {
                let wts = Worktrees::new(plan.repo.clone(), spec, &plan.integration);
                let h = WorktreeHandle {
                    task_id: e.task.clone(),
                    workdir: PathBuf::new(),
                    path: e.path.clone().unwrap_or_default(),
                    branch: e.branch.clone(),
                    resumed: false,
                };
                wts.remove(&h, "qw: leftover")?;
            }
        }
        events.note(format!(
                "each task works in its own git worktree under `.claude/worktrees/` and is merged into `{}` when it succeeds",
                plan.integration
            ))?;
        space.worktrees = Some(Worktrees::new(plan.repo, spec, &plan.integration));
        Ok(space)
    }

    /// Where a task works and the environment saying so. Creates (or reuses) its
    /// worktree in worktree mode.
    pub(crate) fn enter(
        &self,
        task_id: &str,
        events: &Events<'_>,
    ) -> Result<(PathBuf, Vec<(OsString, OsString)>), WorkflowError> {
        let workdir = match &self.worktrees {
            Some(w) => {
                let h = w.create(task_id)?;
                if h.resumed {
                    events.note(format!(
                            "task {task_id}: resuming the unmerged work on branch `{}` left by an earlier run",
                            h.branch
                        ))?;
                }
                let dir = h.workdir.clone();
                lock(&self.active).insert(task_id.to_owned(), h);
                dir
            }
            None => self.root.clone(),
        };
        let mut env: Vec<(OsString, OsString)> =
            vec![("QW_WORKTREE".into(), workdir.clone().into_os_string())];
        if let Some(port) = self.reserve_port() {
            env.push(("QW_TASK_PORT".into(), port.to_string().into()));
        }
        Ok((workdir, env))
    }

    /// A free loopback port no other task of this run got.
    fn reserve_port(&self) -> Option<u16> {
        let mut used = lock(&self.ports);
        for _ in 0..50 {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .ok()?
                .port();
            if used.insert(port) {
                return Some(port);
            }
        }
        None
    }

    /// After an attempt whose agent and verify passed: commit the task's changes on its
    /// branch and merge it into the integration branch. A conflict turns the run into
    /// `merge_conflict` (not retried; the branch is kept).
    pub(crate) fn integrate(&self, task: &TaskJob, r: &mut AgentRun) -> Result<(), WorkflowError> {
        let Some(w) = &self.worktrees else {
            return Ok(());
        };
        let Some(h) = lock(&self.active).get(&task.id).cloned() else {
            return Ok(());
        };
        let subject = format!(
            "qw({}): task {} {} — succeeded",
            self.spec, task.id, task.title
        );
        w.commit_all(&h, &subject)?;
        let message = format!(
            "qw({}): merge task {} {} (succeeded)",
            self.spec, task.id, task.title
        );
        match w.merge_into_integration(&h, &message)? {
            MergeOutcome::Merged | MergeOutcome::UpToDate => {}
            MergeOutcome::Conflict { paths, why } => {
                r.outcome = Outcome::MergeConflict { paths };
                r.evidence = why;
            }
        }
        Ok(())
    }

    /// The task's attempts are over: remove its worktree. Anything uncommitted is first
    /// committed on its branch (message names the outcome); the branch is deleted when
    /// merged, kept (and reported) when it holds unmerged work.
    pub(crate) fn leave(
        &self,
        task: &TaskJob,
        r: &AgentRun,
        events: &Events<'_>,
    ) -> Result<(), WorkflowError> {
        let Some(w) = &self.worktrees else {
            return Ok(());
        };
        let Some(h) = lock(&self.active).remove(&task.id) else {
            return Ok(());
        };
        let salvage = format!(
            "qw({}): task {} {} — {} (work in progress, not merged)",
            self.spec,
            task.id,
            task.title,
            r.outcome.as_str()
        );
        if let Some(branch) = w.remove(&h, &salvage)? {
            events.note(format!(
                "task {}: its unmerged work is kept on branch `{branch}`",
                task.id
            ))?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
