//! The main worktree's files, path by path, compared with a commit's version of them —
//! the files on disk, tracked or not (git's own diffs compare only what the index
//! tracks: a path of the commit that is now untracked would count as differing).
//!
//! [`super::target`] uses it to tell a `reset --mixed` (the files are still the old
//! tip's) from a user who committed and went on editing (the files are neither), and to
//! choose the command that puts the target back (`reset -q` when the files already are
//! the place's). It only reads.

use std::collections::BTreeSet;

use super::{Repo, Result, git, git_output};

/// The paths of `paths` whose file on disk is `commit`'s version: the same blob (git's
/// clean filters applied, as `git add` would), or absent from both. A symlink, a
/// directory where the commit has a file (a submodule), or anything unreadable is not.
pub(crate) fn as_in(
    repo: &Repo,
    commit: &str,
    paths: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    if paths.is_empty() {
        return Ok(BTreeSet::new());
    }
    // The commit's blobs of those paths: the whole tree, then only those (no pathspec:
    // globs, argv length).
    let listing = git(&repo.top, &["ls-tree", "-r", "-z", "--full-tree", commit])?;
    let mut blobs = std::collections::BTreeMap::new();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        if paths.contains(path) {
            let mut words = meta.split(' ');
            let mode = words.next().unwrap_or("");
            let oid = words.nth(1).unwrap_or("");
            blobs.insert(path.to_owned(), (mode.to_owned(), oid.to_owned()));
        }
    }
    let mut same = BTreeSet::new();
    let mut to_hash: Vec<&str> = Vec::new();
    for p in paths {
        let on_disk = repo.top.join(p).symlink_metadata().ok();
        match (blobs.get(p), on_disk) {
            (None, None) => {
                same.insert(p.clone());
            }
            (Some((mode, _)), Some(m)) if m.is_file() && mode.starts_with("100") => {
                to_hash.push(p);
            }
            _ => {}
        }
    }
    if to_hash.is_empty() {
        return Ok(same);
    }
    // One `git hash-object` for them all: the ids, in order, one a line.
    let mut args = vec!["hash-object", "--"];
    args.extend(to_hash.iter().copied());
    let out = git_output(&repo.top, &args, &[])?;
    if !out.status.success() {
        // A file that went away meanwhile: none of them is known to be the commit's.
        return Ok(same);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for (p, id) in to_hash.iter().zip(text.lines()) {
        if blobs.get(*p).is_some_and(|(_, oid)| oid == id.trim()) {
            same.insert((*p).to_owned());
        }
    }
    Ok(same)
}
