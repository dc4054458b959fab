//! `qw dev-mode`: settings round trip, corrupt settings, log files and their fallback.

use serde_json::Value;

use crate::support::*;

const FIXTURE: &str = include_str!("../fixtures/settings.local.json");

fn settings(p: &TestProject) -> serde_json::Map<String, Value> {
    match serde_json::from_str(&p.read(".claude/settings.local.json")).unwrap() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn devmode_round_trip_keeps_other_keys_and_order() {
    let p = TestProject::new();
    p.write(".claude/settings.local.json", FIXTURE);
    let original: serde_json::Map<String, Value> = serde_json::from_str(FIXTURE).unwrap();

    let on = p.run(&["dev-mode", "on"]);
    assert_eq!(on.status.code(), Some(0), "{}", stderr(&on));
    let s = settings(&p);
    let keys: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(keys, ["permissions", "hooks", "env", "development_mode"]);
    for k in ["permissions", "hooks", "env"] {
        assert_eq!(s[k], original[k], "{k} changed");
    }
    // Only the switch is written; the flags it governs follow it.
    let dm = s["development_mode"].as_object().unwrap();
    assert_eq!(dm.len(), 1, "{dm:?}");
    assert_eq!(dm["enabled"], Value::Bool(true));

    let status = p.run(&["--json", "dev-mode", "status"]);
    assert_eq!(status.status.code(), Some(0));
    let j = last_json(&status);
    assert_eq!(j["enabled"], Value::Bool(true));
    for flag in [
        "verbose_logging",
        "auto_backup",
        "performance_profiling",
        "command_validation",
        "resource_monitoring",
    ] {
        assert_eq!(j["flags"][flag]["value"], Value::Bool(true), "{flag}: {j}");
        assert_eq!(j["flags"][flag]["source"], "dev_mode", "{flag}: {j}");
    }
    assert_eq!(j["flags"]["fail_fast"]["value"], Value::Bool(false));
    assert_eq!(j["flags"]["fail_fast"]["source"], "default");
    let text = stdout(&p.run(&["dev-mode", "status"]));
    assert!(
        text.lines()
            .any(|l| l.contains("verbose_logging") && l.contains("(dev mode)")),
        "{text}"
    );

    let off = p.run(&["dev-mode", "off"]);
    assert_eq!(off.status.code(), Some(0), "{}", stderr(&off));
    let s = settings(&p);
    let keys: Vec<&str> = s.keys().map(String::as_str).collect();
    assert_eq!(keys, ["permissions", "hooks", "env", "development_mode"]);
    for k in ["permissions", "hooks", "env"] {
        assert_eq!(s[k], original[k], "{k} changed");
    }
    assert_eq!(
        s["development_mode"],
        serde_json::json!({"enabled": false}),
        "only the switch"
    );
    let j = last_json(&p.run(&["--json", "dev-mode", "status"]));
    assert_eq!(j["flags"]["verbose_logging"]["value"], Value::Bool(false));
    assert_eq!(j["flags"]["verbose_logging"]["source"], "default");
}

#[test]
fn devmode_off_restores_previous_values_not_defaults() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"development_mode": {"verbose_logging": true, "auto_backup": false, "fail_fast": true}, "x": 1}"#,
    );
    assert_eq!(p.run(&["dev-mode", "on"]).status.code(), Some(0));
    assert_eq!(p.run(&["dev-mode", "off"]).status.code(), Some(0));
    let dm = settings(&p)["development_mode"].clone();
    assert_eq!(
        dm["verbose_logging"],
        Value::Bool(true),
        "previous value lost"
    );
    assert_eq!(dm["fail_fast"], Value::Bool(true));
    assert_eq!(dm["auto_backup"], Value::Bool(false));
    assert_eq!(dm["enabled"], Value::Bool(false));
}

#[test]
fn devmode_status_shows_defaults_without_a_settings_file() {
    let p = TestProject::new();
    let out = p.run(&["--json", "dev-mode", "status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = last_json(&out);
    assert_eq!(j["flags"]["enabled"]["source"], "default");
    assert_eq!(
        j["flags"]["confirmation_prompts"]["value"],
        Value::Bool(true)
    );
    assert!(
        !p.claude().join("settings.local.json").exists(),
        "status wrote a file"
    );
    // `on` creates a missing file.
    assert_eq!(p.run(&["dev-mode", "on"]).status.code(), Some(0));
    assert_eq!(
        settings(&p)["development_mode"]["enabled"],
        Value::Bool(true)
    );
}

#[test]
fn devmode_corrupt_settings_exit_2_and_stay_byte_identical() {
    let p = TestProject::new();
    let bad = "{\n  \"permissions\": {\"allow\": []},\n  \"hooks\": oops\n}\n";
    let path = p.write(".claude/settings.local.json", bad);
    for action in ["on", "off", "status"] {
        let out = p.run(&["dev-mode", action]);
        assert_eq!(out.status.code(), Some(2), "{action}");
        let err = stderr(&out);
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("settings.local.json"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bad.as_bytes());
    }
}

#[test]
fn devmode_on_backs_up_existing_state() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", "{\"schema_version\": 1}\n");
    let out = p.run(&["dev-mode", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let backups: Vec<_> = std::fs::read_dir(p.claude().join("backups/state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&backups[0]).unwrap(),
        "{\"schema_version\": 1}\n"
    );
    // A backup like `qw state-backup` makes: named so, and restorable.
    let name = backups[0].file_stem().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("state_backup_"), "{name}");
    assert!(stdout(&out).contains(&name), "{}", stdout(&out));
    let restored = p.run(&["state-backup", "--restore", &name]);
    assert_eq!(restored.status.code(), Some(0), "{}", stderr(&restored));
}

#[test]
fn devmode_on_with_corrupt_state_backs_up_the_repaired_state() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", "{ not json");
    let out = p.run(&["dev-mode", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names: Vec<String> = std::fs::read_dir(p.claude().join("backups/state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let corrupted: Vec<_> = names
        .iter()
        .filter(|n| n.starts_with("corrupted_"))
        .collect();
    assert_eq!(corrupted.len(), 1, "bad file kept aside: {names:?}");
    assert_eq!(
        std::fs::read_to_string(p.claude().join("backups/state").join(corrupted[0])).unwrap(),
        "{ not json"
    );
    let backup = names
        .iter()
        .find(|n| n.starts_with("state_backup_"))
        .unwrap_or_else(|| panic!("no auto backup: {names:?}"));
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(p.claude().join("backups/state").join(backup)).unwrap(),
    )
    .expect("the auto backup is valid JSON");
    assert_eq!(v["schema_version"], 1, "{v}");
}

#[test]
fn devmode_logs_go_to_daily_file_at_debug_in_dev_mode() {
    let p = TestProject::new();
    assert_eq!(p.run(&["dev-mode", "on"]).status.code(), Some(0));
    let logs: Vec<_> = std::fs::read_dir(p.claude().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0].starts_with("qw-") && logs[0].ends_with(".log"),
        "{logs:?}"
    );
    let text = p.read(&format!(".claude/logs/{}", logs[0]));
    assert!(text.contains("development mode turned on"), "{text}");
    assert!(
        !text.contains("DEBUG"),
        "debug before dev mode was on: {text}"
    );
    // Now in dev mode: debug events reach the file.
    assert_eq!(p.run(&["dev-mode", "status"]).status.code(), Some(0));
    let text = p.read(&format!(".claude/logs/{}", logs[0]));
    assert_eq!(text.matches("DEBUG").count(), 1, "{text}");
    // Off again: info only.
    assert_eq!(p.run(&["dev-mode", "off"]).status.code(), Some(0));
    assert_eq!(p.run(&["dev-mode", "status"]).status.code(), Some(0));
    let text = p.read(&format!(".claude/logs/{}", logs[0]));
    // The one extra DEBUG line is `off` itself, which still started in dev mode.
    assert_eq!(text.matches("DEBUG").count(), 2, "{text}");
}

/// An unwritable log directory: the command still succeeds and says so exactly once.
#[test]
fn devmode_unwritable_log_dir_falls_back_with_one_notice() {
    let p = TestProject::new();
    let tmp = p.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A file where `.claude/logs/` should be cannot be written even by root; a read-only
    // directory is tried too where permissions apply.
    p.write(".claude/logs", "not a directory");
    let mut cmd = p.qw(&["dev-mode", "on"]);
    cmd.env("TMPDIR", &tmp);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("cannot write logs").count(), 1, "{err}");
    assert_eq!(
        settings(&p)["development_mode"]["enabled"],
        Value::Bool(true)
    );
    // The events went to the temp-dir file instead.
    let fallback = std::fs::read_dir(&tmp)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let files: Vec<_> = std::fs::read_dir(&fallback).unwrap().collect();
    assert_eq!(files.len(), 1);

    std::fs::remove_file(p.claude().join("logs")).unwrap();
    let logs = p.claude().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable = std::fs::write(logs.join("probe"), "x").is_ok();
    let mut cmd = p.qw(&["dev-mode", "off"]);
    cmd.env("TMPDIR", &tmp);
    let out = cmd.output().unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let notices = stderr(&out).matches("cannot write logs").count();
    // Root ignores directory permissions; then the file log simply works.
    assert_eq!(notices, usize::from(!writable), "{}", stderr(&out));
}

#[test]
fn devmode_completions_cover_every_shell_and_command() {
    let p = TestProject::bare();
    for shell in ["bash", "zsh", "fish"] {
        let out = p.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for cmd in ["dev-mode", "consume", "suggest", "workflow-continue"] {
            assert!(text.contains(cmd), "{shell} completions lack {cmd}");
        }
    }
    let out = p.run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn devmode_help_of_owned_commands_has_an_example() {
    let p = TestProject::bare();
    for cmd in ["dev-mode", "suggest", "consume", "completions"] {
        let out = p.run(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let text = stdout(&out);
        assert!(text.contains("Example"), "{cmd} --help has no example");
        assert!(
            text.contains(&format!("qw {cmd}")),
            "{cmd} --help has no example"
        );
    }
}

/// Each dev-mode flag, set alone to true and then to false, has the effect `qw dev-mode
/// status` promises for it — observed through the commands it changes. (`fail_fast`,
/// `verbose_logging`: their own tests in `workflow` and above; `enhanced_error_reporting`:
/// `workflow::report` unit tests, as it needs a failing agent.)
#[test]
fn devmode_each_flag_has_the_effect_it_names() {
    let p = TestProject::new();
    let set = |flag: &str, on: bool| {
        p.write(
            ".claude/settings.local.json",
            &format!(r#"{{"development_mode": {{"{flag}": {on}}}}}"#),
        );
    };
    let ok = |args: &[&str]| {
        let o = p.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // A finished workflow to look at, and to reset.
    ok(&["workflow-auto", "flags", "Flag table", "--agent", "offline"]);
    let backups = || -> Vec<String> {
        std::fs::read_dir(p.claude().join("backups/state"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let n = std::cell::Cell::new(0);
    let fresh = |what: &str| {
        n.set(n.get() + 1);
        format!("{what}-{}", n.get())
    };

    type Observe<'a> = Box<dyn Fn() -> bool + 'a>;
    let table: Vec<(&str, Observe<'_>)> = vec![
        (
            // Dev mode on: the limits the user did not set come from dev mode.
            "enabled",
            Box::new(|| {
                let v: Value = serde_json::from_str(&ok(&["--json", "resources"])).unwrap();
                let dev = v["limits_source"]["max_load"] == "dev_mode";
                assert_eq!(
                    v["limits"]["max_concurrent"],
                    if dev { 4 } else { 8 },
                    "{v}"
                );
                dev
            }),
        ),
        (
            "performance_profiling",
            Box::new(|| ok(&["status"]).contains("phases: ")),
        ),
        (
            "state_monitoring",
            Box::new(|| ok(&["status"]).contains("state: `")),
        ),
        (
            "resource_monitoring",
            Box::new(|| {
                // A fresh state, so only this run can have recorded a snapshot.
                std::fs::remove_file(p.claude().join("unified_state.json")).unwrap();
                let spec = fresh("monitor");
                ok(&["workflow-auto", &spec, "Monitored", "--agent", "offline"]);
                let state: Value =
                    serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
                let tasks = state["specifications"][&spec]["tasks"].as_object().unwrap();
                assert_eq!(tasks.len(), 3, "{state}");
                let with: Vec<bool> = tasks
                    .values()
                    .map(|t| t["system_stats"]["load_average"].is_number())
                    .collect();
                assert!(with.iter().all(|w| *w == with[0]), "{state}");
                with[0]
            }),
        ),
        (
            "auto_backup",
            Box::new(|| {
                let spec = fresh("backup");
                ok(&["workflow-auto", &spec, "Backed up", "--agent", "offline"]);
                let prefix = format!("pre_{spec}_");
                backups().iter().any(|n| n.starts_with(&prefix))
            }),
        ),
        (
            // Off: nobody is asked, so a hard reset without a terminal goes ahead.
            "confirmation_prompts",
            Box::new(|| {
                let spec = fresh("confirm");
                ok(&["workflow-auto", &spec, "Confirmed", "--agent", "offline"]);
                let o = p.run(&["workflow-reset", &spec, "--hard"]);
                let asked = o.status.code() == Some(2);
                if !asked {
                    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
                }
                asked
            }),
        ),
        (
            "command_validation",
            Box::new(|| {
                p.write(
                    ".claude/next_command.txt",
                    "/workflow-continue no-such-spec\n",
                );
                let o = p
                    .qw(&["consume", "--once"])
                    .env("QW_CONSUME_ATTEMPTS", "1")
                    .output()
                    .unwrap();
                let all = stderr(&o) + &stdout(&o);
                let checked = all.contains("(development_mode.command_validation)");
                // Checked: refused before running (2); not checked: run, and it fails (1).
                assert_eq!(o.status.code(), Some(if checked { 2 } else { 1 }), "{all}");
                checked
            }),
        ),
    ];
    for (flag, observe) in &table {
        for on in [true, false] {
            // Remove the backups of the previous row, so `auto_backup` counts its own.
            let _ = std::fs::remove_dir_all(p.claude().join("backups/state"));
            set(flag, on);
            assert_eq!(observe(), on, "{flag} = {on}");
        }
    }
    // The retired debug_hooks is kept, unread, and not reported as unknown.
    p.write(
        ".claude/settings.local.json",
        r#"{"development_mode": {"debug_hooks": true}}"#,
    );
    let o = p.run(&["dev-mode", "on"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("debug_hooks"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("debug_hooks"), "{}", stdout(&o));
    assert_eq!(settings(&p)["development_mode"]["debug_hooks"], true);
}
