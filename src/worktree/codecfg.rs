//! The git config keys that make git run a program, held to the user's in qw's own git
//! (rev7 R6).
//!
//! Owns: the class of such keys ([`neutral`]: filter drivers, merge drivers, external
//! diff and textconv, gpg programs, ssh command, editors, pagers, askpass, credential
//! helpers, `core.alternateRefsCommand`, `uploadpack.packObjectsHook`, …), the values of
//! them git saw in the main worktree when a run began (every scope: system, global,
//! XDG, local, the main worktree's `config.worktree`, command line, and whatever an
//! `include.path` / `includeIf` brought in), and, for each git of qw's, the pins that
//! hold them there: a key whose effective value in that git's directory differs from
//! the run's start is set back to the user's value, or to a [`neutral`] one where the
//! user had none, through `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_<n>` / `GIT_CONFIG_VALUE_<n>`
//! (key and value apart: a driver named `a=b` is pinned too, which `-c` cannot say).
//! The effective values are read by one `git config --list --show-origin --show-scope -z`
//! per directory, again only when one of the files it read (or could read: the global
//! and system files, each include's target, the worktree's `config.worktree`) changed.
//! A key set by a file changed since the run began is remembered as a note (the planted
//! watch tells it).
//! Must not: run anything a config names (the listing is `git config`, which runs none).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The merge driver qw's git uses in place of one not the user's: git's own three-way
/// text merge (`git merge-file`: exit 0 clean, else the number of conflicts, which is
/// what git asks of a driver), so a merge goes on as without the attribute.
const MERGE_FILE: &str = "git merge-file --marker-size=%L %A %O %B";

/// How a code-running key is pinned where the user had no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Neutral {
    /// Set to this value (git takes it as "run nothing", or as its own default).
    Value(&'static str),
    /// A list (`credential.helper`): emptied (an empty value resets it), then the
    /// user's values added back.
    Reset,
}

/// `section`, `subsection` (may hold dots) and `name` of a key as `git config --list`
/// prints it (section and name lower case).
fn split(key: &str) -> Option<(&str, Option<&str>, &str)> {
    let (section, rest) = key.split_once('.')?;
    match rest.rsplit_once('.') {
        Some((sub, name)) => Some((section, Some(sub), name)),
        None => Some((section, None, rest)),
    }
}

/// The neutral value of a key that makes git run a program, `None` for any other key.
/// `core.hooksPath` and `core.fsmonitor` are not here: `git_command` sets them always.
fn neutral(key: &str) -> Option<Neutral> {
    use Neutral::{Reset, Value};
    let (section, sub, name) = split(key)?;
    Some(match (section, sub, name) {
        // An empty command is no filter; `required` false lets git go on without one.
        ("filter", Some(_), "clean" | "smudge" | "process") => Value(""),
        ("filter", Some(_), "required") => Value("false"),
        ("merge", Some(_), "driver") => Value(MERGE_FILE),
        ("merge", Some(_), "recursive") => Value("text"),
        ("diff", None, "external") => Value(""),
        ("diff", Some(_), "textconv" | "command") => Value(""),
        ("difftool" | "mergetool", Some(_), "cmd") => Value(""),
        ("gpg", None, "program") => Value("gpg"),
        ("gpg", Some("openpgp"), "program") => Value("gpg"),
        ("gpg", Some("x509"), "program") => Value("gpgsm"),
        ("gpg", Some("ssh"), "program") => Value("ssh-keygen"),
        ("gpg", Some(_), "program" | "defaultkeycommand") => Value(""),
        ("core", None, "sshcommand") => Value("ssh"),
        // `:` is the editor git never starts; `cat` the pager it never starts.
        ("core" | "sequence", None, "editor") => Value(":"),
        ("core", None, "pager") => Value("cat"),
        ("pager", None, _) => Value("false"),
        ("core", None, "askpass") => Value(""),
        ("credential", _, "helper") => Reset,
        ("core", None, "alternaterefscommand") => Value(""),
        ("uploadpack", None, "packobjectshook") => Value(""),
        ("remote", Some(_), "uploadpack") => Value("git-upload-pack"),
        ("remote", Some(_), "receivepack") => Value("git-receive-pack"),
        ("submodule", Some(_), "update") => Value("none"),
        ("trailer", Some(_), "command" | "cmd") => Value(""),
        _ => return None,
    })
}

/// Whether `key` makes git run a program (see [`neutral`]; `core.hooksPath` and
/// `core.fsmonitor` too).
pub(crate) fn runs_code(key: &str) -> bool {
    key == "core.hookspath" || key == "core.fsmonitor" || neutral(key).is_some()
}

/// The keys pinned together with `key`: a driver's others (`filter.<x>.*`,
/// `merge.<x>.*`), so a driver is the user's whole or none at all.
fn group(key: &str) -> Vec<String> {
    let names: &[&str] = match split(key) {
        Some(("filter", Some(_), _)) => &["clean", "smudge", "process", "required"],
        Some(("merge", Some(_), _)) => &["driver", "recursive"],
        _ => return vec![key.to_owned()],
    };
    let (head, _) = key.rsplit_once('.').unwrap_or((key, ""));
    names.iter().map(|n| format!("{head}.{n}")).collect()
}

/// One entry of `git config --list --show-origin --show-scope -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    scope: String,
    /// The file it is in (`None`: the command line, a blob, stdin).
    origin: Option<PathBuf>,
    key: String,
    value: String,
}

fn parse(out: &[u8], dir: &Path) -> Vec<Item> {
    let mut items = Vec::new();
    let mut parts = out.split(|b| *b == 0);
    while let (Some(scope), Some(origin), Some(kv)) = (parts.next(), parts.next(), parts.next()) {
        let kv = String::from_utf8_lossy(kv);
        let (key, value) = kv.split_once('\n').unwrap_or((&kv, "true"));
        let origin = String::from_utf8_lossy(origin);
        items.push(Item {
            scope: String::from_utf8_lossy(scope).into_owned(),
            origin: origin.strip_prefix("file:").map(|p| dir.join(p)),
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    items
}

/// The code-running keys of `items` and their values, in git's order.
fn code_map<'a>(items: impl Iterator<Item = &'a Item>) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in items.filter(|i| neutral(&i.key).is_some()) {
        map.entry(i.key.clone()).or_default().push(i.value.clone());
    }
    map
}

/// The `(key, value)` pins that make `now` be `base` (see [`neutral`]), in key order.
fn pins_for(
    base: &BTreeMap<String, Vec<String>>,
    now: &BTreeMap<String, Vec<String>>,
) -> Vec<(String, String)> {
    let differ: std::collections::BTreeSet<String> = base
        .keys()
        .chain(now.keys())
        .filter(|k| base.get(*k) != now.get(*k))
        .flat_map(|k| group(k))
        .collect();
    let mut out = Vec::new();
    for key in differ {
        let mine = base.get(&key);
        match neutral(&key) {
            Some(Neutral::Reset) => {
                out.push((key.clone(), String::new()));
                for v in mine.into_iter().flatten() {
                    out.push((key.clone(), v.clone()));
                }
            }
            Some(Neutral::Value(v)) => {
                let value = mine.and_then(|m| m.last()).map_or(v, String::as_str);
                out.push((key.clone(), value.to_owned()));
            }
            None => {}
        }
    }
    out
}

/// What a file was: device, inode, length, change time (`None`: absent).
type Stat = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stat(p: &Path) -> Stat {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// The user's code-running keys when a run of a repository began.
#[derive(Debug, Clone, Default)]
struct Baseline {
    /// In the main worktree, every scope.
    all: BTreeMap<String, Vec<String>>,
    /// The system, global and command-line scopes alone (what a repository without a
    /// baseline of its own is held to: one an agent made).
    outer: BTreeMap<String, Vec<String>>,
    /// When it was taken (seconds): a file changed since is told.
    since: i64,
    /// `<common>/config` and `<common>/config.worktree`: the planted watch tells
    /// their changes.
    watched: Vec<PathBuf>,
}

/// One directory's pins and the files they were read from.
#[derive(Debug)]
struct Seen {
    files: Vec<(PathBuf, Stat)>,
    pins: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct State {
    /// By common git dir (canonical).
    baselines: HashMap<PathBuf, Baseline>,
    /// The common dir of the run begun last.
    latest: Option<PathBuf>,
    /// By directory and the arguments before the command (`--git-dir …`).
    cache: HashMap<(PathBuf, Vec<OsString>), Seen>,
    notes: Vec<String>,
    noted: HashSet<String>,
}

static STATE: std::sync::Mutex<Option<State>> = std::sync::Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Now, in nanoseconds since the epoch.
fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// How long before a listing a file's change makes its stat untrusted (well over a
/// file system clock's tick).
const RACY_NANOS: i128 = 100_000_000;

/// `git -C dir PRE config --list --show-origin --show-scope -z` (not through
/// `git_command`, whose pins this makes; `git config` runs nothing).
fn list(dir: &Path, pre: &[&OsStr]) -> Option<Vec<Item>> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(pre)
        .args(["config", "--list", "--show-origin", "--show-scope", "-z"])
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_COMMON_DIR")
        .stdin(std::process::Stdio::null());
    // Within the bound every git of qw's has: a FIFO where git reads its config (or its
    // repository search) must not hold the run for good.
    let out = super::bounded::output(cmd, None, None).ok()?.out;
    out.status.success().then(|| parse(&out.stdout, dir))
}

/// The git dir of `dir` (`--git-dir` in `pre`, else the `.git` found from `dir` up).
fn git_dir_of(dir: &Path, pre: &[&OsStr]) -> Option<PathBuf> {
    if let Some(i) = pre.iter().position(|a| *a == "--git-dir") {
        return pre.get(i + 1).map(|g| dir.join(g));
    }
    let mut at = Some(dir);
    while let Some(d) = at {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Some(dot);
        }
        if let Ok(text) = crate::fs::read_regular_whole(&dot, 4096) {
            let text = String::from_utf8_lossy(&text);
            return text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("gitdir:"))
                .map(|g| d.join(g.trim()));
        }
        at = d.parent();
    }
    None
}

/// Every file whose change could change what `git config --list` in `dir` says:
/// those it read, the targets of its includes (found or not), the global and system
/// files, the worktree's `config.worktree` (and its `HEAD` for `includeIf onbranch:`).
fn files_of(dir: &Path, pre: &[&OsStr], items: &[Item]) -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let home = env("HOME").map(PathBuf::from);
    let mut files: Vec<PathBuf> = items.iter().filter_map(|i| i.origin.clone()).collect();
    for i in items {
        let include = i.key == "include.path"
            || (i.key.starts_with("includeif.") && i.key.ends_with(".path"));
        if !include {
            continue;
        }
        let target = match (i.value.strip_prefix("~/"), &home) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => {
                let base = i
                    .origin
                    .as_deref()
                    .map(crate::fs::parent_dir)
                    .unwrap_or_else(|| dir.to_path_buf());
                base.join(&i.value)
            }
        };
        files.push(target);
    }
    match env("GIT_CONFIG_GLOBAL") {
        Some(g) => files.push(PathBuf::from(g)),
        None => {
            if let Some(h) = &home {
                files.push(h.join(".gitconfig"));
            }
            match (env("XDG_CONFIG_HOME"), &home) {
                (Some(x), _) => files.push(PathBuf::from(x).join("git/config")),
                (None, Some(h)) => files.push(h.join(".config/git/config")),
                _ => {}
            }
        }
    }
    if env("GIT_CONFIG_NOSYSTEM").is_none() {
        files.push(env("GIT_CONFIG_SYSTEM").map_or_else(|| "/etc/gitconfig".into(), PathBuf::from));
    }
    // A linked worktree's `.git` file (which git dir it is); the main worktree's
    // `.git` directory changes with every ref and lock and tells nothing here.
    let dot = dir.join(".git");
    if dot.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        files.push(dot);
    }
    if let Some(g) = git_dir_of(dir, pre) {
        files.push(g.join("config.worktree"));
        if items.iter().any(|i| i.key.starts_with("includeif.")) {
            files.push(g.join("HEAD"));
        }
    }
    files.sort();
    files.dedup();
    files
}

/// From now on, the code-running keys git sees in `top` (the main worktree of the
/// repository whose common git dir is `common`) are the user's: each git of qw's in
/// this repository is held to them (see [`pins`]).
pub(crate) fn begin(top: &Path, common: &Path) {
    let items = list(top, &[]).unwrap_or_default();
    let outer = code_map(
        items
            .iter()
            .filter(|i| matches!(i.scope.as_str(), "system" | "global" | "command")),
    );
    let base = Baseline {
        all: code_map(items.iter()),
        outer,
        since: now_secs(),
        watched: vec![common.join("config"), common.join("config.worktree")],
    };
    let common = std::fs::canonicalize(common).unwrap_or_else(|_| common.to_path_buf());
    let mut guard = state();
    let st = guard.get_or_insert_with(State::default);
    st.baselines.insert(common.clone(), base);
    st.latest = Some(common);
    st.cache.clear();
}

/// The `(key, value)` pairs that hold the code-running keys of a git run in `dir` (with
/// `pre` before its command) to the user's (see the module doc); empty when no run
/// began in this process or nothing differs.
pub(crate) fn pins(dir: &Path, pre: &[&OsStr]) -> Vec<(String, String)> {
    let key = (
        dir.to_path_buf(),
        pre.iter().map(|a| a.to_os_string()).collect::<Vec<_>>(),
    );
    {
        let guard = state();
        let Some(st) = guard.as_ref() else {
            return Vec::new();
        };
        if let Some(seen) = st.cache.get(&key)
            && seen.files.iter().all(|(p, s)| stat(p) == *s)
        {
            return seen.pins.clone();
        }
    }
    let started = now_nanos();
    let Some(items) = list(dir, pre) else {
        return Vec::new();
    };
    let files = files_of(dir, pre, &items);
    let stats: Vec<(PathBuf, Stat)> = files.into_iter().map(|p| (p.clone(), stat(&p))).collect();
    let mut guard = state();
    let Some(st) = guard.as_mut() else {
        return Vec::new();
    };
    // The repository: the common dir holding the local config.
    let common = items
        .iter()
        .find(|i| i.scope == "local")
        .and_then(|i| i.origin.as_deref())
        .map(crate::fs::parent_dir)
        .and_then(|c| std::fs::canonicalize(c).ok());
    let base = common
        .as_ref()
        .and_then(|c| st.baselines.get(c))
        .map(|b| (b.all.clone(), b))
        .or_else(|| {
            let b = st.baselines.get(st.latest.as_ref()?)?;
            Some((b.outer.clone(), b))
        });
    let Some((base_map, b)) = base else {
        return Vec::new();
    };
    let now = code_map(items.iter());
    let pins = pins_for(&base_map, &now);
    let (since, watched) = (b.since, b.watched.clone());
    // A key set by a file changed since the run began (the user's own files, from
    // before, are held silently): told once.
    for k in base_map.keys().chain(now.keys()) {
        if base_map.get(k) == now.get(k) {
            continue;
        }
        let Some(item) = items.iter().rev().find(|i| &i.key == k) else {
            continue;
        };
        let Some(origin) = &item.origin else { continue };
        if watched.iter().any(|w| w == origin) {
            continue;
        }
        let changed = stats
            .iter()
            .find(|(p, _)| p == origin)
            .and_then(|(_, s)| *s)
            .is_some_and(|s| s.3.max(s.5) >= since);
        let line = format!(
            "`{}` sets `{k}` = `{}`, which it did not when the run began: qw's own git does not run it (your git would: look at that file)",
            origin.display(),
            item.value
        );
        if changed && st.noted.insert(line.clone()) {
            st.notes.push(line);
        }
    }
    // A file changed just before the listing began may change again within the same
    // tick of the file system's clock (a few milliseconds) without its stat changing:
    // read again next time.
    let racy = stats.iter().any(|(_, s)| {
        s.is_some_and(|s| {
            let m = i128::from(s.3) * 1_000_000_000 + i128::from(s.4);
            let c = i128::from(s.5) * 1_000_000_000 + i128::from(s.6);
            m.max(c) >= started - RACY_NANOS
        })
    });
    if !racy {
        st.cache.insert(
            key,
            Seen {
                files: stats,
                pins: pins.clone(),
            },
        );
    }
    pins
}

/// The notes of keys set by files changed since the run began, not taken yet.
pub(crate) fn take_notes() -> Vec<String> {
    state()
        .as_mut()
        .map(|st| std::mem::take(&mut st.notes))
        .unwrap_or_default()
}

/// Add `pins` to `cmd`'s environment after any `GIT_CONFIG_COUNT` entries qw itself
/// was given.
pub(crate) fn apply(cmd: &mut std::process::Command, pins: &[(String, String)]) {
    if pins.is_empty() {
        return;
    }
    let first: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    for (n, (k, v)) in pins.iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{}", first + n), k);
        cmd.env(format!("GIT_CONFIG_VALUE_{}", first + n), v);
    }
    cmd.env("GIT_CONFIG_COUNT", (first + pins.len()).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry((*k).to_owned()).or_default().push((*v).to_owned());
        }
        m
    }

    #[test]
    fn the_class_is_the_keys_that_run_a_program() {
        for k in [
            "filter.lfs.clean",
            "filter.a=b.process",
            "merge.evil.driver",
            "diff.external",
            "diff.pdf.textconv",
            "gpg.program",
            "gpg.ssh.program",
            "core.sshcommand",
            "core.editor",
            "sequence.editor",
            "core.pager",
            "pager.log",
            "core.askpass",
            "credential.helper",
            "credential.https://x.example.helper",
            "core.alternaterefscommand",
            "uploadpack.packobjectshook",
            "core.hookspath",
            "core.fsmonitor",
        ] {
            assert!(runs_code(k), "{k}");
        }
        for k in [
            "user.email",
            "remote.origin.url",
            "branch.main.merge",
            "core.autocrlf",
            "filter.x",
            "merge.ff",
        ] {
            assert!(!runs_code(k), "{k}");
        }
    }

    #[test]
    fn pins_put_the_users_values_back_and_neutralise_the_others() {
        let base = map(&[
            ("filter.lfs.clean", "git-lfs clean -- %f"),
            ("credential.helper", "cache"),
        ]);
        assert!(pins_for(&base, &base).is_empty());
        let now = map(&[
            ("filter.lfs.clean", "git-lfs clean -- %f"),
            ("filter.a=b.smudge", "/tmp/evil"),
            ("merge.m.driver", "/tmp/evil %A"),
            ("credential.helper", "cache"),
            ("credential.helper", "/tmp/evil"),
            ("gpg.program", "/tmp/evil"),
        ]);
        let pins = pins_for(&base, &now);
        let has = |k: &str, v: &str| pins.contains(&(k.to_owned(), v.to_owned()));
        assert!(
            has("filter.a=b.smudge", "") && has("filter.a=b.clean", ""),
            "{pins:?}"
        );
        assert!(has("filter.a=b.required", "false"), "{pins:?}");
        assert!(has("merge.m.driver", MERGE_FILE), "{pins:?}");
        assert!(has("gpg.program", "gpg"), "{pins:?}");
        // A list: emptied, then the user's put back, in that order.
        let cred: Vec<&str> = pins
            .iter()
            .filter(|(k, _)| k == "credential.helper")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cred, ["", "cache"]);
        // The user's own filter, unchanged, is not pinned.
        assert!(
            !pins.iter().any(|(k, _)| k.starts_with("filter.lfs")),
            "{pins:?}"
        );
        // The user's filter changed: all of it is theirs again.
        let changed = map(&[
            ("filter.lfs.clean", "/tmp/evil"),
            ("credential.helper", "cache"),
        ]);
        let pins = pins_for(&base, &changed);
        assert!(
            pins.contains(&("filter.lfs.clean".into(), "git-lfs clean -- %f".into())),
            "{pins:?}"
        );
    }

    #[test]
    fn the_listing_is_parsed_with_its_scopes_and_files() {
        let out = b"local\0file:.git/config\0filter.x.clean\ncat\0global\0file:/h/.gitconfig\0core.bare\0command\0command line:\0a.b\nc\nd\0";
        let items = parse(out, Path::new("/r"));
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].origin.as_deref(),
            Some(Path::new("/r/.git/config"))
        );
        assert_eq!(items[0].value, "cat");
        assert_eq!(items[1].value, "true");
        assert_eq!(items[2].origin, None);
        assert_eq!(items[2].value, "c\nd");
    }
}
