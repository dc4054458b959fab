//! Repositories and worktrees an agent made inside its task worktree, and commits it left
//! behind where only a reflog (or nothing) held them (issue 14, item 4's class; review
//! rev1 H2, M3, M4, L1, L4, L5).
//!
//! Each test asserts where the work is: on disk, on the branches the output names, and
//! that no dangling commit holds it.

use crate::support::moves::{git_in, once, sha, task_dir, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// The commits `git fsck` calls dangling (unreachable from every ref and reflog).
fn dangling(r: &Repo) -> Vec<String> {
    r.git(&["fsck", "--no-progress", "--no-reflogs"])
        .lines()
        .filter_map(|l| l.strip_prefix("dangling commit "))
        .map(str::to_owned)
        .collect()
}

/// No dangling commit holds `file`.
fn no_dangling_holds(r: &Repo, file: &str) {
    for c in dangling(r) {
        assert!(
            !r.git_ok(&["cat-file", "-e", &format!("{c}:{file}")]),
            "dangling commit {c} holds {file}: {}",
            r.git(&["log", "-1", "--stat", &c])
        );
    }
}

#[test]
fn worktree_nested_repositories_are_never_merged_nor_deleted() {
    let r = Repo::new(&tasks(4));
    // The reproduction: a worktree on a new branch and a detached one with a commit,
    // each with an uncommitted file.
    r.action(
        "1",
        "echo 1 > f1.txt\ngit worktree add -q -b side1 sub\necho s > sub/s.txt\ngit -C sub add s.txt\ngit -C sub commit -qm s\necho unc > sub/unc.txt\n",
    );
    r.action(
        "2",
        "echo 2 > f2.txt\ngit worktree add -q --detach nested2\necho d > nested2/d.txt\ngit -C nested2 add d.txt\ngit -C nested2 commit -qm d\necho unc > nested2/unc2.txt\n",
    );
    // A repository of its own with a commit, committed by the agent as a gitlink; and
    // one with no commit yet (which `git add -A` cannot even stage).
    r.action(
        "3",
        "echo 3 > f3.txt\ngit init -q inner\necho i > inner/i.txt\ngit -C inner add i.txt\ngit -C inner commit -qm inner-work\necho iu > inner/iu.txt\ngit add inner f3.txt\ngit commit -qm with-a-gitlink\ngit init -q lib/empty\necho e > lib/empty/e.txt\n",
    );
    // A repository nested in an ignored directory.
    r.action(
        "4",
        "echo 4 > f4.txt\necho 'cache/' > .gitignore\nmkdir -p cache\ngit init -q cache/repo\necho c > cache/repo/c.txt\ngit -C cache/repo add c.txt\ngit -C cache/repo commit -qm cache-work\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for id in ["1", "2", "3", "4"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{}", r.f.task(id));
    }
    let check = |when: &str| {
        // Main holds every task's file and no gitlink.
        let tree = r.git(&["ls-tree", "-r", "main"]);
        assert!(!tree.contains("160000"), "{when}: {tree}");
        for f in ["f1.txt", "f2.txt", "f3.txt", "f4.txt"] {
            assert!(
                r.git_ok(&["cat-file", "-e", &format!("main:{f}")]),
                "{when}: {f}"
            );
        }
        // Every nested file is where the agent left it, every commit reachable.
        let (d1, d2, d3, d4) = (
            task_dir(&r, "1"),
            task_dir(&r, "2"),
            task_dir(&r, "3"),
            task_dir(&r, "4"),
        );
        for (dir, f) in [
            (&d1, "sub/s.txt"),
            (&d1, "sub/unc.txt"),
            (&d2, "nested2/d.txt"),
            (&d2, "nested2/unc2.txt"),
            (&d3, "inner/i.txt"),
            (&d3, "inner/iu.txt"),
            (&d3, "lib/empty/e.txt"),
            (&d4, "cache/repo/c.txt"),
        ] {
            assert!(dir.join(f).is_file(), "{when}: {} lost {f}", dir.display());
        }
        assert!(r.git_ok(&["cat-file", "-e", "side1:s.txt"]), "{when}");
        let detached = git_in(&r, &d2.join("nested2"), &["rev-parse", "HEAD"]);
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("{detached}:d.txt")]),
            "{when}"
        );
        assert_eq!(
            git_in(&r, &d3.join("inner"), &["log", "-1", "--format=%s"]),
            "inner-work"
        );
        assert_eq!(
            git_in(&r, &d4.join("cache/repo"), &["log", "-1", "--format=%s"]),
            "cache-work"
        );
        no_dangling_holds(&r, "d.txt");
        no_dangling_holds(&r, "s.txt");
    };
    check("after the run");
    // The message names each nested one and what it holds.
    for what in [
        "demo-1/sub` (a worktree of this repository on branch `side1`, 1 uncommitted file(s))",
        "demo-2/nested2` (a worktree of this repository, detached at",
        "with 1 commit(s) on no branch, 1 uncommitted file(s))",
        "demo-3/inner` (a repository of its own, 1 commit(s) in its own `.git`, 1 uncommitted file(s))",
        "demo-3/lib/empty` (a repository of its own, no commit(s) in its own `.git`, 1 uncommitted file(s))",
        "demo-4/cache/repo` (a repository of its own, 1 commit(s)",
        "kept the worktree",
    ] {
        assert!(text.contains(what), "no `{what}` in: {text}");
    }
    assert!(!text.contains("its unmerged work is kept"), "{text}");
    // A prune leaves them too, and says so.
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(diag(&out).contains("demo-2/nested2`"), "{}", diag(&out));
    check("after --prune");
    // Moved out by the user as the message says: the next prune removes qw's worktrees.
    let safe = r.aux.path().join("safe");
    std::fs::create_dir_all(&safe).unwrap();
    for (dir, n) in [(task_dir(&r, "1"), "sub"), (task_dir(&r, "2"), "nested2")] {
        r.git(&[
            "worktree",
            "move",
            &dir.join(n).display().to_string(),
            &safe.join(n).display().to_string(),
        ]);
    }
    for (dir, n) in [
        (task_dir(&r, "3"), "inner"),
        (task_dir(&r, "3"), "lib/empty"),
        (task_dir(&r, "4"), "cache/repo"),
    ] {
        std::fs::rename(dir.join(n), safe.join(n.replace('/', "-"))).unwrap();
    }
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        r.worktree_dirs().is_empty(),
        "{:?}: {}",
        r.worktree_dirs(),
        diag(&out)
    );
    for f in [
        "sub/unc.txt",
        "nested2/unc2.txt",
        "inner/iu.txt",
        "lib-empty/e.txt",
        "cache-repo/c.txt",
    ] {
        assert!(safe.join(f).is_file(), "{f}");
    }
    no_dangling_holds(&r, "d.txt");
    r.assert_no_process();
}

/// The task's one commit LOSTWORK (lost.txt) left behind by a reset, then `then`: kept
/// on the `@` branch the output names, no dangling commit holding it, the task's file
/// merged.
fn left_behind(setup: &[&[&str]], then: &str) {
    let r = Repo::new(&tasks(1));
    for args in setup {
        r.git(args);
    }
    r.action(
        "1",
        &format!(
            "echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit reset -q --hard HEAD~1\n{then}\necho 1 > f1.txt\n"
        ),
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    let at = text
        .find("are kept on branch `qw/demo/1@")
        .unwrap_or_else(|| panic!("no kept branch named in: {text}"));
    let rest = &text[at + "are kept on branch `".len()..];
    let kept = &rest[..rest.find('`').unwrap()];
    assert_eq!(
        r.git(&["log", "-1", "--format=%s", kept]).trim(),
        "LOSTWORK"
    );
    assert!(r.git_ok(&["cat-file", "-e", &format!("{kept}:lost.txt")]));
    no_dangling_holds(&r, "lost.txt");
    assert!(r.git_ok(&["cat-file", "-e", "main:f1.txt"]));
    assert!(!r.git_ok(&["cat-file", "-e", "main:lost.txt"]));
}

#[test]
fn worktree_commit_left_behind_before_more_than_200_moves_is_kept() {
    left_behind(
        &[],
        "i=0\nwhile [ $i -lt 201 ]; do git checkout -q --detach HEAD; git checkout -q qw/demo/1; i=$((i+1)); done",
    );
}

#[test]
fn worktree_commit_left_behind_with_reflogs_off_is_kept() {
    left_behind(&[&["config", "core.logAllRefUpdates", "false"]], "true");
    // And the worktree's HEAD log is what held it: written though logging is off.
    let r = Repo::new(&tasks(1));
    r.git(&["config", "core.logAllRefUpdates", "false"]);
    r.action(
        "1",
        "echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit rev-parse HEAD > \"$ACTIONS/../lost-sha\"\ngit reset -q --hard HEAD~1\ncp \"$(git rev-parse --git-dir)/logs/HEAD\" \"$ACTIONS/../head-log\"\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let lost = std::fs::read_to_string(r.aux.path().join("lost-sha")).unwrap();
    let log = std::fs::read_to_string(r.aux.path().join("head-log")).unwrap();
    assert!(log.contains(lost.trim()), "{log}");
}

#[test]
fn worktree_commit_left_behind_after_reflog_expire_is_kept() {
    left_behind(&[], "git reflog expire --expire=now --all");
    // Also when the branch's own log and HEAD's are deleted outright, and the agent's
    // detached commits are left.
    left_behind(
        &[],
        "rm -f \"$(git rev-parse --git-dir)/logs/HEAD\" \"$(git rev-parse --git-common-dir)/logs/refs/heads/qw/demo/1\"",
    );
}

#[test]
fn worktree_commit_left_behind_then_packed_by_the_agents_gc_is_kept() {
    // `git gc` puts the unreachable commit in a cruft pack and deletes its loose copy.
    left_behind(
        &[],
        "git reflog expire --expire=now --all\ngit gc -q\ntest -z \"$(find \"$(git rev-parse --git-common-dir)/objects\" -type f -path '*/objects/[0-9a-f][0-9a-f]/*')\"",
    );
    // `git repack -k` keeps it in the one new pack; `prune-packed` drops the loose copy.
    left_behind(
        &[],
        "git reflog expire --expire=now --all\ngit repack -q -a -d -k\ngit prune-packed",
    );
}

#[test]
fn worktree_kept_commits_name_is_taken_by_another_commit() {
    let r = Repo::new(&tasks(1));
    // The `@` name the lost commit would get already names its parent.
    r.action(
        "1",
        "echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit branch \"qw/demo/1@$(git rev-parse --short=7 HEAD)\" HEAD~1\ngit reset -q --hard HEAD~1\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    let at = text
        .find("are kept on branch `qw/demo/1@")
        .unwrap_or_else(|| panic!("no kept branch named in: {text}"));
    let rest = &text[at + "are kept on branch `".len()..];
    let kept = &rest[..rest.find('`').unwrap()];
    assert_eq!(
        r.git(&["log", "-1", "--format=%s", kept]).trim(),
        "LOSTWORK",
        "{text}"
    );
    assert_eq!(kept.len(), "qw/demo/1@".len() + 12, "{kept}");
    no_dangling_holds(&r, "lost.txt");
}

#[test]
fn worktree_moved_by_plain_mv_is_found_or_named_truthfully() {
    let r = Repo::new(&tasks(4));
    // The reproduction: moved beside itself (a file written after the move lands in the
    // moved directory), and moved into the test's temp dir, three levels up.
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\n{}",
            once(
                &r,
                "mv1",
                "echo c > c1.txt\ngit add c1.txt\ngit commit -qm c1\nmv \"$PWD\" \"$PWD.mv\"\necho after > after1.txt"
            )
        ),
    );
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{}",
            once(&r, "mv2", "mv \"$PWD\" \"$ACTIONS/../outside2\"")
        ),
    );
    // Moved where qw does not look, and moved into a new folder in qw's own folder.
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}",
            once(
                &r,
                "mv3",
                "mkdir -p \"$ACTIONS/../far/away\"\nmv \"$PWD\" \"$ACTIONS/../far/away/three\""
            )
        ),
    );
    r.action(
        "4",
        &format!(
            "echo 4 > f4.txt\n{}",
            once(
                &r,
                "mv4",
                "mkdir -p \"$PWD.box\"\nmv \"$PWD\" \"$PWD.box/four\""
            )
        ),
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let text = diag(&out);
    assert!(!text.contains("went with it"), "{text}");
    let aux = r.aux.path();
    // Found: named where it is, and its files saved on the task's branch from there.
    assert!(
        text.contains("demo-1.mv` while the task ran (by a plain `mv`"),
        "{text}"
    );
    assert!(
        text.contains("/outside2` while the task ran (by a plain `mv`"),
        "{text}"
    );
    for f in ["c1.txt", "f1.txt", "after1.txt"] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("qw/demo/1:{f}")]),
            "{f}: {text}"
        );
    }
    assert!(r.git_ok(&["cat-file", "-e", "qw/demo/2:f2.txt"]), "{text}");
    // Not found: said so, its files not claimed saved nor gone; they stay where they are.
    for id in ["3", "4"] {
        assert!(
            text.contains(&format!("of task {id} was deleted while the task ran (or moved away where qw did not find it); it held no commit beyond `main`, and its uncommitted files were not saved (they are not there)")),
            "{id}: {text}"
        );
    }
    let three = aux.join("far/away/three");
    assert!(three.join("f3.txt").is_file());
    let container = r.container().expect("qw's worktree folder");
    let four = container.join("demo-4.box/four");
    assert!(four.join("f4.txt").is_file());
    // The prune does not call the moved one's files saved.
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let p = diag(&out);
    assert!(
        p.contains(
            "demo-4.box` alone: it is not a git worktree and holds files that may be on no branch"
        ),
        "{p}"
    );
    assert!(!p.contains("saved on its branch"), "{p}");
    assert!(four.join("f4.txt").is_file());
    // The way on: everything merged, the moved-away files where they were.
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in [
        "c1.txt",
        "f1.txt",
        "after1.txt",
        "f2.txt",
        "f3.txt",
        "f4.txt",
    ] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("main:{f}")]),
            "{f}: {}",
            diag(&out)
        );
    }
    assert!(three.join("f3.txt").is_file() && four.join("f4.txt").is_file());
    r.assert_no_process();
}

#[test]
fn worktree_prune_hint_for_an_own_history_branch_works() {
    let r = Repo::new(&tasks(1));
    r.action(
        "1",
        "git checkout -q --orphan t\ngit rm -rfq .\necho o > o1.txt\ngit add o1.txt\ngit commit -qm o\ngit checkout -q -B qw/demo/1 t\n",
    );
    let out = r.auto(&["--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    let at = text
        .find("merge it (`git merge --allow-unrelated-histories qw/demo/1@")
        .unwrap_or_else(|| panic!("{text}"));
    let rest = &text[at + "merge it (`".len()..];
    let cmd = &rest[..rest.find('`').unwrap()];
    // The printed command works, and a related branch still gets the plain one.
    let args: Vec<&str> = cmd.split(' ').skip(1).chain(["-m", "take it"]).collect();
    r.git(&args);
    assert!(r.git_ok(&["cat-file", "-e", "main:o1.txt"]));
    assert!(text.contains("merge it (`git merge qw/demo/1`)"), "{text}");
}

#[test]
fn worktree_users_worktree_with_a_qw_like_lock_reason_is_not_pruned() {
    let r = Repo::new(&tasks(1));
    let dir = r.aux.path().join("feature-x");
    let d = dir.display().to_string();
    r.git(&["worktree", "add", "-q", "-b", "feature-x", &d]);
    std::fs::write(dir.join("c.txt"), "c\n").unwrap();
    git_in(&r, &dir, &["add", "c.txt"]);
    git_in(&r, &dir, &["commit", "-qm", "c"]);
    std::fs::write(dir.join("u.txt"), "u\n").unwrap();
    r.git(&[
        "worktree",
        "lock",
        "--reason",
        "qw: keep until the review",
        &d,
    ]);
    let tip = sha(&r, "feature-x");
    for args in [&["worktrees"][..], &["worktrees", "--prune"][..]] {
        let out = r.run(args);
        assert_eq!(code(&out), 0, "{}", diag(&out));
        assert!(!diag(&out).contains("feature"), "{args:?}: {}", diag(&out));
    }
    assert!(dir.join("u.txt").is_file() && dir.join("c.txt").is_file());
    assert_eq!(sha(&r, "feature-x"), tip);
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/qw/feature/x"]));
    assert!(
        r.git(&["worktree", "list", "--porcelain"])
            .contains("locked qw: keep until the review")
    );
}

/// The text between the backquotes after `are kept on branch ` (the `@` branch named).
fn kept_branch(text: &str, prefix: &str) -> Option<String> {
    let at = text.find(&format!("are kept on branch `{prefix}"))?;
    let rest = &text[at + "are kept on branch `".len()..];
    Some(rest[..rest.find('`')?].to_owned())
}

/// rev3 M5: an agent amending or squashing its own commits left nothing outside its
/// result (no `@` branch, nothing said); a redone commit whose change the result really
/// lacks (x3.txt) is still kept and named, with `git diff` to see it.
#[test]
fn worktree_own_amend_or_squash_is_not_left_outside_its_result() {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\necho 1b >> f1.txt\ngit commit -qa --amend --no-edit\n",
    );
    r.action(
        "2",
        "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2a\necho 2b >> f2.txt\ngit commit -qam f2b\ngit reset -q --soft HEAD~2\ngit commit -qm squashed\n",
    );
    r.action(
        "3",
        "echo 3 > f3.txt\necho x > x3.txt\ngit add f3.txt x3.txt\ngit commit -qm both\ngit reset -q --soft HEAD~1\ngit rm -q --cached x3.txt\nrm x3.txt\ngit commit -qm only-f3\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for i in ["1", "2"] {
        assert!(!text.contains(&format!("qw/demo/{i}@")), "{text}");
    }
    assert!(
        r.branches()
            .iter()
            .all(|b| !b.starts_with("qw/demo/1@") && !b.starts_with("qw/demo/2@")),
        "{:?}",
        r.branches()
    );
    assert_eq!(r.git(&["show", "main:f1.txt"]), "1\n1b\n");
    assert_eq!(r.git(&["show", "main:f2.txt"]), "2\n2b\n");
    assert!(r.git_ok(&["cat-file", "-e", "main:f3.txt"]));
    assert!(!r.git_ok(&["cat-file", "-e", "main:x3.txt"]));
    let kept = kept_branch(&text, "qw/demo/3@").unwrap_or_else(|| panic!("{text}"));
    assert!(r.git_ok(&["cat-file", "-e", &format!("{kept}:x3.txt")]));
    assert!(text.contains("`git diff "), "{text}");
    assert!(!text.contains(&format!("git merge {kept}")), "{text}");
    no_dangling_holds(&r, "x3.txt");
    r.assert_no_process();
}

/// rev3 M3: a sibling's pre-amend commit (its worktree removed before this task is
/// saved) and the user's pre-amend commit on the target are not charged to the task.
#[test]
fn worktree_others_leftovers_are_not_charged_to_a_later_task() {
    let r = Repo::new(&tasks(2));
    let wait = "n=0\nuntil git cat-file -e main:f2.txt 2>/dev/null && ! git worktree list --porcelain | grep -q 'refs/heads/qw/demo/2$'; do n=$((n+1)); [ $n -lt 1200 ] || exit 1; sleep 0.1; done\n";
    r.action(
        "1",
        &format!(
            "{wait}echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\necho u2 > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" commit -qam 'user amended' --amend\necho 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n"
        ),
    );
    r.action(
        "2",
        "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\ngit commit -q --amend -m 'f2 better'\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(!text.contains("are kept on branch"), "{text}");
    assert!(
        r.branches().iter().all(|b| !b.contains('@')),
        "{:?}",
        r.branches()
    );
    for f in ["f1.txt", "f2.txt", "user.txt"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    r.assert_no_process();
}

/// rev3 M10: a repository the agent makes in a directory the project already tracks
/// (`git init src`; or with its `.git` a file, `--separate-git-dir`) is nested too: its
/// files are not merged as the task's, and the task worktree holding it (its `.git`
/// with its commit) is kept and named, not deleted.
#[test]
fn worktree_repository_made_in_a_tracked_directory_is_kept_not_merged() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "git init -q src\necho n > src/new.txt\ngit -C src add -A\ngit -C src commit -qm INNERWORK\necho 1 > f1.txt\n",
    );
    r.action(
        "2",
        "mkdir -p lib\necho l > lib/l.txt\ngit add lib/l.txt\ngit commit -qm lib\ngit init -q --separate-git-dir=\"$PWD/../sep2.git\" lib\necho n2 > lib/new2.txt\ngit -C lib add new2.txt\ngit -C lib commit -qm INNER2\necho 2 > f2.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for (id, dir, new, msg) in [
        ("1", "src", "src/new.txt", "INNERWORK"),
        ("2", "lib", "lib/new2.txt", "INNER2"),
    ] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("main:f{id}.txt")]),
            "{text}"
        );
        assert!(
            !r.git_ok(&["cat-file", "-e", &format!("main:{new}")]),
            "{new} merged: {text}"
        );
        let d = task_dir(&r, id);
        assert!(d.join(new).is_file(), "{new} lost: {text}");
        assert_eq!(git_in(&r, &d.join(dir), &["log", "-1", "--format=%s"]), msg);
        assert!(
            text.contains(&format!(
                "demo-{id}/{dir}` (a repository of its own, 1 commit(s)"
            )),
            "{text}"
        );
    }
    assert!(r.git_ok(&["cat-file", "-e", "main:src/keep.txt"]));
    assert!(r.git_ok(&["cat-file", "-e", "main:lib/l.txt"]));
    r.assert_no_process();
}

#[test]
fn worktree_submodule_added_by_an_agent_brings_no_gitmodules_entry() {
    let r = Repo::new(&tasks(3));
    // The target already names a submodule of its own: that entry stays as it is.
    let base = "[submodule \"old\"]\n\tpath = old\n\turl = https://example.invalid/old\n";
    std::fs::write(r.root().join(".gitmodules"), base).unwrap();
    r.git(&["add", ".gitmodules"]);
    r.git(&["commit", "-qm", "gitmodules"]);
    let lib = r.aux.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git_in(&r, &lib, &["init", "-q"]);
    std::fs::write(lib.join("l.txt"), "l\n").unwrap();
    git_in(&r, &lib, &["add", "l.txt"]);
    git_in(&r, &lib, &["commit", "-qm", "lib"]);
    let add = |dir: &str| {
        format!(
            "git -c protocol.file.allow=always submodule --quiet add {} {dir}\n",
            lib.display()
        )
    };
    // The reproduction: `git submodule add`, left staged.
    r.action("1", &format!("echo 1 > f1.txt\n{}", add("sub1")));
    // Committed by the agent, with a change of its own to `.gitmodules` kept.
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{}git config --file .gitmodules qw.note kept\ngit add -A\ngit commit -qm with-a-submodule\n",
            add("deps/sub2")
        ),
    );
    // Two at once, one of them staged and the other committed.
    r.action(
        "3",
        &format!(
            "echo 3 > f3.txt\n{}git commit -qm first\n{}",
            add("sub3a"),
            add("sub3b")
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for id in ["1", "2", "3"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{}", r.f.task(id));
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:f{id}.txt")]));
    }
    // No gitlink and no entry for them on the target; the target's own entry and the
    // agent's own change to the file are there.
    let tree = r.git(&["ls-tree", "-r", "main"]);
    assert!(!tree.contains("160000"), "{tree}");
    let modules = r.git(&["show", "main:.gitmodules"]);
    assert!(modules.contains("path = old"), "{modules}");
    assert!(modules.contains("note = kept"), "{modules}");
    for sub in ["sub1", "deps/sub2", "sub3a", "sub3b"] {
        assert!(!modules.contains(&format!("path = {sub}")), "{modules}");
        // Each is kept where the agent made it, and named.
        assert!(text.contains(&format!("/{sub}`")), "{sub}: {text}");
    }
    assert!(text.contains("`.gitmodules` entries"), "{text}");
    assert!(
        task_dir(&r, "1").join("sub1/l.txt").is_file(),
        "the nested repository is kept"
    );
}
