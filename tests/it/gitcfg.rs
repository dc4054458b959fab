//! Review rev7 R6, R9: git config that makes git run a program, set by an agent in a
//! file the planted watch does not put back (the global `~/.gitconfig`, the XDG config,
//! a task worktree's `config.worktree`, a file an `include.path` names), never runs in
//! qw's own git (a filter, a merge driver, a gpg program), while the user's own filter
//! still does; the user's ordinary config writes during a run (identity, remote,
//! upstream, `core.autocrlf`) are no planting, and a code-running key written with them
//! is put back alone. Each planted program would log a line and leave a `setsid`
//! process behind: the tests assert neither happened.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::auto::auto_args;
use crate::support::moves::{gate, has, open_gate, tasks};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Layout, Repo, Root, bounded};

/// A program that appends `<name> ran in <dir> <args>` to `log`, leaves a `setsid`
/// sleeper behind (a planted one: `evil`), and passes its input through (a working
/// filter).
fn program(dir: &Path, name: &str, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"{name} ran in $(pwd) $*\" >> {}\n{}cat\n",
            log.display(),
            if name == "evil" {
                "setsid sleep 60 </dev/null >/dev/null 2>&1 &\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `workflow-auto` as [`Repo::auto`] runs it, with `GIT_CONFIG_GLOBAL` removed (git
/// reads `$HOME/.gitconfig` and `$XDG_CONFIG_HOME/git/config`, the test's).
fn auto_with_home(r: &Repo, extra: &[&str]) -> Output {
    let cmd = r.agent_cmd();
    let mut args = auto_args(
        "workflow-auto",
        &["demo", "A demo feature"],
        &cmd,
        &["--task-timeout", "60"],
    );
    args.extend_from_slice(extra);
    let mut c = r.f.cmd(&args);
    c.env_remove("GIT_CONFIG_GLOBAL");
    bounded(c, HARNESS_TIMEOUT)
}

/// The planted program's log is empty, no process is left, every task's file is on
/// `main` as written (not through a filter).
fn assert_never_ran(r: &Repo, log: &Path, text: &str, files: &[&str]) {
    assert!(!log.exists(), "{}\n{text}", read(log));
    r.assert_no_process();
    for f in files {
        assert!(has(r, "main", f), "{f} is not on main: {text}");
    }
    r.assert_all_merged(files);
    for f in files {
        let n = f.trim_start_matches('f').trim_end_matches(".txt");
        assert_eq!(
            r.git(&["show", &format!("main:{f}")]),
            format!("{n}\n"),
            "{text}"
        );
    }
}

// ---- R6: a filter driver from a file the watch does not put back ----

#[derive(Debug, Clone, Copy)]
enum Global {
    /// `git config --global` (`$HOME/.gitconfig`).
    Home,
    /// `$XDG_CONFIG_HOME/git/config`.
    Xdg,
}

fn global_filter(kind: Global) {
    // The agent of task 1 defines `filter.evil` in the user's global config and
    // commits `*.txt filter=evil`: qw's save of it (`git add`), its merge into `main`
    // (checkout: smudge) and the later tasks' saves would run it. The user's own
    // filter (`*.mine`), in `~/.gitconfig` from the start, runs as before.
    let home = tempfile::tempdir().unwrap();
    let (h, x) = (home.path().join("h"), home.path().join("x"));
    std::fs::create_dir_all(&h).unwrap();
    std::fs::create_dir_all(&x).unwrap();
    let r = Repo::build_with_env(
        &tasks(3),
        Layout::Tracked,
        Root::Aux,
        &[
            ("HOME", &h.display().to_string()),
            ("XDG_CONFIG_HOME", &x.display().to_string()),
        ],
    );
    let (log, mine_log) = (r.aux.path().join("evil.log"), r.aux.path().join("mine.log"));
    let evil = program(r.aux.path(), "evil", &log);
    let mine = program(r.aux.path(), "mine", &mine_log);
    std::fs::write(
        h.join(".gitconfig"),
        format!(
            "[filter \"mine\"]\n\tclean = {m}\n\tsmudge = {m}\n\trequired = true\n",
            m = mine.display()
        ),
    )
    .unwrap();
    std::fs::write(r.root().join(".gitattributes"), "*.mine filter=mine\n").unwrap();
    r.git(&["add", ".gitattributes"]);
    r.git(&["commit", "-qm", "attributes"]);
    let set = match kind {
        Global::Home => format!(
            "git config --global filter.evil.clean {e}\ngit config --global filter.evil.smudge {e}\ngit config --global filter.evil.required true\n",
            e = evil.display()
        ),
        Global::Xdg => format!(
            "mkdir -p \"$XDG_CONFIG_HOME/git\"\nprintf '[filter \"evil\"]\\n\\tclean = {e}\\n\\tsmudge = {e}\\n' > \"$XDG_CONFIG_HOME/git/config\"\n",
            e = evil.display()
        ),
    };
    r.action(
        "1",
        &format!(
            "{set}echo '*.txt filter=evil' >> .gitattributes\necho 1 > f1.txt\necho a > a.mine\n"
        ),
    );
    r.action("2", "echo 2 > f2.txt\necho b > b.mine\n");
    r.action("3", "echo 3 > f3.txt\n");
    let out = auto_with_home(&r, &["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_never_ran(&r, &log, &text, &["f1.txt", "f2.txt", "f3.txt"]);
    // The planted attribute is on `main` (the task's work), the filter is told.
    assert!(read(&r.root().join(".gitattributes")).contains("filter=evil"));
    assert!(
        text.contains("filter.evil.clean") && text.contains("qw's own git does not run it"),
        "{text}"
    );
    // The user's filter ran in qw's saves of `*.mine`.
    assert!(read(&mine_log).contains("mine ran"), "{text}");
    assert!(has(&r, "main", "a.mine") && has(&r, "main", "b.mine"));
    // The user's global file is not qw's to change.
    let global = match kind {
        Global::Home => h.join(".gitconfig"),
        Global::Xdg => x.join("git/config"),
    };
    assert!(read(&global).contains("evil"));
}

#[test]
fn gitcfg_a_filter_the_agent_writes_to_the_global_gitconfig_never_runs_in_qws_git() {
    global_filter(Global::Home);
}

#[test]
fn gitcfg_a_filter_the_agent_writes_to_the_xdg_config_never_runs_in_qws_git() {
    global_filter(Global::Xdg);
}

#[test]
fn gitcfg_a_filter_in_a_task_worktrees_config_worktree_never_runs_in_qws_git() {
    // With per-worktree config on (the user's), the agent sets the filter in its own
    // worktree's `config.worktree` (`<common>/worktrees/<id>/config.worktree`: no file
    // the planted watch holds), where qw saves its work.
    let r = Repo::new(&tasks(2));
    r.git(&["config", "extensions.worktreeConfig", "true"]);
    let log = r.aux.path().join("evil.log");
    let evil = program(r.aux.path(), "evil", &log);
    r.action(
        "1",
        &format!(
            "git config --worktree filter.evil.clean {e}\ngit config --worktree filter.evil.smudge {e}\ngit config --worktree filter.evil.required true\necho '*.txt filter=evil' >> .gitattributes\necho 1 > f1.txt\n",
            e = evil.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_never_ran(&r, &log, &text, &["f1.txt", "f2.txt"]);
    assert!(text.contains("config.worktree"), "{text}");
}

#[test]
fn gitcfg_a_filter_in_a_file_the_users_include_names_never_runs_in_qws_git() {
    // The user's config includes a file outside the repository (absent when the run
    // starts); the agent writes a filter there.
    let r = Repo::new(&tasks(2));
    let extra = r.aux.path().join("extra.cfg");
    r.git(&["config", "include.path", &extra.display().to_string()]);
    let log = r.aux.path().join("evil.log");
    let evil = program(r.aux.path(), "evil", &log);
    r.action(
        "1",
        &format!(
            "printf '[filter \"evil\"]\\n\\tclean = {e}\\n\\tsmudge = {e}\\n\\trequired = true\\n' > {x}\necho '*.txt filter=evil' >> .gitattributes\necho 1 > f1.txt\n",
            e = evil.display(),
            x = extra.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_never_ran(&r, &log, &text, &["f1.txt", "f2.txt"]);
    assert!(text.contains("extra.cfg"), "{text}");
}

// ---- R6 leftover: a merge driver ----

#[test]
fn gitcfg_a_merge_driver_the_agent_plants_never_runs_in_qws_merge() {
    // Task 1 commits `shared.txt merge=evil` and defines `merge.evil.driver` in the
    // global config; task 2, started with it, changes another line of `shared.txt`
    // and ends after task 1 was merged: its merge into `main` is a three-way merge of
    // that file, which the driver would do. git's own text merge does it instead.
    let cfg = tempfile::tempdir().unwrap();
    let global = cfg.path().join("gitconfig");
    std::fs::write(&global, "").unwrap();
    let r = Repo::build_with_env(
        &tasks(2),
        Layout::Tracked,
        Root::Aux,
        &[("GIT_CONFIG_GLOBAL", &global.display().to_string())],
    );
    let lines: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    std::fs::write(r.root().join("shared.txt"), &lines).unwrap();
    r.git(&["commit", "-qam", "ten lines"]);
    let log = r.aux.path().join("evil.log");
    let evil = program(r.aux.path(), "evil", &log);
    r.action(
        "1",
        &format!(
            "git config --global merge.evil.driver '{e} %O %A %B'\necho 'shared.txt merge=evil' > .gitattributes\nsed -i 's/^line 1$/line one/' shared.txt\necho 1 > f1.txt\n{open}",
            e = evil.display(),
            open = open_gate(&r, "planted")
        ),
    );
    r.action(
        "2",
        &format!(
            "{wait}n=0; until git -C \"$MAIN\" cat-file -e main:f1.txt 2>/dev/null || [ $n -ge 1200 ]; do sleep 0.05; n=$((n+1)); done\nsed -i 's/^line 10$/line ten/' shared.txt\necho 2 > f2.txt\n",
            wait = gate(&r, "planted")
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_never_ran(&r, &log, &text, &["f1.txt", "f2.txt"]);
    let merged = r.git(&["show", "main:shared.txt"]);
    assert!(
        merged.starts_with("line one\n") && merged.ends_with("line ten\n"),
        "{merged}"
    );
    assert!(text.contains("merge.evil.driver"), "{text}");
}

// ---- R6: a gpg program ----

#[test]
fn gitcfg_a_gpg_program_the_agent_plants_never_runs_in_qws_git() {
    // The user signs commits and shows signatures (`commit.gpgsign`,
    // `log.showSignature`, their `gpg.program`); the agent makes a signed commit and
    // then names its own `gpg.program` in the global config: qw's `git log` of the
    // task's commits would run it to verify the signature.
    let cfg = tempfile::tempdir().unwrap();
    let global = cfg.path().join("gitconfig");
    let mine_log = cfg.path().join("mine.log");
    let mine = program(cfg.path(), "mine", &mine_log);
    std::fs::write(&global, "").unwrap();
    let r = Repo::build_with_env(
        &tasks(2),
        Layout::Tracked,
        Root::Aux,
        &[("GIT_CONFIG_GLOBAL", &global.display().to_string())],
    );
    std::fs::write(
        &global,
        format!(
            "[commit]\n\tgpgsign = true\n[log]\n\tshowSignature = true\n[gpg]\n\tprogram = {}\n",
            mine.display()
        ),
    )
    .unwrap();
    let log = r.aux.path().join("evil.log");
    let evil = program(r.aux.path(), "evil", &log);
    let signer = r.aux.path().join("signer");
    std::fs::write(
        &signer,
        "#!/bin/sh\ncat >/dev/null\necho '[GNUPG:] SIG_CREATED ' >&2\nprintf -- '-----BEGIN PGP SIGNATURE-----\\nxx\\n-----END PGP SIGNATURE-----\\n'\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&signer, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit -c gpg.program={s} commit -qS -m signed\ngit config --global gpg.program {e}\n",
            s = signer.display(),
            e = evil.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_never_ran(&r, &log, &text, &["f1.txt", "f2.txt"]);
    assert!(text.contains("gpg.program"), "{text}");
}

// ---- R9: the user's ordinary config writes during a run ----

#[test]
fn gitcfg_the_users_identity_remote_and_upstream_written_mid_run_are_kept_and_fail_nothing() {
    // While task 1 runs, the user (its script, in the main checkout) sets an identity,
    // adds a remote, sets `main`'s upstream, `core.autocrlf` and an alias: all three
    // tasks complete and every change is kept.
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        "git -C \"$MAIN\" config user.email me@example.com\ngit -C \"$MAIN\" remote add origin https://example.invalid/x.git\ngit -C \"$MAIN\" config branch.main.remote origin\ngit -C \"$MAIN\" config branch.main.merge refs/heads/main\ngit -C \"$MAIN\" config core.autocrlf false\ngit -C \"$MAIN\" config alias.st status\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(!text.contains("shared git files"), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    for (k, v) in [
        ("user.email", "me@example.com"),
        ("remote.origin.url", "https://example.invalid/x.git"),
        ("branch.main.remote", "origin"),
        ("branch.main.merge", "refs/heads/main"),
        ("core.autocrlf", "false"),
        ("alias.st", "status"),
    ] {
        assert_eq!(r.git(&["config", "--get", k]).trim(), v, "{k}: {text}");
    }
    assert!(!r.root().join(".git/qw-planted").exists());
}

#[test]
fn gitcfg_a_code_running_key_written_with_the_users_edits_is_put_back_alone_and_told() {
    // Task 1's script writes an identity and a pager into the shared config: the pager
    // is put back (none), the identity kept, the changed file kept aside, the task
    // failed naming the key.
    let r = Repo::new(&tasks(2));
    let log = r.aux.path().join("evil.log");
    let evil = program(r.aux.path(), "evil", &log);
    r.action(
        "1",
        &format!(
            "git -C \"$MAIN\" config user.email me@example.com\ngit -C \"$MAIN\" config core.pager {e}\necho 1 > f1.txt\n",
            e = evil.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert!(!log.exists(), "{}", read(&log));
    let err = r.f.task("1")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{err}\n{text}");
    assert!(
        err.contains("core.pager") && !err.contains("user.email"),
        "{err}"
    );
    assert!(err.contains("other changes kept"), "{err}");
    assert!(!r.git_ok(&["config", "--get", "core.pager"]));
    assert_eq!(
        r.git(&["config", "--get", "user.email"]).trim(),
        "me@example.com"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(r.root().join(".git/qw-planted"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("config"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(read(&aside[0]).contains("pager"), "{}", read(&aside[0]));
    // Nothing lost: task 1's work is on its branch, task 2's on `main`.
    assert!(has(&r, "qw/demo/1", "f1.txt") || has(&r, "main", "f1.txt"));
    r.assert_all_merged(&["f2.txt"]);
    r.assert_no_process();
}
