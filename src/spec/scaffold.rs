//! The project scaffold `qw init` writes: steering templates, `specs/`, qw's keys in
//! `settings.local.json`, and Claude Code slash-command files that call `qw`.
//!
//! Re-running is safe. `.claude/.qw-init.json` (the manifest) records a hash of every file
//! init wrote; a file whose contents no longer match that hash was edited by the user and
//! is kept as it is. Settings are merged: only missing qw keys are added, every other key
//! keeps its value and position, and a corrupt file stops init before anything is written.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::project::Project;
use crate::settings::{LimitSettings, SettingsError, SettingsFile};

/// Errors of `qw init`.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The settings file is corrupt (nothing was written).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A path init must write is not a regular file.
    #[error("`{path}` is not a regular file; move it away and run `qw init` again")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Reading or writing failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What init did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// It did not exist and was written.
    Created,
    /// It still held what an earlier init wrote, and the template changed: rewritten.
    Updated,
    /// Already as init would write it.
    Unchanged,
    /// The user changed it: left alone.
    Kept,
}

impl Action {
    /// The word printed in the report.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Kept => "kept",
        }
    }
}

/// One line of the init report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FileReport {
    /// Path relative to the project root, e.g. `.claude/steering/product.md`.
    pub path: String,
    /// What happened.
    pub action: Action,
    /// Why, when it is not obvious (e.g. "edited by you", "added resource_limits").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything init did.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct InitReport {
    /// Per file, in the order handled.
    pub files: Vec<FileReport>,
    /// Things the user should know (e.g. a qw settings block that is not an object).
    pub warnings: Vec<String>,
}

impl InitReport {
    /// How many files got `action`.
    pub(crate) fn count(&self, action: Action) -> usize {
        self.files.iter().filter(|f| f.action == action).count()
    }
}

/// The `development_mode` block `qw init` writes: only the switch, `enabled: false`.
/// Every other flag is left unset, so it follows dev mode (on while dev mode is on) or
/// takes qw's default; a flag written here would count as the user's choice.
pub(crate) fn default_development_mode() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("enabled".to_owned(), Value::Bool(false));
    m
}

/// How Claude Code's permissions meet `claude -p` (headless: nobody can be asked), as
/// `qw init` writes it into `quantumwala.claude_permissions`: settings are JSON, so the
/// choice is documented in a value. What each mode does: `docs/CLAUDE_CODE.md`.
pub(crate) const CLAUDE_PERMISSIONS_HELP: &str = "qw runs `claude -p` headless: nobody can be asked, so Claude Code refuses any tool use not allowed up front, and qw reports each refusal (tool, target, way out) as permission_denied. Choose: `qw workflow-auto NAME DESC --claude-arg=--permission-mode --claude-arg=acceptEdits` lets the agent edit files in the project (or set permissions.defaultMode to acceptEdits here, which also changes your interactive sessions); commands still need allow rules in permissions.allow here, such as \"Bash(cargo test:*)\". `--claude-arg=--permission-mode --claude-arg=bypassPermissions` allows everything, but Claude Code refuses it as root. Writes under .claude/ are refused in headless mode in every mode but bypassPermissions: qw writes the spec documents itself from the agent's answer.";

/// Defaults of the `quantumwala` block `qw init` writes: the permission choice explained.
pub(crate) fn default_quantumwala() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "claude_permissions".to_owned(),
        Value::String(CLAUDE_PERMISSIONS_HELP.to_owned()),
    );
    m
}

/// What [`merge_settings_defaults`] changed: dotted keys added, and blocks removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SettingsChanges {
    /// Dotted keys added.
    pub added: Vec<String>,
    /// Why a block was removed (the `resource_limits` an older init wrote).
    pub removed: Vec<String>,
}

impl SettingsChanges {
    /// Nothing changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// The note of the init report: `added …; removed …`.
    pub(crate) fn note(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", self.added.join(", ")));
        }
        parts.extend(self.removed.iter().cloned());
        parts.join("; ")
    }
}

/// Add the qw keys `settings` lacks. Blocks that exist but are not objects are left
/// alone and reported in `warnings`. Only the added members change in the file; every
/// other byte stays.
///
/// No `resource_limits` are written: a limit in the file is the user's choice, which
/// dev mode never tightens, so writing qw's defaults there would make dev mode tighten
/// nothing. A `resource_limits` block that holds exactly what an older init wrote
/// ([`LimitSettings::OLD_INIT_DEFAULTS`], by value) is removed for that reason; a block
/// with any other key or value is the user's and stays as it is.
pub(crate) fn merge_settings_defaults(
    settings: &mut SettingsFile,
    warnings: &mut Vec<String>,
) -> Result<SettingsChanges, SettingsError> {
    let mut changes = SettingsChanges::default();
    if settings
        .root()
        .get(LimitSettings::SECTION)
        .is_some_and(is_old_init_limits)
    {
        settings.remove(&[LimitSettings::SECTION])?;
        changes.removed.push(OLD_LIMITS_REMOVED.to_owned());
    }
    let added = &mut changes.added;
    for (section, defaults) in [
        ("development_mode", default_development_mode()),
        (crate::settings::QW_SECTION, default_quantumwala()),
    ] {
        match settings.root().get(section) {
            None => {
                settings.set(&[section], Value::Object(defaults))?;
                added.push(section.to_owned());
            }
            Some(Value::Object(block)) => {
                let missing: Vec<(String, Value)> = defaults
                    .into_iter()
                    .filter(|(k, _)| !block.contains_key(k))
                    .collect();
                for (k, v) in missing {
                    settings.set(&[section, &k], v)?;
                    added.push(format!("{section}.{k}"));
                }
            }
            Some(_) => warnings.push(format!(
                "`{section}` in settings.local.json is not an object; qw left it as is and uses its defaults"
            )),
        }
    }
    Ok(changes)
}

/// `block` holds exactly the five `resource_limits` an older init wrote, by value
/// (`0.8` and `0.80` alike), and nothing else.
pub(crate) fn is_old_init_limits(block: &Value) -> bool {
    let Some(block) = block.as_object() else {
        return false;
    };
    let old = LimitSettings::OLD_INIT_DEFAULTS;
    let want = [
        ("max_load", old.max_load),
        ("max_memory", old.max_memory),
        ("high_impact_load", old.high_impact_load),
        ("max_concurrent", old.max_concurrent.map(|n| n as f64)),
        (
            "acquire_timeout_s",
            old.acquire_timeout.map(|d| d.as_secs_f64()),
        ),
    ];
    block.len() == want.len()
        && want.iter().all(|(k, v)| {
            block
                .get(*k)
                .and_then(Value::as_f64)
                .is_some_and(|x| Some(x) == *v)
        })
}

/// The init report's note when it removed an older init's `resource_limits`.
pub(crate) const OLD_LIMITS_REMOVED: &str = "removed resource_limits: it held exactly the defaults an older qw init wrote, which counted as your limits and kept dev mode from tightening them; qw's defaults still apply";

/// A slash command init writes: `.claude/commands/<name>.md`.
struct SlashCommand {
    name: &'static str,
    description: &'static str,
    argument_hint: &'static str,
    /// Extra instruction for Claude after the output.
    note: &'static str,
}

/// What the workflow commands tell Claude about permissions (the agents qw starts run
/// `claude -p`, headless: what is not allowed up front is refused).
macro_rules! permissions_note {
    ($first:literal) => {
        concat!(
            $first,
            " If a task or phase failed with `permission_denied`, quote the refused tool and target and qw's way out: `--claude-arg=--permission-mode --claude-arg=acceptEdits` lets the agent edit files, commands need allow rules such as \"Bash(cargo test:*)\" in `permissions.allow` of `.claude/settings.local.json`, and `bypassPermissions` allows everything but Claude Code refuses it as root (see `quantumwala.claude_permissions` there). Do not change permissions yourself unless the user asks."
        )
    };
}

const PERMISSIONS_NOTE_AUTO: &str = permissions_note!(
    "Say which tasks completed and which failed, and why; point to the report in `.claude/specs/<spec-name>/report.md`."
);
const PERMISSIONS_NOTE_CONTINUE: &str =
    permissions_note!("Say which tasks completed and which failed, and why.");

const COMMANDS: &[SlashCommand] = &[
    SlashCommand {
        name: "workflow-auto",
        description: "Run a spec's whole workflow with qw: requirements, design, tasks, implementation, validation, report",
        argument_hint: "<spec-name> \"<description>\" [--agent claude|command|offline] [--claude-arg=--permission-mode --claude-arg=acceptEdits] [--parallel N] [--dry-run]",
        note: PERMISSIONS_NOTE_AUTO,
    },
    SlashCommand {
        name: "workflow-continue",
        description: "Resume a spec's workflow with qw; completed tasks are never run again",
        argument_hint: "[spec-name] [--claude-arg=--permission-mode --claude-arg=acceptEdits]",
        note: PERMISSIONS_NOTE_CONTINUE,
    },
    SlashCommand {
        name: "workflow-reset",
        description: "Reset a spec's workflow with qw (soft: unfinished tasks back to pending; --hard: generated documents too)",
        argument_hint: "<spec-name> [--hard --yes]",
        note: "Name the backup qw made before resetting.",
    },
    SlashCommand {
        name: "state-backup",
        description: "Back up, list, restore or clean backups of qw's workflow state",
        argument_hint: "[NAME] | --list | --restore NAME | --clean [--days N]",
        note: "",
    },
    SlashCommand {
        name: "dev-mode",
        description: "Turn qw's development mode on or off, or show it",
        argument_hint: "on|off|status",
        note: "",
    },
    SlashCommand {
        name: "spec-create",
        description: "Create a new spec with qw",
        argument_hint: "<spec-name> \"<description>\"",
        note: "",
    },
    SlashCommand {
        name: "spec-list",
        description: "List specs with their documents and task progress",
        argument_hint: "[--json]",
        note: "",
    },
    SlashCommand {
        name: "spec-status",
        description: "Show one spec's (or every spec's) phase and tasks",
        argument_hint: "[spec-name]",
        note: "",
    },
    SlashCommand {
        name: "status",
        description: "Show the project's workflow status: phases, tasks, progress, errors, cost",
        argument_hint: "[--json]",
        note: "",
    },
    SlashCommand {
        name: "resources",
        description: "Show machine load, memory, admission limits and slots in use",
        argument_hint: "[--json]",
        note: "",
    },
    SlashCommand {
        name: "sweep",
        description: "End agent process trees left behind by a qw that was killed",
        argument_hint: "[--project-only]",
        note: "",
    },
    SlashCommand {
        name: "suggest",
        description: "Hand qw the next command to run (qw consume validates and runs it)",
        argument_hint: "\"<command>\"",
        note: "",
    },
    SlashCommand {
        name: "dashboard",
        description: "Start qw's live local web dashboard",
        argument_hint: "[--port N] [--open]",
        note: "",
    },
    SlashCommand {
        name: "worktrees",
        description: "List or prune qw's per-task git worktrees",
        argument_hint: "[--prune]",
        note: "",
    },
];

/// YAML single-quoted scalar.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn command_file(c: &SlashCommand) -> String {
    let front = format!(
        "---\ndescription: {}\nargument-hint: {}\nallowed-tools: Bash(qw:*)\n---\n\n",
        yaml_quote(c.description),
        yaml_quote(c.argument_hint)
    );
    let tail = "If it shows an error, quote the error and its `hint:` lines and stop: do not \
                retry or work around it unless the user asks.\n";
    if c.name == "dashboard" {
        // The dashboard is a server: a `!` pre-run would block until it exits.
        return format!(
            "{front}Start the dashboard in the background with the Bash tool (run_in_background): \
             `qw dashboard $ARGUMENTS`. Wait for its first line of output, then give the user the \
             URL it printed (the token in it is required). {tail}"
        );
    }
    let note = if c.note.is_empty() {
        String::new()
    } else {
        format!(" {}", c.note)
    };
    format!(
        "{front}!`qw {name} $ARGUMENTS`\n\nAbove is the output of `qw {name} $ARGUMENTS`. Report it \
         to the user faithfully and briefly; do not claim anything it does not say.{note} {tail}",
        name = c.name
    )
}

/// Every file init owns: (path relative to `.claude/`, contents).
pub(crate) fn templates() -> Vec<(String, String)> {
    let mut out = vec![
        (
            "steering/product.md".to_owned(),
            include_str!("templates/product.md").to_owned(),
        ),
        (
            "steering/tech.md".to_owned(),
            include_str!("templates/tech.md").to_owned(),
        ),
        (
            "steering/structure.md".to_owned(),
            include_str!("templates/structure.md").to_owned(),
        ),
    ];
    for c in COMMANDS {
        out.push((format!("commands/{}.md", c.name), command_file(c)));
    }
    out
}

#[cfg(test)]
/// Names of the slash commands init writes.
pub(crate) fn command_names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

/// `.claude/.qw-init.json`: what init wrote, so edits can be told apart from templates.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    schema_version: u32,
    /// Path relative to `.claude/` → `fnv1a64:<hex>` of the bytes init wrote.
    files: BTreeMap<String, String>,
}

const MANIFEST_VERSION: u32 = 1;

/// The manifest's path.
pub(crate) fn manifest_path(project: &Project) -> PathBuf {
    project.claude_dir().join(".qw-init.json")
}

/// FNV-1a, 64 bit: enough to notice an edit (not a security boundary).
fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// The most init reads of a file it compares with its template (or of its manifest).
const MAX_READ: usize = 16 << 20;

fn load_manifest(path: &Path, warnings: &mut Vec<String>) -> Result<Manifest, ScaffoldError> {
    let text = match crate::fs::read_regular_text(path, MAX_READ) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) if crate::fs::is_refused(&e) => {
            warnings.push(format!(
                "{e}; treating every existing file that differs from its template as edited by you"
            ));
            return Ok(Manifest::default());
        }
        Err(e) => return Err(e.into()),
    };
    match serde_json::from_str::<Manifest>(&text) {
        Ok(m) => Ok(m),
        Err(e) => {
            warnings.push(format!(
                "`{}` is not valid ({e}); treating every existing file that differs from its template as edited by you",
                path.display()
            ));
            Ok(Manifest::default())
        }
    }
}

fn display_rel(project: &Project, path: &Path) -> String {
    path.strip_prefix(project.root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Scaffold `.claude/` in `project`, whose settings file the caller has read (and
/// checked: a corrupt one stops init before it writes anything).
pub(crate) fn init(
    project: &Project,
    mut settings: SettingsFile,
) -> Result<InitReport, ScaffoldError> {
    let settings_path = project.settings_file();
    let settings_existed = settings_path.exists();
    let mut report = InitReport::default();

    let claude = project.claude_dir();
    for dir in [
        claude.clone(),
        project.steering_dir(),
        project.commands_dir(),
    ] {
        crate::fs::create_dir_all(&dir)?;
    }
    let specs = project.specs_dir();
    let specs_existed = specs.is_dir();
    crate::fs::create_dir_all(&specs)?;
    report.files.push(FileReport {
        path: format!("{}/", display_rel(project, &specs)),
        action: if specs_existed {
            Action::Unchanged
        } else {
            Action::Created
        },
        note: None,
    });

    let manifest_file = manifest_path(project);
    let mut manifest = load_manifest(&manifest_file, &mut report.warnings)?;
    let mut manifest_changed = manifest.schema_version != MANIFEST_VERSION;
    manifest.schema_version = MANIFEST_VERSION;

    for (rel, contents) in templates() {
        let path = claude.join(&rel);
        let new_hash = content_hash(contents.as_bytes());
        if path.is_dir() {
            return Err(ScaffoldError::NotAFile { path });
        }
        let current = match crate::fs::read_regular_whole(&path, MAX_READ) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let (action, note) = match current {
            None => (Action::Created, None),
            Some(bytes) if bytes == contents.as_bytes() => (Action::Unchanged, None),
            Some(bytes) => {
                let ours = manifest.files.get(&rel) == Some(&content_hash(&bytes));
                if ours {
                    (Action::Updated, Some("new template".to_owned()))
                } else {
                    (Action::Kept, Some("edited by you".to_owned()))
                }
            }
        };
        if matches!(action, Action::Created | Action::Updated) {
            crate::fs::write_durable(&path, contents.as_bytes())?;
        }
        if action != Action::Kept && manifest.files.get(&rel) != Some(&new_hash) {
            manifest.files.insert(rel.clone(), new_hash);
            manifest_changed = true;
        }
        report.files.push(FileReport {
            path: display_rel(project, &path),
            action,
            note,
        });
    }

    let changes = merge_settings_defaults(&mut settings, &mut report.warnings)?;
    let settings_action = if !settings_existed {
        Action::Created
    } else if changes.is_empty() {
        Action::Unchanged
    } else {
        Action::Updated
    };
    if !changes.is_empty() || !settings_existed {
        settings.save()?;
    }
    report.files.push(FileReport {
        path: display_rel(project, &settings_path),
        action: settings_action,
        note: (settings_action == Action::Updated).then(|| changes.note()),
    });

    if manifest_changed {
        let mut text = serde_json::to_string_pretty(&manifest).map_err(io::Error::other)?;
        text.push('\n');
        crate::fs::write_durable(&manifest_file, text.as_bytes())?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_command_file_calls_qw_with_arguments_and_has_front_matter() {
        let names = command_names();
        for expected in [
            "workflow-auto",
            "workflow-continue",
            "workflow-reset",
            "state-backup",
            "dev-mode",
            "spec-create",
            "spec-list",
            "spec-status",
            "status",
            "resources",
            "sweep",
            "suggest",
            "dashboard",
            "worktrees",
        ] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        for c in COMMANDS {
            let text = command_file(c);
            assert!(text.starts_with("---\ndescription: '"), "{text}");
            assert!(text.contains("\nargument-hint: '"), "{text}");
            assert!(
                text.contains("\nallowed-tools: Bash(qw:*)\n---\n"),
                "{text}"
            );
            assert!(
                text.contains(&format!("`qw {} $ARGUMENTS`", c.name)),
                "{text}"
            );
            if c.name != "dashboard" {
                assert!(
                    text.contains(&format!("\n!`qw {} $ARGUMENTS`\n", c.name)),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn settings_merge_adds_only_missing_keys() {
        let text = "{\"z\": 12345678901234567890123, \"resource_limits\": {\"max_load\": 0.50}, \"development_mode\": \"odd\"}";
        let mut s = SettingsFile::parse(Path::new("s.json"), text).unwrap();
        let mut warnings = Vec::new();
        let added = merge_settings_defaults(&mut s, &mut warnings)
            .unwrap()
            .added;
        // No limit is written: one in the file would count as the user's.
        assert!(
            !added.iter().any(|k| k.starts_with("resource_limits")),
            "{added:?}"
        );
        assert!(
            s.text().starts_with(
                "{\"z\": 12345678901234567890123, \"resource_limits\": {\"max_load\": 0.50}, \"development_mode\": \"odd\""
            ),
            "{}",
            s.text()
        );
        assert_eq!(s.root()["development_mode"], json!("odd"));
        assert_eq!(warnings.len(), 1);
        let keys: Vec<_> = s.root().keys().cloned().collect();
        assert_eq!(
            keys,
            ["z", "resource_limits", "development_mode", "quantumwala"]
        );
        let help = s.root()["quantumwala"]["claude_permissions"]
            .as_str()
            .unwrap();
        for part in [
            "--claude-arg=--permission-mode --claude-arg=acceptEdits",
            "Bash(cargo test:*)",
            "refuses it as root",
        ] {
            assert!(help.contains(part), "{part}: {help}");
        }
        assert!(
            merge_settings_defaults(&mut s, &mut warnings)
                .unwrap()
                .is_empty()
        );
        // A user's own quantumwala block keeps its keys (and bytes); only the help is added.
        let mut s = SettingsFile::parse(
            Path::new("s.json"),
            r#"{"quantumwala": {"keep_runs": 5, "daily_budget_usd": 2.50}}"#,
        )
        .unwrap();
        let added = merge_settings_defaults(&mut s, &mut Vec::new())
            .unwrap()
            .added;
        assert!(added.contains(&"quantumwala.claude_permissions".to_owned()));
        assert!(
            s.text()
                .starts_with(r#"{"quantumwala": {"keep_runs": 5, "daily_budget_usd": 2.50, "claude_permissions": "#),
            "{}",
            s.text()
        );
    }

    #[test]
    fn an_older_inits_limit_block_is_removed_and_a_users_is_kept() {
        let old = "{\n  \"resource_limits\": {\n    \"max_load\": 0.85,\n    \"max_memory\": 0.8,\n    \"high_impact_load\": 0.6,\n    \"max_concurrent\": 8,\n    \"acquire_timeout_s\": 300\n  },\n  \"env\": {\"A\": \"1\"}\n}\n";
        let mut s = SettingsFile::parse(Path::new("s.json"), old).unwrap();
        let changes = merge_settings_defaults(&mut s, &mut Vec::new()).unwrap();
        assert_eq!(changes.removed, [OLD_LIMITS_REMOVED]);
        assert!(s.root().get("resource_limits").is_none(), "{}", s.text());
        assert!(s.text().contains("\"env\": {\"A\": \"1\"}"), "{}", s.text());
        // One value changed, one key more or less, or not an object: the user's.
        for (mine, why) in [
            (
                r#"{"max_load": 0.85, "max_memory": 0.80, "high_impact_load": 0.6, "max_concurrent": 4, "acquire_timeout_s": 300}"#,
                "a value",
            ),
            (
                r#"{"max_load": 0.85, "max_memory": 0.80, "high_impact_load": 0.6, "max_concurrent": 8}"#,
                "a key less",
            ),
            (
                r#"{"max_load": 0.85, "max_memory": 0.80, "high_impact_load": 0.6, "max_concurrent": 8, "acquire_timeout_s": 300, "max_cpu_pressure": 50}"#,
                "a key more",
            ),
        ] {
            let text = format!("{{\"resource_limits\": {mine}}}");
            let mut s = SettingsFile::parse(Path::new("s.json"), &text).unwrap();
            let changes = merge_settings_defaults(&mut s, &mut Vec::new()).unwrap();
            assert!(changes.removed.is_empty(), "{why}");
            assert!(
                s.text().starts_with(&text[..text.len() - 1]),
                "{why}: {}",
                s.text()
            );
        }
        // By value: 0.80 as written matches.
        assert!(is_old_init_limits(
            &json!({"max_load": 0.85, "max_memory": 0.80, "high_impact_load": 0.60, "max_concurrent": 8, "acquire_timeout_s": 300.0})
        ));
    }

    #[test]
    fn corrupt_manifest_keeps_every_differing_file_and_warns() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::at(dir.path());
        init(&p, SettingsFile::load(&p.settings_file()).unwrap()).unwrap();
        let product = p.steering_dir().join("product.md");
        crate::fs::write(&product, "mine\n").unwrap();
        crate::fs::write(manifest_path(&p), "{not json").unwrap();
        let r = init(&p, SettingsFile::load(&p.settings_file()).unwrap()).unwrap();
        assert_eq!(r.count(Action::Kept), 1);
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains(".qw-init.json"));
        assert_eq!(crate::fs::read_to_string(&product).unwrap(), "mine\n");
        // The manifest is valid again and still does not claim the user's file.
        let r = init(&p, SettingsFile::load(&p.settings_file()).unwrap()).unwrap();
        assert!(r.warnings.is_empty());
        assert_eq!(r.count(Action::Kept), 1);
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(content_hash(b""), "fnv1a64:cbf29ce484222325");
        assert_eq!(content_hash(b"a"), "fnv1a64:af63dc4c8601ec8c");
    }
}
