//! What a task's agent may plant in the repository's shared git dir (rev6b G11, G16).
//!
//! Owns: a snapshot of the files every worktree of the repository shares that make git
//! run a command or change what git sees — `<common>/config` (`core.hooksPath`,
//! `core.fsmonitor`, `filter.<x>.clean`, `merge.<x>.driver`, `include.path`, …),
//! `config.worktree`, `hooks/` and `info/` (`exclude`, `attributes`, `grafts`, …) —
//! taken when a run starts, compared before qw's git steps and after each agent, and
//! the user's version put back when they changed: the changed file is kept aside in
//! `<common>/qw-planted/<time>/` (never deleted), and the change is told (the task that
//! was running fails, naming it).
//! Must not: run git hooks or programs named there (qw's own git runs with
//! `core.hooksPath=/dev/null` and `core.fsmonitor=false` whatever the files say: see
//! `git_command`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Begin watching `common` (again): what is there now is the user's.
    pub(crate) fn begin(&mut self, common: &Path) {
        self.snap = Some(Snapshot::take(common));
        pin_filters(common);
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
    /// changed (the changed file kept aside, never deleted) and remember one line. A
    /// config change of harmless keys only (`git submodule init`'s `submodule.<x>.url`,
    /// a remote, a branch's upstream: [`harmless`]) is taken as it is.
    pub(crate) fn check(&mut self, repo: &super::Repo) {
        let Some(snap) = &self.snap else { return };
        let common = &repo.common_dir;
        let now = Snapshot::take(common);
        let mut told = Vec::new();
        let aside = common.join("qw-planted").join(stamp());
        for rel in snap.changed(&now) {
            let before = snap.files.get(&rel);
            let after = now.files.get(&rel);
            let keys = config_change(&rel, before, after);
            if keys.as_ref().is_some_and(|k| k.iter().all(|k| harmless(k))) {
                continue;
            }
            let what = describe(repo, &rel, before, after, keys.as_deref());
            match restore(common, &aside, &rel, before, after) {
                Ok(()) => told.push(what),
                Err(e) => told.push(format!(
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

/// The config keys (`section.name`, lower case) whose values differ between two
/// versions of a config file `rel`; `None` when `rel` is no config file or a side is
/// not a regular file qw read.
fn config_change(rel: &str, before: Option<&Entry>, after: Option<&Entry>) -> Option<Vec<String>> {
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
    let (b, a) = (bytes(before)?, bytes(after)?);
    let (old, new) = (config_list(&b)?, config_list(&a)?);
    let mut keys: Vec<String> = old
        .iter()
        .filter(|l| !new.contains(l))
        .chain(new.iter().filter(|l| !old.contains(l)))
        .map(|l| l.split_once('=').map_or(l.as_str(), |(k, _)| k).to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    Some(keys)
}

/// The clean/smudge filters of the user's config, pinned for qw's own git (rev6b G11):
/// an agent can write `[filter "x"]` into the shared config at any moment, between two
/// of qw's checks, and a sibling's save (`git add`, `status`) would run it. Every git of
/// qw's passes [`pinned_args`]: each filter driver that is not as the user had it when
/// the run began is set back to the user's commands, or to none (`-c
/// filter.<x>.clean=`). The user's own filters (git-lfs) run as they are.
#[derive(Debug)]
struct Pins {
    /// `<common>/config`.
    config: PathBuf,
    /// Its `filter.*` lines (`key=value`) when the run began.
    user: Vec<String>,
    /// What the file was (length, modification time, inode) when `args` were made.
    seen: Option<(u64, i64, i64, u64)>,
    args: Vec<String>,
}

static PINS: std::sync::Mutex<Option<Pins>> = std::sync::Mutex::new(None);

fn pins() -> std::sync::MutexGuard<'static, Option<Pins>> {
    PINS.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pin the filters of `<common>/config` as they are now (see [`Pins`]).
pub(crate) fn pin_filters(common: &Path) {
    let config = common.join("config");
    let user = crate::fs::read_regular_whole(&config, MAX_BYTES as usize)
        .ok()
        .and_then(|b| config_list(&b))
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.starts_with("filter."))
        .collect();
    *pins() = Some(Pins {
        config,
        user,
        seen: None,
        args: Vec::new(),
    });
}

/// The `-c` arguments that set every filter driver not as the user had it back (see
/// [`Pins`]); empty when nothing is pinned or nothing changed.
pub(crate) fn pinned_args() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut guard = pins();
    let Some(p) = guard.as_mut() else {
        return Vec::new();
    };
    let stat = crate::fs::metadata(&p.config)
        .ok()
        .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
    if stat != p.seen || stat.is_none() {
        let now: Vec<String> = crate::fs::read_regular_whole(&p.config, MAX_BYTES as usize)
            .ok()
            .and_then(|b| config_list(&b))
            .unwrap_or_default();
        p.args = filter_pins(&p.user, &now);
        p.seen = stat;
    }
    p.args.clone()
}

/// `filter.<x>.clean|smudge|process|required` of every driver whose lines in `now` are
/// not those of `user`: set to the user's value, else to none (`required` to false).
fn filter_pins(user: &[String], now: &[String]) -> Vec<String> {
    const VARS: [&str; 4] = ["clean", "smudge", "process", "required"];
    let driver = |l: &str| -> Option<(String, String)> {
        let key = l.split_once('=').map_or(l, |(k, _)| k);
        let rest = key.strip_prefix("filter.")?;
        let (name, var) = rest.rsplit_once('.')?;
        VARS.contains(&var)
            .then(|| (name.to_owned(), var.to_owned()))
    };
    let names: std::collections::BTreeSet<String> = now
        .iter()
        .filter_map(|l| driver(l).map(|(n, _)| n))
        .collect();
    let mut out = Vec::new();
    for name in names {
        let lines = |list: &[String]| -> Vec<String> {
            list.iter()
                .filter(|l| driver(l).is_some_and(|(n, _)| n == name))
                .cloned()
                .collect()
        };
        if lines(user) == lines(now) {
            continue;
        }
        for var in VARS {
            let key = format!("filter.{name}.{var}");
            let mine = user
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned));
            let value = mine.unwrap_or_else(|| {
                if var == "required" {
                    "false".into()
                } else {
                    String::new()
                }
            });
            out.push("-c".to_owned());
            out.push(format!("{key}={value}"));
        }
    }
    out
}

/// `git config --file <copy> --list` of `bytes` (reading runs nothing: includes are not
/// followed for a named file); `None` when git cannot read it.
fn config_list(bytes: &[u8]) -> Option<Vec<String>> {
    let tmp = tempfile::tempdir().ok()?;
    let p = tmp.path().join("config");
    crate::fs::write(&p, bytes).ok()?;
    // Not through `git_command` (its pins read this): `config --file … --list` runs
    // nothing.
    let out = std::process::Command::new("git")
        .arg("config")
        .arg("--file")
        .arg(&p)
        .arg("--list")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

/// A config key an agent's ordinary git sets, which runs nothing and hides nothing:
/// `submodule.<x>.url|active|branch` (`git submodule init`), `remote.<x>.url|fetch|pushurl`
/// (`git remote add`), `branch.<x>.remote|merge` (`git switch -c … --track`), and
/// `core.logAllRefUpdates`.
fn harmless(key: &str) -> bool {
    // Reflogs off runs nothing either; qw's checks already read a repository without
    // them (its `target` and `cross` look elsewhere and say so).
    if key == "core.logallrefupdates" {
        return true;
    }
    let (Some((section, _)), Some((_, name))) = (key.split_once('.'), key.rsplit_once('.')) else {
        return false;
    };
    if key.matches('.').count() < 2 {
        return false;
    }
    matches!(
        (section, name),
        ("submodule", "url" | "active" | "branch")
            | ("remote", "url" | "fetch" | "pushurl")
            | ("branch", "remote" | "merge")
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
    fn filter_pins_unset_new_drivers_and_put_changed_ones_back() {
        let user = vec!["filter.lfs.clean=git-lfs clean -- %f".to_owned()];
        assert!(filter_pins(&user, &user).is_empty());
        let now = vec![
            "filter.lfs.clean=/tmp/evil".to_owned(),
            "filter.evil.clean=/tmp/evil".to_owned(),
            "core.bare=false".to_owned(),
        ];
        let pins = filter_pins(&user, &now);
        assert!(
            pins.contains(&"filter.lfs.clean=git-lfs clean -- %f".to_owned()),
            "{pins:?}"
        );
        assert!(pins.contains(&"filter.evil.clean=".to_owned()), "{pins:?}");
        assert!(
            pins.contains(&"filter.evil.required=false".to_owned()),
            "{pins:?}"
        );
        assert!(
            pins.contains(&"filter.evil.process=".to_owned()),
            "{pins:?}"
        );
        assert!(!pins.iter().any(|p| p.starts_with("core.")), "{pins:?}");
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
