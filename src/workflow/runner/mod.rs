//! The runner (nextest's `runner/`): it does the work and tells what happened as
//! [`crate::workflow::events::Event`]s; it never writes the state or prints itself.
//!
//! - `mod.rs` — [`Workflow::run_with`]: checks the input, takes the spec's lock, wires the
//!   readers (the recorder, the trace, the progress display) and the injected
//!   dependencies (agent, executor, admission) into a [`context::Run`].
//! - `phases.rs` — the phase order and the ending; `scheduler.rs` — the task graph;
//!   `attempt.rs` — the attempt loop every agent run goes through; `stop.rs` — whether
//!   new work may start.

mod attempt;
mod context;
mod phases;
mod scheduler;
mod stop;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use self::context::Run;
pub(crate) use self::phases::{load_tasks, load_tasks_at};
use self::stop::Stop;
use super::budget::Budget;
use super::events::{Ending, EventKind, Summary};
use super::isolation::{self, TaskSpace};
use super::reporter::progress::Progress;
use super::reporter::{EventSink, Events, Recorder, Trace};
use super::{AgentKind, Options, WorkflowError};
use crate::admission::Admission;
use crate::agent::{self, Agent};
use crate::exec::{Cancel, Executor};
use crate::fs::LockedFile;
use crate::project::Project;
use crate::spec::Spec;
use crate::state::StateStore;

/// One workflow run for one spec.
#[derive(Debug)]
pub(crate) struct Workflow {
    /// The project.
    pub project: Project,
    /// The project's settings, read once by the caller.
    pub settings: crate::settings::QwSettings,
    /// The spec name (validated in [`Workflow::run_with`]).
    pub name: String,
    /// The description (for a new spec; an existing spec keeps its own if this is empty).
    pub description: String,
    /// How to run.
    pub options: Options,
    /// The `qw` binary (supervisor and offline agent).
    pub qw: PathBuf,
    /// Only print what would run.
    pub dry_run: bool,
    /// Events as JSON lines on stdout.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
}

impl Workflow {
    /// Run (or resume) the workflow with every agent run and `_Verify:_` command supervised by
    /// `executor` (e.g. a Slurm executor).
    pub(crate) fn run_with(
        self,
        cancel: &Cancel,
        executor: &dyn Executor,
    ) -> Result<Summary, WorkflowError> {
        let spec = Spec::new(&self.project, &self.name)?;
        let agent = build_agent(&self.options, &self.qw)?;
        agent.check()?;
        if self.options.parallel == 0 {
            return Err(WorkflowError::NoParallelism);
        }
        // A directory, FIFO, dangling symlink or unreadable file where a document goes is
        // bad input, named before anything is written (never "already exists").
        for document in [
            agent::Phase::Requirements,
            agent::Phase::Design,
            agent::Phase::Tasks,
        ]
        .into_iter()
        .filter_map(agent::Phase::document)
        {
            crate::fs::check_regular(&spec.dir().join(document))?;
        }
        // A document or steering file that is a link out of the project (a committed
        // `requirements.md -> ~/.aws/credentials`) would put what it leads to into a
        // prompt: refused, naming the link, before any agent runs.
        for path in ["requirements.md", "design.md", "tasks.md"]
            .iter()
            .map(|d| spec.dir().join(d))
            .chain(crate::agent::prompt::steering_files(&self.project))
        {
            crate::fs::check_in_project(self.project.root(), &path)?;
        }
        if spec.tasks_path().is_file() {
            load_tasks(&spec)?;
        }
        let mut admission = Admission::from_settings(&self.settings);
        // The tasks of this run are this process's slots: one waiting behind them waits
        // its turn, untimed (a busy machine runs them one at a time).
        admission.untimed_behind_own = true;
        let dev = &self.settings.development_mode;
        let store = StateStore::new(&self.project).with_cancel(cancel);

        // Refusals (no git, dirty tree) come before anything is written.
        let plan = isolation::plan(
            &self.project,
            &self.name,
            &self.options,
            !self.dry_run,
            cancel,
        )?;
        let progress = Progress::new(self.json, self.quiet);
        if self.dry_run {
            return dry_run(&self, &spec, &progress);
        }

        crate::fs::create_dir_all(spec.dir())?;
        let _lock = lock_workflow(&self.project, &self.name, cancel)?;
        let _repo_lock = isolation::hold_repository(plan.as_ref(), &self.name)?;
        // The checks are the user's: none changed while an earlier run went on.
        super::checks::at_start(&self.project, &self.name, &spec.tasks_path())?;
        // The readers of this run's events: the recorder first, so every other reader
        // finds the event's change on disk. Add a reader here.
        let recorder = Recorder::start(store.clone(), &self.name, agent.name(), spec.tasks_path());
        let trace = Trace::new(&self.name, agent.name());
        let readers: Vec<&dyn EventSink> = vec![&recorder, &trace, &progress];
        let events = Events::new(readers);

        // Under a batch scheduler: a node must see the project, and the jobs a killed qw
        // left for this spec are taken over (waited for, not run twice) before the sweep
        // below would cancel them.
        for line in executor
            .prepare(self.project.root(), &format!("qw/{}/", self.name), cancel)
            .map_err(WorkflowError::Executor)?
        {
            events.note(line)?;
        }
        let swept = crate::exec::sweep::sweep(Some(self.project.root()), self.options.grace());
        if !swept.killed.is_empty() {
            events.note(format!(
                "ended {} process(es) orphaned by an earlier qw that was killed",
                swept.count
            ))?;
        }
        // Slurm jobs of a killed qw in this project (whatever the executor now): asked of
        // Slurm only when a dead owner left a record.
        let (slurm_dir, _) =
            crate::exec::slurm::SlurmConfig::for_project_dirs(&self.project.claude_dir());
        let jobs = crate::exec::slurm::sweep::sweep_jobs(
            Some(&slurm_dir),
            Some(self.project.root()),
            false,
            false,
            crate::exec::slurm::sweep::SWEEP_WAIT,
        );
        if !jobs.cancelled.is_empty() {
            events.note(format!(
                "cancelled {} Slurm job(s) of an earlier qw that was killed",
                jobs.cancelled.len()
            ))?;
        }
        if let Some(e) = jobs.error {
            tracing::warn!("could not ask Slurm for the jobs of a killed qw: {e}");
        }
        if store.path().is_file() {
            store.backup_before(&format!("workflow_{}", self.name))?;
        }
        // Before the statuses are reset for the run: the record says what to repair. (The
        // one write outside the recorder: a repair of the record itself, under the spec's
        // workflow lock, before the run's first event that changes the state.)
        super::reconcile::at_start(&store, &spec, &events)?;
        events.emit(EventKind::RunStarted {
            description: &self.description,
            options: &self.options,
            system_stats: match crate::admission::probes::Probes::read().system_stats_json() {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            },
        })?;
        let state = store.load()?;
        let spent_today = super::budget::spent_today(&state);
        let mut space = TaskSpace::start(&self.project, &self.name, plan, &events, cancel)?;
        for line in space.keep_vouched(state.specifications.get(spec.name())) {
            events.note(line)?;
        }

        let per_day = self.settings.quantumwala.daily_budget_usd;
        let description = state
            .specifications
            .get(spec.name())
            .map(|s| s.description.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.description.clone());
        if !self.description.trim().is_empty() && description != self.description {
            events.note(format!(
                "spec `{}` already exists and keeps its description \"{description}\"; to start over with a new one run `qw workflow-reset {} --hard`",
                self.name, self.name
            ))?;
        }
        let run = Run {
            project: &self.project,
            store,
            description,
            spec,
            name: &self.name,
            options: &self.options,
            agent: agent.as_ref(),
            executor,
            // A batch scheduler decides when its jobs run; `--parallel` still caps them.
            admission: (!executor.schedules()).then_some(admission),
            budget: Budget::new(
                self.options.max_cost_per_task,
                self.options.max_cost_per_run,
                per_day,
                spent_today,
            ),
            cancel,
            events: &events,
            stop: Stop::new(cancel, executor.schedules()),
            resource_monitoring: dev.resource_monitoring(),
            dev: dev.clone(),
            space,
            checks: super::checks::Opened::default(),
            earlier: std::sync::Mutex::default(),
        };
        let summary = phases::drive(&run, Instant::now());
        run.space.finish(&events);
        super::checks::close(
            &self.project,
            &self.name,
            &run.spec.tasks_path(),
            &run.checks,
            &events,
        );
        progress.finish();
        let keep = agent::runs::keep_from_settings(&self.settings);
        if let Err(e) = agent::runs::prune(&self.project, keep) {
            tracing::warn!(
                "could not prune old runs in `{}`: {e}",
                self.project.runs_dir().display()
            );
        }
        summary
    }
}

fn lock_workflow(
    project: &Project,
    name: &str,
    cancel: &Cancel,
) -> Result<LockedFile, WorkflowError> {
    crate::fs::NoFollowDir::create(&project.claude_dir(), std::path::Path::new("runs"))?;
    // Held only until this spec's lock is ours: a restore running now ends first (it would
    // drop what this run records), and one starting later finds this spec's lock held —
    // whether or not the spec ever ran before (its lock file may not exist yet).
    let _no_restore = crate::state::lock::wait_out_restore(project, cancel)?;
    let path = project.workflow_lock_file(name);
    match LockedFile::try_acquire(&path)? {
        Some(lock) => Ok(lock),
        None => Err(WorkflowError::Busy {
            spec: name.to_owned(),
            holder: Box::new(
                LockedFile::probe(&path)
                    .ok()
                    .flatten()
                    .unwrap_or_else(crate::fs::Holder::unknown),
            ),
            lock: path,
        }),
    }
}

/// Build the agent the options ask for.
pub(crate) fn build_agent(options: &Options, qw: &Path) -> Result<Box<dyn Agent>, WorkflowError> {
    Ok(match options.agent {
        AgentKind::Claude => Box::new(agent::ClaudeAgent {
            program: "claude".into(),
            extra_args: options.claude_args.clone(),
        }),
        AgentKind::Command => {
            let template = options
                .agent_cmd
                .as_deref()
                .ok_or(WorkflowError::NoAgentCmd)?;
            Box::new(agent::CommandAgent::parse(template)?)
        }
        AgentKind::Offline => Box::new(agent::OfflineAgent::new(qw)),
    })
}

fn dry_run(w: &Workflow, spec: &Spec, progress: &Progress) -> Result<Summary, WorkflowError> {
    let events = Events::new(vec![progress]);
    let note = |m: String| events.note(m);
    note(format!(
        "dry run of spec `{}` with the {} agent, {} task(s) at once; nothing is started or written",
        w.name,
        w.options.agent.as_str(),
        w.options.parallel
    ))?;
    for (phase, doc) in [
        ("requirements_generation", spec.requirements_path()),
        ("design_creation", spec.design_path()),
        ("task_generation", spec.tasks_path()),
    ] {
        let state = if doc.is_file() {
            "exists, skipped"
        } else {
            "would run the agent"
        };
        note(format!("{phase}: `{}` {state}", doc.display()))?;
    }
    let mut total = 0;
    let mut completed = 0;
    if spec.tasks_path().is_file() {
        let tasks = load_tasks(spec)?;
        let done: HashSet<String> = tasks.checked_leaves();
        for t in tasks.leaf_order() {
            total += 1;
            let deps: Vec<&str> = tasks
                .leaf_dependencies(&t.id)
                .iter()
                .map(|d| d.id.as_str())
                .collect();
            let status = if done.contains(&t.id) {
                completed += 1;
                "done".to_owned()
            } else {
                "would run".to_owned()
            };
            let mut line = format!("task {} {} — {status}", t.id, t.title);
            if !deps.is_empty() {
                line.push_str(&format!(" after {}", deps.join(", ")));
            }
            if let Some(v) = &t.verify {
                line.push_str(&format!("; verify: {v}"));
            }
            note(line)?;
        }
    } else {
        note("implementation: tasks.md does not exist yet; its tasks are known after task_generation".into())?;
    }
    Ok(Summary {
        ending: Ending::Completed,
        completed,
        total,
        cost_usd: 0.0,
        report: None,
        failed: Vec::new(),
        blocked: Vec::new(),
        agent: w.options.agent,
        with_warnings: 0,
    })
}
