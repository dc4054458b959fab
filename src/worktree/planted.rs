//! What a task's agent may plant in the repository's shared git dir (rev6b G11, G16).
//!
//! Owns: a snapshot of the files every worktree of the repository shares that make git
//! run a command or change what git sees — `<common>/config` (`core.hooksPath`,
//! `core.fsmonitor`, `filter.<x>.clean`, `merge.<x>.driver`, `include.path`, …),
//! `config.worktree`, `hooks/` and `info/` (`exclude`, `attributes`, `grafts`, …) —
//! taken when a run starts, compared before qw's git steps and after each agent, and
//! the user's version put back when they changed: the changed file is kept aside in
//! `<common>/qw-planted/<time>/` (never deleted), and the change is told (the task that
//! was running fails, naming it). In a config file only the keys that matter
//! ([`matters`]) are put back, the user's other edits kept; a change of other keys alone
//! (`git config user.email`, `git remote add`, an upstream) is no planting (rev7 R9).
//! Must not: run git hooks or programs named there (qw's own git runs with
//! `core.hooksPath=/dev/null` and `core.fsmonitor=false` whatever the files say, and
//! every other code-running key held to the user's by [`codecfg`]: see `git_command`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::codecfg;

/// The files watched at the top of the common git dir.
const FILES: [&str; 2] = ["config", "config.worktree"];
/// The files of `info/` watched: what changes what git ignores, converts or shows
/// (`info/refs`, which `git gc` rewrites, tells nothing of the kind).
const INFO: [&str; 4] = ["exclude", "attributes", "grafts", "sparse-checkout"];
/// The directories watched whole (every file in them, two levels down).
const DIRS: [&str; 1] = ["hooks"];
/// At most this many files per directory are compared (a hooks folder is a dozen).
const MAX_FILES: usize = 500;
/// A file larger than this is compared by its size and time only.
const MAX_BYTES: u64 = 1 << 20;

/// One watched file as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A regular file: its bytes (or, over [`MAX_BYTES`], its size and time) and mode.
    File {
        bytes: Option<Vec<u8>>,
        len: u64,
        mtime: i64,
        mode: u32,
    },
    /// A symbolic link and where it points.
    Link(PathBuf),
    /// Anything else (a FIFO, a device, a socket): never read.
    Special,
}

/// The watched files of a common git dir, by their path in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    files: BTreeMap<String, Entry>,
}

fn entry(path: &Path) -> Option<Entry> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = path.symlink_metadata().ok()?;
    let ty = meta.file_type();
    if ty.is_symlink() {
        return Some(Entry::Link(std::fs::read_link(path).unwrap_or_default()));
    }
    if ty.is_dir() {
        return None;
    }
    if !ty.is_file() {
        return Some(Entry::Special);
    }
    let bytes = (meta.len() <= MAX_BYTES)
        .then(|| crate::fs::read_regular_whole(path, MAX_BYTES as usize).ok())
        .flatten();
    // The time counts only where the bytes are not kept (a file written back the same
    // is the same).
    let mtime = if bytes.is_some() { 0 } else { meta.mtime() };
    Some(Entry::File {
        bytes,
        len: meta.len(),
        mtime,
        mode: meta.permissions().mode(),
    })
}

fn walk(common: &Path, rel: &str, depth: usize, out: &mut BTreeMap<String, Entry>) {
    let Ok(read) = crate::fs::read_dir(common.join(rel)) else {
        return;
    };
    let mut names: Vec<String> = read
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names.into_iter().take(MAX_FILES) {
        let r = format!("{rel}/{name}");
        let p = common.join(&r);
        match entry(&p) {
            Some(e) => {
                out.insert(r, e);
            }
            None if depth > 0 => walk(common, &r, depth - 1, out),
            None => {}
        }
    }
}

impl Snapshot {
    /// The watched files of `common` as they are now.
    pub(crate) fn take(common: &Path) -> Snapshot {
        let mut files = BTreeMap::new();
        for f in FILES {
            if let Some(e) = entry(&common.join(f)) {
                files.insert(f.to_owned(), e);
            }
        }
        for d in DIRS {
            walk(common, d, 1, &mut files);
        }
        for f in INFO {
            let rel = format!("info/{f}");
            if let Some(e) = entry(&common.join(&rel)) {
                files.insert(rel, e);
            }
        }
        Snapshot { files }
    }

    /// The paths (relative to the common dir) that differ from `now`: added, changed
    /// or removed, in order.
    fn changed(&self, now: &Snapshot) -> Vec<String> {
        let mut paths: Vec<String> = self
            .files
            .iter()
            .filter(|(p, e)| now.files.get(*p) != Some(e))
            .map(|(p, _)| p.clone())
            .collect();
        paths.extend(
            now.files
                .keys()
                .filter(|p| !self.files.contains_key(*p))
                .cloned(),
        );
        paths.sort();
        paths.dedup();
        paths
    }
}

/// The snapshot of a run and what was found changed against it.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The user's files, when the watch began (`None`: not yet begun).
    snap: Option<Snapshot>,
    /// Each change found, told as one line, in the order found.
    found: Vec<String>,
    /// How many of `found` were claimed by a task or told at the end.
    told: usize,
}

impl Watch {
    /// Begin watching `repo`'s common dir (again): what is there now is the user's, and
    /// so are the code-running config keys its main worktree sees (see [`codecfg`]).
    pub(crate) fn begin(&mut self, repo: &super::Repo) {
        self.snap = Some(Snapshot::take(&repo.common_dir));
        codecfg::begin(&repo.top, &repo.common_dir);
    }

    /// How many changes were found so far: a task's look at them starts there.
    pub(crate) fn mark(&self) -> usize {
        self.found.len()
    }

    /// The changes found since `mark` (see [`Watch::mark`]).
    pub(crate) fn since(&mut self, mark: usize) -> Vec<String> {
        let out: Vec<String> = self.found.iter().skip(mark).cloned().collect();
        self.told = self.found.len();
        out
    }

    /// The changes no task claimed yet (told at the end of the run).
    pub(crate) fn untold(&mut self) -> Vec<String> {
        let out: Vec<String> = self.found.iter().skip(self.told).cloned().collect();
        self.told = self.found.len();
        out
    }

    /// Compare the watched files with the snapshot; put the user's back where they
    /// changed (the changed file kept aside, never deleted) and remember one line. In a
    /// config file only the keys that matter ([`matters`]: run a program, include a
    /// file, change what git sees) are put back, each to the user's values, the file's
    /// other changes kept (an identity, a remote, an upstream: the user's own `git
    /// config` mid-run); a change of other keys alone is taken as it is.
    pub(crate) fn check(&mut self, repo: &super::Repo) {
        let Some(snap) = &self.snap else { return };
        let common = &repo.common_dir;
        let now = Snapshot::take(common);
        let mut told = Vec::new();
        let aside = common.join("qw-planted").join(stamp());
        for rel in snap.changed(&now) {
            let before = snap.files.get(&rel);
            let after = now.files.get(&rel);
            // Another project's qw in the same repository (a monorepo's subfolders) adds
            // its runtime lines at its start: qw's, not a planting (rev8b F9).
            if rel == "info/exclude" && adds_only_qw_excludes(before, after) {
                continue;
            }
            let result = match config_change(&rel, before, after) {
                Some(change) => {
                    let keys: Vec<String> =
                        change.keys.iter().filter(|k| matters(k)).cloned().collect();
                    if keys.is_empty() {
                        continue;
                    }
                    let what = describe(repo, &rel, before, after, Some(&keys));
                    revert_keys(common, &aside, &rel, &change, &keys, after)
                        .map(|()| {
                            format!(
                                "{what}: these keys have again the values they had when the run began (if the change was yours, set it again once the run is over), the file's other changes kept"
                            )
                        })
                        .map_err(|e| (what, e))
                }
                None => {
                    let what = describe(repo, &rel, before, after, None);
                    restore(common, &aside, &rel, before, after)
                        .map(|()| what.clone())
                        .map_err(|e| (what, e))
                }
            };
            match result {
                Ok(line) => told.push(line),
                Err((what, e)) => told.push(format!(
                    "{what} (not put back: {e}; look at it before running git there)"
                )),
            }
        }
        // What is there now (the user's version put back) is the user's.
        self.snap = Some(Snapshot::take(common));
        if told.is_empty() {
            return;
        }
        let mut line = format!(
            "the repository's shared git files were changed (by its agent, or another agent running then): {}; every git of this repository reads them (qw's own git runs no hook and no fsmonitor, whatever they say), so qw put your version back",
            told.join("; ")
        );
        if aside.exists() {
            line.push_str(&format!(
                "; the changed files are kept in `{}` (copy back what you want)",
                aside.display()
            ));
        }
        self.found.push(line);
    }
}

/// Whether `after` is `before` plus lines qw itself writes to `info/exclude` (its
/// header and runtime paths, [`super::is_qw_exclude_line`]), nothing else changed.
fn adds_only_qw_excludes(before: Option<&Entry>, after: Option<&Entry>) -> bool {
    let text = |e: Option<&Entry>| match e {
        None => Some(String::new()),
        Some(Entry::File { bytes: Some(b), .. }) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(_) => None,
    };
    let (Some(before), Some(after)) = (text(before), text(after)) else {
        return false;
    };
    let mut left: Vec<&str> = before.lines().collect();
    for line in after.lines() {
        if let Some(i) = left.iter().position(|l| *l == line) {
            left.remove(i);
        } else if !super::is_qw_exclude_line(line) {
            return false;
        }
    }
    left.is_empty()
}

/// What changed in a config file: its entries before and after, and the keys whose
/// values differ.
#[derive(Debug)]
struct ConfigChange {
    old: Vec<(String, String)>,
    after: Vec<u8>,
    keys: Vec<String>,
}

/// The change of config file `rel` (see [`ConfigChange`]); `None` when `rel` is no
/// config file, was deleted, a side is not a regular file qw read, or git cannot read a
/// side (the whole file is put back then).
fn config_change(rel: &str, before: Option<&Entry>, after: Option<&Entry>) -> Option<ConfigChange> {
    if !FILES.contains(&rel) {
        return None;
    }
    let bytes = |e: Option<&Entry>| -> Option<Vec<u8>> {
        match e {
            None => Some(Vec::new()),
            Some(Entry::File { bytes: Some(b), .. }) => Some(b.clone()),
            Some(_) => None,
        }
    };
    after?;
    let (b, a) = (bytes(before)?, bytes(after)?);
    let (old, new) = (config_list(&b)?, config_list(&a)?);
    let values = |list: &[(String, String)], key: &str| -> Vec<String> {
        list.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut keys: Vec<String> = old
        .iter()
        .chain(new.iter())
        .map(|(k, _)| k.clone())
        .filter(|k| values(&old, k) != values(&new, k))
        .collect();
    keys.sort();
    keys.dedup();
    Some(ConfigChange {
        old,
        after: a,
        keys,
    })
}

/// Put `keys` of config file `rel` back as `change.old` had them, the file's other
/// lines as they are now; the file as it was found is copied to `aside/<rel>`.
fn revert_keys(
    common: &Path,
    aside: &Path,
    rel: &str,
    change: &ConfigChange,
    keys: &[String],
    after: Option<&Entry>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = common.join(rel);
    let to = aside.join(rel);
    crate::fs::create_dir_all(crate::fs::parent_dir(&to))?;
    crate::fs::write(&to, &change.after)?;
    let tmp = common.join(format!("{rel}.qw-restore"));
    crate::fs::write(&tmp, &change.after)?;
    if let Some(Entry::File { mode, .. }) = after {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
    }
    let git = |args: &[&str], ok: &[i32]| -> std::io::Result<()> {
        let out = config_file(&tmp, args)?;
        match out.status.code() {
            Some(c) if ok.contains(&c) => Ok(()),
            _ => Err(std::io::Error::other(format!(
                "git config {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    };
    let values = |list: &[(String, String)], key: &str| -> Vec<String> {
        list.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let now = config_list(&change.after).unwrap_or_default();
    let done = keys.iter().try_for_each(|key| {
        let mine = values(&change.old, key);
        // The lines added are taken out (the user's lines stay where they are); when
        // that does not give the user's values (one was changed or removed), the key is
        // written again whole. 5: the key was not there.
        for v in values(&now, key).iter().filter(|v| !mine.contains(v)) {
            git(&["--fixed-value", "--unset-all", "--", key, v], &[0, 5])?;
        }
        let left = crate::fs::read(&tmp)
            .ok()
            .and_then(|b| config_list(&b))
            .unwrap_or_default();
        if values(&left, key) == mine {
            return Ok(());
        }
        git(&["--unset-all", "--", key], &[0, 5])?;
        mine.iter()
            .try_for_each(|v| git(&["--add", "--", key, v], &[0]))
    });
    match done {
        Ok(()) => crate::fs::rename(&tmp, &path),
        Err(e) => {
            let _ = crate::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `git config --file <copy> --list -z` of `bytes`: `(key, value)` in order (a key
/// without `=` has `true`); reading runs nothing (includes are not followed for a named
/// file); `None` when git cannot read it.
fn config_list(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let tmp = tempfile::tempdir().ok()?;
    let p = tmp.path().join("config");
    crate::fs::write(&p, bytes).ok()?;
    let out = config_file(&p, &["--list", "-z"]).ok()?;
    out.status.success().then(|| {
        out.stdout
            .split(|b| *b == 0)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let e = String::from_utf8_lossy(e);
                match e.split_once('\n') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.into_owned(), "true".to_owned()),
                }
            })
            .collect()
    })
}

/// `git config --file <file> ARGS…`, no system or global file read (not through
/// `git_command`, whose pins read the config: `config --file` runs nothing).
fn config_file(file: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("git")
        .arg("config")
        .arg("--file")
        .arg(file)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
}

/// Whether a change of config `key` (lower case, as `git config --list` prints it) is
/// a planting (rev7 R9): a key that makes git run a program ([`codecfg::runs_code`]),
/// an include (it brings in any of them), or one that changes which files, worktree or
/// repository format git sees (`core.worktree`, `core.bare`, `extensions.*`,
/// `core.repositoryFormatVersion`, `core.attributesFile`, `core.excludesFile`, sparse
/// checkout, `core.gitProxy`, `remote.<x>.vcs`, `protocol.*`). Every other key — an
/// identity, a remote, a branch's upstream, `core.autocrlf`, an alias — is the user's
/// or an ordinary git's and taken as it is.
fn matters(key: &str) -> bool {
    if super::codecfg::runs_code(key) {
        return true;
    }
    let section = key.split_once('.').map_or(key, |(s, _)| s);
    let name = key.rsplit_once('.').map_or(key, |(_, n)| n);
    // Also what runs a program in the user's own next git (rev9 N8): a pager per
    // command, `git add -p`'s filter, the tools and browsers git starts. (Aliases stay
    // the user's to write mid-run, rev7 R9: an alias runs only when typed.)
    matches!(
        section,
        "include"
            | "includeif"
            | "extensions"
            | "protocol"
            | "pager"
            | "difftool"
            | "mergetool"
            | "sendemail"
            | "browser"
            | "man"
            | "instaweb"
            | "web"
    ) || matches!(key, "interactive.difffilter" | "diff.tool" | "merge.tool")
        || (section == "remote" && name == "vcs")
        || matches!(
            key,
            "core.worktree"
                | "core.bare"
                | "core.repositoryformatversion"
                | "core.attributesfile"
                | "core.excludesfile"
                | "core.sparsecheckout"
                | "core.sparsecheckoutcone"
                | "index.sparse"
                | "core.gitproxy"
        )
}

/// `YYYYmmddTHHMMSS.nnnZ`: one folder per change found.
fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

/// One phrase: the path, what happened to it, and for a config file the keys that
/// changed.
fn describe(
    repo: &super::Repo,
    rel: &str,
    before: Option<&Entry>,
    after: Option<&Entry>,
    keys: Option<&[String]>,
) -> String {
    let shown = format!("`{}`", repo.common_dir.join(rel).display());
    let what = match (before, after) {
        (None, _) => "appeared",
        (_, None) => "was deleted",
        _ => "was changed",
    };
    match keys.filter(|k| !k.is_empty()) {
        Some(k) => {
            let mut named: Vec<String> = k.iter().take(5).map(|k| format!("`{k}`")).collect();
            if k.len() > 5 {
                named.push(format!("{} more", k.len() - 5));
            }
            format!("{shown} {what} (keys {})", named.join(", "))
        }
        None => format!("{shown} {what}"),
    }
}

/// Put `rel` back as `before` had it; what is there now is moved to `aside/<rel>`.
fn restore(
    common: &Path,
    aside: &Path,
    rel: &str,
    before: Option<&Entry>,
    after: Option<&Entry>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = common.join(rel);
    if after.is_some() {
        let to = aside.join(rel);
        crate::fs::create_dir_all(crate::fs::parent_dir(&to))?;
        crate::fs::rename(&path, &to)?;
    }
    match before {
        None => Ok(()),
        Some(Entry::File {
            bytes: Some(bytes),
            mode,
            ..
        }) => {
            let tmp = common.join(format!("{rel}.qw-restore"));
            crate::fs::create_dir_all(crate::fs::parent_dir(&tmp))?;
            crate::fs::write(&tmp, bytes)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(*mode))?;
            crate::fs::rename(&tmp, &path)
        }
        Some(Entry::Link(target)) => std::os::unix::fs::symlink(target, &path),
        Some(Entry::File { bytes: None, .. }) | Some(Entry::Special) => Err(std::io::Error::other(
            "qw kept no copy of it (too large or not a regular file)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_that_matter_are_a_planting() {
        for k in [
            "filter.evil.clean",
            "merge.m.driver",
            "core.hookspath",
            "include.path",
            "includeif.gitdir:/x/.path",
            "extensions.worktreeconfig",
            "core.worktree",
        ] {
            assert!(matters(k), "{k}");
        }
        for k in [
            "user.email",
            "remote.origin.url",
            "branch.main.merge",
            "core.autocrlf",
            "alias.co",
            "submodule.s.url",
            "core.logallrefupdates",
        ] {
            assert!(!matters(k), "{k}");
        }
    }

    #[test]
    fn a_planted_key_is_put_back_and_the_users_other_edits_kept() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        let mine = "[core]\n\tbare = false\n[filter \"lfs\"]\n\tclean = git-lfs clean -- %f\n";
        crate::fs::write(c.join("config"), mine).unwrap();
        let before = Snapshot::take(c);
        let now_text = format!(
            "{mine}[user]\n\temail = me@example.com\n[filter \"lfs\"]\n\tclean = /tmp/evil\n[filter \"a=b\"]\n\tsmudge = /tmp/evil\n"
        );
        crate::fs::write(c.join("config"), &now_text).unwrap();
        let now = Snapshot::take(c);
        let change = config_change(
            "config",
            before.files.get("config"),
            now.files.get("config"),
        )
        .unwrap();
        let keys: Vec<String> = change.keys.iter().filter(|k| matters(k)).cloned().collect();
        assert_eq!(keys, ["filter.a=b.smudge", "filter.lfs.clean"]);
        let aside = c.join("aside");
        revert_keys(c, &aside, "config", &change, &keys, now.files.get("config")).unwrap();
        let list = config_list(&crate::fs::read(c.join("config")).unwrap()).unwrap();
        let get = |k: &str| -> Vec<&str> {
            list.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("filter.lfs.clean"), ["git-lfs clean -- %f"]);
        assert!(get("filter.a=b.smudge").is_empty(), "{list:?}");
        assert_eq!(get("user.email"), ["me@example.com"]);
        assert_eq!(
            crate::fs::read_to_string(aside.join("config")).unwrap(),
            now_text
        );
        // The user's own lines are where they were.
        assert!(
            crate::fs::read_to_string(c.join("config"))
                .unwrap()
                .starts_with(mine),
        );
    }

    #[test]
    fn another_projects_qw_lines_in_info_exclude_are_no_planting() {
        let file = |t: &str| Entry::File {
            bytes: Some(t.as_bytes().to_vec()),
            len: t.len() as u64,
            mtime: 0,
            mode: 0o644,
        };
        let before = file("mine\n# qw runtime files (added by qw)\n/a/.claude/runs/\n");
        let qw = file(
            "mine\n# qw runtime files (added by qw)\n/a/.claude/runs/\n# qw runtime files (added by qw)\n/b/.claude/runs/\n/b/.claude/unified_state.json\n",
        );
        assert!(adds_only_qw_excludes(Some(&before), Some(&qw)));
        let fresh = file("# qw runtime files (added by qw)\n/b/.claude/runs/\n");
        assert!(adds_only_qw_excludes(None, Some(&fresh)));
        assert!(!adds_only_qw_excludes(None, Some(&qw)));
        let planted = file("mine\n# qw runtime files (added by qw)\n/a/.claude/runs/\n*.py\n");
        assert!(!adds_only_qw_excludes(Some(&before), Some(&planted)));
        let removed =
            file("# qw runtime files (added by qw)\n/a/.claude/runs/\n/b/.claude/runs/\n");
        assert!(!adds_only_qw_excludes(Some(&before), Some(&removed)));
    }

    #[test]
    fn changes_are_added_changed_and_removed_files() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        crate::fs::write(c.join("config"), "[core]\n").unwrap();
        crate::fs::create_dir_all(c.join("hooks")).unwrap();
        crate::fs::write(c.join("hooks/pre-commit.sample"), "x").unwrap();
        crate::fs::create_dir_all(c.join("info")).unwrap();
        crate::fs::write(c.join("info/exclude"), "a\n").unwrap();
        let before = Snapshot::take(c);
        assert!(before.changed(&Snapshot::take(c)).is_empty());
        crate::fs::write(c.join("hooks/post-merge"), "#!/bin/sh\n").unwrap();
        crate::fs::write(c.join("info/exclude"), "a\n*.py\n").unwrap();
        crate::fs::remove_file(c.join("hooks/pre-commit.sample")).unwrap();
        assert_eq!(
            before.changed(&Snapshot::take(c)),
            [
                "hooks/post-merge",
                "hooks/pre-commit.sample",
                "info/exclude"
            ]
        );
    }

    #[test]
    fn restore_puts_the_users_file_back_and_keeps_the_changed_one_aside() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path();
        crate::fs::create_dir_all(c.join("info")).unwrap();
        crate::fs::write(c.join("info/exclude"), "mine\n").unwrap();
        let before = Snapshot::take(c);
        crate::fs::write(c.join("info/exclude"), "mine\n*.py\n").unwrap();
        crate::fs::create_dir_all(c.join("hooks")).unwrap();
        crate::fs::write(c.join("hooks/post-checkout"), "evil").unwrap();
        let now = Snapshot::take(c);
        let aside = c.join("aside");
        for rel in before.changed(&now) {
            restore(c, &aside, &rel, before.files.get(&rel), now.files.get(&rel)).unwrap();
        }
        assert_eq!(
            crate::fs::read_to_string(c.join("info/exclude")).unwrap(),
            "mine\n"
        );
        assert!(!c.join("hooks/post-checkout").exists());
        assert_eq!(
            crate::fs::read_to_string(aside.join("hooks/post-checkout")).unwrap(),
            "evil"
        );
        assert_eq!(
            crate::fs::read_to_string(aside.join("info/exclude")).unwrap(),
            "mine\n*.py\n"
        );
        assert!(before.changed(&Snapshot::take(c)).is_empty());
    }
}
