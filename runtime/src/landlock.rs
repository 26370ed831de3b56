//! Landlock for the agent: the kernel's ABI probed, the bundle's rights limited to what it
//! supports (a `required` bundle refuses a kernel below its minimum ABI), TCP port rules and
//! IPC scopes, and the status achieved per part.

use std::os::fd::{AsRawFd, OwnedFd};

use landlock::{
    AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope,
};
use omac_bundle::ext::{FsRule, NetRules};
use omac_bundle::rights;

use crate::report::{LayerStatus, Level};
use crate::sys;

/// The Landlock ABI of the running kernel (0 when Landlock is missing or disabled).
pub fn abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: no attributes, size 0.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        0
    } else {
        v as u32
    }
}

fn right(name: &str) -> Option<AccessFs> {
    Some(match name {
        "execute" => AccessFs::Execute,
        "write_file" => AccessFs::WriteFile,
        "read_file" => AccessFs::ReadFile,
        "read_dir" => AccessFs::ReadDir,
        "remove_dir" => AccessFs::RemoveDir,
        "remove_file" => AccessFs::RemoveFile,
        "make_char" => AccessFs::MakeChar,
        "make_dir" => AccessFs::MakeDir,
        "make_reg" => AccessFs::MakeReg,
        "make_sock" => AccessFs::MakeSock,
        "make_fifo" => AccessFs::MakeFifo,
        "make_block" => AccessFs::MakeBlock,
        "make_sym" => AccessFs::MakeSym,
        "refer" => AccessFs::Refer,
        "truncate" => AccessFs::Truncate,
        "ioctl_dev" => AccessFs::IoctlDev,
        _ => return None,
    })
}

/// Rights that apply to a file (the others only to directories).
fn file_rights() -> BitFlags<AccessFs> {
    AccessFs::Execute
        | AccessFs::WriteFile
        | AccessFs::ReadFile
        | AccessFs::Truncate
        | AccessFs::IoctlDev
}

/// `struct landlock_path_beneath_attr` (packed, as the kernel reads it).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

impl PathBeneathAttr {
    fn new(parent: &OwnedFd, allowed_access: u64) -> PathBeneathAttr {
        PathBeneathAttr {
            allowed_access,
            parent_fd: parent.as_raw_fd(),
        }
    }
}

/// `struct landlock_net_port_attr`.
#[repr(C, packed)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

impl NetPortAttr {
    fn new(port: u16, access: AccessNet) -> NetPortAttr {
        NetPortAttr {
            allowed_access: BitFlags::from(access).bits(),
            port: port.into(),
        }
    }
}

/// A Landlock rule of one of the two kinds above.
trait RuleAttr {
    /// `LANDLOCK_RULE_PATH_BENEATH` (1) or `LANDLOCK_RULE_NET_PORT` (2).
    const TYPE: libc::c_uint;
}

impl RuleAttr for PathBeneathAttr {
    const TYPE: libc::c_uint = 1;
}

impl RuleAttr for NetPortAttr {
    const TYPE: libc::c_uint = 2;
}

/// landlock_add_rule(2).
fn add_rule<A: RuleAttr>(ruleset: &OwnedFd, attr: &A) -> std::io::Result<()> {
    // SAFETY: a ruleset descriptor of ours and an attribute of the rule type given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            A::TYPE,
            attr as *const A,
            0 as libc::c_uint,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What the agent's Landlock domain should hold.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Filesystem rules (paths as the agent sees them).
    pub fs: Vec<FsRule>,
    /// TCP port rules.
    pub net: NetRules,
    /// IPC scopes.
    pub scopes: Vec<String>,
    /// Lowest ABI that provides what the rules need.
    pub min_abi: u32,
    /// A kernel below `min_abi` (or without Landlock) stops the run.
    pub fs_required: bool,
    /// A kernel without TCP rules stops the run when port rules are asked for.
    pub net_required: bool,
}

/// The status achieved.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The kernel's ABI.
    pub abi: u32,
    /// Filesystem rules.
    pub fs: LayerStatus,
    /// TCP rules.
    pub net: LayerStatus,
    /// Scopes.
    pub scopes: LayerStatus,
    /// Rule paths that do not exist (skipped).
    pub skipped: Vec<String>,
}

/// A refusal: the bundle requires what the kernel lacks, or the kernel refused.
#[derive(Debug)]
pub struct Refusal {
    /// The layer (`landlock-fs`, `landlock-net`).
    pub layer: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub fix: String,
}

const KERNEL_FIX: &str = "use a kernel with Landlock enabled (Linux 5.19 or newer, `landlock` in \
                          the lsm= boot parameter), or a profile whose enforcement.require does \
                          not list landlock-fs";

/// Restricts the calling (single-threaded) process.
pub fn apply(req: &Request) -> Result<Applied, Refusal> {
    let abi = abi();
    if abi == 0 || abi < req.min_abi {
        let message = if abi == 0 {
            "Landlock is not available in this kernel".to_string()
        } else {
            format!(
                "the kernel's Landlock ABI {abi} is below the bundle's minimum {}",
                req.min_abi
            )
        };
        if req.fs_required {
            return Err(Refusal {
                layer: "landlock-fs",
                message,
                fix: KERNEL_FIX.into(),
            });
        }
        if abi == 0 {
            let none = || LayerStatus::none(message.clone());
            return Ok(Applied {
                abi,
                fs: none(),
                net: none(),
                scopes: none(),
                skipped: vec![],
            });
        }
    }
    // Rights this kernel knows; the bundle's others are reported as not enforced.
    let supported: Vec<&str> = rights::ALL
        .iter()
        .filter(|(_, a)| *a <= abi)
        .map(|(n, _)| *n)
        .collect();
    let handled: BitFlags<AccessFs> = supported.iter().filter_map(|n| right(n)).collect();
    let mut dropped: Vec<String> = Vec::new();
    let mut rules: Vec<(OwnedFd, BitFlags<AccessFs>)> = Vec::new();
    let mut skipped = Vec::new();
    for r in &req.fs {
        let mut access = BitFlags::<AccessFs>::empty();
        for a in &r.access {
            match (supported.contains(&a.as_str()), right(a)) {
                (true, Some(f)) => access |= f,
                _ => {
                    if !dropped.contains(a) {
                        dropped.push(a.clone());
                    }
                }
            }
        }
        let Ok(path) = sys::cstr(&r.path) else {
            continue;
        };
        // Most rules name directories: opened as one first, a rule's type needs no fstat.
        let opened = match sys::openat(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                sys::openat(libc::AT_FDCWD, &path, libc::O_PATH, 0).map(|fd| (fd, false))
            }
            other => other.map(|fd| (fd, true)),
        };
        let Ok((fd, is_dir)) = opened else {
            skipped.push(r.path.clone());
            continue;
        };
        if !is_dir {
            access &= file_rights();
        }
        if !access.is_empty() {
            rules.push((fd, access));
        }
    }

    let wants_net = req.net.bind_tcp.is_some() || req.net.connect_tcp.is_some();
    let mut net_handled = BitFlags::<AccessNet>::empty();
    let net_status = if !wants_net {
        LayerStatus::none("no TCP port rules (the network namespace isolates the agent)")
    } else if abi < 4 {
        let message = format!("TCP port rules need Landlock ABI 4; the kernel has {abi}");
        if req.net_required {
            return Err(Refusal {
                layer: "landlock-net",
                message,
                fix: "use Linux 6.7 or newer, or a profile whose enforcement.require does not list landlock-net".into(),
            });
        }
        LayerStatus::none(message)
    } else {
        if req.net.bind_tcp.is_some() {
            net_handled |= AccessNet::BindTcp;
        }
        if req.net.connect_tcp.is_some() {
            net_handled |= AccessNet::ConnectTcp;
        }
        let ports = |v: &Option<Vec<u16>>| {
            v.as_ref()
                .map(|p| p.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
        };
        let mut parts = Vec::new();
        if let Some(b) = ports(&req.net.bind_tcp) {
            parts.push(format!("bind only to ports [{b}]"));
        }
        if let Some(c) = ports(&req.net.connect_tcp) {
            parts.push(format!("connect only to ports [{c}]"));
        }
        LayerStatus::new(Level::Full, parts.join("; "))
    };

    let mut scopes = BitFlags::<Scope>::empty();
    for s in &req.scopes {
        match s.as_str() {
            "abstract_unix_socket" => scopes |= Scope::AbstractUnixSocket,
            "signal" => scopes |= Scope::Signal,
            _ => {}
        }
    }
    let scope_status = if scopes.is_empty() {
        LayerStatus::none("none requested")
    } else if abi < 6 {
        scopes = BitFlags::empty();
        LayerStatus::none(format!(
            "IPC scopes need Landlock ABI 6; the kernel has {abi}"
        ))
    } else {
        LayerStatus::new(Level::Full, req.scopes.join(", "))
    };

    let refused = |e: landlock::RulesetError| Refusal {
        layer: "landlock-fs",
        message: format!("the kernel refused the Landlock ruleset: {e}"),
        fix: "run `omac doctor`".into(),
    };
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled)
        .map_err(refused)?;
    if !net_handled.is_empty() {
        ruleset = ruleset.handle_access(net_handled).map_err(refused)?;
    }
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes).map_err(refused)?;
    }
    let created = ruleset.create().map_err(refused)?;
    let Some(ruleset_fd) = Option::<OwnedFd>::from(created) else {
        return Err(Refusal {
            layer: "landlock-fs",
            message: "the kernel made no Landlock ruleset".into(),
            fix: "run `omac doctor`".into(),
        });
    };
    // The rules go in directly: the crate's own checks would fstat every path again, and
    // each right was checked against the kernel's ABI above.
    let kernel = |e: std::io::Error| Refusal {
        layer: "landlock-fs",
        message: format!("the kernel refused a Landlock rule: {e}"),
        fix: "run `omac doctor`".into(),
    };
    let count = rules.len();
    for (fd, access) in rules {
        add_rule(&ruleset_fd, &PathBeneathAttr::new(&fd, access.bits())).map_err(kernel)?;
    }
    for (ports, access) in [
        (&req.net.bind_tcp, AccessNet::BindTcp),
        (&req.net.connect_tcp, AccessNet::ConnectTcp),
    ] {
        if net_handled.contains(access) {
            for p in ports.iter().flatten() {
                add_rule(&ruleset_fd, &NetPortAttr::new(*p, access)).map_err(kernel)?;
            }
        }
    }
    let enforce = |e: std::io::Error| Refusal {
        layer: "landlock-fs",
        message: format!("the kernel refused to enforce the Landlock ruleset: {e}"),
        fix: "run `omac doctor`".into(),
    };
    // As the crate's restrict_self: no_new_privs first (an unprivileged caller needs it).
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(enforce)?;
    // SAFETY: a ruleset descriptor of ours; no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset_fd.as_raw_fd(),
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(enforce(std::io::Error::last_os_error()));
    }

    let mut detail = format!("ABI {abi}, {count} rules");
    let fs_level = if dropped.is_empty() && abi >= req.min_abi {
        Level::Full
    } else {
        if !dropped.is_empty() {
            detail.push_str(&format!(
                "; not enforced by this kernel: {}",
                dropped.join(", ")
            ));
        }
        if abi < req.min_abi {
            detail.push_str(&format!("; below the bundle's minimum ABI {}", req.min_abi));
        }
        Level::Partial
    };
    Ok(Applied {
        abi,
        fs: LayerStatus::new(fs_level, detail),
        net: net_status,
        scopes: scope_status,
        skipped,
    })
}
