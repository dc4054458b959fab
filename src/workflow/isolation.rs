//! Where each implementation task works: its own git worktree (`--isolate worktree`) or
//! the project's tree (`none`), plus the environment that tells it so (`QW_WORKTREE`,
//! `QW_TASK_PORT`).
//!
//! Decided once per run, before anything is written ([`plan`]); the git side lives in
//! [`crate::worktree`]. Per task: [`TaskSpace::enter`] before the first attempt,
//! [`TaskSpace::after_agent`] after each agent run (its worktree deleted, work left in
//! the stash: `workspace_error` naming where the work is),
//! [`TaskSpace::integrate`] after an attempt whose agent and `_Verify:_` passed (save
//! what the worktree holds on the task's branch, merge it into the integration branch
//! under the repository lock, in the order tasks complete — which is dependency order,
//! since dependents start only after their dependencies completed), [`TaskSpace::leave`]
//! once the task's attempts are over.
//!
//! A failure of qw's own git step is the task outcome `workspace_error` (with the step,
//! git's message and a hint), never `agent_error`, and never retried as if the agent had
//! failed; the task's work stays on its branch. Removing a worktree never fails a task:
//! what cannot be removed is said and left, its work saved.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

use super::events::{EventKind, Refused, Unit};
use super::reporter::Events;
use super::{Isolation, Options, WorkflowError};
use crate::agent::TaskJob;
use crate::agent::outcome::{AgentRun, Outcome, WorkspaceStep};
use crate::exec::Cancel;
use crate::project::Project;
use crate::worktree::root::Why;
use crate::worktree::{
    MergeOutcome, PendingMerge, Repo, Step, StepError, WorktreeError, WorktreeHandle, Worktrees,
};

/// What [`plan`] found, before anything is written.
#[derive(Debug)]
pub(crate) struct Plan {
    repo: Repo,
    integration: String,
    dirty: Vec<String>,
    /// Where an earlier run that refused a move of the target left it (its record).
    refused: Option<crate::worktree::RefusedMove>,
    /// What was repaired before anything else (qw's own half-done merge undone), told
    /// when the run's events exist.
    notes: Vec<String>,
}

/// Hold the repository-wide lock of `spec` for a run that uses task worktrees (`plan`
/// is `Some`): task worktrees, `qw/<spec>/` branches and qw's records of them belong to
/// the repository, so the same spec running in another checkout of it would take over
/// this run's worktrees (rev6b G12). Refused (`Busy`) while another qw holds it.
pub(crate) fn hold_repository(
    plan: Option<&Plan>,
    spec: &str,
) -> Result<Option<crate::fs::LockedFile>, WorkflowError> {
    let Some(p) = plan else {
        return Ok(None);
    };
    let note = format!(
        "workflow `{spec}` in the checkout `{}`, onto `{}`",
        p.repo.top().display(),
        p.integration
    );
    match crate::worktree::hold_workflow_repo(&p.repo, spec, &note)? {
        Some(lock) => Ok(Some(lock)),
        None => {
            let lock = crate::worktree::workflow_repo_lock(&p.repo, spec);
            Err(WorkflowError::Busy {
                spec: spec.to_owned(),
                holder: Box::new(
                    crate::fs::LockedFile::probe(&lock)
                        .ok()
                        .flatten()
                        .unwrap_or_else(crate::fs::Holder::unknown),
                ),
                lock,
            })
        }
    }
}

/// Why task worktrees cannot be used here (exit 2; nothing was written).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IsolationError {
    /// `--isolate worktree` outside a git repository.
    #[error("--isolate worktree needs git, but `{}` is not inside a git repository", root.display())]
    NotARepository {
        /// The project root.
        root: PathBuf,
    },
    /// git is missing or failed while looking at the repository.
    #[error(transparent)]
    Git(crate::worktree::WorktreeError),
    /// Where task worktrees go cannot be decided (a bad `quantumwala.worktree_root`).
    #[error(transparent)]
    Placement(crate::worktree::WorktreeError),
    /// Task worktrees would go inside a `.claude/` folder.
    #[error(
        "task worktrees would go in `{}`, inside a `.claude/` folder, where Claude Code refuses to write",
        container.display()
    )]
    InsideClaude {
        /// Where they would go.
        container: PathBuf,
    },
    /// The folder task worktrees go in cannot be made or written.
    #[error("task worktrees go in `{}`, but qw cannot create it or write there", container.display())]
    NotWritable {
        /// Where they would go.
        container: PathBuf,
    },
    /// HEAD is detached: no branch to merge task branches into.
    #[error("task worktrees need a branch to merge into, but HEAD in `{}` is detached", top.display())]
    DetachedHead {
        /// The repository's top directory.
        top: PathBuf,
    },
    /// The branch checked out is named like a task branch (`qw/<spec>/<id>`) or their
    /// folder (`qw`, `qw/<spec>`): qw would take it for one of its own, or git could not
    /// make task branches beside it.
    #[error(
        "the main worktree `{}` is on branch `{branch}`, named like one of qw's task branches or their folders (`qw/<spec>/<id>`): qw would take it for a task's own, or git could not make the task branches beside it, so qw cannot merge tasks into it",
        top.display()
    )]
    TaskBranchTarget {
        /// The branch.
        branch: String,
        /// The branch the main worktree was on before (its HEAD reflog), if known.
        back: Option<String>,
        /// The repository's top directory.
        top: PathBuf,
    },
    /// A branch of the user's is where qw's branches go (`qw`, `qw/<spec>`, `qw-kept`):
    /// git could make no task branch (or keep branch) beside it.
    #[error(
        "branch `{branch}` in `{}` is in the way of qw's branches: git cannot make `{blocked}` beside it",
        top.display()
    )]
    BranchInTheWay {
        /// The user's branch.
        branch: String,
        /// A branch of qw's it blocks.
        blocked: String,
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
    /// Staged changes in the main worktree, with or without `--allow-dirty`: git merges
    /// only while the index matches the last commit, and qw never changes the index.
    /// The line names them and the commands that settle them.
    #[error("{line}, then run again")]
    Staged {
        /// The line.
        line: String,
    },
    /// The main worktree stayed unusable (another git's `index.lock`, an operation the
    /// user left half done) for as long as qw waits before starting any agent.
    #[error(
        "{line}, for longer than qw waits ({secs} s, `{}`): qw did not start workflow `{spec}` (no agent ran)",
        crate::worktree::MAIN_WAIT_ENV
    )]
    MainBusy {
        /// What is in the way, and where.
        line: String,
        /// What ends it.
        hint: String,
        /// How long qw waited.
        secs: u64,
        /// The spec.
        spec: String,
    },
    /// The main worktree holds the merge a killed qw left, changed since git left it
    /// (the user's resolution): qw does not abort it.
    #[error("{line}")]
    HalfMerge {
        /// The line.
        line: String,
    },
    /// An earlier run refused a move of the target branch, and it is not put back.
    #[error("{line}")]
    TargetMoved {
        /// The line, with what puts it back and the record to delete instead.
        line: String,
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
        if matches!(
            self,
            IsolationError::Staged { .. }
                | IsolationError::TargetMoved { .. }
                | IsolationError::HalfMerge { .. }
        ) {
            // One line: what to do is in it.
            return Vec::new();
        }
        vec![match self {
            IsolationError::NotARepository { .. } => "run `git init && git add -A && git commit -m init` first, or use `--isolate none` (every task in the project's own tree)".into(),
            IsolationError::Git(_) => "install git, or use `--isolate none`".into(),
            IsolationError::Placement(_) => "set `quantumwala.worktree_root` in `.claude/settings.local.json` to a writable directory outside `.claude/`, or use `--isolate none`".into(),
            IsolationError::InsideClaude { .. } => "set `quantumwala.worktree_root` to a directory outside `.claude/` (or remove it to use the default beside the repository)".into(),
            IsolationError::NotWritable { .. } => "set `quantumwala.worktree_root` in `.claude/settings.local.json` to a writable directory, or use `--isolate none`".into(),
            IsolationError::DetachedHead { .. } => {
                "check a branch out (`git switch -c work`), or use `--isolate none`".into()
            }
            IsolationError::TaskBranchTarget { back: Some(b), .. } => format!(
                "switch back to the branch you merge the tasks into (`git switch {}`), or use `--isolate none`",
                shell_words::quote(b)
            ),
            IsolationError::TaskBranchTarget { back: None, .. } => {
                "check out another branch to merge the tasks into (`git switch -c work`), or use `--isolate none`".into()
            }
            IsolationError::BranchInTheWay { branch, .. } => format!(
                "rename it (`git branch -m {} <new name>`), then run again; or use `--isolate none`",
                shell_words::quote(branch)
            ),
            IsolationError::NoCommit { .. } => {
                "commit once (`git add -A && git commit -m init`), or use `--isolate none`".into()
            }
            IsolationError::NoIdentity { .. } => "set `git config user.name` and `git config user.email`, or use `--isolate none`".into(),
            IsolationError::Dirty { spec, .. } => format!(
                "commit or stash them, or pass --allow-dirty (qw first saves them on branch `qw/{spec}/snapshot-<time>` and tasks start from the last commit), or use `--isolate none`"
            ),
            IsolationError::MainBusy { hint, .. } => hint.clone(),
            IsolationError::Staged { .. }
            | IsolationError::TargetMoved { .. }
            | IsolationError::HalfMerge { .. } => String::new(),
        }]
    }
}

/// Decide the isolation of this run. Refusals (exit 2) come before any write: worktrees
/// asked for outside git, no commit or branch to start from, no git identity, a dirty
/// tree without `--allow-dirty`, no usable place for the worktrees, the main worktree
/// still unusable after the wait (`index.lock`, an operation the user left half done).
/// `repair` false (a dry run): nothing repaired, nothing waited for.
pub(crate) fn plan(
    project: &Project,
    spec: &str,
    options: &Options,
    repair: bool,
    cancel: &Cancel,
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
        Err(WorktreeError::NoGit) if !explicit => return Ok(None),
        Ok(None) => {
            return Err(IsolationError::NotARepository {
                root: project.root().to_path_buf(),
            }
            .into());
        }
        Err(e @ WorktreeError::Placement(_)) => return Err(IsolationError::Placement(e).into()),
        Err(e) => return Err(IsolationError::Git(e).into()),
    };
    let container = repo.container();
    if container
        .components()
        .any(|c| c.as_os_str() == std::ffi::OsStr::new(".claude"))
    {
        return Err(IsolationError::InsideClaude {
            container: container.to_path_buf(),
        }
        .into());
    }
    if !crate::worktree::root::writable(container) {
        return Err(IsolationError::NotWritable {
            container: container.to_path_buf(),
        }
        .into());
    }
    // Another git's `index.lock`, or a merge/rebase/… the user left half done: waited
    // for before any agent starts, not found at the first merge after every agent ran
    // (rev7 R8). Before the checks below, which would read a rebase's detached HEAD or a
    // merge's staged paths as the user's. Before the run's events exist: said as a
    // warning, like every wait here.
    if let Some(o) = crate::worktree::usable::wait_at_start(&repo, spec, repair, cancel, &|m| {
        tracing::warn!("{m}");
    })?
    .filter(|_| repair)
    {
        return Err(IsolationError::MainBusy {
            line: o.line,
            hint: o.hint,
            secs: crate::worktree::main_wait_limit().as_secs(),
            spec: spec.to_owned(),
        }
        .into());
    }
    // An earlier run refused a move of the target: not again until it is put back.
    let refused = still_moved(&repo, spec)?;
    let Some(integration) = repo.current_branch()? else {
        return Err(IsolationError::DetachedHead {
            top: repo.top().to_path_buf(),
        }
        .into());
    };
    // `qw`, `qw/<spec>` or `qw/<spec>/<id>`: git cannot hold task branches beside it.
    if crate::worktree::parse_branch(&integration).is_some()
        || integration == "qw"
        || integration.starts_with("qw/")
    {
        return Err(IsolationError::TaskBranchTarget {
            back: repo.branch_before_task_branch(),
            branch: integration,
            top: repo.top().to_path_buf(),
        }
        .into());
    }
    if let Some((branch, blocked)) = repo.branch_in_the_way(spec) {
        return Err(IsolationError::BranchInTheWay {
            branch,
            blocked,
            top: repo.top().to_path_buf(),
        }
        .into());
    }
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
    // Not in the middle of another qw's merge (which would look like dirt).
    let settled = crate::worktree::lock::acquire_existing(
        &repo.lock_path(),
        &format!("qw workflow `{spec}`: checking the working tree"),
        None,
        // Before the run's events exist: said like every other lock wait (a warning).
        &|m| tracing::warn!("{m}"),
    )?;
    // A killed qw's own merge left half done (its conflict staged): undone here, under
    // the lock every qw merges under, before it could look like the user's changes; the
    // task's saved branch is merged again (`worktree/pending.rs`). Not on a dry run.
    // Only a merge whose record the state vouches for (rev8b F5: the record alone is any
    // agent's to write), and only while it is exactly as git left it.
    let mut notes = Vec::new();
    if repair && settled.is_some() {
        use crate::worktree::pending::HalfMerge;
        let state = crate::state::StateStore::new(project).load().ok();
        let vouched = |p: &crate::worktree::pending::Pending| {
            let own = crate::worktree::task_branch(&p.spec, &p.task_id);
            state
                .as_ref()
                .and_then(|s| s.specifications.get(&p.spec))
                .and_then(|s| s.tasks.get(&p.task_id))
                .and_then(|t| t.merge_pending.as_ref())
                .is_some_and(|m| m.branch == own && p.branch == own && m.tip == p.tip)
        };
        match crate::worktree::pending::abort_own_half_merge(&repo, &vouched)? {
            Some(HalfMerge::Aborted(line)) => notes.push(line),
            Some(HalfMerge::Kept(line)) => return Err(IsolationError::HalfMerge { line }.into()),
            None => {}
        }
    }
    let staged = repo.staged_paths()?;
    let dirty = repo.dirty_paths()?;
    drop(settled);
    if !staged.is_empty() {
        return Err(IsolationError::Staged {
            line: repo.staged_line(
                &staged,
                &format!(
                    "qw did not start workflow `{spec}` (even --allow-dirty cannot take them)"
                ),
            ),
        }
        .into());
    }
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
        refused,
        notes,
    }))
}

/// The record of a refused move of `spec`'s target, when the branch is put back (or
/// taken as it is, by deleting the record); [`IsolationError::TargetMoved`] while it is
/// still moved.
fn still_moved(
    repo: &Repo,
    spec: &str,
) -> Result<Option<crate::worktree::RefusedMove>, WorkflowError> {
    let Some(refused) = crate::worktree::refused_move(repo, spec)
        .map_err(|line| IsolationError::TargetMoved { line })?
    else {
        return Ok(None);
    };
    let _settled = crate::worktree::lock::acquire_existing(
        &repo.lock_path(),
        &format!("qw workflow `{spec}`: checking the target branch"),
        None,
        &|m| tracing::warn!("{m}"),
    )?;
    let w = Worktrees::new(repo.clone(), spec, &refused.integration);
    w.resume_from(&refused);
    match w.check_target()? {
        None => Ok(Some(refused)),
        Some(m) => Err(IsolationError::TargetMoved {
            line: format!(
                "{}; qw refused it in an earlier run and merges nothing into it until it is put back: {}, then run `{}` again, or delete `{}` to take the branch as it is",
                m.why,
                m.fix,
                crate::worktree::continue_cmd(spec),
                refused.file.display()
            ),
        }
        .into()),
    }
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
    /// The tasks whose branch the target held all of when the run started (before the
    /// merged leftovers were cleared).
    merged_at_start: HashSet<String>,
    /// The tasks whose checked work an earlier run saved with only the merge missing
    /// (`worktree/pending.rs`): the record, and (once [`TaskSpace::keep_vouched`] kept
    /// it) the check the state says the work passed.
    pending_at_start: HashMap<String, (PendingMerge, Option<String>)>,
    /// Shared tree only: where the user's checkout was before each running task's agent
    /// (`worktree/shared.rs`).
    marks: Mutex<HashMap<String, crate::worktree::shared::Mark>>,
    /// Shared tree only: the line of the first agent that switched or reset the user's
    /// branch; no task starts after it.
    broken: Mutex<Option<String>>,
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
            merged_at_start: HashSet::new(),
            pending_at_start: HashMap::new(),
            marks: Mutex::new(HashMap::new()),
            broken: Mutex::new(None),
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
        cancel: &Cancel,
    ) -> Result<TaskSpace, WorkflowError> {
        let mut space = TaskSpace::shared(project, spec);
        let Some(plan) = plan else {
            return Ok(space);
        };
        let note = |m: &str| say(events, m.to_owned());
        for n in &plan.notes {
            note(n);
        }
        let wts =
            Worktrees::new(plan.repo.clone(), spec, &plan.integration).with_cancel(cancel.clone());
        if let Some(refused) = &plan.refused {
            // Checked against where the refused run left it (the leftovers' clearing does).
            wts.resume_from(refused);
        }
        {
            let _g = plan.repo.lock(
                &format!("qw workflow `{spec}`: starting"),
                Some(cancel),
                &note,
            )?;
            plan.repo.ensure_excludes()?;
            // From here the shared config, hooks and `info/` are the user's.
            wts.watch_shared();
            if !plan.dirty.is_empty()
                && let Some(branch) = plan.repo.snapshot_dirty(spec)?
            {
                wts.keep_snapshot(&branch);
                note(&format!(
                    "--allow-dirty: saved the uncommitted changes on branch `{branch}` (the working tree is untouched); tasks start from the last commit of `{}`",
                    plan.integration
                ));
            }
        }
        space.merged_at_start = wts.merged_task_ids().into_iter().collect();
        space.pending_at_start = wts
            .pending_merges()
            .into_iter()
            .map(|p| (p.task_id.clone(), (p, None)))
            .collect();
        // Worktrees and branches of tasks merged before qw was killed.
        for m in wts.clear_merged_leftovers(&note) {
            note(&m);
        }
        let placement = plan.repo.placement();
        let why = match &placement.why {
            Why::Beside => "beside the repository".to_owned(),
            Why::Setting => "set by `quantumwala.worktree_root`".to_owned(),
            Why::CacheFallback { parent } => format!(
                "in your cache directory, because `{}` is not writable",
                parent.display()
            ),
        };
        note(&format!(
            "each task works in its own git worktree in `{}` ({why}) and is merged into `{}` when it succeeds",
            placement.container.display(),
            plan.integration
        ));
        space.worktrees = Some(wts);
        Ok(space)
    }

    /// The branch of `task_id`, when it is merged into the target already (the user
    /// merged it by hand after its merge conflict, as qw advised); `None` when it is
    /// not, or not in worktree mode.
    pub(crate) fn merged_by_hand(&self, task_id: &str) -> Option<String> {
        let w = self.worktrees.as_ref()?;
        if self.merged_at_start.contains(task_id) {
            return Some(crate::worktree::task_branch(&self.spec, task_id));
        }
        w.merged_branch(task_id)
    }

    /// The branch of `task_id` when an earlier run saved its checked work and merged it,
    /// but was stopped before recording that (`worktree/pending.rs`).
    pub(crate) fn merged_not_recorded(&self, task_id: &str) -> Option<String> {
        self.worktrees.as_ref()?;
        match self.pending_at_start.get(task_id) {
            Some((p, _)) if p.merged => Some(p.branch.clone()),
            _ => None,
        }
    }

    /// The branch of `task_id` when an earlier run saved its checked work there and only
    /// its merge is missing, with the `_Verify:_` command that work passed: the task is
    /// merged, its agent not run again (unless its check changed since: the caller).
    pub(crate) fn merge_pending(&self, task_id: &str) -> Option<(String, Option<String>)> {
        self.worktrees.as_ref()?;
        match self.pending_at_start.get(task_id) {
            Some((p, check)) if !p.merged => Some((p.branch.clone(), check.clone())),
            _ => None,
        }
    }

    /// A merge-pending record is in the shared git dir, which every agent can write: it
    /// counts only when the state vouches for it ([`qw_left_pending`]: the task's entry
    /// holds the marker qw wrote before the record, naming the same branch — the task's
    /// own — and tip). Any other record is dropped (its file too) and said, and the task
    /// runs as any task does, its agent and check included (rev7 R1, rev8b F1, F4).
    pub(crate) fn keep_vouched(&mut self, in_state: Option<&crate::state::Spec>) -> Vec<String> {
        let mut told = Vec::new();
        let mut ids: Vec<String> = self.pending_at_start.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let Some((p, check)) = self.pending_at_start.get_mut(&id) else {
                continue;
            };
            let t = in_state.and_then(|s| s.tasks.get(&id));
            let own = crate::worktree::task_branch(&self.spec, &id);
            if let Some(m) = t.and_then(|t| qw_left_pending(t, &own, p)) {
                *check = m.check.clone();
                continue;
            }
            let why = match t {
                None => "the state has no entry for it".to_owned(),
                Some(t) if t.merge_pending.is_some() => format!(
                    "it names branch `{}` at {}, not what the state says qw left merge-pending",
                    p.branch,
                    short(&p.tip)
                ),
                Some(t) => match t.outcome.as_deref() {
                    Some(o) => format!(
                        "the state says its last attempt ended `{o}`, not waiting to merge"
                    ),
                    None => "the state records no attempt of it that left its merge pending (it never ran, was blocked, or its qw was stopped before it saved the work)".to_owned(),
                },
            };
            self.pending_at_start.remove(&id);
            self.forget_pending(&id);
            told.push(format!(
                "task {id}: ignored a merge-pending record for it in the git directory: {why}, so qw did not write it; the task runs with its agent and check"
            ));
        }
        told
    }

    /// `task_id` is recorded completed: its pending merge (if any) is forgotten.
    pub(crate) fn forget_pending(&self, task_id: &str) {
        if let Some(w) = &self.worktrees {
            w.forget_pending(task_id);
        }
    }

    /// The run is over: check the target once more (see
    /// [`Worktrees::check_at_end`]) and tell a move found there.
    pub(crate) fn finish(&self, events: &Events<'_>) {
        let Some(w) = &self.worktrees else { return };
        for line in w.planted_untold() {
            say(events, format!("warning: {line}"));
        }
        for line in w.config_notes(None) {
            say(events, format!("warning: while the workflow ran, {line}"));
        }
        if let Some(line) = w.check_at_end(&|m| say(events, m.to_owned())) {
            say(events, line);
        }
    }

    /// Where a task works and the environment saying so. Creates (or reuses) its
    /// worktree in worktree mode.
    pub(crate) fn enter(
        &self,
        task_id: &str,
        events: &Events<'_>,
    ) -> Result<(PathBuf, Vec<(OsString, OsString)>), WorkflowError> {
        let note = |m: &str| say(events, format!("task {task_id}: {m}"));
        let workdir = match &self.worktrees {
            Some(w) => {
                let (h, notes) = w.create(task_id, &note)?;
                for n in &notes {
                    note(n);
                }
                let dir = h.workdir.clone();
                lock(&self.active).insert(task_id.to_owned(), h);
                dir
            }
            None => {
                // The user's own checkout: refused once an agent moved its branch (the
                // next agent would build on, or commit over, the wrong history).
                if let Some(line) = lock(&self.broken).clone() {
                    return Err(WorkflowError::Git(WorktreeError::SharedTree(format!(
                        "not started: {line}"
                    ))));
                }
                if let Some(m) = crate::worktree::shared::mark(&self.root) {
                    lock(&self.marks).insert(task_id.to_owned(), m);
                }
                self.root.clone()
            }
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

    /// Shared tree: the task fails (`workspace_error`, not retried) when its agent left
    /// the user's checkout off the branch it was on, or that branch no longer holds the
    /// tip it had before the agent (`worktree/shared.rs`); no task starts after that.
    fn shared_check(&self, task: &TaskJob, r: &mut AgentRun, events: &Events<'_>) {
        let Some(before) = lock(&self.marks).get(&task.id).cloned() else {
            return;
        };
        let Some(line) = crate::worktree::shared::check(&self.root, &self.spec, &task.id, &before)
        else {
            // The next attempt is checked from where this one left the tree.
            if let Some(m) = crate::worktree::shared::mark(&self.root) {
                lock(&self.marks).insert(task.id.clone(), m);
            }
            return;
        };
        lock(&self.broken).get_or_insert_with(|| line.clone());
        if matches!(
            r.outcome,
            Outcome::KilledByUser { .. } | Outcome::UsageLimited | Outcome::BudgetExceeded { .. }
        ) {
            say(events, format!("warning: {line}"));
            r.evidence.push_str(&format!("; warning: {line}"));
        } else {
            r.outcome = Outcome::WorkspaceError {
                step: WorkspaceStep::Commit,
            };
            r.evidence = line;
        }
    }

    /// After an attempt whose agent and verify passed: save what the task's worktree
    /// holds (whatever branch or detached HEAD its agent left) on its branch and merge it
    /// into the integration branch. A conflict turns the run into `merge_conflict`, a
    /// failure of qw's git step into `workspace_error` (neither is retried; the branch
    /// is kept). Commits the agent left outside its result are named in the evidence.
    pub(crate) fn integrate(
        &self,
        task: &TaskJob,
        r: &mut AgentRun,
        events: &Events<'_>,
    ) -> Result<(), WorkflowError> {
        let Some(w) = &self.worktrees else {
            return Ok(());
        };
        let Some(h) = lock(&self.active).get(&task.id).cloned() else {
            return Ok(());
        };
        let note = |m: &str| say(events, format!("task {}: {m}", task.id));
        // Deleted after the agent ran (by its `_Verify:_`, by someone else).
        if let Some(why) = w.gone(&h) {
            say(events, why.clone());
            r.outcome = Outcome::WorkspaceError {
                step: WorkspaceStep::Commit,
            };
            r.evidence = why;
            return Ok(());
        }
        // The title on one line and cut (a 140 KB title made every commit and merge of
        // the task fail "Argument list too long", rev8a F4; a NUL cannot be an argument).
        let title = crate::fmt::one_line(&task.title, 200);
        let subject = format!("qw({}): task {} {title} — succeeded", self.spec, task.id);
        let message = format!(
            "qw({}): merge task {} {title} (succeeded)",
            self.spec, task.id
        );
        // Before the merge-pending record: the state vouches for it (a recorder failure
        // stops the run; no record is written then, and the task runs again).
        let vouch = |tip: &str| {
            events
                .emit(EventKind::MergePending {
                    task: &task.id,
                    branch: &h.branch,
                    tip,
                    check: task.verify.as_deref(),
                })
                .is_ok()
        };
        match w.integrate(&h, &subject, &message, &note, &vouch) {
            Ok(done) => {
                for s in &done.capture.strays {
                    note(s);
                }
                if !done.capture.strays.is_empty() {
                    r.evidence =
                        format!("{}; note: {}", r.evidence, done.capture.strays.join("; "));
                }
                if let MergeOutcome::Conflict { paths, why } = done.merge {
                    r.outcome = Outcome::MergeConflict { paths };
                    r.evidence = why;
                } else {
                    // Completed, with a warning: a repository its agent nested (a
                    // `git submodule add`) is not in the merge, and the task's outcome
                    // says so (qw never merges one; failing would not change that).
                    for line in w.not_merged(&h, &done.capture) {
                        note(&format!("warning: {line}"));
                        r.evidence.push_str(&format!("; warning: {line}"));
                    }
                }
            }
            // Stopped while waiting for the repository lock: an interrupt, not a failure;
            // the work stays in the worktree and is saved on its branch by `leave`.
            Err(StepError {
                source: WorktreeError::Interrupted(why, _),
                step,
            }) => {
                r.outcome = Outcome::KilledByUser { signal: None };
                r.evidence = format!(
                    "interrupted before the merge ({why}); the work is kept on branch `{}`",
                    h.branch
                );
                // Stopped at the merge (waiting for the main worktree): the work is
                // saved and checked, its record written.
                if step == Step::Merge {
                    r.merge_pending = Some(h.branch.clone());
                }
            }
            Err(e) => {
                r.outcome = Outcome::WorkspaceError {
                    step: step_of(e.step),
                };
                r.evidence = step_evidence(&e, &h.branch);
                // Refused at the merge (the main worktree busy past the wait, staged
                // changes there, the target moved, git's own refusal): saved and checked,
                // its record written: the next run only merges it (rev8b F10).
                if e.step == Step::Merge {
                    r.merge_pending = Some(h.branch.clone());
                }
            }
        }
        Ok(())
    }

    /// After the agent's run, whatever its outcome: when its worktree was deleted while
    /// it ran, or it left work in the stash, the task is a `workspace_error` (step
    /// `commit`, not retried) whose evidence says where the work is — the task's branch,
    /// `stash@{N}` and its commit — instead of a verify or a merge of what is not there.
    /// A stopped, paused or budget-refused run keeps its outcome (it runs again).
    /// A worktree the agent added of its own is named in the evidence, and so is what
    /// happened to the shared stash (entries gone, the main worktree's changes stashed;
    /// see [`Worktrees::stash_check`]); the spec link a `git stash -u` took is put back
    /// before the `_Verify:_`.
    pub(crate) fn after_agent(&self, task: &TaskJob, r: &mut AgentRun, events: &Events<'_>) {
        let Some(w) = &self.worktrees else {
            self.shared_check(task, r, events);
            return;
        };
        let Some(h) = lock(&self.active).get(&task.id).cloned() else {
            return;
        };
        // First: a FIFO named `.gitignore` would hang every git below (rev8b F11).
        for note in w.defuse(&h) {
            say(events, format!("task {}: {note}", task.id));
            r.evidence = format!("{}; note: {note}", r.evidence);
        }
        if let Some(note) = w.foreign(&h) {
            say(events, note.clone());
            r.evidence = format!("{}; note: {note}", r.evidence);
        }
        // The stash is shared: entries gone while the task ran, the main worktree's
        // changes stashed away, its own spec link taken by `git stash -u`.
        w.relink_spec(&h);
        let stash = w.stash_check(&h);
        let mut stash_notes = String::new();
        for (note, first) in stash.notes {
            if first {
                say(events, format!("warning: {note}"));
            }
            stash_notes.push_str(&format!("; warning: {note}"));
        }
        r.evidence.push_str(&stash_notes);
        // The shared config, hooks or `info/` changed while it ran (an agent's hook,
        // fsmonitor, filter driver, exclude line): undone, and not merged unchecked.
        // Told on the task's own line (its evidence), not apart.
        let planted = w.planted(&h);
        if let Some(line) = &planted {
            if r.outcome.is_success() {
                r.outcome = Outcome::WorkspaceError {
                    step: WorkspaceStep::Commit,
                };
                r.evidence = format!(
                    "{line}; the task's work is kept on branch `{}`: look at what its agent did, then run `{}`{stash_notes}",
                    h.branch,
                    crate::worktree::continue_of(&h.branch)
                );
            } else {
                r.evidence.push_str(&format!("; warning: {line}"));
            }
        }
        // A code-running key set in the global config, an include or the worktree's
        // `config.worktree` (qw's git holds it to the user's; the user's git would run
        // it): told, once, on this task's line and apart.
        for note in w.config_notes(Some(&h)) {
            let line = format!("while task {} ran, {note}", h.task_id);
            say(events, format!("warning: {line}"));
            r.evidence.push_str(&format!("; warning: {line}"));
        }
        if matches!(
            r.outcome,
            Outcome::KilledByUser { .. } | Outcome::UsageLimited | Outcome::BudgetExceeded { .. }
        ) {
            return;
        }
        // A merge or rebase left half done, or unresolved conflicts: said first (its
        // worktree is kept as it is, nothing of it saved; a stash entry a conflicted
        // `git stash pop` kept is part of it).
        let gone = w.gone(&h);
        let unfinished = gone.is_none().then(|| w.unfinished(&h)).flatten();
        // Ended at its timeout (or stalled) while it left a rebase stopped: that is its
        // outcome (CONTRACT §9), the kept worktree its note (rev6b G10); told once, on
        // the task's FAILED line.
        if let Some(why) = &unfinished
            && matches!(
                r.outcome,
                Outcome::TimedOut { .. } | Outcome::Stalled { .. }
            )
        {
            r.evidence = format!("{}; {why}", r.evidence);
            return;
        }
        let Some(why) = gone.or(unfinished).or(stash.failure) else {
            return;
        };
        r.outcome = Outcome::WorkspaceError {
            step: WorkspaceStep::Commit,
        };
        let planted = planted
            .map(|l| format!("; warning: {l}"))
            .unwrap_or_default();
        r.evidence = format!("{why}{stash_notes}{planted}");
    }

    /// The task's attempts are over: remove its worktree. What it holds is first saved
    /// on its branch (message names the outcome); the branch is deleted when merged,
    /// kept (and said) when it holds unmerged work. Never fails: what cannot be saved or
    /// removed is kept and said.
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
        let note = |m: &str| say(events, format!("task {}: {m}", task.id));
        let salvage = format!(
            "qw({}): task {} {} — {} (work in progress, not merged)",
            self.spec,
            task.id,
            task.title,
            r.outcome.as_str()
        );
        if r.outcome.is_success() {
            // Recorded completed (the recorder ran before): nothing is pending.
            w.forget_pending(&task.id);
        }
        let mut removed = w.remove(&h, &salvage, &note);
        // Kept as it is, its agent's half-done operation already told on the task's
        // FAILED line: one short line here, not the sentence again (rev6b G8).
        if let Some(why) = removed
            .unfinished
            .as_ref()
            .filter(|w| r.evidence.contains(*w))
        {
            removed.warnings.retain(|m| !m.ends_with(why.as_str()));
            note(&format!(
                "kept the worktree `{}` as it is (see above); its earlier commits stay on branch `{}`",
                h.path.display(),
                h.branch
            ));
            removed.kept_branch = None;
        }
        for m in removed.strays.iter().chain(&removed.warnings) {
            // Told once, as the run's note (a `tracing` warning too printed it twice).
            tracing::debug!("task {}: {m}", task.id);
            note(m);
        }
        for m in &removed.notes {
            note(m);
        }
        if let Some(branch) = removed.kept_branch {
            note(&format!("its unmerged work is kept on branch `{branch}`"));
        }
        Ok(())
    }
}

/// The marker of `t` when the state vouches for the merge-pending record `p`: qw wrote
/// it (before the record) for the task's own branch `own`, and the record names that
/// branch and the same tip. Nothing else vouches: not a missing outcome (a task that never
/// ran, is blocked, or whose qw an agent killed), not the words of the recorded error
/// (they quote git's messages naming what an agent chose). A task left merge-pending by a
/// qw killed before it wrote the marker runs its agent and check again: the safe side.
fn qw_left_pending<'t>(
    t: &'t crate::state::Task,
    own: &str,
    p: &PendingMerge,
) -> Option<&'t crate::state::MergePending> {
    t.merge_pending
        .as_ref()
        .filter(|m| m.branch == own && p.branch == own && m.tip == p.tip)
}

fn short(sha: &str) -> &str {
    sha.get(..10).unwrap_or(sha)
}

fn step_of(s: Step) -> WorkspaceStep {
    match s {
        Step::Prepare => WorkspaceStep::Prepare,
        Step::Commit => WorkspaceStep::Commit,
        Step::Merge => WorkspaceStep::Merge,
    }
}

/// One line: which git step of qw's failed, git's message, what to do.
fn step_evidence(e: &StepError, branch: &str) -> String {
    // Not a failure of qw's git: someone moved the target branch, staged changes in the
    // main worktree, or the task's agent left a history of its own (the message says
    // where everything is, and what to do).
    if let WorktreeError::TargetMoved(why)
    | WorktreeError::MergePending(why)
    | WorktreeError::Staged(why)
    | WorktreeError::OwnHistory(why)
    | WorktreeError::Crossed(why)
    | WorktreeError::Dropped(why)
    | WorktreeError::SharedTree(why)
    | WorktreeError::Obstructed(why) = &e.source
    {
        return why.clone();
    }
    let (what, hint) = match e.step {
        Step::Prepare => (
            "preparing the task's worktree",
            format!(
                "nothing of the task ran; fix the cause (`qw worktrees` lists what is there) and run `{}`",
                crate::worktree::continue_of(branch)
            ),
        ),
        Step::Commit => (
            "saving the task's work on its branch",
            format!(
                "the agent succeeded; its work stays in its worktree and is saved on branch `{branch}` when the task ends; fix the cause and run `{}`",
                crate::worktree::continue_of(branch)
            ),
        ),
        Step::Merge => (
            "merging the task's branch",
            format!(
                "the agent succeeded; its work is on branch `{branch}`: merge it by hand (`git merge {}`), or fix the cause and run `{}`",
                crate::worktree::quote(branch),
                crate::worktree::continue_of(branch)
            ),
        ),
    };
    format!(
        "qw's git step failed ({what}), not the agent: {}; hint: {hint}",
        crate::exit::with_hints(&e.source)
    )
}

/// A task whose worktree could not be prepared: `workspace_error` (step `prepare`),
/// or `killed_by_user` when a signal stopped the wait for the repository lock. Told as
/// an [`EventKind::AttemptNotStarted`] (attempt 0, [`Refused::Worktree`]); the recorder
/// writes it (the task `failed`, or `pending` when interrupted; the reason in the task
/// and in `errors`, component `worktree`).
pub(crate) fn prepare_failed(
    events: &Events<'_>,
    spec: &str,
    task: &crate::spec::tasks::Task,
    error: WorkflowError,
) -> Result<AgentRun, WorkflowError> {
    let e = StepError {
        step: Step::Prepare,
        source: match error {
            WorkflowError::Git(g) => g,
            other => WorktreeError::Io(std::io::Error::other(crate::exit::with_hints(&other))),
        },
    };
    let r = if matches!(e.source, WorktreeError::Interrupted(..)) {
        AgentRun::from_outcome(
            Outcome::KilledByUser { signal: None },
            format!("interrupted before the task started: {}", e.source),
        )
    } else {
        AgentRun::from_outcome(
            Outcome::WorkspaceError {
                step: WorkspaceStep::Prepare,
            },
            step_evidence(&e, &crate::worktree::task_branch(spec, &task.id)),
        )
    };
    events.emit(EventKind::AttemptNotStarted {
        unit: Unit::Task(task),
        attempt: 0,
        refused: Refused::Worktree,
        run: &r,
    })?;
    Ok(r)
}

/// Tell a note from inside a git step (a callback that cannot fail). A note changes no
/// state, so no reader fails on it.
fn say(events: &Events<'_>, message: String) {
    if let Err(e) = events.note(message) {
        tracing::warn!("a workflow note was not told: {e}");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::qw_left_pending;
    use crate::state::{MergePending, Task};
    use crate::worktree::PendingMerge;

    fn task(outcome: Option<&str>, error: &str, marker: Option<(&str, &str)>) -> Task {
        Task {
            outcome: outcome.map(str::to_owned),
            error: Some(error.to_owned()),
            merge_pending: marker.map(|(branch, tip)| MergePending {
                branch: branch.to_owned(),
                tip: tip.to_owned(),
                check: None,
            }),
            ..Task::default()
        }
    }

    fn record(branch: &str, tip: &str) -> PendingMerge {
        PendingMerge {
            task_id: "1".into(),
            branch: branch.into(),
            tip: tip.into(),
            merged: false,
        }
    }

    #[test]
    fn only_the_marker_of_the_own_branch_and_tip_vouches_for_a_pending_record() {
        let (b, tip, other) = ("qw/demo/1", "a".repeat(40), "b".repeat(40));
        let p = record(b, &tip);
        for outcome in [Some("workspace_error"), Some("killed_by_user"), None] {
            assert!(qw_left_pending(&task(outcome, "", Some((b, &tip))), b, &p).is_some());
        }
        // No outcome (never ran, blocked, qw killed by its agent) is no voucher (rev8b F1).
        assert!(qw_left_pending(&task(None, "", None), b, &p).is_none());
        // Another tip, another branch in the record or in the marker.
        assert!(qw_left_pending(&task(None, "", Some((b, &other))), b, &p).is_none());
        assert!(
            qw_left_pending(
                &task(None, "", Some(("parking", &tip))),
                b,
                &record("parking", &tip)
            )
            .is_none()
        );
        assert!(
            qw_left_pending(
                &task(None, "", Some((b, &tip))),
                b,
                &record("parking", &tip)
            )
            .is_none()
        );
        // The words the text match took: an agent's file named so no longer vouches.
        for (outcome, words) in [
            (
                "workspace_error",
                "`does not run again` in the way: its agent does not run again",
            ),
            (
                "killed_by_user",
                "a signal ended the wait for the main worktree",
            ),
            ("verify_failed", "does not run again"),
        ] {
            assert!(
                qw_left_pending(&task(Some(outcome), words, None), b, &p).is_none(),
                "{outcome}"
            );
        }
    }
}
