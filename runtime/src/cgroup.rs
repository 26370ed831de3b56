//! Memory, pids and cpu limits through cgroup v2: a cgroup created next to the caller's (in
//! a delegated subtree), the limits written, init cloned straight into it
//! (`CLONE_INTO_CGROUP`), and the cgroup removed after the run.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use omac_bundle::oci::Resources;

use crate::report::{LayerStatus, Level};
use crate::sys;
use crate::userns::Cause;

/// A cgroup made for one run.
pub struct Placement {
    /// Its parent directory.
    parent: OwnedFd,
    /// Its name in the parent.
    name: String,
    /// The cgroup directory, for `CLONE_INTO_CGROUP`.
    pub fd: OwnedFd,
    /// The caller's own cgroup, to return to.
    home: Option<OwnedFd>,
}

fn write_pid(dir: &OwnedFd) -> io::Result<()> {
    let f = sys::openat(dir.as_raw_fd(), c"cgroup.procs", libc::O_WRONLY, 0)?;
    sys::write_all(f.as_raw_fd(), b"0")
}

impl Placement {
    /// Moves the calling process into the cgroup (where clone3 is unavailable, its children
    /// then start there).
    pub fn enter_self(&self) -> io::Result<()> {
        write_pid(&self.fd)
    }

    /// Moves the calling process back to its own cgroup.
    pub fn leave_self(&self) -> io::Result<()> {
        match &self.home {
            Some(h) => write_pid(h),
            None => Err(io::Error::other("the original cgroup is unknown")),
        }
    }

    /// Removes the cgroup (once its processes are gone).
    pub fn remove(self) {
        let Ok(n) = sys::cstr(&self.name) else { return };
        drop(self.fd);
        for _ in 0..50 {
            // SAFETY: valid descriptor and name.
            if unsafe { libc::unlinkat(self.parent.as_raw_fd(), n.as_ptr(), libc::AT_REMOVEDIR) }
                == 0
            {
                return;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EBUSY) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// The limits of `r` as cgroup v2 files and values, with the controller each needs.
pub fn limits(r: &Resources) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(l) = m.limit.filter(|l| *l > 0) {
            out.push(("memory", "memory.max", l.to_string()));
            if let Some(s) = m.swap.filter(|s| *s >= l) {
                // OCI's swap is memory plus swap.
                out.push(("memory", "memory.swap.max", (s - l).to_string()));
            }
        }
        if let Some(low) = m.reservation.filter(|l| *l > 0) {
            out.push(("memory", "memory.low", low.to_string()));
        }
    }
    if let Some(p) = &r.pids {
        if p.limit > 0 {
            out.push(("pids", "pids.max", p.limit.to_string()));
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(q) = c.quota.filter(|q| *q > 0) {
            out.push((
                "cpu",
                "cpu.max",
                format!("{q} {}", c.period.unwrap_or(100_000)),
            ));
        }
        if let Some(s) = c.shares.filter(|s| *s >= 2) {
            let weight = 1 + ((s.min(262_144) - 2) * 9999) / 262_142;
            out.push(("cpu", "cpu.weight", weight.to_string()));
        }
    }
    out
}

/// Where cgroup v2 is mounted, from /proc/self/mountinfo.
pub fn v2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// This process's cgroup v2 path (`0::/path` in /proc/self/cgroup).
pub fn own_v2_path() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// The controllers a cgroup directory offers at all (`cgroup.controllers`).
pub fn available(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Where a sandbox's cgroup would go and which controllers are enabled there.
pub fn delegation() -> Result<(PathBuf, Vec<String>), Cause> {
    delegation_with_home().map(|(b, e, _)| (b, e))
}

fn delegation_with_home() -> Result<(PathBuf, Vec<String>, PathBuf), Cause> {
    let mount = v2_mount().ok_or_else(|| Cause {
        message: "no cgroup v2 hierarchy is mounted".into(),
        fix: "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)".into(),
    })?;
    let own = own_v2_path().ok_or_else(|| Cause {
        message: "this process is not in a cgroup v2 hierarchy".into(),
        fix: "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)".into(),
    })?;
    let own_dir = if own == "/" {
        mount.clone()
    } else {
        mount.join(own.trim_start_matches('/'))
    };
    // Beside our own cgroup (a process may not sit in a cgroup that has children with
    // controllers), or in it when it is the root.
    let base = if own == "/" {
        own_dir.clone()
    } else {
        own_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(own_dir.clone())
    };
    let enabled: Vec<String> = std::fs::read_to_string(base.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let c = sys::cpath(&base).map_err(|e| Cause {
        message: e.to_string(),
        fix: String::new(),
    })?;
    // SAFETY: valid C string.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(Cause {
            message: format!("the cgroup {} is not writable by this user (not delegated)", base.display()),
            fix: "run omac in a delegated cgroup, for example under `systemd-run --user --scope -p Delegate=yes`".into(),
        });
    }
    Ok((base, enabled, own_dir))
}

/// Creates the run's cgroup with the bundle's limits. `Ok(None)` when there are none.
pub fn setup(r: Option<&Resources>, tag: &str) -> Result<(Option<Placement>, LayerStatus), Cause> {
    let wanted = r.map(limits).unwrap_or_default();
    if wanted.is_empty() {
        return Ok((
            None,
            LayerStatus::none("no memory, pids or cpu limits asked for"),
        ));
    }
    let (base, enabled, own_dir) = delegation_with_home()?;
    let home = sys::cpath(&own_dir)
        .ok()
        .and_then(|c| sys::openat(libc::AT_FDCWD, &c, libc::O_DIRECTORY | libc::O_RDONLY, 0).ok());
    let mut missing: Vec<&str> = wanted
        .iter()
        .map(|(c, _, _)| *c)
        .filter(|c| !enabled.iter().any(|e| e == c))
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        return Err(Cause {
            message: format!(
                "the cgroup v2 controllers {} are not enabled in {} (on a hybrid v1/v2 host they stay on cgroup v1)",
                missing.join(", "),
                base.display()
            ),
            fix: "use cgroup v2 with the controllers delegated to your user (systemd does this for user sessions)".into(),
        });
    }
    let parent = sys::openat(
        libc::AT_FDCWD,
        &sys::cpath(&base).map_err(|e| Cause {
            message: e.to_string(),
            fix: String::new(),
        })?,
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|e| Cause {
        message: format!("{}: {e}", base.display()),
        fix: String::new(),
    })?;
    let name = format!("omac-{tag}");
    let n = sys::cstr(&name).map_err(|e| Cause {
        message: e.to_string(),
        fix: String::new(),
    })?;
    // SAFETY: valid descriptor and name.
    if unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o755) } < 0 {
        let e = io::Error::last_os_error();
        return Err(Cause {
            message: format!(
                "creating {}/{name}: {}",
                base.display(),
                sys::errno_text(&e)
            ),
            fix: "run omac in a delegated cgroup".into(),
        });
    }
    let fd = sys::openat(
        parent.as_raw_fd(),
        &n,
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    );
    let placement = match fd {
        Ok(fd) => Placement {
            parent,
            name: name.clone(),
            fd,
            home,
        },
        Err(e) => {
            return Err(Cause {
                message: format!("opening {}/{name}: {e}", base.display()),
                fix: String::new(),
            })
        }
    };
    let mut set = Vec::new();
    for (_, file, value) in &wanted {
        let f = sys::cstr(file).map_err(|e| Cause {
            message: e.to_string(),
            fix: String::new(),
        });
        let r = f.and_then(|f| {
            sys::openat(placement.fd.as_raw_fd(), &f, libc::O_WRONLY, 0)
                .and_then(|fd| sys::write_all(fd.as_raw_fd(), value.as_bytes()))
                .map_err(|e| Cause {
                    message: format!("writing {file} = {value}: {}", sys::errno_text(&e)),
                    fix: "check the limit's value".into(),
                })
        });
        if let Err(c) = r {
            placement.remove();
            return Err(c);
        }
        set.push(format!("{file}={value}"));
    }
    let detail = format!("{} in {}/{name}", set.join(", "), base.display());
    Ok((Some(placement), LayerStatus::new(Level::Full, detail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omac_bundle::oci::{Cpu, Memory, Pids};

    #[test]
    fn oci_limits_become_cgroup_v2_files() {
        let r = Resources {
            devices: vec![],
            memory: Some(Memory {
                limit: Some(1 << 30),
                reservation: None,
                swap: Some(1 << 30),
            }),
            cpu: Some(Cpu {
                quota: Some(150_000),
                period: Some(100_000),
                ..Cpu::default()
            }),
            pids: Some(Pids { limit: 512 }),
        };
        let l = limits(&r);
        assert!(l.contains(&("memory", "memory.max", "1073741824".into())));
        assert!(l.contains(&("memory", "memory.swap.max", "0".into())));
        assert!(l.contains(&("pids", "pids.max", "512".into())));
        assert!(l.contains(&("cpu", "cpu.max", "150000 100000".into())));
    }
}
