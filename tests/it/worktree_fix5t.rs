//! Review rev5b F4, F2, F13, F11: a merge or rebase an agent left half done (its conflict
//! markers are never the task's work, its worktree is kept as said), a commit made in the
//! project's own submodule (never deleted with the worktree), a directory rename merged
//! with the target (not a deletion the safety net puts back), and a submodule whose name
//! holds a space. Every printed command is run as printed; every test asserts where the
//! work is afterwards.

use std::process::Command;

use crate::support::moves::{
    as_strs, cont, files, follow_sh, git_in, has, once, project_with_a_submodule, subsrc, task_dir,
    tasks,
};
use crate::support::*;
use crate::worktree::Repo;

/// The printed command (in backquotes) that starts with `prefix` and ends with `suffix`.
fn printed_cmd(text: &str, prefix: &str, suffix: &str) -> String {
    text.split('`')
        .skip(1)
        .step_by(2)
        .find(|c| c.starts_with(prefix) && c.ends_with(suffix))
        .unwrap_or_else(|| panic!("no `{prefix}…{suffix}` command in: {text}"))
        .to_owned()
}

/// No branch of the project holds a file with git's conflict markers.
fn assert_no_markers_on_any_branch(r: &Repo) {
    for b in r
        .git(&["for-each-ref", "--format=%(refname)", "refs/heads/"])
        .lines()
    {
        let out = r.git_cmd(r.root(), &["grep", "-l", "-e", "^<<<<<<< ", b]);
        assert!(
            stdout(&out).trim().is_empty(),
            "conflict markers on {b}: {}",
            stdout(&out)
        );
    }
}

/// Shell: wait (at most about 90 s) until `main` holds `file` (another task merged).
fn wait_for_on_main(file: &str) -> String {
    format!(
        "n=0; until git -C \"$MAIN\" cat-file -e main:{file} 2>/dev/null || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\n"
    )
}

#[test]
fn worktree_fix5t_rebase_and_merge_left_in_progress_keep_the_worktree_and_commit_no_markers() {
    // rev5b F4 as reported: task 2 rebases onto `main`, task 3 merges `main`, each
    // after task 1 changed the same lines there; both stop on the conflict and exit.
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        "echo one > shared.txt\necho one > second.txt\necho 1 > f1.txt\ngit add -A\ngit commit -qm s1\n",
    );
    r.action(
        "2",
        &(once(
            &r,
            "2",
            &format!(
                "echo two > shared.txt\ngit commit -qam s2\necho x2 > x2.txt\ngit add x2.txt\ngit commit -qm x2\n{}git rebase main >/dev/null 2>&1 || true\necho after-rebase > ar2.txt\n",
                wait_for_on_main("f1.txt")
            ),
        ) + "echo 2 > f2.txt\n"),
    );
    r.action(
        "3",
        &(once(
            &r,
            "3",
            &format!(
                "echo three > second.txt\ngit commit -qam s3\necho x3 > x3.txt\n{}git merge --no-edit main >/dev/null 2>&1 || true\necho after-merge > am3.txt\n",
                wait_for_on_main("f1.txt")
            ),
        ) + "echo 3 > f3.txt\n"),
    );
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let (wt2, wt3) = (task_dir(&r, "2"), task_dir(&r, "3"));
    let err2 = r.f.task("2")["error"].as_str().unwrap().to_owned();
    let err3 = r.f.task("3")["error"].as_str().unwrap().to_owned();
    assert_eq!(r.f.task("2")["outcome"], "workspace_error");
    assert_eq!(r.f.task("3")["outcome"], "workspace_error");
    assert!(
        err2.contains("a rebase in progress") && err2.contains(&wt2.display().to_string()),
        "{err2}"
    );
    assert!(
        err3.contains("a merge in progress") && err3.contains(&wt3.display().to_string()),
        "{err3}"
    );
    // Kept as said, the operation still in progress there.
    assert!(wt2.is_dir() && wt3.is_dir(), "{:?}", r.worktree_dirs());
    assert!(git_in(&r, &wt2, &["status"]).contains("rebase"));
    assert!(
        r.git_cmd(&wt3, &["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .status
            .success()
    );
    // Nothing committed: the task branch is where the agent's own commits left it.
    assert_eq!(r.git(&["show", "qw/demo/2:shared.txt"]), "two\n");
    assert!(has(&r, "qw/demo/2", "x2.txt"));
    assert_no_markers_on_any_branch(&r);
    assert_eq!(r.read("shared.txt"), "one\n");

    // The user does nothing: continue neither merges the markers nor removes anything.
    let out = cont(&r, &["--parallel", "3"]);
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert_no_markers_on_any_branch(&r);
    assert_eq!(r.read("shared.txt"), "one\n");
    assert!(wt2.is_dir() && wt3.is_dir());

    // The user finishes both (resolving as they see fit), then continues.
    std::fs::write(wt2.join("shared.txt"), "resolved2\n").unwrap();
    git_in(&r, &wt2, &["add", "shared.txt"]);
    follow_sh(
        &r,
        &printed_cmd(&err2, "git -C ", "rebase --continue"),
        None,
    );
    std::fs::write(wt3.join("second.txt"), "resolved3\n").unwrap();
    git_in(&r, &wt3, &["add", "second.txt"]);
    follow_sh(&r, &printed_cmd(&err3, "git -C ", "merge --continue"), None);
    let out = cont(&r, &["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_no_markers_on_any_branch(&r);
    assert_eq!(r.read("shared.txt"), "resolved2\n");
    assert_eq!(r.read("second.txt"), "resolved3\n");
    r.assert_all_merged(&as_strs(&files(3)));
    r.assert_all_merged(&["x2.txt", "ar2.txt", "x3.txt", "am3.txt"]);
}

#[test]
fn worktree_fix5t_cherry_pick_and_stash_pop_conflicts_are_not_saved_and_their_abort_goes_on() {
    // The same class, other shapes: a cherry-pick stopped on a conflict, and a
    // `git stash pop` that conflicted (unmerged paths, no operation in progress).
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &(once(
            &r,
            "1",
            "echo mine > shared.txt\ngit commit -qam mine\ngit switch -q -c side HEAD~1\necho theirs > shared.txt\ngit commit -qam theirs\ngit switch -q qw/demo/1\ngit cherry-pick side >/dev/null 2>&1 || true\ngit branch -D -q side 2>/dev/null || true\n",
        ) + "echo 1 > f1.txt\n"),
    );
    r.action(
        "2",
        &(once(
            &r,
            "2",
            "echo stashed > second.txt\ngit stash -q\necho committed > second.txt\ngit commit -qam committed\ngit stash pop >/dev/null 2>&1 || true\n",
        ) + "echo 2 > f2.txt\n"),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err1 = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let err2 = r.f.task("2")["error"].as_str().unwrap().to_owned();
    assert!(err1.contains("a cherry-pick in progress"), "{err1}");
    assert!(
        err2.contains("unresolved conflicts") && err2.contains("`second.txt`"),
        "{err2}"
    );
    assert!(task_dir(&r, "1").is_dir() && task_dir(&r, "2").is_dir());
    assert_no_markers_on_any_branch(&r);
    assert_eq!(r.read("shared.txt"), "base\n");

    // Each printed way out, pasted as printed, then continue: merged, no markers.
    follow_sh(
        &r,
        &printed_cmd(&err1, "git -C ", "cherry-pick --abort"),
        None,
    );
    follow_sh(
        &r,
        &printed_cmd(
            &err2,
            "git -C ",
            "checkout HEAD -- ':(top,literal)second.txt'",
        ),
        None,
    );
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_no_markers_on_any_branch(&r);
    assert_eq!(r.read("shared.txt"), "mine\n");
    assert_eq!(r.read("second.txt"), "committed\n");
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"));
    assert!(
        r.git(&["stash", "list"]).contains("qw/demo/2"),
        "the stash entry the pop conflicted on is still there"
    );
}

/// rev5b F13: task 2 renames `src/` to `lib/`; task 1 adds `src/new.txt` and is merged;
/// task 2 then merges `main` (`how`), which puts the new file at `lib/new.txt`. Merged
/// as a rename, not refused as a deletion, and never put back at its old path.
fn directory_rename_merged_with_main(how: &str) {
    let r = Repo::new(&tasks(2));
    r.f.p.write("src/other.txt", "other\n");
    r.git(&["add", "-A"]);
    r.git(&["commit", "-qm", "more in src"]);
    r.action(
        "1",
        "echo new > src/new.txt\ngit add src/new.txt\ngit commit -qm 'add src/new'\n",
    );
    r.action(
        "2",
        &format!(
            "git mv src lib\ngit commit -qm 'rename src to lib'\n{}{how}\n",
            wait_for_on_main("src/new.txt")
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("never held"), "{text}");
    let on_main = crate::support::moves::files_of(&r, "main");
    for f in ["lib/new.txt", "lib/keep.txt", "lib/other.txt"] {
        assert!(on_main.iter().any(|p| p == f), "{f}: {on_main:?}");
    }
    assert!(
        !on_main.iter().any(|p| p.starts_with("src/")),
        "the rename is half undone: {on_main:?}"
    );
    r.assert_all_merged(&["lib/new.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

#[test]
fn worktree_fix5t_directory_rename_merged_with_main_by_git_is_not_an_unheld_deletion() {
    directory_rename_merged_with_main("git -c merge.directoryRenames=true merge -q --no-edit main");
}

#[test]
fn worktree_fix5t_directory_rename_conflict_resolved_by_the_agent_is_not_an_unheld_deletion() {
    // git's default: "CONFLICT (file location)", which the agent resolves as git put it.
    directory_rename_merged_with_main(
        "git merge -q --no-edit main >/dev/null 2>&1 || { git add -A; git commit -q --no-edit; }",
    );
}

/// rev5b F11: the agent adds a submodule (`add` are `git submodule add`'s arguments
/// after the URL) whose name holds a space: neither its gitlink nor its `.gitmodules`
/// entry reaches `main`, as qw says.
fn submodule_name_with_a_space(add: &str) {
    let r = Repo::new(&tasks(2));
    let s = subsrc(&r, "sub src");
    r.action(
        "1",
        &format!(
            "git -c protocol.file.allow=always submodule add -q {add}\ngit commit -qm 'add submodule'\necho 1 > f1.txt\n",
            add = add.replace("<url>", &format!("'{}'", s.display()))
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("their `.gitmodules` entries are not merged either"),
        "{text}"
    );
    assert!(
        has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"),
        "{text}"
    );
    let on_main = crate::support::moves::files_of(&r, "main");
    assert!(
        !on_main
            .iter()
            .any(|p| p == ".gitmodules" || p.starts_with("vendor/")),
        "{on_main:?}: {}",
        r.git_cmd(r.root(), &["show", "main:.gitmodules"])
            .stdout
            .len()
    );
}

#[test]
fn worktree_fix5t_submodule_path_with_a_space_leaves_no_gitmodules_entry_on_main() {
    submodule_name_with_a_space("<url> 'vendor/x y'");
}

#[test]
fn worktree_fix5t_submodule_named_with_a_space_leaves_no_gitmodules_entry_on_main() {
    submodule_name_with_a_space("--name 'my lib' <url> vendor/lib");
}

/// rev5b F2: the agent commits in the project's own submodule and bumps its gitlink
/// (`then` runs after the bump). The worktree is not removed while it holds the only
/// copy of that commit; the printed way of keeping it in the project's copy of the
/// submodule, run as printed, then `--prune`: the commit `main` records exists, and
/// `git submodule update` of `main` works.
fn submodule_commit_bumped(detached: bool, then: &str) {
    let r = Repo::new(&tasks(2));
    project_with_a_submodule(&r);
    let branch = if detached {
        ""
    } else {
        "git switch -q -c feat\n"
    };
    r.action(
        "1",
        &format!(
            "git -c protocol.file.allow=always submodule update -q --init\ncd vendor/lib\n{branch}echo w > w.txt\ngit add w.txt\ngit commit -qm SUBWORK\ncd ../..\ngit add vendor/lib\ngit commit -qm 'bump lib'\n{then}echo 1 > f1.txt\n"
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    let w = task_dir(&r, "1");
    assert!(
        w.is_dir(),
        "the worktree holding SUBWORK was removed: {text}"
    );
    assert!(!text.contains("at its recorded commit"), "{text}");
    let recorded = r.git(&["ls-tree", "main", "vendor/lib"]);
    let sub = recorded.split_whitespace().nth(2).unwrap().to_owned();
    // The project's copy of the submodule lacks it until the printed command runs.
    let common = r.root().join(".git/modules/vendor/lib");
    let has_sub = || {
        r.git_cmd(&common, &["cat-file", "-e", &format!("{sub}^{{commit}}")])
            .status
            .success()
    };
    assert!(!has_sub(), "{text}");
    follow_sh(&r, &printed_cmd(&text, "git --git-dir ", "/HEAD"), None);
    assert!(has_sub());
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
    assert_eq!(
        git_in(&r, &common, &["log", "-1", "--format=%s", &sub]),
        "SUBWORK"
    );
    if detached {
        // The agent's `deinit` unregistered the submodule in the shared config: the
        // main worktree's checkout of it takes the commit from the project's copy.
        git_in(&r, &r.root().join("vendor/lib"), &["checkout", "-q", &sub]);
    } else {
        let out = Command::new("git")
            .args([
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "-q",
            ])
            .current_dir(r.root())
            .envs(r.git_env_pairs().iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", diag(&out));
    }
    assert_eq!(r.read("vendor/lib/w.txt"), "w\n");
}

#[test]
fn worktree_fix5t_commit_in_the_projects_submodule_with_its_gitlink_bumped_is_not_deleted() {
    // As reported: a branch of the agent's in the submodule, the gitlink bumped.
    submodule_commit_bumped(false, "");
}

#[test]
fn worktree_fix5t_submodule_commit_on_a_detached_head_then_deinit_is_not_deleted() {
    // Its files gone (`deinit`), its repository left in the worktree's git dir, the
    // commit on no branch of it: only its HEAD holds it.
    submodule_commit_bumped(true, "git submodule deinit -q -f vendor/lib\n");
}

/// rev5b F20: qw killed while task 2's only work is a stash entry made on its branch;
/// `qw worktrees --prune` deletes the branch as merged (nothing on it) and names the
/// entry with the command that brings it back, which works as printed (`apply_it`).
fn stash_only_work_named_by_prune(stash: &str, apply_it: bool) {
    use crate::support::moves::{gate, open_gate};
    let r = Repo::new(&tasks(2));
    let stashed = r.aux.path().join("stashed");
    r.action("1", "echo 1 > f1.txt\n");
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{stash}\ntouch {}\n{}",
            stashed.display(),
            gate(&r, "end")
        ),
    );
    let mut child = r.start_two_at_once("120");
    assert!(
        wait_until(std::time::Duration::from_secs(60), || stashed.exists()
            && r.f.task("1")["status"] == "completed"),
        "{:?}",
        r.runs()
    );
    sigkill(&mut child);
    let out = r.run(&["worktrees", "--prune"]);
    // The agent qw left behind ends (the gate opens).
    let _ = Command::new("sh")
        .arg("-c")
        .arg(open_gate(&r, "end"))
        .status();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(
        text.contains("made on branch `qw/demo/2`"),
        "the stash entry is not named: {text}"
    );
    let apply = printed_cmd(&text, "git stash apply ", "");
    if apply_it {
        follow_sh(&r, &apply, None);
        assert_eq!(r.read("f2.txt"), "2\n");
    }
    assert!(wait_until(std::time::Duration::from_secs(60), || {
        pids_with_env("QW_TEST_MARKER", &r.f.guard.0).is_empty()
    }));
}

#[test]
fn worktree_fix5t_prune_names_the_stash_entry_holding_a_killed_tasks_only_work() {
    // Named only: applied in the main worktree, a `-u` entry also holds the spec link
    // qw put in the task worktree, which git will not write over (`already exists`).
    stash_only_work_named_by_prune("git stash -q -u", false);
}

#[test]
fn worktree_fix5t_prune_names_a_stash_entry_with_a_message_made_on_the_task_branch() {
    stash_only_work_named_by_prune("git add f2.txt\ngit stash push -q -m 'half done'", true);
}
