//! The private runtime directory of one session: `$XDG_RUNTIME_DIR/omac/<run-id>` (or, see
//! [`root`], `/dev/shm/omac-<uid>/<run-id>` or `/tmp/omac-<uid>/<run-id>`), mode 0700,
//! holding the session's sockets and its bundle.
//! Paths stay short: a Unix socket path has room for 107 bytes.
//!
//! A session holds an exclusive `flock` on `<dir>/lock` for its whole life. The kernel
//! drops the lock when the process dies, however it dies, so the next session finds the
//! directories of dead ones (omac killed with SIGKILL, a crash) and removes them.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::{Code, Failure};

/// Longest Unix socket path the kernel accepts (sun_path minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The longest socket name a session creates (`publish-65535.sock`).
const LONGEST_NAME: &str = "publish-65535.sock";

/// A session's runtime directory, removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: File,
    /// Removed already, or kept on purpose: nothing left to do when dropped.
    settled: bool,
}

/// The directory that holds every session's runtime directory, created 0700 if missing:
/// `$XDG_RUNTIME_DIR/omac`; without one (root, CI, containers), memory-backed places first:
/// `/run/user/<uid>/omac` when the system made that directory, else `/dev/shm/omac-<uid>`
/// when /dev/shm is a tmpfs, else `<tmp>/omac-<uid>`. Sockets and lock files come and go at
/// every session: on a disk (an ext4 mounted with `discard`, here) each of those creations
/// and removals costs more than the rest of the session's bookkeeping.
pub fn root() -> anyhow::Result<PathBuf> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let private = |p: &Path| {
        p.is_absolute()
            && std::fs::metadata(p)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
    };
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| private(p))
        .or_else(|| Some(PathBuf::from(format!("/run/user/{uid}"))).filter(|p| private(p)));
    let dir = match xdg {
        Some(x) => x.join("omac"),
        None if is_tmpfs(Path::new("/dev/shm")) => PathBuf::from(format!("/dev/shm/omac-{uid}")),
        None => std::env::temp_dir().join(format!("omac-{uid}")),
    };
    private_dir(&dir, uid)?;
    Ok(dir)
}

/// Whether `p` is the root of a tmpfs.
fn is_tmpfs(p: &Path) -> bool {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: plain data filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and buffer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as libc::c_long == TMPFS_MAGIC }
}

/// Creates `dir` 0700, or checks that it is a real directory of `uid` that nobody else can
/// enter (in a shared `/tmp`, another user could have made it first).
fn private_dir(dir: &Path, uid: u32) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting {} to mode 0700", dir.display()))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(dir)
                .with_context(|| format!("checking {}", dir.display()))?;
            if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
                return Err(Failure::new(
                    Code::Io,
                    format!(
                        "{} is not a private directory of uid {uid} (owner {}, mode {:o}{})\n  \
                         fix: remove it (another user may have created it to watch your sessions), \
                         or set XDG_RUNTIME_DIR to a private directory",
                        dir.display(),
                        m.uid(),
                        m.mode() & 0o7777,
                        if m.file_type().is_symlink() {
                            ", a symlink"
                        } else {
                            ""
                        }
                    ),
                )
                .into());
            }
            Ok(())
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("creating {}", dir.display()))),
    }
}

/// Tries to take the lock of a session directory; Some(file) when nobody holds it.
fn try_lock(path: &Path) -> Option<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (r == 0).then_some(f)
}

/// Removes the runtime directories of sessions that are no longer running; returns them.
pub fn clean_stale(root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return removed;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(m) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !m.is_dir() {
            continue;
        }
        let old = m
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 60);
        let lock = dir.join("lock");
        let dead = if e.file_name().to_string_lossy().starts_with('.') {
            // Being set up (it is renamed once locked), or left by a session that died then.
            old
        } else {
            match try_lock(&lock) {
                Some(_held) => true,
                None => !lock.exists() && old,
            }
        };
        if dead && std::fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the runtime directory of a dead session");
            removed.push(dir);
        }
    }
    removed
}

impl RunDir {
    /// Creates the runtime directory of session `run_id` under `root` and locks it.
    pub fn create(root: &Path, run_id: &str) -> anyhow::Result<RunDir> {
        let path = root.join(run_id);
        if path.join(LONGEST_NAME).as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Failure::new(
                Code::Io,
                format!(
                    "the runtime directory {} is too long for Unix socket paths ({} bytes at most)\n  \
                     fix: set XDG_RUNTIME_DIR (or TMPDIR) to a shorter directory",
                    path.display(),
                    MAX_SOCKET_PATH - LONGEST_NAME.len() - 1
                ),
            )
            .into());
        }
        // Set up under a hidden name and renamed once locked: another session cleaning up
        // never sees it unlocked.
        let setup = root.join(format!(".{run_id}.new"));
        let mut made = std::fs::DirBuilder::new().mode(0o700).create(&setup);
        if matches!(&made, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            // Another session removed the (then empty) root meanwhile.
            // SAFETY: getuid cannot fail.
            private_dir(root, unsafe { libc::getuid() })?;
            made = std::fs::DirBuilder::new().mode(0o700).create(&setup);
        }
        made.with_context(|| format!("creating the session directory {}", setup.display()))?;
        std::fs::set_permissions(&setup, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting {} to mode 0700", setup.display()))?;
        let lock_path = setup.join("lock");
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(anyhow::Error::new(e).context(format!("locking {}", lock_path.display())));
        }
        std::fs::rename(&setup, &path)
            .with_context(|| format!("renaming {} to {}", setup.display(), path.display()))?;
        Ok(RunDir {
            path,
            _lock: lock,
            settled: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file of the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Keeps the directory when dropped (debugging: `OMAC_KEEP_RUNDIR=1`).
    pub fn keep(&mut self) {
        self.settled = true;
    }

    /// Removes the directory now, once nothing uses its sockets any more (dropping it does
    /// the same, if this was not called).
    pub fn remove(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
        // The root too, when this was the last session (fails while others run).
        if let Some(root) = self.path.parent() {
            let _ = std::fs::remove_dir(root);
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_locked_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("omac-x");
        // SAFETY: getuid cannot fail.
        private_dir(&root, unsafe { libc::getuid() }).unwrap();
        let d = RunDir::create(&root, "abc").unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A live session is never taken for a dead one.
        assert!(clean_stale(&root).is_empty());
        assert!(d.path().exists());
        let p = d.path().to_path_buf();
        drop(d);
        assert!(!p.exists());
        assert!(!root.exists(), "the last session removes the empty root");
    }

    #[test]
    fn dead_sessions_are_cleaned() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        let mut d = RunDir::create(&root, "dead").unwrap();
        d.keep();
        let p = d.path().to_path_buf();
        std::fs::write(p.join("facade.sock"), "").unwrap();
        drop(d); // the lock goes as it would when the process dies
        assert!(p.exists());
        assert_eq!(clean_stale(&root), vec![p.clone()]);
        assert!(!p.exists());
    }

    #[test]
    fn an_open_root_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("open");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: getuid cannot fail.
        let e = private_dir(&root, unsafe { libc::getuid() }).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a private directory"),
            "{e:#}"
        );
    }

    #[test]
    fn long_roots_are_refused_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("x".repeat(90));
        std::fs::create_dir(&root).unwrap();
        let e = RunDir::create(&root, "0123456789abcdef").unwrap_err();
        assert!(format!("{e:#}").contains("XDG_RUNTIME_DIR"), "{e:#}");
    }
}
