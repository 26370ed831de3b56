//! Fewer tmpfs instances for the same view. Every tmpfs is a superblock the kernel sets up
//! and later tears down: about 26 us here, where a bind of a directory onto itself costs
//! about 10 (a loop of each in a user namespace, teardown included). The default view asks
//! for ten. Two kinds of tmpfs mount need no instance of their own:
//!
//! - A writable tmpfs whose mount point is a new directory on another tmpfs of the view
//!   with the same limits (every option but `mode` alike, neither `uid` nor `gid`) is
//!   folded into it: that directory, given the mount's mode, bound onto itself with the
//!   mount's flags. The agent finds what a new tmpfs gives: an empty directory of that mode
//!   and owner, a mount of its own (a rename or a link across it fails with EXDEV, the flags
//!   are its own). What differs: the two mounts draw on one set of limits (`size`,
//!   `nr_inodes`), and statfs and the mount table show the outer filesystem. The default
//!   view folds /tmp and the home directory into the root, and /dev/shm into /dev (which
//!   holds only mount points and links).
//! - A read-only tmpfs (a mask over a directory, a placeholder over `.omac`) stays empty
//!   for good: those with the same options and flags are copies of the first.
//!
//! The agent cannot use the folding to reach the outer filesystem: it has no mount rights,
//! and a directory of the outer filesystem is reachable only through the mounts over it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::mountopts::Parsed;
use crate::sys::{self, attr};

/// A tmpfs's options other than `mode`: what another tmpfs must match to fold into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits(Vec<(String, Option<String>)>);

/// The mode a tmpfs's root gets: its `mode` option (octal), else the kernel's 1777. None
/// when the option is malformed (the kernel then reports it on a tmpfs of its own).
fn root_mode(params: &[(String, Option<String>)]) -> Option<libc::mode_t> {
    match params.iter().rev().find(|(k, _)| k == "mode") {
        None => Some(0o1777),
        Some((_, Some(v))) => libc::mode_t::from_str_radix(v, 8)
            .ok()
            .filter(|m| *m <= 0o7777),
        Some((_, None)) => None,
    }
}

/// The limits of a tmpfs with `params`, when another may fold into it or it into another:
/// not when it sets the owner of its root.
pub fn limits(params: &[(String, Option<String>)]) -> Option<Limits> {
    if params.iter().any(|(k, _)| k == "uid" || k == "gid") {
        return None;
    }
    let mut rest: Vec<_> = params
        .iter()
        .filter(|(k, _)| k != "mode")
        .cloned()
        .collect();
    rest.sort();
    Some(Limits(rest))
}

/// The mount flags a mount made by fsmount with `attrs` has, set on a bind: every flag
/// it lacks cleared, its access-time mode set.
fn set_flags(tree: &OwnedFd, attrs: u64) -> io::Result<()> {
    let all = attr::RDONLY
        | attr::NOSUID
        | attr::NODEV
        | attr::NOEXEC
        | attr::NODIRATIME
        | attr::NOSYMFOLLOW;
    sys::mount_setattr(tree, attrs, (all & !attrs) | attr::ATIME_MASK, 0, false)
}

/// The mode the tmpfs `p` (with `params`) gets as a directory of a tmpfs with `outer`
/// limits, when it folds into that one.
pub fn foldable(
    p: &Parsed,
    params: &[(String, Option<String>)],
    outer: &Limits,
) -> Option<libc::mode_t> {
    let own = limits(params)?;
    (own == *outer && p.attrs & attr::RDONLY == 0)
        .then(|| root_mode(params))
        .flatten()
}

/// Folds the tmpfs `p` into the filesystem of `parent`, the directory its mount point goes
/// in: `name` made there with `mode` and bound onto itself. `Ok(false)`: `name` exists
/// already, and the caller makes a tmpfs of its own, which hides it as the bundle says.
pub fn fold(p: &Parsed, mode: libc::mode_t, parent: &OwnedFd, name: &str) -> io::Result<bool> {
    let n = sys::cstr(name)?;
    // SAFETY: valid descriptor and C string.
    if let Err(e) = sys::cvt(unsafe { libc::mkdirat(parent.as_raw_fd(), n.as_ptr(), 0o700) }) {
        return match e.raw_os_error() {
            Some(libc::EEXIST) => Ok(false),
            _ => Err(e),
        };
    }
    let dir = sys::openat(
        parent.as_raw_fd(),
        &n,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )?;
    // SAFETY: a directory descriptor of ours.
    sys::cvt(unsafe { libc::fchmod(dir.as_raw_fd(), mode) })?;
    let tree = sys::clone_tree(&dir, false)?;
    set_flags(&tree, p.attrs)?;
    sys::move_mount(&tree, &dir)?;
    Ok(true)
}

/// A read-only tmpfs in the view, to copy.
struct Kept {
    limits: Limits,
    mode: Option<libc::mode_t>,
    attrs: u64,
    mount: OwnedFd,
}

/// The read-only tmpfs mounts made so far, by options and flags, to copy from.
#[derive(Default)]
pub struct ReadOnly(std::cell::RefCell<Vec<Kept>>);

impl ReadOnly {
    /// A copy of a read-only tmpfs made earlier with the same `params` and `attrs`, if any.
    pub fn copy(&self, params: &[(String, Option<String>)], attrs: u64) -> Option<OwnedFd> {
        let (limits, mode) = (limits(params)?, root_mode(params));
        let kept = self.0.borrow();
        let k = kept
            .iter()
            .find(|k| k.limits == limits && k.mode == mode && k.attrs == attrs)?;
        sys::clone_tree(&k.mount, false).ok()
    }

    /// The descriptors of the mounts it keeps.
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        self.0
            .borrow()
            .iter()
            .map(|k| k.mount.as_raw_fd())
            .collect()
    }

    /// Keeps `mount` (a read-only tmpfs with `params` and `attrs`, now in the view) to copy.
    pub fn keep(&self, params: &[(String, Option<String>)], attrs: u64, mount: OwnedFd) {
        if attrs & attr::RDONLY == 0 {
            return;
        }
        if let Some(limits) = limits(params) {
            self.0.borrow_mut().push(Kept {
                limits,
                mode: root_mode(params),
                attrs,
                mount,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn limits_ignore_the_mode_and_refuse_owners() {
        let a = limits(&p(&[("mode", Some("1777")), ("size", Some("64k"))])).unwrap();
        let b = limits(&p(&[("size", Some("64k")), ("mode", Some("700"))])).unwrap();
        assert_eq!(a, b);
        let c = limits(&p(&[("size", Some("1m"))])).unwrap();
        assert_ne!(a, c);
        assert_ne!(limits(&[]).unwrap(), c);
        assert!(limits(&p(&[("uid", Some("0"))])).is_none());
        assert!(limits(&p(&[("gid", Some("0"))])).is_none());
    }

    #[test]
    fn the_root_mode_is_the_kernels() {
        assert_eq!(root_mode(&[]), Some(0o1777));
        assert_eq!(root_mode(&p(&[("mode", Some("0555"))])), Some(0o555));
        assert_eq!(root_mode(&p(&[("mode", Some("755"))])), Some(0o755));
        assert_eq!(root_mode(&p(&[("mode", Some("9"))])), None);
        assert_eq!(root_mode(&p(&[("mode", Some("17777"))])), None);
        assert_eq!(root_mode(&p(&[("mode", None)])), None);
    }
}
