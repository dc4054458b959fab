//! Reflogs, whatever the ref backend.
//!
//! With the files backend a worktree's HEAD log is `<git dir>/logs/HEAD`, read directly
//! ([`super::tree::head_log`]): fast, and it still answers when HEAD names a branch that
//! was deleted. With the reftable backend (`git init --ref-format=reftable`) there are
//! no such files: the log is in the `reftable/` tables, and only git reads it
//! ([`head_log`]). git will not read the log of a HEAD that names a deleted branch, so
//! there the commits that only reflogs hold are looked for instead
//! ([`held_only_by_reflogs`]): nothing the user committed is left out of a hint for
//! want of a log file.

use std::ffi::OsStr;
use std::path::Path;

use super::tree::LogLine;
use super::{Repo, Result, git_command, git_output, spawn_output};

/// Does the git dir `git_dir` (a worktree's admin dir, or the common dir) keep its refs
/// in reftable tables (each worktree has its own `reftable/` there)?
pub(crate) fn is_reftable(git_dir: &Path) -> bool {
    git_dir.join("reftable").is_dir()
}

/// Each move of the HEAD of `git_dir`, oldest first, read through git (`git reflog`):
/// for the reftable backend. Empty when git cannot read it (HEAD names a deleted
/// branch, no log).
pub(crate) fn head_log(git_dir: &Path) -> Vec<LogLine> {
    let pre = [OsStr::new("--git-dir"), git_dir.as_os_str()];
    let cmd = git_command(
        git_dir,
        &pre,
        [
            "reflog",
            "show",
            "--date=unix",
            "--format=%H%x09%gd%x09%gs",
            "HEAD",
            "--",
        ],
        &[],
    );
    let Ok(out) = spawn_output(cmd, git_dir) else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let mut lines = parse(&String::from_utf8_lossy(&out.stdout));
    lines.reverse();
    // git does not print an entry's old value: taken as the previous entry's new one
    // (so a move from outside the worktree shows only as a newest entry that is not
    // the branch's tip, see `cross::moved_outside`).
    let mut prev = "0".repeat(40);
    for l in &mut lines {
        l.from = std::mem::replace(&mut prev, l.to.clone());
    }
    lines
}

/// `<sha>\t<ref>@{<unix time>}\t<message>` lines, as [`head_log`] asks git for them.
fn parse(text: &str) -> Vec<LogLine> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let to = parts.next()?;
            let at = parts.next()?;
            let message = parts.next().unwrap_or("");
            let time = at.rsplit_once("@{")?.1.strip_suffix('}')?.parse().ok()?;
            (to.len() >= 40 && to.bytes().all(|b| b.is_ascii_hexdigit())).then(|| LogLine {
                from: String::new(),
                to: to.to_owned(),
                time,
                message: message.to_owned(),
            })
        })
        .collect()
}

/// The commits some reflog names that hold `was`, are not `was`, and that no branch
/// (but qw's own), tag or remote-tracking branch holds, none in another's history: where a deleted
/// branch's work may be when no log of its own or of the main HEAD can be read (the
/// reftable backend with HEAD naming the deleted branch, logs expired or turned off).
/// Newest commit first; at most 20.
pub(crate) fn held_only_by_reflogs(repo: &Repo, was: &str) -> Result<Vec<String>> {
    let top = &repo.top;
    // The commits reflogs name, newest first.
    super::tree::defuse_common(&repo.common_dir);
    let out = git_output(top, ["rev-list", "--no-walk", "--reflog"], &[])?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let named = String::from_utf8_lossy(&out.stdout).into_owned();
    let named: Vec<&str> = named.split_whitespace().take(500).collect();
    if named.is_empty() {
        return Ok(Vec::new());
    }
    // Of those, the ones no ref holds and `was` does not hold.
    let not_was = format!("^{was}");
    let mut args = vec!["rev-list", "--ignore-missing"];
    args.extend(named.iter().copied());
    // qw's own branches do not count: a task's `<id>@<sha>` may hold a user's commit
    // its loose-commit scan took for the task's (see `lost.rs`).
    args.extend([
        not_was.as_str(),
        "--not",
        "--exclude=qw/*",
        "--branches",
        "--tags",
        "--remotes",
    ]);
    let out = git_output(top, &args, &[])?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let loose = String::from_utf8_lossy(&out.stdout).into_owned();
    let loose: std::collections::BTreeSet<&str> = loose.split_whitespace().collect();
    let mut found: Vec<String> = Vec::new();
    for c in named {
        if found.len() >= 20 {
            break;
        }
        if c == was || !loose.contains(c) || found.iter().any(|f| f == c) {
            continue;
        }
        if repo.is_ancestor(was, c)? {
            found.push(c.to_owned());
        }
    }
    // Only the tips: a commit in another's history is kept with it.
    let mut tips = Vec::new();
    for c in &found {
        let mut under = false;
        for o in &found {
            if o != c && repo.is_ancestor(c, o)? {
                under = true;
                break;
            }
        }
        if !under {
            tips.push(c.clone());
        }
    }
    Ok(tips)
}

/// The branch's own reflog, newest first (`git reflog`, whatever the ref backend):
/// `(commit, message)`; empty when there is none.
pub(crate) fn branch_log(repo: &Repo, branch: &str) -> Vec<(String, String)> {
    let Ok(out) = git_output(
        &repo.top,
        [
            "reflog",
            "show",
            "--format=%H%x09%gs",
            &format!("refs/heads/{branch}"),
            "--",
        ],
        &[],
    ) else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (c, m) = l.split_once('\t').unwrap_or((l, ""));
            (c.len() >= 40).then(|| (c.to_owned(), m.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_reflog_lines_are_read_with_their_time_and_message() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let text = format!(
            "{a}\tHEAD@{{1796255596}}\tcommit: w\n{b}\tHEAD@{{17}}\t\nshort\tHEAD@{{1}}\tx\n{a}\tHEAD@{{soon}}\tx\n"
        );
        let lines = parse(&text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].to, a);
        assert_eq!(lines[0].time, 1_796_255_596);
        assert_eq!(lines[0].message, "commit: w");
        assert_eq!(lines[1].time, 17);
        assert_eq!(lines[1].message, "");
    }
}
