//! `qw exec`: real process trees, adversarial children, exit codes.

use crate::support::*;

#[test]
fn exit_codes_follow_gnu_timeout() {
    let p = TestProject::bare();
    let code = |args: &[&str]| p.run(args).status.code();
    assert_eq!(code(&["exec", "--", "true"]), Some(0));
    assert_eq!(code(&["exec", "--", "sh", "-c", "exit 3"]), Some(3));
    assert_eq!(
        code(&["exec", "--timeout", "0.2", "--", "sleep", "5"]),
        Some(124)
    );
    assert_eq!(code(&["exec", "--", "/"]), Some(126));
    assert_eq!(code(&["exec", "--", "qw-no-such-program-xyz"]), Some(127));
    assert_eq!(code(&["exec", "--", "sh", "-c", "kill -9 $$"]), Some(137));
}
