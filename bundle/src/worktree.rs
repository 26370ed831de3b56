//! Git linked worktrees: a workdir whose `.git` is a file pointing into another repository
//! needs parts of that repository to commit. The shared object store, refs and logs follow
//! the workdir's access; config, info, packed-refs and hooks are granted read-only so that
//! the agent cannot plant hooks or change the repository's configuration.

use std::path::{Path, PathBuf};

use crate::grants::Access;

/// The grants a linked worktree at `workdir` needs (empty for an ordinary checkout).
pub fn grants(
    workdir: &Path,
    access: Access,
    warnings: &mut Vec<String>,
) -> Vec<(PathBuf, Access)> {
    let dotgit = workdir.join(".git");
    let Ok(text) = std::fs::read_to_string(&dotgit) else {
        return Vec::new();
    };
    let Some(gitdir) = text.lines().find_map(|l| l.strip_prefix("gitdir:")) else {
        return Vec::new();
    };
    let gitdir = workdir.join(gitdir.trim());
    let Ok(gitdir) = std::fs::canonicalize(&gitdir) else {
        warnings.push(format!(
            "{}: gitdir {} does not exist",
            dotgit.display(),
            gitdir.display()
        ));
        return Vec::new();
    };
    let common = std::fs::read_to_string(gitdir.join("commondir"))
        .ok()
        .map(|c| gitdir.join(c.trim()))
        .and_then(|c| std::fs::canonicalize(c).ok());
    let Some(common) = common else {
        warnings.push(format!(
            "{}: no commondir; only the worktree is granted",
            gitdir.display()
        ));
        return vec![(gitdir, access)];
    };
    if !gitdir.starts_with(&common) {
        warnings.push(format!(
            "{}: the worktree's admin directory lies outside {}; not granted",
            dotgit.display(),
            common.display()
        ));
        return Vec::new();
    }
    let mut out = vec![(gitdir, access)];
    for (part, a) in [
        ("objects", access),
        ("refs", access),
        ("logs", access),
        ("config", Access::READ),
        ("info", Access::READ),
        ("packed-refs", Access::READ),
        ("hooks", Access::READ),
    ] {
        let p = common.join(part);
        // A part that is a link could point anywhere: only real entries inside are granted.
        match std::fs::symlink_metadata(&p) {
            Ok(m) if !m.file_type().is_symlink() => out.push((p, a)),
            Ok(_) => warnings.push(format!("{}: is a symbolic link; not granted", p.display())),
            Err(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_worktree_parts_are_granted_with_config_read_only() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo/.git");
        let admin = repo.join("worktrees/wt");
        std::fs::create_dir_all(&admin).unwrap();
        for d in ["objects", "refs", "hooks"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        std::fs::write(repo.join("config"), "").unwrap();
        std::fs::write(admin.join("commondir"), "../..\n").unwrap();
        let wt = t.path().join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(wt.join(".git"), format!("gitdir: {}\n", admin.display())).unwrap();
        let mut w = Vec::new();
        let g = grants(&wt, Access::READ_WRITE, &mut w);
        let repo = std::fs::canonicalize(&repo).unwrap();
        assert!(g.contains(&(repo.join("objects"), Access::READ_WRITE)));
        assert!(g.contains(&(repo.join("config"), Access::READ)));
        assert!(g.contains(&(repo.join("hooks"), Access::READ)));
        assert!(w.is_empty(), "{w:?}");
        let plain = t.path().join("plain");
        std::fs::create_dir_all(plain.join(".git")).unwrap();
        assert!(grants(&plain, Access::READ_WRITE, &mut w).is_empty());
    }
}
