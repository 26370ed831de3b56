//! The keeper: a small single-threaded process between omac and each sidecar.
//!
//! omac starts it with PR_SET_PDEATHSIG=SIGTERM from a thread that lives as long as omac, so
//! the keeper learns when omac dies, however it dies (SIGKILL included). The keeper runs the
//! sidecar in a process group of its own (with PR_SET_PDEATHSIG=SIGKILL towards the keeper,
//! which is single-threaded, so that is reliable too), is a child subreaper (descendants that
//! daemonize stay under it), and on SIGTERM/SIGINT/SIGHUP/SIGQUIT, or when omac dies, sends
//! SIGTERM to the sidecar's group, waits the grace period, then SIGKILL. When the sidecar
//! exits by itself, what is left of its group is stopped the same way. The keeper's exit code
//! is the sidecar's (128+N for a signal).
//!
//! Invocation: `<exe> __sidecar-keeper [--grace-ms N] -- PROGRAM ARGS...`; the environment
//! and the working directory are the sidecar's (secrets stay off argv).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// The hidden subcommand that runs the keeper (`omac __sidecar-keeper`).
pub const SUBCOMMAND: &str = "__sidecar-keeper";

/// Runs the keeper with the arguments after the subcommand; returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    let mut grace = Duration::from_secs(5);
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        match args[i].to_str() {
            Some("--grace-ms") => {
                let Some(ms) = args.get(i + 1).and_then(|a| a.to_str()?.parse().ok()) else {
                    eprintln!("omac-keeper: --grace-ms needs a number of milliseconds");
                    return 2;
                };
                grace = Duration::from_millis(ms);
                i += 2;
            }
            _ => {
                eprintln!("omac-keeper: unknown argument {:?}", args[i]);
                return 2;
            }
        }
    }
    let cmd = args.get(i + 1..).unwrap_or_default();
    if cmd.is_empty() {
        eprintln!("usage: omac {SUBCOMMAND} [--grace-ms N] -- PROGRAM ARGS...");
        return 2;
    }
    run(cmd, grace)
}

/// The signals the keeper waits for (blocked, then taken with sigtimedwait).
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGCHLD,
        ] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn run(cmd: &[OsString], grace: Duration) -> i32 {
    let set = signal_set();
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let me = std::process::id() as libc::pid_t;
    let mut c = std::process::Command::new(&cmd[0]);
    c.args(&cmd[1..]).process_group(0);
    // SAFETY: the hook only makes async-signal-safe calls (sigemptyset, sigprocmask, prctl,
    // getppid).
    unsafe {
        c.pre_exec(move || {
            // The mask is inherited across fork and exec: the sidecar must not start with
            // SIGTERM blocked, or it would never see the keeper's request to stop, nor with
            // any signal omac itself blocks (it starts with an empty mask, as from a shell).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != me {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            eprintln!("omac-keeper: cannot start {:?}: {e}", cmd[0]);
            return match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
        }
    };
    let pid = child.id() as libc::pid_t;
    drop(child); // reaped below with waitpid
    eprintln!("omac-keeper: sidecar running as pid {pid} in its own process group");

    let mut status: Option<i32> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        reap(pid, &mut status);
        if status.is_some() {
            if !group_alive(pid) {
                break;
            }
            if deadline.is_none() {
                // The sidecar is gone but left processes behind: stop them too.
                signal_group(pid, libc::SIGTERM);
                deadline = Some(Instant::now() + grace);
            }
        }
        let wait = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    break;
                }
                // Poll now and then: zombies handed to the subreaper are collected here.
                (d - now).min(Duration::from_millis(100))
            }
            None => Duration::from_secs(1),
        };
        match wait_signal(&set, wait) {
            Some(libc::SIGCHLD) | None => {}
            Some(_) => {
                if deadline.is_none() {
                    signal_group(pid, libc::SIGTERM);
                    deadline = Some(Instant::now() + grace);
                }
            }
        }
    }
    finish(pid, &mut status);
    match status {
        Some(code) => code,
        None => 128 + libc::SIGKILL,
    }
}

/// SIGKILL to whatever is left (group and adopted descendants), then reap everything.
fn finish(pid: libc::pid_t, status: &mut Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if group_alive(pid) {
            signal_group(pid, libc::SIGKILL);
        }
        let children = own_children();
        for c in &children {
            // SAFETY: kill on a pid we read from our own children list.
            unsafe { libc::kill(*c, libc::SIGKILL) };
        }
        reap(pid, status);
        if children.is_empty() && !group_alive(pid) {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("omac-keeper: processes of the sidecar's group did not die");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Collects every exited child; records the sidecar's exit code.
fn reap(pid: libc::pid_t, status: &mut Option<i32>) {
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid with a valid out pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            return;
        }
        if r == pid {
            *status = Some(if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else if libc::WIFSIGNALED(st) {
                128 + libc::WTERMSIG(st)
            } else {
                1
            });
        }
    }
}

/// Waits up to `timeout` for one of the blocked signals.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<libc::c_int> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; no siginfo wanted.
    let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// True while any process is in the group (EPERM means one exists but is not ours).
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill on the sidecar's own process group.
    unsafe { libc::kill(-pgid, sig) };
}

/// Our direct children (the sidecar, and orphans we adopted as subreaper).
fn own_children() -> Vec<libc::pid_t> {
    let me = std::process::id();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}
