//! Finding a profile by name or path and resolving its `extends` chain.
//!
//! Names are looked up in three layers, the later winning: built-in, the user's
//! `~/.config/omac/profiles/NAME.json` (XDG honoured), then the workdir's
//! `.omac/profiles/NAME.json`. A profile that extends its own name extends the same name in
//! the layers below it, so a workdir `default.json` can say `"extends": "default"`.

use std::path::{Path, PathBuf};

use super::builtin;
use super::error::{Issue, ProfileError};
use super::locate::{locate, Step};
use super::merge::merge;
use super::model::Profile;
use super::parse::parse;
use crate::Error;

/// Where named profiles are looked up.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The user layer (`~/.config/omac/profiles`).
    pub user_dir: Option<PathBuf>,
    /// The workdir layer (`<workdir>/.omac/profiles`).
    pub workdir_dir: Option<PathBuf>,
}

/// A profile with its chain resolved and merged.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The name it was asked for (a file's stem for paths).
    pub name: String,
    /// The merged profile, without `extends`.
    pub profile: Profile,
    /// Where each part came from, child first (`builtin:NAME` or a path).
    pub sources: Vec<String>,
    /// The file of the profile itself, when it is not built in (its `.pages.json` sits beside it).
    pub file: Option<PathBuf>,
}

const TOP: usize = 3;

struct Found {
    name: String,
    source: String,
    path: Option<PathBuf>,
    text: String,
    layer: usize,
}

/// Whether a `--profile` or `extends` value is a path rather than a name.
pub fn is_path(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".json")
}

impl Lookup {
    /// The layers for a user config directory (`~/.config/omac`) and a workdir.
    pub fn new(user_config_dir: Option<&Path>, workdir: &Path) -> Self {
        Lookup {
            user_dir: user_config_dir.map(|d| d.join("profiles")),
            workdir_dir: Some(workdir.join(".omac").join("profiles")),
        }
    }

    fn read(path: &Path) -> Result<Option<String>, Error> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Finds `name` in the layers strictly below `below`, highest first.
    fn find(&self, name: &str, below: usize) -> Result<Option<Found>, Error> {
        let dirs = [(2, &self.workdir_dir), (1, &self.user_dir)];
        for (layer, dir) in dirs {
            if layer >= below {
                continue;
            }
            if let Some(d) = dir {
                let path = d.join(format!("{name}.json"));
                if let Some(text) = Self::read(&path)? {
                    return Ok(Some(Found {
                        name: name.to_string(),
                        source: path.display().to_string(),
                        path: Some(path),
                        text,
                        layer,
                    }));
                }
            }
        }
        Ok(builtin::text(name).map(|t| Found {
            name: name.to_string(),
            source: format!("builtin:{name}"),
            path: None,
            text: t.to_string(),
            layer: 0,
        }))
    }

    fn file(path: &Path) -> Result<Found, Error> {
        // `./x.json` and `x.json` are one file: name it one way in messages and cycle checks.
        let normal;
        let path = if path.is_absolute() {
            normal = crate::host::normalize(path);
            normal.as_path()
        } else {
            path
        };
        let text = Self::read(path)?.ok_or_else(|| {
            Error::Profile(ProfileError::one(
                &path.display().to_string(),
                ".",
                "no such profile file".into(),
                "check the path, or name a profile instead".into(),
            ))
        })?;
        Ok(Found {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: path.display().to_string(),
            path: Some(path.to_path_buf()),
            text,
            layer: TOP,
        })
    }

    /// Names a user could write, for "unknown profile" messages.
    fn known_names(&self) -> Vec<String> {
        let mut names: Vec<String> = builtin::names().iter().map(|s| s.to_string()).collect();
        for d in [&self.user_dir, &self.workdir_dir].into_iter().flatten() {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if let Some(stem) = n.strip_suffix(".json") {
                        if !stem.ends_with(".pages") && !names.iter().any(|x| x == stem) {
                            names.push(stem.to_string());
                        }
                    }
                }
            }
        }
        names.sort();
        names
    }

    /// Resolves `spec` (a name or a path) into one merged profile.
    pub fn resolve(&self, spec: &str) -> Result<Resolved, Error> {
        let first = if is_path(spec) {
            Self::file(Path::new(spec))?
        } else {
            self.find(spec, TOP)?.ok_or_else(|| {
                Error::Profile(ProfileError::one(
                    "--profile",
                    spec,
                    format!("no profile named {spec:?}"),
                    format!(
                        "use one of {}, or create {}",
                        self.known_names().join(", "),
                        self.user_dir
                            .as_ref()
                            .map(|d| d.join(format!("{spec}.json")).display().to_string())
                            .unwrap_or_else(|| format!("{spec}.json"))
                    ),
                ))
            })?
        };
        let name = first.name.clone();
        let file = first.path.clone();
        let mut chain: Vec<(Found, Profile)> = Vec::new();
        let mut current = first;
        loop {
            let profile = parse(&current.text, &current.source)?;
            let parent_spec = profile.extends.clone();
            let key = current.source.clone();
            if chain.iter().any(|(f, _)| f.source == key) {
                let mut names: Vec<String> = chain.iter().map(|(f, _)| f.source.clone()).collect();
                names.push(key);
                // The file whose `extends` closes the loop.
                let (closing, _) = chain.last().expect("a cycle needs a child");
                return Err(Error::Profile(ProfileError {
                    file: closing.source.clone(),
                    issues: vec![Issue {
                        path: "extends".into(),
                        position: locate(&closing.text, &[Step::Key("extends".into())]),
                        message: format!(
                            "profiles extend each other in a cycle: {}",
                            names.join(" -> ")
                        ),
                        fix: "break the cycle: one of these profiles must not extend the others"
                            .into(),
                    }],
                }));
            }
            chain.push((current, profile));
            let Some(parent_spec) = parent_spec else {
                break;
            };
            let (child, _) = chain.last().expect("just pushed");
            let parent = if is_path(&parent_spec) {
                let base = child
                    .path
                    .as_ref()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                let path = match base {
                    Some(dir) => dir.join(&parent_spec),
                    None => PathBuf::from(&parent_spec),
                };
                if !path.is_absolute() && child.path.is_none() {
                    return Err(unknown_parent(
                        child,
                        &parent_spec,
                        "a built-in profile can only extend names",
                    ));
                }
                Self::file(&path)
                    .map_err(|_| unknown_parent(child, &parent_spec, "no such file"))?
            } else {
                let below = if parent_spec == child.name {
                    child.layer
                } else {
                    TOP
                };
                match self.find(&parent_spec, below)? {
                    Some(f) => f,
                    None => {
                        let why = format!(
                            "no profile named {parent_spec:?} (known: {})",
                            self.known_names().join(", ")
                        );
                        return Err(unknown_parent(child, &parent_spec, &why));
                    }
                }
            };
            current = parent;
        }
        let sources = chain.iter().map(|(f, _)| f.source.clone()).collect();
        let mut merged: Option<Profile> = None;
        for (_, p) in chain.into_iter().rev() {
            merged = Some(match merged {
                None => Profile { extends: None, ..p },
                Some(parent) => merge(parent, p),
            });
        }
        Ok(Resolved {
            name,
            profile: merged.unwrap_or_default(),
            sources,
            file,
        })
    }
}

fn unknown_parent(child: &Found, parent: &str, why: &str) -> Error {
    let path = [Step::Key("extends".into())];
    Error::Profile(ProfileError {
        file: child.source.clone(),
        issues: vec![Issue {
            path: "extends".into(),
            position: locate(&child.text, &path),
            message: format!("cannot extend {parent:?}: {why}"),
            fix: "extend an existing profile by name (default, strict, ci, open) or by path".into(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Lookup) {
        let t = tempfile::tempdir().unwrap();
        let user = t.path().join("cfg");
        let work = t.path().join("work");
        std::fs::create_dir_all(user.join("profiles")).unwrap();
        std::fs::create_dir_all(work.join(".omac/profiles")).unwrap();
        let l = Lookup::new(Some(&user), &work);
        (t, l)
    }

    fn write(dir: &Option<PathBuf>, name: &str, text: &str) {
        std::fs::write(dir.as_ref().unwrap().join(format!("{name}.json")), text).unwrap();
    }

    #[test]
    fn every_builtin_resolves() {
        let (_t, l) = setup();
        for n in builtin::names() {
            let r = l.resolve(n).unwrap();
            assert_eq!(r.name, n);
            assert!(r.sources[0].starts_with("builtin:"));
        }
    }

    #[test]
    fn later_layers_win_and_same_name_extends_the_layer_below() {
        let (_t, l) = setup();
        write(
            &l.user_dir,
            "default",
            r#"{"extends":"default","network":{"allow_domain":["user.example"]}}"#,
        );
        write(
            &l.workdir_dir,
            "default",
            r#"{"extends":"default","network":{"allow_domain":["work.example"]}}"#,
        );
        let r = l.resolve("default").unwrap();
        assert_eq!(r.sources.len(), 3, "{:?}", r.sources);
        assert!(r.sources[0].contains("work"));
        assert_eq!(r.sources[2], "builtin:default");
        let d = r.profile.network.unwrap().allow_domain;
        assert!(d.contains(&"user.example".to_string()) && d.contains(&"work.example".to_string()));
        assert!(d.contains(&"api.anthropic.com".to_string()));
    }

    #[test]
    fn cycles_and_unknown_parents_are_refused() {
        let (_t, l) = setup();
        write(&l.user_dir, "a", r#"{"extends":"b"}"#);
        write(&l.user_dir, "b", r#"{"extends":"a"}"#);
        let e = l.resolve("a").unwrap_err().to_string();
        assert!(
            e.contains("cycle") && e.contains("a.json") && e.contains("b.json"),
            "{e}"
        );
        write(&l.user_dir, "c", "{\n \"extends\": \"nope\"\n}");
        let e = l.resolve("c").unwrap_err().to_string();
        assert!(e.contains("c.json:2:13") && e.contains("\"nope\""), "{e}");
        let e = l.resolve("missing").unwrap_err().to_string();
        assert!(
            e.contains("no profile named") && e.contains("default"),
            "{e}"
        );
    }

    #[test]
    fn paths_and_relative_extends() {
        let (t, l) = setup();
        let dir = t.path().join("p");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("base.json"), r#"{"network":{"mode":"blocked"}}"#).unwrap();
        std::fs::write(
            dir.join("mine.json"),
            r#"{"extends":"./base.json","workdir":{"access":"read"}}"#,
        )
        .unwrap();
        let r = l.resolve(dir.join("mine.json").to_str().unwrap()).unwrap();
        assert_eq!(r.name, "mine");
        assert_eq!(r.profile.network.unwrap().mode.as_deref(), Some("blocked"));
        assert_eq!(r.profile.workdir.unwrap().access.as_deref(), Some("read"));
    }
}
