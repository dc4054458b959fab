//! The user's Claude Code files a task worktree gets as read-only copies (rev6b G19).
//!
//! A task worktree is a checkout: it has what git tracks, nothing the user keeps
//! ignored or untracked. Claude Code reads its project settings (permission allow and
//! deny lists, env, hooks, model), `CLAUDE.local.md`, subagents, slash commands and
//! `.mcp.json` from the working directory; without them an agent in a worktree runs
//! unlike one in the main checkout (refused tools the user allowed). So each file of
//! [`COPIED`] that the main checkout has, that git does not track and that git ignores
//! in the worktree is copied into it when it is made: a regular file, mode 0444 (0555
//! when the user's is executable: a hook script), its bytes as they are. A copy, never a
//! link: what the agent does to it never reaches the user's file (fix7e's links did:
//! rev7 R3/R7). One git neither tracks nor ignores is not copied (named in a note): the
//! agent's own `git add -A` and commit would put it into the branch's history.
//!
//! The copies are never the task's work: the save puts their paths back as the task's
//! base has them (so neither a `git add -A` of qw's nor a commit of the agent's brings
//! one into the result), an ignored copy never keeps a worktree (nor does an untracked
//! one count as uncommitted work), and one the agent changed or deleted goes with the
//! worktree, said in one line. Nothing is ever copied back.
//!
//! What is copied is recorded in the worktree's git dir ([`RECORD`]: each path relative
//! to the repository top and the hash of the bytes copied), so a later qw (a leftover
//! worktree) knows them too.
//!
//! Must not: copy qw's own files (`.claude/runs`, logs, backups, the state), the spec
//! folder (a link to the main checkout's: `Worktrees::link_spec`), anything git tracks,
//! anything through a link that leaves the project, or write anywhere but below the
//! worktree through no link.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::Repo;

/// What is copied, relative to the project root: a file, or (ending in `/`) a folder's
/// files, down to [`MAX_DEPTH`] levels.
pub(crate) const COPIED: &[&str] = &[
    "CLAUDE.md",
    "CLAUDE.local.md",
    ".mcp.json",
    ".claude/CLAUDE.md",
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".claude/agents/",
    ".claude/commands/",
    ".claude/hooks/",
    ".claude/skills/",
    ".claude/output-styles/",
    ".claude/steering/",
];
/// At most this many files are copied into one worktree.
const MAX_FILES: usize = 500;
/// A file bigger than this is not copied (named in a note).
const MAX_FILE_BYTES: usize = 1 << 20;
/// At most this many bytes in all.
const MAX_TOTAL_BYTES: usize = 16 << 20;
/// How deep a copied folder is walked.
const MAX_DEPTH: usize = 8;
/// The record of the copies, in the worktree's git dir.
pub(crate) const RECORD: &str = "qw-copies";

/// One copy: its path relative to the repository top and the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copy {
    pub(crate) path: String,
    hash: String,
}

/// FNV-1a, 64 bit: enough to notice that the agent changed a copy.
fn hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The copies recorded for the worktree whose git dir is `admin` (none when there is no
/// record or it is not qw's).
pub(crate) fn recorded(admin: &Path) -> Vec<Copy> {
    let Ok(bytes) = crate::fs::read_regular_whole(&admin.join(RECORD), 1 << 20) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (hash, path) = rec.split_once(' ')?;
            (!path.is_empty() && hash.len() == 16).then(|| Copy {
                path: path.to_owned(),
                hash: hash.to_owned(),
            })
        })
        .collect()
}

fn write_record(admin: &Path, copies: &[Copy]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for c in copies {
        out.extend_from_slice(format!("{} {}", c.hash, c.path).as_bytes());
        out.push(0);
    }
    crate::fs::write_durable(&admin.join(RECORD), &out)
}

/// The copies' paths as literal pathspecs from the top (`:(top,literal)<path>`).
pub(crate) fn pathspecs(admin: &Path) -> Vec<String> {
    recorded(admin)
        .into_iter()
        .map(|c| format!(":(top,literal){}", c.path))
        .collect()
}

/// The copies' paths as anchored ignore patterns (`/<path>`, glob characters escaped):
/// what [`super::tree::ignored_outside_project`] leaves out, so a copy git ignores only
/// by `info/exclude` or `core.excludesFile` never keeps the worktree.
pub(crate) fn ignore_patterns(admin: &Path) -> Vec<String> {
    recorded(admin)
        .into_iter()
        .map(|c| {
            let mut p = String::from("/");
            for ch in c.path.chars() {
                if matches!(ch, '*' | '?' | '[' | '\\' | '!' | '#' | ' ') {
                    p.push('\\');
                }
                p.push(ch);
            }
            p
        })
        .collect()
}

/// Is `path` (relative to the repository top) one of the copies?
pub(crate) fn is_copy(copies: &[Copy], path: &str) -> bool {
    copies.iter().any(|c| c.path == path)
}

/// The one line telling that the agent changed or deleted copies in the worktree at
/// `top` (they go with it; the user's files are as they were); `None` when it did not.
pub(crate) fn changed_line(top: &Path, admin: &Path) -> Option<String> {
    let changed: Vec<String> = recorded(admin)
        .into_iter()
        .filter(|c| {
            let at = top.join(&c.path);
            let same = std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_file())
                && crate::fs::read_regular_whole(&at, MAX_FILE_BYTES)
                    .is_ok_and(|b| hash(&b) == c.hash);
            !same
        })
        .map(|c| format!("`{}`", c.path))
        .collect();
    if changed.is_empty() {
        return None;
    }
    let mut named: Vec<String> = changed.iter().take(5).cloned().collect();
    if changed.len() > 5 {
        named.push(format!("{} more", changed.len() - 5));
    }
    Some(format!(
        "the agent changed or deleted its read-only copies of your Claude Code files in `{}` ({}): discarded with the worktree; your own files are as they were",
        top.display(),
        named.join(", ")
    ))
}

/// Copy the user's Claude Code files ([`COPIED`]) from the main checkout into the task
/// worktree at `top` (git dir `admin`), whose project directory is `workdir`. Copies an
/// earlier run made there are taken away first (the user's files may have changed).
/// Returns lines worth telling (what was not copied and why); nothing here fails.
pub(crate) fn copy_into(repo: &Repo, top: &Path, admin: &Path, workdir: &Path) -> Vec<String> {
    let mut notes = Vec::new();
    for old in recorded(admin) {
        let at = top.join(&old.path);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
            let _ = crate::fs::remove_file(&at);
        }
    }
    let main = repo.project.root();
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in COPIED {
        let (rel, dir) = match entry.strip_suffix('/') {
            Some(d) => (d, true),
            None => (*entry, false),
        };
        let from = main.join(rel);
        if std::fs::symlink_metadata(&from).is_err() {
            continue;
        }
        if let Err(e) = crate::fs::check_in_project(main, &from) {
            notes.push(format!("did not copy it into the task's worktree: {e}"));
            continue;
        }
        if dir {
            if !inside(main, &from) {
                notes.push(format!(
                    "did not copy `{rel}` into the task's worktree: it leads out of the project"
                ));
                continue;
            }
            walk(main, &from, rel, 0, &mut found, &mut notes);
        } else if from.is_file() {
            found.insert(rel.to_owned(), from);
        }
    }
    if found.is_empty() {
        return finish(admin, Vec::new(), notes);
    }
    // Anything git tracks in the main checkout is the repository's, never copied.
    let Some(tracked) = tracked(main, found.keys()) else {
        notes.push(
            "did not copy your Claude Code files into the task's worktree: git could not tell which of them it tracks".to_owned(),
        );
        return finish(admin, Vec::new(), notes);
    };
    let prefix = workdir
        .strip_prefix(top)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    found.retain(|rel, _| !tracked.contains(rel));
    // Only what git ignores in the worktree: a copy git would stage would be committed by
    // the agent's own `git add -A` (its history then holds the user's file).
    let Some(ignored) = ignored(workdir, found.keys()) else {
        notes.push(
            "did not copy your Claude Code files into the task's worktree: git could not tell which of them it ignores".to_owned(),
        );
        return finish(admin, Vec::new(), notes);
    };
    let staged: Vec<String> = found
        .keys()
        .filter(|r| !ignored.contains(*r))
        .map(|r| format!("`{r}`"))
        .collect();
    if !staged.is_empty() {
        let mut named: Vec<String> = staged.iter().take(5).cloned().collect();
        if staged.len() > 5 {
            named.push(format!("{} more", staged.len() - 5));
        }
        notes.push(format!(
            "did not copy {} into the task's worktree: git neither tracks nor ignores them, so a `git add -A` of the agent's would commit them (commit them, or ignore them in `.gitignore` or `.git/info/exclude` to have them copied)",
            named.join(", ")
        ));
    }
    found.retain(|rel, _| ignored.contains(rel));
    let mut copies = Vec::new();
    let mut total = 0usize;
    for (rel, from) in found {
        if copies.len() >= MAX_FILES {
            notes.push(format!(
                "copied only the first {MAX_FILES} of your Claude Code files into the task's worktree"
            ));
            break;
        }
        match copy_one(&from, workdir, &rel, &mut total) {
            Ok(Some(h)) => copies.push(Copy {
                path: if prefix.is_empty() {
                    rel
                } else {
                    format!("{prefix}/{rel}")
                },
                hash: h,
            }),
            Ok(None) => {}
            Err(why) => notes.push(format!(
                "did not copy `{rel}` into the task's worktree: {why}"
            )),
        }
    }
    finish(admin, copies, notes)
}

fn finish(admin: &Path, copies: Vec<Copy>, mut notes: Vec<String>) -> Vec<String> {
    if (!copies.is_empty() || admin.join(RECORD).exists())
        && let Err(e) = write_record(admin, &copies)
    {
        notes.push(format!(
            "could not record the copies of your Claude Code files: {e}"
        ));
    }
    notes
}

/// Does `path`, fully resolved, lie in the project `main` (or where its `.claude` leads)?
fn inside(main: &Path, path: &Path) -> bool {
    let Ok(resolved) = std::fs::canonicalize(path) else {
        return false;
    };
    [main.to_path_buf(), main.join(".claude")]
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| resolved.starts_with(r))
}

/// The files below the folder `dir` (`rel` from the project root), through links only
/// within the project.
fn walk(
    main: &Path,
    dir: &Path,
    rel: &str,
    depth: usize,
    found: &mut BTreeMap<String, PathBuf>,
    notes: &mut Vec<String>,
) {
    if depth > MAX_DEPTH || found.len() > MAX_FILES {
        return;
    }
    let Ok(entries) = crate::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(fs_err::DirEntry::file_name);
    for e in entries {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = e.path();
        let child = format!("{rel}/{name}");
        if let Err(err) = crate::fs::check_in_project(main, &path) {
            notes.push(format!("did not copy it into the task's worktree: {err}"));
            continue;
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() && inside(main, &path) => {
                walk(main, &path, &child, depth + 1, found, notes);
            }
            Ok(m) if m.is_file() => {
                found.insert(child, path);
            }
            _ => {}
        }
    }
}

/// Which of `rels` (relative to the project root `main`) git tracks there; `None` when
/// git cannot tell.
fn tracked<'a>(
    main: &Path,
    rels: impl Iterator<Item = &'a String>,
) -> Option<std::collections::BTreeSet<String>> {
    let mut args = vec!["ls-files".to_owned(), "-z".to_owned(), "--".to_owned()];
    args.extend(rels.map(|r| format!(":(literal){r}")));
    let out = super::git_output(main, &args, &[]).ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Which of `rels` (relative to the worktree's project directory `workdir`) git ignores
/// there; `None` when git cannot tell.
fn ignored<'a>(
    workdir: &Path,
    rels: impl Iterator<Item = &'a String>,
) -> Option<std::collections::BTreeSet<String>> {
    let mut input = Vec::new();
    for r in rels {
        input.extend_from_slice(r.as_bytes());
        input.push(0);
    }
    let mut cmd = super::git_command(workdir, &[], ["check-ignore", "-z", "--stdin"], &[]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().ok()?;
    let mut stdin = child.stdin.take()?;
    // Written while git answers (a long list must not fill both pipes).
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    // 0: some are ignored; 1: none is.
    matches!(out.status.code(), Some(0 | 1)).then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Copy the file `from` to `rel` below `workdir`: `Ok(None)` when something is there
/// already (a file the worktree's branch tracks, the spec link), the hash of the bytes
/// copied, or why it was not copied.
fn copy_one(
    from: &Path,
    workdir: &Path,
    rel: &str,
    total: &mut usize,
) -> Result<Option<String>, String> {
    let dest = workdir.join(rel);
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Ok(None);
    }
    let parent = Path::new(rel).parent().unwrap_or(Path::new(""));
    match crate::fs::linked_component(workdir, parent) {
        Ok(None) => {}
        Ok(Some((link, _))) => {
            return Err(format!(
                "`{}` in the worktree is a symbolic link, and qw writes through none",
                link.display()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let bytes = match crate::fs::read_regular(from, MAX_FILE_BYTES).map_err(|e| e.to_string())? {
        crate::fs::Bounded::Whole(b) => b,
        crate::fs::Bounded::TooBig { len, .. } => {
            return Err(format!(
                "it is {len} bytes, more than the {MAX_FILE_BYTES} qw copies of one file"
            ));
        }
    };
    if *total + bytes.len() > MAX_TOTAL_BYTES {
        return Err(format!(
            "the copies would pass {MAX_TOTAL_BYTES} bytes in all"
        ));
    }
    let exec = std::fs::metadata(from).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let mode = if exec { 0o555 } else { 0o444 };
    crate::fs::create_dir_all(crate::fs::parent_dir(&dest)).map_err(|e| e.to_string())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&dest)
        .map_err(|e| crate::fs::with_path(e, "create", &dest).to_string())?;
    file.write_all(&bytes)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .map_err(|e| crate::fs::with_path(e, "write", &dest).to_string())?;
    *total += bytes.len();
    Ok(Some(hash(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_and_patterns_match_only_the_copies_themselves() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recorded(dir.path()).is_empty());
        let copies = vec![
            Copy {
                path: ".claude/settings.local.json".into(),
                hash: hash(b"{}"),
            },
            Copy {
                path: "sub/.claude/commands/a [b]*.md".into(),
                hash: hash(b"x"),
            },
        ];
        write_record(dir.path(), &copies).unwrap();
        assert_eq!(recorded(dir.path()), copies);
        assert_eq!(
            ignore_patterns(dir.path()),
            vec![
                "/.claude/settings.local.json".to_owned(),
                "/sub/.claude/commands/a\\ \\[b]\\*.md".to_owned(),
            ]
        );
        assert_eq!(
            pathspecs(dir.path())[0],
            ":(top,literal).claude/settings.local.json"
        );
        assert!(is_copy(&copies, ".claude/settings.local.json"));
        assert!(!is_copy(&copies, ".claude/settings.json"));
    }
}
