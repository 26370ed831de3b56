//! The sandbox's filesystem view, built by init inside its private mount namespace: a tmpfs
//! over the bundle's empty root (the bundle on disk is never written), the bundle's mounts
//! in order with the new mount API (binds cloned and made read-only recursively, new
//! filesystems from fsopen, a tmpfs folded into another or copied where nothing tells the
//! difference: see `fold`), the minimal /dev links, sysctls, masks, read-only paths, then
//! `pivot_root` and the old root detached.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::fold::{self, Limits, ReadOnly};
use crate::mountopts::{self, Kind};
use crate::resolve::{self, Create};
use crate::sys::{self, attr};
use omac_bundle::oci::Mount;

use crate::wire::{Reporter, RunPlan, View};

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
    /// A tmpfs omac mounted, or the root: anything may be created. `limits`: those of
    /// its filesystem, when another tmpfs may fold into it (see [`fold`]).
    Ours { limits: Option<Limits> },
    /// A writable bind of this host directory: a missing mount point is created on the
    /// host (as any OCI runtime does) and removed after the run.
    HostWritable(String),
    /// Anything else: nothing is created.
    Other,
}

/// The mounts made so far, and the paths created on the host for mount points (as seen in
/// the view, then on the host).
struct Made {
    mounts: Vec<(String, Under)>,
    created: std::cell::RefCell<Vec<(String, String)>>,
    read_only: ReadOnly,
}

impl Made {
    fn has(&self, dest: &str) -> bool {
        self.mounts.iter().any(|(d, _)| d == dest)
    }

    fn ours(&self, dest: &str) -> bool {
        self.mounts
            .iter()
            .any(|(d, u)| d == dest && matches!(u, Under::Ours { .. }))
    }

    /// The innermost mount made so far that holds the directory `path` would be created in.
    fn covering(&self, path: &str) -> Option<&(String, Under)> {
        let parent = std::path::Path::new(path)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/".into());
        self.mounts
            .iter()
            .filter(|(d, _)| resolve::within(&parent, d))
            .max_by_key(|(d, _)| std::path::Path::new(d).components().count())
    }

    /// Whether `path` would be created on a tmpfs omac mounted (or the view's root), where
    /// a mount point is most likely still to be made (see `resolve::open_target`).
    fn on_ours(&self, path: &str) -> bool {
        matches!(self.covering(path), Some((_, Under::Ours { .. })))
    }

    /// Whether a mount point may be created at `path` (recording host paths it creates).
    fn may_create(&self, path: &str) -> bool {
        match self.covering(path) {
            Some((_, Under::Ours { .. })) => true,
            Some((dest, Under::HostWritable(source))) => {
                let rest = std::path::Path::new(path)
                    .strip_prefix(dest)
                    .unwrap_or(std::path::Path::new(""));
                let host = std::path::Path::new(source).join(rest);
                self.created
                    .borrow_mut()
                    .push((path.to_string(), host.display().to_string()));
                true
            }
            _ => false,
        }
    }
}

/// The bundle's part of the view, mounted over its root (see [`begin`]); [`finish`]
/// completes it, [`Begun::abandon`] gives it up.
pub struct Begun {
    rootfs: std::path::PathBuf,
    root: OwnedFd,
    devnull: OwnedFd,
    /// The first mask over a file, in the view: the others are copies of it.
    null_mask: std::cell::RefCell<Option<OwnedFd>>,
    writable: Vec<String>,
    made: Made,
}

impl Begun {
    /// The descriptors it holds (the new root, /dev/null, the mounts it copies from), which
    /// [`finish`] needs.
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = vec![self.root.as_raw_fd(), self.devnull.as_raw_fd()];
        fds.extend(self.null_mask.borrow().as_ref().map(|m| m.as_raw_fd()));
        fds.extend(self.made.read_only.fds());
        fds
    }

    /// Gives the view up before [`finish`] (the run was called off): detaches it (a
    /// mount point of this namespace cannot be removed) and removes the mount points
    /// created on the host, which is still reachable since nothing pivoted.
    pub fn abandon(self) {
        if let Ok(c) = sys::cpath(&self.rootfs) {
            // SAFETY: a valid C string; a lazy detach of our own mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        remove_created(
            self.made
                .created
                .borrow()
                .iter()
                .map(|(_, host)| host.as_str()),
        );
    }
}

/// Mounts the bundle's view (`view`, from the plan's head) over its root: propagation made
/// private, the root (a tmpfs over an empty one), the bundle's mounts in order, the minimal
/// /dev. Runs in init, in its new mount namespace, possibly before the rest of the plan
/// has arrived: nothing of the run is needed, and nothing runs in the view until
/// [`finish`]. On failure the mount points it created on the host are removed.
pub fn begin(view: &View, rep: &Reporter) -> Result<Begun, StepError> {
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
        sys::cpath(&view.rootfs).map_err(|e| step("root", e.to_string(), "use a plain path"))?;
    let root_dir = sys::openat(libc::AT_FDCWD, &rootfs, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| {
            step(
                "root",
                format!("{}: {}", view.rootfs.display(), sys::errno_text(&e)),
                "the bundle's root directory must exist",
            )
        })?;
    let root_params = [("mode".to_string(), Some("0755".to_string()))];
    let root_mount = if view.root_tmpfs {
        new_fs(
            "tmpfs",
            "omac-root",
            &root_params,
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
    let parsed = parse(&view.mounts)?;
    let links = usr_links(&parsed, view);
    let mut begun = Begun {
        rootfs: view.rootfs.clone(),
        root,
        devnull,
        null_mask: Default::default(),
        writable: writable(&parsed),
        made: Made {
            mounts: vec![(
                "/".to_string(),
                Under::Ours {
                    limits: view
                        .root_tmpfs
                        .then(|| fold::limits(&root_params))
                        .flatten(),
                },
            )],
            created: Default::default(),
            read_only: ReadOnly::default(),
        },
    };
    let result = mount_all_linking(&parsed, &links, &mut begun, rep)
        .and_then(|()| minimal_dev(&begun.root, &begun.made, rep))
        .and_then(|()| set_sysctls(&begun.root, &view.sysctl))
        .and_then(|()| {
            rep.debug(|| "default devices and sysctls done".to_string());
            let (masked, readonly) = split_near_sockets(view, false);
            protect(&begun, &masked, &readonly)
        });
    match result {
        Ok(()) => Ok(begun),
        Err(e) => {
            begun.abandon();
            Err(e)
        }
    }
}

fn parse(mounts: &[Mount]) -> Result<Vec<mountopts::Parsed>, StepError> {
    mounts
        .iter()
        .map(mountopts::parse)
        .collect::<Result<_, _>>()
        .map_err(|m| step("mounts", m, "regenerate the bundle"))
}

/// The binds among `parsed` that can be symlinks instead, with the link's text. On a host
/// with a merged /usr, /bin, /lib, /lib64 and /sbin are links into it (`bin -> usr/bin`),
/// and a bundle binds them and /usr alike (read-only, nosuid, nodev): a bind of /bin then
/// shows the host's /usr/bin with the same flags as the bind of /usr does at /usr/bin. The
/// same link in the view's root (a tmpfs) shows the same files with the same flags, for a
/// mount fewer each. Only a bind of a top-level host link onto the same path qualifies,
/// whose target, with no further link on the way, lies in another bind of the view onto
/// its own host path with the same options; and nothing of the view (mount, mask,
/// read-only path) may lie below it. None when the view's root is the bundle's own
/// directory (a link would be made there, on the host).
fn usr_links(parsed: &[mountopts::Parsed], view: &View) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if !view.root_tmpfs {
        return out;
    }
    for p in parsed {
        let Kind::Bind { source, recursive } = &p.kind else {
            continue;
        };
        let name = &p.destination;
        if source != name || name.len() < 2 || name[1..].contains('/') {
            continue;
        }
        let Ok(text) = std::fs::read_link(name) else {
            continue;
        };
        let Some(text) = text.to_str().map(str::to_string) else {
            continue;
        };
        let target = if text.starts_with('/') {
            text.clone()
        } else {
            format!("/{text}")
        };
        // A plain target reached with no further link on the way (one lookup, where
        // resolving the link's name would read every component of it again).
        let resolved = !target.split('/').any(|c| c == "." || c == "..")
            && sys::openat2(
                libc::AT_FDCWD,
                std::path::Path::new(&target),
                libc::O_PATH,
                sys::resolve::NO_SYMLINKS,
            )
            .is_ok();
        let covered = parsed.iter().any(|q| match &q.kind {
            Kind::Bind {
                source: s,
                recursive: r,
            } => {
                s == &q.destination
                    && target.starts_with(&format!("{s}/"))
                    && r == recursive
                    && q.attrs == p.attrs
                    && q.atime_set == p.atime_set
            }
            _ => false,
        });
        let below = format!("{name}/");
        let nothing_below = !parsed
            .iter()
            .map(|q| &q.destination)
            .chain(&view.masked)
            .chain(&view.readonly)
            .any(|d| d.starts_with(&below));
        if resolved && covered && nothing_below {
            out.push((name.clone(), text));
        }
    }
    out
}

/// The host sources of the writable binds among `parsed`.
fn writable(parsed: &[mountopts::Parsed]) -> Vec<String> {
    parsed
        .iter()
        .filter_map(|p| match &p.kind {
            Kind::Bind { source, .. } if p.attrs & attr::RDONLY == 0 => Some(source.clone()),
            _ => None,
        })
        .collect()
}

fn mount_all(
    parsed: &[mountopts::Parsed],
    begun: &mut Begun,
    rep: &Reporter,
) -> Result<(), StepError> {
    mount_all_linking(parsed, &[], begun, rep)
}

/// [`mount_all`], making the binds `links` names (see [`usr_links`]) as symlinks.
fn mount_all_linking(
    parsed: &[mountopts::Parsed],
    links: &[(String, String)],
    begun: &mut Begun,
    rep: &Reporter,
) -> Result<(), StepError> {
    for p in parsed {
        if let Some((name, text)) = links.iter().find(|(d, _)| *d == p.destination) {
            let link = |e: io::Error| {
                step(
                    format!("mount {name}"),
                    format!("making it a link to {text}: {}", sys::errno_text(&e)),
                    "run `omac doctor`",
                )
            };
            let (t, n) = (
                sys::cstr(text).map_err(link)?,
                sys::cstr(&name[1..]).map_err(link)?,
            );
            // SAFETY: valid C strings and the root's descriptor.
            sys::cvt(unsafe { libc::symlinkat(t.as_ptr(), begun.root.as_raw_fd(), n.as_ptr()) })
                .map_err(link)?;
            begun.made.mounts.push((name.clone(), Under::Other));
            rep.debug(|| format!("linked {name} -> {text}"));
            continue;
        }
        let under = mount_one(p, &begun.root, &begun.writable, &begun.made)?;
        begun.made.mounts.push((p.destination.clone(), under));
        rep.debug(|| format!("mounted {}", p.destination));
    }
    Ok(())
}

/// Completes the view [`begin`] mounted with the run's part of `plan`: its extra mounts
/// (sockets, binaries), sysctls, masks and read-only paths; then `pivot_root` into it. The
/// paths created on the host for mount points go to `created`, as seen in the view and on
/// the host (init tells the stage, which removes them after the run).
pub fn finish(
    mut begun: Begun,
    plan: &RunPlan,
    rep: &Reporter,
    created: &mut dyn FnMut(&str, &str),
) -> Result<(), StepError> {
    let result = parse(&plan.extra_mounts).and_then(|extra| {
        begun.writable.extend(writable(&extra));
        mount_all(&extra, &mut begun, rep)
    });
    for (inside, host) in begun.made.created.borrow().iter() {
        created(inside, host);
    }
    result?;
    // Masks and read-only paths in or around the socket directory win over its mounts.
    let (masked, readonly) = split_near_sockets(&plan.view, true);
    protect(&begun, &masked, &readonly)?;
    let Begun { root, .. } = begun;
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

/// Makes the mount `p` in the view; returns what it is, for the mounts beneath it.
fn mount_one(
    p: &mountopts::Parsed,
    root: &OwnedFd,
    writable: &[String],
    made: &Made,
) -> Result<Under, StepError> {
    let what = format!("mount {}", p.destination);
    let may = |path: &str| made.may_create(path);
    // A new read-only tmpfs, kept to copy from once it is in place.
    let mut kept_params = None;
    let (tree, create, under) = match &p.kind {
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
            let under = if p.attrs & attr::RDONLY == 0 {
                Under::HostWritable(source.clone())
            } else {
                Under::Other
            };
            (tree, create, under)
        }
        Kind::Fs {
            fstype,
            source,
            params,
        } => {
            let tmpfs = fstype == "tmpfs";
            let read_only = tmpfs && p.attrs & attr::RDONLY != 0;
            let under = if !tmpfs {
                Under::Other
            } else if read_only {
                Under::Ours { limits: None }
            } else {
                Under::Ours {
                    limits: fold::limits(params),
                }
            };
            if tmpfs && fold_in(p, params, root, made, &what)? {
                return Ok(under);
            }
            let copy = if read_only {
                made.read_only.copy(params, p.attrs)
            } else {
                None
            };
            let tree = match copy {
                Some(tree) => tree,
                None => {
                    let tree = new_fs(fstype, source, params, p.attrs).map_err(|m| {
                        step(
                            &what,
                            m,
                            "check the mount's type and options (the kernel's message is quoted)",
                        )
                    })?;
                    kept_params = read_only.then_some(params);
                    tree
                }
            };
            (tree, Create::Dir, under)
        }
    };
    let fresh = made.on_ours(&p.destination);
    let target = resolve::open_target(root, &p.destination, create, fresh, &may).map_err(|m| {
        step(
            &what,
            m,
            "remove the symlink or the mount, or regenerate the bundle",
        )
    })?;
    sys::move_mount(&tree, &target)
        .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
    if let Some(params) = kept_params {
        made.read_only.keep(params, p.attrs, tree);
    }
    Ok(under)
}

/// Folds the tmpfs `p` into the tmpfs its mount point lies on, when it may (see [`fold`]).
fn fold_in(
    p: &mountopts::Parsed,
    params: &[(String, Option<String>)],
    root: &OwnedFd,
    made: &Made,
    what: &str,
) -> Result<bool, StepError> {
    let Some((
        _,
        Under::Ours {
            limits: Some(outer),
        },
    )) = made.covering(&p.destination)
    else {
        return Ok(false);
    };
    let Some(mode) = fold::foldable(p, params, outer) else {
        return Ok(false);
    };
    let path = std::path::Path::new(&p.destination);
    let (Some(parent), Some(name)) = (
        path.parent().and_then(|d| d.to_str()),
        path.file_name().and_then(|n| n.to_str()),
    ) else {
        return Ok(false);
    };
    let opened;
    let dir = if parent == "/" {
        root
    } else {
        // The parent is most likely a mount point made before, or its parent's.
        opened = resolve::open_target(root, parent, Create::Dir, false, &|q| made.may_create(q))
            .map_err(|m| {
                step(
                    what,
                    m,
                    "remove the symlink or the mount, or regenerate the bundle",
                )
            })?;
        &opened
    };
    fold::fold(p, mode, dir, name).map_err(|e| step(what, sys::errno_text(&e), refusal_fix(&e)))
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
        let target = resolve::open_target(root, d, Create::File, true, &|p| made.may_create(p))
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

/// The options of the empty read-only tmpfs a mask puts over a directory.
fn mask_params() -> [(String, Option<String>); 2] {
    [
        ("mode".into(), Some("0555".into())),
        ("size".into(), Some("4k".into())),
    ]
}

/// Hides `path`: an empty read-only tmpfs over a directory, /dev/null over anything else.
fn mask(b: &Begun, path: &str) -> Result<(), StepError> {
    let what = format!("mask {path}");
    let fd = match resolve::open_in_root(&b.root, path, 0) {
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
    if sys::is_dir_mode(st.st_mode) {
        let params = mask_params();
        let attrs = attr::RDONLY | attr::NOSUID | attr::NODEV | attr::NOEXEC;
        let (cover, new) = match b.made.read_only.copy(&params, attrs) {
            Some(copy) => (copy, false),
            None => (
                new_fs("tmpfs", "omac-mask", &params, attrs)
                    .map_err(|m| step(&what, m, "run `omac doctor`"))?,
                true,
            ),
        };
        sys::move_mount(&cover, &fd)
            .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
        if new {
            b.made.read_only.keep(&params, attrs, cover);
        }
        return Ok(());
    }
    // The first file mask is a read-only bind of /dev/null; the others copy it, flags and
    // all.
    let mut first = b.null_mask.borrow_mut();
    let t = match first.as_ref() {
        Some(m) => sys::clone_tree(m, false),
        None => sys::clone_tree(&b.devnull, false).and_then(|t| {
            sys::mount_setattr(&t, attr::RDONLY | attr::NOSUID | attr::NOEXEC, 0, 0, false)
                .map(|()| t)
        }),
    }
    .map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
    sys::move_mount(&t, &fd).map_err(|e| step(&what, sys::errno_text(&e), refusal_fix(&e)))?;
    if first.is_none() {
        *first = Some(t);
    }
    Ok(())
}

/// The view's masks and read-only paths that are (`near`) or are not in or around the
/// socket directory.
fn split_near_sockets(view: &View, near: bool) -> (Vec<String>, Vec<String>) {
    let pick = |list: &[String]| {
        list.iter()
            .filter(|p| view.near_sockets(p) == near)
            .cloned()
            .collect()
    };
    (pick(&view.masked), pick(&view.readonly))
}

/// Hides the `masked` paths and makes the `readonly` ones read-only, in the view being built.
fn protect(b: &Begun, masked: &[String], readonly: &[String]) -> Result<(), StepError> {
    for m in masked {
        mask(b, m)?;
    }
    for r in readonly {
        let fd = match resolve::open_in_root(&b.root, r, sys::resolve::NO_SYMLINKS) {
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
    Ok(())
}

/// Sets the view's sysctls (through its fresh /proc, resolved in its root).
fn set_sysctls(
    root: &OwnedFd,
    sysctl: &std::collections::BTreeMap<String, String>,
) -> Result<(), StepError> {
    for (key, value) in sysctl {
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
    Ok(())
}

/// Removes the mount points created on the host, deepest first, when they are still empty
/// (an agent may have put something there through another path; that stays).
pub fn remove_created<'a>(created: impl DoubleEndedIterator<Item = &'a str>) {
    for p in created.rev() {
        let path = std::path::Path::new(p);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(path);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(path);
            }
            _ => {}
        }
    }
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
