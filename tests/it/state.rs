//! Unified state, `state-backup` and `workflow-reset` (CONTRACT §3, §5): real `qw`
//! processes racing, killed mid-write, fed corrupt files and unwritable directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quantumwala::project::Project;
use quantumwala::state::{Phase, StateStore, TaskStatus, UnifiedState};
use serde_json::Value;

use crate::support::*;

const PY_FIXTURE: &str = include_str!("../fixtures/python_unified_state.json");
/// The same file after `json.dump(state, f, indent=2)` of a state holding `nan`, `inf`,
/// `-inf` and integers beyond 64 bits, in typed fields, unknown keys and nested arrays.
const PY_NAN_FIXTURE: &str = include_str!("../fixtures/python_unified_state_nan.json");

/// A project whose state is the original Python system's file.
fn python_project() -> TestProject {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", PY_FIXTURE);
    p
}

fn state_path(p: &TestProject) -> PathBuf {
    p.claude().join("unified_state.json")
}

fn state_json(p: &TestProject) -> Value {
    serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap()
}

fn total_executed(p: &TestProject) -> u64 {
    state_json(p)["commands"]["total_executed"]
        .as_u64()
        .unwrap()
}

/// Every file under `dir` with its bytes (directories as `None`), for "nothing changed".
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                out.insert(path.clone(), None);
                stack.push(path);
            } else {
                out.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn backups(p: &TestProject) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p.claude().join("backups/state"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn temp_files(p: &TestProject) -> Vec<String> {
    std::fs::read_dir(p.claude())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

/// Issue test 1: 8 processes × 25 `qw exec -- true` → exactly 200 more, and a reader
/// looping meanwhile never sees an invalid file.
#[test]
fn state_parallel_execs_lose_no_update_and_readers_never_see_partial_files() {
    let p = Arc::new(python_project());
    let start = total_executed(&p);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (p, stop) = (Arc::clone(&p), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let text = std::fs::read_to_string(state_path(&p)).unwrap();
                let v: Result<Value, _> = serde_json::from_str(&text);
                assert!(v.is_ok(), "reader saw an invalid state file: {text:?}");
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let o = p.run(&["exec", "--", "true"]);
                    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads > 10, "the reader ran ({reads} reads)");
    let v = state_json(&p);
    assert_eq!(total_executed(&p), start + 200);
    assert_eq!(
        v["commands"]["recent_commands"].as_array().unwrap().len(),
        20
    );
    assert_eq!(v["commands"]["recent_commands"][19]["command"], "true");
    assert_eq!(
        v["custom_extension"]["kept"],
        "unknown keys survive a rewrite"
    );
    assert!(temp_files(&p).is_empty(), "{:?}", temp_files(&p));
}

/// A state big enough that writing it takes a while, so kills land mid-write.
fn big_state(tasks: usize) -> String {
    let mut s: Value = serde_json::from_str(PY_FIXTURE).unwrap();
    let t = s["specifications"]["user-auth"]["tasks"]
        .as_object_mut()
        .unwrap();
    for i in 0..tasks {
        t.insert(
            format!("{i}.1"),
            serde_json::json!({
                "id": format!("{i}.1"), "spec_name": "user-auth", "status": "pending",
                "agent": "developer", "description": format!("generated task {i} with some text"),
                "started_at": null, "completed_at": null, "error": null, "duration_seconds": null
            }),
        );
    }
    serde_json::to_string_pretty(&s).unwrap()
}

/// Issue test 2: a writer SIGKILLed at random points 50 times → the file is always the old
/// or the new version, and a later run is not tripped by leftovers.
#[test]
fn state_writer_killed_at_random_points_leaves_old_or_new_version() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", &big_state(2000));
    let marker = marker();
    let _guard = MarkerGuard(marker.clone());
    let run = || {
        let mut c = p.qw(&["exec", "--no-sweep", "--", "true"]);
        c.env("QW_TEST_MARKER", &marker);
        c
    };
    // Calibrate: how long one whole recorded run takes here.
    let t0 = Instant::now();
    assert!(run().status().unwrap().success());
    let whole = t0.elapsed().max(Duration::from_millis(5));
    let mut seed = u64::from(std::process::id())
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos(),
        );
    eprintln!("seed {seed}, one run {whole:?}");
    let (mut old, mut new, mut mid_write) = (0, 0, 0);
    let state_len = || std::fs::metadata(state_path(&p)).map(|m| m.len()).ok();
    for i in 0..50 {
        let before = total_executed(&p);
        let before_len = state_len();
        let temps_before = temp_files(&p);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let frac = f64::from(u32::try_from(seed % 1000).unwrap()) / 1000.0;
        let mut child = run().spawn().unwrap();
        if i % 2 == 0 {
            // Anywhere in the run.
            std::thread::sleep(whole.mul_f64(frac * 1.2));
        } else {
            // Just after the write starts: a temp file appears (or, for a writer that
            // is not atomic, the state file changes size in place).
            let deadline = Instant::now() + whole * 20;
            while Instant::now() < deadline
                && temp_files(&p) == temps_before
                && state_len() == before_len
                && child.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_micros(seed % 1000));
        }
        let _ = child.kill();
        let _ = child.wait();
        if temp_files(&p).iter().any(|t| !temps_before.contains(t)) {
            mid_write += 1;
        }
        let text = std::fs::read_to_string(state_path(&p)).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("kill {i} left a partial file: {e}"));
        let after = v["commands"]["total_executed"].as_u64().unwrap();
        assert!(
            after == before || after == before + 1,
            "kill {i}: {before} → {after}"
        );
        assert_eq!(
            v["custom_extension"]["kept"],
            "unknown keys survive a rewrite"
        );
        if after == before {
            old += 1;
        } else {
            new += 1;
        }
    }
    eprintln!(
        "old version {old} times, new version {new} times, killed mid-write {mid_write} times"
    );
    assert!(
        mid_write > 0,
        "some kills landed while a temp file was being written"
    );
    let before = total_executed(&p);
    let o = run().output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert_eq!(total_executed(&p), before + 1);
    assert!(
        temp_files(&p).is_empty(),
        "stale temp files: {:?}",
        temp_files(&p)
    );
    assert!(backups(&p).is_empty(), "nothing was ever quarantined");
}

/// Issue test 3: corrupt files are quarantined, the newest valid backup is restored, and
/// the warning names both files.
#[test]
fn state_corrupt_file_is_quarantined_and_newest_backup_restored() {
    let p = python_project();
    let o = p.run(&["state-backup", "older"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(20));
    assert!(p.run(&["exec", "--", "true"]).status.success());
    let o = p.run(&["state-backup", "good"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let good: Value = state_json(&p);

    let cases: [(&str, &str); 3] = [
        ("truncated", &PY_FIXTURE[..PY_FIXTURE.len() / 2]),
        (
            "wrong shape",
            r#"{"specifications": [1, 2, 3], "commands": "many"}"#,
        ),
        ("empty", ""),
    ];
    for (what, bad) in cases {
        p.write(".claude/unified_state.json", bad);
        let o = p.run(&["exec", "--", "true"]);
        assert_eq!(o.status.code(), Some(0), "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("good.json"),
            "{what}: warning names the backup: {err}"
        );
        let quarantined = backups(&p)
            .into_iter()
            .filter(|n| n.starts_with("corrupted_"))
            .find(|n| {
                std::fs::read_to_string(p.claude().join("backups/state").join(n)).unwrap() == bad
            })
            .unwrap_or_else(|| panic!("{what}: bad bytes kept in a corrupted_*.json"));
        assert!(
            err.contains(&quarantined),
            "{what}: warning names {quarantined}: {err}"
        );
        let v = state_json(&p);
        assert_eq!(
            v["commands"]["total_executed"].as_u64().unwrap(),
            good["commands"]["total_executed"].as_u64().unwrap() + 1,
            "{what}: restored `good`, then recorded this run"
        );
    }
    // Without any valid backup: a fresh state, and the warning says so.
    let q = TestProject::new();
    q.write(".claude/unified_state.json", "[1, 2");
    let o = q.run(&["exec", "--", "true"]);
    assert!(stderr(&o).contains("fresh state"), "{}", stderr(&o));
    assert_eq!(total_executed(&q), 1);
    assert_eq!(backups(&q).len(), 1);
}

/// Issue test 4: the original Python file loads, round-trips and keeps unknown keys.
#[test]
fn state_python_fixture_loads_round_trips_and_keeps_unknown_keys() {
    let p = python_project();
    let store = StateStore::new(&Project::at(p.path()));
    let first = store.load().unwrap();
    let spec = &first.specifications["user-auth"];
    assert_eq!(spec.current_phase, Phase::Implementation);
    assert_eq!(spec.tasks["1.1"].status, TaskStatus::InProgress);
    assert_eq!(
        spec.tasks["10"].error.as_deref(),
        Some("Timeout after 300s")
    );
    assert!(
        spec.tasks["10"]
            .started_at
            .as_ref()
            .unwrap()
            .as_datetime()
            .is_some()
    );
    assert_eq!(spec.completed_phases.len(), 3);
    assert_eq!(first.commands.total_executed, 12);
    assert_eq!(
        first.extra["custom_extension"]["kept"],
        "unknown keys survive a rewrite"
    );

    store.update(|_| ()).unwrap();
    let second = store.load().unwrap();
    let strip = |mut s: UnifiedState| {
        s.session.last_updated = None;
        s
    };
    assert_eq!(
        strip(first),
        strip(second),
        "a rewrite changes nothing but last_updated"
    );
    let v = state_json(&p);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(
        v["custom_extension"]["kept"],
        "unknown keys survive a rewrite"
    );
    assert_eq!(v["resources"]["system_stats"]["load_average"], 0.52);
    let started = v["specifications"]["user-auth"]["tasks"]["10"]["started_at"]
        .as_str()
        .unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "written as RFC 3339: {started}"
    );
    assert!(
        v["specifications"]["user-auth"]["tasks"]["10"]
            .get("outcome")
            .is_none()
    );
}

fn set_age(path: &Path, days: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// `qw state-backup list` makes a backup named `list` (a valid name), and says how the
/// actions are spelled; an ordinary name gets no such note.
#[test]
fn state_backup_named_like_an_action_says_the_actions_are_flags() {
    let p = python_project();
    for word in ["list", "Restore"] {
        let o = p.run(&["state-backup", word]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            p.claude()
                .join(format!("backups/state/{word}.json"))
                .is_file()
        );
        assert!(
            stderr(&o).contains(&format!(
                "qw: note: `{word}` was taken as the backup's name"
            )) && stderr(&o).contains("`qw state-backup --list`"),
            "{}",
            stderr(&o)
        );
    }
    let o = p.run(&["state-backup", "before-upgrade"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("note:"), "{}", stderr(&o));
}

/// Issue test 5: create, list, restore (backing up first), restore of a missing name, clean.
#[test]
fn state_backup_create_list_restore_clean() {
    let p = python_project();
    let o = p.run(&["--json", "state-backup", "first"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let first = PathBuf::from(last_json(&o)["backup"].as_str().unwrap());
    assert_eq!(first, p.claude().join("backups/state/first.json"));
    assert_eq!(std::fs::read_to_string(&first).unwrap(), PY_FIXTURE);
    let o = p.run(&["state-backup", "first"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an existing name is not overwritten"
    );

    assert!(p.run(&["exec", "--", "true"]).status.success());
    let o = p.run(&["state-backup"]);
    assert_eq!(o.status.code(), Some(0));
    let names = backups(&p);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("state_backup_2") && n.ends_with(".json")),
        "{names:?}"
    );

    let o = p.run(&["--json", "state-backup", "--list"]);
    let list = last_json(&o);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for b in list {
        assert!(b["valid"].as_bool().unwrap());
        assert_eq!(b["summary"], "user-auth: implementation (1 spec)");
        assert!(b["size"].as_u64().unwrap() > 1000);
    }
    let o = p.run(&["state-backup", "--list"]);
    let table = stdout(&o);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("first") && table.contains("implementation"),
        "{table}"
    );

    // Missing name → exit 2, state untouched.
    let before = std::fs::read(state_path(&p)).unwrap();
    let o = p.run(&["state-backup", "--restore", "no-such-backup"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no-such-backup"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--list"), "hint: {}", stderr(&o));
    assert_eq!(std::fs::read(state_path(&p)).unwrap(), before);
    assert_eq!(
        backups(&p).len(),
        2,
        "no pre-restore backup for a failed restore"
    );

    // Restore: the current state is saved first, then replaced.
    let o = p.run(&["--json", "state-backup", "--restore", "first.json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = last_json(&o);
    let saved = PathBuf::from(r["previous_saved_to"].as_str().unwrap());
    assert_eq!(std::fs::read(&saved).unwrap(), before);
    assert_eq!(p.read(".claude/unified_state.json"), PY_FIXTURE);

    // Clean: everything is old; only the newest survives.
    let names = backups(&p);
    assert_eq!(names.len(), 3);
    for (i, n) in names.iter().enumerate() {
        set_age(&p.claude().join("backups/state").join(n), 10 + i as u64);
    }
    let newest = names[0].clone();
    let o = p.run(&["state-backup", "--clean", "--days", "30"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(backups(&p).len(), 3, "none older than 30 days");
    let o = p.run(&["--json", "state-backup", "--clean", "--days", "5"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["removed"].as_array().unwrap().len(), 2);
    assert_eq!(backups(&p), vec![newest]);
    let o = p.run(&["state-backup", "--clean", "--days", "0"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(backups(&p).len(), 1, "the newest is never removed");
}

fn spec_files(p: &TestProject) {
    for (f, body) in [
        ("requirements.md", "# Requirements\n"),
        ("design.md", "# Design\n"),
        (
            "tasks.md",
            "- [x] 1. Create user model\n- [ ] 1.1. Hash\n- [ ] 10. E2E\n",
        ),
        ("report.md", "# Report\n"),
        ("validation_report.md", "# Validation\n"),
        ("notes.md", "user notes\n"),
        ("assets/diagram.txt", "boxes\n"),
    ] {
        p.write(&format!(".claude/specs/user-auth/{f}"), body);
    }
}

/// Issue test 6: soft and hard reset on a spec with completed, failed and in-progress tasks.
#[test]
fn state_workflow_reset_soft_then_hard() {
    let p = python_project();
    spec_files(&p);
    let spec_dir = p.claude().join("specs/user-auth");
    let files_before = snapshot(&spec_dir);

    let o = p.run(&["--json", "workflow-reset", "user-auth"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = last_json(&o);
    assert_eq!(r["mode"], "soft");
    assert_eq!(r["changes"]["tasks"], serde_json::json!(["1.1", "10"]));
    let backup = PathBuf::from(r["state_backup"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(&backup).unwrap(),
        PY_FIXTURE,
        "backed up first"
    );
    let v = state_json(&p);
    let spec = &v["specifications"]["user-auth"];
    assert_eq!(spec["tasks"]["1"]["status"], "completed");
    assert_eq!(spec["tasks"]["1.1"]["status"], "pending");
    assert_eq!(spec["tasks"]["10"]["status"], "pending");
    assert_eq!(spec["tasks"]["10"]["error"], Value::Null);
    assert_eq!(
        spec["current_phase"], "implementation",
        "after task_generation"
    );
    assert_eq!(
        v["errors"].as_array().unwrap().len(),
        0,
        "the spec's error is cleared"
    );
    assert_eq!(v["agents"]["active_tasks"], serde_json::json!([]));
    assert_eq!(
        snapshot(&spec_dir),
        files_before,
        "soft reset touches no file"
    );

    // Hard reset refuses without a terminal or --yes, and changes nothing.
    let state_before = std::fs::read(state_path(&p)).unwrap();
    let o = p.run(&["workflow-reset", "user-auth", "--hard"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert_eq!(std::fs::read(state_path(&p)).unwrap(), state_before);
    assert_eq!(snapshot(&spec_dir), files_before);

    let o = p.run(&["--json", "workflow-reset", "user-auth", "--hard", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = last_json(&o);
    let copy = PathBuf::from(r["workflow_backup"].as_str().unwrap());
    assert!(copy.starts_with(p.claude().join("backups/workflows")));
    assert!(
        copy.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("user-auth_")
    );
    let copied: BTreeMap<_, _> = snapshot(&copy)
        .into_iter()
        .map(|(k, v)| (k.strip_prefix(&copy).unwrap().to_path_buf(), v))
        .collect();
    let original: BTreeMap<_, _> = files_before
        .into_iter()
        .map(|(k, v)| (k.strip_prefix(&spec_dir).unwrap().to_path_buf(), v))
        .collect();
    assert_eq!(copied, original, "a full copy of the folder");
    let mut left: Vec<String> = std::fs::read_dir(&spec_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["assets", "notes.md", "requirements.md"]);
    assert_eq!(r["removed_files"].as_array().unwrap().len(), 4);
    assert_eq!(
        std::fs::read(PathBuf::from(r["state_backup"].as_str().unwrap())).unwrap(),
        state_before
    );
    let v = state_json(&p);
    let spec = &v["specifications"]["user-auth"];
    assert_eq!(spec["current_phase"], "design_creation");
    assert_eq!(spec["tasks"], serde_json::json!({}));
    let phases: Vec<&str> = spec["completed_phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, vec!["requirements_generation"]);
    assert_eq!(
        v["custom_extension"]["kept"],
        "unknown keys survive a rewrite"
    );

    let o = p.run(&["workflow-reset", "no-such-spec"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("spec-list"), "{}", stderr(&o));
}

/// Issue test 7: traversal names for specs and backups exit 2 and touch nothing anywhere.
#[test]
fn state_traversal_names_exit_2_and_touch_nothing() {
    let outer = tempfile::tempdir().unwrap();
    let p = TestProject {
        dir: tempfile::tempdir_in(outer.path()).unwrap(),
    };
    std::fs::create_dir_all(p.claude()).unwrap();
    p.write(".claude/unified_state.json", PY_FIXTURE);
    spec_files(&p);
    p.write(".claude/backups/state/ok.json", PY_FIXTURE);
    std::fs::create_dir_all(outer.path().join("x")).unwrap();
    std::fs::write(outer.path().join("x.json"), PY_FIXTURE).unwrap();
    let before = snapshot(outer.path());
    let passwd = std::fs::read("/etc/passwd").ok();
    for name in [
        "../x",
        "a/b",
        "/etc/passwd",
        "",
        "..",
        "../../x",
        ".",
        "x/../../y",
    ] {
        let with_ext = format!("{name}.json");
        let runs: [Vec<&str>; 6] = [
            vec!["workflow-reset", name],
            vec!["workflow-reset", name, "--hard", "--yes"],
            vec!["state-backup", name],
            vec!["state-backup", "--restore", name],
            vec!["--json", "state-backup", "--restore", name],
            vec!["state-backup", "--restore", &with_ext],
        ];
        for args in runs {
            let o = p.run(&args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("invalid"), "{args:?}: {}", stderr(&o));
        }
    }
    assert_eq!(snapshot(outer.path()), before, "nothing created or removed");
    assert_eq!(std::fs::read("/etc/passwd").ok(), passwd);
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Issue test 8a: a read-only `.claude/` → clear errors, previous state intact.
#[test]
fn state_read_only_claude_dir_fails_clearly_and_keeps_state() {
    use std::os::unix::fs::PermissionsExt;
    let p = python_project();
    spec_files(&p);
    // A lock file anyone may open, so the failure happens at the write itself.
    p.write(".claude/unified_state.json.lock", "");
    let perm = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    perm(p.path(), 0o755);
    perm(&p.claude().join("unified_state.json.lock"), 0o666);
    perm(&p.claude(), 0o555);
    // root ignores permissions: run qw as `nobody` then.
    let root = is_root();
    let run = |args: &[&str]| {
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(qw_bin());
            c
        } else {
            std::process::Command::new(qw_bin())
        };
        c.arg("-C").arg(p.path()).args(args);
        c.env("QW_RUNTIME_DIR", p.path().join(".qw-runtime"));
        c.output().unwrap()
    };
    let before = snapshot(p.path());

    let o = run(&["exec", "--no-sweep", "--", "true"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the run itself succeeds: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(err.contains("not recorded"), "{err}");
    assert!(err.contains(".claude"), "names the directory: {err}");

    let o = run(&["state-backup", "snap"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(".claude"), "{}", stderr(&o));
    assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));

    let o = run(&["workflow-reset", "user-auth"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));

    perm(&p.claude(), 0o755);
    // The lock file records its last holder (pid, command); only its contents may change.
    let lock = p.claude().join("unified_state.json.lock");
    let (mut after, mut before) = (snapshot(p.path()), before);
    after.insert(lock.clone(), None);
    before.insert(lock, None);
    assert_eq!(after, before, "previous state and files intact");
}

/// Issue test 8b: a full disk (writes fail with EFBIG under `ulimit -f`) → clear error,
/// previous state intact, no temp file left behind.
#[test]
fn state_failing_write_keeps_previous_state() {
    let p = python_project();
    spec_files(&p);
    assert!(
        PY_FIXTURE.len() > 2048,
        "the state must exceed the write limit"
    );
    let before = snapshot(p.path());
    let run = |args: &str| {
        let script = format!("trap '' XFSZ; ulimit -f 2; exec \"$0\" -C \"$1\" {args}");
        std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(qw_bin())
            .arg(p.path())
            .env("QW_RUNTIME_DIR", p.path().join(".qw-runtime"))
            .output()
            .unwrap()
    };
    let o = run("exec --no-sweep -- true");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("not recorded"), "{}", stderr(&o));
    assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));

    let o = run("state-backup snap");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("snap.json") || stderr(&o).contains("backups"),
        "{}",
        stderr(&o)
    );

    let o = run("workflow-reset user-auth --hard --yes");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // What a failed hard reset may leave is a partial folder copy in backups (the state
    // write never happened, no spec file was removed); the state itself is untouched.
    let after = snapshot(p.path());
    let state = p.claude().join("unified_state.json");
    assert_eq!(after[&state], before[&state]);
    for (path, bytes) in &before {
        assert_eq!(after.get(path), Some(bytes), "{} unchanged", path.display());
    }
    assert!(temp_files(&p).is_empty(), "{:?}", temp_files(&p));
    assert!(!p.claude().join("backups/state/snap.json").exists());
}

/// The JSON text without whitespace outside strings (none of the fixture's strings hold any
/// that matters here), for comparing fragments whatever the indentation.
fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Fragments of the Python fixture that must survive any rewrite, squeezed.
const PY_TOKENS: &[&str] = &[
    r#""duration_seconds":NaN,"#,
    r#""retry_backoff":-Infinity"#,
    r#""duration_seconds":-Infinity"#,
    r#""duration_seconds":Infinity"#,
    r#""progress_percentage":NaN"#,
    r#""total_duration":-Infinity"#,
    r#""average_duration":Infinity"#,
    r#""total_duration":NaN"#,
    r#""average_duration":NaN"#,
    r#""failures":12345678901234567890123"#,
    r#""total_tasks_executed":98765432109876543210"#,
    r#""samples":[1.5,NaN,[Infinity,-Infinity],-12345678901234567890123]"#,
    r#""ids":[18446744073709551616,-9223372036854775809]"#,
    r#""ratio":NaN"#,
    r#""limits":[Infinity,-Infinity,{"deep":[NaN,340282366920938463463374607431768211457]}]"#,
    r#""telemetry_id":340282366920938463463374607431768211457"#,
];

/// Issue 14 item 8: states the original wrote with `NaN`, `Infinity`, big integers, a BOM
/// or CRLF are read, kept on rewrite (`qw exec` record, backup and restore, status), and
/// never quarantined.
#[test]
fn python_nan_infinity_and_big_integers_survive_every_rewrite() {
    for (name, text) in [
        ("plain", PY_NAN_FIXTURE.to_owned()),
        ("bom", format!("\u{feff}{PY_NAN_FIXTURE}")),
        (
            "bom-crlf",
            format!("\u{feff}{}", PY_NAN_FIXTURE.replace('\n', "\r\n")),
        ),
    ] {
        let p = TestProject::new();
        p.write(".claude/unified_state.json", &text);
        let before = squeeze(&text);
        for t in PY_TOKENS {
            assert!(before.contains(t), "fixture lacks {t}");
        }
        assert!(before.contains(r#""total_executed":12345678901234567890123"#));

        let out = p.run(&["exec", "--", "true"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("warning"),
            "{name}: {}",
            stderr(&out)
        );
        let after = p.read(".claude/unified_state.json");
        let squeezed = squeeze(&after);
        for t in PY_TOKENS {
            assert!(squeezed.contains(t), "{name}: lost {t}:\n{after}");
        }
        // The count went on as Python's would: the big integer plus one.
        assert!(
            squeezed.contains(r#""total_executed":12345678901234567890124"#),
            "{name}: {after}"
        );
        assert!(squeezed.contains(r#""command":"true""#), "{name}");
        // A BOM is kept as it was (issue 14 item 8), never added.
        assert_eq!(
            after.starts_with('\u{feff}'),
            text.starts_with('\u{feff}'),
            "{name}: the BOM"
        );

        // `qw status --json` reads it too and prints the count exactly.
        let status = p.run(&["--json", "status"]);
        assert_eq!(status.status.code(), Some(0), "{name}: {}", stderr(&status));
        assert!(
            stdout(&status).contains("\"total_executed\":12345678901234567890124"),
            "{name}: {}",
            stdout(&status)
        );

        // Backup, another record, restore: the backup's bytes come back verbatim.
        p.write(".claude/unified_state.json", &text);
        let b = p.run(&["state-backup", "python"]);
        assert_eq!(b.status.code(), Some(0), "{name}: {}", stderr(&b));
        assert_eq!(p.run(&["exec", "--", "true"]).status.code(), Some(0));
        let list = p.run(&["--json", "state-backup", "--list"]);
        assert!(
            stdout(&list).contains("\"valid\":true"),
            "{}",
            stdout(&list)
        );
        let r = p.run(&["state-backup", "--restore", "python"]);
        assert_eq!(r.status.code(), Some(0), "{name}: {}", stderr(&r));
        assert_eq!(p.read(".claude/unified_state.json"), text, "{name}");
        assert!(
            backups(&p).iter().all(|b| !b.starts_with("corrupted_")),
            "{name}: quarantined: {:?}",
            backups(&p)
        );
        // And it is still usable after the restore.
        assert_eq!(p.run(&["exec", "--", "true"]).status.code(), Some(0));
        assert!(
            squeeze(&p.read(".claude/unified_state.json"))
                .contains(r#""total_executed":12345678901234567890124"#)
        );
        assert!(backups(&p).iter().all(|b| !b.starts_with("corrupted_")));
    }
}

/// Each special token alone, in a typed field and in an unknown key, through the library.
#[test]
fn python_tokens_one_by_one_in_typed_and_unknown_fields() {
    for (token, bom) in [
        "NaN",
        "Infinity",
        "-Infinity",
        "12345678901234567890123",
        "-12345678901234567890123",
        "1e400",
    ]
    .into_iter()
    .flat_map(|t| [(t, ""), (t, "\u{feff}")])
    {
        let p = TestProject::new();
        let text = format!(
            "{bom}{{\"specifications\": {{\"s\": {{\"tasks\": {{\"1\": {{\"id\": \"1\", \"duration_seconds\": {token}}}}}, \"progress_percentage\": {token}}}}}, \"agents\": {{\"performance\": {{\"dev\": {{\"average_duration\": {token}}}}}}}, \"unknown\": [{token}, {{\"k\": {token}}}]}}"
        );
        p.write(".claude/unified_state.json", &text);
        let store = StateStore::new(&Project::at(p.path()));
        store.update(|s| s.record_command("x", true)).unwrap();
        let after = squeeze(&p.read(".claude/unified_state.json"));
        // Typed floats keep NaN and the infinities as Python writes them (1e400 is +inf).
        let float = if token == "1e400" {
            "Infinity".to_owned()
        } else if token.contains("12345") {
            let f: f64 = token.parse().unwrap();
            serde_json::to_string(&f).unwrap()
        } else {
            token.to_owned()
        };
        assert!(
            after.contains(&format!("\"duration_seconds\":{float}")),
            "{token} {bom:?}: {after}"
        );
        assert!(
            after.contains(&format!("\"progress_percentage\":{float}")),
            "{token}: {after}"
        );
        assert!(
            after.contains(&format!("\"average_duration\":{float}")),
            "{token}: {after}"
        );
        // Unknown keys keep the very token.
        assert!(
            after.contains(&format!("\"unknown\":[{token},{{\"k\":{token}}}]")),
            "{token}: {after}"
        );
        assert!(backups(&p).is_empty(), "{token}: {:?}", backups(&p));
    }
}

/// The run folders of one task of `spec` (one per attempt).
fn task_runs(p: &TestProject, spec: &str, id: &str) -> usize {
    std::fs::read_dir(p.claude().join("runs"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains(&format!("-{spec}-task-{id}-"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// A soft reset of a completed spec has nothing to reset (it keeps completed tasks): it
/// refuses (exit 2) naming the way to run the spec again, and changes nothing — no
/// backup, same state; a later continue redoes nothing.
#[test]
fn state_soft_reset_of_a_completed_spec_refuses_and_changes_nothing() {
    let p = TestProject::new();
    let o = p.run(&[
        "workflow-auto",
        "done-spec",
        "Say hello",
        "--agent",
        "offline",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = p.read(".claude/unified_state.json");
    let runs = task_runs(&p, "done-spec", "1");
    assert_eq!(runs, 1);

    let o = p.run(&["workflow-reset", "done-spec"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("spec `done-spec` is completed")
            && err.contains("nothing to reset")
            && err.contains("qw workflow-reset done-spec --hard --yes"),
        "{err}"
    );
    assert_eq!(p.read(".claude/unified_state.json"), before);
    assert!(
        !p.claude().join("backups/state").exists()
            || std::fs::read_dir(p.claude().join("backups/state"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with("pre_reset_")),
        "a refused reset made a backup"
    );
    let o = p.run(&["workflow-continue", "done-spec", "--agent", "offline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        task_runs(&p, "done-spec", "1"),
        runs,
        "a completed task ran again"
    );
}

/// A soft reset of a half-done spec sets the failed task back to pending and keeps the
/// completed one: a later continue runs only the reset task.
#[test]
fn state_soft_reset_of_a_half_done_spec_reruns_only_what_it_reset() {
    let p = TestProject::new();
    let md = "- [ ] 1. Passes\n  - _Verify: `true`_\n- [ ] 2. Fails until fixed\n  - _Verify: `test -e fixed`_\n";
    for (doc, text) in [
        ("requirements.md", "# R\n"),
        ("design.md", "# D\n"),
        ("tasks.md", md),
    ] {
        p.write(&format!(".claude/specs/half/{doc}"), text);
    }
    let o = p.run(&["workflow-auto", "half", "Half done", "--agent", "offline"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let state: serde_json::Value =
        serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    assert_eq!(
        state["specifications"]["half"]["tasks"]["1"]["status"],
        "completed"
    );
    assert_eq!(
        state["specifications"]["half"]["tasks"]["2"]["status"],
        "failed"
    );

    let o = p.run(&["workflow-reset", "half"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 task(s) back to pending (2)"),
        "{}",
        stdout(&o)
    );
    let state: serde_json::Value =
        serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    assert_eq!(
        state["specifications"]["half"]["tasks"]["1"]["status"],
        "completed"
    );
    assert_eq!(
        state["specifications"]["half"]["tasks"]["2"]["status"],
        "pending"
    );

    p.write("fixed", "");
    let o = p.run(&["workflow-continue", "half", "--agent", "offline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        task_runs(&p, "half", "1"),
        1,
        "the completed task ran again"
    );
    assert_eq!(task_runs(&p, "half", "2"), 2);
    let state: serde_json::Value =
        serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    assert_eq!(
        state["specifications"]["half"]["tasks"]["2"]["status"],
        "completed"
    );
}

/// A restore says what it rolled back, in one warning line, for a read-only `status` as
/// for a writing `exec`: the backup's time, how much older it is than the corrupt file
/// (changes after it are lost), and — when the corrupt file is still JSON — the tasks
/// whose status went back and the specs the backup lacks. A corrupt file that is not
/// JSON is said to be so (nothing is guessed).
#[test]
fn a_restore_says_what_it_rolled_back() {
    let p = TestProject::new();
    let o = p.run(&["workflow-auto", "demo", "d", "--agent", "offline"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let state_path = p.claude().join("unified_state.json");
    let done: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    // The backup: tasks 2 and 3 still pending, written 10 minutes before the state.
    let mut older = done.clone();
    for id in ["2", "3"] {
        older["specifications"]["demo"]["tasks"][id]["status"] = "pending".into();
    }
    let backup = p.write(
        ".claude/backups/state/snap.json",
        &serde_json::to_string_pretty(&older).unwrap(),
    );
    let ten_min_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&backup)
        .unwrap()
        .set_modified(ten_min_ago)
        .unwrap();

    // Shape 1: JSON of the wrong shape (a later spec in it too), read by `status`.
    let mut bad = done.clone();
    bad["session"] = 5.into();
    bad["specifications"]["later"] = done["specifications"]["demo"].clone();
    std::fs::write(&state_path, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
    // Exactly ten minutes apart (the quarantine keeps the file's time).
    std::fs::File::options()
        .write(true)
        .open(&state_path)
        .unwrap()
        .set_modified(ten_min_ago + Duration::from_secs(600))
        .unwrap();
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("was corrupt")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    assert!(
        line.contains("snap.json") && line.contains("corrupted_"),
        "{line}"
    );
    assert!(line.contains("the backup is from "), "{line}");
    assert!(
        line.contains("10m 00s older than the corrupt file: changes made after it are lost"),
        "{line}"
    );
    assert!(
        line.contains("rolled back: demo/2 completed → pending, demo/3 completed → pending"),
        "{line}"
    );
    assert!(line.contains("spec `later` (not in the backup)"), "{line}");

    // Shape 2: bytes that are no JSON, found by a writing command.
    std::fs::write(&state_path, b"{\"specifications\": {").unwrap();
    let o = p.run(&["exec", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("was corrupt")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("the backup is from "), "{err}");
    assert!(
        lines[0].contains(
            "the corrupt file is not JSON, so what it held beyond the backup cannot be told"
        ),
        "{err}"
    );
    let quarantined: Vec<String> = backups(&p)
        .into_iter()
        .filter(|n| n.starts_with("corrupted_"))
        .collect();
    assert_eq!(
        quarantined.len(),
        2,
        "both corrupt files kept: {quarantined:?}"
    );
}
