//! Argument helpers shared by several subcommands: value parsers, and reading the global
//! options and the subcommand's name out of a raw argv the way clap does.
//!
//! Owns: turning a flag's text into a typed value with a one-line error naming the value
//! and the accepted forms (clap prints it with the flag's name); the global options'
//! spelling outside clap (for `main`'s exit code on a parse error and `qw exec`'s fast
//! path). Must not: read files or the environment.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use super::GlobalArgs;

/// Parse a non-negative, finite duration: seconds with decimals (`1`, `0.5`), or with a
/// GNU `timeout` suffix `s`, `m`, `h` or `d` (`90s`, `1.5m`, `2h`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'd')) => (&t[..i], 86400.0),
        _ => (t, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 30, 2.5, 90s, 5m, 1h)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative number of seconds"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|_| format!("`{s}` is too large"))
}

/// What one argument is to the global options (`-C DIR`, `--project DIR`, `--json`, `-v`,
/// `-q` and their spellings).
#[derive(Debug, PartialEq, Eq)]
pub enum GlobalArg<'a> {
    /// Not a global option (a subcommand, a subcommand's option, a word).
    No,
    /// A flag or a bundle of short flags (`--json`, `-vv`, `-q`).
    Flag,
    /// `-C`/`--project` with its value inside the argument (`-Cdir`, `--project=dir`).
    ProjectInline(&'a OsStr),
    /// `-C`/`--project` whose value is the next argument (or `-vC`: a bundle ending in `C`).
    ProjectNext,
}

/// Classify `arg` as clap reads the global options: long names exactly, short flags
/// bundled (`-vq`, `-vCdir`). Unknown options are [`GlobalArg::No`].
pub fn global_arg(arg: &OsStr) -> GlobalArg<'_> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = arg.as_bytes();
    match bytes {
        b"--json" | b"--verbose" | b"--quiet" => return GlobalArg::Flag,
        b"--project" => return GlobalArg::ProjectNext,
        _ => {}
    }
    if let Some(value) = bytes.strip_prefix(b"--project=") {
        return GlobalArg::ProjectInline(OsStr::from_bytes(value));
    }
    let Some(shorts) = bytes.strip_prefix(b"-") else {
        return GlobalArg::No;
    };
    if shorts.is_empty() || shorts[0] == b'-' {
        return GlobalArg::No;
    }
    for (i, c) in shorts.iter().enumerate() {
        match c {
            b'v' | b'q' => {}
            b'C' if i + 1 == shorts.len() => return GlobalArg::ProjectNext,
            b'C' => {
                let value = &shorts[i + 1..];
                // clap reads `-C=dir` as the value `dir`.
                let value = value.strip_prefix(b"=").unwrap_or(value);
                return GlobalArg::ProjectInline(OsStr::from_bytes(value));
            }
            _ => return GlobalArg::No,
        }
    }
    GlobalArg::Flag
}

/// The position in `args` (the arguments after the program name) of the subcommand, found
/// as clap finds it: the first argument that is neither a global option nor the value of
/// one. Other options before it are skipped (clap rejects them, but the subcommand they
/// were meant for still decides the exit code). `None` when there is none, or after `--`.
pub fn subcommand_index(args: &[OsString]) -> Option<usize> {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match global_arg(arg) {
            GlobalArg::ProjectNext => i += 2,
            GlobalArg::Flag | GlobalArg::ProjectInline(_) => i += 1,
            GlobalArg::No if arg == "--" => return None,
            GlobalArg::No if arg.as_encoded_bytes().starts_with(b"-") => i += 1,
            GlobalArg::No => return Some(i),
        }
    }
    None
}

/// The subcommand's name in `args` (see [`subcommand_index`]).
pub fn subcommand_name(args: &[OsString]) -> Option<&OsStr> {
    subcommand_index(args).map(|i| args[i].as_os_str())
}

/// Apply the global option at `args[*i]` to `global`, advancing `*i` past it (and its
/// value). `Some(false)`: not a global option. `None`: a shape the fast path leaves to
/// clap (a repeated or conflicting flag, a missing or empty value).
pub fn take_global(args: &[OsString], i: &mut usize, global: &mut GlobalArgs) -> Option<bool> {
    let arg = args.get(*i)?;
    let value = match global_arg(arg) {
        GlobalArg::No => return Some(false),
        GlobalArg::Flag => {
            let text = arg.to_str()?;
            let shorts: &str = match text {
                "--json" => {
                    if global.json {
                        return None;
                    }
                    global.json = true;
                    ""
                }
                "--verbose" => "v",
                "--quiet" => "q",
                short => &short[1..],
            };
            for c in shorts.chars() {
                match c {
                    'v' if !global.quiet => global.verbose = global.verbose.checked_add(1)?,
                    'q' if !global.quiet && global.verbose == 0 => global.quiet = true,
                    _ => return None,
                }
            }
            *i += 1;
            return Some(true);
        }
        GlobalArg::ProjectInline(value) => {
            let head = &arg.as_encoded_bytes()[..arg.len() - value.len()];
            if !matches!(head, b"--project=" | b"-C" | b"-C=") {
                return None; // a bundle such as `-vCdir`: clap decides
            }
            *i += 1;
            value.to_owned()
        }
        GlobalArg::ProjectNext => {
            if arg != "-C" && arg != "--project" {
                return None; // `-vC dir`: clap decides
            }
            let value = args.get(*i + 1)?;
            if value.as_encoded_bytes().starts_with(b"-") {
                return None;
            }
            *i += 2;
            value.clone()
        }
    };
    if global.project.is_some() || value.is_empty() {
        return None;
    }
    global.project = Some(PathBuf::from(value));
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn finds_the_subcommand_after_the_global_options() {
        let name =
            |args: &[&str]| subcommand_name(&os(args)).map(|s| s.to_string_lossy().into_owned());
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(name(&["exec", "--bogus"]), some("exec"));
        assert_eq!(name(&["-C", "dir", "exec", "--bogus"]), some("exec"));
        assert_eq!(name(&["-Cdir", "exec"]), some("exec"));
        assert_eq!(name(&["-C=dir", "exec"]), some("exec"));
        assert_eq!(name(&["--project", "exec", "spec-list"]), some("spec-list"));
        assert_eq!(name(&["--project=exec", "status"]), some("status"));
        assert_eq!(name(&["-vC", "exec", "status"]), some("status"));
        assert_eq!(
            name(&["--json", "-vv", "-q", "exec", "--", "x"]),
            some("exec")
        );
        assert_eq!(
            name(&["spec-create", "exec", "x", "--bogus"]),
            some("spec-create")
        );
        assert_eq!(
            name(&["workflow-auto", "exec", "d", "--bogus"]),
            some("workflow-auto")
        );
        assert_eq!(name(&["--bogus", "status"]), some("status"));
        assert_eq!(name(&["--", "exec"]), None);
        assert_eq!(name(&["-C"]), None);
        assert_eq!(name(&[]), None);
    }

    #[test]
    fn takes_global_options_in_the_shapes_clap_accepts() {
        let take = |args: &[&str]| {
            let args = os(args);
            let mut g = GlobalArgs {
                project: None,
                json: false,
                verbose: 0,
                quiet: false,
            };
            let mut i = 0;
            while i < args.len() {
                if !take_global(&args, &mut i, &mut g)? {
                    return None;
                }
            }
            Some((g.project, g.json, g.verbose, g.quiet))
        };
        let dir = || Some(PathBuf::from("d"));
        assert_eq!(take(&["-C", "d"]), Some((dir(), false, 0, false)));
        assert_eq!(take(&["-Cd", "--json"]), Some((dir(), true, 0, false)));
        assert_eq!(
            take(&["--project=d", "-vv", "-v"]),
            Some((dir(), false, 3, false))
        );
        assert_eq!(
            take(&["--project", "d", "-q"]),
            Some((dir(), false, 0, true))
        );
        assert_eq!(
            take(&["--verbose", "--verbose"]),
            Some((None, false, 2, false))
        );
        // Left to clap: repeats, conflicts, missing or empty values, unknown options.
        for bad in [
            &["--json", "--json"][..],
            &["-q", "-v"],
            &["-v", "-q"],
            &["-q", "-q"],
            &["-C"],
            &["-C", "-v"],
            &["-C", "a", "-C", "b"],
            &["--project="],
            &["-vCd"],
            &["-x"],
            &["exec"],
        ] {
            assert_eq!(take(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_take_seconds_or_gnu_suffixes() {
        let ok = |s: &str| parse_secs(s).unwrap().as_secs_f64();
        assert_eq!(ok("1"), 1.0);
        assert_eq!(ok("0.5"), 0.5);
        assert_eq!(ok("90s"), 90.0);
        assert_eq!(ok("1.5m"), 90.0);
        assert_eq!(ok("2h"), 7200.0);
        assert_eq!(ok("1d"), 86400.0);
        assert_eq!(ok(" 3 "), 3.0);
        for bad in [
            "", "s", "-1", "abc", "nan", "inf", "1x", "1.5.2", "-2m", "1e400",
        ] {
            assert!(parse_secs(bad).is_err(), "{bad:?} accepted");
        }
    }
}
