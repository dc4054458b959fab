//! Files of a project read through symbolic links: a spec or steering document, the
//! settings, a Claude Code file copied into a task worktree. A link is followed only
//! while it stays inside the project: a repository can commit `requirements.md ->
//! ~/.aws/credentials` (or `/proc/self/environ`), and reading it would put the user's
//! secrets into an agent's prompt.
//!
//! Must not: read the file (callers do, with [`super::read_regular`] and friends).

use std::io;
use std::path::{Path, PathBuf};

/// Refuse `path` when, fully resolved, it lies outside the project `root`: an
/// `InvalidInput` error ([`super::is_refused`]) naming the link on the way, where it leads
/// and the project. Inside the project means under `root` or under where `root/.claude`
/// leads (a `.claude` that is itself a link the user made, a dotfiles set-up: the checks
/// of `cli::check_own_dirs` decide whether that one is followed). A path that does not
/// exist, whose link dangles or loops, or that leads to anything but a regular file (a
/// device, a FIFO, a directory) passes: the reader refuses it, saying what it is.
pub fn check_in_project(root: &Path, path: &Path) -> io::Result<()> {
    let Ok(resolved) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    if !std::fs::metadata(&resolved).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let inside = [root.to_path_buf(), root.join(".claude")]
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| resolved.starts_with(r));
    if inside {
        return Ok(());
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let how = match first_link(root, &abs) {
        Some(link) if link == abs => format!(
            "`{}` is a symbolic link to `{}`",
            path.display(),
            resolved.display()
        ),
        Some(link) => format!(
            "`{}` leads to `{}` through the symbolic link `{}`",
            path.display(),
            resolved.display(),
            link.display()
        ),
        None => format!("`{}` leads to `{}`", path.display(), resolved.display()),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{how}, outside the project `{}`: qw does not read a spec, steering or settings file through a link that leaves the project (put the file itself there, or link to one inside the project)",
            root.display()
        ),
    ))
}

/// The first symbolic link on the way from `root` down to `abs` (`abs` itself when it is
/// the link), `None` when `abs` is not below `root` as written.
fn first_link(root: &Path, abs: &Path) -> Option<PathBuf> {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let rel = abs.strip_prefix(&root).ok()?;
    let mut at = root;
    for c in rel.components() {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_pass_links_out_are_refused_naming_the_link_and_its_target() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("proj");
        let spec = root.join(".claude/specs/s");
        crate::fs::create_dir_all(&spec).unwrap();
        let secret = outer.path().join("credentials");
        crate::fs::write(&secret, b"key").unwrap();
        crate::fs::write(root.join("notes.md"), b"# N").unwrap();
        // A plain file, a missing one, a link within the project: fine.
        crate::fs::write(spec.join("design.md"), b"# D").unwrap();
        check_in_project(&root, &spec.join("design.md")).unwrap();
        check_in_project(&root, &spec.join("missing.md")).unwrap();
        symlink("../../../notes.md", spec.join("tasks.md")).unwrap();
        check_in_project(&root, &spec.join("tasks.md")).unwrap();
        // The file itself a link out.
        symlink(&secret, spec.join("requirements.md")).unwrap();
        let e = check_in_project(&root, &spec.join("requirements.md")).unwrap_err();
        assert!(crate::fs::is_refused(&e));
        let msg = e.to_string();
        assert!(
            msg.contains("requirements.md` is a symbolic link to"),
            "{msg}"
        );
        assert!(msg.contains("credentials"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        // A folder on the way a link out.
        let steering_out = outer.path().join("st");
        crate::fs::create_dir_all(&steering_out).unwrap();
        crate::fs::write(steering_out.join("tech.md"), b"x").unwrap();
        symlink(&steering_out, root.join(".claude/steering")).unwrap();
        let e = check_in_project(&root, &root.join(".claude/steering/tech.md")).unwrap_err();
        assert!(
            e.to_string().contains("through the symbolic link")
                && e.to_string().contains("steering`"),
            "{e}"
        );
    }

    #[test]
    fn a_claude_link_of_the_users_is_inside_and_a_link_out_of_it_is_not() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("proj");
        let dotfiles = outer.path().join("dotfiles");
        crate::fs::create_dir_all(&root).unwrap();
        crate::fs::create_dir_all(&dotfiles).unwrap();
        symlink(&dotfiles, root.join(".claude")).unwrap();
        crate::fs::write(dotfiles.join("settings.local.json"), b"{}").unwrap();
        check_in_project(&root, &root.join(".claude/settings.local.json")).unwrap();
        symlink("/proc/self/environ", dotfiles.join("other.json")).unwrap();
        assert!(check_in_project(&root, &root.join(".claude/other.json")).is_err());
    }
}
