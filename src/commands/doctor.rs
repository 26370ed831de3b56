//! `omac doctor`: what this host gives omac, section by section, with `[ok]`, `[warn]` and
//! `[fail]` lines and the fix for each problem. A section is a function returning
//! [`Section`]; add new ones to [`sections`].

use omac_runtime::probe::{self, HostReport};

use crate::exit::Code;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but weaker or slower than it could.
    Warn,
    /// Something omac needs by default is missing.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// The outcome.
    pub status: Status,
    /// What was checked and found.
    pub text: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Check {
    fn new(status: Status, text: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            status,
            text: text.into(),
            fix,
        }
    }
}

/// A titled group of checks.
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading.
    pub title: &'static str,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

/// Every section, in the order printed.
fn sections() -> Vec<Section> {
    vec![sandbox(&probe::host(None))]
}

/// `omac doctor`: prints the report; exits 4 when a check failed.
pub fn run() -> anyhow::Result<i32> {
    println!("omac {}", env!("CARGO_PKG_VERSION"));
    let mut failed = false;
    for s in sections() {
        println!("\n{}", s.title);
        for c in &s.checks {
            let tag = match c.status {
                Status::Ok => "[ok]  ",
                Status::Warn => "[warn]",
                Status::Fail => {
                    failed = true;
                    "[fail]"
                }
            };
            println!("  {tag} {}", c.text);
            if let Some(f) = &c.fix {
                println!("         fix: {f}");
            }
        }
    }
    Ok(if failed { Code::Prerequisite as i32 } else { 0 })
}

const APPARMOR_PROFILE: &str = "write /etc/apparmor.d/omac containing \
`abi <abi/4.0>, include <tunables/global> profile omac /path/to/omac flags=(unconfined) { userns, }` \
(with the real path of the omac binary), then run `apparmor_parser -r /etc/apparmor.d/omac`";

/// The sandbox section: user namespaces, AppArmor, Landlock, seccomp, cgroup v2, and what a
/// bundle gets here.
pub fn sandbox(r: &HostReport) -> Section {
    let mut checks = Vec::new();
    let mut userns_ok = false;
    match &r.stage {
        Err(e) => checks.push(Check::new(
            Status::Fail,
            format!("user namespaces: the probe could not run: {e}"),
            Some("reinstall omac; the binary must be able to run itself".into()),
        )),
        Ok(p) => match (&p.userns, &p.namespaces, &p.mount, &p.loopback) {
            (Some(c), _, _, _) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: unavailable: {}", c.message),
                Some(c.fix.clone()),
            )),
            (None, Some(e), _, _) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: the mount, pid and network namespaces cannot be created: {e}"),
                Some("run omac outside restrictive containers, or raise the namespace limits".into()),
            )),
            (None, None, Some(e), _) | (None, None, None, Some(e)) => checks.push(Check::new(
                Status::Fail,
                format!("user namespaces: created, but privileged setup inside fails: {e}"),
                Some(format!(
                    "this is what AppArmor's restriction does to unconfined programs: {APPARMOR_PROFILE}"
                )),
            )),
            (None, None, None, None) => {
                userns_ok = true;
                checks.push(Check::new(
                    Status::Ok,
                    "user namespaces: available (mount, pid, network, ipc and uts namespaces, mounts and loopback work inside)",
                    None,
                ));
            }
        },
    }
    match (r.apparmor_restrict, r.apparmor_label.as_deref()) {
        (Some(1), label) => {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let unconfined = label.is_none_or(|l| l == "unconfined");
            if unconfined && !root {
                checks.push(Check::new(
                    Status::Warn,
                    "AppArmor restricts unprivileged user namespaces and omac runs unconfined",
                    Some(APPARMOR_PROFILE.into()),
                ));
            } else {
                checks.push(Check::new(
                    Status::Ok,
                    format!(
                        "AppArmor restricts unprivileged user namespaces; omac runs as {}",
                        if root {
                            "root".to_string()
                        } else {
                            format!("profile {}", label.unwrap_or("?"))
                        }
                    ),
                    None,
                ));
            }
        }
        _ => checks.push(Check::new(
            Status::Ok,
            "AppArmor: no user-namespace restriction on this kernel",
            None,
        )),
    }
    let abi = r.landlock_abi;
    checks.push(match abi {
        0 => Check::new(
            Status::Fail,
            "Landlock: not available",
            Some("use Linux 5.19 or newer with `landlock` in the lsm= boot parameter".into()),
        ),
        1 => Check::new(
            Status::Fail,
            "Landlock: ABI 1 (every rename across directories would fail)",
            Some("use Linux 5.19 or newer".into()),
        ),
        2..=3 => Check::new(
            Status::Warn,
            format!("Landlock: ABI {abi} (filesystem only: no TCP port rules, no IPC scopes)"),
            Some("Linux 6.12 or newer gives TCP rules (ABI 4) and scopes (ABI 6)".into()),
        ),
        4..=5 => Check::new(
            Status::Warn,
            format!("Landlock: ABI {abi} (filesystem and TCP ports; no IPC scopes)"),
            Some("Linux 6.12 or newer scopes abstract sockets and signals (ABI 6)".into()),
        ),
        _ => Check::new(
            Status::Ok,
            format!("Landlock: ABI {abi} (filesystem, TCP ports, IPC scopes)"),
            None,
        ),
    });
    checks.push(if r.seccomp_available {
        let note = if r.seccomp_mode == 2 {
            " (omac itself already runs under a filter, as inside a container)"
        } else {
            ""
        };
        Check::new(
            Status::Ok,
            format!("seccomp: filters available{note}"),
            None,
        )
    } else {
        Check::new(
            Status::Fail,
            "seccomp: the kernel offers no seccomp filters",
            Some("use a kernel built with CONFIG_SECCOMP_FILTER".into()),
        )
    });
    let mut limits = false;
    checks.push(match &r.cgroups {
        Ok((base, enabled)) => {
            let missing: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !enabled.iter().any(|e| e == c))
                .collect();
            if missing.is_empty() {
                limits = true;
                Check::new(
                    Status::Ok,
                    format!("cgroup v2: {} is delegated (memory, pids, cpu limits enforced)", base.display()),
                    None,
                )
            } else {
                let offered = omac_runtime::probe::cgroup_controllers(base);
                let absent: Vec<&str> = missing
                    .iter()
                    .copied()
                    .filter(|c| !offered.iter().any(|o| o == c))
                    .collect();
                let (why, fix) = if !absent.is_empty() {
                    (
                        format!(
                            "the cgroup v2 hierarchy offers only [{}] (a hybrid v1/v2 host keeps {} on cgroup v1)",
                            offered.join(" "),
                            absent.join(", ")
                        ),
                        "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1)",
                    )
                } else {
                    (
                        format!("{} are not enabled in {}/cgroup.subtree_control", missing.join(", "), base.display()),
                        "enable them there, or run omac in a systemd user session (it delegates them)",
                    )
                };
                Check::new(
                    Status::Warn,
                    format!("cgroup v2: {why}: memory, pids and cpu limits are not enforced"),
                    Some(fix.into()),
                )
            }
        }
        Err(c) => Check::new(
            Status::Warn,
            format!("cgroup v2: no delegated cgroup ({}): memory, pids and cpu limits are not enforced", c.message),
            Some(c.fix.clone()),
        ),
    });
    let full = userns_ok && abi >= 2 && r.seccomp_available;
    checks.push(if full {
        Check::new(
            Status::Ok,
            format!(
                "a bundle here runs fully confined: namespaces, Landlock ABI {abi}, seccomp; resource limits {}",
                if limits { "enforced" } else { "not enforced (warned at run time)" }
            ),
            None,
        )
    } else if abi >= 2 && r.seccomp_available {
        Check::new(
            Status::Fail,
            "bundles that require namespaces (every built-in profile does) are refused here; a profile \
             whose enforcement.require omits \"namespaces\" runs with Landlock and seccomp only",
            Some("fix the user-namespace problem above".into()),
        )
    } else {
        Check::new(
            Status::Fail,
            "no sandbox can run here: omac never runs an agent unsandboxed",
            Some("fix the problems above".into()),
        )
    });
    Section {
        title: "Sandbox",
        checks,
    }
}
