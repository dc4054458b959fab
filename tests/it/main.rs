//! Integration tests: one binary (links once), one module per capability.

// Tests may panic on setup failures, use std::fs directly and print why they skip;
// `pub` in a test module is scaffolding shared between test files, not an API.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod admission;
mod agent;
mod ceiling;
mod checkshape;
mod claude_real;
mod claudeset;
mod cli;
mod consume;
mod coord10;
mod dashboard;
mod dedup;
mod devmode;
mod edges;
mod exec;
mod exec_stress;
mod fix5a;
mod fix5b;
mod fix6n;
mod fix7a;
mod fix7c;
mod gitcfg;
mod gitdir;
mod init;
mod inside;
mod keepwork;
mod locks;
mod logs;
mod mainrace;
mod mergeign;
mod output;
mod reconcile;
mod scale;
mod scenario;
mod settings;
mod slurm;
mod small;
mod spec;
mod special;
mod state;
mod status;
mod support;
mod tidy;
mod trace;
mod validate;
mod workflow;
mod worktree;
mod worktree_blame;
mod worktree_cherry;
mod worktree_cross;
mod worktree_cross4;
mod worktree_fix5o;
mod worktree_fix5t;
mod worktree_fix6m;
mod worktree_fix6s;
mod worktree_fix7b;
mod worktree_fix7d;
mod worktree_fix7e;
mod worktree_foreign;
mod worktree_mainwait;
mod worktree_moves;
mod worktree_nest4;
mod worktree_nested;
mod worktree_own4;
mod worktree_pendvouch;
mod worktree_quirks;
mod worktree_res5;
mod worktree_rev7;
mod worktree_safety;
mod worktree_stash;
mod worktree_target;
mod worktree_task;
mod worktree_tgt4;
