//! Protected files with a second name. A mask hides a path, not a file: a hard link to a
//! protected file inside a granted tree would show its content under a name no mask
//! covers, and Landlock cannot tell the two names apart either. Such a run is refused.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Directory levels searched below a protected directory, and entries looked at in all.
const DEPTH: usize = 3;
const BUDGET: usize = 2000;

fn visit(
    p: &Path,
    depth: usize,
    budget: &mut usize,
    devs: &BTreeSet<u64>,
) -> Option<(PathBuf, u64)> {
    if *budget == 0 {
        return None;
    }
    *budget -= 1;
    let md = std::fs::symlink_metadata(p).ok()?;
    if md.is_file() {
        return (md.nlink() > 1 && devs.contains(&md.dev())).then(|| (p.to_path_buf(), md.nlink()));
    }
    if md.is_dir() && depth > 0 {
        for e in std::fs::read_dir(p).ok()?.flatten() {
            if let Some(hit) = visit(&e.path(), depth - 1, budget, devs) {
                return Some(hit);
            }
        }
    }
    None
}

/// Refuses the run when a file among `protected` (files, or directories searched a few
/// levels deep) has several names and lives on the filesystem of one of `granted`.
pub fn check(protected: &[PathBuf], granted: &[PathBuf]) -> Result<(), Error> {
    let devs: BTreeSet<u64> = granted
        .iter()
        .filter_map(|g| std::fs::metadata(g).ok().map(|m| m.dev()))
        .collect();
    if devs.is_empty() {
        return Ok(());
    }
    let mut budget = BUDGET;
    for p in protected {
        if let Some((file, n)) = visit(p, DEPTH, &mut budget, &devs) {
            return Err(Error::Refused {
                message: format!(
                    "the protected file {} has {n} names (hard links): another name inside a \
                     granted directory would show its content, which no mask covers",
                    file.display()
                ),
                fix: format!(
                    "find the other names with `find / -xdev -samefile {}` and remove those \
                     inside directories the sandbox grants (use a copy instead)",
                    file.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_name_on_a_granted_filesystem_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("home/.ssh/id_rsa");
        std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
        std::fs::write(&secret, "key").unwrap();
        let work = d.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let prot = vec![d.path().join("home/.ssh")];
        check(&prot, std::slice::from_ref(&work)).unwrap();
        std::fs::hard_link(&secret, work.join("notes.txt")).unwrap();
        let e = check(&prot, &[work]).unwrap_err().to_string();
        assert!(e.contains("id_rsa") && e.contains("2 names"), "{e}");
        // Nothing granted on that filesystem: nothing can show the second name.
        check(&prot, &[]).unwrap();
    }
}
