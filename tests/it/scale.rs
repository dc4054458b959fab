//! rev8a F6 / issue 14: a task's cost must not grow with the number of tasks in its spec.
//! What grew was the git qw runs per task in worktree mode: every check of a task's result
//! asked git for the tip of every task branch the run had given out, one `git rev-parse`
//! per branch, so a task of a 200-task spec ran ~230 git processes against ~80 in a spec
//! of 50. Counted here (git calls, not time): the same workflow of 3 and of 12 tasks, one
//! task at a time, must cost the same git calls per task.

use std::path::{Path, PathBuf};

use crate::support::moves::tasks;
use crate::support::*;
use crate::worktree::Repo;

/// Put a `git` first on qw's PATH that logs each call's arguments (one line, appended at
/// once) to `<aux>/git-calls` before running the real git; returns the log's path.
fn log_git_calls(r: &mut Repo) -> PathBuf {
    let real = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("git"))
        .find(|g| g.is_file())
        .expect("git on PATH");
    let dir = r.aux.path().join("gitlog");
    std::fs::create_dir_all(&dir).unwrap();
    let log = r.aux.path().join("git-calls");
    let wrapper = dir.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), path_with(&r.root().join("bin")));
    r.f.set("PATH", &path);
    log
}

/// A run of `n` tasks in worktrees, one at a time: (git calls, of them `rev-parse`s of a
/// task branch), each per task.
fn git_calls_per_task(n: usize) -> (f64, f64) {
    let mut r = Repo::new(&tasks(n));
    let log = log_git_calls(&mut r);
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    let ticked = std::fs::read_to_string(r.root().join(".claude/specs/demo/tasks.md"))
        .unwrap()
        .matches("- [x]")
        .count();
    assert_eq!(ticked, n, "every task ticked");
    let all = text.lines().count();
    let branch_tips = text
        .lines()
        .filter(|l| l.contains("rev-parse") && l.contains("refs/heads/qw/demo/"))
        .count();
    let n = n as f64;
    (all as f64 / n, branch_tips as f64 / n)
}

#[test]
fn scale_git_calls_per_task_do_not_grow_with_the_tasks_of_the_spec() {
    let (small_all, small_tips) = git_calls_per_task(3);
    let (large_all, large_tips) = git_calls_per_task(12);
    // Before: a task branch's tip was asked once per check per branch given out so far
    // (~1 more `rev-parse` per task for each task in the spec: ~34 per task at 3 tasks,
    // ~43 at 12). Now one `git cat-file --batch-check` asks them all.
    assert!(
        large_tips <= small_tips + 1.0,
        "task-branch rev-parses per task grew with the spec: {small_tips:.1} at 3 tasks, {large_tips:.1} at 12"
    );
    assert!(
        large_all <= small_all * 1.05 + 1.0,
        "git calls per task grew with the spec: {small_all:.1} at 3 tasks, {large_all:.1} at 12"
    );
}
