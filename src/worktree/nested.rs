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
//! worktree holding one is not removed: it is kept, and [`kept_line`] names each nested
//! one and what it holds.

use std::path::{Path, PathBuf};

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
    let dirs = git_output(
        t.path(),
        ["ls-tree", "-r", "-d", "-z", "--name-only", "HEAD"],
        &[],
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

/// What one nested repository holds, in words: a worktree of this repository (its branch,
/// or its detached HEAD and the commits on no branch) or a repository of its own (its
/// commits, kept in its own `.git`), and its uncommitted files.
fn describe(repo: &Repo, dir: &Path) -> String {
    let run = |args: &[&str]| -> Option<String> {
        let out = git_output(dir, args, &[]).ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let common = run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .map(PathBuf::from)
        .and_then(|p| p.canonicalize().ok());
    let ours = common.is_some() && common == repo.common_dir.canonicalize().ok();
    let head = run(&["rev-parse", "-q", "--verify", "HEAD^{commit}"]);
    let branch = run(&["symbolic-ref", "-q", "--short", "HEAD"]);
    let mut parts = Vec::new();
    if ours {
        match (&branch, &head) {
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
        let n = head
            .as_deref()
            .and_then(|h| run(&["rev-list", "--count", "--all", h]))
            .unwrap_or_else(|| "no".to_owned());
        parts.push(format!(
            "a repository of its own, {n} commit(s) in its own `.git`"
        ));
    }
    let dirty = run(&["status", "--porcelain=v1", "-z", "--untracked-files=all"])
        .map(|s| s.split('\0').filter(|l| l.len() > 3).count())
        .unwrap_or(0);
    if dirty > 0 {
        parts.push(format!("{dirty} uncommitted file(s)"));
    }
    format!("`{}` ({})", dir.display(), parts.join(", "))
}

/// When the task worktree at `path` holds nested repositories: the line saying it is
/// kept (not removed), naming each and what it holds, and how to move them out.
pub(crate) fn kept_line(repo: &Repo, t: &Tree<'_>, path: &Path) -> Option<String> {
    let nested = find(t).ok()?;
    if nested.is_empty() {
        return None;
    }
    let what: Vec<String> = nested
        .iter()
        .map(|n| describe(repo, &path.join(n)))
        .collect();
    // `git submodule add` also wrote an entry for it (left out of the result too).
    let modules = crate::fs::read_to_string(path.join(".gitmodules")).unwrap_or_default();
    let named = nested.iter().any(|n| {
        modules.lines().any(|l| {
            l.trim()
                .strip_prefix("path")
                .map(|r| r.trim_start().trim_start_matches('=').trim())
                == Some(n.as_str())
        })
    });
    Some(format!(
        "kept the worktree `{}` (not removed; its own work is saved on branch `{}`): it holds git repositories or worktrees its agent made, which qw never merges nor deletes: {}{}; move each out (`git worktree move <it> <elsewhere>` for a worktree, `mv` for a repository), then run `qw worktrees --prune`",
        path.display(),
        t.branch(),
        what.join(", "),
        if named {
            " (their `.gitmodules` entries are not merged either)"
        } else {
            ""
        }
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
        full.extend(["--get-regexp", r"^submodule\..*\.path$"]);
        git_output(&repo.top, &full, &[])
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| {
                        let (key, path) = l.split_once(' ')?;
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
