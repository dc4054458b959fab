//! `qw spec-create`, `qw spec-list`, `qw spec-status`.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw spec-create`.
#[derive(Debug, Args)]
pub struct SpecCreateArgs {
    /// Spec name (kebab-case).
    pub name: String,
    /// What the feature is.
    pub description: String,
}

/// Arguments of `qw spec-list`.
#[derive(Debug, Args)]
pub struct SpecListArgs {}

/// Arguments of `qw spec-status`.
#[derive(Debug, Args)]
pub struct SpecStatusArgs {
    /// The spec (default: every spec).
    pub name: Option<String>,
}

/// Run `qw spec-create`.
pub fn run_create(_ctx: &Ctx, _args: SpecCreateArgs) -> CmdResult {
    super::not_built("spec-create")
}
/// Run `qw spec-list`.
pub fn run_list(_ctx: &Ctx, _args: SpecListArgs) -> CmdResult {
    super::not_built("spec-list")
}
/// Run `qw spec-status`.
pub fn run_status(_ctx: &Ctx, _args: SpecStatusArgs) -> CmdResult {
    super::not_built("spec-status")
}
