//! Where a project lives and where qw keeps its files inside `.claude/`.
//!
//! Only paths are computed here; no file is read or written.

use std::path::{Path, PathBuf};

/// A project: a directory that holds (or will hold) `.claude/`.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
}

/// The git dir a linked worktree's `.git` file points to (`gitdir: X`, relative to the
/// worktree when not absolute).
fn linked_git_dir(top: &Path) -> Option<PathBuf> {
    // Never a FIFO or a device an agent put there: a regular file, bounded.
    let text = crate::fs::read_regular_text(&top.join(".git"), 64 * 1024).ok()?;
    let dir = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    (!dir.is_empty()).then(|| top.join(dir))
}

/// When `start` is inside a qw task worktree: the same path under the repository's main
/// worktree (see [`Project::discover`]). `None` anywhere else.
fn in_main_worktree(start: &Path) -> Option<PathBuf> {
    // The worktree's top: the nearest ancestor holding `.git` (a file in a linked one).
    let top = start
        .ancestors()
        .find(|d| d.join(".git").symlink_metadata().is_ok());
    let from_git = top.and_then(|top| {
        let admin = linked_git_dir(top)?;
        // Only qw's task worktrees: their git dir holds qw's marker.
        if !admin.join(crate::worktree::TASK_MARKER).is_file() {
            return None;
        }
        let common = crate::fs::read_regular_text(&admin.join("commondir"), 64 * 1024).ok()?;
        let common = admin.join(common.trim());
        let common = std::fs::canonicalize(common).ok()?;
        // A non-bare repository: its common dir is the main worktree's `.git`.
        if common.file_name()? != ".git" {
            return None;
        }
        let main = common.parent()?.to_path_buf();
        Some((top.to_path_buf(), main))
    });
    let (top, main) = from_git.or_else(|| {
        // The agent replaced or deleted its worktree's `.git`: the environment qw gave it.
        let wt = PathBuf::from(std::env::var_os("QW_WORKTREE")?);
        let project = PathBuf::from(std::env::var_os("QW_PROJECT")?);
        (wt.is_absolute() && project.is_absolute() && start.starts_with(&wt))
            .then_some((wt, project))
    })?;
    let rel = start.strip_prefix(&top).ok()?;
    let mapped = main.join(rel);
    (main.is_dir() && main != top).then_some(mapped)
}

impl Project {
    /// Use `dir` as the project root as it is.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Project { root: dir.into() }
    }

    /// The nearest ancestor of `start` (inclusive) that holds `.claude/`, not looking
    /// above the top of the git repository `start` is in (a directory holding `.git`),
    /// else `start`. Above the repository is not the project: `$HOME` holds Claude
    /// Code's own `~/.claude/`, and `qw init` in a new repository under it wrote qw's
    /// commands and settings there (rev9 N13).
    ///
    /// Inside a qw task worktree (`<repo>.qw-worktrees/<spec>-<task>/…`, whose git dir
    /// holds qw's marker) the project is the workflow's: the same place under the
    /// repository's main worktree. A task's agent running `qw suggest`, `qw exec` or
    /// `qw status` there — or a user who `cd`s into it — acts on the project, not on the
    /// worktree's own copy of `.claude/` (which qw would then refuse or drop at the merge).
    /// Found from the worktree's `.git` file (gitdir → commondir); when the agent broke
    /// that, from `QW_WORKTREE`/`QW_PROJECT` in the environment qw gave it.
    pub fn discover(start: &Path) -> Self {
        let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
        let start = in_main_worktree(&start).unwrap_or(start);
        let mut found = None;
        for dir in start.ancestors() {
            if dir.join(".claude").is_dir() {
                found = Some(dir.to_path_buf());
                break;
            }
            if dir.join(".git").symlink_metadata().is_ok() {
                break;
            }
        }
        Project {
            root: found.unwrap_or(start),
        }
    }

    /// True when `.claude/` exists, i.e. this is a qw/Claude Code project.
    pub fn exists(&self) -> bool {
        self.claude_dir().is_dir()
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `.claude/`
    pub fn claude_dir(&self) -> PathBuf {
        self.root.join(".claude")
    }
    /// `.claude/unified_state.json`
    pub fn state_file(&self) -> PathBuf {
        self.claude_dir().join("unified_state.json")
    }
    /// `.claude/unified_state.json.lock`, the cross-process write lock.
    pub fn state_lock_file(&self) -> PathBuf {
        self.claude_dir().join("unified_state.json.lock")
    }
    /// `.claude/backups/state/`
    pub fn state_backups_dir(&self) -> PathBuf {
        self.claude_dir().join("backups").join("state")
    }
    /// `.claude/backups/workflows/`
    pub fn workflow_backups_dir(&self) -> PathBuf {
        self.claude_dir().join("backups").join("workflows")
    }
    /// `.claude/settings.local.json`
    pub fn settings_file(&self) -> PathBuf {
        self.claude_dir().join("settings.local.json")
    }
    /// `.claude/specs/`
    pub fn specs_dir(&self) -> PathBuf {
        self.claude_dir().join("specs")
    }
    /// `.claude/specs/NAME/` (the name must already be validated).
    pub fn spec_dir(&self, name: &str) -> PathBuf {
        self.specs_dir().join(name)
    }
    /// `.claude/steering/`
    pub fn steering_dir(&self) -> PathBuf {
        self.claude_dir().join("steering")
    }
    /// `.claude/commands/` (Claude Code slash commands).
    pub fn commands_dir(&self) -> PathBuf {
        self.claude_dir().join("commands")
    }
    /// `.claude/logs/`
    pub fn logs_dir(&self) -> PathBuf {
        self.claude_dir().join("logs")
    }
    /// `.claude/runs/` (one folder per agent run, with captured output).
    pub fn runs_dir(&self) -> PathBuf {
        self.claude_dir().join("runs")
    }
    /// `.claude/worktrees/`: where task worktrees went before they moved out of `.claude/`
    /// (Claude Code guards paths there). Still searched and pruned; nothing new goes there
    /// — see `worktree::root` for where task worktrees live now.
    pub fn legacy_worktrees_dir(&self) -> PathBuf {
        self.claude_dir().join("worktrees")
    }
    /// `.claude/runs/.NAME.workflow.lock`: held (flock) while a workflow of the spec
    /// runs; its worktrees are held through it.
    pub fn workflow_lock_file(&self, name: &str) -> PathBuf {
        self.runs_dir().join(spec_file(name, WORKFLOW_LOCK_SUFFIX))
    }
    /// `.claude/runs/.state-restore.lock`: held by `qw state-backup --restore` from before
    /// it looks for running workflows until the state is restored. Every workflow start
    /// takes it for a moment, before its own workflow lock, so a workflow — of any spec,
    /// also one that never ran and so has no workflow lock file yet — never starts in the
    /// middle of a restore, and a restore always sees the workflows that started before it.
    pub fn restore_lock_file(&self) -> PathBuf {
        self.runs_dir().join(RESTORE_LOCK)
    }
    /// `.claude/runs/.NAME.checks.json`: a workflow run's record of the spec's `_Verify:_`
    /// checks (`workflow::checks`).
    pub fn checks_record_file(&self, name: &str) -> PathBuf {
        self.runs_dir().join(spec_file(name, CHECKS_SUFFIX))
    }
    /// Whether `name`, an entry of `.claude/runs/`, is one of qw's own files beside the
    /// run folders, as [`Project::workflow_lock_file`], [`Project::restore_lock_file`] and
    /// [`Project::checks_record_file`] name them (the run pruner leaves them alone and
    /// does not call them foreign).
    pub fn is_own_runs_file(name: &str) -> bool {
        name == RESTORE_LOCK
            || (name.starts_with('.')
                && [WORKFLOW_LOCK_SUFFIX, CHECKS_SUFFIX]
                    .iter()
                    .any(|suffix| name.ends_with(suffix)))
    }

    /// The folders qw keeps its own files in, relative to `.claude/`: each must be a real
    /// directory, never a symbolic link (a repository can commit one pointing anywhere), so
    /// qw never reads, writes or deletes outside the project through one. `.claude/`
    /// itself may be a link the user made (a dotfiles repository). `worktrees` is the
    /// old place of task worktrees: `qw worktrees --prune` still searches it and deletes
    /// the empty folders it finds there.
    pub const OWN_DIRS: [&'static str; 8] = [
        "logs",
        "runs",
        "backups",
        "backups/state",
        "backups/workflows",
        "slurm",
        "slurm/owners",
        "worktrees",
    ];

    /// `.claude/next_command.txt`
    pub fn next_command_file(&self) -> PathBuf {
        self.claude_dir().join("next_command.txt")
    }
    /// `.claude/next_command.failed.txt`
    pub fn next_command_failed_file(&self) -> PathBuf {
        self.claude_dir().join("next_command.failed.txt")
    }
}

#[cfg(test)]
impl Project {
    /// A project in `dir/proj` whose `.claude/runs` is a link to an empty `dir/victim`
    /// (returned): for tests that qw never writes through it.
    pub(crate) fn with_linked_runs(dir: &Path) -> (Project, PathBuf) {
        let victim = dir.join("victim");
        crate::fs::create_dir_all(&victim).unwrap();
        let root = dir.join("proj");
        crate::fs::create_dir_all(root.join(".claude")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join(".claude/runs")).unwrap();
        (Project::at(root), victim)
    }
}

/// The names of qw's own files in `.claude/runs/` (see [`Project::is_own_runs_file`]).
const WORKFLOW_LOCK_SUFFIX: &str = ".workflow.lock";
const CHECKS_SUFFIX: &str = ".checks.json";
const RESTORE_LOCK: &str = ".state-restore.lock";

/// `.<spec><suffix>`: a dot-file of one spec's in `.claude/runs/`.
fn spec_file(spec: &str, suffix: &str) -> String {
    format!(".{spec}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_qw_names_in_runs_are_its_own_and_a_run_folder_is_not() {
        let p = Project::at("/p");
        for path in [
            p.workflow_lock_file("demo"),
            p.restore_lock_file(),
            p.checks_record_file("demo"),
            p.checks_record_file("a.b-c"),
        ] {
            assert_eq!(path.parent(), Some(p.runs_dir().as_path()));
            let name = path.file_name().unwrap().to_str().unwrap();
            assert!(Project::is_own_runs_file(name), "{name}");
        }
        for name in [
            "20261203T141100000-demo-task-1-a1-0f0f0f",
            "demo.workflow.lock",
            "notes.txt",
            ".demo.checks.json.tmp",
        ] {
            assert!(!Project::is_own_runs_file(name), "{name}");
        }
    }

    #[test]
    fn discovers_nearest_ancestor_with_claude_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        let deep = root.join("a").join("b");
        crate::fs::create_dir_all(root.join(".claude")).unwrap();
        crate::fs::create_dir_all(&deep).unwrap();
        assert_eq!(Project::discover(&deep).root(), root);
        let other = dir.path().join("elsewhere");
        crate::fs::create_dir_all(&other).unwrap();
        assert_eq!(Project::discover(&other).root(), other);
        // A repository under a directory holding `.claude/` (like `$HOME`): its own.
        let repo = dir.path().join("proj").join("a").join("repo");
        crate::fs::create_dir_all(repo.join(".git")).unwrap();
        crate::fs::create_dir_all(repo.join("src")).unwrap();
        assert_eq!(
            Project::discover(&repo.join("src")).root(),
            repo.join("src")
        );
        assert_eq!(Project::discover(&repo).root(), repo);
    }
}
