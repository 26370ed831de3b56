//! What host paths a session grants, and how: the baseline system directories, the work
//! directory, the profile's lists, the harness's state, and what the command needs to run.

use std::path::{Path, PathBuf};

use crate::host::{is_within, normalize, HostFacts};
use crate::session::Session;
use crate::Error;

/// Read and write rights of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// Contents may be read (and programs executed).
    pub read: bool,
    /// Contents may be created, changed and removed.
    pub write: bool,
}

impl Access {
    /// Read-only.
    pub const READ: Access = Access {
        read: true,
        write: false,
    };
    /// Write-only.
    pub const WRITE: Access = Access {
        read: false,
        write: true,
    };
    /// Read and write.
    pub const READ_WRITE: Access = Access {
        read: true,
        write: true,
    };

    /// Both grants' rights together.
    pub fn union(self, other: Access) -> Access {
        Access {
            read: self.read || other.read,
            write: self.write || other.write,
        }
    }

    /// The profile spelling: `read`, `write` or `readwrite`.
    pub fn name(self) -> &'static str {
        match (self.read, self.write) {
            (true, true) => "readwrite",
            (false, true) => "write",
            _ => "read",
        }
    }
}

/// Why a path is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// omac's list of system directories.
    Baseline,
    /// The work directory.
    Workdir,
    /// A git worktree's shared repository parts.
    Worktree,
    /// omac's control files inside the workdir, kept read-only.
    Control,
    /// The profile's `filesystem` lists.
    Profile,
    /// The harness's state.
    Harness,
    /// The command's binary, its symlink chain and its interpreter.
    Command,
    /// Added by the session (caches, skills).
    Session,
}

impl Origin {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Baseline => "baseline",
            Origin::Workdir => "workdir",
            Origin::Worktree => "git worktree",
            Origin::Control => "omac control file",
            Origin::Profile => "profile",
            Origin::Harness => "harness",
            Origin::Command => "command",
            Origin::Session => "session",
        }
    }
}

/// One host path made visible at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The path (host and sandbox).
    pub path: PathBuf,
    /// Its rights.
    pub access: Access,
    /// Why.
    pub origin: Origin,
    /// Whether it is searched for `.env`-like files.
    pub walk: bool,
}

/// System directories every sandbox sees read-only (when they exist).
pub const BASELINE_READ: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/run/systemd/resolve",
    "~/.local/bin",
];

/// Destinations omac builds itself; grants may not land beneath them.
pub const RESERVED: &[&str] = &["/proc", "/dev", "/run/omac"];

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Collects every grant of `session` (unmerged; see [`merge`]).
pub fn collect(session: &Session, warnings: &mut Vec<String>) -> Result<Vec<Grant>, Error> {
    let host = session.host;
    let mut out: Vec<Grant> = Vec::new();
    let mut add = |path: PathBuf, access: Access, origin: Origin, walk: bool| {
        out.push(Grant {
            path,
            access,
            origin,
            walk,
        });
    };

    for raw in BASELINE_READ {
        if let Some(p) = host.expand(raw) {
            if exists(&p) {
                add(p, Access::READ, Origin::Baseline, false);
            }
        }
    }
    // /etc/resolv.conf is often a link into a directory outside the baseline.
    if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf") {
        if let Some(dir) = target.parent() {
            if !dir.starts_with("/etc") && !dir.starts_with("/usr") && !dir.starts_with("/proc") {
                add(dir.to_path_buf(), Access::READ, Origin::Baseline, false);
            }
        }
    }

    let workdir_access = workdir_access(session)?;
    if let Some(access) = workdir_access {
        check_workdir(&host.workdir, host)?;
        add(host.workdir.clone(), access, Origin::Workdir, true);
        for (p, a) in crate::worktree::grants(&host.workdir, access, warnings) {
            add(p, a, Origin::Worktree, false);
        }
    }

    let fs = session
        .profile
        .profile
        .filesystem
        .clone()
        .unwrap_or_default();
    for (list, access) in [
        (&fs.read, Access::READ),
        (&fs.allow, Access::READ_WRITE),
        (&fs.write, Access::WRITE),
        (&fs.allow_unix_dir, Access::READ_WRITE),
    ] {
        for raw in list {
            match host.expand(raw) {
                Some(p) if exists(&p) => add(p, access, Origin::Profile, true),
                Some(_) => {}
                None => warnings.push(format!(
                    "profile path {raw:?} names an unset variable; it is not granted"
                )),
            }
        }
    }

    if let Some(h) = session.harness {
        for d in h.state_dirs.iter().chain(h.state_files) {
            let p = host.home.join(d);
            if exists(&p) {
                add(p, Access::READ_WRITE, Origin::Harness, true);
            }
        }
    }
    for (p, access) in &session.extras.grants {
        add(normalize(p), *access, Origin::Session, false);
    }
    for p in control_paths(host) {
        if exists(&p) && writable_within(&p, &out) {
            out.push(Grant {
                path: p,
                access: Access::READ,
                origin: Origin::Control,
                walk: false,
            });
        }
    }
    Ok(out)
}

/// omac's control paths on this host: the workdir's and the user's.
fn control_paths(host: &HostFacts) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = crate::protected::WORKDIR_CONTROL
        .iter()
        .map(|c| host.workdir.join(c))
        .collect();
    v.extend(
        crate::protected::USER_CONTROL
            .iter()
            .filter_map(|c| host.expand(c)),
    );
    v
}

/// Whether the grant deciding `p` (the deepest one holding it) is writable.
fn writable_within(p: &Path, grants: &[Grant]) -> bool {
    grants
        .iter()
        .filter(|g| is_within(p, &g.path) && g.path != p)
        .max_by_key(|g| g.path.components().count())
        .is_some_and(|g| g.access.write)
}

/// omac's control directories on `host` (see `protected::CONTROL_DIRS`): the workdir's and
/// the user's.
pub fn control_dirs(host: &HostFacts) -> Vec<PathBuf> {
    crate::protected::CONTROL_DIRS
        .iter()
        .filter_map(|c| {
            if c.starts_with('.') {
                Some(host.workdir.join(c))
            } else {
                host.expand(c)
            }
        })
        .collect()
}

/// Control directories that do not exist but would be created inside a writable grant:
/// each gets an empty read-only tmpfs (see `protected::CONTROL_DIRS`).
pub fn control_placeholders(grants: &[Grant], host: &HostFacts) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = control_dirs(host)
        .into_iter()
        .filter(|p| !exists(p) && writable_within(p, grants))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Merges grants of the same path (rights united; a control file stays read-only), sorted
/// so that parents come before children, and refuses grants under omac's own mounts.
pub fn merge(mut out: Vec<Grant>) -> Result<Vec<Grant>, Error> {
    let mut merged: Vec<Grant> = Vec::new();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    for g in out {
        for r in RESERVED {
            if is_within(&g.path, Path::new(r)) {
                return Err(Error::Input {
                    message: format!(
                        "{} ({}) lies under {r}, which omac builds itself",
                        g.path.display(),
                        g.origin.name()
                    ),
                    fix: "remove the grant; use \"devices\" in the profile for device nodes".into(),
                });
            }
        }
        match merged.last_mut() {
            Some(last) if last.path == g.path => {
                last.access = last.access.union(g.access);
                last.walk |= g.walk;
                // A read-only control file over a writable workdir stays read-only.
                if last.origin == Origin::Control || g.origin == Origin::Control {
                    last.access = Access::READ;
                    last.origin = Origin::Control;
                }
            }
            _ => merged.push(g),
        }
    }
    Ok(merged)
}

fn workdir_access(session: &Session) -> Result<Option<Access>, Error> {
    let raw = session
        .profile
        .profile
        .workdir
        .as_ref()
        .and_then(|w| w.access.clone())
        .unwrap_or_default();
    Ok(match raw.as_str() {
        "" | "none" => None,
        "read" => Some(Access::READ),
        "write" => Some(Access::WRITE),
        _ => Some(Access::READ_WRITE),
    })
}

/// Refuses work directories that would grant far more than a project.
fn check_workdir(workdir: &Path, host: &HostFacts) -> Result<(), Error> {
    let too_wide = workdir == Path::new("/")
        || BASELINE_READ
            .iter()
            .filter(|b| !b.starts_with('~'))
            .any(|b| workdir == Path::new(b))
        || (workdir != host.home && is_within(&host.home, workdir));
    if too_wide {
        return Err(Error::Input {
            message: format!(
                "the work directory {} would expose far more than a project",
                workdir.display()
            ),
            fix: "run omac from a project directory, or pass --workdir DIR".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testing::{s, scratch};

    #[test]
    fn control_directories_stay_read_only_even_when_missing() {
        let sc = scratch();
        let mount = |l: &crate::Loaded, p: &str| {
            l.config
                .mounts
                .iter()
                .find(|m| m.destination == p)
                .map(|m| {
                    (
                        m.kind.clone().unwrap_or_default(),
                        m.options.contains(&"ro".to_string()),
                    )
                })
        };
        let omac_dir = s(&sc.path("work/.omac"));
        let user_dir = s(&sc.path("home/.config/omac"));
        // Missing, inside writable trees: an empty read-only tmpfs in their place.
        let l = sc.bundle(
            "a",
            r#"{"workdir": {"access": "readwrite"}, "filesystem": {"allow": ["~"]}}"#,
            Default::default(),
        );
        assert_eq!(mount(&l, &omac_dir), Some(("tmpfs".into(), true)));
        assert_eq!(mount(&l, &user_dir), Some(("tmpfs".into(), true)));
        // Present: bound read-only.
        std::fs::create_dir_all(sc.path("work/.omac/profiles")).unwrap();
        std::fs::create_dir_all(sc.path("home/.config/omac")).unwrap();
        let l = sc.bundle(
            "b",
            r#"{"workdir": {"access": "readwrite"}, "filesystem": {"allow": ["~"]}}"#,
            Default::default(),
        );
        assert_eq!(mount(&l, &omac_dir), Some(("bind".into(), true)));
        assert_eq!(mount(&l, &user_dir), Some(("bind".into(), true)));
        // Not in a writable tree: nothing added (not even a read-only view of the home's).
        let l = sc.bundle(
            "c",
            r#"{"workdir": {"access": "read"}}"#,
            Default::default(),
        );
        assert_eq!(mount(&l, &omac_dir), None);
        assert_eq!(mount(&l, &user_dir), None);
    }
}
