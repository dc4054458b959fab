//! The `workflow-auto` / `workflow-continue` command lines the worktree tests share:
//! one attempt, a short retry delay, the test's agent (see `crate::worktree::Repo`).

use std::process::Output;

use crate::worktree::Repo;

/// `verb words… --retry-delay 0.1 --attempts 1 --agent-cmd cmd extra…` (`words`: the
/// spec, and for `workflow-auto` its title).
pub fn auto_args<'a>(
    verb: &'a str,
    words: &[&'a str],
    cmd: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![verb];
    args.extend_from_slice(words);
    args.extend([
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--agent-cmd",
        cmd,
    ]);
    args.extend_from_slice(extra);
    args
}

/// [`auto_args`] for spec `demo` ("A demo feature" for `workflow-auto`) in worktrees,
/// `parallel` tasks at once, 60 s per run.
pub fn demo_args<'a>(verb: &'a str, cmd: &'a str, parallel: &'a str) -> Vec<&'a str> {
    let words: &[&str] = if verb == "workflow-auto" {
        &["demo", "A demo feature"]
    } else {
        &["demo"]
    };
    auto_args(
        verb,
        words,
        cmd,
        &[
            "--task-timeout",
            "60",
            "--parallel",
            parallel,
            "--isolate",
            "worktree",
        ],
    )
}

/// `workflow-auto` of [`demo_args`], run to its end (bounded).
pub fn auto_demo(r: &Repo, parallel: &str) -> Output {
    let cmd = r.agent_cmd();
    r.run(&demo_args("workflow-auto", &cmd, parallel))
}

/// `workflow-continue` of [`demo_args`], run to its end (bounded).
pub fn continue_demo(r: &Repo, parallel: &str) -> Output {
    let cmd = r.agent_cmd();
    r.run(&demo_args("workflow-continue", &cmd, parallel))
}
