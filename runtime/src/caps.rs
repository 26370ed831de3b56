//! Dropping every capability: bounding set, ambient set, then effective, permitted and
//! inheritable.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// This process emptied its bounding set already (see [`drop_bounding`]). A set never
/// grows, and a fork copies this flag with the memory, so a process forked after that
/// (init's agent) need not read all of its capabilities again.
static EMPTIED: AtomicBool = AtomicBool::new(false);

/// The capability number of CAP_SETPCAP.
const CAP_SETPCAP: u32 = 8;

/// Drops all capabilities of the calling process, for good. An unprivileged process without
/// a user namespace (the fallback) cannot shrink its bounding set (that needs
/// CAP_SETPCAP); it holds no capability either, and no_new_privs keeps it that way, so
/// the bounding set is left as it is then. Returns whether the bounding set was emptied.
pub fn drop_all() -> io::Result<bool> {
    let bounding = drop_bounding()?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    sys::clear_capabilities()?;
    Ok(bounding)
}

/// Empties the bounding set of the calling process; returns false when it may not (no
/// CAP_SETPCAP: see [`drop_all`]). Capabilities already out of it are skipped: reading the
/// set is cheap, while each drop replaces the process's credentials. init, which never
/// execs, empties it while it waits for its plan (its effective set, which builds the
/// view, is not touched), so that the agent it forks has nothing left to do.
pub fn drop_bounding() -> io::Result<bool> {
    if EMPTIED.load(Ordering::Relaxed) {
        return Ok(true);
    }
    for cap in 0..64u64 {
        match sys::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0) {
            Ok(0) => continue,
            Ok(_) => {}
            // Past the last capability this kernel knows.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
        match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !has_setpcap() => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    EMPTIED.store(true, Ordering::Relaxed);
    Ok(true)
}

/// Whether CAP_SETPCAP is in the effective set.
fn has_setpcap() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << CAP_SETPCAP) != 0)
}
