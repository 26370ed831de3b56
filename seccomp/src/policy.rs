//! omac's default agent syscall policy, organised in named groups, and profile edits on it.
//!
//! The policy allows by default and refuses what an agent never needs and what would let it
//! undo the sandbox: new namespaces, the mount API, io_uring (which bypasses the socket
//! rules), the kernel keyring, bpf, perf, userfaultfd, kernel-level switches, terminal
//! injection, exotic socket families and personality flags that weaken ASLR. Argument checks
//! on `int` arguments use a 32-bit mask so that garbage in the upper half cannot evade them.
//!
//! `ptrace` and `process_vm_readv/writev` stay allowed by default: debuggers and strace are
//! ordinary developer tools, and tracing cannot reach beyond the sandbox. The agent sees only
//! its own pid namespace, omac's init is not dumpable, every capability is dropped, and
//! Landlock forbids tracing a process outside the agent's domain. The `ptrace` group refuses
//! them for profiles that want it (the built-in `strict` profile does).

use crate::errno;
use crate::oci::{Action, Arch, Arg, LinuxSeccomp, Op};
use crate::syscalls;
use crate::Error;

/// Mask that makes a comparison look at the low 32 bits only (the kernel truncates `int`s).
const LOW32: u64 = 0xffff_ffff;

/// Namespace flags of `clone(2)`; `unshare(2)` also accepts `CLONE_NEWTIME`.
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];
const CLONE_NEWTIME: u64 = 0x80;

/// Socket families an agent may create: everything else is refused.
pub const ALLOWED_SOCKET_FAMILIES: &[(&str, i32)] = &[
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
    ("AF_NETLINK", libc::AF_NETLINK),
];

/// Families are refused up to this bound (Linux defines up to 45; higher ones fail anyway
/// with the same EAFNOSUPPORT), so that the refused set packs into few aligned blocks.
const FAMILY_BOUND: u64 = 64;

/// The refused families as aligned power-of-two blocks `(mask, value)`: a family `f` is in
/// a block when `f & mask == value`. Each block is one rule, so the filter stays small.
fn family_blocks(allowed: &[i32]) -> Vec<(u64, u64)> {
    let refused = |f: u64| !allowed.contains(&(f as i32));
    let mut out = Vec::new();
    let mut x = 0u64;
    while x < FAMILY_BOUND {
        if !refused(x) {
            x += 1;
            continue;
        }
        let mut size = 1u64;
        while x.is_multiple_of(size * 2)
            && x + size * 2 <= FAMILY_BOUND
            && (x..x + size * 2).all(refused)
        {
            size *= 2;
        }
        out.push((LOW32 & !(size - 1), x));
        x += size;
    }
    out
}

/// `personality(2)` flags that weaken address-space randomisation or memory protection.
const WEAKENING_PERSONALITY_FLAGS: &[u64] = &[
    0x0040000, // ADDR_NO_RANDOMIZE
    0x0200000, // ADDR_COMPAT_LAYOUT
    0x0400000, // READ_IMPLIES_EXEC
    0x0100000, // MMAP_PAGE_ZERO
];

/// A named set of rules of the policy, as `bundle explain` reports them.
#[derive(Debug, Clone)]
pub struct Group {
    /// Name used in profiles (`@name`) and reports.
    pub name: &'static str,
    /// What the group refuses, in plain words.
    pub description: &'static str,
    /// Whether the default agent policy contains it.
    pub default: bool,
    /// The rules, as OCI data.
    pub rules: Vec<crate::oci::Syscall>,
}

fn rule(names: &[&str], errno: i32, args: Vec<Arg>) -> crate::oci::Syscall {
    crate::oci::Syscall {
        names: names.iter().map(|s| s.to_string()).collect(),
        action: Action::Errno,
        errno_ret: Some(errno as u32),
        args,
    }
}

fn masked(index: u32, mask: u64, expected: u64) -> Arg {
    Arg {
        index,
        value: mask,
        value_two: Some(expected),
        op: Op::MaskedEqual,
    }
}

/// Keeps only the names this architecture has (x86_64-only calls vanish on aarch64).
fn present(names: &[&'static str]) -> Vec<&'static str> {
    names
        .iter()
        .copied()
        .filter(|n| syscalls::is_known(n))
        .collect()
}

/// Every group omac knows, default ones first, in a fixed order.
// libc's ioctl request constants change type between targets, so the casts stay.
#[allow(clippy::unnecessary_cast)]
pub fn groups() -> Vec<Group> {
    let eperm = libc::EPERM;
    let mut namespace_rules: Vec<_> = CLONE_NS_FLAGS
        .iter()
        .map(|f| rule(&["clone"], eperm, vec![masked(0, *f, *f)]))
        .collect();
    namespace_rules.extend(
        CLONE_NS_FLAGS
            .iter()
            .chain(std::iter::once(&CLONE_NEWTIME))
            .map(|f| rule(&["unshare"], eperm, vec![masked(0, *f, *f)])),
    );
    namespace_rules.push(rule(&["setns"], eperm, vec![]));
    // clone3 passes its flags in memory, out of the filter's reach: ENOSYS makes libc fall
    // back to clone(2), whose flags the rules above can see.
    namespace_rules.push(rule(&["clone3"], libc::ENOSYS, vec![]));

    let allowed: Vec<i32> = ALLOWED_SOCKET_FAMILIES.iter().map(|(_, f)| *f).collect();
    let socket_rules = family_blocks(&allowed)
        .into_iter()
        .map(|(mask, value)| {
            rule(
                &["socket"],
                libc::EAFNOSUPPORT,
                vec![masked(0, mask, value)],
            )
        })
        .collect();

    vec![
        Group {
            name: "io_uring",
            description: "io_uring (its requests bypass the socket and file rules)",
            default: true,
            rules: vec![rule(
                &["io_uring_setup", "io_uring_enter", "io_uring_register"],
                eperm,
                vec![],
            )],
        },
        Group {
            name: "namespaces",
            description: "creating or joining namespaces (the nested-user-namespace detach attack)",
            default: true,
            rules: namespace_rules,
        },
        Group {
            name: "mount",
            description: "mounting, unmounting, pivot_root, chroot and the new mount API",
            default: true,
            rules: vec![rule(
                &present(&[
                    "mount",
                    "umount2",
                    "pivot_root",
                    "open_tree",
                    "move_mount",
                    "fsopen",
                    "fsconfig",
                    "fsmount",
                    "fspick",
                    "mount_setattr",
                    "chroot",
                ]),
                eperm,
                vec![],
            )],
        },
        Group {
            name: "keyring",
            description: "the kernel keyring (keyctl, add_key, request_key)",
            default: true,
            rules: vec![rule(&["keyctl", "add_key", "request_key"], eperm, vec![])],
        },
        Group {
            name: "bpf",
            description: "loading eBPF programs",
            default: true,
            rules: vec![rule(&["bpf"], eperm, vec![])],
        },
        Group {
            name: "perf",
            description: "perf_event_open (kernel profiling and side channels)",
            default: true,
            rules: vec![rule(&["perf_event_open"], eperm, vec![])],
        },
        Group {
            name: "userfaultfd",
            description: "userfaultfd (a classic kernel-exploit primitive)",
            default: true,
            rules: vec![rule(&["userfaultfd"], eperm, vec![])],
        },
        Group {
            name: "kernel",
            description: "kexec, kernel modules, reboot, swap and process accounting",
            default: true,
            rules: vec![rule(
                &present(&[
                    "kexec_load",
                    "kexec_file_load",
                    "init_module",
                    "finit_module",
                    "delete_module",
                    "reboot",
                    "swapon",
                    "swapoff",
                    "acct",
                ]),
                eperm,
                vec![],
            )],
        },
        Group {
            name: "tty-injection",
            description: "pushing input into a terminal (ioctl TIOCSTI, TIOCLINUX)",
            default: true,
            rules: vec![
                rule(
                    &["ioctl"],
                    eperm,
                    vec![masked(1, LOW32, libc::TIOCSTI as u64)],
                ),
                rule(
                    &["ioctl"],
                    eperm,
                    vec![masked(1, LOW32, libc::TIOCLINUX as u64)],
                ),
            ],
        },
        Group {
            name: "socket-families",
            description: "sockets other than AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK \
                          (packet, vsock, bluetooth, alg, ...)",
            default: true,
            rules: socket_rules,
        },
        Group {
            name: "personality",
            description: "personality flags that disable ASLR or make data executable",
            default: true,
            rules: WEAKENING_PERSONALITY_FLAGS
                .iter()
                .map(|f| rule(&["personality"], eperm, vec![masked(0, *f, *f)]))
                .collect(),
        },
        Group {
            name: "ptrace",
            description: "ptrace and process_vm_readv/writev (debuggers, strace)",
            default: false,
            rules: vec![rule(
                &["ptrace", "process_vm_readv", "process_vm_writev"],
                eperm,
                vec![],
            )],
        },
    ]
}

/// The group called `name`, if omac has one.
pub fn group(name: &str) -> Option<Group> {
    groups().into_iter().find(|g| g.name == name)
}

/// Changes a profile makes to the default policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// Groups (`@name`) or syscall names whose default rules are removed.
    pub lift: Vec<String>,
    /// Groups (`@name`), syscall names, or `name:ERRNO` to refuse in addition.
    pub deny: Vec<String>,
}

/// A `deny` entry after parsing.
enum Deny {
    Group(Group),
    Syscall { name: String, errno: u32 },
}

fn parse_deny(entry: &str) -> Result<Deny, Error> {
    if let Some(g) = entry.strip_prefix('@') {
        return group(g)
            .map(Deny::Group)
            .ok_or_else(|| Error::UnknownGroup(g.to_string()));
    }
    let (name, errno) = match entry.split_once(':') {
        Some((n, e)) => {
            let v = errno::by_name(e).ok_or_else(|| Error::UnknownErrno(e.to_string()))?;
            (n, v)
        }
        None => (entry, libc::EPERM as u32),
    };
    if !syscalls::is_known(name) {
        return Err(Error::UnknownSyscall(name.to_string()));
    }
    Ok(Deny::Syscall {
        name: name.to_string(),
        errno,
    })
}

/// Checks one `lift` or `deny` entry without building a policy (for profile validation).
pub fn check_entry(entry: &str, is_lift: bool) -> Result<(), Error> {
    if is_lift {
        if let Some(g) = entry.strip_prefix('@') {
            return group(g)
                .map(|_| ())
                .ok_or_else(|| Error::UnknownGroup(g.to_string()));
        }
        if syscalls::is_known(entry) {
            Ok(())
        } else {
            Err(Error::UnknownSyscall(entry.to_string()))
        }
    } else {
        parse_deny(entry).map(|_| ())
    }
}

/// The agent policy for this architecture: the default groups, minus what `edits` lifts,
/// plus what it denies. A syscall both lifted and denied stays denied.
pub fn agent_policy(edits: &Edits) -> Result<LinuxSeccomp, Error> {
    let arch = Arch::native().ok_or(Error::UnsupportedArch)?;
    let mut lifted_groups = Vec::new();
    let mut lifted_names = Vec::new();
    for entry in &edits.lift {
        check_entry(entry, true)?;
        match entry.strip_prefix('@') {
            Some(g) => lifted_groups.push(g.to_string()),
            None => lifted_names.push(entry.clone()),
        }
    }
    let denies = edits
        .deny
        .iter()
        .map(|d| parse_deny(d))
        .collect::<Result<Vec<_>, _>>()?;
    let denied_groups: Vec<&str> = denies
        .iter()
        .filter_map(|d| match d {
            Deny::Group(g) => Some(g.name),
            Deny::Syscall { .. } => None,
        })
        .collect();

    let mut rules = Vec::new();
    for g in groups() {
        let wanted_by_default = g.default && !lifted_groups.iter().any(|l| l == g.name);
        if !(wanted_by_default || denied_groups.contains(&g.name)) {
            continue;
        }
        let from_deny = denied_groups.contains(&g.name);
        for mut r in g.rules {
            if !from_deny {
                r.names.retain(|n| !lifted_names.contains(n));
            }
            if !r.names.is_empty() {
                rules.push(r);
            }
        }
    }
    for d in denies {
        if let Deny::Syscall { name, errno } = d {
            rules.push(rule(&[name.as_str()], errno as i32, vec![]));
        }
    }
    Ok(LinuxSeccomp {
        architectures: vec![arch],
        ..LinuxSeccomp::allowing_all_but(rules)
    })
}

/// How much of one group a filter contains, for `bundle explain` and `bundle diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCoverage {
    /// The group's name.
    pub name: &'static str,
    /// The group's description.
    pub description: &'static str,
    /// True when every rule of the group is in the filter.
    pub complete: bool,
    /// Syscall names of the group that some rule of the filter refuses.
    pub refused: Vec<String>,
}

/// Which groups `filter` contains, and the refusing rules that belong to no group.
pub fn describe(filter: &LinuxSeccomp) -> (Vec<GroupCoverage>, Vec<String>) {
    let refusing = |a: Action| !matches!(a, Action::Allow | Action::Log);
    let mut covered = vec![false; filter.syscalls.len()];
    let mut out = Vec::new();
    for g in groups() {
        let mut complete = true;
        let mut refused = Vec::new();
        for r in &g.rules {
            for name in &r.names {
                let hit = filter.syscalls.iter().enumerate().find(|(_, s)| {
                    refusing(s.action) && s.names.contains(name) && s.args == r.args
                });
                match hit {
                    Some((i, _)) => {
                        covered[i] = true;
                        if !refused.contains(name) {
                            refused.push(name.clone());
                        }
                    }
                    None => complete = false,
                }
            }
        }
        if !refused.is_empty() {
            out.push(GroupCoverage {
                name: g.name,
                description: g.description,
                complete,
                refused,
            });
        }
    }
    let mut other = Vec::new();
    for (i, s) in filter.syscalls.iter().enumerate() {
        if covered[i] || !refusing(s.action) {
            continue;
        }
        let how = match s.action {
            Action::Errno => errno::name_of(s.errno_ret.unwrap_or(libc::EPERM as u32)),
            a => a.spec_name(),
        };
        let cond = if s.args.is_empty() {
            String::new()
        } else {
            " (when its arguments match)".to_string()
        };
        for n in &s.names {
            let line = format!("{n} -> {how}{cond}");
            if !other.contains(&line) {
                other.push(line);
            }
        }
    }
    (out, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_names_only_known_syscalls() {
        let p = agent_policy(&Edits::default()).unwrap();
        for r in &p.syscalls {
            for n in &r.names {
                assert!(syscalls::is_known(n), "{n}");
            }
        }
        assert_eq!(p.default_action, Action::Allow);
        assert_eq!(p.architectures, vec![Arch::native().unwrap()]);
    }

    #[test]
    fn default_policy_contains_every_default_group_and_not_ptrace() {
        let p = agent_policy(&Edits::default()).unwrap();
        let (cov, other) = describe(&p);
        let names: Vec<_> = cov.iter().map(|c| c.name).collect();
        for g in groups().iter().filter(|g| g.default) {
            assert!(names.contains(&g.name), "{}", g.name);
        }
        assert!(!names.contains(&"ptrace"));
        assert!(cov.iter().all(|c| c.complete));
        assert!(other.is_empty(), "{other:?}");
    }

    #[test]
    fn lifting_a_syscall_removes_it_and_leaves_its_neighbours() {
        let edits = Edits {
            lift: vec!["io_uring_enter".into(), "@bpf".into()],
            deny: vec![],
        };
        let p = agent_policy(&edits).unwrap();
        let all: Vec<_> = p.syscalls.iter().flat_map(|s| s.names.clone()).collect();
        assert!(!all.contains(&"io_uring_enter".to_string()));
        assert!(all.contains(&"io_uring_setup".to_string()));
        assert!(!all.contains(&"bpf".to_string()));
        let (cov, _) = describe(&p);
        let io = cov.iter().find(|c| c.name == "io_uring").unwrap();
        assert!(!io.complete);
    }

    #[test]
    fn deny_adds_groups_and_syscalls_and_beats_lift() {
        let edits = Edits {
            lift: vec!["ptrace".into()],
            deny: vec!["@ptrace".into(), "uname:ENOSYS".into()],
        };
        let p = agent_policy(&edits).unwrap();
        let (cov, other) = describe(&p);
        assert!(cov.iter().any(|c| c.name == "ptrace" && c.complete));
        assert_eq!(other, vec!["uname -> ENOSYS".to_string()]);
    }

    #[test]
    fn unknown_names_are_refused() {
        for (lift, deny, want) in [
            (vec!["@nope"], vec![], "nope"),
            (vec![], vec!["nosuchcall"], "nosuchcall"),
            (vec![], vec!["uname:EWHAT"], "EWHAT"),
        ] {
            let e = agent_policy(&Edits {
                lift: lift.into_iter().map(String::from).collect(),
                deny: deny.into_iter().map(String::from).collect(),
            })
            .unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn socket_rules_refuse_every_family_but_the_allowed_four() {
        let g = group("socket-families").unwrap();
        // Every family some rule's (mask, value) block covers.
        let refused: Vec<u64> = (0..FAMILY_BOUND)
            .filter(|f| {
                g.rules.iter().any(|r| {
                    let a = &r.args[0];
                    f & a.value == a.value_two.unwrap()
                })
            })
            .collect();
        assert_eq!(refused.len() as u64, FAMILY_BOUND - 4);
        assert!(g.rules.len() <= 12, "{} rules", g.rules.len());
        assert!(refused.contains(&(libc::AF_PACKET as u64)));
        assert!(refused.contains(&(libc::AF_VSOCK as u64)));
        assert!(!refused.contains(&(libc::AF_UNIX as u64)));
        assert!(!refused.contains(&(libc::AF_NETLINK as u64)));
    }
}
