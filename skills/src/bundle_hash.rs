//! The Go omac's `bundle_hash` (reference §5.3), computed exactly as it does so that a skill
//! registered here shows no drift to the Go omac: regular files only (symlinks and other
//! special files skipped), excluded names left out, records `path 0x00 sha256 0x00` sorted
//! by path, hashed again.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::exclude;

/// `sha256:<hex>` as the Go omac's `config.BundleHash` computes it for `dir`.
pub fn bundle_hash(dir: &Path) -> Result<String> {
    let mut items: Vec<(Vec<u8>, [u8; 32])> = Vec::new();
    // filepath.WalkDir does not follow a symlinked root: it then sees no files.
    let root_is_dir = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io("reading", dir, e))?
        .is_dir();
    if root_is_dir {
        walk(dir, &[], &mut items)?;
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    for (rel, sum) in &items {
        h.update(rel);
        h.update([0u8]);
        h.update(sum);
        h.update([0u8]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn walk(dir: &Path, rel: &[u8], out: &mut Vec<(Vec<u8>, [u8; 32])>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("listing", dir, e))?;
        let name = ent.file_name();
        let ty = ent
            .file_type()
            .map_err(|e| Error::io("reading", ent.path(), e))?;
        let mut child = rel.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        if ty.is_dir() {
            if !exclude::is_excluded_dir(name.as_bytes()) {
                walk(&ent.path(), &child, out)?;
            }
        } else if ty.is_file() && !exclude::is_excluded_file(name.as_bytes()) {
            let bytes =
                std::fs::read(ent.path()).map_err(|e| Error::io("reading", ent.path(), e))?;
            out.push((child, Sha256::digest(&bytes).into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value the Go algorithm gives for this tree, computed independently here:
    /// sha256("a.txt\0" + sha256("A") + "\0" + "d/b.txt\0" + sha256("B") + "\0").
    #[test]
    fn matches_the_go_construction() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "A").unwrap();
        std::fs::create_dir(d.path().join("d")).unwrap();
        std::fs::write(d.path().join("d/b.txt"), "B").unwrap();
        std::fs::create_dir(d.path().join("node_modules")).unwrap();
        std::fs::write(d.path().join("node_modules/x"), "X").unwrap();
        std::fs::write(d.path().join("c.pyc"), "C").unwrap();
        std::os::unix::fs::symlink("a.txt", d.path().join("link")).unwrap();
        let mut h = Sha256::new();
        for (p, c) in [("a.txt", "A"), ("d/b.txt", "B")] {
            h.update(p.as_bytes());
            h.update([0u8]);
            h.update(Sha256::digest(c.as_bytes()));
            h.update([0u8]);
        }
        let want = format!("sha256:{}", hex::encode(h.finalize()));
        assert_eq!(bundle_hash(d.path()).unwrap(), want);
    }
}
