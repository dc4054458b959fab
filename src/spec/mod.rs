//! Specs on disk: `.claude/specs/NAME/{requirements,design,tasks}.md` and `report.md`,
//! the `tasks.md` format ([`tasks`]) and the project scaffold `qw init` writes ([`scaffold`]).
//!
//! This module reads and writes spec files only. It never runs agents and never touches
//! the unified state (the workflow records specs there).

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::names::{self, NameKind};
use crate::project::Project;

pub(crate) mod scaffold;
pub(crate) mod tasks;

pub(crate) use tasks::{TaskList, TasksError};

/// The most qw reads of a spec or steering document: far above any real one, far below
/// what would exhaust memory.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// Read a spec or steering document (`tasks.md`, `requirements.md`, …) as text. Only a
/// regular file is opened (a FIFO, a device or a symlink to one is refused without
/// blocking, see [`crate::fs::read_regular`]), at most [`MAX_DOCUMENT_BYTES`] of it, and
/// it must be UTF-8: each refusal is an error naming the file (and for bad bytes, the
/// line) for which [`crate::fs::is_refused`] is true. A link that leads out of the
/// project `root` is refused the same way ([`crate::fs::check_in_project`]): a committed
/// `requirements.md -> ~/.aws/credentials` never reaches a prompt.
pub(crate) fn read_document(root: &Path, path: &Path) -> io::Result<String> {
    crate::fs::check_in_project(root, path)?;
    crate::fs::read_regular_text(path, MAX_DOCUMENT_BYTES)
}

/// Errors creating or reading specs.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The name is not a valid spec name (nothing was created).
    #[error(transparent)]
    Name(#[from] names::NameError),
    /// The spec folder already exists.
    #[error("spec `{name}` already exists at `{path}`")]
    Exists {
        /// The spec name.
        name: String,
        /// Its folder.
        path: PathBuf,
    },
    /// The description is empty.
    #[error("the description of spec `{name}` is empty; say in a few words what the feature is")]
    EmptyDescription {
        /// The spec name.
        name: String,
    },
    /// tasks.md is invalid.
    #[error(transparent)]
    Tasks(#[from] TasksError),
    /// Reading or writing failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One spec's folder and the paths of its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    name: String,
    dir: PathBuf,
    /// The project root: documents are read only from inside it.
    root: PathBuf,
}

impl Spec {
    /// The spec `name` of `project`; the name is validated, the folder need not exist.
    pub(crate) fn new(project: &Project, name: &str) -> Result<Spec, SpecError> {
        names::validate(NameKind::Spec, name)?;
        Ok(Spec {
            name: name.to_owned(),
            dir: project.spec_dir(name),
            root: project.root().to_path_buf(),
        })
    }
    /// The spec name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    /// `.claude/specs/NAME/`
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
    /// True when the folder exists.
    pub(crate) fn exists(&self) -> bool {
        self.dir.is_dir()
    }
    /// `requirements.md`
    pub(crate) fn requirements_path(&self) -> PathBuf {
        self.dir.join("requirements.md")
    }
    /// `design.md`
    pub(crate) fn design_path(&self) -> PathBuf {
        self.dir.join("design.md")
    }
    /// `tasks.md`
    pub(crate) fn tasks_path(&self) -> PathBuf {
        self.dir.join("tasks.md")
    }
    /// `report.md`, the completion report.
    pub(crate) fn report_path(&self) -> PathBuf {
        self.dir.join("report.md")
    }
    /// Which documents exist.
    pub(crate) fn documents(&self) -> Documents {
        Documents {
            requirements: self.requirements_path().is_file(),
            design: self.design_path().is_file(),
            tasks: self.tasks_path().is_file(),
            report: self.report_path().is_file(),
        }
    }
    /// Parse tasks.md; `Ok(None)` when it does not exist. Errors name the file and line.
    pub(crate) fn load_tasks(&self) -> Result<Option<TaskList>, SpecError> {
        let path = self.tasks_path();
        let text = match read_document(&self.root, &path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        TaskList::parse(&text).map(Some).map_err(|e| {
            SpecError::Tasks(TasksError::InFile {
                path,
                source: Box::new(e),
            })
        })
    }
}

/// Which of a spec's documents exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Documents {
    /// requirements.md
    pub requirements: bool,
    /// design.md
    pub design: bool,
    /// tasks.md
    pub tasks: bool,
    /// report.md
    pub report: bool,
}

impl Documents {
    /// Names of the documents present, in workflow order.
    pub(crate) fn present(&self) -> Vec<&'static str> {
        [
            (self.requirements, "requirements"),
            (self.design, "design"),
            (self.tasks, "tasks"),
            (self.report, "report"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect()
    }
}

/// Create the folder of a new spec. The name is validated first and an existing spec is
/// refused, so nothing is created or changed on any error. The description is checked
/// here but stored by the caller (in the unified state).
pub(crate) fn create(project: &Project, name: &str, description: &str) -> Result<Spec, SpecError> {
    let spec = Spec::new(project, name)?;
    if description.trim().is_empty() {
        return Err(SpecError::EmptyDescription {
            name: name.to_owned(),
        });
    }
    let exists = || SpecError::Exists {
        name: name.to_owned(),
        path: spec.dir.clone(),
    };
    if spec.dir.exists() {
        return Err(exists());
    }
    let specs_dir = project.specs_dir();
    crate::fs::create_dir_all(&specs_dir)?;
    // `create_dir`, not `create_dir_all`: two racing creators cannot both succeed.
    match fs_err::create_dir(&spec.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => return Err(e.into()),
    }
    crate::fs::sync_dir(&specs_dir)?;
    Ok(spec)
}

/// One row of `qw spec-list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SpecSummary {
    /// The spec name.
    pub name: String,
    /// Which documents exist.
    pub documents: Documents,
    /// Ticked leaf tasks (0 without tasks.md).
    pub tasks_done: usize,
    /// All leaf tasks (0 without tasks.md).
    pub tasks_total: usize,
    /// Why tasks.md could not be read, if it could not.
    pub tasks_error: Option<String>,
}

/// Every spec folder under `.claude/specs/`, sorted by name. Folders whose names are not
/// valid spec names are skipped; an invalid tasks.md is reported in its row, not as an error.
pub(crate) fn list(project: &Project) -> Result<Vec<SpecSummary>, SpecError> {
    let dir = project.specs_dir();
    let entries = match crate::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.path().is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(spec) = Spec::new(project, &name) else {
            continue;
        };
        let (tasks_done, tasks_total, tasks_error) = match spec.load_tasks() {
            Ok(Some(list)) => {
                let (d, t) = list.progress();
                (d, t, None)
            }
            Ok(None) => (0, 0, None),
            Err(e) => (0, 0, Some(e.to_string())),
        };
        out.push(SpecSummary {
            name,
            documents: spec.documents(),
            tasks_done,
            tasks_total,
            tasks_error,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_refuses_bad_names_and_existing_specs() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::at(dir.path());
        for bad in ["../x", "a/b", "/etc/passwd", ""] {
            assert!(matches!(create(&p, bad, "d"), Err(SpecError::Name(_))));
        }
        assert!(!p.claude_dir().exists(), "nothing created for bad names");
        assert!(matches!(
            create(&p, "ok", "  "),
            Err(SpecError::EmptyDescription { .. })
        ));
        let s = create(&p, "user-auth", "Login").unwrap();
        assert!(s.exists());
        assert_eq!(s.tasks_path(), p.spec_dir("user-auth").join("tasks.md"));
        let e = create(&p, "user-auth", "Login").unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn list_reports_documents_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::at(dir.path());
        let a = create(&p, "b-spec", "B").unwrap();
        crate::fs::write(a.requirements_path(), "# R\n").unwrap();
        crate::fs::write(a.tasks_path(), "- [x] 1. A\n- [ ] 2. B\n").unwrap();
        let bad = create(&p, "a-spec", "A").unwrap();
        crate::fs::write(bad.tasks_path(), "- [ ] 1. A\n- [ ] 1. B\n").unwrap();
        crate::fs::create_dir_all(p.specs_dir().join("Not_Valid")).unwrap();
        let rows = list(&p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "a-spec");
        assert!(
            rows[0]
                .tasks_error
                .as_deref()
                .unwrap()
                .contains("duplicate")
        );
        assert_eq!(rows[1].documents.present(), ["requirements", "tasks"]);
        assert_eq!((rows[1].tasks_done, rows[1].tasks_total), (1, 2));
    }
}
