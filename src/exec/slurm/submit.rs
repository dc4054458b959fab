//! What qw hands to `sbatch`: the batch script, its arguments and the job's environment.
//! Pure functions, so the exact words are unit-tested.
//!
//! The script is generated, never written by a user: every word comes from an argv and
//! is quoted with `shell_words::quote`, and the script `exec`s `qw exec` at once, so the
//! shell is gone before the agent starts.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Slurm arguments qw sets itself; a user's `--slurm-arg` may not override them because
/// the protocol between qw and the job depends on them.
const RESERVED: &[(&str, Option<char>)] = &[
    ("--job-name", Some('J')),
    ("--output", Some('o')),
    ("--error", Some('e')),
    ("--chdir", Some('D')),
    ("--comment", None),
    ("--export", None),
    ("--export-file", None),
    ("--parsable", None),
    ("--wait", Some('W')),
    ("--wrap", None),
    ("--array", Some('a')),
    ("--requeue", None),
    ("--test-only", None),
    ("--open-mode", None),
    // The outer bound qw derives from --timeout + --grace; a limit of its own would end
    // the job as if qw's --timeout had (use --timeout).
    ("--time", Some('t')),
    ("--deadline", None),
];

/// Options that would run the job as another user: qw could neither supervise its
/// processes, nor cancel it, nor read the files it writes.
const OTHER_USER: &[&str] = &["--uid", "--gid"];

/// Check the user's `--slurm-arg`s and return them as sbatch must get them. Each must be
/// an option; one that holds an option and its value separated by whitespace (`-p qw`,
/// `--partition qw`, as a shell would leave `--slurm-arg="-p qw"`) is read the way sbatch
/// reads the two words, as `-pqw` / `--partition=qw`, so it is judged and passed alike
/// whatever the spelling (sbatch would otherwise take ` qw`, space included, as the value
/// of `-p`). None may be one qw sets itself, nor one that runs the job as another user.
/// The error names the argument.
pub(crate) fn check_user_args(args: &[String]) -> Result<Vec<String>, String> {
    args.iter().map(|a| check_user_arg(a)).collect()
}

fn check_user_arg(given: &str) -> Result<String, String> {
    let arg = normalise(given);
    if !arg.starts_with('-') || arg == "-" || arg == "--" {
        return Err(format!(
            "--slurm-arg `{given}` is not an sbatch option; give options whole, e.g. `--slurm-arg=--partition=debug`"
        ));
    }
    let name = arg.split_once('=').map_or(arg.as_str(), |(n, _)| n);
    // sbatch accepts unambiguous prefixes of long options.
    let is_long = |long: &str| name.len() > 3 && long.starts_with(name) || name == long;
    if name.starts_with("--")
        && let Some(long) = OTHER_USER.iter().find(|l| is_long(l))
    {
        return Err(format!(
            "--slurm-arg `{given}` sets `{long}`: the job would run as another user, whose processes qw cannot supervise or cancel and whose files it may not read; run qw as that user instead"
        ));
    }
    for (long, short) in RESERVED {
        let clash = if name.starts_with("--") {
            is_long(long)
        } else {
            short.is_some_and(|c| name.chars().nth(1) == Some(c))
        };
        if clash {
            return Err(format!(
                "--slurm-arg `{given}` sets `{long}`, which qw sets itself for every job (the job's name, run folder, output, environment and time limit; for the time limit use --timeout)"
            ));
        }
    }
    Ok(arg)
}

/// `-p qw` → `-pqw`, `--partition qw` → `--partition=qw` (the option ends at the first
/// whitespace, the value is trimmed); surrounding whitespace is dropped. An argument with
/// `=` before any whitespace keeps its value as given (`--constraint=a b`).
fn normalise(arg: &str) -> String {
    let arg = arg.trim();
    if !arg.starts_with('-') {
        return arg.to_owned();
    }
    let Some(ws) = arg.find(char::is_whitespace) else {
        return arg.to_owned();
    };
    if arg[..ws].contains('=') {
        return arg.to_owned();
    }
    let (opt, value) = (&arg[..ws], arg[ws..].trim());
    if opt.starts_with("--") {
        format!("{opt}={value}")
    } else {
        format!("{opt}{value}")
    }
}

/// A Slurm job name for a run: `qw/<spec>/<task>` as given, made safe for `squeue`
/// (no separator, no whitespace, at most 200 bytes).
pub(crate) fn job_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-/:+@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if clean.is_empty() {
        "qw/exec".to_owned()
    } else {
        clean
    }
}

/// Slurm's `--time` in whole minutes: timeout + grace + `margin`, rounded up. Slurm
/// enforces limits with minute granularity (and checks them about every 30 s), so this is
/// only the outer bound; `qw exec` on the node enforces the real one.
pub(crate) fn time_limit_minutes(timeout: Duration, grace: Duration, margin: Duration) -> u64 {
    let secs = (timeout + grace + margin).as_secs_f64();
    (secs / 60.0).ceil().max(1.0) as u64
}

/// Everything the script needs.
#[derive(Debug, Clone)]
pub(crate) struct ScriptSpec<'a> {
    /// The `qw` binary (absolute, the same path on the nodes).
    pub qw: &'a Path,
    /// The run folder (shared): holds the script, the env file and the report.
    pub run_dir: &'a Path,
    /// The script's own path (checked on the node: proof that the node sees the folder).
    pub script: &'a Path,
    /// `qw exec` arguments after `exec` (options, `--`, the program's argv).
    pub exec_args: Vec<OsString>,
}

/// Exit code of the script when the node does not see the run folder.
pub(crate) const EXIT_NOT_SHARED: i32 = 97;
/// Exit code of the script when the node has no executable `qw` at the submitter's path.
pub(crate) const EXIT_NO_QW: i32 = 96;

/// The batch script.
pub(crate) fn script(s: &ScriptSpec<'_>) -> String {
    let q = |p: &Path| quote_os(p.as_os_str());
    let mut exec_line = format!(
        "exec /usr/bin/env -i {} exec --env \"SLURM_JOB_ID=${{SLURM_JOB_ID:-}}\" --env \"SLURMD_NODENAME=${{SLURMD_NODENAME:-}}\"",
        q(s.qw)
    );
    for a in &s.exec_args {
        exec_line.push(' ');
        exec_line.push_str(&quote_os(a));
    }
    format!(
        "#!/bin/sh\n\
         # Generated by qw: this Slurm job's only process is `qw exec`, which supervises the\n\
         # agent's whole process tree on the node (timeout, grace, no survivors).\n\
         # The environment is cleared (env -i); the program gets exactly the variables in\n\
         # the job's env file, which qw exec reads and deletes.\n\
         [ -f {script} ] || {{ echo \"qw: node $(hostname) does not see {dir}\" >&2; exit {not_shared}; }}\n\
         [ -x {qw} ] || {{ echo \"qw: node $(hostname) has no executable {qw}\" >&2; exit {no_qw}; }}\n\
         {exec_line}\n",
        script = q(s.script),
        dir = q(s.run_dir),
        qw = q(s.qw),
        not_shared = EXIT_NOT_SHARED,
        no_qw = EXIT_NO_QW,
    )
}

/// The files a job [`script`] captures the program's stdout and stderr to (its
/// `--stdout-file` and `--stderr-file`), read back from the script's text.
pub(crate) fn captured_files(script: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let Some(words) = script
        .lines()
        .rev()
        .find(|l| l.starts_with("exec "))
        .and_then(|l| shell_words::split(l).ok())
    else {
        return (None, None);
    };
    let mut out = (None, None);
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--" => break,
            "--stdout-file" => out.0 = it.next().map(PathBuf::from),
            "--stderr-file" => out.1 = it.next().map(PathBuf::from),
            _ => {}
        }
    }
    out
}

fn quote_os(s: &std::ffi::OsStr) -> String {
    shell_words::quote(&s.to_string_lossy()).into_owned()
}

/// The `sbatch` argv (without the program name) for one job.
#[derive(Debug, Clone)]
pub(crate) struct SbatchSpec<'a> {
    /// `--job-name`.
    pub name: &'a str,
    /// `--comment`: the owner record (`qw:<host>:<cookie>`).
    pub comment: &'a str,
    /// The run folder: `--chdir`, and `slurm.out` inside it.
    pub run_dir: &'a Path,
    /// `--time` in minutes.
    pub time_minutes: Option<u64>,
    /// The user's `--slurm-arg`s, last, so they refine qw's defaults.
    pub user_args: &'a [String],
    /// The batch script.
    pub script: &'a Path,
}

/// Name of the file that receives what Slurm itself writes about the job.
pub(crate) const SLURM_OUT: &str = "slurm.out";

/// The `sbatch` arguments.
pub(crate) fn sbatch_args(s: &SbatchSpec<'_>) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![
        "--parsable".into(),
        format!("--job-name={}", s.name).into(),
        format!("--comment={}", s.comment).into(),
        with_path("--chdir=", s.run_dir),
        with_path("--output=", &s.run_dir.join(SLURM_OUT)),
        "--open-mode=append".into(),
        // Only SLURM_* reach the batch script; the script clears even those (env -i).
        "--export=NONE".into(),
        // A node failure must not silently run the agent a second time: qw decides.
        "--no-requeue".into(),
        "--ntasks=1".into(),
    ];
    if let Some(m) = s.time_minutes {
        out.push(format!("--time={m}").into());
    }
    out.extend(s.user_args.iter().map(OsString::from));
    out.push(s.script.as_os_str().to_owned());
    out
}

fn with_path(flag: &str, p: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(p.as_os_str());
    s
}

/// Names always passed to the agent (when set), besides `QW_*`, `ANTHROPIC_*`, `CLAUDE_*`
/// and the explicit ones.
pub(crate) const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "CLAUDECODE",
];

/// Prefixes always passed.
pub(crate) const BASE_PREFIXES: &[&str] = &["QW_", "ANTHROPIC_", "CLAUDE_", "LC_"];

/// Variables qw sets itself inside the job; never copied from the submitter.
const OWN: &[&str] = &["QW_RUN_ID", "QW_PROJECT"];

/// The job's environment: from `vars` (the submitter's environment), every name in
/// [`BASE_ENV`], every name with a prefix in [`BASE_PREFIXES`] and every entry of `extra`
/// (a name, or a prefix ending in `*`); then `explicit` (the job's own variables) on top.
pub(crate) fn job_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    extra: &[String],
    explicit: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let wanted = |name: &str| {
        if OWN.contains(&name) {
            return false;
        }
        BASE_ENV.contains(&name)
            || BASE_PREFIXES.iter().any(|p| name.starts_with(p))
            || extra.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => e == name,
            })
    };
    let mut out: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(wanted))
        .collect();
    out.sort();
    for (k, v) in explicit {
        out.retain(|(have, _)| have != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// The env file: `NAME=VALUE` entries separated by NUL, as `qw exec --env-file` reads.
pub(crate) fn env_file_bytes(env: &[(OsString, OsString)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in env {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The comment that records a job's owner: `qw:<host>:<cookie>`.
pub(crate) fn owner_comment(host: &str, cookie: &str) -> String {
    format!("qw:{host}:{cookie}")
}

/// Split an owner comment back into host and cookie.
pub(crate) fn parse_owner_comment(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.strip_prefix("qw:")?;
    rest.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_args_are_options_and_never_qws_own() {
        let ok = |a: &[&str]| check_user_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(
            ok(&[
                "--partition=debug",
                "-pdebug",
                "--account=x",
                "--gres=gpu:1",
                "--qos=low"
            ])
            .is_ok()
        );
        assert!(ok(&["--mem=4G", "--constraint=avx2", "--begin=now+1hour"]).is_ok());
        assert!(ok(&["--time-min=5", "--dependency=afterok:1"]).is_ok());
        for bad in [
            "--uid=nobody",
            "--gid=0",
            "--ui=0",
            "debug",
            "--job-name=x",
            "-Jx",
            "--output=/tmp/x",
            "-o/tmp/x",
            "--export=ALL",
            "--wait",
            "--array=1-3",
            "--chdir=/",
            "--comm=x",
            "--wrap=ls",
            "--time=1",
            "-t1",
            "--deadline=now+5",
            "--",
        ] {
            let e = ok(&[bad]).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        // `--ex` is ambiguous for sbatch (--exclude, --export…): not ours to judge.
        assert!(ok(&["--exclusive"]).is_ok());
        // An option and its value in one argument are read as sbatch reads two words.
        for (given, want) in [
            ("-p qw", "-pqw"),
            ("  -p   qw ", "-pqw"),
            ("--partition qw", "--partition=qw"),
            ("--partition\tqw", "--partition=qw"),
            ("--constraint=a b", "--constraint=a b"),
            ("-pqw", "-pqw"),
        ] {
            assert_eq!(ok(&[given]).unwrap(), vec![want.to_owned()], "{given:?}");
        }
        for bad in ["-J x", "--job-name x", " -o out", "-t 5", "--uid nobody"] {
            let e = ok(&[bad]).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert!(ok(&["--uid nobody"]).unwrap_err().contains("another user"));
    }

    #[test]
    fn job_names_are_safe_for_squeue() {
        assert_eq!(job_name("qw/demo/1.2"), "qw/demo/1.2");
        assert_eq!(job_name("qw/a b|c/x"), "qw/a_b_c/x");
        assert_eq!(job_name(""), "qw/exec");
        assert_eq!(job_name(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn time_limit_is_timeout_plus_grace_plus_margin_in_whole_minutes() {
        let s = Duration::from_secs;
        assert_eq!(time_limit_minutes(s(2), s(1), s(60)), 2);
        assert_eq!(time_limit_minutes(s(0), s(0), s(0)), 1);
        assert_eq!(time_limit_minutes(s(1800), s(5), s(60)), 32);
        assert_eq!(time_limit_minutes(s(3540), s(0), s(60)), 60);
    }

    #[test]
    fn script_quotes_every_word_and_execs_qw_with_a_clean_environment() {
        let s = script(&ScriptSpec {
            qw: Path::new("/opt/q w/qw"),
            run_dir: Path::new("/p/.claude/runs/r1"),
            script: Path::new("/p/.claude/runs/r1/slurm-job.sh"),
            exec_args: vec![
                "--timeout".into(),
                "2.000".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                "echo 'hi'; $(rm -rf /)".into(),
            ],
        });
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("[ -f /p/.claude/runs/r1/slurm-job.sh ] ||"));
        assert!(s.contains("exit 97"));
        assert!(s.contains("[ -x '/opt/q w/qw' ] ||"));
        let last = s.lines().last().unwrap();
        assert!(
            last.starts_with("exec /usr/bin/env -i '/opt/q w/qw' exec "),
            "{last}"
        );
        assert!(
            last.ends_with(r#"-- sh -c 'echo '\''hi'\''; $(rm -rf /)'"#),
            "{last}"
        );
        // The words survive a round trip through a shell parser.
        let words = shell_words::split(last).unwrap();
        assert_eq!(words.last().unwrap(), "echo 'hi'; $(rm -rf /)");
        assert_eq!(captured_files(&s), (None, None));
        let s = script(&ScriptSpec {
            qw: Path::new("/qw"),
            run_dir: Path::new("/r/slurm-ab"),
            script: Path::new("/r/slurm-ab/slurm-job.sh"),
            exec_args: [
                "--stdout-file",
                "/r/verify log",
                "--stderr-file",
                "/r/verify log",
                "--",
                "x",
                "--stdout-file",
                "/no",
            ]
            .map(OsString::from)
            .to_vec(),
        });
        let want = Some(PathBuf::from("/r/verify log"));
        assert_eq!(captured_files(&s), (want.clone(), want));
    }

    #[test]
    fn sbatch_args_put_the_users_last_and_the_script_at_the_end() {
        let user = vec!["--partition=debug".to_owned()];
        let a = sbatch_args(&SbatchSpec {
            name: "qw/s/1",
            comment: "qw:vm:1.2.ab",
            run_dir: Path::new("/r"),
            time_minutes: Some(3),
            user_args: &user,
            script: Path::new("/r/slurm-job.sh"),
        });
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        for want in [
            "--parsable",
            "--job-name=qw/s/1",
            "--comment=qw:vm:1.2.ab",
            "--chdir=/r",
            "--output=/r/slurm.out",
            "--export=NONE",
            "--no-requeue",
            "--time=3",
        ] {
            assert!(a.contains(&want.to_owned()), "{want} missing from {a:?}");
        }
        assert_eq!(a[a.len() - 2], "--partition=debug");
        assert_eq!(a[a.len() - 1], "/r/slurm-job.sh");
    }

    #[test]
    fn job_env_passes_the_agents_variables_and_nothing_else() {
        let vars = [
            ("PATH", "/bin"),
            ("HOME", "/home/u"),
            ("ANTHROPIC_API_KEY", "k"),
            ("CLAUDE_CODE_USE_BEDROCK", "1"),
            ("QW_LOG", "debug"),
            ("QW_RUN_ID", "1.2.stale"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("AWS_REGION", "eu"),
            ("DISPLAY", ":0"),
            ("LC_ALL", "C"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let explicit = vec![(OsString::from("QW_SPEC"), OsString::from("demo"))];
        let env = job_env(vars, &["AWS_*".to_owned()], &explicit);
        let names: Vec<String> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into())
            .collect();
        for want in [
            "PATH",
            "HOME",
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_USE_BEDROCK",
            "QW_LOG",
            "AWS_REGION",
            "LC_ALL",
            "QW_SPEC",
        ] {
            assert!(
                names.contains(&want.to_owned()),
                "{want} missing: {names:?}"
            );
        }
        for never in ["SSH_AUTH_SOCK", "DISPLAY", "QW_RUN_ID"] {
            assert!(
                !names.contains(&never.to_owned()),
                "{never} leaked: {names:?}"
            );
        }
        let bytes = env_file_bytes(&env);
        assert_eq!(bytes.iter().filter(|&&b| b == 0).count(), env.len());
    }

    #[test]
    fn owner_comments_round_trip() {
        let c = owner_comment("vm", "12.34.ab");
        assert_eq!(parse_owner_comment(&c), Some(("vm", "12.34.ab")));
        assert_eq!(parse_owner_comment("something else"), None);
    }
}
