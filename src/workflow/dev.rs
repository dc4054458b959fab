//! What dev-mode flags change while a workflow runs (`development_mode.*`), kept out of
//! the driver so each effect is one small function with its own test.
//!
//! Owns: `auto_backup` (a state backup before each phase). Must not: read the settings
//! file (the flags arrive typed) or decide limits (that is `cli::resolve`).

use std::path::PathBuf;

use crate::state::{Phase, StateError, StateStore};

/// `auto_backup`: back up the state before `phase` of `spec` starts, as
/// `pre_<spec>_<phase>_<time>.json`. Nothing when the flag is off or there is no state
/// yet. A failed backup is a warning: the workflow goes on (the backup at its start,
/// `pre_workflow_…`, was taken without the flag).
pub(crate) fn backup_before_phase(
    store: &StateStore,
    auto_backup: bool,
    spec: &str,
    phase: &Phase,
) -> Option<PathBuf> {
    if !auto_backup {
        return None;
    }
    match store.backup_before(&format!("{spec}_{phase}")) {
        Ok(path) => {
            if let Some(p) = &path {
                tracing::info!(spec, phase = %phase, backup = %p.display(), "auto_backup: state backed up before the phase");
            }
            path
        }
        Err(e) => {
            warn(&e, spec, phase);
            None
        }
    }
}

fn warn(e: &StateError, spec: &str, phase: &Phase) {
    tracing::warn!(
        "auto_backup: could not back up the state before phase {phase} of `{spec}`: {e}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    #[test]
    fn auto_backup_backs_up_before_a_phase_only_when_on() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        let store = StateStore::new(&project);
        // No state yet: nothing to back up, whatever the flag.
        assert!(backup_before_phase(&store, true, "demo", &Phase::DesignCreation).is_none());
        store.update(|_| ()).unwrap();
        assert!(backup_before_phase(&store, false, "demo", &Phase::DesignCreation).is_none());
        let p = backup_before_phase(&store, true, "demo", &Phase::DesignCreation).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("pre_demo_design_creation_"), "{name}");
        assert!(p.is_file());
    }
}
