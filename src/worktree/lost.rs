//! Commits a task's agent left behind that no reflog tells of (rev1 M3): the worktree's
//! reflogs are made to exist when it is made (git still appends to an existing reflog
//! when `core.logAllRefUpdates` is false), and, as a safety net against `git reflog
//! expire --expire=now --all`, commits written since the task started that nothing
//! reaches are found among the loose objects, and among the objects of the packs written
//! since (an agent's `git gc` puts unreachable objects in a cruft pack, `git repack -k`
//! in a new pack): no pack is read unless one is that new — told by its name, absent from
//! the list of packs written when the task started (see [`remember_packs`]) — so the
//! usual cost is one listing of `objects/pack`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use super::{Repo, Result, git_stdin_in};

/// Make the worktree's HEAD reflog and its branch's reflog exist (empty when new), so
/// every move of them is recorded whatever `core.logAllRefUpdates` says.
pub(crate) fn ensure_reflogs(repo: &Repo, admin: &Path, branch: &str) -> Result<()> {
    let head = admin.join("logs").join("HEAD");
    let branch_log = repo
        .common_dir
        .join("logs")
        .join("refs")
        .join("heads")
        .join(branch);
    for log in [head, branch_log] {
        if log.symlink_metadata().is_err() {
            crate::fs::create_dir_all(crate::fs::parent_dir(&log))?;
            crate::fs::write(&log, "")?;
        }
    }
    Ok(())
}

/// Run git in the main worktree with `input` on stdin; its stdout (empty on failure).
pub(crate) fn git_stdin(repo: &Repo, args: &[&str], input: &str) -> Result<String> {
    git_stdin_bytes(repo, args, input.as_bytes().to_vec())
}

/// [`git_stdin`] with bytes on stdin.
fn git_stdin_bytes(repo: &Repo, args: &[&str], input: Vec<u8>) -> Result<String> {
    let out = git_stdin_in(&repo.top, &[], args, input)?;
    Ok(if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::new()
    })
}

/// The loose objects written at or after `since`.
fn loose_since(repo: &Repo, since: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = crate::fs::read_dir(repo.common_dir.join("objects")) else {
        return out;
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(files) = crate::fs::read_dir(d.path()) else {
            continue;
        };
        for f in files.flatten() {
            let rest = f.file_name().to_string_lossy().into_owned();
            if !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if f.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
            {
                out.push(format!("{name}{rest}"));
            }
        }
    }
    out
}

/// The commits named by the HEAD reflogs of the worktrees qw removed in this process:
/// each was told (or kept) when its own task was saved, and is no later task's.
static REMOVED_REFLOGS: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// Remember what the HEAD reflog of a worktree about to be removed names.
pub(crate) fn remember_reflog(admin: &Path) {
    let commits = super::tree::reflog(admin);
    REMOVED_REFLOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(commits);
}

/// The file in a task worktree's git dir naming the packs the repository held when the
/// task started (one `pack-<hash>` a line): any other pack was written since.
pub(crate) const PACKS_AT_START: &str = "qw-packs";

/// The names (`pack-<hash>`, no extension) of the repository's packs, from their `.idx`.
fn pack_names(repo: &Repo) -> Vec<String> {
    let dir = repo.common_dir.join("objects").join("pack");
    let Ok(entries) = crate::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".idx").map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

/// Write the names of the packs there are now into the task worktree's git dir `admin`
/// ([`PACKS_AT_START`]): the packs [`since_start`] reads are the others. A pack is told
/// new by its name, not its time: git freshens an old pack's mtime each time it is asked
/// to write an object the pack already holds (an ordinary `git add` or commit), which
/// would make every save read every object of the repository.
pub(crate) fn remember_packs(repo: &Repo, admin: &Path) -> Result<()> {
    let mut text = pack_names(repo).join("\n");
    text.push('\n');
    crate::fs::write(admin.join(PACKS_AT_START), text)?;
    Ok(())
}

/// The packs written since the task whose git dir is `admin` started: those not named in
/// its [`PACKS_AT_START`] list; without the list (a worktree an older qw made), those
/// whose `.idx` was written at or after `since` (git never freshens an `.idx`).
fn new_packs(repo: &Repo, admin: &Path, since: SystemTime) -> Vec<String> {
    let known: Option<BTreeSet<String>> = crate::fs::read_to_string(admin.join(PACKS_AT_START))
        .ok()
        .map(|t| t.lines().map(str::to_owned).collect());
    let dir = repo.common_dir.join("objects").join("pack");
    pack_names(repo)
        .into_iter()
        .filter(|name| match &known {
            Some(k) => !k.contains(name),
            None => crate::fs::symlink_metadata(dir.join(format!("{name}.idx")))
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since),
        })
        .collect()
}

/// The objects of a pack, in its `.idx` order (sorted by id), read with `git
/// show-index`.
fn pack_objects(repo: &Repo, name: &str) -> Vec<String> {
    let dir = repo.common_dir.join("objects").join("pack");
    let Ok(idx) = crate::fs::read(dir.join(format!("{name}.idx"))) else {
        return Vec::new();
    };
    // `<offset> <object id> (<crc>)` per object.
    let Ok(text) = git_stdin_bytes(repo, &["show-index"], idx) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(str::to_owned)
        .collect()
}

/// The times a cruft pack's `.mtimes` gives its objects (Unix seconds, in `.idx`
/// order): a 12-byte header (`MTME`, version 1, hash id), one big-endian `u32` per
/// object, then two checksums. `None` for a pack that has none (not a cruft pack) or a
/// file that does not read as one.
fn cruft_mtimes(repo: &Repo, name: &str, count: usize) -> Option<Vec<u64>> {
    let path = repo
        .common_dir
        .join("objects")
        .join("pack")
        .join(format!("{name}.mtimes"));
    let bytes = crate::fs::read(path).ok()?;
    if bytes.get(..4) != Some(b"MTME".as_slice()) || bytes.len() < 12 + 4 * count {
        return None;
    }
    Some(
        bytes[12..12 + 4 * count]
            .chunks_exact(4)
            .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            .collect(),
    )
}

/// The commits of a pack with their committer times (Unix seconds): read once per
/// process and pack (a pack's name is its content's hash), so a repack during a run
/// (`git gc`, `git maintenance`: one new pack holding every object) is read once, not
/// by every task's save (rev5b F18).
fn pack_commits(repo: &Repo, name: &str) -> std::sync::Arc<Vec<(String, u64)>> {
    type Cache = BTreeMap<(std::path::PathBuf, String), std::sync::Arc<Vec<(String, u64)>>>;
    static PACK_COMMITS: std::sync::Mutex<Cache> = std::sync::Mutex::new(BTreeMap::new());
    let key = (repo.common_dir.clone(), name.to_owned());
    if let Some(c) = PACK_COMMITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return c.clone();
    }
    tracing::debug!("lost: reading the objects of {name}, written since a task started");
    let commits = commits_with_times(repo, &pack_objects(repo, name));
    let commits = std::sync::Arc::new(commits);
    PACK_COMMITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key, commits.clone());
    commits
}

/// Of `objects`, the commits, each with its committer time (Unix seconds).
fn commits_with_times(repo: &Repo, objects: &[String]) -> Vec<(String, u64)> {
    if objects.is_empty() {
        return Vec::new();
    }
    let Ok(types) = git_stdin(
        repo,
        &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        &format!("{}\n", objects.join("\n")),
    ) else {
        return Vec::new();
    };
    let commits: Vec<&str> = types
        .lines()
        .filter_map(|l| l.strip_suffix(" commit"))
        .collect();
    if commits.is_empty() {
        return Vec::new();
    }
    let input: String = commits.iter().map(|c| format!("{c}\n")).collect();
    let Ok(times) = git_stdin(
        repo,
        &["log", "--no-walk=unsorted", "--stdin", "--format=%H %ct"],
        &input,
    ) else {
        return Vec::new();
    };
    times
        .lines()
        .filter_map(|l| {
            let (c, t) = l.split_once(' ')?;
            Some((c.to_owned(), t.trim().parse().ok()?))
        })
        .collect()
}

/// The commits in the packs written since the task whose git dir is `admin` started
/// ([`new_packs`]) committed at or after `secs`: in a cruft pack only the objects its
/// `.mtimes` says were written since then are read; another pack's commits are read
/// once per process ([`pack_commits`]).
fn packed_since(repo: &Repo, admin: &Path, since: SystemTime, secs: u64) -> Vec<String> {
    let mut out = Vec::new();
    let dir = repo.common_dir.join("objects").join("pack");
    for name in new_packs(repo, admin, since) {
        let cruft = dir.join(format!("{name}.mtimes")).is_file();
        let objects = if cruft {
            pack_objects(repo, &name)
        } else {
            Vec::new()
        };
        if let Some(times) = cruft
            .then(|| cruft_mtimes(repo, &name, objects.len()))
            .flatten()
        {
            let fresh: Vec<String> = objects
                .into_iter()
                .zip(times)
                .filter(|(_, t)| *t >= secs)
                .map(|(o, _)| o)
                .collect();
            tracing::debug!(
                "lost: reading the objects of {name} (a cruft pack: {} of them written since the task started)",
                fresh.len()
            );
            out.extend(
                commits_with_times(repo, &fresh)
                    .into_iter()
                    .filter(|(_, t)| *t >= secs)
                    .map(|(c, _)| c),
            );
            continue;
        }
        out.extend(
            pack_commits(repo, &name)
                .iter()
                .filter(|(_, t)| *t >= secs)
                .map(|(c, _)| c.clone()),
        );
    }
    out
}

/// The commits written since the task whose git dir is `admin` started (its marker's
/// time) that no ref, no worktree's HEAD, no reflog (nor the reflog of a task worktree
/// qw removed meanwhile) reaches, that share history with `base` and are not a stash's:
/// newest first. Loose objects are told by their file's time; packed ones are looked at
/// only in packs written since the start (by an agent's `git gc` or `repack`), and by
/// their committer time.
pub(crate) fn since_start(repo: &Repo, admin: &Path, base: &str) -> Vec<Lost> {
    let Some(start) = crate::fs::symlink_metadata(admin.join(super::tree::MARKER))
        .ok()
        .and_then(|m| m.modified().ok())
    else {
        return Vec::new();
    };
    // A packed commit's file time says nothing: its committer time must be the task's
    // (a second of slack for the clock's rounding).
    let started = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    let objects = loose_since(repo, start);
    let mut commits: BTreeSet<String> = BTreeSet::new();
    if !objects.is_empty() {
        let Ok(types) = git_stdin(
            repo,
            &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            &format!("{}\n", objects.join("\n")),
        ) else {
            return Vec::new();
        };
        commits.extend(
            types
                .lines()
                .filter_map(|l| l.strip_suffix(" commit"))
                .map(str::to_owned),
        );
    }
    commits.extend(packed_since(repo, admin, start, started));
    if commits.is_empty() {
        return Vec::new();
    }
    // Unreachable from every ref and every worktree's HEAD, newest first.
    let input: String = commits.iter().map(|c| format!("{c}\n")).collect();
    // Named by a reflog (the main worktree's, a branch's, any worktree's HEAD): whose it
    // is, that reflog tells; it is not this task's to claim.
    super::tree::defuse_common(&repo.common_dir);
    let Ok(unreached) = git_stdin(
        repo,
        &["rev-list", "--stdin", "--not", "--all", "--reflog"],
        &input,
    ) else {
        return Vec::new();
    };
    // What another worktree's reflog holds is that worktree's to keep.
    let mut others = BTreeSet::new();
    if let Ok(dirs) = crate::fs::read_dir(repo.common_dir.join("worktrees")) {
        for d in dirs.flatten() {
            if super::same_path(&d.path(), admin) {
                continue;
            }
            for c in super::tree::reflog(&d.path()) {
                others.insert(c);
            }
        }
    }
    let removed = REMOVED_REFLOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found: Vec<&str> = unreached
        .lines()
        .filter(|c| commits.contains(*c) && !others.contains(*c) && !removed.contains(*c))
        .filter(|c| !not_an_agents(repo, c))
        .filter(|c| {
            super::git_output(&repo.top, ["merge-base", c, base], &[])
                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
        })
        .collect();
    drop(removed);
    if found.is_empty() {
        return Vec::new();
    }
    whose(repo, admin, &found)
}

/// A commit [`since_start`] found, and whose it is as far as git tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The commit.
    pub(crate) commit: String,
    /// `None`: the task's own (its worktree's `ORIG_HEAD` — what a `git reset` or a
    /// rebase left — names it or a commit on top of it, or no other worktree ran).
    /// `Some(worktrees)`: other worktrees were there and none tells (rev5b F15): of
    /// unknown task, charged to none; their admin folder names.
    pub(crate) unknown: Option<Vec<String>>,
}

/// The per-worktree record of where HEAD was before its last reset, rebase or merge
/// (`<git dir>/ORIG_HEAD`): what a `git reset --hard HEAD~1` dropped.
fn orig_head(admin: &Path) -> Option<String> {
    let text = crate::fs::read_to_string(admin.join("ORIG_HEAD")).ok()?;
    let c = text.trim();
    (c.len() >= 40 && c.bytes().all(|b| b.is_ascii_hexdigit())).then(|| c.to_owned())
}

/// Whose the lost commits `found` are (rev5b F15): a commit another worktree's
/// `ORIG_HEAD` names (it or a commit on top of it) is that worktree's, left out here
/// (its own task's save finds it); one this worktree's names is the task's; one neither
/// tells is the task's when no other worktree ran beside it, else of unknown task.
fn whose(repo: &Repo, admin: &Path, found: &[&str]) -> Vec<Lost> {
    let holds = |orig: &str, c: &str| orig == c || repo.is_ancestor(c, orig).unwrap_or(false);
    let mine = orig_head(admin);
    let mut others: Vec<(String, Option<String>)> = Vec::new();
    if let Ok(dirs) = crate::fs::read_dir(repo.common_dir.join("worktrees")) {
        for d in dirs.flatten() {
            if super::same_path(&d.path(), admin) || !d.path().join("gitdir").is_file() {
                continue;
            }
            let name = d.file_name().to_string_lossy().into_owned();
            others.push((name, orig_head(&d.path())));
        }
    }
    let mut out = Vec::new();
    for c in found {
        if mine.as_deref().is_some_and(|o| holds(o, c)) {
            out.push(Lost {
                commit: (*c).to_owned(),
                unknown: None,
            });
            continue;
        }
        if others
            .iter()
            .any(|(_, o)| o.as_deref().is_some_and(|o| holds(o, c)))
        {
            continue;
        }
        out.push(Lost {
            commit: (*c).to_owned(),
            unknown: (!others.is_empty()).then(|| others.iter().map(|(n, _)| n.clone()).collect()),
        });
    }
    out
}

/// A commit of qw's, or of a `git stash` (what `git stash create` writes — `git merge` runs one to
/// save the main worktree's state; the agent's own stash entries are named apart): the
/// "index on …" and "untracked files on …" commits, and the "WIP on …" one whose second
/// parent is such an index commit.
fn not_an_agents(repo: &Repo, c: &str) -> bool {
    let subject = |rev: &str| {
        super::git_output(&repo.top, ["log", "-1", "--format=%s", rev], &[])
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let s = subject(c);
    // qw's own commits of a task's files (another task's, staged before its branch is
    // pointed at it) are no agent's left-behind work.
    s.starts_with("qw(")
        || s.starts_with("qw:")
        || s.starts_with("index on ")
        || s.starts_with("untracked files on ")
        || subject(&format!("{c}^2")).starts_with("index on ")
}

/// Where a task worktree moved by a plain `mv` went (git still names its old place): a
/// directory beside it, or beside one of its three nearest ancestors, whose `.git` file
/// names the worktree's git dir `admin`.
pub(crate) fn moved_by_mv(path: &Path, admin: &Path) -> Option<std::path::PathBuf> {
    // A link in place of the git dir (to a sibling task's) is never followed: the
    // sibling's worktree would be taken for this one, saved as it and removed (rev9 N9).
    if super::tree::is_link(admin) {
        return None;
    }
    let admin = admin.canonicalize().ok()?;
    for dir in path.ancestors().skip(1).take(3) {
        let Ok(entries) = crate::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let dotgit = e.path().join(".git");
            if !dotgit.is_file() {
                continue;
            }
            let Ok(text) = crate::fs::read_to_string(&dotgit) else {
                continue;
            };
            let Some(named) = text.trim().strip_prefix("gitdir:") else {
                continue;
            };
            let named = Path::new(named.trim());
            let named = if named.is_absolute() {
                named.to_path_buf()
            } else {
                e.path().join(named)
            };
            if named.canonicalize().is_ok_and(|n| n == admin) {
                return Some(e.path());
            }
        }
    }
    None
}
