//! File primitives every state file uses: directories made private, advisory locks (flock)
//! and atomic replacement (temp file in the same directory, fsync, rename, fsync the dir).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Creates `dir` and its missing parents with `mode` (existing ones are left as they are).
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| Error::io("creating", dir, e))
}

/// An advisory lock on a lock file, released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Waits for an exclusive lock on `path` (created 0600 if missing).
    pub fn exclusive(path: &Path) -> Result<Lock> {
        Lock::take(path, libc::LOCK_EX).map(|l| l.expect("blocking lock"))
    }

    /// Waits for a shared lock on `path` (created 0600 if missing).
    pub fn shared(path: &Path) -> Result<Lock> {
        Lock::take(path, libc::LOCK_SH).map(|l| l.expect("blocking lock"))
    }

    /// Takes an exclusive lock on `path` if nobody holds any lock on it; `None` otherwise.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        Lock::take(path, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn take(path: &Path, op: libc::c_int) -> Result<Option<Lock>> {
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| Error::io("opening the lock", path, e))?;
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) && op & libc::LOCK_NB != 0 {
                    return Ok(None);
                }
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("locking", path, err));
            }
            // The file may have been unlinked (gc removes pin files) between open and flock:
            // a lock on an unlinked inode protects nothing, so take it again on the new one.
            if same_inode(&file, path) {
                return Ok(Some(Lock {
                    file,
                    path: path.to_path_buf(),
                }));
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own; closing would release it anyway.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

fn same_inode(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name nobody else is using right now: pid, time and a counter.
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{t:08x}-{n}", std::process::id())
}

/// Replaces `path` with `bytes` atomically: written to `<name>.tmp-*` beside it with `mode`,
/// flushed to disk, renamed over `path`, and the directory flushed. Readers see the old file
/// or the new one, never a part. The caller holds the file's lock.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!("{name}.tmp-{}", unique_suffix()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("setting the mode of", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("flushing", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads `path`, or `None` when it does not exist.
pub fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn try_exclusive_sees_a_shared_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = Lock::shared(&p).unwrap();
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_exclusive(&p).unwrap().is_some());
    }
}
