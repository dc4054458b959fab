//! Prompts: what an agent is told for each phase.
//!
//! Owns: assembling steering docs, the description, the spec's documents and exact
//! instructions (the document to answer with and where qw saves it, the `tasks.md`
//! format) into one prompt. Document phases ask for the document as the final message
//! ([`super::document`] writes it), never for a write under `.claude/`.
//! Must not: write files — the caller writes the prompt to `run_dir/prompt.md`.
//!
//! Documents are embedded up to a size cap and otherwise referenced by path, so the
//! prompt always fits in one argv word (Linux limits one argument to 128 KiB).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Job, Phase};
use crate::project::Project;

/// Largest part of one spec document embedded in a prompt.
const DOC_CAP: usize = 20 * 1024;
/// Largest total of steering documents embedded.
const STEERING_CAP: usize = 24 * 1024;
/// Largest part of the description embedded.
const DESCRIPTION_CAP: usize = 16 * 1024;
/// Largest part of a task's title, and of its details (sub-bullets) together, embedded.
/// With the other caps, a prompt stays below the 128 KiB one argument may have
/// (`claude -p PROMPT`, `--agent-cmd '… {prompt}'`), however long the task entry is.
const TASK_TITLE_CAP: usize = 1024;
const TASK_DETAILS_CAP: usize = 8 * 1024;

/// The `tasks.md` format every agent must follow (CONTRACT §6).
pub const TASKS_FORMAT: &str = "\
# Implementation Plan

- [ ] 1. Set up the module skeleton
  - Create `src/greeter.rs` with a public `greet(name: &str) -> String`
  - _Requirements: 1.1, 1.2_
  - _Verify: `cargo test greeter`_
- [ ] 2. Handle invalid input
- [ ] 2.1. Reject empty names with a clear error
  - _Requirements: 2.1_
  - _Depends: 1_
  - _Verify: `cargo test greeter::rejects_empty`_
- [ ] 2.2. Document the error in the README
  - _Requirements: 2.2_
  - _Depends: 2.1_

Rules:
- One task per line: `- [ ] ID. Title`, the ID made of numbers and dots (`1`, `2.1`).
  A task `2.1` is a sub-task of `2`; only tasks without sub-tasks are run, and a parent
  is ticked when all its sub-tasks are. Ids are compared exactly (`1` is not `1.1` nor `10`).
- Details go in indented `  - ` bullets under the task.
- `_Requirements: …_` lists the acceptance criteria the task covers.
- `_Depends: …_` (optional) lists task ids that must be completed first.
- `_Verify: `CMD`_` (optional but strongly encouraged) is ONE command run from the project
  root as plain arguments, without a shell: no pipes, `&&`, `;`, redirections, globs or
  `$VARIABLES`. It must exit 0 only when the task is really done.
- Leave every box unticked (`[ ]`); qw ticks tasks itself.";

/// Build the prompt for `job`.
pub fn build(job: &Job, project: &Project) -> String {
    let mut p = String::new();
    let spec_dir = shown(&job.spec_dir, &job.workdir);
    let _ = writeln!(
        p,
        "You are working on the spec `{}` of this project, driven by qw (Quantumwala), in the {} phase.\n",
        job.spec,
        job.phase.as_str()
    );
    let _ = writeln!(
        p,
        "## Feature description\n\n{}\n",
        capped(job.description.trim(), DESCRIPTION_CAP, None)
    );
    steering(&mut p, project);

    let docs: &[&str] = match job.phase {
        Phase::Requirements => &[],
        Phase::Design => &["requirements.md"],
        Phase::Tasks => &["requirements.md", "design.md"],
        Phase::Implementation | Phase::Validation => &["requirements.md", "design.md", "tasks.md"],
    };
    for doc in docs {
        embed_document(
            &mut p,
            project.root(),
            &job.spec_dir.join(doc),
            &job.workdir,
        );
    }

    p.push_str("## Your job\n\n");
    match job.phase {
        Phase::Requirements => {
            answer_with_document(
                &mut p,
                "the requirements document",
                "# Requirements Document",
                &spec_dir,
                "requirements.md",
            );
            p.push_str(
                "Structure: `# Requirements Document`, an `## Introduction`, then numbered requirements\n\
                 (`### Requirement 1`, …), each with a `**User Story:** As a …, I want …, so that …` and\n\
                 `#### Acceptance Criteria` as a numbered list in EARS form\n\
                 (`1. WHEN <event> THEN the system SHALL <response>`, `IF <condition> THEN …`).\n\
                 Criteria are referred to as `<requirement>.<criterion>` (e.g. `1.2`) by later phases.\n",
            );
        }
        Phase::Design => {
            answer_with_document(
                &mut p,
                "the design document, based on the requirements above",
                "# Design Document",
                &spec_dir,
                "design.md",
            );
            p.push_str(
                "Sections: `## Overview`, `## Architecture`, `## Components and Interfaces`,\n\
                 `## Data Models`, `## Error Handling`, `## Testing Strategy`. Name real files,\n\
                 types and functions of this project where they exist.\n",
            );
        }
        Phase::Tasks => {
            answer_with_document(
                &mut p,
                "the implementation plan",
                "# Implementation Plan",
                &spec_dir,
                "tasks.md",
            );
            let _ = writeln!(
                p,
                "Small, ordered, testable coding tasks that together meet every acceptance criterion.\n\
                 Use exactly this format:\n\n```markdown\n{TASKS_FORMAT}\n```"
            );
        }
        Phase::Implementation => implementation(&mut p, job),
        Phase::Validation => {
            let _ = writeln!(
                p,
                "Validate the finished work against the requirements, design and tasks above: run the\n\
                 project's tests and each task's `_Verify:_` command, and read the changed code.\n\
                 Do not change files. Start your final message with `VALIDATION: PASS` when every\n\
                 acceptance criterion is met, otherwise with `VALIDATION: FAIL` followed by each\n\
                 unmet criterion and why."
            );
        }
    }
    p.push_str(
        "\nBe truthful in your final message: say exactly what you did and what you could not do. \
         Never claim work you did not do.\n",
    );
    p
}

/// The first line of every resume prompt (tests and the scripted model match on it).
pub const RESUME_HEADER: &str = "qw resumes this session";

/// The short prompt that continues an earlier session of `job` (`claude --resume`): why
/// the last run stopped and what is left. The conversation already holds the full
/// prompt, the documents and the work done, so nothing is repeated.
pub fn resume(job: &Job, why: &str) -> String {
    let mut p = String::new();
    let what = match &job.task {
        Some(t) if job.phase == Phase::Implementation => format!("task {} ({})", t.id, t.title),
        _ => format!("the {} phase", job.phase.as_str()),
    };
    let _ = writeln!(
        p,
        "{RESUME_HEADER}: your previous run on {what} of the spec `{}` was stopped ({}).
         Continue where you left off: check what is already done, do not redo it, and finish.
",
        job.spec,
        why.trim()
    );
    let spec_dir = shown(&job.spec_dir, &job.workdir);
    match job.phase {
        Phase::Requirements => answer_with_document(
            &mut p,
            "the requirements document",
            "# Requirements Document",
            &spec_dir,
            "requirements.md",
        ),
        Phase::Design => answer_with_document(
            &mut p,
            "the design document",
            "# Design Document",
            &spec_dir,
            "design.md",
        ),
        Phase::Tasks => answer_with_document(
            &mut p,
            "the implementation plan (the format given before)",
            "# Implementation Plan",
            &spec_dir,
            "tasks.md",
        ),
        Phase::Implementation => match job.task.as_ref().and_then(|t| t.verify.as_deref()) {
            Some(v) => {
                let _ = writeln!(
                    p,
                    "What is left: the task counts as done only when `{v}` exits 0 (qw runs it when you finish)."
                );
            }
            None => p.push_str("What is left: whatever of the task is not done yet, with tests that prove it.
"),
        },
        Phase::Validation => p.push_str(
            "What is left: finish the validation; start your final message with `VALIDATION: PASS` or `VALIDATION: FAIL` as asked before.
",
        ),
    }
    p.push_str(
        "\nBe truthful in your final message: say exactly what you did and what you could not do.\n",
    );
    p
}

/// The document phases' instruction: the document is the answer, so it never depends on
/// the agent's permission to write under `.claude/` (Claude Code refuses that in headless
/// mode); a file the agent writes anyway is accepted.
fn answer_with_document(p: &mut String, what: &str, heading: &str, spec_dir: &str, file: &str) {
    let _ = writeln!(
        p,
        "Compose {what} and answer with it: your final message must be the whole document in\n\
         Markdown, starting with the line `{heading}`, with nothing before or after it.\n\
         qw saves your answer as `{spec_dir}/{file}`; you need not write that file yourself\n\
         (if you do, the file you write is kept). Do not write code or any other file.\n"
    );
}

fn implementation(p: &mut String, job: &Job) {
    let Some(task) = &job.task else {
        p.push_str("No task was given; do nothing and say so.\n");
        return;
    };
    let _ = writeln!(
        p,
        "Implement task {} only: {}\n",
        task.id,
        capped(&task.title, TASK_TITLE_CAP, None)
    );
    let details: String = task.details.iter().map(|d| format!("- {d}\n")).collect();
    let where_ = format!("tasks.md, task {}", task.id);
    let details = capped(details.trim_end(), TASK_DETAILS_CAP, Some(&where_));
    if !details.is_empty() {
        let _ = writeln!(p, "{details}");
    }
    if !task.requirements.is_empty() {
        let _ = writeln!(
            p,
            "- It covers acceptance criteria {}.",
            capped(&task.requirements.join(", "), TASK_TITLE_CAP, None)
        );
    }
    match &task.verify {
        Some(v) => {
            let _ = writeln!(
                p,
                "\nqw will run `{v}` from the project root when you finish; the task counts as done only if it exits 0."
            );
        }
        None => {
            p.push_str("\nThe task has no verify command: add or run tests that prove it works.\n");
        }
    }
    p.push_str(
        "\nDo not edit tasks.md (qw ticks tasks itself) and do not work on other tasks. \
         Do not leave servers or watchers running. If you cannot finish the task, stop and say \
         why in your final message.\n",
    );
}

/// The steering documents a prompt embeds, in order: `product.md`, `tech.md`,
/// `structure.md`, then every other `*.md` of `.claude/steering/` by name.
pub(crate) fn steering_files(project: &Project) -> Vec<PathBuf> {
    let dir = project.steering_dir();
    let mut files: Vec<PathBuf> = ["product.md", "tech.md", "structure.md"]
        .iter()
        .map(|f| dir.join(f))
        .filter(|f| f.is_file())
        .collect();
    if let Ok(entries) = crate::fs::read_dir(&dir) {
        let mut others: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|f| {
                f.extension().is_some_and(|e| e == "md") && f.is_file() && !files.contains(f)
            })
            .collect();
        others.sort();
        files.extend(others);
    }
    files
}

fn steering(p: &mut String, project: &Project) {
    let files = steering_files(project);
    if files.is_empty() {
        return;
    }
    p.push_str("## Steering documents\n\n");
    let mut budget = STEERING_CAP;
    for f in files {
        let Some((text, len)) = read_capped(project.root(), &f) else {
            continue;
        };
        let rel = shown(&f, project.root());
        let body = capped_of(text.trim(), budget.min(DOC_CAP), Some(&rel), len);
        budget = budget.saturating_sub(body.len());
        let _ = writeln!(p, "### `{rel}`\n\n{body}\n");
        if budget == 0 {
            break;
        }
    }
}

fn embed_document(p: &mut String, root: &Path, path: &Path, base: &Path) {
    let rel = shown(path, base);
    match read_capped(root, path) {
        Some((text, len)) => {
            let _ = writeln!(
                p,
                "## `{rel}`\n\n{}\n",
                capped_of(text.trim(), DOC_CAP, Some(&rel), len)
            );
        }
        None => {
            let _ = writeln!(p, "## `{rel}`\n\n(not written yet)\n");
        }
    }
}

/// A document to embed: only a regular file (a FIFO or a device planted there is skipped,
/// never waited on), never through a link out of the project `root` (the workflow
/// refuses such a document before any agent runs), and only as much of it as the prompt
/// can show (`capped` then says how big the file is). Bytes that are not UTF-8 are
/// replaced. Returns the text read and the file's whole size.
fn read_capped(root: &Path, path: &Path) -> Option<(String, usize)> {
    crate::fs::check_in_project(root, path).ok()?;
    // Enough to cut at `DOC_CAP` on a char boundary and still say "cut".
    let (bytes, len) = match crate::fs::read_regular(path, DOC_CAP + 8).ok()? {
        crate::fs::Bounded::Whole(b) => {
            let len = b.len();
            (b, len)
        }
        crate::fs::Bounded::TooBig { head, len } => {
            (head, usize::try_from(len).unwrap_or(usize::MAX))
        }
    };
    Some((String::from_utf8_lossy(&bytes).into_owned(), len))
}

/// At most `cap` bytes of `text` (cut at a char boundary), with a note pointing at the
/// full file when cut.
fn capped(text: &str, cap: usize, path: Option<&str>) -> String {
    capped_of(text, cap, path, text.len())
}

/// [`capped`] for a `text` that is the start of something `total` bytes long.
fn capped_of(text: &str, cap: usize, path: Option<&str>, total: usize) -> String {
    if text.len() <= cap {
        return text.to_owned();
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let where_ = path.map_or_else(String::new, |p| format!("; read the full text in `{p}`"));
    format!(
        "{}\n\n[… cut after {end} of {} bytes{where_}]",
        &text[..end],
        total.max(text.len())
    )
}

/// `path` relative to `base` when inside it, else as is.
fn shown(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::TaskJob;
    use super::*;

    fn job(root: &Path, phase: Phase) -> Job {
        Job {
            phase,
            spec: "greeter".into(),
            description: "Greet users by name".into(),
            project_root: root.to_path_buf(),
            workdir: root.to_path_buf(),
            spec_dir: root.join(".claude/specs/greeter"),
            task: None,
            run_dir: root.join(".claude/runs/r1"),
            env: Vec::new(),
        }
    }

    /// The spec folder of `greeter` and the steering folder under `root`, made; returns
    /// the spec folder.
    fn spec_and_steering_dirs(root: &Path) -> PathBuf {
        let spec = root.join(".claude/specs/greeter");
        crate::fs::create_dir_all(&spec).unwrap();
        crate::fs::create_dir_all(root.join(".claude/steering")).unwrap();
        spec
    }

    #[test]
    fn each_phase_names_its_file_and_embeds_earlier_documents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let project = Project::at(root);
        crate::fs::create_dir_all(root.join(".claude/steering")).unwrap();
        crate::fs::create_dir_all(root.join(".claude/specs/greeter")).unwrap();
        crate::fs::write(root.join(".claude/steering/tech.md"), "TECH-STEERING").unwrap();
        crate::fs::write(
            root.join(".claude/specs/greeter/requirements.md"),
            "REQ-DOC",
        )
        .unwrap();
        crate::fs::write(root.join(".claude/specs/greeter/design.md"), "DESIGN-DOC").unwrap();

        let req = build(&job(root, Phase::Requirements), &project);
        assert!(req.contains("qw saves your answer as `.claude/specs/greeter/requirements.md`"));
        assert!(req.contains("starting with the line `# Requirements Document`"));
        assert!(req.contains("Greet users by name"));
        assert!(req.contains("TECH-STEERING"));
        assert!(!req.contains("REQ-DOC"));

        let design = build(&job(root, Phase::Design), &project);
        assert!(design.contains("qw saves your answer as `.claude/specs/greeter/design.md`"));
        assert!(design.contains("REQ-DOC") && !design.contains("DESIGN-DOC"));

        let tasks = build(&job(root, Phase::Tasks), &project);
        assert!(tasks.contains("REQ-DOC") && tasks.contains("DESIGN-DOC"));
        assert!(tasks.contains("`# Implementation Plan`") && tasks.contains("tasks.md`"));
        assert!(tasks.contains("- [ ] 2.1. Reject empty names"));
        assert!(tasks.contains("_Verify: `cargo test greeter`_"));
        assert!(tasks.contains("_Depends: 1_"));

        let mut imp = job(root, Phase::Implementation);
        imp.task = Some(TaskJob {
            id: "2.1".into(),
            title: "Reject empty names".into(),
            details: vec!["Return an error".into()],
            verify: Some("cargo test rejects_empty".into()),
            requirements: vec!["2.1".into()],
        });
        let text = build(&imp, &project);
        assert!(text.contains("Implement task 2.1 only: Reject empty names"));
        assert!(text.contains("`cargo test rejects_empty`"));
        assert!(text.contains("(not written yet)"), "tasks.md is missing");
    }

    #[test]
    fn resume_prompts_are_short_and_say_why_and_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut imp = job(root, Phase::Implementation);
        imp.task = Some(TaskJob {
            id: "2.1".into(),
            title: "Reject empty names".into(),
            details: vec!["Return an error".into()],
            verify: Some("cargo test rejects_empty".into()),
            requirements: vec!["2.1".into()],
        });
        let text = resume(&imp, "timed out after 600.0s");
        assert!(text.starts_with(RESUME_HEADER), "{text}");
        assert!(text.contains("task 2.1 (Reject empty names)"), "{text}");
        assert!(text.contains("(timed out after 600.0s)"), "{text}");
        assert!(
            text.contains("`cargo test rejects_empty` exits 0"),
            "{text}"
        );
        assert!(text.len() < 1024, "short: {}", text.len());
        let doc = resume(&job(root, Phase::Tasks), "usage limit");
        assert!(doc.contains("the tasks phase"), "{doc}");
        assert!(doc.contains("qw saves your answer as `.claude/specs/greeter/tasks.md`"));
    }

    #[test]
    fn huge_documents_are_cut_and_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crate::fs::create_dir_all(root.join(".claude/specs/greeter")).unwrap();
        let big = "é".repeat(200 * 1024);
        for doc in ["requirements.md", "design.md", "tasks.md"] {
            crate::fs::write(root.join(".claude/specs/greeter").join(doc), &big).unwrap();
        }
        let mut j = job(root, Phase::Validation);
        j.description = big.clone();
        let text = build(&j, &Project::at(root));
        assert!(text.len() < 120 * 1024, "{}", text.len());
        assert!(text.contains("read the full text in `.claude/specs/greeter/design.md`"));
    }

    /// A task entry far beyond what one argument may hold (title, details and
    /// requirements of 300 KiB each), with every document and the description at their
    /// caps and steering at its own: the prompt stays below 128 KiB, so `claude -p` and
    /// `{prompt}` never fail with "Argument list too long".
    #[test]
    fn huge_task_entries_are_cut_so_the_prompt_fits_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let spec = spec_and_steering_dirs(root);
        let big = "é".repeat(150 * 1024);
        for doc in ["requirements.md", "design.md", "tasks.md"] {
            crate::fs::write(spec.join(doc), &big).unwrap();
        }
        for doc in ["product.md", "tech.md", "structure.md"] {
            crate::fs::write(root.join(".claude/steering").join(doc), &big).unwrap();
        }
        let mut j = job(root, Phase::Implementation);
        j.description = big.clone();
        j.task = Some(TaskJob {
            id: "7".into(),
            title: "t".repeat(300 * 1024),
            details: vec!["d".repeat(150 * 1024), "e".repeat(150 * 1024)],
            verify: Some("cargo test".into()),
            requirements: vec!["1.1".repeat(100 * 1024)],
        });
        let text = build(&j, &Project::at(root));
        assert!(text.len() < 128 * 1024 - 1, "{}", text.len());
        assert!(text.contains("Implement task 7 only: ttt"), "title missing");
        assert!(text.contains("- ddd"), "details missing");
        assert!(text.contains("read the full text in `tasks.md, task 7`"));
        assert!(text.contains("qw will run `cargo test`"));
    }

    /// Documents that are not regular files are skipped, never waited on.
    #[test]
    fn special_files_in_place_of_documents_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let spec = spec_and_steering_dirs(root);
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
        nix::unistd::mkfifo(&spec.join("requirements.md"), mode).unwrap();
        std::os::unix::fs::symlink("/dev/zero", spec.join("design.md")).unwrap();
        crate::fs::create_dir_all(spec.join("tasks.md")).unwrap();
        nix::unistd::mkfifo(&root.join(".claude/steering/tech.md"), mode).unwrap();
        let text = build(&job(root, Phase::Validation), &Project::at(root));
        assert_eq!(text.matches("(not written yet)").count(), 3, "{text}");
        assert!(!text.contains("## Steering documents"), "{text}");
    }
}
