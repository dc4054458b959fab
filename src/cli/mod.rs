//! Command-line interface: argument definitions (clap derive) and one file per subcommand.
//!
//! Each subcommand file owns its `Args` and a `run` function that turns them into calls on
//! the library modules. Nothing here prints except through the returned result or the
//! subcommand's own report; `main.rs` maps [`CliError`] to an exit code.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clap::{Args, Parser, Subcommand};

use crate::logging::Verbosity;
use crate::project::Project;
use crate::settings::{QwSettings, SettingsError, SettingsFile};

pub mod args;
pub(crate) mod completions;
pub(crate) mod consume;
pub(crate) mod dashboard;
pub(crate) mod dev_mode;
mod error;
pub(crate) mod exec;
pub(crate) mod executor;
pub(crate) mod init;
pub(crate) mod logs;
pub(crate) mod offline_agent;
pub(crate) mod out;
pub(crate) mod resolve;
pub(crate) mod resources;
pub(crate) mod spec;
pub(crate) mod state_backup;
pub(crate) mod status;
pub(crate) mod sweep;
pub(crate) mod workflow;
pub(crate) mod workflow_reset;
pub(crate) mod worktrees;

pub use error::CliError;

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    the work failed (a task or workflow failed, a check found a problem)
  2    bad input or usage (unknown flag, invalid name, corrupt settings)
  3    workflow paused (usage limit or cost ceiling); `qw workflow-continue NAME` resumes it
  128+N  a workflow or a wait (lock, resources) interrupted by signal N; 130 for Ctrl-C
  `qw exec` instead follows GNU timeout: the child's own code, 124 timed out,
  125 qw failed or was misused, 126 not executable, 127 not found, 128+N killed by signal N.";

const SUBCOMMAND_EXIT_CODES: &str = "\
Exit codes: 0 success · 1 the work failed · 2 bad input or usage · 3 paused, resumable";

/// The full command-line definition: the derived one, with the exit codes added to
/// every subcommand's help (`qw exec` documents its own, GNU timeout's).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    // Building the help texts costs time on every start (`qw exec` is benchmarked
    // against GNU timeout), so they are added only when help is asked for.
    let wants_help = std::env::args_os()
        .skip(1)
        .any(|a| a == "-h" || a == "--help" || a == "help");
    if !wants_help {
        return Cli::command();
    }
    Cli::command()
        .after_help(
            "Exit codes: 0 success · 1 the work failed · 2 bad input · 3 paused (see --help)",
        )
        .mut_subcommands(|sc| {
            if sc.get_name() == "exec" {
                return sc;
            }
            let long = match sc.get_after_long_help() {
                Some(text) => format!("{text}\n\n{SUBCOMMAND_EXIT_CODES}"),
                None => SUBCOMMAND_EXIT_CODES.to_owned(),
            };
            sc.after_help(SUBCOMMAND_EXIT_CODES).after_long_help(long)
        })
}

/// Parse the process arguments: `qw exec` through its fast path when it can, everything
/// else (and every error and help) with [`command`].
pub fn parse() -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(cli) = parse_exec_fast(&args) {
        return Ok(cli);
    }
    let matches = command().try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

/// `qw [GLOBAL…] exec …` without building the clap tree (see [`exec::ExecArgs::parse_fast`]);
/// `None` when clap must parse. `args` excludes the program name.
pub fn parse_exec_fast(args: &[std::ffi::OsString]) -> Option<Cli> {
    let mut global = GlobalArgs::default();
    let mut i = 0;
    while args.get(i)? != "exec" {
        if !args::take_global(args, &mut i, &mut global)? {
            return None;
        }
    }
    let exec = exec::ExecArgs::parse_fast(args, i + 1, &mut global)?;
    Some(Cli {
        global,
        command: Command::Exec(exec),
    })
}

/// qw — run AI coding agents through a spec-driven workflow, safely.
#[derive(Debug, Parser)]
#[command(name = "qw", version, about, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Options that apply to every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options that apply to every command.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Project directory (default: nearest ancestor holding `.claude/`, else the current directory).
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More diagnostics on stderr (repeat for debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl GlobalArgs {
    /// The terminal verbosity these flags ask for.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            _ => Verbosity::Debug,
        }
    }
}

/// Every subcommand. Names match the original system's slash commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a program as a supervised process tree with a timeout (like GNU timeout, but nothing survives).
    Exec(exec::ExecArgs),
    /// End process trees orphaned by a `qw` that was killed.
    Sweep(sweep::SweepArgs),
    /// Create, list, restore or clean backups of the unified state.
    StateBackup(state_backup::StateBackupArgs),
    /// Reset a spec's workflow (soft: unfinished tasks back to pending; hard: generated documents too).
    WorkflowReset(workflow_reset::WorkflowResetArgs),
    /// Show resource probes, admission limits, slots in use and decisions.
    Resources(resources::ResourcesArgs),
    /// Scaffold `.claude/` (steering templates, settings, slash commands).
    Init(init::InitArgs),
    /// Create a new spec.
    SpecCreate(spec::SpecCreateArgs),
    /// List specs.
    SpecList(spec::SpecListArgs),
    /// Show one spec's (or every spec's) phase and tasks.
    SpecStatus(spec::SpecStatusArgs),
    /// Show the whole project's workflow status.
    Status(status::StatusArgs),
    /// Show a run's agent events as readable lines (`--follow` while it runs).
    Logs(logs::LogsArgs),
    /// Run a spec's whole workflow: requirements, design, tasks, implementation, validation, report.
    WorkflowAuto(workflow::WorkflowAutoArgs),
    /// Resume a workflow; completed tasks are never run again.
    WorkflowContinue(workflow::WorkflowContinueArgs),
    /// Turn development mode on or off, or show it.
    DevMode(dev_mode::DevModeArgs),
    /// Hand qw the next command to run (writes `.claude/next_command.txt`).
    Suggest(consume::SuggestArgs),
    /// Validate and run the suggested next command.
    Consume(consume::ConsumeArgs),
    /// Serve a live local web dashboard.
    Dashboard(dashboard::DashboardArgs),
    /// List or prune task worktrees (beside the repository, outside `.claude/`).
    Worktrees(worktrees::WorktreesArgs),
    /// Print shell completions.
    Completions(completions::CompletionsArgs),
    /// Internal: the built-in offline agent (run as a child process by the workflow).
    #[command(hide = true)]
    OfflineAgent(offline_agent::OfflineAgentArgs),
}

/// Everything a subcommand needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Global flags.
    pub global: GlobalArgs,
    /// The project (discovered or given with `-C`).
    pub project: Project,
    /// The project's `.claude/settings.local.json`, read once when the command starts.
    settings: Arc<LoadedSettings>,
}

/// The settings file read once, and whether its unknown keys were reported yet.
#[derive(Debug)]
struct LoadedSettings {
    read: Result<(SettingsFile, QwSettings), SettingsError>,
    warned: OnceLock<()>,
}

impl Ctx {
    /// Build the context from the global flags: find the project and read its settings
    /// (a bad settings file is reported by the commands that use them, see [`Ctx::settings`]).
    pub fn new(global: GlobalArgs) -> Result<Ctx, CliError> {
        let project = match &global.project {
            Some(dir) => {
                if !dir.is_dir() {
                    let what = if dir.exists() {
                        "is not a directory"
                    } else {
                        "does not exist"
                    };
                    return Err(CliError::usage(format!(
                        "project directory `{}` {what}",
                        dir.display()
                    )));
                }
                Project::discover(dir)
            }
            None => {
                let cwd = std::env::current_dir().map_err(|e| {
                    CliError::failed(format!("cannot read the current directory: {e}"))
                })?;
                Project::discover(&cwd)
            }
        };
        let path = project.settings_file();
        // Outside a project there is no file to read: every default.
        let read = if project.exists() {
            SettingsFile::load(&path).and_then(|f| f.typed().map(|t| (f, t)))
        } else {
            Ok((SettingsFile::absent(&path), QwSettings::defaults(&path)))
        };
        Ok(Ctx {
            global,
            project,
            settings: Arc::new(LoadedSettings {
                read,
                warned: OnceLock::new(),
            }),
        })
    }

    /// qw's settings, typed. A settings file that is not JSON or holds a bad value is an
    /// error (exit 2) naming the file, the key and the value. Unknown keys in qw's sections
    /// are reported once, as a warning.
    pub fn settings(&self) -> Result<&QwSettings, CliError> {
        match &self.settings.read {
            Ok((_, typed)) => {
                self.settings.warned.get_or_init(|| {
                    for key in &typed.unknown_keys {
                        tracing::warn!(
                            "ignoring unknown key `{key}` in `{}`",
                            typed.path.display()
                        );
                    }
                });
                Ok(typed)
            }
            Err(e) => Err(CliError::from_user(e)),
        }
    }

    /// The settings file as read, for commands that edit it (same checks as
    /// [`Ctx::settings`]).
    pub fn settings_file(&self) -> Result<&SettingsFile, CliError> {
        self.settings()?;
        match &self.settings.read {
            Ok((file, _)) => Ok(file),
            Err(e) => Err(CliError::from_user(e)),
        }
    }

    /// `development_mode.verbose_logging`, leniently (logging must start whatever the
    /// settings hold; a command that reads them reports the problem).
    fn debug_log_file(&self) -> bool {
        self.settings
            .read
            .as_ref()
            .is_ok_and(|(_, s)| s.development_mode.verbose_logging())
    }
}

/// What a subcommand returns: the exit code on success paths (0, or 1 for "ran but found
/// a problem"), or an error to print.
pub type CmdResult = Result<i32, CliError>;

/// Run the parsed command line.
pub fn run(cli: Cli) -> CmdResult {
    let ctx = Ctx::new(cli.global)?;
    crate::logging::init(ctx.global.verbosity(), &ctx.project, ctx.debug_log_file());
    crate::logging::command_started();
    // `qw exec` (also every agent run's supervisor) and the offline agent touch none of
    // qw's folders; the workflow that starts them has checked them.
    if !matches!(
        cli.command,
        Command::Exec(_) | Command::OfflineAgent(_) | Command::Completions(_)
    ) {
        check_own_dirs(&ctx.project)?;
    }
    match cli.command {
        Command::Exec(a) => exec::run(&ctx, a),
        Command::Sweep(a) => sweep::run(&ctx, a),
        Command::StateBackup(a) => state_backup::run(&ctx, a),
        Command::WorkflowReset(a) => workflow_reset::run(&ctx, a),
        Command::Resources(a) => resources::run(&ctx, a),
        Command::Init(a) => init::run(&ctx, a),
        Command::SpecCreate(a) => spec::run_create(&ctx, a),
        Command::SpecList(a) => spec::run_list(&ctx, a),
        Command::SpecStatus(a) => spec::run_status(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Logs(a) => logs::run(&ctx, a),
        Command::WorkflowAuto(a) => workflow::run_auto(&ctx, a),
        Command::WorkflowContinue(a) => workflow::run_continue(&ctx, a),
        Command::DevMode(a) => dev_mode::run(&ctx, a),
        Command::Suggest(a) => consume::run_suggest(&ctx, a),
        Command::Consume(a) => consume::run_consume(&ctx, a),
        Command::Dashboard(a) => dashboard::run(&ctx, a),
        Command::Worktrees(a) => worktrees::run(&ctx, a),
        Command::Completions(a) => completions::run(&ctx, a),
        Command::OfflineAgent(a) => offline_agent::run(&ctx, a),
    }
}

/// Refuse (exit 2) a project whose `.claude/` holds a symbolic link where qw keeps its own
/// folders ([`Project::OWN_DIRS`]), or whose `.claude` is a link out of the project that
/// the repository committed: qw never reads, writes or deletes outside the project
/// through a link a repository can commit. A `.claude` link the user made (not in the
/// repository's index) is followed: a dotfiles set-up.
fn check_own_dirs(project: &Project) -> Result<(), CliError> {
    if let Some(target) = committed_claude_link(project) {
        let link = project.claude_dir();
        return Err(CliError::usage(format!(
            "`{}` is a symbolic link to `{}`, outside the project, and the repository commits it: qw does not keep its files outside the project through a link a repository can commit",
            link.display(),
            target.display()
        ))
        .hint(format!(
            "replace the link with a directory, or, if you made it yourself, take it out of the repository (`git rm --cached {}`): qw follows a `.claude` link that is not committed",
            link.display()
        )));
    }
    let claude = project.claude_dir();
    for rel in Project::OWN_DIRS {
        match crate::fs::linked_component(&claude, std::path::Path::new(rel)) {
            Ok(Some((link, target))) => {
                let e = crate::fs::linked_dir_refused(&link, &target);
                return Err(CliError::usage(e.to_string()).hint(
                    "to keep qw's files elsewhere, make `.claude` itself the link (qw follows a `.claude` link you made)",
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(CliError::failed(e.to_string())),
        }
        // A FIFO, a file or a socket there (`.claude/backups` made by `mkfifo`): one line
        // naming it, not the raw "Not a directory" of the first write below it. Not for
        // `logs`: logging falls back to a temporary file and the command goes on (CONTRACT).
        if rel == "logs" {
            continue;
        }
        match crate::fs::not_a_dir_component(&claude, std::path::Path::new(rel)) {
            Ok(Some(e)) => return Err(CliError::usage(e.to_string())),
            Ok(None) => {}
            Err(e) => return Err(CliError::failed(e.to_string())),
        }
    }
    Ok(())
}

/// Where `.claude` points when it is a symbolic link that leaves the project and is
/// committed to the repository (git's index holds it as a link); `None` otherwise, also
/// when git is missing or the project is no repository. Asks git only when `.claude` is a
/// link, so nobody else pays for it.
fn committed_claude_link(project: &Project) -> Option<std::path::PathBuf> {
    let link = project.claude_dir();
    let meta = std::fs::symlink_metadata(&link).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(&link).ok()?;
    let root = std::fs::canonicalize(project.root()).ok()?;
    if let Ok(resolved) = std::fs::canonicalize(&link)
        && resolved.starts_with(&root)
    {
        return None;
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(project.root())
        // Runs no hook; no fsmonitor either, whatever a planted config names.
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(["ls-files", "--stage", "-z", "--", ".claude"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let committed = out.status.success()
        && out
            .stdout
            .split(|&b| b == 0)
            .any(|rec| rec.starts_with(b"120000 ") && rec.ends_with(b"\t.claude"));
    committed.then_some(target)
}
