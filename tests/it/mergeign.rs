//! rev8b F3: `git merge` replaces a file the main worktree ignores without a word, so a
//! task whose agent forced an ignored path into its result (`git add -f`) would overwrite
//! the user's `.env`, their `.claude/settings.local.json` where `.claude/` is ignored, or
//! qw's own state backups. Such a result is not merged: the user's file stays as it was,
//! the branch is kept and named; a result that changes a tracked file matching an ignore
//! rule, or adds ordinary files, merges as before.

use crate::support::auto::auto_args;
use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::{Layout, Repo, Root, bounded};

fn forced(path: &str, bytes: &str) -> String {
    format!(
        "mkdir -p \"$(dirname '{path}')\"\nprintf '%s' '{bytes}' > '{path}'\ngit add -f '{path}'\ngit commit -qm forced\n"
    )
}

fn assert_refused(r: &Repo, out: &std::process::Output, path: &str) {
    let text = diag(out);
    assert_ne!(r.f.task("1")["status"], "completed", "{text}");
    assert!(text.contains("which the main worktree ignores"), "{text}");
    assert!(text.contains(&format!("`{path}`")), "{text}");
    assert!(!has(r, "main", path), "{path} reached main: {text}");
    // Kept on its branch, named.
    assert!(
        r.git_ok(&["cat-file", "-e", &format!("qw/demo/1:{path}")]),
        "{text}"
    );
    // The sibling merged as usual.
    assert!(has(r, "main", "f2.txt"), "{text}");
    r.assert_no_process();
}

#[test]
fn mergeign_a_forced_env_never_overwrites_the_users_ignored_env() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    let mut ignore = std::fs::read_to_string(r.root().join(".gitignore")).unwrap();
    ignore.push_str(".env\n");
    std::fs::write(r.root().join(".gitignore"), ignore).unwrap();
    r.git(&["commit", "-qam", "ignore .env"]);
    std::fs::write(r.root().join(".env"), "API_KEY=the-users-real-secret\n").unwrap();
    r.action("1", &forced(".env", "API_KEY=placeholder"));
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_refused(&r, &out, ".env");
    assert_eq!(
        std::fs::read_to_string(r.root().join(".env")).unwrap(),
        "API_KEY=the-users-real-secret\n"
    );
}

#[test]
fn mergeign_an_ignored_claude_dir_keeps_the_users_settings_and_steering() {
    let r = Repo::build(
        "- [ ] 1. Task 1\n- [ ] 2. Task 2\n",
        Layout::Ignored,
        Root::Aux,
    );
    let settings = r.root().join(".claude/settings.local.json");
    let before = std::fs::read(&settings).unwrap();
    std::fs::create_dir_all(r.root().join(".claude/steering")).unwrap();
    std::fs::write(r.root().join(".claude/steering/product.md"), "# Mine\n").unwrap();
    let script = format!(
        "{}{}",
        forced(
            ".claude/settings.local.json",
            "{\"permissions\":{\"allow\":[\"Bash(*)\"]}}"
        ),
        forced(".claude/steering/product.md", "# Theirs")
    );
    r.action("1", &script);
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    // These two paths are the user's read-only copies in the worktree (claudeset): the
    // save puts them back as the base has them, so the result never holds them and the
    // task merges; either way nothing of the agent's reaches `main` or the user's files.
    let text = diag(&out);
    for p in [".claude/settings.local.json", ".claude/steering/product.md"] {
        assert!(
            !r.git_ok(&["cat-file", "-e", &format!("main:{p}")]),
            "{p}: {text}"
        );
    }
    assert!(has(&r, "main", "f2.txt"), "{text}");
    r.assert_no_process();
    assert_eq!(std::fs::read(&settings).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(r.root().join(".claude/steering/product.md")).unwrap(),
        "# Mine\n"
    );
}

#[test]
fn mergeign_qws_own_backups_are_never_a_tasks_result() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    let backup = r.run(&["state-backup", "precious"]);
    assert_eq!(code(&backup), 0, "{}", diag(&backup));
    let dir = r.root().join(".claude/backups/state");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.contains("precious"))
        .unwrap_or_else(|| panic!("no backup named precious in {}", dir.display()));
    let path = format!(".claude/backups/state/{name}");
    let before = std::fs::read(r.root().join(&path)).unwrap();
    r.action("1", &forced(&path, "{\"forged\":true}"));
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_refused(&r, &out, &path);
    assert_eq!(std::fs::read(r.root().join(&path)).unwrap(), before);
}

#[test]
fn mergeign_a_tracked_file_under_an_ignore_rule_and_plain_files_still_merge() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    // `fake.log*` is ignored; the user force-added one long ago: it is theirs to change,
    // and a task may change it too.
    std::fs::write(r.root().join("fake.log.keep"), "old\n").unwrap();
    r.git(&["add", "-f", "fake.log.keep"]);
    r.git(&["commit", "-qm", "tracked despite the rule"]);
    r.action(
        "1",
        "echo new > fake.log.keep\ngit add fake.log.keep\necho one > f1.txt\ngit add f1.txt\ngit commit -qm t1\n",
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    assert_eq!(r.read("fake.log.keep"), "new\n", "{text}");
    assert!(
        has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"),
        "{text}"
    );
    r.assert_no_process();
}

/// rev8b F14: an agent's tag named like the target (or like a task branch) is not the
/// target: no wait for a main worktree that never left `main`, every task merged, and a
/// tag made before the run changes nothing either.
#[test]
fn mergeign_a_tag_named_like_the_target_is_not_the_target() {
    for before in [false, true] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        if before {
            r.git(&["tag", "main", "HEAD~1"]);
        }
        r.action(
            "1",
            &format!(
                "{}git tag -f main HEAD\ngit tag -f qw/demo/2 HEAD\ngit tag -f HEAD HEAD~1 2>/dev/null || true\n",
                work("1")
            ),
        );
        r.action("2", &format!("sleep 1\n{}", work("2")));
        let cmd = r.agent_cmd();
        let mut c = r.f.cmd(&auto_args(
            "workflow-auto",
            &["demo", "A demo feature"],
            &cmd,
            &["--parallel", "2", "--isolate", "worktree"],
        ));
        c.env("QW_MAIN_WAIT_S", "30");
        let out = bounded(c, std::time::Duration::from_secs(120));
        let text = diag(&out);
        assert_eq!(code(&out), 0, "tag before the run: {before}: {text}");
        assert!(!text.contains("heads/main"), "{text}");
        assert!(!text.contains("waiting"), "{text}");
        assert!(
            has(&r, "refs/heads/main", "f1.txt") && has(&r, "refs/heads/main", "f2.txt"),
            "{text}\n{}",
            r.git(&["log", "--oneline", "--all", "--decorate", "--stat"])
        );
        r.assert_no_process();
    }
}

/// rev8b F11: a FIFO named `.gitignore` or `.gitattributes` left in a task's worktree
/// made qw's save block forever in git's `open()`. It is taken away (it holds no work),
/// said, and the task's work is merged; nothing hangs, nothing is left running.
#[test]
fn mergeign_a_fifo_named_like_gits_files_never_hangs_the_save() {
    for (name, fail) in [
        ("sub/.gitignore", false),
        (".gitattributes", false),
        ("deep/er/.gitignore", true),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
        r.action(
            "1",
            &format!(
                "{}mkdir -p \"$(dirname '{name}')\"\nmkfifo '{name}'\n{}",
                work("1"),
                if fail { "exit 3\n" } else { "" }
            ),
        );
        r.action("2", &work("2"));
        let cmd = r.agent_cmd();
        let out = bounded(
            r.f.cmd(&[
                "workflow-auto",
                "demo",
                "A demo feature",
                "--retry-delay",
                "0.1",
                "--attempts",
                "1",
                "--parallel",
                "2",
                "--isolate",
                "worktree",
                "--agent-cmd",
                &cmd,
            ]),
            std::time::Duration::from_secs(120),
        );
        let text = diag(&out);
        assert!(
            text.contains(&format!("removed `{name}` from the worktree")),
            "{name}: {text}"
        );
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{name}: {text}");
        if fail {
            assert_eq!(r.f.task("1")["outcome"], "agent_error", "{name}: {text}");
            // Saved on its branch for the next run, not lost.
            assert!(
                r.git_ok(&["cat-file", "-e", "refs/heads/qw/demo/1:f1.txt"]),
                "{text}"
            );
        } else {
            assert_eq!(code(&out), 0, "{name}: {text}");
            assert!(has(&r, "refs/heads/main", "f1.txt"), "{name}: {text}");
        }
        r.assert_no_process();
    }
}

/// rev8a F1/F9: an agent that deletes or damages its worktree's git dir
/// (`<common>/worktrees/<id>`) no longer loses its files (the worktree counted as wiped
/// and was removed) nor wedges the task: qw puts back what git needs, says so, and saves
/// and merges the work as usual.
#[test]
fn mergeign_a_deleted_or_damaged_worktree_git_dir_is_put_back_and_the_work_saved() {
    for (shape, damage) in [
        ("rm-admin", "rm -rf \"$(git rev-parse --git-dir)\"\n"),
        ("rm-head", "rm \"$(git rev-parse --git-dir)/HEAD\"\n"),
        (
            "commondir",
            "echo /nonexistent > \"$(git rev-parse --git-dir)/commondir\"\n",
        ),
        (
            "index",
            "echo garbage > \"$(git rev-parse --git-dir)/index\"\n",
        ),
    ] {
        let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n");
        // Uncommitted work, then the damage.
        r.action("1", &format!("echo one > f1.txt\n{damage}"));
        r.action("2", &work("2"));
        let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
        let text = diag(&out);
        assert!(text.contains("qw put back"), "{shape}: {text}");
        assert_eq!(code(&out), 0, "{shape}: {text}");
        assert_eq!(r.f.task("1")["status"], "completed", "{shape}: {text}");
        assert!(has(&r, "refs/heads/main", "f1.txt"), "{shape}: {text}");
        assert!(has(&r, "refs/heads/main", "f2.txt"), "{shape}: {text}");
        r.assert_no_process();
    }
}

/// rev9 N3: a task that stops ignoring a path (edits `.gitignore`) and adds a file there
/// forced nothing: merged. With a file of the user's at that path in the main worktree,
/// git refuses the merge (`--no-overwrite-ignore`) and the user's file stays.
#[test]
fn mergeign_a_result_that_unignores_a_path_is_merged() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    let mut ignore = std::fs::read_to_string(r.root().join(".gitignore")).unwrap();
    ignore.push_str("docs/*.pdf\n");
    std::fs::write(r.root().join(".gitignore"), &ignore).unwrap();
    r.git(&["commit", "-qam", "ignore pdfs"]);
    r.action(
        "1",
        "grep -v 'docs/\\*.pdf' .gitignore > .gi && mv .gi .gitignore\nmkdir -p docs\necho pdf > docs/spec.pdf\n",
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(has(&r, "main", "docs/spec.pdf"), "{text}");
    r.assert_no_process();
}
