//! Entering a user namespace, and when that is impossible, naming the cause and the fix:
//! AppArmor's restriction (Ubuntu 23.10+), a container's seccomp profile (Docker's
//! default), `user.max_user_namespaces=0`, or `kernel.unprivileged_userns_clone=0`.

use std::io;

use omac_bundle::oci::IdMapping;
use serde::{Deserialize, Serialize};

use crate::sys;

/// Why user namespaces are unavailable, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// What is in the way.
    pub message: String,
    /// How to remove it.
    pub fix: String,
}

/// The sentence every fix ends with: the way to run without user namespaces.
pub const FALLBACK_HINT: &str = "or use a profile whose enforcement.require does not list \
                                 \"namespaces\" (omac then runs Landlock and seccomp only)";

fn read_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The AppArmor label of this process (`unconfined` when none).
pub fn apparmor_label() -> Option<String> {
    [
        "/proc/self/attr/apparmor/current",
        "/proc/self/attr/current",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim_end_matches(['\n', '\0']).trim().to_string())
    .filter(|s| !s.is_empty())
}

/// Whether AppArmor will deny capabilities inside a new user namespace of this process:
/// the restriction is on and the process is unconfined and unprivileged.
pub fn apparmor_restricts() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    !root
        && read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1)
        && apparmor_label().is_none_or(|l| l == "unconfined")
}

/// The seccomp mode of this process (0 none, 2 filter).
pub fn seccomp_mode() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The cause behind a failed `unshare(CLONE_NEWUSER)`.
pub fn diagnose(err: &io::Error) -> Cause {
    let max = read_int("/proc/sys/user/max_user_namespaces");
    if max == Some(0) {
        return Cause {
            message: "user namespaces are disabled: user.max_user_namespaces is 0".into(),
            fix: format!(
                "as root: sysctl -w user.max_user_namespaces=15000 (and persist it in \
                 /etc/sysctl.d/), {FALLBACK_HINT}"
            ),
        };
    }
    if err.raw_os_error() == Some(libc::ENOSPC) {
        return Cause {
            message: format!(
                "the limit of user namespaces is reached (user.max_user_namespaces = {})",
                max.unwrap_or(-1)
            ),
            fix: format!("raise user.max_user_namespaces, {FALLBACK_HINT}"),
        };
    }
    if read_int("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Cause {
            message:
                "unprivileged user namespaces are disabled: kernel.unprivileged_userns_clone is 0"
                    .into(),
            fix: format!("as root: sysctl -w kernel.unprivileged_userns_clone=1, {FALLBACK_HINT}"),
        };
    }
    if err.raw_os_error() == Some(libc::EPERM) && seccomp_mode() == 2 {
        return Cause {
            message: "a seccomp filter refuses to create user namespaces (a container's default \
                      profile, such as Docker's, does)"
                .into(),
            fix: format!(
                "run the container with --security-opt seccomp=unconfined (or a profile that \
                 allows unshare and clone with CLONE_NEWUSER), {FALLBACK_HINT}"
            ),
        };
    }
    if err.raw_os_error() == Some(libc::EINVAL) || err.raw_os_error() == Some(libc::ENOSYS) {
        return Cause {
            message: "this kernel has no user namespaces (CONFIG_USER_NS)".into(),
            fix: format!("use a kernel built with user namespaces, {FALLBACK_HINT}"),
        };
    }
    Cause {
        message: format!("unshare(CLONE_NEWUSER) failed: {}", sys::errno_text(err)),
        fix: format!("run `omac doctor` for details, {FALLBACK_HINT}"),
    }
}

/// The cause when AppArmor will take the capabilities a new namespace would give.
pub fn apparmor_cause() -> Cause {
    Cause {
        message: "AppArmor restricts unprivileged user namespaces \
                  (kernel.apparmor_restrict_unprivileged_userns = 1) and omac runs unconfined"
            .into(),
        fix: format!(
            "load an AppArmor profile for the omac binary that allows `userns,` (omac doctor \
             prints one), or as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, \
             {FALLBACK_HINT}"
        ),
    }
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Moves the calling (single-threaded) process into a new user namespace with `uid_map`
/// and `gid_map`; `setgroups` is denied unless `allow_setgroups`.
pub fn enter(
    uid_map: &[IdMapping],
    gid_map: &[IdMapping],
    allow_setgroups: bool,
) -> Result<(), Cause> {
    if apparmor_restricts() {
        return Err(apparmor_cause());
    }
    // SAFETY: unshare with a namespace flag.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
        return Err(diagnose(&io::Error::last_os_error()));
    }
    map("self", uid_map, gid_map, allow_setgroups)
}

/// Writes the id maps of the user namespace `/proc/<proc>` is in: `self` after an unshare,
/// or the pid of a child cloned into a new one (its parent may map its own ids for it).
pub fn map(
    proc_: &str,
    uid_map: &[IdMapping],
    gid_map: &[IdMapping],
    allow_setgroups: bool,
) -> Result<(), Cause> {
    let write = |file: &str, text: &str| {
        let path = format!("/proc/{proc_}/{file}");
        sys::write_file(&path, text).map_err(|e| Cause {
            message: format!("writing {path} ({}): {}", text.trim(), sys::errno_text(&e)),
            fix:
                "regenerate the bundle as this user (an unprivileged user can map only its own ids)"
                    .into(),
        })
    };
    if !allow_setgroups {
        write("setgroups", "deny")?;
    }
    write("uid_map", &map_text(uid_map))?;
    write("gid_map", &map_text(gid_map))?;
    Ok(())
}
