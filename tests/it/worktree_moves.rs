//! Agents that move git state outside their worktree (issue 14, items 4 and 6): the
//! integration branch moved under the main worktree, work left in the stash, the task's
//! worktree deleted while it ran, the target branch checked out or another worktree
//! added by the agent.
//!
//! Each test asserts that nothing is lost (every task's work reachable from a ref the
//! output names), that qw leaves no bogus state in the main worktree (the status of the
//! user's files is as it was), that `workflow-continue` then finishes the spec, and that
//! no process is left.

use crate::support::moves::{once, sha, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// `git status --porcelain` of the main worktree outside `.claude/` (qw's ticks).
fn user_status(r: &Repo) -> Vec<String> {
    r.git(&["status", "--porcelain", "--untracked-files=all"])
        .lines()
        .filter(|l| !l[3..].starts_with(".claude/"))
        .map(str::to_owned)
        .collect()
}

/// One way an agent moves `main` from its own worktree. `restore` puts `main` back
/// where it was (what the user does after reading the error), given the old tip.
fn target_moved(name: &str, mv: &str) {
    let r = Repo::new(&tasks(3));
    let before = user_status(&r);
    let old = sha(&r, "main");
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(&r, "move", mv)
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    r.action("3", "echo 3 > f3.txt\n");
    // One at a time: task 1 moves `main`, then tasks 2 and 3 come to merge.
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{name}: {}", diag(&out));
    let now = r.commit_of_main();
    for i in ["1", "2", "3"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{name}: {t}");
        assert_eq!(t["outcome"], "workspace_error", "{name}: {t}");
        let err = t["error"].as_str().unwrap();
        assert!(
            err.contains("`main`") && err.contains(&old[..10]) && err.contains("moved"),
            "{name}: {err}"
        );
        if let Some(now) = &now {
            assert!(err.contains(&now[..10]), "{name}: {err}");
        } else {
            assert!(err.contains("deleted"), "{name}: {err}");
        }
        assert!(!err.contains("would be overwritten"), "{name}: {err}");
        assert!(err.contains("workflow-continue"), "{name}: {err}");
        if i == "1" {
            assert_eq!(r.runs_of(i), 1, "{name}: not retried");
            // The task's work is kept on its branch, which the error names.
            assert!(err.contains("`qw/demo/1` was not merged"), "{name}: {err}");
            assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n", "{name}");
        } else {
            // The next tasks are not started on a moved branch.
            assert!(
                err.contains(&format!("task {i} was not started")),
                "{name}: {err}"
            );
            assert_eq!(r.runs_of(i), 0, "{name}");
        }
    }
    // qw touched neither the main worktree's index nor its files: only what the move
    // itself made shows (the index and files still hold the old commit).
    r.assert_no_process();
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]));
    assert_eq!(r.read("shared.txt"), "base\n");
    assert!(!r.root().join("f1.txt").exists(), "{name}");
    assert!(
        r.git_cmd(r.root(), &["diff-index", "--cached", "--quiet", &old])
            .status
            .success(),
        "{name}: the main index is no longer the old commit's"
    );
    // The user puts `main` back; the workflow then finishes, losing nothing.
    r.git(&["update-ref", "refs/heads/main", &old]);
    assert_eq!(user_status(&r), before, "{name}");
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    assert!(r.branches().is_empty(), "{name}: {:?}", r.branches());
}

#[test]
fn worktree_agent_moving_the_target_branch_to_its_head_is_refused_before_any_merge() {
    target_moved("update-ref HEAD", "git update-ref refs/heads/main HEAD");
}

#[test]
fn worktree_agent_moving_the_target_branch_to_an_unrelated_commit_is_refused() {
    target_moved(
        "update-ref to an unrelated commit",
        "c=$(echo x | git commit-tree $(git mktree </dev/null))\ngit update-ref refs/heads/main $c",
    );
}

#[test]
fn worktree_agent_deleting_the_target_branch_is_refused() {
    target_moved("delete", "git update-ref -d refs/heads/main");
}

#[test]
fn worktree_agent_soft_reset_of_the_main_worktree_is_refused() {
    target_moved(
        "soft reset from the main worktree",
        "git -C \"$MAIN\" reset -q --soft HEAD~1",
    );
}

#[test]
fn worktree_target_moves_git_refuses_or_the_user_makes_are_merged_on_top() {
    let r = Repo::new(&tasks(4));
    // git itself refuses these: the branch is checked out in the main worktree.
    r.action(
        "1",
        "echo 1 > f1.txt\ngit branch -f main HEAD 2>/dev/null || true\ngit push -q . HEAD:main 2>/dev/null || true\n",
    );
    // The user commits in the main worktree while the workflow runs: the index and
    // files follow HEAD, so this move is theirs and qw merges on top of it.
    r.action(
        "2",
        "echo 2 > f2.txt\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\n",
    );
    // A checkout of the target branch: git refuses, and its message (naming the main
    // worktree) is the task's evidence.
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}",
            once(&r, "switch3", "git switch -q main")
        ),
    );
    // A worktree of the agent's own, with a commit on a branch of its own: named, left.
    let own = r.aux.path().join("own-wt");
    r.action(
        "4",
        &format!(
            "echo 4 > f4.txt\ngit worktree add -q -b mine {o}\necho m > {o}/m.txt\ngit -C {o} add m.txt\ngit -C {o} commit -qm m\n",
            o = own.display()
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for i in ["1", "2", "4"] {
        assert_eq!(r.f.task(i)["status"], "completed", "{}", r.f.task(i));
    }
    let t3 = r.f.task("3");
    assert_eq!(t3["outcome"], "agent_error", "{t3}");
    let err = t3["error"].as_str().unwrap();
    assert!(
        err.contains("'main'")
            && err.contains("worktree")
            && err.contains(&r.root().display().to_string()),
        "{err}"
    );
    let ev4 = r.f.task("4")["evidence"].to_string();
    assert!(
        ev4.contains(&own.display().to_string()) && ev4.contains("`mine`"),
        "{ev4}"
    );
    assert_eq!(r.git(&["show", "mine:m.txt"]), "m\n");
    assert!(own.join("m.txt").is_file(), "the agent's worktree is left");
    assert!(!r.git_ok(&["cat-file", "-e", "main:m.txt"]));
    // The user removes the agent's worktree; continue finishes task 3.
    r.git(&["worktree", "remove", &own.display().to_string()]);
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt", "f4.txt", "user.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

impl Repo {
    fn commit_of_main(&self) -> Option<String> {
        let out = self.git_cmd(
            self.root(),
            &["rev-parse", "-q", "--verify", "refs/heads/main"],
        );
        out.status.success().then(|| stdout(&out).trim().to_owned())
    }

    fn stashes(&self) -> Vec<(String, String)> {
        self.git(&["stash", "list", "--format=%H %gs"])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect()
    }
}

#[test]
fn worktree_work_left_in_the_stash_fails_its_task_naming_the_stash() {
    let r = Repo::new(&tasks(6));
    let before = user_status(&r);
    // Untracked files stashed.
    r.action(
        "1",
        &once(&r, "stash1", "echo 1 > f1.txt\ngit stash -q -u\n"),
    );
    // A tracked change stashed with a message, after a commit of its own.
    r.action(
        "2",
        &once(
            &r,
            "stash2",
            "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\necho two > shared.txt\ngit stash push -q -m x\n",
        ),
    );
    // Stashes only the spec link qw put in its worktree (an untracked file to git): not
    // work, the task's files merge.
    r.action("3", "git stash -q -u\necho 3 > f3.txt\n");
    // The user stashes in the main worktree meanwhile: not any task's.
    r.action(
        "4",
        "echo 4 > f4.txt\necho mine > \"$MAIN/scratch.txt\"\ngit -C \"$MAIN\" stash push -q -u -- scratch.txt\n",
    );
    // Stashed on a branch of the agent's own, and on a detached HEAD: both at the same
    // commit as every other task's start.
    r.action(
        "5",
        &once(
            &r,
            "stash5",
            "git switch -q -c feat5\necho 5 > f5.txt\ngit stash -q -u\n",
        ),
    );
    r.action(
        "6",
        &once(
            &r,
            "stash6",
            "git switch -q --detach\necho 6 > f6.txt\ngit stash -q -u\n",
        ),
    );
    let out = r.auto(&["--parallel", "6"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let stashes = r.stashes();
    assert_eq!(stashes.len(), 6, "{stashes:?}");
    for (i, path, held) in [
        ("1", "^3:f1.txt", "1\n"),
        ("2", ":shared.txt", "two\n"),
        ("5", "^3:f5.txt", "5\n"),
        ("6", "^3:f6.txt", "6\n"),
    ] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(err.contains("stash@{"), "{err}");
        // Exactly one stash is named (no task claims another's), by its stable commit
        // id, and it holds the task's work.
        let named: Vec<&String> = stashes
            .iter()
            .map(|(id, _)| id)
            .filter(|id| err.contains(&id[..10]))
            .collect();
        assert_eq!(named.len(), 1, "task {i}: {err}: {stashes:?}");
        assert_eq!(r.git(&["show", &format!("{}{path}", named[0])]), held);
        assert_eq!(r.runs_of(i), 1, "not retried");
    }
    // Task 2's commit is kept on its branch.
    assert_eq!(r.git(&["show", "qw/demo/2:f2.txt"]), "2\n");
    for i in ["3", "4"] {
        assert_eq!(r.f.task(i)["status"], "completed", "{}", r.f.task(i));
    }
    // The user's stash is theirs: named by no task.
    let (user_stash, _) = stashes
        .iter()
        .find(|(_, m)| m.contains("on main"))
        .unwrap_or_else(|| panic!("{stashes:?}"));
    for i in ["1", "2", "3", "4", "5", "6"] {
        let t = r.f.task(i).to_string();
        assert!(!t.contains(&user_stash[..10]), "task {i} claims it: {t}");
    }
    assert_eq!(user_status(&r), before);
    r.assert_no_process();
    // Continue: the stashed tasks run again (without stashing) and everything merges;
    // the stash is left as it was.
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f2.txt", "f3.txt", "f4.txt"]);
    assert_eq!(r.stashes(), stashes);
}

#[test]
fn worktree_deleted_while_its_task_ran_is_named_and_its_commits_kept() {
    let r = Repo::new(&tasks(4));
    let before = user_status(&r);
    // Deleted from inside (its cwd gone), after a commit.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(&r, "rm1", "rm -rf \"$QW_WORKTREE\"")
        ),
    );
    // `git worktree remove -f -f` (it is locked) after a commit.
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2 || true\n{}",
            once(
                &r,
                "rm2",
                "cd /\ngit -C \"$MAIN\" worktree remove -f -f \"$QW_WORKTREE\""
            )
        ),
    );
    // Deleted with nothing committed.
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}",
            once(&r, "rm3", "cd /\nrm -rf \"$QW_WORKTREE\"")
        ),
    );
    r.action("4", "echo 4 > f4.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for i in ["1", "2", "3"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        let err = t["error"].as_str().unwrap();
        let wt = r.aux.path().join("wt");
        assert!(
            err.contains(&format!("the worktree `{}", wt.display()))
                && err.contains(&format!(
                    "/demo-{i}` of task {i} was deleted while the task ran"
                )),
            "{err}"
        );
        assert!(!err.contains("no report"), "{err}");
        if i == "3" {
            assert!(err.contains("no commit"), "{err}");
        } else {
            assert!(err.contains(&format!("`qw/demo/{i}`")), "{err}");
            assert_eq!(
                r.git(&["show", &format!("qw/demo/{i}:f{i}.txt")]),
                format!("{i}\n")
            );
        }
    }
    assert_eq!(r.f.task("4")["status"], "completed");
    assert_eq!(user_status(&r), before);
    assert_eq!(
        r.registered_worktrees(),
        1,
        "{}",
        r.git(&["worktree", "list"])
    );
    r.assert_no_process();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt", "f4.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

/// The tracked files of `main`.
fn main_files(r: &Repo) -> Vec<String> {
    r.git(&["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn worktree_wiped_by_its_agent_is_deleted_never_a_commit_deleting_every_file() {
    let r = Repo::new(&tasks(3));
    let files_before = main_files(&r);
    // The directory deleted and made again, empty, then a file written there.
    r.action(
        "1",
        &format!(
            "{}\necho 1 > f1.txt\n",
            once(
                &r,
                "wipe1",
                "d=$(pwd -P)\ncd /\nrm -rf \"$d\"\nmkdir -p \"$d\"\ncd \"$d\""
            )
        ),
    );
    // Everything deleted from inside, `.git` included, then a file written.
    r.action(
        "2",
        &format!(
            "{}\necho 2 > f2.txt\n",
            once(&r, "wipe2", "rm -rf -- * .[!.]*")
        ),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for i in ["1", "2"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(
            err.contains(&format!("of task {i} was deleted while the task ran")),
            "{err}"
        );
    }
    assert_eq!(r.f.task("3")["status"], "completed");
    // Nothing the task's branch or main holds deletes a tracked file.
    let after = main_files(&r);
    for f in &files_before {
        assert!(after.contains(f), "`{f}` was deleted from main: {after:?}");
        assert!(
            r.root().join(f).exists(),
            "`{f}` is gone from the main worktree"
        );
    }
    for i in ["1", "2"] {
        let b = format!("qw/demo/{i}");
        if r.git_ok(&["rev-parse", "-q", "--verify", &b]) {
            assert!(
                r.git(&["diff", "--name-only", "--diff-filter=D", "main", &b])
                    .trim()
                    .is_empty(),
                "{b} deletes files"
            );
        }
    }
    r.assert_no_process();
    // The files written in the wiped directories after the wipe were not saved: the
    // directories are left as they are (rev3 M4: qw never deletes files it cannot
    // account for), and named.
    let text = diag(&out);
    let container = r.container().unwrap();
    for i in ["1", "2"] {
        let d = container.join(format!("demo-{i}"));
        assert!(d.join(format!("f{i}.txt")).is_file(), "{}", d.display());
        assert!(
            text.contains(&format!(
                "a directory made again at `{}` holds files qw did not save",
                d.display()
            )),
            "{text}"
        );
    }
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in ["f1.txt", "f2.txt", "f3.txt"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    r.assert_no_half_done_git();
    r.assert_no_process();
    let after = main_files(&r);
    for f in &files_before {
        assert!(after.contains(f), "`{f}` was deleted from main: {after:?}");
    }
}

#[test]
fn worktree_agent_move_of_the_target_is_refused_even_with_a_commit_on_top() {
    let r = Repo::new(&tasks(3));
    let old = sha(&r, "main");
    // The agent moves `main` to its commit; then a commit is made in the main worktree
    // from its index (still the old commit's): that commit undoes the task's work, yet
    // `main` moved forward and the index follows it.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(
                &r,
                "move",
                "git update-ref refs/heads/main HEAD\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user"
            )
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let err = t["error"].as_str().unwrap();
    assert!(
        err.contains("moved") && err.contains("`qw/demo/1`") && err.contains("was not merged"),
        "{err}"
    );
    assert!(err.contains(&old[..10]), "{err}");
    // The task's work is kept on its branch, not counted as merged.
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    for i in ["2", "3"] {
        assert_eq!(r.runs_of(i), 0, "task {i} ran on a moved branch");
    }
    r.assert_no_process();
    // The user puts `main` back (dropping the stray commit); the workflow then
    // finishes, losing nothing.
    r.git(&["update-ref", "refs/heads/main", &old]);
    r.git(&["rm", "-q", "--cached", "user.txt"]);
    std::fs::remove_file(r.root().join("user.txt")).unwrap();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

#[test]
fn worktree_prune_and_reset_keep_the_branch_of_a_task_refused_for_a_moved_target() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(&r, "move", "git update-ref refs/heads/main HEAD")
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("`qw/demo/1` was not merged (it is kept)"),
        "{t}"
    );
    let kept = sha(&r, "qw/demo/1");
    // `main` now holds the branch (the agent moved it there): still no merge of qw's.
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &kept, "main"]));
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        diag(&out).contains("kept branch `qw/demo/1`"),
        "{}",
        diag(&out)
    );
    assert_eq!(sha(&r, "qw/demo/1"), kept);
    // `workflow-reset` prunes the same way (the task is pending after it).
    let out = r.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(sha(&r, "qw/demo/1"), kept);
    // The user puts `main` back: the task's commit is still reachable, on its branch.
    r.git(&["update-ref", "refs/heads/main", &old]);
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    r.assert_no_process();
}

#[test]
fn worktree_mixed_reset_of_the_main_worktree_is_refused() {
    let r = Repo::new(&tasks(2));
    let before = user_status(&r);
    let old = sha(&r, "main");
    // A commit of no task's (on a branch of the agent's own, from `main`), then the main
    // worktree's branch and index moved to it — not its files.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\n{}",
            once(
                &r,
                "move",
                "git checkout -q -b side main\necho 9 > f9.txt\ngit add f9.txt\ngit commit -qm side\ngit -C \"$MAIN\" reset -q --mixed side\ngit checkout -q qw/demo/1"
            )
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let err = t["error"].as_str().unwrap();
    assert!(
        err.contains("moved") && err.contains("files were not moved") && err.contains("f9.txt"),
        "{err}"
    );
    assert!(err.contains("`qw/demo/1` was not merged"), "{err}");
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    assert_eq!(r.runs_of("2"), 0);
    // qw touched no file: f1.txt is not in the main worktree.
    assert!(!r.root().join("f1.txt").exists());
    r.assert_no_process();
    r.git(&["update-ref", "refs/heads/main", &old]);
    r.git(&["reset", "-q"]);
    assert_eq!(user_status(&r), before);
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}
