//! The stash (`refs/stash` and its reflog) is shared by every worktree of a repository
//! (issue 14, item 4's class): an agent in its task worktree can stash its own work
//! away, or touch the user's entries. Each test asserts that nothing is lost (what is
//! gone is put back by the printed command, or merged and said), that no task is
//! blamed for another's entry, and that `workflow-continue` then finishes the spec.

use crate::support::moves::{once, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// Wait (bounded: two minutes, then fail the agent) until `cond` (a sh condition) holds.
fn wait_for(cond: &str) -> String {
    format!("n=0\nuntil {cond}; do n=$((n+1)); [ $n -lt 1200 ] || exit 1; sleep 0.1; done\n")
}

/// `(commit, message)` of each stash entry, newest first.
fn stashes(r: &Repo) -> Vec<(String, String)> {
    r.git(&["stash", "list", "--format=%H %gs"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

/// Every `` `git stash …` `` command quoted in `text`, each once, in order.
fn printed_commands(text: &str, prefix: &str) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for c in text.split('`').skip(1).step_by(2) {
        if c.starts_with(prefix) && !all.iter().any(|a| a == c) {
            all.push(c.to_owned());
        }
    }
    all
}

/// Run a printed command line in the project, as the user would (a shell).
fn sh(r: &Repo, line: &str) {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(line).current_dir(r.root());
    let out = c.output().unwrap();
    assert!(out.status.success(), "{line}: {}", diag(&out));
}

fn evidence(r: &Repo, id: &str) -> String {
    let t = r.f.task(id);
    format!(
        "{} {}",
        t["error"].as_str().unwrap_or(""),
        t["evidence"].as_str().unwrap_or("")
    )
}

/// An agent's own branch named like qw's (`qw/demo/1-fix`, `qw/other/9`) does not hide
/// its stash: the task fails naming the entry and its commit, which holds the work.
#[test]
fn worktree_stash_on_an_agent_branch_named_like_qws_fails_its_task_naming_it() {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\n{}",
            once(
                &r,
                "s1",
                "git switch -q -c qw/demo/1-fix\ngit stash -q -u\n"
            )
        ),
    );
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{}",
            once(
                &r,
                "s2",
                "git switch -q -c qw/other/9\ngit add f2.txt\ngit stash -q\n"
            )
        ),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let all = stashes(&r);
    assert_eq!(all.len(), 2, "{all:?}");
    for (i, path, held) in [("1", "^3:f1.txt", "1\n"), ("2", ":f2.txt", "2\n")] {
        let t = r.f.task(i);
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(err.contains("git stash apply"), "{err}");
        let named: Vec<&String> = all
            .iter()
            .map(|(c, _)| c)
            .filter(|c| err.contains(&c[..12]))
            .collect();
        assert_eq!(named.len(), 1, "task {i}: {err}: {all:?}");
        assert_eq!(r.git(&["show", &format!("{}{path}", named[0])]), held);
    }
    assert_eq!(r.f.task("3")["status"], "completed");
    r.assert_no_process();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    assert_eq!(stashes(&r), all, "the stash is left as it was");
}

/// The user's two entries (a tracked change with a message holding a quote, untracked
/// files), made before the run.
fn user_entries(r: &Repo) -> Vec<(String, String)> {
    r.f.p.write("shared.txt", "user edit\n");
    r.git(&["stash", "push", "-q", "-m", "mine: it's one"]);
    r.f.p.write("u.txt", "untracked of mine\n");
    r.git(&["stash", "push", "-q", "-u"]);
    let s = stashes(r);
    assert_eq!(s.len(), 2);
    s
}

/// An agent's `git stash clear` (and a `drop`) of the user's entries: the task's
/// evidence and a warning line name each with `git stash store -m "…" <commit>`;
/// running the printed commands puts them back, messages and content.
#[test]
fn worktree_user_stash_entries_an_agent_clears_or_drops_are_named_and_put_back() {
    for (name, act) in [
        ("clear", "git stash clear\n"),
        ("drop", "git stash drop -q\ngit stash drop -q\n"),
    ] {
        let r = Repo::new(&tasks(2));
        let before = user_entries(&r);
        r.action("1", &once(&r, "s1", &format!("{act}echo 1 > f1.txt\n")));
        r.action("2", "echo 2 > f2.txt\n");
        let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
        assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
        assert!(stashes(&r).is_empty(), "{name}");
        let ev = evidence(&r, "1");
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("warning: "), "{name}: {text}");
        let cmds = printed_commands(&text, "git stash store");
        assert_eq!(cmds.len(), 2, "{name}: {text}");
        assert_eq!(
            text.matches("git stash store").count(),
            2,
            "{name}: said once each: {text}"
        );
        for (c, _) in &before {
            assert!(ev.contains(&c[..12]), "{name}: {ev}");
        }
        // Oldest first, so the numbers come back as they were.
        for c in cmds.iter().rev() {
            sh(&r, c);
        }
        assert_eq!(stashes(&r), before, "{name}");
        assert_eq!(r.git(&["show", "stash@{1}:shared.txt"]), "user edit\n");
        assert_eq!(r.git(&["show", "stash@{0}^3:u.txt"]), "untracked of mine\n");
        // Task 2 ran after: it does not name what task 1's run lost.
        assert!(!evidence(&r, "2").contains(&before[0].0[..12]), "{name}");
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
    }
}

/// An agent's `git stash pop` of the user's entry: its changes land in the task's
/// worktree and are merged with the task's work — said so, with the command that puts
/// the entry back in the stash too.
#[test]
fn worktree_user_stash_entry_an_agent_pops_is_merged_and_said() {
    let r = Repo::new(&tasks(1));
    let before = user_entries(&r);
    r.action("1", &once(&r, "s1", "git stash pop -q\necho 1 > f1.txt\n"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let ev = evidence(&r, "1");
    assert!(ev.contains("popped into its worktree"), "{ev}");
    assert!(ev.contains(&before[0].0[..12]), "{ev}");
    assert!(!ev.contains(&before[1].0[..12]), "{ev}");
    r.assert_all_merged(&["f1.txt", "u.txt"]);
    assert_eq!(r.read("u.txt"), "untracked of mine\n");
    let cmds = printed_commands(&ev, "git stash store");
    assert_eq!(cmds.len(), 1, "{ev}");
    sh(&r, &cmds[0]);
    assert_eq!(stashes(&r), before);
}

/// The spec link qw puts in a task's worktree is untracked to git: `git stash -u` (or
/// `git clean -fd`) takes it away, and qw puts it back before the task's `_Verify:_`.
#[test]
fn worktree_spec_link_a_stash_or_clean_takes_is_put_back_before_the_verify() {
    let verify = "  - _Verify: `sh -c 'test -L .claude/specs/demo && test -s .claude/specs/demo/design.md'`_\n";
    let r = Repo::new(&format!("- [ ] 1. One\n{verify}- [ ] 2. Two\n{verify}"));
    r.action("1", "git stash -q -u\necho 1 > f1.txt\n");
    r.action("2", "git clean -fdq\necho 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// `git -C <main> stash` by an agent under `--allow-dirty`: the user's uncommitted work
/// vanishes into a new entry on `main`. qw cannot tell an agent's stash there from the
/// user's own, so it blames no task and says so, naming the entry with `git stash
/// apply <commit>`; running it brings the work back.
#[test]
fn worktree_main_worktree_stashed_by_an_agent_is_named_without_blame() {
    for (name, dirt, act) in [
        ("tracked", "src/keep.txt", "git -C \"$MAIN\" stash -q\n"),
        ("untracked", "mine.txt", "git -C \"$MAIN\" stash -q -u\n"),
    ] {
        let r = Repo::new(&tasks(2));
        r.f.p.write(dirt, "the user's own\n");
        r.action("1", &once(&r, "s1", &format!("{act}echo 1 > f1.txt\n")));
        r.action("2", "echo 2 > f2.txt\n");
        let out = r.auto(&["--parallel", "1", "--isolate", "worktree", "--allow-dirty"]);
        assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
        let s = stashes(&r);
        assert_eq!(s.len(), 1, "{name}: {s:?}");
        let ev = evidence(&r, "1");
        assert!(
            ev.contains(&s[0].0[..12]) && ev.contains("ambiguous"),
            "{name}: {ev} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(ev.contains(dirt), "{name}: {ev}");
        assert_eq!(r.f.task("1")["status"], "completed", "{name}");
        let cmds = printed_commands(&ev, "git stash apply");
        assert_eq!(cmds.len(), 1, "{name}: {ev}");
        sh(&r, &cmds[0]);
        assert_eq!(r.read(dirt), "the user's own\n", "{name}");
        for f in ["f1.txt", "f2.txt"] {
            assert!(
                r.git_ok(&["cat-file", "-e", &format!("main:{f}")]),
                "{name}"
            );
        }
        r.assert_no_process();
    }
}

/// The user's untracked directory in the main worktree (files nested two levels deep,
/// a name with a space) under `--allow-dirty`, taken by an agent's `git -C <main> stash
/// -u`, `git clean -fd` or `rm -r`: task 1's evidence names the directory (`notes/ (3
/// files)`) as ambiguous with the command that brings it back (`git stash apply
/// <commit>`, or `git restore` from the run's snapshot), task 1 completes, and running
/// the printed command puts every file back as it was, untracked, nothing staged.
#[test]
fn worktree_untracked_directory_of_the_main_worktree_taken_by_an_agent_is_named_and_comes_back() {
    let files = [
        ("notes/a.txt", "a\n"),
        ("notes/deep/b.txt", "b\n"),
        ("notes/deep/er/c d.txt", "c\n"),
    ];
    for (name, act, prefix) in [
        ("stash", "git -C \"$MAIN\" stash -q -u\n", "git stash apply"),
        ("clean", "git -C \"$MAIN\" clean -fdq\n", "git -C"),
        ("rm", "rm -r \"$MAIN/notes\"\n", "git -C"),
    ] {
        let r = Repo::new(&tasks(2));
        for (f, c) in files {
            r.f.p.write(f, c);
        }
        r.action("1", &once(&r, "s1", &format!("{act}echo 1 > f1.txt\n")));
        r.action("2", "echo 2 > f2.txt\n");
        let out = r.auto(&["--parallel", "1", "--isolate", "worktree", "--allow-dirty"]);
        assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
        assert!(
            !r.root().join("notes").exists(),
            "{name}: the agent took it"
        );
        let ev = evidence(&r, "1");
        assert!(
            ev.contains("notes/ (3 files)") && ev.contains("ambiguous"),
            "{name}: {ev} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(r.f.task("1")["status"], "completed", "{name}");
        assert!(!evidence(&r, "2").contains("notes/"), "{name}: said once");
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
        let cmds = printed_commands(&ev, prefix);
        assert_eq!(cmds.len(), 1, "{name}: {ev}");
        if prefix == "git -C" {
            assert!(
                cmds[0].contains(" restore --source="),
                "{name}: {}",
                cmds[0]
            );
        }
        sh(&r, &cmds[0]);
        for (f, c) in files {
            assert_eq!(r.read(f), c, "{name}: {f}");
        }
        assert_eq!(r.git(&["diff", "--cached", "--name-only"]), "", "{name}");
        assert!(
            r.git(&["status", "--porcelain"]).contains("?? notes/"),
            "{name}"
        );
        r.assert_no_process();
    }
}

/// Task 1 stashes its work; task 2, running alongside, pops it: task 1 fails naming
/// its entry (nothing claimed by task 2 as its own stash), task 2 is refused for taking
/// in another task's entry (rev5b F16) and the entry is put back; nothing is lost.
#[test]
fn worktree_stash_popped_by_another_task_blames_neither_wrongly() {
    let r = Repo::new(&tasks(2));
    let wt1 = format!("{}/wt/*/demo-1", r.aux.path().display());
    r.action(
        "1",
        &once(
            &r,
            "s1",
            "echo 1 > f1.txt\ngit stash push -q -u -- f1.txt\n",
        ),
    );
    r.action(
        "2",
        &once(
            &r,
            "s2",
            &format!(
                "{}git stash pop -q\necho 2 > f2.txt\n",
                wait_for(&format!(
                    "git stash list | grep -q qw/demo/1 && ! ls -d {wt1} >/dev/null 2>&1"
                ))
            ),
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let e1 = evidence(&r, "1");
    let e2 = evidence(&r, "2");
    assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{e1}");
    // Task 2 took in task 1's entry: refused like a rebase onto task 1's branch (rev5b
    // F16), the entry's changes taken out of its work and the entry put back.
    assert_eq!(r.f.task("2")["outcome"], "workspace_error", "{e2}");
    // The entry task 1 named is the one task 2 says it took in.
    let named: std::collections::BTreeSet<&str> = e1
        .split("commit ")
        .skip(1)
        .filter_map(|s| s.get(..12))
        .collect();
    let named: Vec<&str> = named.into_iter().collect();
    assert_eq!(named.len(), 1, "{e1}");
    assert!(
        e2.contains(named[0]) && e2.contains("another task's stash entry"),
        "{e2}"
    );
    assert!(!e2.contains("left its work in the stash"), "{e2}");
    assert_eq!(r.git(&["show", &format!("{}^3:f1.txt", named[0])]), "1\n");
    assert!(
        stashes(&r).iter().any(|(c, _)| c.starts_with(named[0])),
        "back in the stash"
    );
    assert!(!r.git_ok(&["cat-file", "-e", "main:f1.txt"]));
    r.assert_no_process();
    // Task 1's entry is its owner's to apply; its agent, run again, does its work.
    r.action("1", "echo 1 > f1.txt\n");
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// Two tasks whose agents detach HEAD at the same base commit and one entry appears:
/// it is the stashing task's (the other's index was last written before the entry's
/// commit, and `git stash` rewrites the index), never claimed by the other. Shape 2:
/// both stash, one after the other. Shape 3: the other task writes its index after
/// the entry appeared (`git add`) — qw cannot tell them apart and says so to both
/// (ambiguous), claiming it for neither; `workflow-continue` then runs both again.
#[test]
fn worktree_detached_tasks_at_one_base_never_both_claim_one_entry() {
    for shape in ["one", "both", "ambiguous"] {
        let r = Repo::new(&tasks(2));
        // Task 2 detaches first, task 1 then stashes; task 2 waits for the entry.
        let flag = r.aux.path().join("detached2");
        let added = r.aux.path().join("added2");
        let after = if shape == "ambiguous" {
            wait_for(&format!("[ -e {} ]", added.display()))
        } else {
            String::new()
        };
        let stash1 = format!(
            "git switch -q --detach\n{}git stash -q -u\n{after}",
            wait_for(&format!("[ -e {} ]", flag.display()))
        );
        r.action(
            "1",
            &format!("echo 1 > f1.txt\n{}", once(&r, "s1", &stash1)),
        );
        let then = match shape {
            "both" => "git stash -q -u\n".to_owned(),
            "ambiguous" => format!("git add f2.txt\ntouch {}\n", added.display()),
            _ => String::new(),
        };
        let stash2 = format!(
            "git switch -q --detach\ntouch {}\n{}{then}",
            flag.display(),
            wait_for("git stash list | grep -q 'no branch'")
        );
        r.action(
            "2",
            &format!("echo 2 > f2.txt\n{}", once(&r, "s2", &stash2)),
        );
        let out = r.auto(&["--parallel", "2"]);
        assert_eq!(code(&out), 1, "{shape}: {}", diag(&out));
        let s = stashes(&r);
        assert_eq!(s.len(), if shape == "both" { 2 } else { 1 }, "{s:?}");
        let holder = |f: &str| {
            s.iter()
                .find(|(c, _)| r.git_ok(&["cat-file", "-e", &format!("{c}^3:{f}")]))
                .map(|(c, _)| c.clone())
        };
        let own1 = holder("f1.txt").unwrap();
        let e1 = evidence(&r, "1");
        let e2 = evidence(&r, "2");
        assert!(e1.contains(&own1[..12]), "{shape}: {e1}");
        // Task 2 never owns task 1's entry: not named, or named as ambiguous.
        assert!(
            !e2.contains(&own1[..12]) || e2.contains("ambiguous"),
            "{shape}: {e2}"
        );
        match shape {
            "one" => assert_eq!(r.f.task("2")["status"], "completed", "{e2}"),
            "both" => {
                let own2 = holder("f2.txt").unwrap();
                assert!(e2.contains(&own2[..12]), "{e2}");
                assert!(
                    !e1.contains(&own2[..12]) || e1.contains("ambiguous"),
                    "{e1}"
                );
            }
            _ => {
                for e in [&e1, &e2] {
                    assert!(e.contains(&own1[..12]) && e.contains("ambiguous"), "{e}");
                    assert!(!e.contains("left its work in the stash"), "{e}");
                }
            }
        }
        r.assert_no_process();
        let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
    }
}

/// Task 1 stashes its work and waits; task 2 pops (or drops) the entry before qw ever
/// lists it. qw finds the stash commit among the objects written since task 1 started:
/// popped, task 2 is refused for taking in another task's entry (rev5b F16: its changes
/// are taken out of task 2's work and the entry is put back); dropped, task 1 fails with
/// the `git stash store` command that puts it back, which the test runs.
#[test]
fn worktree_stash_entry_popped_or_dropped_by_another_task_before_qw_looked() {
    for (name, take) in [
        ("pop", "git stash pop -q\n"),
        ("drop", "git stash drop -q\n"),
    ] {
        let r = Repo::new(&tasks(2));
        let stash1 = format!(
            "git stash push -q -u -- f1.txt\n{}",
            wait_for("! git stash list | grep -q qw/demo/1")
        );
        r.action(
            "1",
            &format!("echo 1 > f1.txt\n{}", once(&r, "s1", &stash1)),
        );
        r.action(
            "2",
            &format!(
                "{}{take}echo 2 > f2.txt\n",
                wait_for("git stash list | grep -q qw/demo/1")
            ),
        );
        let out = r.auto(&["--parallel", "2"]);
        let e1 = evidence(&r, "1");
        let e2 = evidence(&r, "2");
        assert!(!e2.contains("stashed its work"), "{name}: {e2}");
        if name == "pop" {
            // Task 2 took in task 1's entry: refused (rev5b F16), the entry put back,
            // task 1's work not merged through task 2.
            assert_eq!(code(&out), 1, "{name}: {}", diag(&out));
            assert_eq!(r.f.task("2")["outcome"], "workspace_error", "{e2}");
            assert!(e2.contains("another task's stash entry"), "{e2}");
            assert_eq!(stashes(&r).len(), 1, "{name}: {e1}");
            assert!(!r.git_ok(&["cat-file", "-e", "main:f1.txt"]), "{e1}");
            r.assert_no_process();
            r.action("1", "echo 1 > f1.txt\n");
            r.action("2", "echo 2 > f2.txt\n");
            let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
            assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
            r.assert_all_merged(&["f1.txt", "f2.txt"]);
            continue;
        }
        assert!(stashes(&r).is_empty(), "{name}");
        assert_eq!(r.f.task("2")["status"], "completed", "{name}: {e2}");
        assert_eq!(code(&out), 1, "{name}: {}", diag(&out));
        assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{e1}");
        let cmds = printed_commands(&e1, "git stash store");
        assert_eq!(cmds.len(), 1, "{e1}");
        sh(&r, &cmds[0]);
        let back = stashes(&r);
        assert_eq!(back.len(), 1, "{back:?}");
        assert!(back[0].1.contains("qw/demo/1"), "{back:?}");
        assert_eq!(r.git(&["show", "stash@{0}^3:f1.txt"]), "1\n");
        r.assert_no_process();
        let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
        assert_eq!(code(&out), 0, "{name}: {}", diag(&out));
        r.assert_all_merged(&["f1.txt", "f2.txt"]);
    }
}

/// An agent that stashes and pops back in its own worktree (a common way to look at
/// the clean tree) did nothing wrong: its task completes, nothing is said.
#[test]
fn worktree_stash_and_pop_in_its_own_worktree_is_nothing_to_tell() {
    let r = Repo::new(&tasks(2));
    // Both agents run at once, one stash-and-pop after the other: the stash is one
    // stack for every worktree, so two pushes before either pop would have each agent
    // pop the other's entry (a sibling's entry taken, which qw rightly refuses), and
    // two pushes at the same moment fail on `refs/stash.lock`.
    let (started2, popped1) = (r.aux.path().join("started2"), r.aux.path().join("popped1"));
    r.action(
        "1",
        &format!(
            "{}echo 1 > f1.txt\ngit stash -q -u\ngit stash pop -q\ntouch {}\n",
            wait_for(&format!("[ -e {} ]", started2.display())),
            popped1.display()
        ),
    );
    r.action(
        "2",
        &format!(
            "touch {}\n{}git switch -q --detach\necho 2 > f2.txt\ngit stash -q -u\ngit stash pop -q\n",
            started2.display(),
            wait_for(&format!("[ -e {} ]", popped1.display()))
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in ["1", "2"] {
        let ev = evidence(&r, i);
        assert!(!ev.contains("stash"), "task {i}: {ev}");
    }
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// rev3 H3: an agent that stashes (or lets `rebase --autostash` do it), gets the entry
/// back, then keeps editing the same file did nothing wrong: its task completes, the
/// edits are merged, nothing is said about the stash.
#[test]
fn worktree_stash_pop_then_more_edits_of_the_same_file_is_nothing_to_tell() {
    let r = Repo::new(&tasks(3));
    r.action("1", "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n");
    r.action(
        "2",
        "echo mod >> shared.txt\ngit rebase -q --autostash main\necho more >> shared.txt\n",
    );
    r.action(
        "3",
        "echo mod3 >> second.txt\ngit stash -q\ngit rebase -q main\ngit stash pop -q\necho more3 >> second.txt\n",
    );
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in ["1", "2", "3"] {
        assert_eq!(r.f.task(i)["status"], "completed", "{}", diag(&out));
        let ev = evidence(&r, i);
        assert!(!ev.contains("stash"), "task {i}: {ev}");
    }
    let shared = r.git(&["show", "main:shared.txt"]);
    assert!(
        shared.contains("mod\n") && shared.contains("more\n"),
        "{shared}"
    );
    let second = r.git(&["show", "main:second.txt"]);
    assert!(
        second.contains("mod3\n") && second.contains("more3\n"),
        "{second}"
    );
    assert!(stashes(&r).is_empty());
    r.assert_no_process();
}

/// `git stash && git stash drop` (throwing changes away) while the task did other
/// work: a warning with the command that puts the entry back, the task completes. When
/// the dropped entry held the task's only work, the task fails as before.
#[test]
fn worktree_stash_dropped_on_purpose_warns_unless_it_held_the_only_work() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "echo 1 > f1.txt\necho junk >> shared.txt\ngit stash -q\ngit stash drop -q\n",
    );
    r.action(
        "2",
        "echo 2 > f2.txt\necho tmp > tmp2.txt\ngit stash -q -u\ngit stash drop -q\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let e1 = evidence(&r, "1");
    assert!(e1.contains("dropped on purpose?"), "{e1}");
    assert!(has_file(&r, "f1.txt") && !r.git(&["show", "main:shared.txt"]).contains("junk"));
    assert_eq!(
        r.f.task("2")["outcome"],
        "workspace_error",
        "{}",
        diag(&out)
    );
    let e2 = evidence(&r, "2");
    assert!(
        e2.contains("stashed its work") && e2.contains("f2.txt"),
        "{e2}"
    );
    // The printed commands put both entries back (each task names its own; one may
    // also name the other's entry, gone while it ran).
    let own = |e: &str, task: &str| {
        printed_commands(e, "git stash store")
            .into_iter()
            .filter(|c| c.contains(&format!("qw/demo/{task}:")))
            .collect::<Vec<_>>()
    };
    let (cmds1, cmds2) = (own(&e1, "1"), own(&e2, "2"));
    assert_eq!((cmds1.len(), cmds2.len()), (1, 1), "{e1} / {e2}");
    sh(&r, &cmds1[0]);
    sh(&r, &cmds2[0]);
    let back = stashes(&r);
    assert_eq!(back.len(), 2, "{back:?}");
    assert!(r.git(&["show", "stash@{1}:shared.txt"]).contains("junk"));
    assert_eq!(r.git(&["show", "stash@{0}^3:tmp2.txt"]), "tmp\n");
    r.assert_no_process();
}

fn has_file(r: &Repo, file: &str) -> bool {
    r.git(&["ls-tree", "--name-only", "main"])
        .lines()
        .any(|l| l == file)
}
