//! Facts about the host a bundle is made on: the inputs that, with the profile and the
//! command, decide every byte of the bundle.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::Error;

/// The host inputs of bundle generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The work directory, absolute and canonical.
    pub workdir: PathBuf,
    /// The user's home directory.
    pub home: PathBuf,
    /// The invoking user's uid (mapped to itself inside).
    pub uid: u32,
    /// The invoking user's gid (mapped to itself inside).
    pub gid: u32,
    /// The host `PATH`, used to find the command and passed inside.
    pub path: String,
    /// Variables `$VAR` in profile paths may name.
    pub vars: BTreeMap<String, String>,
}

impl HostFacts {
    /// Reads the facts from the running process for work directory `workdir`.
    pub fn from_process(workdir: &Path) -> Result<HostFacts, Error> {
        let workdir = std::fs::canonicalize(workdir).map_err(|e| Error::io(workdir, e))?;
        if !workdir.is_dir() {
            return Err(Error::Input {
                message: format!("work directory {} is not a directory", workdir.display()),
                fix: "pass --workdir DIR with a directory".into(),
            });
        }
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let home = vars
            .get("HOME")
            .filter(|h| h.starts_with('/'))
            .map(PathBuf::from)
            .ok_or_else(|| Error::Input {
                message: "HOME is not set to an absolute path".into(),
                fix: "set HOME to your home directory".into(),
            })?;
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Ok(HostFacts {
            path: vars
                .get("PATH")
                .cloned()
                .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            workdir,
            home: normalize(&home),
            uid,
            gid,
            vars,
        })
    }

    /// Expands `~`, `~/x`, `$VAR/x` and `${VAR}/x`; `None` when a variable is unset.
    pub fn expand(&self, raw: &str) -> Option<PathBuf> {
        let expanded = if raw == "~" {
            self.home.clone()
        } else if let Some(rest) = raw.strip_prefix("~/") {
            self.home.join(rest)
        } else if let Some(rest) = raw.strip_prefix('$') {
            let (name, tail) = if let Some(r) = rest.strip_prefix('{') {
                r.split_once('}')?
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                rest.split_at(end)
            };
            let value = if name == "HOME" {
                self.home.display().to_string()
            } else {
                self.vars.get(name).filter(|v| !v.is_empty())?.clone()
            };
            PathBuf::from(format!("{value}{tail}"))
        } else {
            PathBuf::from(raw)
        };
        expanded.is_absolute().then(|| normalize(&expanded))
    }
}

/// Lexical normalisation: drops `.` components and trailing slashes (no `..` allowed).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Whether `inner` is `outer` or lies beneath it (component-wise).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    inner.starts_with(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            workdir: "/w".into(),
            home: "/home/u".into(),
            uid: 1000,
            gid: 1000,
            path: "/usr/bin".into(),
            vars: [("XDG_DATA_HOME".to_string(), "/data".to_string())].into(),
        }
    }

    #[test]
    fn expansion() {
        let f = facts();
        assert_eq!(f.expand("~"), Some("/home/u".into()));
        assert_eq!(f.expand("~/.nvm/"), Some("/home/u/.nvm".into()));
        assert_eq!(f.expand("$HOME/x"), Some("/home/u/x".into()));
        assert_eq!(f.expand("${XDG_DATA_HOME}/y"), Some("/data/y".into()));
        assert_eq!(f.expand("$XDG_DATA_HOME/./y"), Some("/data/y".into()));
        assert_eq!(f.expand("$UNSET/y"), None);
        assert_eq!(f.expand("/a//b/"), Some("/a/b".into()));
    }

    #[test]
    fn within_is_component_wise() {
        assert!(is_within(Path::new("/proj/a"), Path::new("/proj")));
        assert!(is_within(Path::new("/proj"), Path::new("/proj")));
        assert!(!is_within(Path::new("/proj-evil/a"), Path::new("/proj")));
    }
}
