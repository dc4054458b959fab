//! The fake `claude` that behaves like the real CLI (reads `-p PROMPT`, writes the
//! document its phase asks for, prints one JSON result, and can be told to hang, fail,
//! cost money or hit a usage limit), and [`Flow`]: a project with it on PATH for
//! workflow-driven tests of every module.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use super::{MarkerGuard, TestProject, marker, stderr, stdout};

/// The fake `claude`. Knobs (environment):
/// - FAKE_LOG: append `start|end <phase> <task> <epoch-ms>` lines (invocation counting).
/// - FAKE_TASKS: file copied to tasks.md in the task_generation phase.
/// - FAKE_COST_IMPL / FAKE_COST_DOC: total_cost_usd for implementation / document runs.
/// - FAKE_HANG=<task>: that task sleeps 300 s (also in a setsid grandchild).
/// - FAKE_SLOW=<task>: that task sleeps FAKE_SLOW_SECS.
/// - FAKE_SLEEP: every implementation run sleeps this long.
/// - FAKE_HUGE=<task>: that task prints its init event, then FAKE_HUGE_BYTES bytes
///   without a newline, then sleeps 300 s.
/// - FAKE_FAIL=<task>:<n>: that task reports is_error its first n runs (counter files).
/// - FAKE_LOGIN=<task>: that task answers like a CLI that is not logged in.
/// - FAKE_LIMIT=<task>: that task hits the usage limit (until FAKE_LIMIT_FILE is removed),
///   session `11111111-0000-4000-8000-<task digits>`, costing FAKE_COST_LIMIT.
/// - Other runs' session is `00000000-0000-4000-8000-<task digits>` ([`fake_sid`]);
///   FAKE_SID=<task>:<id> makes that task's result name session `<id>` instead.
///   Implementation runs print an init event naming it first, like the real CLI.
/// - FAKE_GONE: a `--resume` answers like Claude Code without that session.
///
/// The log's start lines end with the session given to `--resume` (if any).
const FAKE_CLAUDE: &str = r#"#!/bin/sh
prompt=""
resume=""
while [ $# -gt 0 ]; do
  case "$1" in
    -p) prompt="$2"; shift 2 ;;
    --resume) resume="$2"; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$prompt" ] || { echo "fake claude: no -p prompt" >&2; exit 2; }
phase="$QW_PHASE"; task="$QW_TASK_ID"; spec="$QW_SPEC"
dir=".claude/specs/$spec"
now() { date +%s%3N; }
sid() { # a UUID per kind and task, as Claude Code's session ids are
  case "$1" in limited) k=11111111 ;; *) k=00000000 ;; esac
  printf '%s-0000-4000-8000-%012d' "$k" "$(printf %s "$task" | tr -cd 0-9)"
}
session() { # FAKE_SID=<task>:<id> overrides
  case "$FAKE_SID" in "$task":*) printf %s "${FAKE_SID#*:}" ;; *) sid "$1" ;; esac
}
[ -n "$FAKE_LOG" ] && echo "start $phase $task $(now) $resume" >> "$FAKE_LOG"
result() { # is_error cost text [subtype]
  printf '{"type":"result","subtype":"%s","is_error":%s,"duration_ms":12,"num_turns":2,"result":"%s","session_id":"%s","total_cost_usd":%s,"usage":{"input_tokens":100,"output_tokens":50},"permission_denials":[]}\n' "${4:-success}" "$1" "$3" "$(session fake)" "$2"
}
case "$phase" in
  requirements) printf '# Requirements\n\n1. It works.\n' > "$dir/requirements.md" ;;
  design) printf '# Design\n\nSimple.\n' > "$dir/design.md" ;;
  tasks) cp "$FAKE_TASKS" "$dir/tasks.md" ;;
esac
cost="${FAKE_COST_DOC:-0}"
if [ "$phase" = implementation ]; then
  cost="${FAKE_COST_IMPL:-0}"
  if [ -n "$resume" ] && [ -n "$FAKE_GONE" ]; then
    echo "No conversation found with session ID: $resume" >&2
    exit 1
  fi
  if [ -n "$FAKE_LIMIT" ] && [ "$task" = "$FAKE_LIMIT" ] && [ -e "$FAKE_LIMIT_FILE" ]; then
    kind=limited
  else
    kind=fake
  fi
  printf '{"type":"system","subtype":"init","session_id":"%s"}\n' "$(session $kind)"
  if [ -n "$FAKE_HANG" ] && [ "$task" = "$FAKE_HANG" ]; then
    setsid sleep 300 &
    sleep 300
  fi
  if [ -n "$FAKE_HUGE" ] && [ "$task" = "$FAKE_HUGE" ]; then
    head -c "$FAKE_HUGE_BYTES" /dev/zero | tr '\0' a
    sleep 300
  fi
  if [ -n "$FAKE_SLOW" ] && [ "$task" = "$FAKE_SLOW" ]; then sleep "${FAKE_SLOW_SECS:-2}"; fi
  [ -n "$FAKE_SLEEP" ] && sleep "$FAKE_SLEEP"
  if [ -n "$FAKE_LOGIN" ] && [ "$task" = "$FAKE_LOGIN" ]; then
    echo '{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"Not logged in · Please run /login","session_id":"x","total_cost_usd":0}'
    exit 1
  fi
  if [ -n "$FAKE_LIMIT" ] && [ "$task" = "$FAKE_LIMIT" ] && [ -e "$FAKE_LIMIT_FILE" ]; then
    echo "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"num_turns\":1,\"result\":\"Claude AI usage limit reached|$(( $(date +%s) + 3600 ))\",\"session_id\":\"$(session limited)\",\"total_cost_usd\":${FAKE_COST_LIMIT:-0}}"
    exit 1
  fi
  case "$FAKE_FAIL" in
    "$task":*)
      n="${FAKE_FAIL#*:}"; c="$FAKE_LOG.fail.$task"
      k=$(cat "$c" 2>/dev/null || echo 0); k=$((k + 1)); echo "$k" > "$c"
      if [ "$k" -le "$n" ]; then
        result true 0 "simulated failure $k" error_during_execution
        [ -n "$FAKE_LOG" ] && echo "end $phase $task $(now)" >> "$FAKE_LOG"
        exit 1
      fi ;;
  esac
fi
[ -n "$FAKE_LOG" ] && echo "end $phase $task $(now)" >> "$FAKE_LOG"
result false "$cost" "done $phase $task"
"#;

/// A project with permissive admission limits and a fake claude on PATH (also used by
/// other modules' workflow-driven tests).
pub struct Flow {
    pub p: TestProject,
    bin: PathBuf,
    log: PathBuf,
    pub env: Vec<(String, String)>,
    pub guard: MarkerGuard,
}

impl Flow {
    pub fn new(tasks_md: &str) -> Flow {
        let p = TestProject::new();
        // The suite loads the machine; admission is tested on its own elsewhere.
        p.write(
            ".claude/settings.local.json",
            r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
        );
        let bin = p.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        p.script("bin/claude", FAKE_CLAUDE);
        let tasks = p.write("fake-tasks.md", tasks_md);
        let log = p.path().join("fake.log");
        let m = marker();
        let env = vec![
            ("FAKE_TASKS".into(), tasks.display().to_string()),
            ("FAKE_LOG".into(), log.display().to_string()),
            ("QW_TEST_MARKER".into(), m.clone()),
        ];
        Flow {
            p,
            bin,
            log,
            env,
            guard: MarkerGuard(m),
        }
    }

    pub fn set(&mut self, k: &str, v: &str) -> &mut Flow {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.p.qw(args);
        let path = super::path_with(&self.bin);
        c.env("PATH", path);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// `workflow-auto demo "A demo feature"` with `extra` flags, in the background, its
    /// output discarded.
    pub fn start_auto(&self, extra: &[&str]) -> Child {
        self.auto_cmd(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// [`start_auto`](Self::start_auto) with stderr piped, for the caller to read.
    pub fn start_auto_keeping_stderr(&self, extra: &[&str]) -> Child {
        self.auto_cmd(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn auto_cmd(&self, extra: &[&str]) -> Command {
        let mut c = self.cmd(&["workflow-auto", "demo", "A demo feature"]);
        c.args(extra);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn auto(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "workflow-auto",
            "demo",
            "A demo feature",
            "--retry-delay",
            "0.1",
            "--task-timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.p.read(".claude/unified_state.json")).unwrap()
    }

    pub fn task(&self, id: &str) -> Value {
        self.state()["specifications"]["demo"]["tasks"][id].clone()
    }

    /// The session each implementation run of `task` resumed ("" for a fresh run).
    pub fn resumed_of(&self, task: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|w| w.len() >= 4 && w[0] == "start" && w[1] == "implementation" && w[2] == task)
            .map(|w| w.get(4).copied().unwrap_or_default().to_owned())
            .collect()
    }

    /// Log lines `(kind, phase, task, ms)`.
    pub fn log(&self) -> Vec<(String, String, String, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                Some((
                    w.first()?.to_string(),
                    w.get(1)?.to_string(),
                    w.get(2)?.to_string(),
                    w.get(3)?.parse().ok()?,
                ))
            })
            .collect()
    }

    pub fn runs_of(&self, task: &str) -> usize {
        self.log()
            .iter()
            .filter(|(k, p, t, _)| k == "start" && p == "implementation" && t == task)
            .count()
    }

    pub fn tasks_md(&self) -> String {
        self.p.read(".claude/specs/demo/tasks.md")
    }

    pub fn path(&self) -> &Path {
        self.p.path()
    }
}

/// The session id the fake claude gives a run of `task` (`kind`: `fake` or `limited`).
pub fn fake_sid(kind: &str, task: &str) -> String {
    let k = if kind == "limited" {
        "11111111"
    } else {
        "00000000"
    };
    let digits: String = task.chars().filter(char::is_ascii_digit).collect();
    format!("{k}-0000-4000-8000-{:0>12}", digits)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn diag(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o))
}

pub const THREE: &str = "# Tasks\n\n- [ ] 1. First\n  - do it\n  - _Requirements: 1_\n- [ ] 2. Second\n  - _Depends: 1_\n- [ ] 3. Third\n";
