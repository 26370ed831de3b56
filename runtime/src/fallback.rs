//! The weaker sandbox used when user namespaces are unavailable and the bundle allows it:
//! Landlock rules rewritten for the host's view of the filesystem, and the extra seccomp
//! rules that stand in for the network namespace.

use std::path::{Path, PathBuf};

use omac_bundle::ext::{Extension, FsRule};
use omac_bundle::oci::Spec;
use omac_seccomp::oci::{Action, Arg, LinuxSeccomp, Op, Syscall};

use crate::mountopts::{self, Kind};
use crate::wire::FallbackPlan;

/// Whether `inner` is `outer` or lies beneath it.
fn within(inner: &str, outer: &str) -> bool {
    Path::new(inner).starts_with(Path::new(outer))
}

/// What covers `path` in the sandbox's view: the last mount (in order) whose destination
/// contains it.
fn covering<'a>(path: &str, mounts: &'a [mountopts::Parsed]) -> Option<&'a mountopts::Parsed> {
    mounts
        .iter()
        .filter(|m| within(path, &m.destination))
        .max_by_key(|m| Path::new(&m.destination).components().count())
}

/// The Landlock rules of `ext` for the host's view: a rule under a bind keeps its host path,
/// a rule under a special filesystem (proc, devpts) keeps its path, a rule under a tmpfs or
/// the empty root disappears (the agent gets a private temp directory instead), and `/`
/// loses its read_dir right.
pub fn plan(spec: &Spec, ext: Option<&Extension>, sockets: &[(String, PathBuf)]) -> FallbackPlan {
    let mounts: Vec<mountopts::Parsed> = spec
        .mounts
        .iter()
        .filter_map(|m| mountopts::parse(m).ok())
        .collect();
    let Some(ext) = ext else {
        return FallbackPlan::default();
    };
    let mut rules = Vec::new();
    for r in &ext.landlock.fs {
        if r.path == "/" {
            continue;
        }
        // The default devices the runtime binds from the host at the same path.
        if crate::mounts::DEFAULT_DEVICES.contains(&r.path.as_str()) {
            rules.push(r.clone());
            continue;
        }
        let Some(m) = covering(&r.path, &mounts) else {
            continue;
        };
        let host = match &m.kind {
            Kind::Bind { source, .. } => {
                let rest = Path::new(&r.path)
                    .strip_prefix(&m.destination)
                    .unwrap_or(Path::new(""));
                if rest.as_os_str().is_empty() {
                    source.clone()
                } else {
                    Path::new(source).join(rest).display().to_string()
                }
            }
            Kind::Fs { fstype, .. } if fstype == "tmpfs" || fstype == "mqueue" => continue,
            Kind::Fs { .. } => r.path.clone(),
        };
        // Inside, /dev/ptmx is a link into /dev/pts; on the host it is a device node.
        if host == "/dev/pts" {
            rules.push(FsRule {
                path: "/dev/ptmx".into(),
                access: r.access.clone(),
            });
        }
        rules.push(FsRule {
            path: host,
            access: r.access.clone(),
        });
    }
    let unhidden = ext
        .protected
        .iter()
        .filter(|p| rules.iter().any(|r| within(&p.path, &r.path)))
        .map(|p| p.path.clone())
        .collect();
    let dir = &ext.facade.socket_dir;
    let sockets = sockets
        .iter()
        .map(|(name, host)| {
            (
                format!("{}/{name}", dir.trim_end_matches('/')),
                host.clone(),
            )
        })
        .collect();
    FallbackPlan {
        rules,
        unhidden,
        sockets,
    }
}

fn socket_rule(family: i32, errno: i32) -> Syscall {
    Syscall {
        names: vec!["socket".into()],
        action: Action::Errno,
        errno_ret: Some(errno as u32),
        args: vec![Arg {
            index: 0,
            value: 0xffff_ffff,
            value_two: Some(family as u64),
            op: Op::MaskedEqual,
        }],
    }
}

/// The seccomp rules that replace the network namespace in the fallback: no Unix sockets
/// (they would reach the host's D-Bus, ssh-agent or docker socket by path), and for the
/// `blocked` mode no IP sockets either.
pub fn network_filter(mode: Option<&str>) -> Option<LinuxSeccomp> {
    let mut syscalls = vec![socket_rule(libc::AF_UNIX, libc::EACCES)];
    if mode != Some("open") {
        syscalls.push(socket_rule(libc::AF_INET, libc::EACCES));
        syscalls.push(socket_rule(libc::AF_INET6, libc::EACCES));
        if mode == Some("filtered") {
            // IP sockets stay for the loopback bridges; Landlock allows only their ports.
            syscalls.truncate(1);
        }
    }
    Some(LinuxSeccomp::allowing_all_but(syscalls))
}

/// What the fallback leaves out, in one sentence per point, for the warning.
pub fn weaker(mode: Option<&str>, unhidden: &[String]) -> Vec<String> {
    let mut w = vec![
        "no private mount namespace: the agent sees the host's file tree (Landlock still \
         refuses everything outside the grants)"
            .to_string(),
        "no pid namespace: host processes are visible in /proc (Landlock still refuses \
         signals and ptrace to them)"
            .to_string(),
        "no private /tmp: the agent gets a private temporary directory ($TMPDIR) instead"
            .to_string(),
    ];
    match mode {
        Some("blocked") => w.push(
            "no network namespace: IP and Unix sockets are refused by seccomp instead".into(),
        ),
        Some("filtered") => w.push(
            "no network namespace: the loopback bridges listen on the host's 127.0.0.1 (other \
             local processes can reach them) and Landlock limits TCP connects to their ports \
             on any address; Unix sockets are refused"
                .into(),
        ),
        _ => w.push("Unix sockets are refused (they would reach host services by path)".into()),
    }
    if !unhidden.is_empty() {
        w.push(format!(
            "protected paths inside a grant are NOT hidden: {}",
            unhidden.join(", ")
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use omac_bundle::oci::Mount;

    fn mount(dest: &str, kind: &str, source: &str, opts: &[&str]) -> Mount {
        Mount {
            destination: dest.into(),
            kind: Some(kind.into()),
            source: Some(source.into()),
            options: opts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn rules_follow_the_mount_that_covers_them() {
        let mounts = [
            mount("/proc", "proc", "proc", &[]),
            mount("/tmp", "tmpfs", "tmpfs", &[]),
            mount("/home/u", "tmpfs", "tmpfs", &[]),
            mount(
                "/home/u/.cargo/bin",
                "bind",
                "/home/u/.cargo/bin",
                &["bind", "ro"],
            ),
            mount("/work", "bind", "/srv/work", &["bind"]),
        ];
        let covered = |p: &str| {
            let parsed: Vec<_> = mounts
                .iter()
                .map(|m| mountopts::parse(m).unwrap())
                .collect();
            covering(p, &parsed).map(|m| m.destination.clone())
        };
        assert_eq!(
            covered("/home/u/.cargo/bin/x"),
            Some("/home/u/.cargo/bin".into())
        );
        assert_eq!(covered("/home/u"), Some("/home/u".into()));
        assert_eq!(covered("/etc"), None);
    }

    #[test]
    fn network_rules_per_mode() {
        let n = |m| network_filter(Some(m)).unwrap().syscalls.len();
        assert_eq!(n("blocked"), 3);
        assert_eq!(n("filtered"), 1);
        assert_eq!(n("open"), 1);
    }
}
