//! Why a path is out of the agent's reach: what the facade's `/sandbox/denied?path=P` answers
//! from inside the sandbox, computed from the bundle the session runs.
//!
//! The answer names the path, the rule that hides it (a mask, or no grant at all) and the
//! profile line that would allow it, the way the egress proxy's 403 does for hosts.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::explain::{explain, FilesystemView};
use crate::Loaded;

/// The answer for one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Whether the sandbox keeps the agent from this path.
    pub denied: bool,
    /// The path asked about, made absolute and lexically normal.
    pub path: String,
    /// `baseline`, `profile`, `env-file`, `kernel` or `config` for a mask, `not-granted` for a
    /// path outside every mount, `read-only` or `granted` when it is not denied.
    pub rule: String,
    /// What it means and the profile change that would allow it.
    pub note: String,
}

/// Classifies paths against one bundle's filesystem view.
#[derive(Debug, Clone)]
pub struct DeniedPaths {
    fs: FilesystemView,
    profile: String,
}

impl DeniedPaths {
    /// The classifier of a loaded bundle.
    pub fn of(bundle: &Loaded) -> DeniedPaths {
        let profile = bundle
            .ext
            .as_ref()
            .and_then(|e| e.profile.sources.first().cloned())
            .unwrap_or_else(|| "the profile".to_string());
        DeniedPaths {
            fs: explain(bundle).filesystem,
            profile,
        }
    }

    /// Where the fix goes: the profile file, or for a built-in one, a profile of one's own.
    fn profile_hint(&self) -> String {
        match self.profile.strip_prefix("builtin:") {
            Some(name) => format!(
                "a profile of your own (<workdir>/.omac/profiles/NAME.json with \"extends\": \"{name}\", used with --profile NAME)"
            ),
            None => self.profile.clone(),
        }
    }

    /// Why `path` (absolute) is or is not out of reach; None for a relative path.
    pub fn check(&self, path: &str) -> Option<Verdict> {
        let p = normal(path)?;
        let shown = p.display().to_string();
        let verdict = |denied: bool, rule: &str, note: String| Verdict {
            denied,
            path: shown.clone(),
            rule: rule.to_string(),
            note,
        };
        let within = |base: &str| p.starts_with(base);

        // A mask wins over the grant it sits in.
        if let Some(h) = self
            .fs
            .hidden
            .iter()
            .filter(|h| within(&h.path))
            .max_by_key(|h| h.path.len())
        {
            let fix = match h.rule.as_str() {
                "profile" => format!(
                    "remove \"{}\" from filesystem.deny in {}",
                    h.path,
                    self.profile_hint()
                ),
                "baseline" | "env-file" => format!(
                    "add \"{}\" to filesystem.override_deny in {} (it holds credentials: think twice)",
                    h.path,
                    self.profile_hint()
                ),
                _ => "no profile setting lifts it".to_string(),
            };
            return Some(verdict(
                true,
                &h.rule,
                format!(
                    "{} is masked inside the sandbox ({}); to allow it, {fix}",
                    h.path, h.why
                ),
            ));
        }

        // The deepest mount that holds the path decides.
        let mut best: Option<(usize, &str)> = None;
        let mut consider = |base: &str, kind: &'static str| {
            if within(base) && best.is_none_or(|(n, _)| base.len() > n) {
                best = Some((base.len(), kind));
            }
        };
        for g in &self.fs.read_write {
            consider(&g.path, "granted");
        }
        for g in &self.fs.read_only {
            consider(&g.path, "read-only");
        }
        for g in self.fs.write_only.iter().chain(&self.fs.unusable) {
            consider(&g.path, "not-granted");
        }
        for s in &self.fs.scratch {
            consider(&s.path, "scratch");
        }
        let read_fix = format!(
            "add \"{shown}\" to filesystem.read in {} (filesystem.write to change it)",
            self.profile_hint()
        );
        Some(match best {
            None => verdict(
                true,
                "not-granted",
                format!("{shown} is outside the sandbox's view: nothing of it is mounted; to let the agent read it, {read_fix}"),
            ),
            Some((_, "not-granted")) => verdict(
                true,
                "not-granted",
                format!("{shown} is mounted but not readable inside (Landlock grants nothing there); to let the agent read it, {read_fix}"),
            ),
            Some((_, "scratch")) => verdict(
                true,
                "scratch",
                format!("{shown} lies in an empty filesystem made for the sandbox: the host's files there are not visible; to see them, {read_fix}"),
            ),
            Some((_, "read-only")) => verdict(
                false,
                "read-only",
                format!("{shown} is readable but not writable inside; to let the agent change it, add \"{shown}\" to filesystem.write in {}", self.profile_hint()),
            ),
            Some(_) => verdict(
                false,
                "granted",
                format!("{shown} is granted read-write: if access failed, the cause is elsewhere (file permissions, or it does not exist)"),
            ),
        })
    }
}

/// `path` made lexically normal (`.` and `..` resolved without touching the disk); None when
/// it is not absolute.
fn normal(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Hidden, PathGrant, Scratch};

    fn grant(p: &str) -> PathGrant {
        PathGrant {
            path: p.into(),
            source: None,
        }
    }

    fn paths() -> DeniedPaths {
        DeniedPaths {
            fs: FilesystemView {
                root: "rootfs".into(),
                root_readonly: true,
                workdir: None,
                read_only: vec![grant("/usr"), grant("/home/u/.rustup")],
                read_write: vec![grant("/home/u/work")],
                write_only: vec![],
                unusable: vec![],
                execute: vec![],
                scratch: vec![Scratch {
                    path: "/home/u".into(),
                    size: None,
                    exec: false,
                    writable: true,
                    purpose: None,
                }],
                hidden: vec![Hidden {
                    path: "/home/u/work/.env".into(),
                    rule: "env-file".into(),
                    why: "a .env file".into(),
                }],
                readonly_kernel: vec![],
                devices: vec![],
                special: vec![],
            },
            profile: "builtin:default".into(),
        }
    }

    #[test]
    fn each_kind_of_path_gets_its_rule_and_fix() {
        let d = paths();
        let v = d.check("/home/u/work/.env").unwrap();
        assert!(v.denied && v.rule == "env-file", "{v:?}");
        assert!(v.note.contains("override_deny"), "{v:?}");
        assert!(v.note.contains("\"extends\": \"default\""), "{v:?}");
        let v = d.check("/home/u/.ssh/id_rsa").unwrap();
        assert!(v.denied && v.rule == "scratch", "{v:?}");
        assert!(v.note.contains("filesystem.read"), "{v:?}");
        let v = d.check("/srv/data").unwrap();
        assert!(v.denied && v.rule == "not-granted", "{v:?}");
        let v = d.check("/usr/bin/env").unwrap();
        assert!(!v.denied && v.rule == "read-only", "{v:?}");
        let v = d.check("/home/u/work/src/main.rs").unwrap();
        assert!(!v.denied && v.rule == "granted", "{v:?}");
        // The deepest mount decides: a read-only grant inside the scratch home.
        let v = d.check("/home/u/.rustup/toolchains").unwrap();
        assert_eq!(v.rule, "read-only");
    }

    #[test]
    fn paths_are_made_normal_and_must_be_absolute() {
        let d = paths();
        assert_eq!(
            d.check("/home/u/work/src/../.env").unwrap().rule,
            "env-file"
        );
        assert_eq!(d.check("/home/u/work/../../../srv").unwrap().path, "/srv");
        assert!(d.check("work/.env").is_none());
        // A prefix that is not a path component does not match.
        assert_eq!(d.check("/usrx").unwrap().rule, "not-granted");
    }
}
