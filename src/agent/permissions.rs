//! Permission refusals and the way out of them.
//!
//! Owns: turning Claude Code's `permission_denials` (plus, when the event stream has
//! them, its refusal messages and the session's working directory) into one line that
//! names each refused tool and target and the flags or settings that allow it.
//! Must not: read files or change settings — it only explains. What Claude Code refuses
//! in which mode is written down in `docs/CLAUDE_CODE.md`.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::events::Denial;
use crate::fmt::clip;

/// The flags that let Claude Code edit files in headless mode, as `qw` takes them.
pub(crate) const ACCEPT_EDITS: &str = "--claude-arg=--permission-mode --claude-arg=acceptEdits";

/// Why a call was refused, as far as qw can tell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A file edit in the working directory, not allowed in the default mode.
    FileEdit,
    /// A file edit outside the working directory (allowed with `--add-dir DIR`).
    OutsideWorkdir(String),
    /// A file under `.claude/`: refused in headless mode in every mode but bypass.
    Sensitive,
    /// A shell command (its program).
    Command(String),
    /// Any other tool.
    Tool(String),
}

const FILE_TOOLS: &[&str] = &["Write", "Edit", "MultiEdit", "NotebookEdit"];

fn kind(d: &Denial, message: Option<&str>, cwd: Option<&Path>) -> Kind {
    if FILE_TOOLS.contains(&d.tool.as_str()) {
        let target = d.target.as_deref().unwrap_or("");
        let path = Path::new(target);
        let under_dot_claude = path
            .components()
            .any(|c| matches!(c, Component::Normal(n) if n == ".claude"));
        if message.is_some_and(|m| m.contains("sensitive file")) || under_dot_claude {
            return Kind::Sensitive;
        }
        if let Some(cwd) = cwd
            && path.is_absolute()
            && !path.starts_with(cwd)
        {
            let dir = path.parent().unwrap_or(path).display().to_string();
            return Kind::OutsideWorkdir(dir);
        }
        return Kind::FileEdit;
    }
    if d.tool == "Bash" {
        let program = d
            .target
            .as_deref()
            .and_then(|c| c.split_whitespace().next())
            .unwrap_or("")
            .to_owned();
        return Kind::Command(program);
    }
    Kind::Tool(d.tool.clone())
}

fn advice(k: &Kind) -> String {
    match k {
        Kind::FileEdit => format!(
            "to let the agent edit files pass `{ACCEPT_EDITS}`, or add \"Write\" and \"Edit\" to `permissions.allow` in `.claude/settings.local.json`"
        ),
        Kind::OutsideWorkdir(dir) => format!(
            "`{dir}` is outside the agent's working directory: pass `--claude-arg=--add-dir --claude-arg={dir}`"
        ),
        Kind::Sensitive => "Claude Code refuses edits under `.claude/` in headless mode in every permission mode but bypassPermissions: keep the work outside `.claude/` (qw writes spec documents itself when the agent answers with them)".to_owned(),
        Kind::Command(program) if !program.is_empty() => format!(
            "allow the command with \"Bash({program}:*)\" in `permissions.allow` of `.claude/settings.local.json` (acceptEdits allows file edits, not commands) or `--claude-arg=--allowedTools --claude-arg='Bash({program}:*)'`"
        ),
        Kind::Command(_) => "allow the command with a \"Bash(PROGRAM:*)\" rule in `permissions.allow` of `.claude/settings.local.json`".to_owned(),
        Kind::Tool(tool) => format!(
            "allow it with \"{tool}\" in `permissions.allow` of `.claude/settings.local.json`"
        ),
    }
}

/// One line naming what was refused and how to allow it, e.g. "Claude Code refused
/// Write `hello.txt`; to let the agent edit files pass `…acceptEdits`, or …".
/// `messages` maps tool-use ids to Claude Code's refusal text (from the stream);
/// `cwd` is the session's working directory (paths inside it are shown relative).
pub(crate) fn explain(
    denials: &[Denial],
    messages: &HashMap<String, String>,
    cwd: Option<&Path>,
) -> String {
    if denials.is_empty() {
        return String::new();
    }
    let mut named = Vec::new();
    let mut kinds: Vec<Kind> = Vec::new();
    for d in denials {
        let message = d
            .tool_use_id
            .as_ref()
            .and_then(|id| messages.get(id))
            .map(String::as_str);
        let k = kind(d, message, cwd);
        let why = match &k {
            Kind::Sensitive => " (a sensitive file)",
            Kind::OutsideWorkdir(_) => " (outside the working directory)",
            _ => "",
        };
        let target = d
            .target
            .as_deref()
            .map(|t| format!(" `{}`", clip(&shown(t, cwd), 120)))
            .unwrap_or_default();
        let entry = format!("{}{target}{why}", d.tool);
        if !named.contains(&entry) {
            named.push(entry);
        }
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    kinds.sort();
    let shown_named = if named.len() > 3 {
        format!("{} and {} more", named[..3].join(", "), named.len() - 3)
    } else {
        named.join(", ")
    };
    let ways: Vec<String> = kinds.iter().map(advice).collect();
    format!(
        "Claude Code refused {shown_named}; {}; `--claude-arg=--permission-mode --claude-arg=bypassPermissions` allows everything but Claude Code refuses it as root",
        ways.join("; ")
    )
}

fn shown(target: &str, cwd: Option<&Path>) -> String {
    let one = crate::fmt::fold_whitespace(target);
    match cwd.and_then(|c| Path::new(&one).strip_prefix(c).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(tool: &str, target: &str) -> Denial {
        Denial {
            tool: tool.into(),
            target: Some(target.into()),
            tool_use_id: Some(format!("id-{target}")),
        }
    }

    #[test]
    fn each_kind_of_refusal_gets_its_way_out() {
        let cwd = Path::new("/p");
        let none = HashMap::new();
        let e = explain(&[d("Write", "/p/hello.txt")], &none, Some(cwd));
        assert!(
            e.starts_with("Claude Code refused Write `hello.txt`;"),
            "{e}"
        );
        assert!(e.contains(ACCEPT_EDITS), "{e}");
        assert!(e.contains("`permissions.allow` in `.claude/settings.local.json`"));
        assert!(e.contains("refuses it as root"), "{e}");

        let e = explain(
            &[d("Write", "/p/.claude/specs/demo/requirements.md")],
            &none,
            Some(cwd),
        );
        assert!(
            e.contains("Write `.claude/specs/demo/requirements.md` (a sensitive file)"),
            "{e}"
        );
        assert!(e.contains("keep the work outside `.claude/`"), "{e}");

        let e = explain(&[d("Edit", "/elsewhere/x.rs")], &none, Some(cwd));
        assert!(e.contains("(outside the working directory)"), "{e}");
        assert!(
            e.contains("--claude-arg=--add-dir --claude-arg=/elsewhere"),
            "{e}"
        );

        let e = explain(&[d("Bash", "cargo test --all")], &none, Some(cwd));
        assert!(e.contains("Bash `cargo test --all`"), "{e}");
        assert!(e.contains("\"Bash(cargo:*)\""), "{e}");
        assert!(e.contains("--allowedTools"), "{e}");

        let e = explain(&[d("WebFetch", "https://x")], &none, None);
        assert!(e.contains("allow it with \"WebFetch\""), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(explain(&[], &none, None), "");
    }

    #[test]
    fn the_stream_message_marks_a_sensitive_file_anywhere() {
        let denial = d("Write", "/p/notes.md");
        let messages = HashMap::from([(
            "id-/p/notes.md".to_owned(),
            "Claude requested permissions to edit /p/notes.md which is a sensitive file."
                .to_owned(),
        )]);
        let e = explain(&[denial], &messages, Some(Path::new("/p")));
        assert!(e.contains("(a sensitive file)"), "{e}");
    }

    #[test]
    fn many_refusals_are_summed_up_once_each() {
        let many: Vec<Denial> = (0..6).map(|i| d("Write", &format!("/p/f{i}"))).collect();
        let mut twice = many.clone();
        twice.push(d("Write", "/p/f0"));
        let e = explain(&twice, &HashMap::new(), Some(Path::new("/p")));
        assert!(e.contains("and 3 more"), "{e}");
        assert_eq!(e.matches(ACCEPT_EDITS).count(), 1, "{e}");
    }
}
