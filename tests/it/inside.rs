//! rev11a F2: a qw command run inside a task worktree (by the task's agent, or by a user
//! who `cd`s there) acts on the workflow's project, not on the worktree's own copy of
//! `.claude/`: `qw suggest`'s hand-off reaches the project (in a repository tracking
//! `.claude/` the task used to fail `workspace_error` "result changes
//! `.claude/next_command.txt`"; in one ignoring it the suggestion was silently lost),
//! `qw exec`'s record lands in the project's state, and `qw status` sees the running
//! workflow.

use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::{Layout, Repo, Root};

/// Task 1 does its work, then runs `qw ARGS` in its worktree, its output kept in `out`.
fn work_then_qw(r: &Repo, args: &str, out: &str) {
    let script = format!(
        "{}'{}' {args} > '{out}' 2>&1\n",
        work("1"),
        qw_bin().display()
    );
    r.action("1", &script);
    r.action("2", &work("2"));
}

fn suggest_reaches_the_project(layout: Layout) {
    let r = Repo::build("- [ ] 1. Task 1\n- [ ] 2. Task 2\n", layout, Root::Default);
    let said = r.aux.path().join("suggest.out");
    work_then_qw(&r, "suggest '/spec-status demo'", &said.display().to_string());
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(out.status.success(), "{text}\nsuggest said: {said}");
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    let next = r.root().join(".claude/next_command.txt");
    assert_eq!(
        std::fs::read_to_string(&next)
            .unwrap_or_else(|e| panic!("{}: {e}\nsuggest said: {said}\n{text}", next.display()))
            .trim(),
        "/spec-status demo"
    );
    // Nothing of it went through the merge.
    assert!(!has(&r, "main", ".claude/next_command.txt"), "{text}");
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"), "{text}");
    r.assert_no_process();
}

#[test]
fn inside_suggest_from_a_task_reaches_the_project_where_claude_is_tracked() {
    suggest_reaches_the_project(Layout::Tracked);
}

#[test]
fn inside_suggest_from_a_task_reaches_the_project_where_claude_is_ignored() {
    suggest_reaches_the_project(Layout::Ignored);
}

#[test]
fn inside_exec_from_a_task_is_recorded_in_the_projects_state() {
    let r = Repo::build("- [ ] 1. Task 1\n- [ ] 2. Task 2\n", Layout::Tracked, Root::Aux);
    let said = r.aux.path().join("exec.out");
    work_then_qw(&r, "exec -- echo marker-inside", &said.display().to_string());
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(out.status.success(), "{text}\nexec said: {said}");
    assert!(said.contains("marker-inside"), "{said}");
    let state = std::fs::read_to_string(r.root().join(".claude/unified_state.json")).unwrap();
    assert!(
        state.contains("marker-inside"),
        "the project's state does not hold the task's `qw exec`: {said}\n{text}"
    );
    assert!(!has(&r, "main", ".claude/unified_state.json"), "{text}");
    r.assert_no_process();
}

#[test]
fn inside_status_from_a_task_shows_the_running_workflow() {
    let r = Repo::build("- [ ] 1. Task 1\n", Layout::Tracked, Root::Aux);
    let said = r.aux.path().join("status.out");
    let script = format!(
        "{}'{}' status > '{}' 2>&1\n",
        work("1"),
        qw_bin().display(),
        said.display()
    );
    r.action("1", &script);
    let out = r.auto(&["--isolate", "worktree"]);
    let text = diag(&out);
    assert!(out.status.success(), "{text}");
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(!said.contains("no specs"), "{said}");
    assert!(said.contains("demo"), "{said}");
    r.assert_no_process();
}
