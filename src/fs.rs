//! File-system helpers whose errors always name the path (via `fs-err`), the one
//! durable-write function everything that must survive a crash goes through, the one
//! cross-process lock ([`LockedFile`]), and bounded reads and appends that touch only
//! regular files ([`read_regular`], [`append_regular`]).
//!
//! Nothing here knows about qw's file formats; callers pass bytes and name what a lock
//! protects.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub mod locked_file;
mod regular;

pub use locked_file::{Holder, LockError, LockTimeout, LockedFile, ProcessState};
pub use regular::{Bounded, append_regular, read_regular};

pub use fs_err::{
    File, OpenOptions, copy, create_dir_all, metadata, read, read_dir, read_to_string,
    remove_dir_all, remove_file, rename, symlink_metadata, write,
};

/// Write `bytes` to `path` so that after a crash the file holds either its old or its new
/// contents, never a mix: unique temp file in the same directory → write → fsync →
/// rename over `path` → fsync the directory.
///
/// The temp file is named `.<file>.tmp<random>` and removed if anything fails.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.tmp"))
        .tempfile_in(&dir)
        .map_err(|e| with_path(e, "create a temporary file in", &dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| with_path(e, "write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| with_path(e.error, "rename a temporary file over", path))?;
    sync_dir(&dir)
}

/// fsync a directory so a rename or create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|e| with_path(e, "open directory", dir))?;
    f.sync_all()
        .map_err(|e| with_path(e, "fsync directory", dir))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Wrap an I/O error so its message says what was being done and to which path.
pub fn with_path(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("failed to {action} `{}`: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_write_replaces_contents_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_durable(&path, b"one").unwrap();
        write_durable(&path, b"two").unwrap();
        assert_eq!(read_to_string(&path).unwrap(), "two");
        let names: Vec<_> = read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn durable_write_into_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("state.json");
        let err = write_durable(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
