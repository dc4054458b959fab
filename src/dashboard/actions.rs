//! The dashboard's only state-changing operations, run as `qw` child processes so they are
//! validated, locked and recorded exactly as on the command line.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::names::{NameError, NameKind, validate};

/// A state-changing operation the page may ask for (with `--allow-actions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `qw state-backup`
    Backup,
    /// `qw workflow-reset SPEC --yes` (soft).
    SoftReset {
        /// A validated spec name.
        spec: String,
    },
}

impl Action {
    /// A soft reset of `spec`, refusing names that are not valid spec names.
    pub(crate) fn soft_reset(spec: &str) -> Result<Action, NameError> {
        validate(NameKind::Spec, spec)?;
        Ok(Action::SoftReset {
            spec: spec.to_owned(),
        })
    }

    /// The `qw` arguments after `-C PROJECT`.
    pub(crate) fn args(&self) -> Vec<String> {
        match self {
            Action::Backup => vec!["state-backup".to_owned()],
            Action::SoftReset { spec } => {
                vec![
                    "workflow-reset".to_owned(),
                    spec.clone(),
                    "--yes".to_owned(),
                ]
            }
        }
    }
}

/// What a finished action printed and how it exited.
#[derive(Debug)]
pub(crate) struct ActionOutput {
    /// The command line, for display.
    pub command: String,
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `qw_exe -C project ARGS…` to completion (blocking).
pub(crate) fn run(qw_exe: &Path, project: &Path, action: &Action) -> std::io::Result<ActionOutput> {
    let args = action.args();
    let out = Command::new(qw_exe)
        .arg("-C")
        .arg(project)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| crate::fs::with_path(e, "run", qw_exe))?;
    Ok(ActionOutput {
        command: format!("qw -C {} {}", project.display(), args.join(" ")),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_validates_the_spec_name_first() {
        assert!(Action::soft_reset("../etc").is_err());
        assert!(Action::soft_reset("a b").is_err());
        assert_eq!(
            Action::soft_reset("user-auth").unwrap().args(),
            ["workflow-reset", "user-auth", "--yes"]
        );
    }
}
