//! Who made the commits a moved target branch gained: the main worktree's own git (a
//! commit, a merge or a cherry-pick made there — the user's, or qw's own merge), or a
//! task of the run (its worktree's HEAD reflog, its branch's reflog).
//!
//! [`super::target`] asks it which new commits of the target are a task's: a commit the
//! user made on the target is not a task's because a task later merged the target or
//! rebased onto it (an ordinary sync), and a task's commit is a task's even when the
//! user committed on top of it. It only reads reflogs and history, never writes; a
//! reflog that is gone or turned off makes nothing anyone's, and the caller falls back
//! on history alone.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Repo, Result, git, git_output, tree};

/// Does a reflog message say the commit was made there (not only visited: a
/// checkout, a reset, a fast-forward)?
pub(crate) fn made(message: &str) -> bool {
    let m = message.trim_start();
    ["commit", "cherry-pick", "revert", "am:", "qw:"]
        .iter()
        .any(|p| m.starts_with(p))
        || m.contains("Merge made")
        || [
            "(pick)",
            "(squash)",
            "(fixup)",
            "(reword)",
            "(edit)",
            "(continue)",
        ]
        .iter()
        .any(|p| m.contains(p))
}

/// The moves of the main worktree's HEAD, oldest first: `(commit, message)`.
pub(crate) fn main_log(repo: &Repo) -> Vec<(String, String)> {
    tree::reflog_entries(&repo.git_dir)
}

/// The commits of `was..now`: what the target gained (at most 100 000; a range larger
/// than that is read as that many, newest first).
pub(crate) fn gained(repo: &Repo, was: &str, now: &str) -> Result<BTreeSet<String>> {
    let range = format!("{was}..{now}");
    Ok(git(&repo.top, &["rev-list", "--max-count=100000", &range])?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// The commits a worktree's git made (its HEAD reflog).
pub(crate) fn made_in(admin: &Path) -> BTreeSet<String> {
    tree::reflog_entries(admin)
        .into_iter()
        .filter(|(_, m)| made(m))
        .map(|(c, _)| c)
        .collect()
}

/// The commits a task made: its branch's reflog (either ref backend, through git) and,
/// while it runs, its worktree's HEAD reflog (`admin` is its git dir).
pub(crate) fn made_by_task(repo: &Repo, branch: &str, admin: Option<&Path>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = admin
        .map(tree::reflog_entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, m)| made(m))
        .map(|(c, _)| c)
        .collect();
    let r = format!("refs/heads/{branch}");
    if let Ok(o) = git_output(
        &repo.top,
        ["reflog", "show", "--format=%H%x09%gs", &r, "--"],
        &[],
    ) && o.status.success()
    {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((c, m)) = line.split_once('\t')
                && made(m)
            {
                out.insert(c.to_owned());
            }
        }
    }
    out
}

/// What the main worktree's own git accounts for among the commits the target gained
/// ([`users`]): commits no task is blamed for, whoever else holds them.
#[derive(Debug, Default)]
pub(crate) struct Users {
    /// Commits of `gained` that are not a task's even when a task made them too: made
    /// in the main worktree, brought in by a qw merge (another workflow's, which checked
    /// them), held by a branch qw kept and named (`qw/<spec>/<id>@<sha>`) that the main
    /// worktree merged.
    pub(crate) own: BTreeSet<String>,
    /// Commits whose history (within `gained`) is the user's unless a task made it: the
    /// ones the main worktree's HEAD moved to — a commit, a merge, a fast-forward (`git
    /// pull`, `git merge <branch>`), a reset — except a move onto a task branch by its
    /// name (`merge qw/demo/2: Fast-forward`), and the tips of the kept branches merged.
    pub(crate) roots: BTreeSet<String>,
    /// The kept branches (`qw/<spec>/<id>@<sha>`) the main worktree merged: `(branch,
    /// tip)`.
    pub(crate) kept: Vec<(String, String)>,
}

/// Does a reflog message name a task branch (`qw/<spec>/<id>`, not a kept `…@<sha>`)?
fn names_task_branch(message: &str) -> bool {
    message
        .split(|c: char| c.is_whitespace() || c == ':')
        .any(|w| super::parse_branch(w).is_some_and(|(_, t)| !t.contains('@')))
}

/// Is a reflog message the one qw's merge leaves (`merge <full commit id>: …`: qw merges a
/// task branch by its commit id, where a person or an agent types a name)?
fn qw_merge_message(message: &str) -> bool {
    message
        .strip_prefix("merge ")
        .and_then(|m| m.split_once(':'))
        .is_some_and(|(id, _)| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The folder (in the common git dir) where qw notes each merge of a task branch it
/// made: one file per merge commit, named by its id, holding the spec, the task branch
/// and the tip merged. What another workflow's merge is, is read there (rev5b F7): a
/// reflog line and a subject are typed by whoever runs `git merge -m`.
const MERGES: &str = "qw-merges";

/// Note that qw merged `branch` (of `spec`) at `tip`, making commit `merge`.
pub(crate) fn record_merge(repo: &Repo, spec: &str, branch: &str, tip: &str, merge: &str) {
    let file = repo.common_dir.join(MERGES).join(merge);
    let written = crate::fs::create_dir_all(crate::fs::parent_dir(&file)).and_then(|()| {
        crate::fs::write_durable(&file, format!("{spec}\n{branch}\n{tip}\n").as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!("could not note qw's merge {merge} of `{branch}`: {e}");
    }
}

/// Forget qw's notes of merges ([`record_merge`]) whose merge commit no branch holds any
/// more (the target reset below it, the commit gone): no check asks about a commit no
/// branch has (fix5o's leftover: the notes were never pruned). Run by `qw worktrees
/// --prune` and `workflow-reset --hard`, while no workflow runs. Returns how many.
pub(crate) fn prune_merge_notes(repo: &Repo) -> usize {
    let dir = repo.common_dir.join(MERGES);
    let Ok(entries) = crate::fs::read_dir(&dir) else {
        return 0;
    };
    let notes: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() >= 40 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    if notes.is_empty() {
        return 0;
    }
    // Which still name a commit, then which of those no branch reaches (one walk of
    // what the branches lack, not of their history).
    let Ok(types) = super::lost::git_stdin(
        repo,
        &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        &notes.iter().map(|n| format!("{n}\n")).collect::<String>(),
    ) else {
        return 0;
    };
    let commits: BTreeSet<String> = types
        .lines()
        .filter_map(|l| l.strip_suffix(" commit"))
        .map(str::to_owned)
        .collect();
    let input: String = commits.iter().map(|c| format!("{c}\n")).collect();
    let unreached: BTreeSet<String> = if commits.is_empty() {
        BTreeSet::new()
    } else {
        match super::lost::git_stdin(
            repo,
            &["rev-list", "--stdin", "--not", "--branches"],
            &input,
        ) {
            Ok(out) => out.lines().map(str::to_owned).collect(),
            Err(_) => return 0,
        }
    };
    let mut forgot = 0;
    for n in &notes {
        if (!commits.contains(n) || unreached.contains(n))
            && crate::fs::remove_file(dir.join(n)).is_ok()
        {
            forgot += 1;
        }
    }
    forgot
}

/// `(spec, tip)` of qw's note of merge commit `merge`, if qw made it.
fn merge_record(repo: &Repo, merge: &str) -> Option<(String, String)> {
    if merge.len() < 40 || !merge.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let text =
        crate::fs::read_regular_text(&repo.common_dir.join(MERGES).join(merge), 4096).ok()?;
    let mut lines = text.lines();
    let spec = lines.next()?.trim().to_owned();
    let branch = lines.next()?.trim();
    let tip = lines.next()?.trim().to_owned();
    (super::parse_branch(branch).is_some_and(|(s, _)| s == spec)).then_some((spec, tip))
}

/// The commits of `commits` that are qw's own merges of another workflow's task branch
/// (their subject, as qw writes it, naming a spec other than `spec`, and qw's note of
/// the merge saying the same spec and the tip it merged as the second parent), each
/// with the range of what it brought in (`<second> ^<first>`).
fn qw_merges(repo: &Repo, spec: &str, commits: &BTreeSet<String>) -> Result<Vec<(String, String)>> {
    if commits.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["log", "--no-walk=unsorted", "--format=%H %P%x09%s"];
    args.extend(commits.iter().map(String::as_str));
    let out = git(&repo.top, &args)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (ids, subject) = l.split_once('\t')?;
            let mut ids = ids.split(' ');
            let (c, first, second) = (ids.next()?, ids.next()?, ids.next()?);
            let of = subject.strip_prefix("qw(")?.split_once("): merge task ")?.0;
            let (noted, tip) = merge_record(repo, c)?;
            (of != spec && noted == of && tip == second)
                .then(|| (c.to_owned(), format!("{second} ^{first}")))
        })
        .collect())
}

/// What the main worktree accounts for among `gained` (the target's new commits), from
/// its HEAD reflog `log` (oldest first) and the kept branches there are (see [`Users`]).
/// A kept branch counts only when qw made it (recorded by `salvage::keep_branch`, under
/// the name qw gives one: `<task branch>@<the start of its tip's id>`) and no running
/// task's worktree (`running`, their git dirs) made a commit it holds: an agent cannot
/// pass its own work off as kept work by naming a branch so.
pub(crate) fn users(
    repo: &Repo,
    spec: &str,
    was: &str,
    gained: &BTreeSet<String>,
    log: &[(String, String)],
    running: &[&Path],
) -> Result<Users> {
    let mut u = Users::default();
    let mut merges = BTreeSet::new();
    for (c, m) in log {
        if !gained.contains(c) {
            continue;
        }
        if qw_merge_message(m) {
            merges.insert(c.clone());
        }
        if made(m) {
            u.own.insert(c.clone());
            u.roots.insert(c.clone());
        } else if !names_task_branch(m) {
            u.roots.insert(c.clone());
        }
    }
    // qw's own merges (another workflow's): what each brought in, it checked.
    for (_, range) in qw_merges(repo, spec, &merges)? {
        let mut args = vec!["rev-list", "--max-count=10000"];
        args.extend(range.split(' '));
        for c in git(&repo.top, &args)?.split_whitespace() {
            if gained.contains(c) {
                u.own.insert(c.to_owned());
            }
        }
    }
    // Kept branches qw named, merged in the main worktree (a move there holds them).
    let mut made_running: Option<BTreeSet<String>> = None;
    for b in repo.qw_branches()? {
        let Some(id) = super::parse_branch(&b)
            .and_then(|(_, t)| t.split_once('@'))
            .map(|(_, id)| id.to_owned())
        else {
            continue;
        };
        let Some(tip) = repo.commit_of(&format!("refs/heads/{b}"))? else {
            continue;
        };
        if !gained.contains(&tip)
            || id.len() < 7
            || !tip.starts_with(&id)
            || !super::salvage::kept_by_qw(repo, &b, &tip)
        {
            continue;
        }
        let mut merged = false;
        for c in log.iter().map(|(c, _)| c).filter(|c| gained.contains(*c)) {
            if repo.is_ancestor(&tip, c)? {
                merged = true;
                break;
            }
        }
        if !merged {
            continue;
        }
        let range = format!("{was}..{tip}");
        let held: Vec<String> = git(&repo.top, &["rev-list", "--max-count=10000", &range])?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let made_running = made_running.get_or_insert_with(|| {
            running
                .iter()
                .flat_map(|a| tree::reflog_entries(a))
                .filter(|(_, m)| made(m))
                .map(|(c, _)| c)
                .collect()
        });
        if held.iter().any(|c| made_running.contains(c)) {
            continue;
        }
        u.own.extend(held);
        u.roots.insert(tip.clone());
        u.kept.push((b, tip));
    }
    Ok(u)
}

/// Does `tip` (a task's) hold commits of `gained` that are the task's: made by the task
/// (`by_task`) and not accounted for by the main worktree (`users.own`), or held by
/// `tip` apart from every commit the main worktree made or moved to (so not merely the
/// target's own history — the user's commits, a pull's — which the task merged or
/// rebased onto)? A commit the task made but its branch does not hold (a side branch of
/// its agent's) is not counted here.
pub(crate) fn brings(
    repo: &Repo,
    tip: &str,
    was: &str,
    gained: &BTreeSet<String>,
    users: &Users,
    by_task: &BTreeSet<String>,
) -> Result<bool> {
    let held: BTreeSet<String> = git(&repo.top, &["rev-list", tip, "--not", was])?
        .split_whitespace()
        .filter(|c| gained.contains(*c))
        .map(str::to_owned)
        .collect();
    if held.is_empty() {
        return Ok(false);
    }
    if held
        .iter()
        .any(|c| by_task.contains(c) && !users.own.contains(c))
    {
        return Ok(true);
    }
    if held.iter().all(|c| users.own.contains(c)) {
        return Ok(false);
    }
    if users.roots.is_empty() {
        return Ok(true);
    }
    // `tip`'s commits that neither `was` nor a commit the main worktree made or moved
    // to holds.
    let mut args: Vec<&str> = vec!["rev-list", tip, "--not", was];
    args.extend(users.roots.iter().map(String::as_str));
    let apart = git(&repo.top, &args)?;
    Ok(apart
        .split_whitespace()
        .any(|c| gained.contains(c) && !users.own.contains(c)))
}

/// The paths of `paths` where a commit range `a..b` adds a line git calls a leftover
/// conflict marker (`git diff --check`); whitespace errors do not count.
pub(crate) fn conflict_markers(
    repo: &Repo,
    a: &str,
    b: &str,
    paths: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    if paths.is_empty() {
        return Ok(BTreeSet::new());
    }
    // No pathspec (globs, argv length): the whole diff, then only those paths.
    let out = git_output(
        &repo.top,
        [
            "-c",
            "core.quotePath=false",
            "diff",
            "--check",
            // No external diff or textconv program, whatever a config names (they
            // are pinned too: `codecfg`).
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
            "--no-color",
            a,
            b,
            "--",
        ],
        &[],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": leftover conflict marker"))
        .filter_map(|l| l.rsplit_once(':').map(|(p, _)| p))
        .filter(|p| paths.contains(*p))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_tells_new_commits_from_visits() {
        for m in [
            "commit: f1",
            "commit (amend): x",
            "commit (merge): m",
            "rebase (pick): f1",
            "rebase -i (squash): x",
            "cherry-pick: y",
            "merge qw/demo/2: Merge made by the 'ort' strategy.",
            "pull: Merge made by the 'ort' strategy.",
            "qw: the task's result",
        ] {
            assert!(made(m), "{m}");
        }
        for m in [
            "checkout: moving from a to b",
            "reset: moving to HEAD~1",
            "rebase (start): checkout qw/demo/2",
            "rebase (finish): returning to refs/heads/qw/demo/1",
            "merge qw/demo/2: Fast-forward",
            "pull: Fast-forward",
            "",
        ] {
            assert!(!made(m), "{m}");
        }
    }

    #[test]
    fn a_move_onto_a_task_branch_by_its_name_is_told_from_the_users_own() {
        for m in [
            "merge qw/demo/2: Fast-forward",
            "reset: moving to qw/demo/2",
            "merge qw/other/1.2: Merge made by the 'ort' strategy.",
        ] {
            assert!(names_task_branch(m), "{m}");
        }
        for m in [
            "pull -q --ff-only: Fast-forward",
            "merge feature: Fast-forward",
            "merge qw/demo/2@abc1234: Fast-forward",
            "reset: moving to origin/main",
            "commit: qw/demo/2 is mentioned in a subject of mine",
        ] {
            assert_eq!(names_task_branch(m), m.starts_with("commit"), "{m}");
        }
    }

    #[test]
    fn qws_merges_are_told_by_the_full_id_they_merge() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        assert!(qw_merge_message(&format!(
            "merge {id}: Merge made by the 'ort' strategy."
        )));
        for m in [
            "merge qw/demo/2: Merge made by the 'ort' strategy.".to_owned(),
            format!("merge {}: Merge made", &id[..12]),
            format!("pull {id}: Merge made"),
            String::new(),
        ] {
            assert!(!qw_merge_message(&m), "{m}");
        }
    }
}
