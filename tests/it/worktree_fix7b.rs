//! Review rev6b G11, G16, G1, G2/G8/G10, G18: what an agent plants in the repository's
//! shared git dir (hooks, config, `info/`) never runs in qw's git and is put back; a
//! file a save skips because of a rule outside the project's `.gitignore` files is never
//! deleted with the worktree; a tag or remote-tracking ref of the repository removed
//! with the worktree vouches for nothing; a bisect or a multi-commit cherry-pick left
//! in progress is not a result; a user branch named where qw's branches go is refused
//! up front. Every test asserts where the work is afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::moves::{cont, git_in, has, once, project_with_a_submodule, task_dir, tasks};
use crate::support::*;
use crate::worktree::Repo;

fn make_executable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn error_of(r: &Repo, id: &str) -> String {
    r.f.task(id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---- G11: hooks, fsmonitor, filters planted in the shared git dir ----

/// A script that appends `what` and its directory to `log` (and, with `linger`, leaves
/// a process behind, as rev6b's hook did).
fn logger(log: &Path, what: &str, linger: bool) -> String {
    format!(
        "#!/bin/sh\necho \"{what} ran in $(pwd)\" >> {}\n{}",
        log.display(),
        if linger {
            "sleep 60 </dev/null >/dev/null 2>&1 &\n"
        } else {
            ""
        }
    )
}

#[test]
fn worktree_fix7b_hooks_an_agent_plants_never_run_in_qws_git_and_are_put_back() {
    // rev6b G11 as reported: task 1's agent writes `post-merge`, `post-checkout` and
    // `post-commit` into `<common>/hooks` and fails; tasks 2 and 3 are merged after it.
    // The user's own `post-checkout` is there from the start (changed by the agent too).
    let r = Repo::new(&tasks(3));
    let log = r.aux.path().join("hook.log");
    let hooks = r.root().join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let users = logger(&log, "user's post-checkout", false);
    std::fs::write(hooks.join("post-checkout"), &users).unwrap();
    make_executable(&hooks.join("post-checkout"));
    let planted = logger(&log, "planted", true);
    let plant = r.aux.path().join("planted.sh");
    std::fs::write(&plant, &planted).unwrap();
    r.action(
        "1",
        &format!(
            "H=\"$(git rev-parse --git-common-dir)/hooks\"\nfor h in post-merge post-checkout post-commit; do cp {p} \"$H/$h\"; chmod +x \"$H/$h\"; done\nexit 1\n",
            p = plant.display()
        ),
    );
    r.action("2", "sleep 0.5\necho 2 > f2.txt\n");
    r.action("3", "sleep 0.5\necho 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    // No hook ran in any of qw's git steps (worktree add, commit, merge): neither the
    // planted ones nor the user's.
    assert!(
        !log.exists(),
        "{}\n{text}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    r.assert_no_process();
    assert!(
        has(&r, "main", "f2.txt") && has(&r, "main", "f3.txt"),
        "{text}"
    );
    // Task 1 failed as its agent did, the planting named.
    let err = error_of(&r, "1");
    assert_eq!(r.f.task("1")["outcome"], "agent_error", "{err}");
    assert!(
        err.contains("hooks/post-merge") && err.contains("appeared"),
        "{err}"
    );
    // The user's hook is theirs again, the planted ones gone from `hooks/` and kept
    // aside in `qw-planted/`.
    assert_eq!(
        std::fs::read_to_string(hooks.join("post-checkout")).unwrap(),
        users
    );
    assert!(!hooks.join("post-merge").exists() && !hooks.join("post-commit").exists());
    let aside: Vec<PathBuf> = std::fs::read_dir(r.root().join(".git/qw-planted"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read_to_string(aside[0].join("hooks/post-merge")).unwrap(),
        planted
    );
    assert_eq!(
        std::fs::read_to_string(aside[0].join("hooks/post-checkout")).unwrap(),
        planted
    );
}

#[test]
fn worktree_fix7b_fsmonitor_and_a_filter_an_agent_configures_never_run_and_fail_the_task() {
    // rev6b G11, the shared config: task 1's agent sets `core.fsmonitor` and a clean
    // filter for every path (`info/attributes`) and goes on working; task 2 is saved
    // meanwhile. Neither program runs in qw's git; the config and attributes are put back.
    let r = Repo::new(&tasks(2));
    let log = r.aux.path().join("evil.log");
    let evil = r.aux.path().join("evil");
    std::fs::write(&evil, format!("{}cat\n", logger(&log, "evil", false))).unwrap();
    make_executable(&evil);
    let written = r.aux.path().join("written");
    let started2 = r.aux.path().join("started2");
    // Each agent waits for the other's step (at most about 90 s): task 1 plants only
    // once task 2 runs (so none of qw's git steps for task 2's start races the planting)
    // and works on until task 2 is saved (on its branch, or merged).
    let wait = |cond: &str| {
        format!("n=0; until {cond} || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\n")
    };
    r.action(
        "1",
        &format!(
            "{}git config core.fsmonitor {e}\ngit config filter.evil.clean {e}\necho '* filter=evil' >> \"$(git rev-parse --git-common-dir)/info/attributes\"\ntouch {w}\n{}echo 1 > f1.txt\n",
            wait(&format!("[ -e {} ]", started2.display())),
            wait(
                "git -C \"$MAIN\" cat-file -e qw/demo/2:f2.txt 2>/dev/null || git -C \"$MAIN\" cat-file -e main:f2.txt 2>/dev/null"
            ),
            e = evil.display(),
            w = written.display()
        ),
    );
    r.action(
        "2",
        &format!(
            "touch {}\n{}echo 2 > f2.txt\n",
            started2.display(),
            wait(&format!("[ -e {} ]", written.display()))
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert!(
        !log.exists(),
        "{}\n{text}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let err = error_of(&r, "1");
    assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{err}");
    assert!(
        err.contains("core.fsmonitor") && err.contains("filter.evil.clean"),
        "{err}"
    );
    assert!(err.contains("info/attributes"), "{err}");
    // Put back: no such key, no attributes file.
    assert!(!r.git_ok(&["config", "--get", "core.fsmonitor"]));
    assert!(!r.git_ok(&["config", "--get", "filter.evil.clean"]));
    assert!(!r.root().join(".git/info/attributes").exists());
    // Nothing lost: each task's file is on its branch or on `main`.
    for (id, f) in [("1", "f1.txt"), ("2", "f2.txt")] {
        assert!(
            has(&r, "main", f) || has(&r, &format!("qw/demo/{id}"), f),
            "{f}: {text}"
        );
    }
    // The work was saved as written, not through the filter.
    let rev = if has(&r, "main", "f2.txt") {
        "main:f2.txt".to_owned()
    } else {
        "qw/demo/2:f2.txt".to_owned()
    };
    assert_eq!(r.git(&["show", &rev]), "2\n");
}

#[test]
fn worktree_fix7b_an_agents_remote_and_upstream_in_the_shared_config_are_not_a_planting() {
    // The ordinary side of the same door: `git remote add` and a branch's upstream
    // write the shared config too, and run nothing: the tasks merge as usual.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "git remote add upstream https://example.invalid/x.git\ngit config branch.qw/demo/1.remote upstream\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(!text.contains("shared git files"), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
    assert_eq!(
        r.git(&["config", "--get", "remote.upstream.url"]).trim(),
        "https://example.invalid/x.git"
    );
}

// ---- G16: files ignored by a rule outside the project's .gitignore files ----

#[test]
fn worktree_fix7b_an_agents_exclude_line_never_loses_a_siblings_new_file() {
    // rev6b G16 as reported: task 1's agent adds `*.py` to the shared `info/exclude`;
    // task 2 writes `pkg/work.py` after it. The line is put back before task 2 is
    // saved: the file is saved on its branch (merged or kept), never deleted.
    let r = Repo::new(&tasks(2));
    let written = r.aux.path().join("excluded");
    r.action(
        "1",
        &format!(
            "echo '*.py' >> \"$(git rev-parse --git-common-dir)/info/exclude\"\ntouch {w}\nsleep 1\necho 1 > f1.txt\n",
            w = written.display()
        ),
    );
    r.action(
        "2",
        &format!(
            "n=0; until [ -e {w} ] || [ $n -ge 600 ]; do sleep 0.05; n=$((n+1)); done\nmkdir -p pkg\necho 'def work(): return 42' > pkg/work.py\necho 2 > f2.txt\n",
            w = written.display()
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert!(
        has(&r, "main", "pkg/work.py") || has(&r, "qw/demo/2", "pkg/work.py"),
        "pkg/work.py lost: {text}"
    );
    let exclude = std::fs::read_to_string(r.root().join(".git/info/exclude")).unwrap();
    assert!(!exclude.contains("*.py"), "{exclude}");
    let err = error_of(&r, "1");
    assert!(err.contains("info/exclude"), "{err}");
}

/// The user's own rule outside the project's `.gitignore` files (`info/exclude` or a
/// global excludes file, `rule_in`) ignores `pkg/work.py`, which task 2 writes: the
/// worktree holding it is kept (named), also by `--prune`, and the file is there.
fn users_rule_keeps_the_worktree(global: bool) {
    let r = Repo::new(&tasks(2));
    let rule = "*.py\n";
    if global {
        // In the repository's config (the tests run without a global one): a file
        // outside the repository all the same.
        let excludes = r.aux.path().join("excludes");
        std::fs::write(&excludes, rule).unwrap();
        r.git(&[
            "config",
            "core.excludesFile",
            &excludes.display().to_string(),
        ]);
    } else {
        let ex = r.root().join(".git/info/exclude");
        let mut text = std::fs::read_to_string(&ex).unwrap_or_default();
        text.push_str(rule);
        std::fs::write(&ex, text).unwrap();
    }
    r.action("1", "echo 1 > f1.txt\n");
    r.action(
        "2",
        "mkdir -p pkg\necho 'def work(): return 42' > pkg/work.py\necho 2 > f2.txt\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"),
        "{text}"
    );
    let w = task_dir(&r, "2");
    assert!(w.join("pkg/work.py").is_file(), "{text}");
    assert!(
        text.contains("pkg/work.py") && text.contains("kept the worktree"),
        "{text}"
    );
    // Task 1's worktree held nothing of the kind: removed as usual.
    assert!(!task_dir(&r, "1").exists(), "{text}");
    let out = r.run(&["worktrees", "--prune"]);
    assert!(w.join("pkg/work.py").is_file(), "{}", diag(&out));
    // Taken out as the line says, `--prune` removes it.
    std::fs::remove_dir_all(w.join("pkg")).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
}

#[test]
fn worktree_fix7b_a_new_file_the_users_info_exclude_ignores_keeps_the_worktree() {
    users_rule_keeps_the_worktree(false);
}

#[test]
fn worktree_fix7b_a_new_file_the_users_excludes_file_ignores_keeps_the_worktree() {
    users_rule_keeps_the_worktree(true);
}

// ---- G1: refs of the repository removed with the worktree vouch for nothing ----

/// rev6b G1: the agent commits in the project's own submodule, bumps its gitlink and
/// then runs `then` in the submodule (a tag, a forged remote-tracking ref, a fetch of
/// itself). The commit `main` records must exist in a repository that outlives the
/// worktree, or the worktree holding it is kept.
fn submodule_commit_vouched_by_its_own_ref(then: &str) {
    let r = Repo::new(&tasks(2));
    project_with_a_submodule(&r);
    r.action(
        "1",
        &format!(
            "git -c protocol.file.allow=always submodule update -q --init\ncd vendor/lib\ngit switch -q -c feat\necho w > w.txt\ngit add w.txt\ngit commit -qm SUBWORK\n{then}\ncd ../..\ngit add vendor/lib\ngit commit -qm 'bump lib'\necho 1 > f1.txt\n"
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert!(!text.contains("at its recorded commit"), "{text}");
    let recorded = r.git(&["ls-tree", "main", "vendor/lib"]);
    let Some(sub) = recorded.split_whitespace().nth(2).map(str::to_owned) else {
        // Not merged at all: then the branch's gitlink and the kept worktree hold it.
        assert!(task_dir(&r, "1").is_dir(), "{text}");
        return;
    };
    // Some repository on the machine that qw does not remove holds the commit `main`
    // records: the kept worktree's module, or the project's own copy.
    let w = task_dir(&r, "1");
    let module = r.root().join(".git/worktrees/demo-1/modules/vendor/lib");
    let common = r.root().join(".git/modules/vendor/lib");
    let held = |dir: &Path| {
        dir.is_dir()
            && r.git_cmd(dir, &["cat-file", "-e", &format!("{sub}^{{commit}}")])
                .status
                .success()
    };
    assert!(
        held(&common) || (w.is_dir() && held(&module)),
        "the only copy of {sub} was deleted: {text}"
    );
    // And `--prune` keeps it too.
    let out = r.run(&["worktrees", "--prune"]);
    assert!(
        held(&common) || (w.is_dir() && held(&module)),
        "{}",
        diag(&out)
    );
}

#[test]
fn worktree_fix7b_a_tag_in_the_submodule_does_not_make_its_commit_held_elsewhere() {
    submodule_commit_vouched_by_its_own_ref("git tag v1.1");
}

#[test]
fn worktree_fix7b_a_forged_remote_ref_in_the_submodule_vouches_for_nothing() {
    submodule_commit_vouched_by_its_own_ref("git update-ref refs/remotes/origin/x HEAD");
}

#[test]
fn worktree_fix7b_a_fetch_of_the_submodule_from_itself_vouches_for_nothing() {
    submodule_commit_vouched_by_its_own_ref(
        "git remote add self \"$(pwd)\"\ngit -c protocol.file.allow=always fetch -q self",
    );
}

// ---- G2/G8/G10: operations left in progress ----

#[test]
fn worktree_fix7b_a_bisect_left_in_progress_is_not_the_result_and_bisect_reset_then_continue_merges_it()
 {
    // rev6b G2 as reported: the agent commits A1 and B1, starts a bisect (HEAD goes to
    // a midpoint), writes wip1.txt and exits.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &(once(
            &r,
            "1",
            "echo a > a1.txt\ngit add a1.txt\ngit commit -qm A1\necho b > b1.txt\ngit add b1.txt\ngit commit -qm B1\ngit bisect start HEAD HEAD~3 >/dev/null\necho wip > wip1.txt\n",
        ) + "echo 1 > f1.txt\n"),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{text}");
    let err = error_of(&r, "1");
    let w = task_dir(&r, "1");
    assert!(err.contains("bisect reset"), "{err}");
    assert!(
        !has(&r, "main", "a1.txt") && !has(&r, "main", "wip1.txt"),
        "{text}"
    );
    assert!(w.join("wip1.txt").is_file(), "{text}");
    // As the line says: end the bisect, then continue: the agent's result is merged.
    git_in(&r, &w, &["bisect", "reset"]);
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["a1.txt", "b1.txt", "wip1.txt", "f1.txt", "f2.txt"]);
}

#[test]
fn worktree_fix7b_a_multi_commit_cherry_pick_ended_with_commit_and_an_edit_stop_are_told_once() {
    // rev6b G8: task 2 cherry-picks three commits, resolves the conflict of the second
    // with `git commit` (the third is still to do); task 1 stops a rebase at `edit`.
    let r = Repo::new(&tasks(3));
    r.git(&["switch", "-q", "-c", "side"]);
    for (f, c, m) in [
        ("a.txt", "A\n", "A"),
        ("shared.txt", "one\n", "S"),
        ("c.txt", "C\n", "C"),
    ] {
        std::fs::write(r.root().join(f), c).unwrap();
        r.git(&["add", f]);
        r.git(&["commit", "-qm", m]);
    }
    r.git(&["switch", "-q", "main"]);
    r.action(
        "1",
        &(once(
            &r,
            "1",
            "echo 1 > f1.txt\ngit add -A\ngit commit -qm x1\necho 2 > f1b.txt\ngit add -A\ngit commit -qm x2\nGIT_SEQUENCE_EDITOR='sed -i 1s/^pick/edit/' git rebase -q -i HEAD~2 >/dev/null 2>&1\necho edited >> f1.txt\n",
        ) + "true\n"),
    );
    r.action(
        "2",
        &(once(
            &r,
            "2",
            "echo two > shared.txt\ngit commit -qam s2\ngit cherry-pick side~2 side~1 side >/dev/null 2>&1 || { echo resolved > shared.txt; git add shared.txt; git commit -q --no-edit; }\n",
        ) + "true\n"),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "3"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err2 = error_of(&r, "2");
    assert_eq!(r.f.task("2")["outcome"], "workspace_error", "{err2}");
    assert!(
        err2.contains("cherry-pick --continue") && err2.contains("cherry-pick --quit"),
        "{err2}"
    );
    assert!(
        !has(&r, "main", "a.txt") && !has(&r, "main", "c.txt"),
        "{text}"
    );
    let err1 = error_of(&r, "1");
    assert!(
        err1.contains("`edit`") && !err1.contains("resolve the conflicts"),
        "{err1}"
    );
    // The long sentence once per task, on its FAILED line.
    assert_eq!(text.matches("rebase --abort").count(), 1, "{text}");
    assert_eq!(text.matches("cherry-pick --abort").count(), 1, "{text}");
    assert!(
        !text.contains("its unmerged work is kept on branch `qw/demo/1`"),
        "{text}"
    );
    assert!(has(&r, "main", "f3.txt"));
    // The pick finished as said, then continue: A, S (resolved) and C are merged.
    let w2 = task_dir(&r, "2");
    let out = r.git_cmd(&w2, &["cherry-pick", "--continue"]);
    assert!(out.status.success(), "{}", diag(&out));
    let w1 = task_dir(&r, "1");
    git_in(&r, &w1, &["add", "-A"]);
    let out = Command::new("git")
        .args(["-C"])
        .arg(&w1)
        .args(["rebase", "--continue"])
        .env("GIT_EDITOR", "true")
        .envs(r.git_env_pairs().iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", diag(&out));
    // Task 2's picks copy the user's unmerged branch `side`, refused as such while it is
    // there (rev8a F8): the user takes them as the task's work and drops the branch.
    r.git(&["branch", "-D", "side"]);
    let out = cont(&r, &["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["a.txt", "c.txt", "f1.txt", "f1b.txt", "f3.txt"]);
}

#[test]
fn worktree_fix7b_an_agent_timing_out_with_its_rebase_stopped_is_timed_out() {
    // rev6b G10: the agent's rebase stops on a conflict, then it hangs until
    // `--task-timeout`: its outcome is `timed_out`, the kept worktree its note.
    let r = Repo::new(&tasks(2));
    r.action("1", "echo 1 > f1.txt\n");
    // Its own conflicting commit to rebase onto: no wait for another task.
    r.action(
        "2",
        "base=$(git rev-parse HEAD)\necho two > shared.txt\ngit commit -qam s2\ngit checkout -q --detach \"$base\"\necho three > shared.txt\ngit commit -qam s3\nother=$(git rev-parse HEAD)\ngit checkout -q -\ngit rebase \"$other\" >/dev/null 2>&1 || true\nsleep 60\n",
    );
    let cmd = r.agent_cmd();
    let out = r.run(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "4",
        "--attempts",
        "1",
        "--agent-cmd",
        cmd.as_str(),
        "--parallel",
        "2",
    ]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "timed_out", "{text}");
    let err = error_of(&r, "2");
    assert!(
        err.contains("a rebase in progress") && err.contains("rebase --abort"),
        "{err}"
    );
    assert_eq!(text.matches("rebase --abort").count(), 1, "{text}");
    let w = task_dir(&r, "2");
    assert!(
        git_in(&r, &w, &["status"]).contains("rebase"),
        "the worktree was not kept as it is"
    );
    r.assert_no_process();
}

// ---- G18: a user branch where qw's branches go ----

fn branch_in_the_way(branch: &str) {
    let r = Repo::new(&tasks(2));
    r.git(&["branch", branch]);
    r.action("1", "echo 1 > f1.txt\n");
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("branch `{branch}`"))
            && err.contains("is in the way of qw's branches"),
        "{err}"
    );
    assert!(
        err.contains(&format!("git branch -m {branch} <new name>")),
        "{err}"
    );
    assert!(!err.contains("cannot lock ref"), "{err}");
    assert!(r.runs().is_empty(), "an agent ran");
    // Renamed as said, the run goes.
    r.git(&["branch", "-m", branch, "mine"]);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

#[test]
fn worktree_fix7b_a_branch_named_qw_is_refused_before_any_agent_runs() {
    branch_in_the_way("qw");
}

#[test]
fn worktree_fix7b_a_branch_named_qw_kept_is_refused_before_any_agent_runs() {
    branch_in_the_way("qw-kept");
}

#[test]
fn worktree_fix7b_a_branch_named_qw_slash_spec_is_refused_before_any_agent_runs() {
    branch_in_the_way("qw/demo");
}
