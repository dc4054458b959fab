//! Command validation: one validator for suggestions (`qw consume`), `_Verify:_` commands
//! and `--agent-cmd` templates.
