//! The loopback interface of a new network namespace, brought up with one ioctl.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::sys;

/// Sets `lo` up (the kernel then gives it 127.0.0.1/8 and ::1).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket to carry the interface ioctls.
    let s =
        sys::cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: just created.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain data.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS with a valid ifreq.
    unsafe {
        sys::cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        sys::cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}
