//! Cost of giving a task its worktree and taking it away again through qw's code path
//! (`Worktrees::create` + `Worktrees::remove`: the repository lock, listing, reuse checks,
//! `git worktree add` + `lock` beside the repository, the spec link, saving what the
//! worktree holds, `git worktree remove`, branch delete), beside a plain
//! `git worktree add -b` / `git worktree remove` / `git branch -D` in the same
//! repository, in the same run. Run by `scripts/bench-worktree`.
//!
//! Usage: bench_worktree FILES TASKS
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use quantumwala::project::Project;
use quantumwala::worktree::{Repo, Worktrees};

fn git(dir: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let files: usize = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let tasks: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    for i in 0..files {
        let sub = root.join(format!("src/m{:03}", i % 100));
        quantumwala::fs::create_dir_all(&sub)?;
        quantumwala::fs::write(
            sub.join(format!("f{i:05}.rs")),
            format!("// file {i}\npub fn f{i}() -> usize {{ {i} }}\n"),
        )?;
    }
    quantumwala::fs::create_dir_all(root.join(".claude/specs/bench"))?;
    quantumwala::fs::write(root.join(".gitignore"), ".claude/\n")?;
    git(root, &["init", "-q", "-b", "main"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "init"])?;

    let project = Project::at(root.canonicalize()?);
    let repo = Repo::discover(&project)?.ok_or("not a repository")?;
    let wts = Worktrees::new(repo, "bench", "main");
    // Plain worktrees beside qw's (outside the repository), in a directory of their own.
    let plain_tmp = tempfile::tempdir()?;
    let plain_dir = plain_tmp.path().to_path_buf();
    quantumwala::fs::create_dir_all(&plain_dir)?;

    let mut qw = Vec::new();
    let mut plain = Vec::new();
    // Interleaved, so both see the same machine load.
    for i in 0..tasks {
        let t = Instant::now();
        let (h, _) = wts.create(&format!("{i}"), &|_| {})?;
        let removed = wts.remove(&h, "bench", &|_| {});
        if !removed.warnings.is_empty() {
            return Err(removed.warnings.join("; ").into());
        }
        qw.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let p = plain_dir.join(format!("p{i}"));
        let p = p.to_string_lossy();
        let b = format!("plain/{i}");
        git(root, &["worktree", "add", "-q", "-b", &b, &p, "main"])?;
        git(root, &["worktree", "remove", "--force", &p])?;
        git(root, &["branch", "-D", "-q", &b])?;
        plain.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (q, p) = (median(qw), median(plain));
    println!("repository: {files} files, {tasks} tasks (median per task)");
    println!("qw create+remove:          {q:8.1} ms");
    println!("plain git add+remove:      {p:8.1} ms");
    println!("ratio qw / plain:          {:8.2}", q / p);
    Ok(())
}
