//! Set-up shared by the worktree tests (`worktree_target` first, and the tasks, the
//! run-once guard and `sha` of every `worktree_*` file): the tasks, a guard that runs an
//! agent's move once, reading the command qw printed and following it literally, and
//! the checks that nothing was lost; the `workflow-continue` of those tests, a task's
//! worktree, git in another repository, a project with a submodule.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{code, diag, stderr, stdout};
use crate::worktree::Repo;

/// `n` independent tasks, task `i` writing `f<i>.txt` (see [`work`]).
pub fn tasks(n: usize) -> String {
    (1..=n).map(|i| format!("- [ ] {i}. Task {i}\n")).collect()
}

/// The plain work of task `i`: `f<i>.txt`, committed in its worktree.
pub fn work(i: &str) -> String {
    format!("echo {i} > f{i}.txt\ngit add f{i}.txt\ngit commit -qm f{i} || true\n")
}

/// `script` runs once (a flag file in the test's temp dir), so a rerun of the task by
/// `workflow-continue` does its plain work only.
pub fn once(r: &Repo, name: &str, script: &str) -> String {
    let flag = r.aux.path().join(format!("done-{name}"));
    format!(
        "if [ ! -e {f} ]; then\ntouch {f}\n{script}\nfi\n",
        f = flag.display()
    )
}

/// The commit a revision names.
pub fn sha(r: &Repo, rev: &str) -> String {
    r.git(&["rev-parse", rev]).trim().to_owned()
}

/// The first command in backquotes in `text` that starts with `prefix` (`git restore`,
/// `git reset`, …): what qw told the user to run.
pub fn printed(text: &str, prefix: &str) -> String {
    text.split('`')
        .skip(1)
        .step_by(2)
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` command in: {text}"))
        .to_owned()
}

/// Run a printed git command as it is, in the repository's top (where the user is).
pub fn follow(r: &Repo, command: &str) {
    let words = shell_words::split(command).unwrap();
    assert_eq!(words[0], "git", "{command}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let out = r.git_cmd(r.root(), &args);
    assert!(out.status.success(), "`{command}`: {}", diag(&out));
}

/// The error line of a refused qw command (its stderr's `error:` line): exactly one,
/// and no `hint:` lines (what to do is in it).
pub fn refusal_line(out: &std::process::Output) -> String {
    assert_eq!(code(out), 2, "{}", diag(out));
    let err = stderr(out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("qw: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.contains("hint:"), "{err}");
    lines[0].to_owned()
}

/// Where the record of a refused move of spec `demo` is.
pub fn record(r: &Repo) -> PathBuf {
    r.root().join(".git/qw-refused-moves/demo")
}

/// Every file is on `main` (and in the working tree); no merge left half done; no
/// process of the test alive. Unlike `assert_all_merged`, the user's own uncommitted
/// changes may remain.
pub fn assert_merged_keeping_the_users_changes(r: &Repo, files: &[&str]) {
    for f in files {
        assert!(
            r.git_ok(&["cat-file", "-e", &format!("main:{f}")]),
            "`{f}` is not on main: {}",
            r.git(&["log", "--stat", "--format=%s", "main"])
        );
        assert!(
            r.root().join(f).is_file(),
            "`{f}` is not in the working tree"
        );
    }
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]));
    assert_eq!(r.git(&["diff", "--name-only", "--diff-filter=U"]), "");
    r.assert_no_process();
}

/// Every command in backquotes in `text` that starts with `git `, in order: a fix may
/// be two (keep the commits left out, then put the branch back).
pub fn all_printed(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| c.starts_with("git "))
        .map(str::to_owned)
        .collect()
}

/// Run a printed command through `sh -c` as it is, in the repository's top (pasted into
/// a shell by the user).
pub fn follow_in_sh(r: &Repo, command: &str) {
    // A user reads the line before pasting it. Without this second, a cherry-pick the
    // command makes can be the very commit it copies (same parent, tree and whole-second
    // times give the same id), which qw rightly takes as the task's own earlier commit,
    // not as the user's fix the test is about.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(command).current_dir(r.root());
    for (k, v) in r.git_env_pairs() {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "`{command}`: {}", diag(&out));
}

/// `sha` is on a branch (or tag), and not among what `git fsck --lost-found` finds
/// dangling (reflogs left out): the user's work is kept where they can see it.
pub fn assert_kept(r: &Repo, sha: &str) {
    let on = r.git(&["for-each-ref", "--contains", sha, "--format=%(refname)"]);
    assert!(!on.trim().is_empty(), "{sha} is on no branch");
    let out = r.git_cmd(
        r.root(),
        &["fsck", "--no-reflogs", "--lost-found", "--no-progress"],
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(sha), "{sha} is dangling: {text}");
}

/// `f1.txt` … `f<n>.txt`: what [`tasks`]' tasks write.
pub fn files(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("f{i}.txt")).collect()
}

pub fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The files of commit `rev`, qw's own `.claude/` left out.
pub fn files_of(r: &Repo, rev: &str) -> Vec<String> {
    r.git(&["ls-tree", "-r", "--name-only", rev])
        .lines()
        .filter(|l| !l.starts_with(".claude/"))
        .map(str::to_owned)
        .collect()
}

/// Whether commit `rev` holds `file`.
pub fn has(r: &Repo, rev: &str, file: &str) -> bool {
    files_of(r, rev).iter().any(|f| f == file)
}

/// Shell: wait until [`open_gate`] of `name` ran (another task's script, or the test),
/// at most about 90 s, so a test that fails cannot leave an agent waiting forever.
pub fn gate(r: &Repo, name: &str) -> String {
    let flag = r.aux.path().join(format!("gate-{name}"));
    format!(
        "n=0; while [ ! -e {} ] && [ $n -lt 1800 ]; do sleep 0.05; n=$((n+1)); done\n",
        flag.display()
    )
}

/// Shell: let [`gate`] of `name` go on.
pub fn open_gate(r: &Repo, name: &str) -> String {
    format!(
        "touch {}\n",
        r.aux.path().join(format!("gate-{name}")).display()
    )
}

/// `main` tracks a bare `origin` that gained a commit (`upstream.txt`) from another
/// clone. Its sha.
pub fn upstream_with_a_new_commit(r: &Repo) -> String {
    let up = r.aux.path().join("up.git");
    let other = r.aux.path().join("other");
    let run = |dir: &std::path::Path, args: &[&str]| {
        let out = r.git_cmd(dir, args);
        assert!(out.status.success(), "git {args:?}: {}", diag(&out));
        stdout(&out)
    };
    run(
        r.aux.path(),
        &["init", "-q", "--bare", up.to_str().unwrap()],
    );
    r.git(&["remote", "add", "origin", up.to_str().unwrap()]);
    r.git(&["push", "-q", "-u", "origin", "main"]);
    run(
        r.aux.path(),
        &[
            "clone",
            "-q",
            "-b",
            "main",
            up.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
    );
    std::fs::write(other.join("upstream.txt"), "up\n").unwrap();
    run(&other, &["add", "upstream.txt"]);
    run(&other, &["commit", "-q", "-m", "upstream"]);
    run(&other, &["push", "-q", "origin", "HEAD:main"]);
    run(&other, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// The arguments of workflow `verb` (`workflow-auto`, which gets a description, or
/// `workflow-continue`) of `spec` with the test agent `cmd`: one attempt, a quick retry,
/// 60 s a run, then `extra`.
pub fn spec_args<'a>(
    verb: &'a str,
    spec: &'a str,
    cmd: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![verb, spec];
    if verb == "workflow-auto" {
        args.push("A demo feature");
    }
    args.extend([
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--agent-cmd",
        cmd,
    ]);
    args.extend_from_slice(extra);
    args
}

/// `qw workflow-continue demo` with the test agent, one attempt, `extra` added (see
/// [`spec_args`]; `Repo::auto` is its `workflow-auto`).
pub fn cont(r: &Repo, extra: &[&str]) -> Output {
    cont_spec(r, "demo", extra)
}

/// [`cont`] of `spec`.
pub fn cont_spec(r: &Repo, spec: &str, extra: &[&str]) -> Output {
    let cmd = r.agent_cmd();
    r.run(&spec_args("workflow-continue", spec, &cmd, extra))
}

/// `workflow-auto` of `spec`, `parallel` tasks at once (see [`spec_args`]), to start.
pub fn auto_spec(r: &Repo, spec: &str, parallel: &str) -> Command {
    let cmd = r.agent_cmd();
    r.f.cmd(&spec_args(
        "workflow-auto",
        spec,
        &cmd,
        &["--parallel", parallel],
    ))
}

/// A second spec `name` with `n` tasks, committed.
pub fn add_spec(r: &Repo, name: &str, n: usize) {
    r.f.p
        .write(&format!(".claude/specs/{name}/requirements.md"), "# R\n");
    r.f.p
        .write(&format!(".claude/specs/{name}/design.md"), "# D\n");
    r.f.p
        .write(&format!(".claude/specs/{name}/tasks.md"), &tasks(n));
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", &format!("spec {name}")]);
}

/// Task `i`'s plain [`work`], then `script` [`once`] (`name` its flag).
pub fn work_then_once(r: &Repo, i: &str, name: &str, script: &str) -> String {
    format!("{}{}", work(i), once(r, name, script))
}

/// `--parallel <parallel> --isolate worktree`, for [`cont`] and `Repo::auto`.
pub fn in_worktrees(parallel: &str) -> [&str; 4] {
    ["--parallel", parallel, "--isolate", "worktree"]
}

/// Where task `id`'s worktree is.
pub fn task_dir(r: &Repo, id: &str) -> PathBuf {
    r.container()
        .expect("qw's worktree folder")
        .join(format!("demo-{id}"))
}

/// git in `dir` (any repository); stdout, trimmed; must succeed.
pub fn git_in(r: &Repo, dir: &Path, args: &[&str]) -> String {
    let out = r.git_cmd(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        diag(&out)
    );
    stdout(&out).trim().to_owned()
}

/// Run a command qw printed through `sh -c`, as it is, in the project's top, with
/// `<elsewhere>`/`<dest>` (qw's placeholders) replaced by `to`; it must succeed.
pub fn follow_sh(r: &Repo, command: &str, to: Option<&Path>) {
    let line = match to {
        Some(to) => {
            let to = to.display().to_string();
            command.replace("<elsewhere>", &to).replace("<dest>", &to)
        }
        None => command.to_owned(),
    };
    let mut c = Command::new("sh");
    c.arg("-c").arg(&line).current_dir(r.root());
    for (k, v) in r.git_env_pairs() {
        c.env(k, v);
    }
    c.env("GIT_EDITOR", "true");
    let out = c.output().unwrap();
    assert!(out.status.success(), "`{line}`: {}", diag(&out));
}

/// A source repository for submodules, outside the project (`name` may hold a space):
/// one commit, `lib.txt`.
pub fn subsrc(r: &Repo, name: &str) -> PathBuf {
    let s = r.aux.path().join(name);
    std::fs::create_dir_all(&s).unwrap();
    git_in(r, &s, &["init", "-q", "-b", "main"]);
    std::fs::write(s.join("lib.txt"), "lib\n").unwrap();
    git_in(r, &s, &["add", "lib.txt"]);
    git_in(r, &s, &["commit", "-qm", "lib"]);
    s
}

/// The project with its own submodule `vendor/lib` of a fresh [`subsrc`] (registered
/// and initialised in the main worktree, so `.git/modules/vendor/lib` is the project's
/// copy of it), committed. The submodule's source.
pub fn project_with_a_submodule(r: &Repo) -> PathBuf {
    let s = subsrc(r, "subsrc");
    let out = Command::new("git")
        .args(["-c", "protocol.file.allow=always", "submodule", "add", "-q"])
        .arg(&s)
        .arg("vendor/lib")
        .current_dir(r.root())
        .envs(r.git_env_pairs().iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", diag(&out));
    r.git(&["commit", "-qm", "add submodule"]);
    s
}
