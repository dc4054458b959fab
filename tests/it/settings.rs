//! `.claude/settings.local.json`: qw's keys read once and typed (a bad value is exit 2
//! naming key, value and file, in every command that reads them), and rewrites that keep
//! every byte qw does not own, the file's mode and its symlink.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

const SETTINGS: &str = ".claude/settings.local.json";

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The file as JSON (a BOM skipped; serde_json refuses `1e400`, which JSON allows).
fn parsed(text: &str) -> Value {
    let text = text.trim_start_matches('\u{feff}').replace("1e400", "0");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
}

/// A full `development_mode` block with every flag at its default, laid out with `nl` and
/// `ind` (one level of indentation).
fn dev_block(nl: &str, ind: &str) -> String {
    let flags = [
        ("enabled", false),
        ("verbose_logging", false),
        ("fail_fast", false),
        ("resource_monitoring", false),
        ("auto_backup", false),
        ("confirmation_prompts", true),
        ("performance_profiling", false),
        ("enhanced_error_reporting", false),
        ("command_validation", true),
        ("state_monitoring", false),
    ];
    let lines: Vec<String> = flags
        .iter()
        .map(|(k, v)| format!("{ind}{ind}\"{k}\": {v}"))
        .collect();
    format!("{{{nl}{}{nl}{ind}}}", lines.join(&format!(",{nl}")))
}

/// Shapes of a settings file holding bytes serde_json would change. Each has a full
/// `development_mode` block, so `on` then `off` must give back the very same bytes.
fn shapes() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let pretty = format!(
        "{{\n  \"permissions\": {{\"allow\": [\"Bash(ls)\"], \"allow\": [\"Bash(cat)\"]}},\n  \"big\": 12345678901234567890123,\n  \"negative\": -98765432109876543210,\n  \"price\": 2.50,\n  \"huge\": 1e400,\n  \"tiny\": 1E-400,\n  \"development_mode\": {},\n  \"quantumwala\": {{\"daily_budget_usd\": 2.50, \"keep_runs\": 100}},\n  \"hooks\": {{}},\n  \"hooks\": {{\"Stop\": []}}\n}}\n",
        dev_block("\n", "  ")
    );
    let crlf = format!(
        "\u{feff}{{\r\n    \"env\": {{ \"N\": 340282366920938463463374607431768211457 }},\r\n    \"development_mode\": {}\r\n}}",
        dev_block("\r\n", "    ")
    );
    let compact = format!(
        "{{\"a\":1.10,\"development_mode\":{},\"z\":[1e400,-0.0]}}",
        dev_block("", "").replace(": ", ":")
    );
    let dup_owned = format!(
        "{{\n\t\"development_mode\": {{\"enabled\": false, \"enabled\": false, \"colour\": 1.50}},\n\t\"development_mode\": {}\n}}\n",
        dev_block("\n", "\t")
    );
    vec![
        (
            "pretty",
            pretty,
            vec![
                "\"big\": 12345678901234567890123,",
                "\"negative\": -98765432109876543210,",
                "\"price\": 2.50,",
                "\"huge\": 1e400,",
                "\"tiny\": 1E-400,",
                "{\"allow\": [\"Bash(ls)\"], \"allow\": [\"Bash(cat)\"]}",
                "\"daily_budget_usd\": 2.50, \"keep_runs\": 100",
                "\"hooks\": {},\n  \"hooks\": {\"Stop\": []}",
            ],
        ),
        (
            "crlf-bom-4-spaces",
            crlf,
            vec![
                "\u{feff}{\r\n    \"env\": { \"N\": 340282366920938463463374607431768211457 },\r\n",
            ],
        ),
        (
            "compact",
            compact,
            vec!["{\"a\":1.10,\"development_mode\":{", ",\"z\":[1e400,-0.0]"],
        ),
        (
            "duplicate-owned-block",
            dup_owned,
            vec!["{\"enabled\": false, \"enabled\": false, \"colour\": 1.50}"],
        ),
    ]
}

#[test]
fn devmode_keeps_every_byte_it_does_not_own() {
    for (name, text, kept) in shapes() {
        let p = TestProject::new();
        let path = p.write(SETTINGS, &text);
        let on = p.run(&["dev-mode", "on"]);
        assert_eq!(code(&on), 0, "{name}: {}", stderr(&on));
        let after_on = std::fs::read_to_string(&path).unwrap();
        for fragment in &kept {
            assert!(
                after_on.contains(fragment),
                "{name}: lost {fragment:?}:\n{after_on}"
            );
        }
        if text.contains("\r\n") {
            assert_eq!(
                after_on.matches('\n').count(),
                after_on.matches("\r\n").count(),
                "{name}: a bare LF crept in:\n{after_on}"
            );
        }
        let v = parsed(&after_on);
        assert_eq!(
            v["development_mode"]["enabled"],
            Value::Bool(true),
            "{name}"
        );
        // The block sets verbose_logging false: `on` sets it true and remembers the false.
        assert_eq!(
            v["development_mode"]["verbose_logging"],
            Value::Bool(true),
            "{name}"
        );
        assert_eq!(
            v["quantumwala"]["dev_mode_previous"]["verbose_logging"],
            Value::Bool(false),
            "{name}"
        );
        let status = p.run(&["--json", "dev-mode", "status"]);
        assert_eq!(last_json(&status)["enabled"], Value::Bool(true), "{name}");

        let off = p.run(&["dev-mode", "off"]);
        assert_eq!(code(&off), 0, "{name}: {}", stderr(&off));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "{name}: on + off is not the identity"
        );
    }
}

/// `dev-mode on`/`off` on hand-written `development_mode` blocks of a few keys: only the
/// keys the command owns are written (`enabled`, and a flag the block sets to false that
/// dev mode turns on), every other byte stays, and `off` gives the file back.
#[test]
fn devmode_on_a_hand_written_block_writes_only_what_it_owns() {
    for (name, text, after_on) in [
        (
            "two keys",
            "{\n  \"development_mode\": {\n    \"enabled\": false,\n    \"fail_fast\": true\n  },\n  \"env\": {\"A\": \"1.50\"}\n}\n",
            "{\n  \"development_mode\": {\n    \"enabled\": true,\n    \"fail_fast\": true\n  },\n  \"env\": {\"A\": \"1.50\"}\n}\n",
        ),
        (
            "one flag, no switch",
            "{\"development_mode\": {\"state_monitoring\": true}}",
            "{\"development_mode\": {\"state_monitoring\": true, \"enabled\": true}}",
        ),
        (
            "no block",
            "{\"x\": 1.10}",
            "{\"x\": 1.10, \"development_mode\": {\"enabled\": true}}",
        ),
    ] {
        let p = TestProject::new();
        let path = p.write(SETTINGS, text);
        let on = p.run(&["dev-mode", "on"]);
        assert_eq!(code(&on), 0, "{name}: {}", stderr(&on));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), after_on, "{name}");
        let j = last_json(&p.run(&["--json", "dev-mode", "status"]));
        assert_eq!(
            j["flags"]["verbose_logging"]["value"],
            Value::Bool(true),
            "{name}"
        );
        let off = p.run(&["dev-mode", "off"]);
        assert_eq!(code(&off), 0, "{name}: {}", stderr(&off));
        let back = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            back,
            after_on.replace("\"enabled\": true", "\"enabled\": false"),
            "{name}"
        );
        let j = last_json(&p.run(&["--json", "dev-mode", "status"]));
        assert_eq!(
            j["flags"]["verbose_logging"]["value"],
            Value::Bool(false),
            "{name}"
        );
    }
}

#[test]
fn init_adds_its_keys_without_touching_the_others() {
    let p = TestProject::new();
    let text = "{\r\n  \"big\": 12345678901234567890123,\r\n  \"resource_limits\": {\r\n    \"max_load\": 0.50\r\n  }\r\n}";
    let path = p.write(SETTINGS, text);
    let out = p.run(&["init"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = std::fs::read_to_string(&path).unwrap();
    // The user's limit block is theirs: init adds no limit to it.
    assert!(
        after.starts_with(
            "{\r\n  \"big\": 12345678901234567890123,\r\n  \"resource_limits\": {\r\n    \"max_load\": 0.50\r\n  },\r\n"
        ),
        "{after}"
    );
    assert_eq!(
        parsed(&after)["development_mode"]["enabled"],
        Value::Bool(false)
    );
    // A second init has nothing to add and leaves the file alone.
    assert_eq!(code(&p.run(&["init"])), 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
}

#[test]
fn rewrites_go_through_symlinks_and_keep_the_mode() {
    for (link_kind, perm) in [("relative", 0o644), ("absolute", 0o664), ("none", 0o600)] {
        let p = TestProject::new();
        let dotfiles = p.path().join("dotfiles");
        std::fs::create_dir_all(&dotfiles).unwrap();
        let real = dotfiles.join("claude-settings.json");
        let settings = p.claude().join("settings.local.json");
        let target = if link_kind == "none" {
            &settings
        } else {
            &real
        };
        std::fs::write(target, "{\"env\": {\"N\": 2.50}}\n").unwrap();
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(perm)).unwrap();
        match link_kind {
            "relative" => {
                std::os::unix::fs::symlink("../dotfiles/claude-settings.json", &settings).unwrap()
            }
            "absolute" => std::os::unix::fs::symlink(&real, &settings).unwrap(),
            _ => {}
        }
        let out = p.run(&["dev-mode", "on"]);
        assert_eq!(code(&out), 0, "{link_kind}: {}", stderr(&out));
        let is_link = std::fs::symlink_metadata(&settings)
            .unwrap()
            .file_type()
            .is_symlink();
        assert_eq!(is_link, link_kind != "none", "{link_kind}");
        let text = std::fs::read_to_string(target).unwrap();
        assert!(text.starts_with("{\"env\": {\"N\": 2.50}, "), "{text}");
        assert_eq!(
            parsed(&text)["development_mode"]["enabled"],
            Value::Bool(true)
        );
        assert_eq!(mode(target), perm, "{link_kind}");
        let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn read_only_or_unparsable_settings_are_never_overwritten() {
    let p = TestProject::new();
    let path = p.write(SETTINGS, "{\"env\": {}}\n");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = p.run(&["dev-mode", "on"]);
    // Settings the command will not touch: exit 2 (CONTRACT §1), saying what to do.
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("read-only") && err.contains("settings.local.json") && err.contains("chmod"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"env\": {}}\n");
    assert_eq!(mode(&path), 0o444);

    for text in [
        "{\n  // Claude Code does not allow comments either\n  \"env\": {}\n}\n",
        "{\"env\": {}, }",
        "{\"a\": NaN}",
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, text).unwrap();
        let out = p.run(&["dev-mode", "on"]);
        assert_eq!(code(&out), 2, "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains("line "), "{}", stderr(&out));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}

/// Run `cmd` to completion, but end it (and fail) if it is still running after a minute:
/// a dashboard that did not refuse its settings would serve forever.
fn run_bounded(mut cmd: std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not exit");
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_bad_value_is_exit_2_naming_key_value_and_file_in_every_reader() {
    for (settings, key, value) in [
        (
            r#"{"resource_limits": {"max_memory": 1.5}}"#,
            "resource_limits.max_memory",
            "1.5",
        ),
        (
            r#"{"quantumwala": {"keep_runs": 12345678901234567890123}}"#,
            "quantumwala.keep_runs",
            "12345678901234567890123",
        ),
        (
            r#"{"development_mode": {"fail_fast": "yes"}}"#,
            "development_mode.fail_fast",
            "\"yes\"",
        ),
    ] {
        let p = TestProject::new();
        let path = p.write(SETTINGS, settings);
        let named = format!("`{key}` = {value}");
        for (args, want) in [
            (vec!["status"], 2),
            (vec!["resources"], 2),
            (vec!["dev-mode", "status"], 2),
            (vec!["dev-mode", "on"], 2),
            (vec!["init"], 2),
            (
                vec![
                    "workflow-auto",
                    "demo",
                    "desc",
                    "--agent",
                    "offline",
                    "--dry-run",
                ],
                2,
            ),
            (vec!["dashboard", "--port", "0"], 2),
            (vec!["exec", "--admit", "--", "true"], 125),
            // `quantumwala.executor` is the default of `--executor`.
            (vec!["exec", "--", "true"], 125),
        ] {
            let out = run_bounded(p.qw(&args));
            assert_eq!(code(&out), want, "{settings} {args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&named) && err.contains(&path.display().to_string()),
                "{args:?}: {err}"
            );
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), settings);
        // Commands that do not read qw's settings still work.
        for args in [
            vec!["spec-list"],
            vec!["exec", "--executor", "local", "--", "true"],
        ] {
            let out = p.run(&args);
            assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        }
    }
}

#[test]
fn unknown_keys_are_warned_about_once_and_kept() {
    let p = TestProject::new();
    let text = r#"{"quantumwala": {"keep_run": 5}, "resource_limits": {"max_lod": 1}}"#;
    let path = p.write(SETTINGS, text);
    let out = p.run(&["resources"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    for key in ["quantumwala.keep_run", "resource_limits.max_lod"] {
        assert_eq!(err.matches(&format!("`{key}`")).count(), 1, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn settings_feed_defaults_and_flags_win() {
    let p = TestProject::new();
    p.write(
        SETTINGS,
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000,
            "max_concurrent": 3, "acquire_timeout_s": 7.5}}"#,
    );
    let out = p.run(&["--json", "resources"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let j: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["limits"]["max_concurrent"], 3);
    assert_eq!(j["limits"]["acquire_timeout_s"], 7.5);
    assert_eq!(j["limits_source"]["max_concurrent"], "settings");
    assert_eq!(j["limits_source"]["max_memory_pressure"], "default");

    let dry = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "workflow-auto",
            "demo",
            "desc",
            "--agent",
            "offline",
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        let out = p.run(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        stdout(&out)
    };
    let from_settings = dry(&[]);
    assert!(
        from_settings.contains("3 task(s) at once"),
        "{from_settings}"
    );
    let from_flag = dry(&["--parallel", "5"]);
    assert!(from_flag.contains("5 task(s) at once"), "{from_flag}");
}
