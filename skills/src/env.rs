//! Where skills and omac's state live for one invocation: the workdir and the XDG homes.
//!
//! Everything that reads the process environment does it here, once, so the rest of the
//! crate (and its tests) work on explicit paths.

use std::path::{Component, Path, PathBuf};

/// The workdir and the user's home directories, as omac resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// The absolute workdir (lexically cleaned, symlinks kept as the Go omac keeps them).
    pub workdir: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME` when set to an absolute path.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_DATA_HOME` when set to an absolute path.
    pub xdg_data_home: Option<PathBuf>,
}

impl Env {
    /// The environment of this process, with `workdir` (or the current directory) as workdir.
    pub fn from_process(workdir: Option<&Path>) -> std::io::Result<Env> {
        Ok(Env {
            workdir: resolve_workdir(workdir)?,
            home: var_path("HOME"),
            xdg_config_home: var_path("XDG_CONFIG_HOME"),
            xdg_data_home: var_path("XDG_DATA_HOME"),
        })
    }

    /// `~/.config/omac` (or `$XDG_CONFIG_HOME/omac`): the global registry and skill config.
    pub fn global_dir(&self) -> Option<PathBuf> {
        self.config_home().map(|c| c.join("omac"))
    }

    /// `~/.config` or `$XDG_CONFIG_HOME`.
    pub fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// `~/.local/share/omac` (or `$XDG_DATA_HOME/omac`): the layer store.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.xdg_data_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".local").join("share")))
            .map(|d| d.join("omac"))
    }

    /// `<workdir>/.opencode`: the workdir layer of the registry (whatever the harness, as in
    /// the Go omac).
    pub fn workdir_state_dir(&self) -> PathBuf {
        self.workdir.join(".opencode")
    }
}

/// A variable holding an absolute path; empty or relative values count as unset (XDG spec).
fn var_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The workdir as the Go omac computes it: `--workdir` made absolute, else the current
/// directory as the shell names it (`$PWD` when it is the same directory, so a path through
/// a symlink stays as typed), lexically cleaned. The workdir's keychain scope is the sha256
/// of this string, so both programs must agree on it.
pub fn resolve_workdir(arg: Option<&Path>) -> std::io::Result<PathBuf> {
    let cwd = || -> std::io::Result<PathBuf> {
        let real = std::env::current_dir()?;
        if let Some(pwd) = var_path("PWD") {
            if same_file(&pwd, &real) {
                return Ok(pwd);
            }
        }
        Ok(real)
    };
    let abs = match arg {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => cwd()?.join(p),
        None => cwd()?,
    };
    Ok(clean(&abs))
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Lexical cleaning as Go's `filepath.Clean`: drops `.`, resolves `..` against the path
/// (not the filesystem), removes doubled and trailing separators.
pub fn clean(p: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_lexical() {
        assert_eq!(clean(Path::new("/a/./b/../c//")), PathBuf::from("/a/c"));
        assert_eq!(clean(Path::new("/../x")), PathBuf::from("/x"));
        assert_eq!(clean(Path::new("a/../../b")), PathBuf::from("../b"));
    }

    #[test]
    fn homes_follow_xdg_then_home() {
        let e = Env {
            workdir: "/w".into(),
            home: Some("/h".into()),
            xdg_config_home: None,
            xdg_data_home: None,
        };
        assert_eq!(e.global_dir().unwrap(), PathBuf::from("/h/.config/omac"));
        assert_eq!(e.data_dir().unwrap(), PathBuf::from("/h/.local/share/omac"));
        let x = Env {
            xdg_config_home: Some("/c".into()),
            xdg_data_home: Some("/d".into()),
            ..e
        };
        assert_eq!(x.global_dir().unwrap(), PathBuf::from("/c/omac"));
        assert_eq!(x.data_dir().unwrap(), PathBuf::from("/d/omac"));
    }
}
