//! `qw completions SHELL`.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw completions`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Examples:
  qw completions bash > ~/.local/share/bash-completion/completions/qw
  qw completions zsh > \"${fpath[1]}/_qw\"
  qw completions fish > ~/.config/fish/completions/qw.fish")]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Run `qw completions`.
pub(crate) fn run(_ctx: &Ctx, args: CompletionsArgs) -> CmdResult {
    let mut cmd = super::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "qw", &mut script);
    super::out::bytes(&script)?;
    Ok(0)
}
