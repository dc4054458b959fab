//! Issue 14: what an agent in a task worktree sees of the user's Claude Code files (rev6b
//! G19: read-only copies of the ignored ones, never saved, merged or copied back), and
//! documents or settings read through links (a link out of the project is refused,
//! exit 2, before any of it reaches a prompt; the legacy `.claude/worktrees` is one of
//! qw's own folders).

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::*;
use crate::worktree::{Layout, Repo, Root};

/// A fake `claude`: in the implementation phase it records, for each file named in
/// $SEEN_FILES, whether it is there, its mode, whether it is a link and whether its bytes
/// are the main checkout's, into $SEEN/<task>; then it runs $ACTIONS/<task> (sh -e);
/// it answers like Claude Code.
const RECORDING_CLAUDE: &str = r#"#!/bin/sh
if [ "$QW_PHASE" = implementation ]; then
  printf '{"type":"system","subtype":"init","session_id":"00000000-0000-4000-8000-000000000001"}\n'
  out="$SEEN/$QW_TASK_ID"
  { echo "pwd $(pwd -P)"
    for f in $SEEN_FILES; do
      if [ -e "$f" ]; then
        echo "file $f mode $(stat -c %a "$f")"
        [ -L "$f" ] && echo "link $f"
        cmp -s "$f" "$MAIN/$f" && echo "same $f"
        echo "text $f: $(cat "$f")"
        ls -l "$f"
      else
        echo "missing $f"
      fi
    done
  } > "$out" 2>&1
  if [ -f "$ACTIONS/$QW_TASK_ID" ]; then sh -e "$ACTIONS/$QW_TASK_ID" >&2 || exit 1; fi
fi
printf '{"type":"result","subtype":"success","is_error":false,"duration_ms":12,"num_turns":2,"result":"done","session_id":"00000000-0000-4000-8000-000000000001","total_cost_usd":0,"usage":{"input_tokens":1,"output_tokens":1},"permission_denials":[]}\n'
"#;

/// `r` with [`RECORDING_CLAUDE`] first on PATH, recording `files`.
fn with_recording_claude(r: &mut Repo, files: &[&str]) {
    let bin = r.aux.path().join("claude-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let claude = bin.join("claude");
    std::fs::write(&claude, RECORDING_CLAUDE).unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(r.aux.path().join("seen")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let seen = r.aux.path().join("seen").display().to_string();
    r.f.set("PATH", &path);
    r.f.set("SEEN", &seen);
    r.f.set("SEEN_FILES", &files.join(" "));
}

/// `workflow-auto demo` with the claude agent (the fake on PATH), worktrees.
fn run_claude(r: &Repo, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "claude",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--isolate",
        "worktree",
    ];
    args.extend_from_slice(extra);
    r.run(&args)
}

fn seen(r: &Repo, task: &str) -> String {
    std::fs::read_to_string(r.aux.path().join("seen").join(task))
        .unwrap_or_else(|e| panic!("task {task} recorded nothing: {e}"))
}

fn on_main(r: &Repo) -> Vec<String> {
    r.git(&["ls-tree", "-r", "--name-only", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

const SETTINGS_EXTRA: &str =
    "\"permissions\":{\"allow\":[\"Bash(npm test)\"],\"deny\":[\"Read(./secrets/**)\"]}";

/// The harness's settings with a permissions section added (its text, kept as written).
fn add_permissions(r: &Repo) -> String {
    let text = r.read(".claude/settings.local.json");
    let text = text.trim_end().strip_suffix('}').unwrap().to_owned() + "," + SETTINGS_EXTRA + "}\n";
    std::fs::write(r.root().join(".claude/settings.local.json"), &text).unwrap();
    text
}

#[test]
fn claudeset_ignored_claude_files_are_read_only_copies_never_saved_merged_or_copied_back() {
    // `.claude/` ignored as a whole; CLAUDE.local.md ignored only by `.git/info/exclude`
    // (a rule outside the project's `.gitignore`: such files keep a worktree, copies must
    // not). Task 1's agent edits one copy and deletes another; task 2's commits with
    // `git add -A`.
    let mut r = Repo::build(&crate::support::moves::tasks(2), Layout::Ignored, Root::Aux);
    let files = [
        ".claude/settings.local.json",
        ".claude/agents/reviewer.md",
        ".claude/commands/ship.md",
        "CLAUDE.local.md",
    ];
    let mut recorded = files.to_vec();
    recorded.push(".claude/commands/out.md");
    with_recording_claude(&mut r, &recorded);
    let settings = add_permissions(&r);
    r.f.p.write(
        ".claude/agents/reviewer.md",
        "---\nname: reviewer\n---\nReview.\n",
    );
    r.f.p.write(".claude/commands/ship.md", "Ship it.\n");
    r.f.p.write("CLAUDE.local.md", "my local notes\n");
    // A command that is a link out of the project: not copied.
    let secret = r.aux.path().join("secret.md");
    std::fs::write(&secret, "SECRET-COMMAND\n").unwrap();
    symlink(&secret, r.root().join(".claude/commands/out.md")).unwrap();
    let exclude = r.root().join(".git/info/exclude");
    let mut ex = std::fs::read_to_string(&exclude).unwrap_or_default();
    ex.push_str("/CLAUDE.local.md\n");
    std::fs::write(&exclude, ex).unwrap();
    r.action(
        "1",
        "chmod u+w .claude/settings.local.json\necho '{\"permissions\":{\"allow\":[\"Bash(*)\"]}}' > .claude/settings.local.json\nrm -f CLAUDE.local.md .claude/commands/ship.md\necho 1 > f1.txt\n",
    );
    r.action(
        "2",
        "echo 2 > f2.txt\ngit add -A\ngit add -f CLAUDE.local.md\ngit commit -qm 'task 2'\n",
    );
    let out = run_claude(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for task in ["1", "2"] {
        let text = seen(&r, task);
        assert!(
            !text.contains(&format!(
                "pwd {}",
                r.root().canonicalize().unwrap().display()
            )),
            "ran in a worktree: {text}"
        );
        for f in files {
            assert!(text.contains(&format!("file {f} mode 444")), "{f}: {text}");
            assert!(text.contains(&format!("same {f}")), "{f}: {text}");
            assert!(!text.contains(&format!("link {f}")), "{f}: {text}");
        }
        assert!(text.contains("Bash(npm test)"), "{text}");
        assert!(text.contains("missing .claude/commands/out.md"), "{text}");
    }
    assert!(
        all.contains("out.md` is a symbolic link to") && all.contains("outside the project"),
        "{all}"
    );
    // The user's files are as they were.
    assert_eq!(r.read(".claude/settings.local.json"), settings);
    assert_eq!(r.read("CLAUDE.local.md"), "my local notes\n");
    assert_eq!(r.read(".claude/commands/ship.md"), "Ship it.\n");
    // Nothing of them reached `main`, even what task 2's agent committed.
    let merged = on_main(&r);
    for f in files {
        assert!(!merged.iter().any(|m| m == f), "{f} merged: {merged:?}");
    }
    for f in ["f1.txt", "f2.txt"] {
        assert!(merged.iter().any(|m| m == f), "{f} not merged: {merged:?}");
    }
    // Task 1's change is discarded with its worktree, in one line.
    assert!(
        all.contains("changed or deleted its read-only copies of your Claude Code files"),
        "{all}"
    );
    // No worktree kept for them (CLAUDE.local.md is ignored only by info/exclude).
    assert!(
        r.worktree_dirs().is_empty(),
        "{:?}: {all}",
        r.worktree_dirs()
    );
    assert!(!all.contains("kept the worktree"), "{all}");
    r.assert_no_process();
}

#[test]
fn claudeset_a_tracked_file_is_never_replaced_and_one_git_would_stage_is_not_copied() {
    // `.claude/` committed (settings.local.json with it). The user's uncommitted edit of
    // the tracked settings stays theirs: the worktree has the committed version, writable
    // as checked out. An untracked, not ignored subagent is not copied, and is named.
    let mut r = Repo::build(&crate::support::moves::tasks(1), Layout::Tracked, Root::Aux);
    let files = [".claude/settings.local.json", ".claude/agents/new.md"];
    with_recording_claude(&mut r, &files);
    let committed = r.read(".claude/settings.local.json");
    add_permissions(&r);
    r.f.p.write(".claude/agents/new.md", "new\n");
    r.action("1", "echo 1 > f1.txt\n");
    let out = run_claude(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = seen(&r, "1");
    assert!(
        text.contains(&format!(
            "text .claude/settings.local.json: {}",
            committed.trim_end()
        )),
        "the committed version: {text}"
    );
    assert!(!text.contains("Bash(npm test)"), "{text}");
    assert!(
        !text.contains("file .claude/settings.local.json mode 444"),
        "{text}"
    );
    assert!(text.contains("missing .claude/agents/new.md"), "{text}");
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("did not copy `.claude/agents/new.md`")
            && all.contains("git neither tracks nor ignores"),
        "{all}"
    );
    assert!(!on_main(&r).iter().any(|m| m == ".claude/agents/new.md"));
    r.assert_no_process();
}

/// A project with the fake claude (Flow), its spec documents written, no git.
fn documents_project() -> Flow {
    let f = Flow::new("- [ ] 1. Task\n");
    f.p.write(".claude/specs/demo/requirements.md", "# Requirements\n");
    f.p.write(".claude/specs/demo/design.md", "# Design\n");
    f.p.write(".claude/specs/demo/tasks.md", "- [ ] 1. Task\n");
    f
}

/// `workflow-auto demo` refused with exit 2, one line naming `link` and `to`, before any
/// agent ran; `secret` is in no file qw wrote.
fn assert_link_refused(f: &Flow, link: &str, to: &str, secret: Option<&str>) {
    let out = f.auto(&["--agent", "claude", "--isolate", "none"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains(link) && l.contains(to))
        .unwrap_or_else(|| panic!("no line names `{link}` and `{to}`: {err}"));
    assert!(line.contains("outside the project"), "{line}");
    assert_eq!(f.runs_of("1"), 0, "an agent ran");
    if let Some(secret) = secret {
        assert!(
            !grep_tree(&f.path().join(".claude"), secret),
            "the secret leaked"
        );
    }
}

/// Does any regular file below `dir` (not through links) hold `needle`?
fn grep_tree(dir: &Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(m) = e.path().symlink_metadata() else {
            return false;
        };
        if m.is_dir() {
            grep_tree(&e.path(), needle)
        } else if m.is_file() {
            std::fs::read(e.path()).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
        } else {
            false
        }
    })
}

#[test]
fn claudeset_a_requirements_link_out_of_the_project_is_refused_before_any_prompt() {
    let f = documents_project();
    let outside = tempfile::tempdir().unwrap();
    let creds = outside.path().join("credentials");
    std::fs::write(&creds, "aws_secret_access_key = SECRET-KEY-123\n").unwrap();
    let req = f.path().join(".claude/specs/demo/requirements.md");
    std::fs::remove_file(&req).unwrap();
    symlink(&creds, &req).unwrap();
    assert_link_refused(&f, "requirements.md", "credentials", Some("SECRET-KEY-123"));
}

#[test]
fn claudeset_a_steering_link_to_proc_environ_or_a_steering_folder_out_is_refused() {
    let f = documents_project();
    let steering = f.path().join(".claude/steering");
    std::fs::create_dir_all(&steering).unwrap();
    symlink("/proc/self/environ", steering.join("tech.md")).unwrap();
    assert_link_refused(&f, "tech.md", "environ", None);
    // The whole steering folder a link out of the project.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("product.md"), "# elsewhere\n").unwrap();
    std::fs::remove_dir_all(&steering).unwrap();
    symlink(outside.path(), &steering).unwrap();
    assert_link_refused(&f, "product.md", "through the symbolic link", None);
}

#[test]
fn claudeset_a_settings_link_out_of_the_project_is_refused() {
    let f = documents_project();
    let outside = tempfile::tempdir().unwrap();
    let other = outside.path().join("other-settings.json");
    std::fs::write(&other, "{\"env\": {\"TOKEN\": \"SECRET-TOKEN\"}}\n").unwrap();
    let settings = f.path().join(".claude/settings.local.json");
    std::fs::remove_file(&settings).unwrap();
    symlink(&other, &settings).unwrap();
    assert_link_refused(
        &f,
        "settings.local.json",
        "other-settings.json",
        Some("SECRET-TOKEN"),
    );
    // `dev-mode on` neither: the file out there is not rewritten.
    let out = f.run(&["dev-mode", "on"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "{\"env\": {\"TOKEN\": \"SECRET-TOKEN\"}}\n"
    );
}

#[test]
fn claudeset_links_within_the_project_still_work() {
    let f = documents_project();
    let docs = f.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("design.md"), "# Design kept in docs/\n").unwrap();
    let design = f.path().join(".claude/specs/demo/design.md");
    std::fs::remove_file(&design).unwrap();
    symlink("../../../docs/design.md", &design).unwrap();
    let steering = f.path().join(".claude/steering");
    std::fs::create_dir_all(&steering).unwrap();
    std::fs::write(docs.join("tech.md"), "# Tech\n").unwrap();
    symlink(docs.join("tech.md"), steering.join("tech.md")).unwrap();
    let out = f.auto(&["--agent", "claude", "--isolate", "none"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1);
}

#[test]
fn claudeset_a_legacy_worktrees_link_is_refused_and_nothing_is_deleted_through_it() {
    let p = TestProject::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("demo-1")).unwrap();
    symlink(outside.path(), p.claude().join("worktrees")).unwrap();
    for args in [&["worktrees", "--prune"][..], &["status"][..]] {
        let out = p.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        assert!(stderr(&out).contains(".claude/worktrees"), "{}", diag(&out));
    }
    assert!(
        outside.path().join("demo-1").is_dir(),
        "deleted through the link"
    );
}
