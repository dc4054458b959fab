//! The `qw` binary: parse arguments, run the command, map errors to exit codes.

use std::process::ExitCode;

use quantumwala::cli::{self, Command};
use quantumwala::exec::Cancel;
use quantumwala::{exit, logging};

fn main() -> ExitCode {
    quantumwala::fs::report_file_size_limit();
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(err) => {
            // `qw exec` misuse exits 125 like GNU timeout, so it never collides with the
            // child's own exit code 2; everything else uses 2 for usage errors. The
            // subcommand is found as clap finds it, not by any argument equal to `exec`.
            let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
            let is_exec = cli::args::subcommand_name(&args).is_some_and(|s| s == "exec");
            let code = match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::SUCCESS
                }
                _ if is_exec => exit::EXEC_FAILED,
                _ => exit::USAGE,
            };
            let _ = err.print();
            return to_exit_code(code);
        }
    };
    let is_exec = matches!(cli.command, Command::Exec(_));
    match cli::run(cli) {
        Ok(code) => {
            logging::command_ended(code, None);
            to_exit_code(code)
        }
        // The reader of stdout went away (`qw … | head -1`): it has what it wanted.
        Err(e) if e.is_stdout_closed() => {
            logging::command_ended(exit::SUCCESS, None);
            to_exit_code(exit::SUCCESS)
        }
        Err(e) => {
            for line in e.lines() {
                quantumwala::diag!("{line}");
            }
            // Usage errors of `qw exec` are 125, as GNU timeout's. A command that failed
            // after SIGINT, SIGTERM or SIGHUP reached it (a wait for a lock, a slot or a
            // run it stopped) exits 128+N, whichever wait it was in: Ctrl-C is 130.
            let code = match Cancel::process().pending() {
                Some(sig) if e.code == exit::FAILED => exit::EXEC_SIGNAL_BASE + sig,
                _ if is_exec && e.code == exit::USAGE => exit::EXEC_FAILED,
                _ => e.code,
            };
            logging::command_ended(code, Some(&e.message));
            to_exit_code(code)
        }
    }
}

fn to_exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
