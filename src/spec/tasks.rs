//! `tasks.md`: the checkbox task list of a spec — parsing, validation, and byte-exact ticking.
//!
//! The format (CONTRACT §6) is a Markdown list:
//!
//! ```text
//! - [ ] 1. Set up the project
//!   - Create the folders
//!   - _Requirements: 1.1_
//! - [ ] 2. Data models
//! - [ ] 2.1. Model types
//!   - _Depends: 1_
//!   - _Verify: `cargo test models`_
//! ```
//!
//! Ids compare exactly as strings (`1` ≠ `1.1` ≠ `10`). `2.1` is a child of `2` when `2`
//! exists (else of the nearest existing shorter prefix, else of the task it is indented
//! under, unless that task descends from it). Only leaves run; a parent is done when all
//! its children are.
//!
//! Ticking rewrites the one byte inside `[ ]` and nothing else, so a user's formatting,
//! comments and line endings survive every run. This module never runs anything.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Problems with a tasks.md file or a request against it. Every variant names the line.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// A checkbox line outside any task has no numeric id.
    #[error("line {line}: checkbox without a task id: `{text}`; number it like `- [ ] 3. Title`")]
    MissingId {
        /// 1-based line.
        line: usize,
        /// The line as written.
        text: String,
    },
    /// A task's checkbox holds a mark other than ` `, `x` or `X`.
    #[error("line {line}: unknown checkbox mark in `{text}`; use `[ ]` (to do) or `[x]` (done)")]
    BadCheckbox {
        /// 1-based line.
        line: usize,
        /// The line as written.
        text: String,
    },
    /// Two tasks share an id.
    #[error(
        "line {line}: duplicate task id `{id}` (first used on line {first_line}); give each task its own id"
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// Line of the second use.
        line: usize,
        /// Line of the first use.
        first_line: usize,
    },
    /// `_Depends:` names a task that does not exist.
    #[error("line {line}: task `{id}` depends on unknown task `{dep}`; fix its `_Depends:` line")]
    UnknownDependency {
        /// The task.
        id: String,
        /// Its line.
        line: usize,
        /// The missing id.
        dep: String,
    },
    /// A task depends on itself, its own parent or its own subtask.
    #[error("line {line}: task `{id}` depends on {what} `{dep}`; remove it from `_Depends:`")]
    SelfDependency {
        /// The task.
        id: String,
        /// Its line.
        line: usize,
        /// The offending id.
        dep: String,
        /// "itself", "its own parent" or "its own subtask".
        what: &'static str,
    },
    /// A `_Verify:_` command holds a NUL byte: no argument of a program can (the C
    /// strings of `execve`), so it could only run cut short or changed.
    #[error(
        "line {line}: task `{id}` has a _Verify:_ command with a NUL byte at character {position}; a program's arguments cannot hold one: remove it"
    )]
    NulInVerify {
        /// The task.
        id: String,
        /// The line of the `_Verify:_`.
        line: usize,
        /// 1-based character position in the command.
        position: usize,
    },
    /// The dependencies form a cycle.
    #[error("line {line}: dependency cycle {}; break it in one of the `_Depends:` lines", .cycle.join(" → "))]
    Cycle {
        /// Ids along the cycle, first repeated at the end.
        cycle: Vec<String>,
        /// Line of the first task in the cycle.
        line: usize,
    },
    /// No task has this id.
    #[error("no task `{id}` in tasks.md; `qw spec-status` lists the ids")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// Only leaves are ticked directly; parents follow their children.
    #[error(
        "line {line}: task `{id}` has subtasks; tick its subtasks and it is ticked with the last one"
    )]
    NotALeaf {
        /// The id asked for.
        id: String,
        /// Its line.
        line: usize,
    },
    /// The file is not UTF-8 text.
    #[error("not valid UTF-8 text at {at}; save it as UTF-8")]
    NotUtf8 {
        /// Where the first invalid byte is (1-based line, column and byte).
        at: crate::fs::Utf8Position,
    },
    /// The file named in the error could not be parsed.
    #[error("`{path}`: {source}")]
    InFile {
        /// The tasks.md file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<TasksError>,
    },
    /// The file was deleted while a run went on: a tick cannot be written.
    #[error(
        "`{}` was deleted while the run went on (an agent's edit?); the tick of task {ids} cannot be written (the state records it completed)",
        path.display()
    )]
    Deleted {
        /// The tasks.md file.
        path: PathBuf,
        /// The tasks whose tick was to be written.
        ids: String,
    },
    /// Reading or writing failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl TasksError {
    /// Attach the file name to a parse or validation error.
    pub fn in_file(self, path: &Path) -> TasksError {
        match self {
            TasksError::Io(_) | TasksError::InFile { .. } | TasksError::Deleted { .. } => self,
            other => TasksError::InFile {
                path: path.to_path_buf(),
                source: Box::new(other),
            },
        }
    }
}

/// One task of a tasks.md file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Task {
    /// The id as written, without a trailing dot (`2.1`).
    pub id: String,
    /// The text after the id.
    pub title: String,
    /// 1-based line of the checkbox.
    pub line: usize,
    /// `[x]` or `[X]`.
    pub checked: bool,
    /// Ids from `_Depends:` as written (may name parents).
    pub depends: Vec<String>,
    /// The command from `_Verify: \`cmd\`_`.
    pub verify: Option<String>,
    /// Ids from `_Requirements:`.
    pub requirements: Vec<String>,
    /// The text of `_Leverage:`.
    pub leverage: Option<String>,
    /// Other sub-bullets and indented lines, bullet marker removed.
    pub details: Vec<String>,
    /// Byte offset in the file of the character between `[` and `]`.
    #[serde(skip)]
    checkbox_offset: usize,
    /// Indentation width of the bullet (tab = 4).
    #[serde(skip)]
    indent: usize,
}

#[cfg(test)]
impl Task {
    /// A new unchecked task, for writing a tasks.md with [`render`].
    pub(crate) fn new(id: impl Into<String>, title: impl Into<String>) -> Task {
        Task {
            id: id.into(),
            title: title.into(),
            line: 0,
            checked: false,
            depends: Vec::new(),
            verify: None,
            requirements: Vec::new(),
            leverage: None,
            details: Vec::new(),
            checkbox_offset: 0,
            indent: 0,
        }
    }
}

#[cfg(test)]
/// Write tasks in the canonical format (`- [ ] 2.1. Title`, two spaces of indentation per
/// id level, metadata as sub-bullets). `TaskList::parse` reads it back field for field,
/// provided the ids are valid and unique.
pub(crate) fn render(tasks: &[Task]) -> String {
    let mut out = String::new();
    for t in tasks {
        let indent = "  ".repeat(t.id.matches('.').count());
        let mark = if t.checked { 'x' } else { ' ' };
        let title = if t.title.is_empty() {
            String::new()
        } else {
            format!(" {}", t.title)
        };
        out.push_str(&format!("{indent}- [{mark}] {}.{title}\n", t.id));
        let sub = format!("{indent}  - ");
        for d in &t.details {
            out.push_str(&format!("{sub}{d}\n"));
        }
        if let Some(l) = &t.leverage {
            out.push_str(&format!("{sub}_Leverage: {l}_\n"));
        }
        if !t.requirements.is_empty() {
            out.push_str(&format!(
                "{sub}_Requirements: {}_\n",
                t.requirements.join(", ")
            ));
        }
        if !t.depends.is_empty() {
            out.push_str(&format!("{sub}_Depends: {}_\n", t.depends.join(", ")));
        }
        if let Some(v) = &t.verify {
            let fence = if v.contains('`') { "``" } else { "`" };
            out.push_str(&format!("{sub}_Verify: {fence}{v}{fence}_\n"));
        }
    }
    out
}

/// A parsed and validated tasks.md.
#[derive(Debug, Clone)]
pub(crate) struct TaskList {
    tasks: Vec<Task>,
    index: HashMap<String, usize>,
    parent: Vec<Option<usize>>,
    children: Vec<Vec<usize>>,
    /// For each leaf, the leaves it must wait for (dependencies of the leaf and of its
    /// ancestors, each parent expanded to all leaves under it). Empty for parents.
    leaf_deps: Vec<Vec<usize>>,
}

/// What a checkbox line holds, before validation.
struct CheckboxLine<'a> {
    indent: usize,
    /// Offset of the checkbox character within the line.
    box_at: usize,
    /// `None` for a mark other than ` `, `x`, `X` (e.g. `[~]`).
    checked: Option<bool>,
    rest: &'a str,
}

fn indent_width(line: &str) -> (usize, usize) {
    let mut width = 0;
    let mut bytes = 0;
    for c in line.chars() {
        match c {
            ' ' => width += 1,
            '\t' => width += 4,
            _ => break,
        }
        bytes += 1;
    }
    (width, bytes)
}

/// Whether following `parent` links from `from` arrives at `to` (`from` itself counts).
/// The links must form no cycle.
fn reaches(parent: &[Option<usize>], from: usize, to: usize) -> bool {
    let mut cur = Some(from);
    while let Some(c) = cur {
        if c == to {
            return true;
        }
        cur = parent[c];
    }
    false
}

/// Strip a list bullet (`-`, `*`, `+` followed by whitespace) from trimmed text.
fn strip_bullet(t: &str) -> Option<&str> {
    let rest = t.strip_prefix(['-', '*', '+'])?;
    rest.starts_with([' ', '\t']).then(|| rest.trim_start())
}

fn parse_checkbox(line: &str) -> Option<CheckboxLine<'_>> {
    let (indent, lead) = indent_width(line);
    let after_indent = &line[lead..];
    let body = strip_bullet(after_indent)?;
    let body_at = line.len() - body.len();
    let b = body.as_bytes();
    if b.len() < 3 || b[0] != b'[' || b[2] != b']' {
        return None;
    }
    let checked = match b[1] {
        b' ' => Some(false),
        b'x' | b'X' => Some(true),
        c if c.is_ascii_graphic() => None,
        _ => return None,
    };
    let rest = &body[3..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some(CheckboxLine {
        indent,
        box_at: body_at + 1,
        checked,
        rest,
    })
}

/// Split `1.2. Title` into (`1.2`, `Title`); `None` when the text does not start with an id.
fn split_id(rest: &str) -> Option<(&str, &str)> {
    let t = rest.trim_start();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (raw, title) = t.split_at(end);
    if !(title.is_empty() || title.starts_with([' ', '\t'])) {
        return None;
    }
    let id = raw.strip_suffix('.').unwrap_or(raw);
    let valid = !id.is_empty()
        && id
            .split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| (id, title.trim()))
}

/// `_Key: value_` (or `*Key: value*`) → (lowercase key, raw value).
fn parse_meta(text: &str) -> Option<(String, &str)> {
    let delim = text.chars().next().filter(|c| *c == '_' || *c == '*')?;
    let inner = &text[1..];
    let colon = inner.find(':')?;
    let key = inner[..colon].trim().to_ascii_lowercase();
    if !matches!(
        key.as_str(),
        "requirements" | "requirement" | "leverage" | "depends" | "depends on" | "verify"
    ) {
        return None;
    }
    let value = inner[colon + 1..].trim_end();
    let value = value.strip_suffix(delim).unwrap_or(value).trim();
    Some((key, value))
}

/// The command inside backticks (any run length), else the value as it is.
fn verify_command(value: &str) -> String {
    let ticks = value.len() - value.trim_start_matches('`').len();
    if ticks > 0 {
        let fence = &value[..ticks];
        let body = &value[ticks..];
        if let Some(end) = body.find(fence) {
            return body[..end].trim().to_owned();
        }
    }
    value.trim().to_owned()
}

fn id_list(value: &str) -> Vec<String> {
    value
        .split([',', ' ', '\t', ';'])
        .map(|s| s.trim().trim_end_matches('.'))
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("none"))
        .map(str::to_owned)
        .collect()
}

impl TaskList {
    /// Parse and validate tasks.md text. Errors name the line.
    pub(crate) fn parse(text: &str) -> Result<TaskList, TasksError> {
        let mut tasks: Vec<Task> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        // Tasks a following line may be indented under: (indent, task index).
        let mut open: Vec<(usize, usize)> = Vec::new();
        let mut indent_parent: Vec<Option<usize>> = Vec::new();
        // The task whose details the following indented lines are.
        let mut current: Option<usize> = None;
        let mut in_fence = false;
        let mut offset = 0;
        for (n, raw) in text.split_inclusive('\n').enumerate() {
            let line_no = n + 1;
            let line_start = offset;
            offset += raw.len();
            let mut line = raw.trim_end_matches(['\n', '\r']);
            let mut bom = 0;
            if n == 0 && line.starts_with('\u{feff}') {
                bom = '\u{feff}'.len_utf8();
                line = &line[bom..];
            }
            let trimmed = line.trim();
            let (indent, _) = indent_width(line);
            let fence_marker = trimmed.starts_with("```") || trimmed.starts_with("~~~");
            if in_fence || fence_marker {
                if fence_marker {
                    in_fence = !in_fence;
                }
                match current {
                    Some(c) if indent > tasks[c].indent || trimmed.is_empty() => {
                        if !trimmed.is_empty() {
                            tasks[c].details.push(trimmed.to_owned());
                        }
                    }
                    _ => {
                        current = None;
                        open.clear();
                    }
                }
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }
            if let Some(cb) = parse_checkbox(line) {
                let split = split_id(cb.rest);
                let checked = match (cb.checked, split) {
                    (Some(c), _) => c,
                    (None, Some(_)) => {
                        return Err(TasksError::BadCheckbox {
                            line: line_no,
                            text: trimmed.to_owned(),
                        });
                    }
                    // `[~] words`: not a checkbox qw knows; treat it as text.
                    (None, None) => false,
                };
                match split.filter(|_| cb.checked.is_some()) {
                    Some((id, title)) => {
                        while open.last().is_some_and(|(i, _)| *i >= cb.indent) {
                            open.pop();
                        }
                        let idx = tasks.len();
                        if let Some(&first) = index.get(id) {
                            return Err(TasksError::DuplicateId {
                                id: id.to_owned(),
                                line: line_no,
                                first_line: tasks[first].line,
                            });
                        }
                        index.insert(id.to_owned(), idx);
                        indent_parent.push(open.last().map(|(_, p)| *p));
                        open.push((cb.indent, idx));
                        tasks.push(Task {
                            id: id.to_owned(),
                            title: title.to_owned(),
                            line: line_no,
                            checked,
                            depends: Vec::new(),
                            verify: None,
                            requirements: Vec::new(),
                            leverage: None,
                            details: Vec::new(),
                            checkbox_offset: line_start + bom + cb.box_at,
                            indent: cb.indent,
                        });
                        current = Some(idx);
                        continue;
                    }
                    None => match current {
                        // An unnumbered checklist inside a task is part of its details.
                        Some(c) if cb.indent > tasks[c].indent => {}
                        _ if cb.checked.is_none() => {}
                        _ => {
                            return Err(TasksError::MissingId {
                                line: line_no,
                                text: trimmed.to_owned(),
                            });
                        }
                    },
                }
            }
            let content = strip_bullet(trimmed).unwrap_or(trimmed);
            let meta = parse_meta(content);
            // Metadata belongs to the task above it even when not indented; other text at
            // the task's level (prose, a heading) ends the task's details.
            let Some(c) = current.filter(|c| indent > tasks[*c].indent || meta.is_some()) else {
                current = None;
                open.clear();
                continue;
            };
            let task = &mut tasks[c];
            match meta {
                Some((key, value)) => match key.as_str() {
                    "requirements" | "requirement" => task.requirements.extend(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                    ),
                    "leverage" => task.leverage = Some(value.to_owned()),
                    "verify" => {
                        let command = verify_command(value);
                        if let Some(at) = command.chars().position(|c| c == '\0') {
                            return Err(TasksError::NulInVerify {
                                id: task.id.clone(),
                                line: line_no,
                                position: at + 1,
                            });
                        }
                        task.verify = Some(command);
                    }
                    _ => task.depends.extend(id_list(value)),
                },
                None => task.details.push(content.to_owned()),
            }
        }
        TaskList::link(tasks, index, indent_parent)
    }

    /// Build the hierarchy and dependency graph, and validate it.
    fn link(
        tasks: Vec<Task>,
        index: HashMap<String, usize>,
        indent_parent: Vec<Option<usize>>,
    ) -> Result<TaskList, TasksError> {
        let n = tasks.len();
        // The ids decide first: the nearest existing shorter prefix. These links only
        // shorten ids, so they never form a cycle.
        let mut parent: Vec<Option<usize>> = tasks
            .iter()
            .map(|t| {
                let mut prefix = t.id.as_str();
                while let Some((head, _)) = prefix.rsplit_once('.') {
                    if let Some(&p) = index.get(head) {
                        return Some(p);
                    }
                    prefix = head;
                }
                None
            })
            .collect();
        // Indentation decides where the ids do not, and only when it cannot contradict
        // them: the enclosing task must not already descend from this one (a dotted
        // descendant of it, or a task indented under one). Each link is checked against
        // those made before it, so the hierarchy stays a forest: every chain of parents
        // ends, which `ancestors_of` and `leaves_under` rely on.
        for (i, &by_indent) in indent_parent.iter().enumerate() {
            if parent[i].is_none() {
                parent[i] = by_indent.filter(|&p| !reaches(&parent, p, i));
            }
        }
        let mut children = vec![Vec::new(); n];
        for (i, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(i);
            }
        }
        let mut list = TaskList {
            tasks,
            index,
            parent,
            children,
            leaf_deps: vec![Vec::new(); n],
        };
        list.check_dependencies()?;
        list.expand_leaf_deps();
        list.check_cycles()?;
        Ok(list)
    }

    /// The parent of `i`, its parent, and so on (`link` keeps the chain finite).
    fn ancestors_of(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = self.parent[i];
        while let Some(p) = cur {
            out.push(p);
            cur = self.parent[p];
        }
        out
    }

    fn leaves_under(&self, i: usize, out: &mut Vec<usize>) {
        if self.children[i].is_empty() {
            out.push(i);
        } else {
            for &c in &self.children[i] {
                self.leaves_under(c, out);
            }
        }
    }

    fn check_dependencies(&self) -> Result<(), TasksError> {
        for (i, t) in self.tasks.iter().enumerate() {
            let ancestors = self.ancestors_of(i);
            for dep in &t.depends {
                let self_dep = |what| TasksError::SelfDependency {
                    id: t.id.clone(),
                    line: t.line,
                    dep: dep.clone(),
                    what,
                };
                let Some(&d) = self.index.get(dep) else {
                    return Err(TasksError::UnknownDependency {
                        id: t.id.clone(),
                        line: t.line,
                        dep: dep.clone(),
                    });
                };
                if d == i {
                    return Err(self_dep("itself"));
                }
                if ancestors.contains(&d) {
                    return Err(self_dep("its own parent"));
                }
                if self.ancestors_of(d).contains(&i) {
                    return Err(self_dep("its own subtask"));
                }
            }
        }
        Ok(())
    }

    fn expand_leaf_deps(&mut self) {
        for i in 0..self.tasks.len() {
            if !self.children[i].is_empty() {
                continue;
            }
            let mut deps = Vec::new();
            for owner in std::iter::once(i).chain(self.ancestors_of(i)) {
                for dep in &self.tasks[owner].depends {
                    if let Some(&d) = self.index.get(dep) {
                        self.leaves_under(d, &mut deps);
                    }
                }
            }
            let mut seen = HashSet::new();
            deps.retain(|d| *d != i && seen.insert(*d));
            self.leaf_deps[i] = deps;
        }
    }

    fn check_cycles(&self) -> Result<(), TasksError> {
        // Iterative DFS over leaves; colour 1 = on the stack, 2 = done.
        let n = self.tasks.len();
        let mut colour = vec![0u8; n];
        for start in 0..n {
            if colour[start] != 0 || !self.children[start].is_empty() {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            colour[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&dep) = self.leaf_deps[node].get(*next) {
                    *next += 1;
                    match colour[dep] {
                        0 => {
                            colour[dep] = 1;
                            stack.push((dep, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(s, _)| *s == dep).unwrap_or(0);
                            let mut cycle: Vec<String> = stack[from..]
                                .iter()
                                .map(|(s, _)| self.tasks[*s].id.clone())
                                .collect();
                            cycle.push(self.tasks[dep].id.clone());
                            return Err(TasksError::Cycle {
                                cycle,
                                line: self.tasks[dep].line,
                            });
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// Every task in file order.
    pub(crate) fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    #[cfg(test)]
    /// The task with exactly this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Task> {
        self.index.get(id).map(|&i| &self.tasks[i])
    }

    /// True when `id` exists and has no subtasks (only leaves run).
    pub(crate) fn is_leaf(&self, id: &str) -> bool {
        self.index
            .get(id)
            .is_some_and(|&i| self.children[i].is_empty())
    }

    /// Runnable tasks (no subtasks), in file order.
    pub(crate) fn leaves(&self) -> Vec<&Task> {
        (0..self.tasks.len())
            .filter(|&i| self.children[i].is_empty())
            .map(|i| &self.tasks[i])
            .collect()
    }

    #[cfg(test)]
    /// Direct subtasks of `id`, in file order.
    pub(crate) fn children(&self, id: &str) -> Vec<&Task> {
        self.index
            .get(id)
            .map(|&i| self.children[i].iter().map(|&c| &self.tasks[c]).collect())
            .unwrap_or_default()
    }

    /// The task `id` is a subtask of.
    pub(crate) fn parent(&self, id: &str) -> Option<&Task> {
        let &i = self.index.get(id)?;
        self.parent[i].map(|p| &self.tasks[p])
    }

    /// The leaves `id` must wait for: its own `_Depends:` and its ancestors', each parent
    /// expanded to every leaf under it. Empty for parents and unknown ids.
    pub(crate) fn leaf_dependencies(&self, id: &str) -> Vec<&Task> {
        self.index
            .get(id)
            .map(|&i| self.leaf_deps[i].iter().map(|&d| &self.tasks[d]).collect())
            .unwrap_or_default()
    }

    /// Leaves not in `completed` whose every leaf dependency is in `completed`, in file
    /// order: what a scheduler may start now. Seed `completed` with
    /// [`TaskList::checked_leaves`] to honour ticks already in the file.
    pub(crate) fn ready(&self, completed: &HashSet<String>) -> Vec<&Task> {
        (0..self.tasks.len())
            .filter(|&i| self.children[i].is_empty())
            .filter(|&i| !completed.contains(&self.tasks[i].id))
            .filter(|&i| {
                self.leaf_deps[i]
                    .iter()
                    .all(|&d| completed.contains(&self.tasks[d].id))
            })
            .map(|i| &self.tasks[i])
            .collect()
    }

    /// Ids of leaves ticked in the file.
    pub(crate) fn checked_leaves(&self) -> HashSet<String> {
        self.leaves()
            .into_iter()
            .filter(|t| t.checked)
            .map(|t| t.id.clone())
            .collect()
    }

    /// Leaves in an order that respects dependencies (file order among independent ones).
    pub(crate) fn leaf_order(&self) -> Vec<&Task> {
        let mut done = HashSet::new();
        let mut out = Vec::new();
        loop {
            let ready = self.ready(&done);
            if ready.is_empty() {
                break;
            }
            for t in ready {
                done.insert(t.id.clone());
                out.push(t);
            }
        }
        out
    }

    /// (ticked leaves, all leaves).
    pub(crate) fn progress(&self) -> (usize, usize) {
        let leaves = self.leaves();
        (leaves.iter().filter(|t| t.checked).count(), leaves.len())
    }
}

#[cfg(test)]
/// Set the checkbox of task `id` to `checked`, changing that one byte and no other.
/// Already in that state: the text comes back unchanged.
pub(crate) fn set_checked(text: &str, id: &str, checked: bool) -> Result<String, TasksError> {
    let list = TaskList::parse(text)?;
    let task = list
        .get(id)
        .ok_or_else(|| TasksError::NotFound { id: id.to_owned() })?;
    Ok(replace_box(text, task, checked))
}

#[cfg(test)]
fn replace_box(text: &str, task: &Task, checked: bool) -> String {
    if task.checked == checked {
        return text.to_owned();
    }
    let at = task.checkbox_offset;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..at]);
    out.push(if checked { 'x' } else { ' ' });
    out.push_str(&text[at + 1..]);
    out
}

/// Read a tasks.md file as text; bytes that are not UTF-8 are an error naming the file
/// and the line of the first of them.
pub(crate) fn read_text(path: &Path) -> Result<String, TasksError> {
    // Only a regular file, bounded like every spec document (a FIFO must not block).
    let bytes = crate::fs::read_regular_whole(path, super::MAX_DOCUMENT_BYTES)?;
    String::from_utf8(bytes).map_err(|e| {
        TasksError::NotUtf8 {
            at: crate::fs::Utf8Position::locate(e.as_bytes(), e.utf8_error().valid_up_to()),
        }
        .in_file(path)
    })
}

#[cfg(test)]
/// Tick task `id`: rewrites only its checkbox's space to `x`.
pub(crate) fn tick(text: &str, id: &str) -> Result<String, TasksError> {
    set_checked(text, id, true)
}

/// [`tick_file_many`] of one leaf.
#[cfg(test)]
pub(crate) fn tick_file(path: &Path, id: &str) -> Result<Vec<String>, TasksError> {
    tick_file_many(path, &[id.to_owned()])
}

/// Tick the leaves `ids` in the file at `path`, and every ancestor whose children are
/// now all ticked, in one read and one durable write. Returns the ids newly ticked: each
/// leaf, followed by those of its ancestors that the batch completes and that are not
/// listed yet.
///
/// Callers that tick from several threads or processes must serialise the calls (the
/// workflow does it under the state lock): this is a read-modify-write of one file.
pub(crate) fn tick_file_many(path: &Path, ids: &[String]) -> Result<Vec<String>, TasksError> {
    let text = read_text(path)?;
    let list = TaskList::parse(&text).map_err(|e| e.in_file(path))?;
    let leaves = list.leaf_indices(ids, path)?;
    tick_leaves(path, text, &list, &leaves)
}

/// [`tick_file_many`] of the leaves `tasks` (id, title as a run read them), each only
/// where the file still has that task under that id: a row whose id now names another
/// task (renumbered or retitled meanwhile), a parent, or no row at all, is not ticked
/// (reconcile matches titles at the next start). Returns the ids newly ticked and one
/// phrase per task left unticked. A file gone is [`TasksError::Deleted`].
pub(crate) fn tick_file_as_read(
    path: &Path,
    tasks: &[(String, String)],
) -> Result<(Vec<String>, Vec<String>), TasksError> {
    let text = match read_text(path) {
        Err(TasksError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TasksError::Deleted {
                path: path.to_path_buf(),
                ids: tasks
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        other => other?,
    };
    let list = TaskList::parse(&text).map_err(|e| e.in_file(path))?;
    let mut leaves = Vec::new();
    let mut left = Vec::new();
    for (id, title) in tasks {
        let was = crate::fmt::fold_whitespace(title);
        let shown = crate::fmt::one_line(title, 60);
        match list.index.get(id.as_str()) {
            None => left.push(format!("task {id} \"{shown}\": no task {id} any more")),
            Some(&i) if !list.children[i].is_empty() => {
                left.push(format!("task {id} \"{shown}\": task {id} has subtasks now"));
            }
            Some(&i) if crate::fmt::fold_whitespace(&list.tasks[i].title) != was => {
                left.push(format!(
                    "task {id} \"{shown}\": task {id} is \"{}\" now",
                    crate::fmt::one_line(&list.tasks[i].title, 60)
                ));
            }
            Some(&i) => {
                if !leaves.contains(&i) {
                    leaves.push(i);
                }
            }
        }
    }
    let ticked = if leaves.is_empty() {
        Vec::new()
    } else {
        tick_leaves(path, text, &list, &leaves)?
    };
    Ok((ticked, left))
}

/// Tick the leaves at `leaves` of `list` (parsed from `text`, read from `path`) and the
/// ancestors they complete, in one durable write.
fn tick_leaves(
    path: &Path,
    text: String,
    list: &TaskList,
    leaves: &[usize],
) -> Result<Vec<String>, TasksError> {
    let mut now_checked: HashSet<usize> = leaves.iter().copied().collect();
    let mut order: Vec<usize> = Vec::new();
    for &i in leaves {
        for p in list.ancestors_of(i) {
            let all = list.children[p]
                .iter()
                .all(|&c| list.tasks[c].checked || now_checked.contains(&c));
            if !all {
                break;
            }
            now_checked.insert(p);
        }
        for j in std::iter::once(i).chain(list.ancestors_of(i)) {
            if now_checked.contains(&j) && !list.tasks[j].checked && !order.contains(&j) {
                order.push(j);
            }
        }
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let mut bytes = text.into_bytes();
    for &j in &order {
        // The checkbox byte is an ASCII space; replacing it keeps the text valid UTF-8.
        bytes[list.tasks[j].checkbox_offset] = b'x';
    }
    crate::fs::write_durable(path, &bytes)?;
    Ok(order
        .into_iter()
        .map(|j| list.tasks[j].id.clone())
        .collect())
}

/// Untick leaves `ids` in the file at `path`, and every ticked ancestor of them (a parent
/// is ticked only while all its children are), in one durable write that changes only
/// those checkbox bytes. Returns the ids newly unticked: each leaf, followed by those of
/// its ticked ancestors not listed yet.
///
/// Serialise calls as for [`tick_file_many`].
pub(crate) fn untick_file_many(path: &Path, ids: &[String]) -> Result<Vec<String>, TasksError> {
    let text = read_text(path)?;
    let list = TaskList::parse(&text).map_err(|e| e.in_file(path))?;
    let leaves = list.leaf_indices(ids, path)?;
    let mut order: Vec<usize> = Vec::new();
    for &i in &leaves {
        for j in std::iter::once(i).chain(list.ancestors_of(i)) {
            if list.tasks[j].checked && !order.contains(&j) {
                order.push(j);
            }
        }
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    let mut bytes = text.into_bytes();
    for &j in &order {
        // The checkbox byte is an ASCII `x` or `X`; a space keeps the text valid UTF-8.
        bytes[list.tasks[j].checkbox_offset] = b' ';
    }
    crate::fs::write_durable(path, &bytes)?;
    Ok(order
        .into_iter()
        .map(|j| list.tasks[j].id.clone())
        .collect())
}

impl TaskList {
    /// The indices of the leaves `ids`; an unknown id or a parent is an error naming `path`.
    fn leaf_indices(&self, ids: &[String], path: &Path) -> Result<Vec<usize>, TasksError> {
        let mut leaves = Vec::with_capacity(ids.len());
        for id in ids {
            let &i = self
                .index
                .get(id.as_str())
                .ok_or_else(|| TasksError::NotFound { id: id.clone() }.in_file(path))?;
            if !self.children[i].is_empty() {
                return Err(TasksError::NotALeaf {
                    id: id.clone(),
                    line: self.tasks[i].line,
                }
                .in_file(path));
            }
            leaves.push(i);
        }
        Ok(leaves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# Implementation Plan

- [ ] 1. Set up the project
  - Create the folders
  - _Requirements: 1.1, 2_

- [ ] 1.1. Scaffold
  - _Verify: `test -d src`_
- [x] 10 Ten is not one
  - _Leverage: src/lib_utils.rs_
* [ ] 2. Models
  - [ ] 2.1 Types
    - _Depends: 1_
  - [ ] 2.2 Storage
    - _Depends: 2.1, 10_
    - _Verify: ``grep -q `x` f``_
- [ ] 3. After models
  - _Depends: 2_
"#;

    #[test]
    fn parses_ids_hierarchy_and_metadata() {
        let l = TaskList::parse(SAMPLE).unwrap();
        let ids: Vec<_> = l.tasks().iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1", "1.1", "10", "2", "2.1", "2.2", "3"]);
        let one = l.get("1").unwrap();
        assert_eq!(one.line, 3);
        assert_eq!(one.title, "Set up the project");
        assert_eq!(one.details, ["Create the folders"]);
        assert_eq!(one.requirements, ["1.1", "2"]);
        assert!(!l.is_leaf("1"));
        assert!(l.is_leaf("1.1") && l.is_leaf("10"));
        assert_eq!(l.parent("1.1").unwrap().id, "1");
        assert!(l.parent("10").is_none(), "10 is not a child of 1");
        assert_eq!(l.get("1.1").unwrap().verify.as_deref(), Some("test -d src"));
        assert!(l.get("10").unwrap().checked);
        assert_eq!(
            l.get("10").unwrap().leverage.as_deref(),
            Some("src/lib_utils.rs")
        );
        assert_eq!(
            l.get("2.2").unwrap().verify.as_deref(),
            Some("grep -q `x` f")
        );
        assert_eq!(l.get("2.2").unwrap().depends, ["2.1", "10"]);
        let kids: Vec<_> = l.children("2").iter().map(|t| t.id.clone()).collect();
        assert_eq!(kids, ["2.1", "2.2"]);
    }

    #[test]
    fn ids_compare_exactly() {
        let l = TaskList::parse(SAMPLE).unwrap();
        assert!(l.get("1.").is_none());
        assert!(l.get("01").is_none());
        let ticked = tick(SAMPLE, "1.1").unwrap();
        let after = TaskList::parse(&ticked).unwrap();
        assert!(after.get("1.1").unwrap().checked);
        assert!(!after.get("1").unwrap().checked);
        assert!(after.get("10").unwrap().checked, "was already ticked");
        let diff: Vec<_> = SAMPLE
            .bytes()
            .zip(ticked.bytes())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .collect();
        assert_eq!(diff.len(), 1);
        let line_of = SAMPLE[..diff[0].0].matches('\n').count() + 1;
        assert_eq!(line_of, 7);
    }

    #[test]
    fn parent_dependencies_expand_to_leaves_and_ready_follows_them() {
        let l = TaskList::parse(SAMPLE).unwrap();
        let deps = |id| -> Vec<String> {
            l.leaf_dependencies(id)
                .iter()
                .map(|t| t.id.clone())
                .collect()
        };
        assert_eq!(deps("2.1"), ["1.1"]);
        assert_eq!(deps("2.2"), ["2.1", "10"]);
        assert_eq!(deps("3"), ["2.1", "2.2"]);
        let ids = |v: Vec<&Task>| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        let mut done = HashSet::new();
        assert_eq!(ids(l.ready(&done)), ["1.1", "10"]);
        done.insert("1.1".to_owned());
        assert_eq!(ids(l.ready(&done)), ["10", "2.1"]);
        done.extend(["10".to_owned(), "2.1".to_owned()]);
        assert_eq!(ids(l.ready(&done)), ["2.2"]);
        assert_eq!(ids(l.leaf_order()), ["1.1", "10", "2.1", "2.2", "3"]);
        assert_eq!(l.progress(), (1, 5));
    }

    #[test]
    fn indentation_makes_a_child_when_ids_do_not() {
        let l = TaskList::parse("- [ ] 3. Outer\n  - [ ] 4. Inner\n- [ ] 5. Next\n").unwrap();
        assert_eq!(l.parent("4").unwrap().id, "3");
        assert!(l.parent("5").is_none());
        let l = TaskList::parse("- [ ] 4.1 A\n  - [ ] 4. B\n").unwrap();
        assert_eq!(l.parent("4.1").unwrap().id, "4");
        assert!(l.parent("4").is_none());
    }

    #[test]
    fn validation_errors_name_the_line() {
        let err = |text: &str| TaskList::parse(text).unwrap_err().to_string();
        let e = err("- [ ] 1. A\n- [ ] 2. B\n- [ ] 1. C\n");
        assert!(
            e.contains("line 3") && e.contains("duplicate") && e.contains("line 1"),
            "{e}"
        );
        let e = err("- [ ] 1. A\n  - _Depends: 7_\n");
        assert!(
            e.contains("line 1") && e.contains("unknown task `7`"),
            "{e}"
        );
        let e = err("- [ ] 1. A\n  - _Depends: 1_\n");
        assert!(e.contains("itself"), "{e}");
        let e = err("- [ ] 1. A\n- [ ] 1.1 B\n  - _Depends: 1_\n");
        assert!(e.contains("line 2") && e.contains("own parent"), "{e}");
        let e = err("- [ ] 1. A\n  - _Depends: 1.1_\n- [ ] 1.1 B\n");
        assert!(e.contains("own subtask"), "{e}");
        let e = err(
            "- [ ] 1. A\n  - _Depends: 3_\n- [ ] 2. B\n  - _Depends: 1_\n- [ ] 3. C\n  - _Depends: 2_\n",
        );
        assert!(e.contains("cycle 1 → 3 → 2 → 1"), "{e}");
        let e = err("- [ ] 1. A\n- [~] 2. B\n");
        assert!(e.contains("line 2") && e.contains("checkbox mark"), "{e}");
        let e = err("- [ ] Unnumbered\n");
        assert!(
            e.contains("line 1") && e.contains("without a task id"),
            "{e}"
        );
    }

    #[test]
    fn cycle_through_a_parent_is_found() {
        let e = TaskList::parse(
            "- [ ] 1. A\n- [ ] 1.1 A1\n  - _Depends: 2_\n- [ ] 2. B\n  - _Depends: 1_\n",
        )
        .unwrap_err();
        assert!(matches!(e, TasksError::Cycle { .. }), "{e}");
    }

    #[test]
    fn unnumbered_checklist_inside_a_task_is_detail_and_fences_are_ignored() {
        let text = "- [ ] 1. A\n  - [ ] check this\n  ```\n  - [ ] 9. not a task\n  _Verify: `no`_\n  ```\n";
        let l = TaskList::parse(text).unwrap();
        assert_eq!(l.tasks().len(), 1);
        assert!(l.get("1").unwrap().verify.is_none());
        assert_eq!(l.get("1").unwrap().details.len(), 5);
    }

    #[test]
    fn render_round_trips_through_parse() {
        let mut a = Task::new("1", "Models");
        a.details = vec!["Write the types".to_owned()];
        let mut a1 = Task::new("1.1", "Types");
        a1.requirements = vec!["1.2".to_owned(), "3".to_owned()];
        a1.leverage = Some("src/model_base.rs".to_owned());
        a1.verify = Some("grep -q `struct` src/m.rs".to_owned());
        let mut b = Task::new("10", "Ten");
        b.depends = vec!["1".to_owned()];
        b.checked = true;
        b.verify = Some("true".to_owned());
        let text = render(&[a.clone(), a1.clone(), b.clone()]);
        let l = TaskList::parse(&text).unwrap();
        for want in [&a, &a1, &b] {
            let got = l.get(&want.id).unwrap();
            assert_eq!(
                (&got.title, got.checked, &got.depends, &got.verify),
                (&want.title, want.checked, &want.depends, &want.verify)
            );
            assert_eq!(
                (&got.requirements, &got.leverage, &got.details),
                (&want.requirements, &want.leverage, &want.details)
            );
        }
        assert_eq!(l.parent("1.1").unwrap().id, "1");
    }

    #[test]
    fn unindented_metadata_still_belongs_to_its_task() {
        let l =
            TaskList::parse("- [ ] 1. A\n_Verify: `true`_\n\nSome prose.\n- [ ] 2. B\n").unwrap();
        assert_eq!(l.get("1").unwrap().verify.as_deref(), Some("true"));
        assert!(l.get("1").unwrap().details.is_empty());
    }

    #[test]
    fn crlf_and_bom_keep_offsets_right() {
        let text = "\u{feff}- [ ] 1. A\r\n- [ ] 2. B\r\n";
        let out = tick(text, "2").unwrap();
        assert_eq!(out, "\u{feff}- [ ] 1. A\r\n- [x] 2. B\r\n");
        let out = tick(text, "1").unwrap();
        assert_eq!(out, "\u{feff}- [x] 1. A\r\n- [ ] 2. B\r\n");
    }

    #[test]
    fn tick_unknown_id_and_untick() {
        assert!(matches!(
            tick("- [ ] 1. A\n", "1.0"),
            Err(TasksError::NotFound { .. })
        ));
        assert_eq!(
            set_checked("- [X] 1. A\n", "1", false).unwrap(),
            "- [ ] 1. A\n"
        );
        assert_eq!(tick("- [X] 1. A\n", "1").unwrap(), "- [X] 1. A\n");
    }

    #[test]
    fn tick_file_of_1_1_leaves_1_and_10_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        let text = "- [ ] 1. One\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n- [ ] 10. Ten\n";
        crate::fs::write(&path, text).unwrap();
        assert_eq!(tick_file(&path, "1.1").unwrap(), ["1.1"]);
        assert_eq!(
            crate::fs::read_to_string(&path).unwrap(),
            "- [ ] 1. One\n  - [x] 1.1 A\n  - [ ] 1.2 B\n- [ ] 10. Ten\n"
        );
    }

    #[test]
    fn tick_file_ticks_parents_when_all_children_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        let text = "- [ ] 1. P\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n- [ ] 2. Q\n";
        crate::fs::write(&path, text).unwrap();
        assert_eq!(tick_file(&path, "1.1").unwrap(), ["1.1"]);
        assert_eq!(tick_file(&path, "1.2").unwrap(), ["1.2", "1"]);
        assert_eq!(
            crate::fs::read_to_string(&path).unwrap(),
            "- [x] 1. P\n  - [x] 1.1 A\n  - [x] 1.2 B\n- [ ] 2. Q\n"
        );
        assert!(tick_file(&path, "1.2").unwrap().is_empty());
        let e = tick_file(&path, "1").unwrap_err().to_string();
        assert!(e.contains("tasks.md") && e.contains("subtasks"), "{e}");
        let e = tick_file(&path, "7").unwrap_err().to_string();
        assert!(e.contains("tasks.md") && e.contains("`7`"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_utf8_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        crate::fs::write(&path, b"- [ ] 1. A\n- [ ] 2. B \xff\n").unwrap();
        let e = tick_file(&path, "1").unwrap_err().to_string();
        assert!(
            e.contains("tasks.md") && e.contains("line 2,") && e.contains("UTF-8"),
            "{e}"
        );
        assert_eq!(
            crate::fs::read(&path).unwrap(),
            b"- [ ] 1. A\n- [ ] 2. B \xff\n",
            "nothing written"
        );
    }

    #[test]
    fn untick_file_unticks_the_leaf_and_its_ticked_ancestors_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        let text = "- [X] 1. P\r\n  - [x] 1.1 A\r\n  - [x] 1.2 B\r\n- [x] 10. Ten\r\n";
        crate::fs::write(&path, text).unwrap();
        assert_eq!(
            untick_file_many(&path, &["1.2".into()]).unwrap(),
            ["1.2", "1"]
        );
        assert_eq!(
            crate::fs::read_to_string(&path).unwrap(),
            "- [ ] 1. P\r\n  - [x] 1.1 A\r\n  - [ ] 1.2 B\r\n- [x] 10. Ten\r\n"
        );
        assert!(untick_file_many(&path, &["1.2".into()]).unwrap().is_empty());
        let e = untick_file_many(&path, &["1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tasks.md") && e.contains("subtasks"), "{e}");
    }

    #[test]
    fn an_unnumbered_checkbox_at_the_tasks_own_indent_is_an_error() {
        // Indented under a task it is part of its details (see the test above); at the
        // task's own level it is a task without an id.
        let e = TaskList::parse("- [ ] 1. A\n- [ ] unnumbered\n").unwrap_err();
        assert!(matches!(e, TasksError::MissingId { line: 2, .. }), "{e}");
        let e = TaskList::parse("  - [ ] 1. A\n  - [x] also unnumbered\n").unwrap_err();
        assert!(matches!(e, TasksError::MissingId { line: 2, .. }), "{e}");
        // A bare checkbox is a checkbox too.
        let e = TaskList::parse("- [ ]\n").unwrap_err();
        assert!(matches!(e, TasksError::MissingId { line: 1, .. }), "{e}");
        // A mark qw does not know, without an id, is text, at any level.
        let l = TaskList::parse("- [~] maybe later\n- [ ] 1. A\n- [?] ask\n").unwrap();
        assert_eq!(l.tasks().len(), 1);
        assert!(l.get("1").unwrap().details.is_empty());
    }

    #[test]
    fn text_that_only_looks_like_a_checkbox_is_text() {
        // An unclosed bracket, a blank that is no space, a bracket cut short: not
        // checkboxes, so neither a bad mark nor a task; outside a task they are ignored,
        // inside one they are details.
        let l = TaskList::parse("- [ok 1. Done\n- [\t] 2. Tab\n- [x\n- [\n").unwrap();
        assert!(l.tasks().is_empty());
        let l = TaskList::parse("- [ ] 1. A\n  - [ok 2. B\n  - [\n  - [x\n").unwrap();
        assert_eq!(l.tasks().len(), 1);
        assert_eq!(l.get("1").unwrap().details, ["[ok 2. B", "[", "[x"]);
    }

    #[test]
    fn an_id_with_an_empty_segment_is_no_id() {
        for text in ["- [ ] 1..2 A\n", "- [ ] .1 A\n", "- [ ] 1.. A\n"] {
            let e = TaskList::parse(text).unwrap_err();
            assert!(
                matches!(e, TasksError::MissingId { line: 1, .. }),
                "{text}: {e}"
            );
        }
        let l = TaskList::parse("- [ ] 1. A\n- [ ] 1.2. B\n").unwrap();
        assert_eq!(l.parent("1.2").unwrap().id, "1");
    }

    #[test]
    fn tabs_indent_four_columns() {
        let l = TaskList::parse("- [ ] 3. Outer\n\t- [ ] 4. Inner\n\t\t- Detail\n- [ ] 5. Next\n")
            .unwrap();
        assert_eq!(l.parent("4").unwrap().id, "3");
        assert_eq!(l.get("4").unwrap().details, ["Detail"]);
        assert!(l.parent("5").is_none());
        // Four spaces and a tab are the same depth: siblings, not parent and child.
        let l = TaskList::parse("- [ ] 1. A\n    - [ ] 2. B\n\t- [ ] 3. C\n").unwrap();
        assert_eq!(l.parent("2").unwrap().id, "1");
        assert_eq!(l.parent("3").unwrap().id, "1");
        let out = tick("\t- [ ] 1. A\n", "1").unwrap();
        assert_eq!(out, "\t- [x] 1. A\n");
    }

    #[test]
    fn a_nul_in_a_verify_command_is_refused_naming_its_line() {
        for (text, line, position) in [
            ("- [ ] 1. A\n  - _Verify: `echo a\0b`_\n", 2, 7),
            (
                "# T\n\n- [ ] 1. A\n- [ ] 2. B\n  - *Verify: \0true*\n",
                5,
                1,
            ),
            ("- [ ] 1. A\n_Verify: ``grep `x\0` f``_\n", 2, 8),
        ] {
            let err = TaskList::parse(text).unwrap_err();
            assert!(
                matches!(err, TasksError::NulInVerify { line: l, position: p, .. } if l == line && p == position),
                "{text:?}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!("line {line}: task `")),
                "{err}"
            );
        }
        // A NUL elsewhere (a title, a detail) is text the agent is shown escaped.
        assert!(TaskList::parse("- [ ] 1. A\0\n  - de\0tail\n").is_ok());
    }

    #[test]
    fn starred_metadata_and_an_unfenced_verify_command() {
        let l = TaskList::parse(
            "- [ ] 1. A\n- [ ] 2. B\n  - *Depends: 1*\n  - *Verify: cargo test models*\n  - _Verify: `true`_\n",
        )
        .unwrap();
        let b = l.get("2").unwrap();
        assert_eq!(b.depends, ["1"]);
        // The last `_Verify:_` wins; unfenced, the command is the value as written.
        assert_eq!(b.verify.as_deref(), Some("true"));
        let l = TaskList::parse("- [ ] 1. A\n  - *Verify: cargo test models*\n").unwrap();
        assert_eq!(
            l.get("1").unwrap().verify.as_deref(),
            Some("cargo test models")
        );
        // Other delimiters are no metadata: plain details.
        let l = TaskList::parse("- [ ] 1. A\n  - +Verify: no+\n  - Depends: 9\n").unwrap();
        let a = l.get("1").unwrap();
        assert!(a.verify.is_none() && a.depends.is_empty());
        assert_eq!(a.details, ["+Verify: no+", "Depends: 9"]);
        // `none` names no task.
        let l = TaskList::parse("- [ ] 1. A\n  - _Depends: none_\n").unwrap();
        assert!(l.get("1").unwrap().depends.is_empty());
    }

    #[test]
    fn a_fence_at_the_tasks_own_level_ends_its_details() {
        let l =
            TaskList::parse("- [ ] 1. A\n  - note\n```\n- [ ] 2. code\n```\n- [ ] 3. C\n").unwrap();
        let ids: Vec<_> = l.tasks().iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
        assert_eq!(l.get("1").unwrap().details, ["note"]);
        // Tildes fence too.
        let l = TaskList::parse("- [ ] 1. A\n  ~~~\n  - [ ] 2. not a task\n  ~~~\n").unwrap();
        assert_eq!(l.tasks().len(), 1);
        assert_eq!(l.get("1").unwrap().details.len(), 3);
    }

    #[test]
    fn a_dependency_named_twice_waits_once() {
        let l = TaskList::parse(
            "- [ ] 1. P\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n- [ ] 2. C\n  - _Depends: 1, 1.1_\n  - [ ] 2.1 D\n    - _Depends: 1.2_\n",
        )
        .unwrap();
        let deps: Vec<_> = l
            .leaf_dependencies("2.1")
            .iter()
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(deps, ["1.2", "1.1"]);
        assert!(
            l.leaf_dependencies("2").is_empty(),
            "parents wait for nothing themselves"
        );
    }

    #[test]
    fn indentation_never_makes_a_task_its_own_ancestor() {
        // `2.1` is a child of `2` by its id; `7` is indented under `2.1`, and `2` under
        // `7`. Taking that last indentation too would make the three each other's
        // ancestors: no leaf among them, and expanding `8`'s dependency on `7` to the
        // leaves under it would never end. The ids win; `2`'s indentation is ignored.
        let l = TaskList::parse(
            "- [ ] 2.1 X\n  - [ ] 7 Q\n    - [ ] 2 P\n- [ ] 8 Y\n  - _Depends: 7_\n",
        )
        .unwrap();
        assert_eq!(l.parent("2.1").unwrap().id, "2");
        assert_eq!(l.parent("7").unwrap().id, "2.1");
        assert!(l.parent("2").is_none());
        let leaves: Vec<_> = l.leaves().iter().map(|t| t.id.clone()).collect();
        assert_eq!(leaves, ["7", "8"]);
        let deps: Vec<_> = l
            .leaf_dependencies("8")
            .iter()
            .map(|t| t.id.clone())
            .collect();
        assert_eq!(deps, ["7"]);
    }

    #[test]
    fn untick_many_returns_each_id_once_and_only_those_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        let text = "- [ ] 1. P\n  - [x] 1.1 A\n  - [x] 1.2 B\n  - [ ] 1.3 C\n";
        crate::fs::write(&path, text).unwrap();
        assert_eq!(
            untick_file_many(&path, &["1.1".into(), "1.2".into(), "1.3".into()]).unwrap(),
            ["1.1", "1.2"]
        );
        assert_eq!(
            crate::fs::read_to_string(&path).unwrap(),
            "- [ ] 1. P\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n  - [ ] 1.3 C\n"
        );
    }

    #[test]
    fn tick_many_ticks_a_parent_the_batch_completes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        let text = "- [ ] 1. P\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n- [ ] 2. Q\n";
        crate::fs::write(&path, text).unwrap();
        assert_eq!(
            tick_file_many(&path, &["1.1".into(), "1.2".into(), "2".into()]).unwrap(),
            ["1.1", "1", "1.2", "2"]
        );
        assert_eq!(
            crate::fs::read_to_string(&path).unwrap(),
            "- [x] 1. P\n  - [x] 1.1 A\n  - [x] 1.2 B\n- [x] 2. Q\n"
        );
        let t = TaskList::parse(&crate::fs::read_to_string(&path).unwrap()).unwrap();
        let mut ticked: Vec<_> = t.checked_leaves().into_iter().collect();
        ticked.sort();
        assert_eq!(ticked, ["1.1", "1.2", "2"]);
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        /// A generated task: nesting depth, checked, bullet, trailing dot, detail lines.
        #[derive(Debug, Clone)]
        struct Gen {
            depth: usize,
            checked: bool,
            star: bool,
            dot: bool,
            details: Vec<String>,
            blank_after: bool,
        }

        fn gen_task() -> impl Strategy<Value = Gen> {
            (
                0usize..3,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                proptest::collection::vec("[a-z _`:.,]{0,20}", 0..3),
                any::<bool>(),
            )
                .prop_map(|(depth, checked, star, dot, details, blank_after)| Gen {
                    depth,
                    checked,
                    star,
                    dot,
                    details,
                    blank_after,
                })
        }

        /// Render generated tasks as tasks.md with hierarchical ids (depth can only grow
        /// by one level at a time, like a real outline).
        fn render(gens: &[Gen], crlf: bool) -> String {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut counters: Vec<usize> = Vec::new();
            let mut out = String::from("# Tasks");
            out.push_str(nl);
            for g in gens {
                let depth = g.depth.min(counters.len());
                counters.truncate(depth + 1);
                if counters.len() == depth {
                    counters.push(0);
                }
                counters[depth] += 1;
                let id = counters
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(".");
                let indent = "  ".repeat(depth);
                out.push_str(&format!(
                    "{indent}{} [{}] {id}{} Title {id}{nl}",
                    if g.star { '*' } else { '-' },
                    if g.checked { 'x' } else { ' ' },
                    if g.dot { "." } else { "" },
                ));
                for d in &g.details {
                    out.push_str(&format!("{indent}  - {d}{nl}"));
                }
                if g.blank_after {
                    out.push_str(nl);
                }
            }
            out
        }

        proptest! {
            #[test]
            fn ticking_a_leaf_changes_exactly_its_checkbox(
                gens in proptest::collection::vec(gen_task(), 1..25),
                crlf in any::<bool>(),
                pick in any::<proptest::sample::Index>(),
            ) {
                let text = render(&gens, crlf);
                let list = TaskList::parse(&text).unwrap();
                let leaves = list.leaves();
                let leaf = leaves[pick.index(leaves.len())];
                let out = tick(&text, &leaf.id).unwrap();
                prop_assert_eq!(out.len(), text.len());
                let diffs: Vec<usize> = text.bytes().zip(out.bytes()).enumerate()
                    .filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
                if leaf.checked {
                    prop_assert!(diffs.is_empty());
                } else {
                    prop_assert_eq!(diffs.len(), 1);
                    let at = diffs[0];
                    prop_assert_eq!(&text[at - 1..=at + 1], "[ ]");
                    prop_assert_eq!(out.as_bytes()[at], b'x');
                    let line = text[..at].matches('\n').count() + 1;
                    prop_assert_eq!(line, leaf.line);
                }
                let after = TaskList::parse(&out).unwrap();
                for t in list.tasks() {
                    let a = after.get(&t.id).unwrap();
                    prop_assert_eq!(a.checked, t.checked || t.id == leaf.id);
                    prop_assert_eq!(&a.details, &t.details);
                }
            }
        }
    }
}
