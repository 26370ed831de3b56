//! Which skills a harness sees (reference §2.4). A skill is a directory holding `omac.yaml`.
//!
//! For a harness whose skills live in `.B/skills`, the roots are searched in this order and
//! the first directory of a name wins:
//! 1. `<workdir>/.B/skills`, then `<workdir>/.agents/skills` (the shared base);
//! 2. `$XDG_CONFIG_HOME/B/skills`, then `$XDG_CONFIG_HOME/agents/skills` (when set);
//! 3. `~/.config/B/skills`, then `~/.config/agents/skills`;
//! 4. `~/.B/skills`, then `~/.agents/skills`.
//!
//! Workdir layers come before global ones, and in every layer the harness's own base ranks
//! above `.agents`: that is what the Go omac's code does (its design document says the
//! opposite; the code is what users' setups rely on). Other harnesses' bases are never
//! searched. Global roots count only when they exist. A skill directory may be a symlink to
//! a directory (a shared checkout linked into `.B/skills`).

use std::path::{Path, PathBuf};

use omac_bundle::harness::{self, Harness};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::meta::META_FILE;

/// The base every harness shares (`.agents/skills`).
pub const SHARED_BASE: &str = "agents";

/// The label of a skill found through the shared base by several harnesses.
pub const SHARED_LABEL: &str = "shared";

/// Workdir-local or user-global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Under the workdir: registered in `<workdir>/.opencode`, secrets scoped to the workdir.
    Workdir,
    /// Under the user's home: registered in `~/.config/omac`, secrets unscoped.
    Global,
}

impl Scope {
    /// `workdir` or `global`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Workdir => "workdir",
            Scope::Global => "global",
        }
    }
}

/// A directory that holds skills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The directory (`.../skills`).
    pub dir: PathBuf,
    /// Its layer.
    pub scope: Scope,
    /// The base (`opencode`, `claude`, `agents`...).
    pub base: String,
}

/// The in-scope bases of a harness: its own, then the shared one.
pub fn bases(h: &Harness) -> Vec<&'static str> {
    if h.skills_base == SHARED_BASE {
        vec![SHARED_BASE]
    } else {
        vec![h.skills_base, SHARED_BASE]
    }
}

/// The skill roots of `h`, in search order (see the module doc).
pub fn roots(env: &Env, h: &Harness) -> Vec<Root> {
    let bases = bases(h);
    let mut out: Vec<Root> = bases
        .iter()
        .map(|b| Root {
            dir: env.workdir.join(format!(".{b}")).join("skills"),
            scope: Scope::Workdir,
            base: b.to_string(),
        })
        .collect();
    let mut global: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(x) = &env.xdg_config_home {
        global.extend(bases.iter().map(|b| (x.join(b).join("skills"), *b)));
    }
    if let Some(home) = &env.home {
        global.extend(
            bases
                .iter()
                .map(|b| (home.join(".config").join(b).join("skills"), *b)),
        );
        global.extend(
            bases
                .iter()
                .map(|b| (home.join(format!(".{b}")).join("skills"), *b)),
        );
    }
    for (dir, base) in global {
        if out.iter().any(|r| r.dir == dir) || !dir.is_dir() {
            continue;
        }
        out.push(Root {
            dir,
            scope: Scope::Global,
            base: base.to_string(),
        });
    }
    out
}

/// A skill directory found in a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The directory name, which is the skill's name.
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// Its layer.
    pub scope: Scope,
    /// The base it was found under.
    pub base: String,
}

fn has_meta(dir: &Path) -> Result<bool> {
    let p = dir.join(META_FILE);
    match std::fs::metadata(&p) {
        Ok(m) => Ok(m.is_file()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::io("reading", p, e)),
    }
}

/// Every skill `h` sees from `env.workdir`, the first of each name in search order.
pub fn discover(env: &Env, h: &Harness) -> Result<Vec<Found>> {
    let mut out: Vec<Found> = Vec::new();
    for root in roots(env, h) {
        let rd = match std::fs::read_dir(&root.dir) {
            Ok(rd) => rd,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(e) => return Err(Error::io("listing", &root.dir, e)),
        };
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("listing", &root.dir, e))?;
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            let dir = ent.path();
            if dir.is_dir() && has_meta(&dir)? {
                names.push((name, dir));
            }
        }
        names.sort();
        for (name, dir) in names {
            if out.iter().any(|f| f.name == name) {
                continue;
            }
            out.push(Found {
                name,
                dir,
                scope: root.scope,
                base: root.base.clone(),
            });
        }
    }
    Ok(out)
}

/// One place a skill of a given name exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The directory.
    pub dir: PathBuf,
    /// Its layer.
    pub scope: Scope,
    /// The harness whose scope it was found in, or [`SHARED_LABEL`] when several harnesses
    /// see the same directory (a `.agents` skill).
    pub harness: String,
}

impl Candidate {
    /// The harness to record in the registry: empty for a shared skill.
    pub fn registry_harness(&self) -> &str {
        if self.harness == SHARED_LABEL {
            ""
        } else {
            &self.harness
        }
    }
}

/// Every directory called `name` in `h`'s scope, in search order.
pub fn candidates(env: &Env, h: &Harness, name: &str) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for root in roots(env, h) {
        let dir = root.dir.join(name);
        if dir.is_dir() && has_meta(&dir)? {
            out.push(Candidate {
                dir,
                scope: root.scope,
                harness: h.name.to_string(),
            });
        }
    }
    Ok(out)
}

/// Every directory called `name` in any harness's scope; a directory several harnesses see
/// is listed once, labelled [`SHARED_LABEL`].
pub fn candidates_all(env: &Env, name: &str) -> Result<Vec<Candidate>> {
    let mut out: Vec<Candidate> = Vec::new();
    for h in harness::HARNESSES {
        for c in candidates(env, h, name)? {
            match out.iter_mut().find(|o| o.dir == c.dir) {
                Some(o) => o.harness = SHARED_LABEL.to_string(),
                None => out.push(c),
            }
        }
    }
    Ok(out)
}

/// Whether a registered skill directory belongs to `h`'s scope: a path `.../<base>/skills/
/// <name>` whose base is another harness's is not; paths of no known shape are.
pub fn in_harness_scope(dir: &Path, h: &Harness) -> bool {
    let Some(skills) = dir.parent() else {
        return true;
    };
    if skills.file_name().and_then(|n| n.to_str()) != Some("skills") {
        return true;
    }
    let Some(base) = skills
        .parent()
        .and_then(|b| b.file_name())
        .and_then(|n| n.to_str())
        .map(|n| n.trim_start_matches('.'))
    else {
        return true;
    };
    let known = base == SHARED_BASE || harness::HARNESSES.iter().any(|x| x.skills_base == base);
    !known || bases(h).contains(&base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(w: &Path, home: &Path) -> Env {
        Env {
            workdir: w.to_path_buf(),
            home: Some(home.to_path_buf()),
            xdg_config_home: None,
            xdg_data_home: None,
        }
    }

    fn skill(root: &Path, name: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(META_FILE), format!("name: {name}\n")).unwrap();
        d
    }

    #[test]
    fn own_base_before_agents_and_workdir_before_global() {
        let t = tempfile::tempdir().unwrap();
        let (w, home) = (t.path().join("w"), t.path().join("h"));
        let e = env(&w, &home);
        let oc = harness::find("opencode").unwrap();
        let own = skill(&w.join(".opencode/skills"), "a");
        skill(&w.join(".agents/skills"), "a");
        let shared = skill(&w.join(".agents/skills"), "b");
        skill(&home.join(".config/opencode/skills"), "b");
        let global = skill(&home.join(".config/opencode/skills"), "c");
        skill(&w.join(".claude/skills"), "d");
        std::fs::create_dir_all(w.join(".opencode/skills/no-meta")).unwrap();
        let found = discover(&e, oc).unwrap();
        let got: Vec<(&str, &Path, Scope)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.dir.as_path(), f.scope))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", own.as_path(), Scope::Workdir),
                ("b", shared.as_path(), Scope::Workdir),
                ("c", global.as_path(), Scope::Global),
            ]
        );
        let cc = harness::find("claude").unwrap();
        assert!(discover(&e, cc).unwrap().iter().any(|f| f.name == "d"));
    }

    #[test]
    fn shared_skills_are_labelled_once() {
        let t = tempfile::tempdir().unwrap();
        let e = env(&t.path().join("w"), &t.path().join("h"));
        skill(&e.workdir.join(".agents/skills"), "s");
        skill(&e.workdir.join(".claude/skills"), "s");
        let c = candidates_all(&e, "s").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].harness, SHARED_LABEL);
        assert_eq!(c[0].registry_harness(), "");
        assert_eq!(c[1].harness, "claude-code");
    }

    #[test]
    fn scope_of_registered_dirs() {
        let oc = harness::find("opencode").unwrap();
        assert!(in_harness_scope(Path::new("/w/.opencode/skills/x"), oc));
        assert!(in_harness_scope(Path::new("/w/.agents/skills/x"), oc));
        assert!(!in_harness_scope(Path::new("/w/.claude/skills/x"), oc));
        assert!(in_harness_scope(Path::new("/elsewhere/x"), oc));
    }
}
