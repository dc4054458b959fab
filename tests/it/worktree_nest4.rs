//! Review rev4 F2, F12, F13 and rev3 M2, M4 (issue 14, item 4's class): nested
//! repositories and what following qw's hint about them does, the worktree's git dir
//! holding a submodule's repository, packs told new by their name, and a directory made
//! again where a worktree was. Every printed command is run as printed; every test
//! asserts where the work is afterwards.

use std::path::{Path, PathBuf};

use crate::support::moves::{
    follow_sh, git_in, printed, project_with_a_submodule, subsrc, task_dir, tasks,
};
use crate::support::*;
use crate::worktree::Repo;

/// The pack names (`pack-<hash>`) of the project's repository.
fn packs(r: &Repo) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(r.root().join(".git/objects/pack"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".idx")
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

fn pack_mtime(r: &Repo, name: &str) -> std::time::SystemTime {
    std::fs::metadata(r.root().join(format!(".git/objects/pack/{name}.pack")))
        .unwrap()
        .modified()
        .unwrap()
}

/// The trace line lost.rs writes for each pack it reads.
const READS: &str = "lost: reading the objects of ";

/// Put a `git` first on qw's PATH that logs each call's arguments to `<aux>/git-calls`
/// before running the real git; returns the log's path.
fn log_git_calls(r: &mut Repo) -> PathBuf {
    let real = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("git"))
        .find(|g| g.is_file())
        .expect("git on PATH");
    let dir = r.aux.path().join("gitlog");
    std::fs::create_dir_all(&dir).unwrap();
    let log = r.aux.path().join("git-calls");
    let wrapper = dir.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), path_with(&r.root().join("bin")));
    r.f.set("PATH", &path);
    log
}

/// How many times qw ran `git show-index` (read a pack's index), per the log.
fn show_index_calls(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').any(|w| w == "show-index"))
        .count()
}

#[test]
fn worktree_nest4_freshened_old_pack_is_not_read() {
    // rev4 F13: every object of the repository in one pack; each task `git add`s content
    // the pack holds (shared.txt's), so git freshens the pack's mtime while the tasks run.
    let mut r = Repo::new(&tasks(2));
    r.f.set("QW_LOG", "debug");
    let calls = log_git_calls(&mut r);
    r.git(&["gc", "-q"]);
    let old = packs(&r);
    assert_eq!(old.len(), 1, "{old:?}");
    let before = pack_mtime(&r, &old[0]);
    for i in ["1", "2"] {
        r.action(
            i,
            &format!(
                "sleep 1.1\ncp shared.txt g{i}.txt\ngit add g{i}.txt\necho {i} > f{i}.txt\ngit add f{i}.txt\ngit commit -qm f{i}\n"
            ),
        );
    }
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "g1.txt", "g2.txt"]);
    // The shape holds: the old pack is still there, freshened by the tasks' git.
    assert_eq!(packs(&r), old);
    assert!(
        pack_mtime(&r, &old[0]) > before,
        "the pack was not freshened"
    );
    let text = diag(&out);
    assert!(!text.contains(READS), "an old pack was read: {text}");
    assert!(std::fs::read_to_string(&calls).unwrap().contains("merge"));
    assert_eq!(show_index_calls(&calls), 0, "an old pack was read");
}

#[test]
fn worktree_nest4_only_packs_written_since_the_start_are_read() {
    // An agent's `git repack` puts its left-behind commit (still in a reflog then) in a
    // new pack beside the old one (freshened too), then expires the reflogs: the new
    // pack is read, the commit kept; the old one is not.
    let mut r = Repo::new(&tasks(1));
    r.f.set("QW_LOG", "debug");
    let calls = log_git_calls(&mut r);
    r.git(&["gc", "-q"]);
    let old = packs(&r);
    r.action(
        "1",
        "cp shared.txt g1.txt\ngit add g1.txt\necho L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit reset -q --hard HEAD~1\ngit repack -q -d\ngit reflog expire --expire=now --all\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let now = packs(&r);
    assert!(now.contains(&old[0]), "{now:?}");
    let new: Vec<&String> = now.iter().filter(|p| !old.contains(p)).collect();
    assert_eq!(new.len(), 1, "{now:?}");
    let text = diag(&out);
    assert!(text.contains(&format!("{READS}{}", new[0])), "{text}");
    assert!(!text.contains(&format!("{READS}{}", old[0])), "{text}");
    let at = text
        .find("kept on branch `qw/demo/1@")
        .unwrap_or_else(|| panic!("LOSTWORK not kept: {text}"));
    let rest = &text[at + "kept on branch `".len()..];
    let kept = &rest[..rest.find('`').unwrap()];
    assert_eq!(
        r.git(&["log", "-1", "--format=%s", kept]).trim(),
        "LOSTWORK"
    );
    // The new pack read, by each of the task's two saves at most; not the old one.
    let n = show_index_calls(&calls);
    assert!((1..=2).contains(&n), "{n} reads of pack indexes");
    // And after a `git gc` (everything into new packs, a cruft one for the lost commit).
    let mut r = Repo::new(&tasks(1));
    r.f.set("QW_LOG", "debug");
    r.git(&["gc", "-q"]);
    let old = packs(&r);
    r.action(
        "1",
        "echo L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit reset -q --hard HEAD~1\ngit reflog expire --expire=now --all\ngit gc -q\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(text.contains(READS), "{text}");
    assert!(!text.contains(&format!("{READS}{}", old[0])), "{text}");
    assert!(text.contains("kept on branch `qw/demo/1@"), "{text}");
}

/// The agent adds a submodule and commits in it (SUBWORK), and leaves a file
/// uncommitted there.
fn submodule_agent(r: &Repo, s: &Path) {
    r.action(
        "1",
        &format!(
            "git -c protocol.file.allow=always submodule add -q {} vendor/x\ngit commit -qm 'add submodule'\necho work > vendor/x/w.txt\ngit -C vendor/x add w.txt\ngit -C vendor/x commit -qm SUBWORK\necho u > vendor/x/unc.txt\necho 1 > f1.txt\n",
            s.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
}

#[test]
fn worktree_nest4_submodule_commits_survive_a_plain_mv_and_prune() {
    // rev4 F12 as reported: the user moves the submodule out with a plain `mv`; its
    // repository is in the task worktree's git dir, which `--prune` must not delete.
    let r = Repo::new(&tasks(2));
    let s = subsrc(&r, "subsrc");
    submodule_agent(&r, &s);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(text.contains("a submodule, "), "{text}");
    assert!(
        text.contains("a plain `mv` would leave its repository behind"),
        "{text}"
    );
    let w = task_dir(&r, "1");
    let moved = r.aux.path().join("moved-x");
    std::fs::rename(w.join("vendor/x"), &moved).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(
        text.contains("its git dir holds the repository of submodule `vendor/x`"),
        "{text}"
    );
    assert!(
        text.contains("1 commit(s) in none of its remote branches or tags"),
        "{text}"
    );
    assert!(w.is_dir(), "the worktree was removed: {text}");
    // Following the printed command, with `<dest>` where the files were moved.
    follow_sh(&r, &printed(&text, "mkdir -p <dest>"), Some(&moved));
    assert_eq!(git_in(&r, &moved, &["log", "-1", "--format=%s"]), "SUBWORK");
    // The refusal named that commit.
    let sub = git_in(&r, &moved, &["rev-parse", "HEAD"]);
    assert!(text.contains(&format!("or tags: {}", &sub[..10])), "{text}");
    assert!(git_in(&r, &moved, &["status", "--porcelain"]).contains("unc.txt"));
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
    assert_eq!(git_in(&r, &moved, &["log", "-1", "--format=%s"]), "SUBWORK");
    // Into a new directory instead: the committed files come back with `checkout -f`.
    let r = Repo::new(&tasks(2));
    let s = subsrc(&r, "subsrc");
    submodule_agent(&r, &s);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let w = task_dir(&r, "1");
    std::fs::remove_dir_all(w.join("vendor/x")).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert!(w.is_dir(), "the worktree was removed: {text}");
    let fresh = r.aux.path().join("fresh-x");
    follow_sh(&r, &printed(&text, "mkdir -p <dest>"), Some(&fresh));
    git_in(&r, &fresh, &["checkout", "-q", "-f"]);
    assert_eq!(
        std::fs::read_to_string(fresh.join("w.txt")).unwrap(),
        "work\n"
    );
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
    r.assert_no_process();
}

#[test]
fn worktree_nest4_submodule_hint_followed_keeps_everything() {
    // The command the run printed for the submodule, followed as printed.
    let r = Repo::new(&tasks(2));
    let s = subsrc(&r, "subsrc");
    submodule_agent(&r, &s);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    let w = task_dir(&r, "1");
    let safe = r.aux.path().join("safe-x");
    follow_sh(&r, &printed(&text, "rm -f "), Some(&safe));
    assert_eq!(git_in(&r, &safe, &["log", "-1", "--format=%s"]), "SUBWORK");
    assert!(safe.join("unc.txt").is_file());
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
    assert_eq!(git_in(&r, &safe, &["log", "-1", "--format=%s"]), "SUBWORK");
    assert!(safe.join("unc.txt").is_file());
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

#[test]
fn worktree_nest4_project_submodule_with_the_agents_commit_moved_out() {
    // The project's own submodule, initialised by the agent, which commits in it
    // (detached HEAD): the worktree is kept; a plain `mv` of it then `--prune`: refused
    // (its repository is in the worktree's git dir), and the gitlink's deletion is never
    // committed as the task's work.
    let r = Repo::new(&tasks(2));
    project_with_a_submodule(&r);
    r.action(
        "1",
        "git -c protocol.file.allow=always submodule update -q --init\necho mine > vendor/lib/mine.txt\ngit -C vendor/lib add mine.txt\ngit -C vendor/lib commit -qm SUBWORK2\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(text.contains("demo-1/vendor/lib` (a submodule"), "{text}");
    let w = task_dir(&r, "1");
    let moved = r.aux.path().join("moved-lib");
    std::fs::rename(w.join("vendor/lib"), &moved).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert!(w.is_dir(), "{text}");
    follow_sh(&r, &printed(&text, "mkdir -p <dest>"), Some(&moved));
    assert_eq!(
        git_in(&r, &moved, &["log", "-1", "--format=%s"]),
        "SUBWORK2"
    );
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(!w.exists(), "{text}");
    // Nothing to merge that deletes the project's submodule.
    assert!(!text.contains("merge it"), "{text}");
    assert!(
        r.git(&["ls-tree", "main", "vendor/lib"])
            .starts_with("160000")
    );
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

#[test]
fn worktree_nest4_repository_in_a_tracked_dir_moved_out_deletes_nothing() {
    // rev4 F2 as reported: `git init src` (a tracked directory); the user `mv`s it out;
    // `--prune` must not commit the deletion of src/keep.txt nor advise merging it.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "git init -q src\necho n > src/new.txt\ngit -C src add -A\ngit -C src commit -qm INNERWORK\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(text.contains("in a directory the project tracks"), "{text}");
    assert!(printed(&text, "cp -a ").contains("/src/.git"), "{text}");
    let w = task_dir(&r, "1");
    let inner = r.aux.path().join("inner-src");
    std::fs::rename(w.join("src"), &inner).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(!w.exists(), "{text}");
    assert!(!text.contains("merge it"), "{text}");
    assert!(!text.contains("committed uncommitted work"), "{text}");
    assert!(r.branches().is_empty(), "{:?}: {text}", r.branches());
    assert!(r.git_ok(&["cat-file", "-e", "main:src/keep.txt"]));
    assert_eq!(
        git_in(&r, &inner, &["log", "-1", "--format=%s"]),
        "INNERWORK"
    );
    // The printed command instead: copied out, its `.git` taken away; the project's
    // files stay, and nothing qw keeps deletes any of them.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "git init -q src\necho n > src/new.txt\ngit -C src add -A\ngit -C src commit -qm INNERWORK\necho u > src/unc.txt\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let w = task_dir(&r, "1");
    let copy = r.aux.path().join("copy-src");
    follow_sh(&r, &printed(&diag(&out), "cp -a "), Some(&copy));
    assert_eq!(
        git_in(&r, &copy, &["log", "-1", "--format=%s"]),
        "INNERWORK"
    );
    assert!(copy.join("unc.txt").is_file());
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!w.exists(), "{}", diag(&out));
    assert!(r.git_ok(&["cat-file", "-e", "main:src/keep.txt"]));
    for b in r.branches() {
        let deleted = r.git(&[
            "diff",
            "--name-only",
            "--diff-filter=D",
            &format!("main...{b}"),
        ]);
        assert!(deleted.trim().is_empty(), "{b} deletes {deleted}");
    }
    r.assert_no_process();
}

#[test]
fn worktree_nest4_project_submodule_and_ignored_repositories_do_not_keep_the_worktree() {
    // rev3 M2: the project's submodule initialised by the agent (`submodule update
    // --init`), a repository under an ignored build dir (FetchContent's `_deps/*-src`,
    // empty, and one cloned): not the agent's work, the worktrees are removed, each said
    // in a line. An ignored one holding a commit of the agent's, or the project's
    // submodule with a change of the agent's in it, still keeps its worktree.
    let r = Repo::new(&tasks(5));
    let s = project_with_a_submodule(&r);
    r.action(
        "1",
        "git -c protocol.file.allow=always submodule update -q --init\necho 1 > f1.txt\n",
    );
    r.action(
        "2",
        &format!(
            "mkdir -p build/_deps\necho build/ >> .gitignore\ngit init -q build/_deps/foo-src\ngit clone -q {} build/_deps/bar-src\necho 2 > f2.txt\n",
            s.display()
        ),
    );
    r.action(
        "3",
        "mkdir -p build\necho build/ >> .gitignore\ngit init -q build/mine\necho m > build/mine/m.txt\ngit -C build/mine add m.txt\ngit -C build/mine commit -qm MINE\necho 3 > f3.txt\n",
    );
    r.action(
        "4",
        "git -c protocol.file.allow=always submodule update -q --init\necho edit >> vendor/lib/lib.txt\necho 4 > f4.txt\n",
    );
    r.action("5", "echo 5 > f5.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(
        text.contains("`vendor/lib` is the project's own submodule at its recorded commit (not the agent's work), so the worktree"),
        "{text}"
    );
    assert!(
        text.contains("`build/_deps/bar-src` is a repository under an ignored directory with no commit of the agent's"),
        "{text}"
    );
    assert!(
        text.contains("`build/_deps/foo-src` is a repository under an ignored"),
        "{text}"
    );
    assert!(!task_dir(&r, "1").exists(), "{text}");
    assert!(!task_dir(&r, "2").exists(), "{text}");
    assert!(!task_dir(&r, "5").exists(), "{text}");
    // Kept: the agent's commit under build/, the agent's edit in the submodule.
    assert!(
        task_dir(&r, "3").join("build/mine/m.txt").is_file(),
        "{text}"
    );
    assert!(
        task_dir(&r, "4").join("vendor/lib/lib.txt").is_file(),
        "{text}"
    );
    assert!(
        text.contains("demo-3/build/mine` (a repository of its own, 1 commit(s)"),
        "{text}"
    );
    assert!(text.contains("demo-4/vendor/lib` (a submodule"), "{text}");
    for f in ["f1.txt", "f2.txt", "f3.txt", "f4.txt", "f5.txt"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    // `--prune` keeps the two again, and removes nothing else.
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(task_dir(&r, "3").join("build/mine/m.txt").is_file());
    assert!(task_dir(&r, "4").join("vendor/lib/lib.txt").is_file());
    r.assert_no_process();
}

#[test]
fn worktree_nest4_directory_made_again_where_the_worktree_was_is_never_deleted() {
    // rev3 M4 as reported: the worktree `mv`ed beside itself, a new directory made at its
    // old place with a file of the agent's: the moved copy is found and saved, the new
    // directory left as it is, both named.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "if [ ! -e \"$ACTIONS/../done-1\" ]; then touch \"$ACTIONS/../done-1\"\necho c > c1.txt\ngit add c1.txt\ngit commit -qm c1\necho 1 > f1.txt\nP=$PWD\nmv \"$P\" \"$P.bak\"\nmkdir \"$P\"\necho new > \"$P/x1.txt\"\nelse echo 1 > f1.txt\nfi\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let text = diag(&out);
    let w = task_dir(&r, "1");
    assert!(
        text.contains(&format!("was moved to `{}.bak`", w.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "a directory made again at `{}` holds files qw did not save",
            w.display()
        )),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(w.join("x1.txt")).unwrap(), "new\n");
    for f in ["c1.txt", "f1.txt"] {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("qw/demo/1:{f}")]),
            "{f}"
        );
    }
    // The next run goes on from the branch, beside the directory left there.
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in ["c1.txt", "f1.txt", "f2.txt"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    assert_eq!(std::fs::read_to_string(w.join("x1.txt")).unwrap(), "new\n");
    let out = r.run(&["worktrees", "--prune"]);
    assert!(
        diag(&out).contains(&format!("left `{}` alone", w.display())),
        "{}",
        diag(&out)
    );
    assert!(w.join("x1.txt").is_file());
    // Deleted and made again, no copy anywhere: the file written there stays too.
    let r = Repo::new(&tasks(1));
    r.action(
        "1",
        "if [ ! -e \"$ACTIONS/../done-1\" ]; then touch \"$ACTIONS/../done-1\"\nd=$(pwd -P)\ncd /\nrm -rf \"$d\"\nmkdir -p \"$d\"\necho mine > \"$d/y1.txt\"\nfi\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let w = task_dir(&r, "1");
    assert_eq!(
        std::fs::read_to_string(w.join("y1.txt")).unwrap(),
        "mine\n",
        "{}",
        diag(&out)
    );
    assert!(
        diag(&out).contains("holds files qw did not save"),
        "{}",
        diag(&out)
    );
    r.assert_no_process();
}

#[test]
fn worktree_nest4_kept_worktree_moved_by_hand_then_pruned() {
    // After the run: a worktree kept for a nested repository is `mv`ed by the user and a
    // directory of theirs made at its old place; `--prune` finds the moved one (kept
    // again for its repository, named where it is now) and never touches the new one.
    let r = Repo::new(&tasks(1));
    r.action(
        "1",
        "git init -q inner\necho i > inner/i.txt\ngit -C inner add i.txt\ngit -C inner commit -qm INNER\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let w = task_dir(&r, "1");
    let moved = w.with_file_name("demo-1.mine");
    std::fs::rename(&w, &moved).unwrap();
    std::fs::create_dir(&w).unwrap();
    std::fs::write(w.join("notes.txt"), "mine\n").unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "mine\n"
    );
    assert!(
        text.contains(&format!(
            "`{}/inner` (a repository of its own",
            moved.display()
        )),
        "{text}"
    );
    assert_eq!(
        git_in(&r, &moved.join("inner"), &["log", "-1", "--format=%s"]),
        "INNER"
    );
    // Moved out as told: the next prune removes the worktree, the user's directory stays.
    let safe = r.aux.path().join("inner");
    std::fs::rename(moved.join("inner"), &safe).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!moved.exists(), "{}", diag(&out));
    assert_eq!(
        std::fs::read_to_string(w.join("notes.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(git_in(&r, &safe, &["log", "-1", "--format=%s"]), "INNER");
}
