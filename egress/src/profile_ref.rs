//! Which profile a session runs, as far as the proxy cares: where its learned decisions
//! live (`<profile>.pages.json` beside the profile file; for a built-in profile in the
//! user's profile directory) and how to tell the user which line to add where.

use std::path::{Path, PathBuf};

/// The profile of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRef {
    /// The profile's name.
    pub name: String,
    /// The profile file itself, when it is not built in.
    pub file: Option<PathBuf>,
    /// The user's profile directory (`~/.config/omac/profiles`), when known.
    pub user_dir: Option<PathBuf>,
}

impl ProfileRef {
    /// From `omac.json`'s `profile` (name, and sources child first: a path or
    /// `builtin:NAME`) and the user's omac config directory (`~/.config/omac`).
    pub fn from_sources(name: &str, sources: &[String], user_config_dir: Option<&Path>) -> Self {
        let file = sources
            .first()
            .filter(|s| !s.starts_with("builtin:"))
            .map(PathBuf::from);
        ProfileRef {
            name: name.to_string(),
            file,
            user_dir: user_config_dir.map(|d| d.join("profiles")),
        }
    }

    /// The `.pages.json` file: `foo.json` → `foo.pages.json` beside it; for a built-in
    /// profile `<user_dir>/<name>.pages.json`; `None` when neither is known.
    pub fn pages_path(&self) -> Option<PathBuf> {
        match &self.file {
            Some(f) => {
                let fname = f.file_name()?.to_string_lossy();
                let stem = fname.strip_suffix(".json").unwrap_or(&fname);
                Some(f.with_file_name(format!("{stem}.pages.json")))
            }
            None => self
                .user_dir
                .as_ref()
                .map(|d| d.join(format!("{}.pages.json", self.name))),
        }
    }

    /// "in /path/work.json", or, for a built-in profile, the file to create and its
    /// `extends` line (built-in profiles cannot be edited).
    pub fn where_to_edit(&self) -> String {
        match &self.file {
            Some(f) => format!("in {}", f.display()),
            None => {
                let target = self.user_dir.as_ref().map_or_else(
                    || format!("~/.config/omac/profiles/{}.json", self.name),
                    |d| d.join(format!("{}.json", self.name)).display().to_string(),
                );
                format!(
                    "in {target} (the built-in profile \"{}\" cannot be edited: create that file with {{\"extends\": \"{}\"}} and add the line there)",
                    self.name, self.name
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_paths() {
        let p = ProfileRef::from_sources(
            "work",
            &[
                "/repo/.omac/profiles/work.json".into(),
                "builtin:default".into(),
            ],
            Some(Path::new("/home/u/.config/omac")),
        );
        assert_eq!(
            p.pages_path().unwrap(),
            PathBuf::from("/repo/.omac/profiles/work.pages.json")
        );
        assert!(p.where_to_edit().contains("/repo/.omac/profiles/work.json"));
        let b = ProfileRef::from_sources(
            "default",
            &["builtin:default".into()],
            Some(Path::new("/home/u/.config/omac")),
        );
        assert_eq!(
            b.pages_path().unwrap(),
            PathBuf::from("/home/u/.config/omac/profiles/default.pages.json")
        );
        assert!(b
            .where_to_edit()
            .contains("/home/u/.config/omac/profiles/default.json"));
        assert!(b.where_to_edit().contains("{\"extends\": \"default\"}"));
        let none = ProfileRef::from_sources("default", &["builtin:default".into()], None);
        assert_eq!(none.pages_path(), None);
        let odd = ProfileRef::from_sources("p", &["/x/p".into()], None);
        assert_eq!(odd.pages_path().unwrap(), PathBuf::from("/x/p.pages.json"));
    }
}
