//! Safe path resolution for mounts. Host sources are walked one component at a time with
//! `O_PATH | O_NOFOLLOW`, and a symlink that lies inside a writable grant (one the agent
//! could have planted in an earlier session) is refused. Targets are walked inside the new
//! root without following any symlink, and missing components are created only on a tmpfs
//! omac mounted itself, never on a host directory.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::sys;

/// Whether `inner` is `outer` or lies beneath it (component-wise).
pub fn within(inner: &str, outer: &str) -> bool {
    Path::new(inner).starts_with(Path::new(outer))
}

fn name(c: &str) -> io::Result<CString> {
    sys::cstr(c)
}

fn open_nofollow(dir: &OwnedFd, comp: &str) -> io::Result<OwnedFd> {
    sys::openat(
        dir.as_raw_fd(),
        &name(comp)?,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
    )
}

fn is_symlink(fd: &OwnedFd) -> io::Result<bool> {
    Ok(sys::fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

fn readlink(fd: &OwnedFd) -> io::Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat with an empty path reads the link the O_PATH descriptor names.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Opens the host path `path` (`O_PATH`), following symlinks except those that lie inside
/// one of `writable` (the host paths the sandbox can write).
pub fn open_host(path: &str, writable: &[String]) -> Result<OwnedFd, String> {
    // Most sources hold no symlink at all: one call settles them.
    match sys::openat2(
        libc::AT_FDCWD,
        Path::new(path),
        libc::O_PATH,
        sys::resolve::NO_SYMLINKS | sys::resolve::NO_MAGICLINKS,
    ) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {}
        Err(e) => return Err(format!("{path}: {}", sys::errno_text(&e))),
    }
    let root = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("/: {}", sys::errno_text(&e)))?;
    let mut cur = root;
    let mut cur_path = String::from("/");
    let mut queue: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .rev()
        .collect();
    let mut links = 0;
    while let Some(comp) = queue.pop() {
        if comp == "." {
            continue;
        }
        if comp == ".." {
            cur = sys::openat(cur.as_raw_fd(), c"..", libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(|e| format!("{cur_path}/..: {}", sys::errno_text(&e)))?;
            cur_path = Path::new(&cur_path)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "/".into());
            continue;
        }
        let here = Path::new(&cur_path).join(&comp).display().to_string();
        let fd =
            open_nofollow(&cur, &comp).map_err(|e| format!("{here}: {}", sys::errno_text(&e)))?;
        if is_symlink(&fd).map_err(|e| format!("{here}: {e}"))? {
            if let Some(w) = writable.iter().find(|w| within(&here, w) && here != **w) {
                return Err(format!(
                    "{path} passes through the symlink {here}, which lies inside the writable \
                     grant {w} (the agent could have planted it)"
                ));
            }
            links += 1;
            if links > 40 {
                return Err(format!("{path}: too many levels of symbolic links"));
            }
            let target = readlink(&fd).map_err(|e| format!("{here}: {e}"))?;
            if target.starts_with('/') {
                cur = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
                    .map_err(|e| format!("/: {e}"))?;
                cur_path = "/".into();
            }
            queue.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .rev(),
            );
            continue;
        }
        cur = fd;
        cur_path = here;
    }
    Ok(cur)
}

/// What to create at a missing mount target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// A directory (for a directory or a filesystem mount).
    Dir,
    /// An empty file (for a bind of a file, socket or device).
    File,
}

/// Opens `dest` (absolute, inside the root `root`) as `O_PATH` without following any
/// symlink. A missing component is created when `may_create(path)` allows it (the path lies
/// on a tmpfs omac mounted); the last one as `last`. `fresh`: `dest` lies on such a tmpfs,
/// where it most likely does not exist yet, so it is created in its parent straight away
/// (an existing one is opened the same way, as a target never is a symlink).
pub fn open_target(
    root: &OwnedFd,
    dest: &str,
    last: Create,
    fresh: bool,
    may_create: &dyn Fn(&str) -> bool,
) -> Result<OwnedFd, String> {
    // Fast paths: the target exists, or its parent does (mounts come parent first).
    let strict = sys::resolve::IN_ROOT | sys::resolve::NO_SYMLINKS | sys::resolve::NO_MAGICLINKS;
    let rel = dest.trim_start_matches('/');
    let probed = if fresh {
        Err(io::Error::from_raw_os_error(libc::ENOENT))
    } else {
        sys::openat2(root.as_raw_fd(), Path::new(rel), libc::O_PATH, strict)
    };
    match probed {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let p = Path::new(rel);
            if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
                // Right below the root: the root's own descriptor is the parent.
                if parent.as_os_str().is_empty() {
                    if let Some(name) = name.to_str() {
                        return create_in(root, name, dest, last, may_create);
                    }
                }
                if let Ok(dir) = sys::openat2(
                    root.as_raw_fd(),
                    parent,
                    libc::O_PATH | libc::O_DIRECTORY,
                    strict,
                ) {
                    if let Some(name) = name.to_str() {
                        return create_in(&dir, name, dest, last, may_create);
                    }
                }
            }
        }
        Err(_) => {}
    }
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty()).collect();
    let mut cur = sys::openat(root.as_raw_fd(), c".", libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("the new root: {e}"))?;
    let mut here = String::new();
    for (i, comp) in comps.iter().enumerate() {
        here.push('/');
        here.push_str(comp);
        let is_last = i + 1 == comps.len();
        let fd = match open_nofollow(&cur, comp) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !may_create(&here) {
                    return Err(format!(
                        "{here} does not exist, and it lies in a directory bound from the host \
                         (omac never creates files on the host)"
                    ));
                }
                let kind = if is_last { last } else { Create::Dir };
                match create(&cur, comp, kind).map_err(|e| format!("creating {here}: {e}"))? {
                    Some(fd) => {
                        cur = fd;
                        continue;
                    }
                    None => open_nofollow(&cur, comp)
                        .map_err(|e| format!("{here}: {}", sys::errno_text(&e)))?,
                }
            }
            Err(e) => return Err(format!("{here}: {}", sys::errno_text(&e))),
        };
        let st = sys::fstat(fd.as_raw_fd()).map_err(|e| format!("{here}: {e}"))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(format!(
                "{here} is a symlink inside the sandbox's view; omac does not follow symlinks in mount targets"
            ));
        }
        if !is_last && !sys::is_dir_mode(st.st_mode) {
            return Err(format!("{here} is not a directory"));
        }
        cur = fd;
    }
    Ok(cur)
}

/// Creates `name` in `dir` as `kind` and opens what it made: `None` when something exists
/// there already (the caller opens and checks it). What was just made needs no check: a
/// new file is opened by its creation, a new directory with `O_DIRECTORY`, which refuses a
/// symlink put in its place meanwhile.
fn create(dir: &OwnedFd, name: &str, kind: Create) -> Result<Option<OwnedFd>, String> {
    let n = self::name(name).map_err(|e| e.to_string())?;
    let made = if kind == Create::File {
        sys::openat(
            dir.as_raw_fd(),
            &n,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o644,
        )
        .map(Some)
    } else {
        // SAFETY: valid descriptor and C string.
        sys::cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o755) }).and_then(|_| {
            sys::openat(
                dir.as_raw_fd(),
                &n,
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY,
                0,
            )
            .map(Some)
        })
    };
    match made {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(None),
        Err(e) => Err(sys::errno_text(&e)),
        Ok(fd) => Ok(fd),
    }
}

/// Creates `name` (the last component of `dest`) in `dir` when allowed, and opens it.
fn create_in(
    dir: &OwnedFd,
    name: &str,
    dest: &str,
    last: Create,
    may_create: &dyn Fn(&str) -> bool,
) -> Result<OwnedFd, String> {
    if !may_create(dest) {
        return Err(format!(
            "{dest} does not exist, and it lies in a directory bound from the host \
             (omac never creates files on the host)"
        ));
    }
    if let Some(fd) = create(dir, name, last).map_err(|e| format!("creating {dest}: {e}"))? {
        return Ok(fd);
    }
    let fd = open_nofollow(dir, name).map_err(|e| format!("{dest}: {}", sys::errno_text(&e)))?;
    let st = sys::fstat(fd.as_raw_fd()).map_err(|e| format!("{dest}: {e}"))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(format!(
            "{dest} is a symlink inside the sandbox's view; omac does not follow symlinks in mount targets"
        ));
    }
    Ok(fd)
}

/// Opens `path` inside `root` the way the agent would see it (symlinks followed, but never
/// out of the root): for masks, which must hide what the path designates.
pub fn open_in_root(root: &OwnedFd, path: &str, resolve_flags: u64) -> io::Result<OwnedFd> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    sys::openat2(
        root.as_raw_fd(),
        Path::new(std::ffi::OsStr::from_bytes(rel.as_bytes())),
        libc::O_PATH,
        sys::resolve::IN_ROOT | sys::resolve::NO_MAGICLINKS | resolve_flags,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_symlinks_inside_writable_grants_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let work = base.join("work");
        std::fs::create_dir_all(work.join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", work.join("cache")).unwrap();
        std::os::unix::fs::symlink("real", work.join("rel")).unwrap();
        let w = vec![work.display().to_string()];
        let e = open_host(&format!("{}/cache", work.display()), &w).unwrap_err();
        assert!(e.contains("planted"), "{e}");
        // Outside any writable grant, symlinks are followed as usual.
        assert!(open_host(&format!("{}/cache", work.display()), &[]).is_ok());
        assert!(open_host(&format!("{}/rel", work.display()), &[]).is_ok());
        assert!(open_host("/nonexistent/x", &[])
            .unwrap_err()
            .contains("ENOENT"));
    }

    #[test]
    fn targets_never_follow_symlinks_and_create_only_where_allowed() {
        let d = tempfile::tempdir().unwrap();
        let root = sys::openat(
            libc::AT_FDCWD,
            &sys::cpath(d.path()).unwrap(),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("link")).unwrap();
        let yes = |_: &str| true;
        let no = |_: &str| false;
        // The same answers whether the target is expected to be new (`fresh`) or not.
        for fresh in [false, true] {
            let a = if fresh { "/fresh" } else { "/a" };
            assert!(open_target(&root, &format!("{a}/b/c"), Create::Dir, fresh, &yes).is_ok());
            assert!(d.path().join(&a[1..]).join("b/c").is_dir());
            // Existing, it is opened as it is.
            let again = open_target(&root, &format!("{a}/b/c"), Create::Dir, fresh, &yes).unwrap();
            assert!(sys::is_dir_mode(
                sys::fstat(again.as_raw_fd()).unwrap().st_mode
            ));
            assert!(open_target(&root, &format!("{a}/f"), Create::File, fresh, &yes).is_ok());
            assert!(d.path().join(&a[1..]).join("f").is_file());
            let e = open_target(&root, "/link/passwd", Create::File, fresh, &yes).unwrap_err();
            assert!(e.contains("symlink"), "{e}");
            // A symlink as the target itself is refused, not followed or replaced.
            let e = open_target(&root, "/link", Create::Dir, fresh, &yes).unwrap_err();
            assert!(e.contains("symlink"), "{e}");
            let e = open_target(&root, "/x/y", Create::Dir, fresh, &no).unwrap_err();
            assert!(e.contains("never creates"), "{e}");
        }
        assert!(d.path().join("link").is_symlink());
        // Inside the root, a symlink to /etc resolves to <root>/etc, which does not exist.
        assert!(open_in_root(&root, "/link/passwd", 0).is_err());
        assert!(open_in_root(&root, "/a/f", 0).is_ok());
    }
}
