//! The Linux kernel keyring as a fallback store, and the session keyring it needs.
//!
//! A process started without a login session (`setpriv`, `su` without `-l`, cron, CI
//! runners, an agent's shell) has no session keyring: the kernel substitutes the
//! user-session keyring `_uid_ses.<uid>`, which does not confer possession, so keys added
//! there can be written but not read back. omac therefore joins a fresh anonymous session
//! keyring (KEYCTL_JOIN_SESSION_KEYRING) when it finds itself in that state, and keeps the
//! keys in the user's persistent keyring (linked from the session keyring by the store),
//! which outlives the process. Keys are RAM only: they are lost at reboot, and after
//! `/proc/sys/kernel/keys/persistent_keyring_expiry` seconds (3 days by default) unused.
//!
//! Session keyrings are per thread in Linux credentials: call [`ensure_session_keyring`]
//! (done by `Keychain::open`) on the thread that will use the keychain, before spawning
//! threads that should inherit it.

use std::io;

const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEYCTL_GET_PERSISTENT: libc::c_long = 22;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

fn keyctl(
    op: libc::c_long,
    a: libc::c_long,
    b: libc::c_long,
    c: libc::c_long,
) -> io::Result<libc::c_long> {
    // SAFETY: keyctl with integer arguments or a buffer we own (see `describe`).
    let r = unsafe { libc::syscall(libc::SYS_keyctl, op, a, b, c) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn describe(id: libc::c_long) -> io::Result<String> {
    let mut buf = vec![0u8; 512];
    // SAFETY: the kernel writes at most buf.len() bytes into buf.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            id,
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (r as usize).min(buf.len());
    buf.truncate(n);
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// What [`ensure_session_keyring`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// The thread already had a real session keyring (a login session), named so.
    Existing(String),
    /// It had none (only `_uid_ses.<uid>`): a fresh anonymous one was joined.
    Joined,
}

/// Makes sure this thread has a session keyring that confers possession (see module doc).
pub fn ensure_session_keyring() -> io::Result<Session> {
    let name = keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0, 0)
        .and_then(describe)
        .map(|d| d.rsplit(';').next().unwrap_or_default().to_string());
    match name {
        Ok(n) if !n.starts_with("_uid_ses.") => Ok(Session::Existing(n)),
        _ => {
            keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0)?;
            Ok(Session::Joined)
        }
    }
}

/// Whether the kernel has persistent keyrings (CONFIG_PERSISTENT_KEYRINGS): without them a
/// key in an anonymous session keyring dies with the process.
pub fn persistent_keyring_available() -> bool {
    keyctl(KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_SESSION_KEYRING, 0).is_ok()
}

/// The persistent keyring's expiry in seconds, for messages.
pub fn persistent_expiry_secs() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/keys/persistent_keyring_expiry")
        .ok()?
        .trim()
        .parse()
        .ok()
}
