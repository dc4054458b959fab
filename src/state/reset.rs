//! `workflow-reset` (CONTRACT §5): the pure state changes of a soft or hard reset, and
//! the file work of a hard reset (copy the spec folder to backups — regular files, folders
//! and symlinks only, never opening a FIFO or device — remove generated
//! documents). The state is always backed up first.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::StateError;
use super::backup::{stamp, unique_path};
use super::schema::{Phase, Spec, TaskStatus, UnifiedState};
use super::store::StateStore;
use super::timestamp::Timestamp;
use crate::names::{NameKind, validate};

/// Soft: task states and phase only (refused, changing nothing, when every task is
/// completed: [`StateError::NothingToReset`]). Hard: generated documents too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResetMode {
    /// Tasks `in_progress/failed/blocked` → `pending`, phase after the last completed one;
    /// no unfinished task keeps an outcome or session to resume.
    Soft,
    /// Folder copied to backups, `design.md`, `tasks.md` and reports removed, back to design.
    Hard,
}

/// What a reset changed in the state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct StateChanges {
    /// Tasks set back to pending (soft) or removed (hard).
    pub tasks: Vec<String>,
    /// Errors of this spec removed from `errors`.
    pub errors_cleared: usize,
    /// The spec's phase afterwards.
    pub phase: String,
}

/// What a reset did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ResetReport {
    /// The spec.
    pub spec: String,
    /// Soft or hard.
    pub mode: ResetMode,
    /// The state backup made first (`None` if there was no state file yet).
    pub state_backup: Option<PathBuf>,
    /// Hard: the copy of the spec folder.
    pub workflow_backup: Option<PathBuf>,
    /// Hard: the generated documents removed.
    pub removed_files: Vec<PathBuf>,
    /// Hard: entries of the spec folder not copied to the backup because they are not
    /// regular files, folders or symlinks (a FIFO, a socket, a device): reading one could
    /// block forever while the state lock is held.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<PathBuf>,
    /// The state changes.
    pub changes: StateChanges,
}

/// The phase a soft reset returns a spec to: the one after its last completed phase (in
/// workflow order), or `requirements_generation` when none completed.
pub(crate) fn phase_after_completed(spec: &Spec) -> Phase {
    spec.completed_phases
        .iter()
        .filter_map(|c| c.phase.index())
        .max()
        .and_then(|i| Phase::ALL.get(i))
        .and_then(Phase::next)
        .unwrap_or(Phase::RequirementsGeneration)
}

fn clear_errors(state: &mut UnifiedState, spec: &str) -> usize {
    let before = state.errors.len();
    state.errors.retain(|e| !e.concerns_spec(spec));
    before - state.errors.len()
}

/// Keep `workflow.global_phase` true after a reset of `name`: when the workflow is on
/// that spec (or on none), it points at it, in the spec's new phase.
fn sync_global_phase(state: &mut UnifiedState, name: &str) {
    let on_this = state
        .workflow
        .current_spec
        .as_deref()
        .is_none_or(|s| s == name);
    if let Some(spec) = state.specifications.get(name)
        && on_this
    {
        state.workflow.current_spec = Some(name.to_owned());
        state.workflow.global_phase = spec.current_phase.clone();
    }
}

fn drop_active(state: &mut UnifiedState, ids: &[String]) {
    state.agents.active_tasks.retain(|t| !ids.contains(t));
}

/// Soft reset of `name` in `state`. `None` if the state has no such spec.
pub(crate) fn soft_reset(state: &mut UnifiedState, name: &str) -> Option<StateChanges> {
    let spec = state.specifications.get_mut(name)?;
    let mut reset = Vec::new();
    let mut were_running = Vec::new();
    for (id, task) in &mut spec.tasks {
        if task.status != TaskStatus::Completed {
            // A reset starts the task over: nothing may resume its old session.
            task.outcome = None;
            task.session_id = None;
            task.run_id = None;
        }
        let resettable = matches!(
            task.status,
            TaskStatus::InProgress | TaskStatus::Failed | TaskStatus::Blocked
        );
        if !resettable {
            continue;
        }
        if task.status == TaskStatus::InProgress {
            were_running.push(id.clone());
        }
        task.status = TaskStatus::Pending;
        task.error = None;
        task.started_at = None;
        task.completed_at = None;
        task.duration_seconds = None;
        task.outcome = None;
        task.attempts = 0;
        reset.push(id.clone());
    }
    let total = spec.tasks.len();
    if total > 0 {
        let done = spec
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Completed)
            .count();
        #[allow(clippy::cast_precision_loss)]
        let pct = done as f64 * 100.0 / total as f64;
        spec.progress_percentage = pct;
    }
    spec.current_phase = phase_after_completed(spec);
    let phase = spec.current_phase.to_string();
    drop_active(state, &were_running);
    sync_global_phase(state, name);
    let errors_cleared = clear_errors(state, name);
    Some(StateChanges {
        tasks: reset,
        errors_cleared,
        phase,
    })
}

/// Hard reset of `name` in `state`: tasks cleared, phases from design on forgotten, phase
/// `design_creation`. A spec missing from the state is added in that phase.
pub(crate) fn hard_reset(state: &mut UnifiedState, name: &str) -> StateChanges {
    let spec = state
        .specifications
        .entry(name.to_owned())
        .or_insert_with(|| Spec {
            name: name.to_owned(),
            created_at: Some(Timestamp::now()),
            ..Spec::default()
        });
    let were_running: Vec<String> = spec
        .tasks
        .iter()
        .filter(|(_, t)| t.status == TaskStatus::InProgress)
        .map(|(id, _)| id.clone())
        .collect();
    let removed: Vec<String> = spec.tasks.keys().cloned().collect();
    spec.tasks.clear();
    let design = Phase::DesignCreation.index().unwrap_or(usize::MAX);
    spec.completed_phases
        .retain(|c| c.phase.index().is_some_and(|i| i < design));
    spec.current_phase = Phase::DesignCreation;
    spec.progress_percentage = 0.0;
    drop_active(state, &were_running);
    sync_global_phase(state, name);
    let errors_cleared = clear_errors(state, name);
    StateChanges {
        tasks: removed,
        errors_cleared,
        phase: Phase::DesignCreation.to_string(),
    }
}

/// True for the documents a hard reset removes: `design.md`, `tasks.md`, `*report*.md`.
pub(crate) fn is_generated(file_name: &str) -> bool {
    let lower = file_name.to_ascii_lowercase();
    lower == "design.md"
        || lower == "tasks.md"
        || (lower.ends_with(".md") && lower.contains("report") && lower != "requirements.md")
}

/// Reset spec `name` of the store's project. Validates the name before touching anything.
pub(crate) fn reset(
    store: &StateStore,
    name: &str,
    mode: ResetMode,
) -> Result<ResetReport, StateError> {
    validate(NameKind::Spec, name)?;
    let project = store.project();
    let spec_dir = project.spec_dir(name);
    let lock = store.lock()?;
    let mut state = store.load_locked(&lock)?;
    let in_state = state.specifications.contains_key(name);
    if !in_state && !spec_dir.is_dir() {
        return Err(StateError::SpecNotFound {
            name: name.to_owned(),
            dir: spec_dir,
        });
    }
    if mode == ResetMode::Soft
        && let Some(spec) = state.specifications.get(name)
        && !spec.tasks.is_empty()
        && spec
            .tasks
            .values()
            .all(|t| t.status == TaskStatus::Completed)
    {
        return Err(StateError::NothingToReset {
            name: name.to_owned(),
            tasks: spec.tasks.len(),
        });
    }
    let state_backup = store.backup_locked(&lock, None, &format!("pre_reset_{name}"))?;
    let mut workflow_backup = None;
    let mut removed_files = Vec::new();
    let mut skipped_files = Vec::new();
    let changes = match mode {
        ResetMode::Soft => soft_reset(&mut state, name).unwrap_or_else(|| StateChanges {
            phase: "(not in state)".into(),
            ..StateChanges::default()
        }),
        ResetMode::Hard => {
            if spec_dir.is_dir() {
                let root = project.workflow_backups_dir();
                // Never through a link at `backups` or `backups/workflows`.
                crate::fs::NoFollowDir::create(
                    &project.claude_dir(),
                    Path::new("backups/workflows"),
                )?;
                let dest = unique_path(&root, &format!("{name}_{}", stamp()), "");
                copy_dir(&spec_dir, &dest, &mut skipped_files)?;
                crate::fs::sync_dir(&root)?;
                workflow_backup = Some(dest);
                removed_files = remove_generated(&spec_dir)?;
            }
            hard_reset(&mut state, name)
        }
    };
    if in_state || mode == ResetMode::Hard {
        store.write_locked(&lock, &mut state)?;
    }
    Ok(ResetReport {
        spec: name.to_owned(),
        mode,
        state_backup,
        workflow_backup,
        removed_files,
        skipped_files,
        changes,
    })
}

fn remove_generated(dir: &Path) -> Result<Vec<PathBuf>, StateError> {
    let mut removed = Vec::new();
    let mut entries: Vec<_> = crate::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs_err::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && is_generated(&name) {
            crate::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        crate::fs::sync_dir(dir)?;
    }
    Ok(removed)
}

/// Copy a folder recursively, files fsynced; symlinks are copied as links (never followed,
/// so a link cannot pull files from outside the spec into the backup). Anything else (a
/// FIFO, a socket, a device, or a file swapped for one while we copy) is never opened
/// for reading — that could block forever — and is listed in `skipped`.
fn copy_dir(src: &Path, dst: &Path, skipped: &mut Vec<PathBuf>) -> Result<(), StateError> {
    crate::fs::create_dir_all(dst)?;
    for entry in crate::fs::read_dir(src)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &to, skipped)?;
        } else if kind.is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| crate::fs::with_path(e, "create symlink", &to))?;
        } else if !kind.is_file() {
            skipped.push(entry.path());
        } else {
            match crate::fs::copy_regular(&entry.path(), &to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    skipped.push(entry.path());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    crate::fs::sync_dir(dst)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::state::schema::{CompletedPhase, Task};

    fn state() -> UnifiedState {
        let mut s = UnifiedState::new();
        let mut spec = Spec {
            name: "a".into(),
            current_phase: Phase::Implementation,
            ..Spec::default()
        };
        for (id, st) in [
            ("1", TaskStatus::Completed),
            ("2", TaskStatus::Failed),
            ("3", TaskStatus::InProgress),
            ("4", TaskStatus::Blocked),
            ("5", TaskStatus::Pending),
        ] {
            spec.tasks.insert(
                id.into(),
                Task {
                    id: id.into(),
                    status: st,
                    error: Some("x".into()),
                    attempts: 2,
                    outcome: Some("killed_by_user".into()),
                    session_id: Some(format!("session-{id}")),
                    run_id: Some(format!("run-{id}")),
                    ..Task::default()
                },
            );
        }
        for ph in [
            Phase::RequirementsGeneration,
            Phase::TaskGeneration,
            Phase::DesignCreation,
        ] {
            spec.completed_phases.push(CompletedPhase {
                phase: ph,
                ..CompletedPhase::default()
            });
        }
        s.specifications.insert("a".into(), spec);
        s.agents.active_tasks = vec!["3".into()];
        s.record_error("exec", "boom", serde_json::json!({"spec": "a"}));
        s.record_error("exec", "other", serde_json::json!({"spec": "b"}));
        s
    }

    #[test]
    fn soft_reset_pends_unfinished_tasks_and_steps_phase() {
        let mut s = state();
        let c = soft_reset(&mut s, "a").unwrap();
        assert_eq!(c.tasks, vec!["2", "3", "4"]);
        assert_eq!(c.errors_cleared, 1);
        let spec = &s.specifications["a"];
        assert_eq!(spec.current_phase, Phase::Implementation);
        assert_eq!(spec.tasks["1"].status, TaskStatus::Completed);
        assert_eq!(
            spec.tasks["1"].error.as_deref(),
            Some("x"),
            "completed untouched"
        );
        for id in ["2", "3", "4", "5"] {
            assert_eq!(spec.tasks[id].status, TaskStatus::Pending);
        }
        assert_eq!(spec.tasks["2"].attempts, 0);
        // Nothing unfinished keeps what a continue would resume, pending ones included.
        for id in ["2", "3", "4", "5"] {
            assert_eq!(spec.tasks[id].outcome, None, "{id}");
            assert_eq!(spec.tasks[id].session_id, None, "{id}");
            assert_eq!(spec.tasks[id].run_id, None, "{id}");
        }
        assert_eq!(spec.tasks["1"].session_id.as_deref(), Some("session-1"));
        assert!(s.agents.active_tasks.is_empty());
        assert_eq!(s.errors.len(), 1);
        assert!(soft_reset(&mut s, "zzz").is_none());
    }

    #[test]
    fn hard_reset_returns_to_design() {
        let mut s = state();
        let c = hard_reset(&mut s, "a");
        assert_eq!(c.tasks.len(), 5);
        let spec = &s.specifications["a"];
        assert!(spec.tasks.is_empty());
        assert_eq!(spec.current_phase, Phase::DesignCreation);
        assert_eq!(spec.completed_phases.len(), 1);
        assert_eq!(
            spec.completed_phases[0].phase,
            Phase::RequirementsGeneration
        );
        assert_eq!(s.workflow.current_spec.as_deref(), Some("a"));
        assert_eq!(s.workflow.global_phase, Phase::DesignCreation);
    }

    #[test]
    fn reset_moves_the_global_phase_only_when_the_workflow_is_on_that_spec() {
        let mut s = state();
        s.workflow.current_spec = Some("a".into());
        s.workflow.global_phase = Phase::Complete;
        soft_reset(&mut s, "a").unwrap();
        assert_eq!(s.workflow.global_phase, Phase::Implementation);
        let mut s = state();
        s.workflow.current_spec = Some("other".into());
        s.workflow.global_phase = Phase::Validation;
        hard_reset(&mut s, "a");
        assert_eq!(s.workflow.current_spec.as_deref(), Some("other"));
        assert_eq!(s.workflow.global_phase, Phase::Validation);
    }

    #[test]
    fn generated_documents() {
        for n in [
            "design.md",
            "tasks.md",
            "report.md",
            "completion_report.md",
            "REPORT.md",
        ] {
            assert!(is_generated(n), "{n}");
        }
        for n in ["requirements.md", "notes.md", "report.txt", "design.md.bak"] {
            assert!(!is_generated(n), "{n}");
        }
    }
}
