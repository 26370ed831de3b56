//! Namespaces made while omac starts. Creating a network namespace is the longest step of a
//! sandbox's start (about half a millisecond here), and before the stage exists the other
//! CPU has nothing to do: omac's own start (the dynamic relocation of a static PIE and
//! glibc's CPU probing) keeps one CPU busy for about as long. So `omac run`'s entry point
//! forks a small process first, the holder, which creates a user namespace and, owned by
//! it, the network (with `lo` up), mount, ipc, uts and cgroup namespaces, says so on its
//! `ready` pipe and then only waits until its `release` pipe closes (see the binary's
//! `entry`). The holder runs none of glibc's or Rust's start: it is made of raw system calls.
//!
//! The stage, cloning init ahead (see `ahead`), takes those namespaces instead of creating
//! them: a helper forked from the stage joins them (the stage itself stays in the host's
//! user namespace, where it must write init's id maps and clean up) and clones init as the
//! stage's own child (`CLONE_PARENT`) into a new pid namespace, which a process cannot
//! join before it has a first process. Then the holder is let go. When anything of that
//! fails the stage clones init the usual way, which meets the same obstacle and names it.
//! omac reaps the holder before it exits ([`reap`]), and the holder dies with omac.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use crate::sys::{self, Forked};

/// The namespaces the holder makes, all owned by its new user namespace: those init is
/// cloned into ahead but the pid namespace, which the helper's clone creates (see above).
pub const NAMESPACES: u64 =
    (libc::CLONE_NEWUSER as u64 | crate::ahead::FLAGS) & !(libc::CLONE_NEWPID as u64);

/// The holder as omac's start left it: its pid, the read end of its `ready` pipe and the
/// write end of its `release` pipe.
#[derive(Debug)]
pub struct Holder {
    pid: libc::pid_t,
    ready: OwnedFd,
    /// Held only: the holder exits once every copy of it is closed.
    _release: OwnedFd,
}

/// The holder, until the stage takes it (in the stage) or omac lets it go (in omac).
static OFFERED: Mutex<Option<Holder>> = Mutex::new(None);
/// The holder's pid, for [`reap`] (0: none, or reaped).
static PID: AtomicI32 = AtomicI32::new(0);

/// Records the holder forked at omac's start.
///
/// # Safety
/// `ready` and `release` must be open descriptors that nothing else owns.
pub unsafe fn offer(pid: libc::pid_t, ready: RawFd, release: RawFd) {
    PID.store(pid, Ordering::SeqCst);
    // SAFETY: ownership passes to us (the caller's promise).
    let (ready, release) = unsafe { (OwnedFd::from_raw_fd(ready), OwnedFd::from_raw_fd(release)) };
    // Out of the way of the stage's descriptors 3 and 4 (see `parent::fork_stage`).
    let (Ok(ready), Ok(release)) = (sys::dup_high(&ready), sys::dup_high(&release)) else {
        return;
    };
    *OFFERED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Holder {
        pid,
        ready,
        _release: release,
    });
}

/// Takes the holder (the stage, for its ahead clone).
pub(crate) fn take() -> Option<Holder> {
    OFFERED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Closes omac's ends of the holder's pipes: once the stage has closed its own (or never
/// had them), the holder exits.
pub fn let_go() {
    drop(take());
}

/// Ends the holder and waits for it. omac calls this before it exits, when the holder has
/// exited already or (a run that never reached its stage) has nothing left to do.
pub fn reap() {
    let_go();
    let pid = PID.swap(0, Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    // SAFETY: our own child, not yet reaped. Killed rather than waited for: a stage still
    // waiting for its plan would keep it, and this process waiting for the holder.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = sys::wait_for(pid);
}

impl Holder {
    /// Its descriptors, which the stage keeps when it closes the others.
    pub(crate) fn fds(&self) -> [RawFd; 2] {
        [self.ready.as_raw_fd(), self._release.as_raw_fd()]
    }

    /// Waits until the holder has its namespaces. False when it failed to make them (it
    /// then exits without a word).
    fn ready(&self) -> bool {
        let mut byte = [0u8; 1];
        sys::read_some(self.ready.as_raw_fd(), &mut byte).is_ok_and(|n| n == 1) && byte[0] == b'y'
    }

    /// Clones init, as the caller's child, into the holder's namespaces and a new pid
    /// namespace (the `flags` the caller wants must be those the holder made, with pid).
    /// None when the holder cannot serve (the caller then clones init itself); in the
    /// child, `Forked::Child`. The holder is let go either way.
    pub(crate) fn clone_init(self, flags: u64) -> Option<Forked> {
        if flags | libc::CLONE_NEWPID as u64 != NAMESPACES | libc::CLONE_NEWPID as u64
            || !self.ready()
        {
            return None;
        }
        // SAFETY: no pointers.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if pidfd < 0 {
            return None;
        }
        // SAFETY: a descriptor the kernel just gave us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
        let (pid_r, pid_w) = sys::pipe().ok()?;
        match sys::clone_fork(0, None).ok()? {
            Forked::Child => {
                drop(pid_r);
                // The helper: joins the holder's namespaces (the user namespace first, as
                // the kernel orders them) and clones init beside itself.
                // SAFETY: no pointers.
                let joined = unsafe { libc::setns(pidfd.as_raw_fd(), NAMESPACES as libc::c_int) };
                drop(pidfd);
                drop(self);
                if joined != 0 {
                    sys::exit_now(1);
                }
                let flags = (libc::CLONE_PARENT | libc::CLONE_NEWPID) as u64;
                match sys::clone_fork(flags, None) {
                    Ok(Forked::Child) => {
                        drop(pid_w);
                        Some(Forked::Child)
                    }
                    Ok(Forked::Parent(init)) => {
                        let _ = sys::write_all(pid_w.as_raw_fd(), &init.to_ne_bytes());
                        sys::exit_now(0)
                    }
                    Err(_) => sys::exit_now(1),
                }
            }
            Forked::Parent(helper) => {
                drop(pid_w);
                drop(pidfd);
                // Read as soon as written: the helper's exit (its copy of the address space
                // torn down) is not waited for here; `reap_helper` reaps it later.
                let init = read_pid(&pid_r);
                HELPER.store(helper, Ordering::SeqCst);
                if init.is_none() {
                    reap_helper();
                }
                // Dropped: the holder is let go (init holds the namespaces now).
                drop(self);
                init.map(Forked::Parent)
            }
        }
    }
}

/// The helper that cloned init, until reaped (0: none).
static HELPER: AtomicI32 = AtomicI32::new(0);

/// Waits for the helper that cloned init, if it has not been reaped yet. The stage calls
/// this once init has its head (the helper is long gone by then) and on its way out.
pub(crate) fn reap_helper() {
    let pid = HELPER.swap(0, Ordering::SeqCst);
    if pid > 0 {
        let _ = sys::wait_for(pid);
    }
}

/// The pid the helper wrote: four bytes, or nothing when it failed.
fn read_pid(fd: &OwnedFd) -> Option<libc::pid_t> {
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        match sys::read_some(fd.as_raw_fd(), &mut bytes[got..]) {
            Ok(n) if n > 0 => got += n,
            _ => return None,
        }
    }
    Some(libc::pid_t::from_ne_bytes(bytes)).filter(|p| *p > 0)
}
