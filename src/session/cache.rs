//! Tool caches kept across sessions outside the workdir: one directory per cache scope under
//! `~/.cache/omac/`, granted read-write and named through the usual variables so that npm,
//! pip, cargo and go find warm caches without seeing the user's own (which may hold tokens).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Variables pointed into the cache directory, and the subdirectory each uses.
pub const REDIRECTS: &[(&str, &str)] = &[
    ("XDG_CACHE_HOME", "xdg"),
    ("GOCACHE", "go-build"),
    ("GOMODCACHE", "go-mod"),
    ("NPM_CONFIG_CACHE", "npm"),
    ("PIP_CACHE_DIR", "pip"),
    ("CARGO_HOME", "cargo"),
];

/// The cache directory of a scope: `global`, `config` (per profile) or `workdir`.
pub fn scope_dir(cache_root: &Path, scope: &str, profile: &str, workdir: &Path) -> PathBuf {
    let identity = match scope {
        "workdir" => format!("v1:workdir:{}", workdir.display()),
        "config" => format!("v1:config:{profile}"),
        _ => "v1:shared".to_string(),
    };
    let hex = hex::encode(Sha256::digest(identity.as_bytes()));
    cache_root.join(&hex[..16])
}

/// Creates the scope directory and its subdirectories (mode 0700) and returns the
/// variables to set inside the sandbox.
pub fn prepare(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    use std::os::unix::fs::DirBuilderExt;
    let mut out = Vec::new();
    for (var, sub) in REDIRECTS {
        let p = dir.join(sub);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&p)?;
        out.push((var.to_string(), p.display().to_string()));
    }
    out.push(("OMAC_CACHE_DIR".into(), dir.display().to_string()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_separate_what_they_should() {
        let root = Path::new("/c");
        let w1 = Path::new("/w1");
        let w2 = Path::new("/w2");
        assert_eq!(
            scope_dir(root, "global", "a", w1),
            scope_dir(root, "global", "b", w2)
        );
        assert_ne!(
            scope_dir(root, "workdir", "a", w1),
            scope_dir(root, "workdir", "a", w2)
        );
        assert_ne!(
            scope_dir(root, "config", "a", w1),
            scope_dir(root, "config", "b", w1)
        );
    }

    #[test]
    fn prepare_makes_private_directories() {
        let t = tempfile::tempdir().unwrap();
        let vars = prepare(&t.path().join("s")).unwrap();
        assert!(vars
            .iter()
            .any(|(k, v)| k == "CARGO_HOME" && v.ends_with("/s/cargo")));
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(t.path().join("s/npm"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o700);
    }
}
