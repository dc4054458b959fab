//! Reading and appending files that someone else may have planted: only regular files,
//! never a FIFO (which would block the open or the read forever), a device (`/dev/zero`
//! reads until memory runs out) or a symlink to one, and never more than a bound.
//!
//! Both functions check twice: `stat` before opening (so a device is not even opened:
//! opening some has effects), and `fstat` on what was opened (so a file swapped for a FIFO
//! in between is still refused). The open is non-blocking, so a FIFO swapped in cannot
//! hang it either.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::with_path;

/// What [`read_regular`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounded {
    /// The whole file, at most the bound.
    Whole(Vec<u8>),
    /// The file is bigger than the bound: its size and its first bytes (at most the
    /// bound). The rest was never read.
    TooBig {
        /// The file's size in bytes.
        len: u64,
        /// Its first bytes.
        head: Vec<u8>,
    },
}

/// Open the regular file at `path` for reading (through symlinks to regular files), the
/// one way qw opens a file it did not just create itself: checked before the open (a
/// device is not even opened) and after it (a file swapped for a FIFO in between is still
/// refused), and the open never blocks. A missing file is a `NotFound` error; anything
/// else than a regular file is an `InvalidInput` error naming the path and what it is.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let meta = std::fs::metadata(path).map_err(|e| with_path(e, "inspect", path))?;
    check_kind(path, &meta)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| with_path(e, "open", path))?;
    let meta = file.metadata().map_err(|e| with_path(e, "inspect", path))?;
    check_kind(path, &meta)?;
    Ok(file)
}

/// The last `max` bytes of the regular file at `path` ([`open_regular`]); empty when
/// there is no file. Only those bytes are read, however big the file.
pub fn read_tail_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = file
        .metadata()
        .map_err(|e| with_path(e, "inspect", path))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(|e| with_path(e, "seek in", path))?;
    let mut out = Vec::new();
    file.take(max)
        .read_to_end(&mut out)
        .map_err(|e| with_path(e, "read", path))?;
    Ok(out)
}

/// Read the regular file at `path` (through symlinks to regular files), at most `max`
/// bytes of it. A missing file is a `NotFound` error; anything else than a regular file is
/// an `InvalidInput` error naming the path and what it is.
pub fn read_regular(path: &Path, max: usize) -> io::Result<Bounded> {
    let file = open_regular(path)?;
    let meta = file.metadata().map_err(|e| with_path(e, "inspect", path))?;
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::with_capacity(max.min(64 * 1024));
    (&file)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| with_path(e, "read", path))?;
    if bytes.len() > max {
        bytes.truncate(max);
        // The file may have grown after the fstat: say at least what was seen.
        let len = meta.len().max(u64::try_from(max).unwrap_or(u64::MAX) + 1);
        return Ok(Bounded::TooBig { len, head: bytes });
    }
    Ok(Bounded::Whole(bytes))
}

/// [`read_regular`], insisting on the whole file: one bigger than `max` is an
/// `InvalidData` error naming its size and the bound (only the bound was read).
pub fn read_regular_whole(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    match read_regular(path, max)? {
        Bounded::Whole(bytes) => Ok(bytes),
        Bounded::TooBig { len, .. } => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "`{}` is {len} bytes, more than the {max} qw reads of such a file",
                path.display()
            ),
        )),
    }
}

/// [`read_regular_whole`] decoded as UTF-8. Bytes that are not UTF-8 are an
/// `InvalidData` error naming the path, the line and the byte offset of the first one.
pub fn read_regular_text(path: &Path, max: usize) -> io::Result<String> {
    let bytes = read_regular_whole(path, max)?;
    String::from_utf8(bytes).map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error()))
}

/// Where the first byte that is not UTF-8 sits, every number 1-based (as editors and the
/// JSON parser count): the one way qw names such a byte, so every message agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in bytes from the start of the line.
    pub column: usize,
    /// 1-based offset of the byte in the file.
    pub byte: usize,
}

impl Utf8Position {
    /// The position of `bytes[valid_up_to]`, the first byte that is not UTF-8
    /// ([`std::str::Utf8Error::valid_up_to`]).
    pub fn locate(bytes: &[u8], valid_up_to: usize) -> Utf8Position {
        let good = bytes.get(..valid_up_to).unwrap_or(bytes);
        Utf8Position {
            line: 1 + good.iter().filter(|&&b| b == b'\n').count(),
            column: 1 + good.iter().rev().take_while(|&&b| b != b'\n').count(),
            byte: good.len() + 1,
        }
    }
}

impl std::fmt::Display for Utf8Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {} (byte {} of the file)",
            self.line, self.column, self.byte
        )
    }
}

/// The error for bytes of `path` that are not UTF-8.
pub fn not_utf8(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> io::Error {
    let at = Utf8Position::locate(bytes, e.valid_up_to());
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "`{}` is not valid UTF-8 text at {at}; save it as UTF-8",
            path.display()
        ),
    )
}

/// True for the errors the functions here return when they refuse a file (not a regular
/// file, too big, not UTF-8) rather than failing to read it: bad input, not a broken disk.
pub fn is_refused(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
    )
}

/// Is there a file qw can read at `path`? `Ok(false)` when nothing is there, `Ok(true)` for
/// a readable regular file (through symlinks to one); anything else — a directory, a FIFO,
/// a device, a dangling symlink, a file qw may not read — is an `InvalidInput` error
/// naming the path and what is wrong, so a caller never takes it for a document that
/// "already exists". Nothing is read, and a FIFO is never opened.
pub fn check_regular(path: &Path) -> io::Result<bool> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(with_path(e, "inspect", path)),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if link.file_type().is_symlink() && e.kind() == io::ErrorKind::NotFound => {
            let target = std::fs::read_link(path)
                .map_or_else(|_| "?".to_owned(), |t| t.display().to_string());
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is a symbolic link to `{target}`, which does not exist; remove the link or create its target",
                    path.display()
                ),
            ));
        }
        Err(e) => return Err(refused(with_path(e, "inspect", path))),
    };
    check_kind(path, &meta)?;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is not readable ({e}); give it read permission (chmod u+r)",
                    path.display()
                ),
            ),
            _ => with_path(e, "open", path),
        })?;
    Ok(true)
}

/// `e` as a refusal (bad input), keeping its message.
fn refused(e: io::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Copy the regular file at `from` (through symlinks to regular files) to `to`, which
/// must not exist yet, and fsync the copy. Checked like [`read_regular`], so a FIFO or a
/// device is refused (`InvalidInput`, naming what it is) without blocking and without
/// anything being created. Returns the bytes copied.
pub fn copy_regular(from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = open_regular(from)?;
    let meta = src.metadata().map_err(|e| with_path(e, "inspect", from))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| with_path(e, "create", to))?;
    let n = io::copy(&mut src, &mut dst).map_err(|e| with_path(e, "copy into", to))?;
    let _ = dst.set_permissions(meta.permissions());
    dst.sync_all().map_err(|e| with_path(e, "fsync", to))?;
    Ok(n)
}

/// Append `bytes` to the regular file at `path` (created if missing) in one `write` to an
/// `O_APPEND` descriptor, then fsync it: concurrent appenders never interleave inside a
/// record, and the earlier contents are never read or rewritten. A symlink at `path` is
/// refused, never followed (`O_NOFOLLOW`): the files qw appends to live in `.claude/`,
/// where an agent could plant a link to `~/.bashrc` or a git hook.
pub fn append_regular(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = open_append(path)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| with_path(e, "append to", path))
}

/// Open the regular file at `path` for appending (created if missing), the one way qw
/// opens a file under `.claude/` to add to it (the daily log, a run's captured output,
/// the failed-suggestion record): never through a symlink (`O_NOFOLLOW`, refused naming
/// the link), never blocking (`O_NONBLOCK`: a FIFO planted there cannot hang the open),
/// and anything but a regular file is refused after the open, naming what it is, and so is
/// a file with more than one hard link (it would be someone else's file too).
pub fn open_append(path: &Path) -> io::Result<std::fs::File> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(symlink_refused(path)),
        Ok(meta) => check_kind(path, &meta)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, "inspect", path)),
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // Made a symlink between the check and the open.
            Some(nix::libc::ELOOP) => symlink_refused(path),
            _ => with_path(e, "open", path),
        })?;
    let meta = file.metadata().map_err(|e| with_path(e, "inspect", path))?;
    check_kind(path, &meta)?;
    check_single_link(path, &meta)?;
    Ok(file)
}

/// Refuse a file with more than one hard link: every file qw appends to is its own, made
/// by it in `.claude/` (or a run folder), so a second name means someone linked it to a
/// file elsewhere (`ln ~/.bashrc .claude/next_command.failed.txt`), and appending would
/// write there.
fn check_single_link(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let links = meta.nlink();
    if links <= 1 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` has {links} hard links: qw appends only to a file of its own, never to one linked to a file elsewhere (remove it; qw creates the file)",
            path.display()
        ),
    ))
}

/// The error for a symlink where qw appends: named, and refused like a special file.
fn symlink_refused(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is a symbolic link: qw does not write through it (remove it; qw creates the file)",
            path.display()
        ),
    )
}

/// Refuse anything but a regular file, naming what it is.
fn check_kind(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let what = kind_name(meta.file_type());
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` is {what}, not a regular file; qw reads and writes only regular files there",
            path.display()
        ),
    ))
}

/// What an entry is, in words (`a FIFO`, `a directory`, …), for messages.
pub fn kind_name(t: std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "neither a file nor a directory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_refuses_a_symlink_dangling_or_not_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        crate::fs::write(&target, b"keep\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = append_regular(&link, b"evil\n").unwrap_err();
        assert!(is_refused(&e), "{e}");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(crate::fs::read(&target).unwrap(), b"keep\n");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(is_refused(&append_regular(&dangling, b"x").unwrap_err()));
        assert!(!dir.path().join("nowhere").exists());
        let file = dir.path().join("file");
        append_regular(&file, b"a\n").unwrap();
        append_regular(&file, b"b\n").unwrap();
        assert_eq!(crate::fs::read(&file).unwrap(), b"a\nb\n");
    }

    #[test]
    fn reads_a_small_file_whole_and_a_big_one_only_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        crate::fs::write(&small, b"hello").unwrap();
        assert_eq!(
            read_regular(&small, 5).unwrap(),
            Bounded::Whole(b"hello".to_vec())
        );
        let big = dir.path().join("big");
        crate::fs::write(&big, vec![b'x'; 100_000]).unwrap();
        assert_eq!(
            read_regular(&big, 10).unwrap(),
            Bounded::TooBig {
                len: 100_000,
                head: vec![b'x'; 10]
            }
        );
        // Through a symlink to a regular file.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&small, &link).unwrap();
        assert_eq!(
            read_regular(&link, 100).unwrap(),
            Bounded::Whole(b"hello".to_vec())
        );
        let missing = read_regular(&dir.path().join("missing"), 10).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(missing.to_string().contains("missing"), "{missing}");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let to_fifo = dir.path().join("to-fifo");
        std::os::unix::fs::symlink(&fifo, &to_fifo).unwrap();
        let to_zero = dir.path().join("to-zero");
        std::os::unix::fs::symlink("/dev/zero", &to_zero).unwrap();
        for (path, what) in [
            (&fifo, "a FIFO"),
            (&to_fifo, "a FIFO"),
            (&to_zero, "a character device"),
            (&dir.path().to_path_buf(), "a directory"),
        ] {
            let err = read_regular(path, 4096).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains(what), "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            // Appends never follow a symlink at all, whatever it points to.
            let err = append_regular(path, b"x").unwrap_err();
            let want = if path.is_symlink() {
                "is a symbolic link"
            } else {
                what
            };
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn appends_keep_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        append_regular(&path, b"one\n").unwrap();
        append_regular(&path, b"two\n").unwrap();
        assert_eq!(crate::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn text_names_the_line_of_bytes_that_are_not_utf8_and_whole_refuses_too_big() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.md");
        crate::fs::write(&path, b"- [ ] 1. A\n- [ ] 2. B\n- [ ] 3. \xff\xfe\n").unwrap();
        let err = read_regular_text(&path, 1024).unwrap_err();
        assert!(is_refused(&err));
        let msg = err.to_string();
        assert!(msg.contains("tasks.md") && msg.contains("line 3"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        crate::fs::write(&path, "é".repeat(100)).unwrap();
        assert_eq!(read_regular_text(&path, 200).unwrap(), "é".repeat(100));
        let err = read_regular_whole(&path, 10).unwrap_err();
        assert!(is_refused(&err));
        assert!(err.to_string().contains("200 bytes"), "{err}");
    }

    #[test]
    fn copies_regular_files_and_refuses_special_ones_without_creating_anything() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        crate::fs::write(&src, b"data").unwrap();
        let dst = dir.path().join("dst");
        assert_eq!(copy_regular(&src, &dst).unwrap(), 4);
        assert_eq!(crate::fs::read(&dst).unwrap(), b"data");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (from, what) in [
            (&fifo, "a FIFO"),
            (&sock, "a socket"),
            (&zero, "a character device"),
        ] {
            let to = dir.path().join("copy");
            let err = copy_regular(from, &to).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
            assert!(!to.exists());
            let err = read_regular(from, 10).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
    }

    #[test]
    fn check_regular_accepts_only_a_readable_regular_file_and_names_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tasks.md");
        assert!(!check_regular(&file).unwrap(), "missing");
        crate::fs::write(&file, b"x").unwrap();
        assert!(check_regular(&file).unwrap());
        let link = dir.path().join("link.md");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check_regular(&link).unwrap(), "a link to a regular file");
        let sub = dir.path().join("design.md");
        crate::fs::create_dir_all(&sub).unwrap();
        let dangling = dir.path().join("requirements.md");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        for (path, what) in [(&sub, "is a directory"), (&dangling, "does not exist")] {
            let e = check_regular(path).unwrap_err();
            assert!(is_refused(&e), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(what),
                "{msg}"
            );
        }
    }
}
