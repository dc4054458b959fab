//! Where task worktrees live: never under `.claude/` (Claude Code guards such paths, and
//! some versions refuse any path containing `.claude/`).
//!
//! The *container* is the directory holding one repository's task worktrees
//! (`<container>/<spec>-<task>`). In order:
//! 1. the setting `quantumwala.worktree_root` (absolute, `~/…`, or relative to the project
//!    root): `<root>/<repo-name>-<hash>`, so one root can serve several repositories;
//! 2. beside the repository: `<parent>/<repo-name>.qw-worktrees` — the same file system as
//!    the project (its quotas and free space, visible wherever the project is, e.g. on the
//!    nodes of a cluster), and unique because one directory cannot hold two entries of the
//!    same name;
//! 3. when that parent is not writable (a read-only parent, a repository at a mount point
//!    or at `/`): the user's cache, `$XDG_CACHE_HOME/quantumwala/worktrees/<name>-<hash>`
//!    (else `~/.cache/…`, `~/Library/Caches/…` on macOS).
//!
//! `<hash>` is FNV-1a of the repository's canonical path, so two repositories with the
//! same name never share a container. Worktrees made under the old root
//! (`<project>/.claude/worktrees/`) are still found, resumed and pruned.
//!
//! Only paths are decided here; nothing is created.

use std::path::{Path, PathBuf};

/// Why the container is where it is (said once per run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `quantumwala.worktree_root`.
    Setting,
    /// The default: beside the repository.
    Beside,
    /// The repository's parent is not writable, so the user's cache.
    CacheFallback {
        /// The parent that was not writable.
        parent: PathBuf,
    },
}

/// Where this repository's task worktrees go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The container directory.
    pub container: PathBuf,
    /// Why there.
    pub why: Why,
    /// Every container a worktree of this repository may be in (the chosen one first,
    /// then the other defaults), for finding leftovers and stray directories.
    pub candidates: Vec<PathBuf>,
}

/// What [`choose`] reads from the environment (passed in so tests use fakes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CACHE_HOME`.
    pub xdg_cache: Option<PathBuf>,
}

impl Env {
    /// The process environment.
    pub(crate) fn current() -> Env {
        let abs = |k: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        Env {
            home: abs("HOME"),
            xdg_cache: abs("XDG_CACHE_HOME"),
        }
    }

    /// The user's cache directory, if one is known.
    fn cache_dir(&self) -> Option<PathBuf> {
        if let Some(x) = &self.xdg_cache {
            return Some(x.clone());
        }
        let home = self.home.as_ref()?;
        Some(if cfg!(target_os = "macos") {
            home.join("Library").join("Caches")
        } else {
            home.join(".cache")
        })
    }
}

/// Decide the container for the repository whose main worktree is `top`. `setting` is
/// `quantumwala.worktree_root` as written; relative values are relative to
/// `project_root`. `writable` says whether a directory (or, when it does not exist, its
/// nearest existing ancestor) lets us create entries. Err: one line saying why no place
/// works.
pub(crate) fn choose(
    top: &Path,
    project_root: &Path,
    setting: Option<&str>,
    env: &Env,
    writable: &dyn Fn(&Path) -> bool,
) -> Result<Placement, String> {
    let name = repo_name(top);
    let id = format!("{name}-{}", short_hash(top));
    let beside = top
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.join(format!("{name}.qw-worktrees")));
    let cache = env
        .cache_dir()
        .map(|c| c.join("quantumwala").join("worktrees").join(&id));
    let mut candidates: Vec<PathBuf> = Vec::new();
    let chosen = if let Some(s) = setting.map(str::trim).filter(|s| !s.is_empty()) {
        let root = expand(s, project_root, env).ok_or_else(|| {
            format!("`quantumwala.worktree_root` is `{s}`, but $HOME is not set to expand `~`")
        })?;
        (root.join(&id), Why::Setting)
    } else {
        match (&beside, &cache) {
            (Some(b), _) if writable(b) => (b.clone(), Why::Beside),
            (b, Some(c)) => (
                c.clone(),
                Why::CacheFallback {
                    parent: b
                        .as_ref()
                        .and_then(|b| b.parent())
                        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
                },
            ),
            (Some(b), None) => {
                return Err(format!(
                    "task worktrees go beside the repository in `{}`, but it is not writable, and no cache directory is known ($XDG_CACHE_HOME and $HOME are unset)",
                    b.display()
                ));
            }
            (None, None) => {
                return Err(
                    "the repository has no parent directory and no cache directory is known ($XDG_CACHE_HOME and $HOME are unset)"
                        .into(),
                );
            }
        }
    };
    candidates.push(chosen.0.clone());
    for c in [beside, cache].into_iter().flatten() {
        if !candidates.contains(&c) {
            candidates.push(c);
        }
    }
    Ok(Placement {
        container: chosen.0,
        why: chosen.1,
        candidates,
    })
}

/// `~/x` → `$HOME/x`; relative → under `base`; absolute as is.
fn expand(s: &str, base: &Path, env: &Env) -> Option<PathBuf> {
    if s == "~" {
        return env.home.clone();
    }
    if let Some(rest) = s.strip_prefix("~/") {
        return env.home.as_ref().map(|h| h.join(rest));
    }
    let p = Path::new(s);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

/// The repository's directory name, reduced to `[A-Za-z0-9._-]` (else `repo`).
fn repo_name(top: &Path) -> String {
    let raw = top
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_owned();
    if clean.is_empty() {
        "repo".to_owned()
    } else {
        clean
    }
}

/// 8 hex digits of FNV-1a 64 over the path's bytes: stable across builds and platforms
/// (std's hasher is not).
fn short_hash(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in p.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", (h >> 32) ^ (h & 0xffff_ffff))
}

/// Can we create entries in `dir`, or — when it does not exist yet — in its nearest
/// existing ancestor? (`access(W_OK|X_OK)`: also false on a read-only file system.)
pub(crate) fn writable(dir: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    let mut p = Some(dir);
    while let Some(d) = p {
        match d.symlink_metadata() {
            Ok(m) if m.is_dir() || m.file_type().is_symlink() => {
                return access(d, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
            }
            Ok(_) => return false,
            Err(_) => p = d.parent(),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    fn env() -> Env {
        Env {
            home: Some(PathBuf::from("/home/u")),
            xdg_cache: None,
        }
    }

    #[test]
    fn default_is_beside_the_repository() {
        let p = choose(
            Path::new("/src/shop"),
            Path::new("/src/shop"),
            None,
            &env(),
            &|_| true,
        )
        .unwrap();
        assert_eq!(p.container, PathBuf::from("/src/shop.qw-worktrees"));
        assert_eq!(p.why, Why::Beside);
        assert!(!p.container.to_string_lossy().contains(".claude"));
        assert_eq!(p.candidates.len(), 2, "{:?}", p.candidates);
        assert!(text(&p.candidates[1]).starts_with("/home/u/.cache/quantumwala/worktrees/shop-"));
    }

    #[test]
    fn read_only_parent_falls_back_to_the_cache() {
        let ro = |d: &Path| !d.starts_with("/srv");
        let p = choose(
            Path::new("/srv/shop"),
            Path::new("/srv/shop"),
            None,
            &env(),
            &ro,
        )
        .unwrap();
        assert!(
            p.container
                .starts_with("/home/u/.cache/quantumwala/worktrees/"),
            "{:?}",
            p.container
        );
        assert_eq!(
            p.why,
            Why::CacheFallback {
                parent: PathBuf::from("/srv")
            }
        );
        let xdg = Env {
            xdg_cache: Some(PathBuf::from("/var/cache/u")),
            ..env()
        };
        let p = choose(
            Path::new("/srv/shop"),
            Path::new("/srv/shop"),
            None,
            &xdg,
            &ro,
        )
        .unwrap();
        assert!(text(&p.container).starts_with("/var/cache/u/quantumwala/worktrees/shop-"));
        // No parent at all (a repository at `/`) is the same case.
        let p = choose(Path::new("/"), Path::new("/"), None, &env(), &|_| true).unwrap();
        assert!(
            text(&p.container).starts_with("/home/u/.cache/"),
            "{:?}",
            p.container
        );
        let none = Env::default();
        let e = choose(
            Path::new("/srv/shop"),
            Path::new("/srv/shop"),
            None,
            &none,
            &ro,
        )
        .unwrap_err();
        assert!(
            e.contains("/srv/shop.qw-worktrees") && e.contains("HOME"),
            "{e}"
        );
    }

    #[test]
    fn two_repositories_with_the_same_name_get_different_cache_containers() {
        let under_wt = |top: &str| {
            choose(Path::new(top), Path::new(top), Some("/wt"), &env(), &|_| {
                true
            })
            .unwrap()
        };
        let a = under_wt("/a/shop");
        let b = under_wt("/b/shop");
        assert_ne!(a.container, b.container);
        assert!(
            text(&a.container).starts_with("/wt/shop-")
                && text(&b.container).starts_with("/wt/shop-")
        );
        assert_eq!(a.why, Why::Setting);
        // Stable: the same path always gives the same container.
        let again = under_wt("/a/shop");
        assert_eq!(a.container, again.container);
    }

    #[test]
    fn setting_is_expanded_relative_to_the_project() {
        let top = Path::new("/src/mono");
        let proj = Path::new("/src/mono/app");
        let p = choose(top, proj, Some("~/wt"), &env(), &|_| true).unwrap();
        assert!(
            text(&p.container).starts_with("/home/u/wt/mono-"),
            "{:?}",
            p.container
        );
        let p = choose(top, proj, Some("../trees"), &env(), &|_| true).unwrap();
        assert!(
            text(&p.container).starts_with("/src/mono/app/../trees/mono-"),
            "{:?}",
            p.container
        );
        // An empty setting means the default.
        let p = choose(top, proj, Some("  "), &env(), &|_| true).unwrap();
        assert_eq!(p.why, Why::Beside);
        let e = choose(top, proj, Some("~/wt"), &Env::default(), &|_| true).unwrap_err();
        assert!(e.contains("worktree_root"), "{e}");
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(repo_name(Path::new("/x/my repo!")), "my_repo_");
        assert_eq!(repo_name(Path::new("/x/.hidden")), "hidden");
        assert_eq!(repo_name(Path::new("/")), "repo");
        assert_eq!(short_hash(Path::new("/a")).len(), 8);
        assert_ne!(short_hash(Path::new("/a")), short_hash(Path::new("/b")));
    }

    #[test]
    fn writable_checks_the_nearest_existing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        assert!(writable(d.path()));
        assert!(writable(&d.path().join("not/yet/there")));
        let f = d.path().join("file");
        crate::fs::write(&f, "").unwrap();
        assert!(!writable(&f.join("below")));
    }
}
