//! The agent's view of the filesystem: OCI mounts over the empty root, the masks over
//! protected paths, and the Landlock rules that repeat the same grants in the kernel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ext::{FsRule, Protected};
use crate::grants::{Access, Grant, Origin};
use crate::host::{is_within, HostFacts};
use crate::oci::Mount;
use crate::profile::model::Filesystem;
use crate::protected;
use crate::rights;
use crate::walk;
use crate::Error;

/// Device nodes every sandbox gets. They are the OCI runtime spec's "default devices",
/// which every runtime MUST supply itself (crun and runc create or bind them), so
/// `config.json` does not mount them: a bind of the host's `/dev/tty` makes runc fail when
/// it runs without a controlling terminal (it opens the mount point to place its own node).
/// Landlock still names them, since the agent needs to open them.
pub const DEVICES: &[&str] = &[
    "/dev/full",
    "/dev/null",
    "/dev/random",
    "/dev/tty",
    "/dev/urandom",
    "/dev/zero",
];

/// /proc entries hidden as in crun's default spec.
pub const MASKED_PROC: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// /proc entries made read-only as in crun's default spec.
pub const READONLY_PROC: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where omac's sockets appear inside.
pub const SOCKET_DIR: &str = "/run/omac";

fn opts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn special(dest: &str, kind: &str, source: &str, options: &[&str]) -> (PathBuf, Mount) {
    (
        PathBuf::from(dest),
        Mount {
            destination: dest.to_string(),
            kind: Some(kind.to_string()),
            source: Some(source.to_string()),
            options: opts(options),
        },
    )
}

fn bind(path: &Path, access: Access, device: bool) -> Mount {
    let mut o = vec!["bind", if access.write { "rw" } else { "ro" }, "nosuid"];
    if !device {
        o.push("nodev");
    }
    Mount {
        destination: path.display().to_string(),
        kind: Some("bind".into()),
        source: Some(path.display().to_string()),
        options: opts(&o),
    }
}

/// The mounts, in order: parents before children; a grant replaces omac's tmpfs at the
/// same place (a profile that grants `/tmp` or `~` gets the host's).
pub fn mounts(
    grants: &[Grant],
    devices: &[PathBuf],
    home: &Path,
    placeholders: &[PathBuf],
) -> Vec<Mount> {
    let mut m: BTreeMap<PathBuf, Mount> = BTreeMap::new();
    for (p, mount) in [
        special("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        special(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        special(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        special(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        special("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"]),
        special(
            SOCKET_DIR,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "noexec", "mode=755", "size=1m"],
        ),
    ] {
        m.insert(p, mount);
    }
    let home_str = home.display().to_string();
    let (_, home_mount) = special(
        &home_str,
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=700"],
    );
    m.insert(home.to_path_buf(), home_mount);
    for d in devices {
        m.insert(d.clone(), bind(d, Access::READ_WRITE, true));
    }
    for g in grants {
        m.insert(g.path.clone(), bind(&g.path, g.access, false));
    }
    for p in placeholders {
        let dest = p.display().to_string();
        let (_, mount) = special(
            &dest,
            "tmpfs",
            "tmpfs",
            &["ro", "nosuid", "nodev", "noexec", "mode=555", "size=4k"],
        );
        m.insert(p.clone(), mount);
    }
    m.into_values().collect()
}

/// The Landlock filesystem rules for the same view.
pub fn landlock_rules(grants: &[Grant], devices: &[PathBuf], home: &Path) -> Vec<FsRule> {
    let mut rules: BTreeMap<PathBuf, Vec<&'static str>> = BTreeMap::new();
    let mut put = |p: &Path, parts: &[&[&'static str]]| {
        let e = rules.entry(p.to_path_buf()).or_default();
        for part in parts {
            e.extend_from_slice(part);
        }
    };
    let rw: &[&[&str]] = &[rights::READ, rights::WRITE];
    // Listing directories reveals nothing: the view holds only what is granted.
    put(Path::new("/"), &[&["read_dir"]]);
    put(
        Path::new("/proc"),
        &[&["read_file", "read_dir", "write_file"]],
    );
    put(Path::new("/tmp"), rw);
    put(Path::new("/dev/shm"), rw);
    put(home, rw);
    put(Path::new("/dev/pts"), &[rights::DEVICE, &["read_dir"]]);
    for d in DEVICES
        .iter()
        .map(Path::new)
        .chain(devices.iter().map(PathBuf::as_path))
    {
        put(d, &[rights::DEVICE, &["read_dir"]]);
    }
    for g in grants {
        match (g.access.read, g.access.write) {
            (true, true) => put(&g.path, rw),
            (false, true) => put(&g.path, &[rights::WRITE]),
            _ => put(&g.path, &[rights::READ]),
        }
    }
    rules
        .into_iter()
        .map(|(path, access)| FsRule {
            path: path.display().to_string(),
            access: rights::set(&[&access]),
        })
        .collect()
}

/// The protected paths to mask: omac's list and the profile's path denies where they lie in
/// a granted tree, and `.env`-like basenames found inside the walked grants.
pub fn protected(
    grants: &[Grant],
    fs: &Filesystem,
    host: &HostFacts,
) -> Result<Vec<Protected>, Error> {
    let lifted = |raw: &str, expanded: Option<&Path>| {
        fs.override_deny
            .iter()
            .any(|o| o == raw || (expanded.is_some() && host.expand(o).as_deref() == expanded))
    };
    let in_view = |p: &Path| grants.iter().any(|g| is_within(p, &g.path));
    let mut found: BTreeMap<PathBuf, &'static str> = BTreeMap::new();
    let add_path = |raw: &str, rule: &'static str, found: &mut BTreeMap<PathBuf, &'static str>| {
        if let Some(p) = host.expand(raw) {
            if !lifted(raw, Some(&p)) && in_view(&p) && std::fs::symlink_metadata(&p).is_ok() {
                found.entry(p).or_insert(rule);
            }
        }
    };
    for raw in protected::for_this_platform() {
        add_path(raw, "baseline", &mut found);
    }
    let mut names: Vec<String> = Vec::new();
    for entry in &fs.deny {
        if crate::profile::validate::is_path_form(entry) {
            add_path(entry, "profile", &mut found);
        } else {
            names.push(entry.clone());
        }
    }
    for n in protected::ENV_FILES {
        if !lifted(n, None) {
            names.push(n.to_string());
        }
    }
    let matcher = walk::Matcher::new(&names).map_err(|e| Error::Input {
        message: format!("filesystem.deny: {e}"),
        fix: "write basename patterns such as \".env\" or \"*.pem\"".into(),
    })?;
    let roots: Vec<PathBuf> = grants
        .iter()
        .filter(|g| g.walk && g.origin != Origin::Control)
        .filter(|g| std::fs::metadata(&g.path).is_ok_and(|m| m.is_dir()))
        .map(|g| g.path.clone())
        .collect();
    for p in walk::find(&roots, &matcher) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rule = if protected::ENV_FILES.contains(&name.as_str()) {
            "env-file"
        } else {
            "profile"
        };
        found.entry(p).or_insert(rule);
    }
    // A mask inside another mask has nothing left to hide.
    let paths: Vec<PathBuf> = found.keys().cloned().collect();
    Ok(found
        .into_iter()
        .filter(|(p, _)| !paths.iter().any(|o| o != p && is_within(p, o)))
        .map(|(p, rule)| Protected {
            path: p.display().to_string(),
            rule: rule.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_devices_are_left_to_the_runtime_but_granted_in_landlock() {
        let home = Path::new("/home/u");
        let gpu = PathBuf::from("/dev/dri");
        let m = mounts(&[], std::slice::from_ref(&gpu), home, &[]);
        for d in DEVICES {
            assert!(m.iter().all(|x| x.destination != *d), "{d} is mounted");
        }
        assert!(m.iter().any(|x| x.destination == "/dev/dri"
            && x.options.contains(&"rw".to_string())
            && !x.options.contains(&"nodev".to_string())));
        let rules = landlock_rules(&[], &[gpu], home);
        for d in DEVICES.iter().copied().chain(["/dev/dri"]) {
            let r = rules.iter().find(|r| r.path == d).expect(d);
            assert!(r.access.contains(&"ioctl_dev".to_string()), "{d}");
        }
    }
}
