//! A task's own branch or worktree moved or deleted under it (issue 14, item 4's class):
//! its branch deleted and a history of its own committed, a concurrent `git gc
//! --prune=now` between qw's git steps, its worktree moved or removed by its agent, and
//! an agent's own worktree in qw's worktree folder (never qw's to prune).
//!
//! Each test asserts where the work is (the branches the output names hold it), that
//! the printed way on (`qw workflow-continue`) exits 0 with every task's file on the
//! target and no task redone, and that no process is left.

use std::path::{Path, PathBuf};

use crate::support::moves::{once, sha, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// The branch named in `err` that starts with `prefix` (up to the closing backquote).
fn named_branch(err: &str, prefix: &str) -> String {
    let at = err
        .find(&format!("`{prefix}"))
        .unwrap_or_else(|| panic!("no `{prefix}…` in: {err}"));
    let rest = &err[at + 1..];
    rest[..rest.find('`').unwrap()].to_owned()
}

/// Do the two revisions share a commit?
fn share_history(r: &Repo, a: &str, b: &str) -> bool {
    r.git_ok(&["merge-base", a, b])
}

#[test]
fn worktree_task_branch_deleted_and_a_fresh_history_committed_is_kept_apart() {
    let r = Repo::new(&tasks(6));
    let main_before = sha(&r, "main");
    let refusals = r.aux.path().join("refusals.txt");
    // The reproduction: a commit on the task's branch, the branch deleted, a commit on
    // the fresh history (the whole index, as a root commit), then a file left uncommitted.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(
                &r,
                "own1",
                "git update-ref -d refs/heads/qw/demo/1\necho x > x1.txt\ngit add x1.txt\ngit commit -qm fresh\necho u > u1.txt"
            )
        ),
    );
    // An orphan branch that starts empty (every file removed), then `git branch -D` of
    // the task's branch, which git allows once it is not checked out.
    r.action(
        "2",
        &format!(
            "{}\necho 2 > f2.txt\n",
            once(
                &r,
                "own2",
                "git checkout -q --orphan own2\ngit rm -rfq .\necho x > x2.txt\ngit add x2.txt\ngit commit -qm own2\ngit branch -D qw/demo/2 >/dev/null"
            )
        ),
    );
    // An orphan branch holding the whole tree, the task's branch left where it was.
    r.action(
        "3",
        &format!(
            "{}\necho 3 > f3.txt\n",
            once(
                &r,
                "own3",
                "echo x > x3.txt\ngit checkout -q --orphan own3\ngit add -A\ngit commit -qm own3"
            )
        ),
    );
    // Deleted with no commit after it: the work is merged as usual.
    r.action(
        "4",
        "echo 4 > f4.txt\ngit update-ref -d refs/heads/qw/demo/4\n",
    );
    // git refuses `branch -D` of a branch checked out in a worktree, from the worktree
    // and from the main one: the task merges as usual.
    r.action(
        "5",
        &format!(
            "echo 5 > f5.txt\ngit branch -D qw/demo/5 2>>{f} || true\ngit -C \"$MAIN\" branch -D qw/demo/5 2>>{f} || true\n",
            f = refusals.display()
        ),
    );
    // A history of its own, then the agent fails: saved the same way when its worktree
    // is removed.
    r.action(
        "6",
        &format!(
            "echo 6 > f6.txt\n{}",
            once(
                &r,
                "own6",
                "git update-ref -d refs/heads/qw/demo/6\necho x > x6.txt\ngit add x6.txt\ngit commit -qm fresh\nexit 1"
            )
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("6")["outcome"], "agent_error", "{}", r.f.task("6"));
    let at6 = named_branch(&diag(&out), "qw/demo/6@");
    assert!(r.git_ok(&["cat-file", "-e", &format!("{at6}:x6.txt")]));
    assert!(share_history(&r, "qw/demo/6", "main"));
    assert_eq!(r.git(&["show", "qw/demo/6:f6.txt"]), "6\n");
    let refused = std::fs::read_to_string(&refusals).unwrap();
    assert_eq!(
        refused.matches("cannot delete branch 'qw/demo/5'").count(),
        2,
        "{refused}"
    );
    let mut kept = Vec::new();
    for (i, fresh_file) in [("1", "x1.txt"), ("2", "x2.txt"), ("3", "x3.txt")] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        let branch = format!("qw/demo/{i}");
        assert!(
            err.contains("history of its own") && err.contains(&format!("`{branch}` is back")),
            "{err}"
        );
        assert!(err.contains("qw workflow-continue"), "{err}");
        assert_eq!(r.runs_of(i), 1, "not retried");
        // The fresh history is kept as it is, on the `@` branch the error names.
        let at = named_branch(err, &format!("{branch}@"));
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("{at}:{fresh_file}")]),
            "{at}"
        );
        assert!(!share_history(&r, &at, "main"));
        // The task's branch is on main's history again, with the worktree's files.
        assert!(share_history(&r, &branch, "main"), "{branch}");
        assert_eq!(r.git(&["show", &format!("{branch}:{fresh_file}")]), "x\n");
        // Nothing deleted: every file of main is still on it.
        assert_eq!(
            r.git(&[
                "diff",
                "--name-only",
                "--diff-filter=D",
                &format!("main...{branch}")
            ]),
            "",
            "{branch} deletes files"
        );
        kept.push((at.clone(), sha(&r, &at)));
    }
    kept.push((at6.clone(), sha(&r, &at6)));
    // The commit made before the deletion and the file left after the fresh commit.
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    assert_eq!(r.git(&["show", "qw/demo/1:u1.txt"]), "u\n");
    assert_eq!(r.git(&["show", "qw/demo/2:f2.txt"]), "2\n");
    for i in ["4", "5"] {
        assert_eq!(r.f.task(i)["status"], "completed", "{}", r.f.task(i));
        assert_eq!(
            r.git(&["show", &format!("main:f{i}.txt")]),
            format!("{i}\n")
        );
    }
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &main_before, "main"]));
    r.assert_no_process();
    // The `@` branches are kept by a prune and a reset (which keep the task branches'
    // unmerged work too), and by the way on the error prints.
    let check_kept = |when: &str| {
        for (b, s) in &kept {
            assert_eq!(&sha(&r, b), s, "{when} moved or deleted {b}");
        }
    };
    for args in [
        &["worktrees", "--prune"][..],
        &["workflow-reset", "demo"][..],
    ] {
        let out = r.run(args);
        assert_eq!(code(&out), 0, "{args:?}: {}", diag(&out));
        check_kept(&format!("{args:?}"));
        assert_eq!(r.git(&["show", "qw/demo/1:u1.txt"]), "u\n", "{args:?}");
    }
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&[
        "f1.txt", "u1.txt", "x1.txt", "f2.txt", "x2.txt", "f3.txt", "x3.txt", "f4.txt", "f5.txt",
        "f6.txt", "x6.txt",
    ]);
    for i in ["4", "5"] {
        assert_eq!(r.runs_of(i), 1, "task {i} was redone");
    }
    let mut names: Vec<String> = kept.iter().map(|(b, _)| b.clone()).collect();
    names.sort();
    assert_eq!(r.branches(), names);
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    check_kept("a prune after the spec completed");
}

/// A `git` earlier on qw's PATH that runs the real `git gc --prune=now` in the main
/// worktree just before qw's first `git … WHAT` (qw's commands carry `-c gc.auto=0`;
/// the agent's do not), and records that command's exit status in `gc-status`.
fn gc_before(r: &mut Repo, what: &str) -> PathBuf {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert!(!real.is_empty(), "no git on PATH");
    let dir = r.aux.path().join("gitbin");
    std::fs::create_dir_all(&dir).unwrap();
    let flag = r.aux.path().join("gc-done");
    let status = r.aux.path().join("gc-status");
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in\n*\" gc.auto=0 \"*\" {what} \"*)\n  if mkdir {flag} 2>/dev/null; then\n    {real} -C \"$MAIN\" gc -q --prune=now\n    {real} \"$@\"\n    s=$?\n    echo $s > {status}\n    exit $s\n  fi ;;\nesac\nexec {real} \"$@\"\n",
        flag = flag.display(),
        status = status.display(),
    );
    let wrapper = dir.join("git");
    std::fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), path_with(&r.root().join("bin")));
    r.f.set("PATH", &path);
    status
}

/// Two tasks, one at a time, with a `git gc --prune=now` just before qw's first
/// `WHAT`; `fail_first`: task 1's agent fails after writing its file (its work is then
/// saved when its worktree is removed). Nothing is lost; `workflow-continue` finishes.
/// Returns the status of the git command the prune ran before.
fn gc_between_qws_steps(what: &str, fail_first: bool) -> String {
    let mut r = Repo::new(&tasks(2));
    let status = gc_before(&mut r, what);
    let fail = if fail_first {
        once(&r, "fail1", "exit 3")
    } else {
        String::new()
    };
    // Committed and uncommitted work, so qw stages a commit of its own.
    r.action(
        "1",
        &format!(
            "echo c > c1.txt\ngit add c1.txt\ngit commit -qm c1 || true\necho 1 > f1.txt\n{fail}"
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert!(
        r.aux.path().join("gc-done").is_dir(),
        "no gc ran: {}",
        diag(&out)
    );
    if fail_first {
        assert_eq!(code(&out), 1, "{}", diag(&out));
        let t = r.f.task("1");
        assert_eq!(t["outcome"], "agent_error", "{t}");
        // Saved on its branch when its worktree was removed.
        assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
        assert_eq!(r.git(&["show", "qw/demo/1:c1.txt"]), "c\n");
        let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
        assert_eq!(code(&out), 0, "{}", diag(&out));
    } else {
        assert_eq!(code(&out), 0, "{}", diag(&out));
    }
    r.assert_all_merged(&["c1.txt", "f1.txt", "f2.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert_eq!(r.runs_of("2"), 1);
    assert_eq!(r.git(&["fsck", "--no-dangling", "--no-progress"]), "");
    std::fs::read_to_string(status).unwrap().trim().to_owned()
}

#[test]
fn worktree_gc_prune_before_qws_update_ref_loses_nothing() {
    // The staged commit was pruned: the first `update-ref` failed, the save was redone.
    assert_ne!(gc_between_qws_steps("update-ref", false), "0");
}

#[test]
fn worktree_gc_prune_before_qws_commit_tree_loses_nothing() {
    gc_between_qws_steps("commit-tree", false);
}

#[test]
fn worktree_gc_prune_while_saving_a_failed_tasks_work_loses_nothing() {
    assert_ne!(gc_between_qws_steps("update-ref", true), "0");
}

/// The text in `err` after `after`, up to the next backquote.
fn named_path(err: &str, after: &str) -> String {
    let at = err
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in: {err}"));
    let rest = &err[at + after.len()..];
    rest[..rest.find('`').unwrap()].to_owned()
}

#[test]
fn worktree_moved_or_removed_by_its_agent_is_named_and_its_work_kept() {
    let r = Repo::new(&tasks(5));
    let moved = |i: &str| r.aux.path().join(format!("moved{i}"));
    // Unlocked and moved from inside, after a commit; a file written after the move
    // (the shell's cwd moved with it) and one before.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(
                &r,
                "mv1",
                &format!(
                    "echo b > b1.txt\ngit worktree unlock \"$PWD\"\ngit worktree move \"$PWD\" {}\necho a > a1.txt",
                    moved("1").display()
                )
            )
        ),
    );
    // Moved while locked (`-f -f`), from the main worktree, nothing committed.
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{}",
            once(
                &r,
                "mv2",
                &format!(
                    "cd /\ngit -C \"$MAIN\" worktree move -f -f \"$QW_WORKTREE\" {}",
                    moved("2").display()
                )
            )
        ),
    );
    // Moved next to qw's worktrees, in qw's folder.
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}",
            once(
                &r,
                "mv3",
                "git worktree move -f -f \"$PWD\" \"$(dirname \"$QW_WORKTREE\")/elsewhere3\""
            )
        ),
    );
    // Unlocked and removed with one `--force`, from inside, after a commit.
    r.action(
        "4",
        &format!(
            "echo 4 > f4.txt\ngit add f4.txt\ngit commit -qm f4 || true\n{}",
            once(
                &r,
                "rm4",
                "git worktree unlock \"$PWD\"\ngit worktree remove --force \"$PWD\""
            )
        ),
    );
    r.action("5", "echo 5 > f5.txt\n");
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for (i, to) in [
        ("1", Some(moved("1"))),
        ("2", Some(moved("2"))),
        ("3", None),
    ] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(
            err.contains(&format!("/demo-{i}` of task {i} was moved to `")),
            "{err}"
        );
        let to = to.unwrap_or_else(|| PathBuf::from(named_path(err, "was moved to `")));
        assert!(err.contains(&format!("`{}`", to.display())), "{err}");
        assert!(err.contains(&format!("branch `qw/demo/{i}`")), "{err}");
        assert!(!err.contains("deleted"), "{err}");
        // Its work, committed or not, is on its branch; the moved worktree is gone.
        assert_eq!(
            r.git(&["show", &format!("qw/demo/{i}:f{i}.txt")]),
            format!("{i}\n")
        );
        assert!(!to.exists(), "{} is left", to.display());
    }
    assert!(
        named_path(&r.f.task("3")["error"].to_string(), "was moved to `").ends_with("/elsewhere3")
    );
    for f in ["b1.txt", "a1.txt"] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("qw/demo/1:{f}")]),
            "{f}"
        );
    }
    let t4 = r.f.task("4");
    assert_eq!(t4["outcome"], "workspace_error", "{t4}");
    let err = t4["error"].as_str().unwrap();
    assert!(
        err.contains("of task 4 was deleted while the task ran") && err.contains("`qw/demo/4`"),
        "{err}"
    );
    assert_eq!(r.git(&["show", "qw/demo/4:f4.txt"]), "4\n");
    assert_eq!(r.f.task("5")["status"], "completed");
    assert_eq!(
        r.registered_worktrees(),
        1,
        "{}",
        r.git(&["worktree", "list"])
    );
    r.assert_no_process();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&[
        "f1.txt", "a1.txt", "b1.txt", "f2.txt", "f3.txt", "f4.txt", "f5.txt",
    ]);
    assert_eq!(r.runs_of("5"), 1, "task 5 was redone");
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

/// What `git worktree list --porcelain` says of `path`: its branch, if registered.
fn registered_branch(r: &Repo, path: &Path) -> Option<String> {
    let list = r.git(&["worktree", "list", "--porcelain"]);
    let canon = path.canonicalize().ok()?;
    let mut cur: Option<PathBuf> = None;
    for line in list.lines() {
        if let Some(p) = line.strip_prefix("worktree ") {
            cur = Some(PathBuf::from(p));
        } else if let Some(b) = line.strip_prefix("branch refs/heads/")
            && cur.as_ref().and_then(|c| c.canonicalize().ok()).as_ref() == Some(&canon)
        {
            return Some(b.to_owned());
        }
    }
    None
}

#[test]
fn worktree_agents_own_worktree_in_qws_folder_is_never_pruned() {
    let r = Repo::new(&tasks(3));
    // Worktrees of the agents' own in qw's folder, with commits and uncommitted files:
    // on a branch of its own under a `<spec>-<task>`-like name, on a branch named like
    // qw's under qw's own name pattern, and detached.
    r.action(
        "1",
        "echo 1 > f1.txt\nc=\"$(dirname \"$QW_WORKTREE\")\"\ngit worktree add -q -b mine \"$c/mine-tree\"\necho m > \"$c/mine-tree/m.txt\"\ngit -C \"$c/mine-tree\" add m.txt\ngit -C \"$c/mine-tree\" commit -qm m\necho u > \"$c/mine-tree/u.txt\"\n",
    );
    r.action(
        "2",
        "echo 2 > f2.txt\nc=\"$(dirname \"$QW_WORKTREE\")\"\ngit worktree add -q -b qw/demo/8 \"$c/demo-8\"\necho e > \"$c/demo-8/e.txt\"\ngit -C \"$c/demo-8\" add e.txt\ngit -C \"$c/demo-8\" commit -qm e\necho v > \"$c/demo-8/v.txt\"\n",
    );
    // Its task fails (so a soft reset has something to reset).
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}",
            once(
                &r,
                "own3",
                "c=\"$(dirname \"$QW_WORKTREE\")\"\ngit worktree add -q --detach \"$c/demo-9\"\necho w > \"$c/demo-9/w.txt\"\nexit 1"
            )
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("3")["outcome"], "agent_error", "{}", r.f.task("3"));
    let container = r.container().expect("qw's worktree folder");
    let mine = container.join("mine-tree");
    let eight = container.join("demo-8");
    let nine = container.join("demo-9");
    let tips = (sha(&r, "mine"), sha(&r, "qw/demo/8"));
    let check = |when: &str| {
        assert_eq!(
            registered_branch(&r, &mine).as_deref(),
            Some("mine"),
            "{when}"
        );
        assert_eq!(
            registered_branch(&r, &eight).as_deref(),
            Some("qw/demo/8"),
            "{when}"
        );
        for (dir, f) in [
            (&mine, "m.txt"),
            (&mine, "u.txt"),
            (&eight, "e.txt"),
            (&eight, "v.txt"),
            (&nine, "w.txt"),
        ] {
            assert!(dir.join(f).is_file(), "{when}: {} lost {f}", dir.display());
        }
        assert_eq!((sha(&r, "mine"), sha(&r, "qw/demo/8")), tips, "{when}");
        // Their uncommitted files were not committed by a salvage of qw's.
        assert!(!r.git_ok(&["cat-file", "-e", "qw/demo/8:v.txt"]), "{when}");
        assert!(!r.git_ok(&["cat-file", "-e", "mine:u.txt"]), "{when}");
        assert_eq!(
            r.registered_worktrees(),
            4,
            "{when}: {}",
            r.git(&["worktree", "list"])
        );
    };
    check("after the run");
    for args in [
        &["worktrees", "--prune"][..],
        &["worktrees", "--prune", "--spec", "demo"][..],
        &["workflow-reset", "demo"][..],
    ] {
        let out = r.run(args);
        assert_eq!(code(&out), 0, "{args:?}: {}", diag(&out));
        assert!(
            !diag(&out).contains("kept branch `qw/demo/8`"),
            "{}",
            diag(&out)
        );
        check(&format!("{args:?}"));
    }
    // The workflow goes on (its leftovers cleared at start) and leaves them too.
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    check("workflow-continue");
    assert_eq!((r.runs_of("1"), r.runs_of("2")), (1, 1));
    // The user removes them: nothing of qw's is left.
    for d in [&mine, &eight, &nine] {
        r.git(&["worktree", "remove", "--force", &d.display().to_string()]);
    }
    r.git(&["branch", "-D", "qw/demo/8"]);
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    assert_eq!(sha(&r, "mine"), tips.0);
}
