//! Git repositories and worktrees an agent made inside its task worktree (`git worktree
//! add sub`, `git init inner`, `git clone …`): never part of the task's result, never
//! deleted with the task's worktree.
//!
//! `git add -A` would stage each as a gitlink (mode 160000, no `.gitmodules`), which a
//! merge would carry into the target as a pointer to commits the target's repository
//! may not even hold; and removing the task worktree would delete the nested one's
//! uncommitted files — and its own `.git` with every commit of a nested repository, or
//! leave a nested detached worktree's commits to `git worktree prune`. So: each nested
//! one is left out of the staging ([`exclusions`]), a gitlink the result would bring
//! that the target does not have is unstaged ([`unstage_new_gitlinks`]), and a task
//! worktree holding one is not removed: it is kept, and [`survey`] names each nested
//! one, what it holds and how to move it out without loss (a submodule whose repository
//! lives in the task worktree's git dir, one in a directory the project tracks). Nested
//! repositories that are not the agent's work — the project's own submodule at its
//! recorded commit, one under an ignored directory with no commit of its own — keep
//! nothing. Nor is a worktree removed whose git dir holds a submodule's repository with
//! commits found nowhere else ([`modules_at_risk`]).

use std::path::{Path, PathBuf};

use super::shell::quote;
use super::tree::Tree;
use super::{Repo, Result, git_output};

/// The directories (relative to the work tree, no trailing `/`) inside the task worktree
/// that are git repositories or worktrees of their own: what `git ls-files --others`
/// (ignored ones included) shows as `dir/`, plus the gitlinks staged in its index whose
/// directory holds a `.git`, plus the directories of HEAD's tree holding a `.git` (a
/// `git init` in a tracked directory).
pub(crate) fn find(t: &Tree<'_>) -> Result<Vec<String>> {
    find_in(t, &["ls-files", "--others", "-z"])
}

/// What [`find`] finds outside ignored directories: what `git add -A` would stage
/// (naming an ignored one in its pathspec would fail it).
pub(crate) fn find_staged(t: &Tree<'_>) -> Result<Vec<String>> {
    find_in(t, &["ls-files", "--others", "--exclude-standard", "-z"])
}

fn find_in(t: &Tree<'_>, ls: &[&str]) -> Result<Vec<String>> {
    if !t.path().is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = t
        .run(ls)?
        .split('\0')
        .filter_map(|p| p.strip_suffix('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for (path, _) in index_gitlinks(t)? {
        if t.path().join(&path).join(".git").symlink_metadata().is_ok() && !out.contains(&path) {
            out.push(path);
        }
    }
    // A repository made in a directory the project tracks (`git init src`): git walks
    // into it as a plain directory, so it is not among the above. Each directory of
    // HEAD's tree (at most [`MAX_TRACKED_DIRS`]) holding a `.git` of its own.
    // Never a repository above the worktree: with its `.git` deleted by the agent, git's
    // search would go on up and list another repository's tree.
    let ceiling = t.path().parent().unwrap_or(t.path()).as_os_str();
    let dirs = git_output(
        t.path(),
        ["ls-tree", "-r", "-d", "-z", "--name-only", "HEAD"],
        &[("GIT_CEILING_DIRECTORIES", ceiling)],
    )?;
    if dirs.status.success() {
        let text = String::from_utf8_lossy(&dirs.stdout);
        for d in text
            .split('\0')
            .filter(|d| !d.is_empty())
            .take(MAX_TRACKED_DIRS)
        {
            let inside = out
                .iter()
                .any(|o| d == o || d.starts_with(&format!("{o}/")));
            if !inside && t.path().join(d).join(".git").symlink_metadata().is_ok() {
                out.push(d.to_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// How many tracked directories [`find`] looks into for a `.git` of their own.
const MAX_TRACKED_DIRS: usize = 100_000;

/// `:(exclude,literal)<dir>` for each nested repository: `git add -A -- :/ <these>`
/// stages everything else.
pub(crate) fn exclusions(nested: &[String]) -> Vec<String> {
    nested
        .iter()
        .map(|n| format!(":(exclude,literal){n}"))
        .collect()
}

/// `(path, sha)` of each gitlink (mode 160000) in the worktree's index.
fn index_gitlinks(t: &Tree<'_>) -> Result<Vec<(String, String)>> {
    Ok(t.run(&["ls-files", "-s", "-z"])?
        .split('\0')
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            let mut m = meta.split(' ');
            (m.next()? == "160000").then(|| (path.to_owned(), m.next().unwrap_or("").to_owned()))
        })
        .collect())
}

/// Unstage every gitlink in the worktree's index that is not a gitlink in `base` (the
/// target): the result never brings in a repository the agent nested in its worktree
/// (staged by it, or committed). Returns the paths unstaged.
pub(crate) fn unstage_new_gitlinks(t: &Tree<'_>, base: Option<&str>) -> Result<Vec<String>> {
    let links = index_gitlinks(t)?;
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let known: Vec<String> = match base {
        Some(b) => {
            let mut args = vec!["ls-tree", "-z", b, "--"];
            args.extend(links.iter().map(|(p, _)| p.as_str()));
            t.run(&args)?
                .split('\0')
                .filter_map(|l| {
                    let (meta, path) = l.split_once('\t')?;
                    meta.starts_with("160000 ").then(|| path.to_owned())
                })
                .collect()
        }
        None => Vec::new(),
    };
    let new: Vec<String> = links
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !known.contains(p))
        .collect();
    if !new.is_empty() {
        let mut args = vec!["update-index", "--force-remove", "--"];
        args.extend(new.iter().map(String::as_str));
        t.run(&args)?;
    }
    Ok(new)
}

/// The file in a task worktree's git dir naming (one a line, relative to the work tree)
/// the nested repositories it was kept for: once one is moved out, the deletion of the
/// project's tracked files that went with it (`mv src …` of a `git init src`, a
/// registered submodule's gitlink) is not the task's work ([`vanished`]).
const KEPT_FOR: &str = "qw-nested";

/// Run git in `dir` (a nested repository); its trimmed stdout on success.
fn run_in(dir: &Path, args: &[&str]) -> Option<String> {
    let out = git_output(dir, args, &[]).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Run git on the git dir `git_dir` alone (`--work-tree` is the git dir itself, so a
/// `core.worktree` naming a directory that is gone does not stop it); trimmed stdout.
fn run_on(git_dir: &Path, args: &[&str]) -> Option<String> {
    let pre = [
        std::ffi::OsStr::new("--git-dir"),
        git_dir.as_os_str(),
        std::ffi::OsStr::new("--work-tree"),
        git_dir.as_os_str(),
    ];
    let out = super::spawn_output(super::git_command(git_dir, &pre, args, &[]), git_dir).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The commits of the repository whose git dir is `git_dir` that it holds only itself:
/// reachable from its branches, HEAD or reflogs, but from none of the refs that show a
/// repository outliving the task worktree holds them ([`vouchers`]: never its own tags,
/// nor a remote-tracking ref pointing into the worktree), nor from `also` (commits the
/// project records for it). `doomed`: the task worktree and its git dir, removed with
/// it. `None` when git cannot tell.
fn own_commits(git_dir: &Path, also: &[String], doomed: &[&Path]) -> Option<Vec<String>> {
    let vouch = vouchers(git_dir, doomed);
    let mut args = vec!["rev-list", "--all", "--reflog", "--not"];
    args.extend(vouch.iter().map(String::as_str));
    let known: Vec<&String> = also
        .iter()
        .filter(|c| run_on(git_dir, &["cat-file", "-e", &format!("{c}^{{commit}}")]).is_some())
        .collect();
    args.extend(known.iter().map(|c| c.as_str()));
    run_on(git_dir, &args).map(|o| o.lines().map(str::to_owned).collect())
}

/// Where a remote's URL is.
enum Remote {
    /// A repository on this machine.
    Local(PathBuf),
    /// Elsewhere (`https://`, `ssh://`, `host:path`).
    Network,
    /// A relative path, a transport helper: qw does not look.
    Unknown,
}

fn remote_of(url: &str) -> Remote {
    if let Some(p) = url.strip_prefix("file://") {
        return Remote::Local(PathBuf::from(p));
    }
    if url.starts_with('/') {
        return Remote::Local(PathBuf::from(url));
    }
    if url.contains("::") || url.starts_with('.') {
        return Remote::Unknown;
    }
    if url.contains("://") || url.split_once(':').is_some_and(|(h, _)| !h.contains('/')) {
        return Remote::Network;
    }
    Remote::Unknown
}

/// The commits (ids) of `git_dir`'s remote-tracking refs that a repository outliving the
/// task worktree holds (rev6b G1): the remote is a repository on this machine, not
/// inside `doomed`, that has the commit; or the remote is elsewhere and the ref was last
/// written by a `fetch`, `clone` or `pull` (its reflog says so). A tag never vouches
/// (`git tag` is local: one made in the repository removed with the worktree would make
/// a commit found nowhere else look held), nor a ref of a remote pointing into the task
/// worktree (`git remote add b <itself>; git fetch b`), nor a ref written by
/// `update-ref`.
fn vouchers(git_dir: &Path, doomed: &[&Path]) -> Vec<String> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let doomed: Vec<PathBuf> = doomed
        .iter()
        .map(|d| canon(d))
        .chain([canon(git_dir)])
        .collect();
    let mut remotes: Vec<(String, Remote)> =
        run_on(git_dir, &["config", "--get-regexp", r"^remote\..*\.url$"])
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, url) = l.split_once(' ')?;
                let name = k.strip_prefix("remote.")?.strip_suffix(".url")?;
                Some((name.to_owned(), remote_of(url)))
            })
            .collect();
    // The longest name first: `a/b` before `a`.
    remotes.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let refs = run_on(
        git_dir,
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/remotes/",
        ],
    )
    .unwrap_or_default();
    let mut out = Vec::new();
    for line in refs.lines() {
        let Some((sha, name)) = line.split_once(' ') else {
            continue;
        };
        let Some((_, remote)) = remotes
            .iter()
            .find(|(r, _)| name.starts_with(&format!("refs/remotes/{r}/")))
        else {
            continue;
        };
        let held = match remote {
            Remote::Local(path) => {
                let path = canon(path);
                !doomed
                    .iter()
                    .any(|d| path.starts_with(d) || d.starts_with(&path))
                    && path.exists()
                    && run_in(&path, &["cat-file", "-e", &format!("{sha}^{{commit}}")]).is_some()
            }
            Remote::Network => fetched(git_dir, name),
            Remote::Unknown => false,
        };
        if held {
            out.push(sha.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Was `refname` of `git_dir` last written by a `fetch`, `clone` or `pull` (its reflog
/// file's newest entry)?
fn fetched(git_dir: &Path, refname: &str) -> bool {
    let Ok(log) = crate::fs::read_tail_regular(&git_dir.join("logs").join(refname), 4096) else {
        return false;
    };
    String::from_utf8_lossy(&log)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.split_once('\t'))
        .is_some_and(|(_, m)| ["fetch", "clone", "pull"].iter().any(|w| m.starts_with(w)))
}

/// The commits of the submodule repository `git_dir` that exist nowhere else: its own
/// ([`own_commits`], `also` left out) less those the superproject's own copy of that
/// submodule (`<common dir>/modules/<name>`, the main worktree's) holds on its refs or
/// reflogs. A commit the target or the task's result records for it vouches for
/// nothing: recorded by the agent's own bump, it may be in this repository only
/// (rev5b F2); nor do this repository's own tags (rev6b G1). `None` when git cannot tell.
fn only_here(
    repo: &Repo,
    git_dir: &Path,
    name: Option<&str>,
    also: &[String],
    doomed: &[&Path],
) -> Option<Vec<String>> {
    let mine = own_commits(git_dir, also, doomed)?;
    if mine.is_empty() {
        return Some(mine);
    }
    let Some(common) = name.map(|n| common_module(repo, n)).filter(|c| c.is_dir()) else {
        return Some(mine);
    };
    let held: std::collections::BTreeSet<String> =
        match run_on(&common, &["rev-list", "--all", "--reflog"]) {
            Some(o) => o.lines().map(str::to_owned).collect(),
            None => return Some(mine),
        };
    Some(mine.into_iter().filter(|c| !held.contains(c)).collect())
}

/// The superproject's own repository of the submodule `name` (`<common dir>/modules/<name>`).
fn common_module(repo: &Repo, name: &str) -> PathBuf {
    repo.common_dir.join("modules").join(name)
}

/// The command that keeps the commits of the submodule repository `module` (in a task
/// worktree's git dir) in the project's own copy of it (`<common dir>/modules/<name>`,
/// when there is one), on refs `refs/qw-kept/<task branch>/…` there: its branches and
/// its HEAD. Then nothing of it is lost when the worktree goes, and the project's
/// `git submodule update` finds a gitlink the task's result recorded.
fn keep_in_project(repo: &Repo, module: &Path, name: &str, branch: &str) -> Option<String> {
    let common = common_module(repo, name);
    if !common.is_dir() {
        return None;
    }
    let to = format!("refs/qw-kept/{branch}");
    Some(format!(
        "git --git-dir {} fetch -q {} {} {}",
        quote(&common.to_string_lossy()),
        quote(&module.to_string_lossy()),
        quote(&format!("+refs/heads/*:{to}/heads/*")),
        quote(&format!("+HEAD:{to}/HEAD")),
    ))
}

/// One nested repository, looked at.
struct Probe {
    /// Relative to the task worktree.
    rel: String,
    dir: PathBuf,
    /// A worktree of this repository.
    ours: bool,
    head: Option<String>,
    branch: Option<String>,
    /// Its git dir, when it lives in the task worktree's git dir (`<admin>/modules/…`:
    /// a submodule added or initialised in the worktree) — removed with the worktree, and
    /// left behind by a plain `mv` of the directory.
    module: Option<PathBuf>,
    /// Its own git dir.
    git_dir: Option<PathBuf>,
    /// Its submodule name, when its git dir is in the task worktree's (`module`).
    name: Option<String>,
    /// In a directory the project tracks (`git init src`): a `mv` of it takes the
    /// project's files too.
    tracked_dir: bool,
    /// Files `git status` shows there.
    dirty: usize,
}

fn probe(repo: &Repo, t: &Tree<'_>, rel: &str) -> Probe {
    let dir = t.path().join(rel);
    let canon = |p: PathBuf| p.canonicalize().ok();
    let common = run_in(
        &dir,
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    )
    .map(PathBuf::from)
    .and_then(canon);
    let ours = common.is_some() && common == repo.common_dir.canonicalize().ok();
    let git_dir = run_in(&dir, &["rev-parse", "--absolute-git-dir"])
        .map(PathBuf::from)
        .and_then(canon);
    let modules = canon(t.admin().join("modules"));
    let module = git_dir
        .clone()
        .filter(|g| !ours && modules.as_ref().is_some_and(|m| g.starts_with(m)));
    let name = match (&module, &modules) {
        (Some(g), Some(m)) => g
            .strip_prefix(m)
            .ok()
            .map(|r| r.to_string_lossy().into_owned()),
        _ => None,
    };
    let prefix = format!("{rel}/");
    let tracked_dir = t
        .run(&["ls-files", "-z", "--", &format!(":(literal){rel}")])
        .is_ok_and(|o| o.split('\0').any(|p| p.starts_with(&prefix)));
    let dirty = run_in(
        &dir,
        &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
    )
    .map(|s| s.split('\0').filter(|l| l.len() > 3).count())
    .unwrap_or(0);
    Probe {
        rel: rel.to_owned(),
        head: run_in(&dir, &["rev-parse", "-q", "--verify", "HEAD^{commit}"]),
        branch: run_in(&dir, &["symbolic-ref", "-q", "HEAD"]).and_then(|r| super::branch_name(&r)),
        dir,
        ours,
        module,
        git_dir,
        name,
        tracked_dir,
        dirty,
    }
}

/// The commit a gitlink at `rel` records in `rev`'s tree (`None`: no gitlink there).
fn gitlink_in(repo: &Repo, rev: &str, rel: &str) -> Option<String> {
    let out = run_in(&repo.top, &["ls-tree", "-z", rev, "--", rel])?;
    let (meta, path) = out.split('\0').next()?.split_once('\t')?;
    let mut m = meta.split(' ');
    (m.next()? == "160000" && path == rel).then(|| m.nth(1).unwrap_or("").to_owned())
}

/// Why a nested repository is not the agent's work, if it is not (rev3 M2): the
/// project's own submodule (a gitlink of `base`) at the commit recorded for it, nothing
/// changed in it and no commit of its own; or a repository under an ignored directory
/// (a build's `_deps/*-src`, a virtualenv's checkout) holding no commit of its own.
fn not_the_agents(
    p: &Probe,
    t: &Tree<'_>,
    repo: &Repo,
    base: Option<&str>,
    ignored: bool,
) -> Option<String> {
    if p.ours {
        return None;
    }
    let git_dir = p.git_dir.as_deref()?;
    let registered = base.and_then(|b| gitlink_in(repo, b, &p.rel));
    if let Some(recorded) = registered {
        let staged = index_gitlinks(t).ok().and_then(|l| {
            l.into_iter()
                .find(|(path, _)| *path == p.rel)
                .map(|(_, c)| c)
        });
        // Only commits found elsewhere (its remotes, tags, the project's own copy of
        // it) make it not the agent's: a gitlink the task's result records may be the
        // agent's own bump to a commit of its own (rev5b F2).
        let mine = only_here(
            repo,
            git_dir,
            p.name.as_deref(),
            &[],
            &[t.path(), t.admin()],
        )?;
        if p.dirty != 0 || !mine.is_empty() {
            return None;
        }
        if p.head.as_ref() == Some(&recorded) {
            return Some(format!(
                "`{}` is the project's own submodule at its recorded commit",
                p.rel
            ));
        }
        if p.head.is_some() && p.head == staged {
            return Some(format!(
                "`{}` is the project's own submodule at the commit the task's result records for it, which its remote holds",
                p.rel
            ));
        }
        return None;
    }
    if ignored && own_commits(git_dir, &[], &[t.path(), t.admin()])?.is_empty() {
        return Some(format!(
            "`{}` is a repository under an ignored directory with no commit of the agent's",
            p.rel
        ));
    }
    None
}

/// `rm -f <dir>/.git && mv <module> <dir>/.git && git config --file <dir>/.git/config
/// --unset core.worktree`: the repository whose git dir is `module` made one of its own
/// in `dir` (what `git submodule absorbgitdirs` does, backwards), so it survives the
/// task worktree's git dir; `mkdir -p <dir>` first when `make`. (`--file`: a `git -C`
/// would first go to the `core.worktree` it names, which may be gone.) `dir` is a path,
/// or a placeholder such as `<dest>` printed as it is.
fn take_out(module: &Path, dir: &str, make: bool) -> String {
    let word = |s: &str| {
        if dir.starts_with('<') {
            s.to_owned()
        } else {
            quote(s).into_owned()
        }
    };
    let dotgit = word(&format!("{dir}/.git"));
    let config = word(&format!("{dir}/.git/config"));
    format!(
        "{}rm -f {dotgit} && mv {} {dotgit} && git config --file {config} --unset core.worktree",
        if make {
            format!("mkdir -p {} && ", word(dir))
        } else {
            String::new()
        },
        quote(&module.to_string_lossy()),
    )
}

/// What one nested repository holds, in words, and how it is moved out without loss:
/// a worktree of this repository (its branch, or its detached HEAD and the commits on no
/// branch), a repository of its own (its commits, kept in its own `.git`), a submodule
/// whose repository lives in the task worktree's git dir, or one in a directory the
/// project tracks; and its uncommitted files.
fn describe(p: &Probe, repo: &Repo, branch: &str) -> String {
    let run = |args: &[&str]| run_in(&p.dir, args);
    let shown = p.dir.to_string_lossy().into_owned();
    let q = |s: &str| quote(s).into_owned();
    let mut parts = Vec::new();
    if p.ours {
        match (&p.branch, &p.head) {
            (Some(b), _) => parts.push(format!("a worktree of this repository on branch `{b}`")),
            (None, Some(h)) => {
                let n = run(&[
                    "rev-list",
                    "--count",
                    h,
                    "--not",
                    "--branches",
                    "--tags",
                    "--remotes",
                ])
                .unwrap_or_default();
                parts.push(format!(
                    "a worktree of this repository, detached at {} with {n} commit(s) on no branch",
                    &h[..h.len().min(10)]
                ));
            }
            (None, None) => parts.push("a worktree of this repository".to_owned()),
        }
    } else {
        let n = p
            .head
            .as_deref()
            .and_then(|h| run(&["rev-list", "--count", "--all", h]))
            .unwrap_or_else(|| "no".to_owned());
        match &p.module {
            Some(m) => parts.push(format!(
                "a submodule, {n} commit(s) in its repository `{}` inside the task worktree's git dir",
                m.display()
            )),
            None => parts.push(format!(
                "a repository of its own, {n} commit(s) in its own `.git`"
            )),
        }
    }
    if p.dirty > 0 {
        parts.push(format!("{} uncommitted file(s)", p.dirty));
    }
    if !p.ours {
        if let Some(m) = &p.module {
            parts.push(format!(
                "a plain `mv` would leave its repository behind, to be deleted with the worktree: move it out with `{} && mv {} <elsewhere>`",
                take_out(m, &shown, false),
                q(&shown)
            ));
            if let Some(keep) = p
                .name
                .as_deref()
                .and_then(|n| keep_in_project(repo, m, n, branch))
            {
                parts.push(format!(
                    "or, to leave it where it is, keep its commits in the project's own copy of that submodule with `{keep}`"
                ));
            }
        } else if p.tracked_dir {
            parts.push(format!(
                "in a directory the project tracks, whose files a `mv` would take along: copy it out and take its `.git` away with `cp -a {} <elsewhere> && rm -rf {}`",
                q(&shown),
                q(&format!("{shown}/.git"))
            ));
        }
    }
    format!("`{shown}` ({})", parts.join(", "))
}

/// What the nested repositories of a task worktree mean for its removal.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// The line saying the worktree is kept (not removed), naming each nested repository
    /// the agent made and how to move it out; `None`: it can be removed.
    pub(crate) kept: Option<String>,
    /// One line naming the nested repositories that are not the agent's work (the
    /// project's own submodule, one under an ignored directory): removed with it.
    pub(crate) note: Option<String>,
}

/// The nested repositories of the task worktree at `path` (`base`: the target it merges
/// into): those that keep it, and those that do not (see [`not_the_agents`]). Those that
/// keep it are recorded in its git dir ([`KEPT_FOR`]).
pub(crate) fn survey(repo: &Repo, t: &Tree<'_>, path: &Path, base: &str) -> Survey {
    let Ok(nested) = find(t) else {
        return Survey::default();
    };
    if nested.is_empty() {
        return Survey::default();
    }
    let staged = find_staged(t).unwrap_or_default();
    let base = repo.commit_of(base).ok().flatten();
    let mut kept = Vec::new();
    let mut not_agents = Vec::new();
    for n in &nested {
        let p = probe(repo, t, n);
        let ignored = !staged.contains(n);
        match not_the_agents(&p, t, repo, base.as_deref(), ignored) {
            Some(why) => not_agents.push(why),
            None => kept.push(p),
        }
    }
    if kept.is_empty() {
        let note = (!not_agents.is_empty()).then(|| {
            format!(
                "{} (not the agent's work), so the worktree `{}` was removed as usual",
                not_agents.join("; "),
                path.display()
            )
        });
        return Survey { kept: None, note };
    }
    let record: String = kept.iter().map(|p| format!("{}\n", p.rel)).collect();
    let _ = crate::fs::write(t.admin().join(KEPT_FOR), record);
    let what: Vec<String> = kept.iter().map(|p| describe(p, repo, t.branch())).collect();
    // `git submodule add` also wrote an entry for it (left out of the result too).
    let modules = crate::fs::read_to_string(path.join(".gitmodules")).unwrap_or_default();
    let named = kept.iter().any(|p| {
        modules.lines().any(|l| {
            l.trim()
                .strip_prefix("path")
                .map(|r| r.trim_start().trim_start_matches('=').trim())
                == Some(p.rel.as_str())
        })
    });
    let mut how = Vec::new();
    if kept.iter().any(|p| p.ours) {
        how.push("`git worktree move <it> <elsewhere>` for a worktree");
    }
    if kept
        .iter()
        .any(|p| !p.ours && p.module.is_none() && !p.tracked_dir)
    {
        how.push("`mv <it> <elsewhere>` for a repository");
    }
    let special = kept
        .iter()
        .any(|p| !p.ours && (p.module.is_some() || p.tracked_dir));
    let how = match (how.is_empty(), special) {
        (true, _) => "with the command named for it".to_owned(),
        (false, false) => format!("({})", how.join(", ")),
        (false, true) => format!(
            "({}, the others with the command named for them)",
            how.join(", ")
        ),
    };
    let kept_line = format!(
        "kept the worktree `{}` (not removed; its own work is saved on branch `{}`): it holds git repositories or worktrees its agent made, which qw never merges nor deletes: {}{}; move each out {}, then run `qw worktrees --prune`",
        path.display(),
        t.branch(),
        what.join(", "),
        if named {
            " (their `.gitmodules` entries are not merged either)"
        } else {
            ""
        },
        how
    );
    let others = if not_agents.is_empty() {
        String::new()
    } else {
        format!(" ({}: not the agent's work)", not_agents.join("; "))
    };
    Survey {
        kept: Some(format!("{kept_line}{others}")),
        note: None,
    }
}

/// One warning line for each repository nested in the task worktree that the agent
/// made (a `git submodule add`, a `git clone`/`git init` of its own) and that `result`
/// (the task's merged commit) left out: `rels`, the paths [`super::tree::stage`] left
/// out. Not told: the project's own submodule at its recorded commit, one under an
/// ignored directory, a worktree of this repository (told by `Worktrees::foreign`), a
/// gitlink the result does hold at the nested repository's commit. Each line names the
/// path, says it was not merged and where it is, and gives the command that adds it
/// as a submodule by hand (`git -C <top> submodule add <url> <path>`, the URL from the
/// worktree's `.gitmodules`, else the repository's `origin`; `<url>` when it has none).
pub(crate) fn not_merged(
    repo: &Repo,
    t: &Tree<'_>,
    rels: &[String],
    result: Option<&str>,
    base: &str,
) -> Vec<String> {
    if rels.is_empty() {
        return Vec::new();
    }
    let base = repo.commit_of(base).ok().flatten();
    let modules = t.path().join(".gitmodules");
    let url_in_modules = |rel: &str| -> Option<String> {
        let file = modules.to_string_lossy().into_owned();
        let paths = run_in(
            &repo.top,
            &[
                "config",
                "--file",
                &file,
                "--get-regexp",
                r"^submodule\..*\.path$",
            ],
        )?;
        let key = paths.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (v == rel).then(|| k.strip_suffix(".path").unwrap_or(k).to_owned())
        })?;
        run_in(
            &repo.top,
            &["config", "--file", &file, &format!("{key}.url")],
        )
    };
    let mut out = Vec::new();
    for rel in rels {
        if t.path().join(rel).join(".git").symlink_metadata().is_err() {
            continue;
        }
        let p = probe(repo, t, rel);
        if p.ours || not_the_agents(&p, t, repo, base.as_deref(), false).is_some() {
            continue;
        }
        if let (Some(r), Some(h)) = (result, &p.head)
            && gitlink_in(repo, r, rel).as_ref() == Some(h)
        {
            continue;
        }
        let at = p
            .head
            .as_deref()
            .map(|h| format!(", at {},", &h[..h.len().min(10)]))
            .unwrap_or_default();
        if base
            .as_deref()
            .is_some_and(|b| gitlink_in(repo, b, rel).is_some())
        {
            // The project's own submodule, changed by the agent: nothing to add.
            let dir = quote(&p.dir.to_string_lossy()).into_owned();
            out.push(format!(
                "`{rel}` (the project's own submodule, changed by its agent) was not merged: qw never merges a repository nested in a task worktree, so `{}`'s merge leaves the submodule at the commit the target records; the agent's copy{at} with its changes stays in `{}` (`git -C {dir} status` and `git -C {dir} log` show them)",
                t.branch(),
                p.dir.display()
            ));
            continue;
        }
        let in_modules = url_in_modules(rel);
        let (kind, what) = if p.module.is_some() || in_modules.is_some() {
            (
                "a submodule its agent added with `git submodule add`",
                "it and its `.gitmodules` entry are",
            )
        } else {
            ("a repository its agent made or cloned there", "it is")
        };
        let url = in_modules.or_else(|| run_in(&p.dir, &["remote", "get-url", "origin"]));
        let local = url
            .as_deref()
            .is_some_and(|u| u.starts_with('/') || u.starts_with('.') || u.starts_with("file:"));
        let add = format!(
            "git -C {}{} submodule add {} {}",
            quote(&repo.top.to_string_lossy()),
            if local {
                " -c protocol.file.allow=always"
            } else {
                ""
            },
            url.as_deref().map_or("<url>".into(), quote),
            quote(rel)
        );
        let then = if url.is_some() {
            format!(
                "`{add}` adds it by hand (it clones that URL: the agent's own commits stay in its copy)"
            )
        } else {
            format!(
                "it has no remote to add it from: push it somewhere, then `{add}` adds it by hand"
            )
        };
        out.push(format!(
            "`{rel}` ({kind}) was not merged: qw never merges a repository nested in a task worktree, so {what} not in `{}`'s merge; the agent's copy{at} stays in `{}`; {then}",
            t.branch(),
            p.dir.display()
        ));
    }
    out
}

/// The nested repositories the task worktree was kept for ([`KEPT_FOR`]) that are no
/// longer there (moved out, or their `.git` taken away): paths under them that its
/// files lack were taken out with them — deleting them is not the task's work.
pub(crate) fn vanished(t: &Tree<'_>) -> Vec<String> {
    crate::fs::read_to_string(t.admin().join(KEPT_FOR))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| t.path().join(l).join(".git").symlink_metadata().is_err())
        .map(str::to_owned)
        .collect()
}

/// Repositories of submodules inside the task worktree's git dir `admin`
/// (`<admin>/modules/<name>`, made by a `git submodule add` or `update --init` in the
/// worktree) holding commits found nowhere else — none of their remote branches or
/// tags, nor the project's own copy of the submodule (a commit the target records is
/// no proof: the agent's own bump, merged, rev5b F2) — which removing the worktree
/// would delete (rev4 F12): the line that keeps the worktree, naming each and how to take it out.
pub(crate) fn modules_at_risk(
    repo: &Repo,
    admin: &Path,
    path: &Path,
    branch: &str,
) -> Option<String> {
    let root = admin.join("modules");
    if !root.is_dir() {
        return None;
    }
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = crate::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let g = e.path();
            if !g.is_dir()
                || g.symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
            {
                continue;
            }
            if !(g.join("HEAD").is_file() && g.join("objects").is_dir()) {
                // A folder of a submodule's name with `/` in it.
                stack.push(g);
                continue;
            }
            let name = g
                .strip_prefix(&root)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            // What the target records for it vouches for nothing (the agent's own
            // bump, merged): only what is held elsewhere does (rev5b F2).
            match only_here(repo, &g, Some(&name), &[], &[admin, path]) {
                Some(c) if c.is_empty() => stack.push(g.join("modules")),
                Some(c) => found.push((name, g, c)),
                // Unreadable: kept rather than deleted unseen.
                None => found.push((name, g, Vec::new())),
            }
        }
    }
    if found.is_empty() {
        return None;
    }
    found.sort();
    let what: Vec<String> = found
        .iter()
        .map(|(name, g, c)| {
            let count = if c.is_empty() {
                "commits qw could not list".to_owned()
            } else {
                // Named, newest first (at most five).
                let named: Vec<&str> = c.iter().take(5).map(|x| &x[..x.len().min(10)]).collect();
                format!(
                    "{} commit(s) in none of its remote branches or tags: {}{}",
                    c.len(),
                    named.join(", "),
                    if c.len() > 5 { ", …" } else { "" }
                )
            };
            let keep = keep_in_project(repo, g, name, branch)
                .map(|k| {
                    format!(", or keep its commits in the project's own copy of it with `{k}`")
                })
                .unwrap_or_default();
            format!(
                "submodule `{name}` (`{}`, {count}: take it out with `{}`{keep})",
                g.display(),
                take_out(g, "<dest>", true)
            )
        })
        .collect();
    Some(format!(
        "kept the worktree `{}` (not removed; its own work is saved on branch `{branch}`): its git dir holds the repository of {}, which removing the worktree would delete; `<dest>` being where that submodule's files are now, or a new directory (`git -C <dest> checkout -f` then brings back its committed files), then run `qw worktrees --prune`",
        path.display(),
        what.join(", ")
    ))
}

/// `.gitmodules` entries the result would add for nested repositories it does not hold
/// (`git submodule add` stages both the gitlink, which [`unstage_new_gitlinks`] takes
/// out, and the entry): each `submodule.<name>` section that `base` (the target) lacks
/// and whose path is no gitlink in the worktree's index is taken out of the staged
/// `.gitmodules` (the file is unstaged when nothing else is left in it and the target
/// has none). The worktree's own `.gitmodules` file is not touched. Returns the paths
/// whose entries were taken out.
pub(crate) fn unstage_dangling_gitmodules(
    repo: &Repo,
    t: &Tree<'_>,
    base: Option<&str>,
) -> Result<Vec<String>> {
    const FILE: &str = ".gitmodules";
    let staged = t.run(&["ls-files", "-s", "--", FILE])?;
    let Some(blob) = staged.split_whitespace().nth(1).map(str::to_owned) else {
        return Ok(Vec::new());
    };
    let in_base = base.and_then(|b| {
        let out = git_output(
            &repo.top,
            ["rev-parse", "-q", "--verify", &format!("{b}:{FILE}")],
            &[],
        )
        .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    if in_base.as_deref() == Some(blob.as_str()) {
        return Ok(Vec::new());
    }
    let paths_in = |args: &[&str]| -> Vec<(String, String)> {
        let mut full = vec!["config"];
        full.extend_from_slice(args);
        // `-z`: `<key>\n<value>\0` each, so a name or path with a space (or a newline
        // in the path) is read whole (rev5b F11).
        full.extend(["-z", "--get-regexp", r"^submodule\..*\.path$"]);
        git_output(&repo.top, &full, &[])
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split('\0')
                    .filter_map(|l| {
                        let (key, path) = l.split_once('\n')?;
                        let name = key.strip_prefix("submodule.")?.strip_suffix(".path")?;
                        Some((name.to_owned(), path.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let known: Vec<String> = match &in_base {
        Some(b) => paths_in(&["--blob", b])
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
        None => Vec::new(),
    };
    let links: Vec<String> = index_gitlinks(t)?.into_iter().map(|(p, _)| p).collect();
    let text = git_output(&repo.top, ["cat-file", "blob", blob.as_str()], &[])?;
    if !text.status.success() {
        return Ok(Vec::new());
    }
    let tmp = tempfile::Builder::new()
        .prefix("qw-gitmodules")
        .tempfile_in(&repo.common_dir)
        .map_err(|e| crate::fs::with_path(e, "create a temporary file in", &repo.common_dir))?;
    let file = tmp.path().to_string_lossy().into_owned();
    crate::fs::write(tmp.path(), &text.stdout)?;
    let mut dropped = Vec::new();
    for (name, path) in paths_in(&["--file", &file]) {
        if known.contains(&name) || links.contains(&path) {
            continue;
        }
        let section = format!("submodule.{name}");
        let out = git_output(
            &repo.top,
            ["config", "--file", &file, "--remove-section", &section],
            &[],
        )?;
        if out.status.success() {
            dropped.push(path);
        }
    }
    if dropped.is_empty() {
        return Ok(dropped);
    }
    let left = crate::fs::read_to_string(tmp.path())?;
    if left.trim().is_empty() && in_base.is_none() {
        t.run(&["update-index", "--force-remove", "--", FILE])?;
    } else {
        let sha = t.run(&["hash-object", "-w", "--", &file])?;
        t.run(&[
            "update-index",
            "--cacheinfo",
            &format!("100644,{sha},{FILE}"),
        ])?;
    }
    Ok(dropped)
}
