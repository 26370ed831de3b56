//! Building an [`Explanation`] from a loaded bundle.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::ext;
use crate::load::Loaded;
use crate::oci::{Mount, Spec};

/// Rights the mount and (for omac bundles) Landlock leave on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rights {
    read: bool,
    write: bool,
    exec: bool,
}

/// Landlock rights at `path`: rules accumulate from every ancestor down.
fn landlock_rights(ll: &ext::Landlock, path: &str) -> BTreeSet<String> {
    ll.fs
        .iter()
        .filter(|r| Path::new(path).starts_with(&r.path))
        .flat_map(|r| r.access.iter().cloned())
        .collect()
}

fn rights_of(m: &Mount, ext: Option<&ext::Extension>) -> Rights {
    let ro = m.options.iter().any(|o| o == "ro");
    let noexec = m.options.iter().any(|o| o == "noexec");
    let base = Rights {
        read: true,
        write: !ro,
        exec: !noexec,
    };
    match ext {
        None => base,
        Some(e) => {
            let r = landlock_rights(&e.landlock, &m.destination);
            Rights {
                read: base.read && r.contains("read_file"),
                write: base.write && (r.contains("write_file") || r.contains("make_reg")),
                exec: base.exec && r.contains("execute"),
            }
        }
    }
}

fn is_bind(m: &Mount) -> bool {
    m.kind.as_deref() == Some("bind") || m.options.iter().any(|o| o == "bind" || o == "rbind")
}

fn option_value(m: &Mount, key: &str) -> Option<String> {
    m.options
        .iter()
        .find_map(|o| o.strip_prefix(key).map(str::to_string))
}

/// What a masked path's rule means.
pub fn rule_meaning(rule: &str) -> &'static str {
    match rule {
        "baseline" => "omac's list of credential and shell start-up paths",
        "profile" => "the profile's filesystem.deny",
        "env-file" => "a .env-like file found inside a granted tree",
        "kernel" => "kernel interfaces OCI runtimes hide by default",
        _ => "masked by config.json",
    }
}

fn env_value<'a>(spec: &'a Spec, name: &str) -> Option<&'a str> {
    spec.process
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn scratch_purpose(path: &str, home: Option<&str>, ext: Option<&ext::Extension>) -> Option<String> {
    if ext.is_some_and(|e| e.facade.socket_dir == path) {
        return Some("omac's sockets (facade, egress proxy)".into());
    }
    if Path::new(path).ends_with(".omac") || Path::new(path).ends_with(".config/omac") {
        return Some(
            "omac's control directory, kept read-only so the agent cannot plant profiles".into(),
        );
    }
    if home == Some(path) {
        return Some("$HOME, empty but for the paths granted inside it".into());
    }
    match path {
        "/tmp" => Some("temporary files".into()),
        "/dev/shm" => Some("POSIX shared memory".into()),
        _ => None,
    }
}

fn filesystem(spec: &Spec, ext: Option<&ext::Extension>) -> FilesystemView {
    let home = env_value(spec, "HOME");
    let mut fs = FilesystemView {
        root: spec.root.path.clone(),
        root_readonly: spec.root.readonly,
        workdir: ext.map(|e| e.workdir.clone()),
        read_only: vec![],
        read_write: vec![],
        write_only: vec![],
        unusable: vec![],
        execute: vec![],
        scratch: vec![],
        hidden: vec![],
        readonly_kernel: spec.linux.readonly_paths.clone(),
        devices: vec![],
        special: vec![],
    };
    let mut devices: Vec<DeviceView> = RUNTIME_DEVICES
        .iter()
        .map(|d| DeviceView {
            path: d.to_string(),
            how: "runtime".into(),
        })
        .collect();
    for m in &spec.mounts {
        let dest = m.destination.as_str();
        let under_dev = Path::new(dest).starts_with("/dev");
        let kind = m.kind.clone().unwrap_or_default();
        if is_bind(m) {
            if under_dev && dest != "/dev/shm" {
                devices.retain(|d| d.path != dest);
                devices.push(DeviceView {
                    path: dest.to_string(),
                    how: "bind".into(),
                });
                continue;
            }
            let grant = PathGrant {
                path: dest.to_string(),
                source: m.source.clone().filter(|s| s != dest),
            };
            let r = rights_of(m, ext);
            if r.exec && r.read {
                fs.execute.push(dest.to_string());
            }
            match (r.read, r.write) {
                (true, true) => fs.read_write.push(grant),
                (true, false) => fs.read_only.push(grant),
                (false, true) => fs.write_only.push(grant),
                (false, false) => fs.unusable.push(grant),
            }
        } else if kind == "tmpfs" && dest != "/dev" {
            let r = rights_of(m, ext);
            if r.exec {
                fs.execute.push(dest.to_string());
            }
            fs.scratch.push(Scratch {
                path: dest.to_string(),
                size: option_value(m, "size="),
                exec: r.exec,
                writable: r.write,
                purpose: scratch_purpose(dest, home, ext),
            });
        } else {
            fs.special.push(Special {
                path: dest.to_string(),
                kind,
                options: m.options.clone(),
            });
        }
    }
    for d in &spec.linux.devices {
        devices.retain(|x| x.path != d.path);
        devices.push(DeviceView {
            path: d.path.clone(),
            how: format!(
                "node ({} {}:{})",
                d.kind,
                d.major.unwrap_or(0),
                d.minor.unwrap_or(0)
            ),
        });
    }
    fs.devices = devices;
    for p in &spec.linux.masked_paths {
        let rule = ext
            .and_then(|e| e.protected.iter().find(|x| &x.path == p))
            .map(|x| x.rule.clone())
            .unwrap_or_else(|| {
                if p.starts_with("/proc/") || p.starts_with("/sys/") {
                    "kernel".into()
                } else {
                    "config".into()
                }
            });
        fs.hidden.push(Hidden {
            path: p.clone(),
            why: rule_meaning(&rule).into(),
            rule,
        });
    }
    fs
}

fn network(spec: &Spec, ext: Option<&ext::Extension>) -> NetworkView {
    let ns = spec.linux.namespaces.iter().find(|n| n.kind == "network");
    let (namespace, namespace_path) = match ns {
        None => ("host".to_string(), None),
        Some(n) if n.path.is_some() => ("joined".to_string(), n.path.clone()),
        Some(_) => ("own".to_string(), None),
    };
    NetworkView {
        namespace,
        namespace_path,
        policy: ext.map(|e| e.network.clone()),
        bridges: ext.map(|e| e.bridges.clone()).unwrap_or_default(),
        landlock_tcp: ext.map(|e| e.landlock.net.clone()),
    }
}

fn syscalls(spec: &Spec) -> SyscallView {
    let Some(filter) = &spec.linux.seccomp else {
        return SyscallView {
            filtered: false,
            default_action: None,
            architectures: vec![],
            groups: vec![],
            not_refused: omac_seccomp::groups()
                .iter()
                .map(|g| GroupView {
                    name: g.name.into(),
                    description: g.description.into(),
                    complete: false,
                    refused: vec![],
                })
                .collect(),
            other: vec![],
        };
    };
    let (covered, other) = omac_seccomp::describe(filter);
    let groups: Vec<GroupView> = covered
        .iter()
        .map(|c| GroupView {
            name: c.name.into(),
            description: c.description.into(),
            complete: c.complete,
            refused: c.refused.clone(),
        })
        .collect();
    let not_refused = omac_seccomp::groups()
        .iter()
        .filter(|g| !groups.iter().any(|c| c.name == g.name))
        .map(|g| GroupView {
            name: g.name.into(),
            description: g.description.into(),
            complete: false,
            refused: vec![],
        })
        .collect();
    let mut default_action = filter.default_action.spec_name();
    if let Some(e) = filter.default_errno_ret {
        default_action = format!("{default_action} ({})", omac_seccomp::errno::name_of(e));
    }
    SyscallView {
        filtered: true,
        default_action: Some(default_action),
        architectures: filter.architectures.iter().map(|a| a.spec_name()).collect(),
        groups,
        not_refused,
        other,
    }
}

fn isolation(spec: &Spec) -> IsolationView {
    let l = &spec.linux;
    let res = l.resources.as_ref();
    let cpu_limit = res.and_then(|r| r.cpu.as_ref()).and_then(|c| {
        let (q, p) = (c.quota?, c.period?);
        (q > 0 && p > 0).then(|| q as f64 / p as f64)
    });
    IsolationView {
        namespaces: l.namespaces.clone(),
        missing_namespaces: EXPECTED_NAMESPACES
            .iter()
            .filter(|k| !l.namespaces.iter().any(|n| n.kind == **k))
            .map(|k| k.to_string())
            .collect(),
        uid_mappings: l.uid_mappings.clone(),
        gid_mappings: l.gid_mappings.clone(),
        capabilities: spec.process.capabilities.clone(),
        no_new_privileges: spec.process.no_new_privileges,
        rlimits: spec.process.rlimits.clone(),
        memory_limit: res.and_then(|r| r.memory.as_ref()).and_then(|m| m.limit),
        pids_limit: res.and_then(|r| r.pids.as_ref()).map(|p| p.limit),
        cpu_limit,
        sysctl: l.sysctl.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    }
}

fn enforcement(ext: Option<&ext::Extension>) -> EnforcementView {
    let Some(e) = ext else {
        return EnforcementView {
            required: vec![],
            landlock: None,
        };
    };
    EnforcementView {
        required: e
            .enforcement
            .require
            .iter()
            .map(|l| LayerView {
                layer: l.clone(),
                meaning: ext::LAYERS
                    .iter()
                    .find(|(n, _)| n == l)
                    .map(|(_, m)| m.to_string())
                    .unwrap_or_else(|| "a layer this omac does not know".into()),
            })
            .collect(),
        landlock: Some(LandlockView {
            min_abi: e.landlock.min_abi,
            required: e.landlock.required,
            fs_rules: e.landlock.fs.len(),
            scopes: e.landlock.scopes.clone(),
        }),
    }
}

fn notes(x: &Explanation, ext: Option<&ext::Extension>) -> Vec<String> {
    let mut n = Vec::new();
    if ext.is_none() {
        n.push(
            "plain OCI bundle (no omac.json): no Landlock rules, network policy, environment \
             passthrough or skills; only what config.json says applies"
                .into(),
        );
    }
    let iso = &x.isolation;
    if iso.missing_namespaces.iter().any(|k| k == "user") {
        n.push("no user namespace: ids inside are the host's ids".into());
    }
    if iso.missing_namespaces.iter().any(|k| k == "mount") {
        n.push("no mount namespace: the process sees the host's filesystem".into());
    }
    match &iso.capabilities {
        None => n.push(
            "capabilities are not set: the runtime decides (runc and crun keep their defaults)"
                .into(),
        ),
        Some(c) => {
            let kept: BTreeSet<&String> = c
                .bounding
                .iter()
                .chain(&c.effective)
                .chain(&c.permitted)
                .chain(&c.inheritable)
                .chain(&c.ambient)
                .collect();
            if !kept.is_empty() {
                let list: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
                n.push(format!("capabilities kept: {}", list.join(", ")));
            }
        }
    }
    if !iso.no_new_privileges {
        n.push("no_new_privs is off: setuid programs can raise privileges".into());
    }
    if !x.syscalls.filtered {
        n.push("no syscall filter".into());
    }
    if x.network.namespace == "host" {
        n.push(
            "the network namespace is the host's: the process can reach whatever the host can"
                .into(),
        );
    }
    if iso.memory_limit.is_some() || iso.pids_limit.is_some() || iso.cpu_limit.is_some() {
        n.push(
            "cgroup limits need root or a delegated cgroup v2: on cgroup v1, rootless runc \
             refuses them and rootless crun ignores them"
                .into(),
        );
    }
    if !x.filesystem.root_readonly {
        n.push("the root filesystem is writable".into());
    }
    if let Some(e) = ext {
        if e.network.enforcement == "env-only" && e.network.mode != "open" {
            n.push("network enforcement is env-only: the proxy is advisory, not enforced".into());
        }
        for layer in ext::DEFAULT_REQUIRE {
            if !e.enforcement.require.iter().any(|r| r == layer) {
                n.push(format!(
                    "the layer {layer} is not required: the run may start without it"
                ));
            }
        }
    }
    n
}

/// Explains `bundle`.
pub fn explain(bundle: &Loaded) -> Explanation {
    let spec = &bundle.config;
    let ext = bundle.ext.as_ref();
    let mut x = Explanation {
        format: FORMAT,
        bundle: BundleInfo {
            dir: bundle.dir.display().to_string(),
            kind: if ext.is_some() { "omac" } else { "oci" }.into(),
            oci_version: spec.oci_version.clone(),
            profile: ext.map(|e| e.profile.clone()),
            harness: ext.and_then(|e| e.harness.clone()),
            args: spec.process.args.clone(),
            cwd: spec.process.cwd.clone(),
            uid: spec.process.user.uid,
            gid: spec.process.user.gid,
            terminal: spec.process.terminal,
            hostname: spec.hostname.clone(),
        },
        filesystem: filesystem(spec, ext),
        network: network(spec, ext),
        syscalls: syscalls(spec),
        environment: EnvironmentView {
            fixed: spec.process.env.clone(),
            passthrough: ext
                .map(|e| e.environment.passthrough.clone())
                .unwrap_or_default(),
            blocked: ext
                .map(|e| e.environment.blocked.clone())
                .unwrap_or_default(),
            removed: ext.map(|e| e.environment.deny.clone()).unwrap_or_default(),
        },
        skills: SkillsView {
            layers: ext.map(|e| e.skills.clone()).unwrap_or_default(),
            sidecars: ext.map(|e| e.sidecars.clone()).unwrap_or_default(),
            facade: ext.map(|e| e.facade.clone()),
        },
        isolation: isolation(spec),
        enforcement: enforcement(ext),
        notes: vec![],
    };
    x.notes = notes(&x, ext);
    x
}

#[cfg(test)]
mod tests {
    use super::super::text;
    use super::*;
    use crate::testing::{s, scratch};

    fn paths(v: &[PathGrant]) -> Vec<String> {
        v.iter().map(|g| g.path.clone()).collect()
    }

    #[test]
    fn an_omac_bundle_is_explained_from_both_files() {
        let sc = scratch();
        std::fs::create_dir_all(sc.path("ro")).unwrap();
        let profile = format!(
            r#"{{"workdir": {{"access": "readwrite"}},
                "filesystem": {{"allow": ["~"], "read": ["{}"]}},
                "network": {{"mode": "blocked"}}}}"#,
            s(&sc.path("ro"))
        );
        let l = sc.bundle("p", &profile, Default::default());
        let x = explain(&l);
        let f = &x.filesystem;
        assert_eq!(x.bundle.kind, "omac");
        assert!(paths(&f.read_write).contains(&s(&sc.path("work"))));
        assert!(paths(&f.read_write).contains(&s(&sc.path("home"))));
        assert!(paths(&f.read_only).contains(&s(&sc.path("ro"))));
        assert!(paths(&f.read_only).contains(&"/usr".to_string()));
        let hidden = |p: &str| {
            f.hidden
                .iter()
                .find(|h| h.path == p)
                .map(|h| h.rule.clone())
        };
        assert_eq!(
            hidden(&s(&sc.path("home/.ssh"))).as_deref(),
            Some("baseline")
        );
        assert_eq!(
            hidden(&s(&sc.path("work/sub/.env"))).as_deref(),
            Some("env-file")
        );
        assert_eq!(hidden("/proc/kcore").as_deref(), Some("kernel"));
        // /dev/shm is noexec; omac's socket directory is not writable under Landlock.
        assert!(!f.execute.contains(&"/dev/shm".to_string()));
        let sock = f.scratch.iter().find(|x| x.path == "/run/omac").unwrap();
        assert!(!sock.writable && sock.purpose.is_some());
        assert!(f
            .devices
            .iter()
            .any(|d| d.path == "/dev/null" && d.how == "runtime"));
        assert_eq!(x.network.namespace, "own");
        assert_eq!(x.network.policy.as_ref().unwrap().mode, "blocked");
        let names: Vec<&str> = x.syscalls.groups.iter().map(|g| g.name.as_str()).collect();
        assert!(names.contains(&"namespaces") && names.contains(&"io_uring"));
        assert!(x.syscalls.not_refused.iter().any(|g| g.name == "ptrace"));
        assert!(x.isolation.missing_namespaces.is_empty());
        assert_eq!(x.enforcement.required.len(), 3);
        assert!(x.notes.is_empty(), "{:?}", x.notes);
        let text = text::render(&x);
        assert!(text.contains("Mode blocked: no network at all"), "{text}");
    }

    #[test]
    fn landlock_decides_what_a_writable_mount_really_allows() {
        let sc = scratch();
        std::fs::create_dir_all(sc.path("drop")).unwrap();
        let profile = format!(
            r#"{{"workdir": {{"access": "readwrite"}}, "filesystem": {{"write": ["{}"]}}}}"#,
            s(&sc.path("drop"))
        );
        let mut l = sc.bundle("w", &profile, Default::default());
        let drop = s(&sc.path("drop"));
        // Under /tmp the scratch rule makes it readable too: explain says so.
        let x = explain(&l);
        if drop.starts_with("/tmp/") {
            assert!(paths(&x.filesystem.read_write).contains(&drop));
        }
        // Without a readable rule above it, it is write-only.
        let ext = l.ext.as_mut().unwrap();
        ext.landlock
            .fs
            .retain(|r| r.path == drop || !drop.starts_with(&r.path));
        let x = explain(&l);
        assert!(
            paths(&x.filesystem.write_only).contains(&drop),
            "{:?}",
            x.filesystem
        );
        assert!(!x.filesystem.execute.contains(&drop));
    }

    #[test]
    fn a_plain_oci_bundle_is_explained_from_config_json_alone() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
                        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                                         "permitted": ["CAP_KILL"]}},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw"]},
                {"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}],
                      "maskedPaths": ["/proc/kcore", "/etc/secret"]}
        }))
        .unwrap();
        let l = Loaded {
            dir: "/b".into(),
            config: spec,
            ext: None,
        };
        let x = explain(&l);
        assert_eq!(x.bundle.kind, "oci");
        assert_eq!(
            x.filesystem.read_write,
            vec![PathGrant {
                path: "/data".into(),
                source: Some("/srv/data".into())
            }]
        );
        assert_eq!(paths(&x.filesystem.read_only), ["/sys"]);
        assert_eq!(x.filesystem.execute, ["/data", "/tmp"]);
        assert_eq!(x.filesystem.scratch[0].size.as_deref(), Some("1m"));
        let rules: Vec<&str> = x
            .filesystem
            .hidden
            .iter()
            .map(|h| h.rule.as_str())
            .collect();
        assert_eq!(rules, ["kernel", "config"]);
        assert_eq!(x.network.namespace, "host");
        assert!(!x.syscalls.filtered);
        assert_eq!(
            x.isolation.missing_namespaces,
            ["user", "ipc", "uts", "network", "cgroup"]
        );
        for note in [
            "plain OCI bundle",
            "no user namespace",
            "capabilities kept: CAP_KILL",
            "no_new_privs is off",
            "no syscall filter",
            "host",
        ] {
            assert!(
                x.notes.iter().any(|n| n.contains(note)),
                "{note}: {:?}",
                x.notes
            );
        }
        let text = text::render(&x);
        assert!(
            text.contains("/data (from /srv/data)") && text.contains("No filter"),
            "{text}"
        );
    }
}
