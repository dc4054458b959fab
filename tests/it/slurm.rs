//! `--executor slurm` against a real Slurm cluster (CONTRACT §11).
//!
//! The cluster is `scripts/slurm-dev-cluster` (a single node on this machine, so "the
//! node" is here and its processes can be inspected). Without a cluster every test
//! prints why and passes, unless `QW_REQUIRE_SLURM=1` (set by `.ci/run`), which makes a
//! missing cluster a failure.
//!
//! Cleanup is by id: a [`Jobs`] guard cancels every job whose working directory is inside
//! the test's project, and a `MarkerGuard` kills every process carrying the test's marker.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Is a Slurm cluster up with a usable node? Prints the reason and returns false when
/// not (panics instead under `QW_REQUIRE_SLURM=1`).
pub fn cluster_up() -> bool {
    let why = match Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => format!("`sinfo` cannot run ({e})"),
        Ok(o) if !o.status.success() => format!(
            "`sinfo` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout).into_owned();
            // Any state in which the node takes jobs (idle, mixed, allocated, completing,
            // planned…), i.e. not down, drained, failing or unreachable.
            let usable = |s: &str| {
                let s = s
                    .trim()
                    .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']);
                !s.is_empty()
                    && ![
                        "down", "drain", "fail", "unk", "not_resp", "inval", "future", "power",
                    ]
                    .iter()
                    .any(|bad| s.starts_with(bad))
            };
            if states.lines().any(usable) {
                return true;
            }
            format!("no node is up (sinfo: {})", states.trim())
        }
    };
    if std::env::var("QW_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
        panic!("QW_REQUIRE_SLURM=1 but {why}; start one with `sudo scripts/slurm-dev-cluster`");
    }
    eprintln!(
        "skipping: no Slurm cluster: {why} (start one with `sudo scripts/slurm-dev-cluster`)"
    );
    false
}

/// One row of `squeue --me` for jobs whose working directory is under `dir`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub state: String,
    pub name: String,
}

/// The user's jobs (any state Slurm remembers) running in a folder under `dir`.
pub fn jobs_under(dir: &std::path::Path, all_states: bool) -> Vec<Job> {
    let mut args = vec!["--me", "--noheader", "--format=%i|%T|%j|%Z"];
    if all_states {
        args.push("--states=all");
    }
    let out = Command::new("squeue").args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, '|').collect();
            (f.len() == 4 && std::path::Path::new(f[3]).starts_with(dir)).then(|| Job {
                id: f[0].to_owned(),
                state: f[1].to_owned(),
                name: f[2].to_owned(),
            })
        })
        .collect()
}

/// Active (not ended) jobs under `dir`.
pub fn active_jobs_under(dir: &std::path::Path) -> Vec<Job> {
    jobs_under(dir, false)
}

/// Cancels, by id, every job of the test's project that is still in the queue.
pub struct Jobs(pub std::path::PathBuf);

impl Drop for Jobs {
    fn drop(&mut self) {
        let ids: Vec<String> = active_jobs_under(&self.0)
            .into_iter()
            .map(|j| j.id)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("scancel").args(&ids).status();
        }
    }
}

/// A project for a Slurm test, its guards, and `qw exec --executor slurm` tagged with
/// the marker.
struct Setup {
    p: TestProject,
    marker: String,
    _procs: MarkerGuard,
    _jobs: Jobs,
}

impl Setup {
    /// A setup when a cluster is up (see [`cluster_up`]).
    fn on_cluster() -> Option<Setup> {
        cluster_up().then(Setup::new)
    }

    fn new() -> Setup {
        let p = TestProject::new();
        let marker = marker();
        let jobs = Jobs(p.path().to_path_buf());
        Setup {
            _procs: MarkerGuard(marker.clone()),
            marker,
            _jobs: jobs,
            p,
        }
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = self.p.qw(&["exec", "--executor", "slurm"]);
        c.args(args);
        c.env("QW_TEST_MARKER", &self.marker);
        c
    }

    fn survivors(&self) -> Vec<i32> {
        pids_with_env("QW_TEST_MARKER", &self.marker)
    }
}

#[test]
fn hostile_tree_in_a_job_times_out_with_124_and_leaves_nothing_on_the_node() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    // Ignores SIGTERM, and leaves a setsid()ed grandchild that ignores it too.
    let script = "trap '' TERM; setsid sh -c \"trap '' TERM; sleep 300\" & sleep 300";
    let out = s
        .exec(&[
            "--json",
            "--timeout",
            "2",
            "--grace",
            "1",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let report = last_json(&out);
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["escalated_to_kill"], true, "{report}");
    assert_eq!(report["scheduler"]["scheduler"], "slurm", "{report}");
    let id = report["scheduler"]["job_id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    assert!(s.survivors().is_empty(), "survivors: {:?}", s.survivors());
    assert!(
        active_jobs_under(s.p.path()).is_empty(),
        "job {id} still in the queue"
    );
    // The job was named and its files landed in the project's run folder.
    let jobs = jobs_under(s.p.path(), true);
    assert!(
        jobs.iter()
            .any(|j| j.id == id && j.name == "qw/exec/sh" && j.state == "FAILED"),
        "{jobs:?}"
    );
}

/// What the hostile-tree test above once caught under load: a survivor carrying the
/// test's marker right after `qw exec` returned. It was no process of the job's tree (qw
/// exec on the node ends and reaps those before it reports) but qw's own `squeue`: the
/// poll thread started one more query while `run` was returning, and it outlived qw. A
/// `squeue` slowed down to half a second makes that query certain to be in flight.
#[test]
fn qw_returns_leaving_no_squeue_of_its_own_running() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let real = Command::new("sh")
        .args(["-c", "command -v squeue"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    assert!(!real.is_empty(), "no squeue on PATH");
    s.p.script(
        "slow-bin/squeue",
        &format!("#!/bin/sh\nsleep 0.5\nexec '{real}' \"$@\"\n"),
    );
    let path = path_with(&s.p.path().join("slow-bin"));
    for _ in 0..2 {
        let out = s
            .exec(&["--", "sh", "-c", "sleep 1"])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let left: Vec<String> = s
            .survivors()
            .into_iter()
            .map(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ")
            })
            .collect();
        assert!(left.is_empty(), "left running after qw returned: {left:?}");
    }
}

#[test]
fn output_exit_code_and_an_explicit_environment_reach_the_caller() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let out = s
        .exec(&[
            "--json",
            "--",
            "sh",
            "-c",
            "echo out:$PWD; echo err >&2; echo secret=${QW_NOT_A_SECRET:-}${LEAKY_VAR:-none}; \
             echo job=${SLURM_JOB_ID:-none} home=${HOME:-none}; exit 3",
        ])
        .current_dir(s.p.path())
        .env("QW_NOT_A_SECRET", "passed-")
        .env("LEAKY_VAR", "leaked")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    // The program ran in the caller's directory, not in the run folder.
    let cwd = s.p.path().canonicalize().unwrap();
    assert!(text.contains(&format!("out:{}", cwd.display())), "{text}");
    // QW_* passes, an arbitrary login variable does not.
    assert!(text.contains("secret=passed-none"), "{text}");
    assert!(!text.contains("job=none"), "{text}");
    assert!(!text.contains("home=none"), "{text}");
    assert!(stderr(&out).contains("err"), "{}", stderr(&out));
    let report = last_json(&out);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["scheduler"]["state"], "FAILED", "{report}");
    // The job's env file (it may hold API keys) is gone once the job read it.
    let leftovers: Vec<_> = walk(&s.p.claude().join("runs"))
        .into_iter()
        .filter(|p| p.ends_with("slurm-env"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Start `qw exec --executor slurm -- sh -c SCRIPT` in the background and wait until the
/// program runs on the node (it touches a file first).
fn start_running(s: &Setup, args: &[&str], script: &str) -> (std::process::Child, Job) {
    let started = s.p.path().join("started");
    let body = format!("touch '{}'; {script}", started.display());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--", "sh", "-c", &body]);
    let child = s
        .exec(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || started.exists()),
        "the job never ran"
    );
    let job = active_jobs_under(s.p.path()).into_iter().next();
    (child, job.expect("the running job is in the queue"))
}

#[test]
fn a_job_cancelled_from_outside_is_killed_by_user() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let (child, job) = start_running(
        &s,
        &["--json", "--grace", "1"],
        "trap '' TERM; setsid sleep 300 & sleep 300",
    );
    let st = Command::new("scancel").arg(&job.id).status().unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let report = last_json(&out);
    assert_eq!(report["scheduler"]["state"], "CANCELLED", "{report}");
    // The classifier every workflow uses says killed_by_user, with Slurm's evidence.
    let report: quantumwala::exec::ExecReport = serde_json::from_value(report).unwrap();
    let run = quantumwala::agent::outcome::classify(&quantumwala::agent::outcome::ClassifyInput {
        report: &report,
        stdout: b"",
        stderr_tail: "",
        phase: quantumwala::agent::Phase::Implementation,
        user_cancelled: false,
    });
    assert_eq!(run.outcome.as_str(), "killed_by_user", "{}", run.evidence);
    assert!(run.evidence.contains(&job.id), "{}", run.evidence);
    assert!(s.survivors().is_empty(), "survivors: {:?}", s.survivors());
    assert!(active_jobs_under(s.p.path()).is_empty());
}

#[test]
fn ctrl_c_cancels_the_job_and_returns_when_it_is_gone() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let (child, _job) = start_running(
        &s,
        &["--json", "--grace", "1"],
        "trap '' TERM INT; setsid sleep 300 & sleep 300",
    );
    unsafe_kill(child.id() as i32, 2);
    let out = child.wait_with_output().unwrap();
    // The tree ignored SIGINT and was killed after the grace.
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let report = last_json(&out);
    assert_eq!(report["interrupted_by"], 2, "{report} {}", stderr(&out));
    assert_eq!(report["scheduler"]["state"], "CANCELLED", "{report}");
    assert!(
        active_jobs_under(s.p.path()).is_empty(),
        "job left in the queue"
    );
    assert!(s.survivors().is_empty(), "survivors: {:?}", s.survivors());
}

#[test]
fn sigkilled_qw_leaves_jobs_that_sweep_cancels() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let (mut child, job) = start_running(&s, &["--grace", "1"], "exec sleep 300");
    sigkill(&mut child);
    // The submitting qw is gone; its job is not.
    let still: Vec<String> = active_jobs_under(s.p.path())
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(still, vec![job.id.clone()]);
    let out = s.p.run(&["sweep", "--project-only", "--grace", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("cancelled Slurm job {}", job.id)),
        "{}",
        stdout(&out)
    );
    assert!(
        active_jobs_under(s.p.path()).is_empty(),
        "job left in the queue"
    );
    assert!(
        wait_until(Duration::from_secs(10), || s.survivors().is_empty()),
        "survivors: {:?}",
        s.survivors()
    );
}

#[test]
fn next_command_in_the_project_cancels_a_killed_qws_jobs_by_itself() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let (mut child, job) = start_running(&s, &["--grace", "1"], "exec sleep 300");
    sigkill(&mut child);
    let out = s.p.run(&["exec", "--no-record", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cancelled 1 Slurm job(s) of a qw that was killed: {}",
            job.id
        )),
        "{}",
        stderr(&out)
    );
    assert!(active_jobs_under(s.p.path()).is_empty());
}

#[test]
fn a_job_pending_past_the_acquire_timeout_fails_naming_partition_and_reason() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    s.p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"acquire_timeout_s": 2}}"#,
    );
    let start = Instant::now();
    let out = s
        .exec(&["--slurm-arg=--begin=now+1hour", "--", "touch", "ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("still pending after"), "{err}");
    assert!(err.contains("in partition `"), "{err}");
    assert!(err.contains("BeginTime"), "{err}");
    assert!(err.contains("acquire_timeout_s"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(
        active_jobs_under(s.p.path()).is_empty(),
        "job left in the queue"
    );
    assert!(!s.p.path().join("ran").exists());
}

#[test]
fn an_option_and_its_value_in_one_slurm_arg_reach_sbatch_as_sbatch_reads_two_words() {
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    for arg in ["-p qw", "--partition qw", "-p  qw ", "-pqw"] {
        let out = s
            .exec(&["--json", &format!("--slurm-arg={arg}"), "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "`{arg}`: {}", stderr(&out));
        let report = last_json(&out);
        assert_eq!(report["scheduler"]["partition"], "qw", "`{arg}`: {report}");
    }
}

#[test]
fn bad_slurm_args_and_settings_are_refused_before_anything_is_submitted() {
    // Needs no cluster: nothing may reach Slurm.
    let s = Setup::new();
    let out = s
        .exec(&["--slurm-arg=--job-name=x", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("--job-name"), "{}", stderr(&out));
    let out = s
        .exec(&["--slurm-arg=debug", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("not an sbatch option"),
        "{}",
        stderr(&out)
    );
    // One value holding an option and its value: a short option is read as sbatch would
    // read two words, never as a value starting with a space; so `-J x` is qw's own.
    for bad in ["-J x", "--job-name x", " -o out", "-t 5"] {
        let out = s
            .exec(&[&format!("--slurm-arg={bad}"), "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("which qw sets itself"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    // Another user's job: qw could neither supervise nor cancel it.
    for bad in ["--uid=nobody", "--uid nobody", "--gid=nogroup", "--ui=0"] {
        let out = s
            .exec(&[&format!("--slurm-arg={bad}"), "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(bad.trim()) && err.contains("another user") && err.lines().count() == 1,
            "{bad}: {err}"
        );
    }
    s.p.write(
        ".claude/settings.local.json",
        r#"{"quantumwala": {"executor": "kubernetes"}}"#,
    );
    let out = s.p.run(&["exec", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("quantumwala.executor"),
        "{}",
        stderr(&out)
    );
    assert!(
        !s.p.claude().join("runs").exists(),
        "something was prepared"
    );
}

#[test]
fn a_new_executor_takes_over_a_killed_qws_running_job_instead_of_running_it_twice() {
    use quantumwala::exec::slurm::{DEFAULT_POLL, SlurmConfig, SlurmExecutor};
    use quantumwala::exec::{Cancel, ExecSpec, Executor, Output, Program};
    let Some(s) = Setup::on_cluster() else {
        return;
    };
    let count = s.p.path().join("count");
    let go = s.p.path().join("go");
    // The job runs until the test says go, however slow the machine is.
    let script = format!(
        "echo run >> '{}'; while [ ! -e '{}' ]; do sleep 0.1; done; echo finished",
        count.display(),
        go.display()
    );
    let (mut child, job) = start_running(&s, &["--grace", "1"], &script);
    sigkill(&mut child);

    let (state_dir, runs_dir) = SlurmConfig::for_project_dirs(&s.p.claude());
    let executor = SlurmExecutor::new(
        qw_bin(),
        SlurmConfig {
            args: Vec::new(),
            export: Vec::new(),
            pending_timeout: Duration::from_secs(120),
            poll_interval: DEFAULT_POLL,
            state_dir,
            runs_dir,
        },
    )
    .unwrap();
    let taken = executor.adopt_orphans(s.p.path(), "qw/exec/").unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].job_id, job.id);
    // A sweep now leaves the job alone: it belongs to a live qw.
    let out = s.p.run(&["sweep", "--project-only"]);
    assert!(!stdout(&out).contains("cancelled"), "{}", stdout(&out));
    assert_eq!(active_jobs_under(s.p.path()).len(), 1);
    std::fs::write(&go, "").unwrap();

    // Running the same work again waits for that job and takes its result.
    let new_dir = s.p.path().join("attempt-2");
    std::fs::create_dir_all(&new_dir).unwrap();
    let mut spec = ExecSpec::new(Program::argv(["sh", "-c", "echo run >> count"]).unwrap());
    spec.name = Some("qw/exec/sh".into());
    spec.stdout = Output::File(new_dir.join("stdout.log"));
    spec.stderr = Output::File(new_dir.join("stderr.log"));
    let report = executor.run(&spec, &Cancel::new()).unwrap();
    assert_eq!(report.exit_code, 0, "{report:?}");
    let v = report.scheduler.unwrap();
    assert_eq!(v.job_id, job.id);
    assert!(v.adopted_from.is_some());
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "ran twice"
    );
    assert!(
        std::fs::read_to_string(new_dir.join("stdout.log"))
            .unwrap()
            .contains("finished")
    );
    assert!(active_jobs_under(s.p.path()).is_empty());
}

/// `qw sweep` asks Slurm only where qw has used it: a fake `squeue` that fails (as one
/// does when the controller is down) is not even run in a project that never submitted,
/// and is run — with a one-line warning — under `--slurm` or once qw left its
/// `owners/` folder. Needs no cluster.
#[test]
fn sweep_asks_slurm_only_where_qw_used_it() {
    let p = TestProject::new();
    let calls = p.path().join("squeue-calls");
    let bin = p.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let squeue = bin.join("squeue");
    std::fs::write(
        &squeue,
        format!(
            "#!/bin/sh\necho called >> '{}'\necho 'Unable to contact slurm controller' >&2\nexit 1\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&squeue, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = path_with(&bin);
    let sweep = |args: &[&str]| p.qw(args).env("PATH", &path).output().unwrap();

    let o = sweep(&["sweep", "--project-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "a never-used Slurm is not asked");
    assert!(
        !calls.exists(),
        "squeue ran although qw never submitted here"
    );

    let o = sweep(&["sweep", "--project-only", "--slurm"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(calls.exists(), "--slurm asks Slurm");
    let err = stderr(&o);
    assert!(
        err.contains("could not sweep Slurm jobs") && err.contains("controller"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    std::fs::remove_file(&calls).unwrap();
    std::fs::create_dir_all(p.claude().join("slurm/owners")).unwrap();
    let o = sweep(&["sweep", "--project-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(calls.exists(), "a project qw submitted from is swept");
}

// ---- The workflow under `--executor slurm` ----

/// Six independent tasks.
const SIX: &str = "# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n- [ ] 3. Three\n- [ ] 4. Four\n- [ ] 5. Five\n- [ ] 6. Six\n";

/// A Flow (fake claude on PATH) whose documents exist, so only implementation and
/// validation run, set up for Slurm: the fake's `FAKE_*` knobs pass through
/// `quantumwala.slurm.export` (nothing else of the test's environment reaches the node).
fn slurm_flow(tasks_md: &str) -> (Flow, Jobs) {
    let f = Flow::new(tasks_md);
    f.p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000},
            "quantumwala": {"slurm": {"export": ["FAKE_*"], "poll_interval_s": 0.2}}}"#,
    );
    f.p.write(
        ".claude/specs/demo/requirements.md",
        "# Requirements\n\n1. It works.\n",
    );
    f.p.write(".claude/specs/demo/design.md", "# Design\n\nSimple.\n");
    f.p.write(".claude/specs/demo/tasks.md", tasks_md);
    let jobs = Jobs(f.path().to_path_buf());
    (f, jobs)
}

/// The most runs of the fake that overlapped in time, from its start/end log.
fn peak_overlap(f: &Flow) -> usize {
    let mut events: Vec<(u64, i32)> = f
        .log()
        .into_iter()
        .filter(|(_, phase, _, _)| phase == "implementation")
        .map(|(kind, _, _, ms)| (ms, if kind == "start" { 1 } else { -1 }))
        .collect();
    // Ends before starts at the same millisecond.
    events.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

#[test]
fn a_workflow_of_six_tasks_at_parallel_three_is_six_slurm_jobs_all_completed() {
    if !cluster_up() {
        return;
    }
    let six = SIX.replace("- [ ] 6. Six\n", "- [ ] 6. Six\n  - _Verify: `true`_\n");
    let (mut f, _jobs) = slurm_flow(&six);
    f.set("FAKE_SLEEP", "1");
    let out = f.auto(&[
        "--agent",
        "claude",
        "--executor",
        "slurm",
        "--parallel",
        "3",
    ]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let jobs = jobs_under(f.path(), true);
    let mut ids = Vec::new();
    for t in 1..=6 {
        let name = format!("qw/demo/{t}");
        let mine: Vec<&Job> = jobs.iter().filter(|j| j.name == name).collect();
        assert_eq!(mine.len(), 1, "{name}: {jobs:?}");
        assert_eq!(mine[0].state, "COMPLETED", "{name}: {jobs:?}");
        ids.push(mine[0].id.clone());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{jobs:?}");
    assert!(
        jobs.iter()
            .any(|j| j.name == "qw/demo/validation" && j.state == "COMPLETED"),
        "{jobs:?}"
    );
    // The verify command ran as a job of its own.
    assert!(
        jobs.iter()
            .any(|j| j.name == "qw/demo/6/verify" && j.state == "COMPLETED"),
        "{jobs:?}"
    );
    assert!(peak_overlap(&f) <= 3, "more than 3 jobs ran at once");
    // Each task's run folder holds the report of `qw exec` on the node, with Slurm's
    // verdict beside it in the state.
    for t in 1..=6 {
        let run = f.task(&t.to_string())["run_id"].clone();
        let dir = f
            .path()
            .join(".claude/runs")
            .join(run.as_str().unwrap_or("?"));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("exec-report.json")).unwrap())
                .unwrap();
        assert_eq!(report["exit_code"], 0, "task {t}: {report}");
    }
    for t in 1..=6 {
        assert_eq!(f.task(&t.to_string())["status"], "completed");
    }
    assert!(!f.tasks_md().contains("- [ ]"), "{}", f.tasks_md());
    // The executor is remembered for workflow-continue.
    let opts = &f.state()["specifications"]["demo"]["workflow_options"];
    assert_eq!(opts["executor"], "slurm", "{opts}");
    assert!(pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty());
}

#[test]
fn ctrl_c_mid_workflow_leaves_no_job_in_the_queue_and_no_process() {
    if !cluster_up() {
        return;
    }
    let (mut f, _jobs) = slurm_flow(SIX);
    f.set("FAKE_SLEEP", "300");
    let mut child = f.start_auto_keeping_stderr(&[
        "--agent",
        "claude",
        "--executor",
        "slurm",
        "--parallel",
        "3",
        "--grace",
        "1",
    ]);
    assert!(
        wait_until(Duration::from_secs(90), || f
            .log()
            .iter()
            .filter(|(k, _, _, _)| k == "start")
            .count()
            >= 3),
        "three agents never started"
    );
    unsafe_kill(child.id() as i32, 2);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_nothing_left(&f);
    // Three tasks never started: no job was submitted for them.
    let submitted: Vec<Job> = jobs_under(f.path(), true)
        .into_iter()
        .filter(|j| j.name.starts_with("qw/demo/"))
        .collect();
    assert_eq!(submitted.len(), 3, "{submitted:?}");
}

#[test]
fn workflow_continue_after_a_sigkill_waits_for_the_running_job_instead_of_running_it_again() {
    if !cluster_up() {
        return;
    }
    let tasks = "# Tasks\n\n- [ ] 1. Slow\n- [ ] 2. After\n  - _Depends: 1_\n";
    let (mut f, _jobs) = slurm_flow(tasks);
    f.set("FAKE_SLOW", "1").set("FAKE_SLOW_SECS", "4");
    let mut child = f.start_auto(&["--agent", "claude", "--executor", "slurm"]);
    assert!(
        wait_until(Duration::from_secs(60), || f.runs_of("1") == 1),
        "task 1 never started"
    );
    sigkill(&mut child);
    assert_eq!(active_jobs_under(f.path()).len(), 1);
    // No --executor: continue keeps the one the workflow started with.
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1, "task 1 ran twice: {:?}", f.log());
    assert_eq!(f.runs_of("2"), 1);
    assert_eq!(f.task("1")["status"], "completed");
    let jobs = jobs_under(f.path(), true);
    assert_eq!(
        jobs.iter().filter(|j| j.name == "qw/demo/1").count(),
        1,
        "{jobs:?}"
    );
    assert!(jobs.iter().all(|j| j.state == "COMPLETED"), "{jobs:?}");
}

#[test]
fn the_command_agent_in_a_git_repo_gets_a_worktree_per_task_under_slurm() {
    if !cluster_up() {
        return;
    }
    let tasks = "# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n- [ ] 3. Three\n";
    let (f, _jobs) = slurm_flow(tasks);
    // The agent writes a file named after its task where it runs (its worktree) and
    // prints a result; QW_WORKTREE must point there.
    f.p.script(
        "bin/task-agent",
        "#!/bin/sh\n[ \"$QW_PHASE\" = implementation ] && [ \"$(pwd -P)\" = \"$(cd \"$QW_WORKTREE\" && pwd -P)\" ] && echo \"$QW_TASK_ID\" > \"task-$QW_TASK_ID.txt\"\necho '{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\",\"total_cost_usd\":0}'\n",
    );
    f.p.write(".gitignore", ".qw-runtime/\nfake.log*\nbin/\n");
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(f.path())
            .args(args)
            .envs(GIT_ENV.iter().copied())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "init"]);
    let agent = f.path().join("bin/task-agent");
    let mut c = f.cmd(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "command",
        "--agent-cmd",
        &agent.display().to_string(),
        "--executor",
        "slurm",
        "--parallel",
        "3",
    ]);
    c.envs(GIT_ENV.iter().copied());
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for t in 1..=3 {
        let merged = f.path().join(format!("task-{t}.txt"));
        assert_eq!(
            std::fs::read_to_string(&merged).unwrap_or_default(),
            format!("{t}\n"),
            "task {t}'s worktree was not merged"
        );
    }
    assert_eq!(
        jobs_under(f.path(), true)
            .iter()
            .filter(|j| j.name.starts_with("qw/demo/") && j.name != "qw/demo/validation")
            .count(),
        3
    );
}

#[test]
fn qw_sigkilled_mid_workflow_then_sweep_cancels_its_jobs_and_continue_redoes_nothing_completed() {
    if !cluster_up() {
        return;
    }
    let tasks = "# Tasks\n\n- [ ] 1. Quick\n- [ ] 2. Hangs\n- [ ] 3. After one\n  - _Depends: 1_\n";
    let (mut f, _jobs) = slurm_flow(tasks);
    f.set("FAKE_SLOW", "2").set("FAKE_SLOW_SECS", "300");
    let mut child = f.start_auto(&[
        "--agent",
        "claude",
        "--executor",
        "slurm",
        "--parallel",
        "2",
        "--grace",
        "1",
    ]);
    assert!(
        wait_until(Duration::from_secs(120), || f
            .tasks_md()
            .contains("- [x] 1.")
            && f.tasks_md().contains("- [x] 3.")
            && f.runs_of("2") == 1),
        "tasks 1 and 3 never completed while task 2 ran: {:?}",
        f.log()
    );
    sigkill(&mut child);
    assert!(
        active_jobs_under(f.path())
            .iter()
            .any(|j| j.name == "qw/demo/2"),
        "{:?}",
        active_jobs_under(f.path())
    );
    let out = f.run(&["sweep", "--project-only"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        active_jobs_under(f.path()).is_empty(),
        "qw sweep left jobs: {:?}",
        active_jobs_under(f.path())
    );
    assert!(
        pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty(),
        "processes left after the sweep"
    );
    // Without --executor: continue keeps slurm. The cancelled job is not taken over: its
    // task runs again; the completed one does not.
    f.set("FAKE_SLOW_SECS", "0");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1, "task 1 ran again: {:?}", f.log());
    assert_eq!(f.runs_of("2"), 2, "{:?}", f.log());
    assert_eq!(f.runs_of("3"), 1, "{:?}", f.log());
    // The jobs of tasks 1 and 3 (completed) were not taken over: nothing to tell.
    assert!(!diag(&out).contains("taken over"), "{}", diag(&out));
    for t in ["1", "2", "3"] {
        assert_eq!(f.task(t)["status"], "completed", "task {t}");
    }
    let jobs = jobs_under(f.path(), true);
    assert_eq!(
        jobs.iter().filter(|j| j.name == "qw/demo/1").count(),
        1,
        "{jobs:?}"
    );
    assert!(active_jobs_under(f.path()).is_empty());
}

#[test]
fn fail_fast_under_slurm_cancels_the_running_jobs() {
    if !cluster_up() {
        return;
    }
    let tasks = "# Tasks\n\n- [ ] 1. Fails\n- [ ] 2. Slow\n- [ ] 3. Slow too\n- [ ] 4. Never\n  - _Depends: 2_\n";
    let (mut f, _jobs) = slurm_flow(tasks);
    // Task 1 fails once the other two run; 2 and 3 would run for five minutes.
    f.set("FAKE_FAIL", "1:9").set("FAKE_SLEEP", "300");
    let out = gated_run_under_slurm(&f, &["--fail-fast"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(f.task("1")["status"], "failed");
    for t in ["2", "3"] {
        let task = f.task(t);
        assert_eq!(task["outcome"], "killed_by_user", "task {t}: {task}");
        let evidence = task["error"].as_str().unwrap_or_default();
        assert!(evidence.contains("fail-fast"), "task {t}: {evidence}");
        assert!(
            !f.log()
                .iter()
                .any(|(k, p, id, _)| k == "end" && p == "implementation" && id == t),
            "task {t} ran to its end"
        );
    }
    assert_eq!(f.runs_of("4"), 0);
    // The line says what happens to the running ones under Slurm.
    let err = stderr(&out);
    assert!(
        err.contains("--fail-fast: no new task starts; the running jobs are cancelled"),
        "{err}"
    );
    assert!(!err.contains("running ones finish"), "{err}");
    // Their `qw exec` got the signal (`scancel --batch`) and ended the tree, then the
    // jobs were cancelled whole: Slurm's record says CANCELLED.
    let jobs = jobs_under(f.path(), true);
    for name in ["qw/demo/2", "qw/demo/3"] {
        assert!(
            jobs.iter()
                .any(|j| j.name == name && j.state == "CANCELLED"),
            "{name}: {jobs:?}"
        );
    }
}

/// `workflow-auto --executor slurm --parallel 3 --attempts 1 --grace 1` with `extra`
/// flags and an agent command that runs the fake claude, task 1 held back until tasks 2
/// and 3 run (2 and 3 sleep FAKE_SLEEP, 1 not at all); its output once it ended, with
/// no job of the project in the queue and no process of the test left.
fn gated_run_under_slurm(f: &Flow, extra: &[&str]) -> std::process::Output {
    let gate = f.path().join("gate");
    f.p.script(
        "bin/claude-gated",
        &format!(
            "#!/bin/sh\n[ \"$QW_TASK_ID\" = 1 ] && while [ ! -e '{}' ]; do sleep 0.1; done\nFAKE_SLEEP=$([ \"$QW_TASK_ID\" = 1 ] && echo 0 || echo \"$FAKE_SLEEP\") exec claude \"$@\"\n",
            gate.display()
        ),
    );
    let agent = format!(
        "{} -p {{prompt}}",
        f.path().join("bin/claude-gated").display()
    );
    let mut args = vec![
        "--agent",
        "command",
        "--agent-cmd",
        &agent,
        "--executor",
        "slurm",
        "--parallel",
        "3",
        "--attempts",
        "1",
        "--grace",
        "1",
    ];
    args.extend_from_slice(extra);
    let child = f.start_auto_keeping_stderr(&args);
    assert!(
        wait_until(Duration::from_secs(120), || f.runs_of("2") == 1
            && f.runs_of("3") == 1),
        "tasks 2 and 3 never started: {:?}",
        f.log()
    );
    std::fs::write(&gate, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_nothing_left(f);
    out
}

/// No job of the flow's project is in the queue, and no process of the test is left.
fn assert_nothing_left(f: &Flow) {
    let jobs = active_jobs_under(f.path());
    assert!(jobs.is_empty(), "{jobs:?}");
    let left = pids_with_env("QW_TEST_MARKER", &f.guard.0);
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// Jobs named `name` (any state Slurm remembers) under the flow's project.
fn jobs_named(f: &Flow, name: &str) -> Vec<Job> {
    jobs_under(f.path(), true)
        .into_iter()
        .filter(|j| j.name == name)
        .collect()
}

#[test]
fn a_cost_ceiling_crossed_under_slurm_cancels_the_running_jobs() {
    if !cluster_up() {
        return;
    }
    // Task 1 costs $0.60 and ends once 2 and 3 run; then task 4 (after 1) would cross
    // the $1.00 ceiling: the workflow stops, and 2 and 3 (five minutes each) are cancelled.
    let tasks = "# Tasks\n\n- [ ] 1. Costly\n- [ ] 2. Slow\n- [ ] 3. Slow too\n- [ ] 4. After one\n  - _Depends: 1_\n";
    let (mut f, _jobs) = slurm_flow(tasks);
    f.set("FAKE_COST_IMPL", "0.60").set("FAKE_SLEEP", "300");
    let out = gated_run_under_slurm(&f, &["--max-cost-per-run", "1.00"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert_eq!(f.task("1")["status"], "completed");
    assert_eq!(f.runs_of("4"), 0, "task 4 started past the ceiling");
    assert_eq!(f.task("4")["outcome"], "budget_exceeded");
    for t in ["2", "3"] {
        let task = f.task(t);
        assert_eq!(task["outcome"], "killed_by_user", "task {t}: {task}");
        let evidence = task["error"].as_str().unwrap_or_default();
        assert!(
            evidence.contains("cancelled because the workflow is stopping")
                && evidence.contains("cost ceiling of $1.00"),
            "task {t}: {evidence}"
        );
        assert!(
            !f.log()
                .iter()
                .any(|(k, p, id, _)| k == "end" && p == "implementation" && id == t),
            "task {t} ran to its end"
        );
        // Its job was cancelled: `qw exec` on the node ended the tree on the signal
        // and reported it, then the job was cancelled whole (Slurm's record says so).
        let jobs = jobs_named(&f, &format!("qw/demo/{t}"));
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].state, "CANCELLED", "{jobs:?}");
        let dir = f
            .path()
            .join(".claude/runs")
            .join(task["run_id"].as_str().unwrap_or("?"));
        if let Ok(text) = std::fs::read_to_string(dir.join("exec-report.json")) {
            let report: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(report["interrupted_by"], 15, "task {t}: {report}");
        } else {
            assert_eq!(jobs[0].state, "CANCELLED", "no report: {jobs:?}");
        }
    }
    // What the user reads: the ceiling, and that the running jobs are cancelled.
    let err = stderr(&out);
    assert!(
        err.contains("cost ceiling") && err.contains("running jobs are cancelled"),
        "{err}"
    );
}

#[test]
fn a_task_timeout_under_slurm_ends_the_task_timed_out_with_its_job_and_tree_gone() {
    if !cluster_up() {
        return;
    }
    let tasks = "# Tasks\n\n- [ ] 1. Hangs\n- [ ] 2. Quick\n";
    let (mut f, _jobs) = slurm_flow(tasks);
    // Task 1 sleeps 300 s and leaves a setsid()ed sleeper.
    f.set("FAKE_HANG", "1");
    let out = f.run(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "claude",
        "--executor",
        "slurm",
        "--parallel",
        "2",
        "--attempts",
        "1",
        "--task-timeout",
        "2",
        "--grace",
        "1",
    ]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t1 = f.task("1");
    assert_eq!(t1["status"], "failed", "{t1}");
    assert_eq!(t1["outcome"], "timed_out", "{t1}");
    assert_eq!(f.task("2")["status"], "completed");
    assert_nothing_left(&f);
    // qw exec on the node ended the tree at 2 s (not Slurm at its time limit).
    let jobs = jobs_named(&f, "qw/demo/1");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, "FAILED", "{jobs:?}");
    let dir = f
        .path()
        .join(".claude/runs")
        .join(t1["run_id"].as_str().unwrap_or("?"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exec-report.json")).unwrap())
            .unwrap();
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["exit_code"], 124, "{report}");
}

#[test]
fn a_project_no_node_sees_fails_the_workflow_naming_the_project_and_the_fix() {
    if !cluster_up() {
        return;
    }
    // The submitting qw sees the project through a bind mount in a mount namespace of
    // its own; the node (slurmd, in the machine's namespace) sees an empty folder at that
    // path: exactly a project on a filesystem the nodes do not share.
    let (f, _flow_jobs) = slurm_flow(SIX);
    let seen = tempfile::tempdir().unwrap();
    let _jobs = Jobs(seen.path().to_path_buf());
    let template = f.cmd(&[]);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount --bind \"$1\" \"$2\" && cd \"$2\" && shift 2 && exec \"$@\"")
        .arg("sh")
        .arg(f.path())
        .arg(seen.path())
        .arg(qw_bin())
        .args([
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent",
            "claude",
            "--executor",
            "slurm",
        ]);
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let project = seen.path().display().to_string();
    assert!(
        err.contains(&format!("no Slurm node sees the project `{project}`")),
        "the project is not named: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("filesystem the Slurm nodes share") && err.contains("same path"),
        "no fix given: {err}"
    );
    assert_eq!(f.runs_of("1"), 0, "an agent ran");
    assert!(active_jobs_under(seen.path()).is_empty());
    assert!(active_jobs_under(f.path()).is_empty());
}

#[test]
fn a_taken_over_verify_job_is_waited_for_and_its_log_lands_in_the_new_run() {
    if !cluster_up() {
        return;
    }
    let (f0, _jobs) = slurm_flow("# Tasks\n");
    let verify = f0.p.script(
        "bin/slow-verify",
        "#!/bin/sh\necho run >> verify-count\ntouch verify-started\nwhile [ ! -e verify-go ]; do sleep 0.1; done\necho verify-output-line\n",
    );
    let tasks = format!(
        "# Tasks\n\n- [ ] 1. Verified\n  - _Verify: `{}`_\n- [ ] 2. After\n  - _Depends: 1_\n",
        verify.display()
    );
    f0.p.write(".claude/specs/demo/tasks.md", &tasks);
    let f = f0;
    let mut child = f.start_auto(&["--agent", "claude", "--executor", "slurm"]);
    let started = f.path().join("verify-started");
    assert!(
        wait_until(Duration::from_secs(120), || started.exists()),
        "the verify job never ran: {:?}",
        f.log()
    );
    sigkill(&mut child);
    assert_eq!(
        jobs_named(&f, "qw/demo/1/verify")
            .iter()
            .filter(|j| j.state == "RUNNING")
            .count(),
        1,
        "{:?}",
        jobs_under(f.path(), true)
    );
    std::fs::write(f.path().join("verify-go"), "").unwrap();
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(
        std::fs::read_to_string(f.path().join("verify-count")).unwrap(),
        "run\n",
        "the verify command ran twice"
    );
    assert_eq!(f.runs_of("1"), 1, "{:?}", f.log());
    assert_eq!(f.task("1")["status"], "completed");
    assert_eq!(f.task("2")["status"], "completed");
    // The new run folder of task 1 holds the taken-over job's verify log.
    let run = f.task("1")["run_id"].as_str().unwrap_or("?").to_owned();
    let log = f.path().join(".claude/runs").join(&run).join("verify.log");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("verify-output-line"),
        "{} lacks the verify output",
        log.display()
    );
    // Both takeovers are told, each once. The agent's job had ended before the kill:
    // its result is taken over as a Slurm job, or — when its report had reached the run
    // folder — as a finished run of a killed qw (fix6m); either is said once.
    let text = diag(&out);
    assert_eq!(
        text.matches("`qw/demo/1/verify` of a qw that was killed")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("`qw/demo/1` of a qw that was killed").count()
            + text
                .matches("finished after the qw running it was killed")
                .count(),
        1,
        "{text}"
    );
    assert!(active_jobs_under(f.path()).is_empty());
}
