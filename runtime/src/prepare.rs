//! Checks a loaded bundle against what omac implements and turns it into the stage's plan.
//! Everything the bundle says is either honoured or refused here, by name, before any
//! process starts.

use std::path::{Path, PathBuf};

use omac_bundle::ext::{Extension, FsRule, LAYERS};
use omac_bundle::oci::{IdMapping, Mount, Spec};
use omac_bundle::{env, rights, Loaded};

use crate::wire::{encode_bpf, seccomp_insn::Insn, FallbackPlan, Head, ProcessPlan, RunPlan, View};
use crate::{fallback, links, mountopts, Error, RunOptions};

const CONFIG: &str = "config.json";
const EXT: &str = "omac.json";

/// Namespace kinds omac creates.
const NAMESPACES: &[&str] = &[
    "user", "mount", "pid", "ipc", "uts", "network", "cgroup", "time",
];

/// Scopes Landlock knows.
pub const SCOPES: &[&str] = &["abstract_unix_socket", "signal"];

/// Resource limits by OCI name.
const RLIMITS: &[(&str, u32)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn bad(field: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::unsupported(CONFIG, field, message, fix)
}

/// Checks the bundle and builds the plan; also returns warnings for the user.
pub fn plan(bundle: &Loaded, opts: &RunOptions) -> Result<(RunPlan, Vec<String>), Error> {
    let spec = &bundle.config;
    let ext = bundle.ext.as_ref();
    let mut warnings = Vec::new();
    check_process(spec)?;
    check_linux(spec)?;
    let namespaces = check_namespaces(spec)?;
    let (uid_map, gid_map, allow_setgroups) = check_mappings(spec)?;
    let view = view(bundle)?;
    let mut extra_mounts = Vec::new();
    let socket_dir = socket_dir(ext);
    for (name, host) in &opts.sockets {
        check_name(name)?;
        if !host.is_absolute() || std::fs::symlink_metadata(host).is_err() {
            return Err(Error::Spawn(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("host socket {} for {name} does not exist", host.display()),
            )));
        }
        extra_mounts.push(Mount {
            destination: format!("{}/{name}", socket_dir.trim_end_matches('/')),
            kind: Some("bind".into()),
            source: Some(host.display().to_string()),
            options: ["bind", "ro", "nosuid", "nodev", "noexec"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        });
    }

    for (port, host) in &opts.publish {
        let listed = ext.is_some_and(|e| e.network.publish_ports.contains(port));
        if !listed {
            return Err(Error::unsupported(
                EXT,
                "network.publishPorts",
                format!("port {port} is not published by the bundle"),
                "add it to the profile's network.publish_port (or pass --publish to omac start)",
            ));
        }
        if !host.is_absolute() {
            return Err(Error::Spawn(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("publish socket {} is not absolute", host.display()),
            )));
        }
    }

    let mut landlock = ext.map(|e| e.landlock.clone());
    let mut binary_rules = Vec::new();
    for (name, host) in &opts.binaries {
        check_name(name)?;
        if !host.is_absolute() || !host.is_file() {
            return Err(Error::Spawn(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("binary {} for {name} does not exist", host.display()),
            )));
        }
        let dest = format!("{}/bin/{name}", socket_dir.trim_end_matches('/'));
        extra_mounts.push(Mount {
            destination: dest.clone(),
            kind: Some("bind".into()),
            source: Some(host.display().to_string()),
            options: ["bind", "ro", "nosuid", "nodev"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        });
        let access = vec!["execute".to_string(), "read_file".to_string()];
        if let Some(l) = landlock.as_mut() {
            l.fs.push(FsRule {
                path: dest,
                access: access.clone(),
            });
        }
        binary_rules.push(FsRule {
            path: host.display().to_string(),
            access,
        });
    }

    let require = required(ext)?;
    if let Some(e) = ext {
        check_landlock(e)?;
    }

    let seccomp = match &spec.linux.seccomp {
        Some(f) => {
            let compiled = omac_seccomp::compile(f)?;
            encode_bpf(
                &compiled
                    .programs()
                    .iter()
                    .map(|p| {
                        p.iter()
                            .map(|i| Insn {
                                code: i.code,
                                jt: i.jt,
                                jf: i.jf,
                                k: i.k,
                            })
                            .collect()
                    })
                    .collect::<Vec<_>>(),
            )
        }
        None => {
            if require.iter().any(|r| r == "seccomp") {
                return Err(Error::Unavailable {
                    layer: "seccomp".into(),
                    message: "omac.json requires seccomp but config.json has no linux.seccomp"
                        .into(),
                    fix: "regenerate the bundle with omac bundle create".into(),
                });
            }
            warnings.push("config.json has no seccomp filter: the agent runs without one".into());
            Vec::new()
        }
    };

    let env = match ext {
        Some(e) => env::compose(
            opts.host_env.iter().cloned(),
            &spec.process.env,
            &e.environment.passthrough,
            &e.environment.blocked,
            &e.environment.deny,
        ),
        None => spec.process.env.clone(),
    };
    let mut args = spec.process.args.clone();
    args.extend(opts.args.iter().cloned());
    if args.is_empty() {
        return Err(bad("process.args", "is empty", "name the program to run"));
    }
    let mut rlimits = Vec::new();
    for (i, r) in spec.process.rlimits.iter().enumerate() {
        let (_, res) = RLIMITS.iter().find(|(n, _)| *n == r.kind).ok_or_else(|| {
            bad(
                format!("process.rlimits[{i}].type"),
                format!("unknown resource {:?}", r.kind),
                "use an RLIMIT_* name",
            )
        })?;
        if r.soft > r.hard {
            return Err(bad(
                format!("process.rlimits[{i}]"),
                format!("soft limit {} is above the hard limit {}", r.soft, r.hard),
                "lower soft or raise hard",
            ));
        }
        rlimits.push((*res as i32, r.kind.clone(), r.soft, r.hard));
    }

    // A protected file's second name inside the view would escape every mask.
    let mut protected: Vec<PathBuf> = ext
        .map(|e| e.protected.iter().map(|p| PathBuf::from(&p.path)).collect())
        .unwrap_or_default();
    if ext.is_some() {
        let home = opts
            .host_env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v))
            .filter(|h| h.is_absolute());
        for p in omac_bundle::protected::for_this_platform() {
            match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => protected.push(h.join(rest)),
                (None, _) if p.starts_with('/') => protected.push(PathBuf::from(p)),
                _ => {}
            }
        }
        let granted: Vec<PathBuf> = view
            .mounts
            .iter()
            .chain(&extra_mounts)
            .filter_map(|m| match mountopts::parse(m) {
                Ok(mountopts::Parsed {
                    kind: mountopts::Kind::Bind { source, .. },
                    ..
                }) if !source.starts_with("/dev/") => Some(PathBuf::from(source)),
                _ => None,
            })
            .collect();
        links::check(&protected, &granted)?;
    }

    // The view without a user namespace is only ever used when the bundle may run without
    // one.
    let fallback = if require.iter().any(|r| r == "namespaces") {
        FallbackPlan::default()
    } else {
        let mut f = fallback::plan(spec, ext, &opts.sockets);
        f.rules.extend(binary_rules);
        f
    };
    let plan = RunPlan {
        view,
        root_readonly: spec.root.readonly,
        namespaces,
        uid_map,
        gid_map,
        allow_setgroups,
        hostname: spec.hostname.clone(),
        domainname: spec.domainname.clone(),
        extra_mounts,
        process: ProcessPlan {
            args,
            env,
            cwd: spec.process.cwd.clone(),
            uid: spec.process.user.uid,
            gid: spec.process.user.gid,
            umask: spec.process.user.umask,
            additional_gids: spec.process.user.additional_gids.clone(),
            rlimits,
            oom_score_adj: spec.process.oom_score_adj,
        },
        landlock,
        bridges: ext.map(|e| e.bridges.clone()).unwrap_or_default(),
        seccomp,
        network_mode: ext.map(|e| e.network.mode.clone()),
        require,
        resources: spec.linux.resources.clone(),
        sockets: opts.sockets.clone(),
        publish: opts.publish.clone(),
        fallback,
    };
    Ok((plan, warnings))
}

/// The enforcement layers the bundle requires (a plain OCI bundle: namespaces).
fn required(ext: Option<&Extension>) -> Result<Vec<String>, Error> {
    Ok(match ext {
        Some(e) => {
            for r in &e.enforcement.require {
                if !LAYERS.iter().any(|(n, _)| n == r) {
                    return Err(Error::unsupported(
                        EXT,
                        "enforcement.require",
                        format!("unknown layer {r:?}"),
                        format!(
                            "use the layers {}",
                            LAYERS
                                .iter()
                                .map(|(n, _)| *n)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            e.enforcement.require.clone()
        }
        // A plain OCI bundle has no Landlock view to fall back on.
        None => vec!["namespaces".to_string()],
    })
}

/// The head of the plan [`plan`] would make of `bundle` (see [`Head`]), checked the same
/// way: its namespaces, id mappings, required layers, cgroup limits and view.
pub fn head(bundle: &Loaded) -> Result<Head, Error> {
    let spec = &bundle.config;
    let namespaces = check_namespaces(spec)?;
    let (uid_map, gid_map, allow_setgroups) = check_mappings(spec)?;
    Ok(Head {
        namespaces,
        uid_map,
        gid_map,
        allow_setgroups,
        require: required(bundle.ext.as_ref())?,
        resources: spec.linux.resources.clone(),
        view: view(bundle)?,
    })
}

/// The bundle's view: its root directory (made absolute; a tmpfs goes over an empty one),
/// its mounts, each of which must parse, its masks and read-only paths (absolute) and its
/// sysctls.
fn view(bundle: &Loaded) -> Result<View, Error> {
    let spec = &bundle.config;
    for (field, list) in [
        ("linux.maskedPaths", &spec.linux.masked_paths),
        ("linux.readonlyPaths", &spec.linux.readonly_paths),
    ] {
        for p in list {
            mountopts::check_destination(p)
                .map_err(|e| bad(field, e, "list absolute paths inside the container"))?;
        }
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        mountopts::parse(m).map_err(|e| {
            bad(
                format!("mounts[{i}] ({})", m.destination),
                e,
                "change the entry (omac never ignores a mount setting it cannot honour)",
            )
        })?;
    }
    let rootfs = if Path::new(&spec.root.path).is_absolute() {
        PathBuf::from(&spec.root.path)
    } else {
        bundle.dir.join(&spec.root.path)
    };
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| {
        bad(
            "root.path",
            format!("{}: {e}", rootfs.display()),
            "create the root directory (omac bundle create makes an empty rootfs/)",
        )
    })?;
    let root_tmpfs = std::fs::read_dir(&rootfs)
        .map_err(|e| {
            bad(
                "root.path",
                format!("{}: {e}", rootfs.display()),
                "make it a readable directory",
            )
        })?
        .next()
        .is_none();

    Ok(View {
        rootfs,
        root_tmpfs,
        mounts: spec.mounts.clone(),
        masked: spec.linux.masked_paths.clone(),
        readonly: spec.linux.readonly_paths.clone(),
        sysctl: spec.linux.sysctl.clone(),
        socket_dir: socket_dir(bundle.ext.as_ref()),
    })
}

/// Where the run's sockets and binaries are mounted inside.
fn socket_dir(ext: Option<&Extension>) -> String {
    ext.map(|e| e.facade.socket_dir.clone())
        .unwrap_or_else(|| omac_bundle::view::SOCKET_DIR.to_string())
}

/// A run-time socket or binary name: a plain file name.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(Error::Spawn(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} must be a plain file name"),
        )));
    }
    Ok(())
}

fn check_process(spec: &Spec) -> Result<(), Error> {
    let p = &spec.process;
    if let Some(c) = &p.capabilities {
        for (set, list) in [
            ("bounding", &c.bounding),
            ("effective", &c.effective),
            ("inheritable", &c.inheritable),
            ("permitted", &c.permitted),
            ("ambient", &c.ambient),
        ] {
            if let Some(first) = list.first() {
                return Err(bad(
                    format!("process.capabilities.{set}"),
                    format!("lists {first}: omac runs every agent without capabilities"),
                    "empty the capability lists",
                ));
            }
        }
    }
    if !p.cwd.starts_with('/') {
        return Err(bad(
            "process.cwd",
            format!("{:?} is not absolute", p.cwd),
            "use an absolute path",
        ));
    }
    Ok(())
}

fn check_linux(spec: &Spec) -> Result<(), Error> {
    let l = &spec.linux;
    if let Some(d) = l.devices.first() {
        return Err(bad(
            "linux.devices",
            format!(
                "{}: omac cannot create device nodes in a user namespace",
                d.path
            ),
            "bind-mount the host device instead (a mount of type bind)",
        ));
    }
    if let Some(p) = &l.cgroups_path {
        return Err(bad(
            "linux.cgroupsPath",
            format!("{p:?}: omac places each sandbox in its own cgroup"),
            "remove cgroupsPath",
        ));
    }
    match l.rootfs_propagation.as_deref() {
        None | Some("private") | Some("rprivate") | Some("slave") | Some("rslave") => {}
        Some(other) => {
            return Err(bad(
                "linux.rootfsPropagation",
                format!("{other:?}: the sandbox's mounts are private"),
                "remove it or use private",
            ))
        }
    }
    if let Some(r) = &l.resources {
        // The device cgroup's rules need no enforcing here: in a user namespace no device
        // node can be created, and every filesystem mounted inside is nodev, so the only
        // devices the agent can open are the host nodes the mounts bind (which the rules
        // allow) and the default devices (which the OCI spec always allows).
        for d in r.devices.iter().filter(|d| d.allow) {
            if d.kind.as_deref() != Some("c") && d.kind.as_deref() != Some("b") {
                return Err(bad(
                    "linux.resources.devices",
                    format!(
                        "an allow rule for {:?} devices: list each device node instead",
                        d.kind
                    ),
                    "allow only the character or block devices the mounts bind",
                ));
            }
        }
        if let Some(c) = &r.cpu {
            if c.cpus.is_some() || c.mems.is_some() {
                return Err(bad(
                    "linux.resources.cpu",
                    "cpus and mems (cpusets) are not supported",
                    "remove cpus and mems",
                ));
            }
        }
    }
    if spec.hostname.is_some() && !spec.creates_namespace("uts") {
        return Err(bad(
            "hostname",
            "a hostname needs a uts namespace",
            "add {\"type\": \"uts\"} to linux.namespaces",
        ));
    }
    Ok(())
}

fn check_namespaces(spec: &Spec) -> Result<Vec<String>, Error> {
    let mut kinds = Vec::new();
    for (i, n) in spec.linux.namespaces.iter().enumerate() {
        if n.path.is_some() {
            return Err(bad(
                format!("linux.namespaces[{i}].path"),
                "joining an existing namespace is not supported",
                "remove path so that a new namespace is created",
            ));
        }
        if !NAMESPACES.contains(&n.kind.as_str()) {
            return Err(bad(
                format!("linux.namespaces[{i}].type"),
                format!("unknown namespace {:?}", n.kind),
                format!("use one of {}", NAMESPACES.join(", ")),
            ));
        }
        if !kinds.contains(&n.kind) {
            kinds.push(n.kind.clone());
        }
    }
    for needed in ["user", "mount"] {
        if !kinds.iter().any(|k| k == needed) {
            return Err(bad(
                "linux.namespaces",
                format!("no {needed} namespace: omac builds every sandbox in its own user and mount namespaces"),
                format!("add {{\"type\": \"{needed}\"}}"),
            ));
        }
    }
    Ok(kinds)
}

fn mapped(maps: &[IdMapping], id: u32) -> bool {
    maps.iter()
        .any(|m| id >= m.container_id && (id - m.container_id) < m.size)
}

fn check_mappings(spec: &Spec) -> Result<(Vec<IdMapping>, Vec<IdMapping>, bool), Error> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let l = &spec.linux;
    let user = &spec.process.user;
    for (field, maps, me, what) in [
        ("linux.uidMappings", &l.uid_mappings, uid, "uid"),
        ("linux.gidMappings", &l.gid_mappings, gid, "gid"),
    ] {
        if maps.is_empty() {
            return Err(bad(
                field,
                "is empty",
                "map the invoking user (omac bundle create does)",
            ));
        }
        if uid != 0 {
            let ok = maps.len() == 1 && maps[0].host_id == me && maps[0].size == 1;
            if !ok {
                let hosts: Vec<String> = maps
                    .iter()
                    .map(|m| format!("{}-{}", m.host_id, m.host_id as u64 + m.size as u64 - 1))
                    .collect();
                return Err(bad(
                    field,
                    format!(
                        "maps host {what}s {} but omac runs as {what} {me}: an unprivileged user can map only its own id",
                        hosts.join(", ")
                    ),
                    "regenerate the bundle as this user (omac bundle create)",
                ));
            }
        }
    }
    if !mapped(&l.uid_mappings, user.uid) {
        return Err(bad(
            "process.user.uid",
            format!("{} is not mapped by linux.uidMappings", user.uid),
            "run as a mapped uid",
        ));
    }
    if !mapped(&l.gid_mappings, user.gid) {
        return Err(bad(
            "process.user.gid",
            format!("{} is not mapped by linux.gidMappings", user.gid),
            "run as a mapped gid",
        ));
    }
    let allow_setgroups = uid == 0 && !user.additional_gids.is_empty();
    if let Some(g) = user
        .additional_gids
        .iter()
        .find(|g| !mapped(&l.gid_mappings, **g))
    {
        return Err(bad(
            "process.user.additionalGids",
            format!("{g} is not mapped"),
            "remove it",
        ));
    }
    if uid != 0 && !user.additional_gids.is_empty() {
        return Err(bad(
            "process.user.additionalGids",
            "an unprivileged user cannot set supplementary groups in a user namespace",
            "remove additionalGids",
        ));
    }
    Ok((
        l.uid_mappings.clone(),
        l.gid_mappings.clone(),
        allow_setgroups,
    ))
}

fn check_landlock(e: &Extension) -> Result<(), Error> {
    for (i, r) in e.landlock.fs.iter().enumerate() {
        if !r.path.starts_with('/') {
            return Err(Error::unsupported(
                EXT,
                format!("landlock.fs[{i}].path"),
                format!("{:?} is not absolute", r.path),
                "use absolute paths inside the sandbox",
            ));
        }
        for a in &r.access {
            if rights::abi_of(a).is_none() {
                return Err(Error::unsupported(
                    EXT,
                    format!("landlock.fs[{i}].access"),
                    format!("unknown right {a:?}"),
                    format!(
                        "use {}",
                        rights::ALL
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    for s in &e.landlock.scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(Error::unsupported(
                EXT,
                "landlock.scopes",
                format!("unknown scope {s:?}"),
                format!("use {}", SCOPES.join(", ")),
            ));
        }
    }
    for (i, b) in e.bridges.iter().enumerate() {
        let ok = b
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !ok {
            return Err(Error::unsupported(
                EXT,
                format!("bridges[{i}].listen"),
                format!("{:?} is not a loopback address with a port", b.listen),
                "use 127.0.0.1:PORT",
            ));
        }
        if !b.socket.starts_with('/') {
            return Err(Error::unsupported(
                EXT,
                format!("bridges[{i}].socket"),
                format!("{:?} is not absolute", b.socket),
                "use a path inside the sandbox",
            ));
        }
    }
    match e.network.mode.as_str() {
        "blocked" | "filtered" | "open" => Ok(()),
        m => Err(Error::unsupported(
            EXT,
            "network.mode",
            format!("unknown mode {m:?}"),
            "use blocked, filtered or open",
        )),
    }
}
