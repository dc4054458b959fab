//! rev9 N5, N9, rev8a F8 rest: agents that sabotage their worktree's git dir (delete it
//! and their branch; point it at a sibling task's), and agents that copy the content of
//! a user's own unmerged branch into their task.

use crate::support::moves::{gate, has, open_gate, work};
use crate::support::*;
use crate::worktree::Repo;

/// The commit of `main`'s merge of task `id` (its subject names it).
fn merge_of(r: &Repo, id: &str) -> String {
    let m = r.git(&[
        "log",
        "-1",
        "--format=%H",
        &format!("--grep=merge task {id} "),
        "main",
    ]);
    assert!(!m.trim().is_empty(), "no merge of task {id} on main");
    m.trim().to_owned()
}

/// rev9 N5: an agent that deletes its worktree's git dir (or its `.git` file) AND its
/// branch `qw/demo/1` (or moves the branch to a commit of no history of the task's):
/// `repair_admin` needed the branch, so the worktree was removed with the agent's files.
/// The branch is made again from where qw recorded it, the files saved and merged.
#[test]
fn gitdir_deleted_with_its_branch_is_rebuilt_from_the_recorded_start() {
    // The common git dir, found from the worktree while its own git dir is still there.
    let common = "C=\"$(git rev-parse --path-format=absolute --git-common-dir)\"\nG=\"$(git rev-parse --absolute-git-dir)\"\nB=\"$(git symbolic-ref --short HEAD)\"\n[ -d \"$G\" ] && [ -d \"$C\" ] || exit 3\n";
    for (shape, damage) in [
        (
            "git dir and branch",
            "rm -rf \"$G\"\ngit --git-dir \"$C\" branch -D \"$B\"\n",
        ),
        (
            "git dir, branch moved to an unrelated commit",
            "rm -rf \"$G\"\nT=\"$(echo junk | git --git-dir \"$C\" hash-object -w --stdin)\"\nTR=\"$(printf '100644 blob %s\\tjunk.txt\\n' \"$T\" | git --git-dir \"$C\" mktree)\"\nO=\"$(git --git-dir \"$C\" commit-tree -m orphan \"$TR\")\"\ngit --git-dir \"$C\" update-ref \"refs/heads/$B\" \"$O\"\n",
        ),
        (
            ".git file and branch",
            "rm -f .git\ngit --git-dir \"$C\" update-ref -d \"refs/heads/$B\"\n",
        ),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n");
        // A commit, uncommitted work, then the damage.
        r.action(
            "1",
            &format!(
                "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\necho more > g1.txt\n{common}{damage}"
            ),
        );
        r.action("2", &work("2"));
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert_eq!(code(&out), 0, "{shape}: {text}");
        assert_eq!(r.f.task("1")["status"], "completed", "{shape}: {text}");
        for f in ["f1.txt", "g1.txt", "f2.txt"] {
            assert!(has(&r, "refs/heads/main", f), "{shape}: {f}: {text}");
        }
        assert!(!has(&r, "refs/heads/main", "junk.txt"), "{shape}: {text}");
        // The tracked files are all still there (no deletion committed).
        assert!(has(&r, "refs/heads/main", "second.txt"), "{shape}: {text}");
        assert!(
            has(&r, "refs/heads/main", "src/keep.txt"),
            "{shape}: {text}"
        );
        if shape.contains("unrelated") {
            // The agent's orphan commit is not lost either: named, kept apart.
            let kept = r
                .branches()
                .into_iter()
                .any(|b| b.starts_with("qw/demo/1@"));
            assert!(kept, "{shape}: {:?} {text}", r.branches());
        }
        r.assert_no_process();
    }
}

/// rev9 N9: task 1's agent points its git dir (the link in place of the directory, its
/// worktree's `.git` file, or the `gitdir` file in it) at task 2's, while task 2's agent
/// still runs. qw never follows it: task 1's files are saved as task 1's, task 2's
/// worktree is not removed under its agent, and task 2's work is merged as task 2's.
#[test]
fn gitdir_pointed_at_a_siblings_is_never_followed() {
    let find = "G=\"$(git rev-parse --absolute-git-dir)\"\nW=\"$(pwd -P)\"\nS=\"\"\nn=0\nwhile [ -z \"$S\" ] && [ $n -lt 600 ]; do for d in \"$(dirname \"$G\")\"/*; do [ \"$d\" != \"$G\" ] && [ -f \"$d/qw-task\" ] && grep -qx 2 \"$d/qw-task\" && S=\"$d\"; done; [ -n \"$S\" ] || sleep 0.05; n=$((n+1)); done\n[ -n \"$S\" ]\nSW=\"$(dirname \"$(cat \"$S/gitdir\")\")\"\n";
    for (shape, damage) in [
        ("git dir a link", "rm -rf \"$G\"\nln -s \"$S\" \"$G\"\n"),
        (".git file", "printf 'gitdir: %s\\n' \"$S\" > .git\n"),
        (
            "gitdir file",
            "printf '%s/.git\\n' \"$SW\" > \"$G/gitdir\"\n",
        ),
        (
            "git dir a link, .git file too",
            "rm -rf \"$G\"\nln -s \"$S\" \"$G\"\nprintf 'gitdir: %s\\n' \"$S\" > .git\n",
        ),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        r.action(
            "1",
            &format!(
                "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\necho more > g1.txt\n{}{find}{damage}",
                gate(&r, "2-started")
            ),
        );
        // Task 2 commits, lets task 1 go on, and works on until task 1's worktree is
        // gone (qw is done with task 1), then commits again in its own worktree.
        r.action(
            "2",
            &format!(
                "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\n{}n=0; while [ -e ../demo-1 ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done\necho 2b > f2b.txt\ngit add f2b.txt\ngit commit -qm f2b\n",
                open_gate(&r, "2-started")
            ),
        );
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert_eq!(code(&out), 0, "{shape}: {text}");
        assert_eq!(r.f.task("1")["status"], "completed", "{shape}: {text}");
        assert_eq!(r.f.task("2")["status"], "completed", "{shape}: {text}");
        assert_eq!(r.runs_of("2"), 1, "{shape}: {text}");
        for f in ["f1.txt", "g1.txt", "f2.txt", "f2b.txt", "second.txt"] {
            assert!(has(&r, "refs/heads/main", f), "{shape}: {f}: {text}");
        }
        // Each merge brought its own task's files, not the other's.
        let one = merge_of(&r, "1");
        assert!(has(&r, &format!("{one}^2"), "f1.txt"), "{shape}: {text}");
        assert!(has(&r, &format!("{one}^2"), "g1.txt"), "{shape}: {text}");
        assert!(!has(&r, &format!("{one}^2"), "f2.txt"), "{shape}: {text}");
        let two = merge_of(&r, "2");
        assert!(has(&r, &format!("{two}^2"), "f2b.txt"), "{shape}: {text}");
        assert!(!has(&r, &format!("{two}^2"), "g1.txt"), "{shape}: {text}");
        r.assert_no_process();
    }
}

/// The user's unmerged branch `userfeat`: `wip.txt`, then `wip2.txt` (two commits made
/// before the run, a second apart so a copy is later than both).
fn with_user_branch() -> (Repo, String) {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    r.git(&["switch", "-q", "-c", "userfeat"]);
    std::fs::write(r.root().join("wip.txt"), "user WIP, not for main\n").unwrap();
    r.git(&["add", "wip.txt"]);
    r.git(&["commit", "-qm", "user WIP"]);
    let wip = r.git(&["rev-parse", "HEAD"]).trim().to_owned();
    std::fs::write(r.root().join("wip2.txt"), "more WIP\n").unwrap();
    r.git(&["add", "wip2.txt"]);
    r.git(&["commit", "-qm", "user WIP 2"]);
    r.git(&["switch", "-q", "main"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    (r, wip)
}

/// rev8a F8 rest: the agent copies the content of the user's own unmerged branch into
/// its task — `git cherry-pick` (±`-x`, `-n` then its own commit), `git merge --squash`
/// then a commit, a file checked out of it committed alone. The copies have new ids
/// (the ancestry check does not see them): refused, naming the branch and the commit;
/// `main` does not get the user's WIP; the task's branch is kept; task 2 merges. A
/// change of the agent's own beside the user's branch is merged.
#[test]
fn gitdir_a_copy_of_a_users_branch_is_not_merged() {
    for (shape, copy) in [
        ("cherry-pick", "git cherry-pick userfeat~1\n"),
        ("cherry-pick -x", "git cherry-pick -x userfeat~1\n"),
        (
            "cherry-pick -n",
            "git cherry-pick -n userfeat~1\ngit commit -qm 'my own wip'\n",
        ),
        (
            "merge --squash",
            "git merge -q --squash userfeat\ngit commit -qm 'squashed'\n",
        ),
        (
            "checkout -- file",
            "git checkout userfeat~1 -- wip.txt\ngit commit -qm 'took a file'\n",
        ),
        (
            "own change",
            "echo mine > mine.txt\ngit add mine.txt\ngit commit -qm mine\n",
        ),
    ] {
        let (r, wip) = with_user_branch();
        r.action(
            "1",
            &format!("echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\n{copy}"),
        );
        r.action("2", &work("2"));
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{shape}: {text}");
        assert!(!has(&r, "refs/heads/main", "wip.txt"), "{shape}: {text}");
        assert!(!has(&r, "refs/heads/main", "wip2.txt"), "{shape}: {text}");
        if shape == "own change" {
            assert_eq!(code(&out), 0, "{shape}: {text}");
            assert!(has(&r, "refs/heads/main", "mine.txt"), "{shape}: {text}");
            assert!(!text.contains("your branch"), "{shape}: {text}");
        } else {
            assert_ne!(r.f.task("1")["status"], "completed", "{shape}: {text}");
            assert!(!has(&r, "refs/heads/main", "f1.txt"), "{shape}: {text}");
            assert!(has(&r, "qw/demo/1", "f1.txt"), "{shape}: {text}");
            assert!(
                text.contains("copies commits of your branch `userfeat`"),
                "{shape}: {text}"
            );
            if shape != "merge --squash" {
                assert!(text.contains(&wip[..10]), "{shape}: {text}");
            }
        }
        r.assert_no_process();
    }
}

/// The bound of the user-branch check: a branch of over 300 commits `main` lacks is not
/// read (its copies are not looked for), and that is said; the task merges.
#[test]
fn gitdir_a_users_branch_over_the_bound_is_skipped_and_said() {
    let r = Repo::new("- [ ] 1. Task 1\n");
    let base = r.git(&["rev-parse", "main"]).trim().to_owned();
    // 301 commits on `big`, each adding a file (`git fast-import`: one process).
    let mut fi = std::process::Command::new("git");
    fi.arg("-C").arg(r.root()).args(["fast-import", "--quiet"]);
    for (k, v) in r.git_env_pairs() {
        fi.env(k, v);
    }
    let mut child = fi.stdin(std::process::Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut input = String::new();
        for i in 0..301 {
            let content = format!("{i}\n");
            input.push_str(&format!(
                "commit refs/heads/big\ncommitter U <u@e> 1700000000 +0000\ndata 2\nc\n{}M 100644 inline big{i}.txt\ndata {}\n{content}\n",
                if i == 0 { format!("from {base}\n") } else { String::new() },
                content.len()
            ));
        }
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    r.action("1", &work("1"));
    let out = r.auto(&["--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(has(&r, "refs/heads/main", "f1.txt"), "{text}");
    assert!(
        text.contains("was not compared with your branch(es) `big`"),
        "{text}"
    );
    r.assert_no_process();
}
