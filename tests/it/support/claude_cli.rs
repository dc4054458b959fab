//! The real Claude Code CLI for integration tests.
//!
//! [`claude_cli`] finds it once per test binary: `QW_CLAUDE_BIN`, else `claude` on PATH,
//! checked with `claude --version`. When it is missing a test is skipped with a printed
//! reason — unless `QW_REQUIRE_REAL_CLAUDE=1` (set by `.ci/run`), then the test fails, so
//! CI never passes by skipping. [`ClaudeCli::configure`] gives a command the environment
//! that points the CLI at a [`super::messages_api::MessagesApi`]: no network, no key.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::messages_api::MessagesApi;

/// The version `.ci/run` installs and `docs/CLAUDE_CODE.md` describes.
pub const PINNED_VERSION: &str = "2.1.332";

/// A usable `claude`.
pub struct ClaudeCli {
    /// The executable.
    pub program: PathBuf,
    /// What `claude --version` printed.
    pub version: String,
    /// A directory holding only `claude` (a link to [`ClaudeCli::program`]), to put
    /// first on PATH.
    pub bin_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn find() -> Result<ClaudeCli, String> {
    let program = match std::env::var_os("QW_CLAUDE_BIN") {
        Some(p) => PathBuf::from(p),
        None => quantumwala::agent::find_program("claude".as_ref())
            .ok_or("`claude` is not on PATH (install it: `npm install -g @anthropic-ai/claude-code@2.1.332`, or set QW_CLAUDE_BIN)")?,
    };
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new(&program)
        .arg("--version")
        .env("HOME", home.path())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !version.contains("Claude Code") {
        return Err(format!(
            "`{} --version` did not answer like Claude Code: {version} {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("qw-claude-bin")
        .tempdir()
        .map_err(|e| e.to_string())?;
    // Readable by a test that switches to another user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;
    let program = program.canonicalize().map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(&program, dir.path().join("claude")).map_err(|e| e.to_string())?;
    if !version.contains(PINNED_VERSION) {
        eprintln!(
            "note: testing Claude Code {version}; the project pins {PINNED_VERSION} (docs/CLAUDE_CODE.md)"
        );
    }
    Ok(ClaudeCli {
        program,
        version,
        bin_dir: dir.path().to_path_buf(),
        _dir: dir,
    })
}

/// The real CLI, or None (after printing why) when a test must skip. Panics instead of
/// skipping when `QW_REQUIRE_REAL_CLAUDE=1`.
pub fn claude_cli(test: &str) -> Option<&'static ClaudeCli> {
    static CLI: OnceLock<Result<ClaudeCli, String>> = OnceLock::new();
    match CLI.get_or_init(find) {
        Ok(cli) => Some(cli),
        Err(why) => {
            if std::env::var("QW_REQUIRE_REAL_CLAUDE").as_deref() == Ok("1") {
                panic!("{test}: QW_REQUIRE_REAL_CLAUDE=1 but {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

impl ClaudeCli {
    /// Give `cmd` the environment that runs this CLI against `api` with `home` as HOME:
    /// `claude` first on PATH, every inherited `ANTHROPIC_*`/`CLAUDE*` variable removed
    /// (a developer's own key or session must never leak into a test).
    pub fn configure(&self, cmd: &mut Command, api: &MessagesApi, home: &Path) {
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("ANTHROPIC_") || k.starts_with("CLAUDE") {
                cmd.env_remove(k.as_ref());
            }
        }
        let path = super::path_with(&self.bin_dir);
        cmd.env("PATH", path);
        for (k, v) in api.claude_env(home) {
            cmd.env(k, v);
        }
    }
}
