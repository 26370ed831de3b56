//! The sandbox's filesystem view, built by init inside its private mount namespace: a tmpfs
//! over the bundle's empty root (the bundle on disk is never written), the bundle's mounts
//! in order with the new mount API (binds cloned and made read-only recursively, new
//! filesystems from fsopen), the minimal /dev links, sysctls, masks, read-only paths, then
//! `pivot_root` and the old root detached.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::mountopts::{self, Kind};
use crate::resolve::{self, Create};
use crate::sys::{self, attr};
use crate::wire::{Reporter, RunPlan};

/// A failed step: what, why, and what to do.
#[derive(Debug)]
pub struct StepError {
    /// The step.
    pub step: String,
    /// What happened.
    pub message: String,
    /// What to do.
    pub fix: String,
}

fn step(step: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> StepError {
    StepError {
        step: step.into(),
        message: message.into(),
        fix: fix.into(),
    }
}

/// The hint for a mount the kernel refused.
fn refusal_fix(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "the kernel refused a mount in the user namespace; run `omac doctor` (AppArmor's \
             unprivileged-userns restriction or a container's seccomp profile can cause this)"
                .into()
        }
        Some(libc::ENOSYS) => "omac needs the new mount API (Linux 5.12 or newer)".into(),
        _ => "run `omac doctor`; if it reports nothing, report this as a bug".into(),
    }
}

/// Reads the messages the kernel logged on a filesystem context.
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.push(
            String::from_utf8_lossy(&buf[..n as usize])
                .trim()
                .to_string(),
        );
    }
    out.join("; ")
}

/// A new filesystem instance, detached, with mount attributes `attrs`.
pub fn new_fs(
    fstype: &str,
    source: &str,
    params: &[(String, Option<String>)],
    attrs: u64,
) -> Result<OwnedFd, String> {
    let fs =
        sys::fsopen(fstype).map_err(|e| format!("fsopen {fstype}: {}", sys::errno_text(&e)))?;
    let _ = sys::fsconfig_set(&fs, "source", Some(source));
    for (k, v) in params {
        sys::fsconfig_set(&fs, k, v.as_deref()).map_err(|e| {
            let log = fs_log(&fs);
            format!(
                "{fstype} option {k}{}: {}{}",
                v.as_ref().map(|v| format!("={v}")).unwrap_or_default(),
                sys::errno_text(&e),
                if log.is_empty() {
                    String::new()
                } else {
                    format!(" ({log})")
                }
            )
        })?;
    }
    sys::fsconfig_create(&fs).map_err(|e| {
        let log = fs_log(&fs);
        format!(
            "creating {fstype}: {}{}",
            sys::errno_text(&e),
            if log.is_empty() {
                String::new()
            } else {
                format!(" ({log})")
            }
        )
    })?;
    sys::fsmount(&fs, attrs).map_err(|e| format!("fsmount {fstype}: {}", sys::errno_text(&e)))
}

/// What a mount made so far is, for creating mount points beneath it.
#[derive(Debug, Clone)]
enum Under {
    /// A tmpfs omac mounted, or the root: anything may be created.
    Ours,
    /// A writable bind of this host directory: a missing mount point is created on the
    /// host (as any OCI runtime does) and removed after the run.
    HostWritable(String),
    /// Anything else: nothing is created.
    Other,
}

/// The mounts made so far, and the host paths created for mount points.
struct Made {
    mounts: Vec<(String, Under)>,
    created: std::cell::RefCell<Vec<String>>,
}

impl Made {
    fn has(&self, dest: &str) -> bool {
        self.mounts.iter().any(|(d, _)| d == dest)
    }

    fn ours(&self, dest: &str) -> bool {
        self.mounts
            .iter()
            .any(|(d, u)| d == dest && matches!(u, Under::Ours))
    }

    /// Whether a mount point may be created at `path` (recording host paths it creates).
    fn may_create(&self, path: &str) -> bool {
        let parent = std::path::Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/".into());
        let covering = self
            .mounts
            .iter()
            .filter(|(d, _)| resolve::within(&parent, d))
            .max_by_key(|(d, _)| std::path::Path::new(d).components().count());
        match covering {
            Some((_, Under::Ours)) => true,
            Some((dest, Under::HostWritable(source))) => {
                let rest = std::path::Path::new(path)
                    .strip_prefix(dest)
                    .unwrap_or(std::path::Path::new(""));
                let host = std::path::Path::new(source).join(rest);
                self.created.borrow_mut().push(host.display().to_string());
                true
            }
            _ => false,
        }
    }
}

/// Builds the view over `plan.rootfs` and pivots into it. Runs in init, before the agent.
pub fn build(plan: &RunPlan, rep: &Reporter) -> Result<(), StepError> {
    // SAFETY: a propagation change on "/" with no data.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(step(
            "make mounts private",
            sys::errno_text(&e),
            refusal_fix(&e),
        ));
    }
    let rootfs =
        sys::cpath(&plan.rootfs).map_err(|e| step("root", e.to_string(), "use a plain path"))?;
    let root_dir = sys::openat(libc::AT_FDCWD, &rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| {
            step(
                "root",
                format!("{}: {}", plan.rootfs.display(), sys::errno_text(&e)),
                "the bundle's root directory must exist",
            )
        })?;
    let root_mount = if plan.root_tmpfs {
        new_fs(
            "tmpfs",
            "omac-root",
            &[("mode".into(), Some("0755".into()))],
            attr::NOSUID | attr::NODEV,
        )
        .map_err(|m| step("root tmpfs", m, "run `omac doctor`"))?
    } else {
        sys::clone_tree(&root_dir, true)
            .map_err(|e| step("root bind", sys::errno_text(&e), refusal_fix(&e)))?
    };
    sys::move_mount(&root_mount, &root_dir)
        .map_err(|e| step("root", sys::errno_text(&e), refusal_fix(&e)))?;
    let root = sys::openat(libc::AT_FDCWD, &rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| step("root", sys::errno_text(&e), "run `omac doctor`"))?;
    let devnull = sys::openat(libc::AT_FDCWD, c"/dev/null", libc::O_PATH, 0).map_err(|e| {
        step(
            "open /dev/null",
            sys::errno_text(&e),
            "the host needs /dev/null",
        )
    })?;

    let parsed: Vec<mountopts::Parsed> = plan
        .mounts
        .iter()
        .map(mountopts::parse)
        .collect::<Result<_, _>>()
        .map_err(|m| step("mounts", m, "regenerate the bundle"))?;
    let writable: Vec<String> = parsed
        .iter()
        .filter_map(|p| match &p.kind {
            Kind::Bind { source, .. } if p.attrs & attr::RDONLY == 0 => Some(source.clone()),
            _ => None,
        })
        .collect();
    let mut made = Made {
        mounts: vec![("/".to_string(), Under::Ours)],
        created: Default::default(),
    };
    let result = (|| {
        for p in &parsed {
            mount_one(p, &root, &writable, &made)?;
            let under = match &p.kind {
                Kind::Fs { fstype, .. } if fstype == "tmpfs" => Under::Ours,
                Kind::Bind { source, .. } if p.attrs & attr::RDONLY == 0 => {
                    Under::HostWritable(source.clone())
                }
                _ => Under::Other,
            };
            made.mounts.push((p.destination.clone(), under));
            rep.debug(|| format!("mounted {}", p.destination));
        }
        minimal_dev(&root, &made, rep)
    })();
    // The omac process removes them after the run (if they are still empty).
    for path in made.created.borrow().iter() {
        rep.send(&crate::wire::Msg::Created { path: path.clone() });
    }
    result?;
    for (key, value) in &plan.sysctl {
        let path = format!("proc/sys/{}", key.replace('.', "/"));
        let r = sys::openat2(
            root.as_raw_fd(),
            std::path::Path::new(&path),
            libc::O_WRONLY,
            sys::resolve::IN_ROOT | sys::resolve::NO_SYMLINKS,
        )
        .and_then(|fd| sys::write_all(fd.as_raw_fd(), value.as_bytes()));
        r.map_err(|e| {
            step(
                format!("sysctl {key}"),
                sys::errno_text(&e),
                "only sysctls of the sandbox's own namespaces can be set; remove it from linux.sysctl",
            )
        })?;
    }
    rep.debug(|| "default devices and sysctls done".to_string());
    for m in &plan.masked {
        mask(&root, &devnull, m)?;
    }
    rep.debug(|| "masks done".to_string());
    for r in &plan.readonly {
        let fd = match resolve::open_in_root(&root, r, sys::resolve::NO_SYMLINKS) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(step(
                    format!("read-only {r}"),
                    sys::errno_text(&e),
                    "remove it from linux.readonlyPaths",
                ))
            }
        };
        let tree = sys::clone_tree(&fd, true).map_err(|e| {
            step(
                format!("read-only {r}"),
                sys::errno_text(&e),
                refusal_fix(&e),
            )
        })?;
        sys::mount_setattr(&tree, attr::RDONLY, 0, 0, true)
            .and_then(|()| sys::move_mount(&tree, &fd))
            .map_err(|e| {
                step(
                    format!("read-only {r}"),
                    sys::errno_text(&e),
                    refusal_fix(&e),
                )
            })?;
    }
    rep.debug(|| "read-only paths done".to_string());
    pivot(&root)?;
    rep.debug(|| "pivoted, old root detached".to_string());
    if plan.root_readonly {
        let fd = sys::openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| step("read-only root", e.to_string(), "run `omac doctor`"))?;
        sys::mount_setattr(&fd, attr::RDONLY, 0, 0, false)
            .map_err(|e| step("read-only root", sys::errno_text(&e), refusal_fix(&e)))?;
    }
    Ok(())
}

fn mount_one(
    p: &mountopts::Parsed,
    root: &OwnedFd,
    writable: &[String],
    made: &Made,
) -> Result<(), StepError> {
    let what = format!("mount {}", p.destination);
    let may = |path: &str| made.may_create(path);
    let (tree, create) = match &p.kind {
        Kind::Bind { source, recursive } => {
            let src = resolve::open_host(source, writable).map_err(|m| {
                step(
                    &what,
                    m,
                    "remove the symlink, or create the missing host path, or regenerate the bundle",
                )
            })?;
            let st = sys::fstat(src.as_raw_fd())
                .map_err(|e| step(&what, e.to_string(), "run `omac doctor`"))?;
            let tree = match sys::clone_tree(&src, *recursive) {
                // A tree with locked submounts can only be cloned whole in a user namespace.
                Err(e) if !recursive && e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::clone_tree(&src, true)
                }
                r => r,
            }
            .map_err(|e| {
                step(
                    &what,
                    format!("cloning {source}: {}", sys::errno_text(&e)),
                    refusal_fix(&e),
                )
            })?;
            let clear = if p.atime_set { attr::ATIME_MASK } else { 0 };
            sys::mount_setattr(&tree, p.attrs, clear, 0, true).map_err(|e| {
                step(
                    &what,
                    format!("setting its flags: {}", sys::errno_text(&e)),
                    refusal_fix(&e),
                )
            })?;
            let create = if sys::is_dir_mode(st.st_mode) {
                Create::Dir
            } else {
                Create::File
            };
            (tree, create)
        }
        Kind::Fs {
            fstype,
            source,
            params,
        } => {
            let tree = new_fs(fstype, source, params, p.attrs).map_err(|m| {
                step(
                    &what,
                    m,
                    "check the mount's type and options (the kernel's message is quoted)",
                )
            })?;
            (tree, Create::Dir)
        }
    };
    let target = resolve::open_target(root, &p.destination, create, &may).map_err(|m| {
        step(
            &what,
            m,
            "remove the symlink or the mount, or regenerate the bundle",
        )
    })?;
    sys::move_mount(&tree, &target).map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))
}

/// The OCI runtime spec's default devices, which every runtime supplies itself: bound from
/// the host (a user namespace cannot create device nodes).
pub const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// A minimal /dev, when /dev is a tmpfs omac mounted: the default devices the bundle does
/// not mount itself, then the usual links (`ptmx`, `fd`, `stdin`, `stdout`, `stderr`).
fn minimal_dev(root: &OwnedFd, made: &Made, rep: &Reporter) -> Result<(), StepError> {
    if !made.ours("/dev") {
        return Ok(());
    }
    for d in DEFAULT_DEVICES {
        if made.has(d) {
            continue;
        }
        let what = format!("device {d}");
        let src = match resolve::open_host(d, &[]) {
            Ok(fd) => fd,
            Err(m) => {
                // A host without the node (a minimal container) runs without it.
                rep.debug(|| format!("{what} skipped: {m}"));
                continue;
            }
        };
        let tree = sys::clone_tree(&src, false)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
        sys::mount_setattr(&tree, attr::NOSUID | attr::NOEXEC, 0, 0, false)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
        let target = resolve::open_target(root, d, Create::File, &|p| made.may_create(p))
            .map_err(|m| step(&what, m, "remove what the bundle puts at that path"))?;
        sys::move_mount(&tree, &target)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
    }
    let Ok(dev) = resolve::open_in_root(root, "/dev", sys::resolve::NO_SYMLINKS) else {
        return Ok(());
    };
    let Ok(dev) = sys::openat(dev.as_raw_fd(), c".", libc::O_DIRECTORY | libc::O_RDONLY, 0) else {
        return Ok(());
    };
    let pts = made.has("/dev/pts");
    let links: &[(&std::ffi::CStr, &std::ffi::CStr, bool)] = &[
        (c"pts/ptmx", c"ptmx", pts),
        (c"/proc/self/fd", c"fd", true),
        (c"/proc/self/fd/0", c"stdin", true),
        (c"/proc/self/fd/1", c"stdout", true),
        (c"/proc/self/fd/2", c"stderr", true),
    ];
    for (target, name, wanted) in links {
        if *wanted {
            // SAFETY: valid descriptor and C strings; an existing entry is left alone.
            unsafe { libc::symlinkat(target.as_ptr(), dev.as_raw_fd(), name.as_ptr()) };
        }
    }
    Ok(())
}

/// Hides `path`: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask(root: &OwnedFd, devnull: &OwnedFd, path: &str) -> Result<(), StepError> {
    let what = format!("mask {path}");
    let fd = match resolve::open_in_root(root, path, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(step(
                &what,
                sys::errno_text(&e),
                "remove it from linux.maskedPaths",
            ))
        }
    };
    let st =
        sys::fstat(fd.as_raw_fd()).map_err(|e| step(&what, e.to_string(), "run `omac doctor`"))?;
    let cover = if sys::is_dir_mode(st.st_mode) {
        new_fs(
            "tmpfs",
            "omac-mask",
            &[
                ("mode".into(), Some("0555".into())),
                ("size".into(), Some("4k".into())),
            ],
            attr::RDONLY | attr::NOSUID | attr::NODEV | attr::NOEXEC,
        )
        .map_err(|m| step(&what, m, "run `omac doctor`"))?
    } else {
        let t = sys::clone_tree(devnull, false)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
        sys::mount_setattr(&t, attr::RDONLY | attr::NOSUID | attr::NOEXEC, 0, 0, false)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
        t
    };
    sys::move_mount(&cover, &fd).map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))
}

/// `pivot_root` into `root` and detach the old root.
fn pivot(root: &OwnedFd) -> Result<(), StepError> {
    let dir = sys::openat(
        root.as_raw_fd(),
        c".",
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|e| step("pivot_root", e.to_string(), "run `omac doctor`"))?;
    // SAFETY: fchdir on a directory descriptor; pivot_root(".", ".") stacks the old root
    // under the new one, and the detach below removes it.
    unsafe {
        if libc::fchdir(dir.as_raw_fd()) < 0 {
            let e = io::Error::last_os_error();
            return Err(step("pivot_root", sys::errno_text(&e), "run `omac doctor`"));
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) < 0 {
            let e = io::Error::last_os_error();
            return Err(step("pivot_root", sys::errno_text(&e), refusal_fix(&e)));
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) < 0 {
            let e = io::Error::last_os_error();
            return Err(step(
                "detach the old root",
                sys::errno_text(&e),
                refusal_fix(&e),
            ));
        }
        if libc::chdir(c"/".as_ptr()) < 0 {
            let e = io::Error::last_os_error();
            return Err(step("chdir /", sys::errno_text(&e), "run `omac doctor`"));
        }
    }
    Ok(())
}
