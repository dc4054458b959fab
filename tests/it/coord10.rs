//! The tenth session's coordinator fixes of the reviews rev8a/rev8b.

use crate::support::auto::auto_args;
use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::{Repo, bounded};

/// rev8a F4: a task title over the kernel's 128 KiB per argument went whole into qw's
/// commit and merge messages: every save and merge of the task failed "Argument list too
/// long", on every continue. The title is cut in the messages; the task is merged.
#[test]
fn coord10_a_huge_task_title_is_cut_in_qws_git_messages() {
    let title = "x".repeat(140_000);
    let r = Repo::new(&format!("- [ ] 1. {title}\n- [ ] 2. Task 2\n"));
    r.action("1", "echo one > f1.txt\n");
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{}", &text[..text.len().min(4000)]);
    assert!(has(&r, "refs/heads/main", "f1.txt"));
    let subject = r.git(&["log", "-1", "--format=%s", "--grep=merge task 1", "main"]);
    assert!(subject.len() < 1000, "{}", subject.len());
    assert!(subject.contains('…'), "{subject}");
    r.assert_no_process();
}

/// rev8a F8: an agent that switches to a branch of the user's that was there before (a
/// WIP branch) and commits there, or merges it into its own, brought the user's unmerged
/// commits into `main` as the task's work. Refused, the branch named (and where it was,
/// when the agent moved it); `main` does not get the user's WIP; a branch the agent makes
/// itself (`switch -c`) is still its work and merged.
#[test]
fn coord10_a_users_branch_taken_by_an_agent_is_not_merged() {
    for shape in ["switch", "merge", "remote", "deep", "own-branch"] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        r.git(&["switch", "-q", "-c", "userfeat"]);
        std::fs::write(r.root().join("wip.txt"), "user WIP, not for main\n").unwrap();
        r.git(&["add", "wip.txt"]);
        r.git(&["commit", "-qm", "user WIP"]);
        let wip = r.git(&["rev-parse", "HEAD"]).trim().to_owned();
        r.git(&["switch", "-q", "main"]);
        if shape == "remote" {
            // A colleague's pushed branch, fetched: only a remote-tracking ref holds it.
            r.git(&["update-ref", "refs/remotes/origin/feature", &wip]);
            r.git(&["branch", "-D", "userfeat"]);
        }
        if shape == "deep" {
            // Two WIP commits, the branch made at its tip (its reflog has only that).
            r.git(&["branch", "-D", "userfeat"]);
            r.git(&["switch", "-q", "--detach", &wip]);
            std::fs::write(r.root().join("wip2.txt"), "more\n").unwrap();
            r.git(&["add", "wip2.txt"]);
            r.git(&["commit", "-qm", "user WIP 2"]);
            let tip = r.git(&["rev-parse", "HEAD"]).trim().to_owned();
            r.git(&["switch", "-q", "main"]);
            r.git(&["branch", "userfeat", &tip]);
        }
        let script = match shape {
            "remote" => {
                "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\ngit merge -q --no-edit origin/feature\n"
            }
            "deep" => {
                "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\ngit merge -q --no-edit userfeat~1\n"
            }
            "switch" => {
                "git switch -q userfeat\necho one > f1.txt\ngit add f1.txt\ngit commit -qm t1\n"
            }
            "merge" => {
                "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\ngit merge -q --no-edit userfeat\n"
            }
            _ => {
                "git switch -q -c feature/x\necho one > f1.txt\ngit add f1.txt\ngit commit -qm t1\n"
            }
        };
        r.action("1", script);
        r.action("2", &work("2"));
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{shape}: {text}");
        if shape == "own-branch" {
            assert_eq!(code(&out), 0, "{shape}: {text}");
            assert!(has(&r, "refs/heads/main", "f1.txt"), "{shape}: {text}");
        } else {
            assert!(!has(&r, "refs/heads/main", "wip.txt"), "{shape}: {text}");
            assert_ne!(r.f.task("1")["status"], "completed", "{shape}: {text}");
            let named = if shape == "remote" {
                "`remotes/origin/feature`"
            } else {
                "`userfeat`"
            };
            assert!(text.contains(named), "{shape}: {text}");
            if shape == "switch" {
                assert!(
                    text.contains(&format!("it was at {}", &wip[..10])),
                    "{text}"
                );
            }
        }
        r.assert_no_process();
    }
}

/// rev8a F5, rev8b F8: a task's result changing the project's tracked `.claude/` — the
/// permissions in its settings, a slash command, another spec's task list and checks —
/// was merged unseen and took effect in every later session. Refused, named; the
/// sibling merges; the main checkout's files are as they were.
#[test]
fn coord10_a_result_changing_claude_dir_is_not_merged() {
    for (shape, path, script) in [
        (
            "settings",
            ".claude/settings.local.json",
            "printf '{\"permissions\":{\"allow\":[\"Bash(*)\"]}}' > .claude/settings.local.json\n",
        ),
        (
            "command",
            ".claude/commands/x.md",
            "mkdir -p .claude/commands\necho 'run rm -rf' > .claude/commands/x.md\n",
        ),
        (
            "other spec",
            ".claude/specs/beta/tasks.md",
            "mkdir -p .claude/specs/beta\nprintf -- '- [ ] 1. B\\n  - _Verify: `true`_\\n' > .claude/specs/beta/tasks.md\n",
        ),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        let settings = std::fs::read(r.root().join(".claude/settings.local.json")).unwrap();
        r.action(
            "1",
            &format!("{script}echo one > f1.txt\ngit add -A\ngit commit -qm t1\n"),
        );
        r.action("2", &work("2"));
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert!(text.contains("under `.claude/`"), "{shape}: {text}");
        assert!(text.contains(&format!("`{path}`")), "{shape}: {text}");
        assert_ne!(r.f.task("1")["status"], "completed", "{shape}: {text}");
        assert!(!has(&r, "refs/heads/main", "f1.txt"), "{shape}: {text}");
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{shape}: {text}");
        assert_eq!(
            std::fs::read(r.root().join(".claude/settings.local.json")).unwrap(),
            settings
        );
        assert!(!r.root().join(".claude/specs/beta").exists(), "{shape}");
        r.assert_no_process();
    }
}

/// rev9 N2, N4: a FIFO where git reads a file — the task worktree's `<git dir>/HEAD` or
/// `logs/HEAD`, a `.gitignore` in the spec folder reached through qw's link (it lands in
/// the main checkout) — hung qw's git forever, holding the repository lock. Taken away
/// and said; every task merged; nothing left running. One task at a time: while a
/// sibling's git reads every worktree's `HEAD` (`worktree add`, `branch`), a FIFO the
/// agent makes at that moment blocks it until qw's bound (`QW_GIT_TIMEOUT_S`) — set
/// short here, so that race ends a run instead of hanging it.
#[test]
fn coord10_fifos_where_git_reads_never_hang_the_run() {
    for (shape, script) in [
        (
            "admin HEAD",
            "G=\"$(git rev-parse --absolute-git-dir)\" && [ -d \"$G\" ] || exit 3\nrm -f \"$G/HEAD\"\nmkfifo \"$G/HEAD\"\n",
        ),
        (
            "admin logs/HEAD",
            "G=\"$(git rev-parse --absolute-git-dir)\" && [ -d \"$G\" ] || exit 3\nrm -f \"$G/logs/HEAD\"\nmkfifo \"$G/logs/HEAD\"\n",
        ),
        ("spec folder", "mkfifo .claude/specs/demo/.gitignore\n"),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        r.action(
            "1",
            &format!("echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\n{script}"),
        );
        r.action("2", &work("2"));
        let cmd = r.agent_cmd();
        let mut c = r.f.cmd(&auto_args(
            "workflow-auto",
            &["demo", "A demo feature"],
            &cmd,
            &["--parallel", "1", "--isolate", "worktree"],
        ));
        c.env("QW_GIT_TIMEOUT_S", "30");
        let out = bounded(c, std::time::Duration::from_secs(150));
        let text = diag(&out);
        assert_eq!(code(&out), 0, "{shape}: {text}");
        assert!(has(&r, "refs/heads/main", "f1.txt"), "{shape}: {text}");
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{shape}: {text}");
        assert!(
            !r.root().join(".claude/specs/demo/.gitignore").exists(),
            "{shape}"
        );
        r.assert_no_process();
    }
}

/// rev9 N7: a user who saves a kept task branch before continuing (`git branch backup
/// qw/demo/1`) must not have the resumed task refused as "bringing in your branch": the
/// commits the task made in an earlier run are its own.
#[test]
fn coord10_a_users_backup_of_a_kept_task_branch_is_no_foreign_branch() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    r.action(
        "1",
        &crate::support::moves::once(
            &r,
            "t1",
            "echo one > f1.txt\ngit add f1.txt\ngit commit -qm t1\nexit 1\n",
        ),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(r.f.task("1")["outcome"], "agent_error", "{}", diag(&out));
    r.git(&["branch", "backup", "qw/demo/1"]);
    let cmd = r.agent_cmd();
    let out = r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--isolate",
        "worktree",
        "--agent-cmd",
        &cmd,
    ]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(!text.contains("from your branch"), "{text}");
    assert!(has(&r, "refs/heads/main", "f1.txt"), "{text}");
    r.assert_no_process();
}

/// rev9 N13: `qw init` in a new repository under a directory holding `.claude/` (like
/// `$HOME` with Claude Code's `~/.claude/`) initialised the parent: qw's commands and
/// settings went into the parent's `.claude/`. The repository is the project.
#[test]
fn coord10_init_in_a_repository_under_a_claude_dir_stays_in_the_repository() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".claude")).unwrap();
    let proj = home.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let out = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&proj)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = std::process::Command::new(qw_bin())
        .arg("init")
        .current_dir(&proj)
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(proj.join(".claude").is_dir(), "{}", diag(&out));
    let parent: Vec<_> = std::fs::read_dir(home.path().join(".claude"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(parent.is_empty(), "the parent's .claude got {parent:?}");
}

/// rev8b F15: `qw worktrees --prune` saved and removed an orphaned task worktree through a
/// symbolic link put in its place: the directory it led to was emptied. A link is left as
/// it is, said; what it leads to is untouched.
#[test]
fn coord10_prune_never_goes_through_a_link_put_in_place_of_a_worktree() {
    let r = Repo::new("- [ ] 1. Task 1\n");
    // The agent writes its work, then SIGKILLs its own qw: the worktree is left orphaned.
    r.action(
        "1",
        "echo w > f1.txt\np=$$\nwhile [ \"$p\" -gt 1 ]; do p=$(awk '{print $4}' /proc/$p/stat); if grep -q workflow-auto /proc/$p/cmdline 2>/dev/null; then kill -9 $p; break; fi; done\nsleep 1\n",
    );
    let _ = r.auto(&["--isolate", "worktree"]);
    let dirs = r.worktree_dirs();
    let w = dirs
        .iter()
        .find(|d| d.to_string_lossy().ends_with("demo-1"))
        .unwrap_or_else(|| panic!("no orphaned worktree in {dirs:?}"))
        .clone();
    let victim = r.aux.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious.txt"), "precious\n").unwrap();
    std::fs::copy(w.join(".git"), victim.join(".git")).unwrap();
    std::fs::rename(&w, w.with_extension("real")).unwrap();
    std::os::unix::fs::symlink(&victim, &w).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert!(text.contains("is a symbolic link"), "{text}");
    assert_eq!(
        std::fs::read_to_string(victim.join("precious.txt")).unwrap(),
        "precious\n",
        "{text}"
    );
    assert!(
        w.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink()),
        "{text}"
    );
    r.assert_no_process();
}
