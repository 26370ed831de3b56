//! Session → `config.json` + `omac.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::env;
use crate::ext::{self, Bridge, Extension, Landlock, NetRules, NetworkPolicy, Prompt};
use crate::grants;
use crate::oci::{
    self, Capabilities, IdMapping, Linux, Namespace, Process, Rlimit, Root, Spec, User,
};
use crate::profile::validate::parse_memory;
use crate::rights;
use crate::session::Session;
use crate::view;
use crate::Error;

/// Port of the facade bridge inside the sandbox's network namespace.
pub const FACADE_PORT: u16 = 29170;
/// Port of the egress proxy bridge inside the sandbox's network namespace.
pub const EGRESS_PORT: u16 = 29171;
/// The facade socket inside the sandbox.
pub const FACADE_SOCKET: &str = "/run/omac/facade.sock";
/// The egress proxy socket inside the sandbox.
pub const EGRESS_SOCKET: &str = "/run/omac/egress.sock";
/// Ports the bridges of omac itself use inside; profiles cannot open or publish them.
pub const RESERVED_PORTS: &[u16] = &[FACADE_PORT, EGRESS_PORT];

/// The socket (inside the sandbox, under `/run/omac`) an open port's bridge forwards to:
/// the host side of the session listens there and connects to `127.0.0.1:PORT` on the host.
pub fn open_port_socket(port: u16) -> String {
    format!("/run/omac/port-{port}.sock")
}
/// Default RLIMIT_NOFILE when the profile does not set `resources.open_files`.
pub const DEFAULT_OPEN_FILES: u64 = 8192;

/// A generated bundle, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// `config.json` (its digest annotation is added when rendered).
    pub config: Spec,
    /// `omac.json`.
    pub ext: Extension,
}

/// Generates the bundle of `session`; `warnings` collects what the user should know.
pub fn generate(session: &Session, warnings: &mut Vec<String>) -> Result<Bundle, Error> {
    let host = session.host;
    let profile = &session.profile.profile;
    let fs = profile.filesystem.clone().unwrap_or_default();
    let net = profile.network.clone().unwrap_or_default();

    let mut command = session.command.clone();
    if command.is_empty() {
        let h = session
            .harness
            .unwrap_or_else(|| crate::harness::default_harness());
        command = vec![h.binary.to_string()];
    }
    let mut grant_list = grants::collect(session, warnings)?;
    let merged = grants::merge(grant_list.clone())?;
    let (argv, command_grants) = crate::command::resolve(&command, host, &merged, warnings);
    grant_list.extend(command_grants);
    let grant_list = grants::merge(grant_list)?;
    for g in &grant_list {
        if g.origin == grants::Origin::Profile {
            for p in crate::protected::for_this_platform() {
                if let Some(pp) = host.expand(p) {
                    if g.path != pp && crate::host::is_within(&g.path, &pp) {
                        warnings.push(format!(
                            "{} is granted although it lies inside the protected {}",
                            g.path.display(),
                            pp.display()
                        ));
                    }
                }
            }
        }
    }

    let devices: Vec<PathBuf> = profile
        .devices
        .iter()
        .map(PathBuf::from)
        // The default devices are always there (see view::DEVICES).
        .filter(|d| !view::DEVICES.iter().any(|v| Path::new(v) == d))
        .filter(|d| {
            let ok = std::fs::symlink_metadata(d).is_ok();
            if !ok {
                warnings.push(format!(
                    "device {} does not exist on this host; skipped",
                    d.display()
                ));
            }
            ok
        })
        .collect();
    let protected = view::protected(&grant_list, &fs, host)?;
    let placeholders = grants::control_placeholders(&grant_list, host);
    let mounts = view::mounts(&grant_list, &devices, &host.home, &placeholders);

    let mode = net.mode.clone().unwrap_or_else(|| "filtered".into());
    let enforcement = net.enforcement.clone().unwrap_or_else(|| "kernel".into());
    let own_netns = mode != "open" && enforcement == "kernel";
    if enforcement == "env-only" && mode != "open" {
        warnings.push(
            "network.enforcement is env-only: the agent shares the host network and the proxy is only advisory"
                .into(),
        );
    }
    let ports = |v: &[i64]| -> Vec<u16> {
        let mut p: Vec<u16> = v.iter().filter_map(|n| u16::try_from(*n).ok()).collect();
        p.sort();
        p.dedup();
        p
    };
    let reserved = |what: &str, mut v: Vec<u16>, warnings: &mut Vec<String>| {
        v.retain(|p| {
            let taken = RESERVED_PORTS.contains(p);
            if taken {
                warnings.push(format!(
                    "network.{what} {p}: omac's own bridges use this port inside the sandbox; it is ignored"
                ));
            }
            !taken
        });
        v
    };
    let publish_ports = reserved("publish_port", ports(&net.publish_port), warnings);
    let mut listen = ports(&net.listen_port);
    // A published port is one the agent listens on.
    listen.extend(publish_ports.iter().copied());
    listen.sort();
    listen.dedup();
    let open_ports = reserved("open_port", ports(&net.open_port), warnings);
    let net_rules = if mode == "open" && !listen.is_empty() {
        let mut bind = listen.clone();
        bind.extend(open_ports.iter().filter(|p| **p != 0));
        bind.sort();
        bind.dedup();
        NetRules {
            bind_tcp: Some(bind),
            connect_tcp: None,
        }
    } else {
        NetRules::default()
    };

    let require: Vec<String> = profile
        .enforcement
        .as_ref()
        .and_then(|e| e.require.clone())
        .unwrap_or_else(|| ext::DEFAULT_REQUIRE.iter().map(|s| s.to_string()).collect());

    let mut bridges = Vec::new();
    if own_netns {
        bridges.push(Bridge {
            name: "facade".into(),
            listen: format!("127.0.0.1:{FACADE_PORT}"),
            socket: FACADE_SOCKET.into(),
        });
        if mode == "filtered" {
            bridges.push(Bridge {
                name: "egress".into(),
                listen: format!("127.0.0.1:{EGRESS_PORT}"),
                socket: EGRESS_SOCKET.into(),
            });
        }
        // Host loopback ports, reached through a socket the session forwards to the host's
        // 127.0.0.1:PORT (0, "any port", exists only on macOS and has no bridge).
        for p in open_ports.iter().filter(|p| **p != 0) {
            bridges.push(Bridge {
                name: format!("port-{p}"),
                listen: format!("127.0.0.1:{p}"),
                socket: open_port_socket(*p),
            });
        }
    }

    let fs_rules = view::landlock_rules(&grant_list, &devices, &host.home);
    // Landlock rights only add up along a path: beneath a readable rule nothing is write-only.
    for g in grant_list
        .iter()
        .filter(|g| g.access == grants::Access::WRITE)
    {
        let readable_above = fs_rules.iter().find(|r| {
            Path::new(&r.path) != g.path
                && g.path.starts_with(&r.path)
                && r.access.iter().any(|a| a == "read_file")
        });
        if let Some(r) = readable_above {
            warnings.push(format!(
                "{} is granted write-only but lies under {}, which is readable: it is readable too",
                g.path.display(),
                r.path
            ));
        }
    }
    let prompt = net.network_prompt.clone();
    let harness_vars: &[&str] = session.harness.map(|h| h.env).unwrap_or(&[]);
    let deny_vars = profile
        .environment
        .as_ref()
        .map(|e| e.deny_vars.clone())
        .unwrap_or_default();
    let workdir_access = profile
        .workdir
        .as_ref()
        .and_then(|w| w.access.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "none".into());
    let lower = |v: &[String]| {
        v.iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect::<Vec<_>>()
    };

    let ext = Extension {
        schema_version: ext::SCHEMA_VERSION,
        profile: ext::ProfileInfo {
            name: session.profile.name.clone(),
            sources: session.profile.sources.clone(),
        },
        harness: session.harness.map(|h| h.name.to_string()),
        workdir: ext::WorkdirInfo {
            path: host.workdir.display().to_string(),
            access: workdir_access.clone(),
        },
        landlock: Landlock {
            min_abi: rights::MIN_ABI,
            required: require.iter().any(|r| r == "landlock-fs"),
            fs: fs_rules,
            net: net_rules,
            scopes: vec!["abstract_unix_socket".into(), "signal".into()],
        },
        network: NetworkPolicy {
            mode: mode.clone(),
            enforcement,
            allow_domains: lower(&net.allow_domain),
            deny_domains: lower(&net.deny_domain),
            listen_ports: listen,
            allow_tcp_connect: ports(&net.allow_tcp_connect),
            open_ports,
            publish_ports,
            prompt: Prompt {
                enabled: prompt.as_ref().is_some_and(|p| p.enabled.unwrap_or(true)),
                timeout_secs: prompt
                    .as_ref()
                    .and_then(|p| p.prompt_timeout_secs)
                    .filter(|t| *t > 0)
                    .unwrap_or(60) as u32,
                on_unavailable: prompt
                    .as_ref()
                    .and_then(|p| p.on_unavailable.clone())
                    .unwrap_or_else(|| "deny".into()),
            },
            upstream_proxy: net.upstream_proxy.clone(),
            no_proxy: net.no_proxy.clone(),
            proxy_injection: net.proxy_injection.clone(),
            allow_private: net
                .allow_private
                .iter()
                .map(|r| crate::cidr::Cidr::parse(r).map_or_else(|_| r.clone(), |c| c.to_string()))
                .collect(),
        },
        bridges,
        facade: ext::Facade {
            socket_dir: view::SOCKET_DIR.into(),
            socket: FACADE_SOCKET.into(),
            egress_socket: (mode == "filtered").then(|| EGRESS_SOCKET.to_string()),
            mounts: session.extras.facade_mounts.clone(),
        },
        environment: ext::EnvironmentPolicy {
            passthrough: env::passthrough(profile.environment.as_ref(), harness_vars),
            blocked: env::BLOCKED.iter().map(|s| s.to_string()).collect(),
            deny: deny_vars.clone(),
        },
        protected: protected.clone(),
        skills: session.extras.skills.clone(),
        sidecars: session.extras.sidecars.clone(),
        enforcement: ext::Enforcement { require },
    };

    if let Some((field, value)) = ext.duplicate() {
        return Err(Error::Input {
            message: format!("the session gives {field} {value:?} twice"),
            fix: "register each skill once (omac skill list shows them)".into(),
        });
    }
    let mut fixed = vec![
        format!("HOME={}", host.home.display()),
        format!("PATH={}", host.path),
        "TMPDIR=/tmp".to_string(),
    ];
    fixed.extend(
        crate::proxy_env::vars(&ext.network)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    for (k, v) in &session.extras.env {
        fixed.retain(|kv| !kv.starts_with(&format!("{k}=")));
        fixed.push(format!("{k}={v}"));
    }
    let process_env = env::compose(Vec::new(), &fixed, &[], &[], &deny_vars);

    let resources = profile.resources.clone().unwrap_or_default();
    let open_files = resources
        .open_files
        .map(|n| n as u64)
        .unwrap_or(DEFAULT_OPEN_FILES);
    let mut cgroup = cgroup_resources(&resources);
    let device_rules = crate::devices::cgroup_rules(&devices);
    if !device_rules.is_empty() {
        cgroup.get_or_insert_with(oci::Resources::default).devices = device_rules;
    }

    let mut namespaces: Vec<Namespace> = ["pid", "ipc", "uts", "mount", "user", "cgroup"]
        .iter()
        .map(|k| Namespace {
            kind: k.to_string(),
            path: None,
        })
        .collect();
    if own_netns {
        namespaces.insert(
            1,
            Namespace {
                kind: "network".into(),
                path: None,
            },
        );
    }
    let mut masked: Vec<String> = view::MASKED_PROC.iter().map(|s| s.to_string()).collect();
    masked.extend(protected.iter().map(|p| p.path.clone()));
    let edits = omac_seccomp::Edits {
        lift: profile
            .seccomp
            .as_ref()
            .map(|s| s.lift.clone())
            .unwrap_or_default(),
        deny: profile
            .seccomp
            .as_ref()
            .map(|s| s.deny.clone())
            .unwrap_or_default(),
    };
    let cwd = if workdir_access == "none" {
        "/".to_string()
    } else {
        host.workdir.display().to_string()
    };

    let config = Spec {
        oci_version: oci::OCI_VERSION.into(),
        process: Process {
            terminal: false,
            user: User {
                uid: host.uid,
                gid: host.gid,
                umask: None,
                additional_gids: vec![],
            },
            args: argv,
            env: process_env,
            cwd,
            capabilities: Some(Capabilities::default()),
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: open_files,
                soft: open_files,
            }],
            no_new_privileges: true,
            oom_score_adj: None,
        },
        root: Root {
            path: "rootfs".into(),
            readonly: true,
        },
        hostname: Some("omac".into()),
        domainname: None,
        mounts,
        annotations: BTreeMap::from([(
            "org.omac.profile".to_string(),
            session.profile.name.clone(),
        )]),
        linux: Linux {
            namespaces,
            uid_mappings: vec![IdMapping {
                container_id: host.uid,
                host_id: host.uid,
                size: 1,
            }],
            gid_mappings: vec![IdMapping {
                container_id: host.gid,
                host_id: host.gid,
                size: 1,
            }],
            resources: cgroup,
            seccomp: Some(omac_seccomp::agent_policy(&edits)?),
            masked_paths: masked,
            readonly_paths: view::READONLY_PROC.iter().map(|s| s.to_string()).collect(),
            ..Linux::default()
        },
    };
    Ok(Bundle { config, ext })
}

fn cgroup_resources(r: &crate::profile::model::Resources) -> Option<oci::Resources> {
    let memory = r
        .memory
        .as_ref()
        .and_then(parse_memory)
        .map(|limit| oci::Memory {
            limit: Some(limit),
            reservation: None,
            // memory+swap equal to memory: the limit cannot be dodged by swapping.
            swap: Some(limit),
        });
    let cpu = r.cpu.map(|c| oci::Cpu {
        quota: Some((c * 100_000.0).round() as i64),
        period: Some(100_000),
        ..oci::Cpu::default()
    });
    let pids = r.pids.map(|limit| oci::Pids { limit });
    if memory.is_none() && cpu.is_none() && pids.is_none() {
        return None;
    }
    Some(oci::Resources {
        devices: vec![],
        memory,
        cpu,
        pids,
    })
}
