//! Directories qw keeps its own files in (`.claude/runs/`, `.claude/logs/`,
//! `.claude/backups/…`), reached without following a symbolic link in any component
//! below a base directory, and the one way qw deletes there.
//!
//! A repository can commit a symlink at any path (`.claude/runs -> ../..`); a reader, a
//! writer or, worst, a deleter that walked through it would work on whatever it points
//! to. [`linked_component`] finds such a link by name (for a check before a command
//! starts); [`NoFollowDir`] opens the directory component by component with
//! `O_NOFOLLOW | O_DIRECTORY` relative to the one before (`openat`), so a link swapped in
//! after a check is still never followed, and every later operation goes through the
//! opened directory (`/proc/self/fd/N/…` on Linux) rather than through the path again.
//!
//! Must not: know which directories are qw's or what the names in them mean; callers
//! decide what may be deleted.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::with_path;

/// The first component of `rel` below `base` that is a symbolic link, with what it points
/// to (`base` itself may be one: it is followed). `None` when there is no link, also when
/// a component is missing (nothing below a missing one can be a link).
pub fn linked_component(base: &Path, rel: &Path) -> io::Result<Option<(PathBuf, PathBuf)>> {
    let mut at = base.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a plain relative path", rel.display()),
            ));
        };
        at.push(name);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&at).unwrap_or_else(|_| PathBuf::from("?"));
                return Ok(Some((at, target)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(with_path(e, "inspect", &at)),
        }
    }
    Ok(None)
}

/// The first component of `rel` below `base` that is there but is neither a directory nor
/// a symbolic link (a FIFO, a file, a socket where qw keeps a folder of its own), with the
/// error that names it and what it is (`InvalidInput`, so callers map it to bad input).
/// `None` when every component is a directory, a link ([`linked_component`] finds those)
/// or missing.
pub fn not_a_dir_component(base: &Path, rel: &Path) -> io::Result<Option<io::Error>> {
    let mut at = base.to_path_buf();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Ok(None);
        };
        at.push(name);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Ok(None),
            Ok(m) => return Ok(Some(not_a_dir(&at, m.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(with_path(e, "inspect", &at)),
        }
    }
    Ok(None)
}

/// The error for `path`, which is `kind` where qw keeps a directory of its own.
fn not_a_dir(path: &Path, kind: std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` is {}, not a directory: qw keeps its own files there; move it away (`mv {} {}.aside`) and qw recreates the directory",
            path.display(),
            super::kind_name(kind),
            path.display(),
            path.display()
        ),
    )
}

/// The error for a symbolic link where qw keeps a directory of its own: names the link and
/// its target, and says what to do. `InvalidInput`, so callers map it to bad input.
pub fn linked_dir_refused(link: &Path, target: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "`{}` is a symbolic link (to `{}`): qw keeps its own files there and never reads, writes or deletes through a link; remove the link (`rm {}`) and qw recreates the directory",
            link.display(),
            target.display(),
            link.display()
        ),
    )
}

/// A directory opened without following a link in any component below its base.
#[derive(Debug)]
pub struct NoFollowDir {
    fd: OwnedFd,
    shown: PathBuf,
}

/// One entry of a [`NoFollowDir`], typed without following it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name in the directory.
    pub name: OsString,
    /// Its own type (a symlink is a symlink).
    pub file_type: std::fs::FileType,
    /// Its modification time (of the entry itself, not of a link's target).
    pub modified: Option<std::time::SystemTime>,
}

impl NoFollowDir {
    /// Open `base/rel`: `base` as it is (it may be a link), then each component of `rel`
    /// with `O_NOFOLLOW | O_DIRECTORY` relative to the one before. `Ok(None)` when a
    /// component is missing; a component that is a symbolic link is an `InvalidInput`
    /// error naming it ([`linked_dir_refused`]); one that is not a directory is an
    /// `InvalidInput` error too.
    pub fn open(base: &Path, rel: &Path) -> io::Result<Option<NoFollowDir>> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut fd = match nix::fcntl::open(base, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(with_path(e.into(), "open the directory", base)),
        };
        let mut shown = base.to_path_buf();
        for c in rel.components() {
            let Component::Normal(name) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("`{}` is not a plain relative path", rel.display()),
                ));
            };
            shown.push(name);
            fd = match nix::fcntl::openat(&fd, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
                Ok(next) => next,
                Err(nix::errno::Errno::ENOENT) => return Ok(None),
                Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                    return Err(not_a_plain_dir(&fd, name, &shown));
                }
                Err(e) => return Err(with_path(e.into(), "open the directory", &shown)),
            };
        }
        Ok(Some(NoFollowDir { fd, shown }))
    }

    /// [`NoFollowDir::open`], creating `base` (as `mkdir -p`, through links) and the
    /// missing components of `rel` (mode 0777 minus the umask); a component of `rel` that
    /// is a link is refused, never followed or replaced.
    pub fn create(base: &Path, rel: &Path) -> io::Result<NoFollowDir> {
        super::create_dir_all(base)?;
        let mut done = PathBuf::new();
        for c in rel.components() {
            done.push(c);
            if let Some(dir) = NoFollowDir::open(base, &done)? {
                drop(dir);
                continue;
            }
            let parent = done.parent().unwrap_or(Path::new(""));
            let Some(up) = NoFollowDir::open(base, parent)? else {
                return Err(with_path(
                    io::ErrorKind::NotFound.into(),
                    "open the directory",
                    &base.join(parent),
                ));
            };
            let name = done.file_name().unwrap_or_default();
            match nix::sys::stat::mkdirat(&up.fd, name, Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(with_path(
                        e.into(),
                        "create the directory",
                        &base.join(&done),
                    ));
                }
            }
        }
        NoFollowDir::open(base, rel)?.ok_or_else(|| {
            with_path(
                io::ErrorKind::NotFound.into(),
                "open the directory",
                &base.join(rel),
            )
        })
    }

    /// The directory's path as the user knows it (for messages).
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The opened directory as a path, whatever its path names now: `/proc/self/fd/N`
    /// where `/proc` is mounted, else the path itself.
    fn here(&self) -> PathBuf {
        let via_fd = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        if via_fd.is_dir() {
            via_fd
        } else {
            self.shown.clone()
        }
    }

    /// A path to `name` inside the directory that was opened ([`NoFollowDir::here`]).
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.here().join(name)
    }

    /// Every entry, typed without following it.
    // `std::fs` because the path used is `/proc/self/fd/N`: errors name the shown path.
    #[allow(clippy::disallowed_methods)]
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let here = self.here();
        let list = std::fs::read_dir(&here).map_err(|e| with_path(e, "list", &self.shown))?;
        let mut out = Vec::new();
        for entry in list {
            let name = entry
                .map_err(|e| with_path(e, "list", &self.shown))?
                .file_name();
            let meta = match std::fs::symlink_metadata(here.join(&name)) {
                Ok(m) => m,
                // Gone since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(e, "inspect", &self.shown.join(&name))),
            };
            out.push(Entry {
                name,
                file_type: meta.file_type(),
                modified: meta.modified().ok(),
            });
        }
        Ok(out)
    }

    /// Remove the directory `name` and everything in it, never following a link (a link
    /// inside is removed as a link). The directory itself must not be a link.
    pub fn remove_dir_all(&self, name: &OsStr) -> io::Result<()> {
        let path = self.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "`{}` is not a directory; qw did not remove it",
                        self.shown.join(name).display()
                    ),
                ));
            }
            Err(e) => return Err(with_path(e, "inspect", &self.shown.join(name))),
        }
        std::fs::remove_dir_all(&path).map_err(|e| with_path(e, "remove", &self.shown.join(name)))
    }

    /// Create the directory `name` inside this one (mode 0777 minus the umask), relative
    /// to the opened directory, so no link in the path above is followed; an
    /// `AlreadyExists` error when anything is there (a link too, never followed). Returns
    /// its path as the user knows it.
    pub fn create_dir(&self, name: &OsStr) -> io::Result<PathBuf> {
        let shown = self.shown.join(name);
        nix::sys::stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o777))
            .map_err(|e| with_path(e.into(), "create the directory", &shown))?;
        Ok(shown)
    }

    /// Remove the file `name` (a link is removed as a link, never followed).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(|e| with_path(e.into(), "remove", &self.shown.join(name)))
    }

    /// fsync the directory, so removals and creations in it survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(&self.fd)
            .map_err(|e| with_path(e.into(), "fsync directory", &self.shown))
    }
}

/// The error for a component of a [`NoFollowDir`] path that is a link or not a directory.
fn not_a_plain_dir(parent: &OwnedFd, name: &OsStr, shown: &Path) -> io::Error {
    match nix::fcntl::readlinkat(parent, name) {
        Ok(target) => linked_dir_refused(shown, Path::new(&target)),
        Err(_) => match std::fs::symlink_metadata(shown) {
            Ok(m) => not_a_dir(shown, m.file_type()),
            Err(_) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "`{}` is not a directory; qw keeps its own files there (move it away and qw recreates the directory)",
                    shown.display()
                ),
            ),
        },
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_below_the_base_are_refused_and_the_base_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir_all(real.join("a/b")).unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(victim.join("keep")).unwrap();
        // The base may be a link.
        let base = dir.path().join("base");
        symlink(&real, &base).unwrap();
        let d = NoFollowDir::open(&base, Path::new("a/b")).unwrap().unwrap();
        assert_eq!(d.shown(), base.join("a/b"));
        assert!(
            NoFollowDir::open(&base, Path::new("a/missing"))
                .unwrap()
                .is_none()
        );
        // A link at the last component and at a middle one.
        symlink(&victim, real.join("a/link")).unwrap();
        std::fs::create_dir_all(victim.join("keep/c")).unwrap();
        for rel in ["a/link", "a/link/keep", "a/link/keep/c"] {
            let e = NoFollowDir::open(&base, Path::new(rel)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("is a symbolic link"), "{e}");
            assert!(e.to_string().contains("a/link`"), "{e}");
            assert!(NoFollowDir::create(&base, Path::new(rel)).is_err());
            let found = linked_component(&base, Path::new(rel)).unwrap().unwrap();
            assert_eq!(found, (base.join("a/link"), victim.clone()));
        }
        assert_eq!(linked_component(&base, Path::new("a/b")).unwrap(), None);
        // A file where a directory belongs.
        std::fs::write(real.join("a/file"), b"x").unwrap();
        let e = NoFollowDir::open(&base, Path::new("a/file")).unwrap_err();
        assert!(
            e.to_string().contains("is a regular file, not a directory"),
            "{e}"
        );
    }

    #[test]
    fn removal_never_follows_a_link_inside() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("precious"), b"x").unwrap();
        let d = NoFollowDir::create(dir.path(), Path::new("own/runs")).unwrap();
        std::fs::create_dir_all(dir.path().join("own/runs/r1/sub")).unwrap();
        symlink(&victim, dir.path().join("own/runs/r1/sub/out")).unwrap();
        symlink(&victim, dir.path().join("own/runs/r2")).unwrap();
        let mut names: Vec<_> = d.entries().unwrap().into_iter().map(|e| e.name).collect();
        names.sort();
        assert_eq!(names, ["r1", "r2"]);
        assert!(
            d.remove_dir_all(OsStr::new("r2")).is_err(),
            "a link is not a directory"
        );
        d.remove_dir_all(OsStr::new("r1")).unwrap();
        d.remove_file(OsStr::new("r2")).unwrap();
        assert!(victim.join("precious").exists());
        assert_eq!(d.entries().unwrap().len(), 0);
    }
}
