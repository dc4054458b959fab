//! `qw spec-create` and `qw spec-list`.

use crate::support::*;

#[test]
fn spec_create_refuses_unsafe_names_and_touches_nothing() {
    let p = TestProject::bare();
    for bad in ["../x", "a/b", "/etc/passwd", "", "..", "User_Auth"] {
        let o = p.run(&["spec-create", bad, "Something"]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("invalid spec name"),
            "{bad:?}: {}",
            stderr(&o)
        );
        let entries = std::fs::read_dir(p.path()).unwrap().count();
        assert_eq!(entries, 0, "{bad:?} created something");
    }
    assert!(!p.path().parent().unwrap().join("x").exists());
}

#[test]
fn spec_create_makes_the_folder_once() {
    let p = TestProject::new();
    let o = p.run(&["spec-create", "user-auth", "Log in with email"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("created spec `user-auth`"),
        "{}",
        stdout(&o)
    );
    assert!(p.claude().join("specs/user-auth").is_dir());
    let o = p.run(&["spec-create", "user-auth", "Again"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("`user-auth` already exists") && err.contains("hint:"),
        "{err}"
    );
    let o = p.run(&["spec-create", "other", "  "]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("description"), "{}", stderr(&o));
    assert!(!p.claude().join("specs/other").exists());
    let o = p.run(&["--json", "spec-create", "billing", "Invoices"]);
    assert_eq!(o.status.code(), Some(0));
    let v = last_json(&o);
    assert_eq!(v["name"], "billing");
    assert_eq!(v["description"], "Invoices");
}

#[test]
fn spec_list_shows_documents_and_task_progress() {
    let p = TestProject::new();
    let o = p.run(&["spec-list"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("no specs"), "{}", stdout(&o));

    for name in ["user-auth", "billing", "broken"] {
        assert_eq!(p.run(&["spec-create", name, "d"]).status.code(), Some(0));
    }
    p.write(".claude/specs/user-auth/requirements.md", "# R\n");
    p.write(".claude/specs/user-auth/design.md", "# D\n");
    p.write(
        ".claude/specs/user-auth/tasks.md",
        "- [ ] 1. Parent\n  - [x] 1.1 A\n  - [ ] 1.2 B\n- [x] 10. Ten\n",
    );
    p.write(
        ".claude/specs/broken/tasks.md",
        "- [ ] 1. A\n  - _Depends: 2_\n- [ ] 2. B\n  - _Depends: 1_\n",
    );
    let o = p.run(&["spec-list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<_> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[1].starts_with("billing") && lines[1].trim_end().ends_with('-'),
        "{out}"
    );
    assert!(
        lines[2].starts_with("broken") && lines[2].contains("invalid"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("user-auth")
            && lines[3].contains("2/3")
            && lines[3].contains("requirements design tasks"),
        "{out}"
    );
    assert!(stderr(&o).contains("cycle"), "{}", stderr(&o));

    let v = last_json(&p.run(&["--json", "spec-list"]));
    let specs = v["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 3);
    let ua = &specs[2];
    assert_eq!(ua["name"], "user-auth");
    assert_eq!(ua["tasks_done"], 2);
    assert_eq!(ua["tasks_total"], 3);
    assert_eq!(ua["documents"]["design"], true);
    assert_eq!(ua["documents"]["report"], false);
    assert!(specs[1]["tasks_error"].as_str().unwrap().contains("line"));
}
