//! Which task branches qw itself left where they are (rev1 L2).
//!
//! A task branch `qw/<spec>/<id>` holding commits the target lacks is resumed by the
//! task's next run as "an earlier run's" work. But anything can make such a branch: an
//! agent of another task running `git branch qw/demo/2` (or `update-ref`, or `branch
//! -f` of an earlier run's branch) would have its commits merged under task 2's name,
//! unchecked. So qw records the tip it leaves on each task branch, in a file of its own,
//! `<git-common-dir>/qw-left/<spec>/<id>` (written whenever qw points the branch: at
//! creation, at every save, and when the task's worktree was deleted under it — its
//! commits were the task's; removed when qw deletes the branch). When a task starts and no
//! worktree of qw's holds its branch, a tip that is not the recorded one is judged by
//! the commits qw did not leave there ([`set_aside_foreign`]): made by the user (in the
//! main worktree, or a worktree that is no task's: a conflict resolved on the branch, a
//! rebase or cherry-pick of it, the way on qw printed) or by the task's own git (on the
//! branch itself since qw left it: its worktree removed by hand after qw was killed),
//! they are the task's — recorded, said, resumed (rev4 F3, F4, F9). Else (made in
//! another task's worktree, or nowhere a log says: `update-ref`/`branch -f` to another
//! worktree's commit) they are kept on `qw/<spec>/<id>@<sha7>` (never merged by qw,
//! never deleted by it), said in a note, and the task starts from qw's own last tip, or
//! from the target. A branch with no record is adopted the same way only when its log
//! says qw made it (an older qw's, rev4 F5). A branch moved back to an earlier commit
//! of the task's own (`git branch -f <it> <it>~1`, `git reset --hard HEAD~1` on it)
//! holds nothing foreign: the task resumes from there, and the commits dropped are kept
//! on `qw/<spec>/<id>@<sha7>` (the branch's reflog goes when qw deletes the merged
//! branch). Moved onto commits the target holds, it is put back at qw's tip, and is not
//! cleared as merged at the start ([`moved_off_unmerged`]).
//!
//! Must not: decide anything about branches of other specs or other names, or delete a
//! commit (a foreign tip is kept before the branch is moved).

use std::collections::BTreeSet;

use super::{Repo, Result, git, git_output, origin, parse_branch, quote, salvage, tree};

/// The file holding the tip qw left on `branch` (`qw/<spec>/<id>`):
/// `<common>/qw-left/<spec>/<id>`.
fn record_file(repo: &Repo, branch: &str) -> std::path::PathBuf {
    let dir = repo.common_dir.join("qw-left");
    match parse_branch(branch) {
        Some((spec, task)) => dir.join(spec).join(task),
        None => dir.join(branch.replace('/', "%")),
    }
}

/// The file beside `branch`'s record saying where the main worktree's HEAD reflog was
/// when qw left the branch (`<id>.at`; task ids are digits and dots): `tip <commit>`,
/// `log <git dir>`, `at <entries> <the newest entry's commit>`. Kept apart from the
/// record, whose one line every qw reads.
fn at_file(repo: &Repo, branch: &str) -> std::path::PathBuf {
    let file = record_file(repo, branch);
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".at");
    file.with_file_name(name)
}

/// Record that qw left `branch` at its current tip (nothing when it does not exist),
/// and where the main worktree's HEAD reflog was then ([`at_file`]: a move made in the
/// same second is told by position, not by whole seconds). The first record also notes
/// since when qw records ([`SINCE`]).
pub(crate) fn record(repo: &Repo, branch: &str) -> Result<()> {
    if let Some(tip) = repo.commit_of(&format!("refs/heads/{branch}"))? {
        let file = record_file(repo, branch);
        crate::fs::create_dir_all(crate::fs::parent_dir(&file))?;
        crate::fs::write_durable(&file, format!("{tip}\n").as_bytes())?;
        let log = tree::head_log(&repo.git_dir);
        let newest = log.last().map_or("0", |l| l.to.as_str());
        let at = format!(
            "tip {tip}\nlog {}\nat {} {newest}\n",
            repo.git_dir.display(),
            log.len()
        );
        // Without it the time is read instead, as before.
        if let Err(e) = crate::fs::write_durable(&at_file(repo, branch), at.as_bytes()) {
            tracing::debug!("could not record where the HEAD log was when qw left `{branch}`: {e}");
        }
        let since = repo.common_dir.join("qw-left").join(SINCE);
        if since.symlink_metadata().is_err() {
            crate::fs::write_durable(&since, format!("{}\n", now_secs()).as_bytes())?;
        }
    }
    Ok(())
}

/// The file (in `qw-left/`) holding the time (seconds since the epoch) of the first
/// record a qw wrote in this repository: a task branch made after it without a record
/// was not left by a qw that did not record (rev5b F1).
const SINCE: &str = ".since";

/// When the run began: what was committed after it, in the main worktree or a worktree
/// qw did not make, is not taken as the user's (an agent may have made it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunStart {
    /// Seconds since the epoch (a reflog's time is in whole seconds: the second the
    /// run began counts as before it).
    pub(crate) secs: i64,
    /// How many entries the main worktree's HEAD reflog had: the ones after are this
    /// run's, to the entry.
    pub(crate) main_log: usize,
}

/// Now, in seconds since the epoch.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Since when qw records the branches it leaves here ([`SINCE`]); `None` before any
/// qw that records ran here. A file that cannot be read as a time counts as "always".
fn recording_since(repo: &Repo) -> Option<i64> {
    let file = repo.common_dir.join("qw-left").join(SINCE);
    file.symlink_metadata().ok()?;
    Some(
        crate::fs::read_regular_text(&file, 64)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// When `branch` was made: the time of its reflog's first entry (`None` without one).
fn created_at(repo: &Repo, branch: &str) -> Option<i64> {
    let out = git_output(
        &repo.top,
        [
            "reflog",
            "show",
            "--date=unix",
            "--format=%gd",
            &format!("refs/heads/{branch}"),
            "--",
        ],
        &[],
    )
    .ok()
    .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .next_back()?
        .rsplit_once("@{")?
        .1
        .strip_suffix('}')?
        .parse()
        .ok()
}

/// The commits `branch`'s reflog says were made on it after the second `start` (a
/// reflog's time is in whole seconds: the second the run began counts as before it).
fn branch_made_since(repo: &Repo, branch: &str, start: i64) -> BTreeSet<String> {
    let Ok(out) = git_output(
        &repo.top,
        [
            "reflog",
            "show",
            "--date=unix",
            "--format=%H%x09%gd%x09%gs",
            &format!("refs/heads/{branch}"),
            "--",
        ],
        &[],
    ) else {
        return BTreeSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, '\t');
            let (c, at, m) = (p.next()?, p.next()?, p.next().unwrap_or(""));
            let t: i64 = at.rsplit_once("@{")?.1.strip_suffix('}')?.parse().ok()?;
            (t > start && origin::made(m)).then(|| c.to_owned())
        })
        .collect()
}

/// The mark qw leaves in the git dir of a worktree it did not make that appeared while
/// one of its tasks ran (an agent's `git worktree add`): commits made there are never
/// taken as the user's (rev5b F1).
const APPEARED: &str = "qw-appeared-during-run";

/// Mark `admin` (a worktree qw did not make, seen to appear while `task` of `spec` ran).
pub(crate) fn mark_appeared(admin: &std::path::Path, spec: &str, task: &str) {
    let _ = crate::fs::write(admin.join(APPEARED), format!("{spec}\n{task}\n"));
}

/// Did the worktree whose git dir is `admin` appear while a qw run went on: marked so
/// by the run that saw it, or made (its HEAD log's first entry) after the second
/// `since`, this run's start?
fn appeared_during_run(admin: &std::path::Path, since: i64) -> bool {
    admin.join(APPEARED).symlink_metadata().is_ok()
        || tree::head_log(admin)
            .first()
            .is_some_and(|l| l.time > since)
}

/// qw deleted `branch`: its record goes too (a failure only leaves a stale record,
/// which [`set_aside_foreign`] ignores when the branch is absent).
pub(crate) fn forget(repo: &Repo, branch: &str) {
    let _ = crate::fs::remove_file(record_file(repo, branch));
    let _ = crate::fs::remove_file(at_file(repo, branch));
}

/// The tip qw left on `branch`, if recorded (read as a small regular file only).
fn left(repo: &Repo, branch: &str) -> Result<Option<String>> {
    let Ok(text) = crate::fs::read_regular_text(&record_file(repo, branch), 128) else {
        return Ok(None);
    };
    let sha = text.trim();
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    repo.commit_of(sha)
}

/// When qw last left `branch` where it is now (`tip`): the time (seconds since the
/// epoch, rounded down) its record was written, when the record names `tip`. `None`
/// when qw did not leave it there.
pub(crate) fn left_there_since(repo: &Repo, branch: &str, tip: &str) -> Option<i64> {
    if left(repo, branch).ok()??.as_str() != tip {
        return None;
    }
    let at = record_file(repo, branch)
        .symlink_metadata()
        .ok()?
        .modified()
        .ok()?;
    let secs = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// How many entries the main worktree's HEAD reflog (`log`, this checkout's, as read
/// now) had when qw last left `branch` at `tip`: the ones from there on were made after
/// it, to the entry. `None` when that is not known — no position recorded (an older
/// qw's), recorded for another tip or by another checkout, or the log no longer has the
/// entry it named there (expired, rewritten): the caller goes by time.
pub(crate) fn left_there_at(
    repo: &Repo,
    branch: &str,
    tip: &str,
    log: &[tree::LogLine],
) -> Option<usize> {
    let text = crate::fs::read_regular_text(&at_file(repo, branch), 8192).ok()?;
    let mut recorded_tip = None;
    let mut git_dir = None;
    let mut at = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("tip ") {
            recorded_tip = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("log ") {
            git_dir = Some(std::path::PathBuf::from(v));
        } else if let Some(v) = line.strip_prefix("at ") {
            let (n, newest) = v.trim().split_once(' ')?;
            at = Some((n.parse::<usize>().ok()?, newest.to_owned()));
        }
    }
    let (n, newest) = at?;
    if recorded_tip? != tip || !super::same_path(&git_dir?, &repo.git_dir) {
        return None;
    }
    let holds = match n {
        0 => newest == "0",
        _ => log.get(n - 1).is_some_and(|l| l.to == newest),
    };
    // The tip record itself names `tip` too (the position is of that record's write).
    (holds && left(repo, branch).ok()??.as_str() == tip).then_some(n)
}

/// The tip qw left on `branch` as its record in the common git dir `common` names it
/// (not checked to be a commit: the caller asks git). For [`tree::repair_admin`], which
/// has no [`Repo`].
pub(crate) fn left_in(common: &std::path::Path, branch: &str) -> Option<String> {
    let (spec, task) = parse_branch(branch)?;
    let file = common.join("qw-left").join(spec).join(task);
    let text = crate::fs::read_regular_text(&file, 128).ok()?;
    let sha = text.trim();
    (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
}

/// The tip qw left on `branch`, if recorded and still a commit.
pub(crate) fn left_tip(repo: &Repo, branch: &str) -> Option<String> {
    left(repo, branch).ok().flatten()
}

/// Was `branch` moved off the tip qw left it at, a tip holding commits `target` lacks
/// (an agent's `git branch -f <branch> main`)? Such a branch is no merged leftover:
/// [`set_aside_foreign`] puts it back when its task starts.
pub(crate) fn moved_off_unmerged(repo: &Repo, branch: &str, target: &str) -> bool {
    let Ok(Some(tip)) = repo.commit_of(&format!("refs/heads/{branch}")) else {
        return false;
    };
    matches!(left(repo, branch), Ok(Some(o)) if o != tip
        && repo.unmerged_commits(&o, target).unwrap_or(0) > 0)
}

/// The commits `tip` holds that `target`, qw's own last tip `ours` and the
/// remote-tracking branches lack (what someone other than qw's runs of the task put on
/// the branch), oldest first.
fn new_commits(repo: &Repo, tip: &str, target: &str, ours: Option<&str>) -> Result<Vec<String>> {
    let mut args = vec!["rev-list", "--reverse", tip, "--not", target];
    args.extend(ours);
    args.push("--remotes");
    Ok(git(&repo.top, &args)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// Does a reflog message say qw made the branch (`git worktree add -B <branch> <path>
/// <full commit id>`)? An agent's `git branch`/`switch -c` names `HEAD` or a branch.
fn made_by_qw(message: &str) -> bool {
    ["branch: Created from ", "branch: Reset to "]
        .iter()
        .filter_map(|p| message.strip_prefix(p))
        .any(|rest| rest.len() >= 40 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where the commits `new` (not qw's) on task `task`'s `branch` were made, when they
/// are the user's or the task's own: every one made (not only visited: a commit, a
/// merge, a cherry-pick, a rebase's pick) in the main worktree, in a worktree that is
/// no task's, or on the branch itself after qw left it at `ours` (its reflog's
/// `commit:` entries: the branch was checked out, in the task's own worktree — removed
/// since — or the user's), and none in another task's worktree. Without a record
/// (`ours` is `None`: a branch an older qw left), only a branch its reflog says qw made.
/// `None` when some commit was made elsewhere, or nowhere git remembers (a `git
/// commit-tree` + `update-ref`, a `branch -f` to another worktree's commit).
fn made_by_user(
    repo: &Repo,
    branch: &str,
    task: &str,
    new: &[String],
    ours: Option<&str>,
    run_start: RunStart,
) -> Option<String> {
    let spec = parse_branch(branch).map(|(s, _)| s)?;
    let log = super::reflog::branch_log(repo, branch);
    let since = match ours {
        Some(o) => match log.iter().position(|(c, _)| c == o) {
            Some(i) => &log[..i],
            None => &log[..],
        },
        None => {
            if !log.last().is_some_and(|(_, m)| made_by_qw(m)) {
                return None;
            }
            // Made while qw records the branches it leaves (or during this run): not an
            // older qw's, whatever its log says (`git branch <name> <full id>` writes
            // the same line).
            let made = created_at(repo, branch)?;
            if made > run_start.secs || recording_since(repo).is_some_and(|t| made >= t) {
                return None;
            }
            &log[..]
        }
    };
    // Commits made on the branch itself during this run are not the user's either.
    let during: BTreeSet<String> = branch_made_since(repo, branch, run_start.secs);
    let on_branch: BTreeSet<&str> = since
        .iter()
        .filter(|(c, m)| origin::made(m) && !during.contains(c))
        .map(|(c, _)| c.as_str())
        .collect();
    // The main worktree's commits are the user's only when made before this run began:
    // one made during the run may be an agent's `git -C <main worktree> commit`.
    let before_run =
        |admin: &std::path::Path, mark: usize| -> (BTreeSet<String>, BTreeSet<String>) {
            let mut mine = BTreeSet::new();
            let mut during = BTreeSet::new();
            for (i, l) in tree::head_log(admin).into_iter().enumerate() {
                if origin::made(&l.message) {
                    if i < mark && l.time <= run_start.secs {
                        mine.insert(l.to);
                    } else {
                        during.insert(l.to);
                    }
                }
            }
            (mine, during)
        };
    let (mut main, mut others) = before_run(&repo.git_dir, run_start.main_log);
    if !super::same_path(&repo.git_dir, &repo.common_dir) {
        // qw runs in a linked worktree: the repository's first worktree is the user's too.
        let (m, o) = before_run(&repo.common_dir, usize::MAX);
        main.extend(m);
        others.extend(o);
    }
    let mut users: Vec<(BTreeSet<String>, String)> = Vec::new();
    for (admin, path) in repo.admin_dirs() {
        match tree::read_marker(&admin) {
            Some((s, t)) if !(s == spec && t == task) => others.extend(origin::made_in(&admin)),
            Some(_) => {}
            // A worktree that appeared while a run went on is an agent's as far as qw
            // can tell: what it made is not the user's.
            None if appeared_during_run(&admin, run_start.secs) => {
                others.extend(origin::made_in(&admin));
            }
            None => users.push((origin::made_in(&admin), path.display().to_string())),
        }
    }
    let mut wheres: Vec<String> = Vec::new();
    for c in new {
        let place = if others.contains(c) {
            return None;
        } else if main.contains(c) {
            format!("in the main worktree `{}`", repo.top.display())
        } else if let Some((_, p)) = users.iter().find(|(m, _)| m.contains(c)) {
            format!("in the worktree `{p}`")
        } else if on_branch.contains(c.as_str()) {
            format!(
                "on `{branch}` itself (a `git commit` while it was checked out: in task {task}'s own worktree, removed since, or yours)"
            )
        } else {
            return None;
        };
        if !wheres.contains(&place) {
            wheres.push(place);
        }
    }
    Some(wheres.join(" and "))
}

/// What [`set_aside_foreign`] tells about a task branch it found moved.
pub(crate) struct Told {
    /// The one line.
    pub(crate) line: String,
    /// It says the task resumes (so no second line says so).
    pub(crate) resumes: bool,
}

/// Before task `task` starts on `branch` (no worktree of qw's holds it, the repository
/// lock is held; `target` is the commit it starts from, `target_name` its branch): when
/// the branch is not where qw left it, judge the commits qw did not leave there
/// ([`new_commits`]). Made by the user or by the task's own git ([`made_by_user`]: a
/// conflict resolved on the branch, a rebase or cherry-pick qw's hint printed, the
/// task's commits after qw was killed): taken as the task's, recorded, said, and the
/// task resumes from them. Else keep them on `<branch>@<sha7>`, put the branch back at
/// qw's own last tip when that held unmerged work (else remove it, so the task starts
/// from `target`), and return the line saying so. `None` when the branch is qw's (or
/// absent, or holds nothing to merge).
pub(crate) fn set_aside_foreign(
    repo: &Repo,
    branch: &str,
    task: &str,
    target: &str,
    target_name: &str,
    run_start: RunStart,
) -> Result<Option<Told>> {
    let Some(tip) = repo.commit_of(&format!("refs/heads/{branch}"))? else {
        forget(repo, branch);
        return Ok(None);
    };
    let recorded = left(repo, branch)?;
    if recorded.as_deref() == Some(tip.as_str()) {
        return Ok(None);
    }
    let new = new_commits(repo, &tip, target, recorded.as_deref())?;
    let ours = recorded
        .clone()
        .filter(|c| repo.unmerged_commits(c, target).unwrap_or(0) > 0);
    if new.is_empty() {
        // Moved back to an earlier commit the task made (`git branch -f <branch>
        // <branch>~1`, a `git reset --hard HEAD~1` on it): nothing foreign, and the
        // user's choice of where the task goes on from. Resumed from there; what it
        // dropped is kept on a branch (qw deletes the task branch, and its reflog with
        // it, once the task is merged).
        if let Some(o) = &ours
            && repo.is_ancestor(&tip, o)?
            && repo.unmerged_commits(&tip, target)? > 0
        {
            let dropped = repo.unmerged_commits(o, &tip)?;
            let kept = salvage::keep_branch(repo, branch, o)?;
            record(repo, branch)?;
            return Ok(Some(Told {
                line: format!(
                    "branch `{branch}` was moved back to {}, an earlier commit of task {task}'s own, from {} where qw left it: task {task} resumes from {}; the {dropped} commit(s) it dropped are kept on branch `{kept}` (`git branch -D {}` once you do not need them)",
                    super::short(&tip),
                    super::short(o),
                    super::short(&tip),
                    quote(&kept)
                ),
                resumes: true,
            }));
        }
        // Else nothing qw did not leave there: the task starts from the target as
        // usual, or from qw's own unmerged tip, put back (what the branch was moved back
        // from is all in it).
        if let Some(o) = &ours {
            git(
                &repo.top,
                &["update-ref", &format!("refs/heads/{branch}"), o, &tip],
            )?;
            return Ok(Some(Told {
                line: format!(
                    "branch `{branch}` was moved to {}, which holds no commit of task {task}'s that `{target_name}` lacks: qw put it back at {} where it left it, and task {task} resumes from there (`git branch -D {}` before a run drops its work instead)",
                    super::short(&tip),
                    super::short(o),
                    quote(branch)
                ),
                resumes: true,
            }));
        }
        return Ok(None);
    }
    if let Some(place) = made_by_user(repo, branch, task, &new, recorded.as_deref(), run_start) {
        record(repo, branch)?;
        let how = match &recorded {
            Some(o) => format!("was moved since qw left it ({})", super::short(o)),
            None => "was left by a qw before this one recorded the branches it leaves (its reflog says qw made it)".to_owned(),
        };
        return Ok(Some(Told {
            line: format!(
                "branch `{branch}` {how}: its {} new commit(s) (up to {}) were made {place}, so they are taken as task {task}'s (your fix, or its own work): task {task} resumes from them",
                new.len(),
                super::short(&tip)
            ),
            resumes: true,
        }));
    }
    let kept = salvage::keep_branch(repo, branch, &tip)?;
    let resumes = ours.is_some();
    let then = match &ours {
        Some(o) => {
            git(
                &repo.top,
                &["update-ref", &format!("refs/heads/{branch}"), o, &tip],
            )?;
            format!(
                "`{branch}` is back where qw left it ({}) and task {task} resumes from there",
                super::short(o)
            )
        }
        None => {
            git(
                &repo.top,
                &["update-ref", "-d", &format!("refs/heads/{branch}"), &tip],
            )?;
            format!("task {task} starts from `{target_name}`")
        }
    };
    let who = if record_file(repo, branch).symlink_metadata().is_ok() {
        "moved since qw left it"
    } else {
        "made by someone other than qw (its reflog does not show an older qw made it, before qw recorded the branches it leaves)"
    };
    Ok(Some(Told {
        line: format!(
            "branch `{branch}` was {who}: its {} commit(s) that qw did not leave there and `{target_name}` lacks (up to {}) were not made where qw takes commits as yours (in the main worktree, a worktree of yours or on the branch itself, before this run began): another task's worktree, a worktree that appeared while a run went on, a commit in the main worktree during this run, or a `git update-ref`/`branch -f`, so they are not task {task}'s work as far as qw can tell and are not merged: they are kept on branch `{kept}` (`git merge {}` takes them); {then}",
            new.len(),
            super::short(&tip),
            quote(&kept)
        ),
        resumes,
    }))
}

/// Why task `task` cannot start when its `branch` is checked out in `w`, a worktree qw
/// did not make (rev1 L3), with the command that frees the branch and keeps everything
/// there: `git -C <it> switch --detach` (same commit, same files, its commits stay on
/// the branch), or, when its directory is gone, `git worktree prune` (after `unlock`).
pub(crate) fn held_elsewhere(
    w: &super::ListedWorktree,
    branch: &str,
    task: &str,
    spec: &str,
) -> String {
    let path = w.path.to_string_lossy();
    let fix = if w.path.is_dir() {
        format!(
            "`git -C {} switch --detach` frees it (that worktree stays, on the same commit with the same files; its commits stay on `{branch}`)",
            quote(&path)
        )
    } else if w.locked.is_some() {
        format!(
            "its directory is gone: `git worktree unlock {}` then `git worktree prune` forget it",
            quote(&path)
        )
    } else {
        "its directory is gone: `git worktree prune` forgets it".to_owned()
    };
    format!(
        "task {task} was not started: its branch `{branch}` is checked out in the worktree `{path}`, which qw did not make (an agent's `git worktree add`, or yours), and qw never takes a branch from a worktree it did not make; {fix}, then run `{}` (commits on the branch that qw did not leave there are then kept apart, not merged)",
        super::shell::continue_cmd(spec)
    )
}

impl Repo {
    /// The branch the main worktree was on before its git checked out a branch named
    /// like a task's (a rebase or switch onto a task branch run there, by hand or as
    /// qw's hint once printed): what `git switch` takes it back to. Read from its HEAD
    /// reflog, newest first: a `checkout: moving from <it> to …`, or an entry at the tip
    /// of exactly one branch not named like qw's (a rebase starts by checking out its
    /// base, detached). `None` when the log does not say.
    pub fn branch_before_task_branch(&self) -> Option<String> {
        let run = |args: &[&str]| -> Option<String> {
            git_output(&self.top, args, &[])
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let theirs = |b: &str| !b.is_empty() && b != "qw" && !b.starts_with("qw/");
        let tips: Vec<(String, String)> = run(&[
            "for-each-ref",
            "--format=%(objectname) %(refname:lstrip=2)",
            "refs/heads/",
        ])?
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, b)| theirs(b))
        .map(|(c, b)| (c.to_owned(), b.to_owned()))
        .collect();
        let log = run(&["reflog", "show", "--format=%H%x09%gs", "HEAD", "--"])?;
        for line in log.lines() {
            let (sha, message) = line.split_once('\t').unwrap_or((line, ""));
            if let Some((from, _)) = message
                .strip_prefix("checkout: moving from ")
                .and_then(|l| l.split_once(" to "))
                && tips.iter().any(|(_, b)| b == from)
            {
                return Some(from.to_owned());
            }
            let at: Vec<&String> = tips
                .iter()
                .filter(|(c, _)| c == sha)
                .map(|(_, b)| b)
                .collect();
            if let [b] = at[..] {
                return Some(b.clone());
            }
        }
        None
    }
}
