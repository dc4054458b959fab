//! `qw init`: scaffold, idempotence, user edits kept, settings merged, corrupt settings refused.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::*;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn init_json(p: &TestProject) -> serde_json::Value {
    let o = p.run(&["--json", "init"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    last_json(&o)
}

fn action_of(report: &serde_json::Value, path: &str) -> String {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in report: {report}"))["action"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn init_scaffolds_everything_and_a_second_run_changes_nothing() {
    let p = TestProject::bare();
    let o = p.run(&["init"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("19 created, 0 updated, 0 unchanged, 0 kept"),
        "{}",
        stdout(&o)
    );
    for doc in ["product", "tech", "structure"] {
        assert!(
            p.read(&format!(".claude/steering/{doc}.md"))
                .starts_with('#')
        );
    }
    assert!(p.claude().join("specs").is_dir());
    for cmd in [
        "workflow-auto",
        "workflow-continue",
        "workflow-reset",
        "state-backup",
        "dev-mode",
        "spec-create",
        "spec-list",
        "spec-status",
        "status",
        "resources",
        "sweep",
        "suggest",
        "dashboard",
        "worktrees",
    ] {
        let text = p.read(&format!(".claude/commands/{cmd}.md"));
        assert!(text.contains("allowed-tools: Bash(qw:*)"), "{cmd}: {text}");
        assert!(
            text.contains(&format!("qw {cmd} $ARGUMENTS")),
            "{cmd}: {text}"
        );
    }
    let settings: serde_json::Value =
        serde_json::from_str(&p.read(".claude/settings.local.json")).unwrap();
    // Only the dev-mode switch; no flag and no limit, so none counts as the user's
    // choice (dev mode tightens only limits the user did not set).
    assert_eq!(
        settings["development_mode"],
        serde_json::json!({"enabled": false})
    );
    assert!(settings.get("resource_limits").is_none(), "{settings}");
    // The permission choice for headless `claude -p`, in the settings and the help.
    let help = settings["quantumwala"]["claude_permissions"]
        .as_str()
        .unwrap();
    assert!(help.contains("--claude-arg=--permission-mode --claude-arg=acceptEdits"));
    assert!(help.contains("refuses it as root"), "{help}");
    for cmd in ["workflow-auto", "workflow-continue"] {
        let text = p.read(&format!(".claude/commands/{cmd}.md"));
        assert!(text.contains("permission_denied"), "{cmd}: {text}");
        assert!(
            text.contains("--claude-arg=--permission-mode --claude-arg=acceptEdits"),
            "{cmd}: {text}"
        );
        assert!(text.contains("refuses it as root"), "{cmd}: {text}");
    }

    let before = snapshot(&p.claude());
    let report = init_json(&p);
    assert_eq!(report["created"], 0, "{report}");
    assert_eq!(report["unchanged"], 19, "{report}");
    assert_eq!(before, snapshot(&p.claude()), "a second init changed files");
}

#[test]
fn init_keeps_edited_files_recreates_deleted_ones_and_updates_stale_templates() {
    let p = TestProject::bare();
    init_json(&p);
    let edited = "# Our product\nA tool for gardeners.\n";
    p.write(".claude/steering/product.md", edited);
    std::fs::remove_file(p.claude().join("commands/status.md")).unwrap();
    // A template from an older qw: on disk as init wrote it (hash in the manifest), but
    // different from today's template.
    let old = "---\ndescription: 'old'\n---\nold body\n";
    p.write(".claude/commands/sweep.md", old);
    let manifest_path = p.claude().join(".qw-init.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["files"]["commands/sweep.md"] = fnv1a64(old.as_bytes()).into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();

    let report = init_json(&p);
    assert_eq!(action_of(&report, ".claude/steering/product.md"), "kept");
    assert_eq!(action_of(&report, ".claude/commands/status.md"), "created");
    assert_eq!(action_of(&report, ".claude/commands/sweep.md"), "updated");
    assert_eq!(action_of(&report, ".claude/steering/tech.md"), "unchanged");
    assert_eq!(p.read(".claude/steering/product.md"), edited);
    assert!(
        p.read(".claude/commands/sweep.md")
            .contains("qw sweep $ARGUMENTS")
    );
    assert!(
        p.read(".claude/commands/status.md")
            .contains("qw status $ARGUMENTS")
    );

    // Still kept on every later run; the text report says why.
    let o = p.run(&["init"]);
    assert!(
        stdout(&o).contains("kept      .claude/steering/product.md (edited by you)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(p.read(".claude/steering/product.md"), edited);
}

#[test]
fn init_merges_settings_keeping_foreign_keys_in_order() {
    let p = TestProject::new();
    let fixture = include_str!("../fixtures/settings.local.json");
    p.write(".claude/settings.local.json", fixture);
    let report = init_json(&p);
    assert_eq!(action_of(&report, ".claude/settings.local.json"), "updated");
    let original: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(fixture).unwrap();
    let merged: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&p.read(".claude/settings.local.json")).unwrap();
    let keys: Vec<_> = merged.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "permissions",
            "hooks",
            "env",
            "development_mode",
            "quantumwala"
        ]
    );
    for (k, v) in &original {
        assert_eq!(&merged[k], v, "key {k} changed");
    }
    // A user's own limit survives alone: init fills in no other limit.
    let mut edited = merged.clone();
    edited.insert(
        "resource_limits".to_owned(),
        serde_json::json!({"max_load": 0.5}),
    );
    p.write(
        ".claude/settings.local.json",
        &serde_json::to_string_pretty(&edited).unwrap(),
    );
    let report = init_json(&p);
    assert_eq!(
        action_of(&report, ".claude/settings.local.json"),
        "unchanged"
    );
    let again: serde_json::Value =
        serde_json::from_str(&p.read(".claude/settings.local.json")).unwrap();
    assert_eq!(
        again["resource_limits"],
        serde_json::json!({"max_load": 0.5})
    );
    assert_eq!(again["permissions"], original["permissions"]);
}

/// The limits of a project made by `qw init` are qw's, not the user's: dev mode tightens
/// them (source "dev mode" in `qw resources`), a limit the user sets still wins, and
/// `dev-mode off` brings the defaults back.
#[test]
fn init_then_dev_mode_tightens_the_limits_the_user_did_not_set() {
    let p = TestProject::bare();
    init_json(&p);
    let resources = |p: &TestProject| -> serde_json::Value {
        let o = p.run(&["--json", "resources"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let v = resources(&p);
    assert_eq!(v["limits"]["max_concurrent"], 8, "{v}");
    assert_eq!(v["limits_source"]["max_load"], "default", "{v}");

    let on = p.run(&["dev-mode", "on"]);
    assert_eq!(on.status.code(), Some(0), "{}", stderr(&on));
    let v = resources(&p);
    assert_eq!(v["limits"]["max_concurrent"], 4, "{v}");
    assert_eq!(v["limits"]["max_load"], 0.7, "{v}");
    assert_eq!(v["limits"]["max_memory"], 0.6, "{v}");
    for k in ["max_concurrent", "max_load", "max_memory"] {
        assert_eq!(v["limits_source"][k], "dev_mode", "{k}: {v}");
    }
    let text = stdout(&p.run(&["resources"]));
    assert!(
        text.lines()
            .any(|l| l.contains("max_concurrent") && l.contains("4  (dev mode)")),
        "{text}"
    );
    let status = stdout(&p.run(&["dev-mode", "status"]));
    assert!(status.contains("max_concurrent 4 (dev mode)"), "{status}");
    assert!(status.contains("attempts 2 (dev mode)"), "{status}");

    // A limit the user sets wins over dev mode; the others still tighten.
    let path = p.path().join(".claude/settings.local.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    s["resource_limits"] = serde_json::json!({"max_concurrent": 6});
    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let v = resources(&p);
    assert_eq!(v["limits"]["max_concurrent"], 6, "{v}");
    assert_eq!(v["limits_source"]["max_concurrent"], "settings", "{v}");
    assert_eq!(v["limits"]["max_load"], 0.7, "{v}");
    let text = stdout(&p.run(&["resources"]));
    assert!(text.contains("6  (settings file)"), "{text}");

    assert_eq!(p.run(&["dev-mode", "off"]).status.code(), Some(0));
    let v = resources(&p);
    assert_eq!(v["limits"]["max_load"], 0.85, "{v}");
    assert_eq!(v["limits_source"]["max_load"], "default", "{v}");
    assert_eq!(v["limits"]["max_concurrent"], 6, "{v}");
}

/// A project whose settings hold exactly the limits an older `qw init` wrote: dev mode
/// says why it tightens nothing, and re-running `qw init` removes the block (reported),
/// after which dev mode tightens them. Any other block is the user's and stays.
#[test]
fn init_removes_the_limits_an_older_init_wrote_and_dev_mode_warns_until_then() {
    let p = TestProject::bare();
    init_json(&p);
    let path = p.path().join(".claude/settings.local.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    s["resource_limits"] = serde_json::json!({
        "max_load": 0.85, "max_memory": 0.8, "high_impact_load": 0.6,
        "max_concurrent": 8, "acquire_timeout_s": 300
    });
    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap()).unwrap();

    let on = p.run(&["dev-mode", "on"]);
    assert_eq!(on.status.code(), Some(0), "{}", stderr(&on));
    assert!(
        stderr(&on).contains("exactly the defaults an older `qw init` wrote")
            && stderr(&on).contains("run `qw init`"),
        "{}",
        stderr(&on)
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&p.run(&["--json", "resources"]))).unwrap();
    assert_eq!(v["limits_source"]["max_load"], "settings", "{v}");

    let report = init_json(&p);
    let row = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == ".claude/settings.local.json")
        .unwrap()
        .clone();
    assert_eq!(row["action"], "updated", "{row}");
    assert!(
        row["note"]
            .as_str()
            .unwrap()
            .contains("removed resource_limits"),
        "{row}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(after.get("resource_limits").is_none(), "{after}");
    assert_eq!(after["development_mode"]["enabled"], true, "dev mode kept");
    let o = p.run(&["--json", "resources"]);
    assert!(!stderr(&o).contains("older"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["limits"]["max_concurrent"], 4, "{v}");
    assert_eq!(v["limits_source"]["max_concurrent"], "dev_mode", "{v}");

    // The same values with one changed are the user's: init keeps them.
    let mut s = after.clone();
    s["resource_limits"] = serde_json::json!({
        "max_load": 0.85, "max_memory": 0.8, "high_impact_load": 0.6,
        "max_concurrent": 3, "acquire_timeout_s": 300
    });
    std::fs::write(&path, serde_json::to_string_pretty(&s).unwrap()).unwrap();
    init_json(&p);
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(kept["resource_limits"], s["resource_limits"]);
    let on = p.run(&["dev-mode", "status"]);
    assert!(!stderr(&on).contains("older"), "{}", stderr(&on));
}

#[test]
fn init_refuses_corrupt_settings_and_writes_nothing() {
    let p = TestProject::new();
    let corrupt = "{\n  \"permissions\": {\n    \"allow\": [\"Bash(ls)\",]\n  }\n}\n";
    let path = p.write(".claude/settings.local.json", corrupt);
    let o = p.run(&["init"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("settings.local.json") && err.contains("line 3"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);
    let names: Vec<_> = std::fs::read_dir(p.claude())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["settings.local.json"], "init wrote something");
}

/// FNV-1a 64 as the manifest records it (lets the test fake an older template).
fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

#[test]
fn init_refuses_resource_limits_qw_would_refuse_later() {
    let p = TestProject::new();
    let bad = r#"{"resource_limits": {"max_load": "high"}}"#;
    p.write(".claude/settings.local.json", bad);
    let out = p.run(&["init"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("max_load"), "{}", stderr(&out));
    assert_eq!(p.read(".claude/settings.local.json"), bad);
    assert!(!p.claude().join("steering").exists());
}

/// `qw init` in a repository that `workflow-auto` would refuse to isolate says why at
/// once: no commit yet, no git identity. Once both are fixed it says nothing of git.
#[test]
fn init_names_what_git_lacks_before_the_first_parallel_run() {
    let p = TestProject::bare();
    let home = tempfile::tempdir().unwrap();
    // No user-level or system git configuration, and no identity guessed from the host.
    let git_env = |c: &mut std::process::Command| {
        c.env("HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "user.useConfigOnly")
            .env("GIT_CONFIG_VALUE_0", "true")
            .env_remove("GIT_AUTHOR_NAME")
            .env_remove("GIT_AUTHOR_EMAIL")
            .env_remove("GIT_COMMITTER_NAME")
            .env_remove("GIT_COMMITTER_EMAIL")
            .env_remove("EMAIL");
    };
    let git = |args: &[&str], ident: bool| {
        let mut c = std::process::Command::new("git");
        c.current_dir(p.path()).args(args);
        git_env(&mut c);
        if ident {
            c.env("GIT_AUTHOR_NAME", "T")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "T")
                .env("GIT_COMMITTER_EMAIL", "t@example.com");
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    git(&["init", "-q", "-b", "trunk"], false);

    let mut c = p.qw(&["init"]);
    git_env(&mut c);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("note: branch `trunk` has no commit yet") && err.contains("--isolate none"),
        "{err}"
    );
    assert!(
        err.contains("note: git cannot make commits here") && err.contains("git config user.email"),
        "{err}"
    );

    // What the notes foretell: the parallel run refuses, naming the same things.
    let auto = |ident: bool| {
        let mut c = p.qw(&[
            "workflow-auto",
            "demo",
            "A demo",
            "--agent",
            "offline",
            "--parallel",
            "2",
        ]);
        git_env(&mut c);
        if ident {
            c.env("GIT_COMMITTER_NAME", "T")
                .env("GIT_COMMITTER_EMAIL", "t@example.com");
        }
        c.output().unwrap()
    };
    let o = auto(false);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("commit once"), "{}", stderr(&o));

    git(&["add", "-A"], true);
    git(&["commit", "-q", "-m", "init"], true);
    let o = auto(false);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("git cannot make commits here: no email was given")
            && !err.contains("Please tell me who you are"),
        "{err}"
    );
    let mut c = p.qw(&["init"]);
    git_env(&mut c);
    c.env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("note:"), "{}", stderr(&o));
}
