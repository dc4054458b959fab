//! The target branch moved, renamed or left, and staged changes in the main worktree
//! (issue 14, item 4's class): refused before a run or failing the merge with one line
//! that names what and where and prints the git command that puts things back — worked
//! out when the error is given, from the branch's reflog. Each test runs that command
//! literally, then `workflow-continue` (or the same run again) and asserts it exits 0
//! with nothing lost: every task's file on `main`, the user's own commits and changes
//! kept, no completed task run again.

use crate::support::moves::*;
use crate::support::*;
use crate::worktree::Repo;

fn run_auto(r: &Repo, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--parallel", "1", "--isolate", "worktree"];
    args.extend_from_slice(extra);
    r.auto(&args)
}

fn cont(r: &Repo, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["workflow-continue", "demo", "--retry-delay", "0.1"];
    args.extend_from_slice(extra);
    r.run(&args)
}

// ---------------------------------------------------------------------------------
// Finding 1: staged changes in the main worktree.
// ---------------------------------------------------------------------------------

/// A refusal of staged `paths` before any task: exit 2, one line naming them and the
/// three ways out; nothing ran, nothing was written to git, the index is as it was.
fn refused_before_any_task(r: &Repo, out: &std::process::Output, paths: &[&str]) -> String {
    let line = refusal_line(out);
    assert!(line.contains("staged changes"), "{line}");
    for p in paths {
        assert!(line.contains(p), "{p}: {line}");
    }
    assert!(
        line.contains("`git commit`") && line.contains("`git stash`"),
        "{line}"
    );
    assert!(line.contains(&r.root().display().to_string()), "{line}");
    assert!(r.runs().is_empty(), "a task ran: {:?}", r.runs());
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert_eq!(r.registered_worktrees(), 1);
    let restore = printed(&line, "git restore --staged -- ");
    let mut named: Vec<String> = shell_words::split(&restore).unwrap()[4..]
        .iter()
        .map(|p| p.strip_prefix(":(top,literal)").unwrap_or(p).to_owned())
        .collect();
    named.sort();
    let mut want: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
    want.sort();
    assert_eq!(named, want, "{line}");
    restore
}

#[test]
fn worktree_staged_modification_is_refused_before_any_task_under_allow_dirty() {
    let r = Repo::new(&tasks(2));
    for i in ["1", "2"] {
        r.action(i, &work(i));
    }
    std::fs::write(r.root().join("shared.txt"), "mine\n").unwrap();
    r.git(&["add", "shared.txt"]);
    let out = run_auto(&r, &["--allow-dirty"]);
    let restore = refused_before_any_task(&r, &out, &["shared.txt"]);
    assert!(stderr(&out).contains("--allow-dirty"), "{}", diag(&out));
    // Still staged: qw did not touch the index.
    assert_eq!(r.git(&["diff", "--cached", "--name-only"]), "shared.txt\n");
    follow(&r, &restore);
    let out = run_auto(&r, &["--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    // The user's change is still theirs, uncommitted.
    assert_eq!(r.read("shared.txt"), "mine\n");
    assert_eq!(r.git(&["show", "main:shared.txt"]), "base\n");
    for i in ["1", "2"] {
        assert_eq!(r.runs_of(i), 1);
    }
}

#[test]
fn worktree_staged_new_file_and_deletion_are_refused_with_or_without_allow_dirty() {
    let r = Repo::new(&tasks(2));
    for i in ["1", "2"] {
        r.action(i, &work(i));
    }
    std::fs::write(r.root().join("new file.txt"), "new\n").unwrap();
    r.git(&["add", "new file.txt"]);
    r.git(&["rm", "-q", "src/keep.txt"]);
    // Without --allow-dirty: named as staged, not merely as uncommitted.
    let out = run_auto(&r, &[]);
    refused_before_any_task(&r, &out, &["new file.txt", "src/keep.txt"]);
    let out = run_auto(&r, &["--allow-dirty"]);
    let restore = refused_before_any_task(&r, &out, &["new file.txt", "src/keep.txt"]);
    follow(&r, &restore);
    // Now the same changes, unstaged: --allow-dirty takes them (saved on a snapshot).
    let out = run_auto(&r, &["--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert_eq!(r.read("new file.txt"), "new\n");
    assert!(
        !r.root().join("src/keep.txt").exists(),
        "the deletion is kept"
    );
    assert_eq!(r.git(&["show", "main:src/keep.txt"]), "kept\n");
}

#[test]
fn worktree_staged_change_under_claude_is_refused_even_without_allow_dirty() {
    let r = Repo::new(&tasks(2));
    for i in ["1", "2"] {
        r.action(i, &work(i));
    }
    // `.claude/` is not dirt (qw writes there), but a staged change there is.
    let design = ".claude/specs/demo/design.md";
    std::fs::write(r.root().join(design), "# Design\n\nMine.\n").unwrap();
    r.git(&["add", design]);
    let out = run_auto(&r, &[]);
    let restore = refused_before_any_task(&r, &out, &[design]);
    follow(&r, &restore);
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(2)));
    assert_eq!(r.read(design), "# Design\n\nMine.\n");
}

#[test]
fn worktree_changes_staged_while_running_fail_the_merge_naming_them() {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "stage",
                "echo mine > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" add shared.txt"
            )
        ),
    );
    for i in ["2", "3"] {
        r.action(i, &work(i));
    }
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let mut restore = String::new();
    for i in ["1", "2", "3"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        // Task 1 ran and was not merged; the later tasks were not even started (their
        // agents would only have worked for a merge git refuses).
        let not_done = if i == "1" {
            "`qw/demo/1` was not merged".to_owned()
        } else {
            format!("task {i} was not started")
        };
        assert!(
            err.contains("staged changes (shared.txt)")
                && err.contains(&not_done)
                && err.contains("qw workflow-continue demo")
                && !err.contains("moved"),
            "{err}"
        );
        restore = printed(err, "git restore --staged -- ");
        assert_eq!(
            restore,
            "git restore --staged -- ':(top,literal)shared.txt'"
        );
    }
    // Task 1's work is kept on its branch; tasks 2 and 3 never ran their agents.
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    assert_eq!(r.runs_of("2"), 0);
    assert_eq!(r.runs_of("3"), 0);
    // Never a merge conflict, and the index is as the user left it.
    assert!(!r.f.state().to_string().contains("merge_conflict"));
    assert_eq!(r.git(&["diff", "--cached", "--name-only"]), "shared.txt\n");
    follow(&r, &restore);
    let out = cont(&r, &["--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
    assert_eq!(r.read("shared.txt"), "mine\n");
    assert_eq!(r.runs_of("2"), 1);
}

#[test]
fn worktree_partial_commit_with_other_files_staged_is_no_move() {
    let r = Repo::new(&tasks(2));
    // The user stages two files and commits one of them (`git commit -- a.txt`).
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "partial",
                "echo a > \"$MAIN/a.txt\"\necho b > \"$MAIN/b.txt\"\ngit -C \"$MAIN\" add a.txt b.txt\ngit -C \"$MAIN\" commit -qm partial -- a.txt"
            )
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let err = t["error"].as_str().unwrap();
    // Not a move: only what is still staged is named.
    assert!(!err.contains("moved"), "{err}");
    assert!(err.contains("staged changes (b.txt)"), "{err}");
    assert!(!r.f.state().to_string().contains("merge_conflict"));
    // The user takes the second file out of the way as told.
    follow(&r, &printed(err, "git stash"));
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let mut all = files(2);
    all.push("a.txt".into());
    r.assert_all_merged(&as_strs(&all));
    // The user's commit is kept on main, and b.txt in the stash.
    assert!(r.git(&["log", "--format=%s", "main"]).contains("partial"));
    assert_eq!(r.git(&["show", "stash@{0}:b.txt"]), "b\n");
}

// ---------------------------------------------------------------------------------
// Finding 2: the restore hint, from the branch's reflog.
// ---------------------------------------------------------------------------------

/// Task 1 runs `mv` once (after committing its work); task 2 comes after it. The run
/// fails both (`workspace_error`, task 2 not started), the command qw printed starts
/// with `expect` and names `to`; following it and continuing loses nothing.
fn refused_then_followed(r: &Repo, mv: &str, expect: &str, to: Option<&str>) -> String {
    refused_then_followed_with(r, mv, expect, to, &[])
}

/// [`refused_then_followed`], with `extra` options for both runs.
fn refused_then_followed_with(
    r: &Repo,
    mv: &str,
    expect: &str,
    to: Option<&str>,
    extra: &[&str],
) -> String {
    r.action("1", &format!("{}{}", work("1"), once(r, "move", mv)));
    r.action("2", &work("2"));
    let out = run_auto(r, extra);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "workspace_error", "{t1}");
    let err = t1["error"].as_str().unwrap().to_owned();
    assert!(err.contains("moved") && err.contains("`main`"), "{err}");
    assert!(err.contains("`qw/demo/1` was not merged"), "{err}");
    assert!(!r.f.state().to_string().contains("merge_conflict"));
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    assert!(
        t2["error"]
            .as_str()
            .unwrap()
            .contains("task 2 was not started"),
        "{t2}"
    );
    assert_eq!(r.runs_of("2"), 0, "a task started on a moved target");
    assert_eq!(r.git(&["show", "qw/demo/1:f1.txt"]), "1\n");
    let cmd = printed(&err, expect);
    if let Some(to) = to {
        assert!(cmd.ends_with(to), "{cmd} (want {to}): {err}");
    }
    // Not put back yet: the next run of the spec is refused with the same way back.
    let early = refusal_line(&cont(r, extra));
    assert!(
        early.contains(&format!("`{cmd}`")) && early.contains("or delete `"),
        "{early}"
    );
    assert_eq!(r.runs_of("2"), 0);
    follow(r, &cmd);
    let out = cont(r, extra);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 1, "task 2 ran once");
    err
}

#[test]
fn worktree_restore_hint_keeps_a_user_commit_made_before_the_move() {
    let r = Repo::new(&tasks(2));
    // The user commits in the main worktree; then the agent moves `main` to its HEAD.
    // The hint puts `main` on the user's commit, not back before it.
    let saved = r.aux.path().join("user-commit");
    let mv = format!(
        "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\ngit -C \"$MAIN\" rev-parse HEAD > {}\ngit update-ref refs/heads/main HEAD",
        saved.display()
    );
    r.action("1", &format!("{}{}", work("1"), once(&r, "move", &mv)));
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let user = std::fs::read_to_string(&saved).unwrap().trim().to_owned();
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let cmd = printed(&err, "git update-ref");
    assert_eq!(
        cmd,
        format!("git update-ref refs/heads/main {user}"),
        "{err}"
    );
    follow(&r, &cmd);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let mut all = files(2);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
    assert!(r.git(&["log", "--format=%s", "main"]).contains("user"));
    assert_eq!(r.runs_of("2"), 1);
}

#[test]
fn worktree_restore_hint_of_a_deleted_target_comes_from_the_main_heads_reflog() {
    let r = Repo::new(&tasks(2));
    // The user commits in the main worktree; then the agent deletes `main` (its reflog
    // goes with it): the main HEAD's reflog still shows the user's commit.
    let saved = r.aux.path().join("user-commit");
    let mv = format!(
        "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\ngit -C \"$MAIN\" rev-parse HEAD > {}\ngit update-ref -d refs/heads/main",
        saved.display()
    );
    let err = refused_then_followed(&r, &mv, "git update-ref refs/heads/main ", None);
    let user = std::fs::read_to_string(&saved).unwrap().trim().to_owned();
    assert!(err.contains("deleted"), "{err}");
    assert!(
        err.contains(&format!("`git update-ref refs/heads/main {user}`")),
        "{err}"
    );
    let mut all = files(2);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
}

#[test]
fn worktree_restore_hint_after_a_merge_in_the_main_worktree_is_a_keep_reset() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    refused_then_followed(
        &r,
        "git -C \"$MAIN\" merge -q --no-ff --no-edit \"$(git rev-parse HEAD)\"",
        "git reset --keep ",
        Some(&old),
    );
    r.assert_all_merged(&as_strs(&files(2)));
}

#[test]
fn worktree_restore_hint_after_a_fast_forward_is_a_keep_reset() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    refused_then_followed(
        &r,
        "git -C \"$MAIN\" merge -q --ff-only \"$(git rev-parse HEAD)\"",
        "git reset --keep ",
        Some(&old),
    );
    r.assert_all_merged(&as_strs(&files(2)));
}

#[test]
fn worktree_restore_hint_after_a_hard_reset_keeps_the_users_other_changes() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    // A change of the user's, uncommitted, that the hard reset leaves alone (untracked):
    // `reset --keep` keeps it too.
    std::fs::write(r.root().join("notes.txt"), "mine\n").unwrap();
    let out = refused_then_followed_with(
        &r,
        "git -C \"$MAIN\" reset -q --hard \"$(git rev-parse HEAD)\"",
        "git reset --keep ",
        Some(&old),
        &["--allow-dirty"],
    );
    assert!(out.contains(&old[..10]), "{out}");
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert_eq!(r.read("notes.txt"), "mine\n");
}

#[test]
fn worktree_restore_hint_after_an_update_ref_then_a_hard_reset_of_the_main_worktree() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    // The agent moves `main`; then the main worktree is brought along (`reset --hard`,
    // what a user does to make `git status` clean): both followed, so `--keep`.
    refused_then_followed(
        &r,
        "git update-ref refs/heads/main HEAD\ngit -C \"$MAIN\" reset -q --hard",
        "git reset --keep ",
        Some(&old),
    );
    r.assert_all_merged(&as_strs(&files(2)));
}

#[test]
fn worktree_restore_hint_after_a_mixed_reset_moves_only_the_index_back() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    refused_then_followed(
        &r,
        "git -C \"$MAIN\" reset -q --mixed \"$(git rev-parse HEAD)\"",
        "git reset -q ",
        Some(&old),
    );
    r.assert_all_merged(&as_strs(&files(2)));
}

// ---------------------------------------------------------------------------------
// Finding 3: renamed, detached, switched.
// ---------------------------------------------------------------------------------

#[test]
fn worktree_target_renamed_from_the_agents_worktree_is_a_move() {
    let r = Repo::new(&tasks(2));
    let err = refused_then_followed(
        &r,
        "git branch -m main other",
        "git branch -m ",
        Some("other main"),
    );
    assert!(err.contains("renamed to `other`"), "{err}");
    r.assert_all_merged(&as_strs(&files(2)));
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/other"]));
}

#[test]
fn worktree_target_renamed_from_the_main_worktree_is_a_move() {
    let r = Repo::new(&tasks(2));
    // Renamed, then a commit of the user's on it: still told as a rename, and the
    // commit is kept when the name is given back.
    let err = refused_then_followed(
        &r,
        "git -C \"$MAIN\" branch -m renamed\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user",
        "git branch -m ",
        Some("renamed main"),
    );
    assert!(err.contains("renamed to `renamed`"), "{err}");
    let mut all = files(2);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
}

#[test]
fn worktree_detached_main_head_is_a_move() {
    let r = Repo::new(&tasks(2));
    let err = refused_then_followed(
        &r,
        "git -C \"$MAIN\" switch -q --detach",
        "git switch ",
        Some("git switch main"),
    );
    assert!(err.contains("detached HEAD"), "{err}");
    r.assert_all_merged(&as_strs(&files(2)));
}

#[test]
fn worktree_main_worktree_switched_to_another_branch_is_a_move() {
    // With `main` itself where qw left it, the switch is waited for (fix6m, rev5b F19):
    // one second here, then task 1's merge stays pending and the continue merges it
    // without running its agent again.
    let mut r = Repo::new(&tasks(2));
    r.f.set("QW_MAIN_WAIT_S", "1");
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(&r, "move", "git -C \"$MAIN\" switch -q -c elsewhere")
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    assert!(err.contains("on branch `elsewhere`"), "{err}");
    assert_eq!(printed(&err, "git switch "), "git switch main", "{err}");
    follow(&r, "git switch main");
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.runs_of("1"), 1, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(2)));
    // The user's branch is theirs: left as it is.
    assert!(r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/elsewhere"]));
}

// ---------------------------------------------------------------------------------
// Finding 6: continuing before the target is put back.
// ---------------------------------------------------------------------------------

/// Task 1 moves `main` onto its commit (`update-ref`); the run refuses and records it.
fn moved_by_update_ref(r: &Repo) -> String {
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(r, "move", "git update-ref refs/heads/main HEAD")
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(record(r).is_file(), "no record of the refused move");
    r.f.task("1")["error"].as_str().unwrap().to_owned()
}

#[test]
fn worktree_continue_before_the_target_is_put_back_is_refused_then_succeeds_after_the_hint() {
    let r = Repo::new(&tasks(2));
    let old = sha(&r, "main");
    let err = moved_by_update_ref(&r);
    let cmd = printed(&err, "git update-ref ");
    assert_eq!(cmd, format!("git update-ref refs/heads/main {old}"));
    let kept = sha(&r, "qw/demo/1");
    // Not put back: refused, nothing run, the task's branch not cleared as "merged".
    let out = cont(&r, &[]);
    let line = refusal_line(&out);
    assert!(line.contains("moved") && line.contains(&cmd), "{line}");
    assert!(
        line.contains(&format!(
            "or delete `{}` to take the branch as it is",
            record(&r).canonicalize().unwrap().display()
        )),
        "{line}"
    );
    assert_eq!(r.runs_of("1"), 1);
    assert_eq!(r.runs_of("2"), 0);
    assert_eq!(sha(&r, "qw/demo/1"), kept);
    // `workflow-reset` does not forget it.
    let out = r.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(record(&r).is_file());
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 0);
    // Put back as printed: the run goes on, and the record is done with.
    follow(&r, &cmd);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(2)));
    assert!(!record(&r).exists());
    assert_eq!(r.runs_of("2"), 1);
}

#[test]
fn worktree_deleting_the_refused_move_record_takes_the_branch_as_it_is() {
    let r = Repo::new(&tasks(2));
    let err = moved_by_update_ref(&r);
    assert!(err.contains("was not merged"), "{err}");
    // The user decides the agent's move is fine: brings the main worktree along, and
    // deletes the record, as the refusal says.
    r.git(&["reset", "-q", "--hard", "main"]);
    let out = cont(&r, &[]);
    let line = refusal_line(&out);
    assert!(line.contains("or delete `"), "{line}");
    std::fs::remove_file(record(&r)).unwrap();
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(2)));
    assert!(!record(&r).exists());
}

// ---------------------------------------------------------------------------------
// rev2: the user's own work is never dropped by a hint, and qw's advice is no move.
// ---------------------------------------------------------------------------------

/// Task 1 and a commit of the user on `main` change `shared.txt` alike: task 1's merge
/// conflicts and qw says `merge it by hand (`git merge qw/demo/1`)`. While task 2 runs
/// the user does exactly that in the main worktree, resolves and commits: the main
/// worktree followed, the merge's history holds task 1's tip — the user's move, not an
/// agent's. Task 2 is merged on top, and nothing is refused or recorded.
#[test]
fn worktree_users_merge_by_hand_of_a_conflicted_task_mid_run_is_accepted() {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &once(
            &r,
            "user",
            "echo one > shared.txt\ngit commit -qam s1\necho two > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" commit -qam user-two",
        ),
    );
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(
                &r,
                "byhand",
                "git -C \"$MAIN\" merge qw/demo/1 >/dev/null 2>&1 || true\necho both > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" add shared.txt\ngit -C \"$MAIN\" commit -qm resolved --no-edit"
            )
        ),
    );
    r.action("3", &work("3"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "merge_conflict", "{t1}");
    let advice = t1["error"].as_str().unwrap();
    // What the user did is what qw said.
    assert_eq!(
        printed(advice, "git merge"),
        "git merge qw/demo/1",
        "{advice}"
    );
    assert!(advice.contains("`qw workflow-continue demo`"), "{advice}");
    for i in ["2", "3"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "completed", "task {i} refused: {t}");
    }
    assert!(
        !r.f.state().to_string().contains("moved"),
        "{}",
        r.f.state()
    );
    assert!(!record(&r).exists(), "a refusal was recorded");
    let resolved = sha(&r, ":/resolved");
    assert_kept(&r, &resolved);
    assert_eq!(r.read("shared.txt"), "both\n");
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // Task 1 is done (merged by hand): continue records it, it does not run again.
    assert_merged_by_hand_not_rerun(&r, &out, "1");
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)[1..]));
    assert_kept(&r, &resolved);
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &resolved, "main"]));
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
}

/// An agent merges task 1's branch into `main` (a move qw refuses), then the user
/// commits on top: the way back leaves the user's commit out, so the fix keeps it on a
/// branch first. Following both printed commands loses nothing.
#[test]
fn worktree_restore_hint_keeps_a_user_commit_made_on_top_of_the_agents_move() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "move",
                "git -C \"$MAIN\" merge -q --no-edit qw/demo/1\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user"
            )
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let user = sha(&r, ":/user");
    let cmds = all_printed(&err);
    assert_eq!(cmds.len(), 2, "{err}");
    assert!(cmds[0].starts_with("git branch qw-kept/"), "{err}");
    assert!(
        err.contains(&user[..10]),
        "the commit left out is not named: {err}"
    );
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &user);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert_kept(&r, &user);
}

/// `git commit --amend` of qw's merge of task 1 (in the main worktree, adding a file):
/// refused, and the fix keeps the amended commit on a branch before putting `main` back
/// at qw's merge — the amended content never vanishes.
#[test]
fn worktree_amend_of_qws_merge_is_kept_on_a_branch_by_the_hint() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(
                &r,
                "amend",
                "echo amended > \"$MAIN/amend.txt\"\ngit -C \"$MAIN\" add amend.txt\ngit -C \"$MAIN\" commit -q --amend --no-edit"
            )
        ),
    );
    r.action("3", &work("3"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    let err = t2["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("moved") && err.contains("no longer on it"),
        "{err}"
    );
    let amended = sha(&r, "main");
    let cmds = all_printed(&err);
    assert_eq!(cmds.len(), 2, "{err}");
    assert_eq!(
        cmds[0],
        format!("git branch qw-kept/{} main", &amended[..10]),
        "{err}"
    );
    assert!(cmds[1].starts_with("git reset"), "{err}");
    // The next run is refused with the same two commands.
    let early = refusal_line(&cont(&r, &[]));
    assert!(
        early.contains(&cmds[0]) && early.contains(&cmds[1]),
        "{early}"
    );
    assert!(early.contains("`qw workflow-continue demo`"), "{early}");
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &amended);
    assert_eq!(
        r.git(&["show", &format!("qw-kept/{}:amend.txt", &amended[..10])]),
        "amended\n"
    );
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
    assert_kept(&r, &amended);
}

// ---------------------------------------------------------------------------------
// rev2 finding 4: the record of a refused move, planted as something else.
// ---------------------------------------------------------------------------------

/// A record that is no file qw wrote is refused (exit 2) at once — never a hang on a
/// FIFO, never a read of a device without end — with one line naming it and saying
/// that deleting it takes the branch as it is; doing that, the run goes on.
fn bad_record_is_refused_then_deleted(plant: &dyn Fn(&std::path::Path)) {
    let r = Repo::new(&tasks(1));
    r.action("1", &work("1"));
    let rec = record(&r);
    std::fs::create_dir_all(rec.parent().unwrap()).unwrap();
    plant(&rec);
    for _ in 0..2 {
        let out = run_auto(&r, &[]);
        // `run` is bounded by the harness: a hang panics instead of returning.
        let line = refusal_line(&out);
        assert!(
            line.contains(&rec.display().to_string())
                && line.contains("delete it to take the branch as it is"),
            "{line}"
        );
        assert_eq!(r.runs_of("1"), 0, "a task ran");
    }
    let err = stderr(&run_auto(&r, &[]));
    let rm = err
        .split('`')
        .skip(1)
        .step_by(2)
        .find(|c| c.starts_with("rm "))
        .unwrap_or_else(|| panic!("no rm command: {err}"))
        .to_owned();
    follow_in_sh(&r, &rm);
    assert!(rec.symlink_metadata().is_err(), "{rm} left it");
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt"]);
}

#[test]
fn worktree_refused_move_record_that_is_a_fifo_is_refused_without_hanging() {
    bad_record_is_refused_then_deleted(&|p| {
        let st = std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    });
}

#[test]
fn worktree_refused_move_record_linked_to_dev_zero_is_refused_unread() {
    bad_record_is_refused_then_deleted(&|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap());
}

#[test]
fn worktree_refused_move_record_that_is_a_directory_is_refused() {
    bad_record_is_refused_then_deleted(&|p| {
        std::fs::create_dir_all(p.join("inner")).unwrap();
    });
}

#[test]
fn worktree_refused_move_record_not_utf8_or_garbage_is_refused() {
    bad_record_is_refused_then_deleted(&|p| {
        std::fs::write(p, b"branch m\xffain\nwas \xfe\n").unwrap()
    });
    bad_record_is_refused_then_deleted(&|p| std::fs::write(p, "what is this\n").unwrap());
}

// ---------------------------------------------------------------------------------
// rev2 finding 3: a move in the last task, which no merge or task start comes after.
// ---------------------------------------------------------------------------------

/// The last task's agent moves `main` (`mv`) and fails: the run's end checks the target
/// once more, says the move and records it; the next continue is refused naming the
/// move (not staged changes), and following its command then continuing loses nothing.
fn moved_by_the_last_task(mv: &str, expect: &str) {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(&r, "last", &format!("{mv}\nexit 1"))
        ),
    );
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t2 = r.f.task("2");
    assert_eq!(t2["status"], "failed", "{t2}");
    let err = stderr(&out);
    assert!(
        err.contains("moved while the workflow ran")
            && err.contains("noticed it when the run ended"),
        "{err}"
    );
    assert!(record(&r).is_file(), "no record: {err}");
    let line = refusal_line(&cont(&r, &[]));
    assert!(line.contains("moved") && !line.contains("staged"), "{line}");
    let cmd = printed(&line, expect);
    follow(&r, &cmd);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(2)));
    assert!(!record(&r).exists());
}

#[test]
fn worktree_agents_merge_of_its_own_branch_in_the_last_task_is_refused_at_the_end() {
    moved_by_the_last_task(
        "git -C \"$MAIN\" merge -q --no-edit qw/demo/2",
        "git reset --keep",
    );
}

#[test]
fn worktree_update_ref_of_the_target_in_the_last_task_is_refused_at_the_end() {
    moved_by_the_last_task(
        "git update-ref refs/heads/main HEAD",
        "git update-ref refs/heads/main",
    );
}

// ---------------------------------------------------------------------------------
// rev2 finding 6: branch names in printed commands are shell-quoted.
// ---------------------------------------------------------------------------------

#[test]
fn worktree_hint_for_a_target_named_with_a_command_substitution_is_quoted() {
    let r = Repo::new(&tasks(2));
    let b = "x$(touch${IFS}PWNED)";
    r.git(&["switch", "-q", "-c", b]);
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "move",
                "git update-ref \"refs/heads/$(git -C \"$MAIN\" symbolic-ref --short HEAD)\" HEAD"
            )
        ),
    );
    r.action("2", &work("2"));
    let was = sha(&r, "HEAD");
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let cmd = printed(&err, "git update-ref");
    follow_in_sh(&r, &cmd);
    assert!(!r.root().join("PWNED").exists(), "`{cmd}` ran code");
    assert!(!r.aux.path().join("PWNED").exists(), "`{cmd}` ran code");
    assert_eq!(sha(&r, &format!("refs/heads/{b}")), was, "{cmd}");
    let line = err.clone();
    assert!(line.contains("`qw workflow-continue demo`"), "{line}");
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in ["f1.txt", "f2.txt"] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("refs/heads/{b}:{f}")]),
            "{f}"
        );
    }
}

#[test]
fn worktree_target_named_like_a_task_branch_is_refused_up_front() {
    let r = Repo::new(&tasks(1));
    r.action("1", &work("1"));
    r.git(&["switch", "-q", "-c", "qw/demo/1"]);
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("`qw/demo/1`") && stderr(&out).contains("task branches"),
        "{}",
        diag(&out)
    );
    assert_eq!(r.runs_of("1"), 0);
    r.git(&["switch", "-q", "-c", "work"]);
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

// ---------------------------------------------------------------------------------
// rev2 finding 8: the staged-changes line, from a subdirectory, with odd names.
// ---------------------------------------------------------------------------------

#[test]
fn worktree_staged_hint_works_from_a_subdirectory_and_names_globs_literally() {
    let r = Repo::new(&tasks(1));
    r.action("1", &work("1"));
    std::fs::write(r.root().join("src/keep.txt"), "mine\n").unwrap();
    std::fs::write(r.root().join("src/a*.txt"), "star\n").unwrap();
    std::fs::write(r.root().join("src/ab.txt"), "ab\n").unwrap();
    r.git(&["add", "src/keep.txt", "src/a*.txt", "src/ab.txt"]);
    let line = refusal_line(&run_auto(&r, &[]));
    let restore = printed(&line, "git restore --staged -- ");
    // From `src/`, where a path from the top would name nothing.
    let words = shell_words::split(&restore).unwrap();
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let out = r.git_cmd(&r.root().join("src"), &args);
    assert!(out.status.success(), "`{restore}`: {}", diag(&out));
    assert_eq!(r.git(&["diff", "--cached", "--name-only"]), "", "{restore}");
    assert_eq!(r.read("src/keep.txt"), "mine\n");
    let out = run_auto(&r, &["--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &["f1.txt"]);
    assert_eq!(r.read("src/keep.txt"), "mine\n");
}

#[test]
fn worktree_staged_name_with_a_newline_and_a_backquote_cannot_break_the_line() {
    let r = Repo::new(&tasks(1));
    r.action("1", &work("1"));
    let name = "we`ird\nqw: error: forged";
    std::fs::write(r.root().join(name), "odd\n").unwrap();
    r.git(&["add", "--", name]);
    // One `qw: error:` line (refusal_line insists), the name shown escaped.
    let line = refusal_line(&run_auto(&r, &[]));
    assert!(line.contains("\\n") && !line.contains(name), "{line}");
    let restore = printed(&line, "git restore --staged -- ");
    assert_eq!(restore, "git restore --staged -- :/", "{line}");
    follow(&r, &restore);
    assert_eq!(r.git(&["diff", "--cached", "--name-only"]), "");
    assert_eq!(r.read(name), "odd\n");
}

// ---------------------------------------------------------------------------------
// rev2 finding 5: no reflog to say where the branch was.
// ---------------------------------------------------------------------------------

/// Reflogs off and gone; the user commits, then an agent merges task 1's branch into
/// `main`: the way back is where qw left it, the line says no reflog was there, and the
/// user's commit is kept on a branch first.
#[test]
fn worktree_restore_hint_without_a_reflog_says_so_and_keeps_the_users_commit() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "move",
                "git -C \"$MAIN\" config core.logAllRefUpdates false\nrm -rf \"$MAIN/.git/logs\"\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\ngit -C \"$MAIN\" merge -q --no-edit qw/demo/1"
            )
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    assert!(err.contains("no reflog"), "{err}");
    let user = sha(&r, ":/user");
    assert!(err.contains(&user[..10]), "{err}");
    let cmds = all_printed(&err);
    assert_eq!(cmds.len(), 2, "{err}");
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &user);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert_kept(&r, &user);
}

// ---------------------------------------------------------------------------------
// The reftable backend (no `.git/logs` files), a rename no log tells, commits on a
// detached HEAD.
// ---------------------------------------------------------------------------------

/// The repository keeps its refs in reftable tables: no log files to read.
fn assert_reftable(r: &Repo) {
    assert_eq!(
        r.git(&["rev-parse", "--show-ref-format"]).trim(),
        "reftable"
    );
    assert!(!r.root().join(".git/logs/HEAD").exists());
}

#[test]
fn worktree_reftable_run_merges_every_task() {
    let r = Repo::reftable(&tasks(3));
    assert_reftable(&r);
    for i in ["1", "2", "3"] {
        r.action(i, &work(i));
    }
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&as_strs(&files(3)));
}

#[test]
fn worktree_reftable_deleted_target_hint_keeps_the_users_commit() {
    let r = Repo::reftable(&tasks(2));
    assert_reftable(&r);
    // As with log files: the user commits, then the agent deletes `main` while the main
    // worktree is on it — git cannot read that HEAD's log any more, yet the hint puts
    // `main` on the user's commit, not back before it.
    let saved = r.aux.path().join("user-commit");
    let mv = format!(
        "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\ngit -C \"$MAIN\" rev-parse HEAD > {}\ngit update-ref -d refs/heads/main",
        saved.display()
    );
    let err = refused_then_followed(&r, &mv, "git update-ref refs/heads/main ", None);
    let user = std::fs::read_to_string(&saved).unwrap().trim().to_owned();
    assert!(err.contains("deleted"), "{err}");
    assert!(
        err.contains(&format!("`git update-ref refs/heads/main {user}`")),
        "{err}"
    );
    let mut all = files(2);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
}

#[test]
fn worktree_reftable_agents_move_is_refused_with_the_users_commit_kept() {
    let r = Repo::reftable(&tasks(2));
    assert_reftable(&r);
    // The agent moves `main` to its own HEAD after a commit of the user's: the branch's
    // log (read through git) puts it back on the user's commit.
    let saved = r.aux.path().join("user-commit");
    let mv = format!(
        "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\ngit -C \"$MAIN\" rev-parse HEAD > {}\ngit update-ref refs/heads/main HEAD",
        saved.display()
    );
    let err = refused_then_followed(&r, &mv, "git update-ref refs/heads/main ", None);
    let user = std::fs::read_to_string(&saved).unwrap().trim().to_owned();
    assert!(
        err.contains(&format!("`git update-ref refs/heads/main {user}`")),
        "{err}"
    );
    let mut all = files(2);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
}

#[test]
fn worktree_reftable_rename_from_the_agents_worktree_is_a_move() {
    let r = Repo::reftable(&tasks(2));
    assert_reftable(&r);
    let err = refused_then_followed(
        &r,
        "git branch -m main other",
        "git branch -m ",
        Some("other main"),
    );
    assert!(err.contains("renamed to `other`"), "{err}");
    r.assert_all_merged(&as_strs(&files(2)));
}

/// Run with `mv` once in task 2 (of 3, after its work), then follow every command the
/// refusal of task 2 printed, continue, and check every task's file is on `main`.
/// The refusal's line.
fn refused_then_all_followed(r: &Repo, mv: &str) -> String {
    r.action("1", &work("1"));
    r.action("2", &format!("{}{}", work("2"), once(r, "move", mv)));
    r.action("3", &work("3"));
    let out = run_auto(r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    let err = t2["error"].as_str().unwrap().to_owned();
    assert!(err.contains("moved") && err.contains("`main`"), "{err}");
    assert_eq!(r.runs_of("3"), 0, "a task started on a moved target");
    for c in all_printed(&err) {
        follow(r, &c);
    }
    let out = cont(r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(r, &as_strs(&files(3)));
    err
}

/// No reflog (`core.logAllRefUpdates=false`, the log file gone): a rename from the
/// agent's worktree is told as "renamed or deleted", not as a deletion, and the way
/// back is the rename back.
#[test]
fn worktree_rename_with_no_reflog_is_told_as_renamed_or_deleted() {
    let r = Repo::new(&tasks(3));
    let err = refused_then_all_followed(
        &r,
        "rm -f \"$(git rev-parse --git-common-dir)/logs/refs/heads/main\"\ngit -c core.logAllRefUpdates=false branch -m main other",
    );
    assert!(
        err.contains("renamed to `other` or deleted (no reflog says which"),
        "{err}"
    );
    assert_eq!(
        all_printed(&err),
        vec!["git branch -m other main".to_owned()]
    );
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/other"]));
}

/// The same, then the user commits on the renamed branch: still a rename, and the
/// commit comes back with the name.
#[test]
fn worktree_rename_with_no_reflog_then_a_user_commit_keeps_it() {
    let r = Repo::new(&tasks(3));
    let err = refused_then_all_followed(
        &r,
        "git -C \"$MAIN\" config core.logAllRefUpdates false\nrm -f \"$(git rev-parse --git-common-dir)/logs/refs/heads/main\"\ngit -C \"$MAIN\" branch -m renamed\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user",
    );
    assert!(err.contains("renamed to `renamed` or deleted"), "{err}");
    assert!(r.git(&["log", "--format=%s", "main"]).contains("user"));
}

/// The main worktree detached below qw's last merge, `main` deleted, a commit of the
/// user's on the detached HEAD: the way back (`git switch -c main …`) would leave it
/// held by HEAD's reflog only, so it is kept on a `qw-kept/` branch first, named.
#[test]
fn worktree_commit_on_a_detached_head_after_the_target_was_deleted_is_kept() {
    let r = Repo::new(&tasks(3));
    let err = refused_then_all_followed(
        &r,
        "git -C \"$MAIN\" switch -q --detach HEAD~1\ngit branch -D main\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user",
    );
    let user = sha(&r, ":/user");
    let cmds = all_printed(&err);
    assert_eq!(
        cmds[0],
        format!("git branch qw-kept/{} {user}", &user[..10]),
        "{err}"
    );
    assert!(cmds[1].starts_with("git switch -c main "), "{err}");
    assert!(err.contains(&user[..10]), "{err}");
    assert_kept(&r, &user);
}

/// `main` still there, the main worktree detached and a commit made there: `git switch
/// main` would leave it held by HEAD's reflog only, so it is kept first.
#[test]
fn worktree_commit_on_a_detached_main_head_is_kept_before_switching_back() {
    let r = Repo::new(&tasks(3));
    let err = refused_then_all_followed(
        &r,
        "git -C \"$MAIN\" switch -q --detach\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user",
    );
    let user = sha(&r, ":/user");
    let cmds = all_printed(&err);
    assert_eq!(
        cmds,
        vec![
            format!("git branch qw-kept/{} {user}", &user[..10]),
            "git switch main".to_owned()
        ],
        "{err}"
    );
    assert_kept(&r, &user);
}

/// Task `i`, conflicted then merged by hand, is completed and ticked by the continue
/// whose output is `out`, which said so; its agent ran once (the conflicted run).
fn assert_merged_by_hand_not_rerun(r: &Repo, out: &std::process::Output, i: &str) {
    let text = format!("{}{}", stdout(out), stderr(out));
    assert!(
        text.contains(&format!("task {i} conflicted in an earlier run"))
            && text.contains("merged into the target by hand"),
        "{text}"
    );
    assert_eq!(r.runs_of(i), 1, "task {i} ran again");
    let t = r.f.task(i);
    assert_eq!(t["status"], "completed", "{t}");
    assert!(
        r.f.tasks_md().contains(&format!("- [x] {i}.")),
        "{}",
        r.f.tasks_md()
    );
}

/// The usual shape: task 1 conflicts, the run ends, the user merges its branch by hand
/// as qw said and runs `workflow-continue`: task 1 is recorded completed, not run again
/// (its agent would redo work that is merged), and the rest run.
#[test]
fn worktree_conflicted_task_merged_by_hand_after_the_run_is_not_rerun() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &once(
            &r,
            "user",
            "echo one > shared.txt\ngit commit -qam s1\necho two > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" commit -qam user-two",
        ),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &["--fail-fast"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "merge_conflict", "{t1}");
    let merge = printed(t1["error"].as_str().unwrap(), "git merge");
    let words = shell_words::split(&merge).unwrap();
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    // The merge conflicts: resolved by hand and committed.
    assert!(!r.git_cmd(r.root(), &args).status.success());
    std::fs::write(r.root().join("shared.txt"), "both\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-qm", "resolved", "--no-edit"]);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_by_hand_not_rerun(&r, &out, "1");
    assert_merged_keeping_the_users_changes(&r, &["f2.txt"]);
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
}

// ---------------------------------------------------------------------------------
// qw's ticks of tasks.md taken mid-run (item 5's class).
// ---------------------------------------------------------------------------------

/// `mv` runs once in task 2 (of 3) in the main worktree, where qw has ticked task 1 in
/// `tasks.md` (tracked, uncommitted): the run puts the tick back before it ends and
/// says so; every task is ticked when it ends, none runs again on continue.
fn tick_taken_then_put_back(r: &Repo, mv: &str) {
    r.action("1", &work("1"));
    r.action("2", &format!("{}{}", work("2"), once(r, "take", mv)));
    r.action("3", &work("3"));
    let out = run_auto(r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("repaired: task 1 is completed, but its tick")
            && text.contains("was taken while the run went on"),
        "{text}"
    );
    let md = r.f.tasks_md();
    for i in ["1", "2", "3"] {
        assert!(md.contains(&format!("- [x] {i}.")), "task {i}: {md}");
    }
    let out = cont(r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in ["1", "2", "3"] {
        assert_eq!(r.runs_of(i), 1, "task {i} ran again");
    }
    r.assert_all_merged(&as_strs(&files(3)));
}

#[test]
fn worktree_users_stash_of_qws_tick_mid_run_is_put_back_before_the_run_ends() {
    let r = Repo::new(&tasks(3));
    tick_taken_then_put_back(&r, "git -C \"$MAIN\" stash -q");
    // The stash entry is the user's, kept.
    assert!(r.git_ok(&["rev-parse", "-q", "--verify", "refs/stash"]));
}

#[test]
fn worktree_checkout_of_tasks_md_mid_run_is_put_back_before_the_run_ends() {
    let r = Repo::new(&tasks(3));
    tick_taken_then_put_back(
        &r,
        "git -C \"$MAIN\" checkout -- .claude/specs/demo/tasks.md",
    );
}

// ---------------------------------------------------------------------------------
// Ctrl-C after an agent's move in the last task.
// ---------------------------------------------------------------------------------

/// The agent of the last task moves `main` onto its own commit, then hangs; the user
/// presses Ctrl-C (SIGINT to `workflow-auto`). The run ends 130, and the move is told
/// as a move, not blamed on the user's index (which now looks staged): the end-of-run
/// check recorded the refusal, so the next continue is refused with the command that
/// puts `main` back. Following it loses nothing.
#[test]
fn worktree_agents_move_in_the_last_task_then_sigint_is_refused_and_nothing_lost() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    let moved = r.aux.path().join("moved");
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(
                &r,
                "move",
                &format!(
                    "git update-ref refs/heads/main HEAD\ntouch {}\nsleep 100",
                    moved.display()
                )
            )
        ),
    );
    let was = sha(&r, "main");
    let cmd = r.agent_cmd();
    let mut child = r.f.start_auto(&[
        "--agent-cmd",
        &cmd,
        "--attempts",
        "1",
        "--parallel",
        "1",
        "--isolate",
        "worktree",
        "--task-timeout",
        "200",
    ]);
    let started = wait_until(std::time::Duration::from_secs(90), || moved.exists());
    unsafe_kill(child.id() as i32, 2);
    let ended = wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        unsafe_kill(child.id() as i32, 9);
    }
    let status = child.wait().unwrap();
    assert!(started, "the agent never moved `main`: {:?}", r.runs());
    assert!(ended, "the workflow did not end after SIGINT");
    assert_eq!(status.code(), Some(130));
    assert_ne!(sha(&r, "main"), was, "the move did not happen");
    assert!(record(&r).is_file(), "the refusal was not recorded");
    let line = refusal_line(&cont(&r, &[]));
    assert!(
        line.contains("was moved while the workflow ran, not by qw")
            && line.contains("refused it in an earlier run")
            && !line.contains("staged changes"),
        "{line}"
    );
    // Back on qw's merge of task 1 (the index never moved).
    let back = printed(&line, "git update-ref refs/heads/main ");
    let to = back.rsplit(' ').next().unwrap();
    assert!(
        r.git_ok(&["merge-base", "--is-ancestor", &was, to]) && to != was,
        "{line}"
    );
    for c in all_printed(&line) {
        follow(&r, &c);
    }
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert!(!record(&r).exists());
}

// ---------------------------------------------------------------------------------
// `git pull --rebase` of the target mid-run.
// ---------------------------------------------------------------------------------

/// `mv` pulls with `--rebase` in the main worktree (after `before`): refused, told as a
/// rebase naming the upstream commit, and the printed commands (keep the rebased
/// history, put `main` back, merge the upstream commits) keep qw's merges, the
/// upstream commit and whatever the user committed. The refusal line.
fn pull_rebase_refused_then_followed(r: &Repo, before: &str) -> String {
    let upstream = upstream_with_a_new_commit(r);
    let err = refused_then_all_followed(
        r,
        &format!("{before}git -C \"$MAIN\" pull -q --rebase --autostash"),
    );
    assert!(
        err.contains("it was rebased onto a commit it did not hold")
            && err.contains(&upstream[..10]),
        "{err}"
    );
    let cmds = all_printed(&err);
    assert_eq!(cmds.len(), 3, "{err}");
    assert!(cmds[0].starts_with("git branch qw-kept/"), "{err}");
    assert!(cmds[1].starts_with("git reset --keep "), "{err}");
    assert_eq!(cmds[2], format!("git merge --no-edit {upstream}"), "{err}");
    // The upstream commit is on `main` (merged, not left out), with every task's file.
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &upstream, "main"]));
    assert_eq!(r.git(&["show", "main:upstream.txt"]), "up\n");
    err
}

#[test]
fn worktree_pull_rebase_of_the_target_mid_run_keeps_the_upstream_commits() {
    let r = Repo::new(&tasks(3));
    pull_rebase_refused_then_followed(&r, "");
}

#[test]
fn worktree_pull_rebase_after_a_user_commit_keeps_both() {
    let r = Repo::new(&tasks(3));
    pull_rebase_refused_then_followed(
        &r,
        "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\n",
    );
    assert_eq!(r.git(&["show", "main:user.txt"]), "u\n");
    // The user's own commit, not a copy of it, is on `main`.
    let subjects = r.git(&["log", "--format=%s", "main"]);
    assert_eq!(subjects.matches("user").count(), 1, "{subjects}");
}

// ---------------------------------------------------------------------------------
// rev3: the user's ordinary moves are no agent's, and every printed command works.
// ---------------------------------------------------------------------------------

/// Shell: the user commits `user.txt` in the main worktree.
const USER_COMMIT: &str = "echo u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user\n";

/// rev3 H5: the user commits on `main` while tasks run, and a running task's agent then
/// syncs with `main` (`sync`, run in its worktree): the user's commit is in `main`'s new
/// history and in the task's, yet it was made in the main worktree — no task's commit
/// brought in. Nothing is refused; everything, the user's commit too, is merged.
fn user_commit_then_agent_syncs(sync: &str) {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!(
            "{USER_COMMIT}{}{}{}",
            open_gate(&r, "user"),
            gate(&r, "synced"),
            work("1")
        ),
    );
    r.action(
        "2",
        &format!(
            "{}{}{sync}\n{}",
            work("2"),
            gate(&r, "user"),
            open_gate(&r, "synced")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!stderr(&out).contains("moved"), "{}", diag(&out));
    assert!(!record(&r).exists(), "a refusal was recorded");
    let mut all = files(3);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
    let user = sha(&r, ":/^user");
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &user, "main"]));
    for i in ["1", "2", "3"] {
        assert_eq!(r.runs_of(i), 1);
    }
}

#[test]
fn worktree_user_commit_then_an_agents_merge_of_main_is_no_move() {
    user_commit_then_agent_syncs("git merge -q --no-edit main");
}

#[test]
fn worktree_user_commit_then_an_agents_rebase_on_main_is_no_move() {
    user_commit_then_agent_syncs("git rebase -q main");
}

/// rev3 H5, the hint: with no reflog to tell who made the user's commit (reflogs off and
/// gone), a task's merge of `main` after it is refused as before — but the way back
/// keeps the user's commit on a branch first, though the task's branch holds it too.
#[test]
fn worktree_restore_hint_keeps_a_user_commit_a_task_branch_also_holds() {
    let r = Repo::new(&tasks(3));
    r.git(&["config", "core.logAllRefUpdates", "false"]);
    std::fs::remove_dir_all(r.root().join(".git/logs")).unwrap();
    r.action(
        "1",
        &format!(
            "{}{}{}{}",
            once(&r, "user", USER_COMMIT),
            open_gate(&r, "user"),
            gate(&r, "synced"),
            work("1")
        ),
    );
    r.action(
        "2",
        &format!(
            "{}{}{}{}",
            work("2"),
            gate(&r, "user"),
            once(&r, "sync", "git merge -q --no-edit main"),
            open_gate(&r, "synced")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let user = sha(&r, ":/^user");
    let line = refusal_line(&cont(&r, &[]));
    assert!(line.contains(&user[..10]), "{line}");
    let cmds = all_printed(&line);
    assert_eq!(cmds.len(), 2, "{line}");
    assert!(cmds[0].starts_with("git branch qw-kept/"), "{line}");
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &user);
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
    assert_kept(&r, &user);
}

/// rev3 H1: the user commits on `main` mid-run and goes on editing (`edit`, in the main
/// worktree): the files differ from the index, but are not the old tip's — no `reset
/// --mixed`. Nothing is refused; the commit is merged over, the edit left as it is.
fn user_commit_then_edit(commit_and_edit: &str, file: &str, on_disk: &str) {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!("{}{}", work("1"), once(&r, "user", commit_and_edit)),
    );
    r.action("2", &work("2"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!stderr(&out).contains("moved"), "{}", diag(&out));
    assert!(!record(&r).exists(), "a refusal was recorded");
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(2)));
    assert!(r.git(&["log", "--format=%s", "main"]).contains("user"));
    assert_eq!(r.read(file), on_disk);
    assert_eq!(r.runs_of("2"), 1);
}

#[test]
fn worktree_user_commit_then_more_edits_of_the_file_is_no_move() {
    user_commit_then_edit(
        &format!("{USER_COMMIT}echo more >> \"$MAIN/user.txt\""),
        "user.txt",
        "u\nmore\n",
    );
}

#[test]
fn worktree_user_commit_of_part_of_a_file_is_no_move() {
    // What `git add -p` leaves: one change staged and committed, the next one not.
    user_commit_then_edit(
        "echo a >> \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" add shared.txt\necho b >> \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" commit -qm user",
        "shared.txt",
        "base\na\nb\n",
    );
}

/// rev3 M7: the user commits on `main`, qw merges task 1 over it, then the user undoes
/// "their last commit" (`git reset <mode> HEAD~1`), taking qw's merge off. Refused; the
/// printed command, run as it is, puts `main` back at qw's merge (`expect`), and the
/// run goes on losing nothing.
fn user_undoes_qws_merge(mode: &str, expect: &str) {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!("{}{}", work("1"), once(&r, "user", USER_COMMIT)),
    );
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(
                &r,
                "undo",
                &format!("git -C \"$MAIN\" reset -q {mode} HEAD~1")
            )
        ),
    );
    r.action("3", &work("3"));
    let out = run_auto(&r, &[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed");
    // qw's merge of task 1, the step before the user's reset in `main`'s reflog.
    let merged = sha(&r, "main@{1}");
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    let err = t2["error"].as_str().unwrap().to_owned();
    assert!(err.contains("was moved"), "{err}");
    let cmds = all_printed(&err);
    // What `main` holds when the hint is followed is kept first (rev5b F14).
    let now = sha(&r, "main");
    assert_eq!(
        cmds,
        vec![
            format!("git branch qw-kept/{} main", &now[..10]),
            format!("{expect} {merged}")
        ],
        "{err}"
    );
    for c in &cmds {
        follow(&r, c);
    }
    assert_eq!(sha(&r, "main"), merged);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let mut all = files(3);
    all.push("user.txt".into());
    r.assert_all_merged(&as_strs(&all));
}

#[test]
fn worktree_restore_hint_after_the_user_soft_resets_qws_merge() {
    user_undoes_qws_merge("--soft", "git update-ref refs/heads/main");
}

#[test]
fn worktree_restore_hint_after_the_user_mixed_resets_qws_merge() {
    user_undoes_qws_merge("--mixed", "git reset -q");
}

#[test]
fn worktree_restore_hint_after_the_user_hard_resets_qws_merge() {
    user_undoes_qws_merge("--hard", "git reset --keep");
}

/// Shell: wait until task `id`'s worktree is gone (qw removed it, its branch kept).
fn until_removed(id: &str) -> String {
    format!(
        "while git -C \"$MAIN\" worktree list --porcelain | grep -qx 'branch refs/heads/qw/demo/{id}'; do sleep 0.05; done\n"
    )
}

/// rev3 M6: task 2 fails and qw keeps its work on `qw/demo/2`; the user merges that
/// branch into `main` by hand while task 3 runs (here from task 3's script, in the main
/// worktree, once task 2's worktree is gone). The user's merge, not an agent's: tasks 3
/// and 4 are merged over it, nothing refused or recorded.
#[test]
fn worktree_users_merge_of_a_failed_tasks_kept_branch_mid_run_is_accepted() {
    let r = Repo::new(&tasks(4));
    r.action("1", &work("1"));
    r.action("2", &format!("{}exit 1\n", work("2")));
    r.action(
        "3",
        &format!(
            "{}{}{}",
            until_removed("2"),
            once(
                &r,
                "byhand",
                "git -C \"$MAIN\" merge -q --no-edit qw/demo/2"
            ),
            work("3")
        ),
    );
    r.action("4", &work("4"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["status"], "failed");
    for i in ["1", "3", "4"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "completed", "task {i} refused: {t}");
    }
    assert!(!stderr(&out).contains("was moved"), "{}", diag(&out));
    assert!(!record(&r).exists(), "a refusal was recorded");
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(4)));
}

/// rev3 M8: task 2's merge conflicts (qw says to merge it by hand); then an agent merges
/// it into `main` and commits the conflict markers. Not a merge by hand to accept: the
/// run is refused naming the markers, and the printed commands, followed, lose nothing.
#[test]
fn worktree_merge_of_a_conflicted_branch_with_conflict_markers_is_refused() {
    let r = Repo::new(&tasks(4));
    r.action(
        "1",
        &once(&r, "s1", "echo one > shared.txt\ngit commit -qam s1"),
    );
    r.action(
        "2",
        &once(
            &r,
            "s2",
            "echo two > shared.txt\ngit commit -qam s2\nwhile [ \"$(git -C \"$MAIN\" show main:shared.txt)\" != one ]; do sleep 0.05; done",
        ),
    );
    r.action(
        "3",
        &format!(
            "{}{}{}",
            until_removed("2"),
            once(
                &r,
                "markers",
                "git -C \"$MAIN\" merge -q qw/demo/2 >/dev/null 2>&1 || true\ngit -C \"$MAIN\" commit -qam 'agent merged'"
            ),
            work("3")
        ),
    );
    r.action("4", &work("4"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict");
    let t3 = r.f.task("3");
    assert_eq!(t3["outcome"], "workspace_error", "{t3}");
    let err = t3["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("conflict markers in shared.txt") && err.contains("`qw/demo/2`"),
        "{err}"
    );
    assert!(record(&r).is_file());
    let cmds = all_printed(&err);
    let markers = sha(&r, "main");
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &markers);
    assert_eq!(r.git(&["show", "main:shared.txt"]), "one\n");
}

/// rev3 L2: a target named `qw` or `qw/<spec>` (git could not make `qw/<spec>/<id>`
/// beside it) is refused up front, exit 2, nothing run.
#[test]
fn worktree_target_named_like_the_task_branches_folder_is_refused_up_front() {
    for name in ["qw", "qw/demo"] {
        let r = Repo::new(&tasks(1));
        r.action("1", &work("1"));
        r.git(&["switch", "-q", "-c", name]);
        let out = run_auto(&r, &[]);
        assert_eq!(code(&out), 2, "{}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("branch `{name}`")) && err.contains("task branches"),
            "{err}"
        );
        assert_eq!(r.runs_of("1"), 0);
        assert!(r.branches().iter().all(|b| b == name), "{:?}", r.branches());
    }
}

/// rev3 L3: a record naming a commit the repository does not have (pruned) is refused up
/// front like any other bad record: exit 2, naming the record and `rm --`, and the
/// branch where it says branch.
#[test]
fn worktree_refused_move_record_naming_a_missing_commit_is_refused() {
    let missing = "0000000000000000000000000000000000000000";
    bad_record_is_refused_then_deleted(&|p| {
        std::fs::write(p, format!("branch main\nwas {missing}\n")).unwrap()
    });
    let r = Repo::new(&tasks(1));
    r.action("1", &work("1"));
    let rec = record(&r);
    std::fs::create_dir_all(rec.parent().unwrap()).unwrap();
    std::fs::write(&rec, format!("branch main\nwas {missing}\n")).unwrap();
    let line = refusal_line(&run_auto(&r, &[]));
    assert!(
        line.contains(missing) && line.contains("branch `main`"),
        "{line}"
    );
    assert!(
        !line.contains(&format!("branch `{}`", rec.display())),
        "{line}"
    );
    assert!(line.contains("`qw workflow-continue demo`"), "{line}");
}
