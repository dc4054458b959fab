//! [`SettingsFile`]: the settings file as text plus its parsed top level, edited by
//! splicing only the values qw changes.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::typed::QwSettings;
use super::{SettingsError, splice};
use crate::jsontext::{self, Dialect};

/// What a file that does not exist yet (or holds only whitespace) is edited from.
const EMPTY: &str = "{}\n";

/// The settings file as read: its exact text and its parsed top level (keys in order; a
/// duplicate key's last value wins, as for every JSON reader). Numbers serde_json cannot
/// hold exactly appear in the map as `crate::jsontext` tags; the text keeps them verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsFile {
    path: PathBuf,
    /// The text after a BOM; `None` when there is no file (or only whitespace).
    text: Option<String>,
    /// The file started with a UTF-8 byte-order mark (kept on save).
    bom: bool,
    root: Map<String, Value>,
}

impl SettingsFile {
    /// Read `path`; a missing file is an empty object. Only a regular file of at most
    /// [`MAX_SETTINGS_BYTES`](super::MAX_SETTINGS_BYTES) is read: a FIFO, a device, a
    /// directory or a socket there is refused without blocking, as an error for which
    /// [`SettingsError::is_usage`] is true.
    ///
    /// A link that leads out of the project (the folder holding the file's `.claude/`) is
    /// refused the same way, naming where it leads: the file is the project's, and a
    /// committed `settings.local.json -> ~/.aws/credentials` is not read.
    pub fn load(path: &Path) -> Result<SettingsFile, SettingsError> {
        let root = crate::fs::parent_dir(&crate::fs::parent_dir(path));
        crate::fs::check_in_project(&root, path)?;
        match crate::fs::read_regular_whole(path, super::MAX_SETTINGS_BYTES) {
            Ok(bytes) => Self::parse_bytes(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::absent(path)),
            // A symlink loop is the file's fault, not the disk's: exit 2 saying what to do.
            Err(e) => match crate::fs::resolve_symlinks(path) {
                Err(looped) => Err(SettingsError::Edit {
                    path: path.to_path_buf(),
                    reason: format!("{looped}; remove the link"),
                }),
                Ok(_) => Err(e.into()),
            },
        }
    }

    /// Parse file contents; `path` is kept for messages and [`save`](Self::save).
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<SettingsFile, SettingsError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = crate::fs::Utf8Position::locate(bytes, e.valid_up_to());
            SettingsError::Corrupt {
                path: path.to_path_buf(),
                line: at.line,
                column: at.column,
                message: format!("not UTF-8 text (byte {} of the file)", at.byte),
            }
        })?;
        Self::parse(path, text)
    }

    /// Parse settings text (a leading BOM is allowed).
    pub fn parse(path: &Path, text: &str) -> Result<SettingsFile, SettingsError> {
        let body = jsontext::strip_bom(text);
        let bom = body.len() != text.len();
        if body.trim().is_empty() {
            return Ok(SettingsFile {
                bom,
                ..Self::absent(path)
            });
        }
        let root = parse_root(path, body)?;
        Ok(SettingsFile {
            path: path.to_path_buf(),
            text: Some(body.to_owned()),
            bom,
            root,
        })
    }

    /// No file at `path` (yet): an empty object.
    pub fn absent(path: &Path) -> SettingsFile {
        SettingsFile {
            path: path.to_path_buf(),
            text: None,
            bom: false,
            root: Map::new(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text as it is now (after a BOM; `{}` when there is none yet).
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        self.text.as_deref().unwrap_or(EMPTY)
    }

    /// The file existed with some content when read.
    pub fn has_content(&self) -> bool {
        self.text.is_some()
    }

    /// The parsed top level (for order-preserving edits; typed reads use [`typed`](Self::typed)).
    pub fn root(&self) -> &Map<String, Value> {
        &self.root
    }

    /// qw's own keys, typed and checked.
    pub fn typed(&self) -> Result<QwSettings, SettingsError> {
        QwSettings::from_root(&self.path, &self.root)
    }

    /// Set the member at `keys` (creating objects on the way) to `value`, changing no
    /// other byte of the file.
    pub fn set(&mut self, keys: &[&str], value: Value) -> Result<(), SettingsError> {
        let text = self.text.as_deref().unwrap_or(EMPTY);
        let edited =
            splice::set(text, keys, &value).map_err(|reason| self.edit_error(keys, reason))?;
        self.replace_text(edited)
    }

    /// Remove the member at `keys` (every duplicate of it); false when there was none.
    pub fn remove(&mut self, keys: &[&str]) -> Result<bool, SettingsError> {
        let Some(text) = self.text.as_deref() else {
            return Ok(false);
        };
        match splice::remove(text, keys).map_err(|reason| self.edit_error(keys, reason))? {
            Some(edited) => self.replace_text(edited).map(|()| true),
            None => Ok(false),
        }
    }

    fn edit_error(&self, keys: &[&str], reason: String) -> SettingsError {
        if reason.starts_with('`') {
            // A member on the way is not an object: the user's value is at fault.
            let key = reason.split('`').nth(1).unwrap_or_default().to_owned();
            let value = lookup(&self.root, &key)
                .map(jsontext::display)
                .unwrap_or_default();
            return SettingsError::BadValue {
                path: self.path.clone(),
                key,
                value,
                reason: "expected a JSON object".into(),
            };
        }
        SettingsError::Edit {
            path: self.path.clone(),
            reason: format!("{reason} (setting `{}`)", keys.join(".")),
        }
    }

    /// Adopt edited text, checking that it still parses (an edit never writes a file that
    /// is not JSON).
    fn replace_text(&mut self, text: String) -> Result<(), SettingsError> {
        self.root = parse_root(&self.path, &text).map_err(|e| SettingsError::Edit {
            path: self.path.clone(),
            reason: format!("the edited text would not parse ({e})"),
        })?;
        self.text = Some(text);
        Ok(())
    }

    /// Write the file back durably (through a symlink, keeping its mode).
    pub fn save(&self) -> Result<(), SettingsError> {
        let text = self.text.as_deref().unwrap_or(EMPTY);
        let mut bytes = Vec::with_capacity(text.len() + 3);
        if self.bom {
            bytes.extend_from_slice(jsontext::BOM.to_string().as_bytes());
        }
        bytes.extend_from_slice(text.as_bytes());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fs::create_dir_all(dir)?;
        }
        self.check_writable()?;
        crate::fs::write_durable(&self.path, &bytes)?;
        Ok(())
    }

    /// Refuse, as settings the command will not touch (exit 2, saying what to do), a file
    /// qw cannot replace because of what the user made of it: read-only, a symlink loop,
    /// or a link whose target's folder does not exist. A failing disk stays an I/O error.
    fn check_writable(&self) -> Result<(), SettingsError> {
        let refuse = |reason: String| SettingsError::Edit {
            path: self.path.clone(),
            reason,
        };
        let target = crate::fs::resolve_symlinks(&self.path)
            .map_err(|e| refuse(format!("{e}; remove the link")))?;
        match std::fs::metadata(&target) {
            Ok(meta) => {
                use std::os::unix::fs::PermissionsExt as _;
                let writable = meta.permissions().mode() & 0o222 != 0
                    && nix::unistd::access(&target, nix::unistd::AccessFlags::W_OK).is_ok();
                if meta.is_file() && !writable {
                    return Err(refuse(format!(
                        "`{}` is read-only (mode {:04o}); make it writable (`chmod u+w`)",
                        target.display(),
                        meta.permissions().mode() & 0o7777
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && target != self.path => {
                if !crate::fs::parent_dir(&target).is_dir() {
                    return Err(refuse(format!(
                        "it is a symbolic link to `{}`, whose folder does not exist; create the folder or remove the link",
                        target.display()
                    )));
                }
            }
            Err(_) => {}
        }
        Ok(())
    }
}

/// The value at a dotted key of `root`.
fn lookup<'a>(root: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut v = root.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

fn parse_root(path: &Path, text: &str) -> Result<Map<String, Value>, SettingsError> {
    let tagged = jsontext::tag_numbers(text, Dialect::Json);
    match serde_json::from_str::<Value>(&tagged) {
        Ok(Value::Object(root)) => Ok(root),
        Ok(_) => Err(SettingsError::NotAnObject {
            path: path.to_path_buf(),
        }),
        Err(e) => {
            let why = jsontext::refusal(text, Dialect::Json, &e);
            Err(SettingsError::Corrupt {
                path: path.to_path_buf(),
                line: why.line,
                column: why.column,
                message: why.message,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("s.json")
    }

    #[test]
    fn corrupt_settings_report_line_and_column() {
        for (text, line) in [
            ("{\n  \"a\": 1,\n  oops\n}", 3),
            ("{\n  // a comment\n  \"a\": 1\n}", 2),
            ("{\"a\": NaN}", 1),
            ("{\"a\": 1,}", 1),
        ] {
            match SettingsFile::parse(p(), text).unwrap_err() {
                SettingsError::Corrupt { line: l, .. } => assert_eq!(l, line, "{text}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        let err = SettingsFile::parse_bytes(p(), b"{\n \"a\": \"\xff\"}").unwrap_err();
        assert!(
            matches!(err, SettingsError::Corrupt { line: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            SettingsFile::parse(p(), "[1]").unwrap_err(),
            SettingsError::NotAnObject { .. }
        ));
    }

    #[test]
    fn keeps_key_order_and_reads_numbers_json_allows() {
        let text = "\u{feff}{\"z\": 1, \"a\": {\"y\": 2, \"b\": 3}, \"m\": [1e400, 12345678901234567890123]}";
        let s = SettingsFile::parse(p(), text).unwrap();
        let keys: Vec<_> = s.root().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert!(s.bom);
    }

    #[test]
    fn edits_keep_every_other_byte() {
        let text = "{\r\n  \"big\": 12345678901234567890123,\r\n  \"price\": 2.50,\r\n  \"dup\": 1,\r\n  \"dup\": 2\r\n}";
        let mut s = SettingsFile::parse(p(), text).unwrap();
        s.set(&["quantumwala", "keep_runs"], json!(5)).unwrap();
        assert_eq!(
            s.text.as_deref().unwrap(),
            "{\r\n  \"big\": 12345678901234567890123,\r\n  \"price\": 2.50,\r\n  \"dup\": 1,\r\n  \"dup\": 2,\r\n  \"quantumwala\": {\r\n    \"keep_runs\": 5\r\n  }\r\n}"
        );
        assert!(s.remove(&["quantumwala"]).unwrap());
        assert_eq!(s.text.as_deref().unwrap(), text);
        assert!(!s.remove(&["quantumwala"]).unwrap());
    }

    #[test]
    fn editing_through_a_non_object_names_the_key() {
        let mut s = SettingsFile::parse(p(), r#"{"quantumwala": [1, 2.50]}"#).unwrap();
        let err = s
            .set(&["quantumwala", "x"], json!(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`quantumwala` = [1,2.5]") && err.contains("s.json"),
            "{err}"
        );
    }

    #[test]
    fn a_new_file_is_pretty() {
        let mut s = SettingsFile::load(Path::new("/nonexistent/qw/settings.json")).unwrap();
        assert!(!s.has_content());
        s.set(&["development_mode", "enabled"], json!(true))
            .unwrap();
        assert_eq!(
            s.text.as_deref().unwrap(),
            "{\n  \"development_mode\": {\n    \"enabled\": true\n  }\n}\n"
        );
    }
}
