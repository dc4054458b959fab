//! The tenth session's coordinator fixes of the reviews rev8a/rev8b.

use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::Repo;

/// rev8a F4: a task title over the kernel's 128 KiB per argument went whole into qw's
/// commit and merge messages: every save and merge of the task failed "Argument list too
/// long", on every continue. The title is cut in the messages; the task is merged.
#[test]
fn coord10_a_huge_task_title_is_cut_in_qws_git_messages() {
    let title = "x".repeat(140_000);
    let r = Repo::new(&format!("- [ ] 1. {title}\n- [ ] 2. Task 2\n"));
    r.action("1", "echo one > f1.txt\n");
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{}", &text[..text.len().min(4000)]);
    assert!(has(&r, "refs/heads/main", "f1.txt"));
    let subject = r.git(&["log", "-1", "--format=%s", "--grep=merge task 1", "main"]);
    assert!(subject.len() < 1000, "{}", subject.len());
    assert!(subject.contains('…'), "{subject}");
    r.assert_no_process();
}
