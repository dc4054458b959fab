//! Review rev5b F16, F17, F9, F15 and fix5o's leftovers: another task's work reaching the
//! target through a popped stash entry (refused like a rebase onto its branch), a
//! conflicted task squash-merged by hand (seen as merged), the ways on printed after a
//! refusal (each works as printed and never merges what was refused), and a commit an
//! agent lost after a `reflog expire` (never charged to a sibling). Every printed command
//! is run as printed; every test asserts where the work is afterwards.

use std::path::Path;

use crate::support::moves::{cont, has, once, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// Wait (bounded: two minutes, then fail the agent) until `cond` (a sh condition) holds.
fn wait_for(cond: &str) -> String {
    format!("n=0\nuntil {cond}; do n=$((n+1)); [ $n -lt 1200 ] || exit 1; sleep 0.1; done\n")
}

fn evidence(r: &Repo, id: &str) -> String {
    let t = r.f.task(id);
    format!(
        "{} {}",
        t["error"].as_str().unwrap_or(""),
        t["evidence"].as_str().unwrap_or("")
    )
}

/// Every command in backquotes in `text` that starts with `prefix`, each once, in order.
fn printed_all(text: &str, prefix: &str) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for c in text.split('`').skip(1).step_by(2) {
        if c.starts_with(prefix) && !all.iter().any(|a| a == c) {
            all.push(c.to_owned());
        }
    }
    all
}

/// Run a printed command line through `sh -c` in `dir`, as the user would; it must
/// succeed.
fn sh_in(dir: &Path, line: &str) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "`{line}`: {}", diag(&out));
}

/// The stash entries' commits, newest first.
fn stash_commits(r: &Repo) -> Vec<String> {
    r.git(&["stash", "list", "--format=%H"])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// rev5b F16: task 2 stashes its (failing) work; task 1 pops that entry into its own
/// worktree and commits it with its own work. Before: a warning, and task 2's `s2.txt`
/// reached `main` through task 1's merge. Now task 1 is refused as for a rebase onto
/// task 2's branch: the entry's changes are taken out of its files, the entry is back
/// in the stash, and the printed `workflow-continue` merges task 1's own work only.
/// Shape 2: a `-u` entry changing a tracked file and adding an untracked one, popped and
/// left uncommitted.
#[test]
fn fix6s_sibling_stash_entry_popped_into_a_task_is_refused_and_taken_out() {
    for shape in ["committed", "uncommitted-u"] {
        let r = Repo::new(&tasks(2));
        let popped = r.aux.path().join("popped");
        let (stash2, after1) = match shape {
            "committed" => (
                "echo secret2 > s2.txt\ngit add s2.txt\ngit stash -q\n",
                "git add -A\ngit commit -qm 'f1 (and what was in the stash)'\n",
            ),
            _ => (
                "echo secret2 > s2.txt\necho changed-by-2 > shared.txt\ngit stash push -q -u -- s2.txt shared.txt\n",
                "",
            ),
        };
        r.action(
            "2",
            &once(
                &r,
                "s2",
                &format!(
                    "{stash2}{}exit 1\n",
                    wait_for(&format!("[ -e {} ]", popped.display()))
                ),
            ),
        );
        r.action(
            "1",
            &once(
                &r,
                "s1",
                &format!(
                    "{}echo 1 > f1.txt\ngit stash pop -q\ntouch {}\n{after1}",
                    wait_for("git stash list | grep -q qw/demo/2"),
                    popped.display()
                ),
            ),
        );
        let out = r.auto(&["--parallel", "2"]);
        assert_eq!(code(&out), 1, "{shape}: {}", diag(&out));
        let e1 = evidence(&r, "1");
        assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{shape}: {e1}");
        assert!(e1.contains("another task's stash entry"), "{shape}: {e1}");
        assert!(!has(&r, "main", "s2.txt"), "{shape}: s2.txt on main");
        assert_eq!(r.git(&["show", "main:shared.txt"]), "base\n", "{shape}");
        // The entry is back in the stash, holding task 2's work.
        let s = stash_commits(&r);
        assert!(
            s.iter()
                .any(|c| r.git_ok(&["cat-file", "-e", &format!("{c}:s2.txt")])
                    || r.git_ok(&["cat-file", "-e", &format!("{c}^3:s2.txt")])),
            "{shape}: {s:?} / {e1}"
        );
        // The task's kept branch holds its own work and not task 2's.
        assert!(has(&r, "qw/demo/1", "f1.txt"), "{shape}");
        assert!(!has(&r, "qw/demo/1", "s2.txt"), "{shape}");
        r.assert_no_process();
        // The way on, as printed: continue merges task 1's own work only.
        r.action("2", "echo 2 > f2.txt\n");
        let out = cont(&r, &["--parallel", "2"]);
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
        assert!(!has(&r, "main", "s2.txt"), "{shape}: s2.txt on main");
        assert_eq!(r.git(&["show", "main:shared.txt"]), "base\n", "{shape}");
    }
}

/// Tasks 1 and 2 change `shared.txt`; task 2's merge (after task 1's) conflicts.
fn conflicted_task_2(r: &Repo) -> std::process::Output {
    r.action("1", "echo one > shared.txt\ngit commit -qam s1\n");
    r.action(
        "2",
        &format!(
            "echo two > shared.txt\necho t2 > t2.txt\ngit add -A\ngit commit -qm s2\n{}",
            wait_for("git -C \"$MAIN\" show main:shared.txt | grep -q one")
        ),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let e2 = evidence(r, "2");
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{e2}");
    // The ways out are named, each as a command.
    for way in [
        "git merge qw/demo/2",
        "git merge --squash qw/demo/2",
        "git branch -D qw/demo/2",
    ] {
        assert!(e2.contains(&format!("`{way}`")), "{way}: {e2}");
    }
    out
}

/// rev5b F17: a conflicted task squash-merged by hand (`git merge --squash`, resolved,
/// committed — the conflict resolved to new text, or to the task's side) is seen as
/// merged: `workflow-continue` records it completed without running its agent again.
/// Shape 3: a commit on the target that only resolves the conflicted path, without the
/// task's other change (`t2.txt`), is no squash: the task runs again.
#[test]
fn fix6s_conflicted_task_squash_merged_by_hand_is_seen_as_merged() {
    for shape in ["resolved", "theirs", "not-squashed"] {
        let r = Repo::new(&tasks(3));
        conflicted_task_2(&r);
        let top = r.root().to_path_buf();
        match shape {
            "not-squashed" => {
                sh_in(
                    &top,
                    "echo resolved > shared.txt && git commit -qam 'my own edit'",
                );
            }
            _ => {
                // Conflicts (exit 1), as it did for qw.
                let sq = r.git_cmd(&top, &["merge", "--squash", "qw/demo/2"]);
                assert!(!sq.status.success(), "{shape}: {}", diag(&sq));
                if shape == "resolved" {
                    sh_in(&top, "echo resolved > shared.txt");
                } else {
                    sh_in(&top, "git checkout --theirs -- shared.txt");
                }
                sh_in(
                    &top,
                    "git add shared.txt t2.txt && git commit -qm 'squash task 2 by hand'",
                );
            }
        }
        r.action(
            "2",
            "echo two > shared.txt\necho t2 > t2.txt\ngit add -A\ngit commit -qm s2 || true\n",
        );
        let out = cont(&r, &["--parallel", "2"]);
        if shape == "not-squashed" {
            // Runs again, and conflicts again (the task still changes shared.txt).
            assert_eq!(r.runs_of("2"), 2, "{shape}: {}", diag(&out));
            assert!(!has(&r, "main", "t2.txt"), "{shape}");
            continue;
        }
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
        assert_eq!(r.runs_of("2"), 1, "{shape}: not run again: {}", diag(&out));
        assert!(
            stderr(&out).contains("merged into the target by hand"),
            "{shape}: {}",
            diag(&out)
        );
        assert_eq!(r.f.task("2")["status"], "completed", "{shape}");
        let want = if shape == "resolved" {
            "resolved\n"
        } else {
            "two\n"
        };
        assert_eq!(r.git(&["show", "main:shared.txt"]), want, "{shape}");
        r.assert_all_merged(&["f3.txt", "t2.txt"]);
    }
}

/// `qw worktrees --prune`, as the user runs it; its output.
fn prune(r: &Repo) -> std::process::Output {
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    out
}

/// rev5b F9: task 1's agent rebases onto (or merges) failing task 2's branch. (a) With a
/// nested repository its worktree is kept: the refusal's scratch-worktree command works
/// as printed once the kept worktree is taken out and pruned, as it says; (b) `qw
/// worktrees --prune` never advises `git merge` of a branch holding task 2's unchecked
/// commit: it names it and prints the own-commits way, which works as printed. Either way
/// `workflow-continue` merges task 1's own work and never task 2's.
#[test]
fn fix6s_ways_on_after_a_sibling_refusal_work_and_never_merge_the_sibling() {
    for shape in ["rebase-kept", "merge-prune"] {
        let r = Repo::new(&tasks(2));
        let sync = if shape == "rebase-kept" {
            "git rebase -q qw/demo/2\ngit init -q inner\necho i > inner/i.txt\ngit -C inner add i.txt\ngit -C inner commit -qm innerwork\n"
        } else {
            "git merge -q --no-edit qw/demo/2\n"
        };
        r.action(
            "1",
            &once(
                &r,
                "s1",
                &format!(
                    "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n{sync}",
                    wait_for("git log --format=%s qw/demo/2 -- | grep -q bad2")
                ),
            ),
        );
        r.action(
            "2",
            "echo bad > bad2.txt\ngit add bad2.txt\ngit commit -qm bad2\nexit 1\n",
        );
        let out = r.auto(&["--parallel", "2"]);
        assert_eq!(code(&out), 1, "{shape}: {}", diag(&out));
        let e1 = evidence(&r, "1");
        assert!(
            e1.contains("brings in commits of another task"),
            "{shape}: {e1}"
        );
        assert!(!has(&r, "main", "bad2.txt"), "{shape}");
        let top = r.root().to_path_buf();
        if shape == "rebase-kept" {
            let scratch = printed_all(&e1, "git worktree add");
            assert_eq!(scratch.len(), 1, "{e1}");
            // Pasted now, git refuses it (the kept worktree holds the branch) and
            // changes nothing; the refusal says to run it after the prune.
            assert!(e1.contains("after the `qw worktrees --prune`"), "{e1}");
            let kept = r.container().expect("qw's worktree folder").join("demo-1");
            assert!(kept.join("inner").is_dir(), "{}", diag(&out));
            std::fs::rename(kept.join("inner"), r.aux.path().join("inner-out")).unwrap();
            let p = prune(&r);
            let said = stderr(&p);
            assert!(!said.contains("`git merge qw/demo/1`"), "{said}");
            assert!(!kept.exists(), "{said}");
            sh_in(&top, &scratch[0]);
        } else {
            let p = prune(&r);
            let said = stderr(&p);
            let line = said
                .lines()
                .find(|l| l.contains("kept branch `qw/demo/1`"))
                .unwrap_or_else(|| panic!("no line of qw/demo/1: {said}"));
            assert!(!line.contains("git merge"), "{line}");
            assert!(line.contains("qw/demo/2"), "{line}");
            let remake = printed_all(line, "git worktree add");
            assert_eq!(remake.len(), 1, "{line}");
            sh_in(&top, &remake[0]);
        }
        assert!(has(&r, "qw/demo/1", "f1.txt"), "{shape}");
        assert!(!has(&r, "qw/demo/1", "bad2.txt"), "{shape}");
        let out = cont(&r, &["--parallel", "2"]);
        assert!(has(&r, "main", "f1.txt"), "{shape}: {}", diag(&out));
        assert!(!has(&r, "main", "bad2.txt"), "{shape}: {}", diag(&out));
        assert_eq!(r.f.task("1")["status"], "completed", "{shape}");
        r.assert_no_process();
    }
}

/// The pack names (`pack-<hash>`) of the project's repository, and whether each is a
/// cruft pack (has a `.mtimes`).
fn packs(r: &Repo) -> Vec<(String, bool)> {
    let dir = r.root().join(".git/objects/pack");
    let mut out: Vec<(String, bool)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_suffix(".idx")?.to_owned();
            let cruft = dir.join(format!("{name}.mtimes")).is_file();
            Some((name, cruft))
        })
        .collect();
    out.sort();
    out
}

/// rev5b F18: a `git gc` in the main worktree while two tasks run writes one new pack
/// holding every object: it is read once by the run (not by every task's save), and a
/// commit an agent then loses is still found (shape 2: in the cruft pack, read only for
/// the objects its `.mtimes` says were written since the task started).
#[test]
fn fix6s_a_repack_during_the_run_is_read_once_not_per_task() {
    for shape in ["gc", "gc-and-lost"] {
        let mut r = Repo::new(&tasks(3));
        r.f.set("QW_LOG", "debug");
        r.git(&["gc", "-q"]);
        let gc_done = r.aux.path().join("gc-done");
        // The repack runs once tasks 2 and 3 run ("while two tasks run": a task started
        // after it has no new pack to read, and a `git worktree add` of qw's at the same
        // moment can make the gc's `reflog expire` fail).
        let started = |i: &str| r.aux.path().join(format!("started{i}"));
        r.action(
            "1",
            &format!(
                "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\ngit -C \"$MAIN\" gc -q\ntouch {}\n",
                wait_for(&format!(
                    "[ -e {} ] && [ -e {} ]",
                    started("2").display(),
                    started("3").display()
                )),
                gc_done.display()
            ),
        );
        let lose = if shape == "gc-and-lost" {
            "echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit reset -q --hard HEAD~1\ngit reflog expire --expire=now --all\ngit gc -q\n"
        } else {
            ""
        };
        for i in ["2", "3"] {
            r.action(
                i,
                &format!(
                    "touch {}\n{}{}echo {i} > f{i}.txt\n",
                    started(i).display(),
                    wait_for(&format!("[ -e {} ]", gc_done.display())),
                    if i == "2" { lose } else { "" }
                ),
            );
        }
        let out = r.auto(&["--parallel", "3"]);
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
        r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
        let text = diag(&out);
        let reads: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("lost: reading the objects of ") && !l.contains("cruft"))
            .collect();
        let mut names: Vec<&str> = reads
            .iter()
            .filter_map(|l| l.split("lost: reading the objects of ").nth(1))
            .filter_map(|l| l.split([' ', ',']).next())
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len(), "{shape}: a pack read twice: {reads:?}");
        assert!(
            packs(&r).iter().any(|(_, cruft)| !cruft),
            "{shape}: {:?}",
            packs(&r)
        );
        if shape == "gc-and-lost" {
            assert!(text.contains("kept on branch `qw/demo/2@"), "{text}");
        }
    }
}

/// rev5b F15: task 1's agent makes a commit, drops it (`reset --hard`, or a `checkout -B`
/// that leaves no `ORIG_HEAD`), expires every reflog and runs `git gc`; task 2 saves
/// first. Before: the commit was kept as task 2's (`qw/demo/2@…`). Now the worktree whose
/// `ORIG_HEAD` names it owns it (`qw/demo/1@…`), and with no such trace it is kept as of
/// unknown task (`qw/demo/unknown@…`), charged to neither.
#[test]
fn fix6s_commit_lost_after_reflog_expire_is_never_charged_to_a_sibling() {
    for shape in ["reset", "checkout-B"] {
        let r = Repo::new(&tasks(2));
        let lost_done = r.aux.path().join("lost-done");
        // Task 1 loses its commit only once task 2's agent runs: a task started after
        // the commit was written does not count it as written while it ran (its start
        // marker is younger), however late a loaded machine starts it.
        let started2 = r.aux.path().join("started2");
        let drop = if shape == "reset" {
            "git reset -q --hard HEAD~1\n"
        } else {
            "git checkout -q -B qw/demo/1 HEAD~1\n"
        };
        r.action(
            "1",
            &format!(
                "{}echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\n{drop}git reflog expire --expire=now --all\ngit gc -q\ntouch {}\n{}echo 1 > f1.txt\n",
                wait_for(&format!("[ -e {} ]", started2.display())),
                lost_done.display(),
                wait_for("git -C \"$MAIN\" cat-file -e main:f2.txt 2>/dev/null")
            ),
        );
        r.action(
            "2",
            &format!(
                "touch {}\n{}echo 2 > f2.txt\n",
                started2.display(),
                wait_for(&format!("[ -e {} ]", lost_done.display()))
            ),
        );
        let out = r.auto(&["--parallel", "2"]);
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
        let text = diag(&out);
        assert!(
            !text.contains("qw/demo/2@"),
            "{shape}: charged to task 2: {text}"
        );
        let want = if shape == "reset" {
            "kept on branch `qw/demo/1@"
        } else {
            "kept on branch `qw/demo/unknown@"
        };
        let at = text
            .find(want)
            .unwrap_or_else(|| panic!("{shape}: LOSTWORK not kept as `{want}`: {text}"));
        let rest = &text[at + "kept on branch `".len()..];
        let kept = &rest[..rest.find('`').unwrap()];
        assert_eq!(
            r.git(&["log", "-1", "--format=%s", kept]).trim(),
            "LOSTWORK",
            "{shape}"
        );
        if shape == "checkout-B" {
            assert!(text.contains("of unknown task"), "{text}");
            assert!(!text.contains("qw/demo/1@"), "{shape}: {text}");
        }
    }
}

/// The notes qw keeps of its merges (`<git dir>/qw-merges/<merge>`), by name.
fn merge_notes(r: &Repo) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(r.root().join(".git/qw-merges"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// fix5o's leftover: `qw-merges/` notes were never pruned. `qw worktrees --prune` forgets
/// the note of a merge no branch holds any more (`main` reset below it) and keeps the
/// note of one still on `main`.
#[test]
fn fix6s_prune_forgets_notes_of_merges_no_branch_holds() {
    let r = Repo::new(&tasks(2));
    r.action("1", "echo 1 > f1.txt\n");
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let notes = merge_notes(&r);
    assert_eq!(notes.len(), 2, "{notes:?}");
    let last = r.git(&["rev-parse", "main"]).trim().to_owned();
    assert!(notes.contains(&last), "{notes:?}");
    // The user drops the last merge from `main`.
    r.git(&["reset", "-q", "--hard", "HEAD^1"]);
    let p = prune(&r);
    assert!(
        stderr(&p).contains("forgot qw's notes of 1 merge(s)"),
        "{}",
        diag(&p)
    );
    let left = merge_notes(&r);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left.contains(&last), "{left:?}");
    assert!(
        r.git_ok(&["merge-base", "--is-ancestor", &left[0], "main"]),
        "{left:?}"
    );
}
