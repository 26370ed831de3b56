//! Test hygiene for the kernel keyring. omac's keyutils store keeps secrets in the user's
//! persistent keyring, which outlives the test (three days by default) and which every
//! test of the user shares: a test that stores secrets there removes them when its world
//! is dropped, or they pile up until the user's key quota (200 keys for a user other than
//! root) makes later runs fail, and every key the kernel's garbage collector scans slows
//! the machine's key handling down.

use std::collections::HashSet;

const KEYCTL_DESCRIBE: libc::c_long = 6;
const KEYCTL_UNLINK: libc::c_long = 9;
const KEYCTL_READ: libc::c_long = 11;
const KEYCTL_GET_PERSISTENT: libc::c_long = 22;
const KEY_SPEC_THREAD_KEYRING: libc::c_long = -1;

/// Scopes of omac's key names (`...@omac/<scope>/<skill>`): the workdir id of `work` as
/// omac computes it (the path as given and canonical).
pub fn workdir_scopes(work: &std::path::Path) -> Vec<String> {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let mut paths = vec![work.to_path_buf()];
    if let Ok(c) = work.canonicalize() {
        paths.push(c);
    }
    paths
        .iter()
        .map(|p| hex::encode(sha2::Sha256::digest(p.as_os_str().as_bytes())))
        .collect()
}

/// Unlinks from this user's persistent keyring every omac key whose scope is one of
/// `scopes` or whose skill is one of `skills`. Best effort: a keyring that cannot be
/// reached holds nothing of the test's.
pub fn forget(scopes: &[String], skills: &[String]) {
    let scopes: HashSet<&str> = scopes.iter().map(String::as_str).collect();
    let skills: HashSet<&str> = skills.iter().map(String::as_str).collect();
    // SAFETY: keyctl with plain arguments: the persistent keyring of this user (uid -1),
    // linked into this thread's keyring so that its keys are possessed.
    let ring = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_PERSISTENT,
            -1 as libc::c_long,
            KEY_SPEC_THREAD_KEYRING,
        )
    };
    if ring < 0 {
        return;
    }
    let mut ids = vec![0i32; 4096];
    // SAFETY: a buffer of the size given.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_READ,
            ring,
            ids.as_mut_ptr(),
            ids.len() * 4,
        )
    };
    if n < 0 {
        return;
    }
    ids.truncate((n as usize / 4).min(ids.len()));
    for id in ids {
        let mut d = vec![0u8; 4096];
        // SAFETY: a buffer of the size given.
        let len = unsafe {
            libc::syscall(
                libc::SYS_keyctl,
                KEYCTL_DESCRIBE,
                id as libc::c_long,
                d.as_mut_ptr(),
                d.len(),
            )
        };
        if len <= 0 {
            continue;
        }
        d.truncate((len as usize).min(d.len()));
        let text = String::from_utf8_lossy(&d);
        // type;uid;gid;perm;description
        let Some(desc) = text.trim_end_matches('\0').splitn(5, ';').nth(4) else {
            continue;
        };
        let Some((_, name)) = desc.rsplit_once("@omac/") else {
            continue;
        };
        let (scope, skill) = name.split_once('/').unwrap_or(("", name));
        if scopes.contains(scope) || skills.contains(skill) {
            // SAFETY: keyctl with plain arguments.
            unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_UNLINK, id as libc::c_long, ring) };
        }
    }
}
