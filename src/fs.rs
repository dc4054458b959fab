//! File-system helpers whose errors always name the path (via `fs-err`), the one
//! durable-write function everything that must survive a crash goes through, the one
//! cross-process lock ([`LockedFile`]), and bounded reads and appends that touch only
//! regular files ([`read_regular`], [`append_regular`]). A durable write replaces a file's
//! contents and nothing else: it writes through symlinks and keeps the mode (and owner
//! where allowed) of what it replaces, and refuses read-only and special files.
//!
//! Nothing here knows about qw's file formats; callers pass bytes and name what a lock
//! protects.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod confined;
pub(crate) mod locked_file;
mod nofollow;
mod regular;

pub use confined::check_in_project;
pub use locked_file::{
    Holder, LockError, LockOptions, LockTimeout, LockedFile, Peek, ProcessState, process_state,
};
pub use nofollow::{Entry, NoFollowDir, linked_component, linked_dir_refused, not_a_dir_component};
pub use regular::{
    Bounded, Utf8Position, append_regular, check_regular, copy_regular, is_refused, kind_name,
    not_utf8, open_append, open_regular, read_regular, read_regular_text, read_regular_whole,
    read_tail_regular,
};

pub use fs_err::{
    File, OpenOptions, copy, create_dir_all, metadata, read, read_dir, read_to_string, remove_dir,
    remove_dir_all, remove_file, rename, symlink_metadata, write,
};

/// Write `bytes` to `path` so that after a crash the file holds either its old or its new
/// contents, never a mix: unique temp file in the same directory → write → fsync →
/// rename over `path` → fsync the directory.
///
/// A rewrite replaces the file's contents and nothing else about it:
/// - a symlink (absolute or relative, chains too) is written through: its target is
///   replaced and the link stays a link;
/// - the file's permission bits are kept, and its owner and group where this process may
///   set them; a new file gets `0666` minus the umask, as `File::create` would;
/// - a read-only file (no write bit, or not writable by this user) is refused with an error
///   naming it, and so is anything that is not a regular file (a FIFO, a device): nothing
///   is written.
///
/// - a file with more than one name (hard links: `ln state.json ~/keep.json`) is written
///   in place instead, so every name still shows the same file ([`write_in_place`]).
///
/// The temp file is named `.<file>.tmp<random>` and removed if anything fails.
pub fn write_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let target = resolve_symlinks(path)?;
    let existing = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(with_path(e, "inspect", &target)),
    };
    if let Some(meta) = existing.as_ref().filter(|m| m.is_file() && m.nlink() > 1) {
        check_replaceable(&target, meta)?;
        return write_in_place(&target, meta, bytes);
    }
    replace_durably(&target, existing.as_ref(), bytes)
}

/// Rewrite the hard-linked regular file `target` (as `meta` saw it) in place: a rename
/// would give this name a new file and leave the other names holding the old contents.
/// The old contents are first copied beside it (`.<file>.before-write<random>`, synced),
/// then the new ones written over the file from its start, the file cut to their length
/// and synced, and the copy removed. Not atomic for a reader that looks mid-write (the
/// price of keeping the link; qw's writers hold their lock): a write that fails puts the
/// old contents back, and a crash in the middle leaves the copy to recover from.
fn write_in_place(target: &Path, meta: &std::fs::Metadata, bytes: &[u8]) -> io::Result<()> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(target)
        .map_err(|e| with_path(e, "open", target))?;
    let now = file
        .metadata()
        .map_err(|e| with_path(e, "inspect", target))?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) || !now.is_file() {
        return Err(io::Error::other(format!(
            "`{}` was replaced while qw was writing it; nothing was written, run the command again",
            target.display()
        )));
    }
    let mut old = Vec::new();
    (&file)
        .read_to_end(&mut old)
        .map_err(|e| with_path(e, "read", target))?;
    let dir = parent_dir(target);
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let mut copy = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.before-write"))
        .tempfile_in(&dir)
        .map_err(|e| with_path(e, "create a temporary file in", &dir))?;
    copy.write_all(&old)
        .and_then(|()| copy.as_file().sync_all())
        .map_err(|e| with_path(e, "write", copy.path()))?;
    let put = |contents: &[u8]| {
        file.write_all_at(contents, 0)
            .and_then(|()| file.set_len(u64::try_from(contents.len()).unwrap_or(u64::MAX)))
            .and_then(|()| file.sync_all())
    };
    match put(bytes) {
        Ok(()) => {
            drop(copy);
            Ok(())
        }
        Err(e) if put(&old).is_ok() => Err(with_path(
            e,
            "write (its old contents were put back)",
            target,
        )),
        Err(e) => {
            let kept = copy
                .into_temp_path()
                .keep()
                .unwrap_or_else(|_| PathBuf::from("?"));
            Err(io::Error::new(
                e.kind(),
                format!(
                    "failed to write `{}` in place: {e}; its old contents are in `{}`",
                    target.display(),
                    kept.display()
                ),
            ))
        }
    }
}

/// [`write_durable`] for a file qw generates (a report, a suggestion, a backup, a run's
/// files): a symlink at `path` is never followed — the new file is renamed over the link,
/// which is gone afterwards and its target untouched. `.claude/` is writable by every agent
/// and often committed, so a link there could otherwise point qw's output at `~/.bashrc`.
/// A regular file is replaced as [`write_durable`] replaces it (mode kept, read-only
/// refused); a directory, FIFO or device is refused.
pub fn write_generated(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => None,
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(with_path(e, "inspect", path)),
    };
    replace_durably(path, existing.as_ref(), bytes)
}

/// Write `bytes` to a temp file beside `target` and rename it over `target` (whatever
/// entry is there), keeping the mode and owner of `existing`, the regular file replaced.
fn replace_durably(
    target: &Path,
    existing: Option<&std::fs::Metadata>,
    bytes: &[u8],
) -> io::Result<()> {
    if let Some(meta) = existing {
        check_replaceable(target, meta)?;
    }
    let dir = parent_dir(target);
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}.tmp"))
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .map_err(|e| with_path(e, "create a temporary file in", &dir))?;
    if let Some(meta) = existing {
        keep_owner_and_mode(tmp.as_file(), meta)
            .map_err(|e| with_path(e, "set the mode of", tmp.path()))?;
    }
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| with_path(e, "write", tmp.path()))?;
    tmp.persist(target)
        .map_err(|e| with_path(e.error, "rename a temporary file over", target))?;
    sync_dir(&dir)
}

/// Catch SIGXFSZ with a handler that does nothing, so a write past the file-size limit
/// (`ulimit -f`) fails with `EFBIG` — which every write path reports naming the file —
/// instead of killing qw without a word. A handler, not `SIG_IGN`: an ignored signal
/// stays ignored in the programs qw starts, a caught one is reset to the default by
/// `execve`, so they meet the limit as they would without qw.
pub fn report_file_size_limit() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, seen);
}

/// The file `path` names after following every symlink (`path` itself when it is not a
/// symlink, or when the chain ends at a file that does not exist yet).
pub fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    // As the kernel's own limit on a chain (MAXSYMLINKS).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)
                    .map_err(|e| with_path(e, "read the symlink", &current))?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent_dir(&current).join(link)
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(with_path(e, "inspect", &current)),
        }
    }
    Err(io::Error::other(format!(
        "failed to follow `{}`: too many levels of symbolic links",
        path.display()
    )))
}

/// Refuse to replace what the user has not let us write, or what is not a plain file.
fn check_replaceable(target: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{}` is not a regular file; qw will not replace it",
                target.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    let writable =
        mode & 0o222 != 0 && nix::unistd::access(target, nix::unistd::AccessFlags::W_OK).is_ok();
    if !writable {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "`{}` is read-only (mode {mode:04o}); qw left it unchanged — make it writable (`chmod u+w`) to let qw update it",
                target.display()
            ),
        ));
    }
    Ok(())
}

/// Give the new file the old one's owner (where allowed) and permission bits. The owner
/// goes first: changing it may clear set-id bits.
fn keep_owner_and_mode(file: &std::fs::File, old: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let new = file.metadata()?;
    if (new.uid(), new.gid()) != (old.uid(), old.gid()) {
        // Only root may give a file away; anyone may pick one of their own groups.
        // Failing both leaves the file ours: the contents matter more than the owner.
        if std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).is_err() {
            let _ = std::os::unix::fs::fchown(file, None, Some(old.gid()));
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(
        old.permissions().mode() & 0o7777,
    ))
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
    use std::os::unix::fs::FileTypeExt;

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
    fn durable_write_keeps_hard_links_longer_and_shorter_and_through_a_symlink() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let other = dir.path().join("keep.json");
        write(&path, b"old contents").unwrap();
        std::fs::hard_link(&path, &other).unwrap();
        let ino = metadata(&path).unwrap().ino();
        for text in ["a much longer new text than before", "short", ""] {
            write_durable(&path, text.as_bytes()).unwrap();
            assert_eq!(read_to_string(&other).unwrap(), text, "the other name");
            assert_eq!(metadata(&path).unwrap().ino(), ino, "the same file");
        }
        // Through a symlink to one of the names: its target is written in place too.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&other, &link).unwrap();
        write_durable(&link, b"via link").unwrap();
        assert_eq!(read_to_string(&path).unwrap(), "via link");
        assert!(symlink_metadata(&link).unwrap().file_type().is_symlink());
        let mut names: Vec<_> = read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["keep.json", "link.json", "settings.json"],
            "no copy left"
        );
        // A read-only linked file is refused as any read-only file is.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        if nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_err() {
            assert!(write_durable(&path, b"no").is_err());
            assert_eq!(read_to_string(&other).unwrap(), "via link");
        }
    }

    fn mode(p: &Path) -> u32 {
        metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn durable_write_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        for m in [0o644, 0o664, 0o600, 0o640, 0o755, 0o4755] {
            write(&path, b"old").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            write_durable(&path, b"new").unwrap();
            assert_eq!(mode(&path), m, "{m:o}");
            assert_eq!(read_to_string(&path).unwrap(), "new");
        }
    }

    #[test]
    fn durable_write_of_a_new_file_follows_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.json");
        write_durable(&path, b"x").unwrap();
        let umask = {
            let probe = dir.path().join("probe");
            File::create(&probe).unwrap();
            mode(&probe)
        };
        assert_eq!(mode(&path), umask);
    }

    #[test]
    fn durable_write_keeps_the_owner() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        write(&path, b"old").unwrap();
        // Only root may give a file away; elsewhere the owner is ours anyway.
        if std::os::unix::fs::chown(&path, Some(4242), Some(4343)).is_ok() {
            write_durable(&path, b"new").unwrap();
            let m = metadata(&path).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343));
        }
    }

    #[test]
    fn durable_write_goes_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("dotfiles");
        create_dir_all(&real_dir).unwrap();
        let target = real_dir.join("settings.json");
        write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let abs = dir.path().join("abs.json");
        std::os::unix::fs::symlink(&target, &abs).unwrap();
        let rel = dir.path().join("rel.json");
        std::os::unix::fs::symlink("dotfiles/settings.json", &rel).unwrap();
        let chain = dir.path().join("chain.json");
        std::os::unix::fs::symlink("rel.json", &chain).unwrap();
        for (link, text) in [(&abs, "one"), (&rel, "two"), (&chain, "three")] {
            write_durable(link, text.as_bytes()).unwrap();
            assert!(symlink_metadata(link).unwrap().file_type().is_symlink());
            assert_eq!(read_to_string(&target).unwrap(), text);
            assert_eq!(mode(&target), 0o640);
        }
        let names: Vec<_> = read_dir(&real_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("settings.json")]);
        // A dangling link is written through too: its target is created.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("dotfiles/later.json", &dangling).unwrap();
        write_durable(&dangling, b"four").unwrap();
        assert_eq!(read_to_string(real_dir.join("later.json")).unwrap(), "four");
        // A loop is an error naming the path.
        let a = dir.path().join("a");
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let err = write_durable(&a, b"x").unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[test]
    fn read_only_and_special_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        write(&path, b"precious").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let err = write_durable(&path, b"new").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            err.to_string().contains("read-only") && err.to_string().contains("tasks.md"),
            "{err}"
        );
        assert_eq!(read_to_string(&path).unwrap(), "precious");
        assert_eq!(mode(&path), 0o444);
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = write_durable(&fifo, b"x").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let names = read_dir(dir.path()).unwrap().count();
        assert_eq!(names, 2, "no temp file left behind");
    }

    #[test]
    fn durable_write_into_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("state.json");
        let err = write_durable(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
