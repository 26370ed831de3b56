//! Installs compiled filters in forked children and checks real syscalls against them.
//!
//! Attribution: the policy's errnos are rewritten to a marker errno no kernel path returns,
//! so a probe that comes back with the marker was refused by *this* rule of the filter, and
//! a neighbouring call that must stay allowed is checked to come back with anything else.
//! A second pass runs the real policy and checks each refusal's own errno.

use omac_seccomp::oci::{Action, LinuxSeccomp};
use omac_seccomp::{agent_policy, compile, CompiledFilter, Edits};

const MARKER: u32 = 4000;

/// One syscall to make: number and six raw arguments.
#[derive(Clone, Copy, Debug)]
struct Probe {
    label: &'static str,
    nr: i64,
    args: [u64; 6],
}

fn p(label: &'static str, nr: i64, args: &[u64]) -> Probe {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    Probe { label, nr, args: a }
}

/// Outcome of a probe in the child: the return value, or the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok(i64),
    Err(i32),
}

/// Forks, installs `filter` in the child, runs the probes, and reports each outcome.
/// The child only makes raw syscalls between fork and _exit (the test harness is threaded).
fn run(filter: Option<&CompiledFilter>, probes: &[Probe]) -> Vec<Outcome> {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::close(fds[0]);
            if let Some(f) = filter {
                if f.install().is_err() {
                    libc::_exit(99);
                }
            }
            for probe in probes {
                let a = probe.args;
                let r = libc::syscall(probe.nr, a[0], a[1], a[2], a[3], a[4], a[5]);
                if r == 0 && probe.nr == libc::SYS_clone {
                    // A clone that went through: this is the new child, leave at once.
                    libc::_exit(0);
                }
                let rec: [i64; 2] = if r < 0 {
                    [0, *libc::__errno_location() as i64]
                } else {
                    [1, r]
                };
                libc::write(fds[1], rec.as_ptr().cast(), 16);
            }
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let mut rec = [0i64; 2];
    while unsafe { libc::read(fds[0], rec.as_mut_ptr().cast(), 16) } == 16 {
        out.push(if rec[0] == 1 {
            Outcome::Ok(rec[1])
        } else {
            Outcome::Err(rec[1] as i32)
        });
    }
    unsafe { libc::close(fds[0]) };
    // A clone that slipped through made a grandchild, which init reaps once the child is
    // gone: never wait for "any child" here, that would steal the other tests' children.
    let status = wait_for(pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    assert_eq!(out.len(), probes.len(), "child stopped early");
    out
}

fn marked(mut f: LinuxSeccomp) -> CompiledFilter {
    for s in &mut f.syscalls {
        if s.action == Action::Errno {
            s.errno_ret = Some(MARKER);
        }
    }
    compile(&f).unwrap()
}

const HIGH: u64 = 0xdead_0000_0000;
const BAD_PTR: u64 = 1;

/// Calls the default policy refuses, with arguments chosen so the kernel itself would
/// answer something else (or succeed harmlessly) if the filter did not fire.
// libc's ioctl request constants change type between targets, so the casts stay.
#[allow(clippy::unnecessary_cast)]
fn refused_probes() -> Vec<Probe> {
    use libc::*;
    let ns = [
        CLONE_NEWNS,
        CLONE_NEWCGROUP,
        CLONE_NEWUTS,
        CLONE_NEWIPC,
        CLONE_NEWUSER,
        CLONE_NEWPID,
        CLONE_NEWNET,
    ];
    let mut v = vec![
        p("io_uring_setup", SYS_io_uring_setup, &[0, BAD_PTR]),
        p(
            "io_uring_enter",
            SYS_io_uring_enter,
            &[u64::MAX, 0, 0, 0, 0, 0],
        ),
        p(
            "io_uring_register",
            SYS_io_uring_register,
            &[u64::MAX, 0, 0, 0],
        ),
        p("setns", SYS_setns, &[u64::MAX, 0]),
        p("clone3", SYS_clone3, &[0, 0]),
        p("mount", SYS_mount, &[BAD_PTR, BAD_PTR, BAD_PTR, 0, 0]),
        p("umount2", SYS_umount2, &[BAD_PTR, 0xffff_0000]),
        p("pivot_root", SYS_pivot_root, &[BAD_PTR, BAD_PTR]),
        p("open_tree", SYS_open_tree, &[u64::MAX, BAD_PTR, 0]),
        p(
            "move_mount",
            SYS_move_mount,
            &[u64::MAX, BAD_PTR, u64::MAX, BAD_PTR, 0],
        ),
        p("fsopen", SYS_fsopen, &[BAD_PTR, 0]),
        p("fsconfig", SYS_fsconfig, &[u64::MAX, 0, 0, 0, 0]),
        p("fsmount", SYS_fsmount, &[u64::MAX, 0, 0]),
        p("fspick", SYS_fspick, &[u64::MAX, BAD_PTR, 0]),
        p(
            "mount_setattr",
            SYS_mount_setattr,
            &[u64::MAX, BAD_PTR, 0, 0, 0],
        ),
        p("chroot", SYS_chroot, &[BAD_PTR]),
        p("keyctl", SYS_keyctl, &[u64::MAX]),
        p("add_key", SYS_add_key, &[BAD_PTR, BAD_PTR, 0, 0, 0]),
        p("request_key", SYS_request_key, &[BAD_PTR, BAD_PTR, 0, 0]),
        p("bpf", SYS_bpf, &[u64::MAX, 0, 0]),
        p(
            "perf_event_open",
            SYS_perf_event_open,
            &[BAD_PTR, 0, 0, 0, 0],
        ),
        p("userfaultfd", SYS_userfaultfd, &[u64::MAX]),
        p("kexec_load", SYS_kexec_load, &[0, u64::MAX, 0, 0]),
        p(
            "kexec_file_load",
            SYS_kexec_file_load,
            &[u64::MAX, u64::MAX, 0, 0, u64::MAX],
        ),
        p("init_module", SYS_init_module, &[BAD_PTR, 0, BAD_PTR]),
        p("finit_module", SYS_finit_module, &[u64::MAX, BAD_PTR, 0]),
        p("delete_module", SYS_delete_module, &[BAD_PTR, 0]),
        // Bogus magic: even an unfiltered root call would only get EINVAL.
        p("reboot", SYS_reboot, &[1, 2, 3, 0]),
        p("swapon", SYS_swapon, &[BAD_PTR, 0]),
        p("swapoff", SYS_swapoff, &[BAD_PTR]),
        p("acct", SYS_acct, &[BAD_PTR]),
        // fd -1: an unfiltered TIOCSTI gets EBADF and never reaches a terminal.
        p("ioctl TIOCSTI", SYS_ioctl, &[u64::MAX, TIOCSTI as u64, 0]),
        p(
            "ioctl TIOCSTI high bits",
            SYS_ioctl,
            &[u64::MAX, HIGH | TIOCSTI as u64, 0],
        ),
        p(
            "ioctl TIOCLINUX",
            SYS_ioctl,
            &[u64::MAX, TIOCLINUX as u64, 0],
        ),
        p(
            "socket AF_PACKET",
            SYS_socket,
            &[AF_PACKET as u64, SOCK_RAW as u64, 0],
        ),
        p(
            "socket AF_VSOCK",
            SYS_socket,
            &[AF_VSOCK as u64, SOCK_STREAM as u64, 0],
        ),
        p(
            "socket AF_ALG",
            SYS_socket,
            &[AF_ALG as u64, SOCK_SEQPACKET as u64, 0],
        ),
        p(
            "socket AF_BLUETOOTH",
            SYS_socket,
            &[AF_BLUETOOTH as u64, SOCK_RAW as u64, 0],
        ),
        p(
            "socket AF_PACKET high bits",
            SYS_socket,
            &[HIGH | AF_PACKET as u64, SOCK_RAW as u64, 0],
        ),
        p(
            "personality ADDR_NO_RANDOMIZE",
            SYS_personality,
            &[0x0040000],
        ),
        p(
            "personality READ_IMPLIES_EXEC",
            SYS_personality,
            &[0x0400000],
        ),
        p(
            "unshare with high garbage",
            SYS_unshare,
            &[HIGH | CLONE_NEWUSER as u64],
        ),
        p("unshare CLONE_NEWTIME", SYS_unshare, &[0x80]),
    ];
    for f in ns {
        v.push(p("unshare namespace", SYS_unshare, &[f as u64]));
        v.push(p(
            "clone namespace",
            SYS_clone,
            &[(f | SIGCHLD) as u64, 0, 0, 0, 0],
        ));
    }
    v
}

/// Calls next to the refused ones that the policy must leave alone.
#[allow(clippy::unnecessary_cast)]
fn allowed_neighbours() -> Vec<Probe> {
    use libc::*;
    vec![
        p("ioctl TCGETS", SYS_ioctl, &[u64::MAX, TCGETS as u64, 0]),
        p(
            "socket AF_UNIX",
            SYS_socket,
            &[AF_UNIX as u64, SOCK_STREAM as u64, 0],
        ),
        p(
            "socket AF_INET",
            SYS_socket,
            &[AF_INET as u64, SOCK_DGRAM as u64, 0],
        ),
        p(
            "socket AF_INET6",
            SYS_socket,
            &[AF_INET6 as u64, SOCK_STREAM as u64, 0],
        ),
        p(
            "socket AF_NETLINK",
            SYS_socket,
            &[AF_NETLINK as u64, SOCK_RAW as u64, 0],
        ),
        p("personality PER_LINUX", SYS_personality, &[0]),
        p("unshare CLONE_FILES", SYS_unshare, &[CLONE_FILES as u64]),
        p("clone plain", SYS_clone, &[SIGCHLD as u64, 0, 0, 0, 0]),
        p("getpid", SYS_getpid, &[]),
        p(
            "ptrace",
            SYS_ptrace,
            &[PTRACE_PEEKDATA as u64, u64::MAX, 0, 0],
        ),
        p(
            "process_vm_readv",
            SYS_process_vm_readv,
            &[0, 0, 0, 0, 0, 0],
        ),
        p("uname", SYS_uname, &[BAD_PTR]),
    ]
}

#[test]
fn every_rule_refuses_and_its_neighbours_still_work() {
    let filter = marked(agent_policy(&Edits::default()).unwrap());
    let probes = refused_probes();
    let got = run(Some(&filter), &probes);
    for (probe, out) in probes.iter().zip(&got) {
        assert_eq!(
            *out,
            Outcome::Err(MARKER as i32),
            "{} was not refused by the filter",
            probe.label
        );
    }
    let neighbours = allowed_neighbours();
    let got = run(Some(&filter), &neighbours);
    for (probe, out) in neighbours.iter().zip(&got) {
        assert_ne!(
            *out,
            Outcome::Err(MARKER as i32),
            "{} was refused",
            probe.label
        );
    }
}

#[test]
fn the_probes_would_notice_a_missing_filter() {
    // Unfiltered, no probe comes back with the marker: a refusal above is the filter's.
    let probes: Vec<Probe> = refused_probes()
        .into_iter()
        .filter(|p| p.nr != libc::SYS_reboot && p.nr != libc::SYS_acct)
        .collect();
    for (probe, out) in probes.iter().zip(run(None, &probes)) {
        assert_ne!(out, Outcome::Err(MARKER as i32), "{}", probe.label);
    }
}

#[test]
fn each_rule_refuses_with_its_own_errno() {
    let filter = compile(&agent_policy(&Edits::default()).unwrap()).unwrap();
    let probes = refused_probes();
    let got = run(Some(&filter), &probes);
    for (probe, out) in probes.iter().zip(&got) {
        let want = if probe.label == "clone3" {
            libc::ENOSYS
        } else if probe.label.starts_with("socket") {
            libc::EAFNOSUPPORT
        } else {
            libc::EPERM
        };
        assert_eq!(*out, Outcome::Err(want), "{}", probe.label);
    }
}

#[test]
fn profile_edits_change_what_the_installed_filter_does() {
    let edits = Edits {
        lift: vec!["@io_uring".into()],
        deny: vec!["@ptrace".into(), "uname:ENOSYS".into()],
    };
    let filter = marked(agent_policy(&edits).unwrap());
    let probes = [
        p("io_uring_setup", libc::SYS_io_uring_setup, &[0, BAD_PTR]),
        p(
            "ptrace",
            libc::SYS_ptrace,
            &[libc::PTRACE_PEEKDATA as u64, u64::MAX],
        ),
        p("uname", libc::SYS_uname, &[BAD_PTR]),
        p("getpid", libc::SYS_getpid, &[]),
    ];
    let got = run(Some(&filter), &probes);
    assert_ne!(
        got[0],
        Outcome::Err(MARKER as i32),
        "lifted io_uring still refused"
    );
    assert_eq!(got[1], Outcome::Err(MARKER as i32));
    assert_eq!(got[2], Outcome::Err(MARKER as i32));
    assert!(matches!(got[3], Outcome::Ok(_)));
}

/// Runs `f` in a forked child with the default filter and returns how the child ended.
fn child_status(filter: Option<&CompiledFilter>, f: fn() -> i64) -> i32 {
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            if let Some(flt) = filter {
                if flt.install().is_err() {
                    libc::_exit(99);
                }
            }
            let r = f();
            libc::_exit(if r > 0 { 0 } else { 1 });
        }
    }
    wait_for(pid)
}

/// Waits for the child `pid` and returns its status; panics if it cannot be waited for.
fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    let got = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(got, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i64 {
    let ret: i64;
    // i386 getpid is syscall 20 through the legacy int 0x80 gate.
    unsafe { std::arch::asm!("int 0x80", inlateout("rax") 20i64 => ret, options(nostack)) };
    ret
}

#[cfg(target_arch = "x86_64")]
fn x32_getpid() -> i64 {
    unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_calls_kill_the_process() {
    let filter = compile(&agent_policy(&Edits::default()).unwrap()).unwrap();
    let confined = child_status(Some(&filter), x32_getpid);
    assert!(
        libc::WIFSIGNALED(confined) && libc::WTERMSIG(confined) == libc::SIGSYS,
        "x32: confined child status {confined}"
    );
    // Unconfined the same call ends normally (it works, or the kernel lacks x32 and says
    // ENOSYS): the SIGSYS above is the filter's doing.
    let free = child_status(None, x32_getpid);
    assert!(libc::WIFEXITED(free), "x32: unconfined child status {free}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn i386_calls_kill_the_process_where_the_kernel_labels_them() {
    use omac_seccomp::probe::{compat_entry, CompatEntry};
    let filter = compile(&agent_policy(&Edits::default()).unwrap()).unwrap();
    let confined = child_status(Some(&filter), i386_getpid);
    let free = child_status(None, i386_getpid);
    match compat_entry() {
        CompatEntry::Labelled => {
            assert!(
                libc::WIFSIGNALED(confined) && libc::WTERMSIG(confined) == libc::SIGSYS,
                "i386 int 0x80: confined child status {confined}"
            );
            // The gate works unconfined: the SIGSYS above is the filter's doing.
            assert_eq!(free, 0, "i386 int 0x80 unconfined");
        }
        CompatEntry::Absent => {
            // No IA32 emulation: the gate faults with or without omac.
            assert!(libc::WIFSIGNALED(free), "unconfined status {free}");
            assert!(libc::WIFSIGNALED(confined), "confined status {confined}");
        }
        CompatEntry::Unfiltered => {
            // The kernel runs int 0x80 but shows it to seccomp as x86_64: no filter can
            // refuse it (doctor says so). The probe must agree with what the agent sees.
            eprintln!(
                "NOTE: this kernel labels int 0x80 calls as x86_64 for seccomp; \
                 32-bit syscalls pass any syscall filter here (omac doctor warns)"
            );
            assert_eq!(free, 0, "i386 int 0x80 unconfined");
            assert_eq!(
                confined, 0,
                "the probe said unfiltered, yet the filter acted"
            );
        }
        CompatEntry::NotApplicable => panic!("the int 0x80 probe itself failed"),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_compat_probe_is_stable() {
    let first = omac_seccomp::probe::compat_entry();
    assert_ne!(first, omac_seccomp::probe::CompatEntry::NotApplicable);
    assert_eq!(first, omac_seccomp::probe::compat_entry());
}
