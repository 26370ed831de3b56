//! Thin, checked wrappers over the Linux system calls the runtime makes, including the ones
//! the libc crate does not wrap: the new mount API, `openat2`, `clone3`, `keyctl`, `capset`.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `MOUNT_ATTR_*` flags of `mount_setattr(2)` and `fsmount(2)`.
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore set-user-id bits.
    pub const NOSUID: u64 = 0x2;
    /// No device files.
    pub const NODEV: u64 = 0x4;
    /// No execution.
    pub const NOEXEC: u64 = 0x8;
    /// The access-time field mask.
    pub const ATIME_MASK: u64 = 0x70;
    /// No access-time updates.
    pub const NOATIME: u64 = 0x10;
    /// Always update access times.
    pub const STRICTATIME: u64 = 0x20;
    /// No directory access-time updates.
    pub const NODIRATIME: u64 = 0x80;
    /// Do not follow symlinks.
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

const FSOPEN_CLOEXEC: u32 = 1;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
const OPEN_TREE_CLONE: u32 = 1;
/// `AT_RECURSIVE` for `open_tree` and `mount_setattr`.
pub const AT_RECURSIVE: u32 = 0x8000;

/// `RESOLVE_*` flags of `openat2(2)`.
pub mod resolve {
    /// Refuse magic links (`/proc/self/fd/N`).
    pub const NO_MAGICLINKS: u64 = 0x02;
    /// Refuse every symlink.
    pub const NO_SYMLINKS: u64 = 0x04;
    /// Treat the directory as the root: `..` and absolute symlinks stay inside it.
    pub const IN_ROOT: u64 = 0x10;
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Turns a `-1` return into the current `errno`.
pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Like [`cvt`] for `syscall(2)`'s `long`.
pub fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A path as a C string (paths never hold NUL on Linux; one that does is refused).
pub fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A string as a C string.
pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

fn fd_from(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt_long(r)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fsopen(2)`: a filesystem context for `fstype`.
pub fn fsopen(fstype: &str) -> io::Result<OwnedFd> {
    let t = cstr(fstype)?;
    // SAFETY: valid C string; the call returns a new descriptor or -1.
    fd_from(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) })
}

/// `fsconfig(FSCONFIG_SET_STRING)`, or `FSCONFIG_SET_FLAG` when `value` is `None`.
pub fn fsconfig_set(fs: &OwnedFd, key: &str, value: Option<&str>) -> io::Result<()> {
    let k = cstr(key)?;
    let v = value.map(cstr).transpose()?;
    let (cmd, vp) = match &v {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: valid descriptor and C strings.
    cvt_long(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k.as_ptr(), vp, 0) })
        .map(drop)
}

/// `fsconfig(FSCONFIG_CMD_CREATE)`: creates the superblock.
pub fn fsconfig_create(fs: &OwnedFd) -> io::Result<()> {
    // SAFETY: valid descriptor; no pointers.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    })
    .map(drop)
}

/// `fsmount(2)`: a detached mount of the created superblock with mount attributes `attrs`.
pub fn fsmount(fs: &OwnedFd, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: valid descriptor.
    fd_from(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH)`: a detached copy of the mount at `fd`
/// (its submounts too when `recursive`).
pub fn clone_tree(fd: &OwnedFd, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE;
    if !recursive {
        flags &= !AT_RECURSIVE;
    }
    // SAFETY: valid descriptor and an empty C string.
    fd_from(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// `mount_setattr(2)` on the mount at `fd`: sets `set`, clears `clear`, optionally changes
/// the propagation type, on the whole tree when `recursive`.
pub fn mount_setattr(
    fd: &OwnedFd,
    set: u64,
    clear: u64,
    propagation: u64,
    recursive: bool,
) -> io::Result<()> {
    let a = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: valid descriptor, empty C string, a correctly sized struct.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &a as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `move_mount(2)`: attaches the detached mount `from` on top of the file or directory `to`.
pub fn move_mount(from: &OwnedFd, to: &OwnedFd) -> io::Result<()> {
    // SAFETY: valid descriptors and empty C strings.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// `openat2(2)` with `resolve` flags.
pub fn openat2(dir: RawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let p = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: valid C string and a correctly sized struct.
    fd_from(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    })
}

/// `openat(2)` relative to `dir` (or the working directory for `AT_FDCWD`).
pub fn openat(dir: RawFd, path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: valid C string.
    let fd = cvt(unsafe { libc::openat(dir, path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(2)`.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data; zeroed is a valid bit pattern.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a stat buffer.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Whether the file type bits of `mode` say directory.
pub fn is_dir_mode(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

/// A forked (or cloned) process: who we are after the call.
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(libc::pid_t),
    /// The child.
    Child,
}

/// `clone3(2)` used like `fork(2)` (no shared memory): `flags` may create namespaces
/// (`CLONE_NEW*`) and `cgroup` places the child in a cgroup (`CLONE_INTO_CGROUP`). Where a
/// seccomp profile refuses clone3 with ENOSYS (Docker's does), `clone(2)` is used instead;
/// with a `cgroup` that fails with ENOSYS so that the caller can place itself first.
/// The caller must be single-threaded.
pub fn clone_fork(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    // With CLONE_PARENT the child is its parent's sibling and signals the parent's parent
    // as the parent does; clone3 refuses an exit signal of its own then.
    let sibling = flags & libc::CLONE_PARENT as u64 != 0;
    let mut args = CloneArgs {
        flags,
        exit_signal: if sibling { 0 } else { libc::SIGCHLD as u64 },
        ..CloneArgs::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: without CLONE_VM the child gets a copy of the address space, as with fork(2);
    // the caller is single-threaded, so no lock can be held by a thread that does not exist
    // in the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let r = match cvt_long(r) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) && cgroup.is_none() => {
            // SAFETY: as above; a NULL stack makes clone(2) behave like fork(2).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    flags | libc::SIGCHLD as u64,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            cvt_long(r)?
        }
        r => r?,
    };
    match r {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// Waits for the child `pid` (retried when a signal interrupts it): its raw wait status.
pub fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A close-on-exec copy of `fd` numbered 10 or higher, out of the way of descriptors that
/// are placed at fixed low numbers.
pub fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one.
    let n = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) })?;
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// `close_range(first, last, flags)`.
pub fn close_range(first: u32, last: u32, flags: u32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt_long(unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) }).map(drop)
}

/// Joins a new anonymous session keyring: the keys of the caller's session stay behind.
pub fn join_new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for an anonymous keyring.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    })
    .map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Empties the effective, permitted and inheritable capability sets of the caller.
pub fn clear_capabilities() -> io::Result<()> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and two data structs as capset(2) expects for version 3.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }).map(drop)
}

/// `prctl(2)` with integer arguments.
pub fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(option, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

/// Writes all of `bytes` to `fd`, retrying on EINTR.
pub fn write_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a valid buffer of the length given.
    each_part(bytes, |b| unsafe {
        libc::write(fd, b.as_ptr().cast(), b.len())
    })
}

/// Sends all of `bytes` on the connected socket `fd`, retrying on EINTR; a peer that is gone
/// is EPIPE, not a SIGPIPE (`MSG_NOSIGNAL`).
pub fn send_all(fd: RawFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a valid buffer of the length given.
    each_part(bytes, |b| unsafe {
        libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL)
    })
}

/// Hands `bytes` to `put` until all are taken (`put` returns how many it took, or -1 with
/// errno set), retrying on EINTR.
fn each_part(mut bytes: &[u8], put: impl Fn(&[u8]) -> isize) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = put(bytes);
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// One `read(2)` into `buf`, retried when a signal interrupts it: the byte count (0 at end
/// of file).
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid buffer of the length given.
    unsafe { read_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// `read(2)` into `len` bytes at `ptr`, again on EINTR.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
unsafe fn read_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: the caller's promise.
        let n = unsafe { libc::read(fd, ptr.cast(), len) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reads from `fd` until end of file.
pub fn read_to_end(fd: RawFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while read_more(fd, &mut out)? > 0 {}
    Ok(out)
}

/// Reads once from `fd` onto the end of `out` (straight into its spare capacity: a
/// buffer on the stack would cost the stage and init, fresh forks, a page fault for each
/// of its pages); the count read, 0 at the end.
fn read_more(fd: RawFd, out: &mut Vec<u8>) -> io::Result<usize> {
    out.reserve(16384);
    let spare = out.spare_capacity_mut();
    // SAFETY: the vector's spare capacity, of the length given.
    let n = unsafe { read_raw(fd, spare.as_mut_ptr().cast(), spare.len()) }?;
    // SAFETY: the kernel initialized the n bytes it read.
    unsafe { out.set_len(out.len() + n) };
    Ok(n)
}

/// Reads `fd` up to the first newline or the end: the line (without the newline) and
/// whatever was read past it.
pub fn read_line(fd: RawFd) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if let Some(nl) = out.iter().position(|b| *b == b'\n') {
            let rest = out.split_off(nl + 1);
            out.pop();
            return Ok((out, rest));
        }
        if read_more(fd, &mut out)? == 0 {
            return Ok((out, Vec::new()));
        }
    }
}

/// Writes `text` to the file at `path` (no creation), as the `/proc` interfaces expect.
pub fn write_file(path: &str, text: &str) -> io::Result<()> {
    let p = cstr(path)?;
    let fd = openat(libc::AT_FDCWD, &p, libc::O_WRONLY, 0)?;
    write_all(fd.as_raw_fd(), text.as_bytes())
}

/// A pipe whose both ends close on exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid two-element buffer.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: descriptors just created.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of Unix stream sockets, both ends close-on-exec: writing to one whose
/// peer is gone fails with EPIPE (see [`send_all`]) instead of raising SIGPIPE.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: valid two-element buffer.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: descriptors just created.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor number.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let new = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, new) }).map(drop)
}

/// A signal set holding `signals`.
pub fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::sigemptyset(&mut set) };
    for s in signals {
        // SAFETY: valid pointer.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    set
}

/// Blocks `signals` in the calling thread.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: valid set pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// A non-blocking signalfd for `signals` (which must be blocked).
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: valid set pointer.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: descriptor just created.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a signalfd: its number, `si_code` and sender pid.
pub fn read_signal(fd: RawFd) -> Option<(i32, i32, u32)> {
    // SAFETY: plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: valid buffer of the size the kernel writes.
    let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    (n as usize == size).then_some((info.ssi_signo as i32, info.ssi_code, info.ssi_pid))
}

/// This process reset every disposition and has installed no handler since: the runtime
/// installs none in the stage, init or the agent, and a fork copies the flag.
static DISPOSITIONS_DEFAULT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Resets every catchable signal to its default action (the mask stays); nothing to do
/// when this process, or the one it was forked from, did so already (init cloned ahead by
/// the stage: 62 system calls fewer on its way to the agent).
pub fn reset_dispositions() {
    use std::sync::atomic::Ordering;
    if DISPOSITIONS_DEFAULT.load(Ordering::Relaxed) {
        return;
    }
    // The kernel's struct sigaction: handler, flags, restorer, mask.
    let dfl: [libc::c_ulong; 4] = [libc::SIG_DFL as libc::c_ulong, 0, 0, 0];
    for s in 1..=64 {
        if s == libc::SIGKILL || s == libc::SIGSTOP {
            continue;
        }
        // The system call itself: glibc's wrappers refuse its own signals (32, 33), which
        // an ignoring parent would otherwise pass on to the agent.
        // SAFETY: a valid kernel sigaction resetting a disposition to SIG_DFL.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, s, dfl.as_ptr(), 0usize, 8usize) };
    }
    DISPOSITIONS_DEFAULT.store(true, Ordering::Relaxed);
}

/// Closes every descriptor from 3 up except those in `keep`.
pub fn close_all_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|f| **f >= 3)
        .map(|f| *f as u32)
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep {
        if k > from {
            let _ = close_range(from, k - 1, 0);
        }
        from = k + 1;
    }
    let _ = close_range(from, u32::MAX, 0);
}

/// Text of the errno in `e` with its symbolic name when known (`EPERM: Operation not ...`).
pub fn errno_text(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::ENOSYS) => "ENOSYS",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::EROFS) => "EROFS",
        Some(libc::ELOOP) => "ELOOP",
        Some(libc::EXDEV) => "EXDEV",
        Some(libc::ENOTDIR) => "ENOTDIR",
        Some(libc::EEXIST) => "EEXIST",
        _ => return e.to_string(),
    };
    format!("{name} ({e})")
}

/// Names the calling thread (what `ps` and `/proc/PID/comm` show; 15 bytes at most).
pub fn name_thread(name: &std::ffi::CStr) {
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Ends the process at once: no destructors, no atexit handlers, no stdio flush (a forked
/// copy must not flush its parent's buffers a second time).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}

/// Whether the calling process has a single thread (then it may fork without exec).
pub fn single_threaded() -> bool {
    // procfs counts a process's threads in its task directory's link count (two plus one
    // per thread): one stat instead of formatting and reading /proc/self/status.
    // SAFETY: plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and buffer.
    let r = unsafe { libc::stat(c"/proc/self/task".as_ptr(), &mut st) };
    r == 0 && st.st_nlink == 3
}

/// The calling thread's signal mask.
pub fn signal_mask() -> io::Result<libc::sigset_t> {
    // SAFETY: plain data filled by the kernel.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: a NULL new set only reads the mask.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(old)
}

/// Restores a mask from [`signal_mask`].
pub fn set_signal_mask(set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: a valid set.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test harness runs tests on threads of its own; a fork of it has one thread.
    #[test]
    fn single_threaded_counts_the_threads() {
        let other =
            std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(!single_threaded());
        let (r, w) = pipe().unwrap();
        // SAFETY: the child only calls stat, write and _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let byte = [u8::from(single_threaded())];
            // SAFETY: a valid buffer on our pipe.
            unsafe { libc::write(w.as_raw_fd(), byte.as_ptr().cast(), 1) };
            exit_now(0);
        }
        drop(w);
        let mut byte = [9u8];
        // SAFETY: a valid buffer on our pipe.
        let n = unsafe { libc::read(r.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        other.join().unwrap();
        assert_eq!((n, byte[0]), (1, 1), "the forked child saw one thread");
    }
}
