//! What `qw` writes to the terminal: diagnostics as plain `qw: warning: …` lines (no
//! colour when stderr is not a terminal), and quiet exits when stdout is closed early.

use crate::support::*;

#[test]
fn output_state_warning_is_a_plain_qw_warning_line_naming_both_files() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", "{ this is not json");
    let o = p.run(&["state-backup", "after-repair"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let raw = o.stderr.clone();
    assert!(
        !raw.contains(&0x1b),
        "escape bytes on a piped stderr: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let err = stderr(&o);
    let warning = err
        .lines()
        .find(|l| l.starts_with("qw: warning: "))
        .unwrap_or_else(|| panic!("no `qw: warning:` line: {err:?}"));
    assert!(
        !err.contains(" WARN "),
        "tracing's own level format: {err:?}"
    );
    assert!(warning.contains(".claude/unified_state.json"), "{warning}");
    let quarantined: Vec<String> = std::fs::read_dir(p.claude().join("backups/state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("corrupted_"))
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(warning.contains(&quarantined[0]), "{warning}");

    // The listing sees both files.
    let o = p.run(&["state-backup", "--list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(list.contains("after-repair"), "{list}");
    assert!(
        list.contains(&quarantined[0].replace(".json", "")),
        "{list}"
    );
}
