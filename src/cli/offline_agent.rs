//! `qw offline-agent` (hidden): the built-in agent, run as a child process like any other.
//!
//! Prints ONE Claude-style JSON result object on stdout and exits 0 (done) or 1 (could
//! not do it). Usage errors (unknown phase, bad spec name) exit 2 like everywhere else.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::agent::Phase;
use crate::agent::offline::{OfflineRequest, perform};
use crate::exit;
use crate::names::{NameKind, validate};

/// Arguments of the offline agent.
#[derive(Debug, Args)]
pub struct OfflineAgentArgs {
    /// The phase: requirements, design, tasks, implementation or validation.
    #[arg(long)]
    pub phase: Phase,
    /// The spec name.
    #[arg(long)]
    pub spec: String,
    /// The spec folder (default: `.claude/specs/<spec>/` of the project).
    #[arg(long, value_name = "DIR")]
    pub spec_dir: Option<PathBuf>,
    /// The spec's description (fills the document templates).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub description: String,
    /// The task to implement (implementation phase).
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// The task's `_Verify:_` command (implementation phase).
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub verify: Option<String>,
    /// The prompt file the caller wrote (checked to exist).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
}

/// Run the offline agent.
pub(crate) fn run(ctx: &Ctx, args: OfflineAgentArgs) -> CmdResult {
    let started = Instant::now();
    validate(NameKind::Spec, &args.spec)?;
    let request = OfflineRequest {
        phase: args.phase,
        spec_dir: args
            .spec_dir
            .unwrap_or_else(|| ctx.project.spec_dir(&args.spec)),
        spec: args.spec,
        project_root: ctx.project.root().to_path_buf(),
        description: args.description,
        task_id: args.task_id,
        verify: args.verify,
        prompt_file: args.prompt_file,
    };
    let result = perform(&request);
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let json = serde_json::to_string(&result.to_json(ms))
        .map_err(|e| CliError::failed(format!("cannot encode the result: {e}")))?;
    outln!("{json}")?;
    Ok(if result.is_error {
        exit::FAILED
    } else {
        exit::SUCCESS
    })
}
