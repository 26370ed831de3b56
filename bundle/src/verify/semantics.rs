//! The checks the schema cannot make: what runtimes refuse or silently get wrong, and
//! whether config.json agrees with omac.json.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use super::Check;
use crate::load::Loaded;
use crate::oci::{IdMapping, Spec};

fn is_clean_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir))
}

fn mapped(id: u32, maps: &[IdMapping]) -> bool {
    maps.iter()
        .any(|m| id >= m.container_id && (id as u64) < m.container_id as u64 + m.size as u64)
}

fn overlapping(maps: &[IdMapping]) -> bool {
    let mut ranges: Vec<(u64, u64)> = maps
        .iter()
        .map(|m| (m.container_id as u64, m.container_id as u64 + m.size as u64))
        .collect();
    ranges.sort();
    ranges.windows(2).any(|w| w[1].0 < w[0].1)
}

fn check_version(spec: &Spec) -> Check {
    let v = &spec.oci_version;
    let parts: Vec<&str> = v.split(['.', '-', '+']).collect();
    let ok =
        parts.len() >= 3 && parts[0] == "1" && parts[1..3].iter().all(|p| p.parse::<u32>().is_ok());
    let mut problems = vec![];
    if !ok {
        problems.push(format!(
            "ociVersion {v:?} is not a 1.x.y version (fix: write \"1.1.0\")"
        ));
    }
    let mut c = Check::new("ociVersion", problems, v.to_string());
    if ok && parts[1].parse::<u32>().is_ok_and(|m| m >= 2) {
        c.details.push(
            "note: crun 1.8 refuses versions from 1.2.0 on (\"unknown version specified\")".into(),
        );
    }
    c
}

fn check_capabilities(spec: &Spec) -> Check {
    let mut p = vec![];
    if let Some(c) = &spec.process.capabilities {
        let set = |v: &[String]| -> BTreeSet<String> { v.iter().cloned().collect() };
        let (bounding, permitted, inheritable) =
            (set(&c.bounding), set(&c.permitted), set(&c.inheritable));
        for a in &c.ambient {
            if !permitted.contains(a) || !inheritable.contains(a) {
                p.push(format!(
                    "ambient {a} is not both permitted and inheritable: the kernel refuses to raise it \
                     (runc ignores the error, oci-runtime-tool reports it; fix: add it to both sets or drop it)"
                ));
            }
        }
        for e in &c.effective {
            if !permitted.contains(e) {
                p.push(format!(
                    "effective {e} is not permitted: capset fails in runc and crun (fix: add it to permitted or drop it)"
                ));
            }
        }
        for i in &c.inheritable {
            if !bounding.contains(i) {
                p.push(format!(
                    "inheritable {i} is outside the bounding set: capset fails in runc and crun \
                     (fix: add it to bounding or drop it)"
                ));
            }
        }
        for (name, list) in [
            ("bounding", &c.bounding),
            ("effective", &c.effective),
            ("inheritable", &c.inheritable),
            ("permitted", &c.permitted),
            ("ambient", &c.ambient),
        ] {
            for n in list {
                if !n.starts_with("CAP_") {
                    p.push(format!("{name} {n:?} is not a CAP_* name"));
                }
            }
        }
    }
    let ok = match &spec.process.capabilities {
        None => "not set (left to the runtime)",
        Some(_) => "the sets are consistent",
    };
    Check::new("capabilities", p, ok)
}

fn check_ids(spec: &Spec) -> Check {
    let l = &spec.linux;
    let u = &spec.process.user;
    let mut p = vec![];
    if spec.creates_namespace("user") {
        for (what, maps) in [("uid", &l.uid_mappings), ("gid", &l.gid_mappings)] {
            if maps.is_empty() {
                p.push(format!(
                    "a user namespace is created but linux.{what}Mappings is empty (fix: map the invoking {what})"
                ));
            }
            if maps.iter().any(|m| m.size == 0) {
                p.push(format!("a {what} mapping has size 0"));
            }
            if overlapping(maps) {
                p.push(format!("{what} mappings overlap inside the namespace"));
            }
        }
        if !l.uid_mappings.is_empty() && !mapped(u.uid, &l.uid_mappings) {
            p.push(format!(
                "process.user.uid {} is not mapped in the user namespace (fix: add a uidMapping for it)",
                u.uid
            ));
        }
        if !l.gid_mappings.is_empty() {
            for g in std::iter::once(&u.gid).chain(&u.additional_gids) {
                if !mapped(*g, &l.gid_mappings) {
                    p.push(format!(
                        "gid {g} of process.user is not mapped in the user namespace (fix: add a gidMapping for it)"
                    ));
                }
            }
        }
    } else if !l.uid_mappings.is_empty() || !l.gid_mappings.is_empty() {
        p.push("id mappings are given but no user namespace is created (fix: add {\"type\": \"user\"} to linux.namespaces)".into());
    }
    let ok = if spec.creates_namespace("user") {
        format!(
            "uid {} and gid {} are mapped in the user namespace",
            u.uid, u.gid
        )
    } else {
        "no user namespace".to_string()
    };
    Check::new("ids", p, ok)
}

fn check_mounts(spec: &Spec) -> Check {
    let mut p = vec![];
    let ms = &spec.mounts;
    for (i, m) in ms.iter().enumerate() {
        let d = &m.destination;
        if !is_clean_absolute(d) {
            p.push(format!(
                "mounts[{i}].destination {d:?} is not a clean absolute path"
            ));
            continue;
        }
        let dp = Path::new(d);
        if dp.starts_with("/proc")
            && !(dp == Path::new("/proc") && m.kind.as_deref() == Some("proc"))
        {
            p.push(format!(
                "mounts[{i}] puts {d} under /proc: only the proc filesystem itself belongs there (runtimes refuse or it hides kernel files)"
            ));
        }
        let is_bind = m.kind.as_deref() == Some("bind")
            || m.options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind && m.source.as_deref().is_none_or(str::is_empty) {
            p.push(format!(
                "mounts[{i}] ({d}) is a bind mount without a source"
            ));
        }
        for (j, later) in ms.iter().enumerate().skip(i + 1) {
            let lp = Path::new(&later.destination);
            if dp.starts_with(lp) {
                p.push(format!(
                    "mounts[{i}] ({d}) is hidden by the later mounts[{j}] ({}) (fix: mount parents before children, each path once)",
                    later.destination
                ));
                break;
            }
        }
    }
    for (what, list) in [
        ("maskedPaths", &spec.linux.masked_paths),
        ("readonlyPaths", &spec.linux.readonly_paths),
    ] {
        for (i, x) in list.iter().enumerate() {
            if !is_clean_absolute(x) {
                p.push(format!(
                    "linux.{what}[{i}] {x:?} is not a clean absolute path"
                ));
            }
        }
    }
    Check::new(
        "mounts",
        p,
        format!(
            "{} mounts with absolute destinations, in a usable order",
            ms.len()
        ),
    )
}

fn check_process(loaded: &Loaded) -> Check {
    let spec = &loaded.config;
    let mut p = vec![];
    let pr = &spec.process;
    if pr.args.is_empty() {
        p.push("process.args is empty (fix: give the command to run)".into());
    }
    if !pr.cwd.starts_with('/') {
        p.push(format!("process.cwd {:?} is not absolute", pr.cwd));
    }
    for (i, kv) in pr.env.iter().enumerate() {
        if !kv.contains('=') || kv.starts_with('=') {
            p.push(format!("process.env[{i}] {kv:?} is not NAME=value"));
        }
    }
    let mut kinds = BTreeSet::new();
    for r in &pr.rlimits {
        if !kinds.insert(&r.kind) {
            p.push(format!("rlimit {} is given twice", r.kind));
        }
        if r.soft > r.hard {
            p.push(format!(
                "rlimit {}: soft {} exceeds hard {}",
                r.kind, r.soft, r.hard
            ));
        }
    }
    let mut ns = BTreeSet::new();
    for n in &spec.linux.namespaces {
        if !ns.insert(&n.kind) {
            p.push(format!("namespace {} is listed twice", n.kind));
        }
    }
    let root = loaded.dir.join(&spec.root.path);
    if !root.is_dir() {
        p.push(format!(
            "root.path {} is not a directory (fix: create it; omac bundles use an empty rootfs/)",
            root.display()
        ));
    }
    Check::new(
        "process",
        p,
        "argv, cwd, environment, rlimits, namespaces and root are well-formed",
    )
}

fn check_seccomp(spec: &Spec) -> Check {
    let Some(f) = &spec.linux.seccomp else {
        return Check::new("seccomp", vec![], "no syscall filter");
    };
    let mut p = vec![];
    match omac_seccomp::compile(f) {
        Ok(c) => {
            if let Some(native) = omac_seccomp::oci::Arch::native() {
                if !f.architectures.is_empty() && !f.architectures.contains(&native) {
                    p.push(format!(
                        "the filter does not list this machine's {} entry point",
                        native.spec_name()
                    ));
                }
            }
            if p.is_empty() {
                return Check::new(
                    "seccomp",
                    p,
                    format!(
                        "the filter compiles ({} rules, {} BPF instructions)",
                        f.syscalls.len(),
                        c.instruction_count()
                    ),
                );
            }
        }
        Err(e) => p.push(format!("the filter cannot be compiled: {e}")),
    }
    Check::new("seccomp", p, "")
}

/// Checks that `config.json` says what `omac.json` says (omac bundles only).
fn check_consistency(loaded: &Loaded) -> Option<Check> {
    let ext = loaded.ext.as_ref()?;
    let spec = &loaded.config;
    let mut p = vec![];
    for pr in &ext.protected {
        if !spec.linux.masked_paths.contains(&pr.path) {
            p.push(format!(
                "protected path {} ({}) is not in linux.maskedPaths",
                pr.path, pr.rule
            ));
        }
    }
    let own_netns = ext.network.mode != "open" && ext.network.enforcement == "kernel";
    if own_netns != spec.creates_namespace("network") {
        p.push(format!(
            "network mode {} ({} enforcement) {} a network namespace, config.json {}",
            ext.network.mode,
            ext.network.enforcement,
            if own_netns { "needs" } else { "does not use" },
            if spec.creates_namespace("network") {
                "creates one"
            } else {
                "creates none"
            }
        ));
    }
    for k in ["user", "mount", "pid", "ipc", "uts"] {
        if !spec.creates_namespace(k) {
            p.push(format!(
                "omac bundles create a {k} namespace; config.json does not"
            ));
        }
    }
    if !spec.process.no_new_privileges {
        p.push("noNewPrivileges is off; omac bundles always set it".into());
    }
    if let Some(c) = &spec.process.capabilities {
        let kept: BTreeSet<&String> = c
            .bounding
            .iter()
            .chain(&c.effective)
            .chain(&c.permitted)
            .chain(&c.inheritable)
            .chain(&c.ambient)
            .collect();
        if !kept.is_empty() {
            let names: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
            p.push(format!(
                "capabilities {} are kept; omac bundles keep none",
                names.join(", ")
            ));
        }
    } else {
        p.push("process.capabilities is absent: the runtime would keep its defaults".into());
    }
    for (what, maps) in [
        ("uid", &spec.linux.uid_mappings),
        ("gid", &spec.linux.gid_mappings),
    ] {
        if maps.iter().any(|m| m.container_id != m.host_id) {
            p.push(format!(
                "a {what} mapping is not the identity; omac maps the invoking {what} to itself"
            ));
        }
    }
    if ext.enforcement.require.iter().any(|l| l == "seccomp") && spec.linux.seccomp.is_none() {
        p.push("seccomp is required but config.json has no filter".into());
    }
    if ext.workdir.access != "none" {
        let wd = &ext.workdir.path;
        match spec.mounts.iter().find(|m| &m.destination == wd) {
            None => p.push(format!("the work directory {wd} is not mounted")),
            Some(m) => {
                let ro = m.options.iter().any(|o| o == "ro");
                let wants_write = ext.workdir.access.contains("write");
                if ro == wants_write {
                    p.push(format!(
                        "the work directory {wd} is mounted {} but its access is {}",
                        if ro { "read-only" } else { "read-write" },
                        ext.workdir.access
                    ));
                }
            }
        }
    }
    for r in &ext.landlock.fs {
        if !r.path.starts_with('/') {
            p.push(format!("Landlock rule path {:?} is not absolute", r.path));
        }
        for a in &r.access {
            if crate::rights::abi_of(a).is_none() {
                p.push(format!("Landlock right {a:?} on {} is unknown", r.path));
            }
        }
    }
    for l in &ext.enforcement.require {
        if !crate::ext::LAYERS.iter().any(|(n, _)| n == l) {
            p.push(format!("required layer {l:?} is unknown"));
        }
    }
    Some(Check::new(
        "consistency",
        p,
        "config.json agrees with omac.json (masks, namespaces, privileges, work directory, Landlock)",
    ))
}

/// The checks the schema cannot make, over a loaded bundle.
pub fn semantics(loaded: &Loaded) -> Vec<Check> {
    let spec = &loaded.config;
    let mut v = vec![
        check_version(spec),
        check_process(loaded),
        check_capabilities(spec),
        check_ids(spec),
        check_mounts(spec),
        check_seccomp(spec),
    ];
    v.extend(check_consistency(loaded));
    v
}
